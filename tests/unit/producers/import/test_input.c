/* Records of keng-produce's files into events: NDJSON and CSV through one validator, the "kind"
 * field, CSV headers, location columns, null cells, and unknown boards; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "input.h"
#include "registry.h"

/* 2025-03-01T21:15:00+07:00 plus a day: the clock of the checks. */
#define NOW_MS (1740838500000LL + 86400000LL)

static keng_registry_t *reg;
static char board[32]; /* a board the default registry knows */

static int group_setup(void **state)
{
    reg = keng_registry_default();
    if (!reg)
        return -1;
    snprintf(board, sizeof(board), "%s", keng_registry_board(reg, 5)->id);
    return 0;
}

static int group_teardown(void **state)
{
    keng_registry_destroy(reg);
    return 0;
}

static int parse(keng_input_t *in, const char *s, keng_event_t *ev, keng_field_error_t *err)
{
    return keng_input_parse(in, s, strlen(s), NOW_MS, ev, err);
}

static void expect_error(keng_input_t *in, const char *line, const char *field,
                         const char *message_part)
{
    keng_event_t ev;
    keng_field_error_t err;

    if (parse(in, line, &ev, &err) == 0)
        fail_msg("expected an error on %s for %s, got none", field, line);
    assert_string_equal(err.field, field);
    if (!strstr(err.message, message_part))
        fail_msg("expected a message with '%s', got '%s'", message_part, err.message);
}

static void ndjson_incident_is_read_with_every_field(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_NDJSON, KENG_KIND_INCIDENT, reg);
    keng_event_t ev;
    keng_field_error_t err;
    char line[1024];

    snprintf(line, sizeof(line),
             "{\"event_id\":\"e-1\",\"board_id\":\"%s\",\"occurred_at\":"
             "\"2025-03-01T21:15:00+07:00\",\"reported_at\":1740838600000,\"category\":\"THEFT\","
             "\"severity\":\"LOW\",\"resolution\":\"HANDLED_LOCALLY\",\"people_involved\":2,"
             "\"source\":\"PATROL\",\"location\":{\"lat\":18.7,\"lon\":105.6},\"summary\":\"Mất "
             "trộm\"}\n",
             board);
    if (parse(in, line, &ev, &err) < 0)
        fail_msg("%s: %s", err.field, err.message);
    assert_int_equal(ev.kind, KENG_KIND_INCIDENT);
    assert_string_equal(ev.event_id, "e-1");
    assert_string_equal(ev.board_id, board);
    assert_int_equal(ev.occurred_at, 1740838500000LL);
    assert_int_equal(ev.reported_at, 1740838600000LL);
    assert_int_equal(ev.category, KENG_CAT_THEFT);
    assert_int_equal(ev.people_involved, 2);
    assert_true(ev.has_location);
    assert_int_equal(ev.summary_len, strlen("Mất trộm"));
    assert_memory_equal(ev.summary, "Mất trộm", ev.summary_len);
    keng_input_destroy(in);
}

static void ndjson_errors_name_the_field(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_NDJSON, KENG_KIND_INCIDENT, reg);
    char line[1024];
    const char *tail = "\"severity\":\"LOW\",\"resolution\":\"PENDING\",\"people_involved\":1,"
                       "\"source\":\"SMS\"}";

    expect_error(in, "{\"event_id\": \"x\",", "", "not valid JSON");
    expect_error(in, "[1,2]", "", "expected a JSON object");
    snprintf(line, sizeof(line),
             "{\"event_id\":\"e-2\",\"board_id\":\"D99-C999-B99\",\"occurred_at\":1740838500000,"
             "\"category\":\"THEFT\",%s",
             tail);
    expect_error(in, line, "board_id", "unknown board 'D99-C999-B99'");
    snprintf(line, sizeof(line),
             "{\"event_id\":\"e-3\",\"board_id\":\"%s\",\"occurred_at\":1740838500000,"
             "\"category\":\"ROBBERY\",%s",
             board, tail);
    expect_error(in, line, "category", "ROBBERY");
    snprintf(line, sizeof(line),
             "{\"event_id\":\"e-4\",\"board_id\":\"%s\",\"occurred_at\":\"2099-01-01T00:00:00Z\","
             "\"category\":\"THEFT\",%s",
             board, tail);
    expect_error(in, line, "occurred_at", "future");
    snprintf(line, sizeof(line),
             "{\"kind\":\"mediation\",\"event_id\":\"e-5\",\"board_id\":\"%s\","
             "\"occurred_at\":1740838500000,\"category\":\"THEFT\",%s",
             board, tail);
    expect_error(in, line, "kind", "import is of incident events");
    keng_input_destroy(in);
}

static void kind_auto_reads_each_records_kind(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_NDJSON, KENG_INPUT_KIND_AUTO, reg);
    keng_event_t ev;
    keng_field_error_t err;
    char line[1024];

    snprintf(line, sizeof(line),
             "{\"kind\":\"mediation\",\"event_id\":\"m-1\",\"board_id\":\"%s\","
             "\"occurred_at\":1740838500000,\"dispute_type\":\"LAND\",\"outcome\":\"RECONCILED\","
             "\"parties\":2}",
             board);
    if (parse(in, line, &ev, &err) < 0)
        fail_msg("%s: %s", err.field, err.message);
    assert_int_equal(ev.kind, KENG_KIND_MEDIATION);
    assert_int_equal(ev.outcome, KENG_OUTCOME_RECONCILED);
    /* Without reported_at the import's clock stands in. */
    assert_int_equal(ev.reported_at, NOW_MS);

    snprintf(line, sizeof(line), "{\"event_id\":\"m-2\",\"board_id\":\"%s\"}", board);
    expect_error(in, line, "kind", "missing");
    expect_error(in, "{\"kind\":\"alert\"}", "kind", "must be \"incident\" or \"mediation\"");
    keng_input_destroy(in);
}

