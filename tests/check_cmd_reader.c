/*
 * The server-side command reader: byte vectors of nsqd 1.3.0's answers, the
 * moment each check fires (fed byte by byte), every split point of pipelined
 * streams, limits at and past their edges, MPUB streaming, the 16 KiB line,
 * state read per command, and the sticky fatal error.
 *
 * A run feeds an input in chosen pieces, drains the reader after each piece,
 * answers each command like a broker would (SUB subscribes, CLS closes, AUTH
 * authorizes) and writes a transcript; the same input must give the same
 * transcript however it is cut.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

#define MAX_EVENTS 64
#define IN(s) s, sizeof(s) - 1
#define ID16 "0123456789abcdef"

/* Check records every passing ck_assert (a pipe write under CK_FORK); the
 * helpers that run for every byte and every command of thousands of runs
 * only report failures. */
#define EXPECT(c)                                                              \
    do {                                                                       \
        if (!(c))                                                              \
            ck_abort_msg("%s:%d: expected %s", __FILE__, __LINE__, #c);        \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Byte builders                                                            */
/* ------------------------------------------------------------------------ */

/* Check records every passing assertion (a pipe write under CK_FORK), so
 * the builders, called per byte, only abort on failure. */
static void b_put(nsq_buf_t *b, const void *p, size_t n)
{
    if (nsq_buf_append(b, p, n) != NSQ_OK)
        ck_abort_msg("out of memory");
}

static void b_str(nsq_buf_t *b, const char *s)
{
    b_put(b, s, strlen(s));
}

static void b_u32(nsq_buf_t *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    b_put(b, p, 4);
}

static void b_fill(nsq_buf_t *b, char c, size_t n)
{
    if (nsq_buf_reserve(b, n) != NSQ_OK)
        ck_abort_msg("out of memory");
    memset(b->data + b->len, c, n);
    b->len += n;
}

/* [len][body] */
static void b_body(nsq_buf_t *b, const char *s)
{
    b_u32(b, (uint32_t)strlen(s));
    b_str(b, s);
}

/* ------------------------------------------------------------------------ */
/* Runs and transcripts                                                     */
/* ------------------------------------------------------------------------ */

enum {
    F_SUB = 1 << 0,     /* state SUBSCRIBED */
    F_CLOSING = 1 << 1, /* state CLOSING */
    F_TLS = 1 << 2,     /* TLS required, not active */
    F_AUTH = 1 << 3,    /* auth enabled */
    F_AUTHED = 1 << 4,  /* authorized */
    F_NOHB = 1 << 5,    /* heartbeats disabled */
    F_DENY = 1 << 6,    /* allow() refuses everything */
    F_MAGIC = 1 << 7,   /* expect the magic */
    F_STILL = 1 << 8,   /* no broker reactions: the state never changes */
};

typedef struct setup {
    const nsq_limits_t *lim;
    unsigned flags;
} setup_t;

typedef struct result {
    nsq_buf_t log;
    size_t at[MAX_EVENTS]; /* bytes fed when event i came out */
    size_t nevents;
    bool failed;
    nsq_err_t code;
    bool send_frame;
    size_t pending_end;
} result_t;

static int allow_calls;
static char allow_seen[256];

static bool deny_all(void *opaque, const char *cmd, const char *topic,
                     const char *channel)
{
    allow_calls++;
    snprintf(allow_seen, sizeof(allow_seen), "%s|%s|%s|%s",
             (const char *)opaque, cmd, topic, channel);
    return false;
}

static bool allow_all(void *opaque, const char *cmd, const char *topic,
                      const char *channel)
{
    allow_calls++;
    snprintf(allow_seen, sizeof(allow_seen), "%s|%s|%s|%s",
             (const char *)opaque, cmd, topic, channel);
    return true;
}

static void apply_flags(nsq_conn_state_t *st, unsigned f)
{
    if (f & F_SUB)
        st->state = NSQ_CONN_SUBSCRIBED;
    if (f & F_CLOSING)
        st->state = NSQ_CONN_CLOSING;
    st->tls_required = (f & F_TLS) != 0;
    st->auth_enabled = (f & F_AUTH) != 0;
    st->authorized = (f & F_AUTHED) != 0;
    if (f & F_NOHB)
        st->heartbeat_ms = 0;
    st->opaque = "ctx";
    st->allow = (f & F_DENY) ? deny_all : ((f & F_AUTH) ? allow_all : NULL);
}

static void log_str(nsq_buf_t *b, const char *s)
{
    b_put(b, s, strlen(s) + 1);
    b->len--; /* keep the log NUL-terminated */
}

static void log_bytes(nsq_buf_t *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    if (n > 64) {
        /* Long bodies: length and a hash, which still catch a wrong view. */
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < n; i++)
            h = (h ^ s[i]) * 16777619u;
        char tmp[64];
        snprintf(tmp, sizeof(tmp), "<%zu bytes fnv %08x>", n, (unsigned)h);
        log_str(b, tmp);
        return;
    }
    log_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        char tmp[8];
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
            snprintf(tmp, sizeof(tmp), "%c", s[i]);
        else
            snprintf(tmp, sizeof(tmp), "\\x%02x", s[i]);
        log_str(b, tmp);
    }
    log_str(b, "\"");
}

static void log_num(nsq_buf_t *b, const char *key, long long v)
{
    char tmp[48];
    snprintf(tmp, sizeof(tmp), " %s=%lld", key, v);
    log_str(b, tmp);
}

static const char *const type_names[] = {
    "IDENTIFY", "AUTH", "PUB", "MPUB", "DPUB", "NOP",
    "CLS",      "SUB",  "RDY", "FIN",  "REQ",  "TOUCH",
};

/* Writes one command; checks the views every command of its type has. */
static void log_cmd(nsq_buf_t *b, const nsq_cmd_t *c)
{
    EXPECT(c->type >= NSQ_CMD_IDENTIFY);
    EXPECT(c->type <= NSQ_CMD_TOUCH);
    log_str(b, type_names[c->type]);
    switch (c->type) {
    case NSQ_CMD_PUB:
    case NSQ_CMD_DPUB:
    case NSQ_CMD_MPUB:
    case NSQ_CMD_SUB:
        EXPECT(c->topic != NULL);
        log_str(b, " topic=");
        log_bytes(b, c->topic, strlen(c->topic));
        break;
    default:
        EXPECT(c->topic == NULL);
    }
    if (c->type == NSQ_CMD_SUB) {
        EXPECT(c->channel != NULL);
        log_str(b, " channel=");
        log_bytes(b, c->channel, strlen(c->channel));
    } else {
        EXPECT(c->channel == NULL);
    }
    if (c->type == NSQ_CMD_FIN || c->type == NSQ_CMD_REQ ||
        c->type == NSQ_CMD_TOUCH) {
        EXPECT(c->id != NULL);
        log_str(b, " id=");
        log_bytes(b, c->id, NSQ_MSG_ID_LEN);
    } else {
        EXPECT(c->id == NULL);
    }
    if (c->type == NSQ_CMD_DPUB || c->type == NSQ_CMD_REQ ||
        c->type == NSQ_CMD_RDY)
        log_num(b, "number", c->number);
    else
        EXPECT(c->number == 0);
    if (c->type == NSQ_CMD_IDENTIFY || c->type == NSQ_CMD_AUTH ||
        c->type == NSQ_CMD_PUB || c->type == NSQ_CMD_DPUB) {
        EXPECT(c->body != NULL);
        EXPECT(c->body_len > 0);
        log_str(b, " body=");
        log_bytes(b, c->body, c->body_len);
    } else {
        EXPECT(c->body == NULL);
        EXPECT(c->body_len == 0);
    }
    if (c->type == NSQ_CMD_MPUB) {
        EXPECT(c->msgs != NULL);
        EXPECT(c->msg_count > 0);
        log_str(b, " msgs=[");
        for (size_t i = 0; i < c->msg_count; i++) {
            if (i)
                log_str(b, ",");
            log_bytes(b, c->msgs[i].base, c->msgs[i].len);
        }
        log_str(b, "]");
    } else {
        EXPECT(c->msgs == NULL);
        EXPECT(c->msg_count == 0);
    }
    log_str(b, "\n");
}

/* A broker's answer to each accepted command, as far as the state goes. */
static void react(nsq_conn_state_t *st, const nsq_cmd_t *c)
{
    if (c->type == NSQ_CMD_SUB)
        st->state = NSQ_CONN_SUBSCRIBED;
    else if (c->type == NSQ_CMD_CLS)
        st->state = NSQ_CONN_CLOSING;
    else if (c->type == NSQ_CMD_AUTH)
        st->authorized = true;
}

