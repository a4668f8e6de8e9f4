/*
 * The producer's promises, each checked so that a wrong implementation
 * fails: the exact fate of every publish at stop (the broker's record says
 * which were written), stop waiting for a publisher still inside publish,
 * every concurrent stop caller waiting, publish_timeout for commands never
 * written, the reconnect backoff (doubling, cap, jitter range), and
 * queue_full_timeout (the call waits; a waiter gets in when room frees).
 *
 * Deadlines are bounded on both sides: from below by the monotonic clock,
 * from above by an event the test controls (a later deadline that did not
 * fire, a counter) -- never by a wall-clock threshold.  The producer's
 * debug log says when it backs off, when a caller waits for queue room and
 * when stop waits for publishers; the tests wait on those lines instead of
 * sleeping.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "nsq/producer.h"
#include "nsq/testd.h"
#include "producer_testutil.h"

/* A producer logging to l whose enqueue path calls hook (the test hook). */
static nsq_producer_t *producer_hooked(const char *addr, logrec_t *l,
                                       void (*hook)(void *), void *hook_opaque)
{
    nsq_conf_t *c = conf_make(NULL);
    logrec_attach(c, l);
    c->test_enqueue_hook = hook;
    c->test_enqueue_opaque = hook_opaque;
    return producer_from_conf(addr, c);
}

static void detail_has(rec_t *r, size_t i, const char *needle)
{
    char d[256];
    rec_detail(r, i, d, sizeof d);
    ck_assert_msg(strstr(d, needle) != NULL, "slot %zu: detail '%s' lacks '%s'",
                  i, d, needle);
}

/* ---------------------------------------------------------------- stop */

/*
 * Stop with N commands written (the broker recorded them, unanswered) and
 * M never written (max_unacked holds them back): the written ones are in
 * doubt, the others stopped -- exactly, each one.  Loop: with a graceful
 * stop_timeout that runs out, and with none.
 */
