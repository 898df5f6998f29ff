/* The alert topic (antt.alerts) as keng-aggregate's log of emitted transitions: an idempotent
 * producer (acks=all) of Confluent-framed Alert records keyed by fingerprint, the position
 * after the last acknowledged transition of every partition (checkpointed with the counts), and
 * the read-back of the transitions acknowledged after that checkpoint, so that a restart
 * neither repeats nor loses one. Acknowledged transitions go on to on_delivered (keng-aggregate
 * hands them to the webhook, Alertmanager and the stream), never before.
 *
 * Thread: loop thread only; delivery reports are served by a uv_timer on the same loop. */
#ifndef KENG_ALERTLOG_H
#define KENG_ALERTLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "alert.h"
#include "config.h"

typedef struct keng_alertlog keng_alertlog_t;

/* A producer of topic with conf (taken, also on failure). Returns NULL with errstr filled.
 * The caller owns the log and gives it back with keng_alertlog_close, which frees it. */
keng_alertlog_t *keng_alertlog_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic,
                                   char *errstr, size_t errstr_size);

/* Queues t (copied) for the topic. A delivery that fails is queued again, so a transition
 * stays in flight until the broker has it. Returns 0, or -1 when it cannot be encoded or
 * queued (logged; the caller's checkpoint must then not pass it: see in_flight). */
int keng_alertlog_send(keng_alertlog_t *log, const keng_alert_t *t);

/* Transitions queued but not acknowledged. A checkpoint waits for none to be left, so that
 * a checkpointed state never holds a transition that the topic does not. */
int keng_alertlog_in_flight(const keng_alertlog_t *log);

/* Blocks the loop up to timeout_ms until nothing is in flight. Returns 0 or -1. */
int keng_alertlog_flush(keng_alertlog_t *log, int timeout_ms);

/* Called for every acknowledged transition with its JSON (borrowed for the call). */
void keng_alertlog_on_delivered(keng_alertlog_t *log, void (*fn)(const char *json, void *arg),
                                void *arg);

/* The next offset after the last acknowledged transition of every partition, as bytes for
 * the checkpoint (appended to a malloc'd *buf the caller frees; returns 0 or -1), and back. load
 * returns 0, or -1 with errstr when the bytes are not such a list. */
int keng_alertlog_save(const keng_alertlog_t *log, unsigned char **buf, size_t *len);
int keng_alertlog_load(keng_alertlog_t *log, const unsigned char *buf, size_t len, char *errstr,
                       size_t errstr_size);
bool keng_alertlog_dirty(const keng_alertlog_t *log);
void keng_alertlog_mark_clean(keng_alertlog_t *log);

/* Reads the topic up to the high watermarks, from the loaded positions (from the start of
 * partitions without one), or from the start of every partition with from_start, and calls
 * fn for every Alert record (borrowed for the call), in each partition's order. Blocks up to
 * timeout_ms; cfg (borrowed) gives the connection. Then moves the positions to where it
 * stopped. Returns the number of records read, or -1 with errstr filled when the topic could
 * not be read to its end. */
long keng_alertlog_recover(keng_alertlog_t *log, const keng_config_t *cfg, bool from_start,
                           void (*fn)(const keng_alert_t *t, void *arg), void *arg, int timeout_ms,
                           char *errstr, size_t errstr_size);

/* Flushes up to timeout_ms, destroys the producer, closes the timer; the memory goes in the
 * close callback. */
void keng_alertlog_close(keng_alertlog_t *log, int timeout_ms);

#endif
