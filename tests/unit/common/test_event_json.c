/* JSON at keng's edges: every field of both event kinds checked, and the way back to JSON; they
 * never touch Avro or Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"
#include "timeutil.h"

#define NOW_MS 1740838500000LL /* 2025-03-01T14:15:00Z */

static const keng_event_limits_t limits = {NOW_MS, false, NULL};
static const keng_event_limits_t fill = {NOW_MS, true, NULL};

static const char *const incident_json =
    "{\"event_id\": \"6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01\", \"board_id\": \"D07-C012-B03\","
    " \"group_id\": \"D07-C012-B03-G05\", \"occurred_at\": \"2025-03-01T21:00:00+07:00\","
    " \"reported_at\": 1740838200000, \"category\": \"DOMESTIC_VIOLENCE\","
    " \"severity\": \"HIGH\", \"resolution\": \"TRANSFERRED_TO_POLICE\", \"people_involved\": 3,"
    " \"source\": \"HOTLINE\", \"location\": {\"lat\": 18.6733, \"lon\": 105.6923},"
    " \"summary\": \"Bạo lực gia đình ở xóm 3, đã chuyển hồ sơ cho công an xã\"}";

static const char *const mediation_json =
    "{\"event_id\": \"m-0001\", \"board_id\": \"D01-C001-B01\", \"group_id\": null,"
    " \"occurred_at\": 1740800000000, \"reported_at\": \"2025-03-01T10:00:00Z\","
    " \"dispute_type\": \"LAND\", \"outcome\": \"RECONCILED\", \"parties\": 2,"
    " \"related_incident_id\": \"6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01\"}";

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    if (obj == NULL)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, text);
    return obj;
}

/* Parses text after obj[key] = value (value NULL: the key is removed) and expects the given
 * field and a message starting with prefix. */
static void expect_error(keng_kind_t kind, const char *text, const char *key, json_t *value,
                         const keng_event_limits_t *lim, const char *field, const char *prefix)
{
    json_t *obj = load(text);
    keng_event_t ev;
    keng_field_error_t err;

    if (key != NULL) {
        if (value != NULL)
            json_object_set_new(obj, key, value);
        else
            json_object_del(obj, key);
    }
    int rc = keng_event_from_json(obj, kind, lim, &ev, &err);
    if (rc != -1)
        fail_msg("expected rc -1 for %s, got %d", key ? key : "(whole event)", rc);
    if (strcmp(err.field, field) != 0)
        fail_msg("expected field '%s', got '%s' (message: %s)", field, err.field, err.message);
    if (strncmp(err.message, prefix, strlen(prefix)) != 0)
        fail_msg("expected message starting '%s', got '%s'", prefix, err.message);
    json_decref(obj);
}

static void test_incident_every_field(void **state)
{
    json_t *obj = load(incident_json);
    keng_event_t ev;
    keng_field_error_t err;
    (void)state;

    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), 0);
    assert_int_equal(ev.kind, KENG_KIND_INCIDENT);
    assert_string_equal(ev.event_id, "6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01");
    assert_string_equal(ev.board_id, "D07-C012-B03");
    assert_true(ev.has_group);
    assert_string_equal(ev.group_id, "D07-C012-B03-G05");
    assert_int_equal(ev.occurred_at, 1740837600000LL);
    assert_int_equal(ev.reported_at, 1740838200000LL);
    assert_int_equal(ev.category, KENG_CAT_DOMESTIC_VIOLENCE);
    assert_int_equal(ev.severity, KENG_SEV_HIGH);
    assert_int_equal(ev.resolution, KENG_RES_TRANSFERRED_TO_POLICE);
    assert_int_equal(ev.people_involved, 3);
    assert_int_equal(ev.source, KENG_SRC_HOTLINE);
    assert_true(ev.has_location);
    assert_true(ev.lat == 18.6733 && ev.lon == 105.6923);
    const char *want = "Bạo lực gia đình ở xóm 3, đã chuyển hồ sơ cho công an xã";
    assert_int_equal(ev.summary_len, strlen(want));
    assert_memory_equal(ev.summary, want, strlen(want));
    json_decref(obj);
}

