/*
 * Test certificates, made at test time with OpenSSL (nothing is kept in
 * the repository).  EC P-256 keys; everything but selfsigned.pem is signed
 * by the CA in ca.pem.
 */
#ifndef NSQ_TEST_CERTS_H
#define NSQ_TEST_CERTS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Writes into dir (which must exist, e.g. from mkdtemp):
 *   ca.pem                          the CA certificate
 *   server.pem, server.key          CN and SAN localhost, SAN IP 127.0.0.1
 *   expired.pem, expired.key        like server, but notAfter is past
 *   wronghost.pem, wronghost.key    CN and SAN DNS wrong.example
 *   selfsigned.pem, selfsigned.key  like server, signed by its own key
 *   client.pem, client.key          CN nsqpub-test-client, clientAuth
 * false with the reason in err on failure.
 */
bool certs_make(const char *dir, char *err, size_t errlen);

/* Removes the files certs_make wrote, then dir itself. */
void certs_remove(const char *dir);

/* dir + "/" + name into out (size outlen); out. */
const char *certs_path(char *out, size_t outlen, const char *dir,
                       const char *name);

#endif
