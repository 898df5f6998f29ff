/* The rolling-count store of keng-aggregate: per board, the events' time buckets at the
 * coarsest granularity that keeps every window edge exact, with board and rollup tallies
 * kept incrementally so that a read is O(1), and the remembered event ids.
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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINUTE_MS    60000LL
#define LEVELS       5 /* bucketed levels, one per finite window */
#define LEVEL_OLD    5 /* events older than the 365d edge: tallies only */
#define NCLASS       39
#define CLASS_MED    36 /* classes 0..35 are category x resolution, 36..38 the outcomes */
#define KEY_OFFSET   (1LL << 31)
#define COUNT_BITS   26
#define COUNT_MAX    ((1u << COUNT_BITS) - 1)
#define QUANTA       65536 /* arrival quanta in the ring; a u16 names one */
#define QUANTA_SPAN  65000 /* quanta in one horizon, so live quanta never wrap the ring */
#define TALLY_FIELDS (sizeof(keng_tally_t) / sizeof(uint64_t))
#define TIME_LIMIT   (1LL << 60) /* clocks and times are clamped to +-this, against overflow */

#define FORMAT_MAGIC   "KNGB"
#define FORMAT_VERSION 3 /* 1: both kinds, one id section; 2: no last event; both still read */

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

static const int64_t granularity_min[LEVELS] = {1, 24, 168, 672, 8736};

/* One level's buckets: entries (key << 32 | class << 26 | count), sorted, where key is the
 * bucket's start in minutes since the epoch plus 2^31. A (key, class) whose count would pass
 * COUNT_MAX continues in a second entry; the one that is not full always sorts first. */
typedef struct level {
    uint64_t *e;
    uint32_t n, cap;
} level_t;

/* A board's remembered ids: h[0..n_main) sorted, h[n_main..n_main+n_tail) sorted, q the
 * arrival quantum of each (modulo QUANTA). */
typedef struct idset {
    uint64_t *h;
    uint16_t *q;
    uint32_t n_main, n_tail, cap;
    int64_t oldest_q; /* INT64_MAX when empty */
} idset_t;

/* The state of one unit, a (board, kind) pair: a board's incidents and its mediations come
 * from two topics whose partitions two instances may own, so each is saved, loaded and
 * cleared on its own. Unit u is board u / 2, kind u % 2. */
typedef struct board {
    level_t lvl[LEVELS];
    idset_t ids;
    uint32_t active_pos; /* where it is in keng_counts.active */
    int64_t last_seen;   /* latest report time of its counted events; INT64_MIN: none known */
} board_t;

/* A board's tallies per level, shared by its units: a unit's are its kind's fields. */
typedef keng_tally_t board_lt_t[LEVELS + 1];

struct keng_counts {
    const keng_registry_t *reg;
    keng_counts_options_t opt;
    uint32_t nboards, ncommunes, ndistricts;
    uint32_t nunits; /* nboards * KENG_KIND_COUNT */
    uint32_t *board_commune, *board_district;
    board_t **boards;      /* per unit (board * 2 + kind); NULL until the unit's first event */
    board_lt_t **board_lt; /* per board; NULL while neither of its units has state */
    uint32_t *active;      /* the units that have state */
    uint32_t nactive;
    uint8_t *dirty; /* one bit per unit */
    keng_tally_t (*commune_lt)[LEVELS + 1];
    keng_tally_t (*district_lt)[LEVELS + 1];
    keng_tally_t province_lt[LEVELS + 1];

    bool have_now;
    int64_t now;
    int64_t next_minute_ms;    /* window starts move only when the clock reaches this */
    int64_t start_min[LEVELS]; /* start of each finite window, minutes since the epoch */

    int64_t quantum_ms;
    int64_t q_now, q_floor; /* ids of quanta below q_floor are forgotten */
    uint32_t *qcount;       /* ids remembered per quantum, QUANTA entries */
    size_t dedup_total;
    uint64_t *scratch_h; /* merge buffers shared by every board */
    uint16_t *scratch_q;
    size_t scratch_cap;

    uint64_t events;
    int64_t watch_start; /* when this deployment began watching its boards; INT64_MAX: unknown */
    size_t mem; /* bytes of the allocations below the struct, for keng_counts_memory_bytes */
};

/* ---- small helpers ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t clamp_time(int64_t t)
{
    return t < -TIME_LIMIT ? -TIME_LIMIT : t > TIME_LIMIT ? TIME_LIMIT : t;
}

static uint64_t entry_make(uint32_t key, unsigned cls, uint32_t count)
{
    return (uint64_t)key << 32 | (uint64_t)cls << COUNT_BITS | count;
}

static uint32_t entry_key(uint64_t e)
{
    return (uint32_t)(e >> 32);
}

static unsigned entry_class(uint64_t e)
{
    return (unsigned)(e >> COUNT_BITS) & 63u;
}

static uint32_t entry_count(uint64_t e)
{
    return (uint32_t)(e & COUNT_MAX);
}

static void tally_add_class(keng_tally_t *t, unsigned cls, uint64_t n)
{
    if (cls < CLASS_MED) {
        t->incidents += n;
        t->by_category[cls / KENG_RES_COUNT] += n;
        t->by_resolution[cls % KENG_RES_COUNT] += n;
    } else {
        t->mediations += n;
        t->by_outcome[cls - CLASS_MED] += n;
    }
}

static void tally_add(keng_tally_t *t, const keng_tally_t *d)
{
    uint64_t *a = (uint64_t *)t;
    const uint64_t *b = (const uint64_t *)d;
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        a[i] += b[i];
}

static void tally_sub(keng_tally_t *t, const keng_tally_t *d)
{
    uint64_t *a = (uint64_t *)t;
    const uint64_t *b = (const uint64_t *)d;
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        a[i] -= b[i];
}

/* Zeroes the fields of t that belong to the other kind. */
static void tally_keep_kind(keng_tally_t *t, unsigned kind)
{
    if (kind == KENG_KIND_INCIDENT) {
        t->mediations = 0;
        memset(t->by_outcome, 0, sizeof(t->by_outcome));
    } else {
        t->incidents = 0;
        memset(t->by_category, 0, sizeof(t->by_category));
        memset(t->by_resolution, 0, sizeof(t->by_resolution));
    }
}

