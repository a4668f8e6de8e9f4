/*
 * The test broker's lookupd: nsqlookupd 1.3's GET /ping, /nodes and /lookup
 * over libmicrohttpd, for the nodes a test gives it, with faults (down,
 * slow, malformed, huge, the old wrapped format) and optional https.
 *
 * libmicrohttpd runs one thread per connection; every handler takes the
 * lock to read the nodes and faults, so the API may be called from any
 * thread.  "Down" stops the daemon, so the port refuses; "up" starts it
 * again on the same port.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testd_internal.h"

#define LK_MAX_TLS_FILE (1 << 20)

typedef struct lk_topic {
    char *name;
    bool tombstoned;
} lk_topic_t;

typedef struct lk_node {
    char *key; /* broadcast_address:tcp_port ("[v6]:port") */
    char *broadcast_address, *hostname, *version, *remote_address;
    uint16_t tcp_port, http_port;
    lk_topic_t *topics;
    size_t ntopics;
} lk_node_t;

typedef struct lk_channel {
    char *topic, *channel;
} lk_channel_t;

struct nsq_testd_lookupd {
    char host[64];
    char address[80];
    uint16_t port;
    char *tls_cert_pem, *tls_key_pem; /* NULL: plain http */

    pthread_mutex_t ctl; /* serializes starting and stopping the daemon */
    struct MHD_Daemon *daemon;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* ends delays early when stopping */
    bool stopping;
    nsq_testd_lookupd_fault_t fault;
    lk_node_t *nodes;
    size_t nnodes;
    lk_channel_t *channels;
    size_t nchannels;

    atomic_uint_fast64_t nodes_requests;
};

void nsq_testd_lookupd_opts_default(nsq_testd_lookupd_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->host = "127.0.0.1";
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                  */
/* ------------------------------------------------------------------------ */

static enum MHD_Result lk_queue(struct MHD_Connection *c, unsigned status,
                                struct MHD_Response *r, bool json)
{
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            json ? "application/json; charset=utf-8"
                                 : "text/plain; charset=utf-8");
    if (json)
        MHD_add_response_header(r, "X-Nsq-Content-Type", "nsq; version=1.0");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A body the response owns (body is malloc'd; freed on failure too). */
static enum MHD_Result lk_queue_body(struct MHD_Connection *c, unsigned status,
                                     char *body, bool json)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r)
        free(body);
    return lk_queue(c, status, r, json);
}

static enum MHD_Result lk_message(struct MHD_Connection *c, unsigned status,
                                  const char *message)
{
    char buf[128];
    snprintf(buf, sizeof buf, "{\"message\":\"%s\"}", message);
    return lk_queue_body(c, status, strdup(buf), true);
}

/* data, or {"status_code":200,"status_txt":"OK","data":data}; printed. */
static char *lk_print(cJSON *data, bool wrapped)
{
    if (!data)
        return NULL;
    if (wrapped) {
        cJSON *w = cJSON_CreateObject();
        if (!w) {
            cJSON_Delete(data);
            return NULL;
        }
        cJSON_AddNumberToObject(w, "status_code", 200);
        cJSON_AddStringToObject(w, "status_txt", "OK");
        cJSON_AddItemToObject(w, "data", data);
        data = w;
    }
    char *s = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    return s;
}

/* The six fields nsqlookupd's PeerInfo has. */
static cJSON *lk_peer(const lk_node_t *n)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "remote_address", n->remote_address);
    cJSON_AddStringToObject(o, "hostname", n->hostname);
    cJSON_AddStringToObject(o, "broadcast_address", n->broadcast_address);
    cJSON_AddNumberToObject(o, "tcp_port", n->tcp_port);
    cJSON_AddNumberToObject(o, "http_port", n->http_port);
    cJSON_AddStringToObject(o, "version", n->version);
    return o;
}

/* /nodes' JSON, under the lock. */
static cJSON *lk_nodes_json(nsq_testd_lookupd_t *l)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "producers");
    if (!arr) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; i < l->nnodes; i++) {
        const lk_node_t *n = &l->nodes[i];
        cJSON *o = lk_peer(n);
        cJSON *tomb = cJSON_AddArrayToObject(o, "tombstones");
        cJSON *topics = cJSON_AddArrayToObject(o, "topics");
        if (!tomb || !topics) {
            cJSON_Delete(o);
            cJSON_Delete(root);
            return NULL;
        }
        for (size_t k = 0; k < n->ntopics; k++) {
            cJSON_AddItemToArray(tomb,
                                 cJSON_CreateBool(n->topics[k].tombstoned));
            cJSON_AddItemToArray(topics, cJSON_CreateString(n->topics[k].name));
        }
        cJSON_AddItemToArray(arr, o);
    }
    return root;
}

