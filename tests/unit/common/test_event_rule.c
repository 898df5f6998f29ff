/* The one rule for an event's times: its bounds, the order in which it names what is wrong,
 * its dead-letter reasons, and its two config keys; it never touches JSON, Avro or Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "event_rule.h"

#define NOW_MS 1740838500000LL /* 2025-03-01T14:15:00Z */
#define MINUTE 60000LL

static keng_event_t times(int64_t occurred, int64_t reported)
{
    keng_event_t ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.event_id, sizeof(ev.event_id), "e-1");
    ev.occurred_at = occurred;
    ev.reported_at = reported;
    return ev;
}

/* Checks the verdict, the field named and the start of the message. */
static void expect(const keng_event_rule_t *rule, int64_t occurred, int64_t reported,
                   keng_times_verdict_t want, const char *field, const char *prefix)
{
    keng_event_t ev = times(occurred, reported);
    keng_field_error_t err = {{0}, {0}};
    keng_times_verdict_t got = keng_event_check_times(rule, &ev, NOW_MS, &err);

    if (got != want)
        fail_msg("occurred %lld reported %lld: expected verdict %s, got %s (%s)",
                 (long long)occurred, (long long)reported, keng_times_reason(want),
                 keng_times_reason(got), err.message);
    if (want == KENG_TIMES_OK)
        return;
    if (strcmp(err.field, field) != 0)
        fail_msg("expected field '%s', got '%s' (%s)", field, err.field, err.message);
    if (strncmp(err.message, prefix, strlen(prefix)) != 0)
        fail_msg("expected a message starting '%s', got '%s'", prefix, err.message);
}

static void test_default_bounds(void **state)
{
    (void)state;
    expect(NULL, NOW_MS - MINUTE, NOW_MS, KENG_TIMES_OK, "", "");
    /* The years 0001, 1970 and 1999: before 2000-01-01T00:00:00Z. */
    expect(NULL, -62135596800000LL, NOW_MS, KENG_TIMES_TOO_EARLY, "occurred_at",
           "occurred_at is before 2000-01-01T00:00:00.000Z, the earliest time keng takes "
           "(events.min_occurred_at); it was 0001-01-01T00:00:00.000Z");
    expect(NULL, 0, NOW_MS, KENG_TIMES_TOO_EARLY, "occurred_at", "occurred_at is before 2000");
    expect(NULL, KENG_EARLIEST_MS - 1, NOW_MS, KENG_TIMES_TOO_EARLY, "occurred_at",
           "occurred_at is before 2000");
    expect(NULL, KENG_EARLIEST_MS, KENG_EARLIEST_MS, KENG_TIMES_OK, "", "");
    /* Five minutes ahead is a fast clock; a millisecond more is the future. */
    expect(NULL, NOW_MS + 5 * MINUTE, NOW_MS + 5 * MINUTE, KENG_TIMES_OK, "", "");
    expect(NULL, NOW_MS + 5 * MINUTE + 1, NOW_MS + 5 * MINUTE + 1, KENG_TIMES_FUTURE, "occurred_at",
           "occurred_at 2025-03-01T14:20:00.001Z is more than 5 minutes in the future");
    expect(NULL, NOW_MS, NOW_MS + 5 * MINUTE + 1, KENG_TIMES_FUTURE, "reported_at",
           "reported_at 2025-03-01T14:20:00.001Z is more than 5 minutes in the future");
    /* Reported the moment it happened is fine; a millisecond before is not. */
    expect(NULL, NOW_MS - MINUTE, NOW_MS - MINUTE, KENG_TIMES_OK, "", "");
    expect(NULL, NOW_MS - MINUTE, NOW_MS - MINUTE - 1, KENG_TIMES_REPORTED_EARLIER, "reported_at",
           "reported_at 2025-03-01T14:13:59.999Z is before occurred_at 2025-03-01T14:14:00.000Z");
    /* Values at the ends of int64 neither overflow nor pass. */
    expect(NULL, INT64_MAX, INT64_MAX, KENG_TIMES_FUTURE, "occurred_at", "occurred_at");
    expect(NULL, INT64_MIN, NOW_MS, KENG_TIMES_TOO_EARLY, "occurred_at", "occurred_at");
    expect(NULL, NOW_MS, INT64_MIN, KENG_TIMES_REPORTED_EARLIER, "reported_at", "reported_at");
}

/* The first problem in a fixed order: too early, occurred_at ahead, reported before
 * occurred, reported_at ahead. */
