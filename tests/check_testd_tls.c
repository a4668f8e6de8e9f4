/*
 * The test broker's encodings: TLS (required or not, no certificate,
 * client certificate policies, minimum version, failed handshakes),
 * snappy and deflate (round trips of large bodies and MPUB, the level cap,
 * malformed input), both together, AUTH over TLS, bytes pipelined behind
 * IDENTIFY, heartbeats and the read deadline through the layers, the delay
 * fault across an encoding change, and stop with TLS connections open.
 *
 * The client is written here with OpenSSL and the codec's streams, so the
 * cases check the broker.  Certificates are made at start (certs.h).  No
 * case asserts a speed: the only upper bound on time is that stop does not
 * wait out a stop timeout of a minute.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "certs.h"
#include "nettest.h"
#include "nsq/testd.h"

#define WAIT_MS 10000
#define QUIET_MS 300
#define CASE_TIMEOUT 60
#define HB_MS 1000

static char g_dir[256];

static const char *cert(const char *name)
{
    /* A few slots, so one call's result survives the next ones. */
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    return certs_path(p, sizeof paths[0], g_dir, name);
}

/* ------------------------------------------------------------------------ */
/* The broker                                                               */
/* ------------------------------------------------------------------------ */

static nsq_testd_t *start_broker(const nsq_testd_opts_t *opts)
{
    char err[256] = "";
    nsq_testd_t *t = nsq_testd_start(opts, err, sizeof err);
    ck_assert_msg(t != NULL, "nsq_testd_start: %s", err);
    return t;
}

/* Defaults plus the localhost certificate. */
static void opts_tls(nsq_testd_opts_t *o, bool required)
{
    nsq_testd_opts_default(o);
    o->tls_cert = cert("server.pem");
    o->tls_key = cert("server.key");
    o->tls_required = required;
}

static nsq_testd_stats_t stats_of(nsq_testd_t *t)
{
    nsq_testd_stats_t st;
    nsq_testd_stats(t, &st);
    return st;
}

/* The errors counter once every connection has ended. */
static uint64_t errors_when_idle(nsq_testd_t *t)
{
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    return stats_of(t).errors;
}

static void expect_record(nsq_testd_t *t, const char *topic, size_t index,
                          const void *body, size_t len)
{
    nsq_testd_msg_t m;
    ck_assert_msg(nsq_testd_message(t, topic, index, &m), "no %s[%zu]", topic,
                  index);
    ck_assert_uint_eq(m.len, len);
    ck_assert(memcmp(m.body, body, len) == 0);
    nsq_testd_msg_free(&m);
}

/* ------------------------------------------------------------------------ */
/* The client: socket, then TLS, then compression                           */
/* ------------------------------------------------------------------------ */

typedef struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nsq_stream_t *comp;
    nsq_frame_reader_t *r;
    int32_t type;   /* the last frame ... */
    nsq_buf_t data; /* ... and a copy of its data */
    bool closed;
} client_t;

/* How the client does TLS. */
typedef struct tls_client {
    const char *cert, *key; /* a client certificate, or NULL */
    const char *ca;         /* verify the broker against this CA ... */
    const char *host;       /* ... and this name (NULL: no verification) */
    int max_version;        /* 0: OpenSSL's highest */
} tls_client_t;

static const tls_client_t no_verify = {0};

static client_t *cl_open(nsq_testd_t *t)
{
    client_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->fd = tt_connect(nsq_testd_port(t));
    ck_assert_int_ge(c->fd, 0);
    c->r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(c->r);
    /* OpenSSL reads the socket itself: bound its waits. */
    struct timeval tv = {WAIT_MS / 1000, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_magic(&b), NSQ_OK);
    ck_assert(tt_send_all(c->fd, b.data, b.len));
    nsq_buf_free(&b);
    return c;
}

static void cl_free(client_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    nsq_stream_destroy(c->comp);
    nsq_frame_reader_destroy(c->r);
    nsq_buf_free(&c->data);
    close(c->fd);
    free(c);
}

