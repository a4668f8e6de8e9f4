/* TLS through memory BIOs (tls.c).  The context is made once per producer;
 * a session per connection, used on the loop thread only. */
#ifndef NSQ_PRODUCER_TLS_H
#define NSQ_PRODUCER_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

typedef struct nsq__client_tls nsq__client_tls_t;

/* An SSL_CTX for conf (CA, verification, client certificate, minimum
 * version), or NULL with the reason in errstr. */
void *nsq__client_tls_ctx_new(const nsq_conf_t *conf, char *errstr,
                              size_t errlen);
void nsq__client_tls_ctx_free(void *ctx);

/* A client session that verifies host (or tls_server_name). */
nsq__client_tls_t *nsq__client_tls_new(void *ctx, const nsq_conf_t *conf,
                                       const char *host, char *why, size_t len);
void nsq__client_tls_free(nsq__client_tls_t *t);
/* Bytes from the network. */
bool nsq__client_tls_feed(nsq__client_tls_t *t, const void *data, size_t len);
/* 1 done, 0 needs more bytes, -1 failed (why says how). */
int nsq__client_tls_handshake(nsq__client_tls_t *t, char *why, size_t len);
/* Appends every byte that can be decrypted now; 0, or -1 (why). */
int nsq__client_tls_read(nsq__client_tls_t *t, nsq_buf_t *out, char *why,
                         size_t len);
/* Encrypts plain bytes into the pending output. */
bool nsq__client_tls_write(nsq__client_tls_t *t, const void *data, size_t len,
                           char *why, size_t whylen);
/* Moves the bytes waiting to be sent into out. */
bool nsq__client_tls_take_output(nsq__client_tls_t *t, nsq_buf_t *out);

#endif
