/* The alert topic: every transition is produced with the idempotent producer and stays in
 * flight until acknowledged; the positions after the acknowledged ones are checkpointed, and at
 * start the records after them are read back into the rule engine; a transition never goes on
 * before Kafka acknowledged it. */
#include "alertlog.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "avro_codec.h"
#include "failpoint.h"
#include "kafka_denied.h"
#include "log.h"
#include "timeutil.h"

#define POLL_INTERVAL_MS 50
#define VALUE_MAX        8192
#define PARTITIONS_MAX   4096
#define STATE_MAGIC0     'K'
#define STATE_MAGIC1     'L'
#define STATE_VERSION    1
#define RECOVER_POLL_MS  200

typedef struct pending {
    struct pending *next; /* in the retry list */
    keng_alertlog_t *log;
    char key[17];
    char alert_id[64];
    unsigned char *value;
    size_t len;
    char *json;
} pending_t;

struct keng_alertlog {
    uv_timer_t timer; /* serves delivery reports and requeues */
    rd_kafka_t *rk;
    char *topic;
    int in_flight;
    pending_t *retry;     /* acknowledged as failed, to produce again */
    int64_t *next_offset; /* by partition; -1 unknown */
    size_t npartitions;
    bool dirty;
    void (*on_delivered)(const char *json, void *arg);
    void *on_delivered_arg;
};

static void pending_free(pending_t *p)
{
    if (!p)
        return;
    free(p->value);
    free(p->json);
    free(p);
}

