/* What the rooms of the rolling-count store share (counts.c, counts_dedup.c, counts_codec.c):
 * the layout of its state and the helpers that touch it; never included outside them. */
#ifndef KENG_COUNTS_INTERNAL_H
#define KENG_COUNTS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "counts.h"

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
#define LANES_MAX    16          /* slots per board at most (counts.h, "Lanes") */

#define FORMAT_MAGIC   "KNGB"
#define FORMAT_VERSION 3 /* 1: both kinds, one id section; 2: no last event; both still read */

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
    uint32_t lanes, nslots; /* slots per board, and nboards * lanes (counts.h, "Lanes") */
    uint32_t nunits;        /* nslots * KENG_KIND_COUNT */
    uint32_t *board_commune, *board_district;
    board_t **boards;      /* per unit (slot * 2 + kind); NULL until the unit's first event */
    board_lt_t **board_lt; /* per slot; NULL while neither of its units has state */
    uint8_t *in_lanes;     /* per (board, kind): how many of its lanes have state */
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

/* The registry's board of a slot (counts.h, "Lanes"). */
static inline uint32_t slot_board(const keng_counts_t *c, uint32_t slot)
{
    return slot % c->nboards;
}

static inline int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static inline int64_t clamp_time(int64_t t)
{
    return t < -TIME_LIMIT ? -TIME_LIMIT : t > TIME_LIMIT ? TIME_LIMIT : t;
}

static inline uint64_t entry_make(uint32_t key, unsigned cls, uint32_t count)
{
    return (uint64_t)key << 32 | (uint64_t)cls << COUNT_BITS | count;
}

static inline uint32_t entry_key(uint64_t e)
{
    return (uint32_t)(e >> 32);
}

static inline unsigned entry_class(uint64_t e)
{
    return (unsigned)(e >> COUNT_BITS) & 63u;
}

static inline uint32_t entry_count(uint64_t e)
{
    return (uint32_t)(e & COUNT_MAX);
}

static inline void tally_add_class(keng_tally_t *t, unsigned cls, uint64_t n)
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

static inline void tally_sub(keng_tally_t *t, const keng_tally_t *d)
{
    uint64_t *a = (uint64_t *)t;
    const uint64_t *b = (const uint64_t *)d;
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        a[i] -= b[i];
}

/* Zeroes the fields of t that belong to the other kind. */
static inline void tally_keep_kind(keng_tally_t *t, unsigned kind)
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

static inline void set_dirty(keng_counts_t *c, uint32_t bi, bool on)
{
    if (on)
        c->dirty[bi / 8] |= (uint8_t)(1u << (bi % 8));
    else
        c->dirty[bi / 8] &= (uint8_t) ~(1u << (bi % 8));
}

/* ---- levels ---- */

static inline uint32_t lower_bound64(const uint64_t *a, uint32_t n, uint64_t v)
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

static inline int64_t quantum_abs(const keng_counts_t *c, uint16_t q)
{
    return c->q_now - (uint16_t)((uint16_t)c->q_now - q);
}

/* ---- levels and the clock (counts.c) ----
 * None of these returns memory: a unit's buckets and tallies stay owned by the store. */

/* Adds count events of cls to the bucket key; the caller reserved room for one more entry. */
void keng_counts__level_add(level_t *lv, uint32_t key, unsigned cls, uint32_t count);
/* Makes room for more entries in lv; 0, or -1 when memory runs out (lv unchanged). */
int keng_counts__level_reserve(keng_counts_t *c, level_t *lv, size_t more);
/* The level an event of minute m belongs to now, or LEVEL_OLD; *key is its bucket there. */
int keng_counts__level_of(const keng_counts_t *c, int64_t m, uint32_t *key);
/* Sets nodes to the four borrowed tallies (board, commune, district, province) of unit u. */
void keng_counts__nodes_of(keng_counts_t *c, board_t *b, uint32_t u, keng_tally_t *nodes[4]);
/* Moves the clock to now (never back): window starts, expiry and the dedup horizon. */
void keng_counts__advance_to(keng_counts_t *c, int64_t now);
/* Forgets unit u and frees what it owned: its tallies leave the rollups, its ids the counts. */
void keng_counts__board_drop(keng_counts_t *c, uint32_t u);
/* Counts unit u among its (board, kind)'s lanes with state (added) or no more. */
void keng_counts__lane_note(keng_counts_t *c, uint32_t u, bool added);

/* ---- remembered ids (counts_dedup.c) ----
 * A unit's idset owns its arrays; the merge scratch is the store's, shared by every unit. */

bool keng_counts__idset_contains(const idset_t *s, uint64_t h);
/* Grows s for more ids; 0, or -1 when memory runs out (s unchanged). */
int keng_counts__idset_reserve(keng_counts_t *c, idset_t *s, size_t more);
/* Grows the shared merge scratch to need ids; 0 or -1. */
int keng_counts__scratch_reserve(keng_counts_t *c, size_t need);
/* The tail length at which a set of n_main ids merges its tail. */
uint32_t keng_counts__tail_limit(uint32_t n_main);
/* Inserts h (not present) with the current quantum; room and scratch reserved by the caller. */
void keng_counts__idset_insert(keng_counts_t *c, idset_t *s, uint64_t h);
/* Forgets every id of a quantum below floor (q_now + 1: everything). */
void keng_counts__dedup_forget_below(keng_counts_t *c, int64_t floor);
/* Forgets the oldest quanta until the ids are within dedup_max_entries. */
void keng_counts__dedup_enforce_bound(keng_counts_t *c);

#endif
