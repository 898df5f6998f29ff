/* The Kafka consumer of keng-aggregate on the libuv loop: decode, count or dead-letter,
 * checkpoint state and offsets together, and resume from the checkpoint. */
#include "consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_health.h"
#include "kafka_uv.h"
#include "log.h"
#include "timeutil.h"

#define TOPIC_COUNT            2
#define ADVANCE_INTERVAL_MS    1000
#define WATERMARK_TIMEOUT_MS   3000
#define DEADLETTER_WAIT_MAX_MS 10000
#define SHUTDOWN_FLUSH_MS      5000
#define REASON_MAX             16

/* A checkpointed unit, one kind of a board, is its counts.c state behind this header, which
 * names the partition its events come from, so that a partition's units can be found. */
#define UNIT_MAGIC0     'K'
#define UNIT_MAGIC1     'U'
#define UNIT_VERSION    1
#define UNIT_HEADER     7
#define PARTITION_NONE  (-1)
#define CATCH_UP_MS     10000 /* what a new owner waits for the counts topic */
#define REVOKE_FLUSH_MS 5000
#define METADATA_MS     5000

typedef struct part {
    int topic; /* index into c->topics */
    int32_t partition;
    bool assigned;
    bool offset_dirty;    /* next_offset changed since the last checkpoint */
    bool query_in_flight; /* a watermark query runs on the thread pool */
    bool reached;         /* read up to target */
    int64_t next_offset;  /* next offset to count; -1 before the first */
    int64_t low, target;  /* watermarks at assignment; target -1 until known */
    int64_t write_from;   /* nothing of it is checkpointed before next_offset gets here */
    int64_t replay_until; /* offsets below were handled by a previous owner */
    bool publish;         /* scratch of a checkpoint: its units or offset were written */
} part_t;

typedef struct reason_count {
    char name[32];
    uint64_t count;
} reason_count_t;

struct keng_consumer {
    uv_loop_t *loop;
    keng_consumer_options_t opt;
    char *topics[TOPIC_COUNT];
    char *group_id;

    keng_avro_decoder_t *dec;
    const keng_registry_t *reg;
    keng_counts_t *counts;
    keng_checkpoint_t *cp;
    keng_deadletter_t *dl;
    keng_alerts_t *alerts;     /* NULL without alert rules */
    keng_alertlog_t *alertlog; /* set with alerts */
    const keng_config_t *cfg;  /* borrowed: how the alert topic is read at an assignment */
    int alerts_read_timeout_ms;
    int topic_partitions[TOPIC_COUNT]; /* as of the last assignment; 0 unknown */
    bool decides_above[TOPIC_COUNT];   /* alerts above a board of the topic are decided here */

    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    keng_kafka_uv_t *watch;

    uv_idle_t idle;           /* keeps draining while a batch left messages behind */
    uv_timer_t advance_timer; /* moves the windows, retries watermark queries */
    uv_timer_t checkpoint_timer;
    int handles_open;

    part_t *parts;
    size_t nparts, parts_cap;

    size_t nboards, nunits; /* a unit is (board, kind), kind == topic index */
    int32_t *unit_part;     /* partition each unit's events come from */
    int64_t *unit_from;     /* count a unit's events from this offset on (its state has the rest) */
    uint32_t *dirty_list;   /* scratch for a checkpoint */
    keng_cluster_t *cluster; /* NULL: a single instance */
    bool assignment_lost;    /* publish nothing: another instance may own the partitions */

    int64_t last_now;
    int64_t events_since_checkpoint;
    int64_t deadletter_wait_since; /* monotonic ms a checkpoint has waited for dead letters */
    bool got_assignment;
    bool assignor_has_state; /* a rebalance has assigned (maybe nothing): see finish_stop */
    bool ready;
    bool stopping;
    int watermark_queries;
    void (*done)(void *arg);
    void *done_arg;

    keng_consumer_stats_t stats;
    reason_count_t reasons[REASON_MAX];
    size_t nreasons;
};

typedef struct watermark_query {
    uv_work_t req;
    keng_consumer_t *c;
    int topic;
    int32_t partition;
    int64_t low, high;
    rd_kafka_resp_err_t err;
} watermark_query_t;

static int checkpoint(keng_consumer_t *c, bool force);
static void finish_stop(keng_consumer_t *c);

void keng_consumer_options_default(keng_consumer_options_t *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->topic_incidents = "antt.incidents";
    opt->topic_mediations = "antt.mediations";
    opt->group_id = "keng-aggregate";
    opt->checkpoint_interval_ms = 1000;
    opt->checkpoint_events = 1000000;
    opt->batch_max = 1000;
}

int64_t keng_consumer_now(const keng_consumer_t *c)
{
    return c->opt.fixed_clock_ms > 0 ? c->opt.fixed_clock_ms : keng_now_ms();
}

/* counts.c wants a clock that never goes back; the wall clock may. */
static int64_t now_ms(keng_consumer_t *c)
{
    int64_t now = keng_consumer_now(c);

    if (now < c->last_now)
        now = c->last_now;
    c->last_now = now;
    return now;
}

static int topic_index(const keng_consumer_t *c, const char *name)
{
    for (int t = 0; t < TOPIC_COUNT; t++)
        if (strcmp(c->topics[t], name) == 0)
            return t;
    return -1;
}

static part_t *part_find(keng_consumer_t *c, int topic, int32_t partition, bool create)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].topic == topic && c->parts[i].partition == partition)
            return &c->parts[i];
    if (!create)
        return NULL;
    if (c->nparts == c->parts_cap) {
        size_t cap = c->parts_cap ? c->parts_cap * 2 : 16;
        part_t *p = realloc(c->parts, cap * sizeof(*p));
        if (!p)
            return NULL;
        c->parts = p;
        c->parts_cap = cap;
    }
    part_t *p = &c->parts[c->nparts++];
    memset(p, 0, sizeof(*p));
    p->topic = topic;
    p->partition = partition;
    p->next_offset = -1;
    p->target = -1;
    return p;
}

static void count_reason(keng_consumer_t *c, const char *reason)
{
    size_t i;

    for (i = 0; i < c->nreasons; i++)
        if (strcmp(c->reasons[i].name, reason) == 0)
            break;
    if (i == c->nreasons) {
        if (c->nreasons == REASON_MAX)
            i = REASON_MAX - 1; /* reasons are a fixed small set; this only guards */
        else
            snprintf(c->reasons[c->nreasons++].name, sizeof(c->reasons[0].name), "%s", reason);
    }
    c->reasons[i].count++;
}

