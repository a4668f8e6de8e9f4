/* Real nsqd processes, their HTTP API, and programs run by the suites. */
#include "interop.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nettest.h"

#define IT_ROOT_ENV "NSQ_INTEROP_TMP"

void it_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ------------------------------------------------------------- binaries */

static bool is_exec(const char *dir, const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, X_OK) == 0;
}

const char *it_bin_dir(void)
{
    static char dir[PATH_MAX];
    const char *env = getenv("NSQ_BIN_DIR");
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "%s", NSQ_DEFAULT_BIN_DIR);
    return is_exec(dir, "nsqd") ? dir : NULL;
}

const char *it_bin(const char *name, char *out, size_t outlen)
{
    const char *dir = it_bin_dir();
    ck_assert_msg(dir != NULL, "no nsqd");
    snprintf(out, outlen, "%s/%s", dir, name);
    return out;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int it_run_suite(Suite *s)
{
    if (!it_bin_dir()) {
        printf("interop: skipped (no nsqd found; set NSQ_BIN_DIR)\n");
        return 77;
    }
    char root[] = "/tmp/nsqpub-interop-XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    setenv(IT_ROOT_ENV, root, 1);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed == 0 ? 0 : 1;
}

const char *it_mkdir(char *out, size_t outlen, const char *prefix)
{
    const char *root = getenv(IT_ROOT_ENV);
    ck_assert_msg(root != NULL, "no suite folder");
    snprintf(out, outlen, "%s/%s-XXXXXX", root, prefix);
    ck_assert_msg(mkdtemp(out) != NULL, "mkdtemp %s: %s", out, strerror(errno));
    return out;
}

/* ------------------------------------------------------------- processes */

pid_t it_spawn(char *const argv[], const char *in_path, const char *out_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
    int out = open(out_path ? out_path : "/dev/null",
                   O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0)
        _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], argv);
    _exit(127);
}

int it_reap(pid_t pid, int ms)
{
    int64_t deadline = tt_now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 && errno != EINTR)
            return 0;
        if (tt_now_ms() >= deadline)
            return -1;
        it_sleep_ms(5);
    }
}