static SSL_CTX *client_ctx(const tls_client_t *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(ctx);
    if (o->max_version)
        SSL_CTX_set_max_proto_version(ctx, o->max_version);
    /* OpenSSL 3 offers versions below 1.2 only at security level 0; the
     * broker, not the client, is to refuse them. */
    if (o->max_version && o->max_version < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    if (o->cert) {
        ck_assert_int_eq(
            SSL_CTX_use_certificate_file(ctx, o->cert, SSL_FILETYPE_PEM), 1);
        ck_assert_int_eq(
            SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM), 1);
    }
    if (o->ca)
        ck_assert_int_eq(SSL_CTX_load_verify_locations(ctx, o->ca, NULL), 1);
    SSL_CTX_set_verify(ctx, o->host ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* The TLS handshake on the connection; false if it failed, with OpenSSL's
 * verification result in *verify (X509_V_OK when it was not the cause). */
static bool cl_tls(client_t *c, const tls_client_t *o, long *verify)
{
    c->ctx = client_ctx(o);
    c->ssl = SSL_new(c->ctx);
    ck_assert_ptr_nonnull(c->ssl);
    struct in_addr ip;
    if (o->host && inet_pton(AF_INET, o->host, &ip) == 1)
        ck_assert_int_eq(
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host), 1);
    else if (o->host)
        ck_assert_int_eq(SSL_set1_host(c->ssl, o->host), 1);
    ck_assert_int_eq(SSL_set_fd(c->ssl, c->fd), 1);
    bool ok = SSL_connect(c->ssl) == 1;
    if (verify)
        *verify = SSL_get_verify_result(c->ssl);
    ERR_clear_error();
    return ok;
}

/* Writes bytes below compression (through TLS if on). */
static bool cl_write_wire(client_t *c, const void *data, size_t len)
{
    if (!c->ssl)
        return tt_send_all(c->fd, data, len);
    const char *p = data;
    while (len) {
        int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n <= 0) {
            ERR_clear_error();
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Writes command bytes through every layer and frees b. */
static void cl_send(client_t *c, nsq_buf_t *b)
{
    nsq_buf_t enc = {0};
    const char *p = b->data;
    size_t len = b->len;
    if (c->comp) {
        ck_assert_int_eq(nsq_stream_compress(c->comp, p, len, &enc), NSQ_OK);
        p = enc.data;
        len = enc.len;
    }
    ck_assert(cl_write_wire(c, p, len));
    nsq_buf_free(&enc);
    nsq_buf_free(b);
}

/* Bytes from below compression: >0, 0 on timeout, -1 once closed. */
static ssize_t cl_read_wire(client_t *c, char *buf, size_t len, int ms)
{
    if (!c->ssl || SSL_pending(c->ssl) == 0) {
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, ms) <= 0)
            return 0;
    }
    if (!c->ssl) {
        ssize_t n = recv(c->fd, buf, len, 0);
        return n > 0 ? n : -1;
    }
    int n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    ERR_clear_error();
    return n > 0 ? n : -1;
}

static void cl_feed(client_t *c, const char *p, size_t len)
{
    nsq_buf_t dec = {0};
    if (c->comp) {
        ck_assert_msg(nsq_stream_decompress(c->comp, p, len, &dec) == NSQ_OK,
                      "bad compressed data from the broker: %s",
                      nsq_stream_errstr(c->comp));
        p = dec.data;
        len = dec.len;
    }
    if (len)
        ck_assert_int_eq(nsq_frame_reader_feed(c->r, p, len), NSQ_OK);
    nsq_buf_free(&dec);
}

/* The next frame within ms: 1 (type, data), 0 nothing, -1 closed. */
static int cl_next(client_t *c, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        nsq_frame_t f;
        int rc = nsq_frame_reader_next(c->r, &f);
        ck_assert_msg(rc >= 0, "bad frame: %s", nsq_frame_reader_errstr(c->r));
        if (rc == 1) {
            c->type = f.type;
            c->data.len = 0;
            ck_assert_int_eq(nsq_buf_append(&c->data, f.data, f.len), NSQ_OK);
            ck_assert_int_eq(nsq_buf_append(&c->data, "", 1), NSQ_OK);
            c->data.len--;
            return 1;
        }
        if (c->closed)
            return -1;
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return 0;
        char buf[65536];
        ssize_t n = cl_read_wire(c, buf, sizeof buf, (int)left);
        if (n < 0)
            c->closed = true;
        else if (n > 0)
            cl_feed(c, buf, (size_t)n);
    }
}

static void expect_frame(client_t *c, int32_t type, const char *text)
{
    int rc = cl_next(c, WAIT_MS);
    ck_assert_msg(rc == 1, "waiting for '%s': %s", text,
                  rc ? "closed" : "nothing");
    ck_assert_msg(c->type == type && strcmp(c->data.data, text) == 0 &&
                      c->data.len == strlen(text),
                  "expected %d '%s', got %d '%s'", (int)type, text,
                  (int)c->type, c->data.data);
}

static void expect_ok(client_t *c)
{
    expect_frame(c, NSQ_FRAME_RESPONSE, "OK");
}

/* The broker closes without another frame. */
static void expect_eof(client_t *c)
{
    int rc = cl_next(c, WAIT_MS);
    ck_assert_msg(rc == -1, "expected a close, got %s '%s'",
                  rc ? "a frame" : "nothing", rc ? c->data.data : "");
}

/* Starts compression in both directions; bytes the frame reader holds
 * beyond the last frame are already compressed. */
static void cl_compress(client_t *c, nsq_stream_kind_t kind, int level)
{
    c->comp = nsq_stream_new(kind, level, 0);
    ck_assert_ptr_nonnull(c->comp);
    nsq_buf_t rest = {0};
    ck_assert_int_eq(nsq_frame_reader_drain(c->r, &rest), NSQ_OK);
    cl_feed(c, rest.data, rest.len);
    nsq_buf_free(&rest);
}

typedef struct want {
    bool tls, snappy, deflate;
    int level;  /* deflate level asked */
    int64_t hb; /* heartbeat interval, 0: the default */
} want_t;

static void cl_identify(client_t *c, const want_t *w)
{
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.tls_v1 = w->tls;
    id.snappy = w->snappy;
    id.deflate = w->deflate;
    id.deflate_level = w->level;
    if (w->hb)
        id.heartbeat_interval = w->hb;
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    cl_send(c, &b);
}

static void expect_identify_reply(client_t *c, nsq_identify_reply_t *rep)
{
    ck_assert_int_eq(cl_next(c, WAIT_MS), 1);
    ck_assert_int_eq(c->type, NSQ_FRAME_RESPONSE);
    ck_assert_int_eq(
        nsq_identify_reply_parse(c->data.data, c->data.len, rep, NULL, 0),
        NSQ_OK);
    ck_assert(rep->negotiated);
}

/* Once the IDENTIFY reply is in: TLS and its OK, compression and its OK,
 * as the reply granted them. */
