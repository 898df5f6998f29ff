/* The Avro codec: round trips, schema evolution both ways, and hostile bytes that must be
 * refused before Avro-C ever sees them; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <avro.h>
#include <cmocka.h>

#include "avro_codec.h"
#include "event.h"

typedef struct fixture {
    keng_schema_store_t *store;
    keng_avro_encoder_t *enc;
    keng_avro_decoder_t *dec;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];

    f->store = keng_schema_store_builtin(errstr, sizeof(errstr));
    if (f->store == NULL)
        fail_msg("builtin store: %s", errstr);
    f->enc = keng_avro_encoder_new(f->store, errstr, sizeof(errstr));
    f->dec = keng_avro_decoder_new(f->store, errstr, sizeof(errstr));
    if (f->enc == NULL || f->dec == NULL)
        fail_msg("codec: %s", errstr);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    keng_avro_decoder_destroy(f->dec);
    keng_avro_encoder_destroy(f->enc);
    keng_schema_store_destroy(f->store);
    free(f);
    return 0;
}

static const char *const summary_vi =
    "Trộm cắp tài sản tại chợ Vinh, đã bàn giao cho công an phường";

static keng_event_t full_incident(void)
{
    keng_event_t ev = {.kind = KENG_KIND_INCIDENT};
    strcpy(ev.event_id, "6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01");
    strcpy(ev.board_id, "D07-C012-B03");
    ev.has_group = true;
    strcpy(ev.group_id, "D07-C012-B03-G05");
    ev.occurred_at = 1740837600000LL;
    ev.reported_at = 1740838200123LL;
    ev.category = KENG_CAT_PROPERTY_DAMAGE;
    ev.severity = KENG_SEV_CRITICAL;
    ev.resolution = KENG_RES_HANDLED_LOCALLY;
    ev.people_involved = 4;
    ev.source = KENG_SRC_CAMERA;
    ev.has_location = true;
    ev.lat = 18.6733;
    ev.lon = -105.6923;
    ev.summary = summary_vi;
    ev.summary_len = strlen(summary_vi);
    return ev;
}

static keng_event_t full_mediation(void)
{
    keng_event_t ev = {.kind = KENG_KIND_MEDIATION};
    strcpy(ev.event_id, "m-2025-0001");
    strcpy(ev.board_id, "D21-C460-B07");
    ev.occurred_at = 1740800000000LL;
    ev.reported_at = 1740800000001LL;
    ev.dispute_type = KENG_DISPUTE_INHERITANCE;
    ev.outcome = KENG_OUTCOME_REFERRED;
    ev.parties = 5;
    ev.has_related_incident = true;
    strcpy(ev.related_incident_id, "6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01");
    return ev;
}

static void assert_events_equal(const keng_event_t *a, const keng_event_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->event_id, b->event_id);
    assert_string_equal(a->board_id, b->board_id);
    assert_int_equal(a->has_group, b->has_group);
    if (a->has_group)
        assert_string_equal(a->group_id, b->group_id);
    assert_int_equal(a->occurred_at, b->occurred_at);
    assert_int_equal(a->reported_at, b->reported_at);
    assert_int_equal(a->summary != NULL, b->summary != NULL);
    assert_int_equal(a->summary_len, b->summary_len);
    if (a->summary != NULL)
        assert_memory_equal(a->summary, b->summary, a->summary_len);
    if (a->kind == KENG_KIND_INCIDENT) {
        assert_int_equal(a->category, b->category);
        assert_int_equal(a->severity, b->severity);
        assert_int_equal(a->resolution, b->resolution);
        assert_int_equal(a->source, b->source);
        assert_int_equal(a->people_involved, b->people_involved);
        assert_int_equal(a->has_location, b->has_location);
        if (a->has_location && (a->lat != b->lat || a->lon != b->lon))
            fail_msg("location: expected %.17g,%.17g, got %.17g,%.17g", a->lat, a->lon, b->lat,
                     b->lon);
    } else {
        assert_int_equal(a->dispute_type, b->dispute_type);
        assert_int_equal(a->outcome, b->outcome);
        assert_int_equal(a->parties, b->parties);
        assert_int_equal(a->has_related_incident, b->has_related_incident);
        if (a->has_related_incident)
            assert_string_equal(a->related_incident_id, b->related_incident_id);
    }
}

static size_t encode(keng_avro_encoder_t *enc, const keng_event_t *ev, unsigned char *buf,
                     size_t cap)
{
    char errstr[256];
    size_t len = 0;
    if (keng_avro_encode(enc, ev, buf, cap, &len, errstr, sizeof(errstr)) != 0)
        fail_msg("encode: %s", errstr);
    return len;
}

static void expect_decode(keng_avro_decoder_t *dec, const unsigned char *buf, size_t len, int want,
                          const char *want_in_message)
{
    keng_event_t ev;
    char errstr[256] = "";
    int got = keng_avro_decode(dec, buf, len, &ev, NULL, errstr, sizeof(errstr));
    if (got != want)
        fail_msg("decode of %zu bytes: expected %d (%s), got %d (%s): %s", len, want,
                 keng_avro_err_reason(want), got, keng_avro_err_reason(got), errstr);
    if (want_in_message != NULL && strstr(errstr, want_in_message) == NULL)
        fail_msg("expected the message to mention '%s', got '%s'", want_in_message, errstr);
}

static void test_round_trip(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[1024];
    keng_event_t in[4] = {full_incident(), full_incident(), full_mediation(), full_mediation()};
    /* The second of each kind has every nullable field null. */
    in[1].has_group = false;
    in[1].has_location = false;
    in[1].summary = NULL;
    in[1].summary_len = 0;
    in[1].category = KENG_CAT_THEFT;
    in[3].has_related_incident = false;
    in[3].summary = "";
    in[3].summary_len = 0;
    in[3].has_group = true;
    strcpy(in[3].group_id, "D21-C460-B07-G01");

    for (int i = 0; i < 4; i++) {
        keng_event_t out;
        int32_t id = 0;
        char errstr[256];
        size_t len = encode(f->enc, &in[i], buf, sizeof(buf));
        assert_int_equal(buf[0], 0);
        assert_int_equal(keng_avro_decode(f->dec, buf, len, &out, &id, errstr, sizeof(errstr)),
                         KENG_AVRO_OK);
        assert_int_equal(id, in[i].kind == KENG_KIND_INCIDENT ? KENG_SCHEMA_ID_INCIDENT
                                                              : KENG_SCHEMA_ID_MEDIATION);
        assert_events_equal(&in[i], &out);
    }
}

