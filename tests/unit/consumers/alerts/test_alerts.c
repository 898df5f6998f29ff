/* The alert rule engine against real counts with an injected clock: fires at the threshold,
 * hysteresis, resolution when events leave the window, stable ids, state save/load, reading
 * back transitions, and the Alert record's Avro round trip; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alerts.h"
#include "avro_codec.h"
#include "unit_support.h"

#define MINUTE 60000LL
#define T0     1767225600000LL /* 2026-01-01T00:00:00Z */

typedef struct fixture {
    keng_registry_t *reg;
    keng_counts_t *counts;
    keng_config_t *cfg;
    keng_alerts_t *alerts;
    keng_alert_t got[16];
    char scratch[16][2048];
    int ngot;
    int seq;
    bool board_held, above_held; /* what the holder function answers */
} fixture_t;

/* Keeps a deep copy of t: its strings are only borrowed for the call. The copy goes through
 * the Avro record, which exercises the codec too. */
static void on_emit(const keng_alert_t *t, void *arg)
{
    fixture_t *f = arg;
    unsigned char buf[4096];
    size_t len;
    char err[256];

    assert_true(f->ngot < 16);
    assert_int_equal(keng_avro_encode_alert(t, buf, sizeof(buf), &len, err, sizeof(err)), 0);
    assert_int_equal(keng_avro_decode_alert(buf, len, &f->got[f->ngot], f->scratch[f->ngot],
                                            sizeof(f->scratch[0]), err, sizeof(err)),
                     0);
    f->ngot++;
}

static bool holds(keng_level_t level, uint32_t scope, keng_kind_t kind, void *arg)
{
    const fixture_t *f = arg;

    (void)scope;
    assert_int_equal(kind, KENG_KIND_INCIDENT);
    return level == KENG_LEVEL_BOARD ? f->board_held : f->above_held;
}

static fixture_t *setup_rule_at(const char *level, const char *threshold, const char *resolve_below)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char err[256];

    f->reg = keng_registry_default();
    f->counts = keng_counts_new(f->reg, NULL);
    f->cfg = keng_config_new();
    keng_config_set(f->cfg, "alert.drugs.level", level);
    keng_config_set(f->cfg, "alert.drugs.window", "1h");
    keng_config_set(f->cfg, "alert.drugs.kind", "incident");
    keng_config_set(f->cfg, "alert.drugs.category", "DRUGS");
    keng_config_set(f->cfg, "alert.drugs.threshold", threshold);
    if (resolve_below)
        keng_config_set(f->cfg, "alert.drugs.resolve_below", resolve_below);
    keng_config_set(f->cfg, "alert.drugs.summary", "Xã {scope_name}: {count} vụ ma túy");
    f->alerts = keng_alerts_new(f->cfg, f->reg, f->counts, err, sizeof(err));
    if (!f->alerts)
        fail_msg("keng_alerts_new: %s", err);
    keng_alerts_set_emit(f->alerts, on_emit, f);
    f->board_held = f->above_held = true;
    keng_alerts_set_holder(f->alerts, holds, f);
    return f;
}

static fixture_t *setup_rule(const char *threshold, const char *resolve_below)
{
    return setup_rule_at("commune", threshold, resolve_below);
}

static void teardown_fixture(fixture_t *f)
{
    keng_alerts_destroy(f->alerts);
    keng_config_destroy(f->cfg);
    keng_counts_destroy(f->counts);
    keng_registry_destroy(f->reg);
    free(f);
}

/* A DRUGS incident (or category cat) of board 0, at occurred, counted at now; evaluated
 * unless quiet (as while keng-aggregate catches up after a restart). */
static void add_event(fixture_t *f, keng_category_t cat, int64_t occurred, int64_t now, bool quiet)
{
    keng_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = KENG_KIND_INCIDENT;
    snprintf(ev.event_id, sizeof(ev.event_id), "ev-%d", ++f->seq);
    snprintf(ev.board_id, sizeof(ev.board_id), "%s", keng_registry_board(f->reg, 0)->id);
    ev.occurred_at = occurred;
    ev.reported_at = occurred;
    ev.category = cat;
    assert_int_equal(keng_counts_add(f->counts, 0, &ev, now), KENG_COUNTS_ADDED);
    keng_alerts_note(f->alerts, 0, &ev);
    if (!quiet)
        keng_alerts_evaluate_touched(f->alerts, now);
}

static void add(fixture_t *f, keng_category_t cat, int64_t occurred, int64_t now)
{
    add_event(f, cat, occurred, now, false);
}

