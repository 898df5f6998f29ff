/* The Kafka consumer of keng-aggregate on the libuv loop: decode, count or dead-letter,
 * checkpoint state and offsets together, and resume from the checkpoint. */
#include "consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_uv.h"
#include "log.h"
#include "timeutil.h"

#define TOPIC_COUNT            2
#define ADVANCE_INTERVAL_MS    1000
#define WATERMARK_TIMEOUT_MS   3000
#define DEADLETTER_WAIT_MAX_MS 10000
#define SHUTDOWN_FLUSH_MS      5000
#define REASON_MAX             16

/* A checkpointed board is its counts.c state behind this header, which remembers the
 * partitions its events came from, so that a revoked partition's boards can be found. */
#define BOARD_MAGIC0   'K'
#define BOARD_MAGIC1   'B'
#define BOARD_VERSION  1
#define BOARD_HEADER   11
#define PARTITION_NONE (-1)

typedef struct part {
    int topic; /* index into c->topics */
    int32_t partition;
    bool assigned;
    bool offset_dirty;    /* next_offset changed since the last checkpoint */
    bool query_in_flight; /* a watermark query runs on the thread pool */
    bool reached;         /* read up to target */
    int64_t next_offset;  /* next offset to count; -1 before the first */
    int64_t low, target;  /* watermarks at assignment; target -1 until known */
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

    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    keng_kafka_uv_t *watch;

    uv_idle_t idle;           /* keeps draining while a batch left messages behind */
    uv_timer_t advance_timer; /* moves the windows, retries watermark queries */
    uv_timer_t checkpoint_timer;
    int handles_open;

    part_t *parts;
    size_t nparts, parts_cap;

    size_t nboards;
    int32_t *board_part[TOPIC_COUNT]; /* partition each board's events came from */
    bool *board_cleared;              /* forgotten when its partition was revoked */
    uint32_t *dirty_list;             /* scratch for a checkpoint */

    int64_t last_now;
    int64_t events_since_checkpoint;
    int64_t deadletter_wait_since; /* monotonic ms a checkpoint has waited for dead letters */
    bool got_assignment;
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
    opt->checkpoint_events = 50000;
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

typedef struct load_ctx {
    keng_consumer_t *c;
    size_t loaded, skipped;
    int64_t now;
} load_ctx_t;

/* Restores one board from its checkpointed bytes (borrowed). */
static int load_board(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    load_ctx_t *ctx = arg;
    keng_consumer_t *c = ctx->c;
    const unsigned char *b = data;
    char err[256];
    int32_t idx = keng_registry_find_board(c->reg, id, id_len);

    if (idx < 0) {
        keng_log_warn("the checkpoint has a board the registry does not know; ignored",
                      "board=%.*s", (int)id_len, id);
        ctx->skipped++;
        return 0;
    }
    if (len < BOARD_HEADER || b[0] != BOARD_MAGIC0 || b[1] != BOARD_MAGIC1 ||
        b[2] != BOARD_VERSION) {
        keng_log_error("a checkpointed board has an unknown format; its counts restart empty",
                       "board=%.*s", (int)id_len, id);
        ctx->skipped++;
        return 0;
    }
    if (keng_counts_board_load(c->counts, (uint32_t)idx, b + BOARD_HEADER, len - BOARD_HEADER,
                               ctx->now, err, sizeof(err)) != 0) {
        keng_log_error("a checkpointed board could not be loaded; its counts restart empty",
                       "board=%.*s error=\"%s\"", (int)id_len, id, err);
        ctx->skipped++;
        return 0;
    }
    for (int t = 0; t < TOPIC_COUNT; t++)
        c->board_part[t][idx] = get_i32(b + 3 + 4 * t);
    c->board_cleared[idx] = false;
    keng_counts_board_mark_clean(c->counts, (uint32_t)idx);
    ctx->loaded++;
    return 0;
}

/* ---- checkpoint ---- */

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

    if (keng_deadletter_in_flight(c->dl) > 0) {
        if (!c->deadletter_wait_since)
            c->deadletter_wait_since = start;
        if (!force && start - c->deadletter_wait_since < DEADLETTER_WAIT_MAX_MS)
            return 1;
        if (keng_deadletter_flush(c->dl, SHUTDOWN_FLUSH_MS) != 0) {
            keng_log_warn("dead letters are not acknowledged; the checkpoint waits", "in_flight=%d",
                          keng_deadletter_in_flight(c->dl));
            return 1;
        }
    }
    c->deadletter_wait_since = 0;

    txn = keng_checkpoint_begin(c->cp, err, sizeof(err));
    if (!txn)
        goto out;
    for (size_t i = 0; i < c->nboards; i++) {
        unsigned char *state = NULL;
        size_t len = 0;

        if (!keng_counts_board_dirty(c->counts, (uint32_t)i))
            continue;
        if (keng_counts_board_save(c->counts, (uint32_t)i, &state, &len) != 0) {
            snprintf(err, sizeof(err), "board %s: cannot save its state (out of memory?)",
                     keng_registry_board(c->reg, (uint32_t)i)->id);
            free(state);
            goto out;
        }
        unsigned char *buf = malloc(BOARD_HEADER + len);
        if (!buf) {
            snprintf(err, sizeof(err), "out of memory");
            free(state);
            goto out;
        }
        buf[0] = BOARD_MAGIC0;
        buf[1] = BOARD_MAGIC1;
        buf[2] = BOARD_VERSION;
        for (int t = 0; t < TOPIC_COUNT; t++)
            put_i32(buf + 3 + 4 * t, c->board_part[t][i]);
        if (len)
            memcpy(buf + BOARD_HEADER, state, len);
        free(state);
        int rc = keng_checkpoint_put_board(txn, keng_registry_board(c->reg, (uint32_t)i)->id, buf,
                                           BOARD_HEADER + len, err, sizeof(err));
        free(buf);
        if (rc != 0)
            goto out;
        c->dirty_list[ndirty++] = (uint32_t)i;
    }
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->offset_dirty || p->next_offset < 0)
            continue;
        if (keng_checkpoint_put_offset(txn, c->topics[p->topic], p->partition, p->next_offset, err,
                                       sizeof(err)) != 0)
            goto out;
    }
    ret = keng_checkpoint_commit(txn, err, sizeof(err));
    txn = NULL;
    if (ret != 0)
        goto out;

    for (size_t i = 0; i < ndirty; i++)
        keng_counts_board_mark_clean(c->counts, c->dirty_list[i]);
    commit = rd_kafka_topic_partition_list_new((int)c->nparts);
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (p->offset_dirty && p->assigned && p->next_offset >= 0)
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

