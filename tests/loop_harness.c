/*
 * The loop harness (see loop_harness.h): producers on a uv loop that a
 * thread of the harness runs, driven by suites written for the threaded
 * producer.
 */
#define NSQ_LOOP_HARNESS_IMPL
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "internal.h"
#include "loop_harness.h"

/* A producer as the suite sees it. */
typedef struct harness_prod harness_prod_t;
struct harness_prod {
    nsq_producer_t *p; /* the producer; NULL once on_closed ran (freed):
                          the fields below hold then (H.mu) */
    bool closing;      /* close asked (loop thread only) */
    nsq_producer_stats_t stats;
    size_t nnodes;
    nsq_node_stats_t *nodes;
    nsq_err_t id_rc;
    nsq_identify_reply_t id;
    nsq_err_t auth_rc;
    nsq_auth_reply_t auth;
    char *addr;
    harness_prod_t *next;
};

/* A call carried to the loop thread; its caller waits for done. */
typedef struct harness_job {
    void (*fn)(void *arg);
    void *arg;
    bool done;
    struct harness_job *next;
} harness_job_t;

static struct {
    pthread_mutex_t mu; /* guards everything here but the loop */
    pthread_cond_t cv;  /* a job, a sync call or a close finished */
    bool running;
    uv_loop_t loop;
    uv_async_t wake;
    pthread_t thread;
    harness_job_t *jobs;
    harness_job_t *last;
    harness_prod_t *prods;
} H = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static _Thread_local bool harness_is_loop;

bool harness_on_loop_thread(void)
{
    return harness_is_loop;
}

/* ---------------------------------------------------------------- loop */

static void on_wake(uv_async_t *h)
{
    (void)h;
    pthread_mutex_lock(&H.mu);
    harness_job_t *j = H.jobs;
    H.jobs = H.last = NULL;
    pthread_mutex_unlock(&H.mu);
    while (j) {
        harness_job_t *next = j->next; /* j is gone once done is seen */
        j->fn(j->arg);
        pthread_mutex_lock(&H.mu);
        j->done = true;
        pthread_cond_broadcast(&H.cv);
        pthread_mutex_unlock(&H.mu);
        j = next;
    }
}

static void *loop_main(void *arg)
{
    (void)arg;
    /* As an application on a loop does: a write to a closed connection
     * fails with EPIPE instead of killing the process. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    harness_is_loop = true;
    uv_run(&H.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* H.mu held. */
static void start_locked(void)
{
    if (H.running)
        return;
    ck_assert_int_eq(uv_loop_init(&H.loop), 0);
    ck_assert_int_eq(uv_async_init(&H.loop, &H.wake, on_wake), 0);
    ck_assert_int_eq(pthread_create(&H.thread, NULL, loop_main, NULL), 0);
    H.running = true;
}

/* Runs fn(arg) on the loop thread and returns once it has. */
static void run_on_loop(void (*fn)(void *), void *arg)
{
    if (harness_is_loop) {
        fn(arg);
        return;
    }
    harness_job_t j = {fn, arg, false, NULL};
    pthread_mutex_lock(&H.mu);
    start_locked();
    if (H.last)
        H.last->next = &j;
    else
        H.jobs = &j;
    H.last = &j;
    uv_async_send(&H.wake);
    while (!j.done)
        pthread_cond_wait(&H.cv, &H.mu);
    pthread_mutex_unlock(&H.mu);
}

static void job_end_loop(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&H.wake, NULL);
}

