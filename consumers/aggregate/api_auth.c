/* Who may see what: the users of the web config file (--web.config.file) and their scopes.
 * Without users every request sees everything, as before; with them every route but /healthz
 * and /readyz asks for a user, and every answer holds only what the user's scope covers. The
 * bcrypt check of a password runs on libuv's thread pool, so a wrong password costs the
 * asker time, never the counting. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"

const keng_web_user_t *keng_api__user(const keng_http_request_t *req)
{
    return keng_http_request_user(req);
}

/* The (level, index) of a unit id of the user's scope, or -1 when the registry has no such
 * unit. */
static int unit_of(const keng_api_t *api, const char *id, keng_level_t *level, uint32_t *index)
{
    return keng_scope_find_any(api->reg, id, KENG_LEVEL_BOARD, level, index);
}

/* Whether a board of the registry in force was in the unit id of a version in force before
 * it: a user scoped to a unit that a later version removed keeps seeing its former boards. */
static bool board_was_in(const keng_api_t *api, uint32_t board, const char *unit)
{
    size_t n;
    const keng_registry_t *const *earlier = keng_registry_follow_earlier(api->follow, &n);
    const char *board_id = keng_registry_board(api->reg, board)->id;

    for (size_t i = 0; i < n; i++) {
        keng_level_t ulevel;
        uint32_t uindex;
        int32_t b = keng_registry_find_board(earlier[i], board_id, strlen(board_id));
        if (b >= 0 &&
            keng_scope_find_any(earlier[i], unit, KENG_LEVEL_BOARD, &ulevel, &uindex) == 0 &&
            keng_api__scope_within(earlier[i], KENG_LEVEL_BOARD, (uint32_t)b, ulevel, uindex))
            return true;
    }
    return false;
}

bool keng_api__sees(const keng_api_t *api, const keng_http_request_t *req, keng_level_t level,
                    uint32_t index)
{
    if (!keng_web_config_has_users(api->web))
        return true;
    const keng_web_user_t *user = keng_api__user(req);
    if (!user)
        return false;
    for (size_t i = 0; i < keng_web_user_scope_count(user); i++) {
        keng_level_t ulevel;
        uint32_t uindex;
        const char *unit = keng_web_user_scope(user, i);
        if (unit_of(api, unit, &ulevel, &uindex) == 0) {
            if (keng_api__scope_within(api->reg, level, index, ulevel, uindex))
                return true;
        } else if (api->follow && level == KENG_LEVEL_BOARD && board_was_in(api, index, unit)) {
            return true;
        }
    }
    return false;
}

int keng_api__check_scope(keng_api_t *api, keng_http_request_t *req, keng_level_t level,
                          uint32_t index)
{
    const char *id, *name;
    char msg[200];

    if (keng_api__sees(api, req, level, index))
        return 0;
    keng_scope_names(api->reg, level, index, &id, &name);
    snprintf(msg, sizeof(msg), "user %.64s may not see the %s %s",
             keng_api__user(req) ? keng_web_user_name(keng_api__user(req)) : "(none)",
             keng_level_names[level], id);
    keng_api__respond_error(api, req, 403, msg);
    return -1;
}

bool keng_api__sees_metrics(const keng_api_t *api, const keng_http_request_t *req)
{
    const keng_web_user_t *user = keng_api__user(req);

    return !keng_web_config_has_users(api->web) ||
           (user &&
            (keng_web_user_metrics(user) || keng_api__sees(api, req, KENG_LEVEL_PROVINCE, 0)));
}

int keng_api__check_units(const keng_registry_t *reg, const keng_registry_follow_t *follow,
                          const keng_web_config_t *wc, char *errstr, size_t errstr_size)
{
    keng_api_t probe = {.reg = reg};

    for (size_t u = 0; wc && u < keng_web_config_user_count(wc); u++) {
        const keng_web_user_t *user = keng_web_config_user(wc, u);
        for (size_t i = 0; i < keng_web_user_scope_count(user); i++) {
            keng_level_t level;
            uint32_t index;
            const char *id = keng_web_user_scope(user, i);
            if (unit_of(&probe, id, &level, &index) != 0 &&
                keng_registry_follow_knew_unit(follow, id)) {
                keng_log_warn("a user's unit is not in the registry version in force; it keeps "
                              "covering the boards that were in it: scope the user to units of "
                              "the version in force",
                              "user=%s unit=%s version=%s", keng_web_user_name(user), id,
                              keng_registry_follow_version(follow));
            } else if (unit_of(&probe, id, &level, &index) != 0) {
                snprintf(errstr, errstr_size,
                         "user_scopes: %s: the registry has no unit '%s' (its levels are %s; NA "
                         "is the province)",
                         keng_web_user_name(user), id, keng_registry_level_list(reg));
                return -1;
            }
        }
    }
    return 0;
}

