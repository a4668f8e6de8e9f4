/*
 * The test broker (nsqpub-testd as a library), driven over loopback TCP with
 * raw protocol bytes: its faults (set at start, changed at run time, and for
 * only the second connection), the limits it takes from its options,
 * heartbeats and the read deadline, AUTH, what it records and dumps, a
 * consumer's SUB/RDY/FIN, stopping with connections open, and the worker
 * limit.  Commands are built with the codec's encoders and frames are read
 * with its frame reader, so these cases check the broker, not a client.
 * check_testd_conformance.c replays nsqd's recorded bytes; those cases are
 * not repeated here.
 *
 * No case asserts an upper bound on time.  A few assert a lower bound (an
 * answer delayed by delay_ms cannot come sooner), which a slow machine
 * cannot break.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nettest.h"
#include "nsq/testd.h"

/* A bounded wait for something that must happen; only a broken broker
 * reaches it.  Each case's timeout is longer. */
#define WAIT_MS 10000
/* How long "nothing arrives" is watched. */
#define QUIET_MS 300
#define CASE_TIMEOUT 60
/* nsqd's smallest heartbeat interval: the read deadline is twice this. */
#define HB_MS 1000

/* ------------------------------------------------------------------------ */
/* A raw client                                                             */
/* ------------------------------------------------------------------------ */

typedef struct client {
    int fd;
    nsq_frame_reader_t *r;
    int32_t type;         /* the last frame taken ... */
    nsq_buf_t data;       /* ... and its data, copied out of the reader */
    bool closed;          /* EOF or a reset was seen */
    bool skip_heartbeats; /* drop "_heartbeat_" frames (counted) */
    int heartbeats;
} client_t;

static nsq_testd_t *start_broker(const nsq_testd_opts_t *opts)
{
    char err[256] = "";
    nsq_testd_t *t = nsq_testd_start(opts, err, sizeof err);
    ck_assert_msg(t != NULL, "nsq_testd_start: %s", err);
    ck_assert_uint_ne(nsq_testd_port(t), 0);
    return t;
}

static nsq_testd_t *start_default(void)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    return start_broker(&opts);
}

static nsq_testd_stats_t stats_of(nsq_testd_t *t)
{
    nsq_testd_stats_t st;
    nsq_testd_stats(t, &st);
    return st;
}

static client_t *cl_of_fd(int fd)
{
    client_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->fd = fd;
    c->r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(c->r);
    return c;
}

/* A TCP connection to the broker, without the magic. */
static client_t *cl_connect(nsq_testd_t *t)
{
    int fd = tt_connect(nsq_testd_port(t));
    ck_assert_msg(fd >= 0, "connect to 127.0.0.1:%u: %s",
                  (unsigned)nsq_testd_port(t), strerror(errno));
    return cl_of_fd(fd);
}

static void send_buf(client_t *c, nsq_buf_t *b)
{
    ck_assert_msg(tt_send_all(c->fd, b->data, b->len), "send: %s",
                  strerror(errno));
    nsq_buf_free(b);
}

/* A connection that has sent the protocol magic. */
static client_t *cl_open(nsq_testd_t *t)
{
    client_t *c = cl_connect(t);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_magic(&b), NSQ_OK);
    send_buf(c, &b);
    return c;
}

static void cl_free(client_t *c)
{
    if (!c)
        return;
    close(c->fd);
    nsq_frame_reader_destroy(c->r);
    nsq_buf_free(&c->data);
    free(c);
}

/* The encoders get nsqd's default limits (NULL), so that commands over a
 * broker's lowered limits can still be built. */
static void cl_pubn(client_t *c, const char *topic, const void *body,
                    size_t len)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_pub(&b, topic, body, len, NULL), NSQ_OK);
    send_buf(c, &b);
}

static void cl_pub(client_t *c, const char *topic, const char *body)
{
    cl_pubn(c, topic, body, strlen(body));
}

static void cl_dpubn(client_t *c, const char *topic, int64_t delay_ms,
                     const void *body, size_t len)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_dpub(&b, topic, delay_ms, body, len, NULL),
                     NSQ_OK);
    send_buf(c, &b);
}

static void cl_mpub(client_t *c, const char *topic, const nsq_iov_t *msgs,
                    size_t n)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_mpub(&b, topic, msgs, n, NULL), NSQ_OK);
    send_buf(c, &b);
}

static void cl_nop(client_t *c)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_nop(&b), NSQ_OK);
    send_buf(c, &b);
}

static void cl_auth(client_t *c, const char *secret)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_auth(&b, secret, strlen(secret)), NSQ_OK);
    send_buf(c, &b);
}

/* IDENTIFY with feature negotiation; hb_ms 0 asks for the default. */
static void identify_cmd(nsq_buf_t *b, int64_t hb_ms)
{
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.heartbeat_interval = hb_ms;
    ck_assert_int_eq(nsq_cmd_identify(b, &id), NSQ_OK);
}

static void cl_identify(client_t *c, int64_t hb_ms)
{
    nsq_buf_t b = {0};
    identify_cmd(&b, hb_ms);
    send_buf(c, &b);
}

/*
 * Takes the next frame within ms: 1 with c->type and c->data set, 0 when
 * nothing (complete) arrived, -1 when the broker closed or reset the
 * connection.  A malformed frame fails the case.
 */
static int cl_next(client_t *c, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        nsq_frame_t f;
        int rc = nsq_frame_reader_next(c->r, &f);
        ck_assert_msg(rc >= 0, "bad frame from the broker: %s",
                      nsq_frame_reader_errstr(c->r));
        if (rc == 1) {
            if (c->skip_heartbeats && f.type == NSQ_FRAME_RESPONSE &&
                f.len == 11 && memcmp(f.data, "_heartbeat_", 11) == 0) {
                c->heartbeats++;
                continue;
            }
            c->type = f.type;
            c->data.len = 0;
            ck_assert_int_eq(nsq_buf_append(&c->data, f.data, f.len), NSQ_OK);
            return 1;
        }
        if (c->closed)
            return -1;
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        char buf[65536];
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->closed = true;
            continue;
        }
        ck_assert_int_eq(nsq_frame_reader_feed(c->r, buf, (size_t)n), NSQ_OK);
    }
}

static const char *data_str(const client_t *c)
{
    return c->data.data ? c->data.data : "";
}

/* The next frame is exactly (type, text). */
static void expect_frame(client_t *c, int32_t type, const char *text)
{
    int rc = cl_next(c, WAIT_MS);
    ck_assert_msg(rc == 1, "waiting for '%s': %s", text,
                  rc ? "the broker closed" : "nothing arrived");
    size_t n = strlen(text);
    ck_assert_msg(c->type == type && c->data.len == n &&
                      memcmp(data_str(c), text, n) == 0,
                  "expected type %d '%s', got type %d '%.*s'", (int)type, text,
                  (int)c->type, (int)c->data.len, data_str(c));
}

static void expect_ok(client_t *c)
{
    expect_frame(c, NSQ_FRAME_RESPONSE, "OK");
}

static void expect_error(client_t *c, const char *text)
{
    expect_frame(c, NSQ_FRAME_ERROR, text);
}