static void on_assign(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    char err[512];
    int64_t now = now_ms(c);

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = topic_index(c, tp->topic);
        int64_t off = -1;
        part_t *p;

        if (t < 0 || !(p = part_find(c, t, tp->partition, true)))
            continue;
        int rc =
            keng_checkpoint_get_offset(c->cp, tp->topic, tp->partition, &off, err, sizeof(err));
        if (rc < 0)
            keng_log_error("cannot read the checkpointed offset; reading from the start",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", tp->topic, tp->partition,
                           err);
        /* A partition without a checkpoint has no state here either, so it is read whole. */
        tp->offset = rc == 1 ? off : RD_KAFKA_OFFSET_BEGINNING;
        p->assigned = true;
        p->next_offset = rc == 1 ? off : -1;
        p->offset_dirty = false;
        p->target = -1;
        p->reached = false;

        /* Boards forgotten when this partition went away come back from the checkpoint. */
        load_ctx_t ctx = {.c = c, .now = now};
        for (size_t b = 0; b < c->nboards; b++) {
            if (!c->board_cleared[b] || c->board_part[t][b] != tp->partition)
                continue;
            if (keng_checkpoint_get_board(c->cp, keng_registry_board(c->reg, (uint32_t)b)->id,
                                          load_board, &ctx, err, sizeof(err)) < 0)
                keng_log_error("cannot read a checkpointed board", "error=\"%s\"", err);
            c->board_cleared[b] = false;
        }
        keng_log_info("partition assigned", "topic=%s partition=%" PRId32 " offset=%" PRId64,
                      tp->topic, tp->partition, rc == 1 ? off : (int64_t)-1);
    }
    rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, parts);
    if (error) {
        keng_log_error("incremental assign failed", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    c->got_assignment = true;
    query_watermarks(c);
}

static void on_revoke(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    /* The revoked partitions' progress must be in the checkpoint before they go. */
    if (checkpoint(c, true) != 0)
        keng_log_error("could not checkpoint before giving partitions up; their events since "
                       "the last checkpoint will be read again",
                       "lost=%d", rd_kafka_assignment_lost(c->rk));
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
        for (size_t b = 0; b < c->nboards; b++) {
            if (c->board_part[t][b] == tp->partition && !c->board_cleared[b]) {
                keng_counts_board_clear(c->counts, (uint32_t)b);
                keng_counts_board_mark_clean(c->counts, (uint32_t)b);
                c->board_cleared[b] = true;
            }
        }
    }
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
    rc = keng_avro_decode(c->dec, m->payload, m->len, &ev, &schema_id, err, sizeof(err));
    if (rc != KENG_AVRO_OK) {
        dead_letter(c, m, keng_avro_err_reason(rc), err);
    } else {
        int32_t idx = keng_registry_find_board(c->reg, ev.board_id, strlen(ev.board_id));
        if (idx < 0) {
            snprintf(err, sizeof(err), "board %s is not in the registry", ev.board_id);
            dead_letter(c, m, "unknown-board", err);
        } else if (ev.occurred_at > now + KENG_FUTURE_SKEW_MS) {
            char when[32], clock[32];
            snprintf(err, sizeof(err),
                     "occurred_at %s is more than 5 minutes ahead of the aggregator's clock %s",
                     keng_time_format_utc(ev.occurred_at, when, sizeof(when)),
                     keng_time_format_utc(now, clock, sizeof(clock)));
            dead_letter(c, m, "future-event", err);
        } else {
            if (keng_counts_add(c->counts, (uint32_t)idx, &ev, now) == KENG_COUNTS_DUPLICATE)
                c->stats.duplicates++;
            else
                c->stats.counted++;
            c->board_part[t][idx] = m->partition;
            c->board_cleared[idx] = false;
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
        rd_kafka_message_t *m = rd_kafka_consume_queue(c->queue, 0);
        if (!m) {
            uv_idle_stop(&c->idle);
            update_ready(c);
            return;
        }
        handle_message(c, m);
        rd_kafka_message_destroy(m);
        n++;
    }
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

    keng_counts_advance(c->counts, now_ms(c));
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
    for (int t = 0; t < TOPIC_COUNT; t++) {
        free(c->topics[t]);
        free(c->board_part[t]);
    }
    free(c->board_cleared);
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
    c->opt = *opt;
    if (c->opt.batch_max <= 0)
        c->opt.batch_max = 1000;
    if (c->opt.checkpoint_events <= 0)
        c->opt.checkpoint_events = 50000;
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
    c->board_part[0] = malloc((c->nboards + 1) * sizeof(int32_t));
    c->board_part[1] = malloc((c->nboards + 1) * sizeof(int32_t));
    c->board_cleared = calloc(c->nboards + 1, sizeof(bool));
    c->dirty_list = malloc((c->nboards + 1) * sizeof(uint32_t));
    if (!c->topics[0] || !c->topics[1] || !c->group_id || !c->board_part[0] || !c->board_part[1] ||
        !c->board_cleared || !c->dirty_list) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    c->opt.topic_incidents = c->topics[0];
    c->opt.topic_mediations = c->topics[1];
    c->opt.group_id = c->group_id;
    for (size_t b = 0; b < c->nboards; b++)
        c->board_part[0][b] = c->board_part[1][b] = PARTITION_NONE;
    c->dec = keng_avro_decoder_new(store, errstr, errstr_size);
    if (!c->dec)
        goto fail;

    /* The checkpoint is where counting resumes: load it before any message arrives. */
    load_ctx_t ctx = {.c = c, .now = now_ms(c)};
    if (keng_checkpoint_each_board(cp, load_board, &ctx, errstr, errstr_size) < 0)
        goto fail;
    keng_counts_advance(counts, ctx.now);
    keng_log_info("checkpoint loaded", "boards=%zu skipped=%zu", ctx.loaded, ctx.skipped);

    conf = keng_config_kafka(cfg, errstr, errstr_size);
    if (!conf)
        goto fail;
    if (set_conf(conf, "group.id", c->group_id, errstr, errstr_size) ||
        set_conf(conf, "partition.assignment.strategy", "cooperative-sticky", errstr,
                 errstr_size) ||
        set_conf(conf, "enable.auto.commit", "false", errstr, errstr_size) ||
        set_conf(conf, "enable.auto.offset.store", "false", errstr, errstr_size) ||
        set_conf(conf, "auto.offset.reset", "earliest", errstr, errstr_size))
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
