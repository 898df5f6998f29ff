/* Tests of the rolling-count store: exact window edges under an injected clock, late events,
 * deduplication and its horizon, rollups against a brute-force recount, the board state format,
 * and memory for the whole province; they never touch Kafka or LMDB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "counts.h"
#include "registry.h"
#include "unit_support.h"

#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)
#define T0   1740830430123LL /* 2025-03-01T12:00:30.123Z */
#define NWIN KENG_WIN_COUNT
#define NCLS 39

/* The documented definition, written out again here so that the test checks counts.c
 * against the contract rather than against itself. */
static const int64_t spec_len[5] = {HOUR, DAY, 7 * DAY, 30 * DAY, 365 * DAY};
static const int64_t spec_gran[5] = {1 * MIN, 24 * MIN, 168 * MIN, 672 * MIN, 8736 * MIN};

static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t spec_start(int64_t now, int w)
{
    return fdiv(now - spec_len[w], spec_gran[w]) * spec_gran[w];
}

static bool spec_in(int64_t now, int w, int64_t t)
{
    return w == KENG_WIN_ALL || t >= spec_start(now, w);
}

static keng_event_t make_event(int cls, const char *id, int64_t occurred_at)
{
    keng_event_t ev;
    memset(&ev, 0, sizeof(ev));
    if (cls < 36) {
        ev.kind = KENG_KIND_INCIDENT;
        ev.category = (keng_category_t)(cls / 3);
        ev.resolution = (keng_resolution_t)(cls % 3);
    } else {
        ev.kind = KENG_KIND_MEDIATION;
        ev.outcome = (keng_outcome_t)(cls - 36);
    }
    snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    ev.occurred_at = occurred_at;
    ev.reported_at = occurred_at;
    return ev;
}

static uint64_t total(const keng_counts_t *c, keng_level_t lvl, uint32_t i, int w)
{
    keng_tally_t t;
    keng_counts_get(c, lvl, i, (keng_window_id_t)w, &t);
    return t.incidents + t.mediations;
}

static void test_window_start_matches_contract(void **state)
{
    for (int64_t now = T0 - 3 * DAY; now < T0 + 3 * DAY; now += 7 * MIN + 13)
        for (int w = 0; w < 5; w++)
            keng_unit_expect_u64((uint64_t)spec_start(now, w),
                                 (uint64_t)keng_counts_window_start(now, (keng_window_id_t)w),
                                 "window start");
    assert_true(keng_counts_window_start(T0, KENG_WIN_ALL) == INT64_MIN);
    for (int w = 0; w < 5; w++)
        assert_true(keng_window_granularity_ms[w] * 60 <= keng_window_length_ms[w]);
}

/* For each window: one event exactly at its start and one a millisecond before; then the
 * clock moves to just before and exactly onto the instant the start next moves. */
static void test_window_edges_exact(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    char id[64];

    assert_non_null(c);
    keng_counts_advance(c, T0);
    for (int w = 0; w < 5; w++) {
        int64_t s = spec_start(T0, w);
        keng_event_t in, out;
        snprintf(id, sizeof(id), "in-%d", w);
        in = make_event(0, id, s);
        snprintf(id, sizeof(id), "out-%d", w);
        out = make_event(37, id, s - 1);
        assert_int_equal(keng_counts_add(c, (uint32_t)w, &in, T0), KENG_COUNTS_ADDED);
        assert_int_equal(keng_counts_add(c, (uint32_t)w, &out, T0), KENG_COUNTS_ADDED);
        for (int v = 0; v < NWIN; v++) {
            uint64_t want = (uint64_t)spec_in(T0, v, s) + (uint64_t)spec_in(T0, v, s - 1);
            keng_unit_expect_u64(want, total(c, KENG_LEVEL_BOARD, (uint32_t)w, v),
                                 keng_window_names[v]);
        }
        keng_unit_expect_u64(1, total(c, KENG_LEVEL_BOARD, (uint32_t)w, w),
                             "edge window holds in only");
    }
    /* Window by window, in the order their starts move, walk the clock onto the instant the
     * start passes the "in" event. */
    int order[5] = {0, 1, 2, 3, 4};
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++) {
            int64_t mi = spec_start(T0, order[i]) + spec_gran[order[i]] + spec_len[order[i]];
            int64_t mj = spec_start(T0, order[j]) + spec_gran[order[j]] + spec_len[order[j]];
            if (mj < mi) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
    for (int oi = 0; oi < 5; oi++) {
        int w = order[oi];
        int64_t s = spec_start(T0, w);
        int64_t moves = s + spec_gran[w] + spec_len[w]; /* first now with start > s */
        assert_true(spec_start(moves - 1, w) == s);
        assert_true(spec_start(moves, w) > s);
        keng_counts_advance(c, moves - 1);
        for (int b = 0; b < 5; b++) {
            int64_t sb = spec_start(T0, b);
            keng_unit_expect_u64((uint64_t)spec_in(moves - 1, b, sb),
                                 total(c, KENG_LEVEL_BOARD, (uint32_t)b, b),
                                 "one ms before the move");
        }
        keng_unit_expect_u64(1, total(c, KENG_LEVEL_BOARD, (uint32_t)w, w),
                             "still inside before move");
        keng_counts_advance(c, moves);
        keng_unit_expect_u64(0, total(c, KENG_LEVEL_BOARD, (uint32_t)w, w),
                             "gone once the start moved");
        if (w + 1 < 5)
            keng_unit_expect_u64(2, total(c, KENG_LEVEL_BOARD, (uint32_t)w, w + 1),
                                 "still in wider");
        keng_unit_expect_u64(2, total(c, KENG_LEVEL_BOARD, (uint32_t)w, KENG_WIN_ALL),
                             "all keeps both");
    }
    keng_counts_destroy(c);
}

