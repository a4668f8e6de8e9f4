/*
 * nsqpub producer: publishes to one nsqd over one TCP connection, from any
 * number of threads.
 *
 * How it works, in short: a publish call validates its arguments and
 * encodes the command on the caller's thread, then hands it to a loop thread
 * that the producer owns (libuv).  That thread connects lazily, pipelines
 * every queued command in one write, and matches nsqd's answers to them in
 * order.  A sync call is the async call plus a wait for its completion.
 *
 * Threads:
 * - Every function may be called from any thread, unless it says otherwise
 *   (and except on a producer made by nsq_producer_new_on_loop, which
 *   lives on one thread: see there).
 * - Completion callbacks and the log callback run on the producer's loop
 *   thread.  They must not block.  From a completion callback, async
 *   publishes work; sync calls and nsq_producer_destroy return
 *   NSQ_ERR_WOULD_DEADLOCK instead of waiting for the thread they run on.
 *
 * Results: every publish ends in exactly one nsq_err_t, and every code
 * says by itself whether nsqd has the message: nsq_err_fate() maps it to
 * NSQ_FATE_STORED, NSQ_FATE_NOT_STORED or NSQ_FATE_UNKNOWN (protocol.h).
 * - Stored: NSQ_OK, nsqd acknowledged it.
 * - Not stored (safe to send again): a positive NSQ_E_* code, nsqd rejected
 *   it (its text is in the detail); NSQ_ERR_NOT_SENT, NSQ_ERR_CONNECT,
 *   NSQ_ERR_TLS, NSQ_ERR_COMPRESSION, NSQ_ERR_QUEUE_FULL, NSQ_ERR_STOPPED,
 *   NSQ_ERR_TIMED_OUT_UNSENT (publish_timeout passed before it was
 *   written): nsqd never processed it.
 * - Unknown (nsqd may have it; sending it again may duplicate it):
 *   NSQ_ERR_IN_DOUBT, written but the connection ended before the answer;
 *   NSQ_ERR_TIMED_OUT, written but no answer by publish_timeout;
 *   NSQ_E_MPUB_FAILED, nsqd may have stored part of the batch.
 * Argument errors (NSQ_ERR_BAD_TOPIC, NSQ_ERR_EMPTY_BODY,
 * NSQ_ERR_MSG_TOO_BIG, NSQ_ERR_BODY_TOO_BIG, NSQ_ERR_NO_MESSAGES,
 * NSQ_ERR_BAD_DELAY, NSQ_ERR_INVALID_ARG) are returned before anything is
 * queued.
 */
#ifndef NSQ_PRODUCER_H
#define NSQ_PRODUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsq/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

typedef struct nsq_conf nsq_conf_t;

/* A configuration with every key at its default.  NULL if out of memory. */
NSQ_API nsq_conf_t *nsq_conf_new(void);
/* A deep copy (callbacks included).  NULL if out of memory. */
NSQ_API nsq_conf_t *nsq_conf_dup(const nsq_conf_t *conf);
NSQ_API void nsq_conf_destroy(nsq_conf_t *conf);

/*
 * Sets key to value, both strings, as to_nsq's --producer-opt takes them:
 * durations in Go syntax ("250ms", "2s", "1m"; a bare number is
 * milliseconds), booleans "true"/"false" (also 1/0, yes/no), integers in
 * decimal.  Returns NSQ_OK, or NSQ_ERR_CONF with the reason in errstr
 * (unknown key, bad value, out of range; the conf is unchanged);
 * NSQ_ERR_INVALID_ARG for a NULL argument, NSQ_ERR_NOMEM.  A key is also
 * accepted with '-' for '_'.  The value of auth_secret never appears in
 * errstr.  Not thread-safe for one conf object.
 */
NSQ_API nsq_err_t nsq_conf_set(nsq_conf_t *conf, const char *key,
                               const char *value, char *errstr, size_t errlen);
/*
 * Writes the current value of key as a string into dest (up to destlen,
 * NUL-terminated).  NSQ_ERR_CONF for an unknown key, NSQ_ERR_INVALID_ARG if
 * dest is too small.
 */
NSQ_API nsq_err_t nsq_conf_get(const nsq_conf_t *conf, const char *key,
                               char *dest, size_t destlen);

