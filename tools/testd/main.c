/*
 * nsqpub-testd: the NSQ-protocol test broker as a program.  It prints
 * "nsqpub-testd listening on HOST:PORT" on stdout once it accepts
 * connections, so scripts can read the address, and stops cleanly on
 * SIGINT or SIGTERM (writing --dump if given).  With
 * --lookupd-http-address it also serves nsqlookupd's HTTP API, listing
 * itself and any --lookupd-node, and prints a second line,
 * "nsqpub-testd lookupd listening on HOST:PORT".
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nsq/testd.h"

#define NSQPUB_TESTD_VERSION "0.1.0"

static const char usage_text[] =
    "Usage: nsqpub-testd [options]\n"
    "\n"
    "An NSQ-protocol test broker: answers like nsqd 1.3 (validation, error\n"
    "codes and texts, closes), records what it receives, and misbehaves on\n"
    "demand.  Durations take Go syntax (250ms, 2s, 1m).\n"
    "\n"
    "Listening:\n"
    "  --tcp-address=ADDR           IPv4 host:port to listen on\n"
    "                               (default 127.0.0.1:0, an ephemeral port)\n"
    "  --max-workers=N              connections served at once (default 256)\n"
    "  --max-idle=DURATION          idle workers retire after this (10s)\n"
    "  --stop-timeout=DURATION      stop waits this long for busy "
    "connections (2s)\n"
    "  --batch-answers              write the answers ready at once in one\n"
    "                               write (default: each answer in its own\n"
    "                               flushed write, as nsqd does)\n"
    "\n"
    "nsqd limits (nsqd's flags and defaults):\n"
    "  --max-msg-size=BYTES         largest message (1048576)\n"
    "  --max-body-size=BYTES        largest command body (5242880)\n"
    "  --max-req-timeout=DURATION   largest DPUB/REQ delay (1h)\n"
    "  --max-rdy-count=N            largest RDY count (2500)\n"
    "  --msg-timeout=DURATION       default message timeout (1m)\n"
    "  --max-msg-timeout=DURATION   largest client msg_timeout (15m)\n"
    "  --max-heartbeat-interval=DURATION  largest client heartbeat (60s)\n"
    "  --max-output-buffer-size=BYTES     (65536)\n"
    "  --max-output-buffer-timeout=DURATION (30s)\n"
    "  --min-output-buffer-timeout=DURATION (25ms)\n"
    "  --max-deflate-level=N        (6)\n"
    "\n"
    "Compression (both on by default, as in nsqd; BOOL is true or false):\n"
    "  --snappy[=BOOL]              grant snappy to clients that ask\n"
    "  --deflate[=BOOL]             grant deflate to clients that ask\n"
    "  --no-snappy, --no-deflate    the same as --snappy=false ...\n"
    "\n"
    "TLS (offered to clients that ask tls_v1 once a certificate is set):\n"
    "  --tls-cert=FILE              PEM certificate (chain)\n"
    "  --tls-key=FILE               PEM private key\n"
    "  --tls-required[=BOOL]        allow only IDENTIFY before TLS\n"
    "  --tls-client-auth-policy=P   none (default), request (a certificate\n"
    "                               is asked for and verified if sent) or\n"
    "                               require (no valid certificate: the\n"
    "                               handshake fails)\n"
    "  --tls-root-ca-file=FILE      CA to verify client certificates with\n"
    "  --tls-min-version=V          tls1.0, tls1.1, tls1.2 (default), tls1.3\n"
    "\n"
    "AUTH:\n"
    "  --auth-secret=SECRET         require AUTH with this secret\n"
    "  --auth-identity=NAME         identity in the AUTH reply (testd)\n"
    "  --auth-topic-prefix=LIST     authorize publishing and subscribing only\n"
    "                               on topics that start with one of these\n"
    "                               comma-separated prefixes (default: every\n"
    "                               topic)\n"
    "\n"
    "A lookupd (nsqlookupd 1.3's GET /ping, /nodes, /lookup?topic=T):\n"
    "  --lookupd-http-address=ADDR  also serve it on this IPv4 host:port\n"
    "                               (127.0.0.1:0: an ephemeral port); it\n"
    "                               lists this broker as a node\n"
    "  --lookupd-node=HOST:PORT     list this nsqd too (repeatable)\n"
    "  --lookupd-topic=TOPIC        every listed node has this topic\n"
    "                               (repeatable)\n"
    "\n"
    "Records:\n"
    "  --dump=FILE                  at exit, write one JSON object per\n"
    "                               message, then a summary per topic\n"
    "  --max-recorded=N             messages kept per topic (1000000)\n"
    "\n"
    "Faults (a count of 0 is off; counts are per connection, from 1):\n"
    "  --fault-conn=N               apply the faults only to the Nth\n"
    "                               connection (default 0: every one)\n"
    "  --close-after=N              close once N messages arrived, leaving\n"
    "                               that command unanswered\n"
    "  --delay=DURATION             delay every answer\n"
    "  --stall                      read commands, never answer\n"
    "  --pub-failed-at=K            answer the Kth publish E_PUB_FAILED\n"
    "                               (E_MPUB_FAILED, E_DPUB_FAILED) and close\n"
    "  --malformed=KIND             answer a publish with a malformed frame:\n"
    "                               small-size, huge-size or bad-type\n"
    "  --malformed-at=K             ... the Kth publish (default 1)\n"
    "  --no-heartbeats              never send _heartbeat_\n"
    "  --refuse                     reset every new connection\n"
    "\n"
    "  -h, --help                   this text\n"
    "  --version                    print the version\n";

enum {
    OPT_TCP = 256,
    OPT_MAX_WORKERS,
    OPT_MAX_IDLE,
    OPT_STOP_TIMEOUT,
    OPT_MAX_MSG_SIZE,
    OPT_MAX_BODY_SIZE,
    OPT_MAX_REQ_TIMEOUT,
    OPT_MAX_RDY,
    OPT_MSG_TIMEOUT,
    OPT_MAX_MSG_TIMEOUT,
    OPT_MAX_HEARTBEAT,
    OPT_MAX_OUT_SIZE,
    OPT_MAX_OUT_TIMEOUT,
    OPT_MIN_OUT_TIMEOUT,
    OPT_MAX_DEFLATE,
    OPT_SNAPPY,
    OPT_DEFLATE,
    OPT_NO_SNAPPY,
    OPT_NO_DEFLATE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_REQUIRED,
    OPT_TLS_CLIENT_AUTH,
    OPT_TLS_ROOT_CA,
    OPT_TLS_MIN_VERSION,
    OPT_AUTH_SECRET,
    OPT_AUTH_IDENTITY,
    OPT_AUTH_PREFIX,
    OPT_DUMP,
    OPT_MAX_RECORDED,
    OPT_FAULT_CONN,
    OPT_CLOSE_AFTER,
    OPT_DELAY,
    OPT_STALL,
    OPT_PUB_FAILED_AT,
    OPT_MALFORMED,
    OPT_MALFORMED_AT,
    OPT_NO_HEARTBEATS,
    OPT_REFUSE,
    OPT_BATCH_ANSWERS,
    OPT_LOOKUPD_HTTP,
    OPT_LOOKUPD_NODE,
    OPT_LOOKUPD_TOPIC,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"tcp-address", required_argument, NULL, OPT_TCP},
    {"max-workers", required_argument, NULL, OPT_MAX_WORKERS},
    {"max-idle", required_argument, NULL, OPT_MAX_IDLE},
    {"stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT},
    {"max-msg-size", required_argument, NULL, OPT_MAX_MSG_SIZE},
    {"max-body-size", required_argument, NULL, OPT_MAX_BODY_SIZE},
    {"max-req-timeout", required_argument, NULL, OPT_MAX_REQ_TIMEOUT},
    {"max-rdy-count", required_argument, NULL, OPT_MAX_RDY},
    {"msg-timeout", required_argument, NULL, OPT_MSG_TIMEOUT},
    {"max-msg-timeout", required_argument, NULL, OPT_MAX_MSG_TIMEOUT},
    {"max-heartbeat-interval", required_argument, NULL, OPT_MAX_HEARTBEAT},
    {"max-output-buffer-size", required_argument, NULL, OPT_MAX_OUT_SIZE},
    {"max-output-buffer-timeout", required_argument, NULL, OPT_MAX_OUT_TIMEOUT},
    {"min-output-buffer-timeout", required_argument, NULL, OPT_MIN_OUT_TIMEOUT},
    {"max-deflate-level", required_argument, NULL, OPT_MAX_DEFLATE},
    {"snappy", optional_argument, NULL, OPT_SNAPPY},
    {"deflate", optional_argument, NULL, OPT_DEFLATE},
    {"no-snappy", no_argument, NULL, OPT_NO_SNAPPY},
    {"no-deflate", no_argument, NULL, OPT_NO_DEFLATE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-required", optional_argument, NULL, OPT_TLS_REQUIRED},
    {"tls-client-auth-policy", required_argument, NULL, OPT_TLS_CLIENT_AUTH},
    {"tls-root-ca-file", required_argument, NULL, OPT_TLS_ROOT_CA},
    {"tls-min-version", required_argument, NULL, OPT_TLS_MIN_VERSION},
    {"auth-secret", required_argument, NULL, OPT_AUTH_SECRET},
    {"auth-identity", required_argument, NULL, OPT_AUTH_IDENTITY},
    {"auth-topic-prefix", required_argument, NULL, OPT_AUTH_PREFIX},
    {"dump", required_argument, NULL, OPT_DUMP},
    {"max-recorded", required_argument, NULL, OPT_MAX_RECORDED},
    {"fault-conn", required_argument, NULL, OPT_FAULT_CONN},
    {"close-after", required_argument, NULL, OPT_CLOSE_AFTER},
    {"delay", required_argument, NULL, OPT_DELAY},
    {"stall", no_argument, NULL, OPT_STALL},
    {"pub-failed-at", required_argument, NULL, OPT_PUB_FAILED_AT},
    {"malformed", required_argument, NULL, OPT_MALFORMED},
    {"malformed-at", required_argument, NULL, OPT_MALFORMED_AT},
    {"no-heartbeats", no_argument, NULL, OPT_NO_HEARTBEATS},
    {"refuse", no_argument, NULL, OPT_REFUSE},
    {"batch-answers", no_argument, NULL, OPT_BATCH_ANSWERS},
    {"lookupd-http-address", required_argument, NULL, OPT_LOOKUPD_HTTP},
    {"lookupd-node", required_argument, NULL, OPT_LOOKUPD_NODE},
    {"lookupd-topic", required_argument, NULL, OPT_LOOKUPD_TOPIC},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
}

static int die_usage(const char *what, const char *arg)
{
    fprintf(stderr, "nsqpub-testd: %s '%s'\nTry 'nsqpub-testd --help'.\n", what,
            arg);
    return 2;
}

/* A non-negative integer option; false if it is not one. */
static bool parse_count(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return false;
    *out = v;
    return true;
}

