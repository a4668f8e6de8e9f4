/*
 * The public producer API that both hosts share: construction, the
 * enqueue path that publishing threads run, sync calls as async calls
 * plus a done-signal, and stats.  Hosting (which thread runs the loop,
 * how it is woken, how it ends) is in host_thread.c and host_loop.c;
 * everything that touches a connection is in router.c, wire.c, node.c and
 * conn.c, on the loop.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "internal.h"
#include "tls.h"

int64_t nsq__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec nsq__deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

bool nsq__on_loop_thread(nsq_producer_t *p)
{
    return pthread_equal(pthread_self(), p->loop_tid) != 0;
}

nsq_err_t nsq__refuse_wait(nsq_producer_t *p)
{
    if (nsq__on_loop_thread(p))
        return NSQ_ERR_WOULD_DEADLOCK;
    return p->app_loop ? NSQ_ERR_WRONG_THREAD : NSQ_OK;
}

void nsq__log(nsq_producer_t *p, int level, const char *fmt, ...)
{
    if (!p->conf->log_cb || level > p->conf->log_level)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->conf->log_cb(p->conf->log_opaque, level, msg);
}

void nsq__put_err(char *errstr, size_t errlen, const char *msg)
{
    if (errstr && errlen) {
        size_t n = strlen(msg);
        if (n >= errlen)
            n = errlen - 1;
        memcpy(errstr, msg, n);
        errstr[n] = '\0';
    }
}
#define put_err nsq__put_err

/* Frees what nsq__producer_new set up besides the loop's handles (shared
 * by a failed new and by the end).  The conf is the caller's business. */
static void free_producer(nsq_producer_t *p)
{
    for (size_t i = 0; i < p->nnodes; i++)
        nsq__node_free(p->nodes[i]);
    free(p->nodes);
    nsq__client_tls_ctx_free(p->tls_ctx);
    pthread_mutex_destroy(&p->qlock);
    pthread_mutex_destroy(&p->stop_lock);
    pthread_mutex_destroy(&p->reply_lock);
    pthread_mutex_destroy(&p->nodes_lock);
    pthread_cond_destroy(&p->qspace);
    pthread_cond_destroy(&p->stop_cond);
    free(p->addr);
    free(p);
}

void nsq__producer_free(nsq_producer_t *p)
{
    nsq__txn_pool_free(p);
    nsq_conf_destroy(p->conf);
    free_producer(p);
}

void nsq__handle_gone(nsq_producer_t *p)
{
    if (--p->open_handles == 0 && p->closing_handles && p->app_loop)
        nsq__loop_host_closed(p);
}

void nsq__on_handle_closed(uv_handle_t *h)
{
    nsq__handle_gone(h->data);
}

/* One node per address of the comma-separated list p->addr. */
static bool add_given_nodes(nsq_producer_t *p, char *why, size_t whylen)
{
    for (const char *a = p->addr; *a;) {
        size_t len = strcspn(a, ",");
        if (len) {
            nsq__node_t *n = nsq__node_new(p, a, len, why, whylen);
            if (!n)
                return false;
            n->given = true;
        }
        a += len;
        if (*a == ',')
            a++;
    }
    return true;
}

/*
 * What both hosts share: validation, the nodes, TLS, and the router's
 * handles on the loop (the host adds its own wake-up).  Nothing that can
 * fail comes after the first handle, so a failure leaves none behind.
 */
