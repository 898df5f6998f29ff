/* keng-bench-consume: the consumer's hot path as the issue measures it. Pre-encodes N realistic
 * events (default registry, mixed incidents and mediations, occurred_at spread so that every
 * window is populated, some sent twice) into framed messages in memory, then times decode +
 * registry lookup + keng_counts_add for all of them, in one loop on one thread, never touching
 * Kafka. Target: 1,000,000 events/s on one core. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"
#include "bench_util.h"
#include "counts.h"
#include "event.h"
#include "registry.h"

#define MSG_MAX 512 /* bytes of one encoded event; summaries here are short */

static const char *const summaries[] = {
    "Mất trộm xe máy trước cửa nhà văn hóa thôn, đã báo công an xã.",
    "Hai hộ gia đình xô xát vì tranh chấp ranh giới đất, tổ tự quản đã hòa giải.",
    "Tụ tập gây mất trật tự sau đám cưới, nhắc nhở và giải tán lúc 23 giờ.",
    "Tranh chấp lối đi chung giữa hai hộ, đã hòa giải thành tại nhà văn hóa.",
    NULL,
    NULL,
};

/* A realistic event of a random board: 80% incidents, 20% mediations. */
static void make_event(keng_event_t *ev, const keng_registry_t *reg, uint32_t nboards, int64_t now)
{
    const keng_board_t *b = keng_registry_board(reg, (uint32_t)(bench_rand() % nboards));
    uint64_t r = bench_rand(), s = bench_rand();

    memset(ev, 0, sizeof(*ev));
    ev->kind = r % 5 == 0 ? KENG_KIND_MEDIATION : KENG_KIND_INCIDENT;
    snprintf(ev->event_id, sizeof(ev->event_id), "%08x-%04x-4%03x-%04x-%012llx",
             (unsigned)(s >> 32), (unsigned)(s >> 16) & 0xffff, (unsigned)s & 0xfff,
             (unsigned)(0x8000 | (r >> 48 & 0x3fff)), (unsigned long long)(r & 0xffffffffffffULL));
    snprintf(ev->board_id, sizeof(ev->board_id), "%s", b->id);
    ev->has_group = b->groups > 0 && (r >> 8) % 3 != 0;
    if (ev->has_group)
        snprintf(ev->group_id, sizeof(ev->group_id), "%s-G%02u", b->id,
                 1 + (unsigned)((r >> 12) % b->groups));
    ev->occurred_at = now - bench_random_age(3 * 365 * BENCH_DAY_MS);
    ev->reported_at = ev->occurred_at + 30000 + (int64_t)((r >> 16) % 600000);
    ev->summary = summaries[(r >> 24) % 6];
    ev->summary_len = ev->summary ? strlen(ev->summary) : 0;
    if (ev->kind == KENG_KIND_INCIDENT) {
        ev->category = (keng_category_t)((r >> 28) % KENG_CAT_COUNT);
        ev->severity = (keng_severity_t)((r >> 32) % KENG_SEV_COUNT);
        ev->resolution = (keng_resolution_t)((r >> 36) % KENG_RES_COUNT);
        ev->source = (keng_source_t)((r >> 40) % KENG_SRC_COUNT);
        ev->people_involved = (int32_t)(1 + (r >> 44) % 6);
        ev->has_location = (r >> 50) & 1;
        ev->lat = 18.5 + (double)(s % 10000) / 10000.0;
        ev->lon = 104.8 + (double)((s >> 20) % 10000) / 10000.0;
        if (ev->resolution == KENG_RES_TRANSFERRED_TO_POLICE && (r >> 52) % 2 == 0) {
            ev->has_police_case_id = true;
            snprintf(ev->police_case_id, sizeof(ev->police_case_id), "CAX-%s-%05u", b->id,
                     (unsigned)(s % 100000));
        }
    } else {
        ev->dispute_type = (keng_dispute_t)((r >> 28) % KENG_DISPUTE_COUNT);
        ev->outcome = (keng_outcome_t)((r >> 32) % KENG_OUTCOME_COUNT);
        ev->parties = (int32_t)(2 + (r >> 36) % 3);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: keng-bench-consume [--events N] [--duplicates PERCENT] [--registry-ids]\n"
            "                          [--help] [--version]\n"
            "Pre-encodes N events (default 1000000) over the default registry, PERCENT of\n"
            "them (default 2) resent copies of earlier ones, then times keng_avro_decode,\n"
            "the registry lookup and keng_counts_add over all of them on one thread.\n"
            "KENG_AVRO_DECODER=avro-c times the Avro-C decode path instead of the plan.\n"
            "--registry-ids: then the same messages framed with Schema Registry ids, read by a\n"
            "decoder in registry mode that was given their schemas once, against the\n"
            "manifest's ids, each timed three times in this run (best of three).\n");
}