int it_run(char *const argv[], const char *in_path, const char *out_path)
{
    pid_t pid = it_spawn(argv, in_path, out_path);
    int st = it_reap(pid, IT_WAIT_MS * 4);
    if (st == -1) {
        kill(pid, SIGKILL);
        it_reap(pid, IT_WAIT_MS);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *it_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    ck_assert_ptr_nonnull(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* ------------------------------------------------------------- nsqd */

/* The last lines of nsqd's log, for a failure message. */
static const char *log_tail(const it_nsqd_t *d)
{
    static char tail[1024];
    FILE *f = fopen(d->log, "rb");
    tail[0] = '\0';
    if (!f)
        return tail;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(tail, 1, sizeof tail - 1, f);
    tail[n] = '\0';
    fclose(f);
    return tail;
}

/*
 * Starts nsqd and waits (bounded) until /ping answers OK and the TCP port
 * accepts.  false if nsqd exited first (a port taken between choosing and
 * binding it, say): the reason is at the end of its log.
 */
static bool nsqd_spawn(it_nsqd_t *d)
{
    char bin[PATH_MAX], tcp[64], http[64], https[64], data[700];
    snprintf(tcp, sizeof tcp, "--tcp-address=127.0.0.1:%u", d->tcp_port);
    snprintf(http, sizeof http, "--http-address=127.0.0.1:%u", d->http_port);
    snprintf(https, sizeof https, "--https-address=127.0.0.1:%u",
             d->https_port);
    snprintf(data, sizeof data, "--data-path=%s", d->data);
    char *argv[IT_MAX_FLAGS + 8];
    int n = 0;
    argv[n++] = (char *)it_bin("nsqd", bin, sizeof bin);
    argv[n++] = tcp;
    argv[n++] = http;
    argv[n++] = https;
    argv[n++] = (char *)"--broadcast-address=127.0.0.1";
    argv[n++] = data;
    for (int i = 0; i < d->nflags; i++)
        argv[n++] = d->flags[i];
    argv[n] = NULL;
    d->pid = it_spawn(argv, NULL, d->log);

    int64_t deadline = tt_now_ms() + IT_WAIT_MS;
    for (;;) {
        if (it_reap(d->pid, 0) != -1) {
            d->pid = 0;
            return false;
        }
        char *body = NULL;
        if (it_http_get(d->http_port, "/ping", &body) == 200 &&
            strcmp(body, "OK") == 0) {
            free(body);
            int fd = tt_connect(d->tcp_port);
            if (fd >= 0) {
                close(fd);
                return true;
            }
        } else {
            free(body);
        }
        ck_assert_msg(tt_now_ms() < deadline, "nsqd not ready: %s",
                      log_tail(d));
        it_sleep_ms(20);
    }
}

void it_pick_ports(uint16_t *ports, int n)
{
    for (int i = 0; i < n; i++) {
        bool again;
        do {
            ports[i] = tt_unused_port();
            again = ports[i] == 0;
            for (int k = 0; k < i && !again; k++)
                again = ports[k] == ports[i];
        } while (again);
    }
}

/* Three distinct free loopback ports. */
static void pick_ports(it_nsqd_t *d)
{
    uint16_t ports[3];
    it_pick_ports(ports, 3);
    d->tcp_port = ports[0];
    d->http_port = ports[1];
    d->https_port = ports[2];
    snprintf(d->addr, sizeof d->addr, "127.0.0.1:%u", d->tcp_port);
}

it_nsqd_t *it_nsqd_start(const char *const *flags)
{
    it_nsqd_t *d = calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    it_mkdir(d->dir, sizeof d->dir, "nsqd");
    snprintf(d->data, sizeof d->data, "%s/data", d->dir);
    snprintf(d->log, sizeof d->log, "%s/nsqd.log", d->dir);
    ck_assert_int_eq(mkdir(d->data, 0700), 0);
    for (const char *const *f = flags; f && *f; f++) {
        ck_assert_int_lt(d->nflags, IT_MAX_FLAGS);
        d->flags[d->nflags++] = strdup(*f);
    }
    /* A port may be taken between choosing and binding it: new ports. */
    for (int attempt = 0;; attempt++) {
        pick_ports(d);
        if (nsqd_spawn(d))
            return d;
        ck_assert_msg(attempt < 2, "nsqd exited: %s", log_tail(d));
    }
}

void it_nsqd_restart(it_nsqd_t *d)
{
    ck_assert_msg(d->pid == 0, "nsqd still running");
    ck_assert_msg(nsqd_spawn(d), "nsqd exited on restart: %s", log_tail(d));
}

void it_nsqd_stop(it_nsqd_t *d)
{
    if (!d->pid)
        return;
    kill(d->pid, SIGTERM);
    if (it_reap(d->pid, IT_WAIT_MS) == -1) {
        kill(d->pid, SIGKILL);
        it_reap(d->pid, IT_WAIT_MS);
    }
    d->pid = 0;
}

void it_nsqd_kill9(it_nsqd_t *d)
{
    ck_assert_int_ne(d->pid, 0);
    kill(d->pid, SIGKILL);
    it_reap(d->pid, IT_WAIT_MS);
    d->pid = 0;
}

void it_nsqd_free(it_nsqd_t *d)
{
    if (!d)
        return;
    it_nsqd_stop(d);
    for (int i = 0; i < d->nflags; i++)
        free(d->flags[i]);
    free(d);
}

/* ------------------------------------------------------------- kill -9 */

bool it_never_processed(nsq_err_t rc)
{
    return !nsq_err_is_broker(rc) && nsq_err_fate(rc) == NSQ_FATE_NOT_STORED;
}

bool it_in_doubt(nsq_err_t rc)
{
    return !nsq_err_is_broker(rc) && nsq_err_fate(rc) == NSQ_FATE_UNKNOWN;
}

/* i of a body prefix + "%06zu" (i < n); fails the case for another. */
static unsigned long kill9_index(const it_msg_t *m, const char *prefix,
                                 size_t n)
{
    size_t plen = strlen(prefix);
    char *end = NULL;
    unsigned long idx = 0;
    bool mine = m->len == plen + 6 && memcmp(m->body, prefix, plen) == 0;
    if (mine)
        idx = strtoul(m->body + plen, &end, 10);
    ck_assert_msg(mine && end == m->body + m->len && idx < n, "stranger: %.*s",
                  (int)m->len, m->body);
    return idx;
}

void it_assert_kill9_stored(const it_nsqd_t *d, const char *topic,
                            const char *prefix, const nsq_err_t *rc, size_t n,
                            size_t may_lose)
{
    char path[160];
    snprintf(path, sizeof path, "/topic/create?topic=%s", topic);
    ck_assert_int_eq(it_http(d->http_port, "POST", path, NULL), 200);
    int64_t ok = 0, doubt = 0;
    for (size_t i = 0; i < n; i++) {
        ok += rc[i] == NSQ_OK;
        doubt += it_in_doubt(rc[i]);
    }
    it_topic_stats_t ts = it_topic_stats(d, topic);
    ck_assert_int_ge(ts.depth, ok - (may_lose < n ? 1 : 0));
    ck_assert_int_le(ts.depth, ok + doubt);

    /* The counted messages, then, while an acknowledged one is missing,
     * the one past nsqd's count (see interop.h), on the same connection:
     * nsqd may have sent it already, and would not give a message in
     * flight to another connection before --msg-timeout. */
    char *stored = calloc(n ? n : 1, 1);
    ck_assert_ptr_nonnull(stored);
    int rdy = ts.depth > 2500 ? 2500 : (int)ts.depth + 1;
    it_sub_t *sub = it_sub_open(d->tcp_port, topic, "interop_check", rdy);
    for (int64_t j = 0; j <= ts.depth; j++) {
        bool missing = false;
        for (size_t i = 0; i < n && j == ts.depth; i++)
            missing |= rc[i] == NSQ_OK && i != may_lose && !stored[i];
        if (j == ts.depth && !missing)
            break;
        it_msg_t m;
        bool got = it_sub_next(sub, &m, IT_WAIT_MS);
        ck_assert_msg(got || j == ts.depth, "read %lld of %lld", (long long)j,
                      (long long)ts.depth);
        if (!got)
            break;
        unsigned long idx = kill9_index(&m, prefix, n);
        it_msg_free(&m);
        ck_assert_msg(!stored[idx], "stored twice: %lu", idx);
        stored[idx] = 1;
    }
    it_sub_close(sub);
    for (size_t i = 0; i < n; i++) {
        if (rc[i] == NSQ_OK && i != may_lose)
            ck_assert_msg(stored[i], "acknowledged %zu is lost", i);
        if (it_never_processed(rc[i]))
            ck_assert_msg(!stored[i], "%zu (%s) is stored", i,
                          nsq_err2name(rc[i]));
    }
    free(stored);
}

/* ------------------------------------------------------------- HTTP */

int it_http_get(uint16_t port, const char *path, char **body)
{
    return it_http(port, "GET", path, body);
}

int it_http(uint16_t port, const char *method, const char *path, char **body)
{
    if (body)
        *body = NULL;
    int fd = tt_connect(port); /* also a readiness probe */
    if (fd < 0)
        return -1;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, path, port);
    if (!tt_send_all(fd, req, (size_t)n)) {
        close(fd);
        return -1;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap + 1);
    int64_t deadline = tt_now_ms() + IT_WAIT_MS;
    for (;;) {
        int64_t left = deadline - tt_now_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    int status = -1;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !sep)
        status = -1;
    if (body && sep)
        *body = strdup(sep + 4);
    free(buf);
    return status;
}

static int64_t json_int(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

it_topic_stats_t it_topic_stats(const it_nsqd_t *d, const char *topic)
{
    it_topic_stats_t out = {-1, -1, -1};
    char path[256], *body = NULL;
    snprintf(path, sizeof path, "/stats?format=json&topic=%s", topic);
    int status = it_http_get(d->http_port, path, &body);
    ck_assert_msg(status == 200, "GET %s: %d", path, status);
    cJSON *root = cJSON_Parse(body);
    ck_assert_msg(root != NULL, "stats JSON: %s", body);
    free(body);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!top)
        top = root;
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(top, "topics");
    const cJSON *t;
    cJSON_ArrayForEach(t, topics)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "topic_name");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, topic) != 0)
            continue;
        out.message_count = json_int(t, "message_count");
        out.depth = json_int(t, "depth");
        out.channels =
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "channels"));
    }
    cJSON_Delete(root);
    return out;
}
