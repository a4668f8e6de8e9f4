/*
 * What only the loop host has (nsq_producer_new_on_loop,
 * nsq_producer_close): every case runs its own uv loop on the test's
 * thread, as an application does, against the test broker.  The shared
 * behaviour of both hosts is checked by the check_producer*_on_loop
 * builds of the other suites.
 */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "certs.h"
#include "loop_testutil.h"
#include "nsq/producer.h"
#include "nsq/testd.h"
#include "producer_testutil.h"

/* ---------------------------------------------------------------- helpers */

/* What on_closed saw: how often it ran, the counters then, and how many
 * completion callbacks had run before it. */
typedef struct closed {
    int calls;
    nsq_producer_stats_t stats;
    size_t nodes;
    nsq_node_stats_t node[2];
    int callbacks_before;
    rec_t *rec;
} closed_t;

static void on_closed(nsq_producer_t *p, void *opaque)
{
    closed_t *c = opaque;
    c->calls++;
    nsq_producer_stats(p, &c->stats);
    c->nodes = nsq_producer_node_count(p);
    for (size_t i = 0; i < c->nodes && i < 2; i++)
        ck_assert_int_eq(nsq_producer_node_stats(p, i, &c->node[i]), NSQ_OK);
    c->callbacks_before = c->rec ? atomic_load(&c->rec->total) : 0;
}

/* Publishes that keep going from their own callbacks: each callback
 * publishes the next message until n were published, and the last one
 * closes the producer. */
typedef struct pump {
    nsq_producer_t *p;
    const char *topic;
    size_t n, sent, done, ok;
    size_t on_loop_thread;
    pthread_t loop_thread;
    closed_t closed;
} pump_t;

static void pump_next(pump_t *u);

static void pump_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    pump_t *u = opaque;
    ck_assert_ptr_eq(p, u->p);
    ck_assert_msg(err == NSQ_OK, "%s: %s", nsq_err2name(err), detail);
    u->done++;
    u->ok++;
    if (pthread_equal(pthread_self(), u->loop_thread))
        u->on_loop_thread++;
    pump_next(u);
    if (u->done == u->n)
        ck_assert_int_eq(nsq_producer_close(p, on_closed, &u->closed), NSQ_OK);
}

static void pump_next(pump_t *u)
{
    if (u->sent == u->n)
        return;
    char body[32];
    int len = snprintf(body, sizeof body, "m%zu", u->sent);
    ck_assert_int_eq(nsq_producer_publish_async(u->p, u->topic, body,
                                                (size_t)len, pump_cb, u),
                     NSQ_OK);
    u->sent++;
}

/* ---------------------------------------------------------------- publish */

/* N publishes from the loop, most from inside callbacks: each acknowledged
 * once, on the loop's thread, and the broker has all N, in order. */
START_TEST(test_publish_n_acknowledged)
{
    enum { N = 5000, WINDOW = 500 };
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    pump_t u = {.topic = "loop_n", .n = N, .loop_thread = pthread_self()};
    u.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    for (int i = 0; i < WINDOW; i++)
        pump_next(&u);
    ck_assert_uint_eq(u.sent, WINDOW);
    run_to_end(&loop);
    ck_assert_uint_eq(u.done, N);
    ck_assert_uint_eq(u.ok, N);
    ck_assert_uint_eq(u.on_loop_thread, N);
    ck_assert_int_eq(u.closed.calls, 1);
    ck_assert_uint_eq(u.closed.stats.published, N);
    ck_assert_uint_eq(u.closed.stats.in_flight, 0);
    ck_assert_uint_eq(u.closed.stats.queued, 0);
    ck_assert_uint_eq(nsq_testd_count(t, "loop_n"), N);
    assert_message(t, "loop_n", 0, "m0", 2, 0);
    assert_message(t, "loop_n", N - 1, "m4999", 5, 0);
    nsq_testd_destroy(t);
}
END_TEST

/* Closes the producer from the callback of slot n - 1 (rec_cb's counts
 * first). */
