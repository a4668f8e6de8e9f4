/*
 * The producer's configuration: string keys and values, the librdkafka way.
 * One list of properties drives set, get, dup, destroy and the
 * documentation, so a key cannot be settable but undocumented, and its
 * default is parsed by the same code as a user's value.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "conf_parse.h"

/* Strings go into IDENTIFY; nsqd has no limit, but a host name is at most
 * 255 bytes and nothing here needs to be longer. */
#define CONF_MAX_STRING 255

enum conf_type { CONF_DURATION, CONF_BOOL, CONF_INT, CONF_STRING };

/* The documented type names, as literals for the static tables. */
#define CONF_TNAME_DURATION "duration"
#define CONF_TNAME_BOOL "bool"
#define CONF_TNAME_INT "int"
#define CONF_TNAME_STRING "string"

/* What a key accepts besides min..max, or where its default comes from. */
enum conf_extra {
    CONF_X_NONE,
    CONF_X_OFF,         /* -1 disables */
    CONF_X_ZERO,        /* 0 means "the broker's default" */
    CONF_X_HOST,        /* default: gethostname() */
    CONF_X_SHORT_HOST,  /* default: gethostname() up to the first '.' */
    CONF_X_TLS_VERSION, /* one of tls1.0, tls1.1, tls1.2, tls1.3 */
    CONF_X_SECRET,      /* never printed: get shows whether it is set */
    CONF_X_STRATEGY,    /* one of round_robin, failover, least_outstanding */
};

#define CONF_MS_S 1000LL
#define CONF_MS_M (60 * CONF_MS_S)
#define CONF_MS_H (60 * CONF_MS_M)

/*
 * Every key, in documentation order:
 * X(name, type, field, min, max, extra, default, range, summary).
 * Durations are in milliseconds; for strings min..max bounds the length.
 * The range text must say what min, max and extra say (the tests check it).
 */
