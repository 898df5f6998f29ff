/* The rolling-count store of keng-aggregate: per board, the events' time buckets at the
 * coarsest granularity that keeps every window edge exact, with board and rollup tallies kept
 * incrementally so that a read is O(1), and the remembered event ids; it never reads a clock
 * (now is passed in) and never does I/O.
 *
 * Windows. Window w has a length L and a granularity G (1h: 1 min, 24h: 24 min, 7d: 168 min,
 * 30d: 672 min, 365d: 8736 min; each G divides the next and is at most L/60). At the clock
 * now, start(w) = floor((now - L) / G) * G, flooring towards minus infinity on multiples of G
 * since the epoch, and an event counts in w iff occurred_at >= start(w). There is no upper
 * edge: the caller rejects events from too far in the future, and those it lets through
 * count in every window. "all" counts everything. So a window is L long plus less than G.
 *
 * Levels. An event lives in level k, the smallest window it is still in, in a bucket
 * floor(occurred_at, G_k). Since start(k) is a multiple of G_k, the bucket alone says whether
 * its events are in window k, and since G_k divides G_(k+1) it says so for every wider window
 * too. When start(k) passes a bucket, its counts move (merged) into level k+1, so that state
 * grows with the distinct (board, bucket, kind) triples, never boards x windows x buckets.
 * Events older than the 365d edge keep only a tally (level 5, "all" only). A window's tally
 * is the sum of the tallies of levels 0..w, and every level's tally is kept for the board and
 * its commune, district and province: adding or moving counts adjusts all four at once, so
 * that a rollup always equals the sum of its boards.
 *
 * Dedup. An event id is remembered as a 64-bit hash (keng_counts_id_hash) in its board's
 * set, with the quantum of its arrival (now at add, in steps of horizon/65000, about 40 s for
 * 30 days). An id is remembered at least dedup_horizon_ms after its arrival and at most one
 * quantum more. Each board's set is a sorted array plus a short sorted tail that is merged
 * into it now and then, which costs 10 bytes an id plus growth slack. */
#include "counts.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

_Static_assert(sizeof(keng_tally_t) == 20 * sizeof(uint64_t), "keng_tally_t is 20 counters");

const char *const keng_window_names[KENG_WIN_COUNT] = {"1h", "24h", "7d", "30d", "365d", "all"};
const int64_t keng_window_length_ms[KENG_WIN_COUNT] = {3600000LL,    86400000LL,    604800000LL,
                                                       2592000000LL, 31536000000LL, 0};
const int64_t keng_window_granularity_ms[KENG_WIN_COUNT] = {
    1 * MINUTE_MS, 24 * MINUTE_MS, 168 * MINUTE_MS, 672 * MINUTE_MS, 8736 * MINUTE_MS, 0};
const char *const keng_level_names[KENG_LEVEL_COUNT] = {"board", "commune", "district", "province"};

size_t keng_scope_count(const keng_registry_t *reg, keng_level_t level)
{
    switch (level) {
    case KENG_LEVEL_BOARD:
        return keng_registry_board_count(reg);
    case KENG_LEVEL_COMMUNE:
        return keng_registry_commune_count(reg);
    case KENG_LEVEL_DISTRICT:
        return keng_registry_district_count(reg);
    default:
        return 1;
    }
}

void keng_scope_names(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                      const char **id, const char **name)
{
    switch (level) {
    case KENG_LEVEL_BOARD: {
        const keng_board_t *b = keng_registry_board(reg, index);
        *id = b->id;
        *name = b->name;
        break;
    }
    case KENG_LEVEL_COMMUNE: {
        const keng_commune_t *c = keng_registry_commune(reg, index);
        *id = c->id;
        *name = c->name;
        break;
    }
    case KENG_LEVEL_DISTRICT: {
        const keng_district_t *d = keng_registry_district(reg, index);
        *id = d->id;
        *name = d->name;
        break;
    }
    default:
        *id = KENG_PROVINCE_ID;
        *name = KENG_PROVINCE_NAME;
        break;
    }
}

int32_t keng_scope_find(const keng_registry_t *reg, keng_level_t level, const char *id)
{
    switch (level) {
    case KENG_LEVEL_BOARD:
        return keng_registry_find_board(reg, id, strlen(id));
    case KENG_LEVEL_COMMUNE:
        return keng_registry_find_commune(reg, id, strlen(id));
    case KENG_LEVEL_DISTRICT:
        return keng_registry_find_district(reg, id, strlen(id));
    default:
        return strcmp(id, KENG_PROVINCE_ID) == 0 ? 0 : -1;
    }
}