/* The 1h window, minute by minute: an event at T0 - 59 min leaves exactly when the clock
 * crosses the minute at which floor(now - 1h, 1 min) passes it. */
static void test_one_hour_window_minute_steps(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    int64_t t = T0 - 59 * MIN;
    keng_event_t ev = make_event(5, "minute-steps", t);

    assert_non_null(c);
    assert_int_equal(keng_counts_add(c, 7, &ev, T0), KENG_COUNTS_ADDED);
    for (int64_t now = T0; now < T0 + 5 * MIN; now += MIN) {
        keng_counts_advance(c, now);
        keng_unit_expect_u64(spec_in(now, 0, t), total(c, KENG_LEVEL_BOARD, 7, KENG_WIN_1H), "1h");
        keng_unit_expect_u64(1, total(c, KENG_LEVEL_BOARD, 7, KENG_WIN_24H), "24h");
    }
    keng_unit_expect_u64(0, total(c, KENG_LEVEL_BOARD, 7, KENG_WIN_1H), "1h after 5 minutes");
    keng_counts_destroy(c);
}

static void test_late_events_land_in_their_windows(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    keng_event_t ev = make_event(3 * 3 + 2, "late-3-days", T0 - 3 * DAY);
    const keng_board_t *b = keng_registry_board(keng_unit_registry, 100);
    static const uint64_t want[NWIN] = {0, 0, 1, 1, 1, 1};
    keng_tally_t t;

    assert_non_null(c);
    keng_counts_advance(c, T0);
    assert_int_equal(keng_counts_add(c, 100, &ev, T0), KENG_COUNTS_ADDED);
    for (int w = 0; w < NWIN; w++) {
        keng_unit_expect_u64(want[w], total(c, KENG_LEVEL_BOARD, 100, w), keng_window_names[w]);
        keng_unit_expect_u64(want[w], total(c, KENG_LEVEL_COMMUNE, b->commune, w), "commune");
        keng_unit_expect_u64(want[w], total(c, KENG_LEVEL_DISTRICT, b->district, w), "district");
        keng_unit_expect_u64(want[w], total(c, KENG_LEVEL_PROVINCE, 0, w), "province");
    }
    keng_counts_get(c, KENG_LEVEL_PROVINCE, 0, KENG_WIN_7D, &t);
    keng_unit_expect_u64(1, t.by_category[KENG_CAT_DRUGS], "category DRUGS");
    keng_unit_expect_u64(1, t.by_resolution[KENG_RES_TRANSFERRED_TO_POLICE], "resolution");
    keng_unit_expect_u64(0, t.mediations, "mediations");
    /* A year and a half late: only "all". */
    ev = make_event(36, "late-18-months", T0 - 548 * DAY);
    assert_int_equal(keng_counts_add(c, 100, &ev, T0), KENG_COUNTS_ADDED);
    keng_unit_expect_u64(1, total(c, KENG_LEVEL_BOARD, 100, KENG_WIN_365D), "365d");
    keng_unit_expect_u64(2, total(c, KENG_LEVEL_BOARD, 100, KENG_WIN_ALL), "all");
    keng_counts_destroy(c);
}

static void test_duplicates_counted_once_and_forgotten_after_horizon(void **state)
{
    keng_counts_options_t opt;
    keng_counts_t *c;
    keng_event_t ev = make_event(0, "9b2f0c1e-0d7a-4c55-9f0e-3f4c2b1a0d99", T0);
    keng_event_t med = make_event(36, "9b2f0c1e-0d7a-4c55-9f0e-3f4c2b1a0d99", T0);

    keng_counts_options_default(&opt);
    keng_unit_expect_u64(30 * DAY, (uint64_t)opt.dedup_horizon_ms, "default horizon");
    opt.dedup_horizon_ms = 2 * HOUR;
    c = keng_counts_new(keng_unit_registry, &opt);
    assert_non_null(c);
    assert_int_equal(keng_counts_add(c, 1, &ev, T0), KENG_COUNTS_ADDED);
    keng_counts_board_mark_clean(c, 1);
    assert_int_equal(keng_counts_add(c, 1, &ev, T0 + 1000), KENG_COUNTS_DUPLICATE);
    assert_false(keng_counts_board_dirty(c, 1));
    /* Bulk re-sends carry years-old occurred_at: the horizon is by arrival. */
    ev.occurred_at = T0 - 3 * 365 * DAY;
    assert_int_equal(keng_counts_add(c, 1, &ev, T0 + 2000), KENG_COUNTS_DUPLICATE);
    ev.occurred_at = T0;
    /* The same id as another kind is another event. */
    assert_int_equal(keng_counts_add(c, 1, &med, T0 + 3000), KENG_COUNTS_ADDED);
    keng_unit_expect_u64(2, keng_counts_dedup_size(c), "ids remembered");
    keng_unit_expect_u64(2, total(c, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL), "counted once each");
    assert_int_equal(keng_counts_add(c, 1, &ev, T0 + 2 * HOUR - 1), KENG_COUNTS_DUPLICATE);
    /* Forgotten after the horizon (plus at most one arrival quantum, horizon / 65000). */
    keng_counts_advance(c, T0 + 2 * HOUR + 2 * HOUR / 65000 + 1);
    keng_unit_expect_u64(1, keng_counts_dedup_size(c), "first id forgotten");
    assert_int_equal(keng_counts_add(c, 1, &ev, T0 + 2 * HOUR + 2000), KENG_COUNTS_ADDED);
    keng_unit_expect_u64(3, total(c, KENG_LEVEL_BOARD, 1, KENG_WIN_ALL),
                         "counted again after horizon");
    keng_unit_expect_u64(3, keng_counts_events_counted(c), "events counted");
    keng_counts_destroy(c);
}

