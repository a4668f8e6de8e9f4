/* Topic and channel names: nsqd's ^[.a-zA-Z0-9_-]+(#ephemeral)?$, 1-64. */
#include <check.h>
#include <string.h>

#include "nsq/protocol.h"

static bool topic(const char *s)
{
    return nsq_topic_valid(s, strlen(s));
}

START_TEST(accepts)
{
    ck_assert(topic("a"));
    ck_assert(topic("conf_publish_pub_ok"));
    ck_assert(topic("A.b-c_9"));
    ck_assert(topic("x#ephemeral"));
    ck_assert(topic("..."));
    ck_assert(nsq_channel_valid("ch#ephemeral", 12));
}
END_TEST

START_TEST(rejects)
{
    ck_assert(!topic(""));
    ck_assert(!topic("bad!"));
    ck_assert(!topic("a/b"));
    ck_assert(!topic("a b"));
    ck_assert(!topic("#ephemeral"));
    ck_assert(!topic("a#ephemeralx"));
    ck_assert(!topic("a#ephemeral#ephemeral"));
    ck_assert(!topic("a#Ephemeral"));
    ck_assert(!topic("caf\xc3\xa9"));
    ck_assert(!nsq_topic_valid(NULL, 3));
    /* An embedded NUL is a byte like any other: invalid. */
    ck_assert(!nsq_topic_valid("ab\0c", 4));
    ck_assert(!nsq_channel_valid("ch!", 3));
}
END_TEST

START_TEST(length_limit)
{
    char name[80];
    memset(name, 'x', sizeof name);
    ck_assert(nsq_topic_valid(name, 64));
    ck_assert(!nsq_topic_valid(name, 65));
    /* The suffix counts toward the 64 bytes. */
    memcpy(name + 54, "#ephemeral", 10);
    ck_assert(nsq_topic_valid(name, 64));
    memset(name, 'x', sizeof name);
    memcpy(name + 55, "#ephemeral", 10);
    ck_assert(!nsq_topic_valid(name, 65));
    ck_assert(!nsq_channel_valid(name, 65));
}
END_TEST

START_TEST(every_byte)
{
    for (int c = 0; c < 256; c++) {
        char s[1] = {(char)c};
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        ck_assert_msg(nsq_topic_valid(s, 1) == want, "byte %d", c);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("names");
    TCase *tc = tcase_create("names");
    tcase_add_test(tc, accepts);
    tcase_add_test(tc, rejects);
    tcase_add_test(tc, length_limit);
    tcase_add_test(tc, every_byte);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