static void cl_upgrade(client_t *c, const nsq_identify_reply_t *rep,
                       const tls_client_t *o)
{
    if (rep->tls_v1) {
        /* Nothing may follow the reply before the handshake. */
        ck_assert_uint_eq(nsq_frame_reader_pending(c->r), 0);
        ck_assert(cl_tls(c, o, NULL));
        expect_ok(c);
    }
    if (rep->snappy || rep->deflate) {
        cl_compress(c, rep->snappy ? NSQ_STREAM_SNAPPY : NSQ_STREAM_DEFLATE,
                    rep->deflate ? (int)rep->deflate_level : 6);
        expect_ok(c);
    }
}

/* A client that has identified with w and upgraded; rep may be NULL. */
static client_t *cl_ready(nsq_testd_t *t, const want_t *w,
                          const tls_client_t *o, nsq_identify_reply_t *rep)
{
    nsq_identify_reply_t r;
    if (!rep)
        rep = &r;
    client_t *c = cl_open(t);
    cl_identify(c, w);
    expect_identify_reply(c, rep);
    ck_assert(rep->tls_v1 == w->tls);
    ck_assert(rep->snappy == w->snappy);
    ck_assert(rep->deflate == w->deflate);
    cl_upgrade(c, rep, o);
    return c;
}

static void cl_pubn(client_t *c, const char *topic, const void *body,
                    size_t len)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_pub(&b, topic, body, len, NULL), NSQ_OK);
    cl_send(c, &b);
}

static void cl_pub(client_t *c, const char *topic, const char *body)
{
    cl_pubn(c, topic, body, strlen(body));
}

/* 1 MiB (nsqd's default max_msg_size): a random half that compression
 * cannot shrink and a repetitive half that it can. */
static char *big_body(size_t len)
{
    char *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < len / 2; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (char)x;
    }
    for (size_t i = len / 2; i < len; i++)
        b[i] = "nsqpub compresses this. "[i % 24];
    return b;
}

/* PUB, PUB 1 MiB, MPUB (3) on c: every message recorded intact. */
static void round_trip(nsq_testd_t *t, client_t *c, const char *topic)
{
    const size_t big = 1048576;
    char *body = big_body(big);
    cl_pub(c, topic, "small");
    expect_ok(c);
    cl_pubn(c, topic, body, big);
    expect_ok(c);
    nsq_iov_t msgs[3] = {{"m1", 2}, {body, 100000}, {body + big / 2, 70000}};
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_mpub(&b, topic, msgs, 3, NULL), NSQ_OK);
    cl_send(c, &b);
    expect_ok(c);
    ck_assert_uint_eq(nsq_testd_count(t, topic), 5);
    expect_record(t, topic, 0, "small", 5);
    expect_record(t, topic, 1, body, big);
    for (size_t i = 0; i < 3; i++)
        expect_record(t, topic, 2 + i, msgs[i].base, msgs[i].len);
    free(body);
}

/* ------------------------------------------------------------------------ */
/* TLS                                                                      */
/* ------------------------------------------------------------------------ */

/* With tls_required only IDENTIFY passes before TLS; after it, all do. */
START_TEST(tls_required)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    nsq_testd_t *t = start_broker(&o);
    static const char want_err[] =
        "E_INVALID cannot PUB in current state (TLS required)";

    client_t *c = cl_open(t);
    cl_pub(c, "t", "x");
    expect_frame(c, NSQ_FRAME_ERROR, want_err);
    expect_eof(c);
    cl_free(c);

    /* IDENTIFY without tls_v1: answered, then the same refusal. */
    const want_t plain = {0};
    c = cl_ready(t, &plain, NULL, NULL);
    cl_pub(c, "t", "x");
    expect_frame(c, NSQ_FRAME_ERROR, want_err);
    expect_eof(c);
    cl_free(c);

    const want_t tls = {.tls = true};
    c = cl_ready(t, &tls, &no_verify, NULL);
    cl_pub(c, "t", "over tls");
    expect_ok(c);
    cl_free(c);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 1);
    expect_record(t, "t", 0, "over tls", 8);
    ck_assert_uint_eq(errors_when_idle(t), 2);
    nsq_testd_destroy(t);
}
END_TEST