/* Log levels, as syslog's. */
enum {
    NSQ_LOG_ERROR = 3,
    NSQ_LOG_WARNING = 4,
    NSQ_LOG_INFO = 6,
    NSQ_LOG_DEBUG = 7,
};

/*
 * The log callback: runs on the loop thread (or on the thread of the call
 * that logs); msg is valid during the call.  Without one the library logs
 * nothing.  max_level filters (NSQ_LOG_INFO by default).
 */
typedef void (*nsq_log_cb)(void *opaque, int level, const char *msg);
NSQ_API void nsq_conf_set_log_cb(nsq_conf_t *conf, nsq_log_cb cb, void *opaque,
                                 int max_level);

/* One configuration key, for documentation (nsqpub --help-config). */
typedef struct nsq_conf_prop {
    const char *name;
    const char *type;    /* "duration", "bool", "int", "string" */
    const char *def;     /* default, as nsq_conf_get prints it */
    const char *range;   /* e.g. "100ms..5m", "" when unbounded */
    const char *summary; /* one line */
} nsq_conf_prop_t;

/* Every key, in documentation order; *count receives how many. */
NSQ_API const nsq_conf_prop_t *nsq_conf_props(size_t *count);

/* ------------------------------------------------------------------------ */
/* Producer                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct nsq_producer nsq_producer_t;

/*
 * Creates a producer for the nsqd at addr ("host:port"; the host a name or
 * an IPv4/IPv6 address, "[::1]:4150" for IPv6), or for several: a
 * comma-separated list, one node (connection) each.  A name is resolved
 * at each connect and its addresses are tried in turn within
 * dial_timeout (localhost may give ::1 first while nsqd listens on IPv4
 * only); a numeric address is connected as is.  With the key
 * lookupd_http_addresses set, addr may be NULL or "": the producer asks
 * those nsqlookupd for their nsqd (GET /nodes, every
 * lookupd_poll_interval) and publishes to them and to any addr given; a
 * node no lookupd lists any more takes no new publishes and is closed once
 * its commands are answered, a node tombstoned for a topic takes none for
 * it, and when every lookupd fails the last list is kept.  A publish made
 * before the first lookupd round ends waits for it; with no nsqd known it
 * fails with NSQ_ERR_CONNECT ("no nsqd known ...").
 *
 * Several nodes: each publish goes to one node, in turn (round_robin),
 * skipping nodes that back off after failed connects.  With the key
 * retry_not_sent (default true), a publish that a node never processed
 * (its fate NSQ_FATE_NOT_STORED and not an nsqd E_* answer: refused
 * connection, lost before it was written, written after a command nsqd
 * rejected fatally) is sent to another node, until it is answered,
 * publish_timeout passes or max_attempts nodes were tried; the callback
 * runs once, with the last result.  A publish written to a node that then
 * dies completes NSQ_ERR_IN_DOUBT (at most once), unless retry_in_doubt is
 * set: it then goes to another node too (at least once), also when its
 * write was still in progress as the node failed (it is sent again once
 * that write has ended).
 *
 * No I/O happens until the first publish (or ping), except the lookupd
 * polls.  On success the producer owns conf (NULL means
 * defaults); on failure the caller keeps it, and NULL is returned with the
 * reason in errstr.  Starts the producer's loop thread.
 */
NSQ_API nsq_producer_t *nsq_producer_new(const char *addr, nsq_conf_t *conf,
                                         char *errstr, size_t errlen);

/*
 * The completion callback of an async call: exactly once per accepted
 * publish, on the loop thread, never if the call itself returned an error.
 * detail is "" on success, else the reason (nsqd's full error text for a
 * rejection); valid during the call.
 */
typedef void (*nsq_done_cb)(nsq_producer_t *p, nsq_err_t err,
                            const char *detail, void *opaque);

