/*
 * Frames (protocol/frame.c): the encoders, message decoding and the
 * incremental reader, against the bytes a real nsqd sent (the conformance
 * vectors), at every split point of a stream, through feed() and through
 * space()/commit(), at the size limit and past it, and each sticky error.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"
#include "vectors.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* The vectors' hex, decoded (tests/support). */
static unsigned char *unhex(const char *hex, size_t *len)
{
    unsigned char *out = vec_unhex(hex, len);
    ck_assert_msg(out != NULL, "bad hex in the test: %s", hex);
    return out;
}

static void assert_hex(const nsq_buf_t *b, const char *hex)
{
    size_t len;
    unsigned char *want = unhex(hex, &len);
    ck_assert_uint_eq(b->len, len);
    ck_assert_mem_eq(b->data, want, len);
    free(want);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Frames as the vectors print them. */
#define OK_HEX "00000006000000004f4b"
#define HEARTBEAT_HEX "0000000f000000005f6865617274626561745f"
#define CLOSE_WAIT_HEX "0000000e00000000434c4f53455f57414954"
#define BAD_TOPIC_HEX                                                          \
    "0000003200000001455f4241445f544f5049432050554220746f706963206e616d6520"   \
    "226261642122206973206e6f742076616c6964"
/* misc_sub_message step 3: the delivered message. */
#define MESSAGE_HEX                                                            \
    "0000002c0000000218eba44f1e19babb0001313861393664666265343636393030306865" \
    "6c6c6f20636f6e73756d6572"
#define MESSAGE_TS INT64_C(0x18eba44f1e19babb)
#define MESSAGE_ID "18a96dfbe4669000"
#define MESSAGE_BODY "hello consumer"

typedef struct want_frame {
    int32_t type;
    const char *data;
    size_t len;
} want_frame_t;

/* A stream of five frames: the cases a client meets, and an empty one. */
static const want_frame_t stream_frames[] = {
    {NSQ_FRAME_RESPONSE, "OK", 2},
    {NSQ_FRAME_RESPONSE, "_heartbeat_", 11},
    {NSQ_FRAME_ERROR, "E_BAD_TOPIC PUB topic name \"bad!\" is not valid", 46},
    {NSQ_FRAME_MESSAGE,
     "\x18\xeb\xa4\x4f\x1e\x19\xba\xbb\x00\x01" MESSAGE_ID MESSAGE_BODY, 40},
    {NSQ_FRAME_RESPONSE, "", 0},
};
#define NSTREAM (sizeof stream_frames / sizeof stream_frames[0])

static unsigned char *stream_bytes(size_t *len)
{
    return unhex(
        OK_HEX HEARTBEAT_HEX BAD_TOPIC_HEX MESSAGE_HEX "0000000400000000", len);
}

static void assert_frame(const nsq_frame_t *f, const want_frame_t *w)
{
    ck_assert_int_eq(f->type, w->type);
    ck_assert_uint_eq(f->len, w->len);
    if (w->len > 0)
        ck_assert_mem_eq(f->data, w->data, w->len);
}

/* Takes every complete frame, checking each against want[*got...]. */
static void drain(nsq_frame_reader_t *r, const want_frame_t *want, size_t nwant,
                  size_t *got)
{
    nsq_frame_t f;
    int rc;
    while ((rc = nsq_frame_reader_next(r, &f)) == 1) {
        ck_assert_uint_lt(*got, nwant);
        assert_frame(&f, &want[*got]);
        (*got)++;
    }
    ck_assert_int_eq(rc, 0);
}

/* Feeds bytes through space()/commit() in pieces of at most piece bytes. */
static void commit_bytes(nsq_frame_reader_t *r, const unsigned char *p,
                         size_t len, size_t piece)
{
    while (len > 0) {
        size_t avail = 0;
        char *dst = nsq_frame_reader_space(r, piece, &avail);
        ck_assert_ptr_nonnull(dst);
        ck_assert_uint_ge(avail, piece);
        size_t n = len < piece ? len : piece;
        memcpy(dst, p, n);
        ck_assert_int_eq(nsq_frame_reader_commit(r, n), NSQ_OK);
        p += n;
        len -= n;
    }
}

static void feed_header(nsq_frame_reader_t *r, uint32_t size, uint32_t type,
                        size_t nbytes)
{
    unsigned char h[8];
    put_be32(h, size);
    put_be32(h + 4, type);
    ck_assert_int_eq(nsq_frame_reader_feed(r, h, nbytes), NSQ_OK);
}

/* After a sticky error every call reports it and nothing else changes. */
static void assert_sticky(nsq_frame_reader_t *r, const char *why)
{
    nsq_frame_t f;
    size_t pending = nsq_frame_reader_pending(r);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
        ck_assert_str_eq(nsq_frame_reader_errstr(r), why);
        ck_assert_int_eq(nsq_frame_reader_feed(r, "\0\0\0\6\0\0\0\0OK", 10),
                         NSQ_ERR_BAD_FRAME);
        size_t avail = 123;
        ck_assert_ptr_null(nsq_frame_reader_space(r, 16, &avail));
        ck_assert_uint_eq(avail, 0);
        ck_assert_int_eq(nsq_frame_reader_commit(r, 0), NSQ_ERR_BAD_FRAME);
        ck_assert_uint_eq(nsq_frame_reader_pending(r), pending);
    }
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

START_TEST(test_encode_frames)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_frame_encode(&b, NSQ_FRAME_RESPONSE, "OK", 2), NSQ_OK);
    assert_hex(&b, OK_HEX);
    nsq_buf_free(&b);

    ck_assert_int_eq(
        nsq_frame_encode(&b, NSQ_FRAME_RESPONSE, "_heartbeat_", 11), NSQ_OK);
    assert_hex(&b, HEARTBEAT_HEX);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_frame_encode(&b, NSQ_FRAME_RESPONSE, "CLOSE_WAIT", 10),
                     NSQ_OK);
    assert_hex(&b, CLOSE_WAIT_HEX);
    nsq_buf_free(&b);

    const char *err = "E_BAD_TOPIC PUB topic name \"bad!\" is not valid";
    ck_assert_int_eq(nsq_frame_encode(&b, NSQ_FRAME_ERROR, err, strlen(err)),
                     NSQ_OK);
    assert_hex(&b, BAD_TOPIC_HEX);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_frame_encode(&b, NSQ_FRAME_RESPONSE, NULL, 0), NSQ_OK);
    assert_hex(&b, "0000000400000000");
    nsq_buf_free(&b);

    /* The test broker may send unknown types on purpose. */
    ck_assert_int_eq(nsq_frame_encode(&b, 7, "x", 1), NSQ_OK);
    assert_hex(&b, "000000050000000778");
    nsq_buf_free(&b);
    ck_assert_int_eq(nsq_frame_encode(&b, -1, "x", 1), NSQ_OK);
    assert_hex(&b, "00000005ffffffff78");
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_encode_message)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_frame_encode_message(&b, MESSAGE_TS, 1, MESSAGE_ID,
                                              MESSAGE_BODY, 14),
                     NSQ_OK);
    assert_hex(&b, MESSAGE_HEX);
    nsq_buf_free(&b);

    ck_assert_int_eq(
        nsq_frame_encode_message(&b, -1, 65535, "0123456789abcdef", NULL, 0),
        NSQ_OK);
    assert_hex(&b, "0000001e00000002ffffffffffffffffffff"
                   "30313233343536373839616263646566");
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_frame_encode_message(&b, INT64_MIN, 256,
                                              "0123456789abcdef", "\0", 1),
                     NSQ_OK);
    assert_hex(&b, "0000001f0000000280000000000000000100"
                   "3031323334353637383961626364656600");
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_encode_errors)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_buf_append(&b, "prefix", 6), NSQ_OK);
    char *data = b.data;
    size_t cap = b.cap;
    ck_assert_int_eq(nsq_frame_encode(NULL, 0, "x", 1), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_encode(&b, 0, NULL, 1), NSQ_ERR_INVALID_ARG);
    /* The size field counts the type: INT32_MAX - 4 bytes is the most. */
    ck_assert_int_eq(nsq_frame_encode(&b, 0, "x", (size_t)INT32_MAX - 3),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_encode(&b, 0, "x", SIZE_MAX),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(
        nsq_frame_encode_message(NULL, 0, 0, "0123456789abcdef", "x", 1),
        NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_encode_message(&b, 0, 0, NULL, "x", 1),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(
        nsq_frame_encode_message(&b, 0, 0, "0123456789abcdef", NULL, 1),
        NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_encode_message(&b, 0, 0, "0123456789abcdef", "x",
                                              (size_t)INT32_MAX - 29),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_ptr_eq(b.data, data);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_mem_eq(b.data, "prefix", 6);
    /* Appending keeps what was there. */
    ck_assert_int_eq(nsq_frame_encode(&b, 0, "OK", 2), NSQ_OK);
    ck_assert_uint_eq(b.len, 16);
    ck_assert_mem_eq(b.data, "prefix\0\0\0\6\0\0\0\0OK", 16);
    nsq_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

START_TEST(test_decode_message_vector)
{
    size_t len;
    unsigned char *frame = unhex(MESSAGE_HEX, &len);
    nsq_message_t m;
    ck_assert_int_eq(nsq_message_decode(frame + 8, len - 8, &m), NSQ_OK);
    ck_assert_int_eq(m.timestamp_ns, MESSAGE_TS);
    ck_assert_uint_eq(m.attempts, 1);
    ck_assert_ptr_eq(m.id, (char *)frame + 18);
    ck_assert_mem_eq(m.id, MESSAGE_ID, 16);
    ck_assert_ptr_eq(m.body, (char *)frame + 34);
    ck_assert_uint_eq(m.body_len, 14);
    ck_assert_mem_eq(m.body, MESSAGE_BODY, 14);
    free(frame);
}
END_TEST

START_TEST(test_decode_message_edges)
{
    unsigned char d[27];
    memset(d, 0xff, sizeof d);
    memcpy(d + 10, "0123456789abcdef", 16);
    nsq_message_t m;
    /* 26 bytes: an empty body is allowed here. */
    ck_assert_int_eq(nsq_message_decode(d, 26, &m), NSQ_OK);
    ck_assert_int_eq(m.timestamp_ns, -1);
    ck_assert_uint_eq(m.attempts, 65535);
    ck_assert_uint_eq(m.body_len, 0);
    ck_assert_ptr_eq(m.body, (char *)d + 26);
    ck_assert_int_eq(nsq_message_decode(d, 27, &m), NSQ_OK);
    ck_assert_uint_eq(m.body_len, 1);
    ck_assert_int_eq((unsigned char)m.body[0], 0xff);
    for (size_t n = 0; n < 26; n++)
        ck_assert_int_eq(nsq_message_decode(d, n, &m),
                         NSQ_ERR_BAD_MESSAGE_FRAME);
    d[0] = 0x80;
    memset(d + 1, 0, 7);
    d[8] = 0x01;
    d[9] = 0x02;
    ck_assert_int_eq(nsq_message_decode(d, 26, &m), NSQ_OK);
    ck_assert_int_eq(m.timestamp_ns, INT64_MIN);
    ck_assert_uint_eq(m.attempts, 0x0102);
    d[0] = 0x7f;
    memset(d + 1, 0xff, 7);
    ck_assert_int_eq(nsq_message_decode(d, 26, &m), NSQ_OK);
    ck_assert_int_eq(m.timestamp_ns, INT64_MAX);
    ck_assert_int_eq(nsq_message_decode(NULL, 26, &m), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_message_decode(d, 26, NULL), NSQ_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_message_round_trip)
{
    static const int64_t stamps[] = {0,         1,         -1,
                                     INT64_MAX, INT64_MIN, 1700000000123456789};
    static const uint16_t attempts[] = {0, 1, 255, 256, 65535};
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        for (size_t j = 0; j < sizeof attempts / sizeof attempts[0]; j++) {
            nsq_buf_t b = {0};
            ck_assert_int_eq(nsq_frame_encode_message(&b, stamps[i],
                                                      attempts[j], MESSAGE_ID,
                                                      "body", 4),
                             NSQ_OK);
            ck_assert_uint_eq(b.len, 8 + 26 + 4);
            nsq_message_t m;
            ck_assert_int_eq(nsq_message_decode(b.data + 8, b.len - 8, &m),
                             NSQ_OK);
            ck_assert_int_eq(m.timestamp_ns, stamps[i]);
            ck_assert_uint_eq(m.attempts, attempts[j]);
            ck_assert_mem_eq(m.id, MESSAGE_ID, 16);
            ck_assert_uint_eq(m.body_len, 4);
            ck_assert_mem_eq(m.body, "body", 4);
            nsq_buf_free(&b);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reader: frames of the vectors                                            */
/* ------------------------------------------------------------------------ */

START_TEST(test_reader_ok_literal)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(nsq_frame_reader_errstr(r), "");
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    ck_assert_int_eq(
        nsq_frame_reader_feed(r, "\x00\x00\x00\x06\x00\x00\x00\x00OK", 10),
        NSQ_OK);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 10);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_int_eq(f.type, NSQ_FRAME_RESPONSE);
    ck_assert_uint_eq(f.len, 2);
    ck_assert_mem_eq(f.data, "OK", 2);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    ck_assert_str_eq(nsq_frame_reader_errstr(r), "");
    nsq_frame_reader_destroy(r);
}
END_TEST

START_TEST(test_reader_heartbeat_and_message)
{
    size_t len;
    unsigned char *bytes = unhex(HEARTBEAT_HEX MESSAGE_HEX, &len);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(nsq_frame_reader_feed(r, bytes, len), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_int_eq(f.type, NSQ_FRAME_RESPONSE);
    ck_assert_uint_eq(f.len, 11);
    ck_assert_mem_eq(f.data, "_heartbeat_", 11);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 48);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_int_eq(f.type, NSQ_FRAME_MESSAGE);
    ck_assert_uint_eq(f.len, 40);
    nsq_message_t m;
    ck_assert_int_eq(nsq_message_decode(f.data, f.len, &m), NSQ_OK);
    ck_assert_int_eq(m.timestamp_ns, MESSAGE_TS);
    ck_assert_uint_eq(m.attempts, 1);
    ck_assert_mem_eq(m.id, MESSAGE_ID, 16);
    ck_assert_uint_eq(m.body_len, 14);
    ck_assert_mem_eq(m.body, MESSAGE_BODY, 14);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    nsq_frame_reader_destroy(r);
    free(bytes);
}
END_TEST

/* Every recv stream of every vector parses into its recv_frames, whole and
 * byte by byte. */
START_TEST(test_reader_conformance)
{
    char **paths;
    int n = vec_list(NSQ_CONFORMANCE_DIR, &paths);
    ck_assert_int_gt(n, 50);
    size_t frames = 0, messages = 0;
    for (int i = 0; i < n; i++) {
        char err[256];
        vec_case_t *c = vec_load(paths[i], err, sizeof err);
        ck_assert_msg(c != NULL, "%s", err);
        for (size_t s = 0; s < c->nsteps; s++) {
            const vec_step_t *st = &c->steps[s];
            for (int bytewise = 0; bytewise < 2; bytewise++) {
                nsq_frame_reader_t *r = nsq_frame_reader_new(0);
                ck_assert_ptr_nonnull(r);
                size_t got = 0, off = 0;
                const vec_bytes_t *in = &st->recv_decoded;
                do {
                    size_t k = in->len - off;
                    if (bytewise && k > 1)
                        k = 1;
                    if (k > 0)
                        ck_assert_int_eq(
                            nsq_frame_reader_feed(r, in->data + off, k),
                            NSQ_OK);
                    off += k;
                    nsq_frame_t f;
                    int rc;
                    while ((rc = nsq_frame_reader_next(r, &f)) == 1) {
                        ck_assert_msg(got < st->nframes, "%s step %zu", c->name,
                                      s);
                        const vec_frame_t *vf = &st->frames[got];
                        ck_assert_msg(
                            vec_frame_matches(vf, f.type, f.data, f.len),
                            "%s step %zu frame %zu", c->name, s, got);
                        ck_assert_uint_eq(f.len + 4, vf->size);
                        if (f.type == NSQ_FRAME_MESSAGE) {
                            nsq_message_t m;
                            ck_assert_int_eq(
                                nsq_message_decode(f.data, f.len, &m), NSQ_OK);
                            ck_assert_uint_eq(m.body_len, f.len - 26);
                            messages += !bytewise;
                        }
                        got++;
                        frames += !bytewise;
                    }
                    ck_assert_int_eq(rc, 0);
                } while (off < in->len);
                ck_assert_msg(got == st->nframes, "%s step %zu: %zu frames",
                              c->name, s, got);
                ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
                nsq_frame_reader_destroy(r);
            }
        }
        vec_free(c);
    }
    vec_list_free(paths, n);
    ck_assert_uint_gt(frames, 100);
    ck_assert_uint_gt(messages, 0);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reader: chunking                                                         */
/* ------------------------------------------------------------------------ */

START_TEST(test_reader_every_split)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    for (size_t i = 0; i <= len; i++) {
        nsq_frame_reader_t *r = nsq_frame_reader_new(0);
        ck_assert_ptr_nonnull(r);
        size_t got = 0;
        ck_assert_int_eq(nsq_frame_reader_feed(r, s, i), NSQ_OK);
        drain(r, stream_frames, NSTREAM, &got);
        ck_assert_int_eq(nsq_frame_reader_feed(r, s + i, len - i), NSQ_OK);
        drain(r, stream_frames, NSTREAM, &got);
        ck_assert_uint_eq(got, NSTREAM);
        ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
        nsq_frame_reader_destroy(r);
    }
    free(s);
}
END_TEST

START_TEST(test_reader_every_two_splits)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    for (size_t i = 0; i <= len; i++) {
        for (size_t j = i; j <= len; j++) {
            nsq_frame_reader_t *r = nsq_frame_reader_new(0);
            ck_assert_ptr_nonnull(r);
            size_t got = 0;
            ck_assert_int_eq(nsq_frame_reader_feed(r, s, i), NSQ_OK);
            drain(r, stream_frames, NSTREAM, &got);
            commit_bytes(r, s + i, j - i, j - i > 0 ? j - i : 1);
            drain(r, stream_frames, NSTREAM, &got);
            ck_assert_int_eq(nsq_frame_reader_feed(r, s + j, len - j), NSQ_OK);
            drain(r, stream_frames, NSTREAM, &got);
            ck_assert_uint_eq(got, NSTREAM);
            ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
            nsq_frame_reader_destroy(r);
        }
    }
    free(s);
}
END_TEST

START_TEST(test_reader_byte_by_byte)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    /* Frame k is complete exactly at its last byte, not one byte before. */
    size_t ends[NSTREAM], off = 0;
    for (size_t k = 0; k < NSTREAM; k++) {
        off += 8 + stream_frames[k].len;
        ends[k] = off;
    }
    ck_assert_uint_eq(off, len);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t got = 0;
    for (size_t i = 0; i < len; i++) {
        ck_assert_int_eq(nsq_frame_reader_feed(r, s + i, 1), NSQ_OK);
        size_t before = got;
        drain(r, stream_frames, NSTREAM, &got);
        ck_assert_uint_eq(got - before, i + 1 == ends[before] ? 1 : 0);
    }
    ck_assert_uint_eq(got, NSTREAM);
    nsq_frame_reader_destroy(r);
    free(s);
}
END_TEST

START_TEST(test_reader_commit_pieces)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    for (size_t piece = 1; piece <= len + 1; piece++) {
        nsq_frame_reader_t *r = nsq_frame_reader_new(0);
        ck_assert_ptr_nonnull(r);
        size_t got = 0;
        for (size_t off = 0; off < len; off += piece) {
            size_t n = len - off < piece ? len - off : piece;
            commit_bytes(r, s + off, n, piece);
            drain(r, stream_frames, NSTREAM, &got);
        }
        ck_assert_uint_eq(got, NSTREAM);
        ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
        nsq_frame_reader_destroy(r);
    }
    free(s);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reader: space and commit                                                 */
/* ------------------------------------------------------------------------ */

START_TEST(test_space_commit)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    /* Nothing was handed out yet. */
    ck_assert_int_eq(nsq_frame_reader_commit(r, 1), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 0), NSQ_OK);
    size_t avail = 0;
    char *p = nsq_frame_reader_space(r, 16, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(avail, 16);
    memcpy(p, "\0\0\0\6\0\0\0\0OK", 10);
    /* More than was handed out is refused and changes nothing. */
    ck_assert_int_eq(nsq_frame_reader_commit(r, avail + 1),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    /* Two commits within one space() are fine. */
    ck_assert_int_eq(nsq_frame_reader_commit(r, 3), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 7), NSQ_OK);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 10);
    ck_assert_int_eq(nsq_frame_reader_commit(r, avail - 9),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_uint_eq(f.len, 2);
    ck_assert_mem_eq(f.data, "OK", 2);
    nsq_frame_reader_destroy(r);
}
END_TEST

/* feed() may move the buffer, so it takes back the space handed out. */
START_TEST(test_feed_revokes_space)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t avail;
    ck_assert_ptr_nonnull(nsq_frame_reader_space(r, 8, &avail));
    ck_assert_int_eq(nsq_frame_reader_feed(r, "\0\0", 2), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 1), NSQ_ERR_INVALID_ARG);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 2);
    nsq_frame_reader_destroy(r);
}
END_TEST

