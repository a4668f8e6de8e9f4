/*
 * snappy's framing format, as nsqd speaks it.  A stream is a sequence of
 * chunks, each [type][3-byte little-endian length][data]:
 *
 *   0xff        stream identifier, data "sNaPpY"; first, and may repeat
 *   0x00        compressed: [masked CRC-32C of the plain bytes][raw snappy]
 *   0x01        uncompressed: [masked CRC-32C][plain bytes]
 *   0x80..0xfe  skippable (0xfe is padding)
 *   0x02..0x7f  reserved, unskippable: the stream is invalid
 *
 * A data chunk holds at most 65536 plain bytes.  The decoder is strict in
 * the same places as the Go reader nsqd uses, so a stream it accepts is one
 * nsqd accepts.
 */
#include <snappy-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "stream.h"

#define CHUNK_COMPRESSED 0x00u
#define CHUNK_UNCOMPRESSED 0x01u
#define CHUNK_SKIPPABLE_MIN 0x80u
#define CHUNK_IDENT 0xffu

#define HEADER_LEN 4
#define CRC_LEN 4
#define MAX_BLOCK 65536 /* plain bytes in one data chunk */

static const unsigned char ident_chunk[] = {0xff, 6,   0,   0,   's',
                                            'N',  'a', 'P', 'p', 'Y'};
#define IDENT_DATA_LEN 6

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* The largest data a compressed chunk can carry: the checksum and the most
 * that snappy can make of MAX_BLOCK plain bytes.  It bounds the buffer for a
 * chunk that arrives in pieces, and covers the other chunk kinds too. */
static size_t max_chunk_len(void)
{
    return CRC_LEN + snappy_max_compressed_length(MAX_BLOCK);
}

nsq_err_t nsq__snappy_init(nsq_stream_t *s)
{
    memset(&s->u.snappy, 0, sizeof s->u.snappy);
    return NSQ_OK;
}

void nsq__snappy_free(nsq_stream_t *s)
{
    free(s->u.snappy.chunk);
    s->u.snappy.chunk = NULL;
}

nsq_err_t nsq__snappy_compress(nsq_stream_t *s, const unsigned char *data,
                               size_t len, nsq_buf_t *out)
{
    nsq__snappy_t *z = &s->u.snappy;
    size_t per_chunk = HEADER_LEN + max_chunk_len();
    size_t chunks = len / MAX_BLOCK + (len % MAX_BLOCK != 0);
    size_t need = z->ident_sent ? 0 : sizeof ident_chunk;
    if (chunks > (SIZE_MAX - need) / per_chunk)
        return NSQ_ERR_NOMEM;
    need += chunks * per_chunk;
    if (need == 0)
        return NSQ_OK;
    /* Reserving the worst case first means nothing can fail once writing
     * has begun, so an error leaves the stream as it was: not sticky. */
    nsq_err_t err = nsq_buf_reserve(out, need);
    if (err != NSQ_OK)
        return err;

    unsigned char *p = (unsigned char *)out->data + out->len;
    if (!z->ident_sent) {
        memcpy(p, ident_chunk, sizeof ident_chunk);
        p += sizeof ident_chunk;
        z->ident_sent = true;
    }
    while (len > 0) {
        size_t n = min_size(len, MAX_BLOCK);
        unsigned char *body = p + HEADER_LEN + CRC_LEN;
        size_t clen = snappy_max_compressed_length(n);
        unsigned type = CHUNK_COMPRESSED;
        if (snappy_compress((const char *)data, n, (char *)body, &clen) !=
                SNAPPY_OK ||
            clen >= n) {
            /* Incompressible data goes as it is, as the format intends. */
            type = CHUNK_UNCOMPRESSED;
            clen = n;
            memcpy(body, data, n);
        }
        size_t chunk_len = CRC_LEN + clen;
        p[0] = (unsigned char)type;
        p[1] = (unsigned char)chunk_len;
        p[2] = (unsigned char)(chunk_len >> 8);
        p[3] = (unsigned char)(chunk_len >> 16);
        put_le32(p + HEADER_LEN, nsq__crc32c_mask(nsq__crc32c(0, data, n)));
        p = body + clen;
        data += n;
        len -= n;
    }
    out->len = (size_t)((char *)p - out->data);
    return NSQ_OK;
}

/* Checks a chunk header as soon as it is complete, so a bad stream fails
 * before its data arrives. */
static nsq_err_t check_header(nsq_stream_t *s)
{
    const nsq__snappy_t *z = &s->u.snappy;
    size_t len = z->chunk_len;
    if (!z->ident_seen && z->type != CHUNK_IDENT)
        return nsq__stream_fail(
            s, NSQ_ERR_COMPRESSION,
            "snappy: stream does not start with a stream identifier "
            "(chunk type 0x%02x)",
            z->type);
    switch (z->type) {
    case CHUNK_IDENT:
        if (len != IDENT_DATA_LEN)
            return nsq__stream_fail(
                s, NSQ_ERR_COMPRESSION,
                "snappy: stream identifier chunk of length %zu, not 6", len);
        return NSQ_OK;
    case CHUNK_COMPRESSED:
    case CHUNK_UNCOMPRESSED:
        if (len < CRC_LEN)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: data chunk of length %zu is "
                                    "shorter than its checksum",
                                    len);
        if (z->type == CHUNK_COMPRESSED && len > max_chunk_len())
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: compressed chunk of length %zu "
                                    "is over the maximum of %zu",
                                    len, max_chunk_len());
        if (z->type == CHUNK_UNCOMPRESSED && len - CRC_LEN > MAX_BLOCK)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: uncompressed chunk of %zu bytes "
                                    "is over the maximum of %d",
                                    len - CRC_LEN, MAX_BLOCK);
        return NSQ_OK;
    default:
        if (z->type < CHUNK_SKIPPABLE_MIN)
            return nsq__stream_fail(
                s, NSQ_ERR_COMPRESSION,
                "snappy: reserved unskippable chunk type 0x%02x", z->type);
        return NSQ_OK;
    }
}

