/*
 * nsqpub protocol codec: the NSQ TCP protocol (nsqd 1.x, magic "  V2") in
 * both directions, with no sockets, threads or event loop.
 *
 * Client side: encode commands into a growable buffer (nsq_cmd_*), read the
 * server's frames incrementally (nsq_frame_reader_*), parse the IDENTIFY and
 * AUTH replies.  Server side (used by the test broker): read the client's
 * commands incrementally with nsqd's validation (nsq_cmd_reader_*), decode an
 * IDENTIFY body the way nsqd does and encode its JSON reply, encode frames.
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
 * One list makes the enum, nsq_err2str() and nsq_err2name().  0 is success,
 * local errors are negative, each nsqd E_* code has its own positive value.
 */
#define NSQ_ERRORS(X)                                                          \
    X(OK, 0, "success")                                                        \
    X(ERR_INVALID_ARG, -1, "invalid argument")                                 \
    X(ERR_NOMEM, -2, "out of memory")                                          \
    X(ERR_BAD_TOPIC, -3, "invalid topic name")                                 \
    X(ERR_BAD_CHANNEL, -4, "invalid channel name")                             \
    X(ERR_EMPTY_BODY, -5, "empty message body")                                \
    X(ERR_MSG_TOO_BIG, -6, "message larger than max_msg_size")                 \
    X(ERR_BODY_TOO_BIG, -7, "command body larger than max_body_size")          \
    X(ERR_NO_MESSAGES, -8, "multi-publish with no messages")                   \
    X(ERR_BAD_DELAY, -9, "delay out of range")                                 \
    X(ERR_BAD_FRAME, -10, "malformed frame from the broker")                   \
    X(ERR_BAD_MESSAGE, -11, "malformed message frame")                         \
    X(ERR_BAD_JSON, -12, "malformed JSON reply")                               \
    X(ERR_BAD_COUNT, -13, "count out of range")                                \
    X(ERR_PROTOCOL, -14, "unexpected reply from the broker")                   \
    X(ERR_NOT_SENT, -20, "not sent (safe to retry)")                           \
    X(ERR_IN_DOUBT, -21, "sent, connection lost before the acknowledgement")   \
    X(ERR_TIMED_OUT, -22, "timed out")                                         \
    X(ERR_STOPPED, -23, "producer stopped")                                    \
    X(ERR_QUEUE_FULL, -24, "queue full")                                       \
    X(ERR_CONNECT, -25, "could not connect")                                   \
    X(ERR_WOULD_DEADLOCK, -26, "sync call from a completion callback")         \
    X(ERR_CONF, -27, "invalid configuration")                                  \
    X(ERR_IO, -28, "connection error")                                         \
    X(ERR_TLS, -29, "TLS error")                                               \
    X(ERR_COMPRESSION, -30, "compression error")                               \
    X(E_INVALID, 1, "E_INVALID: invalid command or state")                     \
    X(E_BAD_PROTOCOL, 2, "E_BAD_PROTOCOL: bad protocol magic")                 \
    X(E_BAD_BODY, 3, "E_BAD_BODY: bad command body")                           \
    X(E_BAD_TOPIC, 4, "E_BAD_TOPIC: bad topic name")                           \
    X(E_BAD_CHANNEL, 5, "E_BAD_CHANNEL: bad channel name")                     \
    X(E_BAD_MESSAGE, 6, "E_BAD_MESSAGE: bad message")                          \
    X(E_PUB_FAILED, 7, "E_PUB_FAILED: publish failed")                         \
    X(E_MPUB_FAILED, 8, "E_MPUB_FAILED: multi-publish failed")                 \
    X(E_DPUB_FAILED, 9, "E_DPUB_FAILED: deferred publish failed")              \
    X(E_IDENTIFY_FAILED, 10, "E_IDENTIFY_FAILED: identify failed")             \
    X(E_AUTH_FIRST, 11, "E_AUTH_FIRST: AUTH required first")                   \
    X(E_AUTH_FAILED, 12, "E_AUTH_FAILED: authentication failed")               \
    X(E_AUTH_DISABLED, 13, "E_AUTH_DISABLED: AUTH not enabled on the broker")  \
    X(E_UNAUTHORIZED, 14, "E_UNAUTHORIZED: not authorized")                    \
    X(E_SUB_FAILED, 15, "E_SUB_FAILED: subscribe failed")                      \
    X(E_FIN_FAILED, 16, "E_FIN_FAILED: finish failed")                         \
    X(E_REQ_FAILED, 17, "E_REQ_FAILED: requeue failed")                        \
    X(E_TOUCH_FAILED, 18, "E_TOUCH_FAILED: touch failed")                      \
    X(E_UNKNOWN, 99, "unknown E_ code from the broker")

