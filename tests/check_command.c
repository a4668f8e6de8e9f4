/*
 * The client command encoders (protocol/command.c): byte-for-byte against
 * what the conformance vectors sent to a real nsqd, every validation error,
 * limits at and past their edge, and that a failed call leaves the buffer
 * exactly as it was.
 */
#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/broker.h"
#include "vectors.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* The vectors' hex, decoded (tests/support). */
static unsigned char *unhex(const char *hex, size_t *len)
{
    unsigned char *out = vec_unhex(hex, len);
    ck_assert_msg(out != NULL, "bad hex in the test: %s", hex);
    return out;
}

static void assert_hex(const nsq_buf_t *b, size_t from, const char *hex)
{
    size_t len;
    unsigned char *want = unhex(hex, &len);
    ck_assert_uint_eq(b->len - from, len);
    ck_assert_mem_eq(b->data + from, want, len);
    free(want);
}

static void assert_text(const nsq_buf_t *b, const char *text, size_t len)
{
    ck_assert_uint_eq(b->len, len);
    ck_assert_mem_eq(b->data, text, len);
}

/* The command bytes a vector's step sent (uncompressed). */
static vec_case_t *load_case(const char *name)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/%s.json", NSQ_CONFORMANCE_DIR, name);
    vec_case_t *c = vec_load(path, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

static void assert_vector(const nsq_buf_t *b, const char *name, size_t step)
{
    vec_case_t *c = load_case(name);
    ck_assert_uint_lt(step, c->nsteps);
    const vec_bytes_t *want = &c->steps[step].send_plain;
    ck_assert_msg(b->len == want->len, "%s step %zu: %zu bytes, want %zu", name,
                  step, b->len, want->len);
    ck_assert_msg(memcmp(b->data, want->data, want->len) == 0,
                  "%s step %zu: bytes differ", name, step);
    vec_free(c);
}

/* A buffer holding a few bytes already, to see that errors keep them. */
typedef struct guarded {
    nsq_buf_t b;
    char *data;
    size_t cap;
} guarded_t;

static void guard_init(guarded_t *g)
{
    nsq_buf_init(&g->b);
    ck_assert_int_eq(nsq_buf_append(&g->b, "prefix", 6), NSQ_OK);
    g->data = g->b.data;
    g->cap = g->b.cap;
}

/* The call failed with want and left the buffer exactly as it was. */
static void guard_check(guarded_t *g, nsq_err_t got, nsq_err_t want)
{
    ck_assert_msg(got == want, "got %s, want %s", nsq_err2name(got),
                  nsq_err2name(want));
    ck_assert_ptr_eq(g->b.data, g->data);
    ck_assert_uint_eq(g->b.cap, g->cap);
    ck_assert_uint_eq(g->b.len, 6);
    ck_assert_mem_eq(g->b.data, "prefix", 6);
}

static const char id16[NSQ_MSG_ID_LEN + 1] = "0123456789abcdef";

/* ------------------------------------------------------------------------ */
/* Byte vectors                                                             */
/* ------------------------------------------------------------------------ */

START_TEST(test_magic)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_magic(&b), NSQ_OK);
    assert_hex(&b, 0, "20205632");
    assert_vector(&b, "publish_pub_ok", 0);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_pub_vector)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(
        nsq_cmd_pub(&b, "conf_publish_pub_ok", "hello world", 11, NULL),
        NSQ_OK);
    assert_hex(&b, 0,
               "50554220636f6e665f7075626c6973685f7075625f6f6b0a0000000b68656c"
               "6c6f20776f726c64");
    assert_vector(&b, "publish_pub_ok", 2);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_pub_vectors_more)
{
    static const struct {
        const char *vector;
        size_t step;
        const char *topic;
        const char *body;
    } cases[] = {
        {"publish_pub_without_identify", 1, "conf_publish_pub_without_identify",
         "hello"},
        {"publish_pub_topic_64_chars", 1,
         "conf_publish_pub_topic_64_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
         "x"},
        {"publish_pub_topic_ephemeral", 1,
         "conf_publish_pub_topic_ephemeral#ephemeral", "x"},
        {"misc_nop_then_pub", 3, "conf_misc_nop_then_pub", "x"},
        {"handshake_identify_plain_ok", 2, "conf_handshake_identify_plain_ok",
         "hello"},
        {"auth_ok_then_pub", 3, "conf_auth_ok_then_pub", "x"},
        {"compression_snappy", 2, "conf_compression_snappy", "snappy body"},
        {"compression_deflate_level_6", 2, "conf_compression_deflate_level_6",
         "deflate body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nsq_buf_t b = {0};
        ck_assert_int_eq(nsq_cmd_pub(&b, cases[i].topic, cases[i].body,
                                     strlen(cases[i].body), NULL),
                         NSQ_OK);
        assert_vector(&b, cases[i].vector, cases[i].step);
        nsq_buf_free(&b);
    }
}
END_TEST

START_TEST(test_pub_pipelined_vector)
{
    nsq_buf_t b = {0};
    const char *t = "conf_publish_pipelined_pubs";
    ck_assert_int_eq(nsq_cmd_pub(&b, t, "one", 3, NULL), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_pub(&b, t, "two", 3, NULL), NSQ_OK);
    ck_assert_int_eq(nsq_cmd_pub(&b, t, "three", 5, NULL), NSQ_OK);
    assert_vector(&b, "publish_pipelined_pubs", 1);
    nsq_buf_free(&b);
}
END_TEST

/* The largest body nsqd accepts with its defaults, as the vector sent it. */
START_TEST(test_pub_max_msg_size_vector)
{
    size_t len = NSQ_DEFAULT_MAX_MSG_SIZE;
    char *body = malloc(len + 1);
    ck_assert_ptr_nonnull(body);
    memset(body, 'a', len + 1);
    nsq_buf_t b = {0};
    ck_assert_int_eq(
        nsq_cmd_pub(&b, "conf_publish_pub_body_1048576", body, len, NULL),
        NSQ_OK);
    assert_vector(&b, "publish_pub_body_1048576", 1);
    size_t before = b.len;
    ck_assert_int_eq(
        nsq_cmd_pub(&b, "conf_publish_pub_body_1048576", body, len + 1, NULL),
        NSQ_ERR_MSG_TOO_BIG);
    ck_assert_uint_eq(b.len, before);
    nsq_buf_free(&b);
    free(body);
}
END_TEST

START_TEST(test_pub_binary_body)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_pub(&b, "t", "\0\n\r \xff", 5, NULL), NSQ_OK);
    assert_hex(&b, 0, "50554220740a00000005000a0d20ff");
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_pub_appends)
{
    guarded_t g;
    guard_init(&g);
    ck_assert_int_eq(nsq_cmd_pub(&g.b, "t", "x", 1, NULL), NSQ_OK);
    ck_assert_mem_eq(g.b.data, "prefix", 6);
    assert_hex(&g.b, 6, "50554220740a0000000178");
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_mpub_vectors)
{
    nsq_buf_t b = {0};
    nsq_iov_t three[] = {{"one", 3}, {"two", 3}, {"three", 5}};
    ck_assert_int_eq(nsq_cmd_mpub(&b, "conf_mpub_ok_3", three, 3, NULL),
                     NSQ_OK);
    assert_hex(&b, 0,
               "4d50554220636f6e665f6d7075625f6f6b5f330a0000001b0000000300000"
               "0036f6e650000000374776f000000057468726565");
    assert_vector(&b, "mpub_ok_3", 2);
    nsq_buf_free(&b);

    nsq_iov_t one[] = {{"only", 4}};
    ck_assert_int_eq(nsq_cmd_mpub(&b, "conf_mpub_ok_1", one, 1, NULL), NSQ_OK);
    assert_vector(&b, "mpub_ok_1", 1);
    nsq_buf_free(&b);

    nsq_iov_t m[] = {{"m1", 2}, {"m2", 2}};
    ck_assert_int_eq(nsq_cmd_mpub(&b, "conf_compression_snappy", m, 2, NULL),
                     NSQ_OK);
    assert_vector(&b, "compression_snappy", 3);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_dpub_vectors)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(
        nsq_cmd_dpub(&b, "conf_dpub_ok_1000", 1000, "later", 5, NULL), NSQ_OK);
    assert_hex(&b, 0,
               "4450554220636f6e665f647075625f6f6b5f3130303020313030300a000000"
               "056c61746572");
    assert_vector(&b, "dpub_ok_1000", 2);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_dpub(&b, "conf_dpub_0", 0, "now", 3, NULL),
                     NSQ_OK);
    assert_vector(&b, "dpub_0", 1);
    nsq_buf_free(&b);

    ck_assert_int_eq(
        nsq_cmd_dpub(&b, "conf_dpub_max_3600000", 3600000, "x", 1, NULL),
        NSQ_OK);
    assert_vector(&b, "dpub_max_3600000", 1);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_misc_vectors)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_nop(&b), NSQ_OK);
    assert_hex(&b, 0, "4e4f500a");
    assert_vector(&b, "misc_nop_then_pub", 2);
    assert_vector(&b, "misc_heartbeat", 3);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_cls(&b), NSQ_OK);
    assert_hex(&b, 0, "434c530a");
    assert_vector(&b, "misc_cls_as_producer", 1);
    assert_vector(&b, "misc_sub_message", 5);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_sub(&b, "conf_misc_sub_message", "ch"), NSQ_OK);
    assert_hex(&b, 0,
               "53554220636f6e665f6d6973635f7375625f6d6573736167652063680a");
    assert_vector(&b, "misc_sub_message", 1);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_rdy(&b, 1, NULL), NSQ_OK);
    assert_hex(&b, 0, "52445920310a");
    assert_vector(&b, "misc_sub_message", 2);
    assert_vector(&b, "misc_rdy_before_sub", 1);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_fin(&b, "18a96dfbe4669000"), NSQ_OK);
    assert_hex(&b, 0, "46494e20313861393664666265343636393030300a");
    assert_vector(&b, "misc_sub_message", 4);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_fin(&b, id16), NSQ_OK);
    assert_vector(&b, "misc_fin_before_sub", 1);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_sub(&b, "conf_misc_sub_heartbeats_disabled", "ch"),
                     NSQ_OK);
    assert_vector(&b, "misc_sub_heartbeats_disabled", 2);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_auth_vectors)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_auth(&b, "s3cret", 6), NSQ_OK);
    assert_hex(&b, 0, "415554480a00000006733363726574");
    assert_vector(&b, "auth_ok_then_pub", 2);
    assert_vector(&b, "auth_disabled", 1);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_auth(&b, "wrong", 5), NSQ_OK);
    assert_vector(&b, "auth_bad_secret", 2);
    nsq_buf_free(&b);

    ck_assert_int_eq(nsq_cmd_auth(&b, "\0\n", 2), NSQ_OK);
    assert_hex(&b, 0, "415554480a00000002000a");
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_req_touch)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_req(&b, id16, 1000, NULL), NSQ_OK);
    assert_text(&b, "REQ 0123456789abcdef 1000\n", 26);
    nsq_buf_free(&b);
    ck_assert_int_eq(nsq_cmd_req(&b, id16, 0, NULL), NSQ_OK);
    assert_text(&b, "REQ 0123456789abcdef 0\n", 23);
    nsq_buf_free(&b);
    ck_assert_int_eq(nsq_cmd_req(&b, id16, 3600000, NULL), NSQ_OK);
    assert_text(&b, "REQ 0123456789abcdef 3600000\n", 29);
    nsq_buf_free(&b);
    ck_assert_int_eq(nsq_cmd_touch(&b, id16), NSQ_OK);
    assert_text(&b, "TOUCH 0123456789abcdef\n", 23);
    nsq_buf_free(&b);
    /* Ids are binary-safe apart from the bytes that end or split a line. */
    ck_assert_int_eq(
        nsq_cmd_touch(&b, "\0\1\2\3\4\5\6\7\x08\t\v\f\x0e\x7f\x80\xff"),
        NSQ_OK);
    assert_text(&b, "TOUCH \0\1\2\3\4\5\6\7\x08\t\v\f\x0e\x7f\x80\xff\n", 23);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(test_sub_ephemeral)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_sub(&b, "t#ephemeral", "c#ephemeral"), NSQ_OK);
    assert_text(&b, "SUB t#ephemeral c#ephemeral\n", 28);
    nsq_buf_free(&b);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Decimal numbers                                                          */