static void set_dirty(keng_counts_t *c, uint32_t bi, bool on)
{
    if (on)
        c->dirty[bi / 8] |= (uint8_t)(1u << (bi % 8));
    else
        c->dirty[bi / 8] &= (uint8_t) ~(1u << (bi % 8));
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

/* ---- the event-id hash ---- */

static uint64_t load64le(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* The 64x64->128-bit product folded to 64 bits: state and data combine non-linearly, so
 * that no fixed difference between two ids' words cancels out. */
static uint64_t mulfold(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

#define HASH_P0 0xa0761d6478bd642fULL /* has bytes no event id can hold: a word never zeroes */
#define HASH_P1 0xe7037ed1a0b428dbULL

/* Stable by definition: it is part of the board state format. Words are read little-endian
 * whatever the host. */
uint64_t keng_counts_id_hash(keng_kind_t kind, const char *id, size_t len)
{
    const unsigned char *p = (const unsigned char *)id;
    uint64_t h = mulfold(((uint64_t)kind + 1) ^ HASH_P0, (uint64_t)len ^ HASH_P1);

    for (; len >= 8; p += 8, len -= 8)
        h = mulfold(load64le(p) ^ HASH_P0, h ^ HASH_P1);
    if (len > 0) {
        uint64_t w = 0;
        for (size_t i = 0; i < len; i++)
            w |= (uint64_t)p[i] << (8 * i);
        h = mulfold(w ^ HASH_P0, h ^ HASH_P1);
    }
    return fmix64(h);
}

/* ---- levels ---- */

static uint32_t lower_bound64(const uint64_t *a, uint32_t n, uint64_t v)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Adds count events of cls to the bucket key. The caller has made room for one more entry
 * (level_reserve), which is all this can need. */
static void level_add(level_t *lv, uint32_t key, unsigned cls, uint32_t count)
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

static int level_reserve(keng_counts_t *c, level_t *lv, size_t more)
{
    return grow(c, (void **)&lv->e, &lv->cap, (size_t)lv->n + more, sizeof(uint64_t));
}

/* The level an event of minute m belongs to now, or LEVEL_OLD; *key is its bucket there. */
static int level_of(const keng_counts_t *c, int64_t m, uint32_t *key)
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
static void nodes_of(keng_counts_t *c, board_t *b, uint32_t u, keng_tally_t *nodes[4])
{
    uint32_t bi = u / KENG_KIND_COUNT;

    (void)b;
    nodes[0] = *c->board_lt[bi];
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
    if (k + 1 < LEVELS && level_reserve(c, &b->lvl[k + 1], p) < 0)
        out_of_memory();
    for (uint32_t i = 0; i < p; i++) {
        uint64_t e = lv->e[i];
        tally_add_class(&d, entry_class(e), entry_count(e));
        if (k + 1 < LEVELS) {
            int64_t g = granularity_min[k + 1];
            int64_t m = (int64_t)entry_key(e) - KEY_OFFSET;
            int64_t nk = floor_div(m, g) * g + KEY_OFFSET;
            /* Only a clock before year -2000 could floor a bucket below the key range. */
            level_add(&b->lvl[k + 1], nk < 0 ? 0 : (uint32_t)nk, entry_class(e), entry_count(e));
        }
    }
    memmove(lv->e, lv->e + p, (size_t)(lv->n - p) * sizeof(uint64_t));
    lv->n -= p;
    nodes_of(c, b, u, nodes);
    for (int i = 0; i < 4; i++) {
        tally_sub(&nodes[i][k], &d);
        tally_add(&nodes[i][k + 1], &d);
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

/* ---- remembered ids ---- */

/* lower_bound64 for uniformly spread values (the id hashes): start where v would be if
 * they were evenly spaced, then gallop. A board's ids are found in a cache line or two
 * instead of log2(n) scattered ones. */
static uint32_t lower_bound_uniform(const uint64_t *a, uint32_t n, uint64_t v)
{
    uint32_t g, lo, hi, step = 1;

    if (n < 16)
        return lower_bound64(a, n, v);
    g = (uint32_t)(((unsigned __int128)v * n) >> 64);
    if (a[g] < v) {
        lo = hi = g + 1;
        while (hi < n && a[hi] < v) {
            lo = hi + 1;
            hi = lo + step;
            step <<= 1;
        }
        if (hi > n)
            hi = n;
    } else {
        lo = hi = g;
        while (lo > 0 && a[lo - 1] >= v) {
            hi = lo - 1;
            lo = hi > step ? hi - step : 0;
            step <<= 1;
        }
    }
    return lo + lower_bound64(a + lo, hi - lo, v);
}

static bool sorted_contains(const uint64_t *a, uint32_t n, uint64_t v)
{
    uint32_t at = lower_bound_uniform(a, n, v);
    return at < n && a[at] == v;
}

static bool idset_contains(const idset_t *s, uint64_t h)
{
    return sorted_contains(s->h, s->n_main, h) || sorted_contains(s->h + s->n_main, s->n_tail, h);
}

static int idset_reserve(keng_counts_t *c, idset_t *s, size_t more)
{
    size_t need = (size_t)s->n_main + s->n_tail + more, ncap;
    uint64_t *h;
    uint16_t *q;

    if (need <= s->cap)
        return 0;
    if (need > UINT32_MAX)
        return -1;
    ncap = s->cap < 4 ? 4 : (size_t)s->cap + s->cap / 4;
    if (ncap < need)
        ncap = need;
    if (ncap > UINT32_MAX)
        ncap = UINT32_MAX;
    h = realloc(s->h, ncap * sizeof(*h));
    if (!h)
        return -1;
    s->h = h; /* larger than cap says until q grows too, which is harmless */
    q = realloc(s->q, ncap * sizeof(*q));
    if (!q)
        return -1;
    s->q = q;
    c->mem += (ncap - s->cap) * (sizeof(*h) + sizeof(*q));
    s->cap = (uint32_t)ncap;
    return 0;
}

static int scratch_reserve(keng_counts_t *c, size_t need)
{
    uint64_t *h;
    uint16_t *q;

    if (need <= c->scratch_cap)
        return 0;
    need += need / 2;
    h = realloc(c->scratch_h, need * sizeof(*h));
    if (!h)
        return -1;
    c->scratch_h = h;
    q = realloc(c->scratch_q, need * sizeof(*q));
    if (!q)
        return -1;
    c->scratch_q = q;
    c->mem += (need - c->scratch_cap) * (sizeof(*h) + sizeof(*q));
    c->scratch_cap = need;
    return 0;
}

/* The tail is kept near sqrt(2n) long: inserting shifts about half of it, merging shifts all
 * n, so both cost about sqrt(n/2) moves an id. */
static uint32_t tail_limit(uint32_t n_main)
{
    uint32_t lim = (uint32_t)sqrt(2.0 * n_main);
    return lim < 16 ? 16 : lim;
}

static void idset_merge(keng_counts_t *c, idset_t *s)
{
    int64_t i = (int64_t)s->n_main - 1, j = (int64_t)s->n_tail - 1;
    int64_t w = (int64_t)s->n_main + s->n_tail - 1;

    memcpy(c->scratch_h, s->h + s->n_main, (size_t)s->n_tail * sizeof(uint64_t));
    memcpy(c->scratch_q, s->q + s->n_main, (size_t)s->n_tail * sizeof(uint16_t));
    while (j >= 0) {
        if (i >= 0 && s->h[i] > c->scratch_h[j]) {
            s->h[w] = s->h[i];
            s->q[w] = s->q[i];
            i--;
        } else {
            s->h[w] = c->scratch_h[j];
            s->q[w] = c->scratch_q[j];
            j--;
        }
        w--;
    }
    s->n_main += s->n_tail;
    s->n_tail = 0;
}

/* Inserts h (not present) with the current quantum. Room for one more id and a merge's
 * scratch were reserved by the caller. */
static void idset_insert(keng_counts_t *c, idset_t *s, uint64_t h)
{
    uint64_t *tail = s->h + s->n_main;
    uint16_t *tq = s->q + s->n_main;
    uint32_t at = lower_bound_uniform(tail, s->n_tail, h);

    memmove(tail + at + 1, tail + at, (size_t)(s->n_tail - at) * sizeof(uint64_t));
    memmove(tq + at + 1, tq + at, (size_t)(s->n_tail - at) * sizeof(uint16_t));
    tail[at] = h;
    tq[at] = (uint16_t)c->q_now;
    s->n_tail++;
    if (c->q_now < s->oldest_q)
        s->oldest_q = c->q_now;
    c->qcount[c->q_now & (QUANTA - 1)]++;
    c->dedup_total++;
    if (s->n_tail > tail_limit(s->n_main))
        idset_merge(c, s);
}

static int64_t quantum_abs(const keng_counts_t *c, uint16_t q)
{
    return c->q_now - (uint16_t)((uint16_t)c->q_now - q);
}

/* Drops the ids of quanta below floor, keeping the order. */
static void idset_sweep(keng_counts_t *c, idset_t *s, int64_t floor)
{
    uint32_t w = 0, n = s->n_main + s->n_tail, new_main = 0;
    int64_t oldest = INT64_MAX;

    for (uint32_t i = 0; i < n; i++) {
        int64_t q;
        if (i == s->n_main)
            new_main = w;
        q = quantum_abs(c, s->q[i]);
        if (q < floor) {
            c->qcount[s->q[i] & (QUANTA - 1)]--;
            c->dedup_total--;
            continue;
        }
        if (q < oldest)
            oldest = q;
        s->h[w] = s->h[i];
        s->q[w] = s->q[i];
        w++;
    }
    if (s->n_main == n)
        new_main = w;
    s->n_main = new_main;
    s->n_tail = w - new_main;
    s->oldest_q = oldest;
}

/* Forgets every id of a quantum below floor (floor may be q_now + 1: forget everything). */
static void dedup_forget_below(keng_counts_t *c, int64_t floor)
{
    if (floor <= c->q_floor)
        return;
    for (uint32_t i = 0; i < c->nactive; i++) {
        board_t *b = c->boards[c->active[i]];
        if (b->ids.oldest_q < floor)
            idset_sweep(c, &b->ids, floor);
    }
    c->q_floor = floor > c->q_now ? c->q_now : floor;
}

/* Keeps the remembered ids within dedup_max_entries by forgetting the oldest quanta; it
 * forgets down to 15/16 of the bound so that the sweep is paid once per many adds. */
static void dedup_enforce_bound(keng_counts_t *c)
{
    size_t max = c->opt.dedup_max_entries, target = max - max / 16, left = c->dedup_total;
    int64_t f = c->q_floor;

    if (c->dedup_total <= max)
        return;
    while (left > target && f <= c->q_now) {
        left -= c->qcount[f & (QUANTA - 1)];
        f++;
    }
    dedup_forget_below(c, f);
}

/* ---- the clock ---- */

static void advance_to(keng_counts_t *c, int64_t now)
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
    dedup_forget_below(c, floor);
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
    return b;
}

/* Forgets the unit entirely: its tallies leave the rollups, its ids the dedup counts. */
static void board_drop(keng_counts_t *c, uint32_t u)
{
    board_t *b = c->boards[u];
    keng_tally_t *nodes[4];

    if (!b)
        return;
    nodes_of(c, b, u, nodes);
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
    c->nunits = c->nboards * KENG_KIND_COUNT;
    c->boards = calloc(c->nunits + 1, sizeof(board_t *));
    c->board_lt = calloc(c->nboards + 1, sizeof(board_lt_t *));
    c->active = calloc(c->nunits + 1, sizeof(uint32_t));
    c->dirty = calloc(c->nunits / 8 + 1, 1);
    c->commune_lt = calloc(c->ncommunes + 1, sizeof(*c->commune_lt));
    c->district_lt = calloc(c->ndistricts + 1, sizeof(*c->district_lt));
    c->qcount = calloc(QUANTA, sizeof(uint32_t));
    if (!c->board_commune || !c->board_district || !c->boards || !c->board_lt || !c->active ||
        !c->dirty || !c->commune_lt || !c->district_lt || !c->qcount)
        goto out;
    for (uint32_t i = 0; i < c->nboards; i++) {
        const keng_board_t *b = keng_registry_board(reg, i);
        if (b->commune >= c->ncommunes || b->district >= c->ndistricts)
            goto out;
        c->board_commune[i] = b->commune;
        c->board_district[i] = b->district;
    }
    c->mem = (size_t)(c->nboards + 1) * (2 * sizeof(uint32_t) + sizeof(board_lt_t *)) +
             (size_t)(c->nunits + 1) * (sizeof(board_t *) + sizeof(uint32_t)) + c->nunits / 8 + 1 +
             (size_t)(c->ncommunes + c->ndistricts + 2) * sizeof(*c->commune_lt) +
             QUANTA * sizeof(uint32_t);
    ret = c;
    c = NULL;
out:
    keng_counts_destroy(c);
    return ret;
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
    for (uint32_t i = 0; c->board_lt && i < c->nboards; i++)
        free(c->board_lt[i]);
    free(c->board_lt);
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

    if (cls < 0 || board_index >= c->nboards)
        return -1;
    u = board_index * KENG_KIND_COUNT + (uint32_t)ev->kind;
    m = floor_div(clamp_time(ev->occurred_at), MINUTE_MS);
    if (m + KEY_OFFSET > UINT32_MAX)
        return -1;
    advance_to(c, now_ms);
    /* Each add touches a few cache lines scattered over ~45 MB; ask for the ones that do not
     * depend on the id's hash now, so that their misses overlap the hashing and the search
     * of the remembered ids instead of following them one by one. */
    k = level_of(c, m, &key);
    b = c->boards[u];
    if (b) {
        keng_tally_t *bt = &(*c->board_lt[board_index])[k];
        keng_tally_t *ct = &c->commune_lt[c->board_commune[board_index]][k];
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
    if (remember && b && idset_contains(&b->ids, h))
        return KENG_COUNTS_DUPLICATE;
    b = board_get_or_new(c, u);
    if (!b)
        return -1;
    if (k < LEVELS && level_reserve(c, &b->lvl[k], 1) < 0)
        return -1;
    if (remember && (idset_reserve(c, &b->ids, 1) < 0 ||
                     scratch_reserve(c, (size_t)tail_limit(b->ids.n_main) + 1) < 0))
        return -1;
    if (k < LEVELS)
        level_add(&b->lvl[k], key, (unsigned)cls, 1);
    nodes_of(c, b, u, nodes);
    for (int i = 0; i < 4; i++)
        tally_add_class(&nodes[i][k], (unsigned)cls, 1);
    if (remember) {
        idset_insert(c, &b->ids, h);
        dedup_enforce_bound(c);
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
    advance_to(c, now_ms);
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
        /* A board is the sum of its units; their classes never overlap. */
        if (index < c->nboards && c->board_lt[index])
            lt = *c->board_lt[index];
        break;
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
        tally_add(out, &lt[k]);
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

    return board_index < c->nboards && (unsigned)kind < KENG_KIND_COUNT &&
           (c->dirty[u / 8] >> (u % 8)) & 1u;
}

void keng_counts_unit_set_dirty(keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                                bool dirty)
{
    if (board_index < c->nboards && (unsigned)kind < KENG_KIND_COUNT)
        set_dirty(c, board_index * KENG_KIND_COUNT + (uint32_t)kind, dirty);
}

bool keng_counts_unit_has_state(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind)
{
    return board_index < c->nboards && (unsigned)kind < KENG_KIND_COUNT &&
           c->boards[board_index * KENG_KIND_COUNT + (uint32_t)kind] != NULL;
}

void keng_counts_unit_clear(keng_counts_t *c, uint32_t board_index, keng_kind_t kind)
{
    uint32_t u = board_index * KENG_KIND_COUNT + (uint32_t)kind;

    if (board_index >= c->nboards || (unsigned)kind >= KENG_KIND_COUNT)
        return;
    if (c->boards[u])
        set_dirty(c, u, true);
    board_drop(c, u);
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

/* ---- the state format ----
 *
 * One format for a unit (one kind of a board) and for a whole board (both kinds).
 * Little-endian throughout:
 *   "KNGB", u16 version (2), u16 kinds (bit k set: kind k is in the state),
 *   u8 board id length, the board id,
 *   i64 clock of the save (ms),
 *   u8 tally fields (20), then 20 x u64: the tally of events older than the 365d edge in
 *     keng_tally_t order (incidents, by_category[12], by_resolution[3], mediations,
 *     by_outcome[3]),
 *   u32 bucket count, then each bucket: u8 level (0..4), u8 class (0..35 category * 3 +
 *     resolution, 36..38 outcome), u32 start (minutes since the epoch + 2^31, a multiple of
 *     the level's granularity), u32 count (1..2^26-1),
 *   for each kind in the state, in kind order: u32 id group count, then each group: i64
 *     arrival (ms; the latest arrival of its ids), u32 ids, ids x u64 keng_counts_id_hash,
 *   (version 3) for each kind in the state, in kind order: i64 last event (the latest
 *     reported_at of its counted events, capped at the clock; INT64_MIN: none), then i64 the
 *     saver's watch start (INT64_MAX: unknown),
 *   u32 FNV-1a 32 of every byte before it.
 * Version 1 (kinds 0) held both kinds with one id section; its ids are remembered for both.
 * Versions 1 and 2 have no last event: a load takes the end of the unit's newest bucket
 * (capped at the save's clock), which is never earlier than the real last event's occurred_at
 * rounded down to its bucket, so an upgrade makes no board look silent that was not. */

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    bool failed;
} wbuf_t;

static void put(wbuf_t *w, const void *src, size_t n)
{
    if (w->failed)
        return;
    if (w->len + n > w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 256;
        unsigned char *np;
        while (ncap < w->len + n)
            ncap *= 2;
        np = realloc(w->p, ncap);
        if (!np) {
            w->failed = true;
            return;
        }
        w->p = np;
        w->cap = ncap;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void put_le(wbuf_t *w, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, (size_t)bytes);
}

static uint32_t fnv1a32(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

typedef struct qid {
    uint64_t h;
    int64_t q;
} qid_t;

static int qid_by_q(const void *a, const void *b)
{
    const qid_t *x = a, *y = b;
    if (x->q != y->q)
        return x->q < y->q ? -1 : 1;
    return x->h < y->h ? -1 : x->h > y->h;
}

/* Writes one id section: the unit's ids grouped by arrival quantum. */
static int put_ids(const keng_counts_t *c, wbuf_t *w, const board_t *b)
{
    uint32_t nids = b ? b->ids.n_main + b->ids.n_tail : 0, groups = 0;
    qid_t *ids = NULL;

    if (nids > 0) {
        ids = malloc((size_t)nids * sizeof(*ids));
        if (!ids)
            return -1;
        for (uint32_t i = 0; i < nids; i++) {
            ids[i].h = b->ids.h[i];
            ids[i].q = quantum_abs(c, b->ids.q[i]);
        }
        qsort(ids, nids, sizeof(*ids), qid_by_q);
    }
    for (uint32_t i = 0; i < nids; i++)
        groups += i == 0 || ids[i].q != ids[i - 1].q;
    put_le(w, groups, 4);
    for (uint32_t i = 0; i < nids;) {
        uint32_t j = i;
        while (j < nids && ids[j].q == ids[i].q)
            j++;
        put_le(w, (uint64_t)((ids[i].q + 1) * c->quantum_ms - 1), 8);
        put_le(w, j - i, 4);
        for (uint32_t x = i; x < j; x++)
            put_le(w, ids[x].h, 8);
        i = j;
    }
    free(ids);
    return 0;
}

/* Saves the units of board_index whose kind bit is in kinds. */
static int save_units(const keng_counts_t *c, uint32_t board_index, unsigned kinds,
                      unsigned char **buf, size_t *len)
{
    wbuf_t w = {*buf, *len, *len, false};
    size_t start = *len;
    const board_t *units[KENG_KIND_COUNT] = {NULL};
    keng_tally_t old;
    const char *id;
    uint32_t nbuckets = 0;
    int ret = -1;

    if (board_index >= c->nboards)
        goto out;
    memset(&old, 0, sizeof(old));
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        if (kinds & (1u << kind))
            units[kind] = c->boards[board_index * KENG_KIND_COUNT + kind];
        if (units[kind]) {
            keng_tally_t mine = (*c->board_lt[board_index])[LEVEL_OLD];
            tally_keep_kind(&mine, kind);
            tally_add(&old, &mine);
            for (int k = 0; k < LEVELS; k++)
                nbuckets += units[kind]->lvl[k].n;
        }
    }
    id = keng_registry_board(c->reg, board_index)->id;
    put(&w, FORMAT_MAGIC, 4);
    put_le(&w, (uint64_t)c->opt.state_version, 2);
    put_le(&w, kinds, 2);
    put_le(&w, strlen(id) > 255 ? 255 : strlen(id), 1);
    put(&w, id, strlen(id) > 255 ? 255 : strlen(id));
    put_le(&w, (uint64_t)(c->have_now ? c->now : 0), 8);
    put_le(&w, TALLY_FIELDS, 1);
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        put_le(&w, ((const uint64_t *)&old)[i], 8);
    put_le(&w, nbuckets, 4);
    for (int k = 0; k < LEVELS; k++) {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
            const board_t *b = units[kind];
            for (uint32_t i = 0; b && i < b->lvl[k].n; i++) {
                uint64_t e = b->lvl[k].e[i];
                put_le(&w, (uint64_t)k, 1);
                put_le(&w, entry_class(e), 1);
                put_le(&w, entry_key(e), 4);
                put_le(&w, entry_count(e), 4);
            }
        }
    }
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++)
        if ((kinds & (1u << kind)) && put_ids(c, &w, units[kind]) != 0)
            goto out;
    if (c->opt.state_version >= 3) {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++)
            if (kinds & (1u << kind))
                put_le(&w, (uint64_t)(units[kind] ? units[kind]->last_seen : INT64_MIN), 8);
        put_le(&w, (uint64_t)c->watch_start, 8);
    }
    if (!w.failed)
        put_le(&w, fnv1a32(w.p + start, w.len - start), 4);
    if (w.failed)
        goto out;
    ret = 0;
out:
    if (ret == 0) {
        *buf = w.p;
        *len = w.len;
    } else if (w.p != *buf) {
        /* realloc moved the caller's bytes into w.p; hand them back unchanged in length. */
        *buf = w.p;
    }
    return ret;
}

int keng_counts_board_save(const keng_counts_t *c, uint32_t board_index, unsigned char **buf,
                           size_t *len)
{
    return save_units(c, board_index, (1u << KENG_KIND_COUNT) - 1, buf, len);
}

int keng_counts_unit_save(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                          unsigned char **buf, size_t *len)
{
    if ((unsigned)kind >= KENG_KIND_COUNT)
        return -1;
    return save_units(c, board_index, 1u << kind, buf, len);
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
} rbuf_t;

static bool get_le(rbuf_t *r, int bytes, uint64_t *v)
{
    if (r->len - r->pos < (size_t)bytes)
        return false;
    *v = 0;
    for (int i = 0; i < bytes; i++)
        *v |= (uint64_t)r->p[r->pos + (size_t)i] << (8 * i);
    r->pos += (size_t)bytes;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int qid_by_h(const void *a, const void *b)
{
    const qid_t *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->q > y->q ? -1 : x->q < y->q; /* newest first, so it is the one kept */
}

#define LOAD_FAIL(...)                                                                             \
    do {                                                                                           \
        snprintf(errstr, errstr_size, __VA_ARGS__);                                                \
        goto out;                                                                                  \
    } while (0)

/* What a load builds for one unit before anything is replaced. */
typedef struct pending {
    board_t *nb;
    keng_tally_t lt[LEVELS + 1];
    uint64_t *ent[LEVELS];
    uint32_t nent[LEVELS];
    qid_t *ids;
    size_t nids;
} pending_t;

static void pending_free(keng_counts_t *c, pending_t *p)
{
    if (p->nb) {
        for (int k = 0; k < LEVELS; k++) {
            c->mem -= (size_t)p->nb->lvl[k].cap * sizeof(uint64_t);
            free(p->nb->lvl[k].e);
        }
        c->mem -= (size_t)p->nb->ids.cap * (sizeof(uint64_t) + sizeof(uint16_t));
        free(p->nb->ids.h);
        free(p->nb->ids.q);
        free(p->nb);
    }
    for (int k = 0; k < LEVELS; k++)
        free(p->ent[k]);
    free(p->ids);
}

/* Reads one id section into every pending unit whose bit is in into. */
static int read_ids(keng_counts_t *c, rbuf_t *r, pending_t *pend, unsigned into, char *errstr,
                    size_t errstr_size)
{
    uint64_t ngroups, v = 0;
    int ret = -1;

    if (!get_le(r, 4, &ngroups) || ngroups > (r->len - r->pos) / 12)
        LOAD_FAIL("board state: id group count runs past the end");
    for (uint64_t g = 0; g < ngroups; g++) {
        uint64_t arrival = 0, n = 0;
        int64_t q;
        if (!get_le(r, 8, &arrival) || !get_le(r, 4, &n) || n > (r->len - r->pos) / 8)
            LOAD_FAIL("board state: id group %llu runs past the end", (unsigned long long)g);
        q = floor_div(clamp_time((int64_t)arrival), c->quantum_ms);
        if (q > c->q_now)
            q = c->q_now;
        for (uint64_t i = 0; i < n; i++) {
            get_le(r, 8, &v);
            if (q < c->q_floor || c->opt.dedup_max_entries == 0)
                continue; /* expired already, or dedup is off */
            for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
                pending_t *p = &pend[kind];
                if (!(into & (1u << kind)))
                    continue;
                p->ids[p->nids].h = v;
                p->ids[p->nids].q = q;
                p->nids++;
            }
        }
    }
    ret = 0;
out:
    return ret;
}

/* Loads the units of board_index whose kind is in want from a saved state, which must hold
 * every one of them; with replace_all, the board's other units are cleared too. Nothing
 * changes unless the whole state is valid. */
static int load_units(keng_counts_t *c, uint32_t board_index, unsigned want, bool replace_all,
                      const unsigned char *buf, size_t len, int64_t now_ms, char *errstr,
                      size_t errstr_size)
{
    rbuf_t r = {buf, len, 0};
    uint64_t v, nbuckets, version = 0, kinds, old[TALLY_FIELDS], saved_at = 0;
    int64_t last_seen[KENG_KIND_COUNT] = {INT64_MIN, INT64_MIN}, watch_start = INT64_MAX;
    pending_t pend[KENG_KIND_COUNT];
    board_lt_t *spare = NULL;
    const char *want_id;
    char got[256];
    keng_tally_t *nodes[4];
    int ret = -1;

    memset(pend, 0, sizeof(pend));
    if (board_index >= c->nboards)
        LOAD_FAIL("board index %u is outside the registry (%u boards)", board_index, c->nboards);
    if (!buf || len < 4 + 2 + 2 + 1 + 8 + 1 + 4)
        LOAD_FAIL("board state: %zu bytes is too short to be a saved state", len);
    if (memcmp(buf, FORMAT_MAGIC, 4) != 0)
        LOAD_FAIL("board state: not a keng board state (bad magic bytes)");
    r.pos = 4;
    get_le(&r, 2, &version);
    if (version < 1 || version > FORMAT_VERSION)
        LOAD_FAIL("board state: format version %u is not supported (this keng reads 1 to %d)",
                  (unsigned)version, FORMAT_VERSION);
    if (fnv1a32(buf, len - 4) != ((uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 |
                                  (uint32_t)buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24))
        LOAD_FAIL("board state: checksum mismatch, the saved bytes are corrupted");
    r.len = len - 4;
    get_le(&r, 2, &kinds);
    if (version == 1)
        kinds = (1u << KENG_KIND_COUNT) - 1;
    else if (kinds == 0 || kinds >= (1u << KENG_KIND_COUNT))
        LOAD_FAIL("board state: kind set %u is not valid", (unsigned)kinds);
    if ((want & kinds) != want)
        LOAD_FAIL("board state holds %s, not the %s asked for",
                  kinds == 1   ? "incidents only"
                  : kinds == 2 ? "mediations only"
                               : "both kinds",
                  want == 1   ? "incidents"
                  : want == 2 ? "mediations"
                              : "both kinds");
    if (!get_le(&r, 1, &v) || r.len - r.pos < v)
        LOAD_FAIL("board state: the board id runs past the end");
    memcpy(got, buf + r.pos, v);
    got[v] = '\0';
    r.pos += v;
    want_id = keng_registry_board(c->reg, board_index)->id;
    if (strcmp(got, want_id) != 0)
        LOAD_FAIL("board state is for board '%s', not '%s': was the registry changed?", got,
                  want_id);
    if (!get_le(&r, 8, &saved_at) || !get_le(&r, 1, &v))
        LOAD_FAIL("board state: truncated header");
    if (v != TALLY_FIELDS)
        LOAD_FAIL("board state: %u tally fields, expected %zu", (unsigned)v, TALLY_FIELDS);
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        if (!get_le(&r, 8, &old[i]))
            LOAD_FAIL("board state: truncated tally");
    {
        keng_tally_t t;
        uint64_t cats = 0, res = 0, outs = 0;
        memcpy(&t, old, sizeof(t));
        for (int i = 0; i < KENG_CAT_COUNT; i++)
            cats += t.by_category[i];
        for (int i = 0; i < KENG_RES_COUNT; i++)
            res += t.by_resolution[i];
        for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
            outs += t.by_outcome[i];
        if (cats != t.incidents || res != t.incidents || outs != t.mediations ||
            t.incidents > (UINT64_MAX >> 8) || t.mediations > (UINT64_MAX >> 8) ||
            (!(kinds & (1u << KENG_KIND_INCIDENT)) && t.incidents) ||
            (!(kinds & (1u << KENG_KIND_MEDIATION)) && t.mediations))
            LOAD_FAIL("board state: the old-events tally does not add up");
    }

    advance_to(c, now_ms);
    if (!get_le(&r, 4, &nbuckets) || nbuckets > (r.len - r.pos) / 10)
        LOAD_FAIL("board state: bucket count runs past the end");
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        pending_t *p = &pend[kind];
        if (!(want & (1u << kind)))
            continue;
        p->nb = calloc(1, sizeof(*p->nb));
        if (!p->nb)
            LOAD_FAIL("out of memory loading a board state");
        p->nb->ids.oldest_q = INT64_MAX;
        memcpy(&p->lt[LEVEL_OLD], old, sizeof(old));
        tally_keep_kind(&p->lt[LEVEL_OLD], kind);
        for (int k = 0; k < LEVELS; k++) {
            p->ent[k] = malloc((size_t)(nbuckets ? nbuckets : 1) * sizeof(uint64_t));
            if (!p->ent[k])
                LOAD_FAIL("out of memory loading a board state");
        }
        p->ids = malloc((r.len - r.pos) / 8 * sizeof(*p->ids) + sizeof(*p->ids));
        if (!p->ids)
            LOAD_FAIL("out of memory loading a board state");
    }
    for (uint64_t i = 0; i < nbuckets; i++) {
        uint64_t lvl = 0, cls = 0, key = 0, cnt = 0;
        int64_t m;
        uint32_t nk = 0;
        int k;
        pending_t *p;
        get_le(&r, 1, &lvl);
        get_le(&r, 1, &cls);
        get_le(&r, 4, &key);
        get_le(&r, 4, &cnt);
        m = (int64_t)key - KEY_OFFSET;
        if (lvl >= LEVELS || cls >= NCLASS || cnt == 0 || cnt > COUNT_MAX ||
            floor_div(m, granularity_min[lvl]) * granularity_min[lvl] != m ||
            !(kinds & (1u << (cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION))))
            LOAD_FAIL("board state: bucket %llu is malformed (level %u, class %u, count %u)",
                      (unsigned long long)i, (unsigned)lvl, (unsigned)cls, (unsigned)cnt);
        p = &pend[cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION];
        if (!p->nb)
            continue; /* the other kind's bucket: not asked for */
        if (version < 3) {
            int64_t end = (m + granularity_min[lvl]) * MINUTE_MS;
            int64_t *ls = &last_seen[cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION];
            if (end > (int64_t)saved_at)
                end = (int64_t)saved_at;
            if (end > *ls)
                *ls = end;
        }
        /* Re-level against this clock: the bucket start decides exactly, as at expiry. */
        k = level_of(c, m, &nk);
        if (k < (int)lvl)
            k = (int)lvl; /* it had left the finer windows already; starts never go back */
        if (k == (int)lvl)
            nk = (uint32_t)key;
        if (k >= LEVELS) {
            tally_add_class(&p->lt[LEVEL_OLD], (unsigned)cls, cnt);
            continue;
        }
        if (k > (int)lvl) {
            int64_t g = granularity_min[k];
            int64_t b = floor_div(m, g) * g + KEY_OFFSET;
            nk = b < 0 ? 0 : (uint32_t)b;
        }
        p->ent[k][p->nent[k]++] = entry_make(nk, (unsigned)cls, (uint32_t)cnt);
        tally_add_class(&p->lt[k], (unsigned)cls, cnt);
    }
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        pending_t *p = &pend[kind];
        for (int k = 0; p->nb && k < LEVELS; k++) {
            qsort(p->ent[k], p->nent[k], sizeof(uint64_t), cmp_u64);
            if (level_reserve(c, &p->nb->lvl[k], p->nent[k]) < 0)
                LOAD_FAIL("out of memory loading a board state");
            for (uint32_t i = 0; i < p->nent[k]; i++)
                level_add(&p->nb->lvl[k], entry_key(p->ent[k][i]), entry_class(p->ent[k][i]),
                          entry_count(p->ent[k][i]));
        }
    }

    if (version == 1) {
        if (read_ids(c, &r, pend, want, errstr, errstr_size) != 0)
            goto out;
    } else {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++)
            if ((kinds & (1u << kind)) &&
                read_ids(c, &r, pend, want & (1u << kind), errstr, errstr_size) != 0)
                goto out;
    }
    if (version >= 3) {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
            if (!(kinds & (1u << kind)))
                continue;
            if (!get_le(&r, 8, &v))
                LOAD_FAIL("board state: the last event times run past the end");
            last_seen[kind] = (int64_t)v;
        }
        if (!get_le(&r, 8, &v))
            LOAD_FAIL("board state: the watch start runs past the end");
        watch_start = (int64_t)v;
    }
    if (r.pos != r.len)
        LOAD_FAIL("board state: %zu unexpected bytes after the ids", r.len - r.pos);
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        pending_t *p = &pend[kind];
        size_t w = 0;
        if (!p->nb)
            continue;
        qsort(p->ids, p->nids, sizeof(*p->ids), qid_by_h);
        for (size_t i = 0; i < p->nids; i++)
            if (w == 0 || p->ids[i].h != p->ids[w - 1].h)
                p->ids[w++] = p->ids[i];
        p->nids = w;
        if (idset_reserve(c, &p->nb->ids, p->nids) < 0)
            LOAD_FAIL("out of memory loading a board state");
    }

    /* The board's tallies may have to be created below, where nothing may fail any more. */
    spare = calloc(1, sizeof(*spare));
    if (!spare)
        LOAD_FAIL("out of memory loading a board state");

    /* Everything is valid: replace the units. */
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        uint32_t u = board_index * KENG_KIND_COUNT + kind;
        pending_t *p = &pend[kind];
        board_t *nb = p->nb;

        if (!nb) {
            if (replace_all && c->boards[u]) {
                board_drop(c, u);
                set_dirty(c, u, false);
            }
            continue;
        }
        board_drop(c, u);
        if (!c->board_lt[board_index]) {
            c->board_lt[board_index] = spare;
            spare = NULL;
            c->mem += sizeof(board_lt_t);
        }
        nb->active_pos = c->nactive;
        c->active[c->nactive++] = u;
        c->boards[u] = nb;
        c->mem += sizeof(*nb);
        for (size_t i = 0; i < p->nids; i++) {
            nb->ids.h[i] = p->ids[i].h;
            nb->ids.q[i] = (uint16_t)p->ids[i].q;
            c->qcount[p->ids[i].q & (QUANTA - 1)]++;
            if (p->ids[i].q < nb->ids.oldest_q)
                nb->ids.oldest_q = p->ids[i].q;
        }
        nb->ids.n_main = (uint32_t)p->nids;
        nb->last_seen = last_seen[kind];
        c->dedup_total += p->nids;
        nodes_of(c, nb, u, nodes);
        for (int i = 0; i < 4; i++)
            for (int k = 0; k <= LEVELS; k++)
                tally_add(&nodes[i][k], &p->lt[k]);
        p->nb = NULL;
        set_dirty(c, u, false);
    }
    if (watch_start < c->watch_start)
        c->watch_start = watch_start;
    dedup_enforce_bound(c);
    ret = 0;
