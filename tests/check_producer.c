/*
 * The producer against a well-behaved test broker: the publish calls and
 * their results, argument errors, completion callbacks (count, thread,
 * re-entry), lazy connect, addresses, the IDENTIFY reply, stats, stop and
 * destroy in every order, and many threads at once.
 *
 * Each case runs in its own process (CK_FORK) with a timeout; brokers
 * listen on ephemeral loopback ports; every wait is bounded.
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

/* ---------------------------------------------------------------- publish */

/* ping_async: the callback gets what the sync ping returns. */
START_TEST(test_ping_async)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, 1);
    ck_assert_int_eq(nsq_producer_ping_async(p, rec_cb, rec_slot(&r, 0)),
                     NSQ_OK);
    ck_assert(rec_wait(&r, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_OK);
    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_uint_eq(pstats(p).published, 0);
    nsq_producer_destroy(p);
    rec_free(&r);
    nsq_testd_destroy(t);

    /* Nobody listens: the connect error, not sent. */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", tt_refusing_port());
    p = producer_new(addr, NULL);
    rec_init(&r, 1);
    ck_assert_int_eq(nsq_producer_ping_async(p, rec_cb, rec_slot(&r, 0)),
                     NSQ_OK);
    ck_assert(rec_wait(&r, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_ERR_CONNECT);
    ck_assert_int_eq(rec_calls(&r, 0), 1);
    nsq_producer_destroy(p);
    rec_free(&r);
}
END_TEST

START_TEST(test_sync_publish_kinds)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    char err[256];

    /* A ping connects (magic, IDENTIFY) and writes a NOP: no message. */
    strcpy(err, "x");
    ck_assert_int_eq(nsq_producer_ping(p, err, sizeof err), NSQ_OK);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(broker_stats(t).accepted, 1);

    /* Bodies are binary: NUL, 0xff, a newline. */
    static const char pub[] = {'a', 0, '\n', (char)0xff, 'z'};
    strcpy(err, "x");
    ck_assert_int_eq(
        nsq_producer_publish(p, "kinds", pub, sizeof pub, err, sizeof err),
        NSQ_OK);
    ck_assert_str_eq(err, "");

    static const char m1[] = "first", m3[] = {0, 0, 0};
    char m2[1000];
    for (size_t i = 0; i < sizeof m2; i++)
        m2[i] = (char)(i * 7);
    nsq_iov_t iov[3] = {{m1, 5}, {m2, sizeof m2}, {m3, sizeof m3}};
    strcpy(err, "x");
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "kinds", iov, 3, err, sizeof err),
        NSQ_OK);
    ck_assert_str_eq(err, "");

    strcpy(err, "x");
    ck_assert_int_eq(nsq_producer_deferred_publish(p, "kinds", 1500, "later", 5,
                                                   err, sizeof err),
                     NSQ_OK);
    ck_assert_str_eq(err, "");
    /* The edges of the delay range are accepted. */
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "kinds", 0, "now", 3, NULL, 0),
        NSQ_OK);
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "kinds", 3600000, "max", 3, NULL, 0),
        NSQ_OK);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_OK);

    /* A sync OK means nsqd processed it: no wait is needed here. */
    ck_assert_uint_eq(nsq_testd_count(t, "kinds"), 7);
    assert_message(t, "kinds", 0, pub, sizeof pub, 0);
    assert_message(t, "kinds", 1, m1, 5, 0);
    assert_message(t, "kinds", 2, m2, sizeof m2, 0);
    assert_message(t, "kinds", 3, m3, sizeof m3, 0);
    assert_message(t, "kinds", 4, "later", 5, 1500);
    assert_message(t, "kinds", 5, "now", 3, 0);
    assert_message(t, "kinds", 6, "max", 3, 3600000);
    nsq_testd_msg_t m;
    ck_assert(nsq_testd_message(t, "kinds", 6, &m));
    ck_assert_uint_eq(m.conn, 1);
    nsq_testd_msg_free(&m);
    /* One connection for everything. */
    ck_assert_uint_eq(broker_stats(t).accepted, 1);

    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_async_publish_callbacks)
{
    enum { NPUB = 200, NMPUB = 10, NDPUB = 10 };
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, NPUB + NMPUB + NDPUB);
    char body[32];
    size_t slot = 0;
    for (int i = 0; i < NPUB; i++, slot++) {
        int n = snprintf(body, sizeof body, "a%03d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "async", body, (size_t)n,
                                                    rec_cb, rec_slot(&r, slot)),
                         NSQ_OK);
    }
    for (int i = 0; i < NMPUB; i++, slot++) {
        char b1[16], b2[16];
        int n1 = snprintf(b1, sizeof b1, "m%02d-1", i);
        int n2 = snprintf(b2, sizeof b2, "m%02d-2", i);
        nsq_iov_t iov[2] = {{b1, (size_t)n1}, {b2, (size_t)n2}};
        ck_assert_int_eq(nsq_producer_multi_publish_async(
                             p, "async", iov, 2, rec_cb, rec_slot(&r, slot)),
                         NSQ_OK);
    }
    for (int i = 0; i < NDPUB; i++, slot++) {
        int n = snprintf(body, sizeof body, "d%02d", i);
        ck_assert_int_eq(nsq_producer_deferred_publish_async(
                             p, "async", 100 + i, body, (size_t)n, rec_cb,
                             rec_slot(&r, slot)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, (int)r.n, WAIT_MS));
    /* A late duplicate would come before the answer to a later command:
     * callbacks run in order on the loop thread. */
    publish_ok(p, "async-fence", "fence");
    ck_assert_int_eq(atomic_load(&r.total), (int)r.n);
    for (size_t i = 0; i < r.n; i++) {
        char d[256];
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_int_eq(rec_result(&r, i), NSQ_OK);
        rec_detail(&r, i, d, sizeof d);
        ck_assert_str_eq(d, "");
    }
    /* Never on the publishing thread: the loop thread runs them. */
    ck_assert_int_eq(atomic_load(&r.on_owner), 0);

    /* Everything arrived, in the order of the calls of this one thread. */
    ck_assert_uint_eq(nsq_testd_count(t, "async"), NPUB + 2 * NMPUB + NDPUB);
    size_t idx = 0;
    for (int i = 0; i < NPUB; i++, idx++) {
        int n = snprintf(body, sizeof body, "a%03d", i);
        assert_message(t, "async", idx, body, (size_t)n, 0);
    }
    for (int i = 0; i < NMPUB; i++) {
        for (int k = 1; k <= 2; k++, idx++) {
            int n = snprintf(body, sizeof body, "m%02d-%d", i, k);
            assert_message(t, "async", idx, body, (size_t)n, 0);
        }
    }
    for (int i = 0; i < NDPUB; i++, idx++) {
        int n = snprintf(body, sizeof body, "d%02d", i);
        assert_message(t, "async", idx, body, (size_t)n, 100 + i);
    }
    /* A NULL callback is allowed. */
    ck_assert_int_eq(
        nsq_producer_publish_async(p, "async", "nocb", 4, NULL, NULL), NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, nsq_testd_count(t, "async") == idx + 1, WAIT_MS);
    ck_assert(ok);

    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), (int)r.n);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_async_body_is_copied)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, 2);
    char *body = malloc(64);
    ck_assert_ptr_nonnull(body);
    memcpy(body, "original body", 13);
    ck_assert_int_eq(nsq_producer_publish_async(p, "copy", body, 13, rec_cb,
                                                rec_slot(&r, 0)),
                     NSQ_OK);
    /* The caller owns the buffer again: scribble, then free it. */
    memset(body, 'X', 64);
    free(body);

    nsq_iov_t iov[2];
    char *b1 = strdup("mpub one"), *b2 = strdup("mpub two");
    ck_assert(b1 && b2);
    iov[0] = (nsq_iov_t){b1, 8};
    iov[1] = (nsq_iov_t){b2, 8};
    ck_assert_int_eq(nsq_producer_multi_publish_async(p, "copy", iov, 2, rec_cb,
                                                      rec_slot(&r, 1)),
                     NSQ_OK);
    memset(b1, 'Y', 8);
    memset(b2, 'Z', 8);
    free(b1);
    free(b2);

    ck_assert(rec_wait(&r, 2, WAIT_MS));
    ck_assert_int_eq(rec_result(&r, 0), NSQ_OK);
    ck_assert_int_eq(rec_result(&r, 1), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "copy"), 3);
    assert_message(t, "copy", 0, "original body", 13, 0);
    assert_message(t, "copy", 1, "mpub one", 8, 0);
    assert_message(t, "copy", 2, "mpub two", 8, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* An argument error: returned at once, the callback never runs. */
static void check_async_arg_error(nsq_err_t got, nsq_err_t want,
                                  const char *what)
{
    ck_assert_msg(got == want, "%s: got %s, want %s", what, nsq_err2name(got),
                  nsq_err2name(want));
}

static void check_sync_arg_error(nsq_err_t got, nsq_err_t want,
                                 const char *errstr, const char *what)
{
    ck_assert_msg(got == want, "%s: got %s, want %s", what, nsq_err2name(got),
                  nsq_err2name(want));
    ck_assert_msg(errstr[0] != '\0', "%s: empty errstr", what);
}

START_TEST(test_argument_errors)
{
    static const char *const kv[] = {"max_msg_size", "100", "max_body_size",
                                     "300", NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, 1);
    void *o = rec_slot(&r, 0);
    char big[101], err[256];
    memset(big, 'b', sizeof big);
    char topic65[66];
    memset(topic65, 't', 65);
    topic65[65] = '\0';
    nsq_iov_t none[1] = {{"x", 1}};
    nsq_iov_t with_empty[2] = {{"x", 1}, {"", 0}};
    nsq_iov_t with_big[2] = {{"x", 1}, {big, 101}};
    nsq_iov_t too_much[3] = {{big, 100}, {big, 100}, {big, 100}};

    /* Async: each error at once, and no callback. */
    check_async_arg_error(
        nsq_producer_publish_async(p, "bad topic", "x", 1, rec_cb, o),
        NSQ_ERR_BAD_TOPIC, "PUB space in topic");
    check_async_arg_error(nsq_producer_publish_async(p, "", "x", 1, rec_cb, o),
                          NSQ_ERR_BAD_TOPIC, "PUB empty topic");
    check_async_arg_error(
        nsq_producer_publish_async(p, topic65, "x", 1, rec_cb, o),
        NSQ_ERR_BAD_TOPIC, "PUB 65-byte topic");
    check_async_arg_error(
        nsq_producer_publish_async(p, NULL, "x", 1, rec_cb, o),
        NSQ_ERR_INVALID_ARG, "PUB NULL topic");
    check_async_arg_error(
        nsq_producer_publish_async(p, "args", NULL, 1, rec_cb, o),
        NSQ_ERR_INVALID_ARG, "PUB NULL body");
    check_async_arg_error(
        nsq_producer_publish_async(p, "args", "", 0, rec_cb, o),
        NSQ_ERR_EMPTY_BODY, "PUB empty body");
    check_async_arg_error(
        nsq_producer_publish_async(p, "args", big, 101, rec_cb, o),
        NSQ_ERR_MSG_TOO_BIG, "PUB 101 > max_msg_size 100");
    check_async_arg_error(
        nsq_producer_multi_publish_async(p, "args", none, 0, rec_cb, o),
        NSQ_ERR_NO_MESSAGES, "MPUB 0 messages");
    check_async_arg_error(
        nsq_producer_multi_publish_async(p, "args", with_empty, 2, rec_cb, o),
        NSQ_ERR_EMPTY_BODY, "MPUB with an empty message");
    check_async_arg_error(
        nsq_producer_multi_publish_async(p, "args", with_big, 2, rec_cb, o),
        NSQ_ERR_MSG_TOO_BIG, "MPUB with a 101-byte message");
    check_async_arg_error(
        nsq_producer_multi_publish_async(p, "args", too_much, 3, rec_cb, o),
        NSQ_ERR_BODY_TOO_BIG, "MPUB body 316 > max_body_size 300");
    check_async_arg_error(
        nsq_producer_multi_publish_async(p, "bad/topic", none, 1, rec_cb, o),
        NSQ_ERR_BAD_TOPIC, "MPUB bad topic");
    check_async_arg_error(
        nsq_producer_deferred_publish_async(p, "args", -1, "x", 1, rec_cb, o),
        NSQ_ERR_BAD_DELAY, "DPUB -1");
    check_async_arg_error(nsq_producer_deferred_publish_async(
                              p, "args", 3600001, "x", 1, rec_cb, o),
                          NSQ_ERR_BAD_DELAY, "DPUB 3600001");
    check_async_arg_error(
        nsq_producer_deferred_publish_async(p, "args", 10, "", 0, rec_cb, o),
        NSQ_ERR_EMPTY_BODY, "DPUB empty body");
    check_async_arg_error(
        nsq_producer_deferred_publish_async(p, "args", 10, big, 101, rec_cb, o),
        NSQ_ERR_MSG_TOO_BIG, "DPUB 101 bytes");
    check_async_arg_error(
        nsq_producer_deferred_publish_async(p, "a!", 10, "x", 1, rec_cb, o),
        NSQ_ERR_BAD_TOPIC, "DPUB bad topic");

    /* Sync: the same codes, with a reason in errstr. */
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_publish(p, "bad topic", "x", 1, err, sizeof err),
        NSQ_ERR_BAD_TOPIC, err, "sync PUB bad topic");
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_publish(p, "args", "", 0, err, sizeof err),
        NSQ_ERR_EMPTY_BODY, err, "sync PUB empty body");
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_publish(p, "args", big, 101, err, sizeof err),
        NSQ_ERR_MSG_TOO_BIG, err, "sync PUB too big");
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_multi_publish(p, "args", none, 0, err, sizeof err),
        NSQ_ERR_NO_MESSAGES, err, "sync MPUB 0");
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_multi_publish(p, "args", too_much, 3, err, sizeof err),
        NSQ_ERR_BODY_TOO_BIG, err, "sync MPUB body too big");
    err[0] = '\0';
    check_sync_arg_error(
        nsq_producer_deferred_publish(p, "args", -5, "x", 1, err, sizeof err),
        NSQ_ERR_BAD_DELAY, err, "sync DPUB -5");
    err[0] = '\0';
    check_sync_arg_error(nsq_producer_deferred_publish(p, "args", 3600001, "x",
                                                       1, err, sizeof err),
                         NSQ_ERR_BAD_DELAY, err, "sync DPUB 3600001");
    /* errstr may be NULL. */
    ck_assert_int_eq(nsq_producer_publish(p, "args", "", 0, NULL, 0),
                     NSQ_ERR_EMPTY_BODY);

    /* Nothing was queued (the counters are updated before a publish
     * returns); the later publishes show nothing else went out. */
    ck_assert_int_eq(atomic_load(&r.total), 0);
    ck_assert_uint_eq(broker_stats(t).accepted, 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.bytes_written, 0);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_eq(s.not_sent + s.rejected + s.published, 0);

    /* The limits' edges pass. */
    ck_assert_int_eq(nsq_producer_publish(p, "args", big, 100, err, sizeof err),
                     NSQ_OK);
    nsq_iov_t two[2] = {{big, 100}, {big, 100}}; /* body 212 <= 300 */
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "args", two, 2, err, sizeof err), NSQ_OK);
    ck_assert_int_eq(nsq_producer_deferred_publish(p, "args", 3600000, big, 100,
                                                   err, sizeof err),
                     NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "args"), 4);
    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    for (size_t i = 0; i < 3; i++)
        assert_message(t, "args", i, big, 100, 0);
    assert_message(t, "args", 3, big, 100, 3600000);
    ck_assert_int_eq(atomic_load(&r.total), 0);

    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), 0);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_identify_reply)
{
    /* A broker whose values differ from nsqd's defaults, so that they
     * cannot come from anywhere else. */
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.info.limits.max_rdy_count = 1234;
    o.info.limits.max_msg_timeout_ms = 600000;
    o.info.version = "1.2.1";
    o.info.msg_timeout_ms = 45000;
    nsq_testd_t *custom = broker_start_opts(&o);
    nsq_testd_t *t = broker_start();

    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    nsq_identify_reply_t rep;
    memset(&rep, 0x5a, sizeof rep);
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_ERR_NOT_SENT);
    publish_ok(p, "ident", "x");
    memset(&rep, 0x5a, sizeof rep);
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(rep.negotiated);
    ck_assert_int_eq(rep.max_rdy_count, 2500);
    ck_assert_str_eq(rep.version, "1.3.0");
    ck_assert_int_eq(rep.max_msg_timeout, 900000);
    ck_assert_int_eq(rep.msg_timeout, 60000);
    ck_assert(!rep.tls_v1);
    ck_assert(!rep.snappy);
    ck_assert(!rep.deflate);
    ck_assert(!rep.auth_required);
    ck_assert_int_eq(rep.max_deflate_level, 6);
    ck_assert_int_eq(rep.sample_rate, 0);
    /* The producer's defaults, echoed by nsqd. */
    ck_assert_int_eq(rep.output_buffer_size, 16384);
    ck_assert_int_eq(rep.output_buffer_timeout, 250);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);

    p = producer_new(nsq_testd_address(custom), NULL);
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_ERR_NOT_SENT);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_OK);
    memset(&rep, 0, sizeof rep);
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(rep.negotiated);
    ck_assert_int_eq(rep.max_rdy_count, 1234);
    ck_assert_str_eq(rep.version, "1.2.1");
    ck_assert_int_eq(rep.max_msg_timeout, 600000);
    ck_assert_int_eq(rep.msg_timeout, 45000);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);

    nsq_testd_destroy(t);
    nsq_testd_destroy(custom);
}
END_TEST

