/*
 * Private to the compression streams (stream.c, snappy_stream.c,
 * deflate_stream.c): the stream object and each kind's codec.
 */
#ifndef NSQ_STREAM_H
#define NSQ_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <zlib.h>

#include "nsq/protocol.h"

#if defined(__GNUC__)
#define NSQ__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define NSQ__PRINTF(fmt, args)
#endif

/* The decoder's state between calls: where it is in the chunk stream. */
typedef struct nsq__snappy {
    bool ident_sent;      /* the encoder has written the stream identifier */
    bool ident_seen;      /* the decoder has read one */
    bool in_chunk;        /* the decoder has a header and wants the data */
    unsigned char hdr[4]; /* a partial chunk header */
    size_t hdr_have;
    unsigned type;     /* the current chunk's type ... */
    size_t chunk_len;  /* ... its length from the header ... */
    size_t chunk_have; /* ... and how much of it has arrived */
    /* A chunk that arrived in pieces; allocated when first needed. */
    unsigned char *chunk;
} nsq__snappy_t;

typedef struct nsq__deflate {
    z_stream def; /* compress() */
    z_stream inf; /* decompress() */
    bool ended;   /* the peer's stream has had its final block */
} nsq__deflate_t;

struct nsq_stream {
    nsq_stream_kind_t kind;
    size_t max_output;
    /* Sticky errors, one per direction: a corrupt input does not stop this
     * side from compressing (a broker may still answer), and vice versa. */
    nsq_err_t compress_err;
    nsq_err_t decompress_err;
    char errstr[128]; /* the reason of the first sticky error */
    union {
        nsq__snappy_t snappy;
        nsq__deflate_t deflate;
    } u;
};

/* Writes the reason for a failure to errstr unless one is already there,
 * and returns err. */
nsq_err_t nsq__stream_fail(nsq_stream_t *s, nsq_err_t err, const char *fmt, ...)
    NSQ__PRINTF(3, 4);

/*
 * Each kind's codec.  compress and decompress append to out and may leave
 * bytes past the caller's length in it on error: stream.c puts out->len back.
 * decompress reports every error through nsq__stream_fail and stream.c makes
 * it sticky; compress sets compress_err itself when a failure has left its
 * state out of step with the peer.
 */
nsq_err_t nsq__snappy_init(nsq_stream_t *s);
void nsq__snappy_free(nsq_stream_t *s);
nsq_err_t nsq__snappy_compress(nsq_stream_t *s, const unsigned char *data,
                               size_t len, nsq_buf_t *out);
nsq_err_t nsq__snappy_decompress(nsq_stream_t *s, const unsigned char *data,
                                 size_t len, nsq_buf_t *out);

nsq_err_t nsq__deflate_init(nsq_stream_t *s, int level);
void nsq__deflate_free(nsq_stream_t *s);
nsq_err_t nsq__deflate_compress(nsq_stream_t *s, const unsigned char *data,
                                size_t len, nsq_buf_t *out);
nsq_err_t nsq__deflate_decompress(nsq_stream_t *s, const unsigned char *data,
                                  size_t len, nsq_buf_t *out);

#endif
