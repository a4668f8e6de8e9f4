/*
 * The producer's internals: the transaction object, the handoff queue from
 * publishing threads to the loop thread, and the producer struct.
 *
 * Ownership of a transaction: a publishing thread takes it from the pool,
 * encodes into it and pushes it on the queue; from then on the loop thread
 * owns it until it leaves every list, then releases it.  A sync caller holds
 * a second reference while it waits (refs == 2), so that the done-signal's
 * pointer in a transaction whose caller gave up stays valid until nsqd's
 * late answer pops it.  A coalesced MPUB is a batch transaction of its own
 * that holds its member PUBs (each still with its callback or waiter).
 */
#ifndef NSQ_PRODUCER_INTERNAL_H
#define NSQ_PRODUCER_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <uv.h>

#include "conf.h"
#include "nsq/producer.h"

typedef enum nsq__txn_kind {
    NSQ__TXN_PUB,
    NSQ__TXN_MPUB,
    NSQ__TXN_DPUB,
    NSQ__TXN_PING,
    NSQ__TXN_BATCH, /* PUBs coalesced into one MPUB (loop thread only) */
    /* A PUB whose batch nsqd refused for its size: it goes alone (set on
     * the loop thread; a kind, so that the transaction stays 56 bytes). */
    NSQ__TXN_PUB_ALONE,
} nsq__txn_kind_t;

/*
 * A sync caller's done-signal, on the caller's stack: the transaction
 * points to it while the caller waits.  The loop thread claims it by
 * exchanging the pointer for NULL, writes the result into it and then
 * stores DONE (release); the caller claims it the same way when it gives
 * up, so exactly one side owns it.  state: WAITING, SLEEPING (the caller
 * is, or is about to be, in futex_wait: the loop must wake it), DONE.
 */
enum {
    NSQ__SYNC_WAITING = 0,
    NSQ__SYNC_SLEEPING = 1,
    NSQ__SYNC_DONE = 2,
};

typedef struct nsq__sync_wait {
    atomic_int state;
    nsq_err_t result;
    char *errstr; /* the caller's: the failure's text is copied once */
    size_t errlen;
} nsq__sync_wait_t;

/*
 * One publish: its encoded command and what to do with its result.  No
 * lock, condition variable or text buffer per transaction: a failure's
 * text is built once per event and handed to the callback (or copied into
 * a sync caller's buffer).
 */
typedef struct nsq__txn {
    struct nsq__txn *next; /* the list it is in (inbox, waiting, ...) */
    int64_t deadline_ms;   /* monotonic: publish_timeout */
    nsq_done_cb cb;
    union {
        void *opaque;             /* an async call's */
        struct nsq__txn *members; /* a batch: its PUBs in order (next) */
        _Atomic(nsq__sync_wait_t *) waiter; /* a sync call's done-signal */
        struct nsq__replica *rep; /* a replica copy: the publish it copies
                                     (its result goes there, not to cb) */
    };
    uint32_t len, cap; /* the encoded command in data: one allocation */
    uint32_t nmsgs;
    /* The node it was last given to, by its index in p->nodes (nodes stay
     * there until destroy), NSQ__NO_NODE for none: 2 bytes a queued
     * message, not 8.  When that node fails it, the router avoids it. */
    uint16_t node_ix;
    uint8_t line; /* PUB: length of "PUB <topic>\n" (at most 69) */
    uint8_t kind;
    bool completed; /* its result was delivered (timed out in flight) */
    bool in_write;  /* libuv may still read data: release after the write */
    bool release_pending;
    bool sync;        /* waiter, not cb and opaque */
    uint8_t attempts; /* nodes it was sent to (retry_not_sent) */
    /* replicas: which copy of its publish (rep, not cb and opaque), or
     * NSQ__NOT_REPLICA */
    uint8_t ridx;
    _Atomic uint8_t refs; /* 2 while a sync caller waits on it */
    char data[];
} nsq__txn_t;

/*
 * replicas > 1: a publish is sent as that many copies (transactions of
 * their own, each to a different node); the publish completes when every
 * copy did, OK only if all stored it.  Loop thread only.
 */
