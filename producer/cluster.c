/*
 * The node set and discovery: with lookupd_http_addresses set, each round
 * of the discovery module (discovery.c) on the producer's loop updates the
 * nodes.  A node listed for the first time is added; a node no lookupd
 * lists any more (and not given to nsq_producer_new) takes no new
 * publishes, gives back what waited on it, and is closed once its
 * in-flight commands are answered; a tombstoned topic goes to the other
 * nodes.  When every lookupd fails, discovery reports the last good list,
 * so the nodes stay.  Nodes are kept (closed) until the producer is
 * destroyed, so a node that comes back is the same node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "discovery.h"
#include "internal.h"

static nsq__node_t *find_node(nsq_producer_t *p, const char *addr)
{
    for (size_t i = 0; i < p->nnodes; i++)
        if (strcmp(p->nodes[i]->addr, addr) == 0)
            return p->nodes[i];
    return NULL;
}

static nsq__node_t *add_node(nsq_producer_t *p, const char *addr)
{
    char why[256];
    nsq__node_t *n = nsq__node_new(p, addr, strlen(addr), why, sizeof why);
    if (!n) {
        nsq__log(p, NSQ_LOG_WARNING, "lookupd listed %s: %s", addr, why);
        return NULL;
    }
    nsq__node_start(n);
    nsq__log(p, NSQ_LOG_INFO, "lookupd listed a new nsqd: %s", addr);
    return n;
}

static void set_tombstones(nsq__node_t *n, const nsq__disc_node_t *d)
{
    nsq__node_clear_tombstones(n);
    if (d->ntombstoned == 0)
        return;
    n->tombstoned = calloc(d->ntombstoned, sizeof *n->tombstoned);
    for (size_t i = 0; n->tombstoned && i < d->ntombstoned; i++)
        if ((n->tombstoned[n->ntombstoned] = strdup(d->tombstoned[i])))
            n->ntombstoned++;
}

static void on_round(void *opaque, const nsq__disc_round_t *r)
{
    nsq_producer_t *p = opaque;
    if (p->closing_handles)
        return;
    p->disc_error[0] = '\0';
    for (size_t i = 0; i < r->nlookupds; i++) {
        if (r->lookupds[i].ok)
            continue;
        nsq__log(p, NSQ_LOG_WARNING, "lookupd %s: %s", r->lookupds[i].address,
                 r->lookupds[i].error);
        if (r->nnodes == 0 && !p->disc_error[0])
            snprintf(p->disc_error, sizeof p->disc_error, "lookupd %s: %s",
                     r->lookupds[i].address, r->lookupds[i].error);
    }
    if (r->failed && r->round > 1)
        nsq__log(p, NSQ_LOG_WARNING,
                 "no lookupd answered: keeping the last list (%zu nsqd)",
                 r->nnodes);
    for (size_t i = 0; i < p->nnodes; i++)
        p->nodes[i]->listed = false;
    for (size_t i = 0; i < r->nnodes; i++) {
        nsq__node_t *n = find_node(p, r->nodes[i].address);
        if (!n)
            n = add_node(p, r->nodes[i].address);
        if (!n)
            continue;
        n->listed = true;
        set_tombstones(n, &r->nodes[i]);
    }
    for (size_t i = 0; i < p->nnodes; i++) {
        nsq__node_t *n = p->nodes[i];
        if (!n->given && !n->listed)
            nsq__node_drain(n);
    }
    /* Observable (tests wait for it): the round is applied. */
    nsq__log(p, NSQ_LOG_DEBUG, "discovery round %llu: %zu nsqd listed",
             (unsigned long long)r->round, r->nnodes);
    p->disc_waiting = false;
    nsq__route(p);
    nsq__arm_tick(p);
}

bool nsq__cluster_start(nsq_producer_t *p, char *why, size_t whylen)
{
    if (!p->conf->lookupd_http_addresses || !p->conf->lookupd_http_addresses[0])
        return true;
    nsq__disc_opts_t o;
    nsq__disc_opts_from_conf(&o, p->conf);
    o.on_round = on_round;
    o.opaque = p;
    p->disc = nsq__discovery_new(p->loop, &o, why, whylen);
    p->disc_waiting = p->disc != NULL;
    return p->disc != NULL;
}

static void disc_closed(void *opaque)
{
    nsq__handle_gone(opaque);
}

void nsq__cluster_stop(nsq_producer_t *p)
{
    if (p->disc) {
        nsq__discovery_close(p->disc, disc_closed, p);
        p->disc = NULL;
    }
}
