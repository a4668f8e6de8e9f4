/*
 * The server side of the V2 protocol: an incremental reader of the bytes a
 * client sends, which yields commands or exactly the rejection nsqd 1.3.0
 * answers.  It is used by the test broker, so it reproduces nsqd's checks in
 * nsqd's order, and makes each as soon as the bytes it depends on are there:
 * a bad topic right after the line, a bad size right after its four bytes.
 *
 * Buffering works like hiredis's reader: feed() appends to one buffer and
 * next() parses lazily.  A command's bytes stay in the buffer until it is
 * yielded, so every view handed out (parameters, bodies, MPUB messages) points
 * into it, and all parse progress is kept as offsets from the command's start
 * (pos), which survive the compaction feed() does.  What is buffered beyond a
 * caller's unread feeds is one command: a line of at most NSQ_MAX_LINE bytes
 * plus a body bounded by the limits.
 *
 * MPUB is the exception nsqd forces on us: nsqd reads its messages straight
 * from the stream and only range-checks the body size, so the content may be
 * longer than the size says.  The reader keeps the whole MPUB buffered (its
 * messages are yielded together), and bounds it by max_body_size plus one
 * more message (max_msg_size and its 4-byte length); past that it answers
 * E_BAD_BODY "MPUB body too big <bytes so far> > <max_body_size>", where
 * nsqd would go on reading.  A well-formed MPUB never comes near that bound.
 *
 * Deviations from the brief, taken from nsqd 1.3.0's source: REQ clamps an
 * out-of-range timeout instead of failing (nsqd #868), CLS takes extra
 * parameters silently, and a message id of the wrong length is answered
 * "invalid message ID" (lower case since nsqd's staticcheck clean-up).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "goquote.h"
#include "nsq/broker.h"

/* nsqd 1.3's getMessageID error: lower case since nsqd's staticcheck
 * clean-up (1.2 and older said "Invalid Message ID"). */
#define BAD_ID_TEXT "invalid message ID"

/* The protocol magic of V2. */
#define MAGIC "  V2"
#define MAGIC_LEN 4

/* Every size on the wire is four bytes, big-endian. */
#define LEN_SIZE 4

/* Go's time.Millisecond in nanoseconds: nsqd multiplies millisecond
 * parameters into a time.Duration before it compares them. */
#define NS_PER_MS 1000000

/* The parameters any command looks at: its name and two arguments. */
#define MAX_SPANS 3

enum phase {
    PH_MAGIC,      /* the 4-byte magic */
    PH_LINE,       /* a command line up to '\n' */
    PH_SIZE,       /* the 4-byte size after IDENTIFY/AUTH/PUB/DPUB/MPUB */
    PH_BODY,       /* the body of IDENTIFY/AUTH/PUB/DPUB */
    PH_MPUB_COUNT, /* the MPUB message count */
    PH_MPUB_LEN,   /* the length of MPUB message mpub_index */
    PH_MPUB_MSG,   /* the bytes of MPUB message mpub_index */
    PH_FAILED,     /* a fatal error was reported; it is sticky */
};

/* What one parsing step tells next(): a command, a wait, a rejection, or
 * that the phase changed and parsing goes on. */
enum step { ST_NEED = 0, ST_CMD = 1, ST_FAIL = -1, ST_MORE = 2 };

/* A parameter: offset from the command's start and length. */
typedef struct span {
    size_t off;
    size_t len;
} span_t;

struct nsq_cmd_reader {
    nsq_limits_t lim;
    nsq_conn_state_t st;

    nsq_buf_t in; /* fed bytes; [pos, in.len) are not consumed */
    size_t pos;   /* where the current command starts */
    size_t cur;   /* parse position, from pos */
    size_t scan;  /* PH_LINE: bytes from pos already searched for '\n' */
    enum phase phase;

    /* The command being read. */
    nsq_cmd_type_t type;
    span_t param[MAX_SPANS];
    size_t nparams;
    size_t body_len;     /* PH_BODY, PH_MPUB_MSG: bytes expected */
    size_t body_off;     /* PH_BODY: where the body starts, from pos */
    int64_t number;      /* DPUB: the delay, parsed from the line */
    int32_t mpub_count;  /* messages announced */
    int32_t mpub_index;  /* messages read so far */
    size_t mpub_off;     /* first message length field, from pos */
    uint64_t mpub_total; /* MPUB content so far: count + lengths + bodies */

    nsq_iov_t *iov; /* MPUB messages, reused between commands */
    size_t iov_cap;

    nsq_buf_t text;      /* the rejection's frame data */
    bool text_nomem;     /* building the text ran out of memory */
    nsq_cmd_error_t err; /* the sticky error once phase is PH_FAILED */
};

/* ------------------------------------------------------------------------ */
/* Error texts                                                              */
/* ------------------------------------------------------------------------ */

