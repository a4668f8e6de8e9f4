/* Topic and channel names, by nsqd's rule: ^[.a-zA-Z0-9_-]+(#ephemeral)?$,
 * 1 to 64 bytes in all. */
#include <string.h>

#include "nsq/protocol.h"

#define NSQ__EPHEMERAL "#ephemeral"
#define NSQ__MAX_NAME 64

/* Every publish checks its topic: a table lookup per byte keeps that to a
 * few instructions a character. */
static const bool name_chars[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1,
    ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1,
    ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1,
    ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

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
        if (!name_chars[(unsigned char)name[i]])
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
