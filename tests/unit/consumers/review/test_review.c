/* Tests of the annual review's counting: each event_id once however often it is resent (past
 * the id table's growth), the period's edges, unknown boards, and the written report's totals
 * against a recount made here; they never touch Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "registry.h"
#include "registry_check.h"
#include "review.h"
#include "unit_support.h"

#define EVENTS 20000 /* many times the id table's first size, so it grows several times */

/* Event i of the test: its kind, class and board follow from i alone. */
static keng_event_t make_event(uint32_t i, int64_t occurred_at)
{
    keng_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = i % 5 < 3 ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION;
    ev.category = (keng_category_t)(i % KENG_CAT_COUNT);
    ev.resolution = (keng_resolution_t)(i / 7 % KENG_RES_COUNT);
    ev.outcome = (keng_outcome_t)(i / 3 % KENG_OUTCOME_COUNT);
    ev.dispute_type = (keng_dispute_t)(i / 11 % KENG_DISPUTE_COUNT);
    snprintf(ev.event_id, sizeof(ev.event_id), "review-test-%08u", i);
    const keng_board_t *b = keng_registry_board(
        keng_unit_registry,
        (uint32_t)((i * 2654435761u) % keng_registry_board_count(keng_unit_registry)));
    snprintf(ev.board_id, sizeof(ev.board_id), "%s", b->id);
    ev.occurred_at = occurred_at;
    ev.reported_at = occurred_at;
    return ev;
}

static json_int_t json_total(json_t *scope, const char *kind)
{
    return json_integer_value(json_object_get(json_object_get(scope, kind), "total"));
}

