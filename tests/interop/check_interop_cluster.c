/*
 * A cluster of real NSQ: three nsqd registered with a real nsqlookupd.  The
 * producer finds them through the lookupd, spreads its publishes over
 * them, and keeps every acknowledged message when one is killed with
 * SIGKILL in the middle of an async run.  Nodes that register later are
 * used, nodes that stop take no more publishes, and with all of them gone
 * and one back, that one is used again.
 */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"
#include "producer_testutil.h"

enum { NN = 3 };

typedef struct lookupd {
    pid_t pid;
    uint16_t tcp_port, http_port;
} lookupd_t;

/* Starts nsqlookupd on free loopback ports and waits for its /ping. */
static void lookupd_start(lookupd_t *l)
{
    uint16_t ports[2];
    it_pick_ports(ports, 2);
    l->tcp_port = ports[0];
    l->http_port = ports[1];
    char bin[4096], tcp[64], http[64];
    ck_assert_ptr_nonnull(it_bin("nsqlookupd", bin, sizeof bin));
    snprintf(tcp, sizeof tcp, "--tcp-address=127.0.0.1:%u", l->tcp_port);
    snprintf(http, sizeof http, "--http-address=127.0.0.1:%u", l->http_port);
    /* A stopped nsqd leaves the lists when its connection to the lookupd
     * closes; one that stays connected but silent leaves after this (just
     * above nsqd's 15s ping, so live nodes stay listed). */
    char *argv[] = {bin,
                    tcp,
                    http,
                    "--broadcast-address=127.0.0.1",
                    "--inactive-producer-timeout=20s",
                    NULL};
    l->pid = it_spawn(argv, NULL, NULL);
    bool ok;
    WAIT_UNTIL(ok, it_http_get(l->http_port, "/ping", NULL) == 200, IT_WAIT_MS);
    ck_assert_msg(ok, "nsqlookupd did not answer /ping");
}

static void lookupd_stop(lookupd_t *l)
{
    if (l->pid > 0) {
        kill(l->pid, SIGKILL);
        it_reap(l->pid, IT_WAIT_MS);
        l->pid = 0;
    }
}

/* nsqd registered with the lookupd: how many /nodes lists. */
static int listed(const lookupd_t *l)
{
    char *body = NULL;
    int n = 0;
    if (it_http_get(l->http_port, "/nodes", &body) == 200 && body)
        for (const char *q = body; (q = strstr(q, "\"tcp_port\"")); q++)
            n++;
    free(body);
    return n;
}

/* An nsqd registered with lookupd l (extra nsqd flags, may be NULL). */
static it_nsqd_t *registered_nsqd(const lookupd_t *l, const char *extra,
                                  const char *extra2)
{
    char reg[64];
    snprintf(reg, sizeof reg, "--lookupd-tcp-address=127.0.0.1:%u",
             l->tcp_port);
    const char *flags[] = {reg, extra, extra2, NULL};
    return it_nsqd_start(flags);
}

/* The lookupd and three nsqd registered with it (extra nsqd flags). */
static void cluster_up(lookupd_t *l, it_nsqd_t *d[NN], const char *extra,
                       const char *extra2)
{
    lookupd_start(l);
    for (int i = 0; i < NN; i++)
        d[i] = registered_nsqd(l, extra, extra2);
    bool ok;
    WAIT_UNTIL(ok, listed(l) == NN, IT_WAIT_MS);
    ck_assert_msg(ok, "the lookupd lists %d of %d nsqd", listed(l), NN);
}

/* How many nsqd the producer's last discovery round listed (its log). */
static atomic_int last_listed;

static void rounds_log(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    unsigned long long round;
    size_t n;
    if (sscanf(msg, "discovery round %llu: %zu nsqd listed", &round, &n) == 2)
        atomic_store(&last_listed, (int)n);
}

