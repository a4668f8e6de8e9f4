/*
 * The producer against a misbehaving broker: rejections, a broker that
 * goes away and comes back on the same port, connections dropped with
 * commands in flight, a fatal error in the middle of a pipeline, stalls,
 * delays, missing heartbeats, malformed frames, refused connections, and
 * a full queue.  The question is always the same: does every publish end
 * in exactly one result that tells the truth about whether nsqd has the
 * message, and does the producer recover?
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/producer.h"
#include "nsq/testd.h"
#include "producer_testutil.h"

/* Results that say nsqd never processed the command (safe to retry). */
static bool never_processed(nsq_err_t e)
{
    return e == NSQ_ERR_NOT_SENT || e == NSQ_ERR_CONNECT ||
           e == NSQ_ERR_STOPPED || e == NSQ_ERR_QUEUE_FULL;
}

/* ---------------------------------------------------------------- rejected */

START_TEST(test_rejected_by_broker)
{
    /* nsqd with a smaller max_msg_size than the producer's: the producer
     * sends, nsqd rejects. */
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.info.limits.max_msg_size = 100;
    nsq_testd_t *t = broker_start_opts(&o);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    char big[200], err[256] = "";
    memset(big, 'B', sizeof big);
    publish_ok(p, "reject", "small");
    ck_assert_int_eq(
        nsq_producer_publish(p, "reject", big, sizeof big, err, sizeof err),
        NSQ_E_BAD_MESSAGE);
    ck_assert_str_eq(err, "E_BAD_MESSAGE PUB message too big 200 > 100");
    ck_assert_uint_eq(pstats(p).rejected, 1);

    /* nsqd closed the connection; the next publish gets a new one. */
    publish_ok(p, "reject", "again");
    ck_assert_uint_eq(broker_stats(t).accepted, 2);
    ck_assert_uint_eq(nsq_testd_count(t, "reject"), 2);
    assert_message(t, "reject", 1, "again", 5, 0);

    /* The same through MPUB and async. */
    nsq_iov_t iov[2] = {{"ok", 2}, {big, 150}};
    err[0] = '\0';
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "reject", iov, 2, err, sizeof err),
        NSQ_E_BAD_MESSAGE);
    ck_assert_str_eq(err, "E_BAD_MESSAGE MPUB message too big 150 > 100");
    rec_t r;
    rec_init(&r, 1);
    ck_assert_int_eq(nsq_producer_publish_async(p, "reject", big, 101, rec_cb,
                                                rec_slot(&r, 0)),
                     NSQ_OK);
    ck_assert(rec_wait(&r, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_E_BAD_MESSAGE);
    char d[256];
    rec_detail(&r, 0, d, sizeof d);
    ck_assert_str_eq(d, "E_BAD_MESSAGE PUB message too big 101 > 100");
    publish_ok(p, "reject", "last");
    ck_assert_uint_eq(nsq_testd_count(t, "reject"), 3);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.rejected, 3);
    ck_assert_uint_eq(s.published, 3);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(rec_calls(&r, 0), 1);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- reconnect */

