/* The HTTP routes of keng-aggregate. Answers are computed from the counts on the loop
 * thread, so every answer is a consistent snapshot. */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard_html.h" /* keng_dashboard_html, from consumers/dashboard.html */
#include "log.h"
#include "silent.h"
#include "timeutil.h"

#define STREAM_INTERVAL_MS  1000
#define STREAM_HEARTBEAT_MS 15000
#define TOP_DEFAULT         10
#define TOP_MAX             100
#define STATUS_SLOTS        16
#define SILENT_LIST_DEFAULT 1000
#define SILENT_LIST_MAX     10000
#define SERIES_POINTS_MAX   800

typedef struct stream {
    keng_api_t *api;
    keng_http_request_t *req;
} stream_t;

typedef struct status_count {
    int status;
    uint64_t count;
} status_count_t;

struct keng_api {
    uv_timer_t timer; /* pushes count changes to the streams */
    const keng_registry_t *reg;
    const keng_counts_t *counts;
    const keng_cluster_t *cluster; /* the other instances' units; NULL when alone */
    keng_consumer_t *consumer;
    stream_t **streams;
    size_t nstreams, streams_cap;
    char *last_sent;
    int64_t last_sent_ms; /* monotonic, for heartbeats */
    status_count_t statuses[STATUS_SLOTS];
    keng_http_server_t *srv;
    const keng_alerts_t *alerts;     /* NULL without alert rules */
    const keng_alertlog_t *alertlog; /* with alerts */
    void (*more_metrics)(FILE *out, void *arg);
    void *more_metrics_arg;
    keng_silent_options_t silent;
    bool closing;
    bool timer_closed;
};

static const char *const known_reasons[] = {
    "bad-magic",    "unknown-schema-id", "truncated",     "invalid-avro",
    "wrong-record", "bad-field",         "unknown-board", "future-event",
};

static void count_status(keng_api_t *api, int status)
{
    for (int i = 0; i < STATUS_SLOTS; i++) {
        if (api->statuses[i].status == status || api->statuses[i].status == 0) {
            api->statuses[i].status = status;
            api->statuses[i].count++;
            return;
        }
    }
}

static void respond_json(keng_api_t *api, keng_http_request_t *req, int status, json_t *body)
{
    count_status(api, status);
    keng_http_respond_json(req, status, body);
}

static void respond_error(keng_api_t *api, keng_http_request_t *req, int status,
                          const char *message)
{
    json_t *body = json_pack("{s:s}", "error", message);

    /* A message that quotes a parameter is not JSON text when the parameter is not UTF-8. */
    if (!body)
        body = json_pack("{s:s}", "error", "a query parameter is not valid UTF-8");
    respond_json(api, req, status, body);
}

/* The body of an error the HTTP server answers by itself, in the shape of the API's own
 * errors, and counted with them. */
static json_t *server_error_body(int status, const char *message, void *ctx)
{
    count_status(ctx, status);
    return json_pack("{s:s}", "error", message);
}

/* Registry ids are letters, digits and '-' ("D07-C012-B03"). Returns 0, or -1 after
 * answering 400 for an id with any other byte, which could otherwise be cut short or
 * matched loosely. */
static int id_param(keng_api_t *api, keng_http_request_t *req, const char *id)
{
    char msg[160];
    size_t len = strlen(id);

    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-')) {
            snprintf(msg, sizeof(msg),
                     "id may hold only letters, digits and '-' (byte 0x%02x at offset %zu)", ch, i);
            respond_error(api, req, 400, msg);
            return -1;
        }
    }
    if (len > 64) {
        respond_error(api, req, 400, "id is longer than 64 characters");
        return -1;
    }
    return 0;
}

static void respond_text(keng_api_t *api, keng_http_request_t *req, int status,
                         const char *content_type, const char *body, size_t len)
{
    count_status(api, status);
    keng_http_respond(req, status, content_type, body, len);
}

static int64_t api_now(const keng_api_t *api)
{
    return api->consumer ? keng_consumer_now(api->consumer) : keng_now_ms();
}

static json_t *names_object(const char *const *names, const uint64_t *values, int count)
{
    json_t *o = json_object();

    for (int i = 0; i < count; i++)
        json_object_set_new(o, names[i], json_integer((json_int_t)values[i]));
    return o;
}

static json_t *tally_json(const keng_tally_t *t)
{
    return json_pack(
        "{s:{s:I,s:o,s:o},s:{s:I,s:o}}", "incidents", "total", (json_int_t)t->incidents,
        "by_category", names_object(keng_category_names, t->by_category, KENG_CAT_COUNT),
        "by_resolution", names_object(keng_resolution_names, t->by_resolution, KENG_RES_COUNT),
        "mediations", "total", (json_int_t)t->mediations, "by_outcome",
        names_object(keng_outcome_names, t->by_outcome, KENG_OUTCOME_COUNT));
}

static int parse_level(const char *s, keng_level_t *out)
{
    for (int l = 0; l < KENG_LEVEL_COUNT; l++) {
        if (strcmp(s, keng_level_names[l]) == 0) {
            *out = (keng_level_t)l;
            return 0;
        }
    }
    return -1;
}

