/* The board registry: the generated default reproduces the provincial report's counts, and a
 * CSV loads, looks up and rejects bad rows with the line and the field; they never touch
 * Kafka. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"

static void test_default_has_report_counts(void **state)
{
    keng_registry_t *reg = keng_registry_default();
    uint64_t groups = 0, members = 0;

    assert_non_null(reg);
    assert_int_equal(keng_registry_district_count(reg), KENG_DEFAULT_DISTRICTS);
    assert_int_equal(keng_registry_commune_count(reg), KENG_DEFAULT_COMMUNES);
    assert_int_equal(keng_registry_board_count(reg), KENG_DEFAULT_BOARDS);
    for (uint32_t i = 0; i < keng_registry_board_count(reg); i++) {
        const keng_board_t *b = keng_registry_board(reg, i);
        groups += b->groups;
        members += b->members;
        /* Every board's parents agree with each other. */
        assert_int_equal(keng_registry_commune(reg, b->commune)->district, b->district);
        assert_int_equal(strncmp(b->id, keng_registry_commune(reg, b->commune)->id,
                                 strlen(keng_registry_commune(reg, b->commune)->id)),
                         0);
    }
    assert_int_equal(groups, KENG_DEFAULT_GROUPS);
    assert_int_equal(members, KENG_DEFAULT_MEMBERS);
    assert_string_equal(keng_registry_district(reg, 0)->name, "Thành phố Vinh");
    assert_string_equal(keng_registry_district(reg, 20)->name, "Huyện Yên Thành");
    keng_registry_destroy(reg);
}

static void test_default_lookups(void **state)
{
    keng_registry_t *reg = keng_registry_default();

    for (uint32_t i = 0; i < keng_registry_board_count(reg); i++) {
        const char *id = keng_registry_board(reg, i)->id;
        assert_int_equal(keng_registry_find_board(reg, id, strlen(id)), i);
    }
    assert_int_equal(keng_registry_find_board(reg, "D07-C999-B01", 12), -1);
    /* Ids need not be NUL-terminated: a prefix of a longer buffer is looked up by length. */
    assert_int_equal(keng_registry_find_district(reg, "D07xyz", 3), 6);
    assert_int_equal(keng_registry_find_commune(reg, "D07-C001", 8) >= 0, 1);
    assert_int_equal(keng_registry_find_board(reg, "D07-C001-B0", 11), -1);
    keng_registry_destroy(reg);
}

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/keng-registry-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_csv_round_trip(void **state)
{
    keng_registry_t *reg = keng_registry_default();
    char path[] = "/tmp/keng-registry-rt-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    char errstr[256];

    assert_int_equal(keng_registry_write_csv(reg, f), 0);
    fclose(f);
    keng_registry_t *loaded = keng_registry_load(path, errstr, sizeof(errstr));
    assert_non_null(loaded);
    assert_int_equal(keng_registry_board_count(loaded), KENG_DEFAULT_BOARDS);
    assert_int_equal(keng_registry_commune_count(loaded), KENG_DEFAULT_COMMUNES);
    assert_int_equal(keng_registry_district_count(loaded), KENG_DEFAULT_DISTRICTS);
    for (uint32_t i = 0; i < KENG_DEFAULT_BOARDS; i += 97) {
        assert_string_equal(keng_registry_board(loaded, i)->id, keng_registry_board(reg, i)->id);
        assert_string_equal(keng_registry_board(loaded, i)->name,
                            keng_registry_board(reg, i)->name);
    }
    unlink(path);
    keng_registry_destroy(loaded);
    keng_registry_destroy(reg);
}

static void expect_load_error(const char *csv, const char *expected_fragment)
{
    char *path = write_temp(csv);
    char errstr[512] = "";
    keng_registry_t *reg = keng_registry_load(path, errstr, sizeof(errstr));

    if (reg || !strstr(errstr, expected_fragment))
        fail_msg("expected an error containing \"%s\", got \"%s\"", expected_fragment,
                 reg ? "(loaded)" : errstr);
    unlink(path);
    free(path);
}

#define HEADER                                                                                     \
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"

static void test_csv_errors_name_line_and_field(void **state)
{
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,x\n",
                      "line 2: members: 'x' is not a whole number");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5\n",
                      "line 2: expected 8 fields, found 7");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,5\n"
                             "# a comment\n"
                             "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,5\n",
                      "line 4: board_id D01-C001-B01 is listed again (first on line 2)");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,,D01,Vinh,5,5\n",
                      "line 2: commune_name is empty");
    expect_load_error(HEADER "D01-C001-B01,,D01-C001,Phường 1,D01,Vinh,5,5\n",
                      "line 2: board_name is empty");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01, ,5,5\n",
                      "line 2: district_name is empty");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,5\n"
                             "D02-C001-B02,Khối 2,D01-C001,Phường 1,D02,Cửa Lò,5,5\n",
                      "line 3: district_id: commune D01-C001 is listed under both D01 and D02");
    expect_load_error("board_id,name\n", "line 1: expected 8 fields, found 2");
    expect_load_error(HEADER, "no boards");
    expect_load_error(HEADER "\"D01-C001-B01,Khối 1\n", "line 2: unterminated quote");
}

