/*
 * A small HTTP server for nsqd's --auth-http-address: nsqd asks
 * GET /auth?remote_ip=..&tls=..&secret=..&common_name=.. and reads a JSON
 * grant (ttl, identity, identity_url, authorizations).  One thread, one
 * request per connection (nsqd's client sends Connection: close or reuses;
 * either way each request is answered and the connection closed).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "interop.h"
#include "nettest.h"

struct it_authd {
    int listen_fd;
    int stop_pipe[2];
    uint16_t port;
    pthread_t thread;
    char secret[128];
    char grant[1024]; /* the JSON body for the known secret */
    pthread_mutex_t mu;
    int requests;
    char last_query[1024];
};

/* The value of key in a query string, percent-decoding only %XX. */
static void query_value(const char *query, const char *key, char *out,
                        size_t outlen)
{
    size_t klen = strlen(key);
    out[0] = '\0';
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t o = 0;
            for (size_t i = klen + 1; i < plen && o + 1 < outlen; i++) {
                unsigned v;
                if (p[i] == '%' && i + 2 < plen &&
                    sscanf(p + i + 1, "%2x", &v) == 1) {
                    out[o++] = (char)v;
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = '\0';
            return;
        }
        p = amp ? amp + 1 : NULL;
    }
}

static void serve(it_authd_t *a, int fd)
{
    char req[4096];
    size_t len = 0;
    /* The request line and headers: nsqd's GET has no body. */
    while (len < sizeof req - 1) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 5000) <= 0)
            return;
        ssize_t n = recv(fd, req + len, sizeof req - 1 - len, 0);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char path[2048] = "";
    sscanf(req, "GET %2047s", path);
    const char *query = strchr(path, '?');
    query = query ? query + 1 : "";
    char secret[256];
    query_value(query, "secret", secret, sizeof secret);

    pthread_mutex_lock(&a->mu);
    a->requests++;
    snprintf(a->last_query, sizeof a->last_query, "%s", query);
    pthread_mutex_unlock(&a->mu);

    bool ok = strncmp(path, "/auth?", 6) == 0 && strcmp(secret, a->secret) == 0;
    const char *body = ok ? a->grant : "{\"message\":\"unknown secret\"}";
    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        ok ? "200 OK" : "403 Forbidden", strlen(body));
    if (tt_send_all(fd, head, (size_t)hlen))
        tt_send_all(fd, body, strlen(body));
}

static void *authd_main(void *arg)
{
    it_authd_t *a = arg;
    for (;;) {
        struct pollfd pfd[2] = {{a->listen_fd, POLLIN, 0},
                                {a->stop_pipe[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0)
            continue;
        if (pfd[1].revents)
            return NULL;
        int fd = accept(a->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        serve(a, fd);
        close(fd);
    }
}

it_authd_t *it_authd_start(const char *secret, const char *identity,
                           const char *identity_url, const char *topic_regex)
{
    it_authd_t *a = calloc(1, sizeof *a);
    ck_assert_ptr_nonnull(a);
    pthread_mutex_init(&a->mu, NULL);
    snprintf(a->secret, sizeof a->secret, "%s", secret);
    snprintf(a->grant, sizeof a->grant,
             "{\"ttl\":3600,\"identity\":\"%s\",\"identity_url\":\"%s\","
             "\"authorizations\":[{\"permissions\":[\"publish\","
             "\"subscribe\"],\"topic\":\"%s\",\"channels\":[\".*\"]}]}",
             identity, identity_url, topic_regex);

    a->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(a->listen_fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    ck_assert_int_eq(bind(a->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(a->listen_fd, 16), 0);
    ck_assert_int_eq(getsockname(a->listen_fd, (struct sockaddr *)&sa, &slen),
                     0);
    a->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pipe(a->stop_pipe), 0);
    ck_assert_int_eq(pthread_create(&a->thread, NULL, authd_main, a), 0);
    return a;
}

uint16_t it_authd_port(const it_authd_t *a)
{
    return a->port;
}

int it_authd_requests(it_authd_t *a, char *last_query, size_t len)
{
    pthread_mutex_lock(&a->mu);
    int n = a->requests;
    if (last_query)
        snprintf(last_query, len, "%s", a->last_query);
    pthread_mutex_unlock(&a->mu);
    return n;
}

void it_authd_stop(it_authd_t *a)
{
    if (!a)
        return;
    ck_assert_int_eq(write(a->stop_pipe[1], "x", 1), 1);
    pthread_join(a->thread, NULL);
    close(a->listen_fd);
    close(a->stop_pipe[0]);
    close(a->stop_pipe[1]);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
