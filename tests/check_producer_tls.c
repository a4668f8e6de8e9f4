/*
 * The producer's upgrades after IDENTIFY, end to end: every combination of
 * TLS, snappy, deflate and AUTH that nsqd allows, against the test broker;
 * certificate verification (CA, IP and DNS names, expiry, the server name
 * override, skipping it) and the reasons a failure gives; client
 * certificates; the refusal to continue without TLS; compression the
 * broker turned off; configurations that cannot work; AUTH failures, topic
 * permissions and the secret kept out of every log line.
 *
 * The test broker cannot send malformed compressed bytes nor cap its TLS
 * version, so a small fake broker (one thread, one connection) does that:
 * it answers IDENTIFY through the codec's own server side, then misbehaves.
 *
 * Certificates are made at start (certs.h); a second directory holds a CA
 * that signed nothing the broker uses.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "certs.h"
#include "nsq/producer.h"
#include "nsq/testd.h"
#include "producer_testutil.h"

/* The TLS cases do a handshake per connection, slow under sanitizers. */
#define TLS_CASE_TIMEOUT 120

#define SECRET "h12-Secret-Value-9x"
#define WRONG_SECRET "wr0ng-Secret-Zq7"

static char g_dir[256];  /* the certificates the broker uses */
static char g_dir2[256]; /* another CA, which signed none of them */

/* A path in g_dir (or g_dir2); a few slots, so that one call's result
 * survives the next ones until the conf copies it. */
static const char *cert_in(const char *dir, const char *name)
{
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16];
    return certs_path(p, sizeof paths[0], dir, name);
}

static const char *cert(const char *name)
{
    return cert_in(g_dir, name);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Key/value pairs for conf_make, NULL-terminated. */
typedef struct kvs {
    const char *kv[41];
    int n;
} kvs_t;

static void kv_add(kvs_t *k, const char *key, const char *value)
{
    ck_assert_int_lt(k->n + 2, 40);
    k->kv[k->n++] = key;
    k->kv[k->n++] = value;
    k->kv[k->n] = NULL;
}

/* The secrets never appear in a log line, and the log was really on (it
 * has at least the warning or connection line that want names). */
static void assert_log_clean(logrec_t *l, const char *want)
{
    char *text = logrec_text(l);
    ck_assert_int_gt(logrec_lines(l), 0);
    ck_assert_msg(logrec_has(l, want), "no \"%s\" in the log:\n%s", want, text);
    ck_assert_msg(!logrec_has(l, SECRET), "secret logged:\n%s", text);
    ck_assert_msg(!logrec_has(l, WRONG_SECRET), "secret logged:\n%s", text);
    free(text);
}

/* A producer with the test defaults, kv, and (if log) every log line at
 * DEBUG recorded. */
static nsq_producer_t *producer_make(const char *addr, const char *const *kv,
                                     logrec_t *log)
{
    return log ? producer_logged(addr, kv, log) : producer_new(addr, kv);
}

/* "host:port" of the broker under another host name. */
static const char *addr_as(char *out, size_t len, const char *host,
                           nsq_testd_t *t)
{
    snprintf(out, len, "%s:%u", host, (unsigned)nsq_testd_port(t));
    return out;
}

/* The broker with the certificate <name>.pem / <name>.key. */
static void opts_cert(nsq_testd_opts_t *o, const char *name)
{
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    broker_opts(o);
    o->tls_cert = cert(pem);
    o->tls_key = cert(key);
}

/* Bytes that compress partly: random, then text. */
static void fill_body(char *b, size_t len, uint32_t seed)
{
    uint32_t x = seed | 1u;
    for (size_t i = 0; i < len; i++) {
        if (i < len / 2) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b[i] = (char)(x & 0xff);
        } else {
            b[i] = "nsqpub compresses this text "[i % 28];
        }
    }
}

typedef enum via { VIA_SYNC, VIA_ASYNC, VIA_MULTI } via_t;

static const char *const via_name[] = {"sync", "async", "multi"};

/* One publish to topic by via (an async one waits for its callback); the
 * detail goes to err. */
static nsq_err_t publish_once(nsq_producer_t *p, const char *topic, via_t via,
                              char *err, size_t errlen)
{
    err[0] = '\0';
    if (via == VIA_ASYNC) {
        rec_t r;
        rec_init(&r, 1);
        ck_assert_int_eq(nsq_producer_publish_async(p, topic, "y", 1, rec_cb,
                                                    rec_slot(&r, 0)),
                         NSQ_OK);
        ck_assert(rec_wait(&r, 1, WAIT_MS));
        ck_assert_int_eq(rec_calls(&r, 0), 1);
        rec_detail(&r, 0, err, errlen);
        nsq_err_t rc = rec_result(&r, 0);
        rec_free(&r);
        return rc;
    }
    if (via == VIA_MULTI) {
        nsq_iov_t iov[2] = {{"m", 1}, {"n", 1}};
        return nsq_producer_multi_publish(p, topic, iov, 2, err, errlen);
    }
    return nsq_producer_publish(p, topic, "x", 1, err, errlen);
}

static void assert_code(via_t via, nsq_err_t rc, nsq_err_t code,
                        const char *err)
{
    ck_assert_msg(rc == code, "%s: want %s, got %s (%s)", via_name[via],
                  nsq_err2name(code), nsq_err2name(rc), err);
}

/* A publish by via that must fail with code; the detail goes to err. */
static void publish_fails(nsq_producer_t *p, const char *topic, via_t via,
                          nsq_err_t code, char *err, size_t errlen)
{
    assert_code(via, publish_once(p, topic, via, err, errlen), code, err);
}

/*
 * A publish that makes a new connection attempt, and fails with code.
 * Inside the backoff window a publish fails at once without one (its
 * detail says "next attempt in"), so this publishes until one does not,
 * polling (bounded), and checks that a new attempt was counted.
 */
static void publish_fails_anew(nsq_producer_t *p, const char *topic, via_t via,
                               nsq_err_t code, char *err, size_t errlen)
{
    uint64_t before = pstats(p).connect_failures;
    int64_t deadline = tt_now_ms() + WAIT_MS;
    nsq_err_t rc;
    for (;;) {
        rc = publish_once(p, topic, via, err, errlen);
        if (!strstr(err, "(next attempt in "))
            break;
        ck_assert_msg(tt_now_ms() < deadline, "still backing off: %s", err);
        sleep_ms(2);
    }
    assert_code(via, rc, code, err);
    ck_assert_uint_gt(pstats(p).connect_failures, before);
}

