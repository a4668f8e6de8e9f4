/* Go-style durations, as nsqd's and to_nsq's flags take them. */
#include <check.h>
#include <stdint.h>

#include "nsq/protocol.h"

static int64_t ns(const char *s)
{
    int64_t v = -12345;
    ck_assert_msg(nsq_duration_parse(s, &v) == NSQ_OK, "'%s' rejected", s);
    return v;
}

static void bad(const char *s)
{
    int64_t v = 777;
    ck_assert_msg(nsq_duration_parse(s, &v) == NSQ_ERR_INVALID_ARG,
                  "'%s' accepted", s);
    ck_assert_int_eq(v, 777);
}

START_TEST(units)
{
    ck_assert_int_eq(ns("0"), 0);
    ck_assert_int_eq(ns("1ns"), 1);
    ck_assert_int_eq(ns("100us"), 100000);
    ck_assert_int_eq(ns("3\xc2\xb5s"), 3000);
    ck_assert_int_eq(ns("3\xce\xbcs"), 3000);
    ck_assert_int_eq(ns("250ms"), 250000000);
    ck_assert_int_eq(ns("2s"), 2000000000);
    ck_assert_int_eq(ns("1m"), 60000000000);
    ck_assert_int_eq(ns("1h"), 3600000000000);
    ck_assert_int_eq(ns("0s"), 0);
}
END_TEST

START_TEST(compound_and_fractions)
{
    ck_assert_int_eq(ns("1h30m"), 5400000000000);
    ck_assert_int_eq(ns("1m0.5s"), 60500000000);
    ck_assert_int_eq(ns("1.5s"), 1500000000);
    ck_assert_int_eq(ns(".5s"), 500000000);
    ck_assert_int_eq(ns("1.s"), 1000000000);
    ck_assert_int_eq(ns("0.001ms"), 1000);
    ck_assert_int_eq(ns("-1.5s"), -1500000000);
    ck_assert_int_eq(ns("+2ms"), 2000000);
    ck_assert_int_eq(ns("1.0000000001s"), 1000000000);
}
END_TEST

START_TEST(limits)
{
    ck_assert_int_eq(ns("9223372036854775807ns"), INT64_MAX);
    ck_assert_int_eq(ns("-9223372036854775808ns"), INT64_MIN);
    bad("9223372036854775808ns");
    bad("2562048h");
    bad("99999999999999999999s");
    ck_assert_int_eq(ns("2562047h"), 2562047LL * 3600 * 1000000000);
}
END_TEST

START_TEST(rejects)
{
    bad("");
    bad("-");
    bad("1");
    bad("10");
    bad("s");
    bad(".s");
    bad("1x");
    bad("1 s");
    bad("1sm");
    bad("1S");
    bad("ms");
    bad("1..2s");
    ck_assert_int_eq(nsq_duration_parse(NULL, &(int64_t){0}),
                     NSQ_ERR_INVALID_ARG);
    ck_assert_int_eq(nsq_duration_parse("1s", NULL), NSQ_ERR_INVALID_ARG);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("duration");
    TCase *tc = tcase_create("duration");
    tcase_add_test(tc, units);
    tcase_add_test(tc, compound_and_fractions);
    tcase_add_test(tc, limits);
    tcase_add_test(tc, rejects);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
