/*
 * A consumer made of the project's codec: the command encoders write
 * IDENTIFY/SUB/RDY/FIN/NOP and the frame reader takes nsqd's frames, so a
 * body read back is exactly the bytes nsqd stored.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interop.h"
#include "nettest.h"
#include "nsq/broker.h"

struct it_sub {
    int fd;
    nsq_frame_reader_t *reader;
};

static void send_buf(it_sub_t *s, nsq_buf_t *b)
{
    ck_assert_msg(tt_send_all(s->fd, b->data, b->len), "consumer write: %s",
                  strerror(errno));
    b->len = 0;
}

/* The next frame within ms; false on timeout.  Fails the case on EOF or a
 * frame error. */
static bool next_frame(it_sub_t *s, nsq_frame_t *f, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        int r = nsq_frame_reader_next(s->reader, f);
        ck_assert_msg(r >= 0, "consumer frame: %s",
                      nsq_frame_reader_errstr(s->reader));
        if (r == 1)
            return true;
        int64_t left = deadline - tt_now_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {s->fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        size_t avail;
        char *space = nsq_frame_reader_space(s->reader, 4096, &avail);
        ck_assert_ptr_nonnull(space);
        ssize_t n = recv(s->fd, space, avail, 0);
        ck_assert_msg(n > 0, "consumer read: %s",
                      n == 0 ? "nsqd closed" : strerror(errno));
        ck_assert_int_eq(nsq_frame_reader_commit(s->reader, (size_t)n), NSQ_OK);
    }
}

/* Expects a response frame (skipping heartbeats, which it answers). */
static void expect_response(it_sub_t *s, const char *what)
{
    nsq_frame_t f;
    ck_assert_msg(next_frame(s, &f, IT_WAIT_MS), "no answer to %s", what);
    ck_assert_msg(f.type == NSQ_FRAME_RESPONSE, "%s: %.*s", what, (int)f.len,
                  f.data);
}

it_sub_t *it_sub_open(uint16_t port, const char *topic, const char *channel,
                      int rdy)
{
    it_sub_t *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    s->fd = tt_connect(port);
    ck_assert_msg(s->fd >= 0, "consumer connect to %u", port);
    s->reader = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(s->reader);

    nsq_buf_t b;
    nsq_buf_init(&b);
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = "interop-consumer";
    id.hostname = "localhost";
    id.user_agent = "nsqpub-interop";
    id.heartbeat_interval = 0; /* nsqd's default, whatever its maximum */
    ck_assert_int_eq(nsq_cmd_magic(&b), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_identify(&b, &id), NSQ_OK);
    send_buf(s, &b);
    expect_response(s, "IDENTIFY");
    ck_assert_int_eq(nsq_cmd_sub(&b, topic, channel), NSQ_OK);
    send_buf(s, &b);
    expect_response(s, "SUB");
    ck_assert_int_eq(nsq_cmd_rdy(&b, rdy, NULL), NSQ_OK);
    send_buf(s, &b);
    nsq_buf_free(&b);
    return s;
}

bool it_sub_next(it_sub_t *s, it_msg_t *m, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    nsq_buf_t b;
    nsq_buf_init(&b);
    for (;;) {
        int64_t left = deadline - tt_now_ms();
        nsq_frame_t f;
        if (left <= 0 || !next_frame(s, &f, (int)left)) {
            nsq_buf_free(&b);
            return false;
        }
        if (f.type == NSQ_FRAME_RESPONSE && f.len == 11 &&
            memcmp(f.data, "_heartbeat_", 11) == 0) {
            ck_assert_int_eq(nsq_cmd_nop(&b), NSQ_OK);
            send_buf(s, &b);
            continue;
        }
        ck_assert_msg(f.type == NSQ_FRAME_MESSAGE, "consumer got %d: %.*s",
                      f.type, (int)f.len, f.data);
        nsq_message_t msg;
        ck_assert_int_eq(nsq_message_decode(f.data, f.len, &msg), NSQ_OK);
        m->recv_ms = tt_now_ms();
        m->attempts = msg.attempts;
        m->len = msg.body_len;
        m->body = malloc(msg.body_len + 1);
        ck_assert_ptr_nonnull(m->body);
        memcpy(m->body, msg.body, msg.body_len);
        m->body[msg.body_len] = '\0';
        ck_assert_int_eq(nsq_cmd_fin(&b, msg.id), NSQ_OK);
        send_buf(s, &b);
        nsq_buf_free(&b);
        return true;
    }
}

void it_sub_close(it_sub_t *s)
{
    if (!s)
        return;
    close(s->fd);
    nsq_frame_reader_destroy(s->reader);
    free(s);
}

void it_msg_free(it_msg_t *m)
{
    free(m->body);
    m->body = NULL;
}

size_t it_consume(const it_nsqd_t *d, const char *topic, size_t want,
                  it_msg_t **out)
{
    it_msg_t *msgs = calloc(want ? want : 1, sizeof *msgs);
    ck_assert_ptr_nonnull(msgs);
    int rdy = want > 2500 ? 2500 : (want ? (int)want : 1);
    it_sub_t *s = it_sub_open(d->tcp_port, topic, "interop_check", rdy);
    int64_t deadline = tt_now_ms() + IT_WAIT_MS;
    size_t n = 0;
    while (n < want) {
        int64_t left = deadline - tt_now_ms();
        if (left <= 0 || !it_sub_next(s, &msgs[n], (int)left))
            break;
        n++;
    }
    it_sub_close(s);
    *out = msgs;
    return n;
}

void it_msgs_free(it_msg_t *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        it_msg_free(&msgs[i]);
    free(msgs);
}

static int msg_cmp(const void *a, const void *b)
{
    const it_msg_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->body, y->body, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

void it_msgs_sort(it_msg_t *msgs, size_t n)
{
    qsort(msgs, n, sizeof *msgs, msg_cmp);
}
