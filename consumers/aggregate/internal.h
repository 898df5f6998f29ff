/* What the rooms of keng-aggregate's HTTP API share (api.c, api_silent.c, api_metrics.c): the
 * API's state and the helpers every route answers with; never included outside them. */
#ifndef KENG_API_INTERNAL_H
#define KENG_API_INTERNAL_H

#include "api.h"
#include "silent.h"
#include "web_config.h"

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
    const char *starting_reason; /* /readyz before the consumer runs; NULL: the usual words */
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
    keng_web_config_t *web;        /* users and scopes; NULL or without users: everyone sees all */
    const keng_lineage_t *lineage; /* "formerly" of the units; NULL without */
    const keng_registry_follow_t *follow; /* registry.topic's versions; NULL without */
    unsigned auth_pending;                /* bcrypt checks on the thread pool (api_auth.c) */
    unsigned long long auth_refused;
    int64_t auth_refused_logged_ms;
    bool closing;
    bool timer_closed;
};

/* ---- users and scopes (api_auth.c) ---- */

/* Checks the request's user (Basic auth; bcrypt off the loop), then routes it, or answers
 * 401 or 503. Only with users in the web config. */
void keng_api__authenticate(keng_api_t *api, keng_http_request_t *req);
/* The user who asked, or NULL (no users configured, or /healthz and /readyz). */
const keng_web_user_t *keng_api__user(const keng_http_request_t *req);
/* Whether the request's user may see the scope: everyone when there are no users, else a
 * user one of whose units (NA: the province) holds it. */
bool keng_api__sees(const keng_api_t *api, const keng_http_request_t *req, keng_level_t level,
                    uint32_t index);
/* 0 when the user may see the scope, else -1 after answering 403 naming it. */
int keng_api__check_scope(keng_api_t *api, keng_http_request_t *req, keng_level_t level,
                          uint32_t index);
/* Whether the request's user may read /metrics (metrics_users, or the province). */
bool keng_api__sees_metrics(const keng_api_t *api, const keng_http_request_t *req);
void keng_api__get_me(keng_api_t *api, keng_http_request_t *req);

/* The routes (api.c), once the user is known. */
void keng_api__route(keng_api_t *api, keng_http_request_t *req);
/* Frees the API once it is closed and nothing can call back into it (api.c). */
void keng_api__maybe_free(keng_api_t *api);

/* ---- answering (api.c) ----
 * Every route answers through these, so that /metrics counts each status. The json_t body
 * is taken (its reference is the answer's). */

void keng_api__count_status(keng_api_t *api, int status);
void keng_api__respond_json(keng_api_t *api, keng_http_request_t *req, int status, json_t *body);
/* Answers {"error": message}; message is borrowed. */
void keng_api__respond_error(keng_api_t *api, keng_http_request_t *req, int status,
                             const char *message);
/* The clock the counts run on: the consumer's, else the wall clock. */
int64_t keng_api__now(const keng_api_t *api);
/* The level or window named s; 0, or -1 for no such name. */
/* The level named s (NULL: missing) among the registry's, boards included or not. Returns 0,
 * or -1 after answering 400 with the levels there are. */
int keng_api__parse_level(keng_api_t *api, keng_http_request_t *req, const char *s,
                          keng_level_t *out, bool boards);
int keng_api__parse_window(const char *s, keng_window_id_t *out);
/* A scope's tally across the group into *out (the caller's): this instance's live units plus
 * the latest states the other instances published of theirs. */
void keng_api__scope_tally(const keng_api_t *api, keng_level_t level, uint32_t index,
                           keng_window_id_t window, keng_tally_t *out);
/* Whether the scope (level, index) lies in the scope (outer, outer_index), itself included. */
bool keng_api__scope_within(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                            keng_level_t outer, uint32_t outer_index);

/* ---- routes in their own rooms ---- */

void keng_api__get_silent(keng_api_t *api, keng_http_request_t *req); /* api_silent.c */
void keng_api__get_series(keng_api_t *api, keng_http_request_t *req); /* api_silent.c */
void keng_api__get_metrics(keng_api_t *api, keng_http_request_t *req,
                           keng_http_server_t *srv); /* api_metrics.c */

#endif