static int parse_window(const char *s, keng_window_id_t *out)
{
    for (int w = 0; w < KENG_WIN_COUNT; w++) {
        if (strcmp(s, keng_window_names[w]) == 0) {
            *out = (keng_window_id_t)w;
            return 0;
        }
    }
    return -1;
}

/* The ?window= of a request into *out (left as is when absent). Returns 0, or -1 after
 * answering 400. */
static int window_param(keng_api_t *api, keng_http_request_t *req, const char *s,
                        keng_window_id_t *out)
{
    char msg[256];

    if (!s || parse_window(s, out) == 0)
        return 0;
    snprintf(msg, sizeof(msg), "window must be one of 1h, 24h, 7d, 30d, 365d, all (got '%.32s')",
             s);
    respond_error(api, req, 400, msg);
    return -1;
}

/* A scope's tally across the group: this instance's live units plus the latest states the
 * other instances published of theirs (the two sets never overlap). */
static void scope_tally(const keng_api_t *api, keng_level_t level, uint32_t index,
                        keng_window_id_t window, keng_tally_t *out)
{
    keng_tally_t other;
    uint64_t *a = (uint64_t *)out;
    const uint64_t *b = (const uint64_t *)&other;

    keng_counts_get(api->counts, level, index, window, out);
    if (!api->cluster)
        return;
    keng_counts_get(keng_cluster_counts(api->cluster), level, index, window, &other);
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        a[i] += b[i];
}

/* For a board whose units another instance owns: "owner" (of its incidents, else of its
 * mediations) and "owners" by kind, each {"instance", "url"}. */
static void add_owners(const keng_api_t *api, uint32_t board, json_t *out)
{
    json_t *owners = NULL, *first = NULL;

    for (int kind = 0; api->cluster && kind < KENG_KIND_COUNT; kind++) {
        const char *instance, *url;
        if (!keng_cluster_owner(api->cluster, board, (keng_kind_t)kind, &instance, &url))
            continue;
        json_t *o = json_pack("{s:s,s:s}", "instance", instance, "url", url);
        if (!owners)
            owners = json_object();
        if (!first)
            first = json_incref(o);
        json_object_set_new(owners, keng_kind_name((keng_kind_t)kind), o);
    }
    if (first) {
        json_object_set_new(out, "owner", first);
        json_object_set_new(out, "owners", owners);
    }
}

/* The counts answer of one scope; the caller owns the reference. */
static json_t *counts_json(const keng_api_t *api, keng_level_t level, uint32_t index)
{
    char as_of[32];
    const char *id, *name;
    json_t *windows = json_object();
    json_t *out;

    for (int w = 0; w < KENG_WIN_COUNT; w++) {
        keng_tally_t t;
        scope_tally(api, level, index, (keng_window_id_t)w, &t);
        json_object_set_new(windows, keng_window_names[w], tally_json(&t));
    }
    keng_scope_names(api->reg, level, index, &id, &name);
    out = json_pack("{s:s,s:s,s:s,s:s,s:o}", "level", keng_level_names[level], "id", id, "name",
                    name, "as_of", keng_time_format_utc(api_now(api), as_of, sizeof(as_of)),
                    "windows", windows);
    if (level == KENG_LEVEL_BOARD) {
        const keng_board_t *b = keng_registry_board(api->reg, index);
        json_object_set_new(out, "commune_id",
                            json_string(keng_registry_commune(api->reg, b->commune)->id));
        json_object_set_new(out, "district_id",
                            json_string(keng_registry_district(api->reg, b->district)->id));
        add_owners(api, index, out);
    } else if (level == KENG_LEVEL_COMMUNE) {
        const keng_commune_t *c = keng_registry_commune(api->reg, index);
        json_object_set_new(out, "district_id",
                            json_string(keng_registry_district(api->reg, c->district)->id));
    }
    return out;
}

static void get_counts(keng_api_t *api, keng_http_request_t *req)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    keng_level_t level;
    int32_t index;
    char msg[256];

    if (!level_s || parse_level(level_s, &level) != 0) {
        snprintf(msg, sizeof(msg),
                 "level must be one of board, commune, district, province (got '%s')",
                 level_s ? level_s : "");
        respond_error(api, req, 400, msg);
        return;
    }
    if (!id || !*id) {
        if (level != KENG_LEVEL_PROVINCE) {
            snprintf(msg, sizeof(msg), "id is required for level %s", level_s);
            respond_error(api, req, 400, msg);
            return;
        }
        id = KENG_PROVINCE_ID;
    }
    if (id_param(api, req, id) != 0)
        return;
    index = keng_scope_find(api->reg, level, id);
    if (index < 0) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry", level_s, id);
        respond_error(api, req, 404, msg);
        return;
    }
    respond_json(api, req, 200, counts_json(api, level, (uint32_t)index));
}

typedef struct ranked {
    uint32_t index;
    uint64_t count;
} ranked_t;

