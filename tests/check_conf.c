/* The producer's configuration: nsq_conf_* and its value parsers. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "conf_parse.h"
#include "nsq/producer.h"

/* Every key in documentation order, with its default as stored. */
static const struct {
    const char *name;
    const char *type;
    const char *def;
    size_t offset;
    int64_t def_value; /* for durations (ms) and integers */
} keys[] = {
    {"dial_timeout", "duration", "1s", offsetof(nsq_conf_t, dial_timeout_ms),
     1000},
    {"read_timeout", "duration", "1m", offsetof(nsq_conf_t, read_timeout_ms),
     60000},
    {"write_timeout", "duration", "1s", offsetof(nsq_conf_t, write_timeout_ms),
     1000},
    {"heartbeat_interval", "duration", "30s",
     offsetof(nsq_conf_t, heartbeat_interval_ms), 30000},
    {"client_id", "string", NULL, offsetof(nsq_conf_t, client_id), 0},
    {"hostname", "string", NULL, offsetof(nsq_conf_t, hostname), 0},
    {"user_agent", "string", "nsqpub/0.1.0", offsetof(nsq_conf_t, user_agent),
     0},
    {"output_buffer_size", "int", "16384",
     offsetof(nsq_conf_t, output_buffer_size), 16384},
    {"output_buffer_timeout", "duration", "250ms",
     offsetof(nsq_conf_t, output_buffer_timeout_ms), 250},
    {"msg_timeout", "duration", "0s", offsetof(nsq_conf_t, msg_timeout_ms), 0},
    {"sample_rate", "int", "0", offsetof(nsq_conf_t, sample_rate), 0},
    {"max_msg_size", "int", "1048576", offsetof(nsq_conf_t, max_msg_size),
     1048576},
    {"max_body_size", "int", "5242880", offsetof(nsq_conf_t, max_body_size),
     5242880},
    {"max_unacked", "int", "10000", offsetof(nsq_conf_t, max_unacked), 10000},
    {"queue_max_messages", "int", "100000",
     offsetof(nsq_conf_t, queue_max_messages), 100000},
    {"queue_full_timeout", "duration", "0s",
     offsetof(nsq_conf_t, queue_full_timeout_ms), 0},
    {"linger", "duration", "0s", offsetof(nsq_conf_t, linger_ms), 0},
    {"batch_max_messages", "int", "1000",
     offsetof(nsq_conf_t, batch_max_messages), 1000},
    {"batch_max_bytes", "int", "1048576", offsetof(nsq_conf_t, batch_max_bytes),
     1048576},
    {"publish_timeout", "duration", "10s",
     offsetof(nsq_conf_t, publish_timeout_ms), 10000},
    {"stop_timeout", "duration", "5s", offsetof(nsq_conf_t, stop_timeout_ms),
     5000},
    {"reconnect_backoff", "duration", "100ms",
     offsetof(nsq_conf_t, reconnect_backoff_ms), 100},
    {"max_reconnect_backoff", "duration", "10s",
     offsetof(nsq_conf_t, max_reconnect_backoff_ms), 10000},
    {"strategy", "string", "round_robin", offsetof(nsq_conf_t, strategy), 0},
    {"failback_after", "duration", "5m",
     offsetof(nsq_conf_t, failback_after_ms), 300000},
    {"retry_not_sent", "bool", "true", offsetof(nsq_conf_t, retry_not_sent), 1},
    {"retry_in_doubt", "bool", "false", offsetof(nsq_conf_t, retry_in_doubt),
     0},
    {"replicas", "int", "1", offsetof(nsq_conf_t, replicas), 1},
    {"max_attempts", "int", "3", offsetof(nsq_conf_t, max_attempts), 3},
    {"tls_v1", "bool", "false", offsetof(nsq_conf_t, tls_v1), 0},
    {"tls_root_ca_file", "string", "", offsetof(nsq_conf_t, tls_root_ca_file),
     0},
    {"tls_insecure_skip_verify", "bool", "false",
     offsetof(nsq_conf_t, tls_insecure_skip_verify), 0},
    {"tls_cert", "string", "", offsetof(nsq_conf_t, tls_cert), 0},
    {"tls_key", "string", "", offsetof(nsq_conf_t, tls_key), 0},
    {"tls_min_version", "string", "tls1.2",
     offsetof(nsq_conf_t, tls_min_version), 0},
    {"tls_server_name", "string", "", offsetof(nsq_conf_t, tls_server_name), 0},
    {"snappy", "bool", "false", offsetof(nsq_conf_t, snappy), 0},
    {"deflate", "bool", "false", offsetof(nsq_conf_t, deflate), 0},
    {"deflate_level", "int", "6", offsetof(nsq_conf_t, deflate_level), 6},
    {"auth_secret", "string", "", offsetof(nsq_conf_t, auth_secret), 0},
    {"lookupd_http_addresses", "string", "",
     offsetof(nsq_conf_t, lookupd_http_addresses), 0},
    {"lookupd_poll_interval", "duration", "1m",
     offsetof(nsq_conf_t, lookupd_poll_interval_ms), 60000},
    {"lookupd_poll_jitter", "int", "30",
     offsetof(nsq_conf_t, lookupd_poll_jitter), 30},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int64_t field_i64(const nsq_conf_t *c, size_t i)
{
    const char *f = (const char *)c + keys[i].offset;
    if (strcmp(keys[i].type, "bool") == 0)
        return *(const bool *)f ? 1 : 0;
    return *(const int64_t *)f;
}

static const char *get(const nsq_conf_t *c, const char *key)
{
    static char buf[512];
    memset(buf, 'X', sizeof buf);
    ck_assert_msg(nsq_conf_get(c, key, buf, sizeof buf) == NSQ_OK,
                  "get %s failed", key);
    return buf;
}

static void set_ok(nsq_conf_t *c, const char *key, const char *value)
{
    char err[256] = "untouched";
    nsq_err_t e = nsq_conf_set(c, key, value, err, sizeof err);
    ck_assert_msg(e == NSQ_OK, "set %s=\"%s\": %s (%s)", key, value,
                  nsq_err2name(e), err);
    ck_assert_str_eq(err, "untouched");
}

/* Sets key=value, expects "value" back from get. */
static void set_get(nsq_conf_t *c, const char *key, const char *value,
                    const char *expect)
{
    set_ok(c, key, value);
    ck_assert_str_eq(get(c, key), expect);
}

/* Expects NSQ_ERR_CONF with exactly msg (if not NULL) and no change. */
static void set_bad(nsq_conf_t *c, const char *key, const char *value,
                    const char *msg)
{
    nsq_conf_t before;
    memcpy(&before, c, sizeof before);
    char err[256] = "";
    ck_assert_int_eq(nsq_conf_set(c, key, value, err, sizeof err),
                     NSQ_ERR_CONF);
    ck_assert_msg(err[0] != '\0', "no reason for %s=\"%s\"", key, value);
    if (msg)
        ck_assert_str_eq(err, msg);
    ck_assert_msg(memcmp(&before, c, sizeof before) == 0,
                  "conf changed by bad %s=\"%s\"", key, value);
}

static void host_names(char *host, char *short_host, size_t len)
{
    memset(host, 0, len);
    ck_assert_int_eq(gethostname(host, len - 1), 0);
    strcpy(short_host, host);
    char *dot = strchr(short_host, '.');
    if (dot)
        *dot = '\0';
}

START_TEST(defaults)
{
    nsq_conf_t *c = nsq_conf_new();
    ck_assert_ptr_nonnull(c);
    char host[256], short_host[256];
    host_names(host, short_host, sizeof host);
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, "client_id") == 0)
            ck_assert_str_eq(get(c, keys[i].name), short_host);
        else if (strcmp(keys[i].name, "hostname") == 0)
            ck_assert_str_eq(get(c, keys[i].name), host);
        else
            ck_assert_str_eq(get(c, keys[i].name), keys[i].def);
        if (strcmp(keys[i].type, "string") != 0)
            ck_assert_int_eq(field_i64(c, i), keys[i].def_value);
    }
    ck_assert_str_eq(c->client_id, short_host);
    ck_assert_str_eq(c->hostname, host);
    ck_assert_str_eq(c->user_agent, "nsqpub/0.1.0");
    ck_assert_ptr_null(c->log_cb);
    ck_assert_ptr_null(c->log_opaque);
    ck_assert_int_eq(c->log_level, NSQ_LOG_INFO);
    ck_assert_int_eq(nsq__conf_validate(c, NULL, 0), NSQ_OK);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(props)
{
    size_t n = 0;
    const nsq_conf_prop_t *p = nsq_conf_props(&n);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(n, NKEYS);
    ck_assert_ptr_eq(nsq_conf_props(NULL), p);
    nsq_conf_t *c = nsq_conf_new();
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(p[i].name, keys[i].name);
        ck_assert_str_eq(p[i].type, keys[i].type);
        ck_assert_ptr_nonnull(p[i].range);
        ck_assert_msg(strlen(p[i].summary) > 10 && !strchr(p[i].summary, '\n'),
                      "summary of %s", p[i].name);
        if (keys[i].def) {
            /* The documented default is what a fresh conf prints, and
             * setting it again changes nothing. */
            ck_assert_str_eq(p[i].def, keys[i].def);
            ck_assert_str_eq(get(c, p[i].name), p[i].def);
            set_get(c, p[i].name, p[i].def, p[i].def);
        } else {
            /* The host-name defaults are documented in words. */
            ck_assert_msg(p[i].def[0] == '(', "def of %s", p[i].name);
            set_get(c, p[i].name, "h1", "h1");
        }
    }
    nsq_conf_destroy(c);
}
END_TEST