START_TEST(test_stop_fates_exact)
{
    enum { N = 6, M = 5 };
    const char *stop_timeout = _i == 0 ? "200ms" : "0";
    const char *const kv[] = {"max_unacked",
                              "6",
                              "stop_timeout",
                              stop_timeout,
                              "heartbeat_interval",
                              "-1",
                              "batch_max_messages",
                              "1",
                              NULL}; /* one PUB per command */
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "pre", "connected");
    broker_stall(t);
    rec_t r;
    rec_init(&r, N + M);
    char body[16];
    for (int i = 0; i < N + M; i++) {
        int n = snprintf(body, sizeof body, "s%02d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "fates", body, (size_t)n,
                                                    rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    /* The first N are written: the broker has them. */
    ck_assert(nsq_testd_wait_count(t, "fates", N, WAIT_MS));
    bool ok;
    WAIT_UNTIL(ok, pstats(p).queued == M && pstats(p).in_flight == N, WAIT_MS);
    ck_assert_msg(ok, "queued %llu, in flight %llu",
                  (unsigned long long)pstats(p).queued,
                  (unsigned long long)pstats(p).in_flight);
    ck_assert_int_eq(atomic_load(&r.total), 0);

    ck_assert_int_eq(nsq_producer_stop(p), NSQ_OK);
    /* stop returned: every callback ran, once. */
    ck_assert_int_eq(atomic_load(&r.total), N + M);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    /* What the broker received is final now: exactly the first N. */
    ck_assert_uint_eq(nsq_testd_count(t, "fates"), N);
    for (int i = 0; i < N + M; i++) {
        snprintf(body, sizeof body, "s%02d", i);
        int at = broker_find(t, "fates", body, strlen(body), NULL);
        nsq_err_t e = rec_result(&r, (size_t)i);
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        if (i < N) {
            ck_assert_msg(at == i, "%s recorded at %d", body, at);
            ck_assert_msg(e == NSQ_ERR_IN_DOUBT, "%s (written): %s", body,
                          nsq_err2name(e));
            detail_has(&r, (size_t)i, "written");
        } else {
            ck_assert_msg(at < 0, "%s recorded at %d", body, at);
            ck_assert_msg(e == NSQ_ERR_STOPPED, "%s (never written): %s", body,
                          nsq_err2name(e));
            detail_has(&r, (size_t)i, "before it was sent");
        }
    }
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* The test hook: holds a publisher inside the enqueue path. */
typedef struct holder {
    atomic_bool armed;
    atomic_bool inside;
    atomic_bool release;
} holder_t;

static void hold_hook(void *opaque)
{
    holder_t *h = opaque;
    if (!atomic_exchange(&h->armed, false))
        return;
    atomic_store(&h->inside, true);
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while (!atomic_load(&h->release) && tt_now_ms() < deadline)
        sleep_ms(1);
}

typedef struct pubber {
    nsq_producer_t *p;
    rec_t *rec;
    bool sync;
    nsq_err_t rc;
    char err[256];
} pubber_t;

static void *pubber_main(void *arg)
{
    pubber_t *a = arg;
    if (a->sync)
        a->rc =
            nsq_producer_publish(a->p, "held", "h", 1, a->err, sizeof a->err);
    else
        a->rc = nsq_producer_publish_async(a->p, "held", "h", 1, rec_cb,
                                           rec_slot(a->rec, 0));
    return NULL;
}

typedef struct stopper {
    nsq_producer_t *p;
    rec_t *rec;
    atomic_bool *go;
    atomic_int *entered;
    atomic_int *returned;
    nsq_err_t rc;
    int64_t returned_at;
    int seen_total; /* callbacks that had run when this caller returned */
    nsq_producer_stats_t seen;
} stopper_t;

static void *stopper_main(void *arg)
{
    stopper_t *a = arg;
    while (a->go && !atomic_load(a->go))
        sleep_ms(1);
    atomic_fetch_add(a->entered, 1);
    a->rc = nsq_producer_stop(a->p);
    a->returned_at = tt_now_ms();
    a->seen_total = a->rec ? atomic_load(&a->rec->total) : 0;
    nsq_producer_stats(a->p, &a->seen);
    atomic_fetch_add(a->returned, 1);
    return NULL;
}

/*
 * A publisher that passed the stop check is held inside publish while the
 * producer stops: stop's cleanup must wait for it (the spin on the count of
 * callers), then fail its command as stopped, before stop returns.  Loop:
 * an async and a sync publisher.
 */
START_TEST(test_stop_waits_for_publisher_inside)
{
    bool sync = _i == 1;
    holder_t h;
    atomic_init(&h.armed, false);
    atomic_init(&h.inside, false);
    atomic_init(&h.release, false);
    logrec_t l;
    logrec_init(&l);
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p =
        producer_hooked(nsq_testd_address(t), &l, hold_hook, &h);
    publish_ok(p, "pre", "connected");
    rec_t r;
    rec_init(&r, 1);
    atomic_store(&h.armed, true);
    pubber_t pa = {.p = p, .rec = &r, .sync = sync, .rc = (nsq_err_t)12345};
    pthread_t pt;
    ck_assert_int_eq(pthread_create(&pt, NULL, pubber_main, &pa), 0);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&h.inside), WAIT_MS);
    ck_assert(ok);

    atomic_int entered, returned;
    atomic_init(&entered, 0);
    atomic_init(&returned, 0);
    stopper_t sa = {
        .p = p, .rec = &r, .entered = &entered, .returned = &returned};
    pthread_t st;
    ck_assert_int_eq(pthread_create(&st, NULL, stopper_main, &sa), 0);
    /* Either the cleanup says it waits for the publisher, or (wrongly)
     * stop returns without it. */
    const char *waits = "stop: waiting for publishers inside publish";
    WAIT_UNTIL(ok, logrec_count(&l, waits) == 1 || atomic_load(&returned) == 1,
               WAIT_MS);
    ck_assert_msg(ok, "neither the cleanup's wait nor stop's return");
    ck_assert_msg(atomic_load(&returned) == 0,
                  "stop returned while a publisher was inside publish");
    ck_assert_int_eq(logrec_count(&l, waits), 1);
    atomic_store(&h.release, true);
    pthread_join(pt, NULL);
    pthread_join(st, NULL);
    if (sync) {
        ck_assert_msg(pa.rc == NSQ_ERR_STOPPED, "%s (%s)", nsq_err2name(pa.rc),
                      pa.err);
        ck_assert_msg(strstr(pa.err, "before it was sent") != NULL, "%s",
                      pa.err);
        ck_assert_int_eq(sa.seen_total, 0);
    } else {
        /* Accepted (it was in before the stop), so its one callback ran
         * before stop returned, with the truth: never written. */
        ck_assert_int_eq(pa.rc, NSQ_OK);
        ck_assert_int_eq(sa.seen_total, 1);
        ck_assert_int_eq(rec_calls(&r, 0), 1);
        ck_assert_int_eq(rec_result(&r, 0), NSQ_ERR_STOPPED);
    }
    ck_assert_int_eq(sa.rc, NSQ_OK);
    ck_assert_uint_eq(sa.seen.stopped, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    logrec_free(&l);
    ck_assert_uint_eq(nsq_testd_count(t, "held"), 0);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * Several threads stop at once while N written commands wait for answers
 * that never come: each caller returns only once the producer stopped
 * (after stop_timeout), so each sees every callback done (in doubt: the
 * broker has them).
 */
START_TEST(test_stop_every_caller_waits)
{
    enum { NT = 4, N = 10 };
    static const char *const kv[] = {"stop_timeout", "1s", "heartbeat_interval",
                                     "-1", NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "pre", "connected");
    broker_stall(t);
    rec_t r;
    rec_init(&r, N);
    for (size_t i = 0; i < r.n; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "callers", "x", 1,
                                                    rec_cb, rec_slot(&r, i)),
                         NSQ_OK);
    ck_assert(nsq_testd_wait_count(t, "callers", N, WAIT_MS));
    atomic_bool go;
    atomic_init(&go, false);
    atomic_int entered, returned;
    atomic_init(&entered, 0);
    atomic_init(&returned, 0);
    stopper_t a[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        a[i] = (stopper_t){.p = p,
                           .rec = &r,
                           .go = &go,
                           .entered = &entered,
                           .returned = &returned};
        ck_assert_int_eq(pthread_create(&th[i], NULL, stopper_main, &a[i]), 0);
    }
    int64_t t0 = tt_now_ms();
    atomic_store(&go, true);
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&returned), NT);
    for (int i = 0; i < NT; i++) {
        ck_assert_int_eq(a[i].rc, NSQ_OK);
        /* stop_timeout (1 s) from below by the clock; from above by the
         * results: in doubt, not timed out by publish_timeout (5 s). */
        ck_assert_msg(a[i].returned_at - t0 >= 1000,
                      "caller %d returned after %lldms", i,
                      (long long)(a[i].returned_at - t0));
        ck_assert_uint_eq(a[i].seen.timed_out, 0);
        ck_assert_msg(a[i].seen_total == N,
                      "caller %d returned with %d of %d callbacks done", i,
                      a[i].seen_total, N);
        ck_assert_uint_eq(a[i].seen.in_doubt, N);
        ck_assert_uint_eq(a[i].seen.in_flight, 0);
    }
    for (size_t i = 0; i < r.n; i++) {
        ck_assert_int_eq(rec_calls(&r, i), 1);
        ck_assert_int_eq(rec_result(&r, i), NSQ_ERR_IN_DOUBT);
    }
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    rec_free(&r);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- timeout */