/* ------------------------------------------------------------------------ */

START_TEST(test_rdy_all_counts)
{
    for (int64_t n = 0; n <= NSQ_DEFAULT_MAX_RDY_COUNT; n++) {
        nsq_buf_t b = {0};
        char want[32];
        int w = snprintf(want, sizeof want, "RDY %" PRId64 "\n", n);
        ck_assert_int_eq(nsq_cmd_rdy(&b, n, NULL), NSQ_OK);
        assert_text(&b, want, (size_t)w);
        nsq_buf_free(&b);
    }
}
END_TEST

/* Every digit count up to 19, at the edges where the count changes. */
START_TEST(test_decimal_edges)
{
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_req_timeout_ms = INT64_MAX;
    lim.max_rdy_count = INT64_MAX;
    int64_t values[128];
    size_t n = 0;
    values[n++] = 0;
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        values[n++] = p - 1 > 0 ? p - 1 : 1;
        values[n++] = p;
        values[n++] = p + 1;
        values[n++] = p * 10 - 1;
    }
    values[n++] = INT64_MAX;
    values[n++] = 1234567890123456789;
    for (size_t i = 0; i < n; i++) {
        char want[64];
        nsq_buf_t b = {0};
        int w = snprintf(want, sizeof want, "REQ %s %" PRId64 "\n", id16,
                         values[i]);
        ck_assert_int_eq(nsq_cmd_req(&b, id16, values[i], &lim), NSQ_OK);
        assert_text(&b, want, (size_t)w);
        nsq_buf_free(&b);

        w = snprintf(want, sizeof want, "DPUB t %" PRId64 "\n", values[i]);
        ck_assert_int_eq(nsq_cmd_dpub(&b, "t", values[i], "x", 1, &lim),
                         NSQ_OK);
        ck_assert_uint_eq(b.len, (size_t)w + 5);
        ck_assert_mem_eq(b.data, want, (size_t)w);
        ck_assert_mem_eq(b.data + w, "\0\0\0\1x", 5);
        nsq_buf_free(&b);

        w = snprintf(want, sizeof want, "RDY %" PRId64 "\n", values[i]);
        ck_assert_int_eq(nsq_cmd_rdy(&b, values[i], &lim), NSQ_OK);
        assert_text(&b, want, (size_t)w);
        nsq_buf_free(&b);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

START_TEST(test_null_buffer)
{
    nsq_iov_t m = {"x", 1};
    ck_assert_int_eq(nsq_cmd_magic(NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_nop(NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_cls(NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_auth(NULL, "s", 1), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_pub(NULL, "t", "x", 1, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_mpub(NULL, "t", &m, 1, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_dpub(NULL, "t", 1, "x", 1, NULL),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_sub(NULL, "t", "c"), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_rdy(NULL, 1, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_fin(NULL, id16), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_req(NULL, id16, 1, NULL), NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_cmd_touch(NULL, id16), NSQ_ERR_INVALID_ARG);
}
END_TEST

static const char *const bad_names[] = {
    "",
    "bad!",
    "a/b",
    "a b",
    "a\n",
    "a\r",
    "#ephemeral",
    "t#ephemeralx",
    "conf_publish_pub_topic_65_chars_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
};

START_TEST(test_bad_topic)
{
    nsq_iov_t m = {"x", 1};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        const char *t = bad_names[i];
        guarded_t g;
        guard_init(&g);
        guard_check(&g, nsq_cmd_pub(&g.b, t, "x", 1, NULL), NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_mpub(&g.b, t, &m, 1, NULL), NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_dpub(&g.b, t, 1, "x", 1, NULL),
                    NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_sub(&g.b, t, "c"), NSQ_ERR_BAD_TOPIC);
        /* The topic is checked first, as nsqd does. */
        guard_check(&g, nsq_cmd_pub(&g.b, t, "x", 0, NULL), NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_mpub(&g.b, t, &m, 0, NULL), NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_dpub(&g.b, t, -1, "x", 0, NULL),
                    NSQ_ERR_BAD_TOPIC);
        guard_check(&g, nsq_cmd_sub(&g.b, t, ""), NSQ_ERR_BAD_TOPIC);
        nsq_buf_free(&g.b);
    }
}
END_TEST

/* A name far longer than 64 bytes is refused without trouble. */
START_TEST(test_long_topic)
{
    size_t n = 100000;
    char *t = malloc(n + 1);
    ck_assert_ptr_nonnull(t);
    memset(t, 'a', n);
    t[n] = '\0';
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_pub(&g.b, t, "x", 1, NULL), NSQ_ERR_BAD_TOPIC);
    guard_check(&g, nsq_cmd_sub(&g.b, "t", t), NSQ_ERR_BAD_CHANNEL);
    /* 64 bytes is the largest valid name. */
    t[64] = '\0';
    ck_assert_int_eq(nsq_cmd_pub(&g.b, t, "x", 1, NULL), NSQ_OK);
    ck_assert_uint_eq(g.b.len, 6 + 4 + 64 + 1 + 4 + 1);
    free(t);
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_bad_channel)
{
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        guarded_t g;
        guard_init(&g);
        guard_check(&g, nsq_cmd_sub(&g.b, "t", bad_names[i]),
                    NSQ_ERR_BAD_CHANNEL);
        nsq_buf_free(&g.b);
    }
}
END_TEST

START_TEST(test_null_args)
{
    guarded_t g;
    guard_init(&g);
    nsq_iov_t nullmsg[] = {{"x", 1}, {NULL, 1}};
    guard_check(&g, nsq_cmd_pub(&g.b, NULL, "x", 1, NULL), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_pub(&g.b, "t", NULL, 1, NULL), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_dpub(&g.b, NULL, 1, "x", 1, NULL),
                NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 1, NULL, 1, NULL),
                NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_mpub(&g.b, NULL, nullmsg, 1, NULL),
                NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", NULL, 1, NULL),
                NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", nullmsg, 2, NULL),
                NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_sub(&g.b, NULL, "c"), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_sub(&g.b, "t", NULL), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_auth(&g.b, NULL, 1), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_fin(&g.b, NULL), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_req(&g.b, NULL, 1, NULL), NSQ_ERR_INVALID_ARG);
    guard_check(&g, nsq_cmd_touch(&g.b, NULL), NSQ_ERR_INVALID_ARG);
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_bad_ids)
{
    static const char *const ids[] = {
        "0123456789abcde ",
        " 123456789abcdef",
        "0123456\n89abcdef",
        "0123456789abcde\r",
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        guarded_t g;
        guard_init(&g);
        guard_check(&g, nsq_cmd_fin(&g.b, ids[i]), NSQ_ERR_INVALID_ARG);
        guard_check(&g, nsq_cmd_req(&g.b, ids[i], 1, NULL),
                    NSQ_ERR_INVALID_ARG);
        guard_check(&g, nsq_cmd_touch(&g.b, ids[i]), NSQ_ERR_INVALID_ARG);
        nsq_buf_free(&g.b);
    }
}
END_TEST

START_TEST(test_empty_bodies)
{
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_pub(&g.b, "t", "x", 0, NULL), NSQ_ERR_EMPTY_BODY);
    guard_check(&g, nsq_cmd_pub(&g.b, "t", NULL, 0, NULL), NSQ_ERR_EMPTY_BODY);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 0, "x", 0, NULL),
                NSQ_ERR_EMPTY_BODY);
    guard_check(&g, nsq_cmd_auth(&g.b, "x", 0), NSQ_ERR_EMPTY_BODY);
    guard_check(&g, nsq_cmd_auth(&g.b, NULL, 0), NSQ_ERR_EMPTY_BODY);
    nsq_iov_t m[] = {{"one", 3}, {"", 0}, {"three", 5}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", m, 3, NULL), NSQ_ERR_EMPTY_BODY);
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_pub_limits)
{
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_msg_size = 10;
    const char body[] = "0123456789A";
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_pub(&g.b, "t", body, 11, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 0, body, 11, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    ck_assert_int_eq(nsq_cmd_pub(&g.b, "t", body, 10, &lim), NSQ_OK);
    assert_hex(&g.b, 6, "50554220740a0000000a30313233343536373839");
    nsq_buf_free(&g.b);

    guard_init(&g);
    ck_assert_int_eq(nsq_cmd_dpub(&g.b, "t", 5, body, 10, &lim), NSQ_OK);
    assert_hex(&g.b, 6,
               "4450554220742035"
               "0a0000000a30313233343536373839");
    nsq_buf_free(&g.b);

    /* A negative limit admits nothing. */
    guard_init(&g);
    lim.max_msg_size = -1;
    guard_check(&g, nsq_cmd_pub(&g.b, "t", body, 1, &lim), NSQ_ERR_MSG_TOO_BIG);
    nsq_buf_free(&g.b);
}
END_TEST

/* nsqd reads sizes as int32: a larger body cannot be sent, whatever the
 * limits say.  The encoder must refuse it before reading any of it. */
START_TEST(test_pub_wire_limit)
{
#if SIZE_MAX > UINT32_MAX
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_msg_size = INT64_MAX;
    lim.max_body_size = INT64_MAX;
    guarded_t g;
    guard_init(&g);
    size_t big = (size_t)INT32_MAX + 1;
    guard_check(&g, nsq_cmd_pub(&g.b, "t", "x", big, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 0, "x", big, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    guard_check(&g, nsq_cmd_auth(&g.b, "x", big), NSQ_ERR_BODY_TOO_BIG);
    nsq_iov_t m[] = {{"x", big}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", m, 1, &lim), NSQ_ERR_MSG_TOO_BIG);
    guard_check(&g, nsq_cmd_pub(&g.b, "t", "x", SIZE_MAX, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    nsq_buf_free(&g.b);
#endif
}
END_TEST

START_TEST(test_dpub_delay)
{
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", -1, "x", 1, NULL),
                NSQ_ERR_BAD_DELAY);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", INT64_MIN, "x", 1, NULL),
                NSQ_ERR_BAD_DELAY);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 3600001, "x", 1, NULL),
                NSQ_ERR_BAD_DELAY);
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", INT64_MAX, "x", 1, NULL),
                NSQ_ERR_BAD_DELAY);
    /* nsqd checks the delay before the body. */
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", -1, "x", 0, NULL),
                NSQ_ERR_BAD_DELAY);
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_req_timeout_ms = 5;
    guard_check(&g, nsq_cmd_dpub(&g.b, "t", 6, "x", 1, &lim),
                NSQ_ERR_BAD_DELAY);
    ck_assert_int_eq(nsq_cmd_dpub(&g.b, "t", 5, "x", 1, &lim), NSQ_OK);
    assert_hex(&g.b, 6, "44505542207420350a0000000178");
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_req_timeout)
{
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_req(&g.b, id16, -1, NULL), NSQ_ERR_BAD_DELAY);
    guard_check(&g, nsq_cmd_req(&g.b, id16, 3600001, NULL), NSQ_ERR_BAD_DELAY);
    guard_check(&g, nsq_cmd_req(&g.b, id16, INT64_MIN, NULL),
                NSQ_ERR_BAD_DELAY);
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_req_timeout_ms = 10;
    guard_check(&g, nsq_cmd_req(&g.b, id16, 11, &lim), NSQ_ERR_BAD_DELAY);
    ck_assert_int_eq(nsq_cmd_req(&g.b, id16, 10, &lim), NSQ_OK);
    ck_assert_uint_eq(g.b.len, 6 + 24);
    ck_assert_mem_eq(g.b.data + 6, "REQ 0123456789abcdef 10\n", 24);
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_rdy_count)
{
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_rdy(&g.b, -1, NULL), NSQ_ERR_BAD_COUNT);
    guard_check(&g, nsq_cmd_rdy(&g.b, 2501, NULL), NSQ_ERR_BAD_COUNT);
    guard_check(&g, nsq_cmd_rdy(&g.b, INT64_MIN, NULL), NSQ_ERR_BAD_COUNT);
    guard_check(&g, nsq_cmd_rdy(&g.b, INT64_MAX, NULL), NSQ_ERR_BAD_COUNT);
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_rdy_count = 3;
    guard_check(&g, nsq_cmd_rdy(&g.b, 4, &lim), NSQ_ERR_BAD_COUNT);
    ck_assert_int_eq(nsq_cmd_rdy(&g.b, 3, &lim), NSQ_OK);
    ck_assert_uint_eq(g.b.len, 6 + 6);
    ck_assert_mem_eq(g.b.data + 6, "RDY 3\n", 6);
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_mpub_errors)
{
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    lim.max_msg_size = 10;
    guarded_t g;
    guard_init(&g);
    nsq_iov_t ok[] = {{"abc", 3}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", ok, 0, NULL), NSQ_ERR_NO_MESSAGES);
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", NULL, 0, NULL),
                NSQ_ERR_NO_MESSAGES);
    nsq_iov_t big[] = {{"abc", 3}, {"0123456789A", 11}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", big, 2, &lim), NSQ_ERR_MSG_TOO_BIG);
    /* The first message at fault decides the error. */
    nsq_iov_t big_then_empty[] = {{"0123456789A", 11}, {"", 0}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", big_then_empty, 2, &lim),
                NSQ_ERR_MSG_TOO_BIG);
    nsq_iov_t empty_then_big[] = {{"", 0}, {"0123456789A", 11}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", empty_then_big, 2, &lim),
                NSQ_ERR_EMPTY_BODY);
    nsq_iov_t null_then_big[] = {{NULL, 2}, {"0123456789A", 11}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", null_then_big, 2, &lim),
                NSQ_ERR_INVALID_ARG);
    /* At the message limit. */
    nsq_iov_t edge[] = {{"0123456789", 10}};
    ck_assert_int_eq(nsq_cmd_mpub(&g.b, "t", edge, 1, &lim), NSQ_OK);
    assert_hex(&g.b, 6,
               "4d50554220740a"
               "00000012"
               "00000001"
               "0000000a30313233343536373839");
    nsq_buf_free(&g.b);
}
END_TEST

START_TEST(test_mpub_body_limit)
{
    nsq_limits_t lim;
    nsq_limits_default(&lim);
    /* Two 3-byte messages: 4 + 2 * (4 + 3) = 18 bytes of body. */
    nsq_iov_t m[] = {{"abc", 3}, {"def", 3}};
    guarded_t g;
    guard_init(&g);
    lim.max_body_size = 17;
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", m, 2, &lim), NSQ_ERR_BODY_TOO_BIG);
    lim.max_body_size = 18;
    ck_assert_int_eq(nsq_cmd_mpub(&g.b, "t", m, 2, &lim), NSQ_OK);
    assert_hex(&g.b, 6,
               "4d50554220740a"
               "00000012"
               "00000002"
               "00000003616263"
               "00000003646566");
    nsq_buf_free(&g.b);

    /* Over the int32 the wire can carry, whatever the limits; the messages
     * are never read. */
    guard_init(&g);
    lim.max_msg_size = INT64_MAX;
    lim.max_body_size = INT64_MAX;
    size_t third = (size_t)INT32_MAX / 3;
    nsq_iov_t huge[] = {{"x", third}, {"x", third}, {"x", third}};
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", huge, 3, &lim),
                NSQ_ERR_BODY_TOO_BIG);
    nsq_buf_free(&g.b);
}
END_TEST

