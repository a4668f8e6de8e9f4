/*
 * A node's byte path, on the loop thread: writing (pump takes the waiting
 * transactions in deadline order, coalesces PUBs into MPUBs and writes them
 * with one writev, or lingers briefly for more) and reading (nsqd's frames
 * are matched to the in-flight FIFO by position).  What to do with a
 * result -- finish, retry elsewhere, hold -- is the router's (router.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define NSQ__MAX_IOV 1024

/* ---------------------------------------------------------------- writing */

static void read_what_is_there(nsq__node_t *n);

/* The first nb buffers of a write are no longer libuv's to read. */
static void unmark_in_write(nsq__node_t *n, size_t nb)
{
    for (size_t i = 0; i < nb; i++)
        if (n->wtxns[i])
            n->wtxns[i]->in_write = false;
}

/* Pings whose NOP went (or failed) complete with err. */
static void finish_pings(nsq__node_t *n, nsq_err_t err, const char *why)
{
    nsq__txn_t *t;
    while ((t = nsq__list_pop(&n->pings_writing)) != NULL)
        nsq__finish(n->p, t, err, why);
}

/* A command written to n: its answer is expected in this order. */
static void put_in_flight(nsq__node_t *n, nsq__txn_t *t)
{
    nsq__list_push(&n->inflight, t);
    NSQ__COUNT(&n->p->stats.in_flight, 1);
    NSQ__COUNT(&n->stats.in_flight, 1);
    NSQ__COUNT(&n->p->stats.commands_written, 1);
}

static void on_write(uv_write_t *req, int status)
{
    nsq__node_t *n = req->data;
    nsq_producer_t *p = n->p;
    n->write_active = false;
    for (size_t i = 0; i < n->nbufs; i++) {
        nsq__txn_t *w = n->wtxns[i];
        if (!w)
            continue;
        w->in_write = false;
        if (w->release_pending)
            nsq__txn_release(p, w);
    }
    n->nbufs = 0;
    if (n->held.head)
        nsq__retry_held(n);
    if (status < 0) {
        char why[512];
        snprintf(why, sizeof why, "%s: write: %s", n->addr,
                 uv_strerror(status));
        finish_pings(n, NSQ_ERR_IO, why);
        if (status != UV_ECANCELED) {
            read_what_is_there(n);
            nsq__conn_fail(n, NSQ_ERR_IO, why);
        }
        return;
    }
    finish_pings(n, NSQ_OK, "");
    nsq__pump(n);
}

static bool grow_bufs(nsq__node_t *n, size_t need)
{
    if (need <= n->bufs_cap)
        return true;
    size_t cap = n->bufs_cap ? n->bufs_cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    uv_buf_t *b = realloc(n->bufs, cap * sizeof *b);
    if (!b)
        return false;
    n->bufs = b;
    nsq__txn_t **w = realloc(n->wtxns, cap * sizeof *w);
    if (!w)
        return false;
    n->wtxns = w;
    n->bufs_cap = cap;
    return true;
}

/* Whether PUB u may follow PUB t in one MPUB: the same topic. */
static bool joins(const nsq__txn_t *t, const nsq__txn_t *u, int64_t max)
{
    return max > 1 && u->kind == NSQ__TXN_PUB && u->line == t->line &&
           memcmp(u->data, t->data, t->line) == 0;
}

/*
 * Coalesces PUB t (already taken off the waiting list) and the PUBs to the
 * same topic right behind it into one MPUB, without copying a body: a
 * PUB's encoding "PUB <topic>\n" [u32 size][body] ends in exactly an MPUB
 * member's [u32 size][body], so the write is a header "MPUB <topic>\n"
 * [u32 body size][u32 count] (in a batch transaction of its own) followed
 * by each PUB's bytes past its command line.  The batch goes in flight as
 * one entry that knows its members.  NULL (t untouched) if no batch
 * transaction could be had.
 */
