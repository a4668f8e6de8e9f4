/*
 * The test broker's worker pool: FILO reuse, the worker maximum, idle
 * retirement with recycled objects, stop (graceful, forced, idempotent,
 * concurrent, racing with serve) and that every connection is closed.
 *
 * Connections are socketpair(AF_UNIX) ends: the pool gets one end, the test
 * keeps the other (the "peer") to drive and observe the serve function.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

/* Every bounded wait gives up after this long; a case's timeout is longer. */
#define WAIT_MS 10000
#define CASE_TIMEOUT 60

/* What the serve functions saw, shared with the test. */
typedef struct ctx {
    pthread_mutex_t mu;
    int calls;
    int got_byte; /* reads that returned the byte the peer sent */
    int got_eof;  /* reads that returned 0 or an error */
} ctx_t;

static void ctx_init(ctx_t *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
}

static ctx_t ctx_get(ctx_t *c)
{
    pthread_mutex_lock(&c->mu);
    ctx_t copy = *c;
    pthread_mutex_unlock(&c->mu);
    return copy;
}

/*
 * Waits for one byte from the peer; on it answers with the worker id (4
 * bytes) and returns, on EOF or an error returns at once.  So the peer
 * decides when a connection finishes and learns which worker served it.
 */
static void echo_serve(void *arg, int fd, unsigned worker_id)
{
    ctx_t *c = arg;
    char b;
    ssize_t n;
    do {
        n = read(fd, &b, 1);
    } while (n < 0 && errno == EINTR);
    pthread_mutex_lock(&c->mu);
    c->calls++;
    if (n == 1)
        c->got_byte++;
    else
        c->got_eof++;
    pthread_mutex_unlock(&c->mu);
    if (n == 1)
        (void)send(fd, &worker_id, sizeof worker_id, MSG_NOSIGNAL);
}

/* Answers with the worker id at once, without reading. */
static void quick_serve(void *arg, int fd, unsigned worker_id)
{
    ctx_t *c = arg;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    pthread_mutex_unlock(&c->mu);
    (void)send(fd, &worker_id, sizeof worker_id, MSG_NOSIGNAL);
}

static nsq__pool_t *start_pool(int max_workers, int64_t max_idle_ms,
                               nsq__pool_serve_fn fn, ctx_t *c)
{
    nsq__pool_opts_t o = {
        .max_workers = max_workers,
        .max_idle_ms = max_idle_ms,
        .serve = fn,
        .ctx = c,
    };
    nsq__pool_t *p = nsq__pool_start(&o);
    ck_assert_ptr_nonnull(p);
    return p;
}

static nsq__pool_stats_t stats(nsq__pool_t *p)
{
    nsq__pool_stats_t s;
    memset(&s, 0xa5, sizeof s);
    nsq__pool_stats(p, &s);
    return s;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls the stats until field == want, for at most WAIT_MS. */
#define WAIT_STAT(p, field, want)                                              \
    do {                                                                       \
        int waited_ = 0;                                                       \
        while (stats(p).field != (want) && waited_ < WAIT_MS) {                \
            sleep_ms(1);                                                       \
            waited_++;                                                         \
        }                                                                      \
        ck_assert_int_eq(stats(p).field, (want));                              \
    } while (0)

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

typedef struct conn {
    int peer; /* the test's end */
    int fd;   /* the pool's end */
} conn_t;

static conn_t conn_open(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    return (conn_t){.peer = sv[0], .fd = sv[1]};
}

static void read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
}

/* Blocks until the pool has closed its end: read returns 0. */
static void expect_eof(int peer)
{
    char b;
    ssize_t n;
    do {
        n = read(peer, &b, 1);
    } while (n < 0 && errno == EINTR);
    ck_assert_int_eq(n, 0);
}

/*
 * Lets an echo_serve connection finish: sends the byte, returns the worker
 * id it answers with, and checks that the pool then closes the connection.
 * Closes the peer.
 */
static unsigned finish(conn_t c)
{
    char b = 'x';
    ck_assert_int_eq(write(c.peer, &b, 1), 1);
    unsigned id = 0;
    read_full(c.peer, &id, sizeof id);
    expect_eof(c.peer);
    close(c.peer);
    return id;
}