/* One PUB per command on the wire (the encodings below are PUBs). */
static const char *const nocoalesce[] = {"batch_max_messages", "1", NULL};

START_TEST(test_stats_consistent)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), nocoalesce);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published + s.commands_ok + s.bytes_written +
                          s.connects + s.queued + s.in_flight,
                      0);

    /* What the commands weigh on the wire, from the codec. */
    nsq_buf_t enc = {0};
    char body[16];
    for (int i = 0; i < 5; i++) {
        int n = snprintf(body, sizeof body, "s%d", i);
        ck_assert_int_eq(nsq_cmd_pub(&enc, "stats", body, (size_t)n, NULL),
                         NSQ_OK);
        publish_ok(p, "stats", body);
    }
    nsq_iov_t iov[3] = {{"m1", 2}, {"m2", 2}, {"m3", 2}};
    ck_assert_int_eq(nsq_cmd_mpub(&enc, "stats", iov, 3, NULL), NSQ_OK);
    ck_assert_int_eq(nsq_producer_multi_publish(p, "stats", iov, 3, NULL, 0),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_dpub(&enc, "stats", 10, "d", 1, NULL), NSQ_OK);
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "stats", 10, "d", 1, NULL, 0), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_nop(&enc), NSQ_OK);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_magic(&enc), NSQ_OK);

    /* A burst of async publishes, then idle again. */
    rec_t r;
    rec_init(&r, 50);
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(nsq_cmd_pub(&enc, "stats", "burst", 5, NULL), NSQ_OK);
        ck_assert_int_eq(nsq_producer_publish_async(p, "stats", "burst", 5,
                                                    rec_cb, rec_slot(&r, i)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, (int)r.n, WAIT_MS));

    s = pstats(p);
    ck_assert_uint_eq(s.published, 5 + 3 + 1 + 50);
    ck_assert_uint_eq(s.commands_ok, 5 + 1 + 1 + 50);
    ck_assert_uint_eq(s.rejected, 0);
    ck_assert_uint_eq(s.not_sent, 0);
    ck_assert_uint_eq(s.in_doubt, 0);
    ck_assert_uint_eq(s.timed_out, 0);
    ck_assert_uint_eq(s.stopped, 0);
    ck_assert_uint_eq(s.queue_full, 0);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.in_flight, 0);
    ck_assert_uint_eq(s.connects, 1);
    ck_assert_uint_eq(s.connect_failures, 0);
    ck_assert_uint_eq(s.disconnects, 0);
    /* Everything above plus IDENTIFY went out. */
    ck_assert_uint_gt(s.bytes_written, enc.len);
    ck_assert_uint_eq(nsq_testd_count(t, "stats"), 5 + 3 + 1 + 50);
    nsq_buf_free(&enc);

    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    s = pstats(p);
    ck_assert_uint_eq(s.published, 59);
    ck_assert_uint_eq(s.stopped, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- lifecycle */

START_TEST(test_lazy_connect)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    ck_assert_str_eq(nsq_producer_address(p), nsq_testd_address(t));
    sleep_ms(300);
    ck_assert_uint_eq(broker_stats(t).accepted, 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects + s.connect_failures + s.bytes_written, 0);
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_ERR_NOT_SENT);

    publish_ok(p, "lazy", "first");
    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);

    /* Destroyed without ever publishing: still no connection. */
    p = producer_new(nsq_testd_address(t), NULL);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    sleep_ms(50);
    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_bad_address)
{
    static const char *const bad[] = {"",
                                      "localhost",
                                      "localhost:",
                                      ":4150",
                                      "127.0.0.1:0",
                                      "127.0.0.1:65536",
                                      "127.0.0.1:abc",
                                      "127.0.0.1:41x",
                                      "[::1]4150",
                                      "[::1",
                                      "::1:4150",
                                      "127.0.0.1:-1",
                                      "[]:4150",
                                      "127.0.0.1:4150:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        nsq_conf_t *c = conf_make(NULL);
        nsq_producer_t *p = nsq_producer_new(bad[i], c, err, sizeof err);
        ck_assert_msg(p == NULL, "\"%s\" was accepted", bad[i]);
        ck_assert_msg(err[0] != '\0', "\"%s\": no reason", bad[i]);
        /* On failure the caller still owns conf (ASan sees a double free
         * or a leak otherwise). */
        nsq_conf_destroy(c);
    }
    char err[256] = "";
    ck_assert_ptr_null(nsq_producer_new(NULL, NULL, err, sizeof err));
    ck_assert_str_ne(err, "");
    ck_assert_ptr_null(nsq_producer_new("nohost", NULL, NULL, 0));

    /* An invalid combination of keys fails in new, too. */
    static const char *const kv[] = {"heartbeat_interval", "30s",
                                     "read_timeout", "10s", NULL};
    nsq_conf_t *c = conf_make(kv);
    err[0] = '\0';
    ck_assert_ptr_null(nsq_producer_new("127.0.0.1:4150", c, err, sizeof err));
    ck_assert_str_ne(err, "");
    nsq_conf_destroy(c);

    /* Good forms need no I/O, so no server is needed to create them. */
    static const char *const good[] = {"127.0.0.1:4150", "localhost:4150",
                                       "[::1]:4150", "nsqd.invalid:65535"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        err[0] = '\0';
        nsq_producer_t *p = nsq_producer_new(good[i], NULL, err, sizeof err);
        ck_assert_msg(p != NULL, "\"%s\": %s", good[i], err);
        ck_assert_str_eq(nsq_producer_address(p), good[i]);
        ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    }
}
END_TEST

