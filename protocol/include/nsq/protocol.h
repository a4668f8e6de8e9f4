/*
 * nsqpub protocol codec: the NSQ TCP protocol (nsqd 1.x, magic "  V2") in
 * both directions, with no sockets, threads or event loop.
 *
 * This header is what a producer needs: errors and their fates, buffers,
 * limits and names, the client's commands (PUB, MPUB, DPUB, NOP, AUTH,
 * IDENTIFY), the incremental reader of the broker's frames, the IDENTIFY
 * and AUTH replies, and the compression streams.  The consumer's and the
 * broker's sides of the codec are in nsq/broker.h (the test broker's).
 *
 * Threads: every object here belongs to one thread at a time; nothing is
 * shared, nothing blocks.  Functions without an object are thread-safe.
 *
 * Views: a pointer handed out by a reader (a frame's data, a command's
 * parameters and body, an error text) points into the reader's buffer and is
 * valid only until the next call on that reader.
 */
#ifndef NSQ_PROTOCOL_H
#define NSQ_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define NSQ_API __attribute__((visibility("default")))
#else
#define NSQ_API
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * What a publish's result says about the message: whether nsqd stored it.
 * Every nsq_err_t has exactly one fate (nsq_err_fate()):
 * - NSQ_FATE_STORED: nsqd acknowledged it (NSQ_OK only).
 * - NSQ_FATE_NOT_STORED: nsqd does not have it: the publish was refused
 *   before it was queued, never reached nsqd, or nsqd rejected it with an
 *   E_* code.  Sending it again cannot make a duplicate.
 * - NSQ_FATE_UNKNOWN: nsqd may or may not have it: it was written and no
 *   answer came (NSQ_ERR_IN_DOUBT, NSQ_ERR_TIMED_OUT), or nsqd's answer
 *   does not say (E_MPUB_FAILED: nsqd may have stored part of the batch;
 *   an E_* code this library does not know).  Sending it again may make a
 *   duplicate.
 */
typedef enum nsq_fate {
    NSQ_FATE_STORED = 0,
    NSQ_FATE_NOT_STORED = 1,
    NSQ_FATE_UNKNOWN = 2,
} nsq_fate_t;

/*
 * One list makes the enum, nsq_err2str(), nsq_err2name() and
 * nsq_err_fate(): X(name, value, fate, text).  0 is success, local errors
 * are negative, each nsqd E_* code has its own positive value.
 */
