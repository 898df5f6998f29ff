/* The idempotent Kafka producer shared by the producer programs: encoding, keys, topics,
 * back-pressure on a full queue, and delivery reports per message and per batch; it never
 * decides what to send or when (the programs do). */
#include "producer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avro_codec.h"
#include "kafka_denied.h"
#include "kafka_health.h"
#include "kafka_uv.h"
#include "log.h"
#include "program.h"
#include "timeutil.h"

/* Framed Avro of the largest event: a 4 KiB summary plus ids, times and enums. */
#define ENCODE_BUF_SIZE (16 * 1024)

/* How long one wait for room in a full queue serves reports before trying again. */
#define QUEUE_FULL_POLL_MS 50

struct keng_producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt[KENG_KIND_COUNT];
    rd_kafka_queue_t *mainq; /* kept while a libuv watcher may borrow it */
    keng_kafka_uv_t *uv;
    keng_schema_store_t *store;
    keng_avro_encoder_t *enc;
    unsigned char *buf;
    keng_producer_stats_t stats;
};

/* What travels with each message as librdkafka's per-message opaque. */
struct pmsg {
    keng_producer_dr_fn cb;
    void *opaque;
};

struct keng_producer_batch {
    keng_producer_t *p;
    keng_producer_batch_fn done;
    void *arg;
    size_t added;
    size_t outstanding; /* enqueued, report not yet in */
    size_t delivered;
    size_t failed;
    rd_kafka_resp_err_t err; /* first error */
    bool sealed;
    bool done_called;
};

/* Runs on the thread that serves the main queue (see producer.h). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *conf_opaque)
{
    keng_producer_t *p = conf_opaque;
    struct pmsg *pm = m->_private;

    if (m->err) {
        p->stats.failed++;
        keng_kafka_denied(KENG_KAFKA_PRODUCER, m->err, rd_kafka_topic_name(m->rkt),
                          rd_kafka_err2str(m->err));
    } else {
        p->stats.delivered++;
    }
    if (!pm)
        return;
    if (pm->cb)
        pm->cb(pm->opaque, m->err, m->partition, m->err ? -1 : m->offset);
    free(pm);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    keng_kafka_health_note(KENG_KAFKA_PRODUCER, err);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[256];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        keng_log_error("kafka producer failed for good", "error=%s reason=\"%s\"",
                       rd_kafka_err2name(ferr), fatal);
        keng_kafka_denied(KENG_KAFKA_PRODUCER, ferr, NULL, fatal);
        return;
    }
    if (keng_kafka_denied(KENG_KAFKA_PRODUCER, err, NULL, reason))
        return;
    keng_log_warn("kafka error", "error=%s reason=\"%s\"", rd_kafka_err2name(err), reason);
}

/* librdkafka's threads call this; keng_log writes each line with one write(2). Errors that
 * matter also come through on_error, so librdkafka's own lines are debug unless critical. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    keng_log(level <= 2 ? KENG_LOG_ERROR : KENG_LOG_DEBUG, "librdkafka",
             "facility=%s detail=\"%s\"", fac, buf);
}

keng_config_keys_t keng_producer_config_keys = {"topic.incidents", "topic.mediations", NULL};

keng_producer_t *keng_producer_new(const keng_config_t *cfg, char *errstr, size_t errstr_size)
{
    keng_producer_t *p = NULL;
    rd_kafka_conf_t *conf = NULL;
    const char *topics[KENG_KIND_COUNT];
    char why[512];

    p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    p->buf = malloc(ENCODE_BUF_SIZE);
    if (!p->buf) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    /* schemas.dir and schemas.writer.<subject> choose what is written (the newest by default). */
    p->store = keng_schema_store_from_config(cfg, errstr, errstr_size);
    if (!p->store)
        goto fail;
    p->enc = keng_avro_encoder_new(p->store, errstr, errstr_size);
    if (!p->enc)
        goto fail;

    conf = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, errstr_size);
    if (!conf)
        goto fail;
    /* Idempotence and acks=all are what make "delivered" mean "in Kafka, once": never let
     * a config file weaken them. */
    if (keng_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "acks", "all", errstr, errstr_size) < 0)
        goto fail;
    if (!keng_config_get(cfg, "kafka.message.timeout.ms", NULL) &&
        !keng_config_get(cfg, "kafka.delivery.timeout.ms", NULL)) {
        char v[32];
        snprintf(v, sizeof(v), "%d", KENG_PRODUCER_MESSAGE_TIMEOUT_MS);
        if (keng_kafka_conf_set(conf, "message.timeout.ms", v, errstr, errstr_size) < 0)
            goto fail;
    }
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);

    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!p->rk) {
        snprintf(errstr, errstr_size, "cannot create the kafka producer: %s", why);
        goto fail;
    }
    conf = NULL; /* owned by rk now */

    topics[KENG_KIND_INCIDENT] =
        keng_config_get(cfg, "topic.incidents", KENG_TOPIC_INCIDENTS_DEFAULT);
    topics[KENG_KIND_MEDIATION] =
        keng_config_get(cfg, "topic.mediations", KENG_TOPIC_MEDIATIONS_DEFAULT);
    for (int k = 0; k < KENG_KIND_COUNT; k++) {
        p->rkt[k] = rd_kafka_topic_new(p->rk, topics[k], NULL);
        if (!p->rkt[k]) {
            snprintf(errstr, errstr_size, "cannot use topic '%s': %s", topics[k],
                     rd_kafka_err2str(rd_kafka_last_error()));
            goto fail;
        }
    }
    p->mainq = rd_kafka_queue_get_main(p->rk);
    return p;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    keng_producer_destroy(p, 0);
    return NULL;
}

