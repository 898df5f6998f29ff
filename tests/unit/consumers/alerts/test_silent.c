/* Silent boards and series: a board's last event (kept, capped, saved, loaded, derived from an
 * older state), the watch start, the silent rule at board and commune level in a new deployment
 * and later, and series that add up to their window's count at bucket edges; they never touch
 * Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alerts.h"
#include "counts.h"
#include "registry.h"
#include "silent.h"
#include "unit_support.h"

#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)
#define T0   1767225600000LL /* 2026-01-01T00:00:00Z */

static int seq;

static int add(keng_counts_t *c, uint32_t board, keng_kind_t kind, int64_t occurred,
               int64_t reported, int64_t now)
{
    keng_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = kind;
    snprintf(ev.event_id, sizeof(ev.event_id), "silent-%d", ++seq);
    snprintf(ev.board_id, sizeof(ev.board_id), "%s",
             keng_registry_board(keng_unit_registry, board)->id);
    ev.occurred_at = occurred;
    ev.reported_at = reported;
    return keng_counts_add(c, board, &ev, now);
}

/* ---- last event ---- */

static void test_last_event_is_latest_report_capped_at_the_clock(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    keng_event_t ev;

    (void)state;
    keng_unit_expect_i64(INT64_MIN, keng_counts_last_event(c, 0), "no event yet");
    add(c, 0, KENG_KIND_INCIDENT, T0 - 5 * DAY, T0 - 2 * DAY, T0);
    keng_unit_expect_i64(T0 - 2 * DAY, keng_counts_last_event(c, 0),
                         "reported_at, not occurred_at");
    /* An older report on the other kind does not move it back. */
    add(c, 0, KENG_KIND_MEDIATION, T0 - 9 * DAY, T0 - 8 * DAY, T0);
    keng_unit_expect_i64(T0 - 2 * DAY, keng_counts_last_event(c, 0), "the later of the two units");
    /* A gateway clock ahead of ours reports now at the latest. */
    add(c, 0, KENG_KIND_MEDIATION, T0 - MIN, T0 + HOUR, T0);
    keng_unit_expect_i64(T0, keng_counts_last_event(c, 0), "capped at the clock");
    /* A duplicate is not a report. */
    add(c, 1, KENG_KIND_INCIDENT, T0 - DAY, T0 - DAY, T0);
    memset(&ev, 0, sizeof(ev));
    ev.kind = KENG_KIND_INCIDENT;
    snprintf(ev.event_id, sizeof(ev.event_id), "silent-%d", seq);
    snprintf(ev.board_id, sizeof(ev.board_id), "%s",
             keng_registry_board(keng_unit_registry, 1)->id);
    ev.occurred_at = ev.reported_at = T0;
    assert_int_equal(keng_counts_add(c, 1, &ev, T0 + 1), KENG_COUNTS_DUPLICATE);
    keng_unit_expect_i64(T0 - DAY, keng_counts_last_event(c, 1), "a duplicate changes nothing");
    /* No reported_at: occurred_at. */
    add(c, 2, KENG_KIND_INCIDENT, T0 - 3 * DAY, 0, T0);
    keng_unit_expect_i64(T0 - 3 * DAY, keng_counts_last_event(c, 2),
                         "occurred_at without reported_at");
    keng_counts_destroy(c);
}

