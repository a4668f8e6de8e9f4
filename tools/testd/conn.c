/*
 * One client connection of the test broker, served on a pool worker with
 * blocking I/O and poll(2).  The codec's command reader does nsqd's parsing
 * and validation; this file answers the commands the way nsqd 1.3 does,
 * keeps the heartbeat and the read deadline, and applies the faults.
 *
 * Encodings: an IDENTIFY that is granted TLS and/or compression changes the
 * connection as nsqd does.  The JSON reply goes out in the old encoding,
 * then the TLS handshake runs and "OK" is sent inside TLS, then compression
 * starts and "OK" is sent compressed.  The layers sit between the socket and
 * the plain bytes: input goes socket -> TLS -> decompression -> command
 * reader, output goes answers -> compression -> TLS -> socket.  Output is
 * encoded when it is written, not when it is queued, so the delay fault and
 * heartbeats cannot reorder bytes inside an encoded stream.
 *
 * Writes: nsqd flushes every answer on its own, so by default each answer
 * (with the message frames queued before it) goes out in its own send() --
 * its own TLS record, its own flushed compressed chunk.  A client that
 * pipelines N commands reads N small answers, as from nsqd.  The
 * batch_answers option writes whatever is ready in one go instead.
 *
 * End of input: a client that half-closes in the middle of a command gets
 * nsqd's "failed to read" error for it (the codec's nsq_cmd_reader_eof),
 * then the connection closes; between commands it closes silently.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testd_internal.h"

/* Where the connection is in an encoding change after IDENTIFY. */
typedef enum upgrade {
    UP_NONE,      /* reading commands */
    UP_WAIT_TLS,  /* writing the IDENTIFY reply; the TLS handshake is next */
    UP_HANDSHAKE, /* the TLS handshake is running */
    UP_WAIT_COMP, /* writing the last plain "OK"; compression is next */
} upgrade_t;

/* Compressed input is decompressed this much at a time, which bounds what
 * one call can produce (deflate expands at most about 1000 times) well
 * under the stream's max_output. */
#define DECOMPRESS_SLICE 16384

/* due_ms of an answer the hold fault keeps back. */
#define HELD INT64_MAX

typedef struct delayed_mark {
    size_t end;     /* frames up to this offset of conn.delayed ... */
    int64_t due_ms; /* ... may be written from this time on (or HELD) */
    int64_t pub;    /* the publish it answers (counting from 1), or 0 */
} delayed_mark_t;

typedef struct conn {
    nsq_testd_t *t;
    int fd;
    int wake_fd;
    uint64_t no;
    nsq_cmd_reader_t *reader;
    nsq_identify_settings_t ids;
    nsq__sub_t *sub;
    nsq_testd_fault_t fault;
    nsq_buf_t out; /* frames to write now */
    size_t *ends;  /* where each answer in out ends */
    size_t nends, capends;
    int64_t answering; /* the publish being answered (for hold), or 0 */
    nsq_buf_t delayed; /* frames held back by the delay fault */
    delayed_mark_t *marks;
    size_t nmarks, capmarks;
    int64_t last_read_ms;
    int64_t next_heartbeat_ms;
    uint64_t msgs, pubs;
    int64_t due_ms; /* the earliest deferred message for the subscriber */
    bool closing;   /* close once the answers already due are written */
    bool dead;      /* close now */
    bool reset;     /* the drop fault: close with a reset */
    upgrade_t up;
    bool want_comp;       /* compression follows the TLS handshake */
    nsq__tls_t *tls;      /* set from the start of the handshake */
    nsq_stream_t *comp;   /* set once compression is on */
    nsq_buf_t held_wire;  /* socket bytes that came before the TLS layer */
    nsq_buf_t held_plain; /* plain bytes that came before decompression */
    nsq_buf_t wire;       /* encoded output on its way to the socket */
    nsq_buf_t tls_in;     /* decrypted input */
    nsq_buf_t scratch;    /* decompressed input */
} conn_t;