static void advance(fixture_t *f, int64_t now)
{
    keng_counts_advance(f->counts, now);
    keng_alerts_evaluate_all(f->alerts, now);
}

static void test_fires_at_threshold_once(void **state)
{
    fixture_t *f = setup_rule("3", NULL);
    const char *commune =
        keng_registry_commune(f->reg, keng_registry_board(f->reg, 0)->commune)->id;
    char expect_id[64];

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    add(f, KENG_CAT_THEFT, T0 - 30 * MINUTE, T0); /* filtered out */
    add(f, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0);
    assert_int_equal(f->ngot, 0);
    add(f, KENG_CAT_DRUGS, T0 - 10 * MINUTE, T0 + 1000);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(f->got[0].status, KENG_ALERT_FIRING);
    assert_int_equal(f->got[0].level, KENG_ALERT_LEVEL_COMMUNE);
    assert_string_equal(f->got[0].scope_id, commune);
    assert_int_equal(f->got[0].count, 3);
    assert_int_equal(f->got[0].starts_at, T0 + 1000);
    snprintf(expect_id, sizeof(expect_id), "%s-%lld", f->got[0].fingerprint, T0 + 1000);
    assert_string_equal(f->got[0].alert_id, expect_id);
    assert_int_equal(f->got[0].nsamples, 3);
    assert_string_equal(f->got[0].sample_event_ids[0], "ev-4"); /* newest first */
    assert_non_null(strstr(f->got[0].summary, ": 3 vụ ma túy"));
    /* More events and timer evaluations: no second FIRING. */
    add(f, KENG_CAT_DRUGS, T0 - 5 * MINUTE, T0 + 2000);
    advance(f, T0 + 3000);
    assert_int_equal(f->ngot, 1);
    keng_alerts_stats_t st;
    keng_alerts_stats(f->alerts, &st);
    assert_int_equal(st.firing, 1);
    teardown_fixture(f);
}

/* A registry switch ends the alerts of the communes that were (resolved at the switch), and
 * the new communes fire anew from the same counts; a version without the level of a rule is
 * refused, naming the rule's key, with nothing changed. */
static void test_registry_switch_resolves_and_refuses(void **state)
{
    fixture_t *f = setup_rule("3", NULL);
    keng_registry_t *listed = keng_unit_two_tier(f->reg);
    char err[256];
    keng_registry_t *next = keng_registry_in_board_order(listed, f->reg, err, sizeof(err));
    const char *old_commune =
        keng_registry_commune(f->reg, keng_registry_board(f->reg, 0)->commune)->id;

    (void)state;
    for (int i = 0; i < 3; i++)
        add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(f->got[0].status, KENG_ALERT_FIRING);
    assert_string_equal(f->got[0].scope_id, old_commune);

    assert_int_equal(keng_counts_set_registry(f->counts, next), 0);
    assert_int_equal(keng_alerts_set_registry(f->alerts, next, T0 + 5000, err, sizeof(err)), 0);
    assert_int_equal(f->ngot, 2);
    assert_int_equal(f->got[1].status, KENG_ALERT_RESOLVED);
    assert_string_equal(f->got[1].scope_id, old_commune);
    assert_int_equal(f->got[1].ends_at, T0 + 5000);
    keng_alerts_evaluate_every_scope(f->alerts, T0 + 6000);
    assert_int_equal(f->ngot, 3);
    assert_int_equal(f->got[2].status, KENG_ALERT_FIRING);
    assert_string_equal(f->got[2].scope_id, "N000");
    assert_int_equal(f->got[2].count, 3);
    keng_alerts_stats_t st;
    keng_alerts_stats(f->alerts, &st);
    assert_int_equal(st.firing, 1);
    /* A board's event after the switch counts under the new commune. */
    add(f, KENG_CAT_DRUGS, T0 - 10 * MINUTE, T0 + 7000);
    assert_int_equal(f->ngot, 3);
    teardown_fixture(f);

    f = setup_rule_at("district", "3", NULL);
    for (int i = 0; i < 3; i++)
        add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(keng_alerts_check_registry(f->alerts, next, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "alert.drugs.level is district"));
    assert_int_equal(keng_alerts_check_registry(f->alerts, f->reg, err, sizeof(err)), 0);
    assert_int_equal(keng_alerts_set_registry(f->alerts, next, T0 + 5000, err, sizeof(err)), -1);
    if (!strstr(err, "alert.drugs.level is district; the registry version's levels are "
                     "province, commune, board"))
        fail_msg("unexpected refusal: %s", err);
    assert_int_equal(f->ngot, 1); /* nothing resolved */
    keng_alerts_stats(f->alerts, &st);
    assert_int_equal(st.firing, 1);
    teardown_fixture(f);
    keng_registry_destroy(next);
    keng_registry_destroy(listed);
}

