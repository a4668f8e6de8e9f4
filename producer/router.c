/*
 * The router: runs on the producer's loop, whichever host runs that loop
 * (host_thread.c: a thread of the producer's own; host_loop.c: the
 * application's).  One place multiplexes the four inputs -- new
 * transactions (the host's wake-up calls nsq__router_run), nsqd's answers
 * (reads), errors (failed reads, writes, timers) and exit (stop) -- so
 * every decision about a transaction is made here, on one thread, without
 * locks (the handoff from publishing threads is an atomic stack taken
 * whole; on the application's loop publishes append to p->unrouted).
 *
 * nsqd answers a connection's commands in order, so the answers match the
 * in-flight FIFO by position.  After a fatal error nsqd closes without
 * reading further: the commands written after the rejected one were never
 * processed, so they fail as not sent (safe to retry).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NSQ__TICK_BUSY_MS 20
#define NSQ__TICK_IDLE_MS 250

/* ---------------------------------------------------------------- results */

static void count_result(nsq_producer_t *p, nsq__txn_t *t, nsq_err_t err)
{
    if (t->kind == NSQ__TXN_PING)
        return;
    if (err == NSQ_OK) {
        NSQ__COUNT(&p->stats.commands_ok, 1);
        NSQ__COUNT(&p->stats.published, t->nmsgs);
    } else if (nsq_err_is_broker(err)) {
        NSQ__COUNT(&p->stats.rejected, 1);
    } else if (err == NSQ_ERR_IN_DOUBT) {
        NSQ__COUNT(&p->stats.in_doubt, 1);
    } else if (err == NSQ_ERR_TIMED_OUT || err == NSQ_ERR_TIMED_OUT_UNSENT) {
        NSQ__COUNT(&p->stats.timed_out, 1);
    } else if (err == NSQ_ERR_STOPPED) {
        NSQ__COUNT(&p->stats.stopped, 1);
    } else {
        NSQ__COUNT(&p->stats.not_sent, 1);
    }
}

/* A copy of a replicated publish is done; the publish too once all are. */
static void replica_done(nsq_producer_t *p, nsq__txn_t *t, nsq_err_t err,
                         const char *detail)
{
    nsq__replica_t *r = t->rep;
    nsq__node_t *node = nsq__txn_node(p, t);
    r->done++;
    if (err == NSQ_OK && node)
        r->stored_on[r->stored++] = node->addr;
    else if (r->err == NSQ_OK) {
        r->err = err == NSQ_OK ? NSQ_ERR_NOT_SENT : err;
        snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
    }
    if (r->done < r->want)
        return;
    char why[512] = "";
    if (r->err != NSQ_OK)
        snprintf(why, sizeof why, "stored on %u of %u nodes: %s",
                 (unsigned)r->stored, (unsigned)r->want, r->detail);
    nsq_publish_result_t res = {r->want, r->stored, r->stored_on};
    p->cur_result = &res;
    nsq__finish(p, r->parent, r->err, why);
    p->cur_result = NULL;
    free(r);
}

/*
 * Splits publish t into replicas copies, onto the unrouted list; t waits
 * in none.  false (t untouched) when memory runs out.
 */
static bool replicate(nsq_producer_t *p, nsq__txn_t *t)
{
    size_t want = (size_t)p->conf->replicas;
    nsq__replica_t *r =
        calloc(1, sizeof *r + want * (sizeof *r->on + sizeof *r->stored_on));
    if (!r)
        return false;
    r->on = (nsq__node_t **)(r + 1);
    r->stored_on = (const char **)(r->on + want);
    nsq__txn_t *copy[16];
    for (size_t i = 0; i < want; i++) {
        copy[i] = nsq__txn_get(p, t->len);
        if (!copy[i]) {
            while (i--)
                nsq__txn_release(p, copy[i]);
            free(r);
            return false;
        }
    }
    r->parent = t;
    r->want = (uint16_t)want;
    for (size_t i = 0; i < want; i++) {
        nsq__txn_t *c = copy[i];
        memcpy(c->data, t->data, t->len);
        c->len = t->len;
        c->line = t->line;
        c->kind = t->kind;
        c->nmsgs = t->nmsgs;
        c->deadline_ms = t->deadline_ms;
        c->rep = r;
        c->ridx = (uint8_t)i;
        nsq__list_push(&p->unrouted, c);
    }
    /* t counted as queued once; its copies each count. */
    nsq__queued_add(p, (int64_t)(want - 1) * t->nmsgs);
    return true;
}

