/*
 * One client connection of the test broker, served on a pool worker with
 * blocking I/O and poll(2).  The codec's command reader does nsqd's parsing
 * and validation; this file answers the commands the way nsqd 1.3 does,
 * keeps the heartbeat and the read deadline, and applies the faults.
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

typedef struct delayed_mark {
    size_t end;     /* frames up to this offset of conn.delayed ... */
    int64_t due_ms; /* ... may be written from this time on */
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
    nsq_buf_t out;     /* frames to write now */
    nsq_buf_t delayed; /* frames held back by the delay fault */
    delayed_mark_t *marks;
    size_t nmarks, capmarks;
    int64_t last_read_ms;
    int64_t next_heartbeat_ms;
    uint64_t msgs, pubs;
    int64_t due_ms; /* the earliest deferred message for the subscriber */
    bool closing;   /* close once the answers already due are written */
    bool dead;      /* close now */
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

static void flush(conn_t *c)
{
    if (c->out.len && !send_all(c, c->out.data, c->out.len))
        c->dead = true;
    c->out.len = 0;
}

/* Moves the delayed frames that are due into the output. */
static void release_delayed(conn_t *c, int64_t now)
{
    size_t done = 0, k = 0;
    while (k < c->nmarks && c->marks[k].due_ms <= now)
        done = c->marks[k++].end;
    if (!k)
        return;
    nsq_buf_append(&c->out, c->delayed.data, done);
    memmove(c->delayed.data, c->delayed.data + done, c->delayed.len - done);
    c->delayed.len -= done;
    for (size_t i = k; i < c->nmarks; i++) {
        c->marks[i - k] = c->marks[i];
        c->marks[i - k].end -= done;
    }
    c->nmarks -= k;
}

/* Queues raw bytes as the answer to a command, honouring stall and delay. */
static void answer_raw(conn_t *c, const void *data, size_t len)
{
    if (c->fault.stall)
        return;
    if (c->fault.delay_ms <= 0) {
        nsq_buf_append(&c->out, data, len);
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
    c->marks[c->nmarks].due_ms = nsq__now_ms() + c->fault.delay_ms;
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
        /* nsqd restarts its heartbeat ticker with the new interval. */
        c->next_heartbeat_ms = nsq__now_ms() + c->ids.heartbeat_interval_ms;
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
    char reply[512];
    snprintf(reply, sizeof reply,
             "{\"identity\":\"%s\",\"identity_url\":\"\","
             "\"permission_count\":1}",
             c->t->auth_identity);
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

static void read_commands(conn_t *c)
{
    while (!c->closing && !c->dead) {
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
        atomic_fetch_add(&c->t->errors, 1);
        answer(c, NSQ_FRAME_ERROR, err.text, err.text_len);
        if (err.fatal)
            c->closing = true;
    }
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static void serve(conn_t *c)
{
    char buf[65536];
    c->last_read_ms = nsq__now_ms();
    c->next_heartbeat_ms = c->last_read_ms + c->ids.heartbeat_interval_ms;
    while (!c->dead) {
        int64_t now = nsq__now_ms();
        release_delayed(c, now);
        flush(c);
        if (c->dead || (c->closing && c->nmarks == 0))
            break;
        int64_t hb = c->ids.heartbeat_interval_ms;
        nsq__testd_fault_for(c->t, c->no, &c->fault);
        bool beats = hb > 0 && !c->fault.no_heartbeats && !c->fault.stall;
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
        struct pollfd pfd[2] = {{c->fd, POLLIN, 0}, {c->wake_fd, POLLIN, 0}};
        int n = poll(pfd, c->closing ? 1 : 2, timeout);
        if (n < 0 && errno != EINTR)
            break;
        now = nsq__now_ms();
        if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (c->closing) {
                /* Nothing more is read once an answer closes the
                 * connection; wait only for the delayed answers. */
            } else {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r <= 0)
                    break;
                c->last_read_ms = now;
                if (nsq_cmd_reader_feed(c->reader, buf, (size_t)r) != NSQ_OK)
                    break;
                read_commands(c);
            }
        }
        if (!c->closing && (n > 0 && (pfd[1].revents & POLLIN))) {
            uint64_t v;
            ssize_t r = read(c->wake_fd, &v, sizeof v);
            (void)r;
        }
        if (c->sub && !c->closing)
            deliver(c);
        /* The commands just read (IDENTIFY) may have changed them. */
        hb = c->ids.heartbeat_interval_ms;
        beats = hb > 0 && !c->fault.no_heartbeats && !c->fault.stall;
        if (beats && now >= c->next_heartbeat_ms) {
            nsq_frame_encode(&c->out, NSQ_FRAME_RESPONSE, "_heartbeat_", 11);
            atomic_fetch_add(&c->t->heartbeats, 1);
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
    flush(c);
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
        if (t->auth_topic_prefix && *t->auth_topic_prefix) {
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
    nsq_buf_free(&c.out);
    nsq_buf_free(&c.delayed);
    free(c.marks);
    atomic_fetch_add(&t->closed, 1);
    pthread_mutex_lock(&t->lock);
    atomic_fetch_sub(&t->active, 1);
    pthread_cond_broadcast(&t->idle_cond);
    pthread_mutex_unlock(&t->lock);
}
