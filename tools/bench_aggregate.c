/* keng-bench-aggregate: how fast the rolling-count store counts, and how much memory the whole
 * province takes once every window is populated. Run by `make bench`; it never touches Kafka. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "counts.h"
#include "registry.h"

#define ID_LEN 36

/* One synthetic event, compact so that 2 million of them do not dwarf what is measured. */
typedef struct synth {
    int64_t occurred_at;
    int64_t now;
    uint32_t board;
    uint8_t cls;
} synth_t;

static void uuid_text(char *out, uint64_t a, uint64_t b)
{
    snprintf(out, ID_LEN + 1, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | (b >> 48 & 0x3fff)), (unsigned long long)(b & 0xffffffffffffULL));
}

static void fill_event(keng_event_t *ev, const synth_t *s, const char *id)
{
    memcpy(ev->event_id, id, ID_LEN);
    ev->event_id[ID_LEN] = '\0';
    ev->occurred_at = s->occurred_at;
    if (s->cls < 36) {
        ev->kind = KENG_KIND_INCIDENT;
        ev->category = (keng_category_t)(s->cls / 3);
        ev->resolution = (keng_resolution_t)(s->cls % 3);
    } else {
        ev->kind = KENG_KIND_MEDIATION;
        ev->outcome = (keng_outcome_t)(s->cls - 36);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: keng-bench-aggregate [--events N] [--boards N] [--help] [--version]\n"
                 "Times keng_counts_add over N synthetic events (default 2000000) spread over\n"
                 "every board and window of the default registry, and reports the peak RSS of\n"
                 "the whole province populated. --boards N sends the timed events to the first N\n"
                 "boards only (default: all of them).\n");
}

/* The options into *n and *hot_boards. Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, size_t *n, uint32_t *hot_boards)
{
    static const struct option longopts[] = {{"events", required_argument, NULL, 'n'},
                                             {"boards", required_argument, NULL, 'b'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    int opt;

    while ((opt = getopt_long(argc, argv, "n:b:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            *n = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            *hot_boards = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("keng-bench-aggregate %s\n", KENG_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (*n == 0) {
        fprintf(stderr, "keng-bench-aggregate: --events must be a positive number\n");
        return 2;
    }
    return -1;
}

/* Phase 1 (memory): populate the province from events made on the fly, so that the peak RSS
 * is the store's and the registry's, not the benchmark's. Every board gets events in every
 * window first, then the rest. Returns the peak RSS in KiB, or -1 when out of memory. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* What keng-aggregate does at a registry switch of the whole province, timed on the populated
 * store: the version in the counts' board order, then the rollups summed again (the counting
 * pause; the alerts' share is a scan of their firing entries). The new version puts the 7,588
 * boards under 130 communes without districts, as the reform of 1 July 2025 does. */
static void measure_switch(const keng_registry_t *reg, keng_counts_t *c)
{
    char *csv = NULL, errstr[256];
    size_t len = 0, nboards = keng_registry_board_count(reg);
    FILE *out = open_memstream(&csv, &len);
    double order_ms[7], rollup_ms[7];
    int runs = 7;

    if (!out)
        return;
    fputs("board_id,board_name,commune_id,commune_name,district_id,district_name,groups,"
          "members\n",
          out);
    for (size_t i = nboards; i-- > 0;) {
        const keng_board_t *b = keng_registry_board(reg, (uint32_t)i);
        fprintf(out, "%s,%s,N%03zu,Xã %03zu,,,%u,%u\n", b->id, b->name, i * 7 % 130, i * 7 % 130,
                b->groups, b->members);
    }
    fclose(out);
    keng_registry_t *next = keng_registry_load_text(csv, len, "two-tier", errstr, sizeof(errstr));
    free(csv);
    if (!next) {
        fprintf(stderr, "keng-bench-aggregate: %s\n", errstr);
        return;
    }
    for (int r = 0; r < runs; r++) {
        double t0 = bench_seconds();
        keng_registry_t *ordered = keng_registry_in_board_order(next, reg, errstr, sizeof(errstr));
        double t1 = bench_seconds();
        if (!ordered || keng_counts_set_registry(c, ordered) != 0) {
            fprintf(stderr, "keng-bench-aggregate: the switch failed: %s\n", errstr);
            keng_registry_destroy(ordered);
            break;
        }
        double t2 = bench_seconds();
        order_ms[r] = (t1 - t0) * 1e3;
        rollup_ms[r] = (t2 - t1) * 1e3;
        keng_counts_set_registry(c, reg); /* back, for the next run and the caller */
        keng_registry_destroy(ordered);
    }
    qsort(order_ms, (size_t)runs, sizeof(double), cmp_double);
    qsort(rollup_ms, (size_t)runs, sizeof(double), cmp_double);
    printf("registry switch: %zu boards to 130 communes, median of %d: %.2f ms in all "
           "(board order %.2f ms, rollups %.2f ms; max %.2f ms)\n",
           nboards, runs, order_ms[runs / 2] + rollup_ms[runs / 2], order_ms[runs / 2],
           rollup_ms[runs / 2], order_ms[runs - 1] + rollup_ms[runs - 1]);
    keng_registry_destroy(next);
}

