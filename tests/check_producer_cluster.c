/*
 * A producer with several nsqd: nsq_producer_new with a comma-separated
 * list of test brokers.  round_robin spreads the publishes; a node that
 * refuses connections or dies has what it never processed sent to another
 * node (retry_not_sent); the per-node statistics say what each node did.
 */
#include "certs.h"
#include "producer_testutil.h"

enum { NB = 3 };

typedef struct cluster {
    int n;
    nsq_testd_t *t[NB];
    char addrs[NB * 64];
} cluster_t;

/* n brokers (at most NB), broker i with fault f[i] (NULL: none); c->addrs
 * gets their addresses, comma-separated. */
static void cluster_start(cluster_t *c, int n, const nsq_testd_fault_t *f[NB])
{
    ck_assert_int_le(n, NB);
    c->n = n;
    c->addrs[0] = '\0';
    for (int i = 0; i < n; i++) {
        c->t[i] = f && f[i] ? broker_start_fault(f[i]) : broker_start();
        if (i)
            strcat(c->addrs, ",");
        strcat(c->addrs, nsq_testd_address(c->t[i]));
    }
}

static void cluster_stop(cluster_t *c)
{
    for (int i = 0; i < c->n; i++)
        nsq_testd_destroy(c->t[i]);
}

static uint64_t cluster_count(cluster_t *c, const char *topic)
{
    uint64_t sum = 0;
    for (int i = 0; i < c->n; i++)
        sum += nsq_testd_count(c->t[i], topic);
    return sum;
}

/* Whether body is stored on some broker of c. */
static bool cluster_has(cluster_t *c, const char *topic, const char *body)
{
    for (int i = 0; i < c->n; i++)
        if (broker_has(c->t[i], topic, body, strlen(body), NULL))
            return true;
    return false;
}

static nsq_node_stats_t node_stats(nsq_producer_t *p, size_t i)
{
    nsq_node_stats_t s;
    ck_assert_int_eq(nsq_producer_node_stats(p, i, &s), NSQ_OK);
    return s;
}

/* Publishes async PUB i, "m%04d", to topic with recorder r. */
static void publish_one(nsq_producer_t *p, const char *topic, rec_t *r, int i)
{
    char body[16];
    snprintf(body, sizeof body, "m%04d", i);
    ck_assert_int_eq(nsq_producer_publish_async(p, topic, body, strlen(body),
                                                rec_cb, rec_slot(r, (size_t)i)),
                     NSQ_OK);
}

/* Publishes n async PUBs "m%04d" to topic with recorder r. */
static void publish_n(nsq_producer_t *p, const char *topic, rec_t *r, int n)
{
    for (int i = 0; i < n; i++)
        publish_one(p, topic, r, i);
}

/* round_robin over 3 nodes: each stores a third (+-10%), and the node
 * statistics name the nodes in order and count what each acknowledged. */
START_TEST(spread_round_robin)
{
    enum { N = 300 };
    cluster_t c;
    cluster_start(&c, NB, NULL);
    nsq_producer_t *p = producer_new(c.addrs, NULL);
    ck_assert_uint_eq(nsq_producer_node_count(p), NB);
    rec_t r;
    rec_init(&r, N);
    publish_n(p, "spread", &r, N);
    ck_assert(rec_wait(&r, N, WAIT_MS));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(rec_result(&r, (size_t)i), NSQ_OK);
    ck_assert_uint_eq(cluster_count(&c, "spread"), N);
    for (int i = 0; i < NB; i++) {
        uint64_t got = nsq_testd_count(c.t[i], "spread");
        ck_assert_msg(got >= N / NB * 9 / 10 && got <= N / NB * 11 / 10,
                      "node %d stored %llu of %d", i, (unsigned long long)got,
                      N);
        nsq_node_stats_t s = node_stats(p, (size_t)i);
        ck_assert_str_eq(s.address, nsq_testd_address(c.t[i]));
        ck_assert_uint_eq(s.published, got);
        ck_assert_uint_eq(s.failures, 0);
        ck_assert_uint_eq(s.in_flight, 0);
    }
    nsq_node_stats_t none;
    ck_assert_int_eq(nsq_producer_node_stats(p, NB, &none),
                     NSQ_ERR_INVALID_ARG);
    nsq_producer_destroy(p);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/* A node that refuses every connection: what was routed to it is never
 * processed, so it goes to the others; every publish is acknowledged, the
 * refusing node stores nothing and its statistics say why. */
START_TEST(refused_node_retried_elsewhere)
{
    enum { N = 90 };
    nsq_testd_fault_t refuse = {.refuse = true};
    const nsq_testd_fault_t *f[NB] = {NULL, &refuse, NULL};
    cluster_t c;
    cluster_start(&c, NB, f);
    nsq_producer_t *p = producer_new(c.addrs, NULL);
    rec_t r;
    rec_init(&r, N);
    publish_n(p, "retry", &r, N);
    ck_assert(rec_wait(&r, N, WAIT_MS));
    for (int i = 0; i < N; i++) {
        char d[256];
        rec_detail(&r, (size_t)i, d, sizeof d);
        ck_assert_msg(rec_result(&r, (size_t)i) == NSQ_OK, "m%04d: %s (%s)", i,
                      nsq_err2name(rec_result(&r, (size_t)i)), d);
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
    }
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "retry"), 0);
    ck_assert_uint_eq(cluster_count(&c, "retry"), N);
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof body, "m%04d", i);
        ck_assert_msg(cluster_has(&c, "retry", body), "%s lost", body);
    }
    nsq_node_stats_t s = node_stats(p, 1);
    ck_assert_uint_gt(s.failures, 0);
    ck_assert_uint_eq(s.published, 0);
    ck_assert_str_ne(s.last_error, "");
    ck_assert_uint_eq(node_stats(p, 0).published + node_stats(p, 2).published,
                      N);
    ck_assert_uint_eq(pstats(p).published, N);
    nsq_producer_destroy(p);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/* retry_not_sent false: what was routed to the refusing node fails, as not
 * stored, and is on no broker; the rest is acknowledged. */
