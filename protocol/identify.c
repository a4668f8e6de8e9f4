/*
 * IDENTIFY and AUTH: the client's IDENTIFY command and the parsers of the
 * broker's answers, and the broker's side of IDENTIFY as nsqd 1.3 does it.
 *
 * The JSON bodies are read by a small decoder of our own rather than cJSON.
 * nsqd and go-nsq decode with Go's encoding/json into structs, and the test
 * broker must accept and reject exactly what nsqd does: Go rejects 1000.0 or
 * 1e3 for an int field, leading zeros, raw control characters and a BOM,
 * accepts lone surrogate escapes (as U+FFFD), matches keys case-insensitively
 * and prints integers past 2^53 exactly in its error texts.  cJSON keeps
 * numbers as doubles and parses more loosely, so it could not tell these
 * apart.  Nothing decoded is used before the whole input has been read
 * without error, as Go validates all of it before it stores a field.
 *
 * The JSON we write follows Go's json.Marshal too (no spaces, its string
 * escaping) in the key order of the capture, so the bytes equal nsqd's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nsq/protocol.h"

/* Go's encoding/json refuses input nested deeper than this. */
#define JSON_MAX_DEPTH 10000
#define RUNE_ERROR 0xFFFDu

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Decodes one rune the way Go's utf8.DecodeRune does: a byte that does not
 * start a well-formed sequence (overlong forms, surrogates and values past
 * U+10FFFF included) gives U+FFFD and a size of 1.
 */
static uint32_t utf8_decode(const unsigned char *p, size_t n, size_t *size)
{
    unsigned char c = p[0];
    *size = 1;
    if (c < 0x80)
        return c;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need;
    uint32_t r;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
        r = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        r = c & 0x0Fu;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        r = c & 0x07u;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return RUNE_ERROR;
    }
    if (n < need || p[1] < lo || p[1] > hi)
        return RUNE_ERROR;
    r = (r << 6) | (p[1] & 0x3Fu);
    for (size_t i = 2; i < need; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return RUNE_ERROR;
        r = (r << 6) | (p[i] & 0x3Fu);
    }
    *size = need;
    return r;
}