void keng_producer_destroy(keng_producer_t *p, int timeout_ms)
{
    if (!p)
        return;
    if (p->uv)
        keng_producer_detach_uv(p);
    if (p->rk) {
        rd_kafka_flush(p->rk, timeout_ms > 0 ? timeout_ms : 0);
        if (rd_kafka_outq_len(p->rk) > 0) {
            /* Purged messages get their reports with a _PURGE_ error; serving them frees
             * every pmsg and lets every batch finish. */
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            int64_t deadline = keng_monotonic_ms() + 5000;
            while (rd_kafka_outq_len(p->rk) > 0 && keng_monotonic_ms() < deadline)
                rd_kafka_poll(p->rk, 50);
        }
        rd_kafka_poll(p->rk, 0);
    }
    for (int k = 0; k < KENG_KIND_COUNT; k++)
        if (p->rkt[k])
            rd_kafka_topic_destroy(p->rkt[k]);
    if (p->mainq)
        rd_kafka_queue_destroy(p->mainq);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    if (p->enc)
        keng_avro_encoder_destroy(p->enc);
    if (p->store)
        keng_schema_store_destroy(p->store);
    free(p->buf);
    free(p);
}

const char *keng_producer_topic(const keng_producer_t *p, keng_kind_t kind)
{
    if ((int)kind < 0 || kind >= KENG_KIND_COUNT)
        return NULL;
    return rd_kafka_topic_name(p->rkt[kind]);
}