START_TEST(test_destroy_variants)
{
    ck_assert_int_eq(nsq_producer_destroy(NULL), NSQ_OK);

    /* Destroy without stop, with commands in flight: they all complete. */
    nsq_testd_fault_t f = {0};
    f.delay_ms = 300;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, 20);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "destroy", "x", 1,
                                                    rec_cb, rec_slot(&r, i)),
                         NSQ_OK);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), (int)r.n);
    for (size_t i = 0; i < r.n; i++) {
        nsq_err_t e = rec_result(&r, i);
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_STOPPED ||
                          e == NSQ_ERR_IN_DOUBT,
                      "slot %zu: %s", i, nsq_err2name(e));
    }
    rec_free(&r);

    /* Stopped, then destroyed; and destroyed right after new. */
    p = producer_new(nsq_testd_address(t), NULL);
    publish_ok(p, "destroy", "y");
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    p = producer_new(nsq_testd_address(t), NULL);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_multiple_producers)
{
    enum { NP = 4, N = 100 };
    nsq_testd_t *b[2] = {broker_start(), broker_start()};
    nsq_producer_t *p[NP];
    rec_t r;
    rec_init(&r, NP * N);
    for (int i = 0; i < NP; i++)
        p[i] = producer_new(nsq_testd_address(b[i % 2]), NULL);
    char body[32];
    for (int k = 0; k < N; k++) {
        for (int i = 0; i < NP; i++) {
            int n = snprintf(body, sizeof body, "p%d-%03d", i, k);
            ck_assert_int_eq(nsq_producer_publish_async(
                                 p[i], "multi", body, (size_t)n, rec_cb,
                                 rec_slot(&r, (size_t)(i * N + k))),
                             NSQ_OK);
        }
    }
    ck_assert(rec_wait(&r, NP * N, WAIT_MS));
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_int_eq(rec_result(&r, i), NSQ_OK);
    }
    for (int j = 0; j < 2; j++) {
        ck_assert_uint_eq(nsq_testd_count(b[j], "multi"), 2 * N);
        ck_assert_uint_eq(broker_stats(b[j]).accepted, 2);
        /* Each producer's messages in its order, on its own connection. */
        int next[NP] = {0};
        uint64_t conn_of[NP] = {0};
        for (size_t m = 0; m < 2 * N; m++) {
            nsq_testd_msg_t msg;
            int who = -1, seq = -1;
            ck_assert(nsq_testd_message(b[j], "multi", m, &msg));
            ck_assert_int_eq(sscanf(msg.body, "p%d-%d", &who, &seq), 2);
            ck_assert_int_eq(who % 2, j);
            ck_assert_int_eq(seq, next[who]++);
            if (!conn_of[who])
                conn_of[who] = msg.conn;
            ck_assert_uint_eq(msg.conn, conn_of[who]);
            nsq_testd_msg_free(&msg);
        }
        ck_assert_uint_ne(conn_of[j], conn_of[j + 2]);
    }
    /* Destroy in another order than created. */
    for (int i = NP - 1; i >= 0; i--)
        ck_assert_int_eq(nsq_producer_destroy(p[i]), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(b[0]);
    nsq_testd_destroy(b[1]);
}
END_TEST