typedef struct closer {
    rec_t rec;
    nsq_producer_t *p;
    closed_t closed;
} closer_t;

static void close_when_all_cb(nsq_producer_t *p, nsq_err_t err,
                              const char *detail, void *opaque)
{
    rec_slot_t *s = opaque;
    closer_t *c = (closer_t *)s->rec;
    rec_cb(p, err, detail, opaque);
    if ((size_t)atomic_load(&c->rec.total) == c->rec.n)
        ck_assert_int_eq(nsq_producer_close(p, on_closed, &c->closed), NSQ_OK);
}

static void closer_init(closer_t *c, size_t n)
{
    memset(c, 0, sizeof *c);
    rec_init(&c->rec, n);
    c->closed.rec = &c->rec;
}

/* On a loop of its own: a producer for addr publishes body n times to
 * topic, closes from the last callback, and every publish must have
 * succeeded, once.  c->rec is the caller's to free. */
static void publish_all(closer_t *c, const char *addr, const char *const *kv,
                        const char *topic, const char *body, size_t n)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_init(c, n);
    c->p = loop_producer(&loop, addr, kv);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(
            nsq_producer_publish_async(c->p, topic, body, strlen(body),
                                       close_when_all_cb, rec_slot(&c->rec, i)),
            NSQ_OK);
    run_to_end(&loop);
    for (size_t i = 0; i < n; i++) {
        char d[256];
        rec_detail(&c->rec, i, d, sizeof d);
        ck_assert_int_eq(rec_calls(&c->rec, i), 1);
        ck_assert_msg(rec_result(&c->rec, i) == NSQ_OK, "%zu: %s (%s)", i,
                      nsq_err2name(rec_result(&c->rec, i)), d);
    }
    ck_assert_int_eq(c->closed.calls, 1);
}

/*
 * Everything published during one loop iteration goes out together when
 * the loop next turns: nothing is written during the calls; with
 * coalescing the 100 PUBs are one MPUB, without it 100 commands.
 */
START_TEST(test_one_write_per_iteration)
{
    bool coalesce = _i == 0;
    static const char *const one[] = {"batch_max_messages", "1", NULL};
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, 100);
    c.p = loop_producer(&loop, nsq_testd_address(t), coalesce ? NULL : one);
    for (size_t i = 0; i < 100; i++)
        ck_assert_int_eq(nsq_producer_publish_async(c.p, "iter", "x", 1,
                                                    close_when_all_cb,
                                                    rec_slot(&c.rec, i)),
                         NSQ_OK);
    nsq_producer_stats_t s = pstats(c.p);
    ck_assert_uint_eq(s.queued, 100);
    ck_assert_uint_eq(s.commands_written, 0);
    ck_assert_uint_eq(s.bytes_written, 0);
    ck_assert_uint_eq(broker_stats(t).accepted, 0);
    run_to_end(&loop);
    for (size_t i = 0; i < 100; i++) {
        ck_assert_int_eq(rec_calls(&c.rec, i), 1);
        ck_assert_int_eq(rec_result(&c.rec, i), NSQ_OK);
    }
    ck_assert_int_eq(c.closed.calls, 1);
    ck_assert_uint_eq(c.closed.stats.commands_written, coalesce ? 1 : 100);
    ck_assert_uint_eq(c.closed.stats.coalesced, coalesce ? 100 : 0);
    ck_assert_uint_eq(c.closed.stats.published, 100);
    nsq_testd_stats_t b = broker_stats(t);
    ck_assert_uint_eq(b.mpubs, coalesce ? 1 : 0);
    ck_assert_uint_eq(b.pubs, coalesce ? 0 : 100);
    ck_assert_uint_eq(nsq_testd_count(t, "iter"), 100);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- close */

/*
 * Close while the broker holds every answer: each publish completes once
 * (in doubt, or OK for an answer that made it), all of them before
 * on_closed, which runs once; no handle is left on the loop.
 */
