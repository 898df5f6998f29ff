/* Hostile lengths and block counts against the Avro decoder, watched from inside Avro-C: every
 * allocation Avro-C makes goes through a counting allocator, so these tests fail if a length
 * prefix reaches Avro-C's malloc, not only if the return code is wrong; they never touch Kafka.
 * (test_avro_codec.c covers the return codes of the first-field 8 GiB string, the first Alert
 * block count, negative lengths and runaway varints; this file adds the allocation bound, the
 * later fields and the other ways an array can lie about its size.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <cmocka.h>

#include "avro_codec.h"
#include "event.h"

#define GIB8 (INT64_C(8) << 30)

/* More than any keng schema or datum needs; a request above it is a length prefix that got
 * through. The allocator refuses it, so a failing test does not take the machine's memory. */
#define ALLOC_LIMIT (1u << 20)

static size_t largest_request;
static size_t refused_requests;

static void *counting_allocator(void *user_data, void *ptr, size_t osize, size_t nsize)
{
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > largest_request)
        largest_request = nsize;
    if (nsize > ALLOC_LIMIT) {
        refused_requests++;
        return NULL;
    }
    return realloc(ptr, nsize);
}

typedef struct fixture {
    keng_schema_store_t *store;
    keng_avro_decoder_t *dec;
    keng_avro_encoder_t *enc;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];

    f->store = keng_schema_store_builtin(errstr, sizeof(errstr));
    if (f->store == NULL)
        fail_msg("built-in store: %s", errstr);
    f->dec = keng_avro_decoder_new(f->store, errstr, sizeof(errstr));
    f->enc = keng_avro_encoder_new(f->store, errstr, sizeof(errstr));
    if (f->dec == NULL || f->enc == NULL)
        fail_msg("codec: %s", errstr);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    keng_avro_encoder_destroy(f->enc);
    keng_avro_decoder_destroy(f->dec);
    keng_schema_store_destroy(f->store);
    free(f);
    return 0;
}

/* ---- building messages by hand ---- */

typedef struct msg {
    unsigned char b[512];
    size_t n;
} msg_t;

static void put_raw(msg_t *m, const void *p, size_t len)
{
    assert_true(m->n + len <= sizeof(m->b));
    memcpy(m->b + m->n, p, len);
    m->n += len;
}

static void put_byte(msg_t *m, unsigned char c)
{
    put_raw(m, &c, 1);
}

/* Avro's zigzag varint. */
static void put_long(msg_t *m, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        put_byte(m, (unsigned char)(z | 0x80));
        z >>= 7;
    }
    put_byte(m, (unsigned char)z);
}

static void put_str(msg_t *m, const char *s)
{
    put_long(m, (int64_t)strlen(s));
    put_raw(m, s, strlen(s));
}

static void put_header(msg_t *m, int32_t id)
{
    m->n = 0;
    put_byte(m, 0x00);
    put_byte(m, (unsigned char)(id >> 24));
    put_byte(m, (unsigned char)(id >> 16));
    put_byte(m, (unsigned char)(id >> 8));
    put_byte(m, (unsigned char)id);
}

/* An Alert up to its last field, sample_event_ids, in the field order of alert.v1.avsc. */
static void put_alert_prefix(msg_t *m)
{
    put_header(m, KENG_SCHEMA_ID_ALERT);
    put_str(m, "board-spike:D07-C012-B03:1740837600000"); /* alert_id */
    put_str(m, "board-spike:D07-C012-B03");               /* fingerprint */
    put_str(m, "board-spike");                            /* rule */
    put_long(m, 0);                                       /* status FIRING */
    put_long(m, 0);                                       /* level BOARD */
    put_str(m, "D07-C012-B03");                           /* scope_id */
    put_str(m, "24h");                                    /* window */
    put_long(m, 12);                                      /* count */
    put_long(m, 10);                                      /* threshold */
    put_long(m, 1740837600000LL);                         /* starts_at */
    put_long(m, 0);                                       /* ends_at: null branch */
    put_str(m, "Số vụ việc tăng đột biến");               /* summary */
}

/* Decodes m with the allocation watch on and checks the result, the message and that no
 * request of Avro-C's came near the claimed size. */
static void expect_decode(fixture_t *f, const char *what, const msg_t *m, int want,
                          const char *want_in_message)
{
    keng_event_t ev;
    char errstr[512] = "";
    /* A copy of exactly m->n bytes, so that a read past the end is caught under ASan. */
    unsigned char *copy = malloc(m->n);
    int got;

    assert_non_null(copy);
    memcpy(copy, m->b, m->n);
    largest_request = 0;
    refused_requests = 0;
    got = keng_avro_decode(f->dec, copy, m->n, &ev, NULL, errstr, sizeof(errstr));
    free(copy);
    if (got != want)
        fail_msg("%s (%zu bytes): expected %d (%s), got %d (%s): %s", what, m->n, want,
                 keng_avro_err_reason(want), got, keng_avro_err_reason(got), errstr);
    if (want_in_message != NULL && strstr(errstr, want_in_message) == NULL)
        fail_msg("%s: expected the message to mention '%s', got '%s'", what, want_in_message,
                 errstr);
    if (refused_requests > 0 || largest_request > ALLOC_LIMIT)
        fail_msg("%s: Avro-C asked for %zu bytes (expected at most %u): the claimed length "
                 "reached it",
                 what, largest_request, ALLOC_LIMIT);
}

