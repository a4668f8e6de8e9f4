/*
 * Discovery: the nsqd of a cluster, as its nsqlookupd list them.
 *
 * On a libuv loop it is given, the module asks every configured nsqlookupd
 * for GET /nodes, all in parallel, at start and then every poll interval
 * (plus a random jitter), and reports each round: the union of the nsqd
 * ("broadcast_address:tcp_port") that the answering lookupd listed, with
 * the topics each node is tombstoned for, and how each lookupd fared.  One
 * lookupd down is logged and the others serve; when none answers, the
 * round is reported failed and the last list is kept.
 *
 * HTTP is libcurl's multi-socket interface driven by the loop (uv_poll_t
 * per socket, one uv_timer_t for libcurl's timeouts), so no call blocks
 * the loop; replies are read with cJSON, both nsqlookupd 1.x's plain
 * {"producers":[..]} and the older {"status_code":..,"data":{..}}.  A
 * reply that is malformed, has wrong types, is not 200 or is larger than
 * max_reply is an error for that lookupd, never a crash.
 *
 * Who uses it: the producer (cluster.c), which adds the nodes a round
 * lists and drains those it no longer lists.  The configuration keys are
 * lookupd_http_addresses, lookupd_poll_interval and lookupd_poll_jitter
 * (conf.c), with dial_timeout (connect) and read_timeout (a whole request) and
 * tls_root_ca_file for https.
 *
 * Threads: every function runs on the loop's thread, and so do the
 * callbacks.  A callback's arguments are valid only during the call.
 */
#ifndef NSQ_PRODUCER_DISCOVERY_H
#define NSQ_PRODUCER_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lookupd_reply.h"
#include "nsq/producer.h"

typedef struct nsq__discovery nsq__discovery_t;

/* How one lookupd fared in a round. */
typedef struct nsq__disc_status {
    const char *address; /* as configured, with its scheme: "http://h:p" */
    bool ok;
    size_t nodes;      /* nodes it listed (when ok) */
    const char *error; /* why not (when !ok) */
} nsq__disc_status_t;

typedef struct nsq__disc_round {
    uint64_t round; /* 1, 2, ... */
    /* No lookupd answered: nodes is the list of the last good round (empty
     * before the first). */
    bool failed;
    const nsq__disc_node_t *nodes; /* in the order first listed */
    size_t nnodes;
    const nsq__disc_status_t *lookupds; /* in configuration order */
    size_t nlookupds;
} nsq__disc_round_t;

typedef void (*nsq__disc_round_cb)(void *opaque, const nsq__disc_round_t *r);
typedef void (*nsq__disc_closed_cb)(void *opaque);

#define NSQ__DISC_MAX_REPLY (4u << 20) /* 4 MiB */

typedef struct nsq__disc_opts {
    /* Comma-separated "host:port", each optionally "http://" or
     * "https://" (http by default); empty items are skipped. */
    const char *addresses;
    int64_t poll_interval_ms;    /* > 0 */
    int64_t poll_jitter_pct;     /* 0..100: up to this percent of the
                                    interval is added to each wait */
    int64_t dial_timeout_ms;     /* connect (TCP and TLS handshake) */
    int64_t read_timeout_ms;     /* the whole request */
    const char *ca_file;         /* PEM CA file for https; NULL/"": system */
    size_t max_reply;            /* bytes; 0: NSQ__DISC_MAX_REPLY */
    nsq__disc_round_cb on_round; /* required */
    nsq_log_cb log;              /* may be NULL */
    void *log_opaque;            /* log's first argument */
    int log_level;               /* highest level passed to log */
    void *opaque;                /* for on_round and closed */
} nsq__disc_opts_t;

/* Fills the addresses, poll, timeout, CA and log settings from conf (the
 * strings stay conf's); the caller sets on_round and opaque. */
void nsq__disc_opts_from_conf(nsq__disc_opts_t *o, const nsq_conf_t *conf);

/*
 * Creates the module on loop and starts the first round at once.  The
 * options are copied.  NULL with the reason in errstr for a bad address
 * list (none, a scheme other than http/https, no port, ...), bad numbers,
 * or when libcurl cannot be set up.  Loop thread.
 */
nsq__discovery_t *nsq__discovery_new(uv_loop_t *loop,
                                     const nsq__disc_opts_t *opts, char *errstr,
                                     size_t errlen);

/* Starts a round now (or, while one runs, another right after it); the
 * interval counts from the end of that round.  Loop thread. */
void nsq__discovery_poll_now(nsq__discovery_t *d);

/*
 * Cancels the transfers, closes every handle and frees the module, then
 * calls closed (if not NULL) from the loop; no round is reported after
 * this call.  Once closed ran, the module owns no handle on the loop.  May
 * be called from the round callback.  Loop thread.
 */
void nsq__discovery_close(nsq__discovery_t *d, nsq__disc_closed_cb closed,
                          void *opaque);

#endif