/* The next frame is an error starting with prefix, of code. */
static void expect_error_prefix(client_t *c, const char *prefix, nsq_err_t code)
{
    int rc = cl_next(c, WAIT_MS);
    ck_assert_msg(rc == 1, "waiting for '%s...': %s", prefix,
                  rc ? "the broker closed" : "nothing arrived");
    size_t n = strlen(prefix);
    ck_assert_msg(c->type == NSQ_FRAME_ERROR && c->data.len > n &&
                      memcmp(data_str(c), prefix, n) == 0,
                  "expected an error '%s...', got type %d '%.*s'", prefix,
                  (int)c->type, (int)c->data.len, data_str(c));
    ck_assert_int_eq(nsq_err_from_frame(c->data.data, c->data.len), code);
}

/* The broker closes (EOF or reset) with no frame and no partial bytes. */
static void expect_eof(client_t *c)
{
    int rc = cl_next(c, WAIT_MS);
    ck_assert_msg(rc == -1, "expected a close, got %s",
                  rc == 0 ? "nothing" : "a frame");
    ck_assert_uint_eq(nsq_frame_reader_pending(c->r), 0);
}

/* A connection the broker resets as soon as it accepts it (refused or
 * busy).  The reset can beat this thread back from connect, which then
 * fails with ECONNRESET; otherwise the first read sees the close. */
static void expect_reset_conn(nsq_testd_t *t)
{
    int fd = tt_connect(nsq_testd_port(t));
    if (fd < 0) {
        ck_assert_msg(errno == ECONNRESET, "connect: %s", strerror(errno));
        return;
    }
    client_t *c = cl_of_fd(fd);
    expect_eof(c);
    cl_free(c);
}

/* Nothing arrives for ms and the connection stays open. */
static void expect_quiet(client_t *c, int ms)
{
    int rc = cl_next(c, ms);
    ck_assert_msg(rc == 0, "expected silence, got %s",
                  rc < 0 ? "a close" : "a frame");
    ck_assert_uint_eq(nsq_frame_reader_pending(c->r), 0);
}

static void expect_identify_reply(client_t *c, nsq_identify_reply_t *rep)
{
    ck_assert_int_eq(cl_next(c, WAIT_MS), 1);
    ck_assert_int_eq(c->type, NSQ_FRAME_RESPONSE);
    char err[128] = "";
    nsq_err_t e = nsq_identify_reply_parse(c->data.data, c->data.len, rep, err,
                                           sizeof err);
    ck_assert_msg(e == NSQ_OK, "IDENTIFY reply '%.*s': %s", (int)c->data.len,
                  data_str(c), err);
    ck_assert(rep->negotiated);
}

/* Reads exactly len raw bytes (no frame parsing) and compares them. */
static void expect_raw(client_t *c, const void *want, size_t len)
{
    char got[64];
    ck_assert_uint_le(len, sizeof got);
    ck_assert_uint_eq(nsq_frame_reader_pending(c->r), 0);
    ck_assert_msg(tt_recv_exact(c->fd, got, len, WAIT_MS),
                  "fewer than %zu bytes arrived", len);
    ck_assert_mem_eq(got, want, len);
}

/* Message index of topic, compared in full. */
static void expect_record(nsq_testd_t *t, const char *topic, size_t index,
                          const void *body, size_t len, int64_t defer_ms,
                          uint64_t conn)
{
    nsq_testd_msg_t m;
    ck_assert_msg(nsq_testd_message(t, topic, index, &m), "no message %zu",
                  index);
    ck_assert_uint_eq(m.len, len);
    ck_assert_mem_eq(m.body, body, len);
    ck_assert_int_eq(m.defer_ms, defer_ms);
    ck_assert_uint_eq(m.conn, conn);
    nsq_testd_msg_free(&m);
    ck_assert_ptr_null(m.body);
}

/* Waits (bounded) until the broker serves exactly n connections. */
static void wait_active(nsq_testd_t *t, uint64_t n)
{
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while (stats_of(t).active != n && tt_now_ms() < deadline)
        usleep(5000);
    ck_assert_uint_eq(stats_of(t).active, n);
}

/* ------------------------------------------------------------------------ */
/* Faults, in three ways                                                    */
/* ------------------------------------------------------------------------ */

enum { AT_START, AT_RUN_TIME, ONLY_CONN2, NMODES };

typedef struct fixture {
    int mode;
    nsq_testd_t *t;
    client_t *normal; /* ONLY_CONN2: connection 1, which must stay normal */
    client_t *c;      /* the connection the fault applies to */
    uint64_t conn_no; /* c's number */
} fixture_t;

/*
 * Starts a broker with fault f applied the mode's way and opens the
 * connection it applies to (x->c).  AT_START: opts.fault.  AT_RUN_TIME: the
 * connection first publishes "m1" to "t" normally, then the fault is set.
 * ONLY_CONN2: opts.fault with conn = 2; connection 1 (x->normal) publishes
 * "n1" first, so it is surely accepted first.  With pub_first, x->c
 * publishes "m1" (answered OK) in every mode, so a fault at k = 2 hits its
 * second publish in every mode.
 */
static void fx_start(fixture_t *x, int mode, const nsq_testd_fault_t *f,
                     bool pub_first)
{
    memset(x, 0, sizeof *x);
    x->mode = mode;
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    if (mode == AT_START)
        opts.fault = *f;
    if (mode == ONLY_CONN2) {
        opts.fault = *f;
        opts.fault.conn = 2;
    }
    x->t = start_broker(&opts);
    x->conn_no = 1;
    if (mode == ONLY_CONN2) {
        x->normal = cl_open(x->t);
        cl_pub(x->normal, "t", "n1");
        expect_ok(x->normal);
        x->conn_no = 2;
    }
    x->c = cl_open(x->t);
    if (pub_first || mode == AT_RUN_TIME) {
        cl_pub(x->c, "t", "m1");
        expect_ok(x->c);
        expect_record(x->t, "t", nsq_testd_count(x->t, "t") - 1, "m1", 2, 0,
                      x->conn_no);
    }
    if (mode == AT_RUN_TIME)
        nsq_testd_set_fault(x->t, f);
}

/* ONLY_CONN2: connection 1 is still normal after the fault hit 2. */
static void fx_finish(fixture_t *x)
{
    if (x->normal) {
        cl_pub(x->normal, "t", "n2");
        expect_ok(x->normal);
        uint64_t n = nsq_testd_count(x->t, "t");
        expect_record(x->t, "t", (size_t)n - 1, "n2", 2, 0, 1);
    }
    cl_free(x->normal);
    cl_free(x->c);
    nsq_testd_destroy(x->t);
}

/* The second message is recorded, its PUB unanswered, the socket closed. */
START_TEST(fault_close_after)
{
    nsq_testd_fault_t f = {.close_after_msgs = 2};
    fixture_t x;
    fx_start(&x, _i, &f, true);
    uint64_t before = nsq_testd_count(x.t, "t");
    cl_pub(x.c, "t", "m2");
    expect_eof(x.c);
    ck_assert(nsq_testd_wait_count(x.t, "t", before + 1, WAIT_MS));
    expect_record(x.t, "t", before, "m2", 2, 0, x.conn_no);
    ck_assert_uint_eq(stats_of(x.t).errors, 0);
    fx_finish(&x);
}
END_TEST