/* A callback that notes when it ran and what the counters said then. */
typedef struct timed {
    atomic_int done;
    int64_t at;
    nsq_err_t err;
    char detail[256];
    nsq_producer_stats_t seen;
} timed_t;

static void timed_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                     void *opaque)
{
    timed_t *w = opaque;
    w->at = tt_now_ms();
    w->err = err;
    snprintf(w->detail, sizeof w->detail, "%s", detail);
    nsq_producer_stats(p, &w->seen);
    atomic_store(&w->done, 1);
}

/*
 * publish_timeout for commands queued and never written: max_unacked 1
 * and a stalled broker hold them back.  Each times out no sooner than
 * publish_timeout after its call (the clock), and before the connection's
 * read_timeout (10 s) ends it (an event: no disconnect, nothing in doubt
 * when it completes).  The broker has only the written one.  The timeout
 * leaves a slow machine time to write the first before it passes.
 */
START_TEST(test_publish_timeout_unsent)
{
    enum { N = 4, TIMEOUT = 1500 };
    static const char *const kv[] = {"max_unacked",
                                     "1",
                                     "publish_timeout",
                                     "1500ms",
                                     "read_timeout",
                                     "10s",
                                     "heartbeat_interval",
                                     "-1",
                                     "batch_max_messages",
                                     "1",
                                     NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    publish_ok(p, "pre", "connected");
    broker_stall(t);
    timed_t w[N];
    int64_t called[N + 1];
    memset(w, 0, sizeof w);
    char body[16];
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, sizeof body, "u%d", i);
        atomic_init(&w[i].done, 0);
        called[i] = tt_now_ms();
        ck_assert_int_eq(nsq_producer_publish_async(p, "unsent", body,
                                                    (size_t)n, timed_cb, &w[i]),
                         NSQ_OK);
    }
    /* A sync call queued behind them: its own result, not the caller-side
     * guard's ("no result from the producer in time"). */
    char err[256] = "";
    called[N] = tt_now_ms();
    nsq_err_t rc =
        nsq_producer_publish(p, "unsent", "sync", 4, err, sizeof err);
    int64_t returned = tt_now_ms();
    /* Never written: its own code says nsqd does not have it. */
    ck_assert_msg(rc == NSQ_ERR_TIMED_OUT_UNSENT, "%s (%s)", nsq_err2name(rc),
                  err);
    ck_assert_str_eq(err, "publish_timeout passed before it was written");
    ck_assert_int_ge(returned - called[N], TIMEOUT);
    for (int i = 0; i < N; i++) {
        bool ok;
        WAIT_UNTIL(ok, atomic_load(&w[i].done), WAIT_MS);
        ck_assert_msg(ok, "u%d: no callback", i);
        /* The first was written (nsqd may have it), the others not. */
        nsq_err_t want = i == 0 ? NSQ_ERR_TIMED_OUT : NSQ_ERR_TIMED_OUT_UNSENT;
        ck_assert_msg(w[i].err == want, "u%d: %s (%s)", i,
                      nsq_err2name(w[i].err), w[i].detail);
        ck_assert_int_eq(nsq_err_fate(w[i].err),
                         i == 0 ? NSQ_FATE_UNKNOWN : NSQ_FATE_NOT_STORED);
        if (i == 0)
            ck_assert_msg(strstr(w[i].detail, "(it was written)"), "u0: %s",
                          w[i].detail);
        ck_assert_msg(w[i].at - called[i] >= TIMEOUT,
                      "u%d: timed out %lldms after its call", i,
                      (long long)(w[i].at - called[i]));
        ck_assert_uint_eq(w[i].seen.disconnects, 0);
        ck_assert_uint_eq(w[i].seen.in_doubt, 0);
    }
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.timed_out, N + 1);
    ck_assert_uint_eq(s.disconnects, 0);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    /* Only the first was ever written. */
    ck_assert_uint_eq(nsq_testd_count(t, "unsent"), 1);
    assert_message(t, "unsent", 0, "u0", 2, 0);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * The producer's heartbeat deadline: with nothing read for two intervals
 * (2 s) it drops the connection.  The broker stalls (no answers, no
 * heartbeats) while the test keeps publishing, so the broker's own read
 * deadline never fires.  From below by the clock (two intervals after the
 * last read, which came after `before` started); from above by an event:
 * read_timeout (10 s), checked first, did not end it instead.
 */