/* ---- the tests ---- */

/* The case of the issue, byte for byte: the Confluent header 00 00000001, then the first
 * string of the Incident (event_id) claiming 8 GiB, and nothing more. The 8 GiB prefix is the
 * zigzag varint 80 80 80 80 40. */
static void test_eight_gib_first_string_never_reaches_avro_c(void **state)
{
    fixture_t *f = *state;
    const unsigned char exact[] = {0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x80, 0x80, 0x80, 0x40};
    msg_t m = {.n = 0};

    /* The watch itself: Avro-C's allocations do go through it. */
    largest_request = 0;
    avro_schema_t probe = avro_schema_record("Probe", "vn.antt");
    assert_non_null(probe);
    avro_schema_decref(probe);
    if (largest_request == 0)
        fail_msg("the counting allocator saw none of Avro-C's allocations");

    put_raw(&m, exact, sizeof(exact));
    expect_decode(f, "8 GiB event_id, no bytes of it", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");
    put_raw(&m, "abc", 3);
    expect_decode(f, "8 GiB event_id, three bytes of it", &m, KENG_AVRO_ERR_TRUNCATED,
                  "8589934592");
}

/* The same claim in every other string field, after a well-formed record prefix: the guard
 * must keep its count of the remaining bytes across fields and unions. */
static void test_eight_gib_in_later_fields(void **state)
{
    fixture_t *f = *state;
    msg_t m;

    /* Incident: group_id is the value branch (1) of ["null", "string"]. */
    put_header(&m, KENG_SCHEMA_ID_INCIDENT);
    put_str(&m, "e-1");
    put_str(&m, "D07-C012-B03");
    put_long(&m, 1);
    put_long(&m, GIB8);
    put_raw(&m, "G", 1);
    expect_decode(f, "8 GiB group_id", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");

    /* Incident: summary, the last field, after a whole valid prefix. */
    put_header(&m, KENG_SCHEMA_ID_INCIDENT);
    put_str(&m, "e-1");
    put_str(&m, "D07-C012-B03");
    put_long(&m, 0);               /* group_id null */
    put_long(&m, 1740837600000LL); /* occurred_at */
    put_long(&m, 1740838200000LL); /* reported_at */
    put_long(&m, 0);               /* category THEFT */
    put_long(&m, 2);               /* severity HIGH */
    put_long(&m, 1);               /* resolution HANDLED_LOCALLY */
    put_long(&m, 3);               /* people_involved */
    put_long(&m, 3);               /* source PATROL */
    put_long(&m, 0);               /* location null */
    put_long(&m, 1);               /* summary: the string branch */
    put_long(&m, GIB8);
    expect_decode(f, "8 GiB incident summary", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");

    /* Mediation: related_incident_id, then summary. */
    put_header(&m, KENG_SCHEMA_ID_MEDIATION);
    put_str(&m, "m-1");
    put_str(&m, "D01-C001-B01");
    put_long(&m, 0);               /* group_id null */
    put_long(&m, 1740800000000LL); /* occurred_at */
    put_long(&m, 1740800000001LL); /* reported_at */
    put_long(&m, 0);               /* dispute_type LAND */
    put_long(&m, 0);               /* outcome RECONCILED */
    put_long(&m, 2);               /* parties */
    size_t related_at = m.n;
    put_long(&m, 1);
    put_long(&m, GIB8);
    expect_decode(f, "8 GiB related_incident_id", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");
    m.n = related_at;
    put_long(&m, 0); /* related_incident_id null */
    put_long(&m, 1);
    put_long(&m, GIB8);
    put_raw(&m, "Hòa giải", strlen("Hòa giải"));
    expect_decode(f, "8 GiB mediation summary", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");

    /* Alert: its first string. An Alert is refused as the wrong record, but only after its
     * bytes were checked. */
    put_header(&m, KENG_SCHEMA_ID_ALERT);
    put_long(&m, GIB8);
    expect_decode(f, "8 GiB alert_id", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");
}

/* Alert.sample_event_ids is the only array of keng's schemas. An array is a series of blocks,
 * each a count (negative: its absolute value, then the block's size in bytes) and that many
 * items, up to a count of 0. Each way a block can lie about its size is refused before Avro-C
 * allocates items for it. */
static void test_alert_block_counts(void **state)
{
    fixture_t *f = *state;
    msg_t m;

    /* A well-formed Alert of three blocks: valid bytes, but not a record keng counts. */
    put_alert_prefix(&m);
    put_long(&m, 1);
    put_str(&m, "e-1");
    put_long(&m, -2);
    put_long(&m, 8); /* "e-2" and "e-3", 4 bytes each */
    put_str(&m, "e-2");
    put_str(&m, "e-3");
    put_long(&m, 1);
    put_str(&m, "e-4");
    put_long(&m, 0);
    expect_decode(f, "three-block Alert", &m, KENG_AVRO_ERR_WRONG_RECORD, "vn.antt.Alert");

    /* A negative count whose absolute value is 2^40 items. */
    put_alert_prefix(&m);
    put_long(&m, -(INT64_C(1) << 40));
    put_long(&m, 4);
    put_str(&m, "e-1");
    put_long(&m, 0);
    expect_decode(f, "negative block count of 2^40", &m, KENG_AVRO_ERR_TRUNCATED,
                  "array block count");

    /* A negative count of 1 whose block size claims 8 GiB. */
    put_alert_prefix(&m);
    put_long(&m, -1);
    put_long(&m, GIB8);
    put_str(&m, "e-1");
    put_long(&m, 0);
    expect_decode(f, "8 GiB block size", &m, KENG_AVRO_ERR_TRUNCATED, "block size");

    /* A negative block size. */
    put_alert_prefix(&m);
    put_long(&m, -1);
    put_long(&m, -4);
    put_str(&m, "e-1");
    put_long(&m, 0);
    expect_decode(f, "negative block size", &m, KENG_AVRO_ERR_INVALID, "block size");

    /* INT64_MIN, whose absolute value does not exist. */
    put_alert_prefix(&m);
    put_long(&m, INT64_MIN);
    put_long(&m, 0);
    expect_decode(f, "block count INT64_MIN", &m, KENG_AVRO_ERR_INVALID, "block count");

    /* A good first block, then a second one of 2^40 items. */
    put_alert_prefix(&m);
    put_long(&m, 1);
    put_str(&m, "e-1");
    put_long(&m, INT64_C(1) << 40);
    put_str(&m, "e-2");
    put_long(&m, 0);
    expect_decode(f, "second block of 2^40", &m, KENG_AVRO_ERR_TRUNCATED, "array block count");

    /* One item more than the bytes that remain could hold (each item takes at least one). */
    put_alert_prefix(&m);
    put_long(&m, 5);
    put_long(&m, 0);
    put_long(&m, 0);
    put_long(&m, 0);
    put_long(&m, 0);
    expect_decode(f, "count one above the remaining bytes", &m, KENG_AVRO_ERR_TRUNCATED,
                  "array block count");

    /* Many blocks of one empty item each, never closed: each block is honest, the array as a
     * whole runs off the end. */
    put_alert_prefix(&m);
    for (int i = 0; i < 100; i++) {
        put_long(&m, 1);
        put_long(&m, 0);
    }
    expect_decode(f, "blocks without the closing count", &m, KENG_AVRO_ERR_TRUNCATED, NULL);
}

/* After all of the above the decoder still decodes good messages of each kind. */
static void test_decoder_survives_hostile_input(void **state)
{
    fixture_t *f = *state;
    keng_event_t ev = {.kind = KENG_KIND_MEDIATION}, back;
    unsigned char buf[1024];
    char errstr[256];
    size_t len = 0;
    msg_t m;

    put_header(&m, KENG_SCHEMA_ID_MEDIATION);
    put_long(&m, GIB8);
    expect_decode(f, "8 GiB mediation event_id", &m, KENG_AVRO_ERR_TRUNCATED, "8589934592");

    strcpy(ev.event_id, "m-2025-0002");
    strcpy(ev.board_id, "D21-C460-B07");
    ev.occurred_at = 1740800000000LL;
    ev.reported_at = 1740800000001LL;
    ev.dispute_type = KENG_DISPUTE_NEIGHBOR;
    ev.outcome = KENG_OUTCOME_NOT_RECONCILED;
    ev.parties = 4;
    if (keng_avro_encode(f->enc, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)) != 0)
        fail_msg("encode: %s", errstr);
    int rc = keng_avro_decode(f->dec, buf, len, &back, NULL, errstr, sizeof(errstr));
    if (rc != KENG_AVRO_OK)
        fail_msg("a good mediation after hostile ones: expected 0, got %d: %s", rc, errstr);
    assert_string_equal(back.event_id, ev.event_id);
    assert_int_equal(back.parties, ev.parties);
    assert_int_equal(back.outcome, ev.outcome);
}

int main(void)
{
    /* Before any Avro-C object exists, so that every allocation and free goes through it. */
    avro_set_allocator(counting_allocator, NULL);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eight_gib_first_string_never_reaches_avro_c, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_eight_gib_in_later_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alert_block_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decoder_survives_hostile_input, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