#define CONF_PROPS(X)                                                          \
    X(dial_timeout, DURATION, dial_timeout_ms, 10, 5 * CONF_MS_M, NONE, "1s",  \
      "10ms..5m", "time allowed to connect to nsqd (TCP connect)")             \
    X(read_timeout, DURATION, read_timeout_ms, 100, 5 * CONF_MS_M, NONE, "1m", \
      "100ms..5m",                                                             \
      "time to wait for an answer from nsqd while commands are outstanding")   \
    X(write_timeout, DURATION, write_timeout_ms, 100, 5 * CONF_MS_M, NONE,     \
      "1s", "100ms..5m", "time allowed for one write to nsqd to complete")     \
    X(heartbeat_interval, DURATION, heartbeat_interval_ms, CONF_MS_S,          \
      5 * CONF_MS_M, OFF, "30s", "-1 or 1s..5m",                               \
      "interval of nsqd's heartbeats, sent in IDENTIFY; -1 disables them")     \
    X(client_id, STRING, client_id, 0, CONF_MAX_STRING, SHORT_HOST,            \
      "(short host name)", "", "client identifier sent in IDENTIFY")           \
    X(hostname, STRING, hostname, 0, CONF_MAX_STRING, HOST, "(host name)", "", \
      "host name sent in IDENTIFY")                                            \
    X(user_agent, STRING, user_agent, 0, CONF_MAX_STRING, NONE,                \
      "nsqpub/0.1.0", "", "user agent sent in IDENTIFY")                       \
    X(output_buffer_size, INT, output_buffer_size, 64, 1048576, OFF, "16384",  \
      "-1 or 64..1048576",                                                     \
      "bytes nsqd buffers before writing to this client, sent in IDENTIFY; "   \
      "-1 disables buffering")                                                 \
    X(output_buffer_timeout, DURATION, output_buffer_timeout_ms, 1,            \
      30 * CONF_MS_S, OFF, "250ms", "-1 or 1ms..30s",                          \
      "time nsqd buffers before writing to this client, sent in IDENTIFY; "    \
      "-1 disables buffering")                                                 \
    X(msg_timeout, DURATION, msg_timeout_ms, CONF_MS_S, 15 * CONF_MS_M, ZERO,  \
      "0s", "0 or 1s..15m",                                                    \
      "server-side message timeout sent in IDENTIFY; 0 keeps nsqd's")          \
    X(sample_rate, INT, sample_rate, 0, 99, NONE, "0", "0..99",                \
      "percent of messages nsqd delivers to this client, sent in IDENTIFY; "   \
      "0 means all")                                                           \
    X(max_msg_size, INT, max_msg_size, 1, INT32_MAX, NONE, "1048576",          \
      "1..2147483647",                                                         \
      "largest message accepted by a publish, in bytes (nsqd's "               \
      "--max-msg-size)")                                                       \
    X(max_body_size, INT, max_body_size, 5, INT32_MAX, NONE, "5242880",        \
      "5..2147483647",                                                         \
      "largest command body (a whole MPUB) accepted, in bytes (nsqd's "        \
      "--max-body-size)")                                                      \
    X(max_unacked, INT, max_unacked, 1, 1000000, NONE, "10000", "1..1000000",  \
      "commands written to nsqd and not yet answered, at most")                \
    X(queue_max_messages, INT, queue_max_messages, 1, 100000000, NONE,         \
      "100000", "1..100000000",                                                \
      "messages accepted and not yet written to nsqd, at most")                \
    X(queue_full_timeout, DURATION, queue_full_timeout_ms, 0, CONF_MS_H, NONE, \
      "0s", "0..1h",                                                           \
      "time a publish waits for room in a full queue; 0 fails at once")        \
    X(linger, DURATION, linger_ms, 0, CONF_MS_M, NONE, "0s", "0..1m",          \
      "time a PUB waits for more PUBs to the same topic to go with it in "     \
      "one MPUB; 0 coalesces only what is already waiting")                    \
    X(batch_max_messages, INT, batch_max_messages, 1, 1000000, NONE, "1000",   \
      "1..1000000",                                                            \
      "PUBs to one topic coalesced into one MPUB, at most; 1 turns "           \
      "coalescing off")                                                        \
    X(batch_max_bytes, INT, batch_max_bytes, 5, INT32_MAX, NONE, "1048576",    \
      "5..2147483647",                                                         \
      "body of a coalesced MPUB, in bytes, at most (never past "               \
      "max_body_size)")                                                        \
    X(publish_timeout, DURATION, publish_timeout_ms, 1, CONF_MS_H, NONE,       \
      "10s", "1ms..1h", "time from a publish call to its result, at most")     \
    X(stop_timeout, DURATION, stop_timeout_ms, 0, CONF_MS_H, NONE, "5s",       \
      "0..1h", "time stop waits for nsqd to acknowledge what was written")     \
    X(reconnect_backoff, DURATION, reconnect_backoff_ms, 1, CONF_MS_M, NONE,   \
      "100ms", "1ms..1m",                                                      \
      "delay before the first reconnect; doubled after each failure")          \
    X(max_reconnect_backoff, DURATION, max_reconnect_backoff_ms, 1,            \
      10 * CONF_MS_M, NONE, "10s", "1ms..10m",                                 \
      "longest delay between reconnects")                                      \
    X(strategy, STRING, strategy, 0, 32, STRATEGY, "round_robin",              \
      "round_robin, failover or least_outstanding",                            \
      "with several nsqd: which node a publish goes to (in turn; the first "   \
      "healthy one in order; the one with the fewest unanswered commands)")    \
    X(failback_after, DURATION, failback_after_ms, 0, CONF_MS_H, NONE, "5m",   \
      "0..1h",                                                                 \
      "failover: time after its last failure before an earlier node is "       \
      "preferred again")                                                       \
    X(retry_not_sent, BOOL, retry_not_sent, 0, 0, NONE, "true", "",            \
      "with several nsqd: send a publish that one nsqd never processed to "    \
      "another")                                                               \
    X(retry_in_doubt, BOOL, retry_in_doubt, 0, 0, NONE, "false", "",           \
      "with several nsqd: send a publish whose nsqd died after it was "        \
      "written to another (at least once: duplicates possible)")               \
    X(replicas, INT, replicas, 1, 16, NONE, "1", "1..16",                      \
      "with several nsqd: nodes each message is published to; OK only when "   \
      "all of them acknowledged it")                                           \
    X(max_attempts, INT, max_attempts, 1, 100, NONE, "3", "1..100",            \
      "nodes a publish is sent to, at most (retry_not_sent)")                  \
    X(tls_v1, BOOL, tls_v1, 0, 0, NONE, "false", "",                           \
      "ask nsqd for TLS after IDENTIFY; never continues without it")           \
    X(tls_root_ca_file, STRING, tls_root_ca_file, 0, 4096, NONE, "", "",       \
      "PEM file of CA certificates to verify nsqd with; empty: the system's")  \
    X(tls_insecure_skip_verify, BOOL, tls_insecure_skip_verify, 0, 0, NONE,    \
      "false", "", "accept any certificate and host name (testing only)")      \
    X(tls_cert, STRING, tls_cert, 0, 4096, NONE, "", "",                       \
      "PEM file of the client certificate, for nsqd's "                        \
      "--tls-client-auth-policy")                                              \
    X(tls_key, STRING, tls_key, 0, 4096, NONE, "", "",                         \
      "PEM file of the client certificate's private key")                      \
    X(tls_min_version, STRING, tls_min_version, 0, 16, TLS_VERSION, "tls1.2",  \
      "tls1.0..tls1.3", "oldest TLS version accepted")                         \
    X(tls_server_name, STRING, tls_server_name, 0, 255, NONE, "", "",          \
      "name to verify nsqd's certificate against and send as SNI; empty: the " \
      "host of the address")                                                   \
    X(snappy, BOOL, snappy, 0, 0, NONE, "false", "",                           \
      "ask nsqd for snappy compression after IDENTIFY")                        \
    X(deflate, BOOL, deflate, 0, 0, NONE, "false", "",                         \
      "ask nsqd for deflate compression after IDENTIFY")                       \
    X(deflate_level, INT, deflate_level, 1, 9, NONE, "6", "1..9",              \
      "deflate compression level (nsqd caps it at --max-deflate-level)")       \
    X(auth_secret, STRING, auth_secret, 0, 65536, SECRET, "", "",              \
      "secret sent with AUTH when nsqd requires it; never logged")             \
    X(lookupd_http_addresses, STRING, lookupd_http_addresses, 0, 4096, NONE,   \
      "", "",                                                                  \
      "nsqlookupd HTTP addresses, comma-separated host:port, http:// or "      \
      "https:// optional; the producer publishes to the nsqd their "           \
      "GET /nodes lists, and to any address given")                            \
    X(lookupd_poll_interval, DURATION, lookupd_poll_interval_ms, 10,           \
      5 * CONF_MS_M, NONE, "1m", "10ms..5m",                                   \
      "time between two queries of the nsqlookupd")                            \
    X(lookupd_poll_jitter, INT, lookupd_poll_jitter, 0, 100, NONE, "30",       \
      "0..100",                                                                \
      "percent of lookupd_poll_interval added at random to each wait (go-nsq " \
      "0.3 is 30)")

