/* The dead-letter topic: a message keng-aggregate cannot count is produced there unchanged (key
 * and value), with headers that say why (keng.reason, keng.error) and where it came from
 * (keng.source.topic, keng.source.partition, keng.source.offset); nothing here decides what is
 * dead-lettered.
 *
 * Thread: loop thread only; delivery reports are served by a uv_timer on the same loop. */
#ifndef KENG_DEADLETTER_H
#define KENG_DEADLETTER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

typedef struct keng_deadletter keng_deadletter_t;

/* A producer of topic with conf (taken, also on failure). Returns NULL with errstr filled.
 * The caller owns it and gives it back with keng_deadletter_close, which frees it. */
keng_deadletter_t *keng_deadletter_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic,
                                       char *errstr, size_t errstr_size);

/* Queues msg's key and value (copied) for the dead-letter topic with the reason headers.
 * reason is short and fixed ("unknown-board"), error a sentence. Returns 0, or -1 when
 * librdkafka refused the message (then it is logged and counted as failed). */
int keng_deadletter_send(keng_deadletter_t *dl, const rd_kafka_message_t *msg, const char *reason,
                         const char *error);

/* Messages queued but not yet acknowledged by the broker; a checkpoint waits for them, so
 * that a checkpointed offset never skips a dead letter that was lost. */
int keng_deadletter_in_flight(const keng_deadletter_t *dl);

/* Messages the broker acknowledged, and those that failed for good. */
uint64_t keng_deadletter_delivered(const keng_deadletter_t *dl);
uint64_t keng_deadletter_failed(const keng_deadletter_t *dl);

/* Blocks the loop up to timeout_ms until every queued message is acknowledged. Returns 0
 * when none is left in flight, -1 otherwise. */
int keng_deadletter_flush(keng_deadletter_t *dl, int timeout_ms);

/* Flushes up to timeout_ms, destroys the producer and closes the timer; the memory goes in
 * the close callback. */
void keng_deadletter_close(keng_deadletter_t *dl, int timeout_ms);

#endif