/* Without tls_required both kinds of client are served. */
START_TEST(tls_optional)
{
    nsq_testd_opts_t o;
    opts_tls(&o, false);
    nsq_testd_t *t = start_broker(&o);
    client_t *c = cl_open(t);
    cl_pub(c, "t", "plain");
    expect_ok(c);
    cl_free(c);
    const want_t tls = {.tls = true};
    nsq_identify_reply_t rep;
    c = cl_ready(t, &tls, &no_verify, &rep);
    ck_assert(rep.tls_v1);
    ck_assert_int_ge(SSL_version(c->ssl), TLS1_2_VERSION);
    cl_pub(c, "t", "tls");
    expect_ok(c);
    cl_free(c);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 2);
    expect_record(t, "t", 1, "tls", 3);
    ck_assert_uint_eq(errors_when_idle(t), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* No certificate: tls_v1 is refused in the reply and the connection stays
 * plain, even if info.tls_enabled was set by hand. */
START_TEST(tls_without_certificate)
{
    for (int i = 0; i < 2; i++) {
        nsq_testd_opts_t o;
        nsq_testd_opts_default(&o);
        o.info.tls_enabled = i == 1;
        nsq_testd_t *t = start_broker(&o);
        client_t *c = cl_open(t);
        const want_t w = {.tls = true};
        cl_identify(c, &w);
        nsq_identify_reply_t rep;
        expect_identify_reply(c, &rep);
        ck_assert(!rep.tls_v1);
        ck_assert(!rep.snappy && !rep.deflate);
        cl_pub(c, "t", "still plain");
        expect_ok(c);
        cl_free(c);
        expect_record(t, "t", 0, "still plain", 11);
        nsq_testd_destroy(t);
    }
}
END_TEST

/* Settings the broker cannot honour are refused at start, with a reason. */
START_TEST(tls_start_errors)
{
    static const struct {
        const char *cert, *key, *policy, *ca, *min;
        bool required;
        const char *reason;
    } bad[] = {
        {NULL, NULL, NULL, NULL, NULL, true, "without tls_cert"},
        {"server.pem", NULL, NULL, NULL, NULL, false, "go together"},
        {NULL, "server.key", NULL, NULL, NULL, false, "go together"},
        {"nosuch.pem", "server.key", NULL, NULL, NULL, false, "tls_cert"},
        {"server.pem", "nosuch.key", NULL, NULL, NULL, false, "tls_key"},
        {"server.pem", "client.key", NULL, NULL, NULL, false, "tls_key"},
        {"server.pem", "server.key", "require", NULL, NULL, false,
         "tls_root_ca"},
        {"server.pem", "server.key", "request", NULL, NULL, false,
         "tls_root_ca"},
        {"server.pem", "server.key", "sometimes", "ca.pem", NULL, false,
         "none, request or require"},
        {"server.pem", "server.key", NULL, "nosuch.pem", NULL, false,
         "tls_root_ca"},
        {"server.pem", "server.key", NULL, NULL, "tls1.4", false,
         "tls_min_version"},
        {NULL, NULL, "require", "ca.pem", NULL, false, "without tls_cert"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nsq_testd_opts_t o;
        nsq_testd_opts_default(&o);
        char p[5][512];
        o.tls_cert =
            bad[i].cert ? certs_path(p[0], 512, g_dir, bad[i].cert) : NULL;
        o.tls_key =
            bad[i].key ? certs_path(p[1], 512, g_dir, bad[i].key) : NULL;
        o.tls_client_auth = bad[i].policy;
        o.tls_root_ca =
            bad[i].ca ? certs_path(p[2], 512, g_dir, bad[i].ca) : NULL;
        o.tls_min_version = bad[i].min;
        o.tls_required = bad[i].required;
        char err[512] = "";
        nsq_testd_t *t = nsq_testd_start(&o, err, sizeof err);
        ck_assert_msg(t == NULL, "case %zu started", i);
        ck_assert_msg(strstr(err, bad[i].reason) != NULL,
                      "case %zu: '%s' lacks '%s'", i, err, bad[i].reason);
    }
}
END_TEST

/* The generated certificates are what certs.h says, seen by a verifying
 * client: the localhost one verifies by name and by IP, the others fail
 * for their own reason. */
START_TEST(tls_certificates_verify)
{
    static const struct {
        const char *base, *host;
        long verify;
    } cases[] = {
        {"server", "localhost", X509_V_OK},
        {"server", "127.0.0.1", X509_V_OK},
        {"expired", "localhost", X509_V_ERR_CERT_HAS_EXPIRED},
        {"wronghost", "localhost", X509_V_ERR_HOSTNAME_MISMATCH},
        {"wronghost", "wrong.example", X509_V_OK},
        {"selfsigned", "localhost", X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pem[64], key[64];
        snprintf(pem, sizeof pem, "%s.pem", cases[i].base);
        snprintf(key, sizeof key, "%s.key", cases[i].base);
        nsq_testd_opts_t o;
        nsq_testd_opts_default(&o);
        o.tls_cert = cert(pem);
        o.tls_key = cert(key);
        nsq_testd_t *t = start_broker(&o);
        client_t *c = cl_open(t);
        const want_t w = {.tls = true};
        cl_identify(c, &w);
        nsq_identify_reply_t rep;
        expect_identify_reply(c, &rep);
        ck_assert(rep.tls_v1);
        tls_client_t tc = {.ca = cert("ca.pem"), .host = cases[i].host};
        long verify = -1;
        bool ok = cl_tls(c, &tc, &verify);
        ck_assert_msg(ok == (cases[i].verify == X509_V_OK),
                      "%s as %s: handshake %d", cases[i].base, cases[i].host,
                      ok);
        ck_assert_msg(verify == cases[i].verify, "%s as %s: verify %ld (%s)",
                      cases[i].base, cases[i].host, verify,
                      X509_verify_cert_error_string(verify));
        if (ok) {
            expect_ok(c);
            cl_pub(c, "t", "verified");
            expect_ok(c);
        }
        cl_free(c);
        nsq_testd_destroy(t);
    }
}
END_TEST

/* A handshake the broker rejects ends the connection without an OK: in
 * TLS 1.2 the client's handshake fails, in TLS 1.3 the client finishes
 * first and sees the alert on its first read. */
static void expect_rejected(nsq_testd_t *t, const tls_client_t *tc)
{
    client_t *c = cl_open(t);
    const want_t w = {.tls = true};
    cl_identify(c, &w);
    nsq_identify_reply_t rep;
    expect_identify_reply(c, &rep);
    ck_assert(rep.tls_v1);
    if (cl_tls(c, tc, NULL))
        expect_eof(c);
    cl_free(c);
}

static void expect_accepted(nsq_testd_t *t, const tls_client_t *tc)
{
    const want_t w = {.tls = true};
    client_t *c = cl_ready(t, &w, tc, NULL);
    cl_pub(c, "t", "x");
    expect_ok(c);
    cl_free(c);
}

static const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};

START_TEST(tls_client_cert_require)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    o.tls_client_auth = "require";
    o.tls_root_ca = cert("ca.pem");
    nsq_testd_t *t = start_broker(&o);
    tls_client_t none = {.max_version = versions[_i]};
    expect_rejected(t, &none);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    /* A certificate the CA did not sign is no better. */
    tls_client_t foreign = {.cert = cert("selfsigned.pem"),
                            .key = cert("selfsigned.key"),
                            .max_version = versions[_i]};
    expect_rejected(t, &foreign);
    ck_assert_uint_eq(errors_when_idle(t), 2);
    tls_client_t good = {.cert = cert("client.pem"),
                         .key = cert("client.key"),
                         .max_version = versions[_i]};
    expect_accepted(t, &good);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 1);
    ck_assert_uint_eq(errors_when_idle(t), 2);
    nsq_testd_destroy(t);
}
END_TEST

