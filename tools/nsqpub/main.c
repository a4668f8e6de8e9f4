/*
 * nsqpub: publish records from standard input to NSQ, a drop-in for nsq's
 * to_nsq (the same flags, also with one dash, and --producer-opt name,value)
 * that pipelines instead of waiting for each acknowledgement, batches with
 * MPUB, defers with DPUB, keeps the last byte of an unterminated last
 * record, and says exactly which record failed and why.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nsq/producer.h"
#include "tool_args.h"

#define NSQPUB_VERSION "0.1.0"
#define MAX_ADDRS 32

static const char usage_text[] =
    "Usage: nsqpub --topic TOPIC --nsqd-tcp-address HOST:PORT [options]\n"
    "\n"
    "Publishes each record read from standard input to TOPIC on every nsqd\n"
    "given (like to_nsq). Options also work with a single dash (-topic).\n"
    "\n"
    "  --topic=TOPIC               NSQ topic to publish to (required)\n"
    "  --nsqd-tcp-address=ADDR     destination nsqd TCP address (host:port);\n"
    "                              may be given several times: every record\n"
    "                              goes to every nsqd (unless --strategy)\n"
    "  --lookupd-http-address=ADDR nsqlookupd HTTP address; may be given\n"
    "                              several times: each record goes once to\n"
    "                              the pool of the nsqd they list (and those\n"
    "                              given)\n"
    "  --strategy=S                publish each record once through the pool\n"
    "                              of nsqd: round_robin, failover or\n"
    "                              least_outstanding\n"
    "  --replicas=N                each record to N different nsqd of the\n"
    "                              pool (acknowledged only when all stored)\n"
    "  --delimiter=CHAR            one byte that ends a record (default \\n);\n"
    "                              escapes: \\n \\t \\r \\0 \\\\ \\xHH\n"
    "  --rate=N                    at most N records per second (0: no "
    "limit)\n"
    "  --producer-opt=NAME,VALUE   a producer setting (see --help-config);\n"
    "                              may be given several times\n"
    "  --batch=N                   send N records per MPUB (default 1: PUB)\n"
    "  --defer-ms=MS               publish with DPUB, delivered after MS ms\n"
    "  --window=N                  publishes awaiting acknowledgement, at\n"
    "                              most, per nsqd (default 1000)\n"
    "  --quiet                     no progress line and no summary\n"
    "  --progress                  show the progress line even when standard\n"
    "                              error is not a terminal\n"
    "  --help-config               list every producer setting\n"
    "  --version                   print the version\n"
    "  -h, --help                  this text\n"
    "\n"
    "Empty records are skipped. A last record without a delimiter is\n"
    "published whole.\n"
    "\n"
    "Exit status: 0 when every record was acknowledged; 1 when one failed\n"
    "(nsqpub stops at the first failure and says which record, which nsqd,\n"
    "the reason and whether nsqd may have stored it); 2 for usage or\n"
    "configuration errors; 130 or 143 after SIGINT or SIGTERM.\n";

enum {
    OPT_TOPIC = 256,
    OPT_ADDR,
    OPT_DELIM,
    OPT_RATE,
    OPT_PRODUCER_OPT,
    OPT_BATCH,
    OPT_DEFER,
    OPT_WINDOW,
    OPT_QUIET,
    OPT_PROGRESS,
    OPT_HELP_CONFIG,
    OPT_VERSION,
    OPT_LOOKUPD,
    OPT_STRATEGY,
    OPT_REPLICAS,
};

static const struct option long_opts[] = {
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"nsqd-tcp-address", required_argument, NULL, OPT_ADDR},
    {"delimiter", required_argument, NULL, OPT_DELIM},
    {"rate", required_argument, NULL, OPT_RATE},
    {"producer-opt", required_argument, NULL, OPT_PRODUCER_OPT},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"defer-ms", required_argument, NULL, OPT_DEFER},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"help-config", no_argument, NULL, OPT_HELP_CONFIG},
    {"version", no_argument, NULL, OPT_VERSION},
    {"lookupd-http-address", required_argument, NULL, OPT_LOOKUPD},
    {"strategy", required_argument, NULL, OPT_STRATEGY},
    {"replicas", required_argument, NULL, OPT_REPLICAS},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* What became of the records sent to one nsqd, counted in records (an
 * MPUB counts each of its records).  Those read but never handed to it are
 * "not sent": read = acked + failed + not sent, whatever stopped the run. */
