/* The decode plan against the Avro-C reference path: thousands of random datums of every writer
 * schema keng knows (ids 1, 2, 3, 4) and of newer writers it does not (extra fields of every
 * Avro type, reordered fields, appended enum symbols, a reversed union, a promoted type), valid
 * and corrupted, each decoded by both paths, which must agree on the result code, the error
 * message and every field of the event; they never touch Kafka. */
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
#include "config.h"
#include "event.h"

#define ROUNDS  4000
#define MSG_CAP 8192

/* Incident v3: fields reordered, extra fields of every kind, appended enum symbols and a
 * GeoPoint with an extra field between lat and lon. */
static const char incident_v3[] =
    "{\"type\":\"record\",\"name\":\"Incident\",\"namespace\":\"vn.antt\",\"fields\":["
    "{\"name\":\"board_id\",\"type\":\"string\"},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[]},"
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"group_id\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"occurred_at\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"meta\",\"type\":{\"type\":\"map\",\"values\":\"long\"},\"default\":{}},"
    "{\"name\":\"reported_at\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
    "{\"name\":\"category\",\"type\":{\"type\":\"enum\",\"name\":\"IncidentCategory\",\"symbols\":["
    "\"THEFT\",\"ASSAULT\",\"PUBLIC_DISORDER\",\"DRUGS\",\"GAMBLING\",\"DOMESTIC_VIOLENCE\","
    "\"TRAFFIC\",\"HUMAN_TRAFFICKING\",\"ILLEGAL_MIGRATION\",\"FRAUD\",\"PROPERTY_DAMAGE\","
    "\"OTHER\",\"CYBERCRIME\",\"ARSON\"],\"default\":\"OTHER\"},\"default\":\"OTHER\"},"
    "{\"name\":\"severity\",\"type\":{\"type\":\"enum\",\"name\":\"Severity\",\"symbols\":["
    "\"LOW\",\"MEDIUM\",\"HIGH\",\"CRITICAL\"]}},"
    "{\"name\":\"resolution\",\"type\":{\"type\":\"enum\",\"name\":\"Resolution\",\"symbols\":["
    "\"PENDING\",\"HANDLED_LOCALLY\",\"TRANSFERRED_TO_POLICE\"]}},"
    "{\"name\":\"extra\",\"type\":{\"type\":\"record\",\"name\":\"Extra\",\"fields\":["
    "{\"name\":\"a\",\"type\":\"boolean\"},{\"name\":\"b\",\"type\":\"bytes\"},"
    "{\"name\":\"c\",\"type\":{\"type\":\"fixed\",\"name\":\"Tri\",\"size\":3}},"
    "{\"name\":\"d\",\"type\":[\"null\",\"int\",\"string\",\"float\"]}]},"
    "\"default\":{\"a\":false,\"b\":\"\",\"c\":\"abc\",\"d\":null}},"
    "{\"name\":\"people_involved\",\"type\":\"int\"},"
    "{\"name\":\"source\",\"type\":{\"type\":\"enum\",\"name\":\"Source\",\"symbols\":["
    "\"MOBILE_APP\",\"SMS\",\"HOTLINE\",\"PATROL\",\"CAMERA\",\"OTHER\",\"DRONE\"]}},"
    "{\"name\":\"location\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"GeoPoint\","
    "\"fields\":[{\"name\":\"lat\",\"type\":\"double\"},{\"name\":\"accuracy\",\"type\":"
    "\"float\"},{\"name\":\"lon\",\"type\":\"double\"}]}],\"default\":null},"
    "{\"name\":\"summary\",\"type\":[\"null\",\"string\"],\"default\":null},"
    "{\"name\":\"police_case_id\",\"type\":[\"null\",\"string\"],\"default\":null}]}";

