/*
 * Command-line pieces that nsqpub and nsqpub-bench share: address lists
 * joined with commas, and --producer-opt NAME,VALUE.  Each program prints
 * its own messages.
 */
#ifndef NSQ_TOOL_ARGS_H
#define NSQ_TOOL_ARGS_H

#include <stdbool.h>
#include <string.h>

#include "nsq/producer.h"

/* Appends item to the comma-separated list (cap bytes, NUL included);
 * false, the list unchanged, if it would not fit. */
static inline bool tool_list_append(char *list, size_t cap, const char *item)
{
    size_t have = strlen(list), add = strlen(item);
    if (have + add + 2 > cap)
        return false;
    if (have)
        list[have++] = ',';
    memcpy(list + have, item, add + 1);
    return true;
}

typedef enum {
    TOOL_OPT_OK,
    TOOL_OPT_FORM, /* not NAME,VALUE (or NAME too long) */
    TOOL_OPT_CONF, /* nsq_conf_set refused it: err says why */
} tool_opt_rc_t;

/* --producer-opt NAME,VALUE: nsq_conf_set, '-' in NAME read as '_'; key
 * (keylen bytes) gets the name as set. */
static inline tool_opt_rc_t tool_producer_opt(nsq_conf_t *conf, const char *arg,
                                              char *key, size_t keylen,
                                              char *err, size_t errlen)
{
    const char *comma = strchr(arg, ',');
    size_t kl = comma ? (size_t)(comma - arg) : 0;
    if (!comma || kl == 0 || kl >= keylen)
        return TOOL_OPT_FORM;
    for (size_t i = 0; i < kl; i++)
        key[i] = arg[i] == '-' ? '_' : arg[i];
    key[kl] = '\0';
    return nsq_conf_set(conf, key, comma + 1, err, errlen) == NSQ_OK
               ? TOOL_OPT_OK
               : TOOL_OPT_CONF;
}

#endif