/* A version read from Kafka loads from its text as from a file: the same counts, the name
 * given in keng_registry_path and in every refusal, and the text left as it was. */
static void test_load_text(void **state)
{
    static const char csv[] = HEADER "B1,Thôn 1,N1,Xã Mới,,,5,5\nB2,Thôn 2,N1,Xã Mới,,,4,3\n";
    char copy[sizeof(csv)], errstr[512] = "";
    keng_registry_t *reg;

    (void)state;
    memcpy(copy, csv, sizeof(csv));
    /* Without the NUL: the text of a document is not a C string. */
    reg = keng_registry_load_text(copy, sizeof(copy) - 1, "antt.registry@2025-06-30T17:00:00Z",
                                  errstr, sizeof(errstr));
    assert_non_null(reg);
    assert_int_equal(keng_registry_board_count(reg), 2);
    assert_int_equal(keng_registry_commune_count(reg), 1);
    assert_int_equal(keng_registry_district_count(reg), 0);
    assert_string_equal(keng_registry_path(reg), "antt.registry@2025-06-30T17:00:00Z");
    assert_int_equal(keng_registry_board_line(reg, 1), 3);
    assert_memory_equal(copy, csv, sizeof(csv));
    keng_registry_destroy(reg);

    reg = keng_registry_load_text(copy, strlen(HEADER) + 20, "antt.registry@x", errstr,
                                  sizeof(errstr));
    assert_null(reg);
    if (!strstr(errstr, "antt.registry@x: line 2: expected 8 fields"))
        fail_msg("expected \"antt.registry@x: line 2: expected 8 fields\", got \"%s\"", errstr);
    assert_null(keng_registry_load_text("", 0, "antt.registry@y", errstr, sizeof(errstr)));
    assert_string_equal(errstr, "antt.registry@y: no boards in the registry");
}

/* A new version in the board order of the one before it: the same boards at the same indexes
 * under the new version's units and names; a version that adds or removes boards is refused
 * with how many, and the first of each. */
static void test_in_board_order(void **state)
{
    static const char old_csv[] = HEADER "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,1,1\n"
                                         "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,2,2\n"
                                         "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,3,3\n";
    static const char new_csv[] = HEADER "B3,Thôn Ba,N2,Xã Mới Hai,,,3,3\n"
                                         "B1,Thôn 1,N1,Xã Mới,,,1,1\n"
                                         "B2,Thôn 2,N2,Xã Mới Hai,,,2,2\n";
    static const char other_csv[] = HEADER "B1,Thôn 1,N1,Xã Mới,,,1,1\n"
                                           "B4,Thôn 4,N1,Xã Mới,,,1,1\n"
                                           "B5,Thôn 5,N1,Xã Mới,,,1,1\n";
    char errstr[512] = "";
    keng_registry_t *old, *next, *other, *ordered;

    (void)state;
    old = keng_registry_load_text(old_csv, strlen(old_csv), "old", errstr, sizeof(errstr));
    next = keng_registry_load_text(new_csv, strlen(new_csv), "antt.registry@new", errstr,
                                   sizeof(errstr));
    other = keng_registry_load_text(other_csv, strlen(other_csv), "other", errstr, sizeof(errstr));
    assert_non_null(old);
    assert_non_null(next);
    assert_non_null(other);
    ordered = keng_registry_in_board_order(next, old, errstr, sizeof(errstr));
    assert_non_null(ordered);
    assert_int_equal(keng_registry_board_count(ordered), 3);
    assert_int_equal(keng_registry_commune_count(ordered), 2);
    assert_false(keng_registry_has_districts(ordered));
    for (uint32_t i = 0; i < 3; i++)
        assert_string_equal(keng_registry_board(ordered, i)->id, keng_registry_board(old, i)->id);
    assert_string_equal(keng_registry_board(ordered, 2)->name, "Thôn Ba");
    assert_string_equal(
        keng_registry_commune(ordered, keng_registry_board(ordered, 0)->commune)->id, "N1");
    assert_string_equal(
        keng_registry_commune(ordered, keng_registry_board(ordered, 2)->commune)->id, "N2");
    assert_int_equal(keng_registry_board_line(ordered, 2), 2); /* its line in the new file */
    assert_int_equal(keng_registry_find_board(ordered, "B3", 2), 2);
    assert_int_equal(keng_registry_find_commune(ordered, "N2", 2),
                     keng_registry_find_commune(next, "N2", 2));
    assert_string_equal(keng_registry_path(ordered), "antt.registry@new");
    keng_registry_destroy(ordered);

    assert_null(keng_registry_in_board_order(other, old, errstr, sizeof(errstr)));
    if (!strstr(errstr, "adds 2 board(s) (the first: B4) and removes 2 (the first: B2)"))
        fail_msg("unexpected refusal: %s", errstr);
    keng_registry_destroy(other);
    keng_registry_destroy(next);
    keng_registry_destroy(old);
}

/* A board listed twice, in one commune or in two, is refused with both lines: a board is in
 * one commune. */
