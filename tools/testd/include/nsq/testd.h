/*
 * nsqpub-testd as a library: an NSQ-protocol test broker to embed in a test
 * process.  It answers like nsqd 1.3 (the same validation, error codes and
 * texts, the same closes), records what it received, and misbehaves on
 * demand (faults).  It listens on 127.0.0.1 by default, on an ephemeral port
 * unless told otherwise.  Like nsqd it upgrades a connection after IDENTIFY
 * to TLS (when it has a certificate) and to snappy or deflate.
 *
 * Threads: every function may be called from any thread.  The broker runs
 * its own threads: one accepts, a pool of workers serves one connection each.
 */
#ifndef NSQ_TESTD_H
#define NSQ_TESTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsq/broker.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nsq_testd nsq_testd_t;

/* The test broker's library is static; NSQ_API (nsq/protocol.h) keeps
 * these functions visible when it is linked into a shared object. */

/* How the k-th publish is answered by a malformed frame. */
typedef enum nsq_testd_malformed {
    NSQ_TESTD_MALFORMED_NONE = 0,
    NSQ_TESTD_MALFORMED_SMALL_SIZE, /* size field 2 (under 4) */
    NSQ_TESTD_MALFORMED_HUGE_SIZE,  /* size field 0x7fffffff */
    NSQ_TESTD_MALFORMED_BAD_TYPE,   /* frame type 7 */
} nsq_testd_malformed_t;

/*
 * Faults.  A zero field is "off".  conn selects the connections: 0 for
 * every one, N for only the Nth accepted (counting from 1).  Counts of
 * messages and publishes are per connection, counting from 1.
 */
typedef struct nsq_testd_fault {
    int64_t conn;
    int64_t close_after_msgs; /* close once this many messages arrived */
    int64_t delay_ms;         /* delay every response frame */
    bool stall;               /* read commands but never answer */
    int64_t pub_failed_at;    /* k-th publish: E_PUB_FAILED (and close) */
    nsq_testd_malformed_t malformed;
    int64_t malformed_at; /* k-th publish: answered by the frame */
    bool no_heartbeats;   /* never send _heartbeat_ */
    bool refuse;          /* accept and at once reset new connections */
    /*
     * k-th publish and later: their answers are held back, in order, while
     * commands are still read and stored; they go out once the fault no
     * longer holds them (hold_from cleared or raised past them).
     */
    int64_t hold_from;
    /*
     * Drop the connections at once with a reset (RST), as when nsqd's
     * process dies: answers held back and commands not yet read are lost.
     * Answers the same fault change releases go out first.
     */
    bool drop;
    /* Stop reading the connections: commands stay in the socket, so a
     * client's writes back up and stay pending (a stuck nsqd). */
    bool no_read;
} nsq_testd_fault_t;

typedef struct nsq_testd_opts {
    const char *host;          /* "127.0.0.1" */
    uint16_t port;             /* 0: an ephemeral port */
    nsq_broker_info_t info;    /* limits and defaults, as nsqd's flags */
    const char *auth_secret;   /* non-NULL: AUTH required, this secret */
    const char *auth_identity; /* "testd" */
    /*
     * Publishes and subscriptions are authorized only on topics that start
     * with one of these comma-separated prefixes ("ok_,test."); NULL or ""
     * authorizes every topic.  Empty items are ignored.  The AUTH reply's
     * permission_count is the number of prefixes (1 for every topic).
     */
    const char *auth_topic_prefix;
    /*
     * TLS, as nsqd's --tls-* flags.  With both tls_cert and tls_key (PEM
     * files) the broker grants tls_v1 in IDENTIFY (info.tls_enabled is set
     * from them, whatever it was) and then does the TLS handshake.
     */
    const char *tls_cert;
    const char *tls_key;
    bool tls_required; /* only IDENTIFY is allowed before TLS */
    /* "none" (NULL), "request" (verified if sent) or "require" (a client
     * without a valid certificate fails the handshake); the client
     * certificates are verified against tls_root_ca, which both need. */
    const char *tls_client_auth;
    const char *tls_root_ca;
    /* The lowest version accepted: "tls1.0" .. "tls1.3"; NULL: "tls1.2". */
    const char *tls_min_version;
    int max_workers;         /* connections served at once, 256 */
    int64_t max_idle_ms;     /* idle workers retire after this, 10000 */
    int64_t stop_timeout_ms; /* stop waits this long for busy workers, 2000 */
    size_t max_recorded;     /* messages kept per topic, 1000000 */
    /*
     * false (the default): every answer (response, error, heartbeat) goes
     * out in its own write, flushed in order, as nsqd flushes each one --
     * with TLS its own record, with compression its own flushed chunk.
     * true: the answers ready at once share one write (faster, and kinder
     * to a client than nsqd is).
     */
    bool batch_answers;
    nsq_testd_fault_t fault; /* faults from the start */
} nsq_testd_opts_t;