static void test_last_event_and_watch_start_survive_save_and_load(void **state)
{
    keng_counts_t *a = keng_counts_new(keng_unit_registry, NULL),
                  *b = keng_counts_new(keng_unit_registry, NULL);
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256];

    (void)state;
    keng_counts_note_watch_start(a, T0 - 100 * DAY);
    keng_counts_note_watch_start(b, T0);
    add(a, 5, KENG_KIND_INCIDENT, T0 - 40 * DAY, T0 - 39 * DAY, T0);
    add(a, 5, KENG_KIND_MEDIATION, T0 - 20 * DAY, T0 - 19 * DAY, T0);
    assert_int_equal(keng_counts_unit_save(a, 5, KENG_KIND_INCIDENT, &buf, &len), 0);
    if (keng_counts_unit_load(b, 5, KENG_KIND_INCIDENT, buf, len, T0 + DAY, err, sizeof(err)) != 0)
        fail_msg("load: %s", err);
    keng_unit_expect_i64(T0 - 39 * DAY, keng_counts_last_event(b, 5), "incident unit's last event");
    keng_unit_expect_i64(T0 - 100 * DAY, keng_counts_watch_start(b),
                         "watch start lowered by the load");
    free(buf);
    buf = NULL;
    len = 0;
    assert_int_equal(keng_counts_board_save(a, 5, &buf, &len), 0);
    if (keng_counts_board_load(b, 5, buf, len, T0 + DAY, err, sizeof(err)) != 0)
        fail_msg("board load: %s", err);
    keng_unit_expect_i64(T0 - 19 * DAY, keng_counts_last_event(b, 5), "both units");
    /* Clearing the units forgets the last event with them (it moves with the partition). */
    keng_counts_board_clear(b, 5);
    keng_unit_expect_i64(INT64_MIN, keng_counts_last_event(b, 5), "cleared");
    free(buf);
    keng_counts_destroy(a);
    keng_counts_destroy(b);
}

/* A state written by a version 2 writer (keng before silent boards, or counts.state_version=2)
 * has no last event: the load takes its newest bucket's end, capped at the save's clock. */
static void test_version_2_state_derives_the_last_event(void **state)
{
    keng_counts_options_t old;
    keng_counts_t *a, *b = keng_counts_new(keng_unit_registry, NULL);
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256];

    (void)state;
    keng_counts_options_default(&old);
    old.state_version = 2;
    a = keng_counts_new(keng_unit_registry, &old);
    /* 3 days ago: the 7d level's 168-minute buckets. */
    add(a, 9, KENG_KIND_INCIDENT, T0 - 3 * DAY, T0 - 3 * DAY + 5 * MIN, T0);
    add(a, 9, KENG_KIND_INCIDENT, T0 - 40 * DAY, T0 - 40 * DAY, T0);
    assert_int_equal(keng_counts_unit_save(a, 9, KENG_KIND_INCIDENT, &buf, &len), 0);
    assert_int_equal(buf[4], 2);
    if (keng_counts_unit_load(b, 9, KENG_KIND_INCIDENT, buf, len, T0, err, sizeof(err)) != 0)
        fail_msg("load: %s", err);
    int64_t got = keng_counts_last_event(b, 9);
    int64_t bucket = ((T0 - 3 * DAY) / (168 * MIN)) * (168 * MIN);
    keng_unit_expect_i64(bucket + 168 * MIN, got, "end of the newest bucket");
    assert_true(got >= T0 - 3 * DAY && got <= T0);
    keng_unit_expect_i64(INT64_MAX, keng_counts_watch_start(b),
                         "a version 2 state has no watch start");
    free(buf);
    keng_counts_destroy(a);
    keng_counts_destroy(b);
}

/* ---- silent days ---- */

static void test_silent_days_count_from_the_watch_start(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL),
                  *other = keng_counts_new(keng_unit_registry, NULL);
    keng_silent_view_t v = {c, other, INT64_MIN};

    (void)state;
    keng_unit_expect_i64(0, keng_silent_days(&v, 0, T0 + 400 * DAY),
                         "unknown watch start: never silent");
    keng_counts_note_watch_start(c, T0);
    keng_unit_expect_i64(29, keng_silent_days(&v, 0, T0 + 30 * DAY - 1),
                         "a millisecond before 30 days");
    keng_unit_expect_i64(30, keng_silent_days(&v, 0, T0 + 30 * DAY), "30 days to the millisecond");
    /* Another instance's earlier watch start counts. */
    keng_counts_note_watch_start(other, T0 - 10 * DAY);
    keng_unit_expect_i64(T0 - 10 * DAY, keng_silent_watch_start(&v), "the earliest watch start");
    /* The other instance holds the board's mediations: its last event counts too. */
    add(other, 0, KENG_KIND_MEDIATION, T0 + 5 * DAY, T0 + 5 * DAY, T0 + 5 * DAY);
    keng_unit_expect_i64(25, keng_silent_days(&v, 0, T0 + 30 * DAY), "from the other unit's event");
    /* silent.start overrides both. */
    v.start_ms = T0 + 20 * DAY;
    keng_unit_expect_i64(10, keng_silent_days(&v, 1, T0 + 30 * DAY), "silent.start");
    keng_counts_destroy(c);
    keng_counts_destroy(other);
}

