/*
 * The connection: resolve, connect, IDENTIFY, then the upgrades nsqd
 * negotiates -- TLS, then compression, then AUTH when the reply says
 * auth_required -- and the byte path through them.  Loop thread only.
 *
 * Plain connections read straight into the frame reader's buffer and write
 * commands with writev from the transactions' own buffers.  Once TLS or
 * compression is on, bytes are copied through the layers: socket -> TLS ->
 * decompression -> frame reader, and commands -> compression -> TLS ->
 * socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tls.h"

/* Handshake steps inside NSQ__IDENTIFYING. */
enum {
    HS_IDENTIFY = 0, /* waiting for the IDENTIFY reply */
    HS_TLS,          /* TLS handshake in progress */
    HS_TLS_OK,       /* waiting for the OK sent inside TLS */
    HS_Z_OK,         /* waiting for the OK sent compressed */
    HS_AUTH,         /* waiting for the AUTH reply */
};

static void on_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    nsq__wire_on_read(s, nread, buf);
}

/* Drops this connection's TLS session and compression. */
static void reset_layers(nsq__node_t *n)
{
    nsq__client_tls_free(n->tls);
    n->tls = NULL;
    nsq_stream_destroy(n->z);
    n->z = NULL;
    n->xform = false;
    n->peer_closed = false;
    n->hs = HS_IDENTIFY;
}

void nsq__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nsq__node_t *n = h->data;
    (void)suggested;
    if (n->xform) {
        if (nsq_buf_reserve(&n->raw, 65536) != NSQ_OK) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        *buf = uv_buf_init(n->raw.data, 65536);
        return;
    }
    size_t avail = 0;
    char *space = nsq_frame_reader_space(n->reader, 65536, &avail);
    *buf = uv_buf_init(space, space ? (unsigned)avail : 0);
}

/* Decompresses (when on) and hands plain bytes to the frame reader. */
static bool deliver(nsq__node_t *n, const char *data, size_t len)
{
    if (len == 0)
        return true;
    if (n->z) {
        n->zplain.len = 0;
        if (nsq_stream_decompress(n->z, data, len, &n->zplain) != NSQ_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s: compressed data from nsqd: %s",
                     n->addr, nsq_stream_errstr(n->z));
            nsq__conn_fail(n, NSQ_ERR_COMPRESSION, why);
            return false;
        }
        data = n->zplain.data;
        len = n->zplain.len;
    }
    if (len && nsq_frame_reader_feed(n->reader, data, len) != NSQ_OK) {
        nsq__conn_fail(n, NSQ_ERR_BAD_FRAME,
                       nsq_frame_reader_errstr(n->reader));
        return false;
    }
    return true;
}

/* Wire bytes through TLS (when on) to deliver(). */
static bool ingest_wire(nsq__node_t *n, const char *data, size_t len)
{
    nsq_producer_t *p = n->p;
    if (!n->tls)
        return deliver(n, data, len);
    char why[512];
    if (len && !nsq__client_tls_feed(n->tls, data, len)) {
        nsq__conn_fail(n, NSQ_ERR_TLS, "TLS: out of memory");
        return false;
    }
    if (n->hs == HS_TLS) {
        int rc = nsq__client_tls_handshake(n->tls, why, sizeof why);
        if (rc < 0) {
            nsq__conn_fail(n, NSQ_ERR_TLS, why);
            return false;
        }
        if (rc == 0)
            return true;
        n->hs = HS_TLS_OK;
        nsq__log(p, NSQ_LOG_DEBUG, "%s: TLS established", n->addr);
    }
    n->plain.len = 0;
    int rc = nsq__client_tls_read(n->tls, &n->plain, why, sizeof why);
    if (rc < 0) {
        nsq__conn_fail(n, NSQ_ERR_TLS, why);
        return false;
    }
    if (rc > 0)
        n->peer_closed = true;
    return deliver(n, n->plain.data, n->plain.len);
}

bool nsq__conn_ingest(nsq__node_t *n, const char *data, size_t len)
{
    if (!n->xform)
        return nsq_frame_reader_commit(n->reader, len) == NSQ_OK;
    return ingest_wire(n, data, len);
}