START_TEST(bad_opts)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_opts_t ok = {2, 1000, echo_serve, &c};
    nsq__pool_opts_t o;
    ck_assert_ptr_null(nsq__pool_start(NULL));
    o = ok;
    o.max_workers = 0;
    ck_assert_ptr_null(nsq__pool_start(&o));
    o.max_workers = -1;
    ck_assert_ptr_null(nsq__pool_start(&o));
    o = ok;
    o.max_idle_ms = 0;
    ck_assert_ptr_null(nsq__pool_start(&o));
    o.max_idle_ms = -5;
    ck_assert_ptr_null(nsq__pool_start(&o));
    o = ok;
    o.serve = NULL;
    ck_assert_ptr_null(nsq__pool_start(&o));

    nsq__pool_t *p = nsq__pool_start(&ok);
    ck_assert_ptr_nonnull(p);
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.served, 0);
    ck_assert_uint_eq(s.refused, 0);
    ck_assert_uint_eq(s.started, 0);
    ck_assert_uint_eq(s.retired, 0);
    ck_assert_uint_eq(s.allocated, 0);
    ck_assert_int_eq(s.workers, 0);
    ck_assert_int_eq(s.ready, 0);
    ck_assert_int_eq(s.busy, 0);
    /* A negative fd is refused and counted. */
    ck_assert(!nsq__pool_serve(p, -1));
    ck_assert_uint_eq(stats(p).refused, 1);
    ck_assert_uint_eq(stats(p).started, 0);
    nsq__pool_destroy(p);
    nsq__pool_destroy(NULL);
}
END_TEST

