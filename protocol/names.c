/* Topic and channel names, by nsqd's rule: ^[.a-zA-Z0-9_-]+(#ephemeral)?$,
 * 1 to 64 bytes in all. */
#include <string.h>

#include "nsq/protocol.h"

#define NSQ__EPHEMERAL "#ephemeral"
#define NSQ__MAX_NAME 64

static bool name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool name_valid(const char *name, size_t len)
{
    if (!name || len < 1 || len > NSQ__MAX_NAME)
        return false;
    size_t stem = len;
    const size_t suffix = sizeof(NSQ__EPHEMERAL) - 1;
    if (len > suffix &&
        memcmp(name + len - suffix, NSQ__EPHEMERAL, suffix) == 0)
        stem = len - suffix;
    for (size_t i = 0; i < stem; i++)
        if (!name_char((unsigned char)name[i]))
            return false;
    return true;
}

bool nsq_topic_valid(const char *name, size_t len)
{
    return name_valid(name, len);
}

bool nsq_channel_valid(const char *name, size_t len)
{
    return name_valid(name, len);
}
