/* The /v1/silent and /v1/series routes: which boards of a scope are silent, and a scope's
 * counts as a time series; they only read the counts, never change them. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "silent.h"
#include "timeutil.h"

/* ---- silent boards and series ---- */

/* The ?level= and ?id= of a request (level defaults to the province), among u's units.
 * Returns 0, or -1 after answering 400, 404, or 403 for a scope the user may not see. */
static int scope_param(keng_api_t *api, keng_http_request_t *req, const keng_api_units_t *u,
                       keng_level_t *level, uint32_t *index)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    char msg[256];
    int32_t i;

    *level = KENG_LEVEL_PROVINCE;
    if (level_s && keng_api__parse_level(api, req, u->reg, level_s, level, true) != 0)
        return -1;
    if (!id || !*id) {
        if (*level != KENG_LEVEL_PROVINCE) {
            snprintf(msg, sizeof(msg), "id is required for level %s", keng_level_names[*level]);
            keng_api__respond_error(api, req, 400, msg);
            return -1;
        }
        id = KENG_PROVINCE_ID;
    }
    i = keng_scope_find(u->reg, *level, id);
    if (i < 0) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry%s%s",
                 keng_level_names[*level], id, u->version ? " version " : "",
                 u->version ? u->version : "");
        keng_api__respond_error(api, req, 404, msg);
        return -1;
    }
    *index = (uint32_t)i;
    return keng_api__units_check_scope(api, req, u, *level, *index);
}

static json_t *time_or_null(int64_t ms)
{
    char buf[40];

    if (ms == INT64_MIN || ms == INT64_MAX)
        return json_null();
    return json_string(keng_time_format_utc(ms, buf, sizeof(buf)));
}

typedef struct silent_item {
    uint32_t board;
    int64_t last; /* INT64_MIN: never */
    int64_t days;
} silent_item_t;

/* Longest silent first: never reported, then by last event, then registry order. */
static int silent_cmp(const void *a, const void *b)
{
    const silent_item_t *x = a, *y = b;

    if (x->last != y->last)
        return x->last < y->last ? -1 : 1;
    return x->board < y->board ? -1 : x->board > y->board;
}

/* One row per commune or district of the scope: its boards and how many are silent. */
static json_t *silent_rollup(const keng_api_t *api, keng_level_t level, const uint32_t *boards,
                             const uint32_t *silent, keng_level_t scope_level, uint32_t scope)
{
    json_t *rows = json_array();
    size_t n = keng_scope_count(api->reg, level);

    for (uint32_t i = 0; i < n; i++) {
        const char *id, *name;
        if (!keng_api__scope_within(api->reg, level, i, scope_level, scope) &&
            !keng_api__scope_within(api->reg, scope_level, scope, level, i))
            continue;
        keng_scope_names(api->reg, level, i, &id, &name);
        json_array_append_new(rows,
                              json_pack("{s:s,s:s,s:I,s:I,s:I}", "id", id, "name", name, "boards",
                                        (json_int_t)boards[i], "silent", (json_int_t)silent[i],
                                        "active", (json_int_t)(boards[i] - silent[i])));
    }
    return rows;
}

/* The boards of a scope without an event for ?days= days (silent.days by default), longest
 * silent first, with the count per commune and district of the scope. */
