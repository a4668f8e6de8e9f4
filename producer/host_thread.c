/*
 * The default host: the router runs on a loop and a thread of the
 * producer's own.  Publishers on any thread push onto the inbox and wake
 * the loop with a uv_async_t; stop and destroy wait for the thread.
 */
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

static void on_wake(uv_async_t *h)
{
    nsq__router_run(h->data);
}

static void thread_main(void *arg)
{
    nsq_producer_t *p = arg;
    /* A write to a connection nsqd already closed raises SIGPIPE in the
     * writing thread; libuv does not ask for MSG_NOSIGNAL, and a library
     * must not rely on its host ignoring the signal.  Blocked here, the
     * write fails with EPIPE instead. */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    p->loop_tid = pthread_self();
    sem_post(&p->started);
    /* A publish or stop before the loop ran is seen on this first wake. */
    uv_async_send(&p->wake);
    uv_run(p->loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&p->stop_lock);
    p->stop_done = true;
    pthread_cond_broadcast(&p->stop_cond);
    pthread_mutex_unlock(&p->stop_lock);
}

nsq_producer_t *nsq_producer_new(const char *addr, nsq_conf_t *conf,
                                 char *errstr, size_t errlen)
{
    nsq_producer_t *p = nsq__producer_new(NULL, addr, conf, errstr, errlen);
    if (!p)
        return NULL;
    int rc = uv_async_init(p->loop, &p->wake, on_wake);
    if (rc == 0) {
        p->wake.data = p;
        p->open_handles++;
        sem_init(&p->started, 0, 0);
        rc = uv_thread_create(&p->thread, thread_main, p);
        if (rc == 0) {
            sem_wait(&p->started);
            return p;
        }
        sem_destroy(&p->started);
    }
    /* No thread: close what is on the loop here, and give conf back. */
    char why[200];
    snprintf(why, sizeof why, "cannot start the producer: %s", uv_strerror(rc));
    nsq__put_err(errstr, errlen, why);
    nsq__finish_stop(p);
    uv_run(p->loop, UV_RUN_DEFAULT);
    uv_loop_close(p->loop);
    if (conf)
        p->conf = NULL; /* the caller keeps it */
    nsq__producer_free(p);
    return NULL;
}

nsq_err_t nsq_producer_stop(nsq_producer_t *p)
{
    if (!p)
        return NSQ_ERR_INVALID_ARG;
    if (p->app_loop)
        return nsq__refuse_wait(p);
    pthread_mutex_lock(&p->stop_lock);
    if (!p->stop_requested) {
        /* The first call wins: refuse new publishes, wake the router. */
        p->stop_requested = true;
        atomic_store(&p->stopping, true);
        uv_async_send(&p->wake);
        /* Wake threads waiting for queue room, so they see the stop. */
        pthread_mutex_lock(&p->qlock);
        pthread_cond_broadcast(&p->qspace);
        pthread_mutex_unlock(&p->qlock);
    }
    if (!nsq__on_loop_thread(p))
        while (!p->stop_done)
            pthread_cond_wait(&p->stop_cond, &p->stop_lock);
    pthread_mutex_unlock(&p->stop_lock);
    return NSQ_OK;
}

nsq_err_t nsq_producer_destroy(nsq_producer_t *p)
{
    if (!p)
        return NSQ_OK;
    nsq_err_t refused = nsq__refuse_wait(p);
    if (refused != NSQ_OK)
        return refused;
    nsq_producer_stop(p);
    uv_thread_join(&p->thread);
    uv_loop_close(p->loop);
    sem_destroy(&p->started);
    nsq__producer_free(p);
    return NSQ_OK;
}
