/* keng-produce's progress line: thousands separators, durations, share done, rate, ETA; they
 * never write to a terminal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "progress.h"

static void counts_get_thousands_separators(void **state)
{
    char buf[32];
    assert_string_equal(keng_progress_format_count(0, buf, sizeof(buf)), "0");
    assert_string_equal(keng_progress_format_count(999, buf, sizeof(buf)), "999");
    assert_string_equal(keng_progress_format_count(1000, buf, sizeof(buf)), "1,000");
    assert_string_equal(keng_progress_format_count(1234567, buf, sizeof(buf)), "1,234,567");
    assert_string_equal(keng_progress_format_count(18446744073709551615ULL, buf, sizeof(buf)),
                        "18,446,744,073,709,551,615");
}

static void durations_read_as_clock_time(void **state)
{
    char buf[32];
    assert_string_equal(keng_progress_format_duration(0, buf, sizeof(buf)), "0:00");
    assert_string_equal(keng_progress_format_duration(42, buf, sizeof(buf)), "0:42");
    assert_string_equal(keng_progress_format_duration(725, buf, sizeof(buf)), "12:05");
    assert_string_equal(keng_progress_format_duration(3 * 3600 + 2 * 60 + 10, buf, sizeof(buf)),
                        "3:02:10");
}

static void known_size_shows_bar_share_rate_and_eta(void **state)
{
    char buf[256];
    /* A quarter of the bytes in 10 s: 30 s to go. */
    keng_progress_state_t st = {
        .lines = 12345, .bytes_done = 250, .bytes_total = 1000, .elapsed_ms = 10000};
    size_t n = keng_progress_format(&st, 100, buf, sizeof(buf));

    assert_int_equal(n, strlen(buf));
    assert_true(n <= 100);
    assert_non_null(strstr(buf, " 25%  12,345 lines  1,234 lines/s  ETA 0:30"));
    assert_int_equal(buf[0], '[');
    /* 40 cells at most, a quarter filled. */
    assert_non_null(strstr(buf, "[##########......"));
}

static void narrow_terminal_drops_the_bar(void **state)
{
    char buf[256];
    keng_progress_state_t st = {
        .lines = 10, .bytes_done = 500, .bytes_total = 1000, .elapsed_ms = 1000};

    keng_progress_format(&st, 40, buf, sizeof(buf));
    assert_string_equal(buf, " 50%  10 lines  10 lines/s  ETA 0:01");
}

static void unknown_size_shows_lines_and_rate_only(void **state)
{
    char buf[256];
    keng_progress_state_t st = {.lines = 5000, .bytes_done = 123456, .elapsed_ms = 2000};

    keng_progress_format(&st, 100, buf, sizeof(buf));
    assert_string_equal(buf, "5,000 lines  2,500 lines/s");
}

static void nothing_read_yet_has_no_eta(void **state)
{
    char buf[256];
    keng_progress_state_t st = {.bytes_total = 1000};

    keng_progress_format(&st, 40, buf, sizeof(buf));
    assert_string_equal(buf, "  0%  0 lines  0 lines/s  ETA ?");
}

static void small_buffer_is_truncated_not_overrun(void **state)
{
    char buf[12];
    keng_progress_state_t st = {
        .lines = 12345, .bytes_done = 250, .bytes_total = 1000, .elapsed_ms = 10000};
    size_t n = keng_progress_format(&st, 100, buf, sizeof(buf));

    assert_true(n < sizeof(buf));
    assert_int_equal(strlen(buf), n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_get_thousands_separators),
        cmocka_unit_test(durations_read_as_clock_time),
        cmocka_unit_test(known_size_shows_bar_share_rate_and_eta),
        cmocka_unit_test(narrow_terminal_drops_the_bar),
        cmocka_unit_test(unknown_size_shows_lines_and_rate_only),
        cmocka_unit_test(nothing_read_yet_has_no_eta),
        cmocka_unit_test(small_buffer_is_truncated_not_overrun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
