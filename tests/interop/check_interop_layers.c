/*
 * The connection layers against a real nsqd: TLS with a client
 * certificate that nsqd verifies, TLS required, snappy, deflate, and AUTH
 * through nsqd's --auth-http-address pointing at the case's auth server.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "certs.h"
#include "interop.h"
#include "producer_testutil.h"

/* n bodies "<prefix>-<i>" followed by every byte value, published sync. */
enum { N_LAYER = 50 };
static void publish_bodies(nsq_producer_t *p, const char *topic,
                           const char *prefix, unsigned char (*bodies)[300],
                           size_t *lens)
{
    char err[256] = "";
    for (size_t i = 0; i < N_LAYER; i++) {
        int n = snprintf((char *)bodies[i], 40, "%s-%zu:", prefix, i);
        for (size_t b = 0; b < 256; b++)
            bodies[i][n + b] = (unsigned char)(b * 3 + i);
        lens[i] = (size_t)n + 256;
        ASSERT_RESULT(
            nsq_producer_publish(p, topic, bodies[i], lens[i], err, sizeof err),
            err, NSQ_OK, "");
    }
}

/* Reads the bodies back in order and compares them byte for byte. */
static void assert_bodies(const it_nsqd_t *d, const char *topic,
                          unsigned char (*bodies)[300], const size_t *lens)
{
    it_msg_t *got;
    size_t k = it_consume(d, topic, N_LAYER, &got);
    ck_assert_uint_eq(k, N_LAYER);
    for (size_t i = 0; i < N_LAYER; i++) {
        ck_assert_uint_eq(got[i].len, lens[i]);
        ck_assert_mem_eq(got[i].body, bodies[i], lens[i]);
    }
    it_msgs_free(got, k);
}

/* ------------------------------------------------------------ TLS */

typedef struct tls_env {
    char dir[512];
    char ca[600], cert[600], key[600], ccert[600], ckey[600];
    char f_cert[700], f_key[700], f_ca[700];
} tls_env_t;

static void tls_env(tls_env_t *e)
{
    char err[256] = "";
    it_mkdir(e->dir, sizeof e->dir, "certs");
    ck_assert_msg(certs_make(e->dir, err, sizeof err), "certs: %s", err);
    certs_path(e->ca, sizeof e->ca, e->dir, "ca.pem");
    certs_path(e->cert, sizeof e->cert, e->dir, "server.pem");
    certs_path(e->key, sizeof e->key, e->dir, "server.key");
    certs_path(e->ccert, sizeof e->ccert, e->dir, "client.pem");
    certs_path(e->ckey, sizeof e->ckey, e->dir, "client.key");
    snprintf(e->f_cert, sizeof e->f_cert, "--tls-cert=%s", e->cert);
    snprintf(e->f_key, sizeof e->f_key, "--tls-key=%s", e->key);
    snprintf(e->f_ca, sizeof e->f_ca, "--tls-root-ca-file=%s", e->ca);
}

/* nsqd requiring TLS on TCP (HTTP stays plain for /stats) and a client
 * certificate signed by the test CA. */
static it_nsqd_t *tls_nsqd(tls_env_t *e)
{
    tls_env(e);
    const char *flags[] = {e->f_cert,
                           e->f_key,
                           e->f_ca,
                           "--tls-required=tcp-https",
                           "--tls-client-auth-policy=require-verify",
                           NULL};
    return it_nsqd_start(flags);
}

START_TEST(tls_client_cert_verified)
{
    tls_env_t e;
    it_nsqd_t *d = tls_nsqd(&e);
    const char *kv[] = {"tls_v1",  "true",     "tls_root_ca_file",
                        e.ca,      "tls_cert", e.ccert,
                        "tls_key", e.ckey,     NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    unsigned char bodies[N_LAYER][300];
    size_t lens[N_LAYER];
    publish_bodies(p, "interop_tls", "tls", bodies, lens);
    nsq_identify_reply_t r;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &r), NSQ_OK);
    ck_assert(r.tls_v1);
    ck_assert_str_eq(r.version, "1.3.0");
    ck_assert_uint_eq(pstats(p).connects, 1);
    ck_assert_int_eq(it_topic_stats(d, "interop_tls").message_count, N_LAYER);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    certs_remove(e.dir);
}
END_TEST