static bool send_all(conn_t *c, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Closes the connection for bad input below the protocol (a failed TLS
 * handshake, corrupt compressed data): nsqd closes without a frame. */
static void fail_encoding(conn_t *c)
{
    atomic_fetch_add(&c->t->errors, 1);
    c->dead = true;
}

/* Sends what the TLS layer has queued (handshake records, alerts, data). */
static bool send_tls_wire(conn_t *c)
{
    c->wire.len = 0;
    bool ok = nsq__tls_take_wire(c->tls, &c->wire) &&
              (!c->wire.len || send_all(c, c->wire.data, c->wire.len));
    if (!ok)
        c->dead = true;
    c->wire.len = 0;
    return ok;
}

/* Marks the end of the output as the end of an answer: the bytes since the
 * previous mark go out in a write of their own. */
static void out_mark_end(conn_t *c)
{
    if (c->nends == c->capends) {
        size_t cap = c->capends ? c->capends * 2 : 16;
        size_t *e = realloc(c->ends, cap * sizeof *e);
        if (!e) {
            c->dead = true;
            return;
        }
        c->ends = e;
        c->capends = cap;
    }
    c->ends[c->nends++] = c->out.len;
}

/* Appends one answer to the output. */
static void out_answer(conn_t *c, const void *data, size_t len)
{
    if (nsq_buf_append(&c->out, data, len) != NSQ_OK) {
        c->dead = true;
        return;
    }
    out_mark_end(c);
}

/* Writes one piece of output through the encoding layers; false (and the
 * connection dead) if that failed. */
static bool write_piece(conn_t *c, const char *p, size_t len)
{
    atomic_fetch_add(&c->t->writes, 1);
    bool ok = true;
    if (c->comp) {
        c->wire.len = 0;
        if (nsq_stream_compress(c->comp, p, len, &c->wire) != NSQ_OK) {
            c->dead = true;
            return false;
        }
        p = c->wire.data;
        len = c->wire.len;
    }
    if (c->tls) {
        ok = nsq__tls_write(c->tls, p, len) && send_tls_wire(c);
    } else {
        ok = send_all(c, p, len);
    }
    if (!ok)
        c->dead = true;
    c->wire.len = 0;
    return ok;
}

/* Writes the output (also on a connection about to close: its last
 * answers still go out): answer by answer, or all at once with batch_answers.
 */
static void flush(conn_t *c)
{
    /* During the handshake only TLS records may go out; answers wait. */
    if (!c->out.len || c->up == UP_HANDSHAKE)
        return;
    size_t start = 0;
    bool ok = true;
    if (!c->t->opts.batch_answers)
        for (size_t i = 0; i < c->nends && ok; i++) {
            ok = write_piece(c, c->out.data + start, c->ends[i] - start);
            start = c->ends[i];
        }
    /* Message frames queued after the last answer, or everything. */
    if (start < c->out.len && ok)
        write_piece(c, c->out.data + start, c->out.len - start);
    c->out.len = 0;
    c->nends = 0;
}

/* Whether the hold fault keeps back the answer to publish pub. */
static bool holds(const conn_t *c, int64_t pub)
{
    return c->fault.hold_from > 0 && pub >= c->fault.hold_from;
}

/* Moves the delayed frames that are due into the output, answer by answer,
 * after freeing the held ones the fault no longer holds. */
static void release_delayed(conn_t *c, int64_t now)
{
    for (size_t i = 0; i < c->nmarks; i++)
        if (c->marks[i].due_ms == HELD && !holds(c, c->marks[i].pub))
            c->marks[i].due_ms = now;
    size_t done = 0, k = 0;
    while (k < c->nmarks && c->marks[k].due_ms <= now) {
        out_answer(c, c->delayed.data + done, c->marks[k].end - done);
        done = c->marks[k++].end;
    }
    if (!k)
        return;
    memmove(c->delayed.data, c->delayed.data + done, c->delayed.len - done);
    c->delayed.len -= done;
    for (size_t i = k; i < c->nmarks; i++) {
        c->marks[i - k] = c->marks[i];
        c->marks[i - k].end -= done;
    }
    c->nmarks -= k;
}

/* Queues raw bytes as the answer to a command, honouring stall, delay and
 * hold.  Behind answers still delayed it waits its turn. */
static void answer_raw(conn_t *c, const void *data, size_t len)
{
    if (c->fault.stall)
        return;
    bool held = c->answering > 0 && holds(c, c->answering);
    if (c->fault.delay_ms <= 0 && !held && c->nmarks == 0) {
        out_answer(c, data, len);
        return;
    }
    if (c->nmarks == c->capmarks) {
        size_t cap = c->capmarks ? c->capmarks * 2 : 16;
        delayed_mark_t *m = realloc(c->marks, cap * sizeof *m);
        if (!m) {
            c->dead = true;
            return;
        }
        c->marks = m;
        c->capmarks = cap;
    }
    nsq_buf_append(&c->delayed, data, len);
    c->marks[c->nmarks].end = c->delayed.len;
    c->marks[c->nmarks].due_ms =
        held ? HELD
             : nsq__now_ms() + (c->fault.delay_ms > 0 ? c->fault.delay_ms : 0);
    c->marks[c->nmarks].pub = c->answering;
    c->nmarks++;
}

static void answer(conn_t *c, int32_t type, const void *data, size_t len)
{
    nsq_buf_t f = {0};
    if (nsq_frame_encode(&f, type, data, len) == NSQ_OK)
        answer_raw(c, f.data, f.len);
    nsq_buf_free(&f);
}

static void answer_str(conn_t *c, int32_t type, const char *s)
{
    answer(c, type, s, strlen(s));
}

/* An error nsqd would send, then close if it is fatal. */
static void answer_error(conn_t *c, nsq_err_t code, const char *text)
{
    atomic_fetch_add(&c->t->errors, 1);
    answer_str(c, NSQ_FRAME_ERROR, text);
    if (nsq_err_is_fatal(code))
        c->closing = true;
}

static void send_malformed(conn_t *c, nsq_testd_malformed_t kind)
{
    static const char small[] = {0, 0, 0, 2, 0, 0};
    static const char huge[] = {0x7f, (char)0xff, (char)0xff, (char)0xff,
                                0,    0,          0,          0};
    static const char type7[] = {0, 0, 0, 6, 0, 0, 0, 7, 'O', 'K'};
    switch (kind) {
    case NSQ_TESTD_MALFORMED_SMALL_SIZE:
        answer_raw(c, small, sizeof small);
        break;
    case NSQ_TESTD_MALFORMED_HUGE_SIZE:
        answer_raw(c, huge, sizeof huge);
        break;
    default:
        answer_raw(c, type7, sizeof type7);
        break;
    }
}

static void deliver(conn_t *c)
{
    c->due_ms = -1;
    while (c->sub && !c->fault.stall &&
           nsq__sub_take(c->t->store, c->sub, &c->out, &c->due_ms))
        ;
}

/* Publishes one accepted PUB, DPUB or MPUB, with its faults. */
static void publish(conn_t *c, const nsq_cmd_t *cmd)
{
    static const char *const names[] = {[NSQ_CMD_PUB] = "PUB",
                                        [NSQ_CMD_MPUB] = "MPUB",
                                        [NSQ_CMD_DPUB] = "DPUB"};
    const nsq_testd_fault_t *f = &c->fault;
    c->pubs++;
    atomic_fetch_add(cmd->type == NSQ_CMD_MPUB   ? &c->t->cmd_mpub
                     : cmd->type == NSQ_CMD_DPUB ? &c->t->cmd_dpub
                                                 : &c->t->cmd_pub,
                     1);
    c->answering = (int64_t)c->pubs;
    if (f->pub_failed_at > 0 && (int64_t)c->pubs == f->pub_failed_at) {
        /* nsqd's text when the topic cannot take the message. */
        nsq_err_t code = cmd->type == NSQ_CMD_MPUB   ? NSQ_E_MPUB_FAILED
                         : cmd->type == NSQ_CMD_DPUB ? NSQ_E_DPUB_FAILED
                                                     : NSQ_E_PUB_FAILED;
        char text[96];
        snprintf(text, sizeof text, "%s %s failed exiting", nsq_err2name(code),
                 names[cmd->type]);
        answer_error(c, code, text);
        return;
    }
    size_t n = cmd->type == NSQ_CMD_MPUB ? cmd->msg_count : 1;
    for (size_t i = 0; i < n; i++) {
        const void *body =
            cmd->type == NSQ_CMD_MPUB ? cmd->msgs[i].base : cmd->body;
        size_t len =
            cmd->type == NSQ_CMD_MPUB ? cmd->msgs[i].len : cmd->body_len;
        nsq__store_put(c->t->store, cmd->topic, body, len,
                       cmd->type == NSQ_CMD_DPUB ? cmd->number : 0, c->no);
        c->msgs++;
        if (f->close_after_msgs > 0 &&
            (int64_t)c->msgs >= f->close_after_msgs) {
            /* Dropped with this command unanswered: the client cannot
             * know whether it arrived. */
            c->dead = true;
            flush(c);
            return;
        }
    }
    if (f->malformed != NSQ_TESTD_MALFORMED_NONE &&
        (int64_t)c->pubs == (f->malformed_at > 0 ? f->malformed_at : 1)) {
        send_malformed(c, f->malformed);
        return;
    }
    answer_str(c, NSQ_FRAME_RESPONSE, "OK");
}

/* After the reply to an IDENTIFY that was granted TLS or compression:
 * stops reading commands until the new encoding is on. */
static void begin_upgrade(conn_t *c)
{
    bool tls = c->ids.tls_v1, comp = c->ids.snappy || c->ids.deflate;
    if (!tls && !comp)
        return;
    /* nsqd would stack a second layer of the same kind (or TLS over
     * compression) on a later IDENTIFY; no client does that, so this
     * broker closes instead of speaking a stream nobody can read. */
    if ((tls && (c->tls || c->comp)) || (comp && c->comp)) {
        fail_encoding(c);
        return;
    }
    /* Whatever the client sent after IDENTIFY is already in the new
     * encoding: for TLS the records themselves, else compressed data. */
    nsq_buf_t *held = tls ? &c->held_wire : &c->held_plain;
    if (nsq_cmd_reader_drain(c->reader, held) != NSQ_OK) {
        c->dead = true;
        return;
    }
    c->want_comp = comp;
    c->up = tls ? UP_WAIT_TLS : UP_WAIT_COMP;
}

static void identify(conn_t *c, const nsq_cmd_t *cmd)
{
    nsq_buf_t reply = {0};
    nsq_err_t err = nsq_identify_apply(cmd->body, cmd->body_len,
                                       &c->t->opts.info, &c->ids, &reply);
    if (err != NSQ_OK) {
        nsq_buf_append(&reply, "", 1);
        answer_error(c, err, reply.data);
    } else {
        answer(c, NSQ_FRAME_RESPONSE, reply.data, reply.len);
        nsq_cmd_reader_state(c->reader)->heartbeat_ms =
            c->ids.heartbeat_interval_ms;
        /* nsqd restarts its heartbeat ticker with the new interval.  It is
         * counted from the read that brought the IDENTIFY, like the read
         * deadline, so the heartbeat due at the deadline goes out first. */
        c->next_heartbeat_ms = c->last_read_ms + c->ids.heartbeat_interval_ms;
        begin_upgrade(c);
    }
    nsq_buf_free(&reply);
}

static void auth(conn_t *c, const nsq_cmd_t *cmd)
{
    const char *secret = c->t->auth_secret;
    if (!secret || cmd->body_len != strlen(secret) ||
        memcmp(cmd->body, secret, cmd->body_len) != 0) {
        answer_error(c, NSQ_E_AUTH_FAILED, "E_AUTH_FAILED AUTH failed");
        return;
    }
    nsq_cmd_reader_state(c->reader)->authorized = true;
    /* One permission per topic prefix, or one for every topic. */
    int perms = c->t->auth_prefixes > 0 ? c->t->auth_prefixes : 1;
    char reply[512];
    snprintf(reply, sizeof reply,
             "{\"identity\":\"%s\",\"identity_url\":\"\","
             "\"permission_count\":%d}",
             c->t->auth_identity, perms);
    answer_str(c, NSQ_FRAME_RESPONSE, reply);
}

static void settle(conn_t *c, const nsq_cmd_t *cmd, int kind)
{
    static const char *const names[] = {"FIN", "REQ", "TOUCH"};
    static const nsq_err_t codes[] = {NSQ_E_FIN_FAILED, NSQ_E_REQ_FAILED,
                                      NSQ_E_TOUCH_FAILED};
    if (c->sub &&
        nsq__sub_finish(c->t->store, c->sub, cmd->id, kind, cmd->number)) {
        deliver(c);
        return;
    }
    char text[96];
    snprintf(text, sizeof text, "%s %s %.16s failed ID not in flight",
             nsq_err2name(codes[kind]), names[kind], cmd->id);
    answer_error(c, codes[kind], text);
}

static void handle(conn_t *c, const nsq_cmd_t *cmd)
{
    nsq_conn_state_t *st = nsq_cmd_reader_state(c->reader);
    switch (cmd->type) {
    case NSQ_CMD_IDENTIFY:
        identify(c, cmd);
        break;
    case NSQ_CMD_AUTH:
        auth(c, cmd);
        break;
    case NSQ_CMD_PUB:
    case NSQ_CMD_MPUB:
    case NSQ_CMD_DPUB:
        publish(c, cmd);
        c->answering = 0;
        break;
    case NSQ_CMD_SUB:
        c->sub = nsq__store_subscribe(c->t->store, cmd->topic, cmd->channel,
                                      c->wake_fd);
        if (!c->sub) {
            answer_error(c, NSQ_E_SUB_FAILED, "E_SUB_FAILED SUB failed");
            break;
        }
        st->state = NSQ_CONN_SUBSCRIBED;
        answer_str(c, NSQ_FRAME_RESPONSE, "OK");
        break;
    case NSQ_CMD_RDY:
        if (st->state == NSQ_CONN_SUBSCRIBED) {
            nsq__sub_set_rdy(c->t->store, c->sub, cmd->number);
            deliver(c);
        }
        break;
    case NSQ_CMD_FIN:
        settle(c, cmd, NSQ__SUB_FIN);
        break;
    case NSQ_CMD_REQ:
        settle(c, cmd, NSQ__SUB_REQ);
        break;
    case NSQ_CMD_TOUCH:
        settle(c, cmd, NSQ__SUB_TOUCH);
        break;
    case NSQ_CMD_CLS:
        st->state = NSQ_CONN_CLOSING;
        if (c->sub)
            nsq__sub_set_rdy(c->t->store, c->sub, 0);
        answer_str(c, NSQ_FRAME_RESPONSE, "CLOSE_WAIT");
        break;
    case NSQ_CMD_NOP:
        break;
    }
}

/* The error frame for a command the reader refused, closing if it is
 * fatal. */
static void answer_cmd_error(conn_t *c, const nsq_cmd_error_t *err)
{
    atomic_fetch_add(&c->t->errors, 1);
    answer(c, NSQ_FRAME_ERROR, err->text, err->text_len);
    if (err->fatal)
        c->closing = true;
}

static void read_commands(conn_t *c)
{
    while (!c->closing && !c->dead && c->up == UP_NONE) {
        nsq__testd_fault_for(c->t, c->no, &c->fault);
        nsq_cmd_t cmd;
        nsq_cmd_error_t err;
        int rc = nsq_cmd_reader_next(c->reader, &cmd, &err);
        if (rc == 0)
            break;
        if (rc > 0) {
            handle(c, &cmd);
            continue;
        }
        if (!err.send_frame) {
            c->dead = true; /* nsqd drops an over-long line silently */
            break;
        }
        answer_cmd_error(c, &err);
    }
}

/*
 * The client's input ended (EOF, or TLS close_notify).  In the middle of a
 * command nsqd answers that command's "failed to read" error and closes;
 * true if such an answer is queued (the connection is then closing).
 */
static bool end_of_input(conn_t *c)
{
    if (c->closing || c->dead || c->up != UP_NONE)
        return false;
    nsq_cmd_error_t err;
    if (nsq_cmd_reader_eof(c->reader, &err) >= 0 || !err.send_frame)
        return false;
    answer_cmd_error(c, &err);
    c->closing = true;
    return true;
}

/* Plain command bytes (after TLS and decompression) into the reader. */
static void feed_commands(conn_t *c, const char *p, size_t len)
{
    /* Nothing more is read once an answer closes the connection. */
    if (!len || c->closing || c->dead)
        return;
    if (nsq_cmd_reader_feed(c->reader, p, len) != NSQ_OK) {
        c->dead = true;
        return;
    }
    read_commands(c);
}

/* Bytes after TLS: decompressed if compression is on. */
static void feed_plain(conn_t *c, const char *p, size_t len)
{
    if (!len)
        return;
    if (c->up == UP_WAIT_COMP) {
        /* Compressed already, but the decompressor starts only after the
         * plain "OK" is out. */
        if (nsq_buf_append(&c->held_plain, p, len) != NSQ_OK)
            c->dead = true;
        return;
    }
    if (!c->comp) {
        feed_commands(c, p, len);
        return;
    }
    while (len && !c->dead && !c->closing) {
        size_t k = len < DECOMPRESS_SLICE ? len : DECOMPRESS_SLICE;
        c->scratch.len = 0;
        nsq_err_t err = nsq_stream_decompress(c->comp, p, k, &c->scratch);
        if (err == NSQ_ERR_COMPRESSION) {
            fail_encoding(c);
            return;
        }
        if (err != NSQ_OK) {
            c->dead = true;
            return;
        }
        feed_commands(c, c->scratch.data, c->scratch.len);
        p += k;
        len -= k;
    }
}

static void tls_done(conn_t *c)
{
    nsq_cmd_reader_state(c->reader)->tls_active = true;
    answer_str(c, NSQ_FRAME_RESPONSE, "OK");
    c->up = c->want_comp ? UP_WAIT_COMP : UP_NONE;
}

/* Runs the TLS layer on what it has been fed: the handshake, then the
 * application bytes. */
static void pump_tls(conn_t *c)
{
    if (c->up == UP_HANDSHAKE) {
        int rc = nsq__tls_handshake(c->tls);
        send_tls_wire(c); /* the handshake's records, or the alert */
        if (rc < 0)
            fail_encoding(c);
        if (rc <= 0 || c->dead)
            return;
        tls_done(c);
    }
    c->tls_in.len = 0;
    int rc = nsq__tls_read(c->tls, &c->tls_in);
    send_tls_wire(c); /* TLS 1.3 may answer post-handshake messages */
    feed_plain(c, c->tls_in.data, c->tls_in.len);
    if (rc < 0)
        fail_encoding(c);
    else if (rc > 0 && !end_of_input(c))
        c->dead = true; /* close_notify: the client is gone */
}

/* Bytes from the socket. */
static void feed_wire(conn_t *c, const char *p, size_t len)
{
    if (c->up == UP_WAIT_TLS) {
        if (nsq_buf_append(&c->held_wire, p, len) != NSQ_OK)
            c->dead = true;
        return;
    }
    if (!c->tls) {
        feed_plain(c, p, len);
        return;
    }
    if (!nsq__tls_feed(c->tls, p, len)) {
        c->dead = true;
        return;
    }
    pump_tls(c);
}

/* The next step of an encoding change, once the answers due in the old
 * encoding are written.  True if it moved on. */
static bool advance_upgrade(conn_t *c)
{
    if ((c->up != UP_WAIT_TLS && c->up != UP_WAIT_COMP) || c->out.len ||
        c->nmarks || c->closing || c->dead)
        return false;
    if (c->up == UP_WAIT_TLS) {
        c->tls = nsq__tls_new(c->t->tls_ctx);
        if (!c->tls) {
            c->dead = true;
            return false;
        }
        c->up = UP_HANDSHAKE;
        bool ok = nsq__tls_feed(c->tls, c->held_wire.data, c->held_wire.len);
        nsq_buf_free(&c->held_wire);
        if (!ok) {
            c->dead = true;
            return false;
        }
        pump_tls(c);
        return true;
    }
    nsq_stream_kind_t kind =
        c->ids.snappy ? NSQ_STREAM_SNAPPY : NSQ_STREAM_DEFLATE;
    /* zlib's levels are 1..9; a broker configured below 1 still gets a
     * working stream. */
    int64_t level = c->ids.deflate_level;
    level = level < 1 ? 1 : level > 9 ? 9 : level;
    c->comp = nsq_stream_new(kind, (int)level, 0);
    if (!c->comp) {
        c->dead = true;
        return false;
    }
    c->up = UP_NONE;
    answer_str(c, NSQ_FRAME_RESPONSE, "OK");
    nsq_buf_t held = c->held_plain;
    memset(&c->held_plain, 0, sizeof c->held_plain);
    feed_plain(c, held.data, held.len);
    nsq_buf_free(&held);
    return true;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

/*
 * After a fatal error nsqd closes at once.  A client that pipelines still
 * has commands on their way, and closing with them unread makes the close
 * a reset, which some TCP stacks let overtake the answers the client has
 * not read yet (they are then lost, and the client must call them in
 * doubt).  The test broker closes the careful way instead, so that tests
 * see every answer it wrote: its FIN after the last answer, then what the
 * client still sends is read and dropped until it closes too (at most a
 * second).
 */
static void drain_before_close(conn_t *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0)
        return;
    int64_t until = nsq__now_ms() + 1000;
    char buf[4096];
    for (;;) {
        int64_t left = until - nsq__now_ms();
        struct pollfd pfd = {c->fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return;
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

static void serve(conn_t *c)
{
    char buf[65536];
    c->last_read_ms = nsq__now_ms();
    c->next_heartbeat_ms = c->last_read_ms + c->ids.heartbeat_interval_ms;
    while (!c->dead) {
        int64_t now = nsq__now_ms();
        nsq__testd_fault_for(c->t, c->no, &c->fault);
        release_delayed(c, now);
        flush(c);
        if (c->fault.drop && !c->dead) {
            c->reset = true;
            break;
        }
        if (c->dead || (c->closing && c->nmarks == 0))
            break;
        if (advance_upgrade(c))
            continue;
        int64_t hb = c->ids.heartbeat_interval_ms;
        bool beats = hb > 0 && !c->fault.no_heartbeats && !c->fault.stall &&
                     c->up == UP_NONE;
        int64_t deadline = -1;
        if (beats)
            deadline = c->next_heartbeat_ms;
        if (hb > 0)
            deadline = min_deadline(deadline, c->last_read_ms + 2 * hb);
        if (c->nmarks)
            deadline = min_deadline(deadline, c->marks[0].due_ms);
        if (c->sub)
            deadline = min_deadline(deadline, c->due_ms);
        /* Wake now and then to see a changed fault or a stop. */
        deadline = min_deadline(deadline, now + 200);
        int timeout = deadline < 0 ? -1 : (int)(deadline - now);
        if (timeout < 0 && deadline >= 0)
            timeout = 0;
        /* Once closing, nothing more is read: without POLLIN, unread client
         * bytes cannot wake the loop before the delayed answers are due.
         * The no_read fault leaves them unread the same way. */
        bool reading = !c->closing && !c->fault.no_read;
        struct pollfd pfd[2] = {{c->fd, reading ? POLLIN : 0, 0},
                                {c->wake_fd, POLLIN, 0}};
        int n = poll(pfd, c->closing ? 1 : 2, timeout);
        if (n < 0 && errno != EINTR)
            break;
        now = nsq__now_ms();
        if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (!reading) {
                /* Nothing more is read once an answer closes the
                 * connection; wait only for the delayed answers, unless
                 * the client is gone and they cannot be sent. */
                if (pfd[0].revents & (POLLHUP | POLLERR))
                    c->dead = true;
            } else {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r <= 0) {
                    /* A client that gives up mid-handshake failed it. */
                    if (c->up == UP_HANDSHAKE)
                        atomic_fetch_add(&c->t->errors, 1);
                    /* A half-close inside a command is answered first. */
                    if (r == 0 && end_of_input(c))
                        continue;
                    break;
                }
                c->last_read_ms = now;
                feed_wire(c, buf, (size_t)r);
            }
        }
        if (!c->closing && (n > 0 && (pfd[1].revents & POLLIN))) {
            uint64_t v;
            ssize_t r = read(c->wake_fd, &v, sizeof v);
            (void)r;
        }
        if (c->sub && !c->closing)
            deliver(c);
        /* The commands just read (IDENTIFY) may have changed them.  No
         * heartbeat cuts into an encoding change: the first frame in the
         * new encoding is its "OK". */
        hb = c->ids.heartbeat_interval_ms;
        beats = hb > 0 && !c->fault.no_heartbeats && !c->fault.stall &&
                c->up == UP_NONE;
        if (beats && now >= c->next_heartbeat_ms) {
            static const char beat[] = "_heartbeat_";
            if (nsq_frame_encode(&c->out, NSQ_FRAME_RESPONSE, beat,
                                 sizeof beat - 1) == NSQ_OK)
                out_mark_end(c);
            else
                c->dead = true;
            atomic_fetch_add(&c->t->heartbeats, 1);
            /* A ticker: no drift, but no burst after a long stall. */
            c->next_heartbeat_ms += hb;
            if (c->next_heartbeat_ms <= now)
                c->next_heartbeat_ms = now + hb;
        }
        if (hb > 0 && now - c->last_read_ms >= 2 * hb) {
            /* nsqd's read deadline: twice the heartbeat interval. */
            atomic_fetch_add(&c->t->timed_out, 1);
            break;
        }
        if (c->t->stopped && c->out.len == 0 && c->nmarks == 0)
            break;
    }
    if (c->reset) {
        /* Connecting a TCP socket to AF_UNSPEC disconnects it with a
         * reset, here and now (the pool closes the descriptor later). */
        struct sockaddr sa = {.sa_family = AF_UNSPEC};
        if (connect(c->fd, &sa, sizeof sa) != 0)
            shutdown(c->fd, SHUT_RDWR);
        return;
    }
    flush(c);
    if (c->tls && c->up != UP_HANDSHAKE) {
        nsq__tls_shutdown(c->tls);
        send_tls_wire(c);
    }
    if (c->closing && !c->t->stopped)
        drain_before_close(c);
}

void nsq__testd_serve(void *ctx, int fd, unsigned worker_id)
{
    nsq_testd_t *t = ctx;
    (void)worker_id;
    conn_t c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.fd = fd;
    c.no = nsq__testd_take_conn_no(t, fd);
    c.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c.reader = nsq_cmd_reader_new(&t->opts.info.limits, true);
    atomic_fetch_add(&t->active, 1);
    if (c.wake_fd >= 0 && c.reader) {
        nsq_identify_settings_init(&c.ids, &t->opts.info);
        nsq_conn_state_t *st = nsq_cmd_reader_state(c.reader);
        st->heartbeat_ms = c.ids.heartbeat_interval_ms;
        st->auth_enabled = t->opts.info.auth_enabled;
        st->tls_required = t->opts.tls_required;
        if (t->auth_prefixes > 0) {
            st->allow = nsq__testd_allow;
            st->opaque = t;
        }
        serve(&c);
        nsq_identify_settings_free(&c.ids);
    }
    nsq__store_unsubscribe(t->store, c.sub);
    nsq_cmd_reader_destroy(c.reader);
    if (c.wake_fd >= 0)
        close(c.wake_fd);
    nsq__tls_free(c.tls);
    nsq_stream_destroy(c.comp);
    nsq_buf_free(&c.held_wire);
    nsq_buf_free(&c.held_plain);
    nsq_buf_free(&c.wire);
    nsq_buf_free(&c.tls_in);
    nsq_buf_free(&c.scratch);
    nsq_buf_free(&c.out);
    free(c.ends);
    nsq_buf_free(&c.delayed);
    free(c.marks);
    atomic_fetch_add(&t->closed, 1);
    pthread_mutex_lock(&t->lock);
    atomic_fetch_sub(&t->active, 1);
    pthread_cond_broadcast(&t->idle_cond);
    pthread_mutex_unlock(&t->lock);
}