/* Takes every available command; false once the reader failed. */
static bool drain(nsq_cmd_reader_t *r, const setup_t *s, result_t *res,
                  size_t fed)
{
    for (;;) {
        nsq_cmd_t cmd;
        nsq_cmd_error_t err;
        memset(&err, 0, sizeof(err));
        int rc = nsq_cmd_reader_next(r, &cmd, &err);
        if (rc == 0)
            return true;
        EXPECT(res->nevents < MAX_EVENTS);
        res->at[res->nevents++] = fed;
        if (rc == 1) {
            log_cmd(&res->log, &cmd);
            if (!(s->flags & F_STILL))
                react(nsq_cmd_reader_state(r), &cmd);
            continue;
        }
        EXPECT(rc == -1);
        EXPECT(err.fatal);
        EXPECT(err.text != NULL);
        log_str(&res->log, "ERROR ");
        log_str(&res->log, nsq_err2name(err.code));
        log_str(&res->log, err.send_frame ? " frame " : " noframe ");
        log_bytes(&res->log, err.text, err.text_len);
        log_str(&res->log, "\n");
        res->failed = true;
        res->code = err.code;
        res->send_frame = err.send_frame;
        if (err.send_frame) {
            /* The frame data starts with the code, as nsqd sends it. */
            EXPECT(nsq_err_from_frame(err.text, err.text_len) == err.code);
        } else {
            EXPECT(err.text_len == 0);
        }
        /* Sticky: the same error again, and no more input is taken. */
        size_t pend = nsq_cmd_reader_pending(r);
        nsq_cmd_error_t again;
        EXPECT(nsq_cmd_reader_next(r, &cmd, &again) == -1);
        EXPECT(again.code == err.code);
        EXPECT(again.send_frame == err.send_frame);
        EXPECT(again.fatal);
        EXPECT(again.text_len == err.text_len);
        EXPECT(memcmp(again.text, err.text, err.text_len) == 0);
        EXPECT(nsq_cmd_reader_feed(r, "NOP\n", 4) == err.code);
        EXPECT(nsq_cmd_reader_pending(r) == pend);
        EXPECT(nsq_cmd_reader_next(r, &cmd, &again) == -1);
        EXPECT(again.code == err.code);
        return false;
    }
}

/* Feeds in pieces ending at cuts[0..n) (ascending), then the rest. */
static void run_cuts(const setup_t *s, const void *in, size_t len,
                     const size_t *cuts, size_t ncuts, result_t *res)
{
    memset(res, 0, sizeof(*res));
    nsq_buf_init(&res->log);
    log_str(&res->log, "");
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(s->lim, s->flags & F_MAGIC);
    EXPECT(r != NULL);
    apply_flags(nsq_cmd_reader_state(r), s->flags);
    size_t prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        EXPECT(prev <= end);
        EXPECT(nsq_cmd_reader_feed(r, (const char *)in + prev, end - prev) ==
               NSQ_OK);
        prev = end;
        if (!drain(r, s, res, end))
            break;
    }
    res->pending_end = nsq_cmd_reader_pending(r);
    nsq_cmd_reader_destroy(r);
}

static void run_whole(const setup_t *s, const void *in, size_t len,
                      result_t *res)
{
    run_cuts(s, in, len, NULL, 0, res);
}

