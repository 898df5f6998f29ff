/* The consumer's rebalances: at an assignment, each unit's newest state from the local
 * checkpoint or the counts topic and where each partition starts; at a revocation, the last
 * checkpoint and letting go; the alerts handed over both ways. It never counts an event. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "timeutil.h"

/* ---- board state ---- */

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
        if (tp->partition == partition && keng_consumer__topic_index(ctx->c, tp->topic) == topic)
            return i;
    }
    return -1;
}

/* A saved unit that cannot be trusted: its partition (PARTITION_ANY when the record cannot
 * say which) is read again from its first retained event, where only this unit counts what
 * the others already have, unless the counts topic then gives a state that loads. */
static void rebuild_unit(restore_ctx_t *ctx, uint32_t board, int kind, int32_t partition,
                         const char *source, const char *why)
{
    keng_consumer_t *c = ctx->c;
    /* The lane of that partition; with none known, a free lane that the first event of the
     * partition read again takes (keng_consumer__unit_of). */
    uint32_t u = keng_consumer__unit_of(c, board, kind, partition, partition >= 0);

    if (u == UINT32_MAX)
        u = keng_consumer__unit_of(c, board, kind, PARTITION_NONE, false);
    if (u == UINT32_MAX)
        u = board * KENG_KIND_COUNT + (uint32_t)kind;
    c->unit_rebuild[u] = partition;
    c->stats.units_damaged++;
    keng_log_error("a saved unit state is damaged; its partition is read again from the "
                   "start to rebuild it, and the instance is not ready until then",
                   "board=%s kind=%s partition=%" PRId32 " source=%s error=\"%s\"",
                   keng_registry_board(c->reg, board)->id, keng_kind_name((keng_kind_t)kind),
                   partition, source, why);
}

/* Loads a unit's state (borrowed) valid at offset from, for a partition being assigned. */
static void restore_unit(restore_ctx_t *ctx, uint32_t board, int kind, int32_t partition,
                         const unsigned char *state, size_t len, int64_t from, const char *source)
{
    keng_consumer_t *c = ctx->c;
    uint32_t u = keng_consumer__unit_of(c, board, kind, partition, true);
    char err[256];

    if (u == UINT32_MAX) {
        keng_log_error("a board's events come from more partitions than keng keeps apart; this "
                       "partition's share of its counts is not loaded",
                       "board=%s kind=%s partition=%" PRId32 " source=%s",
                       keng_registry_board(c->reg, board)->id, keng_kind_name((keng_kind_t)kind),
                       partition, source);
        ctx->skipped++;
        return;
    }
    if (keng_counts_unit_load(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)kind, state, len,
                              ctx->now, err, sizeof(err)) != 0) {
        ctx->skipped++;
        if (!keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)kind)) {
            rebuild_unit(ctx, board, kind, partition, source, err);
            return;
        }
        keng_log_error("a shared unit state could not be loaded; the older local one stays",
                       "board=%s kind=%s error=\"%s\"", keng_registry_board(c->reg, board)->id,
                       keng_kind_name((keng_kind_t)kind), err);
        return;
    }
    c->unit_part[u] = partition;
    c->unit_from[u] = from;
    c->unit_from_part[u] = partition;
    c->unit_rebuild[u] = PARTITION_NONE;
    ctx->loaded++;
}

/* A local unit record's header: its partition into *partition and the length of the header,
 * or 0 (with why) when the record fails its check and cannot be used. */
static size_t unit_header(const unsigned char *b, size_t len, int32_t *partition, const char **why)
{
    if (len < UNIT_HEADER_V1 || b[0] != UNIT_MAGIC0 || b[1] != UNIT_MAGIC1 ||
        (b[2] != 1 && b[2] != UNIT_VERSION) || (b[2] == UNIT_VERSION && len < UNIT_HEADER)) {
        *why = "not a unit record of a known version";
        return 0;
    }
    *partition = get_i32(b + 3);
    if (b[2] == 1)
        return UNIT_HEADER_V1;
    uint32_t crc = keng_consumer__crc32(keng_consumer__crc32(0, b, UNIT_HEADER_V1), b + UNIT_HEADER,
                                        len - UNIT_HEADER);
    if ((uint32_t)get_i32(b + UNIT_HEADER_V1) != crc) {
        *why = "the record's CRC-32 does not match its bytes";
        return 0;
    }
    return UNIT_HEADER;
}

/* keng_checkpoint_each_unit's callback: the local candidates, id "<board id>/<kind>/<partition>"
 * ("<board id>/<kind>" before lanes; keys sort so, and an older record of a lane is read
 * first and replaced). */