static void test_window_expiry_resolves_with_hysteresis(void **state)
{
    fixture_t *f = setup_rule("3", "2");

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 50 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 40 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    assert_int_equal(f->ngot, 1);
    /* The first event leaves the hour: 2 is below the threshold, not below resolve_below. */
    advance(f, T0 + 12 * MINUTE);
    assert_int_equal(f->ngot, 1);
    /* The second leaves: 1 < 2 resolves. */
    advance(f, T0 + 22 * MINUTE);
    assert_int_equal(f->ngot, 2);
    assert_int_equal(f->got[1].status, KENG_ALERT_RESOLVED);
    assert_string_equal(f->got[1].alert_id, f->got[0].alert_id);
    assert_true(f->got[1].has_ends_at);
    assert_int_equal(f->got[1].ends_at, T0 + 22 * MINUTE);
    assert_int_equal(f->got[1].count, 1);
    advance(f, T0 + 90 * MINUTE);
    assert_int_equal(f->ngot, 2);
    /* A new crossing is a new alert with a new id. */
    add(f, KENG_CAT_DRUGS, T0 + 80 * MINUTE, T0 + 90 * MINUTE);
    add(f, KENG_CAT_DRUGS, T0 + 81 * MINUTE, T0 + 90 * MINUTE);
    add(f, KENG_CAT_DRUGS, T0 + 82 * MINUTE, T0 + 91 * MINUTE);
    assert_int_equal(f->ngot, 3);
    assert_int_equal(f->got[2].status, KENG_ALERT_FIRING);
    assert_string_equal(f->got[2].fingerprint, f->got[0].fingerprint);
    assert_string_not_equal(f->got[2].alert_id, f->got[0].alert_id);
    teardown_fixture(f);
}

static void test_state_survives_save_and_load(void **state)
{
    fixture_t *f = setup_rule("2", NULL), *g;
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256];

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0);
    assert_int_equal(f->ngot, 1);
    assert_true(keng_alerts_dirty(f->alerts));
    assert_int_equal(keng_alerts_save(f->alerts, &buf, &len), 0);

    /* A restart: the counts come back (here: re-added), the state from the bytes. */
    g = setup_rule("2", NULL);
    assert_int_equal(keng_alerts_load(g->alerts, buf, len, err, sizeof(err)), 0);
    add_event(g, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0 + 5000, true);
    add_event(g, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0 + 5000, true);
    keng_alerts_evaluate_every_scope(g->alerts, T0 + 5000);
    assert_int_equal(g->ngot, 0); /* already firing: not emitted again */
    /* Reading back the FIRING it already holds changes nothing. */
    assert_int_equal(keng_alerts_apply(g->alerts, &f->got[0]), 0);
    advance(g, T0 + 2 * 60 * MINUTE);
    assert_int_equal(g->ngot, 1);
    assert_int_equal(g->got[0].status, KENG_ALERT_RESOLVED);
    assert_string_equal(g->got[0].alert_id, f->got[0].alert_id); /* the id is stable */
    assert_int_equal(g->got[0].starts_at, T0);

    /* Corrupt bytes are refused. */
    buf[len - 1] ^= 0xff;
    assert_int_equal(keng_alerts_load(g->alerts, buf, len - 3, err, sizeof(err)), -1);
    free(buf);
    teardown_fixture(f);
    teardown_fixture(g);
}

static void test_read_back_transitions(void **state)
{
    fixture_t *f = setup_rule("2", NULL), *g;

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0);
    advance(f, T0 + 2 * 60 * MINUTE);
    assert_int_equal(f->ngot, 2);

    g = setup_rule("2", NULL);
    assert_int_equal(keng_alerts_apply(g->alerts, &f->got[0]), 1);
    keng_alerts_stats_t st;
    keng_alerts_stats(g->alerts, &st);
    assert_int_equal(st.firing, 1);
    assert_int_equal(keng_alerts_apply(g->alerts, &f->got[1]), 1);
    assert_int_equal(keng_alerts_apply(g->alerts, &f->got[1]), 0);
    assert_int_equal(keng_alerts_apply(g->alerts, &f->got[0]), 0); /* resolved later */
    keng_alerts_stats(g->alerts, &st);
    assert_int_equal(st.firing, 0);
    teardown_fixture(f);
    teardown_fixture(g);
}