typedef struct nsq__replica {
    nsq__txn_t *parent; /* the caller's publish (in no list) */
    uint16_t want, done, stored;
    nsq_err_t err; /* the first copy's failure */
    char detail[256];
    struct nsq__node **on;  /* [want]: the node each copy was given */
    const char **stored_on; /* [stored]: addresses that acknowledged */
} nsq__replica_t;

/* Connection states, loop thread only. */
typedef enum nsq__conn_state {
    NSQ__DISCONNECTED,
    NSQ__RESOLVING,
    NSQ__CONNECTING,
    NSQ__IDENTIFYING,
    NSQ__READY,
    NSQ__CLOSING,
} nsq__conn_state_t;

enum {
    NSQ__ROUND_ROBIN,
    NSQ__FAILOVER,
    NSQ__LEAST_OUTSTANDING,
};

typedef struct nsq__txn_list {
    nsq__txn_t *head, *tail;
    size_t count;
} nsq__txn_list_t;

/*
 * One nsqd: its connection with its own state, lists, backoff and
 * timeouts (loop thread only, except the counters).
 */
#define NSQ__NO_NODE UINT16_MAX
#define NSQ__NOT_REPLICA UINT8_MAX
/* At most this many nodes over a producer's life (indexes are uint16). */
#define NSQ__MAX_NODES (NSQ__NO_NODE - 1)

typedef struct nsq__node {
    struct nsq_producer *p;
    uint16_t ix; /* its index in p->nodes */
    char *addr;
    char host[256];
    char port[16];
    struct {
        atomic_uint_fast64_t published, in_flight, failures;
    } stats;
    pthread_mutex_t err_lock; /* guards last_error for node stats */
    atomic_int pub_state;     /* state, for node stats (set each tick) */
    bool given;               /* named in nsq_producer_new's address list */
    int64_t last_fail_ms;     /* when its connection last failed; 0 never */
    bool listed;              /* in the last discovery round's list */
    char **tombstoned;        /* topics it takes no publishes for */
    size_t ntombstoned;
    nsq__conn_state_t state;
    uv_tcp_t *tcp;
    uv_getaddrinfo_t *gai; /* the name lookup in progress, or NULL */
    /* The addresses a name resolved to, while they are tried in turn
     * (nsqd may listen on only one of them: localhost's ::1 and
     * 127.0.0.1); next_addr is the one to try after the current. */
    struct addrinfo *addrs;
    struct addrinfo *next_addr;
    uv_connect_t connect_req;
    int64_t phase_started_ms; /* connect or identify began */
    nsq_frame_reader_t *reader;
    uv_timer_t linger;       /* linger: the write waits for more PUBs */
    nsq__txn_list_t waiting; /* routed here, not written */
    /* nsqd's --max-body-size, once an MPUB of ours was refused as too big
     * ("E_BAD_BODY MPUB body too big N > M"); 0 until then.  nsqd does not
     * say it in IDENTIFY. */
    int64_t learned_max_body;
    nsq__txn_list_t inflight; /* written, answers expected in this order */
    /* A publish was given this node with an earlier deadline than one
     * already in flight (a retry): the in-flight list may be out of
     * deadline order until it empties, so publish_timeout looks at all of
     * it. */
    bool inflight_unordered;
    /* In flight when the connection failed, but part of the write libuv
     * still holds (in_write): retried, or finished with held_err and
     * held_why, once that write's callback ran (on_write). */
    nsq__txn_list_t held;
    nsq_err_t held_err;
    char held_why[400];
    nsq__txn_list_t pings_writing; /* pings whose NOP is being written */
    nsq_buf_t ctl[2]; /* control bytes (magic, IDENTIFY, NOP): next, writing */
    bool write_active;
    uv_write_t write_req;
    uv_buf_t *bufs;
    nsq__txn_t **wtxns; /* the transaction of each buf (NULL: control) */
    size_t bufs_cap, nbufs;
    int64_t write_started_ms;
    int64_t last_read_ms;
    int64_t heartbeat_ms; /* negotiated; 0 = none */
    /* the layers of this connection (conn.c) */
    struct nsq__client_tls *tls; /* the TLS session, once nsqd agreed */
    nsq_stream_t *z;             /* compression, once nsqd agreed */
    bool peer_closed; /* close_notify seen; frames before it still to run */
    bool xform;       /* TLS or compression on: bytes are copied */
    int hs;           /* handshake step while IDENTIFYING */
    nsq_identify_reply_t neg;  /* this connection's IDENTIFY reply */
    nsq_buf_t raw;             /* read buffer when transformed */
    nsq_buf_t plain;           /* decrypted */
    nsq_buf_t zplain;          /* decompressed */
    nsq_buf_t wplain;          /* a write's plain bytes, gathered */
    nsq_buf_t wz;              /* ... compressed */
    nsq_buf_t wire;            /* ... as written (stays until the write ends) */
    int failures;              /* connect failures in a row */
    nsq_err_t last_error_code; /* NSQ_ERR_CONNECT or NSQ_ERR_TLS */
    int64_t backoff_until_ms;
    char last_error[400];
} nsq__node_t;