/* ---- readiness ---- */

static bool part_reached(const part_t *p)
{
    if (p->target < 0)
        return false;
    if (p->target <= p->low)
        return true; /* empty partition */
    return p->next_offset >= p->target;
}

static void update_ready(keng_consumer_t *c)
{
    size_t assigned = 0;

    if (c->ready || !c->got_assignment)
        return;
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->assigned)
            continue;
        assigned++;
        if (!p->reached && !(p->reached = part_reached(p)))
            return;
    }
    if (assigned == 0)
        return;
    c->ready = true;
    /* Alerts wait for this: before it the counts lack events still to be read again, and
     * would resolve alerts that are firing. */
    if (c->alerts)
        keng_alerts_evaluate_every_scope(c->alerts, c->last_now);
    keng_log_info("caught up with the topics", "partitions=%zu counted=%" PRIu64, assigned,
                  c->stats.counted);
}

bool keng_consumer_ready(const keng_consumer_t *c, char *reason, size_t reason_size)
{
    size_t behind = 0, unknown = 0, assigned = 0;

    if (c->ready)
        return true;
    if (!c->got_assignment) {
        snprintf(reason, reason_size,
                 "waiting for partitions from the consumer group: is the broker reachable?");
        return false;
    }
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        if (!p->assigned)
            continue;
        assigned++;
        if (p->target < 0)
            unknown++;
        else if (!p->reached)
            behind++;
    }
    if (assigned == 0)
        snprintf(reason, reason_size, "no partition is assigned to this instance");
    else if (unknown)
        snprintf(reason, reason_size, "%zu of %zu partitions have no known high watermark yet",
                 unknown, assigned);
    else
        snprintf(reason, reason_size, "%zu of %zu partitions are still catching up", behind,
                 assigned);
    return false;
}

static void watermark_work(uv_work_t *req)
{
    watermark_query_t *q = req->data;

    /* Thread pool: only librdkafka's thread-safe call, on a handle that outlives the query. */
    q->err = rd_kafka_query_watermark_offsets(q->c->rk, q->c->topics[q->topic], q->partition,
                                              &q->low, &q->high, WATERMARK_TIMEOUT_MS);
}

static void watermark_done(uv_work_t *req, int status)
{
    watermark_query_t *q = req->data;
    keng_consumer_t *c = q->c;
    part_t *p = part_find(c, q->topic, q->partition, false);

    c->watermark_queries--;
    if (p) {
        p->query_in_flight = false;
        if (status == 0 && !q->err && p->assigned && p->target < 0) {
            p->low = q->low;
            p->target = q->high;
            keng_log_debug("partition watermarks",
                           "topic=%s partition=%" PRId32 " low=%" PRId64 " high=%" PRId64,
                           c->topics[q->topic], q->partition, q->low, q->high);
        } else if (q->err) {
            keng_log_debug("watermark query failed, will retry",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", c->topics[q->topic],
                           q->partition, rd_kafka_err2str(q->err));
        }
    }
    free(q);
    update_ready(c);
    if (c->stopping && c->watermark_queries == 0)
        finish_stop(c);
}

static void query_watermarks(keng_consumer_t *c)
{
    if (c->stopping || c->ready)
        return;
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->assigned || p->target >= 0 || p->query_in_flight)
            continue;
        watermark_query_t *q = calloc(1, sizeof(*q));
        if (!q)
            return;
        q->c = c;
        q->topic = p->topic;
        q->partition = p->partition;
        q->req.data = q;
        if (uv_queue_work(c->loop, &q->req, watermark_work, watermark_done) != 0) {
            free(q);
            return;
        }
        p->query_in_flight = true;
        c->watermark_queries++;
    }
}

/* ---- board state ---- */

static void put_i32(unsigned char *b, int32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)((uint32_t)v >> (8 * i));
}

static int32_t get_i32(const unsigned char *b)
{
    uint32_t u = 0;

    for (int i = 0; i < 4; i++)
        u |= (uint32_t)b[i] << (8 * i);
    return (int32_t)u;
}

/* Where a newly assigned partition's units come from: the local checkpoint, valid at its
 * offset, or the counts topic, each unit valid at its own offset (docs/SCALE_OUT.md). */
typedef struct restore_ctx {
    keng_consumer_t *c;
    rd_kafka_topic_partition_list_t *parts;
    int64_t *local; /* per element of parts: the checkpointed offset, -1 for none */
    int64_t now;
    size_t loaded, skipped;
} restore_ctx_t;

/* The element of ctx->parts for (topic, partition), or -1. */
static int restore_find(const restore_ctx_t *ctx, int topic, int32_t partition)
{
    for (int i = 0; i < ctx->parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &ctx->parts->elems[i];
        if (tp->partition == partition && topic_index(ctx->c, tp->topic) == topic)
            return i;
    }
    return -1;
}

/* Loads a unit's state (borrowed) valid at offset from, for a partition being assigned. */
static void restore_unit(restore_ctx_t *ctx, uint32_t board, int kind, int32_t partition,
                         const unsigned char *state, size_t len, int64_t from, const char *source)
{
    keng_consumer_t *c = ctx->c;
    uint32_t u = board * KENG_KIND_COUNT + (uint32_t)kind;
    char err[256];

    if (keng_counts_unit_load(c->counts, board, (keng_kind_t)kind, state, len, ctx->now, err,
                              sizeof(err)) != 0) {
        keng_log_error("a saved unit state could not be loaded; its events are read again",
                       "board=%s kind=%s source=%s error=\"%s\"",
                       keng_registry_board(c->reg, board)->id, keng_kind_name((keng_kind_t)kind),
                       source, err);
        ctx->skipped++;
        return;
    }
    c->unit_part[u] = partition;
    c->unit_from[u] = from;
    ctx->loaded++;
}

