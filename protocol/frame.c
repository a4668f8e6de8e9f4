/*
 * Server frames: [u32 size][u32 type][data], big-endian, size = 4 + len(data).
 * The encoders serve the test broker; the incremental reader serves the
 * client, which feeds it whatever the socket delivered, or lets it read
 * straight into the reader's buffer (space/commit).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

/* [size][type] */
#define FRAME_HEADER_LEN 8

/* go-nsq and nsqd read sizes as int32; larger ones are never valid. */
#define WIRE_MAX_LEN ((size_t)INT32_MAX)

/* The first allocation: room for many small responses in one read. */
#define MIN_CAP 4096

/* How far doubling may take the buffer past the largest frame: room for a
 * whole frame plus a typical read, without doubling a 1 MiB buffer to 2. */
#define READ_SLACK 65536

struct nsq_frame_reader {
    char *buf;
    size_t cap;
    size_t start;  /* the first byte not yet taken as a frame */
    size_t end;    /* one past the last byte that arrived */
    size_t handed; /* bytes after end that space() handed out */
    size_t max_frame_size;
    nsq_err_t err; /* sticky */
    char errstr[80];
};

static char *put_u32(char *p, uint32_t v)
{
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)(v >> 24);
    u[1] = (unsigned char)(v >> 16);
    u[2] = (unsigned char)(v >> 8);
    u[3] = (unsigned char)v;
    return p + 4;
}

static uint32_t get_u32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 |
           (uint32_t)u[3];
}

/* Writes [size][type] for a frame of len data bytes. */
static char *put_header(char *p, int32_t type, size_t len)
{
    p = put_u32(p, (uint32_t)(4 + len));
    /* The type goes out as its two's complement bits; the test broker may
     * send an unknown type on purpose. */
    return put_u32(p, (uint32_t)type);
}

nsq_err_t nsq_frame_encode(nsq_buf_t *b, int32_t type, const void *data,
                           size_t len)
{
    if (!b || (!data && len > 0) || len > WIRE_MAX_LEN - 4)
        return NSQ_ERR_INVALID_ARG;
    nsq_err_t err = nsq_buf_reserve(b, FRAME_HEADER_LEN + len);
    if (err != NSQ_OK)
        return err;
    char *p = put_header(b->data + b->len, type, len);
    if (len > 0)
        memcpy(p, data, len);
    b->len += FRAME_HEADER_LEN + len;
    return NSQ_OK;
}

nsq_err_t nsq_frame_encode_message(nsq_buf_t *b, int64_t timestamp_ns,
                                   uint16_t attempts,
                                   const char id[NSQ_MSG_ID_LEN],
                                   const void *body, size_t len)
{
    if (!b || !id || (!body && len > 0) ||
        len > WIRE_MAX_LEN - 4 - NSQ_MSG_HEADER_LEN)
        return NSQ_ERR_INVALID_ARG;
    size_t data_len = NSQ_MSG_HEADER_LEN + len;
    nsq_err_t err = nsq_buf_reserve(b, FRAME_HEADER_LEN + data_len);
    if (err != NSQ_OK)
        return err;
    char *p = put_header(b->data + b->len, NSQ_FRAME_MESSAGE, data_len);
    uint64_t ts = (uint64_t)timestamp_ns;
    p = put_u32(p, (uint32_t)(ts >> 32));
    p = put_u32(p, (uint32_t)ts);
    unsigned char *u = (unsigned char *)p;
    u[0] = (unsigned char)(attempts >> 8);
    u[1] = (unsigned char)attempts;
    p += 2;
    memcpy(p, id, NSQ_MSG_ID_LEN);
    p += NSQ_MSG_ID_LEN;
    if (len > 0)
        memcpy(p, body, len);
    b->len += FRAME_HEADER_LEN + data_len;
    return NSQ_OK;
}

