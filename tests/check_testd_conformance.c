/*
 * The test broker against real nsqd: every conformance vector is replayed
 * over TCP against an in-process nsqpub-testd configured like the nsqd of
 * the capture, and its answers must match byte for byte (outside the ranges
 * the vector marks variable), closing the connection at the same step.
 *
 * The tls group runs against a broker with a test certificate and
 * tls_required; the client does the TLS handshake where the vector says
 * (without verifying the certificate) and then talks inside TLS.  With
 * compression the client compresses the vector's plain commands with its
 * own encoder and compares the decompressed answers: any valid stream is
 * right, and deflate's bytes differ from Go's anyway.
 */
#include <check.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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
#include "vectors.h"

static char **g_paths;
static int g_npaths;
static char g_certdir[256];

/* The client's side of one connection: the socket, TLS once the vector's
 * handshake step ran, compression once the IDENTIFY reply granted it. */
typedef struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    nsq_stream_t *comp;
    nsq_frame_reader_t *r;
} client_t;

static void client_close(client_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    nsq_stream_destroy(c->comp);
    nsq_frame_reader_destroy(c->r);
    if (c->fd >= 0)
        close(c->fd);
}

static void tls_handshake(client_t *c)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(c->ctx);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    c->ssl = SSL_new(c->ctx);
    ck_assert_ptr_nonnull(c->ssl);
    /* Blocking reads inside OpenSSL end after a bounded time. */
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(SSL_set_fd(c->ssl, c->fd), 1);
    int rc = SSL_connect(c->ssl);
    ck_assert_msg(rc == 1, "TLS handshake failed: %d",
                  SSL_get_error(c->ssl, rc));
}

/* Writes plain command bytes through the connection's layers. */
static bool client_send(client_t *c, const void *data, size_t len)
{
    nsq_buf_t enc = {0};
    if (c->comp && len) {
        ck_assert_int_eq(nsq_stream_compress(c->comp, data, len, &enc), NSQ_OK);
        data = enc.data;
        len = enc.len;
    }
    bool ok = true;
    if (c->ssl) {
        const char *p = data;
        while (ok && len) {
            int n = SSL_write(c->ssl, p, (int)len);
            ok = n > 0;
            if (ok) {
                p += n;
                len -= (size_t)n;
            }
        }
        ERR_clear_error();
    } else {
        ok = tt_send_all(c->fd, data, len);
    }
    nsq_buf_free(&enc);
    return ok;
}

/* Reads what the socket has (waiting up to ms) after TLS: >0 bytes, 0 on
 * timeout, -1 when the peer closed or reset. */
static ssize_t client_recv(client_t *c, char *buf, size_t len, int ms)
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
    int n = SSL_read(c->ssl, buf, (int)len);
    ERR_clear_error();
    return n > 0 ? n : -1;
}

/* Decompresses if compression is on, and feeds the frame reader. */
static void feed_plain(client_t *c, const char *data, size_t len)
{
    nsq_buf_t dec = {0};
    if (c->comp) {
        ck_assert_msg(nsq_stream_decompress(c->comp, data, len, &dec) == NSQ_OK,
                      "bad compressed answer: %s", nsq_stream_errstr(c->comp));
        data = dec.data;
        len = dec.len;
    }
    if (len)
        ck_assert_int_eq(nsq_frame_reader_feed(c->r, data, len), NSQ_OK);
    nsq_buf_free(&dec);
}

/* After an IDENTIFY reply that grants compression, the bytes behind it are
 * compressed: from here on both directions go through the stream. */
static void maybe_start_compression(client_t *c, const nsq_frame_t *f)
{
    nsq_identify_reply_t rep;
    if (c->comp || f->type != NSQ_FRAME_RESPONSE || f->len == 0 ||
        f->data[0] != '{' ||
        nsq_identify_reply_parse(f->data, f->len, &rep, NULL, 0) != NSQ_OK ||
        !(rep.snappy || rep.deflate))
        return;
    c->comp =
        nsq_stream_new(rep.snappy ? NSQ_STREAM_SNAPPY : NSQ_STREAM_DEFLATE,
                       rep.deflate ? (int)rep.deflate_level : 6, 0);
    ck_assert_ptr_nonnull(c->comp);
    nsq_buf_t rest = {0};
    ck_assert_int_eq(nsq_frame_reader_drain(c->r, &rest), NSQ_OK);
    feed_plain(c, rest.data, rest.len);
    nsq_buf_free(&rest);
}

/* Waits up to ms for frames, keeping copies in frames; returns false when
 * the peer closed (or reset). */