static const lk_topic_t *lk_find_topic(const lk_node_t *n, const char *topic)
{
    for (size_t k = 0; k < n->ntopics; k++)
        if (strcmp(n->topics[k].name, topic) == 0)
            return &n->topics[k];
    return NULL;
}

/* /lookup's JSON, under the lock; NULL with *found false for an unknown
 * topic. */
static cJSON *lk_lookup_json(nsq_testd_lookupd_t *l, const char *topic,
                             bool *found)
{
    *found = false;
    for (size_t i = 0; i < l->nnodes && !*found; i++)
        *found = lk_find_topic(&l->nodes[i], topic) != NULL;
    if (!*found)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *ch = cJSON_AddArrayToObject(root, "channels");
    cJSON *arr = cJSON_AddArrayToObject(root, "producers");
    if (!ch || !arr) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; i < l->nchannels; i++)
        if (strcmp(l->channels[i].topic, topic) == 0)
            cJSON_AddItemToArray(ch,
                                 cJSON_CreateString(l->channels[i].channel));
    /* As nsqlookupd: a producer tombstoned for the topic is left out. */
    for (size_t i = 0; i < l->nnodes; i++) {
        const lk_topic_t *t = lk_find_topic(&l->nodes[i], topic);
        if (t && !t->tombstoned)
            cJSON_AddItemToArray(arr, lk_peer(&l->nodes[i]));
    }
    return root;
}

static const char *lk_malformed_body(nsq_testd_lookupd_malformed_t m)
{
    switch (m) {
    case NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX:
        return "{\"producers\":[{\"broadcast_address\":\"127.0.0.1\","
               "\"tcp_port\":41";
    case NSQ_TESTD_LOOKUPD_MALFORMED_TYPES:
        return "{\"producers\":[{\"broadcast_address\":17,\"tcp_port\":"
               "\"4150\",\"tombstones\":\"no\",\"topics\":{}}]}";
    case NSQ_TESTD_LOOKUPD_MALFORMED_NOT_OBJECT:
        return "[\"producers\"]";
    case NSQ_TESTD_LOOKUPD_MALFORMED_NONE:
        break;
    }
    return NULL;
}

/* A huge reply, streamed: body without its last '}', then ,"pad":"xxx.."}
 * up to total bytes. */
typedef struct lk_huge {
    char *body;
    size_t body_len; /* without the closing brace */
    size_t pad;      /* x's */
} lk_huge_t;

static ssize_t lk_huge_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    lk_huge_t *h = cls;
    static const char open_pad[] = ",\"pad\":\"";
    const size_t open_len = sizeof open_pad - 1;
    const size_t total = h->body_len + open_len + h->pad + 2;
    size_t n = 0;
    while (n < max && pos < total) {
        char ch;
        if (pos < h->body_len)
            ch = h->body[pos];
        else if (pos < h->body_len + open_len)
            ch = open_pad[pos - h->body_len];
        else if (pos < h->body_len + open_len + h->pad)
            ch = 'x';
        else
            ch = pos == total - 2 ? '"' : '}';
        buf[n++] = ch;
        pos++;
    }
    return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void lk_huge_free(void *cls)
{
    lk_huge_t *h = cls;
    free(h->body);
    free(h);
}

static enum MHD_Result lk_queue_huge(struct MHD_Connection *c, char *body,
                                     size_t min_bytes)
{
    lk_huge_t *h = body ? calloc(1, sizeof *h) : NULL;
    if (!h) {
        free(body);
        return MHD_NO;
    }
    h->body = body;
    h->body_len = strlen(body) - 1; /* drop the closing '}' */
    h->pad = min_bytes > h->body_len ? min_bytes - h->body_len : 0;
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 64 * 1024, lk_huge_read, h, lk_huge_free);
    if (!r) {
        lk_huge_free(h);
        return MHD_NO;
    }
    return lk_queue(c, MHD_HTTP_OK, r, true);
}

/* Waits out the delay fault (under the lock); ends early when stopping. */
static void lk_delay(nsq_testd_lookupd_t *l, int64_t delay_ms)
{
    if (delay_ms <= 0)
        return;
    struct timespec until = nsq__testd_deadline(delay_ms);
    while (!l->stopping &&
           pthread_cond_timedwait(&l->wake, &l->lock, &until) == 0)
        ;
}

