/* keng-ingest's request bodies: a good object and a good array become events; every invalid
 * event of an array is named with its index and field; bodies that are empty, truncated, too
 * deep, with duplicate keys or overflowing numbers are refused whole; boards outside the
 * token's districts give 403; too many events 413; they never open a socket or touch Kafka. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest_body.h"
#include "registry.h"
#include "tokens.h"

#define NOW_MS 1740838500000LL /* 2025-03-01T14:15:00Z */

static keng_registry_t *reg;
static keng_tokens_t *tokens;
static const keng_gateway_t *gw_d01; /* may report for D01 only */
static char board_d01[32], board_d02[32];

static int setup(void **state)
{
    char path[] = "/tmp/keng-ingest-body-XXXXXX";
    char token[KENG_TOKEN_TEXT_LEN + 1], hash[KENG_TOKEN_HASH_HEX_LEN + 1], errstr[256];
    int fd = mkstemp(path);

    reg = keng_registry_default();
    assert_non_null(reg);
    for (uint32_t i = 0; i < keng_registry_board_count(reg); i++) {
        const keng_board_t *b = keng_registry_board(reg, i);
        const char *d = keng_registry_district(reg, b->district)->id;
        if (!board_d01[0] && strcmp(d, "D01") == 0)
            snprintf(board_d01, sizeof(board_d01), "%s", b->id);
        if (!board_d02[0] && strcmp(d, "D02") == 0)
            snprintf(board_d02, sizeof(board_d02), "%s", b->id);
    }
    assert_true(board_d01[0] && board_d02[0]);
    close(fd);
    assert_int_equal(keng_tokens_generate(token, hash, errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_tokens_append(path, hash, "gw-d01", "D01", errstr, sizeof(errstr)), 0);
    tokens = keng_tokens_load(path, errstr, sizeof(errstr));
    assert_non_null(tokens);
    gw_d01 = keng_tokens_find(tokens, token, strlen(token));
    assert_non_null(gw_d01);
    unlink(path);
    return 0;
}

static int teardown(void **state)
{
    keng_tokens_destroy(tokens);
    keng_registry_destroy(reg);
    return 0;
}

static const keng_ingest_body_limits_t limits = {.max_events = 5, .max_depth = 8, .now_ms = NOW_MS};

static char *incident(const char *id, const char *board, const char *extra)
{
    char *s = malloc(1024);
    snprintf(s, 1024,
             "{\"event_id\": \"%s\", \"board_id\": \"%s\", \"occurred_at\": "
             "\"2025-03-01T21:15:00+07:00\", \"category\": \"THEFT\", \"severity\": \"HIGH\", "
             "\"resolution\": \"HANDLED_LOCALLY\", \"people_involved\": 2, \"source\": "
             "\"MOBILE_APP\", \"summary\": \"Trộm cắp xe máy\"%s}",
             id, board, extra);
    return s;
}

/* Parses text; on failure returns the status and leaves the answer in *answer. */
static int parse(const char *text, keng_ingest_body_t **body, json_t **answer, size_t *n)
{
    return keng_ingest_body_parse(text, strlen(text), KENG_KIND_INCIDENT, reg, gw_d01, &limits,
                                  body, answer, n);
}

static void test_one_object(void **state)
{
    char *text = incident("e-1", board_d01, "");
    keng_ingest_body_t *body;
    json_t *answer;
    size_t n;
    const keng_event_t *ev;

    assert_int_equal(parse(text, &body, &answer, &n), 0);
    assert_null(answer);
    assert_int_equal(n, 1);
    assert_int_equal(keng_ingest_body_count(body), 1);
    ev = keng_ingest_body_event(body, 0);
    assert_string_equal(ev->event_id, "e-1");
    assert_string_equal(ev->board_id, board_d01);
    assert_int_equal(ev->occurred_at, 1740838500000LL);
    /* reported_at missing: the gateway's time. */
    assert_int_equal(ev->reported_at, NOW_MS);
    assert_int_equal(ev->summary_len, strlen("Trộm cắp xe máy"));
    assert_memory_equal(ev->summary, "Trộm cắp xe máy", ev->summary_len);
    keng_ingest_body_destroy(body);
    free(text);
}

/* Every invalid event is listed, by index and field, and nothing is returned. */
static void test_array_lists_every_error(void **state)
{
    char *good = incident("e-1", board_d01, "");
    char *bad_sev = incident("e-2", board_d01, ", \"severity\": \"HUGE\"");
    char *unknown_board = incident("e-3", "D01-C999-B99", "");
    char *bad_id = incident("not an id!", board_d01, "");
    char text[8192];
    keng_ingest_body_t *body = NULL;
    json_t *answer = NULL, *errors;
    size_t n;

    /* A duplicate key is a JSON error, so give the bad severity through a fresh object. */
    free(bad_sev);
    bad_sev = strdup("{\"event_id\": \"e-2\", \"board_id\": \"D01-C001-B01\", \"occurred_at\": "
                     "1740838500000, \"severity\": \"HUGE\", \"resolution\": \"PENDING\", "
                     "\"people_involved\": 1, \"source\": \"SMS\"}");
    snprintf(text, sizeof(text), "[%s, %s, %s, %s]", good, bad_sev, unknown_board, bad_id);
    assert_int_equal(parse(text, &body, &answer, &n), 400);
    assert_null(body);
    assert_int_equal(n, 4);
    errors = json_object_get(answer, "errors");
    assert_int_equal(json_array_size(errors), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 0), "index")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "field")),
                        "severity");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 1), "index")), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 1), "field")),
                        "board_id");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(errors, 1), "message")),
                           "D01-C999-B99"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(errors, 2), "index")), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 2), "field")),
                        "event_id");
    json_decref(answer);
    free(good);
    free(bad_sev);
    free(unknown_board);
    free(bad_id);
}

