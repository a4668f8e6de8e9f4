/*
 * nsqpub-bench: measures the producer library.  P threads publish through
 * one producer (sync PUB, async PUB with a window, or async MPUB with a
 * window) and the program reports the rate, the bandwidth of the bodies,
 * the client's CPU per message and latency percentiles.
 *
 * With --embedded the test broker runs in a child process forked before
 * any thread exists, so that getrusage(RUSAGE_SELF) counts only the client.
 * With --on-loop the producer runs on a libuv loop of the bench's main
 * thread instead (loop.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench.h"
#include "nsq/producer.h"
#include "tool_args.h"

#define NSQPUB_BENCH_VERSION "0.1.0"

/* Count runs keep every latency and sort them, up to this many samples;
 * past it (and for --duration runs) a log-linear histogram is used. */
#define LAT_EXACT_MAX ((size_t)16 * 1024 * 1024)

static const char usage_text[] =
    "Usage: nsqpub-bench [--nsqd-tcp-address ADDR | --embedded] [options]\n"
    "\n"
    "Publishes with the nsqpub producer library and reports the rate\n"
    "(msgs/s), the bandwidth of the bodies (MB/s, 1 MB = 1e6 bytes), the\n"
    "client's CPU time per message (getrusage user+sys) and latency\n"
    "percentiles in microseconds: per call for sync, per MPUB for mpub,\n"
    "from the publish call to its completion callback for async.\n"
    "\n"
    "  --nsqd-tcp-address=ADDR     the nsqd to publish to (host:port); may\n"
    "                              be given several times: a pool (see the\n"
    "                              strategy key)\n"
    "  --lookupd-http-address=ADDR publish to the nsqd this nsqlookupd lists\n"
    "                              (may be given several times)\n"
    "  --embedded                  start the test broker in a child process\n"
    "                              (its CPU is not counted) and publish to it\n"
    "  --topic=TOPIC               topic to publish to (nsqpub_bench)\n"
    "  --mode=MODE                 sync (PUB, wait for each), async (PUB,\n"
    "                              pipelined), mpub (async MPUB) or memory\n"
    "                              (async PUBs queued behind a stalled\n"
    "                              broker of its own; reports the growth of\n"
    "                              the process per queued message) (async)\n"
    "  --size=BYTES                body size of each message (200)\n"
    "  --count=N                   messages to publish in all (100000)\n"
    "  --duration=TIME             publish for this long instead of --count:\n"
    "                              seconds, or Go syntax (500ms, 2s, 1m)\n"
    "  --batch=K                   messages per MPUB, mpub only (100)\n"
    "  --window=W                  async and mpub: publishes (MPUBs for\n"
    "                              mpub) accepted and not yet completed, at\n"
    "                              most, across all threads (1000)\n"
    "  --threads=P                 publishing threads sharing the work (1)\n"
    "  --on-loop                   host the producer on a libuv loop on the\n"
    "                              bench's main thread\n"
    "                              (nsq_producer_new_on_loop) and publish\n"
    "                              from the completion callbacks; async and\n"
    "                              mpub only, one thread\n"
    "  --producer-opt=NAME,VALUE   a producer setting, as nsqpub takes it;\n"
    "                              may be given several times\n"
    "  --json                      print one JSON object instead of text\n"
    "  --version                   print the version\n"
    "  -h, --help                  this text\n"
    "\n"
    "The producer connects (a ping; with --on-loop nsq_producer_ping_async)\n"
    "before the clock starts.  The elapsed time\n"
    "runs from the first publish to the last completion.  Latencies count\n"
    "successful publishes only.  batch and window are reported as used: 1\n"
    "where the mode does not use them.  queue_max_messages is raised to\n"
    "window x batch when that is larger, unless --producer-opt sets it.\n"
    "\n"
    "Exit status: 0 when every publish succeeded, 1 when one failed (the\n"
    "first error is printed on standard error), 2 for usage errors.\n";

static const char *const mode_names[] = {"sync", "async", "mpub", "memory"};

enum {
    OPT_ADDR = 256,
    OPT_EMBEDDED,
    OPT_TOPIC,
    OPT_MODE,
    OPT_SIZE,
    OPT_COUNT,
    OPT_DURATION,
    OPT_BATCH,
    OPT_WINDOW,
    OPT_THREADS,
    OPT_PRODUCER_OPT,
    OPT_JSON,
    OPT_VERSION,
    OPT_LOOKUPD,
    OPT_ON_LOOP,
};