/*
 * Async publishes: validate, encode the command (the body is copied; the
 * caller may free it on return), queue it, return.  NSQ_OK means accepted:
 * cb (may be NULL) will run exactly once.  Errors are returned at once and
 * then cb never runs: argument errors, NSQ_ERR_STOPPED, NSQ_ERR_QUEUE_FULL
 * (past queue_max_messages, after waiting queue_full_timeout), NSQ_ERR_NOMEM.
 * Any thread, including from a completion callback.
 *
 * Coalescing: PUBs (sync or async, from any threads) to the same topic that
 * are waiting when the producer writes go out as one MPUB (settings linger,
 * batch_max_messages, batch_max_bytes; batch_max_messages=1 turns it off).
 * Order per topic is kept and each publish still gets its own result, but
 * nsqd answers the batch as a whole: if it rejects the MPUB, every PUB in
 * it fails with nsqd's MPUB error (for example E_MPUB_FAILED, E_BAD_TOPIC,
 * E_UNAUTHORIZED).  One exception: nsqd refuses a batch for a size it
 * checks before storing anything (the body over its --max-body-size, which
 * it does not announce, or one message over --max-msg-size); the PUBs are
 * then sent again one by one, so each gets nsqd's own answer, and the body
 * limit in nsqd's text bounds later batches.  DPUB and MPUB calls are never
 * coalesced.
 */
NSQ_API nsq_err_t nsq_producer_publish_async(nsq_producer_t *p,
                                             const char *topic,
                                             const void *body, size_t len,
                                             nsq_done_cb cb, void *opaque);
NSQ_API nsq_err_t nsq_producer_multi_publish_async(nsq_producer_t *p,
                                                   const char *topic,
                                                   const nsq_iov_t *msgs,
                                                   size_t count, nsq_done_cb cb,
                                                   void *opaque);
NSQ_API nsq_err_t nsq_producer_deferred_publish_async(
    nsq_producer_t *p, const char *topic, int64_t delay_ms, const void *body,
    size_t len, nsq_done_cb cb, void *opaque);

/*
 * Sync publishes: the async call, then a wait for its result, which is
 * returned (see "Results" above); the reason goes to errstr (may be NULL).
 * Every call returns by publish_timeout (plus a small margin).  From a
 * completion callback: NSQ_ERR_WOULD_DEADLOCK.
 */
NSQ_API nsq_err_t nsq_producer_publish(nsq_producer_t *p, const char *topic,
                                       const void *body, size_t len,
                                       char *errstr, size_t errlen);
NSQ_API nsq_err_t nsq_producer_multi_publish(nsq_producer_t *p,
                                             const char *topic,
                                             const nsq_iov_t *msgs,
                                             size_t count, char *errstr,
                                             size_t errlen);
NSQ_API nsq_err_t nsq_producer_deferred_publish(nsq_producer_t *p,
                                                const char *topic,
                                                int64_t delay_ms,
                                                const void *body, size_t len,
                                                char *errstr, size_t errlen);
/*
 * Connects if needed and writes a NOP (nsqd sends no answer to it).
 * NSQ_OK promises that a connection to nsqd is up, with the whole
 * handshake done (IDENTIFY, and TLS, compression and AUTH where they
 * apply), and that the NOP was handed to the kernel without an error.  It
 * does not promise that nsqd read the NOP, nor that the next publish
 * succeeds.  Otherwise the connection error (NSQ_ERR_CONNECT, NSQ_ERR_TLS,
 * nsqd's E_* code for a refused IDENTIFY or AUTH, ...), with the reason in
 * errstr.  Sync, like the publishes.
 */
NSQ_API nsq_err_t nsq_producer_ping(nsq_producer_t *p, char *errstr,
                                    size_t errlen);
/* The same without the wait: cb gets what nsq_producer_ping would return,
 * on the loop, once the NOP was written or the connection failed.  For a
 * producer on the application's loop, where the sync call is refused. */
NSQ_API nsq_err_t nsq_producer_ping_async(nsq_producer_t *p, nsq_done_cb cb,
                                          void *opaque);

/*
 * Stops the producer: new publishes fail with NSQ_ERR_STOPPED, what is
 * queued is written, and stop waits up to stop_timeout for nsqd's
 * acknowledgements; a connection lost meanwhile is made again (within
 * stop_timeout) for what was never written.  Then the connection closes
 * and whatever is left completes (NSQ_ERR_STOPPED if never written,
 * NSQ_ERR_IN_DOUBT if written; a failed reconnect gives its connect
 * error, not sent).  Idempotent; any thread; concurrent callers all return once
 * the producer has stopped.  From a completion callback it starts the stop and
 * returns at once.  Returns NSQ_OK.  On a producer made by
 * nsq_producer_new_on_loop it would wait for its own loop: it returns
 * NSQ_ERR_WOULD_DEADLOCK and does nothing (use nsq_producer_close).
 */