static void test_dedup_bound_forgets_oldest_first(void **state)
{
    keng_counts_options_t opt;
    keng_counts_t *c;
    char id[64];

    keng_counts_options_default(&opt);
    opt.dedup_max_entries = 1000;
    c = keng_counts_new(keng_unit_registry, &opt);
    assert_non_null(c);
    for (int i = 0; i < 5000; i++) {
        keng_event_t ev;
        snprintf(id, sizeof(id), "bound-%d", i);
        ev = make_event(i % NCLS, id, T0);
        assert_int_equal(keng_counts_add(c, (uint32_t)(i % 50), &ev, T0 + (int64_t)i * MIN),
                         KENG_COUNTS_ADDED);
        if (keng_counts_dedup_size(c) > 1000)
            fail_msg("dedup size %zu over the bound 1000", keng_counts_dedup_size(c));
    }
    for (int i = 4990; i < 5000; i++) {
        keng_event_t ev;
        snprintf(id, sizeof(id), "bound-%d", i);
        ev = make_event(i % NCLS, id, T0);
        assert_int_equal(keng_counts_add(c, (uint32_t)(i % 50), &ev, T0 + 5000 * MIN),
                         KENG_COUNTS_DUPLICATE);
    }
    {
        keng_event_t ev = make_event(0, "bound-0", T0);
        assert_int_equal(keng_counts_add(c, 0, &ev, T0 + 5000 * MIN), KENG_COUNTS_ADDED);
    }
    keng_counts_destroy(c);
}

/* ---- the randomised recount ---- */

typedef struct raw {
    uint32_t board;
    int cls;
    int64_t occurred_at;
    int64_t arrival;
    uint32_t id;
} raw_t;

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint32_t rand_below(uint32_t n)
{
    return (uint32_t)(next_rand() % n);
}

static void tally_add_cls(keng_tally_t *t, int cls)
{
    if (cls < 36) {
        t->incidents++;
        t->by_category[cls / 3]++;
        t->by_resolution[cls % 3]++;
    } else {
        t->mediations++;
        t->by_outcome[cls - 36]++;
    }
}

static void expect_tally(const keng_tally_t *want, const keng_tally_t *got, const char *scope,
                         uint32_t index, int w)
{
    if (memcmp(want, got, sizeof(*want)) != 0)
        fail_msg("%s %u window %s: expected incidents=%llu mediations=%llu, actual "
                 "incidents=%llu mediations=%llu",
                 scope, index, keng_window_names[w], (unsigned long long)want->incidents,
                 (unsigned long long)want->mediations, (unsigned long long)got->incidents,
                 (unsigned long long)got->mediations);
}

/* Recounts every accepted event by the definition and compares every scope and window. */
static void recount_and_compare(const keng_counts_t *c, const raw_t *raw, size_t n, int64_t now)
{
    size_t nb = keng_registry_board_count(keng_unit_registry),
           nc = keng_registry_commune_count(keng_unit_registry);
    size_t nd = keng_registry_district_count(keng_unit_registry);
    keng_tally_t *eb = calloc(nb * NWIN, sizeof(*eb));
    keng_tally_t *ec = calloc(nc * NWIN, sizeof(*ec));
    keng_tally_t *ed = calloc(nd * NWIN, sizeof(*ed));
    keng_tally_t ep[NWIN], got, sum;
    uint8_t *touched = calloc(nb, 1);

    assert_non_null(eb);
    assert_non_null(ec);
    assert_non_null(ed);
    assert_non_null(touched);
    memset(ep, 0, sizeof(ep));
    for (size_t i = 0; i < n; i++) {
        const keng_board_t *b = keng_registry_board(keng_unit_registry, raw[i].board);
        touched[raw[i].board] = 1;
        for (int w = 0; w < NWIN; w++) {
            if (!spec_in(now, w, raw[i].occurred_at))
                continue;
            tally_add_cls(&eb[raw[i].board * NWIN + w], raw[i].cls);
            tally_add_cls(&ec[b->commune * NWIN + w], raw[i].cls);
            tally_add_cls(&ed[b->district * NWIN + w], raw[i].cls);
            tally_add_cls(&ep[w], raw[i].cls);
        }
    }
    for (int w = 0; w < NWIN; w++) {
        for (uint32_t i = 0; i < nb; i++) {
            if (!touched[i])
                continue;
            keng_counts_get(c, KENG_LEVEL_BOARD, i, (keng_window_id_t)w, &got);
            expect_tally(&eb[i * NWIN + w], &got, "board", i, w);
        }
        for (uint32_t i = 0; i < nc; i++) {
            keng_counts_get(c, KENG_LEVEL_COMMUNE, i, (keng_window_id_t)w, &got);
            expect_tally(&ec[i * NWIN + w], &got, "commune", i, w);
        }
        for (uint32_t i = 0; i < nd; i++) {
            keng_counts_get(c, KENG_LEVEL_DISTRICT, i, (keng_window_id_t)w, &got);
            expect_tally(&ed[i * NWIN + w], &got, "district", i, w);
        }
        keng_counts_get(c, KENG_LEVEL_PROVINCE, 0, (keng_window_id_t)w, &got);
        expect_tally(&ep[w], &got, "province", 0, w);
        /* And the rollup invariant directly: the province is the sum of its boards. */
        memset(&sum, 0, sizeof(sum));
        for (uint32_t i = 0; i < nb; i++) {
            keng_tally_t t;
            if (!touched[i])
                continue;
            keng_counts_get(c, KENG_LEVEL_BOARD, i, (keng_window_id_t)w, &t);
            for (size_t f = 0; f < sizeof(t) / sizeof(uint64_t); f++)
                ((uint64_t *)&sum)[f] += ((uint64_t *)&t)[f];
        }
        expect_tally(&sum, &got, "province as sum of boards", 0, w);
    }
    free(eb);
    free(ec);
    free(ed);
    free(touched);
}