/* keng_checkpoint_each_unit's callback: the local candidates, id "<board id>/<kind>". */
static int restore_local(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    restore_ctx_t *ctx = arg;
    const unsigned char *b = data;
    size_t slash = id_len;
    keng_kind_t kind;
    char kind_name[16];
    int32_t board, partition;
    int i;

    while (slash > 0 && id[slash - 1] != '/')
        slash--;
    if (slash < 2 || id_len - slash >= sizeof(kind_name))
        return 0;
    memcpy(kind_name, id + slash, id_len - slash);
    kind_name[id_len - slash] = '\0';
    board = keng_registry_find_board(ctx->c->reg, id, slash - 1);
    if (board < 0 || keng_kind_parse(kind_name, &kind) != 0 || len < UNIT_HEADER ||
        b[0] != UNIT_MAGIC0 || b[1] != UNIT_MAGIC1 || b[2] != UNIT_VERSION)
        return 0; /* not the registry's, or not a format this keng writes: read again */
    partition = get_i32(b + 3);
    i = restore_find(ctx, (int)kind, partition);
    if (i < 0 || ctx->local[i] < 0)
        return 0;
    restore_unit(ctx, (uint32_t)board, (int)kind, partition, b + UNIT_HEADER, len - UNIT_HEADER,
                 ctx->local[i], "checkpoint");
    return 0;
}

/* ---- checkpoint ---- */

/* A partition is written once it has passed every offset its loaded units were valid at. */
static bool part_writable(const part_t *p)
{
    return p->assigned && p->next_offset >= 0 && p->next_offset >= p->write_from;
}

static bool unit_writable(keng_consumer_t *c, uint32_t u)
{
    part_t *p;

    if (c->unit_part[u] == PARTITION_NONE ||
        !keng_counts_unit_dirty(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)(u % KENG_KIND_COUNT)))
        return false;
    p = part_find(c, (int)(u % KENG_KIND_COUNT), c->unit_part[u], false);
    return p && part_writable(p);
}

/* Makes the next checkpoint write every unit of p that has state. */
static void mark_partition_dirty(keng_consumer_t *c, part_t *p)
{
    for (uint32_t b = 0; b < c->nboards; b++) {
        uint32_t u = b * KENG_KIND_COUNT + (uint32_t)p->topic;
        if (c->unit_part[u] == p->partition &&
            keng_counts_unit_has_state(c->counts, b, (keng_kind_t)p->topic))
            keng_counts_unit_set_dirty(c->counts, b, (keng_kind_t)p->topic, true);
    }
    p->offset_dirty = true;
}

/* The alert state and the alert topic's positions, into the checkpoint's transaction. */
static int put_alerts(keng_consumer_t *c, keng_checkpoint_txn_t *txn, char *err, size_t err_size)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    if (keng_alerts_save(c->alerts, &buf, &len) != 0 ||
        keng_checkpoint_put_meta(txn, KENG_CHECKPOINT_ALERTS, buf, len, err, err_size) != 0)
        goto out;
    free(buf);
    buf = NULL;
    len = 0;
    if (keng_alertlog_save(c->alertlog, &buf, &len) != 0 ||
        keng_checkpoint_put_meta(txn, KENG_CHECKPOINT_ALERTLOG, buf, len, err, err_size) != 0)
        goto out;
    rc = 0;

out:
    if (rc != 0 && !buf)
        snprintf(err, err_size, "cannot save the alert state (out of memory?)");
    free(buf);
    return rc;
}

/* Writes every dirty board and every moved offset in one transaction, then commits the
 * offsets to the group for the tools' sake. Unless force, waits (returns 1) while dead
 * letters are unacknowledged, up to DEADLETTER_WAIT_MAX_MS, after which it flushes. */