/*
 * Every answer is delayed, in order: the reply to IDENTIFY, the OK of a PUB
 * pipelined behind it, then the fatal error of a third command, and only
 * then the close.
 */
START_TEST(fault_delay)
{
    const int64_t delay = 300;
    nsq_testd_fault_t f = {.delay_ms = delay};
    fixture_t x;
    fx_start(&x, _i, &f, false);
    uint64_t before = nsq_testd_count(x.t, "t");
    nsq_buf_t b = {0};
    identify_cmd(&b, 0);
    ck_assert_int_eq(nsq_cmd_pub(&b, "t", "d1", 2, NULL), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_fin(&b, "0123456789abcdef"), NSQ_OK);
    int64_t t0 = tt_now_ms();
    send_buf(x.c, &b);
    nsq_identify_reply_t rep;
    expect_identify_reply(x.c, &rep);
    /* A lower bound only: the answer cannot come before the delay. */
    ck_assert_int_ge(tt_now_ms() - t0, delay - 5);
    expect_ok(x.c);
    expect_error(x.c, "E_INVALID cannot FIN in current state");
    expect_eof(x.c);
    expect_record(x.t, "t", before, "d1", 2, 0, x.conn_no);
    fx_finish(&x);
}
END_TEST

/*
 * Commands are read and recorded but never answered, and no heartbeat is
 * sent although IDENTIFY asked for one every second.  The client keeps the
 * connection alive with NOPs while it watches for two intervals.
 */
START_TEST(fault_stall)
{
    nsq_testd_fault_t f = {.stall = true};
    fixture_t x;
    fx_start(&x, _i, &f, false);
    uint64_t before = nsq_testd_count(x.t, "t");
    cl_identify(x.c, HB_MS);
    cl_pub(x.c, "t", "s1");
    ck_assert(nsq_testd_wait_count(x.t, "t", before + 1, WAIT_MS));
    for (int i = 0; i < 2 * HB_MS / 400; i++) {
        expect_quiet(x.c, 400);
        cl_nop(x.c);
    }
    nsq_testd_stats_t st = stats_of(x.t);
    ck_assert_uint_eq(st.heartbeats, 0);
    ck_assert_uint_eq(st.timed_out, 0);
    expect_record(x.t, "t", before, "s1", 2, 0, x.conn_no);
    if (x.mode == AT_RUN_TIME) {
        /* Cleared, the same connection is answered again. */
        nsq_testd_set_fault(x.t, NULL);
        x.c->skip_heartbeats = true;
        cl_pub(x.c, "t", "s2");
        expect_ok(x.c);
        expect_record(x.t, "t", before + 1, "s2", 2, 0, x.conn_no);
    }
    fx_finish(&x);
}
END_TEST

/* The second publish (PUB, MPUB or DPUB: _i / NMODES) fails with nsqd's
 * E_*_FAILED text and a close, and is not recorded. */
START_TEST(fault_pub_failed)
{
    static const char *const prefixes[] = {"E_PUB_FAILED PUB failed ",
                                           "E_MPUB_FAILED MPUB failed ",
                                           "E_DPUB_FAILED DPUB failed "};
    static const nsq_err_t codes[] = {NSQ_E_PUB_FAILED, NSQ_E_MPUB_FAILED,
                                      NSQ_E_DPUB_FAILED};
    int kind = _i / NMODES;
    nsq_testd_fault_t f = {.pub_failed_at = 2};
    fixture_t x;
    fx_start(&x, _i % NMODES, &f, true);
    uint64_t before = nsq_testd_count(x.t, "t");
    nsq_iov_t msgs[2] = {{"a", 1}, {"b", 1}};
    if (kind == 0)
        cl_pub(x.c, "t", "m2");
    else if (kind == 1)
        cl_mpub(x.c, "t", msgs, 2);
    else
        cl_dpubn(x.c, "t", 1000, "m2", 2);
    expect_error_prefix(x.c, prefixes[kind], codes[kind]);
    expect_eof(x.c);
    ck_assert_uint_eq(nsq_testd_count(x.t, "t"), before);
    ck_assert_uint_eq(stats_of(x.t).errors, 1);
    fx_finish(&x);
}
END_TEST

static const char malformed_small[] = {0, 0, 0, 2, 0, 0};
static const char malformed_huge[] = {0x7f, (char)0xff, (char)0xff, (char)0xff,
                                      0,    0,          0,          0};
static const char malformed_type7[] = {0, 0, 0, 6, 0, 0, 0, 7, 'O', 'K'};
static const char ok_frame[] = {0, 0, 0, 6, 0, 0, 0, 0, 'O', 'K'};

/* One PUB on a new connection, answered OK?  No assertions: a refused
 * connection may fail at any step. */
static bool try_pub(uint16_t port, const char *body)
{
    int fd = tt_connect(port);
    if (fd < 0)
        return false;
    nsq_buf_t b = {0};
    char got[sizeof ok_frame];
    bool ok = nsq_cmd_magic(&b) == NSQ_OK &&
              nsq_cmd_pub(&b, "t", body, strlen(body), NULL) == NSQ_OK &&
              tt_send_all(fd, b.data, b.len) &&
              tt_recv_exact(fd, got, sizeof got, WAIT_MS) &&
              memcmp(got, ok_frame, sizeof got) == 0;
    nsq_buf_free(&b);
    close(fd);
    return ok;
}

static void malformed_bytes(nsq_testd_malformed_t kind, const char **p,
                            size_t *n)
{
    switch (kind) {
    case NSQ_TESTD_MALFORMED_SMALL_SIZE:
        *p = malformed_small;
        *n = sizeof malformed_small;
        break;
    case NSQ_TESTD_MALFORMED_HUGE_SIZE:
        *p = malformed_huge;
        *n = sizeof malformed_huge;
        break;
    default:
        *p = malformed_type7;
        *n = sizeof malformed_type7;
        break;
    }
}

/* The frame reader a client uses rejects the bytes the fault sends. */
static void expect_reader_rejects(const char *p, size_t n)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    nsq_frame_t f;
    nsq_err_t e = nsq_frame_reader_feed(r, p, n);
    int rc = e == NSQ_OK ? nsq_frame_reader_next(r, &f) : (int)e;
    ck_assert_int_eq(rc, NSQ_ERR_BAD_FRAME);
    nsq_frame_reader_destroy(r);
}

/* The second publish is answered by exactly the malformed bytes of the kind
 * (_i / NMODES + 1); it is recorded, and the third is answered OK. */
START_TEST(fault_malformed)
{
    nsq_testd_malformed_t kind = (nsq_testd_malformed_t)(_i / NMODES + 1);
    nsq_testd_fault_t f = {.malformed = kind, .malformed_at = 2};
    fixture_t x;
    fx_start(&x, _i % NMODES, &f, true);
    uint64_t before = nsq_testd_count(x.t, "t");
    const char *bytes;
    size_t n;
    malformed_bytes(kind, &bytes, &n);
    cl_pub(x.c, "t", "m2");
    expect_raw(x.c, bytes, n);
    cl_pub(x.c, "t", "m3");
    expect_raw(x.c, ok_frame, sizeof ok_frame);
    ck_assert(nsq_testd_wait_count(x.t, "t", before + 2, WAIT_MS));
    expect_record(x.t, "t", before, "m2", 2, 0, x.conn_no);
    expect_record(x.t, "t", before + 1, "m3", 2, 0, x.conn_no);
    expect_reader_rejects(bytes, n);
    fx_finish(&x);
}
END_TEST

