/*
 * Discovery (producer/discovery.c) against the test broker's lookupd: the
 * node list of one and of several lookupd (a union, tombstones merged),
 * lookupd down, slow, malformed, huge, in the old wrapped format or behind
 * https with an untrusted certificate; the rounds the poll interval makes;
 * poll now; closing with nothing left on the loop; and the reply parser
 * (lookupd_reply.c) alone on byte vectors.
 *
 * Each test runs the discovery on a loop of its own on the test's thread
 * and stops the loop once the round it waits for has been reported; faults
 * are changed while the loop is stopped, so a round sees them whole.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "certs.h"
#include "conf.h"
#include "discovery.h"
#include "lookupd_reply.h"
#include "nsq/testd.h"

static char g_certs[256];

#define MAXN 16

typedef struct harness {
    uv_loop_t loop;
    nsq__discovery_t *d;
    nsq__disc_opts_t opts;
    uint64_t rounds;   /* reported */
    uint64_t wait_for; /* stop the loop at this round */
    bool close_in_cb;  /* close from the round callback */
    int closed;        /* closed callback calls */
    /* the last round, copied */
    uint64_t round_no;
    bool failed;
    size_t nnodes;
    char nodes[MAXN][64];
    char tombs[MAXN][128]; /* "t1,t2" */
    size_t nlookupds;
    char addr[MAXN][64];
    bool ok[MAXN];
    size_t counts[MAXN];
    char error[MAXN][256];
    char log[8192];
} harness_t;

static void on_log(void *opaque, int level, const char *msg)
{
    harness_t *h = opaque;
    size_t n = strlen(h->log);
    snprintf(h->log + n, sizeof h->log - n, "%d %s\n", level, msg);
}

static void on_closed(void *opaque)
{
    harness_t *h = opaque;
    h->closed++;
}

static void on_round(void *opaque, const nsq__disc_round_t *r)
{
    harness_t *h = opaque;
    h->rounds++;
    h->round_no = r->round;
    h->failed = r->failed;
    ck_assert_uint_le(r->nnodes, MAXN);
    h->nnodes = r->nnodes;
    for (size_t i = 0; i < r->nnodes; i++) {
        snprintf(h->nodes[i], sizeof h->nodes[i], "%s", r->nodes[i].address);
        h->tombs[i][0] = '\0';
        for (size_t k = 0; k < r->nodes[i].ntombstoned; k++) {
            size_t n = strlen(h->tombs[i]);
            snprintf(h->tombs[i] + n, sizeof h->tombs[i] - n, "%s%s",
                     k ? "," : "", r->nodes[i].tombstoned[k]);
        }
    }
    h->nlookupds = r->nlookupds;
    for (size_t i = 0; i < r->nlookupds; i++) {
        snprintf(h->addr[i], sizeof h->addr[i], "%s", r->lookupds[i].address);
        h->ok[i] = r->lookupds[i].ok;
        h->counts[i] = r->lookupds[i].nodes;
        snprintf(h->error[i], sizeof h->error[i], "%s",
                 r->lookupds[i].error ? r->lookupds[i].error : "");
        /* An error says why; a success says nothing. */
        ck_assert(r->lookupds[i].ok == (r->lookupds[i].error == NULL));
    }
    if (h->close_in_cb) {
        nsq__discovery_close(h->d, on_closed, h);
        return;
    }
    if (h->rounds >= h->wait_for)
        uv_stop(&h->loop);
}

/* Options for addresses: short timeouts, no automatic rounds during the
 * test (a long interval) unless the test sets one. */
static void h_init(harness_t *h, const char *addresses)
{
    memset(h, 0, sizeof *h);
    ck_assert_int_eq(uv_loop_init(&h->loop), 0);
    h->opts.addresses = addresses;
    h->opts.poll_interval_ms = 3600 * 1000;
    h->opts.poll_jitter_pct = 0;
    h->opts.dial_timeout_ms = 5000;
    h->opts.read_timeout_ms = 20000;
    h->opts.on_round = on_round;
    h->opts.log = on_log;
    h->opts.log_opaque = h;
    h->opts.log_level = NSQ_LOG_DEBUG;
    h->opts.opaque = h;
}

static void h_start(harness_t *h)
{
    char err[256] = "";
    h->d = nsq__discovery_new(&h->loop, &h->opts, err, sizeof err);
    ck_assert_msg(h->d != NULL, "discovery_new: %s", err);
}

