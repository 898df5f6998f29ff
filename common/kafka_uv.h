/* Brings a librdkafka queue into a libuv loop, never reading the queue itself: librdkafka
 * writes a byte to a non-blocking pipe when the queue goes from empty to non-empty, and a
 * uv_poll on the pipe calls back on the loop thread. The callback must drain the queue until it
 * is empty, or it is not woken again. */
#ifndef KENG_KAFKA_UV_H
#define KENG_KAFKA_UV_H

#include <librdkafka/rdkafka.h>
#include <uv.h>

typedef struct keng_kafka_uv keng_kafka_uv_t;

typedef void (*keng_kafka_uv_ready_fn)(void *arg);

/* Watches queue (borrowed; it must outlive the watcher) and calls ready on the loop thread
 * whenever it may hold events. Also calls ready on the loop's next
 * turn, since the queue may already hold events. Returns NULL with errstr filled on failure. */
keng_kafka_uv_t *keng_kafka_uv_new(uv_loop_t *loop, rd_kafka_queue_t *queue,
                                   keng_kafka_uv_ready_fn ready, void *arg, char *errstr,
                                   size_t errstr_size);

/* Stops watching: disables the queue's io event, closes the poll handle and the pipe; the
 * memory goes in the close callback. */
void keng_kafka_uv_close(keng_kafka_uv_t *w);

#endif
