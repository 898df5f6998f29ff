/* The HTTP routes of keng-aggregate, their routing and the live stream (/v1/silent and
 * /v1/series are in api_silent.c, /metrics in api_metrics.c). Answers are computed from the
 * counts on the loop thread, so every answer is a consistent snapshot; a route never changes a
 * count (only GET and HEAD are answered). */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dashboard_html.h" /* keng_dashboard_html, from consumers/aggregate/dashboard.html */
#include "kafka_denied.h"
#include "log.h"
#include "silent.h"
#include "timeutil.h"

void keng_api__count_status(keng_api_t *api, int status)
{
    for (int i = 0; i < STATUS_SLOTS; i++) {
        if (api->statuses[i].status == status || api->statuses[i].status == 0) {
            api->statuses[i].status = status;
            api->statuses[i].count++;
            return;
        }
    }
}

void keng_api__respond_json(keng_api_t *api, keng_http_request_t *req, int status, json_t *body)
{
    keng_api__count_status(api, status);
    keng_http_respond_json(req, status, body);
}

void keng_api__respond_error(keng_api_t *api, keng_http_request_t *req, int status,
                             const char *message)
{
    json_t *body = json_pack("{s:s}", "error", message);

    /* A message that quotes a parameter is not JSON text when the parameter is not UTF-8. */
    if (!body)
        body = json_pack("{s:s}", "error", "a query parameter is not valid UTF-8");
    keng_api__respond_json(api, req, status, body);
}

/* The body of an error the HTTP server answers by itself, in the shape of the API's own
 * errors, and counted with them. */
static json_t *server_error_body(int status, const char *message, void *ctx)
{
    keng_api__count_status(ctx, status);
    return json_pack("{s:s}", "error", message);
}

/* Ids are keng's one alphabet (registry.h, KENG_UNIT_ID_RULE), as the registry loader takes
 * them. Returns 0, or -1 after answering 400 for an id with any other byte, which could
 * otherwise be cut short or matched loosely, naming the byte. */
static int id_param(keng_api_t *api, keng_http_request_t *req, const char *id)
{
    char msg[160];
    size_t len = strlen(id);

    for (size_t i = 0; i < len; i++) {
        if (!keng_unit_id_valid(id + i, 1)) {
            snprintf(msg, sizeof(msg), "id may hold only %s (byte 0x%02x at offset %zu)",
                     KENG_UNIT_ID_RULE, (unsigned char)id[i], i);
            keng_api__respond_error(api, req, 400, msg);
            return -1;
        }
    }
    if (!keng_unit_id_valid(id, len)) {
        snprintf(msg, sizeof(msg), "id must be %s", KENG_UNIT_ID_RULE);
        keng_api__respond_error(api, req, 400, msg);
        return -1;
    }
    return 0;
}

static void respond_text(keng_api_t *api, keng_http_request_t *req, int status,
                         const char *content_type, const char *body, size_t len)
{
    keng_api__count_status(api, status);
    keng_http_respond(req, status, content_type, body, len);
}

int64_t keng_api__now(const keng_api_t *api)
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

int keng_api__parse_level(keng_api_t *api, keng_http_request_t *req, const keng_registry_t *reg,
                          const char *s, keng_level_t *out, bool boards)
{
    char msg[160];

    if (s && keng_level_parse(reg, s, out) == 0 && (boards || *out != KENG_LEVEL_BOARD))
        return 0;
    /* The registry's levels, so that a district asked of the two-tier province says so. */
    const char *levels = keng_registry_level_list(reg);
    snprintf(msg, sizeof(msg), "level must be one of %.*s (got '%.32s')",
             boards ? (int)strlen(levels) : (int)(strlen(levels) - strlen(", board")), levels,
             s ? s : "");
    keng_api__respond_error(api, req, 400, msg);
    return -1;
}