/*
 * nsqd 1.3's defaults (snappy and deflate enabled, no TLS, no AUTH),
 * loopback, an ephemeral port, no faults.
 */
NSQ_API void nsq_testd_opts_default(nsq_testd_opts_t *opts);

/*
 * Binds, listens and starts serving.  Returns NULL and writes the reason to
 * errstr on failure (also for TLS files that cannot be loaded, tls_required
 * without a certificate, or a client certificate policy without
 * tls_root_ca).  The options are copied.
 */
nsq_testd_t *nsq_testd_start(const nsq_testd_opts_t *opts, char *errstr,
                             size_t errlen);
/* The bound port, and "host:port" (valid until destroy). */
NSQ_API uint16_t nsq_testd_port(const nsq_testd_t *t);
const char *nsq_testd_address(const nsq_testd_t *t);
/*
 * Stops: no new connections, idle workers released, busy ones given
 * stop_timeout_ms, then their connections closed.  Idempotent; any thread.
 */
NSQ_API void nsq_testd_stop(nsq_testd_t *t);
/* Stops if needed and frees everything. */
NSQ_API void nsq_testd_destroy(nsq_testd_t *t);

/* Replaces the faults; live connections see the change at their next
 * command or frame. */
NSQ_API void nsq_testd_set_fault(nsq_testd_t *t,
                                 const nsq_testd_fault_t *fault);

/* ---- what arrived ---- */

/* Messages and body bytes received on topic (0 for an unknown topic). */
NSQ_API uint64_t nsq_testd_count(nsq_testd_t *t, const char *topic);
NSQ_API uint64_t nsq_testd_bytes(nsq_testd_t *t, const char *topic);

/* One recorded message: a copy the caller frees with nsq_testd_msg_free. */
typedef struct nsq_testd_msg {
    char *body;
    size_t len;
    int64_t defer_ms; /* DPUB delay, 0 for PUB and MPUB */
    uint64_t conn;    /* which connection (1-based accept order) */
} nsq_testd_msg_t;

/*
 * Copies message index (0-based, arrival order) of topic into out.  False
 * when there is no such message (or no memory for the copy); out is then
 * zeroed, so nsq_testd_msg_free(out) is safe either way.
 */
NSQ_API bool nsq_testd_message(nsq_testd_t *t, const char *topic, size_t index,
                               nsq_testd_msg_t *out);
NSQ_API void nsq_testd_msg_free(nsq_testd_msg_t *m);
/* Waits until topic has at least n messages; false on timeout. */
NSQ_API bool nsq_testd_wait_count(nsq_testd_t *t, const char *topic, uint64_t n,
                                  int64_t timeout_ms);
/* Forgets every recorded message. */
NSQ_API void nsq_testd_clear(nsq_testd_t *t);

/*
 * Writes one JSON object per message, then a summary object per topic
 * ({"summary":true,"topic":...,"count":...,"bytes":...,"recorded":...}) to
 * the file at path, replacing it.  Returns 0, or -1 when the file cannot be
 * opened or written (then it may hold part of the records).
 */
NSQ_API int nsq_testd_dump(nsq_testd_t *t, const char *path);

