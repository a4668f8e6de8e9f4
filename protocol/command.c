/*
 * Client command encoders.  Each one validates its arguments the way nsqd
 * would, computes the command's exact size, reserves it once and writes it
 * with plain copies, so a rejected command never leaves a partial command in
 * the buffer.  PUB is the producer's hot path and does nothing else.
 */
#include <assert.h>
#include <string.h>

#include "nsq/broker.h"

/* nsqd reads every size on the wire as an int32 and rejects what comes out
 * negative, so no length above INT32_MAX can be sent, whatever the limits. */
#define WIRE_MAX_LEN ((uint64_t)INT32_MAX)

/* One byte more than the longest valid name: enough to tell that a name is
 * too long without scanning all of a long string. */
#define NAME_SCAN_MAX 65

/* The decimal digits of a uint64. */
#define DEC_MAX 20

/* Message ids are 16 bytes that go verbatim into a command line. */
#define ID_LEN NSQ_MSG_ID_LEN

static const nsq_limits_t default_limits = {
    .max_msg_size = NSQ_DEFAULT_MAX_MSG_SIZE,
    .max_body_size = NSQ_DEFAULT_MAX_BODY_SIZE,
    .max_req_timeout_ms = NSQ_DEFAULT_MAX_REQ_TIMEOUT_MS,
    .max_rdy_count = NSQ_DEFAULT_MAX_RDY_COUNT,
    .max_msg_timeout_ms = 900000,
    .max_heartbeat_ms = 60000,
    .min_output_timeout_ms = 25,
    .max_output_timeout_ms = 30000,
    .max_output_size = 65536,
    .max_deflate_level = 6,
};

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* A number written in decimal, without leading zeros, ready to copy. */
typedef struct dec {
    char digits[DEC_MAX];
    const char *p;
    size_t len;
} dec_t;

/* Writes v backwards two digits at a time, which halves the divisions of
 * the usual digit loop; the caller copies the result into place. */
static void dec_format(dec_t *d, uint64_t v)
{
    char *p = d->digits + DEC_MAX;
    while (v >= 100) {
        unsigned i = (unsigned)(v % 100) * 2;
        v /= 100;
        *--p = digit_pairs[i + 1];
        *--p = digit_pairs[i];
    }
    if (v >= 10) {
        unsigned i = (unsigned)v * 2;
        *--p = digit_pairs[i + 1];
        *--p = digit_pairs[i];
    } else {
        *--p = (char)('0' + v);
    }
    d->p = p;
    d->len = (size_t)(d->digits + DEC_MAX - p);
}

static const nsq_limits_t *limits_or_default(const nsq_limits_t *lim)
{
    return lim ? lim : &default_limits;
}

/* Whether n is beyond limit; a negative limit admits nothing. */
static bool exceeds(uint64_t n, int64_t limit)
{
    return limit < 0 || n > (uint64_t)limit;
}

/* The length of a NUL-terminated name, or NAME_SCAN_MAX if it is longer. */
static size_t name_len(const char *s)
{
    size_t n = 0;
    while (n < NAME_SCAN_MAX && s[n] != '\0')
        n++;
    return n;
}

/* nsqd splits a command line on spaces and ends it at '\n' (dropping a
 * trailing '\r'), so an id holding one of those would corrupt the stream. */
static bool id_valid(const char *id)
{
    for (size_t i = 0; i < ID_LEN; i++)
        if (id[i] == ' ' || id[i] == '\n' || id[i] == '\r')
            return false;
    return true;
}

/* The checks nsqd makes on one message body (PUB, DPUB, each of MPUB). */
static nsq_err_t check_msg(size_t len, const nsq_limits_t *lim)
{
    if (len == 0)
        return NSQ_ERR_EMPTY_BODY;
    if ((uint64_t)len > WIRE_MAX_LEN || exceeds(len, lim->max_msg_size))
        return NSQ_ERR_MSG_TOO_BIG;
    return NSQ_OK;
}

static char *put(char *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}

static char *put_u32(char *p, uint32_t v)
{
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)(v >> 24);
    u[1] = (unsigned char)(v >> 16);
    u[2] = (unsigned char)(v >> 8);
    u[3] = (unsigned char)v;
    return p + 4;
}

/* Reserves total bytes and returns where they start; b->len is moved only
 * by finish(), after the whole command is written. */
static char *begin(nsq_buf_t *b, size_t total, nsq_err_t *err)
{
    *err = nsq_buf_reserve(b, total);
    return *err == NSQ_OK ? b->data + b->len : NULL;
}