/* One byte at a time: each event is stamped with the exact byte count. */
static void run_bytes(const setup_t *s, const void *in, size_t len,
                      result_t *res)
{
    size_t *cuts = malloc((len ? len : 1) * sizeof(size_t));
    ck_assert_ptr_nonnull(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run_cuts(s, in, len, cuts, len, res);
    free(cuts);
}

static void result_free(result_t *res)
{
    nsq_buf_free(&res->log);
}

static void assert_log(const result_t *res, const char *want)
{
    ck_assert_str_eq(res->log.data, want);
}

/*
 * The transcript of in must be want whole, byte by byte, at every single
 * split point, at every pair of split points when the input is short, and
 * for a few random cuttings.
 */
static void check_splits(const setup_t *s, const void *in, size_t len,
                         const char *want)
{
    result_t res;
    run_whole(s, in, len, &res);
    assert_log(&res, want);
    result_free(&res);
    run_bytes(s, in, len, &res);
    assert_log(&res, want);
    result_free(&res);
    for (size_t i = 1; i < len; i++) {
        run_cuts(s, in, len, &i, 1, &res);
        ck_assert_msg(strcmp(res.log.data, want) == 0,
                      "split at %zu:\n%s\nwant:\n%s", i, res.log.data, want);
        result_free(&res);
    }
    if (len <= 160) {
        for (size_t i = 1; i < len; i++)
            for (size_t j = i; j < len; j++) {
                size_t cuts[2] = {i, j};
                run_cuts(s, in, len, cuts, 2, &res);
                ck_assert_msg(strcmp(res.log.data, want) == 0,
                              "split at %zu,%zu:\n%s", i, j, res.log.data);
                result_free(&res);
            }
    }
    uint32_t seed = 12345;
    for (int round = 0; round < 20; round++) {
        size_t cuts[32], n = 0, at = 0;
        while (n < 32) {
            seed = seed * 1103515245u + 12345u;
            at += 1 + (seed >> 16) % (len / 8 + 2);
            if (at >= len)
                break;
            cuts[n++] = at;
        }
        run_cuts(s, in, len, cuts, n, &res);
        assert_log(&res, want);
        result_free(&res);
    }
}

/* ------------------------------------------------------------------------ */
/* Rejections: exact frame data and the byte at which each is known         */
/* ------------------------------------------------------------------------ */

typedef struct errcase {
    const char *in;
    size_t len;
    unsigned flags;
    nsq_err_t code;
    const char *text; /* the frame data */
} errcase_t;

/* Every input ends on the byte that decides the error, so fed byte by byte
 * the error must come out exactly after the last byte, and not before. */
static const errcase_t errcases[] = {
    /* dispatch */
    {IN("pub\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command pub"},
    {IN("FOO a b\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command FOO"},
    {IN("\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command "},
    {IN("\r\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command "},
    {IN(" PUB t\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command "},
    {IN("PUB\r\r\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command PUB\r"},
    {IN("NO\xffP\n"), 0, NSQ_E_INVALID, "E_INVALID invalid command NO\xffP"},
    /* TLS policy: every command but IDENTIFY, with the name as sent */
    {IN("PUB t\n"), F_TLS, NSQ_E_INVALID,
     "E_INVALID cannot PUB in current state (TLS required)"},
    {IN("FOO\n"), F_TLS, NSQ_E_INVALID,
     "E_INVALID cannot FOO in current state (TLS required)"},
    {IN("NOP\n"), F_TLS, NSQ_E_INVALID,
     "E_INVALID cannot NOP in current state (TLS required)"},
    {IN("RDY 1\n"), F_TLS | F_CLOSING, NSQ_E_INVALID,
     "E_INVALID cannot RDY in current state (TLS required)"},
    {IN("\n"), F_TLS, NSQ_E_INVALID,
     "E_INVALID cannot  in current state (TLS required)"},
    /* PUB */
    {IN("PUB\n"), 0, NSQ_E_INVALID,
     "E_INVALID PUB insufficient number of parameters"},
    {IN("PUB bad!\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name \"bad!\" is not valid"},
    {IN("PUB \n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name \"\" is not valid"},
    {IN("PUB  t\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name \"\" is not valid"},
    {IN("PUB a/b\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name \"a/b\" is not valid"},
    {IN("PUB #ephemeral\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name \"#ephemeral\" is not valid"},
    {IN("PUB "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"),
     0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC PUB topic name "
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" is "
     "not valid"},
    {IN("PUB t\n\x00\x00\x00\x00"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE PUB invalid message body size 0"},
    {IN("PUB t\n\xff\xff\xff\xff"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE PUB invalid message body size -1"},
    {IN("PUB t\n\x80\x00\x00\x00"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE PUB invalid message body size -2147483648"},
    {IN("PUB t\n\x00\x10\x00\x01"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE PUB message too big 1048577 > 1048576"},
    {IN("PUB t\n\x7f\xff\xff\xff"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE PUB message too big 2147483647 > 1048576"},
    /* DPUB */
    {IN("DPUB t\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB insufficient number of parameters"},
    {IN("DPUB bad! 1\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC DPUB topic name \"bad!\" is not valid"},
    {IN("DPUB bad! x\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC DPUB topic name \"bad!\" is not valid"},
    {IN("DPUB t -1\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB could not parse timeout -1"},
    {IN("DPUB t abc\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB could not parse timeout abc"},
    {IN("DPUB t +1\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB could not parse timeout +1"},
    {IN("DPUB t 3600001\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB timeout 3600001 out of range 0-3600000"},
    /* 2^64-1 ms is -1000000 ns after Go's wraparound */
    {IN("DPUB t 18446744073709551615\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB timeout 18446744073709551615 out of range 0-3600000"},
    /* 9223372036855 ms overflows int64 nanoseconds to a negative value */
    {IN("DPUB t 9223372036855\n"), 0, NSQ_E_INVALID,
     "E_INVALID DPUB timeout 9223372036855 out of range 0-3600000"},
    {IN("DPUB t 1\n\x00\x00\x00\x00"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE DPUB invalid message body size 0"},
    {IN("DPUB t 1\n\x00\x10\x00\x01"), 0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE DPUB message too big 1048577 > 1048576"},
    /* MPUB */
    {IN("MPUB\n"), 0, NSQ_E_INVALID,
     "E_INVALID MPUB insufficient number of parameters"},
    {IN("MPUB bad!\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"bad!\" is not valid"},
    {IN("MPUB t\n\x00\x00\x00\x00"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB invalid body size 0"},
    {IN("MPUB t\n\xff\xff\xff\xfe"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB invalid body size -2"},
    {IN("MPUB t\n\x00\x50\x00\x01"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB body too big 5242881 > 5242880"},
    {IN("MPUB t\n\x00\x00\x00\x09\x00\x00\x00\x00"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB invalid message count 0"},
    {IN("MPUB t\n\x00\x00\x00\x09\xff\xff\xff\xff"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB invalid message count -1"},
    /* (5242880 - 4) / 5 = 1048575 messages at most */
    {IN("MPUB t\n\x00\x00\x00\x09\x00\x10\x00\x00"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY MPUB invalid message count 1048576"},
    {IN("MPUB t\n\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00\x00"), 0,
     NSQ_E_BAD_MESSAGE, "E_BAD_MESSAGE MPUB invalid message(0) body size 0"},
    {IN("MPUB t\n\x00\x00\x00\x11\x00\x00\x00\x02\x00\x00\x00\x01"
        "a\x80\x00\x00\x00"),
     0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE MPUB invalid message(1) body size -2147483648"},
    {IN("MPUB t\n\x00\x00\x00\x11\x00\x00\x00\x02\x00\x00\x00\x01"
        "a\x00\x10\x00\x01"),
     0, NSQ_E_BAD_MESSAGE,
     "E_BAD_MESSAGE MPUB message too big 1048577 > 1048576"},
    /* IDENTIFY: too big is checked before non-positive */
    {IN("IDENTIFY\n\x00\x00\x00\x00"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY IDENTIFY invalid body size 0"},
    {IN("IDENTIFY\n\x80\x00\x00\x00"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY IDENTIFY invalid body size -2147483648"},
    {IN("IDENTIFY\n\x00\x50\x00\x01"), 0, NSQ_E_BAD_BODY,
     "E_BAD_BODY IDENTIFY body too big 5242881 > 5242880"},
    {IN("IDENTIFY\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID cannot IDENTIFY in current state"},
    {IN("IDENTIFY\n"), F_CLOSING | F_TLS, NSQ_E_INVALID,
     "E_INVALID cannot IDENTIFY in current state"},
    /* AUTH */
    {IN("AUTH\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID cannot AUTH in current state"},
    {IN("AUTH x\n"), 0, NSQ_E_INVALID,
     "E_INVALID AUTH invalid number of parameters"},
    {IN("AUTH \n"), 0, NSQ_E_INVALID,
     "E_INVALID AUTH invalid number of parameters"},
    {IN("AUTH\n\x00\x00\x00\x00"), F_AUTH, NSQ_E_BAD_BODY,
     "E_BAD_BODY AUTH invalid body size 0"},
    {IN("AUTH\n\x00\x50\x00\x01"), F_AUTH, NSQ_E_BAD_BODY,
     "E_BAD_BODY AUTH body too big 5242881 > 5242880"},
    {IN("AUTH\n\x00\x00\x00\x03"
        "abc"),
     0, NSQ_E_AUTH_DISABLED, "E_AUTH_DISABLED AUTH disabled"},
    {IN("AUTH\n\x00\x00\x00\x03"
        "abc"),
     F_AUTH | F_AUTHED, NSQ_E_INVALID, "E_INVALID AUTH already set"},
    {IN("AUTH\n\x00\x00\x00\x03"
        "abc"),
     F_AUTHED, NSQ_E_INVALID, "E_INVALID AUTH already set"},
    /* authorization: after the body for PUB/DPUB, on the line for MPUB/SUB */
    {IN("PUB t\n\x00\x00\x00\x01x"), F_AUTH, NSQ_E_AUTH_FIRST,
     "E_AUTH_FIRST AUTH required before PUB"},
    {IN("DPUB t 5\n\x00\x00\x00\x01x"), F_AUTH, NSQ_E_AUTH_FIRST,
     "E_AUTH_FIRST AUTH required before DPUB"},
    {IN("MPUB t\n"), F_AUTH, NSQ_E_AUTH_FIRST,
     "E_AUTH_FIRST AUTH required before MPUB"},
    {IN("SUB t c\n"), F_AUTH, NSQ_E_AUTH_FIRST,
     "E_AUTH_FIRST AUTH required before SUB"},
    {IN("PUB t\n\x00\x00\x00\x01x"), F_AUTH | F_AUTHED | F_DENY,
     NSQ_E_UNAUTHORIZED, "E_UNAUTHORIZED AUTH failed for PUB on \"t\" \"\""},
    {IN("DPUB t 5\n\x00\x00\x00\x01x"), F_AUTH | F_AUTHED | F_DENY,
     NSQ_E_UNAUTHORIZED, "E_UNAUTHORIZED AUTH failed for DPUB on \"t\" \"\""},
    {IN("MPUB t\n"), F_AUTH | F_AUTHED | F_DENY, NSQ_E_UNAUTHORIZED,
     "E_UNAUTHORIZED AUTH failed for MPUB on \"t\" \"\""},
    {IN("SUB t c#ephemeral\n"), F_AUTH | F_AUTHED | F_DENY, NSQ_E_UNAUTHORIZED,
     "E_UNAUTHORIZED AUTH failed for SUB on \"t\" \"c#ephemeral\""},
    /* SUB, in nsqd's order */
    {IN("SUB t c\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID cannot SUB in current state"},
    {IN("SUB\n"), F_NOHB, NSQ_E_INVALID,
     "E_INVALID cannot SUB with heartbeats disabled"},
    {IN("SUB t\n"), 0, NSQ_E_INVALID,
     "E_INVALID SUB insufficient number of parameters"},
    {IN("SUB bad! bad!\n"), 0, NSQ_E_BAD_TOPIC,
     "E_BAD_TOPIC SUB topic name \"bad!\" is not valid"},
    {IN("SUB t bad!\n"), 0, NSQ_E_BAD_CHANNEL,
     "E_BAD_CHANNEL SUB channel name \"bad!\" is not valid"},
    {IN("SUB t \n"), 0, NSQ_E_BAD_CHANNEL,
     "E_BAD_CHANNEL SUB channel name \"\" is not valid"},
    /* RDY */
    {IN("RDY 1\n"), 0, NSQ_E_INVALID, "E_INVALID cannot RDY in current state"},
    {IN("RDY x\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID RDY could not parse count x"},
    {IN("RDY -0\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID RDY could not parse count -0"},
    {IN("RDY 2501\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID RDY count 2501 out of range 0-2500"},
    {IN("RDY 18446744073709551615\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID RDY count -1 out of range 0-2500"},
    {IN("RDY 9223372036854775808\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID RDY count -9223372036854775808 out of range 0-2500"},
    /* FIN, TOUCH, REQ */
    {IN("FIN " ID16 "\n"), 0, NSQ_E_INVALID,
     "E_INVALID cannot FIN in current state"},
    {IN("FIN\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID FIN insufficient number of params"},
    {IN("FIN abc\n"), F_CLOSING, NSQ_E_INVALID, "E_INVALID invalid message ID"},
    {IN("FIN " ID16 "0\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID invalid message ID"},
    {IN("TOUCH " ID16 "\n"), 0, NSQ_E_INVALID,
     "E_INVALID cannot TOUCH in current state"},
    {IN("TOUCH\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID TOUCH insufficient number of params"},
    {IN("TOUCH x\n"), F_SUB, NSQ_E_INVALID, "E_INVALID invalid message ID"},
    {IN("REQ " ID16 " 1\n"), 0, NSQ_E_INVALID,
     "E_INVALID cannot REQ in current state"},
    {IN("REQ " ID16 "\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID REQ insufficient number of params"},
    {IN("REQ x 1\n"), F_SUB, NSQ_E_INVALID, "E_INVALID invalid message ID"},
    {IN("REQ " ID16 " 1s\n"), F_SUB, NSQ_E_INVALID,
     "E_INVALID REQ could not parse timeout 1s"},
    /* CLS */
    {IN("CLS\n"), 0, NSQ_E_INVALID, "E_INVALID cannot CLS in current state"},
    {IN("CLS\n"), F_CLOSING, NSQ_E_INVALID,
     "E_INVALID cannot CLS in current state"},
    /* the magic, when expected: any 4 bytes */
    {IN("  V1"), F_MAGIC, NSQ_E_BAD_PROTOCOL, "E_BAD_PROTOCOL"},
    {IN("PUB "), F_MAGIC, NSQ_E_BAD_PROTOCOL, "E_BAD_PROTOCOL"},
    {IN("  v2"), F_MAGIC, NSQ_E_BAD_PROTOCOL, "E_BAD_PROTOCOL"},
    {IN("\x00\x00\x00\x00"), F_MAGIC, NSQ_E_BAD_PROTOCOL, "E_BAD_PROTOCOL"},
    {IN("  V2pub\n"), F_MAGIC, NSQ_E_INVALID, "E_INVALID invalid command pub"},
};

START_TEST(rejections)
{
    const errcase_t *e = &errcases[_i];
    setup_t s = {NULL, e->flags};
    size_t tlen = strlen(e->text);

    /* Byte by byte: nothing before the last byte, the error right after. */
    result_t res;
    run_bytes(&s, e->in, e->len, &res);
    ck_assert_msg(res.failed, "case %d: no error:\n%s", _i, res.log.data);
    ck_assert_int_eq(res.code, e->code);
    ck_assert(res.send_frame);
    ck_assert_uint_eq(res.nevents, 1);
    ck_assert_uint_eq(res.at[0], e->len);
    result_free(&res);

    /* Whole, with more commands after it: they are never read, and the
     * frame data is byte for byte nsqd's. */
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_put(&in, e->in, e->len);
    b_str(&in, "NOP\nPUB t\n");
    b_body(&in, "later");
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, e->flags & F_MAGIC);
    ck_assert_ptr_nonnull(r);
    apply_flags(nsq_cmd_reader_state(r), e->flags);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, in.data, in.len), NSQ_OK);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, e->code);
    ck_assert(err.fatal);
    ck_assert(err.send_frame);
    ck_assert_msg(err.text_len == tlen && memcmp(err.text, e->text, tlen) == 0,
                  "case %d: got '%.*s'\nwant '%s'", _i, (int)err.text_len,
                  err.text, e->text);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, e->code);
    ck_assert_uint_eq(err.text_len, tlen);
    ck_assert_mem_eq(err.text, e->text, tlen);
    nsq_cmd_reader_destroy(r);
    nsq_buf_free(&in);
}
END_TEST

START_TEST(allow_arguments)
{
    /* The callback sees the command, the topic and the channel ("" for a
     * publish), NUL-terminated, with the owner's opaque pointer. */
    setup_t s = {NULL, F_AUTH | F_AUTHED | F_STILL};
    result_t res;
    allow_calls = 0;
    run_whole(&s, IN("SUB top chan\n"), &res);
    assert_log(&res, "SUB topic=\"top\" channel=\"chan\"\n");
    ck_assert_int_eq(allow_calls, 1);
    ck_assert_str_eq(allow_seen, "ctx|SUB|top|chan");
    result_free(&res);

    allow_calls = 0;
    run_whole(&s,
              IN("MPUB m\n\x00\x00\x00\x09\x00\x00\x00\x01\x00\x00\x00\x01z"),
              &res);
    assert_log(&res, "MPUB topic=\"m\" msgs=[\"z\"]\n");
    ck_assert_int_eq(allow_calls, 1);
    ck_assert_str_eq(allow_seen, "ctx|MPUB|m|");
    result_free(&res);

    allow_calls = 0;
    run_whole(&s, IN("DPUB d 7\n\x00\x00\x00\x01z"), &res);
    assert_log(&res, "DPUB topic=\"d\" number=7 body=\"z\"\n");
    ck_assert_str_eq(allow_seen, "ctx|DPUB|d|");
    ck_assert_int_eq(allow_calls, 1);
    result_free(&res);

    /* Without auth the callback is never consulted. */
    s.flags = F_STILL;
    allow_calls = 0;
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    nsq_conn_state_t *st = nsq_cmd_reader_state(r);
    st->allow = deny_all;
    st->opaque = "x";
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("PUB t\n\x00\x00\x00\x01z")),
                     NSQ_OK);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(allow_calls, 0);
    nsq_cmd_reader_destroy(r);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* %q                                                                       */
/* ------------------------------------------------------------------------ */

typedef struct quotecase {
    const char *name;
    size_t len;
    const char *quoted; /* Go's strconv.Quote(name) */
} quotecase_t;

static const quotecase_t quotecases[] = {
    {IN("a\"b\\c"), "\"a\\\"b\\\\c\""},
    {IN("\a\b\f\t\v"), "\"\\a\\b\\f\\t\\v\""},
    {IN("x\ry"), "\"x\\ry\""}, /* a \r inside the line is kept */
    {IN("\x01\x1f\x7f"), "\"\\x01\\x1f\\x7f\""},
    {IN("\x00z"), "\"\\x00z\""},
    {IN("caf\xc3\xa9"), "\"caf\xc3\xa9\""},               /* U+00E9 */
    {IN("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\""},     /* U+1F600 */
    {IN("\xe4\xb8\xad"), "\"\xe4\xb8\xad\""},             /* U+4E2D */
    {IN("\xc2\x85"), "\"\\u0085\""},                      /* C1 control */
    {IN("\xc2\xa0"), "\"\\u00a0\""},                      /* NBSP */
    {IN("\xc2\xad"), "\"\\u00ad\""},                      /* soft hyphen */
    {IN("\xe2\x80\xa8"), "\"\\u2028\""},                  /* line separator */
    {IN("\xef\xbb\xbf"), "\"\\ufeff\""},                  /* BOM */
    {IN("\xee\x80\x80"), "\"\\ue000\""},                  /* private use */
    {IN("\xef\xbf\xbe"), "\"\\ufffe\""},                  /* noncharacter */
    {IN("\xef\xbf\xbd"), "\"\xef\xbf\xbd\""},             /* U+FFFD itself */
    {IN("\xf3\xb0\x80\x80"), "\"\\U000f0000\""},          /* plane 15 */
    {IN("\xf3\xa0\x80\x81"), "\"\\U000e0001\""},          /* tag */
    {IN("\xff"), "\"\\xff\""},                            /* never UTF-8 */
    {IN("\x80"), "\"\\x80\""},                            /* lone trail */
    {IN("\xc0\x80"), "\"\\xc0\\x80\""},                   /* overlong */
    {IN("\xe0\x80\xaf"), "\"\\xe0\\x80\\xaf\""},          /* overlong */
    {IN("\xed\xa0\x80"), "\"\\xed\\xa0\\x80\""},          /* surrogate */
    {IN("\xf4\x90\x80\x80"), "\"\\xf4\\x90\\x80\\x80\""}, /* > U+10FFFF */
    {IN("\xf5\x80"), "\"\\xf5\\x80\""},                   /* bad lead */
    {IN("a\xe2\x82"), "\"a\\xe2\\x82\""},                 /* cut short */
    {IN("\xe2\x82z"), "\"\\xe2\\x82z\""},                 /* cut short */
    {IN("\xf0\x9f\x98"), "\"\\xf0\\x9f\\x98\""},          /* cut short */
    {IN("\xc3\xa9\xc3"), "\"\xc3\xa9\\xc3\""},            /* cut short */
};

START_TEST(quoting)
{
    const quotecase_t *q = &quotecases[_i];
    /* The name is a topic parameter, so it must not hold ' ' or '\n'. */
    nsq_buf_t in, want;
    nsq_buf_init(&in);
    nsq_buf_init(&want);
    b_str(&in, "PUB ");
    b_put(&in, q->name, q->len);
    b_str(&in, "\n");
    b_str(&want, "E_BAD_TOPIC PUB topic name ");
    b_str(&want, q->quoted);
    b_str(&want, " is not valid");

    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, in.data, in.len), NSQ_OK);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, NSQ_E_BAD_TOPIC);
    ck_assert_msg(err.text_len == want.len &&
                      memcmp(err.text, want.data, want.len) == 0,
                  "case %d: got '%.*s'", _i, (int)err.text_len, err.text);
    nsq_cmd_reader_destroy(r);
    nsq_buf_free(&in);
    nsq_buf_free(&want);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Accepted commands                                                        */
/* ------------------------------------------------------------------------ */

START_TEST(magic_then_commands)
{
    setup_t s = {NULL, F_MAGIC};
    check_splits(&s, IN("  V2PUB t\n\x00\x00\x00\x05hello"),
                 "PUB topic=\"t\" body=\"hello\"\n");

    /* Without the magic expected, the same bytes start with a line. */
    setup_t plain = {NULL, 0};
    result_t res;
    run_whole(&plain, IN("  V2PUB t\n\x00\x00\x00\x05hello"), &res);
    assert_log(&res, "ERROR E_INVALID frame \"E_INVALID invalid command \"\n");
    result_free(&res);

    /* Three bytes of magic are not enough to judge it. */
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, true);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "  V", 3), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 3);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "2", 1), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);
    nsq_cmd_reader_destroy(r);
}
END_TEST

START_TEST(every_command)
{
    setup_t s = {NULL, 0};
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "IDENTIFY\n");
    b_body(&in, "{\"a\":1}");
    b_str(&in, "PUB topic-1\n");
    b_body(&in, "hello");
    b_str(&in, "PUB t.2#ephemeral extra params\r\n");
    b_body(&in, "a b\n\x01");
    b_str(&in, "MPUB t\n");
    b_u32(&in, 4 + 4 + 3 + 4 + 1);
    b_u32(&in, 2);
    b_body(&in, "one");
    b_body(&in, "2");
    b_str(&in, "DPUB t 1500\n");
    b_body(&in, "later");
    b_str(&in, "DPUB t \n"); /* an empty delay parses as 0 */
    b_body(&in, "now");
    b_str(&in, "NOP and ignored params\n");
    b_str(&in, "SUB t c\n");
    b_str(&in, "RDY\n");  /* no count is 1 */
    b_str(&in, "RDY \n"); /* an empty count is 0 */
    b_str(&in, "RDY 2500\n");
    b_str(&in, "FIN " ID16 "\n");
    b_str(&in, "TOUCH " ID16 " x\n");
    b_str(&in, "REQ " ID16 " 0\n");
    b_str(&in, "REQ " ID16 " 3600000\n");
    b_str(&in, "REQ " ID16 " 3600001\n"); /* clamped, as nsqd 1.3 does */
    b_str(&in, "REQ " ID16 " 18446744073709551615\n"); /* negative: 0 */
    b_str(&in, "REQ " ID16 " \n");
    b_str(&in, "CLS extra\n");
    b_str(&in, "RDY junk\n"); /* ignored unparsed while closing */
    b_str(&in, "FIN " ID16 "\n");
    b_str(&in, "TOUCH " ID16 "\n");
    b_str(&in, "REQ " ID16 " 10\n");
    b_str(&in, "NOP\n");
    check_splits(&s, in.data, in.len,
                 "IDENTIFY body=\"{\\x22a\\x22:1}\"\n"
                 "PUB topic=\"topic-1\" body=\"hello\"\n"
                 "PUB topic=\"t.2#ephemeral\" body=\"a b\\x0a\\x01\"\n"
                 "MPUB topic=\"t\" msgs=[\"one\",\"2\"]\n"
                 "DPUB topic=\"t\" number=1500 body=\"later\"\n"
                 "DPUB topic=\"t\" number=0 body=\"now\"\n"
                 "NOP\n"
                 "SUB topic=\"t\" channel=\"c\"\n"
                 "RDY number=1\n"
                 "RDY number=0\n"
                 "RDY number=2500\n"
                 "FIN id=\"" ID16 "\"\n"
                 "TOUCH id=\"" ID16 "\"\n"
                 "REQ id=\"" ID16 "\" number=0\n"
                 "REQ id=\"" ID16 "\" number=3600000\n"
                 "REQ id=\"" ID16 "\" number=3600000\n"
                 "REQ id=\"" ID16 "\" number=0\n"
                 "REQ id=\"" ID16 "\" number=0\n"
                 "CLS\n"
                 "RDY number=0\n"
                 "FIN id=\"" ID16 "\"\n"
                 "TOUCH id=\"" ID16 "\"\n"
                 "REQ id=\"" ID16 "\" number=10\n"
                 "NOP\n");
    nsq_buf_free(&in);
}
END_TEST

START_TEST(pipelined_error_in_the_middle)
{
    /* publish_pipelined_error_middle: OK, the error, nothing after it. */
    setup_t s = {NULL, F_MAGIC};
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "  V2PUB a\n");
    b_body(&in, "1");
    b_str(&in, "PUB bad!\n");
    b_body(&in, "2");
    b_str(&in, "PUB a\n");
    b_body(&in, "3");
    check_splits(&s, in.data, in.len,
                 "PUB topic=\"a\" body=\"1\"\n"
                 "ERROR E_BAD_TOPIC frame \"E_BAD_TOPIC PUB topic name "
                 "\\x22bad!\\x22 is not valid\"\n");

    /* The error is known at the line end, before its body arrives. */
    result_t res;
    run_bytes(&s, in.data, in.len, &res);
    ck_assert_uint_eq(res.nevents, 2);
    ck_assert_uint_eq(res.at[0], 4 + 6 + 5);
    ck_assert_uint_eq(res.at[1], 4 + 6 + 5 + 9);
    result_free(&res);
    nsq_buf_free(&in);
}
END_TEST

START_TEST(state_is_read_per_command)
{
    /* All in one feed: RDY is judged after SUB was answered, FIN after
     * CLS, so the broker's changes between next() calls count. */
    setup_t s = {NULL, 0};
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "SUB t c\nRDY 3\nCLS\nRDY 9999\nFIN " ID16 "\nCLS\n");
    check_splits(&s, in.data, in.len,
                 "SUB topic=\"t\" channel=\"c\"\n"
                 "RDY number=3\n"
                 "CLS\n"
                 "RDY number=0\n"
                 "FIN id=\"" ID16 "\"\n"
                 "ERROR E_INVALID frame \"E_INVALID cannot CLS in current "
                 "state\"\n");
    /* Without the broker's answers the state stays INIT. */
    s.flags = F_STILL;
    check_splits(&s, in.data, in.len,
                 "SUB topic=\"t\" channel=\"c\"\n"
                 "ERROR E_INVALID frame \"E_INVALID cannot RDY in current "
                 "state\"\n");
    nsq_buf_free(&in);

    /* AUTH then PUB in one write: PUB is checked once AUTH went through. */
    s.flags = F_AUTH;
    nsq_buf_init(&in);
    b_str(&in, "PUB t\n");
    b_body(&in, "x");
    result_t res;
    run_whole(&s, in.data, in.len, &res);
    assert_log(&res, "ERROR E_AUTH_FIRST frame \"E_AUTH_FIRST AUTH required "
                     "before PUB\"\n");
    result_free(&res);
    in.len = 0;
    b_str(&in, "AUTH\n");
    b_body(&in, "s3cret");
    b_str(&in, "PUB t\n");
    b_body(&in, "x");
    b_str(&in, "AUTH\n");
    b_body(&in, "again");
    check_splits(&s, in.data, in.len,
                 "AUTH body=\"s3cret\"\n"
                 "PUB topic=\"t\" body=\"x\"\n"
                 "ERROR E_INVALID frame \"E_INVALID AUTH already set\"\n");
    nsq_buf_free(&in);
}
END_TEST

START_TEST(state_changes_while_reading_a_body)
{
    /* Authorization is read when the body is complete, not at the line. */
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    nsq_conn_state_t *st = nsq_cmd_reader_state(r);
    st->auth_enabled = true;
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("PUB t\n\x00\x00\x00\x02h")),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    st->authorized = true;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "i", 1), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_PUB);
    ck_assert_str_eq(cmd.topic, "t");
    ck_assert_uint_eq(cmd.body_len, 2);
    ck_assert_mem_eq(cmd.body, "hi", 2);

    /* And the other way round. */
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("DPUB t 1\n\x00\x00\x00\x01")),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    st->authorized = false;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "x", 1), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, NSQ_E_AUTH_FIRST);
    ck_assert_uint_eq(err.text_len, strlen("E_AUTH_FIRST AUTH required "
                                           "before DPUB"));
    nsq_cmd_reader_destroy(r);
}
END_TEST

START_TEST(dpub_delays)
{
    setup_t s = {NULL, 0};
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "DPUB t 0\n");
    b_body(&in, "a");
    b_str(&in, "DPUB t 3600000\n");
    b_body(&in, "b");
    b_str(&in, "DPUB t 0000000000000000000000001\n"); /* leading zeros */
    b_body(&in, "c");
    /* 2^64 ms wraps to 0 in ByteToBase10 */
    b_str(&in, "DPUB t 18446744073709551616\n");
    b_body(&in, "d");
    /* 18446744073710 ms is 448384 ns after Go's int64 wraparound: in range,
     * and nsqd defers by that duration, i.e. 0 whole milliseconds */
    b_str(&in, "DPUB t 18446744073710\n");
    b_body(&in, "e");
    check_splits(&s, in.data, in.len,
                 "DPUB topic=\"t\" number=0 body=\"a\"\n"
                 "DPUB topic=\"t\" number=3600000 body=\"b\"\n"
                 "DPUB topic=\"t\" number=1 body=\"c\"\n"
                 "DPUB topic=\"t\" number=0 body=\"d\"\n"
                 "DPUB topic=\"t\" number=0 body=\"e\"\n");
    nsq_buf_free(&in);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* MPUB streaming                                                           */
/* ------------------------------------------------------------------------ */

START_TEST(mpub_body_size_not_compared)
{
    /* mpub_body_size_too_small, byte for byte: body size 22 for 27 bytes of
     * messages, then a PUB that nsqd parses right after the messages. */
    static const char in[] =
        "  V2"
        "MPUB conf_mpub_body_size_too_small\n\x00\x00\x00\x16\x00\x00\x00\x03"
        "\x00\x00\x00\x03one\x00\x00\x00\x03two\x00\x00\x00\x05three"
        "PUB conf_mpub_body_size_too_small\n\x00\x00\x00\x05"
        "after";
    setup_t s = {NULL, F_MAGIC};
    check_splits(&s, in, sizeof(in) - 1,
                 "MPUB topic=\"conf_mpub_body_size_too_small\" "
                 "msgs=[\"one\",\"two\",\"three\"]\n"
                 "PUB topic=\"conf_mpub_body_size_too_small\" "
                 "body=\"after\"\n");

    /* A body size larger than the content is not waited for either. */
    setup_t plain = {NULL, 0};
    check_splits(&plain,
                 IN("MPUB t\n\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01"
                    "zNOP\n"),
                 "MPUB topic=\"t\" msgs=[\"z\"]\n"
                 "NOP\n");
}
END_TEST

START_TEST(mpub_checks_fire_per_message)
{
    /* The second message's length is judged when its four bytes arrive,
     * without waiting for the rest of the announced body. */
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "MPUB t\n");
    b_u32(&in, 100);
    b_u32(&in, 3);
    b_body(&in, "first");
    size_t before = in.len;
    b_u32(&in, 0);
    setup_t s = {NULL, 0};
    result_t res;
    run_bytes(&s, in.data, in.len, &res);
    assert_log(&res, "ERROR E_BAD_MESSAGE frame \"E_BAD_MESSAGE MPUB invalid "
                     "message(1) body size 0\"\n");
    ck_assert_uint_eq(res.at[0], before + 4);
    result_free(&res);

    /* The MPUB comes out once its last message is complete. */
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 4 + 9 + 6);
    b_u32(&in, 2);
    b_body(&in, "12345");
    b_body(&in, "xy");
    run_bytes(&s, in.data, in.len, &res);
    assert_log(&res, "MPUB topic=\"t\" msgs=[\"12345\",\"xy\"]\n");
    ck_assert_uint_eq(res.at[0], in.len);
    ck_assert_uint_eq(res.pending_end, 0);
    result_free(&res);
    nsq_buf_free(&in);
}
END_TEST

START_TEST(mpub_many_messages)
{
    /* More messages than the reader's first iov array holds, twice in a row
     * so the array is reused. */
    nsq_buf_t in;
    nsq_buf_init(&in);
    for (int rep = 0; rep < 2; rep++) {
        b_str(&in, "MPUB t\n");
        b_u32(&in, 4 + 100 * 8);
        b_u32(&in, 100);
        for (int i = 0; i < 100; i++) {
            char msg[8];
            snprintf(msg, sizeof(msg), "m%03d", i);
            b_body(&in, msg);
        }
    }
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, in.data, in.len), NSQ_OK);
    for (int rep = 0; rep < 2; rep++) {
        nsq_cmd_t cmd;
        nsq_cmd_error_t err;
        ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
        ck_assert_int_eq(cmd.type, NSQ_CMD_MPUB);
        ck_assert_uint_eq(cmd.msg_count, 100);
        for (int i = 0; i < 100; i++) {
            char msg[8];
            snprintf(msg, sizeof(msg), "m%03d", i);
            ck_assert_uint_eq(cmd.msgs[i].len, 4);
            ck_assert_mem_eq(cmd.msgs[i].base, msg, 4);
        }
    }
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);
    nsq_cmd_reader_destroy(r);
    nsq_buf_free(&in);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */
/* ------------------------------------------------------------------------ */

static nsq_limits_t small_limits(void)
{
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_msg_size = 10;
    lim.max_body_size = 30;
    lim.max_req_timeout_ms = 1000;
    lim.max_rdy_count = 5;
    return lim;
}

/* One command against small limits: its transcript. */
static void check_one(const nsq_limits_t *lim, unsigned flags,
                      const nsq_buf_t *in, const char *want)
{
    setup_t s = {lim, flags};
    result_t res;
    run_whole(&s, in->data, in->len, &res);
    assert_log(&res, want);
    result_free(&res);
    run_bytes(&s, in->data, in->len, &res);
    assert_log(&res, want);
    ck_assert_uint_eq(res.nevents, 1);
    ck_assert_uint_eq(res.at[0], in->len);
    result_free(&res);
}

START_TEST(limits_small)
{
    nsq_limits_t lim = small_limits();
    nsq_buf_t in;
    nsq_buf_init(&in);

    b_str(&in, "PUB t\n");
    b_body(&in, "0123456789");
    check_one(&lim, 0, &in, "PUB topic=\"t\" body=\"0123456789\"\n");
    in.len = 0;
    b_str(&in, "PUB t\n");
    b_u32(&in, 11);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_MESSAGE frame \"E_BAD_MESSAGE PUB message too big "
              "11 > 10\"\n");

    in.len = 0;
    b_str(&in, "DPUB t 1000\n");
    b_body(&in, "x");
    check_one(&lim, 0, &in, "DPUB topic=\"t\" number=1000 body=\"x\"\n");
    in.len = 0;
    b_str(&in, "DPUB t 1001\n");
    check_one(&lim, 0, &in,
              "ERROR E_INVALID frame \"E_INVALID DPUB timeout 1001 out of "
              "range 0-1000\"\n");
    in.len = 0;
    b_str(&in, "DPUB t 1\n");
    b_u32(&in, 11);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_MESSAGE frame \"E_BAD_MESSAGE DPUB message too "
              "big 11 > 10\"\n");

    in.len = 0;
    b_str(&in, "REQ " ID16 " 1001\n");
    check_one(&lim, F_SUB, &in, "REQ id=\"" ID16 "\" number=1000\n");

    in.len = 0;
    b_str(&in, "RDY 5\n");
    check_one(&lim, F_SUB, &in, "RDY number=5\n");
    in.len = 0;
    b_str(&in, "RDY 6\n");
    check_one(&lim, F_SUB, &in,
              "ERROR E_INVALID frame \"E_INVALID RDY count 6 out of range "
              "0-5\"\n");

    in.len = 0;
    b_str(&in, "IDENTIFY\n");
    b_u32(&in, 30);
    b_fill(&in, '{', 30);
    check_one(&lim, 0, &in,
              "IDENTIFY body=\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{\"\n");
    in.len = 0;
    b_str(&in, "IDENTIFY\n");
    b_u32(&in, 31);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_BODY frame \"E_BAD_BODY IDENTIFY body too big 31 "
              "> 30\"\n");
    in.len = 0;
    b_str(&in, "AUTH\n");
    b_u32(&in, 31);
    check_one(&lim, F_AUTH, &in,
              "ERROR E_BAD_BODY frame \"E_BAD_BODY AUTH body too big 31 > "
              "30\"\n");

    /* MPUB: body 30 and (30 - 4) / 5 = 5 messages are the largest. */
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 30);
    b_u32(&in, 5);
    for (int i = 0; i < 5; i++)
        b_body(&in, "a");
    check_one(&lim, 0, &in,
              "MPUB topic=\"t\" msgs=[\"a\",\"a\",\"a\",\"a\",\"a\"]\n");
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 31);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_BODY frame \"E_BAD_BODY MPUB body too big 31 > "
              "30\"\n");
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 30);
    b_u32(&in, 6);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_BODY frame \"E_BAD_BODY MPUB invalid message "
              "count 6\"\n");
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 30);
    b_u32(&in, 2);
    b_body(&in, "0123456789");
    b_u32(&in, 11);
    check_one(&lim, 0, &in,
              "ERROR E_BAD_MESSAGE frame \"E_BAD_MESSAGE MPUB message too "
              "big 11 > 10\"\n");

    /* Content beyond the body limit: buffered up to one more message
     * (30 + 4 + 10 = 44 bytes), then refused where nsqd would read on. */
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 30);
    b_u32(&in, 3);
    b_body(&in, "0123456789"); /* 4 + 14 = 18 */
    b_body(&in, "0123456789"); /* 32 */
    b_u32(&in, 8);             /* 44: still accepted */
    b_fill(&in, 'z', 8);
    check_one(&lim, 0, &in,
              "MPUB topic=\"t\" msgs=[\"0123456789\",\"0123456789\","
              "\"zzzzzzzz\"]\n");
    in.len = 0;
    b_str(&in, "MPUB t\n");
    b_u32(&in, 30);
    b_u32(&in, 3);
    b_body(&in, "0123456789");
    b_body(&in, "0123456789");
    b_u32(&in, 9); /* 45 */
    check_one(&lim, 0, &in,
              "ERROR E_BAD_BODY frame \"E_BAD_BODY MPUB body too big 45 > "
              "30\"\n");
    nsq_buf_free(&in);
}
END_TEST

START_TEST(limits_default_edges)
{
    /* publish_pub_body_1048576: exactly max_msg_size, in 4 KiB pieces. */
    nsq_buf_t in;
    nsq_buf_init(&in);
    b_str(&in, "PUB t\n");
    b_u32(&in, NSQ_DEFAULT_MAX_MSG_SIZE);
    b_fill(&in, 0, NSQ_DEFAULT_MAX_MSG_SIZE);
    for (size_t i = 0; i < NSQ_DEFAULT_MAX_MSG_SIZE; i++)
        in.data[10 + i] = (char)('a' + i % 26);
    b_str(&in, "NOP\n");
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    size_t off = 0;
    int got = 0;
    while (off < in.len) {
        size_t n = in.len - off < 4096 ? in.len - off : 4096;
        ck_assert_int_eq(nsq_cmd_reader_feed(r, in.data + off, n), NSQ_OK);
        off += n;
        int rc;
        while ((rc = nsq_cmd_reader_next(r, &cmd, &err)) == 1) {
            if (got == 0) {
                ck_assert_int_eq(cmd.type, NSQ_CMD_PUB);
                ck_assert_uint_eq(cmd.body_len, NSQ_DEFAULT_MAX_MSG_SIZE);
                ck_assert_mem_eq(cmd.body, in.data + 10, cmd.body_len);
                /* Only the NOP's bytes of this feed are left. */
                ck_assert_uint_le(nsq_cmd_reader_pending(r), 4);
            } else {
                ck_assert_int_eq(cmd.type, NSQ_CMD_NOP);
            }
            got++;
        }
        ck_assert_int_eq(rc, 0);
        if (got == 0)
            ck_assert_uint_eq(nsq_cmd_reader_pending(r), off);
    }
    ck_assert_int_eq(got, 2);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);
    nsq_cmd_reader_destroy(r);

    /* The limits given are copied: changing them later has no effect. */
    nsq_limits_t lim = small_limits();
    r = nsq_cmd_reader_new(&lim, false);
    lim.max_msg_size = 1000;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("PUB t\n\x00\x00\x00\x0b")),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, NSQ_E_BAD_MESSAGE);
    nsq_cmd_reader_destroy(r);
    nsq_buf_free(&in);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The 16 KiB line                                                          */
/* ------------------------------------------------------------------------ */

START_TEST(line_limit)
{
    setup_t s = {NULL, 0};
    nsq_buf_t in;
    nsq_buf_init(&in);
    result_t res;

    /* 16383 bytes and '\n' fill the buffer exactly: accepted. */
    b_str(&in, "NOP ");
    b_fill(&in, 'x', NSQ_MAX_LINE - 5);
    b_str(&in, "\n");
    ck_assert_uint_eq(in.len, NSQ_MAX_LINE);
    run_bytes(&s, in.data, in.len, &res);
    assert_log(&res, "NOP\n");
    ck_assert_uint_eq(res.at[0], NSQ_MAX_LINE);
    result_free(&res);

    /* One byte more: nsqd closes, without a frame, when the 16384th byte
     * arrives, not waiting for the '\n'. */
    in.len = 0;
    b_str(&in, "NOP ");
    b_fill(&in, 'x', NSQ_MAX_LINE - 4);
    b_str(&in, "\n");
    run_bytes(&s, in.data, in.len, &res);
    assert_log(&res, "ERROR E_INVALID noframe \"\"\n");
    ck_assert_uint_eq(res.at[0], NSQ_MAX_LINE);
    ck_assert(!res.send_frame);
    result_free(&res);
    run_whole(&s, in.data, in.len, &res);
    assert_log(&res, "ERROR E_INVALID noframe \"\"\n");
    result_free(&res);

    /* The window starts where the line starts: after a body and after
     * earlier lines of the same feed. */
    in.len = 0;
    b_str(&in, "NOP\nPUB t\n");
    b_body(&in, "body");
    size_t start = in.len;
    b_str(&in, "PUB t ");
    b_fill(&in, 'p', NSQ_MAX_LINE - 7);
    b_str(&in, "\n");
    b_body(&in, "ok");
    b_fill(&in, 'y', NSQ_MAX_LINE);
    run_bytes(&s, in.data, in.len, &res);
    assert_log(&res, "NOP\n"
                     "PUB topic=\"t\" body=\"body\"\n"
                     "PUB topic=\"t\" body=\"ok\"\n"
                     "ERROR E_INVALID noframe \"\"\n");
    ck_assert_uint_eq(res.at[2], start + NSQ_MAX_LINE + 6);
    ck_assert_uint_eq(res.at[3], in.len);
    result_free(&res);

    /* A \r before the '\n' counts in the 16384 bytes. */
    in.len = 0;
    b_str(&in, "NOP ");
    b_fill(&in, 'x', NSQ_MAX_LINE - 6);
    b_str(&in, "\r\n");
    run_whole(&s, in.data, in.len, &res);
    assert_log(&res, "NOP\n");
    result_free(&res);
    nsq_buf_free(&in);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* API                                                                      */
/* ------------------------------------------------------------------------ */

START_TEST(defaults_and_pending)
{
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    ck_assert_ptr_nonnull(r);
    nsq_conn_state_t *st = nsq_cmd_reader_state(r);
    ck_assert_int_eq(st->state, NSQ_CONN_INIT);
    ck_assert_int_eq(st->heartbeat_ms, 30000);
    ck_assert(!st->tls_required && !st->tls_active);
    ck_assert(!st->auth_enabled && !st->authorized);
    ck_assert_ptr_null(st->allow);
    ck_assert_ptr_eq(nsq_cmd_reader_state(r), st);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);

    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, NULL, 0), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, NULL, 1), NSQ_ERR_INVALID_ARG);

    /* Pending counts what a command not yet handed out has taken. */
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("NOP\nPUB t\n\x00\x00")),
                     NSQ_OK);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 12);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_NOP);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 8);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 8);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("\x00\x03xyzNO")), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_PUB);
    ck_assert_str_eq(cmd.topic, "t");
    ck_assert_uint_eq(cmd.body_len, 3);
    ck_assert_mem_eq(cmd.body, "xyz", 3);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 2);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "P\n", 2), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_NOP);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);
    nsq_cmd_reader_destroy(r);
    nsq_cmd_reader_destroy(NULL);
}
END_TEST

START_TEST(views_are_terminated_in_place)
{
    /* The topic and the channel are NUL-terminated views; the bytes after
     * them (' ', '\r', '\n') are not part of them. */
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, false);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("SUB top chan extra\r\n")),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_str_eq(cmd.topic, "top");
    ck_assert_str_eq(cmd.channel, "chan");
    nsq_cmd_reader_state(r)->state = NSQ_CONN_SUBSCRIBED;
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("FIN " ID16 "\r\n")), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_FIN);
    ck_assert_mem_eq(cmd.id, ID16, NSQ_MSG_ID_LEN);
    nsq_cmd_reader_destroy(r);

    r = nsq_cmd_reader_new(NULL, false);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("MPUB mt\r\n\x00\x00\x00\x0a"
                                               "\x00\x00\x00\x01"
                                               "\x00\x00\x00\x02"
                                               "AB")),
                     NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_str_eq(cmd.topic, "mt");
    ck_assert_uint_eq(cmd.msg_count, 1);
    ck_assert_uint_eq(cmd.msgs[0].len, 2);
    ck_assert_mem_eq(cmd.msgs[0].base, "AB", 2);
    nsq_cmd_reader_destroy(r);
}
END_TEST

/* The broker's side of an encoding change: after IDENTIFY, the bytes
 * already read belong to the new encoding. */
START_TEST(drain_between_commands)
{
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, true);
    static const char in[] = "  V2NOP\nPUB t\n\x00\x00\x00\x01xNOP";
    ck_assert_int_eq(nsq_cmd_reader_feed(r, in, sizeof in - 1), NSQ_OK);
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_NOP);
    nsq_buf_t out = {0};
    ck_assert_int_eq(nsq_cmd_reader_drain(r, &out), NSQ_OK);
    ck_assert_uint_eq(out.len, sizeof in - 1 - 8);
    ck_assert_mem_eq(out.data, "PUB t\n", 6);
    ck_assert_uint_eq(nsq_cmd_reader_pending(r), 0);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    /* Fed again, the drained bytes parse as before. */
    ck_assert_int_eq(nsq_cmd_reader_feed(r, out.data, out.len), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_PUB);
    ck_assert_str_eq(cmd.topic, "t");
    /* In the middle of a command ("NOP" without its newline is still a
     * line being read, so that is between commands: try a PUB body). */
    ck_assert_int_eq(nsq_cmd_reader_feed(r, "\nPUB t\n\x00\x00", 9), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 1);
    ck_assert_int_eq(cmd.type, NSQ_CMD_NOP);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
    ck_assert_int_eq(nsq_cmd_reader_drain(r, &out), NSQ_ERR_INVALID_ARG);
    nsq_buf_free(&out);
    nsq_cmd_reader_destroy(r);
}
END_TEST

/* One command cut at every length: where each field starts (from the
 * command's first byte) and what nsqd answers when the input ends inside
 * that field; NULL for a silent close. */
typedef struct eof_region {
    size_t from;
    const char *answer;
} eof_region_t;

typedef struct eofcase {
    const char *in; /* the command, after the magic */
    size_t len;
    bool auth_enabled;
    eof_region_t regions[7];
} eofcase_t;

static const eofcase_t eofcases[] = {
    {IN("PUB t\n\x00\x00\x00\x05hello"),
     false,
     {{0, NULL},
      {6, "E_BAD_MESSAGE PUB failed to read message body size"},
      {10, "E_BAD_MESSAGE PUB failed to read message body"}}},
    {IN("DPUB t 10\n\x00\x00\x00\x02hi"),
     false,
     {{0, NULL},
      {10, "E_BAD_MESSAGE DPUB failed to read message body size"},
      {14, "E_BAD_MESSAGE DPUB failed to read message body"}}},
    {IN("MPUB t\n\x00\x00\x00\x0f\x00\x00\x00\x02\x00\x00\x00\x01"
        "a\x00\x00\x00\x02"
        "bc"),
     false,
     {{0, NULL},
      {7, "E_BAD_BODY MPUB failed to read body size"},
      {11, "E_BAD_BODY MPUB failed to read message count"},
      {15, "E_BAD_MESSAGE MPUB failed to read message(0) body size"},
      {19, "E_BAD_MESSAGE MPUB failed to read message body"},
      {20, "E_BAD_MESSAGE MPUB failed to read message(1) body size"},
      {24, "E_BAD_MESSAGE MPUB failed to read message body"}}},
    {IN("IDENTIFY\n\x00\x00\x00\x02{}"),
     false,
     {{0, NULL},
      {9, "E_BAD_BODY IDENTIFY failed to read body size"},
      {13, "E_BAD_BODY IDENTIFY failed to read body"}}},
    {IN("AUTH\n\x00\x00\x00\x03sec"),
     true,
     {{0, NULL},
      {5, "E_BAD_BODY AUTH failed to read body size"},
      {9, "E_BAD_BODY AUTH failed to read body"}}},
};

/* The answer for a cut after k bytes of the command. */
static const char *eof_answer(const eofcase_t *c, size_t k)
{
    const char *a = NULL;
    for (size_t i = 0; i < 7 && (i == 0 || c->regions[i].from); i++)
        if (k >= c->regions[i].from)
            a = c->regions[i].answer;
    return a;
}

/* Every cut of every command: the magic, then k bytes, then the end. */
START_TEST(eof_mid_command)
{
    const eofcase_t *c = &eofcases[_i];
    for (size_t k = 0; k <= c->len; k++) {
        nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, true);
        ck_assert_ptr_nonnull(r);
        nsq_cmd_reader_state(r)->auth_enabled = c->auth_enabled;
        ck_assert_int_eq(nsq_cmd_reader_feed(r, "  V2", 4), NSQ_OK);
        if (k)
            ck_assert_int_eq(nsq_cmd_reader_feed(r, c->in, k), NSQ_OK);
        nsq_cmd_t cmd;
        nsq_cmd_error_t err;
        /* The whole command is handed out; every cut waits for more. */
        ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err),
                         k == c->len ? 1 : 0);
        if (k == c->len)
            ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
        const char *want = k == c->len ? NULL : eof_answer(c, k);
        int rc = nsq_cmd_reader_eof(r, &err);
        if (!want) {
            ck_assert_msg(rc == 0, "cut at %zu: answered '%.*s'", k,
                          (int)err.text_len, err.text);
        } else {
            ck_assert_msg(rc == -1, "cut at %zu: no answer, want '%s'", k,
                          want);
            ck_assert_msg(err.text_len == strlen(want) &&
                              memcmp(err.text, want, err.text_len) == 0,
                          "cut at %zu: '%.*s', want '%s'", k, (int)err.text_len,
                          err.text, want);
            ck_assert(err.fatal);
            ck_assert(err.send_frame);
            ck_assert_int_eq(err.code,
                             nsq_err_from_frame(err.text, err.text_len));
            /* Sticky: the reader is done. */
            ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
            ck_assert_uint_eq(err.text_len, strlen(want));
            ck_assert_int_eq(nsq_cmd_reader_eof(r, &err), -1);
            ck_assert_mem_eq(err.text, want, err.text_len);
            ck_assert_int_ne(nsq_cmd_reader_feed(r, "x", 1), NSQ_OK);
        }
        nsq_cmd_reader_destroy(r);
    }
}
END_TEST

/* A cut inside the magic or before anything is silent, and a rejection
 * already made stays the answer. */
START_TEST(eof_outside_commands)
{
    nsq_cmd_t cmd;
    nsq_cmd_error_t err;
    for (size_t k = 0; k < 4; k++) {
        nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, true);
        if (k)
            ck_assert_int_eq(nsq_cmd_reader_feed(r, "  V2", k), NSQ_OK);
        ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), 0);
        ck_assert_int_eq(nsq_cmd_reader_eof(r, &err), 0);
        nsq_cmd_reader_destroy(r);
    }
    nsq_cmd_reader_t *r = nsq_cmd_reader_new(NULL, true);
    ck_assert_int_eq(nsq_cmd_reader_feed(r, IN("  V2PUB bad!\n\x00")), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_reader_next(r, &cmd, &err), -1);
    ck_assert_int_eq(err.code, NSQ_E_BAD_TOPIC);
    ck_assert_int_eq(nsq_cmd_reader_eof(r, &err), -1);
    ck_assert_int_eq(err.code, NSQ_E_BAD_TOPIC);
    nsq_cmd_reader_destroy(r);
}
END_TEST

