/*
 * The value parsers and the duration printer behind nsq_conf_set and
 * nsq_conf_get (conf.c), shared so that tools and tests read and print
 * values exactly as the configuration does.
 */
#ifndef NSQ_PRODUCER_CONF_PARSE_H
#define NSQ_PRODUCER_CONF_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum nsq__conf_parse {
    NSQ__CONF_PARSE_OK = 0,
    NSQ__CONF_PARSE_SYNTAX, /* not a value of the type */
    NSQ__CONF_PARSE_RANGE,  /* well-formed, but does not fit an int64 */
    NSQ__CONF_PARSE_SUBMS,  /* a duration with a sub-millisecond part */
} nsq__conf_parse_t;

/* true/false, 1/0, yes/no, in any case. */
nsq__conf_parse_t nsq__conf_parse_bool(const char *s, bool *out);
/* Decimal with an optional sign, nothing else (no spaces, no 0x). */
nsq__conf_parse_t nsq__conf_parse_int(const char *s, int64_t *out);
/*
 * A duration in whole milliseconds: a bare decimal integer is milliseconds,
 * anything else is a Go duration (nsq_duration_parse) that must be a whole
 * number of milliseconds.
 */
nsq__conf_parse_t nsq__conf_parse_ms(const char *s, int64_t *out_ms);
/*
 * Prints ms in Go duration syntax, each unit from h down to ms once, zero
 * units left out: 90000 -> "1m30s", 3600000 -> "1h", 1500 -> "1s500ms",
 * 0 -> "0s", -250 -> "-250ms".  Returns what snprintf returns.
 */
int nsq__conf_format_ms(int64_t ms, char *dst, size_t len);

#endif