static nsq__txn_t *coalesce(nsq__node_t *n, nsq__txn_t *t, size_t *nb,
                            size_t *bytes)
{
    nsq_producer_t *p = n->p;
    /* "MPUB <topic>\n" [u32 body size][u32 count] */
    nsq__txn_t *b = nsq__txn_get(p, (size_t)t->line + 9);
    if (!b)
        return NULL;
    int64_t max_bytes = p->conf->batch_max_bytes;
    if (max_bytes > p->conf->max_body_size)
        max_bytes = p->conf->max_body_size;
    if (n->learned_max_body > 0 && max_bytes > n->learned_max_body)
        max_bytes = n->learned_max_body;
    size_t hdr = (*nb)++;
    nsq__txn_t *last = t;
    b->kind = NSQ__TXN_BATCH;
    b->in_write = true;
    b->members = t;
    b->deadline_ms = t->deadline_ms;
    b->nmsgs = 0;
    uint64_t body = 4;
    for (;;) {
        size_t part = t->len - t->line;
        n->wtxns[*nb] = t;
        n->bufs[(*nb)++] = uv_buf_init(t->data + t->line, (unsigned)part);
        body += part;
        b->nmsgs++;
        nsq__txn_t *u = n->waiting.head;
        if (!u || !joins(t, u, p->conf->batch_max_messages) ||
            b->nmsgs >= (uint64_t)p->conf->batch_max_messages ||
            *nb >= NSQ__MAX_IOV || !grow_bufs(n, *nb + 1) ||
            body + (u->len - u->line) > (uint64_t)max_bytes)
            break;
        nsq__list_pop(&n->waiting);
        nsq__unqueue(p, u);
        u->in_write = true;
        last->next = u;
        last = u;
        t = u;
    }
    last->next = NULL;
    const nsq__txn_t *m = b->members;
    size_t tl = (size_t)m->line - 5; /* "PUB " and "\n" */
    char *w = b->data;
    memcpy(w, "MPUB ", 5);
    memcpy(w + 5, m->data + 4, tl + 1);
    uint32_t be[2] = {htonl((uint32_t)body), htonl(b->nmsgs)};
    memcpy(w + 5 + tl + 1, be, 8);
    b->len = (uint32_t)(5 + tl + 1 + 8);
    n->wtxns[hdr] = b;
    n->bufs[hdr] = uv_buf_init(b->data, (unsigned)b->len);
    *bytes += b->len + body - 4;
    NSQ__COUNT(&p->stats.coalesced, b->nmsgs);
    return b;
}

static void on_linger(uv_timer_t *h)
{
    nsq__pump(h->data);
}

/*
 * linger: the head of the waiting list is a PUB that could take more PUBs
 * to its topic than are waiting, and it has waited less than linger: the
 * write waits (a timer runs it when linger is up).  Never while stopping.
 */
static bool lingers(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    int64_t linger = p->conf->linger_ms, max = p->conf->batch_max_messages;
    nsq__txn_t *t = n->waiting.head;
    if (linger <= 0 || max <= 1 || !t || t->kind != NSQ__TXN_PUB ||
        p->stop_draining)
        return false;
    int64_t k = 1;
    for (nsq__txn_t *u = t->next; u && k < max && joins(t, u, max); u = u->next)
        k++;
    if (k >= max)
        return false;
    int64_t left =
        t->deadline_ms - p->conf->publish_timeout_ms + linger - nsq__mono_ms();
    if (left <= 0)
        return false;
    if (!uv_is_active((uv_handle_t *)&n->linger))
        uv_timer_start(&n->linger, on_linger, (uint64_t)left, 0);
    return true;
}

/*
 * Writes everything that may go now in one write (writev): control bytes
 * first, then waiting commands while fewer than max_unacked are in flight.
 * One write is outstanding at a time; what arrives meanwhile goes in the
 * next.
 */
