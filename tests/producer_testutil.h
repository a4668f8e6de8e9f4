/*
 * Helpers shared by the producer's suites (check_producer*.c): a test
 * broker (and lookupd) on an ephemeral loopback port, producers with small
 * timeouts, a recorder that counts completion callbacks per slot, one that
 * keeps every log line, and bounded waits.
 *
 * Everything is static inline so that a suite that uses only part of it
 * compiles without unused-function warnings.
 */
#ifndef NSQ_PRODUCER_TESTUTIL_H
#define NSQ_PRODUCER_TESTUTIL_H

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nettest.h"
#include "nsq/producer.h"
#include "nsq/testd.h"
#ifdef NSQ_TEST_ON_LOOP
#include "loop_harness.h" /* every producer on an application loop */
#endif

/* A case's Check timeout, seconds: a hang fails instead of blocking. */
#define CASE_TIMEOUT 30

/* A test case with CASE_TIMEOUT: a hang fails instead of stalling. */
static inline TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, CASE_TIMEOUT);
    return tc;
}
/*
 * Adds a case that only the threaded host defines (a suite built with
 * NSQ_TEST_ON_LOOP leaves it out); why says what differs on a loop, for
 * the reader.
 */
#ifdef NSQ_TEST_ON_LOOP
#define tcase_add_threaded_test(tc, fn, why) ((void)(tc), (void)(fn))
#define tcase_add_threaded_loop_test(tc, fn, from, to, why)                    \
    ((void)(tc), (void)(fn))
#else
#define tcase_add_threaded_test(tc, fn, why) tcase_add_test(tc, fn)
#define tcase_add_threaded_loop_test(tc, fn, from, to, why)                    \
    tcase_add_loop_test(tc, fn, from, to)
#endif

/* Every bounded wait of a test gives up after this long. */
#define WAIT_MS 10000

static inline void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Polls cond every 2 ms until it holds or ms pass; ok receives the last
 * value of cond. */
#define WAIT_UNTIL(ok, cond, ms)                                               \
    do {                                                                       \
        int64_t wait_deadline_ = tt_now_ms() + (ms);                           \
        while (!((ok) = (cond)) && tt_now_ms() < wait_deadline_)               \
            sleep_ms(2);                                                       \
    } while (0)

/* ---------------------------------------------------------------- broker */

/* nsqd's defaults, with a short stop so a test's end does not linger. */
static inline void broker_opts(nsq_testd_opts_t *o)
{
    nsq_testd_opts_default(o);
    o->stop_timeout_ms = 500;
}

static inline nsq_testd_t *broker_start_opts(const nsq_testd_opts_t *o)
{
    char err[256] = "";
    nsq_testd_t *t = nsq_testd_start(o, err, sizeof err);
    ck_assert_msg(t != NULL, "testd: %s", err);
    return t;
}

static inline nsq_testd_t *broker_start(void)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    return broker_start_opts(&o);
}

static inline nsq_testd_t *broker_start_fault(const nsq_testd_fault_t *f)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.fault = *f;
    return broker_start_opts(&o);
}

static inline nsq_testd_stats_t broker_stats(nsq_testd_t *t)
{
    nsq_testd_stats_t s;
    nsq_testd_stats(t, &s);
    return s;
}

/* The index of the first message of topic that is body (len bytes), or
 * -1; *conn gets which connection brought it. */
static inline int broker_find(nsq_testd_t *t, const char *topic,
                              const void *body, size_t len, uint64_t *conn)
{
    uint64_t n = nsq_testd_count(t, topic);
    for (size_t i = 0; i < n; i++) {
        nsq_testd_msg_t m;
        if (!nsq_testd_message(t, topic, i, &m))
            continue;
        bool same = m.len == len && memcmp(m.body, body, len) == 0;
        if (same && conn)
            *conn = m.conn;
        nsq_testd_msg_free(&m);
        if (same)
            return (int)i;
    }
    return -1;
}

/* Whether body (len bytes) was recorded on topic; *conn gets which
 * connection brought it. */
static inline bool broker_has(nsq_testd_t *t, const char *topic,
                              const void *body, size_t len, uint64_t *conn)
{
    return broker_find(t, topic, body, len, conn) >= 0;
}

/* From now on t stalls: it reads and records every command, answers none. */
static inline void broker_stall(nsq_testd_t *t)
{
    nsq_testd_fault_t f = {0};
    f.stall = true;
    nsq_testd_set_fault(t, &f);
}

/* A broker that never answers, not even IDENTIFY: the producer never gets
 * to write, so whatever is published stays queued. */
static inline nsq_testd_t *broker_stalled(void)
{
    nsq_testd_fault_t f = {0};
    f.stall = true;
    return broker_start_fault(&f);
}

/* Asserts that message index of topic is exactly body, with defer_ms. */
static inline void assert_message(nsq_testd_t *t, const char *topic,
                                  size_t index, const void *body, size_t len,
                                  int64_t defer_ms)
{
    nsq_testd_msg_t m;
    ck_assert_msg(nsq_testd_message(t, topic, index, &m),
                  "no message %zu on %s", index, topic);
    ck_assert_uint_eq(m.len, len);
    ck_assert_mem_eq(m.body, body, len);
    ck_assert_int_eq(m.defer_ms, defer_ms);
    nsq_testd_msg_free(&m);
}