START_TEST(test_space_zero_and_null_avail)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t avail = 0;
    /* Never a zero-byte place: a read of 0 bytes would look like EOF. */
    char *p = nsq_frame_reader_space(r, 0, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(avail, 1);
    p = nsq_frame_reader_space(r, 5, NULL);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\0\0\0\4\0", 5);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 5), NSQ_OK);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 5);
    /* A huge request fails cleanly. */
    ck_assert_ptr_null(nsq_frame_reader_space(r, SIZE_MAX, &avail));
    ck_assert_uint_eq(avail, 0);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 5);
    p = nsq_frame_reader_space(r, 3, &avail);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\0\0\0", 3);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 3), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_uint_eq(f.len, 0);
    ck_assert_int_eq(f.type, 0);
    nsq_frame_reader_destroy(r);
}
END_TEST

/* Once a frame's header is in, space() offers room for all of it, so a large
 * message can arrive in one read. */
START_TEST(test_space_whole_frame)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    uint32_t size = NSQ_DEFAULT_MAX_FRAME_SIZE;
    feed_header(r, size, NSQ_FRAME_MESSAGE, 8);
    size_t avail = 0;
    char *p = nsq_frame_reader_space(r, 1, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(avail, size - 4);
    /* Within the frame plus some slack, not a doubling of it. */
    ck_assert_uint_lt(avail, (size_t)size + 128 * 1024);
    memset(p, 'm', size - 4);
    ck_assert_int_eq(nsq_frame_reader_commit(r, size - 4), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_int_eq(f.type, NSQ_FRAME_MESSAGE);
    ck_assert_uint_eq(f.len, size - 4);
    ck_assert_int_eq(f.data[0], 'm');
    ck_assert_int_eq(f.data[f.len - 1], 'm');
    nsq_frame_reader_destroy(r);
}
END_TEST

/* A long stream of small frames reuses the same memory.  A partial frame is
 * left pending at every step, so the buffer is never simply empty and the
 * consumed bytes must be moved out; at the end, with everything taken, the
 * whole buffer is free again and it has not grown. */
START_TEST(test_memory_bounded)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    /* The stream rotated by 4 bytes: fed after the first 4 bytes, it keeps
     * 4 bytes of the next round pending between rounds, and no chunk below
     * ends on a frame boundary. */
    unsigned char *rot = malloc(len);
    ck_assert_ptr_nonnull(rot);
    memcpy(rot, s + 4, len - 4);
    memcpy(rot + len - 4, s, 4);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t first = 0, avail = 0;
    ck_assert_ptr_nonnull(nsq_frame_reader_space(r, 1, &first));
    ck_assert_int_eq(nsq_frame_reader_feed(r, s, 4), NSQ_OK);
    size_t got_total = 0;
    int rounds = 3000;
    for (int round = 0; round < rounds; round++) {
        size_t got = 0;
        /* 7 is prime to the stream length, so frames straddle every chunk
         * boundary. */
        for (size_t off = 0; off < len; off += 7) {
            size_t n = len - off < 7 ? len - off : 7;
            if (round % 2)
                ck_assert_int_eq(nsq_frame_reader_feed(r, rot + off, n),
                                 NSQ_OK);
            else
                commit_bytes(r, rot + off, n, 64);
            drain(r, stream_frames, NSTREAM, &got);
            ck_assert_uint_gt(nsq_frame_reader_pending(r), 0);
        }
        ck_assert_uint_eq(got, NSTREAM);
        got_total += got;
        ck_assert_uint_eq(nsq_frame_reader_pending(r), 4);
    }
    ck_assert_uint_eq(got_total, (size_t)rounds * NSTREAM);
    ck_assert_int_eq(nsq_frame_reader_feed(r, s + 4, len - 4), NSQ_OK);
    size_t got = 0;
    drain(r, stream_frames, NSTREAM, &got);
    ck_assert_uint_eq(got, NSTREAM);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    ck_assert_ptr_nonnull(nsq_frame_reader_space(r, 1, &avail));
    ck_assert_uint_eq(avail, first);
    ck_assert_uint_le(avail, 64 * 1024);
    nsq_frame_reader_destroy(r);
    free(rot);
    free(s);
}
END_TEST