static void test_silent_options_name_the_key(void **state)
{
    keng_config_t *cfg = keng_config_new();
    keng_silent_options_t opt;
    char err[256];

    (void)state;
    assert_int_equal(keng_silent_options_from_config(cfg, &opt, err, sizeof(err)), 0);
    keng_unit_expect_i64(30, opt.days, "default days");
    keng_unit_expect_i64(INT64_MIN, opt.start_ms, "no start");
    keng_config_set(cfg, "silent.start", "2026-01-01");
    assert_int_equal(keng_silent_options_from_config(cfg, &opt, err, sizeof(err)), 0);
    keng_unit_expect_i64(T0 - 7 * HOUR, opt.start_ms, "midnight in Asia/Ho_Chi_Minh");
    keng_config_set(cfg, "silent.days", "0");
    assert_int_equal(keng_silent_options_from_config(cfg, &opt, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "silent.days"));
    keng_config_set(cfg, "silent.days", "14");
    keng_config_set(cfg, "silent.start", "yesterday");
    assert_int_equal(keng_silent_options_from_config(cfg, &opt, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "silent.start"));
    keng_config_destroy(cfg);
}

/* ---- the silent rule ---- */

/* The transitions emitted: all counted, the first 8 kept. */
typedef struct got {
    int n;
    char rule[8][64], scope[8][32], window[8][8];
    keng_alert_status_t status[8];
    int64_t count[8], threshold[8];
} got_t;

static void on_emit(const keng_alert_t *t, void *arg)
{
    got_t *g = arg;

    if (g->n >= 8) {
        g->n++;
        return;
    }
    snprintf(g->rule[g->n], sizeof(g->rule[0]), "%s", t->rule);
    snprintf(g->scope[g->n], sizeof(g->scope[0]), "%s", t->scope_id);
    snprintf(g->window[g->n], sizeof(g->window[0]), "%s", t->window);
    g->status[g->n] = t->status;
    g->count[g->n] = t->count;
    g->threshold[g->n] = t->threshold;
    g->n++;
}

/* Boards of the commune of board 0 (the registry's order need not group them). */
static uint32_t commune_boards(uint32_t commune, uint32_t *out, uint32_t cap)
{
    uint32_t n = 0;

    for (uint32_t b = 0; b < keng_registry_board_count(keng_unit_registry); b++)
        if (keng_registry_board(keng_unit_registry, b)->commune == commune && n < cap)
            out[n++] = b;
    return n;
}

static keng_alerts_t *silent_rules(keng_counts_t *c, keng_config_t *cfg, got_t *g)
{
    char err[256];
    keng_alerts_t *a;

    keng_config_set(cfg, "alert.quiet.kind", "silent");
    keng_config_set(cfg, "alert.quiet.level", "board");
    keng_config_set(cfg, "alert.quiet_commune.kind", "silent");
    keng_config_set(cfg, "alert.quiet_commune.level", "commune");
    keng_config_set(cfg, "alert.quiet_commune.share", "0.5");
    keng_config_set(cfg, "alert.quiet_commune.days", "10");
    a = keng_alerts_new(cfg, keng_unit_registry, c, err, sizeof(err));
    if (!a)
        fail_msg("keng_alerts_new: %s", err);
    keng_alerts_set_emit(a, on_emit, g);
    return a;
}

/* Counts firing board alerts and notes whether board b's is among them. */
typedef struct firing {
    size_t boards, communes;
} firing_t;

static void count_firing(const keng_alert_t *t, void *arg)
{
    firing_t *f = arg;

    if (t->level == KENG_ALERT_LEVEL_BOARD)
        f->boards++;
    else
        f->communes++;
}

