/* consumer.c's checkpoint as a unit: the LMDB transaction that moves a partition's offset also
 * holds the counts it moved past, so that no crash can fall between the two (there is one
 * commit). The consumer runs on a libuv loop against librdkafka's mock cluster in this process,
 * never a broker outside it; LMDB's mdb_put, mdb_txn_commit and mdb_txn_abort are wrapped (ld
 * --wrap, see tests/CMakeLists.txt) to record which keys each committed transaction held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <lmdb.h>

#include "avro_codec.h"
#include "checkpoint.h"
#include "config.h"
#include "consumer.h"
#include "counts.h"
#include "deadletter.h"
#include "registry.h"
#include "timeutil.h"

#define EVENTS      60
#define MAX_COMMITS 256
#define MAX_KEYS    512
#define DEADLINE_MS 60000

/* ---- what LMDB was asked to write, by transaction ---- */

typedef struct commit_rec {
    int nkeys;
    char keys[MAX_KEYS][64];
} commit_rec_t;

static commit_rec_t building;
static commit_rec_t *commits[MAX_COMMITS];
static int ncommits;

int __real_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags);
int __real_mdb_txn_commit(MDB_txn *txn);
void __real_mdb_txn_abort(MDB_txn *txn);

int __wrap_mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags)
{
    if (building.nkeys < MAX_KEYS)
        snprintf(building.keys[building.nkeys++], sizeof(building.keys[0]), "%.*s",
                 (int)key->mv_size, (const char *)key->mv_data);
    return __real_mdb_put(txn, dbi, key, data, flags);
}

/* LMDB has one writer at a time, and keng writes from one thread: the keys put since the
 * last commit or abort belong to the transaction being committed. */
int __wrap_mdb_txn_commit(MDB_txn *txn)
{
    int rc = __real_mdb_txn_commit(txn);

    if (rc == 0 && building.nkeys > 0 && ncommits < MAX_COMMITS) {
        commits[ncommits] = malloc(sizeof(commit_rec_t));
        assert_non_null(commits[ncommits]);
        *commits[ncommits++] = building;
    }
    building.nkeys = 0;
    return rc;
}

void __wrap_mdb_txn_abort(MDB_txn *txn)
{
    building.nkeys = 0;
    __real_mdb_txn_abort(txn);
}

/* ---- the consumer against the mock cluster ---- */

typedef struct run {
    uv_loop_t loop;
    uv_timer_t poll;
    keng_consumer_t *consumer;
    keng_deadletter_t *dl;
    int64_t started;
    bool stopped, timed_out;
} run_t;

static void on_consumer_stopped(void *arg)
{
    run_t *r = arg;

    keng_deadletter_close(r->dl, 5000);
    r->dl = NULL;
    r->stopped = true;
}

/* Stops the consumer once every event is counted and a checkpoint has followed. */
static void on_poll(uv_timer_t *t)
{
    run_t *r = t->data;
    keng_consumer_stats_t st;

    keng_consumer_stats(r->consumer, &st);
    r->timed_out = keng_monotonic_ms() - r->started > DEADLINE_MS;
    if ((st.counted == EVENTS && st.checkpoints > 0) || r->timed_out) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, NULL);
        keng_consumer_stop(r->consumer, on_consumer_stopped, r);
    }
}