static void text_put(nsq_cmd_reader_t *r, const void *data, size_t len)
{
    if (r->text_nomem || len == 0)
        return;
    /* One byte more keeps the text NUL-terminated for the caller's
     * convenience; text_len never counts it. */
    if (nsq_buf_reserve(&r->text, len + 1) != NSQ_OK) {
        r->text_nomem = true;
        return;
    }
    memcpy(r->text.data + r->text.len, data, len);
    r->text.len += len;
    r->text.data[r->text.len] = '\0';
}

static void text_str(nsq_cmd_reader_t *r, const char *s)
{
    text_put(r, s, strlen(s));
}

static void text_i64(nsq_cmd_reader_t *r, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);
    text_put(r, num, (size_t)n);
}

static void text_u64(nsq_cmd_reader_t *r, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRIu64, v);
    text_put(r, num, (size_t)n);
}

/* Starts the frame data with the code's name, as nsqd's FatalClientErr
 * formats it: "E_INVALID " + description. */
static void text_begin(nsq_cmd_reader_t *r, nsq_err_t code)
{
    r->text.len = 0;
    r->text_nomem = false;
    text_str(r, nsq_err2name(code));
    text_put(r, " ", 1);
}

/* Appends s quoted like Go's %q (strconv.Quote). */
static void text_quote(nsq_cmd_reader_t *r, const char *s, size_t n)
{
    if (r->text_nomem)
        return;
    /* Like text_put, keep the text NUL-terminated past text_len. */
    if (nsq__goquote_append(&r->text, s, n) != NSQ_OK ||
        nsq_buf_reserve(&r->text, 1) != NSQ_OK) {
        r->text_nomem = true;
        return;
    }
    r->text.data[r->text.len] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static char *base(const nsq_cmd_reader_t *r)
{
    return r->in.data + r->pos;
}

static size_t avail(const nsq_cmd_reader_t *r)
{
    return r->in.len - r->pos - r->cur;
}

static const char *param_ptr(const nsq_cmd_reader_t *r, size_t i)
{
    return base(r) + r->param[i].off;
}

static bool name_is(const nsq_cmd_reader_t *r, const char *name)
{
    size_t n = strlen(name);
    return r->param[0].len == n && memcmp(param_ptr(r, 0), name, n) == 0;
}

/* The command's name as nsqd's texts spell it. */
static const char *verb_of(nsq_cmd_type_t type)
{
    static const char *const verbs[] = {
        [NSQ_CMD_IDENTIFY] = "IDENTIFY", [NSQ_CMD_AUTH] = "AUTH",
        [NSQ_CMD_PUB] = "PUB",           [NSQ_CMD_MPUB] = "MPUB",
        [NSQ_CMD_DPUB] = "DPUB",         [NSQ_CMD_NOP] = "NOP",
        [NSQ_CMD_CLS] = "CLS",           [NSQ_CMD_SUB] = "SUB",
        [NSQ_CMD_RDY] = "RDY",           [NSQ_CMD_FIN] = "FIN",
        [NSQ_CMD_REQ] = "REQ",           [NSQ_CMD_TOUCH] = "TOUCH",
    };
    return (size_t)type < sizeof verbs / sizeof verbs[0] ? verbs[type] : "?";
}

/* Reads a size field at cur and moves past it: nsqd's readLen, a signed
 * int32 in network order. */
static int32_t take_len(nsq_cmd_reader_t *r)
{
    const unsigned char *p = (const unsigned char *)base(r) + r->cur;
    uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
                 ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    r->cur += LEN_SIZE;
    /* Two's complement without relying on an out-of-range conversion. */
    return u > INT32_MAX ? (int32_t)(u - 0x80000000u) + INT32_MIN : (int32_t)u;
}

/* A uint64 as Go's int64(u): two's complement wraparound. */
static int64_t wrap_i64(uint64_t u)
{
    return u > INT64_MAX ? (int64_t)(u - (uint64_t)INT64_MAX - 1) + INT64_MIN
                         : (int64_t)u;
}

/* nsqd's protocol.ByteToBase10: decimal digits only (an empty string is 0),
 * accumulated in a uint64 that silently wraps. */
static bool base10(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* A limit in milliseconds as the time.Duration nsqd holds it in, saturated
 * where nanoseconds would not fit an int64. */
static int64_t ms_to_ns(int64_t ms)
{
    if (ms > INT64_MAX / NS_PER_MS)
        return INT64_MAX;
    if (ms < INT64_MIN / NS_PER_MS)
        return INT64_MIN;
    return ms * NS_PER_MS;
}

/* Records the rejection; every error nsqd answers while reading commands
 * closes the connection, so every one is sticky. */
static int fail(nsq_cmd_reader_t *r, nsq_cmd_error_t *err, nsq_err_t code,
                bool send_frame)
{
    if (r->text_nomem) {
        /* The text could not be built: close without a frame rather than
         * send a truncated one. */
        code = NSQ_ERR_NOMEM;
        send_frame = false;
        r->text.len = 0;
    }
    r->err.code = code;
    r->err.fatal = true;
    r->err.send_frame = send_frame;
    r->err.text = r->text.len ? r->text.data : "";
    r->err.text_len = r->text.len;
    r->phase = PH_FAILED;
    *err = r->err;
    return ST_FAIL;
}

/* Out of memory outside the text: close without a frame. */
static int fail_nomem(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    r->text.len = 0;
    r->text_nomem = false;
    return fail(r, err, NSQ_ERR_NOMEM, false);
}

/* E_INVALID with a fixed description. */
static int fail_invalid(nsq_cmd_reader_t *r, nsq_cmd_error_t *err,
                        const char *desc)
{
    text_begin(r, NSQ_E_INVALID);
    text_str(r, desc);
    return fail(r, err, NSQ_E_INVALID, true);
}

/* "<prefix><value><suffix>" under code: most of nsqd's size errors. */
static int fail_num(nsq_cmd_reader_t *r, nsq_cmd_error_t *err, nsq_err_t code,
                    const char *prefix, int64_t v)
{
    text_begin(r, code);
    text_str(r, prefix);
    text_i64(r, v);
    return fail(r, err, code, true);
}

/* "<prefix><value> > <limit>": the "too big" errors. */
static int fail_big(nsq_cmd_reader_t *r, nsq_cmd_error_t *err, nsq_err_t code,
                    const char *prefix, int64_t v, int64_t limit)
{
    text_begin(r, code);
    text_str(r, prefix);
    text_i64(r, v);
    text_put(r, " > ", 3);
    text_i64(r, limit);
    return fail(r, err, code, true);
}

/* "<verb> topic name %q is not valid". */
static int fail_topic(nsq_cmd_reader_t *r, nsq_cmd_error_t *err,
                      const char *prefix)
{
    text_begin(r, NSQ_E_BAD_TOPIC);
    text_str(r, prefix);
    text_put(r, " topic name ", 12);
    text_quote(r, param_ptr(r, 1), r->param[1].len);
    text_str(r, " is not valid");
    return fail(r, err, NSQ_E_BAD_TOPIC, true);
}

/* "<text>" + the parameter as sent (Go's %s of a []byte). */
static int fail_param(nsq_cmd_reader_t *r, nsq_cmd_error_t *err,
                      const char *desc, size_t i)
{
    text_begin(r, NSQ_E_INVALID);
    text_str(r, desc);
    text_put(r, param_ptr(r, i), r->param[i].len);
    return fail(r, err, NSQ_E_INVALID, true);
}

/*
 * nsqd's CheckAuth, with the owner's state standing in for the auth server:
 * returns ST_MORE when the command may go on.  topic and channel are
 * NUL-terminated views ("" for a publish's channel).
 */
static int check_auth(nsq_cmd_reader_t *r, nsq_cmd_error_t *err,
                      const char *verb, const char *topic, const char *channel)
{
    if (!r->st.auth_enabled)
        return ST_MORE;
    if (!r->st.authorized) {
        text_begin(r, NSQ_E_AUTH_FIRST);
        text_str(r, "AUTH required before ");
        text_str(r, verb);
        return fail(r, err, NSQ_E_AUTH_FIRST, true);
    }
    if (r->st.allow && !r->st.allow(r->st.opaque, verb, topic, channel)) {
        text_begin(r, NSQ_E_UNAUTHORIZED);
        text_str(r, "AUTH failed for ");
        text_str(r, verb);
        text_put(r, " on ", 4);
        text_quote(r, topic, strlen(topic));
        text_put(r, " ", 1);
        text_quote(r, channel, strlen(channel));
        return fail(r, err, NSQ_E_UNAUTHORIZED, true);
    }
    return ST_MORE;
}

/* Consumes the current command and hands it out. */
static int yield(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_type_t type)
{
    cmd->type = type;
    r->pos += r->cur;
    r->cur = 0;
    r->scan = 0;
    r->phase = PH_LINE;
    return ST_CMD;
}

/* Starts a command's view with the fields every command shares. */
static void cmd_clear(nsq_cmd_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
}

static bool in_state(const nsq_cmd_reader_t *r, int a, int b)
{
    return r->st.state == a || r->st.state == b;
}

/* ------------------------------------------------------------------------ */
/* Commands without a body                                                  */
/* ------------------------------------------------------------------------ */

/* FIN, TOUCH and REQ share the state, parameter and id checks. */
static int check_id_cmd(nsq_cmd_reader_t *r, nsq_cmd_error_t *err,
                        const char *verb, size_t min_params)
{
    if (!in_state(r, NSQ_CONN_SUBSCRIBED, NSQ_CONN_CLOSING)) {
        text_begin(r, NSQ_E_INVALID);
        text_str(r, "cannot ");
        text_str(r, verb);
        text_str(r, " in current state");
        return fail(r, err, NSQ_E_INVALID, true);
    }
    if (r->nparams < min_params) {
        text_begin(r, NSQ_E_INVALID);
        text_str(r, verb);
        text_str(r, " insufficient number of params");
        return fail(r, err, NSQ_E_INVALID, true);
    }
    if (r->param[1].len != NSQ_MSG_ID_LEN)
        return fail_invalid(r, err, BAD_ID_TEXT);
    return ST_MORE;
}

static int do_fin_touch(nsq_cmd_reader_t *r, nsq_cmd_t *cmd,
                        nsq_cmd_error_t *err, nsq_cmd_type_t type)
{
    int rc = check_id_cmd(r, err, type == NSQ_CMD_FIN ? "FIN" : "TOUCH", 2);
    if (rc != ST_MORE)
        return rc;
    cmd->id = param_ptr(r, 1);
    return yield(r, cmd, type);
}

static int do_req(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    int rc = check_id_cmd(r, err, "REQ", 3);
    if (rc != ST_MORE)
        return rc;
    uint64_t ms;
    if (!base10(param_ptr(r, 2), r->param[2].len, &ms))
        return fail_param(r, err, "REQ could not parse timeout ", 2);
    /* nsqd 1.3 clamps the timeout into range and requeues anyway. */
    int64_t ns = wrap_i64(ms * NS_PER_MS);
    int64_t max_ns = ms_to_ns(r->lim.max_req_timeout_ms);
    if (ns < 0)
        ns = 0;
    else if (ns > max_ns)
        ns = max_ns;
    cmd->id = param_ptr(r, 1);
    cmd->number = ns / NS_PER_MS;
    return yield(r, cmd, NSQ_CMD_REQ);
}

static int do_rdy(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    if (r->st.state == NSQ_CONN_CLOSING)
        return yield(r, cmd, NSQ_CMD_RDY); /* nsqd ignores it unparsed */
    if (r->st.state != NSQ_CONN_SUBSCRIBED)
        return fail_invalid(r, err, "cannot RDY in current state");
    int64_t count = 1;
    if (r->nparams > 1) {
        uint64_t u;
        if (!base10(param_ptr(r, 1), r->param[1].len, &u))
            return fail_param(r, err, "RDY could not parse count ", 1);
        count = wrap_i64(u);
    }
    if (count < 0 || count > r->lim.max_rdy_count) {
        text_begin(r, NSQ_E_INVALID);
        text_str(r, "RDY count ");
        text_i64(r, count);
        text_str(r, " out of range 0-");
        text_i64(r, r->lim.max_rdy_count);
        return fail(r, err, NSQ_E_INVALID, true);
    }
    cmd->number = count;
    return yield(r, cmd, NSQ_CMD_RDY);
}

static int do_sub(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    if (r->st.state != NSQ_CONN_INIT)
        return fail_invalid(r, err, "cannot SUB in current state");
    if (r->st.heartbeat_ms <= 0)
        return fail_invalid(r, err, "cannot SUB with heartbeats disabled");
    if (r->nparams < 3)
        return fail_invalid(r, err, "SUB insufficient number of parameters");
    if (!nsq_topic_valid(param_ptr(r, 1), r->param[1].len))
        return fail_topic(r, err, "SUB");
    if (!nsq_channel_valid(param_ptr(r, 2), r->param[2].len)) {
        text_begin(r, NSQ_E_BAD_CHANNEL);
        text_str(r, "SUB channel name ");
        text_quote(r, param_ptr(r, 2), r->param[2].len);
        text_str(r, " is not valid");
        return fail(r, err, NSQ_E_BAD_CHANNEL, true);
    }
    int rc = check_auth(r, err, "SUB", param_ptr(r, 1), param_ptr(r, 2));
    if (rc != ST_MORE)
        return rc;
    cmd->topic = param_ptr(r, 1);
    cmd->channel = param_ptr(r, 2);
    return yield(r, cmd, NSQ_CMD_SUB);
}

/* DPUB's timeout, checked on the line before the size is read. */
static int check_dpub_timeout(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    uint64_t ms;
    if (!base10(param_ptr(r, 2), r->param[2].len, &ms))
        return fail_param(r, err, "DPUB could not parse timeout ", 2);
    int64_t ns = wrap_i64(ms * NS_PER_MS);
    if (ns < 0 || ns > ms_to_ns(r->lim.max_req_timeout_ms)) {
        text_begin(r, NSQ_E_INVALID);
        text_str(r, "DPUB timeout ");
        text_u64(r, ms);
        text_str(r, " out of range 0-");
        text_i64(r, r->lim.max_req_timeout_ms);
        return fail(r, err, NSQ_E_INVALID, true);
    }
    /* The delay nsqd applies is the (possibly wrapped) duration; it is kept
     * here because the command is handed out in a later call. */
    r->number = ns / NS_PER_MS;
    return ST_MORE;
}

/* ------------------------------------------------------------------------ */
/* The phases                                                               */
/* ------------------------------------------------------------------------ */

static int step_magic(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    if (avail(r) < MAGIC_LEN)
        return ST_NEED;
    if (memcmp(base(r), MAGIC, MAGIC_LEN) != 0) {
        /* nsqd answers a bad magic with the bare code, no description. */
        r->text.len = 0;
        r->text_nomem = false;
        text_str(r, nsq_err2name(NSQ_E_BAD_PROTOCOL));
        return fail(r, err, NSQ_E_BAD_PROTOCOL, true);
    }
    r->pos += MAGIC_LEN;
    r->phase = PH_LINE;
    return ST_MORE;
}

/* Splits the line [0, len) on every ' ', remembering the first spans, and
 * NUL-terminates those in place (over the ' ', '\r' or '\n' after each). */
static void split_line(nsq_cmd_reader_t *r, size_t len)
{
    char *b = base(r);
    size_t start = 0;
    r->nparams = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && b[i] != ' ')
            continue;
        if (r->nparams < MAX_SPANS) {
            r->param[r->nparams].off = start;
            r->param[r->nparams].len = i - start;
        }
        r->nparams++;
        start = i + 1;
    }
    for (size_t i = 0; i < r->nparams && i < MAX_SPANS; i++)
        b[r->param[i].off + r->param[i].len] = '\0';
}

