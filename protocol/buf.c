/* The growable buffer every encoder appends to, and nsqd's default limits. */
#include <stdlib.h>
#include <string.h>

#include "nsq/protocol.h"

void nsq_buf_init(nsq_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void nsq_buf_free(nsq_buf_t *b)
{
    free(b->data);
    nsq_buf_init(b);
}

nsq_err_t nsq_buf_reserve(nsq_buf_t *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return NSQ_OK;
    if (extra > SIZE_MAX - b->len)
        return NSQ_ERR_NOMEM;
    size_t need = b->len + extra;
    /* Doubling keeps appends amortised O(1); start at a size that holds a
     * typical command without a second step. */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *data = realloc(b->data, cap);
    if (!data)
        return NSQ_ERR_NOMEM;
    b->data = data;
    b->cap = cap;
    return NSQ_OK;
}

nsq_err_t nsq_buf_append(nsq_buf_t *b, const void *data, size_t len)
{
    if (len == 0)
        return NSQ_OK;
    if (!data)
        return NSQ_ERR_INVALID_ARG;
    nsq_err_t err = nsq_buf_reserve(b, len);
    if (err != NSQ_OK)
        return err;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return NSQ_OK;
}

void nsq_limits_default(nsq_limits_t *lim)
{
    lim->max_msg_size = NSQ_DEFAULT_MAX_MSG_SIZE;
    lim->max_body_size = NSQ_DEFAULT_MAX_BODY_SIZE;
    lim->max_req_timeout_ms = NSQ_DEFAULT_MAX_REQ_TIMEOUT_MS;
    lim->max_rdy_count = NSQ_DEFAULT_MAX_RDY_COUNT;
    lim->max_msg_timeout_ms = 900000;
    lim->max_heartbeat_ms = 60000;
    lim->min_output_timeout_ms = 25;
    lim->max_output_timeout_ms = 30000;
    lim->max_output_size = 65536;
    lim->max_deflate_level = 6;
}