static enum MHD_Result lk_handle(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    nsq_testd_lookupd_t *l = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* Wait for the whole upload first: answering early would make
         * libmicrohttpd close the connection. */
        if (*upload_size) {
            *upload_size = 0;
            return MHD_YES;
        }
        if (!*con_cls) {
            *con_cls = l;
            return MHD_YES;
        }
        return lk_message(c, MHD_HTTP_METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    }

    pthread_mutex_lock(&l->lock);
    nsq_testd_lookupd_fault_t f = l->fault;
    const bool nodes = strcmp(url, "/nodes") == 0;
    const bool lookup = strcmp(url, "/lookup") == 0;
    if (nodes) /* counted on arrival, so a test sees a delayed one */
        atomic_fetch_add(&l->nodes_requests, 1);
    lk_delay(l, f.delay_ms);
    if (!nodes && !lookup) {
        pthread_mutex_unlock(&l->lock);
        if (strcmp(url, "/ping") == 0)
            return lk_queue_body(c, MHD_HTTP_OK, strdup("OK"), false);
        return lk_message(c, MHD_HTTP_NOT_FOUND, "NOT_FOUND");
    }
    if (f.http_status || f.malformed) {
        pthread_mutex_unlock(&l->lock);
        if (f.http_status)
            return lk_message(c, (unsigned)f.http_status, "INTERNAL_ERROR");
        return lk_queue_body(c, MHD_HTTP_OK,
                             strdup(lk_malformed_body(f.malformed)), true);
    }
    if (nodes) {
        char *body = lk_print(lk_nodes_json(l), f.wrapped);
        pthread_mutex_unlock(&l->lock);
        if (f.huge_bytes)
            return lk_queue_huge(c, body, f.huge_bytes);
        return lk_queue_body(c, MHD_HTTP_OK, body, true);
    }
    const char *topic =
        MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "topic");
    if (!topic) {
        pthread_mutex_unlock(&l->lock);
        return lk_message(c, MHD_HTTP_BAD_REQUEST, "MISSING_ARG_TOPIC");
    }
    bool found;
    char *body = lk_print(lk_lookup_json(l, topic, &found), f.wrapped);
    pthread_mutex_unlock(&l->lock);
    if (!found)
        return lk_message(c, MHD_HTTP_NOT_FOUND, "TOPIC_NOT_FOUND");
    return lk_queue_body(c, MHD_HTTP_OK, body, true);
}

/* ------------------------------------------------------------------------ */
/* The daemon                                                               */
/* ------------------------------------------------------------------------ */