START_TEST(test_close_with_messages_in_flight)
{
    enum { N = 50 };
    nsq_testd_fault_t f = {0};
    f.hold_from = 1;
    nsq_testd_t *t = broker_start_fault(&f);
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, N);
    c.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    for (size_t i = 0; i < N; i++)
        ck_assert_int_eq(nsq_producer_publish_async(c.p, "held", "x", 1, rec_cb,
                                                    rec_slot(&c.rec, i)),
                         NSQ_OK);
    bool ok;
    RUN_UNTIL(ok, &loop, nsq_testd_count(t, "held") == N);
    ck_assert_msg(ok, "the broker has %llu of %d",
                  (unsigned long long)nsq_testd_count(t, "held"), N);
    ck_assert_int_eq(atomic_load(&c.rec.total), 0);
    ck_assert_uint_eq(pstats(c.p).in_flight, pstats(c.p).commands_written);
    ck_assert_int_eq(nsq_producer_close(c.p, on_closed, &c.closed), NSQ_OK);
    /* close returns at once: nothing completed inside the call */
    ck_assert_int_eq(atomic_load(&c.rec.total), 0);
    ck_assert_int_eq(c.closed.calls, 0);
    run_to_end(&loop);
    int in_doubt = 0;
    for (size_t i = 0; i < N; i++) {
        ck_assert_int_eq(rec_calls(&c.rec, i), 1);
        nsq_err_t r = rec_result(&c.rec, i);
        ck_assert_msg(r == NSQ_ERR_IN_DOUBT || r == NSQ_OK, "%zu: %s", i,
                      nsq_err2name(r));
        in_doubt += r == NSQ_ERR_IN_DOUBT;
    }
    ck_assert_int_gt(in_doubt, 0); /* the broker held them all */
    ck_assert_int_eq(c.closed.calls, 1);
    ck_assert_int_eq(c.closed.callbacks_before, N);
    ck_assert_uint_eq(c.closed.stats.in_flight, 0);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* Close before anything connected: on_closed once, no connection made;
 * a publish queued in the same iteration is still written (the stop
 * writes what is queued). */
START_TEST(test_close_before_connect)
{
    bool queued = _i == 1;
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, 1);
    c.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    if (queued)
        ck_assert_int_eq(nsq_producer_publish_async(
                             c.p, "early", "x", 1, rec_cb, rec_slot(&c.rec, 0)),
                         NSQ_OK);
    ck_assert_int_eq(nsq_producer_close(c.p, on_closed, &c.closed), NSQ_OK);
    run_to_end(&loop);
    ck_assert_int_eq(c.closed.calls, 1);
    if (queued) {
        ck_assert_int_eq(rec_calls(&c.rec, 0), 1);
        ck_assert_int_eq(rec_result(&c.rec, 0), NSQ_OK);
        ck_assert_uint_eq(nsq_testd_count(t, "early"), 1);
        ck_assert_uint_eq(c.closed.stats.connects, 1);
    } else {
        ck_assert_uint_eq(c.closed.stats.connects, 0);
        ck_assert_uint_eq(broker_stats(t).accepted, 0);
    }
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* A second close is refused and its callback never runs; so is a
 * publish after the close. */
START_TEST(test_close_twice)
{
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, 1);
    closed_t second = {0};
    c.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    ck_assert_int_eq(nsq_producer_close(c.p, on_closed, &c.closed), NSQ_OK);
    ck_assert_int_eq(nsq_producer_close(c.p, on_closed, &second),
                     NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_publish_async(c.p, "late", "x", 1, rec_cb,
                                                rec_slot(&c.rec, 0)),
                     NSQ_ERR_STOPPED);
    run_to_end(&loop);
    ck_assert_int_eq(c.closed.calls, 1);
    ck_assert_int_eq(second.calls, 0);
    ck_assert_int_eq(rec_calls(&c.rec, 0), 0);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* From on_closed: a publish is refused (STOPPED, no callback) and so is
 * another close. */
typedef struct late {
    closed_t closed;
    nsq_err_t pub_rc, close_rc;
    rec_t rec;
} late_t;