static void expect_body_error(const char *text, int status, const char *message_part)
{
    keng_ingest_body_t *body = NULL;
    json_t *answer = NULL;
    size_t n;
    int got = parse(text, &body, &answer, &n);
    json_t *e = json_array_get(json_object_get(answer, "errors"), 0);
    const char *message = json_string_value(json_object_get(e, "message"));

    assert_null(body);
    if (got != status || !message || !strstr(message, message_part))
        fail_msg("body %.60s: expected %d with '%s', got %d '%s'", text, status, message_part, got,
                 message ? message : "(none)");
    assert_true(json_is_null(json_object_get(e, "index")));
    json_decref(answer);
}

static void test_bodies_refused_whole(void **state)
{
    char deep[20001];

    expect_body_error("", 400, "the body is empty");
    expect_body_error("  \r\n", 400, "the body is empty");
    expect_body_error("[{\"event_id\": \"e-1\", \"board_", 400, "invalid JSON at line 1");
    expect_body_error("{\"a\": 1,\n \"a\": 2}", 400, "invalid JSON at line 2");
    expect_body_error("{\"people_involved\": 123456789012345678901234567890}", 400,
                      "invalid JSON at line 1");
    expect_body_error("{\"lat\": 1e999}", 400, "invalid JSON");
    expect_body_error("\"just a string\"", 400, "one JSON object or an array");
    expect_body_error("[]", 400, "no events");
    expect_body_error("[1,2,3,4,5,6]", 413, "the request holds 6 events; at most 5");
    expect_body_error("{\"summary\": \"\xc3\x28\"}", 400, "invalid JSON");
    memset(deep, '[', 10000);
    memset(deep + 10000, ']', 10000);
    deep[20000] = '\0';
    expect_body_error(deep, 400, "nests deeper than 8 levels at line 1, column 9");
    /* Brackets inside strings do not count. */
    {
        char *text = incident("e-1", board_d01, "");
        char *p = strstr(text, "Trộm cắp xe máy");
        size_t len = strlen("Trộm cắp xe máy");
        keng_ingest_body_t *body;
        json_t *answer;
        size_t n;
        memset(p, '[', len);
        assert_int_equal(parse(text, &body, &answer, &n), 0);
        keng_ingest_body_destroy(body);
        free(text);
    }
}

