/*
 * Runs the producer suites a second time with every producer on an
 * application loop (nsq_producer_new_on_loop).  A suite compiled with
 * NSQ_TEST_ON_LOOP calls the functions below under the public names (the
 * macros at the end), so its code stays as it is:
 *
 * - one harness thread runs a uv loop; every producer of the test lives
 *   on it, and a call made on any other thread is carried there (a job
 *   queue woken by a uv_async_t) and its answer awaited;
 * - a sync publish or ping is the async call plus a wait done here; from
 *   the loop thread (a completion callback) the real call runs, and
 *   refuses with NSQ_ERR_WOULD_DEADLOCK as on a threaded producer;
 * - stop is nsq_producer_close plus a wait for on_closed, where the
 *   statistics, node statistics and replies are kept so that a test can
 *   read them after the stop (the producer itself is freed then);
 * - destroy stops, and once the last producer is gone ends the harness
 *   loop and asserts that uv_loop_close finds no handle left.
 *
 * The handle a suite holds is the harness's; callbacks receive the
 * producer itself, and both are accepted by every call.
 */
#ifndef NSQ_LOOP_HARNESS_H
#define NSQ_LOOP_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "nsq/producer.h"

nsq_producer_t *harness_producer_new(const char *addr, nsq_conf_t *conf,
                                     char *errstr, size_t errlen);
nsq_err_t harness_publish_async(nsq_producer_t *p, const char *topic,
                                const void *body, size_t len, nsq_done_cb cb,
                                void *opaque);
nsq_err_t harness_multi_publish_async(nsq_producer_t *p, const char *topic,
                                      const nsq_iov_t *msgs, size_t count,
                                      nsq_done_cb cb, void *opaque);
nsq_err_t harness_deferred_publish_async(nsq_producer_t *p, const char *topic,
                                         int64_t delay_ms, const void *body,
                                         size_t len, nsq_done_cb cb,
                                         void *opaque);
nsq_err_t harness_publish(nsq_producer_t *p, const char *topic,
                          const void *body, size_t len, char *errstr,
                          size_t errlen);
nsq_err_t harness_multi_publish(nsq_producer_t *p, const char *topic,
                                const nsq_iov_t *msgs, size_t count,
                                char *errstr, size_t errlen);
nsq_err_t harness_deferred_publish(nsq_producer_t *p, const char *topic,
                                   int64_t delay_ms, const void *body,
                                   size_t len, char *errstr, size_t errlen);
nsq_err_t harness_ping(nsq_producer_t *p, char *errstr, size_t errlen);
nsq_err_t harness_ping_async(nsq_producer_t *p, nsq_done_cb cb, void *opaque);
nsq_err_t harness_stop(nsq_producer_t *p);
nsq_err_t harness_destroy(nsq_producer_t *p);
void harness_stats(nsq_producer_t *p, nsq_producer_stats_t *out);
size_t harness_node_count(nsq_producer_t *p);
nsq_err_t harness_node_stats(nsq_producer_t *p, size_t i,
                             nsq_node_stats_t *out);
nsq_err_t harness_identify_reply(nsq_producer_t *p, nsq_identify_reply_t *out);
nsq_err_t harness_auth_reply(nsq_producer_t *p, nsq_auth_reply_t *out);
const char *harness_address(const nsq_producer_t *p);
const nsq_publish_result_t *harness_result(nsq_producer_t *p);
/* Whether the calling thread is the harness loop's. */
bool harness_on_loop_thread(void);

/* The suites' names for the harness's calls (not in the harness). */
#ifndef NSQ_LOOP_HARNESS_IMPL
#define nsq_producer_new harness_producer_new
#define nsq_producer_publish_async harness_publish_async
#define nsq_producer_multi_publish_async harness_multi_publish_async
#define nsq_producer_deferred_publish_async harness_deferred_publish_async
#define nsq_producer_publish harness_publish
#define nsq_producer_multi_publish harness_multi_publish
#define nsq_producer_deferred_publish harness_deferred_publish
#define nsq_producer_ping harness_ping
#define nsq_producer_ping_async harness_ping_async
#define nsq_producer_stop harness_stop
#define nsq_producer_destroy harness_destroy
#define nsq_producer_stats harness_stats
#define nsq_producer_node_count harness_node_count
#define nsq_producer_node_stats harness_node_stats
#define nsq_producer_identify_reply harness_identify_reply
#define nsq_producer_auth_reply harness_auth_reply
#define nsq_producer_address harness_address
#define nsq_producer_result harness_result
#endif

#endif
