/* What the cmocka unit tests share (unit_support.h); never starts a program, a broker or a
 * thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

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