/* A Go-style boolean flag: no value is true. */
static bool parse_bool(const char *s, bool *out)
{
    if (!s || strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_ms(const char *s, int64_t *out)
{
    int64_t ns;
    if (nsq_duration_parse(s, &ns) != NSQ_OK || ns < 0)
        return false;
    *out = ns / 1000000;
    return true;
}

/* "host:port" or "[v6 host]:port" (host may be empty: host is left as it
 * is).  The brackets are not part of the host written. */
static bool parse_hostport(const char *s, char *host, size_t hostlen,
                           uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    int64_t v;
    if (!colon || hl >= hostlen || !parse_count(colon + 1, &v) || v > 65535)
        return false;
    if (hl > 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl) {
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    *port = (uint16_t)v;
    return true;
}

#define MAX_LOOKUPD_ITEMS 64

/* Starts the lookupd listing the broker, the given nodes and topics. */
static nsq_testd_lookupd_t *start_lookupd(nsq_testd_lookupd_opts_t *opts,
                                          nsq_testd_t *t,
                                          const char *const *nodes, int nnodes,
                                          const char *const *topics,
                                          int ntopics)
{
    char err[256];
    nsq_testd_lookupd_t *l = nsq_testd_lookupd_start(opts, err, sizeof err);
    if (!l) {
        fprintf(stderr, "nsqpub-testd: %s\n", err);
        return NULL;
    }
    nsq_testd_lookupd_add_broker(l, t);
    for (int i = 0; i < nnodes; i++) {
        char host[64] = "";
        nsq_testd_lookupd_node_t n = {0};
        parse_hostport(nodes[i], host, sizeof host, &n.tcp_port);
        n.broadcast_address = host;
        nsq_testd_lookupd_add_node(l, &n); /* a repeated node once */
    }
    for (int k = 0; k < ntopics; k++) {
        nsq_testd_lookupd_add_topic(l, nsq_testd_address(t), topics[k]);
        for (int i = 0; i < nnodes; i++)
            nsq_testd_lookupd_add_topic(l, nodes[i], topics[k]);
    }
    return l;
}

int main(int argc, char **argv)
{
    nsq_testd_lookupd_opts_t lk_opts;
    nsq_testd_lookupd_opts_default(&lk_opts);
    char lk_host[64] = "127.0.0.1";
    bool lookupd = false;
    const char *lk_nodes[MAX_LOOKUPD_ITEMS], *lk_topics[MAX_LOOKUPD_ITEMS];
    int nlk_nodes = 0, nlk_topics = 0;
    nsq_testd_opts_t opts;
    nsq_testd_opts_default(&opts);
    nsq_limits_t *lim = &opts.info.limits;
    const char *dump = NULL;
    char host[64] = "127.0.0.1";
    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        int64_t v = 0;
        bool ok = true;
        switch (c) {
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("nsqpub-testd %s (answers as nsqd 1.3.0)\n",
                   NSQPUB_TESTD_VERSION);
            return 0;
        case OPT_TCP:
            if (!parse_hostport(optarg, host, sizeof host, &opts.port))
                return die_usage("bad --tcp-address (want host:port)", optarg);
            break;
        case OPT_LOOKUPD_HTTP:
            if (!parse_hostport(optarg, lk_host, sizeof lk_host, &lk_opts.port))
                return die_usage("bad --lookupd-http-address (want host:port)",
                                 optarg);
            lookupd = true;
            break;
        case OPT_LOOKUPD_NODE:
        case OPT_LOOKUPD_TOPIC: {
            char node_host[64] = "";
            uint16_t node_port;
            if (c == OPT_LOOKUPD_NODE &&
                (!parse_hostport(optarg, node_host, sizeof node_host,
                                 &node_port) ||
                 !*node_host || node_port == 0))
                return die_usage("bad --lookupd-node (want host:port)", optarg);
            if (c == OPT_LOOKUPD_TOPIC &&
                !nsq_topic_valid(optarg, strlen(optarg)))
                return die_usage("bad --lookupd-topic", optarg);
            if (c == OPT_LOOKUPD_NODE && nlk_nodes < MAX_LOOKUPD_ITEMS)
                lk_nodes[nlk_nodes++] = optarg;
            else if (c == OPT_LOOKUPD_TOPIC && nlk_topics < MAX_LOOKUPD_ITEMS)
                lk_topics[nlk_topics++] = optarg;
            else
                return die_usage("too many of", argv[optind - 1]);
            break;
        }
        case OPT_MAX_WORKERS:
            ok = parse_count(optarg, &v) && v > 0 && v <= 100000;
            opts.max_workers = (int)v;
            break;
        case OPT_MAX_IDLE:
            ok = parse_ms(optarg, &opts.max_idle_ms) && opts.max_idle_ms > 0;
            break;
        case OPT_STOP_TIMEOUT:
            ok = parse_ms(optarg, &opts.stop_timeout_ms);
            break;
        case OPT_MAX_MSG_SIZE:
            ok = parse_count(optarg, &lim->max_msg_size) &&
                 lim->max_msg_size > 0 && lim->max_msg_size <= INT32_MAX;
            break;
        case OPT_MAX_BODY_SIZE:
            ok = parse_count(optarg, &lim->max_body_size) &&
                 lim->max_body_size > 4 && lim->max_body_size <= INT32_MAX;
            break;
        case OPT_MAX_REQ_TIMEOUT:
            ok = parse_ms(optarg, &lim->max_req_timeout_ms);
            break;
        case OPT_MAX_RDY:
            ok = parse_count(optarg, &lim->max_rdy_count);
            break;
        case OPT_MSG_TIMEOUT:
            ok = parse_ms(optarg, &opts.info.msg_timeout_ms);
            break;
        case OPT_MAX_MSG_TIMEOUT:
            ok = parse_ms(optarg, &lim->max_msg_timeout_ms);
            break;
        case OPT_MAX_HEARTBEAT:
            ok = parse_ms(optarg, &lim->max_heartbeat_ms);
            break;
        case OPT_MAX_OUT_SIZE:
            ok = parse_count(optarg, &lim->max_output_size);
            break;
        case OPT_MAX_OUT_TIMEOUT:
            ok = parse_ms(optarg, &lim->max_output_timeout_ms);
            break;
        case OPT_MIN_OUT_TIMEOUT:
            ok = parse_ms(optarg, &lim->min_output_timeout_ms);
            break;
        case OPT_MAX_DEFLATE:
            ok = parse_count(optarg, &v) && v >= 1 && v <= 9;
            lim->max_deflate_level = (int)v;
            break;
        case OPT_SNAPPY:
            ok = parse_bool(optarg, &opts.info.snappy_enabled);
            break;
        case OPT_DEFLATE:
            ok = parse_bool(optarg, &opts.info.deflate_enabled);
            break;
        case OPT_NO_SNAPPY:
            opts.info.snappy_enabled = false;
            break;
        case OPT_NO_DEFLATE:
            opts.info.deflate_enabled = false;
            break;
        case OPT_TLS_CERT:
            opts.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            opts.tls_key = optarg;
            break;
        case OPT_TLS_REQUIRED:
            ok = parse_bool(optarg, &opts.tls_required);
            break;
        case OPT_TLS_CLIENT_AUTH:
            ok = strcmp(optarg, "none") == 0 ||
                 strcmp(optarg, "request") == 0 ||
                 strcmp(optarg, "require") == 0;
            opts.tls_client_auth = optarg;
            break;
        case OPT_TLS_ROOT_CA:
            opts.tls_root_ca = optarg;
            break;
        case OPT_TLS_MIN_VERSION:
            ok = strcmp(optarg, "tls1.0") == 0 ||
                 strcmp(optarg, "tls1.1") == 0 ||
                 strcmp(optarg, "tls1.2") == 0 || strcmp(optarg, "tls1.3") == 0;
            opts.tls_min_version = optarg;
            break;
        case OPT_AUTH_SECRET:
            ok = *optarg != '\0';
            opts.auth_secret = optarg;
            break;
        case OPT_AUTH_IDENTITY:
            opts.auth_identity = optarg;
            break;
        case OPT_AUTH_PREFIX:
            opts.auth_topic_prefix = optarg;
            break;
        case OPT_DUMP:
            dump = optarg;
            break;
        case OPT_MAX_RECORDED:
            ok = parse_count(optarg, &v);
            opts.max_recorded = (size_t)v;
            break;
        case OPT_FAULT_CONN:
            ok = parse_count(optarg, &opts.fault.conn);
            break;
        case OPT_CLOSE_AFTER:
            ok = parse_count(optarg, &opts.fault.close_after_msgs);
            break;
        case OPT_DELAY:
            ok = parse_ms(optarg, &opts.fault.delay_ms);
            break;
        case OPT_STALL:
            opts.fault.stall = true;
            break;
        case OPT_PUB_FAILED_AT:
            ok = parse_count(optarg, &opts.fault.pub_failed_at);
            break;
        case OPT_MALFORMED:
            if (strcmp(optarg, "small-size") == 0)
                opts.fault.malformed = NSQ_TESTD_MALFORMED_SMALL_SIZE;
            else if (strcmp(optarg, "huge-size") == 0)
                opts.fault.malformed = NSQ_TESTD_MALFORMED_HUGE_SIZE;
            else if (strcmp(optarg, "bad-type") == 0)
                opts.fault.malformed = NSQ_TESTD_MALFORMED_BAD_TYPE;
            else
                ok = false;
            break;
        case OPT_MALFORMED_AT:
            ok = parse_count(optarg, &opts.fault.malformed_at);
            break;
        case OPT_NO_HEARTBEATS:
            opts.fault.no_heartbeats = true;
            break;
        case OPT_BATCH_ANSWERS:
            opts.batch_answers = true;
            break;
        case OPT_REFUSE:
            opts.fault.refuse = true;
            break;
        default:
            fprintf(stderr, "Try 'nsqpub-testd --help'.\n");
            return 2;
        }
        if (!ok)
            return die_usage("bad value", optarg);
    }
    if (optind < argc)
        return die_usage("unexpected argument", argv[optind]);
    opts.host = host;

    /* The signals stay blocked (in the broker's threads too) except inside
     * sigsuspend, so one cannot slip in between the check and the wait. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);

    char err[256];
    nsq_testd_t *t = nsq_testd_start(&opts, err, sizeof err);
    if (!t) {
        fprintf(stderr, "nsqpub-testd: %s\n", err);
        return 1;
    }
    printf("nsqpub-testd listening on %s\n", nsq_testd_address(t));
    nsq_testd_lookupd_t *lk = NULL;
    if (lookupd) {
        lk_opts.host = lk_host;
        lk = start_lookupd(&lk_opts, t, lk_nodes, nlk_nodes, lk_topics,
                           nlk_topics);
        if (!lk) {
            nsq_testd_destroy(t);
            return 1;
        }
        printf("nsqpub-testd lookupd listening on %s\n",
               nsq_testd_lookupd_address(lk));
    }
    fflush(stdout);
    while (!g_signal)
        sigsuspend(&old);

    nsq_testd_lookupd_destroy(lk);
    nsq_testd_stop(t);
    int rc = 0;
    if (dump && nsq_testd_dump(t, dump) != 0) {
        fprintf(stderr, "nsqpub-testd: cannot write %s: %s\n", dump,
                strerror(errno));
        rc = 1;
    }
    nsq_testd_stats_t st;
    nsq_testd_stats(t, &st);
    fprintf(stderr,
            "nsqpub-testd: stopped: %" PRIu64 " connections, %" PRIu64
            " refused, %" PRIu64 " busy, %" PRIu64 " errors sent\n",
            st.accepted, st.refused, st.busy, st.errors);
    nsq_testd_destroy(t);
    return rc;
}
