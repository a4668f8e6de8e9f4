/*
 * Coalescing: PUBs waiting when the loop writes go out as one MPUB.  The
 * broker holds the answer to a first command (hold_from) while max_unacked
 * is 1, so the PUBs published meanwhile all wait; the producer's queued
 * count says when they do, then the hold is lifted and the broker's count
 * of PUB, MPUB and DPUB commands shows how they went out.
 */
#include "producer_testutil.h"

enum { N = 49 };

/* A broker from o (its fault set to hold conn 1's answers) and a producer
 * (max_unacked 1, the extra settings kv) whose first PUB, to topic, is
 * written and unanswered: what is published next waits. */
static nsq_producer_t *held_on(nsq_testd_opts_t *o, nsq_testd_t **tp,
                               rec_t *first, const char *topic,
                               const char *const *kv)
{
    o->fault.conn = 1;
    o->fault.hold_from = 1;
    *tp = broker_start_opts(o);
    const char *all[32] = {"max_unacked", "1", "publish_timeout", "20s"};
    size_t n = 4;
    for (size_t i = 0; kv && kv[i]; i++)
        all[n++] = kv[i];
    all[n] = NULL;
    nsq_producer_t *p = producer_new(nsq_testd_address(*tp), all);
    rec_init(first, 1);
    ck_assert_int_eq(nsq_producer_publish_async(p, topic, "first", 5, rec_cb,
                                                rec_slot(first, 0)),
                     NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, pstats(p).in_flight == 1, WAIT_MS);
    ck_assert(ok);
    return p;
}

/* As held_on, on a broker with the defaults and the fault extra, first
 * PUB to "b". */
static nsq_producer_t *held_producer(nsq_testd_t **tp, rec_t *first,
                                     const nsq_testd_fault_t *extra,
                                     const char *const *kv)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    if (extra)
        o.fault = *extra;
    return held_on(&o, tp, first, "b", kv);
}

/* Publishes n async PUBs (or DPUBs) to topic, the bodies (NULL: "m%03d"),
 * waits until all are queued, then lifts the hold (keeping fault's other
 * settings) and waits for every callback. */
static void publish_held(nsq_producer_t *p, nsq_testd_t *t, rec_t *r,
                         const char *topic, const char *const *bodies, size_t n,
                         bool dpub, const nsq_testd_fault_t *fault)
{
    rec_init(r, n);
    char made[24]; /* "m" and any size_t */
    for (size_t i = 0; i < n; i++) {
        const char *body = bodies ? bodies[i] : made;
        if (!bodies)
            snprintf(made, sizeof made, "m%03zu", i);
        size_t len = strlen(body);
        nsq_err_t rc =
            dpub ? nsq_producer_deferred_publish_async(p, topic, 10, body, len,
                                                       rec_cb, rec_slot(r, i))
                 : nsq_producer_publish_async(p, topic, body, len, rec_cb,
                                              rec_slot(r, i));
        ck_assert_int_eq(rc, NSQ_OK);
    }
    bool ok;
    WAIT_UNTIL(ok, pstats(p).queued == n, WAIT_MS);
    ck_assert_msg(ok, "queued %llu of %zu",
                  (unsigned long long)pstats(p).queued, n);
    nsq_testd_fault_t f = fault ? *fault : (nsq_testd_fault_t){0};
    f.conn = 1;
    nsq_testd_set_fault(t, &f);
    ck_assert(rec_wait(r, (int)n, WAIT_MS));
}

/* topic holds from messages, then exactly "m000".."m<n-1>" in order, each
 * with defer_ms. */
static void assert_order(nsq_testd_t *t, const char *topic, size_t from,
                         size_t n, int64_t defer_ms)
{
    ck_assert_uint_eq(nsq_testd_count(t, topic), from + n);
    char body[16];
    for (size_t i = 0; i < n; i++) {
        int len = snprintf(body, sizeof body, "m%03zu", i);
        assert_message(t, topic, from + i, body, (size_t)len, defer_ms);
    }
}