typedef enum nsq_err {
#define NSQ__ERR_ENUM(name, value, text) NSQ_##name = value,
    NSQ_ERRORS(NSQ__ERR_ENUM)
#undef NSQ__ERR_ENUM
} nsq_err_t;

/* A short English description; never NULL ("unknown error" for others). */
NSQ_API const char *nsq_err2str(nsq_err_t err);
/* The enum name without "NSQ_" ("ERR_NOT_SENT", "E_BAD_TOPIC"); never NULL. */
NSQ_API const char *nsq_err2name(nsq_err_t err);
/* True for the values that stand for an nsqd E_* code. */
NSQ_API bool nsq_err_is_broker(nsq_err_t err);
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
NSQ_API nsq_err_t nsq_cmd_cls(nsq_buf_t *b);
NSQ_API nsq_err_t nsq_cmd_sub(nsq_buf_t *b, const char *topic,
                              const char *channel);
/* count must be within 0..lim->max_rdy_count. */
NSQ_API nsq_err_t nsq_cmd_rdy(nsq_buf_t *b, int64_t count,
                              const nsq_limits_t *lim);
NSQ_API nsq_err_t nsq_cmd_fin(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN]);
/* timeout_ms must be within 0..lim->max_req_timeout_ms. */
NSQ_API nsq_err_t nsq_cmd_req(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN],
                              int64_t timeout_ms, const nsq_limits_t *lim);
NSQ_API nsq_err_t nsq_cmd_touch(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN]);

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

/* --- server side of IDENTIFY (the test broker) --- */

/* What a broker settled for one client after IDENTIFY. */
typedef struct nsq_identify_settings {
    char *client_id; /* owned copies of the strings the client sent */
    char *hostname;
    char *user_agent;
    bool feature_negotiation;
    int64_t heartbeat_interval_ms; /* 0 = disabled */
    int64_t output_buffer_size;
    int64_t output_buffer_timeout_ms;
    int64_t msg_timeout_ms;
    int64_t sample_rate;
    bool tls_v1, deflate, snappy; /* what was granted */
    int64_t deflate_level;
} nsq_identify_settings_t;

/* The broker's own configuration that IDENTIFY consults. */
typedef struct nsq_broker_info {
    nsq_limits_t limits;
    const char *version;        /* "1.3.0" */
    int64_t msg_timeout_ms;     /* --msg-timeout, 60000 */
    int64_t heartbeat_ms;       /* default client heartbeat, 30000 */
    int64_t output_buffer_size; /* default, 16384 */
    int64_t output_timeout_ms;  /* default, 250 */
    bool tls_enabled;           /* a certificate is configured */
    bool snappy_enabled;        /* --snappy, default true */
    bool deflate_enabled;       /* --deflate, default true */
    bool auth_enabled;          /* --auth-http-address or a secret */
} nsq_broker_info_t;

NSQ_API void nsq_broker_info_default(nsq_broker_info_t *info);