/* Starts listening on l->host:l->port (under ctl). */
static bool lk_daemon_start(nsq_testd_lookupd_t *l, char *errstr, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(l->port);
    if (inet_pton(AF_INET, l->host, &sa.sin_addr) != 1) {
        snprintf(errstr, errlen, "lookupd: \"%s\" is not an IPv4 address",
                 l->host);
        return false;
    }
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (l->tls_cert_pem)
        flags |= MHD_USE_TLS;
    /* libmicrohttpd sets SO_REUSEADDR (not SO_REUSEPORT), so coming back
     * up binds the same port again while a port in use is refused. */
    struct MHD_OptionItem tls_opts[] = {
        {l->tls_cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
         l->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, l->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    l->daemon = MHD_start_daemon(flags, l->port, NULL, NULL, lk_handle, l,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                                 MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!l->daemon) {
        snprintf(errstr, errlen, "lookupd: cannot serve on %s:%u", l->host,
                 (unsigned)l->port);
        return false;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (di && di->port)
        l->port = di->port;
    snprintf(l->address, sizeof l->address, "%s:%u", l->host,
             (unsigned)l->port);
    return true;
}

/* Stops listening; delayed answers end at once (under ctl). */
static void lk_daemon_stop(nsq_testd_lookupd_t *l)
{
    if (!l->daemon)
        return;
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    pthread_cond_broadcast(&l->wake);
    pthread_mutex_unlock(&l->lock);
    MHD_stop_daemon(l->daemon);
    l->daemon = NULL;
    pthread_mutex_lock(&l->lock);
    l->stopping = false;
    pthread_mutex_unlock(&l->lock);
}

/* A whole PEM file, NUL-terminated; NULL on error. */
static char *lk_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(LK_MAX_TLS_FILE + 1);
    size_t n = buf ? fread(buf, 1, LK_MAX_TLS_FILE, f) : 0;
    bool bad = !buf || ferror(f) || n == 0 || n == LK_MAX_TLS_FILE;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

nsq_testd_lookupd_t *
nsq_testd_lookupd_start(const nsq_testd_lookupd_opts_t *opts, char *errstr,
                        size_t errlen)
{
    char dummy[1];
    if (!errstr || errlen == 0) {
        errstr = dummy;
        errlen = sizeof dummy;
    }
    nsq_testd_lookupd_opts_t def;
    if (!opts) {
        nsq_testd_lookupd_opts_default(&def);
        opts = &def;
    }
    const char *host = opts->host ? opts->host : "127.0.0.1";
    if (strlen(host) >= 64) {
        snprintf(errstr, errlen, "lookupd: host name too long");
        return NULL;
    }
    if (!opts->tls_cert != !opts->tls_key) {
        snprintf(errstr, errlen,
                 "lookupd: tls_cert and tls_key go together: set both or "
                 "neither");
        return NULL;
    }
    if (opts->tls_cert &&
        MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(errstr, errlen,
                 "lookupd: libmicrohttpd was built without TLS");
        return NULL;
    }
    nsq_testd_lookupd_t *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(errstr, errlen, "lookupd: out of memory");
        return NULL;
    }
    snprintf(l->host, sizeof l->host, "%s", host);
    l->port = opts->port;
    l->fault = opts->fault;
    pthread_mutex_init(&l->ctl, NULL);
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (opts->tls_cert) {
        l->tls_cert_pem = lk_read_file(opts->tls_cert);
        l->tls_key_pem = lk_read_file(opts->tls_key);
        if (!l->tls_cert_pem || !l->tls_key_pem) {
            snprintf(errstr, errlen, "lookupd: cannot read %s",
                     l->tls_cert_pem ? opts->tls_key : opts->tls_cert);
            nsq_testd_lookupd_destroy(l);
            return NULL;
        }
    }
    /* Down from the start: bind once to learn the port, then stop. */
    if (!lk_daemon_start(l, errstr, errlen)) {
        nsq_testd_lookupd_destroy(l);
        return NULL;
    }
    if (l->fault.down)
        lk_daemon_stop(l);
    return l;
}

const char *nsq_testd_lookupd_address(const nsq_testd_lookupd_t *l)
{
    return l->address;
}

uint16_t nsq_testd_lookupd_port(const nsq_testd_lookupd_t *l)
{
    return l->port;
}

static void lk_node_free(lk_node_t *n)
{
    free(n->key);
    free(n->broadcast_address);
    free(n->hostname);
    free(n->version);
    free(n->remote_address);
    for (size_t k = 0; k < n->ntopics; k++)
        free(n->topics[k].name);
    free(n->topics);
}

void nsq_testd_lookupd_destroy(nsq_testd_lookupd_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->ctl);
    lk_daemon_stop(l);
    pthread_mutex_unlock(&l->ctl);
    for (size_t i = 0; i < l->nnodes; i++)
        lk_node_free(&l->nodes[i]);
    free(l->nodes);
    for (size_t i = 0; i < l->nchannels; i++) {
        free(l->channels[i].topic);
        free(l->channels[i].channel);
    }
    free(l->channels);
    free(l->tls_cert_pem);
    free(l->tls_key_pem);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->ctl);
    free(l);
}

/* ------------------------------------------------------------------------ */
/* Nodes, topics, faults                                                    */
/* ------------------------------------------------------------------------ */

static lk_node_t *lk_find_node(nsq_testd_lookupd_t *l, const char *key)
{
    for (size_t i = 0; i < l->nnodes; i++)
        if (strcmp(l->nodes[i].key, key) == 0)
            return &l->nodes[i];
    return NULL;
}