START_TEST(no_retry_fails_not_stored)
{
    enum { N = 30 };
    nsq_testd_fault_t refuse = {.refuse = true};
    const nsq_testd_fault_t *f[NB] = {NULL, &refuse, NULL};
    cluster_t c;
    cluster_start(&c, NB, f);
    const char *kv[] = {"retry_not_sent", "false", NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    rec_t r;
    rec_init(&r, N);
    publish_n(p, "noretry", &r, N);
    ck_assert(rec_wait(&r, N, WAIT_MS));
    int ok = 0, failed = 0;
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        char body[16];
        snprintf(body, sizeof body, "m%04d", i);
        if (e == NSQ_OK) {
            ok++;
            ck_assert(cluster_has(&c, "noretry", body));
        } else {
            failed++;
            ck_assert_int_eq(nsq_err_fate(e), NSQ_FATE_NOT_STORED);
            ck_assert(!cluster_has(&c, "noretry", body));
        }
    }
    ck_assert_int_gt(failed, 0);
    ck_assert_int_gt(ok, 0);
    ck_assert_uint_eq(cluster_count(&c, "noretry"), (uint64_t)ok);
    nsq_producer_destroy(p);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/* A node dies (reset, as kill -9) while publishes are on their way: no
 * acknowledged message is lost, every result is OK or (written to the
 * dead node) in doubt, and the publishes after it all succeed.  With
 * retry_in_doubt (loop 1) every publish succeeds: stored at least once. */
START_TEST(node_dies_during_run)
{
    enum { N = 400 };
    cluster_t c;
    cluster_start(&c, NB, NULL);
    const char *kv[] = {"batch_max_messages", "1", "retry_in_doubt",
                        _i ? "true" : "false", NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++) {
        if (i == N / 2) {
            nsq_testd_fault_t drop = {.drop = true, .refuse = true};
            nsq_testd_set_fault(c.t[0], &drop);
        }
        publish_one(p, "die", &r, i);
    }
    ck_assert(rec_wait(&r, N, WAIT_MS));
    int ok = 0;
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        char body[16], d[256];
        snprintf(body, sizeof body, "m%04d", i);
        rec_detail(&r, (size_t)i, d, sizeof d);
        ck_assert_msg(e == NSQ_OK || (!_i && e == NSQ_ERR_IN_DOUBT),
                      "%s: %s (%s)", body, nsq_err2name(e), d);
        if (e == NSQ_OK) {
            ok++;
            ck_assert_msg(cluster_has(&c, "die", body), "%s lost", body);
        }
    }
    ck_assert_int_gt(ok, N / 2);
    /* Later publishes go to the live nodes. */
    for (int i = 0; i < 6; i++)
        publish_ok(p, "after", "x");
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "after"), 0);
    ck_assert_uint_eq(cluster_count(&c, "after"), 6);
    nsq_producer_destroy(p);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/* Body i of a stuck-write run: "m%04d" then bytes that do not compress
 * (so that compression cannot shrink the write below what the socket
 * buffers take). */
enum { STUCK_LEN = 400 * 1024 };

static void stuck_body(char *b, int i)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
    for (size_t k = 0; k < STUCK_LEN; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[k] = (char)x;
    }
    char head[8];
    snprintf(head, sizeof head, "m%04d", i);
    memcpy(b, head, 5);
}

/* Marks in seen[] the stuck bodies broker t stored (each checked whole);
 * returns how many it stored. */
static uint64_t stuck_seen(nsq_testd_t *t, const char *topic, bool *seen, int n,
                           char *want)
{
    uint64_t count = nsq_testd_count(t, topic);
    for (size_t k = 0; k < count; k++) {
        nsq_testd_msg_t m;
        ck_assert(nsq_testd_message(t, topic, k, &m));
        int i = -1;
        ck_assert_uint_eq(m.len, STUCK_LEN);
        ck_assert_int_eq(sscanf(m.body, "m%4d", &i), 1);
        ck_assert(i >= 0 && i < n);
        stuck_body(want, i);
        ck_assert_mem_eq(m.body, want, STUCK_LEN);
        seen[i] = true;
        nsq_testd_msg_free(&m);
    }
    return count;
}

/*
 * A node stops reading mid-write (a stuck nsqd): its connection fails on
 * write_timeout while libuv still writes a large write of coalesced
 * batches.  Loop 0 (retry_in_doubt false): what was in that write
 * completes in doubt, and is stored nowhere.  Loop 1 (true) and loop 2
 * (true, through snappy, whose bytes are copied): every message is
 * acknowledged by another node.  The stuck node stores none.
 */
