/* The consumer's checkpoint: every dirty board unit and moved offset in one LMDB
 * transaction, published to the counts topic and committed to the group after it, and a
 * failed one counted and retried with a back-off; it never reads a checkpoint back
 * (consumer_rebalance.c does, at an assignment). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "timeutil.h"

static void put_i32(unsigned char *b, int32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)((uint32_t)v >> (8 * i));
}

uint32_t keng_consumer__crc32(uint32_t crc, const unsigned char *p, size_t n)
{
    static uint32_t table[256];

    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++)
                v = (v & 1u) ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
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
    p = keng_consumer__part_find(c, (int)(u % KENG_KIND_COUNT), c->unit_part[u], false);
    return p && part_writable(p);
}

/* Makes the next checkpoint write every unit of p that has state. */
void keng_consumer__mark_partition_dirty(keng_consumer_t *c, part_t *p)
{
    for (uint32_t u = (uint32_t)p->topic; u < c->nunits; u += KENG_KIND_COUNT) {
        if (c->unit_part[u] == p->partition &&
            keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)p->topic))
            keng_counts_unit_set_dirty(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)p->topic, true);
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

/* The alert transitions of every counted event must be acknowledged before the checkpoint
 * saves the alert state, and dead letters before it moves past their events. Unless force,
 * waits (returns 1) up to DEADLETTER_WAIT_MAX_MS, after which it flushes; returns 0 to go on. */
static int wait_for_acks(keng_consumer_t *c, bool force, int64_t start)
{
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
    return 0;
}

/* Whether there is anything to write. An idle aggregator writes nothing: a commit costs an
 * fsync. A partition whose publication to the counts topic was lost is marked whole first. */
static bool has_work(keng_consumer_t *c)
{
    for (size_t i = 0; c->cluster && i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (p->assigned && keng_cluster_take_resync(c->cluster, p->topic, p->partition))
            keng_consumer__mark_partition_dirty(c, p);
    }
    bool work = false;
    for (size_t i = 0; i < c->nparts && !work; i++)
        work = c->parts[i].offset_dirty && part_writable(&c->parts[i]);
    for (size_t u = 0; u < c->nunits && !work; u++)
        work = unit_writable(c, (uint32_t)u);
    if (c->alerts)
        work = work || keng_alerts_dirty(c->alerts) || keng_alertlog_dirty(c->alertlog);
    return work || c->gone_dirty;
}

/* One unit's state behind its header into the transaction; the state itself is kept in
 * *keep (the caller frees it) for the counts topic, which gets it only once the transaction
 * is committed, so that a failed checkpoint's retry publishes nothing twice. Returns 0, or -1
 * with err filled. */
static int put_unit(keng_consumer_t *c, keng_checkpoint_txn_t *txn, uint32_t u,
                    unsigned char **keep, size_t *keep_len, char *err, size_t err_size)
{
    uint32_t board = keng_consumer__unit_board(c, u);
    keng_kind_t kind = (keng_kind_t)(u % KENG_KIND_COUNT);
    unsigned char *state = NULL;
    size_t len = 0;
    char lane_kind[32];

    if (keng_counts_unit_save(c->counts, u / KENG_KIND_COUNT, kind, &state, &len) != 0) {
        snprintf(err, err_size, "board %s: cannot save its state (out of memory?)",
                 keng_registry_board(c->reg, board)->id);
        free(state);
        return -1;
    }
    unsigned char *buf = malloc(UNIT_HEADER + len);
    if (!buf) {
        snprintf(err, err_size, "out of memory");
        free(state);
        return -1;
    }
    buf[0] = UNIT_MAGIC0;
    buf[1] = UNIT_MAGIC1;
    buf[2] = UNIT_VERSION;
    put_i32(buf + 3, c->unit_part[u]);
    if (len)
        memcpy(buf + UNIT_HEADER, state, len);
    put_i32(buf + UNIT_HEADER_V1,
            (int32_t)keng_consumer__crc32(keng_consumer__crc32(0, buf, UNIT_HEADER_V1),
                                          buf + UNIT_HEADER, len));
    /* A lane is keyed by its partition too: "u/<board id>/<kind>/<partition>". */
    snprintf(lane_kind, sizeof(lane_kind), "%s/%" PRId32, keng_kind_name(kind), c->unit_part[u]);
    int rc = keng_checkpoint_put_unit(txn, keng_registry_board(c->reg, board)->id, lane_kind, buf,
                                      UNIT_HEADER + len, err, err_size);
    free(buf);
    if (rc == 0 && c->cluster && !c->assignment_lost)
        keng_consumer__part_find(c, (int)kind, c->unit_part[u], false)->publish = true;
    *keep = state;
    *keep_len = len;
    return rc;
}

/* The units a committed checkpoint wrote, to the counts topic unless the assignment was
 * lost; frees their states. */
static void publish_units(keng_consumer_t *c, size_t ndirty, unsigned char **states, size_t *lens)
{
    for (size_t i = 0; i < ndirty; i++) {
        uint32_t u = c->dirty_list[i];
        keng_kind_t kind = (keng_kind_t)(u % KENG_KIND_COUNT);
        if (c->cluster && !c->assignment_lost) {
            part_t *p = keng_consumer__part_find(c, (int)kind, c->unit_part[u], false);
            keng_cluster_publish_unit(c->cluster, keng_consumer__unit_board(c, u), kind,
                                      c->unit_part[u], p->next_offset, states[i], lens[i]);
        }
        free(states[i]);
        states[i] = NULL;
    }
}

/* After the commit: the units written are clean, the partitions' marks go to the counts
 * topic, and their offsets to the group (only for lag in Kafka's tools: resumption reads the
 * checkpoint, never these). */