static const struct option long_opts[] = {
    {"nsqd-tcp-address", required_argument, NULL, OPT_ADDR},
    {"lookupd-http-address", required_argument, NULL, OPT_LOOKUPD},
    {"embedded", no_argument, NULL, OPT_EMBEDDED},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"mode", required_argument, NULL, OPT_MODE},
    {"size", required_argument, NULL, OPT_SIZE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"on-loop", no_argument, NULL, OPT_ON_LOOP},
    {"producer-opt", required_argument, NULL, OPT_PRODUCER_OPT},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void note_last(bench_t *b, uint64_t t)
{
    uint64_t m = atomic_load_explicit(&b->t_last, memory_order_relaxed);
    while (t > m &&
           !atomic_compare_exchange_weak_explicit(
               &b->t_last, &m, t, memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Only the caller that moved the count from 0 writes the first error, and
 * the main thread reads it after joining the workers and draining the
 * window. */
void bench_note_error(bench_t *b, nsq_err_t err, const char *detail)
{
    if (atomic_fetch_add(&b->errors, 1) == 0) {
        b->first_err = err;
        snprintf(b->first_detail, sizeof b->first_detail, "%s",
                 detail && *detail ? detail : nsq_err2str(err));
    }
}

uint32_t bench_claim(bench_t *b, uint32_t k)
{
    if (b->count == 0)
        return atomic_load_explicit(&b->stop, memory_order_relaxed) ? 0 : k;
    int64_t cur = atomic_load_explicit(&b->remaining, memory_order_relaxed);
    while (cur > 0) {
        int64_t take = cur < (int64_t)k ? cur : (int64_t)k;
        if (atomic_compare_exchange_weak_explicit(
                &b->remaining, &cur, cur - take, memory_order_relaxed,
                memory_order_relaxed))
            return (uint32_t)take;
    }
    return 0;
}

/* The run's state, for the completion callback (one run per process). */
static bench_t *g_bench;

/* Waits while the count is above mark (low_mark, or 0 at the end). */
static void window_wait(bench_t *b, uint32_t mark)
{
    pthread_mutex_lock(&b->window_lock);
    atomic_fetch_add(&b->sleepers, 1);
    while (atomic_load(&b->outstanding) > mark)
        pthread_cond_wait(&b->window_cond, &b->window_lock);
    atomic_fetch_sub(&b->sleepers, 1);
    pthread_mutex_unlock(&b->window_lock);
}

/* Takes a place in the window, sleeping while it is full. */
static void window_acquire(bench_t *b)
{
    for (;;) {
        uint32_t cur = atomic_load(&b->outstanding);
        if (cur >= b->window)
            window_wait(b, b->low_mark);
        else if (atomic_compare_exchange_weak(&b->outstanding, &cur, cur + 1))
            return;
    }
}

/* Gives a place back.  A sleeper checks the count under window_lock after
 * counting itself, so a wake-up cannot fall between the two. */
static void window_release(bench_t *b)
{
    uint32_t now = atomic_fetch_sub(&b->outstanding, 1) - 1;
    if ((now == b->low_mark || now == 0) && atomic_load(&b->sleepers) > 0) {
        pthread_mutex_lock(&b->window_lock);
        pthread_cond_broadcast(&b->window_cond);
        pthread_mutex_unlock(&b->window_lock);
    }
}

void bench_record(bench_t *b, nsq_err_t err, const char *detail, void *opaque)
{
    uintptr_t v = (uintptr_t)opaque;
    uint32_t nmsgs = v & 1                  ? atomic_load(&b->tail_n)
                     : b->mode == MODE_MPUB ? b->batch
                                            : 1;
    /* Start times travel in a pointer: on a 32-bit system they wrap every
     * 2 s, which a difference modulo the pointer's width survives. */
    uint64_t now = bench_now_ns();
    uintptr_t t1 = (uintptr_t)(now << 1);
    if (err == NSQ_OK) {
        atomic_fetch_add_explicit(&b->published, nmsgs, memory_order_relaxed);
        bench_lat_add(&b->lat, (uint64_t)((t1 - (v & ~(uintptr_t)1)) >> 1));
    } else {
        bench_note_error(b, err, detail);
    }
    note_last(b, now);
}

/* Runs on the producer's loop thread; it gives the window place back
 * last, so that what it wrote is visible to whoever takes that place. */
static void on_done(nsq_producer_t *p, nsq_err_t err, const char *detail,
                    void *opaque)
{
    (void)p;
    bench_record(g_bench, err, detail, opaque);
    window_release(g_bench);
}

static void run_sync(bench_t *b)
{
    char errstr[256];
    while (bench_claim(b, 1)) {
        uint64_t t0 = bench_now_ns();
        nsq_err_t err = nsq_producer_publish(b->p, b->topic, b->body, b->size,
                                             errstr, sizeof errstr);
        uint64_t t1 = bench_now_ns();
        if (err == NSQ_OK) {
            atomic_fetch_add_explicit(&b->published, 1, memory_order_relaxed);
            bench_lat_add(&b->lat, t1 - t0);
        } else {
            bench_note_error(b, err, errstr);
        }
        note_last(b, t1);
    }
}

nsq_err_t bench_publish(bench_t *b, const nsq_iov_t *iov, uint32_t n,
                        nsq_done_cb cb)
{
    uintptr_t opaque = (uintptr_t)(bench_now_ns() << 1);
    nsq_err_t err;
    if (b->mode == MODE_MPUB) {
        if (n != b->batch) {
            atomic_store(&b->tail_n, n);
            opaque |= 1;
        }
        err = nsq_producer_multi_publish_async(b->p, b->topic, iov, n, cb,
                                               (void *)opaque);
    } else {
        err = nsq_producer_publish_async(b->p, b->topic, b->body, b->size, cb,
                                         (void *)opaque);
    }
    if (err != NSQ_OK) {
        bench_note_error(b, err, nsq_err2str(err));
        note_last(b, bench_now_ns());
    }
    return err;
}

static void run_async(bench_t *b, nsq_iov_t *iov)
{
    uint32_t k = b->mode == MODE_MPUB ? b->batch : 1;
    uint32_t n;
    while ((n = bench_claim(b, k)) != 0) {
        window_acquire(b);
        /* A refused call never runs its callback: give its place back. */
        if (bench_publish(b, iov, n, on_done) != NSQ_OK)
            window_release(b);
    }
}

nsq_iov_t *bench_batch_new(bench_t *b)
{
    nsq_iov_t *iov = malloc(b->batch * sizeof *iov);
    for (uint32_t i = 0; iov && i < b->batch; i++)
        iov[i] = (nsq_iov_t){b->body, b->size};
    if (!iov)
        bench_note_error(b, NSQ_ERR_NOMEM, "out of memory for the batch");
    return iov;
}

static void *worker_main(void *arg)
{
    bench_t *b = arg;
    /* Allocated before the start gate, so it stays out of the numbers;
     * without it the worker publishes nothing and the others share the
     * work. */
    nsq_iov_t *iov = b->mode == MODE_MPUB ? bench_batch_new(b) : NULL;
    pthread_mutex_lock(&b->gate_lock);
    b->ready++;
    pthread_cond_broadcast(&b->gate_cond);
    while (!b->go)
        pthread_cond_wait(&b->gate_cond, &b->gate_lock);
    pthread_mutex_unlock(&b->gate_lock);
    if (b->mode == MODE_SYNC)
        run_sync(b);
    else if (iov || b->mode == MODE_ASYNC)
        run_async(b, iov);
    free(iov);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "nsqpub-bench: %s%s%s%s\nTry 'nsqpub-bench --help'.\n",
            what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return 2;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Seconds as a plain number ("1", "0.5"), or a Go duration ("500ms"). */
static bool parse_duration(const char *s, int64_t *out_ns)
{
    char *end;
    errno = 0;
    double sec = strtod(s, &end);
    if (end != s && *end == '\0' && !errno) {
        if (!(sec > 0 && sec < 1e6))
            return false;
        *out_ns = (int64_t)(sec * 1e9);
        return *out_ns > 0;
    }
    return nsq_duration_parse(s, out_ns) == NSQ_OK && *out_ns > 0;
}

/* NAME,VALUE for nsq_conf_set, with '-' in the name read as '_'. */
static int apply_producer_opt(nsq_conf_t *conf, const char *arg,
                              bool *set_queue_max)
{
    char key[128], err[256];
    tool_opt_rc_t rc =
        tool_producer_opt(conf, arg, key, sizeof key, err, sizeof err);
    if (rc == TOOL_OPT_FORM)
        return usage_error("--producer-opt wants NAME,VALUE:", arg);
    if (rc == TOOL_OPT_CONF) {
        fprintf(stderr,
                "nsqpub-bench: --producer-opt '%s': %s\n"
                "Try 'nsqpub-bench --help'.\n",
                arg, err);
        return 2;
    }
    if (strcmp(key, "queue_max_messages") == 0)
        *set_queue_max = true;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                   */
/* ------------------------------------------------------------------------ */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Rounds a non-negative value to `digits` decimals (at most 6), so the
 * JSON numbers print short. */
static double round_to(double v, int digits)
{
    static const double scale[7] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    double f = scale[digits];
    if (!(v >= 0) || v * f > 9e18)
        return v;
    return (double)(uint64_t)(v * f + 0.5) / f;
}

static int print_json(const bench_t *b, const report_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return -1;
    cJSON_AddStringToObject(o, "mode", mode_names[b->mode]);
    cJSON_AddStringToObject(o, "host", b->on_loop ? "loop" : "thread");
    cJSON_AddNumberToObject(o, "size", (double)b->size);
    cJSON_AddNumberToObject(o, "count", (double)r->count);
    cJSON_AddNumberToObject(o, "batch", b->mode == MODE_MPUB ? b->batch : 1);
    cJSON_AddNumberToObject(o, "window", b->mode == MODE_SYNC ? 1 : b->window);
    cJSON_AddNumberToObject(o, "threads", b->threads);
    cJSON_AddNumberToObject(o, "elapsed_s", round_to(r->elapsed_s, 6));
    cJSON_AddNumberToObject(o, "msgs_per_s", round_to(r->msgs_per_s, 1));
    cJSON_AddNumberToObject(o, "mb_per_s", round_to(r->mb_per_s, 3));
    cJSON_AddNumberToObject(o, "cpu_user_s", round_to(r->cpu_user_s, 6));
    cJSON_AddNumberToObject(o, "cpu_sys_s", round_to(r->cpu_sys_s, 6));
    cJSON_AddNumberToObject(o, "cpu_us_per_msg",
                            round_to(r->cpu_us_per_msg, 4));
    static const char *const lat_keys[5] = {
        "lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_p999_us", "lat_max_us"};
    for (int i = 0; i < 5; i++)
        cJSON_AddNumberToObject(o, lat_keys[i], r->lat_us[i]);
    cJSON_AddNumberToObject(o, "errors", (double)r->errors);
    if (b->mode == MODE_MEMORY) {
        cJSON_AddNumberToObject(o, "rss_before_kb", (double)r->rss_before_kb);
        cJSON_AddNumberToObject(o, "rss_after_kb", (double)r->rss_after_kb);
        cJSON_AddNumberToObject(o, "growth_bytes_per_msg",
                                round_to(r->growth_bytes_per_msg, 1));
    }
    if (r->nnodes) {
        cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
        for (size_t i = 0; nodes && i < r->nnodes; i++) {
            cJSON *n = cJSON_CreateObject();
            if (!n)
                break;
            cJSON_AddStringToObject(n, "address", r->nodes[i].address);
            cJSON_AddNumberToObject(n, "published",
                                    (double)r->nodes[i].published);
            cJSON_AddItemToArray(nodes, n);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return -1;
    puts(s);
    cJSON_free(s);
    return 0;
}

static void print_text(const bench_t *b, const report_t *r)
{
    static const char *const what[] = {"per call", "send to ack", "per MPUB",
                                       "none"};
    printf("nsqpub-bench: %s, %" PRIu64 " x %zu B", mode_names[b->mode],
           r->count, b->size);
    if (b->mode == MODE_MPUB)
        printf(", batch %" PRIu32, b->batch);
    if (b->mode != MODE_SYNC)
        printf(", window %" PRIu32, b->window);
    printf(", %d thread%s%s\n", b->threads, b->threads == 1 ? "" : "s",
           b->on_loop ? ", producer on the bench's loop" : "");
    printf("  elapsed     %.3f s\n", r->elapsed_s);
    printf("  rate        %.0f msgs/s, %.2f MB/s\n", r->msgs_per_s,
           r->mb_per_s);
    printf("  client cpu  user %.3f s, sys %.3f s, %.3f us/msg\n",
           r->cpu_user_s, r->cpu_sys_s, r->cpu_us_per_msg);
    printf("  latency     p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
           "max %.1f us (%s)\n",
           r->lat_us[0], r->lat_us[1], r->lat_us[2], r->lat_us[3], r->lat_us[4],
           what[b->mode]);
    printf("  errors      %" PRIu64 "\n", r->errors);
    for (size_t i = 0; r->nnodes > 1 && i < r->nnodes; i++)
        printf("  node        %s: %" PRIu64 " acknowledged\n",
               r->nodes[i].address, r->nodes[i].published);
    if (b->mode == MODE_MEMORY && r->count)
        printf("  memory      rss %" PRIu64 " -> %" PRIu64
               " KiB, %.1f bytes per queued message\n",
               r->rss_before_kb, r->rss_after_kb, r->growth_bytes_per_msg);
}

/* ------------------------------------------------------------------------ */
/* main                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct cli {
    const char *addr;
    char addrs[2048], lookupds[2048]; /* the repeated options, joined */
    bool embedded, json, have_count, have_duration, on_loop;
    const char *topic;
    enum bench_mode mode;
    uint64_t size, count, batch, window, threads;
    int64_t duration_ns;
} cli_t;

static int parse_args(int argc, char **argv, cli_t *c, nsq_conf_t *conf)
{
    bool set_queue_max = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("nsqpub-bench %s\n", NSQPUB_BENCH_VERSION);
            return 0;
        case OPT_ADDR:
        case OPT_LOOKUPD: {
            char *list = opt == OPT_ADDR ? c->addrs : c->lookupds;
            ok = tool_list_append(list, sizeof c->addrs, optarg);
            if (opt == OPT_ADDR)
                c->addr = c->addrs;
            else
                ok = ok && nsq_conf_set(conf, "lookupd_http_addresses", list,
                                        NULL, 0) == NSQ_OK;
            break;
        }
        case OPT_EMBEDDED:
            c->embedded = true;
            break;
        case OPT_TOPIC:
            ok = nsq_topic_valid(optarg, strlen(optarg));
            c->topic = optarg;
            break;
        case OPT_MODE:
            ok = false;
            for (int m = MODE_SYNC; m <= MODE_MEMORY; m++)
                if (strcmp(optarg, mode_names[m]) == 0) {
                    c->mode = (enum bench_mode)m;
                    ok = true;
                }
            break;
        case OPT_SIZE:
            ok = parse_u64(optarg, 1, INT32_MAX, &c->size);
            break;
        case OPT_COUNT:
            ok = parse_u64(optarg, 1, INT64_MAX / 2, &c->count);
            c->have_count = true;
            break;
        case OPT_DURATION:
            ok = parse_duration(optarg, &c->duration_ns);
            c->have_duration = true;
            break;
        case OPT_BATCH:
            ok = parse_u64(optarg, 1, 1000000, &c->batch);
            break;
        case OPT_WINDOW:
            ok = parse_u64(optarg, 1, 1000000, &c->window);
            break;
        case OPT_THREADS:
            ok = parse_u64(optarg, 1, 1024, &c->threads);
            break;
        case OPT_PRODUCER_OPT: {
            int rc = apply_producer_opt(conf, optarg, &set_queue_max);
            if (rc)
                return rc;
            break;
        }
        case OPT_JSON:
            c->json = true;
            break;
        case OPT_ON_LOOP:
            c->on_loop = true;
            break;
        default:
            fprintf(stderr, "Try 'nsqpub-bench --help'.\n");
            return 2;
        }
        if (!ok)
            return usage_error("bad value", optarg);
    }
    if (optind < argc)
        return usage_error("unexpected argument", argv[optind]);
    if (c->have_count && c->have_duration)
        return usage_error("give --count or --duration, not both", NULL);
    if (c->on_loop && (c->mode == MODE_SYNC || c->mode == MODE_MEMORY))
        return usage_error("--on-loop runs the modes async and mpub only "
                           "(a sync call would block the loop it waits for):",
                           mode_names[c->mode]);
    if (c->on_loop && c->threads != 1)
        return usage_error("--on-loop publishes from the loop's thread only, "
                           "not from --threads",
                           NULL);
    if (c->embedded && c->addr)
        return usage_error("give --nsqd-tcp-address or --embedded, not both",
                           NULL);
    if (c->lookupds[0] && !c->addr)
        c->addr = "";
    if (!c->embedded && !c->addr && c->mode != MODE_MEMORY)
        return usage_error("--nsqd-tcp-address (or --embedded) is required",
                           NULL);
    if (c->have_duration)
        c->count = 0;
    /* The window must fit in the producer's queue, or the benchmark would
     * measure QUEUE_FULL refusals instead of publishes. */
    uint64_t need = c->mode == MODE_MEMORY
                        ? c->count
                        : c->window * (c->mode == MODE_MPUB ? c->batch : 1);
    if (!set_queue_max && need > 100000) {
        char v[32];
        snprintf(v, sizeof v, "%" PRIu64, need < 100000000 ? need : 100000000);
        nsq_conf_set(conf, "queue_max_messages", v, NULL, 0);
    }
    return -1;
}

/* Sets up the shared state; false if out of memory. */
static bool bench_init(bench_t *b, const cli_t *c)
{
    memset(b, 0, sizeof *b);
    g_bench = b;
    atomic_init(&b->outstanding, 0);
    atomic_init(&b->sleepers, 0);
    atomic_init(&b->tail_n, 0);
    pthread_mutex_init(&b->window_lock, NULL);
    pthread_cond_init(&b->window_cond, NULL);
    pthread_mutex_init(&b->gate_lock, NULL);
    pthread_cond_init(&b->gate_cond, NULL);
    b->mode = c->mode;
    b->topic = c->topic;
    b->size = (size_t)c->size;
    b->count = c->count;
    b->duration_ns = c->duration_ns;
    b->batch = (uint32_t)c->batch;
    b->window = (uint32_t)c->window;
    b->low_mark = b->window - (b->window + 7) / 8;
    b->threads = (int)c->threads;
    b->on_loop = c->on_loop;
    atomic_init(&b->remaining, (int64_t)c->count);
    atomic_init(&b->stop, false);
    b->body = malloc(b->size);
    if (!b->body)
        return false;
    for (size_t i = 0; i < b->size; i++)
        b->body[i] = (char)('a' + i % 26);

    size_t samples = 0;
    if (b->count)
        samples = b->mode == MODE_MPUB
                      ? (size_t)((b->count + b->batch - 1) / b->batch)
                      : (size_t)b->count;
    if (samples > LAT_EXACT_MAX)
        samples = 0;
    if (!bench_lat_init(&b->lat, samples))
        return false;
    return true;
}

static void bench_free(bench_t *b)
{
    pthread_mutex_destroy(&b->window_lock);
    pthread_cond_destroy(&b->window_cond);
    pthread_mutex_destroy(&b->gate_lock);
    pthread_cond_destroy(&b->gate_cond);
    bench_lat_free(&b->lat);
    free(b->body);
}

/* Runs the workers and fills the report; false if a thread did not start
 * (the run then has no numbers). */
static bool bench_run(bench_t *b, report_t *r)
{
    pthread_t *tids = calloc((size_t)b->threads, sizeof *tids);
    if (!tids)
        return false;
    int started = 0;
    for (; started < b->threads; started++)
        if (pthread_create(&tids[started], NULL, worker_main, b) != 0)
            break;
    bool all = started == b->threads;
    if (!all) {
        /* The workers that did start are told there is no work. */
        fprintf(stderr, "nsqpub-bench: cannot start thread %d\n", started);
        atomic_store(&b->stop, true);
        atomic_store(&b->remaining, 0);
    }
    pthread_mutex_lock(&b->gate_lock);
    while (b->ready < started)
        pthread_cond_wait(&b->gate_cond, &b->gate_lock);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t_start = bench_now_ns();
    b->go = true;
    pthread_cond_broadcast(&b->gate_cond);
    pthread_mutex_unlock(&b->gate_lock);
    if (b->count == 0 && all) {
        struct timespec until;
        uint64_t end = t_start + (uint64_t)b->duration_ns;
        until.tv_sec = (time_t)(end / 1000000000u);
        until.tv_nsec = (long)(end % 1000000000u);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) ==
               EINTR)
            ;
        atomic_store(&b->stop, true);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    /* The window empty means every callback has finished. */
    if (b->mode != MODE_SYNC)
        window_wait(b, 0);
    getrusage(RUSAGE_SELF, &ru1);
    if (!all)
        return false;
    bench_report(b, r, t_start, &ru0, &ru1);
    return true;
}

void bench_report(bench_t *b, report_t *r, uint64_t t_start,
                  const struct rusage *ru0, const struct rusage *ru1)
{
    uint64_t t_end = atomic_load(&b->t_last);
    double el = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 1e-9;
    r->count = atomic_load(&b->published);
    r->errors = atomic_load(&b->errors);
    r->elapsed_s = el;
    r->msgs_per_s = (double)r->count / el;
    r->mb_per_s = (double)r->count * (double)b->size / 1e6 / el;
    r->cpu_user_s = tv_s(ru1->ru_utime) - tv_s(ru0->ru_utime);
    r->cpu_sys_s = tv_s(ru1->ru_stime) - tv_s(ru0->ru_stime);
    r->cpu_us_per_msg =
        r->count ? (r->cpu_user_s + r->cpu_sys_s) * 1e6 / (double)r->count : 0;
    static const unsigned pct[5] = {500, 900, 990, 999, 1000};
    uint64_t ns[5];
    bench_lat_percentiles(&b->lat, pct, 5, ns);
    for (int i = 0; i < 5; i++)
        r->lat_us[i] = (double)ns[i] / 1000.0;
}

/* The resident set size now, KiB (0 if /proc cannot tell). */
static uint64_t rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2)
        res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE) / 1024;
}