START_TEST(test_reconnect_backoff)
{
    static const char *const kv[] = {"reconnect_backoff",
                                     "1s",
                                     "max_reconnect_backoff",
                                     "2s",
                                     "publish_timeout",
                                     "3s",
                                     "dial_timeout",
                                     "1s",
                                     NULL};
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.stop_timeout_ms = 200;
    nsq_testd_t *t = broker_start_opts(&o);
    uint16_t port = nsq_testd_port(t);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "recon", "before");
    nsq_testd_destroy(t);

    /* Whether the producer has seen the close yet or not, a publish now
     * fails, and never claims success. */
    char err[256] = "";
    nsq_err_t rc = nsq_producer_publish(p, "recon", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT || rc == NSQ_ERR_IN_DOUBT ||
                      rc == NSQ_ERR_NOT_SENT,
                  "%s (%s)", nsq_err2name(rc), err);
    err[0] = '\0';
    rc = nsq_producer_publish(p, "recon", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_uint_ge(pstats(p).connect_failures, 1);

    /* Inside the backoff window (1 s..2 s): at once, naming the connect
     * error and the wait -- refused by the window, not by publish_timeout
     * (that would be NSQ_ERR_TIMED_OUT), and without a new attempt. */
    uint64_t failures = pstats(p).connect_failures;
    err[0] = '\0';
    rc = nsq_producer_publish(p, "recon", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "connection refused") != NULL, "detail: %s", err);
    ck_assert_msg(strstr(err, "(next attempt in ") != NULL, "detail: %s", err);
    ck_assert_uint_eq(pstats(p).connect_failures, failures);
    ck_assert_uint_eq(pstats(p).timed_out, 0);
    rec_t r;
    rec_init(&r, 1);
    ck_assert_int_eq(
        nsq_producer_publish_async(p, "recon", "y", 1, rec_cb, rec_slot(&r, 0)),
        NSQ_OK);
    ck_assert(rec_wait(&r, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_ERR_CONNECT);

    /* nsqd is back on the same port: after the backoff, publishes work. */
    broker_opts(&o);
    o.port = port;
    t = broker_start_opts(&o);
    ck_assert_uint_eq(nsq_testd_port(t), port);
    int64_t deadline = tt_now_ms() + WAIT_MS;
    int attempts = 0;
    for (;;) {
        attempts++;
        err[0] = '\0';
        rc = nsq_producer_publish(p, "recon", "after", 5, err, sizeof err);
        if (rc == NSQ_OK)
            break;
        ck_assert_msg(rc == NSQ_ERR_CONNECT, "attempt %d: %s (%s)", attempts,
                      nsq_err2name(rc), err);
        ck_assert_msg(tt_now_ms() < deadline, "no success after %d attempts",
                      attempts);
        sleep_ms(50);
    }
    /* The failed attempts never reached nsqd. */
    ck_assert_uint_eq(nsq_testd_count(t, "recon"), 1);
    assert_message(t, "recon", 0, "after", 5, 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 2);
    ck_assert_uint_ge(s.connect_failures, 1);
    ck_assert_uint_ge(s.disconnects, 1);
    publish_ok(p, "recon", "steady");
    ck_assert_uint_eq(pstats(p).connects, 2);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(rec_calls(&r, 0), 1);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_nothing_listening)
{
    static const char *const kv[] = {"publish_timeout", "3s", NULL};
    char addr[32], err[256] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)tt_refusing_port());
    nsq_producer_t *p = producer_new(addr, kv);
    nsq_err_t rc = nsq_producer_publish(p, "none", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "connection refused") != NULL, "detail: %s", err);
    ck_assert_int_eq(nsq_producer_ping(p, err, sizeof err), NSQ_ERR_CONNECT);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_ge(s.connect_failures, 1);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_ge(s.not_sent, 1);
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_ERR_NOT_SENT);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
}
END_TEST

