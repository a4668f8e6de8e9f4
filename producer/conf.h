/* The configuration object behind nsq_conf_t (conf.c). */
#ifndef NSQ_PRODUCER_CONF_H
#define NSQ_PRODUCER_CONF_H

#include "nsq/producer.h"

struct nsq_conf {
    /* go-nsq's names, defaults and ranges */
    int64_t dial_timeout_ms;          /* 1s, 10ms..5m */
    int64_t read_timeout_ms;          /* 60s, 100ms..5m */
    int64_t write_timeout_ms;         /* 1s, 100ms..5m */
    int64_t heartbeat_interval_ms;    /* 30s; -1 disables; 1s..5m */
    char *client_id;                  /* short host name */
    char *hostname;                   /* host name */
    char *user_agent;                 /* "nsqpub/<version>" */
    int64_t output_buffer_size;       /* 16384; -1 disables; 64..1 MiB */
    int64_t output_buffer_timeout_ms; /* 250ms; -1 disables; 1ms..30s */
    int64_t msg_timeout_ms;           /* 0 = broker's; 0, 1s..15m */
    int64_t sample_rate;              /* 0, 0..99 */
    /* nsqpub's own */
    int64_t max_msg_size;             /* 1048576, 1..2^31-1 */
    int64_t max_body_size;            /* 5242880, 5..2^31-1 */
    int64_t max_unacked;              /* 10000, 1..1000000 */
    int64_t queue_max_messages;       /* 100000, 1..100000000 */
    int64_t queue_full_timeout_ms;    /* 0 (fail fast), 0..1h */
    int64_t linger_ms;                /* 0, 0..1m */
    int64_t batch_max_messages;       /* 1000, 1..1000000; 1 = off */
    int64_t batch_max_bytes;          /* 1 MiB, 5..2^31-1 */
    int64_t publish_timeout_ms;       /* 10s, 1ms..1h */
    int64_t stop_timeout_ms;          /* 5s, 0..1h */
    int64_t reconnect_backoff_ms;     /* 100ms, 1ms..1m */
    int64_t max_reconnect_backoff_ms; /* 10s, 1ms..10m */
    char *strategy;                   /* "round_robin" */
    int64_t failback_after_ms;        /* 5m, 0..1h */
    bool retry_not_sent;              /* true */
    bool retry_in_doubt;              /* false */
    int64_t replicas;                 /* 1, 1..16 */
    int64_t max_attempts;             /* 3, 1..100 */
    /* TLS, compression, AUTH (negotiated after IDENTIFY) */
    bool tls_v1;                   /* false */
    char *tls_root_ca_file;        /* "": the system's roots */
    bool tls_insecure_skip_verify; /* false */
    char *tls_cert;                /* "": no client certificate */
    char *tls_key;                 /* "" */
    char *tls_min_version;         /* "tls1.2"; tls1.0..tls1.3 */
    char *tls_server_name;         /* "": the host of the address */
    bool snappy;                   /* false */
    bool deflate;                  /* false */
    int64_t deflate_level;         /* 6, 1..9 */
    char *auth_secret;             /* "": none; never logged */
    /* discovery (discovery.c) */
    char *lookupd_http_addresses;     /* "": none */
    int64_t lookupd_poll_interval_ms; /* 60s, 10ms..5m */
    int64_t lookupd_poll_jitter;      /* percent, 30, 0..100 */
    /* callbacks */
    nsq_log_cb log_cb;
    void *log_opaque;
    int log_level; /* NSQ_LOG_INFO */
    /* For tests only (no key, not in the public header): called by a
     * publishing thread inside the enqueue path, after it passed the stop
     * check and before it queues, so that a test can hold a publisher
     * there while the producer stops. */
    void (*test_enqueue_hook)(void *opaque);
    void *test_enqueue_opaque;
};

/* Checks relations between keys (heartbeat_interval < read_timeout,
 * max_msg_size <= max_body_size - 8, reconnect_backoff <=
 * max_reconnect_backoff, not both snappy and deflate, tls_cert with
 * tls_key); NSQ_ERR_CONF with the reason otherwise. */
nsq_err_t nsq__conf_validate(const nsq_conf_t *conf, char *errstr,
                             size_t errlen);

#endif