static nsq_err_t finish(nsq_buf_t *b, const char *start, const char *end,
                        size_t total)
{
    (void)start;
    (void)end;
    assert((size_t)(end - start) == total);
    b->len += total;
    return NSQ_OK;
}

nsq_err_t nsq_cmd_magic(nsq_buf_t *b)
{
    if (!b)
        return NSQ_ERR_INVALID_ARG;
    return nsq_buf_append(b, "  V2", 4);
}

nsq_err_t nsq_cmd_nop(nsq_buf_t *b)
{
    if (!b)
        return NSQ_ERR_INVALID_ARG;
    return nsq_buf_append(b, "NOP\n", 4);
}

nsq_err_t nsq_cmd_cls(nsq_buf_t *b)
{
    if (!b)
        return NSQ_ERR_INVALID_ARG;
    return nsq_buf_append(b, "CLS\n", 4);
}

nsq_err_t nsq_cmd_auth(nsq_buf_t *b, const void *secret, size_t len)
{
    if (!b || (!secret && len > 0))
        return NSQ_ERR_INVALID_ARG;
    /* nsqd answers a body size of 0 with E_BAD_BODY. */
    if (len == 0)
        return NSQ_ERR_EMPTY_BODY;
    if ((uint64_t)len > WIRE_MAX_LEN)
        return NSQ_ERR_BODY_TOO_BIG;
    size_t total = 5 + 4 + len;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, "AUTH\n", 5);
    p = put_u32(p, (uint32_t)len);
    p = put(p, secret, len);
    return finish(b, start, p, total);
}

/* PUB and DPUB differ only in the verb and the delay parameter. */
static nsq_err_t encode_pub(nsq_buf_t *b, const char *verb, size_t verb_len,
                            const char *topic, size_t topic_len,
                            const dec_t *delay, const void *body, size_t len)
{
    size_t delay_len = delay ? 1 + delay->len : 0;
    size_t total = verb_len + topic_len + delay_len + 1 + 4 + len;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, verb, verb_len);
    p = put(p, topic, topic_len);
    if (delay) {
        *p++ = ' ';
        p = put(p, delay->p, delay->len);
    }
    *p++ = '\n';
    p = put_u32(p, (uint32_t)len);
    p = put(p, body, len);
    return finish(b, start, p, total);
}

nsq_err_t nsq_cmd_pub(nsq_buf_t *b, const char *topic, const void *body,
                      size_t len, const nsq_limits_t *lim)
{
    if (!b || !topic || (!body && len > 0))
        return NSQ_ERR_INVALID_ARG;
    lim = limits_or_default(lim);
    size_t topic_len = name_len(topic);
    if (!nsq_topic_valid(topic, topic_len))
        return NSQ_ERR_BAD_TOPIC;
    nsq_err_t err = check_msg(len, lim);
    if (err != NSQ_OK)
        return err;
    return encode_pub(b, "PUB ", 4, topic, topic_len, NULL, body, len);
}

nsq_err_t nsq_cmd_dpub(nsq_buf_t *b, const char *topic, int64_t delay_ms,
                       const void *body, size_t len, const nsq_limits_t *lim)
{
    if (!b || !topic || (!body && len > 0))
        return NSQ_ERR_INVALID_ARG;
    lim = limits_or_default(lim);
    size_t topic_len = name_len(topic);
    if (!nsq_topic_valid(topic, topic_len))
        return NSQ_ERR_BAD_TOPIC;
    /* nsqd checks the delay before it reads the body. */
    if (delay_ms < 0 || delay_ms > lim->max_req_timeout_ms)
        return NSQ_ERR_BAD_DELAY;
    nsq_err_t err = check_msg(len, lim);
    if (err != NSQ_OK)
        return err;
    dec_t delay;
    dec_format(&delay, (uint64_t)delay_ms);
    return encode_pub(b, "DPUB ", 5, topic, topic_len, &delay, body, len);
}