static int restore_local(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    restore_ctx_t *ctx = arg;
    const unsigned char *b = data;
    const char *slash = memchr(id, '/', id_len), *end = id + id_len;
    keng_kind_t kind;
    char kind_name[16], *after;
    int32_t board, partition, keyed = PARTITION_ANY;
    int i;

    if (!slash || (size_t)(end - slash - 1) >= sizeof(kind_name))
        return 0;
    memcpy(kind_name, slash + 1, (size_t)(end - slash - 1));
    kind_name[end - slash - 1] = '\0';
    if ((after = strchr(kind_name, '/'))) {
        long p = strtol(after + 1, NULL, 10);
        *after = '\0';
        keyed = p >= 0 && p <= INT32_MAX ? (int32_t)p : PARTITION_ANY;
    }
    board = keng_registry_find_board(ctx->c->reg, id, (size_t)(slash - id));
    if (board < 0 || keng_kind_parse(kind_name, &kind) != 0)
        return 0; /* not the registry's: boards removed from it drop out */
    const char *why = NULL;
    size_t header = unit_header(b, len, &partition, &why);
    if (header == 0) {
        rebuild_unit(ctx, (uint32_t)board, (int)kind, keyed, "checkpoint", why);
        return 0;
    }
    i = restore_find(ctx, (int)kind, partition);
    if (i < 0 || ctx->local[i] < 0)
        return 0;
    restore_unit(ctx, (uint32_t)board, (int)kind, partition, b + header, len - header,
                 ctx->local[i], "checkpoint");
    return 0;
}

/* ---- rebalance ---- */

/* ---- alerts across assignments ---- */

static bool assigned_any(const keng_consumer_t *c, int topic)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].assigned && c->parts[i].topic == topic)
            return true;
    return false;
}

/* Whether this instance decides a scope's alerts (alerts.h): a board's, when it owns the
 * board's partition; those above a board, when it decides them for the topic. A board's
 * partition is known only from its unit, and a board none of whose events is in the loaded
 * state (they all came after the last checkpoint) has none until the catch-up counts them
 * again: until then, every board without a unit may be one of this instance's partitions,
 * and is held, so that its alert read back from the topic is kept rather than fired again
 * under a new id. Nothing is evaluated before the catch-up ends, and then (update_ready in
 * consumer.c) the alerts of the boards still without a unit are let go. */
bool keng_consumer__holds_scope(keng_level_t level, uint32_t scope, keng_kind_t kind, void *arg)
{
    const keng_consumer_t *c = arg;

    if ((unsigned)kind >= TOPIC_COUNT)
        return false;
    if (level != KENG_LEVEL_BOARD)
        return c->decides_above[kind];
    if (scope >= c->nboards)
        return false;
    for (size_t lane = 0; lane < c->lanes; lane++)
        if (c->unit_part[(lane * c->nboards + scope) * KENG_KIND_COUNT + (uint32_t)kind] !=
            PARTITION_NONE)
            return true;
    return !c->ready && assigned_any(c, (int)kind);
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
        const part_t *first = keng_consumer__part_find(c, t, 0, false);

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

/* For each assigned partition, the offset the local checkpoint is valid at (ctx->local) and
 * the mark the counts topic holds (mark), -1 for none. */
static void read_starts(keng_consumer_t *c, restore_ctx_t *ctx, int64_t *mark)
{
    char err[512];
    rd_kafka_topic_partition_list_t *parts = ctx->parts;

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = keng_consumer__topic_index(c, tp->topic);
        int64_t off = -1;
        int rc;

        ctx->local[i] = mark[i] = -1;
        if (t < 0)
            continue;
        rc = keng_checkpoint_get_offset(c->cp, tp->topic, tp->partition, &off, err, sizeof(err));
        if (rc < 0)
            keng_log_error("cannot read the checkpointed offset; not using the checkpoint",
                           "topic=%s partition=%" PRId32 " error=\"%s\"", tp->topic, tp->partition,
                           err);
        if (rc == 1)
            ctx->local[i] = off;
        if (c->cluster && !keng_cluster_mark(c->cluster, (keng_kind_t)t, tp->partition, &mark[i]))
            mark[i] = -1;
    }
}

/* Loads the units of the counts topic that are newer than the local ones. A unit's state in
 * the topic is valid at its own offset, and at the partition's mark when older: a unit that
 * changed before the mark was published again before it. */