/* "request": no certificate is fine, a bad one is not. */
START_TEST(tls_client_cert_request)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    o.tls_client_auth = "request";
    o.tls_root_ca = cert("ca.pem");
    nsq_testd_t *t = start_broker(&o);
    tls_client_t none = {.max_version = versions[_i]};
    expect_accepted(t, &none);
    tls_client_t good = {.cert = cert("client.pem"),
                         .key = cert("client.key"),
                         .max_version = versions[_i]};
    expect_accepted(t, &good);
    ck_assert_uint_eq(errors_when_idle(t), 0);
    tls_client_t foreign = {.cert = cert("selfsigned.pem"),
                            .key = cert("selfsigned.key"),
                            .max_version = versions[_i]};
    expect_rejected(t, &foreign);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 2);
    nsq_testd_destroy(t);
}
END_TEST

/* tls_min_version: an older client fails; the default is TLS 1.2. */
START_TEST(tls_min_version)
{
    nsq_testd_opts_t o;
    opts_tls(&o, false);
    o.tls_min_version = "tls1.3";
    nsq_testd_t *t = start_broker(&o);
    tls_client_t old = {.max_version = TLS1_2_VERSION};
    expect_rejected(t, &old);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    const want_t w = {.tls = true};
    client_t *c = cl_ready(t, &w, &no_verify, NULL);
    ck_assert_int_eq(SSL_version(c->ssl), TLS1_3_VERSION);
    cl_free(c);
    nsq_testd_destroy(t);

    opts_tls(&o, false);
    t = start_broker(&o);
    tls_client_t tls11 = {.max_version = TLS1_1_VERSION};
    expect_rejected(t, &tls11);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    tls_client_t tls12 = {.max_version = TLS1_2_VERSION};
    c = cl_ready(t, &w, &tls12, NULL);
    ck_assert_int_eq(SSL_version(c->ssl), TLS1_2_VERSION);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* Bytes that are not TLS where the handshake should be: closed, counted. */
START_TEST(tls_garbage_handshake)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    nsq_testd_t *t = start_broker(&o);
    client_t *c = cl_open(t);
    const want_t w = {.tls = true};
    cl_identify(c, &w);
    nsq_identify_reply_t rep;
    expect_identify_reply(c, &rep);
    static const char junk[] = "PUB t\n\0\0\0\1x";
    ck_assert(tt_send_all(c->fd, junk, sizeof junk - 1));
    /* Whatever comes back (an alert) is not a frame; then the close. */
    char buf[4096];
    int64_t deadline = tt_now_ms() + WAIT_MS;
    ssize_t n;
    while ((n = cl_read_wire(c, buf, sizeof buf, 1000)) >= 0)
        ck_assert(tt_now_ms() < deadline);
    cl_free(c);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* The ClientHello sent in the same write as IDENTIFY (before the reply)
 * is kept for the handshake, as the bytes that follow IDENTIFY belong to
 * the new encoding. */
START_TEST(tls_pipelined_client_hello)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    nsq_testd_t *t = start_broker(&o);
    client_t *c = cl_open(t);
    SSL_CTX *ctx = client_ctx(&no_verify);
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    ck_assert(ssl && rb && wb);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    ck_assert_int_eq(SSL_do_handshake(ssl), -1); /* wants the answer */

    nsq_identify_t id;
    nsq_identify_default(&id);
    id.tls_v1 = true;
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    char hello[4096];
    int hl = BIO_read(wb, hello, sizeof hello);
    ck_assert_int_gt(hl, 0);
    ck_assert_int_eq(nsq_buf_append(&b, hello, (size_t)hl), NSQ_OK);
    ck_assert(tt_send_all(c->fd, b.data, b.len));
    nsq_buf_free(&b);

    /* The plain JSON reply first, read to its exact end. */
    unsigned char head[8];
    ck_assert(tt_recv_exact(c->fd, head, 8, WAIT_MS));
    size_t size = (size_t)head[0] << 24 | (size_t)head[1] << 16 |
                  (size_t)head[2] << 8 | head[3];
    ck_assert_uint_gt(size, 4);
    char *json = malloc(size - 4);
    ck_assert(tt_recv_exact(c->fd, json, size - 4, WAIT_MS));
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_identify_reply_parse(json, size - 4, &rep, NULL, 0),
                     NSQ_OK);
    free(json);
    ck_assert(rep.tls_v1);

    /* The handshake over memory buffers, then "OK" inside TLS. */
    nsq_buf_t plain = {0};
    int64_t deadline = tt_now_ms() + WAIT_MS;
    bool done = false;
    while (plain.len < 10) {
        ck_assert(tt_now_ms() < deadline);
        if (!done)
            done = SSL_do_handshake(ssl) == 1;
        char buf[16384];
        int n;
        while ((n = BIO_read(wb, buf, sizeof buf)) > 0)
            ck_assert(tt_send_all(c->fd, buf, (size_t)n));
        if (done)
            while ((n = SSL_read(ssl, buf, sizeof buf)) > 0)
                nsq_buf_append(&plain, buf, (size_t)n);
        if (plain.len >= 10)
            break;
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, 200) == 1) {
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            ck_assert_int_gt(r, 0);
            BIO_write(rb, buf, (int)r);
        }
    }
    ck_assert_uint_eq(plain.len, 10);
    ck_assert(memcmp(plain.data, "\0\0\0\6\0\0\0\0OK", 10) == 0);
    nsq_buf_free(&plain);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    cl_free(c);
    ck_assert_uint_eq(errors_when_idle(t), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* Inside TLS every answer is its own record, written on its own; a
 * close_notify in the middle of a PUB is answered like nsqd's half-close,
 * inside TLS, before the broker closes. */
START_TEST(tls_answers_and_half_close)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    nsq_testd_t *t = start_broker(&o);
    const want_t w = {.tls = true};
    client_t *c = cl_ready(t, &w, &no_verify, NULL);
    uint64_t before = stats_of(t).writes;
    nsq_buf_t b = {0};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(nsq_cmd_pub(&b, "t", "x", 1, NULL), NSQ_OK);
    cl_send(c, &b);
    for (int i = 0; i < 5; i++)
        expect_ok(c);
    ck_assert_uint_eq(stats_of(t).writes - before, 5);
    ck_assert_int_eq(nsq_cmd_pub(&b, "t", "hello", 5, NULL), NSQ_OK);
    b.len -= 3;
    cl_send(c, &b);
    ck_assert_int_eq(SSL_shutdown(c->ssl), 0); /* close_notify sent */
    expect_frame(c, NSQ_FRAME_ERROR,
                 "E_BAD_MESSAGE PUB failed to read message body");
    expect_eof(c);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 5);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* A client silent in the middle of the handshake meets the read deadline;
 * heartbeats flow inside TLS once it is done. */