#define NSQ_ERRORS(X)                                                          \
    X(OK, 0, STORED, "success")                                                \
    X(ERR_INVALID_ARG, -1, NOT_STORED, "invalid argument")                     \
    X(ERR_NOMEM, -2, NOT_STORED, "out of memory")                              \
    X(ERR_BAD_TOPIC, -3, NOT_STORED, "invalid topic name")                     \
    X(ERR_BAD_CHANNEL, -4, NOT_STORED, "invalid channel name")                 \
    X(ERR_EMPTY_BODY, -5, NOT_STORED, "empty message body")                    \
    X(ERR_MSG_TOO_BIG, -6, NOT_STORED, "message larger than max_msg_size")     \
    X(ERR_BODY_TOO_BIG, -7, NOT_STORED,                                        \
      "command body larger than max_body_size")                                \
    X(ERR_NO_MESSAGES, -8, NOT_STORED, "multi-publish with no messages")       \
    X(ERR_BAD_DELAY, -9, NOT_STORED, "delay out of range")                     \
    X(ERR_BAD_FRAME, -10, NOT_STORED, "malformed frame from the broker")       \
    X(ERR_BAD_MESSAGE_FRAME, -11, NOT_STORED, "malformed message frame")       \
    X(ERR_BAD_JSON, -12, NOT_STORED, "malformed JSON reply")                   \
    X(ERR_BAD_COUNT, -13, NOT_STORED, "count out of range")                    \
    X(ERR_PROTOCOL, -14, NOT_STORED, "unexpected reply from the broker")       \
    X(ERR_NOT_SENT, -20, NOT_STORED, "not sent (safe to retry)")               \
    X(ERR_IN_DOUBT, -21, UNKNOWN,                                              \
      "sent, connection lost before the acknowledgement")                      \
    X(ERR_TIMED_OUT, -22, UNKNOWN,                                             \
      "timed out after it was written, before nsqd answered")                  \
    X(ERR_STOPPED, -23, NOT_STORED, "producer stopped")                        \
    X(ERR_QUEUE_FULL, -24, NOT_STORED, "queue full")                           \
    X(ERR_CONNECT, -25, NOT_STORED, "could not connect")                       \
    X(ERR_WOULD_DEADLOCK, -26, NOT_STORED,                                     \
      "would wait for the loop it runs on")                                    \
    X(ERR_CONF, -27, NOT_STORED, "invalid configuration")                      \
    X(ERR_IO, -28, NOT_STORED, "connection error")                             \
    X(ERR_TLS, -29, NOT_STORED, "TLS error")                                   \
    X(ERR_COMPRESSION, -30, NOT_STORED, "compression error")                   \
    X(ERR_TIMED_OUT_UNSENT, -31, NOT_STORED,                                   \
      "timed out before it was written")                                       \
    X(ERR_WRONG_THREAD, -32, NOT_STORED,                                       \
      "called from a thread other than the producer's loop")                   \
    X(E_INVALID, 1, NOT_STORED, "E_INVALID: invalid command or state")         \
    X(E_BAD_PROTOCOL, 2, NOT_STORED, "E_BAD_PROTOCOL: bad protocol magic")     \
    X(E_BAD_BODY, 3, NOT_STORED, "E_BAD_BODY: bad command body")               \
    X(E_BAD_TOPIC, 4, NOT_STORED, "E_BAD_TOPIC: bad topic name")               \
    X(E_BAD_CHANNEL, 5, NOT_STORED, "E_BAD_CHANNEL: bad channel name")         \
    X(E_BAD_MESSAGE, 6, NOT_STORED, "E_BAD_MESSAGE: bad message")              \
    X(E_PUB_FAILED, 7, NOT_STORED, "E_PUB_FAILED: publish failed")             \
    X(E_MPUB_FAILED, 8, UNKNOWN, "E_MPUB_FAILED: multi-publish failed")        \
    X(E_DPUB_FAILED, 9, NOT_STORED, "E_DPUB_FAILED: deferred publish failed")  \
    X(E_IDENTIFY_FAILED, 10, NOT_STORED, "E_IDENTIFY_FAILED: identify failed") \
    X(E_AUTH_FIRST, 11, NOT_STORED, "E_AUTH_FIRST: AUTH required first")       \
    X(E_AUTH_FAILED, 12, NOT_STORED, "E_AUTH_FAILED: authentication failed")   \
    X(E_AUTH_DISABLED, 13, NOT_STORED,                                         \
      "E_AUTH_DISABLED: AUTH not enabled on the broker")                       \
    X(E_UNAUTHORIZED, 14, NOT_STORED, "E_UNAUTHORIZED: not authorized")        \
    X(E_SUB_FAILED, 15, NOT_STORED, "E_SUB_FAILED: subscribe failed")          \
    X(E_FIN_FAILED, 16, NOT_STORED, "E_FIN_FAILED: finish failed")             \
    X(E_REQ_FAILED, 17, NOT_STORED, "E_REQ_FAILED: requeue failed")            \
    X(E_TOUCH_FAILED, 18, NOT_STORED, "E_TOUCH_FAILED: touch failed")          \
    X(E_UNKNOWN, 99, UNKNOWN, "unknown E_ code from the broker")

typedef enum nsq_err {
#define NSQ__ERR_ENUM(name, value, fate, text) NSQ_##name = value,
    NSQ_ERRORS(NSQ__ERR_ENUM)
#undef NSQ__ERR_ENUM
} nsq_err_t;

/* A short English description; never NULL ("unknown error" for others). */
NSQ_API const char *nsq_err2str(nsq_err_t err);
/* The enum name without "NSQ_" ("ERR_NOT_SENT", "E_BAD_TOPIC"); never NULL. */
NSQ_API const char *nsq_err2name(nsq_err_t err);
/* True for the values that stand for an nsqd E_* code. */
NSQ_API bool nsq_err_is_broker(nsq_err_t err);
/* The fate of a message whose publish ended in err (see nsq_fate_t);
 * NSQ_FATE_UNKNOWN for a value not in the list. */
NSQ_API nsq_fate_t nsq_err_fate(nsq_err_t err);
/* "stored", "not stored" or "may be stored"; never NULL. */
NSQ_API const char *nsq_fate2str(nsq_fate_t fate);
/*
 * Maps the data of an error frame ("E_BAD_TOPIC PUB topic ...") to its code:
 * the first word is looked up; an unknown word (or no E_ prefix) gives
 * NSQ_E_UNKNOWN.
 */
NSQ_API nsq_err_t nsq_err_from_frame(const void *data, size_t len);
/*
 * Whether nsqd closes the connection after sending this error.  nsqd 1.x
 * closes after every error except E_FIN_FAILED, E_REQ_FAILED and
 * E_TOUCH_FAILED; unknown codes are treated as fatal.
 */
