/* Producer side of keng-aggregate: what it cannot count goes to the dead-letter topic with the
 * reason in headers, so that an operator can inspect and replay it; it never changes a
 * message's key or value. */
#include "deadletter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_denied.h"
#include "log.h"

#define POLL_INTERVAL_MS 50

struct keng_deadletter {
    uv_timer_t timer; /* serves delivery reports */
    rd_kafka_t *rk;
    char *topic;
    int in_flight;
    uint64_t delivered;
    uint64_t failed;
};

/* Called from rd_kafka_poll, so on the loop thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    keng_deadletter_t *dl = opaque;

    dl->in_flight--;
    if (msg->err) {
        dl->failed++;
        keng_kafka_denied(KENG_KAFKA_PRODUCER, msg->err, dl->topic, rd_kafka_err2str(msg->err));
        keng_log_error("a dead letter was lost", "topic=%s error=\"%s\"", dl->topic,
                       rd_kafka_err2str(msg->err));
    } else {
        dl->delivered++;
    }
}

static void on_timer(uv_timer_t *timer)
{
    keng_deadletter_t *dl = timer->data;

    rd_kafka_poll(dl->rk, 0);
}

keng_deadletter_t *keng_deadletter_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic,
                                       char *errstr, size_t errstr_size)
{
    keng_deadletter_t *dl = calloc(1, sizeof(*dl));

    if (!dl || !(dl->topic = strdup(topic))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    /* Idempotence keeps dead letters in order and free of duplicates within one run. */
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) !=
        RD_KAFKA_CONF_OK)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, dl);
    dl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!dl->rk)
        goto fail;
    conf = NULL; /* rd_kafka_new took it */
    uv_timer_init(loop, &dl->timer);
    dl->timer.data = dl;
    uv_timer_start(&dl->timer, on_timer, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
    return dl;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (dl)
        free(dl->topic);
    free(dl);
    return NULL;
}

int keng_deadletter_send(keng_deadletter_t *dl, const rd_kafka_message_t *msg, const char *reason,
                         const char *error)
{
    char partition[16], offset[24];
    const char *src = rd_kafka_topic_name(msg->rkt);
    rd_kafka_resp_err_t err;

    snprintf(partition, sizeof(partition), "%" PRId32, msg->partition);
    snprintf(offset, sizeof(offset), "%" PRId64, msg->offset);
    err = rd_kafka_producev(
        dl->rk, RD_KAFKA_V_TOPIC(dl->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(msg->key, msg->key_len), RD_KAFKA_V_VALUE(msg->payload, msg->len),
        RD_KAFKA_V_HEADER("keng.reason", reason, -1), RD_KAFKA_V_HEADER("keng.error", error, -1),
        RD_KAFKA_V_HEADER("keng.source.topic", src, -1),
        RD_KAFKA_V_HEADER("keng.source.partition", partition, -1),
        RD_KAFKA_V_HEADER("keng.source.offset", offset, -1), RD_KAFKA_V_END);
    if (err) {
        dl->failed++;
        keng_log_error("a dead letter could not be queued", "topic=%s reason=%s error=\"%s\"",
                       dl->topic, reason, rd_kafka_err2str(err));
        return -1;
    }
    dl->in_flight++;
    return 0;
}

int keng_deadletter_in_flight(const keng_deadletter_t *dl)
{
    return dl->in_flight;
}

uint64_t keng_deadletter_delivered(const keng_deadletter_t *dl)
{
    return dl->delivered;
}

uint64_t keng_deadletter_failed(const keng_deadletter_t *dl)
{
    return dl->failed;
}

int keng_deadletter_flush(keng_deadletter_t *dl, int timeout_ms)
{
    if (dl->in_flight > 0)
        rd_kafka_flush(dl->rk, timeout_ms);
    return dl->in_flight > 0 ? -1 : 0;
}

static void on_close(uv_handle_t *handle)
{
    keng_deadletter_t *dl = handle->data;

    free(dl->topic);
    free(dl);
}

void keng_deadletter_close(keng_deadletter_t *dl, int timeout_ms)
{
    if (!dl)
        return;
    if (keng_deadletter_flush(dl, timeout_ms) != 0)
        keng_log_error("dead letters were not acknowledged before shutdown", "topic=%s count=%d",
                       dl->topic, dl->in_flight);
    rd_kafka_destroy(dl->rk);
    dl->rk = NULL;
    uv_timer_stop(&dl->timer);
    uv_close((uv_handle_t *)&dl->timer, on_close);
}
