/*
 * Support for the interop suites: real nsqd processes on free loopback
 * ports with their own data folders, an HTTP GET of nsqd's /stats, a
 * consumer built from the project's codec that reads bodies back
 * binary-exact, an auth server for nsqd's --auth-http-address, and
 * running the programs (nsqpub, to_nsq, nsqpub-bench).
 *
 * The real binaries are found in NSQ_BIN_DIR, else in ../shared/peers/bin
 * next to the project root.  A suite without them skips (exit 77).
 *
 * Every process a case starts dies with the case: children get
 * PR_SET_PDEATHSIG, so a failed or timed-out case (CK_FORK) leaves no nsqd
 * behind.  Data folders live under one temporary folder per suite, which
 * the suite's main removes at the end.
 */
#ifndef NSQ_INTEROP_H
#define NSQ_INTEROP_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "nsq/protocol.h"

/* A case's Check timeout, seconds: a hang fails instead of blocking. */
#define IT_CASE_TIMEOUT 60
/* Every bounded wait of a case gives up after this long. */
#define IT_WAIT_MS 15000

/* A sync call's result and detail, asserted exactly; rc is evaluated
 * once (it may be the call itself). */
#define ASSERT_RESULT(rc, err, want_rc, want_detail)                           \
    do {                                                                       \
        nsq_err_t it_rc_ = (rc);                                               \
        ck_assert_msg(it_rc_ == (want_rc), "got %s (%s)",                      \
                      nsq_err2name(it_rc_), err);                              \
        ck_assert_str_eq(err, want_detail);                                    \
    } while (0)

/* ------------------------------------------------------------- binaries */

/* The folder holding nsqd, or NULL when there is none. */
const char *it_bin_dir(void);
/* bin dir + "/" + name into out (outlen bytes); returns out. */
const char *it_bin(const char *name, char *out, size_t outlen);

/*
 * A suite's main: skips (prints why, returns 77) without nsqd; otherwise
 * makes the suite's temporary folder, runs s with CK_FORK, removes the
 * folder, and returns 0 or 1.
 */
int it_run_suite(Suite *s);

/* A new empty folder under the suite's temporary folder, into out. */
const char *it_mkdir(char *out, size_t outlen, const char *prefix);

void it_sleep_ms(int64_t ms);

/* ------------------------------------------------------------- processes */

/*
 * fork + exec of argv (argv[0] a path) with the child bound to die with
 * this process (PR_SET_PDEATHSIG); stdin from in_path, stdout and stderr
 * to out_path (appended), /dev/null for a NULL path.  Fails the case if
 * fork fails; the child exits 127 if it cannot run argv.
 */
pid_t it_spawn(char *const argv[], const char *in_path, const char *out_path);
/* Waits up to ms for pid; its wait status, or -1 if it is still running. */
int it_reap(pid_t pid, int ms);
/* n distinct free loopback ports into ports. */
void it_pick_ports(uint16_t *ports, int n);

/* ------------------------------------------------------------- nsqd */

#define IT_MAX_FLAGS 24

typedef struct it_nsqd {
    pid_t pid; /* 0 when not running */
    uint16_t tcp_port, http_port, https_port;
    char addr[32]; /* "127.0.0.1:TCP" */
    char dir[512]; /* the case's folder: data/, nsqd.log */
    char data[600];
    char log[600];
    int nflags;
    char *flags[IT_MAX_FLAGS]; /* extra flags, kept for restarts */
} it_nsqd_t;

/*
 * Starts nsqd on free loopback ports with a new data folder and the extra
 * flags (NULL-terminated, may be NULL), and waits (bounded) until its HTTP
 * /ping answers OK and its TCP port accepts.  Fails the case otherwise,
 * with the end of nsqd's log.
 */
it_nsqd_t *it_nsqd_start(const char *const *flags);
/* Starts it again: the same ports, data folder and flags. */
void it_nsqd_restart(it_nsqd_t *d);
/* SIGTERM and wait (bounded; then SIGKILL). */
void it_nsqd_stop(it_nsqd_t *d);
/* SIGKILL and reap. */
void it_nsqd_kill9(it_nsqd_t *d);
/* Stops it if running and frees d. */
void it_nsqd_free(it_nsqd_t *d);

/*
 * GET path from 127.0.0.1:port over a plain socket (HTTP/1.0), bounded in
 * time.  The status (or -1) is returned; the body (malloc'd,
 * NUL-terminated) goes to *body when body is not NULL.
 */
int it_http_get(uint16_t port, const char *path, char **body);
/* The same with another method (an empty body is sent). */
int it_http(uint16_t port, const char *method, const char *path, char **body);