/* A rebalance moves board 0's partition from f to g: f lets its alert go without a
 * RESOLVED, g takes it over from the transitions f emitted and fires nothing new; then the
 * events leave the window and g resolves it under f's id. */
static void test_alerts_move_with_the_partition(void **state)
{
    fixture_t *f = setup_rule_at("board", "2", NULL), *g = setup_rule_at("board", "2", NULL);
    keng_alerts_stats_t st;

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0);
    assert_int_equal(f->ngot, 1);

    /* The revoke: the board's counts are gone from f. */
    f->board_held = false;
    keng_counts_unit_clear(f->counts, 0, KENG_KIND_INCIDENT);
    assert_int_equal(keng_alerts_release_unheld(f->alerts), 1);
    advance(f, T0 + 1000);
    keng_alerts_evaluate_every_scope(f->alerts, T0 + 1000);
    assert_int_equal(f->ngot, 1); /* no RESOLVED for a count that only moved away */
    keng_alerts_stats(f->alerts, &st);
    assert_int_equal(st.firing, 0);
    assert_int_equal(keng_alerts_adopt(f->alerts, &f->got[0]), 0); /* not f's board any more */

    /* The new owner: the counts come with the partition, the alert from the topic. */
    add_event(g, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0 + 2000, true);
    add_event(g, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0 + 2000, true);
    assert_int_equal(keng_alerts_adopt(g->alerts, &f->got[0]), 1);
    keng_alerts_evaluate_every_scope(g->alerts, T0 + 2000);
    assert_int_equal(g->ngot, 0);
    keng_alerts_stats(g->alerts, &st);
    assert_int_equal(st.firing, 1);
    advance(g, T0 + 2 * 60 * MINUTE);
    assert_int_equal(g->ngot, 1);
    assert_int_equal(g->got[0].status, KENG_ALERT_RESOLVED);
    assert_string_equal(g->got[0].alert_id, f->got[0].alert_id);
    teardown_fixture(f);
    teardown_fixture(g);
}

/* Above a board, a count is complete only while every partition is here: a partial one
 * neither fires nor resolves, and the complete one decides once it is back. */
static void test_partial_counts_above_a_board_decide_nothing(void **state)
{
    fixture_t *f = setup_rule("2", NULL);

    (void)state;
    f->above_held = false;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    add(f, KENG_CAT_DRUGS, T0 - 20 * MINUTE, T0);
    keng_alerts_evaluate_every_scope(f->alerts, T0);
    assert_int_equal(f->ngot, 0);
    f->above_held = true;
    keng_alerts_evaluate_every_scope(f->alerts, T0 + 1000);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(f->got[0].status, KENG_ALERT_FIRING);
    /* Held no more, and the events leave the window: nothing emitted; the alert is let go
     * to whichever instance decides now... */
    f->above_held = false;
    advance(f, T0 + 2 * 60 * MINUTE);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(keng_alerts_release_unheld(f->alerts), 1);
    assert_int_equal(keng_alerts_adopt(f->alerts, &f->got[0]), 0); /* not held: skipped */
    /* ...until this process decides again, takes it back from the topic, and resolves it
     * under its id. */
    f->above_held = true;
    assert_int_equal(keng_alerts_adopt(f->alerts, &f->got[0]), 1);
    advance(f, T0 + 2 * 60 * MINUTE + 1000);
    assert_int_equal(f->ngot, 2);
    assert_int_equal(f->got[1].status, KENG_ALERT_RESOLVED);
    assert_string_equal(f->got[1].alert_id, f->got[0].alert_id);
    teardown_fixture(f);
}

/* With several instances, the one deciding a commune adds the units others published: their
 * events touch nothing here, so the timer's evaluation looks at every scope above a board. */