int keng_api__parse_window(const char *s, keng_window_id_t *out)
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

    if (!s || keng_api__parse_window(s, out) == 0)
        return 0;
    snprintf(msg, sizeof(msg), "window must be one of 1h, 24h, 7d, 30d, 365d, all (got '%.32s')",
             s);
    keng_api__respond_error(api, req, 400, msg);
    return -1;
}

/* A scope's tally across the group: this instance's live units plus the latest states the
 * other instances published of theirs (the two sets never overlap). */
void keng_api__scope_tally(const keng_api_t *api, keng_level_t level, uint32_t index,
                           keng_window_id_t window, keng_tally_t *out)
{
    keng_tally_t other;

    keng_counts_get(api->counts, level, index, window, out);
    if (!api->cluster)
        return;
    keng_counts_get(keng_cluster_counts(api->cluster), level, index, window, &other);
    keng_tally_add(out, &other);
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

/* Counts that retention left incomplete (consumer.h, keng_consumer_incomplete), said in the
 * answer, never silently: how many of the scope's boards, before when, and which windows. */
static void add_incomplete(const keng_api_t *api, keng_level_t level, uint32_t index, json_t *out)
{
    int64_t before, now = keng_api__now(api);
    size_t boards;
    char when[32];

    if (!api->consumer || !keng_consumer_incomplete(api->consumer, level, index, &before, &boards))
        return;
    json_t *windows = json_array();
    for (int w = 0; w < KENG_WIN_COUNT; w++)
        if (keng_window_length_ms[w] == 0 || now - keng_window_length_ms[w] < before)
            json_array_append_new(windows, json_string(keng_window_names[w]));
    json_object_set_new(out, "incomplete",
                        json_pack("{s:I,s:s,s:o,s:s}", "boards", (json_int_t)boards,
                                  "events_before", keng_time_format_utc(before, when, sizeof(when)),
                                  "windows", windows, "reason",
                                  "the topics' retention had deleted events of these boards "
                                  "before keng-aggregate read them to rebuild their counts"));
}

/* Sets "formerly" on a unit's answer (the names the lineage gives its predecessors), when it
 * has any. */
static void add_formerly(const keng_api_t *api, json_t *unit, const char *id)
{
    const char *names[64];
    size_t n = keng_lineage_formerly(api->lineage, id, names, 64);

    if (n == 0)
        return;
    json_t *list = json_array();
    for (size_t i = 0; i < n && i < 64; i++)
        json_array_append_new(list, json_string(names[i]));
    json_object_set_new(unit, "formerly", list);
}

/* The counts answer of one scope of u's units; the caller owns the reference. */
static json_t *counts_json(const keng_api_t *api, const keng_api_units_t *u, keng_level_t level,
                           uint32_t index)
{
    const keng_registry_t *reg = u->reg;
    char as_of[32];
    const char *id, *name;
    json_t *windows = json_object();
    json_t *out;
    size_t missing = 0;

    for (int w = 0; w < KENG_WIN_COUNT; w++) {
        keng_tally_t t;
        keng_api__units_tally(api, u, level, index, (keng_window_id_t)w, &t, &missing);
        json_object_set_new(windows, keng_window_names[w], tally_json(&t));
    }
    keng_scope_names(reg, level, index, &id, &name);
    out = json_pack("{s:s,s:s,s:s,s:s,s:o}", "level", keng_level_names[level], "id", id, "name",
                    name, "as_of", keng_time_format_utc(keng_api__now(api), as_of, sizeof(as_of)),
                    "windows", windows);
    if (out)
        add_formerly(api, out, id);
    if (level == KENG_LEVEL_BOARD) {
        const keng_board_t *b = keng_registry_board(reg, index);
        int32_t counted = keng_api__units_counted_board(api, u, index);
        json_object_set_new(out, "commune_id",
                            json_string(keng_registry_commune(reg, b->commune)->id));
        /* The two-tier province has no districts: the key is left out, not null. */
        if (keng_registry_has_districts(reg))
            json_object_set_new(out, "district_id",
                                json_string(keng_registry_district(reg, b->district)->id));
        if (counted >= 0) {
            add_owners(api, (uint32_t)counted, out);
            add_incomplete(api, level, (uint32_t)counted, out);
        }
    } else if (level == KENG_LEVEL_COMMUNE && keng_registry_has_districts(reg)) {
        const keng_commune_t *c = keng_registry_commune(reg, index);
        json_object_set_new(out, "district_id",
                            json_string(keng_registry_district(reg, c->district)->id));
    }
    /* The consumer knows what retention left incomplete by the units it counts under: under
     * as_of it is said for the province and the boards only. */
    if (level != KENG_LEVEL_BOARD && (!u->version || level == KENG_LEVEL_PROVINCE))
        add_incomplete(api, level, index, out);
    keng_api__units_mark(u, missing, out);
    return out;
}

/* The scope of u's units that level and the id parameter name (the province when id is
 * absent or empty). Returns its index, or -1 after answering 400 or 404. */
static int32_t scope_param(keng_api_t *api, keng_http_request_t *req, const keng_api_units_t *u,
                           keng_level_t level, const char *id)
{
    char msg[256];
    int32_t index;

    if (!id || !*id) {
        if (level != KENG_LEVEL_PROVINCE) {
            snprintf(msg, sizeof(msg), "id is required for level %s", keng_level_names[level]);
            keng_api__respond_error(api, req, 400, msg);
            return -1;
        }
        id = KENG_PROVINCE_ID;
    }
    if (id_param(api, req, id) != 0)
        return -1;
    index = keng_scope_find(u->reg, level, id);
    if (index < 0 && u->version) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry version %s",
                 keng_level_names[level], id, u->version);
        keng_api__respond_error(api, req, 404, msg);
    } else if (index < 0) {
        snprintf(msg, sizeof(msg), "no %s with id '%.64s' in the registry", keng_level_names[level],
                 id);
        keng_api__respond_error(api, req, 404, msg);
    }
    return index;
}