static void finish(nsq_producer_t *p, nsq_testd_t *t, rec_t *first, rec_t *r)
{
    ck_assert(rec_wait(first, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(first, 0), NSQ_OK);
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
    rec_free(first);
    rec_free(r);
}

START_TEST(waiting_pubs_go_as_one_mpub)
{
    nsq_testd_t *t;
    rec_t first, r;
    nsq_producer_t *p = held_producer(&t, &first, NULL, NULL);
    publish_held(p, t, &r, "b", NULL, N, false, NULL);
    for (size_t i = 0; i < N; i++)
        ck_assert_int_eq(rec_result(&r, i), NSQ_OK);
    nsq_testd_stats_t bs = broker_stats(t);
    ck_assert_uint_eq(bs.pubs, 1);
    ck_assert_uint_eq(bs.mpubs, 1);
    assert_order(t, "b", 1, N, 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.published, N + 1);
    ck_assert_uint_eq(s.commands_ok, N + 1); /* per publish call */
    ck_assert_uint_eq(s.commands_written, 2);
    ck_assert_uint_eq(s.coalesced, N);
    finish(p, t, &first, &r);
}
END_TEST

/* batch_max_messages 7: 49 waiting PUBs make 7 MPUBs. */
START_TEST(batch_max_messages_limit)
{
    nsq_testd_t *t;
    rec_t first, r;
    static const char *const kv[] = {"batch_max_messages", "7", NULL};
    nsq_producer_t *p = held_producer(&t, &first, NULL, kv);
    publish_held(p, t, &r, "c", NULL, N, false, NULL);
    nsq_testd_stats_t bs = broker_stats(t);
    ck_assert_uint_eq(bs.pubs, 1);
    ck_assert_uint_eq(bs.mpubs, 7);
    assert_order(t, "c", 0, N, 0);
    finish(p, t, &first, &r);
}
END_TEST

/* Bodies of 4 bytes are MPUB members of 8: a body limit of 4 + 5 * 8 bytes
 * takes 5 of them; from batch_max_bytes (_i 0) or max_body_size (_i 1). */
START_TEST(batch_bytes_limit)
{
    nsq_testd_t *t;
    rec_t first, r;
    static const char *const by_batch[] = {"batch_max_bytes", "44", NULL};
    static const char *const by_body[] = {"max_body_size", "44", "max_msg_size",
                                          "36", NULL};
    nsq_producer_t *p =
        held_producer(&t, &first, NULL, _i == 0 ? by_batch : by_body);
    publish_held(p, t, &r, "d", NULL, 25, false, NULL);
    nsq_testd_stats_t bs = broker_stats(t);
    ck_assert_uint_eq(bs.pubs, 1);
    ck_assert_uint_eq(bs.mpubs, 5);
    assert_order(t, "d", 0, 25, 0);
    finish(p, t, &first, &r);
}
END_TEST

/* nsqd rejects the MPUB: every PUB in it fails with nsqd's MPUB text. */
START_TEST(rejected_batch_fails_each_member)
{
    nsq_testd_t *t;
    rec_t first, r;
    nsq_testd_fault_t fail = {.pub_failed_at = 2};
    nsq_producer_t *p = held_producer(&t, &first, &fail, NULL);
    publish_held(p, t, &r, "e", NULL, N, false, &fail);
    for (size_t i = 0; i < N; i++) {
        char d[256];
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_int_eq(rec_result(&r, i), NSQ_E_MPUB_FAILED);
        rec_detail(&r, i, d, sizeof d);
        ck_assert_str_eq(d, "E_MPUB_FAILED MPUB failed exiting");
    }
    ck_assert_uint_eq(nsq_testd_count(t, "e"), 0);
    ck_assert_uint_eq(pstats(p).rejected, N);
    finish(p, t, &first, &r);
}
END_TEST

/* A body over nsqd's --max-msg-size inside a batch: nsqd refuses the MPUB
 * (storing nothing), so its PUBs are sent again one by one and only the
 * oversize one fails, with nsqd's PUB text. */
START_TEST(oversize_member_sent_alone)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.info.limits.max_msg_size = 8;
    nsq_testd_t *t;
    rec_t first, r;
    nsq_producer_t *p = held_on(&o, &t, &first, "f", NULL);
    static const char *const bodies[] = {"ok1", "far too long for nsqd", "ok2"};
    publish_held(p, t, &r, "f", bodies, 3, false, NULL);
    ck_assert_msg(rec_result(&r, 0) == NSQ_OK, "%s",
                  nsq_err2name(rec_result(&r, 0)));
    ck_assert_int_eq(rec_result(&r, 1), NSQ_E_BAD_MESSAGE);
    char detail[256];
    rec_detail(&r, 1, detail, sizeof detail);
    ck_assert_str_eq(detail, "E_BAD_MESSAGE PUB message too big 21 > 8");
    ck_assert_msg(rec_result(&r, 2) == NSQ_OK, "%s",
                  nsq_err2name(rec_result(&r, 2)));
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(rec_calls(&r, i), 1);
    ck_assert(rec_wait(&first, 1, WAIT_MS));
    ck_assert_int_eq(rec_result(&first, 0), NSQ_OK);
    /* One MPUB refused, then the three alone; stored: first, ok1, ok2. */
    ck_assert_uint_eq(pstats(p).coalesced, 3);
    ck_assert_uint_eq(nsq_testd_count(t, "f"), 3);
    nsq_testd_msg_t m;
    ck_assert(nsq_testd_message(t, "f", 1, &m));
    ck_assert_str_eq(m.body, "ok1");
    nsq_testd_msg_free(&m);
    ck_assert(nsq_testd_message(t, "f", 2, &m));
    ck_assert_str_eq(m.body, "ok2");
    nsq_testd_msg_free(&m);
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
    rec_free(&first);
    rec_free(&r);
}
END_TEST

