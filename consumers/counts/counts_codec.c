/* The board state format of the rolling-count store (versions 1 to 3): saves units to bytes
 * and loads them back, replacing a unit only once its whole state is valid; it never decides
 * which boards to save or when. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

    if (board_index >= c->nslots)
        goto out;
    memset(&old, 0, sizeof(old));
    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        if (kinds & (1u << kind))
            units[kind] = c->boards[board_index * KENG_KIND_COUNT + kind];
        if (units[kind]) {
            keng_tally_t mine = (*c->board_lt[board_index])[LEVEL_OLD];
            tally_keep_kind(&mine, kind);
            keng_tally_add(&old, &mine);
            for (int k = 0; k < LEVELS; k++)
                nbuckets += units[kind]->lvl[k].n;
        }
    }
    id = keng_registry_board(c->reg, slot_board(c, board_index))->id;
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

/* The fixed part of a saved state, read before anything else. */
typedef struct header {
    uint64_t version, kinds, saved_at;
    uint64_t old[TALLY_FIELDS]; /* the old-events tally, keng_tally_t order */
} header_t;

static const char *kinds_held(uint64_t kinds)
{
    return kinds == 1 ? "incidents only" : kinds == 2 ? "mediations only" : "both kinds";
}

static const char *kinds_asked(unsigned want)
{
    return want == 1 ? "incidents" : want == 2 ? "mediations" : "both kinds";
}

/* Checks the magic, version and checksum, and leaves r before the kind set, with the
 * checksum outside r->len. */
static int read_envelope(rbuf_t *r, header_t *h, char *errstr, size_t errstr_size)
{
    const unsigned char *buf = r->p;
    size_t len = r->len;
    int ret = -1;

    if (!buf || len < 4 + 2 + 2 + 1 + 8 + 1 + 4)
        LOAD_FAIL("board state: %zu bytes is too short to be a saved state", len);
    if (memcmp(buf, FORMAT_MAGIC, 4) != 0)
        LOAD_FAIL("board state: not a keng board state (bad magic bytes)");
    r->pos = 4;
    get_le(r, 2, &h->version);
    if (h->version < 1 || h->version > FORMAT_VERSION)
        LOAD_FAIL("board state: format version %u is not supported (this keng reads 1 to %d)",
                  (unsigned)h->version, FORMAT_VERSION);
    if (fnv1a32(buf, len - 4) != ((uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 |
                                  (uint32_t)buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24))
        LOAD_FAIL("board state: checksum mismatch, the saved bytes are corrupted");
    r->len = len - 4;
    ret = 0;
out:
    return ret;
}

/* Whether the old-events tally adds up and holds only the kinds in the state. */
static bool old_tally_valid(const header_t *h)
{
    keng_tally_t t;
    uint64_t cats = 0, res = 0, outs = 0;

    memcpy(&t, h->old, sizeof(t));
    for (int i = 0; i < KENG_CAT_COUNT; i++)
        cats += t.by_category[i];
    for (int i = 0; i < KENG_RES_COUNT; i++)
        res += t.by_resolution[i];
    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        outs += t.by_outcome[i];
    return !(cats != t.incidents || res != t.incidents || outs != t.mediations ||
             t.incidents > (UINT64_MAX >> 8) || t.mediations > (UINT64_MAX >> 8) ||
             (!(h->kinds & (1u << KENG_KIND_INCIDENT)) && t.incidents) ||
             (!(h->kinds & (1u << KENG_KIND_MEDIATION)) && t.mediations));
}

/* Reads the header up to the bucket count: the state must be for board_index and hold every
 * kind in want. */
static int read_header(const keng_counts_t *c, rbuf_t *r, uint32_t board_index, unsigned want,
                       header_t *h, char *errstr, size_t errstr_size)
{
    uint64_t v;
    const char *want_id;
    char got[256];
    int ret = -1;

    if (read_envelope(r, h, errstr, errstr_size) != 0)
        goto out;
    get_le(r, 2, &h->kinds);
    if (h->version == 1)
        h->kinds = (1u << KENG_KIND_COUNT) - 1;
    else if (h->kinds == 0 || h->kinds >= (1u << KENG_KIND_COUNT))
        LOAD_FAIL("board state: kind set %u is not valid", (unsigned)h->kinds);
    if ((want & h->kinds) != want)
        LOAD_FAIL("board state holds %s, not the %s asked for", kinds_held(h->kinds),
                  kinds_asked(want));
    if (!get_le(r, 1, &v) || r->len - r->pos < v)
        LOAD_FAIL("board state: the board id runs past the end");
    memcpy(got, r->p + r->pos, v);
    got[v] = '\0';
    r->pos += v;
    want_id = keng_registry_board(c->reg, slot_board(c, board_index))->id;
    if (strcmp(got, want_id) != 0)
        LOAD_FAIL("board state is for board '%s', not '%s': was the registry changed?", got,
                  want_id);
    if (!get_le(r, 8, &h->saved_at) || !get_le(r, 1, &v))
        LOAD_FAIL("board state: truncated header");
    if (v != TALLY_FIELDS)
        LOAD_FAIL("board state: %u tally fields, expected %zu", (unsigned)v, TALLY_FIELDS);
    for (size_t i = 0; i < TALLY_FIELDS; i++)
        if (!get_le(r, 8, &h->old[i]))
            LOAD_FAIL("board state: truncated tally");
    if (!old_tally_valid(h))
        LOAD_FAIL("board state: the old-events tally does not add up");
    ret = 0;
out:
    return ret;
}

/* Allocates, for each unit in want, its new board, its share of the old tally and room for
 * every bucket and id that the rest of the state could hold. */
static int pending_alloc(const rbuf_t *r, const header_t *h, unsigned want, uint64_t nbuckets,
                         pending_t *pend, char *errstr, size_t errstr_size)
{
    int ret = -1;

    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        pending_t *p = &pend[kind];
        if (!(want & (1u << kind)))
            continue;
        p->nb = calloc(1, sizeof(*p->nb));
        if (!p->nb)
            LOAD_FAIL("out of memory loading a board state");
        p->nb->ids.oldest_q = INT64_MAX;
        memcpy(&p->lt[LEVEL_OLD], h->old, sizeof(h->old));
        tally_keep_kind(&p->lt[LEVEL_OLD], kind);
        for (int k = 0; k < LEVELS; k++) {
            p->ent[k] = malloc((size_t)(nbuckets ? nbuckets : 1) * sizeof(uint64_t));
            if (!p->ent[k])
                LOAD_FAIL("out of memory loading a board state");
        }
        p->ids = malloc((r->len - r->pos) / 8 * sizeof(*p->ids) + sizeof(*p->ids));
        if (!p->ids)
            LOAD_FAIL("out of memory loading a board state");
    }
    ret = 0;
out:
    return ret;
}