bool keng_level_exists(const keng_registry_t *reg, keng_level_t level)
{
    if (level == KENG_LEVEL_DISTRICT)
        return keng_registry_has_districts(reg);
    return level >= KENG_LEVEL_BOARD && level < KENG_LEVEL_COUNT;
}

int keng_level_parse(const keng_registry_t *reg, const char *name, keng_level_t *out)
{
    for (int l = 0; l < KENG_LEVEL_COUNT; l++) {
        if (strcmp(name, keng_level_names[l]) == 0 && keng_level_exists(reg, (keng_level_t)l)) {
            *out = (keng_level_t)l;
            return 0;
        }
    }
    return -1;
}

keng_level_t keng_level_above(const keng_registry_t *reg, keng_level_t level)
{
    int l = (int)level + 1;

    while (l < KENG_LEVEL_COUNT && !keng_level_exists(reg, (keng_level_t)l))
        l++;
    return l < KENG_LEVEL_COUNT ? (keng_level_t)l : level;
}

int keng_scope_find_any(const keng_registry_t *reg, const char *id, keng_level_t lowest,
                        keng_level_t *level, uint32_t *index)
{
    for (int l = (int)lowest; l < KENG_LEVEL_COUNT; l++) {
        if (!keng_level_exists(reg, (keng_level_t)l))
            continue;
        int32_t i = keng_scope_find(reg, (keng_level_t)l, id);
        if (i >= 0) {
            *level = (keng_level_t)l;
            *index = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

keng_level_t keng_level_below(const keng_registry_t *reg, keng_level_t level)
{
    int l = (int)level - 1;

    while (l >= 0 && !keng_level_exists(reg, (keng_level_t)l))
        l--;
    return l >= 0 ? (keng_level_t)l : level;
}

uint32_t keng_scope_parent(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                           keng_level_t outer)
{
    switch (outer) {
    case KENG_LEVEL_COMMUNE:
        return level == KENG_LEVEL_BOARD ? keng_registry_board(reg, index)->commune : KENG_NO_UNIT;
    case KENG_LEVEL_DISTRICT:
        if (level == KENG_LEVEL_BOARD)
            return keng_registry_board(reg, index)->district;
        return level == KENG_LEVEL_COMMUNE ? keng_registry_commune(reg, index)->district
                                           : KENG_NO_UNIT;
    case KENG_LEVEL_PROVINCE:
        return 0;
    default:
        return KENG_NO_UNIT;
    }
}

/* Grows *p (elements of elem bytes, capacity *cap) to hold at least need; amortised. */
static int grow(keng_counts_t *c, void **p, uint32_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *np;

    if (need <= *cap)
        return 0;
    if (need > UINT32_MAX)
        return -1;
    ncap = *cap < 4 ? 4 : (size_t)*cap + *cap / 4; /* gentle: memory matters more than copies */
    if (ncap < need)
        ncap = need;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    np = realloc(*p, ncap * elem);
    if (!np)
        return -1;
    c->mem += (ncap - *cap) * elem;
    *p = np;
    *cap = (uint32_t)ncap;
    return 0;
}

static void out_of_memory(void)
{
    fputs("level=fatal msg=\"keng counts: out of memory while moving expired buckets\"\n", stderr);
    abort();
}

/* Adds count events of cls to the bucket key. The caller has made room for one more entry
 * (keng_counts__level_reserve), which is all this can need. */
void keng_counts__level_add(level_t *lv, uint32_t key, unsigned cls, uint32_t count)
{
    uint64_t probe = entry_make(key, cls, 0);
    uint32_t at = lower_bound64(lv->e, lv->n, probe);

    if (at < lv->n && (lv->e[at] >> COUNT_BITS) == (probe >> COUNT_BITS)) {
        uint64_t have = entry_count(lv->e[at]);
        if (have + count <= COUNT_MAX) {
            lv->e[at] += count;
            return;
        }
        lv->e[at] = entry_make(key, cls, COUNT_MAX);
        count = (uint32_t)(have + count - COUNT_MAX);
        if (count == 0)
            return;
    }
    memmove(lv->e + at + 1, lv->e + at, (size_t)(lv->n - at) * sizeof(uint64_t));
    lv->e[at] = entry_make(key, cls, count);
    lv->n++;
}

int keng_counts__level_reserve(keng_counts_t *c, level_t *lv, size_t more)
{
    return grow(c, (void **)&lv->e, &lv->cap, (size_t)lv->n + more, sizeof(uint64_t));
}

/* The level an event of minute m belongs to now, or LEVEL_OLD; *key is its bucket there. */
int keng_counts__level_of(const keng_counts_t *c, int64_t m, uint32_t *key)
{
    for (int k = 0; k < LEVELS; k++) {
        if (m >= c->start_min[k]) {
            int64_t b = floor_div(m, granularity_min[k]) * granularity_min[k] + KEY_OFFSET;
            if (b < 0 || b > UINT32_MAX)
                return LEVEL_OLD;
            *key = (uint32_t)b;
            return k;
        }
    }
    return LEVEL_OLD;
}

/* The four tallies (board, commune, district, province) that an event of bi adjusts. */
void keng_counts__nodes_of(keng_counts_t *c, board_t *b, uint32_t u, keng_tally_t *nodes[4])
{
    uint32_t slot = u / KENG_KIND_COUNT, bi = slot_board(c, slot);

    (void)b;
    nodes[0] = *c->board_lt[slot];
    nodes[1] = c->commune_lt[c->board_commune[bi]];
    nodes[2] = c->district_lt[c->board_district[bi]];
    nodes[3] = c->province_lt;
}

/* Moves the buckets of level k that start(k) has passed into level k + 1 (or the old tally),
 * with the board's and its rollups' tallies. */
static void level_expire(keng_counts_t *c, board_t *b, uint32_t u, int k)
{
    level_t *lv = &b->lvl[k];
    int64_t start = c->start_min[k] + KEY_OFFSET;
    uint32_t p =
        start > UINT32_MAX ? lv->n : lower_bound64(lv->e, lv->n, entry_make((uint32_t)start, 0, 0));
    keng_tally_t d;
    keng_tally_t *nodes[4];

    if (p == 0)
        return;
    memset(&d, 0, sizeof(d));
    if (k + 1 < LEVELS && keng_counts__level_reserve(c, &b->lvl[k + 1], p) < 0)
        out_of_memory();
    for (uint32_t i = 0; i < p; i++) {
        uint64_t e = lv->e[i];
        tally_add_class(&d, entry_class(e), entry_count(e));
        if (k + 1 < LEVELS) {
            int64_t g = granularity_min[k + 1];
            int64_t m = (int64_t)entry_key(e) - KEY_OFFSET;
            int64_t nk = floor_div(m, g) * g + KEY_OFFSET;
            /* Only a clock before year -2000 could floor a bucket below the key range. */
            keng_counts__level_add(&b->lvl[k + 1], nk < 0 ? 0 : (uint32_t)nk, entry_class(e),
                                   entry_count(e));
        }
    }
    memmove(lv->e, lv->e + p, (size_t)(lv->n - p) * sizeof(uint64_t));
    lv->n -= p;
    keng_counts__nodes_of(c, b, u, nodes);
    for (int i = 0; i < 4; i++) {
        tally_sub(&nodes[i][k], &d);
        keng_tally_add(&nodes[i][k + 1], &d);
    }
}

static void board_expire(keng_counts_t *c, board_t *b, uint32_t u)
{
    for (int k = 0; k < LEVELS; k++) {
        level_t *lv = &b->lvl[k];
        if (lv->n > 0 && (int64_t)entry_key(lv->e[0]) - KEY_OFFSET < c->start_min[k])
            level_expire(c, b, u, k);
    }
}

static void compute_starts(keng_counts_t *c)
{
    for (int k = 0; k < LEVELS; k++) {
        int64_t g = granularity_min[k] * MINUTE_MS;
        c->start_min[k] = floor_div(c->now - keng_window_length_ms[k], g) * granularity_min[k];
    }
    c->next_minute_ms = (floor_div(c->now, MINUTE_MS) + 1) * MINUTE_MS;
}

/* ---- the clock ---- */

void keng_counts__advance_to(keng_counts_t *c, int64_t now)
{
    int64_t floor;

    now = clamp_time(now);
    if (c->have_now && now <= c->now)
        return;
    if (!c->have_now) {
        c->have_now = true;
        c->now = now;
        compute_starts(c);
        c->q_now = floor_div(now, c->quantum_ms);
        c->q_floor = floor_div(now - c->opt.dedup_horizon_ms, c->quantum_ms);
        return;
    }
    c->now = now;
    if (now >= c->next_minute_ms) {
        compute_starts(c);
        for (uint32_t i = 0; i < c->nactive; i++)
            board_expire(c, c->boards[c->active[i]], c->active[i]);
    }
    /* Sweep before q_now moves, while every remembered quantum is still named unambiguously
     * by its 16 bits; a floor past q_now forgets everything. */
    floor = floor_div(now - c->opt.dedup_horizon_ms, c->quantum_ms);
    keng_counts__dedup_forget_below(c, floor);
    c->q_now = floor_div(now, c->quantum_ms);
    if (c->q_floor < floor)
        c->q_floor = floor < c->q_now ? floor : c->q_now;
}

/* ---- boards ---- */

/* Allocates the board's shared tallies when neither unit had state. */
static int board_lt_get(keng_counts_t *c, uint32_t bi)
{
    if (c->board_lt[bi])
        return 0;
    c->board_lt[bi] = calloc(1, sizeof(board_lt_t));
    if (!c->board_lt[bi])
        return -1;
    c->mem += sizeof(board_lt_t);
    return 0;
}

static board_t *board_get_or_new(keng_counts_t *c, uint32_t u)
{
    board_t *b = c->boards[u];

    if (b)
        return b;
    if (board_lt_get(c, u / KENG_KIND_COUNT) != 0)
        return NULL;
    b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->ids.oldest_q = INT64_MAX;
    b->last_seen = INT64_MIN;
    b->active_pos = c->nactive;
    c->active[c->nactive++] = u;
    c->boards[u] = b;
    c->mem += sizeof(*b);
    keng_counts__lane_note(c, u, true);
    return b;
}

void keng_counts__lane_note(keng_counts_t *c, uint32_t u, bool added)
{
    uint32_t bk = slot_board(c, u / KENG_KIND_COUNT) * KENG_KIND_COUNT + u % KENG_KIND_COUNT;

    if (added)
        c->in_lanes[bk]++;
    else
        c->in_lanes[bk]--;
}

/* Forgets the unit entirely: its tallies leave the rollups, its ids the dedup counts. */
void keng_counts__board_drop(keng_counts_t *c, uint32_t u)
{
    board_t *b = c->boards[u];
    keng_tally_t *nodes[4];

    if (!b)
        return;
    keng_counts__nodes_of(c, b, u, nodes);
    for (int k = 0; k <= LEVELS; k++) {
        keng_tally_t mine = nodes[0][k];
        tally_keep_kind(&mine, u % KENG_KIND_COUNT);
        for (int i = 0; i < 4; i++)
            tally_sub(&nodes[i][k], &mine);
    }
    for (uint32_t i = 0; i < b->ids.n_main + b->ids.n_tail; i++)
        c->qcount[b->ids.q[i] & (QUANTA - 1)]--;
    c->dedup_total -= b->ids.n_main + b->ids.n_tail;
    for (int k = 0; k < LEVELS; k++) {
        c->mem -= (size_t)b->lvl[k].cap * sizeof(uint64_t);
        free(b->lvl[k].e);
    }
    c->mem -= (size_t)b->ids.cap * (sizeof(uint64_t) + sizeof(uint16_t));
    free(b->ids.h);
    free(b->ids.q);
    c->mem -= sizeof(*b);
    c->active[b->active_pos] = c->active[--c->nactive];
    c->boards[c->active[b->active_pos]]->active_pos = b->active_pos;
    free(b);
    c->boards[u] = NULL;
    keng_counts__lane_note(c, u, false);
    if (!c->boards[u ^ 1u]) {
        free(c->board_lt[u / KENG_KIND_COUNT]);
        c->board_lt[u / KENG_KIND_COUNT] = NULL;
        c->mem -= sizeof(board_lt_t);
    }
}

/* ---- public API ---- */

void keng_counts_options_default(keng_counts_options_t *opt)
{
    opt->dedup_horizon_ms = 30LL * 24 * 3600 * 1000;
    opt->dedup_max_entries = 2000000;
    opt->state_version = FORMAT_VERSION;
    opt->lanes = 1;
}

keng_counts_t *keng_counts_new(const keng_registry_t *reg, const keng_counts_options_t *opt)
{
    keng_counts_t *c = calloc(1, sizeof(*c));
    keng_counts_t *ret = NULL;

    if (!c)
        goto out;
    c->reg = reg;
    if (opt)
        c->opt = *opt;
    else
        keng_counts_options_default(&c->opt);
    if (c->opt.dedup_horizon_ms < 0)
        c->opt.dedup_horizon_ms = 0;
    if (c->opt.dedup_horizon_ms > TIME_LIMIT)
        c->opt.dedup_horizon_ms = TIME_LIMIT;
    if (c->opt.state_version != 2)
        c->opt.state_version = FORMAT_VERSION;
    c->watch_start = INT64_MAX;
    c->quantum_ms = (c->opt.dedup_horizon_ms + QUANTA_SPAN - 1) / QUANTA_SPAN;
    if (c->quantum_ms < 1)
        c->quantum_ms = 1;
    c->nboards = (uint32_t)keng_registry_board_count(reg);
    c->ncommunes = (uint32_t)keng_registry_commune_count(reg);
    c->ndistricts = (uint32_t)keng_registry_district_count(reg);
    c->board_commune = calloc(c->nboards + 1, sizeof(uint32_t));
    c->board_district = calloc(c->nboards + 1, sizeof(uint32_t));
    c->lanes = c->opt.lanes < 1 ? 1 : c->opt.lanes > LANES_MAX ? LANES_MAX : c->opt.lanes;
    c->nslots = c->nboards * c->lanes;
    c->nunits = c->nslots * KENG_KIND_COUNT;
    c->boards = calloc(c->nunits + 1, sizeof(board_t *));
    c->board_lt = calloc(c->nslots + 1, sizeof(board_lt_t *));
    c->in_lanes = calloc((size_t)c->nboards * KENG_KIND_COUNT + 1, 1);
    c->active = calloc(c->nunits + 1, sizeof(uint32_t));
    c->dirty = calloc(c->nunits / 8 + 1, 1);
    c->commune_lt = calloc(c->ncommunes + 1, sizeof(*c->commune_lt));
    c->district_lt = calloc(c->ndistricts + 1, sizeof(*c->district_lt));
    c->qcount = calloc(QUANTA, sizeof(uint32_t));
    if (!c->board_commune || !c->board_district || !c->boards || !c->board_lt || !c->in_lanes ||
        !c->active || !c->dirty || !c->commune_lt || !c->district_lt || !c->qcount)
        goto out;
    for (uint32_t i = 0; i < c->nboards; i++) {
        const keng_board_t *b = keng_registry_board(reg, i);
        if (b->commune >= c->ncommunes ||
            (b->district >= c->ndistricts && b->district != KENG_NO_UNIT))
            goto out;
        c->board_commune[i] = b->commune;
        /* Without a district level the board's district tally is the spare one past the
         * end, which no scope reads: the rollup code stays the same for every registry. */
        c->board_district[i] = b->district == KENG_NO_UNIT ? c->ndistricts : b->district;
    }
    c->mem = (size_t)(c->nboards + 1) * (2 * sizeof(uint32_t) + KENG_KIND_COUNT) +
             (size_t)(c->nslots + 1) * sizeof(board_lt_t *) +
             (size_t)(c->nunits + 1) * (sizeof(board_t *) + sizeof(uint32_t)) + c->nunits / 8 + 1 +
             (size_t)(c->ncommunes + c->ndistricts + 2) * sizeof(*c->commune_lt) +
             QUANTA * sizeof(uint32_t);
    ret = c;
    c = NULL;
out:
    keng_counts_destroy(c);
    return ret;
}

int keng_counts_set_registry(keng_counts_t *c, const keng_registry_t *reg)
{
    uint32_t ncommunes = (uint32_t)keng_registry_commune_count(reg);
    uint32_t ndistricts = (uint32_t)keng_registry_district_count(reg);
    uint32_t *board_commune, *board_district;
    keng_tally_t(*commune_lt)[LEVELS + 1], (*district_lt)[LEVELS + 1];

    if (keng_registry_board_count(reg) != c->nboards)
        return -1;
    board_commune = calloc(c->nboards + 1, sizeof(uint32_t));
    board_district = calloc(c->nboards + 1, sizeof(uint32_t));
    commune_lt = calloc(ncommunes + 1, sizeof(*commune_lt));
    district_lt = calloc(ndistricts + 1, sizeof(*district_lt));
    if (!board_commune || !board_district || !commune_lt || !district_lt)
        goto fail;
    for (uint32_t i = 0; i < c->nboards; i++) {
        const keng_board_t *b = keng_registry_board(reg, i);
        if (b->commune >= ncommunes || (b->district >= ndistricts && b->district != KENG_NO_UNIT))
            goto fail;
        board_commune[i] = b->commune;
        board_district[i] = b->district == KENG_NO_UNIT ? ndistricts : b->district;
    }
    /* A slot's tallies are both its units' (the kinds' fields never overlap), in every lane. */
    for (uint32_t slot = 0; slot < c->nslots; slot++) {
        const board_lt_t *blt = c->board_lt[slot];
        uint32_t bi = slot_board(c, slot);
        for (int k = 0; blt && k <= LEVELS; k++) {
            keng_tally_add(&commune_lt[board_commune[bi]][k], &(*blt)[k]);
            keng_tally_add(&district_lt[board_district[bi]][k], &(*blt)[k]);
        }
    }
    c->mem -= (size_t)(c->ncommunes + c->ndistricts + 2) * sizeof(*c->commune_lt);
    c->mem += (size_t)(ncommunes + ndistricts + 2) * sizeof(*c->commune_lt);
    free(c->board_commune);
    free(c->board_district);
    free(c->commune_lt);
    free(c->district_lt);
    c->board_commune = board_commune;
    c->board_district = board_district;
    c->commune_lt = commune_lt;
    c->district_lt = district_lt;
    c->ncommunes = ncommunes;
    c->ndistricts = ndistricts;
    c->reg = reg;
    return 0;
fail:
    free(board_commune);
    free(board_district);
    free(commune_lt);
    free(district_lt);
    return -1;
}

void keng_counts_destroy(keng_counts_t *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; c->boards && i < c->nactive; i++) {
        board_t *b = c->boards[c->active[i]];
        for (int k = 0; k < LEVELS; k++)
            free(b->lvl[k].e);
        free(b->ids.h);
        free(b->ids.q);
        free(b);
    }
    for (uint32_t i = 0; c->board_lt && i < c->nslots; i++)
        free(c->board_lt[i]);
    free(c->board_lt);
    free(c->in_lanes);
    free(c->board_commune);
    free(c->board_district);
    free(c->boards);
    free(c->active);
    free(c->dirty);
    free(c->commune_lt);
    free(c->district_lt);
    free(c->qcount);
    free(c->scratch_h);
    free(c->scratch_q);
    free(c);
}

/* Whether another lane of unit u's (board, kind) remembers the id hash h; cheap while the
 * board has one lane, as almost every board has. */
static bool other_lane_has(const keng_counts_t *c, uint32_t u, bool has_state, uint64_t h)
{
    uint32_t bi = slot_board(c, u / KENG_KIND_COUNT), kind = u % KENG_KIND_COUNT;

    if (c->in_lanes[bi * KENG_KIND_COUNT + kind] <= (has_state ? 1u : 0u))
        return false;
    for (uint32_t lane = 0; lane < c->lanes; lane++) {
        uint32_t o = (lane * c->nboards + bi) * KENG_KIND_COUNT + kind;
        if (o != u && c->boards[o] && keng_counts__idset_contains(&c->boards[o]->ids, h))
            return true;
    }
    return false;
}

static int event_class(const keng_event_t *ev)
{
    if (ev->kind == KENG_KIND_INCIDENT) {
        if ((unsigned)ev->category >= KENG_CAT_COUNT || (unsigned)ev->resolution >= KENG_RES_COUNT)
            return -1;
        return (int)(ev->category * KENG_RES_COUNT + ev->resolution);
    }
    if (ev->kind == KENG_KIND_MEDIATION) {
        if ((unsigned)ev->outcome >= KENG_OUTCOME_COUNT)
            return -1;
        return CLASS_MED + (int)ev->outcome;
    }
    return -1;
}

int keng_counts_add(keng_counts_t *c, uint32_t board_index, const keng_event_t *ev, int64_t now_ms)
{
    int cls = event_class(ev);
    uint64_t h;
    board_t *b;
    int k;
    uint32_t key = 0;
    int64_t m;
    keng_tally_t *nodes[4];
    bool remember = c->opt.dedup_max_entries > 0;

    uint32_t u;

    if (cls < 0 || board_index >= c->nslots)
        return -1;
    u = board_index * KENG_KIND_COUNT + (uint32_t)ev->kind;
    m = floor_div(clamp_time(ev->occurred_at), MINUTE_MS);
    if (m + KEY_OFFSET > UINT32_MAX)
        return -1;
    keng_counts__advance_to(c, now_ms);
    /* Each add touches a few cache lines scattered over ~45 MB; ask for the ones that do not
     * depend on the id's hash now, so that their misses overlap the hashing and the search
     * of the remembered ids instead of following them one by one. */
    k = keng_counts__level_of(c, m, &key);
    b = c->boards[u];
    if (b) {
        keng_tally_t *bt = &(*c->board_lt[board_index])[k];
        keng_tally_t *ct = &c->commune_lt[c->board_commune[slot_board(c, board_index)]][k];
        __builtin_prefetch(b->ids.h + b->ids.n_main);
        __builtin_prefetch(&bt->by_category[cls / KENG_RES_COUNT], 1);
        __builtin_prefetch(&bt->by_resolution[cls % KENG_RES_COUNT], 1);
        __builtin_prefetch(&ct->by_category[cls / KENG_RES_COUNT], 1);
        if (k < LEVELS)
            __builtin_prefetch(b->lvl[k].e + b->lvl[k].n / 2);
    }
    h = keng_counts_id_hash(ev->kind, ev->event_id, strnlen(ev->event_id, KENG_EVENT_ID_MAX));
    if (b && b->ids.n_main >= 16)
        __builtin_prefetch(b->ids.h + (uint32_t)(((unsigned __int128)h * b->ids.n_main) >> 64));
    if (remember && b && keng_counts__idset_contains(&b->ids, h))
        return KENG_COUNTS_DUPLICATE;
    if (remember && other_lane_has(c, u, b != NULL, h))
        return KENG_COUNTS_DUPLICATE;
    b = board_get_or_new(c, u);
    if (!b)
        return -1;
    if (k < LEVELS && keng_counts__level_reserve(c, &b->lvl[k], 1) < 0)
        return -1;
    if (remember &&
        (keng_counts__idset_reserve(c, &b->ids, 1) < 0 ||
         keng_counts__scratch_reserve(c, (size_t)keng_counts__tail_limit(b->ids.n_main) + 1) < 0))
        return -1;
    if (k < LEVELS)
        keng_counts__level_add(&b->lvl[k], key, (unsigned)cls, 1);
    keng_counts__nodes_of(c, b, u, nodes);
    for (int i = 0; i < 4; i++)
        tally_add_class(&nodes[i][k], (unsigned)cls, 1);
    if (remember) {
        keng_counts__idset_insert(c, &b->ids, h);
        keng_counts__dedup_enforce_bound(c);
    }
    {
        /* The board reported when its gateway received the event; an event without that
         * time, or with a gateway clock ahead of ours, reported now at the latest. */
        int64_t seen = ev->reported_at > 0 ? ev->reported_at : ev->occurred_at;
        if (seen > c->now)
            seen = c->now;
        if (seen > b->last_seen)
            b->last_seen = seen;
    }
    set_dirty(c, u, true);
    c->events++;
    return KENG_COUNTS_ADDED;
}

void keng_counts_advance(keng_counts_t *c, int64_t now_ms)
{
    keng_counts__advance_to(c, now_ms);
}

void keng_counts_get(const keng_counts_t *c, keng_level_t level, uint32_t index,
                     keng_window_id_t window, keng_tally_t *out)
{
    const keng_tally_t *lt = NULL;

    memset(out, 0, sizeof(*out));
    if ((unsigned)window >= KENG_WIN_COUNT)
        return;
    switch (level) {
    case KENG_LEVEL_BOARD:
        /* A board is the sum of its units, in every lane; the kinds' classes never overlap. */
        for (uint32_t lane = 0; index < c->nboards && lane < c->lanes; lane++) {
            const board_lt_t *blt = c->board_lt[lane * c->nboards + index];
            for (int k = 0; blt && k <= (int)window; k++)
                keng_tally_add(out, &(*blt)[k]);
        }
        return;
    case KENG_LEVEL_COMMUNE:
        if (index < c->ncommunes)
            lt = c->commune_lt[index];
        break;
    case KENG_LEVEL_DISTRICT:
        if (index < c->ndistricts)
            lt = c->district_lt[index];
        break;
    case KENG_LEVEL_PROVINCE:
        if (index == 0)
            lt = c->province_lt;
        break;
    default:
        break;
    }
    if (!lt)
        return;
    for (int k = 0; k <= (int)window; k++)
        keng_tally_add(out, &lt[k]);
}

size_t keng_counts_dedup_size(const keng_counts_t *c)
{
    return c->dedup_total;
}

uint64_t keng_counts_events_counted(const keng_counts_t *c)
{
    return c->events;
}

size_t keng_counts_memory_bytes(const keng_counts_t *c)
{
    return sizeof(*c) + c->mem;
}

int64_t keng_counts_now(const keng_counts_t *c)
{
    return c->have_now ? c->now : INT64_MIN;
}

int64_t keng_counts_window_start(int64_t now_ms, keng_window_id_t window)
{
    int64_t g;

    if ((unsigned)window >= KENG_WIN_ALL)
        return INT64_MIN;
    g = keng_window_granularity_ms[window];
    return floor_div(clamp_time(now_ms) - keng_window_length_ms[window], g) * g;
}

bool keng_counts_unit_dirty(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind)
{
    uint32_t u = board_index * KENG_KIND_COUNT + (uint32_t)kind;

    return board_index < c->nslots && (unsigned)kind < KENG_KIND_COUNT &&
           (c->dirty[u / 8] >> (u % 8)) & 1u;
}

void keng_counts_unit_set_dirty(keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                                bool dirty)
{
    if (board_index < c->nslots && (unsigned)kind < KENG_KIND_COUNT)
        set_dirty(c, board_index * KENG_KIND_COUNT + (uint32_t)kind, dirty);
}

bool keng_counts_unit_has_state(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind)
{
    return board_index < c->nslots && (unsigned)kind < KENG_KIND_COUNT &&
           c->boards[board_index * KENG_KIND_COUNT + (uint32_t)kind] != NULL;
}

void keng_counts_unit_clear(keng_counts_t *c, uint32_t board_index, keng_kind_t kind)
{
    uint32_t u = board_index * KENG_KIND_COUNT + (uint32_t)kind;

    if (board_index >= c->nslots || (unsigned)kind >= KENG_KIND_COUNT)
        return;
    if (c->boards[u])
        set_dirty(c, u, true);
    keng_counts__board_drop(c, u);
}

bool keng_counts_board_dirty(const keng_counts_t *c, uint32_t board_index)
{
    return keng_counts_unit_dirty(c, board_index, KENG_KIND_INCIDENT) ||
           keng_counts_unit_dirty(c, board_index, KENG_KIND_MEDIATION);
}

void keng_counts_board_mark_clean(keng_counts_t *c, uint32_t board_index)
{
    for (int kind = 0; kind < KENG_KIND_COUNT; kind++)
        keng_counts_unit_set_dirty(c, board_index, (keng_kind_t)kind, false);
}

void keng_counts_board_clear(keng_counts_t *c, uint32_t board_index)
{
    for (int kind = 0; kind < KENG_KIND_COUNT; kind++)
        keng_counts_unit_clear(c, board_index, (keng_kind_t)kind);
}

/* ---- last events and series (silent boards and trends) ---- */

int64_t keng_counts_last_event(const keng_counts_t *c, uint32_t board_index)
{
    int64_t last = INT64_MIN;

    for (uint32_t lane = 0; board_index < c->nboards && lane < c->lanes; lane++) {
        for (uint32_t kind = 0; kind < KENG_KIND_COUNT; kind++) {
            const board_t *b =
                c->boards[(lane * c->nboards + board_index) * KENG_KIND_COUNT + kind];
            if (b && b->last_seen > last)
                last = b->last_seen;
        }
    }
    return last;
}

uint32_t keng_counts_slots(const keng_counts_t *c)
{
    return c->nslots;
}

int64_t keng_counts_watch_start(const keng_counts_t *c)
{
    return c->watch_start;
}

void keng_counts_note_watch_start(keng_counts_t *c, int64_t ms)
{
    if (ms < c->watch_start)
        c->watch_start = ms;
}

/* Whether the board at bi belongs to the scope (level, index). */
static bool in_scope(const keng_counts_t *c, uint32_t bi, keng_level_t level, uint32_t index)
{
    switch (level) {
    case KENG_LEVEL_BOARD:
        return bi == index;
    case KENG_LEVEL_COMMUNE:
        return c->board_commune[bi] == index;
    case KENG_LEVEL_DISTRICT:
        return c->board_district[bi] == index;
    default:
        return index == 0;
    }
}

static void series_unit(const board_t *b, keng_window_id_t window, int64_t origin_ms,
                        int64_t step_ms, uint64_t *out, size_t npoints)
{
    for (int k = 0; k <= (int)window && k < LEVELS; k++) {
        for (uint32_t i = 0; i < b->lvl[k].n; i++) {
            uint64_t e = b->lvl[k].e[i];
            int64_t t = ((int64_t)entry_key(e) - KEY_OFFSET) * MINUTE_MS;
            int64_t p = floor_div(t - origin_ms, step_ms);
            if (p < 0)
                p = 0;
            if (p >= (int64_t)npoints)
                p = (int64_t)npoints - 1;
            out[p] += entry_count(e);
        }
    }
}

int keng_counts_series_add(const keng_counts_t *c, keng_level_t level, uint32_t index,
                           keng_kind_t kind, keng_window_id_t window, int64_t origin_ms,
                           int64_t step_ms, uint64_t *out, size_t npoints)
{
    if ((unsigned)window >= KENG_WIN_ALL || (unsigned)kind >= KENG_KIND_COUNT || step_ms <= 0 ||
        npoints == 0 || (unsigned)level >= KENG_LEVEL_COUNT)
        return -1;
    if (level == KENG_LEVEL_BOARD) {
        for (uint32_t lane = 0; index < c->nboards && lane < c->lanes; lane++) {
            const board_t *b =
                c->boards[(lane * c->nboards + index) * KENG_KIND_COUNT + (uint32_t)kind];
            if (b)
                series_unit(b, window, origin_ms, step_ms, out, npoints);
        }
        return 0;
    }
    for (uint32_t i = 0; i < c->nactive; i++) {
        uint32_t u = c->active[i];
        if (u % KENG_KIND_COUNT == (uint32_t)kind &&
            in_scope(c, slot_board(c, u / KENG_KIND_COUNT), level, index))
            series_unit(c->boards[u], window, origin_ms, step_ms, out, npoints);
    }
    return 0;
}