/* The options into *n and *dup_pct. Returns -1 to go on, else the exit code. */
static int registry_ids; /* --registry-ids */

static int parse_args(int argc, char **argv, size_t *n, size_t *dup_pct)
{
    static const struct option longopts[] = {
        {"events", required_argument, NULL, 'n'},     {"registry-ids", no_argument, NULL, 'r'},
        {"duplicates", required_argument, NULL, 'd'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},          {NULL, 0, NULL, 0}};
    int opt;

    while ((opt = getopt_long(argc, argv, "n:d:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            *n = strtoull(optarg, NULL, 10);
            break;
        case 'd':
            *dup_pct = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            registry_ids = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("keng-bench-consume %s\n", KENG_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (*n == 0 || *dup_pct > 50) {
        fprintf(stderr, "keng-bench-consume: --events must be positive and --duplicates at most "
                        "50\n");
        return 2;
    }
    return -1;
}

/* Encodes n events into the arena (n * MSG_MAX bytes), message i at offsets[i] up to
 * offsets[i + 1]; dup_pct percent of them are copies of a recent one. Returns the bytes
 * used, or 0 with errstr filled. */
static size_t encode_all(keng_avro_encoder_t *enc, const keng_registry_t *reg, size_t n,
                         size_t dup_pct, int64_t now0, unsigned char *arena, size_t *offsets,
                         char *errstr, size_t errstr_size)
{
    uint32_t nboards = (uint32_t)keng_registry_board_count(reg);
    size_t used = 0, cap = n * MSG_MAX;

    for (size_t i = 0; i < n; i++) {
        keng_event_t ev;
        size_t len;

        offsets[i] = used;
        if (i > 0 && bench_rand() % 100 < dup_pct) {
            /* A resend: the same bytes as a recent message, as a retrying producer sends. */
            size_t j = i - 1 - (size_t)(bench_rand() % (i < 5000 ? i : 5000));
            len = offsets[j + 1] - offsets[j];
            memcpy(arena + used, arena + offsets[j], len);
        } else {
            make_event(&ev, reg, nboards, now0 + (int64_t)(i / 1000));
            if (keng_avro_encode(enc, &ev, arena + used, cap - used, &len, errstr, errstr_size) < 0)
                return 0;
        }
        used += len;
        offsets[i + 1] = used;
    }
    return used;
}

/* The timed loop: decode, registry lookup and keng_counts_add of every message. Returns 0
 * with the counted and duplicate events in *added and *dups, or -1 with errstr filled. */
static int consume_all(keng_avro_decoder_t *dec, const keng_registry_t *reg, keng_counts_t *counts,
                       size_t n, int64_t now0, const unsigned char *arena, const size_t *offsets,
                       size_t *added, size_t *dups, char *errstr, size_t errstr_size)
{
    keng_event_t ev;
    for (size_t i = 0; i < n; i++) {
        int64_t now = now0 + (int64_t)(i / 1000); /* the clock moves 1 ms every 1000 events */
        int err = keng_avro_decode(dec, arena + offsets[i], offsets[i + 1] - offsets[i], &ev, NULL,
                                   errstr, errstr_size);
        if (err != KENG_AVRO_OK)
            return -1;
        int32_t board = keng_registry_find_board(reg, ev.board_id, strlen(ev.board_id));
        if (board < 0) {
            snprintf(errstr, errstr_size, "unknown board %s", ev.board_id);
            return -1;
        }
        int r = keng_counts_add(counts, (uint32_t)board, &ev, now);
        if (r < 0) {
            snprintf(errstr, errstr_size, "keng_counts_add failed for event %s", ev.event_id);
            return -1;
        }
        *added += r == KENG_COUNTS_ADDED;
        *dups += r == KENG_COUNTS_DUPLICATE;
    }
    return 0;
}

/* The same messages framed with Schema Registry ids (the manifest's id + 100, as a registry
 * shared with other teams gives), read by a decoder in registry mode that was handed their
 * writer schemas once, as keng-aggregate's is after its first lookup, against the manifest's
 * ids: three rounds in this one process, the order swapped each round. Prints the best of
 * three of each. */
static int compare_registry(keng_schema_store_t *store, const keng_registry_t *reg, size_t n,
                            int64_t now0, unsigned char *arena, const size_t *offsets,
                            double manifest_secs, char *errstr, size_t errstr_size)
{
    keng_avro_decoder_t *rdec = keng_avro_decoder_new(store, errstr, errstr_size);
    keng_avro_decoder_t *mdec = keng_avro_decoder_new(store, errstr, errstr_size);
    double best[2] = {1e9, 1e9};
    int rc = -1;

    (void)manifest_secs;
    if (!rdec || !mdec)
        goto out;
    keng_avro_decoder_use_registry(rdec);
    for (int32_t id = 1; id <= 4; id++)
        if (keng_avro_decoder_add_writer(rdec, id + 100, keng_schema_store_json(store, id), errstr,
                                         errstr_size) != 0)
            goto out;
    /* Three rounds, the order of the two modes swapped each round. */
    for (int run = 0; run < 6; run++) {
        int mode = (run / 2 + run) % 2; /* 0 1, 1 0, 0 1 */
        for (size_t i = 0; i < n; i++)
            arena[offsets[i] + 4] =
                (unsigned char)(arena[offsets[i] + 4] % 100 + (mode == 1 ? 100 : 0));
        keng_counts_t *counts = keng_counts_new(reg, NULL);
        size_t added = 0, dups = 0;
        if (!counts) {
            snprintf(errstr, errstr_size, "out of memory for the counts");
            goto out;
        }
        double start = bench_seconds();
        int failed = consume_all(mode == 1 ? rdec : mdec, reg, counts, n, now0, arena, offsets,
                                 &added, &dups, errstr, errstr_size);
        double secs = bench_seconds() - start;
        keng_counts_destroy(counts);
        if (failed)
            goto out;
        if (secs < best[mode])
            best[mode] = secs;
    }
    printf("consume (manifest ids, best of 3): %.0f events/s\n", (double)n / best[0]);
    printf("consume (registry ids, best of 3): %.0f events/s (%+.1f%% against manifest ids)\n",
           (double)n / best[1], (best[0] / best[1] - 1.0) * 100.0);
    rc = 0;
out:
    keng_avro_decoder_destroy(rdec);
    keng_avro_decoder_destroy(mdec);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = 1000000, dup_pct = 2, used, added = 0, dups = 0;
    keng_schema_store_t *store = NULL;
    keng_avro_encoder_t *enc = NULL;
    keng_avro_decoder_t *dec = NULL;
    keng_registry_t *reg = NULL;
    keng_counts_t *counts = NULL;
    unsigned char *arena = NULL;
    size_t *offsets = NULL;
    const int64_t now0 = 1740830400000LL; /* 2025-03-01T12:00:00Z */
    char errstr[512] = "";
    int rc;

    bench_seed(0x2545f4914f6cdd1dULL);
    rc = parse_args(argc, argv, &n, &dup_pct);
    if (rc >= 0)
        return rc;
    rc = 1;
    reg = keng_registry_default();
    store = keng_schema_store_builtin(errstr, sizeof(errstr));
    if (reg == NULL || store == NULL) {
        if (errstr[0] == '\0')
            snprintf(errstr, sizeof(errstr), "could not build the default registry");
        goto fail;
    }
    enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    dec = enc != NULL ? keng_avro_decoder_new(store, errstr, sizeof(errstr)) : NULL;
    counts = dec != NULL ? keng_counts_new(reg, NULL) : NULL;
    if (counts == NULL) {
        if (errstr[0] == '\0')
            snprintf(errstr, sizeof(errstr), "out of memory for the counts");
        goto fail;
    }
    arena = malloc(n * MSG_MAX);
    offsets = malloc((n + 1) * sizeof(*offsets));
    if (arena == NULL || offsets == NULL) {
        snprintf(errstr, sizeof(errstr), "out of memory for %zu events", n);
        goto fail;
    }
    used = encode_all(enc, reg, n, dup_pct, now0, arena, offsets, errstr, sizeof(errstr));
    if (used == 0)
        goto fail;

    double start = bench_seconds();
    if (consume_all(dec, reg, counts, n, now0, arena, offsets, &added, &dups, errstr,
                    sizeof(errstr)) != 0)
        goto fail;
    double secs = bench_seconds() - start;

    printf("encoded: %zu events, %.1f bytes each on average\n", n, (double)used / (double)n);
    printf("consume: %zu events in %.3f s = %.0f events/s (%.0f ns/event, %zu counted, %zu "
           "duplicates)\n",
           n, secs, (double)n / secs, secs * 1e9 / (double)n, added, dups);
    if (registry_ids &&
        compare_registry(store, reg, n, now0, arena, offsets, secs, errstr, sizeof(errstr)) != 0)
        goto fail;
    printf("peak RSS: %.1f MiB (with the pre-encoded messages)\n",
           (double)bench_peak_rss_kib() / 1024);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "keng-bench-consume: %s\n", errstr);
out:
    free(offsets);
    free(arena);
    keng_counts_destroy(counts);
    keng_avro_decoder_destroy(dec);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
    keng_registry_destroy(reg);
    return rc;
}
