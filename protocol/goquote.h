/*
 * Private to the protocol codec: Go's %q quoting (strconv.Quote), with which
 * nsqd writes names and numbers into its error texts.
 */
#ifndef NSQ_GOQUOTE_H
#define NSQ_GOQUOTE_H

#include <stddef.h>

#include "nsq/protocol.h"

/*
 * Appends the n bytes at s to b quoted as Go's strconv.Quote does.  Returns
 * NSQ_OK, or NSQ_ERR_NOMEM with part of the quoted text appended.
 */
nsq_err_t nsq__goquote_append(nsq_buf_t *b, const void *s, size_t n);

#endif
