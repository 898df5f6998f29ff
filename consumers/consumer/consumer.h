/* keng-aggregate's input side: the Kafka consumer on the libuv loop. It decodes every event,
 * counts it or dead-letters it, advances the windows, and checkpoints the counts together
 * with the input offsets, which are where it resumes (never the group's committed offsets).
 *
 * Thread: everything here runs on the loop thread, librdkafka's callbacks included (they are
 * served from the consumer queue, which the loop drains). */
#ifndef KENG_CONSUMER_H
#define KENG_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "alertlog.h"
#include "alerts.h"
#include "avro_codec.h"
#include "checkpoint.h"
#include "cluster.h"
#include "config.h"
#include "counts.h"
#include "deadletter.h"
#include "event_rule.h"
#include "registry.h"
#include "schemareg.h"

typedef struct keng_consumer keng_consumer_t;

typedef struct keng_consumer_options {
    const char *topic_incidents;    /* antt.incidents */
    const char *topic_mediations;   /* antt.mediations */
    const char *group_id;           /* keng-aggregate */
    const char *group_instance_id;  /* static membership (KIP-345); NULL: a dynamic member */
    int64_t fixed_clock_ms;         /* > 0: the clock stands still there (tests) */
    int64_t checkpoint_interval_ms; /* checkpoint at least this often (1000) */
    int64_t checkpoint_events;      /* and after this many events (1000000) */
    int64_t checkpoint_stale_ms;    /* not ready once checkpoints fail this long (60000) */
    int batch_max;                  /* messages per loop turn before HTTP gets its turn (1000) */
    keng_event_rule_t rule;         /* the times' rule; an event that breaks it is dead-lettered */
} keng_consumer_options_t;

void keng_consumer_options_default(keng_consumer_options_t *opt);

/* Everything borrowed must outlive the consumer: cfg (a fenced member's new handle reads it),
 * store, reg, counts, cp and dl. Loads every board's checkpointed state into counts, then
 * subscribes. A broker that is down is not an error: librdkafka keeps trying and /readyz says so.
 * Returns NULL with errstr filled. */
keng_consumer_t *keng_consumer_new(uv_loop_t *loop, const keng_config_t *cfg,
                                   const keng_consumer_options_t *opt, keng_schema_store_t *store,
                                   const keng_registry_t *reg, keng_counts_t *counts,
                                   keng_checkpoint_t *cp, keng_deadletter_t *dl, char *errstr,
                                   size_t errstr_size);

/* Stops consuming, writes a last checkpoint, closes the consumer (leaving the group), frees
 * everything once the loop has closed its handles, then calls done (may be NULL). */
void keng_consumer_stop(keng_consumer_t *c, void (*done)(void *arg), void *arg);

/* keng-aggregate's clock: the wall clock, or the fixed time of the options. */
int64_t keng_consumer_now(const keng_consumer_t *c);

/* True once every assigned partition has been read up to the high watermark it had when it
 * was assigned, and while checkpoints are written (keng_consumer_checkpoint_ok); otherwise
 * false, with the reason as a sentence in reason. */
bool keng_consumer_ready(const keng_consumer_t *c, char *reason, size_t reason_size);

/* The librdkafka error code of the fatal error that stopped the consumer
 * (RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID when the coordinator fenced this static member),
 * with what to do in reason; 0 while there is none. A fenced member rejoins by itself a
 * second later with a new handle, unless it was fenced REJOIN_MAX times in ten minutes (a
 * live twin holds its id): then it stays fenced until restarted. */
int keng_consumer_fatal(const keng_consumer_t *c, char *reason, size_t reason_size);

/* False once checkpoints have failed for longer than the options' checkpoint_stale_ms since
 * the last one written (or the start), with the reason and the last error in reason: what is
 * counted from then on would be read again, or lost with the state dir. */
bool keng_consumer_checkpoint_ok(const keng_consumer_t *c, char *reason, size_t reason_size);

typedef struct keng_consumer_stats {
    uint64_t counted;
    uint64_t duplicates;
    uint64_t deadlettered;
    uint64_t board_moves; /* a board's events began to come from another partition too */
    uint64_t checkpoints;
    uint64_t checkpoint_failures;
    uint64_t units_damaged;     /* checkpointed unit records that failed their check at loading */
    uint64_t fenced;            /* times the group coordinator fenced this static member */
    uint64_t rejoins;           /* times it rejoined under its id with a new Kafka handle */
    uint64_t handles_abandoned; /* fenced handles librdkafka could not destroy */
    uint64_t schema_waits;      /* times a partition paused for a new schema id */
    uint64_t board_waits;       /* times a partition paused for a registry version's new board */
    uint64_t schema_lookups;    /* schema ids the registry answered (found or 404) */
    uint64_t schema_lookup_failures; /* lookups the registry did not answer */
    double last_checkpoint_seconds;
    int64_t last_checkpoint_ms; /* by keng_consumer_now; the start before the first */
} keng_consumer_stats_t;