void keng_api__get_silent(keng_api_t *api, keng_http_request_t *req)
{
    const char *days_s = keng_http_request_query(req, "days");
    const char *limit_s = keng_http_request_query(req, "limit");
    keng_silent_view_t v = {api->counts, api->cluster ? keng_cluster_counts(api->cluster) : NULL,
                            api->silent.start_ms};
    keng_level_t level;
    uint32_t index;
    int days = api->silent.days;
    long limit = SILENT_LIST_DEFAULT;
    int64_t now = keng_api__now(api);
    char msg[256], as_of[32];
    keng_api_units_t u = keng_api__units_in_force(api);

    /* The silent boards and their rollups are those of the version in force only. */
    if (keng_http_request_query(req, "as_of")) {
        keng_api__respond_error(api, req, 400,
                                "as_of is not taken by /v1/silent, which lists the boards of the "
                                "registry version in force (it is by /v1/counts, /v1/children, "
                                "/v1/top and /v1/series)");
        return;
    }
    if (scope_param(api, req, &u, &level, &index) != 0)
        return;
    if (days_s && keng_silent_parse_days(days_s, &days) != 0) {
        snprintf(msg, sizeof(msg), "days must be a whole number from 1 to %d (got '%.32s')",
                 KENG_SILENT_DAYS_MAX, days_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (end == limit_s || *end || limit < 0 || limit > SILENT_LIST_MAX) {
            snprintf(msg, sizeof(msg), "limit must be a number from 0 to %d (got '%.32s')",
                     SILENT_LIST_MAX, limit_s);
            keng_api__respond_error(api, req, 400, msg);
            return;
        }
    }

    size_t nboards = keng_registry_board_count(api->reg);
    size_t ncommunes = keng_registry_commune_count(api->reg);
    size_t ndistricts = keng_registry_district_count(api->reg);
    silent_item_t *items = malloc((nboards ? nboards : 1) * sizeof(*items));
    uint32_t *counts = calloc(2 * (ncommunes + ndistricts) + 2, sizeof(uint32_t));
    if (!items || !counts) {
        free(items);
        free(counts);
        keng_api__respond_error(api, req, 500, "out of memory");
        return;
    }
    uint32_t *c_boards = counts, *c_silent = counts + ncommunes;
    uint32_t *d_boards = counts + 2 * ncommunes, *d_silent = d_boards + ndistricts;
    size_t nsilent = 0, total = 0;
    for (uint32_t b = 0; b < nboards; b++) {
        const keng_board_t *board = keng_registry_board(api->reg, b);
        if (!keng_api__scope_within(api->reg, KENG_LEVEL_BOARD, b, level, index))
            continue;
        int64_t d = keng_silent_days(&v, b, now);
        bool silent = d >= days;
        total++;
        /* A registry without districts has none to count in (ndistricts is 0). */
        bool in_district = board->district != KENG_NO_UNIT;
        c_boards[board->commune]++;
        if (in_district)
            d_boards[board->district]++;
        if (!silent)
            continue;
        c_silent[board->commune]++;
        if (in_district)
            d_silent[board->district]++;
        items[nsilent++] = (silent_item_t){b, keng_silent_last_event(&v, b), d};
    }
    qsort(items, nsilent, sizeof(*items), silent_cmp);
    json_t *list = json_array();
    for (size_t i = 0; i < nsilent && i < (size_t)limit; i++) {
        const keng_board_t *board = keng_registry_board(api->reg, items[i].board);
        const keng_district_t *district = keng_registry_district(api->reg, board->district);
        json_t *item =
            json_pack("{s:s,s:s,s:s,s:o,s:I}", "id", board->id, "name", board->name, "commune_id",
                      keng_registry_commune(api->reg, board->commune)->id, "last_event",
                      time_or_null(items[i].last), "silent_days", (json_int_t)items[i].days);
        if (district)
            json_object_set_new(item, "district_id", json_string(district->id));
        json_array_append_new(list, item);
    }
    const char *id, *name;
    keng_scope_names(api->reg, level, index, &id, &name);
    json_t *out = json_pack(
        "{s:s,s:s,s:s,s:i,s:s,s:o,s:I,s:I,s:I,s:b,s:o,s:o,s:o}", "level", keng_level_names[level],
        "id", id, "name", name, "days", days, "as_of",
        keng_time_format_utc(now, as_of, sizeof(as_of)), "watch_start",
        time_or_null(keng_silent_watch_start(&v)), "boards", (json_int_t)total, "silent",
        (json_int_t)nsilent, "active", (json_int_t)(total - nsilent), "truncated",
        nsilent > (size_t)limit, "items", list, "communes",
        silent_rollup(api, KENG_LEVEL_COMMUNE, c_boards, c_silent, level, index), "districts",
        silent_rollup(api, KENG_LEVEL_DISTRICT, d_boards, d_silent, level, index));
    free(items);
    free(counts);
    keng_api__respond_json(api, req, 200, out);
}

/* The start of the hour or the Asia/Ho_Chi_Minh day (step) that holds ms. */
static int64_t local_floor(int64_t ms, int64_t step)
{
    int64_t local = ms + KENG_LOCAL_OFFSET_MS;
    int64_t q = local / step - (local % step < 0);

    return q * step - KENG_LOCAL_OFFSET_MS;
}

/* Adds the series of one scope of the counts' registry, this instance's and the others'. */
static void series_add(const keng_api_t *api, const keng_counts_t *other, keng_level_t level,
                       uint32_t index, keng_kind_t kind, keng_window_id_t window, int64_t origin,
                       int64_t step, uint64_t *points, int64_t npoints)
{
    keng_counts_series_add(api->counts, level, index, kind, window, origin, step, points,
                           (size_t)npoints);
    if (other)
        keng_counts_series_add(other, level, index, kind, window, origin, step, points,
                               (size_t)npoints);
}

/* Counts of one kind over a window, per hour or per day (Asia/Ho_Chi_Minh days), from the
 * buckets the window's count is made of: the points add up to the window's count. */
void keng_api__get_series(keng_api_t *api, keng_http_request_t *req)
{
    const char *kind_s = keng_http_request_query(req, "kind");
    const char *window_s = keng_http_request_query(req, "window");
    const char *step_s = keng_http_request_query(req, "step");
    keng_kind_t kind = KENG_KIND_INCIDENT;
    keng_window_id_t window = KENG_WIN_24H;
    keng_level_t level;
    uint32_t index;
    int64_t step, now = keng_api__now(api);
    char msg[256], buf[40];
    keng_api_units_t u;

    if (keng_api__units_param(api, req, &u) != 0 || scope_param(api, req, &u, &level, &index) != 0)
        return;
    if (kind_s && keng_kind_parse(kind_s, &kind) != 0) {
        snprintf(msg, sizeof(msg), "kind must be incident or mediation (got '%.32s')", kind_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    if (window_s &&
        (keng_api__parse_window(window_s, &window) != 0 ||
         (window != KENG_WIN_24H && window != KENG_WIN_30D && window != KENG_WIN_365D))) {
        snprintf(msg, sizeof(msg), "window must be one of 24h, 30d, 365d (got '%.32s')", window_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    step = window == KENG_WIN_24H ? 3600000LL : KENG_DAY_MS;
    if (step_s && strcmp(step_s, "1h") != 0 && strcmp(step_s, "1d") != 0) {
        snprintf(msg, sizeof(msg), "step must be 1h or 1d (got '%.32s')", step_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    if (step_s)
        step = strcmp(step_s, "1h") == 0 ? 3600000LL : KENG_DAY_MS;

    /* The points start at the hour or the Vietnamese day that holds the window's start and
     * end with the one that holds now; the clock the counts last moved to is the window's. */
    const keng_counts_t *other = api->cluster ? keng_cluster_counts(api->cluster) : NULL;
    int64_t clock = keng_counts_now(api->counts);
    if (clock == INT64_MIN)
        clock = now;
    int64_t from = keng_counts_window_start(clock, window);
    int64_t origin = local_floor(from, step);
    int64_t npoints = (clock - origin) / step + 1;
    if (npoints > SERIES_POINTS_MAX) {
        snprintf(msg, sizeof(msg),
                 "window %s in steps of %s makes %lld points, more than %d: use step=1d",
                 keng_window_names[window], step == KENG_DAY_MS ? "1d" : "1h", (long long)npoints,
                 SERIES_POINTS_MAX);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    uint64_t *points = calloc((size_t)npoints, sizeof(uint64_t));
    if (!points) {
        keng_api__respond_error(api, req, 500, "out of memory");
        return;
    }
    size_t missing = 0;
    if (!u.version) {
        series_add(api, other, level, index, kind, window, origin, step, points, npoints);
    } else {
        /* A unit of another version: the series of its boards, each found by its id. */
        for (uint32_t b = 0; b < keng_registry_board_count(u.reg); b++) {
            int32_t counted;
            if (!keng_api__scope_within(u.reg, KENG_LEVEL_BOARD, b, level, index))
                continue;
            counted = keng_api__units_counted_board(api, &u, b);
            if (counted >= 0)
                series_add(api, other, KENG_LEVEL_BOARD, (uint32_t)counted, kind, window, origin,
                           step, points, npoints);
            else
                missing++;
        }
    }
    keng_tally_t t;
    size_t missing_again;
    keng_api__units_tally(api, &u, level, index, window, &t, &missing_again);
    json_t *list = json_array();
    for (int64_t i = 0; i < npoints; i++)
        json_array_append_new(list,
                              json_pack("{s:s,s:I}", "t",
                                        keng_time_format_local(origin + i * step, buf, sizeof(buf)),
                                        "count", (json_int_t)points[i]));
    free(points);
    const char *id, *name;
    keng_scope_names(u.reg, level, index, &id, &name);
    json_t *out = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:o}", "level", keng_level_names[level], "id", id,
        "name", name, "kind", keng_kind_name(kind), "window", keng_window_names[window], "step",
        step == KENG_DAY_MS ? "1d" : "1h", "as_of", keng_time_format_utc(clock, buf, sizeof(buf)),
        "from", time_or_null(from), "total",
        (json_int_t)(kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations), "points", list);
    keng_api__units_mark(&u, missing, out);
    keng_api__respond_json(api, req, 200, out);
}
