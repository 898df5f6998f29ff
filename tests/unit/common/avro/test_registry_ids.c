/* The codec in Schema Registry mode: an encoder frames with the registry's id of its writer
 * schema; a decoder in registry mode knows no id until its writer schema is added, then
 * decodes with writer-to-reader resolution; the added writers are bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "avro_codec.h"
#include "event.h"

static keng_event_t incident(void)
{
    keng_event_t ev = {.kind = KENG_KIND_INCIDENT};
    strcpy(ev.event_id, "e-1");
    strcpy(ev.board_id, "D07-C012-B03");
    ev.occurred_at = 1740837600000LL;
    ev.reported_at = 1740838200123LL;
    ev.category = KENG_CAT_FRAUD;
    ev.severity = KENG_SEV_HIGH;
    ev.resolution = KENG_RES_HANDLED_LOCALLY;
    ev.people_involved = 2;
    ev.source = KENG_SRC_SMS;
    return ev;
}

static void test_encoder_frames_the_registry_id(void **state)
{
    char errstr[256], buf[1024];
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));
    keng_avro_encoder_t *enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    keng_event_t ev = incident();
    const char *json = NULL;
    size_t len;

    (void)state;
    assert_non_null(enc);
    assert_string_equal(keng_avro_encoder_writer(enc, KENG_KIND_INCIDENT, &json),
                        "vn.antt.Incident");
    assert_string_equal(json, keng_schema_store_json(store, KENG_SCHEMA_ID_INCIDENT));
    assert_int_equal(keng_avro_encode(enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0);
    assert_int_equal((unsigned char)buf[4], KENG_SCHEMA_ID_INCIDENT);
    keng_avro_encoder_set_id(enc, KENG_KIND_INCIDENT, 0x01020304);
    assert_int_equal(keng_avro_encode(enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0);
    assert_memory_equal(buf, "\x00\x01\x02\x03\x04", 5);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
}

static void test_decoder_in_registry_mode(void **state)
{
    char errstr[256], buf[1024];
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));
    keng_avro_encoder_t *enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    keng_avro_decoder_t *dec = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    keng_event_t ev = incident(), out;
    int32_t id = 0;
    size_t len;

    (void)state;
    /* Incident v1 (manifest id 1) written under registry id 77. */
    assert_int_equal(keng_schema_store_pin(store, KENG_SCHEMA_WRITER, "vn.antt.Incident", 1, errstr,
                                           sizeof(errstr)),
                     0);
    keng_avro_encoder_destroy(enc);
    enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    keng_avro_encoder_set_id(enc, KENG_KIND_INCIDENT, 77);
    assert_int_equal(keng_avro_encode(enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0);

    /* Outside registry mode, 77 is unknown; so is manifest id 1 in registry mode. */
    assert_int_equal(keng_avro_decode(dec, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_UNKNOWN_ID);
    assert_true(keng_avro_decoder_knows(dec, 1));
    keng_avro_decoder_use_registry(dec);
    assert_false(keng_avro_decoder_knows(dec, 1));
    assert_false(keng_avro_decoder_knows(dec, 77));
    assert_int_equal(keng_avro_decode(dec, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_UNKNOWN_ID);
    assert_int_equal(id, 77);
    assert_non_null(strstr(errstr, "registry"));

    assert_int_equal(keng_avro_decoder_add_writer(dec, 77, keng_schema_store_json(store, 1), errstr,
                                                  sizeof(errstr)),
                     0);
    assert_true(keng_avro_decoder_knows(dec, 77));
    assert_int_equal(keng_avro_decode(dec, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_OK);
    assert_string_equal(out.event_id, "e-1");
    assert_int_equal(out.category, KENG_CAT_FRAUD);
    assert_int_equal(out.people_involved, 2);

    /* Not a schema: refused, and the id stays unknown. */
    assert_int_equal(
        keng_avro_decoder_add_writer(dec, 78, "{\"type\": \"nope\"", errstr, sizeof(errstr)), -1);
    assert_int_equal(keng_avro_decoder_add_writer(dec, 79, "\"string\"", errstr, sizeof(errstr)),
                     -1);
    assert_false(keng_avro_decoder_knows(dec, 78));

    /* Bounded: past KENG_AVRO_ADDED_MAX the oldest goes, and decoding it asks again. */
    for (int32_t i = 0; i < KENG_AVRO_ADDED_MAX; i++)
        assert_int_equal(keng_avro_decoder_add_writer(dec, 1000 + i,
                                                      keng_schema_store_json(store, 2), errstr,
                                                      sizeof(errstr)),
                         0);
    assert_false(keng_avro_decoder_knows(dec, 77));
    assert_true(keng_avro_decoder_knows(dec, 1000 + KENG_AVRO_ADDED_MAX - 1));
    assert_int_equal(keng_avro_decode(dec, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_UNKNOWN_ID);

    keng_avro_decoder_destroy(dec);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_frames_the_registry_id),
        cmocka_unit_test(test_decoder_in_registry_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