/*
 * The encoding changes right after a frame: what the frame reader holds
 * beyond it is wire bytes of the new encoding.  Takes them out and feeds
 * them through the layers now on.
 */
static bool reencode_pending(nsq__node_t *n, bool through_tls)
{
    nsq_buf_t rest = {0};
    if (nsq_frame_reader_drain(n->reader, &rest) != NSQ_OK) {
        nsq__conn_fail(n, NSQ_ERR_CONNECT, "out of memory");
        return false;
    }
    bool ok = through_tls ? ingest_wire(n, rest.data, rest.len)
                          : deliver(n, rest.data, rest.len);
    nsq_buf_free(&rest);
    return ok;
}

static void become_ready(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    n->heartbeat_ms =
        p->conf->heartbeat_interval_ms > 0 ? p->conf->heartbeat_interval_ms : 0;
    n->state = NSQ__READY;
    n->failures = 0;
    NSQ__COUNT(&p->stats.connects, 1);
    nsq__log(p, NSQ_LOG_INFO, "connected to %s (nsqd %s%s%s%s)", n->addr,
             n->neg.negotiated ? n->neg.version : "without negotiation",
             n->tls ? ", TLS" : "",
             n->z ? (n->neg.snappy ? ", snappy" : ", deflate") : "",
             n->neg.auth_required ? ", AUTH" : "");
}

static void auth_or_ready(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    if (!n->neg.auth_required) {
        become_ready(n);
        return;
    }
    const char *secret = p->conf->auth_secret;
    if (!secret || !*secret) {
        char why[512];
        snprintf(why, sizeof why,
                 "%s: nsqd requires AUTH and auth_secret is not set", n->addr);
        nsq__conn_fail(n, NSQ_E_AUTH_FIRST, why);
        return;
    }
    if (nsq_cmd_auth(&n->ctl[0], secret, strlen(secret)) != NSQ_OK) {
        nsq__conn_fail(n, NSQ_ERR_CONNECT, "cannot encode AUTH");
        return;
    }
    n->hs = HS_AUTH;
}

/* Compression if nsqd granted it (after the frame that precedes it), then
 * AUTH or ready. */
static void compression_or_auth(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    bool snappy = p->conf->snappy && n->neg.snappy;
    bool deflate = p->conf->deflate && n->neg.deflate;
    if (!snappy && !deflate) {
        if (p->conf->snappy || p->conf->deflate)
            nsq__log(p, NSQ_LOG_INFO,
                     "%s: nsqd did not enable compression; continuing "
                     "without it",
                     n->addr);
        auth_or_ready(n);
        return;
    }
    int level = (int)(n->neg.deflate_level > 0 ? n->neg.deflate_level
                                               : p->conf->deflate_level);
    n->z = nsq_stream_new(snappy ? NSQ_STREAM_SNAPPY : NSQ_STREAM_DEFLATE,
                          level, 0);
    if (!n->z) {
        nsq__conn_fail(n, NSQ_ERR_COMPRESSION, "cannot start compression");
        return;
    }
    n->xform = true;
    n->hs = HS_Z_OK;
    /* Bytes after the frame that switched are compressed (inside TLS they
     * were already decrypted, so they only need decompressing). */
    reencode_pending(n, false);
}

