/*
 * PUB, MPUB and DPUB through the library against a real nsqd with small
 * limits: every byte value read back exactly, nsqd's own answers at and
 * one past its --max-msg-size, --max-body-size and --max-req-timeout, the
 * topic names at the edge of validity, and a DPUB's delay.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"
#include "nettest.h"
#include "producer_testutil.h"

#define MAX_MSG 1024
#define MAX_BODY 4096
#define MAX_REQ_MS 2000

static const char *const limits[] = {"--max-msg-size=1024",
                                     "--max-body-size=4096",
                                     "--max-req-timeout=2s", NULL};

/* Body i of n: 256 bytes, every value once, rotated by i, so each body is
 * distinct and each holds every byte value. */
static void all_bytes(unsigned char out[256], size_t i)
{
    for (size_t b = 0; b < 256; b++)
        out[b] = (unsigned char)(b + i);
}

/* Reads n messages of topic and asserts they are exactly bodies[0..n) (in
 * any order), and that nsqd counted exactly n. */
static void assert_stored(const it_nsqd_t *d, const char *topic,
                          unsigned char (*bodies)[256], const size_t *lens,
                          size_t n)
{
    it_topic_stats_t ts = it_topic_stats(d, topic);
    ck_assert_int_eq(ts.message_count, (int64_t)n);
    it_msg_t *got;
    size_t k = it_consume(d, topic, n, &got);
    ck_assert_uint_eq(k, n);
    it_msg_t *want = calloc(n, sizeof *want);
    for (size_t i = 0; i < n; i++) {
        want[i].body = (char *)bodies[i];
        want[i].len = lens[i];
    }
    it_msgs_sort(got, n);
    it_msgs_sort(want, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(got[i].len, want[i].len);
        ck_assert_mem_eq(got[i].body, want[i].body, want[i].len);
    }
    free(want);
    it_msgs_free(got, k);
}

/* ------------------------------------------------------------ every byte */

enum kind { K_PUB, K_MPUB, K_DPUB };

/* 16 bodies of 256 bytes (every byte value) by kind, sync or async. */
static void every_byte(enum kind kind, bool async)
{
    it_nsqd_t *d = it_nsqd_start(limits);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    enum { N = 16 };
    unsigned char bodies[N][256];
    size_t lens[N];
    nsq_iov_t iov[N];
    for (size_t i = 0; i < N; i++) {
        all_bytes(bodies[i], i);
        lens[i] = 256;
        iov[i].base = bodies[i];
        iov[i].len = 256;
    }
    rec_t rec;
    rec_init(&rec, N);
    char err[256] = "";
    const char *topic = "interop_bytes";
    if (kind == K_MPUB) {
        /* Two MPUBs of 8: 4 + 8 x 260 = 2084 bytes, under max-body-size. */
        for (size_t h = 0; h < 2; h++) {
            nsq_err_t rc =
                async ? nsq_producer_multi_publish_async(
                            p, topic, iov + 8 * h, 8, rec_cb, rec_slot(&rec, h))
                      : nsq_producer_multi_publish(p, topic, iov + 8 * h, 8,
                                                   err, sizeof err);
            ASSERT_RESULT(rc, err, NSQ_OK, "");
        }
        if (async) {
            ck_assert(rec_wait(&rec, 2, IT_WAIT_MS));
            for (size_t h = 0; h < 2; h++)
                ck_assert_int_eq(rec_result(&rec, h), NSQ_OK);
        }
    } else {
        for (size_t i = 0; i < N; i++) {
            nsq_err_t rc;
            if (kind == K_PUB)
                rc = async
                         ? nsq_producer_publish_async(p, topic, bodies[i], 256,
                                                      rec_cb, rec_slot(&rec, i))
                         : nsq_producer_publish(p, topic, bodies[i], 256, err,
                                                sizeof err);
            else
                rc = async ? nsq_producer_deferred_publish_async(
                                 p, topic, 10, bodies[i], 256, rec_cb,
                                 rec_slot(&rec, i))
                           : nsq_producer_deferred_publish(
                                 p, topic, 10, bodies[i], 256, err, sizeof err);
            ASSERT_RESULT(rc, err, NSQ_OK, "");
        }
        if (async) {
            ck_assert(rec_wait(&rec, N, IT_WAIT_MS));
            for (size_t i = 0; i < N; i++) {
                ck_assert_int_eq(rec_calls(&rec, i), 1);
                ck_assert_int_eq(rec_result(&rec, i), NSQ_OK);
            }
        }
    }
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.published, N);
    ck_assert_uint_eq(st.rejected, 0);
    assert_stored(d, topic, bodies, lens, N);
    nsq_producer_destroy(p);
    rec_free(&rec);
    it_nsqd_free(d);
}

