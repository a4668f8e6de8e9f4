/*
 * Transactions are reused, not malloc'd per message, and taking or giving
 * one back takes no lock.
 *
 * The pool is a stack (p->pool) that anyone may push onto with a CAS but
 * that is only ever emptied whole, with one atomic exchange.  A stack
 * whose pops are single-node CASes suffers ABA (a node popped and pushed
 * back between a popper's read of head->next and its CAS); one that is
 * only taken whole cannot: a push's CAS only compares the head it links
 * below itself, which stays a valid link whatever happened in between.
 *
 * A publisher that takes the stack uses its first transaction and parks
 * the rest in one of a few spare slots (a CAS from NULL, which has no ABA
 * either); the next taker looks at the slots first.  Everything stays
 * reachable from the producer, so destroy frees it all, whichever thread
 * last touched it.  When the slots are all busy the rest is pushed back
 * onto the stack (a walk to its end: rare, and it ends on a short list
 * since concurrent takers each hold part of it).
 *
 * On the application's loop (one thread) the pool is a plain free list.
 *
 * The loop thread gives most transactions back; a sync caller gives back
 * the ones whose result came after it stopped waiting.  Beyond
 * NSQ__POOL_MAX live transactions, a released one is freed instead.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Transactions kept alive for reuse, at most. */
#define NSQ__POOL_MAX 65536
/* A transaction grown past this by one large command is not kept. */
#define NSQ__KEEP_BUF 65536
#define NSQ__NSPARE (sizeof((nsq_producer_t *)0)->spare / sizeof(void *))

static void push(_Atomic(nsq__txn_t *) *stack, nsq__txn_t *first,
                 nsq__txn_t *last)
{
    nsq__txn_t *old = atomic_load_explicit(stack, memory_order_relaxed);
    do
        last->next = old;
    while (!atomic_compare_exchange_weak_explicit(
        stack, &old, first, memory_order_release, memory_order_relaxed));
}

/* Takes a list of free transactions: a spare slot's, else the stack. */
static nsq__txn_t *take(nsq_producer_t *p)
{
    for (size_t i = 0; i < NSQ__NSPARE; i++)
        if (atomic_load_explicit(&p->spare[i], memory_order_relaxed)) {
            nsq__txn_t *l = atomic_exchange_explicit(&p->spare[i], NULL,
                                                     memory_order_acquire);
            if (l)
                return l;
        }
    if (!atomic_load_explicit(&p->pool, memory_order_relaxed))
        return NULL;
    return atomic_exchange_explicit(&p->pool, NULL, memory_order_acquire);
}

/* Parks the rest of a taken list for the next taker. */
static void park(nsq_producer_t *p, nsq__txn_t *rest)
{
    for (size_t i = 0; i < NSQ__NSPARE; i++) {
        nsq__txn_t *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(&p->spare[i], &expect, rest,
                                                    memory_order_release,
                                                    memory_order_relaxed))
            return;
    }
    nsq__txn_t *last = rest;
    while (last->next)
        last = last->next;
    push(&p->pool, rest, last);
}

/* The count of live transactions: publishers and the loop change it,
 * except on the application's loop (one thread). */
static void count_live(nsq_producer_t *p, int n)
{
    if (p->app_loop)
        NSQ__COUNT(&p->txn_live, n);
    else
        atomic_fetch_add_explicit(&p->txn_live, n, memory_order_relaxed);
}

static void txn_free(nsq_producer_t *p, nsq__txn_t *t)
{
    free(t);
    count_live(p, -1);
}

/* The command lives in the same allocation as the transaction, sized so
 * that malloc's chunk (the request plus 8, in steps of 16) wastes nothing:
 * a queued message costs about its bytes on the wire. */
static size_t alloc_size(size_t need)
{
    size_t n = sizeof(nsq__txn_t) + need + 8;
    return ((n + 15) & ~(size_t)15) - 8;
}

/* What a queued message costs is this header plus its command: keep it
 * small (issue: memory per queued message close to the wire bytes). */
_Static_assert(sizeof(void *) != 8 || sizeof(nsq__txn_t) <= 56,
               "a transaction's header grew past 56 bytes");

nsq__txn_t *nsq__txn_get(nsq_producer_t *p, size_t need)
{
    if (need > UINT32_MAX - 64)
        return NULL;
    nsq__txn_t *t;
    if (p->app_loop) {
        /* One thread: a plain free list. */
        if ((t = p->free_txns) != NULL)
            p->free_txns = t->next;
    } else if ((t = take(p)) != NULL && t->next)
        park(p, t->next);
    if (!t || t->cap < need) {
        /* Not in any list: free to move. */
        size_t size = alloc_size(need);
        nsq__txn_t *n = realloc(t, size);
        if (!n) {
            if (t)
                txn_free(p, t);
            return NULL;
        }
        if (!t)
            count_live(p, 1);
        t = n;
        t->cap = (uint32_t)(size - sizeof *t);
    }
    t->next = NULL;
    t->len = 0;
    t->nmsgs = 1;
    t->line = 0;
    t->completed = false;
    t->in_write = false;
    t->release_pending = false;
    t->attempts = 0;
    t->ridx = NSQ__NOT_REPLICA;
    t->node_ix = NSQ__NO_NODE;
    t->cb = NULL;
    t->opaque = NULL;
    t->sync = false;
    atomic_store_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void nsq__txn_release(nsq_producer_t *p, nsq__txn_t *t)
{
    /* A transaction nobody else holds (async: the common case) skips the
     * read-modify-write. */
    if (atomic_load_explicit(&t->refs, memory_order_acquire) != 1 &&
        atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (t->cap > NSQ__KEEP_BUF ||
        atomic_load_explicit(&p->txn_live, memory_order_relaxed) >
            NSQ__POOL_MAX) {
        txn_free(p, t);
        return;
    }
    if (p->app_loop) {
        t->next = p->free_txns;
        p->free_txns = t;
        return;
    }
    push(&p->pool, t, t);
}

static void free_list(nsq_producer_t *p, nsq__txn_t *t)
{
    while (t) {
        nsq__txn_t *next = t->next;
        txn_free(p, t);
        t = next;
    }
}

void nsq__txn_pool_free(nsq_producer_t *p)
{
    free_list(p, p->free_txns);
    p->free_txns = NULL;
    free_list(p, atomic_exchange(&p->pool, NULL));
    for (size_t i = 0; i < NSQ__NSPARE; i++)
        free_list(p, atomic_exchange(&p->spare[i], NULL));
}

void nsq__list_push(nsq__txn_list_t *l, nsq__txn_t *t)
{
    t->next = NULL;
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    l->count++;
}

nsq__txn_t *nsq__list_pop(nsq__txn_list_t *l)
{
    nsq__txn_t *t = l->head;
    if (!t)
        return NULL;
    l->head = t->next;
    if (!l->head)
        l->tail = NULL;
    l->count--;
    t->next = NULL;
    return t;
}