/* Incident v4: reported_at written as an int, which Avro resolution promotes to long. */
static const char incident_v4[] =
    "{\"type\":\"record\",\"name\":\"Incident\",\"namespace\":\"vn.antt\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"board_id\",\"type\":\"string\"},"
    "{\"name\":\"occurred_at\",\"type\":\"long\"},{\"name\":\"reported_at\",\"type\":\"int\"},"
    "{\"name\":\"severity\",\"type\":{\"type\":\"enum\",\"name\":\"Severity\",\"symbols\":["
    "\"LOW\",\"MEDIUM\",\"HIGH\",\"CRITICAL\"]}},"
    "{\"name\":\"resolution\",\"type\":{\"type\":\"enum\",\"name\":\"Resolution\",\"symbols\":["
    "\"PENDING\",\"HANDLED_LOCALLY\",\"TRANSFERRED_TO_POLICE\"]}},"
    "{\"name\":\"people_involved\",\"type\":\"int\"},"
    "{\"name\":\"source\",\"type\":{\"type\":\"enum\",\"name\":\"Source\",\"symbols\":["
    "\"MOBILE_APP\",\"SMS\",\"HOTLINE\",\"PATROL\",\"CAMERA\",\"OTHER\"]}}]}";

/* Mediation v2: a reversed union, appended symbols (one enum with a default, one without)
 * and an array of records; no summary field. */
static const char mediation_v2[] =
    "{\"type\":\"record\",\"name\":\"Mediation\",\"namespace\":\"vn.antt\",\"fields\":["
    "{\"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"board_id\",\"type\":\"string\"},"
    "{\"name\":\"group_id\",\"type\":[\"string\",\"null\"]},"
    "{\"name\":\"occurred_at\",\"type\":\"long\"},{\"name\":\"reported_at\",\"type\":\"long\"},"
    "{\"name\":\"witnesses\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
    "\"name\":\"Witness\",\"fields\":[{\"name\":\"name\",\"type\":\"string\"},"
    "{\"name\":\"age\",\"type\":\"int\"}]}}},"
    "{\"name\":\"dispute_type\",\"type\":{\"type\":\"enum\",\"name\":\"DisputeType\",\"symbols\":["
    "\"LAND\",\"FAMILY\",\"NEIGHBOR\",\"DEBT\",\"INHERITANCE\",\"OTHER\",\"WATER\"],"
    "\"default\":\"OTHER\"},\"default\":\"OTHER\"},"
    "{\"name\":\"outcome\",\"type\":{\"type\":\"enum\",\"name\":\"MediationOutcome\",\"symbols\":["
    "\"RECONCILED\",\"NOT_RECONCILED\",\"REFERRED\",\"WITHDRAWN\"]}},"
    "{\"name\":\"parties\",\"type\":\"int\"},"
    "{\"name\":\"related_incident_id\",\"type\":[\"null\",\"string\"],\"default\":null}]}";

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
    return (unsigned)(next_rand() % n);
}

typedef struct out {
    uint8_t buf[MSG_CAP];
    size_t len;
} out_t;

static void put_byte(out_t *o, uint8_t b)
{
    if (o->len < MSG_CAP)
        o->buf[o->len++] = b;
}

static void put_long(out_t *o, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);

    do {
        uint8_t b = z & 0x7f;
        z >>= 7;
        put_byte(o, (uint8_t)(b | (z ? 0x80 : 0)));
    } while (z);
}

