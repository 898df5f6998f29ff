/* Fuzzes the decode path of every message keng reads from Kafka: the Confluent framing, the
 * schema id lookup, the length and block-count guard in front of Avro-C, schema resolution and
 * the field checks; it never touches Kafka (each input is one message's bytes). libFuzzer runs
 * with -malloc_limit_mb, so a length prefix that makes Avro-C allocate gigabytes is a crash
 * here. A message that decodes must encode again and decode to the same event. The decode plan
 * (the default path) and the Avro-C reference path must agree on every message: the same
 * result, and the same event when it decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avro_codec.h"
#include "fuzz_util.h"

/* Enough for any event: ids and summary are bounded, see event.h. */
#define ENCODE_CAP (64 * 1024)

static keng_schema_store_t *store;
static keng_avro_decoder_t *decoder;
static keng_avro_decoder_t *reference; /* the Avro-C path */
static keng_avro_encoder_t *encoder;

/* At exit, so that LeakSanitizer's check at exit sees only what the codec really lost. */
static void teardown(void)
{
    keng_avro_encoder_destroy(encoder);
    keng_avro_decoder_destroy(reference);
    keng_avro_decoder_destroy(decoder);
    keng_schema_store_destroy(store);
}

/* The store and codec live for the whole run, as in a consumer: a decoder keeps per-schema
 * state between messages, and that state must survive hostile input too. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errstr[512];

    store = keng_schema_store_builtin(errstr, sizeof(errstr));
    FUZZ_CHECK(store != NULL, "built-in schema store: %s", errstr);
    decoder = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    FUZZ_CHECK(decoder != NULL, "decoder: %s", errstr);
    keng_avro_decoder_set_path(decoder, KENG_AVRO_PATH_PLAN);
    reference = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    FUZZ_CHECK(reference != NULL, "reference decoder: %s", errstr);
    keng_avro_decoder_set_path(reference, KENG_AVRO_PATH_AVRO_C);
    encoder = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    FUZZ_CHECK(encoder != NULL, "encoder: %s", errstr);
    atexit(teardown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[ENCODE_CAP];
    char errstr[512], ref_errstr[512];
    keng_event_t ev, again, ref;
    int32_t id = -1;
    size_t len = 0;
    char *summary = NULL;
    int rc, ref_rc;

    /* libFuzzer hands data in a heap block of exactly size bytes: ASan sees any read past it. */
    const uint8_t *msg = data;

    errstr[0] = '\0';
    ref_errstr[0] = '\0';
    ref_rc = keng_avro_decode(reference, msg, size, &ref, NULL, ref_errstr, sizeof(ref_errstr));
    rc = keng_avro_decode(decoder, msg, size, &ev, &id, errstr, sizeof(errstr));
    FUZZ_CHECK(rc == ref_rc, "the plan returned %d (%s) but Avro-C %d (%s)", rc, errstr, ref_rc,
               ref_errstr);
    if (rc == KENG_AVRO_OK) {
        /* The reference's summary is still valid: each decoder keeps its own. */
        summary = fuzz_summary_dup(&ref);
        fuzz_expect_same_event(&ref, summary, &ev);
        free(summary);
        summary = NULL;
    }
    if (rc != KENG_AVRO_OK) {
        FUZZ_CHECK(rc <= KENG_AVRO_ERR_FRAMING && rc >= KENG_AVRO_ERR_FIELD,
                   "keng_avro_decode returned %d, not a keng_avro_err_t", rc);
        FUZZ_CHECK(keng_avro_err_reason(rc) != NULL, "no reason for error %d", rc);
        FUZZ_CHECK(errstr[0] != '\0', "error %d (%s) with an empty message", rc,
                   keng_avro_err_reason(rc));
        goto out;
    }
    FUZZ_CHECK(size >= KENG_FRAME_HEADER_LEN && msg[0] == KENG_FRAME_MAGIC,
               "a message without the framing decoded");
    FUZZ_CHECK(keng_schema_store_json(store, id) != NULL, "decoded with unknown schema id %d",
               (int)id);
    fuzz_expect_sane_event(&ev);

    /* The summary is borrowed from the decoder, which the next decode reuses. */
    summary = fuzz_summary_dup(&ev);
    rc = keng_avro_encode(encoder, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr));
    FUZZ_CHECK(rc == 0, "a decoded event does not encode: %s", errstr);
    rc = keng_avro_decode(decoder, buf, len, &again, NULL, errstr, sizeof(errstr));
    FUZZ_CHECK(rc == KENG_AVRO_OK, "keng_avro_encode wrote what keng_avro_decode refuses: %s",
               errstr);
    fuzz_expect_same_event(&ev, summary, &again);

out:
    free(summary);
    return 0;
}
