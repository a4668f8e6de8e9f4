/*
 * nsqpub protocol codec, the other sides: what a broker and a consumer need,
 * which a producer does not.  The test broker (nsqpub-testd) and the test
 * suites use it:
 * - consumer commands: SUB, RDY, FIN, REQ, TOUCH, CLS, and message frames;
 * - the broker's side: frame encoders, IDENTIFY as nsqd 1.3 applies it, and
 *   the incremental reader of client commands with nsqd's validation.
 *
 * These functions are not exported by libnsqpub.so, whose headers are the
 * producer's reference (nsq/protocol.h, nsq/producer.h).  They are in
 * libnsqpub-testd.a, which carries its own copy of the codec.
 *
 * Threads and views: as in nsq/protocol.h.
 */
#ifndef NSQ_BROKER_H
#define NSQ_BROKER_H

#include "nsq/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Consumer commands: encode                                                */
/* ------------------------------------------------------------------------ */

/* As the client commands in nsq/protocol.h: appended whole, or b unchanged
 * and an error. */
nsq_err_t nsq_cmd_cls(nsq_buf_t *b);
nsq_err_t nsq_cmd_sub(nsq_buf_t *b, const char *topic, const char *channel);
/* count must be within 0..lim->max_rdy_count. */
nsq_err_t nsq_cmd_rdy(nsq_buf_t *b, int64_t count, const nsq_limits_t *lim);
nsq_err_t nsq_cmd_fin(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN]);
/* timeout_ms must be within 0..lim->max_req_timeout_ms. */
nsq_err_t nsq_cmd_req(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN],
                      int64_t timeout_ms, const nsq_limits_t *lim);
nsq_err_t nsq_cmd_touch(nsq_buf_t *b, const char id[NSQ_MSG_ID_LEN]);

/* ------------------------------------------------------------------------ */
/* Message frames                                                           */
/* ------------------------------------------------------------------------ */

/* One decoded message frame; body and id point into the frame's data. */
typedef struct nsq_message {
    int64_t timestamp_ns;
    uint16_t attempts;
    const char *id; /* NSQ_MSG_ID_LEN bytes, ASCII hex */
    const char *body;
    size_t body_len;
} nsq_message_t;

/* Appends [size][type][data].  NSQ_ERR_INVALID_ARG if data is too large. */
nsq_err_t nsq_frame_encode(nsq_buf_t *b, int32_t type, const void *data,
                           size_t len);
/* Appends a whole message frame. */
nsq_err_t nsq_frame_encode_message(nsq_buf_t *b, int64_t timestamp_ns,
                                   uint16_t attempts,
                                   const char id[NSQ_MSG_ID_LEN],
                                   const void *body, size_t len);
/* Decodes a message frame's data; NSQ_ERR_BAD_MESSAGE_FRAME if under 26 bytes.
 */
nsq_err_t nsq_message_decode(const void *data, size_t len, nsq_message_t *out);

/* ------------------------------------------------------------------------ */
/* The broker's side of IDENTIFY                                            */
/* ------------------------------------------------------------------------ */

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

void nsq_broker_info_default(nsq_broker_info_t *info);

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
void nsq_identify_settings_init(nsq_identify_settings_t *s,
                                const nsq_broker_info_t *info);
nsq_err_t nsq_identify_apply(const void *body, size_t len,
                             const nsq_broker_info_t *info,
                             nsq_identify_settings_t *s, nsq_buf_t *reply);
void nsq_identify_settings_free(nsq_identify_settings_t *s);

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
nsq_cmd_reader_t *nsq_cmd_reader_new(const nsq_limits_t *lim,
                                     bool expect_magic);
void nsq_cmd_reader_destroy(nsq_cmd_reader_t *r);
/* The connection state the reader consults; the caller may change it. */
nsq_conn_state_t *nsq_cmd_reader_state(nsq_cmd_reader_t *r);
nsq_err_t nsq_cmd_reader_feed(nsq_cmd_reader_t *r, const void *data,
                              size_t len);
/*
 * Takes the next command: 1 with *cmd filled; 0 when more bytes are needed;
 * -1 with *err filled when nsqd would reject the input (then, if err->fatal,
 * the reader is done and keeps returning the same error).  Checks are made in
 * nsqd's order, each as soon as its bytes have arrived, so an error is known
 * as early as nsqd would send it.
 */
int nsq_cmd_reader_next(nsq_cmd_reader_t *r, nsq_cmd_t *cmd,
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
int nsq_cmd_reader_eof(nsq_cmd_reader_t *r, nsq_cmd_error_t *err);
/* Bytes fed but not yet consumed. */
size_t nsq_cmd_reader_pending(const nsq_cmd_reader_t *r);
/*
 * Between commands, moves the bytes not yet consumed to out and empties the
 * reader (the broker's side of an encoding change after IDENTIFY).
 * NSQ_ERR_INVALID_ARG in the middle of a command or after a fatal error;
 * NSQ_ERR_NOMEM (reader unchanged).
 */
nsq_err_t nsq_cmd_reader_drain(nsq_cmd_reader_t *r, nsq_buf_t *out);

#ifdef __cplusplus
}
#endif

#endif /* NSQ_BROKER_H */
