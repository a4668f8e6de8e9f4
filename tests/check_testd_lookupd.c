/*
 * The test broker's lookupd (tools/testd/lookupd.c): every endpoint with
 * its exact JSON, status and headers as nsqlookupd 1.3 sends them, the
 * node/topic/tombstone API, each fault, and https.
 *
 * The client is a plain HTTP/1.x one written here over a socket (and
 * OpenSSL for https), so the server is checked byte for byte.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "certs.h"
#include "nettest.h"
#include "nsq/testd.h"

static char g_certs[256];

typedef struct reply {
    int status; /* 0: no reply */
    char head[4096];
    char *body;
    size_t len;
} reply_t;

/* Reads until EOF (bounded); false on timeout. */
static bool read_all(int fd, SSL *ssl, char **out, size_t *outlen)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    int64_t until = tt_now_ms() + 30000;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n;
        if (ssl) {
            int r = SSL_read(ssl, buf + len, (int)(cap - len));
            n = r > 0 ? r : 0;
        } else {
            struct pollfd p = {fd, POLLIN, 0};
            int left = (int)(until - tt_now_ms());
            if (left <= 0 || poll(&p, 1, left) <= 0) {
                free(buf);
                return false;
            }
            n = recv(fd, buf + len, cap - len, 0);
        }
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return true;
}

/* Undoes chunked transfer coding in place. */
static void dechunk(reply_t *r)
{
    char *in = r->body, *end = r->body + r->len, *out = r->body;
    while (in < end) {
        char *nl;
        unsigned long n = strtoul(in, &nl, 16);
        ck_assert(nl + 2 <= end && nl[0] == '\r' && nl[1] == '\n');
        in = nl + 2;
        if (n == 0)
            break;
        ck_assert(in + n + 2 <= end);
        memmove(out, in, n);
        out += n;
        in += n + 2;
    }
    r->len = (size_t)(out - r->body);
    r->body[r->len] = '\0';
}

/* METHOD path on 127.0.0.1:port, HTTP/1.1 with Connection: close. */
static reply_t http(uint16_t port, SSL_CTX *tls, const char *method,
                    const char *path)
{
    reply_t r;
    memset(&r, 0, sizeof r);
    int fd = tt_connect(port);
    if (fd < 0)
        return r;
    SSL *ssl = NULL;
    if (tls) {
        ssl = SSL_new(tls);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) != 1) {
            SSL_free(ssl);
            close(fd);
            return r;
        }
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: "
                     "close\r\nContent-Length: 0\r\n\r\n",
                     method, path);
    bool sent =
        ssl ? SSL_write(ssl, req, n) == n : tt_send_all(fd, req, (size_t)n);
    char *all = NULL;
    size_t len = 0;
    if (sent && read_all(fd, ssl, &all, &len)) {
        char *sep = strstr(all, "\r\n\r\n");
        if (sep && sscanf(all, "HTTP/1.%*d %d", &r.status) == 1) {
            snprintf(r.head, sizeof r.head, "%.*s", (int)(sep - all), all);
            r.len = len - (size_t)(sep + 4 - all);
            r.body = malloc(r.len + 1);
            memcpy(r.body, sep + 4, r.len);
            r.body[r.len] = '\0';
            if (strcasestr(r.head, "\r\nTransfer-Encoding: chunked"))
                dechunk(&r);
        }
        free(all);
    }
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return r;
}

static reply_t get(nsq_testd_lookupd_t *l, const char *path)
{
    return http(nsq_testd_lookupd_port(l), NULL, "GET", path);
}

static void reply_free(reply_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Status, body, and the JSON (or text) headers nsqlookupd sends. */
static void expect(nsq_testd_lookupd_t *l, const char *path, int status,
                   const char *body)
{
    reply_t r = get(l, path);
    ck_assert_msg(r.status == status, "%s: status %d, want %d", path, r.status,
                  status);
    ck_assert_str_eq(r.body, body);
    bool json = body[0] == '{' || body[0] == '[';
    ck_assert_msg(strcasestr(r.head, json ? "\r\nContent-Type: "
                                            "application/json; charset=utf-8"
                                          : "\r\nContent-Type: text/plain; "
                                            "charset=utf-8") != NULL,
                  "%s: %s", path, r.head);
    ck_assert(json == (strcasestr(r.head, "\r\nX-Nsq-Content-Type: nsq; "
                                          "version=1.0") != NULL));
    reply_free(&r);
}

static nsq_testd_lookupd_t *start(const nsq_testd_lookupd_opts_t *o)
{
    char err[256] = "";
    nsq_testd_lookupd_t *l = nsq_testd_lookupd_start(o, err, sizeof err);
    ck_assert_msg(l != NULL, "%s", err);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u",
             (unsigned)nsq_testd_lookupd_port(l));
    ck_assert_str_eq(nsq_testd_lookupd_address(l), want);
    ck_assert_uint_ne(nsq_testd_lookupd_port(l), 0);
    return l;
}