/* Delivers a result, once. */
static void complete(nsq_producer_t *p, nsq__txn_t *t, nsq_err_t err,
                     const char *detail)
{
    if (t->completed)
        return;
    t->completed = true;
    if (t->kind == NSQ__TXN_BATCH) {
        /* nsqd's answer to the MPUB is each member's, in order. */
        for (nsq__txn_t *m = t->members; m; m = m->next)
            complete(p, m, err, detail);
        return;
    }
    if (t->ridx != NSQ__NOT_REPLICA) {
        replica_done(p, t, err, detail);
        return;
    }
    count_result(p, t, err);
    if (t->sync) {
        nsq__sync_done(t, err, detail);
    } else if (t->cb) {
        /* Without replicas: stored on its node, or not. */
        nsq__node_t *node = nsq__txn_node(p, t);
        const char *addr = node ? node->addr : "";
        nsq_publish_result_t own = {1, err == NSQ_OK && node, &addr};
        bool mine = !p->cur_result;
        if (mine)
            p->cur_result = &own;
        t->cb(p, err, detail, t->opaque);
        if (mine)
            p->cur_result = NULL;
    }
}

void nsq__release_after_write(nsq_producer_t *p, nsq__txn_t *t)
{
    if (t->in_write)
        t->release_pending = true;
    else
        nsq__txn_release(p, t);
}

/* Completes and releases a transaction that is in no list any more.  One
 * that is part of the write still in progress (nsqd can answer the first
 * commands of a large write before libuv has written the last) is released
 * when that write ends, since libuv still reads its bytes. */
void nsq__finish(nsq_producer_t *p, nsq__txn_t *t, nsq_err_t err,
                 const char *detail)
{
    complete(p, t, err, detail);
    if (t->kind == NSQ__TXN_BATCH) {
        nsq__txn_t *m = t->members;
        t->members = NULL;
        while (m) {
            nsq__txn_t *next = m->next;
            m->next = NULL;
            nsq__release_after_write(p, m);
            m = next;
        }
    }
    nsq__release_after_write(p, t);
}

/*
 * The lists a transaction waits in (unrouted, a node's waiting) are kept
 * in deadline order, so that publish_timeout need only look at their
 * heads.  A new publish has the latest deadline and is pushed at the tail;
 * a retried one (older than what came since) is inserted here, walking
 * from the head, which is near: it is older than most of what waits.
 */
void nsq__list_insert(nsq__txn_list_t *l, nsq__txn_t *t)
{
    if (!l->tail || l->tail->deadline_ms <= t->deadline_ms) {
        nsq__list_push(l, t);
        return;
    }
    nsq__txn_t **at = &l->head;
    while ((*at)->deadline_ms <= t->deadline_ms)
        at = &(*at)->next;
    t->next = *at;
    *at = t;
    l->count++;
}

/* Puts chain (linked by next) back into l, keeping its order: each goes
 * before the first transaction, at or after the previous one's place,
 * whose deadline is not earlier than its own.  The chain was taken from
 * the front of l, so it goes ahead of what came since with the same
 * deadline, and l stays in deadline order for a retry that came meanwhile
 * with an earlier one. */
void nsq__list_put_back(nsq__txn_list_t *l, nsq__txn_t *chain)
{
    nsq__txn_t **at = &l->head;
    while (chain) {
        nsq__txn_t *t = chain;
        chain = t->next;
        while (*at && (*at)->deadline_ms < t->deadline_ms)
            at = &(*at)->next;
        t->next = *at;
        *at = t;
        if (!t->next)
            l->tail = t;
        at = &t->next;
        l->count++;
    }
}

