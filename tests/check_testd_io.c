/*
 * How the test broker writes: each answer in its own write as nsqd flushes
 * it (or batched on request), through compression too; the hold and drop
 * faults; the answer to a client that half-closes inside a compressed
 * command.
 *
 * Counting writes: TCP may merge the broker's small writes at the
 * receiver, so what a client reads says nothing reliable about how they
 * were written.  The broker counts its own writes of answers (the writes
 * statistic), which is exact.  The client sends all its commands in one
 * send() below the loopback MSS, which arrives as one segment and so is
 * read by the broker in one recv(): a broker that batches the answers of
 * one read writes them once, one that flushes each writes N times.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nettest.h"
#include "nsq/testd.h"

#define WAIT_MS 10000
#define QUIET_MS 300
#define NPUBS 20

typedef struct client {
    int fd;
    nsq_frame_reader_t *r;
    nsq_stream_t *z; /* compression, once granted */
    bool reset;      /* the connection ended with ECONNRESET */
    bool closed;
} client_t;

static nsq_testd_t *start(bool batch, const nsq_testd_fault_t *fault)
{
    nsq_testd_opts_t o;
    nsq_testd_opts_default(&o);
    o.batch_answers = batch;
    if (fault)
        o.fault = *fault;
    char err[256];
    nsq_testd_t *t = nsq_testd_start(&o, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    return t;
}

static uint64_t writes_of(nsq_testd_t *t)
{
    nsq_testd_stats_t st;
    nsq_testd_stats(t, &st);
    return st.writes;
}

static void cl_open(client_t *c, nsq_testd_t *t)
{
    memset(c, 0, sizeof *c);
    c->fd = tt_connect(nsq_testd_port(t));
    ck_assert_int_ge(c->fd, 0);
    c->r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(c->r);
}

static void cl_close(client_t *c)
{
    close(c->fd);
    nsq_frame_reader_destroy(c->r);
    nsq_stream_destroy(c->z);
}

/* Sends plain command bytes (compressed once compression is on). */
static void cl_send(client_t *c, const nsq_buf_t *b)
{
    nsq_buf_t z = {0};
    const char *p = b->data;
    size_t len = b->len;
    if (c->z) {
        ck_assert_int_eq(nsq_stream_compress(c->z, p, len, &z), NSQ_OK);
        p = z.data;
        len = z.len;
    }
    ck_assert(tt_send_all(c->fd, p, len));
    nsq_buf_free(&z);
}

/* The next frame within ms into *f (data copied to buf): 1, 0 on silence,
 * -1 once the broker closed. */
static int cl_next(client_t *c, nsq_frame_t *f, nsq_buf_t *buf, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        int rc = nsq_frame_reader_next(c->r, f);
        ck_assert_int_ge(rc, 0);
        if (rc == 1) {
            buf->len = 0;
            ck_assert_int_eq(nsq_buf_append(buf, f->data, f->len), NSQ_OK);
            f->data = buf->data;
            return 1;
        }
        if (c->closed)
            return -1;
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        char raw[65536];
        ssize_t n = recv(c->fd, raw, sizeof raw, 0);
        if (n <= 0) {
            c->reset = n < 0 && errno == ECONNRESET;
            c->closed = true;
            continue;
        }
        nsq_buf_t plain = {0};
        const char *p = raw;
        if (c->z) {
            ck_assert_int_eq(
                nsq_stream_decompress(c->z, raw, (size_t)n, &plain), NSQ_OK);
            p = plain.data;
            n = (ssize_t)plain.len;
        }
        if (n)
            ck_assert_int_eq(nsq_frame_reader_feed(c->r, p, (size_t)n), NSQ_OK);
        nsq_buf_free(&plain);
    }
}

static void expect_frame(client_t *c, int32_t type, const char *text)
{
    nsq_frame_t f;
    nsq_buf_t buf = {0};
    ck_assert_msg(cl_next(c, &f, &buf, WAIT_MS) == 1, "no frame for '%s'",
                  text);
    ck_assert_msg(f.type == type && f.len == strlen(text) &&
                      memcmp(f.data, text, f.len) == 0,
                  "got %d '%.*s', want '%s'", f.type, (int)f.len, f.data, text);
    nsq_buf_free(&buf);
}

static void expect_quiet(client_t *c)
{
    nsq_frame_t f;
    nsq_buf_t buf = {0};
    ck_assert_int_eq(cl_next(c, &f, &buf, QUIET_MS), 0);
    nsq_buf_free(&buf);
}

static void expect_close(client_t *c)
{
    nsq_frame_t f;
    nsq_buf_t buf = {0};
    ck_assert_int_eq(cl_next(c, &f, &buf, WAIT_MS), -1);
    ck_assert_uint_eq(nsq_frame_reader_pending(c->r), 0);
    nsq_buf_free(&buf);
}

static void add_pubs(nsq_buf_t *b, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(nsq_cmd_pub(b, "io", "body", 4, NULL), NSQ_OK);
}

/* The magic, then n PUBs. */
static void magic_pubs(nsq_buf_t *b, int n)
{
    ck_assert_int_eq(nsq_cmd_magic(b), NSQ_OK);
    add_pubs(b, n);
}

/* _i 0: nsqd's way, one write per answer; 1: batch_answers, one write. */
START_TEST(answers_written_one_by_one)
{
    bool batch = _i == 1;
    nsq_testd_t *t = start(batch, NULL);
    client_t c;
    cl_open(&c, t);
    nsq_buf_t b = {0};
    magic_pubs(&b, NPUBS);
    ck_assert_uint_lt(b.len, 16384); /* one segment on loopback */
    cl_send(&c, &b);
    for (int i = 0; i < NPUBS; i++)
        expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    ck_assert_uint_eq(writes_of(t), batch ? 1 : NPUBS);
    nsq_buf_free(&b);
    cl_close(&c);
    nsq_testd_destroy(t);
}
END_TEST