static void publish_in_closed(nsq_producer_t *p, void *opaque)
{
    late_t *l = opaque;
    on_closed(p, &l->closed);
    l->pub_rc = nsq_producer_publish_async(p, "late", "x", 1, rec_cb,
                                           rec_slot(&l->rec, 0));
    l->close_rc = nsq_producer_close(p, NULL, NULL);
}

START_TEST(test_publish_in_on_closed_refused)
{
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    late_t l = {.pub_rc = NSQ_OK, .close_rc = NSQ_OK};
    rec_init(&l.rec, 1);
    nsq_producer_t *p = loop_producer(&loop, nsq_testd_address(t), NULL);
    ck_assert_int_eq(nsq_producer_close(p, publish_in_closed, &l), NSQ_OK);
    run_to_end(&loop);
    ck_assert_int_eq(l.closed.calls, 1);
    ck_assert_int_eq(l.pub_rc, NSQ_ERR_STOPPED);
    ck_assert_int_eq(l.close_rc, NSQ_ERR_STOPPED);
    ck_assert_int_eq(rec_calls(&l.rec, 0), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "late"), 0);
    rec_free(&l.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- threads */

typedef struct stranger {
    nsq_producer_t *p;
    rec_t *rec;
    nsq_err_t rc[9];
    char err[256];
    nsq_producer_stats_t stats;
} stranger_t;

static void *stranger_main(void *arg)
{
    stranger_t *s = arg;
    nsq_iov_t iov[1] = {{"x", 1}};
    void *slot = rec_slot(s->rec, 0);
    s->rc[0] = nsq_producer_publish_async(s->p, "wt", "x", 1, rec_cb, slot);
    s->rc[1] =
        nsq_producer_multi_publish_async(s->p, "wt", iov, 1, rec_cb, slot);
    s->rc[2] = nsq_producer_deferred_publish_async(s->p, "wt", 5, "x", 1,
                                                   rec_cb, slot);
    s->rc[3] = nsq_producer_publish(s->p, "wt", "x", 1, NULL, 0);
    s->rc[4] = nsq_producer_ping(s->p, s->err, sizeof s->err);
    s->rc[5] = nsq_producer_close(s->p, NULL, NULL);
    s->rc[6] = nsq_producer_stop(s->p);
    s->rc[7] = nsq_producer_destroy(s->p);
    s->rc[8] = nsq_producer_multi_publish(s->p, "wt", iov, 1, NULL, 0);
    nsq_producer_stats(s->p, &s->stats); /* allowed from any thread */
    return NULL;
}

/* Every call from a thread other than the loop's is refused with
 * NSQ_ERR_WRONG_THREAD, and nothing it asked for happens. */
START_TEST(test_other_thread_refused)
{
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, 1);
    c.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    stranger_t s = {.p = c.p, .rec = &c.rec};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stranger_main, &s), 0);
    pthread_join(th, NULL);
    for (size_t i = 0; i < sizeof s.rc / sizeof s.rc[0]; i++)
        ck_assert_msg(s.rc[i] == NSQ_ERR_WRONG_THREAD, "call %zu: %s", i,
                      nsq_err2name(s.rc[i]));
    ck_assert_msg(strstr(s.err, "thread") != NULL, "%s", s.err);
    ck_assert_uint_eq(s.stats.queued, 0);
    /* The producer still works on its own thread. */
    ck_assert_int_eq(nsq_producer_close(c.p, on_closed, &c.closed), NSQ_OK);
    run_to_end(&loop);
    ck_assert_int_eq(c.closed.calls, 1);
    ck_assert_int_eq(atomic_load(&c.rec.total), 0);
    ck_assert_uint_eq(broker_stats(t).accepted, 0);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* The calls that wait, on the loop's thread: refused, with a reason. */
