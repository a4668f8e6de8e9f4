/*
 * Fuzzes the reader of nsqlookupd's GET /nodes reply
 * (producer/lookupd_reply.c): any bytes from a lookupd either give a list
 * of well-formed nodes or an error with a reason, never a crash.  Every
 * node is "host:port" with a port of 1..65535, every address appears once,
 * and reading the same reply again adds no node.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookupd_reply.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

static void check_node(const nsq__disc_node_t *node)
{
    const char *colon = strrchr(node->address, ':');
    CHECK(colon != NULL && colon != node->address);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    CHECK(*end == '\0' && port >= 1 && port <= 65535);
    for (size_t k = 0; k < node->ntombstoned; k++)
        CHECK(node->tombstoned[k] != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nsq__disc_node_t *nodes = NULL;
    size_t n = 0;
    char err[160];
    memset(err, 'x', sizeof err);
    bool ok = nsq__lookupd_parse_nodes((const char *)data, size, &nodes, &n,
                                       err, sizeof err);
    if (!ok)
        CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
    for (size_t i = 0; i < n; i++) {
        check_node(&nodes[i]);
        for (size_t j = i + 1; j < n; j++)
            CHECK(strcmp(nodes[i].address, nodes[j].address) != 0);
    }
    if (ok) {
        size_t before = n;
        CHECK(nsq__lookupd_parse_nodes((const char *)data, size, &nodes, &n,
                                       err, sizeof err));
        CHECK(n == before);
    }
    nsq__disc_nodes_free(nodes, n);
    return 0;
}