/* Many frames fed at once, then taken: the views stay valid until the next
 * call, and the next feed reuses the space. */
START_TEST(test_pending_counts)
{
    size_t len;
    unsigned char *s = stream_bytes(&len);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(nsq_frame_reader_feed(r, s, len), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_feed(r, s, 5), NSQ_OK);
    size_t left = len + 5;
    nsq_frame_t f;
    for (size_t k = 0; k < NSTREAM; k++) {
        ck_assert_uint_eq(nsq_frame_reader_pending(r), left);
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
        assert_frame(&f, &stream_frames[k]);
        left -= 8 + stream_frames[k].len;
    }
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 5);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 5);
    ck_assert_int_eq(nsq_frame_reader_feed(r, s + 5, 5), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    assert_frame(&f, &stream_frames[0]);
    nsq_frame_reader_destroy(r);
    free(s);
}
END_TEST

START_TEST(test_reader_bad_args)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_feed(NULL, "x", 1), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_feed(r, NULL, 1), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_feed(r, NULL, 0), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_next(NULL, &f), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_next(r, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_frame_reader_commit(NULL, 0), NSQ_ERR_INVALID_ARG);
    size_t avail = 9;
    ck_assert_ptr_null(nsq_frame_reader_space(NULL, 1, &avail));
    ck_assert_uint_eq(avail, 0);
    ck_assert_uint_eq(nsq_frame_reader_pending(NULL), 0);
    ck_assert_str_eq(nsq_frame_reader_errstr(NULL), "");
    /* None of that was a sticky error. */
    ck_assert_int_eq(nsq_frame_reader_feed(r, "\0\0\0\6\0\0\0\0OK", 10),
                     NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_str_eq(nsq_frame_reader_errstr(r), "");
    nsq_frame_reader_destroy(r);
    nsq_frame_reader_destroy(NULL);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Reader: limits and sticky errors                                         */
/* ------------------------------------------------------------------------ */

START_TEST(test_size_under_4)
{
    for (uint32_t size = 0; size < 4; size++) {
        nsq_frame_reader_t *r = nsq_frame_reader_new(0);
        ck_assert_ptr_nonnull(r);
        nsq_frame_t f;
        /* Three bytes of the size say nothing yet. */
        feed_header(r, size, 0, 3);
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
        ck_assert_str_eq(nsq_frame_reader_errstr(r), "");
        unsigned char last = (unsigned char)size;
        ck_assert_int_eq(nsq_frame_reader_feed(r, &last, 1), NSQ_OK);
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
        char why[64];
        snprintf(why, sizeof why, "frame size %u is under 4", (unsigned)size);
        assert_sticky(r, why);
        nsq_frame_reader_destroy(r);
    }
}
END_TEST

START_TEST(test_size_4_is_empty)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(4);
    ck_assert_ptr_nonnull(r);
    feed_header(r, 4, NSQ_FRAME_ERROR, 8);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_int_eq(f.type, NSQ_FRAME_ERROR);
    ck_assert_uint_eq(f.len, 0);
    feed_header(r, 5, NSQ_FRAME_ERROR, 4);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 5 over the limit 4");
    nsq_frame_reader_destroy(r);
}
END_TEST