/* How set and get treat a key; the same index as conf_props. */
struct conf_key {
    enum conf_type type;
    enum conf_extra extra;
    size_t offset;
    int64_t min, max;
};

static const struct conf_key conf_keys[] = {
#define CONF_KEY(name, type, field, min, max, extra, def, range, summary)      \
    {CONF_##type, CONF_X_##extra, offsetof(struct nsq_conf, field), (min),     \
     (max)},
    CONF_PROPS(CONF_KEY)
#undef CONF_KEY
};

static const nsq_conf_prop_t conf_props[] = {
#define CONF_PROP(name, type, field, min, max, extra, def, range, summary)     \
    {#name, CONF_TNAME_##type, def, range, summary},
    CONF_PROPS(CONF_PROP)
#undef CONF_PROP
};

#define CONF_COUNT (sizeof conf_keys / sizeof conf_keys[0])

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

nsq__conf_parse_t nsq__conf_parse_bool(const char *s, bool *out)
{
    static const struct {
        const char *word;
        bool value;
    } words[] = {{"true", true}, {"false", false}, {"1", true},
                 {"0", false},   {"yes", true},    {"no", false}};
    if (!s)
        return NSQ__CONF_PARSE_SYNTAX;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(s, words[i].word) == 0) {
            *out = words[i].value;
            return NSQ__CONF_PARSE_OK;
        }
    }
    return NSQ__CONF_PARSE_SYNTAX;
}

