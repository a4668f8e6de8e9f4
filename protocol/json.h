/*
 * Private to identify.c and json.c: the subset of Go's encoding/json that
 * IDENTIFY and AUTH need, a writer of flat objects and a decoder of an object
 * into a table of fields.
 */
#ifndef NSQ_JSON_H
#define NSQ_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsq/protocol.h"

/*
 * A JSON object writer with a sticky error: each call does nothing once an
 * append has failed, and nsq__json_end reports the first failure.
 */
typedef struct nsq__json_writer {
    nsq_buf_t *b;
    nsq_err_t err;
    bool open; /* the '{' is written */
} nsq__json_writer_t;

typedef enum nsq__json_type {
    NSQ__JSON_STRING,
    NSQ__JSON_INT,
    NSQ__JSON_BOOL,
} nsq__json_type_t;

/* One struct field the decoder fills; names are lower-case ASCII. */
typedef struct nsq__json_field {
    const char *name;
    nsq__json_type_t type;
    int64_t min, max; /* NSQ__JSON_INT: the range of the Go type */
} nsq__json_field_t;

/* A decoded field.  Strings stay escaped until the caller decodes them. */
typedef struct nsq__json_value {
    bool set;
    const unsigned char
        *str; /* NSQ__JSON_STRING: the bytes between the quotes */
    size_t str_len;
    int64_t num;
    bool flag;
} nsq__json_value_t;

/* Appends bytes as they are (no key, no quoting). */
void nsq__json_put_raw(nsq__json_writer_t *w, const void *data, size_t len);

/* Append "key":value, opening the object before the first key.  A NULL
 * string is written as "". */
void nsq__json_put_int(nsq__json_writer_t *w, const char *key, int64_t v);
void nsq__json_put_bool(nsq__json_writer_t *w, const char *key, bool v);
void nsq__json_put_string(nsq__json_writer_t *w, const char *key,
                          const char *s);

/* Closes the object; returns the first failure of the writer, or NSQ_OK. */
nsq_err_t nsq__json_end(nsq__json_writer_t *w);

/* Decodes a JSON object into count fields and values, as Go's json.Unmarshal
 * does into a struct.  Returns 0, or -1 with the reason in err. */
int nsq__json_decode_object(const void *data, size_t len,
                            const nsq__json_field_t *fields,
                            nsq__json_value_t *values, size_t count,
                            bool null_ok, char *err, size_t errlen);

/* Decodes a string value's escaped bytes into out (when not NULL); returns
 * the decoded length. */
size_t nsq__json_string_decode(const unsigned char *s, size_t n, char *out);

#endif
