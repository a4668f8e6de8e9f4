/*
 * deflate as nsqd speaks it: a raw DEFLATE stream (windowBits -15, no zlib
 * header or checksum) in each direction.  Every compress() ends with a sync
 * flush, so the peer can decode all that was written so far; nsqd never ends
 * its stream, so a final block followed by more bytes is an error.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "stream.h"

#define WINDOW_BITS (-15)
#define MEM_LEVEL 8

/* zlib counts in uInt; larger inputs go in pieces of this size. */
#define MAX_PIECE ((size_t)1 << 30)

/* A sync flush ends the last block (at most a few bits) and adds an empty
 * stored block (5 bytes); this covers both on top of deflateBound. */
#define FLUSH_SLACK 16

/* How much output room inflate gets at a time before the buffer grows
 * (nsq_buf_reserve doubles, so large outputs still grow geometrically). */
#define INFLATE_STEP 65536

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

nsq_err_t nsq__deflate_init(nsq_stream_t *s, int level)
{
    nsq__deflate_t *z = &s->u.deflate;
    memset(z, 0, sizeof *z);
    if (deflateInit2(&z->def, level, Z_DEFLATED, WINDOW_BITS, MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return NSQ_ERR_NOMEM;
    if (inflateInit2(&z->inf, WINDOW_BITS) != Z_OK) {
        deflateEnd(&z->def);
        return NSQ_ERR_NOMEM;
    }
    return NSQ_OK;
}

void nsq__deflate_free(nsq_stream_t *s)
{
    deflateEnd(&s->u.deflate.def);
    inflateEnd(&s->u.deflate.inf);
}

nsq_err_t nsq__deflate_compress(nsq_stream_t *s, const unsigned char *data,
                                size_t len, nsq_buf_t *out)
{
    /* The previous call ended with a flush, so nothing is pending: an empty
     * call has nothing to write. */
    if (len == 0)
        return NSQ_OK;
    z_stream *zs = &s->u.deflate.def;

    /* Room for all of it first, so the usual failure (no memory) happens
     * before zlib has seen the data and leaves the stream usable. */
    size_t bound = (size_t)deflateBound(zs, (uLong)min_size(len, ULONG_MAX));
    if (bound < len || bound > SIZE_MAX - FLUSH_SLACK)
        return NSQ_ERR_NOMEM;
    nsq_err_t err = nsq_buf_reserve(out, bound + FLUSH_SLACK);
    if (err != NSQ_OK)
        return err;

    while (len > 0) {
        size_t piece = min_size(len, MAX_PIECE);
        zs->next_in = (Bytef *)(uintptr_t)data;
        zs->avail_in = (uInt)piece;
        int flush = piece == len ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        do {
            if (out->cap == out->len &&
                (err = nsq_buf_reserve(out, INFLATE_STEP)) != NSQ_OK) {
                /* zlib has taken input whose output is lost: the peer can
                 * never decode this stream in step again. */
                s->compress_err = err;
                return nsq__stream_fail(s, err, "deflate: out of memory");
            }
            size_t room = min_size(out->cap - out->len, UINT_MAX);
            zs->next_out = (Bytef *)out->data + out->len;
            zs->avail_out = (uInt)room;
            int rc = deflate(zs, flush);
            out->len += room - zs->avail_out;
            /* Z_BUF_ERROR only says no progress was possible: not fatal. */
            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                s->compress_err = NSQ_ERR_COMPRESSION;
                return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                        "deflate: zlib deflate failed (%d)",
                                        rc);
            }
        } while (zs->avail_out == 0);
        data += piece;
        len -= piece;
    }
    return NSQ_OK;
}

nsq_err_t nsq__deflate_decompress(nsq_stream_t *s, const unsigned char *data,
                                  size_t len, nsq_buf_t *out)
{
    nsq__deflate_t *z = &s->u.deflate;
    z_stream *zs = &z->inf;
    size_t base = out->len;
    while (len > 0) {
        if (z->ended)
            return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                    "deflate: data after the end of the "
                                    "stream");
        size_t piece = min_size(len, MAX_PIECE);
        zs->next_in = (Bytef *)(uintptr_t)data;
        zs->avail_in = (uInt)piece;
        do {
            /* One byte more than max_output allows, so that passing the
             * bound shows as output rather than as a stall. */
            size_t allowed = s->max_output - (out->len - base);
            if (allowed < SIZE_MAX)
                allowed++;
            size_t step = min_size(allowed, INFLATE_STEP);
            nsq_err_t err;
            if (out->cap - out->len < step &&
                (err = nsq_buf_reserve(out, step)) != NSQ_OK)
                return nsq__stream_fail(s, err, "deflate: out of memory");
            size_t room =
                min_size(min_size(out->cap - out->len, allowed), UINT_MAX);
            zs->next_out = (Bytef *)out->data + out->len;
            zs->avail_out = (uInt)room;
            int rc = inflate(zs, Z_SYNC_FLUSH);
            out->len += room - zs->avail_out;
            if (out->len - base > s->max_output)
                return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                        "deflate: output of one call passes "
                                        "max_output (%zu bytes)",
                                        s->max_output);
            switch (rc) {
            case Z_OK:
            case Z_BUF_ERROR: /* needs more input: fine */
                break;
            case Z_STREAM_END:
                z->ended = true;
                if (zs->avail_in > 0 || piece < len)
                    return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                            "deflate: data after the end of "
                                            "the stream");
                return NSQ_OK;
            case Z_NEED_DICT:
                return nsq__stream_fail(s, NSQ_ERR_COMPRESSION,
                                        "deflate: stream needs a preset "
                                        "dictionary");
            case Z_MEM_ERROR:
                return nsq__stream_fail(s, NSQ_ERR_NOMEM,
                                        "deflate: out of memory");
            default:
                return nsq__stream_fail(
                    s, NSQ_ERR_COMPRESSION, "deflate: corrupt data: %s",
                    zs->msg ? zs->msg : "unknown zlib error");
            }
        } while (zs->avail_in > 0 || zs->avail_out == 0);
        data += piece;
        len -= piece;
    }
    return NSQ_OK;
}