START_TEST(test_heartbeat_deadline)
{
    enum { N = 64 };
    static const char *const kv[] = {"heartbeat_interval",
                                     "1s",
                                     "read_timeout",
                                     "10s",
                                     "publish_timeout",
                                     "20s",
                                     NULL};
    nsq_testd_t *t = broker_start();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    int64_t before = tt_now_ms();
    publish_ok(p, "hb", "connected");
    broker_stall(t);
    timed_t w[N];
    memset(w, 0, sizeof w);
    int sent = 0;
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while (pstats(p).disconnects == 0) {
        ck_assert_msg(tt_now_ms() < deadline && sent < N,
                      "still connected after %d publishes", sent);
        atomic_init(&w[sent].done, 0);
        ck_assert_int_eq(
            nsq_producer_publish_async(p, "hb", "x", 1, timed_cb, &w[sent]),
            NSQ_OK);
        sent++;
        sleep_ms(200);
    }
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&w[0].done), WAIT_MS);
    ck_assert(ok);
    ck_assert_msg(w[0].err == NSQ_ERR_IN_DOUBT, "%s (%s)",
                  nsq_err2name(w[0].err), w[0].detail);
    ck_assert_msg(strstr(w[0].detail, "no heartbeat in 2000ms") != NULL, "%s",
                  w[0].detail);
    ck_assert_msg(w[0].at - before >= 2000,
                  "dropped %lldms after the last read could come",
                  (long long)(w[0].at - before));
    ck_assert_uint_eq(broker_stats(t).timed_out, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * A broker that never answers IDENTIFY: the connect fails after
 * read_timeout (500 ms) -- not sooner (the clock; the handshake began after
 * the call did), and before publish_timeout (5 s) would have ended the
 * publish as NSQ_ERR_TIMED_OUT (an event: the result and the counters).
 */
START_TEST(test_identify_timeout)
{
    static const char *const kv[] = {
        "read_timeout", "500ms", "heartbeat_interval", "-1", "publish_timeout",
        "5s",           NULL};
    nsq_testd_t *t = broker_stalled();
    nsq_producer_t *p = producer_new(nsq_testd_address(t), kv);
    char err[256] = "";
    int64_t t0 = tt_now_ms();
    nsq_err_t rc = nsq_producer_publish(p, "mute", "x", 1, err, sizeof err);
    int64_t took = tt_now_ms() - t0;
    ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "no IDENTIFY answer in 500ms") != NULL, "%s",
                  err);
    ck_assert_msg(took >= 500, "failed after %lldms", (long long)took);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connect_failures, 1);
    ck_assert_uint_eq(s.timed_out, 0);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "mute"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- backoff */

