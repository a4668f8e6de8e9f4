/*
 * Discovery: GET /nodes from every nsqlookupd, over libcurl's multi-socket
 * interface driven by a libuv loop, read with cJSON (see discovery.h).
 *
 * How libcurl meets the loop: libcurl tells us, through the socket
 * callback, which sockets to watch for what; each gets a uv_poll_t whose
 * events go back through curl_multi_socket_action.  Through the timer
 * callback it asks for one timeout, kept in a uv_timer_t.  Finished
 * transfers are collected with curl_multi_info_read after each action.
 *
 * Name resolution: a host name is resolved by libcurl.  Debian's libcurl
 * (and most builds) use the threaded resolver, which resolves on a thread
 * of its own and hands the socket back through the same callbacks, so the
 * loop does not block; numeric addresses need no resolver at all.  A
 * libcurl built with the blocking resolver would block the loop for a host
 * name: the module logs a warning at start when it finds one.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "discovery.h"

/* One configured lookupd and its transfer of the current round. */
typedef struct disc_lookupd {
    nsq__discovery_t *d;
    char *address; /* "http://host:port" */
    char *url;     /* address + "/nodes" */
    CURL *easy;    /* during a round */
    char *buf;     /* the reply so far */
    size_t len, cap;
    bool too_big;
    char curl_err[CURL_ERROR_SIZE];
    /* this round's outcome */
    bool ok;
    char error[256];
    nsq__disc_node_t *nodes;
    size_t nnodes;
} disc_lookupd_t;

/* A socket libcurl asked us to watch. */
typedef struct disc_sock {
    uv_poll_t poll;
    nsq__discovery_t *d;
    curl_socket_t fd;
    bool closing;
    struct disc_sock *prev, *next;
} disc_sock_t;

struct nsq__discovery {
    uv_loop_t *loop;
    nsq__disc_opts_t opts; /* strings below are owned copies */
    char *ca_file;
    CURLM *multi;
    uv_timer_t curl_timer; /* libcurl's timeout */
    uv_timer_t poll_timer; /* the next round */
    disc_sock_t *socks;    /* watched sockets */
    disc_lookupd_t *lookupds;
    size_t nlookupds;
    size_t running; /* transfers of this round not yet done */
    bool in_round, again;
    uint64_t rounds;
    uint64_t rng;
    nsq__disc_node_t *nodes; /* the last good list */
    size_t nnodes;
    /* closing */
    bool closing;
    int open_handles;
    nsq__disc_closed_cb closed;
    void *closed_opaque;
};

static pthread_once_t disc_curl_once = PTHREAD_ONCE_INIT;
static CURLcode disc_curl_init_rc;

/* libcurl's global state is set up once per process and never torn down:
 * another part of the program may use libcurl too. */