static void test_encode_errors(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[1024];
    char errstr[256];
    size_t len;
    keng_event_t ev = full_incident();

    assert_int_equal(keng_avro_encode(f->enc, &ev, buf, 40, &len, errstr, sizeof(errstr)), -1);
    assert_non_null(strstr(errstr, "too small"));
    ev.severity = (keng_severity_t)9;
    assert_int_equal(keng_avro_encode(f->enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)),
                     -1);
    assert_non_null(strstr(errstr, "severity"));
    /* The encoder is fine afterwards. */
    ev = full_incident();
    encode(f->enc, &ev, buf, sizeof(buf));
}

/* The exact case from DESIGN.md: a message that claims an 8 GiB string. */
static void test_eight_gib_string(void **state)
{
    fixture_t *f = *state;
    /* event_id length 8 GiB = 2^33, zigzag 2^34, as a varint: 80 80 80 80 40. */
    const unsigned char msg[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x80,
                                 0x80, 0x80, 0x40, 'a',  'b',  'c'};
    expect_decode(f->dec, msg, sizeof(msg), KENG_AVRO_ERR_TRUNCATED, "8589934592");
    /* The same on a later field, board_id, after a valid event_id. */
    const unsigned char msg2[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 'e',
                                  0x80, 0x80, 0x80, 0x80, 0x40, 'x'};
    expect_decode(f->dec, msg2, sizeof(msg2), KENG_AVRO_ERR_TRUNCATED, "8589934592");
    /* And in a mediation's summary: an 8 GiB summary after a complete record prefix. */
}

