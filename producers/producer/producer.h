/* The Kafka producer that keng-produce, keng-simulate and keng-ingest share: idempotent
 * (acks=all), events Avro-encoded with the Confluent framing, key = board_id, and a delivery
 * callback for every message and for every batch of messages; it never reads from Kafka.
 *
 * Threads. A keng_producer_t is used from one thread at a time (it owns one Avro encoder).
 * Every callback (per message, per batch) runs on the thread that serves delivery reports:
 * the one inside keng_producer_poll(), keng_producer_flush(), keng_producer_destroy(), or
 * keng_producer_send()/keng_producer_batch_add() while they wait out a full queue, or the
 * libuv loop's thread after keng_producer_attach_uv(). librdkafka's own threads never run
 * keng callbacks. */
#ifndef KENG_PRODUCER_H
#define KENG_PRODUCER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "config.h"
#include "event.h"
#include "schemareg.h"

typedef struct keng_producer keng_producer_t;
typedef struct keng_producer_batch keng_producer_batch_t;

/* Default topics; the config keys topic.incidents and topic.mediations override them. */
#define KENG_TOPIC_INCIDENTS_DEFAULT  "antt.incidents"
#define KENG_TOPIC_MEDIATIONS_DEFAULT "antt.mediations"

/* How long a message may wait for its acknowledgement unless kafka.message.timeout.ms says
 * otherwise. After it the message fails with RD_KAFKA_RESP_ERR__MSG_TIMED_OUT. */
#define KENG_PRODUCER_MESSAGE_TIMEOUT_MS 30000

/* One message's outcome: err is RD_KAFKA_RESP_ERR_NO_ERROR once the partition leader and its
 * in-sync replicas have it (acks=all), else the reason it will never be written by this
 * call. partition and offset are -1 when unknown. */
typedef void (*keng_producer_dr_fn)(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
                                    int64_t offset);

/* A batch's outcome, called once: err is RD_KAFKA_RESP_ERR_NO_ERROR when every event of the
 * batch was acknowledged, else the first error (a failed enqueue, a failed or timed-out
 * delivery). It runs as soon as the outcome is known, which for a failure may be before the
 * other events of the batch have their reports: those may still be written (they carry
 * their event ids, so a retry of the whole batch is counted once). delivered and failed are
 * the counts known at that moment. */
typedef void (*keng_producer_batch_fn)(keng_producer_batch_t *batch, rd_kafka_resp_err_t err,
                                       size_t delivered, size_t failed, void *arg);

typedef struct keng_producer_stats {
    uint64_t sent;      /* accepted by librdkafka */
    uint64_t delivered; /* acknowledged */
    uint64_t failed;    /* reported failed (including purged at destroy) */
    uint64_t queue_full_waits;
    int in_flight; /* messages and requests librdkafka still holds */
} keng_producer_stats_t;

/* A producer for the brokers and kafka.* keys of cfg (borrowed; only read here), with
 * enable.idempotence=true and acks=all on top. Returns NULL with errstr filled when the
 * config is refused or librdkafka cannot start. Connecting happens in the background: a
 * missing broker shows up as delivery failures after the message timeout. */
keng_producer_t *keng_producer_new(const keng_config_t *cfg, char *errstr, size_t errstr_size);

/* The keys keng_producer_new reads besides kafka.* and the schema store's (see
 * keng_config_check). */
extern keng_config_keys_t keng_producer_config_keys;

/* Serves what delivery reports remain for up to timeout_ms, purges the rest (their callbacks
 * run with RD_KAFKA_RESP_ERR__PURGE_QUEUE or _PURGE_INFLIGHT, so no batch is left hanging),
 * then frees everything. Detach from libuv first (keng_producer_detach_uv). */
void keng_producer_destroy(keng_producer_t *p, int timeout_ms);

/* The topic that events of kind go to. Borrowed from p. */
const char *keng_producer_topic(const keng_producer_t *p, keng_kind_t kind);