START_TEST(test_refused_then_accepted)
{
    /* The first connection is accepted and reset at once. */
    nsq_testd_fault_t f = {0};
    f.conn = 1;
    f.refuse = true;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    char err[256] = "";
    nsq_err_t rc = nsq_producer_publish(p, "refused", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_uint_eq(broker_stats(t).refused, 1);
    /* The second connection is served, once the (short) backoff passed. */
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while ((rc = nsq_producer_publish(p, "refused", "y", 1, err, sizeof err)) !=
           NSQ_OK) {
        ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
        ck_assert(tt_now_ms() < deadline);
        sleep_ms(20);
    }
    ck_assert_uint_eq(nsq_testd_count(t, "refused"), 1);
    assert_message(t, "refused", 0, "y", 1, 0);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- in flight */

START_TEST(test_drop_with_1000_in_flight)
{
    enum { N = 1000, CLOSE_AT = 500 };
    static const char *const kv[] = {"publish_timeout", "8s", NULL};
    nsq_testd_fault_t f = {0};
    f.conn = 1;
    f.close_after_msgs = CLOSE_AT;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, N);
    char body[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, sizeof body, "d%04d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "drop", body, (size_t)n,
                                                    rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, N, WAIT_MS));

    /* Which messages nsqd recorded, and on which connection. */
    uint64_t *conn_of = calloc(N, sizeof *conn_of);
    ck_assert_ptr_nonnull(conn_of);
    uint64_t count = nsq_testd_count(t, "drop"), on_first = 0;
    int last_on_first = -1;
    for (size_t m = 0; m < count; m++) {
        nsq_testd_msg_t msg;
        int i = -1;
        ck_assert(nsq_testd_message(t, "drop", m, &msg));
        ck_assert_int_eq(sscanf(msg.body, "d%d", &i), 1);
        ck_assert(i >= 0 && i < N);
        ck_assert_msg(conn_of[i] == 0, "d%04d recorded twice", i);
        conn_of[i] = msg.conn;
        if (msg.conn == 1) {
            on_first++;
            last_on_first = i;
        }
        nsq_testd_msg_free(&msg);
    }
    ck_assert_uint_eq(on_first, CLOSE_AT);

    int ok = 0;
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        if (e == NSQ_OK) {
            ok++;
            ck_assert_msg(conn_of[i] != 0, "d%04d: OK but nsqd never got it",
                          i);
        } else {
            ck_assert_msg(e == NSQ_ERR_IN_DOUBT || e == NSQ_ERR_NOT_SENT ||
                              e == NSQ_ERR_CONNECT,
                          "d%04d: %s", i, nsq_err2name(e));
        }
        if (never_processed(e))
            ck_assert_msg(conn_of[i] == 0, "d%04d: %s but nsqd has it", i,
                          nsq_err2name(e));
    }
    /* The last one nsqd took on the dropped connection was never
     * acknowledged: it is in doubt, not OK. */
    ck_assert_int_ge(last_on_first, 0);
    ck_assert_int_eq(rec_result(&r, (size_t)last_on_first), NSQ_ERR_IN_DOUBT);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published, (uint64_t)ok);
    bool dropped;
    WAIT_UNTIL(dropped, pstats(p).disconnects >= 1, WAIT_MS);
    ck_assert(dropped);
    ck_assert_uint_eq(s.in_flight, 0);
    ck_assert_uint_eq(s.queued, 0);

    /* The producer recovers on a new connection. */
    publish_ok(p, "drop", "recovered");
    ck_assert(broker_has(t, "drop", "recovered", 9, NULL));
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), N);
    free(conn_of);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* One publish of the churn test: its callbacks and last result. */
typedef struct churn_slot {
    atomic_int calls;
    atomic_int result;
} churn_slot_t;

static void churn_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                     void *opaque)
{
    churn_slot_t *s = opaque;
    (void)p;
    (void)detail;
    atomic_store(&s->result, (int)err);
    atomic_fetch_add(&s->calls, 1);
}

typedef struct churner {
    nsq_producer_t *p;
    churn_slot_t *slots;
    atomic_bool *accepted;
    size_t base, max, used;
    atomic_bool *stop;
    long unexpected;
    nsq_err_t last_unexpected;
} churner_t;

static void *churner_main(void *arg)
{
    churner_t *c = arg;
    char body[64];
    memset(body, 'c', sizeof body);
    while (!atomic_load(c->stop) && c->used < c->max) {
        size_t slot = c->base + c->used;
        nsq_err_t rc = nsq_producer_publish_async(
            c->p, "churn", body, sizeof body, churn_cb, &c->slots[slot]);
        if (rc == NSQ_OK) {
            atomic_store(&c->accepted[slot], true);
            c->used++;
        } else if (rc == NSQ_ERR_QUEUE_FULL) {
            sleep_ms(1);
        } else {
            c->unexpected++;
            c->last_unexpected = rc;
        }
    }
    return NULL;
}