static int rank_cmp(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;

    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* The scope with this id at the district, commune or province level. Returns 0 or -1. */
static int find_any_scope(const keng_api_t *api, const char *id, keng_level_t *level,
                          uint32_t *index)
{
    for (int l = KENG_LEVEL_COMMUNE; l <= KENG_LEVEL_PROVINCE; l++) {
        int32_t i = keng_scope_find(api->reg, (keng_level_t)l, id);
        if (i >= 0) {
            *level = (keng_level_t)l;
            *index = (uint32_t)i;
            return 0;
        }
    }
    return -1;
}

/* Whether the scope (level, index) lies in the scope (outer, outer_index), itself included. */
static bool scope_within(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                         keng_level_t outer, uint32_t outer_index)
{
    if (outer == KENG_LEVEL_PROVINCE)
        return true;
    if (level == outer)
        return index == outer_index;
    if (level > outer)
        return false;
    switch (level) {
    case KENG_LEVEL_BOARD: {
        const keng_board_t *b = keng_registry_board(reg, index);
        return outer == KENG_LEVEL_COMMUNE ? b->commune == outer_index : b->district == outer_index;
    }
    case KENG_LEVEL_COMMUNE:
        return keng_registry_commune(reg, index)->district == outer_index;
    default:
        return false;
    }
}

static void get_top(keng_api_t *api, keng_http_request_t *req)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *window_s = keng_http_request_query(req, "window");
    const char *kind_s = keng_http_request_query(req, "kind");
    const char *limit_s = keng_http_request_query(req, "limit");
    const char *within_s = keng_http_request_query(req, "within");
    keng_level_t level = KENG_LEVEL_BOARD, within_level = KENG_LEVEL_PROVINCE;
    uint32_t within = 0;
    keng_window_id_t window = KENG_WIN_24H;
    keng_kind_t kind = KENG_KIND_INCIDENT;
    long limit = TOP_DEFAULT;
    char msg[256], as_of[32];

    if (level_s && parse_level(level_s, &level) != 0) {
        snprintf(msg, sizeof(msg),
                 "level must be one of board, commune, district, province (got '%.32s')", level_s);
        respond_error(api, req, 400, msg);
        return;
    }
    if (window_param(api, req, window_s, &window) != 0)
        return;
    if (kind_s && keng_kind_parse(kind_s, &kind) != 0) {
        snprintf(msg, sizeof(msg), "kind must be incident or mediation (got '%.32s')", kind_s);
        respond_error(api, req, 400, msg);
        return;
    }
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (end == limit_s || *end || limit < 1 || limit > TOP_MAX) {
            snprintf(msg, sizeof(msg), "limit must be a number from 1 to %d (got '%.32s')", TOP_MAX,
                     limit_s);
            respond_error(api, req, 400, msg);
            return;
        }
    }
    if (within_s && *within_s && find_any_scope(api, within_s, &within_level, &within) != 0) {
        snprintf(msg, sizeof(msg), "within: no district, commune or province with id '%.64s'",
                 within_s);
        respond_error(api, req, 404, msg);
        return;
    }
    if (within_s && *within_s && within_level <= level) {
        snprintf(msg, sizeof(msg), "within must be a scope above the level %s (got the %s '%.64s')",
                 keng_level_names[level], keng_level_names[within_level], within_s);
        respond_error(api, req, 400, msg);
        return;
    }

    size_t n = keng_scope_count(api->reg, level), used = 0;
    ranked_t *ranks = malloc((n ? n : 1) * sizeof(*ranks));
    if (!ranks) {
        respond_error(api, req, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keng_tally_t t;
        if (!scope_within(api->reg, level, (uint32_t)i, within_level, within))
            continue;
        scope_tally(api, level, (uint32_t)i, window, &t);
        uint64_t v = kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations;
        if (v > 0)
            ranks[used++] = (ranked_t){.index = (uint32_t)i, .count = v};
    }
    qsort(ranks, used, sizeof(*ranks), rank_cmp);
    json_t *items = json_array();
    for (size_t i = 0; i < used && i < (size_t)limit; i++) {
        const char *id, *name;
        keng_scope_names(api->reg, level, ranks[i].index, &id, &name);
        json_array_append_new(items, json_pack("{s:s,s:s,s:I}", "id", id, "name", name, "count",
                                               (json_int_t)ranks[i].count));
    }
    free(ranks);
    const char *within_id, *within_name;
    keng_scope_names(api->reg, within_level, within, &within_id, &within_name);
    respond_json(api, req, 200,
                 json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:o}", "level",
                           keng_level_names[level], "window", keng_window_names[window], "kind",
                           keng_kind_name(kind), "as_of",
                           keng_time_format_utc(api_now(api), as_of, sizeof(as_of)), "within",
                           "level", keng_level_names[within_level], "id", within_id, "name",
                           within_name, "items", items));
}

/* The index of the scope that contains the child at index (a board's commune, a commune's
 * district, a district's province). */
static uint32_t parent_index(const keng_registry_t *reg, keng_level_t child, uint32_t index)
{
    switch (child) {
    case KENG_LEVEL_BOARD:
        return keng_registry_board(reg, index)->commune;
    case KENG_LEVEL_COMMUNE:
        return keng_registry_commune(reg, index)->district;
    default:
        return 0;
    }
}

/* The scopes one level below a scope, each with its tally over one window, in registry
 * order: the province's districts, a district's communes or a commune's boards in one
 * answer, for the dashboard's drill-down tables. */