static nsq_producer_t *lookupd_producer(const lookupd_t *l)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", l->http_port);
    const char *kv[] = {"lookupd_http_addresses",
                        addr,
                        "lookupd_poll_interval",
                        "200ms",
                        "publish_timeout",
                        "10s",
                        NULL};
    char err[256] = "";
    nsq_conf_t *c = conf_make(kv);
    atomic_store(&last_listed, -1);
    nsq_conf_set_log_cb(c, rounds_log, NULL, NSQ_LOG_DEBUG);
    nsq_producer_t *p = nsq_producer_new(NULL, c, err, sizeof err);
    ck_assert_msg(p != NULL, "nsq_producer_new: %s", err);
    return p;
}

/* Discovery and spread: the producer finds the three nsqd through the
 * lookupd and round_robin gives each a third (+-10%). */
START_TEST(spread_through_lookupd)
{
    enum { N = 300 };
    lookupd_t l;
    it_nsqd_t *d[NN];
    cluster_up(&l, d, "--mem-queue-size=10000", NULL);
    nsq_producer_t *p = lookupd_producer(&l);
    bool ok;
    WAIT_UNTIL(ok, nsq_producer_node_count(p) == NN, IT_WAIT_MS);
    ck_assert(ok);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "interop_spread", "m", 1,
                                                    rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    ck_assert(rec_wait(&r, N, IT_WAIT_MS));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(rec_result(&r, (size_t)i), NSQ_OK);
    int64_t sum = 0;
    for (int i = 0; i < NN; i++) {
        int64_t got = it_topic_stats(d[i], "interop_spread").message_count;
        ck_assert_msg(got >= N / NN * 9 / 10 && got <= N / NN * 11 / 10,
                      "nsqd %d has %lld of %d", i, (long long)got, N);
        sum += got;
    }
    ck_assert_int_eq(sum, N);
    nsq_producer_destroy(p);
    rec_free(&r);
    for (int i = 0; i < NN; i++)
        it_nsqd_free(d[i]);
    lookupd_stop(&l);
}
END_TEST

/* kill -9 of one of three during an async run: every publish is OK or in
 * doubt (written to the killed nsqd), and every OK message is read back
 * from one of them (the killed nsqd restarted on its data, synced to disk
 * before each answer). */