/* Runs the loop until round n has been reported. */
static void h_run_until(harness_t *h, uint64_t n)
{
    h->wait_for = n;
    while (h->rounds < n)
        uv_run(&h->loop, UV_RUN_DEFAULT);
    ck_assert_uint_eq(h->rounds, n);
    ck_assert_uint_eq(h->round_no, n);
}

/* Closes, runs the loop dry and closes it: nothing may be left on it. */
static void h_close(harness_t *h)
{
    if (h->d && !h->closed)
        nsq__discovery_close(h->d, on_closed, h);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(h->closed, 1);
    ck_assert_int_eq(uv_loop_close(&h->loop), 0);
}

static bool h_has_node(const harness_t *h, const char *addr)
{
    for (size_t i = 0; i < h->nnodes; i++)
        if (strcmp(h->nodes[i], addr) == 0)
            return true;
    return false;
}

static const char *h_tombs(const harness_t *h, const char *addr)
{
    for (size_t i = 0; i < h->nnodes; i++)
        if (strcmp(h->nodes[i], addr) == 0)
            return h->tombs[i];
    ck_abort_msg("no node %s", addr);
    return NULL;
}

/* A lookupd on an ephemeral loopback port (https with cert/key). */
static nsq_testd_lookupd_t *lookupd(const char *cert, const char *key)
{
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    char c[512], k[512];
    if (cert) {
        o.tls_cert = certs_path(c, sizeof c, g_certs, cert);
        o.tls_key = certs_path(k, sizeof k, g_certs, key);
    }
    char err[256] = "";
    nsq_testd_lookupd_t *l = nsq_testd_lookupd_start(&o, err, sizeof err);
    ck_assert_msg(l != NULL, "lookupd: %s", err);
    return l;
}

static void node(nsq_testd_lookupd_t *l, const char *host, uint16_t port)
{
    nsq_testd_lookupd_node_t n = {0};
    n.broadcast_address = host;
    n.tcp_port = port;
    n.http_port = (uint16_t)(port + 1);
    ck_assert_int_eq(nsq_testd_lookupd_add_node(l, &n), 0);
}

static void fault(nsq_testd_lookupd_t *l, nsq_testd_lookupd_fault_t f)
{
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
}

static char g_addrs[1024];

static const char *addrs2(nsq_testd_lookupd_t *a, nsq_testd_lookupd_t *b)
{
    snprintf(g_addrs, sizeof g_addrs, "%s,%s", nsq_testd_lookupd_address(a),
             nsq_testd_lookupd_address(b));
    return g_addrs;
}

static char g_url[2][128];

static const char *url(int i, nsq_testd_lookupd_t *l)
{
    snprintf(g_url[i], sizeof g_url[i], "http://%s",
             nsq_testd_lookupd_address(l));
    return g_url[i];
}

/* Two lookupds, a listing 127.0.0.1:4001 and b 127.0.0.1:4002. */
static void pair(nsq_testd_lookupd_t **a, nsq_testd_lookupd_t **b)
{
    *a = lookupd(NULL, NULL);
    *b = lookupd(NULL, NULL);
    node(*a, "127.0.0.1", 4001);
    node(*b, "127.0.0.1", 4002);
}

/* Starts on addresses with the default test options; runs round 1. */
static void h_first_round(harness_t *h, const char *addresses)
{
    h_init(h, addresses);
    h_start(h);
    h_run_until(h, 1);
}

/* Closes h (checking the loop is left empty), then the lookupds. */
static void finish(harness_t *h, nsq_testd_lookupd_t *a, nsq_testd_lookupd_t *b)
{
    h_close(h);
    nsq_testd_lookupd_destroy(a);
    nsq_testd_lookupd_destroy(b);
}

/* ------------------------------------------------------------------------ */