/* Writes r as UTF-8 to out (when not NULL); returns the byte count. */
static size_t utf8_encode(uint32_t r, char *out)
{
    unsigned char b[4];
    size_t n;
    if (r < 0x80) {
        b[0] = (unsigned char)r;
        n = 1;
    } else if (r < 0x800) {
        b[0] = (unsigned char)(0xC0 | (r >> 6));
        b[1] = (unsigned char)(0x80 | (r & 0x3F));
        n = 2;
    } else if (r < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (r >> 12));
        b[1] = (unsigned char)(0x80 | ((r >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (r & 0x3F));
        n = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (r >> 18));
        b[1] = (unsigned char)(0x80 | ((r >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((r >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (r & 0x3F));
        n = 4;
    }
    if (out)
        memcpy(out, b, n);
    return n;
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                              */
/* ------------------------------------------------------------------------ */

/*
 * A JSON object writer with a sticky error: each call does nothing once an
 * append has failed, and jw_end reports the first failure.
 */
typedef struct jwriter {
    nsq_buf_t *b;
    nsq_err_t err;
    bool open; /* the '{' is written */
} jwriter_t;

static void jw_raw(jwriter_t *w, const void *data, size_t len)
{
    if (w->err == NSQ_OK)
        w->err = nsq_buf_append(w->b, data, len);
}

static void jw_key(jwriter_t *w, const char *key)
{
    jw_raw(w, w->open ? ",\"" : "{\"", 2);
    w->open = true;
    jw_raw(w, key, strlen(key));
    jw_raw(w, "\":", 2);
}

static void jw_int(jwriter_t *w, const char *key, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    jw_key(w, key);
    jw_raw(w, num, (size_t)n);
}

static void jw_bool(jwriter_t *w, const char *key, bool v)
{
    jw_key(w, key);
    jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

/*
 * Writes s as a JSON string escaped like Go's json.Marshal: HTML-safe
 * (<, > and & as \u00XX), control characters other than \n \r \t as \u00XX,
 * invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.  NULL is "".
 */
static void jw_string(jwriter_t *w, const char *key, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), start = 0, i = 0;
    jw_key(w, key);
    jw_raw(w, "\"", 1);
    while (i < n) {
        unsigned char c = p[i];
        char esc[8];
        size_t esc_len = 0, size = 1;
        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                esc[0] = '\\';
                esc[1] = (char)c;
                esc_len = 2;
            } else if (c == '\n' || c == '\r' || c == '\t') {
                esc[0] = '\\';
                esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
                esc_len = 2;
            } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xF];
                esc_len = 6;
            }
        } else {
            uint32_t r = utf8_decode(p + i, n - i, &size);
            if (r == RUNE_ERROR && size == 1) {
                memcpy(esc, "\\ufffd", 6);
                esc_len = 6;
            } else if (r == 0x2028 || r == 0x2029) {
                memcpy(esc, "\\u202", 5);
                esc[5] = hex[r & 0xF];
                esc_len = 6;
            }
        }
        if (esc_len) {
            jw_raw(w, p + start, i - start);
            jw_raw(w, esc, esc_len);
            start = i + size;
        }
        i += size;
    }
    jw_raw(w, p + start, n - start);
    jw_raw(w, "\"", 1);
}

static nsq_err_t jw_end(jwriter_t *w)
{
    jw_raw(w, "}", 1);
    return w->err;
}

/* ------------------------------------------------------------------------ */
/* JSON input                                                               */
/* ------------------------------------------------------------------------ */

typedef enum jtype {
    JT_STRING,
    JT_INT,
    JT_BOOL,
} jtype_t;

/* One struct field the decoder fills; names are lower-case ASCII. */
typedef struct jfield {
    const char *name;
    jtype_t type;
    int64_t min, max; /* JT_INT: the range of the Go type */
} jfield_t;

/* A decoded field.  Strings stay escaped until the caller decodes them. */
typedef struct jvalue {
    bool set;
    const unsigned char *str; /* JT_STRING: the bytes between the quotes */
    size_t str_len;
    int64_t num;
    bool flag;
} jvalue_t;

typedef struct jcursor {
    const unsigned char *base, *p, *end;
    char *err;
    size_t errlen;
} jcursor_t;

/* Records why decoding failed; returns -1 for the caller to return. */
static int jfail(jcursor_t *c, const char *what)
{
    if (c->err && c->errlen) {
        size_t at = (size_t)(c->p - c->base);
        const char *sep = *what ? " " : "";
        if (c->p >= c->end)
            snprintf(c->err, c->errlen, "unexpected end of JSON input");
        else if (*c->p >= 0x20 && *c->p < 0x7F)
            snprintf(c->err, c->errlen, "invalid character '%c'%s%s at %zu",
                     *c->p, sep, what, at);
        else
            snprintf(c->err, c->errlen, "invalid byte 0x%02x%s%s at %zu", *c->p,
                     sep, what, at);
    }
    return -1;
}

static int jfail_field(jcursor_t *c, const jfield_t *f, const char *what)
{
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "field %s: %s", f->name, what);
    return -1;
}

/* Go's JSON whitespace is these four bytes only. */
static void skip_ws(jcursor_t *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Scans a string at c->p (the opening quote); s and n get its contents. */
static int scan_string(jcursor_t *c, const unsigned char **s, size_t *n)
{
    c->p++;
    const unsigned char *start = c->p;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            *s = start;
            *n = (size_t)(c->p - start);
            c->p++;
            return 0;
        }
        if (ch < 0x20)
            return jfail(c, "in string literal");
        if (ch == '\\') {
            c->p++;
            if (c->p >= c->end)
                return jfail(c, "in string escape code");
            ch = *c->p;
            if (ch == 'u') {
                for (int i = 0; i < 4; i++) {
                    c->p++;
                    if (c->p >= c->end || !is_hex(*c->p))
                        return jfail(c, "in \\u hexadecimal character escape");
                }
            } else if (!strchr("\"\\/bfnrt", ch) || ch == '\0') {
                return jfail(c, "in string escape code");
            }
        }
        c->p++;
    }
    return jfail(c, "in string literal");
}

/* Scans a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(jcursor_t *c, const unsigned char **s, size_t *n)
{
    const unsigned char *start = c->p;
    if (*c->p == '-')
        c->p++;
    if (c->p >= c->end || !is_digit(*c->p))
        return jfail(c, "in numeric literal");
    if (*c->p == '0')
        c->p++;
    else
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (c->p >= c->end || !is_digit(*c->p))
            return jfail(c, "after decimal point in numeric literal");
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || !is_digit(*c->p))
            return jfail(c, "in exponent of numeric literal");
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    }
    *s = start;
    *n = (size_t)(c->p - start);
    return 0;
}

/* Scans true, false or null (the first byte tells which is expected). */
static int scan_literal(jcursor_t *c)
{
    const char *word = *c->p == 't' ? "true" : *c->p == 'f' ? "false" : "null";
    for (size_t i = 0; word[i]; i++, c->p++)
        if (c->p >= c->end || *c->p != (unsigned char)word[i])
            return jfail(c, "in literal");
    return 0;
}