/* The IDENTIFY reply: plain OK or nsqd's JSON; then the upgrades. */
static void identified(nsq__node_t *n, const nsq_frame_t *f)
{
    nsq_producer_t *p = n->p;
    char why[512];
    if (f->type == NSQ_FRAME_ERROR) {
        nsq_err_t code = nsq_err_from_frame(f->data, f->len);
        snprintf(why, sizeof why, "%s: IDENTIFY rejected: %.*s", n->addr,
                 (int)f->len, f->data);
        /* A rejected handshake fails what waits with nsqd's code. */
        nsq__conn_fail(n, code, why);
        return;
    }
    nsq_identify_reply_t reply;
    char perr[128];
    if (f->type != NSQ_FRAME_RESPONSE ||
        nsq_identify_reply_parse(f->data, f->len, &reply, perr, sizeof perr) !=
            NSQ_OK) {
        snprintf(why, sizeof why, "%s: bad IDENTIFY answer: %s", n->addr,
                 f->type == NSQ_FRAME_RESPONSE ? perr : "not a response");
        nsq__conn_fail(n, NSQ_ERR_PROTOCOL, why);
        return;
    }
    const nsq_conf_t *c = p->conf;
    if ((reply.tls_v1 && !c->tls_v1) || (reply.snappy && !c->snappy) ||
        (reply.deflate && !c->deflate)) {
        snprintf(why, sizeof why,
                 "%s: nsqd enabled a feature nsqpub did not ask for", n->addr);
        nsq__conn_fail(n, NSQ_ERR_PROTOCOL, why);
        return;
    }
    if (c->tls_v1 && !reply.tls_v1) {
        /* Never fall back to plain text silently. */
        snprintf(why, sizeof why,
                 "%s: TLS was asked for but nsqd did not enable it (%s); "
                 "refusing to continue without TLS",
                 n->addr,
                 reply.negotiated ? "tls_v1 false in its IDENTIFY reply"
                                  : "it answered IDENTIFY without negotiation");
        nsq__conn_fail(n, NSQ_ERR_TLS, why);
        return;
    }
    pthread_mutex_lock(&p->reply_lock);
    p->reply = reply;
    p->have_reply = true;
    pthread_mutex_unlock(&p->reply_lock);
    n->neg = reply;
    if (!c->tls_v1) {
        compression_or_auth(n);
        return;
    }
    n->tls = nsq__client_tls_new(p->tls_ctx, c, n->host, why, sizeof why);
    if (!n->tls) {
        nsq__conn_fail(n, NSQ_ERR_TLS, why);
        return;
    }
    n->xform = true;
    n->hs = HS_TLS;
    /* Starts the handshake (the ClientHello goes out with the next pump);
     * anything nsqd sent after its reply is already TLS. */
    reencode_pending(n, true);
}

void nsq__handshake_frame(nsq__node_t *n, const nsq_frame_t *f)
{
    nsq_producer_t *p = n->p;
    if (f->type == NSQ_FRAME_RESPONSE && f->len == 11 &&
        memcmp(f->data, "_heartbeat_", 11) == 0)
        return;
    char why[512];
    switch (n->hs) {
    case HS_IDENTIFY:
        identified(n, f);
        return;
    case HS_TLS_OK:
    case HS_Z_OK:
        if (f->type == NSQ_FRAME_RESPONSE && f->len == 2 &&
            memcmp(f->data, "OK", 2) == 0) {
            if (n->hs == HS_TLS_OK)
                compression_or_auth(n);
            else
                auth_or_ready(n);
            return;
        }
        snprintf(why, sizeof why, "%s: unexpected answer after %s: %.*s",
                 n->addr, n->hs == HS_TLS_OK ? "TLS" : "compression",
                 (int)(f->len > 200 ? 200 : f->len), f->data);
        nsq__conn_fail(n, NSQ_ERR_PROTOCOL, why);
        return;
    case HS_AUTH:
        if (f->type == NSQ_FRAME_ERROR) {
            /* E_AUTH_FAILED, E_UNAUTHORIZED: the publishes that wait get
             * nsqd's code; the secret is never part of the text. */
            nsq_err_t code = nsq_err_from_frame(f->data, f->len);
            snprintf(why, sizeof why, "%s: %.*s", n->addr,
                     (int)(f->len > 300 ? 300 : f->len), f->data);
            nsq__conn_fail(n, code, why);
            return;
        }
        nsq_auth_reply_t auth;
        char perr[128];
        if (nsq_auth_reply_parse(f->data, f->len, &auth, perr, sizeof perr) !=
            NSQ_OK) {
            snprintf(why, sizeof why, "%s: bad AUTH answer: %s", n->addr, perr);
            nsq__conn_fail(n, NSQ_ERR_PROTOCOL, why);
            return;
        }
        pthread_mutex_lock(&p->reply_lock);
        p->auth = auth;
        p->have_auth = true;
        pthread_mutex_unlock(&p->reply_lock);
        become_ready(n);
        return;
    default:
        nsq__conn_fail(n, NSQ_ERR_PROTOCOL, "unexpected frame during TLS");
        return;
    }
}