static int produce(keng_alertlog_t *log, pending_t *p)
{
    rd_kafka_resp_err_t err = rd_kafka_producev(
        log->rk, RD_KAFKA_V_TOPIC(log->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(p->key, strlen(p->key)), RD_KAFKA_V_VALUE(p->value, p->len),
        RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);

    if (err) {
        keng_log_warn("an alert could not be queued; will retry",
                      "topic=%s alert_id=%s error=\"%s\"", log->topic, p->alert_id,
                      rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static void set_offset(keng_alertlog_t *log, int32_t partition, int64_t next)
{
    if (partition < 0 || partition >= PARTITIONS_MAX)
        return;
    if ((size_t)partition >= log->npartitions) {
        size_t n = (size_t)partition + 1;
        int64_t *o = realloc(log->next_offset, n * sizeof(*o));
        if (!o)
            return;
        for (size_t i = log->npartitions; i < n; i++)
            o[i] = -1;
        log->next_offset = o;
        log->npartitions = n;
    }
    if (next > log->next_offset[partition]) {
        log->next_offset[partition] = next;
        log->dirty = true;
    }
}

/* Called from rd_kafka_poll, so on the loop thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    keng_alertlog_t *log = opaque;
    pending_t *p = msg->_private;

    (void)rk;
    if (msg->err) {
        keng_kafka_denied(KENG_KAFKA_PRODUCER, msg->err, log->topic, rd_kafka_err2str(msg->err));
        keng_log_error("an alert was not acknowledged; producing it again",
                       "topic=%s alert_id=%s error=\"%s\"", log->topic, p->alert_id,
                       rd_kafka_err2str(msg->err));
        p->next = log->retry;
        log->retry = p;
        return;
    }
    KENG_FAILPOINT("alerts.delivered");
    log->in_flight--;
    set_offset(log, msg->partition, msg->offset + 1);
    keng_log_info("alert delivered", "alert_id=%s partition=%" PRId32 " offset=%" PRId64,
                  p->alert_id, msg->partition, msg->offset);
    if (log->on_delivered)
        log->on_delivered(p->json, log->on_delivered_arg);
    pending_free(p);
}

static void on_timer(uv_timer_t *timer)
{
    keng_alertlog_t *log = timer->data;

    rd_kafka_poll(log->rk, 0);
    pending_t *list = log->retry;
    log->retry = NULL;
    while (list) {
        pending_t *p = list;
        list = p->next;
        if (produce(log, p) != 0) {
            p->next = log->retry;
            log->retry = p;
        }
    }
}

keng_alertlog_t *keng_alertlog_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic,
                                   char *errstr, size_t errstr_size)
{
    keng_alertlog_t *log = calloc(1, sizeof(*log));

    if (!log || !(log->topic = strdup(topic))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    /* Idempotence with acks=all: a transition is written once per send, in order. */
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", errstr, errstr_size) != RD_KAFKA_CONF_OK)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, log);
    log->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!log->rk)
        goto fail;
    conf = NULL; /* rd_kafka_new took it */
    uv_timer_init(loop, &log->timer);
    log->timer.data = log;
    uv_timer_start(&log->timer, on_timer, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
    return log;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (log)
        free(log->topic);
    free(log);
    return NULL;
}

int keng_alertlog_send(keng_alertlog_t *log, const keng_alert_t *t)
{
    char err[256];
    pending_t *p = calloc(1, sizeof(*p));
    json_t *j = NULL;

    if (!p || !(p->value = malloc(VALUE_MAX)))
        goto fail;
    if (keng_avro_encode_alert(t, p->value, VALUE_MAX, &p->len, err, sizeof(err)) != 0) {
        keng_log_error("an alert cannot be encoded", "alert_id=%s error=\"%s\"", t->alert_id, err);
        goto fail;
    }
    j = keng_alerts_json(t);
    if (!j || !(p->json = json_dumps(j, JSON_COMPACT)))
        goto fail;
    json_decref(j);
    j = NULL;
    p->log = log;
    snprintf(p->key, sizeof(p->key), "%s", t->fingerprint);
    snprintf(p->alert_id, sizeof(p->alert_id), "%s", t->alert_id);
    log->in_flight++;
    if (produce(log, p) != 0) {
        p->next = log->retry; /* the timer queues it again */
        log->retry = p;
    }
    return 0;

fail:
    if (j)
        json_decref(j);
    keng_log_error("an alert transition could not be sent", "alert_id=%s status=%s", t->alert_id,
                   keng_alert_status_names[t->status]);
    pending_free(p);
    return -1;
}

int keng_alertlog_in_flight(const keng_alertlog_t *log)
{
    return log->in_flight;
}

int keng_alertlog_flush(keng_alertlog_t *log, int timeout_ms)
{
    int64_t deadline = keng_monotonic_ms() + timeout_ms;

    /* rd_kafka_flush serves the delivery reports; requeued failures need another round. */
    while (log->in_flight > 0 && keng_monotonic_ms() < deadline) {
        on_timer(&log->timer);
        rd_kafka_flush(log->rk, 100);
    }
    rd_kafka_poll(log->rk, 0);
    return log->in_flight > 0 ? -1 : 0;
}

void keng_alertlog_on_delivered(keng_alertlog_t *log, void (*fn)(const char *json, void *arg),
                                void *arg)
{
    log->on_delivered = fn;
    log->on_delivered_arg = arg;
}

int keng_alertlog_save(const keng_alertlog_t *log, unsigned char **buf, size_t *len)
{
    size_t n = 0, need;
    unsigned char *b, *p;

    for (size_t i = 0; i < log->npartitions; i++)
        n += log->next_offset[i] >= 0;
    need = *len + 3 + 4 + n * 12;
    b = realloc(*buf, need);
    if (!b)
        return -1;
    p = b + *len;
    *p++ = STATE_MAGIC0;
    *p++ = STATE_MAGIC1;
    *p++ = STATE_VERSION;
    for (int i = 0; i < 4; i++)
        *p++ = (unsigned char)(n >> (8 * i));
    for (size_t i = 0; i < log->npartitions; i++) {
        if (log->next_offset[i] < 0)
            continue;
        for (int k = 0; k < 4; k++)
            *p++ = (unsigned char)(i >> (8 * k));
        for (int k = 0; k < 8; k++)
            *p++ = (unsigned char)((uint64_t)log->next_offset[i] >> (8 * k));
    }
    *buf = b;
    *len = need;
    return 0;
}

int keng_alertlog_load(keng_alertlog_t *log, const unsigned char *buf, size_t len, char *errstr,
                       size_t errstr_size)
{
    uint32_t n = 0;

    if (len < 7 || buf[0] != STATE_MAGIC0 || buf[1] != STATE_MAGIC1 || buf[2] != STATE_VERSION)
        goto bad;
    for (int i = 0; i < 4; i++)
        n |= (uint32_t)buf[3 + i] << (8 * i);
    if ((uint64_t)len != 7 + (uint64_t)n * 12)
        goto bad;
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = buf + 7 + 12 * (size_t)i;
        uint32_t part = 0;
        uint64_t off = 0;
        for (int k = 0; k < 4; k++)
            part |= (uint32_t)e[k] << (8 * k);
        for (int k = 0; k < 8; k++)
            off |= (uint64_t)e[4 + k] << (8 * k);
        if (part >= PARTITIONS_MAX || (int64_t)off < 0)
            goto bad;
        set_offset(log, (int32_t)part, (int64_t)off);
    }
    log->dirty = false;
    return 0;

bad:
    snprintf(errstr, errstr_size, "the checkpointed alert topic positions are corrupt");
    return -1;
}

bool keng_alertlog_dirty(const keng_alertlog_t *log)
{
    return log->dirty;
}

void keng_alertlog_mark_clean(keng_alertlog_t *log)
{
    log->dirty = false;
}

/* A private reader of the alert topic: it never joins a group and never commits. Returns
 * NULL with errstr filled; the caller owns the handle (close, then destroy). */
static rd_kafka_t *recovery_reader(const keng_config_t *cfg, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    if (!conf)
        return NULL;
    if (rd_kafka_conf_set(conf, "group.id", "keng-aggregate-alert-recovery", errstr, errstr_size) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) !=
            RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Notes each partition's end in end[] and adds to `assign` those with records after the
 * checkpointed position (after the start with from_start). Returns how many were added, or
 * -1 with errstr filled. */
static int plan_recovery(keng_alertlog_t *log, rd_kafka_t *rk, const struct rd_kafka_metadata *md,
                         bool from_start, int64_t deadline, int64_t *end,
                         rd_kafka_topic_partition_list_t *assign, char *errstr, size_t errstr_size)
{
    int nparts = md->topics[0].partition_cnt, remaining = 0;

    for (int i = 0; i < nparts; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t low = 0, high = 0, from;
        int64_t left = deadline - keng_monotonic_ms();

        if (part < 0 || part >= nparts)
            continue;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, log->topic, part, &low,
                                                                   &high, left > 0 ? (int)left : 1);
        if (err) {
            snprintf(errstr, errstr_size, "cannot read the end of %s [%d]: %s", log->topic,
                     (int)part, rd_kafka_err2str(err));
            return -1;
        }
        from = !from_start && (size_t)part < log->npartitions && log->next_offset[part] >= 0
                   ? log->next_offset[part]
                   : low;
        if (from < low)
            from = low;
        end[part] = high;
        if (from >= high)
            continue;
        rd_kafka_topic_partition_list_add(assign, log->topic, part)->offset = from;
        remaining++;
    }
    return remaining;
}

/* Reads the assigned partitions up to end[] or the deadline, handing each alert to fn; a
 * record that is not an alert is logged and skipped. Returns the alerts read and leaves in
 * *remaining the partitions not read to their end. */
static long read_back(rd_kafka_t *rk, int nparts, const int64_t *end, bool *done, int *remaining,
                      int64_t deadline, void (*fn)(const keng_alert_t *t, void *arg), void *arg)
{
    char scratch[VALUE_MAX], why[256];
    long records = 0;

    while (*remaining > 0 && keng_monotonic_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, RECOVER_POLL_MS);
        if (!m)
            continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED &&
            keng_kafka_denied(KENG_KAFKA_CONSUMER, m->err,
                              m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                              rd_kafka_message_errstr(m))) {
            rd_kafka_message_destroy(m);
            break;
        }
        if (!m->err && m->partition >= 0 && m->partition < nparts && !done[m->partition] &&
            m->offset < end[m->partition]) {
            keng_alert_t t;
            int rc = keng_avro_decode_alert(m->payload, m->len, &t, scratch, sizeof(scratch), why,
                                            sizeof(why));
            if (rc == KENG_AVRO_OK) {
                fn(&t, arg);
                records++;
            } else {
                keng_log_warn("a record of the alert topic is not an alert; skipped",
                              "partition=%" PRId32 " offset=%" PRId64 " error=\"%s\"", m->partition,
                              m->offset, why);
            }
            if (m->offset + 1 >= end[m->partition]) {
                (*remaining)--;
                done[m->partition] = true;
            }
        }
        rd_kafka_message_destroy(m);
    }
    return records;
}