struct nsq_producer {
    char *addr; /* as given */
    nsq_conf_t *conf;
    nsq_limits_t lim;

    /* --- shared with publishing threads --- */
    /* The handoff: publishers push onto this stack with a CAS; the loop
     * takes it whole with one exchange and reverses it. */
    _Atomic(nsq__txn_t *) inbox;
    /* The transaction pool (txn.c): a stack that is only ever emptied
     * whole, and a few slots for what a taker did not use. */
    _Atomic(nsq__txn_t *) pool;
    _Atomic(nsq__txn_t *) spare[8];
    atomic_int txn_live;        /* transactions allocated, not freed */
    pthread_mutex_t qlock;      /* slow path only: waiting for room */
    pthread_cond_t qspace;      /* queue_full_timeout waits */
    atomic_int_fast64_t queued; /* messages queued, not yet written */
    atomic_int space_waiters;   /* threads waiting on qspace */
    atomic_int concurrent;      /* callers inside the enqueue path */
    atomic_bool stopping;       /* publishes refused from now on */
    pthread_mutex_t stop_lock;  /* stop once; others wait on stop_cond */
    pthread_cond_t stop_cond;
    bool stop_requested;
    bool stop_done;
    pthread_mutex_t reply_lock; /* guards reply */
    nsq_identify_reply_t reply;
    bool have_reply;
    nsq_auth_reply_t auth; /* guarded by reply_lock */
    bool have_auth;
    struct {
        atomic_uint_fast64_t published, commands_ok, rejected, not_sent,
            in_doubt, timed_out, stopped, queue_full, in_flight, connects,
            connect_failures, disconnects, bytes_written, heartbeats,
            commands_written, coalesced;
    } stats;

    /* --- the loop thread --- */
    /* The host (host_thread.c or host_loop.c) runs the router on loop:
     * own_loop on a thread of ours, or the application's. */
    uv_loop_t *loop;
    uv_loop_t own_loop;
    bool app_loop;         /* hosted on the application's loop */
    uv_timer_t tick;       /* deadlines and timeouts */
    uv_async_t wake;       /* thread host: publishers wake the router */
    uv_prepare_t flush;    /* loop host: the router runs before the poll */
    nsq__txn_t *free_txns; /* loop host: the pool, no atomics needed */
    /* Our handles and requests still open on the loop; the loop host's
     * close callback runs when the last one is gone. */
    int open_handles;
    nsq_closed_cb on_closed;
    void *closed_opaque;
    uv_thread_t thread;
    pthread_t loop_tid;
    sem_t started;
    bool stop_draining;
    int64_t stop_deadline_ms;
    bool closing_handles;

    /* The nodes (node.c): one connection each, the given addresses first
     * then those discovery found, in the order first seen.  Only the loop
     * thread changes the array, under nodes_lock (node stats read it). */
    struct nsq__node **nodes;
    size_t nnodes;
    pthread_mutex_t nodes_lock;
    struct nsq__discovery *disc; /* lookupd_http_addresses set */
    bool disc_waiting;           /* its first round has not ended yet */
    /* The last round listed no nsqd and a lookupd failed: its error, for
     * the publishes that fail for want of a node. */
    char disc_error[300];
    size_t rr;                /* the node to look at first */
    int strategy;             /* NSQ__ROUND_ROBIN, ... */
    nsq__txn_list_t unrouted; /* taken from the inbox, no node yet */
    bool reroute;             /* unrouted has retries: route again */
    const nsq_publish_result_t *cur_result; /* during a callback */
    void *tls_ctx; /* SSL_CTX, when tls_v1 (made once) */
    uint64_t rng;
};

