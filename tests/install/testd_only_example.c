/* Built against an installed nsqpub by install_test.sh with nothing but
 * `pkg-config --cflags --libs nsqpub-testd`: embeds the test broker, sends
 * it a PUB over a plain socket (encoded with the codec the archive
 * carries) and checks what arrived. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nsq/broker.h>
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
    nsq_buf_t b;
    nsq_buf_init(&b);
    int ok = nsq_cmd_magic(&b) == NSQ_OK &&
             nsq_cmd_pub(&b, "only", "hey", 3, NULL) == NSQ_OK;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(nsq_testd_port(t));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ok && fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
         write(fd, b.data, b.len) == (ssize_t)b.len &&
         nsq_testd_wait_count(t, "only", 1, 5000);
    nsq_testd_msg_t m;
    ok = ok && nsq_testd_message(t, "only", 0, &m);
    if (ok) {
        ok = m.len == 3 && memcmp(m.body, "hey", 3) == 0;
        nsq_testd_msg_free(&m);
    }
    if (!ok)
        fprintf(stderr, "the broker did not record the PUB\n");
    if (fd >= 0)
        close(fd);
    nsq_buf_free(&b);
    nsq_testd_destroy(t);
    return ok ? 0 : 1;
}