START_TEST(test_one_lookupd)
{
    nsq_testd_opts_t bo;
    nsq_testd_opts_default(&bo);
    char err[256];
    nsq_testd_t *broker = nsq_testd_start(&bo, err, sizeof err);
    ck_assert_msg(broker != NULL, "%s", err);
    nsq_testd_lookupd_t *l = lookupd(NULL, NULL);
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, broker), 0);
    node(l, "10.1.2.3", 4150);
    node(l, "::1", 4152);
    harness_t h;
    h_init(&h, nsq_testd_lookupd_address(l));
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert(!h.failed);
    ck_assert_uint_eq(h.nnodes, 3);
    ck_assert_str_eq(h.nodes[0], nsq_testd_address(broker));
    ck_assert_str_eq(h.nodes[1], "10.1.2.3:4150");
    ck_assert_str_eq(h.nodes[2], "[::1]:4152");
    ck_assert_str_eq(h.tombs[0], "");
    ck_assert_uint_eq(h.nlookupds, 1);
    ck_assert_str_eq(h.addr[0], url(0, l));
    ck_assert(h.ok[0]);
    ck_assert_uint_eq(h.counts[0], 3);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(l), 1);

    /* A node removed is gone from the next round. */
    ck_assert(nsq_testd_lookupd_remove_node(l, "10.1.2.3:4150"));
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 2);
    ck_assert_uint_eq(h.nnodes, 2);
    ck_assert(!h_has_node(&h, "10.1.2.3:4150"));

    /* An empty list is an answer too: it replaces the last one. */
    ck_assert(nsq_testd_lookupd_remove_node(l, nsq_testd_address(broker)));
    ck_assert(nsq_testd_lookupd_remove_node(l, "[::1]:4152"));
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 3);
    ck_assert(!h.failed);
    ck_assert(h.ok[0]);
    ck_assert_uint_eq(h.nnodes, 0);
    h_close(&h);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(broker);
}
END_TEST

START_TEST(test_union)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL), *b = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    node(a, "127.0.0.1", 4002);
    node(b, "127.0.0.1", 4002);
    node(b, "127.0.0.1", 4003);
    harness_t h;
    h_first_round(&h, addrs2(a, b));
    ck_assert(!h.failed);
    ck_assert_uint_eq(h.nnodes, 3);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    ck_assert_str_eq(h.nodes[1], "127.0.0.1:4002");
    ck_assert_str_eq(h.nodes[2], "127.0.0.1:4003");
    ck_assert(h.ok[0] && h.ok[1]);
    ck_assert_uint_eq(h.counts[0], 2);
    ck_assert_uint_eq(h.counts[1], 2);
    /* Both were asked in the one round. */
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(a), 1);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(b), 1);
    finish(&h, a, b);
}
END_TEST

START_TEST(test_tombstones)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL), *b = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    node(a, "127.0.0.1", 4002);
    node(b, "127.0.0.1", 4001);
    ck_assert(nsq_testd_lookupd_add_topic(a, "127.0.0.1:4001", "t0"));
    ck_assert(nsq_testd_lookupd_tombstone(a, "t1", "127.0.0.1:4001", true));
    ck_assert(nsq_testd_lookupd_add_topic(a, "127.0.0.1:4001", "t2"));
    ck_assert(nsq_testd_lookupd_tombstone(a, "t3", "127.0.0.1:4002", true));
    ck_assert(nsq_testd_lookupd_tombstone(a, "t3", "127.0.0.1:4002", false));
    /* The other lookupd tombstones another topic of the same node. */
    ck_assert(nsq_testd_lookupd_tombstone(b, "t2", "127.0.0.1:4001", true));
    ck_assert(!nsq_testd_lookupd_tombstone(b, "t2", "127.0.0.1:9", true));
    harness_t h;
    h_first_round(&h, addrs2(a, b));
    ck_assert_uint_eq(h.nnodes, 2);
    ck_assert_str_eq(h_tombs(&h, "127.0.0.1:4001"), "t1,t2");
    ck_assert_str_eq(h_tombs(&h, "127.0.0.1:4002"), "");
    finish(&h, a, b);
}
END_TEST

START_TEST(test_one_down)
{
    nsq_testd_lookupd_t *a, *b;
    pair(&a, &b);
    fault(b, (nsq_testd_lookupd_fault_t){.down = true});
    harness_t h;
    h_first_round(&h, addrs2(a, b));
    ck_assert(!h.failed);
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    ck_assert(h.ok[0]);
    ck_assert(!h.ok[1]);
    ck_assert_msg(strcasestr(h.error[1], "connect") != NULL, "error: %s",
                  h.error[1]);
    /* Logged as a warning, naming the lookupd. */
    char want[200];
    snprintf(want, sizeof want, "4 discovery: %s: ", url(1, b));
    ck_assert_msg(strstr(h.log, want) != NULL, "log: %s", h.log);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(b), 0);

    /* Back up: both serve again. */
    fault(b, (nsq_testd_lookupd_fault_t){0});
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 2);
    ck_assert(h.ok[0] && h.ok[1]);
    ck_assert_uint_eq(h.nnodes, 2);
    finish(&h, a, b);
}
END_TEST