static void assert_waits_refused(nsq_producer_t *p)
{
    char err[256] = "";
    nsq_iov_t iov[1] = {{"x", 1}};
    ck_assert_int_eq(nsq_producer_publish(p, "wd", "x", 1, err, sizeof err),
                     NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_msg(strstr(err, "async") != NULL, "%s", err);
    ck_assert_int_eq(nsq_producer_multi_publish(p, "wd", iov, 1, NULL, 0),
                     NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(nsq_producer_deferred_publish(p, "wd", 5, "x", 1, NULL, 0),
                     NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_ERR_WOULD_DEADLOCK);
}

static void refuse_in_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                         void *opaque)
{
    assert_waits_refused(p);
    close_when_all_cb(p, err, detail, opaque);
}

/* Sync publishes, ping, stop and destroy on the loop's thread, outside
 * and inside a callback: NSQ_ERR_WOULD_DEADLOCK, nothing sent, the
 * producer not stopped or freed (it publishes afterwards). */
START_TEST(test_waiting_calls_refused_on_loop)
{
    nsq_testd_t *t = broker_start();
    uv_loop_t loop;
    uv_loop_init(&loop);
    closer_t c;
    closer_init(&c, 1);
    c.p = loop_producer(&loop, nsq_testd_address(t), NULL);
    assert_waits_refused(c.p);
    ck_assert_int_eq(nsq_producer_publish_async(c.p, "after", "x", 1,
                                                refuse_in_cb,
                                                rec_slot(&c.rec, 0)),
                     NSQ_OK);
    run_to_end(&loop);
    ck_assert_int_eq(rec_calls(&c.rec, 0), 1);
    ck_assert_int_eq(rec_result(&c.rec, 0), NSQ_OK);
    ck_assert_int_eq(c.closed.calls, 1);
    ck_assert_uint_eq(nsq_testd_count(t, "wd"), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "after"), 1);
    ck_assert_uint_eq(c.closed.stats.commands_written, 1);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
}
END_TEST

/* The threads of this process, by /proc/self/task. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/*
 * A broker in a child process, so that its threads are not this
 * process's: writes its port to fd, then waits to be killed.
 */
static void broker_child(int fd)
{
    char err[256] = "";
    nsq_testd_opts_t o;
    broker_opts(&o);
    nsq_testd_t *t = nsq_testd_start(&o, err, sizeof err);
    uint16_t port = t ? nsq_testd_port(t) : 0;
    if (write(fd, &port, sizeof port) != (ssize_t)sizeof port || !t)
        _exit(1);
    for (;;)
        pause();
}

/* nsqpub starts no thread of its own on a loop: with a numeric address
 * (no resolver) a producer that connects and publishes leaves this
 * process with the threads it had. */
START_TEST(test_no_thread_started)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int before = thread_count();
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        broker_child(fds[1]);
    }
    close(fds[1]);
    uint16_t port = 0;
    ck_assert_int_eq(read(fds[0], &port, sizeof port), (ssize_t)sizeof port);
    close(fds[0]);
    ck_assert_uint_ne(port, 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);

    uv_loop_t loop;
    uv_loop_init(&loop);
    pump_t u = {.topic = "threads", .n = 100, .loop_thread = pthread_self()};
    u.p = loop_producer(&loop, addr, NULL);
    for (int i = 0; i < 10; i++)
        pump_next(&u);
    bool ok;
    RUN_UNTIL(ok, &loop, u.done >= 50);
    ck_assert(ok);
    int during = thread_count();
    run_to_end(&loop);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_assert_uint_eq(u.ok, 100);
    ck_assert_uint_eq(u.closed.stats.connects, 1);
    ck_assert_int_eq(during, before);
    ck_assert_int_eq(thread_count(), before);
}
END_TEST

/* ---------------------------------------------------------------- nodes */