static int step_line(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    size_t have = r->in.len - r->pos;
    size_t limit = have < NSQ_MAX_LINE ? have : NSQ_MAX_LINE;
    const char *nl = NULL;
    if (limit > r->scan)
        nl = memchr(base(r) + r->scan, '\n', limit - r->scan);
    if (!nl) {
        if (have >= NSQ_MAX_LINE) {
            /* nsqd's 16 KiB read buffer filled without a line end: it
             * closes the connection without answering. */
            r->text.len = 0;
            r->text_nomem = false;
            return fail(r, err, NSQ_E_INVALID, false);
        }
        r->scan = limit;
        return ST_NEED;
    }
    size_t len = (size_t)(nl - base(r));
    r->cur = len + 1;
    if (len > 0 && base(r)[len - 1] == '\r')
        len--;
    split_line(r, len);

    if (name_is(r, "IDENTIFY")) {
        /* IDENTIFY comes before the TLS policy: it is how TLS starts. */
        if (r->st.state != NSQ_CONN_INIT)
            return fail_invalid(r, err, "cannot IDENTIFY in current state");
        r->type = NSQ_CMD_IDENTIFY;
        r->phase = PH_SIZE;
        return ST_MORE;
    }
    if (r->st.tls_required && !r->st.tls_active) {
        text_begin(r, NSQ_E_INVALID);
        text_str(r, "cannot ");
        text_put(r, param_ptr(r, 0), r->param[0].len);
        text_str(r, " in current state (TLS required)");
        return fail(r, err, NSQ_E_INVALID, true);
    }
    if (name_is(r, "FIN"))
        return do_fin_touch(r, cmd, err, NSQ_CMD_FIN);
    if (name_is(r, "RDY"))
        return do_rdy(r, cmd, err);
    if (name_is(r, "REQ"))
        return do_req(r, cmd, err);
    if (name_is(r, "PUB")) {
        if (r->nparams < 2)
            return fail_invalid(r, err,
                                "PUB insufficient number of parameters");
        if (!nsq_topic_valid(param_ptr(r, 1), r->param[1].len))
            return fail_topic(r, err, "PUB");
        r->type = NSQ_CMD_PUB;
        r->phase = PH_SIZE;
        return ST_MORE;
    }
    if (name_is(r, "MPUB")) {
        if (r->nparams < 2)
            return fail_invalid(r, err,
                                "MPUB insufficient number of parameters");
        /* nsqd's own text repeats the code here. */
        if (!nsq_topic_valid(param_ptr(r, 1), r->param[1].len))
            return fail_topic(r, err, "E_BAD_TOPIC MPUB");
        /* MPUB checks authorization before it reads any size. */
        int rc = check_auth(r, err, "MPUB", param_ptr(r, 1), "");
        if (rc != ST_MORE)
            return rc;
        r->type = NSQ_CMD_MPUB;
        r->phase = PH_SIZE;
        return ST_MORE;
    }
    if (name_is(r, "DPUB")) {
        if (r->nparams < 3)
            return fail_invalid(r, err,
                                "DPUB insufficient number of parameters");
        if (!nsq_topic_valid(param_ptr(r, 1), r->param[1].len))
            return fail_topic(r, err, "DPUB");
        int rc = check_dpub_timeout(r, err);
        if (rc != ST_MORE)
            return rc;
        r->type = NSQ_CMD_DPUB;
        r->phase = PH_SIZE;
        return ST_MORE;
    }
    if (name_is(r, "NOP"))
        return yield(r, cmd, NSQ_CMD_NOP);
    if (name_is(r, "TOUCH"))
        return do_fin_touch(r, cmd, err, NSQ_CMD_TOUCH);
    if (name_is(r, "SUB"))
        return do_sub(r, cmd, err);
    if (name_is(r, "CLS")) {
        /* nsqd 1.3 ignores any parameters of CLS. */
        if (r->st.state != NSQ_CONN_SUBSCRIBED)
            return fail_invalid(r, err, "cannot CLS in current state");
        return yield(r, cmd, NSQ_CMD_CLS);
    }
    if (name_is(r, "AUTH")) {
        if (r->st.state != NSQ_CONN_INIT)
            return fail_invalid(r, err, "cannot AUTH in current state");
        if (r->nparams != 1)
            return fail_invalid(r, err, "AUTH invalid number of parameters");
        r->type = NSQ_CMD_AUTH;
        r->phase = PH_SIZE;
        return ST_MORE;
    }
    text_begin(r, NSQ_E_INVALID);
    text_str(r, "invalid command ");
    text_put(r, param_ptr(r, 0), r->param[0].len);
    return fail(r, err, NSQ_E_INVALID, true);
}

