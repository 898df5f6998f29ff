/* The LMDB checkpoint on disk: offsets and board states written in one transaction read back
 * the same after the store is closed and reopened; an aborted or failed transaction leaves
 * nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "checkpoint.h"

typedef struct fixture {
    char dir[64];
    char sub[128];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/keng-test-checkpoint-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    /* A path that does not exist yet: open must create it. */
    snprintf(f->sub, sizeof(f->sub), "%s/state/a", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char path[256];

    snprintf(path, sizeof(path), "%s/data.mdb", f->sub);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock.mdb", f->sub);
    unlink(path);
    rmdir(f->sub);
    snprintf(path, sizeof(path), "%s/state", f->dir);
    rmdir(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

typedef struct seen {
    int n;
    char ids[8][32];
    size_t lens[8];
    unsigned char first[8];
} seen_t;

static int collect(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    seen_t *s = arg;

    assert_true(s->n < 8);
    assert_true(id_len < sizeof(s->ids[0]));
    memcpy(s->ids[s->n], id, id_len);
    s->ids[s->n][id_len] = '\0';
    s->lens[s->n] = len;
    s->first[s->n] = len ? ((const unsigned char *)data)[0] : 0;
    s->n++;
    return 0;
}

static void test_offsets_and_boards_survive_reopen(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    keng_checkpoint_t *cp = keng_checkpoint_open(f->sub, 64u << 20, err, sizeof(err));
    size_t big_len = 1u << 20;
    unsigned char *big = malloc(big_len);
    int64_t off = -1;
    seen_t seen = {0};

    assert_non_null(big);
    memset(big, 0xAB, big_len);
    if (!cp)
        fail_msg("open failed: %s", err);

    keng_checkpoint_txn_t *txn = keng_checkpoint_begin(cp, err, sizeof(err));
    assert_non_null(txn);
    assert_int_equal(keng_checkpoint_put_offset(txn, "antt.incidents", 0, 42, err, sizeof(err)), 0);
    assert_int_equal(
        keng_checkpoint_put_offset(txn, "antt.incidents", 3, 7000000000LL, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_put_offset(txn, "antt.mediations", 1, 0, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_put_board(txn, "D07-C012-B03", "\x01xyz", 4, err, sizeof(err)),
                     0);
    assert_int_equal(keng_checkpoint_put_board(txn, "D01-C001-B01", big, big_len, err, sizeof(err)),
                     0);
    assert_int_equal(keng_checkpoint_commit(txn, err, sizeof(err)), 0);
    keng_checkpoint_close(cp);

    cp = keng_checkpoint_open(f->sub, 64u << 20, err, sizeof(err));
    if (!cp)
        fail_msg("reopen failed: %s", err);
    assert_int_equal(keng_checkpoint_get_offset(cp, "antt.incidents", 0, &off, err, sizeof(err)),
                     1);
    assert_int_equal(off, 42);
    assert_int_equal(keng_checkpoint_get_offset(cp, "antt.incidents", 3, &off, err, sizeof(err)),
                     1);
    assert_int_equal(off, 7000000000LL);
    assert_int_equal(keng_checkpoint_get_offset(cp, "antt.mediations", 1, &off, err, sizeof(err)),
                     1);
    assert_int_equal(off, 0);
    assert_int_equal(keng_checkpoint_get_offset(cp, "antt.mediations", 2, &off, err, sizeof(err)),
                     0);

    assert_int_equal(keng_checkpoint_each_board(cp, collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.ids[0], "D01-C001-B01"); /* id order */
    assert_int_equal(seen.lens[0], big_len);
    assert_int_equal(seen.first[0], 0xAB);
    assert_string_equal(seen.ids[1], "D07-C012-B03");
    assert_int_equal(seen.lens[1], 4);
    assert_int_equal(seen.first[1], 0x01);

    memset(&seen, 0, sizeof(seen));
    assert_int_equal(
        keng_checkpoint_get_board(cp, "D07-C012-B03", collect, &seen, err, sizeof(err)), 1);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.lens[0], 4);
    assert_int_equal(
        keng_checkpoint_get_board(cp, "D99-C001-B01", collect, &seen, err, sizeof(err)), 0);
    keng_checkpoint_close(cp);
    free(big);
}

static void test_abort_keeps_previous_checkpoint(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    keng_checkpoint_t *cp = keng_checkpoint_open(f->sub, 0, err, sizeof(err));
    int64_t off = -1;
    seen_t seen = {0};

    if (!cp)
        fail_msg("open failed: %s", err);
    keng_checkpoint_txn_t *txn = keng_checkpoint_begin(cp, err, sizeof(err));
    assert_non_null(txn);
    assert_int_equal(keng_checkpoint_put_offset(txn, "t", 0, 10, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_put_board(txn, "B1", "a", 1, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_commit(txn, err, sizeof(err)), 0);

    /* A second checkpoint that is abandoned half-way: neither its offset nor its board. */
    txn = keng_checkpoint_begin(cp, err, sizeof(err));
    assert_non_null(txn);
    assert_int_equal(keng_checkpoint_put_offset(txn, "t", 0, 20, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_put_board(txn, "B1", "b", 1, err, sizeof(err)), 0);
    assert_int_equal(keng_checkpoint_put_board(txn, "B2", "c", 1, err, sizeof(err)), 0);
    keng_checkpoint_abort(txn);
    keng_checkpoint_close(cp);

    cp = keng_checkpoint_open(f->sub, 0, err, sizeof(err));
    if (!cp)
        fail_msg("reopen failed: %s", err);
    assert_int_equal(keng_checkpoint_get_offset(cp, "t", 0, &off, err, sizeof(err)), 1);
    assert_int_equal(off, 10);
    assert_int_equal(keng_checkpoint_each_board(cp, collect, &seen, err, sizeof(err)), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "B1");
    assert_int_equal(seen.first[0], 'a');
    keng_checkpoint_close(cp);
}

static void test_map_full_fails_whole_transaction(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    keng_checkpoint_t *cp = keng_checkpoint_open(f->sub, 1u << 20, err, sizeof(err));
    size_t big_len = 4u << 20;
    unsigned char *big = calloc(1, big_len);
    int64_t off = -1;
    int rc;

    assert_non_null(big);
    if (!cp)
        fail_msg("open failed: %s", err);
    keng_checkpoint_txn_t *txn = keng_checkpoint_begin(cp, err, sizeof(err));
    assert_non_null(txn);
    assert_int_equal(keng_checkpoint_put_offset(txn, "t", 5, 99, err, sizeof(err)), 0);
    rc = keng_checkpoint_put_board(txn, "B9", big, big_len, err, sizeof(err));
    if (rc == 0)
        fail_msg("a 4 MiB board fitted a 1 MiB map");
    assert_non_null(strstr(err, "map_size"));
    keng_checkpoint_abort(txn);
    assert_int_equal(keng_checkpoint_get_offset(cp, "t", 5, &off, err, sizeof(err)), 0);
    keng_checkpoint_close(cp);
    free(big);
}

static void test_unwritable_dir_is_an_error(void **state)
{
    char err[256] = "";
    keng_checkpoint_t *cp = keng_checkpoint_open("/proc/keng-no/such", 0, err, sizeof(err));

    assert_null(cp);
    assert_non_null(strstr(err, "/proc/keng-no/such"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_offsets_and_boards_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_keeps_previous_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_fails_whole_transaction, setup, teardown),
        cmocka_unit_test(test_unwritable_dir_is_an_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