NSQ_API bool nsq_err_is_fatal(nsq_err_t err);

/* ------------------------------------------------------------------------ */
/* Buffers, limits, names                                                   */
/* ------------------------------------------------------------------------ */

/* A growable byte buffer; a small value type.  Zero-initialised is empty. */
typedef struct nsq_buf {
    char *data;
    size_t len;
    size_t cap;
} nsq_buf_t;

NSQ_API void nsq_buf_init(nsq_buf_t *b);
/* Frees the memory; the buffer is empty and reusable afterwards. */
NSQ_API void nsq_buf_free(nsq_buf_t *b);
/* Makes room for at least extra more bytes.  NSQ_ERR_NOMEM on failure. */
NSQ_API nsq_err_t nsq_buf_reserve(nsq_buf_t *b, size_t extra);
NSQ_API nsq_err_t nsq_buf_append(nsq_buf_t *b, const void *data, size_t len);

/* A pointer and a length, for MPUB messages. */
typedef struct nsq_iov {
    const void *base;
    size_t len;
} nsq_iov_t;

/* The limits nsqd enforces; nsqd 1.3's defaults come from nsq_limits_default.
 */
typedef struct nsq_limits {
    int64_t max_msg_size;          /* --max-msg-size, 1048576 */
    int64_t max_body_size;         /* --max-body-size, 5242880 */
    int64_t max_req_timeout_ms;    /* --max-req-timeout, 3600000 (1h) */
    int64_t max_rdy_count;         /* --max-rdy-count, 2500 */
    int64_t max_msg_timeout_ms;    /* --max-msg-timeout, 900000 (15m) */
    int64_t max_heartbeat_ms;      /* --max-heartbeat-interval, 60000 */
    int64_t min_output_timeout_ms; /* --min-output-buffer-timeout, 25 */
    int64_t max_output_timeout_ms; /* --max-output-buffer-timeout, 30000 */
    int64_t max_output_size;       /* --max-output-buffer-size, 65536 */
    int max_deflate_level;         /* --max-deflate-level, 6 */
} nsq_limits_t;

#define NSQ_DEFAULT_MAX_MSG_SIZE 1048576
#define NSQ_DEFAULT_MAX_BODY_SIZE 5242880
#define NSQ_DEFAULT_MAX_REQ_TIMEOUT_MS 3600000
#define NSQ_DEFAULT_MAX_RDY_COUNT 2500
/* nsqd reads a command line through a 16 KiB buffer and drops longer lines. */
#define NSQ_MAX_LINE 16384
#define NSQ_MSG_ID_LEN 16
/* timestamp (8) + attempts (2) + id (16) */
#define NSQ_MSG_HEADER_LEN 26

NSQ_API void nsq_limits_default(nsq_limits_t *lim);

/*
 * nsqd's rule for topic and channel names: 1 to 64 bytes of [.a-zA-Z0-9_-],
 * optionally ending in "#ephemeral" (counted in the 64).
 */
NSQ_API bool nsq_topic_valid(const char *name, size_t len);
NSQ_API bool nsq_channel_valid(const char *name, size_t len);

/*
 * Parses a Go-style duration ("250ms", "1.5s", "1h30m", "100us", "0"; units
 * ns, us, ms, s, m, h; a leading sign) into nanoseconds, as nsqd's and
 * to_nsq's flags take them.  NSQ_ERR_INVALID_ARG for anything else or on
 * overflow of int64 nanoseconds.
 */
NSQ_API nsq_err_t nsq_duration_parse(const char *s, int64_t *out_ns);

/* ------------------------------------------------------------------------ */
/* Client commands: encode                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Each encoder appends one command to b and returns NSQ_OK, or returns an
 * error and leaves b as it was.  Names are NUL-terminated strings; bodies are
 * (pointer, length) and binary-safe.  lim may be NULL for nsqd's defaults.
 * Errors: NSQ_ERR_BAD_TOPIC, NSQ_ERR_BAD_CHANNEL, NSQ_ERR_EMPTY_BODY,
 * NSQ_ERR_MSG_TOO_BIG, NSQ_ERR_BODY_TOO_BIG, NSQ_ERR_NO_MESSAGES,
 * NSQ_ERR_BAD_DELAY, NSQ_ERR_BAD_COUNT, NSQ_ERR_INVALID_ARG, NSQ_ERR_NOMEM.
 */
NSQ_API nsq_err_t nsq_cmd_magic(nsq_buf_t *b);
NSQ_API nsq_err_t nsq_cmd_auth(nsq_buf_t *b, const void *secret, size_t len);
NSQ_API nsq_err_t nsq_cmd_pub(nsq_buf_t *b, const char *topic, const void *body,
                              size_t len, const nsq_limits_t *lim);