static void put_bytes(out_t *o, const void *p, size_t n)
{
    put_long(o, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        put_byte(o, ((const uint8_t *)p)[i]);
}

static void put_raw(out_t *o, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_byte(o, ((const uint8_t *)p)[i]);
}

/* A string for the field called name: mostly one keng accepts, now and then one it refuses. */
static void gen_string(out_t *o, const char *name)
{
    static const char *const bad[] = {"", "bad id with spaces", "nul\0byte", "\xc3\x28",
                                      "0123456789012345678901234567890123456789012345678901234567"
                                      "89012345678901234567890"};
    static const char *const texts[] = {"Mất trộm xe máy trước cửa nhà văn hóa thôn.",
                                        "Hai hộ tranh chấp ranh giới đất.", "x"};
    char s[128];
    size_t n;

    if (pick(25) == 0) {
        unsigned i = pick(5);
        put_bytes(o, bad[i], i == 2 ? 8 : strlen(bad[i]));
        return;
    }
    if (strcmp(name, "event_id") == 0 || strcmp(name, "related_incident_id") == 0)
        n = (size_t)snprintf(s, sizeof(s), "%08x-%04x-4abc-8def-%012llx", (unsigned)next_rand(),
                             pick(65536), (unsigned long long)(next_rand() & 0xffffffffffffULL));
    else if (strcmp(name, "board_id") == 0)
        n = (size_t)snprintf(s, sizeof(s), "D%02u-C%03u-B%02u", 1 + pick(21), 1 + pick(40),
                             1 + pick(20));
    else if (strcmp(name, "group_id") == 0)
        n = (size_t)snprintf(s, sizeof(s), "D%02u-C%03u-B%02u-G%02u", 1 + pick(21), 1 + pick(40),
                             1 + pick(20), 1 + pick(9));
    else if (strcmp(name, "police_case_id") == 0)
        n = (size_t)snprintf(s, sizeof(s), "CAX-%05u/%s", pick(100000),
                             pick(2) ? "Quỳnh Lưu" : "NA");
    else
        n = (size_t)snprintf(s, sizeof(s), "%s", texts[pick(3)]);
    put_bytes(o, s, n);
}

static void gen(out_t *o, avro_schema_t s, const char *name);

static void gen_double(out_t *o, const char *name)
{
    double d = strcmp(name, "lat") == 0   ? -90.0 + 180.0 * (double)pick(100001) / 100000.0
               : strcmp(name, "lon") == 0 ? -180.0 + 360.0 * (double)pick(100001) / 100000.0
                                          : (double)pick(1000) / 7.0;
    if (pick(30) == 0)
        d = pick(2) ? 200.0 : -95.5;
    put_raw(o, &d, 8); /* little-endian hosts only, as the tests run */
}

static void gen_block(out_t *o, avro_schema_t s, bool map)
{
    avro_schema_t items = map ? avro_schema_map_values(s) : avro_schema_array_items(s);
    unsigned blocks = pick(3);

    for (unsigned b = 0; b < blocks; b++) {
        unsigned n = 1 + pick(3);
        out_t body = {.len = 0};
        for (unsigned i = 0; i < n; i++) {
            if (map)
                put_bytes(&body, "key", 3);
            gen(&body, items, "item");
        }
        if (pick(2)) { /* a negative count announces the block's size in bytes */
            put_long(o, -(int64_t)n);
            put_long(o, (int64_t)body.len);
        } else {
            put_long(o, n);
        }
        put_raw(o, body.buf, body.len);
    }
    put_long(o, 0);
}

/* A random datum of schema s, for the field called name. */
static void gen(out_t *o, avro_schema_t s, const char *name)
{
    int64_t v;
    float f;
    uint8_t fixed[16];

    while (is_avro_link(s))
        s = avro_schema_link_target(s);
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        break;
    case AVRO_BOOLEAN:
        put_byte(o, (uint8_t)pick(2));
        break;
    case AVRO_INT32:
        v = pick(20) == 0 ? -(int64_t)pick(5) - 1 : pick(50) == 0 ? 100000 + pick(3) : pick(12);
        put_long(o, v);
        break;
    case AVRO_INT64:
        v = 1735689600000LL + (int64_t)(next_rand() % 31536000000ULL);
        if (pick(50) == 0)
            v = -(int64_t)pick(1000);
        put_long(o, v);
        break;
    case AVRO_FLOAT:
        f = (float)pick(100);
        put_raw(o, &f, 4);
        break;
    case AVRO_DOUBLE:
        gen_double(o, name);
        break;
    case AVRO_STRING:
        gen_string(o, name);
        break;
    case AVRO_BYTES:
        for (size_t i = 0; i < sizeof(fixed); i++)
            fixed[i] = (uint8_t)next_rand();
        put_bytes(o, fixed, pick(sizeof(fixed)));
        break;
    case AVRO_FIXED:
        for (size_t i = 0; i < sizeof(fixed); i++)
            fixed[i] = (uint8_t)next_rand();
        put_raw(o, fixed, (size_t)avro_schema_fixed_size(s));
        break;
    case AVRO_ENUM:
        put_long(o, pick((unsigned)avro_schema_enum_number_of_symbols(s)));
        break;
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(s); i++)
            gen(o, avro_schema_record_field_get_by_index(s, (int)i),
                avro_schema_record_field_name(s, (int)i));
        break;
    case AVRO_UNION: {
        unsigned b = pick((unsigned)avro_schema_union_size(s));
        put_long(o, b);
        gen(o, avro_schema_union_branch(s, (int)b), name);
        break;
    }
    case AVRO_ARRAY:
    case AVRO_MAP:
        gen_block(o, s, is_avro_map(s));
        break;
    default:
        fail_msg("no generator for Avro type %d", (int)avro_typeof(s));
    }
}