static void get_counts(keng_api_t *api, keng_http_request_t *req)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    keng_api_units_t u;
    keng_level_t level;
    int32_t index;

    if (keng_api__units_param(api, req, &u) != 0)
        return;
    /* Without a level, the unit of that id at whichever level has it (an id names one unit):
     * a link or a search knows the id alone, and nothing may guess the level from its form. */
    if (!level_s && id && *id) {
        uint32_t found;
        char msg[160];
        if (id_param(api, req, id) != 0)
            return;
        if (keng_scope_find_any(u.reg, id, KENG_LEVEL_BOARD, &level, &found) != 0) {
            snprintf(msg, sizeof(msg),
                     "no unit with id '%.64s' in the registry (its levels are %s)", id,
                     keng_registry_level_list(u.reg));
            keng_api__respond_error(api, req, 404, msg);
            return;
        }
        index = (int32_t)found;
    } else if (keng_api__parse_level(api, req, u.reg, level_s, &level, true) != 0) {
        return;
    } else {
        index = scope_param(api, req, &u, level, id);
    }
    if (index < 0 || keng_api__units_check_scope(api, req, &u, level, (uint32_t)index) != 0)
        return;
    keng_api__respond_json(api, req, 200, counts_json(api, &u, level, (uint32_t)index));
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

