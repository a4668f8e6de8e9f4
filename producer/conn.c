/*
 * The connection: resolve, connect, IDENTIFY, then the upgrades nsqd
 * negotiates -- TLS, then compression, then AUTH when the reply says
 * auth_required -- and the byte path through them.  Loop thread only.
 *
 * Plain connections read straight into the frame reader's buffer and write
 * commands with writev from the transactions' own buffers.  Once TLS or
 * compression is on, bytes are copied through the layers: socket -> TLS ->
 * decompression -> frame reader, and commands -> compression -> TLS ->
 * socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tls.h"

/* Handshake steps inside NSQ__IDENTIFYING. */
enum {
    HS_IDENTIFY = 0, /* waiting for the IDENTIFY reply */
    HS_TLS,          /* TLS handshake in progress */
    HS_TLS_OK,       /* waiting for the OK sent inside TLS */
    HS_Z_OK,         /* waiting for the OK sent compressed */
    HS_AUTH,         /* waiting for the AUTH reply */
};

static void on_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    nsq__router_on_read(s, nread, buf);
}

/* Drops this connection's TLS session and compression. */
static void reset_layers(nsq_producer_t *p)
{
    nsq__client_tls_free(p->tls);
    p->tls = NULL;
    nsq_stream_destroy(p->z);
    p->z = NULL;
    p->xform = false;
    p->peer_closed = false;
    p->hs = HS_IDENTIFY;
}

void nsq__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    nsq_producer_t *p = h->data;
    (void)suggested;
    if (p->xform) {
        if (nsq_buf_reserve(&p->raw, 65536) != NSQ_OK) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        *buf = uv_buf_init(p->raw.data, 65536);
        return;
    }
    size_t avail = 0;
    char *space = nsq_frame_reader_space(p->reader, 65536, &avail);
    *buf = uv_buf_init(space, space ? (unsigned)avail : 0);
}

/* Decompresses (when on) and hands plain bytes to the frame reader. */
static bool deliver(nsq_producer_t *p, const char *data, size_t len)
{
    if (len == 0)
        return true;
    if (p->z) {
        p->zplain.len = 0;
        if (nsq_stream_decompress(p->z, data, len, &p->zplain) != NSQ_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s: compressed data from nsqd: %s",
                     p->addr, nsq_stream_errstr(p->z));
            nsq__conn_fail(p, NSQ_ERR_COMPRESSION, why);
            return false;
        }
        data = p->zplain.data;
        len = p->zplain.len;
    }
    if (len && nsq_frame_reader_feed(p->reader, data, len) != NSQ_OK) {
        nsq__conn_fail(p, NSQ_ERR_BAD_FRAME,
                       nsq_frame_reader_errstr(p->reader));
        return false;
    }
    return true;
}

/* Wire bytes through TLS (when on) to deliver(). */
static bool ingest_wire(nsq_producer_t *p, const char *data, size_t len)
{
    if (!p->tls)
        return deliver(p, data, len);
    char why[512];
    if (len && !nsq__client_tls_feed(p->tls, data, len)) {
        nsq__conn_fail(p, NSQ_ERR_TLS, "TLS: out of memory");
        return false;
    }
    if (p->hs == HS_TLS) {
        int rc = nsq__client_tls_handshake(p->tls, why, sizeof why);
        if (rc < 0) {
            nsq__conn_fail(p, NSQ_ERR_TLS, why);
            return false;
        }
        if (rc == 0)
            return true;
        p->hs = HS_TLS_OK;
        nsq__log(p, NSQ_LOG_DEBUG, "%s: TLS established", p->addr);
    }
    p->plain.len = 0;
    int rc = nsq__client_tls_read(p->tls, &p->plain, why, sizeof why);
    if (rc < 0) {
        nsq__conn_fail(p, NSQ_ERR_TLS, why);
        return false;
    }
    if (rc > 0)
        p->peer_closed = true;
    return deliver(p, p->plain.data, p->plain.len);
}

bool nsq__conn_ingest(nsq_producer_t *p, const char *data, size_t len)
{
    if (!p->xform)
        return nsq_frame_reader_commit(p->reader, len) == NSQ_OK;
    return ingest_wire(p, data, len);
}

/*
 * The encoding changes right after a frame: what the frame reader holds
 * beyond it is wire bytes of the new encoding.  Takes them out and feeds
 * them through the layers now on.
 */