static void produce_events(const char *bootstrap, const keng_registry_t *reg,
                           keng_schema_store_t *store)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    keng_avro_encoder_t *enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    rd_kafka_t *rk;
    int64_t now = keng_now_ms();

    assert_non_null(enc);
    assert_int_equal(
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)),
        RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    for (int i = 0; i < EVENTS; i++) {
        keng_event_t ev = {0};
        unsigned char buf[1024];
        size_t len;
        const char *board = keng_registry_board(reg, (uint32_t)(i % 7) * 13)->id;

        ev.kind = KENG_KIND_INCIDENT;
        snprintf(ev.event_id, sizeof(ev.event_id), "00000000-0000-4000-8000-%012d", i);
        snprintf(ev.board_id, sizeof(ev.board_id), "%s", board);
        ev.occurred_at = now - 86400000LL - i;
        ev.reported_at = now - 3600000LL;
        ev.category = (keng_category_t)(i % KENG_CAT_COUNT);
        ev.severity = KENG_SEV_LOW;
        ev.resolution = KENG_RES_PENDING;
        ev.source = KENG_SRC_PATROL;
        assert_int_equal(keng_avro_encode(enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)),
                         0);
        assert_int_equal(
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("antt.incidents"),
                              RD_KAFKA_V_KEY(board, strlen(board)), RD_KAFKA_V_VALUE(buf, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    keng_avro_encoder_destroy(enc);
}

static void offsets_commit_with_their_counts(void **state)
{
    char errstr[512], dir[] = "/tmp/keng-test-ckpt-txn-XXXXXX", cmd[128];
    rd_kafka_conf_t *mconf = rd_kafka_conf_new();
    rd_kafka_t *mrk;
    rd_kafka_mock_cluster_t *mc;
    keng_registry_t *reg = keng_registry_default();
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));
    keng_counts_options_t kopt;
    keng_counts_t *counts;
    keng_checkpoint_t *cp;
    keng_config_t *cfg = keng_config_new();
    keng_consumer_options_t opt;
    run_t r = {0};
    int with_offsets = 0;

    (void)state;
    assert_non_null(reg);
    assert_non_null(store);
    assert_non_null(mkdtemp(dir));
    mrk = rd_kafka_new(RD_KAFKA_PRODUCER, mconf, errstr, sizeof(errstr));
    assert_non_null(mrk);
    mc = rd_kafka_mock_cluster_new(mrk, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "antt.incidents", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "antt.mediations", 2, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "antt.deadletter", 1, 1), 0);
    produce_events(rd_kafka_mock_cluster_bootstraps(mc), reg, store);

    keng_counts_options_default(&kopt);
    counts = keng_counts_new(reg, &kopt);
    cp = keng_checkpoint_open(dir, 0, errstr, sizeof(errstr));
    assert_non_null(counts);
    assert_non_null(cp);
    keng_config_set(cfg, "brokers", rd_kafka_mock_cluster_bootstraps(mc));
    keng_config_set(cfg, "kafka.session.timeout.ms", "6000");
    keng_config_set(cfg, "kafka.heartbeat.interval.ms", "500");
    uv_loop_init(&r.loop);
    r.dl = keng_deadletter_new(&r.loop,
                               keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr)),
                               "antt.deadletter", errstr, sizeof(errstr));
    assert_non_null(r.dl);
    keng_consumer_options_default(&opt);
    opt.group_id = "keng-test-checkpoint-txn";
    opt.checkpoint_interval_ms = 50;
    opt.checkpoint_events = 7; /* several checkpoints while the events come in */
    opt.batch_max = 5;
    r.consumer =
        keng_consumer_new(&r.loop, cfg, &opt, store, reg, counts, cp, r.dl, errstr, sizeof(errstr));
    if (!r.consumer)
        fail_msg("keng_consumer_new: %s", errstr);
    r.started = keng_monotonic_ms();
    uv_timer_init(&r.loop, &r.poll);
    r.poll.data = &r;
    uv_timer_start(&r.poll, on_poll, 100, 100);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    assert_true(r.stopped);
    if (r.timed_out)
        fail_msg("the consumer did not count %d events and checkpoint within %d ms", EVENTS,
                 DEADLINE_MS);

    /* Every committed transaction that holds an offset holds counts too: each offset here
     * moved past counted events only (no duplicates, nothing dead-lettered). */
    for (int i = 0; i < ncommits; i++) {
        int offsets = 0, units = 0;
        for (int k = 0; k < commits[i]->nkeys; k++) {
            offsets += strncmp(commits[i]->keys[k], "o/", 2) == 0;
            units += strncmp(commits[i]->keys[k], "u/", 2) == 0;
        }
        if (offsets > 0 && units == 0)
            fail_msg("commit %d of %d holds %d offset(s) (first key %s) and no counts: "
                     "expected the counts in the same transaction as the offsets",
                     i + 1, ncommits, offsets, commits[i]->keys[0]);
        with_offsets += offsets > 0;
    }
    if (with_offsets == 0)
        fail_msg("expected at least one checkpoint with offsets, got none in %d commits", ncommits);
    print_message("%d commits, %d with offsets and counts together\n", ncommits, with_offsets);

    for (int i = 0; i < ncommits; i++)
        free(commits[i]);
    keng_checkpoint_close(cp);
    keng_counts_destroy(counts);
    uv_loop_close(&r.loop);
    keng_config_destroy(cfg);
    keng_schema_store_destroy(store);
    keng_registry_destroy(reg);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(mrk);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(offsets_commit_with_their_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
