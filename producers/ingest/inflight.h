/* keng-ingest's table of the events waiting for Kafka, one entry per copy handed to the
 * producer, keyed by kind, board_id and event_id: a gateway's resend of an event whose copy
 * is still in flight joins that copy's outcome instead of queueing another copy. Nothing here
 * produces or answers a request.
 *
 * Thread: the loop's; nothing here locks. */
#ifndef KENG_INGEST_INFLIGHT_H
#define KENG_INGEST_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "event.h"

typedef struct keng_inflight keng_inflight_t;
typedef struct keng_inflight_entry keng_inflight_entry_t;

/* One event of one request waiting for the outcome of a copy. The caller owns the memory (a
 * request keeps one per event) and fills done and arg; the table links it until done runs. */
typedef struct keng_inflight_waiter {
    struct keng_inflight_waiter *next; /* the table's */
    void (*done)(struct keng_inflight_waiter *w, rd_kafka_resp_err_t err);
    void *arg;
} keng_inflight_waiter_t;

/* An empty table, or NULL when memory runs out. The caller owns it
 * (keng_inflight_destroy). */
keng_inflight_t *keng_inflight_new(void);

/* Frees the table; entries still in it are dropped without calling their waiters (only at
 * exit, after the producer reported every copy). */
void keng_inflight_destroy(keng_inflight_t *t);

/* The entry of ev's copy in flight, or NULL. Borrowed: valid until its outcome. */
keng_inflight_entry_t *keng_inflight_find(const keng_inflight_t *t, const keng_event_t *ev);

/* A new entry for a copy of ev about to be handed to the producer, or NULL when memory runs
 * out. There must be none for ev already (keng_inflight_find). */
keng_inflight_entry_t *keng_inflight_add(keng_inflight_t *t, const keng_event_t *ev);

/* w waits for e's outcome. */
void keng_inflight_join(keng_inflight_entry_t *e, keng_inflight_waiter_t *w);

/* e's copy was delivered (err RD_KAFKA_RESP_ERR_NO_ERROR) or failed for good: the entry is
 * removed from its table and freed, then every waiter's done runs, in the order they joined.
 * A done may add new entries, and a resend then makes a new copy. */
void keng_inflight_complete(keng_inflight_entry_t *e, rd_kafka_resp_err_t err);

/* Entries in the table: copies handed to the producer without an outcome yet. */
size_t keng_inflight_count(const keng_inflight_t *t);

#endif