/* Whether the scope (level, index) lies in the scope (outer, outer_index), itself included. */
bool keng_api__scope_within(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                            keng_level_t outer, uint32_t outer_index)
{
    if (outer == KENG_LEVEL_PROVINCE)
        return true;
    if (level == outer)
        return index == outer_index;
    if (level > outer)
        return false;
    return keng_scope_parent(reg, level, index, outer) == outer_index;
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
    keng_api_units_t u;

    if (keng_api__units_param(api, req, &u) != 0)
        return;
    if (level_s && keng_api__parse_level(api, req, u.reg, level_s, &level, true) != 0)
        return;
    if (window_param(api, req, window_s, &window) != 0)
        return;
    if (kind_s && keng_kind_parse(kind_s, &kind) != 0) {
        snprintf(msg, sizeof(msg), "kind must be incident or mediation (got '%.32s')", kind_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (end == limit_s || *end || limit < 1 || limit > TOP_MAX) {
            snprintf(msg, sizeof(msg), "limit must be a number from 1 to %d (got '%.32s')", TOP_MAX,
                     limit_s);
            keng_api__respond_error(api, req, 400, msg);
            return;
        }
    }
    if (within_s && *within_s &&
        keng_scope_find_any(u.reg, within_s, KENG_LEVEL_COMMUNE, &within_level, &within) != 0) {
        snprintf(msg, sizeof(msg), "within: no unit with id '%.64s' at the levels %s", within_s,
                 keng_registry_level_list(u.reg));
        keng_api__respond_error(api, req, 404, msg);
        return;
    }
    if (keng_api__units_check_scope(api, req, &u, within_level, within) != 0)
        return;
    if (within_s && *within_s && within_level <= level) {
        snprintf(msg, sizeof(msg), "within must be a scope above the level %s (got the %s '%.64s')",
                 keng_level_names[level], keng_level_names[within_level], within_s);
        keng_api__respond_error(api, req, 400, msg);
        return;
    }

    size_t n = keng_scope_count(u.reg, level), used = 0, missing_within = 0;
    ranked_t *ranks = malloc((n ? n : 1) * sizeof(*ranks));
    keng_tally_t *tallies = NULL;
    size_t *missing = NULL;
    /* Under as_of the units above the boards are summed from them, all in one pass. */
    if (!ranks || (u.version && level != KENG_LEVEL_BOARD &&
                   keng_api__units_tallies(api, &u, level, window, &tallies, &missing) != 0)) {
        free(ranks);
        keng_api__respond_error(api, req, 500, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keng_tally_t t;
        size_t gone = 0;
        if (!keng_api__scope_within(u.reg, level, (uint32_t)i, within_level, within))
            continue;
        if (tallies) {
            t = tallies[i];
            gone = missing[i];
        } else {
            keng_api__units_tally(api, &u, level, (uint32_t)i, window, &t, &gone);
        }
        missing_within += gone;
        uint64_t v = kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations;
        if (v > 0)
            ranks[used++] = (ranked_t){.index = (uint32_t)i, .count = v};
    }
    free(tallies);
    free(missing);
    qsort(ranks, used, sizeof(*ranks), rank_cmp);
    json_t *items = json_array();
    for (size_t i = 0; i < used && i < (size_t)limit; i++) {
        const char *id, *name;
        json_t *item, *parents = json_array();
        keng_scope_names(u.reg, level, ranks[i].index, &id, &name);
        /* The units above it in the registry drawn, nearest first: where it is, which no
         * reader may work out from the id. */
        for (keng_level_t up = keng_level_above(u.reg, level); up != KENG_LEVEL_PROVINCE;
             up = keng_level_above(u.reg, up)) {
            const char *pid, *pname;
            keng_scope_names(u.reg, up, keng_scope_parent(u.reg, level, ranks[i].index, up), &pid,
                             &pname);
            json_array_append_new(parents, json_pack("{s:s,s:s,s:s}", "level", keng_level_names[up],
                                                     "id", pid, "name", pname));
        }
        item = json_pack("{s:s,s:s,s:I,s:o}", "id", id, "name", name, "count",
                         (json_int_t)ranks[i].count, "parents", parents);
        json_array_append_new(items, item);
    }
    free(ranks);
    const char *within_id, *within_name;
    keng_scope_names(u.reg, within_level, within, &within_id, &within_name);
    json_t *out = json_pack(
        "{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s},s:o}", "level", keng_level_names[level], "window",
        keng_window_names[window], "kind", keng_kind_name(kind), "as_of",
        keng_time_format_utc(keng_api__now(api), as_of, sizeof(as_of)), "within", "level",
        keng_level_names[within_level], "id", within_id, "name", within_name, "items", items);
    keng_api__units_mark(&u, missing_within, out);
    keng_api__respond_json(api, req, 200, out);
}

/* The scopes one level below a scope, each with its tally over one window, in registry
 * order: the province's districts (its communes when the registry has no district level), a
 * district's communes or a commune's boards in one answer, for the dashboard's drill-down
 * tables. */
static void get_children(keng_api_t *api, keng_http_request_t *req)
{
    const char *level_s = keng_http_request_query(req, "level");
    const char *id = keng_http_request_query(req, "id");
    const char *window_s = keng_http_request_query(req, "window");
    keng_level_t level = KENG_LEVEL_PROVINCE, child;
    keng_window_id_t window = KENG_WIN_24H;
    const char *parent_id, *parent_name;
    char as_of[32];
    int32_t index;
    keng_api_units_t u;
    keng_tally_t *tallies = NULL;
    size_t *missing = NULL, missing_all = 0;

    if (keng_api__units_param(api, req, &u) != 0)
        return;
    if (level_s && keng_api__parse_level(api, req, u.reg, level_s, &level, false) != 0)
        return;
    if (window_param(api, req, window_s, &window) != 0)
        return;
    index = scope_param(api, req, &u, level, id);
    if (index < 0 || keng_api__units_check_scope(api, req, &u, level, (uint32_t)index) != 0)
        return;
    child = keng_level_below(u.reg, level);
    if (u.version && child != KENG_LEVEL_BOARD &&
        keng_api__units_tallies(api, &u, child, window, &tallies, &missing) != 0) {
        keng_api__respond_error(api, req, 500, "out of memory");
        return;
    }
    json_t *items = json_array();
    size_t n = keng_scope_count(u.reg, child);
    for (uint32_t i = 0; i < n; i++) {
        const char *child_id, *child_name;
        keng_tally_t t;
        size_t gone = 0;
        json_t *item;

        if (keng_scope_parent(u.reg, child, i, level) != (uint32_t)index)
            continue;
        if (tallies) {
            t = tallies[i];
            gone = missing[i];
        } else {
            keng_api__units_tally(api, &u, child, i, window, &t, &gone);
        }
        missing_all += gone;
        keng_scope_names(u.reg, child, i, &child_id, &child_name);
        item = tally_json(&t);
        json_object_set_new(item, "id", json_string(child_id));
        json_object_set_new(item, "name", json_string(child_name));
        if (gone > 0)
            json_object_set_new(item, "missing_boards", json_integer((json_int_t)gone));
        add_formerly(api, item, child_id);
        json_array_append_new(items, item);
    }
    free(tallies);
    free(missing);
    keng_scope_names(u.reg, level, (uint32_t)index, &parent_id, &parent_name);
    json_t *out =
        json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:s,s:o}", "level", keng_level_names[child], "parent",
                  "level", keng_level_names[level], "id", parent_id, "name", parent_name, "window",
                  keng_window_names[window], "as_of",
                  keng_time_format_utc(keng_api__now(api), as_of, sizeof(as_of)), "items", items);
    keng_api__units_mark(&u, missing_all, out);
    keng_api__respond_json(api, req, 200, out);
}

