/*
 * IDENTIFY and AUTH: the client's IDENTIFY command and the parsers of the
 * broker's answers, and the broker's side of IDENTIFY as nsqd 1.3 does it.
 *
 * The client's IDENTIFY and the broker's reply are written by json.c in the
 * key order of the capture, so the bytes equal nsqd's.  The broker's
 * replies are read with cJSON; the client's IDENTIFY body, on the broker's
 * side, with json.c's Go-exact decoder (the comment before
 * nsq_identify_reply_parse says why).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "nsq/broker.h"

static void set_errstr(char *err, size_t errlen, const char *s)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", s);
}

/* ------------------------------------------------------------------------ */
/* Client side                                                              */
/* ------------------------------------------------------------------------ */

void nsq_identify_default(nsq_identify_t *id)
{
    if (!id)
        return;
    memset(id, 0, sizeof *id);
    id->feature_negotiation = true;
    id->heartbeat_interval = 30000;
    id->output_buffer_size = 16384;
    id->output_buffer_timeout = 250;
    id->deflate_level = 6;
}

nsq_err_t nsq_cmd_identify(nsq_buf_t *b, const nsq_identify_t *id)
{
    if (!b || !id)
        return NSQ_ERR_INVALID_ARG;
    const size_t start = b->len;
    nsq__json_writer_t w = {b, NSQ_OK, false};
    nsq__json_put_raw(&w, "IDENTIFY\n\0\0\0\0", 13);
    const size_t body = b->len;
    nsq__json_put_string(&w, "client_id", id->client_id);
    nsq__json_put_string(&w, "hostname", id->hostname);
    nsq__json_put_string(&w, "user_agent", id->user_agent);
    nsq__json_put_bool(&w, "feature_negotiation", id->feature_negotiation);
    nsq__json_put_int(&w, "heartbeat_interval", id->heartbeat_interval);
    nsq__json_put_int(&w, "output_buffer_size", id->output_buffer_size);
    nsq__json_put_int(&w, "output_buffer_timeout", id->output_buffer_timeout);
    nsq__json_put_int(&w, "msg_timeout", id->msg_timeout);
    nsq__json_put_int(&w, "sample_rate", id->sample_rate);
    nsq__json_put_bool(&w, "tls_v1", id->tls_v1);
    nsq__json_put_bool(&w, "deflate", id->deflate);
    nsq__json_put_int(&w, "deflate_level", id->deflate_level);
    nsq__json_put_bool(&w, "snappy", id->snappy);
    nsq_err_t err = nsq__json_end(&w);
    /* The size field is 32 bits; only absurd strings could pass it. */
    if (err == NSQ_OK && (uint64_t)(b->len - body) > UINT32_MAX)
        err = NSQ_ERR_INVALID_ARG;
    if (err != NSQ_OK) {
        b->len = start;
        return err;
    }
    uint32_t size = (uint32_t)(b->len - body);
    unsigned char *sz = (unsigned char *)b->data + body - 4;
    sz[0] = (unsigned char)(size >> 24);
    sz[1] = (unsigned char)(size >> 16);
    sz[2] = (unsigned char)(size >> 8);
    sz[3] = (unsigned char)size;
    return NSQ_OK;
}

/*
 * The broker's replies come from the network and are read with cJSON, the
 * project's JSON library.  The broker's side (nsq_identify_apply below)
 * keeps json.c's decoder, which follows Go's encoding/json to the byte:
 * the test broker must reject a client's IDENTIFY exactly where nsqd does,
 * with nsqd's texts (json.c says more).
 */

static bool json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses data as one JSON object, nothing after it but whitespace; NULL
 * with the reason in err. */