static int step_size(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    if (avail(r) < LEN_SIZE)
        return ST_NEED;
    int32_t n = take_len(r);
    const int64_t body_max = r->lim.max_body_size;
    const int64_t msg_max = r->lim.max_msg_size;

    switch (r->type) {
    case NSQ_CMD_IDENTIFY:
    case NSQ_CMD_AUTH: {
        const char *verb = verb_of(r->type);
        char prefix[32];
        if (n > body_max) {
            snprintf(prefix, sizeof(prefix), "%s body too big ", verb);
            return fail_big(r, err, NSQ_E_BAD_BODY, prefix, n, body_max);
        }
        if (n <= 0) {
            snprintf(prefix, sizeof(prefix), "%s invalid body size ", verb);
            return fail_num(r, err, NSQ_E_BAD_BODY, prefix, n);
        }
        break;
    }
    case NSQ_CMD_PUB:
    case NSQ_CMD_DPUB: {
        const char *verb = r->type == NSQ_CMD_PUB ? "PUB" : "DPUB";
        char prefix[40];
        if (n <= 0) {
            snprintf(prefix, sizeof(prefix), "%s invalid message body size ",
                     verb);
            return fail_num(r, err, NSQ_E_BAD_MESSAGE, prefix, n);
        }
        if (n > msg_max) {
            snprintf(prefix, sizeof(prefix), "%s message too big ", verb);
            return fail_big(r, err, NSQ_E_BAD_MESSAGE, prefix, n, msg_max);
        }
        break;
    }
    default: /* MPUB */
        if (n <= 0)
            return fail_num(r, err, NSQ_E_BAD_BODY, "MPUB invalid body size ",
                            n);
        if (n > body_max)
            return fail_big(r, err, NSQ_E_BAD_BODY, "MPUB body too big ", n,
                            body_max);
        r->phase = PH_MPUB_COUNT;
        return ST_MORE;
    }
    r->body_len = (size_t)n;
    r->body_off = r->cur;
    r->phase = PH_BODY;
    return ST_MORE;
}

