/*
 * The programs against a real nsqd: the nsqpub CLI and nsq's own to_nsq
 * fed the same input store the same messages (but for to_nsq's lost last
 * byte), and nsqpub-bench's counts match nsqd's /stats (both hosts).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"
#include "producer_testutil.h"

/* Every byte but the delimiter, in records of up to 40 bytes, then an
 * empty record and an unterminated last one. */
static size_t make_input(char *buf, size_t cap, const char **expected,
                         size_t *lens, size_t *nrec)
{
    size_t n = 0, rec = 0, start = 0;
    for (int b = 0; b < 256; b++) {
        if (b == '\n')
            continue;
        buf[n++] = (char)b;
        if (n - start == 40) {
            expected[rec] = buf + start;
            lens[rec++] = n - start;
            buf[n++] = '\n';
            start = n;
        }
    }
    expected[rec] = buf + start;
    lens[rec++] = n - start;
    buf[n++] = '\n';
    buf[n++] = '\n'; /* an empty record: skipped */
    start = n;
    memcpy(buf + n, "last-record", 11);
    n += 11;
    expected[rec] = buf + start;
    lens[rec++] = 11;
    ck_assert_uint_le(n, cap);
    *nrec = rec;
    return n;
}

START_TEST(cli_and_to_nsq_store_the_same)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    char dir[512], in[600], out[600], bin[600], topic_arg[64], addr_arg[64];
    it_mkdir(dir, sizeof dir, "cli");
    snprintf(in, sizeof in, "%s/input", dir);
    snprintf(out, sizeof out, "%s/output", dir);
    char buf[512];
    const char *expected[16];
    size_t lens[16], nrec;
    size_t n = make_input(buf, sizeof buf, expected, lens, &nrec);
    FILE *f = fopen(in, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    fclose(f);
    snprintf(addr_arg, sizeof addr_arg, "--nsqd-tcp-address=%s", d->addr);

    snprintf(topic_arg, sizeof topic_arg, "--topic=%s", "interop_cli");
    char *cli[] = {(char *)NSQPUB_CLI, topic_arg, addr_arg, (char *)"--quiet",
                   NULL};
    ck_assert_int_eq(it_run(cli, in, out), 0);
    char topic_arg2[64];
    snprintf(topic_arg2, sizeof topic_arg2, "--topic=%s", "interop_to_nsq");
    char *to_nsq[] = {(char *)it_bin("to_nsq", bin, sizeof bin), topic_arg2,
                      addr_arg, NULL};
    int rc = it_run(to_nsq, in, out);
    ck_assert_msg(rc == 0, "to_nsq exit %d: %s", rc, it_read_file(out, NULL));

    it_msg_t *a, *b;
    ck_assert_int_eq(it_topic_stats(d, "interop_cli").message_count,
                     (int64_t)nrec);
    ck_assert_int_eq(it_topic_stats(d, "interop_to_nsq").message_count,
                     (int64_t)nrec);
    ck_assert_uint_eq(it_consume(d, "interop_cli", nrec, &a), nrec);
    ck_assert_uint_eq(it_consume(d, "interop_to_nsq", nrec, &b), nrec);
    /* One connection each, published in order, read back in order. */
    for (size_t i = 0; i < nrec; i++) {
        ck_assert_uint_eq(a[i].len, lens[i]);
        ck_assert_mem_eq(a[i].body, expected[i], lens[i]);
        size_t want_b = i + 1 == nrec ? lens[i] - 1 : lens[i];
        ck_assert_uint_eq(b[i].len, want_b);
        ck_assert_mem_eq(b[i].body, expected[i], want_b);
    }
    ck_assert_str_eq(a[nrec - 1].body, "last-record");
    ck_assert_str_eq(b[nrec - 1].body, "last-recor");
    it_msgs_free(a, nrec);
    it_msgs_free(b, nrec);
    it_nsqd_free(d);
}
END_TEST

/* ------------------------------------------------------------ bench */

/* Runs nsqpub-bench --json with args against d; its "count" and "errors"
 * must match nsqd's message_count for the topic. */
static void bench_counts(const char *mode, const char *count, const char *extra)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    char dir[512], out[600], addr_arg[64], topic[64], topic_arg[80],
        mode_arg[32], count_arg[32];
    it_mkdir(dir, sizeof dir, "bench");
    snprintf(out, sizeof out, "%s/report.json", dir);
    snprintf(addr_arg, sizeof addr_arg, "--nsqd-tcp-address=%s", d->addr);
    snprintf(topic, sizeof topic, "interop_bench_%s", mode);
    snprintf(topic_arg, sizeof topic_arg, "--topic=%s", topic);
    snprintf(mode_arg, sizeof mode_arg, "--mode=%s", mode);
    snprintf(count_arg, sizeof count_arg, "--count=%s", count);
    char *argv[] = {(char *)NSQPUB_BENCH,
                    addr_arg,
                    topic_arg,
                    mode_arg,
                    count_arg,
                    (char *)"--size=200",
                    (char *)"--json",
                    (char *)extra,
                    NULL};
    int rc = it_run(argv, NULL, out);
    char *report = it_read_file(out, NULL);
    ck_assert_msg(rc == 0, "bench exit %d: %s", rc, report);
    cJSON *json = cJSON_Parse(report);
    ck_assert_msg(json != NULL, "report: %s", report);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(json, "count");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(json, "errors");
    ck_assert_msg(cJSON_IsNumber(c) && cJSON_IsNumber(e), "report: %s", report);
    long long got_count = (long long)c->valuedouble;
    long long errors = (long long)e->valuedouble;
    cJSON_Delete(json);
    ck_assert_int_eq(got_count, atoll(count));
    ck_assert_int_eq(errors, 0);
    it_topic_stats_t ts = it_topic_stats(d, topic);
    ck_assert_int_eq(ts.message_count, got_count);
    ck_assert_int_eq(ts.depth, got_count);
    free(report);
    it_nsqd_free(d);
}

START_TEST(bench_async_counts_match_stats)
{
    bench_counts("async", "20000", NULL);
}
END_TEST

START_TEST(bench_sync_counts_match_stats)
{
    bench_counts("sync", "2000", "--threads=4");
}
END_TEST

START_TEST(bench_mpub_counts_match_stats)
{
    bench_counts("mpub", "50000", "--batch=100");
}
END_TEST

/* The producer on the bench's own loop: the same counts reach nsqd. */
START_TEST(bench_on_loop_async_counts_match_stats)
{
    bench_counts("async", "20000", "--on-loop");
}
END_TEST

START_TEST(bench_on_loop_mpub_counts_match_stats)
{
    bench_counts("mpub", "50000", "--on-loop");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("interop_tools");
    TCase *tc = tcase_create("tools");
    tcase_set_timeout(tc, IT_CASE_TIMEOUT);
    tcase_add_test(tc, cli_and_to_nsq_store_the_same);
    tcase_add_test(tc, bench_async_counts_match_stats);
    tcase_add_test(tc, bench_sync_counts_match_stats);
    tcase_add_test(tc, bench_mpub_counts_match_stats);
    tcase_add_test(tc, bench_on_loop_async_counts_match_stats);
    tcase_add_test(tc, bench_on_loop_mpub_counts_match_stats);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(suite());
}