NSQ_API nsq_err_t nsq_producer_stop(nsq_producer_t *p);
/*
 * Stops (if needed), joins the loop thread and frees the producer.  From a
 * completion callback: NSQ_ERR_WOULD_DEADLOCK, and nothing is freed.  The
 * caller must make sure no other thread uses p during or after the call
 * (stop first if threads may still publish: they then get
 * NSQ_ERR_STOPPED).  On a producer made by nsq_producer_new_on_loop:
 * NSQ_ERR_WOULD_DEADLOCK, nothing freed (nsq_producer_close frees it).
 */
NSQ_API nsq_err_t nsq_producer_destroy(nsq_producer_t *p);

/* ------------------------------------------------------------------------ */
/* On the application's libuv loop                                          */
/* ------------------------------------------------------------------------ */

struct uv_loop_s; /* uv_loop_t: this header does not include uv.h */

/*
 * The same producer (one nsqd or a cluster, coalescing, TLS, compression,
 * AUTH, timeouts, every key of conf) with its router on the application's
 * libuv loop instead of a thread of its own: no thread is started by
 * nsqpub, and a publish costs no lock, atomic read-modify-write or
 * cross-thread wake-up.  A publish appends to the router's list; the
 * router writes everything published during one loop iteration in one
 * write, just before the loop polls (a uv_prepare_t).  Names are resolved
 * with uv_getaddrinfo on the loop (numeric addresses need none), lookupd
 * with libcurl driven by the loop.
 *
 * The producer belongs to the thread that created it, which must be the
 * one that runs loop:
 * - Every call on p is made on that thread; the async publishes work
 *   there (in and out of callbacks).  A call from any other thread is
 *   refused with NSQ_ERR_WRONG_THREAD (always checked, not only in debug
 *   builds: it costs one comparison).  nsq_producer_stats,
 *   nsq_producer_node_stats and the reply getters may be read from any
 *   thread.
 * - Sync publishes, nsq_producer_ping, nsq_producer_stop and
 *   nsq_producer_destroy would wait for the loop they run on: they return
 *   NSQ_ERR_WOULD_DEADLOCK and do nothing.  Close with nsq_producer_close.
 * - Callbacks run on the loop, from inside uv_run.
 * - The producer keeps the loop alive (uv_run does not return) until it
 *   is closed.
 * - SIGPIPE: a write to a connection nsqd closed raises it in the loop's
 *   thread, and nsqpub does not change the application's signal handling.
 *   Ignore it, as libuv programs do: signal(SIGPIPE, SIG_IGN).
 *
 * NULL with the reason in errstr on failure (conf then stays the
 * caller's); no handle of nsqpub's is left on loop then.
 */
NSQ_API nsq_producer_t *nsq_producer_new_on_loop(struct uv_loop_s *loop,
                                                 const char *addr,
                                                 nsq_conf_t *conf, char *errstr,
                                                 size_t errlen);

/* Called once a producer has closed; p is freed when it returns. */
typedef void (*nsq_closed_cb)(nsq_producer_t *p, void *opaque);

/*
 * Closes a producer made by nsq_producer_new_on_loop, the libuv way:
 * returns at once, new publishes fail with NSQ_ERR_STOPPED, and from the
 * next loop iteration on the stop runs as nsq_producer_stop describes
 * (what is queued is written, acknowledgements are awaited up to
 * stop_timeout, what is left completes once).  When every handle of the
 * producer is closed, on_closed (may be NULL) runs on the loop; statistics
 * can still be read there; then p is freed.  After that, uv_loop_close
 * finds no handle of nsqpub's.  A second call returns NSQ_ERR_STOPPED and
 * its callback never runs.  On a threaded producer: NSQ_ERR_INVALID_ARG
 * (use nsq_producer_destroy).
 */
NSQ_API nsq_err_t nsq_producer_close(nsq_producer_t *p, nsq_closed_cb on_closed,
                                     void *opaque);