static void save_clear_load(keng_counts_t *c, uint32_t board, int64_t now)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256] = "";

    assert_int_equal(keng_counts_board_save(c, board, &buf, &len), 0);
    keng_counts_board_clear(c, board);
    if (keng_counts_board_load(c, board, buf, len, now, err, sizeof(err)) != 0)
        fail_msg("load of board %u failed: %s", board, err);
    free(buf);
}

static void test_rollups_equal_bruteforce_recount(void **state)
{
    enum { EVENTS = 30000 };
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    raw_t *raw = calloc(EVENTS, sizeof(*raw)), *sent = calloc(EVENTS, sizeof(*sent));
    size_t nraw = 0, nsent = 0, checks = 0;
    uint32_t nb = (uint32_t)keng_registry_board_count(keng_unit_registry);
    int64_t now = T0;
    char id[64];

    assert_non_null(c);
    assert_non_null(raw);
    assert_non_null(sent);
    rng = 0x853c49e6748fea9bULL;
    keng_counts_advance(c, now);
    for (int i = 0; i < EVENTS; i++) {
        raw_t r;
        keng_event_t ev;
        int expected = KENG_COUNTS_ADDED, got;
        uint32_t pick = rand_below(100);

        /* Advance the clock: mostly seconds, sometimes across minutes, hours and days. */
        if (pick < 60)
            now += rand_below(20000);
        else if (pick < 85)
            now += rand_below(3 * MIN);
        else if (pick < 97)
            now += rand_below(2 * HOUR);
        else
            now += rand_below(3 * DAY);
        if (rand_below(10) == 0)
            keng_counts_advance(c, now);

        if (nsent > 0 && rand_below(8) == 0) {
            /* Re-send an earlier event; away from the horizon's blurred edge. */
            r = sent[rand_below((uint32_t)nsent)];
            int64_t age = now - r.arrival;
            if (age > 30 * DAY - HOUR && age < 30 * DAY + HOUR)
                goto skip;
            expected = age < 30 * DAY ? KENG_COUNTS_DUPLICATE : KENG_COUNTS_ADDED;
            /* The brute force must know when an id was last accepted. */
            for (size_t j = nsent; j-- > 0;)
                if (sent[j].id == r.id && sent[j].board == r.board) {
                    age = now - sent[j].arrival;
                    if (age > 30 * DAY - HOUR && age < 30 * DAY + HOUR)
                        goto skip;
                    expected = age < 30 * DAY ? KENG_COUNTS_DUPLICATE : KENG_COUNTS_ADDED;
                    break;
                }
        } else {
            uint32_t age_kind = rand_below(100);
            int64_t age;
            /* Boards: a few communes see most of the traffic, so rollups mix many boards. */
            r.board = rand_below(4) ? rand_below(nb < 300 ? nb : 300) : rand_below(nb);
            r.cls = (int)rand_below(NCLS);
            r.id = (uint32_t)i;
            if (age_kind < 30)
                age = (int64_t)rand_below(2 * HOUR);
            else if (age_kind < 55)
                age = (int64_t)rand_below(2 * DAY);
            else if (age_kind < 75)
                age = (int64_t)rand_below(40 * DAY);
            else if (age_kind < 95)
                age = (int64_t)(next_rand() % (uint64_t)(400 * DAY));
            else
                age = -(int64_t)rand_below(5 * MIN); /* a fast gateway clock */
            r.occurred_at = now - age;
        }
        snprintf(id, sizeof(id), "ev-%u", r.id);
        ev = make_event(r.cls, id, r.occurred_at);
        got = keng_counts_add(c, r.board, &ev, now);
        if (got != expected)
            fail_msg("event %d (id %u, board %u): expected result %d, actual %d", i, r.id, r.board,
                     expected, got);
        if (got == KENG_COUNTS_ADDED) {
            r.arrival = now;
            raw[nraw++] = r;
            sent[nsent++] = r;
        }
    skip:
        if (i % 1500 == 1499) {
            /* Hand a few boards over through their saved state, then check everything. */
            for (int k = 0; k < 3; k++)
                save_clear_load(c, raw[rand_below((uint32_t)nraw)].board, now);
            recount_and_compare(c, raw, nraw, now);
            checks++;
        }
    }
    /* Let the clock run out every window but "all", in steps that cross each edge. */
    for (int step = 0; step < 40; step++) {
        now += step < 20 ? 7 * MIN + 11 : 11 * DAY + 17;
        keng_counts_advance(c, now);
        recount_and_compare(c, raw, nraw, now);
        checks++;
    }
    print_message("recount: %zu events counted, %zu comparisons, %zu ids remembered\n", nraw,
                  checks, keng_counts_dedup_size(c));
    assert_true(nraw > EVENTS / 2);
    keng_counts_destroy(c);
    free(raw);
    free(sent);
}