/* With snappy, every answer is its own flushed chunk: the IDENTIFY JSON,
 * the first compressed OK, then one write per PUB. */
START_TEST(compressed_answers_written_one_by_one)
{
    nsq_testd_t *t = start(false, NULL);
    client_t c;
    cl_open(&c, t);
    nsq_buf_t b = {0};
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.snappy = true;
    ck_assert_int_eq(nsq_cmd_magic(&b), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    cl_send(&c, &b);
    nsq_frame_t f;
    nsq_buf_t data = {0};
    ck_assert_int_eq(cl_next(&c, &f, &data, WAIT_MS), 1);
    nsq_identify_reply_t rep;
    ck_assert_int_eq(nsq_identify_reply_parse(f.data, f.len, &rep, NULL, 0),
                     NSQ_OK);
    ck_assert(rep.snappy);
    /* The compressed stream starts right after the reply; what came with
     * it is compressed already. */
    nsq_buf_t rest = {0}, plain = {0};
    ck_assert_int_eq(nsq_frame_reader_drain(c.r, &rest), NSQ_OK);
    c.z = nsq_stream_new(NSQ_STREAM_SNAPPY, 0, 0);
    ck_assert_ptr_nonnull(c.z);
    if (rest.len)
        ck_assert_int_eq(
            nsq_stream_decompress(c.z, rest.data, rest.len, &plain), NSQ_OK);
    if (plain.len)
        ck_assert_int_eq(nsq_frame_reader_feed(c.r, plain.data, plain.len),
                         NSQ_OK);
    nsq_buf_free(&rest);
    nsq_buf_free(&plain);
    expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    b.len = 0;
    add_pubs(&b, NPUBS);
    cl_send(&c, &b);
    for (int i = 0; i < NPUBS; i++)
        expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    ck_assert_uint_eq(writes_of(t), 2 + NPUBS);
    /* A half-close inside a compressed PUB body: nsqd's answer, compressed,
     * then the close. */
    b.len = 0;
    ck_assert_int_eq(nsq_cmd_pub(&b, "io", "hello", 5, NULL), NSQ_OK);
    b.len -= 2;
    cl_send(&c, &b);
    expect_quiet(&c);
    ck_assert_int_eq(shutdown(c.fd, SHUT_WR), 0);
    expect_frame(&c, NSQ_FRAME_ERROR,
                 "E_BAD_MESSAGE PUB failed to read message body");
    expect_close(&c);
    ck_assert_uint_eq(nsq_testd_count(t, "io"), NPUBS);
    nsq_buf_free(&b);
    nsq_buf_free(&data);
    cl_close(&c);
    nsq_testd_destroy(t);
}
END_TEST

/* Held answers go out in order as the fault lets them; commands are read
 * and stored meanwhile. */
START_TEST(fault_hold)
{
    nsq_testd_fault_t f = {.hold_from = 2};
    nsq_testd_t *t = start(false, &f);
    client_t c;
    cl_open(&c, t);
    nsq_buf_t b = {0};
    magic_pubs(&b, 3);
    ck_assert_int_eq(nsq_cmd_nop(&b), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_fin(&b, "0123456789abcdef"), NSQ_OK);
    cl_send(&c, &b);
    expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    ck_assert(nsq_testd_wait_count(t, "io", 3, WAIT_MS));
    /* The FIN's error waits behind the held OKs. */
    expect_quiet(&c);
    f.hold_from = 3;
    nsq_testd_set_fault(t, &f);
    expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    expect_quiet(&c);
    nsq_testd_set_fault(t, NULL);
    expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    expect_frame(&c, NSQ_FRAME_ERROR, "E_INVALID cannot FIN in current state");
    expect_close(&c);
    ck_assert(!c.reset);
    nsq_buf_free(&b);
    cl_close(&c);
    nsq_testd_destroy(t);
}
END_TEST

/* drop resets the connection; answers released by the same change go out
 * first, answers still held are lost.  Only the connection named. */
START_TEST(fault_drop)
{
    nsq_testd_fault_t f = {.conn = 1, .hold_from = 1};
    nsq_testd_t *t = start(false, &f);
    client_t c;
    cl_open(&c, t);
    nsq_buf_t b = {0};
    magic_pubs(&b, 3);
    cl_send(&c, &b);
    ck_assert(nsq_testd_wait_count(t, "io", 3, WAIT_MS));
    expect_quiet(&c);
    f.hold_from = 2;
    f.drop = true;
    nsq_testd_set_fault(t, &f);
    expect_frame(&c, NSQ_FRAME_RESPONSE, "OK");
    expect_close(&c);
    ck_assert(c.reset);
    /* The second connection is served normally. */
    client_t d;
    cl_open(&d, t);
    b.len = 0;
    magic_pubs(&b, 1);
    cl_send(&d, &b);
    expect_frame(&d, NSQ_FRAME_RESPONSE, "OK");
    ck_assert_uint_eq(nsq_testd_count(t, "io"), 4);
    nsq_buf_free(&b);
    cl_close(&c);
    cl_close(&d);
    nsq_testd_destroy(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("testd_io");
    TCase *tc = tcase_create("io");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, answers_written_one_by_one, 0, 2);
    tcase_add_test(tc, compressed_answers_written_one_by_one);
    tcase_add_test(tc, fault_hold);
    tcase_add_test(tc, fault_drop);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
