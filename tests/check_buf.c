/* The growable buffer and nsqd's default limits. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "nsq/protocol.h"

START_TEST(append_grows)
{
    nsq_buf_t b;
    nsq_buf_init(&b);
    ck_assert_ptr_null(b.data);
    for (int i = 0; i < 1000; i++) {
        char c = (char)('a' + i % 26);
        ck_assert_int_eq(nsq_buf_append(&b, &c, 1), NSQ_OK);
    }
    ck_assert_uint_eq(b.len, 1000);
    ck_assert_uint_ge(b.cap, 1000);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(b.data[i], 'a' + i % 26);
    ck_assert_int_eq(nsq_buf_append(&b, NULL, 0), NSQ_OK);
    ck_assert_int_eq(nsq_buf_append(&b, NULL, 1), NSQ_ERR_INVALID_ARG);
    ck_assert_uint_eq(b.len, 1000);
    nsq_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(reserve)
{
    nsq_buf_t b = {0};
    ck_assert_int_eq(nsq_buf_reserve(&b, 5000), NSQ_OK);
    ck_assert_uint_ge(b.cap, 5000);
    char *before = b.data;
    ck_assert_int_eq(nsq_buf_reserve(&b, 10), NSQ_OK);
    ck_assert_ptr_eq(b.data, before);
    b.len = b.cap - 1;
    ck_assert_int_eq(nsq_buf_reserve(&b, SIZE_MAX), NSQ_ERR_NOMEM);
    ck_assert_uint_eq(b.len, b.cap - 1);
    nsq_buf_free(&b);
}
END_TEST

START_TEST(limits)
{
    nsq_limits_t l;
    memset(&l, 0xff, sizeof l);
    nsq_limits_default(&l);
    ck_assert_int_eq(l.max_msg_size, 1048576);
    ck_assert_int_eq(l.max_body_size, 5242880);
    ck_assert_int_eq(l.max_req_timeout_ms, 3600000);
    ck_assert_int_eq(l.max_rdy_count, 2500);
    ck_assert_int_eq(l.max_msg_timeout_ms, 900000);
    ck_assert_int_eq(l.max_heartbeat_ms, 60000);
    ck_assert_int_eq(l.min_output_timeout_ms, 25);
    ck_assert_int_eq(l.max_output_timeout_ms, 30000);
    ck_assert_int_eq(l.max_output_size, 65536);
    ck_assert_int_eq(l.max_deflate_level, 6);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");
    tcase_add_test(tc, append_grows);
    tcase_add_test(tc, reserve);
    tcase_add_test(tc, limits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