static void csv_rows_become_events(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_CSV, KENG_KIND_INCIDENT, reg);
    keng_event_t ev;
    keng_field_error_t err;
    char errstr[256], row[1024];
    const char *header = "event_id,board_id,group_id,occurred_at,reported_at,category,severity,"
                         "resolution,people_involved,source,lat,lon,summary\r\n";

    assert_int_equal(keng_input_csv_header(in, header, strlen(header), errstr, sizeof(errstr)), 0);
    snprintf(row, sizeof(row),
             "c-1,%s,,2025-03-01T21:15:00+07:00,,ASSAULT,HIGH,TRANSFERRED_TO_POLICE,3,HOTLINE,"
             "18.75,105.5,\"Đánh nhau, có người bị thương\"\r\n",
             board);
    if (parse(in, row, &ev, &err) < 0)
        fail_msg("%s: %s", err.field, err.message);
    assert_string_equal(ev.event_id, "c-1");
    assert_false(ev.has_group);
    assert_int_equal(ev.occurred_at, 1740838500000LL);
    assert_int_equal(ev.reported_at, NOW_MS);
    assert_int_equal(ev.resolution, KENG_RES_TRANSFERRED_TO_POLICE);
    assert_int_equal(ev.people_involved, 3);
    assert_true(ev.has_location);
    assert_true(ev.lat > 18.74 && ev.lat < 18.76);
    assert_memory_equal(ev.summary, "Đánh nhau, có người bị thương", ev.summary_len);

    /* Empty lat and lon: no location. */
    snprintf(row, sizeof(row), "c-2,%s,,1740838500000,,THEFT,LOW,PENDING,1,SMS,,,", board);
    if (parse(in, row, &ev, &err) < 0)
        fail_msg("%s: %s", err.field, err.message);
    assert_false(ev.has_location);
    assert_null(ev.summary);

    snprintf(row, sizeof(row), "c-3,%s,,1740838500000,,THEFT,LOW,PENDING,1,SMS,18.7,,", board);
    expect_error(in, row, "location", "both lat and lon");
    snprintf(row, sizeof(row), "c-4,%s,,1740838500000,,THEFT,LOW,PENDING,many,SMS,,,", board);
    expect_error(in, row, "people_involved", "integer");
    snprintf(row, sizeof(row), "c-5,%s,,1740838500000,,THEFT", board);
    expect_error(in, row, "", "the row has 6 fields but the header has 13");
    expect_error(in, "c-6,\"open", "", "never closed");
    keng_input_destroy(in);
}

static void csv_header_is_checked(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_CSV, KENG_KIND_MEDIATION, reg);
    char errstr[256];
    const char *bad = "event_id,board_id,category\n";
    const char *dup = "event_id,board_id,board_id\n";

    assert_int_equal(keng_input_csv_header(in, bad, strlen(bad), errstr, sizeof(errstr)), -1);
    assert_non_null(strstr(errstr, "column 3 'category' is not a field of mediation events"));
    assert_int_equal(keng_input_csv_header(in, dup, strlen(dup), errstr, sizeof(errstr)), -1);
    assert_non_null(strstr(errstr, "'board_id' appears twice"));
    keng_input_destroy(in);
}

static void csv_kind_auto_leaves_other_kinds_columns_empty(void **state)
{
    keng_input_t *in = keng_input_new(KENG_INPUT_CSV, KENG_INPUT_KIND_AUTO, reg);
    keng_event_t ev;
    keng_field_error_t err;
    char errstr[256], row[512];
    const char *header = "kind,event_id,board_id,occurred_at,category,severity,resolution,"
                         "people_involved,source,dispute_type,outcome,parties\n";

    assert_int_equal(keng_input_csv_header(in, header, strlen(header), errstr, sizeof(errstr)), 0);
    snprintf(row, sizeof(row), "mediation,a-1,%s,1740838500000,,,,,,DEBT,REFERRED,3", board);
    if (parse(in, row, &ev, &err) < 0)
        fail_msg("%s: %s", err.field, err.message);
    assert_int_equal(ev.kind, KENG_KIND_MEDIATION);
    assert_int_equal(ev.parties, 3);
    snprintf(row, sizeof(row), "incident,a-2,%s,1740838500000,THEFT,LOW,PENDING,1,SMS,,,4", board);
    expect_error(in, row, "parties", "not a field of incident events");
    keng_input_destroy(in);
}

static void format_follows_the_extension(void **state)
{
    keng_input_format_t f;
    assert_int_equal(keng_input_format_for_path("old/2024.CSV"), KENG_INPUT_CSV);
    assert_int_equal(keng_input_format_for_path("x.ndjson"), KENG_INPUT_NDJSON);
    assert_int_equal(keng_input_format_for_path("-"), KENG_INPUT_NDJSON);
    assert_int_equal(keng_input_format_parse("csv", &f), 0);
    assert_int_equal(f, KENG_INPUT_CSV);
    assert_int_equal(keng_input_format_parse("xml", &f), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ndjson_incident_is_read_with_every_field),
        cmocka_unit_test(ndjson_errors_name_the_field),
        cmocka_unit_test(kind_auto_reads_each_records_kind),
        cmocka_unit_test(csv_rows_become_events),
        cmocka_unit_test(csv_header_is_checked),
        cmocka_unit_test(csv_kind_auto_leaves_other_kinds_columns_empty),
        cmocka_unit_test(format_follows_the_extension),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