nsq_err_t nsq_message_decode(const void *data, size_t len, nsq_message_t *out)
{
    if (!data || !out)
        return NSQ_ERR_INVALID_ARG;
    if (len < NSQ_MSG_HEADER_LEN)
        return NSQ_ERR_BAD_MESSAGE_FRAME;
    const char *p = data;
    uint64_t ts = (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
    /* Converted without relying on the implementation-defined conversion of
     * an out-of-range unsigned value. */
    out->timestamp_ns =
        ts <= INT64_MAX ? (int64_t)ts : -(int64_t)(UINT64_MAX - ts) - 1;
    const unsigned char *u = (const unsigned char *)p + 8;
    out->attempts = (uint16_t)(u[0] << 8 | u[1]);
    out->id = p + 10;
    out->body = p + NSQ_MSG_HEADER_LEN;
    out->body_len = len - NSQ_MSG_HEADER_LEN;
    return NSQ_OK;
}

/* ------------------------------------------------------------------------ */
/* The incremental reader                                                   */
/* ------------------------------------------------------------------------ */

nsq_frame_reader_t *nsq_frame_reader_new(size_t max_frame_size)
{
    nsq_frame_reader_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (max_frame_size == 0)
        max_frame_size = NSQ_DEFAULT_MAX_FRAME_SIZE;
    /* A larger limit could never be met, and this bound keeps 4 + size
     * within a size_t on 32-bit systems. */
    if (max_frame_size > WIRE_MAX_LEN)
        max_frame_size = WIRE_MAX_LEN;
    r->max_frame_size = max_frame_size;
    r->err = NSQ_OK;
    return r;
}

void nsq_frame_reader_destroy(nsq_frame_reader_t *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}

/* Makes the error sticky; the caller has written the reason to errstr. */
static nsq_err_t fail(nsq_frame_reader_t *r)
{
    r->err = NSQ_ERR_BAD_FRAME;
    return r->err;
}

/*
 * Checks as much of the pending frame's header as has arrived.  Returns
 * NSQ_OK with *size set (0 when the size has not arrived yet), or the sticky
 * error.  Each check is made as soon as its bytes are here, without waiting
 * for the data.
 */
static nsq_err_t check_header(nsq_frame_reader_t *r, uint32_t *size)
{
    size_t have = r->end - r->start;
    *size = 0;
    if (have < 4)
        return NSQ_OK;
    const char *p = r->buf + r->start;
    uint32_t n = get_u32(p);
    if (n < 4) {
        snprintf(r->errstr, sizeof r->errstr,
                 "frame size %" PRIu32 " is under 4", n);
        return fail(r);
    }
    if (n > r->max_frame_size) {
        snprintf(r->errstr, sizeof r->errstr,
                 "frame size %" PRIu32 " over the limit %zu", n,
                 r->max_frame_size);
        return fail(r);
    }
    if (have >= FRAME_HEADER_LEN) {
        uint32_t type = get_u32(p + 4);
        if (type > NSQ_FRAME_MESSAGE) {
            snprintf(r->errstr, sizeof r->errstr, "unknown frame type %" PRIu32,
                     type);
            return fail(r);
        }
    }
    *size = n;
    return NSQ_OK;
}

/*
 * Makes at least want bytes free after end.  Consumed bytes are moved out
 * first, so a long stream of small frames reuses the same memory.  Growing
 * doubles, for amortised copies, but stops at the largest frame plus slack
 * while that is enough; only a caller that feeds more than that without
 * taking frames makes the buffer larger.
 */
static nsq_err_t make_room(nsq_frame_reader_t *r, size_t want)
{
    r->handed = 0;
    if (r->start == r->end)
        r->start = r->end = 0;
    if (r->cap - r->end >= want)
        return NSQ_OK;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
        if (r->cap - r->end >= want)
            return NSQ_OK;
    }
    if (want > SIZE_MAX - r->end)
        return NSQ_ERR_NOMEM;
    size_t need = r->end + want;
    size_t ceiling = r->max_frame_size + 4 + READ_SLACK;
    size_t cap = r->cap ? r->cap : MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (need <= ceiling && cap > ceiling)
        cap = ceiling;
    char *buf = realloc(r->buf, cap);
    if (!buf)
        return NSQ_ERR_NOMEM;
    r->buf = buf;
    r->cap = cap;
    return NSQ_OK;
}

nsq_err_t nsq_frame_reader_feed(nsq_frame_reader_t *r, const void *data,
                                size_t len)
{
    if (!r || (!data && len > 0))
        return NSQ_ERR_INVALID_ARG;
    if (r->err != NSQ_OK)
        return r->err;
    if (len == 0)
        return NSQ_OK;
    nsq_err_t err = make_room(r, len);
    if (err != NSQ_OK)
        return err;
    memcpy(r->buf + r->end, data, len);
    r->end += len;
    return NSQ_OK;
}

char *nsq_frame_reader_space(nsq_frame_reader_t *r, size_t min, size_t *avail)
{
    if (avail)
        *avail = 0;
    if (!r || r->err != NSQ_OK)
        return NULL;
    /* A zero-byte read would look like end of stream to the caller. */
    size_t want = min > 0 ? min : 1;
    /* Once the pending frame's header is known and valid, hand out room for
     * all of it, so a large message arrives in as few reads as possible. */
    uint32_t size;
    if (check_header(r, &size) != NSQ_OK)
        return NULL;
    if (size > 0) {
        size_t frame_end = 4 + (size_t)size;
        size_t have = r->end - r->start;
        if (frame_end > have && frame_end - have > want)
            want = frame_end - have;
    }
    if (make_room(r, want) != NSQ_OK)
        return NULL;
    r->handed = r->cap - r->end;
    if (avail)
        *avail = r->handed;
    return r->buf + r->end;
}

nsq_err_t nsq_frame_reader_commit(nsq_frame_reader_t *r, size_t n)
{
    if (!r)
        return NSQ_ERR_INVALID_ARG;
    if (r->err != NSQ_OK)
        return r->err;
    if (n > r->handed)
        return NSQ_ERR_INVALID_ARG;
    r->end += n;
    r->handed -= n;
    return NSQ_OK;
}

int nsq_frame_reader_next(nsq_frame_reader_t *r, nsq_frame_t *out)
{
    if (!r || !out)
        return NSQ_ERR_INVALID_ARG;
    if (r->err != NSQ_OK)
        return r->err;
    uint32_t size;
    nsq_err_t err = check_header(r, &size);
    if (err != NSQ_OK)
        return err;
    size_t have = r->end - r->start;
    if (size == 0 || have < FRAME_HEADER_LEN || have - 4 < size)
        return 0;
    const char *p = r->buf + r->start;
    out->type = (int32_t)get_u32(p + 4);
    out->data = p + FRAME_HEADER_LEN;
    out->len = (size_t)size - 4;
    r->start += 4 + (size_t)size;
    return 1;
}

const char *nsq_frame_reader_errstr(const nsq_frame_reader_t *r)
{
    return r ? r->errstr : "";
}

size_t nsq_frame_reader_pending(const nsq_frame_reader_t *r)
{
    return r ? r->end - r->start : 0;
}

nsq_err_t nsq_frame_reader_drain(nsq_frame_reader_t *r, nsq_buf_t *out)
{
    if (!r || !out)
        return NSQ_ERR_INVALID_ARG;
    nsq_err_t err = nsq_buf_append(out, r->buf + r->start, r->end - r->start);
    if (err != NSQ_OK)
        return err;
    r->start = r->end = 0;
    return NSQ_OK;
}