START_TEST(test_size_limit_custom)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(100);
    ck_assert_ptr_nonnull(r);
    unsigned char frame[104];
    memset(frame, 'd', sizeof frame);
    put_be32(frame, 100);
    put_be32(frame + 4, NSQ_FRAME_RESPONSE);
    ck_assert_int_eq(nsq_frame_reader_feed(r, frame, sizeof frame), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_uint_eq(f.len, 96);
    ck_assert_int_eq(f.data[95], 'd');
    /* The size alone gives it away: no type, no data needed. */
    feed_header(r, 101, NSQ_FRAME_RESPONSE, 4);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 101 over the limit 100");
    nsq_frame_reader_destroy(r);
}
END_TEST

START_TEST(test_size_limit_default)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t size = NSQ_DEFAULT_MAX_FRAME_SIZE;
    ck_assert_uint_eq(size, 1048606);
    unsigned char *frame = malloc(4 + size);
    ck_assert_ptr_nonnull(frame);
    memset(frame, 'b', 4 + size);
    put_be32(frame, (uint32_t)size);
    put_be32(frame + 4, NSQ_FRAME_MESSAGE);
    ck_assert_int_eq(nsq_frame_reader_feed(r, frame, 4 + size), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_uint_eq(f.len, size - 4);
    nsq_message_t m;
    ck_assert_int_eq(nsq_message_decode(f.data, f.len, &m), NSQ_OK);
    ck_assert_uint_eq(m.body_len, NSQ_DEFAULT_MAX_MSG_SIZE);
    feed_header(r, (uint32_t)size + 1, NSQ_FRAME_MESSAGE, 4);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 1048607 over the limit 1048606");
    nsq_frame_reader_destroy(r);
    free(frame);

    r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    feed_header(r, 9999999, NSQ_FRAME_MESSAGE, 8);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 9999999 over the limit 1048606");
    nsq_frame_reader_destroy(r);

    r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    feed_header(r, UINT32_MAX, NSQ_FRAME_MESSAGE, 4);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 4294967295 over the limit 1048606");
    nsq_frame_reader_destroy(r);
}
END_TEST

