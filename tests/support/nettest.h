/* Small socket helpers for tests: loopback only, bounded in time. */
#ifndef NSQ_TEST_NETTEST_H
#define NSQ_TEST_NETTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds. */
int64_t tt_now_ms(void);
/* A blocking TCP connection to 127.0.0.1:port, or -1 with errno set.  A
 * listener that resets a connection as soon as it accepts it can make the
 * connect itself fail with ECONNRESET. */
int tt_connect(uint16_t port);
/* Writes everything (no SIGPIPE); false if the peer went away. */
bool tt_send_all(int fd, const void *data, size_t len);
/* Reads exactly len bytes within ms; false on timeout, EOF or error. */
bool tt_recv_exact(int fd, void *data, size_t len, int ms);
/* A port on 127.0.0.1 that nothing listens on (bound, then released), for
 * a server to bind next. */
uint16_t tt_unused_port(void);
/* A port on 127.0.0.1 that refuses connections for the rest of the
 * process: it stays bound without listening, so no parallel test can take
 * it. */
uint16_t tt_refusing_port(void);

#endif