/*
 * Applies an IDENTIFY body as nsqd 1.3 does: JSON decode (Go's rules: unknown
 * fields ignored, a wrong type is an error), the range checks of heartbeat,
 * output buffer, sample rate and msg timeout, the compression choice.  On
 * success s holds the settings (free with nsq_identify_settings_free) and
 * reply receives the response frame data nsqd sends: "OK" without feature
 * negotiation, else the JSON object.  On failure returns the nsqd code
 * (NSQ_E_BAD_BODY or NSQ_E_IDENTIFY_FAILED) and appends the full error text
 * ("E_BAD_BODY IDENTIFY ...") to reply.  Both are fatal in nsqd.
 * NSQ_ERR_INVALID_ARG for NULL arguments, NSQ_ERR_NOMEM (s and reply
 * unchanged).
 *
 * s carries over between IDENTIFYs on one connection, as in nsqd (a 0 keeps
 * the current value): start it with nsq_identify_settings_init.  Fields that
 * nsqd sets before a later check fails keep their new values, as in nsqd.
 */
NSQ_API void nsq_identify_settings_init(nsq_identify_settings_t *s,
                                        const nsq_broker_info_t *info);
NSQ_API nsq_err_t nsq_identify_apply(const void *body, size_t len,
                                     const nsq_broker_info_t *info,
                                     nsq_identify_settings_t *s,
                                     nsq_buf_t *reply);
NSQ_API void nsq_identify_settings_free(nsq_identify_settings_t *s);

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

/* One decoded message frame; body and id point into the frame's data. */
typedef struct nsq_message {
    int64_t timestamp_ns;
    uint16_t attempts;
    const char *id; /* NSQ_MSG_ID_LEN bytes, ASCII hex */
    const char *body;
    size_t body_len;
} nsq_message_t;

/* Appends [size][type][data].  NSQ_ERR_INVALID_ARG if data is too large. */
NSQ_API nsq_err_t nsq_frame_encode(nsq_buf_t *b, int32_t type, const void *data,
                                   size_t len);
/* Appends a whole message frame. */
NSQ_API nsq_err_t nsq_frame_encode_message(nsq_buf_t *b, int64_t timestamp_ns,
                                           uint16_t attempts,
                                           const char id[NSQ_MSG_ID_LEN],
                                           const void *body, size_t len);
/* Decodes a message frame's data; NSQ_ERR_BAD_MESSAGE if under 26 bytes. */
NSQ_API nsq_err_t nsq_message_decode(const void *data, size_t len,
                                     nsq_message_t *out);

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

/* ------------------------------------------------------------------------ */
/* Client commands: decode (server side)                                    */
/* ------------------------------------------------------------------------ */

typedef enum nsq_cmd_type {
    NSQ_CMD_IDENTIFY,
    NSQ_CMD_AUTH,
    NSQ_CMD_PUB,
    NSQ_CMD_MPUB,
    NSQ_CMD_DPUB,
    NSQ_CMD_NOP,
    NSQ_CMD_CLS,
    NSQ_CMD_SUB,
    NSQ_CMD_RDY,
    NSQ_CMD_FIN,
    NSQ_CMD_REQ,
    NSQ_CMD_TOUCH,
} nsq_cmd_type_t;

/*
 * One decoded command.  Every pointer is a view into the reader, valid until
 * the next call on it; topic and channel are NUL-terminated.
 */
typedef struct nsq_cmd {
    nsq_cmd_type_t type;
    const char *topic;   /* PUB, MPUB, DPUB, SUB */
    const char *channel; /* SUB */
    int64_t number;      /* DPUB delay ms, REQ timeout ms, RDY count */
    const char *id;      /* FIN, REQ, TOUCH: NSQ_MSG_ID_LEN bytes */
    const char *body;    /* IDENTIFY, AUTH, PUB, DPUB: the body */
    size_t body_len;
    const nsq_iov_t *msgs; /* MPUB: the messages */
    size_t msg_count;
} nsq_cmd_t;