/* Scans "key" and the colon after it, leaving c->p at the value. */
static int scan_key(jcursor_t *c, const unsigned char **s, size_t *n)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"')
        return jfail(c, "looking for beginning of object key string");
    if (scan_string(c, s, n) < 0)
        return -1;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':')
        return jfail(c, "after object key");
    c->p++;
    skip_ws(c);
    return 0;
}

/*
 * Validates one value of any kind and steps over it.  depth counts the
 * containers already open around it.  Iterative, with one bit a level, so
 * deep nesting costs no stack.
 */
static int skip_value(jcursor_t *c, int depth)
{
    unsigned char is_obj[JSON_MAX_DEPTH / 8 + 1];
    int top = 0;
    const unsigned char *s;
    size_t n;
    for (;;) {
        /* A value is expected here. */
        skip_ws(c);
        if (c->p >= c->end)
            return jfail(c, "");
        unsigned char ch = *c->p;
        if (ch == '{' || ch == '[') {
            if (depth + top + 1 > JSON_MAX_DEPTH) {
                if (c->err && c->errlen)
                    snprintf(c->err, c->errlen, "exceeded max depth at %zu",
                             (size_t)(c->p - c->base));
                return -1;
            }
            bool obj = ch == '{';
            if (obj)
                is_obj[top / 8] |= (unsigned char)(1u << (top % 8));
            else
                is_obj[top / 8] &= (unsigned char)~(1u << (top % 8));
            top++;
            c->p++;
            skip_ws(c);
            if (c->p < c->end && *c->p == (obj ? '}' : ']')) {
                c->p++;
                top--;
            } else {
                if (obj && scan_key(c, &s, &n) < 0)
                    return -1;
                continue;
            }
        } else if (ch == '"') {
            if (scan_string(c, &s, &n) < 0)
                return -1;
        } else if (ch == '-' || is_digit(ch)) {
            if (scan_number(c, &s, &n) < 0)
                return -1;
        } else if (ch == 't' || ch == 'f' || ch == 'n') {
            if (scan_literal(c) < 0)
                return -1;
        } else {
            return jfail(c, "looking for beginning of value");
        }
        /* A value ended: close containers until one continues. */
        for (;;) {
            if (top == 0)
                return 0;
            bool obj = (is_obj[(top - 1) / 8] >> ((top - 1) % 8)) & 1u;
            skip_ws(c);
            if (c->p >= c->end)
                return jfail(c, "");
            if (*c->p == ',') {
                c->p++;
                if (obj && scan_key(c, &s, &n) < 0)
                    return -1;
                break;
            }
            if (*c->p != (obj ? '}' : ']'))
                return jfail(c, obj ? "after object key:value pair"
                                    : "after array element");
            c->p++;
            top--;
        }
    }
}

