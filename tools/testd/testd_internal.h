/*
 * The test broker's internals, shared by broker.c, conn.c, store.c and
 * tls.c.
 */
#ifndef NSQ_TESTD_INTERNAL_H
#define NSQ_TESTD_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "nsq/testd.h"
#include "pool.h"

/* ---- store.c: what arrived, per topic; and delivery to subscribers ---- */

typedef struct nsq__store nsq__store_t;
typedef struct nsq__sub nsq__sub_t;

nsq__store_t *nsq__store_new(size_t max_recorded);
void nsq__store_free(nsq__store_t *s);
/* Records one message and hands it to the topic's channels. */
void nsq__store_put(nsq__store_t *s, const char *topic, const void *body,
                    size_t len, int64_t defer_ms, uint64_t conn);
uint64_t nsq__store_count(nsq__store_t *s, const char *topic);
uint64_t nsq__store_bytes(nsq__store_t *s, const char *topic);
bool nsq__store_get(nsq__store_t *s, const char *topic, size_t index,
                    nsq_testd_msg_t *out);
bool nsq__store_wait(nsq__store_t *s, const char *topic, uint64_t n,
                     int64_t timeout_ms);
void nsq__store_clear(nsq__store_t *s);
int nsq__store_dump(nsq__store_t *s, const char *path);

/*
 * A subscriber: one SUB'd connection.  Messages for it are queued in its
 * mailbox and its worker is woken through wake_fd (an eventfd).
 */
nsq__sub_t *nsq__store_subscribe(nsq__store_t *s, const char *topic,
                                 const char *channel, int wake_fd);
void nsq__store_unsubscribe(nsq__store_t *s, nsq__sub_t *sub);
void nsq__sub_set_rdy(nsq__store_t *s, nsq__sub_t *sub, int64_t rdy);
/*
 * Takes the next message for this subscriber if its RDY allows: appends the
 * whole message frame to out and returns true.  *next_due_ms receives the
 * monotonic time of the earliest deferred message (or -1).
 */
bool nsq__sub_take(nsq__store_t *s, nsq__sub_t *sub, nsq_buf_t *out,
                   int64_t *next_due_ms);
/* FIN / REQ / TOUCH of an in-flight id; false: "ID not in flight". */
bool nsq__sub_finish(nsq__store_t *s, nsq__sub_t *sub, const char *id, int kind,
                     int64_t requeue_ms);
enum { NSQ__SUB_FIN, NSQ__SUB_REQ, NSQ__SUB_TOUCH };

/* ---- broker.c ---- */

struct nsq_testd {
    nsq_testd_opts_t opts; /* strings below are owned copies */
    char *host;
    char *auth_secret;
    char *auth_identity;
    char *auth_topic_prefix;
    int auth_prefixes; /* non-empty items of auth_topic_prefix */
    char *tls_cert;
    char *tls_key;
    char *tls_client_auth;
    char *tls_root_ca;
    char *tls_min_version;
    SSL_CTX *tls_ctx; /* NULL: no certificate, TLS is not offered */
    char address[64];
    uint16_t port;
    int listen_fd;
    int stop_pipe[2]; /* wakes the accept thread */
    pthread_t accept_thread;
    bool accept_started;
    nsq__pool_t *pool;
    nsq__store_t *store;

    pthread_mutex_t stop_lock; /* makes stop run once, and others wait */
    pthread_mutex_t lock; /* guards fault, pending and the idle condition */
    pthread_cond_t idle_cond;
    nsq_testd_fault_t fault;
    /* connection numbers handed from the accept thread to the workers */
    struct {
        int fd;
        uint64_t no;
    } * pending; /* max_workers entries */
    int npending;

    atomic_bool stopped;
    atomic_uint_fast64_t accepted, refused, busy, active, closed, heartbeats,
        timed_out, errors, writes, cmd_pub, cmd_mpub, cmd_dpub;
};

/* The pool's serve function: one connection, on a worker thread. */
void nsq__testd_serve(void *ctx, int fd, unsigned worker_id);
/* A copy of the faults that apply to connection conn_no. */
void nsq__testd_fault_for(nsq_testd_t *t, uint64_t conn_no,
                          nsq_testd_fault_t *out);
uint64_t nsq__testd_take_conn_no(nsq_testd_t *t, int fd);
/* nsq_conn_state_t.allow: only topics with one of the prefixes. */
bool nsq__testd_allow(void *opaque, const char *cmd, const char *topic,
                      const char *channel);

/* ---- tls.c ---- */

/*
 * Builds t->tls_ctx from the options (left NULL without a certificate).
 * false with the reason in errstr for unusable or contradictory settings.
 */
bool nsq__tls_ctx_new(nsq_testd_t *t, char *errstr, size_t errlen);
void nsq__tls_ctx_free(nsq_testd_t *t);

/* One connection's server-side TLS over memory buffers. */
typedef struct nsq__tls nsq__tls_t;

nsq__tls_t *nsq__tls_new(SSL_CTX *ctx);
void nsq__tls_free(nsq__tls_t *tls);
/* Wire bytes from the client.  false when out of memory. */
bool nsq__tls_feed(nsq__tls_t *tls, const void *data, size_t len);
/* Advances the handshake: 1 done, 0 more bytes needed, -1 failed. */
int nsq__tls_handshake(nsq__tls_t *tls);
/* Appends the application bytes decrypted so far to out: 0, 1 when the
 * client sent close_notify, -1 on a TLS error. */
int nsq__tls_read(nsq__tls_t *tls, nsq_buf_t *out);
/* Encrypts application bytes; they wait in the layer for take_wire. */
bool nsq__tls_write(nsq__tls_t *tls, const void *data, size_t len);
/* Appends the wire bytes the layer wants sent (records, alerts). */
bool nsq__tls_take_wire(nsq__tls_t *tls, nsq_buf_t *out);
/* Queues close_notify once the handshake is done. */
void nsq__tls_shutdown(nsq__tls_t *tls);

int64_t nsq__now_ms(void);
/* CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait. */
struct timespec nsq__testd_deadline(int64_t ms);

#endif