/* malformed_at 0 means the first publish (--malformed-at's default 1). */
START_TEST(fault_malformed_at_default)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.fault.malformed = NSQ_TESTD_MALFORMED_BAD_TYPE;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c = cl_open(t);
    cl_pub(c, "t", "m1");
    expect_raw(c, malformed_type7, sizeof malformed_type7);
    cl_pub(c, "t", "m2");
    expect_raw(c, ok_frame, sizeof ok_frame);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/*
 * IDENTIFY asks for a heartbeat every second; none comes, and the silent
 * client is dropped by the read deadline.  Connection 1 of ONLY_CONN2 gets
 * its heartbeat.
 */
START_TEST(fault_no_heartbeats)
{
    nsq_testd_fault_t f = {.no_heartbeats = true};
    fixture_t x;
    fx_start(&x, _i, &f, false);
    nsq_identify_reply_t rep;
    cl_identify(x.c, HB_MS);
    expect_identify_reply(x.c, &rep);
    expect_eof(x.c);
    nsq_testd_stats_t st = stats_of(x.t);
    ck_assert_uint_eq(st.heartbeats, 0);
    ck_assert_uint_eq(st.timed_out, 1);
    if (x.normal) {
        cl_identify(x.normal, HB_MS);
        expect_identify_reply(x.normal, &rep);
        expect_frame(x.normal, NSQ_FRAME_RESPONSE, "_heartbeat_");
        ck_assert_uint_ge(stats_of(x.t).heartbeats, 1);
        x.normal->skip_heartbeats = true;
    }
    fx_finish(&x);
}
END_TEST

/* Refused connections are reset at once and counted; live ones go on. */
START_TEST(fault_refuse)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    nsq_testd_fault_t f = {.refuse = true};
    if (_i == AT_START)
        opts.fault = f;
    if (_i == ONLY_CONN2) {
        opts.fault = f;
        opts.fault.conn = 2;
    }
    nsq_testd_t *t = start_broker(&opts);
    client_t *live = NULL;
    if (_i != AT_START) {
        live = cl_open(t);
        cl_pub(live, "t", "l1");
        expect_ok(live);
    }
    if (_i == AT_RUN_TIME)
        nsq_testd_set_fault(t, &f);
    expect_reset_conn(t);
    uint64_t refused = 1;
    if (_i == AT_START) {
        expect_reset_conn(t);
        refused = 2;
    }
    if (_i == AT_RUN_TIME)
        nsq_testd_set_fault(t, NULL);
    if (live) {
        /* The connection accepted before is untouched ... */
        cl_pub(live, "t", "l2");
        expect_ok(live);
        /* ... and so is one accepted after: only the 2nd is refused, and
         * at run time the fault is cleared by set_fault(NULL). */
        client_t *c = cl_open(t);
        cl_pub(c, "t", "l3");
        expect_ok(c);
        cl_free(c);
    }
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.refused, refused);
    ck_assert_uint_eq(st.accepted, _i == AT_START ? 2 : 3);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), _i == AT_START ? 0 : 3);
    cl_free(live);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */
/* ------------------------------------------------------------------------ */

START_TEST(limit_max_msg_size)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.info.limits.max_msg_size = 100;
    nsq_testd_t *t = start_broker(&opts);
    char body[101];
    memset(body, 'x', sizeof body);

    client_t *c = cl_open(t);
    cl_pubn(c, "t", body, 100);
    expect_ok(c);
    cl_dpubn(c, "t", 10, body, 100);
    expect_ok(c);
    nsq_iov_t ok_msgs[2] = {{body, 100}, {body, 1}};
    cl_mpub(c, "t", ok_msgs, 2);
    expect_ok(c);
    cl_pubn(c, "t", body, 101);
    expect_error(c, "E_BAD_MESSAGE PUB message too big 101 > 100");
    expect_eof(c);
    cl_free(c);

    c = cl_open(t);
    cl_dpubn(c, "t", 10, body, 101);
    expect_error(c, "E_BAD_MESSAGE DPUB message too big 101 > 100");
    expect_eof(c);
    cl_free(c);

    c = cl_open(t);
    nsq_iov_t big_msgs[2] = {{body, 1}, {body, 101}};
    cl_mpub(c, "t", big_msgs, 2);
    expect_error(c, "E_BAD_MESSAGE MPUB message too big 101 > 100");
    expect_eof(c);
    cl_free(c);

    ck_assert_uint_eq(nsq_testd_count(t, "t"), 4);
    ck_assert_uint_eq(nsq_testd_bytes(t, "t"), 301);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(limit_max_body_size)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    /* An MPUB of two 10-byte messages has a body of 4 + 2 * (4 + 10). */
    opts.info.limits.max_body_size = 32;
    nsq_testd_t *t = start_broker(&opts);
    char body[64];
    memset(body, 'y', sizeof body);

    client_t *c = cl_open(t);
    nsq_iov_t ok_msgs[2] = {{body, 10}, {body, 10}};
    cl_mpub(c, "t", ok_msgs, 2);
    expect_ok(c);
    /* PUB is bounded by max_msg_size alone, as in nsqd. */
    cl_pubn(c, "t", body, 64);
    expect_ok(c);
    nsq_iov_t big_msgs[2] = {{body, 10}, {body, 11}};
    cl_mpub(c, "t", big_msgs, 2);
    expect_error(c, "E_BAD_BODY MPUB body too big 33 > 32");
    expect_eof(c);
    cl_free(c);

    /* IDENTIFY's body is bounded too. */
    c = cl_open(t);
    nsq_buf_t b = {0};
    identify_cmd(&b, 0);
    char want[80];
    snprintf(want, sizeof want, "E_BAD_BODY IDENTIFY body too big %zu > 32",
             b.len - strlen("IDENTIFY\n") - 4);
    send_buf(c, &b);
    expect_error(c, want);
    expect_eof(c);
    cl_free(c);

    ck_assert_uint_eq(nsq_testd_count(t, "t"), 3);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(limit_max_defer)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.info.limits.max_req_timeout_ms = 5000;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c = cl_open(t);
    cl_dpubn(c, "t", 5000, "d", 1);
    expect_ok(c);
    cl_dpubn(c, "t", 5001, "d", 1);
    expect_error(c, "E_INVALID DPUB timeout 5001 out of range 0-5000");
    expect_eof(c);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 1);
    expect_record(t, "t", 0, "d", 1, 5000, 1);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(limit_max_rdy_count)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.info.limits.max_rdy_count = 10;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c = cl_open(t);
    nsq_identify_reply_t rep;
    cl_identify(c, 0);
    expect_identify_reply(c, &rep);
    ck_assert_int_eq(rep.max_rdy_count, 10);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_sub(&b, "t", "ch"), NSQ_OK);
    send_buf(c, &b);
    expect_ok(c);
    ck_assert_int_eq(nsq_cmd_rdy(&b, 10, NULL), NSQ_OK);
    send_buf(c, &b);
    expect_quiet(c, QUIET_MS);
    ck_assert_int_eq(nsq_cmd_rdy(&b, 11, NULL), NSQ_OK);
    send_buf(c, &b);
    expect_error(c, "E_INVALID RDY count 11 out of range 0-10");
    expect_eof(c);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Heartbeats                                                               */