/* ---- signing in ---- */

static void unauthorized(keng_api_t *api, keng_http_request_t *req, const char *why)
{
    keng_http_request_add_header(req, "WWW-Authenticate",
                                 "Basic realm=\"keng\", charset=\"UTF-8\"");
    keng_api__respond_error(api, req, 401, why);
}

/* A refused password, in the log at most once a second with how many since the last line, so
 * that guessing cannot flood it. */
static void note_refused(keng_api_t *api, const keng_http_request_t *req)
{
    int64_t now = keng_monotonic_ms();

    api->auth_refused++;
    if (now - api->auth_refused_logged_ms < 1000)
        return;
    keng_log_warn("sign-in refused: wrong user or password", "peer=%s refused=%llu",
                  keng_http_request_peer(req), (unsigned long long)api->auth_refused);
    api->auth_refused_logged_ms = now;
    api->auth_refused = 0;
}

typedef struct auth_wait {
    keng_api_t *api;
    keng_http_request_t *req;
} auth_wait_t;

static void auth_done(const keng_web_user_t *user, void *arg)
{
    auth_wait_t *w = arg;
    keng_api_t *api = w->api;

    api->auth_pending--;
    if (api->closing) {
        keng_api__respond_error(api, w->req, 503, "keng-aggregate is stopping");
    } else if (!user) {
        note_refused(api, w->req);
        unauthorized(api, w->req, "wrong user or password");
    } else {
        keng_http_request_set_user(w->req, user);
        keng_api__route(api, w->req);
    }
    free(w);
    keng_api__maybe_free(api);
}

void keng_api__authenticate(keng_api_t *api, keng_http_request_t *req)
{
    const keng_web_user_t *user = NULL;
    keng_web_check_t check;
    auth_wait_t *w;
    int rc;

    rc = keng_web_config_lookup(api->web, keng_http_request_header(req, "Authorization"), &user,
                                &check);
    if (rc < 0) {
        unauthorized(api, req, "sign in with a user of keng-aggregate's web config");
        return;
    }
    if (rc > 0) {
        keng_http_request_set_user(req, user);
        keng_api__route(api, req);
        return;
    }
    /* bcrypt off the loop: tens of milliseconds that counting must not wait for. */
    w = malloc(sizeof(*w));
    if (w) {
        *w = (auth_wait_t){api, req};
        rc = keng_web_check_queue(api->timer.loop, api->web, &check, auth_done, w);
    } else {
        keng_web_config_finish(api->web, &check);
        rc = -ENOMEM;
    }
    if (rc == 0) {
        api->auth_pending++;
        return;
    }
    free(w);
    if (rc == -EBUSY)
        keng_http_request_add_header(req, "Retry-After", "1");
    keng_api__respond_error(api, req, 503,
                            rc == -EBUSY ? "too many sign-ins at once; retry in a second"
                                         : "the sign-in could not be checked");
}

/* GET /v1/me: who asks and what it may see, for the dashboard to open at the user's scope. */
void keng_api__get_me(keng_api_t *api, keng_http_request_t *req)
{
    const keng_web_user_t *user = keng_api__user(req);
    json_t *scope = json_array();

    if (!keng_web_config_has_users(api->web) || !user) {
        json_array_append_new(scope,
                              json_pack("{s:s,s:s}", "level", "province", "id", KENG_PROVINCE_ID));
        keng_api__respond_json(api, req, 200,
                               json_pack("{s:n,s:o,s:b}", "user", "scope", scope, "metrics", 1));
        return;
    }
    for (size_t i = 0; i < keng_web_user_scope_count(user); i++) {
        const char *id = keng_web_user_scope(user, i);
        keng_level_t level;
        uint32_t index;
        if (unit_of(api, id, &level, &index) == 0)
            json_array_append_new(
                scope, json_pack("{s:s,s:s}", "level", keng_level_names[level], "id", id));
    }
    keng_api__respond_json(api, req, 200,
                           json_pack("{s:s,s:o,s:b}", "user", keng_web_user_name(user), "scope",
                                     scope, "metrics", keng_api__sees_metrics(api, req)));
}