static void test_truncation_at_every_offset(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[1024];
    keng_event_t evs[2] = {full_incident(), full_mediation()};

    for (int k = 0; k < 2; k++) {
        size_t len = encode(f->enc, &evs[k], buf, sizeof(buf));
        for (size_t cut = 0; cut < len; cut++) {
            /* A copy of exactly cut bytes, so a read past the end is caught by sanitizers. */
            unsigned char *part = malloc(cut > 0 ? cut : 1);
            memcpy(part, buf, cut);
            expect_decode(f->dec, part, cut,
                          cut < KENG_FRAME_HEADER_LEN ? KENG_AVRO_ERR_FRAMING
                                                      : KENG_AVRO_ERR_TRUNCATED,
                          NULL);
            free(part);
        }
        /* Still decodes whole afterwards. */
        expect_decode(f->dec, buf, len, KENG_AVRO_OK, NULL);
        /* One byte too many is not a valid message either. */
        buf[len] = 0;
        expect_decode(f->dec, buf, len + 1, KENG_AVRO_ERR_INVALID, "after its end");
    }
}

static void test_framing_and_unknown_id(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[1024];
    keng_event_t ev = full_incident();
    size_t len = encode(f->enc, &ev, buf, sizeof(buf));
    int32_t id = 0;
    char errstr[256];

    buf[0] = 0x7b; /* '{': someone produced JSON to the topic */
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FRAMING, "0x7b");
    buf[0] = 0;
    buf[4] = 99;
    assert_int_equal(keng_avro_decode(f->dec, buf, len, &ev, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_ERR_UNKNOWN_ID);
    assert_int_equal(id, 99);
    assert_non_null(strstr(errstr, "99"));
    buf[1] = 0xff; /* a negative id */
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_UNKNOWN_ID, NULL);
    expect_decode(f->dec, buf, 0, KENG_AVRO_ERR_FRAMING, "shorter");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_FRAMING), "bad-magic");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_UNKNOWN_ID), "unknown-schema-id");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_TRUNCATED), "truncated");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_INVALID), "invalid-avro");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_WRONG_RECORD), "wrong-record");
    assert_string_equal(keng_avro_err_reason(KENG_AVRO_ERR_FIELD), "bad-field");
}

/* Writes value (of the schema with the given id) as a framed message with Avro-C itself. */
static size_t frame_value(avro_value_t *value, int32_t id, unsigned char *buf, size_t cap)
{
    avro_writer_t w = avro_writer_memory((char *)buf + 5, (int64_t)cap - 5);
    if (avro_value_write(w, value) != 0)
        fail_msg("avro_value_write: %s", avro_strerror());
    size_t len = 5 + (size_t)avro_writer_tell(w);
    avro_writer_free(w);
    buf[0] = 0;
    buf[1] = (unsigned char)(id >> 24);
    buf[2] = (unsigned char)(id >> 16);
    buf[3] = (unsigned char)(id >> 8);
    buf[4] = (unsigned char)id;
    return len;
}

static void set_field_string(avro_value_t *rec, const char *name, const char *s)
{
    avro_value_t v, b;
    assert_int_equal(avro_value_get_by_name(rec, name, &v, NULL), 0);
    if (avro_value_get_type(&v) == AVRO_UNION) {
        assert_int_equal(avro_value_set_branch(&v, s ? 1 : 0, &b), 0);
        if (s == NULL) {
            avro_value_set_null(&b);
            return;
        }
        v = b;
    }
    assert_int_equal(avro_value_set_string(&v, s), 0);
}

static void set_field_long(avro_value_t *rec, const char *name, int64_t n)
{
    avro_value_t v;
    assert_int_equal(avro_value_get_by_name(rec, name, &v, NULL), 0);
    if (avro_value_get_type(&v) == AVRO_INT32)
        assert_int_equal(avro_value_set_int(&v, (int32_t)n), 0);
    else if (avro_value_get_type(&v) == AVRO_ENUM)
        assert_int_equal(avro_value_set_enum(&v, (int)n), 0);
    else
        assert_int_equal(avro_value_set_long(&v, n), 0);
}

