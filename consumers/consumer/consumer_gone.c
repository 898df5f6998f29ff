/* Events the topics no longer hold: when keng-aggregate reads a partition from its first
 * retained event (no state said where to start, or a damaged unit is rebuilt) and retention
 * has already deleted the partition's first events, the counts made from it lack them. Which
 * boards and windows that touches is kept here, checkpointed under KENG_CHECKPOINT_GONE so
 * that a restart still says so, published with the partition's mark in the counts topic so
 * that its next owner says so too, and answered to /readyz and the counts API: never silently.
 *
 * A partition rebuilt whole (nothing said which units had no events) makes every board of it
 * incomplete, boards without a unit included, since their key may hash there; a rebuilt
 * damaged unit, only its own board. Events reported before the partition's first retained
 * message may be missing: a window that starts at or after that time is complete. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "timeutil.h"

/* At an assignment, before the watermarks: what reading p from its start will rebuild. */
void keng_consumer__gone_note_start(keng_consumer_t *c, part_t *p, bool whole)
{
    p->from_start = true;
    p->rebuild_whole = whole;
    p->first_ts_ms = 0;
    (void)c;
}

/* Raises the gap of the unit (board, topic, partition) to before_ms (a gap only grows: the
 * events are gone for good). Returns true when it changed, false when it did not or memory
 * ran out (logged). */
static bool gone_unit_raise(keng_consumer_t *c, uint32_t board, int topic, int32_t partition,
                            int64_t before_ms)
{
    for (size_t i = 0; i < c->ngone_units; i++) {
        gone_unit_t *g = &c->gone_units[i];
        if (g->board != board || g->topic != topic || g->partition != partition)
            continue;
        if (g->before_ms >= before_ms)
            return false;
        g->before_ms = before_ms;
        return true;
    }
    if (c->ngone_units == c->gone_units_cap) {
        size_t cap = c->gone_units_cap ? c->gone_units_cap * 2 : 16;
        gone_unit_t *grown = realloc(c->gone_units, cap * sizeof(*grown));
        if (!grown) {
            keng_log_error("out of memory keeping which counts are incomplete", "board=%s topic=%s",
                           keng_registry_board(c->reg, board)->id, c->topics[topic]);
            return false;
        }
        c->gone_units = grown;
        c->gone_units_cap = cap;
    }
    c->gone_units[c->ngone_units++] = (gone_unit_t){
        .board = board, .topic = topic, .partition = partition, .before_ms = before_ms};
    return true;
}

/* Whether this instance holds the unit of a gap: a lane of its board and kind for its
 * partition (for PARTITION_ANY, any lane). */
static bool gone_unit_held(const keng_consumer_t *c, const gone_unit_t *g)
{
    for (size_t lane = 0; lane < c->lanes; lane++) {
        int32_t part =
            c->unit_part[(lane * c->nboards + g->board) * KENG_KIND_COUNT + (uint32_t)g->topic];
        if (part != PARTITION_NONE && (g->partition == PARTITION_ANY || part == g->partition))
            return true;
    }
    return false;
}

/* The gap of p: events reported before before_ms are gone from it. The units it rebuilds
 * are marked. */
static void gone_mark(keng_consumer_t *c, part_t *p, int64_t before_ms)
{
    char when[32];

    p->gone_before_ms = before_ms;
    for (uint32_t u = (uint32_t)p->topic; u < c->nunits; u += KENG_KIND_COUNT)
        if (c->unit_rebuilt[u] == p->partition || c->unit_rebuilt[u] == PARTITION_ANY)
            gone_unit_raise(c, keng_consumer__unit_board(c, u), p->topic, p->partition,
                            p->gone_before_ms);
    c->gone_dirty = true;
    /* The next checkpoint publishes the partition's mark, which carries the gap to a next
     * owner, even when no event follows. */
    p->offset_dirty = true;
    keng_log_warn("counts incomplete: events reported before this time are gone from the "
                  "partition (retention); /readyz and the counts API name the boards and "
                  "windows",
                  "topic=%s partition=%" PRId32 " first_retained_offset=%" PRId64
                  " events_before=%s whole=%d",
                  c->topics[p->topic], p->partition, p->low,
                  keng_time_format_utc(p->gone_before_ms, when, sizeof(when)), p->rebuild_whole);
}

