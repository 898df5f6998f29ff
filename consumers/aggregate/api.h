/* keng-aggregate's HTTP API: counts, top lists, alerts, the SSE stream, health, readiness,
 * metrics and the dashboard, over common/http_server; nothing here changes a count.
 *
 * Thread: loop thread only. */
#ifndef KENG_API_H
#define KENG_API_H

#include <stdio.h>

#include <uv.h>

#include "alertlog.h"
#include "alerts.h"
#include "cluster.h"
#include "consumer.h"
#include "counts.h"
#include "http_server.h"
#include "registry.h"
#include "registry_check.h"
#include "registry_follow.h"
#include "silent.h"
#include "web_config.h"

typedef struct keng_api keng_api_t;

/* Everything is borrowed and must outlive the API; consumer may be set later with
 * keng_api_set_consumer (until then /readyz answers 503). Returns NULL on allocation
 * failure. */
keng_api_t *keng_api_new(uv_loop_t *loop, const keng_registry_t *reg, const keng_counts_t *counts);

void keng_api_set_consumer(keng_api_t *api, keng_consumer_t *consumer);

/* What /readyz says while no consumer runs (a static string; NULL: that it is starting or
 * stopping). */
void keng_api_set_starting_reason(keng_api_t *api, const char *reason);

/* The server whose connections /metrics reports (borrowed; may be NULL). */
void keng_api_set_server(keng_api_t *api, keng_http_server_t *srv);

/* The handler to give keng_http_server_new, with the API as its ctx. */
void keng_api_handle(keng_http_request_t *req, void *ctx);

/* Ends every open stream and stops the stream timer; the memory goes once the loop closed
 * it. Call before closing the server. */
void keng_api_close(keng_api_t *api);

/* Alerts (added with them): GET /v1/alerts lists alerts' firing or resolved alerts, /metrics
 * reports them and alertlog's webhook failures (both borrowed; NULL for none). */
void keng_api_set_alerts(keng_api_t *api, const keng_alerts_t *alerts,
                         const keng_alertlog_t *alertlog);

/* Calls fn at the end of every /metrics answer to add the program's own metrics in the
 * Prometheus text format (the webhook's, Alertmanager's). */
void keng_api_set_more_metrics(keng_api_t *api, void (*fn)(FILE *out, void *arg), void *arg);

/* Sends an "alert" event with json (borrowed) to every open /v1/stream. */
void keng_api_push_alert(keng_api_t *api, const char *json);

/* Scale-out (added with it): /v1/counts, /v1/top and the stream add the units other
 * instances own, from the counts topic, and a board owned elsewhere names its owner
 * (borrowed; NULL for a single instance). */
void keng_api_set_cluster(keng_api_t *api, const keng_cluster_t *cluster);

/* Silent boards (added with them): the silent.days and silent.start that /v1/silent uses
 * (copied; the defaults until called). GET /v1/silent and GET /v1/series are documented in
 * docs/DESIGN.md. */
void keng_api_set_silent(keng_api_t *api, const keng_silent_options_t *opt);

/* The web config's users and scopes (borrowed; must outlive the API). With users, every
 * route but /healthz and /readyz asks for one, and answers hold only its scope. */
void keng_api_set_web_config(keng_api_t *api, keng_web_config_t *wc);

/* The registry's lineage (borrowed; may be NULL): the counts and children answers then give
 * each unit that the lineage names as the successor of others their names, as formerly. */
void keng_api_set_lineage(keng_api_t *api, const keng_lineage_t *lineage);

/* The registry the answers use from now on (a switch: the same boards at the same indexes as
 * the counts'; borrowed), and the versions of antt.registry when keng-aggregate follows it
 * (borrowed; NULL without): /metrics then names the version, /readyz's body says it and any
 * version skipped, and a user scoped to a unit that a later version removed keeps seeing the
 * boards that were in it. */
void keng_api_set_registry(keng_api_t *api, const keng_registry_t *reg,
                           const keng_registry_follow_t *follow);

/* After a switch to the registry version of that effective key: every stream gets the event
 * `registry` ({"version": KEY, "levels": "province, commune, board"}), on which the dashboard
 * draws its levels and units again. */
void keng_api_registry_switched(keng_api_t *api, const char *version);

/* 0 when every unit of every user's scope is in the registry, else -1 with errstr naming the
 * user and the unit. With follow (registry.topic), a unit that only a version in force before
 * reg had is allowed with a warning: it keeps covering the boards that were in it. */
int keng_api__check_units(const keng_registry_t *reg, const keng_registry_follow_t *follow,
                          const keng_web_config_t *wc, char *errstr, size_t errstr_size);

#endif
