/* The checks of a registry version against the previous one (registry_check.c): what the
 * lineage may say and what it must, each finding with its file and line; they never touch
 * Kafka. The refusals as keng-registry prints them are in integration/test_registry_check.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry_check.h"

#define HEADER                                                                                     \
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"

static const char previous_csv[] = HEADER "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,5,5\n"
                                          "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,5,5\n"
                                          "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5\n";
static const char next_csv[] = HEADER "B1,Thôn 1,C1,Xã Một Mới,,,5,5\n"
                                      "B3,Thôn 3,C1,Xã Một Mới,,,5,5\n";
#define LINEAGE_HEAD "from_id,from_name,to_id,to_name\n"

typedef struct findings {
    char text[4096];
} findings_t;

static void collect(void *arg, bool refusal, const char *message)
{
    findings_t *f = arg;
    size_t used = strlen(f->text);

    snprintf(f->text + used, sizeof(f->text) - used, "%s%s\n", refusal ? "" : "warning: ", message);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/keng-regcheck-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    fputs(text, f);
    fclose(f);
    return path;
}

static keng_registry_t *load(const char *text)
{
    char *path = write_temp(text), errstr[512];
    keng_registry_t *reg = keng_registry_load(path, errstr, sizeof(errstr));

    if (!reg)
        fail_msg("the test's registry does not load: %s", errstr);
    unlink(path);
    free(path);
    return reg;
}

/* Checks next_csv against previous_csv with lineage (and units when not NULL); returns the
 * refusals and fills f. */
static size_t check(const char *lineage, const char *units, findings_t *f)
{
    keng_registry_t *prev = load(previous_csv), *next = load(next_csv);
    char *lineage_path = lineage ? write_temp(lineage) : NULL;
    char *units_path = units ? write_temp(units) : NULL;
    keng_registry_check_t in = {next, prev, lineage_path, units_path, KENG_NO_TIME, KENG_NO_TIME};
    keng_registry_check_summary_t summary;

    memset(f, 0, sizeof(*f));
    keng_registry_check_run(&in, collect, f, &summary);
    keng_registry_destroy(prev);
    keng_registry_destroy(next);
    if (lineage_path)
        unlink(lineage_path);
    if (units_path)
        unlink(units_path);
    free(lineage_path);
    free(units_path);
    return summary.refusals;
}

static void expect(const findings_t *f, const char *fragment)
{
    if (!strstr(f->text, fragment))
        fail_msg("expected a finding containing \"%s\", got:\n%s", fragment, f->text);
}

/* C1 keeps its id under a new name, C2 merges into it, B2 is removed: all said, all pass. */
static void test_lineage_that_says_everything_passes(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                                        "C2,Xã Hai,C1,Xã Một Mới\n"
                                        "B2,Thôn 2,,\n",
                           NULL, &f),
                     0);
    assert_string_equal(f.text, "");
}

/* The rename needs its line, and B2 its removal. */
static void test_without_lineage_rename_and_drop_are_refused(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(NULL, NULL, &f), 2);
    expect(&f, "line 2: commune C1 is 'Xã Một Mới' here but 'Xã Một' in");
    expect(&f, "line 3: board B2 (commune C1) is not in");
    expect(&f, "warning: ");
    expect(&f, "1 commune(s), the first C2, are in neither");
}

/* A removed unit covers its boards that are gone: D1's line covers B2; C2's does not (B2 is in
 * C1), and C2's board B3 may live on in another commune. */
static void test_removed_unit_covers_only_its_own_boards(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                                        "C2,Xã Hai,C1,Xã Một Mới\n"
                                        "D1,Huyện Một,,\n",
                           NULL, &f),
                     0);
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                                        "C2,Xã Hai,,\n",
                           NULL, &f),
                     1);
    expect(&f, "board B2 (commune C1) is not in");
}

/* A split is written board by board: a unit on two lines is refused, a board line sends one
 * board elsewhere than its commune's line. */
static void test_split_is_board_by_board(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                                        "C2,Xã Hai,C1,Xã Một Mới\n"
                                        "C2,Xã Hai,C9,Xã Chín\n"
                                        "B2,Thôn 2,,\n",
                           "commune_id,commune_name\nC1,Xã Một Mới\nC9,Xã Chín\n", &f),
                     1);
    expect(&f, "line 4: C2 is listed again (first on line 3): each board or unit of the previous "
               "version goes to one unit; a unit split between several is written board by board");
    expect(&f, "warning: ");
    expect(&f, "line 3: commune C9 'Xã Chín' has no board yet");
}

/* Lines that start nowhere, name the old unit wrongly, or send a board to a district. */
static void test_lineage_lines_are_checked_against_both_versions(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                                        "C2,Xã Hai Cũ,C1,Xã Một Mới\n"
                                        "B2,Thôn 2,,\n"
                                        "C7,Xã Bảy,C1,Xã Một Mới\n"
                                        "B3,Thôn 3,B1,Thôn 1\n"
                                        "B1,Thôn 1,C1,Xã Khác\n",
                           NULL, &f),
                     4);
    expect(&f, "line 3: from_name 'Xã Hai Cũ': commune C2 is 'Xã Hai' in");
    expect(&f, "line 5: from_id C7 is not in");
    expect(&f, "line 6: to_id B1 is a board of");
    expect(&f, "line 7: to_name 'Xã Khác': commune C1 is 'Xã Một Mới' in");
}

static void test_units_list_needs_its_columns(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\nC2,Xã Hai,C1,Xã Một Mới\n"
                                        "B2,Thôn 2,,\n",
                           "id,name\nC1,Xã Một Mới\n", &f),
                     1);
    expect(&f, "line 1: the header has no commune_id and commune_name columns");
    assert_int_equal(check(LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\nC2,Xã Hai,C1,Xã Một Mới\n"
                                        "B2,Thôn 2,,\n",
                           "commune_id,commune_name\nC1,Xã Một\n", &f),
                     1);
    expect(&f, "line 2: commune C1 is 'Xã Một Mới' here but 'Xã Một' in");
}

/* A spreadsheet's UTF-8 byte order mark before the header is not part of its first name. */
static void test_byte_order_mark_before_the_header(void **state)
{
    findings_t f;

    (void)state;
    assert_int_equal(check("\xEF\xBB\xBF" LINEAGE_HEAD "C1,Xã Một,C1,Xã Một Mới\n"
                           "C2,Xã Hai,C1,Xã Một Mới\nB2,Thôn 2,,\n",
                           "\xEF\xBB\xBF"
                           "commune_id,commune_name\nC1,Xã Một Mới\n",
                           &f),
                     0);
    assert_string_equal(f.text, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lineage_that_says_everything_passes),
        cmocka_unit_test(test_without_lineage_rename_and_drop_are_refused),
        cmocka_unit_test(test_removed_unit_covers_only_its_own_boards),
        cmocka_unit_test(test_split_is_board_by_board),
        cmocka_unit_test(test_lineage_lines_are_checked_against_both_versions),
        cmocka_unit_test(test_units_list_needs_its_columns),
        cmocka_unit_test(test_byte_order_mark_before_the_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