START_TEST(stuck_write_in_doubt)
{
    /* 8 MB: twice what the socket buffers take (a 4 MB send buffer, a
     * receive buffer that does not grow while nothing reads). */
    enum { N = 20 };
    cluster_t c;
    cluster_start(&c, NB, NULL);
    const char *kv[] = {"strategy",
                        "failover",
                        "failback_after",
                        "1h",
                        "write_timeout",
                        "1s", /* the live brokers may be slow (sanitizers) */
                        "publish_timeout",
                        "15s",
                        "heartbeat_interval",
                        "1s",
                        "read_timeout",
                        "2s",
                        "retry_in_doubt",
                        _i ? "true" : "false",
                        "snappy",
                        _i == 2 ? "true" : "false",
                        NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    publish_ok(p, "warm", "x");
    nsq_testd_fault_t stuck = {.no_read = true};
    nsq_testd_set_fault(c.t[0], &stuck);
    /* Answered after the broker took the fault: it reads no more. */
    publish_ok(p, "warm", "y");
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "warm"), 2);
    char *body = malloc(STUCK_LEN);
    ck_assert_ptr_nonnull(body);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++) {
        stuck_body(body, i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "stuck", body, STUCK_LEN,
                                                    rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, N, 2 * WAIT_MS));
    bool seen[N] = {false};
    uint64_t stored = stuck_seen(c.t[1], "stuck", seen, N, body) +
                      stuck_seen(c.t[2], "stuck", seen, N, body);
    int in_doubt = 0;
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        char d[256];
        rec_detail(&r, (size_t)i, d, sizeof d);
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        if (_i) {
            ck_assert_msg(e == NSQ_OK, "m%04d: %s (%s)", i, nsq_err2name(e), d);
            ck_assert_msg(seen[i], "m%04d acknowledged, not stored", i);
            continue;
        }
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_IN_DOUBT, "m%04d: %s (%s)", i,
                      nsq_err2name(e), d);
        ck_assert(seen[i] == (e == NSQ_OK));
        if (e == NSQ_ERR_IN_DOUBT) {
            in_doubt++;
            ck_assert_msg(strstr(d, "write timed out"), "m%04d: %s", i, d);
        }
    }
    if (_i)
        ck_assert_uint_eq(stored, N);
    else
        ck_assert_int_gt(in_doubt, 1); /* a whole batch, at least */
    ck_assert_uint_eq(pstats(p).in_doubt, (uint64_t)in_doubt);
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "stuck"), 0);
    ck_assert_uint_ge(node_stats(p, 0).failures, 1);
    nsq_producer_destroy(p);
    free(body);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/*
 * Retried publishes keep their place: node 0 stalls its IDENTIFY and then
 * dies, node 1 answers its IDENTIFY late, so what round_robin gave node 0
 * is retried into node 1's waiting list, where later publishes wait too.
 * Node 1 records every message in the order they were published.
 */
START_TEST(retry_keeps_order)
{
    enum { N = 10 };
    cluster_t c;
    nsq_testd_fault_t stall = {.stall = true}, late = {.delay_ms = 1500};
    const nsq_testd_fault_t *f[NB] = {&stall, &late};
    cluster_start(&c, 2, f);
    nsq_producer_t *p = producer_new(c.addrs, NULL);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++) {
        publish_one(p, "order", &r, i);
        sleep_ms(2); /* deadlines differ: the order is theirs */
    }
    nsq_testd_fault_t dead = {.drop = true, .refuse = true};
    nsq_testd_set_fault(c.t[0], &dead);
    ck_assert(rec_wait(&r, N, WAIT_MS));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(rec_result(&r, (size_t)i), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "order"), 0);
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "order"), N);
    for (int i = 0; i < N; i++) {
        char body[16];
        snprintf(body, sizeof body, "m%04d", i);
        assert_message(c.t[1], "order", (size_t)i, body, strlen(body), 0);
    }
    ck_assert_uint_gt(node_stats(p, 0).failures, 0);
    nsq_producer_destroy(p);
    rec_free(&r);
    cluster_stop(&c);
}
END_TEST

/* Completion order: done[i] gets the rank of publish i's callback. */
static atomic_int done_seq;
static atomic_int done_rank[2];
static atomic_int done_err[2];

static void rank_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    (void)p;
    (void)detail;
    int i = (int)(intptr_t)opaque;
    atomic_store(&done_err[i], (int)err);
    atomic_store(&done_rank[i], atomic_fetch_add(&done_seq, 1) + 1);
}

/*
 * A retried publish times out by its own publish_timeout: R goes to node
 * 0, which stalls before answering IDENTIFY, M (published later) to node
 * 1; node 0 dies, R is retried to node 1 and waits there with M.  Loop 0:
 * node 1 stalls too, so neither is written: both time out unsent.  Loop
 * 1: node 1 is ready but holds back its answers, so M is in flight and R
 * is written after it: both time out in flight.  Either way R's result
 * comes first (its deadline is the earlier), not when M's deadline takes
 * it along.
 */