static void after_commit(keng_consumer_t *c, size_t ndirty, int64_t start)
{
    for (size_t i = 0; i < ndirty; i++)
        keng_counts_unit_set_dirty(c->counts, c->dirty_list[i] / KENG_KIND_COUNT,
                                   (keng_kind_t)(c->dirty_list[i] % KENG_KIND_COUNT), false);
    for (size_t i = 0; c->cluster && !c->assignment_lost && i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->publish)
            continue;
        size_t len;
        char *gaps = keng_consumer__gone_encode_partition(c, p, &len);
        keng_cluster_publish_mark(c->cluster, p->topic, p->partition, p->next_offset,
                                  (const unsigned char *)gaps, len);
        free(gaps);
    }
    if (c->alerts) {
        keng_alerts_mark_clean(c->alerts);
        keng_alertlog_mark_clean(c->alertlog);
    }
    rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new((int)c->nparts);
    for (size_t i = 0; i < c->nparts; i++) {
        part_t *p = &c->parts[i];
        if (!p->publish)
            continue;
        if (p->offset_dirty && p->assigned)
            rd_kafka_topic_partition_list_add(commit, c->topics[p->topic], p->partition)->offset =
                p->next_offset;
        p->offset_dirty = false;
    }
    /* No handle: a rejoin after a fence failed; the checkpoint is what counts. */
    if (commit->cnt > 0 && c->rk && !c->stopping)
        rd_kafka_commit(c->rk, commit, 1);
    else if (commit->cnt > 0 && c->rk)
        rd_kafka_commit(c->rk, commit, 0);
    rd_kafka_topic_partition_list_destroy(commit);
    c->events_since_checkpoint = 0;
    c->stats.checkpoints++;
    c->stats.last_checkpoint_seconds = (double)(keng_monotonic_ms() - start) / 1000.0;
    c->stats.last_checkpoint_ms = keng_consumer_now(c);
}

/* A failed checkpoint: counted, and the next try backed off, from the interval doubling
 * up to RETRY_MAX_MS, so that a full disk is not hammered (each try writes every dirty
 * unit again). */
static void note_failure(keng_consumer_t *c, const char *err)
{
    int64_t delay = c->opt.checkpoint_interval_ms;

    c->stats.checkpoint_failures++;
    c->checkpoint_failed++;
    for (int i = 1; i < c->checkpoint_failed && delay < RETRY_MAX_MS; i++)
        delay *= 2;
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    c->checkpoint_retry_at = keng_monotonic_ms() + delay;
    snprintf(c->checkpoint_error, sizeof(c->checkpoint_error), "%s", err);
    keng_log_error("checkpoint failed; will retry",
                   "failures=%d retry_in_ms=%" PRId64 " error=\"%s\"", c->checkpoint_failed, delay,
                   err);
}

static void note_success(keng_consumer_t *c)
{
    if (c->checkpoint_failed)
        keng_log_info("checkpoint written again", "after_failures=%d", c->checkpoint_failed);
    c->checkpoint_failed = 0;
    c->checkpoint_ok_mono = keng_monotonic_ms();
}

/* Writes every dirty board and every moved offset in one transaction, then commits the
 * offsets to the group for the tools' sake. Unless force, waits (returns 1) while dead
 * letters are unacknowledged, up to DEADLETTER_WAIT_MAX_MS, after which it flushes, and
 * while a failed checkpoint's retry is backed off. */
int keng_consumer__checkpoint(keng_consumer_t *c, bool force)
{
    char err[512];
    keng_checkpoint_txn_t *txn = NULL;
    size_t ndirty = 0;
    int64_t start = keng_monotonic_ms();
    unsigned char **states = NULL;
    size_t *lens = NULL;
    bool gone_written = false;
    int ret = -1;

    if (!force && c->checkpoint_failed && start < c->checkpoint_retry_at)
        return 1;
    if (wait_for_acks(c, force, start) != 0)
        return 1;
    if (!has_work(c))
        return 0;

    states = calloc(c->nunits + 1, sizeof(*states));
    lens = calloc(c->nunits + 1, sizeof(*lens));
    if (!states || !lens) {
        snprintf(err, sizeof(err), "out of memory");
        goto out;
    }
    txn = keng_checkpoint_begin(c->cp, err, sizeof(err));
    if (!txn)
        goto out;
    for (size_t i = 0; i < c->nparts; i++)
        c->parts[i].publish = false;
    for (size_t u = 0; u < c->nunits; u++) {
        if (!unit_writable(c, (uint32_t)u))
            continue;
        c->dirty_list[ndirty] = (uint32_t)u;
        int rc = put_unit(c, txn, (uint32_t)u, &states[ndirty], &lens[ndirty], err, sizeof(err));
        ndirty++;
        if (rc != 0)
            goto out;
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
    gone_written = c->gone_dirty;
    if (gone_written) {
        size_t len = 0;
        char *gone = keng_consumer__gone_encode(c, &len);
        int rc =
            gone ? keng_checkpoint_put_meta(txn, KENG_CHECKPOINT_GONE, gone, len, err, sizeof(err))
                 : (snprintf(err, sizeof(err), "out of memory"), -1);
        free(gone);
        if (rc != 0)
            goto out;
    }
    ret = keng_checkpoint_commit(txn, err, sizeof(err));
    txn = NULL;
    if (ret != 0)
        goto out;
    if (gone_written)
        c->gone_dirty = false;
    publish_units(c, ndirty, states, lens);
    after_commit(c, ndirty, start);
    note_success(c);

out:
    if (txn)
        keng_checkpoint_abort(txn);
    for (size_t i = 0; states && i < ndirty; i++)
        free(states[i]);
    free(states);
    free(lens);
    if (ret < 0)
        note_failure(c, err);
    return ret;
}