/* ------------------------------------------------------------------------ */
/* Every combination nsqd allows                                            */
/* ------------------------------------------------------------------------ */

typedef struct combo {
    const char *name;
    bool tls, snappy, deflate, auth;
} combo_t;

static const combo_t combos[] = {
    {"plain", false, false, false, false},
    {"tls", true, false, false, false},
    {"tls+snappy", true, true, false, false},
    {"tls+deflate", true, false, true, false},
    {"snappy", false, true, false, false},
    {"deflate", false, false, true, false},
    {"plain+auth", false, false, false, true},
    {"tls+auth", true, false, false, true},
    {"tls+snappy+auth", true, true, false, true},
    {"tls+deflate+auth", true, false, true, true},
    {"snappy+auth", false, true, false, true},
    {"deflate+auth", false, false, true, true},
};

#define N_ASYNC 500
#define N_MPUB 10
#define BIG (1024 * 1024)

START_TEST(test_combination)
{
    const combo_t *cb = &combos[_i];
    nsq_testd_opts_t o;
    if (cb->tls)
        opts_cert(&o, "server");
    else
        broker_opts(&o);
    if (cb->auth)
        o.auth_secret = SECRET;
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    if (cb->tls) {
        kv_add(&kv, "tls_v1", "true");
        kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    }
    if (cb->snappy)
        kv_add(&kv, "snappy", "true");
    if (cb->deflate)
        kv_add(&kv, "deflate", "true");
    if (cb->auth)
        kv_add(&kv, "auth_secret", SECRET);
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, &log);

    /* Sync PUB; then what was negotiated. */
    publish_ok(p, "combo", "first");
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(rep.negotiated);
    ck_assert_str_eq(rep.version, "1.3.0");
    ck_assert_msg(rep.tls_v1 == cb->tls, "%s: tls_v1 %d", cb->name, rep.tls_v1);
    ck_assert_msg(rep.snappy == cb->snappy, "%s: snappy %d", cb->name,
                  rep.snappy);
    ck_assert_msg(rep.deflate == cb->deflate, "%s: deflate %d", cb->name,
                  rep.deflate);
    ck_assert_msg(rep.auth_required == cb->auth, "%s: auth_required %d",
                  cb->name, rep.auth_required);
    nsq_auth_reply_t ar;
    memset(&ar, 0, sizeof ar);
    if (cb->auth) {
        ck_assert_int_eq(nsq_producer_auth_reply(p, &ar), NSQ_OK);
        ck_assert_str_eq(ar.identity, "testd");
        ck_assert_str_eq(ar.identity_url, "");
        ck_assert_int_eq(ar.permission_count, 1);
    } else {
        ck_assert_int_eq(nsq_producer_auth_reply(p, &ar), NSQ_ERR_NOT_SENT);
    }

    /* Async PUBs, pipelined on the one connection. */
    rec_t r;
    rec_init(&r, N_ASYNC);
    for (int i = 0; i < N_ASYNC; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "async-%03d", i);
        ck_assert_int_eq(nsq_producer_publish_async(p, "combo_async", body,
                                                    (size_t)n, rec_cb,
                                                    rec_slot(&r, (size_t)i)),
                         NSQ_OK);
    }
    ck_assert_msg(rec_wait(&r, N_ASYNC, WAIT_MS), "%s: %d of %d callbacks",
                  cb->name, atomic_load(&r.total), N_ASYNC);
    for (int i = 0; i < N_ASYNC; i++) {
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
        ck_assert_msg(rec_result(&r, (size_t)i) == NSQ_OK, "%s: async %d: %s",
                      cb->name, i, nsq_err2name(rec_result(&r, (size_t)i)));
    }
    ck_assert_uint_eq(nsq_testd_count(t, "combo_async"), N_ASYNC);
    for (int i = 0; i < N_ASYNC; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "async-%03d", i);
        assert_message(t, "combo_async", (size_t)i, body, (size_t)n, 0);
    }

    /* MPUB of messages up to 27 KB. */
    char *mbuf = malloc(N_MPUB * 30000);
    ck_assert_ptr_nonnull(mbuf);
    nsq_iov_t iov[N_MPUB];
    for (int k = 0; k < N_MPUB; k++) {
        iov[k].base = mbuf + k * 30000;
        iov[k].len = 1 + (size_t)k * 3000;
        fill_body(mbuf + k * 30000, iov[k].len, (uint32_t)k + 7);
    }
    char err[256] = "";
    ck_assert_msg(nsq_producer_multi_publish(p, "combo_mpub", iov, N_MPUB, err,
                                             sizeof err) == NSQ_OK,
                  "%s: mpub: %s", cb->name, err);
    ck_assert_uint_eq(nsq_testd_count(t, "combo_mpub"), N_MPUB);
    for (int k = 0; k < N_MPUB; k++)
        assert_message(t, "combo_mpub", (size_t)k, iov[k].base, iov[k].len, 0);
    free(mbuf);

    /* DPUB keeps its delay. */
    ck_assert_msg(nsq_producer_deferred_publish(p, "combo_dpub", 2500, "later",
                                                5, err, sizeof err) == NSQ_OK,
                  "%s: dpub: %s", cb->name, err);
    assert_message(t, "combo_dpub", 0, "later", 5, 2500);

    /* A body of exactly max_msg_size (1 MiB), half random, half text. */
    char *big = malloc(BIG);
    ck_assert_ptr_nonnull(big);
    fill_body(big, BIG, 12345);
    ck_assert_msg(nsq_producer_publish(p, "combo_big", big, BIG, err,
                                       sizeof err) == NSQ_OK,
                  "%s: 1 MiB: %s", cb->name, err);
    assert_message(t, "combo_big", 0, big, BIG, 0);
    free(big);

    assert_message(t, "combo", 0, "first", 5, 0);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 1);
    ck_assert_uint_eq(s.connect_failures, 0);
    ck_assert_uint_eq(s.disconnects, 0);
    ck_assert_uint_eq(s.published, 1 + N_ASYNC + N_MPUB + 1 + 1);
    ck_assert_uint_eq(s.commands_ok, 1 + N_ASYNC + 1 + 1 + 1);
    ck_assert_uint_eq(s.rejected, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    for (int i = 0; i < N_ASYNC; i++)
        ck_assert_int_eq(rec_calls(&r, (size_t)i), 1);
    rec_free(&r);

    ck_assert_uint_eq(broker_stats(t).accepted, 1);
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    ck_assert_uint_eq(broker_stats(t).errors, 0);
    assert_log_clean(&log, "connected to");
    if (cb->tls)
        ck_assert(logrec_has(&log, "TLS established"));
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * nsqd closes the connection after a fatal error; inside TLS it sends a
 * close_notify right behind the error frame.  The rejection must still
 * reach the caller as nsqd's code and text, not as a TLS failure.
 */
START_TEST(test_rejected_inside_tls)
{
    /* 0 TLS, 1 TLS+snappy, 2 TLS+deflate, 3 snappy without TLS. */
    bool tls = _i < 3;
    nsq_testd_opts_t o;
    if (tls)
        opts_cert(&o, "server");
    else
        broker_opts(&o);
    o.info.limits.max_msg_size = 100;
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    if (tls) {
        kv_add(&kv, "tls_v1", "true");
        kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    }
    if (_i == 1 || _i == 3)
        kv_add(&kv, "snappy", "true");
    if (_i == 2)
        kv_add(&kv, "deflate", "true");
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, NULL);
    char big[200], err[512] = "";
    memset(big, 'B', sizeof big);
    publish_ok(p, "reject", "small");
    nsq_err_t rc =
        nsq_producer_publish(p, "reject", big, sizeof big, err, sizeof err);
    ck_assert_msg(rc == NSQ_E_BAD_MESSAGE, "%d: %s (%s)", _i, nsq_err2name(rc),
                  err);
    ck_assert_str_eq(err, "E_BAD_MESSAGE PUB message too big 200 > 100");
    publish_ok(p, "reject", "again");
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.rejected, 1);
    ck_assert_uint_eq(s.in_doubt, 0);
    ck_assert_uint_eq(s.connects, 2);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "reject"), 2);
    assert_message(t, "reject", 1, "again", 5, 0);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Certificate verification                                                 */