static void expect_same_event(const keng_event_t *a, const keng_event_t *b, int32_t id)
{
#define SAME_STR(f) assert_string_equal(a->f, b->f)
#define SAME_INT(f)                                                                                \
    do {                                                                                           \
        if ((long long)a->f != (long long)b->f)                                                    \
            fail_msg("schema id %d: %s: Avro-C %lld, plan %lld", (int)id, #f, (long long)a->f,     \
                     (long long)b->f);                                                             \
    } while (0)
    SAME_INT(kind);
    SAME_STR(event_id);
    SAME_STR(board_id);
    SAME_INT(has_group);
    SAME_STR(group_id);
    SAME_INT(occurred_at);
    SAME_INT(reported_at);
    if ((a->summary == NULL) != (b->summary == NULL))
        fail_msg("schema id %d: summary: Avro-C %s, plan %s", (int)id,
                 a->summary ? "present" : "absent", b->summary ? "present" : "absent");
    SAME_INT(summary_len);
    if (a->summary != NULL)
        assert_memory_equal(a->summary, b->summary, a->summary_len);
    SAME_INT(category);
    SAME_INT(severity);
    SAME_INT(resolution);
    SAME_INT(source);
    SAME_INT(people_involved);
    SAME_INT(has_location);
    if (a->lat != b->lat || a->lon != b->lon)
        fail_msg("schema id %d: location: Avro-C %g,%g, plan %g,%g", (int)id, a->lat, a->lon,
                 b->lat, b->lon);
    SAME_INT(has_police_case_id);
    SAME_STR(police_case_id);
    SAME_INT(dispute_type);
    SAME_INT(outcome);
    SAME_INT(parties);
    SAME_INT(has_related_incident);
    SAME_STR(related_incident_id);
#undef SAME_STR
#undef SAME_INT
}

typedef struct stats {
    unsigned ok, refused;
} stats_t;

/* Decodes msg with both paths and checks that they agree. */
static void compare(keng_avro_decoder_t *ref, keng_avro_decoder_t *plan, const uint8_t *msg,
                    size_t len, stats_t *st)
{
    keng_event_t a, b;
    char ea[512] = "", eb[512] = "";
    int32_t ida = -1, idb = -1;
    int ra = keng_avro_decode(ref, msg, len, &a, &ida, ea, sizeof(ea));
    int rb = keng_avro_decode(plan, msg, len, &b, &idb, eb, sizeof(eb));

    if (ra != rb)
        fail_msg("schema id %d, %zu bytes: Avro-C returned %d (%s), the plan %d (%s)", (int)ida,
                 len, ra, ea, rb, eb);
    assert_int_equal(ida, idb);
    if (ra != KENG_AVRO_OK) {
        assert_string_equal(ea, eb);
        st->refused++;
        return;
    }
    expect_same_event(&a, &b, ida);
    st->ok++;
}