START_TEST(filo_order)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(3, 60000, echo_serve, &c);

    conn_t a = conn_open(), b = conn_open(), d = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    ck_assert(nsq__pool_serve(p, d.fd));
    nsq__pool_stats_t s = stats(p);
    ck_assert_int_eq(s.workers, 3);
    ck_assert_int_eq(s.busy, 3);
    ck_assert_int_eq(s.ready, 0);
    ck_assert_uint_eq(s.started, 3);
    ck_assert_uint_eq(s.allocated, 3);
    ck_assert_uint_eq(s.served, 3);

    /* Finish in the order b, d, a: a ends on top of the stack, b at the
     * bottom. */
    unsigned id_b = finish(b);
    WAIT_STAT(p, ready, 1);
    unsigned id_d = finish(d);
    WAIT_STAT(p, ready, 2);
    unsigned id_a = finish(a);
    WAIT_STAT(p, ready, 3);
    ck_assert_uint_ne(id_a, id_b);
    ck_assert_uint_ne(id_a, id_d);
    ck_assert_uint_ne(id_b, id_d);
    ck_assert_int_eq(stats(p).busy, 0);

    /* The next connection goes to the worker that finished last, and so
     * does the one after it. */
    conn_t x = conn_open();
    ck_assert(nsq__pool_serve(p, x.fd));
    ck_assert_int_eq(stats(p).ready, 2);
    ck_assert_uint_eq(finish(x), id_a);
    WAIT_STAT(p, ready, 3);
    x = conn_open();
    ck_assert(nsq__pool_serve(p, x.fd));
    ck_assert_uint_eq(finish(x), id_a);
    WAIT_STAT(p, ready, 3);

    /* Three at once pop the whole stack, top first. */
    conn_t x1 = conn_open(), x2 = conn_open(), x3 = conn_open();
    ck_assert(nsq__pool_serve(p, x1.fd));
    ck_assert(nsq__pool_serve(p, x2.fd));
    ck_assert(nsq__pool_serve(p, x3.fd));
    ck_assert_int_eq(stats(p).ready, 0);
    ck_assert_uint_eq(finish(x3), id_b);
    ck_assert_uint_eq(finish(x2), id_d);
    ck_assert_uint_eq(finish(x1), id_a);
    WAIT_STAT(p, ready, 3);

    s = stats(p);
    ck_assert_uint_eq(s.started, 3);
    ck_assert_uint_eq(s.allocated, 3);
    ck_assert_uint_eq(s.served, 8);
    ck_assert_uint_eq(s.refused, 0);
    ck_assert_int_eq(ctx_get(&c).got_byte, 8);
    ck_assert_int_eq(nsq__pool_stop(p, 1000), 0);
    ck_assert_uint_eq(stats(p).retired, 3);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(max_workers)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(2, 60000, echo_serve, &c);

    conn_t a = conn_open(), b = conn_open(), x = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    ck_assert(!nsq__pool_serve(p, x.fd));
    ck_assert(!nsq__pool_serve(p, x.fd));
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.refused, 2);
    ck_assert_uint_eq(s.served, 2);
    ck_assert_uint_eq(s.started, 2);
    ck_assert_int_eq(s.workers, 2);
    ck_assert_int_eq(s.busy, 2);
    /* A refused fd is still the caller's: open and untouched. */
    ck_assert_int_ne(fcntl(x.fd, F_GETFD), -1);
    char ch = 'q';
    ck_assert_int_eq(write(x.peer, &ch, 1), 1);
    ck_assert_int_eq(read(x.fd, &ch, 1), 1);
    ck_assert_int_eq(ch, 'q');

    /* One finishes: its worker takes the next connection. */
    unsigned id_a = finish(a);
    WAIT_STAT(p, ready, 1);
    ck_assert(nsq__pool_serve(p, x.fd));
    ck_assert_uint_eq(finish(x), id_a);
    WAIT_STAT(p, ready, 1);
    /* Both slots are taken again, so the maximum holds still. */
    conn_t y = conn_open(), z = conn_open();
    ck_assert(nsq__pool_serve(p, y.fd));
    ck_assert(!nsq__pool_serve(p, z.fd));
    s = stats(p);
    ck_assert_uint_eq(s.refused, 3);
    ck_assert_uint_eq(s.served, 4);
    ck_assert_uint_eq(s.started, 2);
    finish(b);
    finish(y);
    close(z.fd);
    close(z.peer);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(max_workers_one)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(1, 60000, echo_serve, &c);
    unsigned first = 0;
    for (int i = 0; i < 5; i++) {
        conn_t a = conn_open(), x = conn_open();
        ck_assert(nsq__pool_serve(p, a.fd));
        ck_assert(!nsq__pool_serve(p, x.fd));
        unsigned id = finish(a);
        if (i == 0)
            first = id;
        ck_assert_uint_eq(id, first);
        WAIT_STAT(p, ready, 1);
        close(x.fd);
        close(x.peer);
    }
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.served, 5);
    ck_assert_uint_eq(s.refused, 5);
    ck_assert_uint_eq(s.started, 1);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(idle_retirement)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 50, echo_serve, &c);

    conn_t a = conn_open(), b = conn_open(), d = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    ck_assert(nsq__pool_serve(p, d.fd));
    unsigned ids[3] = {finish(a), finish(b), finish(d)};

    WAIT_STAT(p, workers, 0);
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.retired, 3);
    ck_assert_int_eq(s.ready, 0);
    ck_assert_int_eq(s.busy, 0);
    ck_assert_uint_eq(s.started, 3);
    ck_assert_uint_eq(s.allocated, 3);

    /* A new connection starts a new thread on a recycled object. */
    conn_t x = conn_open();
    ck_assert(nsq__pool_serve(p, x.fd));
    s = stats(p);
    ck_assert_uint_eq(s.started, 4);
    ck_assert_uint_eq(s.allocated, 3);
    ck_assert_int_eq(s.workers, 1);
    unsigned id = finish(x);
    ck_assert(id == ids[0] || id == ids[1] || id == ids[2]);

    /* And it is retired again in turn. */
    WAIT_STAT(p, workers, 0);
    ck_assert_uint_eq(stats(p).retired, 4);
    ck_assert_uint_eq(stats(p).allocated, 3);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(busy_not_retired)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 20, echo_serve, &c);

    conn_t a = conn_open(), b = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    finish(b);
    /* b's worker goes idle and is retired; a's stays busy all along. */
    WAIT_STAT(p, workers, 1);
    ck_assert_uint_eq(stats(p).retired, 1);
    sleep_ms(200);
    nsq__pool_stats_t s = stats(p);
    ck_assert_int_eq(s.workers, 1);
    ck_assert_int_eq(s.busy, 1);
    ck_assert_uint_eq(s.retired, 1);
    /* The busy worker still serves its connection. */
    finish(a);
    WAIT_STAT(p, workers, 0);
    ck_assert_uint_eq(stats(p).retired, 2);
    ck_assert_int_eq(ctx_get(&c).got_byte, 2);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(stop_busy)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    int fds0 = count_fds();

    /* One idle worker and one blocked in read(). */
    conn_t a = conn_open(), b = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    finish(a);
    WAIT_STAT(p, ready, 1);
    ck_assert_int_eq(stats(p).busy, 1);
    ck_assert_int_eq(stats(p).workers, 2);

    ck_assert_int_eq(nsq__pool_stop(p, 100), 1);
    /* Stop returned only after the blocked serve saw EOF and every thread
     * was joined. */
    ctx_t seen = ctx_get(&c);
    ck_assert_int_eq(seen.calls, 2);
    ck_assert_int_eq(seen.got_eof, 1);
    nsq__pool_stats_t s = stats(p);
    ck_assert_int_eq(s.workers, 0);
    ck_assert_int_eq(s.busy, 0);
    ck_assert_int_eq(s.ready, 0);
    ck_assert_uint_eq(s.retired, 2);
    expect_eof(b.peer);
    close(b.peer);
    ck_assert_int_eq(count_fds(), fds0);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(stop_no_grace)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    conn_t a = conn_open(), b = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    /* Zero and negative timeouts shut every busy connection down at once. */
    ck_assert_int_eq(nsq__pool_stop(p, -1), 2);
    ck_assert_int_eq(ctx_get(&c).got_eof, 2);
    ck_assert_int_eq(stats(p).workers, 0);
    expect_eof(a.peer);
    expect_eof(b.peer);
    close(a.peer);
    close(b.peer);
    nsq__pool_destroy(p);
}
END_TEST