/* A test lookupd with the options o. */
static inline nsq_testd_lookupd_t *
testd_lookupd_start_opts(const nsq_testd_lookupd_opts_t *o)
{
    char err[256] = "";
    nsq_testd_lookupd_t *l = nsq_testd_lookupd_start(o, err, sizeof err);
    ck_assert_msg(l != NULL, "lookupd: %s", err);
    return l;
}

/* A test lookupd with the defaults. */
static inline nsq_testd_lookupd_t *testd_lookupd_start(void)
{
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    return testd_lookupd_start_opts(&o);
}

/* ---------------------------------------------------------------- producer */

/*
 * Test defaults: results within seconds, a short graceful stop, quick
 * reconnects.  Then the NULL-terminated key/value pairs kv override them.
 */
static inline nsq_conf_t *conf_make(const char *const *kv)
{
    static const char *const defaults[] = {"publish_timeout",
                                           "5s",
                                           "stop_timeout",
                                           "500ms",
                                           "dial_timeout",
                                           "1s",
                                           "reconnect_backoff",
                                           "10ms",
                                           "max_reconnect_backoff",
                                           "50ms",
                                           NULL};
    char err[256];
    nsq_conf_t *c = nsq_conf_new();
    ck_assert_ptr_nonnull(c);
    for (const char *const *p = defaults; *p; p += 2)
        ck_assert_msg(nsq_conf_set(c, p[0], p[1], err, sizeof err) == NSQ_OK,
                      "%s=%s: %s", p[0], p[1], err);
    for (const char *const *p = kv; p && *p; p += 2)
        ck_assert_msg(nsq_conf_set(c, p[0], p[1], err, sizeof err) == NSQ_OK,
                      "%s=%s: %s", p[0], p[1], err);
    return c;
}

/* A producer for addr with the conf c, which it takes. */
static inline nsq_producer_t *producer_from_conf(const char *addr,
                                                 nsq_conf_t *c)
{
    char err[256] = "";
    nsq_producer_t *p = nsq_producer_new(addr, c, err, sizeof err);
    ck_assert_msg(p != NULL, "nsq_producer_new(%s): %s", addr ? addr : "(null)",
                  err);
    return p;
}

static inline nsq_producer_t *producer_new(const char *addr,
                                           const char *const *kv)
{
    return producer_from_conf(addr, conf_make(kv));
}

static inline nsq_producer_stats_t pstats(nsq_producer_t *p)
{
    nsq_producer_stats_t s;
    nsq_producer_stats(p, &s);
    return s;
}

/* A sync publish that must succeed. */
static inline void publish_ok(nsq_producer_t *p, const char *topic,
                              const char *body)
{
    char err[256] = "";
    nsq_err_t rc =
        nsq_producer_publish(p, topic, body, strlen(body), err, sizeof err);
    ck_assert_msg(rc == NSQ_OK, "publish %s: %s (%s)", body, nsq_err2name(rc),
                  err);
}

/* ---------------------------------------------------------------- callbacks */

/*
 * Counts completion callbacks per slot; the opaque of a publish is
 * &rec->slots[i].  The last result and detail of each slot are kept, and
 * how many callbacks ran on the thread that made the recorder (which
 * publishes: the header promises the loop thread runs them).
 */
typedef struct rec rec_t;
typedef struct rec_slot {
    rec_t *rec;
    size_t idx;
} rec_slot_t;

struct rec {
    size_t n;
    rec_slot_t *slots;
    atomic_int *calls;
    atomic_int *results;
    char (*details)[256];
    pthread_mutex_t mu; /* guards details */
    pthread_t owner;
    atomic_int total;
    atomic_int on_owner;
};

static inline void rec_init(rec_t *r, size_t n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->slots = calloc(n, sizeof *r->slots);
    r->calls = calloc(n, sizeof *r->calls);
    r->results = calloc(n, sizeof *r->results);
    r->details = calloc(n, sizeof *r->details);
    ck_assert(r->slots && r->calls && r->results && r->details);
    for (size_t i = 0; i < n; i++) {
        r->slots[i].rec = r;
        r->slots[i].idx = i;
        atomic_init(&r->calls[i], 0);
        atomic_init(&r->results[i], 12345);
    }
    pthread_mutex_init(&r->mu, NULL);
    r->owner = pthread_self();
    atomic_init(&r->total, 0);
    atomic_init(&r->on_owner, 0);
}

static inline void rec_free(rec_t *r)
{
    free(r->slots);
    free(r->calls);
    free(r->results);
    free(r->details);
    pthread_mutex_destroy(&r->mu);
}

static inline void *rec_slot(rec_t *r, size_t i)
{
    ck_assert_uint_lt(i, r->n);
    return &r->slots[i];
}

