/* Tests of the annual review's printed form: Vietnamese dates and period names at the edges of
 * the local calendar, Vietnamese numbers and percentages, the chart geometry (axis steps,
 * scales, bands and ring slices), and one mark per data point in every chart; they never start
 * Chromium. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chart.h"
#include "review.h"
#include "review_html.h"

#define HOUR (3600 * 1000LL)
#define DAY  (24 * HOUR)

static void check_str(const char *actual, const char *expected, const char *what)
{
    if (strcmp(actual, expected) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", what, expected, actual);
}

static void check_near(double actual, double expected, const char *what)
{
    if (fabs(actual - expected) > 1e-6)
        fail_msg("%s: expected %.6f, got %.6f", what, expected, actual);
}

static void test_dates_are_local_and_vietnamese(void **state)
{
    char buf[16];
    int64_t midnight;

    (void)state;
    assert_int_equal(keng_review_parse_date("2025-10-25", &midnight), 0);
    check_str(keng_review_date_vi(midnight, buf, sizeof(buf)), "25/10/2025", "local midnight");
    /* 2025-10-24T17:00:00Z is already the 25th in Vietnam; a millisecond before is the 24th */
    check_str(keng_review_date_vi(midnight - 1, buf, sizeof(buf)), "24/10/2025",
              "the last millisecond before");
    check_str(keng_review_date_vi(midnight + DAY - 1, buf, sizeof(buf)), "25/10/2025",
              "the day's last millisecond");
    check_str(keng_review_date_vi(1735664400000LL, buf, sizeof(buf)), "01/01/2025",
              "2024-12-31T17:00:00Z");
}

static void test_period_names(void **state)
{
    char buf[64];
    int64_t from, to;

    (void)state;
    keng_review_year_bounds(2025, &from, &to);
    check_str(keng_review_period_vi(from, to, buf, sizeof(buf)), "năm 2025", "a calendar year");
    /* --to is exclusive: the report names the last day inside the period */
    assert_int_equal(keng_review_parse_date("2025-03-01", &from), 0);
    assert_int_equal(keng_review_parse_date("2025-06-01", &to), 0);
    check_str(keng_review_period_vi(from, to, buf, sizeof(buf)), "từ 01/03/2025 đến 31/05/2025",
              "a range");
    /* a year plus a day is not "năm 2025" */
    keng_review_year_bounds(2025, &from, &to);
    check_str(keng_review_period_vi(from, to + DAY, buf, sizeof(buf)),
              "từ 01/01/2025 đến 01/01/2026", "a year and a day");
}

static void test_numbers_and_percentages(void **state)
{
    char buf[32];

    (void)state;
    check_str(keng_chart_format_count(0, buf, sizeof(buf)), "0", "zero");
    check_str(keng_chart_format_count(999, buf, sizeof(buf)), "999", "three digits");
    check_str(keng_chart_format_count(11000, buf, sizeof(buf)), "11.000", "thousands");
    check_str(keng_chart_format_count(1234567, buf, sizeof(buf)), "1.234.567", "millions");
    check_str(keng_chart_format_percent(1, 8, buf, sizeof(buf)), "12,5%", "one eighth");
    check_str(keng_chart_format_percent(9, 100, buf, sizeof(buf)), "9,0%", "a whole percent");
    check_str(keng_chart_format_percent(2, 3, buf, sizeof(buf)), "66,7%", "rounded up");
    check_str(keng_chart_format_percent(1, 3, buf, sizeof(buf)), "33,3%", "rounded down");
    check_str(keng_chart_format_percent(7, 7, buf, sizeof(buf)), "100,0%", "all");
    check_str(keng_chart_format_percent(0, 0, buf, sizeof(buf)), "0%", "nothing of nothing");
}