START_TEST(tls_heartbeats_and_deadline)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    nsq_testd_t *t = start_broker(&o);
    client_t *c = cl_open(t);
    const want_t w = {.tls = true, .deflate = true, .level = 1, .hb = HB_MS};
    cl_identify(c, &w);
    nsq_identify_reply_t rep;
    expect_identify_reply(c, &rep);
    expect_eof(c);
    cl_free(c);
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    ck_assert_uint_eq(stats_of(t).timed_out, 1);

    c = cl_ready(t, &w, &no_verify, NULL);
    expect_frame(c, NSQ_FRAME_RESPONSE, "_heartbeat_");
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_nop(&b), NSQ_OK);
    cl_send(c, &b);
    expect_frame(c, NSQ_FRAME_RESPONSE, "_heartbeat_");
    cl_pub(c, "t", "alive");
    expect_ok(c);
    cl_free(c);
    expect_record(t, "t", 0, "alive", 5);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Compression                                                              */
/* ------------------------------------------------------------------------ */

static const want_t compressions[] = {
    {.snappy = true},
    {.deflate = true, .level = 1},
    {.deflate = true, .level = 9}, /* capped to the broker's 6 */
    {.tls = true, .snappy = true},
    {.tls = true, .deflate = true, .level = 6},
};

/* Round trips in every combination; the IDENTIFY reply is as nsqd's. */
START_TEST(compression_round_trip)
{
    const want_t *w = &compressions[_i];
    nsq_testd_opts_t o;
    opts_tls(&o, w->tls);
    nsq_testd_t *t = start_broker(&o);
    nsq_identify_reply_t rep;
    client_t *c = cl_ready(t, w, &no_verify, &rep);
    if (w->deflate) {
        ck_assert_int_eq(rep.deflate_level, w->level < 6 ? w->level : 6);
        ck_assert_int_eq(rep.max_deflate_level, 6);
    }
    ck_assert(w->tls ? c->ssl != NULL : c->ssl == NULL);
    round_trip(t, c, "rt");
    cl_free(c);
    ck_assert_uint_eq(errors_when_idle(t), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* Compression turned off: the reply says no and the connection stays
 * plain; max_deflate_level caps the level. */
START_TEST(compression_disabled_and_capped)
{
    nsq_testd_opts_t o;
    nsq_testd_opts_default(&o);
    ck_assert(o.info.snappy_enabled && o.info.deflate_enabled);
    o.info.snappy_enabled = false;
    o.info.deflate_enabled = false;
    nsq_testd_t *t = start_broker(&o);
    const want_t both[] = {{.snappy = true}, {.deflate = true, .level = 3}};
    for (int i = 0; i < 2; i++) {
        client_t *c = cl_open(t);
        cl_identify(c, &both[i]);
        nsq_identify_reply_t rep;
        expect_identify_reply(c, &rep);
        ck_assert(!rep.snappy && !rep.deflate);
        cl_pub(c, "t", "plain");
        expect_ok(c);
        cl_free(c);
    }
    nsq_testd_destroy(t);

    nsq_testd_opts_default(&o);
    o.info.limits.max_deflate_level = 2;
    t = start_broker(&o);
    const want_t w = {.deflate = true, .level = 9};
    nsq_identify_reply_t rep;
    client_t *c = cl_ready(t, &w, NULL, &rep);
    ck_assert_int_eq(rep.deflate_level, 2);
    ck_assert_int_eq(rep.max_deflate_level, 2);
    round_trip(t, c, "capped");
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* A compressed PUB in the same write as IDENTIFY is decompressed once
 * compression is on: JSON, OK (compression), OK (the PUB). */
START_TEST(compression_pipelined)
{
    for (int i = 0; i < 2; i++) {
        nsq_testd_t *t = NULL;
        nsq_testd_opts_t o;
        nsq_testd_opts_default(&o);
        t = start_broker(&o);
        client_t *c = cl_open(t);
        const want_t w = {.snappy = i == 0, .deflate = i == 1, .level = 6};
        nsq_identify_t id;
        nsq_identify_default(&id);
        id.snappy = w.snappy;
        id.deflate = w.deflate;
        id.deflate_level = w.level;
        nsq_buf_t b = {0}, pub = {0};
        ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
        ck_assert_int_eq(nsq_cmd_pub(&pub, "t", "early", 5, NULL), NSQ_OK);
        nsq_stream_t *s =
            nsq_stream_new(i ? NSQ_STREAM_DEFLATE : NSQ_STREAM_SNAPPY, 6, 0);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(nsq_stream_compress(s, pub.data, pub.len, &b), NSQ_OK);
        ck_assert(tt_send_all(c->fd, b.data, b.len));
        nsq_buf_free(&b);
        nsq_buf_free(&pub);
        nsq_identify_reply_t rep;
        expect_identify_reply(c, &rep);
        ck_assert(rep.snappy == w.snappy && rep.deflate == w.deflate);
        /* The broker's answers decompress with a fresh stream; the
         * client's own stream keeps compressing. */
        cl_compress(c, i ? NSQ_STREAM_DEFLATE : NSQ_STREAM_SNAPPY, 6);
        expect_ok(c);
        expect_ok(c);
        nsq_stream_destroy(c->comp);
        c->comp = NULL;
        ck_assert_int_eq(nsq_cmd_pub(&pub, "t", "later", 5, NULL), NSQ_OK);
        ck_assert_int_eq(nsq_stream_compress(s, pub.data, pub.len, &b), NSQ_OK);
        nsq_buf_free(&pub);
        ck_assert(tt_send_all(c->fd, b.data, b.len));
        nsq_buf_free(&b);
        nsq_stream_destroy(s);
        ck_assert(nsq_testd_wait_count(t, "t", 2, WAIT_MS));
        expect_record(t, "t", 0, "early", 5);
        expect_record(t, "t", 1, "later", 5);
        cl_free(c);
        ck_assert_uint_eq(errors_when_idle(t), 0);
        nsq_testd_destroy(t);
    }
}
END_TEST

/* Malformed compressed input closes the connection without a frame and
 * counts as an error; what came before it was served. */
START_TEST(compression_malformed_input)
{
    static const struct {
        bool snappy;
        bool pub_first; /* a good compressed PUB goes first */
        const char *bytes;
        size_t len;
    } bad[] = {
        /* snappy: a data chunk before the stream identifier */
        {true, false, "\x01\x09\x00\x00\x00\x00\x00\x00NOP\n\n", 13},
        /* snappy: a reserved unskippable chunk type */
        {true, true, "\x02\x01\x00\x00x", 5},
        /* snappy: an uncompressed chunk with a wrong checksum */
        {true, true, "\x01\x08\x00\x00\xde\xad\xbe\xefNOP\n", 12},
        /* deflate: block type 3 does not exist */
        {false, false, "\xff\xff\xff\xff", 4},
        {false, true, "\xff\xff\xff\xff", 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nsq_testd_opts_t o;
        nsq_testd_opts_default(&o);
        nsq_testd_t *t = start_broker(&o);
        const want_t w = {
            .snappy = bad[i].snappy, .deflate = !bad[i].snappy, .level = 6};
        client_t *c = cl_ready(t, &w, NULL, NULL);
        if (bad[i].pub_first) {
            cl_pub(c, "t", "before");
            expect_ok(c);
        }
        ck_assert(tt_send_all(c->fd, bad[i].bytes, bad[i].len));
        expect_eof(c);
        cl_free(c);
        ck_assert_uint_eq(errors_when_idle(t), 1);
        ck_assert_uint_eq(nsq_testd_count(t, "t"), bad[i].pub_first ? 1 : 0);
        nsq_testd_destroy(t);
    }
}
END_TEST

/* A second IDENTIFY asking for compression again would stack a second
 * layer in nsqd; the broker answers it and closes. */
START_TEST(compression_twice_closes)
{
    nsq_testd_opts_t o;
    nsq_testd_opts_default(&o);
    nsq_testd_t *t = start_broker(&o);
    const want_t w = {.snappy = true};
    client_t *c = cl_ready(t, &w, NULL, NULL);
    cl_identify(c, &w);
    nsq_identify_reply_t rep;
    expect_identify_reply(c, &rep);
    ck_assert(rep.snappy);
    expect_eof(c);
    cl_free(c);
    ck_assert_uint_eq(errors_when_idle(t), 1);
    nsq_testd_destroy(t);
}
END_TEST

/* The delay fault holds the answers; the encoding changes only after the
 * answers due before it are out. */
START_TEST(upgrade_with_delay_fault)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    o.fault.delay_ms = 100;
    nsq_testd_t *t = start_broker(&o);
    const want_t w = {.tls = true, .snappy = true};
    int64_t t0 = tt_now_ms();
    client_t *c = cl_ready(t, &w, &no_verify, NULL);
    /* Three delayed answers (JSON, OK, OK), one after the other. */
    ck_assert_int_ge(tt_now_ms() - t0, 300);
    cl_pub(c, "t", "late");
    expect_ok(c);
    cl_free(c);
    expect_record(t, "t", 0, "late", 4);
    ck_assert_uint_eq(errors_when_idle(t), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* AUTH over TLS, stop                                                      */
/* ------------------------------------------------------------------------ */

START_TEST(auth_over_tls)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    o.auth_secret = "s3cret";
    o.auth_identity = "tls-user";
    o.auth_topic_prefix = "a_,,b_";
    nsq_testd_t *t = start_broker(&o);
    const want_t w = {.tls = true, .deflate = true, .level = 6};
    nsq_identify_reply_t rep;
    client_t *c = cl_ready(t, &w, &no_verify, &rep);
    ck_assert(rep.auth_required);
    cl_pub(c, "a_x", "x");
    expect_frame(c, NSQ_FRAME_ERROR, "E_AUTH_FIRST AUTH required before PUB");
    expect_eof(c);
    cl_free(c);

    c = cl_ready(t, &w, &no_verify, &rep);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_auth(&b, "s3cret", 6), NSQ_OK);
    cl_send(c, &b);
    expect_frame(c, NSQ_FRAME_RESPONSE,
                 "{\"identity\":\"tls-user\",\"identity_url\":\"\","
                 "\"permission_count\":2}");
    cl_pub(c, "a_x", "to a");
    expect_ok(c);
    cl_pub(c, "b_y", "to b");
    expect_ok(c);
    cl_pub(c, "c_z", "to c");
    expect_frame(c, NSQ_FRAME_ERROR,
                 "E_UNAUTHORIZED AUTH failed for PUB on \"c_z\" \"\"");
    expect_eof(c);
    cl_free(c);
    expect_record(t, "a_x", 0, "to a", 4);
    expect_record(t, "b_y", 0, "to b", 4);
    ck_assert_uint_eq(nsq_testd_count(t, "c_z"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* Stop ends TLS connections (one idle inside TLS, one in the middle of its
 * handshake) without waiting out the stop timeout. */
START_TEST(stop_with_tls_open)
{
    nsq_testd_opts_t o;
    opts_tls(&o, true);
    /* Far past the case's timeout: a stop that waited it out would fail
     * as a hang, with no clock in the test. */
    o.stop_timeout_ms = 10 * 60000;
    nsq_testd_t *t = start_broker(&o);
    const want_t w = {.tls = true};
    client_t *idle = cl_ready(t, &w, &no_verify, NULL);
    client_t *half = cl_open(t);
    cl_identify(half, &w);
    nsq_identify_reply_t rep;
    expect_identify_reply(half, &rep);
    ck_assert_uint_eq(stats_of(t).active, 2);
    nsq_testd_stop(t);
    ck_assert_uint_eq(stats_of(t).active, 0);
    expect_eof(idle);
    expect_eof(half);
    cl_free(idle);
    cl_free(half);
    nsq_testd_destroy(t);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("testd_tls");
    TCase *tc = tcase_create("tls");
    tcase_set_timeout(tc, CASE_TIMEOUT);
    tcase_add_test(tc, tls_required);
    tcase_add_test(tc, tls_optional);
    tcase_add_test(tc, tls_without_certificate);
    tcase_add_test(tc, tls_start_errors);
    tcase_add_test(tc, tls_certificates_verify);
    tcase_add_loop_test(tc, tls_client_cert_require, 0, 2);
    tcase_add_loop_test(tc, tls_client_cert_request, 0, 2);
    tcase_add_test(tc, tls_min_version);
    tcase_add_test(tc, tls_garbage_handshake);
    tcase_add_test(tc, tls_pipelined_client_hello);
    tcase_add_test(tc, tls_heartbeats_and_deadline);
    tcase_add_test(tc, tls_answers_and_half_close);
    suite_add_tcase(s, tc);
    tc = tcase_create("compression");
    tcase_set_timeout(tc, CASE_TIMEOUT);
    tcase_add_loop_test(tc, compression_round_trip, 0,
                        sizeof compressions / sizeof compressions[0]);
    tcase_add_test(tc, compression_disabled_and_capped);
    tcase_add_test(tc, compression_pipelined);
    tcase_add_test(tc, compression_malformed_input);
    tcase_add_test(tc, compression_twice_closes);
    tcase_add_test(tc, upgrade_with_delay_fault);
    suite_add_tcase(s, tc);
    tc = tcase_create("auth_stop");
    tcase_set_timeout(tc, CASE_TIMEOUT);
    tcase_add_test(tc, auth_over_tls);
    tcase_add_test(tc, stop_with_tls_open);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* A TLS peer that goes away must not kill a case with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    char err[256] = "mkdtemp failed";
    snprintf(g_dir, sizeof g_dir, "/tmp/nsqpub-tls-XXXXXX");
    if (!mkdtemp(g_dir) || !certs_make(g_dir, err, sizeof err)) {
        fprintf(stderr, "certificates: %s\n", err);
        return 1;
    }
    SRunner *sr = srunner_create(tls_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    certs_remove(g_dir);
    return failed ? 1 : 0;
}