static int step_body(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    if (avail(r) < r->body_len)
        return ST_NEED;
    r->cur += r->body_len;
    cmd->body = base(r) + r->body_off;
    cmd->body_len = r->body_len;

    switch (r->type) {
    case NSQ_CMD_AUTH:
        /* nsqd reads the whole body before these two checks. */
        if (r->st.authorized)
            return fail_invalid(r, err, "AUTH already set");
        if (!r->st.auth_enabled) {
            text_begin(r, NSQ_E_AUTH_DISABLED);
            text_str(r, "AUTH disabled");
            return fail(r, err, NSQ_E_AUTH_DISABLED, true);
        }
        break;
    case NSQ_CMD_PUB:
    case NSQ_CMD_DPUB: {
        int rc = check_auth(r, err, r->type == NSQ_CMD_PUB ? "PUB" : "DPUB",
                            param_ptr(r, 1), "");
        if (rc != ST_MORE)
            return rc;
        cmd->topic = param_ptr(r, 1);
        cmd->number = r->type == NSQ_CMD_DPUB ? r->number : 0;
        break;
    }
    default: /* IDENTIFY: the JSON is judged by nsq_identify_apply */
        break;
    }
    return yield(r, cmd, r->type);
}

static int step_mpub_count(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    if (avail(r) < LEN_SIZE)
        return ST_NEED;
    int32_t n = take_len(r);
    /* Each message takes at least its length and one byte. */
    int64_t max_count = (r->lim.max_body_size - LEN_SIZE) / 5;
    if (n <= 0 || n > max_count)
        return fail_num(r, err, NSQ_E_BAD_BODY, "MPUB invalid message count ",
                        n);
    r->mpub_count = n;
    r->mpub_index = 0;
    r->mpub_off = r->cur;
    r->mpub_total = LEN_SIZE;
    r->phase = PH_MPUB_LEN;
    return ST_MORE;
}