/* ---- the board state format ---- */

static keng_counts_t *populated(int64_t now, uint32_t boards)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    char id[64];

    assert_non_null(c);
    rng = 42;
    for (uint32_t b = 0; b < boards; b++) {
        for (int i = 0; i < 200; i++) {
            keng_event_t ev;
            int64_t age = (int64_t)(next_rand() % (uint64_t)(500 * DAY)) >> rand_below(12);
            snprintf(id, sizeof(id), "st-%u-%d", b, i);
            ev = make_event((int)rand_below(NCLS), id, now - age);
            assert_int_equal(keng_counts_add(c, b, &ev, now - 4 * HOUR + i * MIN),
                             KENG_COUNTS_ADDED);
        }
    }
    keng_counts_advance(c, now);
    return c;
}

static void compare_all(const keng_counts_t *a, const keng_counts_t *b)
{
    keng_tally_t x, y;
    for (int w = 0; w < NWIN; w++) {
        for (uint32_t i = 0; i < keng_registry_board_count(keng_unit_registry); i++) {
            keng_counts_get(a, KENG_LEVEL_BOARD, i, (keng_window_id_t)w, &x);
            keng_counts_get(b, KENG_LEVEL_BOARD, i, (keng_window_id_t)w, &y);
            expect_tally(&x, &y, "board", i, w);
        }
        for (uint32_t i = 0; i < keng_registry_commune_count(keng_unit_registry); i++) {
            keng_counts_get(a, KENG_LEVEL_COMMUNE, i, (keng_window_id_t)w, &x);
            keng_counts_get(b, KENG_LEVEL_COMMUNE, i, (keng_window_id_t)w, &y);
            expect_tally(&x, &y, "commune", i, w);
        }
        keng_counts_get(a, KENG_LEVEL_PROVINCE, 0, (keng_window_id_t)w, &x);
        keng_counts_get(b, KENG_LEVEL_PROVINCE, 0, (keng_window_id_t)w, &y);
        expect_tally(&x, &y, "province", 0, w);
    }
}

/* Adds the same 40 events per board, over boards 0..boards, to c with lanes 0 and 1 in turn. */
static void add_spread(keng_counts_t *c, int64_t now, uint32_t boards, const char *tag)
{
    char id[64];

    rng = 7;
    for (uint32_t b = 0; b < boards; b++) {
        for (int i = 0; i < 40; i++) {
            int64_t age = (int64_t)(next_rand() % (uint64_t)(500 * DAY)) >> rand_below(12);
            snprintf(id, sizeof(id), "%s-%u-%d", tag, b, i);
            keng_event_t ev = make_event((int)rand_below(NCLS), id, now - age);
            uint32_t slot =
                b + (uint32_t)(i % 2) * (uint32_t)keng_registry_board_count(keng_unit_registry);
            int rc = keng_counts_add(c, slot, &ev, now);
            if (rc != KENG_COUNTS_ADDED)
                fail_msg("%s: board %u event %d: %d", id, b, i, rc);
        }
    }
}

/* A registry switch rolls the same boards up under other units: after keng_counts_set_registry
 * every commune's tallies are those of a store that had the new units from the start, the
 * province's did not change, and counting goes on under the new units. */