void nsq__pump(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
again:
    if (n->write_active || !n->tcp ||
        (n->state != NSQ__READY && n->state != NSQ__IDENTIFYING))
        return;
    size_t nb = 0;
    /* Swap the control buffers: the one being written stays untouched. */
    nsq_buf_t tmp = n->ctl[1];
    n->ctl[1] = n->ctl[0];
    n->ctl[0] = tmp;
    n->ctl[0].len = 0;
    if (n->ctl[1].len) {
        if (!grow_bufs(n, 1))
            return;
        n->wtxns[nb] = NULL;
        n->bufs[nb++] = uv_buf_init(n->ctl[1].data, (unsigned)n->ctl[1].len);
    }
    size_t bytes = n->ctl[1].len;
    if (n->state == NSQ__READY && !lingers(n)) {
        while (n->waiting.head && nb < NSQ__MAX_IOV &&
               (int64_t)n->inflight.count < p->conf->max_unacked) {
            if (!grow_bufs(n, nb + 2))
                break;
            nsq__txn_t *t = nsq__list_pop(&n->waiting);
            nsq__unqueue(p, t);
            t->in_write = true;
            if (t->kind == NSQ__TXN_PUB && n->waiting.head &&
                joins(t, n->waiting.head, p->conf->batch_max_messages)) {
                nsq__txn_t *b = coalesce(n, t, &nb, &bytes);
                if (b) {
                    put_in_flight(n, b);
                    continue;
                }
            }
            n->wtxns[nb] = t;
            n->bufs[nb++] = uv_buf_init(t->data, (unsigned)t->len);
            bytes += t->len;
            if (t->kind == NSQ__TXN_PING)
                nsq__list_push(&n->pings_writing, t);
            else
                put_in_flight(n, t);
        }
    }
    int rc;
    n->write_req.data = n;
    if (n->xform) {
        /* Through the layers: the bytes are copied, so the transactions
         * need not outlive the write. */
        unmark_in_write(n, nb);
        n->wire.len = 0;
        if (!nsq__conn_encode(n, n->bufs, nb, &n->wire)) {
            nsq__conn_fail(n, NSQ_ERR_COMPRESSION,
                           "cannot encode a write (compression or TLS)");
            return;
        }
        if (n->wire.len == 0)
            return;
        n->nbufs = 0;
        uv_buf_t one = uv_buf_init(n->wire.data, (unsigned)n->wire.len);
        rc = uv_write(&n->write_req, (uv_stream_t *)n->tcp, &one, 1, on_write);
    } else {
        if (nb == 0)
            return;
        /* The write is tried at once: when the socket takes it all (the
         * usual case) it is done here, without libuv's write request,
         * which would queue the socket for an epoll_ctl and the callback
         * for the next loop iteration. */
        rc = uv_try_write((uv_stream_t *)n->tcp, n->bufs, (unsigned)nb);
        if (rc >= 0 && (size_t)rc == bytes) {
            unmark_in_write(n, nb);
            NSQ__COUNT(&p->stats.bytes_written, bytes);
            finish_pings(n, NSQ_OK, "");
            nsq__arm_tick(p);
            if (n->ctl[0].len ||
                (n->waiting.head && n->state == NSQ__READY &&
                 (int64_t)n->inflight.count < p->conf->max_unacked))
                goto again;
            return;
        }
        size_t k = 0;
        if (rc > 0) {
            /* Part of it went: the rest through a write request. */
            size_t done = (size_t)rc;
            while (k < nb && done >= n->bufs[k].len)
                done -= n->bufs[k++].len;
            n->bufs[k].base += done;
            n->bufs[k].len -= done;
        }
        if (rc >= 0 || rc == UV_EAGAIN) {
            n->nbufs = nb;
            rc = uv_write(&n->write_req, (uv_stream_t *)n->tcp, n->bufs + k,
                          (unsigned)(nb - k), on_write);
        }
    }
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s: write: %s", n->addr, uv_strerror(rc));
        /* Nothing of it was written: undo the marks, then fail. */
        unmark_in_write(n, nb);
        n->nbufs = 0;
        read_what_is_there(n);
        nsq__conn_fail(n, NSQ_ERR_IO, why);
        return;
    }
    n->write_active = true;
    n->write_started_ms = nsq__mono_ms();
    NSQ__COUNT(&p->stats.bytes_written, bytes);
    nsq__arm_tick(p);
}

/* ---------------------------------------------------------------- reading */

/*
 * nsqd refused an MPUB of ours for a size it checks before storing
 * anything: the whole body over its --max-body-size (E_BAD_BODY, which
 * nsqd does not announce, so coalescing cannot know it), or one message
 * over --max-msg-size (E_BAD_MESSAGE).  The batch was the library's idea,
 * not the caller's, so its PUBs go back to the front of the waiting list
 * (in order, and behind a retry with an earlier deadline) to be sent
 * alone: each then gets nsqd's own answer, and no message fails for its
 * neighbours.  A body limit learned from nsqd's text
 * bounds the batches from then on.  true if t was such a batch (and is
 * released).
 */
static bool resend_refused_batch(nsq__node_t *n, nsq__txn_t *t, nsq_err_t code,
                                 const char *text)
{
    nsq_producer_t *p = n->p;
    if (t->kind != NSQ__TXN_BATCH ||
        (code != NSQ_E_BAD_BODY && code != NSQ_E_BAD_MESSAGE))
        return false;
    long long size, limit;
    if (sscanf(text, "E_BAD_BODY MPUB body too big %lld > %lld", &size,
               &limit) == 2 &&
        limit > 0 && (n->learned_max_body == 0 || limit < n->learned_max_body))
        n->learned_max_body = limit;
    nsq__txn_t *m = t->members;
    t->members = NULL;
    for (nsq__txn_t *u = m; u; u = u->next) {
        u->kind = NSQ__TXN_PUB_ALONE;
        nsq__queued_add(p, u->nmsgs);
    }
    nsq__list_put_back(&n->waiting, m);
    nsq__log(p, NSQ_LOG_INFO,
             "%s: nsqd refused a batch of %u PUBs (%s); sending them one by "
             "one",
             n->addr, t->nmsgs, text);
    t->completed = true;
    nsq__release_after_write(p, t);
    return true;
}