int keng_producer_send(keng_producer_t *p, const keng_event_t *ev, keng_producer_dr_fn cb,
                       void *opaque, int timeout_ms, rd_kafka_resp_err_t *err, char *errstr,
                       size_t errstr_size)
{
    struct pmsg *pm = NULL;
    size_t len = 0;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    char why[256];
    int64_t deadline = keng_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);

    if ((int)ev->kind < 0 || ev->kind >= KENG_KIND_COUNT) {
        e = RD_KAFKA_RESP_ERR__INVALID_ARG;
        snprintf(errstr, errstr_size, "event %s: unknown kind %d", ev->event_id, (int)ev->kind);
        goto fail;
    }
    if (keng_avro_encode(p->enc, ev, p->buf, ENCODE_BUF_SIZE, &len, why, sizeof(why)) < 0) {
        e = RD_KAFKA_RESP_ERR__INVALID_ARG;
        snprintf(errstr, errstr_size, "event %s: cannot encode: %s", ev->event_id, why);
        goto fail;
    }
    pm = malloc(sizeof(*pm));
    if (!pm) {
        e = RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE;
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    pm->cb = cb;
    pm->opaque = opaque;

    for (;;) {
        e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_RKT(p->rkt[ev->kind]), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE(p->buf, len),
            RD_KAFKA_V_KEY(ev->board_id, strlen(ev->board_id)), RD_KAFKA_V_OPAQUE(pm),
            RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        /* Back-pressure: the queue is bounded by queue.buffering.max.*; make room by
         * serving reports, never by buffering here. */
        int64_t left = deadline - keng_monotonic_ms();
        if (left <= 0)
            break;
        p->stats.queue_full_waits++;
        rd_kafka_poll(p->rk, left < QUEUE_FULL_POLL_MS ? (int)left : QUEUE_FULL_POLL_MS);
    }
    if (e) {
        if (e == RD_KAFKA_RESP_ERR__FATAL) {
            char fatal[256];
            rd_kafka_fatal_error(p->rk, fatal, sizeof(fatal));
            snprintf(errstr, errstr_size, "kafka producer failed for good: %s", fatal);
        } else if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            snprintf(errstr, errstr_size,
                     "kafka cannot take more events now (queue full for %d ms); retry later",
                     timeout_ms);
        } else {
            snprintf(errstr, errstr_size, "event %s: cannot produce: %s", ev->event_id,
                     rd_kafka_err2str(e));
        }
        goto fail;
    }
    p->stats.sent++;
    return 0;

fail:
    free(pm);
    if (err)
        *err = e;
    return -1;
}

static void batch_maybe_finish(keng_producer_batch_t *b)
{
    if (!b->sealed)
        return;
    if (!b->done_called && (b->err || b->outstanding == 0)) {
        b->done_called = true;
        b->done(b, b->err, b->delivered, b->failed, b->arg);
    }
    if (b->done_called && b->outstanding == 0)
        free(b);
}

static void batch_on_delivery(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
                              int64_t offset)
{
    keng_producer_batch_t *b = opaque;

    b->outstanding--;
    if (err) {
        b->failed++;
        if (!b->err)
            b->err = err;
    } else {
        b->delivered++;
    }
    batch_maybe_finish(b);
}

keng_producer_batch_t *keng_producer_batch_new(keng_producer_t *p, keng_producer_batch_fn done,
                                               void *arg)
{
    keng_producer_batch_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->p = p;
    b->done = done;
    b->arg = arg;
    return b;
}

int keng_producer_batch_add(keng_producer_batch_t *b, const keng_event_t *ev, int timeout_ms,
                            char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (b->sealed) {
        snprintf(errstr, errstr_size, "the batch is sealed; start a new one");
        return -1;
    }
    b->added++;
    /* Counted before the send: a report served while send waits for room may be this
     * batch's own, and must not see outstanding drop below zero. */
    b->outstanding++;
    if (keng_producer_send(b->p, ev, batch_on_delivery, b, timeout_ms, &err, errstr, errstr_size) <
        0) {
        b->outstanding--;
        b->failed++;
        if (!b->err)
            b->err = err ? err : RD_KAFKA_RESP_ERR__FAIL;
        return -1;
    }
    return 0;
}

void keng_producer_batch_seal(keng_producer_batch_t *b)
{
    b->sealed = true;
    batch_maybe_finish(b);
}

size_t keng_producer_batch_size(const keng_producer_batch_t *b)
{
    return b->added;
}

int keng_producer_poll(keng_producer_t *p, int timeout_ms)
{
    return rd_kafka_poll(p->rk, timeout_ms);
}