/* Reads the buckets into the pending units asked for, each re-levelled against this clock;
 * states before version 3 derive each kind's last event from its newest bucket. */
static int read_buckets(keng_counts_t *c, rbuf_t *r, const header_t *h, uint64_t nbuckets,
                        pending_t *pend, int64_t last_seen[KENG_KIND_COUNT], char *errstr,
                        size_t errstr_size)
{
    int ret = -1;

    for (uint64_t i = 0; i < nbuckets; i++) {
        uint64_t lvl = 0, cls = 0, key = 0, cnt = 0;
        int64_t m;
        uint32_t nk = 0;
        int k;
        pending_t *p;
        get_le(r, 1, &lvl);
        get_le(r, 1, &cls);
        get_le(r, 4, &key);
        get_le(r, 4, &cnt);
        m = (int64_t)key - KEY_OFFSET;
        if (lvl >= LEVELS || cls >= NCLASS || cnt == 0 || cnt > COUNT_MAX ||
            floor_div(m, granularity_min[lvl]) * granularity_min[lvl] != m ||
            !(h->kinds & (1u << (cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION))))
            LOAD_FAIL("board state: bucket %llu is malformed (level %u, class %u, count %u)",
                      (unsigned long long)i, (unsigned)lvl, (unsigned)cls, (unsigned)cnt);
        p = &pend[cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION];
        if (!p->nb)
            continue; /* the other kind's bucket: not asked for */
        if (h->version < 3) {
            int64_t end = (m + granularity_min[lvl]) * MINUTE_MS;
            int64_t *ls = &last_seen[cls < CLASS_MED ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION];
            if (end > (int64_t)h->saved_at)
                end = (int64_t)h->saved_at;
            if (end > *ls)
                *ls = end;
        }
        /* Re-level against this clock: the bucket start decides exactly, as at expiry. */
        k = keng_counts__level_of(c, m, &nk);
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
    ret = 0;
out:
    return ret;
}

/* Sorts each pending level's entries into its new board's level. */
static int build_levels(keng_counts_t *c, pending_t *pend, char *errstr, size_t errstr_size)
{
    int ret = -1;

    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        pending_t *p = &pend[kind];
        for (int k = 0; p->nb && k < LEVELS; k++) {
            qsort(p->ent[k], p->nent[k], sizeof(uint64_t), cmp_u64);
            if (keng_counts__level_reserve(c, &p->nb->lvl[k], p->nent[k]) < 0)
                LOAD_FAIL("out of memory loading a board state");
            for (uint32_t i = 0; i < p->nent[k]; i++)
                keng_counts__level_add(&p->nb->lvl[k], entry_key(p->ent[k][i]),
                                       entry_class(p->ent[k][i]), entry_count(p->ent[k][i]));
        }
    }
    ret = 0;
out:
    return ret;
}

/* Reads what follows the buckets: the id sections, then (version 3) each kind's last event
 * and the saver's watch start; nothing may follow. */