START_TEST(test_churn_under_load)
{
    /* Every connection is dropped after a few messages while four threads
     * keep publishing: many connections end with writes under way.  The
     * process must survive that (a write to a reset socket must not kill
     * it with SIGPIPE), and every publish still ends exactly once. */
    enum { NT = 4, PER = 200000 };
    static const char *const kv[] = {"reconnect_backoff",
                                     "1ms",
                                     "max_reconnect_backoff",
                                     "5ms",
                                     "queue_max_messages",
                                     "2000",
                                     NULL};
    nsq_testd_fault_t f = {0};
    f.close_after_msgs = 5;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    churn_slot_t *slots = calloc((size_t)NT * PER, sizeof *slots);
    atomic_bool *accepted = calloc((size_t)NT * PER, sizeof *accepted);
    ck_assert(slots && accepted);
    atomic_bool stop;
    atomic_init(&stop, false);
    churner_t c[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        c[i] = (churner_t){p, slots, accepted, (size_t)i * PER, PER,
                           0, &stop, 0,        NSQ_OK};
        ck_assert_int_eq(pthread_create(&th[i], NULL, churner_main, &c[i]), 0);
    }
    /* Load until the broker has dropped a good number of connections. */
    bool churned;
    WAIT_UNTIL(churned, broker_stats(t).accepted > 20, WAIT_MS);
    atomic_store(&stop, true);
    ck_assert(churned);
    long accepted_n = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(c[i].unexpected == 0, "thread %d: %ld x %s", i,
                      c[i].unexpected, nsq_err2name(c[i].last_unexpected));
        accepted_n += (long)c[i].used;
    }
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_uint_gt(broker_stats(t).accepted, 10);
    long ok = 0;
    for (size_t i = 0; i < (size_t)NT * PER; i++) {
        int want = atomic_load(&accepted[i]) ? 1 : 0;
        ck_assert_msg(atomic_load(&slots[i].calls) == want,
                      "slot %zu: %d callbacks", i,
                      atomic_load(&slots[i].calls));
        if (!want)
            continue;
        nsq_err_t e = (nsq_err_t)atomic_load(&slots[i].result);
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_IN_DOUBT ||
                          e == NSQ_ERR_NOT_SENT || e == NSQ_ERR_CONNECT ||
                          e == NSQ_ERR_STOPPED,
                      "slot %zu: %s", i, nsq_err2name(e));
        ok += e == NSQ_OK;
    }
    ck_assert_int_gt(accepted_n, 0);
    /* Every OK arrived; nsqd may hold in-doubt ones besides. */
    ck_assert_uint_ge(nsq_testd_count(t, "churn"), (uint64_t)ok);
    ck_assert_uint_eq(pstats(p).published, (uint64_t)ok);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    free(slots);
    free(accepted);
    nsq_testd_destroy(t);
}
END_TEST

/* The k-th PUB command fails: one PUB per command (coalescing off). */
static const char *const nocoalesce[] = {"batch_max_messages", "1", NULL};