START_TEST(test_idle_heartbeats)
{
    static const char *const kv[] = {"heartbeat_interval", "1s", NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "idle", "before");
    /* Three heartbeats answered: past nsqd's deadline of two intervals
     * since the last command. */
    bool ok;
    WAIT_UNTIL(ok, pstats(p).heartbeats >= 3, WAIT_MS);
    ck_assert_msg(ok, "%llu heartbeats",
                  (unsigned long long)pstats(p).heartbeats);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.disconnects, 0);
    /* nsqd did not drop us for silence: the NOPs answered. */
    nsq_testd_stats_t bs = broker_stats(t);
    ck_assert_uint_ge(bs.heartbeats, 2);
    ck_assert_uint_eq(bs.timed_out, 0);
    publish_ok(p, "idle", "after");
    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    s = pstats(p);
    ck_assert_uint_eq(s.connects, 1);
    ck_assert_uint_eq(s.disconnects, 0);
    nsq_testd_msg_t m;
    ck_assert(nsq_testd_message(t, "idle", 1, &m));
    ck_assert_uint_eq(m.conn, 1);
    nsq_testd_msg_free(&m);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- callbacks */

typedef struct reentry {
    rec_t inner;
    atomic_int done;
    nsq_err_t outer_err;
    nsq_err_t rc_async, rc_pub, rc_mpub, rc_dpub, rc_ping, rc_destroy;
    char err_pub[256], err_ping[256];
} reentry_t;