/* nsqd's defaults: a body of exactly 5242880 bytes passes, one more fails. */
START_TEST(test_mpub_default_body_limit)
{
    size_t full = NSQ_DEFAULT_MAX_MSG_SIZE - 4;
    char *data = calloc(1, NSQ_DEFAULT_MAX_MSG_SIZE);
    ck_assert_ptr_nonnull(data);
    nsq_iov_t m[5];
    for (size_t i = 0; i < 4; i++)
        m[i] = (nsq_iov_t){data, full};
    /* 4 + 4 * 1048576 + 4 + x = 5242880 */
    m[4] = (nsq_iov_t){data, NSQ_DEFAULT_MAX_BODY_SIZE - 8 - 4 * 1048576};
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_cmd_mpub(&b, "t", m, 5, NULL), NSQ_OK);
    ck_assert_uint_eq(b.len, 7 + 4 + NSQ_DEFAULT_MAX_BODY_SIZE);
    ck_assert_mem_eq(b.data, "MPUB t\n\x00\x50\x00\x00\x00\x00\x00\x05", 15);
    nsq_buf_free(&b);
    m[4].len++;
    guarded_t g;
    guard_init(&g);
    guard_check(&g, nsq_cmd_mpub(&g.b, "t", m, 5, NULL), NSQ_ERR_BODY_TOO_BIG);
    nsq_buf_free(&g.b);
    free(data);
}
END_TEST