START_TEST(test_pub_failed_mid_pipeline)
{
    enum { N = 100, K = 50 };
    nsq_testd_fault_t f = {0};
    f.conn = 1;
    f.pub_failed_at = K;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), nocoalesce);
    rec_t r;
    rec_init(&r, N);
    char body[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, sizeof body, "f%03d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "pubfail", body,
                                                    (size_t)n, rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, N, WAIT_MS));
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        int n = snprintf(body, sizeof body, "f%03d", i);
        uint64_t conn = 0;
        bool has = broker_has(t, "pubfail", body, (size_t)n, &conn);
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        char d[256];
        rec_detail(&r, (size_t)i, d, sizeof d);
        if (i < K - 1) {
            ck_assert_msg(e == NSQ_OK, "f%03d: %s: %s", i, nsq_err2name(e), d);
            ck_assert(has);
            ck_assert_uint_eq(conn, 1);
        } else if (i == K - 1) {
            ck_assert_int_eq(e, NSQ_E_PUB_FAILED);
            ck_assert_str_eq(d, "E_PUB_FAILED PUB failed exiting");
            ck_assert(!has);
        } else {
            /* Written after the fatal error: nsqd never read it.  One
             * not yet written may have gone on a new connection. */
            ck_assert_msg(e == NSQ_ERR_NOT_SENT || e == NSQ_OK ||
                              e == NSQ_ERR_CONNECT,
                          "f%03d: %s", i, nsq_err2name(e));
            ck_assert_msg(has == (e == NSQ_OK), "f%03d: %s, recorded %d", i,
                          nsq_err2name(e), has);
            if (has)
                ck_assert_uint_ne(conn, 1);
        }
    }
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.published, nsq_testd_count(t, "pubfail"));
    publish_ok(p, "pubfail", "after");
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_pub_failed_texts)
{
    /* Every connection's first publish fails: each kind gets its code and
     * nsqd's text, and each reconnect is immediate (a rejection is not a
     * connect failure). */
    nsq_testd_fault_t f = {0};
    f.pub_failed_at = 1;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    char err[256] = "";
    ck_assert_int_eq(nsq_producer_publish(p, "texts", "x", 1, err, sizeof err),
                     NSQ_E_PUB_FAILED);
    ck_assert_str_eq(err, "E_PUB_FAILED PUB failed exiting");
    nsq_iov_t iov[2] = {{"a", 1}, {"b", 1}};
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "texts", iov, 2, err, sizeof err),
        NSQ_E_MPUB_FAILED);
    ck_assert_str_eq(err, "E_MPUB_FAILED MPUB failed exiting");
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "texts", 10, "x", 1, err, sizeof err),
        NSQ_E_DPUB_FAILED);
    ck_assert_str_eq(err, "E_DPUB_FAILED DPUB failed exiting");
    ck_assert_uint_eq(nsq_testd_count(t, "texts"), 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.rejected, 3);
    ck_assert_uint_eq(s.connects, 3);
    ck_assert_uint_eq(s.connect_failures, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- stalls */

START_TEST(test_stall_publish_timeout)
{
    /* publish_timeout is the shorter: TIMED_OUT, after it was written. */
    static const char *const kv[] = {"publish_timeout",
                                     "300ms",
                                     "read_timeout",
                                     "6s",
                                     "heartbeat_interval",
                                     "-1",
                                     NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "stall", "before");
    nsq_testd_fault_t f = {0};
    f.stall = true;
    nsq_testd_set_fault(t, &f);

    char err[256] = "";
    int64_t t0 = tt_now_ms();
    nsq_err_t rc = nsq_producer_publish(p, "stall", "x", 1, err, sizeof err);
    int64_t took = tt_now_ms() - t0;
    ck_assert_msg(rc == NSQ_ERR_TIMED_OUT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "written") != NULL,
                  "detail does not say it was written: %s", err);
    ck_assert_msg(took >= 300, "returned after %lldms, before the timeout",
                  (long long)took);
    /* The upper bound, by an event: it came before read_timeout (6 s)
     * ended the connection. */
    ck_assert_uint_eq(pstats(p).disconnects, 0);
    ck_assert_uint_eq(pstats(p).in_doubt, 0);
    /* nsqd read it: the broker has it, so "in doubt" was the truth. */
    ck_assert_uint_eq(nsq_testd_count(t, "stall"), 2);

    rec_t r;
    rec_init(&r, 1);
    ck_assert_int_eq(
        nsq_producer_publish_async(p, "stall", "y", 1, rec_cb, rec_slot(&r, 0)),
        NSQ_OK);
    ck_assert(rec_wait(&r, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_ERR_TIMED_OUT);
    ck_assert_uint_ge(pstats(p).timed_out, 2);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(rec_calls(&r, 0), 1);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_stall_read_timeout)
{
    /* read_timeout is the shorter: the connection is dropped and what was
     * written is in doubt. */
    static const char *const kv[] = {"publish_timeout",
                                     "6s",
                                     "read_timeout",
                                     "500ms",
                                     "heartbeat_interval",
                                     "-1",
                                     NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    /* read_timeout counts from the last read: the answer to "before". */
    int64_t t0 = tt_now_ms();
    publish_ok(p, "stall", "before");
    nsq_testd_fault_t f = {0};
    f.stall = true;
    nsq_testd_set_fault(t, &f);

    char err[256] = "";
    nsq_err_t rc = nsq_producer_publish(p, "stall", "x", 1, err, sizeof err);
    int64_t took = tt_now_ms() - t0;
    /* By read_timeout: in doubt, and not before it; had it waited for
     * publish_timeout (6 s) it would be NSQ_ERR_TIMED_OUT. */
    ck_assert_msg(rc == NSQ_ERR_IN_DOUBT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "read_timeout") != NULL, "detail: %s", err);
    ck_assert_msg(took >= 500, "returned after %lldms, before read_timeout",
                  (long long)took);
    ck_assert_uint_eq(pstats(p).timed_out, 0);
    ck_assert_uint_ge(pstats(p).in_doubt, 1);
    /* The counter may trail the result by a moment (it is bumped after the
     * in-flight commands are failed). */
    bool ok;
    WAIT_UNTIL(ok, pstats(p).disconnects >= 1, WAIT_MS);
    ck_assert(ok);

    /* A healthy broker again: a new connection works. */
    nsq_testd_set_fault(t, NULL);
    publish_ok(p, "stall", "after");
    ck_assert_uint_eq(broker_stats(t).accepted, 2);
    ck_assert_uint_eq(pstats(p).connects, 2);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_delay)
{
    nsq_testd_fault_t f = {0};
    f.delay_ms = 100;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    publish_ok(p, "delay", "one");
    publish_ok(p, "delay", "two");
    nsq_iov_t iov[2] = {{"m1", 2}, {"m2", 2}};
    ck_assert_int_eq(nsq_producer_multi_publish(p, "delay", iov, 2, NULL, 0),
                     NSQ_OK);
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "delay", 50, "dd", 2, NULL, 0),
        NSQ_OK);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_OK);
    rec_t r;
    rec_init(&r, 50);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "delay", "a", 1, rec_cb,
                                                    rec_slot(&r, i)),
                         NSQ_OK);
    ck_assert(rec_wait(&r, (int)r.n, WAIT_MS));
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_int_eq(rec_result(&r, i), NSQ_OK);
    }
    ck_assert_uint_eq(nsq_testd_count(t, "delay"), 5 + r.n);
    assert_message(t, "delay", 0, "one", 3, 0);
    assert_message(t, "delay", 4, "dd", 2, 50);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- heartbeats
 */

