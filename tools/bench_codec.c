/* keng-bench-codec: encodes N realistic incidents into memory once, then times decoding them
 * all on one core, the consumer's hot path (keng-aggregate needs 1,000,000 events/s); it never
 * touches Kafka. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"
#include "bench_util.h"
#include "event.h"

static const char *const summaries[] = {
    "Mất trộm xe máy trước cửa nhà văn hóa thôn, đã báo công an xã.",
    "Hai hộ gia đình xô xát vì tranh chấp ranh giới đất, tổ tự quản đã hòa giải.",
    "Tụ tập gây mất trật tự sau đám cưới, nhắc nhở và giải tán lúc 23 giờ.",
    NULL,
};

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1000000;
    keng_schema_store_t *store = NULL;
    keng_avro_encoder_t *enc = NULL;
    keng_avro_decoder_t *dec = NULL;
    unsigned char *arena = NULL;
    size_t *offsets = NULL, used = 0, cap;
    char errstr[512];
    int rc = 1;

    if (n <= 0) {
        fprintf(stderr, "usage: keng-bench-codec [N [--registry-ids | --registry-only]]\n");
        return 2;
    }
    store = keng_schema_store_builtin(errstr, sizeof(errstr));
    if (store == NULL)
        goto fail;
    enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    dec = enc != NULL ? keng_avro_decoder_new(store, errstr, sizeof(errstr)) : NULL;
    if (dec == NULL)
        goto fail;
    cap = (size_t)n * 256;
    arena = malloc(cap);
    offsets = malloc(((size_t)n + 1) * sizeof(*offsets));
    if (arena == NULL || offsets == NULL) {
        snprintf(errstr, sizeof(errstr), "out of memory for %ld events", n);
        goto fail;
    }

    unsigned seed = 12345;
    for (long i = 0; i < n; i++) {
        keng_event_t ev = {.kind = KENG_KIND_INCIDENT};
        size_t len;
        seed = seed * 1103515245u + 12345u;
        snprintf(ev.event_id, sizeof(ev.event_id), "%08x-%04x-4%03x-a%03x-%012lx", seed,
                 (unsigned)(i & 0xffff), (unsigned)(seed >> 20) & 0xfff,
                 (unsigned)(seed >> 8) & 0xfff, (unsigned long)i);
        snprintf(ev.board_id, sizeof(ev.board_id), "D%02u-C%03u-B%02u", 1 + seed % 21,
                 1 + (seed >> 5) % 40, 1 + (seed >> 11) % 20);
        ev.has_group = (seed >> 3) & 1;
        snprintf(ev.group_id, sizeof(ev.group_id), "%s-G%02u", ev.board_id, 1 + (seed >> 7) % 9);
        ev.occurred_at = 1735689600000LL + (int64_t)i * 31000;
        ev.reported_at = ev.occurred_at + 60000 + (seed % 600000);
        ev.category = (keng_category_t)(seed % KENG_CAT_COUNT);
        ev.severity = (keng_severity_t)((seed >> 4) % KENG_SEV_COUNT);
        ev.resolution = (keng_resolution_t)((seed >> 6) % KENG_RES_COUNT);
        ev.source = (keng_source_t)((seed >> 9) % KENG_SRC_COUNT);
        ev.people_involved = (int32_t)(1 + (seed >> 12) % 6);
        ev.has_location = (seed >> 2) & 1;
        ev.lat = 18.6 + (seed % 1000) / 1000.0;
        ev.lon = 105.2 + ((seed >> 10) % 1000) / 1000.0;
        ev.summary = summaries[(seed >> 14) % 4];
        ev.summary_len = ev.summary != NULL ? strlen(ev.summary) : 0;
        offsets[i] = used;
        if (keng_avro_encode(enc, &ev, arena + used, cap - used, &len, errstr, sizeof(errstr)) < 0)
            goto fail;
        used += len;
    }
    offsets[n] = used;

    long counts[KENG_CAT_COUNT] = {0};
    keng_event_t ev;
    if (argc > 2 && strcmp(argv[2], "--registry-only") == 0) {
        /* Only the registry ids, for an instruction count under valgrind against a run
         * without it (the machine's timings are too noisy for a few per cent). */
        keng_avro_decoder_use_registry(dec);
        for (int32_t id = 1; id <= 4; id++)
            if (keng_avro_decoder_add_writer(dec, id + 100, keng_schema_store_json(store, id),
                                             errstr, sizeof(errstr)) != 0)
                goto fail;
        for (long i = 0; i < n; i++)
            arena[offsets[i] + 4] = (unsigned char)(arena[offsets[i] + 4] + 100);
    }
    double start = bench_seconds();
    for (long i = 0; i < n; i++) {
        int err = keng_avro_decode(dec, arena + offsets[i], offsets[i + 1] - offsets[i], &ev, NULL,
                                   errstr, sizeof(errstr));
        if (err != KENG_AVRO_OK)
            goto fail;
        counts[ev.category]++;
    }
    double secs = bench_seconds() - start;

    printf("encoded: %ld events, %.1f bytes each on average\n", n, (double)used / (double)n);
    printf("decode: %ld events in %.3f s = %.0f events/s\n", n, secs, (double)n / secs);
    if (argc > 2 && strcmp(argv[2], "--registry-ids") == 0) {
        /* The same messages framed with Schema Registry ids (the manifest's + 100), read by
         * a decoder in registry mode given their schemas once, against the manifest's ids:
         * three rounds each, the order swapped each round; the best of three of each. */
        keng_avro_decoder_t *rdec = keng_avro_decoder_new(store, errstr, sizeof(errstr));
        double best[2] = {1e9, 1e9};
        if (rdec == NULL)
            goto fail;
        keng_avro_decoder_use_registry(rdec);
        for (int32_t id = 1; id <= 4; id++)
            if (keng_avro_decoder_add_writer(rdec, id + 100, keng_schema_store_json(store, id),
                                             errstr, sizeof(errstr)) != 0) {
                keng_avro_decoder_destroy(rdec);
                goto fail;
            }
        for (int run = 0; run < 6; run++) {
            int mode = (run / 2 + run) % 2;
            for (long i = 0; i < n; i++)
                arena[offsets[i] + 4] =
                    (unsigned char)(arena[offsets[i] + 4] % 100 + (mode == 1 ? 100 : 0));
            double t0 = bench_seconds();
            for (long i = 0; i < n; i++) {
                if (keng_avro_decode(mode == 1 ? rdec : dec, arena + offsets[i],
                                     offsets[i + 1] - offsets[i], &ev, NULL, errstr,
                                     sizeof(errstr)) != KENG_AVRO_OK) {
                    keng_avro_decoder_destroy(rdec);
                    goto fail;
                }
                counts[ev.category]++;
            }
            double t = bench_seconds() - t0;
            if (t < best[mode])
                best[mode] = t;
        }
        keng_avro_decoder_destroy(rdec);
        printf("decode (manifest ids, best of 3): %.0f events/s\n", (double)n / best[0]);
        printf("decode (registry ids, best of 3): %.0f events/s (%+.1f%% against manifest ids)\n",
               (double)n / best[1], (best[0] / best[1] - 1.0) * 100.0);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "keng-bench-codec: %s\n", errstr);
out:
    free(offsets);
    free(arena);
    keng_avro_decoder_destroy(dec);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
    return rc;
}