/* Once p's low watermark is known: events before it are gone if it is above 0, reported
 * before the first retained message (which may have been read already, the fetch racing
 * the watermark query), or before now when nothing is retained. */
void keng_consumer__gone_note_low(keng_consumer_t *c, part_t *p)
{
    if (!p->from_start || p->low <= 0 || p->gone_before_ms != 0)
        return;
    if (p->first_ts_ms > 0)
        gone_mark(c, p, p->first_ts_ms);
    else if (p->target >= 0 && p->target <= p->low)
        gone_mark(c, p, keng_consumer__now_ms(c));
    else
        p->gone_before_ms = -1; /* its first message will say since when */
}

/* A message of a partition read from its start: the first one's time is from when the
 * partition is whole, once its low watermark says events before it are gone. */
void keng_consumer__gone_note_message(keng_consumer_t *c, part_t *p, int64_t timestamp_ms)
{
    if (!p->from_start || p->first_ts_ms > 0)
        return;
    p->first_ts_ms = timestamp_ms > 0 ? timestamp_ms : keng_consumer__now_ms(c);
    if (p->gone_before_ms == -1)
        gone_mark(c, p, p->first_ts_ms);
}

/* ---- the checkpoint ---- */

/* Appends len bytes of line to the blob *out (n used, *cap allocated). 0, or -1 (out freed). */
static int append(char **out, size_t *n, size_t *cap, const char *line, size_t len)
{
    if (*n + len + 1 > *cap) {
        char *grown = realloc(*out, *cap * 2 + len);
        if (!grown) {
            free(*out);
            *out = NULL;
            return -1;
        }
        *out = grown;
        *cap = *cap * 2 + len;
    }
    memcpy(*out + *n, line, len);
    *n += len;
    return 0;
}

/* One line a gap: "P <topic index> <partition> <ms>" for a partition rebuilt whole, "U
 * <board id> <topic index> <ms> <partition>" for a unit (releases before lanes wrote no
 * partition, and ignore it). Returns the blob (the caller frees it) or NULL. */
char *keng_consumer__gone_encode(const keng_consumer_t *c, size_t *len)
{
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    char line[96];
    int w;

    for (size_t i = 0; out && i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        if (p->gone_before_ms <= 0 || !p->rebuild_whole)
            continue;
        w = snprintf(line, sizeof(line), "P %d %" PRId32 " %" PRId64 "\n", p->topic, p->partition,
                     p->gone_before_ms);
        if (w > 0 && append(&out, &n, &cap, line, (size_t)w) != 0)
            return NULL;
    }
    for (size_t i = 0; out && i < c->ngone_units; i++) {
        const gone_unit_t *g = &c->gone_units[i];
        w = g->partition == PARTITION_ANY
                ? snprintf(line, sizeof(line), "U %s %d %" PRId64 "\n",
                           keng_registry_board(c->reg, g->board)->id, g->topic, g->before_ms)
                : snprintf(line, sizeof(line), "U %s %d %" PRId64 " %" PRId32 "\n",
                           keng_registry_board(c->reg, g->board)->id, g->topic, g->before_ms,
                           g->partition);
        if (w > 0 && append(&out, &n, &cap, line, (size_t)w) != 0)
            return NULL;
    }
    *len = n;
    return out;
}

/* A mark's gaps, one a line: "P <ms>" when the partition was rebuilt whole, "U <board id>
 * <ms>" for each of its units rebuilt alone. The mark's own header names the topic and the
 * partition. */