/* Without a client certificate nsqd ends the handshake with OpenSSL's
 * "bad certificate" alert: nothing is published, and the publish says it
 * was never sent. */
START_TEST(tls_without_client_cert_refused)
{
    tls_env_t e;
    it_nsqd_t *d = tls_nsqd(&e);
    const char *kv[] = {"tls_v1", "true", "tls_root_ca_file", e.ca, NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    char err[256] = "";
    nsq_err_t rc =
        nsq_producer_publish(p, "interop_tls", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_ERR_TLS, "got %s (%s)", nsq_err2name(rc), err);
    ck_assert_msg(strstr(err, "alert bad certificate") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "(not sent)") != NULL, "%s", err);
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.connects, 0);
    ck_assert_uint_ge(st.connect_failures, 1);
    ck_assert_int_eq(it_topic_stats(d, "interop_tls").message_count, -1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    certs_remove(e.dir);
}
END_TEST

/* A client that does not ask for TLS gets nsqd's E_INVALID for its PUB. */
START_TEST(tls_required_plain_pub_refused)
{
    tls_env_t e;
    it_nsqd_t *d = tls_nsqd(&e);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    char err[256] = "";
    ASSERT_RESULT(
        nsq_producer_publish(p, "interop_tls", "x", 1, err, sizeof err), err,
        NSQ_E_INVALID, "E_INVALID cannot PUB in current state (TLS required)");
    ck_assert_int_eq(it_topic_stats(d, "interop_tls").message_count, -1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    certs_remove(e.dir);
}
END_TEST

/* ------------------------------------------------------------ compression */

static void compressed(const char *key)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    const char *kv[] = {key, "true", NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    unsigned char bodies[N_LAYER][300];
    size_t lens[N_LAYER];
    publish_bodies(p, "interop_compressed", key, bodies, lens);
    nsq_identify_reply_t r;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &r), NSQ_OK);
    ck_assert(strcmp(key, "snappy") == 0 ? r.snappy : r.deflate);
    ck_assert(strcmp(key, "snappy") == 0 ? !r.deflate : !r.snappy);
    if (r.deflate)
        ck_assert_int_eq(r.deflate_level, 6);
    ck_assert_uint_eq(pstats(p).published, N_LAYER);
    assert_bodies(d, "interop_compressed", bodies, lens);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}

START_TEST(snappy_round_trip)
{
    compressed("snappy");
}
END_TEST

START_TEST(deflate_round_trip)
{
    compressed("deflate");
}
END_TEST