/* Every numeric key at and one past each end of its range. */
static const struct {
    const char *key;
    const char *min, *below, *max, *above;
    int64_t min_value, max_value;
} edges[] = {
    {"dial_timeout", "10ms", "9ms", "5m", "300001ms", 10, 300000},
    {"read_timeout", "100ms", "99ms", "5m", "300001", 100, 300000},
    {"write_timeout", "100ms", "99ms", "5m", "5m0.001s", 100, 300000},
    {"heartbeat_interval", "1s", "999ms", "5m", "300001ms", 1000, 300000},
    {"output_buffer_size", "64", "63", "1048576", "1048577", 64, 1048576},
    {"output_buffer_timeout", "1ms", "0", "30s", "30001ms", 1, 30000},
    {"msg_timeout", "1s", "999ms", "15m", "900001", 1000, 900000},
    {"sample_rate", "0", "-1", "99", "100", 0, 99},
    {"max_msg_size", "1", "0", "2147483647", "2147483648", 1, INT32_MAX},
    {"max_body_size", "5", "4", "2147483647", "2147483648", 5, INT32_MAX},
    {"max_unacked", "1", "0", "1000000", "1000001", 1, 1000000},
    {"queue_max_messages", "1", "0", "100000000", "100000001", 1, 100000000},
    {"queue_full_timeout", "0s", "-1ms", "1h", "3600001ms", 0, 3600000},
    {"linger", "0s", "-1ms", "1m", "60001ms", 0, 60000},
    {"batch_max_messages", "1", "0", "1000000", "1000001", 1, 1000000},
    {"batch_max_bytes", "5", "4", "2147483647", "2147483648", 5, INT32_MAX},
    {"publish_timeout", "1ms", "0", "1h", "1h0m0.001s", 1, 3600000},
    {"stop_timeout", "0s", "-1ms", "1h", "3600001", 0, 3600000},
    {"reconnect_backoff", "1ms", "0s", "1m", "60001ms", 1, 60000},
    {"max_reconnect_backoff", "1ms", "0ms", "10m", "600001ms", 1, 600000},
    {"failback_after", "0s", "-1ms", "1h", "3600001ms", 0, 3600000},
    {"replicas", "1", "0", "16", "17", 1, 16},
    {"max_attempts", "1", "0", "100", "101", 1, 100},
    {"lookupd_poll_interval", "10ms", "9ms", "5m", "300001ms", 10, 300000},
    {"lookupd_poll_jitter", "0", "-1", "100", "101", 0, 100},
};
#define NEDGES (sizeof edges / sizeof edges[0])