int nsq_testd_lookupd_add_node(nsq_testd_lookupd_t *l,
                               const nsq_testd_lookupd_node_t *node)
{
    if (!node || !node->broadcast_address)
        return -1;
    char key[300];
    /* As Go's net.JoinHostPort: an IPv6 address goes in brackets. */
    snprintf(key, sizeof key,
             strchr(node->broadcast_address, ':') ? "[%s]:%u" : "%s:%u",
             node->broadcast_address, (unsigned)node->tcp_port);
    lk_node_t n = {0};
    n.key = strdup(key);
    n.broadcast_address = strdup(node->broadcast_address);
    n.hostname =
        strdup(node->hostname ? node->hostname : node->broadcast_address);
    n.version = strdup(node->version ? node->version : "1.3.0");
    n.remote_address =
        strdup(node->remote_address ? node->remote_address : key);
    n.tcp_port = node->tcp_port;
    n.http_port = node->http_port;
    int rc = -1;
    pthread_mutex_lock(&l->lock);
    if (n.key && n.broadcast_address && n.hostname && n.version &&
        n.remote_address && !lk_find_node(l, key)) {
        lk_node_t *grown = realloc(l->nodes, (l->nnodes + 1) * sizeof *grown);
        if (grown) {
            l->nodes = grown;
            l->nodes[l->nnodes++] = n;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (rc != 0)
        lk_node_free(&n);
    return rc;
}

int nsq_testd_lookupd_add_broker(nsq_testd_lookupd_t *l, const nsq_testd_t *t)
{
    nsq_testd_lookupd_node_t n = {0};
    n.broadcast_address = t->host;
    n.tcp_port = t->port;
    return nsq_testd_lookupd_add_node(l, &n);
}

bool nsq_testd_lookupd_remove_node(nsq_testd_lookupd_t *l, const char *node)
{
    pthread_mutex_lock(&l->lock);
    lk_node_t *n = lk_find_node(l, node);
    if (n) {
        lk_node_free(n);
        size_t i = (size_t)(n - l->nodes);
        memmove(n, n + 1, (l->nnodes - i - 1) * sizeof *n);
        l->nnodes--;
    }
    pthread_mutex_unlock(&l->lock);
    return n != NULL;
}

/* The node's entry for topic, added if missing (under the lock). */
static lk_topic_t *lk_topic(lk_node_t *n, const char *topic)
{
    lk_topic_t *t = (lk_topic_t *)lk_find_topic(n, topic);
    if (t)
        return t;
    char *name = strdup(topic);
    lk_topic_t *grown =
        name ? realloc(n->topics, (n->ntopics + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(name);
        return NULL;
    }
    n->topics = grown;
    n->topics[n->ntopics] = (lk_topic_t){name, false};
    return &n->topics[n->ntopics++];
}

bool nsq_testd_lookupd_tombstone(nsq_testd_lookupd_t *l, const char *topic,
                                 const char *node, bool tombstoned)
{
    pthread_mutex_lock(&l->lock);
    lk_node_t *n = lk_find_node(l, node);
    lk_topic_t *t = n ? lk_topic(n, topic) : NULL;
    if (t)
        t->tombstoned = tombstoned;
    pthread_mutex_unlock(&l->lock);
    return t != NULL;
}

bool nsq_testd_lookupd_add_topic(nsq_testd_lookupd_t *l, const char *node,
                                 const char *topic)
{
    pthread_mutex_lock(&l->lock);
    lk_node_t *n = lk_find_node(l, node);
    lk_topic_t *t = n ? lk_topic(n, topic) : NULL;
    pthread_mutex_unlock(&l->lock);
    return t != NULL;
}

int nsq_testd_lookupd_add_channel(nsq_testd_lookupd_t *l, const char *topic,
                                  const char *channel)
{
    int rc = -1;
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->nchannels; i++)
        if (strcmp(l->channels[i].topic, topic) == 0 &&
            strcmp(l->channels[i].channel, channel) == 0)
            rc = 0;
    if (rc != 0) {
        lk_channel_t c = {strdup(topic), strdup(channel)};
        lk_channel_t *grown =
            c.topic && c.channel
                ? realloc(l->channels, (l->nchannels + 1) * sizeof *grown)
                : NULL;
        if (grown) {
            l->channels = grown;
            l->channels[l->nchannels++] = c;
            rc = 0;
        } else {
            free(c.topic);
            free(c.channel);
        }
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

int nsq_testd_lookupd_set_fault(nsq_testd_lookupd_t *l,
                                const nsq_testd_lookupd_fault_t *fault)
{
    nsq_testd_lookupd_fault_t none = {0};
    if (!fault)
        fault = &none;
    int rc = 0;
    pthread_mutex_lock(&l->ctl);
    pthread_mutex_lock(&l->lock);
    l->fault = *fault;
    pthread_mutex_unlock(&l->lock);
    if (fault->down) {
        lk_daemon_stop(l);
    } else if (!l->daemon) {
        char err[128];
        rc = lk_daemon_start(l, err, sizeof err) ? 0 : -1;
    }
    pthread_mutex_unlock(&l->ctl);
    return rc;
}

uint64_t nsq_testd_lookupd_nodes_requests(nsq_testd_lookupd_t *l)
{
    return atomic_load(&l->nodes_requests);
}