nsq__conf_parse_t nsq__conf_parse_int(const char *s, int64_t *out)
{
    if (!s)
        return NSQ__CONF_PARSE_SYNTAX;
    bool neg = false;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (!*s)
        return NSQ__CONF_PARSE_SYNTAX;
    /* Accumulate unsigned so that INT64_MIN is reachable; keep reading
     * digits past an overflow so that junk still counts as a syntax error. */
    const uint64_t limit = (uint64_t)INT64_MAX + (neg ? 1 : 0);
    uint64_t v = 0;
    bool over = false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return NSQ__CONF_PARSE_SYNTAX;
        unsigned d = (unsigned)(*s - '0');
        if (v > (limit - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (over)
        return NSQ__CONF_PARSE_RANGE;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return NSQ__CONF_PARSE_OK;
}

nsq__conf_parse_t nsq__conf_parse_ms(const char *s, int64_t *out_ms)
{
    if (!s)
        return NSQ__CONF_PARSE_SYNTAX;
    /* A bare integer is milliseconds, as the keys are stored. */
    int64_t v;
    nsq__conf_parse_t r = nsq__conf_parse_int(s, &v);
    if (r != NSQ__CONF_PARSE_SYNTAX) {
        if (r == NSQ__CONF_PARSE_OK)
            *out_ms = v;
        return r;
    }
    int64_t ns;
    if (nsq_duration_parse(s, &ns) != NSQ_OK)
        return NSQ__CONF_PARSE_SYNTAX;
    if (ns % 1000000 != 0)
        return NSQ__CONF_PARSE_SUBMS;
    *out_ms = ns / 1000000;
    return NSQ__CONF_PARSE_OK;
}

int nsq__conf_format_ms(int64_t ms, char *dst, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    if (ms == 0)
        return snprintf(dst, len, "0s");
    /* Unsigned, so that the magnitude of INT64_MIN fits. */
    uint64_t u = ms < 0 ? 0 - (uint64_t)ms : (uint64_t)ms;
    char tmp[64];
    size_t n = 0;
    if (ms < 0)
        tmp[n++] = '-';
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        uint64_t q = u / units[i].ms;
        u %= units[i].ms;
        if (q == 0)
            continue;
        int w = snprintf(tmp + n, sizeof tmp - n, "%llu%s",
                         (unsigned long long)q, units[i].unit);
        n += (size_t)w;
    }
    return snprintf(dst, len, "%s", tmp);
}

/* ------------------------------------------------------------------------ */
/* Set and get                                                              */
/* ------------------------------------------------------------------------ */

__attribute__((__format__(__printf__, 3, 4))) static nsq_err_t
conf_fail(char *errstr, size_t errlen, const char *fmt, ...)
{
    if (errstr && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errlen, fmt, ap);
        va_end(ap);
    }
    return NSQ_ERR_CONF;
}