static void restore_from_topic(keng_consumer_t *c, restore_ctx_t *ctx, const int64_t *mark)
{
    for (uint32_t bk = 0; bk < c->nboards * KENG_KIND_COUNT; bk++) {
        uint32_t board = bk / KENG_KIND_COUNT;
        int kind = (int)(bk % KENG_KIND_COUNT);
        for (uint32_t lane = 0; lane < KENG_UNIT_LANES; lane++) {
            const unsigned char *state;
            size_t len;
            int32_t partition;
            int64_t valid;
            int i;

            if (!keng_cluster_unit(c->cluster, board, (keng_kind_t)kind, lane, &state, &len,
                                   &partition, &valid) ||
                (i = restore_find(ctx, kind, partition)) < 0)
                continue;
            if (mark[i] > valid)
                valid = mark[i];
            uint32_t u = keng_consumer__unit_of(c, board, kind, partition, false);
            if (u != UINT32_MAX && c->unit_from[u] >= valid &&
                keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)kind))
                continue; /* the local one is as new */
            restore_unit(ctx, board, kind, partition, state, len, valid, "topic");
        }
    }
}

/* How many damaged units of topic t are rebuilt from partition (logged). */
static size_t rebuilds_in(const keng_consumer_t *c, int t, int32_t partition)
{
    size_t n = 0;

    for (size_t u = (size_t)t; u < c->nunits; u += KENG_KIND_COUNT) {
        int32_t r = c->unit_rebuild[u];
        n += r == partition || r == PARTITION_ANY;
    }
    if (n)
        keng_log_warn("partition read again from its first retained event to rebuild damaged "
                      "unit states",
                      "topic=%s partition=%" PRId32 " units=%zu", c->topics[t], partition, n);
    return n;
}

/* Where an assigned partition starts: where the oldest of its loaded units ends, or, when
 * nothing says which units had no events (base < 0) or a unit is rebuilt, at its first
 * retained event. */
static void start_partition(keng_consumer_t *c, rd_kafka_topic_partition_t *tp, int64_t local,
                            int64_t mark)
{
    int t = keng_consumer__topic_index(c, tp->topic);
    part_t *p;
    /* Units absent from both sources had no events before the newer of the two. */
    int64_t base = local > mark ? local : mark;
    int64_t start = base, write_from = base;
    size_t units = 0;

    if (t < 0 || !(p = keng_consumer__part_find(c, t, tp->partition, true)))
        return;
    for (uint32_t u = (uint32_t)t; u < c->nunits; u += KENG_KIND_COUNT) {
        if (c->unit_part[u] != tp->partition || c->unit_from[u] < 0 ||
            !keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)t))
            continue;
        units++;
        if (start < 0 || c->unit_from[u] < start)
            start = c->unit_from[u];
        if (c->unit_from[u] > write_from)
            write_from = c->unit_from[u];
    }
    if (base < 0 || rebuilds_in(c, t, tp->partition))
        start = -1; /* nothing says which units had no events, or one is damaged: read it all */
    /* Without any state, the partition is rebuilt from its first retained event. */
    tp->offset = start >= 0 ? start : RD_KAFKA_OFFSET_BEGINNING;
    p->from_start = false;
    if (start < 0)
        keng_consumer__gone_note_start(c, p, base < 0);
    keng_consumer__gone_adopt(c, p);
    p->assigned = true;
    keng_consumer__hold_reset(p);
    p->next_offset = start;
    p->write_from = write_from;
    p->replay_until = base;
    p->target = -1;
    p->reached = false;
    /* Everything loaded is written and published again, so that the checkpoint and the
     * topic each hold the whole partition at one offset. */
    keng_consumer__mark_partition_dirty(c, p);
    if (c->cluster)
        keng_cluster_set_owned(c->cluster, (keng_kind_t)t, tp->partition, true);
    keng_log_info("partition assigned",
                  "topic=%s partition=%" PRId32 " offset=%" PRId64 " checkpoint=%" PRId64
                  " mark=%" PRId64 " units=%zu",
                  tp->topic, tp->partition, start, local, mark, units);
}

/* Picks, for every unit of the assigned partitions, the newest state of the local checkpoint
 * and the counts topic, loads it, and starts each partition where the oldest of them ends. */