static void test_incident_nullable_and_defaults(void **state)
{
    json_t *obj = load("{\"event_id\": \"a\", \"board_id\": \"D01-C001-B01\", \"group_id\": null,"
                       " \"occurred_at\": 1740838000000, \"severity\": \"LOW\","
                       " \"resolution\": \"PENDING\", \"people_involved\": 0,"
                       " \"source\": \"PATROL\", \"location\": null}");
    keng_event_t ev;
    keng_field_error_t err;
    (void)state;

    /* reported_at missing: the gateway's time when asked to fill it, an error otherwise. */
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &fill, &ev, &err), 0);
    assert_int_equal(ev.reported_at, NOW_MS);
    assert_false(ev.has_group);
    assert_false(ev.has_location);
    assert_null(ev.summary);
    assert_int_equal(ev.category, KENG_CAT_OTHER); /* the schema's default */
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), -1);
    assert_string_equal(err.field, "reported_at");
    json_decref(obj);
}

static void test_mediation_every_field(void **state)
{
    json_t *obj = load(mediation_json);
    keng_event_t ev;
    keng_field_error_t err;
    (void)state;

    assert_int_equal(keng_event_from_json(obj, KENG_KIND_MEDIATION, &limits, &ev, &err), 0);
    assert_int_equal(ev.kind, KENG_KIND_MEDIATION);
    assert_false(ev.has_group);
    assert_int_equal(ev.occurred_at, 1740800000000LL);
    assert_int_equal(ev.reported_at, 1740823200000LL);
    assert_int_equal(ev.dispute_type, KENG_DISPUTE_LAND);
    assert_int_equal(ev.outcome, KENG_OUTCOME_RECONCILED);
    assert_int_equal(ev.parties, 2);
    assert_true(ev.has_related_incident);
    assert_string_equal(ev.related_incident_id, "6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01");
    assert_null(ev.summary);
    json_decref(obj);

    /* An incident field in a mediation is an unknown field. */
    expect_error(KENG_KIND_MEDIATION, mediation_json, "severity", json_string("LOW"), &limits,
                 "severity", "unknown field 'severity' for a mediation");
    expect_error(KENG_KIND_MEDIATION, mediation_json, "outcome", json_string("AGREED"), &limits,
                 "outcome",
                 "unknown outcome 'AGREED'; expected one of RECONCILED, NOT_RECONCILED, REFERRED");
    expect_error(KENG_KIND_MEDIATION, mediation_json, "parties", json_integer(100001), &limits,
                 "parties", "parties is 100001; it must be between 0 and 100000");
    expect_error(KENG_KIND_MEDIATION, mediation_json, "related_incident_id",
                 json_string("not a valid id!"), &limits, "related_incident_id",
                 "related_incident_id must be 1 to 64 characters");
    expect_error(KENG_KIND_MEDIATION, mediation_json, "outcome", NULL, &limits, "outcome",
                 "outcome is required");
}

static void test_unknown_fields_are_named(void **state)
{
    (void)state;
    expect_error(KENG_KIND_INCIDENT, incident_json, "categroy", json_string("THEFT"), &limits,
                 "categroy", "unknown field 'categroy' for an incident");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location",
                 json_pack("{s:f,s:f,s:f}", "lat", 18.0, "lon", 105.0, "alt", 3.0), &limits,
                 "location", "unknown field 'location.alt'");
    expect_error(KENG_KIND_INCIDENT, "[1, 2]", NULL, NULL, &limits, "",
                 "an incident must be a JSON object");
}

static void test_enums(void **state)
{
    (void)state;
    expect_error(KENG_KIND_INCIDENT, incident_json, "category", json_string("THEFTX"), &limits,
                 "category", "unknown category 'THEFTX'; expected one of THEFT, ASSAULT, ");
    expect_error(KENG_KIND_INCIDENT, incident_json, "category", json_string("theft"), &limits,
                 "category", "unknown category 'theft'");
    expect_error(KENG_KIND_INCIDENT, incident_json, "category", json_integer(0), &limits,
                 "category", "category must be a string");
    expect_error(KENG_KIND_INCIDENT, incident_json, "severity", NULL, &limits, "severity",
                 "severity is required");
    expect_error(KENG_KIND_INCIDENT, incident_json, "source", json_string("EMAIL"), &limits,
                 "source",
                 "unknown source 'EMAIL'; expected one of MOBILE_APP, SMS, HOTLINE, PATROL, "
                 "CAMERA, OTHER");
    expect_error(KENG_KIND_INCIDENT, incident_json, "resolution", json_null(), &limits,
                 "resolution", "resolution is required");

    /* The message stays within its buffer and ends cleanly for the longest symbol list. */
    json_t *obj = load(incident_json);
    keng_event_t ev;
    keng_field_error_t err;
    json_object_set_new(obj, "category",
                        json_string("A_VERY_LONG_CATEGORY_NAME_THAT_NOBODY_WOULD_EVER_SEND"));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), -1);
    size_t n = strlen(err.message);
    assert_true(n < sizeof(err.message));
    assert_true(strcmp(err.message + n - 3, "...") == 0 ||
                strcmp(err.message + n - 5, "OTHER") == 0);
    json_decref(obj);
}

