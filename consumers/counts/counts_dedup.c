/* The event-id memory of the rolling-count store: the id hash and each unit's set of
 * remembered ids with their arrival quanta, bounded by the horizon and dedup_max_entries;
 * it never counts events or touches tallies. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

bool keng_counts__idset_contains(const idset_t *s, uint64_t h)
{
    return sorted_contains(s->h, s->n_main, h) || sorted_contains(s->h + s->n_main, s->n_tail, h);
}

int keng_counts__idset_reserve(keng_counts_t *c, idset_t *s, size_t more)
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

int keng_counts__scratch_reserve(keng_counts_t *c, size_t need)
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
uint32_t keng_counts__tail_limit(uint32_t n_main)
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
void keng_counts__idset_insert(keng_counts_t *c, idset_t *s, uint64_t h)
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
    if (s->n_tail > keng_counts__tail_limit(s->n_main))
        idset_merge(c, s);
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
void keng_counts__dedup_forget_below(keng_counts_t *c, int64_t floor)
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
void keng_counts__dedup_enforce_bound(keng_counts_t *c)
{
    size_t max = c->opt.dedup_max_entries, target = max - max / 16, left = c->dedup_total;
    int64_t f = c->q_floor;

    if (c->dedup_total <= max)
        return;
    while (left > target && f <= c->q_now) {
        left -= c->qcount[f & (QUANTA - 1)];
        f++;
    }
    keng_counts__dedup_forget_below(c, f);
}
