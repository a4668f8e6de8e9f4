/*
 * What the test broker received, per topic, and the little of nsqd's
 * delivery that a consumer needs: a topic hands each message to each of its
 * channels (holding messages until the first channel exists, as nsqd does),
 * a channel hands it to one subscriber with RDY room, and FIN/REQ/TOUCH
 * settle in-flight messages.  One mutex guards it all: the broker is for
 * tests, and simple beats fast here.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testd_internal.h"

typedef struct msg {
    struct msg *next;
    char id[NSQ_MSG_ID_LEN];
    int64_t timestamp_ns;
    uint16_t attempts;
    int64_t due_ms; /* monotonic; 0 = now */
    nsq__sub_t *owner;
    size_t len;
    char body[];
} msg_t;

typedef struct channel channel_t;
typedef struct topic topic_t;

struct nsq__sub {
    nsq__sub_t *next;
    channel_t *channel;
    int wake_fd;
    int64_t rdy;
    int64_t in_flight;
};

struct channel {
    channel_t *next;
    char *name;
    msg_t *head, *tail; /* ready or deferred, in arrival order */
    msg_t *in_flight;   /* handed to a subscriber, awaiting FIN */
    nsq__sub_t *subs;
    nsq__sub_t *rr; /* the subscriber served last */
};

typedef struct record {
    char *body;
    size_t len;
    int64_t defer_ms;
    uint64_t conn;
} record_t;

struct topic {
    topic_t *next;
    char *name;
    uint64_t count, bytes;
    record_t *recs;
    size_t nrecs, caprecs;
    channel_t *channels;
    msg_t *held_head, *held_tail; /* published before any channel existed */
};

struct nsq__store {
    pthread_mutex_t lock;
    pthread_cond_t grew;
    size_t max_recorded;
    topic_t *topics;
    uint64_t id_seq;
};

int64_t nsq__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec nsq__testd_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

nsq__store_t *nsq__store_new(size_t max_recorded)
{
    nsq__store_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->grew, &ca);
    pthread_condattr_destroy(&ca);
    s->max_recorded = max_recorded;
    return s;
}

static void free_msgs(msg_t *m)
{
    while (m) {
        msg_t *next = m->next;
        free(m);
        m = next;
    }
}

static void free_records(topic_t *t)
{
    for (size_t i = 0; i < t->nrecs; i++)
        free(t->recs[i].body);
    free(t->recs);
    t->recs = NULL;
    t->nrecs = t->caprecs = 0;
}