static void frame(out_t *o, int32_t id)
{
    o->len = 0;
    put_byte(o, 0);
    put_byte(o, (uint8_t)((uint32_t)id >> 24));
    put_byte(o, (uint8_t)((uint32_t)id >> 16));
    put_byte(o, (uint8_t)((uint32_t)id >> 8));
    put_byte(o, (uint8_t)id);
}

/* ROUNDS random datums of each id, each also truncated and with one byte changed. */
static void run_store(keng_schema_store_t *store, const int32_t *ids, size_t nids)
{
    char errstr[256];
    keng_avro_decoder_t *ref = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    keng_avro_decoder_t *plan = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    static out_t o;

    if (ref == NULL || plan == NULL)
        fail_msg("decoder: %s", errstr);
    keng_avro_decoder_set_path(ref, KENG_AVRO_PATH_AVRO_C);
    keng_avro_decoder_set_path(plan, KENG_AVRO_PATH_PLAN);
    for (size_t k = 0; k < nids; k++) {
        avro_schema_t schema = NULL;
        const char *json = keng_schema_store_json(store, ids[k]);
        stats_t st = {0, 0};

        assert_non_null(json);
        assert_int_equal(avro_schema_from_json_length(json, strlen(json), &schema), 0);
        for (int i = 0; i < ROUNDS; i++) {
            frame(&o, ids[k]);
            gen(&o, schema, "");
            assert_true(o.len < MSG_CAP);
            compare(ref, plan, o.buf, o.len, &st);
            compare(ref, plan, o.buf, KENG_FRAME_HEADER_LEN + pick((unsigned)o.len - 4), &st);
            size_t at = KENG_FRAME_HEADER_LEN + pick((unsigned)o.len - KENG_FRAME_HEADER_LEN);
            if (at < o.len) {
                o.buf[at] ^= (uint8_t)(1u << pick(8));
                compare(ref, plan, o.buf, o.len, &st);
            }
        }
        /* Every id must have exercised both outcomes, or the test proves little. */
        if (ids[k] != KENG_SCHEMA_ID_ALERT && (st.ok < ROUNDS / 4 || st.refused < ROUNDS / 4))
            fail_msg("schema id %d: %u decoded and %u refused of %d; the generator is off",
                     (int)ids[k], st.ok, st.refused, 3 * ROUNDS);
        print_message("schema id %d: %u decoded, %u refused by both paths\n", (int)ids[k], st.ok,
                      st.refused);
        avro_schema_decref(schema);
    }
    keng_avro_decoder_destroy(plan);
    keng_avro_decoder_destroy(ref);
}

static void test_builtin_writers_agree(void **state)
{
    static const int32_t ids[] = {1, 2, 3, 4};
    char errstr[256];
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));

    (void)state;
    assert_non_null(store);
    run_store(store, ids, 4);
    keng_schema_store_destroy(store);
}

/* A consumer pinned to read Incident v1 skips police_case_id of v2 data in both paths. */
static void test_reader_pinned_to_v1_agrees(void **state)
{
    static const int32_t ids[] = {1, 4};
    char errstr[256];
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));

    (void)state;
    assert_non_null(store);
    assert_int_equal(keng_schema_store_pin(store, KENG_SCHEMA_READER, "vn.antt.Incident", 1, errstr,
                                           sizeof(errstr)),
                     0);
    run_store(store, ids, 2);
    keng_schema_store_destroy(store);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Newer writers than keng knows, in a schema directory of their own; keng reads with
 * Incident v2 and Mediation v1. */