/* A generic value of the schema with the given id, filled as a plain valid incident. */
static avro_value_iface_t *incident_value(const keng_schema_store_t *store, int32_t id,
                                          avro_schema_t *schema, avro_value_t *rec)
{
    const char *json = keng_schema_store_json(store, id);
    assert_non_null(json);
    assert_int_equal(avro_schema_from_json_length(json, strlen(json), schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(*schema);
    assert_int_equal(avro_generic_value_new(iface, rec), 0);
    set_field_string(rec, "event_id", "raw-1");
    set_field_string(rec, "board_id", "D07-C012-B03");
    set_field_string(rec, "group_id", NULL);
    set_field_long(rec, "occurred_at", 1740837600000LL);
    set_field_long(rec, "reported_at", 1740837600000LL);
    set_field_long(rec, "category", 0);
    set_field_long(rec, "severity", 1);
    set_field_long(rec, "resolution", 2);
    set_field_long(rec, "people_involved", 1);
    set_field_long(rec, "source", 3);
    avro_value_t loc, b;
    avro_value_get_by_name(rec, "location", &loc, NULL);
    avro_value_set_branch(&loc, 0, &b);
    avro_value_set_null(&b);
    set_field_string(rec, "summary", NULL);
    return iface;
}

static void test_alert_is_wrong_record(void **state)
{
    fixture_t *f = *state;
    const char *json = keng_schema_store_json(f->store, KENG_SCHEMA_ID_ALERT);
    avro_schema_t schema;
    avro_value_t rec, v, b, item;
    unsigned char buf[1024];

    assert_non_null(json);
    assert_int_equal(avro_schema_from_json_length(json, strlen(json), &schema), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    set_field_string(&rec, "alert_id", "board-spike:D07-C012-B03:1740837600000");
    set_field_string(&rec, "fingerprint", "board-spike:D07-C012-B03");
    set_field_string(&rec, "rule", "board-spike");
    set_field_long(&rec, "status", 0);
    set_field_long(&rec, "level", 0);
    set_field_string(&rec, "scope_id", "D07-C012-B03");
    set_field_string(&rec, "window", "24h");
    set_field_long(&rec, "count", 12);
    set_field_long(&rec, "threshold", 10);
    set_field_long(&rec, "starts_at", 1740837600000LL);
    avro_value_get_by_name(&rec, "ends_at", &v, NULL);
    avro_value_set_branch(&v, 0, &b);
    avro_value_set_null(&b);
    set_field_string(&rec, "summary", "Số vụ việc tăng đột biến");
    avro_value_get_by_name(&rec, "sample_event_ids", &v, NULL);
    avro_value_append(&v, &item, NULL);
    avro_value_set_string(&item, "e-1");
    avro_value_append(&v, &item, NULL);
    avro_value_set_string(&item, "e-2");
    size_t len = frame_value(&rec, KENG_SCHEMA_ID_ALERT, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_WRONG_RECORD, "vn.antt.Alert");

    /* A hostile array block count inside the Alert is still caught first: the last field is
     * the array, so rewrite its first block count to claim 2^40 items. */
    unsigned char bad[1024];
    size_t at = len - (1 + 4 + 4 + 1); /* count(1) "e-1"(1+3) "e-2"(1+3) end(1) */
    memcpy(bad, buf, at);
    const unsigned char huge[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x40};
    memcpy(bad + at, huge, sizeof(huge));
    memcpy(bad + at + sizeof(huge), buf + at + 1, len - at - 1);
    expect_decode(f->dec, bad, len - 1 + sizeof(huge), KENG_AVRO_ERR_TRUNCATED,
                  "array block count");

    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
}

static void test_field_bounds(void **state)
{
    fixture_t *f = *state;
    avro_schema_t schema;
    avro_value_t rec;
    unsigned char buf[8192];
    char id[KENG_EVENT_ID_MAX + 2];
    avro_value_iface_t *iface = incident_value(f->store, 1, &schema, &rec);

    size_t len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_OK, NULL);

    memset(id, 'a', KENG_EVENT_ID_MAX + 1);
    id[KENG_EVENT_ID_MAX + 1] = '\0';
    set_field_string(&rec, "event_id", id);
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "event_id is 65 bytes");

    set_field_string(&rec, "event_id", "has space");
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "event_id");

    set_field_string(&rec, "event_id", "ok-1");
    set_field_string(&rec, "board_id", "D07-C012-B03-THIS-IS-FAR-TOO-LONG-FOR-A-BOARD");
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "board_id");

    set_field_string(&rec, "board_id", "D07-C012-B03");
    set_field_long(&rec, "people_involved", -3);
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "people_involved");

    set_field_long(&rec, "people_involved", 2);
    avro_value_t loc, b, c;
    avro_value_get_by_name(&rec, "location", &loc, NULL);
    avro_value_set_branch(&loc, 1, &b);
    avro_value_get_by_name(&b, "lat", &c, NULL);
    avro_value_set_double(&c, 123.0);
    avro_value_get_by_name(&b, "lon", &c, NULL);
    avro_value_set_double(&c, 105.0);
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "location");

    avro_value_set_branch(&loc, 0, &b);
    avro_value_set_null(&b);
    char summary[KENG_SUMMARY_MAX + 2];
    memset(summary, 'x', sizeof(summary) - 1);
    summary[sizeof(summary) - 1] = '\0';
    set_field_string(&rec, "summary", summary);
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "summary is 4097 bytes");

    set_field_string(&rec, "summary", "\xc3\x28");
    len = frame_value(&rec, 1, buf, sizeof(buf));
    expect_decode(f->dec, buf, len, KENG_AVRO_ERR_FIELD, "UTF-8");

    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
}

