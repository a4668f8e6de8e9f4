/*
 * nsqpub-bench --on-loop: the producer hosted on a libuv loop that the
 * bench runs on its main thread (nsq_producer_new_on_loop).  Every call is
 * made on that thread: the first window of publishes before uv_run, then
 * one more from each completion callback, so the window stays full with no
 * lock and no wake-up in the harness.  When the work is done and nothing
 * is outstanding, the producer is closed (nsq_producer_close) and uv_run
 * returns once its last handle is gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench.h"

typedef struct loop_run {
    bench_t *b;
    report_t *r;
    nsq_iov_t *iov;   /* the batch (mpub) */
    uv_timer_t timer; /* the end of a --duration run */
    bool closing;     /* nsq_producer_close was called */
    bool closed;      /* and its callback ran */
    bool failed;      /* no connection: nothing was measured */
    uint64_t t_start;
    struct rusage ru0, ru1;
} loop_run_t;

/* The run, for the completion callback, whose opaque is the start time. */
static loop_run_t *g_run;

static void on_closed(nsq_producer_t *p, void *opaque)
{
    loop_run_t *lr = opaque;
    bench_read_nodes(p, lr->r);
    lr->b->p = NULL; /* freed when this returns */
    lr->closed = true;
}

/* The work is done and nothing is outstanding: the clock stops and the
 * producer closes (it has nothing left to write or wait for). */
static void finish(loop_run_t *lr)
{
    lr->closing = true;
    getrusage(RUSAGE_SELF, &lr->ru1);
    uv_close((uv_handle_t *)&lr->timer, NULL);
    nsq_err_t e = nsq_producer_close(lr->b->p, on_closed, lr);
    if (e != NSQ_OK)
        fprintf(stderr, "nsqpub-bench: nsq_producer_close: %s\n",
                nsq_err2name(e));
}

static void on_done(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque);

/* Publishes while the window has room and work is left; closes once both
 * the work and the window are empty.  A --duration run stops at its first
 * refused publish: the loop would spin here otherwise, and its timer
 * never fire. */
static void fill(loop_run_t *lr)
{
    bench_t *b = lr->b;
    uint32_t k = b->mode == MODE_MPUB ? b->batch : 1;
    uint32_t out = atomic_load_explicit(&b->outstanding, memory_order_relaxed);
    uint32_t n;
    while (out < b->window && (n = bench_claim(b, k)) != 0) {
        if (bench_publish(b, lr->iov, n, on_done) == NSQ_OK)
            out++;
        else if (b->count == 0)
            atomic_store_explicit(&b->stop, true, memory_order_relaxed);
    }
    atomic_store_explicit(&b->outstanding, out, memory_order_relaxed);
    if (out == 0 && !lr->closing)
        finish(lr);
}

/* On the loop, from inside uv_run: the place in the window is taken again
 * at once. */
static void on_done(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    (void)p;
    bench_t *b = g_run->b;
    bench_record(b, err, detail, opaque);
    atomic_store_explicit(
        &b->outstanding,
        atomic_load_explicit(&b->outstanding, memory_order_relaxed) - 1,
        memory_order_relaxed);
    fill(g_run);
}

static void on_timer(uv_timer_t *t);

/* Connected: the clock starts and the first window goes out. */
static void on_ping(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    loop_run_t *lr = opaque;
    (void)p;
    if (err != NSQ_OK) {
        fprintf(stderr, "nsqpub-bench: cannot connect: %s\n", detail);
        lr->failed = true;
        finish(lr);
        return;
    }
    getrusage(RUSAGE_SELF, &lr->ru0);
    lr->t_start = bench_now_ns();
    if (lr->b->count == 0) {
        uv_update_time(lr->timer.loop);
        uv_timer_start(&lr->timer, on_timer,
                       (uint64_t)(lr->b->duration_ns + 999999) / 1000000, 0);
    }
    fill(lr);
}

static void on_timer(uv_timer_t *t)
{
    loop_run_t *lr = t->data;
    atomic_store_explicit(&lr->b->stop, true, memory_order_relaxed);
    fill(lr);
}

int bench_run_on_loop(bench_t *b, const char *addr, nsq_conf_t *conf,
                      report_t *r)
{
    uv_loop_t loop;
    int e = uv_loop_init(&loop);
    if (e != 0) {
        fprintf(stderr, "nsqpub-bench: uv_loop_init: %s\n", uv_strerror(e));
        return 1;
    }
    char err[256];
    nsq_producer_t *p =
        nsq_producer_new_on_loop(&loop, addr, conf, err, sizeof err);
    if (!p) {
        fprintf(stderr, "nsqpub-bench: %s\n", err);
        uv_loop_close(&loop);
        return 2;
    }
    loop_run_t lr = {.b = b, .r = r};
    g_run = &lr;
    b->p = p;
    if (b->mode == MODE_MPUB && !(lr.iov = bench_batch_new(b))) {
        /* Counted as an error: no work, the run ends at once. */
        atomic_store(&b->remaining, 0);
        atomic_store(&b->stop, true);
    }
    uv_timer_init(&loop, &lr.timer);
    lr.timer.data = &lr;
    /* Connect first (ping_async), as the threaded run pings: the clock
     * starts in its callback. */
    nsq_err_t pe = nsq_producer_ping_async(p, on_ping, &lr);
    if (pe != NSQ_OK) {
        fprintf(stderr, "nsqpub-bench: ping: %s\n", nsq_err2name(pe));
        lr.failed = true;
        finish(&lr);
    }
    e = uv_run(&loop, UV_RUN_DEFAULT);
    free(lr.iov);
    if (!lr.closed) {
        /* The producer keeps the loop running until it is closed. */
        fprintf(stderr,
                "nsqpub-bench: the loop ended (%d) before the "
                "producer closed\n",
                e);
        return 1;
    }
    e = uv_loop_close(&loop);
    if (e != 0) {
        fprintf(stderr, "nsqpub-bench: uv_loop_close: %s (a handle is left)\n",
                uv_strerror(e));
        return 1;
    }
    if (lr.failed)
        return 1;
    bench_report(b, r, lr.t_start, &lr.ru0, &lr.ru1);
    return 0;
}