/* The index of key, matched exactly but with '-' accepted for '_'. */
static int conf_find(const char *key)
{
    for (size_t i = 0; i < CONF_COUNT; i++) {
        const char *a = conf_props[i].name, *b = key;
        while (*a && (*b == *a || (*b == '-' && *a == '_'))) {
            a++;
            b++;
        }
        if (!*a && !*b)
            return (int)i;
    }
    return -1;
}

static bool conf_in_range(const struct conf_key *k, int64_t v)
{
    if (k->extra == CONF_X_OFF && v == -1)
        return true;
    if (k->extra == CONF_X_ZERO && v == 0)
        return true;
    return v >= k->min && v <= k->max;
}

static nsq_err_t conf_set_index(nsq_conf_t *conf, size_t i, const char *value,
                                char *errstr, size_t errlen)
{
    const struct conf_key *k = &conf_keys[i];
    const char *name = conf_props[i].name;
    void *field = (char *)conf + k->offset;
    int64_t v = 0;
    nsq__conf_parse_t r = NSQ__CONF_PARSE_OK;

    switch (k->type) {
    case CONF_DURATION:
        r = nsq__conf_parse_ms(value, &v);
        if (r == NSQ__CONF_PARSE_SYNTAX)
            return conf_fail(errstr, errlen,
                             "%s: \"%s\" is not a duration (e.g. 250ms, 2s)",
                             name, value);
        if (r == NSQ__CONF_PARSE_SUBMS)
            return conf_fail(errstr, errlen,
                             "%s: \"%s\" is not a whole number of "
                             "milliseconds (the resolution is 1ms)",
                             name, value);
        break;
    case CONF_INT:
        r = nsq__conf_parse_int(value, &v);
        if (r == NSQ__CONF_PARSE_SYNTAX)
            return conf_fail(errstr, errlen,
                             "%s: \"%s\" is not a decimal integer", name,
                             value);
        break;
    case CONF_BOOL: {
        bool b;
        if (nsq__conf_parse_bool(value, &b) != NSQ__CONF_PARSE_OK)
            return conf_fail(errstr, errlen,
                             "%s: \"%s\" is not a boolean (true or false)",
                             name, value);
        *(bool *)field = b;
        return NSQ_OK;
    }
    case CONF_STRING: {
        size_t len = strlen(value);
        if (k->extra == CONF_X_STRATEGY && strcmp(value, "round_robin") != 0 &&
            strcmp(value, "failover") != 0 &&
            strcmp(value, "least_outstanding") != 0)
            return conf_fail(errstr, errlen,
                             "%s: \"%.32s\" is not one of round_robin, "
                             "failover, least_outstanding",
                             name, value);
        if (k->extra == CONF_X_TLS_VERSION && strcmp(value, "tls1.0") != 0 &&
            strcmp(value, "tls1.1") != 0 && strcmp(value, "tls1.2") != 0 &&
            strcmp(value, "tls1.3") != 0)
            return conf_fail(errstr, errlen,
                             "%s: \"%.32s\" is not one of tls1.0, tls1.1, "
                             "tls1.2, tls1.3",
                             name, value);
        if (len > (size_t)k->max)
            return conf_fail(errstr, errlen,
                             "%s: the value is %zu bytes long, at most %lld "
                             "are allowed",
                             name, len, (long long)k->max);
        char *copy = malloc(len + 1);
        if (!copy) {
            conf_fail(errstr, errlen, "%s: out of memory", name);
            return NSQ_ERR_NOMEM;
        }
        memcpy(copy, value, len + 1);
        free(*(char **)field);
        *(char **)field = copy;
        return NSQ_OK;
    }
    }
    /* Durations and integers: a value too big for int64 is out of range
     * too, and says so the same way. */
    if (r == NSQ__CONF_PARSE_RANGE || !conf_in_range(k, v))
        return conf_fail(errstr, errlen, "%s: \"%s\" is out of range %s", name,
                         value, conf_props[i].range);
    *(int64_t *)field = v;
    return NSQ_OK;
}