char *keng_consumer__gone_encode_partition(const keng_consumer_t *c, const part_t *p, size_t *len)
{
    size_t cap = 64, n = 0;
    char *out = NULL;
    char line[96];
    int w;

    *len = 0;
    if (p->rebuild_whole && p->gone_before_ms > 0) {
        if (!(out = malloc(cap)))
            goto oom;
        w = snprintf(line, sizeof(line), "P %" PRId64 "\n", p->gone_before_ms);
        if (w > 0 && append(&out, &n, &cap, line, (size_t)w) != 0)
            goto oom;
    }
    for (size_t i = 0; i < c->ngone_units; i++) {
        const gone_unit_t *g = &c->gone_units[i];
        if (g->topic != p->topic || (g->partition != p->partition &&
                                     !(g->partition == PARTITION_ANY && gone_unit_held(c, g))))
            continue;
        if (!out && !(out = malloc(cap)))
            goto oom;
        w = snprintf(line, sizeof(line), "U %s %" PRId64 "\n",
                     keng_registry_board(c->reg, g->board)->id, g->before_ms);
        if (w > 0 && append(&out, &n, &cap, line, (size_t)w) != 0)
            goto oom;
    }
    *len = n;
    return out;
oom:
    free(out);
    keng_log_error("out of memory writing a partition's gaps; its mark says none",
                   "topic=%s partition=%" PRId32, c->topics[p->topic], p->partition);
    return NULL;
}

void keng_consumer__gone_adopt(keng_consumer_t *c, part_t *p)
{
    const unsigned char *gaps;
    size_t len, taken = 0;

    if (!c->cluster ||
        !keng_cluster_mark_gaps(c->cluster, (keng_kind_t)p->topic, p->partition, &gaps, &len))
        return;
    for (const char *s = (const char *)gaps, *end = s + len; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        char line[96], board[48];
        int64_t ms;
        size_t n = (size_t)((nl ? nl : end) - s);

        if (n < sizeof(line)) {
            memcpy(line, s, n);
            line[n] = '\0';
            if (sscanf(line, "P %" SCNd64, &ms) == 1 && ms > 0) {
                /* The states it handed over were rebuilt after the deletion: they still
                 * lack those events, whoever counts on from them. */
                if (!p->rebuild_whole || p->gone_before_ms < ms) {
                    p->gone_before_ms = p->gone_before_ms > ms ? p->gone_before_ms : ms;
                    p->rebuild_whole = true;
                    taken++;
                }
            } else if (sscanf(line, "U %47s %" SCNd64, board, &ms) == 2 && ms > 0) {
                int32_t b = keng_registry_find_board(c->reg, board, strlen(board));
                if (b >= 0 && gone_unit_raise(c, (uint32_t)b, p->topic, p->partition, ms))
                    taken++;
            }
        }
        s = nl ? nl + 1 : end;
    }
    if (taken == 0)
        return;
    /* The assignment publishes the partition whole, and with it a mark that carries these. */
    c->gone_dirty = true;
    keng_log_warn("counts incomplete: the partition's previous owner rebuilt it after retention "
                  "had deleted events; /readyz and the counts API name the boards and windows",
                  "topic=%s partition=%" PRId32 " gaps=%zu", c->topics[p->topic], p->partition,
                  taken);
}

/* keng_checkpoint_get_meta's callback: the gaps of the partitions being assigned (and of their
 * units) come back. */
static int gone_decode(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    keng_consumer_t *c = arg;
    const char *s = data, *end = s + len;

    (void)id;
    (void)id_len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        char line[96], board[48];
        int topic, fields;
        int32_t partition;
        int64_t ms;
        size_t n = (size_t)((nl ? nl : end) - s);

        if (n < sizeof(line)) {
            memcpy(line, s, n);
            line[n] = '\0';
            if (sscanf(line, "P %d %" SCNd32 " %" SCNd64, &topic, &partition, &ms) == 3 &&
                topic >= 0 && topic < TOPIC_COUNT && ms > 0) {
                part_t *p = keng_consumer__part_find(c, topic, partition, true);
                if (p) {
                    p->gone_before_ms = ms;
                    p->rebuild_whole = true;
                }
            } else if ((fields = sscanf(line, "U %47s %d %" SCNd64 " %" SCNd32, board, &topic, &ms,
                                        &partition)) >= 3 &&
                       topic >= 0 && topic < TOPIC_COUNT && ms > 0) {
                int32_t b = keng_registry_find_board(c->reg, board, strlen(board));
                if (b >= 0)
                    gone_unit_raise(c, (uint32_t)b, topic,
                                    fields == 4 && partition >= 0 ? partition : PARTITION_ANY, ms);
            }
        }
        s = nl ? nl + 1 : end;
    }
    return 0;
}