static Suite *command_suite(void)
{
    Suite *s = suite_create("command");
    TCase *tc = tcase_create("vectors");
    tcase_add_test(tc, test_magic);
    tcase_add_test(tc, test_pub_vector);
    tcase_add_test(tc, test_pub_vectors_more);
    tcase_add_test(tc, test_pub_pipelined_vector);
    tcase_add_test(tc, test_pub_max_msg_size_vector);
    tcase_add_test(tc, test_pub_binary_body);
    tcase_add_test(tc, test_pub_appends);
    tcase_add_test(tc, test_mpub_vectors);
    tcase_add_test(tc, test_dpub_vectors);
    tcase_add_test(tc, test_misc_vectors);
    tcase_add_test(tc, test_auth_vectors);
    tcase_add_test(tc, test_req_touch);
    tcase_add_test(tc, test_sub_ephemeral);
    suite_add_tcase(s, tc);

    tc = tcase_create("numbers");
    tcase_add_test(tc, test_rdy_all_counts);
    tcase_add_test(tc, test_decimal_edges);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_null_buffer);
    tcase_add_test(tc, test_bad_topic);
    tcase_add_test(tc, test_long_topic);
    tcase_add_test(tc, test_bad_channel);
    tcase_add_test(tc, test_null_args);
    tcase_add_test(tc, test_bad_ids);
    tcase_add_test(tc, test_empty_bodies);
    tcase_add_test(tc, test_pub_limits);
    tcase_add_test(tc, test_pub_wire_limit);
    tcase_add_test(tc, test_dpub_delay);
    tcase_add_test(tc, test_req_timeout);
    tcase_add_test(tc, test_rdy_count);
    tcase_add_test(tc, test_mpub_errors);
    tcase_add_test(tc, test_mpub_body_limit);
    tcase_add_test(tc, test_mpub_default_body_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(command_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