/* With no producer left: ends the loop, which then has no handle. */
static void end_loop(void)
{
    run_on_loop(job_end_loop, NULL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    ck_assert_msg(pthread_timedjoin_np(H.thread, NULL, &until) == 0,
                  "the loop still runs after every producer closed: a "
                  "handle of nsqpub's is left on it");
    int rc = uv_loop_close(&H.loop);
    ck_assert_msg(rc == 0, "uv_loop_close: %s", uv_strerror(rc));
    pthread_mutex_lock(&H.mu);
    H.running = false;
    pthread_mutex_unlock(&H.mu);
}

/* The harness's record of x (its handle or the producer), or NULL. */
static harness_prod_t *resolve(const void *x)
{
    if (!x)
        return NULL;
    pthread_mutex_lock(&H.mu);
    harness_prod_t *w = H.prods;
    while (w && (const void *)w != x)
        w = w->next;
    if (!w)
        for (w = H.prods; w && (const void *)w->p != x;)
            w = w->next;
    pthread_mutex_unlock(&H.mu);
    return w;
}

/* ---------------------------------------------------------------- new */

typedef struct {
    const char *addr;
    nsq_conf_t *conf;
    char *errstr;
    size_t errlen;
    nsq_producer_t *p;
} harness_new_t;

static void job_new(void *arg)
{
    harness_new_t *a = arg;
    a->p = nsq_producer_new_on_loop(&H.loop, a->addr, a->conf, a->errstr,
                                    a->errlen);
}

nsq_producer_t *harness_producer_new(const char *addr, nsq_conf_t *conf,
                                     char *errstr, size_t errlen)
{
    harness_new_t a = {addr, conf, errstr, errlen, NULL};
    run_on_loop(job_new, &a);
    if (!a.p) {
        pthread_mutex_lock(&H.mu);
        bool none = H.prods == NULL;
        pthread_mutex_unlock(&H.mu);
        if (none)
            end_loop();
        return NULL;
    }
    harness_prod_t *w = calloc(1, sizeof *w);
    ck_assert_ptr_nonnull(w);
    w->p = a.p;
    w->addr = strdup(nsq_producer_address(a.p));
    ck_assert_ptr_nonnull(w->addr);
    pthread_mutex_lock(&H.mu);
    w->next = H.prods;
    H.prods = w;
    pthread_mutex_unlock(&H.mu);
    return (nsq_producer_t *)w;
}

/* ---------------------------------------------------------------- publish */

typedef enum {
    HARNESS_PUB,
    HARNESS_MPUB,
    HARNESS_DPUB,
    HARNESS_PING
} harness_op_t;

typedef struct {
    harness_op_t op;
    harness_prod_t *w;
    nsq_producer_t *raw; /* not the harness's: passed through */
    const char *topic;
    int64_t delay_ms;
    const void *body;
    size_t len;
    const nsq_iov_t *msgs;
    size_t count;
    nsq_done_cb cb;
    void *opaque;
    nsq_err_t rc;
} harness_call_t;

/* The producer a call goes to: NULL if it closed.  Loop thread (or a
 * pointer that is not the harness's). */
static nsq_producer_t *target(const harness_call_t *c)
{
    if (!c->w)
        return c->raw;
    return c->w->p;
}

static void job_async(void *arg)
{
    harness_call_t *c = arg;
    nsq_producer_t *p = target(c);
    if (c->w && !p) {
        c->rc = NSQ_ERR_STOPPED; /* as a stopped producer answers */
        return;
    }
    switch (c->op) {
    case HARNESS_PUB:
        c->rc = nsq_producer_publish_async(p, c->topic, c->body, c->len, c->cb,
                                           c->opaque);
        break;
    case HARNESS_MPUB:
        c->rc = nsq_producer_multi_publish_async(p, c->topic, c->msgs, c->count,
                                                 c->cb, c->opaque);
        break;
    case HARNESS_DPUB:
        c->rc = nsq_producer_deferred_publish_async(
            p, c->topic, c->delay_ms, c->body, c->len, c->cb, c->opaque);
        break;
    case HARNESS_PING:
        c->rc = nsq_producer_ping_async(p, c->cb, c->opaque);
        break;
    }
}

static nsq_err_t call_async(harness_call_t *c, nsq_producer_t *x)
{
    c->w = resolve(x);
    c->raw = x;
    if (c->w)
        run_on_loop(job_async, c);
    else
        job_async(c); /* NULL or a stranger: the library answers */
    return c->rc;
}

/* The real sync call: on the loop thread it refuses, as it should. */
static nsq_err_t real_sync(const harness_call_t *c, nsq_producer_t *p,
                           char *errstr, size_t errlen)
{
    switch (c->op) {
    case HARNESS_PUB:
        return nsq_producer_publish(p, c->topic, c->body, c->len, errstr,
                                    errlen);
    case HARNESS_MPUB:
        return nsq_producer_multi_publish(p, c->topic, c->msgs, c->count,
                                          errstr, errlen);
    case HARNESS_DPUB:
        return nsq_producer_deferred_publish(p, c->topic, c->delay_ms, c->body,
                                             c->len, errstr, errlen);
    case HARNESS_PING:
        return nsq_producer_ping(p, errstr, errlen);
    }
    return NSQ_ERR_INVALID_ARG;
}

typedef struct {
    bool done;
    nsq_err_t err;
    char *errstr;
    size_t errlen;
} harness_wait_t;

static void sync_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    harness_wait_t *wt = opaque;
    (void)p;
    pthread_mutex_lock(&H.mu);
    wt->err = err;
    nsq__put_err(wt->errstr, wt->errlen, detail ? detail : "");
    wt->done = true;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
}

