#include "certs.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const cert_files[] = {
    "ca.pem",         "server.pem",    "server.key",    "expired.pem",
    "expired.key",    "wronghost.pem", "wronghost.key", "selfsigned.pem",
    "selfsigned.key", "client.pem",    "client.key",
};

const char *certs_path(char *out, size_t outlen, const char *dir,
                       const char *name)
{
    snprintf(out, outlen, "%s/%s", dir, name);
    return out;
}

void certs_remove(const char *dir)
{
    char path[4096];
    for (size_t i = 0; i < sizeof cert_files / sizeof cert_files[0]; i++)
        unlink(certs_path(path, sizeof path, dir, cert_files[i]));
    rmdir(dir);
}

/* Records OpenSSL's reason for what failed; always false. */
static bool fail(char *err, size_t errlen, const char *what)
{
    char reason[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, reason);
    return false;
}

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

/* Adds one X.509v3 extension, issued by issuer (x itself if self-signed). */
static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1;
}

typedef struct cert_spec {
    const char *cn;
    const char *san;      /* NULL: none */
    const char *eku;      /* extendedKeyUsage, NULL: none */
    bool ca;              /* a CA certificate */
    long not_before_days; /* relative to now */
    long not_after_days;
} cert_spec_t;

/*
 * Makes a certificate for key, signed by issuer_key with issuer_cert as
 * the issuer (both NULL: self-signed).
 */
static X509 *make_cert(const cert_spec_t *spec, EVP_PKEY *key,
                       X509 *issuer_cert, EVP_PKEY *issuer_key, long serial)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    bool ok =
        X509_set_version(x, 2) == 1 &&
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1 &&
        X509_gmtime_adj(X509_getm_notBefore(x),
                        spec->not_before_days * 86400L) != NULL &&
        X509_gmtime_adj(X509_getm_notAfter(x), spec->not_after_days * 86400L) !=
            NULL &&
        X509_set_pubkey(x, key) == 1 &&
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   (const unsigned char *)"nsqpub tests", -1,
                                   -1, 0) == 1 &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   (const unsigned char *)spec->cn, -1, -1,
                                   0) == 1 &&
        X509_set_issuer_name(x, issuer_cert ? X509_get_subject_name(issuer_cert)
                                            : name) == 1;
    X509 *issuer = issuer_cert ? issuer_cert : x;
    if (ok && spec->ca)
        ok = add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") &&
             add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    else if (ok)
        ok = add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(x, issuer, NID_key_usage,
                     "critical,digitalSignature,keyEncipherment");
    if (ok)
        ok = add_ext(x, issuer, NID_subject_key_identifier, "hash") &&
             add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
    if (ok && spec->san)
        ok = add_ext(x, issuer, NID_subject_alt_name, spec->san);
    if (ok && spec->eku)
        ok = add_ext(x, issuer, NID_ext_key_usage, spec->eku);
    if (ok)
        ok = X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static bool write_cert(const char *dir, const char *name, X509 *x)
{
    char path[4096];
    FILE *f = fopen(certs_path(path, sizeof path, dir, name), "w");
    if (!f)
        return false;
    bool ok = PEM_write_X509(f, x) == 1;
    return fclose(f) == 0 && ok;
}

static bool write_key(const char *dir, const char *name, EVP_PKEY *key)
{
    char path[4096];
    certs_path(path, sizeof path, dir, name);
    /* Private keys are readable by their owner only, as a tool would want
     * them, even though these are throwaway test keys. */
    mode_t old = umask(077);
    FILE *f = fopen(path, "w");
    umask(old);
    if (!f)
        return false;
    bool ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    return fclose(f) == 0 && ok;
}

/* One leaf: a new key, a certificate, both files. */
static bool make_leaf(const char *dir, const char *base,
                      const cert_spec_t *spec, X509 *ca, EVP_PKEY *ca_key,
                      long serial, char *err, size_t errlen)
{
    char pem[64], keyname[64];
    snprintf(pem, sizeof pem, "%s.pem", base);
    snprintf(keyname, sizeof keyname, "%s.key", base);
    EVP_PKEY *key = new_key();
    if (!key)
        return fail(err, errlen, "EC key");
    X509 *x = make_cert(spec, key, ca, ca_key, serial);
    bool ok = x != NULL;
    if (!ok)
        fail(err, errlen, base);
    if (ok && !(write_cert(dir, pem, x) && write_key(dir, keyname, key))) {
        snprintf(err, errlen, "cannot write %s/%s", dir, pem);
        ok = false;
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

bool certs_make(const char *dir, char *err, size_t errlen)
{
    static const cert_spec_t ca_spec = {
        "nsqpub test CA", NULL, NULL, true, -1, 30};
    static const cert_spec_t server = {
        "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", false, -1, 30};
    static const cert_spec_t expired = {
        "localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth", false, -10,
        -1};
    static const cert_spec_t wronghost = {
        "wrong.example", "DNS:wrong.example", "serverAuth", false, -1, 30};
    static const cert_spec_t client = {
        "nsqpub-test-client", NULL, "clientAuth", false, -1, 30};
    EVP_PKEY *ca_key = new_key();
    if (!ca_key)
        return fail(err, errlen, "EC key");
    X509 *ca = make_cert(&ca_spec, ca_key, NULL, NULL, 1);
    bool ok = ca != NULL;
    if (!ok)
        fail(err, errlen, "CA certificate");
    if (ok && !write_cert(dir, "ca.pem", ca)) {
        snprintf(err, errlen, "cannot write %s/ca.pem", dir);
        ok = false;
    }
    ok = ok && make_leaf(dir, "server", &server, ca, ca_key, 2, err, errlen) &&
         make_leaf(dir, "expired", &expired, ca, ca_key, 3, err, errlen) &&
         make_leaf(dir, "wronghost", &wronghost, ca, ca_key, 4, err, errlen) &&
         make_leaf(dir, "selfsigned", &server, NULL, NULL, 5, err, errlen) &&
         make_leaf(dir, "client", &client, ca, ca_key, 6, err, errlen);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return ok;
}