static void test_silent_rule_waits_for_the_watch_then_fires_and_resolves(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    keng_config_t *cfg = keng_config_new();
    got_t g = {0};
    keng_alerts_t *a = silent_rules(c, cfg, &g);
    size_t nboards = keng_registry_board_count(keng_unit_registry);
    uint32_t mine[64],
        n = commune_boards(keng_registry_board(keng_unit_registry, 0)->commune, mine, 64);
    firing_t f = {0};

    (void)state;
    assert_true(n >= 3);
    /* A new deployment: watched from T0, one board of the commune reported on day 2. */
    keng_counts_note_watch_start(c, T0);
    for (int64_t day = 0; day < 30; day++) {
        if (day == 2)
            add(c, mine[1], KENG_KIND_INCIDENT, T0 + 2 * DAY, T0 + 2 * DAY, T0 + 2 * DAY);
        keng_counts_advance(c, T0 + day * DAY);
        keng_alerts_evaluate_every_scope(a, T0 + day * DAY);
        if (day < 10)
            keng_unit_expect_i64(0, g.n, "nothing in the first 10 days of the deployment");
    }
    /* After 10 days the commune rule (days=10) fires: more than half its boards are silent,
     * every one but mine[1]. Boards stay quiet until day 30. */
    keng_alerts_each(a, KENG_ALERT_FIRING, count_firing, &f);
    keng_unit_expect_i64(0, (int64_t)f.boards, "no board silent for 30 days before day 30");
    assert_true(f.communes > 0);
    keng_counts_advance(c, T0 + 30 * DAY);
    keng_alerts_evaluate_all(a, T0 + 30 * DAY);
    memset(&f, 0, sizeof(f));
    keng_alerts_each(a, KENG_ALERT_FIRING, count_firing, &f);
    keng_unit_expect_i64((int64_t)nboards - 1, (int64_t)f.boards,
                         "every board but the one that reported");

    /* mine[0] reports: its alert resolves at the next evaluation, with its window "30d".
     * Its commune has one silent board less, which may resolve the commune's alert too. */
    g.n = 0;
    add(c, mine[0], KENG_KIND_MEDIATION, T0 + 30 * DAY, T0 + 30 * DAY, T0 + 30 * DAY + 1000);
    keng_alerts_evaluate_all(a, T0 + 30 * DAY + 1000);
    assert_true(g.n >= 1 && g.n <= 2);
    int at = strcmp(g.rule[0], "quiet") == 0 ? 0 : 1;
    assert_string_equal(g.rule[at], "quiet");
    assert_string_equal(g.scope[at], keng_registry_board(keng_unit_registry, mine[0])->id);
    assert_int_equal(g.status[at], KENG_ALERT_RESOLVED);
    assert_string_equal(g.window[at], "30d");

    /* mine[1] reported on day 2: silent from day 32 on. */
    g.n = 0;
    keng_counts_advance(c, T0 + 32 * DAY + 2 * DAY);
    keng_alerts_evaluate_all(a, T0 + 32 * DAY + 2 * DAY);
    int found = 0;
    for (int i = 0; i < g.n; i++)
        found += strcmp(g.scope[i], keng_registry_board(keng_unit_registry, mine[1])->id) == 0 &&
                 g.status[i] == KENG_ALERT_FIRING && g.count[i] == 32;
    keng_unit_expect_i64(1, found, "mine[1] fires 30 days after its last report, counting 32 days");
    keng_alerts_destroy(a);
    keng_config_destroy(cfg);
    keng_counts_destroy(c);
}

/* The commune rule fires when MORE than its share is silent: with n boards and share 0.5,
 * at floor(n / 2) + 1 silent boards, and resolves below that. */