START_TEST(pub_sync_every_byte)
{
    every_byte(K_PUB, false);
}
END_TEST

START_TEST(pub_async_every_byte)
{
    every_byte(K_PUB, true);
}
END_TEST

START_TEST(mpub_sync_every_byte)
{
    every_byte(K_MPUB, false);
}
END_TEST

START_TEST(mpub_async_every_byte)
{
    every_byte(K_MPUB, true);
}
END_TEST

START_TEST(dpub_sync_every_byte)
{
    every_byte(K_DPUB, false);
}
END_TEST

START_TEST(dpub_async_every_byte)
{
    every_byte(K_DPUB, true);
}
END_TEST

/* ------------------------------------------------------------ limits */

/* A body of len bytes, filled with a pattern. */
static unsigned char *body_of(size_t len, unsigned char seed)
{
    unsigned char *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(seed + i * 7);
    return b;
}

/* Publishes one body of len through kind; returns the result, detail in
 * err. */
static nsq_err_t publish_kind(nsq_producer_t *p, enum kind kind,
                              const char *topic, const void *body, size_t len,
                              char *err, size_t errlen)
{
    nsq_iov_t iov = {body, len};
    switch (kind) {
    case K_PUB:
        return nsq_producer_publish(p, topic, body, len, err, errlen);
    case K_MPUB:
        return nsq_producer_multi_publish(p, topic, &iov, 1, err, errlen);
    default:
        return nsq_producer_deferred_publish(p, topic, 0, body, len, err,
                                             errlen);
    }
}

/* A body of exactly --max-msg-size is stored; one byte more is refused by
 * nsqd with its text, the connection closes, and the next publish
 * reconnects and succeeds. */
static void msg_size_edge(enum kind kind, const char *want_detail)
{
    it_nsqd_t *d = it_nsqd_start(limits);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    const char *topic = "interop_msg_size";
    char err[256] = "";
    unsigned char *at = body_of(MAX_MSG, 1), *past = body_of(MAX_MSG + 1, 2);

    ASSERT_RESULT(publish_kind(p, kind, topic, at, MAX_MSG, err, sizeof err),
                  err, NSQ_OK, "");
    ASSERT_RESULT(
        publish_kind(p, kind, topic, past, MAX_MSG + 1, err, sizeof err), err,
        NSQ_E_BAD_MESSAGE, want_detail);
    ASSERT_RESULT(publish_kind(p, kind, topic, at, MAX_MSG, err, sizeof err),
                  err, NSQ_OK, "");

    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.published, 2);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.connects, 2);
    it_msg_t *got;
    ck_assert_uint_eq(it_consume(d, topic, 2, &got), 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_uint_eq(got[i].len, MAX_MSG);
        ck_assert_mem_eq(got[i].body, at, MAX_MSG);
    }
    it_msgs_free(got, 2);
    ck_assert_int_eq(it_topic_stats(d, topic).message_count, 2);
    free(at);
    free(past);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}

START_TEST(pub_at_and_past_max_msg_size)
{
    msg_size_edge(K_PUB, "E_BAD_MESSAGE PUB message too big 1025 > 1024");
}
END_TEST