/* Two brokers, round_robin, on the loop: the publishes alternate. */
START_TEST(test_cluster_round_robin)
{
    enum { N = 20 };
    nsq_testd_t *a = broker_start(), *b = broker_start();
    char addr[128];
    snprintf(addr, sizeof addr, "%s,%s", nsq_testd_address(a),
             nsq_testd_address(b));
    static const char *const kv[] = {"strategy", "round_robin", NULL};
    closer_t c;
    publish_all(&c, addr, kv, "rr", "x", N);
    ck_assert_uint_eq(nsq_testd_count(a, "rr"), N / 2);
    ck_assert_uint_eq(nsq_testd_count(b, "rr"), N / 2);
    ck_assert_uint_eq(c.closed.nodes, 2);
    ck_assert_uint_eq(c.closed.node[0].published, N / 2);
    ck_assert_uint_eq(c.closed.node[1].published, N / 2);
    ck_assert_str_eq(c.closed.node[1].address, nsq_testd_address(b));
    rec_free(&c.rec);
    nsq_testd_destroy(a);
    nsq_testd_destroy(b);
}
END_TEST

/* A broker found through the test broker's lookupd (libcurl on the
 * loop): the publishes made before the first lookupd round wait for it,
 * then reach that broker. */
START_TEST(test_lookupd_on_loop)
{
    enum { N = 5 };
    nsq_testd_t *t = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, t), 0);
    char url[80];
    snprintf(url, sizeof url, "http://%s", nsq_testd_lookupd_address(l));
    const char *kv[] = {"lookupd_http_addresses", url, "lookupd_poll_interval",
                        "50ms", NULL};
    closer_t c;
    publish_all(&c, NULL, kv, "found", "x", N);
    ck_assert_uint_eq(nsq_testd_count(t, "found"), N);
    ck_assert_uint_ge(nsq_testd_lookupd_nodes_requests(l), 1);
    ck_assert_uint_eq(c.closed.nodes, 1);
    ck_assert_str_eq(c.closed.node[0].address, nsq_testd_address(t));
    rec_free(&c.rec);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(t);
}
END_TEST

/* TLS on the loop: the broker requires it, the producer verifies the
 * broker's certificate against the test CA. */
START_TEST(test_tls_on_loop)
{
    enum { N = 10 };
    char dir[] = "/tmp/nsqpub-loop-tls-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char err[256] = "";
    ck_assert_msg(certs_make(dir, err, sizeof err), "%s", err);
    char cert[300], key[300], ca[300];
    certs_path(cert, sizeof cert, dir, "server.pem");
    certs_path(key, sizeof key, dir, "server.key");
    certs_path(ca, sizeof ca, dir, "ca.pem");
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.tls_cert = cert;
    o.tls_key = key;
    o.tls_required = true;
    nsq_testd_t *t = broker_start_opts(&o);
    const char *kv[] = {"tls_v1", "true", "tls_root_ca_file", ca, NULL};
    closer_t c;
    publish_all(&c, nsq_testd_address(t), kv, "tls", "secret", N);
    ck_assert_uint_eq(nsq_testd_count(t, "tls"), N);
    assert_message(t, "tls", N - 1, "secret", 6, 0);
    ck_assert_uint_eq(c.closed.stats.connects, 1);
    rec_free(&c.rec);
    nsq_testd_destroy(t);
    certs_remove(dir);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *loop_suite(void)
{
    Suite *s = suite_create("producer_loop");
    TCase *tc = tcase("publish");
    tcase_add_test(tc, test_publish_n_acknowledged);
    tcase_add_loop_test(tc, test_one_write_per_iteration, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase("close");
    tcase_add_test(tc, test_close_with_messages_in_flight);
    tcase_add_loop_test(tc, test_close_before_connect, 0, 2);
    tcase_add_test(tc, test_close_twice);
    tcase_add_test(tc, test_publish_in_on_closed_refused);
    suite_add_tcase(s, tc);

    tc = tcase("threads");
    tcase_add_test(tc, test_other_thread_refused);
    tcase_add_test(tc, test_waiting_calls_refused_on_loop);
    tcase_add_test(tc, test_no_thread_started);
    suite_add_tcase(s, tc);

    tc = tcase("nodes");
    tcase_add_test(tc, test_cluster_round_robin);
    tcase_add_test(tc, test_lookupd_on_loop);
    tcase_add_test(tc, test_tls_on_loop);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The application's part on a loop: a write to a closed connection
     * must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    return run_suite(loop_suite());
}
