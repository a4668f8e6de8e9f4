/*
 * The test broker: options, the listening socket, the accept thread that
 * hands connections to the worker pool, faults, and the public API.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testd_internal.h"

void nsq_testd_opts_default(nsq_testd_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->host = "127.0.0.1";
    /* As nsqd: snappy and deflate on; TLS only with a certificate. */
    nsq_broker_info_default(&opts->info);
    opts->auth_identity = "testd";
    opts->max_workers = 256;
    opts->max_idle_ms = 10000;
    opts->stop_timeout_ms = 2000;
    opts->max_recorded = 1000000;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Resets the connection at once (RST), as a refusing broker would. */
static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void *accept_main(void *arg)
{
    nsq_testd_t *t = arg;
    for (;;) {
        struct pollfd pfd[2] = {{t->listen_fd, POLLIN, 0},
                                {t->stop_pipe[0], POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents || atomic_load(&t->stopped))
            break;
        int fd = accept4(t->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        uint64_t no = atomic_fetch_add(&t->accepted, 1) + 1;
        nsq_testd_fault_t f;
        nsq__testd_fault_for(t, no, &f);
        if (f.refuse) {
            atomic_fetch_add(&t->refused, 1);
            reset_close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_mutex_lock(&t->lock);
        t->pending[t->npending].fd = fd;
        t->pending[t->npending].no = no;
        t->npending++;
        pthread_mutex_unlock(&t->lock);
        if (!nsq__pool_serve(t->pool, fd)) {
            nsq__testd_take_conn_no(t, fd);
            atomic_fetch_add(&t->busy, 1);
            reset_close(fd);
        }
    }
    return NULL;
}

uint64_t nsq__testd_take_conn_no(nsq_testd_t *t, int fd)
{
    uint64_t no = 0;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i < t->npending; i++) {
        if (t->pending[i].fd == fd) {
            no = t->pending[i].no;
            t->pending[i] = t->pending[--t->npending];
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return no;
}

void nsq__testd_fault_for(nsq_testd_t *t, uint64_t conn_no,
                          nsq_testd_fault_t *out)
{
    pthread_mutex_lock(&t->lock);
    if (t->fault.conn == 0 || (uint64_t)t->fault.conn == conn_no)
        *out = t->fault;
    else
        memset(out, 0, sizeof *out);
    pthread_mutex_unlock(&t->lock);
}

/* Counts the non-empty items of a comma-separated list of topic prefixes;
 * with a topic, also sets *match when the topic starts with one of them. */
static int each_prefix(const char *list, const char *topic, bool *match)
{
    int n = 0;
    while (list && *list) {
        size_t len = strcspn(list, ",");
        if (len) {
            n++;
            if (topic && strncmp(topic, list, len) == 0)
                *match = true;
        }
        list += len;
        if (*list == ',')
            list++;
    }
    return n;
}

bool nsq__testd_allow(void *opaque, const char *cmd, const char *topic,
                      const char *channel)
{
    nsq_testd_t *t = opaque;
    (void)cmd;
    (void)channel;
    bool match = false;
    each_prefix(t->auth_topic_prefix, topic, &match);
    return match;
}

static bool listen_on(nsq_testd_t *t, char *errstr, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(t->opts.port);
    if (inet_pton(AF_INET, t->host, &sa.sin_addr) != 1) {
        snprintf(errstr, errlen, "not an IPv4 address: %s", t->host);
        return false;
    }
    t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (t->listen_fd < 0) {
        snprintf(errstr, errlen, "socket: %s", strerror(errno));
        return false;
    }
    int one = 1;
    setsockopt(t->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(t->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(t->listen_fd, 128) != 0) {
        snprintf(errstr, errlen, "listen on %s:%u: %s", t->host,
                 (unsigned)t->opts.port, strerror(errno));
        return false;
    }
    socklen_t len = sizeof sa;
    getsockname(t->listen_fd, (struct sockaddr *)&sa, &len);
    t->port = ntohs(sa.sin_port);
    snprintf(t->address, sizeof t->address, "%s:%u", t->host,
             (unsigned)t->port);
    return true;
}

nsq_testd_t *nsq_testd_start(const nsq_testd_opts_t *opts, char *errstr,
                             size_t errlen)
{
    char scratch[8];
    if (!errstr) {
        errstr = scratch;
        errlen = sizeof scratch;
    }
    if (!opts || opts->max_workers <= 0 || opts->max_idle_ms <= 0) {
        snprintf(errstr, errlen, "invalid options");
        return NULL;
    }
    nsq_testd_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    t->opts = *opts;
    t->listen_fd = -1;
    t->stop_pipe[0] = t->stop_pipe[1] = -1;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->stop_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->idle_cond, &ca);
    pthread_condattr_destroy(&ca);
    t->fault = opts->fault;
    t->host = dup_or_null(opts->host ? opts->host : "127.0.0.1");
    t->auth_secret = dup_or_null(opts->auth_secret);
    t->auth_identity =
        dup_or_null(opts->auth_identity ? opts->auth_identity : "testd");
    t->auth_topic_prefix = dup_or_null(opts->auth_topic_prefix);
    t->tls_cert = dup_or_null(opts->tls_cert);
    t->tls_key = dup_or_null(opts->tls_key);
    t->tls_client_auth = dup_or_null(opts->tls_client_auth);
    t->tls_root_ca = dup_or_null(opts->tls_root_ca);
    t->tls_min_version = dup_or_null(opts->tls_min_version);
    t->opts.host = t->host;
    t->opts.auth_secret = t->auth_secret;
    t->opts.auth_identity = t->auth_identity;
    t->opts.auth_topic_prefix = t->auth_topic_prefix;
    t->opts.tls_cert = t->tls_cert;
    t->opts.tls_key = t->tls_key;
    t->opts.tls_client_auth = t->tls_client_auth;
    t->opts.tls_root_ca = t->tls_root_ca;
    t->opts.tls_min_version = t->tls_min_version;
    t->auth_prefixes = each_prefix(t->auth_topic_prefix, NULL, NULL);
    if (t->auth_secret)
        t->opts.info.auth_enabled = true;
    t->pending = calloc((size_t)opts->max_workers + 1, sizeof *t->pending);
    t->store = nsq__store_new(opts->max_recorded);
    nsq__pool_opts_t po = {opts->max_workers, opts->max_idle_ms,
                           nsq__testd_serve, t};
    if (!t->host || !t->auth_identity || !t->pending || !t->store ||
        (opts->auth_secret && !t->auth_secret) ||
        (opts->auth_topic_prefix && !t->auth_topic_prefix) ||
        (opts->tls_cert && !t->tls_cert) || (opts->tls_key && !t->tls_key) ||
        (opts->tls_client_auth && !t->tls_client_auth) ||
        (opts->tls_root_ca && !t->tls_root_ca) ||
        (opts->tls_min_version && !t->tls_min_version)) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    if (!nsq__tls_ctx_new(t, errstr, errlen))
        goto fail;
    /* IDENTIFY grants tls_v1 exactly when the handshake can follow. */
    t->opts.info.tls_enabled = t->tls_ctx != NULL;
    if (!listen_on(t, errstr, errlen))
        goto fail;
    if (pipe2(t->stop_pipe, O_CLOEXEC) != 0) {
        snprintf(errstr, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    t->pool = nsq__pool_start(&po);
    if (!t->pool) {
        snprintf(errstr, errlen, "cannot start the worker pool");
        goto fail;
    }
    if (pthread_create(&t->accept_thread, NULL, accept_main, t) != 0) {
        snprintf(errstr, errlen, "cannot start the accept thread");
        goto fail;
    }
    t->accept_started = true;
    return t;
fail:
    nsq_testd_destroy(t);
    return NULL;
}

uint16_t nsq_testd_port(const nsq_testd_t *t)
{
    return t->port;
}

const char *nsq_testd_address(const nsq_testd_t *t)
{
    return t->address;
}

void nsq_testd_stop(nsq_testd_t *t)
{
    /* The first caller stops; the others wait for it on stop_lock (not on
     * lock, which the accept thread and the workers need to finish). */
    pthread_mutex_lock(&t->stop_lock);
    bool first = !atomic_exchange(&t->stopped, true);
    if (first && t->stop_pipe[1] >= 0) {
        ssize_t n = write(t->stop_pipe[1], "x", 1);
        (void)n;
    }
    if (first && t->accept_started) {
        pthread_join(t->accept_thread, NULL);
        t->accept_started = false;
    }
    if (first && t->listen_fd >= 0) {
        close(t->listen_fd);
        t->listen_fd = -1;
    }
    if (first && t->pool)
        nsq__pool_stop(t->pool, t->opts.stop_timeout_ms);
    pthread_mutex_unlock(&t->stop_lock);
}

void nsq_testd_destroy(nsq_testd_t *t)
{
    if (!t)
        return;
    nsq_testd_stop(t);
    nsq__pool_destroy(t->pool);
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    for (int i = 0; i < 2; i++)
        if (t->stop_pipe[i] >= 0)
            close(t->stop_pipe[i]);
    nsq__store_free(t->store);
    free(t->pending);
    free(t->host);
    free(t->auth_secret);
    free(t->auth_identity);
    free(t->auth_topic_prefix);
    free(t->tls_cert);
    free(t->tls_key);
    free(t->tls_client_auth);
    free(t->tls_root_ca);
    free(t->tls_min_version);
    nsq__tls_ctx_free(t);
    pthread_cond_destroy(&t->idle_cond);
    pthread_mutex_destroy(&t->lock);
    pthread_mutex_destroy(&t->stop_lock);
    free(t);
}

void nsq_testd_set_fault(nsq_testd_t *t, const nsq_testd_fault_t *fault)
{
    pthread_mutex_lock(&t->lock);
    if (fault)
        t->fault = *fault;
    else
        memset(&t->fault, 0, sizeof t->fault);
    pthread_mutex_unlock(&t->lock);
}

uint64_t nsq_testd_count(nsq_testd_t *t, const char *topic)
{
    return nsq__store_count(t->store, topic);
}

uint64_t nsq_testd_bytes(nsq_testd_t *t, const char *topic)
{
    return nsq__store_bytes(t->store, topic);
}

bool nsq_testd_message(nsq_testd_t *t, const char *topic, size_t index,
                       nsq_testd_msg_t *out)
{
    return nsq__store_get(t->store, topic, index, out);
}

void nsq_testd_msg_free(nsq_testd_msg_t *m)
{
    free(m->body);
    m->body = NULL;
    m->len = 0;
}

bool nsq_testd_wait_count(nsq_testd_t *t, const char *topic, uint64_t n,
                          int64_t timeout_ms)
{
    return nsq__store_wait(t->store, topic, n, timeout_ms);
}

void nsq_testd_clear(nsq_testd_t *t)
{
    nsq__store_clear(t->store);
}

int nsq_testd_dump(nsq_testd_t *t, const char *path)
{
    return nsq__store_dump(t->store, path);
}

void nsq_testd_stats(nsq_testd_t *t, nsq_testd_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->accepted = atomic_load(&t->accepted);
    out->refused = atomic_load(&t->refused);
    out->busy = atomic_load(&t->busy);
    out->active = atomic_load(&t->active);
    out->closed = atomic_load(&t->closed);
    out->heartbeats = atomic_load(&t->heartbeats);
    out->timed_out = atomic_load(&t->timed_out);
    out->errors = atomic_load(&t->errors);
    out->writes = atomic_load(&t->writes);
    out->pubs = atomic_load(&t->cmd_pub);
    out->mpubs = atomic_load(&t->cmd_mpub);
    out->dpubs = atomic_load(&t->cmd_dpub);
    if (t->pool) {
        nsq__pool_stats_t ps;
        nsq__pool_stats(t->pool, &ps);
        out->workers = (uint64_t)ps.workers;
    }
}

bool nsq_testd_wait_idle(nsq_testd_t *t, int64_t timeout_ms)
{
    struct timespec deadline = nsq__testd_deadline(timeout_ms);
    pthread_mutex_lock(&t->lock);
    while (atomic_load(&t->active) > 0)
        if (pthread_cond_timedwait(&t->idle_cond, &t->lock, &deadline) ==
            ETIMEDOUT)
            break;
    bool idle = atomic_load(&t->active) == 0;
    pthread_mutex_unlock(&t->lock);
    return idle;
}
