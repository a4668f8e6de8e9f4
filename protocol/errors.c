/*
 * The error list: names, descriptions, and the mapping from nsqd's E_* codes.
 * Everything is generated from NSQ_ERRORS in protocol.h, so a new code needs
 * one line there and nothing here.
 */
#include <string.h>

#include "nsq/protocol.h"

const char *nsq_err2str(nsq_err_t err)
{
    switch (err) {
#define NSQ__ERR_STR(name, value, fate, text)                                  \
    case NSQ_##name:                                                           \
        return text;
        NSQ_ERRORS(NSQ__ERR_STR)
#undef NSQ__ERR_STR
    }
    return "unknown error";
}

const char *nsq_err2name(nsq_err_t err)
{
    switch (err) {
#define NSQ__ERR_NAME(name, value, fate, text)                                 \
    case NSQ_##name:                                                           \
        return #name;
        NSQ_ERRORS(NSQ__ERR_NAME)
#undef NSQ__ERR_NAME
    }
    return "UNKNOWN";
}

bool nsq_err_is_broker(nsq_err_t err)
{
    return err > 0;
}

nsq_fate_t nsq_err_fate(nsq_err_t err)
{
    switch (err) {
#define NSQ__ERR_FATE(name, value, fate, text)                                 \
    case NSQ_##name:                                                           \
        return NSQ_FATE_##fate;
        NSQ_ERRORS(NSQ__ERR_FATE)
#undef NSQ__ERR_FATE
    }
    return NSQ_FATE_UNKNOWN;
}

const char *nsq_fate2str(nsq_fate_t fate)
{
    switch (fate) {
    case NSQ_FATE_STORED:
        return "stored";
    case NSQ_FATE_NOT_STORED:
        return "not stored";
    case NSQ_FATE_UNKNOWN:
        break;
    }
    return "may be stored";
}

nsq_err_t nsq_err_from_frame(const void *data, size_t len)
{
    const char *s = data;
    size_t word = 0;

    if (!s)
        return NSQ_E_UNKNOWN;
    while (word < len && s[word] != ' ')
        word++;
        /* Only the broker codes are candidates: their names all start "E_". */
#define NSQ__ERR_MATCH(name, value, fate, text)                                \
    if (value > 0 && sizeof(#name) - 1 == word &&                              \
        memcmp(#name, s, word) == 0 && NSQ_##name != NSQ_E_UNKNOWN)            \
        return NSQ_##name;
    NSQ_ERRORS(NSQ__ERR_MATCH)
#undef NSQ__ERR_MATCH
    return NSQ_E_UNKNOWN;
}

bool nsq_err_is_fatal(nsq_err_t err)
{
    /* nsqd sends these three as plain client errors and keeps the
     * connection; every other E_* is a FatalClientErr. */
    switch (err) {
    case NSQ_E_FIN_FAILED:
    case NSQ_E_REQ_FAILED:
    case NSQ_E_TOUCH_FAILED:
        return false;
    default:
        return nsq_err_is_broker(err);
    }
}
