/*
 * The test broker's worker pool, built the way fasthttp's workerPool is:
 * each accepted connection is handed to serve(), which takes a ready worker
 * or starts one.
 *
 * - Ready workers wait on a FILO stack: the worker that finished last is
 *   reused first, while its thread and stack are still warm.
 * - A new worker starts only while fewer than max_workers exist; past that
 *   serve() refuses and the caller closes the connection.
 * - Worker objects are recycled through a free list instead of freed.
 * - A cleaner retires workers idle for longer than max_idle_ms.
 * - Stop refuses new connections, releases idle workers, gives busy ones a
 *   bounded time, then shuts their connections down and joins every thread.
 */
#ifndef NSQ_TESTD_POOL_H
#define NSQ_TESTD_POOL_H

#include <stdbool.h>
#include <stdint.h>

typedef struct nsq__pool nsq__pool_t;

/*
 * Serves one connection on a worker thread; the pool closes fd when it
 * returns.  worker_id names the worker object (stable while it lives), so
 * tests can see which worker served a connection.
 */
typedef void (*nsq__pool_serve_fn)(void *ctx, int fd, unsigned worker_id);

typedef struct nsq__pool_opts {
    int max_workers;     /* > 0 */
    int64_t max_idle_ms; /* > 0 */
    nsq__pool_serve_fn serve;
    void *ctx;
} nsq__pool_opts_t;

typedef struct nsq__pool_stats {
    uint64_t served;    /* connections handed to a worker */
    uint64_t refused;   /* serve() returned false */
    uint64_t started;   /* worker threads started */
    uint64_t retired;   /* worker threads retired by the cleaner or stop */
    uint64_t allocated; /* worker objects ever malloc'd (free list misses) */
    int workers;        /* worker threads alive now */
    int ready;          /* of them, waiting on the stack */
    int busy;           /* of them, serving a connection */
} nsq__pool_stats_t;

/* NULL if the cleaner thread cannot start or out of memory. */
nsq__pool_t *nsq__pool_start(const nsq__pool_opts_t *opts);
/*
 * Hands fd to a worker; the pool owns fd from now on when this returns true.
 * False when max_workers are busy or the pool is stopping: fd stays the
 * caller's.  Any thread.
 */
bool nsq__pool_serve(nsq__pool_t *p, int fd);
/*
 * Stops (idempotent, any thread but a worker's): no more serve(); idle
 * workers exit; busy ones get timeout_ms to finish, then their fds are
 * shut down (shutdown(2), so a blocked read returns) and every thread is
 * joined.  Returns the number of connections that had to be shut down.
 */
int nsq__pool_stop(nsq__pool_t *p, int64_t timeout_ms);
/* Stops if needed, then frees the pool and every worker object. */
void nsq__pool_destroy(nsq__pool_t *p);
void nsq__pool_stats(nsq__pool_t *p, nsq__pool_stats_t *out);

#endif