static void get_children(keng_api_t *api, keng_http_request_t *req)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    const char *window_s = keng_http_request_query(req, "window");
    keng_level_t level = KENG_LEVEL_PROVINCE, child;
    keng_window_id_t window = KENG_WIN_24H;
    const char *parent_id, *parent_name;
    char msg[256], as_of[32];
    int32_t index;

    if (level_s && (parse_level(level_s, &level) != 0 || level == KENG_LEVEL_BOARD)) {
        snprintf(msg, sizeof(msg), "level must be one of province, district, commune (got '%.32s')",
                 level_s);
        respond_error(api, req, 400, msg);
        return;
    }
    if (window_param(api, req, window_s, &window) != 0)
        return;
    if (!id || !*id) {
        if (level != KENG_LEVEL_PROVINCE) {
            snprintf(msg, sizeof(msg), "id is required for level %s", keng_level_names[level]);
            respond_error(api, req, 400, msg);
            return;
        }
        id = KENG_PROVINCE_ID;
    }
    if (id_param(api, req, id) != 0)
        return;
    index = keng_scope_find(api->reg, level, id);
    if (index < 0) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry", keng_level_names[level],
                 id);
        respond_error(api, req, 404, msg);
        return;
    }
    child = (keng_level_t)(level - 1);
    json_t *items = json_array();
    size_t n = keng_scope_count(api->reg, child);
    for (uint32_t i = 0; i < n; i++) {
        const char *child_id, *child_name;
        keng_tally_t t;
        json_t *item;

        if (parent_index(api->reg, child, i) != (uint32_t)index)
            continue;
        scope_tally(api, child, i, window, &t);
        keng_scope_names(api->reg, child, i, &child_id, &child_name);
        item = tally_json(&t);
        json_object_set_new(item, "id", json_string(child_id));
        json_object_set_new(item, "name", json_string(child_name));
        json_array_append_new(items, item);
    }
    keng_scope_names(api->reg, level, (uint32_t)index, &parent_id, &parent_name);
    respond_json(api, req, 200,
                 json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:s,s:o}", "level", keng_level_names[child],
                           "parent", "level", keng_level_names[level], "id", parent_id, "name",
                           parent_name, "window", keng_window_names[window], "as_of",
                           keng_time_format_utc(api_now(api), as_of, sizeof(as_of)), "items",
                           items));
}

/* ---- silent boards and series ---- */

/* The ?level= and ?id= of a request (level defaults to the province). Returns 0, or -1
 * after answering 400 or 404. */
static int scope_param(keng_api_t *api, keng_http_request_t *req, keng_level_t *level,
                       uint32_t *index)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    char msg[256];
    int32_t i;

    *level = KENG_LEVEL_PROVINCE;
    if (level_s && parse_level(level_s, level) != 0) {
        snprintf(msg, sizeof(msg),
                 "level must be one of board, commune, district, province (got '%.32s')", level_s);
        respond_error(api, req, 400, msg);
        return -1;
    }
    if (!id || !*id) {
        if (*level != KENG_LEVEL_PROVINCE) {
            snprintf(msg, sizeof(msg), "id is required for level %s", keng_level_names[*level]);
            respond_error(api, req, 400, msg);
            return -1;
        }
        id = KENG_PROVINCE_ID;
    }
    i = keng_scope_find(api->reg, *level, id);
    if (i < 0) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry",
                 keng_level_names[*level], id);
        respond_error(api, req, 404, msg);
        return -1;
    }
    *index = (uint32_t)i;
    return 0;
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
        if (!scope_within(api->reg, level, i, scope_level, scope) &&
            !scope_within(api->reg, scope_level, scope, level, i))
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
static void get_silent(keng_api_t *api, keng_http_request_t *req)
{
    const char *days_s = keng_http_request_query(req, "days");
    const char *limit_s = keng_http_request_query(req, "limit");
    keng_silent_view_t v = {api->counts, api->cluster ? keng_cluster_counts(api->cluster) : NULL,
                            api->silent.start_ms};
    keng_level_t level;
    uint32_t index;
    int days = api->silent.days;
    long limit = SILENT_LIST_DEFAULT;
    int64_t now = api_now(api);
    char msg[256], as_of[32];

    if (scope_param(api, req, &level, &index) != 0)
        return;
    if (days_s && keng_silent_parse_days(days_s, &days) != 0) {
        snprintf(msg, sizeof(msg), "days must be a whole number from 1 to %d (got '%.32s')",
                 KENG_SILENT_DAYS_MAX, days_s);
        respond_error(api, req, 400, msg);
        return;
    }
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (end == limit_s || *end || limit < 0 || limit > SILENT_LIST_MAX) {
            snprintf(msg, sizeof(msg), "limit must be a number from 0 to %d (got '%.32s')",
                     SILENT_LIST_MAX, limit_s);
            respond_error(api, req, 400, msg);
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
        respond_error(api, req, 500, "out of memory");
        return;
    }
    uint32_t *c_boards = counts, *c_silent = counts + ncommunes;
    uint32_t *d_boards = counts + 2 * ncommunes, *d_silent = d_boards + ndistricts;
    size_t nsilent = 0, total = 0;
    for (uint32_t b = 0; b < nboards; b++) {
        const keng_board_t *board = keng_registry_board(api->reg, b);
        if (!scope_within(api->reg, KENG_LEVEL_BOARD, b, level, index))
            continue;
        int64_t d = keng_silent_days(&v, b, now);
        bool silent = d >= days;
        total++;
        c_boards[board->commune]++;
        d_boards[board->district]++;
        if (!silent)
            continue;
        c_silent[board->commune]++;
        d_silent[board->district]++;
        items[nsilent++] = (silent_item_t){b, keng_silent_last_event(&v, b), d};
    }
    qsort(items, nsilent, sizeof(*items), silent_cmp);
    json_t *list = json_array();
    for (size_t i = 0; i < nsilent && i < (size_t)limit; i++) {
        const keng_board_t *board = keng_registry_board(api->reg, items[i].board);
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:s,s:s,s:o,s:I}", "id", board->id, "name", board->name,
                            "commune_id", keng_registry_commune(api->reg, board->commune)->id,
                            "district_id", keng_registry_district(api->reg, board->district)->id,
                            "last_event", time_or_null(items[i].last), "silent_days",
                            (json_int_t)items[i].days));
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
    respond_json(api, req, 200, out);
}