/* nsqd's --max-body-size is not in its IDENTIFY reply.  A batch over it is
 * refused (E_BAD_BODY, nothing stored), sent again PUB by PUB, and the
 * limit in nsqd's text bounds the batches made after it. */
START_TEST(body_limit_learned_from_nsqd)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    /* IDENTIFY's body must fit too: 3 of these PUBs, not 4, fit in 400. */
    o.info.limits.max_body_size = 400; /* 4 + 3 x (4 + 100) = 316 */
    nsq_testd_t *t;
    rec_t first, r;
    nsq_producer_t *p = held_on(&o, &t, &first, "lim", NULL);
    bool ok;
    static char text[6][128]; /* 100 bytes used */
    const char *bodies[6];
    for (size_t i = 0; i < 6; i++) {
        snprintf(text[i], sizeof text[i], "body-%03zu-%091d", i, 0);
        bodies[i] = text[i];
    }
    publish_held(p, t, &r, "lim", bodies, 6, false, NULL);
    for (size_t i = 0; i < 6; i++)
        ck_assert_msg(rec_result(&r, i) == NSQ_OK, "%zu: %s", i,
                      nsq_err2name(rec_result(&r, i)));
    ck_assert_uint_eq(nsq_testd_count(t, "lim"), 7);
    rec_free(&r);

    /* Held again on the new connection: the next batches fit in 400. */
    nsq_testd_stats_t before;
    nsq_testd_stats(t, &before);
    nsq_testd_fault_t hold = {.conn = 2, .hold_from = 1};
    nsq_testd_set_fault(t, &hold);
    rec_t second;
    rec_init(&second, 1);
    ck_assert_int_eq(nsq_producer_publish_async(p, "lim", "again", 5, rec_cb,
                                                rec_slot(&second, 0)),
                     NSQ_OK);
    WAIT_UNTIL(ok, pstats(p).in_flight == 1, WAIT_MS);
    ck_assert(ok);
    publish_held(p, t, &r, "lim", bodies, 6, false, NULL);
    for (size_t i = 0; i < 6; i++)
        ck_assert_msg(rec_result(&r, i) == NSQ_OK, "%zu: %s", i,
                      nsq_err2name(rec_result(&r, i)));
    nsq_testd_stats_t after;
    nsq_testd_stats(t, &after);
    ck_assert_uint_eq(after.mpubs - before.mpubs, 2); /* 3 + 3 */
    ck_assert_uint_eq(nsq_testd_count(t, "lim"), 14);
    for (size_t i = 0; i < 14; i++) {
        nsq_testd_msg_t m;
        ck_assert(nsq_testd_message(t, "lim", i, &m));
        const char *want = i == 0   ? "first"
                           : i == 7 ? "again"
                                    : bodies[(i - 1) % 7];
        ck_assert_str_eq(m.body, want);
        nsq_testd_msg_free(&m);
    }
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
    rec_free(&first);
    rec_free(&second);
    rec_free(&r);
}
END_TEST

/* DPUBs are never coalesced; with batch_max_messages 1 neither are PUBs. */
START_TEST(not_coalesced)
{
    nsq_testd_t *t;
    rec_t first, r;
    static const char *const off[] = {"batch_max_messages", "1", NULL};
    nsq_producer_t *p = held_producer(&t, &first, NULL, _i == 0 ? NULL : off);
    publish_held(p, t, &r, "g", NULL, N, _i == 0, NULL);
    nsq_testd_stats_t bs = broker_stats(t);
    ck_assert_uint_eq(bs.mpubs, 0);
    ck_assert_uint_eq(bs.dpubs, _i == 0 ? N : 0);
    ck_assert_uint_eq(bs.pubs, _i == 0 ? 1 : N + 1);
    assert_order(t, "g", 0, N, _i == 0 ? 10 : 0);
    ck_assert_uint_eq(pstats(p).coalesced, 0);
    finish(p, t, &first, &r);
}
END_TEST

/* linger holds a lone PUB back (a lower bound only). */
START_TEST(linger_waits)
{
    nsq_testd_t *t = broker_start();
    static const char *const kv[] = {"linger", "300ms", NULL};
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    ck_assert_int_eq(nsq_producer_ping(p, NULL, 0), NSQ_OK);
    int64_t t0 = tt_now_ms();
    publish_ok(p, "h", "lone");
    ck_assert_int_ge(tt_now_ms() - t0, 300);
    ck_assert_uint_eq(nsq_testd_count(t, "h"), 1);
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- threads */

enum { THREADS = 4, PER = 300 };

typedef struct worker {
    nsq_producer_t *p;
    int id;
    bool sync;
    atomic_int *accepted, *done;
    bool stop_race;
} worker_t;

static void count_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                     void *opaque)
{
    (void)p;
    (void)err;
    (void)detail;
    atomic_fetch_add((atomic_int *)opaque, 1);
}

