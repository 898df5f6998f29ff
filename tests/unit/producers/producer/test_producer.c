/* The shared producer against librdkafka's mock cluster, in process and never a broker outside
 * it: batches that succeed, fail or are empty, keys and Confluent framing on the topics,
 * back-pressure on a full queue, delivery reports served from a libuv loop, and settings a
 * config cannot weaken. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "avro_codec.h"
#include "config.h"
#include "producer.h"
#include "timeutil.h"

struct fixture {
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mcluster;
    keng_config_t *cfg;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    f->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!f->mock_rk)
        return -1;
    f->mcluster = rd_kafka_mock_cluster_new(f->mock_rk, 1);
    if (!f->mcluster)
        return -1;
    rd_kafka_mock_topic_create(f->mcluster, "antt.incidents", 4, 1);
    rd_kafka_mock_topic_create(f->mcluster, "antt.mediations", 4, 1);
    f->cfg = keng_config_new();
    keng_config_set(f->cfg, "brokers", rd_kafka_mock_cluster_bootstraps(f->mcluster));
    keng_config_set(f->cfg, "kafka.log_level", "3");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    keng_config_destroy(f->cfg);
    rd_kafka_mock_cluster_destroy(f->mcluster);
    rd_kafka_destroy(f->mock_rk);
    free(f);
    return 0;
}

static keng_event_t make_event(int i, keng_kind_t kind)
{
    keng_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    snprintf(ev.event_id, sizeof(ev.event_id), "test-%d", i);
    snprintf(ev.board_id, sizeof(ev.board_id), "D%02d-C%03d-B%02d", 1 + i % 21, 1 + i % 7,
             1 + i % 5);
    ev.occurred_at = 1740838500000LL + i;
    ev.reported_at = ev.occurred_at + 1000;
    if (kind == KENG_KIND_INCIDENT) {
        ev.category = KENG_CAT_THEFT;
        ev.severity = KENG_SEV_LOW;
        ev.resolution = KENG_RES_HANDLED_LOCALLY;
        ev.source = KENG_SRC_PATROL;
        ev.people_involved = 1;
    } else {
        ev.dispute_type = KENG_DISPUTE_LAND;
        ev.outcome = KENG_OUTCOME_RECONCILED;
        ev.parties = 2;
    }
    return ev;
}

struct outcome {
    int calls;
    rd_kafka_resp_err_t err;
    size_t delivered, failed;
    bool in_seal;
};

static void on_batch(keng_producer_batch_t *batch, rd_kafka_resp_err_t err, size_t delivered,
                     size_t failed, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->err = err;
    o->delivered = delivered;
    o->failed = failed;
}

static void wait_for(keng_producer_t *p, const int *calls, int64_t timeout_ms)
{
    int64_t deadline = keng_monotonic_ms() + timeout_ms;
    while (*calls == 0 && keng_monotonic_ms() < deadline)
        keng_producer_poll(p, 50);
}

struct copy {
    unsigned char value[512];
    size_t len;
    char key[64];
    size_t key_len;
};

/* Reads topic from the start until n messages or 10 s, copying them out: librdkafka's
 * messages must be gone before their consumer is destroyed. */
