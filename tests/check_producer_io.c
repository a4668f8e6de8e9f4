/*
 * The producer when nsqd goes away in the middle of the traffic: answers
 * that reached the socket before a write failed are still read (fewer
 * results in doubt), and a stop that is draining when the connection is
 * lost reconnects for what was never written.
 *
 * The timing is made, not hoped for.  The broker's hold fault keeps its
 * answers back and releases them one at a time; a completion callback
 * holds the producer's loop thread while the broker answers and resets the
 * connection, so that when the loop goes on, an answer and the reset are
 * both waiting in its socket and its next step is a write.
 */
#include "producer_testutil.h"

#define NPUB 5

/* The loop thread, held inside the first completion callback. */
static atomic_int g_holding;  /* the callback is waiting */
static atomic_int g_released; /* ... and may return */

static void holding_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                       void *opaque)
{
    rec_slot_t *s = opaque;
    if (s->idx == 0) {
        atomic_store(&g_holding, 1);
        bool ok;
        WAIT_UNTIL(ok, atomic_load(&g_released), WAIT_MS);
        (void)ok;
    }
    rec_cb(p, err, detail, opaque);
}

static void publish_n(nsq_producer_t *p, rec_t *r, size_t n, nsq_done_cb cb)
{
    for (size_t i = 0; i < n; i++) {
        char body[32];
        snprintf(body, sizeof body, "m%zu", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "io", body, strlen(body),
                                                    cb, rec_slot(r, i)),
                         NSQ_OK);
    }
}

/*
 * Four publishes are in flight (max_unacked 4), a fifth waits.  The broker
 * answers the first; its callback holds the loop.  Meanwhile the broker
 * answers the second and resets the connection.  Released, the loop writes
 * the fifth, the write fails, and the second OK is still in the socket:
 * read before the failure, it is NSQ_OK, not in doubt.  The third and
 * fourth (stored, unanswered) and the fifth (in the failed write) are in
 * doubt.
 */
START_TEST(write_error_reads_answers_first)
{
    atomic_store(&g_holding, 0);
    atomic_store(&g_released, 0);
    nsq_testd_fault_t f = {.conn = 1, .hold_from = 1};
    nsq_testd_t *t = broker_start_fault(&f);
    static const char *const kv[] = {"max_unacked",
                                     "4",
                                     "publish_timeout",
                                     "60s",
                                     "read_timeout",
                                     "60s",
                                     "batch_max_messages",
                                     "1",
                                     NULL}; /* one PUB per command */
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    rec_t r;
    rec_init(&r, NPUB);
    publish_n(p, &r, NPUB, holding_cb);
    ck_assert(nsq_testd_wait_count(t, "io", 4, WAIT_MS));

    f.hold_from = 2; /* the first OK goes out */
    nsq_testd_set_fault(t, &f);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&g_holding), WAIT_MS);
    ck_assert(ok);
    f.hold_from = 3; /* the second OK, then the reset */
    f.drop = true;
    nsq_testd_set_fault(t, &f);
    WAIT_UNTIL(ok, broker_stats(t).closed >= 1, WAIT_MS);
    ck_assert(ok);
    atomic_store(&g_released, 1);

    ck_assert(rec_wait(&r, NPUB, WAIT_MS));
    static const nsq_err_t want[NPUB] = {NSQ_OK, NSQ_OK, NSQ_ERR_IN_DOUBT,
                                         NSQ_ERR_IN_DOUBT, NSQ_ERR_IN_DOUBT};
    for (size_t i = 0; i < NPUB; i++) {
        char detail[256];
        rec_detail(&r, i, detail, sizeof detail);
        ck_assert_msg(rec_result(&r, i) == want[i], "m%zu: %s (%s), want %s", i,
                      nsq_err2name(rec_result(&r, i)), detail,
                      nsq_err2name(want[i]));
        ck_assert_int_eq(rec_calls(&r, i), 1);
    }
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.commands_ok, 2);
    ck_assert_uint_eq(st.in_doubt, 3);
    /* The fifth never reached the broker. */
    ck_assert_uint_eq(nsq_testd_count(t, "io"), 4);
    nsq_producer_destroy(p);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

static void *stop_main(void *arg)
{
    nsq_producer_stop(arg);
    return NULL;
}

/*
 * Two publishes are written and held unanswered, four wait (max_unacked
 * 2).  The stop starts draining; then the broker drops the connection.
 * The two written are in doubt; the stop reconnects and the four never
 * written are written on the new connection and acknowledged.
 */
START_TEST(stop_reconnects_for_unwritten)
{
    nsq_testd_fault_t f = {.conn = 1, .hold_from = 1};
    nsq_testd_t *t = broker_start_fault(&f);
    static const char *const kv[] = {
        "max_unacked", "2", "stop_timeout", "60s", "batch_max_messages",
        "1",           NULL};
    logrec_t l;
    logrec_init(&l);
    nsq_producer_t *p = producer_logged(nsq_testd_address(t), kv, &l);
    enum { N = 6 };
    rec_t r;
    rec_init(&r, N);
    publish_n(p, &r, N, rec_cb);
    ck_assert(nsq_testd_wait_count(t, "io", 2, WAIT_MS));

    pthread_t stopper;
    ck_assert_int_eq(pthread_create(&stopper, NULL, stop_main, p), 0);
    bool ok;
    WAIT_UNTIL(ok, logrec_has_line(&l, "stopping"), WAIT_MS);
    ck_assert(ok);
    f.drop = true;
    nsq_testd_set_fault(t, &f);
    pthread_join(stopper, NULL);

    ck_assert_int_eq(atomic_load(&r.total), N);
    for (size_t i = 0; i < N; i++) {
        nsq_err_t want = i < 2 ? NSQ_ERR_IN_DOUBT : NSQ_OK;
        char detail[256];
        rec_detail(&r, i, detail, sizeof detail);
        ck_assert_msg(rec_result(&r, i) == want, "m%zu: %s (%s), want %s", i,
                      nsq_err2name(rec_result(&r, i)), detail,
                      nsq_err2name(want));
        ck_assert_int_eq(rec_calls(&r, i), 1);
    }
    /* Two from the first connection, four from the second. */
    ck_assert_uint_eq(nsq_testd_count(t, "io"), N);
    for (size_t i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof body, "m%zu", i);
        uint64_t conn = 0;
        ck_assert(broker_has(t, "io", body, strlen(body), &conn));
        ck_assert_uint_eq(conn, i < 2 ? 1 : 2);
    }
    ck_assert_uint_eq(pstats(p).disconnects, 1);
    nsq_producer_destroy(p);
    logrec_free(&l);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("producer_io");
    TCase *tc = tcase("io");
    tcase_add_test(tc, write_error_reads_answers_first);
    tcase_add_test(tc, stop_reconnects_for_unwritten);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