/* ------------------------------------------------------------------------ */

START_TEST(heartbeat_arrives)
{
    nsq_testd_t *t = start_default();
    client_t *c = cl_open(t);
    nsq_identify_reply_t rep;
    cl_identify(c, HB_MS);
    expect_identify_reply(c, &rep);
    expect_frame(c, NSQ_FRAME_RESPONSE, "_heartbeat_");
    expect_frame(c, NSQ_FRAME_RESPONSE, "_heartbeat_");
    ck_assert_uint_ge(stats_of(t).heartbeats, 2);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* A client that never answers is dropped after two intervals. */
START_TEST(heartbeat_silent_client_dropped)
{
    nsq_testd_t *t = start_default();
    client_t *c = cl_open(t);
    c->skip_heartbeats = true;
    nsq_identify_reply_t rep;
    int64_t t0 = tt_now_ms();
    cl_identify(c, HB_MS);
    expect_identify_reply(c, &rep);
    expect_eof(c);
    /* A lower bound: nsqd's read deadline is twice the interval. */
    ck_assert_int_ge(tt_now_ms() - t0, 2 * HB_MS - 5);
    /* The upper bound, by events: a heartbeat goes out each interval, so a
     * deadline of two intervals lets at most two reach the client before
     * the close (the one due at the deadline goes out first). */
    ck_assert_int_ge(c->heartbeats, 1);
    ck_assert_msg(c->heartbeats <= 2,
                  "%d heartbeats before the close: the deadline is later "
                  "than two intervals",
                  c->heartbeats);
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.timed_out, 1);
    ck_assert_uint_ge(st.heartbeats, 1);
    ck_assert(nsq_testd_wait_idle(t, WAIT_MS));
    ck_assert_uint_eq(stats_of(t).closed, 1);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* A client that answers each heartbeat with NOP outlives the deadline. */
START_TEST(heartbeat_nop_client_stays)
{
    nsq_testd_t *t = start_default();
    client_t *c = cl_open(t);
    nsq_identify_reply_t rep;
    int64_t t0 = tt_now_ms();
    cl_identify(c, HB_MS);
    expect_identify_reply(c, &rep);
    for (int i = 0; i < 3; i++) {
        expect_frame(c, NSQ_FRAME_RESPONSE, "_heartbeat_");
        cl_nop(c);
    }
    ck_assert_int_ge(tt_now_ms() - t0, 2 * HB_MS);
    c->skip_heartbeats = true;
    cl_pub(c, "t", "alive");
    expect_ok(c);
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.timed_out, 0);
    ck_assert_uint_eq(st.active, 1);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* AUTH                                                                     */
/* ------------------------------------------------------------------------ */

static nsq_testd_t *start_auth(const char *identity, const char *prefix)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.auth_secret = "s3cret";
    opts.auth_identity = identity;
    opts.auth_topic_prefix = prefix;
    return start_broker(&opts);
}

/* A connection that has identified; returns auth_required of the reply. */
static client_t *cl_identified(nsq_testd_t *t, bool *auth_required)
{
    client_t *c = cl_open(t);
    nsq_identify_reply_t rep;
    cl_identify(c, 0);
    expect_identify_reply(c, &rep);
    *auth_required = rep.auth_required;
    return c;
}