/* The MPUB body ([count][len][msg]...) must fit lim->max_body_size. */
NSQ_API nsq_err_t nsq_cmd_mpub(nsq_buf_t *b, const char *topic,
                               const nsq_iov_t *msgs, size_t count,
                               const nsq_limits_t *lim);
/* delay_ms must be within 0..lim->max_req_timeout_ms. */
NSQ_API nsq_err_t nsq_cmd_dpub(nsq_buf_t *b, const char *topic,
                               int64_t delay_ms, const void *body, size_t len,
                               const nsq_limits_t *lim);
NSQ_API nsq_err_t nsq_cmd_nop(nsq_buf_t *b);

/* ------------------------------------------------------------------------ */
/* IDENTIFY                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * The IDENTIFY fields.  Durations are milliseconds; for heartbeat_interval,
 * output_buffer_size and output_buffer_timeout -1 disables and 0 asks for
 * the broker's default, as in nsqd.  Strings may be NULL (sent as "").
 */
typedef struct nsq_identify {
    const char *client_id;
    const char *hostname;
    const char *user_agent;
    bool feature_negotiation;
    int64_t heartbeat_interval;
    int64_t output_buffer_size;
    int64_t output_buffer_timeout;
    int64_t msg_timeout;
    int64_t sample_rate;
    bool tls_v1;
    bool deflate;
    int64_t deflate_level;
    bool snappy;
} nsq_identify_t;

/* go-nsq's defaults: negotiation on, heartbeat 30000, buffer 16384 / 250. */
NSQ_API void nsq_identify_default(nsq_identify_t *id);

/*
 * Appends "IDENTIFY\n" + size + JSON.  The JSON has the fields in the order
 * of nsq_identify_t, the order of the recorded client bytes in the
 * conformance vectors (nsqd does not care about the order).
 */
NSQ_API nsq_err_t nsq_cmd_identify(nsq_buf_t *b, const nsq_identify_t *id);

/* The broker's answer to IDENTIFY: plain "OK" or, negotiated, a JSON object. */
typedef struct nsq_identify_reply {
    bool negotiated; /* false: the broker answered a plain OK */
    int64_t max_rdy_count;
    char version[32];
    int64_t max_msg_timeout;
    int64_t msg_timeout;
    bool tls_v1;
    bool deflate;
    int64_t deflate_level;
    int64_t max_deflate_level;
    bool snappy;
    int64_t sample_rate;
    bool auth_required;
    int64_t output_buffer_size;
    int64_t output_buffer_timeout;
} nsq_identify_reply_t;

/*
 * Parses a response frame's data: "OK", or the JSON nsqd sends.  Unknown
 * fields are ignored; a known field of the wrong type, a non-object or bad
 * JSON is NSQ_ERR_BAD_JSON, with the reason in errstr (may be NULL).
 */
NSQ_API nsq_err_t nsq_identify_reply_parse(const void *data, size_t len,
                                           nsq_identify_reply_t *out,
                                           char *errstr, size_t errlen);

/* The broker's answer to a successful AUTH. */
typedef struct nsq_auth_reply {
    char identity[256];
    char identity_url[512];
    int64_t permission_count;
} nsq_auth_reply_t;

NSQ_API nsq_err_t nsq_auth_reply_parse(const void *data, size_t len,
                                       nsq_auth_reply_t *out, char *errstr,
                                       size_t errlen);

/* ------------------------------------------------------------------------ */
/* Frames (server → client)                                                 */
/* ------------------------------------------------------------------------ */

enum {
    NSQ_FRAME_RESPONSE = 0,
    NSQ_FRAME_ERROR = 1,
    NSQ_FRAME_MESSAGE = 2,
};

/* One frame; data points into the reader (valid until its next call). */
typedef struct nsq_frame {
    int32_t type;
    const char *data;
    size_t len;
} nsq_frame_t;

/*
 * The incremental frame reader (client side).  Feed bytes in any chunking;
 * take frames one by one.  A size under 4, over max_frame_size, or an
 * unknown type is a sticky error: every later call returns it.
 */
typedef struct nsq_frame_reader nsq_frame_reader_t;

/* Default: a message of nsqd's default max_msg_size with its header. */
#define NSQ_DEFAULT_MAX_FRAME_SIZE                                             \
    (4 + NSQ_MSG_HEADER_LEN + NSQ_DEFAULT_MAX_MSG_SIZE)

/* max_frame_size counts the type and the data (the size field's value);
 * 0 means NSQ_DEFAULT_MAX_FRAME_SIZE.  NULL when out of memory. */