static long measure_memory(const keng_registry_t *reg, size_t n, int64_t now0)
{
    uint32_t nboards = (uint32_t)keng_registry_board_count(reg);
    keng_counts_t *c = keng_counts_new(reg, NULL);
    keng_event_t e;
    size_t added = 0;

    if (!c)
        return -1;
    memset(&e, 0, sizeof(e));
    for (size_t i = 0; i < n; i++) {
        synth_t s;
        char id[ID_LEN + 1];
        s.board = i < (size_t)nboards * 6 ? (uint32_t)(i / 6) : (uint32_t)(bench_rand() % nboards);
        s.occurred_at = now0 - bench_random_age(5 * 365 * BENCH_DAY_MS);
        s.now = now0 + (int64_t)(i / 1000); /* the clock moves 1 ms every 1000 events */
        s.cls = (uint8_t)(bench_rand() % 39);
        uuid_text(id, bench_rand(), bench_rand());
        fill_event(&e, &s, id);
        if (keng_counts_add(c, s.board, &e, s.now) == KENG_COUNTS_ADDED)
            added++;
    }
    long rss_kib = bench_peak_rss_kib();
    size_t mem_bytes = keng_counts_memory_bytes(c);
    measure_switch(reg, c);
    printf("province: %u boards, %zu events counted, %zu ids remembered, store %.1f MiB, "
           "peak RSS %.1f MiB\n",
           nboards, added, keng_counts_dedup_size(c), (double)mem_bytes / (1 << 20),
           (double)rss_kib / 1024);
    keng_counts_destroy(c);
    return rss_kib;
}

/* Phase 2 (speed): pre-generate the events in memory, then time keng_counts_add alone over
 * them. Returns 0, or -1 when out of memory. */
static int measure_speed(const keng_registry_t *reg, size_t n, uint32_t hot_boards, int64_t now0,
                         long rss_kib)
{
    synth_t *ev = malloc(n * sizeof(*ev));
    char *ids = malloc(n * (ID_LEN + 1));
    keng_counts_t *c = NULL;
    keng_event_t e;
    size_t added = 0;
    int ret = -1;

    if (!ev || !ids)
        goto out;
    for (size_t i = 0; i < n; i++) {
        ev[i].board = (uint32_t)(bench_rand() % hot_boards);
        ev[i].occurred_at = now0 - bench_random_age(5 * 365 * BENCH_DAY_MS);
        ev[i].now = now0 + (int64_t)(i / 1000);
        ev[i].cls = (uint8_t)(bench_rand() % 39);
        uuid_text(ids + i * (ID_LEN + 1), bench_rand(), bench_rand());
    }
    c = keng_counts_new(reg, NULL);
    if (!c)
        goto out;
    memset(&e, 0, sizeof(e));
    double start = bench_seconds();
    for (size_t i = 0; i < n; i++) {
        fill_event(&e, &ev[i], ids + i * (ID_LEN + 1));
        added += keng_counts_add(c, ev[i].board, &e, ev[i].now) == KENG_COUNTS_ADDED;
    }
    double secs = bench_seconds() - start;
    printf("aggregate: %zu events in %.3f s = %.0f events/s (%.0f ns/event, %zu counted)\n", n,
           secs, (double)n / secs, secs * 1e9 / (double)n, added);
    printf("peak RSS: %.1f MiB after populating the full province (%.1f MiB at the end, with "
           "the pre-generated events)\n",
           (double)rss_kib / 1024, (double)bench_peak_rss_kib() / 1024);
    ret = 0;
out:
    keng_counts_destroy(c);
    free(ev);
    free(ids);
    return ret;
}

int main(int argc, char **argv)
{
    size_t n = 2000000;
    uint32_t hot_boards = 0;              /* the timed events go to this many boards; 0: all */
    const int64_t now0 = 1740830400000LL; /* 2025-03-01T12:00:00Z */

    bench_seed(0x9e3779b97f4a7c15ULL);
    int rc = parse_args(argc, argv, &n, &hot_boards);
    if (rc >= 0)
        return rc;
    keng_registry_t *reg = keng_registry_default();
    if (!reg) {
        fprintf(stderr, "keng-bench-aggregate: could not build the default registry\n");
        return 1;
    }
    uint32_t nboards = (uint32_t)keng_registry_board_count(reg);
    if (hot_boards == 0 || hot_boards > nboards)
        hot_boards = nboards;
    long rss_kib = measure_memory(reg, n, now0);
    rc = rss_kib >= 0 && measure_speed(reg, n, hot_boards, now0, rss_kib) == 0 ? 0 : 1;
    if (rc != 0)
        fprintf(stderr, "keng-bench-aggregate: out of memory\n");
    keng_registry_destroy(reg);
    return rc;
}