nsq_err_t nsq_cmd_mpub(nsq_buf_t *b, const char *topic, const nsq_iov_t *msgs,
                       size_t count, const nsq_limits_t *lim)
{
    if (!b || !topic || (!msgs && count > 0))
        return NSQ_ERR_INVALID_ARG;
    lim = limits_or_default(lim);
    size_t topic_len = name_len(topic);
    if (!nsq_topic_valid(topic, topic_len))
        return NSQ_ERR_BAD_TOPIC;
    if (count == 0)
        return NSQ_ERR_NO_MESSAGES;
    /* The body is the count, then each message with its length.  Each term
     * is at most WIRE_MAX_LEN + 4, and the sum is pinned just past
     * WIRE_MAX_LEN once it gets there, so it cannot overflow. */
    uint64_t body_size = 4;
    for (size_t i = 0; i < count; i++) {
        if (!msgs[i].base && msgs[i].len > 0)
            return NSQ_ERR_INVALID_ARG;
        nsq_err_t err = check_msg(msgs[i].len, lim);
        if (err != NSQ_OK)
            return err;
        body_size += 4 + (uint64_t)msgs[i].len;
        if (body_size > WIRE_MAX_LEN)
            body_size = WIRE_MAX_LEN + 1;
    }
    if (body_size > WIRE_MAX_LEN || exceeds(body_size, lim->max_body_size))
        return NSQ_ERR_BODY_TOO_BIG;
    size_t total = 5 + topic_len + 1 + 4 + (size_t)body_size;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, "MPUB ", 5);
    p = put(p, topic, topic_len);
    *p++ = '\n';
    p = put_u32(p, (uint32_t)body_size);
    p = put_u32(p, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        p = put_u32(p, (uint32_t)msgs[i].len);
        p = put(p, msgs[i].base, msgs[i].len);
    }
    return finish(b, start, p, total);
}

nsq_err_t nsq_cmd_sub(nsq_buf_t *b, const char *topic, const char *channel)
{
    if (!b || !topic || !channel)
        return NSQ_ERR_INVALID_ARG;
    size_t topic_len = name_len(topic);
    if (!nsq_topic_valid(topic, topic_len))
        return NSQ_ERR_BAD_TOPIC;
    size_t channel_len = name_len(channel);
    if (!nsq_channel_valid(channel, channel_len))
        return NSQ_ERR_BAD_CHANNEL;
    size_t total = 4 + topic_len + 1 + channel_len + 1;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, "SUB ", 4);
    p = put(p, topic, topic_len);
    *p++ = ' ';
    p = put(p, channel, channel_len);
    *p++ = '\n';
    return finish(b, start, p, total);
}

nsq_err_t nsq_cmd_rdy(nsq_buf_t *b, int64_t count, const nsq_limits_t *lim)
{
    if (!b)
        return NSQ_ERR_INVALID_ARG;
    lim = limits_or_default(lim);
    if (count < 0 || count > lim->max_rdy_count)
        return NSQ_ERR_BAD_COUNT;
    dec_t n;
    dec_format(&n, (uint64_t)count);
    size_t total = 4 + n.len + 1;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, "RDY ", 4);
    p = put(p, n.p, n.len);
    *p++ = '\n';
    return finish(b, start, p, total);
}

/* FIN and TOUCH: "<verb><id>\n". */
static nsq_err_t encode_id_cmd(nsq_buf_t *b, const char *verb, size_t verb_len,
                               const char *id)
{
    if (!b || !id || !id_valid(id))
        return NSQ_ERR_INVALID_ARG;
    size_t total = verb_len + ID_LEN + 1;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, verb, verb_len);
    p = put(p, id, ID_LEN);
    *p++ = '\n';
    return finish(b, start, p, total);
}

nsq_err_t nsq_cmd_fin(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN])
{
    return encode_id_cmd(b, "FIN ", 4, id);
}

nsq_err_t nsq_cmd_touch(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN])
{
    return encode_id_cmd(b, "TOUCH ", 6, id);
}

nsq_err_t nsq_cmd_req(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN],
                      int64_t timeout_ms, const nsq_limits_t *lim)
{
    if (!b || !id || !id_valid(id))
        return NSQ_ERR_INVALID_ARG;
    lim = limits_or_default(lim);
    /* nsqd would clamp an out-of-range timeout and log it; refusing it here
     * tells the caller instead of silently changing the requeue delay. */
    if (timeout_ms < 0 || timeout_ms > lim->max_req_timeout_ms)
        return NSQ_ERR_BAD_DELAY;
    dec_t n;
    dec_format(&n, (uint64_t)timeout_ms);
    size_t total = 4 + ID_LEN + 1 + n.len + 1;
    nsq_err_t err;
    char *start = begin(b, total, &err);
    if (!start)
        return err;
    char *p = put(start, "REQ ", 4);
    p = put(p, id, ID_LEN);
    *p++ = ' ';
    p = put(p, n.p, n.len);
    *p++ = '\n';
    return finish(b, start, p, total);
}
