/* What the benchmark programs share: a seeded generator for synthetic events, event ages that
 * populate every window, a monotonic clock in seconds and the peak RSS; nothing here touches
 * Kafka. */
#ifndef KENG_BENCH_UTIL_H
#define KENG_BENCH_UTIL_H

#include <stdint.h>

#define BENCH_MIN_MS  60000LL
#define BENCH_HOUR_MS (60 * BENCH_MIN_MS)
#define BENCH_DAY_MS  (24 * BENCH_HOUR_MS)

/* splitmix64 from seed: the same seed gives the same events, run after run. */
void bench_seed(uint64_t seed);
uint64_t bench_rand(void);

/* An age in ms: 5% within the hour, 15% the day, 20% the week, 20% the month, 30% the year,
 * and 10% between a year and oldest_ms, so that every window and level holds events. */
int64_t bench_random_age(int64_t oldest_ms);

/* CLOCK_MONOTONIC in seconds, for timing a loop. */
double bench_seconds(void);

/* This process's peak resident set so far, in KiB. */
long bench_peak_rss_kib(void);

#endif
