/*
 * The nodes: one nsqd each, with its own connection (conn.c), lists,
 * backoff and timeouts.  A producer has one node per address it was given;
 * the router (router.c) decides which node gets a transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tls.h"

/* Splits "host:port" or "[v6]:port". */
static bool split_addr(const char *addr, char *host, size_t hostlen, char *port,
                       size_t portlen)
{
    const char *colon, *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return false;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon)
            return false;
        hl = (size_t)(colon - addr);
    }
    const char *ps = colon + 1;
    size_t pl = strlen(ps);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen)
        return false;
    long v = 0;
    for (size_t i = 0; i < pl; i++) {
        if (ps[i] < '0' || ps[i] > '9')
            return false;
        v = v * 10 + (ps[i] - '0');
        if (v > 65535)
            return false;
    }
    if (v == 0)
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, ps, pl + 1);
    return true;
}

nsq__node_t *nsq__node_new(nsq_producer_t *p, const char *addr, size_t len,
                           char *why, size_t whylen)
{
    if (p->nnodes >= NSQ__MAX_NODES) {
        snprintf(why, whylen, "over %d nodes", NSQ__MAX_NODES);
        return NULL;
    }
    nsq__node_t *n = calloc(1, sizeof *n);
    if (!n || !(n->addr = strndup(addr, len)) ||
        !(n->reader = nsq_frame_reader_new(0))) {
        if (n)
            free(n->addr);
        free(n);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    if (!split_addr(n->addr, n->host, sizeof n->host, n->port,
                    sizeof n->port)) {
        snprintf(why, whylen,
                 "bad address \"%s\" (want host:port or [ipv6]:port)", n->addr);
        nsq_frame_reader_destroy(n->reader);
        free(n->addr);
        free(n);
        return NULL;
    }
    n->p = p;
    pthread_mutex_init(&n->err_lock, NULL);
    /* Node stats read the array from other threads: grown under the
     * lock. */
    pthread_mutex_lock(&p->nodes_lock);
    nsq__node_t **grown = realloc(p->nodes, (p->nnodes + 1) * sizeof *grown);
    if (grown) {
        p->nodes = grown;
        n->ix = (uint16_t)p->nnodes;
        p->nodes[p->nnodes++] = n;
    }
    pthread_mutex_unlock(&p->nodes_lock);
    if (!grown) {
        nsq__node_free(n);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    return n;
}

void nsq__node_clear_tombstones(nsq__node_t *n)
{
    for (size_t i = 0; i < n->ntombstoned; i++)
        free(n->tombstoned[i]);
    free(n->tombstoned);
    n->tombstoned = NULL;
    n->ntombstoned = 0;
}

void nsq__node_free(nsq__node_t *n)
{
    if (!n)
        return;
    nsq__conn_forget_addrs(n);
    nsq_frame_reader_destroy(n->reader);
    nsq_buf_free(&n->ctl[0]);
    nsq_buf_free(&n->ctl[1]);
    free(n->bufs);
    free(n->wtxns);
    nsq__client_tls_free(n->tls);
    nsq_stream_destroy(n->z);
    nsq_buf_t *bufs[] = {&n->raw,    &n->plain, &n->zplain,
                         &n->wplain, &n->wz,    &n->wire};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        nsq_buf_free(bufs[i]);
    nsq__node_clear_tombstones(n);
    pthread_mutex_destroy(&n->err_lock);
    free(n->addr);
    free(n);
}

void nsq__node_start(nsq__node_t *n)
{
    uv_timer_init(n->p->loop, &n->linger);
    n->linger.data = n;
    n->p->open_handles++;
}

/* Whether a node may take new publishes now: not inside a backoff window
 * after failed connects. */
bool nsq__node_usable(const nsq__node_t *n, int64_t now)
{
    return n->failures == 0 || now >= n->backoff_until_ms;
}

bool nsq__node_takes(const nsq__node_t *n, const nsq__txn_t *t)
{
    if (!n->given && !n->listed)
        return false;
    if (n->ntombstoned == 0 || t->kind == NSQ__TXN_PING || t->len < 6)
        return true;
    /* "PUB <topic>\n", "MPUB <topic>\n", "DPUB <topic> <ms>\n" */
    const char *topic = memchr(t->data, ' ', t->len);
    if (!topic)
        return true;
    topic++;
    size_t tl = strcspn(topic, " \n");
    for (size_t i = 0; i < n->ntombstoned; i++)
        if (strlen(n->tombstoned[i]) == tl &&
            memcmp(n->tombstoned[i], topic, tl) == 0)
            return false;
    return true;
}

void nsq__node_drain(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    nsq__txn_t *t;
    while ((t = nsq__list_pop(&n->waiting)) != NULL) {
        nsq__list_insert(&p->unrouted, t);
        p->reroute = true;
    }
    if (n->inflight.head || n->write_active || n->pings_writing.head ||
        !n->tcp || n->state == NSQ__CLOSING)
        return;
    nsq__log(p, NSQ_LOG_INFO, "%s: no longer listed; closing", n->addr);
    n->state = NSQ__CLOSING;
    uv_read_stop((uv_stream_t *)n->tcp);
    uv_close((uv_handle_t *)n->tcp, nsq__on_close);
    n->tcp = NULL;
}

const nsq_publish_result_t *nsq_producer_result(nsq_producer_t *p)
{
    return p && nsq__on_loop_thread(p) ? p->cur_result : NULL;
}

size_t nsq_producer_node_count(nsq_producer_t *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->nodes_lock);
    size_t n = p->nnodes;
    pthread_mutex_unlock(&p->nodes_lock);
    return n;
}

static const char *state_name(nsq__conn_state_t s)
{
    switch (s) {
    case NSQ__DISCONNECTED:
        return "disconnected";
    case NSQ__RESOLVING:
        return "resolving";
    case NSQ__CONNECTING:
        return "connecting";
    case NSQ__IDENTIFYING:
        return "identifying";
    case NSQ__READY:
        return "ready";
    case NSQ__CLOSING:
        return "closing";
    }
    return "unknown";
}

nsq_err_t nsq_producer_node_stats(nsq_producer_t *p, size_t i,
                                  nsq_node_stats_t *out)
{
    if (!p || !out)
        return NSQ_ERR_INVALID_ARG;
    pthread_mutex_lock(&p->nodes_lock);
    nsq__node_t *n = i < p->nnodes ? p->nodes[i] : NULL;
    pthread_mutex_unlock(&p->nodes_lock);
    if (!n)
        return NSQ_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    snprintf(out->address, sizeof out->address, "%s", n->addr);
    pthread_mutex_lock(&n->err_lock);
    snprintf(out->state, sizeof out->state, "%s",
             state_name(atomic_load(&n->pub_state)));
    snprintf(out->last_error, sizeof out->last_error, "%s", n->last_error);
    pthread_mutex_unlock(&n->err_lock);
    out->published = atomic_load(&n->stats.published);
    out->in_flight = atomic_load(&n->stats.in_flight);
    out->failures = atomic_load(&n->stats.failures);
    return NSQ_OK;
}
