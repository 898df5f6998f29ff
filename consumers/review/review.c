/* The annual review's tallies and its three outputs; it never reads Kafka (keng-replay feeds
 * it). Rollups are summed from the boards at write time, so that a commune, district or
 * province always equals the sum of its boards. */
#include "review.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "counts.h"
#include "review_html.h"
#include "timeutil.h"

typedef struct tally {
    uint64_t incidents;
    uint64_t by_category[KENG_CAT_COUNT];
    uint64_t by_resolution[KENG_RES_COUNT];
    uint64_t mediations;
    uint64_t by_outcome[KENG_OUTCOME_COUNT];
    uint64_t by_dispute[KENG_DISPUTE_COUNT];
} tally_t;

#define MONTHS 12

/* What a predecessor line stands for: a unit of the previous version, the boards this
 * version added, or former boards (boards this version lacks that the previous one lacked
 * too). */
enum { PRED_COMMUNE, PRED_DISTRICT, PRED_NEW_BOARDS, PRED_FORMER_BOARDS };

/* One line under a commune: a unit of the previous version that became (part of) it. */
typedef struct predecessor {
    uint32_t commune; /* the commune of the review's registry it is listed under */
    int kind;         /* PRED_* */
    uint32_t unit;    /* its index among previous's communes or districts */
    uint32_t boards;  /* its boards that are in commune now */
    bool split;       /* its boards went to more than one commune */
} predecessor_t;

struct keng_review {
    const keng_registry_t *reg;
    int64_t from_ms, to_ms;
    char label[64];
    tally_t *boards;        /* one per registry board */
    tally_t months[MONTHS]; /* the province, by local calendar month of the period's start year */
    int first_month_index;  /* months since year 0 of the period's first month */
    uint64_t outcomes[KENG_REVIEW_OUTCOME_COUNT];
    /* event_id hashes already counted: open addressing, 0 marks an empty slot */
    uint64_t *seen;
    size_t seen_mask, seen_count;
    /* keng_review_set_registry; NULL and 0 for a registry from a file */
    char *registry_source, *registry_units;
    keng_review_registry_change_t *changes;
    size_t nchanges;
    /* keng_review_set_predecessors; NULL and 0 without */
    const keng_registry_t *previous;
    int64_t switch_ms;
    tally_t *before;   /* one per registry board: its events before switch_ms */
    uint32_t *pred_of; /* one per registry board: its line in preds */
    predecessor_t *preds;
    tally_t *pred_former; /* one per line of preds: former boards' events before switch_ms */
    size_t npreds, preds_cap;
    /* keng_review_set_versions; NULL and 0 without. The events of boards the registry lacks
     * (former boards) are tallied by where they were placed, never per board. */
    keng_review_version_t *versions;
    size_t nversions, drawn;
    tally_t *former_communes;  /* one per commune */
    tally_t *former_districts; /* one per district, and a spare */
    tally_t *former_since;     /* one per commune: with predecessors, since switch_ms */
    tally_t former_province;   /* all of them */
    tally_t former_nowhere;    /* those under no unit of the registry */
    uint64_t former_events;
};