/* ------------------------------------------------------------------------ */

/* Verified connections: the IP SAN, the DNS SAN, a minimum of TLS 1.3. */
START_TEST(test_verify_ok)
{
    nsq_testd_opts_t o;
    opts_cert(&o, "server");
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    kv_add(&kv, "tls_v1", "true");
    kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    if (_i == 2)
        kv_add(&kv, "tls_min_version", "tls1.3");
    char addr[64];
    addr_as(addr, sizeof addr, _i == 1 ? "localhost" : "127.0.0.1", t);
    nsq_producer_t *p = producer_make(addr, kv.kv, NULL);
    publish_ok(p, "verified", "hello");
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(rep.tls_v1);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    assert_message(t, "verified", 0, "hello", 5, 0);
    nsq_testd_destroy(t);
}
END_TEST

/* How the producer is set up to verify, and what the broker presents. */
typedef struct vcase {
    const char *name;
    const char *server;      /* the broker's <server>.pem / .key */
    int ca;                  /* 0: system roots, 1: ca.pem, 2: the other CA */
    const char *host;        /* the host of the address */
    const char *server_name; /* tls_server_name, or NULL */
    const char *want;        /* in the detail of a failure */
} vcase_t;

static const vcase_t verify_failures[] = {
    {"wrong CA", "server", 2, "127.0.0.1", NULL,
     "unable to get local issuer certificate"},
    {"system roots", "server", 0, "127.0.0.1", NULL,
     "unable to get local issuer certificate"},
    {"self-signed", "selfsigned", 1, "127.0.0.1", NULL,
     "self-signed certificate"},
    {"wrong IP", "wronghost", 1, "127.0.0.1", NULL, "IP address mismatch"},
    {"wrong host", "wronghost", 1, "localhost", NULL, "hostname mismatch"},
    {"server name", "server", 1, "127.0.0.1", "wrong.example",
     "hostname mismatch"},
    {"expired", "expired", 1, "127.0.0.1", NULL, "certificate has expired"},
};

static void vcase_conf(const vcase_t *v, kvs_t *kv, bool insecure)
{
    kv_add(kv, "tls_v1", "true");
    if (v->ca == 1)
        kv_add(kv, "tls_root_ca_file", cert("ca.pem"));
    else if (v->ca == 2)
        kv_add(kv, "tls_root_ca_file", cert_in(g_dir2, "ca.pem"));
    if (v->server_name)
        kv_add(kv, "tls_server_name", v->server_name);
    if (insecure)
        kv_add(kv, "tls_insecure_skip_verify", "true");
}

START_TEST(test_verify_fails)
{
    const vcase_t *v = &verify_failures[_i];
    nsq_testd_opts_t o;
    opts_cert(&o, v->server);
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    vcase_conf(v, &kv, false);
    char addr[64], err[512];
    nsq_producer_t *p =
        producer_make(addr_as(addr, sizeof addr, v->host, t), kv.kv, NULL);

    /* Every publish fails with NSQ_ERR_TLS and says why: the first from
     * its own handshake, later ones from a new one or the backoff. */
    publish_fails(p, "unverified", VIA_SYNC, NSQ_ERR_TLS, err, sizeof err);
    printf("%s: %s\n", v->name, err);
    ck_assert_msg(strstr(err, "certificate verification failed") != NULL,
                  "%s: %s", v->name, err);
    ck_assert_msg(strstr(err, v->want) != NULL, "%s: want \"%s\" in: %s",
                  v->name, v->want, err);
    publish_fails(p, "unverified", VIA_SYNC, NSQ_ERR_TLS, err, sizeof err);
    ck_assert_msg(strstr(err, v->want) != NULL, "%s: %s", v->name, err);
    /* Past the backoff: a new handshake, the same result. */
    publish_fails_anew(p, "unverified", VIA_ASYNC, NSQ_ERR_TLS, err,
                       sizeof err);
    ck_assert_msg(strstr(err, v->want) != NULL, "%s: %s", v->name, err);
    nsq_err_t rc = nsq_producer_ping(p, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_TLS, "ping: %s (%s)", nsq_err2name(rc), err);

    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_ge(s.connect_failures, 2);
    ck_assert_uint_eq(s.published, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "unverified"), 0);
    /* The broker saw the handshakes fail. */
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    ck_assert_uint_ge(broker_stats(t).accepted, 2);
    ck_assert_uint_ge(broker_stats(t).errors, 1);
    nsq_testd_destroy(t);
}
END_TEST

