/*
 * nsqpub-bench's private declarations: the run's state and report and the
 * publishing steps both hosts share (main.c), the run on the bench's own
 * libuv loop (loop.c), latency recording (lat.c) and the embedded broker
 * in a child process (broker.c).
 */
#ifndef NSQPUB_BENCH_H
#define NSQPUB_BENCH_H

#define BENCH_MAX_NODES 64

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "nsq/producer.h"

/*
 * A log-linear histogram of nanoseconds: values under 128 have a bucket
 * each; above, every power of two is split into 64 buckets, so a reported
 * percentile is within 1/64 of the truth.  Buckets are atomic because sync
 * runs record from every publishing thread.
 */
#define BENCH_HIST_SUB 64
#define BENCH_HIST_BUCKETS (2 * BENCH_HIST_SUB + (64 - 7) * BENCH_HIST_SUB)

typedef struct bench_hist {
    _Atomic uint64_t n[BENCH_HIST_BUCKETS];
} bench_hist_t;

/*
 * Where latencies go: every sample in an array, sorted at the end for
 * exact percentiles (when their number is known), or the histogram.  Any
 * thread may add; percentiles are read once every adder is done.
 */
typedef struct bench_lat {
    uint64_t *v; /* exact samples, or NULL for the histogram */
    size_t cap;
    _Atomic size_t n;
    bench_hist_t *h;
    _Atomic uint64_t max;
} bench_lat_t;

/* Exact for up to `samples` samples, the histogram when samples is 0.
 * False if out of memory. */
bool bench_lat_init(bench_lat_t *l, size_t samples);
void bench_lat_free(bench_lat_t *l);
void bench_lat_add(bench_lat_t *l, uint64_t ns);
/* Nearest-rank percentiles, p in per mille (1000 is the maximum), into out
 * in nanoseconds; all 0 without samples.  Sorts the exact samples. */
void bench_lat_percentiles(bench_lat_t *l, const unsigned *p, size_t np,
                           uint64_t *out);

/*
 * Forks a child that runs the test broker on 127.0.0.1 (an ephemeral port,
 * counting messages without keeping them) until *fd is closed or the
 * parent dies.  Must be called before the process has any thread.  Returns
 * the child's pid with *fd and *port set, or -1 after printing why.
 */
pid_t bench_broker_fork(int *fd, uint16_t *port);
/* Asks the child to stop, waits a little, kills it if needed, reaps it. */
void bench_broker_reap(pid_t pid, int fd);

enum bench_mode { MODE_SYNC, MODE_ASYNC, MODE_MPUB, MODE_MEMORY };

typedef struct bench bench_t;

struct bench {
    /* Settings. */
    enum bench_mode mode;
    bool on_loop; /* the producer runs on our loop (loop.c) */
    const char *topic;
    size_t size;
    uint64_t count; /* 0 for a --duration run */
    int64_t duration_ns;
    uint32_t batch;
    uint32_t window;
    int threads;
    nsq_producer_t *p;
    char *body;

    /* The work left: messages (count runs) or a stop flag (duration). */
    _Atomic int64_t remaining;
    atomic_bool stop;

    /* The start gate: workers wait here until every one is ready. */
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    int ready;
    bool go;

    /*
     * The window: at most `window` publishes outstanding.  A publisher
     * that finds it full sleeps until it is down to low_mark, so that it is
     * woken once per window/8 completions, not once per completion: the
     * harness should cost little next to the library it measures.  A
     * completion wakes the sleepers only when it brings the count to
     * low_mark or to 0 (the end of the run waits for 0).  On the loop
     * (loop.c) one thread does it all: only the count is used, and each
     * completion refills the window at once.
     */
    _Atomic uint32_t outstanding;
    _Atomic int sleepers;
    uint32_t low_mark;
    pthread_mutex_t window_lock;
    pthread_cond_t window_cond;
    /* Each publish's opaque is its start time in ns, shifted left by one;
     * the low bit marks the one short MPUB of a run (the work's tail),
     * whose size is tail_n.  No record per publish, so no lock. */
    _Atomic uint32_t tail_n;

    /* Results. */
    bench_lat_t lat;
    _Atomic uint64_t published;
    _Atomic uint64_t errors;
    _Atomic uint64_t t_last; /* the latest completion, CLOCK_MONOTONIC */
    nsq_err_t first_err;
    char first_detail[256];
};

typedef struct report {
    uint64_t count;
    double elapsed_s, msgs_per_s, mb_per_s;
    double cpu_user_s, cpu_sys_s, cpu_us_per_msg;
    double lat_us[5]; /* p50, p90, p99, p99.9, max */
    uint64_t errors;
    /* memory mode: the process's resident size around the publishes */
    uint64_t rss_before_kb, rss_after_kb;
    double growth_bytes_per_msg; /* the growth over count */
    /* what each nsqd acknowledged */
    size_t nnodes;
    nsq_node_stats_t nodes[BENCH_MAX_NODES];
} report_t;

uint64_t bench_now_ns(void);
/* Takes up to k messages of the work; 0 when there is none left. */
uint32_t bench_claim(bench_t *b, uint32_t k);
/* Counts an error; the first one keeps its name and detail. */
void bench_note_error(bench_t *b, nsq_err_t err, const char *detail);
/* Records a completion: counts, latency, the time of the last one. */
void bench_record(bench_t *b, nsq_err_t err, const char *detail, void *opaque);
/* One async publish of n messages (MPUB of iov[0..n) in mpub mode, where k
 * is the batch), its opaque carrying the start time.  A refused call is
 * recorded here, and its error returned: cb will not run for it. */
nsq_err_t bench_publish(bench_t *b, const nsq_iov_t *iov, uint32_t n,
                        nsq_done_cb cb);
/* The batch of an mpub run, every entry the body; NULL if out of memory
 * (counted as an error). */
nsq_iov_t *bench_batch_new(bench_t *b);
/* What each node acknowledged, into r (once the producer has stopped). */
void bench_read_nodes(nsq_producer_t *p, report_t *r);
/* Fills r from the counts and the run's start and CPU time around it. */
void bench_report(bench_t *b, report_t *r, uint64_t t_start,
                  const struct rusage *ru0, const struct rusage *ru1);

/*
 * The run with the producer on a libuv loop on this thread (made by
 * nsq_producer_new_on_loop, closed with nsq_producer_close): publishes
 * from the completion callbacks to keep the window full, fills r with the
 * nodes' counts.  Returns 0 after the run (r filled), 2 if the producer
 * cannot be made (said on stderr; conf is then still the caller's), 1 if
 * the loop could not run or did not close cleanly.
 */
int bench_run_on_loop(bench_t *b, const char *addr, nsq_conf_t *conf,
                      report_t *r);

#endif /* NSQPUB_BENCH_H */