bool nsq__conn_encode(nsq__node_t *n, const uv_buf_t *bufs, size_t nbufs,
                      nsq_buf_t *wire)
{
    char why[512];
    n->wplain.len = 0;
    for (size_t i = 0; i < nbufs; i++)
        if (nsq_buf_append(&n->wplain, bufs[i].base, bufs[i].len) != NSQ_OK)
            return false;
    const char *data = n->wplain.data;
    size_t len = n->wplain.len;
    if (n->z && len) {
        n->wz.len = 0;
        if (nsq_stream_compress(n->z, data, len, &n->wz) != NSQ_OK)
            return false;
        data = n->wz.data;
        len = n->wz.len;
    }
    if (!n->tls)
        return nsq_buf_append(wire, data, len) == NSQ_OK;
    if (len && !nsq__client_tls_write(n->tls, data, len, why, sizeof why))
        return false;
    return nsq__client_tls_take_output(n->tls, wire);
}

/* ---------------------------------------------------------------- connect */

void nsq__on_close(uv_handle_t *h)
{
    nsq__node_t *n = h->data;
    nsq_producer_t *p = n->p;
    free(h);
    n->state = NSQ__DISCONNECTED;
    bool closing = p->closing_handles;
    nsq__handle_gone(p); /* when closing, p may be gone with it */
    if (closing)
        return;
    if (p->stop_draining) {
        /* Stop writes what is queued: a connection lost while it waits is
         * made again, within stop_timeout, for what was never written. */
        nsq__drain_queue(p);
        if (n->waiting.head && nsq__mono_ms() < p->stop_deadline_ms) {
            nsq__connect_start(n);
            nsq__arm_tick(p);
            return;
        }
        nsq__finish_stop(p);
        return;
    }
    /* Commands queued while the old connection closed get a new one. */
    nsq__route(p);
    nsq__arm_tick(p);
}

/*
 * Ends the connection: in-flight commands get err (in doubt, or not sent
 * when nsqd closed after rejecting an earlier one); during connect, the
 * waiting commands fail too and the next attempt backs off.
 */
void nsq__conn_fail(nsq__node_t *n, nsq_err_t err, const char *why)
{
    nsq_producer_t *p = n->p;
    if (n->state == NSQ__CLOSING || n->state == NSQ__DISCONNECTED)
        return;
    bool connecting = n->state != NSQ__READY;
    nsq__log(p, NSQ_LOG_WARNING, "%s", why);
    /* Counted before any result is delivered, so that a caller who got
     * one sees the counters that explain it. */
    if (connecting)
        NSQ__COUNT(&p->stats.connect_failures, 1);
    else
        NSQ__COUNT(&p->stats.disconnects, 1);
    nsq__txn_t *t;
    NSQ__COUNT(&n->stats.failures, 1);
    n->last_fail_ms = nsq__mono_ms();
    /* In flight: not processed (retry_not_sent), or in doubt (retried
     * only with retry_in_doubt: at least once).  What libuv still writes
     * is held until the write ends. */
    nsq_err_t fate = err == NSQ_ERR_NOT_SENT ? err : NSQ_ERR_IN_DOUBT;
    char detail[512];
    if (fate == NSQ_ERR_NOT_SENT)
        snprintf(detail, sizeof detail, "%s", why);
    else
        snprintf(detail, sizeof detail,
                 "written, connection lost before nsqd answered: %s", why);
    while ((t = nsq__list_pop(&n->inflight)) != NULL) {
        NSQ__UNCOUNT(&p->stats.in_flight, 1);
        NSQ__UNCOUNT(&n->stats.in_flight, 1);
        if (nsq__retry(n, t, fate, detail, false))
            p->reroute = true;
        else
            nsq__finish(p, t, fate, detail);
    }
    if (connecting) {
        n->failures++;
        /* Capped exponential backoff with jitter: the window is a random
         * point in [b/2, b], b = reconnect_backoff * 2^(failures-1). */
        int64_t b = p->conf->reconnect_backoff_ms;
        for (int i = 1;
             i < n->failures && b < p->conf->max_reconnect_backoff_ms; i++)
            b *= 2;
        if (b > p->conf->max_reconnect_backoff_ms)
            b = p->conf->max_reconnect_backoff_ms;
        int64_t wait =
            b / 2 + (int64_t)(nsq__random(p) % (uint64_t)(b / 2 + 1));
        n->backoff_until_ms = nsq__mono_ms() + wait;
        /* Observable (tests check doubling, cap and jitter from it). */
        nsq__log(p, NSQ_LOG_DEBUG,
                 "backoff: failure %d in a row, next attempt in %lldms "
                 "(window %lldms)",
                 n->failures, (long long)wait, (long long)b);
        /* What the attempt's publishes, and those inside the backoff
         * window, are told: TLS, compression and nsqd's own codes (a
         * rejected IDENTIFY or AUTH) as such, anything else as a failed
         * connect. */
        n->last_error_code = err == NSQ_ERR_TLS || err == NSQ_ERR_COMPRESSION ||
                                     nsq_err_is_broker(err)
                                 ? err
                                 : NSQ_ERR_CONNECT;
        pthread_mutex_lock(&n->err_lock);
        snprintf(n->last_error, sizeof n->last_error, "%s", why);
        pthread_mutex_unlock(&n->err_lock);
        snprintf(detail, sizeof detail, "%s (not sent)", why);
        nsq__fail_waiting(n, n->last_error_code, detail);
    }
    nsq__conn_forget_addrs(n);
    n->heartbeat_ms = 0;
    n->state = NSQ__CLOSING;
    reset_layers(n);
    if (n->tcp) {
        uv_read_stop((uv_stream_t *)n->tcp);
        uv_close((uv_handle_t *)n->tcp, nsq__on_close);
        n->tcp = NULL;
    } else {
        /* Failed before a socket existed (resolving). */
        n->state = NSQ__DISCONNECTED;
        nsq__conn_forget_lookup(n);
    }
    nsq__arm_tick(p);
}