static int hex_value(unsigned char c)
{
    if (c <= '9')
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* Reads \uXXXX at p if it is there (Go's getu4); -1 otherwise. */
static int32_t read_u4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
        return -1;
    int32_t r = 0;
    for (int i = 2; i < 6; i++) {
        if (!is_hex(p[i]))
            return -1;
        r = r * 16 + hex_value(p[i]);
    }
    return r;
}

/*
 * Takes the next rune of a scanned string's contents as Go's unquote does:
 * escapes decoded, a surrogate pair joined, a lone surrogate or an invalid
 * UTF-8 byte turned into U+FFFD.
 */
static uint32_t next_rune(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    if (*p != '\\') {
        size_t size;
        uint32_t r = utf8_decode(p, (size_t)(end - p), &size);
        *pp = p + size;
        return r;
    }
    if (p[1] != 'u') {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        *pp = p + 2;
        return (unsigned char)to[strchr(from, p[1]) - from];
    }
    int32_t r = read_u4(p, end);
    *pp = p + 6;
    if (r < 0xD800 || r > 0xDFFF)
        return (uint32_t)r;
    int32_t r2 = read_u4(p + 6, end);
    if (r <= 0xDBFF && r2 >= 0xDC00 && r2 <= 0xDFFF) {
        *pp = p + 12;
        return 0x10000u + (((uint32_t)r - 0xD800u) << 10) +
               ((uint32_t)r2 - 0xDC00u);
    }
    return RUNE_ERROR;
}

/* Decodes a scanned string into out (when not NULL); returns its length. */
static size_t string_decode(const unsigned char *s, size_t n, char *out)
{
    const unsigned char *end = s + n;
    size_t len = 0;
    while (s < end)
        len += utf8_encode(next_rune(&s, end), out ? out + len : NULL);
    return len;
}

/*
 * Whether a key names the field, by Go's rule: an exact or case-insensitive
 * match, where Unicode simple folding also makes U+017F (long s) equal 's'
 * and U+212A (Kelvin sign) equal 'k'.
 */
static bool key_matches(const unsigned char *k, size_t n, const char *name)
{
    const unsigned char *end = k + n;
    for (; *name; name++) {
        if (k >= end)
            return false;
        uint32_t r = next_rune(&k, end);
        if (r >= 'A' && r <= 'Z')
            r += 'a' - 'A';
        else if (r == 0x17F)
            r = 's';
        else if (r == 0x212A)
            r = 'k';
        if (r != (unsigned char)*name)
            return false;
    }
    return k == end;
}

/*
 * Converts a number literal to an integer as Go's strconv.ParseInt does for
 * an int field: 1.0 and 1e3 are not integers.  Returns 0, or -1 with the
 * reason in *why.
 */
static int parse_int(const unsigned char *s, size_t n, int64_t min, int64_t max,
                     int64_t *out, const char **why)
{
    bool neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (size_t i = neg; i < n; i++) {
        if (!is_digit(s[i])) {
            *why = "not an integer";
            return -1;
        }
        unsigned d = s[i] - '0';
        if (v > (limit - d) / 10) {
            *why = "number out of range";
            return -1;
        }
        v = v * 10 + d;
    }
    /* Written so that -2^63 needs no signed overflow. */
    int64_t x = neg ? (v ? -(int64_t)(v - 1) - 1 : 0) : (int64_t)v;
    if (x < min || x > max) {
        *why = "number out of range";
        return -1;
    }
    *out = x;
    return 0;
}

/* Stores the value at c->p into the field, or fails on a type mismatch. */
static int decode_field(jcursor_t *c, const jfield_t *f, jvalue_t *v)
{
    const unsigned char *s;
    size_t n;
    const char *why = NULL;
    unsigned char ch = c->p < c->end ? *c->p : 0;
    /* null leaves a field as it was, as in Go's decoder. */
    if (ch == 'n')
        return scan_literal(c);
    switch (f->type) {
    case JT_STRING:
        if (ch != '"')
            break;
        if (scan_string(c, &s, &n) < 0)
            return -1;
        v->str = s;
        v->str_len = n;
        v->set = true;
        return 0;
    case JT_INT:
        if (ch != '-' && !is_digit(ch))
            break;
        if (scan_number(c, &s, &n) < 0)
            return -1;
        if (parse_int(s, n, f->min, f->max, &v->num, &why) < 0)
            return jfail_field(c, f, why);
        v->set = true;
        return 0;
    case JT_BOOL:
        if (ch != 't' && ch != 'f')
            break;
        v->flag = ch == 't';
        if (scan_literal(c) < 0)
            return -1;
        v->set = true;
        return 0;
    }
    if (skip_value(c, 1) < 0)
        return -1;
    return jfail_field(c, f,
                       f->type == JT_STRING ? "expected a string"
                       : f->type == JT_INT  ? "expected a number"
                                            : "expected true or false");
}

/*
 * Decodes a JSON object into the fields, as Go's json.Unmarshal does into a
 * struct: keys match by key_matches, a later duplicate wins, unknown keys are
 * skipped (still validated), trailing bytes other than whitespace are an
 * error.  A top-level null is accepted (nothing set) when null_ok.  Returns
 * 0 or -1 with the reason in err.
 */
static int json_decode_object(const void *data, size_t len,
                              const jfield_t *fields, jvalue_t *values,
                              size_t count, bool null_ok, char *err,
                              size_t errlen)
{
    /* Pointer arithmetic on NULL is undefined, even adding 0. */
    const unsigned char *p = data ? data : (const void *)"";
    jcursor_t c = {p, p, p + len, err, errlen};
    memset(values, 0, count * sizeof *values);
    skip_ws(&c);
    if (c.p >= c.end)
        return jfail(&c, "");
    if (*c.p == '{') {
        c.p++;
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') {
            c.p++;
        } else {
            for (;;) {
                const unsigned char *k;
                size_t kn;
                if (scan_key(&c, &k, &kn) < 0)
                    return -1;
                size_t i = 0;
                while (i < count && !key_matches(k, kn, fields[i].name))
                    i++;
                int rc = i < count ? decode_field(&c, &fields[i], &values[i])
                                   : skip_value(&c, 1);
                if (rc < 0)
                    return -1;
                skip_ws(&c);
                if (c.p < c.end && *c.p == ',') {
                    c.p++;
                    continue;
                }
                if (c.p < c.end && *c.p == '}') {
                    c.p++;
                    break;
                }
                return jfail(&c, "after object key:value pair");
            }
        }
    } else {
        bool is_null = *c.p == 'n';
        if (skip_value(&c, 0) < 0)
            return -1;
        skip_ws(&c);
        if (c.p < c.end)
            return jfail(&c, "after top-level value");
        if (is_null && null_ok)
            return 0;
        if (err && errlen)
            snprintf(err, errlen, "not a JSON object");
        return -1;
    }
    skip_ws(&c);
    if (c.p < c.end)
        return jfail(&c, "after top-level value");
    return 0;
}