/* A topic's counters from nsqd's /stats: -1 when the topic is absent. */
typedef struct it_topic_stats {
    int64_t message_count; /* messages put since nsqd started */
    int64_t depth;         /* messages held by the topic (memory + disk) */
    int64_t channels;
} it_topic_stats_t;
it_topic_stats_t it_topic_stats(const it_nsqd_t *d, const char *topic);

/* ------------------------------------------------------------- consumer */

typedef struct it_msg {
    char *body;
    size_t len;
    int64_t recv_ms;   /* monotonic, when the frame was read */
    uint16_t attempts; /* nsqd's delivery attempts */
} it_msg_t;

typedef struct it_sub it_sub_t;

/*
 * Connects (plain TCP), IDENTIFYs, SUBscribes to topic/channel and sends
 * RDY rdy.  Fails the case on any error answer.
 */
it_sub_t *it_sub_open(uint16_t port, const char *topic, const char *channel,
                      int rdy);
/* The next message (FIN'd at once), within ms: false on timeout. */
bool it_sub_next(it_sub_t *s, it_msg_t *m, int ms);
void it_sub_close(it_sub_t *s);
void it_msg_free(it_msg_t *m);

/*
 * Reads want messages of topic through a new channel within IT_WAIT_MS;
 * the count read is returned and the messages go to *out (free with
 * it_msgs_free).
 */
size_t it_consume(const it_nsqd_t *d, const char *topic, size_t want,
                  it_msg_t **out);
void it_msgs_free(it_msg_t *msgs, size_t n);
/* Sorts messages by body (bytes, then length) for set comparisons. */
void it_msgs_sort(it_msg_t *msgs, size_t n);

/* ------------------------------------------------------------- kill -9 */

/* nsqd never processed a message with this result (a local error whose
 * fate is NSQ_FATE_NOT_STORED; nsqd's own rejections are not expected). */
bool it_never_processed(nsq_err_t rc);
/* Written, no answer: nsqd may have it. */
bool it_in_doubt(nsq_err_t rc);

/*
 * After a run of n publishes to topic whose bodies are prefix + "%06zu"
 * (i = 0..n-1), with nsqd (--mem-queue-size=0 --sync-every=1) killed by
 * SIGKILL and started again on its data folder: rc[i] is each publish's
 * final result (the call's error, or its callback's).  Makes the topic
 * again (nsqd writes its topic list on its own time, so a kill soon after
 * the topic was made can leave it out), reads everything stored, and
 * asserts: no stranger, nothing stored twice, no never-processed message
 * stored, every NSQ_OK message stored except may_lose (SIZE_MAX: none),
 * and a depth between the OKs (less may_lose) and the OKs plus the ones
 * in doubt.
 *
 * may_lose is nsqd's exception, not the client's: nsqd 1.3.0's disk queue
 * answers a write before it persists the queue's metadata (the sync for
 * --sync-every runs at the top of its next loop), so after a SIGKILL the
 * restarted queue counts one message fewer than its file holds: it writes
 * on in a new file, and its reader salvages that last write past the
 * count.  Messages are written in publish order on one connection, so it
 * is the highest-numbered NSQ_OK before the kill; when nothing came after
 * it, reading the counted messages leaves it unread.  When an
 * acknowledged message other than may_lose is not among the counted ones
 * (the newest, after writes that followed the restart), one more is read.
 */
void it_assert_kill9_stored(const it_nsqd_t *d, const char *topic,
                            const char *prefix, const nsq_err_t *rc, size_t n,
                            size_t may_lose);

/* ------------------------------------------------------------- auth server */

/*
 * An HTTP server on a free loopback port that answers nsqd's
 * GET /auth?remote_ip=..&tls=..&secret=..&common_name=.. : for the one
 * secret it knows, 200 and a grant of publish+subscribe on topics matching
 * topic_regex (all channels) for identity; for any other secret 403.
 */
typedef struct it_authd it_authd_t;
it_authd_t *it_authd_start(const char *secret, const char *identity,
                           const char *identity_url, const char *topic_regex);
uint16_t it_authd_port(const it_authd_t *a);
/* Requests answered so far, and the query string of the last one. */
int it_authd_requests(it_authd_t *a, char *last_query, size_t len);
void it_authd_stop(it_authd_t *a);

/* ------------------------------------------------------------- programs */

/*
 * Runs argv (argv[0] a path) with stdin from the file in_path (or
 * /dev/null), stdout and stderr to out_path (or /dev/null), bounded by
 * IT_WAIT_MS x 4; returns the exit status, or -1 (killed or not run).
 */
int it_run(char *const argv[], const char *in_path, const char *out_path);

/* The whole file (malloc'd, NUL-terminated), its length in *len. */
char *it_read_file(const char *path, size_t *len);

#endif