typedef struct alerts_view {
    keng_api_t *api;
    keng_http_request_t *req;
    json_t *list;
} alerts_view_t;

/* The scope an alert is about, from its JSON (level in any case, scope_id); -1 when the
 * registry has no such scope. */
static int alert_scope(const keng_api_t *api, json_t *alert, keng_level_t *level, uint32_t *index)
{
    const char *level_s = json_string_value(json_object_get(alert, "level"));
    const char *id = json_string_value(json_object_get(alert, "scope_id"));
    char lower[16];
    size_t i;

    if (!level_s || !id)
        return -1;
    for (i = 0; level_s[i] && i + 1 < sizeof(lower); i++)
        lower[i] = (char)tolower((unsigned char)level_s[i]);
    lower[i] = '\0';
    if (keng_level_parse(api->reg, lower, level) != 0)
        return -1;
    int32_t found = keng_scope_find(api->reg, *level, id);
    if (found < 0)
        return -1;
    *index = (uint32_t)found;
    return 0;
}

static void add_alert(const keng_alert_t *t, void *arg)
{
    alerts_view_t *v = arg;
    json_t *alert = keng_alerts_json(t);
    keng_level_t level;
    uint32_t index;

    /* Only the alerts of scopes the user may see. */
    if (alert && keng_web_config_has_users(v->api->web) &&
        (alert_scope(v->api, alert, &level, &index) != 0 ||
         !keng_api__sees(v->api, v->req, level, index))) {
        json_decref(alert);
        return;
    }
    json_array_append_new(v->list, alert);
}