static size_t key_index(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return i;
    ck_abort_msg("no key %s", name);
    return 0;
}

START_TEST(range_edges)
{
    nsq_conf_t *c = nsq_conf_new();
    char msg[256];
    for (size_t i = 0; i < NEDGES; i++) {
        size_t k = key_index(edges[i].key);
        const char *range = nsq_conf_props(NULL)[k].range;
        set_get(c, edges[i].key, edges[i].min, edges[i].min);
        ck_assert_int_eq(field_i64(c, k), edges[i].min_value);
        snprintf(msg, sizeof msg, "%s: \"%s\" is out of range %s", edges[i].key,
                 edges[i].below, range);
        set_bad(c, edges[i].key, edges[i].below, msg);
        set_get(c, edges[i].key, edges[i].max, edges[i].max);
        ck_assert_int_eq(field_i64(c, k), edges[i].max_value);
        snprintf(msg, sizeof msg, "%s: \"%s\" is out of range %s", edges[i].key,
                 edges[i].above, range);
        set_bad(c, edges[i].key, edges[i].above, msg);
    }
    nsq_conf_destroy(c);
}
END_TEST

/* The documented range says what set enforces: "A..B", optionally after
 * "-1 or " or "0 or ". */
START_TEST(range_text)
{
    size_t n;
    const nsq_conf_prop_t *p = nsq_conf_props(&n);
    nsq_conf_t *c = nsq_conf_new();
    size_t numeric = 0;
    for (size_t i = 0; i < n; i++) {
        bool dur = strcmp(p[i].type, "duration") == 0;
        if (!dur && strcmp(p[i].type, "int") != 0) {
            const char *want = "";
            if (strcmp(p[i].name, "tls_min_version") == 0)
                want = "tls1.0..tls1.3";
            else if (strcmp(p[i].name, "strategy") == 0)
                want = "round_robin, failover or least_outstanding";
            ck_assert_str_eq(p[i].range, want);
            continue;
        }
        numeric++;
        const char *r = p[i].range;
        bool has_extra = true;
        int64_t extra = 0;
        if (strncmp(r, "-1 or ", 6) == 0) {
            extra = -1;
            r += 6;
        } else if (strncmp(r, "0 or ", 5) == 0) {
            extra = 0;
            r += 5;
        } else {
            has_extra = false;
        }
        const char *dots = strstr(r, "..");
        ck_assert_ptr_nonnull(dots);
        char lo_s[32], hi_s[32];
        snprintf(lo_s, sizeof lo_s, "%.*s", (int)(dots - r), r);
        snprintf(hi_s, sizeof hi_s, "%s", dots + 2);
        int64_t lo, hi;
        if (dur) {
            ck_assert_int_eq(nsq__conf_parse_ms(lo_s, &lo), 0);
            ck_assert_int_eq(nsq__conf_parse_ms(hi_s, &hi), 0);
        } else {
            ck_assert_int_eq(nsq__conf_parse_int(lo_s, &lo), 0);
            ck_assert_int_eq(nsq__conf_parse_int(hi_s, &hi), 0);
        }
        /* Bare integers are milliseconds for durations, so the same
         * numbers work for both types. */
        char v[32];
        snprintf(v, sizeof v, "%lld", (long long)lo);
        set_ok(c, p[i].name, v);
        ck_assert_int_eq(field_i64(c, key_index(p[i].name)), lo);
        snprintf(v, sizeof v, "%lld", (long long)hi);
        set_ok(c, p[i].name, v);
        ck_assert_int_eq(field_i64(c, key_index(p[i].name)), hi);
        snprintf(v, sizeof v, "%lld", (long long)hi + 1);
        set_bad(c, p[i].name, v, NULL);
        if (!has_extra || lo - 1 != extra) {
            snprintf(v, sizeof v, "%lld", (long long)lo - 1);
            set_bad(c, p[i].name, v, NULL);
        }
        if (has_extra) {
            snprintf(v, sizeof v, "%lld", (long long)extra);
            set_ok(c, p[i].name, v);
            ck_assert_int_eq(field_i64(c, key_index(p[i].name)), extra);
        }
        /* -1 is refused unless the range text allows it. */
        if (!(has_extra && extra == -1) && lo > -1)
            set_bad(c, p[i].name, "-1", NULL);
    }
    /* Every duration and int key has its range checked: all but the 11
     * string and the 6 boolean keys. */
    ck_assert_uint_eq(numeric, NKEYS - 17);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(dash_alias)
{
    nsq_conf_t *c = nsq_conf_new();
    set_get(c, "dial-timeout", "2s", "2s");
    ck_assert_str_eq(get(c, "dial_timeout"), "2s");
    ck_assert_str_eq(get(c, "dial-timeout"), "2s");
    set_get(c, "client-id", "abc", "abc");
    ck_assert_str_eq(c->client_id, "abc");
    set_get(c, "max-reconnect_backoff", "20s", "20s");
    ck_assert_int_eq(c->max_reconnect_backoff_ms, 20000);
    /* Every key, with all its '_' as '-'. */
    size_t n;
    const nsq_conf_prop_t *p = nsq_conf_props(&n);
    for (size_t i = 0; i < n; i++) {
        char k[64];
        snprintf(k, sizeof k, "%s", p[i].name);
        for (char *s = k; *s; s++)
            if (*s == '_')
                *s = '-';
        char want[512];
        snprintf(want, sizeof want, "%s", get(c, p[i].name));
        set_get(c, k, want, want);
    }
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(unknown_keys)
{
    nsq_conf_t *c = nsq_conf_new();
    static const char *const bad[] = {
        "nope",          "",
        "dial",          "dial_timeou",
        "dial_timeoutx", "dial_timeout_ms",
        "DIAL_TIMEOUT",  "Dial_timeout",
        "dial__timeout", "dial timeout",
        " dial_timeout", "dial_timeout ",
        "dial.timeout",  "dial_timeout=1s",
        "log_level",     "tls",
    };
    char msg[128], dest[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(msg, sizeof msg, "unknown configuration key \"%s\"", bad[i]);
        set_bad(c, bad[i], "1s", msg);
        memset(dest, 'X', sizeof dest);
        ck_assert_int_eq(nsq_conf_get(c, bad[i], dest, sizeof dest),
                         NSQ_ERR_CONF);
        ck_assert_str_eq(dest, "");
    }
    /* The '-' alias goes one way only: '_' never stands for '-'. */
    set_bad(c, "dial-timeout-", "1s",
            "unknown configuration key \"dial-timeout-\"");
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(disable_values)
{
    nsq_conf_t *c = nsq_conf_new();
    static const char *const off[] = {"-1", "-1ms", "-0.001s", "-1000us"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        set_ok(c, "heartbeat_interval", "5s");
        set_get(c, "heartbeat_interval", off[i], "-1");
        ck_assert_int_eq(c->heartbeat_interval_ms, -1);
        set_ok(c, "output_buffer_timeout", "5s");
        set_get(c, "output_buffer_timeout", off[i], "-1");
        ck_assert_int_eq(c->output_buffer_timeout_ms, -1);
    }
    set_get(c, "output_buffer_size", "-1", "-1");
    ck_assert_int_eq(c->output_buffer_size, -1);
    set_get(c, "output_buffer_size", "+64", "64");
    /* Only -1 disables; other negative values are out of range. */
    set_bad(c, "heartbeat_interval", "-2",
            "heartbeat_interval: \"-2\" is out of range -1 or 1s..5m");
    set_bad(c, "heartbeat_interval", "-1s", NULL);
    set_bad(c, "heartbeat_interval", "0", NULL);
    set_bad(c, "output_buffer_timeout", "-2ms", NULL);
    set_bad(c, "output_buffer_timeout", "0s", NULL);
    set_bad(c, "output_buffer_size", "-2",
            "output_buffer_size: \"-2\" is out of range -1 or 64..1048576");
    set_bad(c, "output_buffer_size", "0", NULL);
    set_bad(c, "output_buffer_size", "-1ms",
            "output_buffer_size: \"-1ms\" is not a decimal integer");
    /* msg_timeout takes 0 (nsqd's default) besides 1s..15m. */
    set_ok(c, "msg_timeout", "1m");
    set_get(c, "msg_timeout", "0", "0s");
    ck_assert_int_eq(c->msg_timeout_ms, 0);
    set_get(c, "msg_timeout", "0ms", "0s");
    set_bad(c, "msg_timeout", "1ms", NULL);
    set_bad(c, "msg_timeout", "-1", NULL);
    /* Keys without a disable value refuse -1. */
    set_bad(c, "dial_timeout", "-1",
            "dial_timeout: \"-1\" is out of range 10ms..5m");
    set_bad(c, "max_unacked", "-1",
            "max_unacked: \"-1\" is out of range 1..1000000");
    set_bad(c, "stop_timeout", "-1ms", NULL);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(durations)
{
    nsq_conf_t *c = nsq_conf_new();
    static const struct {
        const char *in, *out;
        int64_t ms;
    } ok[] = {
        {"250", "250ms", 250},
        {"+250", "250ms", 250},
        {"0250", "250ms", 250},
        {"1500", "1s500ms", 1500},
        {"1.5s", "1s500ms", 1500},
        {"90s", "1m30s", 90000},
        {"90000", "1m30s", 90000},
        {"1m30s", "1m30s", 90000},
        {"60s", "1m", 60000},
        {"1h", "1h", 3600000},
        {"60m", "1h", 3600000},
        {"3600000", "1h", 3600000},
        {"1000000us", "1s", 1000},
        {"2000000000ns", "2s", 2000},
        {"1s500ms", "1s500ms", 1500},
        {"0", "0s", 0},
        {"-0", "0s", 0},
        {"0s", "0s", 0},
        {"0us", "0s", 0},
        {"0.000s", "0s", 0},
        {"59m59.999s", "59m59s999ms", 3599999},
        {"3599999", "59m59s999ms", 3599999},
    };
    /* stop_timeout takes 0..1h. */
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        set_get(c, "stop_timeout", ok[i].in, ok[i].out);
        ck_assert_int_eq(c->stop_timeout_ms, ok[i].ms);
    }

    static const char *const not_dur[] = {
        "",   "abc",   " 1s", "1s ", "1 s", "10x",  "1e3", "0x10",  "1S", "s",
        "ms", "1..2s", "--1", "+-1", "1s-", "1,5s", "one", "1h 2m", "-",  "+",
    };
    char msg[128];
    for (size_t i = 0; i < sizeof not_dur / sizeof not_dur[0]; i++) {
        snprintf(msg, sizeof msg,
                 "dial_timeout: \"%s\" is not a duration (e.g. 250ms, 2s)",
                 not_dur[i]);
        set_bad(c, "dial_timeout", not_dur[i], msg);
    }
    /* Sub-millisecond values are refused rather than rounded. */
    static const char *const subms[] = {"500us",    "1500us", "1.0005s",
                                        "999999ns", "1ns",    "-1ns"};
    for (size_t i = 0; i < sizeof subms / sizeof subms[0]; i++) {
        snprintf(msg, sizeof msg,
                 "stop_timeout: \"%s\" is not a whole number of milliseconds "
                 "(the resolution is 1ms)",
                 subms[i]);
        set_bad(c, "stop_timeout", subms[i], msg);
    }
    /* Too big for int64 milliseconds: out of range, not a crash. */
    set_bad(c, "dial_timeout", "99999999999999999999",
            "dial_timeout: \"99999999999999999999\" is out of range 10ms..5m");
    set_bad(c, "dial_timeout", "9223372036854775807", NULL);
    set_bad(c, "dial_timeout", "-9223372036854775808", NULL);
    set_bad(c, "dial_timeout", "2562047h", NULL);
    set_bad(c, "dial_timeout", "9999999999999h", NULL);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(integers)
{
    nsq_conf_t *c = nsq_conf_new();
    set_get(c, "max_unacked", "007", "7");
    ck_assert_int_eq(c->max_unacked, 7);
    set_get(c, "max_unacked", "+42", "42");
    ck_assert_int_eq(c->max_unacked, 42);
    set_get(c, "sample_rate", "-0", "0");
    set_get(c, "sample_rate", "50", "50");
    ck_assert_int_eq(c->sample_rate, 50);
    static const char *const bad[] = {
        "",   "+",   "-",   " 1",  "1 ",  "0x10", "1e3", "12a", "1.0",
        "1s", "1,0", "--1", "+-1", "one", "\t1",  "1\n", "½",
    };
    char msg[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(msg, sizeof msg,
                 "max_unacked: \"%s\" is not a decimal integer", bad[i]);
        set_bad(c, "max_unacked", bad[i], msg);
    }
    set_bad(c, "max_unacked", "9223372036854775808",
            "max_unacked: \"9223372036854775808\" is out of range 1..1000000");
    set_bad(c, "max_unacked", "-9223372036854775809", NULL);
    set_bad(c, "max_unacked", "99999999999999999999999", NULL);
    /* Junk after an overflowing number is still junk. */
    set_bad(c, "max_unacked", "99999999999999999999999x",
            "max_unacked: \"99999999999999999999999x\" is not a decimal "
            "integer");
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(strings)
{
    nsq_conf_t *c = nsq_conf_new();
    static const char *const skeys[] = {"client_id", "hostname", "user_agent"};
    char max[256], over[257];
    memset(max, 'a', 255);
    max[255] = '\0';
    memset(over, 'b', 256);
    over[256] = '\0';
    char msg[128];
    for (size_t i = 0; i < 3; i++) {
        char *old = *(char **)((char *)c + keys[key_index(skeys[i])].offset);
        set_get(c, skeys[i], "worker-1.example.com", "worker-1.example.com");
        char *now = *(char **)((char *)c + keys[key_index(skeys[i])].offset);
        ck_assert_ptr_ne(now, old);
        ck_assert_str_eq(now, "worker-1.example.com");
        set_get(c, skeys[i], "", "");
        set_get(c, skeys[i], "ünïcode \"quoted\"", "ünïcode \"quoted\"");
        set_get(c, skeys[i], max, max);
        snprintf(msg, sizeof msg,
                 "%s: the value is 256 bytes long, at most 255 are allowed",
                 skeys[i]);
        set_bad(c, skeys[i], over, msg);
        ck_assert_str_eq(get(c, skeys[i]), max);
    }
    /* A string key takes numbers as text. */
    set_get(c, "user_agent", "-1", "-1");
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(errstr_handling)
{
    nsq_conf_t *c = nsq_conf_new();
    /* NULL errstr, and a zero length that must not be written. */
    ck_assert_int_eq(nsq_conf_set(c, "nope", "1", NULL, 0), NSQ_ERR_CONF);
    ck_assert_int_eq(nsq_conf_set(c, "dial_timeout", "x", NULL, 100),
                     NSQ_ERR_CONF);
    char err[16];
    memset(err, 'Z', sizeof err);
    ck_assert_int_eq(nsq_conf_set(c, "nope", "1", err, 0), NSQ_ERR_CONF);
    ck_assert_int_eq(err[0], 'Z');
    /* Truncated to the buffer, NUL-terminated, nothing written past it. */
    ck_assert_int_eq(nsq_conf_set(c, "nope", "1", err, 8), NSQ_ERR_CONF);
    ck_assert_str_eq(err, "unknown");
    for (size_t i = 8; i < sizeof err; i++)
        ck_assert_int_eq(err[i], 'Z');
    ck_assert_int_eq(nsq_conf_set(c, "dial_timeout", "1ms", err, 1),
                     NSQ_ERR_CONF);
    ck_assert_str_eq(err, "");
    /* Success leaves errstr alone. */
    memset(err, 'Z', sizeof err);
    ck_assert_int_eq(nsq_conf_set(c, "dial_timeout", "2s", err, sizeof err),
                     NSQ_OK);
    ck_assert_int_eq(err[0], 'Z');
    /* NULL arguments. */
    char big[64];
    ck_assert_int_eq(nsq_conf_set(NULL, "dial_timeout", "1s", big, sizeof big),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(big, "no configuration object");
    ck_assert_int_eq(nsq_conf_set(c, NULL, "1s", big, sizeof big),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(big, "no configuration key");
    ck_assert_int_eq(nsq_conf_set(c, "dial_timeout", NULL, big, sizeof big),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(big, "no value");
    ck_assert_int_eq(c->dial_timeout_ms, 2000);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(unchanged_after_errors)
{
    nsq_conf_t *c = nsq_conf_new();
    set_ok(c, "client_id", "keep");
    char before[NKEYS][300];
    for (size_t i = 0; i < NKEYS; i++)
        snprintf(before[i], sizeof before[i], "%s", get(c, keys[i].name));
    /* One bad value of each kind for every key. */
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].type, "string") == 0) {
            /* Longer than any string key allows (auth_secret: 64 KiB). */
            static char over[70000];
            memset(over, 'x', sizeof over - 1);
            set_bad(c, keys[i].name, over, NULL);
        } else {
            set_bad(c, keys[i].name, "junk", NULL);
            set_bad(c, keys[i].name, "99999999999", NULL);
            set_bad(c, keys[i].name, "-5", NULL);
        }
    }
    for (size_t i = 0; i < NKEYS; i++)
        ck_assert_str_eq(get(c, keys[i].name), before[i]);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(get_buffer)
{
    nsq_conf_t *c = nsq_conf_new();
    set_ok(c, "max_reconnect_backoff", "1m30s");
    char d[8];
    /* "1m30s" needs 6 bytes. */
    memset(d, 'X', sizeof d);
    ck_assert_int_eq(nsq_conf_get(c, "max_reconnect_backoff", d, 6), NSQ_OK);
    ck_assert_str_eq(d, "1m30s");
    memset(d, 'X', sizeof d);
    ck_assert_int_eq(nsq_conf_get(c, "max_reconnect_backoff", d, 5),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(d, "");
    ck_assert_int_eq(d[5], 'X');
    memset(d, 'X', sizeof d);
    ck_assert_int_eq(nsq_conf_get(c, "max_reconnect_backoff", d, 1),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(d[0], '\0');
    ck_assert_int_eq(d[1], 'X');
    ck_assert_int_eq(nsq_conf_get(c, "max_reconnect_backoff", d, 0),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(d[1], 'X');
    ck_assert_int_eq(nsq_conf_get(c, "max_reconnect_backoff", NULL, 8),
                     NSQ_ERR_INVALID_ARG);
    /* Integers and strings alike. */
    set_ok(c, "user_agent", "abcdefg");
    ck_assert_int_eq(nsq_conf_get(c, "user_agent", d, 8), NSQ_OK);
    ck_assert_str_eq(d, "abcdefg");
    ck_assert_int_eq(nsq_conf_get(c, "user_agent", d, 7), NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(d, "");
    ck_assert_int_eq(nsq_conf_get(c, "max_unacked", d, 5), NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(d, "");
    ck_assert_int_eq(nsq_conf_get(c, "max_unacked", d, 6), NSQ_OK);
    ck_assert_str_eq(d, "10000");
    memset(d, 'X', sizeof d);
    ck_assert_int_eq(nsq_conf_get(NULL, "max_unacked", d, sizeof d),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_str_eq(d, "");
    ck_assert_int_eq(nsq_conf_get(c, NULL, d, sizeof d), NSQ_ERR_INVALID_ARG);
    nsq_conf_destroy(c);
}
END_TEST

static void log_a(void *opaque, int level, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)msg;
}

START_TEST(dup_is_deep)
{
    nsq_conf_t *c = nsq_conf_new();
    int token;
    nsq_conf_set_log_cb(c, log_a, &token, NSQ_LOG_DEBUG);
    set_ok(c, "client_id", "orig-id");
    set_ok(c, "user_agent", "orig-agent");
    set_ok(c, "dial_timeout", "3s");
    set_ok(c, "heartbeat_interval", "-1");
    nsq_conf_t *d = nsq_conf_dup(c);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_ne(d, c);
    for (size_t i = 0; i < NKEYS; i++) {
        char a[300];
        snprintf(a, sizeof a, "%s", get(c, keys[i].name));
        ck_assert_str_eq(get(d, keys[i].name), a);
    }
    ck_assert_ptr_ne(d->client_id, c->client_id);
    ck_assert_ptr_ne(d->hostname, c->hostname);
    ck_assert_ptr_ne(d->user_agent, c->user_agent);
    ck_assert_ptr_eq(d->log_cb, log_a);
    ck_assert_ptr_eq(d->log_opaque, &token);
    ck_assert_int_eq(d->log_level, NSQ_LOG_DEBUG);
    /* Changes to the copy stay in the copy, and the other way round. */
    set_ok(d, "client_id", "copy-id");
    set_ok(d, "dial_timeout", "4s");
    ck_assert_str_eq(get(c, "client_id"), "orig-id");
    ck_assert_str_eq(get(c, "dial_timeout"), "3s");
    set_ok(c, "user_agent", "orig-2");
    ck_assert_str_eq(get(d, "user_agent"), "orig-agent");
    /* The copy outlives the original. */
    nsq_conf_destroy(c);
    ck_assert_str_eq(get(d, "client_id"), "copy-id");
    ck_assert_str_eq(get(d, "user_agent"), "orig-agent");
    nsq_conf_t *d2 = nsq_conf_dup(d);
    nsq_conf_destroy(d);
    ck_assert_str_eq(get(d2, "client_id"), "copy-id");
    nsq_conf_destroy(d2);
    nsq_conf_destroy(NULL);
    ck_assert_ptr_null(nsq_conf_dup(NULL));
}
END_TEST

START_TEST(log_cb)
{
    nsq_conf_t *c = nsq_conf_new();
    int token;
    static const struct {
        int in, out;
    } levels[] = {{-5, 0}, {-1, 0}, {0, 0},    {NSQ_LOG_ERROR, 3}, {4, 4},
                  {7, 7},  {8, 7},  {1000, 7}, {INT32_MIN, 0}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        nsq_conf_set_log_cb(c, log_a, &token, levels[i].in);
        ck_assert_ptr_eq(c->log_cb, log_a);
        ck_assert_ptr_eq(c->log_opaque, &token);
        ck_assert_int_eq(c->log_level, levels[i].out);
    }
    nsq_conf_set_log_cb(c, NULL, NULL, NSQ_LOG_WARNING);
    ck_assert_ptr_null(c->log_cb);
    ck_assert_ptr_null(c->log_opaque);
    ck_assert_int_eq(c->log_level, NSQ_LOG_WARNING);
    nsq_conf_set_log_cb(NULL, log_a, NULL, 3); /* ignored */
    nsq_conf_destroy(c);
}
END_TEST

static void valid(nsq_conf_t *c)
{
    char err[128] = "untouched";
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_OK);
    ck_assert_str_eq(err, "untouched");
}

static void invalid(nsq_conf_t *c, const char *msg)
{
    char err[128] = "";
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_ERR_CONF);
    ck_assert_str_eq(err, msg);
    ck_assert_int_eq(nsq__conf_validate(c, NULL, 0), NSQ_ERR_CONF);
}

START_TEST(validate)
{
    nsq_conf_t *c = nsq_conf_new();
    valid(c);
    /* heartbeat_interval < read_timeout, unless heartbeats are off. */
    set_ok(c, "read_timeout", "30s");
    invalid(c, "heartbeat_interval (30s) must be less than read_timeout (30s)");
    set_ok(c, "read_timeout", "30001ms");
    valid(c);
    set_ok(c, "read_timeout", "1s");
    invalid(c, "heartbeat_interval (30s) must be less than read_timeout (1s)");
    set_ok(c, "heartbeat_interval", "-1");
    valid(c);
    set_ok(c, "heartbeat_interval", "1s");
    set_ok(c, "read_timeout", "1s");
    invalid(c, "heartbeat_interval (1s) must be less than read_timeout (1s)");
    set_ok(c, "read_timeout", "1m");
    set_ok(c, "heartbeat_interval", "30s");
    valid(c);
    /* max_msg_size <= max_body_size - 8 */
    set_ok(c, "max_body_size", "1048584");
    valid(c);
    set_ok(c, "max_body_size", "1048583");
    invalid(c, "max_msg_size (1048576) must be at most max_body_size - 8 "
               "(1048575)");
    set_ok(c, "max_msg_size", "1048575");
    valid(c);
    set_ok(c, "max_body_size", "5");
    set_ok(c, "max_msg_size", "1");
    invalid(c, "max_msg_size (1) must be at most max_body_size - 8 (-3)");
    set_ok(c, "max_body_size", "9");
    valid(c);
    /* reconnect_backoff <= max_reconnect_backoff */
    set_ok(c, "reconnect_backoff", "10s");
    valid(c);
    set_ok(c, "reconnect_backoff", "10001ms");
    invalid(c, "reconnect_backoff (10s1ms) must be at most "
               "max_reconnect_backoff (10s)");
    set_ok(c, "max_reconnect_backoff", "10m");
    valid(c);
    ck_assert_int_eq(nsq__conf_validate(NULL, NULL, 0), NSQ_ERR_INVALID_ARG);
    nsq_conf_destroy(c);
}
END_TEST

/* TLS, compression and AUTH keys: booleans, the TLS version list, the
 * secret that is never given back, and the relations validate checks. */
START_TEST(tls_compression_auth_keys)
{
    nsq_conf_t *c = nsq_conf_new();
    char err[256];
    set_get(c, "tls_v1", "true", "true");
    ck_assert(c->tls_v1);
    set_get(c, "tls-v1", "no", "false");
    ck_assert(!c->tls_v1);
    set_bad(c, "snappy", "maybe",
            "snappy: \"maybe\" is not a boolean (true or false)");
    set_get(c, "tls_min_version", "tls1.3", "tls1.3");
    set_get(c, "tls_min_version", "tls1.0", "tls1.0");
    set_bad(c, "tls_min_version", "ssl3",
            "tls_min_version: \"ssl3\" is not one of tls1.0, tls1.1, "
            "tls1.2, tls1.3");
    set_bad(c, "tls_min_version", "TLS1.2", NULL);
    set_get(c, "deflate_level", "9", "9");
    set_bad(c, "deflate_level", "0",
            "deflate_level: \"0\" is out of range 1..9");
    set_bad(c, "deflate_level", "10", NULL);

    /* The secret: stored, never printed back, never in an error. */
    ck_assert_str_eq(get(c, "auth_secret"), "");
    set_ok(c, "auth_secret", "s3cret-token");
    ck_assert_str_eq(c->auth_secret, "s3cret-token");
    ck_assert_str_eq(get(c, "auth_secret"), "(set)");
    static char huge[70000];
    memset(huge, 's', sizeof huge - 1);
    ck_assert_int_eq(nsq_conf_set(c, "auth_secret", huge, err, sizeof err),
                     NSQ_ERR_CONF);
    ck_assert_ptr_null(strstr(err, "sss"));

    /* Relations. */
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_OK);
    set_ok(c, "snappy", "true");
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_OK);
    set_ok(c, "deflate", "true");
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_ERR_CONF);
    ck_assert_ptr_nonnull(strstr(err, "snappy and deflate"));
    set_ok(c, "snappy", "false");
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_OK);
    set_ok(c, "tls_cert", "/x/cert.pem");
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_ERR_CONF);
    ck_assert_ptr_nonnull(strstr(err, "tls_cert and tls_key"));
    set_ok(c, "tls_key", "/x/key.pem");
    ck_assert_int_eq(nsq__conf_validate(c, err, sizeof err), NSQ_OK);
    nsq_conf_t *d = nsq_conf_dup(c);
    ck_assert_str_eq(d->auth_secret, "s3cret-token");
    ck_assert_ptr_ne(d->auth_secret, c->auth_secret);
    ck_assert(d->deflate);
    nsq_conf_destroy(d);
    nsq_conf_destroy(c);
}
END_TEST

START_TEST(parse_bool)
{
    static const struct {
        const char *in;
        bool out;
    } ok[] = {{"true", true},   {"TRUE", true},   {"True", true},
              {"1", true},      {"yes", true},    {"YeS", true},
              {"false", false}, {"FALSE", false}, {"0", false},
              {"no", false},    {"NO", false},    {"nO", false}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        bool b = !ok[i].out;
        ck_assert_int_eq(nsq__conf_parse_bool(ok[i].in, &b),
                         NSQ__CONF_PARSE_OK);
        ck_assert_msg(b == ok[i].out, "%s", ok[i].in);
    }
    static const char *const bad[] = {"",    "t",     "f",     "y",     "n",
                                      "2",   "truee", " true", "true ", "on",
                                      "off", "-1",    "01",    "yes\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        ck_assert_int_eq(nsq__conf_parse_bool(bad[i], &b),
                         NSQ__CONF_PARSE_SYNTAX);
        ck_assert(b);
    }
    bool b = false;
    ck_assert_int_eq(nsq__conf_parse_bool(NULL, &b), NSQ__CONF_PARSE_SYNTAX);
    ck_assert(!b);
}
END_TEST

START_TEST(parse_int)
{
    int64_t v = 0;
    ck_assert_int_eq(nsq__conf_parse_int("9223372036854775807", &v), 0);
    ck_assert_int_eq(v, INT64_MAX);
    ck_assert_int_eq(nsq__conf_parse_int("-9223372036854775808", &v), 0);
    ck_assert_int_eq(v, INT64_MIN);
    ck_assert_int_eq(nsq__conf_parse_int("-12", &v), 0);
    ck_assert_int_eq(v, -12);
    v = 5;
    ck_assert_int_eq(nsq__conf_parse_int("9223372036854775808", &v),
                     NSQ__CONF_PARSE_RANGE);
    ck_assert_int_eq(nsq__conf_parse_int("-9223372036854775809", &v),
                     NSQ__CONF_PARSE_RANGE);
    ck_assert_int_eq(nsq__conf_parse_int("18446744073709551616", &v),
                     NSQ__CONF_PARSE_RANGE);
    ck_assert_int_eq(nsq__conf_parse_int("1x", &v), NSQ__CONF_PARSE_SYNTAX);
    ck_assert_int_eq(nsq__conf_parse_int(NULL, &v), NSQ__CONF_PARSE_SYNTAX);
    ck_assert_int_eq(v, 5);
}
END_TEST

START_TEST(format_ms)
{
    static const struct {
        int64_t ms;
        const char *out;
    } cases[] = {
        {0, "0s"},
        {1, "1ms"},
        {999, "999ms"},
        {1000, "1s"},
        {1001, "1s1ms"},
        {60000, "1m"},
        {90000, "1m30s"},
        {3600000, "1h"},
        {3600001, "1h1ms"},
        {5400000, "1h30m"},
        {86400000, "24h"},
        {-1, "-1ms"},
        {-90000, "-1m30s"},
        {INT64_MAX, "2562047788015h12m55s807ms"},
        {INT64_MIN, "-2562047788015h12m55s808ms"},
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = nsq__conf_format_ms(cases[i].ms, buf, sizeof buf);
        ck_assert_str_eq(buf, cases[i].out);
        ck_assert_int_eq(n, (int)strlen(cases[i].out));
    }
    /* snprintf's contract: truncated, with the full length returned. */
    ck_assert_int_eq(nsq__conf_format_ms(90000, buf, 3), 5);
    ck_assert_str_eq(buf, "1m");
    /* Whatever is printed parses back to the same value; the ones that fit
     * nanoseconds also parse as Go durations. */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = (int64_t)(x % 9000000000000ULL) - 4500000000000LL;
        if (i % 3 == 0)
            ms /= 1000000; /* small values too */
        nsq__conf_format_ms(ms, buf, sizeof buf);
        int64_t back = ms + 1;
        ck_assert_int_eq(nsq__conf_parse_ms(buf, &back), 0);
        ck_assert_int_eq(back, ms);
    }
}
END_TEST

START_TEST(parse_ms)
{
    int64_t v = 77;
    ck_assert_int_eq(nsq__conf_parse_ms("500us", &v), NSQ__CONF_PARSE_SUBMS);
    ck_assert_int_eq(nsq__conf_parse_ms("1s", &v), 0);
    ck_assert_int_eq(v, 1000);
    v = 77;
    ck_assert_int_eq(nsq__conf_parse_ms("abc", &v), NSQ__CONF_PARSE_SYNTAX);
    ck_assert_int_eq(nsq__conf_parse_ms("1e3", &v), NSQ__CONF_PARSE_SYNTAX);
    ck_assert_int_eq(nsq__conf_parse_ms("99999999999999999999", &v),
                     NSQ__CONF_PARSE_RANGE);
    ck_assert_int_eq(nsq__conf_parse_ms(NULL, &v), NSQ__CONF_PARSE_SYNTAX);
    ck_assert_int_eq(v, 77);
    ck_assert_int_eq(nsq__conf_parse_ms("-2562047h", &v), 0);
    ck_assert_int_eq(v, -2562047LL * 3600000);
    ck_assert_int_eq(nsq__conf_parse_ms("9223372036854775807", &v), 0);
    ck_assert_int_eq(v, INT64_MAX);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("conf");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, props);
    tcase_add_test(tc, range_edges);
    tcase_add_test(tc, range_text);
    tcase_add_test(tc, dash_alias);
    tcase_add_test(tc, unknown_keys);
    tcase_add_test(tc, disable_values);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, integers);
    tcase_add_test(tc, strings);
    tcase_add_test(tc, errstr_handling);
    tcase_add_test(tc, unchanged_after_errors);
    tcase_add_test(tc, get_buffer);
    tcase_add_test(tc, dup_is_deep);
    tcase_add_test(tc, log_cb);
    tcase_add_test(tc, validate);
    tcase_add_test(tc, parse_bool);
    tcase_add_test(tc, parse_int);
    tcase_add_test(tc, format_ms);
    tcase_add_test(tc, parse_ms);
    tcase_add_test(tc, tls_compression_auth_keys);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