static int consume(struct fixture *f, const char *topic, struct copy *out, int n)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mcluster),
                      errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "keng-test", errstr, sizeof(errstr));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    int got = 0;
    int64_t deadline = keng_monotonic_ms() + 10000;

    for (int i = 0; i < 4; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    while (got < n && keng_monotonic_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        out[got].len = m->len < sizeof(out[got].value) ? m->len : sizeof(out[got].value);
        memcpy(out[got].value, m->payload, out[got].len);
        out[got].key_len = m->key_len < sizeof(out[got].key) ? m->key_len : sizeof(out[got].key);
        memcpy(out[got].key, m->key, out[got].key_len);
        got++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return got;
}

static void batch_reports_once_when_all_are_acknowledged(void **state)
{
    struct fixture *f = *state;
    char errstr[256];
    struct outcome o = {0};
    keng_producer_t *p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    if (!p)
        fail_msg("keng_producer_new: %s", errstr);
    keng_producer_batch_t *b = keng_producer_batch_new(p, on_batch, &o);

    for (int i = 0; i < 20; i++) {
        keng_event_t ev = make_event(i, i % 4 == 3 ? KENG_KIND_MEDIATION : KENG_KIND_INCIDENT);
        if (keng_producer_batch_add(b, &ev, 1000, errstr, sizeof(errstr)) < 0)
            fail_msg("batch_add: %s", errstr);
    }
    assert_int_equal(keng_producer_batch_size(b), 20);
    keng_producer_batch_seal(b);
    wait_for(p, &o.calls, 10000);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(o.delivered, 20);
    assert_int_equal(o.failed, 0);
    keng_producer_poll(p, 100);
    assert_int_equal(o.calls, 1);

    keng_producer_stats_t st;
    keng_producer_get_stats(p, &st);
    assert_int_equal(st.sent, 20);
    assert_int_equal(st.delivered, 20);
    assert_int_equal(st.in_flight, 0);
    keng_producer_destroy(p, 1000);

    /* Key = board_id, Confluent framing with the kind's schema id, on the kind's topic. */
    struct copy msgs[20];
    int n = consume(f, "antt.incidents", msgs, 15);
    assert_int_equal(n, 15);
    for (int i = 0; i < n; i++) {
        const unsigned char *v = msgs[i].value;
        int idx = -1;
        assert_true(msgs[i].len > 5);
        assert_int_equal(v[0], 0x00);
        assert_int_equal((v[1] << 24) | (v[2] << 16) | (v[3] << 8) | v[4], KENG_SCHEMA_ID_INCIDENT);
        /* The datum starts with event_id: a zigzag length, then "test-<i>". */
        assert_true(sscanf((const char *)v + 6, "test-%d", &idx) == 1);
        keng_event_t ev = make_event(idx, KENG_KIND_INCIDENT);
        assert_int_equal(msgs[i].key_len, strlen(ev.board_id));
        assert_memory_equal(msgs[i].key, ev.board_id, msgs[i].key_len);
    }
    n = consume(f, "antt.mediations", msgs, 5);
    assert_int_equal(n, 5);
    for (int i = 0; i < n; i++) {
        const unsigned char *v = msgs[i].value;
        assert_int_equal((v[1] << 24) | (v[2] << 16) | (v[3] << 8) | v[4], 2);
    }
}

static void empty_batch_reports_inside_seal(void **state)
{
    struct fixture *f = *state;
    char errstr[256];
    struct outcome o = {0};
    keng_producer_t *p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    assert_non_null(p);
    keng_producer_batch_t *b = keng_producer_batch_new(p, on_batch, &o);

    assert_int_equal(o.calls, 0);
    keng_producer_batch_seal(b);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(o.delivered, 0);
    keng_producer_destroy(p, 1000);
}

static void batch_fails_when_the_cluster_is_down(void **state)
{
    struct fixture *f = *state;
    char errstr[256];
    struct outcome o = {0};

    keng_config_set(f->cfg, "kafka.message.timeout.ms", "1000");
    keng_producer_t *p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    assert_non_null(p);
    rd_kafka_mock_broker_set_down(f->mcluster, 1);
    keng_producer_batch_t *b = keng_producer_batch_new(p, on_batch, &o);
    for (int i = 0; i < 5; i++) {
        keng_event_t ev = make_event(i, KENG_KIND_INCIDENT);
        assert_int_equal(keng_producer_batch_add(b, &ev, 1000, errstr, sizeof(errstr)), 0);
    }
    keng_producer_batch_seal(b);
    wait_for(p, &o.calls, 15000);
    assert_int_equal(o.calls, 1);
    if (o.err != RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
        fail_msg("batch error: expected %s, got %s",
                 rd_kafka_err2name(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), rd_kafka_err2name(o.err));
    assert_int_equal(o.delivered, 0);
    assert_true(o.failed >= 1);
    /* The other reports still arrive and free the batch; nothing is reported twice. */
    keng_producer_flush(p, 5000, errstr, sizeof(errstr));
    assert_int_equal(o.calls, 1);
    rd_kafka_mock_broker_set_up(f->mcluster, 1);
    keng_producer_destroy(p, 1000);
}

static int dr_calls;
static rd_kafka_resp_err_t dr_last;
static void on_message(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    dr_calls++;
    dr_last = err;
}

static void full_queue_pushes_back_within_the_deadline(void **state)
{
    struct fixture *f = *state;
    char errstr[256];
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

    keng_config_set(f->cfg, "kafka.queue.buffering.max.messages", "3");
    keng_producer_t *p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    if (!p)
        fail_msg("keng_producer_new: %s", errstr);
    rd_kafka_mock_broker_set_down(f->mcluster, 1);
    dr_calls = 0;
    for (int i = 0; i < 3; i++) {
        keng_event_t ev = make_event(i, KENG_KIND_INCIDENT);
        assert_int_equal(
            keng_producer_send(p, &ev, on_message, NULL, 0, &err, errstr, sizeof(errstr)), 0);
    }
    keng_event_t ev = make_event(3, KENG_KIND_INCIDENT);
    int64_t t0 = keng_monotonic_ms();
    assert_int_equal(
        keng_producer_send(p, &ev, on_message, NULL, 300, &err, errstr, sizeof(errstr)), -1);
    assert_true(keng_monotonic_ms() - t0 >= 300);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        fail_msg("send error: expected _QUEUE_FULL, got %s", rd_kafka_err2name(err));
    assert_non_null(strstr(errstr, "queue full"));

    keng_producer_stats_t st;
    keng_producer_get_stats(p, &st);
    assert_int_equal(st.sent, 3);
    assert_true(st.queue_full_waits >= 1);
    assert_int_equal(dr_calls, 0);
    /* Destroy purges what is left, and every accepted message still gets its one report. */
    keng_producer_destroy(p, 0);
    assert_int_equal(dr_calls, 3);
    assert_int_not_equal(dr_last, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_mock_broker_set_up(f->mcluster, 1);
}

struct uv_case {
    struct outcome o;
    uv_timer_t timer;
    keng_producer_t *p;
};

static void on_uv_batch(keng_producer_batch_t *batch, rd_kafka_resp_err_t err, size_t delivered,
                        size_t failed, void *arg)
{
    struct uv_case *c = arg;
    on_batch(batch, err, delivered, failed, &c->o);
    keng_producer_detach_uv(c->p);
    uv_close((uv_handle_t *)&c->timer, NULL);
}

static void on_uv_timeout(uv_timer_t *t)
{
    struct uv_case *c = t->data;
    keng_producer_detach_uv(c->p);
    uv_close((uv_handle_t *)&c->timer, NULL);
}

static void reports_are_served_on_the_libuv_loop(void **state)
{
    struct fixture *f = *state;
    char errstr[256];
    uv_loop_t loop;
    struct uv_case c = {0};

    uv_loop_init(&loop);
    c.p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    assert_non_null(c.p);
    if (keng_producer_attach_uv(c.p, &loop, errstr, sizeof(errstr)) < 0)
        fail_msg("attach_uv: %s", errstr);
    uv_timer_init(&loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, on_uv_timeout, 10000, 0);

    keng_producer_batch_t *b = keng_producer_batch_new(c.p, on_uv_batch, &c);
    for (int i = 0; i < 10; i++) {
        keng_event_t ev = make_event(100 + i, KENG_KIND_MEDIATION);
        assert_int_equal(keng_producer_batch_add(b, &ev, 1000, errstr, sizeof(errstr)), 0);
    }
    keng_producer_batch_seal(b);
    assert_int_equal(c.o.calls, 0); /* nobody has served the queue yet */
    uv_run(&loop, UV_RUN_DEFAULT);  /* ends when the watcher and timer are closed */

    assert_int_equal(c.o.calls, 1);
    assert_int_equal(c.o.err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(c.o.delivered, 10);
    assert_int_equal(uv_loop_close(&loop), 0);
    keng_producer_destroy(c.p, 1000);
}

static void config_cannot_weaken_idempotence(void **state)
{
    struct fixture *f = *state;
    char errstr[256], value[64];
    size_t size = sizeof(value);

    keng_config_set(f->cfg, "kafka.enable.idempotence", "false");
    keng_config_set(f->cfg, "kafka.acks", "1");
    keng_config_set(f->cfg, "topic.incidents", "field.incidents");
    keng_producer_t *p = keng_producer_new(f->cfg, errstr, sizeof(errstr));
    if (!p)
        fail_msg("keng_producer_new: %s", errstr);
    assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(keng_producer_handle(p)), "enable.idempotence",
                                       value, &size),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(value, "true");
    assert_string_equal(keng_producer_topic(p, KENG_KIND_INCIDENT), "field.incidents");
    assert_string_equal(keng_producer_topic(p, KENG_KIND_MEDIATION), "antt.mediations");
    keng_producer_destroy(p, 0);
}

static void refused_setting_names_the_key(void **state)
{
    struct fixture *f = *state;
    char errstr[256] = "";

    keng_config_set(f->cfg, "kafka.no.such.setting", "1");
    assert_null(keng_producer_new(f->cfg, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "no.such.setting"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(batch_reports_once_when_all_are_acknowledged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(empty_batch_reports_inside_seal, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_fails_when_the_cluster_is_down, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue_pushes_back_within_the_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reports_are_served_on_the_libuv_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(config_cannot_weaken_idempotence, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_setting_names_the_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