static void test_set_registry_rolls_up_again(void **state)
{
    keng_counts_options_t opt;
    char errstr[256];
    keng_tally_t before, x, y;

    (void)state;
    keng_registry_t *next = keng_unit_two_tier(keng_unit_registry);
    keng_registry_t *ordered =
        keng_registry_in_board_order(next, keng_unit_registry, errstr, sizeof(errstr));
    assert_non_null(ordered);

    keng_counts_options_default(&opt);
    opt.lanes = 2;
    keng_counts_t *a = keng_counts_new(keng_unit_registry, &opt);
    keng_counts_t *b = keng_counts_new(ordered, &opt);
    add_spread(a, T0, 300, "x");
    add_spread(b, T0, 300, "x");
    keng_counts_get(a, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &before);
    assert_int_equal(keng_counts_set_registry(a, ordered), 0);
    for (int round = 0; round < 2; round++) {
        for (int w = 0; w < NWIN; w++) {
            for (uint32_t i = 0; i < 130; i++) {
                keng_counts_get(a, KENG_LEVEL_COMMUNE, i, (keng_window_id_t)w, &x);
                keng_counts_get(b, KENG_LEVEL_COMMUNE, i, (keng_window_id_t)w, &y);
                expect_tally(&y, &x, "commune", i, w);
            }
            keng_counts_get(a, KENG_LEVEL_DISTRICT, 0, (keng_window_id_t)w, &x);
            assert_int_equal(x.incidents + x.mediations, 0);
            keng_counts_get(a, KENG_LEVEL_PROVINCE, 0, (keng_window_id_t)w, &x);
            keng_counts_get(b, KENG_LEVEL_PROVINCE, 0, (keng_window_id_t)w, &y);
            expect_tally(&y, &x, "province", 0, w);
        }
        keng_counts_get(a, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &x);
        if (round == 0)
            expect_tally(&before, &x, "province before and after", 0, KENG_WIN_ALL);
        if (round == 0) { /* counting goes on under the new units */
            add_spread(a, T0 + HOUR, 300, "y");
            add_spread(b, T0 + HOUR, 300, "y");
        }
    }
    /* A registry of other boards is refused, and nothing changes. */
    static const char small_csv[] = "board_id,board_name,commune_id,commune_name,district_id,"
                                    "district_name,groups,members\nB1,Thôn 1,N1,Xã 1,,,1,1\n";
    keng_registry_t *small =
        keng_registry_load_text(small_csv, strlen(small_csv), "small", errstr, sizeof(errstr));
    assert_non_null(small);
    keng_counts_get(a, KENG_LEVEL_COMMUNE, 5, KENG_WIN_ALL, &before);
    assert_int_equal(keng_counts_set_registry(a, small), -1);
    keng_counts_get(a, KENG_LEVEL_COMMUNE, 5, KENG_WIN_ALL, &x);
    expect_tally(&before, &x, "commune after a refused registry", 5, KENG_WIN_ALL);
    keng_registry_destroy(small);
    keng_counts_destroy(a);
    keng_counts_destroy(b);
    keng_registry_destroy(ordered);
    keng_registry_destroy(next);
}

static void test_save_load_round_trip(void **state)
{
    int64_t now = T0;
    keng_counts_t *a = populated(now, 40);
    keng_counts_t *b = keng_counts_new(keng_unit_registry, NULL);
    char err[256];

    assert_non_null(b);
    for (uint32_t i = 0; i < 41; i++) { /* board 40 has no state: an empty one round-trips */
        unsigned char *buf = NULL, *again = NULL;
        size_t len = 0, len2 = 0;
        assert_int_equal(keng_counts_board_save(a, i, &buf, &len), 0);
        if (keng_counts_board_load(b, i, buf, len, now, err, sizeof(err)) != 0)
            fail_msg("board %u: load failed: %s", i, err);
        assert_false(keng_counts_board_dirty(b, i));
        assert_int_equal(keng_counts_board_save(b, i, &again, &len2), 0);
        keng_unit_expect_u64(len, len2, "saved length after a round trip");
        assert_memory_equal(buf, again, len);
        free(buf);
        free(again);
    }
    compare_all(a, b);
    keng_unit_expect_u64(keng_counts_dedup_size(a), keng_counts_dedup_size(b), "ids remembered");
    {
        keng_event_t ev = make_event(0, "st-3-17", now);
        assert_int_equal(keng_counts_add(b, 3, &ev, now), KENG_COUNTS_DUPLICATE);
    }
    /* A state saved yesterday, loaded today, equals the original advanced to today. */
    keng_counts_advance(a, now + DAY + 5 * MIN);
    keng_counts_t *d = keng_counts_new(keng_unit_registry, NULL);
    for (uint32_t i = 0; i < 40; i++) {
        unsigned char *buf = NULL;
        size_t len = 0;
        assert_int_equal(keng_counts_board_save(b, i, &buf, &len), 0);
        assert_int_equal(
            keng_counts_board_load(d, i, buf, len, now + DAY + 5 * MIN, err, sizeof(err)), 0);
        free(buf);
    }
    compare_all(a, d);
    /* Appending: two states in one buffer, the second after the first. */
    {
        unsigned char *buf = NULL;
        size_t len = 0, first;
        assert_int_equal(keng_counts_board_save(a, 1, &buf, &len), 0);
        first = len;
        assert_int_equal(keng_counts_board_save(a, 2, &buf, &len), 0);
        assert_true(len > first);
        assert_int_equal(keng_counts_board_load(d, 2, buf + first, len - first, now + DAY + 5 * MIN,
                                                err, sizeof(err)),
                         0);
        free(buf);
    }
    keng_counts_destroy(a);
    keng_counts_destroy(b);
    keng_counts_destroy(d);
}

/* A board's incidents and mediations move separately (their partitions may be owned by two
 * instances): clearing one unit leaves the other, and a unit loads on its own. */
/* A board whose events come from two partitions keeps them in two lanes: the answers add
 * the lanes up, an id is counted once across them, and each lane saves, loads and clears on
 * its own, so that each partition's share moves with it alone. */