static void test_shared_counts_reach_the_threshold(void **state)
{
    fixture_t *f = setup_rule("3", NULL);
    keng_counts_t *others = keng_counts_new(f->reg, NULL);
    keng_event_t ev;

    (void)state;
    add(f, KENG_CAT_DRUGS, T0 - 30 * MINUTE, T0);
    for (int i = 0; i < 2; i++) {
        memset(&ev, 0, sizeof(ev));
        ev.kind = KENG_KIND_INCIDENT;
        snprintf(ev.event_id, sizeof(ev.event_id), "other-%d", i);
        ev.occurred_at = ev.reported_at = T0 - 10 * MINUTE;
        ev.category = KENG_CAT_DRUGS;
        /* Board 1 shares board 0's commune in the default registry. */
        assert_int_equal(keng_registry_board(f->reg, 1)->commune,
                         keng_registry_board(f->reg, 0)->commune);
        assert_int_equal(keng_counts_add(others, 1, &ev, T0), KENG_COUNTS_ADDED);
    }
    advance(f, T0 + 1000);
    assert_int_equal(f->ngot, 0); /* 1 here: the others' 2 are not added yet */
    keng_alerts_set_shared_counts(f->alerts, others);
    advance(f, T0 + 2000);
    assert_int_equal(f->ngot, 1);
    assert_int_equal(f->got[0].count, 3);
    keng_alerts_set_shared_counts(f->alerts, NULL);
    keng_counts_destroy(others);
    teardown_fixture(f);
}

static void test_bad_rules_name_the_key(void **state)
{
    keng_registry_t *reg = keng_registry_default();
    keng_counts_t *counts = keng_counts_new(reg, NULL);
    keng_config_t *cfg = keng_config_new();
    char err[256];

    (void)state;
    keng_config_set(cfg, "alert.x.level", "hamlet");
    assert_null(keng_alerts_new(cfg, reg, counts, err, sizeof(err)));
    assert_non_null(strstr(err, "alert.x.level"));
    keng_config_set(cfg, "alert.x.level", "board");
    keng_config_set(cfg, "alert.x.kind", "mediation");
    keng_config_set(cfg, "alert.x.window", "24h");
    keng_config_set(cfg, "alert.x.threshold", "5");
    keng_config_set(cfg, "alert.x.category", "DRUGS");
    assert_null(keng_alerts_new(cfg, reg, counts, err, sizeof(err)));
    assert_non_null(strstr(err, "alert.x"));
    keng_config_destroy(cfg);
    keng_counts_destroy(counts);
    keng_registry_destroy(reg);
}

static void test_alert_record_round_trip(void **state)
{
    keng_alert_t a = {.alert_id = "0123456789abcdef-1767225600000",
                      .fingerprint = "0123456789abcdef",
                      .rule = "drugs",
                      .status = KENG_ALERT_RESOLVED,
                      .level = KENG_ALERT_LEVEL_DISTRICT,
                      .scope_id = "D07",
                      .window = "7d",
                      .count = 1,
                      .threshold = 3,
                      .starts_at = T0,
                      .has_ends_at = true,
                      .ends_at = T0 + 99,
                      .summary = "Huyện Quỳnh Lưu: 1 vụ",
                      .nsamples = 2,
                      .sample_event_ids = {"a", "b"}};
    keng_alert_t b;
    unsigned char buf[1024];
    char scratch[1024], err[256];
    size_t len;

    (void)state;
    assert_int_equal(keng_avro_encode_alert(&a, buf, sizeof(buf), &len, err, sizeof(err)), 0);
    assert_int_equal(buf[0], 0);
    assert_int_equal(buf[4], KENG_SCHEMA_ID_ALERT);
    assert_int_equal(
        keng_avro_decode_alert(buf, len, &b, scratch, sizeof(scratch), err, sizeof(err)), 0);
    assert_string_equal(b.alert_id, a.alert_id);
    assert_string_equal(b.summary, a.summary);
    assert_int_equal(b.status, a.status);
    assert_int_equal(b.level, a.level);
    assert_int_equal(b.ends_at, a.ends_at);
    assert_int_equal(b.nsamples, 2);
    assert_string_equal(b.sample_event_ids[1], "b");
    /* Every truncation is refused, never read past. */
    for (size_t n = 0; n < len; n++)
        assert_int_not_equal(
            keng_avro_decode_alert(buf, n, &b, scratch, sizeof(scratch), err, sizeof(err)), 0);
    assert_int_equal(keng_avro_encode_alert(&a, buf, 20, &len, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_at_threshold_once),
        cmocka_unit_test(test_registry_switch_resolves_and_refuses),
        cmocka_unit_test(test_window_expiry_resolves_with_hysteresis),
        cmocka_unit_test(test_state_survives_save_and_load),
        cmocka_unit_test(test_read_back_transitions),
        cmocka_unit_test(test_alerts_move_with_the_partition),
        cmocka_unit_test(test_partial_counts_above_a_board_decide_nothing),
        cmocka_unit_test(test_shared_counts_reach_the_threshold),
        cmocka_unit_test(test_bad_rules_name_the_key),
        cmocka_unit_test(test_alert_record_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
