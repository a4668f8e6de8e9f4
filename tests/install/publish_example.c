/* Built against an installed nsqpub by install_test.sh: publishes one
 * message to the nsqd given on the command line, sync. */
#include <stdio.h>

#include <nsq/producer.h>

int main(int argc, char **argv)
{
    char err[256];
    if (argc != 2) {
        fprintf(stderr, "usage: publish_example HOST:PORT\n");
        return 2;
    }
    nsq_producer_t *p = nsq_producer_new(argv[1], NULL, err, sizeof err);
    if (!p) {
        fprintf(stderr, "nsq_producer_new: %s\n", err);
        return 1;
    }
    nsq_err_t rc =
        nsq_producer_publish(p, "install_test", "hello", 5, err, sizeof err);
    if (rc != NSQ_OK)
        fprintf(stderr, "publish: %s: %s\n", nsq_err2name(rc), err);
    nsq_producer_destroy(p);
    return rc == NSQ_OK ? 0 : 1;
}