/* How much MPUB content the reader buffers at most: see the top comment. */
static uint64_t mpub_bound(const nsq_limits_t *lim)
{
    uint64_t body = lim->max_body_size > 0 ? (uint64_t)lim->max_body_size : 0;
    uint64_t msg = lim->max_msg_size > 0 ? (uint64_t)lim->max_msg_size : 0;
    uint64_t sum = body + msg + LEN_SIZE; /* each term is below 2^63 */
    return sum < body ? UINT64_MAX : sum;
}

/* Hands out the MPUB with its messages: walks the buffered content again
 * to fill the reusable iov array. */
static int mpub_yield(nsq_cmd_reader_t *r, nsq_cmd_t *cmd, nsq_cmd_error_t *err)
{
    size_t count = (size_t)r->mpub_count;
    if (count > r->iov_cap) {
        size_t cap = r->iov_cap ? r->iov_cap : 16;
        while (cap < count)
            cap = cap > SIZE_MAX / 2 / sizeof(nsq_iov_t) ? count : cap * 2;
        if (cap > SIZE_MAX / sizeof(nsq_iov_t))
            return fail_nomem(r, err);
        nsq_iov_t *iov = realloc(r->iov, cap * sizeof(nsq_iov_t));
        if (!iov)
            return fail_nomem(r, err);
        r->iov = iov;
        r->iov_cap = cap;
    }
    const unsigned char *p = (const unsigned char *)base(r) + r->mpub_off;
    for (size_t i = 0; i < count; i++) {
        size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) |
                     ((size_t)p[2] << 8) | (size_t)p[3];
        r->iov[i].base = p + LEN_SIZE;
        r->iov[i].len = len;
        p += LEN_SIZE + len;
    }
    cmd->topic = param_ptr(r, 1);
    cmd->msgs = r->iov;
    cmd->msg_count = count;
    return yield(r, cmd, NSQ_CMD_MPUB);
}