static void test_silent_share_threshold_of_a_commune(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    keng_config_t *cfg = keng_config_new();
    got_t g = {0};
    keng_alerts_t *a;
    uint32_t mine[64],
        n = commune_boards(keng_registry_board(keng_unit_registry, 0)->commune, mine, 64);
    const char *commune = keng_registry_commune(keng_unit_registry,
                                                keng_registry_board(keng_unit_registry, 0)->commune)
                              ->id;
    int64_t now = T0 + 100 * DAY, threshold = n / 2 + 1;
    char err[256];

    (void)state;
    keng_config_set(cfg, "alert.quiet_commune.kind", "silent");
    keng_config_set(cfg, "alert.quiet_commune.level", "commune");
    keng_config_set(cfg, "alert.quiet_commune.share", "0.5");
    a = keng_alerts_new(cfg, keng_unit_registry, c, err, sizeof(err));
    if (!a)
        fail_msg("keng_alerts_new: %s", err);
    keng_alerts_set_emit(a, on_emit, &g);
    keng_counts_note_watch_start(c, T0);
    /* Every board of every other commune reports, so only this commune can fire; of this
     * commune, all but threshold boards report. */
    for (uint32_t b = 0; b < keng_registry_board_count(keng_unit_registry); b++)
        if (keng_registry_board(keng_unit_registry, b)->commune !=
            keng_registry_board(keng_unit_registry, 0)->commune)
            add(c, b, KENG_KIND_INCIDENT, now - DAY, now - DAY, now);
    for (uint32_t i = (uint32_t)threshold; i < n; i++)
        add(c, mine[i], KENG_KIND_INCIDENT, now - DAY, now - DAY, now);
    /* threshold - 1 silent: more than half? Only when one more is silent. */
    add(c, mine[0], KENG_KIND_INCIDENT, now - DAY, now - DAY, now);
    keng_alerts_evaluate_every_scope(a, now);
    keng_unit_expect_i64(0, g.n, "exactly floor(n/2) silent boards is not more than half");
    /* mine[0]'s report ages past 30 days (the others' too, but they report again). */
    int64_t later = now + 30 * DAY;
    for (uint32_t b = 0; b < keng_registry_board_count(keng_unit_registry); b++)
        if (b != mine[0] && keng_registry_board(keng_unit_registry, b)->commune !=
                                keng_registry_board(keng_unit_registry, 0)->commune)
            add(c, b, KENG_KIND_INCIDENT, later - DAY, later - DAY, later);
    for (uint32_t i = (uint32_t)threshold; i < n; i++)
        add(c, mine[i], KENG_KIND_INCIDENT, later - DAY, later - DAY, later);
    keng_alerts_evaluate_all(a, later);
    keng_unit_expect_i64(1, g.n, "fires at floor(n/2)+1");
    assert_string_equal(g.scope[0], commune);
    keng_unit_expect_i64(threshold, g.count[0], "count of silent boards");
    keng_unit_expect_i64(threshold, g.threshold[0], "threshold of the commune");
    add(c, mine[1], KENG_KIND_INCIDENT, later, later, later + 1000);
    keng_alerts_evaluate_all(a, later + 1000);
    keng_unit_expect_i64(2, g.n, "resolves when one reports again");
    assert_int_equal(g.status[1], KENG_ALERT_RESOLVED);
    keng_alerts_destroy(a);
    keng_config_destroy(cfg);
    keng_counts_destroy(c);
}

static void test_bad_silent_rules_name_the_key(void **state)
{
    static const char *const cases[][4] = {
        {"alert.q.level", "commune", "alert.q.share", "missing"},
        {"alert.q.level", "board", "alert.q.share=0.5", "alert.q.share"},
        {"alert.q.level", "board", "alert.q.threshold=3", "alert.q.threshold"},
        {"alert.q.level", "board", "alert.q.days=0", "alert.q.days"},
        {"alert.q.level", "commune", "alert.q.share=1", "alert.q.share"},
        {"alert.q.level", "board", "alert.q.window=24h", "alert.q.window"},
    };
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        keng_config_t *cfg = keng_config_new();
        char key[64], *eq;
        keng_config_set(cfg, "alert.q.kind", "silent");
        keng_config_set(cfg, cases[i][0], cases[i][1]);
        snprintf(key, sizeof(key), "%s", cases[i][2]);
        eq = strchr(key, '=');
        if (eq) {
            *eq = '\0';
            keng_config_set(cfg, key, eq + 1);
        }
        err[0] = '\0';
        keng_alerts_t *a = keng_alerts_new(cfg, keng_unit_registry, c, err, sizeof(err));
        if (a)
            fail_msg("case %zu: expected a refusal naming %s, got a rule", i, cases[i][3]);
        if (!strstr(err, cases[i][3]) && !strstr(err, key))
            fail_msg("case %zu: expected the message to name %s, got '%s'", i, cases[i][3], err);
        keng_config_destroy(cfg);
    }
    keng_counts_destroy(c);
}