/* Copies a decoded string field into a fixed array, refusing to cut it. */
static int string_to_array(const jvalue_t *v, const char *name, char *out,
                           size_t cap, char *err, size_t errlen)
{
    out[0] = '\0';
    if (!v->set)
        return 0;
    size_t n = string_decode(v->str, v->str_len, NULL);
    if (n >= cap) {
        if (err && errlen)
            snprintf(err, errlen, "field %s: string of %zu bytes too long",
                     name, n);
        return -1;
    }
    string_decode(v->str, v->str_len, out);
    out[n] = '\0';
    return 0;
}

static void set_errstr(char *err, size_t errlen, const char *s)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", s);
}

/* ------------------------------------------------------------------------ */
/* Client side                                                              */
/* ------------------------------------------------------------------------ */

void nsq_identify_default(nsq_identify_t *id)
{
    if (!id)
        return;
    memset(id, 0, sizeof *id);
    id->feature_negotiation = true;
    id->heartbeat_interval = 30000;
    id->output_buffer_size = 16384;
    id->output_buffer_timeout = 250;
    id->deflate_level = 6;
}

nsq_err_t nsq_cmd_identify(nsq_buf_t *b, const nsq_identify_t *id)
{
    if (!b || !id)
        return NSQ_ERR_INVALID_ARG;
    const size_t start = b->len;
    jwriter_t w = {b, NSQ_OK, false};
    jw_raw(&w, "IDENTIFY\n\0\0\0\0", 13);
    const size_t body = b->len;
    jw_string(&w, "client_id", id->client_id);
    jw_string(&w, "hostname", id->hostname);
    jw_string(&w, "user_agent", id->user_agent);
    jw_bool(&w, "feature_negotiation", id->feature_negotiation);
    jw_int(&w, "heartbeat_interval", id->heartbeat_interval);
    jw_int(&w, "output_buffer_size", id->output_buffer_size);
    jw_int(&w, "output_buffer_timeout", id->output_buffer_timeout);
    jw_int(&w, "msg_timeout", id->msg_timeout);
    jw_int(&w, "sample_rate", id->sample_rate);
    jw_bool(&w, "tls_v1", id->tls_v1);
    jw_bool(&w, "deflate", id->deflate);
    jw_int(&w, "deflate_level", id->deflate_level);
    jw_bool(&w, "snappy", id->snappy);
    nsq_err_t err = jw_end(&w);
    /* The size field is 32 bits; only absurd strings could pass it. */
    if (err == NSQ_OK && (uint64_t)(b->len - body) > UINT32_MAX)
        err = NSQ_ERR_INVALID_ARG;
    if (err != NSQ_OK) {
        b->len = start;
        return err;
    }
    uint32_t size = (uint32_t)(b->len - body);
    unsigned char *sz = (unsigned char *)b->data + body - 4;
    sz[0] = (unsigned char)(size >> 24);
    sz[1] = (unsigned char)(size >> 16);
    sz[2] = (unsigned char)(size >> 8);
    sz[3] = (unsigned char)size;
    return NSQ_OK;
}

enum {
    R_MAX_RDY_COUNT,
    R_VERSION,
    R_MAX_MSG_TIMEOUT,
    R_MSG_TIMEOUT,
    R_TLS_V1,
    R_DEFLATE,
    R_DEFLATE_LEVEL,
    R_MAX_DEFLATE_LEVEL,
    R_SNAPPY,
    R_SAMPLE_RATE,
    R_AUTH_REQUIRED,
    R_OUTPUT_BUFFER_SIZE,
    R_OUTPUT_BUFFER_TIMEOUT,
    R_COUNT
};

#define INT64_FIELD(name)                                                      \
    {                                                                          \
        name, JT_INT, INT64_MIN, INT64_MAX                                     \
    }