/* What verification refuses, skipping it accepts; the right
 * tls_server_name accepts what the address's name would not. */
static const vcase_t verify_overrides[] = {
    {"insecure wrong CA", "server", 2, "127.0.0.1", NULL, NULL},
    {"insecure system roots", "server", 0, "127.0.0.1", NULL, NULL},
    {"insecure self-signed", "selfsigned", 1, "127.0.0.1", NULL, NULL},
    {"insecure wrong host", "wronghost", 1, "localhost", NULL, NULL},
    {"insecure expired", "expired", 1, "127.0.0.1", NULL, NULL},
    {"server name wrong.example", "wronghost", 1, "127.0.0.1", "wrong.example",
     NULL},
    {"server name localhost", "server", 1, "127.0.0.1", "localhost", NULL},
};

START_TEST(test_verify_override)
{
    const vcase_t *v = &verify_overrides[_i];
    nsq_testd_opts_t o;
    opts_cert(&o, v->server);
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    vcase_conf(v, &kv, strncmp(v->name, "insecure", 8) == 0);
    char addr[64], err[512] = "";
    nsq_producer_t *p =
        producer_make(addr_as(addr, sizeof addr, v->host, t), kv.kv, NULL);
    nsq_err_t rc = nsq_producer_publish(p, "override", v->name, strlen(v->name),
                                        err, sizeof err);
    ck_assert_msg(rc == NSQ_OK, "%s: %s (%s)", v->name, nsq_err2name(rc), err);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    assert_message(t, "override", 0, v->name, strlen(v->name), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* nsqd's --tls-client-auth-policy=require-verify: without a client
 * certificate the handshake fails; with client.pem it works. */
START_TEST(test_client_cert)
{
    bool with_cert = _i == 1;
    nsq_testd_opts_t o;
    opts_cert(&o, "server");
    o.tls_client_auth = "require";
    o.tls_root_ca = cert("ca.pem");
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    kv_add(&kv, "tls_v1", "true");
    kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    if (with_cert) {
        kv_add(&kv, "tls_cert", cert("client.pem"));
        kv_add(&kv, "tls_key", cert("client.key"));
    }
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, NULL);
    char err[512] = "";
    if (with_cert) {
        publish_ok(p, "client_cert", "mutual");
        ck_assert_uint_eq(pstats(p).connects, 1);
        ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
        assert_message(t, "client_cert", 0, "mutual", 6, 0);
    } else {
        publish_fails(p, "client_cert", VIA_SYNC, NSQ_ERR_TLS, err, sizeof err);
        printf("no client certificate: %s\n", err);
        ck_assert_msg(strstr(err, "TLS") != NULL, "%s", err);
        ck_assert_msg(strstr(err, "certificate required") != NULL ||
                          strstr(err, "handshake failure") != NULL,
                      "%s", err);
        publish_fails_anew(p, "client_cert", VIA_ASYNC, NSQ_ERR_TLS, err,
                           sizeof err);
        ck_assert_uint_eq(pstats(p).connects, 0);
        ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
        ck_assert_uint_eq(nsq_testd_count(t, "client_cert"), 0);
    }
    nsq_testd_destroy(t);
}
END_TEST

/* tls_v1 asked, the broker has no certificate (tls_v1 false in its
 * reply): the producer must not fall back to plain text. */
START_TEST(test_no_downgrade)
{
    nsq_testd_t *t = broker_start();
    kvs_t kv = {0};
    kv_add(&kv, "tls_v1", "true");
    kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    if (_i == 1)
        kv_add(&kv, "snappy", "true");
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, &log);
    char err[512];
    publish_fails(p, "downgrade", VIA_SYNC, NSQ_ERR_TLS, err, sizeof err);
    ck_assert_msg(strstr(err, "refusing to continue without TLS") != NULL, "%s",
                  err);
    ck_assert_msg(strstr(err, "tls_v1 false") != NULL, "%s", err);
    publish_fails_anew(p, "downgrade", VIA_ASYNC, NSQ_ERR_TLS, err, sizeof err);
    ck_assert_msg(strstr(err, "refusing to continue without TLS") != NULL, "%s",
                  err);
    nsq_iov_t iov[2] = {{"a", 1}, {"b", 1}};
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "downgrade", iov, 2, err, sizeof err),
        NSQ_ERR_TLS);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_eq(s.published, 0);
    ck_assert_uint_eq(s.in_doubt, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "downgrade"), 0);
    ck_assert(logrec_has(&log, "refusing to continue without TLS"));
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Compression the broker does not offer; configurations that cannot work  */
/* ------------------------------------------------------------------------ */

START_TEST(test_compression_disabled)
{
    /* 0 snappy, 1 deflate, 2 and 3 the same inside TLS. */
    bool tls = _i >= 2;
    const char *algo = _i % 2 == 0 ? "snappy" : "deflate";
    nsq_testd_opts_t o;
    if (tls)
        opts_cert(&o, "server");
    else
        broker_opts(&o);
    o.info.snappy_enabled = false;
    o.info.deflate_enabled = false;
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    kv_add(&kv, algo, "true");
    if (tls) {
        kv_add(&kv, "tls_v1", "true");
        kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    }
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, &log);
    publish_ok(p, "uncompressed", "one");
    nsq_iov_t iov[3] = {{"m1", 2}, {"m22", 3}, {"m333", 4}};
    char err[256] = "";
    ck_assert_msg(nsq_producer_multi_publish(p, "uncompressed", iov, 3, err,
                                             sizeof err) == NSQ_OK,
                  "%s", err);
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(!rep.snappy);
    ck_assert(!rep.deflate);
    ck_assert(rep.tls_v1 == tls);
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_uint_eq(pstats(p).published, 4);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "uncompressed"), 4);
    assert_message(t, "uncompressed", 0, "one", 3, 0);
    assert_message(t, "uncompressed", 3, "m333", 4, 0);
    ck_assert(logrec_has(&log, "did not enable compression"));
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

