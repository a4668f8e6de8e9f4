/*
 * Go's %q verb (strconv.Quote) for the texts the command reader answers:
 * nsqd quotes a bad topic, channel or timeout with fmt's %q, so the reader
 * must produce the same bytes.
 */
#include <inttypes.h>
#include <stdio.h>

#include "goquote.h"

/* The output with a sticky error: each append does nothing once one has
 * failed. */
typedef struct qout {
    nsq_buf_t *b;
    nsq_err_t err;
} qout_t;

static void put(qout_t *o, const void *data, size_t len)
{
    if (o->err == NSQ_OK)
        o->err = nsq_buf_append(o->b, data, len);
}

static void put_hex(qout_t *o, const char *prefix, int digits, uint32_t v)
{
    char num[16];
    int n = snprintf(num, sizeof(num), "%s%0*" PRIx32, prefix, digits, v);
    put(o, num, (size_t)n);
}

/*
 * Decodes one UTF-8 sequence the way Go does: the shortest form only, no
 * surrogates, nothing above U+10FFFF.  Returns its length, or 0 when s does
 * not start with a valid (or a complete) sequence.
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;

    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        *cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        *cp = c & 0x0Fu;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        *cp = c & 0x07u;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        unsigned char b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF))
            return 0;
        *cp = (*cp << 6) | (b & 0x3Fu);
    }
    return len;
}

/*
 * Whether Go's strconv.IsPrint holds for a rune at or above U+0080.  Go
 * consults the full Unicode tables; this approximation knows the controls,
 * the spaces other than U+0020, the format characters, the private use
 * areas and the noncharacters, and takes every other rune as printable, so
 * an unassigned rune is copied where Go would write \uXXXX.  Names with such
 * runes are never valid topics, so only the text of a rejection differs.
 */
static bool go_printable(uint32_t cp)
{
    static const uint32_t not_print[][2] = {
        {0x0080, 0x00A0},    {0x00AD, 0x00AD},   {0x0600, 0x0605},
        {0x061C, 0x061C},    {0x06DD, 0x06DD},   {0x070F, 0x070F},
        {0x0890, 0x0891},    {0x08E2, 0x08E2},   {0x1680, 0x1680},
        {0x180E, 0x180E},    {0x2000, 0x200F},   {0x2028, 0x202F},
        {0x205F, 0x206F},    {0x3000, 0x3000},   {0xD800, 0xF8FF},
        {0xFDD0, 0xFDEF},    {0xFEFF, 0xFEFF},   {0xFFF0, 0xFFFB},
        {0x110BD, 0x110BD},  {0x110CD, 0x110CD}, {0x13430, 0x1343F},
        {0x1BCA0, 0x1BCA3},  {0x1D173, 0x1D17A}, {0xE0000, 0xE007F},
        {0xF0000, 0x10FFFF},
    };
    if ((cp & 0xFFFEu) == 0xFFFEu)
        return false; /* U+xFFFE and U+xFFFF of every plane */
    for (size_t i = 0; i < sizeof(not_print) / sizeof(not_print[0]); i++)
        if (cp >= not_print[i][0] && cp <= not_print[i][1])
            return false;
    return true;
}

/* Appends s quoted like Go's %q (strconv.Quote). */
nsq_err_t nsq__goquote_append(nsq_buf_t *b, const void *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    static const char short_esc[] = "abtnvfr"; /* \a (7) to \r (13) */
    qout_t o = {b, NSQ_OK};

    put(&o, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            if (c == '"' || c == '\\') {
                char esc[2] = {'\\', (char)c};
                put(&o, esc, 2);
            } else if (c >= 0x20 && c < 0x7F) {
                put(&o, &c, 1);
            } else if (c >= 7 && c <= 13) {
                char esc[2] = {'\\', short_esc[c - 7]};
                put(&o, esc, 2);
            } else {
                put_hex(&o, "\\x", 2, c);
            }
            continue;
        }
        uint32_t cp = 0;
        size_t w = utf8_decode(s + i, n - i, &cp);
        if (w == 0) {
            put_hex(&o, "\\x", 2, c);
            i++;
        } else {
            if (go_printable(cp))
                put(&o, s + i, w);
            else if (cp < 0x10000)
                put_hex(&o, "\\u", 4, cp);
            else
                put_hex(&o, "\\U", 8, cp);
            i += w;
        }
    }
    put(&o, "\"", 1);
    return o.err;
}