/* node.c */
/* A node for the address addr[0..len), not connected, appended to
 * p->nodes (at most NSQ__MAX_NODES); NULL with the reason in why. */
nsq__node_t *nsq__node_new(nsq_producer_t *p, const char *addr, size_t len,
                           char *why, size_t whylen);
void nsq__node_free(nsq__node_t *n);
/* Forgets the topics n was tombstoned for. */
void nsq__node_clear_tombstones(nsq__node_t *n);
/* Its handles on the loop (the linger timer). */
void nsq__node_start(nsq__node_t *n);
bool nsq__node_usable(const nsq__node_t *n, int64_t now);
/* Whether n takes publishes for t's topic now: given or listed, and not
 * tombstoned for it. */
bool nsq__node_takes(const nsq__node_t *n, const nsq__txn_t *t);
/* A node that is neither given nor listed any more: what waits there goes
 * back to be routed; the connection closes once nothing is in flight. */
void nsq__node_drain(nsq__node_t *n);

/* cluster.c: discovery feeds the node set (loop thread) */
bool nsq__cluster_start(nsq_producer_t *p, char *why, size_t whylen);
void nsq__cluster_stop(nsq_producer_t *p);

/* txn.c */
/* A transaction with room for a command of need bytes. */
nsq__txn_t *nsq__txn_get(nsq_producer_t *p, size_t need);
void nsq__txn_release(nsq_producer_t *p, nsq__txn_t *t);
/* Completes a sync caller's wait: the result and text go to the caller. */
void nsq__sync_done(nsq__txn_t *t, nsq_err_t err, const char *detail);
void nsq__txn_pool_free(nsq_producer_t *p);
void nsq__list_push(nsq__txn_list_t *l, nsq__txn_t *t);
/* Inserts t into l in deadline order, after those with the same deadline
 * (a push at the tail, unless t is a retry).  router.c */
void nsq__list_insert(nsq__txn_list_t *l, nsq__txn_t *t);
/* Puts a chain taken from l's front back, in its order, ahead of those
 * with the same deadline and behind earlier ones.  router.c */
void nsq__list_put_back(nsq__txn_list_t *l, nsq__txn_t *chain);
nsq__txn_t *nsq__list_pop(nsq__txn_list_t *l);

/* router.c: the loop thread */
/* The router's turn: takes what publishers queued, starts a stop that
 * was asked for, routes and pumps.  The host calls it on each wake-up. */
void nsq__router_run(nsq_producer_t *p);
void nsq__router_on_tick(uv_timer_t *h);
void nsq__finish(nsq_producer_t *p, nsq__txn_t *t, nsq_err_t err,
                 const char *detail);
void nsq__unqueue(nsq_producer_t *p, nsq__txn_t *t);
void nsq__fail_waiting(nsq__node_t *n, nsq_err_t err, const char *why);
void nsq__drain_queue(nsq_producer_t *p);
void nsq__arm_tick(nsq_producer_t *p);
/* Releases t now, or when the write that still reads its bytes ends. */
void nsq__release_after_write(nsq_producer_t *p, nsq__txn_t *t);
/* The write that held n's transactions ended: each is retried or
 * finished with the result the failure gave it. */
void nsq__retry_held(nsq__node_t *n);

/* wire.c: a node's writes and reads, on the loop thread */
void nsq__pump(nsq__node_t *n);
void nsq__wire_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
/* Gives the transactions that have no node yet to nodes (the strategy),
 * and starts or pumps the nodes that got some. */
void nsq__route(nsq_producer_t *p);
/* retry_not_sent: t (in no list) goes back to be routed elsewhere, or,
 * while libuv still writes it, waits on n's held list for the write to
 * end (err and why are its result then if it cannot be retried); false if
 * it may not.  queued: it still counts as queued. */
bool nsq__retry(nsq__node_t *n, nsq__txn_t *t, nsq_err_t err, const char *why,
                bool queued);
void nsq__finish_stop(nsq_producer_t *p);
uint64_t nsq__random(nsq_producer_t *p);