static void disc_curl_init(void)
{
    disc_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

__attribute__((__format__(__printf__, 3, 4))) static void
disc_log(nsq__discovery_t *d, int level, const char *fmt, ...)
{
    if (!d->opts.log || level > d->opts.log_level)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->opts.log(d->opts.log_opaque, level, msg);
}

/* ------------------------------------------------------------------------ */
/* Rounds                                                                   */
/* ------------------------------------------------------------------------ */

static void disc_round_start(nsq__discovery_t *d);

static uint64_t disc_random(nsq__discovery_t *d)
{
    /* xorshift64: enough to spread the polls of many producers. */
    d->rng ^= d->rng << 13;
    d->rng ^= d->rng >> 7;
    d->rng ^= d->rng << 17;
    return d->rng;
}

static void disc_on_poll_timer(uv_timer_t *t)
{
    disc_round_start(t->data);
}

static void disc_schedule(nsq__discovery_t *d)
{
    uint64_t wait = (uint64_t)d->opts.poll_interval_ms;
    uint64_t span = wait * (uint64_t)d->opts.poll_jitter_pct / 100;
    if (span > 0)
        wait += disc_random(d) % (span + 1);
    uv_timer_start(&d->poll_timer, disc_on_poll_timer, wait, 0);
}

static void disc_round_end(nsq__discovery_t *d);

static void disc_on_end_timer(uv_timer_t *t)
{
    disc_round_end(t->data);
}

static void disc_lookupd_reset(disc_lookupd_t *l)
{
    free(l->buf);
    l->buf = NULL;
    l->len = l->cap = 0;
    l->too_big = false;
    l->curl_err[0] = '\0';
    l->ok = false;
    l->error[0] = '\0';
    nsq__disc_nodes_free(l->nodes, l->nnodes);
    l->nodes = NULL;
    l->nnodes = 0;
}

/* Every transfer of the round is done: merge, report, schedule. */
static void disc_round_end(nsq__discovery_t *d)
{
    d->in_round = false;
    d->rounds++;
    nsq__disc_node_t *merged = NULL;
    size_t nmerged = 0, answered = 0;
    bool nomem = false;
    for (size_t i = 0; i < d->nlookupds && !nomem; i++) {
        const disc_lookupd_t *l = &d->lookupds[i];
        if (!l->ok)
            continue;
        answered++;
        for (size_t k = 0; k < l->nnodes && !nomem; k++) {
            nsq__disc_node_t *n =
                nsq__disc_nodes_add(&merged, &nmerged, l->nodes[k].address);
            for (size_t t = 0; n && t < l->nodes[k].ntombstoned; t++)
                if (!nsq__disc_node_tombstone(n, l->nodes[k].tombstoned[t]))
                    n = NULL;
            nomem = n == NULL;
        }
    }
    if (answered > 0 && !nomem) {
        nsq__disc_nodes_free(d->nodes, d->nnodes);
        d->nodes = merged;
        d->nnodes = nmerged;
    } else {
        nsq__disc_nodes_free(merged, nmerged);
        disc_log(d, NSQ_LOG_ERROR,
                 "discovery: round %llu: %s; keeping the last %zu nodes",
                 (unsigned long long)d->rounds,
                 nomem ? "out of memory" : "no nsqlookupd answered", d->nnodes);
    }

    nsq__disc_status_t status[d->nlookupds > 0 ? d->nlookupds : 1];
    for (size_t i = 0; i < d->nlookupds; i++) {
        const disc_lookupd_t *l = &d->lookupds[i];
        status[i] = (nsq__disc_status_t){
            l->address, l->ok, l->ok ? l->nnodes : 0, l->ok ? NULL : l->error};
    }
    nsq__disc_round_t r = {d->rounds, answered == 0 || nomem,
                           d->nodes,  d->nnodes,
                           status,    d->nlookupds};
    d->opts.on_round(d->opts.opaque, &r);
    /* The callback may have closed the module or started a round. */
    if (d->closing || d->in_round)
        return;
    if (d->again) {
        d->again = false;
        disc_round_start(d);
    } else {
        disc_schedule(d);
    }
}

/* One transfer finished (the easy handle is already removed). */
static void disc_transfer_done(disc_lookupd_t *l, CURLcode rc)
{
    nsq__discovery_t *d = l->d;
    long code = 0;
    curl_easy_getinfo(l->easy, CURLINFO_RESPONSE_CODE, &code);
    if (l->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(l->error, sizeof l->error,
                 "the reply is larger than %zu bytes", d->opts.max_reply);
    } else if (rc != CURLE_OK) {
        snprintf(l->error, sizeof l->error, "%s",
                 l->curl_err[0] ? l->curl_err : curl_easy_strerror(rc));
    } else if (code != 200) {
        snprintf(l->error, sizeof l->error, "HTTP status %ld", code);
    } else {
        l->ok = nsq__lookupd_parse_nodes(l->buf, l->len, &l->nodes, &l->nnodes,
                                         l->error, sizeof l->error);
    }
    curl_easy_cleanup(l->easy);
    l->easy = NULL;
    if (l->ok) {
        disc_log(d, NSQ_LOG_DEBUG, "discovery: %s lists %zu nodes", l->address,
                 l->nnodes);
    } else {
        nsq__disc_nodes_free(l->nodes, l->nnodes);
        l->nodes = NULL;
        l->nnodes = 0;
        disc_log(d, NSQ_LOG_WARNING, "discovery: %s: %s", l->address, l->error);
    }
    if (--d->running == 0)
        disc_round_end(d);
}

/* Collects finished transfers after libcurl acted. */
static void disc_check_done(nsq__discovery_t *d)
{
    CURLMsg *msg;
    int left;
    while (!d->closing && (msg = curl_multi_info_read(d->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        disc_lookupd_t *l = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&l);
        curl_multi_remove_handle(d->multi, easy);
        disc_transfer_done(l, rc);
    }
}

static size_t disc_write(char *data, size_t size, size_t n, void *opaque)
{
    disc_lookupd_t *l = opaque;
    size_t add = size * n;
    if (add > l->d->opts.max_reply - l->len) {
        l->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (l->len + add > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + add)
            cap *= 2;
        char *grown = realloc(l->buf, cap);
        if (!grown)
            return 0;
        l->buf = grown;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, data, add);
    l->len += add;
    return add;
}

static void disc_round_start(nsq__discovery_t *d)
{
    if (d->closing)
        return;
    if (d->in_round) {
        d->again = true;
        return;
    }
    uv_timer_stop(&d->poll_timer);
    d->in_round = true;
    d->running = 0;
    for (size_t i = 0; i < d->nlookupds; i++) {
        disc_lookupd_t *l = &d->lookupds[i];
        disc_lookupd_reset(l);
        CURL *e = l->easy = curl_easy_init();
        if (!e) {
            snprintf(l->error, sizeof l->error, "cannot create a transfer");
            continue;
        }
        curl_easy_setopt(e, CURLOPT_URL, l->url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)l);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, disc_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, l);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, l->curl_err);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)d->opts.dial_timeout_ms);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)d->opts.read_timeout_ms);
        /* The reply may say its size: refuse an oversized one before its
         * body (the write callback stops a chunked one). */
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                         (curl_off_t)d->opts.max_reply);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        /* As nsq's own clients: no proxy from the environment. */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (d->ca_file)
            curl_easy_setopt(e, CURLOPT_CAINFO, d->ca_file);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "nsqpub/0.1.0");
        /* nsqlookupd 1.x answers its own format whatever is asked; the
         * header is what nsq's clients send. */
        static struct curl_slist accept = {
            (char *)"Accept: application/vnd.nsq; version=1.0", NULL};
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, &accept);
        if (curl_multi_add_handle(d->multi, e) != CURLM_OK) {
            snprintf(l->error, sizeof l->error, "cannot start a transfer");
            curl_easy_cleanup(e);
            l->easy = NULL;
            continue;
        }
        d->running++;
    }
    /* Not one could start: the round is over, reported from the loop (never
     * from inside new() or poll_now()). */
    if (d->running == 0)
        uv_timer_start(&d->poll_timer, disc_on_end_timer, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* libcurl on the loop                                                      */
/* ------------------------------------------------------------------------ */

static void disc_handle_closed(uv_handle_t *h)
{
    nsq__discovery_t *d;
    if (h->type == UV_POLL) {
        disc_sock_t *s = h->data;
        d = s->d;
        free(s);
    } else {
        d = h->data;
    }
    if (--d->open_handles > 0)
        return;
    nsq__disc_closed_cb closed = d->closed;
    void *opaque = d->closed_opaque;
    free(d);
    if (closed)
        closed(opaque);
}

static void disc_sock_close(disc_sock_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_poll_stop(&s->poll);
    nsq__discovery_t *d = s->d;
    if (s->prev)
        s->prev->next = s->next;
    else
        d->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, disc_handle_closed);
}

