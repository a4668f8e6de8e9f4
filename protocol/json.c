/*
 * The JSON of IDENTIFY and AUTH, read and written the way Go's encoding/json
 * does it (identify.c holds the commands and the broker's logic).
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
 * escaping), so the bytes equal nsqd's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

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

void nsq__json_put_raw(nsq__json_writer_t *w, const void *data, size_t len)
{
    if (w->err == NSQ_OK)
        w->err = nsq_buf_append(w->b, data, len);
}

static void jw_key(nsq__json_writer_t *w, const char *key)
{
    nsq__json_put_raw(w, w->open ? ",\"" : "{\"", 2);
    w->open = true;
    nsq__json_put_raw(w, key, strlen(key));
    nsq__json_put_raw(w, "\":", 2);
}

void nsq__json_put_int(nsq__json_writer_t *w, const char *key, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    jw_key(w, key);
    nsq__json_put_raw(w, num, (size_t)n);
}

void nsq__json_put_bool(nsq__json_writer_t *w, const char *key, bool v)
{
    jw_key(w, key);
    nsq__json_put_raw(w, v ? "true" : "false", v ? 4 : 5);
}

/*
 * Writes s as a JSON string escaped like Go's json.Marshal: HTML-safe
 * (<, > and & as \u00XX), control characters other than \n \r \t as \u00XX,
 * invalid UTF-8 as \ufffd, and U+2028/U+2029 escaped.  NULL is "".
 */
void nsq__json_put_string(nsq__json_writer_t *w, const char *key, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t n = strlen((const char *)p), start = 0, i = 0;
    jw_key(w, key);
    nsq__json_put_raw(w, "\"", 1);
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
            nsq__json_put_raw(w, p + start, i - start);
            nsq__json_put_raw(w, esc, esc_len);
            start = i + size;
        }
        i += size;
    }
    nsq__json_put_raw(w, p + start, n - start);
    nsq__json_put_raw(w, "\"", 1);
}

nsq_err_t nsq__json_end(nsq__json_writer_t *w)
{
    nsq__json_put_raw(w, "}", 1);
    return w->err;
}

/* ------------------------------------------------------------------------ */
/* JSON input                                                               */
/* ------------------------------------------------------------------------ */

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

static int jfail_field(jcursor_t *c, const nsq__json_field_t *f,
                       const char *what)
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
size_t nsq__json_string_decode(const unsigned char *s, size_t n, char *out)
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
static int decode_field(jcursor_t *c, const nsq__json_field_t *f,
                        nsq__json_value_t *v)
{
    const unsigned char *s;
    size_t n;
    const char *why = NULL;
    unsigned char ch = c->p < c->end ? *c->p : 0;
    /* null leaves a field as it was, as in Go's decoder. */
    if (ch == 'n')
        return scan_literal(c);
    switch (f->type) {
    case NSQ__JSON_STRING:
        if (ch != '"')
            break;
        if (scan_string(c, &s, &n) < 0)
            return -1;
        v->str = s;
        v->str_len = n;
        v->set = true;
        return 0;
    case NSQ__JSON_INT:
        if (ch != '-' && !is_digit(ch))
            break;
        if (scan_number(c, &s, &n) < 0)
            return -1;
        if (parse_int(s, n, f->min, f->max, &v->num, &why) < 0)
            return jfail_field(c, f, why);
        v->set = true;
        return 0;
    case NSQ__JSON_BOOL:
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
                       f->type == NSQ__JSON_STRING ? "expected a string"
                       : f->type == NSQ__JSON_INT  ? "expected a number"
                                                   : "expected true or false");
}

/*
 * Decodes a JSON object into the fields, as Go's json.Unmarshal does into a
 * struct: keys match by key_matches, a later duplicate wins, unknown keys are
 * skipped (still validated), trailing bytes other than whitespace are an
 * error.  A top-level null is accepted (nothing set) when null_ok.  Returns
 * 0 or -1 with the reason in err.
 */
int nsq__json_decode_object(const void *data, size_t len,
                            const nsq__json_field_t *fields,
                            nsq__json_value_t *values, size_t count,
                            bool null_ok, char *err, size_t errlen)
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