/* TLS, then snappy, on one connection: nsqd's order. */
START_TEST(tls_then_snappy)
{
    tls_env_t e;
    it_nsqd_t *d = tls_nsqd(&e);
    const char *kv[] = {
        "tls_v1",  "true", "tls_root_ca_file", e.ca,   "tls_cert", e.ccert,
        "tls_key", e.ckey, "snappy",           "true", NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    unsigned char bodies[N_LAYER][300];
    size_t lens[N_LAYER];
    publish_bodies(p, "interop_tls_snappy", "ts", bodies, lens);
    nsq_identify_reply_t r;
    ck_assert_int_eq(nsq_producer_identify_reply(p, &r), NSQ_OK);
    ck_assert(r.tls_v1 && r.snappy);
    ck_assert_int_eq(it_topic_stats(d, "interop_tls_snappy").message_count,
                     N_LAYER);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    certs_remove(e.dir);
}
END_TEST

/* ------------------------------------------------------------ AUTH */

#define SECRET "s3cret-interop"

static it_nsqd_t *auth_nsqd(it_authd_t *a)
{
    char flag[64];
    snprintf(flag, sizeof flag, "--auth-http-address=127.0.0.1:%u",
             it_authd_port(a));
    const char *flags[] = {flag, NULL};
    return it_nsqd_start(flags);
}

static it_authd_t *authd(void)
{
    return it_authd_start(SECRET, "interop-user", "https://id.example/u",
                          "^interop_auth_ok$");
}

/* A grant: nsqd asked the auth server with the secret, the producer sees
 * the identity, and the permitted topic stores what was published. */
START_TEST(auth_grant)
{
    it_authd_t *a = authd();
    it_nsqd_t *d = auth_nsqd(a);
    const char *kv[] = {"auth_secret", SECRET, NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    unsigned char bodies[N_LAYER][300];
    size_t lens[N_LAYER];
    publish_bodies(p, "interop_auth_ok", "auth", bodies, lens);
    nsq_auth_reply_t r;
    ck_assert_int_eq(nsq_producer_auth_reply(p, &r), NSQ_OK);
    ck_assert_str_eq(r.identity, "interop-user");
    ck_assert_str_eq(r.identity_url, "https://id.example/u");
    ck_assert_int_eq(r.permission_count, 1);
    char query[1024];
    ck_assert_int_eq(it_authd_requests(a, query, sizeof query), 1);
    ck_assert_msg(strstr(query, "secret=" SECRET) != NULL, "%s", query);
    ck_assert_msg(strstr(query, "remote_ip=127.0.0.1") != NULL, "%s", query);
    ck_assert_msg(strstr(query, "tls=false") != NULL, "%s", query);
    ck_assert_int_eq(it_topic_stats(d, "interop_auth_ok").message_count,
                     N_LAYER);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    it_authd_stop(a);
}
END_TEST

/* A topic outside the grant: nsqd's E_UNAUTHORIZED, nothing stored; the
 * next publish (a new connection) to the permitted topic works. */
START_TEST(auth_denied_by_topic)
{
    it_authd_t *a = authd();
    it_nsqd_t *d = auth_nsqd(a);
    const char *kv[] = {"auth_secret", SECRET, NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    char err[256] = "";
    ASSERT_RESULT(
        nsq_producer_publish(p, "interop_auth_no", "x", 1, err, sizeof err),
        err, NSQ_E_UNAUTHORIZED,
        "E_UNAUTHORIZED AUTH failed for PUB on \"interop_auth_no\" \"\"");
    ASSERT_RESULT(
        nsq_producer_publish(p, "interop_auth_ok", "y", 1, err, sizeof err),
        err, NSQ_OK, "");
    ck_assert_int_eq(it_topic_stats(d, "interop_auth_no").message_count, -1);
    ck_assert_int_eq(it_topic_stats(d, "interop_auth_ok").message_count, 1);
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.rejected, 1);
    ck_assert_uint_eq(st.published, 1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    it_authd_stop(a);
}
END_TEST

/* A secret the auth server refuses: nsqd's E_AUTH_FAILED, and the
 * producer never completes a connection. */
START_TEST(auth_wrong_secret)
{
    it_authd_t *a = authd();
    it_nsqd_t *d = auth_nsqd(a);
    const char *kv[] = {"auth_secret", "wrong", NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    char err[256] = "";
    nsq_err_t rc =
        nsq_producer_publish(p, "interop_auth_ok", "x", 1, err, sizeof err);
    ck_assert_msg(rc == NSQ_E_AUTH_FAILED, "got %s (%s)", nsq_err2name(rc),
                  err);
    /* The PUB itself was never written: the handshake failed first. */
    char want[128];
    snprintf(want, sizeof want, "%s: E_AUTH_FAILED AUTH failed (not sent)",
             d->addr);
    ck_assert_str_eq(err, want);
    char query[1024];
    ck_assert_int_ge(it_authd_requests(a, query, sizeof query), 1);
    ck_assert_msg(strstr(query, "secret=wrong") != NULL, "%s", query);
    ck_assert_int_eq(it_topic_stats(d, "interop_auth_ok").message_count, -1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
    it_authd_stop(a);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("interop_layers");
    TCase *tc = tcase_create("layers");
    tcase_set_timeout(tc, IT_CASE_TIMEOUT);
    tcase_add_test(tc, tls_client_cert_verified);
    tcase_add_test(tc, tls_without_client_cert_refused);
    tcase_add_test(tc, tls_required_plain_pub_refused);
    tcase_add_test(tc, snappy_round_trip);
    tcase_add_test(tc, deflate_round_trip);
    tcase_add_test(tc, tls_then_snappy);
    tcase_add_test(tc, auth_grant);
    tcase_add_test(tc, auth_denied_by_topic);
    tcase_add_test(tc, auth_wrong_secret);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(suite());
}