typedef struct backoff {
    int failure;
    int64_t wait, window, at;
} backoff_t;

/* The backoff lines logged so far, in order; returns how many. */
static int backoffs(logrec_t *l, backoff_t *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n && n < max; i++) {
        long long wait, window;
        int k;
        if (sscanf(l->lines[i].msg,
                   "backoff: failure %d in a row, next attempt in %lldms "
                   "(window %lldms)",
                   &k, &wait, &window) == 3)
            out[n++] = (backoff_t){k, wait, window, l->lines[i].at};
    }
    pthread_mutex_unlock(&l->mu);
    return n;
}

/*
 * Nothing listens: each attempt fails and the next waits a random point in
 * [b/2, b], b = reconnect_backoff * 2^(failures-1) capped at
 * max_reconnect_backoff.  Checked from the log (the chosen wait), the
 * clock (no attempt before the wait ran out) and the fast failures inside
 * the window (their "next attempt in" never exceeds the chosen wait).
 */
START_TEST(test_backoff_doubles_to_cap_with_jitter)
{
    /* A cap that is not a power-of-two multiple of the base, so that the
     * doubling overshoots it and must be clamped. */
    enum { BASE = 40, CAP = 100, FAILURES = 7 };
    static const char *const kv[] = {"reconnect_backoff", "40ms",
                                     "max_reconnect_backoff", "100ms", NULL};
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)tt_refusing_port());
    logrec_t l;
    logrec_init(&l);
    nsq_producer_t *p = producer_logged(addr, kv, &l);
    backoff_t b[FAILURES + 1];
    int inside = 0;
    int64_t deadline = tt_now_ms() + WAIT_MS;
    for (;;) {
        int seen = backoffs(&l, b, FAILURES + 1);
        if (seen >= FAILURES)
            break;
        ck_assert_msg(tt_now_ms() < deadline, "only %d failures", seen);
        char err[256] = "";
        nsq_err_t rc = nsq_producer_publish(p, "bo", "x", 1, err, sizeof err);
        ck_assert_msg(rc == NSQ_ERR_CONNECT, "%s (%s)", nsq_err2name(rc), err);
        const char *in = strstr(err, "(next attempt in ");
        if (!in)
            continue; /* it made an attempt */
        /* Refused inside the window of the latest failure. */
        long long left = -1;
        ck_assert_int_eq(sscanf(in, "(next attempt in %lldms", &left), 1);
        int now_seen = backoffs(&l, b, FAILURES + 1);
        ck_assert_int_ge(now_seen, 1);
        ck_assert_msg(left >= 0 && left <= b[now_seen - 1].wait,
                      "next attempt in %lldms, after failure %d chose %lldms",
                      left, now_seen, (long long)b[now_seen - 1].wait);
        inside++;
        sleep_ms(2);
    }
    ck_assert_int_gt(inside, 0);
    int n = backoffs(&l, b, FAILURES + 1);
    ck_assert_int_ge(n, FAILURES);
    int64_t cap_waits[FAILURES];
    int ncap = 0;
    for (int k = 0; k < n; k++) {
        int64_t want = BASE;
        for (int j = 0; j < k && want < CAP; j++)
            want *= 2;
        if (want > CAP)
            want = CAP;
        ck_assert_int_eq(b[k].failure, k + 1);
        ck_assert_msg(b[k].window == want, "failure %d: window %lld, want %lld",
                      k + 1, (long long)b[k].window, (long long)want);
        ck_assert_msg(b[k].wait >= want / 2 && b[k].wait <= want,
                      "failure %d: wait %lld outside [%lld, %lld]", k + 1,
                      (long long)b[k].wait, (long long)(want / 2),
                      (long long)want);
        /* No attempt before the wait ran out.  The line is logged just
         * after the window was set, so its time may be 1 ms later. */
        if (k + 1 < n)
            ck_assert_msg(b[k + 1].at - b[k].at >= b[k].wait - 1,
                          "attempt %d came %lldms after failure %d, which "
                          "chose %lldms",
                          k + 2, (long long)(b[k + 1].at - b[k].at), k + 1,
                          (long long)b[k].wait);
        if (want == CAP)
            cap_waits[ncap++] = b[k].wait;
    }
    /* Jitter: the waits at the cap are not all the same point. */
    ck_assert_int_ge(ncap, 4);
    bool differ = false;
    for (int k = 1; k < ncap; k++)
        differ |= cap_waits[k] != cap_waits[0];
    ck_assert_msg(differ, "%d waits at the cap, all %lldms", ncap,
                  (long long)cap_waits[0]);
    ck_assert_uint_eq(pstats(p).connect_failures, (uint64_t)n);
    ck_assert_uint_eq(pstats(p).connects, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    logrec_free(&l);
}
END_TEST