static void test_lanes_add_up_and_move_apart(void **state)
{
    keng_counts_options_t opt;
    int64_t now = T0;
    keng_counts_t *a, *b;
    uint32_t nb = (uint32_t)keng_registry_board_count(keng_unit_registry), lane1 = nb + 2;
    keng_event_t ev;
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256], id[32];

    (void)state;
    keng_counts_options_default(&opt);
    opt.lanes = 2;
    a = keng_counts_new(keng_unit_registry, &opt);
    b = keng_counts_new(keng_unit_registry, &opt);
    assert_non_null(a);
    assert_non_null(b);
    keng_unit_expect_u64(2 * nb, keng_counts_slots(a), "slots of a store of two lanes");
    for (int i = 0; i < 7; i++) {
        snprintf(id, sizeof(id), "old-%d", i);
        ev = make_event(i % 36, id, now - i * MIN);
        assert_int_equal(keng_counts_add(a, 2, &ev, now), KENG_COUNTS_ADDED);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        ev = make_event(i % 36, id, now - i * MIN);
        assert_int_equal(keng_counts_add(a, lane1, &ev, now), KENG_COUNTS_ADDED);
    }
    /* A resend of an event the other lane holds, from either side. */
    ev = make_event(0, "old-3", now);
    assert_int_equal(keng_counts_add(a, lane1, &ev, now), KENG_COUNTS_DUPLICATE);
    ev = make_event(0, "new-1", now);
    assert_int_equal(keng_counts_add(a, 2, &ev, now), KENG_COUNTS_DUPLICATE);
    keng_unit_expect_u64(12, total(a, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL), "board, both lanes");
    keng_unit_expect_u64(12, total(a, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL), "province");
    keng_unit_expect_u64(12, total(a, KENG_LEVEL_BOARD, 2, KENG_WIN_1H), "board, last hour");

    /* The second lane alone moves to another store, as lane 0 there; the first stays. */
    assert_int_equal(keng_counts_unit_save(a, lane1, KENG_KIND_INCIDENT, &buf, &len), 0);
    keng_counts_unit_clear(a, lane1, KENG_KIND_INCIDENT);
    keng_unit_expect_u64(7, total(a, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL), "first lane left");
    keng_unit_expect_u64(7, total(a, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL), "province then");
    if (keng_counts_unit_load(b, 2, KENG_KIND_INCIDENT, buf, len, now, err, sizeof(err)) != 0)
        fail_msg("lane load failed: %s", err);
    keng_unit_expect_u64(5, total(b, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL), "second lane moved");
    /* Once the other lane is gone, its ids no longer count here. */
    ev = make_event(0, "new-1", now);
    assert_int_equal(keng_counts_add(a, 2, &ev, now), KENG_COUNTS_ADDED);
    assert_int_equal(keng_counts_add(a, 2 * nb, &ev, now), -1); /* past the last slot */
    free(buf);
    keng_counts_destroy(a);
    keng_counts_destroy(b);
}

static void test_units_move_separately(void **state)
{
    int64_t now = T0;
    keng_counts_t *a = populated(now, 5);
    keng_counts_t *b = keng_counts_new(keng_unit_registry, NULL);
    keng_tally_t full, inc, after;
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256];

    assert_non_null(b);
    keng_counts_get(a, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL, &full);
    assert_true(full.incidents > 0 && full.mediations > 0);
    assert_int_equal(keng_counts_unit_save(a, 2, KENG_KIND_INCIDENT, &buf, &len), 0);
    keng_counts_unit_clear(a, 2, KENG_KIND_MEDIATION);
    assert_true(keng_counts_unit_dirty(a, 2, KENG_KIND_MEDIATION));
    keng_counts_get(a, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL, &after);
    keng_unit_expect_u64(full.incidents, after.incidents,
                         "incidents after clearing the mediations");
    keng_unit_expect_u64(0, after.mediations, "mediations after clearing them");
    /* A unit state is of one kind only. */
    assert_int_equal(
        keng_counts_unit_load(b, 2, KENG_KIND_MEDIATION, buf, len, now, err, sizeof(err)), -1);
    print_message("wrong kind: %s\n", err);
    if (keng_counts_unit_load(b, 2, KENG_KIND_INCIDENT, buf, len, now, err, sizeof(err)) != 0)
        fail_msg("unit load failed: %s", err);
    assert_false(keng_counts_unit_dirty(b, 2, KENG_KIND_INCIDENT));
    keng_counts_get(b, KENG_LEVEL_BOARD, 2, KENG_WIN_ALL, &inc);
    keng_unit_expect_u64(full.incidents, inc.incidents, "incidents loaded from the unit state");
    keng_unit_expect_u64(0, inc.mediations, "mediations loaded from the unit state");
    keng_counts_get(b, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &after);
    keng_unit_expect_u64(full.incidents, after.incidents, "province after the unit load");
    /* A unit also loads from a whole board's state, and the other unit is untouched. */
    free(buf);
    buf = NULL;
    len = 0;
    assert_int_equal(keng_counts_board_save(a, 3, &buf, &len), 0);
    keng_counts_get(a, KENG_LEVEL_BOARD, 3, KENG_WIN_ALL, &full);
    assert_int_equal(
        keng_counts_unit_load(b, 3, KENG_KIND_MEDIATION, buf, len, now, err, sizeof(err)), 0);
    keng_counts_get(b, KENG_LEVEL_BOARD, 3, KENG_WIN_ALL, &after);
    keng_unit_expect_u64(full.mediations, after.mediations, "mediations from a board state");
    keng_unit_expect_u64(0, after.incidents, "incidents not asked for");
    free(buf);
    keng_counts_destroy(a);
    keng_counts_destroy(b);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t fnv32(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static void test_load_rejects_truncated_and_corrupted_bytes(void **state)
{
    int64_t now = T0;
    keng_counts_t *c = populated(now, 3);
    unsigned char *buf = NULL, *bad;
    size_t len = 0;
    char err[256];
    keng_tally_t before, after;

    assert_int_equal(keng_counts_board_save(c, 1, &buf, &len), 0);
    bad = malloc(len);
    assert_non_null(bad);
    keng_counts_get(c, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &before);
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        memcpy(bad, buf, cut);
        if (keng_counts_board_load(c, 1, bad, cut, now, err, sizeof(err)) != -1)
            fail_msg("truncated to %zu of %zu bytes: expected -1, actual success", cut, len);
        assert_true(err[0] != '\0');
    }
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, buf, len);
        bad[i] ^= (unsigned char)(1u << (i % 8));
        if (keng_counts_board_load(c, 1, bad, len, now, err, sizeof(err)) != -1)
            fail_msg("byte %zu flipped: expected -1, actual success", i);
    }
    /* Structural damage under a valid checksum: a huge bucket count, a bad class. */
    {
        size_t counts_at =
            4 + 2 + 2 + 1 + strlen(keng_registry_board(keng_unit_registry, 1)->id) + 8 + 1 + 160;
        memcpy(bad, buf, len);
        put32(bad + counts_at, 0xfffffff0u);
        put32(bad + len - 4, fnv32(bad, len - 4));
        assert_int_equal(keng_counts_board_load(c, 1, bad, len, now, err, sizeof(err)), -1);
        print_message("huge bucket count: %s\n", err);
        memcpy(bad, buf, len);
        bad[counts_at + 4 + 1] = 200; /* the first bucket's class */
        put32(bad + len - 4, fnv32(bad, len - 4));
        assert_int_equal(keng_counts_board_load(c, 1, bad, len, now, err, sizeof(err)), -1);
        print_message("bad class: %s\n", err);
    }
    /* Another board's state. */
    assert_int_equal(keng_counts_board_load(c, 2, buf, len, now, err, sizeof(err)), -1);
    print_message("wrong board: %s\n", err);
    keng_counts_get(c, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &after);
    expect_tally(&before, &after, "province after failed loads", 0, KENG_WIN_ALL);
    free(bad);
    free(buf);
    keng_counts_destroy(c);
}