static nsq_testd_lookupd_t *start_plain(void)
{
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    return start(&o);
}

static void add(nsq_testd_lookupd_t *l, const char *host, uint16_t tcp,
                uint16_t http_port)
{
    nsq_testd_lookupd_node_t n = {0};
    n.broadcast_address = host;
    n.tcp_port = tcp;
    n.http_port = http_port;
    ck_assert_int_eq(nsq_testd_lookupd_add_node(l, &n), 0);
}

/* ------------------------------------------------------------------------ */

START_TEST(test_ping_and_empty)
{
    nsq_testd_lookupd_t *l = start_plain();
    expect(l, "/ping", 200, "OK");
    expect(l, "/nodes", 200, "{\"producers\":[]}");
    expect(l, "/lookup?topic=t", 404, "{\"message\":\"TOPIC_NOT_FOUND\"}");
    expect(l, "/lookup", 400, "{\"message\":\"MISSING_ARG_TOPIC\"}");
    expect(l, "/nope", 404, "{\"message\":\"NOT_FOUND\"}");
    expect(l, "/", 404, "{\"message\":\"NOT_FOUND\"}");
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(l), 1);
    reply_t r = http(nsq_testd_lookupd_port(l), NULL, "POST", "/nodes");
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(r.body, "{\"message\":\"METHOD_NOT_ALLOWED\"}");
    reply_free(&r);
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_nodes_and_lookup)
{
    nsq_testd_opts_t bo;
    nsq_testd_opts_default(&bo);
    char err[256];
    nsq_testd_t *broker = nsq_testd_start(&bo, err, sizeof err);
    ck_assert_msg(broker != NULL, "%s", err);
    nsq_testd_lookupd_t *l = start_plain();
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, broker), 0);
    nsq_testd_lookupd_node_t n = {"10.0.0.7", 4150,    4151,
                                  "nsqd-7",   "1.2.1", "10.0.0.99:51234"};
    ck_assert_int_eq(nsq_testd_lookupd_add_node(l, &n), 0);
    /* The same node again, or one without an address: refused. */
    ck_assert_int_eq(nsq_testd_lookupd_add_node(l, &n), -1);
    nsq_testd_lookupd_node_t none = {0};
    ck_assert_int_eq(nsq_testd_lookupd_add_node(l, &none), -1);
    ck_assert_int_eq(nsq_testd_lookupd_add_broker(l, broker), -1);

    const char *b = nsq_testd_address(broker);
    unsigned bp = nsq_testd_port(broker);
    ck_assert(nsq_testd_lookupd_add_topic(l, b, "t1"));
    ck_assert(nsq_testd_lookupd_add_topic(l, b, "t1")); /* once */
    ck_assert(nsq_testd_lookupd_add_topic(l, "10.0.0.7:4150", "t1"));
    ck_assert(nsq_testd_lookupd_tombstone(l, "t2", "10.0.0.7:4150", true));
    ck_assert(!nsq_testd_lookupd_add_topic(l, "10.0.0.7:1", "t1"));
    ck_assert_int_eq(nsq_testd_lookupd_add_channel(l, "t1", "c1"), 0);
    ck_assert_int_eq(nsq_testd_lookupd_add_channel(l, "t1", "c1"), 0);
    ck_assert_int_eq(nsq_testd_lookupd_add_channel(l, "t1", "c2"), 0);

    char want[2048];
    snprintf(want, sizeof want,
             "{\"producers\":[{\"remote_address\":\"%s\",\"hostname\":"
             "\"127.0.0.1\",\"broadcast_address\":\"127.0.0.1\","
             "\"tcp_port\":%u,\"http_port\":0,\"version\":\"1.3.0\","
             "\"tombstones\":[false],\"topics\":[\"t1\"]},"
             "{\"remote_address\":\"10.0.0.99:51234\",\"hostname\":"
             "\"nsqd-7\",\"broadcast_address\":\"10.0.0.7\",\"tcp_port\":"
             "4150,\"http_port\":4151,\"version\":\"1.2.1\",\"tombstones\":"
             "[false,true],\"topics\":[\"t1\",\"t2\"]}]}",
             b, bp);
    expect(l, "/nodes", 200, want);

    snprintf(want, sizeof want,
             "{\"channels\":[\"c1\",\"c2\"],\"producers\":[{"
             "\"remote_address\":\"%s\",\"hostname\":\"127.0.0.1\","
             "\"broadcast_address\":\"127.0.0.1\",\"tcp_port\":%u,"
             "\"http_port\":0,\"version\":\"1.3.0\"},{\"remote_address\":"
             "\"10.0.0.99:51234\",\"hostname\":\"nsqd-7\","
             "\"broadcast_address\":\"10.0.0.7\",\"tcp_port\":4150,"
             "\"http_port\":4151,\"version\":\"1.2.1\"}]}",
             b, bp);
    expect(l, "/lookup?topic=t1", 200, want);
    /* Tombstoned for t2: the topic exists, its only producer is left
     * out. */
    expect(l, "/lookup?topic=t2", 200, "{\"channels\":[],\"producers\":[]}");
    ck_assert(nsq_testd_lookupd_tombstone(l, "t2", "10.0.0.7:4150", false));
    expect(l, "/lookup?topic=t2", 200,
           "{\"channels\":[],\"producers\":[{\"remote_address\":"
           "\"10.0.0.99:51234\",\"hostname\":\"nsqd-7\","
           "\"broadcast_address\":\"10.0.0.7\",\"tcp_port\":4150,"
           "\"http_port\":4151,\"version\":\"1.2.1\"}]}");

    /* Removed: gone from both. */
    ck_assert(nsq_testd_lookupd_remove_node(l, "10.0.0.7:4150"));
    ck_assert(!nsq_testd_lookupd_remove_node(l, "10.0.0.7:4150"));
    expect(l, "/lookup?topic=t2", 404, "{\"message\":\"TOPIC_NOT_FOUND\"}");
    reply_t r = get(l, "/nodes");
    ck_assert_ptr_null(strstr(r.body, "10.0.0.7"));
    ck_assert_ptr_nonnull(strstr(r.body, b));
    reply_free(&r);
    nsq_testd_lookupd_destroy(l);
    nsq_testd_destroy(broker);
}
END_TEST