static void on_assign(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    char err[512];
    restore_ctx_t ctx = {.c = c, .parts = parts, .now = keng_consumer__now_ms(c)};
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
    keng_consumer__gone_load(c);
    if (ctx.local && mark)
        read_starts(c, &ctx, mark);
    if (ctx.local && mark &&
        keng_checkpoint_each_unit(c->cp, restore_local, &ctx, err, sizeof(err)) < 0)
        keng_log_error("cannot read the checkpointed units; using the counts topic only",
                       "error=\"%s\"", err);
    if (c->cluster && mark)
        restore_from_topic(c, &ctx, mark);
    for (int i = 0; i < parts->cnt; i++) {
        bool known = ctx.local && mark;
        start_partition(c, &parts->elems[i], known ? ctx.local[i] : -1, known ? mark[i] : -1);
    }
    free(ctx.local);
    free(mark);
    /* Seen again at the next assignment while the damaged record is still on disk; what
     * this one rebuilds is kept for its gap (consumer_gone.c). */
    for (size_t u = 0; u < c->nunits; u++) {
        if (c->unit_rebuild[u] != PARTITION_NONE)
            c->unit_rebuilt[u] = c->unit_rebuild[u];
        c->unit_rebuild[u] = PARTITION_NONE;
    }
    /* Before the hand-over: boards without a unit are held until the catch-up ends. */
    c->ready = false;
    hand_over_alerts(c, true);
    rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, parts);
    if (error) {
        keng_log_error("incremental assign failed", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    /* A partition paused for the schema registry before it was revoked starts afresh. */
    if (c->sr_client)
        rd_kafka_resume_partitions(c->rk, parts);
    c->got_assignment = true;
    keng_consumer__query_watermarks(c);
}

/* Lets one partition go: this topic's units of it leave the counts (the board's other kind
 * may stay here), unless stopping, when the counts are still served until the process
 * ends. */
static void let_go(keng_consumer_t *c, part_t *p)
{
    p->assigned = false;
    keng_consumer__hold_reset(p);
    p->offset_dirty = false;
    p->target = -1;
    keng_log_info("partition revoked", "topic=%s partition=%" PRId32, c->topics[p->topic],
                  p->partition);
    if (c->stopping)
        return;
    for (uint32_t u = (uint32_t)p->topic; u < c->nunits; u += KENG_KIND_COUNT) {
        if (c->unit_part[u] != p->partition)
            continue;
        keng_counts_unit_clear(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)p->topic);
        keng_counts_unit_set_dirty(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)p->topic, false);
        c->unit_part[u] = PARTITION_NONE;
        c->unit_from[u] = -1;
        c->unit_from_part[u] = PARTITION_NONE;
    }
    if (c->cluster)
        keng_cluster_set_owned(c->cluster, (keng_kind_t)p->topic, p->partition, false);
}

/* The revoked partitions' progress must be in the checkpoint and the counts topic before
 * they go; a lost assignment may already be another instance's: then it is checkpointed
 * locally and nothing is published that could be newer in the topic than what the new owner
 * publishes. */
static void checkpoint_before_letting_go(keng_consumer_t *c, bool lost)
{
    c->assignment_lost = lost;
    if (keng_consumer__checkpoint(c, true) != 0)
        keng_log_error("could not checkpoint before giving partitions up; their events since "
                       "the last checkpoint will be read again",
                       "lost=%d", lost);
    if (c->cluster && !lost)
        keng_cluster_flush(c->cluster, REVOKE_FLUSH_MS);
    c->assignment_lost = false;
}

static void on_revoke(keng_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    checkpoint_before_letting_go(c, rd_kafka_assignment_lost(c->rk));
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int t = keng_consumer__topic_index(c, tp->topic);
        part_t *p = t < 0 ? NULL : keng_consumer__part_find(c, t, tp->partition, false);

        if (p)
            let_go(c, p);
    }
    if (!c->stopping)
        hand_over_alerts(c, false);
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, parts);
    if (error) {
        keng_log_error("incremental unassign failed", "error=\"%s\"", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

void keng_consumer__drop_assignment(keng_consumer_t *c)
{
    checkpoint_before_letting_go(c, true);
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].assigned)
            let_go(c, &c->parts[i]);
    hand_over_alerts(c, false);
}

/* Served from the consumer queue, on the loop thread. */
void keng_consumer__rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                 rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    keng_consumer_t *c = opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* librdkafka ran the assignor's on_assignment before queueing this (its state now
         * exists), even for an empty assignment: cooperative rebalances always assign. */
        c->assignor_has_state = true;
        if (!rd_kafka_fatal_error(rk, NULL, 0)) {
            on_assign(c, parts);
        } else {
            /* A fenced handle is replaced (consumer.c): nothing is counted from it. */
            rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, parts);
            if (error)
                rd_kafka_error_destroy(error);
            keng_log_info("assignment to a fenced Kafka handle not taken", "partitions=%d",
                          parts->cnt);
        }
        /* librdkafka 2.0.2 turns an assign call that reaches it after a fatal error (the fence
         * may come while on_assign runs) into an unassign that leaves its group state waiting
         * for an assign call for good; a handle in that state never ends once destroyed (its
         * main thread spins). It is marked so, and left to the process exit. */
        if (rd_kafka_fatal_error(rk, NULL, 0)) {
            c->handle_stuck = true;
            keng_consumer__note_fatal(c);
        }
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(c, parts);
    } else {
        keng_log_error("rebalance failed", "error=\"%s\"", rd_kafka_err2str(err));
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, parts);
        if (error)
            rd_kafka_error_destroy(error);
    }
}
