/*
 * The test broker's worker pool (see pool.h for the behaviour).
 *
 * One mutex guards everything.  Each worker waits on its own condition
 * variable, so handing it a connection wakes exactly that thread.  A worker
 * object is on at most one of three lists:
 *
 * - live: its thread runs and has not been joined yet.  Within the live
 *   ones, the ready stack holds those waiting for a connection, most recently
 *   used on top, so the bottom holds the longest idle.
 * - free: no thread; the object waits to be reused by the next start.
 * - a private list of the cleaner or of stop while they join the threads.
 *
 * Whoever tells a thread to exit also joins it: the cleaner for the workers
 * it retires, stop for all the others.  Stop joins the cleaner before it
 * joins the workers, so no thread is ever joined twice.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

/* The longest single timed wait: the cleaner wakes at least this often and
 * stop waits in slices of it, so a huge duration cannot overflow a
 * timespec. */
#define CLEAN_MAX_INTERVAL_MS (3600 * 1000)

typedef struct worker worker_t;

struct worker {
    nsq__pool_t *pool;
    pthread_t thread;
    pthread_cond_t cond;
    unsigned id;
    /* The connection handed over by serve() that the thread has not taken
     * yet, or -1. */
    int pending_fd;
    /* The connection being served (from serve() until the worker is done
     * with it), or -1: what stop shuts down. */
    int conn_fd;
    bool exit;
    int64_t last_use_ms;
    /* live list (doubly linked) or free list (next only). */
    worker_t *next, *prev;
    /* ready stack: up towards the top, down towards the bottom. */
    worker_t *up, *down;
};

enum pool_state { POOL_RUNNING, POOL_STOPPING, POOL_STOPPED };