/* Gives back queue room for a transaction that leaves the waiting list. */
void nsq__unqueue(nsq_producer_t *p, nsq__txn_t *t)
{
    nsq__queued_add(p, -(int64_t)t->nmsgs);
    if (atomic_load(&p->space_waiters) > 0) {
        pthread_mutex_lock(&p->qlock);
        pthread_cond_broadcast(&p->qspace);
        pthread_mutex_unlock(&p->qlock);
    }
}

/* Whether retry_not_sent or retry_in_doubt could send t (with err) to
 * another node, leaving aside whether its write ended. */
static bool may_retry(nsq_producer_t *p, const nsq__txn_t *t, nsq_err_t err)
{
    bool not_sent = p->conf->retry_not_sent && !nsq_err_is_broker(err) &&
                    nsq_err_fate(err) == NSQ_FATE_NOT_STORED;
    bool in_doubt = p->conf->retry_in_doubt && err == NSQ_ERR_IN_DOUBT;
    return p->nnodes >= 2 && (not_sent || in_doubt) && !t->completed &&
           t->kind != NSQ__TXN_PING && !p->closing_handles;
}

/*
 * A connection failed while libuv was still writing t (a large write, or
 * a peer that stopped reading): t must not go to another node while libuv
 * reads its bytes.  It waits on n's held list; closing the handle ends the
 * write (its callback runs, with UV_ECANCELED, before the close callback),
 * and nsq__retry_held decides then.  A batch (and its members) is held
 * whole: its header and members share the write.
 */
static void hold(nsq__node_t *n, nsq__txn_t *t, nsq_err_t err, const char *why)
{
    if (!n->held.head) {
        n->held_err = err;
        snprintf(n->held_why, sizeof n->held_why, "%s", why);
    }
    nsq__list_push(&n->held, t);
}

/*
 * retry_not_sent: a transaction node n never processed (and, with
 * retry_in_doubt, one written to n when n died) goes back to be routed
 * to another node, while it has attempts and time left and another
 * node exists; one libuv still writes is held until that write ends.  Its
 * result stays open.  true if it was taken back (it must be in no list).
 * queued says whether it still counts as queued.
 */
bool nsq__retry(nsq__node_t *n, nsq__txn_t *t, nsq_err_t err, const char *why,
                bool queued)
{
    nsq_producer_t *p = n->p;
    if (!may_retry(p, t, err) || t->attempts + 1 >= p->conf->max_attempts ||
        t->deadline_ms <= nsq__mono_ms())
        return false;
    bool writing = t->in_write;
    if (t->kind == NSQ__TXN_BATCH)
        for (nsq__txn_t *m = t->members; m; m = m->next) {
            if (m->attempts + 1 >= p->conf->max_attempts)
                return false;
            writing = writing || m->in_write;
        }
    if (writing) {
        hold(n, t, err, why);
        return true;
    }
    if (t->kind == NSQ__TXN_BATCH) {
        /* Its PUBs go back one by one; the batch itself is done. */
        nsq__txn_t *m = t->members;
        t->members = NULL;
        while (m) {
            nsq__txn_t *next = m->next;
            m->next = NULL;
            m->attempts++;
            nsq__queued_add(p, m->nmsgs);
            nsq__list_insert(&p->unrouted, m);
            m = next;
        }
        t->completed = true;
        nsq__release_after_write(p, t);
        return true;
    }
    t->attempts++;
    if (!queued)
        nsq__queued_add(p, t->nmsgs);
    nsq__list_insert(&p->unrouted, t);
    return true;
}

/* The write that held n's transactions ended: each goes to another node,
 * or finishes with the result the failure gave it. */
void nsq__retry_held(nsq__node_t *n)
{
    nsq_producer_t *p = n->p;
    nsq__txn_t *t;
    while ((t = nsq__list_pop(&n->held)) != NULL) {
        if (nsq__retry(n, t, n->held_err, n->held_why, false))
            p->reroute = true;
        else
            nsq__finish(p, t, n->held_err, n->held_why);
    }
    nsq__arm_tick(p);
}

void nsq__fail_waiting(nsq__node_t *n, nsq_err_t err, const char *why)
{
    nsq_producer_t *p = n->p;
    nsq__txn_t *t;
    bool retried = false;
    while ((t = nsq__list_pop(&n->waiting)) != NULL) {
        if (nsq__retry(n, t, err, why, true)) {
            retried = true;
            continue;
        }
        nsq__unqueue(p, t);
        nsq__finish(p, t, err, why);
    }
    if (retried)
        p->reroute = true;
}