START_TEST(retry_times_out_first)
{
    cluster_t c;
    nsq_testd_fault_t stall = {.stall = true}, hold = {.hold_from = 1};
    const nsq_testd_fault_t *f[NB] = {&stall, _i ? &hold : &stall};
    cluster_start(&c, 2, f);
    /* Time for a slow machine to retry and write R before its deadline. */
    const char *kv[] = {"publish_timeout", "4s", NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    atomic_store(&done_seq, 0);
    for (int i = 0; i < 2; i++) {
        atomic_store(&done_rank[i], 0);
        ck_assert_int_eq(nsq_producer_publish_async(p, "late", i ? "M" : "R", 1,
                                                    rank_cb,
                                                    (void *)(intptr_t)i),
                         NSQ_OK);
        if (i == 0)
            sleep_ms(300);
    }
    nsq_testd_fault_t dead = {.drop = true, .refuse = true};
    nsq_testd_set_fault(c.t[0], &dead);
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&done_rank[0]) && atomic_load(&done_rank[1]),
               WAIT_MS);
    ck_assert(ok);
    nsq_err_t want = _i ? NSQ_ERR_TIMED_OUT : NSQ_ERR_TIMED_OUT_UNSENT;
    ck_assert_int_eq(atomic_load(&done_err[0]), want);
    ck_assert_int_eq(atomic_load(&done_err[1]), want);
    ck_assert_int_eq(atomic_load(&done_rank[0]), 1);
    ck_assert_int_eq(atomic_load(&done_rank[1]), 2);
    ck_assert_uint_gt(node_stats(p, 0).failures, 0);
    nsq_producer_destroy(p);
    cluster_stop(&c);
}
END_TEST

/* The address list: empty items are skipped, a bad one fails new. */
START_TEST(address_list)
{
    char err[256] = "";
    nsq_producer_t *p =
        nsq_producer_new("127.0.0.1:1,,127.0.0.1:2", NULL, err, sizeof err);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(nsq_producer_node_count(p), 2);
    ck_assert_str_eq(node_stats(p, 1).address, "127.0.0.1:2");
    nsq_producer_destroy(p);
    p = nsq_producer_new("127.0.0.1:1,nope", NULL, err, sizeof err);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(err, "nope"));
    p = nsq_producer_new(",", NULL, err, sizeof err);
    ck_assert_ptr_null(p);
}
END_TEST

/* ---------------------------------------------------------------- discovery */

/* The log of the lookupd producer made last (each new one clears it). */
static logrec_t lookupd_log = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* How many times it said it keeps the last list. */
static int kept_last(void)
{
    return logrec_count(&lookupd_log, "keeping the last list");
}

/* Whether the last lookupd warning logged ("lookupd <addr>: <error>")
 * contains text. */
static bool lookupd_warned(const char *text)
{
    char last[512];
    logrec_last(&lookupd_log, NSQ_LOG_WARNING, "lookupd ", last, sizeof last);
    return strstr(last, text) != NULL;
}

/*
 * A producer for the addresses addr (NULL: none) that polls the lookupd
 * at url every 20ms, with the settings kv (at most 8 pairs) on top.
 */
static nsq_producer_t *lookupd_producer_at(const char *url, const char *addr,
                                           const char *const *kv)
{
    const char *all[2 * 12 + 1] = {"lookupd_http_addresses", url,
                                   "lookupd_poll_interval",  "20ms",
                                   "lookupd_poll_jitter",    "0"};
    size_t n = 6;
    for (; kv && *kv; kv++) {
        ck_assert_uint_lt(n, 2 * 12);
        all[n++] = *kv;
    }
    all[n] = NULL;
    logrec_clear(&lookupd_log);
    return producer_logged(addr, all, &lookupd_log);
}

/* A producer with no address of its own, polling lookupd l every 20ms. */
static nsq_producer_t *lookupd_producer(nsq_testd_lookupd_t *l)
{
    char url[80];
    snprintf(url, sizeof url, "http://%s", nsq_testd_lookupd_address(l));
    return lookupd_producer_at(url, NULL, NULL);
}

/* Two full rounds after now: what the lookupd lists now is applied. */
static void wait_rounds(nsq_testd_lookupd_t *l)
{
    uint64_t r0 = nsq_testd_lookupd_nodes_requests(l);
    bool ok;
    WAIT_UNTIL(ok, nsq_testd_lookupd_nodes_requests(l) >= r0 + 2, WAIT_MS);
    ck_assert(ok);
}

/* The nsqd a lookupd lists take the publishes; a node added is used
 * within a poll interval; a node removed takes no more and is closed. */
START_TEST(discovery_add_remove)
{
    nsq_testd_t *a = broker_start(), *b = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, a), 0);
    nsq_producer_t *p = lookupd_producer(l);
    /* The first publish waits for the first round. */
    publish_ok(p, "d", "first");
    ck_assert_uint_eq(nsq_testd_count(a, "d"), 1);
    ck_assert_uint_eq(nsq_producer_node_count(p), 1);

    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, b), 0);
    bool ok;
    WAIT_UNTIL(ok, nsq_producer_node_count(p) == 2, WAIT_MS);
    ck_assert(ok);
    ck_assert_str_eq(node_stats(p, 1).address, nsq_testd_address(b));
    for (int i = 0; i < 10; i++)
        publish_ok(p, "d", "both");
    ck_assert_uint_eq(nsq_testd_count(b, "d"), 5);
    ck_assert_uint_eq(nsq_testd_count(a, "d"), 6);

    ck_assert(nsq_testd_lookupd_remove_node(l, nsq_testd_address(a)));
    wait_rounds(l);
    for (int i = 0; i < 10; i++)
        publish_ok(p, "d", "b only");
    ck_assert_uint_eq(nsq_testd_count(a, "d"), 6);
    ck_assert_uint_eq(nsq_testd_count(b, "d"), 15);
    /* Drained: its connection is closed. */
    WAIT_UNTIL(ok, broker_stats(a).active == 0, WAIT_MS);
    ck_assert(ok);
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
    nsq_testd_destroy(b);
}
END_TEST

