/* RFC 3339 parsing and formatting: offsets, fractions, calendars and what must be refused; they
 * never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "timeutil.h"

static int64_t parse(const char *s)
{
    int64_t ms = 0;
    int rc = keng_time_parse_rfc3339(s, strlen(s), &ms);
    if (rc != 0)
        fail_msg("expected '%s' to parse, but it was refused", s);
    return ms;
}

static void test_offset_and_utc_agree(void **state)
{
    (void)state;
    assert_int_equal(parse("2025-03-01T21:15:00+07:00"), 1740838500000LL);
    assert_int_equal(parse("2025-03-01T14:15:00Z"), 1740838500000LL);
    assert_int_equal(parse("2025-03-01t14:15:00z"), 1740838500000LL);
    assert_int_equal(parse("2025-03-01 14:15:00Z"), 1740838500000LL);
    assert_int_equal(parse("2025-03-01T09:45:00-04:30"), 1740838500000LL);
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2000-01-01T00:00:00Z"), 946684800000LL);
}

static void test_fractional_seconds(void **state)
{
    (void)state;
    assert_int_equal(parse("2025-03-01T14:15:00.5Z"), 1740838500500LL);
    assert_int_equal(parse("2025-03-01T14:15:00.123Z"), 1740838500123LL);
    /* Digits past milliseconds are truncated, not rounded. */
    assert_int_equal(parse("2025-03-01T14:15:00.123999999+00:00"), 1740838500123LL);
}

static void test_calendar(void **state)
{
    (void)state;
    assert_int_equal(parse("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal(parse("2000-02-29T00:00:00Z"), 951782400000LL);
    assert_int_equal(parse("2024-12-31T23:59:59.999Z"), 1735689599999LL);
    assert_int_equal(parse("1969-12-31T23:59:59Z"), -1000);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "2025-03-01",
        "2025-03-01T21:15:00",       /* no offset */
        "2025-03-01T21:15+07:00",    /* no seconds */
        "2025-3-01T21:15:00Z",       /* one-digit month */
        "2025-13-01T00:00:00Z",      /* month 13 */
        "2023-02-29T00:00:00Z",      /* not a leap year */
        "1900-02-29T00:00:00Z",      /* century rule */
        "2025-04-31T00:00:00Z",      /* April has 30 days */
        "2025-03-01T24:00:00Z",      /* hour 24 */
        "2025-03-01T21:60:00Z",      /* minute 60 */
        "2025-03-01T21:15:00.Z",     /* empty fraction */
        "2025-03-01T21:15:00+0700",  /* offset without colon */
        "2025-03-01T21:15:00+24:00", /* offset hour 24 */
        "2025-03-01T21:15:00Z ",     /* trailing space */
        "2025-03-01T21:15:00Zjunk",  /* trailing text */
        "1740838500000",             /* epoch ms belong to JSON numbers, not strings */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 0;
        int rc = keng_time_parse_rfc3339(bad[i], strlen(bad[i]), &ms);
        if (rc != -1)
            fail_msg("expected '%s' to be refused (-1), got %d with %lld ms", bad[i], rc,
                     (long long)ms);
    }
    int64_t ms;
    /* The length is honoured: a valid prefix of a longer buffer parses. */
    assert_int_equal(keng_time_parse_rfc3339("2025-03-01T14:15:00Zxyz", 20, &ms), 0);
    assert_int_equal(ms, 1740838500000LL);
}

static void test_format(void **state)
{
    char buf[32];
    (void)state;
    assert_string_equal(keng_time_format_utc(1740838500000LL, buf, sizeof(buf)),
                        "2025-03-01T14:15:00.000Z");
    assert_string_equal(keng_time_format_utc(1740838500123LL, buf, sizeof(buf)),
                        "2025-03-01T14:15:00.123Z");
    assert_string_equal(keng_time_format_utc(-1, buf, sizeof(buf)), "1969-12-31T23:59:59.999Z");
    assert_string_equal(keng_time_format_local(1740838500000LL, buf, sizeof(buf)),
                        "2025-03-01T21:15:00.000+07:00");
    /* Local midnight crossing: 17:30Z is already the next day in Vietnam. */
    assert_string_equal(keng_time_format_local(parse("2024-12-31T17:30:00Z"), buf, sizeof(buf)),
                        "2025-01-01T00:30:00.000+07:00");
    assert_int_equal(strlen(keng_time_format_utc(0, buf, sizeof(buf))), 24);
    assert_int_equal(strlen(keng_time_format_local(0, buf, sizeof(buf))), 29);
}

static void test_format_parse_round_trip(void **state)
{
    char buf[32];
    (void)state;
    for (int64_t ms = 946684800000LL; ms < 4102444800000LL; ms += 86400000LL * 37 + 3723001) {
        keng_time_format_utc(ms, buf, sizeof(buf));
        assert_int_equal(parse(buf), ms);
        keng_time_format_local(ms, buf, sizeof(buf));
        assert_int_equal(parse(buf), ms);
    }
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t now = keng_now_ms();
    assert_true(now > 1700000000000LL);
    int64_t a = keng_monotonic_ms(), b = keng_monotonic_ms();
    assert_true(b >= a);
}

/* --effective and --previous-effective of keng-registry: a date is its midnight in
 * Asia/Ho_Chi_Minh, anything else must be RFC 3339. */
static void test_day_or_rfc3339(void **state)
{
    int64_t ms = 0, expected = 0;

    (void)state;
    assert_int_equal(keng_time_parse_rfc3339("2025-06-30T17:00:00Z", 20, &expected), 0);
    assert_int_equal(keng_time_parse_day_or_rfc3339("2025-07-01", &ms), 0);
    assert_int_equal(ms, expected);
    assert_int_equal(keng_time_parse_day_or_rfc3339("2025-07-01T00:00:00+07:00", &ms), 0);
    assert_int_equal(ms, expected);
    assert_int_equal(keng_time_parse_day_or_rfc3339("2025-13-01", &ms), -1);
    assert_int_equal(keng_time_parse_day_or_rfc3339("2025-7-1", &ms), -1);
    assert_int_equal(keng_time_parse_day_or_rfc3339("2025-07-01x", &ms), -1);
    assert_int_equal(keng_time_parse_day_or_rfc3339("", &ms), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offset_and_utc_agree),
        cmocka_unit_test(test_fractional_seconds),
        cmocka_unit_test(test_calendar),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_day_or_rfc3339),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
