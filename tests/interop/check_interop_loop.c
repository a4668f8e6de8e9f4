/*
 * The producer on the application's loop (nsq_producer_new_on_loop)
 * against a real nsqd: publishes read back, nsqd killed and started again
 * while the loop publishes, and a close with messages in flight.  Each
 * case runs its loop on the test's thread, as an application does.
 */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "interop.h"
#include "kill9.h"
#include "loop_testutil.h"
#include "producer_testutil.h"

static void count_closed(nsq_producer_t *p, void *opaque)
{
    (void)p;
    (*(int *)opaque)++;
}

/* ------------------------------------------------------------ read back */

enum { N_BACK = 3000, WINDOW = 300 };

/* Publishes driven by their callbacks: each completion publishes the next
 * body until all are out; the last closes the producer. */
typedef struct back {
    nsq_producer_t *p;
    size_t sent, done;
    int closed;
} back_t;

static void back_next(back_t *b);

static void back_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    back_t *b = opaque;
    ck_assert_msg(err == NSQ_OK, "%s: %s", nsq_err2name(err), detail);
    b->done++;
    back_next(b);
    if (b->done == N_BACK)
        ck_assert_int_eq(nsq_producer_close(p, count_closed, &b->closed),
                         NSQ_OK);
}

static void back_body(size_t i, char out[16])
{
    snprintf(out, 16, "loop-%06zu", i);
}

static void back_next(back_t *b)
{
    if (b->sent == N_BACK)
        return;
    char body[16];
    back_body(b->sent, body);
    ck_assert_int_eq(nsq_producer_publish_async(b->p, "interop_loop", body,
                                                strlen(body), back_cb, b),
                     NSQ_OK);
    b->sent++;
}

/* N publishes from the loop (most from callbacks), all acknowledged; nsqd
 * counted N and a consumer reads exactly those bodies back. */
