/* The bridge between a librdkafka queue and a libuv loop (see kafka_uv.h for the contract); it
 * never reads a message itself (the callback drains the queue). The pipe is non-blocking on
 * both ends: a blocking write end can stall librdkafka's thread when the loop is slow to read. */
#include "kafka_uv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct keng_kafka_uv {
    uv_poll_t poll;
    rd_kafka_queue_t *queue;
    int fds[2];
    keng_kafka_uv_ready_fn ready;
    void *arg;
};

static void on_readable(uv_poll_t *handle, int status, int events)
{
    keng_kafka_uv_t *w = handle->data;
    char buf[64];

    /* Empty the pipe first: a byte written after this point means new events arrived after
     * the drain below started, so the next wake-up cannot be lost. */
    while (read(w->fds[0], buf, sizeof(buf)) > 0)
        ;
    w->ready(w->arg);
}

keng_kafka_uv_t *keng_kafka_uv_new(uv_loop_t *loop, rd_kafka_queue_t *queue,
                                   keng_kafka_uv_ready_fn ready, void *arg, char *errstr,
                                   size_t errstr_size)
{
    keng_kafka_uv_t *w = calloc(1, sizeof(*w));
    int rc;

    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        free(w);
        return NULL;
    }
    w->queue = queue;
    w->ready = ready;
    w->arg = arg;
    rc = uv_poll_init(loop, &w->poll, w->fds[0]);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "uv_poll_init: %s", uv_strerror(rc));
        close(w->fds[0]);
        close(w->fds[1]);
        free(w);
        return NULL;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    rd_kafka_queue_io_event_enable(queue, w->fds[1], "k", 1);
    /* Events queued before the io event was enabled wrote nothing to the pipe; one byte of
     * our own makes the loop look at the queue on its next turn. */
    if (write(w->fds[1], "k", 1) < 0) {
        /* The pipe is full, so a wake-up is already pending. */
    }
    return w;
}

static void on_closed(uv_handle_t *handle)
{
    keng_kafka_uv_t *w = handle->data;

    close(w->fds[0]);
    close(w->fds[1]);
    free(w);
}

void keng_kafka_uv_close(keng_kafka_uv_t *w)
{
    if (!w)
        return;
    rd_kafka_queue_io_event_enable(w->queue, -1, NULL, 0);
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