static uint64_t hash_event_id(const char *id)
{
    /* FNV-1a then a final mix; 0 is reserved for empty slots. With n ids the chance that two
     * distinct ids collide is about n^2 / 2^65: 1e-7 for a province-year of 2 million. */
    uint64_t h = 1469598103934665603ULL;

    for (; *id; id++) {
        h ^= (unsigned char)*id;
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Returns true when h was new (and remembers it). */
static bool seen_insert(keng_review_t *r, uint64_t h)
{
    if ((r->seen_count + 1) * 2 > r->seen_mask + 1) {
        size_t size = (r->seen_mask + 1) * 2;
        uint64_t *grown = calloc(size, sizeof(*grown));
        if (!grown)
            abort(); /* a replay cannot go on without its memory of ids */
        for (size_t i = 0; i <= r->seen_mask; i++) {
            if (r->seen[i] == 0)
                continue;
            size_t pos = r->seen[i] & (size - 1);
            while (grown[pos])
                pos = (pos + 1) & (size - 1);
            grown[pos] = r->seen[i];
        }
        free(r->seen);
        r->seen = grown;
        r->seen_mask = size - 1;
    }
    size_t pos = h & r->seen_mask;
    while (r->seen[pos]) {
        if (r->seen[pos] == h)
            return false;
        pos = (pos + 1) & r->seen_mask;
    }
    r->seen[pos] = h;
    r->seen_count++;
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int month_index_of(int64_t ms)
{
    time_t secs = (time_t)((ms + KENG_LOCAL_OFFSET_MS) / 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    return (tm.tm_year + 1900) * 12 + tm.tm_mon;
}

void keng_review_year_bounds(int year, int64_t *from_ms, int64_t *to_ms)
{
    *from_ms = days_from_civil(year, 1, 1) * 86400000LL - KENG_LOCAL_OFFSET_MS;
    *to_ms = days_from_civil(year + 1, 1, 1) * 86400000LL - KENG_LOCAL_OFFSET_MS;
}

int keng_review_parse_date(const char *s, int64_t *out_ms)
{
    int y, m, d, n = 0;

    if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || s[n] != '\0' || m < 1 || m > 12 ||
        d < 1 || d > 31 || y < 1970)
        return -1;
    *out_ms = days_from_civil(y, (unsigned)m, (unsigned)d) * 86400000LL - KENG_LOCAL_OFFSET_MS;
    return 0;
}

keng_review_t *keng_review_new(const keng_registry_t *reg, int64_t from_ms, int64_t to_ms,
                               const char *label)
{
    keng_review_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->reg = reg;
    r->from_ms = from_ms;
    r->to_ms = to_ms;
    snprintf(r->label, sizeof(r->label), "%s", label);
    r->boards = calloc(keng_registry_board_count(reg), sizeof(tally_t));
    r->seen_mask = 1023;
    r->seen = calloc(r->seen_mask + 1, sizeof(uint64_t));
    r->first_month_index = month_index_of(from_ms);
    if (!r->boards || !r->seen) {
        keng_review_destroy(r);
        return NULL;
    }
    return r;
}

void keng_review_destroy(keng_review_t *r)
{
    if (!r)
        return;
    free(r->boards);
    free(r->seen);
    free(r->registry_source);
    free(r->registry_units);
    free(r->changes);
    free(r->before);
    free(r->pred_of);
    free(r->preds);
    free(r->pred_former);
    free(r->versions);
    free(r->former_communes);
    free(r->former_districts);
    free(r->former_since);
    free(r);
}

int keng_review_set_registry(keng_review_t *r, const char *source, const char *units,
                             const keng_review_registry_change_t *changes, size_t n)
{
    free(r->registry_source);
    free(r->registry_units);
    free(r->changes);
    r->registry_source = source ? strdup(source) : NULL;
    r->registry_units = units ? strdup(units) : NULL;
    r->changes = n ? malloc(n * sizeof(*changes)) : NULL;
    r->nchanges = r->changes ? n : 0;
    if (r->changes)
        memcpy(r->changes, changes, n * sizeof(*changes));
    return (source && !r->registry_source) || (units && !r->registry_units) || (n && !r->changes)
               ? -1
               : 0;
}

/* The line of (commune, kind, unit), added when missing. Returns its index, or -1 (no
 * memory). A commune has a handful of lines, so a search from the end finds it fast enough. */
static int64_t pred_line(keng_review_t *r, uint32_t commune, int kind, uint32_t unit)
{
    for (size_t i = r->npreds; i-- > 0;)
        if (r->preds[i].commune == commune && r->preds[i].kind == kind && r->preds[i].unit == unit)
            return (int64_t)i;
    if (r->npreds == r->preds_cap) {
        size_t grown_cap = r->preds_cap ? r->preds_cap * 2 : 64;
        predecessor_t *grown = realloc(r->preds, grown_cap * sizeof(*grown));
        if (!grown)
            return -1;
        r->preds = grown;
        tally_t *former = realloc(r->pred_former, grown_cap * sizeof(*former));
        if (!former)
            return -1;
        memset(former + r->preds_cap, 0, (grown_cap - r->preds_cap) * sizeof(*former));
        r->pred_former = former;
        r->preds_cap = grown_cap;
    }
    r->preds[r->npreds] = (predecessor_t){commune, kind, unit, 0, false};
    return (int64_t)r->npreds++;
}

/* The unit of previous that board ob of previous counts under as a predecessor: its commune,
 * unless the lineage sends its district whole (a line for the district, none for the commune
 * or the board). */
static void predecessor_unit(const keng_registry_t *previous, const keng_lineage_t *lineage,
                             uint32_t ob, int *kind, uint32_t *unit)
{
    const keng_board_t *old = keng_registry_board(previous, ob);
    const keng_commune_t *oc = keng_registry_commune(previous, old->commune);
    const keng_district_t *od = keng_registry_district(previous, old->district);
    bool whole_district = od && !keng_lineage_became(lineage, old->id) &&
                          !keng_lineage_became(lineage, oc->id) &&
                          keng_lineage_became(lineage, od->id);

    *kind = whole_district ? PRED_DISTRICT : PRED_COMMUNE;
    *unit = whole_district ? old->district : old->commune;
}

int keng_review_set_predecessors(keng_review_t *r, const keng_registry_t *previous,
                                 const keng_lineage_t *lineage, int64_t switch_ms)
{
    size_t nboards = keng_registry_board_count(r->reg);
    size_t nunits[2] = {keng_registry_commune_count(previous),
                        keng_registry_district_count(previous)};
    /* per unit of previous (communes, then districts): the first commune its boards reached */
    uint32_t *reached[2] = {NULL, NULL};
    int rc = -1;

    r->previous = previous;
    r->switch_ms = switch_ms;
    r->before = calloc(nboards + 1, sizeof(*r->before));
    r->pred_of = malloc((nboards + 1) * sizeof(*r->pred_of));
    for (int k = 0; k < 2; k++)
        reached[k] = malloc((nunits[k] + 1) * sizeof(*reached[k]));
    if (!r->before || !r->pred_of || !reached[0] || !reached[1])
        goto out;
    for (size_t b = 0; b < nboards; b++)
        r->pred_of[b] = UINT32_MAX;
    for (int k = 0; k < 2; k++)
        for (size_t u = 0; u < nunits[k]; u++)
            reached[k][u] = UINT32_MAX;
    /* In previous's order, so that a commune lists its former units as they were listed. */
    for (uint32_t ob = 0; ob < keng_registry_board_count(previous); ob++) {
        const keng_board_t *old = keng_registry_board(previous, ob);
        int32_t nb = keng_registry_find_board(r->reg, old->id, strlen(old->id));
        if (nb < 0)
            continue; /* removed: a former board, placed event by event (place_former) */
        int kind;
        uint32_t unit;
        predecessor_unit(previous, lineage, ob, &kind, &unit);
        uint32_t commune = keng_registry_board(r->reg, (uint32_t)nb)->commune;
        int64_t line = pred_line(r, commune, kind, unit);
        if (line < 0)
            goto out;
        r->pred_of[nb] = (uint32_t)line;
        r->preds[line].boards++;
        uint32_t *first = &reached[kind][unit];
        if (*first == UINT32_MAX)
            *first = commune;
        else if (*first != commune)
            r->preds[line].split = true;
    }
    /* A unit whose boards went to two communes is split under each: the first line it got
     * learns it from the later ones. */
    for (size_t i = 0; i < r->npreds; i++) {
        predecessor_t *p = &r->preds[i];
        for (size_t j = i + 1; j < r->npreds && !p->split; j++)
            if (r->preds[j].kind == p->kind && r->preds[j].unit == p->unit && r->preds[j].split)
                p->split = true;
    }
    for (uint32_t b = 0; b < nboards; b++) {
        if (r->pred_of[b] != UINT32_MAX)
            continue;
        uint32_t commune = keng_registry_board(r->reg, b)->commune;
        int64_t line = pred_line(r, commune, PRED_NEW_BOARDS, 0);
        if (line < 0)
            goto out;
        r->pred_of[b] = (uint32_t)line;
        r->preds[line].boards++;
    }
    rc = 0;
out:
    free(reached[0]);
    free(reached[1]);
    if (rc != 0) {
        free(r->before);
        free(r->pred_of);
        free(r->preds);
        free(r->pred_former);
        r->before = NULL;
        r->pred_of = NULL;
        r->preds = NULL;
        r->pred_former = NULL;
        r->npreds = r->preds_cap = 0;
        r->previous = NULL;
    }
    return rc;
}

static void tally_event(tally_t *t, const keng_event_t *ev)
{
    if (ev->kind == KENG_KIND_INCIDENT) {
        t->incidents++;
        t->by_category[ev->category]++;
        t->by_resolution[ev->resolution]++;
    } else {
        t->mediations++;
        t->by_outcome[ev->outcome]++;
        t->by_dispute[ev->dispute_type]++;
    }
}

static void tally_add(tally_t *into, const tally_t *t)
{
    into->incidents += t->incidents;
    into->mediations += t->mediations;
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        into->by_category[i] += t->by_category[i];
    for (int i = 0; i < KENG_RES_COUNT; i++)
        into->by_resolution[i] += t->by_resolution[i];
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        into->by_outcome[i] += t->by_outcome[i];
    for (int i = 0; i < KENG_DISPUTE_COUNT; i++)
        into->by_dispute[i] += t->by_dispute[i];
}

/* Adds to into what t holds beyond before (a part of t). */
static void tally_add_beyond(tally_t *into, const tally_t *t, const tally_t *before)
{
    into->incidents += t->incidents - before->incidents;
    into->mediations += t->mediations - before->mediations;
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        into->by_category[i] += t->by_category[i] - before->by_category[i];
    for (int i = 0; i < KENG_RES_COUNT; i++)
        into->by_resolution[i] += t->by_resolution[i] - before->by_resolution[i];
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        into->by_outcome[i] += t->by_outcome[i] - before->by_outcome[i];
    for (int i = 0; i < KENG_DISPUTE_COUNT; i++)
        into->by_dispute[i] += t->by_dispute[i] - before->by_dispute[i];
}

int keng_review_set_versions(keng_review_t *r, const keng_review_version_t *v, size_t n,
                             size_t drawn)
{
    size_t ncommunes = keng_registry_commune_count(r->reg);

    r->versions = malloc((n + 1) * sizeof(*v));
    r->former_communes = calloc(ncommunes + 1, sizeof(tally_t));
    r->former_districts = calloc(keng_registry_district_count(r->reg) + 1, sizeof(tally_t));
    r->former_since = calloc(ncommunes + 1, sizeof(tally_t));
    if (!r->versions || !r->former_communes || !r->former_districts || !r->former_since) {
        free(r->versions);
        r->versions = NULL;
        return -1;
    }
    memcpy(r->versions, v, n * sizeof(*v));
    r->nversions = n;
    r->drawn = drawn;
    return 0;
}

uint64_t keng_review_former_count(const keng_review_t *r)
{
    return r->former_events;
}

/* A unit of a registry version: a commune or a district, by index. */
typedef struct unit {
    bool district;
    uint32_t index;
} unit_t;

/* The unit of `to` that id (a unit of the version before it) became, by to's lineage: the unit
 * its line names, or the unit of to with the same id and level when it has no line. Returns
 * 1 with *out set, 0 when the lineage says it was removed (an empty to_id), -1 when nothing
 * says (no line, and to has no such unit). */
static int became(const keng_review_version_t *to, const char *id, bool district, unit_t *out)
{
    const char *next = keng_lineage_became(to->lineage, id);
    int32_t i;

    if (next && !*next)
        return 0;
    if (next) {
        if ((i = keng_registry_find_commune(to->reg, next, strlen(next))) >= 0)
            *out = (unit_t){false, (uint32_t)i};
        else if ((i = keng_registry_find_district(to->reg, next, strlen(next))) >= 0)
            *out = (unit_t){true, (uint32_t)i};
        else
            return -1;
        return 1;
    }
    i = district ? keng_registry_find_district(to->reg, id, strlen(id))
                 : keng_registry_find_commune(to->reg, id, strlen(id));
    if (i < 0)
        return -1;
    *out = (unit_t){district, (uint32_t)i};
    return 1;
}

/* Where the event of a former board (one the drawn version lacks) goes. Its board is taken
 * from the version in force at the event's occurred_at, or when that one lacks it from the
 * closest version before that has it, or else the closest after. From a version before the
 * drawn one, its unit is carried forward version by version through the lineages: the
 * board's own line, else its commune's, else its district's; a unit with no line stays when
 * the next version has it. *unit gets the unit of the drawn version, and the function
 * returns 1; 0 when no unit of the drawn version follows (the province alone); -1 when no
 * version has the board. *source and *board get the version the board was taken from and its
 * index there. */
static int place_former(const keng_review_t *r, const keng_event_t *ev, unit_t *unit,
                        size_t *source, int32_t *board)
{
    size_t len = strlen(ev->board_id), at = 0, s = SIZE_MAX;

    for (size_t i = 0; i < r->nversions; i++)
        if (r->versions[i].effective_ms <= ev->occurred_at)
            at = i;
    /* the version in force, then outward: before it first, then after it */
    for (size_t i = at + 1; i-- > 0 && s == SIZE_MAX;)
        if ((*board = keng_registry_find_board(r->versions[i].reg, ev->board_id, len)) >= 0)
            s = i;
    for (size_t i = at + 1; i < r->nversions && s == SIZE_MAX; i++)
        if ((*board = keng_registry_find_board(r->versions[i].reg, ev->board_id, len)) >= 0)
            s = i;
    if (s == SIZE_MAX)
        return -1;
    *source = s;
    if (s > r->drawn)
        return 0; /* a board added after the units drawn: their lineage cannot say where */
    const keng_registry_t *reg = r->versions[s].reg;
    const keng_board_t *b = keng_registry_board(reg, (uint32_t)*board);
    unit_t u = {false, b->commune};
    for (size_t i = s + 1; i <= r->drawn; i++) {
        const keng_review_version_t *to = &r->versions[i];
        const char *moved = i == s + 1 ? keng_lineage_became(to->lineage, b->id) : NULL;
        int32_t c;
        unit_t next;
        int rc = -1;
        if (moved && *moved &&
            (c = keng_registry_find_commune(to->reg, moved, strlen(moved))) >= 0) {
            next = (unit_t){false, (uint32_t)c};
            rc = 1;
        }
        if (rc < 0 && !u.district) {
            const keng_commune_t *oc = keng_registry_commune(reg, u.index);
            rc = became(to, oc->id, false, &next);
            const keng_district_t *od = keng_registry_district(reg, oc->district);
            if (rc < 0 && od)
                rc = became(to, od->id, true, &next);
        } else if (rc < 0) {
            rc = became(to, keng_registry_district(reg, u.index)->id, true, &next);
        }
        if (rc <= 0)
            return 0;
        u = next;
        reg = to->reg;
    }
    *unit = u;
    return 1;
}

/* Counts the event of a former board (see place_former). Returns its outcome. */
static keng_review_outcome_t add_former(keng_review_t *r, const keng_event_t *ev)
{
    unit_t unit;
    size_t source;
    int32_t board;
    int placed = r->versions ? place_former(r, ev, &unit, &source, &board) : -1;

    if (placed < 0)
        return KENG_REVIEW_UNKNOWN_BOARD;
    if (!seen_insert(r, hash_event_id(ev->event_id)))
        return KENG_REVIEW_DUPLICATE;
    int month = month_index_of(ev->occurred_at) - r->first_month_index;
    if (month >= 0 && month < MONTHS)
        tally_event(&r->months[month], ev);
    tally_event(&r->former_province, ev);
    r->former_events++;
    if (!placed) {
        tally_event(&r->former_nowhere, ev);
        return KENG_REVIEW_COUNTED;
    }
    if (unit.district) {
        tally_event(&r->former_districts[unit.index], ev);
        return KENG_REVIEW_COUNTED;
    }
    const keng_commune_t *c = keng_registry_commune(r->reg, unit.index);
    tally_event(&r->former_communes[unit.index], ev);
    if (c->district != KENG_NO_UNIT)
        tally_event(&r->former_districts[c->district], ev);
    if (!r->preds)
        return KENG_REVIEW_COUNTED;
    if (ev->occurred_at >= r->switch_ms) {
        tally_event(&r->former_since[unit.index], ev);
        return KENG_REVIEW_COUNTED;
    }
    /* Before the switch: under the unit of the version before that the board was in, or on
     * the commune's line of former boards when that version lacked it too. */
    int kind = PRED_FORMER_BOARDS;
    uint32_t old = 0;
    int32_t ob = keng_registry_find_board(r->previous, ev->board_id, strlen(ev->board_id));
    if (ob >= 0)
        predecessor_unit(r->previous, r->versions[r->drawn].lineage, (uint32_t)ob, &kind, &old);
    int64_t line = pred_line(r, unit.index, kind, old);
    if (line < 0)
        abort(); /* as seen_insert: a replay cannot go on without its memory */
    tally_event(&r->pred_former[line], ev);
    return KENG_REVIEW_COUNTED;
}

keng_review_outcome_t keng_review_add(keng_review_t *r, const keng_event_t *ev)
{
    keng_review_outcome_t outcome;
    int32_t board;

    if (ev->occurred_at < r->from_ms || ev->occurred_at >= r->to_ms) {
        outcome = KENG_REVIEW_OUT_OF_PERIOD;
    } else if ((board = keng_registry_find_board(r->reg, ev->board_id, strlen(ev->board_id))) < 0) {
        outcome = add_former(r, ev);
    } else if (!seen_insert(r, hash_event_id(ev->event_id))) {
        outcome = KENG_REVIEW_DUPLICATE;
    } else {
        int month = month_index_of(ev->occurred_at) - r->first_month_index;
        tally_event(&r->boards[board], ev);
        if (r->before && ev->occurred_at < r->switch_ms)
            tally_event(&r->before[board], ev);
        if (month >= 0 && month < MONTHS)
            tally_event(&r->months[month], ev);
        outcome = KENG_REVIEW_COUNTED;
    }
    r->outcomes[outcome]++;
    return outcome;
}

void keng_review_add_undecodable(keng_review_t *r)
{
    r->outcomes[KENG_REVIEW_UNDECODABLE]++;
}

void keng_review_add_invalid_time(keng_review_t *r)
{
    r->outcomes[KENG_REVIEW_INVALID_TIME]++;
}

uint64_t keng_review_outcome_count(const keng_review_t *r, keng_review_outcome_t outcome)
{
    return r->outcomes[outcome];
}

/* ---- rollups ---- */

/* How many of a scope's registry boards there are, and how many had an event counted. */
typedef struct coverage {
    uint64_t total, reported;
} coverage_t;

typedef struct rollup {
    tally_t province;
    tally_t *communes;
    tally_t *districts;
    coverage_t province_boards;
    coverage_t *commune_boards;
    coverage_t *district_boards;
    /* with predecessors: each line's figures before the switch, each commune's since */
    tally_t *preds;
    tally_t *since;
} rollup_t;

static void coverage_add(coverage_t *c, const tally_t *board)
{
    c->total++;
    c->reported += board->incidents > 0 || board->mediations > 0;
}

static int rollup_build(const keng_review_t *r, rollup_t *out)
{
    memset(out, 0, sizeof(*out));
    out->communes = calloc(keng_registry_commune_count(r->reg), sizeof(tally_t));
    /* One spare district: a registry without districts has none, and calloc(0) may be NULL. */
    out->districts = calloc(keng_registry_district_count(r->reg) + 1, sizeof(tally_t));
    out->commune_boards = calloc(keng_registry_commune_count(r->reg), sizeof(coverage_t));
    out->district_boards = calloc(keng_registry_district_count(r->reg) + 1, sizeof(coverage_t));
    if (!out->communes || !out->districts || !out->commune_boards || !out->district_boards)
        return -1;
    for (uint32_t i = 0; i < keng_registry_board_count(r->reg); i++) {
        const keng_board_t *b = keng_registry_board(r->reg, i);
        tally_add(&out->communes[b->commune], &r->boards[i]);
        tally_add(&out->province, &r->boards[i]);
        coverage_add(&out->commune_boards[b->commune], &r->boards[i]);
        if (b->district != KENG_NO_UNIT) {
            tally_add(&out->districts[b->district], &r->boards[i]);
            coverage_add(&out->district_boards[b->district], &r->boards[i]);
        }
        coverage_add(&out->province_boards, &r->boards[i]);
    }
    if (r->versions) {
        /* Former boards' events count in the units they were placed under, not in coverage:
         * they are not boards of the registry. */
        for (uint32_t i = 0; i < keng_registry_commune_count(r->reg); i++)
            tally_add(&out->communes[i], &r->former_communes[i]);
        for (uint32_t i = 0; i < keng_registry_district_count(r->reg); i++)
            tally_add(&out->districts[i], &r->former_districts[i]);
        tally_add(&out->province, &r->former_province);
    }
    if (!r->preds)
        return 0;
    out->preds = calloc(r->npreds + 1, sizeof(tally_t));
    out->since = calloc(keng_registry_commune_count(r->reg), sizeof(tally_t));
    if (!out->preds || !out->since)
        return -1;
    for (uint32_t i = 0; i < keng_registry_board_count(r->reg); i++) {
        tally_add(&out->preds[r->pred_of[i]], &r->before[i]);
        tally_add_beyond(&out->since[keng_registry_board(r->reg, i)->commune], &r->boards[i],
                         &r->before[i]);
    }
    for (size_t i = 0; r->pred_former && i < r->npreds; i++)
        tally_add(&out->preds[i], &r->pred_former[i]);
    for (uint32_t i = 0; r->former_since && i < keng_registry_commune_count(r->reg); i++)
        tally_add(&out->since[i], &r->former_since[i]);
    return 0;
}

static void rollup_free(rollup_t *ru)
{
    free(ru->communes);
    free(ru->districts);
    free(ru->commune_boards);
    free(ru->district_boards);
    free(ru->preds);
    free(ru->since);
}

/* ---- JSON ---- */

static json_t *tally_json(const tally_t *t)
{
    json_t *cat = json_object(), *res = json_object(), *out = json_object(), *dis = json_object();

    for (int i = 0; i < KENG_CAT_COUNT; i++)
        json_object_set_new(cat, keng_category_names[i],
                            json_integer((json_int_t)t->by_category[i]));
    for (int i = 0; i < KENG_RES_COUNT; i++)
        json_object_set_new(res, keng_resolution_names[i],
                            json_integer((json_int_t)t->by_resolution[i]));
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        json_object_set_new(out, keng_outcome_names[i], json_integer((json_int_t)t->by_outcome[i]));
    for (int i = 0; i < KENG_DISPUTE_COUNT; i++)
        json_object_set_new(dis, keng_dispute_names[i], json_integer((json_int_t)t->by_dispute[i]));
    return json_pack("{s:{s:I,s:o,s:o},s:{s:I,s:o,s:o}}", "incidents", "total",
                     (json_int_t)t->incidents, "by_category", cat, "by_resolution", res,
                     "mediations", "total", (json_int_t)t->mediations, "by_outcome", out,
                     "by_dispute_type", dis);
}

static json_t *scope_json(const char *id, const char *name, const tally_t *t)
{
    json_t *o = tally_json(t);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "name", json_string(name));
    return o;
}

static void coverage_json(json_t *scope, const coverage_t *c)
{
    json_object_set_new(scope, "boards_total", json_integer((json_int_t)c->total));
    json_object_set_new(scope, "boards_reported", json_integer((json_int_t)c->reported));
}

/* The province's headline, in the terms of its yearly summaries. */
static json_t *headline_json(const rollup_t *ru)
{
    const tally_t *p = &ru->province;

    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "boards_reported",
                     (json_int_t)ru->province_boards.reported, "boards_total",
                     (json_int_t)ru->province_boards.total, "incidents_detected",
                     (json_int_t)p->incidents, "incidents_handled_locally",
                     (json_int_t)p->by_resolution[KENG_RES_HANDLED_LOCALLY],
                     "incidents_transferred_to_police",
                     (json_int_t)p->by_resolution[KENG_RES_TRANSFERRED_TO_POLICE],
                     "disputes_mediated", (json_int_t)p->mediations, "disputes_reconciled",
                     (json_int_t)p->by_outcome[KENG_OUTCOME_RECONCILED]);
}

static const char *const pred_levels[] = {"commune", "district", "new_boards", "former_boards"};

/* The lines of commune c's predecessors (keng_review_set_predecessors), each with its figures
 * from before the switch. */
static json_t *predecessors_json(const keng_review_t *r, const rollup_t *ru, uint32_t c)
{
    json_t *list = json_array();

    for (size_t i = 0; list && i < r->npreds; i++) {
        const predecessor_t *p = &r->preds[i];
        const keng_commune_t *oc =
            p->kind == PRED_COMMUNE ? keng_registry_commune(r->previous, p->unit) : NULL;
        const keng_district_t *od = p->kind == PRED_DISTRICT
                                        ? keng_registry_district(r->previous, p->unit)
                                    : oc ? keng_registry_district(r->previous, oc->district)
                                         : NULL;
        if (p->commune != c)
            continue;
        json_t *o = tally_json(&ru->preds[i]);
        json_object_set_new(o, "level", json_string(pred_levels[p->kind]));
        json_object_set_new(o, "id",
                            oc   ? json_string(oc->id)
                            : od ? json_string(od->id)
                                 : json_null());
        json_object_set_new(o, "name",
                            oc   ? json_string(oc->name)
                            : od ? json_string(od->name)
                                 : json_null());
        if (oc && od)
            json_object_set_new(o, "district_id", json_string(od->id));
        json_object_set_new(o, "split", json_boolean(p->split));
        json_object_set_new(o, "boards", json_integer((json_int_t)p->boards));
        json_array_append_new(list, o);
    }
    return list;
}

/* The document written as review.json, from which review.html is rendered too. Returns a new
 * reference, or NULL when out of memory. */
static json_t *review_json(const keng_review_t *r, const rollup_t *ru)
{
    char from[40], to[40], month[16];
    json_t *root, *months = json_array(), *districts = json_array(), *communes = json_array(),
                  *boards = json_array();

    for (int m = 0; m < MONTHS; m++) {
        int index = r->first_month_index + m;
        int64_t start = days_from_civil(index / 12, (unsigned)(index % 12) + 1, 1) * 86400000LL -
                        KENG_LOCAL_OFFSET_MS;
        if (start >= r->to_ms)
            break;
        snprintf(month, sizeof(month), "%04d-%02d", index / 12, index % 12 + 1);
        json_t *o = tally_json(&r->months[m]);
        json_object_set_new(o, "month", json_string(month));
        json_array_append_new(months, o);
    }
    for (uint32_t i = 0; i < keng_registry_district_count(r->reg); i++) {
        const keng_district_t *d = keng_registry_district(r->reg, i);
        json_t *o = scope_json(d->id, d->name, &ru->districts[i]);
        coverage_json(o, &ru->district_boards[i]);
        if (r->versions)
            json_object_set_new(o, "former_boards", tally_json(&r->former_districts[i]));
        json_array_append_new(districts, o);
    }
    for (uint32_t i = 0; i < keng_registry_commune_count(r->reg); i++) {
        const keng_commune_t *c = keng_registry_commune(r->reg, i);
        const keng_district_t *d = keng_registry_district(r->reg, c->district);
        json_t *o = scope_json(c->id, c->name, &ru->communes[i]);
        if (d)
            json_object_set_new(o, "district_id", json_string(d->id));
        coverage_json(o, &ru->commune_boards[i]);
        if (r->versions)
            json_object_set_new(o, "former_boards", tally_json(&r->former_communes[i]));
        if (r->preds) {
            json_object_set_new(o, "since_switch", tally_json(&ru->since[i]));
            json_object_set_new(o, "predecessors", predecessors_json(r, ru, i));
        }
        json_array_append_new(communes, o);
    }
    for (uint32_t i = 0; i < keng_registry_board_count(r->reg); i++) {
        const keng_board_t *b = keng_registry_board(r->reg, i);
        if (r->boards[i].incidents == 0 && r->boards[i].mediations == 0)
            continue; /* boards with nothing to report are listed in the CSV only */
        json_t *o = scope_json(b->id, b->name, &r->boards[i]);
        json_object_set_new(o, "commune_id",
                            json_string(keng_registry_commune(r->reg, b->commune)->id));
        json_array_append_new(boards, o);
    }
    root = json_pack(
        "{s:{s:s,s:s,s:s,s:s},s:{s:I,s:I,s:I,s:I,s:I,s:I},s:o,s:o,s:o,s:o,s:o}", "period", "label",
        r->label, "from", keng_time_format_local(r->from_ms, from, sizeof(from)), "to",
        keng_time_format_local(r->to_ms, to, sizeof(to)), "time_zone", "Asia/Ho_Chi_Minh",
        "data_quality", "counted", (json_int_t)r->outcomes[KENG_REVIEW_COUNTED], "duplicates",
        (json_int_t)r->outcomes[KENG_REVIEW_DUPLICATE], "out_of_period",
        (json_int_t)r->outcomes[KENG_REVIEW_OUT_OF_PERIOD], "unknown_board",
        (json_int_t)r->outcomes[KENG_REVIEW_UNKNOWN_BOARD], "undecodable",
        (json_int_t)r->outcomes[KENG_REVIEW_UNDECODABLE], "invalid_time",
        (json_int_t)r->outcomes[KENG_REVIEW_INVALID_TIME], "province",
        scope_json(KENG_PROVINCE_ID, KENG_PROVINCE_NAME, &ru->province), "months", months,
        "districts", districts, "communes", communes, "boards", boards);
    if (!root)
        return NULL;
    coverage_json(json_object_get(root, "province"), &ru->province_boards);
    if (r->versions) {
        json_t *province = json_object_get(root, "province");
        json_object_set_new(province, "former_boards", tally_json(&r->former_province));
        json_object_set_new(province, "former_boards_in_no_unit", tally_json(&r->former_nowhere));
        json_object_set_new(json_object_get(root, "data_quality"), "former_board",
                            json_integer((json_int_t)r->former_events));
    }
    json_object_set_new(root, "headline", headline_json(ru));
    /* Which registry the review counted by: a review of the built-in boards for a deployment
     * with its own registry says so on its face. */
    const char *path = keng_registry_path(r->reg);
    json_t *levels = json_pack("[s]", "province");
    if (keng_registry_has_districts(r->reg))
        json_array_append_new(levels, json_string("district"));
    json_array_append_new(levels, json_string("commune"));
    json_array_append_new(levels, json_string("board"));
    json_t *changes = json_array();
    for (size_t i = 0; i < r->nchanges; i++) {
        char when[32];
        keng_time_format_utc(r->changes[i].effective_ms, when, sizeof(when));
        json_array_append_new(changes, json_pack("{s:s,s:I,s:I,s:I}", "effective", when,
                                                 "districts", (json_int_t)r->changes[i].districts,
                                                 "communes", (json_int_t)r->changes[i].communes,
                                                 "boards", (json_int_t)r->changes[i].boards));
    }
    json_t *before = json_null();
    if (r->preds) {
        char when[32];
        const char *previous = keng_registry_path(r->previous);
        keng_time_format_utc(r->switch_ms, when, sizeof(when));
        before = json_pack("{s:s,s:s,s:I,s:I,s:I}", "effective", when, "previous",
                           previous ? previous : "built-in", "districts",
                           (json_int_t)keng_registry_district_count(r->previous), "communes",
                           (json_int_t)keng_registry_commune_count(r->previous), "boards",
                           (json_int_t)keng_registry_board_count(r->previous));
    }
    json_object_set_new(root, "registry",
                        json_pack("{s:s,s:o,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "source",
                                  r->registry_source ? r->registry_source
                                  : path             ? "file"
                                                     : "built-in",
                                  "path", path ? json_string(path) : json_null(), "districts",
                                  (json_int_t)keng_registry_district_count(r->reg), "communes",
                                  (json_int_t)keng_registry_commune_count(r->reg), "boards",
                                  (json_int_t)keng_registry_board_count(r->reg), "levels", levels,
                                  "units",
                                  r->registry_units ? json_string(r->registry_units) : json_null(),
                                  "changes", changes, "predecessors", before));
    return root;
}

/* ---- CSV ---- */

/* A text cell. review.csv is opened in spreadsheets, which read a cell that starts with
 * = + - @, a tab or a CR as a formula (CSV injection): such a cell gets a leading apostrophe,
 * which they show as text. Names and ids come from the registry file, so any of them may. */
static void csv_field(FILE *f, const char *s)
{
    bool formula = *s && strchr("=+-@\t\r", *s);

    if (!formula && !strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    if (formula)
        fputc('\'', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static bool tally_empty(const tally_t *t)
{
    return t->incidents == 0 && t->mediations == 0;
}

static void csv_row(FILE *f, const char *level, const char *id, const char *name,
                    const char *parent, const tally_t *t)
{
    fprintf(f, "%s,", level);
    csv_field(f, id);
    fputc(',', f);
    csv_field(f, name);
    fputc(',', f);
    csv_field(f, parent);
    fprintf(f, ",%llu", (unsigned long long)t->incidents);
    for (int i = 0; i < KENG_RES_COUNT; i++)
        fprintf(f, ",%llu", (unsigned long long)t->by_resolution[i]);
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        fprintf(f, ",%llu", (unsigned long long)t->by_category[i]);
    fprintf(f, ",%llu", (unsigned long long)t->mediations);
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        fprintf(f, ",%llu", (unsigned long long)t->by_outcome[i]);
    for (int i = 0; i < KENG_DISPUTE_COUNT; i++)
        fprintf(f, ",%llu", (unsigned long long)t->by_dispute[i]);
    fputc('\n', f);
}

static int write_csv(const keng_review_t *r, const rollup_t *ru, const char *path)
{
    FILE *f = fopen(path, "w");

    if (!f)
        return -1;
    fputs("level,id,name,parent_id,incidents", f);
    for (int i = 0; i < KENG_RES_COUNT; i++)
        fprintf(f, ",incidents_%s", keng_resolution_names[i]);
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        fprintf(f, ",incidents_%s", keng_category_names[i]);
    fputs(",mediations", f);
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        fprintf(f, ",mediations_%s", keng_outcome_names[i]);
    for (int i = 0; i < KENG_DISPUTE_COUNT; i++)
        fprintf(f, ",mediations_%s", keng_dispute_names[i]);
    fputc('\n', f);
    csv_row(f, "province", KENG_PROVINCE_ID, KENG_PROVINCE_NAME, "", &ru->province);
    for (uint32_t i = 0; i < keng_registry_district_count(r->reg); i++) {
        const keng_district_t *d = keng_registry_district(r->reg, i);
        csv_row(f, "district", d->id, d->name, KENG_PROVINCE_ID, &ru->districts[i]);
    }
    for (uint32_t i = 0; i < keng_registry_commune_count(r->reg); i++) {
        const keng_commune_t *c = keng_registry_commune(r->reg, i);
        const keng_district_t *d = keng_registry_district(r->reg, c->district);
        /* A commune of the two-tier province answers to the province itself. */
        csv_row(f, "commune", c->id, c->name, d ? d->id : KENG_PROVINCE_ID, &ru->communes[i]);
    }
    for (uint32_t i = 0; i < keng_registry_board_count(r->reg); i++) {
        const keng_board_t *b = keng_registry_board(r->reg, i);
        csv_row(f, "board", b->id, b->name, keng_registry_commune(r->reg, b->commune)->id,
                &r->boards[i]);
    }
    /* With predecessors, after every row the file had: under each commune its figures since
     * the switch and each of its former units' from before it, all with the commune as parent,
     * so that they add up to its row. */
    for (uint32_t i = 0; r->preds && i < keng_registry_commune_count(r->reg); i++) {
        const keng_commune_t *c = keng_registry_commune(r->reg, i);
        csv_row(f, "since_switch", c->id, c->name, c->id, &ru->since[i]);
        for (size_t k = 0; k < r->npreds; k++) {
            const predecessor_t *p = &r->preds[k];
            if (p->commune != i)
                continue;
            if (p->kind == PRED_NEW_BOARDS) {
                csv_row(f, "before_switch_new_boards", "", "", c->id, &ru->preds[k]);
            } else if (p->kind == PRED_FORMER_BOARDS) {
                csv_row(f, "before_switch_former_boards", "", "", c->id, &ru->preds[k]);
            } else if (p->kind == PRED_COMMUNE) {
                const keng_commune_t *oc = keng_registry_commune(r->previous, p->unit);
                csv_row(f, p->split ? "before_switch_split" : "before_switch", oc->id, oc->name,
                        c->id, &ru->preds[k]);
            } else {
                const keng_district_t *od = keng_registry_district(r->previous, p->unit);
                csv_row(f, p->split ? "before_switch_split" : "before_switch", od->id, od->name,
                        c->id, &ru->preds[k]);
            }
        }
    }
    /* With the versions of the topic, last: the figures of former boards that each unit's row
     * includes (units with none are left out), the province's, and those in no unit. */
    for (uint32_t i = 0; r->versions && i < keng_registry_district_count(r->reg); i++) {
        const keng_district_t *d = keng_registry_district(r->reg, i);
        if (!tally_empty(&r->former_districts[i]))
            csv_row(f, "former_boards", d->id, d->name, d->id, &r->former_districts[i]);
    }
    for (uint32_t i = 0; r->versions && i < keng_registry_commune_count(r->reg); i++) {
        const keng_commune_t *c = keng_registry_commune(r->reg, i);
        if (!tally_empty(&r->former_communes[i]))
            csv_row(f, "former_boards", c->id, c->name, c->id, &r->former_communes[i]);
    }
    if (r->versions) {
        csv_row(f, "former_boards", KENG_PROVINCE_ID, KENG_PROVINCE_NAME, KENG_PROVINCE_ID,
                &r->former_province);
        csv_row(f, "former_boards_in_no_unit", KENG_PROVINCE_ID, KENG_PROVINCE_NAME,
                KENG_PROVINCE_ID, &r->former_nowhere);
    }
    int failed = ferror(f);
    return fclose(f) == 0 && !failed ? 0 : -1;
}

int keng_review_write(const keng_review_t *r, const char *dir, char *errstr, size_t errstr_size)
{
    char path[4096];
    rollup_t ru;
    json_t *doc = NULL;
    int rc = -1;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (rollup_build(r, &ru) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    doc = review_json(r, &ru);
    if (!doc) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/review.json", dir);
    if (json_dump_file(doc, path, JSON_INDENT(1)) != 0)
        goto fail;
    snprintf(path, sizeof(path), "%s/review.csv", dir);
    if (write_csv(r, &ru, path) != 0)
        goto fail;
    snprintf(path, sizeof(path), "%s/review.html", dir);
    if (keng_review_html_write(doc, r->reg, r->from_ms, r->to_ms, path) != 0)
        goto fail;
    rc = 0;
    goto out;
fail:
    snprintf(errstr, errstr_size, "%s: cannot write: %s", path, strerror(errno));
out:
    json_decref(doc);
    rollup_free(&ru);
    return rc;
}