static void get_alerts(keng_api_t *api, keng_http_request_t *req)
{
    const char *status = keng_http_request_query(req, "status");

    if (status && strcmp(status, "firing") != 0 && strcmp(status, "resolved") != 0) {
        keng_api__respond_error(api, req, 400, "status must be firing or resolved");
        return;
    }
    json_t *list = json_array();
    alerts_view_t view = {api, req, list};
    if (api->alerts)
        keng_alerts_each(api->alerts,
                         status && strcmp(status, "resolved") == 0 ? KENG_ALERT_RESOLVED
                                                                   : KENG_ALERT_FIRING,
                         add_alert, &view);
    keng_api__respond_json(api, req, 200, json_pack("{s:o}", "alerts", list));
}

/* keng_consumer_each_gone's callback for /readyz: one gap retention left. */
static void readyz_gap(const char *topic, int32_t partition, int64_t before_ms, const char *board,
                       void *arg)
{
    char when[32];
    json_t *gap = json_pack("{s:s,s:i,s:s}", "topic", topic, "partition", (int)partition,
                            "events_before", keng_time_format_utc(before_ms, when, sizeof(when)));

    json_object_set_new(gap, "boards", json_string(board ? board : "every board of the partition"));
    json_array_append_new(arg, gap);
}

static void get_readyz(keng_api_t *api, keng_http_request_t *req)
{
    char reason[768];

    if (keng_kafka_denial()) {
        keng_api__respond_json(
            api, req, 503,
            json_pack("{s:s,s:s}", "status", "denied", "reason", keng_kafka_denial()));
        return;
    }
    if (!api->consumer) {
        keng_api__respond_json(api, req, 503,
                               json_pack("{s:s,s:s}", "status", "starting", "reason",
                                         api->starting_reason
                                             ? api->starting_reason
                                             : "the consumer is not running (starting or "
                                               "stopping)"));
        return;
    }
    int fatal = keng_consumer_fatal(api->consumer, reason, sizeof(reason));
    if (fatal != 0) {
        keng_api__respond_json(
            api, req, 503,
            json_pack("{s:s,s:s}", "status",
                      fatal == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID ? "fenced" : "failed", "reason",
                      reason));
        return;
    }
    if (!keng_consumer_checkpoint_ok(api->consumer, reason, sizeof(reason))) {
        keng_api__respond_json(
            api, req, 503,
            json_pack("{s:s,s:s}", "status", "checkpoint failing", "reason", reason));
        return;
    }
    if (!keng_consumer_ready(api->consumer, reason, sizeof(reason))) {
        keng_api__respond_json(api, req, 503,
                               json_pack("{s:s,s:s}", "status", "catching up", "reason", reason));
        return;
    }
    json_t *ready = json_pack("{s:s}", "status", "ready");
    if (api->follow)
        json_object_set_new(ready, "registry", keng_registry_follow_status(api->follow));
    json_t *gaps = json_array();
    keng_consumer_each_gone(api->consumer, readyz_gap, gaps);
    if (json_array_size(gaps) > 0)
        json_object_set_new(ready, "incomplete", gaps);
    else
        json_decref(gaps);
    keng_api__respond_json(api, req, 200, ready);
}