/* A broker that accepts connections (the kernel completes them) and never
 * reads: everything published stays queued in the producer. */
static int stalled_listener(char *addr, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "nsqpub-bench: stalled broker: %s\n", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(addr, len, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}

/*
 * memory: count async PUBs queued behind a stalled broker; the report is
 * the process's growth per queued message (the publishes then fail as
 * stopped, which is not an error here).
 */
static int run_memory(const cli_t *c, nsq_conf_t *conf)
{
    char addr[64], err[256];
    int lfd = stalled_listener(addr, sizeof addr);
    if (lfd < 0) {
        nsq_conf_destroy(conf);
        return 1;
    }
    static const char *const kv[][2] = {{"publish_timeout", "1h"},
                                        {"read_timeout", "5m"},
                                        {"stop_timeout", "0s"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        nsq_conf_set(conf, kv[i][0], kv[i][1], NULL, 0);
    nsq_producer_t *p = nsq_producer_new(addr, conf, err, sizeof err);
    if (!p) {
        fprintf(stderr, "nsqpub-bench: %s\n", err);
        nsq_conf_destroy(conf);
        close(lfd);
        return 2;
    }
    bench_t b;
    memset(&b, 0, sizeof b);
    b.mode = MODE_MEMORY;
    b.size = (size_t)c->size;
    b.threads = 1;
    b.window = 1;
    b.batch = 1;
    char *body = malloc(b.size);
    report_t r;
    memset(&r, 0, sizeof r);
    if (!body) {
        nsq_producer_destroy(p);
        close(lfd);
        return 1;
    }
    memset(body, 'x', b.size);
    struct rusage ru0, ru1;
    r.rss_before_kb = rss_kb();
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = bench_now_ns();
    uint64_t queued = 0, refused = 0;
    for (uint64_t i = 0; i < c->count; i++) {
        if (nsq_producer_publish_async(p, c->topic, body, b.size, NULL, NULL) ==
            NSQ_OK)
            queued++;
        else
            refused++;
    }
    /* The report of a run whose last completion is the last call: no
     * latency (nothing is answered). */
    atomic_store(&b.t_last, bench_now_ns());
    atomic_store(&b.published, queued);
    atomic_store(&b.errors, refused);
    getrusage(RUSAGE_SELF, &ru1);
    r.rss_after_kb = rss_kb();
    bench_report(&b, &r, t0, &ru0, &ru1);
    r.growth_bytes_per_msg = r.count
                                 ? (double)(r.rss_after_kb - r.rss_before_kb) *
                                       1024.0 / (double)r.count
                                 : 0;
    nsq_producer_destroy(p);
    close(lfd);
    free(body);
    if (c->json) {
        if (print_json(&b, &r) != 0)
            fprintf(stderr, "nsqpub-bench: out of memory\n");
    } else {
        print_text(&b, &r);
    }
    fflush(stdout);
    return r.errors ? 1 : 0;
}

void bench_read_nodes(nsq_producer_t *p, report_t *r)
{
    for (size_t i = 0;
         i < nsq_producer_node_count(p) && r->nnodes < BENCH_MAX_NODES; i++)
        if (nsq_producer_node_stats(p, i, &r->nodes[r->nnodes]) == NSQ_OK)
            r->nnodes++;
}

/*
 * The run with the producer's own thread: P workers publish, the main
 * thread waits.  0 after the run (r filled), 2 if the producer cannot be
 * made (conf is then still the caller's), 1 if it cannot reach nsqd or the
 * workers did not start.
 */
static int run_threaded(bench_t *b, const char *addr, nsq_conf_t *conf,
                        report_t *r)
{
    char err[256];
    nsq_producer_t *p = nsq_producer_new(addr, conf, err, sizeof err);
    if (!p) {
        fprintf(stderr, "nsqpub-bench: %s\n", err);
        return 2;
    }
    /* Connecting is not part of the numbers. */
    nsq_err_t e = nsq_producer_ping(p, err, sizeof err);
    if (e != NSQ_OK) {
        fprintf(stderr, "nsqpub-bench: cannot reach %s: %s: %s\n", addr,
                nsq_err2name(e), err);
        nsq_producer_destroy(p);
        return 1;
    }
    b->p = p;
    bool ran = bench_run(b, r);
    nsq_producer_stop(p);
    bench_read_nodes(p, r);
    nsq_producer_destroy(p);
    return ran ? 0 : 1;
}

int main(int argc, char **argv)
{
    cli_t c = {.topic = "nsqpub_bench",
               .mode = MODE_ASYNC,
               .size = 200,
               .count = 100000,
               .batch = 100,
               .window = 1000,
               .threads = 1};
    nsq_conf_t *conf = nsq_conf_new();
    if (!conf) {
        fprintf(stderr, "nsqpub-bench: out of memory\n");
        return 1;
    }
    int rc = parse_args(argc, argv, &c, conf);
    if (rc >= 0) {
        nsq_conf_destroy(conf);
        return rc;
    }
    signal(SIGPIPE, SIG_IGN);
    if (c.mode == MODE_MEMORY)
        return run_memory(&c, conf);

    pid_t child = -1;
    int child_fd = -1;
    char addr[64];
    if (c.embedded) {
        uint16_t port;
        child = bench_broker_fork(&child_fd, &port);
        if (child < 0) {
            nsq_conf_destroy(conf);
            return 1;
        }
        snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
        c.addr = addr;
    }

    bench_t b;
    report_t r;
    memset(&r, 0, sizeof r);
    if (!bench_init(&b, &c)) {
        fprintf(stderr, "nsqpub-bench: out of memory\n");
        bench_free(&b);
        nsq_conf_destroy(conf);
        rc = 1;
        goto out;
    }
    rc = c.on_loop ? bench_run_on_loop(&b, c.addr, conf, &r)
                   : run_threaded(&b, c.addr, conf, &r);
    if (rc == 2)
        nsq_conf_destroy(conf);
    bool ran = rc == 0;
    if (ran) {
        if (c.json) {
            if (print_json(&b, &r) != 0)
                fprintf(stderr, "nsqpub-bench: out of memory\n");
        } else {
            print_text(&b, &r);
        }
        fflush(stdout);
        if (r.errors)
            fprintf(stderr,
                    "nsqpub-bench: %" PRIu64 " errors; first: %s: %s (%s)\n",
                    r.errors, nsq_err2name(b.first_err), b.first_detail,
                    nsq_err_fate(b.first_err) == NSQ_FATE_UNKNOWN
                        ? "nsqd may have stored it"
                        : "nsqd did not store it");
        rc = r.errors ? 1 : 0;
    }
    bench_free(&b);
out:
    if (child > 0)
        bench_broker_reap(child, child_fd);
    return rc;
}