long keng_alertlog_recover(keng_alertlog_t *log, const keng_config_t *cfg, bool from_start,
                           void (*fn)(const keng_alert_t *t, void *arg), void *arg, int timeout_ms,
                           char *errstr, size_t errstr_size)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    int64_t *end = NULL;
    bool *done = NULL;
    int nparts = 0, remaining = 0;
    int64_t deadline = keng_monotonic_ms() + timeout_ms;
    long records = 0, ret = -1;
    rd_kafka_resp_err_t err;

    rk = recovery_reader(cfg, errstr, errstr_size);
    if (!rk)
        goto out;
    rkt = rd_kafka_topic_new(rk, log->topic, NULL);
    err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "cannot read the metadata of %s: %s", log->topic,
                 rd_kafka_err2str(err));
        goto out;
    }
    if (md->topic_cnt == 1 && keng_kafka_denied(KENG_KAFKA_CONSUMER, md->topics[0].err, log->topic,
                                                rd_kafka_err2str(md->topics[0].err))) {
        snprintf(errstr, errstr_size, "cannot read the metadata of %s: %s", log->topic,
                 rd_kafka_err2str(md->topics[0].err));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err) {
        /* No alert topic yet: nothing was ever emitted there. */
        ret = 0;
        goto out;
    }
    nparts = md->topics[0].partition_cnt;
    end = calloc((size_t)nparts + 1, sizeof(*end));
    done = calloc((size_t)nparts + 1, sizeof(*done));
    assign = rd_kafka_topic_partition_list_new(nparts);
    if (!end || !done || !assign) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    remaining = plan_recovery(log, rk, md, from_start, deadline, end, assign, errstr, errstr_size);
    if (remaining < 0)
        goto out;
    if (remaining > 0) {
        err = rd_kafka_assign(rk, assign);
        if (err) {
            snprintf(errstr, errstr_size, "cannot read %s: %s", log->topic, rd_kafka_err2str(err));
            goto out;
        }
    }
    records = read_back(rk, nparts, end, done, &remaining, deadline, fn, arg);
    if (remaining > 0) {
        snprintf(errstr, errstr_size,
                 "%s was not read to its end within %d ms: transitions emitted just before the "
                 "last stop may be emitted again",
                 log->topic, timeout_ms);
        goto out;
    }
    for (int i = 0; i < nparts; i++)
        if (end[i] > 0)
            set_offset(log, i, end[i]);
    ret = records;

out:
    if (assign)
        rd_kafka_topic_partition_list_destroy(assign);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(end);
    free(done);
    return ret;
}

static void on_close(uv_handle_t *handle)
{
    keng_alertlog_t *log = handle->data;

    while (log->retry) {
        pending_t *p = log->retry;
        log->retry = p->next;
        pending_free(p);
    }
    free(log->next_offset);
    free(log->topic);
    free(log);
}

void keng_alertlog_close(keng_alertlog_t *log, int timeout_ms)
{
    if (!log)
        return;
    if (keng_alertlog_flush(log, timeout_ms) != 0)
        keng_log_error("alert transitions were not acknowledged before shutdown; the next start "
                       "emits them again",
                       "topic=%s count=%d", log->topic, log->in_flight);
    rd_kafka_destroy(log->rk);
    log->rk = NULL;
    uv_timer_stop(&log->timer);
    uv_close((uv_handle_t *)&log->timer, on_close);
}