/* space() must not allocate for a size the limit refuses. */
START_TEST(test_space_refuses_bad_size)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    feed_header(r, 0x7fffffff, NSQ_FRAME_MESSAGE, 8);
    size_t avail = 1;
    ck_assert_ptr_null(nsq_frame_reader_space(r, 16, &avail));
    ck_assert_uint_eq(avail, 0);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 2147483647 over the limit 1048606");
    nsq_frame_reader_destroy(r);
}
END_TEST

START_TEST(test_unknown_type)
{
    static const uint32_t types[] = {3, 7, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        nsq_frame_reader_t *r = nsq_frame_reader_new(0);
        ck_assert_ptr_nonnull(r);
        nsq_frame_t f;
        /* A valid size, then the type byte by byte: known at the 8th. */
        feed_header(r, 100, types[i], 7);
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
        unsigned char last = (unsigned char)types[i];
        ck_assert_int_eq(nsq_frame_reader_feed(r, &last, 1), NSQ_OK);
        ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
        char why[64];
        snprintf(why, sizeof why, "unknown frame type %lu",
                 (unsigned long)types[i]);
        assert_sticky(r, why);
        nsq_frame_reader_destroy(r);
    }
}
END_TEST

/* Frames before a bad one are still delivered; the error comes after. */
START_TEST(test_error_after_good_frames)
{
    size_t len;
    unsigned char *s = unhex(OK_HEX HEARTBEAT_HEX "0000000600000007", &len);
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(nsq_frame_reader_feed(r, s, len), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_mem_eq(f.data, "OK", 2);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_mem_eq(f.data, "_heartbeat_", 11);
    ck_assert_str_eq(nsq_frame_reader_errstr(r), "");
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "unknown frame type 7");
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 8);
    nsq_frame_reader_destroy(r);
    free(s);
}
END_TEST

