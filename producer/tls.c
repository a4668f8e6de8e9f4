/*
 * TLS for the producer: OpenSSL driven through memory BIOs, so the libuv
 * connection keeps doing all the I/O.  Bytes from the socket go into the
 * read BIO; what OpenSSL wants to send collects in the write BIO and the
 * router writes it.  Verification failures, handshake failures and
 * expired certificates come back as distinct, readable reasons.
 */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls.h"

struct nsq__client_tls {
    SSL *ssl;
    BIO *rbio; /* network -> OpenSSL */
    BIO *wbio; /* OpenSSL -> network */
    bool verify;
};

/* The reason of the last OpenSSL error, or fallback. */
static void ssl_reason(char *why, size_t len, const char *what,
                       const char *fallback)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(why, len, "%s: %s", what, e ? buf : fallback);
    ERR_clear_error();
}

static int version_of(const char *name)
{
    if (strcmp(name, "tls1.0") == 0)
        return TLS1_VERSION;
    if (strcmp(name, "tls1.1") == 0)
        return TLS1_1_VERSION;
    if (strcmp(name, "tls1.3") == 0)
        return TLS1_3_VERSION;
    return TLS1_2_VERSION;
}

void *nsq__client_tls_ctx_new(const nsq_conf_t *conf, char *errstr,
                              size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_reason(errstr, errlen, "TLS", "cannot create a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, version_of(conf->tls_min_version));
    if (conf->tls_insecure_skip_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        const char *ca = conf->tls_root_ca_file;
        int ok = ca && *ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
        if (!ok) {
            char what[512];
            snprintf(what, sizeof what, "tls_root_ca_file %.400s",
                     ca && *ca ? ca : "(the system's)");
            ssl_reason(errstr, errlen, what, "cannot load");
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    if (conf->tls_cert && *conf->tls_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key, SSL_FILETYPE_PEM) !=
                1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            char what[512];
            snprintf(what, sizeof what, "tls_cert %.200s / tls_key %.200s",
                     conf->tls_cert, conf->tls_key);
            ssl_reason(errstr, errlen, what, "cannot load");
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

void nsq__client_tls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

nsq__client_tls_t *nsq__client_tls_new(void *ctx, const nsq_conf_t *conf,
                                       const char *host, char *why, size_t len)
{
    nsq__client_tls_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(why, len, "TLS: out of memory");
        return NULL;
    }
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        ssl_reason(why, len, "TLS", "cannot create a session");
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    const char *name = conf->tls_server_name && *conf->tls_server_name
                           ? conf->tls_server_name
                           : host;
    t->verify = !conf->tls_insecure_skip_verify;
    bool ip = is_ip(name);
    if (!ip)
        SSL_set_tlsext_host_name(t->ssl, name);
    if (t->verify) {
        /* The certificate must name the host we meant to reach. */
        X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
                    : X509_VERIFY_PARAM_set1_host(param, name, 0);
        if (!ok) {
            ssl_reason(why, len, "TLS", "cannot set the expected host name");
            nsq__client_tls_free(t);
            return NULL;
        }
    }
    return t;
}

void nsq__client_tls_free(nsq__client_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

bool nsq__client_tls_feed(nsq__client_tls_t *t, const void *data, size_t len)
{
    while (len) {
        int n =
            BIO_write(t->rbio, data, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n <= 0)
            return false;
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return true;
}

/* Turns a failed handshake into the most precise reason available. */
static void handshake_reason(nsq__client_tls_t *t, char *why, size_t len)
{
    long v = SSL_get_verify_result(t->ssl);
    if (t->verify && v != X509_V_OK) {
        snprintf(why, len, "TLS: certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    ssl_reason(why, len, "TLS handshake failed", "the connection ended");
}

int nsq__client_tls_handshake(nsq__client_tls_t *t, char *why, size_t len)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    handshake_reason(t, why, len);
    return -1;
}

int nsq__client_tls_read(nsq__client_tls_t *t, nsq_buf_t *out, char *why,
                         size_t len)
{
    for (;;) {
        if (nsq_buf_reserve(out, 16384) != NSQ_OK) {
            snprintf(why, len, "TLS: out of memory");
            return -1;
        }
        ERR_clear_error();
        int n = SSL_read(t->ssl, out->data + out->len, 16384);
        if (n > 0) {
            out->len += (size_t)n;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            snprintf(why, len, "TLS: nsqd closed the TLS session");
            return 1;
        }
        ssl_reason(why, len, "TLS", "cannot read");
        return -1;
    }
}

bool nsq__client_tls_write(nsq__client_tls_t *t, const void *data, size_t len,
                           char *why, size_t whylen)
{
    while (len) {
        ERR_clear_error();
        int chunk = len > 1 << 30 ? 1 << 30 : (int)len;
        int n = SSL_write(t->ssl, data, chunk);
        if (n <= 0) {
            ssl_reason(why, whylen, "TLS", "cannot write");
            return false;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return true;
}

bool nsq__client_tls_take_output(nsq__client_tls_t *t, nsq_buf_t *out)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return true;
    if (nsq_buf_reserve(out, n) != NSQ_OK)
        return false;
    int got = BIO_read(t->wbio, out->data + out->len, (int)n);
    if (got > 0)
        out->len += (size_t)got;
    return got == (int)n;
}