/* The start of the hour or the Asia/Ho_Chi_Minh day (step) that holds ms. */
static int64_t local_floor(int64_t ms, int64_t step)
{
    int64_t local = ms + KENG_LOCAL_OFFSET_MS;
    int64_t q = local / step - (local % step < 0);

    return q * step - KENG_LOCAL_OFFSET_MS;
}

/* Counts of one kind over a window, per hour or per day (Asia/Ho_Chi_Minh days), from the
 * buckets the window's count is made of: the points add up to the window's count. */
static void get_series(keng_api_t *api, keng_http_request_t *req)
{
    const char *kind_s = keng_http_request_query(req, "kind");
    const char *window_s = keng_http_request_query(req, "window");
    const char *step_s = keng_http_request_query(req, "step");
    keng_kind_t kind = KENG_KIND_INCIDENT;
    keng_window_id_t window = KENG_WIN_24H;
    keng_level_t level;
    uint32_t index;
    int64_t step, now = api_now(api);
    char msg[256], buf[40];

    if (scope_param(api, req, &level, &index) != 0)
        return;
    if (kind_s && keng_kind_parse(kind_s, &kind) != 0) {
        snprintf(msg, sizeof(msg), "kind must be incident or mediation (got '%.32s')", kind_s);
        respond_error(api, req, 400, msg);
        return;
    }
    if (window_s &&
        (parse_window(window_s, &window) != 0 ||
         (window != KENG_WIN_24H && window != KENG_WIN_30D && window != KENG_WIN_365D))) {
        snprintf(msg, sizeof(msg), "window must be one of 24h, 30d, 365d (got '%.32s')", window_s);
        respond_error(api, req, 400, msg);
        return;
    }
    step = window == KENG_WIN_24H ? 3600000LL : KENG_DAY_MS;
    if (step_s && strcmp(step_s, "1h") != 0 && strcmp(step_s, "1d") != 0) {
        snprintf(msg, sizeof(msg), "step must be 1h or 1d (got '%.32s')", step_s);
        respond_error(api, req, 400, msg);
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
        respond_error(api, req, 400, msg);
        return;
    }
    uint64_t *points = calloc((size_t)npoints, sizeof(uint64_t));
    if (!points) {
        respond_error(api, req, 500, "out of memory");
        return;
    }
    keng_counts_series_add(api->counts, level, index, kind, window, origin, step, points,
                           (size_t)npoints);
    if (other)
        keng_counts_series_add(other, level, index, kind, window, origin, step, points,
                               (size_t)npoints);
    keng_tally_t t;
    scope_tally(api, level, index, window, &t);
    json_t *list = json_array();
    for (int64_t i = 0; i < npoints; i++)
        json_array_append_new(list,
                              json_pack("{s:s,s:I}", "t",
                                        keng_time_format_local(origin + i * step, buf, sizeof(buf)),
                                        "count", (json_int_t)points[i]));
    free(points);
    const char *id, *name;
    keng_scope_names(api->reg, level, index, &id, &name);
    respond_json(
        api, req, 200,
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:o}", "level", keng_level_names[level],
                  "id", id, "name", name, "kind", keng_kind_name(kind), "window",
                  keng_window_names[window], "step", step == KENG_DAY_MS ? "1d" : "1h", "as_of",
                  keng_time_format_utc(clock, buf, sizeof(buf)), "from", time_or_null(from),
                  "total", (json_int_t)(kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations),
                  "points", list));
}

static void add_alert(const keng_alert_t *t, void *arg)
{
    json_array_append_new(arg, keng_alerts_json(t));
}