START_TEST(test_all_down_keeps_list)
{
    nsq_testd_lookupd_t *a, *b;
    pair(&a, &b);
    harness_t h;
    h_first_round(&h, addrs2(a, b));
    ck_assert(!h.failed);
    ck_assert_uint_eq(h.nnodes, 2);

    fault(a, (nsq_testd_lookupd_fault_t){.down = true});
    fault(b, (nsq_testd_lookupd_fault_t){.down = true});
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 2);
    ck_assert(h.failed);
    ck_assert(!h.ok[0] && !h.ok[1]);
    ck_assert_uint_eq(h.nnodes, 2); /* the last list, kept */
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    ck_assert_str_eq(h.nodes[1], "127.0.0.1:4002");
    ck_assert_msg(strstr(h.log, "3 discovery: round 2: no nsqlookupd "
                                "answered; keeping the last 2 nodes") != NULL,
                  "log: %s", h.log);

    /* One back, listing a changed set: its list is the new one. */
    ck_assert(nsq_testd_lookupd_remove_node(b, "127.0.0.1:4002"));
    node(b, "127.0.0.1", 4005);
    fault(b, (nsq_testd_lookupd_fault_t){0});
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 3);
    ck_assert(!h.failed);
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4005");
    finish(&h, a, b);
}
END_TEST

START_TEST(test_all_down_from_start)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    fault(a, (nsq_testd_lookupd_fault_t){.down = true});
    harness_t h;
    h_first_round(&h, nsq_testd_lookupd_address(a));
    ck_assert(h.failed);
    ck_assert_uint_eq(h.nnodes, 0);
    finish(&h, a, NULL);
}
END_TEST

START_TEST(test_slow)
{
    nsq_testd_lookupd_t *a, *b;
    pair(&a, &b);
    /* Far longer than read_timeout; destroy ends the wait early. */
    fault(b, (nsq_testd_lookupd_fault_t){.delay_ms = 60000});
    harness_t h;
    h_init(&h, addrs2(a, b));
    h.opts.read_timeout_ms = 2000; /* the other must answer within it */
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert(!h.failed);
    ck_assert(h.ok[0]);
    ck_assert(!h.ok[1]);
    ck_assert_msg(strcasestr(h.error[1], "timed out") != NULL, "error: %s",
                  h.error[1]);
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    finish(&h, a, b);
}
END_TEST

static const struct {
    nsq_testd_lookupd_malformed_t kind;
    const char *error;
} malformed[] = {
    {NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX, "malformed JSON in the reply"},
    {NSQ_TESTD_LOOKUPD_MALFORMED_TYPES, "producer 0: want an object"},
    {NSQ_TESTD_LOOKUPD_MALFORMED_NOT_OBJECT,
     "the reply has no \"producers\" array"},
};

START_TEST(test_malformed)
{
    nsq_testd_lookupd_t *a, *b;
    pair(&a, &b);
    fault(b, (nsq_testd_lookupd_fault_t){.malformed = malformed[_i].kind});
    harness_t h;
    h_first_round(&h, addrs2(a, b));
    ck_assert(!h.failed);
    ck_assert(h.ok[0]);
    ck_assert(!h.ok[1]);
    ck_assert_msg(strncmp(h.error[1], malformed[_i].error,
                          strlen(malformed[_i].error)) == 0,
                  "error: %s", h.error[1]);
    /* Nothing of the broken reply is used. */
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    finish(&h, a, b);
}
END_TEST

START_TEST(test_huge)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    /* Chunked, no size announced: the write callback stops it. */
    fault(a, (nsq_testd_lookupd_fault_t){.huge_bytes = 5u << 20});
    harness_t h;
    h_first_round(&h, nsq_testd_lookupd_address(a));
    ck_assert(h.failed);
    ck_assert(!h.ok[0]);
    ck_assert_str_eq(h.error[0], "the reply is larger than 4194304 bytes");

    /* Under the cap, the padded reply is fine. */
    fault(a, (nsq_testd_lookupd_fault_t){.huge_bytes = 3u << 20});
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 2);
    ck_assert(!h.failed);
    ck_assert(h.ok[0]);
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    h_close(&h);

    /* An announced size over a smaller cap: refused as well. */
    fault(a, (nsq_testd_lookupd_fault_t){0});
    h_init(&h, nsq_testd_lookupd_address(a));
    h.opts.max_reply = 64;
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert(!h.ok[0]);
    ck_assert_str_eq(h.error[0], "the reply is larger than 64 bytes");
    finish(&h, a, NULL);
}
END_TEST

/* Answers that are not nsqlookupd's: an HTTP error status, and a server
 * that does not speak HTTP (the test broker's NSQ port). */
