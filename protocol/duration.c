/*
 * Go-style durations ("250ms", "1.5s", "1h30m", "0"), the way nsqd's and
 * to_nsq's flags take them, so that nsqpub's options read the same.
 */
#include <string.h>

#include "nsq/protocol.h"

static int64_t unit_ns(const char *u, size_t n)
{
    static const struct {
        const char *name;
        int64_t ns;
    } units[] = {{"ns", 1},
                 {"us", 1000},
                 {"\xc2\xb5s", 1000}, /* micro sign */
                 {"\xce\xbcs", 1000}, /* Greek mu */
                 {"ms", 1000000},
                 {"s", 1000000000},
                 {"m", 60LL * 1000000000},
                 {"h", 3600LL * 1000000000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strlen(units[i].name) == n && memcmp(units[i].name, u, n) == 0)
            return units[i].ns;
    return 0;
}

nsq_err_t nsq_duration_parse(const char *s, int64_t *out_ns)
{
    if (!s || !out_ns)
        return NSQ_ERR_INVALID_ARG;
    bool neg = false;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    if (strcmp(s, "0") == 0) {
        *out_ns = 0;
        return NSQ_OK;
    }
    if (!*s)
        return NSQ_ERR_INVALID_ARG;
    /* Accumulate in unsigned nanoseconds; the limit is INT64_MAX (or one
     * more for a negative value), as in Go. */
    const uint64_t limit = (uint64_t)INT64_MAX + (neg ? 1 : 0);
    uint64_t total = 0;
    while (*s) {
        uint64_t whole = 0;
        bool digits = false;
        while (*s >= '0' && *s <= '9') {
            if (whole > (UINT64_MAX - 9) / 10)
                return NSQ_ERR_INVALID_ARG;
            whole = whole * 10 + (uint64_t)(*s++ - '0');
            digits = true;
        }
        uint64_t frac = 0, scale = 1;
        if (*s == '.') {
            s++;
            while (*s >= '0' && *s <= '9') {
                /* Digits past nanosecond precision are dropped. */
                if (scale < 1000000000000000000ULL) {
                    frac = frac * 10 + (uint64_t)(*s - '0');
                    scale *= 10;
                }
                s++;
                digits = true;
            }
        }
        if (!digits)
            return NSQ_ERR_INVALID_ARG;
        const char *u = s;
        while (*s && *s != '.' && (*s < '0' || *s > '9'))
            s++;
        int64_t unit = unit_ns(u, (size_t)(s - u));
        if (unit == 0)
            return NSQ_ERR_INVALID_ARG;
        if (whole > limit / (uint64_t)unit)
            return NSQ_ERR_INVALID_ARG;
        uint64_t v = whole * (uint64_t)unit;
        /* frac/scale of a unit, without overflow: unit <= 3.6e12 and
         * frac < scale <= 1e18, so split the multiplication. */
        long double part = (long double)frac * (long double)unit / scale;
        v += (uint64_t)part;
        if (v > limit || total > limit - v)
            return NSQ_ERR_INVALID_ARG;
        total += v;
    }
    *out_ns = neg ? (int64_t)(0 - total) : (int64_t)total;
    return NSQ_OK;
}