static void test_invalid_datums(void **state)
{
    fixture_t *f = *state;
    unsigned char buf[1024], bad[1024];
    keng_event_t ev = full_incident();
    ev.has_group = false;
    size_t len = encode(f->enc, &ev, buf, sizeof(buf));
    /* Layout: header(5) event_id(1+36) board_id(1+12) group_id branch(1) ... */
    size_t group_at = 5 + 1 + 36 + 1 + 12;
    assert_int_equal(buf[group_at], 0);

    memcpy(bad, buf, len);
    bad[group_at] = 2 * 2; /* union branch 2 of 2 */
    expect_decode(f->dec, bad, len, KENG_AVRO_ERR_INVALID, "union branch out of range");
    bad[group_at] = 1; /* branch -1 */
    expect_decode(f->dec, bad, len, KENG_AVRO_ERR_INVALID, "union branch out of range");

    /* occurred_at and reported_at follow: two longs; then category. */
    size_t pos = group_at + 1;
    for (int i = 0; i < 2; i++)
        while (buf[pos++] & 0x80)
            ;
    memcpy(bad, buf, len);
    bad[pos] = 12 * 2; /* category index 12 of 12 symbols */
    expect_decode(f->dec, bad, len, KENG_AVRO_ERR_INVALID, "enum index out of range");

    /* A varint that never ends within 10 bytes. */
    unsigned char endless[] = {0,    0,    0,    0,    1,    0xff, 0xff, 0xff, 0xff,
                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'x'};
    expect_decode(f->dec, endless, sizeof(endless), KENG_AVRO_ERR_INVALID, NULL);
    /* A 10-byte varint whose last byte overflows 64 bits. */
    unsigned char overflow[] = {0,    0,    0,    0,    1,    0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 'x'};
    expect_decode(f->dec, overflow, sizeof(overflow), KENG_AVRO_ERR_INVALID, NULL);
    /* A negative string length. */
    unsigned char negative[] = {0, 0, 0, 0, 1, 0x03, 'x', 'y'};
    expect_decode(f->dec, negative, sizeof(negative), KENG_AVRO_ERR_INVALID, "negative");
    /* A mediation id with an incident body. */
    memcpy(bad, buf, len);
    bad[4] = KENG_SCHEMA_ID_MEDIATION;
    int got = keng_avro_decode(f->dec, bad, len, &ev, NULL, (char[256]){0}, 256);
    assert_true(got == KENG_AVRO_ERR_INVALID || got == KENG_AVRO_ERR_TRUNCATED ||
                got == KENG_AVRO_ERR_FIELD);
    /* Random garbage after a valid header never crashes. */
    srand(7);
    for (int round = 0; round < 20000; round++) {
        size_t n = 5 + (size_t)(rand() % 120);
        bad[0] = 0;
        bad[1] = bad[2] = bad[3] = 0;
        bad[4] = (unsigned char)(1 + rand() % 3);
        for (size_t i = 5; i < n; i++)
            bad[i] = (unsigned char)(rand() % 4 == 0 ? rand() : buf[i < len ? i : 5]);
        keng_avro_decode(f->dec, bad, n, &ev, NULL, NULL, 0);
    }
    expect_decode(f->dec, buf, len, KENG_AVRO_OK, NULL);
}