static void test_ids_and_lengths(void **state)
{
    char id65[66], board32[33], summary[KENG_SUMMARY_MAX + 2];
    (void)state;

    memset(id65, 'a', 65);
    id65[65] = '\0';
    memset(board32, 'B', 32);
    board32[32] = '\0';
    expect_error(KENG_KIND_INCIDENT, incident_json, "event_id", json_string(id65), &limits,
                 "event_id", "event_id is 65 bytes long; at most 64 are allowed");
    id65[64] = '\0';
    json_t *obj = load(incident_json);
    keng_event_t ev;
    keng_field_error_t err;
    json_object_set_new(obj, "event_id", json_string(id65));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), 0);
    json_decref(obj);

    expect_error(KENG_KIND_INCIDENT, incident_json, "event_id", json_string("a b"), &limits,
                 "event_id", "event_id must be 1 to 64 characters");
    expect_error(KENG_KIND_INCIDENT, incident_json, "event_id", json_string(""), &limits,
                 "event_id", "event_id must not be empty");
    expect_error(KENG_KIND_INCIDENT, incident_json, "event_id", NULL, &limits, "event_id",
                 "event_id is required");
    expect_error(KENG_KIND_INCIDENT, incident_json, "event_id", json_integer(7), &limits,
                 "event_id", "event_id must be a string");
    expect_error(KENG_KIND_INCIDENT, incident_json, "board_id", json_string(board32), &limits,
                 "board_id", "board_id is 32 bytes long; at most 31 are allowed");
    expect_error(KENG_KIND_INCIDENT, incident_json, "group_id", json_string("a\tb"), &limits,
                 "group_id", "group_id must not contain control characters");
    expect_error(KENG_KIND_INCIDENT, incident_json, "group_id", json_false(), &limits, "group_id",
                 "group_id must be a string or null");

    /* Summary: KENG_SUMMARY_MAX bytes pass, one more is refused; invalid UTF-8 is refused. */
    memset(summary, 'x', KENG_SUMMARY_MAX + 1);
    summary[KENG_SUMMARY_MAX + 1] = '\0';
    expect_error(KENG_KIND_INCIDENT, incident_json, "summary", json_string(summary), &limits,
                 "summary", "summary is 4097 bytes long; at most 4096 are allowed");
    summary[KENG_SUMMARY_MAX] = '\0';
    obj = load(incident_json);
    json_object_set_new(obj, "summary", json_string(summary));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), 0);
    assert_int_equal(ev.summary_len, KENG_SUMMARY_MAX);
    json_decref(obj);
    expect_error(KENG_KIND_INCIDENT, incident_json, "summary",
                 json_stringn_nocheck("ok \xc3\x28 bad", 10), &limits, "summary",
                 "summary must be valid UTF-8");
    expect_error(KENG_KIND_INCIDENT, incident_json, "summary",
                 json_stringn_nocheck("nul \0 inside", 12), &limits, "summary",
                 "summary must be valid UTF-8 text without NUL");
    expect_error(KENG_KIND_INCIDENT, incident_json, "summary",
                 json_stringn_nocheck("\xed\xa0\x80", 3), &limits, "summary",
                 "summary must be valid UTF-8");

    assert_true(keng_utf8_valid("Nghệ An", strlen("Nghệ An")));
    assert_false(keng_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(keng_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(keng_utf8_valid("\xe1\xba", 2));         /* cut short */
}

static void test_times(void **state)
{
    (void)state;
    expect_error(KENG_KIND_INCIDENT, incident_json, "occurred_at",
                 json_string("1999-12-31T23:59:59.999Z"), &limits, "occurred_at",
                 "occurred_at is before 2000-01-01");
    expect_error(KENG_KIND_INCIDENT, incident_json, "occurred_at",
                 json_integer(NOW_MS + 5 * 60 * 1000 + 1), &limits, "occurred_at",
                 "occurred_at 2025-03-01T14:20:00.001Z is more than 5 minutes in the future");
    expect_error(KENG_KIND_INCIDENT, incident_json, "occurred_at", json_string("2025-03-01 21:15"),
                 &limits, "occurred_at", "occurred_at '2025-03-01 21:15' is not an RFC 3339 time");
    expect_error(KENG_KIND_INCIDENT, incident_json, "occurred_at", json_real(1740838500000.5),
                 &limits, "occurred_at", "occurred_at must be an RFC 3339 time");
    expect_error(KENG_KIND_INCIDENT, incident_json, "occurred_at", NULL, &limits, "occurred_at",
                 "occurred_at is required");
    expect_error(KENG_KIND_INCIDENT, incident_json, "reported_at", json_string("soon"), &limits,
                 "reported_at", "reported_at 'soon' is not an RFC 3339 time");
    expect_error(KENG_KIND_INCIDENT, incident_json, "reported_at",
                 json_string("2025-03-01T20:59:59.999+07:00"), &limits, "reported_at",
                 "reported_at 2025-03-01T13:59:59.999Z is before occurred_at "
                 "2025-03-01T14:00:00.000Z");
    expect_error(KENG_KIND_MEDIATION, mediation_json, "reported_at",
                 json_integer(NOW_MS + 5 * 60 * 1000 + 1), &limits, "reported_at",
                 "reported_at 2025-03-01T14:20:00.001Z is more than 5 minutes in the future");

    json_t *obj = load(incident_json);
    keng_event_t ev;
    keng_field_error_t err;
    json_object_set_new(obj, "occurred_at", json_integer(NOW_MS + 5 * 60 * 1000));
    json_object_set_new(obj, "reported_at", json_integer(NOW_MS + 5 * 60 * 1000));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), 0);
    /* Filled in, reported_at is never before occurred_at: a device clock a little ahead
     * makes it occurred_at, not a refusal for a field the gateway did not send. */
    json_object_del(obj, "reported_at");
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &fill, &ev, &err), 0);
    assert_int_equal(ev.reported_at, NOW_MS + 5 * 60 * 1000);
    json_object_set_new(obj, "occurred_at", json_integer(NOW_MS - 1000));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &fill, &ev, &err), 0);
    assert_int_equal(ev.reported_at, NOW_MS);
    json_object_set_new(obj, "reported_at", json_integer(NOW_MS));
    json_object_set_new(obj, "occurred_at", json_string("2000-01-01T07:00:00.000+07:00"));
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_INCIDENT, &limits, &ev, &err), 0);
    assert_int_equal(ev.occurred_at, KENG_EARLIEST_MS);
    json_decref(obj);
}