static int checkpoint(keng_consumer_t *c, bool force)
{
    char err[512];
    keng_checkpoint_txn_t *txn = NULL;
    rd_kafka_topic_partition_list_t *commit = NULL;
    size_t ndirty = 0;
    int64_t start = keng_monotonic_ms();
    int ret = -1;

    /* The alert state saved below must hold the transitions of every counted event, and only
     * transitions the alert topic has: evaluate, then wait for their acknowledgement. */
    if (c->alerts && c->ready)
        keng_alerts_evaluate_touched(c->alerts, c->last_now);
    if (keng_deadletter_in_flight(c->dl) > 0 ||
        (c->alertlog && keng_alertlog_in_flight(c->alertlog) > 0)) {
        if (!c->deadletter_wait_since)
            c->deadletter_wait_since = start;
        if (!force && start - c->deadletter_wait_since < DEADLETTER_WAIT_MAX_MS)
            return 1;
        if (keng_deadletter_flush(c->dl, SHUTDOWN_FLUSH_MS) != 0 ||
            (c->alertlog && keng_alertlog_flush(c->alertlog, SHUTDOWN_FLUSH_MS) != 0)) {
            keng_log_warn("dead letters are not acknowledged; the checkpoint waits", "in_flight=%d",
                          keng_deadletter_in_flight(c->dl));
            return 1;
        }
    }
    c->deadletter_wait_since = 0;

    /* A publication to the counts topic was lost: publish the whole partition again. */
    for (size_t i = 0; c->cluster && i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (p->assigned && keng_cluster_take_resync(c->cluster, p->topic, p->partition))
            mark_partition_dirty(c, p);
    }

    /* An idle aggregator writes nothing: a commit costs an fsync. */
    bool work = false;
    for (size_t i = 0; i < c->nparts && !work; i++)
        work = c->parts[i].offset_dirty && part_writable(&c->parts[i]);
    for (size_t u = 0; u < c->nunits && !work; u++)
        work = unit_writable(c, (uint32_t)u);
    if (c->alerts)
        work = work || keng_alerts_dirty(c->alerts) || keng_alertlog_dirty(c->alertlog);
    if (!work)
        return 0;

    txn = keng_checkpoint_begin(c->cp, err, sizeof(err));
    if (!txn)
        goto out;
    for (size_t i = 0; i < c->nparts; i++)
        c->parts[i].publish = false;
    for (size_t u = 0; u < c->nunits; u++) {
        uint32_t board = (uint32_t)u / KENG_KIND_COUNT;
        keng_kind_t kind = (keng_kind_t)(u % KENG_KIND_COUNT);
        unsigned char *state = NULL;
        size_t len = 0;

        if (!unit_writable(c, (uint32_t)u))
            continue;
        if (keng_counts_unit_save(c->counts, board, kind, &state, &len) != 0) {
            snprintf(err, sizeof(err), "board %s: cannot save its state (out of memory?)",
                     keng_registry_board(c->reg, board)->id);
            free(state);
            goto out;
        }
        unsigned char *buf = malloc(UNIT_HEADER + len);
        if (!buf) {
            snprintf(err, sizeof(err), "out of memory");
            free(state);
            goto out;
        }
        buf[0] = UNIT_MAGIC0;
        buf[1] = UNIT_MAGIC1;
        buf[2] = UNIT_VERSION;
        put_i32(buf + 3, c->unit_part[u]);
        if (len)
            memcpy(buf + UNIT_HEADER, state, len);
        int rc = keng_checkpoint_put_unit(txn, keng_registry_board(c->reg, board)->id,
                                          keng_kind_name(kind), buf, UNIT_HEADER + len, err,
                                          sizeof(err));
        free(buf);
        if (rc == 0 && c->cluster && !c->assignment_lost) {
            part_t *p = part_find(c, (int)kind, c->unit_part[u], false);
            keng_cluster_publish_unit(c->cluster, board, kind, c->unit_part[u], p->next_offset,
                                      state, len);
            p->publish = true;
        }
        free(state);
        if (rc != 0)
            goto out;
        c->dirty_list[ndirty++] = (uint32_t)u;
    }
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        /* Units and offset go together: a partition's units are written with its offset. */
        if (!part_writable(p) || !(p->offset_dirty || p->publish))
            continue;
        if (keng_checkpoint_put_offset(txn, c->topics[p->topic], p->partition, p->next_offset, err,
                                       sizeof(err)) != 0)
            goto out;
        p->publish = true;
    }
    if (c->alerts && put_alerts(c, txn, err, sizeof(err)) != 0)
        goto out;
    ret = keng_checkpoint_commit(txn, err, sizeof(err));
    txn = NULL;
    if (ret != 0)
        goto out;

    for (size_t i = 0; i < ndirty; i++)
        keng_counts_unit_set_dirty(c->counts, c->dirty_list[i] / KENG_KIND_COUNT,
                                   (keng_kind_t)(c->dirty_list[i] % KENG_KIND_COUNT), false);
    for (size_t i = 0; c->cluster && !c->assignment_lost && i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (p->publish)
            keng_cluster_publish_mark(c->cluster, p->topic, p->partition, p->next_offset);
    }
    if (c->alerts) {
        keng_alerts_mark_clean(c->alerts);
        keng_alertlog_mark_clean(c->alertlog);
    }
    commit = rd_kafka_topic_partition_list_new((int)c->nparts);
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->publish)
            continue;
        if (p->offset_dirty && p->assigned)
            rd_kafka_topic_partition_list_add(commit, c->topics[p->topic], p->partition)->offset =
                p->next_offset;
        p->offset_dirty = false;
    }
    /* Only for lag in Kafka's tools: resumption reads the checkpoint, never these. */
    if (commit->cnt > 0 && !c->stopping)
        rd_kafka_commit(c->rk, commit, 1);
    else if (commit->cnt > 0)
        rd_kafka_commit(c->rk, commit, 0);
    c->events_since_checkpoint = 0;
    c->stats.checkpoints++;
    c->stats.last_checkpoint_seconds = (double)(keng_monotonic_ms() - start) / 1000.0;
    c->stats.last_checkpoint_ms = keng_consumer_now(c);

out:
    if (txn)
        keng_checkpoint_abort(txn);
    if (commit)
        rd_kafka_topic_partition_list_destroy(commit);
    if (ret < 0)
        keng_log_error("checkpoint failed; will retry", "error=\"%s\"", err);
    return ret;
}

/* ---- rebalance ---- */

/* ---- alerts across assignments ---- */

/* Whether this instance decides a scope's alerts (alerts.h): a board's, when it owns the
 * board's partition; those above a board, when it decides them for the topic. */
static bool holds_scope(keng_level_t level, uint32_t scope, keng_kind_t kind, void *arg)
{
    const keng_consumer_t *c = arg;

    if ((unsigned)kind >= TOPIC_COUNT)
        return false;
    if (level == KENG_LEVEL_BOARD)
        return scope < c->nboards &&
               c->unit_part[scope * KENG_KIND_COUNT + (uint32_t)kind] != PARTITION_NONE;
    return c->decides_above[kind];
}

/* Who decides the alerts above a board, one instance at a time: with the counts topic, the
 * owner of the topic's partition 0, which adds the other instances' published units to its
 * own; without it, an instance that owns every partition (its counts are then complete).
 * With query, the number of partitions is read again (it grows when partitions are added,
 * which rebalances the group). */
static void update_deciders(keng_consumer_t *c, bool query)
{
    for (int t = 0; t < TOPIC_COUNT; t++) {
        int assigned = 0;
        const part_t *first = part_find(c, t, 0, false);

        if (c->cluster) {
            c->decides_above[t] = first && first->assigned;
            continue;
        }
        if (query) {
            rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->topics[t], NULL);
            const struct rd_kafka_metadata *md = NULL;
            rd_kafka_resp_err_t err =
                rkt ? rd_kafka_metadata(c->rk, 0, rkt, &md, METADATA_MS) : rd_kafka_last_error();

            if (!err && md->topic_cnt == 1 && !md->topics[0].err)
                c->topic_partitions[t] = md->topics[0].partition_cnt;
            else
                keng_log_warn("cannot read the number of partitions; alerts above a board wait "
                              "for the next assignment",
                              "topic=%s error=\"%s\"", c->topics[t],
                              rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            if (rkt)
                rd_kafka_topic_destroy(rkt);
        }
        for (size_t i = 0; i < c->nparts; i++)
            if (c->parts[i].assigned && c->parts[i].topic == t)
                assigned++;
        c->decides_above[t] = c->topic_partitions[t] > 0 && assigned >= c->topic_partitions[t];
    }
}

static void adopt_alert(const keng_alert_t *t, void *arg)
{
    keng_alerts_adopt(arg, t);
}

/* After the assignment changed: the alerts of boards that left go on with their new owner,
 * and those of boards that came are taken over from the alert topic, under the ids the
 * previous owner emitted, so that a rebalance neither resolves nor fires anything. Nothing
 * is evaluated until the next catch-up. */