static Suite *cmd_reader_suite(void)
{
    Suite *s = suite_create("cmd_reader");
    TCase *tc = tcase_create("rejections");
    tcase_add_loop_test(tc, rejections, 0,
                        (int)(sizeof(errcases) / sizeof(errcases[0])));
    tcase_add_test(tc, allow_arguments);
    tcase_add_loop_test(tc, quoting, 0,
                        (int)(sizeof(quotecases) / sizeof(quotecases[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("commands");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, magic_then_commands);
    tcase_add_test(tc, every_command);
    tcase_add_test(tc, pipelined_error_in_the_middle);
    tcase_add_test(tc, state_is_read_per_command);
    tcase_add_test(tc, state_changes_while_reading_a_body);
    tcase_add_test(tc, dpub_delays);
    suite_add_tcase(s, tc);

    tc = tcase_create("mpub");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mpub_body_size_not_compared);
    tcase_add_test(tc, mpub_checks_fire_per_message);
    tcase_add_test(tc, mpub_many_messages);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, limits_small);
    tcase_add_test(tc, limits_default_edges);
    tcase_add_test(tc, line_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("api");
    tcase_add_test(tc, drain_between_commands);
    tcase_add_test(tc, defaults_and_pending);
    tcase_add_test(tc, views_are_terminated_in_place);
    tcase_add_loop_test(tc, eof_mid_command, 0,
                        sizeof eofcases / sizeof eofcases[0]);
    tcase_add_test(tc, eof_outside_commands);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cmd_reader_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