struct nsq__pool {
    nsq__pool_opts_t opts;
    pthread_mutex_t mu;
    /* The cleaner sleeps on wake_cleaner; stop waits on idle for the busy
     * workers, later stop calls wait on stopped for the first one.  The
     * timed ones use CLOCK_MONOTONIC. */
    pthread_cond_t wake_cleaner;
    pthread_cond_t idle;
    pthread_cond_t stopped;
    pthread_t cleaner;
    enum pool_state state;
    worker_t *live;
    worker_t *top, *bottom;
    worker_t *free_list;
    nsq__pool_stats_t stats;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An absolute CLOCK_MONOTONIC time ms from now; ms must be in
 * [0, CLEAN_MAX_INTERVAL_MS] so nothing overflows. */
static struct timespec deadline_after(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int init_monotonic_cond(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

static void live_insert(nsq__pool_t *p, worker_t *w)
{
    w->prev = NULL;
    w->next = p->live;
    if (p->live)
        p->live->prev = w;
    p->live = w;
}

static void live_remove(nsq__pool_t *p, worker_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        p->live = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

static void ready_push(nsq__pool_t *p, worker_t *w)
{
    w->up = NULL;
    w->down = p->top;
    if (p->top)
        p->top->up = w;
    else
        p->bottom = w;
    p->top = w;
    p->stats.ready++;
}

static void ready_remove(nsq__pool_t *p, worker_t *w)
{
    if (w->up)
        w->up->down = w->down;
    else
        p->top = w->down;
    if (w->down)
        w->down->up = w->up;
    else
        p->bottom = w->up;
    w->up = w->down = NULL;
    p->stats.ready--;
}

static void free_push(nsq__pool_t *p, worker_t *w)
{
    w->prev = NULL;
    w->next = p->free_list;
    p->free_list = w;
}

/* Joins the threads of a private list (linked by next) and recycles their
 * objects.  Called without the lock, since the threads need it to exit. */
static void join_and_recycle(nsq__pool_t *p, worker_t *list)
{
    int n = 0;
    for (worker_t *w = list; w; w = w->next) {
        pthread_join(w->thread, NULL);
        n++;
    }
    pthread_mutex_lock(&p->mu);
    while (list) {
        worker_t *w = list;
        list = w->next;
        free_push(p, w);
    }
    p->stats.workers -= n;
    p->stats.retired += (uint64_t)n;
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    nsq__pool_t *p = w->pool;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* A pending connection wins over exit: serve() already took this
         * worker off the stack, and the connection must be served (or at
         * least closed) by it. */
        while (w->pending_fd < 0 && !w->exit)
            pthread_cond_wait(&w->cond, &p->mu);
        if (w->pending_fd < 0)
            break;
        int fd = w->pending_fd;
        w->pending_fd = -1;
        pthread_mutex_unlock(&p->mu);

        p->opts.serve(p->opts.ctx, fd, w->id);

        /* Once conn_fd is cleared stop no longer shuts fd down, so the
         * close below cannot hit a number another thread is using. */
        pthread_mutex_lock(&p->mu);
        w->conn_fd = -1;
        pthread_mutex_unlock(&p->mu);
        close(fd);

        pthread_mutex_lock(&p->mu);
        p->stats.busy--;
        if (p->state != POOL_RUNNING) {
            pthread_cond_broadcast(&p->idle);
            break; /* stop joins this thread */
        }
        w->last_use_ms = now_ms();
        ready_push(p, w);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *cleaner_main(void *arg)
{
    nsq__pool_t *p = arg;
    int64_t interval = p->opts.max_idle_ms / 2;
    if (interval < 1)
        interval = 1;
    if (interval > CLEAN_MAX_INTERVAL_MS)
        interval = CLEAN_MAX_INTERVAL_MS;

    pthread_mutex_lock(&p->mu);
    while (p->state == POOL_RUNNING) {
        struct timespec ts = deadline_after(interval);
        int rc = 0;
        while (p->state == POOL_RUNNING && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&p->wake_cleaner, &p->mu, &ts);
        if (p->state != POOL_RUNNING)
            break;

        /* The stack is ordered by last use, so the idle ones are a run at
         * the bottom. */
        int64_t now = now_ms();
        worker_t *retire = NULL;
        while (p->bottom &&
               now - p->bottom->last_use_ms > p->opts.max_idle_ms) {
            worker_t *w = p->bottom;
            ready_remove(p, w);
            live_remove(p, w);
            w->exit = true;
            pthread_cond_signal(&w->cond);
            w->next = retire;
            retire = w;
        }
        if (retire) {
            pthread_mutex_unlock(&p->mu);
            join_and_recycle(p, retire);
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

nsq__pool_t *nsq__pool_start(const nsq__pool_opts_t *opts)
{
    if (!opts || opts->max_workers <= 0 || opts->max_idle_ms <= 0 ||
        !opts->serve)
        return NULL;
    nsq__pool_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->opts = *opts;
    p->state = POOL_RUNNING;

    if (pthread_mutex_init(&p->mu, NULL) != 0)
        goto fail_mu;
    if (init_monotonic_cond(&p->wake_cleaner) != 0)
        goto fail_wake;
    if (init_monotonic_cond(&p->idle) != 0)
        goto fail_idle;
    if (pthread_cond_init(&p->stopped, NULL) != 0)
        goto fail_stopped;
    if (pthread_create(&p->cleaner, NULL, cleaner_main, p) != 0)
        goto fail_cleaner;
    return p;

fail_cleaner:
    pthread_cond_destroy(&p->stopped);
fail_stopped:
    pthread_cond_destroy(&p->idle);
fail_idle:
    pthread_cond_destroy(&p->wake_cleaner);
fail_wake:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p);
    return NULL;
}

/* A worker object from the free list, or a new one; NULL when out of
 * memory.  Under the lock. */
static worker_t *worker_get(nsq__pool_t *p)
{
    worker_t *w = p->free_list;
    if (w) {
        p->free_list = w->next;
    } else {
        w = calloc(1, sizeof *w);
        if (!w)
            return NULL;
        if (pthread_cond_init(&w->cond, NULL) != 0) {
            free(w);
            return NULL;
        }
        w->pool = p;
        w->id = (unsigned)++p->stats.allocated;
    }
    w->next = w->prev = w->up = w->down = NULL;
    w->exit = false;
    w->pending_fd = -1;
    w->conn_fd = -1;
    return w;
}

bool nsq__pool_serve(nsq__pool_t *p, int fd)
{
    pthread_mutex_lock(&p->mu);
    if (p->state != POOL_RUNNING || fd < 0)
        goto refuse;

    worker_t *w = p->top;
    if (w) {
        ready_remove(p, w);
    } else {
        if (p->stats.workers >= p->opts.max_workers)
            goto refuse;
        w = worker_get(p);
        if (!w)
            goto refuse;
        /* The thread is created under the lock, so stop never sees a live
         * worker without a thread to join. */
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            free_push(p, w);
            goto refuse;
        }
        live_insert(p, w);
        p->stats.workers++;
        p->stats.started++;
    }
    w->pending_fd = fd;
    w->conn_fd = fd;
    p->stats.busy++;
    p->stats.served++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&p->mu);
    return true;

refuse:
    p->stats.refused++;
    pthread_mutex_unlock(&p->mu);
    return false;
}

int nsq__pool_stop(nsq__pool_t *p, int64_t timeout_ms)
{
    /* The grace period counts from the call, not from when the cleaner
     * has been joined. */
    int64_t until = now_ms();
    if (timeout_ms > INT64_MAX - until)
        until = INT64_MAX;
    else if (timeout_ms > 0)
        until += timeout_ms;

    pthread_mutex_lock(&p->mu);
    if (p->state != POOL_RUNNING) {
        /* The first call does the work; later ones only wait for it, so
         * that every caller returns with all threads joined. */
        while (p->state != POOL_STOPPED)
            pthread_cond_wait(&p->stopped, &p->mu);
        pthread_mutex_unlock(&p->mu);
        return 0;
    }
    p->state = POOL_STOPPING;
    pthread_cond_signal(&p->wake_cleaner);
    while (p->top) {
        worker_t *w = p->top;
        ready_remove(p, w);
        w->exit = true;
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&p->mu);

    /* After this, only stop changes which threads are live. */
    pthread_join(p->cleaner, NULL);

    pthread_mutex_lock(&p->mu);
    while (p->stats.busy > 0) {
        int64_t left = until - now_ms();
        if (left <= 0)
            break;
        /* A long timeout is waited for in slices, which keeps the
         * timespec in range. */
        if (left > CLEAN_MAX_INTERVAL_MS)
            left = CLEAN_MAX_INTERVAL_MS;
        struct timespec ts = deadline_after(left);
        pthread_cond_timedwait(&p->idle, &p->mu, &ts);
    }
    int shut = 0;
    for (worker_t *w = p->live; w; w = w->next) {
        if (w->conn_fd >= 0) {
            shutdown(w->conn_fd, SHUT_RDWR);
            shut++;
        }
    }
    worker_t *all = p->live;
    p->live = NULL;
    pthread_mutex_unlock(&p->mu);

    join_and_recycle(p, all);

    pthread_mutex_lock(&p->mu);
    p->state = POOL_STOPPED;
    pthread_cond_broadcast(&p->stopped);
    pthread_mutex_unlock(&p->mu);
    return shut;
}

void nsq__pool_destroy(nsq__pool_t *p)
{
    if (!p)
        return;
    nsq__pool_stop(p, 0);
    while (p->free_list) {
        worker_t *w = p->free_list;
        p->free_list = w->next;
        pthread_cond_destroy(&w->cond);
        free(w);
    }
    pthread_cond_destroy(&p->stopped);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake_cleaner);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void nsq__pool_stats(nsq__pool_t *p, nsq__pool_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}