static void test_axis_steps(void **state)
{
    static const struct {
        uint64_t max, step, top;
    } cases[] = {
        {0, 1, 1},
        {1, 1, 1},
        {5, 1, 5},
        {6, 2, 6},
        {7, 2, 8},
        {10, 2, 10},
        {11, 5, 15},
        {25, 5, 25},
        {26, 10, 30},
        {720, 200, 800},
        {1234, 500, 1500},
        {8795, 2000, 10000},
        {11000, 5000, 15000},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t step, top;
        keng_chart_axis(cases[i].max, &step, &top);
        if (step != cases[i].step || top != cases[i].top)
            fail_msg("axis for max %llu: expected step %llu top %llu, got step %llu top %llu",
                     (unsigned long long)cases[i].max, (unsigned long long)cases[i].step,
                     (unsigned long long)cases[i].top, (unsigned long long)step,
                     (unsigned long long)top);
        if (top < cases[i].max || top / step > 5)
            fail_msg("axis for max %llu: top %llu in %llu steps", (unsigned long long)cases[i].max,
                     (unsigned long long)top, (unsigned long long)(top / step));
    }
}

static void test_scales_and_bands(void **state)
{
    (void)state;
    check_near(keng_chart_scale(0, 800, 190), 0, "zero");
    check_near(keng_chart_scale(400, 800, 190), 95, "half");
    check_near(keng_chart_scale(800, 800, 190), 190, "the top");
    check_near(keng_chart_scale(5, 0, 190), 0, "an empty axis");
    /* 12 months across 648 units: 27 units to the first centre, 54 between centres */
    check_near(keng_chart_band_center(0, 12, 56, 648), 56 + 27, "first month");
    check_near(keng_chart_band_center(11, 12, 56, 648), 56 + 648 - 27, "last month");
    check_near(keng_chart_band_center(0, 1, 0, 100), 50, "a single band");
}

static void test_ring_slices_cover_the_ring(void **state)
{
    const uint64_t values[] = {3, 0, 5, 2};
    const double r = 70, circumference = 2 * M_PI * 70;
    double dash, offset, end = 0;
    uint64_t before = 0;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        keng_chart_ring_slice(values[i], before, 10, r, &dash, &offset);
        check_near(offset, end, "a slice starts where the one before ended");
        check_near(dash, circumference * (double)values[i] / 10, "a slice's length");
        end = offset + dash;
        before += values[i];
    }
    check_near(end, circumference, "the slices together go once round");
    keng_chart_ring_slice(0, 0, 0, r, &dash, &offset);
    check_near(dash, 0, "nothing to share");
    check_near(offset, 0, "nothing to share: offset");
}

static size_t count_of(const char *haystack, const char *needle)
{
    size_t n = 0;

    for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Each chart draws one mark per data point, zeros and an all-zero chart included. */
static void test_one_mark_per_point(void **state)
{
    const keng_chart_item_t items[] = {
        {"A", "Một", 7}, {"B", "Hai", 0}, {"C", "Ba <&>", 3}, {"D", "Bốn", 0}};
    const keng_chart_item_t zeros[] = {{"A", "Một", 0}, {"B", "Hai", 0}};
    void (*const charts[])(FILE *, const char *, const char *, const keng_chart_item_t *,
                           size_t) = {keng_chart_line, keng_chart_bars, keng_chart_shares};

    (void)state;
    for (size_t c = 0; c < 3; c++) {
        for (int z = 0; z < 2; z++) {
            char *svg = NULL;
            size_t len = 0, want = z ? 2 : 4;
            FILE *f = open_memstream(&svg, &len);
            assert_non_null(f);
            charts[c](f, "t", "Tiêu đề", z ? zeros : items, want);
            fclose(f);
            if (count_of(svg, "class=mark") != want)
                fail_msg("chart %zu%s: expected %zu marks, got %zu", c, z ? " (all zero)" : "",
                         want, count_of(svg, "class=mark"));
            if (!z && count_of(svg, "data-value=\"0\"") != 2)
                fail_msg("chart %zu: expected 2 marks of value 0, got %zu", c,
                         count_of(svg, "data-value=\"0\""));
            if (!z && strstr(svg, "Ba &lt;&amp;&gt;") == NULL)
                fail_msg("chart %zu: the label is not escaped: %s", c, svg);
            free(svg);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates_are_local_and_vietnamese),
        cmocka_unit_test(test_period_names),
        cmocka_unit_test(test_numbers_and_percentages),
        cmocka_unit_test(test_axis_steps),
        cmocka_unit_test(test_scales_and_bands),
        cmocka_unit_test(test_ring_slices_cover_the_ring),
        cmocka_unit_test(test_one_mark_per_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
