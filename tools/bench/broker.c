/*
 * The embedded broker of nsqpub-bench: the test broker in a child process,
 * so that its CPU time stays out of the client's getrusage.  The parent and
 * the child share a socket pair: the child writes its port, then reads
 * until the parent closes its end (or dies, which closes it too).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "nsq/testd.h"

/* What the child tells the parent once the broker listens (or failed). */
typedef struct broker_hello {
    uint16_t port; /* 0 on failure */
    char err[254];
} broker_hello_t;

static bool write_all(int fd, const void *data, size_t len)
{
    const char *s = data;
    while (len) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        s += n;
        len -= (size_t)n;
    }
    return true;
}

static bool read_all(int fd, void *data, size_t len)
{
    char *s = data;
    while (len) {
        ssize_t n = read(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        s += n;
        len -= (size_t)n;
    }
    return true;
}

/* The child: serves until the parent closes its end or dies. */
static int broker_child(int fd)
{
    broker_hello_t hello;
    memset(&hello, 0, sizeof hello);
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    opts.max_recorded = 0; /* counts only: a long run must not grow */
    nsq_testd_t *t = nsq_testd_start(&opts, hello.err, sizeof hello.err);
    if (t)
        hello.port = nsq_testd_port(t);
    if (!write_all(fd, &hello, sizeof hello) || !t) {
        nsq_testd_destroy(t);
        return 1;
    }
    char c;
    ssize_t n;
    while ((n = read(fd, &c, 1)) != 0 && (n > 0 || errno == EINTR))
        ;
    nsq_testd_destroy(t);
    return 0;
}

/* Before any thread exists, since the child of a threaded process may only
 * call async-signal-safe functions. */
pid_t bench_broker_fork(int *fd_out, uint16_t *port)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        fprintf(stderr, "nsqpub-bench: socketpair: %s\n", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "nsqpub-bench: fork: %s\n", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        _exit(broker_child(sv[1]));
    }
    close(sv[1]);
    broker_hello_t hello;
    if (!read_all(sv[0], &hello, sizeof hello) || hello.port == 0) {
        hello.err[sizeof hello.err - 1] = '\0';
        fprintf(stderr, "nsqpub-bench: embedded broker: %s\n",
                hello.port == 0 && hello.err[0] ? hello.err : "did not start");
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    *fd_out = sv[0];
    *port = hello.port;
    return pid;
}

/* Closing the socket asks the child to stop; it is killed if it lingers. */
void bench_broker_reap(pid_t pid, int fd)
{
    close(fd);
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}