/* Through space()/commit() the error is found the same way. */
START_TEST(test_error_via_commit)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    ck_assert_ptr_nonnull(r);
    size_t avail;
    char *p = nsq_frame_reader_space(r, 8, &avail);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "\0\0\0\2", 4);
    ck_assert_int_eq(nsq_frame_reader_commit(r, 4), NSQ_OK);
    /* space() sees the bad header too and hands out nothing. */
    ck_assert_ptr_null(nsq_frame_reader_space(r, 8, &avail));
    ck_assert_uint_eq(avail, 0);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), NSQ_ERR_BAD_FRAME);
    assert_sticky(r, "frame size 2 is under 4");
    nsq_frame_reader_destroy(r);
}
END_TEST

/* After a frame, the rest of a read belongs to the next encoding: drain
 * hands it over intact and leaves the reader empty and usable. */
START_TEST(test_drain_after_frame)
{
    nsq_frame_reader_t *r = nsq_frame_reader_new(0);
    static const char wire[] = "\x00\x00\x00\x06\x00\x00\x00\x00OKxyz\x01";
    ck_assert_int_eq(nsq_frame_reader_feed(r, wire, sizeof wire - 1), NSQ_OK);
    nsq_frame_t f;
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_uint_eq(f.len, 2);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_buf_append(&out, "A", 1), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_drain(r, &out), NSQ_OK);
    ck_assert_uint_eq(out.len, 5);
    ck_assert_mem_eq(out.data, "Axyz\x01", 5);
    ck_assert_uint_eq(nsq_frame_reader_pending(r), 0);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 0);
    /* Still usable for new frames. */
    ck_assert_int_eq(nsq_frame_reader_feed(r, wire, 10), NSQ_OK);
    ck_assert_int_eq(nsq_frame_reader_next(r, &f), 1);
    ck_assert_mem_eq(f.data, "OK", 2);
    ck_assert_int_eq(nsq_frame_reader_drain(NULL, &out), NSQ_ERR_INVALID_ARG);
    nsq_buf_free(&out);
    nsq_frame_reader_destroy(r);
}
END_TEST

