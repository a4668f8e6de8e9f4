/*
 * Compression streams (protocol/stream.c, snappy_stream.c, deflate_stream.c,
 * crc32c.c): CRC-32C against known values and a bitwise reference, the
 * snappy encoder against nsqd's own bytes, round trips of many sizes fed in
 * every chunking, the conformance vectors' compressed bytes in both
 * directions, every kind of malformed input (sticky, out unchanged) and the
 * max_output bound at and past its edge.
 */
#include <check.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "crc32c.h"
#include "nsq/protocol.h"
#include "vectors.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

#define MIB (1024u * 1024u)
#define SNAPPY_MAX_CHUNK 76494 /* 4 + snappy_max_compressed_length(65536) */

static const nsq_stream_kind_t kinds[2] = {NSQ_STREAM_SNAPPY,
                                           NSQ_STREAM_DEFLATE};

static const char *kind_name(nsq_stream_kind_t k)
{
    return k == NSQ_STREAM_SNAPPY ? "snappy" : "deflate";
}

/* The vectors' hex, decoded (tests/support). */
static unsigned char *unhex(const char *hex, size_t *len)
{
    unsigned char *out = vec_unhex(hex, len);
    ck_assert_msg(out != NULL, "bad hex in the test: %s", hex);
    return out;
}

static void assert_buf_hex(const nsq_buf_t *b, const char *hex)
{
    size_t len;
    unsigned char *want = unhex(hex, &len);
    ck_assert_uint_eq(b->len, len);
    ck_assert_mem_eq(b->data, want, len);
    free(want);
}

static uint32_t next_rand(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

static unsigned char *random_bytes(size_t n, uint32_t seed)
{
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(next_rand(&seed) >> 7);
    return p;
}

/* Text-like data: words from a small vocabulary, so both codecs shrink it. */
static unsigned char *compressible_bytes(size_t n, uint32_t seed)
{
    static const char *words[] = {"PUB ",   "topic",  "\n", "message ",
                                  "body ",  "nsqd ",  "OK", "\x00\x00\x00",
                                  "snappy", "deflate"};
    unsigned char *p = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(p);
    size_t i = 0;
    while (i < n) {
        const char *w = words[next_rand(&seed) % 10];
        size_t wl = strlen(w) ? strlen(w) : 3;
        for (size_t k = 0; k < wl && i < n; k++)
            p[i++] = (unsigned char)w[k];
    }
    return p;
}

static nsq_stream_t *new_stream(nsq_stream_kind_t kind, size_t max_output)
{
    nsq_stream_t *s = nsq_stream_new(kind, 6, max_output);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(nsq_stream_errstr(s), "");
    return s;
}

/* Feeds wire to s in pieces of step bytes (0: all at once), each call
 * expected to succeed, appending to out. */
static void feed_ok(nsq_stream_t *s, const void *wire, size_t len, size_t step,
                    nsq_buf_t *out)
{
    const unsigned char *p = wire;
    if (step == 0)
        step = len ? len : 1;
    size_t off = 0;
    do {
        size_t k = len - off < step ? len - off : step;
        /* Not ck_assert: in fork mode each one records a checkpoint with a
         * system call, which makes byte-by-byte loops crawl. */
        if (nsq_stream_decompress(s, p ? p + off : NULL, k, out) != NSQ_OK)
            ck_abort_msg("at %zu: %s", off, nsq_stream_errstr(s));
        off += k;
    } while (off < len);
}

/* Decodes wire with a fresh stream in pieces of step bytes; out is reset. */
static void decode(nsq_stream_kind_t kind, const void *wire, size_t len,
                   size_t step, nsq_buf_t *out)
{
    nsq_stream_t *s = new_stream(kind, 0);
    out->len = 0;
    feed_ok(s, wire, len, step, out);
    nsq_stream_destroy(s);
}

/* Decodes wire and expects the error at the end, with reason containing
 * why; out keeps its prior content.  Returns the stream for more checks. */
static nsq_stream_t *decode_fail(nsq_stream_kind_t kind, size_t max_output,
                                 const void *wire, size_t len, const char *why)
{
    nsq_stream_t *s = new_stream(kind, max_output);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_buf_append(&out, "prefix", 6), NSQ_OK);
    ck_assert_int_eq(nsq_stream_decompress(s, wire, len, &out),
                     NSQ_ERR_COMPRESSION);
    ck_assert_msg(strstr(nsq_stream_errstr(s), why) != NULL,
                  "errstr \"%s\" lacks \"%s\"", nsq_stream_errstr(s), why);
    ck_assert_uint_eq(out.len, 6);
    ck_assert_mem_eq(out.data, "prefix", 6);
    nsq_buf_free(&out);
    return s;
}

/* After an error: every later decompress returns it, with the same reason,
 * whatever the input; compress still works (directions are independent). */
static void assert_sticky(nsq_stream_t *s, nsq_err_t err)
{
    char why[160];
    snprintf(why, sizeof why, "%s", nsq_stream_errstr(s));
    ck_assert_str_ne(why, "");
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_stream_decompress(s, NULL, 0, &out), err);
    ck_assert_int_eq(
        nsq_stream_decompress(s, "\xff\x06\x00\x00sNaPpY", 10, &out), err);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_str_eq(nsq_stream_errstr(s), why);
    ck_assert_int_eq(nsq_stream_compress(s, "abc", 3, &out), NSQ_OK);
    ck_assert_uint_gt(out.len, 0);
    ck_assert_str_eq(nsq_stream_errstr(s), why);
    nsq_buf_free(&out);
}

/* Appends a snappy chunk header and data. */
static void put_chunk(nsq_buf_t *b, unsigned type, const void *data, size_t len)
{
    unsigned char h[4] = {(unsigned char)type, (unsigned char)len,
                          (unsigned char)(len >> 8),
                          (unsigned char)(len >> 16)};
    ck_assert_int_eq(nsq_buf_append(b, h, 4), NSQ_OK);
    ck_assert_int_eq(nsq_buf_append(b, data, len), NSQ_OK);
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_ident(nsq_buf_t *b)
{
    put_chunk(b, 0xff, "sNaPpY", 6);
}

/* An uncompressed data chunk with the right checksum (or a wrong one). */
static void put_plain_chunk(nsq_buf_t *b, const void *data, size_t len,
                            bool bad_crc)
{
    unsigned char *c = malloc(len + 4);
    ck_assert_ptr_nonnull(c);
    put_le32(c, nsq__crc32c_mask(nsq__crc32c(0, data, len)) ^ bad_crc);
    memcpy(c + 4, data, len);
    put_chunk(b, 0x01, c, len + 4);
    free(c);
}

/* A compressed data chunk made with libsnappy directly. */
static void put_snappy_chunk(nsq_buf_t *b, const void *data, size_t len,
                             bool bad_crc)
{
    size_t clen = snappy_max_compressed_length(len);
    unsigned char *c = malloc(clen + 4);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(snappy_compress(data, len, (char *)c + 4, &clen),
                     SNAPPY_OK);
    put_le32(c, nsq__crc32c_mask(nsq__crc32c(0, data, len)) ^ bad_crc);
    put_chunk(b, 0x00, c, clen + 4);
    free(c);
}

/* ------------------------------------------------------------------------ */
/* CRC-32C                                                                  */
/* ------------------------------------------------------------------------ */

static uint32_t crc32c_bitwise(const unsigned char *p, size_t len)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
    }
    return ~crc;
}

