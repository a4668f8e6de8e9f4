/*
 * What nsqlookupd answers to GET /nodes, read with cJSON into a node list
 * (see lookupd_reply.h).  Pure: no I/O, so the tests and a fuzzer can feed
 * it bytes.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lookupd_reply.h"

/* ------------------------------------------------------------------------ */
/* Node lists                                                               */
/* ------------------------------------------------------------------------ */

void nsq__disc_nodes_free(nsq__disc_node_t *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(nodes[i].address);
        for (size_t k = 0; k < nodes[i].ntombstoned; k++)
            free(nodes[i].tombstoned[k]);
        free(nodes[i].tombstoned);
    }
    free(nodes);
}

static nsq__disc_node_t *nodes_find(nsq__disc_node_t *nodes, size_t n,
                                    const char *address)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(nodes[i].address, address) == 0)
            return &nodes[i];
    return NULL;
}

/* Adds topic to node's tombstones once; false when out of memory. */
bool nsq__disc_node_tombstone(nsq__disc_node_t *node, const char *topic)
{
    for (size_t k = 0; k < node->ntombstoned; k++)
        if (strcmp(node->tombstoned[k], topic) == 0)
            return true;
    char *copy = strdup(topic);
    char **grown = copy ? realloc(node->tombstoned,
                                  (node->ntombstoned + 1) * sizeof *grown)
                        : NULL;
    if (!grown) {
        free(copy);
        return false;
    }
    node->tombstoned = grown;
    grown[node->ntombstoned++] = copy;
    return true;
}

/* The node address, added to *nodes if new; NULL when out of memory. */
nsq__disc_node_t *nsq__disc_nodes_add(nsq__disc_node_t **nodes, size_t *n,
                                      const char *address)
{
    nsq__disc_node_t *node = nodes_find(*nodes, *n, address);
    if (node)
        return node;
    char *copy = strdup(address);
    nsq__disc_node_t *grown =
        copy ? realloc(*nodes, (*n + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return NULL;
    }
    *nodes = grown;
    node = &grown[(*n)++];
    memset(node, 0, sizeof *node);
    node->address = copy;
    return node;
}

/* ------------------------------------------------------------------------ */
/* The reply                                                                */
/* ------------------------------------------------------------------------ */

/* One producer entry into the node list; false with the reason in err. */
static bool parse_producer(const cJSON *p, size_t i, nsq__disc_node_t **nodes,
                           size_t *n, char *err, size_t errlen)
{
    const cJSON *host =
        cJSON_GetObjectItemCaseSensitive(p, "broadcast_address");
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(p, "tcp_port");
    const cJSON *topics = cJSON_GetObjectItemCaseSensitive(p, "topics");
    const cJSON *tombs = cJSON_GetObjectItemCaseSensitive(p, "tombstones");
    if (!cJSON_IsObject(p) || !cJSON_IsString(host) || !*host->valuestring ||
        strlen(host->valuestring) > 255 || !cJSON_IsNumber(port) ||
        port->valuedouble < 1 || port->valuedouble > 65535 ||
        port->valuedouble != (double)(int)port->valuedouble ||
        (topics && !cJSON_IsArray(topics)) ||
        (tombs && !cJSON_IsArray(tombs))) {
        snprintf(err, errlen,
                 "producer %zu: want an object with broadcast_address "
                 "(string), tcp_port (1..65535), topics and tombstones "
                 "(arrays)",
                 i);
        return false;
    }
    /* As net.JoinHostPort: an IPv6 address goes in brackets. */
    char address[300];
    const char *h = host->valuestring;
    snprintf(address, sizeof address, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h,
             (int)port->valuedouble);
    nsq__disc_node_t *node = nsq__disc_nodes_add(nodes, n, address);
    if (!node) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    int ntopics = topics ? cJSON_GetArraySize(topics) : 0;
    int ntombs = tombs ? cJSON_GetArraySize(tombs) : 0;
    for (int k = 0; k < ntombs; k++) {
        const cJSON *t = cJSON_GetArrayItem(tombs, k);
        const cJSON *name = k < ntopics ? cJSON_GetArrayItem(topics, k) : NULL;
        if (!cJSON_IsBool(t) || (name && !cJSON_IsString(name))) {
            snprintf(err, errlen,
                     "producer %zu (%.64s): tombstones must be booleans and "
                     "topics strings",
                     i, address);
            return false;
        }
        /* tombstones[k] is about topics[k]; nsqlookupd sends as many. */
        if (cJSON_IsTrue(t) && name &&
            !nsq__disc_node_tombstone(node, name->valuestring)) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
    }
    return true;
}

bool nsq__lookupd_parse_nodes(const char *buf, size_t len,
                              nsq__disc_node_t **nodes, size_t *n, char *err,
                              size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root) {
        snprintf(err, errlen, "malformed JSON in the reply");
        return false;
    }
    bool ok = false;
    const cJSON *data = root;
    /* Before nsqlookupd 1.0 the reply was wrapped:
     * {"status_code":200,"status_txt":"OK","data":{...}}. */
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status_code");
    if (cJSON_IsObject(root) && status) {
        data = cJSON_GetObjectItemCaseSensitive(root, "data");
        if (!cJSON_IsNumber(status) || status->valuedouble != 200) {
            snprintf(err, errlen, "the reply's status_code is not 200");
            goto out;
        }
    }
    const cJSON *producers =
        cJSON_IsObject(data)
            ? cJSON_GetObjectItemCaseSensitive(data, "producers")
            : NULL;
    if (!cJSON_IsArray(producers)) {
        snprintf(err, errlen, "the reply has no \"producers\" array");
        goto out;
    }
    size_t i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, producers)
    {
        if (!parse_producer(p, i++, nodes, n, err, errlen))
            goto out;
    }
    ok = true;
out:
    cJSON_Delete(root);
    return ok;
}
