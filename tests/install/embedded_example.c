/* Built against an installed nsqpub by install_test.sh: embeds the test
 * broker, publishes to it and checks what arrived. */
#include <stdio.h>
#include <string.h>

#include <nsq/producer.h>
#include <nsq/testd.h>

int main(void)
{
    char err[256];
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    nsq_testd_t *t = nsq_testd_start(&opts, err, sizeof err);
    if (!t) {
        fprintf(stderr, "nsq_testd_start: %s\n", err);
        return 1;
    }
    nsq_producer_t *p =
        nsq_producer_new(nsq_testd_address(t), NULL, err, sizeof err);
    nsq_err_t rc =
        p ? nsq_producer_publish(p, "embedded", "hi", 2, err, sizeof err)
          : NSQ_ERR_CONNECT;
    nsq_testd_msg_t m;
    int ok = rc == NSQ_OK && nsq_testd_wait_count(t, "embedded", 1, 5000) &&
             nsq_testd_message(t, "embedded", 0, &m) && m.len == 2 &&
             memcmp(m.body, "hi", 2) == 0;
    if (rc == NSQ_OK && ok)
        nsq_testd_msg_free(&m);
    if (!ok)
        fprintf(stderr, "embedded publish failed: %s\n", nsq_err2name(rc));
    nsq_producer_destroy(p);
    nsq_testd_destroy(t);
    return ok ? 0 : 1;
}
