/*
 * The test broker's TLS: the server context built from the --tls-* options,
 * and one connection's TLS layer over memory BIOs.  The connection keeps
 * its own socket and poll loop (heartbeats, the read deadline, faults and
 * stop work as without TLS); this layer only turns wire bytes into plain
 * bytes and back.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testd_internal.h"

struct nsq__tls {
    SSL *ssl;
    BIO *rbio; /* wire bytes from the client, read by OpenSSL */
    BIO *wbio; /* wire bytes OpenSSL wants sent */
};

/* OpenSSL's queued error, as text, after what failed. */
static void ssl_errstr(char *errstr, size_t errlen, const char *what,
                       const char *arg)
{
    char reason[256];
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    else
        snprintf(reason, sizeof reason, "unknown error");
    ERR_clear_error();
    snprintf(errstr, errlen, "%s %s: %s", what, arg, reason);
}

static bool parse_min_version(const char *s, int *out)
{
    static const struct {
        const char *name;
        int version;
    } versions[] = {{"tls1.0", TLS1_VERSION},
                    {"tls1.1", TLS1_1_VERSION},
                    {"tls1.2", TLS1_2_VERSION},
                    {"tls1.3", TLS1_3_VERSION}};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        if (strcmp(s, versions[i].name) == 0) {
            *out = versions[i].version;
            return true;
        }
    }
    return false;
}

bool nsq__tls_ctx_new(nsq_testd_t *t, char *errstr, size_t errlen)
{
    const nsq_testd_opts_t *o = &t->opts;
    bool have_cert = o->tls_cert && *o->tls_cert && o->tls_key && *o->tls_key;
    const char *policy = o->tls_client_auth ? o->tls_client_auth : "none";
    int verify;
    if (strcmp(policy, "none") == 0) {
        verify = SSL_VERIFY_NONE;
    } else if (strcmp(policy, "request") == 0) {
        verify = SSL_VERIFY_PEER;
    } else if (strcmp(policy, "require") == 0) {
        verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    } else {
        snprintf(errstr, errlen,
                 "tls_client_auth must be none, request or require, not %s",
                 policy);
        return false;
    }
    int min_version = TLS1_2_VERSION;
    if (o->tls_min_version &&
        !parse_min_version(o->tls_min_version, &min_version)) {
        snprintf(errstr, errlen,
                 "tls_min_version must be tls1.0 .. tls1.3, not %s",
                 o->tls_min_version);
        return false;
    }
    if (!have_cert) {
        /* Like nsqd, the TLS settings need a certificate to mean anything;
         * a half-configured broker is a mistake worth reporting. */
        if ((o->tls_cert && *o->tls_cert) || (o->tls_key && *o->tls_key)) {
            snprintf(errstr, errlen, "tls_cert and tls_key go together");
            return false;
        }
        if (o->tls_required || verify != SSL_VERIFY_NONE) {
            snprintf(errstr, errlen,
                     "cannot require TLS or client certificates without "
                     "tls_cert and tls_key");
            return false;
        }
        return true;
    }
    if (verify != SSL_VERIFY_NONE && !(o->tls_root_ca && *o->tls_root_ca)) {
        snprintf(errstr, errlen,
                 "tls_client_auth %s needs tls_root_ca to verify with", policy);
        return false;
    }

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_errstr(errstr, errlen, "SSL_CTX_new", "");
        return false;
    }
    SSL_CTX_set_min_proto_version(ctx, min_version);
    /* Old versions are below OpenSSL 3's default security level; a broker
     * asked for them should really speak them. */
    if (min_version < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    /* No resumption: every test connection does a full handshake. */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert) != 1) {
        ssl_errstr(errstr, errlen, "cannot load tls_cert", o->tls_cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key, SSL_FILETYPE_PEM) != 1) {
        ssl_errstr(errstr, errlen, "cannot load tls_key", o->tls_key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_errstr(errstr, errlen, "tls_key does not match", o->tls_cert);
        goto fail;
    }
    if (o->tls_root_ca && *o->tls_root_ca) {
        if (SSL_CTX_load_verify_locations(ctx, o->tls_root_ca, NULL) != 1) {
            ssl_errstr(errstr, errlen, "cannot load tls_root_ca",
                       o->tls_root_ca);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_root_ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, verify, NULL);
    t->tls_ctx = ctx;
    return true;
fail:
    SSL_CTX_free(ctx);
    return false;
}

void nsq__tls_ctx_free(nsq_testd_t *t)
{
    SSL_CTX_free(t->tls_ctx);
    t->tls_ctx = NULL;
}

nsq__tls_t *nsq__tls_new(SSL_CTX *ctx)
{
    nsq__tls_t *tls = calloc(1, sizeof *tls);
    if (!tls)
        return NULL;
    tls->ssl = SSL_new(ctx);
    tls->rbio = BIO_new(BIO_s_mem());
    tls->wbio = BIO_new(BIO_s_mem());
    if (!tls->ssl || !tls->rbio || !tls->wbio) {
        BIO_free(tls->rbio);
        BIO_free(tls->wbio);
        SSL_free(tls->ssl);
        free(tls);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "no bytes yet", not end of file. */
    BIO_set_mem_eof_return(tls->rbio, -1);
    SSL_set_bio(tls->ssl, tls->rbio, tls->wbio);
    SSL_set_accept_state(tls->ssl);
    return tls;
}

void nsq__tls_free(nsq__tls_t *tls)
{
    if (!tls)
        return;
    SSL_free(tls->ssl); /* frees both BIOs */
    free(tls);
    /* This thread's error queue must not carry over to the next client. */
    ERR_clear_error();
}

bool nsq__tls_feed(nsq__tls_t *tls, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        int n = len > INT32_MAX ? INT32_MAX : (int)len;
        int w = BIO_write(tls->rbio, p, n);
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

int nsq__tls_handshake(nsq__tls_t *tls)
{
    int rc = SSL_do_handshake(tls->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(tls->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    return -1;
}

int nsq__tls_read(nsq__tls_t *tls, nsq_buf_t *out)
{
    for (;;) {
        if (nsq_buf_reserve(out, 16384) != NSQ_OK)
            return -1;
        size_t room = out->cap - out->len;
        int want = room > INT32_MAX ? INT32_MAX : (int)room;
        int n = SSL_read(tls->ssl, out->data + out->len, want);
        if (n > 0) {
            out->len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(tls->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN ? 1 : -1;
    }
}

bool nsq__tls_write(nsq__tls_t *tls, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        /* A memory BIO takes everything, so SSL_write never waits. */
        int n = len > (1u << 30) ? (1 << 30) : (int)len;
        int w = SSL_write(tls->ssl, p, n);
        if (w <= 0) {
            ERR_clear_error();
            return false;
        }
        p += w;
        len -= (size_t)w;
    }
    return true;
}

bool nsq__tls_take_wire(nsq__tls_t *tls, nsq_buf_t *out)
{
    size_t pending = BIO_ctrl_pending(tls->wbio);
    if (!pending)
        return true;
    if (nsq_buf_reserve(out, pending) != NSQ_OK)
        return false;
    while (pending) {
        int n = pending > INT32_MAX ? INT32_MAX : (int)pending;
        int r = BIO_read(tls->wbio, out->data + out->len, n);
        if (r <= 0)
            return false;
        out->len += (size_t)r;
        pending -= (size_t)r;
    }
    return true;
}

void nsq__tls_shutdown(nsq__tls_t *tls)
{
    /* Only the close_notify alert is wanted; the client's answer is not. */
    if (SSL_is_init_finished(tls->ssl))
        SSL_shutdown(tls->ssl);
    ERR_clear_error();
}