/* Takes everything publishers queued since the last wake-up: the inbox
 * whole (one exchange), reversed into the order of the pushes, behind
 * what waits to be routed. */
static void take_inbox(nsq_producer_t *p)
{
    nsq__txn_t *t = NULL;
    if (atomic_load_explicit(&p->inbox, memory_order_relaxed))
        t = atomic_exchange_explicit(&p->inbox, NULL, memory_order_acquire);
    nsq__txn_list_t q = {.tail = t};
    while (t) {
        nsq__txn_t *next = t->next;
        t->next = q.head;
        q.head = t;
        q.count++;
        t = next;
    }
    if (q.head) {
        if (p->unrouted.tail)
            p->unrouted.tail->next = q.head;
        else
            p->unrouted.head = q.head;
        p->unrouted.tail = q.tail;
        p->unrouted.count += q.count;
    }
}

static void assign(nsq_producer_t *p);

void nsq__drain_queue(nsq_producer_t *p)
{
    take_inbox(p);
    assign(p);
}

/* Commands a node has not had answered: waiting and in flight. */
static size_t outstanding(const nsq__node_t *n)
{
    return n->waiting.count + n->inflight.count;
}

/*
 * Whether node n may take t in pass 0..3 of pick: pass 0 wants a healthy
 * node (not backing off; for failover, not failed within failback_after)
 * other than the last to fail t, pass 1 a node not backing off, pass 2
 * any node other than the last to fail t, pass 3 any node that takes
 * t's topic.
 */
static bool may_take(nsq_producer_t *p, nsq__node_t *n, const nsq__txn_t *t,
                     int pass, int64_t now)
{
    if (!nsq__node_takes(n, t) || (pass < 3 && n->ix == t->node_ix))
        return false;
    /* A copy of a replicated publish: not where another copy went. */
    nsq__replica_t *r = nsq__txn_rep(t);
    for (size_t i = 0; r && i < r->want; i++)
        if (i != t->ridx && r->on[i] == n)
            return false;
    if (pass < 2 && !nsq__node_usable(n, now))
        return false;
    if (pass == 0 && p->strategy == NSQ__FAILOVER && n->last_fail_ms &&
        now - n->last_fail_ms < p->conf->failback_after_ms)
        return false;
    return true;
}

/*
 * The strategy: which node gets transaction t.  round_robin: the next node
 * in turn; failover: the first in order; least_outstanding: the one with
 * the fewest commands unanswered (ties in turn) -- each among the nodes
 * of the first pass of may_take that has any.  When every node backs off,
 * a node's connect fails the publish fast, or retries it elsewhere.
 */
static nsq__node_t *pick(nsq_producer_t *p, const nsq__txn_t *t, int64_t now)
{
    size_t k = p->nnodes;
    if (k == 1)
        return nsq__node_takes(p->nodes[0], t) ? p->nodes[0] : NULL;
    for (int pass = 0; pass < 4; pass++) {
        if (p->strategy == NSQ__FAILOVER) {
            for (size_t i = 0; i < k; i++)
                if (may_take(p, p->nodes[i], t, pass, now))
                    return p->nodes[i];
            continue;
        }
        nsq__node_t *best = NULL;
        size_t at = 0;
        for (size_t i = 0; i < k; i++) {
            nsq__node_t *n = p->nodes[(p->rr + i) % k];
            if (!may_take(p, n, t, pass, now) ||
                (best && outstanding(n) >= outstanding(best)))
                continue;
            best = n;
            at = i;
            if (p->strategy == NSQ__ROUND_ROBIN)
                break;
        }
        if (best) {
            p->rr = (p->rr + at + 1) % k;
            return best;
        }
    }
    return NULL;
}

/* Fails every transaction of list l (which counts as queued). */
static void fail_list(nsq_producer_t *p, nsq__txn_list_t *l, nsq_err_t err,
                      const char *why)
{
    nsq__txn_t *t;
    while ((t = nsq__list_pop(l)) != NULL) {
        nsq__unqueue(p, t);
        nsq__finish(p, t, err, why);
    }
}