static void test_newer_writers_agree(void **state)
{
    static const int32_t ids[] = {1, 2, 4, 10, 11, 12};
    char dir[] = "/tmp/keng-test-avro-plan.XXXXXX", errstr[256], path[600];
    keng_schema_store_t *builtin = keng_schema_store_builtin(errstr, sizeof(errstr)), *store;

    (void)state;
    assert_non_null(builtin);
    assert_non_null(mkdtemp(dir));
    write_file(dir, "manifest.csv",
               "1,vn.antt.Incident,1,i1.avsc\n2,vn.antt.Mediation,1,m1.avsc\n"
               "3,vn.antt.Alert,1,a1.avsc\n4,vn.antt.Incident,2,i2.avsc\n"
               "10,vn.antt.Incident,3,i3.avsc\n11,vn.antt.Mediation,2,m2.avsc\n"
               "12,vn.antt.Incident,4,i4.avsc\n");
    write_file(dir, "i1.avsc", keng_schema_store_json(builtin, 1));
    write_file(dir, "m1.avsc", keng_schema_store_json(builtin, 2));
    write_file(dir, "a1.avsc", keng_schema_store_json(builtin, 3));
    write_file(dir, "i2.avsc", keng_schema_store_json(builtin, 4));
    write_file(dir, "i3.avsc", incident_v3);
    write_file(dir, "m2.avsc", mediation_v2);
    write_file(dir, "i4.avsc", incident_v4);
    store = keng_schema_store_load(dir, errstr, sizeof(errstr));
    if (store == NULL)
        fail_msg("schema directory: %s", errstr);
    assert_int_equal(
        keng_schema_store_pin(store, KENG_SCHEMA_READER, "vn.antt.Incident", 2, errstr, 256), 0);
    assert_int_equal(
        keng_schema_store_pin(store, KENG_SCHEMA_READER, "vn.antt.Mediation", 1, errstr, 256), 0);
    run_store(store, ids, 6);
    keng_schema_store_destroy(store);
    keng_schema_store_destroy(builtin);
    for (const char *const *f =
             (const char *const[]){"manifest.csv", "i1.avsc", "m1.avsc", "a1.avsc", "i2.avsc",
                                   "i3.avsc", "m2.avsc", "i4.avsc", NULL};
         *f != NULL; f++) {
        snprintf(path, sizeof(path), "%s/%s", dir, *f);
        unlink(path);
    }
    rmdir(dir);
}

/* An appended symbol unknown to keng takes the reader enum's default where it has one, and
 * is refused where it has none, in both paths. */
static void test_appended_symbols(void **state)
{
    (void)state;
    /* Covered with random datums above; this pins the two outcomes down by hand. */
    char dir[] = "/tmp/keng-test-avro-plan.XXXXXX", errstr[256], path[600];
    keng_schema_store_t *builtin = keng_schema_store_builtin(errstr, sizeof(errstr)), *store;
    keng_avro_decoder_t *dec;
    keng_event_t ev;
    out_t o;

    assert_non_null(builtin);
    assert_non_null(mkdtemp(dir));
    write_file(dir, "manifest.csv",
               "2,vn.antt.Mediation,1,m1.avsc\n11,vn.antt.Mediation,2,m2.avsc\n");
    write_file(dir, "m1.avsc", keng_schema_store_json(builtin, 2));
    write_file(dir, "m2.avsc", mediation_v2);
    store = keng_schema_store_load(dir, errstr, sizeof(errstr));
    assert_non_null(store);
    assert_int_equal(
        keng_schema_store_pin(store, KENG_SCHEMA_READER, "vn.antt.Mediation", 1, errstr, 256), 0);
    dec = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    assert_non_null(dec);
    for (int path_i = 0; path_i < 2; path_i++) {
        keng_avro_decoder_set_path(dec, path_i ? KENG_AVRO_PATH_AVRO_C : KENG_AVRO_PATH_PLAN);
        for (int outcome = 0; outcome < 2; outcome++) {
            frame(&o, 11);
            put_bytes(&o, "e-1", 3);
            put_bytes(&o, "D07-C012-B03", 12);
            put_long(&o, 1); /* group_id: the null branch, second in this writer */
            put_long(&o, 1735689600000LL);
            put_long(&o, 1735689660000LL);
            put_long(&o, 0);               /* no witnesses */
            put_long(&o, 6);               /* dispute_type WATER: unknown, default OTHER */
            put_long(&o, outcome ? 3 : 2); /* WITHDRAWN (no default) or REFERRED */
            put_long(&o, 2);
            put_long(&o, 0);
            int rc = keng_avro_decode(dec, o.buf, o.len, &ev, NULL, errstr, sizeof(errstr));
            if (outcome) {
                assert_int_equal(rc, KENG_AVRO_ERR_FIELD);
                assert_non_null(strstr(errstr, "WITHDRAWN"));
            } else {
                assert_int_equal(rc, KENG_AVRO_OK);
                assert_int_equal(ev.dispute_type, KENG_DISPUTE_OTHER);
                assert_int_equal(ev.outcome, KENG_OUTCOME_REFERRED);
                assert_false(ev.has_group);
                assert_null(ev.summary);
            }
        }
    }
    keng_avro_decoder_destroy(dec);
    keng_schema_store_destroy(store);
    keng_schema_store_destroy(builtin);
    for (const char *const *f = (const char *const[]){"manifest.csv", "m1.avsc", "m2.avsc", NULL};
         *f != NULL; f++) {
        snprintf(path, sizeof(path), "%s/%s", dir, *f);
        unlink(path);
    }
    rmdir(dir);
}

