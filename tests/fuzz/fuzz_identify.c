/*
 * Fuzzes IDENTIFY and AUTH (protocol/identify.c).
 *
 * The input is parsed as an IDENTIFY reply and an AUTH reply, and applied as
 * an IDENTIFY body by a broker whose configuration comes from the input's
 * byte sum.  Split at its last newline, the two parts are applied one after
 * the other on one connection.  Every success must give a reply that is
 * "OK" or a JSON object that any parser (cJSON) and our client parser read
 * back with the settings' values; every failure an nsqd error text.  Last,
 * the input's bytes become the strings and numbers of a client IDENTIFY,
 * which the broker must always decode, strings intact when valid UTF-8.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

/* Reads every byte so that ASan sees a bad pointer or length. */
static unsigned touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += b[i];
    return sum;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return false;
        }
        if (n - i <= need || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        i += need + 1;
    }
    return true;
}

static void check_settings(const nsq_identify_settings_t *s)
{
    if (s->client_id)
        touch(s->client_id, strlen(s->client_id));
    if (s->hostname)
        touch(s->hostname, strlen(s->hostname));
    if (s->user_agent)
        touch(s->user_agent, strlen(s->user_agent));
    CHECK(s->sample_rate >= 0 && s->sample_rate <= 99);
    CHECK(s->heartbeat_interval_ms >= 0);
    CHECK(!(s->deflate && s->snappy));
}

/* Applies one body and checks the answer against the settings. */
static void apply(const void *body, size_t len, const nsq_broker_info_t *info,
                  nsq_identify_settings_t *s)
{
    nsq_buf_t reply = {0};
    nsq_err_t rc = nsq_identify_apply(body, len, info, s, &reply);
    touch(reply.data, reply.len);
    check_settings(s);
    if (rc == NSQ_ERR_NOMEM) {
        CHECK(reply.len == 0);
    } else if (rc != NSQ_OK) {
        CHECK(rc == NSQ_E_BAD_BODY || rc == NSQ_E_IDENTIFY_FAILED);
        CHECK(nsq_err_is_fatal(rc));
        const char *want = rc == NSQ_E_BAD_BODY ? "E_BAD_BODY IDENTIFY "
                                                : "E_IDENTIFY_FAILED ";
        CHECK(reply.len > strlen(want) &&
              memcmp(reply.data, want, strlen(want)) == 0);
    } else if (!s->feature_negotiation) {
        CHECK(reply.len == 2 && memcmp(reply.data, "OK", 2) == 0);
        CHECK(!s->tls_v1 && !s->deflate && !s->snappy);
    } else {
        cJSON *j = cJSON_ParseWithLength(reply.data, reply.len);
        CHECK(cJSON_IsObject(j) && cJSON_GetArraySize(j) == 13);
        cJSON_Delete(j);
        nsq_identify_reply_t r;
        CHECK(nsq_identify_reply_parse(reply.data, reply.len, &r, NULL, 0) ==
              NSQ_OK);
        CHECK(r.negotiated);
        CHECK(r.msg_timeout == s->msg_timeout_ms);
        CHECK(r.sample_rate == s->sample_rate);
        CHECK(r.output_buffer_size == s->output_buffer_size);
        CHECK(r.output_buffer_timeout == s->output_buffer_timeout_ms);
        CHECK(r.tls_v1 == s->tls_v1 && r.deflate == s->deflate &&
              r.snappy == s->snappy);
        CHECK(r.auth_required == info->auth_enabled);
        CHECK(r.deflate_level <= info->limits.max_deflate_level);
        CHECK(!s->deflate || r.deflate_level == s->deflate_level);
    }
    nsq_buf_free(&reply);
}

static void parse_replies(const uint8_t *data, size_t size)
{
    char err[96];
    nsq_identify_reply_t r;
    memset(err, 'x', sizeof err);
    if (nsq_identify_reply_parse(data, size, &r, err, sizeof err) == NSQ_OK) {
        CHECK(memchr(r.version, '\0', sizeof r.version) != NULL);
        touch(r.version, strlen(r.version));
        CHECK(err[0] == '\0');
    } else {
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    }
    nsq_auth_reply_t a;
    if (nsq_auth_reply_parse(data, size, &a, err, sizeof err) == NSQ_OK) {
        CHECK(memchr(a.identity, '\0', sizeof a.identity) != NULL);
        CHECK(memchr(a.identity_url, '\0', sizeof a.identity_url) != NULL);
        touch(a.identity, strlen(a.identity));
        touch(a.identity_url, strlen(a.identity_url));
    } else {
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    }
}