START_TEST(test_down)
{
    nsq_testd_lookupd_t *l = start_plain();
    add(l, "127.0.0.1", 4001, 4002);
    uint16_t port = nsq_testd_lookupd_port(l);
    nsq_testd_lookupd_fault_t f = {.down = true};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    int fd = tt_connect(port);
    int e = errno;
    ck_assert_int_eq(fd, -1);
    ck_assert_int_eq(e, ECONNREFUSED);
    /* Up again, on the same port. */
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, NULL), 0);
    ck_assert_uint_eq(nsq_testd_lookupd_port(l), port);
    expect(l, "/ping", 200, "OK");
    nsq_testd_lookupd_destroy(l);

    /* Down from the start: the port is known and refuses. */
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    o.fault.down = true;
    char err[256];
    l = nsq_testd_lookupd_start(&o, err, sizeof err);
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(tt_connect(nsq_testd_lookupd_port(l)), -1);
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, NULL), 0);
    expect(l, "/nodes", 200, "{\"producers\":[]}"); /* nothing listed yet */
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_delay)
{
    nsq_testd_lookupd_t *l = start_plain();
    nsq_testd_lookupd_fault_t f = {.delay_ms = 300};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    int64_t t0 = tt_now_ms();
    expect(l, "/nodes", 200, "{\"producers\":[]}");
    /* A lower bound only: the answer waited at least the delay. */
    ck_assert_int_ge(tt_now_ms() - t0, 300);
    nsq_testd_lookupd_destroy(l);
}
END_TEST

/* Destroy while an answer is being delayed returns (the test's timeout
 * turns a hang into a failure). */