/* The plan copies the summary into the decoder, so it outlives the message, as the header
 * promises (valid until the decoder's next call). */
static void test_summary_outlives_message(void **state)
{
    char errstr[256];
    keng_schema_store_t *store = keng_schema_store_builtin(errstr, sizeof(errstr));
    keng_avro_encoder_t *enc = keng_avro_encoder_new(store, errstr, sizeof(errstr));
    keng_avro_decoder_t *dec = keng_avro_decoder_new(store, errstr, sizeof(errstr));
    keng_event_t ev = {.kind = KENG_KIND_MEDIATION}, out;
    static const char text[] = "Hòa giải thành tại nhà văn hóa thôn.";
    uint8_t *msg = malloc(1024);
    size_t len;

    (void)state;
    assert_non_null(dec);
    strcpy(ev.event_id, "e-2");
    strcpy(ev.board_id, "D07-C012-B03");
    ev.occurred_at = ev.reported_at = 1735689600000LL;
    ev.parties = 2;
    ev.summary = text;
    ev.summary_len = strlen(text);
    assert_int_equal(keng_avro_encode(enc, &ev, msg, 1024, &len, errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_avro_decode(dec, msg, len, &out, NULL, errstr, sizeof(errstr)), 0);
    memset(msg, 0xee, len);
    free(msg);
    assert_int_equal(out.summary_len, strlen(text));
    assert_memory_equal(out.summary, text, out.summary_len);
    keng_avro_decoder_destroy(dec);
    keng_avro_encoder_destroy(enc);
    keng_schema_store_destroy(store);
}

/* codec.decoder chooses the path, and a typo is refused rather than ignored. */
static void test_config_switch(void **state)
{
    char errstr[256];
    keng_config_t *cfg = keng_config_new();
    keng_schema_store_t *store;

    (void)state;
    keng_config_set(cfg, "codec.decoder", "avro-c");
    store = keng_schema_store_from_config(cfg, errstr, sizeof(errstr));
    assert_non_null(store);
    keng_schema_store_destroy(store);
    keng_config_set(cfg, "codec.decoder", "avroc");
    store = keng_schema_store_from_config(cfg, errstr, sizeof(errstr));
    assert_null(store);
    assert_non_null(strstr(errstr, "codec.decoder=avroc"));
    keng_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_writers_agree),
        cmocka_unit_test(test_reader_pinned_to_v1_agrees),
        cmocka_unit_test(test_newer_writers_agree),
        cmocka_unit_test(test_appended_symbols),
        cmocka_unit_test(test_summary_outlives_message),
        cmocka_unit_test(test_config_switch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