void nsq__store_free(nsq__store_t *s)
{
    if (!s)
        return;
    topic_t *t = s->topics;
    while (t) {
        topic_t *tn = t->next;
        channel_t *c = t->channels;
        while (c) {
            channel_t *cn = c->next;
            free_msgs(c->head);
            free_msgs(c->in_flight);
            nsq__sub_t *sub = c->subs;
            while (sub) {
                nsq__sub_t *next = sub->next;
                free(sub);
                sub = next;
            }
            free(c->name);
            free(c);
            c = cn;
        }
        free_msgs(t->held_head);
        free_records(t);
        free(t->name);
        free(t);
        t = tn;
    }
    pthread_cond_destroy(&s->grew);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* lock held */
static topic_t *find_topic(nsq__store_t *s, const char *name, bool create)
{
    for (topic_t *t = s->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    if (!create)
        return NULL;
    topic_t *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->next = s->topics;
    s->topics = t;
    return t;
}

static msg_t *msg_new(nsq__store_t *s, const void *body, size_t len,
                      int64_t defer_ms)
{
    msg_t *m = calloc(1, sizeof *m + len);
    if (!m)
        return NULL;
    /* nsqd's ids are 16 hex digits; a sequence number is unique enough. */
    char hex[NSQ_MSG_ID_LEN + 1];
    snprintf(hex, sizeof hex, "%016" PRIx64, ++s->id_seq);
    memcpy(m->id, hex, NSQ_MSG_ID_LEN);
    m->timestamp_ns = wall_ns();
    m->due_ms = defer_ms > 0 ? nsq__now_ms() + defer_ms : 0;
    m->len = len;
    memcpy(m->body, body, len);
    return m;
}

static void wake(nsq__sub_t *sub)
{
    uint64_t one = 1;
    /* The eventfd only needs to be non-zero; a full counter is fine. */
    ssize_t n = write(sub->wake_fd, &one, sizeof one);
    (void)n;
}

static void wake_all(channel_t *c)
{
    for (nsq__sub_t *sub = c->subs; sub; sub = sub->next)
        wake(sub);
}

static void channel_push(channel_t *c, msg_t *m)
{
    m->next = NULL;
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    wake_all(c);
}

static bool record(nsq__store_t *s, topic_t *t, const void *body, size_t len,
                   int64_t defer_ms, uint64_t conn)
{
    t->count++;
    t->bytes += len;
    if (t->nrecs >= s->max_recorded)
        return true;
    if (t->nrecs == t->caprecs) {
        size_t cap = t->caprecs ? t->caprecs * 2 : 64;
        record_t *r = realloc(t->recs, cap * sizeof *r);
        if (!r)
            return false;
        t->recs = r;
        t->caprecs = cap;
    }
    record_t *r = &t->recs[t->nrecs];
    r->body = malloc(len ? len : 1);
    if (!r->body)
        return false;
    memcpy(r->body, body, len);
    r->len = len;
    r->defer_ms = defer_ms;
    r->conn = conn;
    t->nrecs++;
    return true;
}

void nsq__store_put(nsq__store_t *s, const char *topic, const void *body,
                    size_t len, int64_t defer_ms, uint64_t conn)
{
    pthread_mutex_lock(&s->lock);
    topic_t *t = find_topic(s, topic, true);
    if (t) {
        record(s, t, body, len, defer_ms, conn);
        if (!t->channels) {
            /* Held for the first channel, as nsqd's topic does; bounded
             * like the record so a publish-only test does not grow. */
            if (t->count <= s->max_recorded) {
                msg_t *m = msg_new(s, body, len, defer_ms);
                if (m) {
                    if (t->held_tail)
                        t->held_tail->next = m;
                    else
                        t->held_head = m;
                    t->held_tail = m;
                }
            }
        } else {
            for (channel_t *c = t->channels; c; c = c->next) {
                msg_t *m = msg_new(s, body, len, defer_ms);
                if (m)
                    channel_push(c, m);
            }
        }
        pthread_cond_broadcast(&s->grew);
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t nsq__store_count(nsq__store_t *s, const char *topic)
{
    pthread_mutex_lock(&s->lock);
    topic_t *t = find_topic(s, topic, false);
    uint64_t n = t ? t->count : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

uint64_t nsq__store_bytes(nsq__store_t *s, const char *topic)
{
    pthread_mutex_lock(&s->lock);
    topic_t *t = find_topic(s, topic, false);
    uint64_t n = t ? t->bytes : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

bool nsq__store_get(nsq__store_t *s, const char *topic, size_t index,
                    nsq_testd_msg_t *out)
{
    bool ok = false;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    topic_t *t = find_topic(s, topic, false);
    if (t && index < t->nrecs) {
        const record_t *r = &t->recs[index];
        out->body = malloc(r->len + 1);
        if (out->body) {
            memcpy(out->body, r->body, r->len);
            out->body[r->len] = '\0';
            out->len = r->len;
            out->defer_ms = r->defer_ms;
            out->conn = r->conn;
            ok = true;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

bool nsq__store_wait(nsq__store_t *s, const char *topic, uint64_t n,
                     int64_t timeout_ms)
{
    struct timespec deadline = nsq__testd_deadline(timeout_ms);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* An unknown topic has 0 messages, as nsq_testd_count says. */
        topic_t *t = find_topic(s, topic, false);
        if ((t ? t->count : 0) >= n)
            break;
        if (pthread_cond_timedwait(&s->grew, &s->lock, &deadline) ==
            ETIMEDOUT) {
            t = find_topic(s, topic, false);
            pthread_mutex_unlock(&s->lock);
            return (t ? t->count : 0) >= n;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return true;
}

void nsq__store_clear(nsq__store_t *s)
{
    pthread_mutex_lock(&s->lock);
    for (topic_t *t = s->topics; t; t = t->next) {
        free_records(t);
        t->count = t->bytes = 0;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Whether body can be shown as a JSON string: UTF-8 without NUL. */
static bool printable_utf8(const char *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)p[i];
        size_t n = c < 0x80         ? 1
                   : (c >> 5) == 6  ? 2
                   : (c >> 4) == 14 ? 3
                   : (c >> 3) == 30 ? 4
                                    : 0;
        if (c == 0 || n == 0 || i + n > len)
            return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)p[i + k] >> 6) != 2)
                return false;
        i += n;
    }
    return true;
}

static char *base64(const char *p, size_t len)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)p[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)p[i + 2];
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = i + 1 < len ? tbl[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? tbl[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static bool dump_line(FILE *f, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return false;
    bool ok = fprintf(f, "%s\n", text) >= 0;
    free(text);
    return ok;
}

int nsq__store_dump(nsq__store_t *s, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    bool ok = true;
    pthread_mutex_lock(&s->lock);
    for (topic_t *t = s->topics; t && ok; t = t->next) {
        for (size_t i = 0; i < t->nrecs && ok; i++) {
            const record_t *r = &t->recs[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "topic", t->name);
            cJSON_AddNumberToObject(o, "index", (double)i);
            cJSON_AddNumberToObject(o, "size", (double)r->len);
            cJSON_AddNumberToObject(o, "defer_ms", (double)r->defer_ms);
            cJSON_AddNumberToObject(o, "conn", (double)r->conn);
            if (printable_utf8(r->body, r->len)) {
                char *text = malloc(r->len + 1);
                if (text) {
                    memcpy(text, r->body, r->len);
                    text[r->len] = '\0';
                    cJSON_AddStringToObject(o, "body", text);
                    free(text);
                }
            } else {
                char *b64 = base64(r->body, r->len);
                if (b64)
                    cJSON_AddStringToObject(o, "body_base64", b64);
                free(b64);
            }
            ok = dump_line(f, o);
        }
    }
    for (topic_t *t = s->topics; t && ok; t = t->next) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "summary", 1);
        cJSON_AddStringToObject(o, "topic", t->name);
        cJSON_AddNumberToObject(o, "count", (double)t->count);
        cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
        cJSON_AddNumberToObject(o, "recorded", (double)t->nrecs);
        ok = dump_line(f, o);
    }
    pthread_mutex_unlock(&s->lock);
    if (fclose(f) != 0)
        ok = false;
    return ok ? 0 : -1;
}

/* ---- subscribers ---- */

nsq__sub_t *nsq__store_subscribe(nsq__store_t *s, const char *topic,
                                 const char *channel, int wake_fd)
{
    nsq__sub_t *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    pthread_mutex_lock(&s->lock);
    topic_t *t = find_topic(s, topic, true);
    channel_t *c = NULL;
    for (c = t ? t->channels : NULL; c; c = c->next)
        if (strcmp(c->name, channel) == 0)
            break;
    if (t && !c) {
        c = calloc(1, sizeof *c);
        if (c && !(c->name = strdup(channel))) {
            free(c);
            c = NULL;
        }
        if (c) {
            bool first = t->channels == NULL;
            c->next = t->channels;
            t->channels = c;
            if (first) {
                c->head = t->held_head;
                c->tail = t->held_tail;
                t->held_head = t->held_tail = NULL;
            }
        }
    }
    if (!c) {
        pthread_mutex_unlock(&s->lock);
        free(sub);
        return NULL;
    }
    sub->channel = c;
    sub->wake_fd = wake_fd;
    sub->next = c->subs;
    c->subs = sub;
    pthread_mutex_unlock(&s->lock);
    return sub;
}

void nsq__store_unsubscribe(nsq__store_t *s, nsq__sub_t *sub)
{
    if (!sub)
        return;
    pthread_mutex_lock(&s->lock);
    channel_t *c = sub->channel;
    for (nsq__sub_t **pp = &c->subs; *pp; pp = &(*pp)->next)
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    if (c->rr == sub)
        c->rr = NULL;
    /* Its in-flight messages go back to the channel, as nsqd requeues
     * them when a consumer goes away. */
    for (msg_t **pp = &c->in_flight; *pp;) {
        msg_t *m = *pp;
        if (m->owner == sub) {
            *pp = m->next;
            m->owner = NULL;
            channel_push(c, m);
        } else {
            pp = &m->next;
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(sub);
}

void nsq__sub_set_rdy(nsq__store_t *s, nsq__sub_t *sub, int64_t rdy)
{
    pthread_mutex_lock(&s->lock);
    sub->rdy = rdy;
    pthread_mutex_unlock(&s->lock);
}

bool nsq__sub_take(nsq__store_t *s, nsq__sub_t *sub, nsq_buf_t *out,
                   int64_t *next_due_ms)
{
    bool taken = false;
    int64_t now = nsq__now_ms();
    *next_due_ms = -1;
    pthread_mutex_lock(&s->lock);
    channel_t *c = sub->channel;
    msg_t **pp = &c->head, *prev = NULL;
    while (*pp) {
        msg_t *m = *pp;
        if (m->due_ms > now) {
            if (*next_due_ms < 0 || m->due_ms < *next_due_ms)
                *next_due_ms = m->due_ms;
            prev = m;
            pp = &m->next;
            continue;
        }
        if (sub->in_flight >= sub->rdy)
            break;
        *pp = m->next;
        if (c->tail == m)
            c->tail = prev;
        m->attempts++;
        m->owner = sub;
        m->next = c->in_flight;
        c->in_flight = m;
        sub->in_flight++;
        nsq_frame_encode_message(out, m->timestamp_ns, m->attempts, m->id,
                                 m->body, m->len);
        taken = true;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return taken;
}

bool nsq__sub_finish(nsq__store_t *s, nsq__sub_t *sub, const char *id, int kind,
                     int64_t requeue_ms)
{
    bool found = false;
    pthread_mutex_lock(&s->lock);
    channel_t *c = sub->channel;
    for (msg_t **pp = &c->in_flight; *pp; pp = &(*pp)->next) {
        msg_t *m = *pp;
        if (m->owner != sub || memcmp(m->id, id, NSQ_MSG_ID_LEN) != 0)
            continue;
        found = true;
        if (kind == NSQ__SUB_TOUCH)
            break;
        *pp = m->next;
        sub->in_flight--;
        if (kind == NSQ__SUB_FIN) {
            free(m);
        } else {
            m->owner = NULL;
            m->due_ms = requeue_ms > 0 ? nsq__now_ms() + requeue_ms : 0;
            channel_push(c, m);
        }
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}