static void get_alerts(keng_api_t *api, keng_http_request_t *req)
{
    const char *status = keng_http_request_query(req, "status");

    if (status && strcmp(status, "firing") != 0 && strcmp(status, "resolved") != 0) {
        respond_error(api, req, 400, "status must be firing or resolved");
        return;
    }
    json_t *list = json_array();
    if (api->alerts)
        keng_alerts_each(api->alerts,
                         status && strcmp(status, "resolved") == 0 ? KENG_ALERT_RESOLVED
                                                                   : KENG_ALERT_FIRING,
                         add_alert, list);
    respond_json(api, req, 200, json_pack("{s:o}", "alerts", list));
}

static void get_readyz(keng_api_t *api, keng_http_request_t *req)
{
    char reason[256];

    if (!api->consumer) {
        respond_json(api, req, 503,
                     json_pack("{s:s,s:s}", "status", "starting", "reason",
                               "the consumer is not running (starting or stopping)"));
        return;
    }
    if (!keng_consumer_ready(api->consumer, reason, sizeof(reason))) {
        respond_json(api, req, 503,
                     json_pack("{s:s,s:s}", "status", "catching up", "reason", reason));
        return;
    }
    respond_json(api, req, 200, json_pack("{s:s}", "status", "ready"));
}

/* ---- metrics ---- */

typedef struct metrics_ctx {
    FILE *out;
    const char *seen[32];
    size_t nseen;
} metrics_ctx_t;

static void metric_reason(const char *reason, uint64_t count, void *arg)
{
    metrics_ctx_t *m = arg;

    fprintf(m->out, "keng_deadletter_total{reason=\"%s\"} %" PRIu64 "\n", reason, count);
    if (m->nseen < 32)
        m->seen[m->nseen++] = reason;
}

static void metric_lag(const char *topic, int32_t partition, int64_t lag, void *arg)
{
    metrics_ctx_t *m = arg;

    fprintf(m->out, "keng_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"} %" PRId64 "\n",
            topic, partition, lag);
}

static void metrics_alerts(const keng_api_t *api, FILE *out)
{
    keng_alerts_stats_t as = {0};

    if (api->alerts)
        keng_alerts_stats(api->alerts, &as);
    fprintf(out,
            "# HELP keng_alerts_firing Alerts firing now.\n"
            "# TYPE keng_alerts_firing gauge\n"
            "keng_alerts_firing %" PRIu64 "\n"
            "# HELP keng_alert_transitions_total Alert transitions emitted since the process "
            "started, by status.\n"
            "# TYPE keng_alert_transitions_total counter\n"
            "keng_alert_transitions_total{status=\"firing\"} %" PRIu64 "\n"
            "keng_alert_transitions_total{status=\"resolved\"} %" PRIu64 "\n",
            as.firing, as.transitions[KENG_ALERT_FIRING], as.transitions[KENG_ALERT_RESOLVED]);
}

static void get_metrics(keng_api_t *api, keng_http_request_t *req, keng_http_server_t *srv)
{
    char *buf = NULL;
    size_t len = 0;
    keng_consumer_stats_t st = {0};
    metrics_ctx_t m = {0};
    char reason[256];

    m.out = open_memstream(&buf, &len);
    if (!m.out) {
        respond_error(api, req, 500, "out of memory");
        return;
    }
    if (api->consumer)
        keng_consumer_stats(api->consumer, &st);
    count_status(api, 200); /* this answer is part of the numbers it reports */
    fprintf(m.out,
            "# HELP keng_events_counted_total Events counted since the process started.\n"
            "# TYPE keng_events_counted_total counter\n"
            "keng_events_counted_total %" PRIu64 "\n"
            "# HELP keng_duplicates_dropped_total Events not counted because their id was "
            "already counted.\n"
            "# TYPE keng_duplicates_dropped_total counter\n"
            "keng_duplicates_dropped_total %" PRIu64 "\n"
            "# HELP keng_deadletter_total Messages sent to the dead-letter topic, by reason.\n"
            "# TYPE keng_deadletter_total counter\n",
            st.counted, st.duplicates);
    if (api->consumer)
        keng_consumer_each_deadletter(api->consumer, metric_reason, &m);
    for (size_t i = 0; i < sizeof(known_reasons) / sizeof(known_reasons[0]); i++) {
        bool seen = false;
        for (size_t j = 0; j < m.nseen; j++)
            seen = seen || strcmp(m.seen[j], known_reasons[i]) == 0;
        if (!seen)
            fprintf(m.out, "keng_deadletter_total{reason=\"%s\"} 0\n", known_reasons[i]);
    }
    fprintf(m.out, "# HELP keng_consumer_lag Messages between the high watermark and the next "
                   "offset to count.\n"
                   "# TYPE keng_consumer_lag gauge\n");
    if (api->consumer)
        keng_consumer_each_partition(api->consumer, metric_lag, &m);
    fprintf(m.out,
            "# HELP keng_checkpoint_seconds Duration of the last checkpoint.\n"
            "# TYPE keng_checkpoint_seconds gauge\n"
            "keng_checkpoint_seconds %.6f\n"
            "# HELP keng_checkpoints_total Checkpoints written since the process started.\n"
            "# TYPE keng_checkpoints_total counter\n"
            "keng_checkpoints_total %" PRIu64 "\n"
            "# HELP keng_dedup_ids Event ids remembered for deduplication.\n"
            "# TYPE keng_dedup_ids gauge\n"
            "keng_dedup_ids %zu\n"
            "# HELP keng_ready 1 once caught up with the topics.\n"
            "# TYPE keng_ready gauge\n"
            "keng_ready %d\n"
            "# HELP keng_http_connections Open HTTP connections.\n"
            "# TYPE keng_http_connections gauge\n"
            "keng_http_connections %u\n"
            "# HELP keng_http_requests_total HTTP requests answered, by status.\n"
            "# TYPE keng_http_requests_total counter\n",
            st.last_checkpoint_seconds, st.checkpoints, keng_counts_dedup_size(api->counts),
            api->consumer && keng_consumer_ready(api->consumer, reason, sizeof(reason)),
            srv ? keng_http_server_connections(srv) : 0u);
    for (int i = 0; i < STATUS_SLOTS && api->statuses[i].status; i++)
        fprintf(m.out, "keng_http_requests_total{status=\"%d\"} %" PRIu64 "\n",
                api->statuses[i].status, api->statuses[i].count);
    if (srv)
        keng_http_server_write_metrics(srv, m.out);
    metrics_alerts(api, m.out);
    if (api->more_metrics)
        api->more_metrics(m.out, api->more_metrics_arg);
    fclose(m.out);
    keng_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
}

