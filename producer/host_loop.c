/*
 * The second host: the router runs on the application's libuv loop, on
 * the application's thread.  A publish appends to the router's list and
 * arms a uv_prepare_t, so that everything published during one loop
 * iteration is routed and written in one go just before the loop polls;
 * closing ends, the libuv way, with a callback once the producer's last
 * handle is closed.
 */
#include <signal.h>
#include <stdlib.h>

#include "internal.h"

static void on_flush(uv_prepare_t *h)
{
    nsq_producer_t *p = h->data;
    uv_prepare_stop(h);
    nsq__router_run(p);
}

/* Starting an active prepare handle does nothing: once per iteration. */
void nsq__loop_host_schedule(nsq_producer_t *p)
{
    uv_prepare_start(&p->flush, on_flush);
}

/* SIGPIPE is the application's to handle; say so once if it would kill
 * the process on a write to a closed connection. */
static void check_sigpipe(nsq_producer_t *p)
{
    struct sigaction sa;
    sigset_t blocked;
    if (sigaction(SIGPIPE, NULL, &sa) != 0 ||
        pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
        return;
    if (sa.sa_handler == SIG_DFL && !sigismember(&blocked, SIGPIPE))
        nsq__log(p, NSQ_LOG_WARNING,
                 "SIGPIPE is not ignored: a write to a connection nsqd "
                 "closed will end the process (signal(SIGPIPE, SIG_IGN))");
}

nsq_producer_t *nsq_producer_new_on_loop(uv_loop_t *loop, const char *addr,
                                         nsq_conf_t *conf, char *errstr,
                                         size_t errlen)
{
    if (!loop) {
        nsq__put_err(errstr, errlen, "no loop");
        return NULL;
    }
    nsq_producer_t *p = nsq__producer_new(loop, addr, conf, errstr, errlen);
    if (!p)
        return NULL;
    p->loop_tid = pthread_self();
    uv_prepare_init(loop, &p->flush);
    p->flush.data = p;
    p->open_handles++;
    check_sigpipe(p);
    return p;
}

nsq_err_t nsq_producer_close(nsq_producer_t *p, nsq_closed_cb on_closed,
                             void *opaque)
{
    if (!p || !p->app_loop)
        return NSQ_ERR_INVALID_ARG;
    if (!nsq__on_loop_thread(p))
        return NSQ_ERR_WRONG_THREAD;
    if (p->stop_requested)
        return NSQ_ERR_STOPPED;
    /* The first call wins; the stop itself runs on the router's next
     * turn, so that no callback runs inside this call. */
    p->stop_requested = true;
    p->on_closed = on_closed;
    p->closed_opaque = opaque;
    atomic_store_explicit(&p->stopping, true, memory_order_relaxed);
    nsq__loop_host_schedule(p);
    return NSQ_OK;
}

void nsq__loop_host_closed(nsq_producer_t *p)
{
    if (p->on_closed)
        p->on_closed(p, p->closed_opaque);
    nsq__producer_free(p);
}
