/* What the cmocka unit tests share (unit_support.h); never starts a program, a broker or a
 * thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "unit_support.h"

keng_registry_t *keng_unit_registry;

int keng_unit_registry_setup(void **state)
{
    (void)state;
    keng_unit_registry = keng_registry_default();
    return keng_unit_registry ? 0 : -1;
}

int keng_unit_registry_teardown(void **state)
{
    (void)state;
    keng_registry_destroy(keng_unit_registry);
    keng_unit_registry = NULL;
    return 0;
}

keng_registry_t *keng_unit_two_tier(const keng_registry_t *reg)
{
    char *csv = NULL, errstr[256] = "";
    size_t len = 0;
    FILE *out = open_memstream(&csv, &len);

    assert_non_null(out);
    fputs("board_id,board_name,commune_id,commune_name,district_id,district_name,groups,"
          "members\n",
          out);
    for (size_t i = keng_registry_board_count(reg); i-- > 0;) {
        const keng_board_t *b = keng_registry_board(reg, (uint32_t)i);
        fprintf(out, "%s,%s,N%03zu,Xã %03zu,,,%u,%u\n", b->id, b->name, i * 7 % 130, i * 7 % 130,
                b->groups, b->members);
    }
    fclose(out);
    keng_registry_t *next = keng_registry_load_text(csv, len, "two-tier", errstr, sizeof(errstr));
    free(csv);
    if (!next)
        fail_msg("the two-tier registry does not load: %s", errstr);
    return next;
}

void keng_unit_expect_u64(uint64_t expected, uint64_t actual, const char *what)
{
    if (expected != actual)
        fail_msg("%s: expected %llu, actual %llu", what, (unsigned long long)expected,
                 (unsigned long long)actual);
}

void keng_unit_expect_i64(int64_t expected, int64_t actual, const char *what)
{
    if (expected != actual)
        fail_msg("%s: expected %lld, actual %lld", what, (long long)expected, (long long)actual);
}