static void test_counts_and_location(void **state)
{
    (void)state;
    expect_error(KENG_KIND_INCIDENT, incident_json, "people_involved", json_integer(-1), &limits,
                 "people_involved", "people_involved is -1; it must be between 0 and");
    expect_error(KENG_KIND_INCIDENT, incident_json, "people_involved", json_real(2.5), &limits,
                 "people_involved", "people_involved must be an integer");
    expect_error(KENG_KIND_INCIDENT, incident_json, "people_involved", json_string("3"), &limits,
                 "people_involved", "people_involved must be an integer");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location",
                 json_pack("{s:f,s:f}", "lat", 90.5, "lon", 105.0), &limits, "location.lat",
                 "location.lat is 90.5; it must be between -90 and 90");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location",
                 json_pack("{s:f,s:i}", "lat", 18.0, "lon", -181), &limits, "location.lon",
                 "location.lon is -181; it must be between -180 and 180");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location", json_pack("{s:f}", "lat", 18.0),
                 &limits, "location.lon", "location.lon is required");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location", json_string("18.6,105.6"), &limits,
                 "location", "location must be an object");
    expect_error(KENG_KIND_INCIDENT, incident_json, "location",
                 json_pack("{s:s,s:f}", "lat", "18", "lon", 105.0), &limits, "location.lat",
                 "location.lat must be a number");
}