/* ---- schema evolution ------------------------------------------------------------------ */

/* A future Incident v3: one optional field with a default, one int field with a default, and
 * one category symbol appended, and v2's police_case_id left out (a field with a default may
 * go): what a later keng might write. */
static const char *const incident_future =
    "{\"type\": \"record\", \"name\": \"Incident\", \"namespace\": \"vn.antt\", \"fields\": ["
    "{\"name\": \"event_id\", \"type\": \"string\"},"
    "{\"name\": \"board_id\", \"type\": \"string\"},"
    "{\"name\": \"group_id\", \"type\": [\"null\", \"string\"], \"default\": null},"
    "{\"name\": \"occurred_at\", \"type\": {\"type\": \"long\", \"logicalType\": "
    "\"timestamp-millis\"}},"
    "{\"name\": \"reported_at\", \"type\": {\"type\": \"long\", \"logicalType\": "
    "\"timestamp-millis\"}},"
    "{\"name\": \"category\", \"type\": {\"type\": \"enum\", \"name\": \"IncidentCategory\","
    " \"symbols\": [\"THEFT\", \"ASSAULT\", \"PUBLIC_DISORDER\", \"DRUGS\", \"GAMBLING\","
    " \"DOMESTIC_VIOLENCE\", \"TRAFFIC\", \"HUMAN_TRAFFICKING\", \"ILLEGAL_MIGRATION\","
    " \"FRAUD\", \"PROPERTY_DAMAGE\", \"OTHER\", \"CYBERCRIME\"], \"default\": \"OTHER\"},"
    " \"default\": \"OTHER\"},"
    "{\"name\": \"severity\", \"type\": {\"type\": \"enum\", \"name\": \"Severity\","
    " \"symbols\": [\"LOW\", \"MEDIUM\", \"HIGH\", \"CRITICAL\"]}},"
    "{\"name\": \"resolution\", \"type\": {\"type\": \"enum\", \"name\": \"Resolution\","
    " \"symbols\": [\"PENDING\", \"HANDLED_LOCALLY\", \"TRANSFERRED_TO_POLICE\"]}},"
    "{\"name\": \"people_involved\", \"type\": \"int\"},"
    "{\"name\": \"source\", \"type\": {\"type\": \"enum\", \"name\": \"Source\","
    " \"symbols\": [\"MOBILE_APP\", \"SMS\", \"HOTLINE\", \"PATROL\", \"CAMERA\", \"OTHER\"]}},"
    "{\"name\": \"location\", \"type\": [\"null\", {\"type\": \"record\", \"name\": "
    "\"GeoPoint\", \"fields\": [{\"name\": \"lat\", \"type\": \"double\"},"
    " {\"name\": \"lon\", \"type\": \"double\"}]}], \"default\": null},"
    "{\"name\": \"channel\", \"type\": [\"null\", \"string\"], \"default\": null},"
    "{\"name\": \"summary\", \"type\": [\"null\", \"string\"], \"default\": null},"
    "{\"name\": \"witnesses\", \"type\": \"int\", \"default\": 0}"
    "]}";

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void copy_schema(const char *from_dir, const char *to_dir, const char *name)
{
    char path[512], text[8192];
    snprintf(path, sizeof(path), "%s/%s", from_dir, name);
    FILE *fp = fopen(path, "r");
    if (fp == NULL)
        fail_msg("cannot open %s", path);
    size_t n = fread(text, 1, sizeof(text) - 1, fp);
    text[n] = '\0';
    fclose(fp);
    write_text(to_dir, name, text);
}