nsq_err_t nsq_conf_set(nsq_conf_t *conf, const char *key, const char *value,
                       char *errstr, size_t errlen)
{
    if (!conf || !key || !value) {
        conf_fail(errstr, errlen, "%s",
                  !conf  ? "no configuration object"
                  : !key ? "no configuration key"
                         : "no value");
        return NSQ_ERR_INVALID_ARG;
    }
    int i = conf_find(key);
    if (i < 0)
        return conf_fail(errstr, errlen, "unknown configuration key \"%s\"",
                         key);
    return conf_set_index(conf, (size_t)i, value, errstr, errlen);
}

nsq_err_t nsq_conf_get(const nsq_conf_t *conf, const char *key, char *dest,
                       size_t destlen)
{
    if (dest && destlen > 0)
        dest[0] = '\0';
    if (!conf || !key || !dest || destlen == 0)
        return NSQ_ERR_INVALID_ARG;
    int i = conf_find(key);
    if (i < 0)
        return NSQ_ERR_CONF;
    const struct conf_key *k = &conf_keys[i];
    const void *field = (const char *)conf + k->offset;
    int n = 0;
    switch (k->type) {
    case CONF_DURATION: {
        int64_t v = *(const int64_t *)field;
        /* The disable value prints as it is set, not as "-1ms". */
        if (k->extra == CONF_X_OFF && v == -1)
            n = snprintf(dest, destlen, "-1");
        else
            n = nsq__conf_format_ms(v, dest, destlen);
        break;
    }
    case CONF_INT:
        n = snprintf(dest, destlen, "%lld", (long long)*(const int64_t *)field);
        break;
    case CONF_BOOL:
        n = snprintf(dest, destlen, "%s",
                     *(const bool *)field ? "true" : "false");
        break;
    case CONF_STRING: {
        const char *s = *(char *const *)field;
        if (k->extra == CONF_X_SECRET && s && *s)
            s = "(set)"; /* a secret is never given back */
        n = snprintf(dest, destlen, "%s", s ? s : "");
        break;
    }
    }
    if (n < 0 || (size_t)n >= destlen) {
        dest[0] = '\0';
        return NSQ_ERR_INVALID_ARG;
    }
    return NSQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */
/* ------------------------------------------------------------------------ */

void nsq_conf_destroy(nsq_conf_t *conf)
{
    if (!conf)
        return;
    for (size_t i = 0; i < CONF_COUNT; i++)
        if (conf_keys[i].type == CONF_STRING)
            free(*(char **)((char *)conf + conf_keys[i].offset));
    free(conf);
}

nsq_conf_t *nsq_conf_new(void)
{
    nsq_conf_t *conf = calloc(1, sizeof *conf);
    if (!conf)
        return NULL;
    /* gethostname() may not terminate a truncated name; the last byte
     * stays NUL.  A failure leaves an empty name rather than no conf. */
    char host[CONF_MAX_STRING + 1] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    char short_host[sizeof host];
    memcpy(short_host, host, sizeof host);
    short_host[strcspn(short_host, ".")] = '\0';

    for (size_t i = 0; i < CONF_COUNT; i++) {
        const char *def = conf_props[i].def;
        if (conf_keys[i].extra == CONF_X_HOST)
            def = host;
        else if (conf_keys[i].extra == CONF_X_SHORT_HOST)
            def = short_host;
        /* The defaults are valid, so only memory can fail here. */
        if (conf_set_index(conf, i, def, NULL, 0) != NSQ_OK) {
            nsq_conf_destroy(conf);
            return NULL;
        }
    }
    conf->log_cb = NULL;
    conf->log_opaque = NULL;
    conf->log_level = NSQ_LOG_INFO;
    return conf;
}

nsq_conf_t *nsq_conf_dup(const nsq_conf_t *conf)
{
    if (!conf)
        return NULL;
    nsq_conf_t *copy = malloc(sizeof *copy);
    if (!copy)
        return NULL;
    *copy = *conf;
    /* First detach every string from the original, so that a failure half
     * way frees only the copy's own strings. */
    for (size_t i = 0; i < CONF_COUNT; i++)
        if (conf_keys[i].type == CONF_STRING)
            *(char **)((char *)copy + conf_keys[i].offset) = NULL;
    for (size_t i = 0; i < CONF_COUNT; i++) {
        if (conf_keys[i].type != CONF_STRING)
            continue;
        const char *s =
            *(char *const *)((const char *)conf + conf_keys[i].offset);
        if (conf_set_index(copy, i, s ? s : "", NULL, 0) != NSQ_OK) {
            nsq_conf_destroy(copy);
            return NULL;
        }
    }
    return copy;
}

void nsq_conf_set_log_cb(nsq_conf_t *conf, nsq_log_cb cb, void *opaque,
                         int max_level)
{
    if (!conf)
        return;
    if (max_level < 0)
        max_level = 0;
    if (max_level > NSQ_LOG_DEBUG)
        max_level = NSQ_LOG_DEBUG;
    conf->log_cb = cb;
    conf->log_opaque = opaque;
    conf->log_level = max_level;
}

const nsq_conf_prop_t *nsq_conf_props(size_t *count)
{
    if (count)
        *count = CONF_COUNT;
    return conf_props;
}

/* ------------------------------------------------------------------------ */
/* Relations between keys                                                   */
/* ------------------------------------------------------------------------ */

nsq_err_t nsq__conf_validate(const nsq_conf_t *conf, char *errstr,
                             size_t errlen)
{
    if (!conf) {
        conf_fail(errstr, errlen, "no configuration object");
        return NSQ_ERR_INVALID_ARG;
    }
    char a[32], b[32];
    /* On an idle connection heartbeats are all nsqd sends; if they came
     * less often than read_timeout, reads would time out on a healthy
     * connection. */
    if (conf->heartbeat_interval_ms != -1 &&
        conf->heartbeat_interval_ms >= conf->read_timeout_ms) {
        nsq__conf_format_ms(conf->heartbeat_interval_ms, a, sizeof a);
        nsq__conf_format_ms(conf->read_timeout_ms, b, sizeof b);
        return conf_fail(errstr, errlen,
                         "heartbeat_interval (%s) must be less than "
                         "read_timeout (%s)",
                         a, b);
    }
    /* A message must fit an MPUB of one: 4 bytes of count, 4 of size. */
    if (conf->max_msg_size > conf->max_body_size - 8)
        return conf_fail(errstr, errlen,
                         "max_msg_size (%lld) must be at most max_body_size "
                         "- 8 (%lld)",
                         (long long)conf->max_msg_size,
                         (long long)(conf->max_body_size - 8));
    if (conf->reconnect_backoff_ms > conf->max_reconnect_backoff_ms) {
        nsq__conf_format_ms(conf->reconnect_backoff_ms, a, sizeof a);
        nsq__conf_format_ms(conf->max_reconnect_backoff_ms, b, sizeof b);
        return conf_fail(errstr, errlen,
                         "reconnect_backoff (%s) must be at most "
                         "max_reconnect_backoff (%s)",
                         a, b);
    }
    if (conf->snappy && conf->deflate)
        return conf_fail(errstr, errlen,
                         "snappy and deflate cannot both be enabled (nsqd "
                         "refuses IDENTIFY with both)");
    bool cert = conf->tls_cert && *conf->tls_cert;
    bool key = conf->tls_key && *conf->tls_key;
    if (cert != key)
        return conf_fail(errstr, errlen,
                         "tls_cert and tls_key go together: set both or "
                         "neither");
    return NSQ_OK;
}