void keng_consumer_stats(const keng_consumer_t *c, keng_consumer_stats_t *out);

/* Whether an event of board_id, which the registry in use lacks, is to wait rather than be
 * dead-lettered: true when a registry version about to take effect has the board (clocks
 * differ between machines, and keng-ingest may take a new board a moment before this
 * program switches). Called on the loop thread. */
typedef bool (*keng_consumer_board_wait_fn)(const char *board_id, void *arg);

/* Sets that question (fn NULL: every unknown board is dead-lettered, the default). A
 * partition whose message waits pauses there, is asked again every second, and goes on when
 * the answer turns false (the version was deleted or refused: the event is dead-lettered) or
 * when the program stops to take the version (started again, it counts the event). */
void keng_consumer_set_board_wait(keng_consumer_t *c, keng_consumer_board_wait_fn fn, void *arg);

/* Schema Registry mode: from now on a message's schema id is the registry's; an id not seen
 * before is looked up there on the loop through client (once, then cached in the decoder),
 * with its partition paused meanwhile; an id the registry answers 404 for is dead-lettered
 * (reason unknown-schema-id); while the registry does not answer the partition waits and
 * nothing is dead-lettered. Call right after keng_consumer_new, before the loop runs again.
 * client and conf are borrowed and must outlive the consumer. Returns 0. */
int keng_consumer_use_schema_registry(keng_consumer_t *c, keng_http_client_t *client,
                                      keng_schemareg_conf_t *conf);

/* Whether the scope's counts may lack events that retention deleted before this instance
 * read them (it read a partition from its first retained event to rebuild them): the number
 * of its boards so, and the latest time before which their events may be missing. A window
 * that starts at or after *before_ms is complete. */
bool keng_consumer_incomplete(const keng_consumer_t *c, keng_level_t level, uint32_t index,
                              int64_t *before_ms, size_t *boards);

/* Calls fn for every such gap of this instance's partitions: a partition rebuilt whole
 * (board NULL), or one board's unit. */
void keng_consumer_each_gone(const keng_consumer_t *c,
                             void (*fn)(const char *topic, int32_t partition, int64_t before_ms,
                                        const char *board, void *arg),
                             void *arg);

/* Calls fn for every dead-letter reason seen since start, with its count. */
void keng_consumer_each_deadletter(const keng_consumer_t *c,
                                   void (*fn)(const char *reason, uint64_t count, void *arg),
                                   void *arg);

/* Calls fn for every assigned partition with its lag: the high watermark librdkafka last saw
 * minus the next offset to count (the whole partition before the first message). */
void keng_consumer_each_partition(const keng_consumer_t *c,
                                  void (*fn)(const char *topic, int32_t partition, int64_t lag,
                                             void *arg),
                                  void *arg);

/* Alert rules (added with the alerts; both borrowed, NULL for none): counted events are noted
 * to alerts, which is evaluated after each batch and on the window timer, its transitions
 * reaching log through alerts' emit callback (the caller connects them). Its state and log's
 * positions are checkpointed with the counts and offsets, under KENG_CHECKPOINT_ALERTS and
 * KENG_CHECKPOINT_ALERTLOG, and a checkpoint waits until log has no transition in flight.
 * Nothing is evaluated before the consumer is ready (caught up), when every scope is
 * evaluated once. Only scopes whose counts are complete here are evaluated: boards of
 * assigned partitions, and the scopes above a board while every partition of the topic is
 * assigned here. On a rebalance, the alerts of boards that leave are let go without a
 * transition, and those of boards that come are taken over from the alert topic (read for
 * at most read_timeout_ms). Call after keng_consumer_new, before the loop runs. */
#define KENG_CHECKPOINT_ALERTS   "alerts"
#define KENG_CHECKPOINT_ALERTLOG "alertlog"
#define KENG_CHECKPOINT_GONE     "gone"
void keng_consumer_set_alerts(keng_consumer_t *c, keng_alerts_t *alerts, keng_alertlog_t *log,
                              int read_timeout_ms);

/* Shares the counts with the other instances of the group through the counts topic
 * (cluster.h; borrowed, must outlive the consumer). Call before the loop runs; without it,
 * the instance counts alone. */
void keng_consumer_set_cluster(keng_consumer_t *c, keng_cluster_t *cluster);

#endif
