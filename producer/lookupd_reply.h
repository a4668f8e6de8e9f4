/*
 * nsqlookupd's GET /nodes reply, read into a list of nsqd (discovery.c
 * asks, this reads).  Accepts nsqlookupd 1.x's {"producers":[..]} and the
 * older {"status_code":200,"status_txt":"OK","data":{"producers":[..]}}.
 * A node is "broadcast_address:tcp_port" ("[v6]:port"); tombstones[i] true
 * means the node takes no publishes for topics[i].  Any wrong type is an
 * error, never a crash.  Pure and thread-agnostic: no I/O, no globals.
 */
#ifndef NSQ_PRODUCER_LOOKUPD_REPLY_H
#define NSQ_PRODUCER_LOOKUPD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* One nsqd. */
typedef struct nsq__disc_node {
    char *address;      /* "host:port" ("[v6]:port"), from broadcast_address */
    char **tombstoned;  /* topics this node takes no publishes for */
    size_t ntombstoned; /* (a topic tombstoned by any lookupd) */
} nsq__disc_node_t;

/*
 * Adds the nodes of the reply buf[0..len) to *nodes (*n of them; a node
 * already there gets the new tombstones).  false with the reason in err for
 * malformed JSON, a missing "producers" array, a status_code other than
 * 200, or a producer without a string broadcast_address and a tcp_port
 * 1..65535, or with topics/tombstones that are not arrays of strings and
 * booleans; what was added before the error stays in *nodes.
 */
bool nsq__lookupd_parse_nodes(const char *buf, size_t len,
                              nsq__disc_node_t **nodes, size_t *n, char *err,
                              size_t errlen);

/* The node address in *nodes, added (with no tombstones) if new; NULL when
 * out of memory. */
nsq__disc_node_t *nsq__disc_nodes_add(nsq__disc_node_t **nodes, size_t *n,
                                      const char *address);
/* topic into node's tombstones, once; false when out of memory. */
bool nsq__disc_node_tombstone(nsq__disc_node_t *node, const char *topic);
/* Frees n nodes and the array. */
void nsq__disc_nodes_free(nsq__disc_node_t *nodes, size_t n);

#endif