START_TEST(mpub_message_at_and_past_max_msg_size)
{
    msg_size_edge(K_MPUB, "E_BAD_MESSAGE MPUB message too big 1025 > 1024");
}
END_TEST

START_TEST(dpub_at_and_past_max_msg_size)
{
    msg_size_edge(K_DPUB, "E_BAD_MESSAGE DPUB message too big 1025 > 1024");
}
END_TEST

/* An MPUB body of exactly --max-body-size (4 messages of 1019 bytes: 4 +
 * 4 x 1023 = 4096) is stored; one byte more is E_BAD_BODY. */
START_TEST(mpub_at_and_past_max_body_size)
{
    it_nsqd_t *d = it_nsqd_start(limits);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    const char *topic = "interop_body_size";
    char err[256] = "";
    unsigned char *m[4];
    nsq_iov_t iov[4];
    for (size_t i = 0; i < 4; i++) {
        m[i] = body_of(1020, (unsigned char)(10 + i));
        iov[i].base = m[i];
        iov[i].len = 1019;
    }
    ASSERT_RESULT(nsq_producer_multi_publish(p, topic, iov, 4, err, sizeof err),
                  err, NSQ_OK, "");
    iov[3].len = 1020;
    ASSERT_RESULT(nsq_producer_multi_publish(p, topic, iov, 4, err, sizeof err),
                  err, NSQ_E_BAD_BODY,
                  "E_BAD_BODY MPUB body too big 4097 > 4096");

    it_msg_t *got;
    ck_assert_uint_eq(it_consume(d, topic, 4, &got), 4);
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(got[i].len, 1019);
        ck_assert_mem_eq(got[i].body, m[i], 1019);
    }
    it_msgs_free(got, 4);
    ck_assert_int_eq(it_topic_stats(d, topic).message_count, 4);
    for (size_t i = 0; i < 4; i++)
        free(m[i]);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

/* DPUB at --max-req-timeout is accepted; 1 ms past it nsqd answers
 * E_INVALID with the range. */