/* ---- Server-Sent Events ---- */

/* The province's totals per window: what the stream sends when it changes. */
static char *province_event(const keng_api_t *api)
{
    json_t *j = counts_json(api, KENG_LEVEL_PROVINCE, 0);
    json_t *windows = json_object_get(j, "windows");
    char *without_time, *text;

    /* Compare without as_of, which changes every second even when nothing else does. */
    json_t *cmp = json_pack("{s:O}", "windows", windows);
    without_time = json_dumps(cmp, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cmp);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!without_time || !text) {
        free(without_time);
        free(text);
        return NULL;
    }
    /* "<windows>\n<full>": the key and the payload in one allocation. */
    size_t a = strlen(without_time), b = strlen(text);
    char *out = malloc(a + b + 2);
    if (out) {
        memcpy(out, without_time, a);
        out[a] = '\n';
        memcpy(out + a + 1, text, b + 1);
    }
    free(without_time);
    free(text);
    return out;
}

static void stream_write_all(keng_api_t *api, const char *data, size_t len)
{
    /* From the end: a stream that fails is removed by swapping the last one into its slot,
     * which has already been written. */
    for (size_t i = api->nstreams; i-- > 0;) {
        if (i < api->nstreams)
            keng_http_stream_write(api->streams[i]->req, data, len);
    }
}

static void send_counts(keng_api_t *api, keng_http_request_t *only, bool force)
{
    char *ev = province_event(api);
    char *full, *frame = NULL;
    size_t key_len;

    if (!ev)
        return;
    full = strchr(ev, '\n');
    key_len = (size_t)(full - ev);
    full++;
    if (!force && api->last_sent && strlen(api->last_sent) == key_len &&
        memcmp(api->last_sent, ev, key_len) == 0) {
        free(ev);
        return;
    }
    if (asprintf(&frame, "event: counts\ndata: %s\n\n", full) < 0) {
        free(ev);
        return;
    }
    if (only) {
        keng_http_stream_write(only, frame, strlen(frame));
    } else {
        stream_write_all(api, frame, strlen(frame));
        ev[key_len] = '\0';
        free(api->last_sent);
        api->last_sent = strdup(ev);
        api->last_sent_ms = keng_monotonic_ms();
    }
    free(frame);
    free(ev);
}

static void on_stream_timer(uv_timer_t *timer)
{
    keng_api_t *api = timer->data;

    if (api->nstreams == 0)
        return;
    send_counts(api, NULL, false);
    if (keng_monotonic_ms() - api->last_sent_ms >= STREAM_HEARTBEAT_MS) {
        static const char beat[] = ": keep-alive\n\n";
        stream_write_all(api, beat, sizeof(beat) - 1);
        api->last_sent_ms = keng_monotonic_ms();
    }
}

/* The API goes once its timer is closed and no stream can call back into it. */
static void maybe_free(keng_api_t *api)
{
    if (!api->timer_closed || api->nstreams > 0)
        return;
    free(api->streams);
    free(api->last_sent);
    free(api);
}

static void on_stream_close(void *arg)
{
    stream_t *s = arg;
    keng_api_t *api = s->api;

    for (size_t i = 0; i < api->nstreams; i++) {
        if (api->streams[i] == s) {
            api->streams[i] = api->streams[--api->nstreams];
            break;
        }
    }
    free(s);
    maybe_free(api);
}

static int streams_reserve(keng_api_t *api)
{
    size_t cap;
    stream_t **p;

    if (api->nstreams < api->streams_cap)
        return 0;
    cap = api->streams_cap ? api->streams_cap * 2 : 8;
    p = realloc(api->streams, cap * sizeof(*p));
    if (!p)
        return -1;
    api->streams = p;
    api->streams_cap = cap;
    return 0;
}