int keng_producer_flush(keng_producer_t *p, int timeout_ms, char *errstr, size_t errstr_size)
{
    if (rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    snprintf(errstr, errstr_size, "%d events still unacknowledged after %d ms",
             rd_kafka_outq_len(p->rk), timeout_ms);
    return -1;
}

/* On the loop thread. The pipe is written only when the queue goes from empty to non-empty,
 * so the queue must be left empty. */
static void on_queue_ready(void *arg)
{
    keng_producer_t *p = arg;
    while (rd_kafka_poll(p->rk, 0) > 0)
        ;
}

int keng_producer_attach_uv(keng_producer_t *p, uv_loop_t *loop, char *errstr, size_t errstr_size)
{
    if (p->uv) {
        snprintf(errstr, errstr_size, "the producer is already attached to a loop");
        return -1;
    }
    p->uv = keng_kafka_uv_new(loop, p->mainq, on_queue_ready, p, errstr, errstr_size);
    return p->uv ? 0 : -1;
}

void keng_producer_detach_uv(keng_producer_t *p)
{
    if (!p->uv)
        return;
    keng_kafka_uv_close(p->uv);
    p->uv = NULL;
}

void keng_producer_get_stats(const keng_producer_t *p, keng_producer_stats_t *out)
{
    *out = p->stats;
    out->in_flight = rd_kafka_outq_len(p->rk);
}

rd_kafka_t *keng_producer_handle(keng_producer_t *p)
{
    return p->rk;
}

const char *keng_producer_writer_schema(const keng_producer_t *p, keng_kind_t kind,
                                        const char **json)
{
    return keng_avro_encoder_writer(p->enc, kind, json);
}

void keng_producer_set_schema_id(keng_producer_t *p, keng_kind_t kind, int32_t id)
{
    keng_avro_encoder_set_id(p->enc, kind, id);
}

/* Sleeps ms in short steps, so that a stop is seen within 100 ms. Returns 1 when stopped. */
static int pause_unless_stopped(long ms, volatile sig_atomic_t *stop)
{
    for (long slept = 0; slept < ms; slept += 100) {
        if (*stop)
            return 1;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return *stop ? 1 : 0;
}

int keng_producer_use_registry(keng_producer_t *p, keng_schemareg_conf_t *conf,
                               volatile sig_atomic_t *stop)
{
    for (int k = 0; k < KENG_KIND_COUNT; k++) {
        const char *json, *record = keng_producer_writer_schema(p, (keng_kind_t)k, &json);
        const char *subject = record ? keng_schemareg_subject(conf, record) : NULL;
        char errstr[1024];
        long backoff = 500;
        int32_t id = 0;
        int rc;

        if (!subject)
            continue;
        for (;;) {
            rc = keng_schemareg_lookup(conf, subject, json, &id, NULL, errstr, sizeof(errstr));
            if (rc == KENG_SCHEMAREG_NOT_FOUND)
                rc = keng_schemareg_register(conf, subject, json, &id, errstr, sizeof(errstr));
            if (rc != KENG_SCHEMAREG_UNREACHABLE)
                break;
            keng_log_warn("the schema registry does not answer; nothing is sent until it does "
                          "(no fallback to the manifest's ids)",
                          "subject=%s retry_ms=%ld error=\"%s\"", subject, backoff, errstr);
            if (pause_unless_stopped(backoff, stop))
                return 1;
            backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
        }
        if (rc != KENG_SCHEMAREG_OK) {
            keng_log_error("the schema registry refused keng's writer schema",
                           "subject=%s record=%s error=\"%s\"", subject, record, errstr);
            return KENG_EXIT_CONFIG;
        }
        keng_producer_set_schema_id(p, (keng_kind_t)k, id);
        keng_log_info("writer schema id from the schema registry", "subject=%s record=%s id=%d",
                      subject, record, (int)id);
    }
    return 0;
}