/* A topic tombstoned on a node goes to the others; other topics do not. */
START_TEST(discovery_tombstone)
{
    nsq_testd_t *a = broker_start(), *b = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, a), 0);
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, b), 0);
    ck_assert(
        nsq_testd_lookupd_tombstone(l, "gone", nsq_testd_address(a), true));
    nsq_producer_t *p = lookupd_producer(l);
    for (int i = 0; i < 8; i++)
        publish_ok(p, "gone", "x");
    for (int i = 0; i < 8; i++)
        publish_ok(p, "kept", "y");
    ck_assert_uint_eq(nsq_testd_count(a, "gone"), 0);
    ck_assert_uint_eq(nsq_testd_count(b, "gone"), 8);
    ck_assert_uint_eq(nsq_testd_count(a, "kept"), 4);
    ck_assert_uint_eq(nsq_testd_count(b, "kept"), 4);
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
    nsq_testd_destroy(b);
}
END_TEST

/* Every lookupd down: the last list is kept and publishes still go. */
START_TEST(discovery_lookupd_down_keeps_list)
{
    nsq_testd_t *a = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, a), 0);
    nsq_producer_t *p = lookupd_producer(l);
    publish_ok(p, "k", "before");
    nsq_testd_lookupd_fault_t down = {.down = true};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &down), 0);
    bool ok;
    WAIT_UNTIL(ok, kept_last() >= 2, WAIT_MS);
    ck_assert(ok);
    publish_ok(p, "k", "after");
    ck_assert_uint_eq(nsq_testd_count(a, "k"), 2);
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
}
END_TEST

/*
 * A slow lookupd (it answers after read_timeout).  Loop 0: the given node
 * takes the publishes meanwhile, and the node only the lookupd lists is
 * never added.  Loop 1: after a good round the lookupd turns slow, and
 * the node it listed keeps taking the publishes (the last list is kept).
 * The log names the lookupd and says it timed out.
 */
START_TEST(discovery_lookupd_slow)
{
    nsq_testd_t *a = broker_start(), *b = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, b), 0);
    nsq_testd_lookupd_fault_t slow = {.delay_ms = 60000};
    if (_i == 0)
        ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &slow), 0);
    char url[80];
    snprintf(url, sizeof url, "http://%s", nsq_testd_lookupd_address(l));
    const char *kv[] = {"heartbeat_interval", "1s", "read_timeout", "2s", NULL};
    nsq_producer_t *p =
        lookupd_producer_at(url, _i == 0 ? nsq_testd_address(a) : NULL, kv);
    if (_i == 1) {
        publish_ok(p, "s", "listed"); /* after the first round: to b */
        ck_assert_uint_eq(nsq_testd_count(b, "s"), 1);
        ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &slow), 0);
    }
    for (int i = 0; i < 4; i++)
        publish_ok(p, "s", "during");
    bool ok;
    WAIT_UNTIL(ok, lookupd_warned("timed out"), WAIT_MS);
    ck_assert(ok);
    ck_assert(lookupd_warned(nsq_testd_lookupd_address(l)));
    if (_i == 1) {
        WAIT_UNTIL(ok, kept_last() >= 1, WAIT_MS);
        ck_assert(ok);
    }
    for (int i = 0; i < 4; i++)
        publish_ok(p, "s", "after");
    nsq_testd_t *used = _i == 0 ? a : b, *other = _i == 0 ? b : a;
    ck_assert_uint_eq(nsq_testd_count(used, "s"), _i == 0 ? 8 : 9);
    ck_assert_uint_eq(nsq_testd_count(other, "s"), 0);
    ck_assert_uint_eq(nsq_producer_node_count(p), 1);
    ck_assert_str_eq(node_stats(p, 0).address, nsq_testd_address(used));
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
    nsq_testd_destroy(b);
}
END_TEST

/*
 * A lookupd behind https with a certificate the producer cannot verify
 * (self-signed): it is never asked for /nodes, and the log says why.
 * Loop 0: the given node takes the publishes.  Loop 1 (no node given): a
 * publish fails at once, NSQ_ERR_CONNECT, with a text that says no nsqd
 * is known and why.
 */
