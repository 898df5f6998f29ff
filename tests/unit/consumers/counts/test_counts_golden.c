/* Golden bytes of the board state format (versions 1 to 3): a fixed set of events saved
 * through keng_counts_board_save and keng_counts_unit_save must give exactly these bytes, and
 * states written by older versions must load and save again as these bytes; so moving or
 * reshaping the serialiser can never change what checkpoints and the counts topic hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "counts.h"
#include "registry.h"

#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)
#define T0   1740830430123LL /* 2025-03-01T12:00:30.123Z */

static keng_registry_t *reg;

static int setup(void **state)
{
    (void)state;
    reg = keng_registry_default();
    return reg ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    keng_registry_destroy(reg);
    return 0;
}

static void add(keng_counts_t *c, uint32_t board, int cls, const char *id, int64_t occurred,
                int64_t now)
{
    keng_event_t ev;
    memset(&ev, 0, sizeof(ev));
    if (cls < 36) {
        ev.kind = KENG_KIND_INCIDENT;
        ev.category = (keng_category_t)(cls / 3);
        ev.resolution = (keng_resolution_t)(cls % 3);
    } else {
        ev.kind = KENG_KIND_MEDIATION;
        ev.outcome = (keng_outcome_t)(cls - 36);
    }
    snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
    ev.occurred_at = occurred;
    ev.reported_at = occurred + 7 * MIN;
    assert_int_equal(keng_counts_add(c, board, &ev, now), KENG_COUNTS_ADDED);
}

/* The fixed history: both kinds, every level (1h to 365d), the old tally past the 365d edge,
 * ids that arrived at three different times. */
static keng_counts_t *history(int state_version)
{
    keng_counts_options_t opt;
    keng_counts_options_default(&opt);
    opt.state_version = state_version;
    keng_counts_t *c = keng_counts_new(reg, &opt);
    assert_non_null(c);
    add(c, 4, 0, "inc-old", T0 - 400 * DAY, T0 - 2 * DAY);
    add(c, 4, 37, "med-old", T0 - 500 * DAY, T0 - 2 * DAY);
    add(c, 4, 7, "inc-200d", T0 - 200 * DAY, T0 - DAY);
    add(c, 4, 20, "inc-20d", T0 - 20 * DAY, T0 - DAY);
    add(c, 4, 36, "med-3d", T0 - 3 * DAY, T0 - HOUR);
    add(c, 4, 35, "inc-5h", T0 - 5 * HOUR, T0 - HOUR);
    add(c, 4, 2, "inc-10m", T0 - 10 * MIN, T0);
    add(c, 4, 38, "med-1m", T0 - MIN, T0);
    add(c, 4, 2, "inc-10m-b", T0 - 10 * MIN, T0);
    return c;
}

static char *hex(const unsigned char *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", b[i]);
    s[2 * n] = '\0';
    return s;
}

static unsigned char *unhex(const char *s, size_t *n)
{
    *n = strlen(s) / 2;
    unsigned char *b = malloc(*n);
    assert_non_null(b);
    for (size_t i = 0; i < *n; i++) {
        unsigned v;
        assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
        b[i] = (unsigned char)v;
    }
    return b;
}

/* The hex of board 4's state as c saves it: the whole board (kind -1) or one unit. */
static char *saved_hex(const keng_counts_t *c, int kind)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = kind < 0 ? keng_counts_board_save(c, 4, &buf, &len)
                      : keng_counts_unit_save(c, 4, (keng_kind_t)kind, &buf, &len);
    assert_int_equal(rc, 0);
    char *s = hex(buf, len);
    free(buf);
    return s;
}

/* Takes got. */
static void expect_hex(const char *want, char *got, const char *what)
{
    if (strcmp(want, got) != 0) {
        /* In full on stderr: cmocka cuts long messages. */
        fprintf(stderr, "%s: expected %s\n%s: actual   %s\n", what, want, what, got);
        fail_msg("%s: the saved bytes changed (expected and actual above)", what);
    }
    free(got);
}

/* Written by keng before its serialiser moved to counts_codec.c (KENG_GOLDEN_PRINT=1 prints
 * the first four; the version 1 state is the version 2 board with its two id sections as one,
 * as version 1 wrote them). */