/* Gives every unrouted transaction a node (its waiting list).  None takes
 * it: it waits for discovery's first round, or fails at once. */
static void assign(nsq_producer_t *p)
{
    int64_t now = p->unrouted.head ? nsq__mono_ms() : 0;
    nsq__txn_t *t;
    nsq__txn_list_t none = {0};
    while ((t = nsq__list_pop(&p->unrouted)) != NULL) {
        if (p->conf->replicas > 1 && t->ridx == NSQ__NOT_REPLICA &&
            t->kind != NSQ__TXN_PING && t->kind != NSQ__TXN_BATCH &&
            replicate(p, t))
            continue;
        nsq__node_t *n = pick(p, t, now);
        /* Given a node before: a retry, or from a node that left. */
        bool again = t->node_ix != NSQ__NO_NODE;
        t->node_ix = n ? n->ix : NSQ__NO_NODE;
        if (n && t->ridx != NSQ__NOT_REPLICA)
            t->rep->on[t->ridx] = n;
        if (!n) {
            nsq__list_push(&none, t);
        } else if (!again) {
            /* New: the latest deadline (within the few milliseconds by
             * which publishing threads may race). */
            nsq__list_push(&n->waiting, t);
        } else {
            if (n->inflight.tail &&
                t->deadline_ms < n->inflight.tail->deadline_ms)
                n->inflight_unordered = true;
            nsq__list_insert(&n->waiting, t);
        }
    }
    if (!none.head)
        return;
    if (p->disc_waiting) {
        p->unrouted = none;
        return;
    }
    char why[512];
    if (!p->disc)
        snprintf(why, sizeof why,
                 "no nsqd known that takes this topic (not sent)");
    else if (p->disc_error[0])
        snprintf(why, sizeof why,
                 "no nsqd known that takes this topic: %s (not sent)",
                 p->disc_error);
    else
        snprintf(why, sizeof why,
                 "no nsqd known: the lookupds list no nsqd that takes this "
                 "topic (not sent)");
    fail_list(p, &none, NSQ_ERR_CONNECT, why);
}

/* Assigns what waits and starts the nodes that have work. */
void nsq__route(nsq_producer_t *p)
{
    do {
        p->reroute = false;
        nsq__drain_queue(p);
        for (size_t i = 0; i < p->nnodes && !p->closing_handles; i++) {
            nsq__node_t *n = p->nodes[i];
            if (!n->waiting.head)
                continue;
            if (n->state == NSQ__DISCONNECTED)
                nsq__connect_start(n);
            else
                nsq__pump(n);
        }
    } while (p->reroute && !p->closing_handles);
}

/* ---------------------------------------------------------------- timers */