static void reentry_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                       void *opaque)
{
    reentry_t *x = opaque;
    nsq_iov_t iov[1] = {{"sync-m", 6}};
    (void)detail;
    x->outer_err = err;
    x->rc_async = nsq_producer_publish_async(p, "reentry", "inner", 5, rec_cb,
                                             &x->inner.slots[0]);
    x->rc_pub = nsq_producer_publish(p, "reentry", "sync-p", 6, x->err_pub,
                                     sizeof x->err_pub);
    x->rc_mpub = nsq_producer_multi_publish(p, "reentry", iov, 1, NULL, 0);
    x->rc_dpub =
        nsq_producer_deferred_publish(p, "reentry", 5, "sync-d", 6, NULL, 0);
    x->rc_ping = nsq_producer_ping(p, x->err_ping, sizeof x->err_ping);
    x->rc_destroy = nsq_producer_destroy(p);
    atomic_store(&x->done, 1);
}

START_TEST(test_callback_reentry)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    reentry_t *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    rec_init(&x->inner, 1);
    atomic_init(&x->done, 0);
    ck_assert_int_eq(
        nsq_producer_publish_async(p, "reentry", "outer", 5, reentry_cb, x),
        NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&x->done) == 1, WAIT_MS);
    ck_assert(ok);
    ck_assert_int_eq(x->outer_err, NSQ_OK);
    ck_assert_int_eq(x->rc_async, NSQ_OK);
    ck_assert_int_eq(x->rc_pub, NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_str_ne(x->err_pub, "");
    ck_assert_int_eq(x->rc_mpub, NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(x->rc_dpub, NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_int_eq(x->rc_ping, NSQ_ERR_WOULD_DEADLOCK);
    ck_assert_str_ne(x->err_ping, "");
    ck_assert_int_eq(x->rc_destroy, NSQ_ERR_WOULD_DEADLOCK);

    /* The async publish made from the callback completes later. */
    ck_assert(rec_wait(&x->inner, 1, WAIT_MS));
    ck_assert_int_eq(rec_calls(&x->inner, 0), 1);
    ck_assert_int_eq(rec_result(&x->inner, 0), NSQ_OK);
    ck_assert_int_eq(atomic_load(&x->inner.on_owner), 0);

    /* The producer still works (destroy did nothing), and only the outer
     * and the inner async message reached nsqd: a sync OK after them is a
     * fence, since nsqd answers one connection in order. */
    publish_ok(p, "reentry", "fence");
    ck_assert_uint_eq(nsq_testd_count(t, "reentry"), 3);
    assert_message(t, "reentry", 0, "outer", 5, 0);
    assert_message(t, "reentry", 1, "inner", 5, 0);
    assert_message(t, "reentry", 2, "fence", 5, 0);

    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&x->inner);
    free(x);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct stopper {
    rec_t late;
    atomic_int done;
    nsq_err_t rc_stop, rc_async;
} stopper_t;

static void stopper_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                       void *opaque)
{
    stopper_t *x = opaque;
    (void)err;
    (void)detail;
    x->rc_stop = nsq_producer_stop(p);
    x->rc_async = nsq_producer_publish_async(p, "cbstop", "late", 4, rec_cb,
                                             &x->late.slots[0]);
    atomic_store(&x->done, 1);
}

START_TEST(test_stop_from_callback)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    stopper_t *x = calloc(1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    rec_init(&x->late, 1);
    atomic_init(&x->done, 0);
    ck_assert_int_eq(
        nsq_producer_publish_async(p, "cbstop", "first", 5, stopper_cb, x),
        NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&x->done) == 1, WAIT_MS);
    ck_assert(ok);
    ck_assert_int_eq(x->rc_stop, NSQ_OK);
    ck_assert_int_eq(x->rc_async, NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_publish(p, "cbstop", "after", 5, NULL, 0),
                     NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&x->late.total), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "cbstop"), 1);
    rec_free(&x->late);
    free(x);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- stop */

