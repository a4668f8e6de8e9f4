/*
 * Fuzzes the frame reader and the message decoder.
 *
 * Input: [config][seed][stream...].  config picks the frame size limit;
 * config and seed drive a small generator that cuts the stream into chunks
 * and picks, chunk by chunk, feed() or space()/commit().  Every frame taken
 * is read byte by byte (so ASan sees a bad view), re-encoded and parsed back
 * by a second reader, and decoded when it is a message.  Any broken
 * invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

static uint32_t next_rand(uint32_t *state)
{
    /* xorshift32: cheap, and fully determined by the input. */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* Reads every byte of a view, so ASan flags a view into freed memory. */
static unsigned touch(const char *p, size_t len)
{
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)p[i];
    return sum;
}

/* A frame survives encode -> read unchanged, and a message frame survives
 * decode -> encode unchanged. */
static void check_frame(const nsq_frame_t *f, size_t max_frame,
                        nsq_frame_reader_t *echo, nsq_buf_t *out)
{
    CHECK(f->type >= NSQ_FRAME_RESPONSE && f->type <= NSQ_FRAME_MESSAGE);
    CHECK(f->len + 4 <= max_frame);
    volatile unsigned sink = touch(f->data, f->len);
    (void)sink;

    out->len = 0;
    CHECK(nsq_frame_encode(out, f->type, f->data, f->len) == NSQ_OK);
    CHECK(nsq_frame_reader_feed(echo, out->data, out->len) == NSQ_OK);
    nsq_frame_t g;
    CHECK(nsq_frame_reader_next(echo, &g) == 1);
    CHECK(g.type == f->type && g.len == f->len);
    CHECK(memcmp(g.data, f->data, f->len) == 0);
    CHECK(nsq_frame_reader_pending(echo) == 0);

    nsq_message_t m;
    nsq_err_t err = nsq_message_decode(f->data, f->len, &m);
    if (f->len < NSQ_MSG_HEADER_LEN) {
        CHECK(err == NSQ_ERR_BAD_MESSAGE_FRAME);
        return;
    }
    CHECK(err == NSQ_OK);
    CHECK(m.id == f->data + 10);
    CHECK(m.body == f->data + NSQ_MSG_HEADER_LEN);
    CHECK(m.body_len == f->len - NSQ_MSG_HEADER_LEN);
    sink = touch(m.id, NSQ_MSG_ID_LEN) + touch(m.body, m.body_len);
    out->len = 0;
    CHECK(nsq_frame_encode_message(out, m.timestamp_ns, m.attempts, m.id,
                                   m.body, m.body_len) == NSQ_OK);
    CHECK(out->len == 8 + f->len);
    CHECK(memcmp(out->data + 8, f->data, f->len) == 0);
}

/* Takes every complete frame; false once the reader is in its error. */
static bool drain(nsq_frame_reader_t *r, size_t max_frame,
                  nsq_frame_reader_t *echo, nsq_buf_t *out)
{
    nsq_frame_t f;
    int rc;
    while ((rc = nsq_frame_reader_next(r, &f)) == 1)
        check_frame(&f, max_frame, echo, out);
    if (rc == 0)
        return true;
    CHECK(rc == NSQ_ERR_BAD_FRAME);
    const char *why = nsq_frame_reader_errstr(r);
    CHECK(why[0] != '\0');
    /* Sticky: the same answer every time. */
    CHECK(nsq_frame_reader_next(r, &f) == NSQ_ERR_BAD_FRAME);
    CHECK(nsq_frame_reader_feed(r, "x", 1) == NSQ_ERR_BAD_FRAME);
    size_t avail = 1;
    CHECK(nsq_frame_reader_space(r, 1, &avail) == NULL && avail == 0);
    CHECK(nsq_frame_reader_commit(r, 0) == NSQ_ERR_BAD_FRAME);
    CHECK(strcmp(nsq_frame_reader_errstr(r), why) == 0);
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[4] = {0, 4, 64, 1000};
    if (size < 2)
        return 0;
    size_t max_frame = limits[data[0] & 3];
    uint32_t state = (uint32_t)data[0] << 8 | data[1] | 0x10000u;
    data += 2;
    size -= 2;

    nsq_frame_reader_t *r = nsq_frame_reader_new(max_frame);
    nsq_frame_reader_t *echo = nsq_frame_reader_new(max_frame);
    if (max_frame == 0)
        max_frame = NSQ_DEFAULT_MAX_FRAME_SIZE;
    nsq_buf_t out = {0};
    if (!r || !echo)
        goto done;

    size_t off = 0;
    bool ok = true;
    while (ok && off < size) {
        uint32_t x = next_rand(&state);
        size_t chunk = (x & 0x300) == 0x300 ? size - off : 1 + (x & 0x3f);
        if (chunk > size - off)
            chunk = size - off;
        if (x & 0x400) {
            size_t avail = 0;
            char *p = nsq_frame_reader_space(r, 1 + (x >> 16 & 0x1f), &avail);
            if (!p) {
                /* Only an error can refuse a request this small. */
                CHECK(nsq_frame_reader_errstr(r)[0] != '\0');
                break;
            }
            CHECK(avail >= 1 + (x >> 16 & 0x1f));
            if (chunk > avail)
                chunk = avail;
            memcpy(p, data + off, chunk);
            size_t before = nsq_frame_reader_pending(r);
            if (x & 0x800)
                CHECK(nsq_frame_reader_commit(r, avail + 1) ==
                      NSQ_ERR_INVALID_ARG);
            CHECK(nsq_frame_reader_commit(r, chunk) == NSQ_OK);
            CHECK(nsq_frame_reader_pending(r) == before + chunk);
        } else {
            nsq_err_t err = nsq_frame_reader_feed(r, data + off, chunk);
            if (err != NSQ_OK) {
                CHECK(err == NSQ_ERR_BAD_FRAME);
                break;
            }
        }
        off += chunk;
        ok = drain(r, max_frame, echo, &out);
        /* Never more pending than what arrived. */
        CHECK(nsq_frame_reader_pending(r) <= off);
    }
done:
    nsq_buf_free(&out);
    nsq_frame_reader_destroy(echo);
    nsq_frame_reader_destroy(r);
    return 0;
}