/* ---- series ---- */

static uint64_t window_count(const keng_counts_t *c, keng_level_t level, uint32_t index,
                             keng_kind_t kind, keng_window_id_t w)
{
    keng_tally_t t;

    keng_counts_get(c, level, index, w, &t);
    return kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations;
}

static uint64_t series_sum(const keng_counts_t *c, keng_level_t level, uint32_t index,
                           keng_kind_t kind, keng_window_id_t w, int64_t step, size_t *npoints)
{
    int64_t now = keng_counts_now(c), from = keng_counts_window_start(now, w);
    int64_t origin = ((from + 7 * HOUR) / step) * step - 7 * HOUR;
    size_t n = (size_t)((now - origin) / step + 1);
    uint64_t *p = calloc(n, sizeof(*p)), sum = 0;

    assert_int_equal(keng_counts_series_add(c, level, index, kind, w, origin, step, p, n), 0);
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    free(p);
    *npoints = n;
    return sum;
}

static void test_series_adds_up_to_the_window_at_bucket_edges(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    const keng_board_t *b0 = keng_registry_board(keng_unit_registry, 0);
    uint64_t x = 88172645463325252ull;
    static const keng_window_id_t windows[] = {KENG_WIN_24H, KENG_WIN_30D, KENG_WIN_365D};
    int64_t clocks[12];
    int nclocks = 0;

    (void)state;
    /* 4,000 events over 400 days on 40 boards, some of them board 0's commune's. */
    for (int i = 0; i < 4000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t board = (uint32_t)(x % 40);
        int64_t age = (int64_t)((x >> 20) % (uint64_t)(400 * DAY));
        add(c, board, (x >> 8) & 1 ? KENG_KIND_MEDIATION : KENG_KIND_INCIDENT, T0 - age, T0 - age,
            T0);
    }
    /* The clock on, just before and just after the edges of each window's buckets. */
    for (int w = 1; w < 5; w++) {
        int64_t g = keng_window_granularity_ms[w];
        int64_t edge = ((T0 + 3 * DAY) / g + 1) * g + keng_window_length_ms[w] % g;
        if (nclocks + 3 > 12)
            break;
        clocks[nclocks++] = edge - 1;
        clocks[nclocks++] = edge;
        clocks[nclocks++] = edge + 1;
    }
    /* Clocks only go forward: sort them. */
    for (int i = 0; i < nclocks; i++)
        for (int j = i + 1; j < nclocks; j++)
            if (clocks[j] < clocks[i]) {
                int64_t t = clocks[i];
                clocks[i] = clocks[j];
                clocks[j] = t;
            }
    for (int k = 0; k < nclocks; k++) {
        keng_counts_advance(c, clocks[k]);
        /* Fresh events for the 24h window, some a minute away from the clock. */
        for (int i = 0; i < 50; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int64_t age =
                i < 5 ? (int64_t)(x % (uint64_t)MIN) : (int64_t)(x % (uint64_t)(25 * HOUR));
            add(c, (uint32_t)(x % 40), (x >> 8) & 1 ? KENG_KIND_MEDIATION : KENG_KIND_INCIDENT,
                clocks[k] - age, clocks[k] - age, clocks[k]);
        }
        for (size_t wi = 0; wi < sizeof(windows) / sizeof(windows[0]); wi++) {
            keng_window_id_t w = windows[wi];
            for (int kind = 0; kind < KENG_KIND_COUNT; kind++) {
                const struct {
                    keng_level_t level;
                    uint32_t index;
                } scopes[] = {{KENG_LEVEL_BOARD, 0},
                              {KENG_LEVEL_COMMUNE, b0->commune},
                              {KENG_LEVEL_DISTRICT, b0->district},
                              {KENG_LEVEL_PROVINCE, 0}};
                for (size_t s = 0; s < 4; s++) {
                    char what[96];
                    size_t n;
                    int64_t step = w == KENG_WIN_24H ? HOUR : DAY;
                    uint64_t want =
                        window_count(c, scopes[s].level, scopes[s].index, (keng_kind_t)kind, w);
                    uint64_t got = series_sum(c, scopes[s].level, scopes[s].index,
                                              (keng_kind_t)kind, w, step, &n);
                    snprintf(what, sizeof(what), "clock %d, %s, %s, %s", k, keng_window_names[w],
                             keng_kind_name((keng_kind_t)kind), keng_level_names[scopes[s].level]);
                    keng_unit_expect_i64((int64_t)want, (int64_t)got, what);
                    if (scopes[s].level == KENG_LEVEL_PROVINCE)
                        assert_true(want > 0);
                    assert_true(n >= (size_t)(keng_window_length_ms[w] / step));
                    assert_true(
                        n <= (size_t)((keng_window_length_ms[w] + keng_window_granularity_ms[w]) /
                                      step) +
                                 2);
                }
            }
        }
    }
    keng_counts_destroy(c);
}