/* After the producer is gone and the broker idle: a publish that stopped
 * never reached nsqd, and one acknowledged did (in doubt: either).  Body i
 * is prefix and i in three digits. */
static void assert_fates_match_records(nsq_testd_t *t, const char *topic,
                                       rec_t *r, char prefix)
{
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    for (size_t i = 0; i < r->n; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "%c%03zu", prefix, i);
        bool has = broker_has(t, topic, body, (size_t)n, NULL);
        nsq_err_t e = rec_result(r, i);
        if (e == NSQ_ERR_STOPPED)
            ck_assert_msg(!has, "%s: STOPPED, but nsqd has it", body);
        if (e == NSQ_OK)
            ck_assert_msg(has, "%s: OK, but nsqd does not have it", body);
    }
}

START_TEST(test_stop_graceful)
{
    enum { N = 100 };
    static const char *const kv[] = {"stop_timeout", "5s", NULL};
    nsq_testd_fault_t f = {0};
    f.delay_ms = 200;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, N + 1);
    char body[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, sizeof body, "g%03d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "graceful", body,
                                                    (size_t)n, rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    /* Stop returned after everything completed: graceful, so with a 5 s
     * stop_timeout and a 200 ms broker every command was acknowledged. */
    ck_assert_int_eq(atomic_load(&r.total), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        ck_assert_msg(rec_result(&r, (size_t)i) == NSQ_OK, "slot %d: %s", i,
                      nsq_err2name(rec_result(&r, (size_t)i)));
    }
    ck_assert_uint_eq(nsq_testd_count(t, "graceful"), N);

    /* After stop: every call fails at once, without a callback. */
    char err[256] = "";
    ck_assert_int_eq(nsq_producer_publish_async(p, "graceful", "late", 4,
                                                rec_cb, rec_slot(&r, N)),
                     NSQ_ERR_STOPPED);
    ck_assert_int_eq(
        nsq_producer_publish(p, "graceful", "late", 4, err, sizeof err),
        NSQ_ERR_STOPPED);
    ck_assert_str_ne(err, "");
    nsq_iov_t iov[1] = {{"late", 4}};
    ck_assert_int_eq(nsq_producer_multi_publish(p, "graceful", iov, 1, NULL, 0),
                     NSQ_ERR_STOPPED);
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "graceful", 1, "late", 4, NULL, 0),
        NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published, N);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.in_flight, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), N);
    ck_assert_int_eq(rec_calls(&r, N), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "graceful"), N);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_stop_no_wait)
{
    enum { N = 100 };
    static const char *const kv[] = {"stop_timeout", "0", NULL};
    nsq_testd_fault_t f = {0};
    f.delay_ms = 200;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "nowait", "connected");
    rec_t r;
    rec_init(&r, N);
    for (size_t i = 0; i < r.n; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "n%03zu", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "nowait", body,
                                                    (size_t)n, rec_cb,
                                                    rec_slot(&r, i)),
                         NSQ_OK);
    }
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), N);
    int ok = 0;
    for (size_t i = 0; i < r.n; i++) {
        nsq_err_t e = rec_result(&r, i);
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_STOPPED ||
                          e == NSQ_ERR_IN_DOUBT,
                      "slot %zu: %s", i, nsq_err2name(e));
        ok += e == NSQ_OK;
    }
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published, (uint64_t)ok + 1);
    ck_assert_uint_eq(s.stopped + s.in_doubt, (uint64_t)(N - ok));
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), N);
    assert_fates_match_records(t, "nowait", &r, 'n');
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_stop_never_connected)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(nsq_producer_publish(p, "never", "x", 1, NULL, 0),
                     NSQ_ERR_STOPPED);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(broker_stats(t).accepted, 0);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct stop_arg {
    nsq_producer_t *p;
    atomic_int *returned;
    nsq_err_t rc;
} stop_arg_t;