static void each_event_is_counted_once(void **state)
{
    int64_t from, to;
    char errstr[256], dir[] = "/tmp/keng-test-review.XXXXXX", path[300];
    uint64_t incidents = 0, mediations = 0, transferred = 0;

    keng_review_year_bounds(2025, &from, &to);
    keng_review_t *r = keng_review_new(keng_unit_registry, from, to, "2025");
    assert_non_null(r);
    for (uint32_t i = 0; i < EVENTS; i++) {
        keng_event_t ev = make_event(i, from + (int64_t)i * ((to - from) / EVENTS));
        keng_unit_expect_u64(KENG_REVIEW_COUNTED, keng_review_add(r, &ev),
                             "outcome of a new event");
        if (ev.kind == KENG_KIND_INCIDENT) {
            incidents++;
            transferred += ev.resolution == KENG_RES_TRANSFERRED_TO_POLICE;
        } else {
            mediations++;
        }
    }
    /* Every event again, in another order and at another time of the year: resends. */
    for (uint32_t k = 0; k < EVENTS; k++) {
        keng_event_t ev = make_event((k * 7919u) % EVENTS, from + 1000);
        keng_unit_expect_u64(KENG_REVIEW_DUPLICATE, keng_review_add(r, &ev), "outcome of a resend");
    }
    /* The edges: the period is [from, to). */
    keng_event_t edge = make_event(EVENTS, from - 1);
    keng_unit_expect_u64(KENG_REVIEW_OUT_OF_PERIOD, keng_review_add(r, &edge),
                         "a millisecond before");
    edge = make_event(EVENTS + 1, to);
    keng_unit_expect_u64(KENG_REVIEW_OUT_OF_PERIOD, keng_review_add(r, &edge), "the period's end");
    edge = make_event(EVENTS + 2, to - 1);
    keng_unit_expect_u64(KENG_REVIEW_COUNTED, keng_review_add(r, &edge), "the last millisecond");
    mediations += edge.kind == KENG_KIND_MEDIATION;
    incidents += edge.kind == KENG_KIND_INCIDENT;
    transferred +=
        edge.kind == KENG_KIND_INCIDENT && edge.resolution == KENG_RES_TRANSFERRED_TO_POLICE;
    keng_event_t stranger = make_event(EVENTS + 3, from + 5);
    snprintf(stranger.board_id, sizeof(stranger.board_id), "D99-C999-B99");
    keng_unit_expect_u64(KENG_REVIEW_UNKNOWN_BOARD, keng_review_add(r, &stranger),
                         "an unknown board");
    keng_review_add_undecodable(r);
    keng_review_add_invalid_time(r);
    keng_review_add_invalid_time(r);

    keng_unit_expect_u64(EVENTS + 1, keng_review_outcome_count(r, KENG_REVIEW_COUNTED), "counted");
    keng_unit_expect_u64(EVENTS, keng_review_outcome_count(r, KENG_REVIEW_DUPLICATE), "duplicates");
    keng_unit_expect_u64(2, keng_review_outcome_count(r, KENG_REVIEW_OUT_OF_PERIOD),
                         "out of period");
    keng_unit_expect_u64(1, keng_review_outcome_count(r, KENG_REVIEW_UNKNOWN_BOARD),
                         "unknown board");
    keng_unit_expect_u64(1, keng_review_outcome_count(r, KENG_REVIEW_UNDECODABLE), "undecodable");
    keng_unit_expect_u64(2, keng_review_outcome_count(r, KENG_REVIEW_INVALID_TIME), "invalid time");

    assert_non_null(mkdtemp(dir));
    if (keng_review_write(r, dir, errstr, sizeof(errstr)) != 0)
        fail_msg("keng_review_write: %s", errstr);
    snprintf(path, sizeof(path), "%s/review.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", path, jerr.text);
    json_t *province = json_object_get(root, "province");
    keng_unit_expect_u64(incidents, (uint64_t)json_total(province, "incidents"),
                         "province incidents");
    keng_unit_expect_u64(mediations, (uint64_t)json_total(province, "mediations"),
                         "province mediations");
    keng_unit_expect_u64(
        transferred,
        (uint64_t)json_integer_value(json_object_get(
            json_object_get(json_object_get(province, "incidents"), "by_resolution"),
            "TRANSFERRED_TO_POLICE")),
        "province incidents transferred to police");
    uint64_t by_month = 0;
    size_t m;
    json_t *month;
    json_array_foreach(json_object_get(root, "months"), m, month)
    {
        by_month += (uint64_t)json_total(month, "incidents");
    }
    keng_unit_expect_u64(incidents, by_month, "incidents summed over the months");
    keng_unit_expect_u64(2,
                         (uint64_t)json_integer_value(json_object_get(
                             json_object_get(root, "data_quality"), "invalid_time")),
                         "data_quality.invalid_time in review.json");
    json_decref(root);

    const char *files[] = {"review.json", "review.csv", "review.html"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    keng_review_destroy(r);
}

/* review.csv opens in spreadsheets: a cell that starts with = + - @, a tab or a CR would be
 * read as a formula. Names (any text) and ids (which may start with '-') come from the
 * operator's registry file, so each such cell is written with a leading apostrophe, quoted. */
static void csv_cells_cannot_be_formulas(void **state)
{
    (void)state;
    char dir[] = "/tmp/keng-review-csv-XXXXXX", path[512], errstr[256], line[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/boards.csv", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("board_id,board_name,commune_id,commune_name,district_id,district_name,groups,"
          "members\n"
          "-B1,=HYPERLINK(\"http://x\"),-C1,@SUM(A1),-D1,\"\tTab\",1,1\n"
          "B2,\"\rCR\",-C1,@SUM(A1),-D1,\"\tTab\",1,1\n"
          "B3,+1,-C1,@SUM(A1),-D1,\"\tTab\",1,1\n",
          f);
    fclose(f);
    keng_registry_t *reg = keng_registry_load(path, errstr, sizeof(errstr));
    if (!reg)
        fail_msg("registry: %s", errstr);
    int64_t from, to;
    keng_review_year_bounds(2025, &from, &to);
    keng_review_t *r = keng_review_new(reg, from, to, "2025");
    assert_int_equal(keng_review_write(r, dir, errstr, sizeof(errstr)), 0);

    snprintf(path, sizeof(path), "%s/review.csv", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    int rows = 0;
    while (fgets(line, sizeof(line), f)) {
        rows++;
        /* Every cell, quoted or not, starts with none of = + - @ tab CR. */
        const char *cell = line;
        for (;;) {
            const char *c = *cell == '"' ? cell + 1 : cell;
            if (strchr("=+-@\t\r", *c) && *c)
                fail_msg("review.csv row %d has a cell that starts with '%c': %s", rows, *c, line);
            if (*cell == '"') {
                cell++;
                while (*cell && !(*cell == '"' && cell[1] != '"'))
                    cell += *cell == '"' ? 2 : 1;
                if (*cell)
                    cell++;
            } else {
                cell += strcspn(cell, ",\n");
            }
            if (*cell != ',')
                break;
            cell++;
        }
    }
    fclose(f);
    assert_true(rows >= 5);
    const char *files[] = {"review.json", "review.csv", "review.html", "boards.csv"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    keng_review_destroy(r);
    keng_registry_destroy(reg);
}

/* A review across a switch: the version before it (two districts, four communes), the one
 * drawn (two communes, no district level) and the lineage between them. Xã Cũ 1 merged
 * whole into Xã Mới 1, Xã Cũ 2 is split board by board, Huyện Hai went whole into Xã Mới 2,
 * K7 was removed and K8 is new. */
static const char previous_csv[] =
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
    "K1,Khối 1,OC1,Xã Cũ 1,OD1,Huyện Một,1,1\n"
    "K2,Khối 2,OC1,Xã Cũ 1,OD1,Huyện Một,1,1\n"
    "K7,Khối 7,OC1,Xã Cũ 1,OD1,Huyện Một,1,1\n"
    "K3,Khối 3,OC2,Xã Cũ 2,OD1,Huyện Một,1,1\n"
    "K4,Khối 4,OC2,Xã Cũ 2,OD1,Huyện Một,1,1\n"
    "K5,Khối 5,OC3,Xã Cũ 3,OD2,Huyện Hai,1,1\n"
    "K6,Khối 6,OC4,Xã Cũ 4,OD2,Huyện Hai,1,1\n";
static const char drawn_csv[] =
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
    "K1,Khối 1,N1,Xã Mới 1,,,1,1\n"
    "K2,Khối 2,N1,Xã Mới 1,,,1,1\n"
    "K3,Khối 3,N1,Xã Mới 1,,,1,1\n"
    "K8,Khối 8,N1,Xã Mới 1,,,1,1\n"
    "K4,Khối 4,N2,Xã Mới 2,,,1,1\n"
    "K5,Khối 5,N2,Xã Mới 2,,,1,1\n"
    "K6,Khối 6,N2,Xã Mới 2,,,1,1\n";
static const char lineage_csv[] = "from_id,from_name,to_id,to_name\n"
                                  "OC1,Xã Cũ 1,N1,Xã Mới 1\n"
                                  "K3,Khối 3,N1,Xã Mới 1\n"
                                  "K4,Khối 4,N2,Xã Mới 2\n"
                                  "OD2,Huyện Hai,N2,Xã Mới 2\n"
                                  "K7,Khối 7,,\n";

static uint64_t total_of(const json_t *scope, const char *kind)
{
    return (uint64_t)json_integer_value(json_object_get(json_object_get(scope, kind), "total"));
}

/* Each commune lists the units it came from, each with the figures of its boards that are in
 * the commune now from before the switch; a split unit shows under each commune only the
 * boards that went there, and says so; those lines and the commune's figures since the switch
 * add up to its total, in review.json and in review.csv. */
static void communes_list_their_predecessors(void **state)
{
    (void)state;
    char errstr[256], dir[] = "/tmp/keng-review-pred-XXXXXX", path[300], line[1024];
    int64_t from, to, at;
    keng_registry_t *previous = keng_registry_load_text(previous_csv, strlen(previous_csv),
                                                        "previous", errstr, sizeof(errstr));
    keng_registry_t *drawn =
        keng_registry_load_text(drawn_csv, strlen(drawn_csv), "drawn", errstr, sizeof(errstr));
    keng_lineage_t *lineage =
        keng_lineage_load_text(lineage_csv, strlen(lineage_csv), "lineage", errstr, sizeof(errstr));
    if (!previous || !drawn || !lineage)
        fail_msg("setup: %s", errstr);
    keng_review_year_bounds(2025, &from, &to);
    assert_int_equal(keng_review_parse_date("2025-07-01", &at), 0);
    keng_review_t *r = keng_review_new(drawn, from, to, "2025");
    assert_non_null(r);
    assert_int_equal(keng_review_set_predecessors(r, previous, lineage, at), 0);
    keng_lineage_destroy(lineage);

    /* Board i of the list gets events[i] events before the switch and (i + 1) after, one in
     * three a mediation; K7, removed, is not the review's. */
    static const char *const boards[] = {"K1", "K2", "K3", "K4", "K5", "K6", "K8", "K7"};
    uint32_t n = 0;
    for (size_t b = 0; b < 8; b++) {
        for (uint32_t k = 0; k < 2 * b + 1; k++, n++) {
            keng_event_t ev = make_event(n, k <= b ? at - 1 - k * 60000 : at + k * 60000);
            snprintf(ev.board_id, sizeof(ev.board_id), "%s", boards[b]);
            keng_unit_expect_u64(b == 7 ? KENG_REVIEW_UNKNOWN_BOARD : KENG_REVIEW_COUNTED,
                                 keng_review_add(r, &ev), boards[b]);
        }
    }
    assert_non_null(mkdtemp(dir));
    if (keng_review_write(r, dir, errstr, sizeof(errstr)) != 0)
        fail_msg("keng_review_write: %s", errstr);
    snprintf(path, sizeof(path), "%s/review.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", path, jerr.text);

    /* What each commune should list: level, id, split, boards, events before the switch
     * (board i has i + 1 of them, mediations among them as make_event makes them). */
    static const struct {
        const char *commune, *level, *id;
        bool split;
        uint64_t boards, events;
    } expected[] = {
        {"N1", "commune", "OC1", false, 2, 1 + 2},  {"N1", "commune", "OC2", true, 1, 3},
        {"N1", "new_boards", NULL, false, 1, 7},    {"N2", "commune", "OC2", true, 1, 4},
        {"N2", "district", "OD2", false, 2, 5 + 6},
    };
    size_t e = 0, c;
    json_t *commune;
    json_array_foreach(json_object_get(root, "communes"), c, commune)
    {
        const char *cid = json_string_value(json_object_get(commune, "id"));
        json_t *preds = json_object_get(commune, "predecessors"), *p;
        json_t *since = json_object_get(commune, "since_switch");
        uint64_t sum[2] = {total_of(since, "incidents"), total_of(since, "mediations")};
        size_t i;
        json_array_foreach(preds, i, p)
        {
            char what[128];
            if (e >= sizeof(expected) / sizeof(expected[0]))
                fail_msg("%s: a predecessor more than expected", cid);
            const char *id = json_string_value(json_object_get(p, "id"));
            snprintf(what, sizeof(what), "%s: predecessor %zu", cid, i);
            assert_string_equal(cid, expected[e].commune);
            assert_string_equal(json_string_value(json_object_get(p, "level")), expected[e].level);
            if (expected[e].id)
                assert_string_equal(id ? id : "(null)", expected[e].id);
            else
                assert_true(json_is_null(json_object_get(p, "id")));
            keng_unit_expect_u64(expected[e].split, json_is_true(json_object_get(p, "split")),
                                 what);
            keng_unit_expect_u64(expected[e].boards,
                                 (uint64_t)json_integer_value(json_object_get(p, "boards")), what);
            keng_unit_expect_u64(expected[e].events,
                                 total_of(p, "incidents") + total_of(p, "mediations"), what);
            sum[0] += total_of(p, "incidents");
            sum[1] += total_of(p, "mediations");
            e++;
        }
        keng_unit_expect_u64(total_of(commune, "incidents"), sum[0],
                             "incidents: predecessors before plus since the switch");
        keng_unit_expect_u64(total_of(commune, "mediations"), sum[1],
                             "mediations: predecessors before plus since the switch");
    }
    keng_unit_expect_u64(sizeof(expected) / sizeof(expected[0]), e, "predecessor lines");
    json_t *before = json_object_get(json_object_get(root, "registry"), "predecessors");
    assert_string_equal(json_string_value(json_object_get(before, "effective")),
                        "2025-06-30T17:00:00.000Z");
    keng_unit_expect_u64(4, (uint64_t)json_integer_value(json_object_get(before, "communes")),
                         "communes of the version before");
    json_decref(root);

    /* review.csv: the rows under each commune add up to its row. */
    snprintf(path, sizeof(path), "%s/review.csv", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    uint64_t commune_rows[2] = {0, 0}, parts[2] = {0, 0};
    int split_rows = 0;
    while (fgets(line, sizeof(line), f)) {
        char level[40], id[40], name[80], parent[40];
        unsigned long long incidents;
        if (sscanf(line, "%39[^,],%39[^,],%79[^,],%39[^,],%llu", level, id, name, parent,
                   &incidents) != 5 &&
            sscanf(line, "%39[^,],,,%39[^,],%llu", level, parent, &incidents) != 3)
            continue;
        int which = strcmp(strcmp(level, "commune") == 0 ? id : parent, "N1") == 0 ? 0 : 1;
        if (strcmp(level, "commune") == 0)
            commune_rows[which] += incidents;
        else if (strncmp(level, "before_switch", 13) == 0 || strcmp(level, "since_switch") == 0)
            parts[which] += incidents;
        split_rows += strcmp(level, "before_switch_split") == 0;
    }
    fclose(f);
    keng_unit_expect_u64(commune_rows[0], parts[0], "review.csv: N1's rows");
    keng_unit_expect_u64(commune_rows[1], parts[1], "review.csv: N2's rows");
    keng_unit_expect_u64(2, (uint64_t)split_rows, "review.csv: the split unit's rows");

    snprintf(path, sizeof(path), "%s/review.html", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    int html_lines = 0;
    while (fgets(line, sizeof(line), f))
        html_lines += strstr(line, "<tr class=\"pred split\" data-level=commune") != NULL;
    fclose(f);
    keng_unit_expect_u64(2, (uint64_t)html_lines, "review.html: the split unit's lines");

    const char *files[] = {"review.json", "review.csv", "review.html"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    keng_review_destroy(r);
    keng_registry_destroy(drawn);
    keng_registry_destroy(previous);
}

/* A third version after drawn_csv: both communes of 2025 merged into one. */
static const char merged_csv[] =
    "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
    "K1,Khối 1,N3,Xã Hợp Nhất,,,1,1\n"
    "K2,Khối 2,N3,Xã Hợp Nhất,,,1,1\n"
    "K3,Khối 3,N3,Xã Hợp Nhất,,,1,1\n"
    "K8,Khối 8,N3,Xã Hợp Nhất,,,1,1\n"
    "K4,Khối 4,N3,Xã Hợp Nhất,,,1,1\n"
    "K5,Khối 5,N3,Xã Hợp Nhất,,,1,1\n"
    "K6,Khối 6,N3,Xã Hợp Nhất,,,1,1\n";
static const char merged_lineage_csv[] = "from_id,from_name,to_id,to_name\n"
                                         "N1,Xã Mới 1,N3,Xã Hợp Nhất\n"
                                         "N2,Xã Mới 2,N3,Xã Hợp Nhất\n";

/* The scope object of review.json whose id is id in the array key ("communes"), or NULL. */
static json_t *scope_of(json_t *root, const char *key, const char *id)
{
    size_t i;
    json_t *o;

    json_array_foreach(json_object_get(root, key), i, o)
    {
        if (strcmp(json_string_value(json_object_get(o, "id")), id) == 0)
            return o;
    }
    return NULL;
}

/* The review of 2025 under version drawn of the three, with predecessors when the drawn one
 * took effect in 2025 after another, fed every event of every board (K7 removed in July, K8
 * added then) and two of a board no version has. Returns review.json. */
static json_t *review_under(keng_registry_t *const *regs, keng_lineage_t *const *lineages,
                            const int64_t *effective, size_t drawn, uint64_t *events)
{
    char errstr[256], dir[] = "/tmp/keng-review-former-XXXXXX", path[300];
    int64_t from, to;
    keng_review_version_t v[3];
    static const char *const boards[] = {"K1", "K2", "K3", "K4", "K5", "K6", "K7", "K8", "K99"};

    keng_review_year_bounds(2025, &from, &to);
    for (size_t i = 0; i < 3; i++)
        v[i] = (keng_review_version_t){regs[i], lineages[i], effective[i]};
    keng_review_t *r = keng_review_new(regs[drawn], from, to, "2025");
    assert_non_null(r);
    if (drawn == 1)
        assert_int_equal(keng_review_set_predecessors(r, regs[0], lineages[1], effective[1]), 0);
    assert_int_equal(keng_review_set_versions(r, v, 3, drawn), 0);
    /* Board b gets b + 1 events before 1 July and b + 2 after: K7's after it was removed are
     * late reports, K8's before it was added early ones. */
    uint32_t n = 0;
    *events = 0;
    for (size_t b = 0; b < 9; b++) {
        for (uint32_t k = 0; k < 2 * b + 3; k++, n++) {
            keng_event_t ev =
                make_event(n, k <= b ? effective[1] - 1 - k * 60000 : effective[1] + k * 60000);
            snprintf(ev.board_id, sizeof(ev.board_id), "%s", boards[b]);
            keng_unit_expect_u64(b == 8 ? KENG_REVIEW_UNKNOWN_BOARD : KENG_REVIEW_COUNTED,
                                 keng_review_add(r, &ev), boards[b]);
            *events += b != 8;
        }
    }
    assert_non_null(mkdtemp(dir));
    if (keng_review_write(r, dir, errstr, sizeof(errstr)) != 0)
        fail_msg("keng_review_write: %s", errstr);
    snprintf(path, sizeof(path), "%s/review.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", path, jerr.text);
    const char *files[] = {"review.json", "review.csv", "review.html"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    keng_review_destroy(r);
    return root;
}

static uint64_t events_of(const json_t *scope)
{
    return total_of(scope, "incidents") + total_of(scope, "mediations");
}

/* A board removed by a version keeps its history under every later version: its events count
 * in the province's totals and under the commune its old commune became (through two
 * lineages), marked former_boards; a board added later counts under the province alone when
 * the units drawn are older. The province's totals are the same under each of the three
 * versions; only a board no version has stays unknown_board. */
static void former_boards_keep_their_history(void **state)
{
    (void)state;
    char errstr[256];
    const char *texts[3] = {previous_csv, drawn_csv, merged_csv};
    const char *lineage_texts[3] = {NULL, lineage_csv, merged_lineage_csv};
    keng_registry_t *regs[3];
    keng_lineage_t *lineages[3] = {NULL, NULL, NULL};
    int64_t effective[3];
    json_t *root[3];
    uint64_t events = 0;

    assert_int_equal(keng_review_parse_date("2024-01-01", &effective[0]), 0);
    assert_int_equal(keng_review_parse_date("2025-07-01", &effective[1]), 0);
    assert_int_equal(keng_review_parse_date("2026-03-01", &effective[2]), 0);
    for (size_t i = 0; i < 3; i++) {
        regs[i] =
            keng_registry_load_text(texts[i], strlen(texts[i]), "version", errstr, sizeof(errstr));
        if (lineage_texts[i])
            lineages[i] = keng_lineage_load_text(lineage_texts[i], strlen(lineage_texts[i]),
                                                 "lineage", errstr, sizeof(errstr));
        if (!regs[i] || (lineage_texts[i] && !lineages[i]))
            fail_msg("setup: %s", errstr);
    }
    for (size_t d = 0; d < 3; d++) {
        root[d] = review_under(regs, lineages, effective, d, &events);
        json_t *province = json_object_get(root[d], "province");
        keng_unit_expect_u64(events, events_of(province), "the province's events");
        keng_unit_expect_u64(2 * 8 + 3, /* K99: 8 + 1 before, 8 + 2 after */
                             (uint64_t)json_integer_value(json_object_get(
                                 json_object_get(root[d], "data_quality"), "unknown_board")),
                             "unknown_board: the board no version has");
    }
    /* K7 has 6 + 1 events before the switch and 6 + 2 after; K8 has 7 + 1 and 7 + 2. */
    uint64_t k7_before = 7, k7 = 7 + 8, k8 = 8 + 9;
    for (size_t d = 1; d < 3; d++) {
        json_t *province = json_object_get(root[d], "province");
        keng_unit_expect_u64(k7, events_of(json_object_get(province, "former_boards")),
                             "the province's former boards: K7");
        keng_unit_expect_u64(0, events_of(json_object_get(province, "former_boards_in_no_unit")),
                             "K7 is placed");
        keng_unit_expect_u64(k7,
                             (uint64_t)json_integer_value(json_object_get(
                                 json_object_get(root[d], "data_quality"), "former_board")),
                             "data_quality.former_board");
    }
    /* Under 2025: in Xã Mới 1, which Xã Cũ 1 became; its events before the switch on Xã Cũ
     * 1's line (K1, K2 and K7), those after in the commune's figures since. */
    json_t *n1 = scope_of(root[1], "communes", "N1");
    assert_non_null(n1);
    keng_unit_expect_u64(k7, events_of(json_object_get(n1, "former_boards")), "N1: K7");
    keng_unit_expect_u64(3 + 5 + 7 + k8 + k7, events_of(n1), "N1: K1, K2, K3, K8 and K7");
    json_t *oc1 = json_array_get(json_object_get(n1, "predecessors"), 0);
    assert_string_equal(json_string_value(json_object_get(oc1, "id")), "OC1");
    keng_unit_expect_u64(1 + 2 + k7_before, events_of(oc1), "N1's line of OC1: K1, K2 and K7");
    /* Under the 2026 merger: in N3, through N1. */
    json_t *n3 = scope_of(root[2], "communes", "N3");
    assert_non_null(n3);
    keng_unit_expect_u64(k7, events_of(json_object_get(n3, "former_boards")), "N3: K7");
    keng_unit_expect_u64(events, events_of(n3), "N3 holds every event");
    /* Under 2024: K8, added later, under the province alone. */
    json_t *province = json_object_get(root[0], "province");
    keng_unit_expect_u64(k8, events_of(json_object_get(province, "former_boards_in_no_unit")),
                         "2024: K8 in no unit");
    keng_unit_expect_u64(k8, events_of(json_object_get(province, "former_boards")),
                         "2024: the former boards are K8");
    for (size_t i = 0; i < 3; i++) {
        json_decref(root[i]);
        keng_registry_destroy(regs[i]);
        keng_lineage_destroy(lineages[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_event_is_counted_once),
        cmocka_unit_test(csv_cells_cannot_be_formulas),
        cmocka_unit_test(communes_list_their_predecessors),
        cmocka_unit_test(former_boards_keep_their_history),
    };
    return cmocka_run_group_tests(tests, keng_unit_registry_setup, keng_unit_registry_teardown);
}