typedef struct nsq_testd_stats {
    uint64_t accepted;   /* connections accepted */
    uint64_t refused;    /* refused by the fault */
    uint64_t busy;       /* refused: all workers busy */
    uint64_t active;     /* connections being served now */
    uint64_t closed;     /* connections ended */
    uint64_t heartbeats; /* _heartbeat_ frames sent */
    uint64_t timed_out;  /* clients dropped for silence */
    /* error frames sent, failed TLS handshakes, malformed compressed
     * input */
    uint64_t errors;
    uint64_t workers; /* worker threads alive */
    /* writes of answers to clients: one per answer, or one per batch with
     * batch_answers (TLS handshake records are not counted) */
    uint64_t writes;
    /* publish commands received, by kind (before any fault) */
    uint64_t pubs, mpubs, dpubs;
} nsq_testd_stats_t;

NSQ_API void nsq_testd_stats(nsq_testd_t *t, nsq_testd_stats_t *out);

/* Waits until no connection is being served; false on timeout. */
NSQ_API bool nsq_testd_wait_idle(nsq_testd_t *t, int64_t timeout_ms);

/* ---- a lookupd: nsqlookupd's HTTP API for a set of brokers ---- */

/*
 * An HTTP server (libmicrohttpd) that answers like nsqlookupd 1.3 for the
 * nodes it is given, so discovery can be tested without a real NSQ:
 *
 *   GET /ping              200 "OK" (text/plain)
 *   GET /nodes             200 {"producers":[{"remote_address":..,
 *                          "hostname":..,"broadcast_address":..,
 *                          "tcp_port":..,"http_port":..,"version":..,
 *                          "tombstones":[..],"topics":[..]}]}
 *   GET /lookup?topic=T    200 {"channels":[..],"producers":[{the first six
 *                          fields}]} with the nodes that have T and have it
 *                          not tombstoned; 404 {"message":"TOPIC_NOT_FOUND"}
 *                          when no node has T; 400
 *                          {"message":"MISSING_ARG_TOPIC"} without topic
 *   other paths            404 {"message":"NOT_FOUND"}
 *   other methods          405 {"message":"METHOD_NOT_ALLOWED"}
 *
 * JSON replies carry nsqlookupd's headers (Content-Type: application/json;
 * charset=utf-8, X-Nsq-Content-Type: nsq; version=1.0).  It listens on
 * 127.0.0.1 and an ephemeral port by default.
 *
 * Threads: every nsq_testd_lookupd_* function may be called from any thread
 * (a lock guards the nodes and faults).  The server runs its own threads, one
 * per HTTP connection; a change is seen by the next request.
 */
typedef struct nsq_testd_lookupd nsq_testd_lookupd_t;

/* How /nodes and /lookup answer with broken JSON. */
typedef enum nsq_testd_lookupd_malformed {
    NSQ_TESTD_LOOKUPD_MALFORMED_NONE = 0,
    NSQ_TESTD_LOOKUPD_MALFORMED_SYNTAX,     /* cut in the middle */
    NSQ_TESTD_LOOKUPD_MALFORMED_TYPES,      /* valid JSON, wrong field types */
    NSQ_TESTD_LOOKUPD_MALFORMED_NOT_OBJECT, /* a JSON array */
} nsq_testd_lookupd_malformed_t;

/* Faults and formats; a zero field is "off".  */
typedef struct nsq_testd_lookupd_fault {
    /* The port refuses connections: the server stops listening (and closes
     * its connections) until down is set false again, then listens on the
     * same port. */
    bool down;
    int64_t delay_ms; /* every answer waits this long */
    nsq_testd_lookupd_malformed_t malformed;
    /* /nodes answers at least this many bytes: the usual reply plus a
     * "pad" string field, sent chunked (no Content-Length). */
    size_t huge_bytes;
    /* Replies as nsqlookupd before 1.0: {"status_code":200,
     * "status_txt":"OK","data":{..}}. */
    bool wrapped;
    /* Non-zero: /nodes and /lookup answer with this HTTP status and
     * {"message":"INTERNAL_ERROR"} (nsqlookupd's text for a 500). */
    int http_status;
} nsq_testd_lookupd_fault_t;

