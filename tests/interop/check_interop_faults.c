/*
 * A real nsqd over time and through failures: idle across heartbeats,
 * restarted on the same port, and killed with SIGKILL in the middle of an
 * async run, where every result must agree with what nsqd stored.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"
#include "kill9.h"
#include "producer_testutil.h"

/* Idle across several of nsqd's heartbeats (interval 1 s, nsqd allowing
 * at most 2 s): each is answered, the connection stays up, and a publish
 * afterwards succeeds on it. */
START_TEST(idle_across_heartbeats_then_publish)
{
    const char *flags[] = {"--max-heartbeat-interval=2s", NULL};
    it_nsqd_t *d = it_nsqd_start(flags);
    const char *kv[] = {"heartbeat_interval", "1s", NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    char err[256] = "";
    ck_assert_int_eq(nsq_producer_ping(p, err, sizeof err), NSQ_OK);
    bool ok;
    WAIT_UNTIL(ok, pstats(p).heartbeats >= 3, IT_WAIT_MS);
    ck_assert_msg(ok, "heartbeats answered: %llu",
                  (unsigned long long)pstats(p).heartbeats);
    ck_assert_int_eq(
        nsq_producer_publish(p, "interop_idle", "after", 5, err, sizeof err),
        NSQ_OK);
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.connects, 1);
    ck_assert_uint_eq(st.disconnects, 0);
    ck_assert_uint_eq(st.published, 1);
    it_msg_t *got;
    ck_assert_uint_eq(it_consume(d, "interop_idle", 1, &got), 1);
    ck_assert_str_eq(got[0].body, "after");
    it_msgs_free(got, 1);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

/* nsqd stopped and started again on the same port and data folder: the
 * producer sees the close, reconnects on the next publish, and both
 * messages are stored. */
START_TEST(restart_same_port_publishing_goes_on)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    nsq_producer_t *p = producer_new(d->addr, NULL);
    char err[256] = "";
    ck_assert_int_eq(
        nsq_producer_publish(p, "interop_restart", "one", 3, err, sizeof err),
        NSQ_OK);
    it_nsqd_stop(d);
    bool ok;
    WAIT_UNTIL(ok, pstats(p).disconnects == 1, IT_WAIT_MS);
    ck_assert(ok);
    it_nsqd_restart(d);
    nsq_err_t rc =
        nsq_producer_publish(p, "interop_restart", "two", 3, err, sizeof err);
    ck_assert_msg(rc == NSQ_OK, "%s (%s)", nsq_err2name(rc), err);
    nsq_producer_stats_t st = pstats(p);
    ck_assert_uint_eq(st.connects, 2);
    ck_assert_uint_eq(st.disconnects, 1);
    ck_assert_uint_eq(st.published, 2);
    ck_assert_uint_eq(st.in_doubt + st.not_sent + st.timed_out, 0);

    /* "one" was saved by nsqd's clean exit, "two" came after the restart. */
    it_topic_stats_t ts = it_topic_stats(d, "interop_restart");
    ck_assert_int_eq(ts.depth, 2);
    it_msg_t *got;
    ck_assert_uint_eq(it_consume(d, "interop_restart", 2, &got), 2);
    it_msgs_sort(got, 2);
    ck_assert_str_eq(got[0].body, "one");
    ck_assert_str_eq(got[1].body, "two");
    it_msgs_free(got, 2);
    nsq_producer_destroy(p);
    it_nsqd_free(d);
}
END_TEST

/* ------------------------------------------------------------ kill -9 */

enum { N_KILL = 4000, KILL_AFTER = 400 };

/*
 * SIGKILL of nsqd (--mem-queue-size=0 --sync-every=1: each message written
 * to its disk queue before its OK) during an async run, then nsqd again on
 * the same data folder.  Every publish got exactly one result; no
 * never-processed message is stored; nothing is stored twice; every
 * NSQ_OK message is stored except, at most, the last one acknowledged
 * (nsqd's exception: see it_assert_kill9_stored).
 */
START_TEST(kill9_every_ok_stored_nothing_unsent_stored)
{
    const char *flags[] = {"--mem-queue-size=0", "--sync-every=1", NULL};
    it_nsqd_t *d = it_nsqd_start(flags);
    const char *kv[] = {"publish_timeout", "8s", "stop_timeout", "2s", NULL};
    nsq_producer_t *p = producer_new(d->addr, kv);
    const char *topic = "interop_kill9";
    rec_t rec;
    rec_init(&rec, N_KILL);
    char body[32];
    size_t accepted = 0;
    nsq_err_t refused[N_KILL];
    for (size_t i = 0; i < N_KILL; i++) {
        int n = snprintf(body, sizeof body, "kill9-%06zu", i);
        refused[i] = nsq_producer_publish_async(p, topic, body, (size_t)n,
                                                rec_cb, rec_slot(&rec, i));
        if (refused[i] == NSQ_OK)
            accepted++;
        if (i + 1 == N_KILL / 2) {
            /* Half are queued or in flight: wait for some OKs, then kill. */
            ck_assert(rec_wait(&rec, KILL_AFTER, IT_WAIT_MS));
            it_nsqd_kill9(d);
        }
    }
    nsq_producer_stop(p);
    ck_assert(rec_wait(&rec, (int)accepted, IT_WAIT_MS));

    nsq_err_t final[N_KILL];
    it_kill9_tally_t t = it_kill9_results(&rec, refused, N_KILL, final);
    ck_assert_uint_eq(t.ok + t.unsent + t.doubt, N_KILL);
    ck_assert_uint_ge(t.ok, KILL_AFTER);
    ck_assert_uint_gt(t.unsent, 0);

    it_nsqd_restart(d);
    size_t last_ok = SIZE_MAX;
    for (size_t i = 0; i < N_KILL; i++)
        if (final[i] == NSQ_OK)
            last_ok = i;
    it_assert_kill9_stored(d, topic, "kill9-", final, N_KILL, last_ok);
    nsq_producer_destroy(p);
    rec_free(&rec);
    it_nsqd_free(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("interop_faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, IT_CASE_TIMEOUT);
    tcase_add_test(tc, idle_across_heartbeats_then_publish);
    tcase_add_test(tc, restart_same_port_publishing_goes_on);
    tcase_add_test(tc, kill9_every_ok_stored_nothing_unsent_stored);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(suite());
}
