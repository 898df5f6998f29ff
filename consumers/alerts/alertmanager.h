/* keng-aggregate's alerts in Prometheus Alertmanager: the whole alert state (every firing
 * alert, and the alerts resolved in the last 15 minutes) POSTed to API v2 /api/v2/alerts of
 * each configured Alertmanager, soon after every transition and again every resend interval, as
 * Alertmanager expects from its clients; one Alertmanager that is down never holds back
 * another. A firing alert carries an endsAt a few resend intervals ahead, so that alerts of a
 * keng-aggregate that is gone resolve by themselves; a resolved alert carries its real endsAt.
 * Because every send is the whole state, an Alertmanager that restarted or was unreachable is
 * caught up by the next send that reaches it, and a restarted keng-aggregate re-sends the
 * alerts its checkpoint says fire.
 *
 * Config keys: alertmanager.url (one URL or several separated by commas, e.g. an HA pair;
 * each gets every send), alertmanager.resend.interval.ms (60000), alertmanager.timeout.ms
 * (10000), dashboard.url (the address of keng-aggregate's dashboard in the links).
 *
 * Thread: loop thread only. */
#ifndef KENG_ALERTMANAGER_H
#define KENG_ALERTMANAGER_H

#include <stddef.h>
#include <stdio.h>

#include <uv.h>

#include "alerts.h"
#include "config.h"
#include "http_client.h"
#include "registry.h"

typedef struct keng_alertmanager keng_alertmanager_t;

typedef struct keng_alertmanager_options {
    const char *urls;          /* alertmanager.url: base URLs separated by commas */
    long resend_interval_ms;   /* how often the whole state is sent again */
    long timeout_ms;           /* per request */
    const char *dashboard_url; /* base of the dashboard and generator links, no trailing / */
    /* alertmanager.basic_auth.username, and the password read from
     * alertmanager.basic_auth.password_file (copied by keng_alertmanager_new). */
    const char *username;
    char password[256];
} keng_alertmanager_options_t;

/* The keys this module reads (see keng_config_check). */
extern const char *const keng_alertmanager_config_keys[];

/* Reads opt from cfg (borrowed), dashboard_url defaulting to default_dashboard_url. Returns
 * 0 with opt->urls NULL when alertmanager.url is not set, or -1 with errstr naming the key. */
int keng_alertmanager_options_from_config(const keng_config_t *cfg,
                                          const char *default_dashboard_url,
                                          keng_alertmanager_options_t *opt, char *errstr,
                                          size_t errstr_size);

/* A sender of alerts' state (borrowed, like client and reg: all must outlive it; opt is
 * copied). Returns NULL with errstr naming the key ("alertmanager.url: 'x' is not a
 * URL ..."). Sending starts at once. */
keng_alertmanager_t *keng_alertmanager_new(uv_loop_t *loop, keng_http_client_t *client,
                                           const keng_alertmanager_options_t *opt,
                                           const keng_alerts_t *alerts, const keng_registry_t *reg,
                                           char *errstr, size_t errstr_size);

/* The registry whose names and units label the alerts from now on (a switch; borrowed). */
void keng_alertmanager_set_registry(keng_alertmanager_t *am, const keng_registry_t *reg);

/* The state changed: send it soon (transitions close together go in one send). */
void keng_alertmanager_notify(keng_alertmanager_t *am);

/* Writes per Alertmanager its sends, failures and whether the last one worked, in the
 * Prometheus text format. */
void keng_alertmanager_metrics(const keng_alertmanager_t *am, FILE *out);

/* Stops sending; the memory goes once the loop closed the timers. Close it before the
 * client. */
void keng_alertmanager_close(keng_alertmanager_t *am);

/* How many Alertmanagers it sends to. */
size_t keng_alertmanager_endpoint_count(const keng_alertmanager_t *am);

/* The links of an alert: link the dashboard at the scope (its "dashboard" annotation), gen
 * the scope's /v1/counts (its generatorURL). The window and the id are percent-encoded, since
 * an id from the registry file may hold '&', '#', '%' or '?'. Both are cut to fit. */
void keng_alertmanager_links(const char *dashboard, const char *window, const char *level,
                             const char *scope_id, char *link, size_t link_size, char *gen,
                             size_t gen_size);

/* The district_id label of an alert: the registry's district of the scope (the scope itself
 * for a district), never read from the id's spelling, since ids need not start with their
 * district's. Empty for the province and for an id the registry does not list. */
void keng_alertmanager_district_of(const keng_registry_t *reg, keng_alert_level_t level,
                                   const char *scope_id, char *out, size_t size);

#endif