static void test_order(void **state)
{
    (void)state;
    expect(NULL, 0, -1, KENG_TIMES_TOO_EARLY, "occurred_at", "occurred_at is before");
    expect(NULL, NOW_MS + 6 * MINUTE, NOW_MS, KENG_TIMES_FUTURE, "occurred_at", "occurred_at");
    expect(NULL, NOW_MS, NOW_MS - 1, KENG_TIMES_REPORTED_EARLIER, "reported_at", "reported_at");
    /* err may be NULL: only the verdict. */
    keng_event_t ev = times(0, 1);
    assert_int_equal(keng_event_check_times(NULL, &ev, NOW_MS, NULL), KENG_TIMES_TOO_EARLY);
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(keng_times_reason(KENG_TIMES_OK), "ok");
    assert_string_equal(keng_times_reason(KENG_TIMES_TOO_EARLY), "occurred-too-early");
    assert_string_equal(keng_times_reason(KENG_TIMES_FUTURE), "future-event");
    assert_string_equal(keng_times_reason(KENG_TIMES_REPORTED_EARLIER), "reported-before-occurred");
}

static void test_configured_bounds(void **state)
{
    keng_config_t *cfg = keng_config_new();
    keng_event_rule_t rule;
    char errstr[256];
    int64_t d2020 = 1577811600000LL; /* 2020-01-01T00:00:00+07:00 */

    (void)state;
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), 0);
    assert_int_equal(rule.min_occurred_at_ms, KENG_EARLIEST_MS);
    assert_int_equal(rule.max_future_ms, KENG_FUTURE_SKEW_MS);

    /* A date is midnight in Asia/Ho_Chi_Minh, as silent.start reads it. */
    keng_config_set(cfg, "events.min_occurred_at", "2020-01-01");
    keng_config_set(cfg, "events.max_future_ms", "1000");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), 0);
    assert_int_equal(rule.min_occurred_at_ms, d2020);
    assert_int_equal(rule.max_future_ms, 1000);
    expect(&rule, d2020 - 1, NOW_MS, KENG_TIMES_TOO_EARLY, "occurred_at",
           "occurred_at is before 2019-12-31T17:00:00.000Z");
    expect(&rule, d2020, NOW_MS, KENG_TIMES_OK, "", "");
    expect(&rule, NOW_MS + 1001, NOW_MS + 1001, KENG_TIMES_FUTURE, "occurred_at",
           "occurred_at 2025-03-01T14:15:01.001Z is more than 1000 ms in the future");
    expect(&rule, NOW_MS + 1000, NOW_MS + 1000, KENG_TIMES_OK, "", "");

    keng_config_set(cfg, "events.min_occurred_at", "2020-01-01T00:00:00+07:00");
    keng_config_set(cfg, "events.max_future_ms", "0");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), 0);
    assert_int_equal(rule.min_occurred_at_ms, d2020);
    expect(&rule, NOW_MS, NOW_MS, KENG_TIMES_OK, "", "");
    expect(&rule, NOW_MS, NOW_MS + 1, KENG_TIMES_FUTURE, "reported_at",
           "reported_at 2025-03-01T14:15:00.001Z is more than 0 ms in the future");

    /* Errors name the key and the value. */
    keng_config_set(cfg, "events.min_occurred_at", "last year");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), -1);
    assert_string_equal(errstr, "events.min_occurred_at: 'last year' is neither a date "
                                "(2020-01-01) nor an RFC 3339 time (2020-01-01T00:00:00+07:00)");
    keng_config_set(cfg, "events.min_occurred_at", "2020-02-30");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), -1);
    keng_config_set(cfg, "events.min_occurred_at", "2020-01-01");
    keng_config_set(cfg, "events.max_future_ms", "86400001");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), -1);
    assert_string_equal(errstr, "events.max_future_ms: 86400001 is outside 0..86400000");
    keng_config_set(cfg, "events.max_future_ms", "-1");
    assert_int_equal(keng_event_rule_from_config(cfg, &rule, errstr, sizeof(errstr)), -1);
    keng_config_destroy(cfg);
}

static void test_listed_keys(void **state)
{
    (void)state;
    assert_string_equal(keng_event_rule_config_keys[0], "events.min_occurred_at");
    assert_string_equal(keng_event_rule_config_keys[1], "events.max_future_ms");
    assert_null(keng_event_rule_config_keys[2]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_bounds), cmocka_unit_test(test_order),
        cmocka_unit_test(test_reasons),        cmocka_unit_test(test_configured_bounds),
        cmocka_unit_test(test_listed_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