/* nsq_producer_new refuses a configuration that cannot work, says why,
 * and leaves the conf with the caller. */
static void new_fails(const char *const *kv, const char *want)
{
    nsq_conf_t *c = conf_make(kv);
    char err[512] = "";
    nsq_producer_t *p = nsq_producer_new("127.0.0.1:4150", c, err, sizeof err);
    ck_assert_ptr_null(p);
    ck_assert_msg(strstr(err, want) != NULL, "want \"%s\" in: %s", want, err);
    nsq_conf_destroy(c); /* still ours: ASan reports a double free if not */
}

START_TEST(test_conf_refused)
{
    static const char *const both[] = {"snappy", "true", "deflate", "true",
                                       NULL};
    new_fails(both, "snappy and deflate cannot both be enabled");
    const char *cert_only[] = {"tls_v1", "true", "tls_cert", cert("client.pem"),
                               NULL};
    new_fails(cert_only, "tls_cert and tls_key go together");
    const char *no_ca[] = {"tls_v1", "true", "tls_root_ca_file",
                           cert("missing-ca.pem"), NULL};
    new_fails(no_ca, "missing-ca.pem");
    /* A key that does not belong to the certificate. */
    const char *mismatch[] = {
        "tls_v1",           "true", "tls_cert", cert("client.pem"), "tls_key",
        cert("server.key"), NULL};
    new_fails(mismatch, "tls_key");

    char err[256] = "";
    nsq_conf_t *c = nsq_conf_new();
    ck_assert_int_eq(
        nsq_conf_set(c, "tls_min_version", "tls1.4", err, sizeof err),
        NSQ_ERR_CONF);
    ck_assert_msg(strstr(err, "tls1.4") != NULL, "%s", err);
    ck_assert_int_eq(nsq_conf_set(c, "deflate_level", "10", err, sizeof err),
                     NSQ_ERR_CONF);
    nsq_conf_destroy(c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* AUTH                                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(test_auth_wrong_secret)
{
    /* 0 plain, 1 TLS, 2 TLS+snappy. */
    bool tls = _i >= 1;
    nsq_testd_opts_t o;
    if (tls)
        opts_cert(&o, "server");
    else
        broker_opts(&o);
    o.auth_secret = SECRET;
    nsq_testd_t *t = broker_start_opts(&o);
    kvs_t kv = {0};
    kv_add(&kv, "auth_secret", WRONG_SECRET);
    if (tls) {
        kv_add(&kv, "tls_v1", "true");
        kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    }
    if (_i == 2)
        kv_add(&kv, "snappy", "true");
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv.kv, &log);
    char err[512];
    publish_fails(p, "auth", VIA_SYNC, NSQ_E_AUTH_FAILED, err, sizeof err);
    ck_assert_msg(strstr(err, "E_AUTH_FAILED AUTH failed") != NULL, "%s", err);
    ck_assert(strstr(err, WRONG_SECRET) == NULL);
    ck_assert(strstr(err, SECRET) == NULL);
    /* Past the backoff, each new connection is refused the same way. */
    publish_fails_anew(p, "auth", VIA_ASYNC, NSQ_E_AUTH_FAILED, err,
                       sizeof err);
    ck_assert(strstr(err, WRONG_SECRET) == NULL);
    publish_fails_anew(p, "auth", VIA_MULTI, NSQ_E_AUTH_FAILED, err,
                       sizeof err);
    nsq_auth_reply_t ar;
    ck_assert_int_eq(nsq_producer_auth_reply(p, &ar), NSQ_ERR_NOT_SENT);
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &rep), NSQ_OK);
    ck_assert(rep.auth_required);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_ge(s.connect_failures, 3);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "auth"), 0);
    assert_log_clean(&log, "E_AUTH_FAILED");
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(test_auth_no_secret)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.auth_secret = SECRET;
    nsq_testd_t *t = broker_start_opts(&o);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), NULL, NULL);
    char err[512];
    publish_fails(p, "noauth", VIA_SYNC, NSQ_E_AUTH_FIRST, err, sizeof err);
    ck_assert_msg(
        strstr(err, "nsqd requires AUTH and auth_secret is not set") != NULL,
        "%s", err);
    publish_fails_anew(p, "noauth", VIA_ASYNC, NSQ_E_AUTH_FIRST, err,
                       sizeof err);
    ck_assert_uint_eq(pstats(p).connects, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "noauth"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* A secret set for a broker that does not ask for AUTH is not sent. */
START_TEST(test_auth_not_required)
{
    nsq_testd_t *t = broker_start();
    static const char *const kv[] = {"auth_secret", SECRET, NULL};
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv, &log);
    publish_ok(p, "unauth", "free");
    nsq_auth_reply_t ar;
    ck_assert_int_eq(nsq_producer_auth_reply(p, &ar), NSQ_ERR_NOT_SENT);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    assert_message(t, "unauth", 0, "free", 4, 0);
    assert_log_clean(&log, "connected to");
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

/* Topic permissions: PUB, MPUB and DPUB outside them are E_UNAUTHORIZED
 * (fatal in nsqd); the next publish gets a new, authorized connection. */
START_TEST(test_auth_permissions)
{
    nsq_testd_opts_t o;
    broker_opts(&o);
    o.auth_secret = SECRET;
    o.auth_identity = "h12-user";
    o.auth_topic_prefix = "ok_,fine.";
    nsq_testd_t *t = broker_start_opts(&o);
    static const char *const kv[] = {"auth_secret", SECRET, NULL};
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(nsq_testd_address(t), kv, &log);
    publish_ok(p, "ok_a", "allowed");
    nsq_auth_reply_t ar;
    ck_assert_int_eq(nsq_producer_auth_reply(p, &ar), NSQ_OK);
    ck_assert_str_eq(ar.identity, "h12-user");
    ck_assert_int_eq(ar.permission_count, 2);
    publish_ok(p, "fine.b", "also");

    char err[512];
    publish_fails(p, "nope", VIA_SYNC, NSQ_E_UNAUTHORIZED, err, sizeof err);
    ck_assert_str_eq(err,
                     "E_UNAUTHORIZED AUTH failed for PUB on \"nope\" \"\"");
    publish_ok(p, "ok_a", "after");
    nsq_iov_t iov[2] = {{"a", 1}, {"b", 1}};
    ck_assert_int_eq(
        nsq_producer_multi_publish(p, "nope", iov, 2, err, sizeof err),
        NSQ_E_UNAUTHORIZED);
    ck_assert_str_eq(err,
                     "E_UNAUTHORIZED AUTH failed for MPUB on \"nope\" \"\"");
    ck_assert_int_eq(
        nsq_producer_deferred_publish(p, "nope", 10, "d", 1, err, sizeof err),
        NSQ_E_UNAUTHORIZED);
    ck_assert_str_eq(err,
                     "E_UNAUTHORIZED AUTH failed for DPUB on \"nope\" \"\"");
    publish_fails(p, "nope", VIA_ASYNC, NSQ_E_UNAUTHORIZED, err, sizeof err);
    publish_ok(p, "fine.b", "last");

    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.rejected, 4);
    ck_assert_uint_eq(s.published, 4);
    ck_assert_uint_eq(s.connects, 5);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    ck_assert_uint_eq(nsq_testd_count(t, "nope"), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "ok_a"), 2);
    ck_assert_uint_eq(nsq_testd_count(t, "fine.b"), 2);
    assert_message(t, "ok_a", 1, "after", 5, 0);
    assert_message(t, "fine.b", 1, "last", 4, 0);
    assert_log_clean(&log, "AUTH");
    logrec_free(&log);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* A fake broker: malformed compressed bytes, TLS capped at 1.2             */
