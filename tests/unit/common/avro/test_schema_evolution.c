/* Incident v2 (id 4, police_case_id) against v1 (id 1), both directions of upgrade: a v2 reader
 * on v1 data, a reader pinned to v1 on v2 data, a stream mixing both; the pins and the
 * schemas.* config keys that choose reader and writer; police_case_id's bounds in Avro and in
 * JSON; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "avro_codec.h"
#include "config.h"
#include "event.h"

#define INCIDENT "vn.antt.Incident"

typedef struct fixture {
    keng_schema_store_t *newest; /* built-in, nothing pinned: reads and writes v2 */
    keng_schema_store_t *old;    /* built-in, reader and writer pinned to v1 */
    keng_avro_encoder_t *enc2, *enc1;
    keng_avro_decoder_t *dec2, *dec1;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];

    f->newest = keng_schema_store_builtin(errstr, sizeof(errstr));
    f->old = keng_schema_store_builtin(errstr, sizeof(errstr));
    if (f->newest == NULL || f->old == NULL)
        fail_msg("builtin store: %s", errstr);
    if (keng_schema_store_pin(f->old, KENG_SCHEMA_READER, INCIDENT, 1, errstr, sizeof(errstr)) ||
        keng_schema_store_pin(f->old, KENG_SCHEMA_WRITER, INCIDENT, 1, errstr, sizeof(errstr)))
        fail_msg("pin: %s", errstr);
    f->enc2 = keng_avro_encoder_new(f->newest, errstr, sizeof(errstr));
    f->enc1 = keng_avro_encoder_new(f->old, errstr, sizeof(errstr));
    f->dec2 = keng_avro_decoder_new(f->newest, errstr, sizeof(errstr));
    f->dec1 = keng_avro_decoder_new(f->old, errstr, sizeof(errstr));
    if (!f->enc2 || !f->enc1 || !f->dec2 || !f->dec1)
        fail_msg("codec: %s", errstr);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    keng_avro_decoder_destroy(f->dec1);
    keng_avro_decoder_destroy(f->dec2);
    keng_avro_encoder_destroy(f->enc1);
    keng_avro_encoder_destroy(f->enc2);
    keng_schema_store_destroy(f->old);
    keng_schema_store_destroy(f->newest);
    free(f);
    return 0;
}

static keng_event_t transferred(int i, const char *case_id)
{
    keng_event_t ev = {.kind = KENG_KIND_INCIDENT};
    snprintf(ev.event_id, sizeof(ev.event_id), "evo-%04d", i);
    strcpy(ev.board_id, "D07-C012-B03");
    ev.occurred_at = 1740837600000LL + i;
    ev.reported_at = 1740838200000LL + i;
    ev.category = (keng_category_t)(i % KENG_CAT_COUNT);
    ev.severity = KENG_SEV_HIGH;
    ev.resolution = KENG_RES_TRANSFERRED_TO_POLICE;
    ev.people_involved = i % 7;
    ev.source = KENG_SRC_PATROL;
    ev.summary = "Chuyển công an xã";
    ev.summary_len = strlen(ev.summary);
    if (case_id != NULL) {
        ev.has_police_case_id = true;
        snprintf(ev.police_case_id, sizeof(ev.police_case_id), "%.*s",
                 (int)sizeof(ev.police_case_id) - 1, case_id);
    }
    return ev;
}

static size_t encode(keng_avro_encoder_t *enc, const keng_event_t *ev, unsigned char *buf,
                     size_t cap)
{
    char errstr[256];
    size_t len = 0;
    if (keng_avro_encode(enc, ev, buf, cap, &len, errstr, sizeof(errstr)) != 0)
        fail_msg("encode %s: %s", ev->event_id, errstr);
    return len;
}