static const jfield_t reply_fields[R_COUNT] = {
    INT64_FIELD("max_rdy_count"),
    {"version", JT_STRING, 0, 0},
    INT64_FIELD("max_msg_timeout"),
    INT64_FIELD("msg_timeout"),
    {"tls_v1", JT_BOOL, 0, 0},
    {"deflate", JT_BOOL, 0, 0},
    INT64_FIELD("deflate_level"),
    INT64_FIELD("max_deflate_level"),
    {"snappy", JT_BOOL, 0, 0},
    INT64_FIELD("sample_rate"),
    {"auth_required", JT_BOOL, 0, 0},
    INT64_FIELD("output_buffer_size"),
    INT64_FIELD("output_buffer_timeout"),
};

nsq_err_t nsq_identify_reply_parse(const void *data, size_t len,
                                   nsq_identify_reply_t *out, char *errstr,
                                   size_t errlen)
{
    if (!out || (!data && len)) {
        set_errstr(errstr, errlen, "invalid argument");
        return NSQ_ERR_INVALID_ARG;
    }
    nsq_identify_reply_t r;
    memset(&r, 0, sizeof r);
    if (len == 2 && memcmp(data, "OK", 2) == 0) {
        *out = r;
        set_errstr(errstr, errlen, "");
        return NSQ_OK;
    }
    jvalue_t v[R_COUNT];
    if (json_decode_object(data, len, reply_fields, v, R_COUNT, false, errstr,
                           errlen) < 0 ||
        string_to_array(&v[R_VERSION], "version", r.version, sizeof r.version,
                        errstr, errlen) < 0)
        return NSQ_ERR_BAD_JSON;
    r.negotiated = true;
    r.max_rdy_count = v[R_MAX_RDY_COUNT].num;
    r.max_msg_timeout = v[R_MAX_MSG_TIMEOUT].num;
    r.msg_timeout = v[R_MSG_TIMEOUT].num;
    r.tls_v1 = v[R_TLS_V1].flag;
    r.deflate = v[R_DEFLATE].flag;
    r.deflate_level = v[R_DEFLATE_LEVEL].num;
    r.max_deflate_level = v[R_MAX_DEFLATE_LEVEL].num;
    r.snappy = v[R_SNAPPY].flag;
    r.sample_rate = v[R_SAMPLE_RATE].num;
    r.auth_required = v[R_AUTH_REQUIRED].flag;
    r.output_buffer_size = v[R_OUTPUT_BUFFER_SIZE].num;
    r.output_buffer_timeout = v[R_OUTPUT_BUFFER_TIMEOUT].num;
    *out = r;
    set_errstr(errstr, errlen, "");
    return NSQ_OK;
}

static const jfield_t auth_fields[3] = {
    {"identity", JT_STRING, 0, 0},
    {"identity_url", JT_STRING, 0, 0},
    INT64_FIELD("permission_count"),
};

nsq_err_t nsq_auth_reply_parse(const void *data, size_t len,
                               nsq_auth_reply_t *out, char *errstr,
                               size_t errlen)
{
    if (!out || (!data && len)) {
        set_errstr(errstr, errlen, "invalid argument");
        return NSQ_ERR_INVALID_ARG;
    }
    nsq_auth_reply_t r;
    jvalue_t v[3];
    if (json_decode_object(data, len, auth_fields, v, 3, false, errstr,
                           errlen) < 0 ||
        string_to_array(&v[0], "identity", r.identity, sizeof r.identity,
                        errstr, errlen) < 0 ||
        string_to_array(&v[1], "identity_url", r.identity_url,
                        sizeof r.identity_url, errstr, errlen) < 0)
        return NSQ_ERR_BAD_JSON;
    r.permission_count = v[2].num;
    *out = r;
    set_errstr(errstr, errlen, "");
    return NSQ_OK;
}

/* ------------------------------------------------------------------------ */
/* Server side                                                              */
/* ------------------------------------------------------------------------ */

void nsq_broker_info_default(nsq_broker_info_t *info)
{
    if (!info)
        return;
    memset(info, 0, sizeof *info);
    nsq_limits_default(&info->limits);
    info->version = "1.3.0";
    info->msg_timeout_ms = 60000;
    info->heartbeat_ms = 30000;
    info->output_buffer_size = 16384;
    info->output_timeout_ms = 250;
    info->tls_enabled = false;
    info->snappy_enabled = true;
    info->deflate_enabled = true;
    info->auth_enabled = false;
}

void nsq_identify_settings_init(nsq_identify_settings_t *s,
                                const nsq_broker_info_t *info)
{
    if (!s)
        return;
    memset(s, 0, sizeof *s);
    if (!info)
        return;
    s->heartbeat_interval_ms = info->heartbeat_ms;
    s->output_buffer_size = info->output_buffer_size;
    s->output_buffer_timeout_ms = info->output_timeout_ms;
    s->msg_timeout_ms = info->msg_timeout_ms;
}