/* ------------------------------------------------------------------------ */

typedef enum fake_mode {
    FAKE_SNAPPY_GARBAGE,      /* snappy granted, then no stream identifier */
    FAKE_SNAPPY_BAD_CRC,      /* snappy granted, then a chunk with a bad CRC */
    FAKE_DEFLATE_GARBAGE,     /* deflate granted, then an invalid block */
    FAKE_GARBAGE_AFTER_READY, /* a valid snappy OK; garbage after a PUB */
    FAKE_TLS12,               /* tls_v1 granted, the handshake capped at 1.2 */
} fake_mode_t;

typedef struct fake {
    fake_mode_t mode;
    int lfd;
    uint16_t port;
    char addr[32];
    pthread_t th;
    /* Written by the thread, read after the join. */
    char err[256];        /* the fake's own failure, "" if none */
    bool identified;      /* it read the magic and IDENTIFY */
    bool granted;         /* the reply granted what the mode needs */
    bool handshake_ok;    /* FAKE_TLS12: SSL_accept succeeded */
    char handshake[256];  /* FAKE_TLS12: why it failed */
    char pub[64];         /* FAKE_TLS12: the body of the PUB answered */
    bool saw_client_data; /* FAKE_GARBAGE_AFTER_READY: the PUB arrived */
} fake_t;

static bool fake_send_frame(int fd, SSL *ssl, nsq_stream_t *z, const char *txt)
{
    nsq_buf_t f = {0}, w = {0};
    bool ok =
        nsq_frame_encode(&f, NSQ_FRAME_RESPONSE, txt, strlen(txt)) == NSQ_OK;
    const nsq_buf_t *out = &f;
    if (ok && z) {
        ok = nsq_stream_compress(z, f.data, f.len, &w) == NSQ_OK;
        out = &w;
    }
    if (ok)
        ok = ssl ? SSL_write(ssl, out->data, (int)out->len) == (int)out->len
                 : tt_send_all(fd, out->data, out->len);
    nsq_buf_free(&f);
    nsq_buf_free(&w);
    return ok;
}

/* Waits for the client to close (or the timeout). */
static void fake_drain(int fd, SSL *ssl)
{
    char buf[4096];
    for (;;) {
        ssize_t n =
            ssl ? SSL_read(ssl, buf, sizeof buf) : recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return;
    }
}

