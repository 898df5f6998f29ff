/* The field simulator's generator with fixed seeds: reproducibility, UUIDv4 ids, district
 * weighting by board count, the day/night rhythm, the category and resolution mix, the
 * late, out-of-order and duplicate switches, and a stream across a registry version's time;
 * they never touch Kafka or read the wall clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"
#include "registry.h"
#include "sim.h"
#include "timeutil.h"
#include "unit_support.h"

/* 2025-03-01T00:00:00+07:00 */
#define START_MS (1740762000000LL)

static keng_sim_t *new_sim_rate(uint64_t seed, uint64_t count, double late, double ooo, double dup,
                                double events_per_s)
{
    char err[256] = "";
    keng_sim_opts_t o = {
        .seed = seed,
        .start_ms = START_MS,
        .events_per_s = events_per_s,
        .count = count,
        .late_fraction = late,
        .out_of_order_fraction = ooo,
        .duplicate_fraction = dup,
    };
    keng_sim_t *sim = keng_sim_new(keng_unit_registry, &o, err, sizeof(err));
    if (!sim)
        fail_msg("keng_sim_new: %s", err);
    return sim;
}

static keng_sim_t *new_sim(uint64_t seed, uint64_t count, double late, double ooo, double dup)
{
    return new_sim_rate(seed, count, late, ooo, dup, 0.5);
}

/* |actual - expected| <= tol, with both printed when not. */
static void assert_near(double actual, double expected, double tol, const char *what)
{
    if (fabs(actual - expected) > tol)
        fail_msg("%s: expected %.4f +- %.4f, got %.4f", what, expected, tol, actual);
}

static void same_seed_gives_same_stream(void **state)
{
    keng_sim_t *a = new_sim(42, 500, 0.1, 0.1, 0.1);
    keng_sim_t *b = new_sim(42, 500, 0.1, 0.1, 0.1);
    keng_sim_t *c = new_sim(43, 500, 0.1, 0.1, 0.1);
    keng_event_t ea, eb, ec;
    int differ = 0;

    for (int i = 0; i < 500; i++) {
        assert_int_equal(keng_sim_next(a, &ea), 1);
        assert_int_equal(keng_sim_next(b, &eb), 1);
        assert_int_equal(keng_sim_next(c, &ec), 1);
        assert_string_equal(ea.event_id, eb.event_id);
        assert_string_equal(ea.board_id, eb.board_id);
        assert_int_equal(ea.occurred_at, eb.occurred_at);
        assert_int_equal(ea.reported_at, eb.reported_at);
        differ += strcmp(ea.event_id, ec.event_id) != 0;
    }
    assert_int_equal(differ, 500);
    keng_sim_destroy(a);
    keng_sim_destroy(b);
    keng_sim_destroy(c);
}

static void event_ids_are_uuid_v4(void **state)
{
    keng_sim_t *sim = new_sim(1, 1000, 0, 0, 0);
    keng_event_t ev;

    while (keng_sim_next(sim, &ev)) {
        const char *id = ev.event_id;
        assert_int_equal(strlen(id), 36);
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(id[i], '-');
            else if (!strchr("0123456789abcdef", id[i]))
                fail_msg("event_id %s: character %d is not lowercase hex", id, i);
        }
        assert_int_equal(id[14], '4');
        assert_non_null(strchr("89ab", id[19]));
        assert_true(keng_event_id_valid(id, strlen(id)));
    }
    keng_sim_destroy(sim);
}

static void every_event_is_valid_and_names_a_known_board(void **state)
{
    keng_sim_t *sim = new_sim(7, 3000, 0.2, 0.1, 0.05);
    keng_event_t ev, back;
    keng_field_error_t ferr;
    keng_event_limits_t limits = {.now_ms = START_MS + 365 * 86400000LL};

    while (keng_sim_next(sim, &ev)) {
        json_t *obj = keng_event_to_json(&ev);
        assert_non_null(obj);
        if (keng_event_from_json(obj, ev.kind, &limits, &back, &ferr) < 0)
            fail_msg("event %s does not validate: %s: %s", ev.event_id, ferr.field, ferr.message);
        json_decref(obj);
        assert_true(
            keng_registry_find_board(keng_unit_registry, ev.board_id, strlen(ev.board_id)) >= 0);
        assert_true(ev.occurred_at <= ev.reported_at);
        if (ev.has_group)
            assert_memory_equal(ev.group_id, ev.board_id, strlen(ev.board_id));
    }
    keng_sim_destroy(sim);
}

