/*
 * Compression streams: the public object, argument checks, sticky errors and
 * the promise that out is unchanged on error.  The codecs live in
 * snappy_stream.c and deflate_stream.c.
 *
 * On any error out->len is put back to its value at the call, so out holds
 * exactly what it held before (its capacity may have grown).  For
 * decompress() this drops the plain bytes of good chunks that preceded the
 * bad one in the same call: the connection is unusable by then anyway.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "stream.h"

nsq_err_t nsq__stream_fail(nsq_stream_t *s, nsq_err_t err, const char *fmt, ...)
{
    if (s->errstr[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->errstr, sizeof s->errstr, fmt, ap);
        va_end(ap);
    }
    return err;
}

nsq_stream_t *nsq_stream_new(nsq_stream_kind_t kind, int level,
                             size_t max_output)
{
    if (kind != NSQ_STREAM_SNAPPY && kind != NSQ_STREAM_DEFLATE)
        return NULL;
    if (kind == NSQ_STREAM_DEFLATE && (level < 1 || level > 9))
        return NULL;
    nsq_stream_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->kind = kind;
    s->max_output = max_output ? max_output : NSQ_STREAM_DEFAULT_MAX_OUTPUT;
    nsq_err_t err = kind == NSQ_STREAM_SNAPPY ? nsq__snappy_init(s)
                                              : nsq__deflate_init(s, level);
    if (err != NSQ_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void nsq_stream_destroy(nsq_stream_t *s)
{
    if (!s)
        return;
    if (s->kind == NSQ_STREAM_SNAPPY)
        nsq__snappy_free(s);
    else
        nsq__deflate_free(s);
    free(s);
}

nsq_err_t nsq_stream_compress(nsq_stream_t *s, const void *data, size_t len,
                              nsq_buf_t *out)
{
    if (!s || !out || (!data && len > 0))
        return NSQ_ERR_INVALID_ARG;
    if (s->compress_err != NSQ_OK)
        return s->compress_err;
    size_t len0 = out->len;
    nsq_err_t err = s->kind == NSQ_STREAM_SNAPPY
                        ? nsq__snappy_compress(s, data, len, out)
                        : nsq__deflate_compress(s, data, len, out);
    if (err != NSQ_OK)
        out->len = len0;
    return err;
}

nsq_err_t nsq_stream_decompress(nsq_stream_t *s, const void *data, size_t len,
                                nsq_buf_t *out)
{
    if (!s || !out || (!data && len > 0))
        return NSQ_ERR_INVALID_ARG;
    if (s->decompress_err != NSQ_OK)
        return s->decompress_err;
    size_t len0 = out->len;
    nsq_err_t err = s->kind == NSQ_STREAM_SNAPPY
                        ? nsq__snappy_decompress(s, data, len, out)
                        : nsq__deflate_decompress(s, data, len, out);
    if (err != NSQ_OK) {
        /* The decoder has consumed bytes it cannot give back, so every
         * later call must fail too. */
        out->len = len0;
        s->decompress_err = err;
        nsq__stream_fail(s, err, "%s", nsq_err2str(err));
    }
    return err;
}

const char *nsq_stream_errstr(const nsq_stream_t *s)
{
    return s ? s->errstr : "";
}