START_TEST(test_no_heartbeats)
{
    static const char *const kv[] = {"heartbeat_interval", "1s", NULL};
    nsq_testd_fault_t f = {0};
    f.no_heartbeats = true;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "nohb", "first");
    bool ok;
    WAIT_UNTIL(ok, pstats(p).disconnects >= 1, WAIT_MS);
    ck_assert_msg(ok, "the dead connection was kept");
    ck_assert_uint_eq(pstats(p).heartbeats, 0);
    publish_ok(p, "nohb", "second");
    ck_assert_uint_eq(broker_stats(t).accepted, 2);
    ck_assert_uint_eq(pstats(p).connects, 2);
    ck_assert_uint_eq(nsq_testd_count(t, "nohb"), 2);
    assert_message(t, "nohb", 1, "second", 6, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- malformed */

START_TEST(test_malformed_frame)
{
    static const nsq_testd_malformed_t kinds[] = {
        NSQ_TESTD_MALFORMED_SMALL_SIZE, NSQ_TESTD_MALFORMED_HUGE_SIZE,
        NSQ_TESTD_MALFORMED_BAD_TYPE};
    static const char *const kv[] = {"publish_timeout",
                                     "2s",
                                     "read_timeout",
                                     "1s",
                                     "heartbeat_interval",
                                     "-1",
                                     NULL};
    nsq_testd_fault_t f = {0};
    f.conn = 1;
    f.malformed = kinds[_i];
    f.malformed_at = 2;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "malformed", "first");

    char err[256] = "";
    nsq_err_t rc =
        nsq_producer_publish(p, "malformed", "second", 6, err, sizeof err);
    /* nsqd took it (the bad frame was its answer): whatever the result,
     * it must not be OK nor claim that nsqd never had it. */
    ck_assert_msg(rc == NSQ_ERR_IN_DOUBT || rc == NSQ_ERR_TIMED_OUT,
                  "kind %d: %s (%s)", (int)kinds[_i], nsq_err2name(rc), err);
    ck_assert_uint_eq(nsq_testd_count(t, "malformed"), 2);

    /* Recovers on a new connection. */
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while ((rc = nsq_producer_publish(p, "malformed", "third", 5, err,
                                      sizeof err)) != NSQ_OK) {
        ck_assert_msg(tt_now_ms() < deadline, "kind %d: no recovery: %s (%s)",
                      (int)kinds[_i], nsq_err2name(rc), err);
        sleep_ms(50);
    }
    nsq_testd_msg_t m;
    ck_assert(nsq_testd_message(t, "malformed",
                                nsq_testd_count(t, "malformed") - 1, &m));
    ck_assert_uint_eq(m.len, 5);
    ck_assert_mem_eq(m.body, "third", 5);
    ck_assert_uint_ne(m.conn, 1);
    nsq_testd_msg_free(&m);
    ck_assert_uint_ge(pstats(p).disconnects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- queue */

START_TEST(test_queue_full_fail_fast)
{
    static const char *const kv[] = {"queue_max_messages", "10", NULL};
    nsq_testd_t *t = broker_stalled();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, 20);
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "x", 1, rec_cb,
                                                    rec_slot(&r, i)),
                         NSQ_OK);
    ck_assert_uint_eq(pstats(p).queued, 10);
    ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "x", 1, rec_cb,
                                                rec_slot(&r, 10)),
                     NSQ_ERR_QUEUE_FULL);
    nsq_iov_t iov[2] = {{"a", 1}, {"b", 1}};
    ck_assert_int_eq(nsq_producer_multi_publish_async(p, "qfull", iov, 2,
                                                      rec_cb, rec_slot(&r, 11)),
                     NSQ_ERR_QUEUE_FULL);
    ck_assert_int_eq(nsq_producer_deferred_publish_async(
                         p, "qfull", 5, "x", 1, rec_cb, rec_slot(&r, 12)),
                     NSQ_ERR_QUEUE_FULL);
    char err[256] = "";
    ck_assert_int_eq(nsq_producer_publish(p, "qfull", "x", 1, err, sizeof err),
                     NSQ_ERR_QUEUE_FULL);
    ck_assert_str_ne(err, "");
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.queue_full, 4);
    ck_assert_uint_eq(s.queued, 10);
    ck_assert_int_eq(atomic_load(&r.total), 0);

    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    /* The accepted ones complete once each (never written: not sent or
     * stopped), the refused ones never. */
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(rec_calls(&r, i), i < 10 ? 1 : 0);
        if (i < 10)
            ck_assert_msg(never_processed(rec_result(&r, i)), "slot %zu: %s", i,
                          nsq_err2name(rec_result(&r, i)));
    }
    ck_assert_uint_eq(nsq_testd_count(t, "qfull"), 0);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_queue_full_timeout)
{
    static const char *const kv[] = {"queue_max_messages", "10",
                                     "queue_full_timeout", "300ms", NULL};
    nsq_testd_t *t = broker_stalled();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, 12);
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "x", 1, rec_cb,
                                                    rec_slot(&r, i)),
                         NSQ_OK);
    ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "x", 1, rec_cb,
                                                rec_slot(&r, 10)),
                     NSQ_ERR_QUEUE_FULL);
    ck_assert_int_eq(nsq_producer_publish(p, "qfull", "x", 1, NULL, 0),
                     NSQ_ERR_QUEUE_FULL);
    ck_assert_uint_eq(pstats(p).queue_full, 2);
    ck_assert_int_eq(atomic_load(&r.total), 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_int_eq(rec_calls(&r, i), i < 10 ? 1 : 0);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct waiter {
    nsq_producer_t *p;
    atomic_int state; /* 0 running, 1 about to call, 2 returned */
    nsq_err_t rc;
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    atomic_store(&w->state, 1);
    w->rc = nsq_producer_publish_async(w->p, "qfull", "w", 1, NULL, NULL);
    atomic_store(&w->state, 2);
    return NULL;
}

START_TEST(test_queue_full_waiter_sees_stop)
{
    /* A publish waiting for room returns when the producer stops, long
     * before its queue_full_timeout. */
    static const char *const kv[] = {"queue_max_messages", "2",
                                     "queue_full_timeout", "1m", NULL};
    nsq_testd_t *t = broker_stalled();
    logrec_t l;
    logrec_init(&l);
    nsq_producer_t *p = producer_logged(nsq_testd_address(t), kv, &l);
    ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "a", 1, NULL, NULL),
                     NSQ_OK);
    ck_assert_int_eq(nsq_producer_publish_async(p, "qfull", "b", 1, NULL, NULL),
                     NSQ_OK);
    waiter_t w = {.p = p, .rc = NSQ_OK};
    atomic_init(&w.state, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, waiter_main, &w), 0);
    bool ok;
    /* It says it waits for room (then checks for a stop under the lock
     * the stop's wake-up takes, so none is missed). */
    WAIT_UNTIL(ok, logrec_count(&l, "queue full: waiting") == 1, WAIT_MS);
    ck_assert(ok);
    ck_assert_int_eq(atomic_load(&w.state), 1);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    WAIT_UNTIL(ok, atomic_load(&w.state) == 2, WAIT_MS);
    ck_assert_msg(ok, "the waiting publish did not see the stop");
    pthread_join(th, NULL);
    ck_assert_msg(w.rc == NSQ_ERR_STOPPED, "%s", nsq_err2name(w.rc));
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    logrec_free(&l);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *faults_suite(void)
{
    Suite *s = suite_create("producer_faults");
    TCase *tc = tcase("rejected");
    tcase_add_test(tc, test_rejected_by_broker);
    tcase_add_test(tc, test_pub_failed_mid_pipeline);
    tcase_add_test(tc, test_pub_failed_texts);
    suite_add_tcase(s, tc);

    tc = tcase("connect");
    tcase_add_test(tc, test_reconnect_backoff);
    tcase_add_test(tc, test_nothing_listening);
    tcase_add_test(tc, test_refused_then_accepted);
    suite_add_tcase(s, tc);

    tc = tcase("connection");
    tcase_add_test(tc, test_drop_with_1000_in_flight);
    tcase_add_test(tc, test_churn_under_load);
    tcase_add_test(tc, test_stall_publish_timeout);
    tcase_add_test(tc, test_stall_read_timeout);
    tcase_add_test(tc, test_delay);
    tcase_add_test(tc, test_no_heartbeats);
    tcase_add_loop_test(tc, test_malformed_frame, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase("queue");
    tcase_add_test(tc, test_queue_full_fail_fast);
    tcase_add_test(tc, test_queue_full_timeout);
    tcase_add_threaded_test(tc, test_queue_full_waiter_sees_stop,
                            "a loop producer never waits for queue room, so "
                            "no waiter is there for the stop to wake");
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(faults_suite());
}