#define GOLDEN_V3_BOARD                                                                            \
    "4b4e4742030003000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "000000000000000000000000000006000000000246b7ba810200000000264fb7ba8101000000012318b6ba81"     \
    "010000000224f8a5ba810100000003148045ba81010000000407004bb681010000000400000056e147479501"     \
    "000001000000c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a51075a4434e9adad75a3"     \
    "5d519501000001000000a457c3aa620c3dbbb76694519501000002000000e71bc56da71beb66c3d3d40f53c6"     \
    "e1fc0300000056e147479501000001000000624cb54ef9b9667175a35d519501000001000000aa073e9e47eb"     \
    "84a3b7669451950100000100000056f2ef238e0288dc8b94915195010000ab53945195010000ffffffffffff"     \
    "ff7f8568b809"
#define GOLDEN_V3_INCIDENT                                                                         \
    "4b4e4742030001000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "000000000000000000000000000004000000000246b7ba8102000000012318b6ba810100000003148045ba81"     \
    "010000000407004bb681010000000400000056e147479501000001000000c81ac210261950d5e9716e4c9501"     \
    "000002000000e18513dff19d523a51075a4434e9adad75a35d519501000001000000a457c3aa620c3dbbb766"     \
    "94519501000002000000e71bc56da71beb66c3d3d40f53c6e1fc8b94915195010000ffffffffffffff7f64f3"     \
    "1d28"
#define GOLDEN_V3_MEDIATION                                                                        \
    "4b4e4742030002000c4430312d433030312d423035ab53945195010000140000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "00000000000000000000000000000200000000264fb7ba81010000000224f8a5ba81010000000300000056e1"     \
    "47479501000001000000624cb54ef9b9667175a35d519501000001000000aa073e9e47eb84a3b76694519501"     \
    "00000100000056f2ef238e0288dcab53945195010000ffffffffffffff7f34a9cab8"
#define GOLDEN_V2_BOARD                                                                            \
    "4b4e4742020003000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "000000000000000000000000000006000000000246b7ba810200000000264fb7ba8101000000012318b6ba81"     \
    "010000000224f8a5ba810100000003148045ba81010000000407004bb681010000000400000056e147479501"     \
    "000001000000c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a51075a4434e9adad75a3"     \
    "5d519501000001000000a457c3aa620c3dbbb76694519501000002000000e71bc56da71beb66c3d3d40f53c6"     \
    "e1fc0300000056e147479501000001000000624cb54ef9b9667175a35d519501000001000000aa073e9e47eb"     \
    "84a3b7669451950100000100000056f2ef238e0288dc24a032af"
#define GOLDEN_V2_RESAVED                                                                          \
    "4b4e4742030003000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "000000000000000000000000000006000000000246b7ba810200000000264fb7ba8101000000012318b6ba81"     \
    "010000000224f8a5ba810100000003148045ba81010000000407004bb681010000000400000056e147479501"     \
    "000001000000c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a51075a4434e9adad75a3"     \
    "5d519501000001000000a457c3aa620c3dbbb76694519501000002000000e71bc56da71beb66c3d3d40f53c6"     \
    "e1fc0300000056e147479501000001000000624cb54ef9b9667175a35d519501000001000000aa073e9e47eb"     \
    "84a3b7669451950100000100000056f2ef238e0288dca0a08b519501000000de935195010000ffffffffffff"     \
    "ff7fb3c75a33"
#define GOLDEN_V1_BOARD                                                                            \
    "4b4e4742010000000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "000000000000000000000000000006000000000246b7ba810200000000264fb7ba8101000000012318b6ba81"     \
    "010000000224f8a5ba810100000003148045ba81010000000407004bb681010000000700000056e147479501"     \
    "000001000000c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a51075a4434e9adad75a3"     \
    "5d519501000001000000a457c3aa620c3dbbb76694519501000002000000e71bc56da71beb66c3d3d40f53c6"     \
    "e1fc56e147479501000001000000624cb54ef9b9667175a35d519501000001000000aa073e9e47eb84a3b766"     \
    "9451950100000100000056f2ef238e0288dcf407e4db"