START_TEST(kill9_one_of_three)
{
    enum { N = 600 };
    lookupd_t l;
    it_nsqd_t *d[NN];
    cluster_up(&l, d, "--mem-queue-size=0", "--sync-every=1");
    nsq_producer_t *p = lookupd_producer(&l);
    bool ok;
    WAIT_UNTIL(ok, nsq_producer_node_count(p) == NN, IT_WAIT_MS);
    ck_assert(ok);
    rec_t r;
    rec_init(&r, N);
    for (int i = 0; i < N; i++) {
        if (i == N / 2)
            it_nsqd_kill9(d[1]);
        char body[32];
        snprintf(body, sizeof body, "k%04d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "interop_kill", body,
                                                    strlen(body), rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert(rec_wait(&r, N, IT_WAIT_MS));
    int64_t okc = 0;
    for (int i = 0; i < N; i++) {
        nsq_err_t e = rec_result(&r, (size_t)i);
        char det[256];
        rec_detail(&r, (size_t)i, det, sizeof det);
        ck_assert_msg(e == NSQ_OK || e == NSQ_ERR_IN_DOUBT, "k%04d: %s (%s)", i,
                      nsq_err2name(e), det);
        okc += e == NSQ_OK;
    }
    ck_assert_int_gt(okc, N / 2);
    nsq_producer_destroy(p);
    it_nsqd_restart(d[1]);
    /* Read everything back (nsqd's depth can lag a message behind). */
    static bool seen[N];
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < NN; i++) {
        it_msg_t *got;
        size_t n = it_consume(d[i], "interop_kill", N, &got);
        for (size_t k = 0; k < n; k++) {
            int idx;
            if (sscanf(got[k].body, "k%d", &idx) == 1 && idx >= 0 && idx < N)
                seen[idx] = true;
        }
        it_msgs_free(got, n);
    }
    for (int i = 0; i < N; i++)
        ck_assert_msg(seen[i] || rec_result(&r, (size_t)i) != NSQ_OK,
                      "k%04d acknowledged, not stored", i);
    rec_free(&r);
    for (int i = 0; i < NN; i++)
        it_nsqd_free(d[i]);
    lookupd_stop(&l);
}
END_TEST

/* Waits until the producer's discovery lists n nsqd. */
static void wait_listed(int n)
{
    bool ok;
    WAIT_UNTIL(ok, atomic_load(&last_listed) == n, IT_WAIT_MS);
    ck_assert_msg(ok, "the producer lists %d nsqd, not %d",
                  atomic_load(&last_listed), n);
}

/* Publishes k sync messages to topic; each must be acknowledged. */
static void publish_ok_n(nsq_producer_t *p, const char *topic, int k)
{
    for (int i = 0; i < k; i++)
        publish_ok(p, topic, "m");
}

static int64_t count_of(const it_nsqd_t *d, const char *topic)
{
    int64_t n = it_topic_stats(d, topic).message_count;
    return n < 0 ? 0 : n;
}

/*
 * Nodes come and go through a real nsqlookupd: a node that registers is
 * used (round_robin gives it half); a node that stops leaves the lookupd's
 * list and takes no more publishes (the producer does not even try it:
 * its failures stay); with every node gone a publish fails at once (no
 * nsqd known); the first node back (restarted on its ports) is used
 * again.
 */
START_TEST(nodes_come_and_go)
{
    static const char topic[] = "interop_disc";
    lookupd_t l;
    lookupd_start(&l);
    it_nsqd_t *a = registered_nsqd(&l, NULL, NULL);
    nsq_producer_t *p = lookupd_producer(&l);
    wait_listed(1);
    publish_ok_n(p, topic, 4);
    ck_assert_int_eq(count_of(a, topic), 4);

    /* Added: used within a poll interval (waited for, not timed). */
    it_nsqd_t *b = registered_nsqd(&l, NULL, NULL);
    wait_listed(2);
    ck_assert_uint_eq(nsq_producer_node_count(p), 2);
    publish_ok_n(p, topic, 10);
    ck_assert_int_eq(count_of(a, topic), 9);
    ck_assert_int_eq(count_of(b, topic), 5);

    /* Removed: a stopped nsqd leaves the lookupd's list, then the
     * producer's. */
    it_nsqd_stop(a);
    wait_listed(1);
    /* Its connection's end counted (it may come after the round). */
    nsq_node_stats_t sa;
    bool ok;
    WAIT_UNTIL(ok,
               nsq_producer_node_stats(p, 0, &sa) == NSQ_OK && sa.failures > 0,
               IT_WAIT_MS);
    ck_assert(ok);
    ck_assert_str_eq(sa.address, a->addr);
    publish_ok_n(p, topic, 10);
    ck_assert_int_eq(count_of(b, topic), 15);
    nsq_node_stats_t sa2;
    ck_assert_int_eq(nsq_producer_node_stats(p, 0, &sa2), NSQ_OK);
    ck_assert_uint_eq(sa2.failures, sa.failures);
    ck_assert_uint_eq(sa2.published, 9);

    /* All down: no nsqd known, a publish fails at once. */
    it_nsqd_stop(b);
    wait_listed(0);
    char err[256] = "";
    ck_assert_int_eq(nsq_producer_publish(p, topic, "x", 1, err, sizeof err),
                     NSQ_ERR_CONNECT);
    ck_assert_msg(strstr(err, "no nsqd known") != NULL, "%s", err);

    /* One back: used again. */
    it_nsqd_restart(a);
    wait_listed(1);
    publish_ok_n(p, topic, 3);
    ck_assert_int_eq(count_of(a, topic), 3); /* since its restart */
    ck_assert_uint_eq(nsq_producer_node_count(p), 2);
    nsq_producer_destroy(p);
    it_nsqd_free(a);
    it_nsqd_free(b);
    lookupd_stop(&l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interop_cluster");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, spread_through_lookupd);
    tcase_add_test(tc, kill9_one_of_three);
    tcase_add_test(tc, nodes_come_and_go);
    suite_add_tcase(s, tc);
    return it_run_suite(s);
}