void keng_consumer__gone_load(keng_consumer_t *c)
{
    char err[256];

    if (c->gone_loaded)
        return;
    c->gone_loaded = true;
    if (keng_checkpoint_get_meta(c->cp, KENG_CHECKPOINT_GONE, gone_decode, c, err, sizeof(err)) < 0)
        keng_log_error("cannot read which counts are incomplete from the checkpoint",
                       "error=\"%s\"", err);
}

/* ---- what is incomplete ---- */

/* When a board's kind t may lack events: 0 when it does not. */
static int64_t board_gone_before(const keng_consumer_t *c, uint32_t b, int t)
{
    /* Only this instance's units: it rebuilt them, or took them over with their gaps from the
     * mark of the owner that did. */
    int64_t before = 0;
    bool any_lane = false;

    for (size_t i = 0; i < c->ngone_units; i++) {
        const gone_unit_t *g = &c->gone_units[i];
        if (g->board == b && g->topic == t && g->before_ms > before && gone_unit_held(c, g))
            before = g->before_ms;
    }
    for (size_t lane = 0; lane < c->lanes && !any_lane; lane++)
        any_lane =
            c->unit_part[(lane * c->nboards + b) * KENG_KIND_COUNT + (uint32_t)t] != PARTITION_NONE;
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        if (!p->assigned || p->topic != t || p->gone_before_ms <= 0 || !p->rebuild_whole ||
            p->gone_before_ms <= before)
            continue;
        /* A board without a unit may be one of the partition's. */
        if (!any_lane ||
            keng_consumer__unit_of((keng_consumer_t *)c, b, t, p->partition, false) != UINT32_MAX)
            before = p->gone_before_ms;
    }
    return before;
}

/* Whether this instance has any gap to answer for: one pass over the partitions and units,
 * so that the counts answers (the stream's among them) skip the per-board walk below when,
 * as almost always, there is none. */
static bool any_gap(const keng_consumer_t *c)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].assigned && c->parts[i].gone_before_ms > 0 && c->parts[i].rebuild_whole)
            return true;
    for (size_t i = 0; i < c->ngone_units; i++)
        if (gone_unit_held(c, &c->gone_units[i]))
            return true;
    return false;
}

bool keng_consumer_incomplete(const keng_consumer_t *c, keng_level_t level, uint32_t index,
                              int64_t *before_ms, size_t *boards)
{
    *before_ms = 0;
    *boards = 0;
    if (!any_gap(c))
        return false;
    for (uint32_t b = 0; b < c->nboards; b++) {
        const keng_board_t *board = keng_registry_board(c->reg, b);
        if ((level == KENG_LEVEL_BOARD && b != index) ||
            (level == KENG_LEVEL_COMMUNE && board->commune != index) ||
            (level == KENG_LEVEL_DISTRICT && board->district != index))
            continue;
        int64_t worst = 0;
        for (int t = 0; t < TOPIC_COUNT; t++) {
            int64_t before = board_gone_before(c, b, t);
            if (before > worst)
                worst = before;
        }
        if (worst > 0) {
            (*boards)++;
            if (worst > *before_ms)
                *before_ms = worst;
        }
    }
    return *boards > 0;
}

void keng_consumer_each_gone(const keng_consumer_t *c,
                             void (*fn)(const char *topic, int32_t partition, int64_t before_ms,
                                        const char *board, void *arg),
                             void *arg)
{
    for (size_t i = 0; i < c->nparts; i++) {
        const part_t *p = &c->parts[i];
        if (p->assigned && p->gone_before_ms > 0 && p->rebuild_whole)
            fn(c->topics[p->topic], p->partition, p->gone_before_ms, NULL, arg);
    }
    for (size_t i = 0; i < c->ngone_units; i++) {
        const gone_unit_t *g = &c->gone_units[i];
        for (size_t lane = 0; lane < c->lanes; lane++) {
            int32_t part =
                c->unit_part[(lane * c->nboards + g->board) * KENG_KIND_COUNT + (uint32_t)g->topic];
            if (part != PARTITION_NONE && (g->partition == PARTITION_ANY || part == g->partition))
                fn(c->topics[g->topic], part, g->before_ms,
                   keng_registry_board(c->reg, g->board)->id, arg);
        }
    }
}