static bool reencode_pending(nsq_producer_t *p, bool through_tls)
{
    nsq_buf_t rest = {0};
    if (nsq_frame_reader_drain(p->reader, &rest) != NSQ_OK) {
        nsq__conn_fail(p, NSQ_ERR_CONNECT, "out of memory");
        return false;
    }
    bool ok = through_tls ? ingest_wire(p, rest.data, rest.len)
                          : deliver(p, rest.data, rest.len);
    nsq_buf_free(&rest);
    return ok;
}

static void become_ready(nsq_producer_t *p)
{
    p->heartbeat_ms =
        p->conf->heartbeat_interval_ms > 0 ? p->conf->heartbeat_interval_ms : 0;
    p->state = NSQ__READY;
    p->failures = 0;
    atomic_fetch_add(&p->stats.connects, 1);
    nsq__log(p, NSQ_LOG_INFO, "connected to %s (nsqd %s%s%s%s)", p->addr,
             p->neg.negotiated ? p->neg.version : "without negotiation",
             p->tls ? ", TLS" : "",
             p->z ? (p->neg.snappy ? ", snappy" : ", deflate") : "",
             p->neg.auth_required ? ", AUTH" : "");
}

static void auth_or_ready(nsq_producer_t *p)
{
    if (!p->neg.auth_required) {
        become_ready(p);
        return;
    }
    const char *secret = p->conf->auth_secret;
    if (!secret || !*secret) {
        char why[512];
        snprintf(why, sizeof why,
                 "%s: nsqd requires AUTH and auth_secret is not set", p->addr);
        nsq__conn_fail(p, NSQ_E_AUTH_FIRST, why);
        return;
    }
    if (nsq_cmd_auth(&p->ctl[0], secret, strlen(secret)) != NSQ_OK) {
        nsq__conn_fail(p, NSQ_ERR_CONNECT, "cannot encode AUTH");
        return;
    }
    p->hs = HS_AUTH;
}

/* Compression if nsqd granted it (after the frame that precedes it), then
 * AUTH or ready. */
static void compression_or_auth(nsq_producer_t *p)
{
    bool snappy = p->conf->snappy && p->neg.snappy;
    bool deflate = p->conf->deflate && p->neg.deflate;
    if (!snappy && !deflate) {
        if (p->conf->snappy || p->conf->deflate)
            nsq__log(p, NSQ_LOG_INFO,
                     "%s: nsqd did not enable compression; continuing "
                     "without it",
                     p->addr);
        auth_or_ready(p);
        return;
    }
    int level = (int)(p->neg.deflate_level > 0 ? p->neg.deflate_level
                                               : p->conf->deflate_level);
    p->z = nsq_stream_new(snappy ? NSQ_STREAM_SNAPPY : NSQ_STREAM_DEFLATE,
                          level, 0);
    if (!p->z) {
        nsq__conn_fail(p, NSQ_ERR_COMPRESSION, "cannot start compression");
        return;
    }
    p->xform = true;
    p->hs = HS_Z_OK;
    /* Bytes after the frame that switched are compressed (inside TLS they
     * were already decrypted, so they only need decompressing). */
    reencode_pending(p, false);
}