void nsq_identify_settings_free(nsq_identify_settings_t *s)
{
    if (!s)
        return;
    free(s->client_id);
    free(s->hostname);
    free(s->user_agent);
    s->client_id = s->hostname = s->user_agent = NULL;
}

/* nsqd's identifyDataV2, field for field (Go's int is 64 bits there). */
enum {
    B_CLIENT_ID,
    B_HOSTNAME,
    B_HEARTBEAT_INTERVAL,
    B_OUTPUT_BUFFER_SIZE,
    B_OUTPUT_BUFFER_TIMEOUT,
    B_FEATURE_NEGOTIATION,
    B_TLS_V1,
    B_DEFLATE,
    B_DEFLATE_LEVEL,
    B_SNAPPY,
    B_SAMPLE_RATE,
    B_USER_AGENT,
    B_MSG_TIMEOUT,
    B_COUNT
};

static const jfield_t body_fields[B_COUNT] = {
    {"client_id", JT_STRING, 0, 0},
    {"hostname", JT_STRING, 0, 0},
    INT64_FIELD("heartbeat_interval"),
    INT64_FIELD("output_buffer_size"),
    INT64_FIELD("output_buffer_timeout"),
    {"feature_negotiation", JT_BOOL, 0, 0},
    {"tls_v1", JT_BOOL, 0, 0},
    {"deflate", JT_BOOL, 0, 0},
    INT64_FIELD("deflate_level"),
    {"snappy", JT_BOOL, 0, 0},
    {"sample_rate", JT_INT, INT32_MIN, INT32_MAX},
    {"user_agent", JT_STRING, 0, 0},
    INT64_FIELD("msg_timeout"),
};

/* A NUL-terminated copy of a string field ("" when absent).  A \u0000 in
 * the JSON ends the C string early; nsqd only stores these strings. */
static char *string_dup(const jvalue_t *v)
{
    size_t n = v->set ? string_decode(v->str, v->str_len, NULL) : 0;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        string_decode(v->str, v->str_len, s);
    s[n] = '\0';
    return s;
}

/*
 * nsqd's range checks of clientV2.Identify, in its order, applied to n.
 * Returns NULL, or the name of the setting that nsqd refuses and the
 * offending value in *bad.
 */
static const char *check_ranges(const jvalue_t *v, const nsq_limits_t *lim,
                                nsq_identify_settings_t *n, int64_t *bad)
{
    int64_t hb = v[B_HEARTBEAT_INTERVAL].num;
    if (hb == -1)
        n->heartbeat_interval_ms = 0;
    else if (hb >= 1000 && hb <= lim->max_heartbeat_ms)
        n->heartbeat_interval_ms = hb;
    else if (hb != 0) {
        *bad = hb;
        return "heartbeat interval";
    }

    int64_t timeout = v[B_OUTPUT_BUFFER_TIMEOUT].num;
    if (timeout == -1)
        n->output_buffer_timeout_ms = 0;
    else if (timeout >= lim->min_output_timeout_ms &&
             timeout <= lim->max_output_timeout_ms && timeout != 0)
        n->output_buffer_timeout_ms = timeout;
    else if (timeout != 0) {
        *bad = timeout;
        return "output buffer timeout";
    }
    int64_t size = v[B_OUTPUT_BUFFER_SIZE].num;
    if (size == -1) {
        /* No buffering: every write goes straight to the socket. */
        n->output_buffer_size = 1;
        n->output_buffer_timeout_ms = 0;
    } else if (size >= 64 && size <= lim->max_output_size)
        n->output_buffer_size = size;
    else if (size != 0) {
        *bad = size;
        return "output buffer size";
    }

    int64_t rate = v[B_SAMPLE_RATE].num;
    if (rate < 0 || rate > 99) {
        *bad = rate;
        return "sample rate";
    }
    n->sample_rate = rate;

    int64_t mt = v[B_MSG_TIMEOUT].num;
    if (mt >= 1000 && mt <= lim->max_msg_timeout_ms)
        n->msg_timeout_ms = mt;
    else if (mt != 0) {
        *bad = mt;
        return "msg timeout";
    }
    return NULL;
}