static void connect_to(nsq__node_t *n, const struct sockaddr *sa);

void nsq__conn_forget_addrs(nsq__node_t *n)
{
    uv_freeaddrinfo(n->addrs);
    n->addrs = n->next_addr = NULL;
}

/* An attempt given up for the name's next address is closed aside. */
static void on_attempt_closed(uv_handle_t *h)
{
    nsq__node_t *n = h->data;
    free(h);
    nsq__handle_gone(n->p); /* when closing, p may be gone with it */
}

static void on_connect(uv_connect_t *req, int status)
{
    nsq__node_t *n = req->data;
    nsq_producer_t *p = n->p;
    if (n->state != NSQ__CONNECTING)
        return; /* a dial timeout closed it meanwhile */
    if (status < 0 && n->next_addr) {
        /* The name has another address: try it, within dial_timeout. */
        nsq__log(p, NSQ_LOG_DEBUG, "connect %s: %s; trying its next address",
                 n->addr, uv_strerror(status));
        uv_close((uv_handle_t *)n->tcp, on_attempt_closed);
        n->tcp = NULL;
        struct addrinfo *a = n->next_addr;
        n->next_addr = a->ai_next;
        connect_to(n, a->ai_addr);
        return;
    }
    nsq__conn_forget_addrs(n);
    if (status < 0) {
        char why[512];
        snprintf(why, sizeof why, "connect %s: %s", n->addr,
                 uv_strerror(status));
        nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
        return;
    }
    uv_tcp_nodelay(n->tcp, 1);
    const nsq_conf_t *c = p->conf;
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = c->client_id;
    id.hostname = c->hostname;
    id.user_agent = c->user_agent;
    id.heartbeat_interval = c->heartbeat_interval_ms;
    id.output_buffer_size = c->output_buffer_size;
    id.output_buffer_timeout = c->output_buffer_timeout_ms;
    id.msg_timeout = c->msg_timeout_ms;
    id.sample_rate = c->sample_rate;
    id.tls_v1 = c->tls_v1;
    id.snappy = c->snappy;
    id.deflate = c->deflate;
    id.deflate_level = c->deflate_level;
    n->ctl[0].len = 0;
    if (nsq_cmd_magic(&n->ctl[0]) != NSQ_OK ||
        nsq_cmd_identify(&n->ctl[0], &id) != NSQ_OK) {
        nsq__conn_fail(n, NSQ_ERR_CONNECT, "cannot encode IDENTIFY");
        return;
    }
    /* Forget any bytes and layers of an earlier connection. */
    reset_layers(n);
    nsq_frame_reader_destroy(n->reader);
    n->reader = nsq_frame_reader_new(0);
    if (!n->reader) {
        nsq__conn_fail(n, NSQ_ERR_CONNECT, "out of memory");
        return;
    }
    memset(&n->neg, 0, sizeof n->neg);
    n->state = NSQ__IDENTIFYING;
    n->phase_started_ms = n->last_read_ms = nsq__mono_ms();
    uv_read_start((uv_stream_t *)n->tcp, nsq__on_alloc, on_read_cb);
    nsq__pump(n);
}