static cJSON *parse_object(const char *data, size_t len, char *err,
                           size_t errlen)
{
    if (len == 0) {
        set_errstr(err, errlen, "empty reply");
        return NULL;
    }
    /* A byte under 0x20 is JSON only as whitespace between tokens.  cJSON
     * would take one inside a string, and a NUL would cut it short. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c < 0x20 && !json_space(c)) {
            if (err && errlen)
                snprintf(err, errlen, "control byte 0x%02x at offset %zu", c,
                         i);
            return NULL;
        }
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(data, len, &end, false);
    size_t at = end ? (size_t)(end - data) : 0;
    if (!j) {
        if (err && errlen)
            snprintf(err, errlen, "malformed JSON at offset %zu", at);
        return NULL;
    }
    while (at < len && json_space((unsigned char)data[at]))
        at++;
    const char *why = at < len             ? "bytes after the JSON object"
                      : !cJSON_IsObject(j) ? "not a JSON object"
                                           : NULL;
    if (why) {
        set_errstr(err, errlen, why);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* Keys match case-insensitively, as Go's encoding/json matches them; an
 * absent field or null leaves the zero value. */
static const cJSON *field(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static bool get_int(const cJSON *o, const char *name, int64_t *out, char *err,
                    size_t errlen)
{
    const cJSON *v = field(o, name);
    const char *why = NULL;
    *out = 0;
    if (!v)
        return true;
    /* cJSON keeps numbers as doubles, exact up to 2^53: every value nsqd
     * sends is far below. */
    if (!cJSON_IsNumber(v))
        why = "expected a number";
    else if (!(v->valuedouble >= -9007199254740992.0 &&
               v->valuedouble <= 9007199254740992.0))
        why = "number out of range";
    else if ((double)(int64_t)v->valuedouble != v->valuedouble)
        why = "not an integer";
    else
        *out = (int64_t)v->valuedouble;
    if (why && err && errlen)
        snprintf(err, errlen, "field %s: %s", name, why);
    return !why;
}

static bool get_bool(const cJSON *o, const char *name, bool *out, char *err,
                     size_t errlen)
{
    const cJSON *v = field(o, name);
    *out = v && cJSON_IsTrue(v);
    if (v && !cJSON_IsBool(v)) {
        if (err && errlen)
            snprintf(err, errlen, "field %s: expected true or false", name);
        return false;
    }
    return true;
}

/* Copies a string field into a fixed array, refusing to cut it. */
static bool get_string(const cJSON *o, const char *name, char *out, size_t cap,
                       char *err, size_t errlen)
{
    const cJSON *v = field(o, name);
    out[0] = '\0';
    if (!v)
        return true;
    const char *str = cJSON_GetStringValue(v);
    size_t n = str ? strlen(str) : 0;
    if (!str || n >= cap) {
        if (err && errlen && !str)
            snprintf(err, errlen, "field %s: expected a string", name);
        else if (err && errlen)
            snprintf(err, errlen, "field %s: string of %zu bytes too long",
                     name, n);
        return false;
    }
    memcpy(out, str, n + 1);
    return true;
}

nsq_err_t nsq_identify_reply_parse(const void *data, size_t len,
                                   nsq_identify_reply_t *out, char *errstr,
                                   size_t errlen)
{
    if (!out || (!data && len)) {
        set_errstr(errstr, errlen, "invalid argument");
        return NSQ_ERR_INVALID_ARG;
    }
    nsq_identify_reply_t r;
    memset(&r, 0, sizeof r);
    if (len == 2 && memcmp(data, "OK", 2) == 0) {
        *out = r;
        set_errstr(errstr, errlen, "");
        return NSQ_OK;
    }
    cJSON *j = parse_object(data, len, errstr, errlen);
    bool ok =
        j && get_int(j, "max_rdy_count", &r.max_rdy_count, errstr, errlen) &&
        get_string(j, "version", r.version, sizeof r.version, errstr, errlen) &&
        get_int(j, "max_msg_timeout", &r.max_msg_timeout, errstr, errlen) &&
        get_int(j, "msg_timeout", &r.msg_timeout, errstr, errlen) &&
        get_bool(j, "tls_v1", &r.tls_v1, errstr, errlen) &&
        get_bool(j, "deflate", &r.deflate, errstr, errlen) &&
        get_int(j, "deflate_level", &r.deflate_level, errstr, errlen) &&
        get_int(j, "max_deflate_level", &r.max_deflate_level, errstr, errlen) &&
        get_bool(j, "snappy", &r.snappy, errstr, errlen) &&
        get_int(j, "sample_rate", &r.sample_rate, errstr, errlen) &&
        get_bool(j, "auth_required", &r.auth_required, errstr, errlen) &&
        get_int(j, "output_buffer_size", &r.output_buffer_size, errstr,
                errlen) &&
        get_int(j, "output_buffer_timeout", &r.output_buffer_timeout, errstr,
                errlen);
    cJSON_Delete(j);
    if (!ok)
        return NSQ_ERR_BAD_JSON;
    r.negotiated = true;
    *out = r;
    set_errstr(errstr, errlen, "");
    return NSQ_OK;
}

nsq_err_t nsq_auth_reply_parse(const void *data, size_t len,
                               nsq_auth_reply_t *out, char *errstr,
                               size_t errlen)
{
    if (!out || (!data && len)) {
        set_errstr(errstr, errlen, "invalid argument");
        return NSQ_ERR_INVALID_ARG;
    }
    nsq_auth_reply_t r;
    cJSON *j = parse_object(data, len, errstr, errlen);
    bool ok =
        j &&
        get_string(j, "identity", r.identity, sizeof r.identity, errstr,
                   errlen) &&
        get_string(j, "identity_url", r.identity_url, sizeof r.identity_url,
                   errstr, errlen) &&
        get_int(j, "permission_count", &r.permission_count, errstr, errlen);
    cJSON_Delete(j);
    if (!ok)
        return NSQ_ERR_BAD_JSON;
    *out = r;
    set_errstr(errstr, errlen, "");
    return NSQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Server side                                                              */
/* ------------------------------------------------------------------------ */

void nsq_broker_info_default(nsq_broker_info_t *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    nsq_limits_default(&info->limits);
    info->version = "1.3.0";
    info->msg_timeout_ms = 60000;
    info->heartbeat_ms = 30000;
    info->output_buffer_size = 16384;
    info->output_timeout_ms = 250;
    info->tls_enabled = false;
    info->snappy_enabled = true;
    info->deflate_enabled = true;
    info->auth_enabled = false;
}

void nsq_identify_settings_init(nsq_identify_settings_t *s,
                                const nsq_broker_info_t *info)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!info)
        return;
    s->heartbeat_interval_ms = info->heartbeat_ms;
    s->output_buffer_size = info->output_buffer_size;
    s->output_buffer_timeout_ms = info->output_timeout_ms;
    s->msg_timeout_ms = info->msg_timeout_ms;
}

void nsq_identify_settings_free(nsq_identify_settings_t *s)
{
    if (!s)
        return;
    free(s->client_id);
    free(s->hostname);
    free(s->user_agent);
    s->client_id = s->hostname = s->user_agent = NULL;
}

#define INT64_FIELD(name)                                                      \
    {                                                                          \
        name, NSQ__JSON_INT, INT64_MIN, INT64_MAX                              \
    }

/* nsqd's identifyDataV2, field for field (Go's int is 64 bits there). */
enum {
    B_CLIENT_ID,
    B_HOSTNAME,
    B_HEARTBEAT_INTERVAL,
    B_OUTPUT_BUFFER_SIZE,
    B_OUTPUT_BUFFER_TIMEOUT,
    B_FEATURE_NEGOTIATION,
    B_TLS_V1,
    B_DEFLATE,
    B_DEFLATE_LEVEL,
    B_SNAPPY,
    B_SAMPLE_RATE,
    B_USER_AGENT,
    B_MSG_TIMEOUT,
    B_COUNT
};

static const nsq__json_field_t body_fields[B_COUNT] = {
    {"client_id", NSQ__JSON_STRING, 0, 0},
    {"hostname", NSQ__JSON_STRING, 0, 0},
    INT64_FIELD("heartbeat_interval"),
    INT64_FIELD("output_buffer_size"),
    INT64_FIELD("output_buffer_timeout"),
    {"feature_negotiation", NSQ__JSON_BOOL, 0, 0},
    {"tls_v1", NSQ__JSON_BOOL, 0, 0},
    {"deflate", NSQ__JSON_BOOL, 0, 0},
    INT64_FIELD("deflate_level"),
    {"snappy", NSQ__JSON_BOOL, 0, 0},
    {"sample_rate", NSQ__JSON_INT, INT32_MIN, INT32_MAX},
    {"user_agent", NSQ__JSON_STRING, 0, 0},
    INT64_FIELD("msg_timeout"),
};

/* A NUL-terminated copy of a string field ("" when absent).  A \u0000 in
 * the JSON ends the C string early; nsqd only stores these strings. */
static char *string_dup(const nsq__json_value_t *v)
{
    size_t n = v->set ? nsq__json_string_decode(v->str, v->str_len, NULL) : 0;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        nsq__json_string_decode(v->str, v->str_len, s);
    s[n] = '\0';
    return s;
}

/*
 * nsqd's range checks of clientV2.Identify, in its order, applied to n.
 * Returns NULL, or the name of the setting that nsqd refuses and the
 * offending value in *bad.
 */
static const char *check_ranges(const nsq__json_value_t *v,
                                const nsq_limits_t *lim,
                                nsq_identify_settings_t *n, int64_t *bad)
{
    int64_t hb = v[B_HEARTBEAT_INTERVAL].num;
    if (hb == -1)
        n->heartbeat_interval_ms = 0;
    else if (hb >= 1000 && hb <= lim->max_heartbeat_ms)
        n->heartbeat_interval_ms = hb;
    else if (hb != 0) {
        *bad = hb;
        return "heartbeat interval";
    }

    int64_t timeout = v[B_OUTPUT_BUFFER_TIMEOUT].num;
    if (timeout == -1)
        n->output_buffer_timeout_ms = 0;
    else if (timeout >= lim->min_output_timeout_ms &&
             timeout <= lim->max_output_timeout_ms && timeout != 0)
        n->output_buffer_timeout_ms = timeout;
    else if (timeout != 0) {
        *bad = timeout;
        return "output buffer timeout";
    }
    int64_t size = v[B_OUTPUT_BUFFER_SIZE].num;
    if (size == -1) {
        /* No buffering: every write goes straight to the socket. */
        n->output_buffer_size = 1;
        n->output_buffer_timeout_ms = 0;
    } else if (size >= 64 && size <= lim->max_output_size)
        n->output_buffer_size = size;
    else if (size != 0) {
        *bad = size;
        return "output buffer size";
    }

    int64_t rate = v[B_SAMPLE_RATE].num;
    if (rate < 0 || rate > 99) {
        *bad = rate;
        return "sample rate";
    }
    n->sample_rate = rate;

    int64_t mt = v[B_MSG_TIMEOUT].num;
    if (mt >= 1000 && mt <= lim->max_msg_timeout_ms)
        n->msg_timeout_ms = mt;
    else if (mt != 0) {
        *bad = mt;
        return "msg timeout";
    }
    return NULL;
}

/* Appends nsqd's JSON answer to a negotiated IDENTIFY. */
static nsq_err_t put_identify_reply(nsq_buf_t *b, const nsq_broker_info_t *info,
                                    const nsq_identify_settings_t *n, bool tls,
                                    bool deflate, int64_t level, bool snappy)
{
    nsq__json_writer_t w = {b, NSQ_OK, false};
    nsq__json_put_int(&w, "max_rdy_count", info->limits.max_rdy_count);
    nsq__json_put_string(&w, "version", info->version);
    nsq__json_put_int(&w, "max_msg_timeout", info->limits.max_msg_timeout_ms);
    nsq__json_put_int(&w, "msg_timeout", n->msg_timeout_ms);
    nsq__json_put_bool(&w, "tls_v1", tls);
    nsq__json_put_bool(&w, "deflate", deflate);
    nsq__json_put_int(&w, "deflate_level", level);
    nsq__json_put_int(&w, "max_deflate_level", info->limits.max_deflate_level);
    nsq__json_put_bool(&w, "snappy", snappy);
    nsq__json_put_int(&w, "sample_rate", n->sample_rate);
    nsq__json_put_bool(&w, "auth_required", info->auth_enabled);
    nsq__json_put_int(&w, "output_buffer_size", n->output_buffer_size);
    nsq__json_put_int(&w, "output_buffer_timeout", n->output_buffer_timeout_ms);
    return nsq__json_end(&w);
}

static nsq_err_t append_text(nsq_buf_t *b, const char *s)
{
    return nsq_buf_append(b, s, strlen(s));
}

nsq_err_t nsq_identify_apply(const void *body, size_t len,
                             const nsq_broker_info_t *info,
                             nsq_identify_settings_t *s, nsq_buf_t *reply)
{
    if (!info || !s || !reply || (!body && len))
        return NSQ_ERR_INVALID_ARG;
    const size_t start = reply->len;

    /* 1. Decode; nothing is applied when the body does not decode. */
    nsq__json_value_t v[B_COUNT];
    if (nsq__json_decode_object(body, len, body_fields, v, B_COUNT, true, NULL,
                                0) < 0) {
        if (append_text(reply,
                        "E_BAD_BODY IDENTIFY failed to decode JSON body") !=
            NSQ_OK) {
            reply->len = start;
            return NSQ_ERR_NOMEM;
        }
        return NSQ_E_BAD_BODY;
    }

    /*
     * The new settings are worked out in n and committed only once the
     * reply is written, so running out of memory changes nothing; a
     * protocol error commits what nsqd had set before its failing check.
     */
    nsq_identify_settings_t n = *s;
    n.client_id = string_dup(&v[B_CLIENT_ID]);
    n.hostname = string_dup(&v[B_HOSTNAME]);
    n.user_agent = string_dup(&v[B_USER_AGENT]);
    nsq_err_t err = NSQ_OK, result = NSQ_OK;
    if (!n.client_id || !n.hostname || !n.user_agent)
        err = NSQ_ERR_NOMEM;

    /* 2-6. Range checks. */
    int64_t bad = 0;
    const char *what =
        err == NSQ_OK ? check_ranges(v, &info->limits, &n, &bad) : NULL;
    if (err == NSQ_OK && what) {
        char text[128];
        snprintf(text, sizeof text,
                 "E_BAD_BODY IDENTIFY %s (%" PRId64 ") is invalid", what, bad);
        err = append_text(reply, text);
        result = NSQ_E_BAD_BODY;
    } else if (err == NSQ_OK) {
        /* 7. Without negotiation the answer is a plain OK. */
        n.feature_negotiation = v[B_FEATURE_NEGOTIATION].flag;
        bool tls = false, deflate = false, snappy = false;
        int64_t level = 0;
        if (!n.feature_negotiation) {
            err = append_text(reply, "OK");
        } else {
            /* 8. What the broker grants. */
            tls = info->tls_enabled && v[B_TLS_V1].flag;
            deflate = info->deflate_enabled && v[B_DEFLATE].flag;
            level = 6;
            if (deflate && v[B_DEFLATE_LEVEL].num > 0)
                level = v[B_DEFLATE_LEVEL].num;
            if (info->limits.max_deflate_level < level)
                level = info->limits.max_deflate_level;
            snappy = info->snappy_enabled && v[B_SNAPPY].flag;
            if (deflate && snappy) {
                err = append_text(reply, "E_IDENTIFY_FAILED cannot enable both "
                                         "deflate and snappy compression");
                result = NSQ_E_IDENTIFY_FAILED;
            } else {
                /* 9. nsqd's JSON answer. */
                err = put_identify_reply(reply, info, &n, tls, deflate, level,
                                         snappy);
            }
        }
        /* The upgrades this IDENTIFY asks of the connection. */
        if (result == NSQ_OK) {
            n.tls_v1 = tls;
            n.deflate = deflate;
            n.snappy = snappy;
            n.deflate_level = deflate ? level : 0;
        }
    }

    if (err != NSQ_OK) {
        reply->len = start;
        free(n.client_id);
        free(n.hostname);
        free(n.user_agent);
        return err;
    }
    nsq_identify_settings_free(s);
    *s = n;
    return result;
}