START_TEST(auth_flow)
{
    nsq_testd_t *t = start_auth("bench", NULL);
    bool required = false;

    client_t *c = cl_identified(t, &required);
    ck_assert(required);
    cl_pub(c, "t", "x");
    expect_error(c, "E_AUTH_FIRST AUTH required before PUB");
    expect_eof(c);
    cl_free(c);

    c = cl_identified(t, &required);
    cl_auth(c, "wrong");
    expect_error(c, "E_AUTH_FAILED AUTH failed");
    expect_eof(c);
    cl_free(c);

    c = cl_identified(t, &required);
    cl_auth(c, "s3cret");
    static const char reply[] =
        "{\"identity\":\"bench\",\"identity_url\":\"\",\"permission_count\":1}";
    expect_frame(c, NSQ_FRAME_RESPONSE, reply);
    nsq_auth_reply_t ar;
    ck_assert_int_eq(
        nsq_auth_reply_parse(c->data.data, c->data.len, &ar, NULL, 0), NSQ_OK);
    ck_assert_str_eq(ar.identity, "bench");
    ck_assert_int_eq(ar.permission_count, 1);
    cl_pub(c, "t", "x");
    expect_ok(c);
    cl_free(c);

    ck_assert_uint_eq(nsq_testd_count(t, "t"), 1);
    ck_assert_uint_eq(stats_of(t).errors, 2);
    nsq_testd_destroy(t);

    /* Without a secret the broker does not ask for AUTH. */
    t = start_default();
    c = cl_identified(t, &required);
    ck_assert(!required);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* A NULL auth_identity answers as "testd". */
START_TEST(auth_default_identity)
{
    nsq_testd_t *t = start_auth(NULL, NULL);
    bool required = false;
    client_t *c = cl_identified(t, &required);
    ck_assert(required);
    cl_auth(c, "s3cret");
    expect_frame(c, NSQ_FRAME_RESPONSE,
                 "{\"identity\":\"testd\",\"identity_url\":\"\","
                 "\"permission_count\":1}");
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* With a topic prefix, publishes elsewhere get nsqd's E_UNAUTHORIZED. */
START_TEST(auth_topic_prefix)
{
    nsq_testd_t *t = start_auth("bench", "ok_");
    bool required = false;
    static const char *const want[] = {
        "E_UNAUTHORIZED AUTH failed for PUB on \"t\" \"\"",
        "E_UNAUTHORIZED AUTH failed for MPUB on \"t\" \"\"",
        "E_UNAUTHORIZED AUTH failed for DPUB on \"t\" \"\"",
    };
    nsq_iov_t msgs[1] = {{"x", 1}};
    for (int i = 0; i < 3; i++) {
        client_t *c = cl_identified(t, &required);
        cl_auth(c, "s3cret");
        ck_assert_int_eq(cl_next(c, WAIT_MS), 1);
        ck_assert_int_eq(c->type, NSQ_FRAME_RESPONSE);
        cl_pub(c, "ok_a", "x");
        expect_ok(c);
        if (i == 0)
            cl_pub(c, "t", "x");
        else if (i == 1)
            cl_mpub(c, "t", msgs, 1);
        else
            cl_dpubn(c, "t", 10, "x", 1);
        expect_error(c, want[i]);
        expect_eof(c);
        cl_free(c);
    }
    ck_assert_uint_eq(nsq_testd_count(t, "ok_a"), 3);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 0);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Records and the dump                                                     */
/* ------------------------------------------------------------------------ */

START_TEST(records_messages)
{
    nsq_testd_t *t = start_default();
    client_t *c1 = cl_open(t);
    cl_pub(c1, "t", "hello");
    expect_ok(c1);
    cl_dpubn(c1, "t", 1500, "a\0b", 3);
    expect_ok(c1);
    client_t *c2 = cl_open(t);
    nsq_iov_t msgs[2] = {{"x", 1}, {"\0\0", 2}};
    cl_mpub(c2, "t", msgs, 2);
    expect_ok(c2);

    ck_assert_uint_eq(nsq_testd_count(t, "t"), 4);
    ck_assert_uint_eq(nsq_testd_bytes(t, "t"), 11);
    expect_record(t, "t", 0, "hello", 5, 0, 1);
    expect_record(t, "t", 1, "a\0b", 3, 1500, 1);
    expect_record(t, "t", 2, "x", 1, 0, 2);
    expect_record(t, "t", 3, "\0\0", 2, 0, 2);
    nsq_testd_msg_t m;
    ck_assert(!nsq_testd_message(t, "t", 4, &m));
    ck_assert(!nsq_testd_message(t, "other", 0, &m));
    ck_assert_uint_eq(nsq_testd_count(t, "other"), 0);
    ck_assert_uint_eq(nsq_testd_bytes(t, "other"), 0);
    cl_free(c1);
    cl_free(c2);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct late_pub {
    uint16_t port;
    int delay_ms;
    bool ok; /* the PUB was answered OK */
} late_pub_t;

/* Publishes one message on its own connection after a pause; no Check
 * assertions off the test's thread. */
static void *late_pub_main(void *arg)
{
    late_pub_t *lp = arg;
    usleep((useconds_t)lp->delay_ms * 1000);
    lp->ok = try_pub(lp->port, "late");
    return NULL;
}

START_TEST(records_wait_count)
{
    nsq_testd_t *t = start_default();
    client_t *c = cl_open(t);
    cl_pub(c, "t", "one");
    expect_ok(c);
    ck_assert(nsq_testd_wait_count(t, "t", 1, WAIT_MS));
    ck_assert(nsq_testd_wait_count(t, "t", 0, 0));
    int64_t t0 = tt_now_ms();
    ck_assert(!nsq_testd_wait_count(t, "t", 2, 200));
    ck_assert_int_ge(tt_now_ms() - t0, 195);
    ck_assert(!nsq_testd_wait_count(t, "nothing", 1, 50));
    /* An unknown topic has 0 messages, which is "at least 0". */
    ck_assert(nsq_testd_wait_count(t, "nothing", 0, 50));

    /* A publish that arrives during the wait ends it. */
    late_pub_t lp = {nsq_testd_port(t), 100, false};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, late_pub_main, &lp), 0);
    bool got = nsq_testd_wait_count(t, "t", 2, WAIT_MS);
    pthread_join(th, NULL);
    ck_assert(got);
    ck_assert(lp.ok);
    expect_record(t, "t", 1, "late", 4, 0, 2);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(records_clear)
{
    nsq_testd_t *t = start_default();
    client_t *c = cl_open(t);
    cl_pub(c, "t", "before");
    expect_ok(c);
    cl_pub(c, "u", "other");
    expect_ok(c);
    nsq_testd_clear(t);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 0);
    ck_assert_uint_eq(nsq_testd_bytes(t, "t"), 0);
    ck_assert_uint_eq(nsq_testd_count(t, "u"), 0);
    nsq_testd_msg_t m;
    ck_assert(!nsq_testd_message(t, "t", 0, &m));
    ck_assert(!nsq_testd_wait_count(t, "t", 1, 50));
    cl_pub(c, "t", "after");
    expect_ok(c);
    ck_assert(nsq_testd_wait_count(t, "t", 1, WAIT_MS));
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 1);
    ck_assert_uint_eq(nsq_testd_bytes(t, "t"), 5);
    expect_record(t, "t", 0, "after", 5, 0, 1);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

/* max_recorded caps the copies kept; count and bytes go on. */
START_TEST(records_max_recorded)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.max_recorded = 3;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c = cl_open(t);
    nsq_iov_t msgs[5] = {{"m0", 2}, {"m1", 2}, {"m2", 2}, {"m3", 2}, {"m4", 2}};
    cl_mpub(c, "t", msgs, 5);
    expect_ok(c);
    cl_pub(c, "t", "m5");
    expect_ok(c);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 6);
    ck_assert_uint_eq(nsq_testd_bytes(t, "t"), 12);
    expect_record(t, "t", 0, "m0", 2, 0, 1);
    expect_record(t, "t", 2, "m2", 2, 0, 1);
    nsq_testd_msg_t m;
    ck_assert(!nsq_testd_message(t, "t", 3, &m));
    ck_assert(!nsq_testd_message(t, "t", 5, &m));
    /* The cap is per topic. */
    cl_pub(c, "u", "u0");
    expect_ok(c);
    expect_record(t, "u", 0, "u0", 2, 0, 1);
    /* After clear, the first messages are kept again. */
    nsq_testd_clear(t);
    cl_pub(c, "t", "n0");
    expect_ok(c);
    expect_record(t, "t", 0, "n0", 2, 0, 1);
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

typedef struct dump_line {
    cJSON *o;
    bool summary;
} dump_line_t;

/* Reads the dump: each line one JSON object; returns the number of lines. */
static size_t read_dump(const char *path, dump_line_t *lines, size_t max)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        ck_assert_uint_lt(n, max);
        ck_assert_msg(line[len - 1] == '\n', "line %zu: no newline", n);
        cJSON *o = cJSON_Parse(line);
        ck_assert_msg(cJSON_IsObject(o), "line %zu is not an object: %s", n,
                      line);
        cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "summary");
        lines[n].o = o;
        lines[n].summary = cJSON_IsTrue(s);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s", key);
    return v->valuedouble;
}

/* The dumped message (topic, index) has these fields; exactly one of body
 * and body_base64 is given. */
static void expect_dumped(const dump_line_t *lines, size_t n, const char *topic,
                          int index, int size, int defer_ms, int conn,
                          const char *body, const char *b64)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = lines[i].o;
        if (lines[i].summary || !json_str(o, "topic") ||
            strcmp(json_str(o, "topic"), topic) != 0 ||
            json_num(o, "index") != index)
            continue;
        ck_assert_int_eq((int)json_num(o, "size"), size);
        ck_assert_int_eq((int)json_num(o, "defer_ms"), defer_ms);
        ck_assert_int_eq((int)json_num(o, "conn"), conn);
        if (body) {
            ck_assert_pstr_eq(json_str(o, "body"), body);
            ck_assert_ptr_null(cJSON_GetObjectItem(o, "body_base64"));
        } else {
            ck_assert_pstr_eq(json_str(o, "body_base64"), b64);
            ck_assert_ptr_null(cJSON_GetObjectItem(o, "body"));
        }
        return;
    }
    ck_abort_msg("message %s/%d not in the dump", topic, index);
}