/* Every board of the province with events in every window. Reports the bytes used and
 * bounds the store's own accounting. */
static void test_memory_full_province(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    uint32_t nb = (uint32_t)keng_registry_board_count(keng_unit_registry);
    size_t empty = keng_counts_memory_bytes(c), full;
    int64_t now = T0;
    static const int64_t band[6][2] = {
        {0, HOUR},           {HOUR, DAY},           {DAY, 7 * DAY},
        {7 * DAY, 30 * DAY}, {30 * DAY, 365 * DAY}, {365 * DAY, 5 * 365 * DAY}};
    static const int per_band[6] = {13, 40, 53, 53, 79, 25}; /* 263 an board, 2M in all */
    char id[64];
    uint64_t n = 0;

    assert_non_null(c);
    print_message("empty store for %u boards: %zu bytes (%.1f an board)\n", nb, empty,
                  (double)empty / nb);
    assert_true(empty < 2u << 20);
    rng = 7;
    for (uint32_t b = 0; b < nb; b++) {
        for (int k = 0; k < 6; k++) {
            for (int i = 0; i < per_band[k]; i++) {
                int64_t span = band[k][1] - band[k][0];
                keng_event_t ev;
                snprintf(id, sizeof(id), "%08x-mem-%u-%d-%d", (unsigned)next_rand(), b, k, i);
                ev = make_event((int)rand_below(NCLS), id,
                                now - band[k][0] - (int64_t)(next_rand() % (uint64_t)span));
                assert_int_equal(keng_counts_add(c, b, &ev, now), KENG_COUNTS_ADDED);
                n++;
            }
        }
    }
    for (int w = 0; w < NWIN; w++)
        for (uint32_t b = 0; b < nb; b += 997)
            assert_true(total(c, KENG_LEVEL_BOARD, b, w) > 0);
    full = keng_counts_memory_bytes(c);
    print_message("full province: %llu events, %zu ids, %zu bytes (%.1f MiB, %.1f an event)\n",
                  (unsigned long long)n, keng_counts_dedup_size(c), full, (double)full / (1 << 20),
                  (double)full / (double)n);
    keng_unit_expect_u64(n, total(c, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL), "province all");
    assert_true(full < 48u << 20);
    keng_counts_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_start_matches_contract),
        cmocka_unit_test(test_window_edges_exact),
        cmocka_unit_test(test_one_hour_window_minute_steps),
        cmocka_unit_test(test_late_events_land_in_their_windows),
        cmocka_unit_test(test_duplicates_counted_once_and_forgotten_after_horizon),
        cmocka_unit_test(test_dedup_bound_forgets_oldest_first),
        cmocka_unit_test(test_rollups_equal_bruteforce_recount),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_set_registry_rolls_up_again),
        cmocka_unit_test(test_units_move_separately),
        cmocka_unit_test(test_lanes_add_up_and_move_apart),
        cmocka_unit_test(test_load_rejects_truncated_and_corrupted_bytes),
        cmocka_unit_test(test_memory_full_province),
    };
    return cmocka_run_group_tests(tests, keng_unit_registry_setup, keng_unit_registry_teardown);
}