typedef struct nsq_producer_stats {
    uint64_t published;   /* messages acknowledged by nsqd */
    uint64_t commands_ok; /* commands acknowledged (an MPUB is one) */
    uint64_t rejected;    /* commands nsqd answered with an E_* error */
    uint64_t not_sent;    /* commands failed before nsqd processed them */
    uint64_t in_doubt;    /* commands written, then the connection ended */
    uint64_t timed_out;   /* commands that hit publish_timeout (written
                             or not) */
    uint64_t stopped;     /* commands failed by stop */
    uint64_t queue_full;  /* calls refused with NSQ_ERR_QUEUE_FULL */
    uint64_t queued;      /* messages queued, not yet written (now) */
    uint64_t in_flight;   /* commands written, not yet answered (now) */
    uint64_t connects;    /* successful connections (IDENTIFY done) */
    uint64_t connect_failures;
    uint64_t disconnects; /* connections lost or closed */
    uint64_t bytes_written;
    uint64_t heartbeats; /* _heartbeat_ frames answered with NOP */
    /* The counts above are per publish call (a PUB coalesced into an MPUB
     * still counts as one command, and gets its own result); these two
     * count what went on the wire. */
    uint64_t commands_written; /* commands written to nsqd (a coalesced
                                  MPUB is one) */
    uint64_t coalesced;        /* PUBs written inside a coalesced MPUB */
} nsq_producer_stats_t;

/* A snapshot of the counters. */
NSQ_API void nsq_producer_stats(nsq_producer_t *p, nsq_producer_stats_t *out);

/*
 * The nodes: one per nsqd address given to nsq_producer_new (a
 * comma-separated list), in that order.  Each has its own connection,
 * state, backoff and counters.
 */
typedef struct nsq_node_stats {
    char address[264];    /* "host:port" */
    char state[16];       /* "ready", "connecting", "disconnected", ... */
    uint64_t published;   /* messages it acknowledged */
    uint64_t in_flight;   /* commands written to it, not answered */
    uint64_t failures;    /* connects that failed and connections lost */
    char last_error[400]; /* the last connection error, "" if none */
} nsq_node_stats_t;

/*
 * What a publish achieved, for its completion callback: replicas is how
 * many nodes were asked to store it (the key replicas, 1 by default),
 * stored how many acknowledged it, and stored_on their addresses.  With
 * replicas > 1 a publish is OK only when all acknowledged it; otherwise
 * its error is the first copy's, and stored says how many nodes have it.
 */
typedef struct nsq_publish_result {
    unsigned replicas;
    unsigned stored;
    const char *const *stored_on; /* [stored] "host:port" */
} nsq_publish_result_t;

/* During a completion callback (on the loop thread): the result of the
 * publish it completes, valid until the callback returns.  NULL anywhere
 * else: a sync call has no node list, but when its copies did not all
 * succeed its error text starts "stored on K of N nodes: ". */
NSQ_API const nsq_publish_result_t *nsq_producer_result(nsq_producer_t *p);

/* How many nodes the producer has: the given addresses, then each one a
 * lookupd listed, in the order first seen.  A node no lookupd lists any
 * more is closed but kept (at the same index) until nsq_producer_destroy,
 * so the count never shrinks; at most 65534 distinct nodes over a
 * producer's life (addresses listed beyond that are logged and ignored).
 * Any thread. */
NSQ_API size_t nsq_producer_node_count(nsq_producer_t *p);
/* A snapshot of node i's counters; NSQ_ERR_INVALID_ARG if there is none. */
NSQ_API nsq_err_t nsq_producer_node_stats(nsq_producer_t *p, size_t i,
                                          nsq_node_stats_t *out);

/*
 * The broker's IDENTIFY reply of the current (or last) connection.
 * NSQ_ERR_NOT_SENT if the producer never completed a handshake.
 */
NSQ_API nsq_err_t nsq_producer_identify_reply(nsq_producer_t *p,
                                              nsq_identify_reply_t *out);

/*
 * nsqd's answer to AUTH on the current (or last) connection: identity,
 * identity URL and permission count.  NSQ_ERR_NOT_SENT if no AUTH happened
 * (nsqd did not require it, or no connection yet).
 */
NSQ_API nsq_err_t nsq_producer_auth_reply(nsq_producer_t *p,
                                          nsq_auth_reply_t *out);

/* The address given to nsq_producer_new. */
NSQ_API const char *nsq_producer_address(const nsq_producer_t *p);

#ifdef __cplusplus
}
#endif

#endif /* NSQ_PRODUCER_H */