static inline void rec_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                          void *opaque)
{
    rec_slot_t *s = opaque;
    rec_t *r = s->rec;
    (void)p;
    pthread_mutex_lock(&r->mu);
    snprintf(r->details[s->idx], sizeof r->details[s->idx], "%s",
             detail ? detail : "(null)");
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->results[s->idx], (int)err);
    if (pthread_equal(pthread_self(), r->owner))
        atomic_fetch_add(&r->on_owner, 1);
    atomic_fetch_add(&r->calls[s->idx], 1);
    atomic_fetch_add(&r->total, 1);
}

static inline bool rec_wait(rec_t *r, int n, int64_t ms)
{
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&r->total) >= n, ms);
    return ok;
}

static inline int rec_calls(rec_t *r, size_t i)
{
    return atomic_load(&r->calls[i]);
}

static inline nsq_err_t rec_result(rec_t *r, size_t i)
{
    return (nsq_err_t)atomic_load(&r->results[i]);
}

static inline void rec_detail(rec_t *r, size_t i, char *out, size_t len)
{
    pthread_mutex_lock(&r->mu);
    snprintf(out, len, "%s", r->details[i]);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- the log */

/*
 * Every log line of a producer: its level, its message and the monotonic
 * time it was logged at.  The callback runs on the producer's loop thread
 * and the test reads on its own: mu guards everything.
 */
typedef struct logline {
    int level;
    int64_t at;
    char *msg;
} logline_t;

typedef struct logrec {
    pthread_mutex_t mu;
    size_t n, cap;
    logline_t *lines;
} logrec_t;

static inline void logrec_init(logrec_t *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

/* Forgets every line kept so far. */
static inline void logrec_clear(logrec_t *l)
{
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        free(l->lines[i].msg);
    free(l->lines);
    l->lines = NULL;
    l->n = l->cap = 0;
    pthread_mutex_unlock(&l->mu);
}

/* After the producer that logs to l is destroyed. */
static inline void logrec_free(logrec_t *l)
{
    logrec_clear(l);
    pthread_mutex_destroy(&l->mu);
}

/* The log callback (nsq_log_cb); its opaque is the logrec_t. */
static inline void logrec_cb(void *opaque, int level, const char *msg)
{
    logrec_t *l = opaque;
    int64_t now = tt_now_ms();
    char *copy = strdup(msg);
    if (!copy)
        abort(); /* not ck_assert: this is the loop thread */
    pthread_mutex_lock(&l->mu);
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        logline_t *lines = realloc(l->lines, cap * sizeof *lines);
        if (!lines)
            abort();
        l->lines = lines;
        l->cap = cap;
    }
    l->lines[l->n++] = (logline_t){level, now, copy};
    pthread_mutex_unlock(&l->mu);
}

/* Every line of the producer c makes, from DEBUG up, goes to l. */
static inline void logrec_attach(nsq_conf_t *c, logrec_t *l)
{
    nsq_conf_set_log_cb(c, logrec_cb, l, NSQ_LOG_DEBUG);
}

/* A producer as producer_new makes, logging to l. */
static inline nsq_producer_t *
producer_logged(const char *addr, const char *const *kv, logrec_t *l)
{
    nsq_conf_t *c = conf_make(kv);
    logrec_attach(c, l);
    return producer_from_conf(addr, c);
}

static inline size_t logrec_lines(logrec_t *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* How many lines contain needle. */
static inline int logrec_count(logrec_t *l, const char *needle)
{
    int c = 0;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n; i++)
        c += strstr(l->lines[i].msg, needle) != NULL;
    pthread_mutex_unlock(&l->mu);
    return c;
}

static inline bool logrec_has(logrec_t *l, const char *needle)
{
    return logrec_count(l, needle) > 0;
}

/* Whether a line is exactly msg. */
static inline bool logrec_has_line(logrec_t *l, const char *msg)
{
    bool has = false;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n && !has; i++)
        has = strcmp(l->lines[i].msg, msg) == 0;
    pthread_mutex_unlock(&l->mu);
    return has;
}

/* The last line at level that starts with prefix, into out ("" if none). */
static inline void logrec_last(logrec_t *l, int level, const char *prefix,
                               char *out, size_t len)
{
    snprintf(out, len, "%s", "");
    pthread_mutex_lock(&l->mu);
    for (size_t i = l->n; i-- > 0;) {
        const logline_t *g = &l->lines[i];
        if (g->level == level && strncmp(g->msg, prefix, strlen(prefix)) == 0) {
            snprintf(out, len, "%s", g->msg);
            break;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

/* Every line as "level message\n", for a failure's message: free it. */
static inline char *logrec_text(logrec_t *l)
{
    pthread_mutex_lock(&l->mu);
    size_t len = 1;
    for (size_t i = 0; i < l->n; i++)
        len += strlen(l->lines[i].msg) + 16;
    char *text = malloc(len), *at = text;
    ck_assert_ptr_nonnull(text);
    *at = '\0';
    for (size_t i = 0; i < l->n; i++)
        at += snprintf(at, len - (size_t)(at - text), "%d %s\n",
                       l->lines[i].level, l->lines[i].msg);
    pthread_mutex_unlock(&l->mu);
    return text;
}

/* A suite's main: runs it with CK_FORK, non-zero on any failure. */
static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