out:
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++)
        pending_free(c, &pend[kind]);
    free(spare);
    return ret;
}

int keng_counts_board_load(keng_counts_t *c, uint32_t board_index, const unsigned char *buf,
                           size_t len, int64_t now_ms, char *errstr, size_t errstr_size)
{
    uint64_t kinds = (1u << KENG_KIND_COUNT) - 1;

    /* A board state of one kind replaces the board too: the other kind becomes empty. */
    if (buf && len >= 8 && buf[4] >= 2 && buf[4] <= FORMAT_VERSION && buf[5] == 0 && buf[6] != 0 &&
        buf[6] < (1u << KENG_KIND_COUNT) && buf[7] == 0)
        kinds = buf[6];
    return load_units(c, board_index, (unsigned)kinds, true, buf, len, now_ms, errstr, errstr_size);
}

int keng_counts_unit_load(keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                          const unsigned char *buf, size_t len, int64_t now_ms, char *errstr,
                          size_t errstr_size)
{
    if ((unsigned)kind >= KENG_KIND_COUNT) {
        snprintf(errstr, errstr_size, "kind %d is not incident or mediation", (int)kind);
        return -1;
    }
    return load_units(c, board_index, 1u << kind, false, buf, len, now_ms, errstr, errstr_size);
}

/* ---- last events and series (silent boards and trends) ---- */

int64_t keng_counts_last_event(const keng_counts_t *c, uint32_t board_index)
{
    int64_t last = INT64_MIN;

    for (uint32_t kind = 0; board_index < c->nboards && kind < KENG_KIND_COUNT; kind++) {
        const board_t *b = c->boards[board_index * KENG_KIND_COUNT + kind];
        if (b && b->last_seen > last)
            last = b->last_seen;
    }
    return last;
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
        const board_t *b =
            index < c->nboards ? c->boards[index * KENG_KIND_COUNT + (uint32_t)kind] : NULL;
        if (b)
            series_unit(b, window, origin_ms, step_ms, out, npoints);
        return 0;
    }
    for (uint32_t i = 0; i < c->nactive; i++) {
        uint32_t u = c->active[i];
        if (u % KENG_KIND_COUNT == (uint32_t)kind && in_scope(c, u / KENG_KIND_COUNT, level, index))
            series_unit(c->boards[u], window, origin_ms, step_ms, out, npoints);
    }
    return 0;
}