static void hand_over_alerts(keng_consumer_t *c, bool assigned)
{
    char err[512];
    size_t released;
    long n = 0;

    if (!c->alerts)
        return;
    update_deciders(c, assigned);
    released = keng_alerts_release_unheld(c->alerts);
    if (assigned && c->alertlog) {
        n = keng_alertlog_recover(c->alertlog, c->cfg, true, adopt_alert, c->alerts,
                                  c->alerts_read_timeout_ms, err, sizeof(err));
        if (n < 0)
            keng_log_warn("cannot read the alert topic; alerts firing for the new boards may "
                          "fire again under a new id",
                          "error=\"%s\"", err);
    }
    keng_log_info("alerts handed over",
                  "released=%zu read=%ld decides_above_boards_incidents=%d "
                  "decides_above_boards_mediations=%d",
                  released, n, c->decides_above[KENG_KIND_INCIDENT],
                  c->decides_above[KENG_KIND_MEDIATION]);
}

/* Picks, for every unit of the assigned partitions, the newest state of the local checkpoint
 * and the counts topic, loads it, and starts each partition where the oldest of them ends. */
static void on_assign(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    char err[512];
    restore_ctx_t ctx = {.c = c, .parts = parts, .now = now_ms(c)};
    int64_t *mark = calloc((size_t)parts->cnt + 1, sizeof(int64_t));

    ctx.local = calloc((size_t)parts->cnt + 1, sizeof(int64_t));
    if (!ctx.local || !mark) {
        /* Without memory for two numbers a partition, nothing below would go well either. */
        keng_log_error("out of memory at assignment; reading the partitions whole", NULL);
    }
    /* The previous owner published before it let go: read that before choosing. */
    if (c->cluster && keng_cluster_catch_up(c->cluster, CATCH_UP_MS) != 0)
        keng_log_warn("the counts topic is behind; states from it may be older than the "
                      "partition's last owner left them (still exact, only more to read)",
                      NULL);
    for (int i = 0; ctx.local && mark && i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = topic_index(c, tp->topic);
        int64_t off = -1;
        int rc;

        ctx.local[i] = mark[i] = -1;
        if (t < 0)
            continue;
        rc = keng_checkpoint_get_offset(c->cp, tp->topic, tp->partition, &off, err, sizeof(err));
        if (rc < 0)
            keng_log_error("cannot read the checkpointed offset; not using the checkpoint",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", tp->topic, tp->partition,
                           err);
        if (rc == 1)
            ctx.local[i] = off;
        if (c->cluster && !keng_cluster_mark(c->cluster, (keng_kind_t)t, tp->partition, &mark[i]))
            mark[i] = -1;
    }
    if (ctx.local && mark &&
        keng_checkpoint_each_unit(c->cp, restore_local, &ctx, err, sizeof(err)) < 0)
        keng_log_error("cannot read the checkpointed units; using the counts topic only",
                       "error=\"%s\"", err);
    /* A unit's state in the topic is valid at its own offset, and at the partition's mark
     * when older: a unit that changed before the mark was published again before it. */
    for (uint32_t u = 0; c->cluster && mark && u < c->nunits; u++) {
        const unsigned char *state;
        size_t len;
        int32_t partition;
        int64_t valid;
        int i;

        if (!keng_cluster_unit(c->cluster, u / KENG_KIND_COUNT, (keng_kind_t)(u % KENG_KIND_COUNT),
                               &state, &len, &partition, &valid) ||
            (i = restore_find(&ctx, (int)(u % KENG_KIND_COUNT), partition)) < 0)
            continue;
        if (mark[i] > valid)
            valid = mark[i];
        if (c->unit_part[u] == partition && c->unit_from[u] >= valid &&
            keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT,
                                       (keng_kind_t)(u % KENG_KIND_COUNT)))
            continue; /* the local one is as new */
        restore_unit(&ctx, u / KENG_KIND_COUNT, (int)(u % KENG_KIND_COUNT), partition, state, len,
                     valid, "topic");
    }

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = topic_index(c, tp->topic);
        part_t *p;
        /* Units absent from both sources had no events before the newer of the two. */
        int64_t base = ctx.local && mark ? (ctx.local[i] > mark[i] ? ctx.local[i] : mark[i]) : -1;
        int64_t start = base, write_from = base;
        size_t units = 0;

        if (t < 0 || !(p = part_find(c, t, tp->partition, true)))
            continue;
        for (uint32_t b = 0; b < c->nboards; b++) {
            uint32_t u = b * KENG_KIND_COUNT + (uint32_t)t;
            if (c->unit_part[u] != tp->partition || c->unit_from[u] < 0 ||
                !keng_counts_unit_has_state(c->counts, b, (keng_kind_t)t))
                continue;
            units++;
            if (start < 0 || c->unit_from[u] < start)
                start = c->unit_from[u];
            if (c->unit_from[u] > write_from)
                write_from = c->unit_from[u];
        }
        if (base < 0)
            start = -1; /* nothing says which units had no events: read it all */
        /* Without any state, the partition is rebuilt from its first retained event. */
        tp->offset = start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
        p->assigned = true;
        p->next_offset = start;
        p->write_from = write_from;
        p->replay_until = base;
        p->target = -1;
        p->reached = false;
        /* Everything loaded is written and published again, so that the checkpoint and the
         * topic each hold the whole partition at one offset. */
        mark_partition_dirty(c, p);
        if (c->cluster)
            keng_cluster_set_owned(c->cluster, (keng_kind_t)t, tp->partition, true);
        keng_log_info("partition assigned",
                      "topic=%s partition=%" PRId32 " offset=%" PRId64 " checkpoint=%" PRId64
                      " mark=%" PRId64 " units=%zu",
                      tp->topic, tp->partition, start, ctx.local ? ctx.local[i] : -1,
                      mark ? mark[i] : -1, units);
    }
    free(ctx.local);
    free(mark);
    hand_over_alerts(c, true);
    rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, parts);
    if (error) {
        keng_log_error("incremental assign failed", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    c->got_assignment = true;
    c->ready = false;
    query_watermarks(c);
}

static void on_revoke(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    /* A lost assignment may already be another instance's: checkpoint locally, publish
     * nothing that could be newer in the topic than what the new owner publishes. */
    c->assignment_lost = rd_kafka_assignment_lost(c->rk);
    /* The revoked partitions' progress must be in the checkpoint and the counts topic before
     * they go. */
    if (checkpoint(c, true) != 0)
        keng_log_error("could not checkpoint before giving partitions up; their events since "
                       "the last checkpoint will be read again",
                       "lost=%d", c->assignment_lost);
    if (c->cluster && !c->assignment_lost)
        keng_cluster_flush(c->cluster, REVOKE_FLUSH_MS);
    c->assignment_lost = false;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = topic_index(c, tp->topic);
        part_t *p = t < 0 ? NULL : part_find(c, t, tp->partition, false);

        if (!p)
            continue;
        p->assigned = false;
        p->offset_dirty = false;
        p->target = -1;
        keng_log_info("partition revoked", "topic=%s partition=%" PRId32, tp->topic, tp->partition);
        if (c->stopping)
            continue; /* the counts are still served until the process ends */
        /* Only this topic's units go: the board's other kind may stay here. */
        for (uint32_t b = 0; b < c->nboards; b++) {
            uint32_t u = b * KENG_KIND_COUNT + (uint32_t)t;
            if (c->unit_part[u] != tp->partition)
                continue;
            keng_counts_unit_clear(c->counts, b, (keng_kind_t)t);
            keng_counts_unit_set_dirty(c->counts, b, (keng_kind_t)t, false);
            c->unit_part[u] = PARTITION_NONE;
            c->unit_from[u] = -1;
        }
        if (c->cluster)
            keng_cluster_set_owned(c->cluster, (keng_kind_t)t, tp->partition, false);
    }
    if (!c->stopping)
        hand_over_alerts(c, false);
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, parts);
    if (error) {
        keng_log_error("incremental unassign failed", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

/* Served from the consumer queue, on the loop thread. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    keng_consumer_t *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* librdkafka ran the assignor's on_assignment before queueing this (its state now
         * exists), even for an empty assignment: cooperative rebalances always assign. */
        c->assignor_has_state = true;
        on_assign(c, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(c, parts);
    } else {
        keng_log_error("rebalance failed", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, parts);
        if (error)
            rd_kafka_error_destroy(error);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    keng_kafka_health_note(KENG_KAFKA_CONSUMER, err);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        keng_log_error("fatal Kafka error", "error=\"%s\"", buf);
        return;
    }
    keng_log_warn("Kafka error", "code=%s error=\"%s\"",
                  rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* ---- messages ---- */

static void dead_letter(keng_consumer_t *c, const rd_kafka_message_t *m, const char *reason,
                        const char *error)
{
    keng_log_warn("event dead-lettered",
                  "topic=%s partition=%" PRId32 " offset=%" PRId64 " reason=%s error=\"%s\"",
                  rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason, error);
    keng_deadletter_send(c->dl, m, reason, error);
    count_reason(c, reason);
    c->stats.deadlettered++;
}

static void handle_message(keng_consumer_t *c, const rd_kafka_message_t *m)
{
    char err[256];
    keng_event_t ev;
    int32_t schema_id = 0;
    int t, rc;
    part_t *p;

    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            keng_log_warn("consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        return;
    }
    t = topic_index(c, rd_kafka_topic_name(m->rkt));
    p = t < 0 ? NULL : part_find(c, t, m->partition, false);
    if (!p || !p->assigned || (p->next_offset >= 0 && m->offset < p->next_offset))
        return; /* from before a revoke, or already counted */

    int64_t now = now_ms(c);
    /* Below replay_until, only some units' events are read again: the rest was handled. */
    bool replay = m->offset < p->replay_until;
    rc = keng_avro_decode(c->dec, m->payload, m->len, &ev, &schema_id, err, sizeof(err));
    if (rc != KENG_AVRO_OK) {
        if (!replay)
            dead_letter(c, m, keng_avro_err_reason(rc), err);
    } else if ((int)ev.kind != t) {
        /* A unit's events must all come from one partition of its kind's topic. */
        snprintf(err, sizeof(err), "a %s event on the %s topic", keng_kind_name(ev.kind),
                 c->topics[t]);
        if (!replay)
            dead_letter(c, m, "wrong-record", err);
    } else {
        int32_t idx = keng_registry_find_board(c->reg, ev.board_id, strlen(ev.board_id));
        uint32_t u = idx < 0 ? 0 : (uint32_t)idx * KENG_KIND_COUNT + (uint32_t)t;
        if (idx < 0) {
            snprintf(err, sizeof(err), "board %s is not in the registry", ev.board_id);
            if (!replay)
                dead_letter(c, m, "unknown-board", err);
        } else if (m->offset < c->unit_from[u]) {
            /* Already in the unit's state as loaded at assignment. */
        } else if (ev.occurred_at > now + KENG_FUTURE_SKEW_MS) {
            char when[32], clock[32];
            snprintf(err, sizeof(err),
                     "occurred_at %s is more than 5 minutes ahead of the aggregator's clock %s",
                     keng_time_format_utc(ev.occurred_at, when, sizeof(when)),
                     keng_time_format_utc(now, clock, sizeof(clock)));
            if (!replay)
                dead_letter(c, m, "future-event", err);
        } else {
            int added = keng_counts_add(c->counts, (uint32_t)idx, &ev, now);
            if (added == KENG_COUNTS_DUPLICATE) {
                c->stats.duplicates++;
            } else {
                c->stats.counted++;
                if (c->alerts && added == KENG_COUNTS_ADDED)
                    keng_alerts_note(c->alerts, (uint32_t)idx, &ev);
            }
            c->unit_part[u] = m->partition;
        }
    }
    p->next_offset = m->offset + 1;
    p->offset_dirty = true;
    if (!p->reached && p->target >= 0)
        p->reached = part_reached(p);
    if (++c->events_since_checkpoint >= c->opt.checkpoint_events)
        checkpoint(c, false);
}

static void on_idle(uv_idle_t *idle);

static void drain(keng_consumer_t *c)
{
    int n = 0;

    while (!c->stopping && n < c->opt.batch_max) {
        /* In batches: one queue lock per batch instead of one per message. */
        rd_kafka_message_t *batch[256];
        size_t want = (size_t)(c->opt.batch_max - n) < 256 ? (size_t)(c->opt.batch_max - n) : 256;
        ssize_t got = rd_kafka_consume_batch_queue(c->queue, 0, batch, want);
        for (ssize_t i = 0; i < got; i++) {
            /* A rebalance handled inside an earlier message's work may stop us mid-batch;
             * the rest is destroyed unread and fetched again from the checkpoint. */
            if (!c->stopping)
                handle_message(c, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        if (got <= 0) {
            uv_idle_stop(&c->idle);
            if (c->alerts && c->ready && n > 0)
                keng_alerts_evaluate_touched(c->alerts, c->last_now);
            update_ready(c);
            return;
        }
        n += (int)got;
    }
    if (c->alerts && c->ready)
        keng_alerts_evaluate_touched(c->alerts, c->last_now);
    /* The queue may still hold messages and librdkafka will not wake us for them: come back
     * on the next loop turn, after HTTP had its share. */
    if (!c->stopping)
        uv_idle_start(&c->idle, on_idle);
    update_ready(c);
}

static void on_idle(uv_idle_t *idle)
{
    drain(idle->data);
}

static void on_ready(void *arg)
{
    drain(arg);
}

static void on_advance(uv_timer_t *timer)
{
    keng_consumer_t *c = timer->data;

    int64_t now = now_ms(c);

    keng_counts_advance(c->counts, now);
    if (c->cluster)
        keng_cluster_advance(c->cluster, now);
    if (c->alerts && c->ready)
        keng_alerts_evaluate_all(c->alerts, now);
    query_watermarks(c);
}

static void on_checkpoint_timer(uv_timer_t *timer)
{
    keng_consumer_t *c = timer->data;

    checkpoint(c, false);
}

/* ---- life cycle ---- */

static void free_consumer(keng_consumer_t *c)
{
    if (!c)
        return;
    if (c->dec)
        keng_avro_decoder_destroy(c->dec);
    for (int t = 0; t < TOPIC_COUNT; t++)
        free(c->topics[t]);
    free(c->unit_part);
    free(c->unit_from);
    free(c->dirty_list);
    free(c->parts);
    free(c->group_id);
    free(c);
}

static int set_conf(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                    size_t errstr_size)
{
    char why[256];

    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "Kafka setting %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

keng_consumer_t *keng_consumer_new(uv_loop_t *loop, const keng_config_t *cfg,
                                   const keng_consumer_options_t *opt, keng_schema_store_t *store,
                                   const keng_registry_t *reg, keng_counts_t *counts,
                                   keng_checkpoint_t *cp, keng_deadletter_t *dl, char *errstr,
                                   size_t errstr_size)
{
    keng_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t err;

    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->opt = *opt;
    if (c->opt.batch_max <= 0)
        c->opt.batch_max = 1000;
    if (c->opt.checkpoint_events <= 0)
        c->opt.checkpoint_events = 1000000;
    if (c->opt.checkpoint_interval_ms <= 0)
        c->opt.checkpoint_interval_ms = 1000;
    c->reg = reg;
    c->counts = counts;
    c->cp = cp;
    c->dl = dl;
    c->nboards = keng_registry_board_count(reg);
    c->topics[0] = strdup(opt->topic_incidents);
    c->topics[1] = strdup(opt->topic_mediations);
    c->group_id = strdup(opt->group_id);
    c->nunits = c->nboards * KENG_KIND_COUNT;
    c->unit_part = malloc((c->nunits + 1) * sizeof(int32_t));
    c->unit_from = malloc((c->nunits + 1) * sizeof(int64_t));
    c->dirty_list = malloc((c->nunits + 1) * sizeof(uint32_t));
    if (!c->topics[0] || !c->topics[1] || !c->group_id || !c->unit_part || !c->unit_from ||
        !c->dirty_list) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    c->opt.topic_incidents = c->topics[0];
    c->opt.topic_mediations = c->topics[1];
    c->opt.group_id = c->group_id;
    c->opt.group_instance_id = NULL; /* borrowed: used in this call only */
    for (size_t u = 0; u < c->nunits; u++) {
        c->unit_part[u] = PARTITION_NONE;
        c->unit_from[u] = -1;
    }
    c->dec = keng_avro_decoder_new(store, errstr, errstr_size);
    if (!c->dec)
        goto fail;

    /* The checkpoint is where counting resumes; but only for the partitions the group gives
     * this instance, so each partition's units are loaded when it is assigned. */
    keng_counts_advance(counts, now_ms(c));

    conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    if (!conf)
        goto fail;
    if (set_conf(conf, "group.id", c->group_id, errstr, errstr_size) ||
        set_conf(conf, "partition.assignment.strategy", "cooperative-sticky", errstr,
                 errstr_size) ||
        set_conf(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        set_conf(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        set_conf(conf, "auto.offset.reset", "earliest", errstr, errstr_size))
        goto fail;
    /* With a stable id, a restarted instance takes its partitions back from the group
     * coordinator at once instead of waiting for its old session to expire (KIP-345). */
    if (opt->group_instance_id && *opt->group_instance_id &&
        set_conf(conf, "group.instance.id", opt->group_instance_id, errstr, errstr_size))
        goto fail;
    /* librdkafka 2.0.2 compares queued.min.messages with the whole consumer queue, not one
     * partition's, and once it is reached stops fetching every partition for a full second:
     * at its default of 100,000 that caps catching up near 120,000 events/s. A million
     * keeps the fetcher ahead of the loop; queued.max.messages.kbytes (64 MiB) still bounds
     * the memory the prefetch takes. */
    if (!keng_config_get(cfg, "kafka.queued.min.messages", NULL) &&
        set_conf(conf, "queued.min.messages", "1000000", errstr, errstr_size))
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!c->rk)
        goto fail;
    conf = NULL; /* rd_kafka_new took it */

    /* Everything, rebalances and errors included, arrives on the one consumer queue. */
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);

    topics = rd_kafka_topic_partition_list_new(TOPIC_COUNT);
    for (int t = 0; t < TOPIC_COUNT; t++)
        rd_kafka_topic_partition_list_add(topics, c->topics[t], RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe to %s and %s: %s", c->topics[0],
                 c->topics[1], rd_kafka_err2str(err));
        goto fail;
    }

    uv_idle_init(loop, &c->idle);
    uv_timer_init(loop, &c->advance_timer);
    uv_timer_init(loop, &c->checkpoint_timer);
    c->idle.data = c->advance_timer.data = c->checkpoint_timer.data = c;
    c->handles_open = 3;
    uv_timer_start(&c->advance_timer, on_advance, ADVANCE_INTERVAL_MS, ADVANCE_INTERVAL_MS);
    uv_timer_start(&c->checkpoint_timer, on_checkpoint_timer,
                   (uint64_t)c->opt.checkpoint_interval_ms,
                   (uint64_t)c->opt.checkpoint_interval_ms);

    c->watch = keng_kafka_uv_new(loop, c->queue, on_ready, c, errstr, errstr_size);
    if (!c->watch) {
        /* The handles are live now: let the loop close them, then free. */
        c->stopping = true;
        finish_stop(c);
        return NULL;
    }
    keng_log_info("consumer started", "group=%s topics=%s,%s", c->group_id, c->topics[0],
                  c->topics[1]);
    return c;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (c && c->queue)
        rd_kafka_queue_destroy(c->queue);
    if (c && c->rk)
        rd_kafka_destroy(c->rk);
    free_consumer(c);
    return NULL;
}

static void on_handle_closed(uv_handle_t *handle)
{
    keng_consumer_t *c = handle->data;

    if (--c->handles_open > 0)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free_consumer(c);
    if (done)
        done(arg);
}

/* The last step of stopping: runs once no watermark query still uses the handle. */
static void finish_stop(keng_consumer_t *c)
{
    if (c->watermark_queries > 0)
        return;
    if (c->queue) {
        rd_kafka_queue_destroy(c->queue);
        c->queue = NULL;
    }
    if (c->rk && !c->assignor_has_state) {
        /* librdkafka 2.0.2 aborts in rd_kafka_destroy (assertion 'assignor_state' in
         * rd_kafka_sticky_assignor_state_destroy, upstream issue 4312, fixed in 2.3) when
         * the group was joined but no assignment ever arrived: JoinGroup picked the
         * cooperative-sticky assignor, whose state only the first SyncGroup creates. That is
         * the case of an instance stopped while the group waits out dead members. The
         * consumer is closed (it left the group) and nothing of it is checkpointed yet, so
         * the handle is left to the process's exit instead: its threads and memory end
         * with the process, which stopping this consumer precedes. Waiting for an
         * assignment instead could make a stop take a whole session timeout or more. */
        keng_log_info("no assignment was ever received; leaving the Kafka handle to the "
                      "process exit (librdkafka 2.0.2 cannot destroy it in this state)",
                      NULL);
        c->rk = NULL;
    }
    if (c->rk) {
        rd_kafka_destroy(c->rk);
        c->rk = NULL;
    }
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
    uv_close((uv_handle_t *)&c->advance_timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->checkpoint_timer, on_handle_closed);
}

void keng_consumer_stop(keng_consumer_t *c, void (*done)(void *arg), void *arg)
{
    rd_kafka_resp_err_t err;

    if (c->stopping)
        return;
    c->done = done;
    c->done_arg = arg;
    uv_idle_stop(&c->idle);
    uv_timer_stop(&c->advance_timer);
    uv_timer_stop(&c->checkpoint_timer);
    if (c->watch) {
        keng_kafka_uv_close(c->watch);
        c->watch = NULL;
    }
    /* Flush the dead letters first: the checkpoint must not pass one that was lost. */
    keng_deadletter_flush(c->dl, SHUTDOWN_FLUSH_MS);
    if (checkpoint(c, true) != 0)
        keng_log_error("the last checkpoint failed; events since the previous one will be "
                       "read again at the next start",
                       NULL);
    /* The instance that takes the partitions over starts from what is in the topic. */
    if (c->cluster)
        keng_cluster_flush(c->cluster, SHUTDOWN_FLUSH_MS);
    c->stopping = true;
    /* Leaves the group; the revoke it triggers runs rebalance_cb from here. */
    err = rd_kafka_consumer_close(c->rk);
    if (err)
        keng_log_warn("consumer close", "error=\"%s\"", rd_kafka_err2str(err));
    keng_log_info(
        "consumer stopped",
        "counted=%" PRIu64 " duplicates=%" PRIu64 " deadlettered=%" PRIu64 " checkpoints=%" PRIu64,
        c->stats.counted, c->stats.duplicates, c->stats.deadlettered, c->stats.checkpoints);
    finish_stop(c);
}

void keng_consumer_stats(const keng_consumer_t *c, keng_consumer_stats_t *out)
{
    *out = c->stats;
}

void keng_consumer_each_deadletter(const keng_consumer_t *c,
                                   void (*fn)(const char *reason, uint64_t count, void *arg),
                                   void *arg)
{
    for (size_t i = 0; i < c->nreasons; i++)
        fn(c->reasons[i].name, c->reasons[i].count, arg);
}

void keng_consumer_each_partition(const keng_consumer_t *c,
                                  void (*fn)(const char *topic, int32_t partition, int64_t lag,
                                             void *arg),
                                  void *arg)
{
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        int64_t low = 0, high = 0, lag;

        if (!p->assigned || !c->rk)
            continue;
        if (rd_kafka_get_watermark_offsets(c->rk, c->topics[p->topic], p->partition, &low, &high) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            high < 0) {
            low = p->low;
            high = p->target;
        }
        if (high < 0)
            continue;
        lag = high - (p->next_offset >= 0 ? p->next_offset : low);
        fn(c->topics[p->topic], p->partition, lag > 0 ? lag : 0, arg);
    }
}

void keng_consumer_set_alerts(keng_consumer_t *c, keng_alerts_t *alerts, keng_alertlog_t *log,
                              int read_timeout_ms)
{
    c->alerts = alerts;
    c->alertlog = log;
    c->alerts_read_timeout_ms = read_timeout_ms;
    if (alerts) {
        keng_alerts_set_holder(alerts, holds_scope, c);
        keng_alerts_set_shared_counts(alerts, c->cluster ? keng_cluster_counts(c->cluster) : NULL);
    }
}

void keng_consumer_set_cluster(keng_consumer_t *c, keng_cluster_t *cluster)
{
    c->cluster = cluster;
    if (c->alerts)
        keng_alerts_set_shared_counts(c->alerts, cluster ? keng_cluster_counts(cluster) : NULL);
}
