/* Tests of common/log.c: every logged value is escaped, so that a value a gateway or a file
 * sent (a request path, an enum value, a board name) can neither start a line of its own nor
 * forge a key of the line it is in. Never touches the network or a file but a temporary one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char captured[4096];

/* Runs fn with stderr sent to a temporary file; leaves what it wrote in captured. */
static void capture(void (*fn)(void))
{
    char path[] = "/tmp/keng-test-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);

    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn();
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, captured, sizeof(captured) - 1, 0);
    close(fd);
    assert_true(n > 0);
    captured[n] = '\0';
}

/* One line: the only newline is the last character. */
static void expect_one_line(void)
{
    size_t n = strlen(captured);
    char *nl = strchr(captured, '\n');
    if (n == 0 || nl != captured + n - 1)
        fail_msg("expected one line, got:\n%s", captured);
}

/* The part of the line after msg="...", without the newline. */
static const char *pairs(void)
{
    const char *p = strstr(captured, "msg=\"");
    assert_non_null(p);
    p = strchr(p + 5, '"');
    assert_non_null(p);
    char *nl = strchr(captured, '\n');
    assert_non_null(nl);
    *nl = '\0';
    return p + 2;
}

static void expect_pairs(const char *expected)
{
    const char *actual = pairs();
    if (strcmp(expected, actual) != 0)
        fail_msg("expected the pairs\n  %s\ngot\n  %s", expected, actual);
}

static void log_hostile_quoted(void)
{
    keng_log_warn("refused", "path=\"%s\" error=\"%s\"", "/v1/x\nts=0 level=error msg=\"forged\"",
                  "a \\ b \" c\r\td\x01");
}

static void test_quoted_values_are_escaped(void **state)
{
    (void)state;
    capture(log_hostile_quoted);
    expect_one_line();
    expect_pairs("path=\"/v1/x\\nts=0 level=error msg=\\\"forged\\\"\" "
                 "error=\"a \\\\ b \\\" c\\r\\td\\x01\"");
}

static void log_hostile_bare(void)
{
    keng_log_info("got", "category=%s board=%s empty=%s plain=%s", "THEFT level=error", "D01\"x",
                  "", "D07-C012-B03");
}

static void test_bare_values_are_quoted_when_they_must_be(void **state)
{
    (void)state;
    capture(log_hostile_bare);
    expect_one_line();
    expect_pairs("category=\"THEFT level=error\" board=\"D01\\\"x\" empty=\"\" plain=D07-C012-B03");
}

static void log_numbers(void)
{
    keng_log_info("numbers",
                  "d=%d ld=%ld lld=%lld llu=%llu zu=%zu i64=%" PRId64 " u64=%" PRIu64
                  " i32=%" PRId32 " x=%x f=%.3f pct=%% prec=%.*s w=%5d",
                  -7, -70L, -700LL, 7000ULL, (size_t)70000, INT64_MIN, UINT64_MAX, (int32_t)-32,
                  255u, 1.5, 3, "abcdef", 42);
}

static void test_numbers_are_formatted_as_printf_does(void **state)
{
    (void)state;
    capture(log_numbers);
    expect_pairs("d=-7 ld=-70 lld=-700 llu=7000 zu=70000 i64=-9223372036854775808 "
                 "u64=18446744073709551615 i32=-32 x=ff f=1.500 pct=% prec=abc w=   42");
}

static void log_long_value(void)
{
    static char big[5000];
    memset(big, '\n', sizeof(big) - 1);
    keng_log_info("long", "v=\"%s\" after=1", big);
}

static void test_a_long_value_is_cut_and_the_line_stays_one(void **state)
{
    (void)state;
    capture(log_long_value);
    expect_one_line();
    assert_true(strlen(captured) < 2100);
}

static void log_msg_newline(void)
{
    keng_log_info("two\nlines", NULL);
}

static void test_message_stays_on_one_line(void **state)
{
    (void)state;
    capture(log_msg_newline);
    expect_one_line();
    assert_non_null(strstr(captured, "msg=\"two\\nlines\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quoted_values_are_escaped),
        cmocka_unit_test(test_bare_values_are_quoted_when_they_must_be),
        cmocka_unit_test(test_numbers_are_formatted_as_printf_does),
        cmocka_unit_test(test_a_long_value_is_cut_and_the_line_stays_one),
        cmocka_unit_test(test_message_stays_on_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