NSQ_API nsq_frame_reader_t *nsq_frame_reader_new(size_t max_frame_size);
NSQ_API void nsq_frame_reader_destroy(nsq_frame_reader_t *r);
/* Copies len bytes in.  NSQ_ERR_NOMEM, or the sticky error. */
NSQ_API nsq_err_t nsq_frame_reader_feed(nsq_frame_reader_t *r, const void *data,
                                        size_t len);
/*
 * Zero-copy feeding (one read buffer): space() returns a place for at least
 * min bytes (its size in *avail), a read writes there, commit() says how many
 * arrived.  NULL when out of memory or after an error.
 */
NSQ_API char *nsq_frame_reader_space(nsq_frame_reader_t *r, size_t min,
                                     size_t *avail);
NSQ_API nsq_err_t nsq_frame_reader_commit(nsq_frame_reader_t *r, size_t n);
/*
 * Takes the next complete frame: 1 and *out filled, 0 when more bytes are
 * needed, or a negative nsq_err_t (NSQ_ERR_BAD_FRAME), sticky.
 */
NSQ_API int nsq_frame_reader_next(nsq_frame_reader_t *r, nsq_frame_t *out);
/* The sticky error's reason ("frame size 2 is under 4"), or "" without one. */
NSQ_API const char *nsq_frame_reader_errstr(const nsq_frame_reader_t *r);
/* Bytes fed but not yet taken as frames. */
NSQ_API size_t nsq_frame_reader_pending(const nsq_frame_reader_t *r);
/*
 * Moves the bytes fed but not yet taken as frames to out and empties the
 * reader.  Used when the connection changes encoding after a frame (TLS or
 * compression right after IDENTIFY): the bytes that followed it are wire
 * bytes of the new encoding.  NSQ_ERR_NOMEM (reader unchanged).
 */
NSQ_API nsq_err_t nsq_frame_reader_drain(nsq_frame_reader_t *r, nsq_buf_t *out);

/* ------------------------------------------------------------------------ */
/* Compression streams (after IDENTIFY negotiates snappy or deflate)        */
/* ------------------------------------------------------------------------ */

/*
 * One direction-pair of a compressed connection: compress() turns plain
 * bytes into what goes on the wire, decompress() turns wire bytes back into
 * plain bytes (frames or commands).  Both sides of a connection use one
 * object each.  snappy is snappy's framing format (stream identifier,
 * compressed and uncompressed chunks, masked CRC-32C), as nsqd speaks it;
 * deflate is a raw DEFLATE stream (no zlib header), each compress() ending
 * with a sync flush so the peer can decode everything written so far.
 */
typedef struct nsq_stream nsq_stream_t;

typedef enum nsq_stream_kind {
    NSQ_STREAM_SNAPPY = 1,
    NSQ_STREAM_DEFLATE = 2,
} nsq_stream_kind_t;

/* Default bound on the plain bytes one decompress() call may produce. */
#define NSQ_STREAM_DEFAULT_MAX_OUTPUT (64u * 1024 * 1024)

/*
 * level: deflate's compression level 1..9 (ignored for snappy).
 * max_output: bound on the bytes one decompress() call appends (0: the
 * default); past it the stream fails, so a small input cannot make the
 * reader allocate without limit.  NULL on bad arguments or no memory.
 */
NSQ_API nsq_stream_t *nsq_stream_new(nsq_stream_kind_t kind, int level,
                                     size_t max_output);
NSQ_API void nsq_stream_destroy(nsq_stream_t *s);
/* Appends the compressed form of data to out (buffer unchanged on error). */
NSQ_API nsq_err_t nsq_stream_compress(nsq_stream_t *s, const void *data,
                                      size_t len, nsq_buf_t *out);
/*
 * Consumes len wire bytes (any chunking) and appends the plain bytes they
 * complete to out.  Malformed input (a bad chunk type, a CRC mismatch, a
 * missing stream identifier, corrupt deflate data, output past max_output)
 * is NSQ_ERR_COMPRESSION, sticky, with the reason in nsq_stream_errstr.
 * On any error out is left as it was (plain bytes this call had decoded
 * before the bad chunk are dropped too).  The two directions are
 * independent: a failed decompress does not stop compress.
 */
NSQ_API nsq_err_t nsq_stream_decompress(nsq_stream_t *s, const void *data,
                                        size_t len, nsq_buf_t *out);
/* The sticky error's reason, or "". */
NSQ_API const char *nsq_stream_errstr(const nsq_stream_t *s);

#ifdef __cplusplus
}
#endif

#endif /* NSQ_PROTOCOL_H */