/* A sync call: the async one, then a wait for its callback. */
static nsq_err_t call_sync(harness_call_t *c, nsq_producer_t *x, char *errstr,
                           size_t errlen)
{
    c->w = resolve(x);
    c->raw = x;
    if (!c->w || harness_is_loop) {
        nsq_producer_t *p = target(c);
        if (c->w && !p) { /* closed, and freed */
            nsq__put_err(errstr, errlen, nsq_err2str(NSQ_ERR_STOPPED));
            return NSQ_ERR_STOPPED;
        }
        return real_sync(c, p, errstr, errlen);
    }
    harness_wait_t wt = {false, NSQ_OK, errstr, errlen};
    c->cb = sync_cb;
    c->opaque = &wt;
    run_on_loop(job_async, c);
    if (c->rc != NSQ_OK) {
        nsq__put_err(errstr, errlen, nsq_err2str(c->rc));
        return c->rc;
    }
    pthread_mutex_lock(&H.mu);
    while (!wt.done)
        pthread_cond_wait(&H.cv, &H.mu);
    pthread_mutex_unlock(&H.mu);
    return wt.err;
}

nsq_err_t harness_publish_async(nsq_producer_t *p, const char *topic,
                                const void *body, size_t len, nsq_done_cb cb,
                                void *opaque)
{
    harness_call_t c = {.op = HARNESS_PUB,
                        .topic = topic,
                        .body = body,
                        .len = len,
                        .cb = cb,
                        .opaque = opaque};
    return call_async(&c, p);
}

nsq_err_t harness_multi_publish_async(nsq_producer_t *p, const char *topic,
                                      const nsq_iov_t *msgs, size_t count,
                                      nsq_done_cb cb, void *opaque)
{
    harness_call_t c = {.op = HARNESS_MPUB,
                        .topic = topic,
                        .msgs = msgs,
                        .count = count,
                        .cb = cb,
                        .opaque = opaque};
    return call_async(&c, p);
}

nsq_err_t harness_deferred_publish_async(nsq_producer_t *p, const char *topic,
                                         int64_t delay_ms, const void *body,
                                         size_t len, nsq_done_cb cb,
                                         void *opaque)
{
    harness_call_t c = {.op = HARNESS_DPUB,
                        .topic = topic,
                        .delay_ms = delay_ms,
                        .body = body,
                        .len = len,
                        .cb = cb,
                        .opaque = opaque};
    return call_async(&c, p);
}

nsq_err_t harness_ping_async(nsq_producer_t *p, nsq_done_cb cb, void *opaque)
{
    harness_call_t c = {.op = HARNESS_PING, .cb = cb, .opaque = opaque};
    return call_async(&c, p);
}

nsq_err_t harness_publish(nsq_producer_t *p, const char *topic,
                          const void *body, size_t len, char *errstr,
                          size_t errlen)
{
    harness_call_t c = {
        .op = HARNESS_PUB, .topic = topic, .body = body, .len = len};
    return call_sync(&c, p, errstr, errlen);
}

nsq_err_t harness_multi_publish(nsq_producer_t *p, const char *topic,
                                const nsq_iov_t *msgs, size_t count,
                                char *errstr, size_t errlen)
{
    harness_call_t c = {
        .op = HARNESS_MPUB, .topic = topic, .msgs = msgs, .count = count};
    return call_sync(&c, p, errstr, errlen);
}

nsq_err_t harness_deferred_publish(nsq_producer_t *p, const char *topic,
                                   int64_t delay_ms, const void *body,
                                   size_t len, char *errstr, size_t errlen)
{
    harness_call_t c = {.op = HARNESS_DPUB,
                        .topic = topic,
                        .delay_ms = delay_ms,
                        .body = body,
                        .len = len};
    return call_sync(&c, p, errstr, errlen);
}

nsq_err_t harness_ping(nsq_producer_t *p, char *errstr, size_t errlen)
{
    harness_call_t c = {.op = HARNESS_PING};
    return call_sync(&c, p, errstr, errlen);
}

/* ---------------------------------------------------------------- stop */

