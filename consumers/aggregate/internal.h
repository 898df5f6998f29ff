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
/* The level named s (NULL: missing) among reg's (api->reg, or an as_of version's), boards
 * included or not. Returns 0, or -1 after answering 400 with the levels there are. */
int keng_api__parse_level(keng_api_t *api, keng_http_request_t *req, const keng_registry_t *reg,
                          const char *s, keng_level_t *out, bool boards);
/* The window named s; 0, or -1 for no such name. */
int keng_api__parse_window(const char *s, keng_window_id_t *out);
/* A scope's tally across the group into *out (the caller's): this instance's live units plus
 * the latest states the other instances published of theirs. */
void keng_api__scope_tally(const keng_api_t *api, keng_level_t level, uint32_t index,
                           keng_window_id_t window, keng_tally_t *out);
/* Whether the scope (level, index) lies in the scope (outer, outer_index), itself included. */
bool keng_api__scope_within(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                            keng_level_t outer, uint32_t outer_index);

/* ---- the units of another version: ?as_of=TIME (api_asof.c) ---- */

/* The units an answer is drawn in: those of the registry in force (reg is api->reg, version
 * NULL), or with ?as_of=TIME those of the version of antt.registry in force at TIME, whose
 * indexes are its own: each of its boards is then counted by its id in api->reg, and one the
 * counts lack (removed since) counts as zero and is said as missing_boards. */
typedef struct keng_api_units {
    const keng_registry_t *reg; /* borrowed: api->reg or the follower's */
    const char *version;        /* the as_of version's effective key; NULL without as_of */
} keng_api_units_t;

keng_api_units_t keng_api__units_in_force(const keng_api_t *api);
/* The request's ?as_of= into *out (the units in force without it). Returns 0, or -1 after
 * answering 400: a TIME that does not parse, no registry.topic, a TIME before the first
 * version (naming its time). */
int keng_api__units_param(keng_api_t *api, keng_http_request_t *req, keng_api_units_t *out);
/* The index in api->reg of board (an index of u->reg), or -1 when the counts lack it. */
int32_t keng_api__units_counted_board(const keng_api_t *api, const keng_api_units_t *u,
                                      uint32_t board);
/* A scope of u->reg: its tally across the group into *out, and into *missing how many of its
 * boards the counts lack. */
void keng_api__units_tally(const keng_api_t *api, const keng_api_units_t *u, keng_level_t level,
                           uint32_t index, keng_window_id_t window, keng_tally_t *out,
                           size_t *missing);
/* Every scope of u->reg at level, in one pass over the boards: *tallies and *missing get
 * keng_scope_count(u->reg, level) entries each (the caller frees both). Returns 0, or -1 when
 * memory runs out. */
int keng_api__units_tallies(const keng_api_t *api, const keng_api_units_t *u, keng_level_t level,
                            keng_window_id_t window, keng_tally_t **tallies, size_t **missing);
/* keng_api__sees and keng_api__check_scope for a scope of u->reg: a unit of another version is
 * seen by a user who sees every one of its boards under the version in force (a board the
 * counts lack: only a user of the province). */
bool keng_api__units_sees(const keng_api_t *api, const keng_http_request_t *req,
                          const keng_api_units_t *u, keng_level_t level, uint32_t index);
int keng_api__units_check_scope(keng_api_t *api, keng_http_request_t *req,
                                const keng_api_units_t *u, keng_level_t level, uint32_t index);
/* Under as_of, sets "as_of_units" (the version's effective key) and "missing_boards" on out. */
void keng_api__units_mark(const keng_api_units_t *u, size_t missing, json_t *out);

/* ---- routes in their own rooms ---- */

void keng_api__get_silent(keng_api_t *api, keng_http_request_t *req); /* api_silent.c */
void keng_api__get_series(keng_api_t *api, keng_http_request_t *req); /* api_silent.c */
void keng_api__get_metrics(keng_api_t *api, keng_http_request_t *req,
                           keng_http_server_t *srv); /* api_metrics.c */

#endif