/* The IDENTIFY reply: plain OK or nsqd's JSON; then the upgrades. */
static void identified(nsq_producer_t *p, const nsq_frame_t *f)
{
    char why[512];
    if (f->type == NSQ_FRAME_ERROR) {
        nsq_err_t code = nsq_err_from_frame(f->data, f->len);
        snprintf(why, sizeof why, "%s: IDENTIFY rejected: %.*s", p->addr,
                 (int)f->len, f->data);
        /* A rejected handshake fails what waits with nsqd's code. */
        nsq__conn_fail(p, code, why);
        return;
    }
    nsq_identify_reply_t reply;
    char perr[128];
    if (f->type != NSQ_FRAME_RESPONSE ||
        nsq_identify_reply_parse(f->data, f->len, &reply, perr, sizeof perr) !=
            NSQ_OK) {
        snprintf(why, sizeof why, "%s: bad IDENTIFY answer: %s", p->addr,
                 f->type == NSQ_FRAME_RESPONSE ? perr : "not a response");
        nsq__conn_fail(p, NSQ_ERR_PROTOCOL, why);
        return;
    }
    const nsq_conf_t *c = p->conf;
    if ((reply.tls_v1 && !c->tls_v1) || (reply.snappy && !c->snappy) ||
        (reply.deflate && !c->deflate)) {
        snprintf(why, sizeof why,
                 "%s: nsqd enabled a feature nsqpub did not ask for", p->addr);
        nsq__conn_fail(p, NSQ_ERR_PROTOCOL, why);
        return;
    }
    if (c->tls_v1 && !reply.tls_v1) {
        /* Never fall back to plain text silently. */
        snprintf(why, sizeof why,
                 "%s: TLS was asked for but nsqd did not enable it (%s); "
                 "refusing to continue without TLS",
                 p->addr,
                 reply.negotiated ? "tls_v1 false in its IDENTIFY reply"
                                  : "it answered IDENTIFY without negotiation");
        nsq__conn_fail(p, NSQ_ERR_TLS, why);
        return;
    }
    pthread_mutex_lock(&p->reply_lock);
    p->reply = reply;
    p->have_reply = true;
    pthread_mutex_unlock(&p->reply_lock);
    p->neg = reply;
    if (!c->tls_v1) {
        compression_or_auth(p);
        return;
    }
    p->tls = nsq__client_tls_new(p->tls_ctx, c, p->host, why, sizeof why);
    if (!p->tls) {
        nsq__conn_fail(p, NSQ_ERR_TLS, why);
        return;
    }
    p->xform = true;
    p->hs = HS_TLS;
    /* Starts the handshake (the ClientHello goes out with the next pump);
     * anything nsqd sent after its reply is already TLS. */
    reencode_pending(p, true);
}

void nsq__handshake_frame(nsq_producer_t *p, const nsq_frame_t *f)
{
    if (f->type == NSQ_FRAME_RESPONSE && f->len == 11 &&
        memcmp(f->data, "_heartbeat_", 11) == 0)
        return;
    char why[512];
    switch (p->hs) {
    case HS_IDENTIFY:
        identified(p, f);
        return;
    case HS_TLS_OK:
    case HS_Z_OK:
        if (f->type == NSQ_FRAME_RESPONSE && f->len == 2 &&
            memcmp(f->data, "OK", 2) == 0) {
            if (p->hs == HS_TLS_OK)
                compression_or_auth(p);
            else
                auth_or_ready(p);
            return;
        }
        snprintf(why, sizeof why, "%s: unexpected answer after %s: %.*s",
                 p->addr, p->hs == HS_TLS_OK ? "TLS" : "compression",
                 (int)(f->len > 200 ? 200 : f->len), f->data);
        nsq__conn_fail(p, NSQ_ERR_PROTOCOL, why);
        return;
    case HS_AUTH:
        if (f->type == NSQ_FRAME_ERROR) {
            /* E_AUTH_FAILED, E_UNAUTHORIZED: the publishes that wait get
             * nsqd's code; the secret is never part of the text. */
            nsq_err_t code = nsq_err_from_frame(f->data, f->len);
            snprintf(why, sizeof why, "%s: %.*s", p->addr,
                     (int)(f->len > 300 ? 300 : f->len), f->data);
            nsq__conn_fail(p, code, why);
            return;
        }
        nsq_auth_reply_t auth;
        char perr[128];
        if (nsq_auth_reply_parse(f->data, f->len, &auth, perr, sizeof perr) !=
            NSQ_OK) {
            snprintf(why, sizeof why, "%s: bad AUTH answer: %s", p->addr, perr);
            nsq__conn_fail(p, NSQ_ERR_PROTOCOL, why);
            return;
        }
        pthread_mutex_lock(&p->reply_lock);
        p->auth = auth;
        p->have_auth = true;
        pthread_mutex_unlock(&p->reply_lock);
        become_ready(p);
        return;
    default:
        nsq__conn_fail(p, NSQ_ERR_PROTOCOL, "unexpected frame during TLS");
        return;
    }
}

bool nsq__conn_encode(nsq_producer_t *p, const uv_buf_t *bufs, size_t n,
                      nsq_buf_t *wire)
{
    char why[512];
    p->wplain.len = 0;
    for (size_t i = 0; i < n; i++)
        if (nsq_buf_append(&p->wplain, bufs[i].base, bufs[i].len) != NSQ_OK)
            return false;
    const char *data = p->wplain.data;
    size_t len = p->wplain.len;
    if (p->z && len) {
        p->wz.len = 0;
        if (nsq_stream_compress(p->z, data, len, &p->wz) != NSQ_OK)
            return false;
        data = p->wz.data;
        len = p->wz.len;
    }
    if (!p->tls)
        return nsq_buf_append(wire, data, len) == NSQ_OK;
    if (len && !nsq__client_tls_write(p->tls, data, len, why, sizeof why))
        return false;
    return nsq__client_tls_take_output(p->tls, wire);
}