START_TEST(discovery_lookupd_bad_cert)
{
    char dir[64] = "/tmp/nsqpub-cluster-XXXXXX", err[256] = "";
    char cert[512], key[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_msg(certs_make(dir, err, sizeof err), "certificates: %s", err);
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    o.tls_cert = certs_path(cert, sizeof cert, dir, "selfsigned.pem");
    o.tls_key = certs_path(key, sizeof key, dir, "selfsigned.key");
    nsq_testd_lookupd_t *l = testd_lookupd_start_opts(&o);
    nsq_testd_t *a = broker_start(), *b = broker_start();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, b), 0);
    char url[80];
    snprintf(url, sizeof url, "https://%s", nsq_testd_lookupd_address(l));
    nsq_producer_t *p =
        lookupd_producer_at(url, _i == 0 ? nsq_testd_address(a) : NULL, NULL);
    if (_i == 0) {
        for (int i = 0; i < 4; i++)
            publish_ok(p, "c", "given");
        ck_assert_uint_eq(nsq_testd_count(a, "c"), 4);
    } else {
        nsq_err_t rc = nsq_producer_publish(p, "c", "x", 1, err, sizeof err);
        ck_assert_int_eq(rc, NSQ_ERR_CONNECT);
        ck_assert_msg(strstr(err, "no nsqd known") != NULL, "%s", err);
        ck_assert_msg(strstr(err, "certificate") != NULL, "%s", err);
    }
    bool ok;
    WAIT_UNTIL(ok, lookupd_warned("certificate"), WAIT_MS);
    ck_assert(ok);
    ck_assert(lookupd_warned(nsq_testd_lookupd_address(l)));
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(l), 0);
    ck_assert_uint_eq(nsq_testd_count(b, "c"), 0);
    ck_assert_uint_eq(nsq_producer_node_count(p), _i == 0 ? 1 : 0);
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
    nsq_testd_destroy(b);
    certs_remove(dir);
}
END_TEST

/* No nsqd known (the lookupd lists none, or answers garbage, too much or
 * an error status): a publish
 * fails as a connect failure whose text says so; a node listed later is
 * used. */
static const nsq_testd_lookupd_fault_t empty_kinds[] = {
    {.malformed = NSQ_TESTD_LOOKUPD_MALFORMED_NONE}, /* lists none */
    {.malformed = NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX},
    {.malformed = NSQ_TESTD_LOOKUPD_MALFORMED_TYPES},
    {.huge_bytes = 5u << 20}, /* over discovery's 4 MiB */
    {.http_status = 500},
};

START_TEST(discovery_no_nsqd_known)
{
    nsq_testd_t *a = broker_start();
    nsq_testd_lookupd_t *l = testd_lookupd_start();
    nsq_testd_lookupd_fault_t f = empty_kinds[_i];
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    nsq_producer_t *p = lookupd_producer(l);
    char err[256] = "";
    nsq_err_t rc = nsq_producer_publish(p, "n", "x", 1, err, sizeof err);
    ck_assert_int_eq(rc, NSQ_ERR_CONNECT);
    ck_assert_msg(strstr(err, "no nsqd known") != NULL, "%s", err);
    ck_assert_uint_eq(pstats(p).connects, 0);
    /* All down, then one back: used again. */
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, a), 0);
    f = (nsq_testd_lookupd_fault_t){0};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    bool ok;
    WAIT_UNTIL(ok, nsq_producer_node_count(p) == 1, WAIT_MS);
    ck_assert(ok);
    publish_ok(p, "n", "y");
    ck_assert_uint_eq(nsq_testd_count(a, "n"), 1);
    nsq_producer_destroy(p);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(a);
}
END_TEST

/* A bad lookupd address list fails nsq_producer_new. */
START_TEST(discovery_bad_address)
{
    char err[256] = "";
    const char *kv[] = {"lookupd_http_addresses", "ftp://x:1", NULL};
    nsq_conf_t *c = conf_make(kv);
    ck_assert_ptr_null(nsq_producer_new(NULL, c, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "lookupd_http_addresses"));
    nsq_conf_destroy(c);
    ck_assert_ptr_null(nsq_producer_new(NULL, NULL, err, sizeof err));
}
END_TEST

/* ---------------------------------------------------------------- strategies
 */

/* failover: every publish goes to the first node; when it dies the next
 * takes over (what the first never processed is retried there), and the
 * first is not used again before failback_after. */
START_TEST(failover_order)
{
    cluster_t c;
    cluster_start(&c, NB, NULL);
    const char *kv[] = {"strategy", "failover", "failback_after", "1h", NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    for (int i = 0; i < 10; i++)
        publish_ok(p, "f", "first");
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "f"), 10);
    nsq_testd_fault_t dead = {.drop = true, .refuse = true};
    nsq_testd_set_fault(c.t[0], &dead);
    bool ok;
    WAIT_UNTIL(ok, broker_stats(c.t[0]).active == 0, WAIT_MS);
    ck_assert(ok);
    int good = 0;
    for (int i = 0; i < 10; i++) {
        char err[256];
        /* The first may be in doubt (written as the node died). */
        if (nsq_producer_publish(p, "f", "second", 6, err, sizeof err) ==
            NSQ_OK)
            good++;
    }
    ck_assert_int_ge(good, 9);
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "f"), (uint64_t)good);
    ck_assert_uint_eq(nsq_testd_count(c.t[2], "f"), 0);
    nsq_testd_fault_t none = {0};
    nsq_testd_set_fault(c.t[0], &none);
    for (int i = 0; i < 10; i++)
        publish_ok(p, "f", "still second");
    ck_assert_uint_eq(nsq_testd_count(c.t[0], "f"), 10);
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "f"), (uint64_t)good + 10);
    nsq_producer_destroy(p);
    cluster_stop(&c);
}
END_TEST

/* failover with a short failback_after: once the first node is back and
 * the time passed, publishes go to it again. */
