/* The alert rules read from the config: every refusal names the key and says what the field
 * takes, word for word, so that moving or reshaping the rule parser cannot change what an
 * operator reads; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alerts.h"
#include "config.h"
#include "counts.h"
#include "registry.h"

/* Builds the engine from the key/value pairs (NULL-terminated) and expects it refused with
 * exactly want. */
static void expect_refused(const char *want, const char *const *kv)
{
    keng_registry_t *reg = keng_registry_default();
    keng_counts_t *counts = keng_counts_new(reg, NULL);
    keng_config_t *cfg = keng_config_new();
    keng_alerts_t *a;
    char err[512] = "";

    for (size_t i = 0; kv[i]; i += 2)
        keng_config_set(cfg, kv[i], kv[i + 1]);
    a = keng_alerts_new(cfg, reg, counts, err, sizeof(err));
    if (a)
        fail_msg("expected the config refused with \"%s\", actual: accepted", want);
    if (strcmp(err, want) != 0)
        fail_msg("expected \"%s\"\nactual   \"%s\"", want, err);
    keng_config_destroy(cfg);
    keng_counts_destroy(counts);
    keng_registry_destroy(reg);
}

#define RULE(name)                                                                                 \
    "alert." name ".level", "district", "alert." name ".window", "24h", "alert." name ".kind",     \
        "incident", "alert." name ".threshold", "5"

static void test_a_bad_rule_name_is_refused(void **state)
{
    const char *kv[] = {"alert.bad name.level", "district", NULL};
    (void)state;
    expect_refused("alert.bad name.level: alert keys are alert.<name>.<field>, the name of 1 to "
                   "63 letters, digits, '_' or '-'",
                   kv);
}

static void test_an_unknown_field_is_refused(void **state)
{
    const char *kv[] = {"alert.r.colour", "red", NULL};
    (void)state;
    expect_refused("alert.r.colour: unknown field 'colour' (expected level, window, kind, "
                   "category, resolution, outcome, threshold, resolve_below, summary, severity, "
                   "days or share)",
                   kv);
}

static void test_each_field_says_what_it_takes(void **state)
{
    static const char *const cases[][3] = {
        {"alert.r.level", "hamlet", "expected board, commune, district or province"},
        {"alert.r.window", "all", "expected 1h, 24h, 7d, 30d or 365d"},
        {"alert.r.kind", "theft", "expected incident, mediation or silent"},
        {"alert.r.category", "drugs", "expected an IncidentCategory symbol such as DRUGS"},
        {"alert.r.resolution", "DONE",
         "expected PENDING, HANDLED_LOCALLY or TRANSFERRED_TO_POLICE"},
        {"alert.r.outcome", "WON", "expected RECONCILED, NOT_RECONCILED or REFERRED"},
        {"alert.r.threshold", "0", "expected a whole number from 1 to 2147483647"},
        {"alert.r.resolve_below", "x", "expected a whole number from 1 to 2147483647"},
        {"alert.r.severity", "very bad",
         "expected 1 to 31 letters, digits, '_' or '-', such as critical"},
        {"alert.r.days", "366", "expected a whole number of days from 1 to 365"},
        {"alert.r.share", "1", "expected a share of the boards from 0 to below 1, such as 0.5"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *kv[] = {cases[i][0], cases[i][1], NULL};
        char want[512];
        snprintf(want, sizeof(want), "%s: '%s' is not valid here (%s)", cases[i][0], cases[i][1],
                 cases[i][2]);
        expect_refused(want, kv);
    }
}

static void test_rule_checks_name_the_rule(void **state)
{
    const char *missing[] = {"alert.r.level", "district", "alert.r.window", "24h", "alert.r.kind",
                             "incident",      NULL};
    const char *two_filters[] = {
        RULE("r"), "alert.r.category", "DRUGS", "alert.r.resolution", "PENDING", NULL};
    const char *wrong_kind[] = {RULE("r"), "alert.r.outcome", "REFERRED", NULL};
    const char *above[] = {RULE("r"), "alert.r.resolve_below", "6", NULL};
    const char *days[] = {RULE("r"), "alert.r.days", "3", NULL};
    const char *silent_window[] = {
        "alert.s.kind", "silent", "alert.s.level", "board", "alert.s.window", "24h", NULL};
    const char *silent_share[] = {
        "alert.s.kind", "silent", "alert.s.level", "board", "alert.s.share", "0.5", NULL};
    const char *silent_no_share[] = {"alert.s.kind", "silent", "alert.s.level", "commune", NULL};
    const char *silent_no_level[] = {"alert.s.kind", "silent", NULL};
    (void)state;
    expect_refused("alert.r.threshold is missing (a rule needs level, window, kind and threshold)",
                   missing);
    /* Which of the two keys is refused depends on the order the config holds them in. */
    {
        keng_registry_t *reg = keng_registry_default();
        keng_counts_t *counts = keng_counts_new(reg, NULL);
        keng_config_t *cfg = keng_config_new();
        char err[512] = "";
        for (size_t i = 0; two_filters[i]; i += 2)
            keng_config_set(cfg, two_filters[i], two_filters[i + 1]);
        assert_null(keng_alerts_new(cfg, reg, counts, err, sizeof(err)));
        if (strcmp(err, "alert.r.category: a rule takes at most one of category, resolution and "
                        "outcome") != 0 &&
            strcmp(err, "alert.r.resolution: a rule takes at most one of category, resolution "
                        "and outcome") != 0)
            fail_msg("expected \"alert.r.<category or resolution>: a rule takes at most one of "
                     "category, resolution and outcome\"\nactual   \"%s\"",
                     err);
        keng_config_destroy(cfg);
        keng_counts_destroy(counts);
        keng_registry_destroy(reg);
    }
    expect_refused("alert.r: category and resolution filter incidents, outcome mediations; the "
                   "rule's kind is incident",
                   wrong_kind);
    expect_refused("alert.r.resolve_below (6) must not exceed the threshold (5)", above);
    expect_refused("alert.r.days applies to silent rules only (kind=silent)", days);
    expect_refused("alert.s.window does not apply to a silent rule (it takes level, days, share, "
                   "summary and severity)",
                   silent_window);
    expect_refused("alert.s.share applies to a silent rule above a board (commune, district or "
                   "province); a board is silent or not",
                   silent_share);
    expect_refused("alert.s.share is missing (a silent rule for a commune fires when more than "
                   "that share of its boards is silent, e.g. 0.5)",
                   silent_no_share);
    expect_refused("alert.s.level is missing (a silent rule needs a level)", silent_no_level);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_bad_rule_name_is_refused),
        cmocka_unit_test(test_an_unknown_field_is_refused),
        cmocka_unit_test(test_each_field_says_what_it_takes),
        cmocka_unit_test(test_rule_checks_name_the_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