/* ---------------------------------------------------------------- connect */

void nsq__on_close(uv_handle_t *h)
{
    nsq_producer_t *p = h->data;
    free(h);
    p->state = NSQ__DISCONNECTED;
    if (p->closing_handles)
        return;
    if (p->stop_draining) {
        /* Stop writes what is queued: a connection lost while it waits is
         * made again, within stop_timeout, for what was never written. */
        nsq__drain_queue(p);
        if (p->waiting.head && nsq__mono_ms() < p->stop_deadline_ms) {
            nsq__connect_start(p);
            nsq__arm_tick(p);
            return;
        }
        nsq__finish_stop(p);
        return;
    }
    /* Commands queued while the old connection closed get a new one. */
    nsq__drain_queue(p);
    if (p->waiting.head)
        nsq__connect_start(p);
    nsq__arm_tick(p);
}

/*
 * Ends the connection: in-flight commands get err (in doubt, or not sent
 * when nsqd closed after rejecting an earlier one); during connect, the
 * waiting commands fail too and the next attempt backs off.
 */
void nsq__conn_fail(nsq_producer_t *p, nsq_err_t err, const char *why)
{
    if (p->state == NSQ__CLOSING || p->state == NSQ__DISCONNECTED)
        return;
    bool connecting = p->state != NSQ__READY;
    nsq__log(p, NSQ_LOG_WARNING, "%s", why);
    /* Counted before any result is delivered, so that a caller who got
     * one sees the counters that explain it. */
    if (connecting)
        atomic_fetch_add(&p->stats.connect_failures, 1);
    else
        atomic_fetch_add(&p->stats.disconnects, 1);
    nsq__txn_t *t;
    while ((t = nsq__list_pop(&p->inflight)) != NULL) {
        atomic_fetch_sub(&p->stats.in_flight, 1);
        if (err == NSQ_ERR_NOT_SENT)
            nsq__finish(p, t, NSQ_ERR_NOT_SENT, why);
        else {
            char detail[512];
            snprintf(detail, sizeof detail,
                     "written, connection lost before nsqd answered: %s", why);
            nsq__finish(p, t, NSQ_ERR_IN_DOUBT, detail);
        }
    }
    if (connecting) {
        p->failures++;
        /* Capped exponential backoff with jitter: the window is a random
         * point in [b/2, b], b = reconnect_backoff * 2^(failures-1). */
        int64_t b = p->conf->reconnect_backoff_ms;
        for (int i = 1;
             i < p->failures && b < p->conf->max_reconnect_backoff_ms; i++)
            b *= 2;
        if (b > p->conf->max_reconnect_backoff_ms)
            b = p->conf->max_reconnect_backoff_ms;
        int64_t wait =
            b / 2 + (int64_t)(nsq__random(p) % (uint64_t)(b / 2 + 1));
        p->backoff_until_ms = nsq__mono_ms() + wait;
        /* Observable (tests check doubling, cap and jitter from it). */
        nsq__log(p, NSQ_LOG_DEBUG,
                 "backoff: failure %d in a row, next attempt in %lldms "
                 "(window %lldms)",
                 p->failures, (long long)wait, (long long)b);
        /* What the attempt's publishes, and those inside the backoff
         * window, are told: TLS, compression and nsqd's own codes (a
         * rejected IDENTIFY or AUTH) as such, anything else as a failed
         * connect. */
        p->last_error_code = err == NSQ_ERR_TLS || err == NSQ_ERR_COMPRESSION ||
                                     nsq_err_is_broker(err)
                                 ? err
                                 : NSQ_ERR_CONNECT;
        snprintf(p->last_error, sizeof p->last_error, "%s", why);
        char detail[512];
        snprintf(detail, sizeof detail, "%s (not sent)", why);
        nsq__fail_waiting(p, p->last_error_code, detail);
    }
    p->heartbeat_ms = 0;
    p->state = NSQ__CLOSING;
    reset_layers(p);
    if (p->tcp) {
        uv_read_stop((uv_stream_t *)p->tcp);
        uv_close((uv_handle_t *)p->tcp, nsq__on_close);
        p->tcp = NULL;
    } else {
        /* Failed before a socket existed (resolving). */
        p->state = NSQ__DISCONNECTED;
    }
    nsq__arm_tick(p);
}