static void expect_summary(const dump_line_t *lines, size_t n,
                           const char *topic, int count, int bytes)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = lines[i].o;
        const char *name = json_str(o, "topic");
        if (!lines[i].summary || !name || strcmp(name, topic) != 0)
            continue;
        ck_assert_int_eq((int)json_num(o, "count"), count);
        ck_assert_int_eq((int)json_num(o, "bytes"), bytes);
        return;
    }
    ck_abort_msg("no summary of %s in the dump", topic);
}

START_TEST(records_dump)
{
    nsq_testd_t *t = start_default();
    char path[] = "/tmp/check_testd_dump_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);

    /* Nothing recorded: an empty file. */
    ck_assert_int_eq(nsq_testd_dump(t, path), 0);
    dump_line_t lines[16];
    ck_assert_uint_eq(read_dump(path, lines, 16), 0);

    client_t *c1 = cl_open(t);
    cl_pub(c1, "a", "hello");
    expect_ok(c1);
    cl_dpubn(c1, "a", 2000, "a\0b\xff", 4);
    expect_ok(c1);
    cl_pub(c1, "a", "h\xc3\xa9llo"); /* valid UTF-8: shown as text */
    expect_ok(c1);
    cl_pub(c1, "a", "\xc3("); /* invalid UTF-8 */
    expect_ok(c1);
    client_t *c2 = cl_open(t);
    cl_pub(c2, "b", "bee");
    expect_ok(c2);

    ck_assert_int_eq(nsq_testd_dump(t, path), 0);
    size_t n = read_dump(path, lines, 16);
    ck_assert_uint_eq(n, 7);
    /* Messages first, then one summary per topic. */
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(lines[i].summary, i >= 5);
    expect_dumped(lines, n, "a", 0, 5, 0, 1, "hello", NULL);
    expect_dumped(lines, n, "a", 1, 4, 2000, 1, NULL, "YQBi/w==");
    expect_dumped(lines, n, "a", 2, 6, 0, 1, "h\xc3\xa9llo", NULL);
    expect_dumped(lines, n, "a", 3, 2, 0, 1, NULL, "wyg=");
    expect_dumped(lines, n, "b", 0, 3, 0, 2, "bee", NULL);
    expect_summary(lines, n, "a", 4, 17);
    expect_summary(lines, n, "b", 1, 3);
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(lines[i].o);

    ck_assert_int_eq(nsq_testd_dump(t, "/nonexistent-dir/dump.jsonl"), -1);
    unlink(path);
    cl_free(c1);
    cl_free(c2);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Consumers                                                                */
/* ------------------------------------------------------------------------ */

static void cl_sub_rdy(client_t *c, const char *topic, int64_t rdy)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_sub(&b, topic, "ch"), NSQ_OK);
    send_buf(c, &b);
    expect_ok(c);
    ck_assert_int_eq(nsq_cmd_rdy(&b, rdy, NULL), NSQ_OK);
    send_buf(c, &b);
}

static void cl_fin(client_t *c, const char *id)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_fin(&b, id), NSQ_OK);
    send_buf(c, &b);
}

/* The next frame is a message with this body; its id goes to id. */
static void expect_message(client_t *c, const char *body, char *id)
{
    ck_assert_int_eq(cl_next(c, WAIT_MS), 1);
    ck_assert_int_eq(c->type, NSQ_FRAME_MESSAGE);
    nsq_message_t m;
    ck_assert_int_eq(nsq_message_decode(c->data.data, c->data.len, &m), NSQ_OK);
    ck_assert_uint_eq(m.body_len, strlen(body));
    ck_assert_mem_eq(m.body, body, m.body_len);
    ck_assert_uint_eq(m.attempts, 1);
    ck_assert_int_gt(m.timestamp_ns, 0);
    for (int i = 0; i < NSQ_MSG_ID_LEN; i++)
        ck_assert_ptr_nonnull(strchr("0123456789abcdef", m.id[i]));
    memcpy(id, m.id, NSQ_MSG_ID_LEN);
}

START_TEST(consumer_sub_rdy_fin)
{
    nsq_testd_t *t = start_default();
    client_t *sub = cl_open(t);
    cl_sub_rdy(sub, "t", 1);
    client_t *pub = cl_open(t);
    cl_pub(pub, "t", "hello consumer");
    expect_ok(pub);
    char id[NSQ_MSG_ID_LEN + 1] = "";
    expect_message(sub, "hello consumer", id);

    /* FIN of the message in flight is silent ... */
    cl_fin(sub, id);
    expect_quiet(sub, QUIET_MS);
    /* ... and a second FIN of it, or of an unknown id, fails without
     * closing. */
    char want[96];
    snprintf(want, sizeof want, "E_FIN_FAILED FIN %s failed ID not in flight",
             id);
    cl_fin(sub, id);
    expect_error(sub, want);
    cl_fin(sub, "0123456789abcdef");
    expect_error(sub,
                 "E_FIN_FAILED FIN 0123456789abcdef failed ID not in flight");
    expect_quiet(sub, QUIET_MS);

    /* Still open, and RDY 1 has room again since the FIN. */
    cl_pub(pub, "t", "second");
    expect_ok(pub);
    char id2[NSQ_MSG_ID_LEN + 1] = "";
    expect_message(sub, "second", id2);
    ck_assert_str_ne(id, id2);
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_cls(&b), NSQ_OK);
    send_buf(sub, &b);
    expect_frame(sub, NSQ_FRAME_RESPONSE, "CLOSE_WAIT");
    ck_assert_uint_eq(stats_of(t).errors, 2);
    ck_assert_uint_eq(nsq_testd_count(t, "t"), 2);
    cl_free(sub);
    cl_free(pub);
    nsq_testd_destroy(t);
}
END_TEST

/* RDY bounds the messages in flight; a message published before the first
 * channel existed is kept for it, as in nsqd. */
START_TEST(consumer_rdy_and_held)
{
    nsq_testd_t *t = start_default();
    client_t *pub = cl_open(t);
    cl_pub(pub, "t", "early");
    expect_ok(pub);
    cl_pub(pub, "t", "later");
    expect_ok(pub);
    client_t *sub = cl_open(t);
    cl_sub_rdy(sub, "t", 1);
    char id[NSQ_MSG_ID_LEN + 1] = "";
    expect_message(sub, "early", id);
    expect_quiet(sub, QUIET_MS); /* RDY 1: "later" waits for the FIN */
    cl_fin(sub, id);
    expect_message(sub, "later", id);
    cl_free(sub);
    cl_free(pub);
    nsq_testd_destroy(t);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Start, stop, the worker limit                                            */
/* ------------------------------------------------------------------------ */

START_TEST(start_address_and_errors)
{
    nsq_testd_t *t = start_default();
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)nsq_testd_port(t));
    ck_assert_str_eq(nsq_testd_address(t), want);

    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    char err[256] = "";
    opts.port = nsq_testd_port(t); /* taken */
    ck_assert_ptr_null(nsq_testd_start(&opts, err, sizeof err));
    ck_assert_str_ne(err, "");
    opts.port = 0;
    opts.host = "not-an-address";
    err[0] = '\0';
    ck_assert_ptr_null(nsq_testd_start(&opts, err, sizeof err));
    ck_assert_str_ne(err, "");
    nsq_testd_opts_default(&opts);
    opts.max_workers = 0;
    err[0] = '\0';
    ck_assert_ptr_null(nsq_testd_start(&opts, err, sizeof err));
    ck_assert_str_ne(err, "");
    nsq_testd_destroy(t);
}
END_TEST

