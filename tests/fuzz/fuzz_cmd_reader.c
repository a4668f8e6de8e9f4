/*
 * Fuzzes the server-side command reader.  The first four bytes set the
 * stage: flags (magic, small limits, initial connection state), a seed for
 * the feed sizes, a seed for the state changes made between commands, and
 * the largest piece fed at once.  The rest is the client's byte stream, fed
 * in pieces; every command is drained, every byte of every view is read (so
 * the sanitizers see a bad view), and the reader's promises are checked: the
 * views match the command type and the limits, an error's frame data starts
 * with its code, and a fatal error stays.  At the end of the input the
 * reader's answer to a half-close is checked the same way.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

#define HEADER 4

static volatile unsigned sink;

static uint32_t next_rand(uint32_t *s)
{
    /* xorshift32: cheap, deterministic from the input. */
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static void touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++)
        acc += b[i];
    sink += acc;
}

static bool allow(void *opaque, const char *cmd, const char *topic,
                  const char *channel)
{
    uint32_t *seed = opaque;
    touch(cmd, strlen(cmd));
    touch(topic, strlen(topic));
    touch(channel, strlen(channel));
    return next_rand(seed) & 1;
}

static void check_cmd(const nsq_cmd_t *c, const nsq_limits_t *lim)
{
    switch (c->type) {
    case NSQ_CMD_PUB:
    case NSQ_CMD_DPUB:
    case NSQ_CMD_MPUB:
    case NSQ_CMD_SUB:
        if (!c->topic || !nsq_topic_valid(c->topic, strlen(c->topic)))
            abort();
        break;
    default:
        if (c->topic)
            abort();
    }
    if (c->type == NSQ_CMD_SUB &&
        (!c->channel || !nsq_channel_valid(c->channel, strlen(c->channel))))
        abort();
    if (c->id)
        touch(c->id, NSQ_MSG_ID_LEN);
    if ((c->type == NSQ_CMD_FIN || c->type == NSQ_CMD_REQ ||
         c->type == NSQ_CMD_TOUCH) != (c->id != NULL))
        abort();
    if (c->body) {
        if (c->body_len == 0)
            abort();
        touch(c->body, c->body_len);
    }
    if ((c->type == NSQ_CMD_PUB || c->type == NSQ_CMD_DPUB) &&
        (!c->body || (int64_t)c->body_len > lim->max_msg_size))
        abort();
    if ((c->type == NSQ_CMD_IDENTIFY || c->type == NSQ_CMD_AUTH) &&
        (!c->body || (int64_t)c->body_len > lim->max_body_size))
        abort();
    if (c->type == NSQ_CMD_MPUB) {
        if (!c->msgs || c->msg_count == 0)
            abort();
        for (size_t i = 0; i < c->msg_count; i++) {
            if (c->msgs[i].len == 0 ||
                (int64_t)c->msgs[i].len > lim->max_msg_size)
                abort();
            touch(c->msgs[i].base, c->msgs[i].len);
        }
    } else if (c->msgs || c->msg_count) {
        abort();
    }
    if ((c->type == NSQ_CMD_DPUB || c->type == NSQ_CMD_REQ) &&
        (c->number < 0 || c->number > lim->max_req_timeout_ms))
        abort();
    if (c->type == NSQ_CMD_RDY &&
        (c->number < 0 || c->number > lim->max_rdy_count))
        abort();
}

static void check_error(const nsq_cmd_error_t *e)
{
    if (!e->fatal || !e->text)
        abort();
    touch(e->text, e->text_len);
    if (e->send_frame) {
        const char *name = nsq_err2name(e->code);
        size_t n = strlen(name);
        if (e->text_len < n || memcmp(e->text, name, n) != 0)
            abort();
    }
}

/* Between commands the owner may change anything in the state. */
static void flip_state(nsq_conn_state_t *st, uint32_t *seed)
{
    uint32_t r = next_rand(seed);
    if (r & 1)
        st->state = (int)((r >> 1) % 3);
    if (r & 8)
        st->tls_active = !st->tls_active;
    if (r & 16)
        st->authorized = !st->authorized;
    if (r & 32)
        st->heartbeat_ms = (r & 64) ? 0 : 30000;
    if ((r & 0x300) == 0x300)
        st->tls_required = !st->tls_required;
    if ((r & 0xc00) == 0xc00)
        st->auth_enabled = !st->auth_enabled;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    uint8_t flags = data[0];
    uint32_t feed_seed = data[1] | 0x100u;
    uint32_t state_seed = data[2] | 0x10000u;
    size_t max_piece = (size_t)data[3] + 1;
    data += HEADER;
    size -= HEADER;

    nsq_limits_t lim;
    nsq_limits_default(&lim);
    if (flags & 2) {
        lim.max_msg_size = 16;
        lim.max_body_size = 64;
        lim.max_req_timeout_ms = 1000;
        lim.max_rdy_count = 5;
    }
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(&lim, flags & 1);
    if (!r)
        return 0;
    nsq_conn_state_t *st = nsq_cmd_reader_state(r);
    st->tls_required = flags & 4;
    st->auth_enabled = flags & 8;
    st->authorized = flags & 16;
    st->state = (flags >> 5) % 3;
    if (flags & 0x80) {
        st->allow = allow;
        st->opaque = &state_seed;
    }

    size_t off = 0;
    bool failed = false;
    while (off < size && !failed) {
        size_t piece = 1 + next_rand(&feed_seed) % max_piece;
        if (piece > size - off)
            piece = size - off;
        if (nsq_cmd_reader_feed(r, data + off, piece) != NSQ_OK)
            abort();
        off += piece;
        if (nsq_cmd_reader_pending(r) > off)
            abort();
        for (;;) {
            nsq_cmd_t cmd;
            nsq_cmd_error_t err;
            int rc = nsq_cmd_reader_next(r, &cmd, &err);
            if (rc == 0)
                break;
            if (rc == 1) {
                check_cmd(&cmd, &lim);
                flip_state(st, &state_seed);
                continue;
            }
            if (rc != -1)
                abort();
            check_error(&err);
            nsq_cmd_error_t again;
            if (nsq_cmd_reader_next(r, &cmd, &again) != -1 ||
                again.code != err.code || again.text_len != err.text_len ||
                memcmp(again.text, err.text, err.text_len) != 0)
                abort();
            if (nsq_cmd_reader_feed(r, "x", 1) != err.code)
                abort();
            failed = true;
            break;
        }
    }
    /* The input ends here: nsqd's answer to a half-close, if any, is a
     * sent, sticky error (the one already made, after a failure). */
    nsq_cmd_error_t end, again;
    nsq_cmd_t cmd;
    int rc = nsq_cmd_reader_eof(r, &end);
    if (rc == -1) {
        check_error(&end);
        if ((!failed && !end.send_frame) ||
            nsq_cmd_reader_next(r, &cmd, &again) != -1 ||
            again.code != end.code || nsq_cmd_reader_eof(r, &again) != -1 ||
            again.text_len != end.text_len)
            abort();
    } else if (rc != 0 || failed) {
        abort();
    }
    nsq_cmd_reader_destroy(r);
    return 0;
}
