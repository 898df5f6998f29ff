/* Lanes: a board's events of one kind from one partition are a unit of their own, so that
 * each partition's share of a board moves with that partition alone when a topic grows and
 * the board's key hashes elsewhere (docs/SCALE_OUT.md). Which lane holds which partition is
 * this instance's own bookkeeping; nothing here counts an event. */
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "log.h"

uint32_t keng_consumer__unit_of(keng_consumer_t *c, uint32_t board, int kind, int32_t partition,
                                bool create)
{
    uint32_t free_u = UINT32_MAX;

    for (size_t lane = 0; lane < c->lanes; lane++) {
        uint32_t u = (uint32_t)((lane * c->nboards + board) * KENG_KIND_COUNT) + (uint32_t)kind;
        if (c->unit_part[u] == partition)
            return u;
        if (free_u == UINT32_MAX && c->unit_part[u] == PARTITION_NONE &&
            c->unit_rebuild[u] == PARTITION_NONE &&
            !keng_counts_unit_has_state(c->counts, u / KENG_KIND_COUNT, (keng_kind_t)kind))
            free_u = u;
    }
    if (!create || free_u == UINT32_MAX)
        return UINT32_MAX;
    c->unit_part[free_u] = partition;
    c->unit_from[free_u] = -1;
    c->unit_from_part[free_u] = partition;
    return free_u;
}

/* Another partition than partition holds some of the board's events of kind t, here or, as
 * far as the counts topic says, in another instance. */
static int32_t other_partition(const keng_consumer_t *c, uint32_t board, int t, int32_t partition)
{
    const unsigned char *state;
    size_t len;
    int32_t other;
    int64_t offset;

    for (size_t lane = 0; lane < c->lanes; lane++) {
        other = c->unit_part[(lane * c->nboards + board) * KENG_KIND_COUNT + (uint32_t)t];
        if (other != PARTITION_NONE && other != partition)
            return other;
    }
    for (uint32_t lane = 0; c->cluster && lane < KENG_UNIT_LANES; lane++)
        if (keng_cluster_unit(c->cluster, board, (keng_kind_t)t, lane, &state, &len, &other,
                              &offset) &&
            other != partition)
            return other;
    return PARTITION_NONE;
}

/* While a topic keeps its partition count, a board's events of one kind all come from one
 * partition. When partitions are added, the board's key hashes to another one: its events of
 * the new partition are counted in a lane of their own, said in the log and the stats. */
uint32_t keng_consumer__lane_for(keng_consumer_t *c, uint32_t board, int t, int32_t partition)
{
    uint32_t u = keng_consumer__unit_of(c, board, t, partition, false);
    int32_t before;

    if (u != UINT32_MAX)
        return u;
    before = other_partition(c, board, t, partition);
    u = keng_consumer__unit_of(c, board, t, partition, true);
    if (before == PARTITION_NONE && u != UINT32_MAX)
        return u;
    /* Producers switch over one by one: bound the log, not the count. */
    if (++c->stats.board_moves <= 100 || c->stats.board_moves % 1000 == 0) {
        if (u != UINT32_MAX)
            keng_log_warn("a board's events come from another partition too (was the topic's "
                          "partition count changed?); they are counted apart and move with "
                          "their partition",
                          "board=%s topic=%s partition=%" PRId32 " before=%" PRId32
                          " moves=%" PRIu64,
                          keng_registry_board(c->reg, board)->id, c->topics[t], partition, before,
                          c->stats.board_moves);
        else
            keng_log_error("a board's events come from more partitions than keng keeps apart; "
                           "they are counted with another partition's, which a handover of "
                           "either partition does not keep exact",
                           "board=%s topic=%s partition=%" PRId32 " lanes=%zu",
                           keng_registry_board(c->reg, board)->id, c->topics[t], partition,
                           c->lanes);
    }
    return u;
}