START_TEST(loop_publish_read_back)
{
    it_nsqd_t *d = it_nsqd_start(NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    back_t b = {0};
    b.p = loop_producer(&loop, d->addr, NULL);
    for (int i = 0; i < WINDOW; i++)
        back_next(&b);
    run_to_end(&loop);
    ck_assert_uint_eq(b.done, N_BACK);
    ck_assert_int_eq(b.closed, 1);
    it_topic_stats_t ts = it_topic_stats(d, "interop_loop");
    ck_assert_int_eq(ts.message_count, N_BACK);
    it_msg_t *got;
    size_t k = it_consume(d, "interop_loop", N_BACK, &got);
    ck_assert_uint_eq(k, N_BACK);
    it_msgs_sort(got, k);
    for (size_t i = 0; i < k; i++) {
        char want[16];
        back_body(i, want);
        ck_assert_uint_eq(got[i].len, strlen(want));
        ck_assert_mem_eq(got[i].body, want, got[i].len);
    }
    it_msgs_free(got, k);
    it_nsqd_free(d);
}
END_TEST

/* ------------------------------------------------------------ kill -9 */

enum {
    N_KILL = 6000,    /* at most this many publishes */
    KILL_AFTER = 300, /* OKs before the kill */
    PER_TICK = 2,     /* publishes per timer tick (every 2 ms) */
    FINAL = 300       /* published once the producer has reconnected */
};

typedef struct killrun {
    rec_t rec; /* first: a callback's slot leads back to the run */
    it_nsqd_t *d;
    nsq_producer_t *p;
    uv_timer_t tick;
    nsq_err_t refused[N_KILL]; /* what each call returned */
    bool acked_before_kill[N_KILL];
    size_t sent;     /* publishes made */
    size_t finished; /* publishes with a result (callback or refusal) */
    size_t oks;
    bool killed;
    atomic_bool restarted; /* set by the restarting thread */
    atomic_bool done;      /* the restarting thread may end */
    size_t first_after;    /* first publish made after the restart */
    size_t final_from;     /* first publish made after a reconnect */
    bool ticking;
    pthread_t restarter;
    int closed;
} killrun_t;

/*
 * nsqd comes back while the loop goes on publishing.  The thread that
 * starts nsqd lives until the case is done with it: the children of the
 * interop support die with the thread that made them (PR_SET_PDEATHSIG).
 */
static void *restart_main(void *arg)
{
    killrun_t *k = arg;
    it_sleep_ms(300);
    it_nsqd_restart(k->d);
    atomic_store(&k->restarted, true);
    while (!atomic_load(&k->done))
        it_sleep_ms(5);
    return NULL;
}

/* Closes once the publishing ended and every publish has its result. */
static void kill_maybe_close(killrun_t *k)
{
    if (!k->ticking && k->finished == k->sent && !k->closed)
        ck_assert_int_eq(nsq_producer_close(k->p, count_closed, &k->closed),
                         NSQ_OK);
}

static void kill_cb(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    rec_slot_t *s = opaque;
    killrun_t *k = (killrun_t *)s->rec; /* rec is its first member */
    rec_cb(p, err, detail, opaque);
    k->finished++;
    if (err == NSQ_OK) {
        k->oks++;
        k->acked_before_kill[s->idx] = !k->killed;
        /* A publish made after the restart succeeded: reconnected. */
        if (k->first_after && s->idx >= k->first_after && !k->final_from)
            k->final_from = k->sent;
    }
    kill_maybe_close(k);
}

static void on_tick(uv_timer_t *h)
{
    killrun_t *k = h->data;
    if (!k->killed && k->oks >= KILL_AFTER) {
        it_nsqd_kill9(k->d);
        k->killed = true;
        ck_assert_int_eq(pthread_create(&k->restarter, NULL, restart_main, k),
                         0);
    }
    if (k->killed && !k->first_after && atomic_load(&k->restarted))
        k->first_after = k->sent;
    size_t end = k->final_from ? k->final_from + FINAL : N_KILL;
    for (int i = 0; i < PER_TICK && k->sent < end; i++) {
        char body[16];
        int n = snprintf(body, sizeof body, "kill9-%06zu", k->sent);
        nsq_err_t rc = nsq_producer_publish_async(k->p, "interop_loop_kill9",
                                                  body, (size_t)n, kill_cb,
                                                  rec_slot(&k->rec, k->sent));
        k->refused[k->sent++] = rc;
        if (rc != NSQ_OK)
            k->finished++; /* no callback will come */
    }
    if (k->sent == end) {
        k->ticking = false;
        uv_close((uv_handle_t *)h, NULL);
        kill_maybe_close(k);
    }
}

/*
 * nsqd (--mem-queue-size=0 --sync-every=1) killed with SIGKILL while the
 * loop publishes, and started again on its data folder while the loop
 * goes on: every publish gets one result; the publishes made once the
 * producer has reconnected all succeed; nsqd stores no never-processed
 * message, nothing twice, and every acknowledged one (but nsqd's own
 * exception, see it_assert_kill9_stored).
 */
START_TEST(loop_kill9_and_restart_while_publishing)
{
    const char *flags[] = {"--mem-queue-size=0", "--sync-every=1", NULL};
    const char *kv[] = {"publish_timeout", "8s", "stop_timeout", "2s", NULL};
    killrun_t *k = calloc(1, sizeof *k);
    ck_assert_ptr_nonnull(k);
    k->d = it_nsqd_start(flags);
    uv_loop_t loop;
    uv_loop_init(&loop);
    rec_init(&k->rec, N_KILL);
    k->p = loop_producer(&loop, k->d->addr, kv);
    uv_timer_init(&loop, &k->tick);
    k->tick.data = k;
    k->ticking = true;
    uv_timer_start(&k->tick, on_tick, 0, 2);
    run_to_end(&loop);

    ck_assert(k->killed);
    ck_assert_int_eq(k->closed, 1);
    ck_assert_msg(k->final_from > k->first_after,
                  "no publish after the restart succeeded (%zu sent)", k->sent);
    ck_assert_uint_eq(k->sent, k->final_from + FINAL);
    it_kill9_tally_t t =
        it_kill9_results(&k->rec, k->refused, k->sent, k->refused);
    size_t may_lose = SIZE_MAX;
    for (size_t i = 0; i < k->sent; i++)
        if (k->refused[i] == NSQ_OK && k->acked_before_kill[i])
            may_lose = i;
    ck_assert_uint_gt(t.unsent + t.doubt, 0); /* some met the dead nsqd */
    for (size_t i = k->final_from; i < k->sent; i++)
        ck_assert_int_eq(k->refused[i], NSQ_OK);
    it_assert_kill9_stored(k->d, "interop_loop_kill9", "kill9-", k->refused,
                           k->sent, may_lose);
    it_nsqd_free(k->d);
    atomic_store(&k->done, true);
    pthread_join(k->restarter, NULL);
    rec_free(&k->rec);
    free(k);
}
END_TEST

/* ------------------------------------------------------------ close */

enum { N_CLOSE = 2000 };

typedef struct closing {
    rec_t rec;
    int closed;
    int callbacks_before_closed;
} closing_t;

static void closing_closed(nsq_producer_t *p, void *opaque)
{
    closing_t *c = opaque;
    (void)p;
    c->closed++;
    c->callbacks_before_closed = atomic_load(&c->rec.total);
}

/* The state letter of process pid ('T' once stopped), '?' if unknown. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* the name may hold spaces */
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

/* SIGSTOP, and wait until the process is stopped (the signal is sent at
 * once, but takes effect when its threads next run). */
static void freeze(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    bool ok;
    WAIT_UNTIL(ok, proc_state(pid) == 'T', IT_WAIT_MS);
    ck_assert_msg(ok, "nsqd did not stop: state %c", proc_state(pid));
}

/*
 * Close while nsqd has commands unanswered: frozen (SIGSTOP), so that no
 * answer can come (every publish then in doubt once stop_timeout passes),
 * or running (each OK or in doubt).  Every callback runs once, all before
 * on_closed, which runs once; no handle is left on the loop; nsqd has at
 * least the OKs and at most everything.
 */
START_TEST(loop_close_with_messages_in_flight)
{
    bool frozen = _i == 1;
    it_nsqd_t *d = it_nsqd_start(NULL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    closing_t c = {0};
    rec_init(&c.rec, N_CLOSE + 1);
    nsq_producer_t *p = loop_producer(&loop, d->addr, NULL);
    /* Connected first, so that the commands are written before the
     * close. */
    ck_assert_int_eq(nsq_producer_publish_async(p, "interop_loop_close", "0", 1,
                                                rec_cb,
                                                rec_slot(&c.rec, N_CLOSE)),
                     NSQ_OK);
    bool ok;
    RUN_UNTIL(ok, &loop, atomic_load(&c.rec.total) > 0);
    ck_assert(ok);
    ck_assert_int_eq(rec_result(&c.rec, N_CLOSE), NSQ_OK);
    if (frozen)
        freeze(d->pid);
    for (size_t i = 0; i < N_CLOSE; i++)
        ck_assert_int_eq(nsq_producer_publish_async(p, "interop_loop_close",
                                                    "x", 1, rec_cb,
                                                    rec_slot(&c.rec, i)),
                         NSQ_OK);
    /* One turn writes them; then close, with answers outstanding. */
    uv_run(&loop, UV_RUN_NOWAIT);
    nsq_producer_stats_t s = pstats(p);
    ck_assert_uint_eq(s.queued, 0);
    if (frozen)
        ck_assert_uint_gt(s.in_flight, 0);
    ck_assert_int_eq(nsq_producer_close(p, closing_closed, &c), NSQ_OK);
    run_to_end(&loop);
    if (frozen)
        kill(d->pid, SIGCONT);
    ck_assert_int_eq(c.closed, 1);
    ck_assert_int_eq(c.callbacks_before_closed, N_CLOSE + 1);
    int64_t oks = 0;
    for (size_t i = 0; i < N_CLOSE; i++) {
        ck_assert_int_eq(rec_calls(&c.rec, i), 1);
        nsq_err_t r = rec_result(&c.rec, i);
        ck_assert_msg(r == NSQ_OK || (r == NSQ_ERR_IN_DOUBT), "%zu: %s", i,
                      nsq_err2name(r));
        ck_assert(!frozen || r == NSQ_ERR_IN_DOUBT);
        oks += r == NSQ_OK;
    }
    /* nsqd, thawed, may still store what it had read. */
    it_topic_stats_t ts = it_topic_stats(d, "interop_loop_close");
    ck_assert_int_ge(ts.message_count, oks + 1);
    ck_assert_int_le(ts.message_count, N_CLOSE + 1);
    rec_free(&c.rec);
    it_nsqd_free(d);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("interop_loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, IT_CASE_TIMEOUT);
    tcase_add_test(tc, loop_publish_read_back);
    tcase_add_test(tc, loop_kill9_and_restart_while_publishing);
    tcase_add_loop_test(tc, loop_close_with_messages_in_flight, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* The application's part on a loop: a write to a connection nsqd
     * closed must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    return it_run_suite(suite());
}