typedef struct addr_count {
    uint64_t acked;
    uint64_t failed;
    uint64_t may_be_stored; /* of the failed: fate unknown */
} addr_count_t;

/* Outstanding publishes and the first failure, shared with callbacks. */
typedef struct state {
    pthread_mutex_t lock;
    pthread_cond_t room;
    int64_t outstanding;
    int64_t window;
    bool failed;
    char failure[1024];
    uint64_t errors; /* failed publishes (commands), for the progress line */
    addr_count_t count[MAX_ADDRS];
    const char *const *addrs;
    /* Every batch has batch records, but the last one sent, which starts
     * at record tail_first and has tail_n. */
    uint64_t batch, tail_first, tail_n;
} state_t;

static state_t g_st = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
};
static volatile sig_atomic_t g_signal;
/* Global so that every early exit frees it (atexit). */
static nsq_conf_t *g_conf;

static void free_conf(void)
{
    nsq_conf_destroy(g_conf);
    g_conf = NULL;
}

static void on_signal(int sig)
{
    g_signal = sig;
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "nsqpub: %s%s%s%s\nTry 'nsqpub --help'.\n", msg,
            arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return 2;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static bool parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One byte, literally or as an escape; false otherwise. */
static bool parse_delimiter(const char *s, unsigned char *out)
{
    size_t n = strlen(s);
    if (n == 1) {
        *out = (unsigned char)s[0];
        return true;
    }
    if (n == 2 && s[0] == '\\') {
        static const char from[] = "ntr0\\", to[] = "\n\t\r\0\\";
        const char *k = strchr(from, s[1]);
        if (!k || !*k)
            return false;
        *out = (unsigned char)to[k - from];
        return true;
    }
    if (n == 4 && s[0] == '\\' && s[1] == 'x' && hexval(s[2]) >= 0 &&
        hexval(s[3]) >= 0) {
        *out = (unsigned char)(hexval(s[2]) << 4 | hexval(s[3]));
        return true;
    }
    return false;
}

static void print_config_help(void)
{
    size_t n;
    const nsq_conf_prop_t *props = nsq_conf_props(&n);
    printf("Producer settings for --producer-opt NAME,VALUE:\n\n");
    for (size_t i = 0; i < n; i++) {
        printf("  %-24s %-9s default %s%s%s\n", props[i].name, props[i].type,
               props[i].def[0] ? props[i].def : "\"\"",
               props[i].range[0] ? ", range " : "", props[i].range);
        printf("  %-24s %s\n", "", props[i].summary);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The completion callback: opaque packs the first record's number (from 1)
 * and the nsqd's index, so no allocation is needed per publish; the number
 * of records follows from the batch size.
 */
static void on_done(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    (void)p;
    uintptr_t v = (uintptr_t)opaque;
    uint64_t record = (uint64_t)(v >> 8);
    unsigned addr = (unsigned)(v & 0xff);
    pthread_mutex_lock(&g_st.lock);
    uint64_t n = record == g_st.tail_first ? g_st.tail_n : g_st.batch;
    addr_count_t *c = &g_st.count[addr];
    g_st.outstanding--;
    if (err == NSQ_OK) {
        c->acked += n;
    } else {
        g_st.errors++;
        c->failed += n;
        nsq_fate_t fate = nsq_err_fate(err);
        if (fate == NSQ_FATE_UNKNOWN)
            c->may_be_stored += n;
        if (!g_st.failed) {
            /* nsqd's texts start with their code; others get it first. */
            const char *name = nsq_err2name(err);
            const char *text = detail && *detail ? detail : nsq_err2str(err);
            bool named = strncmp(text, name, strlen(name)) == 0;
            snprintf(g_st.failure, sizeof g_st.failure,
                     "record %" PRIu64 "%s to %s failed: %s%s%s (%s)", record,
                     n > 1 ? " (the first of its batch)" : "", g_st.addrs[addr],
                     named ? "" : name, named ? "" : ": ", text,
                     fate == NSQ_FATE_UNKNOWN ? "nsqd may have stored it"
                                              : "nsqd did not store it");
            g_st.failed = true;
        }
    }
    pthread_cond_broadcast(&g_st.room);
    pthread_mutex_unlock(&g_st.lock);
}

/* Waits for room for one more publish; false once a failure happened. */
static bool wait_room(void)
{
    pthread_mutex_lock(&g_st.lock);
    while (g_st.outstanding >= g_st.window && !g_st.failed && !g_signal)
        pthread_cond_wait(&g_st.room, &g_st.lock);
    bool ok = !g_st.failed && !g_signal;
    if (ok)
        g_st.outstanding++;
    pthread_mutex_unlock(&g_st.lock);
    return ok;
}

typedef struct run {
    nsq_producer_t *prod[MAX_ADDRS];
    size_t nprod;
    const char *topic;
    int64_t batch;
    int64_t defer_ms;
    int64_t rate;
    bool progress;
    uint64_t records; /* records read (non-empty) */
    uint64_t messages;
    double started, last_progress, rate_start;
    /* the batch being gathered */
    nsq_iov_t *iov;
    char *batch_buf;
    size_t batch_len, batch_cap;
    size_t nbatch;
    uint64_t batch_first;
} run_t;

static void progress_line(run_t *r, bool final)
{
    double t = now_s();
    if (!r->progress || (!final && t - r->last_progress < 0.1))
        return;
    r->last_progress = t;
    double el = t - r->started;
    pthread_mutex_lock(&g_st.lock);
    uint64_t errs = g_st.errors;
    pthread_mutex_unlock(&g_st.lock);
    fprintf(stderr,
            "\rnsqpub: %" PRIu64 " records, %.0f/s, %" PRIu64 " errors   %s",
            r->records, el > 0 ? (double)r->records / el : 0.0, errs,
            final ? "\n" : "");
}

/* Publishes one record (or the gathered batch) to every nsqd. */
static nsq_err_t send_to_all(run_t *r, const void *data, size_t len,
                             uint64_t first_record, size_t nmsgs)
{
    for (size_t i = 0; i < r->nprod; i++) {
        if (!wait_room())
            return NSQ_ERR_STOPPED;
        void *opaque = (void *)(uintptr_t)(first_record << 8 | i);
        nsq_err_t err;
        if (nmsgs > 0)
            err = nsq_producer_multi_publish_async(r->prod[i], r->topic, r->iov,
                                                   nmsgs, on_done, opaque);
        else if (r->defer_ms > 0)
            err = nsq_producer_deferred_publish_async(
                r->prod[i], r->topic, r->defer_ms, data, len, on_done, opaque);
        else
            err = nsq_producer_publish_async(r->prod[i], r->topic, data, len,
                                             on_done, opaque);
        if (err != NSQ_OK) {
            /* Refused at once: the callback will not run. */
            on_done(r->prod[i], err, nsq_err2str(err), opaque);
            return err;
        }
        r->messages += nmsgs ? nmsgs : 1;
    }
    return NSQ_OK;
}

static void throttle(run_t *r)
{
    if (r->rate <= 0)
        return;
    /* Sleep until this record is due: records/rate seconds after start. */
    double due = r->rate_start + (double)r->records / (double)r->rate;
    double wait = due - now_s();
    if (wait > 0) {
        struct timespec ts = {(time_t)wait,
                              (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static nsq_err_t flush_batch(run_t *r)
{
    if (r->nbatch == 0)
        return NSQ_OK;
    if ((int64_t)r->nbatch < r->batch) {
        /* Only the last batch is short: the callbacks must know. */
        pthread_mutex_lock(&g_st.lock);
        g_st.tail_first = r->batch_first;
        g_st.tail_n = r->nbatch;
        pthread_mutex_unlock(&g_st.lock);
    }
    /* iov points into batch_buf, which may have moved while growing. */
    size_t off = 0;
    for (size_t i = 0; i < r->nbatch; i++) {
        r->iov[i].base = r->batch_buf + off;
        off += r->iov[i].len;
    }
    nsq_err_t err = send_to_all(r, NULL, 0, r->batch_first, r->nbatch);
    r->nbatch = 0;
    r->batch_len = 0;
    return err;
}

static nsq_err_t record(run_t *r, const char *data, size_t len)
{
    if (len == 0)
        return NSQ_OK; /* as to_nsq: empty records are skipped */
    r->records++;
    throttle(r);
    progress_line(r, false);
    if (r->batch <= 1)
        return send_to_all(r, data, len, r->records, 0);
    if (r->batch_len + len > r->batch_cap) {
        size_t cap = r->batch_cap ? r->batch_cap : 65536;
        while (cap < r->batch_len + len)
            cap *= 2;
        char *nb = realloc(r->batch_buf, cap);
        if (!nb)
            return NSQ_ERR_NOMEM;
        r->batch_buf = nb;
        r->batch_cap = cap;
    }
    if (r->nbatch == 0)
        r->batch_first = r->records;
    memcpy(r->batch_buf + r->batch_len, data, len);
    r->batch_len += len;
    r->iov[r->nbatch++].len = len;
    return (int64_t)r->nbatch >= r->batch ? flush_batch(r) : NSQ_OK;
}

/* Reads stdin to the end (or a signal or failure), splitting records. */
static int read_input(run_t *r, unsigned char delim)
{
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (len == cap) {
            /* A record longer than the buffer: grow (nsqd's limit bounds
             * what can be published anyway; the producer reports it). */
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, cap - len);
        if (n < 0 && errno == EINTR) {
            if (g_signal)
                break;
            continue;
        }
        if (n < 0) {
            fprintf(stderr, "nsqpub: reading standard input: %s\n",
                    strerror(errno));
            free(buf);
            return -1;
        }
        if (n == 0) {
            /* The last record, without its delimiter, keeps every byte. */
            if (len && record(r, buf, len) != NSQ_OK)
                break;
            len = 0;
            break;
        }
        len += (size_t)n;
        size_t start = 0;
        char *d;
        bool stop = false;
        while ((d = memchr(buf + start, delim, len - start)) != NULL) {
            if (record(r, buf + start, (size_t)(d - (buf + start))) != NSQ_OK) {
                stop = true;
                break;
            }
            start = (size_t)(d - buf) + 1;
        }
        if (stop || g_signal)
            break;
        memmove(buf, buf + start, len - start);
        len -= start;
    }
    if (!g_signal)
        flush_batch(r);
    free(buf);
    return 0;
}

/* What one nsqd got of the records read. */
static void print_counts(const run_t *r, size_t i)
{
    const addr_count_t *c = &g_st.count[i];
    fprintf(stderr, "%" PRIu64 " acknowledged, %" PRIu64 " failed", c->acked,
            c->failed);
    if (c->may_be_stored)
        fprintf(stderr, " (%" PRIu64 " may be stored)", c->may_be_stored);
    fprintf(stderr, ", %" PRIu64 " not sent",
            r->records - c->acked - c->failed);
}

/*
 * One line for one nsqd ("nsqpub: 10 records read, 10 acknowledged, 0
 * failed, 0 not sent, in 0.01s"); with several, a line for the records
 * read and one for each nsqd.
 */
static void print_summary(const run_t *r, double elapsed)
{
    const char *tail = g_signal ? " (interrupted)" : "";
    fprintf(stderr, "nsqpub: %" PRIu64 " %s read", r->records,
            plural(r->records, "record", "records"));
    if (r->nprod == 1) {
        fprintf(stderr, ", ");
        print_counts(r, 0);
        fprintf(stderr, ", in %.2fs%s\n", elapsed, tail);
        return;
    }
    fprintf(stderr, " in %.2fs%s\n", elapsed, tail);
    for (size_t i = 0; i < r->nprod; i++) {
        fprintf(stderr, "nsqpub:   %s: ", g_st.addrs[i]);
        print_counts(r, i);
        fprintf(stderr, "\n");
    }
}

int main(int argc, char **argv)
{
    const char *topic = NULL;
    const char *addrs[MAX_ADDRS];
    size_t naddrs = 0;
    unsigned char delim = '\n';
    int64_t rate = 0, batch = 1, defer_ms = 0, window = 1000;
    bool quiet = false, progress = false, pool = false;
    static char lookupds[4096], joined[4096];
    nsq_conf_t *conf = g_conf = nsq_conf_new();
    if (!conf) {
        fprintf(stderr, "nsqpub: out of memory\n");
        return 2;
    }
    atexit(free_conf);
    int c;
    char err[512];
    /* getopt_long_only: to_nsq's users write -topic as Go's flags allow.
     * Its own messages are off (they name argv[0]); ours follow. */
    opterr = 0;
    while ((c = getopt_long_only(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_TOPIC:
            topic = optarg;
            break;
        case OPT_ADDR:
            if (naddrs == MAX_ADDRS)
                return usage_error("too many --nsqd-tcp-address", NULL);
            addrs[naddrs++] = optarg;
            break;
        case OPT_LOOKUPD:
            if (!tool_list_append(lookupds, sizeof lookupds, optarg))
                return usage_error("too many --lookupd-http-address", NULL);
            pool = true;
            break;
        case OPT_STRATEGY:
        case OPT_REPLICAS:
            if (nsq_conf_set(conf, c == OPT_STRATEGY ? "strategy" : "replicas",
                             optarg, err, sizeof err) != NSQ_OK)
                return usage_error(err, NULL);
            pool = true;
            break;
        case OPT_DELIM:
            if (!parse_delimiter(optarg, &delim))
                return usage_error("--delimiter must be one byte or an "
                                   "escape such as \\n, \\t, \\0, \\x1e:",
                                   optarg);
            break;
        case OPT_RATE:
            if (!parse_int(optarg, 0, 100000000, &rate))
                return usage_error("bad --rate", optarg);
            break;
        case OPT_PRODUCER_OPT: {
            char name[128];
            tool_opt_rc_t rc = tool_producer_opt(conf, optarg, name,
                                                 sizeof name, err, sizeof err);
            if (rc == TOOL_OPT_FORM)
                return usage_error("--producer-opt wants NAME,VALUE:", optarg);
            if (rc == TOOL_OPT_CONF) {
                char msg[600];
                snprintf(msg, sizeof msg, "--producer-opt: %s", err);
                return usage_error(msg, NULL);
            }
            break;
        }
        case OPT_BATCH:
            if (!parse_int(optarg, 1, 1000000, &batch))
                return usage_error("bad --batch", optarg);
            break;
        case OPT_DEFER:
            if (!parse_int(optarg, 0, NSQ_DEFAULT_MAX_REQ_TIMEOUT_MS,
                           &defer_ms))
                return usage_error("bad --defer-ms (0..3600000)", optarg);
            break;
        case OPT_WINDOW:
            if (!parse_int(optarg, 1, 10000000, &window))
                return usage_error("bad --window", optarg);
            break;
        case OPT_QUIET:
            quiet = true;
            break;
        case OPT_PROGRESS:
            progress = true;
            break;
        case OPT_HELP_CONFIG:
            print_config_help();
            return 0;
        case OPT_VERSION:
            printf("nsqpub %s\n", NSQPUB_VERSION);
            return 0;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case ':':
            return usage_error("option needs a value:", argv[optind - 1]);
        default:
            return usage_error("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument", argv[optind]);
    if (!topic)
        return usage_error("--topic is required", NULL);
    if (!nsq_topic_valid(topic, strlen(topic)))
        return usage_error("invalid topic name (1-64 of [.a-zA-Z0-9_-], "
                           "optionally ending in #ephemeral):",
                           topic);
    if (naddrs == 0 && !lookupds[0])
        return usage_error("--nsqd-tcp-address or --lookupd-http-address is "
                           "required",
                           NULL);
    if (lookupds[0] && nsq_conf_set(conf, "lookupd_http_addresses", lookupds,
                                    err, sizeof err) != NSQ_OK)
        return usage_error(err, NULL);
    if (pool) {
        /* One producer for the pool: each record once (or to --replicas
         * nsqd). */
        for (size_t i = 0; i < naddrs; i++)
            if (!tool_list_append(joined, sizeof joined, addrs[i]))
                return usage_error("too many --nsqd-tcp-address", NULL);
        addrs[0] = joined;
        naddrs = 1;
    }
    if (batch > 1 && defer_ms > 0)
        return usage_error("--batch and --defer-ms cannot be combined (nsqd "
                           "has no deferred MPUB)",
                           NULL);

    /* Signals interrupt the read (no SA_RESTART) so nsqpub stops reading. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    run_t r;
    memset(&r, 0, sizeof r);
    r.topic = topic;
    r.batch = batch;
    r.defer_ms = defer_ms;
    r.rate = rate;
    r.progress = !quiet && (progress || isatty(STDERR_FILENO));
    g_st.window = window * (int64_t)naddrs;
    g_st.batch = (uint64_t)batch;
    g_st.addrs = addrs;
    if (batch > 1 && !(r.iov = calloc((size_t)batch, sizeof *r.iov))) {
        fprintf(stderr, "nsqpub: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < naddrs; i++) {
        nsq_conf_t *own = nsq_conf_dup(conf);
        r.prod[i] =
            own ? nsq_producer_new(addrs[i], own, err, sizeof err) : NULL;
        if (!r.prod[i]) {
            fprintf(stderr, "nsqpub: %s: %s\nTry 'nsqpub --help'.\n", addrs[i],
                    own ? err : "out of memory");
            nsq_conf_destroy(own);
            for (size_t k = 0; k < i; k++)
                nsq_producer_destroy(r.prod[k]);
            return 2;
        }
        r.nprod++;
    }
    free_conf();
    if (pool && !joined[0])
        addrs[0] = "the nsqd of lookupd"; /* for the messages */

    r.started = r.rate_start = r.last_progress = now_s();
    int rc = read_input(&r, delim);

    /* Wait (bounded by each producer's stop_timeout) for what is out. */
    for (size_t i = 0; i < r.nprod; i++)
        nsq_producer_stop(r.prod[i]);
    progress_line(&r, true);
    for (size_t i = 0; i < r.nprod; i++)
        nsq_producer_destroy(r.prod[i]);
    free(r.iov);
    free(r.batch_buf);

    double el = now_s() - r.started;
    if (g_st.failed)
        fprintf(stderr, "nsqpub: %s\n", g_st.failure);
    if (!quiet || g_signal)
        print_summary(&r, el);
    if (g_signal)
        return 128 + g_signal;
    if (rc != 0 || g_st.failed)
        return 1;
    return 0;
}