/* Appends nsqd's JSON answer to a negotiated IDENTIFY. */
static nsq_err_t put_identify_reply(nsq_buf_t *b, const nsq_broker_info_t *info,
                                    const nsq_identify_settings_t *n, bool tls,
                                    bool deflate, int64_t level, bool snappy)
{
    jwriter_t w = {b, NSQ_OK, false};
    jw_int(&w, "max_rdy_count", info->limits.max_rdy_count);
    jw_string(&w, "version", info->version);
    jw_int(&w, "max_msg_timeout", info->limits.max_msg_timeout_ms);
    jw_int(&w, "msg_timeout", n->msg_timeout_ms);
    jw_bool(&w, "tls_v1", tls);
    jw_bool(&w, "deflate", deflate);
    jw_int(&w, "deflate_level", level);
    jw_int(&w, "max_deflate_level", info->limits.max_deflate_level);
    jw_bool(&w, "snappy", snappy);
    jw_int(&w, "sample_rate", n->sample_rate);
    jw_bool(&w, "auth_required", info->auth_enabled);
    jw_int(&w, "output_buffer_size", n->output_buffer_size);
    jw_int(&w, "output_buffer_timeout", n->output_buffer_timeout_ms);
    return jw_end(&w);
}

static nsq_err_t append_text(nsq_buf_t *b, const char *s)
{
    return nsq_buf_append(b, s, strlen(s));
}

nsq_err_t nsq_identify_apply(const void *body, size_t len,
                             const nsq_broker_info_t *info,
                             nsq_identify_settings_t *s, nsq_buf_t *reply)
{
    if (!info || !s || !reply || (!body && len))
        return NSQ_ERR_INVALID_ARG;
    const size_t start = reply->len;

    /* 1. Decode; nothing is applied when the body does not decode. */
    jvalue_t v[B_COUNT];
    if (json_decode_object(body, len, body_fields, v, B_COUNT, true, NULL, 0) <
        0) {
        if (append_text(reply,
                        "E_BAD_BODY IDENTIFY failed to decode JSON body") !=
            NSQ_OK) {
            reply->len = start;
            return NSQ_ERR_NOMEM;
        }
        return NSQ_E_BAD_BODY;
    }

    /*
     * The new settings are worked out in n and committed only once the
     * reply is written, so running out of memory changes nothing; a
     * protocol error commits what nsqd had set before its failing check.
     */
    nsq_identify_settings_t n = *s;
    n.client_id = string_dup(&v[B_CLIENT_ID]);
    n.hostname = string_dup(&v[B_HOSTNAME]);
    n.user_agent = string_dup(&v[B_USER_AGENT]);
    nsq_err_t err = NSQ_OK, result = NSQ_OK;
    if (!n.client_id || !n.hostname || !n.user_agent)
        err = NSQ_ERR_NOMEM;

    /* 2-6. Range checks. */
    int64_t bad = 0;
    const char *what =
        err == NSQ_OK ? check_ranges(v, &info->limits, &n, &bad) : NULL;
    if (err == NSQ_OK && what) {
        char text[128];
        snprintf(text, sizeof text,
                 "E_BAD_BODY IDENTIFY %s (%" PRId64 ") is invalid", what, bad);
        err = append_text(reply, text);
        result = NSQ_E_BAD_BODY;
    } else if (err == NSQ_OK) {
        /* 7. Without negotiation the answer is a plain OK. */
        n.feature_negotiation = v[B_FEATURE_NEGOTIATION].flag;
        bool tls = false, deflate = false, snappy = false;
        int64_t level = 0;
        if (!n.feature_negotiation) {
            err = append_text(reply, "OK");
        } else {
            /* 8. What the broker grants. */
            tls = info->tls_enabled && v[B_TLS_V1].flag;
            deflate = info->deflate_enabled && v[B_DEFLATE].flag;
            level = 6;
            if (deflate && v[B_DEFLATE_LEVEL].num > 0)
                level = v[B_DEFLATE_LEVEL].num;
            if (info->limits.max_deflate_level < level)
                level = info->limits.max_deflate_level;
            snappy = info->snappy_enabled && v[B_SNAPPY].flag;
            if (deflate && snappy) {
                err = append_text(reply, "E_IDENTIFY_FAILED cannot enable both "
                                         "deflate and snappy compression");
                result = NSQ_E_IDENTIFY_FAILED;
            } else {
                /* 9. nsqd's JSON answer. */
                err = put_identify_reply(reply, info, &n, tls, deflate, level,
                                         snappy);
            }
        }
        /* The upgrades this IDENTIFY asks of the connection. */
        if (result == NSQ_OK) {
            n.tls_v1 = tls;
            n.deflate = deflate;
            n.snappy = snappy;
            n.deflate_level = deflate ? level : 0;
        }
    }

    if (err != NSQ_OK) {
        reply->len = start;
        free(n.client_id);
        free(n.hostname);
        free(n.user_agent);
        return err;
    }
    nsq_identify_settings_free(s);
    *s = n;
    return result;
}