/* Published check values (the CRC catalogue and RFC 3720, B.4). */
START_TEST(test_crc32c_known)
{
    unsigned char b[32];
    ck_assert_uint_eq(nsq__crc32c(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(nsq__crc32c(0, "", 0), 0);
    ck_assert_uint_eq(nsq__crc32c(0, "a", 1), 0xc1d04330u);
    memset(b, 0, sizeof b);
    ck_assert_uint_eq(nsq__crc32c(0, b, 32), 0x8a9136aau);
    memset(b, 0xff, sizeof b);
    ck_assert_uint_eq(nsq__crc32c(0, b, 32), 0x62a8ab43u);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)i;
    ck_assert_uint_eq(nsq__crc32c(0, b, 32), 0x46dd794eu);
    for (int i = 0; i < 32; i++)
        b[i] = (unsigned char)(31 - i);
    ck_assert_uint_eq(nsq__crc32c(0, b, 32), 0x113fdb5cu);
    /* Updating continues a checksum across pieces. */
    ck_assert_uint_eq(nsq__crc32c(nsq__crc32c(0, "1234", 4), "56789", 5),
                      0xe3069283u);
}
END_TEST

/* The slice-by-8 tables agree with the bitwise definition at every length
 * and alignment, and across every split of an update. */
START_TEST(test_crc32c_tables)
{
    unsigned char *data = random_bytes(4096 + 8, 7);
    for (size_t align = 0; align < 8; align++)
        for (size_t len = 0; len <= 300; len++)
            ck_assert_uint_eq(nsq__crc32c(0, data + align, len),
                              crc32c_bitwise(data + align, len));
    ck_assert_uint_eq(nsq__crc32c(0, data, 4096), crc32c_bitwise(data, 4096));
    uint32_t whole = crc32c_bitwise(data, 100);
    for (size_t i = 0; i <= 100; i++)
        ck_assert_uint_eq(
            nsq__crc32c(nsq__crc32c(0, data, i), data + i, 100 - i), whole);
    free(data);
}
END_TEST

/* The masked CRC in nsqd's chunk for the OK frame: 26 98 2b cf. */
START_TEST(test_crc32c_mask)
{
    size_t len;
    unsigned char *ok = unhex("00000006000000004f4b", &len);
    ck_assert_uint_eq(nsq__crc32c_mask(nsq__crc32c(0, ok, len)), 0xcf2b9826u);
    ck_assert_uint_eq(nsq__crc32c_mask(0), 0xa282ead8u);
    ck_assert_uint_eq(nsq__crc32c_mask(0xe3069283u),
                      ((0xe3069283u >> 15) | (0xe3069283u << 17)) +
                          0xa282ead8u);
    free(ok);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */
/* ------------------------------------------------------------------------ */

START_TEST(test_new_args)
{
    ck_assert_ptr_null(nsq_stream_new((nsq_stream_kind_t)0, 6, 0));
    ck_assert_ptr_null(nsq_stream_new((nsq_stream_kind_t)3, 6, 0));
    ck_assert_ptr_null(nsq_stream_new(NSQ_STREAM_DEFLATE, 0, 0));
    ck_assert_ptr_null(nsq_stream_new(NSQ_STREAM_DEFLATE, 10, 0));
    ck_assert_ptr_null(nsq_stream_new(NSQ_STREAM_DEFLATE, -1, 0));
    for (int level = 1; level <= 9; level++) {
        nsq_stream_t *s = nsq_stream_new(NSQ_STREAM_DEFLATE, level, 0);
        ck_assert_ptr_nonnull(s);
        nsq_stream_destroy(s);
    }
    /* snappy has no level. */
    nsq_stream_t *s = nsq_stream_new(NSQ_STREAM_SNAPPY, 0, 0);
    ck_assert_ptr_nonnull(s);
    nsq_stream_destroy(s);
    s = nsq_stream_new(NSQ_STREAM_SNAPPY, 99, 1);
    ck_assert_ptr_nonnull(s);
    nsq_stream_destroy(s);
    nsq_stream_destroy(NULL);
    ck_assert_str_eq(nsq_stream_errstr(NULL), "");
}
END_TEST

START_TEST(test_call_args)
{
    for (int k = 0; k < 2; k++) {
        nsq_stream_t *s = new_stream(kinds[k], 0);
        nsq_buf_t out = {0};
        ck_assert_int_eq(nsq_stream_compress(NULL, "a", 1, &out),
                         NSQ_ERR_INVALID_ARG);
        ck_assert_int_eq(nsq_stream_compress(s, "a", 1, NULL),
                         NSQ_ERR_INVALID_ARG);
        ck_assert_int_eq(nsq_stream_compress(s, NULL, 1, &out),
                         NSQ_ERR_INVALID_ARG);
        ck_assert_int_eq(nsq_stream_decompress(NULL, "a", 1, &out),
                         NSQ_ERR_INVALID_ARG);
        ck_assert_int_eq(nsq_stream_decompress(s, "a", 1, NULL),
                         NSQ_ERR_INVALID_ARG);
        ck_assert_int_eq(nsq_stream_decompress(s, NULL, 1, &out),
                         NSQ_ERR_INVALID_ARG);
        /* Bad arguments are not sticky and leave no reason. */
        ck_assert_str_eq(nsq_stream_errstr(s), "");
        ck_assert_int_eq(nsq_stream_decompress(s, NULL, 0, &out), NSQ_OK);
        ck_assert_uint_eq(out.len, 0);
        nsq_buf_free(&out);
        nsq_stream_destroy(s);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* snappy encoder                                                           */
/* ------------------------------------------------------------------------ */

/* Compressing nsqd's plain OK frame gives exactly nsqd's bytes: the
 * identifier once, then an uncompressed chunk (10 bytes don't shrink). */
START_TEST(test_snappy_encode_nsqd_bytes)
{
    size_t len;
    unsigned char *ok = unhex("00000006000000004f4b", &len);
    nsq_stream_t *s = new_stream(NSQ_STREAM_SNAPPY, 0);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_stream_compress(s, ok, len, &out), NSQ_OK);
    assert_buf_hex(&out, "ff060000734e61507059"
                         "010e000026982bcf00000006000000004f4b");
    out.len = 0;
    ck_assert_int_eq(nsq_stream_compress(s, ok, len, &out), NSQ_OK);
    assert_buf_hex(&out, "010e000026982bcf00000006000000004f4b");
    free(ok);
    nsq_buf_free(&out);
    nsq_stream_destroy(s);
}
END_TEST

/* The first call writes the identifier even with no data; later empty calls
 * write nothing, and the buffer is appended to, not replaced. */
START_TEST(test_snappy_encode_empty)
{
    nsq_stream_t *s = new_stream(NSQ_STREAM_SNAPPY, 0);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_buf_append(&out, "xy", 2), NSQ_OK);
    ck_assert_int_eq(nsq_stream_compress(s, NULL, 0, &out), NSQ_OK);
    assert_buf_hex(&out, "7879ff060000734e61507059");
    ck_assert_int_eq(nsq_stream_compress(s, NULL, 0, &out), NSQ_OK);
    ck_assert_uint_eq(out.len, 12);
    nsq_buf_free(&out);
    nsq_stream_destroy(s);
}
END_TEST

/* Data is cut into chunks of at most 65536 plain bytes; compressible data
 * goes in compressed chunks, incompressible data in uncompressed ones. */
START_TEST(test_snappy_encode_chunks)
{
    nsq_buf_t out = {0};
    unsigned char *zeros = calloc(65537, 1);
    ck_assert_ptr_nonnull(zeros);
    nsq_stream_t *s = new_stream(NSQ_STREAM_SNAPPY, 0);
    ck_assert_int_eq(nsq_stream_compress(s, zeros, 65537, &out), NSQ_OK);
    const unsigned char *p = (const unsigned char *)out.data + 10;
    /* 65536 zeros: a compressed chunk, much shorter than its data. */
    ck_assert_uint_eq(p[0], 0x00);
    size_t clen = p[1] | (size_t)p[2] << 8 | (size_t)p[3] << 16;
    ck_assert_uint_lt(clen, 4000);
    ck_assert_uint_eq(p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                          (uint32_t)p[7] << 24,
                      nsq__crc32c_mask(nsq__crc32c(0, zeros, 65536)));
    /* The last zero: one byte does not shrink, so it goes uncompressed. */
    p += 4 + clen;
    ck_assert_uint_eq((size_t)(p - (const unsigned char *)out.data) + 9,
                      out.len);
    ck_assert_mem_eq(p, "\x01\x05\x00\x00", 4);
    ck_assert_uint_eq(p[8], 0);
    nsq_stream_destroy(s);

    /* Random data: uncompressed chunks of exactly 65536 and then 1. */
    unsigned char *rnd = random_bytes(65537, 3);
    s = new_stream(NSQ_STREAM_SNAPPY, 0);
    out.len = 0;
    ck_assert_int_eq(nsq_stream_compress(s, rnd, 65537, &out), NSQ_OK);
    ck_assert_uint_eq(out.len, 10 + 8 + 65536 + 8 + 1);
    ck_assert_mem_eq(out.data + 10, "\x01\x04\x00\x01", 4);
    ck_assert_mem_eq(out.data + 18, rnd, 65536);
    ck_assert_mem_eq(out.data + 18 + 65536, "\x01\x05\x00\x00", 4);
    ck_assert_uint_eq((unsigned char)out.data[out.len - 1], rnd[65536]);
    nsq_stream_destroy(s);
    free(rnd);
    free(zeros);
    nsq_buf_free(&out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* deflate encoder                                                          */
/* ------------------------------------------------------------------------ */

/* Our output is byte for byte what zlib makes of the same calls with raw
 * deflate at that level and a sync flush per call; empty calls add nothing. */
START_TEST(test_deflate_encode_reference)
{
    unsigned char *text = compressible_bytes(200000, 11);
    static const size_t pieces[] = {1, 17, 1000, 0, 65536, 133446};
    for (int level = 1; level <= 9; level += 4) {
        nsq_stream_t *s = nsq_stream_new(NSQ_STREAM_DEFLATE, level, 0);
        ck_assert_ptr_nonnull(s);
        z_stream ref;
        memset(&ref, 0, sizeof ref);
        ck_assert_int_eq(
            deflateInit2(&ref, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
        unsigned char *want = malloc(400000);
        ck_assert_ptr_nonnull(want);
        size_t off = 0;
        nsq_buf_t out = {0};
        for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
            size_t before = out.len;
            ck_assert_int_eq(
                nsq_stream_compress(s, text + off, pieces[i], &out), NSQ_OK);
            if (pieces[i] == 0) {
                ck_assert_uint_eq(out.len, before);
                continue;
            }
            ref.next_in = text + off;
            ref.avail_in = (uInt)pieces[i];
            ref.next_out = want;
            ref.avail_out = 400000;
            ck_assert_int_eq(deflate(&ref, Z_SYNC_FLUSH), Z_OK);
            ck_assert_uint_eq(ref.avail_in, 0);
            size_t n = 400000 - ref.avail_out;
            ck_assert_uint_eq(out.len - before, n);
            ck_assert_mem_eq(out.data + before, want, n);
            /* Every call ends with the sync flush marker. */
            ck_assert_mem_eq(out.data + out.len - 4, "\x00\x00\xff\xff", 4);
            off += pieces[i];
        }
        ck_assert_uint_eq(off, 200000);
        deflateEnd(&ref);
        free(want);
        nsq_buf_free(&out);
        nsq_stream_destroy(s);
    }
    free(text);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static const size_t sizes[] = {0,
                               1,
                               2,
                               100,
                               65535,
                               65536,
                               65537,
                               3 * 65536 + 7,
                               MIB,
                               MIB + 100,
                               2 * 65536 - 1};

/* Compresses data in one call and in pieces, and checks both decode to it,
 * whole, byte by byte and in odd pieces. */
static void round_trip(nsq_stream_kind_t kind, const unsigned char *data,
                       size_t len)
{
    nsq_buf_t wire = {0}, wire2 = {0}, plain = {0};
    nsq_stream_t *enc = new_stream(kind, 0);
    ck_assert_int_eq(nsq_stream_compress(enc, data, len, &wire), NSQ_OK);
    nsq_stream_destroy(enc);

    /* The same data in pieces of 1000 bytes, one compress() each. */
    enc = new_stream(kind, 0);
    size_t off = 0;
    do {
        size_t k = len - off < 1000 ? len - off : 1000;
        ck_assert_int_eq(nsq_stream_compress(enc, data + off, k, &wire2),
                         NSQ_OK);
        off += k;
    } while (off < len);
    nsq_stream_destroy(enc);

    static const size_t steps[] = {0, 1, 7, 4093};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        decode(kind, wire.data, wire.len, steps[i], &plain);
        ck_assert_msg(plain.len == len, "%s %zu step %zu: got %zu",
                      kind_name(kind), len, steps[i], plain.len);
        if (len)
            ck_assert_mem_eq(plain.data, data, len);
        decode(kind, wire2.data, wire2.len, steps[i], &plain);
        ck_assert_uint_eq(plain.len, len);
        if (len)
            ck_assert_mem_eq(plain.data, data, len);
    }
    nsq_buf_free(&wire);
    nsq_buf_free(&wire2);
    nsq_buf_free(&plain);
}

START_TEST(test_round_trip_random)
{
    nsq_stream_kind_t kind = kinds[_i];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *data = random_bytes(sizes[i], (uint32_t)(i + 1));
        round_trip(kind, data, sizes[i]);
        free(data);
    }
}
END_TEST

START_TEST(test_round_trip_compressible)
{
    nsq_stream_kind_t kind = kinds[_i];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *data = compressible_bytes(sizes[i], (uint32_t)(i + 1));
        round_trip(kind, data, sizes[i]);
        free(data);
    }
    /* Compressible data does shrink. */
    unsigned char *data = compressible_bytes(MIB, 5);
    nsq_buf_t wire = {0};
    nsq_stream_t *enc = new_stream(kind, 0);
    ck_assert_int_eq(nsq_stream_compress(enc, data, MIB, &wire), NSQ_OK);
    ck_assert_uint_lt(wire.len, MIB / 2);
    nsq_stream_destroy(enc);
    nsq_buf_free(&wire);
    free(data);
}
END_TEST

/* A small stream of several compress() calls (several chunks, several
 * flushes) decodes the same when cut at any one or any two points. */
START_TEST(test_every_split)
{
    nsq_stream_kind_t kind = kinds[_i];
    static const char *msgs[] = {"PUB t\n\x00\x00\x00\x05hello", "", "OK",
                                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                 "E_INVALID bad"};
    nsq_buf_t wire = {0}, want = {0}, plain = {0};
    nsq_stream_t *enc = new_stream(kind, 0);
    for (size_t i = 0; i < 5; i++) {
        size_t n = i == 0 ? 15 : strlen(msgs[i]);
        ck_assert_int_eq(nsq_stream_compress(enc, msgs[i], n, &wire), NSQ_OK);
        ck_assert_int_eq(nsq_buf_append(&want, msgs[i], n), NSQ_OK);
    }
    nsq_stream_destroy(enc);
    ck_assert_uint_gt(wire.len, 40);

    for (size_t a = 0; a <= wire.len; a++) {
        for (size_t b = a; b <= wire.len; b++) {
            nsq_stream_t *s = new_stream(kind, 0);
            plain.len = 0;
            feed_ok(s, wire.data, a, 0, &plain);
            feed_ok(s, wire.data + a, b - a, 0, &plain);
            feed_ok(s, wire.data + b, wire.len - b, 0, &plain);
            ck_assert_uint_eq(plain.len, want.len);
            ck_assert_mem_eq(plain.data, want.data, want.len);
            nsq_stream_destroy(s);
        }
    }
    nsq_buf_free(&wire);
    nsq_buf_free(&want);
    nsq_buf_free(&plain);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Conformance vectors                                                      */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    nsq_stream_kind_t kind;
} vec_cases[] = {
    {"compression_snappy", NSQ_STREAM_SNAPPY},
    {"compression_snappy_error_frame", NSQ_STREAM_SNAPPY},
    {"compression_deflate_level_6", NSQ_STREAM_DEFLATE},
    {"handshake_identify_deflate_level_7", NSQ_STREAM_DEFLATE},
};

static vec_case_t *load_case(const char *name)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s.json", NSQ_CONFORMANCE_DIR, name);
    vec_case_t *c = vec_load(path, err, sizeof err);
    ck_assert_msg(c != NULL, "%s: %s", path, err);
    return c;
}

/* The compressed part of a case's received (or sent) bytes, one stream
 * across steps, and the plain bytes it must give. */
static void collect(const vec_case_t *c, bool recv, nsq_buf_t *wire,
                    nsq_buf_t *plain, size_t *nsteps)
{
    *nsteps = 0;
    for (size_t i = 0; i < c->nsteps; i++) {
        const vec_step_t *st = &c->steps[i];
        if (recv) {
            if (st->recv_encoding[0] == '\0')
                continue;
            /* The IDENTIFY answer starts plain; the plain prefix is the
             * same in recv and recv_decoded. */
            size_t off = st->recv_compressed_offset;
            ck_assert_uint_le(off, st->recv.len);
            ck_assert_uint_le(off, st->recv_decoded.len);
            ck_assert_mem_eq(st->recv.data, st->recv_decoded.data, off);
            ck_assert_int_eq(
                nsq_buf_append(wire, st->recv.data + off, st->recv.len - off),
                NSQ_OK);
            ck_assert_int_eq(nsq_buf_append(plain, st->recv_decoded.data + off,
                                            st->recv_decoded.len - off),
                             NSQ_OK);
        } else {
            if (!st->compressed_send)
                continue;
            ck_assert_int_eq(nsq_buf_append(wire, st->send.data, st->send.len),
                             NSQ_OK);
            ck_assert_int_eq(
                nsq_buf_append(plain, st->send_plain.data, st->send_plain.len),
                NSQ_OK);
        }
        (*nsteps)++;
    }
}

/* nsqd's compressed answers and the capture client's compressed commands
 * decode to the recorded plain bytes: step by step, whole, byte by byte and
 * at every split point. */
START_TEST(test_conformance_decode)
{
    vec_case_t *c = load_case(vec_cases[_i].name);
    nsq_stream_kind_t kind = vec_cases[_i].kind;
    for (int recv = 0; recv < 2; recv++) {
        nsq_buf_t wire = {0}, want = {0}, plain = {0};
        size_t nsteps;
        collect(c, recv, &wire, &want, &nsteps);
        ck_assert_uint_ge(nsteps, 1);
        ck_assert_uint_gt(wire.len, 0);
        ck_assert_uint_gt(want.len, 0);

        /* Step by step, checking each step's output as it comes. */
        nsq_stream_t *s = new_stream(kind, 0);
        size_t woff = 0, poff = 0;
        for (size_t i = 0; i < c->nsteps; i++) {
            const vec_step_t *st = &c->steps[i];
            const unsigned char *w, *p;
            size_t wl, pl;
            if (recv && st->recv_encoding[0]) {
                size_t off = st->recv_compressed_offset;
                w = st->recv.data + off;
                wl = st->recv.len - off;
                p = st->recv_decoded.data + off;
                pl = st->recv_decoded.len - off;
            } else if (!recv && st->compressed_send) {
                w = st->send.data;
                wl = st->send.len;
                p = st->send_plain.data;
                pl = st->send_plain.len;
            } else {
                continue;
            }
            plain.len = 0;
            feed_ok(s, w, wl, 0, &plain);
            ck_assert_msg(plain.len == pl, "%s step %zu", c->name, i);
            ck_assert_mem_eq(plain.data, p, pl);
            woff += wl;
            poff += pl;
        }
        ck_assert_uint_eq(woff, wire.len);
        ck_assert_uint_eq(poff, want.len);
        nsq_stream_destroy(s);

        decode(kind, wire.data, wire.len, 1, &plain);
        ck_assert_uint_eq(plain.len, want.len);
        ck_assert_mem_eq(plain.data, want.data, want.len);
        for (size_t cut = 0; cut <= wire.len; cut++) {
            s = new_stream(kind, 0);
            plain.len = 0;
            feed_ok(s, wire.data, cut, 0, &plain);
            feed_ok(s, wire.data + cut, wire.len - cut, 0, &plain);
            ck_assert_uint_eq(plain.len, want.len);
            ck_assert_mem_eq(plain.data, want.data, want.len);
            nsq_stream_destroy(s);
        }
        nsq_buf_free(&wire);
        nsq_buf_free(&want);
        nsq_buf_free(&plain);
    }
    vec_free(c);
}
END_TEST

/* Our encoder on the same plain bytes: snappy reproduces nsqd's answers byte
 * for byte; both kinds' output decodes back to the plain bytes. */
START_TEST(test_conformance_encode)
{
    vec_case_t *c = load_case(vec_cases[_i].name);
    nsq_stream_kind_t kind = vec_cases[_i].kind;
    for (int recv = 0; recv < 2; recv++) {
        nsq_stream_t *enc = new_stream(kind, 0);
        nsq_buf_t wire = {0}, want = {0}, ours = {0}, plain = {0};
        size_t nsteps;
        collect(c, recv, &wire, &want, &nsteps);
        for (size_t i = 0; i < c->nsteps; i++) {
            const vec_step_t *st = &c->steps[i];
            size_t before = ours.len;
            if (recv && st->recv_encoding[0]) {
                size_t off = st->recv_compressed_offset;
                ck_assert_int_eq(
                    nsq_stream_compress(enc, st->recv_decoded.data + off,
                                        st->recv_decoded.len - off, &ours),
                    NSQ_OK);
                if (kind == NSQ_STREAM_SNAPPY) {
                    ck_assert_uint_eq(ours.len - before, st->recv.len - off);
                    ck_assert_mem_eq(ours.data + before, st->recv.data + off,
                                     st->recv.len - off);
                }
            } else if (!recv && st->compressed_send) {
                ck_assert_int_eq(nsq_stream_compress(enc, st->send_plain.data,
                                                     st->send_plain.len, &ours),
                                 NSQ_OK);
            }
        }
        decode(kind, ours.data, ours.len, 1, &plain);
        ck_assert_uint_eq(plain.len, want.len);
        ck_assert_mem_eq(plain.data, want.data, want.len);
        nsq_stream_destroy(enc);
        nsq_buf_free(&wire);
        nsq_buf_free(&want);
        nsq_buf_free(&ours);
        nsq_buf_free(&plain);
    }
    vec_free(c);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* snappy decoder: valid oddities                                           */
/* ------------------------------------------------------------------------ */

/* Skippable chunks (padding 0xfe, reserved 0x80..0xfd) of any length, even
 * split across calls, are skipped; the identifier may repeat. */
START_TEST(test_snappy_skippable)
{
    nsq_buf_t wire = {0}, plain = {0};
    unsigned char *big = random_bytes(100000, 9);
    put_ident(&wire);
    put_chunk(&wire, 0xfe, NULL, 0);
    put_plain_chunk(&wire, "ab", 2, false);
    put_chunk(&wire, 0x80, "xyz", 3);
    put_chunk(&wire, 0xfd, big, 100000);
    put_ident(&wire);
    put_snappy_chunk(&wire, "cdcdcdcdcdcdcdcdcdcd", 20, false);
    put_chunk(&wire, 0xfe, big, 70000);
    put_chunk(&wire, 0x99, NULL, 0);
    static const size_t steps[] = {0, 1, 3, 4, 5, 65536};
    for (size_t i = 0; i < 6; i++) {
        decode(NSQ_STREAM_SNAPPY, wire.data, wire.len, steps[i], &plain);
        ck_assert_uint_eq(plain.len, 22);
        ck_assert_mem_eq(plain.data, "abcdcdcdcdcdcdcdcdcdcd", 22);
    }
    free(big);
    nsq_buf_free(&wire);
    nsq_buf_free(&plain);
}
END_TEST

/* Empty data chunks of both kinds are valid and add nothing. */
START_TEST(test_snappy_empty_chunks)
{
    nsq_buf_t wire = {0}, plain = {0};
    put_ident(&wire);
    put_plain_chunk(&wire, "", 0, false);
    put_snappy_chunk(&wire, "", 0, false);
    put_plain_chunk(&wire, "z", 1, false);
    ck_assert_uint_eq(wire.len, 10 + 8 + 9 + 9);
    decode(NSQ_STREAM_SNAPPY, wire.data, wire.len, 0, &plain);
    ck_assert_uint_eq(plain.len, 1);
    ck_assert_int_eq(plain.data[0], 'z');
    nsq_buf_free(&wire);
    nsq_buf_free(&plain);
}
END_TEST

/* The largest chunks the format allows: 65536 plain bytes, compressed or
 * not, and a compressed chunk's length at the maximum (checked as soon as its
 * header arrives). */
START_TEST(test_snappy_limits_ok)
{
    nsq_buf_t wire = {0}, plain = {0};
    unsigned char *rnd = random_bytes(65536, 4);
    put_ident(&wire);
    put_plain_chunk(&wire, rnd, 65536, false);
    put_snappy_chunk(&wire, rnd, 65536, false);
    decode(NSQ_STREAM_SNAPPY, wire.data, wire.len, 1000, &plain);
    ck_assert_uint_eq(plain.len, 2 * 65536);
    ck_assert_mem_eq(plain.data, rnd, 65536);
    ck_assert_mem_eq(plain.data + 65536, rnd, 65536);

    /* A compressed chunk header of the maximum length is accepted. */
    ck_assert_uint_eq(snappy_max_compressed_length(65536) + 4,
                      SNAPPY_MAX_CHUNK);
    nsq_stream_t *s = new_stream(NSQ_STREAM_SNAPPY, 0);
    wire.len = 0;
    put_ident(&wire);
    unsigned char h[4] = {0x00, SNAPPY_MAX_CHUNK & 0xff,
                          (SNAPPY_MAX_CHUNK >> 8) & 0xff,
                          SNAPPY_MAX_CHUNK >> 16};
    ck_assert_int_eq(nsq_buf_append(&wire, h, 4), NSQ_OK);
    plain.len = 0;
    ck_assert_int_eq(nsq_stream_decompress(s, wire.data, wire.len, &plain),
                     NSQ_OK);
    ck_assert_uint_eq(plain.len, 0);
    nsq_stream_destroy(s);
    free(rnd);
    nsq_buf_free(&wire);
    nsq_buf_free(&plain);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* snappy decoder: errors                                                   */
/* ------------------------------------------------------------------------ */

/* Each malformed stream fails with NSQ_ERR_COMPRESSION and a reason, leaves
 * out as it was, and stays failed. */
static void snappy_bad(const nsq_buf_t *wire, const char *why)
{
    nsq_stream_t *s =
        decode_fail(NSQ_STREAM_SNAPPY, 0, wire->data, wire->len, why);
    assert_sticky(s, NSQ_ERR_COMPRESSION);
    nsq_stream_destroy(s);
}

START_TEST(test_snappy_missing_ident)
{
    nsq_buf_t wire = {0};
    put_plain_chunk(&wire, "ab", 2, false);
    snappy_bad(&wire, "stream identifier");
    wire.len = 0;
    put_chunk(&wire, 0xfe, NULL, 0);
    snappy_bad(&wire, "stream identifier (chunk type 0xfe)");
    wire.len = 0;
    put_snappy_chunk(&wire, "ab", 2, false);
    snappy_bad(&wire, "(chunk type 0x00)");
    nsq_buf_free(&wire);
}
END_TEST

START_TEST(test_snappy_bad_ident)
{
    nsq_buf_t wire = {0};
    put_chunk(&wire, 0xff, "sNaPpZ", 6);
    snappy_bad(&wire, "bad stream identifier");
    wire.len = 0;
    put_chunk(&wire, 0xff, "sNaPpYY", 7);
    snappy_bad(&wire, "length 7, not 6");
    wire.len = 0;
    put_chunk(&wire, 0xff, "sNaPp", 5);
    snappy_bad(&wire, "length 5, not 6");
    /* A repeated identifier must be right too. */
    wire.len = 0;
    put_ident(&wire);
    put_plain_chunk(&wire, "ab", 2, false);
    put_chunk(&wire, 0xff, "SNaPpY", 6);
    snappy_bad(&wire, "bad stream identifier");
    nsq_buf_free(&wire);
}
END_TEST

START_TEST(test_snappy_reserved_unskippable)
{
    static const unsigned types[] = {0x02, 0x03, 0x40, 0x7f};
    nsq_buf_t wire = {0};
    for (size_t i = 0; i < 4; i++) {
        wire.len = 0;
        put_ident(&wire);
        put_chunk(&wire, types[i], "abcd", 4);
        char why[64];
        snprintf(why, sizeof why, "unskippable chunk type 0x%02x", types[i]);
        snappy_bad(&wire, why);
    }
    nsq_buf_free(&wire);
}
END_TEST

START_TEST(test_snappy_bad_crc)
{
    nsq_buf_t wire = {0};
    put_ident(&wire);
    put_plain_chunk(&wire, "hello", 5, true);
    snappy_bad(&wire, "checksum mismatch");
    wire.len = 0;
    put_ident(&wire);
    put_snappy_chunk(&wire, "hellohellohello", 15, true);
    snappy_bad(&wire, "checksum mismatch");
    /* A changed data byte under a right checksum. */
    wire.len = 0;
    put_ident(&wire);
    put_plain_chunk(&wire, "hello", 5, false);
    wire.data[wire.len - 1] ^= 0x20;
    snappy_bad(&wire, "checksum mismatch");
    /* nsqd's own chunk, one bit off. */
    size_t len;
    unsigned char *b = unhex("ff060000734e61507059010e000026982bcf0000000600"
                             "0000004f4b",
                             &len);
    b[len - 1] ^= 1;
    wire.len = 0;
    ck_assert_int_eq(nsq_buf_append(&wire, b, len), NSQ_OK);
    snappy_bad(&wire, "chunk says 0xcf2b9826");
    free(b);
    nsq_buf_free(&wire);
}
END_TEST

START_TEST(test_snappy_short_chunks)
{
    nsq_buf_t wire = {0};
    for (unsigned type = 0; type < 2; type++) {
        for (size_t len = 0; len < 4; len++) {
            wire.len = 0;
            put_ident(&wire);
            put_chunk(&wire, type, "\0\0\0", len);
            snappy_bad(&wire, "shorter than its checksum");
        }
    }
    /* Just a checksum is no valid snappy block. */
    wire.len = 0;
    put_ident(&wire);
    unsigned char crc[4];
    put_le32(crc, nsq__crc32c_mask(0));
    put_chunk(&wire, 0x00, crc, 4);
    snappy_bad(&wire, "corrupt compressed chunk");
    nsq_buf_free(&wire);
}
END_TEST

/* Chunks past the format's limits fail as soon as the header is in. */
START_TEST(test_snappy_too_long)
{
    nsq_buf_t wire = {0};
    put_ident(&wire);
    unsigned char h[4] = {0x01, 0x05, 0x00, 0x01}; /* 65536 + 5 */
    ck_assert_int_eq(nsq_buf_append(&wire, h, 4), NSQ_OK);
    snappy_bad(&wire, "uncompressed chunk of 65537 bytes");

    wire.len = 0;
    put_ident(&wire);
    size_t n = SNAPPY_MAX_CHUNK + 1;
    unsigned char c[4] = {0x00, (unsigned char)n, (unsigned char)(n >> 8),
                          (unsigned char)(n >> 16)};
    ck_assert_int_eq(nsq_buf_append(&wire, c, 4), NSQ_OK);
    snappy_bad(&wire, "compressed chunk of length 76495");

    /* A real snappy block of 65537 plain bytes is refused by its length. */
    unsigned char *zeros = calloc(65537, 1);
    ck_assert_ptr_nonnull(zeros);
    wire.len = 0;
    put_ident(&wire);
    put_snappy_chunk(&wire, zeros, 65537, false);
    snappy_bad(&wire, "65537 plain bytes");
    free(zeros);
    nsq_buf_free(&wire);
}
END_TEST

START_TEST(test_snappy_corrupt_data)
{
    nsq_buf_t wire = {0};
    /* Length 10, then a copy that points before the start. */
    unsigned char body[] = {0, 0, 0, 0, 10, 0x01 | (6 << 2), 0x05};
    put_le32(body, 0);
    put_ident(&wire);
    put_chunk(&wire, 0x00, body, sizeof body);
    snappy_bad(&wire, "corrupt compressed chunk");
    /* Length 10, but a literal of 3 bytes only. */
    unsigned char shorter[] = {0, 0, 0, 0, 10, 2 << 2, 'a', 'b', 'c'};
    wire.len = 0;
    put_ident(&wire);
    put_chunk(&wire, 0x00, shorter, sizeof shorter);
    snappy_bad(&wire, "corrupt compressed chunk");
    /* A length varint that never ends. */
    unsigned char endless[] = {0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};
    wire.len = 0;
    put_ident(&wire);
    put_chunk(&wire, 0x00, endless, sizeof endless);
    snappy_bad(&wire, "bad length");
    nsq_buf_free(&wire);
}
END_TEST

/* Errors are found as soon as their bytes arrive: fed byte by byte, every
 * call before the decisive byte succeeds. */
START_TEST(test_snappy_error_as_early_as_possible)
{
    nsq_buf_t wire = {0}, out = {0};
    put_ident(&wire);
    put_plain_chunk(&wire, "ab", 2, false);
    size_t good = wire.len;
    put_chunk(&wire, 0x02, "0123456789", 10); /* fails at its 4th byte */
    nsq_stream_t *s = new_stream(NSQ_STREAM_SNAPPY, 0);
    for (size_t i = 0; i < good + 3; i++)
        ck_assert_int_eq(nsq_stream_decompress(s, wire.data + i, 1, &out),
                         NSQ_OK);
    ck_assert_uint_eq(out.len, 2);
    ck_assert_int_eq(nsq_stream_decompress(s, wire.data + good + 3, 1, &out),
                     NSQ_ERR_COMPRESSION);
    ck_assert_uint_eq(out.len, 2);
    assert_sticky(s, NSQ_ERR_COMPRESSION);
    nsq_stream_destroy(s);

    /* A bad checksum shows only with the chunk's last byte. */
    wire.len = 0;
    put_ident(&wire);
    put_plain_chunk(&wire, "abcdef", 6, true);
    s = new_stream(NSQ_STREAM_SNAPPY, 0);
    out.len = 0;
    for (size_t i = 0; i + 1 < wire.len; i++)
        ck_assert_int_eq(nsq_stream_decompress(s, wire.data + i, 1, &out),
                         NSQ_OK);
    ck_assert_int_eq(
        nsq_stream_decompress(s, wire.data + wire.len - 1, 1, &out),
        NSQ_ERR_COMPRESSION);
    ck_assert_uint_eq(out.len, 0);
    nsq_stream_destroy(s);
    nsq_buf_free(&wire);
    nsq_buf_free(&out);
}
END_TEST

/* Good chunks before a bad one in the same call: out still unchanged. */
START_TEST(test_error_leaves_out_unchanged)
{
    nsq_buf_t wire = {0};
    put_ident(&wire);
    put_plain_chunk(&wire, "good", 4, false);
    put_snappy_chunk(&wire, "moremoremore", 12, false);
    put_plain_chunk(&wire, "bad", 3, true);
    nsq_stream_t *s = decode_fail(NSQ_STREAM_SNAPPY, 0, wire.data, wire.len,
                                  "checksum mismatch");
    nsq_stream_destroy(s);

    /* deflate: a good sync-flushed block, then garbage. */
    nsq_stream_t *enc = new_stream(NSQ_STREAM_DEFLATE, 0);
    wire.len = 0;
    ck_assert_int_eq(nsq_stream_compress(enc, "good data", 9, &wire), NSQ_OK);
    ck_assert_int_eq(nsq_buf_append(&wire, "\xff\xff", 2), NSQ_OK);
    s = decode_fail(NSQ_STREAM_DEFLATE, 0, wire.data, wire.len,
                    "invalid block type");
    nsq_stream_destroy(s);
    nsq_stream_destroy(enc);
    nsq_buf_free(&wire);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* deflate decoder: errors                                                  */
/* ------------------------------------------------------------------------ */

static void deflate_bad(const void *wire, size_t len, const char *why)
{
    nsq_stream_t *s = decode_fail(NSQ_STREAM_DEFLATE, 0, wire, len, why);
    assert_sticky(s, NSQ_ERR_COMPRESSION);
    nsq_stream_destroy(s);
}

START_TEST(test_deflate_corrupt)
{
    /* Block type 3 does not exist. */
    deflate_bad("\xff", 1, "invalid block type");
    deflate_bad("\x06", 1, "invalid block type");
    /* A stored block whose length and its complement disagree. */
    deflate_bad("\x00\x05\x00\x00\x00", 5, "invalid stored block lengths");
    /* A dynamic block with impossible code lengths. */
    deflate_bad("\x04\xff\xff\xff\xff", 5, "corrupt data");
}
END_TEST

/* Makes a finished raw deflate stream (final block) of data. */
static size_t finished_stream(const void *data, size_t len, unsigned char *buf,
                              size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(
        deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    return n;
}

/* nsqd never ends its stream: after a final block, more input is an error,
 * in the same call or a later one; an empty call is still fine. */
START_TEST(test_deflate_after_end)
{
    unsigned char buf[256];
    size_t n = finished_stream("finished", 8, buf, sizeof buf - 1);
    buf[n] = 'x';
    deflate_bad(buf, n + 1, "data after the end");

    nsq_stream_t *s = new_stream(NSQ_STREAM_DEFLATE, 0);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_stream_decompress(s, buf, n, &out), NSQ_OK);
    ck_assert_uint_eq(out.len, 8);
    ck_assert_mem_eq(out.data, "finished", 8);
    ck_assert_int_eq(nsq_stream_decompress(s, NULL, 0, &out), NSQ_OK);
    ck_assert_str_eq(nsq_stream_errstr(s), "");
    ck_assert_int_eq(nsq_stream_decompress(s, "x", 1, &out),
                     NSQ_ERR_COMPRESSION);
    ck_assert_uint_eq(out.len, 8);
    ck_assert_ptr_nonnull(strstr(nsq_stream_errstr(s), "after the end"));
    assert_sticky(s, NSQ_ERR_COMPRESSION);
    nsq_stream_destroy(s);
    nsq_buf_free(&out);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* max_output                                                               */
/* ------------------------------------------------------------------------ */

/* One call may produce exactly max_output bytes, not one more; the bound is
 * per call, so the same bytes fed in two calls pass. */
START_TEST(test_max_output)
{
    nsq_stream_kind_t kind = kinds[_i];
    unsigned char *data = compressible_bytes(200000, 8);
    nsq_buf_t wire = {0}, plain = {0};
    nsq_stream_t *enc = new_stream(kind, 0);
    ck_assert_int_eq(nsq_stream_compress(enc, data, 100000, &wire), NSQ_OK);
    size_t half = wire.len;
    ck_assert_int_eq(nsq_stream_compress(enc, data + 100000, 100000, &wire),
                     NSQ_OK);
    nsq_stream_destroy(enc);

    nsq_stream_t *s = new_stream(kind, 200000);
    ck_assert_int_eq(nsq_stream_decompress(s, wire.data, wire.len, &plain),
                     NSQ_OK);
    ck_assert_uint_eq(plain.len, 200000);
    ck_assert_mem_eq(plain.data, data, 200000);
    nsq_stream_destroy(s);

    s = decode_fail(kind, 199999, wire.data, wire.len, "max_output (199999");
    assert_sticky(s, NSQ_ERR_COMPRESSION);
    nsq_stream_destroy(s);

    s = new_stream(kind, 100000);
    plain.len = 0;
    ck_assert_int_eq(nsq_stream_decompress(s, wire.data, half, &plain), NSQ_OK);
    ck_assert_int_eq(
        nsq_stream_decompress(s, wire.data + half, wire.len - half, &plain),
        NSQ_OK);
    ck_assert_uint_eq(plain.len, 200000);
    ck_assert_mem_eq(plain.data, data, 200000);
    nsq_stream_destroy(s);

    /* A tiny bound: a small input cannot make the reader allocate much. */
    s = decode_fail(kind, 10, wire.data, wire.len, "max_output (10 bytes)");
    nsq_stream_destroy(s);
    free(data);
    nsq_buf_free(&wire);
    nsq_buf_free(&plain);
}
END_TEST

/* A deflate bomb (1 MiB of zeros in about a kilobyte) stops at the default
 * bound's scale: a 64 KiB bound refuses it in one call. */
START_TEST(test_deflate_bomb)
{
    unsigned char *zeros = calloc(MIB, 1);
    ck_assert_ptr_nonnull(zeros);
    nsq_buf_t wire = {0};
    nsq_stream_t *enc = new_stream(NSQ_STREAM_DEFLATE, 0);
    ck_assert_int_eq(nsq_stream_compress(enc, zeros, MIB, &wire), NSQ_OK);
    ck_assert_uint_lt(wire.len, 2048);
    nsq_stream_destroy(enc);
    nsq_stream_t *s = decode_fail(NSQ_STREAM_DEFLATE, 65536, wire.data,
                                  wire.len, "max_output (65536 bytes)");
    nsq_stream_destroy(s);
    nsq_buf_t plain = {0};
    s = new_stream(NSQ_STREAM_DEFLATE, MIB);
    ck_assert_int_eq(nsq_stream_decompress(s, wire.data, wire.len, &plain),
                     NSQ_OK);
    ck_assert_uint_eq(plain.len, MIB);
    ck_assert_mem_eq(plain.data, zeros, MIB);
    nsq_stream_destroy(s);
    free(zeros);
    nsq_buf_free(&wire);
    nsq_buf_free(&plain);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Suite                                                                    */
/* ------------------------------------------------------------------------ */

static Suite *stream_suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("crc32c");
    tcase_add_test(tc, test_crc32c_known);
    tcase_add_test(tc, test_crc32c_tables);
    tcase_add_test(tc, test_crc32c_mask);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, test_new_args);
    tcase_add_test(tc, test_call_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("encode");
    tcase_add_test(tc, test_snappy_encode_nsqd_bytes);
    tcase_add_test(tc, test_snappy_encode_empty);
    tcase_add_test(tc, test_snappy_encode_chunks);
    tcase_add_test(tc, test_deflate_encode_reference);
    suite_add_tcase(s, tc);

    tc = tcase_create("round_trip");
    tcase_set_timeout(tc, 240);
    tcase_add_loop_test(tc, test_round_trip_random, 0, 2);
    tcase_add_loop_test(tc, test_round_trip_compressible, 0, 2);
    tcase_add_loop_test(tc, test_every_split, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("conformance");
    tcase_add_loop_test(tc, test_conformance_decode, 0, 4);
    tcase_add_loop_test(tc, test_conformance_encode, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("snappy_decode");
    tcase_add_test(tc, test_snappy_skippable);
    tcase_add_test(tc, test_snappy_empty_chunks);
    tcase_add_test(tc, test_snappy_limits_ok);
    tcase_add_test(tc, test_snappy_missing_ident);
    tcase_add_test(tc, test_snappy_bad_ident);
    tcase_add_test(tc, test_snappy_reserved_unskippable);
    tcase_add_test(tc, test_snappy_bad_crc);
    tcase_add_test(tc, test_snappy_short_chunks);
    tcase_add_test(tc, test_snappy_too_long);
    tcase_add_test(tc, test_snappy_corrupt_data);
    tcase_add_test(tc, test_snappy_error_as_early_as_possible);
    tcase_add_test(tc, test_error_leaves_out_unchanged);
    suite_add_tcase(s, tc);

    tc = tcase_create("deflate_decode");
    tcase_add_test(tc, test_deflate_corrupt);
    tcase_add_test(tc, test_deflate_after_end);
    suite_add_tcase(s, tc);

    tc = tcase_create("max_output");
    tcase_add_loop_test(tc, test_max_output, 0, 2);
    tcase_add_test(tc, test_deflate_bomb);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stream_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