static void on_connect(uv_connect_t *req, int status)
{
    nsq_producer_t *p = req->data;
    if (p->state != NSQ__CONNECTING)
        return; /* a dial timeout closed it meanwhile */
    if (status < 0) {
        char why[512];
        snprintf(why, sizeof why, "connect %s: %s", p->addr,
                 uv_strerror(status));
        nsq__conn_fail(p, NSQ_ERR_CONNECT, why);
        return;
    }
    uv_tcp_nodelay(p->tcp, 1);
    const nsq_conf_t *c = p->conf;
    nsq_identify_t id;
    nsq_identify_default(&id);
    id.client_id = c->client_id;
    id.hostname = c->hostname;
    id.user_agent = c->user_agent;
    id.heartbeat_interval = c->heartbeat_interval_ms;
    id.output_buffer_size = c->output_buffer_size;
    id.output_buffer_timeout = c->output_buffer_timeout_ms;
    id.msg_timeout = c->msg_timeout_ms;
    id.sample_rate = c->sample_rate;
    id.tls_v1 = c->tls_v1;
    id.snappy = c->snappy;
    id.deflate = c->deflate;
    id.deflate_level = c->deflate_level;
    p->ctl[0].len = 0;
    if (nsq_cmd_magic(&p->ctl[0]) != NSQ_OK ||
        nsq_cmd_identify(&p->ctl[0], &id) != NSQ_OK) {
        nsq__conn_fail(p, NSQ_ERR_CONNECT, "cannot encode IDENTIFY");
        return;
    }
    /* Forget any bytes and layers of an earlier connection. */
    reset_layers(p);
    nsq_frame_reader_destroy(p->reader);
    p->reader = nsq_frame_reader_new(0);
    if (!p->reader) {
        nsq__conn_fail(p, NSQ_ERR_CONNECT, "out of memory");
        return;
    }
    memset(&p->neg, 0, sizeof p->neg);
    p->state = NSQ__IDENTIFYING;
    p->phase_started_ms = p->last_read_ms = nsq__mono_ms();
    uv_read_start((uv_stream_t *)p->tcp, nsq__on_alloc, on_read_cb);
    nsq__pump(p);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    nsq_producer_t *p = req->data;
    if (p->state != NSQ__RESOLVING) {
        uv_freeaddrinfo(ai);
        return;
    }
    char why[512];
    if (status < 0 || !ai) {
        snprintf(why, sizeof why, "resolve %.200s: %s", p->host,
                 uv_strerror(status));
        uv_freeaddrinfo(ai);
        nsq__conn_fail(p, NSQ_ERR_CONNECT, why);
        return;
    }
    p->tcp = malloc(sizeof *p->tcp);
    int rc = p->tcp ? uv_tcp_init(&p->loop, p->tcp) : UV_ENOMEM;
    if (rc == 0) {
        p->tcp->data = p;
        p->connect_req.data = p;
        p->state = NSQ__CONNECTING;
        rc = uv_tcp_connect(&p->connect_req, p->tcp, ai->ai_addr, on_connect);
    } else {
        free(p->tcp);
        p->tcp = NULL;
    }
    uv_freeaddrinfo(ai);
    if (rc != 0) {
        snprintf(why, sizeof why, "connect %s: %s", p->addr, uv_strerror(rc));
        nsq__conn_fail(p, NSQ_ERR_CONNECT, why);
    }
}

/* Starts a connection, or fails what waits if inside the backoff window. */
void nsq__connect_start(nsq_producer_t *p)
{
    int64_t now = nsq__mono_ms();
    if (now < p->backoff_until_ms) {
        char why[512];
        snprintf(why, sizeof why, "%s (next attempt in %lldms; not sent)",
                 p->last_error, (long long)(p->backoff_until_ms - now));
        nsq__fail_waiting(p, p->last_error_code, why);
        return;
    }
    p->state = NSQ__RESOLVING;
    p->phase_started_ms = now;
    p->gai.data = p;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = uv_getaddrinfo(&p->loop, &p->gai, on_resolved, p->host, p->port,
                            &hints);
    if (rc != 0) {
        char why[512];
        snprintf(why, sizeof why, "resolve %.200s: %s", p->host,
                 uv_strerror(rc));
        nsq__conn_fail(p, NSQ_ERR_CONNECT, why);
    }
    nsq__arm_tick(p);
}
