/*
 * The body shared by the two stream fuzz targets (fuzz_snappy_stream.c and
 * fuzz_deflate_stream.c): each defines KIND and FUZZ_LEVEL(byte) and
 * includes this file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/protocol.h"

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

/* Reads buffer bytes [from, len) so that ASan sees a bad write. */
static unsigned touch(const nsq_buf_t *b, size_t from)
{
    unsigned sum = 0;
    for (size_t i = from; i < b->len; i++)
        sum += (unsigned char)b->data[i];
    return sum;
}

/* A chunk size: mostly small, sometimes everything left. */
static size_t chunk_size(uint32_t *state, size_t left)
{
    uint32_t x = next_rand(state);
    size_t n = (x & 0x300) == 0x300 ? left : (x & 0x3f);
    return n < left ? n : left;
}

/*
 * Decodes wire in chunks; returns the first error (NSQ_OK if none) and
 * leaves the plain bytes in out.  Checks the per-call bound, that a failing
 * call leaves out as it was, and that the error sticks.
 */
static nsq_err_t decode_chunked(nsq_stream_t *s, size_t max_output,
                                const uint8_t *wire, size_t len,
                                uint32_t *state, nsq_buf_t *out)
{
    size_t off = 0;
    do {
        size_t k = chunk_size(state, len - off);
        size_t before = out->len;
        nsq_err_t err = nsq_stream_decompress(s, k ? wire + off : NULL, k, out);
        if (err != NSQ_OK) {
            CHECK(err == NSQ_ERR_COMPRESSION || err == NSQ_ERR_NOMEM);
            CHECK(out->len == before);
            const char *why = nsq_stream_errstr(s);
            CHECK(why[0] != '\0');
            CHECK(nsq_stream_decompress(s, wire, len, out) == err);
            CHECK(nsq_stream_decompress(s, NULL, 0, out) == err);
            CHECK(out->len == before);
            CHECK(nsq_stream_errstr(s) == why);
            return err;
        }
        CHECK(out->len - before <= max_output);
        volatile unsigned sink = touch(out, before);
        (void)sink;
        CHECK(nsq_stream_errstr(s)[0] == '\0');
        off += k;
    } while (off < len);
    return NSQ_OK;
}

static void decode_wire(int level, const uint8_t *wire, size_t len,
                        size_t small_max, uint32_t *state)
{
    nsq_buf_t whole = {0}, chunked = {0}, bounded = {0};
    nsq_stream_t *a = nsq_stream_new(KIND, level, 0);
    nsq_stream_t *b = nsq_stream_new(KIND, level, 0);
    nsq_stream_t *c = nsq_stream_new(KIND, level, small_max);
    if (!a || !b || !c)
        goto done;

    /* One call and many calls see the same stream, so they must agree. */
    nsq_err_t ea = nsq_stream_decompress(a, len ? wire : NULL, len, &whole);
    CHECK(ea == NSQ_OK || ea == NSQ_ERR_COMPRESSION || ea == NSQ_ERR_NOMEM);
    if (ea != NSQ_OK)
        CHECK(whole.len == 0);
    nsq_err_t eb = decode_chunked(b, NSQ_STREAM_DEFAULT_MAX_OUTPUT, wire, len,
                                  state, &chunked);
    CHECK(ea == eb);
    if (ea == NSQ_OK) {
        CHECK(whole.len == chunked.len);
        CHECK(whole.len == 0 ||
              memcmp(whole.data, chunked.data, whole.len) == 0);
    } else {
        CHECK(strcmp(nsq_stream_errstr(a), nsq_stream_errstr(b)) == 0);
    }

    /* A small bound: never more than it per call, and what comes out is
     * what the unbounded decoder gave, up to where it stopped. */
    nsq_err_t ec = decode_chunked(c, small_max, wire, len, state, &bounded);
    if (ec == NSQ_OK)
        CHECK(ea == NSQ_OK);
    if (ea == NSQ_OK) {
        CHECK(bounded.len <= whole.len);
        CHECK(bounded.len == 0 ||
              memcmp(bounded.data, whole.data, bounded.len) == 0);
    }
done:
    nsq_stream_destroy(a);
    nsq_stream_destroy(b);
    nsq_stream_destroy(c);
    nsq_buf_free(&whole);
    nsq_buf_free(&chunked);
    nsq_buf_free(&bounded);
}

/* The bytes, compressed in pieces, decode back to themselves. */
static void round_trip(int level, const uint8_t *plain, size_t len,
                       uint32_t *state)
{
    nsq_buf_t wire = {0}, out = {0};
    nsq_stream_t *enc = nsq_stream_new(KIND, level, 0);
    nsq_stream_t *dec = nsq_stream_new(KIND, level, 0);
    if (!enc || !dec)
        goto done;
    size_t off = 0;
    do {
        size_t k = chunk_size(state, len - off);
        size_t before = wire.len;
        nsq_err_t err =
            nsq_stream_compress(enc, k ? plain + off : NULL, k, &wire);
        if (err != NSQ_OK) {
            CHECK(err == NSQ_ERR_NOMEM && wire.len == before);
            goto done;
        }
        volatile unsigned sink = touch(&wire, before);
        (void)sink;
        off += k;
    } while (off < len);
    nsq_err_t err =
        decode_chunked(dec, NSQ_STREAM_DEFAULT_MAX_OUTPUT,
                       (const uint8_t *)wire.data, wire.len, state, &out);
    if (err == NSQ_ERR_NOMEM)
        goto done;
    CHECK(err == NSQ_OK);
    CHECK(out.len == len);
    CHECK(len == 0 || memcmp(out.data, plain, len) == 0);
done:
    nsq_stream_destroy(enc);
    nsq_stream_destroy(dec);
    nsq_buf_free(&wire);
    nsq_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t bounds[4] = {1, 100, 65536, 70000};
    if (size < 2)
        return 0;
    size_t small_max = bounds[data[0] & 3];
    int level = FUZZ_LEVEL(data[1]);
    uint32_t state = (uint32_t)data[0] << 8 | data[1] | 0x10000u;
    data += 2;
    size -= 2;
    decode_wire(level, data, size, small_max, &state);
    round_trip(level, data, size, &state);
    return 0;
}