/* JSON -> event -> JSON -> event gives the same event, and every field is written. */
static void round_trip(keng_kind_t kind, const char *text, size_t nfields)
{
    json_t *obj = load(text), *back;
    keng_event_t a, b;
    keng_field_error_t err;

    assert_int_equal(keng_event_from_json(obj, kind, &limits, &a, &err), 0);
    back = keng_event_to_json(&a);
    assert_non_null(back);
    assert_int_equal(json_object_size(back), nfields);
    if (keng_event_from_json(back, kind, &limits, &b, &err) != 0)
        fail_msg("to_json output does not parse back: %s: %s", err.field, err.message);
    assert_string_equal(a.event_id, b.event_id);
    assert_string_equal(a.board_id, b.board_id);
    assert_int_equal(a.has_group, b.has_group);
    assert_string_equal(a.group_id, b.group_id);
    assert_int_equal(a.occurred_at, b.occurred_at);
    assert_int_equal(a.reported_at, b.reported_at);
    assert_int_equal(a.summary_len, b.summary_len);
    if (a.summary != NULL)
        assert_memory_equal(a.summary, b.summary, a.summary_len);
    else
        assert_null(b.summary);
    assert_int_equal(a.category, b.category);
    assert_int_equal(a.severity, b.severity);
    assert_int_equal(a.resolution, b.resolution);
    assert_int_equal(a.source, b.source);
    assert_int_equal(a.people_involved, b.people_involved);
    assert_int_equal(a.has_location, b.has_location);
    assert_true(a.lat == b.lat && a.lon == b.lon);
    assert_int_equal(a.dispute_type, b.dispute_type);
    assert_int_equal(a.outcome, b.outcome);
    assert_int_equal(a.parties, b.parties);
    assert_int_equal(a.has_related_incident, b.has_related_incident);
    assert_string_equal(a.related_incident_id, b.related_incident_id);
    json_decref(back);
    json_decref(obj);
}

static void test_to_json(void **state)
{
    (void)state;
    round_trip(KENG_KIND_INCIDENT, incident_json, 12);
    round_trip(KENG_KIND_MEDIATION, mediation_json, 10);

    json_t *obj = load(mediation_json), *out;
    keng_event_t ev;
    keng_field_error_t err;
    assert_int_equal(keng_event_from_json(obj, KENG_KIND_MEDIATION, &limits, &ev, &err), 0);
    out = keng_event_to_json(&ev);
    assert_true(json_is_null(json_object_get(out, "group_id")));
    assert_true(json_is_null(json_object_get(out, "summary")));
    assert_string_equal(json_string_value(json_object_get(out, "reported_at")),
                        "2025-03-01T10:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(out, "occurred_at")),
                        "2025-03-01T03:33:20.000Z");
    assert_string_equal(json_string_value(json_object_get(out, "dispute_type")), "LAND");
    json_decref(out);
    json_decref(obj);
}

static void test_symbols_and_kinds(void **state)
{
    keng_kind_t k;
    (void)state;
    assert_int_equal(keng_symbol_find(keng_category_names, KENG_CAT_COUNT, "OTHER"),
                     KENG_CAT_OTHER);
    assert_int_equal(keng_symbol_find(keng_category_names, KENG_CAT_COUNT, "other"), -1);
    assert_int_equal(keng_symbol_find(keng_outcome_names, KENG_OUTCOME_COUNT, "REFERRED"),
                     KENG_OUTCOME_REFERRED);
    assert_string_equal(keng_kind_name(KENG_KIND_MEDIATION), "mediation");
    assert_int_equal(keng_kind_parse("incident", &k), 0);
    assert_int_equal(k, KENG_KIND_INCIDENT);
    assert_int_equal(keng_kind_parse("alert", &k), -1);
    assert_true(keng_event_id_valid("6f1c2a9e-3b7d-4c55-9a10-2b8e4f7d9c01", 36));
    assert_false(keng_event_id_valid("", 0));
    assert_false(keng_event_id_valid("a/b", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_incident_every_field),
        cmocka_unit_test(test_incident_nullable_and_defaults),
        cmocka_unit_test(test_mediation_every_field),
        cmocka_unit_test(test_unknown_fields_are_named),
        cmocka_unit_test(test_enums),
        cmocka_unit_test(test_ids_and_lengths),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_counts_and_location),
        cmocka_unit_test(test_to_json),
        cmocka_unit_test(test_symbols_and_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