START_TEST(test_destroy_during_delay)
{
    nsq_testd_lookupd_t *l = start_plain();
    nsq_testd_lookupd_fault_t f = {.delay_ms = 600000};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    int fd = tt_connect(nsq_testd_lookupd_port(l));
    ck_assert_int_ge(fd, 0);
    const char req[] = "GET /nodes HTTP/1.0\r\n\r\n";
    ck_assert(tt_send_all(fd, req, sizeof req - 1));
    int64_t until = tt_now_ms() + 30000;
    while (nsq_testd_lookupd_nodes_requests(l) == 0 && tt_now_ms() < until)
        usleep(1000);
    ck_assert_uint_eq(nsq_testd_lookupd_nodes_requests(l), 1);
    nsq_testd_lookupd_destroy(l);
    close(fd);
}
END_TEST

static const struct {
    nsq_testd_lookupd_malformed_t kind;
    const char *body;
} malformed[] = {
    {NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX,
     "{\"producers\":[{\"broadcast_address\":\"127.0.0.1\",\"tcp_port\":41"},
    {NSQ_TESTD_LOOKUPD_MALFORMED_TYPES,
     "{\"producers\":[{\"broadcast_address\":17,\"tcp_port\":\"4150\","
     "\"tombstones\":\"no\",\"topics\":{}}]}"},
    {NSQ_TESTD_LOOKUPD_MALFORMED_NOT_OBJECT, "[\"producers\"]"},
};

START_TEST(test_malformed)
{
    nsq_testd_lookupd_t *l = start_plain();
    add(l, "127.0.0.1", 4001, 4002);
    ck_assert(nsq_testd_lookupd_add_topic(l, "127.0.0.1:4001", "t"));
    nsq_testd_lookupd_fault_t f = {.malformed = malformed[_i].kind};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    expect(l, "/nodes", 200, malformed[_i].body);
    expect(l, "/lookup?topic=t", 200, malformed[_i].body);
    expect(l, "/ping", 200, "OK"); /* only the JSON endpoints */
    cJSON *j = cJSON_Parse(malformed[_i].body);
    ck_assert((j == NULL) ==
              (malformed[_i].kind == NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX));
    cJSON_Delete(j);
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_http_status)
{
    nsq_testd_lookupd_t *l = start_plain();
    nsq_testd_lookupd_fault_t f = {.http_status = 500};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    expect(l, "/nodes", 500, "{\"message\":\"INTERNAL_ERROR\"}");
    expect(l, "/lookup?topic=t", 500, "{\"message\":\"INTERNAL_ERROR\"}");
    expect(l, "/ping", 200, "OK");
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_huge)
{
    nsq_testd_lookupd_t *l = start_plain();
    add(l, "127.0.0.1", 4001, 4002);
    const size_t huge = (5u << 20) + 3;
    nsq_testd_lookupd_fault_t f = {.huge_bytes = huge};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    reply_t r = get(l, "/nodes");
    ck_assert_int_eq(r.status, 200);
    /* Chunked, no size announced. */
    ck_assert_ptr_nonnull(strcasestr(r.head, "Transfer-Encoding: chunked"));
    ck_assert_ptr_null(strcasestr(r.head, "Content-Length"));
    ck_assert_uint_ge(r.len, huge);
    ck_assert_uint_le(r.len, huge + 64);
    /* Valid JSON: the usual list plus a pad. */
    cJSON *j = cJSON_ParseWithLength(r.body, r.len);
    ck_assert_ptr_nonnull(j);
    cJSON *p = cJSON_GetObjectItem(j, "producers");
    ck_assert_int_eq(cJSON_GetArraySize(p), 1);
    ck_assert_int_eq(
        cJSON_GetObjectItem(cJSON_GetArrayItem(p, 0), "tcp_port")->valueint,
        4001);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "pad")));
    cJSON_Delete(j);
    reply_free(&r);
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_wrapped)
{
    nsq_testd_lookupd_t *l = start_plain();
    add(l, "127.0.0.1", 4001, 4002);
    ck_assert(nsq_testd_lookupd_add_topic(l, "127.0.0.1:4001", "t"));
    nsq_testd_lookupd_fault_t f = {.wrapped = true};
    ck_assert_int_eq(nsq_testd_lookupd_set_fault(l, &f), 0);
    expect(l, "/nodes", 200,
           "{\"status_code\":200,\"status_txt\":\"OK\",\"data\":{"
           "\"producers\":[{\"remote_address\":\"127.0.0.1:4001\","
           "\"hostname\":\"127.0.0.1\",\"broadcast_address\":\"127.0.0.1\","
           "\"tcp_port\":4001,\"http_port\":4002,\"version\":\"1.3.0\","
           "\"tombstones\":[false],\"topics\":[\"t\"]}]}}");
    expect(l, "/lookup?topic=t", 200,
           "{\"status_code\":200,\"status_txt\":\"OK\",\"data\":{"
           "\"channels\":[],\"producers\":[{\"remote_address\":"
           "\"127.0.0.1:4001\",\"hostname\":\"127.0.0.1\","
           "\"broadcast_address\":\"127.0.0.1\",\"tcp_port\":4001,"
           "\"http_port\":4002,\"version\":\"1.3.0\"}]}}");
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_https)
{
    char cert[512], key[512], ca[512];
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    o.tls_cert = certs_path(cert, sizeof cert, g_certs, "server.pem");
    o.tls_key = certs_path(key, sizeof key, g_certs, "server.key");
    nsq_testd_lookupd_t *l = start(&o);
    add(l, "127.0.0.1", 4001, 4002);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_int_eq(
        SSL_CTX_load_verify_locations(
            ctx, certs_path(ca, sizeof ca, g_certs, "ca.pem"), NULL),
        1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    reply_t r = http(nsq_testd_lookupd_port(l), ctx, "GET", "/nodes");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"tcp_port\":4001"));
    reply_free(&r);
    SSL_CTX_free(ctx);
    /* Plain http to the https port gets no HTTP answer. */
    r = get(l, "/ping");
    ck_assert_int_ne(r.status, 200);
    reply_free(&r);
    nsq_testd_lookupd_destroy(l);
}
END_TEST