static int step_mpub_len(nsq_cmd_reader_t *r, nsq_cmd_t *cmd,
                         nsq_cmd_error_t *err)
{
    if (r->mpub_index == r->mpub_count)
        return mpub_yield(r, cmd, err);
    if (avail(r) < LEN_SIZE)
        return ST_NEED;
    int32_t n = take_len(r);
    if (n <= 0) {
        text_begin(r, NSQ_E_BAD_MESSAGE);
        text_str(r, "MPUB invalid message(");
        text_i64(r, r->mpub_index);
        text_str(r, ") body size ");
        text_i64(r, n);
        return fail(r, err, NSQ_E_BAD_MESSAGE, true);
    }
    if (n > r->lim.max_msg_size)
        return fail_big(r, err, NSQ_E_BAD_MESSAGE, "MPUB message too big ", n,
                        r->lim.max_msg_size);
    r->mpub_total += LEN_SIZE + (uint64_t)n;
    if (r->mpub_total > mpub_bound(&r->lim))
        return fail_big(r, err, NSQ_E_BAD_BODY, "MPUB body too big ",
                        (int64_t)r->mpub_total, r->lim.max_body_size);
    r->body_len = (size_t)n;
    r->phase = PH_MPUB_MSG;
    return ST_MORE;
}

static int step_mpub_msg(nsq_cmd_reader_t *r)
{
    if (avail(r) < r->body_len)
        return ST_NEED;
    r->cur += r->body_len;
    r->mpub_index++;
    r->phase = PH_MPUB_LEN;
    return ST_MORE;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */
/* ------------------------------------------------------------------------ */

nsq_cmd_reader_t *nsq_cmd_reader_new(const nsq_limits_t *lim, bool expect_magic)
{
    nsq_cmd_reader_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (lim)
        r->lim = *lim;
    else
        nsq_limits_default(&r->lim);
    nsq_buf_init(&r->in);
    nsq_buf_init(&r->text);
    r->st.state = NSQ_CONN_INIT;
    /* nsqd's default client heartbeat, so SUB works without IDENTIFY. */
    r->st.heartbeat_ms = 30000;
    r->phase = expect_magic ? PH_MAGIC : PH_LINE;
    return r;
}

void nsq_cmd_reader_destroy(nsq_cmd_reader_t *r)
{
    if (!r)
        return;
    nsq_buf_free(&r->in);
    nsq_buf_free(&r->text);
    free(r->iov);
    free(r);
}

nsq_conn_state_t *nsq_cmd_reader_state(nsq_cmd_reader_t *r)
{
    return &r->st;
}

nsq_err_t nsq_cmd_reader_feed(nsq_cmd_reader_t *r, const void *data, size_t len)
{
    if (!r || (!data && len))
        return NSQ_ERR_INVALID_ARG;
    /* After a fatal error nsqd has closed: nothing more is read. */
    if (r->phase == PH_FAILED)
        return r->err.code;
    if (len == 0)
        return NSQ_OK;
    /* Compaction: consumed bytes go before new ones come in.  Every saved
     * position is relative to pos, so moving the unconsumed part is all;
     * views handed out earlier are invalid from this call on anyway. */
    if (r->pos > 0) {
        size_t rest = r->in.len - r->pos;
        if (rest)
            memmove(r->in.data, r->in.data + r->pos, rest);
        r->in.len = rest;
        r->pos = 0;
    }
    return nsq_buf_append(&r->in, data, len);
}

int nsq_cmd_reader_next(nsq_cmd_reader_t *r, nsq_cmd_t *cmd,
                        nsq_cmd_error_t *err)
{
    if (r->phase == PH_FAILED) {
        *err = r->err;
        return -1;
    }
    cmd_clear(cmd);
    for (;;) {
        int rc;
        switch (r->phase) {
        case PH_MAGIC:
            rc = step_magic(r, err);
            break;
        case PH_LINE:
            rc = step_line(r, cmd, err);
            break;
        case PH_SIZE:
            rc = step_size(r, err);
            break;
        case PH_BODY:
            rc = step_body(r, cmd, err);
            break;
        case PH_MPUB_COUNT:
            rc = step_mpub_count(r, err);
            break;
        case PH_MPUB_LEN:
            rc = step_mpub_len(r, cmd, err);
            break;
        case PH_MPUB_MSG:
            rc = step_mpub_msg(r);
            break;
        default:
            *err = r->err;
            return -1;
        }
        if (rc != ST_MORE)
            return rc;
    }
}

/* "<verb> failed to read <what>": nsqd's answer when the input ends
 * inside a command. */
static int fail_eof(nsq_cmd_reader_t *r, nsq_cmd_error_t *err, nsq_err_t code,
                    const char *verb, const char *what)
{
    text_begin(r, code);
    text_str(r, verb);
    text_str(r, " failed to read ");
    text_str(r, what);
    return fail(r, err, code, true);
}

int nsq_cmd_reader_eof(nsq_cmd_reader_t *r, nsq_cmd_error_t *err)
{
    if (r->phase == PH_FAILED) {
        *err = r->err;
        return -1;
    }
    /* nsqd reads IDENTIFY's and AUTH's bodies as a "body", PUB's and
     * DPUB's as a "message body"; MPUB has its own texts per field. */
    bool message = r->type == NSQ_CMD_PUB || r->type == NSQ_CMD_DPUB;
    nsq_err_t code = message ? NSQ_E_BAD_MESSAGE : NSQ_E_BAD_BODY;
    const char *verb = verb_of(r->type);
    switch (r->phase) {
    case PH_SIZE:
        return fail_eof(r, err, code, verb,
                        message ? "message body size" : "body size");
    case PH_BODY:
        return fail_eof(r, err, code, verb, message ? "message body" : "body");
    case PH_MPUB_COUNT:
        return fail_eof(r, err, NSQ_E_BAD_BODY, "MPUB", "message count");
    case PH_MPUB_LEN:
        if (r->mpub_index == r->mpub_count)
            return 0; /* complete: next() hands it out */
        text_begin(r, NSQ_E_BAD_MESSAGE);
        text_str(r, "MPUB failed to read message(");
        text_i64(r, r->mpub_index);
        text_str(r, ") body size");
        return fail(r, err, NSQ_E_BAD_MESSAGE, true);
    case PH_MPUB_MSG:
        return fail_eof(r, err, NSQ_E_BAD_MESSAGE, "MPUB", "message body");
    default:
        /* Inside the magic or a command line, or between commands: nsqd's
         * reads end and it closes without a word. */
        return 0;
    }
}

size_t nsq_cmd_reader_pending(const nsq_cmd_reader_t *r)
{
    return r->in.len - r->pos;
}

nsq_err_t nsq_cmd_reader_drain(nsq_cmd_reader_t *r, nsq_buf_t *out)
{
    if (!r || !out || r->phase != PH_LINE || r->cur != 0)
        return NSQ_ERR_INVALID_ARG;
    nsq_err_t err =
        nsq_buf_append(out, r->in.data + r->pos, r->in.len - r->pos);
    if (err != NSQ_OK)
        return err;
    r->in.len = r->pos = r->cur = 0;
    r->scan = 0;
    return NSQ_OK;
}