static int32_t frame_id(const unsigned char *buf)
{
    return (int32_t)((uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 |
                     buf[4]);
}

/* Decodes and checks every field the two versions share, and the case number wanted. */
static void expect_read(keng_avro_decoder_t *dec, const unsigned char *buf, size_t len,
                        const keng_event_t *in, const char *want_case)
{
    char errstr[256];
    keng_event_t out;
    int32_t id;
    int rc = keng_avro_decode(dec, buf, len, &out, &id, errstr, sizeof(errstr));

    if (rc != KENG_AVRO_OK)
        fail_msg("decode %s (id %d): expected ok, got %s: %s", in->event_id, (int)frame_id(buf),
                 keng_avro_err_reason(rc), errstr);
    assert_int_equal(id, frame_id(buf));
    assert_string_equal(out.event_id, in->event_id);
    assert_string_equal(out.board_id, in->board_id);
    assert_int_equal(out.occurred_at, in->occurred_at);
    assert_int_equal(out.reported_at, in->reported_at);
    assert_int_equal(out.category, in->category);
    assert_int_equal(out.severity, in->severity);
    assert_int_equal(out.resolution, in->resolution);
    assert_int_equal(out.people_involved, in->people_involved);
    assert_int_equal(out.source, in->source);
    assert_int_equal(out.summary_len, in->summary_len);
    assert_memory_equal(out.summary, in->summary, in->summary_len);
    if (want_case == NULL) {
        if (out.has_police_case_id)
            fail_msg("%s: expected no police_case_id, got '%s'", in->event_id, out.police_case_id);
    } else {
        assert_true(out.has_police_case_id);
        assert_string_equal(out.police_case_id, want_case);
    }
}

static void test_builtin_writes_and_reads_v2(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(KENG_SCHEMA_ID_INCIDENT, 4);
    assert_non_null(keng_schema_store_json(f->newest, KENG_SCHEMA_ID_INCIDENT_V1));
    assert_non_null(strstr(keng_schema_store_json(f->newest, 4), "police_case_id"));
    assert_int_equal(keng_schema_store_id_of(f->newest, INCIDENT, KENG_SCHEMA_WRITER), 4);
    assert_int_equal(keng_schema_store_id_of(f->newest, INCIDENT, KENG_SCHEMA_READER), 4);
    assert_int_equal(keng_schema_store_id_of(f->old, INCIDENT, KENG_SCHEMA_WRITER), 1);
    assert_int_equal(keng_schema_store_id_of(f->old, INCIDENT, KENG_SCHEMA_READER), 1);
    assert_int_equal(keng_schema_store_id_of(f->old, "vn.antt.Mediation", KENG_SCHEMA_WRITER), 2);
    assert_int_equal(keng_schema_store_id_of(f->old, "vn.antt.Nothing", KENG_SCHEMA_WRITER), -1);
}

/* New consumer, old producer: v1 data read by the v2 reader has no case number. */
static void test_v1_data_v2_reader(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[2048];
    keng_event_t in = transferred(1, "88/2025/CAX Nghi Lộc");
    size_t len = encode(f->enc1, &in, buf, sizeof(buf));

    assert_int_equal(frame_id(buf), 1);
    /* A v1 writer has no place for the case number: it is dropped, not an error. */
    expect_read(f->dec2, buf, len, &in, NULL);
    expect_read(f->dec1, buf, len, &in, NULL);
}

/* Old consumer, new producer: v2 data read by a reader pinned to v1. */
static void test_v2_data_v1_reader(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[2048];
    keng_event_t in = transferred(2, "88/2025/CAX Nghi Lộc");
    size_t len = encode(f->enc2, &in, buf, sizeof(buf));

    assert_int_equal(frame_id(buf), 4);
    expect_read(f->dec2, buf, len, &in, "88/2025/CAX Nghi Lộc");
    expect_read(f->dec1, buf, len, &in, NULL);

    in = transferred(3, NULL);
    len = encode(f->enc2, &in, buf, sizeof(buf));
    expect_read(f->dec2, buf, len, &in, NULL);
    expect_read(f->dec1, buf, len, &in, NULL);
}

/* One topic, both versions interleaved, read in order by both readers: each decoder keeps
 * one resolver per writer id and switches between them on every message. */
static void test_mixed_stream(void **state)
{
    fixture_t *f = *state;
    enum { N = 64 };
    static unsigned char bufs[N][1024];
    size_t lens[N];
    keng_event_t ins[N];
    char cases[N][KENG_POLICE_CASE_MAX + 1];

    for (int i = 0; i < N; i++) {
        snprintf(cases[i], sizeof(cases[i]), "%d/2025/CAX-%d", i, i % 5);
        ins[i] = transferred(i, i % 3 == 0 ? NULL : cases[i]);
        ins[i].resolution = (keng_resolution_t)(i % KENG_RES_COUNT);
        lens[i] = encode(i % 2 ? f->enc2 : f->enc1, &ins[i], bufs[i], sizeof(bufs[i]));
        assert_int_equal(frame_id(bufs[i]), i % 2 ? 4 : 1);
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            bool carried = i % 2 == 1 && i % 3 != 0;
            expect_read(f->dec2, bufs[i], lens[i], &ins[i], carried ? cases[i] : NULL);
            expect_read(f->dec1, bufs[i], lens[i], &ins[i], NULL);
        }
    }
}