/* Encodes ev (borrowed; only read during the call) and hands it to librdkafka with a copy of
 * the bytes. When librdkafka's queue is full it serves delivery reports and retries until
 * timeout_ms (0: no wait), so memory stays bounded by queue.buffering.max.messages/kbytes.
 * Returns 0 and later calls cb(opaque, ...) exactly once; or returns -1 with errstr filled
 * (and *err set when err is not NULL: _QUEUE_FULL, _MSG_SIZE_TOO_LARGE, _INVALID_ARG for an
 * event the schema refuses, or librdkafka's fatal error), and cb never runs. cb may be NULL. */
int keng_producer_send(keng_producer_t *p, const keng_event_t *ev, keng_producer_dr_fn cb,
                       void *opaque, int timeout_ms, rd_kafka_resp_err_t *err, char *errstr,
                       size_t errstr_size);

/* A new, empty batch. done runs once, after keng_producer_batch_seal(); the batch's memory is
 * freed by the producer once the last report of its events is in, so the caller must not
 * touch batch after done has run. Returns NULL on allocation failure. */
keng_producer_batch_t *keng_producer_batch_new(keng_producer_t *p, keng_producer_batch_fn done,
                                               void *arg);

/* Adds one event, as keng_producer_send. On failure returns -1 with errstr filled and marks
 * the batch failed with that error; the caller still seals it. Adding to a sealed batch is a
 * programming error (returns -1). */
int keng_producer_batch_add(keng_producer_batch_t *batch, const keng_event_t *ev, int timeout_ms,
                            char *errstr, size_t errstr_size);

/* No more events: from now on done may run. When the outcome is already known (every event
 * already acknowledged, an empty batch, or a failure already seen) done runs inside this
 * call, on the calling thread. */
void keng_producer_batch_seal(keng_producer_batch_t *batch);

/* Number of events added to the batch. */
size_t keng_producer_batch_size(const keng_producer_batch_t *batch);

/* Serves delivery reports for up to timeout_ms (0: only what is ready). Returns the number of
 * events served. The callbacks run inside this call. */
int keng_producer_poll(keng_producer_t *p, int timeout_ms);

/* Waits until every message sent so far has its report, serving them, for up to
 * timeout_ms. Returns 0, or -1 with the count still outstanding in errstr when time ran out.
 * For the command-line programs, before they exit. */
int keng_producer_flush(keng_producer_t *p, int timeout_ms, char *errstr, size_t errstr_size);

/* Serves delivery reports on loop's thread from now on: librdkafka signals its main queue
 * through a non-blocking pipe watched by uv_poll (common/kafka_uv.h), and the watcher drains
 * the queue each time. After this, call keng_producer_poll only from the loop thread, if at
 * all. Returns 0, or -1 with errstr filled. */
int keng_producer_attach_uv(keng_producer_t *p, uv_loop_t *loop, char *errstr, size_t errstr_size);

/* Stops serving reports from the loop (closing the watcher asynchronously). */
void keng_producer_detach_uv(keng_producer_t *p);

/* ---- Schema Registry ids (schema.registry.url; common/schemareg/) ---- */

/* The writer schema p encodes kind with: its record's full name, and *json (may be NULL) its
 * JSON, both borrowed from p; NULL when p writes no such kind. */
const char *keng_producer_writer_schema(const keng_producer_t *p, keng_kind_t kind,
                                        const char **json);

/* Frames kind's events with id (the registry's id of the writer schema) from the next send
 * on. Same thread as the sends. */
void keng_producer_set_schema_id(keng_producer_t *p, keng_kind_t kind, int32_t id);

/* For the command-line producers, before their first send: looks up each writer schema
 * under its subject in the registry, registering it when it is not there, and frames with
 * the ids found. While no registry answers it says so in the log and tries again with a
 * growing pause (0.5 s doubling to 30 s), until *stop is set; it never falls back to the
 * manifest's ids. Returns 0; 1 when *stop was set first; or KENG_EXIT_CONFIG after logging
 * why when the registry refused a schema (incompatible with its subject, or not allowed). */
int keng_producer_use_registry(keng_producer_t *p, keng_schemareg_conf_t *conf,
                               volatile sig_atomic_t *stop);

void keng_producer_get_stats(const keng_producer_t *p, keng_producer_stats_t *out);

/* The librdkafka handle, borrowed, for metrics and tests. */
rd_kafka_t *keng_producer_handle(keng_producer_t *p);

#endif