#define GOLDEN_V1_RESAVED                                                                          \
    "4b4e4742030003000c4430312d433030312d423035ab53945195010000140100000000000000010000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"     \
    "0000010000000000000000000000000000000000000000000000010000000000000000000000000000000100"     \
    "000000000000000000000000000006000000000246b7ba810200000000264fb7ba8101000000012318b6ba81"     \
    "010000000224f8a5ba810100000003148045ba81010000000407004bb681010000000400000056e147479501"     \
    "000002000000624cb54ef9b96671c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a5107"     \
    "5a4434e9adad75a35d519501000002000000aa073e9e47eb84a3a457c3aa620c3dbbb7669451950100000300"     \
    "0000e71bc56da71beb6656f2ef238e0288dcc3d3d40f53c6e1fc0400000056e147479501000002000000624c"     \
    "b54ef9b96671c81ac210261950d5e9716e4c9501000002000000e18513dff19d523a51075a4434e9adad75a3"     \
    "5d519501000002000000aa073e9e47eb84a3a457c3aa620c3dbbb76694519501000003000000e71bc56da71b"     \
    "eb6656f2ef238e0288dcc3d3d40f53c6e1fca0a08b519501000000de935195010000ffffffffffffff7f6ac4"     \
    "c136"

static void test_version_3_board_and_unit_states_are_byte_identical(void **state)
{
    (void)state;
    keng_counts_t *c = history(3);
    expect_hex(GOLDEN_V3_BOARD, saved_hex(c, -1), "version 3 board");
    expect_hex(GOLDEN_V3_INCIDENT, saved_hex(c, KENG_KIND_INCIDENT), "version 3 incident unit");
    expect_hex(GOLDEN_V3_MEDIATION, saved_hex(c, KENG_KIND_MEDIATION), "version 3 mediation unit");
    keng_counts_destroy(c);
}

static void test_version_2_board_state_is_byte_identical(void **state)
{
    (void)state;
    keng_counts_t *c = history(2);
    expect_hex(GOLDEN_V2_BOARD, saved_hex(c, -1), "version 2 board");
    keng_counts_destroy(c);
}

/* An old state loaded at the clock it was saved at, then saved again as version 3. */
static void reload(const char *old_hex, const char *want_hex, const char *what)
{
    size_t n;
    unsigned char *old = unhex(old_hex, &n);
    keng_counts_t *c = keng_counts_new(reg, NULL);
    char err[256];
    if (keng_counts_board_load(c, 4, old, n, T0, err, sizeof(err)) != 0)
        fail_msg("%s: load: %s", what, err);
    expect_hex(want_hex, saved_hex(c, -1), what);
    free(old);
    keng_counts_destroy(c);
}

static void test_version_2_state_loads_and_saves_as_version_3(void **state)
{
    (void)state;
    reload(GOLDEN_V2_BOARD, GOLDEN_V2_RESAVED, "version 2 board saved again");
}

static void test_version_1_state_loads_and_saves_as_version_3(void **state)
{
    (void)state;
    reload(GOLDEN_V1_BOARD, GOLDEN_V1_RESAVED, "version 1 board saved again");
}

/* How the first four constants were made: the bytes of the writer of the day. */
static void print_golden(void)
{
    reg = keng_registry_default();
    for (int version = 3; version >= 2; version--) {
        keng_counts_t *c = history(version);
        for (int kind = -1; kind < (version == 3 ? 2 : 0); kind++) {
            char *s = saved_hex(c, kind);
            printf("%s v%d kind %d %s\n", kind < 0 ? "board" : "unit", version, kind, s);
            free(s);
        }
        keng_counts_destroy(c);
    }
    keng_registry_destroy(reg);
}

int main(void)
{
    if (getenv("KENG_GOLDEN_PRINT")) {
        print_golden();
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_3_board_and_unit_states_are_byte_identical),
        cmocka_unit_test(test_version_2_board_state_is_byte_identical),
        cmocka_unit_test(test_version_2_state_loads_and_saves_as_version_3),
        cmocka_unit_test(test_version_1_state_loads_and_saves_as_version_3),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