/* A rejection, exactly as nsqd 1.3 answers it. */
typedef struct nsq_cmd_error {
    nsq_err_t code;   /* NSQ_E_* */
    bool fatal;       /* nsqd closes the connection after the frame */
    bool send_frame;  /* false: nsqd closes without a frame (line too long) */
    const char *text; /* the error frame's data, e.g. "E_BAD_TOPIC PUB ..." */
    size_t text_len;
} nsq_cmd_error_t;

/* The connection state nsqd consults while reading commands; the owner of
 * the reader keeps it current between calls to nsq_cmd_reader_next. */
enum {
    NSQ_CONN_INIT = 0,
    NSQ_CONN_SUBSCRIBED = 1,
    NSQ_CONN_CLOSING = 2,
};

typedef struct nsq_conn_state {
    int state;            /* NSQ_CONN_* */
    bool tls_required;    /* the broker requires TLS ... */
    bool tls_active;      /* ... and this connection has it */
    bool auth_enabled;    /* the broker requires AUTH */
    bool authorized;      /* AUTH succeeded on this connection */
    int64_t heartbeat_ms; /* 0: heartbeats disabled */
    /* Per topic/channel authorization (E_UNAUTHORIZED); NULL allows all. */
    bool (*allow)(void *opaque, const char *cmd, const char *topic,
                  const char *channel);
    void *opaque;
} nsq_conn_state_t;

typedef struct nsq_cmd_reader nsq_cmd_reader_t;

/*
 * expect_magic: the first 4 bytes are the protocol magic, as on a fresh nsqd
 * connection; anything but "  V2" is answered E_BAD_PROTOCOL.  lim may be
 * NULL for nsqd's defaults.  NULL when out of memory.
 */
NSQ_API nsq_cmd_reader_t *nsq_cmd_reader_new(const nsq_limits_t *lim,
                                             bool expect_magic);
NSQ_API void nsq_cmd_reader_destroy(nsq_cmd_reader_t *r);
/* The connection state the reader consults; the caller may change it. */
NSQ_API nsq_conn_state_t *nsq_cmd_reader_state(nsq_cmd_reader_t *r);
NSQ_API nsq_err_t nsq_cmd_reader_feed(nsq_cmd_reader_t *r, const void *data,
                                      size_t len);
/*
 * Takes the next command: 1 with *cmd filled; 0 when more bytes are needed;
 * -1 with *err filled when nsqd would reject the input (then, if err->fatal,
 * the reader is done and keeps returning the same error).  Checks are made in
 * nsqd's order, each as soon as its bytes have arrived, so an error is known
 * as early as nsqd would send it.
 */
NSQ_API int nsq_cmd_reader_next(nsq_cmd_reader_t *r, nsq_cmd_t *cmd,
                                nsq_cmd_error_t *err);
/*
 * The client's input ended (it half-closed its side) after
 * nsq_cmd_reader_next returned 0.  nsqd then answers a command it was in
 * the middle of with that command's "failed to read" error and closes:
 * -1 with *err filled (fatal, send_frame set; e.g. E_BAD_MESSAGE "PUB
 * failed to read message body", E_BAD_BODY "MPUB failed to read message
 * count"), and the error is sticky.  0 when nsqd closes without a frame:
 * between commands, or inside the magic or a command line.  Either way the
 * connection is over; nothing more may be fed.
 */
NSQ_API int nsq_cmd_reader_eof(nsq_cmd_reader_t *r, nsq_cmd_error_t *err);
/* Bytes fed but not yet consumed. */
NSQ_API size_t nsq_cmd_reader_pending(const nsq_cmd_reader_t *r);
/*
 * Between commands, moves the bytes not yet consumed to out and empties the
 * reader (the broker's side of an encoding change after IDENTIFY).
 * NSQ_ERR_INVALID_ARG in the middle of a command or after a fatal error;
 * NSQ_ERR_NOMEM (reader unchanged).
 */
NSQ_API nsq_err_t nsq_cmd_reader_drain(nsq_cmd_reader_t *r, nsq_buf_t *out);

#ifdef __cplusplus
}
#endif

#endif /* NSQ_PROTOCOL_H */