static void disc_on_poll(uv_poll_t *h, int status, int events)
{
    disc_sock_t *s = h->data;
    nsq__discovery_t *d = s->d;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(d->multi, s->fd, flags, &running);
    disc_check_done(d);
}

static int disc_socket_cb(CURL *easy, curl_socket_t fd, int what, void *opaque,
                          void *sockp)
{
    nsq__discovery_t *d = opaque;
    disc_sock_t *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            disc_sock_close(s);
        curl_multi_assign(d->multi, fd, NULL);
        return 0;
    }
    if (d->closing)
        return 0;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(d->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        d->open_handles++;
        s->poll.data = s;
        s->d = d;
        s->fd = fd;
        s->next = d->socks;
        if (d->socks)
            d->socks->prev = s;
        d->socks = s;
        curl_multi_assign(d->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, disc_on_poll) == 0 ? 0 : -1;
}

static void disc_on_curl_timer(uv_timer_t *t)
{
    nsq__discovery_t *d = t->data;
    int running;
    curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    disc_check_done(d);
}

/* libcurl wants to be told after timeout_ms (-1: never).  0 goes through
 * the loop too: libcurl must not be called back from inside itself. */
static int disc_timer_cb(CURLM *multi, long timeout_ms, void *opaque)
{
    nsq__discovery_t *d = opaque;
    if (timeout_ms < 0)
        uv_timer_stop(&d->curl_timer);
    else if (!d->closing)
        uv_timer_start(&d->curl_timer, disc_on_curl_timer, (uint64_t)timeout_ms,
                       0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */
/* ------------------------------------------------------------------------ */

/* One item of the list, trimmed, into "scheme://host:port"; false with the
 * reason in errstr. */
static bool disc_address(const char *item, size_t len, char **out, char *errstr,
                         size_t errlen)
{
    const char *scheme = "http";
    const char *sep = memchr(item, ':', len);
    if (sep && sep + 2 < item + len && sep[1] == '/' && sep[2] == '/') {
        size_t slen = (size_t)(sep - item);
        if (slen == 4 && strncasecmp(item, "http", 4) == 0)
            scheme = "http";
        else if (slen == 5 && strncasecmp(item, "https", 5) == 0)
            scheme = "https";
        else {
            snprintf(errstr, errlen,
                     "lookupd address \"%.*s\": only http:// and https:// are "
                     "supported",
                     (int)len, item);
            return false;
        }
        len -= (size_t)(sep + 3 - item);
        item = sep + 3;
    }
    if (len > 0 && item[len - 1] == '/') /* "http://h:p/" */
        len--;
    /* host:port, the host maybe "[v6]"; no path, user or query. */
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (item[i] == ':')
            colon = item + i;
    bool v6 = len > 0 && item[0] == '[';
    size_t hlen = colon ? (size_t)(colon - item) : 0;
    const char *port = colon ? colon + 1 : NULL;
    size_t plen = colon ? len - hlen - 1 : 0;
    bool bad = !colon || hlen == 0 || plen == 0 || plen > 5 ||
               (v6 && item[hlen - 1] != ']') ||
               (!v6 && memchr(item, ':', hlen)) ||
               strcspn(item, "/?#@ \t") < len;
    long p = 0;
    for (size_t i = 0; !bad && i < plen; i++) {
        bad = port[i] < '0' || port[i] > '9';
        p = p * 10 + (port[i] - '0');
    }
    if (bad || p < 1 || p > 65535) {
        snprintf(errstr, errlen,
                 "lookupd address \"%.*s\": want host:port (port 1..65535)",
                 (int)len, item);
        return false;
    }
    size_t n = strlen(scheme) + 3 + len + 1;
    *out = malloc(n);
    if (!*out) {
        snprintf(errstr, errlen, "out of memory");
        return false;
    }
    snprintf(*out, n, "%s://%.*s", scheme, (int)len, item);
    return true;
}

/* The comma-separated list into d->lookupds. */
static bool disc_addresses(nsq__discovery_t *d, const char *list, char *errstr,
                           size_t errlen)
{
    size_t max = 1;
    for (const char *s = list; *s; s++)
        max += *s == ',';
    d->lookupds = calloc(max, sizeof *d->lookupds);
    if (!d->lookupds) {
        snprintf(errstr, errlen, "out of memory");
        return false;
    }
    const char *s = list;
    while (*s) {
        size_t len = strcspn(s, ",");
        const char *next = s[len] ? s + len + 1 : s + len;
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len > 0) {
            disc_lookupd_t *l = &d->lookupds[d->nlookupds];
            if (!disc_address(s, len, &l->address, errstr, errlen))
                return false;
            d->nlookupds++;
            l->d = d;
            size_t n = strlen(l->address) + sizeof "/nodes";
            l->url = malloc(n);
            if (!l->url) {
                snprintf(errstr, errlen, "out of memory");
                return false;
            }
            snprintf(l->url, n, "%s/nodes", l->address);
        }
        s = next;
    }
    if (d->nlookupds == 0) {
        snprintf(errstr, errlen, "no lookupd address given");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* The module                                                               */
/* ------------------------------------------------------------------------ */

void nsq__disc_opts_from_conf(nsq__disc_opts_t *o, const nsq_conf_t *conf)
{
    memset(o, 0, sizeof *o);
    o->addresses = conf->lookupd_http_addresses;
    o->poll_interval_ms = conf->lookupd_poll_interval_ms;
    o->poll_jitter_pct = conf->lookupd_poll_jitter;
    o->dial_timeout_ms = conf->dial_timeout_ms;
    o->read_timeout_ms = conf->read_timeout_ms;
    o->ca_file = conf->tls_root_ca_file;
    o->log = conf->log_cb;
    o->log_opaque = conf->log_opaque;
    o->log_level = conf->log_level;
}

/* Frees the lookupd list, the CA file name and the libcurl multi handle
 * (its transfers removed first). */
static void disc_free_config(nsq__discovery_t *d)
{
    for (size_t i = 0; i < d->nlookupds; i++) {
        free(d->lookupds[i].address);
        free(d->lookupds[i].url);
    }
    free(d->lookupds);
    d->lookupds = NULL;
    d->nlookupds = 0;
    free(d->ca_file);
    d->ca_file = NULL;
    if (d->multi)
        curl_multi_cleanup(d->multi);
    d->multi = NULL;
}

/* Frees what new() set up before its handles were initialized. */
static void disc_free_early(nsq__discovery_t *d)
{
    disc_free_config(d);
    free(d);
}

nsq__discovery_t *nsq__discovery_new(uv_loop_t *loop,
                                     const nsq__disc_opts_t *opts, char *errstr,
                                     size_t errlen)
{
    char dummy[1];
    if (!errstr || errlen == 0) {
        errstr = dummy;
        errlen = sizeof dummy;
    }
    if (!loop || !opts || !opts->on_round || !opts->addresses ||
        opts->poll_interval_ms <= 0 || opts->poll_jitter_pct < 0 ||
        opts->poll_jitter_pct > 100 || opts->dial_timeout_ms <= 0 ||
        opts->read_timeout_ms <= 0) {
        snprintf(errstr, errlen, "discovery: invalid options");
        return NULL;
    }
    pthread_once(&disc_curl_once, disc_curl_init);
    if (disc_curl_init_rc != CURLE_OK) {
        snprintf(errstr, errlen, "discovery: libcurl: %s",
                 curl_easy_strerror(disc_curl_init_rc));
        return NULL;
    }
    nsq__discovery_t *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    d->opts = *opts;
    if (d->opts.max_reply == 0)
        d->opts.max_reply = NSQ__DISC_MAX_REPLY;
    d->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)d;
    if (d->rng == 0)
        d->rng = 1;
    if (!disc_addresses(d, opts->addresses, errstr, errlen)) {
        disc_free_early(d);
        return NULL;
    }
    d->opts.addresses = NULL;
    if (opts->ca_file && *opts->ca_file &&
        !(d->ca_file = strdup(opts->ca_file))) {
        snprintf(errstr, errlen, "out of memory");
        disc_free_early(d);
        return NULL;
    }
    d->opts.ca_file = NULL;
    d->multi = curl_multi_init();
    if (!d->multi) {
        snprintf(errstr, errlen, "discovery: cannot create a libcurl handle");
        disc_free_early(d);
        return NULL;
    }
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, disc_socket_cb);
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, disc_timer_cb);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
    uv_timer_init(loop, &d->curl_timer);
    uv_timer_init(loop, &d->poll_timer);
    d->curl_timer.data = d->poll_timer.data = d;
    d->open_handles = 2;

    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_ASYNCHDNS))
        disc_log(d, NSQ_LOG_WARNING,
                 "discovery: libcurl %s resolves names blocking: use numeric "
                 "lookupd addresses",
                 v->version);
    disc_round_start(d);
    return d;
}

void nsq__discovery_poll_now(nsq__discovery_t *d)
{
    disc_round_start(d);
}

void nsq__discovery_close(nsq__discovery_t *d, nsq__disc_closed_cb closed,
                          void *opaque)
{
    if (!d || d->closing)
        return;
    d->closing = true;
    d->closed = closed;
    d->closed_opaque = opaque;
    /* Stop watching before libcurl closes the sockets. */
    while (d->socks)
        disc_sock_close(d->socks);
    for (size_t i = 0; i < d->nlookupds; i++) {
        disc_lookupd_t *l = &d->lookupds[i];
        if (l->easy) {
            curl_multi_remove_handle(d->multi, l->easy);
            curl_easy_cleanup(l->easy);
            l->easy = NULL;
        }
        disc_lookupd_reset(l);
    }
    disc_free_config(d);
    nsq__disc_nodes_free(d->nodes, d->nnodes);
    d->nodes = NULL;
    d->nnodes = 0;
    uv_close((uv_handle_t *)&d->curl_timer, disc_handle_closed);
    uv_close((uv_handle_t *)&d->poll_timer, disc_handle_closed);
}