static void *write_later(void *arg)
{
    int peer = *(int *)arg;
    sleep_ms(50);
    char b = 'x';
    /* The case checks that the serve function got the byte. */
    (void)write(peer, &b, 1);
    return NULL;
}

START_TEST(stop_graceful)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    conn_t a = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));

    /* The connection finishes within the grace period: nothing is shut
     * down, and the serve function got its byte. */
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, write_later, &a.peer), 0);
    ck_assert_int_eq(nsq__pool_stop(p, 30000), 0);
    ck_assert_int_eq(ctx_get(&c).got_byte, 1);
    ck_assert_int_eq(ctx_get(&c).got_eof, 0);
    ck_assert_int_eq(stats(p).workers, 0);
    pthread_join(t, NULL);
    unsigned id = 0;
    read_full(a.peer, &id, sizeof id);
    expect_eof(a.peer);
    close(a.peer);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(stop_idempotent)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    conn_t a = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert_int_eq(nsq__pool_stop(p, 0), 1);
    nsq__pool_stats_t s1 = stats(p);
    ck_assert_int_eq(nsq__pool_stop(p, 0), 0);
    ck_assert_int_eq(nsq__pool_stop(p, 1000), 0);
    nsq__pool_stats_t s2 = stats(p);
    ck_assert_int_eq(s2.workers, 0);
    ck_assert_uint_eq(s2.retired, s1.retired);
    ck_assert_uint_eq(s2.retired, 1);
    ck_assert_uint_eq(s2.served, 1);

    /* Serve after stop: refused, counted, fd left to the caller. */
    conn_t x = conn_open();
    ck_assert(!nsq__pool_serve(p, x.fd));
    ck_assert_uint_eq(stats(p).refused, 1);
    ck_assert_uint_eq(stats(p).started, 1);
    ck_assert_int_ne(fcntl(x.fd, F_GETFD), -1);
    close(x.fd);
    close(x.peer);
    expect_eof(a.peer);
    close(a.peer);
    nsq__pool_destroy(p);
}
END_TEST

typedef struct stopper {
    nsq__pool_t *p;
    pthread_barrier_t *go;
    int result;
    int workers_after;
    int busy_after;
} stopper_t;

static void *stop_thread(void *arg)
{
    stopper_t *s = arg;
    pthread_barrier_wait(s->go);
    s->result = nsq__pool_stop(s->p, 100);
    nsq__pool_stats_t st = stats(s->p);
    s->workers_after = st.workers;
    s->busy_after = st.busy;
    return NULL;
}