/* ---------------------------------------------------------------- queue */

typedef struct qwaiter {
    nsq_producer_t *p;
    timed_t *cb;
    nsq_err_t rc;
    int64_t called, returned;
    nsq_producer_stats_t seen; /* when it returned */
} qwaiter_t;

static void *qwaiter_main(void *arg)
{
    qwaiter_t *a = arg;
    a->called = tt_now_ms();
    a->rc = nsq_producer_publish_async(a->p, "room", "w", 1, timed_cb, a->cb);
    a->returned = tt_now_ms();
    nsq_producer_stats(a->p, &a->seen);
    return NULL;
}

/*
 * A full queue and queue_full_timeout: the call waits that long (the
 * clock), and no longer than the queued commands' publish_timeout, which
 * would have made room (an event: it returns QUEUE_FULL with nothing timed
 * out and the queue still full).  Async and sync alike.
 */
START_TEST(test_queue_full_timeout_waits)
{
    enum { WAIT = 300 };
    static const char *const kv[] = {"queue_max_messages",
                                     "4",
                                     "queue_full_timeout",
                                     "300ms",
                                     "publish_timeout",
                                     "5s",
                                     NULL};
    nsq_testd_t *t = broker_stalled();
    logrec_t l;
    logrec_init(&l);
    nsq_producer_t *p = producer_logged(nsq_testd_address(t), kv, &l);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(
            nsq_producer_publish_async(p, "room", "q", 1, NULL, NULL), NSQ_OK);
    for (int sync = 0; sync < 2; sync++) {
        int64_t t0 = tt_now_ms();
        nsq_err_t rc =
            sync ? nsq_producer_publish(p, "room", "x", 1, NULL, 0)
                 : nsq_producer_publish_async(p, "room", "x", 1, NULL, NULL);
        int64_t took = tt_now_ms() - t0;
        ck_assert_msg(rc == NSQ_ERR_QUEUE_FULL, "%s", nsq_err2name(rc));
        ck_assert_msg(took >= WAIT, "%s call returned after %lldms",
                      sync ? "sync" : "async", (long long)took);
        nsq_producer_stats_t s = pstats(p);
        ck_assert_uint_eq(s.timed_out, 0);
        ck_assert_uint_eq(s.queued, 4);
        ck_assert_uint_eq(s.queue_full, (uint64_t)sync + 1);
    }
    ck_assert_int_eq(logrec_count(&l, "queue full: waiting up to 300ms"), 2);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    logrec_free(&l);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * A caller waiting for room gets in when room frees: here the queued
 * commands' publish_timeout frees it, long before the caller's own 20 s.
 * It returns NSQ_OK no sooner than that timeout (the clock).
 */
START_TEST(test_queue_full_waiter_gets_room)
{
    enum { TIMEOUT = 400 };
    static const char *const kv[] = {"queue_max_messages",
                                     "2",
                                     "queue_full_timeout",
                                     "20s",
                                     "publish_timeout",
                                     "400ms",
                                     NULL};
    nsq_testd_t *t = broker_stalled();
    logrec_t l;
    logrec_init(&l);
    nsq_producer_t *p = producer_logged(nsq_testd_address(t), kv, &l);
    timed_t w[3];
    memset(w, 0, sizeof w);
    int64_t first = tt_now_ms();
    for (int i = 0; i < 2; i++) {
        atomic_init(&w[i].done, 0);
        ck_assert_int_eq(
            nsq_producer_publish_async(p, "room", "q", 1, timed_cb, &w[i]),
            NSQ_OK);
    }
    atomic_init(&w[2].done, 0);
    qwaiter_t a = {.p = p, .cb = &w[2], .rc = (nsq_err_t)12345};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, qwaiter_main, &a), 0);
    pthread_join(th, NULL);
    ck_assert_msg(a.rc == NSQ_OK, "the waiter: %s", nsq_err2name(a.rc));
    ck_assert_int_eq(logrec_count(&l, "queue full: waiting up to 20000ms"), 1);
    ck_assert_msg(a.returned - first >= TIMEOUT,
                  "the waiter got in %lldms after the queue filled",
                  (long long)(a.returned - first));
    for (int i = 0; i < 3; i++) {
        bool ok;
        WAIT_UNTIL(ok, atomic_load(&w[i].done), WAIT_MS);
        ck_assert(ok);
        ck_assert_msg(w[i].err == NSQ_ERR_TIMED_OUT_UNSENT, "%d: %s", i,
                      nsq_err2name(w[i].err));
    }
    ck_assert_uint_eq(pstats(p).queue_full, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    logrec_free(&l);
    ck_assert_uint_eq(nsq_testd_count(t, "room"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *fates_suite(void)
{
    Suite *s = suite_create("producer_fates");
    TCase *tc = tcase("stop");
    tcase_add_loop_test(tc, test_stop_fates_exact, 0, 2);
    tcase_add_threaded_loop_test(
        tc, test_stop_waits_for_publisher_inside, 0, 2,
        "a loop producer is published to on its loop thread only, so no "
        "publisher can be inside publish while the stop runs");
    tcase_add_test(tc, test_stop_every_caller_waits);
    suite_add_tcase(s, tc);

    tc = tcase("deadlines");
    tcase_add_test(tc, test_publish_timeout_unsent);
    tcase_add_test(tc, test_heartbeat_deadline);
    tcase_add_test(tc, test_identify_timeout);
    tcase_add_test(tc, test_backoff_doubles_to_cap_with_jitter);
    tcase_add_threaded_test(tc, test_queue_full_timeout_waits,
                            "a loop producer never waits for queue room: "
                            "QUEUE_FULL at once");
    tcase_add_threaded_test(tc, test_queue_full_waiter_gets_room,
                            "a loop producer never waits for queue room");
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(fates_suite());
}