/* conn.c: connecting, the handshake and the layers (loop thread) */
void nsq__connect_start(nsq__node_t *n);
void nsq__conn_fail(nsq__node_t *n, nsq_err_t err, const char *why);
void nsq__on_close(uv_handle_t *h);
/* Cancels the node's name lookup, if one runs; its callback frees it. */
void nsq__conn_forget_lookup(nsq__node_t *n);
/* Frees the addresses a name resolved to. */
void nsq__conn_forget_addrs(nsq__node_t *n);
void nsq__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
/* Bytes read from the socket into the frame reader; false if the
 * connection failed. */
bool nsq__conn_ingest(nsq__node_t *n, const char *data, size_t len);
/* A frame while IDENTIFYING: the reply, the upgrades, AUTH. */
void nsq__handshake_frame(nsq__node_t *n, const nsq_frame_t *f);
/* Plain bytes of a write through compression and TLS into wire. */
bool nsq__conn_encode(nsq__node_t *n, const uv_buf_t *bufs, size_t nbufs,
                      nsq_buf_t *wire);

/* producer.c: what both hosts share */
/* Validates, builds the nodes and the router's handles on loop (NULL: a
 * loop of the producer's own).  NULL with the reason in errstr. */
nsq_producer_t *nsq__producer_new(uv_loop_t *loop, const char *addr,
                                  nsq_conf_t *conf, char *errstr,
                                  size_t errlen);
/* Frees a producer whose handles are all closed. */
void nsq__producer_free(nsq_producer_t *p);
void nsq__put_err(char *errstr, size_t errlen, const char *msg);
/* One handle or request of ours left the loop: the last one after the
 * stop ends a loop-hosted producer. */
void nsq__handle_gone(nsq_producer_t *p);
void nsq__on_handle_closed(uv_handle_t *h); /* h->data is the producer */

/* host_thread.c / host_loop.c */
/* Starts the threaded host; 0 or a libuv error. */
int nsq__thread_host_start(nsq_producer_t *p);
/* The loop host: the router runs before the loop next polls. */
void nsq__loop_host_schedule(nsq_producer_t *p);
/* Every handle of a stopped loop-hosted producer is closed. */
void nsq__loop_host_closed(nsq_producer_t *p);

void nsq__log(nsq_producer_t *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int64_t nsq__mono_ms(void);
/* CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait (the condition
 * variables here use that clock). */
struct timespec nsq__deadline(int64_t ms);
bool nsq__on_loop_thread(nsq_producer_t *p);
/* Whether a call that waits for the loop must be refused from this
 * thread: NSQ_ERR_WOULD_DEADLOCK on the loop's thread, NSQ_ERR_WRONG_THREAD
 * off it for a producer on the application's loop, else NSQ_OK. */
nsq_err_t nsq__refuse_wait(nsq_producer_t *p);

/* A counter only the loop thread writes (other threads may read it): a
 * relaxed load and store, no read-modify-write. */
#define NSQ__COUNT(c, n)                                                       \
    atomic_store_explicit(                                                     \
        (c), atomic_load_explicit((c), memory_order_relaxed) + (n),            \
        memory_order_relaxed)
#define NSQ__UNCOUNT(c, n)                                                     \
    atomic_store_explicit(                                                     \
        (c), atomic_load_explicit((c), memory_order_relaxed) - (n),            \
        memory_order_relaxed)

/* Messages queued, changed by publishers and the loop: a read-modify-write
 * when they are different threads, a plain add when hosted on the
 * application's loop (one thread). */
static inline void nsq__queued_add(nsq_producer_t *p, int64_t n)
{
    if (p->app_loop)
        NSQ__COUNT(&p->queued, n);
    else
        atomic_fetch_add(&p->queued, n);
}

/* The node a transaction was last given to; NULL for none.  Loop
 * thread. */
static inline struct nsq__node *nsq__txn_node(const nsq_producer_t *p,
                                              const nsq__txn_t *t)
{
    return t->node_ix == NSQ__NO_NODE ? NULL : p->nodes[t->node_ix];
}

/* The replicated publish t is a copy of, or NULL. */
static inline struct nsq__replica *nsq__txn_rep(const nsq__txn_t *t)
{
    return t->ridx != NSQ__NOT_REPLICA ? t->rep : NULL;
}

#endif
