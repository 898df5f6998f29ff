/* What the benchmark programs share (bench_util.h): the seeded generator, the clock and the
 * peak RSS; it never touches Kafka. */
#include "bench_util.h"

#include <sys/resource.h>
#include <time.h>

static uint64_t rng_state;

void bench_seed(uint64_t seed)
{
    rng_state = seed;
}

uint64_t bench_rand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int64_t bench_random_age(int64_t oldest_ms)
{
    const int64_t band[6][2] = {{0, BENCH_HOUR_MS},
                                {BENCH_HOUR_MS, BENCH_DAY_MS},
                                {BENCH_DAY_MS, 7 * BENCH_DAY_MS},
                                {7 * BENCH_DAY_MS, 30 * BENCH_DAY_MS},
                                {30 * BENCH_DAY_MS, 365 * BENCH_DAY_MS},
                                {365 * BENCH_DAY_MS, oldest_ms}};
    static const unsigned cut[6] = {5, 20, 40, 60, 90, 100};
    unsigned p = (unsigned)(bench_rand() % 100);
    int k = 0;

    while (p >= cut[k])
        k++;
    return band[k][0] + (int64_t)(bench_rand() % (uint64_t)(band[k][1] - band[k][0]));
}

double bench_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long bench_peak_rss_kib(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}