static void *stop_main(void *arg)
{
    stop_arg_t *a = arg;
    a->rc = nsq_producer_stop(a->p);
    atomic_fetch_add(a->returned, 1);
    return NULL;
}

START_TEST(test_stop_concurrent)
{
    enum { NT = 4, N = 100 };
    static const char *const kv[] = {"stop_timeout", "1s", NULL};
    nsq_testd_fault_t f = {0};
    f.delay_ms = 200;
    nsq_testd_t *t = broker_start_fault(&f);
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, N);
    for (size_t i = 0; i < r.n; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "c%03zu", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "concstop", body,
                                                    (size_t)n, rec_cb,
                                                    rec_slot(&r, i)),
                         NSQ_OK);
    }
    atomic_int returned;
    atomic_init(&returned, 0);
    pthread_t th[NT];
    stop_arg_t a[NT];
    for (int i = 0; i < NT; i++) {
        a[i] = (stop_arg_t){p, &returned, (nsq_err_t)12345};
        ck_assert_int_eq(pthread_create(&th[i], NULL, stop_main, &a[i]), 0);
    }
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&returned) == NT, WAIT_MS);
    ck_assert_msg(ok, "only %d of %d stop calls returned",
                  atomic_load(&returned), NT);
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].rc, NSQ_OK);
    }
    /* Each of them returned once the producer had stopped. */
    ck_assert_int_eq(atomic_load(&r.total), N);
    for (size_t i = 0; i < r.n; i++) {
        nsq_err_t e = rec_result(&r, i);
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_STOPPED ||
                          e == NSQ_ERR_IN_DOUBT,
                      "slot %zu: %s", i, nsq_err2name(e));
    }
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    assert_fates_match_records(t, "concstop", &r, 'c');
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- threads */

typedef struct racer {
    nsq_producer_t *p;
    rec_t *rec;
    atomic_bool *accepted; /* per slot of rec */
    size_t base, max, used;
    int id;
    atomic_int *finished;
    long sync_ok, async_ok_calls, unexpected;
    nsq_err_t last_unexpected;
} racer_t;

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    char body[48];
    for (unsigned long i = 0;; i++) {
        int n = snprintf(body, sizeof body, "r%d-%lu", r->id, i);
        nsq_err_t rc;
        bool sync = i % 16 == 15 || r->used == r->max;
        if (sync) {
            rc = nsq_producer_publish(r->p, "race", body, (size_t)n, NULL, 0);
            if (rc == NSQ_OK)
                r->sync_ok++;
            else if (rc != NSQ_ERR_STOPPED && rc != NSQ_ERR_IN_DOUBT &&
                     rc != NSQ_ERR_QUEUE_FULL) {
                r->unexpected++;
                r->last_unexpected = rc;
            }
        } else {
            size_t slot = r->base + r->used;
            rc = nsq_producer_publish_async(r->p, "race", body, (size_t)n,
                                            rec_cb, &r->rec->slots[slot]);
            if (rc == NSQ_OK) {
                atomic_store(&r->accepted[slot], true);
                r->used++;
            } else if (rc != NSQ_ERR_STOPPED && rc != NSQ_ERR_QUEUE_FULL) {
                r->unexpected++;
                r->last_unexpected = rc;
            }
        }
        if (rc == NSQ_ERR_STOPPED)
            break;
    }
    atomic_fetch_add(r->finished, 1);
    return NULL;
}

/* Run in a loop: the race differs each time. */
START_TEST(test_stop_racing_publishers)
{
    enum { NT = 8, PER = 4000 };
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, NT * PER);
    atomic_bool *accepted = calloc(r.n, sizeof *accepted);
    ck_assert_ptr_nonnull(accepted);
    for (size_t i = 0; i < r.n; i++)
        atomic_init(&accepted[i], false);
    atomic_int finished;
    atomic_init(&finished, 0);
    racer_t rc[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        memset(&rc[i], 0, sizeof rc[i]);
        rc[i].p = p;
        rc[i].rec = &r;
        rc[i].accepted = accepted;
        rc[i].base = (size_t)i * PER;
        rc[i].max = PER;
        rc[i].id = i;
        rc[i].finished = &finished;
        ck_assert_int_eq(pthread_create(&th[i], NULL, racer_main, &rc[i]), 0);
    }
    /* Let them get going, a different amount each round: until the broker
     * has that many of their messages. */
    bool going;
    WAIT_UNTIL(going, nsq_testd_count(t, "race") >= (uint64_t)(100 + 400 * _i),
               WAIT_MS);
    ck_assert(going);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&finished) == NT, WAIT_MS);
    ck_assert_msg(ok, "only %d of %d publishing threads returned",
                  atomic_load(&finished), NT);
    long async_accepted = 0, sync_ok = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(rc[i].unexpected == 0, "thread %d: %ld unexpected (%s)",
                      i, rc[i].unexpected, nsq_err2name(rc[i].last_unexpected));
        async_accepted += (long)rc[i].used;
        sync_ok += rc[i].sync_ok;
    }
    /* Stop returned: every accepted publish has had its one callback. */
    ck_assert_int_eq(atomic_load(&r.total), (int)async_accepted);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_int_eq(atomic_load(&r.total), (int)async_accepted);
    long async_ok = 0;
    for (size_t i = 0; i < r.n; i++) {
        int want = atomic_load(&accepted[i]) ? 1 : 0;
        ck_assert_msg(rec_calls(&r, i) == want, "slot %zu: %d callbacks", i,
                      rec_calls(&r, i));
        if (want) {
            nsq_err_t e = rec_result(&r, i);
            ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_STOPPED ||
                              e == NSQ_ERR_IN_DOUBT,
                          "slot %zu: %s", i, nsq_err2name(e));
            async_ok += e == NSQ_OK;
        }
    }
    /* Every OK arrived (nsqd may have more: in-doubt ones). */
    ck_assert_uint_ge(nsq_testd_count(t, "race"),
                      (uint64_t)(async_ok + sync_ok));
    free(accepted);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct worker {
    nsq_producer_t *p;
    rec_t *rec;
    int id, n;
    bool async;
    long failures;
    nsq_err_t last_err;
} worker_t;