/* Opens the socket and connects it to sa. */
static void connect_to(nsq__node_t *n, const struct sockaddr *sa)
{
    nsq_producer_t *p = n->p;
    n->state = NSQ__CONNECTING;
    n->tcp = malloc(sizeof *n->tcp);
    int rc = n->tcp ? uv_tcp_init(p->loop, n->tcp) : UV_ENOMEM;
    if (rc == 0) {
        p->open_handles++;
        n->tcp->data = n;
        n->connect_req.data = n;
        rc = uv_tcp_connect(&n->connect_req, n->tcp, sa, on_connect);
    } else {
        free(n->tcp);
        n->tcp = NULL;
    }
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "connect %s: %s", n->addr, uv_strerror(rc));
        nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
    }
}

void nsq__conn_forget_lookup(nsq__node_t *n)
{
    if (n->gai) {
        uv_cancel((uv_req_t *)n->gai);
        n->gai = NULL;
    }
}

/* A name lookup ended.  Each has a request of its own: a node that gave
 * up on one (dial timeout) may start the next while libuv still runs it. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    nsq__node_t *n = req->data;
    nsq_producer_t *p = n->p;
    bool current = n->gai == req && n->state == NSQ__RESOLVING;
    if (n->gai == req)
        n->gai = NULL;
    free(req);
    if (!current) {
        uv_freeaddrinfo(ai);
        nsq__handle_gone(p); /* when closing, p may be gone with it */
        return;
    }
    nsq__handle_gone(p);
    if (status < 0 || !ai) {
        char why[512];
        snprintf(why, sizeof why, "resolve %.200s: %s", n->host,
                 uv_strerror(status));
        uv_freeaddrinfo(ai);
        nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
        return;
    }
    /* Kept while its addresses are tried in turn (on_connect). */
    n->addrs = ai;
    n->next_addr = ai->ai_next;
    connect_to(n, ai->ai_addr);
}

/* Starts a connection, or fails what waits if inside the backoff window. */
void nsq__connect_start(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    int64_t now = nsq__mono_ms();
    if (now < n->backoff_until_ms) {
        char why[512];
        snprintf(why, sizeof why, "%s (next attempt in %lldms; not sent)",
                 n->last_error, (long long)(n->backoff_until_ms - now));
        nsq__fail_waiting(n, n->last_error_code, why);
        return;
    }
    n->phase_started_ms = now;
    /* A numeric address needs no lookup (and no thread of libuv's pool). */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
    int port = atoi(n->port);
    if (uv_ip4_addr(n->host, port, &sa.in4) == 0 ||
        uv_ip6_addr(n->host, port, &sa.in6) == 0) {
        connect_to(n, &sa.sa);
        nsq__arm_tick(p);
        return;
    }
    n->state = NSQ__RESOLVING;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    uv_getaddrinfo_t *req = malloc(sizeof *req);
    if (req)
        req->data = n;
    int rc = req ? uv_getaddrinfo(p->loop, req, on_resolved, n->host, n->port,
                                  &hints)
                 : UV_ENOMEM;
    if (rc == 0) {
        n->gai = req;
        p->open_handles++;
    } else {
        free(req);
        char why[512];
        snprintf(why, sizeof why, "resolve %.200s: %s", n->host,
                 uv_strerror(rc));
        nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
    }
    nsq__arm_tick(p);
}