static void test_duplicate_board_names_both_lines(void **state)
{
    (void)state;
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,5\n"
                             "D01-C002-B01,Khối 1,D01-C002,Phường 2,D01,Vinh,5,5\n"
                             "D01-C001-B01,Khối 1,D01-C002,Phường 2,D01,Vinh,5,5\n",
                      "line 4: board_id D01-C001-B01 is listed again (first on line 2), in "
                      "commune D01-C002 here and D01-C001 there: a board is in one commune");
}

/* A name in Unicode NFD (a letter and a combining accent) looks like its NFC twin but is
 * another string: refused with what to do about it. */
static void test_nfd_name_says_convert_to_nfc(void **state)
{
    (void)state;
    /* "Xã" as X, a, U+0303 COMBINING TILDE. */
    expect_load_error(
        HEADER "D01-C001-B01,Thôn 1,D01-C001,Xa\xcc\x83 Vinh,D01,Vinh,5,5\n",
        "line 2: commune_name 'Xa\xcc\x83 Vinh' is in Unicode NFD (a letter followed by "
        "a combining accent, U+0303): keng compares names as NFC; convert the file, "
        "e.g. with `uconv -x any-nfc FILE` or python3's "
        "unicodedata.normalize('NFC', text)");
    expect_load_error(HEADER "D01-C001-B01,Tho\xcc\x82n 1,D01-C001,Xã Vinh,D01,Vinh,5,5\n",
                      "line 2: board_name 'Tho\xcc\x82n 1' is in Unicode NFD");
    expect_load_error(HEADER "D01-C001-B01,Thôn 1,D01-C001,Xã Vinh,D01,Huye\xcc\xa3\xcc\x82n,5,5\n",
                      "line 2: district_name 'Huye\xcc\xa3\xcc\x82n' is in Unicode NFD");
}

/* Every id field is checked against the alphabet, and the message names the field. */
static void test_bad_id_names_its_field(void **state)
{
    (void)state;
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01 C001,Phường 1,D01,Vinh,5,5\n",
                      "line 2: commune_id: 'D01 C001' is not an id");
    expect_load_error(HEADER "D01-C001-B01,Khối 1,D01-C001,Phường 1,Đ01,Vinh,5,5\n",
                      "line 2: district_id: 'Đ01' is not an id");
}

/* One id alphabet everywhere (registry.h): what the loader takes, the API, tokens and alert
 * rules take too, and nothing else. */
static void test_id_alphabet(void **state)
{
    (void)state;
    const char *good[] = {
        "D07-C012-B03", "D01_C001", "40.17542", "a", "X1-A-1", "abcdefghijklmnopqrstuvwxyz01234"};
    const char *bad[] = {"",      "D01:C001", "D01 C001", "D01/C001",
                         "D01#1", "Đ01",      "D01%00",   "abcdefghijklmnopqrstuvwxyz012345"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!keng_unit_id_valid(good[i], strlen(good[i])))
            fail_msg("'%s' should be an id", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (keng_unit_id_valid(bad[i], strlen(bad[i])))
            fail_msg("'%s' should not be an id", bad[i]);
    expect_load_error(
        HEADER "D01:C001:B01,Khối 1,D01-C001,Phường 1,D01,Vinh,5,5\n",
        "line 2: board_id: 'D01:C001:B01' is not an id (1 to 31 of A-Z a-z 0-9 . _ -)");
    char *path = write_temp(HEADER "D01_C001_B01,Khối 1,D01_C001,Phường 1,D01,Vinh,5,5\n");
    char errstr[256];
    keng_registry_t *reg = keng_registry_load(path, errstr, sizeof(errstr));
    if (!reg)
        fail_msg("a registry with '_' in its ids: %s", errstr);
    keng_registry_destroy(reg);
    unlink(path);
    free(path);
}

static void test_csv_quoted_names(void **state)
{
    char *path = write_temp(HEADER "D01-C001-B01,\"Khối 1, \"\"Bến Thủy\"\"\",D01-C001,Phường "
                                   "1,D01,Thành phố Vinh,6,7\n");
    char errstr[256];
    keng_registry_t *reg = keng_registry_load(path, errstr, sizeof(errstr));

    assert_non_null(reg);
    assert_string_equal(keng_registry_board(reg, 0)->name, "Khối 1, \"Bến Thủy\"");
    assert_int_equal(keng_registry_board(reg, 0)->groups, 6);
    assert_int_equal(keng_registry_board(reg, 0)->members, 7);
    keng_registry_destroy(reg);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_has_report_counts),
        cmocka_unit_test(test_default_lookups),
        cmocka_unit_test(test_csv_round_trip),
        cmocka_unit_test(test_csv_errors_name_line_and_field),
        cmocka_unit_test(test_csv_quoted_names),
        cmocka_unit_test(test_load_text),
        cmocka_unit_test(test_in_board_order),
        cmocka_unit_test(test_id_alphabet),
        cmocka_unit_test(test_duplicate_board_names_both_lines),
        cmocka_unit_test(test_nfd_name_says_convert_to_nfc),
        cmocka_unit_test(test_bad_id_names_its_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