static Suite *frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("encode");
    tcase_add_test(tc, test_encode_frames);
    tcase_add_test(tc, test_encode_message);
    tcase_add_test(tc, test_encode_errors);
    tcase_add_test(tc, test_decode_message_vector);
    tcase_add_test(tc, test_decode_message_edges);
    tcase_add_test(tc, test_message_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("reader");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reader_ok_literal);
    tcase_add_test(tc, test_reader_heartbeat_and_message);
    tcase_add_test(tc, test_reader_conformance);
    tcase_add_test(tc, test_reader_every_split);
    tcase_add_test(tc, test_reader_every_two_splits);
    tcase_add_test(tc, test_reader_byte_by_byte);
    tcase_add_test(tc, test_reader_commit_pieces);
    tcase_add_test(tc, test_space_commit);
    tcase_add_test(tc, test_feed_revokes_space);
    tcase_add_test(tc, test_space_zero_and_null_avail);
    tcase_add_test(tc, test_space_whole_frame);
    tcase_add_test(tc, test_memory_bounded);
    tcase_add_test(tc, test_pending_counts);
    tcase_add_test(tc, test_reader_bad_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_size_under_4);
    tcase_add_test(tc, test_size_4_is_empty);
    tcase_add_test(tc, test_size_limit_custom);
    tcase_add_test(tc, test_size_limit_default);
    tcase_add_test(tc, test_space_refuses_bad_size);
    tcase_add_test(tc, test_unknown_type);
    tcase_add_test(tc, test_error_after_good_frames);
    tcase_add_test(tc, test_error_via_commit);
    tcase_add_test(tc, test_drain_after_frame);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(frame_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