/* The producer is about to be freed: keep what a suite may still read. */
static void on_closed(nsq_producer_t *p, void *opaque)
{
    harness_prod_t *w = opaque;
    nsq_producer_stats_t stats;
    nsq_producer_stats(p, &stats);
    size_t n = nsq_producer_node_count(p);
    nsq_node_stats_t *nodes = calloc(n ? n : 1, sizeof *nodes);
    ck_assert_ptr_nonnull(nodes);
    for (size_t i = 0; i < n; i++)
        nsq_producer_node_stats(p, i, &nodes[i]);
    pthread_mutex_lock(&H.mu);
    w->stats = stats;
    w->nnodes = n;
    w->nodes = nodes;
    w->id_rc = nsq_producer_identify_reply(p, &w->id);
    w->auth_rc = nsq_producer_auth_reply(p, &w->auth);
    w->p = NULL;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
}

static void job_close(void *arg)
{
    harness_prod_t *w = arg;
    if (w->closing)
        return;
    w->closing = true;
    nsq_err_t rc = nsq_producer_close(w->p, on_closed, w);
    ck_assert_msg(rc == NSQ_OK, "nsq_producer_close: %s", nsq_err2name(rc));
}

nsq_err_t harness_stop(nsq_producer_t *p)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_stop(p);
    run_on_loop(job_close, w);
    if (harness_is_loop)
        return NSQ_OK; /* from a callback: the stop is under way */
    pthread_mutex_lock(&H.mu);
    while (w->p)
        pthread_cond_wait(&H.cv, &H.mu);
    pthread_mutex_unlock(&H.mu);
    return NSQ_OK;
}

nsq_err_t harness_destroy(nsq_producer_t *p)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_destroy(p);
    if (harness_is_loop)
        return NSQ_ERR_WOULD_DEADLOCK;
    harness_stop(p);
    pthread_mutex_lock(&H.mu);
    harness_prod_t **pp = &H.prods;
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
    bool none = H.prods == NULL;
    pthread_mutex_unlock(&H.mu);
    free(w->nodes);
    free(w->addr);
    free(w);
    if (none)
        end_loop();
    return NSQ_OK;
}

/* ---------------------------------------------------------------- readers */

void harness_stats(nsq_producer_t *p, nsq_producer_stats_t *out)
{
    harness_prod_t *w = resolve(p);
    if (!w) {
        nsq_producer_stats(p, out);
        return;
    }
    pthread_mutex_lock(&H.mu);
    if (!w->p)
        *out = w->stats;
    else
        nsq_producer_stats(w->p, out);
    pthread_mutex_unlock(&H.mu);
}

size_t harness_node_count(nsq_producer_t *p)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_node_count(p);
    pthread_mutex_lock(&H.mu);
    size_t n = w->p ? nsq_producer_node_count(w->p) : w->nnodes;
    pthread_mutex_unlock(&H.mu);
    return n;
}

nsq_err_t harness_node_stats(nsq_producer_t *p, size_t i, nsq_node_stats_t *out)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_node_stats(p, i, out);
    nsq_err_t rc = NSQ_ERR_INVALID_ARG;
    pthread_mutex_lock(&H.mu);
    if (w->p)
        rc = nsq_producer_node_stats(w->p, i, out);
    else if (i < w->nnodes && out) {
        *out = w->nodes[i];
        rc = NSQ_OK;
    }
    pthread_mutex_unlock(&H.mu);
    return rc;
}

nsq_err_t harness_identify_reply(nsq_producer_t *p, nsq_identify_reply_t *out)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_identify_reply(p, out);
    pthread_mutex_lock(&H.mu);
    nsq_err_t rc = !w->p ? w->id_rc : nsq_producer_identify_reply(w->p, out);
    if (!w->p && rc == NSQ_OK)
        *out = w->id;
    pthread_mutex_unlock(&H.mu);
    return rc;
}

nsq_err_t harness_auth_reply(nsq_producer_t *p, nsq_auth_reply_t *out)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_auth_reply(p, out);
    pthread_mutex_lock(&H.mu);
    nsq_err_t rc = !w->p ? w->auth_rc : nsq_producer_auth_reply(w->p, out);
    if (!w->p && rc == NSQ_OK)
        *out = w->auth;
    pthread_mutex_unlock(&H.mu);
    return rc;
}

const char *harness_address(const nsq_producer_t *p)
{
    harness_prod_t *w = resolve(p);
    return w ? w->addr : nsq_producer_address(p);
}

const nsq_publish_result_t *harness_result(nsq_producer_t *p)
{
    harness_prod_t *w = resolve(p);
    if (!w)
        return nsq_producer_result(p);
    if (!harness_is_loop)
        return NULL; /* only a callback has one */
    return w->p ? nsq_producer_result(w->p) : NULL;
}
