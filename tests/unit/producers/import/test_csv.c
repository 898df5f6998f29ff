/* The CSV splitter of keng-produce: quoted fields, doubled quotes, commas and newlines in
 * quotes, empty cells as null, and the errors a user sees for malformed rows; they never read a
 * file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "csv.h"

static int setup(void **state)
{
    *state = keng_csv_new();
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    keng_csv_destroy(*state);
    return 0;
}

static int split(keng_csv_t *csv, const char *s, char *err, size_t err_size)
{
    return keng_csv_split(csv, s, strlen(s), err, err_size);
}

static void plain_fields_split_on_commas(void **state)
{
    keng_csv_t *csv = *state;
    char err[128];

    assert_int_equal(split(csv, "a,bc,,d\n", err, sizeof(err)), 4);
    assert_string_equal(keng_csv_field(csv, 0, NULL), "a");
    assert_string_equal(keng_csv_field(csv, 1, NULL), "bc");
    assert_string_equal(keng_csv_field(csv, 2, NULL), "");
    assert_true(keng_csv_field_is_null(csv, 2));
    assert_string_equal(keng_csv_field(csv, 3, NULL), "d");
    assert_null(keng_csv_field(csv, 4, NULL));
}

static void crlf_is_stripped_and_trailing_comma_gives_empty_field(void **state)
{
    keng_csv_t *csv = *state;
    char err[128];
    size_t len = 99;

    assert_int_equal(split(csv, "x,y,\r\n", err, sizeof(err)), 3);
    assert_string_equal(keng_csv_field(csv, 1, &len), "y");
    assert_int_equal(len, 1);
    assert_true(keng_csv_field_is_null(csv, 2));
}

static void quoted_fields_keep_commas_quotes_and_newlines(void **state)
{
    keng_csv_t *csv = *state;
    char err[128];
    size_t len = 0;
    const char *row = "\"Trộm, cắp\",\"nói \"\"dừng lại\"\"\",\"hai\ndòng\",\"\"";

    assert_int_equal(split(csv, row, err, sizeof(err)), 4);
    assert_string_equal(keng_csv_field(csv, 0, NULL), "Trộm, cắp");
    assert_string_equal(keng_csv_field(csv, 1, NULL), "nói \"dừng lại\"");
    assert_string_equal(keng_csv_field(csv, 2, &len), "hai\ndòng");
    assert_int_equal(len, strlen("hai\ndòng"));
    /* "" is an empty string, not null. */
    assert_string_equal(keng_csv_field(csv, 3, NULL), "");
    assert_false(keng_csv_field_is_null(csv, 3));
}

static void needs_more_while_a_quote_is_open(void **state)
{
    const char *a = "id,\"first line\n";
    const char *b = "id,\"first line\nsecond\"\n";
    const char *c = "id,\"a \"\"quoted\"\" word\"\n";

    assert_true(keng_csv_needs_more(a, strlen(a)));
    assert_false(keng_csv_needs_more(b, strlen(b)));
    assert_false(keng_csv_needs_more(c, strlen(c)));
}

static void malformed_rows_name_the_field(void **state)
{
    keng_csv_t *csv = *state;
    char err[128];

    assert_int_equal(split(csv, "a,\"open", err, sizeof(err)), -1);
    assert_string_equal(err, "field 2: the quote is never closed");
    assert_int_equal(split(csv, "a,\"b\"c,d", err, sizeof(err)), -1);
    assert_string_equal(err, "field 2: text after the closing quote");
    assert_int_equal(split(csv, "a,b,c\"d", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "field 3: a quote inside an unquoted field"));
}

static void fields_survive_reuse_with_a_longer_row(void **state)
{
    keng_csv_t *csv = *state;
    char err[128], big[5000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(split(csv, "short", err, sizeof(err)), 1);
    assert_int_equal(keng_csv_split(csv, big, strlen(big), err, sizeof(err)), 1);
    assert_int_equal(strlen(keng_csv_field(csv, 0, NULL)), sizeof(big) - 1);
    assert_int_equal(split(csv, "p,q", err, sizeof(err)), 2);
    assert_string_equal(keng_csv_field(csv, 1, NULL), "q");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(plain_fields_split_on_commas, setup, teardown),
        cmocka_unit_test_setup_teardown(crlf_is_stripped_and_trailing_comma_gives_empty_field,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(quoted_fields_keep_commas_quotes_and_newlines, setup,
                                        teardown),
        cmocka_unit_test(needs_more_while_a_quote_is_open),
        cmocka_unit_test_setup_teardown(malformed_rows_name_the_field, setup, teardown),
        cmocka_unit_test_setup_teardown(fields_survive_reuse_with_a_longer_row, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
