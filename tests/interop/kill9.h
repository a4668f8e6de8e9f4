/*
 * The results of a run of publishes with nsqd killed by SIGKILL, for the
 * suites that record callbacks with producer_testutil.h's rec_t: every
 * publish checked for one consistent result, and the results counted.
 */
#ifndef NSQ_INTEROP_KILL9_H
#define NSQ_INTEROP_KILL9_H

#include <check.h>
#include <stddef.h>

#include "interop.h"
#include "producer_testutil.h"

typedef struct it_kill9_tally {
    size_t ok;     /* NSQ_OK */
    size_t unsent; /* never processed: refused by the call or failed */
    size_t doubt;  /* written, no answer */
} it_kill9_tally_t;

/*
 * n publishes: refused[i] is what the call returned, rec holds the
 * callbacks (slot i for publish i).  Asserts that a refused call got no
 * callback and was never processed, and that an accepted one got exactly
 * one callback whose result is NSQ_OK, never processed or in doubt.  Each
 * publish's final result (the call's error, or its callback's) goes to
 * final[i]; final may be refused.
 */
static inline it_kill9_tally_t it_kill9_results(rec_t *rec,
                                                const nsq_err_t *refused,
                                                size_t n, nsq_err_t *final)
{
    it_kill9_tally_t t = {0};
    for (size_t i = 0; i < n; i++) {
        if (refused[i] != NSQ_OK) {
            /* Refused by the call itself: no callback, never processed. */
            ck_assert_int_eq(rec_calls(rec, i), 0);
            ck_assert_msg(it_never_processed(refused[i]), "%zu: %s", i,
                          nsq_err2name(refused[i]));
            final[i] = refused[i];
            t.unsent++;
            continue;
        }
        ck_assert_int_eq(rec_calls(rec, i), 1);
        char detail[256];
        rec_detail(rec, i, detail, sizeof detail);
        nsq_err_t rc = rec_result(rec, i);
        if (rc == NSQ_OK)
            t.ok++;
        else if (it_never_processed(rc))
            t.unsent++;
        else if (it_in_doubt(rc))
            t.doubt++;
        else
            ck_abort_msg("%zu: unexpected %s (%s)", i, nsq_err2name(rc),
                         detail);
        final[i] = rc;
    }
    return t;
}

#endif