uint64_t nsq__random(nsq_producer_t *p)
{
    /* xorshift64: jitter only needs to differ between producers. */
    uint64_t x = p->rng ? p->rng : 0x9e3779b97f4a7c15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

void nsq__arm_tick(nsq_producer_t *p)
{
    if (p->closing_handles)
        return;
    bool busy = p->stop_draining || p->unrouted.head;
    for (size_t i = 0; i < p->nnodes; i++) {
        nsq__node_t *n = p->nodes[i];
        atomic_store_explicit(&n->pub_state, (int)n->state,
                              memory_order_relaxed);
        busy = busy || n->waiting.head || n->inflight.head || n->write_active ||
               n->state == NSQ__RESOLVING || n->state == NSQ__CONNECTING ||
               n->state == NSQ__IDENTIFYING;
    }
    uint64_t ms = busy ? NSQ__TICK_BUSY_MS : NSQ__TICK_IDLE_MS;
    if (uv_timer_get_repeat(&p->tick) != ms ||
        !uv_is_active((uv_handle_t *)&p->tick))
        uv_timer_start(&p->tick, nsq__router_on_tick, ms, ms);
}

/* publish_timeout for a list in deadline order that counts as queued:
 * its expired head fails as never written. */
static void expire(nsq_producer_t *p, nsq__txn_list_t *l, int64_t now,
                   const char *why)
{
    while (l->head && l->head->deadline_ms <= now) {
        nsq__txn_t *t = nsq__list_pop(l);
        nsq__unqueue(p, t);
        nsq__finish(p, t, NSQ_ERR_TIMED_OUT_UNSENT, why);
    }
}

/* Deadlines and timeouts, checked on every tick: one node's. */
static void node_tick(nsq__node_t *n, int64_t now)
{
    nsq_producer_t *p = n->p;
    char why[512];

    /* publish_timeout: the waiting list is in deadline order (a constant
     * added to the enqueue time; retries inserted at their place), so only
     * its head needs a look.  The in-flight list is in the order of the
     * writes: so is it, unless a retry was written after newer publishes
     * (then every entry gets a look, until it empties). */
    expire(p, &n->waiting, now, "publish_timeout passed before it was written");
    if (!n->inflight.head)
        n->inflight_unordered = false;
    for (nsq__txn_t *t = n->inflight.head;
         t && (t->deadline_ms <= now || n->inflight_unordered); t = t->next)
        if (!t->completed && t->deadline_ms <= now)
            complete(p, t, NSQ_ERR_TIMED_OUT,
                     "publish_timeout passed waiting for nsqd's answer "
                     "(it was written)");

    switch (n->state) {
    case NSQ__RESOLVING:
    case NSQ__CONNECTING:
        if (now - n->phase_started_ms >= p->conf->dial_timeout_ms) {
            snprintf(why, sizeof why, "dial %s: timed out after %lldms",
                     n->addr, (long long)p->conf->dial_timeout_ms);
            nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
        }
        break;
    case NSQ__IDENTIFYING:
        if (now - n->phase_started_ms >= p->conf->read_timeout_ms) {
            snprintf(why, sizeof why, "%s: no IDENTIFY answer in %lldms",
                     n->addr, (long long)p->conf->read_timeout_ms);
            nsq__conn_fail(n, NSQ_ERR_CONNECT, why);
        }
        break;
    case NSQ__READY:
        if (n->write_active &&
            now - n->write_started_ms >= p->conf->write_timeout_ms) {
            snprintf(why, sizeof why, "%s: write timed out after %lldms",
                     n->addr, (long long)p->conf->write_timeout_ms);
            nsq__conn_fail(n, NSQ_ERR_IO, why);
        } else if (n->inflight.head &&
                   now - n->last_read_ms >= p->conf->read_timeout_ms) {
            snprintf(why, sizeof why, "%s: no answer in %lldms (read_timeout)",
                     n->addr, (long long)p->conf->read_timeout_ms);
            nsq__conn_fail(n, NSQ_ERR_IO, why);
        } else if (n->heartbeat_ms > 0 &&
                   now - n->last_read_ms >= 2 * n->heartbeat_ms) {
            snprintf(why, sizeof why, "%s: no heartbeat in %lldms", n->addr,
                     (long long)(2 * n->heartbeat_ms));
            nsq__conn_fail(n, NSQ_ERR_IO, why);
        }
        break;
    default:
        break;
    }
}

/* Nothing waits, is in flight or is being written anywhere. */
static bool router_idle(const nsq_producer_t *p)
{
    if (p->unrouted.head)
        return false;
    for (size_t i = 0; i < p->nnodes; i++) {
        const nsq__node_t *n = p->nodes[i];
        if (n->waiting.head || n->inflight.head || n->write_active ||
            n->pings_writing.head)
            return false;
    }
    return true;
}

void nsq__router_on_tick(uv_timer_t *timer)
{
    nsq_producer_t *p = timer->data;
    int64_t now = nsq__mono_ms();
    expire(p, &p->unrouted, now,
           "publish_timeout passed before an nsqd was known");
    for (size_t i = 0; i < p->nnodes && !p->closing_handles; i++) {
        nsq__node_t *n = p->nodes[i];
        node_tick(n, now);
        if (!n->given && !n->listed)
            nsq__node_drain(n);
    }
    if (p->reroute && !p->closing_handles)
        nsq__route(p);

    if (p->stop_draining && (router_idle(p) || now >= p->stop_deadline_ms))
        nsq__finish_stop(p);
    if (!p->closing_handles)
        nsq__arm_tick(p);
}

/* ---------------------------------------------------------------- stop */

static void on_linger_closed(uv_handle_t *h)
{
    nsq__node_t *n = h->data;
    nsq__handle_gone(n->p);
}

/*
 * Transaction cleanup: close the connection, fail what is in flight and
 * what waits, then drain the queue until no publisher is inside the
 * enqueue path any more -- a publisher that got in before the stop flag
 * may still push, and must not be left waiting forever.
 */
/* Stop: what waits anywhere fails as stopped (no retry: closing). */
static void fail_all_waiting(nsq_producer_t *p)
{
    fail_list(p, &p->unrouted, NSQ_ERR_STOPPED,
              "producer stopped before it was sent");
    for (size_t i = 0; i < p->nnodes; i++)
        nsq__fail_waiting(p->nodes[i], NSQ_ERR_STOPPED,
                          "producer stopped before it was sent");
}

void nsq__finish_stop(nsq_producer_t *p)
{
    if (p->closing_handles)
        return;
    p->closing_handles = true;
    nsq__txn_t *t;
    for (size_t i = 0; i < p->nnodes; i++) {
        nsq__node_t *n = p->nodes[i];
        while ((t = nsq__list_pop(&n->inflight)) != NULL) {
            NSQ__UNCOUNT(&p->stats.in_flight, 1);
            NSQ__UNCOUNT(&n->stats.in_flight, 1);
            nsq__finish(p, t, NSQ_ERR_IN_DOUBT,
                        "producer stopped before nsqd answered (in doubt: it "
                        "was written)");
        }
    }
    fail_all_waiting(p);
    bool told = false;
    for (;;) {
        take_inbox(p);
        fail_all_waiting(p);
        if (atomic_load(&p->concurrent) == 0)
            break;
        if (!told) {
            /* Observable (tests wait for it): the spin has begun. */
            nsq__log(p, NSQ_LOG_DEBUG,
                     "stop: waiting for publishers inside publish");
            told = true;
        }
        sched_yield();
    }
    take_inbox(p);
    fail_all_waiting(p);
    for (size_t i = 0; i < p->nnodes; i++) {
        nsq__node_t *n = p->nodes[i];
        if (n->tcp) {
            uv_read_stop((uv_stream_t *)n->tcp);
            uv_close((uv_handle_t *)n->tcp, nsq__on_close);
            n->tcp = NULL;
        }
        uv_close((uv_handle_t *)&n->linger, on_linger_closed);
        /* A name lookup in progress is cancelled; its callback finds
         * it is no longer the node's and frees it. */
        if (n->state == NSQ__RESOLVING)
            n->state = NSQ__DISCONNECTED;
        nsq__conn_forget_lookup(n);
    }
    nsq__cluster_stop(p);
    uv_timer_stop(&p->tick);
    uv_close((uv_handle_t *)&p->tick, nsq__on_handle_closed);
    /* The host's wake-up (none if it failed to start). */
    if (p->app_loop)
        uv_close((uv_handle_t *)&p->flush, nsq__on_handle_closed);
    else if (p->wake.data)
        uv_close((uv_handle_t *)&p->wake, nsq__on_handle_closed);
}

static void begin_stop(nsq_producer_t *p)
{
    if (p->stop_draining || p->closing_handles)
        return;
    p->stop_draining = true;
    p->stop_deadline_ms = nsq__mono_ms() + p->conf->stop_timeout_ms;
    nsq__log(p, NSQ_LOG_DEBUG, "stopping");
    if (router_idle(p) || p->conf->stop_timeout_ms == 0)
        nsq__finish_stop(p);
    else
        nsq__arm_tick(p);
}

/* ---------------------------------------------------------------- the turn */

void nsq__router_run(nsq_producer_t *p)
{
    if (p->closing_handles)
        return;
    if (!p->stop_draining && atomic_load(&p->stopping)) {
        /* A graceful stop still writes what is queued: connect below.
         * (route takes the inbox too; the stop must see it first.) */
        nsq__drain_queue(p);
        begin_stop(p);
        if (p->closing_handles)
            return;
    }
    nsq__route(p);
    nsq__arm_tick(p);
}