static bool read_frames(client_t *c, size_t want, size_t *have,
                        nsq_frame_t *frames, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        nsq_frame_t f;
        int rc;
        while ((rc = nsq_frame_reader_next(c->r, &f)) == 1) {
            ck_assert_uint_lt(*have, 16);
            /* Keep a copy: the view dies with the next reader call. */
            char *copy = malloc(f.len + 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, f.data, f.len);
            frames[*have] = (nsq_frame_t){f.type, copy, f.len};
            (*have)++;
            maybe_start_compression(c, &frames[*have - 1]);
        }
        ck_assert_int_eq(rc, 0);
        if (*have >= want)
            return true;
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return true;
        char buf[65536];
        ssize_t got = client_recv(c, buf, sizeof buf, (int)left);
        if (got < 0)
            return false;
        if (got > 0)
            feed_plain(c, buf, (size_t)got);
    }
}

static void free_frames(nsq_frame_t *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)frames[i].data);
}

/* True if the peer closes within ms (EOF or reset); a frame before the
 * close fails the case (nsqd sends nothing more). */
static bool closes_within(client_t *c, int ms, const char *what)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        nsq_frame_t f;
        int rc = nsq_frame_reader_next(c->r, &f);
        ck_assert_msg(rc == 0, "%s: a frame before the close: type %d '%.*s'",
                      what, rc == 1 ? f.type : -1, rc == 1 ? (int)f.len : 0,
                      rc == 1 ? f.data : "");
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return false;
        char buf[4096];
        ssize_t n = client_recv(c, buf, sizeof buf, (int)left);
        if (n < 0)
            return true;
        if (n > 0)
            feed_plain(c, buf, (size_t)n);
    }
}

/*
 * After the last step of a connection nsqd kept open: nothing more may
 * come, however late.  Rather than watch for a while, send NOP (nsqd
 * answers nothing) and an unknown command (nsqd answers E_INVALID and
 * closes): the next frame must be that answer, then the close.  A frame
 * the broker still owed the vector's steps would come first and fail.
 * After a half-close the close itself is the event.
 */
static void expect_nothing_more(client_t *c, const vec_case_t *v,
                                const vec_step_t *last)
{
    char what[160];
    snprintf(what, sizeof what, "%s after the last step", v->name);
    if (strcmp(last->action, "shutdown_write") != 0) {
        static const char fence[] = "NOP\nFOO\n";
        ck_assert_msg(client_send(c, fence, sizeof fence - 1), "%s: send",
                      what);
        nsq_frame_t f[16];
        size_t have = 0;
        bool open = read_frames(c, 1, &have, f, 5000);
        ck_assert_msg(have >= 1, "%s: no answer to FOO (%s)", what,
                      open ? "nothing came" : "closed");
        static const char want[] = "E_INVALID invalid command FOO";
        ck_assert_msg(f[0].type == NSQ_FRAME_ERROR &&
                          f[0].len == sizeof want - 1 &&
                          memcmp(f[0].data, want, f[0].len) == 0,
                      "%s: got type %d '%.*s' before FOO's answer", what,
                      f[0].type, (int)f[0].len, f[0].data);
        ck_assert_msg(have == 1, "%s: a frame after FOO's answer", what);
        free_frames(f, have);
        if (!open)
            return;
    }
    ck_assert_msg(closes_within(c, 5000, what), "%s: the broker did not close",
                  what);
}

/* Publishes the side connection's bytes and waits for its answer. */
static void side_publish(uint16_t port, const vec_step_t *st)
{
    client_t side = {.fd = tt_connect(port), .r = nsq_frame_reader_new(0)};
    ck_assert_int_ge(side.fd, 0);
    ck_assert_ptr_nonnull(side.r);
    tt_send_all(side.fd, st->side_send.data, st->side_send.len);
    nsq_frame_t frames[16];
    size_t have = 0;
    read_frames(&side, st->side_nframes, &have, frames, 5000);
    ck_assert_uint_eq(have, st->side_nframes);
    for (size_t i = 0; i < have; i++)
        ck_assert_int_eq(frames[i].type, NSQ_FRAME_RESPONSE);
    free_frames(frames, have);
    client_close(&side);
}