START_TEST(stop_two_threads)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    conn_t a = conn_open(), b = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    finish(b);
    WAIT_STAT(p, ready, 1);

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    stopper_t s1 = {.p = p, .go = &go, .result = -1, .workers_after = -1};
    stopper_t s2 = s1;
    pthread_t t1, t2;
    ck_assert_int_eq(pthread_create(&t1, NULL, stop_thread, &s1), 0);
    ck_assert_int_eq(pthread_create(&t2, NULL, stop_thread, &s2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_barrier_destroy(&go);

    /* One call did the work; both returned only once it was all done. */
    ck_assert_int_eq(s1.result + s2.result, 1);
    ck_assert(s1.result == 0 || s2.result == 0);
    ck_assert_int_eq(s1.workers_after, 0);
    ck_assert_int_eq(s2.workers_after, 0);
    ck_assert_int_eq(s1.busy_after, 0);
    ck_assert_int_eq(s2.busy_after, 0);
    ck_assert_uint_eq(stats(p).retired, 2);
    ck_assert_int_eq(ctx_get(&c).got_eof, 1);
    expect_eof(a.peer);
    close(a.peer);
    nsq__pool_destroy(p);
}
END_TEST

START_TEST(destroy_busy)
{
    ctx_t c;
    ctx_init(&c);
    int fds0 = count_fds();
    nsq__pool_t *p = start_pool(4, 60000, echo_serve, &c);
    conn_t a = conn_open(), b = conn_open();
    ck_assert(nsq__pool_serve(p, a.fd));
    ck_assert(nsq__pool_serve(p, b.fd));
    finish(b);
    /* Destroy without stop: the busy connection is shut down, its thread
     * joined, every object freed (LeakSanitizer checks the last). */
    nsq__pool_destroy(p);
    ctx_t seen = ctx_get(&c);
    ck_assert_int_eq(seen.calls, 2);
    ck_assert_int_eq(seen.got_eof, 1);
    expect_eof(a.peer);
    close(a.peer);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(many_sequential)
{
    ctx_t c;
    ctx_init(&c);
    nsq__pool_t *p = start_pool(8, 60000, echo_serve, &c);
    int fds0 = count_fds();
    for (int i = 0; i < 200; i++) {
        conn_t x = conn_open();
        ck_assert(nsq__pool_serve(p, x.fd));
        finish(x);
        /* The peer saw EOF because the pool closed its end; nothing else
         * opens files meanwhile, so the number is free again. */
        errno = 0;
        ck_assert_int_eq(fcntl(x.fd, F_GETFD), -1);
        ck_assert_int_eq(errno, EBADF);
    }
    ck_assert_int_eq(count_fds(), fds0);
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.served, 200);
    ck_assert_uint_eq(s.refused, 0);
    /* Sequential connections mostly reuse the top worker; never more
     * than the maximum are started. */
    ck_assert_uint_le(s.started, 8);
    ck_assert_uint_ge(s.started, 1);
    ck_assert_int_eq(ctx_get(&c).got_byte, 200);
    nsq__pool_destroy(p);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

START_TEST(many_concurrent)
{
    enum { N = 50 };
    ctx_t c;
    ctx_init(&c);
    int fds0 = count_fds();
    nsq__pool_t *p = start_pool(64, 60000, echo_serve, &c);
    conn_t conns[N];
    for (int i = 0; i < N; i++) {
        conns[i] = conn_open();
        ck_assert(nsq__pool_serve(p, conns[i].fd));
    }
    nsq__pool_stats_t s = stats(p);
    ck_assert_int_eq(s.busy, N);
    ck_assert_int_eq(s.workers, N);
    ck_assert_uint_eq(s.allocated, N);
    unsigned ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = finish(conns[i]);
        /* Every connection had its own worker. */
        for (int j = 0; j < i; j++)
            ck_assert_uint_ne(ids[i], ids[j]);
    }
    WAIT_STAT(p, ready, N);
    ck_assert_int_eq(stats(p).busy, 0);
    ck_assert_int_eq(count_fds(), fds0);
    ck_assert_int_eq(nsq__pool_stop(p, 1000), 0);
    ck_assert_uint_eq(stats(p).retired, N);
    nsq__pool_destroy(p);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* Connections from several threads at once, over a small maximum. */
typedef struct client {
    nsq__pool_t *p;
    int n;
    int accepted;
    int refused;
} client_t;

static void *client_thread(void *arg)
{
    client_t *cl = arg;
    for (int i = 0; i < cl->n; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
            return NULL;
        if (nsq__pool_serve(cl->p, sv[1])) {
            cl->accepted++;
            /* quick_serve answers 4 bytes, then the pool closes. */
            char buf[8];
            ssize_t n, total = 0;
            while ((n = read(sv[0], buf, sizeof buf)) > 0)
                total += n;
            if (total != 4)
                cl->accepted = -100000;
        } else {
            cl->refused++;
            close(sv[1]);
        }
        close(sv[0]);
    }
    return NULL;
}

START_TEST(concurrent_clients)
{
    enum { T = 4, PER = 50 };
    ctx_t c;
    ctx_init(&c);
    int fds0 = count_fds();
    nsq__pool_t *p = start_pool(2, 60000, quick_serve, &c);
    client_t cl[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        cl[i] = (client_t){.p = p, .n = PER};
        ck_assert_int_eq(pthread_create(&t[i], NULL, client_thread, &cl[i]), 0);
    }
    int accepted = 0, refused = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_ge(cl[i].accepted, 0);
        accepted += cl[i].accepted;
        refused += cl[i].refused;
    }
    ck_assert_int_eq(accepted + refused, T * PER);
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.served, (uint64_t)accepted);
    ck_assert_uint_eq(s.refused, (uint64_t)refused);
    ck_assert_uint_le(s.allocated, 2);
    ck_assert_int_le(s.workers, 2);
    ck_assert_int_eq(ctx_get(&c).calls, accepted);
    ck_assert_int_eq(nsq__pool_stop(p, 1000), 0);
    nsq__pool_destroy(p);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

/* serve() from several threads while another stops the pool. */
typedef struct racer {
    nsq__pool_t *p;
    pthread_barrier_t *go;
    atomic_bool *stopped;
    int accepted;
    int refused;
    int bad;
} racer_t;

static void *racer_thread(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->go);
    /* Runs until stop has returned, then tries a few more times: those
     * must all be refused. */
    int after = 0;
    while (after < 5) {
        bool stopped = atomic_load(r->stopped);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
            r->bad++;
            return NULL;
        }
        if (nsq__pool_serve(r->p, sv[1])) {
            if (stopped)
                r->bad++;
            r->accepted++;
            /* Either the 4 bytes and EOF, or EOF alone when stop shut the
             * connection down before the serve function wrote. */
            char buf[8];
            ssize_t n, total = 0;
            while ((n = read(sv[0], buf, sizeof buf)) > 0)
                total += n;
            if (n < 0 || (total != 0 && total != 4))
                r->bad++;
        } else {
            r->refused++;
            if (fcntl(sv[1], F_GETFD) == -1)
                r->bad++;
            close(sv[1]);
        }
        close(sv[0]);
        if (stopped)
            after++;
    }
    return NULL;
}