START_TEST(test_not_lookupd)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    fault(a, (nsq_testd_lookupd_fault_t){.http_status = 500});
    nsq_testd_opts_t bo;
    nsq_testd_opts_default(&bo);
    char err[256];
    nsq_testd_t *broker = nsq_testd_start(&bo, err, sizeof err);
    ck_assert_msg(broker != NULL, "%s", err);
    char list[256];
    snprintf(list, sizeof list, "%s,%s", nsq_testd_lookupd_address(a),
             nsq_testd_address(broker));
    harness_t h;
    h_init(&h, list);
    h.opts.read_timeout_ms = 2000; /* the broker may just wait */
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert(h.failed);
    ck_assert(!h.ok[0] && !h.ok[1]);
    ck_assert_str_eq(h.error[0], "HTTP status 500");
    ck_assert(h.error[1][0] != '\0');
    ck_assert_uint_eq(h.nnodes, 0);
    finish(&h, a, NULL);
    nsq_testd_destroy(broker);
}
END_TEST

START_TEST(test_wrapped)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    ck_assert(nsq_testd_lookupd_tombstone(a, "t1", "127.0.0.1:4001", true));
    fault(a, (nsq_testd_lookupd_fault_t){.wrapped = true});
    harness_t h;
    h_first_round(&h, nsq_testd_lookupd_address(a));
    ck_assert(!h.failed);
    ck_assert(h.ok[0]);
    ck_assert_uint_eq(h.nnodes, 1);
    ck_assert_str_eq(h.nodes[0], "127.0.0.1:4001");
    ck_assert_str_eq(h.tombs[0], "t1");
    finish(&h, a, NULL);
}
END_TEST

/* https: a certificate signed by a CA the client was not given fails;
 * with that CA it works.  Loop: 0 system CAs, 1 our CA, 2 our CA but a
 * self-signed server certificate. */
START_TEST(test_https)
{
    nsq_testd_lookupd_t *a = _i == 2
                                 ? lookupd("selfsigned.pem", "selfsigned.key")
                                 : lookupd("server.pem", "server.key");
    node(a, "127.0.0.1", 4001);
    char addr[128], ca[512];
    snprintf(addr, sizeof addr, "https://%s", nsq_testd_lookupd_address(a));
    harness_t h;
    h_init(&h, addr);
    if (_i > 0)
        h.opts.ca_file = certs_path(ca, sizeof ca, g_certs, "ca.pem");
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert_str_eq(h.addr[0], addr);
    if (_i == 1) {
        ck_assert_msg(h.ok[0], "error: %s", h.error[0]);
        ck_assert_uint_eq(h.nnodes, 1);
    } else {
        ck_assert(!h.ok[0]);
        ck_assert(h.failed);
        ck_assert_msg(strcasestr(h.error[0], "certificate") != NULL,
                      "error: %s", h.error[0]);
        ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(a), 0);
    }
    finish(&h, a, NULL);
}
END_TEST

/* Rounds come by themselves every interval (with and without jitter), each
 * one request to the lookupd. */
START_TEST(test_interval)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    harness_t h;
    h_init(&h, nsq_testd_lookupd_address(a));
    h.opts.poll_interval_ms = 20;
    h.opts.poll_jitter_pct = _i == 0 ? 0 : 100;
    h_start(&h);
    h_run_until(&h, 5);
    ck_assert(!h.failed);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(a), 5);
    finish(&h, a, NULL);
}
END_TEST

START_TEST(test_poll_now_in_round)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    harness_t h;
    h_init(&h, nsq_testd_lookupd_address(a));
    h_start(&h);
    /* Round 1 is under way: asked twice more, it runs once more. */
    nsq__discovery_poll_now(h.d);
    nsq__discovery_poll_now(h.d);
    h_run_until(&h, 2);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(a), 2);
    /* And no third round comes before the (hour-long) interval: closing
     * now leaves the count at two. */
    h_close(&h);
    ck_assert_uint_eq(h.rounds, 2);
    nsq_testd_lookupd_destroy(a);
}
END_TEST

static void on_check_started(uv_timer_t *t)
{
    harness_t *h = t->data;
    uv_stop(&h->loop);
}

/* Close while a transfer waits on a slow lookupd, and from the round
 * callback: no round after, the closed callback once, nothing left on the
 * loop. */