START_TEST(test_start_errors)
{
    char err[256], path[512];
    nsq_testd_lookupd_opts_t o;
    nsq_testd_lookupd_opts_default(&o);
    o.tls_cert = certs_path(path, sizeof path, g_certs, "server.pem");
    ck_assert_ptr_null(nsq_testd_lookupd_start(&o, err, sizeof err));
    ck_assert_str_eq(err, "lookupd: tls_cert and tls_key go together: set "
                          "both or neither");
    o.tls_key = "/nonexistent/server.key";
    ck_assert_ptr_null(nsq_testd_lookupd_start(&o, err, sizeof err));
    ck_assert_str_eq(err, "lookupd: cannot read /nonexistent/server.key");
    nsq_testd_lookupd_opts_default(&o);
    o.host = "localhost";
    ck_assert_ptr_null(nsq_testd_lookupd_start(&o, err, sizeof err));
    ck_assert_str_eq(err, "lookupd: \"localhost\" is not an IPv4 address");
    /* A port in use. */
    nsq_testd_lookupd_t *l = start_plain();
    nsq_testd_lookupd_opts_default(&o);
    o.port = nsq_testd_lookupd_port(l);
    ck_assert_ptr_null(nsq_testd_lookupd_start(&o, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "lookupd: cannot serve on 127.0.0.1:"));
    nsq_testd_lookupd_destroy(l);
}
END_TEST

static Suite *lookupd_suite(void)
{
    Suite *s = suite_create("testd_lookupd");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ping_and_empty);
    tcase_add_test(tc, test_nodes_and_lookup);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_down);
    tcase_add_test(tc, test_delay);
    tcase_add_test(tc, test_destroy_during_delay);
    tcase_add_loop_test(tc, test_malformed, 0,
                        (int)(sizeof malformed / sizeof malformed[0]));
    tcase_add_test(tc, test_http_status);
    tcase_add_test(tc, test_huge);
    tcase_add_test(tc, test_wrapped);
    tcase_add_test(tc, test_https);
    tcase_add_test(tc, test_start_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    char err[256] = "";
    snprintf(g_certs, sizeof g_certs, "/tmp/nsqpub-lk-XXXXXX");
    if (!mkdtemp(g_certs) || !certs_make(g_certs, err, sizeof err)) {
        fprintf(stderr, "certificates: %s\n", err);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(lookupd_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    certs_remove(g_certs);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