/* police_case_id as decoded: bounded and without control characters, like JSON's. */
static void test_decoded_case_id_bounds(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[2048];
    char errstr[256];
    keng_event_t in = transferred(4, "A"), out;
    size_t len = encode(f->enc2, &in, buf, sizeof(buf));

    /* The datum ends with the case number: branch 1 (0x02), length 1 (0x02), 'A'. */
    assert_memory_equal(buf + len - 3,
                        "\x02\x02"
                        "A",
                        3);
    len -= 1 + 1;
    buf[len++] = (unsigned char)(2 * (KENG_POLICE_CASE_MAX + 1)); /* zigzag of 41 */
    memset(buf + len, 'A', KENG_POLICE_CASE_MAX + 1);
    len += KENG_POLICE_CASE_MAX + 1;
    assert_int_equal(keng_avro_decode(f->dec2, buf, len, &out, NULL, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_FIELD);
    assert_non_null(strstr(errstr, "police_case_id"));
    /* A reader pinned to v1 skips the field, whatever it holds. */
    assert_int_equal(keng_avro_decode(f->dec1, buf, len, &out, NULL, errstr, sizeof(errstr)),
                     KENG_AVRO_OK);

    in = transferred(5, "12\x01"
                        "3");
    len = encode(f->enc2, &in, buf, sizeof(buf));
    assert_int_equal(keng_avro_decode(f->dec2, buf, len, &out, NULL, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_FIELD);
    char longest[KENG_POLICE_CASE_MAX + 1];
    memset(longest, 'Z', KENG_POLICE_CASE_MAX);
    longest[KENG_POLICE_CASE_MAX] = '\0';
    in = transferred(6, longest);
    len = encode(f->enc2, &in, buf, sizeof(buf));
    expect_read(f->dec2, buf, len, &in, longest);
}

static void test_pin_errors(void **state)
{
    fixture_t *f = *state;
    char errstr[256];

    assert_int_equal(
        keng_schema_store_pin(f->newest, KENG_SCHEMA_READER, INCIDENT, 3, errstr, sizeof(errstr)),
        -1);
    assert_non_null(strstr(errstr, "no version 3 of vn.antt.Incident"));
    assert_non_null(strstr(errstr, "1, 2"));
    assert_int_equal(keng_schema_store_pin(f->newest, KENG_SCHEMA_WRITER, "vn.antt.Nothing", 1,
                                           errstr, sizeof(errstr)),
                     -1);
    assert_non_null(strstr(errstr, "vn.antt.Nothing"));
    /* A failed pin leaves the store as it was. */
    assert_int_equal(keng_schema_store_id_of(f->newest, INCIDENT, KENG_SCHEMA_READER), 4);
    /* Pinning again replaces the earlier pin. */
    assert_int_equal(
        keng_schema_store_pin(f->old, KENG_SCHEMA_WRITER, INCIDENT, 2, errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_schema_store_id_of(f->old, INCIDENT, KENG_SCHEMA_WRITER), 4);
    assert_int_equal(keng_schema_store_id_of(f->old, INCIDENT, KENG_SCHEMA_READER), 1);
}

static keng_schema_store_t *store_from(const char *const *kv, char *errstr, size_t size)
{
    keng_config_t *cfg = keng_config_new();
    keng_schema_store_t *store;

    for (; kv[0] != NULL; kv += 2)
        keng_config_set(cfg, kv[0], kv[1]);
    store = keng_schema_store_from_config(cfg, errstr, size);
    keng_config_destroy(cfg);
    return store;
}

static void test_config_keys(void **state)
{
    char errstr[512];
    keng_schema_store_t *store;
    (void)state;

    const char *const none[] = {"kafka.acks", "all", NULL};
    store = store_from(none, errstr, sizeof(errstr));
    assert_non_null(store);
    assert_int_equal(keng_schema_store_id_of(store, INCIDENT, KENG_SCHEMA_WRITER), 4);
    keng_schema_store_destroy(store);

    const char *const pinned[] = {
        "schemas.dir", KENG_SOURCE_DIR "/schemas",        "schemas.reader.vn.antt.Incident",
        "1",           "schemas.writer.vn.antt.Incident", "1",
        NULL};
    store = store_from(pinned, errstr, sizeof(errstr));
    if (store == NULL)
        fail_msg("schemas.dir: %s", errstr);
    assert_int_equal(keng_schema_store_id_of(store, INCIDENT, KENG_SCHEMA_READER), 1);
    assert_int_equal(keng_schema_store_id_of(store, INCIDENT, KENG_SCHEMA_WRITER), 1);
    assert_non_null(keng_schema_store_json(store, 4));
    keng_schema_store_destroy(store);

    const char *const typo[] = {"schemas.raeder.vn.antt.Incident", "1", NULL};
    assert_null(store_from(typo, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "unknown config key schemas.raeder.vn.antt.Incident"));

    const char *const not_number[] = {"schemas.reader.vn.antt.Incident", "v1", NULL};
    assert_null(store_from(not_number, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "version number"));

    const char *const missing[] = {"schemas.writer.vn.antt.Incident", "7", NULL};
    assert_null(store_from(missing, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "schemas.writer.vn.antt.Incident=7"));

    const char *const no_dir[] = {"schemas.dir", "/nonexistent/keng-schemas", NULL};
    assert_null(store_from(no_dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "manifest.csv"));
}

static int from_json_text(const char *text, keng_event_t *ev, keng_field_error_t *err)
{
    json_t *obj = json_loads(text, 0, NULL);
    keng_event_limits_t limits = {.now_ms = 1740900000000LL, .fill_reported_at = true};
    int rc;

    assert_non_null(obj);
    rc = keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, ev, err);
    json_decref(obj);
    return rc;
}

#define INCIDENT_JSON(resolution, extra)                                                           \
    "{\"event_id\": \"e-1\", \"board_id\": \"D07-C012-B03\", \"occurred_at\": 1740837600000, "     \
    "\"severity\": \"LOW\", \"resolution\": \"" resolution "\", \"people_involved\": 1, "          \
    "\"source\": \"SMS\"" extra "}"

static void test_json_case_id(void **state)
{
    keng_event_t ev;
    keng_field_error_t err;
    json_t *out;
    (void)state;

    assert_int_equal(
        from_json_text(INCIDENT_JSON("TRANSFERRED_TO_POLICE",
                                     ", \"police_case_id\": \"88/2025/CAX Hưng Dũng\""),
                       &ev, &err),
        0);
    assert_true(ev.has_police_case_id);
    assert_string_equal(ev.police_case_id, "88/2025/CAX Hưng Dũng");
    out = keng_event_to_json(&ev);
    assert_string_equal(json_string_value(json_object_get(out, "police_case_id")),
                        "88/2025/CAX Hưng Dũng");
    json_decref(out);

    /* Absent or null: no case number, and the JSON form leaves the key out. */
    assert_int_equal(
        from_json_text(INCIDENT_JSON("PENDING", ", \"police_case_id\": null"), &ev, &err), 0);
    assert_false(ev.has_police_case_id);
    out = keng_event_to_json(&ev);
    assert_null(json_object_get(out, "police_case_id"));
    json_decref(out);

    /* Accepted with any resolution: the case number may come before the resolution. */
    assert_int_equal(
        from_json_text(INCIDENT_JSON("HANDLED_LOCALLY", ", \"police_case_id\": \"1\""), &ev, &err),
        0);
    assert_true(ev.has_police_case_id);

    assert_int_equal(
        from_json_text(INCIDENT_JSON("PENDING", ", \"police_case_id\": 17"), &ev, &err), -1);
    assert_string_equal(err.field, "police_case_id");
    assert_int_equal(
        from_json_text(INCIDENT_JSON("PENDING", ", \"police_case_id\": \"\""), &ev, &err), -1);
    assert_string_equal(err.field, "police_case_id");
    assert_int_equal(
        from_json_text(INCIDENT_JSON("PENDING", ", \"police_case_id\": \"a\\u0007b\""), &ev, &err),
        -1);
    assert_non_null(strstr(err.message, "control characters"));
    assert_int_equal(
        from_json_text(INCIDENT_JSON("PENDING", ", \"police_case_id\": \"a\\u0085b\""), &ev, &err),
        -1);
    assert_int_equal(
        from_json_text(
            INCIDENT_JSON("PENDING",
                          ", \"police_case_id\": \"0123456789012345678901234567890123456789X\""),
            &ev, &err),
        -1);
    assert_non_null(strstr(err.message, "at most 40"));
    assert_true(keng_police_case_id_valid("0123456789012345678901234567890123456789", 40));
    assert_false(keng_police_case_id_valid("x\x7f", 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_builtin_writes_and_reads_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v1_data_v2_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_data_v1_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decoded_case_id_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_errors, setup, teardown),
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_json_case_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
