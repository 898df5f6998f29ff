/* keng-ingest's counters and the delivery-latency histogram, rendered in the Prometheus text
 * format for GET /metrics; they only count what keng-ingest records, never decide a status.
 *
 * Thread: the loop's; nothing here locks. */
#ifndef KENG_INGEST_METRICS_H
#define KENG_INGEST_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct keng_ingest_metrics keng_ingest_metrics_t;

/* Why events of a request were not taken; the label of keng_ingest_events_rejected_total. */
typedef enum {
    KENG_REJECT_INVALID,     /* 400: a field, the JSON or an unknown board */
    KENG_REJECT_FORBIDDEN,   /* 403: a board outside the token's districts */
    KENG_REJECT_TOO_MANY,    /* 413: more events than a request may hold */
    KENG_REJECT_UNAVAILABLE, /* 503: Kafka did not take them in time, or back-pressure */
    KENG_REJECT_COUNT
} keng_reject_t;

/* Values read at render time rather than counted. */
typedef struct keng_ingest_gauges {
    long long queue_depth;        /* rd_kafka_outq_len */
    long long connections;        /* open HTTP connections */
    long long in_flight_requests; /* waiting for Kafka */
    long long in_flight_events;
    long long tokens; /* entries of the token file */
} keng_ingest_gauges_t;

/* Zeroed counters, or NULL when memory runs out. The caller owns them
 * (keng_ingest_metrics_destroy). */
keng_ingest_metrics_t *keng_ingest_metrics_new(void);
void keng_ingest_metrics_destroy(keng_ingest_metrics_t *m);

/* One answered request with its HTTP status (100..599). */
void keng_ingest_metrics_request(keng_ingest_metrics_t *m, int status);
void keng_ingest_metrics_accepted(keng_ingest_metrics_t *m, uint64_t events);
/* Events of a request that joined a copy already waiting for Kafka (a gateway's resend). */
void keng_ingest_metrics_joined(keng_ingest_metrics_t *m, uint64_t events);
void keng_ingest_metrics_rejected(keng_ingest_metrics_t *m, keng_reject_t why, uint64_t events);
/* The time from handing a request's events to the producer to Kafka's last acknowledgement. */
void keng_ingest_metrics_delivery(keng_ingest_metrics_t *m, double seconds);

/* The whole exposition as a new NUL-terminated string (the caller frees it), its length in
 * *len; NULL when out of memory. */
char *keng_ingest_metrics_render(const keng_ingest_metrics_t *m, const keng_ingest_gauges_t *g,
                                 size_t *len);

#endif