static void districts_are_weighted_by_their_boards(void **state)
{
    enum { N = 60000 };
    size_t nd = keng_registry_district_count(keng_unit_registry),
           nb = keng_registry_board_count(keng_unit_registry);
    uint64_t *seen = calloc(nd, sizeof(*seen)), *boards = calloc(nd, sizeof(*boards));
    keng_sim_t *sim = new_sim(2025, N, 0, 0, 0);
    keng_event_t ev;

    for (size_t i = 0; i < nb; i++)
        boards[keng_registry_board(keng_unit_registry, (uint32_t)i)->district]++;
    while (keng_sim_next(sim, &ev)) {
        int32_t b = keng_registry_find_board(keng_unit_registry, ev.board_id, strlen(ev.board_id));
        seen[keng_registry_board(keng_unit_registry, (uint32_t)b)->district]++;
    }
    for (size_t d = 0; d < nd; d++) {
        double expected = (double)N * (double)boards[d] / (double)nb;
        /* Five binomial standard deviations: a fixed seed, so this never flickers. */
        double tol = 5 * sqrt(expected * (1 - (double)boards[d] / (double)nb)) + 1;
        char what[64];
        snprintf(what, sizeof(what), "events of %s",
                 keng_registry_district(keng_unit_registry, (uint32_t)d)->id);
        assert_near((double)seen[d], expected, tol, what);
    }
    free(seen);
    free(boards);
    keng_sim_destroy(sim);
}

static void evenings_are_busier_than_nights(void **state)
{
    enum { N = 20000 };
    uint64_t by_hour[24] = {0};
    /* About four and a half simulated days. */
    keng_sim_t *sim = new_sim_rate(5, N, 0, 0, 0, 0.05);
    keng_event_t ev;

    while (keng_sim_next(sim, &ev))
        by_hour[((ev.reported_at + KENG_LOCAL_OFFSET_MS) / 3600000) % 24]++;
    uint64_t evening = by_hour[19] + by_hour[20] + by_hour[21];
    uint64_t night = by_hour[2] + by_hour[3] + by_hour[4];
    double expected =
        (keng_sim_hour_weight(19) + keng_sim_hour_weight(20) + keng_sim_hour_weight(21)) /
        (keng_sim_hour_weight(2) + keng_sim_hour_weight(3) + keng_sim_hour_weight(4));
    assert_near((double)evening / (double)night, expected, expected * 0.2,
                "evening (19-22h) over night (2-5h) events");
    double mean = 0;
    for (int h = 0; h < 24; h++)
        mean += keng_sim_hour_weight(h) / 24;
    assert_near(mean, 1.0, 1e-9, "mean hour weight");
    keng_sim_destroy(sim);
}