static void test_districts(void **state)
{
    char *in = incident("e-1", board_d01, "");
    char *out = incident("e-2", board_d02, "");
    char text[4096];
    keng_ingest_body_t *body = NULL;
    json_t *answer = NULL, *e;
    size_t n;

    snprintf(text, sizeof(text), "[%s, %s]", in, out);
    assert_int_equal(parse(text, &body, &answer, &n), 403);
    assert_null(body);
    assert_int_equal(json_array_size(json_object_get(answer, "errors")), 1);
    e = json_array_get(json_object_get(answer, "errors"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "index")), 1);
    assert_string_equal(json_string_value(json_object_get(e, "field")), "board_id");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), board_d02));
    json_decref(answer);

    /* Without a gateway (no district rule) the same body is taken. */
    assert_int_equal(keng_ingest_body_parse(text, strlen(text), KENG_KIND_INCIDENT, reg, NULL,
                                            &limits, &body, &answer, &n),
                     0);
    assert_int_equal(keng_ingest_body_count(body), 2);
    keng_ingest_body_destroy(body);
    free(in);
    free(out);
}

/* A version in force that moved the boards of D01 into a commune N1 of no district: the
 * gateway of D01 keeps the boards that were in D01 in the earlier (built-in) version, and gets
 * 403 for a board that never was; without the earlier version it gets 403 for both. */
static void test_units_of_an_earlier_version(void **state)
{
    char csv[512], text[4096], errstr[256];
    keng_ingest_body_t *body = NULL;
    json_t *answer = NULL;
    size_t n;
    const keng_registry_t *earlier[] = {reg};
    keng_ingest_body_limits_t with = limits;

    snprintf(csv, sizeof(csv),
             "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,"
             "members\n%s,Thôn 1,N1,Xã Mới,,,5,5\n%s,Thôn 2,N1,Xã Mới,,,5,5\nNEW-B1,Thôn 3,N1,"
             "Xã Mới,,,5,5\n",
             board_d01, board_d02);
    keng_registry_t *now =
        keng_registry_load_text(csv, strlen(csv), "test@now", errstr, sizeof(errstr));
    assert_non_null(now);
    char *was_d01 = incident("e-1", board_d01, "");
    char *never = incident("e-2", "NEW-B1", "");

    snprintf(text, sizeof(text), "[%s]", was_d01);
    assert_int_equal(keng_ingest_body_parse(text, strlen(text), KENG_KIND_INCIDENT, now, gw_d01,
                                            &limits, &body, &answer, &n),
                     403);
    json_decref(answer);
    answer = NULL;
    with.earlier = earlier;
    with.nearlier = 1;
    assert_int_equal(keng_ingest_body_parse(text, strlen(text), KENG_KIND_INCIDENT, now, gw_d01,
                                            &with, &body, &answer, &n),
                     0);
    keng_ingest_body_destroy(body);
    body = NULL;
    snprintf(text, sizeof(text), "[%s]", never);
    assert_int_equal(keng_ingest_body_parse(text, strlen(text), KENG_KIND_INCIDENT, now, gw_d01,
                                            &with, &body, &answer, &n),
                     403);
    assert_null(body);
    json_decref(answer);
    free(was_d01);
    free(never);
    keng_registry_destroy(now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_object),
        cmocka_unit_test(test_array_lists_every_error),
        cmocka_unit_test(test_bodies_refused_whole),
        cmocka_unit_test(test_districts),
        cmocka_unit_test(test_units_of_an_earlier_version),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
