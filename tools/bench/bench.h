/*
 * nsqpub-bench's private declarations: latency recording (lat.c) and the
 * embedded broker in a child process (broker.c).
 */
#ifndef NSQPUB_BENCH_H
#define NSQPUB_BENCH_H

#define BENCH_MAX_NODES 64

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

#endif /* NSQPUB_BENCH_H */