static void mix_matches_the_provincial_report(void **state)
{
    enum { N = 50000 };
    uint64_t inc = 0, med = 0, transferred = 0, by_cat[KENG_CAT_COUNT] = {0};
    uint64_t reconciled = 0;
    keng_sim_t *sim = new_sim(11, N, 0, 0, 0);
    keng_event_t ev;

    while (keng_sim_next(sim, &ev)) {
        if (ev.kind == KENG_KIND_INCIDENT) {
            inc++;
            by_cat[ev.category]++;
            transferred += ev.resolution == KENG_RES_TRANSFERRED_TO_POLICE;
        } else {
            med++;
            reconciled += ev.outcome == KENG_OUTCOME_RECONCILED;
        }
    }
    assert_near((double)med / (double)inc, 2.0 / 3.0, 0.03, "mediations per incident");
    assert_near((double)transferred / (double)inc, 0.40, 0.02, "share transferred to police");
    assert_near(keng_sim_transfer_share(), 0.40, 0.01, "designed share transferred");
    assert_near((double)reconciled / (double)med, 0.80, 0.02, "share of mediations reconciled");
    for (int c = 0; c < KENG_CAT_COUNT; c++)
        assert_true(by_cat[KENG_CAT_THEFT] >= by_cat[c]);
    assert_true(by_cat[KENG_CAT_HUMAN_TRAFFICKING] < inc / 100);
    assert_true(by_cat[KENG_CAT_PUBLIC_DISORDER] > inc / 10);
    assert_true(by_cat[KENG_CAT_TRAFFIC] > inc / 10);
    assert_true(by_cat[KENG_CAT_DOMESTIC_VIOLENCE] > inc / 20);
    keng_sim_destroy(sim);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void duplicates_resend_earlier_events_exactly(void **state)
{
    enum { N = 20000 };
    char(*ids)[KENG_EVENT_ID_MAX + 1] = calloc(N, sizeof(*ids));
    keng_sim_t *sim = new_sim(99, N, 0, 0, 0.1);
    keng_event_t ev;
    keng_sim_stats_t st;
    size_t n = 0, distinct = 0;

    while (keng_sim_next(sim, &ev))
        memcpy(ids[n++], ev.event_id, sizeof(ids[0]));
    keng_sim_get_stats(sim, &st);
    assert_int_equal(n, N);
    assert_int_equal(st.emitted, N);
    qsort(ids, n, sizeof(ids[0]), cmp_str);
    for (size_t i = 0; i < n; i++)
        distinct += i == 0 || strcmp(ids[i], ids[i - 1]) != 0;
    /* Every duplicate reuses an event id, so the ids tell exactly how many there were. */
    assert_int_equal(n - distinct, st.duplicates);
    assert_near((double)st.duplicates / N, 0.1, 0.01, "duplicate fraction");
    free(ids);
    keng_sim_destroy(sim);
}

static void a_duplicate_is_a_byte_for_byte_resend(void **state)
{
    enum { N = 2000 };
    json_t *seen = json_object();
    keng_sim_t *sim = new_sim(3, N, 0.1, 0, 0.2);
    keng_event_t ev;
    int dups = 0;

    while (keng_sim_next(sim, &ev)) {
        json_t *obj = keng_event_to_json(&ev);
        json_t *before = json_object_get(seen, ev.event_id);
        if (before) {
            dups++;
            assert_true(json_equal(before, obj));
            json_decref(obj);
        } else {
            json_object_set_new(seen, ev.event_id, obj);
        }
    }
    assert_true(dups > N / 10);
    json_decref(seen);
    keng_sim_destroy(sim);
}

static void late_events_occur_hours_to_days_before_report(void **state)
{
    enum { N = 20000 };
    keng_sim_t *sim = new_sim(17, N, 0.25, 0, 0);
    keng_event_t ev;
    keng_sim_stats_t st;
    uint64_t late = 0;

    while (keng_sim_next(sim, &ev)) {
        int64_t delay = ev.reported_at - ev.occurred_at;
        assert_true(delay >= 0);
        assert_true(delay <= 7 * 86400000LL);
        late += delay >= 3600000;
    }
    keng_sim_get_stats(sim, &st);
    /* On-time events occur at most 50 minutes before their report, so the hour splits them. */
    assert_int_equal(late, st.late);
    assert_near((double)late / N, 0.25, 0.015, "late fraction");
    keng_sim_destroy(sim);
}

static void out_of_order_events_come_after_later_ones(void **state)
{
    enum { N = 20000 };
    keng_sim_t *sim = new_sim(23, N, 0, 0.1, 0);
    keng_event_t ev;
    keng_sim_stats_t st;
    int64_t newest = 0;
    uint64_t behind = 0, emitted = 0;

    while (keng_sim_next(sim, &ev)) {
        emitted++;
        if (ev.reported_at < newest)
            behind++;
        if (ev.reported_at > newest)
            newest = ev.reported_at;
    }
    keng_sim_get_stats(sim, &st);
    assert_int_equal(emitted, N); /* held events are let out before the end */
    assert_near((double)st.out_of_order / N, 0.1, 0.01, "out-of-order fraction");
    /* A held event is behind unless nothing newer came out while it waited. */
    assert_true(behind <= st.out_of_order);
    assert_true(behind >= st.out_of_order * 9 / 10);
    keng_sim_destroy(sim);
}

static void the_ceiling_holds_the_clock(void **state)
{
    keng_sim_t *sim = new_sim(8, 500, 0, 0, 0);
    keng_event_t ev;
    int64_t ceiling = START_MS + 60000;

    keng_sim_set_ceiling(sim, ceiling);
    while (keng_sim_next(sim, &ev))
        assert_true(ev.reported_at <= ceiling);
    assert_int_equal(keng_sim_clock(sim), ceiling);
    keng_sim_destroy(sim);
}

/* Two versions as a switch has them: the second, at SWITCH_MS, adds B5 and removes B3, and has
 * no district level. */
#define SWITCH_MS (START_MS + 2 * 86400000LL)
#define SPAN_MS   (4 * 86400000LL)
#define HEAD                                                                                       \
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
static const char version_a[] = HEAD "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,5,5\n"
                                     "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,5,5\n"
                                     "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5\n";
static const char version_b[] = HEAD "B1,Thôn 1,N1,Xã Mới,,,5,5\n"
                                     "B2,Thôn 2,N1,Xã Mới,,,5,5\n"
                                     "B5,Thôn 5,N1,Xã Mới,,,5,5\n";

struct two_versions {
    keng_registry_t *a, *b;
    keng_sim_version_t v[2];
};

static void load_two_versions(struct two_versions *t)
{
    char err[256] = "";

    t->a = keng_registry_load_text(version_a, strlen(version_a), "a", err, sizeof(err));
    if (!t->a)
        fail_msg("version a: %s", err);
    t->b = keng_registry_load_text(version_b, strlen(version_b), "b", err, sizeof(err));
    if (!t->b)
        fail_msg("version b: %s", err);
    t->v[0] = (keng_sim_version_t){t->a, START_MS - 30 * 86400000LL};
    t->v[1] = (keng_sim_version_t){t->b, SWITCH_MS};
}

static void free_two_versions(struct two_versions *t)
{
    keng_registry_destroy(t->a);
    keng_registry_destroy(t->b);
}

/* Four days of events, the switch in the middle. */
static keng_sim_t *new_sim_across(const struct two_versions *t, uint64_t seed, uint64_t count,
                                  double late, double crossing, double ooo, double dup)
{
    char err[256] = "";
    keng_sim_opts_t o = {
        .seed = seed,
        .start_ms = START_MS,
        .events_per_s = (double)count / (SPAN_MS / 1000.0),
        .count = count,
        .late_fraction = late,
        .out_of_order_fraction = ooo,
        .duplicate_fraction = dup,
        .crossing_fraction = crossing,
    };
    keng_sim_t *sim = keng_sim_new_versions(t->v, 2, &o, err, sizeof(err));
    if (!sim)
        fail_msg("keng_sim_new_versions: %s", err);
    return sim;
}

static bool has_board(const keng_registry_t *reg, const char *id)
{
    return keng_registry_find_board(reg, id, strlen(id)) >= 0;
}

static void boards_come_from_the_version_in_force_when_the_event_occurred(void **state)
{
    struct two_versions t;
    keng_event_t ev;
    uint64_t before = 0, after = 0, added = 0, removed = 0;

    load_two_versions(&t);
    keng_sim_t *sim = new_sim_across(&t, 3, 6000, 0.3, 0.5, 0.1, 0.05);
    while (keng_sim_next(sim, &ev)) {
        const keng_registry_t *in_force = ev.occurred_at < SWITCH_MS ? t.a : t.b;
        if (!has_board(in_force, ev.board_id))
            fail_msg("event %s: board %s occurred at %lld, %s the switch at %lld, and the "
                     "version in force then has not got it",
                     ev.event_id, ev.board_id, (long long)ev.occurred_at,
                     ev.occurred_at < SWITCH_MS ? "before" : "after", (long long)SWITCH_MS);
        /* A board only the version to come has is never reported before its time. */
        if (!has_board(t.a, ev.board_id) && ev.reported_at < SWITCH_MS)
            fail_msg("event %s: board %s reported at %lld, before its version's time %lld",
                     ev.event_id, ev.board_id, (long long)ev.reported_at, (long long)SWITCH_MS);
        assert_true(ev.occurred_at <= ev.reported_at);
        before += ev.occurred_at < SWITCH_MS;
        after += ev.occurred_at >= SWITCH_MS;
        added += strcmp(ev.board_id, "B5") == 0;
        removed += strcmp(ev.board_id, "B3") == 0;
    }
    if (before < 2000 || after < 2000 || added < 500 || removed < 500)
        fail_msg("expected events on both sides (> 2000 each) and of the added and removed "
                 "boards (> 500 each); got %llu before, %llu after, %llu of B5, %llu of B3",
                 (unsigned long long)before, (unsigned long long)after, (unsigned long long)added,
                 (unsigned long long)removed);
    keng_sim_destroy(sim);
    free_two_versions(&t);
}

/* Of the late events reported in the week after the switch, the share asked occurred before
 * it: none, about half, or all. */
static void late_events_cross_the_switch_in_the_share_asked(void **state)
{
    static const double shares[] = {0, 0.5, 1};
    struct two_versions t;
    keng_event_t ev;
    keng_sim_stats_t st;

    load_two_versions(&t);
    for (size_t i = 0; i < sizeof(shares) / sizeof(shares[0]); i++) {
        keng_sim_t *sim = new_sim_across(&t, 11, 20000, 0.3, shares[i], 0, 0);
        uint64_t late_after = 0, crossing = 0, all_crossing = 0;
        while (keng_sim_next(sim, &ev)) {
            bool crosses = ev.occurred_at < SWITCH_MS && ev.reported_at >= SWITCH_MS;
            all_crossing += crosses;
            /* Late and reported after the switch (here always within the week after it). */
            if (ev.reported_at >= SWITCH_MS && ev.reported_at - ev.occurred_at >= 3600000) {
                late_after++;
                crossing += crosses;
            }
        }
        keng_sim_get_stats(sim, &st);
        assert_true(late_after > 2000);
        assert_near((double)crossing / (double)late_after, shares[i], 0.03,
                    "share of the late events after the switch that occurred before it");
        assert_int_equal(st.crossing, all_crossing);
        if (shares[i] > 0)
            assert_true(crossing > 0);
        keng_sim_destroy(sim);
    }
    free_two_versions(&t);
}

static void the_same_seed_gives_the_same_stream_across_a_switch(void **state)
{
    struct two_versions t;
    keng_event_t ea, eb, ec;
    int differ = 0;

    load_two_versions(&t);
    keng_sim_t *a = new_sim_across(&t, 42, 2000, 0.2, 0.5, 0.1, 0.1);
    keng_sim_t *b = new_sim_across(&t, 42, 2000, 0.2, 0.5, 0.1, 0.1);
    keng_sim_t *c = new_sim_across(&t, 43, 2000, 0.2, 0.5, 0.1, 0.1);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(keng_sim_next(a, &ea), 1);
        assert_int_equal(keng_sim_next(b, &eb), 1);
        assert_int_equal(keng_sim_next(c, &ec), 1);
        assert_string_equal(ea.event_id, eb.event_id);
        assert_string_equal(ea.board_id, eb.board_id);
        assert_int_equal(ea.occurred_at, eb.occurred_at);
        assert_int_equal(ea.reported_at, eb.reported_at);
        assert_int_equal(ea.kind, eb.kind);
        differ += strcmp(ea.event_id, ec.event_id) != 0;
    }
    assert_int_equal(differ, 2000);
    keng_sim_destroy(a);
    keng_sim_destroy(b);
    keng_sim_destroy(c);
    free_two_versions(&t);
}