/* FAKE_TLS12 after the IDENTIFY reply: the handshake, OK, and one PUB. */
static void fake_tls12(fake_t *f, int fd)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *ssl = NULL;
    if (!ctx ||
        SSL_CTX_use_certificate_chain_file(ctx, cert("server.pem")) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cert("server.key"),
                                    SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        !(ssl = SSL_new(ctx)) || SSL_set_fd(ssl, fd) != 1) {
        snprintf(f->err, sizeof f->err, "fake: cannot set up TLS");
        goto out;
    }
    ERR_clear_error();
    if (SSL_accept(ssl) != 1) {
        unsigned long e = ERR_get_error();
        if (e)
            ERR_error_string_n(e, f->handshake, sizeof f->handshake);
        goto out;
    }
    f->handshake_ok = true;
    if (!fake_send_frame(fd, ssl, NULL, "OK")) {
        snprintf(f->err, sizeof f->err, "fake: cannot send OK");
        goto out;
    }
    /* One command: "PUB <topic>\n" [size] [body]. */
    char in[256];
    size_t have = 0;
    for (;;) {
        char *nl = memchr(in, '\n', have);
        if (nl) {
            size_t head = (size_t)(nl - in) + 1;
            if (have >= head + 4) {
                uint32_t n = ((uint32_t)(unsigned char)nl[1] << 24) |
                             ((uint32_t)(unsigned char)nl[2] << 16) |
                             ((uint32_t)(unsigned char)nl[3] << 8) |
                             (uint32_t)(unsigned char)nl[4];
                if (n >= sizeof f->pub || head + 4 + n > sizeof in) {
                    snprintf(f->err, sizeof f->err, "fake: PUB too big");
                    goto out;
                }
                if (have >= head + 4 + n) {
                    memcpy(f->pub, nl + 5, n);
                    f->pub[n] = '\0';
                    break;
                }
            }
        }
        if (have == sizeof in) {
            snprintf(f->err, sizeof f->err, "fake: command too long");
            goto out;
        }
        int n = SSL_read(ssl, in + have, (int)(sizeof in - have));
        if (n <= 0) {
            snprintf(f->err, sizeof f->err, "fake: no PUB");
            goto out;
        }
        have += (size_t)n;
    }
    if (!fake_send_frame(fd, ssl, NULL, "OK")) {
        snprintf(f->err, sizeof f->err, "fake: cannot answer the PUB");
        goto out;
    }
    fake_drain(fd, ssl);
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static void fake_serve(fake_t *f, int fd)
{
    char magic[4], verb[9], size[4];
    if (!tt_recv_exact(fd, magic, 4, WAIT_MS) || memcmp(magic, "  V2", 4) ||
        !tt_recv_exact(fd, verb, 9, WAIT_MS) || memcmp(verb, "IDENTIFY\n", 9) ||
        !tt_recv_exact(fd, size, 4, WAIT_MS)) {
        snprintf(f->err, sizeof f->err, "fake: no magic and IDENTIFY");
        return;
    }
    uint32_t n = ((uint32_t)(unsigned char)size[0] << 24) |
                 ((uint32_t)(unsigned char)size[1] << 16) |
                 ((uint32_t)(unsigned char)size[2] << 8) |
                 (uint32_t)(unsigned char)size[3];
    char body[4096];
    if (n > sizeof body || !tt_recv_exact(fd, body, n, WAIT_MS)) {
        snprintf(f->err, sizeof f->err, "fake: IDENTIFY body");
        return;
    }
    f->identified = true;

    /* nsqd's answer, from the codec's server side. */
    nsq_broker_info_t info;
    nsq_broker_info_default(&info);
    info.tls_enabled = f->mode == FAKE_TLS12;
    nsq_identify_settings_t s;
    nsq_identify_settings_init(&s, &info);
    nsq_buf_t reply = {0};
    nsq_err_t rc = nsq_identify_apply(body, n, &info, &s, &reply);
    switch (f->mode) {
    case FAKE_TLS12:
        f->granted = s.tls_v1 && !s.snappy && !s.deflate;
        break;
    case FAKE_DEFLATE_GARBAGE:
        f->granted = s.deflate && !s.tls_v1;
        break;
    default:
        f->granted = s.snappy && !s.tls_v1;
        break;
    }
    nsq_identify_settings_free(&s);
    char *txt = NULL;
    if (rc == NSQ_OK && (txt = malloc(reply.len + 1)) != NULL) {
        memcpy(txt, reply.data, reply.len);
        txt[reply.len] = '\0';
    }
    nsq_buf_free(&reply);
    if (!txt || !fake_send_frame(fd, NULL, NULL, txt)) {
        free(txt);
        snprintf(f->err, sizeof f->err, "fake: IDENTIFY reply (%s)",
                 nsq_err2name(rc));
        return;
    }
    free(txt);

    static const char no_identifier[] = "this is not snappy framing";
    /* The stream identifier, then an uncompressed chunk ("OK" frame)
     * whose masked CRC-32C is zero, which is wrong for that data. */
    static const char bad_crc[] = "\xff\x06\x00\x00sNaPpY"
                                  "\x01\x0e\x00\x00\x00\x00\x00\x00"
                                  "\x00\x00\x00\x06\x00\x00\x00\x00OK";
    /* BFINAL 1, BTYPE 11: a block type DEFLATE reserves. */
    static const char bad_deflate[] = "\xff\xff\xff\xff\xff\xff\xff\xff";
    /* After a valid stream: a reserved unskippable chunk type. */
    static const char reserved_chunk[] = "\x07\x03\x00\x00"
                                         "abc";
    switch (f->mode) {
    case FAKE_SNAPPY_GARBAGE:
        tt_send_all(fd, no_identifier, sizeof no_identifier - 1);
        break;
    case FAKE_SNAPPY_BAD_CRC:
        tt_send_all(fd, bad_crc, sizeof bad_crc - 1);
        break;
    case FAKE_DEFLATE_GARBAGE:
        tt_send_all(fd, bad_deflate, sizeof bad_deflate - 1);
        break;
    case FAKE_GARBAGE_AFTER_READY: {
        nsq_stream_t *z = nsq_stream_new(NSQ_STREAM_SNAPPY, 0, 0);
        bool ok = z && fake_send_frame(fd, NULL, z, "OK");
        nsq_stream_destroy(z);
        if (!ok) {
            snprintf(f->err, sizeof f->err, "fake: compressed OK");
            return;
        }
        char c;
        f->saw_client_data = recv(fd, &c, 1, 0) == 1;
        tt_send_all(fd, reserved_chunk, sizeof reserved_chunk - 1);
        break;
    }
    case FAKE_TLS12:
        fake_tls12(f, fd);
        return;
    }
    fake_drain(fd, NULL);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    struct pollfd pfd = {.fd = f->lfd, .events = POLLIN};
    int fd = -1;
    if (poll(&pfd, 1, WAIT_MS) == 1)
        fd = accept(f->lfd, NULL, NULL);
    /* One connection only: a reconnect is refused at once. */
    close(f->lfd);
    if (fd < 0) {
        snprintf(f->err, sizeof f->err, "fake: no connection");
        return NULL;
    }
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    fake_serve(f, fd);
    close(fd);
    return NULL;
}

static void fake_start(fake_t *f, fake_mode_t mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->lfd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    snprintf(f->addr, sizeof f->addr, "127.0.0.1:%u", (unsigned)f->port);
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_join(fake_t *f)
{
    ck_assert_int_eq(pthread_join(f->th, NULL), 0);
    ck_assert_msg(f->err[0] == '\0', "%s", f->err);
    ck_assert(f->identified);
    ck_assert(f->granted);
}

/* Malformed compressed bytes during the handshake: the waiting publish
 * fails at once as never processed, the producer survives, and a later
 * publish (the fake is gone) also ends promptly. */
START_TEST(test_fake_malformed_handshake)
{
    static const fake_mode_t modes[] = {
        FAKE_SNAPPY_GARBAGE, FAKE_SNAPPY_BAD_CRC, FAKE_DEFLATE_GARBAGE};
    fake_t f;
    fake_start(&f, modes[_i]);
    kvs_t kv = {0};
    kv_add(&kv, modes[_i] == FAKE_DEFLATE_GARBAGE ? "deflate" : "snappy",
           "true");
    logrec_t log;
    logrec_init(&log);
    nsq_producer_t *p = producer_make(f.addr, kv.kv, &log);
    char err[512] = "";
    /* Promptly: by the failed handshake, not by publish_timeout (which
     * would have been NSQ_ERR_TIMED_OUT). */
    nsq_err_t rc = nsq_producer_publish(p, "garbage", "x", 1, err, sizeof err);
    printf("malformed %d: %s (%s)\n", _i, nsq_err2name(rc), err);
    ck_assert_msg(rc == NSQ_ERR_CONNECT || rc == NSQ_ERR_COMPRESSION, "%s (%s)",
                  nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "compressed data from nsqd") != NULL, "%s", err);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 0);
    ck_assert_uint_eq(s.connect_failures, 1);
    ck_assert_uint_eq(s.not_sent, 1);

    /* The fake took one connection: the next attempt is refused. */
    publish_fails_anew(p, "garbage", VIA_SYNC, NSQ_ERR_CONNECT, err,
                       sizeof err);
    ck_assert_uint_eq(pstats(p).timed_out, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    fake_join(&f);
    ck_assert(logrec_has(&log, "compressed data from nsqd"));
    logrec_free(&log);
}
END_TEST

