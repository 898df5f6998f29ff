/* What the cmocka unit tests share: the default registry as a group fixture, the checks that
 * print the expected and the actual number, and the times the tests count in. It links
 * common/ only, so that a test of any folder may use it; it never starts a program, a broker
 * or a thread.
 *
 * Include it after <cmocka.h> and its prerequisites. */
#ifndef KENG_UNIT_SUPPORT_H
#define KENG_UNIT_SUPPORT_H

#include <stdint.h>

#include "registry.h"

#define KENG_UNIT_MIN  60000LL
#define KENG_UNIT_HOUR (60 * KENG_UNIT_MIN)
#define KENG_UNIT_DAY  (24 * KENG_UNIT_HOUR)

/* The built-in registry (7,588 boards), loaded by keng_unit_registry_setup and freed by
 * keng_unit_registry_teardown: pass them to cmocka_run_group_tests. Borrowed by the tests. */
extern keng_registry_t *keng_unit_registry;
int keng_unit_registry_setup(void **state);
int keng_unit_registry_teardown(void **state);

/* reg's boards, listed backwards, under 130 communes N000..N129 and no district level (board
 * i of reg in commune i * 7 % 130), as the two-tier province of 1 July 2025 puts the same
 * boards under new units: keng_registry_in_board_order gives them reg's indexes. The caller
 * owns the result; the test fails when it does not load. */
keng_registry_t *keng_unit_two_tier(const keng_registry_t *reg);

/* Fail the test with "what: expected E, actual A" when the two differ. */
void keng_unit_expect_u64(uint64_t expected, uint64_t actual, const char *what);
void keng_unit_expect_i64(int64_t expected, int64_t actual, const char *what);

#endif
