/* ?as_of=TIME on keng-aggregate's API: the units of the registry version in force at TIME (the
 * 21 districts of 2024, say) over the live counts of the boards. The counts are kept per board
 * under the registry keng-aggregate counts with (api->reg); a unit of another version is the
 * sum of the boards that version puts in it, each found by its id. Nothing is cached: a
 * request sums over at most every board once per window. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

keng_api_units_t keng_api__units_in_force(const keng_api_t *api)
{
    return (keng_api_units_t){.reg = api->reg, .version = NULL};
}

int keng_api__units_param(keng_api_t *api, keng_http_request_t *req, keng_api_units_t *out)
{
    const char *s = keng_http_request_query(req, "as_of");
    const char *version = NULL, *first;
    char msg[400];
    int64_t at;

    *out = keng_api__units_in_force(api);
    if (!s)
        return 0;
    if (keng_time_parse_day_or_rfc3339(s, &at) != 0) {
        snprintf(msg, sizeof(msg),
                 "as_of must be a date YYYY-MM-DD (its midnight in Asia/Ho_Chi_Minh) or an RFC "
                 "3339 time such as 2025-06-30T17:00:00Z (got '%.40s')",
                 s);
        keng_api__respond_error(api, req, 400, msg);
        return -1;
    }
    if (!api->follow) {
        keng_api__respond_error(api, req, 400,
                                "as_of needs registry.topic: keng-aggregate has one registry "
                                "(--registry FILE or the built-in one) and no versions to draw "
                                "the units of another time from");
        return -1;
    }
    out->reg = keng_registry_follow_at(api->follow, at, &version);
    if (!out->reg) {
        first = keng_registry_follow_first(api->follow);
        snprintf(msg, sizeof(msg),
                 "as_of '%.40s' is before the first registry version, effective %s: no units "
                 "were in force then",
                 s, first ? first : "(none)");
        keng_api__respond_error(api, req, 400, msg);
        out->reg = api->reg;
        return -1;
    }
    out->version = version;
    return 0;
}

/* The index of the board in the counts' registry, or -1 when they lack it (removed since). */
static int32_t counted_board(const keng_api_t *api, const keng_board_t *b)
{
    return keng_registry_find_board(api->reg, b->id, strlen(b->id));
}

int32_t keng_api__units_counted_board(const keng_api_t *api, const keng_api_units_t *u,
                                      uint32_t board)
{
    if (!u->version)
        return (int32_t)board;
    return counted_board(api, keng_registry_board(u->reg, board));
}

void keng_api__units_tally(const keng_api_t *api, const keng_api_units_t *u, keng_level_t level,
                           uint32_t index, keng_window_id_t window, keng_tally_t *out,
                           size_t *missing)
{
    keng_tally_t t;
    size_t n;

    *missing = 0;
    if (!u->version) {
        keng_api__scope_tally(api, level, index, window, out);
        return;
    }
    memset(out, 0, sizeof(*out));
    if (level == KENG_LEVEL_BOARD) {
        int32_t bi = keng_api__units_counted_board(api, u, index);
        if (bi < 0)
            *missing = 1;
        else
            keng_api__scope_tally(api, KENG_LEVEL_BOARD, (uint32_t)bi, window, out);
        return;
    }
    n = keng_registry_board_count(u->reg);
    for (uint32_t b = 0; b < n; b++) {
        if (!keng_api__scope_within(u->reg, KENG_LEVEL_BOARD, b, level, index))
            continue;
        int32_t bi = counted_board(api, keng_registry_board(u->reg, b));
        if (bi < 0) {
            (*missing)++;
            continue;
        }
        keng_api__scope_tally(api, KENG_LEVEL_BOARD, (uint32_t)bi, window, &t);
        keng_tally_add(out, &t);
    }
}

int keng_api__units_tallies(const keng_api_t *api, const keng_api_units_t *u, keng_level_t level,
                            keng_window_id_t window, keng_tally_t **tallies, size_t **missing)
{
    size_t n = keng_scope_count(u->reg, level);
    keng_tally_t t;

    *tallies = calloc(n ? n : 1, sizeof(**tallies));
    *missing = calloc(n ? n : 1, sizeof(**missing));
    if (!*tallies || !*missing) {
        free(*tallies);
        free(*missing);
        *tallies = NULL;
        *missing = NULL;
        return -1;
    }
    if (level == KENG_LEVEL_BOARD || !u->version) {
        for (uint32_t i = 0; i < n; i++)
            keng_api__units_tally(api, u, level, i, window, &(*tallies)[i], &(*missing)[i]);
        return 0;
    }
    /* One pass over the version's boards, each added to its unit at level. */
    size_t nboards = keng_registry_board_count(u->reg);
    for (uint32_t b = 0; b < nboards; b++) {
        uint32_t unit = keng_scope_parent(u->reg, KENG_LEVEL_BOARD, b, level);
        if (unit >= n)
            continue;
        int32_t bi = counted_board(api, keng_registry_board(u->reg, b));
        if (bi < 0) {
            (*missing)[unit]++;
            continue;
        }
        keng_api__scope_tally(api, KENG_LEVEL_BOARD, (uint32_t)bi, window, &t);
        keng_tally_add(&(*tallies)[unit], &t);
    }
    return 0;
}

bool keng_api__units_sees(const keng_api_t *api, const keng_http_request_t *req,
                          const keng_api_units_t *u, keng_level_t level, uint32_t index)
{
    size_t n, seen = 0;

    if (!u->version)
        return keng_api__sees(api, req, level, index);
    if (!keng_web_config_has_users(api->web) || keng_api__sees(api, req, KENG_LEVEL_PROVINCE, 0))
        return true;
    if (level == KENG_LEVEL_PROVINCE)
        return false;
    /* A unit of another version is shown only to a user who sees every one of its boards
     * under the version in force; a board the counts lack is the province's users' alone. */
    n = keng_registry_board_count(u->reg);
    for (uint32_t b = 0; b < n; b++) {
        if (!keng_api__scope_within(u->reg, KENG_LEVEL_BOARD, b, level, index))
            continue;
        int32_t bi = counted_board(api, keng_registry_board(u->reg, b));
        if (bi < 0 || !keng_api__sees(api, req, KENG_LEVEL_BOARD, (uint32_t)bi))
            return false;
        seen++;
    }
    return seen > 0;
}

int keng_api__units_check_scope(keng_api_t *api, keng_http_request_t *req,
                                const keng_api_units_t *u, keng_level_t level, uint32_t index)
{
    const char *id, *name;
    char msg[400];

    if (!u->version)
        return keng_api__check_scope(api, req, level, index);
    if (keng_api__units_sees(api, req, u, level, index))
        return 0;
    keng_scope_names(u->reg, level, index, &id, &name);
    snprintf(msg, sizeof(msg),
             "user %.64s may not see the %s %s of the registry version %s: a unit of another "
             "version needs every one of its boards in the user's scope",
             keng_api__user(req) ? keng_web_user_name(keng_api__user(req)) : "(none)",
             keng_level_names[level], id, u->version);
    keng_api__respond_error(api, req, 403, msg);
    return -1;
}

void keng_api__units_mark(const keng_api_units_t *u, size_t missing, json_t *out)
{
    if (!u->version || !out)
        return;
    json_object_set_new(out, "as_of_units", json_string(u->version));
    json_object_set_new(out, "missing_boards", json_integer((json_int_t)missing));
}