/* The body of thread id's message seq: its label, then bytes that depend
 * on both (NULs included), of a length that varies. */
static size_t make_body(char *buf, size_t cap, int id, int seq)
{
    int n = snprintf(buf, cap, "T%d-%05d|", id, seq);
    size_t len = (size_t)n + (size_t)(seq % 61);
    ck_assert_uint_le(len, cap);
    for (size_t i = (size_t)n; i < len; i++)
        buf[i] = (char)((id * 31 + seq + (int)i) % 7 == 0
                            ? 0
                            : (id * 131 + seq * 7 + (int)i));
    return len;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char body[128];
    for (int i = 0; i < w->n; i++) {
        size_t len = make_body(body, sizeof body, w->id, i);
        nsq_err_t rc =
            w->async ? nsq_producer_publish_async(
                           w->p, "many", body, len, rec_cb,
                           &w->rec->slots[(size_t)w->id * (size_t)w->n + i])
                     : nsq_producer_publish(w->p, "many", body, len, NULL, 0);
        if (rc != NSQ_OK) {
            w->failures++;
            w->last_err = rc;
        }
    }
    return NULL;
}

START_TEST(test_many_threads)
{
    enum { NT = 8, N = 2000 };
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    rec_t r;
    rec_init(&r, (size_t)NT * N);
    worker_t w[NT];
    pthread_t th[NT];
    int async_threads = 0;
    for (int i = 0; i < NT; i++) {
        /* Half publish async, half sync. */
        w[i] = (worker_t){p, &r, i, N, i % 2 == 0, 0, NSQ_OK};
        async_threads += w[i].async;
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].failures == 0, "thread %d: %ld failures (%s)", i,
                      w[i].failures, nsq_err2name(w[i].last_err));
    }
    ck_assert(rec_wait(&r, async_threads * N, WAIT_MS));
    for (int i = 0; i < NT; i++) {
        if (!w[i].async)
            continue;
        for (int k = 0; k < N; k++) {
            size_t s = (size_t)i * N + (size_t)k;
            ck_assert_int_eq(rec_calls(&r, s), 1);
            ck_assert_int_eq(rec_result(&r, s), NSQ_OK);
        }
    }
    ck_assert_int_eq(atomic_load(&r.on_owner), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "many"), (uint64_t)NT * N);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published, (uint64_t)NT * N);
    ck_assert_uint_eq(s.commands_ok, (uint64_t)NT * N);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_uint_eq(s.in_flight, 0);

    /* Bodies intact, and each thread's in the order it published them. */
    int next[NT] = {0};
    char want[128];
    for (size_t m = 0; m < (size_t)NT * N; m++) {
        nsq_testd_msg_t msg;
        int id = -1, seq = -1;
        ck_assert(nsq_testd_message(t, "many", m, &msg));
        ck_assert_int_eq(sscanf(msg.body, "T%d-%d|", &id, &seq), 2);
        ck_assert(id >= 0 && id < NT);
        ck_assert_int_eq(seq, next[id]);
        next[id]++;
        size_t len = make_body(want, sizeof want, id, seq);
        ck_assert_uint_eq(msg.len, len);
        ck_assert_mem_eq(msg.body, want, len);
        nsq_testd_msg_free(&msg);
    }
    for (int i = 0; i < NT; i++)
        ck_assert_int_eq(next[i], N);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *producer_suite(void)
{
    Suite *s = suite_create("producer");
    TCase *tc = tcase("publish");
    tcase_add_test(tc, test_sync_publish_kinds);
    tcase_add_test(tc, test_ping_async);
    tcase_add_test(tc, test_async_publish_callbacks);
    tcase_add_test(tc, test_async_body_is_copied);
    tcase_add_test(tc, test_argument_errors);
    tcase_add_test(tc, test_identify_reply);
    tcase_add_test(tc, test_stats_consistent);
    suite_add_tcase(s, tc);

    tc = tcase("lifecycle");
    tcase_add_test(tc, test_lazy_connect);
    tcase_add_test(tc, test_bad_address);
    tcase_add_test(tc, test_destroy_variants);
    tcase_add_test(tc, test_multiple_producers);
    tcase_add_test(tc, test_idle_heartbeats);
    suite_add_tcase(s, tc);

    tc = tcase("callbacks");
    tcase_add_test(tc, test_callback_reentry);
    tcase_add_test(tc, test_stop_from_callback);
    suite_add_tcase(s, tc);

    tc = tcase("stop");
    tcase_add_test(tc, test_stop_graceful);
    tcase_add_test(tc, test_stop_no_wait);
    tcase_add_test(tc, test_stop_never_connected);
    tcase_add_test(tc, test_stop_concurrent);
    tcase_add_loop_test(tc, test_stop_racing_publishers, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase("threads");
    tcase_add_test(tc, test_many_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(producer_suite());
}
