/*
 * Loads the conformance vectors (the JSON files in
 * tests/conformance/nsqd-1.3.0) into plain C structures: every hex field
 * decoded, send_parts assembled.  Used by the codec's conformance suite and by
 * the test broker's replay.
 */
#ifndef NSQ_TEST_VECTORS_H
#define NSQ_TEST_VECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vec_bytes {
    unsigned char *data;
    size_t len;
} vec_bytes_t;

typedef struct vec_frame {
    int32_t type;
    uint32_t size;
    vec_bytes_t data;
    /* [start, end) ranges of data that differ between runs */
    size_t nvar;
    size_t var[4][2];
} vec_frame_t;

typedef struct vec_step {
    vec_bytes_t send;       /* what went on the wire (maybe compressed) */
    vec_bytes_t send_plain; /* the command bytes (send unless compressed) */
    bool compressed_send;
    char action[32];          /* "", "tls_handshake", "shutdown_write" */
    char transport[8];        /* "tcp" or "tls" */
    bool side_publish;        /* a publish on a second connection happened */
    vec_bytes_t side_send;    /* ... with these bytes */
    size_t side_nframes;      /* ... answered by this many frames */
    vec_bytes_t recv;         /* as received */
    vec_bytes_t recv_decoded; /* the frame stream (recv unless compressed) */
    char recv_encoding[16];
    /* plain+snappy / plain+deflate: where the compressed stream starts in
     * recv (0 otherwise) */
    size_t recv_compressed_offset;
    size_t nframes;
    vec_frame_t *frames;
    bool server_closed;
    /* send_substitutions: send[dst) comes from frames of an earlier step */
    size_t nsubst;
    struct {
        size_t dst_start, dst_end, from_step, from_frame, src_start;
    } subst[2];
} vec_step_t;

typedef struct vec_case {
    char name[96];
    char group[24];
    char topic[96];
    bool auth_enabled; /* nsqd ran with --auth-http-address */
    bool tls_required; /* nsqd ran with --tls-required */
    bool tls_enabled;  /* nsqd had a certificate */
    size_t nsteps;
    vec_step_t *steps;
} vec_case_t;

/* Loads one file; returns NULL and writes a reason to err on failure. */
vec_case_t *vec_load(const char *path, char *err, size_t errlen);
void vec_free(vec_case_t *c);

/* Lists the *.json files of dir, sorted; returns the count (or -1). */
int vec_list(const char *dir, char ***paths);
void vec_list_free(char **paths, int n);

/* Decodes a hex string into a new buffer (free it) of *len bytes; NULL on
 * an odd length, a non-hex digit or no memory. */
unsigned char *vec_unhex(const char *hex, size_t *len);

/* Whether frame data a matches vector frame f outside its variable ranges. */
bool vec_frame_matches(const vec_frame_t *f, int32_t type, const void *data,
                       size_t len);

#endif