START_TEST(test_close)
{
    nsq_testd_lookupd_t *a = lookupd(NULL, NULL);
    node(a, "127.0.0.1", 4001);
    fault(a, (nsq_testd_lookupd_fault_t){.delay_ms = 60000});
    harness_t h;
    h_init(&h, nsq_testd_lookupd_address(a));
    h_start(&h);
    /* Run the loop until the lookupd has the request. */
    uv_timer_t tick;
    uv_timer_init(&h.loop, &tick);
    tick.data = &h;
    while (nsq_testd_lookupd_nodes_requests(a) == 0) {
        uv_timer_start(&tick, on_check_started, 5, 0);
        uv_run(&h.loop, UV_RUN_DEFAULT);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    nsq__discovery_close(h.d, on_closed, &h);
    nsq__discovery_close(h.d, on_closed, &h); /* ignored: closing already */
    uv_run(&h.loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(h.closed, 1);
    ck_assert_uint_eq(h.rounds, 0);
    ck_assert_int_eq(uv_loop_close(&h.loop), 0);

    fault(a, (nsq_testd_lookupd_fault_t){0});
    h_init(&h, nsq_testd_lookupd_address(a));
    h.opts.poll_interval_ms = 10;
    h.close_in_cb = true;
    h_start(&h);
    uv_run(&h.loop, UV_RUN_DEFAULT); /* returns once everything closed */
    ck_assert_uint_eq(h.rounds, 1);
    ck_assert_int_eq(h.closed, 1);
    ck_assert_int_eq(uv_loop_close(&h.loop), 0);
    nsq_testd_lookupd_destroy(a);
}
END_TEST

/* ------------------------------------------------------------------------ */

static const char *const bad_lists[] = {
    "",         " , ",          "ftp://127.0.0.1:1", "127.0.0.1",   "h:0",
    "h:65536",  "h:12a",        "http://h:1/nodes",  ":4161",       "http://",
    "user@h:1", "h:1,https://", "::1:4161",          "[::1]x:4161",
};

START_TEST(test_bad_addresses)
{
    harness_t h;
    h_init(&h, bad_lists[_i]);
    char err[256] = "";
    ck_assert_ptr_null(nsq__discovery_new(&h.loop, &h.opts, err, sizeof err));
    ck_assert_msg(strstr(err, "lookupd address") != NULL ||
                      strcmp(err, "no lookupd address given") == 0,
                  "\"%s\": %s", bad_lists[_i], err);
    ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}
END_TEST

START_TEST(test_address_forms)
{
    /* Ports nothing listens on: each lookupd fails, the forms show. */
    harness_t h;
    h_init(&h, " 127.0.0.1:1, http://127.0.0.1:2 ,,HTTPS://127.0.0.1:3/,"
               "[::1]:4");
    h.opts.dial_timeout_ms = 2000;
    h_start(&h);
    h_run_until(&h, 1);
    ck_assert(h.failed);
    ck_assert_uint_eq(h.nlookupds, 4);
    ck_assert_str_eq(h.addr[0], "http://127.0.0.1:1");
    ck_assert_str_eq(h.addr[1], "http://127.0.0.1:2");
    ck_assert_str_eq(h.addr[2], "https://127.0.0.1:3");
    ck_assert_str_eq(h.addr[3], "http://[::1]:4");
    for (int i = 0; i < 4; i++)
        ck_assert(!h.ok[i] && h.error[i][0]);
    h_close(&h);
}
END_TEST

START_TEST(test_opts_from_conf)
{
    nsq_conf_t *c = nsq_conf_new();
    char err[256];
    ck_assert_int_eq(nsq_conf_set(c, "lookupd_http_addresses",
                                  "a:1,https://b:2", err, sizeof err),
                     NSQ_OK);
    ck_assert_int_eq(
        nsq_conf_set(c, "lookupd_poll_interval", "15s", err, sizeof err),
        NSQ_OK);
    ck_assert_int_eq(
        nsq_conf_set(c, "lookupd_poll_jitter", "50", err, sizeof err), NSQ_OK);
    ck_assert_int_eq(nsq_conf_set(c, "dial_timeout", "2s", err, sizeof err),
                     NSQ_OK);
    ck_assert_int_eq(nsq_conf_set(c, "read_timeout", "7s", err, sizeof err),
                     NSQ_OK);
    ck_assert_int_eq(
        nsq_conf_set(c, "tls_root_ca_file", "/x/ca.pem", err, sizeof err),
        NSQ_OK);
    int log_target;
    nsq_conf_set_log_cb(c, on_log, &log_target, NSQ_LOG_WARNING);
    nsq__disc_opts_t o;
    memset(&o, 0xab, sizeof o);
    nsq__disc_opts_from_conf(&o, c);
    ck_assert_str_eq(o.addresses, "a:1,https://b:2");
    ck_assert_int_eq(o.poll_interval_ms, 15000);
    ck_assert_int_eq(o.poll_jitter_pct, 50);
    ck_assert_int_eq(o.dial_timeout_ms, 2000);
    ck_assert_int_eq(o.read_timeout_ms, 7000);
    ck_assert_str_eq(o.ca_file, "/x/ca.pem");
    ck_assert(o.log == on_log);
    /* The log gets the conf's opaque, not the producer's. */
    ck_assert_ptr_eq(o.log_opaque, &log_target);
    ck_assert_int_eq(o.log_level, NSQ_LOG_WARNING);
    ck_assert_ptr_null(o.on_round);
    ck_assert_uint_eq(o.max_reply, 0);
    nsq_conf_destroy(c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The reply parser alone (lookupd_reply.c), on byte vectors                */
/* ------------------------------------------------------------------------ */

/* Parses json; the nodes as "addr[t1,t2] addr[]" into out. */
static bool parse(const char *json, char *out, size_t outlen, char *err,
                  size_t errlen)
{
    nsq__disc_node_t *nodes = NULL;
    size_t n = 0;
    err[0] = '\0';
    bool ok =
        nsq__lookupd_parse_nodes(json, strlen(json), &nodes, &n, err, errlen);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%s%s[", i ? " " : "",
                 nodes[i].address);
        for (size_t k = 0; k < nodes[i].ntombstoned; k++) {
            used = strlen(out);
            snprintf(out + used, outlen - used, "%s%s", k ? "," : "",
                     nodes[i].tombstoned[k]);
        }
        used = strlen(out);
        snprintf(out + used, outlen - used, "]");
    }
    nsq__disc_nodes_free(nodes, n);
    return ok;
}

#define P(h, port, extra)                                                      \
    "{\"broadcast_address\":\"" h "\",\"tcp_port\":" port extra "}"

static const struct {
    const char *json;
    const char *nodes; /* NULL: an error starting with error */
    const char *error;
} replies[] = {
    {"{\"producers\":[]}", "", NULL},
    {"{\"producers\":[" P("a", "1", "") "," P("b.example", "65535", "") "]}",
     "a:1[] b.example:65535[]", NULL},
    /* nsqlookupd 1.3's full entry */
    {"{\"producers\":[{\"remote_address\":\"127.0.0.1:33434\",\"hostname\":"
     "\"vm\",\"broadcast_address\":\"127.0.0.1\",\"tcp_port\":47150,"
     "\"http_port\":47151,\"version\":\"1.3.0\",\"tombstones\":[true,false],"
     "\"topics\":[\"t1\",\"t2\"]}]}",
     "127.0.0.1:47150[t1]", NULL},
    {"{\"producers\":[" P("::1", "4150", "") "]}", "[::1]:4150[]", NULL},
    /* the same node twice in one reply: once, tombstones merged */
    {"{\"producers\":[" P(
         "a", "1",
         ",\"topics\":[\"x\"],\"tombstones\":[true]") "," P("a", "1",
                                                            ",\"topics\":["
                                                            "\"y\",\"x\"],"
                                                            "\"tombstones\":["
                                                            "true,true]") "]}",
     "a:1[x,y]", NULL},
    /* fewer tombstones than topics, or more: only the pairs count */
    {"{\"producers\":[" P("a", "1",
                          ",\"topics\":[\"x\",\"y\"],"
                          "\"tombstones\":[false]") "]}",
     "a:1[]", NULL},
    {"{\"producers\":[" P("a", "1",
                          ",\"topics\":[\"x\"],"
                          "\"tombstones\":[false,true]") "]}",
     "a:1[]", NULL},
    {"{\"status_code\":200,\"status_txt\":\"OK\",\"data\":{\"producers\":[" P(
         "a", "1", "") "]}}",
     "a:1[]", NULL},
    {"{\"status_code\":500,\"status_txt\":\"INTERNAL_ERROR\",\"data\":null}",
     NULL, "the reply's status_code is not 200"},
    {"{\"status_code\":200,\"data\":[]}", NULL,
     "the reply has no \"producers\" array"},
    {"", NULL, "malformed JSON"},
    {"{\"producers\":[]", NULL, "malformed JSON"},
    {"{\"producers\":{}}", NULL, "the reply has no \"producers\" array"},
    {"{}", NULL, "the reply has no \"producers\" array"},
    {"null", NULL, "the reply has no \"producers\" array"},
    {"{\"producers\":[" P("", "1", "") "]}", NULL, "producer 0: want"},
    {"{\"producers\":[" P("a", "0", "") "]}", NULL, "producer 0: want"},
    {"{\"producers\":[" P("a", "1", "") "," P("a", "65536", "") "]}", NULL,
     "producer 1: want"},
    {"{\"producers\":[" P("a", "1.5", "") "]}", NULL, "producer 0: want"},
    {"{\"producers\":[" P("a", "-1", "") "]}", NULL, "producer 0: want"},
    {"{\"producers\":[" P("a", "\"1\"", "") "]}", NULL, "producer 0: want"},
    {"{\"producers\":[{\"tcp_port\":1}]}", NULL, "producer 0: want"},
    {"{\"producers\":[7]}", NULL, "producer 0: want"},
    {"{\"producers\":[" P("a", "1", ",\"topics\":\"x\"") "]}", NULL,
     "producer 0: want"},
    {"{\"producers\":[" P("a", "1",
                          ",\"topics\":[\"x\"],"
                          "\"tombstones\":[1]") "]}",
     NULL, "producer 0 (a:1): tombstones must be booleans"},
    {"{\"producers\":[" P("a", "1",
                          ",\"topics\":[7],"
                          "\"tombstones\":[true]") "]}",
     NULL, "producer 0 (a:1): tombstones must be booleans"},
};

START_TEST(test_reply)
{
    char out[512], err[256];
    bool ok = parse(replies[_i].json, out, sizeof out, err, sizeof err);
    if (replies[_i].nodes) {
        ck_assert_msg(ok, "%s: %s", replies[_i].json, err);
        ck_assert_str_eq(out, replies[_i].nodes);
    } else {
        ck_assert_msg(!ok, "%s: parsed", replies[_i].json);
        ck_assert_msg(
            strncmp(err, replies[_i].error, strlen(replies[_i].error)) == 0,
            "%s: %s", replies[_i].json, err);
    }
}
END_TEST

/* Parsing adds to a list: a node already there is not repeated. */
START_TEST(test_reply_adds)
{
    nsq__disc_node_t *nodes = NULL;
    size_t n = 0;
    char err[128];
    ck_assert_ptr_nonnull(nsq__disc_nodes_add(&nodes, &n, "a:1"));
    const char *json = "{\"producers\":[" P("b", "2", "") "," P(
        "a", "1", ",\"topics\":[\"t\"],\"tombstones\":[true]") "]}";
    ck_assert(nsq__lookupd_parse_nodes(json, strlen(json), &nodes, &n, err,
                                       sizeof err));
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(nodes[0].address, "a:1");
    ck_assert_uint_eq(nodes[0].ntombstoned, 1);
    ck_assert_str_eq(nodes[0].tombstoned[0], "t");
    ck_assert_str_eq(nodes[1].address, "b:2");
    /* Only len bytes are read: a cut copy is malformed. */
    ck_assert(!nsq__lookupd_parse_nodes(json, strlen(json) - 1, &nodes, &n, err,
                                        sizeof err));
    nsq__disc_nodes_free(nodes, n);
}
END_TEST

static Suite *discovery_suite(void)
{
    Suite *s = suite_create("discovery");
    TCase *tc = tcase_create("lookupd");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_one_lookupd);
    tcase_add_test(tc, test_union);
    tcase_add_test(tc, test_tombstones);
    tcase_add_test(tc, test_one_down);
    tcase_add_test(tc, test_all_down_keeps_list);
    tcase_add_test(tc, test_all_down_from_start);
    tcase_add_test(tc, test_slow);
    tcase_add_loop_test(tc, test_malformed, 0,
                        (int)(sizeof malformed / sizeof malformed[0]));
    tcase_add_test(tc, test_huge);
    tcase_add_test(tc, test_not_lookupd);
    tcase_add_test(tc, test_wrapped);
    tcase_add_loop_test(tc, test_https, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("rounds");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_interval, 0, 2);
    tcase_add_test(tc, test_poll_now_in_round);
    tcase_add_test(tc, test_close);
    suite_add_tcase(s, tc);

    tc = tcase_create("addresses");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_bad_addresses, 0,
                        (int)(sizeof bad_lists / sizeof bad_lists[0]));
    tcase_add_test(tc, test_address_forms);
    tcase_add_test(tc, test_opts_from_conf);
    suite_add_tcase(s, tc);

    tc = tcase_create("reply");
    tcase_add_loop_test(tc, test_reply, 0,
                        (int)(sizeof replies / sizeof replies[0]));
    tcase_add_test(tc, test_reply_adds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    char err[256] = "";
    snprintf(g_certs, sizeof g_certs, "/tmp/nsqpub-disc-XXXXXX");
    if (!mkdtemp(g_certs) || !certs_make(g_certs, err, sizeof err)) {
        fprintf(stderr, "certificates: %s\n", err);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(discovery_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    certs_remove(g_certs);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