/* Malformed compressed bytes on a ready connection, after a PUB was
 * written: that PUB is in doubt, the connection is dropped. */
START_TEST(test_fake_malformed_ready)
{
    fake_t f;
    fake_start(&f, FAKE_GARBAGE_AFTER_READY);
    static const char *const kv[] = {"snappy", "true", NULL};
    nsq_producer_t *p = producer_make(f.addr, kv, NULL);
    char err[512] = "";
    /* By the broken frame (in doubt), not by publish_timeout. */
    nsq_err_t rc = nsq_producer_publish(p, "garbage", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_IN_DOUBT, "%s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "compressed data from nsqd") != NULL, "%s", err);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.connects, 1);
    ck_assert_uint_eq(s.disconnects, 1);
    ck_assert_uint_eq(s.in_doubt, 1);
    ck_assert_uint_eq(s.published, 0);
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    fake_join(&f);
    ck_assert(f.saw_client_data);
}
END_TEST

/* A broker whose TLS stops at 1.2: tls_min_version tls1.3 refuses it,
 * the default (tls1.2) connects. */
START_TEST(test_fake_tls12)
{
    bool min13 = _i == 0;
    fake_t f;
    fake_start(&f, FAKE_TLS12);
    kvs_t kv = {0};
    kv_add(&kv, "tls_v1", "true");
    kv_add(&kv, "tls_root_ca_file", cert("ca.pem"));
    if (min13)
        kv_add(&kv, "tls_min_version", "tls1.3");
    nsq_producer_t *p = producer_make(f.addr, kv.kv, NULL);
    char err[512] = "";
    nsq_err_t rc =
        nsq_producer_publish(p, "capped", "tls12", 5, err, sizeof err);
    if (min13) {
        printf("tls1.3 against 1.2: %s (%s)\n", nsq_err2name(rc), err);
        ck_assert_msg(rc == NSQ_ERR_TLS, "%s (%s)", nsq_err2name(rc), err);
        ck_assert_msg(strstr(err, "protocol version") != NULL, "%s", err);
        ck_assert_uint_eq(pstats(p).connects, 0);
    } else {
        ck_assert_msg(rc == NSQ_OK, "%s (%s)", nsq_err2name(rc), err);
        ck_assert_uint_eq(pstats(p).connects, 1);
    }
    ck_assert_int_eq(nsq_producer_destroy(p), NSQ_OK);
    fake_join(&f);
    ck_assert(f.handshake_ok == !min13);
    if (min13)
        ck_assert_msg(strstr(f.handshake, "unsupported protocol") != NULL,
                      "fake: %s", f.handshake);
    else
        ck_assert_str_eq(f.pub, "tls12");
}
END_TEST

/* ------------------------------------------------------------------------ */

static TCase *tls_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, TLS_CASE_TIMEOUT);
    return tc;
}

static Suite *producer_tls_suite(void)
{
    Suite *s = suite_create("producer_tls");
    TCase *tc = tls_tcase("combinations");
    tcase_add_loop_test(tc, test_combination, 0,
                        (int)(sizeof combos / sizeof combos[0]));
    tcase_add_loop_test(tc, test_rejected_inside_tls, 0, 4);
    suite_add_tcase(s, tc);

    tc = tls_tcase("verify");
    tcase_add_loop_test(tc, test_verify_ok, 0, 3);
    tcase_add_loop_test(
        tc, test_verify_fails, 0,
        (int)(sizeof verify_failures / sizeof verify_failures[0]));
    tcase_add_loop_test(
        tc, test_verify_override, 0,
        (int)(sizeof verify_overrides / sizeof verify_overrides[0]));
    tcase_add_loop_test(tc, test_client_cert, 0, 2);
    tcase_add_loop_test(tc, test_no_downgrade, 0, 2);
    suite_add_tcase(s, tc);

    tc = tls_tcase("compression");
    tcase_add_loop_test(tc, test_compression_disabled, 0, 4);
    tcase_add_test(tc, test_conf_refused);
    suite_add_tcase(s, tc);

    tc = tls_tcase("auth");
    tcase_add_loop_test(tc, test_auth_wrong_secret, 0, 3);
    tcase_add_test(tc, test_auth_no_secret);
    tcase_add_test(tc, test_auth_not_required);
    tcase_add_test(tc, test_auth_permissions);
    suite_add_tcase(s, tc);

    tc = tls_tcase("fake_broker");
    tcase_add_loop_test(tc, test_fake_malformed_handshake, 0, 3);
    tcase_add_test(tc, test_fake_malformed_ready);
    tcase_add_loop_test(tc, test_fake_tls12, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

static bool make_dir(char *dir, size_t len, char *err, size_t errlen)
{
    snprintf(dir, len, "/tmp/nsqpub-ptls-XXXXXX");
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "mkdtemp failed");
        dir[0] = '\0';
        return false;
    }
    return certs_make(dir, err, errlen);
}

int main(void)
{
    /* The fake broker writes to sockets the producer may have closed. */
    signal(SIGPIPE, SIG_IGN);
    char err[256] = "";
    int rc = EXIT_FAILURE;
    if (!make_dir(g_dir, sizeof g_dir, err, sizeof err) ||
        !make_dir(g_dir2, sizeof g_dir2, err, sizeof err))
        fprintf(stderr, "certificates: %s\n", err);
    else
        rc = run_suite(producer_tls_suite());
    if (g_dir[0])
        certs_remove(g_dir);
    if (g_dir2[0])
        certs_remove(g_dir2);
    return rc;
}