static void remove_dir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_schema_evolution(void **state)
{
    (void)state;
    char dir[] = "/tmp/keng-avro-test-XXXXXX", errstr[512];
    unsigned char buf[1024];
    keng_event_t out;
    int32_t id;

    assert_non_null(mkdtemp(dir));
    copy_schema(KENG_SOURCE_DIR "/schemas", dir, "incident.v1.avsc");
    copy_schema(KENG_SOURCE_DIR "/schemas", dir, "mediation.v1.avsc");
    copy_schema(KENG_SOURCE_DIR "/schemas", dir, "alert.v1.avsc");
    copy_schema(KENG_SOURCE_DIR "/schemas", dir, "incident.v2.avsc");
    write_text(dir, "incident.v3.avsc", incident_future);
    write_text(dir, "manifest.csv",
               "# id,subject,version,file\n"
               "1,vn.antt.Incident,1,incident.v1.avsc\n"
               "2,vn.antt.Mediation,1,mediation.v1.avsc\n"
               "3,vn.antt.Alert,1,alert.v1.avsc\n"
               "4,vn.antt.Incident,2,incident.v2.avsc\n"
               "5,vn.antt.Incident,3,incident.v3.avsc\n");
    keng_schema_store_t *v2 = keng_schema_store_load(dir, errstr, sizeof(errstr));
    if (v2 == NULL)
        fail_msg("load %s: %s", dir, errstr);
    keng_avro_encoder_t *enc2 = keng_avro_encoder_new(v2, errstr, sizeof(errstr));
    keng_avro_decoder_t *dec2 = keng_avro_decoder_new(v2, errstr, sizeof(errstr));
    assert_non_null(enc2);
    assert_non_null(dec2);

    /* v3 writer: keng's encoder on the v3 store writes id 5, defaults in the new fields. */
    keng_event_t in = full_incident();
    size_t len = encode(enc2, &in, buf, sizeof(buf));
    assert_int_equal(buf[4], 5);
    assert_int_equal(keng_avro_decode(dec2, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_OK);
    assert_int_equal(id, 5);
    assert_events_equal(&in, &out);

    /* v1 writer (a producer pinned to v1), v3 reader: the reader's new fields are missing
     * from the writer. */
    keng_schema_store_t *old = keng_schema_store_builtin(errstr, sizeof(errstr));
    assert_non_null(old);
    assert_int_equal(keng_schema_store_pin(old, KENG_SCHEMA_WRITER, "vn.antt.Incident", 1, errstr,
                                           sizeof(errstr)),
                     0);
    keng_avro_encoder_t *enc1 = keng_avro_encoder_new(old, errstr, sizeof(errstr));
    assert_non_null(enc1);
    in.has_location = false;
    in.summary = NULL;
    in.summary_len = 0;
    len = encode(enc1, &in, buf, sizeof(buf));
    assert_int_equal(buf[4], 1);
    assert_int_equal(keng_avro_decode(dec2, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_OK);
    assert_events_equal(&in, &out);

    /* v3 writer, v1 reader: a store that knows id 5 as a writer but whose reader is pinned
     * to v1, as a consumer run as it was before the upgrade: keng keeps reading v1. */
    keng_schema_store_t *v1r = keng_schema_store_load(dir, errstr, sizeof(errstr));
    if (v1r == NULL)
        fail_msg("load %s: %s", dir, errstr);
    assert_int_equal(keng_schema_store_pin(v1r, KENG_SCHEMA_READER, "vn.antt.Incident", 1, errstr,
                                           sizeof(errstr)),
                     0);
    keng_avro_decoder_t *dec1 = keng_avro_decoder_new(v1r, errstr, sizeof(errstr));
    in = full_incident();
    len = encode(enc2, &in, buf, sizeof(buf));
    assert_int_equal(keng_avro_decode(dec1, buf, len, &out, &id, errstr, sizeof(errstr)),
                     KENG_AVRO_OK);
    assert_int_equal(id, 5);
    assert_events_equal(&in, &out);

    /* A v2 datum with the new fields set, and the new category symbol: keng reads the
     * schema's default (OTHER) for a symbol it does not know, and skips the new fields. */
    avro_schema_t schema;
    avro_value_t rec, v;
    avro_value_iface_t *iface = incident_value(v2, 5, &schema, &rec);
    set_field_string(&rec, "channel", "zalo");
    avro_value_get_by_name(&rec, "witnesses", &v, NULL);
    avro_value_set_int(&v, 3);
    set_field_long(&rec, "category", 12);
    set_field_string(&rec, "summary", "Lừa đảo qua mạng xã hội");
    len = frame_value(&rec, 5, buf, sizeof(buf));
    for (int round = 0; round < 2; round++) {
        keng_avro_decoder_t *d = round == 0 ? dec1 : dec2;
        assert_int_equal(keng_avro_decode(d, buf, len, &out, &id, errstr, sizeof(errstr)),
                         KENG_AVRO_OK);
        assert_int_equal(out.category, KENG_CAT_OTHER);
        assert_string_equal(out.event_id, "raw-1");
        assert_int_equal(out.summary_len, strlen("Lừa đảo qua mạng xã hội"));
        assert_memory_equal(out.summary, "Lừa đảo qua mạng xã hội", out.summary_len);
    }
    /* Truncation of the v2 datum is caught against the v2 writer schema. */
    expect_decode(dec1, buf, len - 1, KENG_AVRO_ERR_TRUNCATED, NULL);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);

    keng_avro_decoder_destroy(dec1);
    keng_schema_store_destroy(v1r);
    keng_avro_encoder_destroy(enc1);
    keng_schema_store_destroy(old);
    keng_avro_decoder_destroy(dec2);
    keng_avro_encoder_destroy(enc2);
    keng_schema_store_destroy(v2);
    remove_dir(dir);
}

static void test_store_errors(void **state)
{
    char dir[] = "/tmp/keng-avro-test-XXXXXX", errstr[512];
    (void)state;

    assert_non_null(mkdtemp(dir));
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "manifest.csv"));

    write_text(dir, "manifest.csv", "1,vn.antt.Incident,1,missing.avsc\n");
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "missing.avsc"));

    write_text(dir, "manifest.csv", "1;vn.antt.Incident;1;incident.v1.avsc\n");
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "line 1"));

    copy_schema(KENG_SOURCE_DIR "/schemas", dir, "incident.v1.avsc");
    write_text(dir, "manifest.csv", "1,vn.antt.Mediation,1,incident.v1.avsc\n");
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "vn.antt.Incident"));

    write_text(dir, "manifest.csv",
               "1,vn.antt.Incident,1,incident.v1.avsc\n7,vn.antt.Incident,2,bad.avsc\n");
    write_text(dir, "bad.avsc", "{\"type\": \"record\", \"name\": ");
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "bad.avsc"));

    write_text(dir, "manifest.csv",
               "1,vn.antt.Incident,1,incident.v1.avsc\n1,vn.antt.Incident,2,incident.v1.avsc\n");
    assert_null(keng_schema_store_load(dir, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "twice"));

    /* A store with incidents only can still decode them, and says why it cannot encode a
     * mediation. */
    write_text(dir, "manifest.csv", "1,vn.antt.Incident,1,incident.v1.avsc\n");
    keng_schema_store_t *store = keng_schema_store_load(dir, errstr, sizeof(errstr));
    assert_non_null(store);
    assert_null(keng_schema_store_json(store, 2));
    keng_avro_encoder_t *enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    assert_non_null(enc);
    keng_event_t ev = full_mediation();
    unsigned char buf[512];
    size_t len;
    assert_int_equal(keng_avro_encode(enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)),
                     -1);
    assert_non_null(strstr(errstr, "mediation"));
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eight_gib_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_at_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_framing_and_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alert_is_wrong_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_datums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_evolution, setup, teardown),
        cmocka_unit_test(test_store_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