enum { NCLIENTS = 5 };

/* NCLIENTS connections, each served (a PUB answered). */
static void open_clients(nsq_testd_t *t, client_t **cs)
{
    for (int i = 0; i < NCLIENTS; i++) {
        cs[i] = cl_open(t);
        cl_pub(cs[i], "t", "x");
        expect_ok(cs[i]);
    }
    ck_assert_uint_eq(stats_of(t).active, NCLIENTS);
}

static void expect_all_closed(nsq_testd_t *t, client_t **cs)
{
    for (int i = 0; i < NCLIENTS; i++) {
        expect_eof(cs[i]);
        cl_free(cs[i]);
    }
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.active, 0);
    ck_assert_uint_eq(st.closed, NCLIENTS);
}

START_TEST(stop_with_idle_clients)
{
    nsq_testd_t *t = start_default();
    uint16_t port = nsq_testd_port(t);
    client_t *cs[NCLIENTS];
    open_clients(t, cs);
    nsq_testd_stop(t);
    /* stop returns once every connection has ended. */
    ck_assert_uint_eq(stats_of(t).active, 0);
    expect_all_closed(t, cs);
    nsq_testd_stop(t);
    ck_assert_int_lt(tt_connect(port), 0);
    ck_assert(nsq_testd_wait_idle(t, 0));
    /* What was recorded outlives the stop. */
    ck_assert_uint_eq(nsq_testd_count(t, "t"), NCLIENTS);
    nsq_testd_destroy(t);
}
END_TEST

static void *stop_main(void *arg)
{
    nsq_testd_stop(arg);
    return NULL;
}

START_TEST(stop_from_two_threads)
{
    nsq_testd_t *t = start_default();
    client_t *cs[NCLIENTS];
    open_clients(t, cs);
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, stop_main, t), 0);
    ck_assert_int_eq(pthread_create(&b, NULL, stop_main, t), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    ck_assert_uint_eq(stats_of(t).active, 0);
    expect_all_closed(t, cs);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(destroy_with_clients)
{
    nsq_testd_t *t = start_default();
    client_t *cs[NCLIENTS];
    open_clients(t, cs);
    nsq_testd_destroy(t);
    for (int i = 0; i < NCLIENTS; i++) {
        expect_eof(cs[i]);
        cl_free(cs[i]);
    }
}
END_TEST

/* A connection with answers held back is cut after stop_timeout_ms. */
START_TEST(stop_forced_after_timeout)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.stop_timeout_ms = 200;
    opts.fault.delay_ms = 600000;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c = cl_open(t);
    cl_pub(c, "t", "held");
    ck_assert(nsq_testd_wait_count(t, "t", 1, WAIT_MS));
    nsq_testd_stop(t);
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.active, 0);
    ck_assert_uint_eq(st.closed, 1);
    expect_eof(c); /* the delayed OK is never sent */
    cl_free(c);
    nsq_testd_destroy(t);
}
END_TEST

START_TEST(worker_limit)
{
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.max_workers = 2;
    nsq_testd_t *t = start_broker(&opts);
    client_t *c1 = cl_open(t);
    cl_pub(c1, "t", "1");
    expect_ok(c1);
    client_t *c2 = cl_open(t);
    cl_pub(c2, "t", "2");
    expect_ok(c2);
    expect_reset_conn(t);
    nsq_testd_stats_t st = stats_of(t);
    ck_assert_uint_eq(st.busy, 1);
    ck_assert_uint_eq(st.refused, 0);
    ck_assert_uint_eq(st.accepted, 3);
    ck_assert_uint_eq(st.active, 2);
    ck_assert_uint_le(st.workers, 2);

    /* A freed worker serves the next connection.  The worker is back in
     * the pool a moment after the connection ends, so a connection that
     * comes first may still be refused: retry, bounded. */
    cl_free(c1);
    wait_active(t, 1);
    bool served = false;
    int64_t deadline = tt_now_ms() + WAIT_MS;
    while (!served && tt_now_ms() < deadline) {
        served = try_pub(nsq_testd_port(t), "4");
        if (!served)
            usleep(20000);
    }
    ck_assert(served);
    ck_assert_uint_le(stats_of(t).workers, 2);
    cl_free(c2);
    nsq_testd_destroy(t);
}
END_TEST

static Suite *testd_suite(void)
{
    Suite *s = suite_create("testd");
    struct {
        const char *name;
        TCase *tc;
    } groups[] = {{"faults", NULL},   {"limits", NULL},  {"heartbeats", NULL},
                  {"auth", NULL},     {"records", NULL}, {"consumers", NULL},
                  {"lifecycle", NULL}};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        groups[i].tc = tcase_create(groups[i].name);
        tcase_set_timeout(groups[i].tc, CASE_TIMEOUT);
        suite_add_tcase(s, groups[i].tc);
    }
    TCase *tc = groups[0].tc;
    tcase_add_loop_test(tc, fault_close_after, 0, NMODES);
    tcase_add_loop_test(tc, fault_delay, 0, NMODES);
    tcase_add_loop_test(tc, fault_stall, 0, NMODES);
    tcase_add_loop_test(tc, fault_pub_failed, 0, 3 * NMODES);
    tcase_add_loop_test(tc, fault_malformed, 0, 3 * NMODES);
    tcase_add_test(tc, fault_malformed_at_default);
    tcase_add_loop_test(tc, fault_no_heartbeats, 0, NMODES);
    tcase_add_loop_test(tc, fault_refuse, 0, NMODES);
    tc = groups[1].tc;
    tcase_add_test(tc, limit_max_msg_size);
    tcase_add_test(tc, limit_max_body_size);
    tcase_add_test(tc, limit_max_defer);
    tcase_add_test(tc, limit_max_rdy_count);
    tc = groups[2].tc;
    tcase_add_test(tc, heartbeat_arrives);
    tcase_add_test(tc, heartbeat_silent_client_dropped);
    tcase_add_test(tc, heartbeat_nop_client_stays);
    tc = groups[3].tc;
    tcase_add_test(tc, auth_flow);
    tcase_add_test(tc, auth_default_identity);
    tcase_add_test(tc, auth_topic_prefix);
    tc = groups[4].tc;
    tcase_add_test(tc, records_messages);
    tcase_add_test(tc, records_wait_count);
    tcase_add_test(tc, records_clear);
    tcase_add_test(tc, records_max_recorded);
    tcase_add_test(tc, records_dump);
    tc = groups[5].tc;
    tcase_add_test(tc, consumer_sub_rdy_fin);
    tcase_add_test(tc, consumer_rdy_and_held);
    tc = groups[6].tc;
    tcase_add_test(tc, start_address_and_errors);
    tcase_add_test(tc, stop_with_idle_clients);
    tcase_add_test(tc, stop_from_two_threads);
    tcase_add_test(tc, destroy_with_clients);
    tcase_add_test(tc, stop_forced_after_timeout);
    tcase_add_test(tc, worker_limit);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(testd_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