/* Within the last hour the buckets are minutes: an hourly point holds exactly the events of
 * its hour there. */
static void test_series_points_are_exact_in_the_last_hour(void **state)
{
    keng_counts_t *c = keng_counts_new(keng_unit_registry, NULL);
    int64_t now = T0 + 30 * MIN, origin = T0 - 2 * HOUR;
    uint64_t p[3] = {0, 0, 0};

    (void)state;
    add(c, 3, KENG_KIND_INCIDENT, T0 - 1, T0, now);         /* 23:59:59.999 */
    add(c, 3, KENG_KIND_INCIDENT, T0, T0, now);             /* 00:00 */
    add(c, 3, KENG_KIND_INCIDENT, T0 + 29 * MIN, T0, now);  /* 00:29 */
    add(c, 3, KENG_KIND_MEDIATION, T0 + 10 * MIN, T0, now); /* the other kind */
    assert_int_equal(keng_counts_series_add(c, KENG_LEVEL_BOARD, 3, KENG_KIND_INCIDENT,
                                            KENG_WIN_24H, origin, HOUR, p, 3),
                     0);
    keng_unit_expect_i64(0, (int64_t)p[0], "22:00-23:00");
    keng_unit_expect_i64(1, (int64_t)p[1], "23:00-00:00");
    keng_unit_expect_i64(2, (int64_t)p[2], "00:00-");
    assert_int_equal(keng_counts_series_add(c, KENG_LEVEL_BOARD, 3, KENG_KIND_INCIDENT,
                                            KENG_WIN_ALL, origin, HOUR, p, 3),
                     -1);
    keng_counts_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_event_is_latest_report_capped_at_the_clock),
        cmocka_unit_test(test_last_event_and_watch_start_survive_save_and_load),
        cmocka_unit_test(test_version_2_state_derives_the_last_event),
        cmocka_unit_test(test_silent_days_count_from_the_watch_start),
        cmocka_unit_test(test_silent_options_name_the_key),
        cmocka_unit_test(test_silent_rule_waits_for_the_watch_then_fires_and_resolves),
        cmocka_unit_test(test_silent_share_threshold_of_a_commune),
        cmocka_unit_test(test_bad_silent_rules_name_the_key),
        cmocka_unit_test(test_series_adds_up_to_the_window_at_bucket_edges),
        cmocka_unit_test(test_series_points_are_exact_in_the_last_hour),
    };
    return cmocka_run_group_tests(tests, keng_unit_registry_setup, keng_unit_registry_teardown);
}