static void bad_versions_are_refused(void **state)
{
    struct two_versions t;
    char err[256];
    keng_sim_opts_t o = {.seed = 1, .start_ms = START_MS, .events_per_s = 1};

    load_two_versions(&t);
    t.v[1].effective_ms = t.v[0].effective_ms;
    assert_null(keng_sim_new_versions(t.v, 2, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "increase"));
    t.v[1].effective_ms = SWITCH_MS;
    o.start_ms = t.v[0].effective_ms - 1;
    assert_null(keng_sim_new_versions(t.v, 2, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "before the first registry version"));
    o.start_ms = START_MS;
    o.crossing_fraction = 1.5;
    assert_null(keng_sim_new_versions(t.v, 2, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "crossing"));
    free_two_versions(&t);
}

static void bad_options_are_refused(void **state)
{
    char err[256];
    keng_sim_opts_t o = {.seed = 1, .start_ms = START_MS, .events_per_s = 0};

    assert_null(keng_sim_new(keng_unit_registry, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "rate"));
    o.events_per_s = 1;
    o.duplicate_fraction = 1.0;
    assert_null(keng_sim_new(keng_unit_registry, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "duplicate"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_seed_gives_same_stream),
        cmocka_unit_test(event_ids_are_uuid_v4),
        cmocka_unit_test(every_event_is_valid_and_names_a_known_board),
        cmocka_unit_test(districts_are_weighted_by_their_boards),
        cmocka_unit_test(evenings_are_busier_than_nights),
        cmocka_unit_test(mix_matches_the_provincial_report),
        cmocka_unit_test(duplicates_resend_earlier_events_exactly),
        cmocka_unit_test(a_duplicate_is_a_byte_for_byte_resend),
        cmocka_unit_test(late_events_occur_hours_to_days_before_report),
        cmocka_unit_test(out_of_order_events_come_after_later_ones),
        cmocka_unit_test(the_ceiling_holds_the_clock),
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(boards_come_from_the_version_in_force_when_the_event_occurred),
        cmocka_unit_test(late_events_cross_the_switch_in_the_share_asked),
        cmocka_unit_test(the_same_seed_gives_the_same_stream_across_a_switch),
        cmocka_unit_test(bad_versions_are_refused),
    };
    return cmocka_run_group_tests(tests, keng_unit_registry_setup, keng_unit_registry_teardown);
}