/* The input's bytes as a client IDENTIFY: it always decodes. */
static void roundtrip(const uint8_t *data, size_t size, unsigned sum)
{
    char *str = malloc(size + 1);
    CHECK(str != NULL);
    if (size)
        memcpy(str, data, size);
    str[size] = '\0';
    size_t n = strlen(str);
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = str;
    id.hostname = str + n / 2;
    id.user_agent = "fuzz";
    id.feature_negotiation = sum & 1;
    id.heartbeat_interval = (int64_t)(sum % 70000) - 2;
    id.output_buffer_size = (int64_t)(sum % 70000) - 2;
    id.output_buffer_timeout = (int64_t)(sum % 31000) - 2;
    id.msg_timeout = (int64_t)sum * 7 - 3;
    id.sample_rate = (int64_t)(sum % 103) - 2;
    id.deflate = sum & 2;
    id.snappy = sum & 4;
    id.deflate_level = (int64_t)(sum % 11) - 1;
    nsq_buf_t b = {0};
    CHECK(nsq_cmd_identify(&b, &id) == NSQ_OK);
    CHECK(b.len > 13 && memcmp(b.data, "IDENTIFY\n", 9) == 0);
    const unsigned char *sz = (const unsigned char *)b.data + 9;
    CHECK(((size_t)sz[0] << 24 | (size_t)sz[1] << 16 | (size_t)sz[2] << 8 |
           sz[3]) == b.len - 13);

    nsq_broker_info_t info;
    nsq_broker_info_default(&info);
    nsq_identify_settings_t s;
    nsq_identify_settings_init(&s, &info);
    nsq_buf_t reply = {0};
    nsq_err_t rc =
        nsq_identify_apply(b.data + 13, b.len - 13, &info, &s, &reply);
    static const char undecoded[] = "E_BAD_BODY IDENTIFY failed to decode";
    CHECK(reply.len < sizeof undecoded - 1 ||
          memcmp(reply.data, undecoded, sizeof undecoded - 1) != 0);
    if (rc == NSQ_OK || rc == NSQ_E_BAD_BODY || rc == NSQ_E_IDENTIFY_FAILED) {
        CHECK(s.client_id && s.hostname && s.user_agent);
        if (utf8_valid((const unsigned char *)str, n))
            CHECK(strcmp(s.client_id, str) == 0);
        if (utf8_valid((const unsigned char *)str + n / 2, n - n / 2))
            CHECK(strcmp(s.hostname, str + n / 2) == 0);
        CHECK(strcmp(s.user_agent, "fuzz") == 0);
    }
    nsq_buf_free(&reply);
    nsq_identify_settings_free(&s);
    nsq_buf_free(&b);
    free(str);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse_replies(data, size);

    unsigned sum = touch(data, size);
    nsq_broker_info_t info;
    nsq_broker_info_default(&info);
    info.tls_enabled = sum & 1;
    info.snappy_enabled = !(sum & 2);
    info.deflate_enabled = !(sum & 4);
    info.auth_enabled = sum & 8;
    info.limits.max_deflate_level = 1 + (int)(sum % 9);

    nsq_identify_settings_t s;
    nsq_identify_settings_init(&s, &info);
    apply(data, size, &info, &s);
    apply(data, size, &info, &s);
    nsq_identify_settings_free(&s);

    const uint8_t *nl = NULL;
    for (size_t i = size; i > 0; i--)
        if (data[i - 1] == '\n') {
            nl = data + i - 1;
            break;
        }
    if (nl) {
        nsq_identify_settings_init(&s, &info);
        apply(data, (size_t)(nl - data), &info, &s);
        apply(nl + 1, size - (size_t)(nl - data) - 1, &info, &s);
        nsq_identify_settings_free(&s);
    }

    roundtrip(data, size, sum);
    return 0;
}
