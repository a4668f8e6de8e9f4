/*
 * Helpers for the suites that run a producer on the test's own uv loop
 * (nsq_producer_new_on_loop), as an application does; with
 * producer_testutil.h.
 */
#ifndef NSQ_LOOP_TESTUTIL_H
#define NSQ_LOOP_TESTUTIL_H

#include <check.h>
#include <uv.h>

#include "producer_testutil.h"

/* A producer on loop with the test defaults and kv (see conf_make). */
static inline nsq_producer_t *loop_producer(uv_loop_t *loop, const char *addr,
                                            const char *const *kv)
{
    char err[256] = "";
    nsq_conf_t *c = conf_make(kv);
    nsq_producer_t *p =
        nsq_producer_new_on_loop(loop, addr, c, err, sizeof err);
    ck_assert_msg(p != NULL, "nsq_producer_new_on_loop(%s): %s",
                  addr ? addr : "(null)", err);
    return p;
}

/* Runs the loop until nothing is left on it, then closes it: 0 means no
 * handle of nsqpub's was left. */
static inline void run_to_end(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(loop), 0);
}

/* Turns the loop until cond holds (bounded by WAIT_MS); ok gets the last
 * value of cond. */
#define RUN_UNTIL(ok, loop, cond)                                              \
    do {                                                                       \
        int64_t run_deadline_ = tt_now_ms() + WAIT_MS;                         \
        while (!((ok) = (cond)) && tt_now_ms() < run_deadline_) {              \
            uv_run((loop), UV_RUN_NOWAIT);                                     \
            sleep_ms(1);                                                       \
        }                                                                      \
    } while (0)

#endif