/* ---- Server-Sent Events ---- */

/* The province's totals per window: what the stream sends when it changes. */
static char *province_event(const keng_api_t *api)
{
    keng_api_units_t u = keng_api__units_in_force(api);
    json_t *j = counts_json(api, &u, KENG_LEVEL_PROVINCE, 0);
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

/* Writes to every stream, or with level set only to those whose user may see (level,
 * index); the others get `other` when it is not NULL. */
static void stream_write_some(keng_api_t *api, const char *data, size_t len, bool scoped,
                              keng_level_t level, uint32_t index, const char *other)
{
    /* From the end: a stream that fails is removed by swapping the last one into its slot,
     * which has already been written. */
    for (size_t i = api->nstreams; i-- > 0;) {
        if (i >= api->nstreams)
            continue;
        keng_http_request_t *req = api->streams[i]->req;
        if (!scoped || keng_api__sees(api, req, level, index))
            keng_http_stream_write(req, data, len);
        else if (other)
            keng_http_stream_write(req, other, strlen(other));
    }
}

static void stream_write_all(keng_api_t *api, const char *data, size_t len)
{
    stream_write_some(api, data, len, false, KENG_LEVEL_PROVINCE, 0, NULL);
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
    /* A user who may not see the province gets word that something changed, so that its
     * page refreshes what it may see, but not the province's numbers. */
    static const char changed[] = "event: changed\ndata: {}\n\n";
    if (only) {
        if (keng_api__sees(api, only, KENG_LEVEL_PROVINCE, 0))
            keng_http_stream_write(only, frame, strlen(frame));
    } else {
        stream_write_some(api, frame, strlen(frame), true, KENG_LEVEL_PROVINCE, 0, changed);
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
void keng_api__maybe_free(keng_api_t *api)
{
    if (!api->timer_closed || api->nstreams > 0 || api->auth_pending > 0)
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
    keng_api__maybe_free(api);
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
        keng_api__respond_error(api, req, 503, "out of memory for another stream");
        return;
    }
    /* keng_http_stream_begin sends Cache-Control: no-cache itself. */
    int rc = keng_http_stream_begin(req, "text/event-stream");
    if (rc != 0) {
        free(s);
        /* At http.max_streams; after -ENOTCONN the answer is dropped. */
        if (rc == -EBUSY)
            keng_http_request_add_header(req, "Retry-After", "5");
        keng_api__respond_error(api, req, 503,
                                rc == -EBUSY ? "too many streams are open; retry later"
                                             : "the stream could not be started");
        return;
    }
    keng_api__count_status(api, 200);
    s->api = api;
    s->req = req;
    api->streams[api->nstreams++] = s;
    keng_http_stream_on_close(req, on_stream_close, s);
    send_counts(api, req, true);
}

/* ---- routing ---- */

/* The dashboard's Content-Security-Policy: everything from keng itself and nothing from
 * elsewhere; its one inline script runs by its SHA-256, so a script that an injected name or
 * id smuggled into the page would not. Styles stay 'unsafe-inline': the page sets bar widths
 * in style attributes. Written once, into policy; "" when the page has no script. */
static void dashboard_policy(char *policy, size_t size)
{
    const char *open = strstr(keng_dashboard_html, "<script>");
    const char *close = open ? strstr(open, "</script>") : NULL;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    unsigned int digest_len = 0;

    policy[0] = '\0';
    if (!close)
        return;
    open += strlen("<script>");
    if (!EVP_Digest(open, (size_t)(close - open), digest, &digest_len, EVP_sha256(), NULL))
        return;
    EVP_EncodeBlock(b64, digest, (int)digest_len);
    snprintf(policy, size,
             "default-src 'self'; script-src 'sha256-%s'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
             "frame-ancestors 'none'",
             b64);
}

static void get_dashboard(keng_api_t *api, keng_http_request_t *req)
{
    static char policy[512];

    if (!policy[0])
        dashboard_policy(policy, sizeof(policy));
    /* no-cache: a new build's page shows on the next load, not after a cache expiry. */
    keng_http_request_add_header(req, "Cache-Control", "no-cache");
    if (policy[0])
        keng_http_request_add_header(req, "Content-Security-Policy", policy);
    respond_text(api, req, 200, "text/html; charset=utf-8", keng_dashboard_html,
                 sizeof(keng_dashboard_html) - 1);
}

void keng_api_handle(keng_http_request_t *req, void *ctx)
{
    keng_api_t *api = ctx;
    const char *method = keng_http_request_method(req);
    const char *path = keng_http_request_path(req);

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        keng_http_request_add_header(req, "Allow", "GET, HEAD");
        keng_api__respond_error(api, req, 405, "only GET is supported");
        return;
    }
    keng_web_config_add_headers(api->web, req);
    /* The probes of orchestrators stay open, and carry no data. */
    if (!keng_web_config_has_users(api->web) || strcmp(path, "/healthz") == 0 ||
        strcmp(path, "/readyz") == 0)
        keng_api__route(api, req);
    else
        keng_api__authenticate(api, req);
}

void keng_api__route(keng_api_t *api, keng_http_request_t *req)
{
    const char *path = keng_http_request_path(req);

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
    else if (strcmp(path, "/metrics") == 0 && !keng_api__sees_metrics(api, req))
        keng_api__respond_error(api, req, 403, "this user may not read /metrics");
    else if (strcmp(path, "/metrics") == 0)
        keng_api__get_metrics(api, req, api->srv);
    else if (strcmp(path, "/v1/me") == 0)
        keng_api__get_me(api, req);
    else if (strcmp(path, "/v1/children") == 0)
        get_children(api, req);
    else if (strcmp(path, "/v1/silent") == 0)
        keng_api__get_silent(api, req);
    else if (strcmp(path, "/v1/series") == 0)
        keng_api__get_series(api, req);
    else if (strcmp(path, "/") == 0)
        get_dashboard(api, req);
    else
        keng_api__respond_error(api, req, 404, "no such endpoint");
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

void keng_api_set_lineage(keng_api_t *api, const keng_lineage_t *lineage)
{
    api->lineage = lineage;
}

void keng_api_set_registry(keng_api_t *api, const keng_registry_t *reg,
                           const keng_registry_follow_t *follow)
{
    api->reg = reg;
    api->follow = follow;
}

void keng_api_registry_switched(keng_api_t *api, const char *version)
{
    json_t *o =
        json_pack("{s:s,s:s}", "version", version, "levels", keng_registry_level_list(api->reg));
    char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
    char *frame = NULL;

    /* Open dashboards draw their levels and units again: a switch may take a level away. */
    if (data && asprintf(&frame, "event: registry\ndata: %s\n\n", data) >= 0) {
        stream_write_all(api, frame, strlen(frame));
        free(frame);
    }
    free(data);
    json_decref(o);
}

void keng_api_set_web_config(keng_api_t *api, keng_web_config_t *wc)
{
    api->web = wc;
}

void keng_api_set_starting_reason(keng_api_t *api, const char *reason)
{
    api->starting_reason = reason;
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
    if (!keng_web_config_has_users(api->web)) {
        stream_write_all(api, frame, strlen(frame));
    } else {
        /* Only to the users who may see the alert's scope. */
        json_t *alert = json_loads(json, 0, NULL);
        keng_level_t level;
        uint32_t index;
        if (alert && alert_scope(api, alert, &level, &index) == 0)
            stream_write_some(api, frame, strlen(frame), true, level, index, NULL);
        json_decref(alert);
    }
    free(frame);
}

static void on_timer_closed(uv_handle_t *handle)
{
    keng_api_t *api = handle->data;

    api->timer_closed = true;
    keng_api__maybe_free(api);
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