static void replay(const vec_case_t *c)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    if (c->auth_enabled) {
        opts.auth_secret = "s3cret";
        opts.auth_identity = "bench";
    }
    char cert[512], key[512];
    if (c->tls_enabled) {
        opts.tls_cert =
            certs_path(cert, sizeof cert, g_certdir, "selfsigned.pem");
        opts.tls_key = certs_path(key, sizeof key, g_certdir, "selfsigned.key");
        opts.tls_required = c->tls_required;
    }
    char err[256];
    nsq_testd_t *t = nsq_testd_start(&opts, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    client_t cl = {.fd = tt_connect(nsq_testd_port(t)),
                   .r = nsq_frame_reader_new(0)};
    ck_assert_int_ge(cl.fd, 0);
    ck_assert_ptr_nonnull(cl.r);

    /* Frames received per step, kept for send_substitutions. */
    nsq_frame_t got[32][16];
    size_t ngot[32] = {0};
    ck_assert_uint_le(c->nsteps, 32);
    for (size_t s = 0; s < c->nsteps; s++) {
        const vec_step_t *st = &c->steps[s];
        if (st->side_publish)
            side_publish(nsq_testd_port(t), st);
        if (strcmp(st->action, "tls_handshake") == 0)
            tls_handshake(&cl);
        if (strcmp(st->action, "shutdown_write") == 0)
            ck_assert_int_eq(shutdown(cl.fd, SHUT_WR), 0);
        ck_assert_msg(strcmp(st->transport, "tls") == 0 ? cl.ssl != NULL
                                                        : cl.ssl == NULL,
                      "%s step %zu: transport %s", c->name, s, st->transport);
        ck_assert_msg(st->compressed_send ? cl.comp != NULL : cl.comp == NULL,
                      "%s step %zu: compression is %s", c->name, s,
                      cl.comp ? "on" : "off");
        /* The plain command bytes: the client encodes them itself. */
        const vec_bytes_t *plain = &st->send_plain;
        unsigned char *send = malloc(plain->len + 1);
        ck_assert_ptr_nonnull(send);
        if (plain->len)
            memcpy(send, plain->data, plain->len);
        for (size_t k = 0; k < st->nsubst; k++) {
            size_t from = st->subst[k].from_step, fr = st->subst[k].from_frame;
            ck_assert_uint_lt(from, s);
            ck_assert_uint_lt(fr, ngot[from]);
            size_t n = st->subst[k].dst_end - st->subst[k].dst_start;
            ck_assert_uint_le(st->subst[k].src_start + n, got[from][fr].len);
            memcpy(send + st->subst[k].dst_start,
                   got[from][fr].data + st->subst[k].src_start, n);
        }
        /* nsqd may close while a large send is still going: then the
         * write fails, as it did in the capture. */
        bool sent = client_send(&cl, send, plain->len);
        ck_assert_msg(sent || st->server_closed, "%s step %zu: send failed",
                      c->name, s);
        free(send);
        /* No waiting when no frame is due: a late or extra frame comes
         * before the next step's answers (or the final fence's) and
         * fails there. */
        bool open = read_frames(&cl, st->nframes, &ngot[s], got[s],
                                st->nframes ? 5000 : 0);
        ck_assert_msg(ngot[s] == st->nframes, "%s step %zu: %zu of %zu frames",
                      c->name, s, ngot[s], st->nframes);
        for (size_t i = 0; i < st->nframes; i++)
            ck_assert_msg(vec_frame_matches(&st->frames[i], got[s][i].type,
                                            got[s][i].data, got[s][i].len),
                          "%s step %zu frame %zu: got type %d '%.*s'", c->name,
                          s, i, got[s][i].type, (int)got[s][i].len,
                          got[s][i].data);
        if (st->server_closed)
            ck_assert_msg(!open || closes_within(&cl, 5000, c->name),
                          "%s step %zu: broker did not close", c->name, s);
        else
            ck_assert_msg(open, "%s step %zu: broker closed", c->name, s);
        if (st->server_closed)
            break;
        if (s + 1 == c->nsteps)
            expect_nothing_more(&cl, c, st);
    }
    for (size_t s = 0; s < c->nsteps; s++)
        free_frames(got[s], ngot[s]);
    client_close(&cl);
    nsq_testd_destroy(t);
}

START_TEST(replay_case)
{
    char err[256];
    vec_case_t *c = vec_load(g_paths[_i], err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    replay(c);
    vec_free(c);
}
END_TEST

/* Every vector is there, the TLS and compression ones included. */
START_TEST(all_cases_present)
{
    int tls = 0, compressed = 0;
    for (int i = 0; i < g_npaths; i++) {
        char err[256];
        vec_case_t *c = vec_load(g_paths[i], err, sizeof err);
        ck_assert_msg(c != NULL, "%s", err);
        tls += c->tls_enabled;
        for (size_t k = 0; k < c->nsteps; k++)
            if (c->steps[k].compressed_send) {
                compressed++;
                break;
            }
        vec_free(c);
    }
    ck_assert_int_eq(g_npaths, 91);
    ck_assert_int_eq(tls, 3);
    ck_assert_int_eq(compressed, 4);
}
END_TEST

int main(void)
{
    g_npaths = vec_list(NSQ_CONFORMANCE_DIR, &g_paths);
    if (g_npaths < 0)
        return 1;
    /* A TLS peer that goes away must not kill the test with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    char err[256] = "mkdtemp failed";
    snprintf(g_certdir, sizeof g_certdir, "/tmp/nsqpub-certs-XXXXXX");
    if (!mkdtemp(g_certdir) || !certs_make(g_certdir, err, sizeof err)) {
        fprintf(stderr, "certificates: %s\n", err);
        return 1;
    }
    Suite *s = suite_create("testd_conformance");
    TCase *tc = tcase_create("nsqd-1.3.0");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, all_cases_present);
    tcase_add_loop_test(tc, replay_case, 0, g_npaths);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vec_list_free(g_paths, g_npaths);
    certs_remove(g_certdir);
    return failed ? 1 : 0;
}