nsq_producer_t *nsq__producer_new(uv_loop_t *loop, const char *addr,
                                  nsq_conf_t *conf, char *errstr, size_t errlen)
{
    char why[256];
    nsq_conf_t *own = NULL;
    if (!conf) {
        own = conf = nsq_conf_new();
        if (!conf) {
            put_err(errstr, errlen, "out of memory");
            return NULL;
        }
    }
    if (nsq__conf_validate(conf, why, sizeof why) != NSQ_OK) {
        put_err(errstr, errlen, why);
        nsq_conf_destroy(own);
        return NULL;
    }
    bool lookupd =
        conf->lookupd_http_addresses && conf->lookupd_http_addresses[0];
    if (!addr && !lookupd) {
        put_err(errstr, errlen, "no address");
        nsq_conf_destroy(own);
        return NULL;
    }
    nsq_producer_t *p = calloc(1, sizeof *p);
    if (p) {
        pthread_mutex_init(&p->qlock, NULL);
        pthread_mutex_init(&p->stop_lock, NULL);
        pthread_mutex_init(&p->reply_lock, NULL);
        pthread_mutex_init(&p->nodes_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->qspace, &ca);
        pthread_cond_init(&p->stop_cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (!p || !(p->addr = strdup(addr ? addr : ""))) {
        if (p)
            free_producer(p);
        nsq_conf_destroy(own);
        put_err(errstr, errlen, "out of memory");
        return NULL;
    }
    bool ok = add_given_nodes(p, why, sizeof why);
    if (ok && p->nnodes == 0 && !lookupd) {
        snprintf(why, sizeof why,
                 "bad address \"%s\" (want host:port or [ipv6]:port)", addr);
        ok = false;
    }
    /* Load the CA and client certificate now, so a bad file is an error
     * of nsq_producer_new rather than of every publish. */
    if (ok && conf->tls_v1 &&
        !(p->tls_ctx = nsq__client_tls_ctx_new(conf, why, sizeof why)))
        ok = false;
    p->conf = conf;
    p->app_loop = loop != NULL;
    p->loop = loop ? loop : &p->own_loop;
    int rc = ok && !loop ? uv_loop_init(p->loop) : 0;
    if (ok && rc != 0) {
        snprintf(why, sizeof why, "cannot start the producer: %s",
                 uv_strerror(rc));
        ok = false;
    }
    /* Discovery's first round starts now; the loop runs it.  It has no
     * handle on the loop when it fails. */
    char disc_why[200] = "";
    if (ok && !nsq__cluster_start(p, disc_why, sizeof disc_why)) {
        snprintf(why, sizeof why, "lookupd_http_addresses: %s", disc_why);
        if (!loop)
            uv_loop_close(p->loop);
        ok = false;
    }
    if (!ok) {
        put_err(errstr, errlen, why);
        free_producer(p);
        nsq_conf_destroy(own);
        return NULL;
    }
    p->open_handles += p->disc != NULL;
    p->strategy = strcmp(conf->strategy, "failover") == 0 ? NSQ__FAILOVER
                  : strcmp(conf->strategy, "least_outstanding") == 0
                      ? NSQ__LEAST_OUTSTANDING
                      : NSQ__ROUND_ROBIN;
    nsq_limits_default(&p->lim);
    p->lim.max_msg_size = conf->max_msg_size;
    p->lim.max_body_size = conf->max_body_size;
    p->rng = (uint64_t)nsq__mono_ms() ^ (uint64_t)(uintptr_t)p;
    uv_timer_init(p->loop, &p->tick);
    p->tick.data = p;
    uv_timer_start(&p->tick, nsq__router_on_tick, 250, 250);
    p->open_handles++;
    for (size_t i = 0; i < p->nnodes; i++)
        nsq__node_start(p->nodes[i]);
    return p;
}

const char *nsq_producer_address(const nsq_producer_t *p)
{
    return p->addr;
}

/* Waits for room in the queue for n messages, at most queue_full_timeout.
 * The caller stays counted in `concurrent` while it waits; a stop wakes it
 * (nsq_producer_stop broadcasts qspace after setting `stopping`), so the
 * loop thread's final spin is short.  Returns true with the room reserved. */
static bool reserve_room(nsq_producer_t *p, int64_t n)
{
    int64_t max = p->conf->queue_max_messages;
    int64_t cur = atomic_fetch_add(&p->queued, n);
    if (cur + n <= max || cur == 0)
        return true;
    atomic_fetch_sub(&p->queued, n);
    int64_t wait = p->conf->queue_full_timeout_ms;
    if (wait <= 0 || nsq__on_loop_thread(p))
        return false;
    /* Observable (tests wait for it): this caller is about to wait. */
    nsq__log(p, NSQ_LOG_DEBUG, "queue full: waiting up to %lldms for room",
             (long long)wait);
    struct timespec dl = nsq__deadline(wait);
    bool ok = false;
    pthread_mutex_lock(&p->qlock);
    atomic_fetch_add(&p->space_waiters, 1);
    for (;;) {
        cur = atomic_fetch_add(&p->queued, n);
        if (cur + n <= max || cur == 0) {
            ok = true;
            break;
        }
        atomic_fetch_sub(&p->queued, n);
        if (atomic_load(&p->stopping))
            break;
        if (pthread_cond_timedwait(&p->qspace, &p->qlock, &dl) == ETIMEDOUT)
            break;
    }
    atomic_fetch_sub(&p->space_waiters, 1);
    pthread_mutex_unlock(&p->qlock);
    return ok;
}

/*
 * The enqueue path on the application's loop (host_loop.c): one thread,
 * so the router's list itself, no count of callers inside, no wake-up:
 * the host runs the router before the loop next polls.  A full queue
 * fails at once (waiting would stop the loop that makes room).
 */
static nsq_err_t submit_on_loop(nsq_producer_t *p, nsq__txn_t *t)
{
    /* prepare() saw no stop, and only this thread can start one. */
    int64_t cur = atomic_load_explicit(&p->queued, memory_order_relaxed);
    if (cur + t->nmsgs > p->conf->queue_max_messages && cur != 0) {
        NSQ__COUNT(&p->stats.queue_full, 1);
        return NSQ_ERR_QUEUE_FULL;
    }
    NSQ__COUNT(&p->queued, t->nmsgs);
    if (p->conf->test_enqueue_hook)
        p->conf->test_enqueue_hook(p->conf->test_enqueue_opaque);
    t->deadline_ms = nsq__mono_ms() + p->conf->publish_timeout_ms;
    nsq__list_push(&p->unrouted, t);
    nsq__loop_host_schedule(p);
    return NSQ_OK;
}

/*
 * The enqueue path, on the publishing thread.  The count of callers inside
 * it lets the loop thread's final cleanup wait until nobody can still push:
 * a caller that enters after the stop flag is set sees it and backs out.
 */
static nsq_err_t submit(nsq_producer_t *p, nsq__txn_t *t)
{
    if (p->app_loop)
        return submit_on_loop(p, t);
    atomic_fetch_add(&p->concurrent, 1);
    if (atomic_load(&p->stopping)) {
        atomic_fetch_sub(&p->concurrent, 1);
        return NSQ_ERR_STOPPED;
    }
    if (!reserve_room(p, t->nmsgs)) {
        atomic_fetch_sub(&p->concurrent, 1);
        atomic_fetch_add(&p->stats.queue_full, 1);
        return atomic_load(&p->stopping) ? NSQ_ERR_STOPPED : NSQ_ERR_QUEUE_FULL;
    }
    if (atomic_load(&p->stopping)) {
        atomic_fetch_sub(&p->queued, t->nmsgs);
        atomic_fetch_sub(&p->concurrent, 1);
        return NSQ_ERR_STOPPED;
    }
    if (p->conf->test_enqueue_hook)
        p->conf->test_enqueue_hook(p->conf->test_enqueue_opaque);
    t->deadline_ms = nsq__mono_ms() + p->conf->publish_timeout_ms;
    /* Onto the inbox.  Only the push that finds it empty wakes the loop:
     * a non-empty inbox has a wake-up on its way (its first pusher sent
     * it, and the loop empties the inbox only when that wake-up runs). */
    nsq__txn_t *old = atomic_load_explicit(&p->inbox, memory_order_relaxed);
    do
        t->next = old;
    while (!atomic_compare_exchange_weak_explicit(
        &p->inbox, &old, t, memory_order_release, memory_order_relaxed));
    if (!old)
        uv_async_send(&p->wake);
    atomic_fetch_sub(&p->concurrent, 1);
    return NSQ_OK;
}

/* Encodes one command into a fresh transaction. */
static nsq_err_t prepare(nsq_producer_t *p, nsq__txn_kind_t kind,
                         const char *topic, int64_t delay_ms, const void *body,
                         size_t len, const nsq_iov_t *msgs, size_t count,
                         nsq__txn_t **out)
{
    if (!p)
        return NSQ_ERR_INVALID_ARG;
    if (p->app_loop && !nsq__on_loop_thread(p))
        return NSQ_ERR_WRONG_THREAD;
    if (atomic_load_explicit(&p->stopping, memory_order_relaxed))
        return NSQ_ERR_STOPPED;
    /* The exact size of the command (a DPUB's delay at its longest). */
    size_t tl = topic ? strnlen(topic, 256) : 0, need;
    switch (kind) {
    case NSQ__TXN_PUB:
        need = 4 + tl + 1 + 4 + len;
        break;
    case NSQ__TXN_DPUB:
        need = 5 + tl + 1 + 20 + 1 + 4 + len;
        break;
    case NSQ__TXN_MPUB:
        need = 5 + tl + 1 + 8;
        for (size_t i = 0; msgs && i < count && need < SIZE_MAX / 2; i++)
            need += 4 + msgs[i].len;
        break;
    default:
        need = 4;
        break;
    }
    if (need > (size_t)p->lim.max_body_size + 512)
        need = 0; /* too big: the encoder refuses it before appending */
    nsq__txn_t *t = nsq__txn_get(p, need);
    if (!t)
        return NSQ_ERR_NOMEM;
    /* The encoders append to a buffer: this one is the transaction's own
     * room.  need is exactly what a valid command takes, and the encoders
     * refuse an invalid one before they append, so they never grow it
     * (which would realloc memory inside the transaction). */
    nsq_buf_t cmd = {.data = t->data, .len = 0, .cap = t->cap};
    nsq_err_t err;
    switch (kind) {
    case NSQ__TXN_PUB:
        err = nsq_cmd_pub(&cmd, topic, body, len, &p->lim);
        break;
    case NSQ__TXN_DPUB:
        err = nsq_cmd_dpub(&cmd, topic, delay_ms, body, len, &p->lim);
        break;
    case NSQ__TXN_MPUB:
        err = nsq_cmd_mpub(&cmd, topic, msgs, count, &p->lim);
        t->nmsgs = (uint32_t)count;
        break;
    default:
        err = nsq_cmd_nop(&cmd);
        t->nmsgs = 0;
        break;
    }
    t->len = (uint32_t)cmd.len;
    if (err != NSQ_OK) {
        nsq__txn_release(p, t);
        return err;
    }
    t->kind = (uint8_t)kind;
    if (kind == NSQ__TXN_PUB) {
        /* "PUB <topic>\n": what a coalesced MPUB leaves out of it. */
        const char *nl = memchr(t->data, '\n', t->len);
        t->line = (uint8_t)(nl - t->data + 1);
    }
    *out = t;
    return NSQ_OK;
}

static nsq_err_t publish_async(nsq_producer_t *p, nsq__txn_kind_t kind,
                               const char *topic, int64_t delay_ms,
                               const void *body, size_t len,
                               const nsq_iov_t *msgs, size_t count,
                               nsq_done_cb cb, void *opaque)
{
    nsq__txn_t *t;
    nsq_err_t err =
        prepare(p, kind, topic, delay_ms, body, len, msgs, count, &t);
    if (err != NSQ_OK)
        return err;
    t->cb = cb;
    t->opaque = opaque;
    err = submit(p, t);
    if (err != NSQ_OK)
        nsq__txn_release(p, t);
    return err;
}

/*
 * A sync call: the async path with a done-signal.  The loop thread
 * completes every transaction by its deadline; the extra second here only
 * guards against a loop that can no longer run, so that no caller waits
 * forever.
 */
static nsq_err_t publish_sync(nsq_producer_t *p, nsq__txn_kind_t kind,
                              const char *topic, int64_t delay_ms,
                              const void *body, size_t len,
                              const nsq_iov_t *msgs, size_t count, char *errstr,
                              size_t errlen)
{
    nsq_err_t refused = p ? nsq__refuse_wait(p) : NSQ_OK;
    if (refused != NSQ_OK) {
        put_err(errstr, errlen,
                refused == NSQ_ERR_WRONG_THREAD
                    ? "called from a thread other than the producer's loop"
                : p->app_loop
                    ? "sync call on the application's loop (the producer "
                      "runs there): use the async call"
                    : "sync call from the producer's loop thread (a "
                      "callback)");
        return refused;
    }
    nsq__txn_t *t;
    nsq_err_t err =
        prepare(p, kind, topic, delay_ms, body, len, msgs, count, &t);
    if (err != NSQ_OK) {
        put_err(errstr, errlen, nsq_err2str(err));
        return err;
    }
    nsq__sync_wait_t w = {.errstr = errstr, .errlen = errlen};
    atomic_init(&w.state, NSQ__SYNC_WAITING);
    t->sync = true;
    atomic_store_explicit(&t->waiter, &w, memory_order_relaxed);
    atomic_store_explicit(&t->refs, 2, memory_order_relaxed);
    err = submit(p, t);
    if (err != NSQ_OK) {
        atomic_store(&t->refs, 1);
        nsq__txn_release(p, t);
        put_err(errstr, errlen, nsq_err2str(err));
        return err;
    }
    int64_t until = nsq__mono_ms() + p->conf->publish_timeout_ms + 1000;
    bool gave_up = false;
    while (atomic_load_explicit(&w.state, memory_order_acquire) !=
           NSQ__SYNC_DONE) {
        int64_t left = until - nsq__mono_ms();
        if (left <= 0 && !gave_up) {
            /* Take the done-signal back; if the loop thread already took
             * it, its result is on its way (wait for it). */
            gave_up = true;
            if (atomic_exchange(&t->waiter, NULL) == &w) {
                nsq__txn_release(p, t);
                put_err(errstr, errlen, "no result from the producer in time");
                return NSQ_ERR_TIMED_OUT;
            }
            left = 1000;
        }
        int expect = NSQ__SYNC_WAITING;
        atomic_compare_exchange_strong(&w.state, &expect, NSQ__SYNC_SLEEPING);
        if (expect == NSQ__SYNC_DONE)
            break;
#if defined(__linux__)
        struct timespec ts = {(time_t)(left / 1000),
                              (long)(left % 1000) * 1000000};
        syscall(SYS_futex, (int *)&w.state, FUTEX_WAIT_PRIVATE,
                NSQ__SYNC_SLEEPING, &ts, NULL, 0);
#else
        sched_yield();
#endif
    }
    err = w.result;
    nsq__txn_release(p, t);
    return err;
}

void nsq__sync_done(nsq__txn_t *t, nsq_err_t err, const char *detail)
{
    nsq__sync_wait_t *w = atomic_exchange(&t->waiter, NULL);
    if (!w)
        return; /* the caller gave up */
    w->result = err;
    put_err(w->errstr, w->errlen, detail);
    if (atomic_exchange_explicit(&w->state, NSQ__SYNC_DONE,
                                 memory_order_release) == NSQ__SYNC_SLEEPING) {
#if defined(__linux__)
        /* The caller may return as soon as it sees DONE (a spurious
         * wake-up), so this can wake an address no longer in use: a
         * futex wake touches no memory, and futex waiters re-check. */
        syscall(SYS_futex, (int *)&w->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
                0);
#endif
    }
}

nsq_err_t nsq_producer_publish_async(nsq_producer_t *p, const char *topic,
                                     const void *body, size_t len,
                                     nsq_done_cb cb, void *opaque)
{
    return publish_async(p, NSQ__TXN_PUB, topic, 0, body, len, NULL, 0, cb,
                         opaque);
}

nsq_err_t nsq_producer_multi_publish_async(nsq_producer_t *p, const char *topic,
                                           const nsq_iov_t *msgs, size_t count,
                                           nsq_done_cb cb, void *opaque)
{
    return publish_async(p, NSQ__TXN_MPUB, topic, 0, NULL, 0, msgs, count, cb,
                         opaque);
}

nsq_err_t nsq_producer_deferred_publish_async(nsq_producer_t *p,
                                              const char *topic,
                                              int64_t delay_ms,
                                              const void *body, size_t len,
                                              nsq_done_cb cb, void *opaque)
{
    return publish_async(p, NSQ__TXN_DPUB, topic, delay_ms, body, len, NULL, 0,
                         cb, opaque);
}

nsq_err_t nsq_producer_publish(nsq_producer_t *p, const char *topic,
                               const void *body, size_t len, char *errstr,
                               size_t errlen)
{
    return publish_sync(p, NSQ__TXN_PUB, topic, 0, body, len, NULL, 0, errstr,
                        errlen);
}

nsq_err_t nsq_producer_multi_publish(nsq_producer_t *p, const char *topic,
                                     const nsq_iov_t *msgs, size_t count,
                                     char *errstr, size_t errlen)
{
    return publish_sync(p, NSQ__TXN_MPUB, topic, 0, NULL, 0, msgs, count,
                        errstr, errlen);
}

nsq_err_t nsq_producer_deferred_publish(nsq_producer_t *p, const char *topic,
                                        int64_t delay_ms, const void *body,
                                        size_t len, char *errstr, size_t errlen)
{
    return publish_sync(p, NSQ__TXN_DPUB, topic, delay_ms, body, len, NULL, 0,
                        errstr, errlen);
}

nsq_err_t nsq_producer_ping(nsq_producer_t *p, char *errstr, size_t errlen)
{
    return publish_sync(p, NSQ__TXN_PING, NULL, 0, NULL, 0, NULL, 0, errstr,
                        errlen);
}

nsq_err_t nsq_producer_ping_async(nsq_producer_t *p, nsq_done_cb cb,
                                  void *opaque)
{
    return publish_async(p, NSQ__TXN_PING, NULL, 0, NULL, 0, NULL, 0, cb,
                         opaque);
}

void nsq_producer_stats(nsq_producer_t *p, nsq_producer_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->published = atomic_load(&p->stats.published);
    out->commands_ok = atomic_load(&p->stats.commands_ok);
    out->rejected = atomic_load(&p->stats.rejected);
    out->not_sent = atomic_load(&p->stats.not_sent);
    out->in_doubt = atomic_load(&p->stats.in_doubt);
    out->timed_out = atomic_load(&p->stats.timed_out);
    out->stopped = atomic_load(&p->stats.stopped);
    out->queue_full = atomic_load(&p->stats.queue_full);
    int64_t q = atomic_load(&p->queued);
    out->queued = q > 0 ? (uint64_t)q : 0;
    out->in_flight = atomic_load(&p->stats.in_flight);
    out->connects = atomic_load(&p->stats.connects);
    out->connect_failures = atomic_load(&p->stats.connect_failures);
    out->disconnects = atomic_load(&p->stats.disconnects);
    out->bytes_written = atomic_load(&p->stats.bytes_written);
    out->heartbeats = atomic_load(&p->stats.heartbeats);
    out->commands_written = atomic_load(&p->stats.commands_written);
    out->coalesced = atomic_load(&p->stats.coalesced);
}

nsq_err_t nsq_producer_identify_reply(nsq_producer_t *p,
                                      nsq_identify_reply_t *out)
{
    pthread_mutex_lock(&p->reply_lock);
    bool have = p->have_reply;
    if (have)
        *out = p->reply;
    pthread_mutex_unlock(&p->reply_lock);
    return have ? NSQ_OK : NSQ_ERR_NOT_SENT;
}

nsq_err_t nsq_producer_auth_reply(nsq_producer_t *p, nsq_auth_reply_t *out)
{
    pthread_mutex_lock(&p->reply_lock);
    bool have = p->have_auth;
    if (have)
        *out = p->auth;
    pthread_mutex_unlock(&p->reply_lock);
    return have ? NSQ_OK : NSQ_ERR_NOT_SENT;
}