static void *work(void *arg)
{
    worker_t *w = arg;
    char body[32];
    for (int i = 0; w->stop_race || i < PER; i++) {
        int len = snprintf(body, sizeof body, "t%d-%05d", w->id, i);
        nsq_err_t rc;
        if (w->sync)
            rc = nsq_producer_publish(w->p, "o", body, (size_t)len, NULL, 0);
        else
            rc = nsq_producer_publish_async(w->p, "o", body, (size_t)len,
                                            count_cb, w->done);
        if (w->stop_race) {
            if (rc == NSQ_ERR_STOPPED)
                break;
            if (rc == NSQ_OK && !w->sync)
                atomic_fetch_add(w->accepted, 1);
            continue;
        }
        ck_assert_int_eq(rc, NSQ_OK);
    }
    return NULL;
}

/* Sync and async publishers on several threads: each thread's messages
 * arrive in its order. */
START_TEST(order_per_thread)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    atomic_int done = 0;
    worker_t w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){.p = p, .id = i, .sync = i % 2 == 0, .done = &done};
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert(nsq_testd_wait_count(t, "o", THREADS * PER, WAIT_MS));
    int next[THREADS] = {0};
    for (size_t i = 0; i < THREADS * PER; i++) {
        nsq_testd_msg_t m;
        ck_assert(nsq_testd_message(t, "o", i, &m));
        int id, seq;
        ck_assert_int_eq(sscanf(m.body, "t%d-%d", &id, &seq), 2);
        nsq_testd_msg_free(&m);
        ck_assert(id >= 0 && id < THREADS);
        ck_assert_int_eq(seq, next[id]);
        next[id]++;
    }
    nsq_producer_destroy(p);
    ck_assert_int_eq(atomic_load(&done), (THREADS / 2) * PER);
    nsq_testd_destroy(t);
}
END_TEST

/* Stop while threads publish: every accepted async publish gets exactly
 * one callback by the time stop returns (ThreadSanitizer watches). */
START_TEST(stop_races_publishers)
{
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), NULL);
    atomic_int accepted = 0, done = 0;
    worker_t w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){.p = p,
                          .id = i,
                          .sync = i == 0,
                          .accepted = &accepted,
                          .done = &done,
                          .stop_race = true};
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    bool ok;
    WAIT_UNTIL(ok, pstats(p).published >= 200, WAIT_MS);
    ck_assert(ok);
    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&done), atomic_load(&accepted));
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
}
END_TEST

/* The queue limit without a lock on the fast path: full at once, and a
 * waiting publisher gets room when the loop writes. */
START_TEST(queue_limit)
{
    nsq_testd_t *t;
    rec_t first, r;
    static const char *const kv[] = {"queue_max_messages", "5", NULL};
    nsq_producer_t *p = held_producer(&t, &first, NULL, kv);
    rec_init(&r, 5);
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(
            nsq_producer_publish_async(p, "q", "x", 1, rec_cb, rec_slot(&r, i)),
            NSQ_OK);
    ck_assert_int_eq(nsq_producer_publish_async(p, "q", "y", 1, NULL, NULL),
                     NSQ_ERR_QUEUE_FULL);
    ck_assert_uint_eq(pstats(p).queue_full, 1);
    nsq_testd_fault_t none = {0};
    nsq_testd_set_fault(t, &none);
    ck_assert(rec_wait(&r, 5, WAIT_MS));
    publish_ok(p, "q", "z");
    ck_assert_uint_eq(nsq_testd_count(t, "q"), 6);
    finish(p, t, &first, &r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("producer_batch");
    TCase *tc = tcase("batch");
    tcase_add_test(tc, waiting_pubs_go_as_one_mpub);
    tcase_add_test(tc, batch_max_messages_limit);
    tcase_add_loop_test(tc, batch_bytes_limit, 0, 2);
    tcase_add_test(tc, rejected_batch_fails_each_member);
    tcase_add_test(tc, oversize_member_sent_alone);
    tcase_add_test(tc, body_limit_learned_from_nsqd);
    tcase_add_loop_test(tc, not_coalesced, 0, 2);
    tcase_add_test(tc, linger_waits);
    tcase_add_test(tc, queue_limit);
    suite_add_tcase(s, tc);
    TCase *th = tcase("threads");
    tcase_add_test(th, order_per_thread);
    tcase_add_test(th, stop_races_publishers);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