static void get_stream(keng_api_t *api, keng_http_request_t *req)
{
    stream_t *s = calloc(1, sizeof(*s));

    if (!s || streams_reserve(api) != 0) {
        free(s);
        respond_error(api, req, 503, "out of memory for another stream");
        return;
    }
    /* keng_http_stream_begin sends Cache-Control: no-cache itself. */
    int rc = keng_http_stream_begin(req, "text/event-stream");
    if (rc != 0) {
        free(s);
        /* At http.max_streams; after -ENOTCONN the answer is dropped. */
        if (rc == -EBUSY)
            keng_http_request_add_header(req, "Retry-After", "5");
        respond_error(api, req, 503,
                      rc == -EBUSY ? "too many streams are open; retry later"
                                   : "the stream could not be started");
        return;
    }
    count_status(api, 200);
    s->api = api;
    s->req = req;
    api->streams[api->nstreams++] = s;
    keng_http_stream_on_close(req, on_stream_close, s);
    send_counts(api, req, true);
}

/* ---- routing ---- */

void keng_api_handle(keng_http_request_t *req, void *ctx)
{
    keng_api_t *api = ctx;
    const char *method = keng_http_request_method(req);
    const char *path = keng_http_request_path(req);

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        keng_http_request_add_header(req, "Allow", "GET, HEAD");
        respond_error(api, req, 405, "only GET is supported");
        return;
    }
    if (strcmp(path, "/v1/counts") == 0)
        get_counts(api, req);
    else if (strcmp(path, "/v1/top") == 0)
        get_top(api, req);
    else if (strcmp(path, "/v1/alerts") == 0)
        get_alerts(api, req);
    else if (strcmp(path, "/v1/stream") == 0)
        get_stream(api, req);
    else if (strcmp(path, "/healthz") == 0)
        respond_text(api, req, 200, "text/plain; charset=utf-8", "ok\n", 3);
    else if (strcmp(path, "/readyz") == 0)
        get_readyz(api, req);
    else if (strcmp(path, "/metrics") == 0)
        get_metrics(api, req, api->srv);
    else if (strcmp(path, "/v1/children") == 0)
        get_children(api, req);
    else if (strcmp(path, "/v1/silent") == 0)
        get_silent(api, req);
    else if (strcmp(path, "/v1/series") == 0)
        get_series(api, req);
    else if (strcmp(path, "/") == 0) {
        /* no-cache: a new build's page shows on the next load, not after a cache expiry. */
        keng_http_request_add_header(req, "Cache-Control", "no-cache");
        respond_text(api, req, 200, "text/html; charset=utf-8", keng_dashboard_html,
                     sizeof(keng_dashboard_html) - 1);
    } else
        respond_error(api, req, 404, "no such endpoint");
}

keng_api_t *keng_api_new(uv_loop_t *loop, const keng_registry_t *reg, const keng_counts_t *counts)
{
    keng_api_t *api = calloc(1, sizeof(*api));

    if (!api)
        return NULL;
    api->reg = reg;
    api->counts = counts;
    api->silent.days = KENG_SILENT_DAYS_DEFAULT;
    api->silent.start_ms = INT64_MIN;
    uv_timer_init(loop, &api->timer);
    api->timer.data = api;
    uv_timer_start(&api->timer, on_stream_timer, STREAM_INTERVAL_MS, STREAM_INTERVAL_MS);
    return api;
}

void keng_api_set_consumer(keng_api_t *api, keng_consumer_t *consumer)
{
    api->consumer = consumer;
}

void keng_api_set_silent(keng_api_t *api, const keng_silent_options_t *opt)
{
    api->silent = *opt;
}

void keng_api_set_cluster(keng_api_t *api, const keng_cluster_t *cluster)
{
    api->cluster = cluster;
}

void keng_api_set_server(keng_api_t *api, keng_http_server_t *srv)
{
    api->srv = srv;
    keng_http_server_set_error_body(srv, server_error_body);
}

void keng_api_set_alerts(keng_api_t *api, const keng_alerts_t *alerts,
                         const keng_alertlog_t *alertlog)
{
    api->alerts = alerts;
    api->alertlog = alertlog;
}

void keng_api_push_alert(keng_api_t *api, const char *json)
{
    char *frame = NULL;

    if (api->closing || api->nstreams == 0)
        return;
    if (asprintf(&frame, "event: alert\ndata: %s\n\n", json) < 0)
        return;
    stream_write_all(api, frame, strlen(frame));
    free(frame);
}

static void on_timer_closed(uv_handle_t *handle)
{
    keng_api_t *api = handle->data;

    api->timer_closed = true;
    maybe_free(api);
}

void keng_api_close(keng_api_t *api)
{
    if (!api || api->closing)
        return;
    api->closing = true;
    api->consumer = NULL;
    uv_timer_stop(&api->timer);
    /* Each stream's on_stream_close takes it out of the array, now or later. */
    for (size_t i = api->nstreams; i-- > 0;) {
        if (i < api->nstreams)
            keng_http_stream_end(api->streams[i]->req);
    }
    uv_close((uv_handle_t *)&api->timer, on_timer_closed);
}

void keng_api_set_more_metrics(keng_api_t *api, void (*fn)(FILE *out, void *arg), void *arg)
{
    api->more_metrics = fn;
    api->more_metrics_arg = arg;
}