START_TEST(serve_races_stop)
{
    enum { T = 3 };
    ctx_t c;
    ctx_init(&c);
    int fds0 = count_fds();
    nsq__pool_t *p = start_pool(T + 1, 60000, quick_serve, &c);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, T + 1);
    atomic_bool stopped = false;
    racer_t r[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        r[i] = (racer_t){.p = p, .go = &go, .stopped = &stopped};
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer_thread, &r[i]), 0);
    }
    pthread_barrier_wait(&go);
    for (int waited = 0; stats(p).served < 30 && waited < WAIT_MS; waited++)
        sleep_ms(1);
    ck_assert_uint_ge(stats(p).served, 30);
    int shut = nsq__pool_stop(p, 0);
    atomic_store(&stopped, true);
    int accepted = 0, refused = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(r[i].bad, 0);
        ck_assert_int_ge(r[i].refused, 5);
        accepted += r[i].accepted;
        refused += r[i].refused;
    }
    pthread_barrier_destroy(&go);
    /* Each racer has at most one connection in flight. */
    ck_assert_int_ge(shut, 0);
    ck_assert_int_le(shut, T);
    nsq__pool_stats_t s = stats(p);
    ck_assert_uint_eq(s.served, (uint64_t)accepted);
    ck_assert_uint_eq(s.refused, (uint64_t)refused);
    ck_assert_int_eq(s.workers, 0);
    ck_assert_int_eq(s.busy, 0);
    ck_assert_uint_eq(s.retired, s.started);
    ck_assert_int_eq(ctx_get(&c).calls, accepted);
    nsq__pool_destroy(p);
    ck_assert_int_eq(count_fds(), fds0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("testd_pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, CASE_TIMEOUT);
    tcase_add_test(tc, bad_opts);
    tcase_add_test(tc, filo_order);
    tcase_add_test(tc, max_workers);
    tcase_add_test(tc, max_workers_one);
    tcase_add_test(tc, idle_retirement);
    tcase_add_test(tc, busy_not_retired);
    tcase_add_test(tc, stop_busy);
    tcase_add_test(tc, stop_no_grace);
    tcase_add_test(tc, stop_graceful);
    tcase_add_test(tc, stop_idempotent);
    tcase_add_test(tc, stop_two_threads);
    tcase_add_test(tc, destroy_busy);
    tcase_add_test(tc, many_sequential);
    tcase_add_test(tc, many_concurrent);
    tcase_add_test(tc, concurrent_clients);
    tcase_add_test(tc, serve_races_stop);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