START_TEST(failover_fails_back)
{
    cluster_t c;
    nsq_testd_fault_t refuse = {.refuse = true};
    const nsq_testd_fault_t *f[NB] = {&refuse, NULL, NULL};
    cluster_start(&c, NB, f);
    const char *kv[] = {"strategy", "failover", "failback_after", "200ms",
                        NULL};
    nsq_producer_t *p = producer_new(c.addrs, kv);
    publish_ok(p, "b", "to second");
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "b"), 1);
    ck_assert_uint_gt(node_stats(p, 0).failures, 0);
    nsq_testd_fault_t none = {0};
    nsq_testd_set_fault(c.t[0], &none);
    /* Publishes keep going to the second until failback_after passed;
     * then the first takes them again. */
    bool back;
    WAIT_UNTIL(back,
               (publish_ok(p, "b", "x"), nsq_testd_count(c.t[0], "b") > 0),
               WAIT_MS);
    ck_assert(back);
    uint64_t second = nsq_testd_count(c.t[1], "b");
    for (int i = 0; i < 5; i++)
        publish_ok(p, "b", "first again");
    ck_assert_uint_eq(nsq_testd_count(c.t[1], "b"), second);
    ck_assert_uint_eq(nsq_testd_count(c.t[2], "b"), 0);
    nsq_producer_destroy(p);
    cluster_stop(&c);
}
END_TEST

/* least_outstanding: a node that holds its answers back keeps the
 * one publish it took; every later publish goes to the idle node.  (In
 * turn, half of them would go to the stalled node.) */
START_TEST(least_outstanding_avoids_stalled)
{
    enum { N = 20 };
    nsq_testd_t *t[2];
    nsq_testd_fault_t stall = {.hold_from = 1};
    t[0] = broker_start_fault(&stall);
    t[1] = broker_start();
    char addrs[128];
    snprintf(addrs, sizeof addrs, "%s,%s", nsq_testd_address(t[0]),
             nsq_testd_address(t[1]));
    const char *kv[] = {"strategy", "least_outstanding", "publish_timeout",
                        "20s", NULL};
    nsq_producer_t *p = producer_new(addrs, kv);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(nsq_producer_publish_async(p, "lo", "x", 1, rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
        /* Each is answered, or held by the stalled node, before the next. */
        bool ok;
        WAIT_UNTIL(ok,
                   atomic_load(&r.total) + node_stats(p, 0).in_flight ==
                       (uint64_t)i + 1,
                   WAIT_MS);
        ck_assert(ok);
    }
    ck_assert_uint_le(node_stats(p, 0).in_flight, 1);
    ck_assert_uint_ge(nsq_testd_count(t[1], "lo"), N - 1);
    ck_assert_uint_ge(node_stats(p, 1).published, N - 1);
    nsq_producer_stop(p);
    nsq_producer_destroy(p);
    rec_free(&r);
    nsq_testd_destroy(t[0]);
    nsq_testd_destroy(t[1]);
}
END_TEST

START_TEST(strategy_key)
{
    char err[256] = "";
    nsq_conf_t *c = nsq_conf_new();
    ck_assert_int_eq(nsq_conf_set(c, "strategy", "random", err, sizeof err),
                     NSQ_ERR_CONF);
    ck_assert_ptr_nonnull(strstr(err, "round_robin"));
    ck_assert_int_eq(
        nsq_conf_set(c, "strategy", "least_outstanding", err, sizeof err),
        NSQ_OK);
    nsq_conf_destroy(c);
}
END_TEST

/* ---------------------------------------------------------------- replicas */

typedef struct rep_rec {
    atomic_int done;
    int err[16];
    unsigned replicas[16], stored[16];
    char on[16][2][64];
    char detail[16][256];
} rep_rec_t;

typedef struct rep_slot {
    rep_rec_t *r;
    int i;
} rep_slot_t;

static void rep_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                   void *opaque)
{
    rep_slot_t *s = opaque;
    rep_rec_t *r = s->r;
    const nsq_publish_result_t *res = nsq_producer_result(p);
    r->err[s->i] = err;
    snprintf(r->detail[s->i], sizeof r->detail[s->i], "%s", detail);
    if (res) {
        r->replicas[s->i] = res->replicas;
        r->stored[s->i] = res->stored;
        for (unsigned k = 0; k < res->stored && k < 2; k++)
            snprintf(r->on[s->i][k], sizeof r->on[s->i][k], "%s",
                     res->stored_on[k]);
    }
    atomic_fetch_add(&r->done, 1);
}

/* replicas 2 over 2 nodes (loop 1: over 3): every message on two nodes,
 * each result says 2 of 2 and names two different nodes. */
