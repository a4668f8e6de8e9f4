/*
 * Transactions are reused, not malloc'd per message: a free list behind a
 * mutex (uncontended, it costs about as much as an atomic exchange) keeps
 * each object with its command buffer, so steady-state publishing does not
 * allocate.
 */
#include <stdlib.h>
#include <time.h>

#include "internal.h"

/* Objects kept for reuse; beyond that they are freed. */
#define NSQ__POOL_MAX 65536
/* A buffer grown past this by one large message is not kept. */
#define NSQ__KEEP_BUF 65536

nsq__txn_t *nsq__txn_get(nsq_producer_t *p)
{
    pthread_mutex_lock(&p->pool_lock);
    nsq__txn_t *t = p->pool;
    if (t) {
        p->pool = t->next;
        p->pool_size--;
    }
    pthread_mutex_unlock(&p->pool_lock);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t)
            return NULL;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        int rc = pthread_cond_init(&t->done, &ca);
        pthread_condattr_destroy(&ca);
        if (rc != 0) {
            free(t);
            return NULL;
        }
        pthread_mutex_init(&t->lock, NULL);
    }
    t->next = NULL;
    t->cmd.len = 0;
    t->nmsgs = 1;
    t->written = false;
    t->completed = false;
    t->in_write = false;
    t->release_pending = false;
    t->sync = false;
    t->cb = NULL;
    t->opaque = NULL;
    t->result = NSQ_OK;
    t->detail[0] = '\0';
    atomic_store(&t->refs, 1);
    t->sync_state = NSQ__SYNC_WAITING;
    return t;
}

static void txn_free(nsq__txn_t *t)
{
    nsq_buf_free(&t->cmd);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void nsq__txn_release(nsq_producer_t *p, nsq__txn_t *t)
{
    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    if (t->cmd.cap > NSQ__KEEP_BUF)
        nsq_buf_free(&t->cmd);
    pthread_mutex_lock(&p->pool_lock);
    if (p->pool_size < NSQ__POOL_MAX) {
        t->next = p->pool;
        p->pool = t;
        p->pool_size++;
        t = NULL;
    }
    pthread_mutex_unlock(&p->pool_lock);
    if (t)
        txn_free(t);
}

void nsq__txn_pool_free(nsq_producer_t *p)
{
    nsq__txn_t *t = p->pool;
    while (t) {
        nsq__txn_t *next = t->next;
        txn_free(t);
        t = next;
    }
    p->pool = NULL;
    p->pool_size = 0;
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