START_TEST(dpub_past_max_req_timeout)
{
    it_nsqd_t *d = it_nsqd_start(limits);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    const char *topic = "interop_req_timeout";
    char err[256] = "";
    ASSERT_RESULT(nsq_producer_deferred_publish(p, topic, MAX_REQ_MS, "at", 2,
                                                err, sizeof err),
                  err, NSQ_OK, "");
    ASSERT_RESULT(nsq_producer_deferred_publish(p, topic, MAX_REQ_MS + 1,
                                                "past", 4, err, sizeof err),
                  err, NSQ_E_INVALID,
                  "E_INVALID DPUB timeout 2001 out of range 0-2000");
    ck_assert_int_eq(it_topic_stats(d, topic).message_count, 1);
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.published, 1);
    ck_assert_uint_eq(st.rejected, 1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

/* ------------------------------------------------------------ topic names */

/*
 * The client checks names by nsqd's own rule, so no topic that nsqd
 * refuses gets past it: nsqd's rule is ^[.a-zA-Z0-9_-]+(#ephemeral)?$ and
 * 1..64 bytes, the same as nsq_topic_valid.  What can be checked is that
 * the two agree at the edges: the names the client accepts there are
 * stored by nsqd, and the names it refuses nsqd refuses too (sent raw).
 */
START_TEST(topic_names_agree_with_nsqd)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    char t64[65];
    memset(t64, 'x', 64);
    t64[64] = '\0';
    const char *good[] = {t64, "..", "-", "_.-AZaz09", "a#ephemeral"};
    char err[256] = "";
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        ck_assert(nsq_topic_valid(good[i], strlen(good[i])));
        ASSERT_RESULT(nsq_producer_publish(p, good[i], "n", 1, err, sizeof err),
                      err, NSQ_OK, "");
        ck_assert_int_eq(it_topic_stats(d, good[i]).message_count, 1);
    }

    char t65[66];
    memset(t65, 'y', 65);
    t65[65] = '\0';
    const char *bad[] = {t65,          "bad!",         "a/b",
                         "#ephemeral", "a#ephemeralx", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert(!nsq_topic_valid(bad[i], strlen(bad[i])));
        ck_assert_int_eq(
            nsq_producer_publish(p, bad[i], "n", 1, err, sizeof err),
            NSQ_ERR_BAD_TOPIC);
        if (strchr(bad[i], ' '))
            continue; /* a space splits the command line: not a name */
        /* nsqd, asked directly, refuses it too. */
        int fd = tt_connect(d->tcp_port);
        ck_assert_int_ge(fd, 0);
        char cmd[200];
        int n = snprintf(cmd, sizeof cmd, "  V2PUB %s\n%c%c%c%cn", bad[i], 0, 0,
                         0, 1);
        ck_assert(tt_send_all(fd, cmd, (size_t)n));
        unsigned char hdr[8];
        ck_assert(tt_recv_exact(fd, hdr, 8, IT_WAIT_MS));
        uint32_t size =
            (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
        ck_assert_uint_eq(hdr[7], NSQ_FRAME_ERROR);
        char text[300] = "";
        ck_assert_uint_lt(size - 4, sizeof text);
        ck_assert(tt_recv_exact(fd, text, size - 4, IT_WAIT_MS));
        char want[300];
        snprintf(want, sizeof want,
                 "E_BAD_TOPIC PUB topic name \"%s\" is not valid", bad[i]);
        ck_assert_str_eq(text, want);
        close(fd);
    }
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

/* ------------------------------------------------------------ DPUB delay */

/* A DPUB of 1500 ms reaches a subscribed consumer no earlier than 1500 ms
 * after the publish call started (a lower bound only), while a PUB made
 * after it arrives first.  (nsqd scans a new channel's deferred messages
 * only after its 5 s channel-list refresh, so this and the DPUB cases above
 * take about 5 s each.) */
START_TEST(dpub_not_delivered_before_delay)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    const char *topic = "interop_defer";
    it_sub_t *s = it_sub_open(d->tcp_port, topic, "wait", 10);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    char err[256] = "";
    int64_t start = tt_now_ms();
    ASSERT_RESULT(nsq_producer_deferred_publish(p, topic, 1500, "later", 5, err,
                                                sizeof err),
                  err, NSQ_OK, "");
    ASSERT_RESULT(nsq_producer_publish(p, topic, "now", 3, err, sizeof err),
                  err, NSQ_OK, "");
    it_msg_t m1, m2;
    ck_assert(it_sub_next(s, &m1, IT_WAIT_MS));
    ck_assert(it_sub_next(s, &m2, IT_WAIT_MS));
    ck_assert_str_eq(m1.body, "now");
    ck_assert_str_eq(m2.body, "later");
    ck_assert_int_ge(m2.recv_ms - start, 1500);
    ck_assert_uint_eq(m2.attempts, 1);
    it_msg_free(&m1);
    it_msg_free(&m2);
    it_sub_close(s);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("interop_pub");
    TCase *tc = tcase_create("pub");
    tcase_set_timeout(tc, IT_CASE_TIMEOUT);
    tcase_add_test(tc, pub_sync_every_byte);
    tcase_add_test(tc, pub_async_every_byte);
    tcase_add_test(tc, mpub_sync_every_byte);
    tcase_add_test(tc, mpub_async_every_byte);
    tcase_add_test(tc, dpub_sync_every_byte);
    tcase_add_test(tc, dpub_async_every_byte);
    tcase_add_test(tc, pub_at_and_past_max_msg_size);
    tcase_add_test(tc, mpub_message_at_and_past_max_msg_size);
    tcase_add_test(tc, dpub_at_and_past_max_msg_size);
    tcase_add_test(tc, mpub_at_and_past_max_body_size);
    tcase_add_test(tc, dpub_past_max_req_timeout);
    tcase_add_test(tc, topic_names_agree_with_nsqd);
    tcase_add_test(tc, dpub_not_delivered_before_delay);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(suite());
}