typedef struct nsq_testd_lookupd_opts {
    const char *host; /* "127.0.0.1" (IPv4) */
    uint16_t port;    /* 0: an ephemeral port */
    /* With both (PEM files) it serves https instead of http. */
    const char *tls_cert;
    const char *tls_key;
    nsq_testd_lookupd_fault_t fault; /* from the start */
} nsq_testd_lookupd_opts_t;

/* One nsqd as the lookupd lists it.  NULL strings take the defaults. */
typedef struct nsq_testd_lookupd_node {
    const char *broadcast_address; /* required: "127.0.0.1" */
    uint16_t tcp_port;             /* required */
    uint16_t http_port;            /* 0 is listed as 0 */
    const char *hostname;          /* broadcast_address */
    const char *version;           /* "1.3.0" */
    const char *remote_address;    /* the node's "host:port" */
} nsq_testd_lookupd_node_t;

NSQ_API void nsq_testd_lookupd_opts_default(nsq_testd_lookupd_opts_t *opts);
/*
 * Binds, listens and starts serving.  NULL with the reason in errstr when
 * the address cannot be bound, a TLS file cannot be read, only one of
 * tls_cert and tls_key is given, or libmicrohttpd lacks TLS.  The options
 * are copied.
 */
NSQ_API nsq_testd_lookupd_t *
nsq_testd_lookupd_start(const nsq_testd_lookupd_opts_t *opts, char *errstr,
                        size_t errlen);
/* "host:port" (valid until destroy) and the bound port. */
NSQ_API const char *nsq_testd_lookupd_address(const nsq_testd_lookupd_t *l);
NSQ_API uint16_t nsq_testd_lookupd_port(const nsq_testd_lookupd_t *l);
/* Stops serving and frees everything.  Answers being delayed end at
 * once. */
NSQ_API void nsq_testd_lookupd_destroy(nsq_testd_lookupd_t *l);

/*
 * Adds a node, listed after those added before, with no topics.  A node is
 * known by "broadcast_address:tcp_port" ("[v6]:port" for an IPv6 address).
 * Returns 0, or -1 when the node is already listed, broadcast_address is
 * missing or memory runs out.
 */
NSQ_API int nsq_testd_lookupd_add_node(nsq_testd_lookupd_t *l,
                                       const nsq_testd_lookupd_node_t *node);
/* Adds a test broker as a node: its address and TCP port, http_port 0. */
NSQ_API int nsq_testd_lookupd_add_broker(nsq_testd_lookupd_t *l,
                                         const nsq_testd_t *t);
/* Removes the node "host:port"; false if it is not listed. */
NSQ_API bool nsq_testd_lookupd_remove_node(nsq_testd_lookupd_t *l,
                                           const char *node);
/* The node "host:port" now has topic (once); false if no such node. */
NSQ_API bool nsq_testd_lookupd_add_topic(nsq_testd_lookupd_t *l,
                                         const char *node, const char *topic);
/* The node has topic, tombstoned (or not, with tombstoned false): /nodes
 * says so and /lookup leaves the node out.  False if no such node. */
NSQ_API bool nsq_testd_lookupd_tombstone(nsq_testd_lookupd_t *l,
                                         const char *topic, const char *node,
                                         bool tombstoned);
/* Topic gets channel (once), as /lookup's "channels" lists them. */
NSQ_API int nsq_testd_lookupd_add_channel(nsq_testd_lookupd_t *l,
                                          const char *topic,
                                          const char *channel);
/* Replaces the faults.  Going down or up (fault.down) happens before the
 * call returns; 0, or -1 when the port cannot be bound again. */
NSQ_API int nsq_testd_lookupd_set_fault(nsq_testd_lookupd_t *l,
                                        const nsq_testd_lookupd_fault_t *fault);
/* Requests for /nodes received since start (counted on arrival, before a
 * delay; faulty answers included). */
NSQ_API uint64_t nsq_testd_lookupd_nodes_requests(nsq_testd_lookupd_t *l);

#ifdef __cplusplus
}
#endif

#endif /* NSQ_TESTD_H */
