/* Errors: the X-macro list, the E_* mapping and which codes close. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "nsq/protocol.h"

START_TEST(names_and_strings)
{
    ck_assert_str_eq(nsq_err2name(NSQ_OK), "OK");
    ck_assert_str_eq(nsq_err2name(NSQ_ERR_NOT_SENT), "ERR_NOT_SENT");
    ck_assert_str_eq(nsq_err2name(NSQ_E_BAD_TOPIC), "E_BAD_TOPIC");
    ck_assert_str_eq(nsq_err2name((nsq_err_t)-999), "UNKNOWN");
    ck_assert_str_eq(nsq_err2str(NSQ_OK), "success");
    ck_assert_str_eq(nsq_err2str(NSQ_ERR_QUEUE_FULL), "queue full");
    ck_assert_str_eq(nsq_err2str((nsq_err_t)12345), "unknown error");
    ck_assert_int_eq(NSQ_OK, 0);
    ck_assert_int_lt(NSQ_ERR_INVALID_ARG, 0);
    ck_assert_int_gt(NSQ_E_INVALID, 0);
}
END_TEST

/* Every broker code maps back from its own name, and each value is
 * distinct: the list cannot silently hold two codes with one value. */
START_TEST(every_code_round_trips)
{
    static const nsq_err_t all[] = {
#define X(name, value, fate, text) NSQ_##name,
        NSQ_ERRORS(X)
#undef X
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            ck_assert_int_ne(all[i], all[j]);
        const char *name = nsq_err2name(all[i]);
        ck_assert_str_ne(name, "UNKNOWN");
        if (!nsq_err_is_broker(all[i]))
            continue;
        char frame[128];
        snprintf(frame, sizeof frame, "%s some text", name);
        ck_assert_int_eq(nsq_err_from_frame(frame, strlen(frame)), all[i]);
        /* The bare code, as E_BAD_PROTOCOL is sent. */
        ck_assert_int_eq(nsq_err_from_frame(name, strlen(name)), all[i]);
    }
}
END_TEST

START_TEST(from_frame_edges)
{
    ck_assert_int_eq(nsq_err_from_frame("E_BAD_TOPIC", 11), NSQ_E_BAD_TOPIC);
    /* A prefix of a code is not the code. */
    ck_assert_int_eq(nsq_err_from_frame("E_BAD_TOPI", 10), NSQ_E_UNKNOWN);
    ck_assert_int_eq(nsq_err_from_frame("E_BAD_TOPICS x", 14), NSQ_E_UNKNOWN);
    ck_assert_int_eq(nsq_err_from_frame("E_NEW_THING x", 13), NSQ_E_UNKNOWN);
    ck_assert_int_eq(nsq_err_from_frame("", 0), NSQ_E_UNKNOWN);
    ck_assert_int_eq(nsq_err_from_frame(NULL, 5), NSQ_E_UNKNOWN);
    /* Local names are never taken from the broker. */
    ck_assert_int_eq(nsq_err_from_frame("ERR_NOT_SENT x", 14), NSQ_E_UNKNOWN);
    ck_assert_int_eq(nsq_err_from_frame("OK", 2), NSQ_E_UNKNOWN);
    /* The length bounds the word, not a NUL. */
    ck_assert_int_eq(nsq_err_from_frame("E_INVALIDxxx", 9), NSQ_E_INVALID);
}
END_TEST

START_TEST(fatal_codes)
{
    ck_assert(nsq_err_is_fatal(NSQ_E_INVALID));
    ck_assert(nsq_err_is_fatal(NSQ_E_BAD_TOPIC));
    ck_assert(nsq_err_is_fatal(NSQ_E_PUB_FAILED));
    ck_assert(nsq_err_is_fatal(NSQ_E_UNKNOWN));
    ck_assert(!nsq_err_is_fatal(NSQ_E_FIN_FAILED));
    ck_assert(!nsq_err_is_fatal(NSQ_E_REQ_FAILED));
    ck_assert(!nsq_err_is_fatal(NSQ_E_TOUCH_FAILED));
    ck_assert(!nsq_err_is_fatal(NSQ_OK));
    ck_assert(!nsq_err_is_fatal(NSQ_ERR_IO));
    ck_assert(nsq_err_is_broker(NSQ_E_AUTH_FIRST));
    ck_assert(!nsq_err_is_broker(NSQ_ERR_TIMED_OUT));
}
END_TEST

/* Each code's fate, spelled out, so that a code moved to the wrong fate in
 * the list fails here. */
START_TEST(fates)
{
    static const struct {
        nsq_err_t err;
        nsq_fate_t fate;
    } want[] = {
        {NSQ_OK, NSQ_FATE_STORED},
        {NSQ_ERR_NOT_SENT, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_CONNECT, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_STOPPED, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_QUEUE_FULL, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_TIMED_OUT_UNSENT, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_WRONG_THREAD, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_BAD_TOPIC, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_TLS, NSQ_FATE_NOT_STORED},
        {NSQ_ERR_IN_DOUBT, NSQ_FATE_UNKNOWN},
        {NSQ_ERR_TIMED_OUT, NSQ_FATE_UNKNOWN},
        {NSQ_E_BAD_MESSAGE, NSQ_FATE_NOT_STORED},
        {NSQ_E_PUB_FAILED, NSQ_FATE_NOT_STORED},
        {NSQ_E_UNAUTHORIZED, NSQ_FATE_NOT_STORED},
        {NSQ_E_MPUB_FAILED, NSQ_FATE_UNKNOWN},
        {NSQ_E_UNKNOWN, NSQ_FATE_UNKNOWN},
        {(nsq_err_t)-999, NSQ_FATE_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(nsq_err_fate(want[i].err) == want[i].fate, "%s: %s",
                      nsq_err2name(want[i].err),
                      nsq_fate2str(nsq_err_fate(want[i].err)));
    ck_assert_str_eq(nsq_fate2str(NSQ_FATE_STORED), "stored");
    ck_assert_str_eq(nsq_fate2str(NSQ_FATE_NOT_STORED), "not stored");
    ck_assert_str_eq(nsq_fate2str(NSQ_FATE_UNKNOWN), "may be stored");
    ck_assert_str_eq(nsq_fate2str((nsq_fate_t)77), "may be stored");
    /* The two "bad message" codes are told apart by name. */
    ck_assert_str_eq(nsq_err2name(NSQ_ERR_BAD_MESSAGE_FRAME),
                     "ERR_BAD_MESSAGE_FRAME");
    ck_assert_str_eq(nsq_err2name(NSQ_E_BAD_MESSAGE), "E_BAD_MESSAGE");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("errors");
    tcase_add_test(tc, names_and_strings);
    tcase_add_test(tc, every_code_round_trips);
    tcase_add_test(tc, from_frame_edges);
    tcase_add_test(tc, fatal_codes);
    tcase_add_test(tc, fates);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