START_TEST(replicas_two)
{
    enum { N = 12 };
    cluster_t c;
    cluster_start(&c, NB, NULL);
    char two[128];
    snprintf(two, sizeof two, "%s,%s", nsq_testd_address(c.t[0]),
             nsq_testd_address(c.t[1]));
    const char *kv[] = {"replicas", "2", NULL};
    nsq_producer_t *p = producer_new(_i ? c.addrs : two, kv);
    static rep_rec_t r;
    memset(&r, 0, sizeof r);
    rep_slot_t slots[N];
    for (int i = 0; i < N; i++) {
        slots[i] = (rep_slot_t){&r, i};
        char body[16];
        snprintf(body, sizeof body, "r%02d", i);
        ck_assert_int_eq(nsq_producer_publish_async(
                             p, "rep", body, strlen(body), rep_cb, &slots[i]),
                         NSQ_OK);
    }
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&r.done) == N, WAIT_MS);
    ck_assert(ok);
    ck_assert_uint_eq(cluster_count(&c, "rep"), 2 * N);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(r.err[i] == NSQ_OK, "%d: %s", i, r.detail[i]);
        ck_assert_uint_eq(r.replicas[i], 2);
        ck_assert_uint_eq(r.stored[i], 2);
        ck_assert_str_ne(r.on[i][0], r.on[i][1]);
        char body[16];
        snprintf(body, sizeof body, "r%02d", i);
        int holders = 0;
        for (int k = 0; k < NB; k++)
            holders += broker_has(c.t[k], "rep", body, strlen(body), NULL);
        ck_assert_int_eq(holders, 2);
        if (!_i) {
            ck_assert(broker_has(c.t[0], "rep", body, strlen(body), NULL));
            ck_assert(broker_has(c.t[1], "rep", body, strlen(body), NULL));
        }
    }
    ck_assert_uint_eq(pstats(p).published, N);
    nsq_producer_destroy(p);
    cluster_stop(&c);
}
END_TEST

/* replicas 2, one of the two nodes down: each publish fails (not stored
 * everywhere), and its result says 1 of 2, on the live node; a sync
 * publish's error text says 1 of 2. */
START_TEST(replicas_one_down)
{
    enum { N = 6 };
    nsq_testd_t *up = broker_start();
    nsq_testd_fault_t refuse = {.refuse = true};
    nsq_testd_t *down = broker_start_fault(&refuse);
    char addrs[128];
    snprintf(addrs, sizeof addrs, "%s,%s", nsq_testd_address(up),
             nsq_testd_address(down));
    const char *kv[] = {"replicas", "2", NULL};
    nsq_producer_t *p = producer_new(addrs, kv);
    static rep_rec_t r;
    memset(&r, 0, sizeof r);
    rep_slot_t slots[N];
    for (int i = 0; i < N; i++) {
        slots[i] = (rep_slot_t){&r, i};
        ck_assert_int_eq(
            nsq_producer_publish_async(p, "half", "m", 1, rep_cb, &slots[i]),
            NSQ_OK);
    }
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&r.done) == N, WAIT_MS);
    ck_assert(ok);
    for (int i = 0; i < N; i++) {
        ck_assert_int_ne(r.err[i], NSQ_OK);
        ck_assert_int_eq(nsq_err_fate(r.err[i]), NSQ_FATE_NOT_STORED);
        ck_assert_uint_eq(r.replicas[i], 2);
        ck_assert_uint_eq(r.stored[i], 1);
        ck_assert_str_eq(r.on[i][0], nsq_testd_address(up));
        ck_assert_msg(strstr(r.detail[i], "stored on 1 of 2") != NULL, "%s",
                      r.detail[i]);
    }
    /* A sync publish: the same error, the count in its text. */
    char err[256];
    nsq_err_t rc = nsq_producer_publish(p, "half", "s", 1, err, sizeof err);
    ck_assert_int_eq(nsq_err_fate(rc), NSQ_FATE_NOT_STORED);
    ck_assert_msg(strncmp(err, "stored on 1 of 2 nodes: ", 24) == 0, "%s", err);
    ck_assert_uint_eq(nsq_testd_count(up, "half"), N + 1);
    ck_assert_uint_eq(nsq_testd_count(down, "half"), 0);
    /* Outside a callback there is no result. */
    ck_assert_ptr_null(nsq_producer_result(p));
    nsq_producer_destroy(p);
    nsq_testd_destroy(up);
    nsq_testd_destroy(down);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("producer_cluster");
    TCase *tc = tcase("cluster");
    tcase_add_test(tc, spread_round_robin);
    tcase_add_test(tc, refused_node_retried_elsewhere);
    tcase_add_test(tc, no_retry_fails_not_stored);
    tcase_add_loop_test(tc, node_dies_during_run, 0, 2);
    tcase_add_loop_test(tc, stuck_write_in_doubt, 0, 3);
    tcase_add_test(tc, retry_keeps_order);
    tcase_add_loop_test(tc, retry_times_out_first, 0, 2);
    tcase_add_test(tc, address_list);
    suite_add_tcase(s, tc);
    TCase *td = tcase("discovery");
    tcase_add_test(td, discovery_add_remove);
    tcase_add_test(td, discovery_tombstone);
    tcase_add_test(td, discovery_lookupd_down_keeps_list);
    tcase_add_loop_test(td, discovery_lookupd_slow, 0, 2);
    tcase_add_loop_test(td, discovery_lookupd_bad_cert, 0, 2);
    tcase_add_loop_test(td, discovery_no_nsqd_known, 0,
                        (int)(sizeof empty_kinds / sizeof empty_kinds[0]));
    tcase_add_test(td, discovery_bad_address);
    suite_add_tcase(s, td);
    TCase *ts = tcase("strategy");
    tcase_add_test(ts, failover_order);
    tcase_add_test(ts, failover_fails_back);
    tcase_add_test(ts, least_outstanding_avoids_stalled);
    tcase_add_test(ts, strategy_key);
    suite_add_tcase(s, ts);
    TCase *tr = tcase("replicas");
    tcase_add_loop_test(tr, replicas_two, 0, 2);
    tcase_add_test(tr, replicas_one_down);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