/* Takes one whole identifier or data chunk (its data, without the header).
 * base is out->len when the call began, for the max_output bound. */
static nsq_err_t take_chunk(nsq_stream_t *s, const unsigned char *p, size_t len,
                            nsq_buf_t *out, size_t base)
{
    nsq__snappy_t *z = &s->u.snappy;
    if (z->type == CHUNK_IDENT) {
        if (memcmp(p, ident_chunk + HEADER_LEN, IDENT_DATA_LEN) != 0)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: bad stream identifier");
        z->ident_seen = true;
        return NSQ_OK;
    }

    uint32_t want_crc = get_le32(p);
    p += CRC_LEN;
    len -= CRC_LEN;
    size_t plain = len;
    if (z->type == CHUNK_COMPRESSED) {
        if (snappy_uncompressed_length((const char *)p, len, &plain) !=
            SNAPPY_OK)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: corrupt compressed chunk "
                                    "(bad length)");
        if (plain > MAX_BLOCK)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: compressed chunk of %zu plain "
                                    "bytes is over the maximum of %d",
                                    plain, MAX_BLOCK);
    }
    if (plain > s->max_output - (out->len - base))
        return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                "snappy: output of one call passes "
                                "max_output (%zu bytes)",
                                s->max_output);
    nsq_err_t err = nsq_buf_reserve(out, plain);
    if (err != NSQ_OK)
        return nsq__stream_fail(s, err, "snappy: out of memory");

    /* An empty chunk is valid; it still has to decode and match. */
    char empty[1];
    char *dst = plain > 0 ? out->data + out->len : empty;
    if (z->type == CHUNK_COMPRESSED) {
        size_t got = plain;
        if (snappy_uncompress((const char *)p, len, dst, &got) != SNAPPY_OK ||
            got != plain)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "snappy: corrupt compressed chunk");
    } else if (plain > 0) {
        memcpy(dst, p, plain);
    }
    uint32_t crc = nsq__crc32c_mask(nsq__crc32c(0, dst, plain));
    if (crc != want_crc)
        return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                "snappy: checksum mismatch (chunk says "
                                "0x%08x, data gives 0x%08x)",
                                (unsigned)want_crc, (unsigned)crc);
    out->len += plain;
    return NSQ_OK;
}

nsq_err_t nsq__snappy_decompress(nsq_stream_t *s, const unsigned char *data,
                                 size_t len, nsq_buf_t *out)
{
    nsq__snappy_t *z = &s->u.snappy;
    size_t base = out->len;
    nsq_err_t err;
    while (len > 0) {
        if (!z->in_chunk) {
            size_t n = min_size(HEADER_LEN - z->hdr_have, len);
            memcpy(z->hdr + z->hdr_have, data, n);
            z->hdr_have += n;
            data += n;
            len -= n;
            if (z->hdr_have < HEADER_LEN)
                break;
            z->hdr_have = 0;
            z->type = z->hdr[0];
            z->chunk_len = (size_t)z->hdr[1] | (size_t)z->hdr[2] << 8 |
                           (size_t)z->hdr[3] << 16;
            z->chunk_have = 0;
            if ((err = check_header(s)) != NSQ_OK)
                return err;
            /* Only a skippable chunk may be empty; it ends here. */
            z->in_chunk = z->chunk_len > 0;
            continue;
        }

        size_t n = min_size(z->chunk_len - z->chunk_have, len);
        if (z->type >= CHUNK_SKIPPABLE_MIN && z->type != CHUNK_IDENT) {
            z->chunk_have += n;
            data += n;
            len -= n;
            z->in_chunk = z->chunk_have < z->chunk_len;
            continue;
        }
        if (z->chunk_have == 0 && n == z->chunk_len) {
            /* The whole chunk is in this input: take it in place. */
            err = take_chunk(s, data, n, out, base);
        } else {
            if (!z->chunk && !(z->chunk = malloc(max_chunk_len())))
                return nsq__stream_fail(s, NSQ_ERR_NOMEM,
                                        "snappy: out of memory");
            memcpy(z->chunk + z->chunk_have, data, n);
            z->chunk_have += n;
            if (z->chunk_have < z->chunk_len) {
                /* All input is used; the rest comes in a later call. */
                data += n;
                len -= n;
                continue;
            }
            err = take_chunk(s, z->chunk, z->chunk_len, out, base);
        }
        if (err != NSQ_OK)
            return err;
        data += n;
        len -= n;
        z->in_chunk = false;
    }
    return NSQ_OK;
}