static void on_frame(nsq__node_t *n, const nsq_frame_t *f)
{
    nsq_producer_t *p = n->p;
    if (n->state == NSQ__IDENTIFYING) {
        nsq__handshake_frame(n, f);
        return;
    }
    if (f->type == NSQ_FRAME_RESPONSE) {
        if (f->len == 11 && memcmp(f->data, "_heartbeat_", 11) == 0) {
            NSQ__COUNT(&p->stats.heartbeats, 1);
            nsq_cmd_nop(&n->ctl[0]);
            return;
        }
        nsq__txn_t *t = nsq__list_pop(&n->inflight);
        if (!t || f->len != 2 || memcmp(f->data, "OK", 2) != 0) {
            if (t)
                nsq__finish(p, t, NSQ_ERR_IN_DOUBT,
                            "unexpected answer from nsqd (in doubt)");
            nsq__conn_fail(n, NSQ_ERR_PROTOCOL, "unexpected answer from nsqd");
            return;
        }
        NSQ__UNCOUNT(&p->stats.in_flight, 1);
        NSQ__UNCOUNT(&n->stats.in_flight, 1);
        NSQ__COUNT(&n->stats.published, t->nmsgs);
        nsq__finish(p, t, NSQ_OK, "");
        return;
    }
    if (f->type == NSQ_FRAME_ERROR) {
        nsq_err_t code = nsq_err_from_frame(f->data, f->len);
        char text[512];
        snprintf(text, sizeof text, "%.*s", (int)f->len, f->data);
        nsq__txn_t *t = nsq__list_pop(&n->inflight);
        if (t) {
            NSQ__UNCOUNT(&p->stats.in_flight, 1);
            NSQ__UNCOUNT(&n->stats.in_flight, 1);
            if (!resend_refused_batch(n, t, code, text))
                nsq__finish(p, t, code, text);
        }
        if (nsq_err_is_fatal(code)) {
            char why[512];
            snprintf(why, sizeof why,
                     "not processed: nsqd closed the connection after "
                     "rejecting an earlier command (%.400s)",
                     text);
            nsq__conn_fail(n, NSQ_ERR_NOT_SENT, why);
        }
        return;
    }
    nsq__conn_fail(n, NSQ_ERR_PROTOCOL, "unexpected message frame from nsqd");
}

/* Bytes read from the socket: runs the frames they complete.  false once
 * the connection failed. */
static bool take_bytes(nsq__node_t *n, const char *data, size_t len)
{
    n->last_read_ms = nsq__mono_ms();
    if (!nsq__conn_ingest(n, data, len))
        return false;
    nsq_frame_t f;
    int rc;
    while (n->tcp && n->state != NSQ__CLOSING &&
           (rc = nsq_frame_reader_next(n->reader, &f)) != 0) {
        if (rc < 0) {
            char why[512];
            snprintf(why, sizeof why, "%s: %s", n->addr,
                     nsq_frame_reader_errstr(n->reader));
            nsq__conn_fail(n, NSQ_ERR_BAD_FRAME, why);
            return false;
        }
        on_frame(n, &f);
    }
    if (n->peer_closed && n->tcp && n->state != NSQ__CLOSING) {
        char why[512];
        snprintf(why, sizeof why, "%s: TLS session closed by nsqd", n->addr);
        nsq__conn_fail(n, NSQ_ERR_IO, why);
        return false;
    }
    return n->tcp && n->state != NSQ__CLOSING;
}

/*
 * A write failed (nsqd died: EPIPE, ECONNRESET).  Answers nsqd sent before
 * that may still wait in the socket -- libuv reports the failed write
 * before it polls for reading -- and each is a publish nsqd stored.  They
 * are read and run now, without waiting, so that only what nsqd really
 * left unanswered ends in doubt.  Bounded by what the socket holds (the
 * kernel keeps received bytes readable after a reset).
 */
static void read_what_is_there(nsq__node_t *n)
{
    for (int reads = 0; reads < 1024 && n->tcp && n->state != NSQ__CLOSING;
         reads++) {
        uv_os_fd_t fd;
        uv_buf_t b;
        if (uv_fileno((uv_handle_t *)n->tcp, &fd) != 0)
            return;
        nsq__on_alloc((uv_handle_t *)n->tcp, 65536, &b);
        if (!b.base || !b.len)
            return;
        ssize_t got = recv(fd, b.base, b.len, MSG_DONTWAIT);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || !take_bytes(n, b.base, (size_t)got))
            return;
    }
}

void nsq__wire_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    nsq__node_t *n = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        char why[512];
        if (nread == UV_EOF)
            snprintf(why, sizeof why, "%s: connection closed by nsqd", n->addr);
        else
            snprintf(why, sizeof why, "%s: read: %s", n->addr,
                     uv_strerror((int)nread));
        nsq__conn_fail(n, NSQ_ERR_IO, why);
        return;
    }
    nsq__conn_state_t before = n->state;
    if (!take_bytes(n, buf->base, (size_t)nread))
        return;
    if (n->state == NSQ__READY && before != NSQ__READY)
        nsq__drain_queue(n->p);
    /* Answers, handshake messages (TLS, AUTH) and heartbeats' NOPs. */
    nsq__pump(n);
}