static int read_ids_and_times(keng_counts_t *c, rbuf_t *r, const header_t *h, unsigned want,
                              pending_t *pend, int64_t last_seen[KENG_KIND_COUNT],
                              int64_t *watch_start, char *errstr, size_t errstr_size)
{
    uint64_t v;
    int ret = -1;

    if (h->version == 1) {
        if (read_ids(c, r, pend, want, errstr, errstr_size) != 0)
            goto out;
    } else {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++)
            if ((h->kinds & (1u << kind)) &&
                read_ids(c, r, pend, want & (1u << kind), errstr, errstr_size) != 0)
                goto out;
    }
    if (h->version >= 3) {
        for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
            if (!(h->kinds & (1u << kind)))
                continue;
            if (!get_le(r, 8, &v))
                LOAD_FAIL("board state: the last event times run past the end");
            last_seen[kind] = (int64_t)v;
        }
        if (!get_le(r, 8, &v))
            LOAD_FAIL("board state: the watch start runs past the end");
        *watch_start = (int64_t)v;
    }
    if (r->pos != r->len)
        LOAD_FAIL("board state: %zu unexpected bytes after the ids", r->len - r->pos);
    ret = 0;
out:
    return ret;
}

/* Keeps each pending unit's newest arrival of every id, sorted by hash, and reserves its set. */
static int unique_ids(keng_counts_t *c, pending_t *pend, char *errstr, size_t errstr_size)
{
    int ret = -1;

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
        if (keng_counts__idset_reserve(c, &p->nb->ids, p->nids) < 0)
            LOAD_FAIL("out of memory loading a board state");
    }
    ret = 0;
out:
    return ret;
}

/* Replaces the units with the pending ones, which it takes; cannot fail. With replace_all,
 * the board's units not in the state are dropped. *spare (taken if used) becomes the board's
 * tallies when it has none. */
static void commit_units(keng_counts_t *c, uint32_t board_index, bool replace_all, pending_t *pend,
                         const int64_t last_seen[KENG_KIND_COUNT], board_lt_t **spare)
{
    keng_tally_t *nodes[4];

    for (unsigned kind = 0; kind < KENG_KIND_COUNT; kind++) {
        uint32_t u = board_index * KENG_KIND_COUNT + kind;
        pending_t *p = &pend[kind];
        board_t *nb = p->nb;

        if (!nb) {
            if (replace_all && c->boards[u]) {
                keng_counts__board_drop(c, u);
                set_dirty(c, u, false);
            }
            continue;
        }
        keng_counts__board_drop(c, u);
        if (!c->board_lt[board_index]) {
            c->board_lt[board_index] = *spare;
            *spare = NULL;
            c->mem += sizeof(board_lt_t);
        }
        nb->active_pos = c->nactive;
        c->active[c->nactive++] = u;
        c->boards[u] = nb;
        c->mem += sizeof(*nb);
        keng_counts__lane_note(c, u, true);
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
        keng_counts__nodes_of(c, nb, u, nodes);
        for (int i = 0; i < 4; i++)
            for (int k = 0; k <= LEVELS; k++)
                keng_tally_add(&nodes[i][k], &p->lt[k]);
        p->nb = NULL;
        set_dirty(c, u, false);
    }
}

/* Loads the units of board_index whose kind is in want from a saved state, which must hold
 * every one of them; with replace_all, the board's other units are cleared too. Nothing
 * changes unless the whole state is valid (but the clock: it moves to now_ms once the header
 * is valid). */
static int load_units(keng_counts_t *c, uint32_t board_index, unsigned want, bool replace_all,
                      const unsigned char *buf, size_t len, int64_t now_ms, char *errstr,
                      size_t errstr_size)
{
    rbuf_t r = {buf, len, 0};
    header_t h;
    uint64_t nbuckets;
    int64_t last_seen[KENG_KIND_COUNT] = {INT64_MIN, INT64_MIN}, watch_start = INT64_MAX;
    pending_t pend[KENG_KIND_COUNT];
    board_lt_t *spare = NULL;
    int ret = -1;

    memset(pend, 0, sizeof(pend));
    memset(&h, 0, sizeof(h));
    if (board_index >= c->nslots)
        LOAD_FAIL("board index %u is outside the registry (%u boards, %u slots)", board_index,
                  c->nboards, c->nslots);
    if (read_header(c, &r, board_index, want, &h, errstr, errstr_size) != 0)
        goto out;

    keng_counts__advance_to(c, now_ms);
    if (!get_le(&r, 4, &nbuckets) || nbuckets > (r.len - r.pos) / 10)
        LOAD_FAIL("board state: bucket count runs past the end");
    if (pending_alloc(&r, &h, want, nbuckets, pend, errstr, errstr_size) != 0 ||
        read_buckets(c, &r, &h, nbuckets, pend, last_seen, errstr, errstr_size) != 0 ||
        build_levels(c, pend, errstr, errstr_size) != 0 ||
        read_ids_and_times(c, &r, &h, want, pend, last_seen, &watch_start, errstr, errstr_size) !=
            0 ||
        unique_ids(c, pend, errstr, errstr_size) != 0)
        goto out;

    /* The board's tallies may have to be created below, where nothing may fail any more. */
    spare = calloc(1, sizeof(*spare));
    if (!spare)
        LOAD_FAIL("out of memory loading a board state");

    /* Everything is valid: replace the units. */
    commit_units(c, board_index, replace_all, pend, last_seen, &spare);
    if (watch_start < c->watch_start)
        c->watch_start = watch_start;
    keng_counts__dedup_enforce_bound(c);
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
