/* keng-aggregate: reads the incident and mediation topics on a libuv loop, keeps rolling counts
 * per board rolled up to commune, district and province, checkpoints them with the input
 * offsets in LMDB, and serves them over HTTP; it resumes from the checkpoint's offsets, never
 * from the group's committed ones. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "alertlog.h"
#include "alertmanager.h"
#include "alerts.h"
#include "api.h"
#include "avro_codec.h"
#include "checkpoint.h"
#include "cluster.h"
#include "config.h"
#include "consumer.h"
#include "counts.h"
#include "deadletter.h"
#include "event_rule.h"
#include "http_client.h"
#include "http_server.h"
#include "kafka_denied.h"
#include "failpoint.h"
#include "log.h"
#include "program.h"
#include "registry.h"
#include "schemareg.h"
#include "webhook.h"
#include "silent.h"
#include "timeutil.h"
#include "registry_check.h"
#include "web_config.h"

#define DEFAULT_LISTEN    "127.0.0.1:8080"
#define DEFAULT_STATE_DIR "./keng-state"
#define DEFAULT_GROUP     "keng-aggregate"
#define SHUTDOWN_FLUSH_MS 5000
#define DENIAL_CHECK_MS   200
#define META_WATCH_START  "silent_watch_start"
#define INSTANCE_ID_META  "group.instance.id"

/* The keys keng-aggregate reads itself; its modules list theirs (see config_tables). */
static keng_config_keys_t aggregate_keys = {"registry",
                                            "registry.lineage",
                                            "registry.topic",
                                            "listen",
                                            "state.dir",
                                            "group.id",
                                            "clock.fixed_ms",
                                            "checkpoint.interval.ms",
                                            "checkpoint.events",
                                            "checkpoint.map_size_mb",
                                            "checkpoint.stale.ms",
                                            "dedup.horizon.ms",
                                            "topic.incidents",
                                            "topic.mediations",
                                            "topic.deadletter",
                                            "topic.alerts",
                                            "topic.board_counts",
                                            "instance.id",
                                            "group.instance.id",
                                            "advertised.url",
                                            "alerts.recover.timeout.ms",
                                            "webhook.url",
                                            "webhook.timeout.ms",
                                            "webhook.bearer_token_file",
                                            "counts.state_version",
                                            "web.config.file",
                                            "http.insecure_listen",
                                            NULL};
static const char *const *const config_tables[] = {
    keng_config_common_keys,       aggregate_keys,
    keng_schema_store_config_keys, keng_alerts_config_keys,
    keng_alertmanager_config_keys, keng_http_server_config_keys,
    keng_silent_config_keys,       keng_event_rule_config_keys,
    keng_schemareg_config_keys,    NULL};

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry;
    const char *registry_topic;
    const char *lineage;
    const char *listen;
    const char *state_dir;
    const char *group;
    const char *max_connections;
    const char *max_streams;
    const char *web_config;
    int insecure_listen;
    int hash_password;
    int check_config;
};

/* Everything the program runs; each piece is closed in reverse order of its creation. */
typedef struct app {
    uv_loop_t *loop;
    keng_config_t *cfg;
    bool check_only;                 /* --check-config: load everything, start nothing */
    keng_registry_t *reg;            /* the counts' board order: the registry of the start */
    keng_registry_follow_t *regs;    /* registry.topic: its versions (then owning reg); or NULL */
    const keng_registry_t *in_force; /* reg, or a later version in reg's board order */
    keng_registry_t **switched;      /* those later versions, kept until exit */
    size_t nswitched;
    const keng_registry_t *restart_for; /* a version that adds or removes boards, taken at the
                                           next start: stopping for it (the follower's) */
    keng_lineage_t *lineage; /* registry.lineage: "formerly ..." of the units; may be NULL */
    keng_schema_store_t *store;
    keng_counts_t *counts;
    keng_checkpoint_t *cp;
    keng_deadletter_t *dl;
    keng_alerts_t *alerts;             /* NULL without alert.* rules */
    keng_alertlog_t *alertlog;         /* with alerts */
    keng_http_client_t *http;          /* with a webhook or Alertmanager */
    keng_webhook_t *webhook;           /* with webhook.url */
    keng_alertmanager_t *alertmanager; /* with alertmanager.url */
    keng_alertmanager_options_t am_opt;
    long long webhook_timeout_ms;
    int alerts_read_timeout_ms;
    keng_cluster_t *cluster; /* NULL when the counts topic is not usable */
    keng_consumer_t *consumer;
    keng_api_t *api;
    keng_http_server_t *srv;
    keng_program_signals_t signals; /* SIGINT and SIGTERM stop; SIGHUP reloads the TLS
                                     * certificate */
    uv_timer_t denial_timer;        /* stops the program once Kafka refused its user */
    bool denial_timer_on;
    bool stopping;
    int exit_code; /* once the loop ends: a Kafka denial, or a start that failed after the
                      loop began (the schema registry's) */
    keng_silent_options_t silent;
    keng_web_config_t *web; /* --web.config.file; NULL without */
    bool insecure_listen;   /* --insecure-listen */

    /* Schema Registry mode (schema.registry.url) */
    keng_schemareg_conf_t sr;
    bool sr_on;
    keng_http_client_t *sr_http;
    keng_schemareg_ids_t *sr_ids; /* the alerts' writer id */
    struct settings *pending;     /* run()'s, for the start that waits for the registry */
} app_t;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-aggregate [options]\n"
            "\n"
            "Consumes the incident and mediation topics, keeps rolling counts for every board\n"
            "and its commune, district and province, and serves them over HTTP.\n"
            "\n"
            "Options:\n"
            "  --config FILE      key=value config; kafka.* keys go to librdkafka\n"
            "  --brokers LIST     bootstrap servers (else KENG_BROKERS, else the config)\n"
            "  --registry FILE    board registry CSV (else the generated default)\n"
            "  --registry-topic TOPIC  follow the registry versions of TOPIC (config\n"
            "                     registry.topic, e.g. antt.registry) instead of --registry:\n"
            "                     the units above the boards switch at each effective time\n"
            "  --lineage FILE     the registry's lineage (config registry.lineage; the format\n"
            "                     of keng-registry --lineage): each unit shows its former units\n"
            "  --listen HOST:PORT HTTP address (default " DEFAULT_LISTEN ")\n"
            "  --state-dir DIR    LMDB checkpoint directory (default " DEFAULT_STATE_DIR ")\n"
            "  --group ID         consumer group (default " DEFAULT_GROUP ")\n"
            "  --max-connections N  HTTP connections at once, streams apart (config\n"
            "                     http.max_connections, default 10000; at the cap the least\n"
            "                     recently active idle one is closed for the new one)\n"
            "  --max-streams N    /v1/stream clients at once (config http.max_streams, 256)\n"
            "  --web.config.file FILE  users (bcrypt) and their scopes, and HTTPS\n"
            "                     (tls_server_config), in the format of Prometheus's web\n"
            "                     config (config web.config.file; docs/OPERATIONS.md,\n"
            "                     \"Security\"); with users every route but /healthz and\n"
            "                     /readyz asks for one and answers its scope only; SIGHUP\n"
            "                     reloads the certificate and key\n"
            "  --insecure-listen  listen beyond loopback without users and TLS (config\n"
            "                     http.insecure_listen): only behind a proxy that terminates\n"
            "                     TLS and authenticates\n"
            "  --hash-password    print a bcrypt hash of the password on standard input, for\n"
            "                     basic_auth_users, then exit\n"
            "  --check-config     load the config, registry, schemas, alert rules and Kafka\n"
            "                     settings, say what is wrong (exit 64 or 78) or that they\n"
            "                     load (exit 0), and start nothing\n"
            "  --help, --version\n"
            "\n"
            "Config keys: topic.incidents, topic.mediations, topic.deadletter (default antt.*),\n"
            "checkpoint.interval.ms (1000), checkpoint.events (1000000), checkpoint.map_size_mb\n"
            "(4096), checkpoint.stale.ms (60000: /readyz 503 once checkpoints fail this long),\n"
            "dedup.horizon.ms (30 days), clock.fixed_ms (tests; also KENG_CLOCK_MS),\n"
            "topic.board_counts (antt.board-counts), instance.id (hostname-pid),\n"
            "advertised.url (http://<listen>), group.instance.id (auto: kept in the state dir;\n"
            "none: a dynamic member), and registry, listen, state.dir, group.id as the flags.\n"
            "Scale-out: docs/SCALE_OUT.md.\n"
            "Alerts: alert.<name>.level|window|kind|category|resolution|outcome|threshold|\n"
            "resolve_below|summary|severity (docs/ALERTS.md), topic.alerts (antt.alerts),\n"
            "alerts.recover.timeout.ms (15000), webhook.url, webhook.timeout.ms (10000),\n"
            "alertmanager.url (one or more, comma-separated), alertmanager.resend.interval.ms\n"
            "(60000), alertmanager.timeout.ms (10000), dashboard.url (advertised.url).\n"
            "Event times: events.min_occurred_at (2000-01-01T00:00:00Z), events.max_future_ms\n"
            "(300000); an event outside them is dead-lettered.\n"
            "Silent boards: silent.days (30), silent.start (the first start),\n"
            "alert.<name>.kind=silent with days and share.\n"
            "counts.state_version (3; 2 while older instances share the group).\n"
            "An unknown key stops the program (exit 64); kafka.* keys go to librdkafka.\n"
            "\n"
            "HTTP: /v1/counts, /v1/top, /v1/children, /v1/silent, /v1/series, /v1/alerts,\n"
            "/v1/stream, /healthz, /readyz, /metrics, /\n"
            "HTTP limits: http.* keys (docs/OPERATIONS.md, \"HTTP limits\").\n");
}

static const keng_program_t program = {"keng-aggregate", KENG_PROGRAM_RDKAFKA | KENG_PROGRAM_LIBUV,
                                       usage, config_tables, 0};

static void on_server_closed(void *arg)
{
    (void)arg;
}

static void close_rest(app_t *app)
{
    if (app->denial_timer_on) {
        app->denial_timer_on = false;
        uv_close((uv_handle_t *)&app->denial_timer, NULL);
    }
    if (app->api) {
        keng_api_close(app->api);
        app->api = NULL;
    }
    if (app->srv) {
        keng_http_server_close(app->srv, on_server_closed, NULL);
        app->srv = NULL;
    }
    if (app->alertlog) {
        keng_alertlog_close(app->alertlog, SHUTDOWN_FLUSH_MS);
        app->alertlog = NULL;
    }
    /* The webhook and Alertmanager before their client, in the same turn of the loop. */
    keng_webhook_close(app->webhook);
    app->webhook = NULL;
    keng_alertmanager_close(app->alertmanager);
    app->alertmanager = NULL;
    keng_http_client_close(app->http);
    app->http = NULL;
    keng_schemareg_ids_close(app->sr_ids);
    app->sr_ids = NULL;
    keng_http_client_close(app->sr_http);
    app->sr_http = NULL;
    if (app->cluster) {
        keng_cluster_close(app->cluster);
        app->cluster = NULL;
    }
    if (app->dl) {
        keng_deadletter_close(app->dl, SHUTDOWN_FLUSH_MS);
        app->dl = NULL;
    }
    keng_registry_follow_stop(app->regs);
    keng_program_signals_close(&app->signals);
}

static void on_consumer_stopped(void *arg)
{
    app_t *app = arg;

    keng_log_info("stopped", NULL);
    close_rest(app);
}

/* Stops taking work; the loop ends once every handle has closed. */
static void shutdown_app(app_t *app)
{
    if (app->stopping)
        return;
    app->stopping = true;
    if (app->api)
        keng_api_set_consumer(app->api, NULL);
    if (app->consumer) {
        keng_consumer_t *c = app->consumer;
        app->consumer = NULL;
        keng_consumer_stop(c, on_consumer_stopped, app);
    } else {
        close_rest(app);
    }
}

/* A refused login or a missing ACL does not pass by itself (kafka_denied.h): the program stops
 * with 78, after the line that named it, rather than wait without end. */
static void on_denial_timer(uv_timer_t *timer)
{
    app_t *app = timer->data;
    const char *denial = keng_kafka_denial();

    if (!denial || app->stopping)
        return;
    keng_log_error("stopping: Kafka refuses this program's user", "denied=\"%s\" exit=%d", denial,
                   KENG_EXIT_CONFIG);
    app->exit_code = KENG_EXIT_CONFIG;
    shutdown_app(app);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    app_t *app = handle->data;

    if (signum == SIGHUP) {
        keng_web_config_reload_tls(app->web);
        return;
    }
    keng_log_info("signal received, stopping", "signal=%d", signum);
    shutdown_app(app);
}

static int config_int(app_t *app, const char *key, long long def, long long min, long long max,
                      long long *out)
{
    char errstr[512];

    if (keng_config_get_int(app->cfg, key, def, min, max, out, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return -1;
    }
    return 0;
}

static void on_alert(const keng_alert_t *t, void *arg)
{
    app_t *app = arg;

    keng_log_info("alert", "status=%s alert_id=%s rule=%s scope=%s count=%" PRId64,
                  keng_alert_status_names[t->status], t->alert_id, t->rule, t->scope_id, t->count);
    keng_alertlog_send(app->alertlog, t);
}

/* An acknowledged transition: the topic has it, so the others may hear of it. */
static void on_alert_delivered(const char *json, void *arg)
{
    app_t *app = arg;

    if (app->webhook)
        keng_webhook_post(app->webhook, json);
    keng_alertmanager_notify(app->alertmanager);
    if (app->api)
        keng_api_push_alert(app->api, json);
}

/* The metrics of the alert sinks, which the API does not own. */
static void more_metrics(FILE *out, void *arg)
{
    app_t *app = arg;

    keng_webhook_metrics(app->webhook, out);
    keng_alertmanager_metrics(app->alertmanager, out);
}

/* The host of url ("scheme://host[:port]/..."; [v6] kept bracketed) into out, or "". */
static const char *url_host(const char *url, char *out, size_t size)
{
    const char *s = url ? strstr(url, "://") : NULL;
    size_t n;

    out[0] = '\0';
    if (!s)
        return out;
    s += 3;
    n = s[0] == '[' ? strcspn(s, "]") + 1 : strcspn(s, ":/?#");
    if (n > 0 && n < size) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* The address of this instance's dashboard for others: advertised.url, else the listen
 * address with a wildcard host replaced by the host name. */
static void own_url(app_t *app, char *url, size_t size)
{
    char host[256];
    const char *listen = keng_config_get(app->cfg, "listen", DEFAULT_LISTEN);
    const char *colon = strrchr(listen, ':');
    const char *advertised = keng_config_get(app->cfg, "advertised.url", NULL);

    if (advertised && *advertised) {
        snprintf(url, size, "%s", advertised);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "keng");
    host[sizeof(host) - 1] = '\0';
    /* A wildcard address is no address for others to call: name the host instead. */
    if (!colon || colon == listen || strncmp(listen, "0.0.0.0:", 8) == 0 ||
        strncmp(listen, "[::]:", 5) == 0)
        snprintf(url, size, "http://%s:%d", host, keng_http_server_port(app->srv));
    else
        snprintf(url, size, "http://%.*s:%d", (int)(colon - listen), listen,
                 keng_http_server_port(app->srv));
}

/* The webhook's and Alertmanager's settings, checked at start so that a mistyped URL stops
 * the program rather than the first alert. */
static int check_outgoing(app_t *app)
{
    char errstr[512];
    const char *webhook_url = keng_config_get(app->cfg, "webhook.url", NULL);

    if (webhook_url && *webhook_url &&
        keng_http_client_check_url(webhook_url, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-aggregate: webhook.url: %s\n", errstr);
        return -1;
    }
    if (keng_alertmanager_options_from_config(app->cfg, NULL, &app->am_opt, errstr,
                                              sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return -1;
    }
    return 0;
}

/* The webhook and Alertmanager, once the alert state is loaded: Alertmanager's first send is
 * the state as of the last stop. */
static int start_outgoing(app_t *app)
{
    char errstr[512], url[600];
    const char *webhook_url = keng_config_get(app->cfg, "webhook.url", NULL);

    if (!(webhook_url && *webhook_url) && !app->am_opt.urls)
        return 0;
    app->http = keng_http_client_new(app->loop, errstr, sizeof(errstr));
    if (!app->http) {
        keng_log_error("cannot start the HTTP client", "error=\"%s\"", errstr);
        return -1;
    }
    if (webhook_url && *webhook_url) {
        char bearer[1024];
        int got = keng_config_read_secret(app->cfg, "webhook.bearer_token_file", bearer,
                                          sizeof(bearer), errstr, sizeof(errstr));
        app->webhook =
            got < 0 ? NULL
                    : keng_webhook_new(app->loop, app->http, webhook_url, got ? bearer : NULL,
                                       (long)app->webhook_timeout_ms, errstr, sizeof(errstr));
        memset(bearer, 0, sizeof(bearer));
        if (!app->webhook) {
            keng_log_error("cannot start the webhook", "error=\"%s\"", errstr);
            return -1;
        }
    }
    if (app->am_opt.urls) {
        own_url(app, url, sizeof(url));
        if (!app->am_opt.dashboard_url) {
            app->am_opt.dashboard_url = url;
            /* Without advertised.url either, a container's name or a loopback address: the
             * operators who read the alert somewhere else may not reach it. */
            const char *advertised = keng_config_get(app->cfg, "advertised.url", NULL);
            if (!advertised || !*advertised)
                keng_log_warn("the alerts' links lead to this instance's own address, which those "
                              "who read them may not reach: set dashboard.url to the dashboard's "
                              "address as operators open it",
                              "links=%s", url);
        }
        app->alertmanager = keng_alertmanager_new(app->loop, app->http, &app->am_opt, app->alerts,
                                                  app->reg, errstr, sizeof(errstr));
        if (!app->alertmanager) {
            keng_log_error("cannot start sending to Alertmanager", "error=\"%s\"", errstr);
            return -1;
        }
        /* The count, not the URLs: they may hold credentials (each endpoint logs its scheme,
         * host and port when it first takes the alerts). */
        keng_log_info("sending alerts to Alertmanager", "urls=%zu resend_interval_ms=%ld",
                      keng_alertmanager_endpoint_count(app->alertmanager),
                      app->am_opt.resend_interval_ms);
    }
    return 0;
}

static void apply_recovered(const keng_alert_t *t, void *arg)
{
    keng_alerts_apply(arg, t);
}

static int load_blob(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    app_t *app = arg;
    char errstr[256];
    int rc;

    if (id_len == strlen(KENG_CHECKPOINT_ALERTS) && memcmp(id, KENG_CHECKPOINT_ALERTS, id_len) == 0)
        rc = keng_alerts_load(app->alerts, data, len, errstr, sizeof(errstr));
    else
        rc = keng_alertlog_load(app->alertlog, data, len, errstr, sizeof(errstr));
    if (rc != 0)
        keng_log_error("the checkpointed alert state cannot be read; it is rebuilt from the "
                       "alert topic",
                       "error=\"%s\"", errstr);
    return 0;
}

/* The alert producer, and the alert state as of the last stop: the checkpointed state plus
 * the transitions the topic acknowledged after that checkpoint. */
static int start_alerts(app_t *app)
{
    char errstr[512];
    long long timeout;
    rd_kafka_conf_t *conf;
    long n;

    if (config_int(app, "alerts.recover.timeout.ms", 15000, 100, 600000, &timeout))
        return -1;
    app->alerts_read_timeout_ms = (int)timeout;
    conf = keng_config_kafka(app->cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    if (conf)
        app->alertlog = keng_alertlog_new(app->loop, conf,
                                          keng_config_get(app->cfg, "topic.alerts", "antt.alerts"),
                                          errstr, sizeof(errstr));
    if (!app->alertlog) {
        keng_log_error("cannot create the alert producer", "error=\"%s\"", errstr);
        return -1;
    }
    keng_alerts_set_emit(app->alerts, on_alert, app);
    keng_alertlog_on_delivered(app->alertlog, on_alert_delivered, app);
    keng_api_set_alerts(app->api, app->alerts, app->alertlog);
    if (keng_checkpoint_get_meta(app->cp, KENG_CHECKPOINT_ALERTS, load_blob, app, errstr,
                                 sizeof(errstr)) < 0 ||
        keng_checkpoint_get_meta(app->cp, KENG_CHECKPOINT_ALERTLOG, load_blob, app, errstr,
                                 sizeof(errstr)) < 0) {
        keng_log_error("cannot read the checkpointed alert state", "error=\"%s\"", errstr);
        return -1;
    }
    n = keng_alertlog_recover(app->alertlog, app->cfg, false, apply_recovered, app->alerts,
                              (int)timeout, errstr, sizeof(errstr));
    if (n < 0)
        keng_log_warn("cannot read back the alert topic", "error=\"%s\"", errstr);
    else
        keng_log_info("alert state loaded", "rules=%zu read_back=%ld",
                      keng_alerts_rule_count(app->alerts), n);
    return start_outgoing(app);
}

/* The counts topic shared by the instances of the group (docs/SCALE_OUT.md). Without it an
 * instance still counts its own partitions exactly, but answers for them only. Returns -1
 * only for a setting the user must fix. */
static int start_cluster(app_t *app, const keng_counts_options_t *kopt, long long fixed)
{
    char errstr[512], host[256], id[300], url[600];
    keng_cluster_options_t opt;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "keng");
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
    own_url(app, url, sizeof(url));
    opt.topic = keng_config_get(app->cfg, "topic.board_counts", "antt.board-counts");
    opt.instance_id = keng_config_get(app->cfg, "instance.id", id);
    opt.advertised_url = url;
    opt.group_id = keng_config_get(app->cfg, "group.id", DEFAULT_GROUP);
    opt.fixed_clock_ms = fixed;
    if (!*opt.topic) {
        keng_log_warn("topic.board_counts is empty: counts are not shared with other instances",
                      NULL);
        return 0;
    }
    app->cluster =
        keng_cluster_new(app->loop, app->cfg, &opt, app->reg, kopt, errstr, sizeof(errstr));
    if (!app->cluster) {
        if (strstr(errstr, "instance.id")) {
            fprintf(stderr, "keng-aggregate: %s\n", errstr);
            return -1;
        }
        keng_log_warn("counts are not shared with other instances; with more than one instance "
                      "in the group, rollups cover this instance's partitions only",
                      "error=\"%s\"", errstr);
    }
    return 0;
}

static int copy_blob(const char *id, size_t id_len, const void *data, size_t len, void *arg)
{
    char *out = arg;

    if (len > 0 && len < 64) {
        memcpy(out, data, len);
        out[len] = '\0';
    }
    return 0;
}

/* The consumer group's static member id (group.instance.id, KIP-345): the config's value,
 * none for a dynamic member, or by default one made up once and kept in the checkpoint, so
 * that it belongs to the state dir: whatever process runs on this state dir next is this
 * member again. Fills id (empty for none); returns 0, or -1 when it cannot be read or kept. */
static int group_instance_id(app_t *app, char *id, size_t id_size)
{
    const char *set = keng_config_get(app->cfg, "group.instance.id", "auto");
    unsigned char rnd[8];
    char errstr[512];
    keng_checkpoint_txn_t *txn;

    id[0] = '\0';
    /* An id given to librdkafka directly is already in the Kafka settings. */
    if (keng_config_get(app->cfg, "kafka.group.instance.id", NULL) || strcmp(set, "none") == 0)
        return 0;
    if (strcmp(set, "auto") != 0) {
        snprintf(id, id_size, "%s", set);
        return 0;
    }
    if (keng_checkpoint_get_meta(app->cp, INSTANCE_ID_META, copy_blob, id, errstr, sizeof(errstr)) <
        0)
        goto fail;
    if (id[0])
        return 0;
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(errstr, sizeof(errstr), "no random bytes for a new group.instance.id");
        goto fail;
    }
    snprintf(id, id_size, "keng-aggregate-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    txn = keng_checkpoint_begin(app->cp, errstr, sizeof(errstr));
    if (!txn || keng_checkpoint_put_meta(txn, INSTANCE_ID_META, id, strlen(id), errstr,
                                         sizeof(errstr)) != 0) {
        keng_checkpoint_abort(txn);
        goto fail;
    }
    if (keng_checkpoint_commit(txn, errstr, sizeof(errstr)) != 0)
        goto fail;
    keng_log_info("new consumer group instance id kept in the state dir", "group_instance_id=%s",
                  id);
    return 0;

fail:
    keng_log_error("cannot keep the consumer group instance id in the state dir", "error=\"%s\"",
                   errstr);
    return -1;
}

static int copy_watch_start(const char *id, size_t id_len, const void *state, size_t len, void *arg)
{
    (void)id;
    (void)id_len;
    if (len != sizeof(int64_t))
        return 0;
    memcpy(arg, state, sizeof(int64_t));
    return 0;
}

/* The silent rule counts a board's days from the later of its last event and the day this
 * deployment began watching (docs/ALERTS.md, "Silent boards"): the first start's clock, kept
 * in the checkpoint from then on. The counts lower it further to the earliest watch start
 * that any state they load (this checkpoint's or another instance's) carries. */
static int load_watch_start(app_t *app, int64_t now)
{
    char errstr[512];
    int64_t start = INT64_MAX;
    int rc = keng_checkpoint_get_meta(app->cp, META_WATCH_START, copy_watch_start, &start, errstr,
                                      sizeof(errstr));

    if (rc < 0) {
        keng_log_error("cannot read the checkpoint", "error=\"%s\"", errstr);
        return -1;
    }
    if (start == INT64_MAX) {
        keng_checkpoint_txn_t *txn = keng_checkpoint_begin(app->cp, errstr, sizeof(errstr));
        start = now;
        if (txn && keng_checkpoint_put_meta(txn, META_WATCH_START, &start, sizeof(start), errstr,
                                            sizeof(errstr)) != 0) {
            keng_checkpoint_abort(txn);
            txn = NULL;
        }
        /* commit frees the transaction, whether it succeeds or not. */
        if (!txn || keng_checkpoint_commit(txn, errstr, sizeof(errstr)) != 0) {
            keng_log_error("cannot write the checkpoint", "error=\"%s\"", errstr);
            return -1;
        }
    }
    keng_counts_note_watch_start(app->counts, start);
    return 0;
}

/* What run() reads from the config before anything starts. */
typedef struct settings {
    keng_consumer_options_t copt;
    keng_counts_options_t kopt;
    long long map_mb; /* the checkpoint's LMDB map */
    long long fixed;  /* clock.fixed_ms: a fixed clock for tests, 0 for the real one */
    keng_http_limits_t limits;
} settings_t;

/* Reads and checks the numbers and names run() needs. Returns 0, or 64 after saying which
 * key is wrong. */
static int read_settings(app_t *app, settings_t *st)
{
    char errstr[512];
    long long interval, events, stale, horizon, state_version;

    keng_consumer_options_default(&st->copt);
    keng_counts_options_default(&st->kopt);
    if (config_int(app, "checkpoint.interval.ms", 1000, 10, 3600000, &interval) ||
        config_int(app, "checkpoint.events", 1000000, 1, 100000000, &events) ||
        config_int(app, "checkpoint.map_size_mb", 4096, 1, 1 << 20, &st->map_mb) ||
        config_int(app, "checkpoint.stale.ms", 60000, 100, 86400000, &stale) ||
        config_int(app, "clock.fixed_ms", 0, 0, INT64_MAX, &st->fixed) ||
        config_int(app, "dedup.horizon.ms", st->kopt.dedup_horizon_ms, 0, INT64_MAX, &horizon) ||
        config_int(app, "webhook.timeout.ms", 10000, 100, 600000, &app->webhook_timeout_ms) ||
        config_int(app, "counts.state_version", st->kopt.state_version, 2, st->kopt.state_version,
                   &state_version) ||
        check_outgoing(app) != 0)
        return 64;
    if (keng_silent_options_from_config(app->cfg, &app->silent, errstr, sizeof(errstr)) != 0 ||
        keng_event_rule_from_config(app->cfg, &st->copt.rule, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return 64;
    }
    st->kopt.state_version = (int)state_version;
    /* A board's share of each partition is a unit of its own (consumers/consumer/cluster.h). */
    st->kopt.lanes = KENG_UNIT_LANES;
    st->copt.topic_incidents = keng_config_get(app->cfg, "topic.incidents", "antt.incidents");
    st->copt.topic_mediations = keng_config_get(app->cfg, "topic.mediations", "antt.mediations");
    st->copt.group_id = keng_config_get(app->cfg, "group.id", DEFAULT_GROUP);
    st->copt.checkpoint_interval_ms = interval;
    st->copt.checkpoint_events = events;
    st->copt.checkpoint_stale_ms = stale;
    st->copt.fixed_clock_ms = st->fixed;
    st->kopt.dedup_horizon_ms = horizon;
    return 0;
}

/* The registry: from registry.topic (app->regs then owns app->reg), else --registry FILE or
 * the built-in one. Returns 0, or an exit code after a log line. */
static int open_registry(app_t *app)
{
    const char *topic = keng_config_get(app->cfg, "registry.topic", NULL);
    const char *file = keng_config_get(app->cfg, "registry", NULL);
    char errstr[1024];

    if (topic && *topic) {
        if (file && *file) {
            fprintf(stderr, "keng-aggregate: give the registry by --registry FILE (registry) or "
                            "by --registry-topic TOPIC (registry.topic), not both\n");
            return KENG_EXIT_USAGE;
        }
        int rc = keng_registry_follow_open(app->cfg, topic, &app->regs, errstr, sizeof(errstr));
        if (rc != 0) {
            keng_log_error("cannot take the board registry from the topic", "topic=%s error=\"%s\"",
                           topic, errstr);
            return rc;
        }
        app->reg = keng_registry_follow_current(app->regs);
    } else {
        app->reg = keng_registry_open(file, errstr, sizeof(errstr));
        if (!app->reg) {
            keng_log_error("cannot load the board registry", "error=\"%s\"", errstr);
            return KENG_EXIT_CONFIG;
        }
        keng_program_log_registry(app->reg);
    }
    app->in_force = app->reg;
    return 0;
}

/* A version of antt.registry whose time has come. Its boards are those of the registry the
 * counts began with, in that order (a board keeps its index), so that the switch changes only
 * the units above them: the counts' and the other instances' rollups are summed again, the
 * alerts of the old communes and districts end, and the answers use the new units. A version
 * whose alert rules' level it lacks is refused (the registry in force stays). One that adds or
 * removes boards cannot be taken while running: keng-aggregate checkpoints and exits with
 * KENG_EXIT_RESTART, and started again (systemd does) it counts under that version. */
static int on_registry_switch(const keng_registry_t *next, const char *version, void *arg,
                              char *why, size_t why_size)
{
    app_t *app = arg;
    char reason[600];
    int64_t now = keng_counts_now(app->counts);
    keng_registry_t *ordered = keng_registry_in_board_order(next, app->reg, reason, sizeof(reason));
    keng_registry_t **grown;

    if (now == INT64_MIN)
        now = keng_now_ms();
    if (ordered && app->alerts &&
        keng_alerts_check_registry(app->alerts, ordered, why, why_size) != 0) {
        keng_registry_destroy(ordered); /* skipped before anything changed */
        return -1;
    }
    if (!ordered) {
        keng_log_error("a registry version that adds or removes boards takes effect: stopping to "
                       "take it at the next start (the checkpoint is written first; nothing is "
                       "lost)",
                       "version=%s why=\"%s\" exit=%d", version, reason, KENG_EXIT_RESTART);
        snprintf(why, why_size, "%s; keng-aggregate stops to take it at its next start", reason);
        app->restart_for = next;
        if (!app->stopping) {
            app->exit_code = KENG_EXIT_RESTART;
            shutdown_app(app);
        }
        return -1;
    }
    grown = realloc(app->switched, (app->nswitched + 1) * sizeof(*grown));
    if (grown)
        app->switched = grown;
    if (!grown || keng_counts_set_registry(app->counts, ordered) != 0 ||
        keng_cluster_set_registry(app->cluster, ordered) != 0) {
        keng_counts_set_registry(app->counts, app->in_force);
        keng_registry_destroy(ordered);
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    /* Half switched: the counts roll up under the new units, the alerts not yet. Nothing of a
     * switch is written to disk, so a crash here must lose nothing. */
    KENG_FAILPOINT("registry.switch");
    /* The rules' levels were checked above: only memory can fail it now. */
    if (app->alerts && keng_alerts_set_registry(app->alerts, ordered, now, why, why_size) != 0) {
        keng_counts_set_registry(app->counts, app->in_force);
        keng_cluster_set_registry(app->cluster, app->in_force);
        keng_registry_destroy(ordered);
        return -1;
    }
    app->switched[app->nswitched++] = ordered;
    app->in_force = ordered;
    keng_alertmanager_set_registry(app->alertmanager, ordered);
    if (app->api) {
        keng_api_set_registry(app->api, ordered, app->regs);
        if (!app->lineage) /* --lineage FILE stays; else the version's own */
            keng_api_set_lineage(app->api, keng_registry_follow_lineage(app->regs, version));
        keng_api_registry_switched(app->api, version);
    }
    if (app->web) /* warns of each user's unit that the version lacks */
        keng_api__check_units(ordered, app->regs, app->web, reason, sizeof(reason));
    if (app->alerts && app->consumer && keng_consumer_ready(app->consumer, reason, sizeof(reason)))
        keng_alerts_evaluate_every_scope(app->alerts, now);
    return 0;
}

/* A version still to come, read: what keng-aggregate will do at its time is said now, while
 * there is time to act (change an alert rule; expect a restart). */
static void on_registry_read(const keng_registry_t *next, const char *version, void *arg)
{
    app_t *app = arg;
    char why[600];
    keng_registry_t *ordered = keng_registry_in_board_order(next, app->reg, why, sizeof(why));

    if (!ordered)
        keng_log_warn("a registry version still to come adds or removes boards: keng-aggregate "
                      "will write its checkpoint and stop at its time, and take it at the next "
                      "start (exit 75; systemd and compose start it again)",
                      "version=%s why=\"%s\"", version, why);
    keng_registry_destroy(ordered);
    if (app->alerts && keng_alerts_check_registry(app->alerts, next, why, sizeof(why)) != 0)
        keng_log_warn("a registry version still to come lacks the level of an alert rule: it "
                      "will be skipped at its time, and the registry in force kept, unless the "
                      "rule changes first",
                      "version=%s why=\"%s\"", version, why);
}

/* How far ahead of its effective time a version's new board is waited for: the clocks of
 * keng-ingest's and keng-aggregate's machines may differ by this much. */
#define BOARD_WAIT_AHEAD_MS 60000

/* keng_consumer_board_wait_fn: an event of a board that a version about to take effect adds
 * (or the one this program stops to take) waits for it instead of being dead-lettered. */
static bool board_wait(const char *board_id, void *arg)
{
    app_t *app = arg;

    return (app->restart_for &&
            keng_registry_find_board(app->restart_for, board_id, strlen(board_id)) >= 0) ||
           keng_registry_follow_soon_has_board(app->regs, board_id, BOARD_WAIT_AHEAD_MS);
}

/* The registry, the schemas, the counts, the alert rules and the checkpoint, loaded in that
 * order. Returns 0, 64 on bad alert rules, 78 when the registry or the schemas do not load,
 * KENG_EXIT_LOCKED when another process holds the state dir, KENG_EXIT_DAMAGED when its store
 * is truncated or corrupt, or 1 (all logged). */
static int load_state(app_t *app, const settings_t *st)
{
    char errstr[512];
    const char *state_dir = keng_config_get(app->cfg, "state.dir", DEFAULT_STATE_DIR);

    int rc = open_registry(app);
    if (rc != 0)
        return rc;
    const char *lineage = keng_config_get(app->cfg, "registry.lineage", NULL);
    if (lineage && *lineage) {
        app->lineage = keng_lineage_load(lineage, errstr, sizeof(errstr));
        if (!app->lineage) {
            keng_log_error("cannot load the registry's lineage", "error=\"%s\"", errstr);
            return KENG_EXIT_CONFIG;
        }
        keng_log_info("registry lineage loaded: units show what they were formerly", "file=%s",
                      lineage);
    }
    /* schemas.dir and schemas.reader.<subject> let an operator run this consumer with the
     * schemas of another release without a rebuild. */
    app->store = keng_schema_store_from_config(app->cfg, errstr, sizeof(errstr));
    if (!app->store) {
        keng_log_error("cannot load the schemas", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    app->counts = keng_counts_new(app->reg, &st->kopt);
    if (!app->counts) {
        keng_log_error("cannot allocate the counts", NULL);
        return 1;
    }
    app->alerts = keng_alerts_new(app->cfg, app->reg, app->counts, errstr, sizeof(errstr));
    if (!app->alerts) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return 64;
    }
    if (keng_alerts_rule_count(app->alerts) == 0) {
        keng_alerts_destroy(app->alerts);
        app->alerts = NULL;
        if (app->am_opt.urls || keng_config_get(app->cfg, "webhook.url", NULL))
            keng_log_warn("webhook.url and alertmanager.url are set, but there is no alert.* "
                          "rule: nothing will be sent",
                          NULL);
    }
    if (app->check_only)
        return 0; /* the state dir is not touched */
    int failure = 0;
    app->cp = keng_checkpoint_open_checked(state_dir, (size_t)st->map_mb << 20, &failure, errstr,
                                           sizeof(errstr));
    if (!app->cp) {
        keng_log_error("cannot open the checkpoint", "error=\"%s\"", errstr);
        return failure == KENG_CHECKPOINT_LOCKED    ? KENG_EXIT_LOCKED
               : failure == KENG_CHECKPOINT_DAMAGED ? KENG_EXIT_DAMAGED
                                                    : 1;
    }
    if (load_watch_start(app, st->fixed > 0 ? st->fixed : keng_now_ms()) != 0)
        return 1;
    return 0;
}

/* The HTTP server's limits (http.*). Returns 0, or 64 after saying which key is wrong. */
static int read_limits(app_t *app, keng_http_limits_t *limits)
{
    char errstr[512];

    keng_http_limits_default(limits);
    if (keng_http_limits_from_config(limits, app->cfg, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return 64;
    }
    return 0;
}

/* HTTP first: a taken port fails before the group sees this instance, and /readyz answers
 * 503 while the consumer starts. Returns 0, or 1 (logged). */
static int start_http(app_t *app, const keng_http_limits_t *limits)
{
    const char *listen = keng_config_get(app->cfg, "listen", DEFAULT_LISTEN);

    app->api = keng_api_new(app->loop, app->reg, app->counts);
    if (app->api)
        keng_api_set_silent(app->api, &app->silent);
    app->srv = app->api ? keng_http_server_new(app->loop, limits, keng_api_handle, app->api) : NULL;
    if (!app->srv) {
        keng_log_error("cannot create the HTTP server", NULL);
        return 1;
    }
    keng_api_set_server(app->api, app->srv);
    keng_api_set_more_metrics(app->api, more_metrics, app);
    keng_api_set_web_config(app->api, app->web);
    keng_api_set_lineage(app->api, app->lineage ? app->lineage
                                                : keng_registry_follow_lineage(app->regs, NULL));
    keng_api_set_registry(app->api, app->in_force, app->regs);
    if (keng_http_server_set_tls(app->srv, keng_web_config_tls(app->web)) != 0) {
        keng_log_error("cannot start TLS: out of memory", NULL);
        return 1;
    }
    /* The names others reach it by (its links in alerts) are its names too. */
    char advertised[256], dashboard[256], errstr[256];
    const char *names[] = {
        url_host(keng_config_get(app->cfg, "advertised.url", NULL), advertised, sizeof(advertised)),
        url_host(keng_config_get(app->cfg, "dashboard.url", NULL), dashboard, sizeof(dashboard)),
        NULL};
    if (keng_http_server_allow_hosts(app->srv, app->cfg, names, errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot take the allowed hosts", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    int rc = keng_http_server_listen(app->srv, listen);
    if (rc < 0) {
        keng_log_error("cannot listen", "listen=%s error=\"%s\"", listen, uv_strerror(rc));
        return 1;
    }
    keng_log_info("listening", "listen=%s port=%d scheme=%s", listen,
                  keng_http_server_port(app->srv),
                  keng_web_config_tls(app->web) ? "https" : "http");
    keng_web_config_log_tls(app->web);
    return 0;
}

static int start_consuming(app_t *app, settings_t *st);

static void on_alert_id(const int32_t *ids, void *arg)
{
    app_t *app = arg;
    int rc;

    if (app->alerts)
        keng_avro_alert_use_id(ids[0]);
    rc = start_consuming(app, app->pending);
    if (rc != 0 && !app->stopping) {
        app->exit_code = rc;
        shutdown_app(app);
    }
}

/* Schema Registry mode: consuming waits for the registry's id of the alerts' schema (with
 * alert rules); /readyz says so meanwhile. */
static int start_registry(app_t *app, settings_t *st)
{
    char errstr[256];
    const char *subject = app->sr.subjects[2];
    const char *json = keng_schema_store_json(app->store, KENG_SCHEMA_ID_ALERT);

    app->sr_http = keng_http_client_new(app->loop, errstr, sizeof(errstr));
    if (!app->sr_http) {
        keng_log_error("cannot create the HTTP client", "error=\"%s\"", errstr);
        return 1;
    }
    app->pending = st;
    keng_log_info("schema ids come from the schema registry", "registry=%s urls=%d",
                  app->sr.shown[0], app->sr.url_count);
    if (app->alerts && json)
        keng_api_set_starting_reason(app->api, "waiting for the schema registry to give the "
                                               "alerts' schema id");
    app->sr_ids = keng_schemareg_ids_start(app->loop, app->sr_http, &app->sr, &subject, &json,
                                           app->alerts && json ? 1 : 0, on_alert_id, app);
    return app->sr_ids ? 0 : 1;
}

/* The Kafka side: dead letters, the alert topic, the shared counts and the consumer, which
 * joins the group last. Returns 0, 64 on a bad cluster set-up, 78 when librdkafka refuses the
 * kafka.* settings, or 1 (logged). */
static int start_kafka(app_t *app, settings_t *st)
{
    char errstr[512];

    rd_kafka_conf_t *pconf =
        keng_config_kafka(app->cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    if (!pconf) {
        keng_log_error("librdkafka refuses the Kafka settings", "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    app->dl = keng_deadletter_new(app->loop, pconf,
                                  keng_config_get(app->cfg, "topic.deadletter", "antt.deadletter"),
                                  errstr, sizeof(errstr));
    if (!app->dl) {
        keng_log_error("cannot create the dead-letter producer", "error=\"%s\"", errstr);
        return 1;
    }
    if (app->sr_on)
        return start_registry(app, st);
    return start_consuming(app, st);
}

/* The rest of the Kafka side, once the alerts' writer id is known in Schema Registry mode:
 * the alert topic, the shared counts and the consumer, which joins the group last. */
static int start_consuming(app_t *app, settings_t *st)
{
    char errstr[512], instance_id[128];

    if (app->alerts && start_alerts(app) != 0)
        return 1;
    if (group_instance_id(app, instance_id, sizeof(instance_id)) != 0)
        return 1;
    st->copt.group_instance_id = instance_id[0] ? instance_id : NULL;
    if (start_cluster(app, &st->kopt, st->fixed) != 0)
        return 64;
    app->consumer = keng_consumer_new(app->loop, app->cfg, &st->copt, app->store, app->reg,
                                      app->counts, app->cp, app->dl, errstr, sizeof(errstr));
    st->copt.group_instance_id = NULL; /* instance_id ends with this call */
    if (!app->consumer) {
        keng_log_error("cannot start the consumer", "error=\"%s\"", errstr);
        return 1;
    }
    if (app->sr_on)
        keng_consumer_use_schema_registry(app->consumer, app->sr_http, &app->sr);
    keng_api_set_starting_reason(app->api, NULL);
    keng_api_set_consumer(app->api, app->consumer);
    keng_consumer_set_cluster(app->consumer, app->cluster);
    keng_api_set_cluster(app->api, app->cluster);
    keng_consumer_set_alerts(app->consumer, app->alerts, app->alertlog,
                             app->alerts_read_timeout_ms);
    if (app->regs)
        keng_consumer_set_board_wait(app->consumer, board_wait, app);
    return 0;
}

/* --check-config, once the config, registry, schemas, rules and limits loaded: librdkafka
 * judges the Kafka settings of both roles, and nothing connects. Returns 0 or 78. */
static int check_kafka_settings(app_t *app)
{
    int rc = keng_program_check_kafka(app->cfg, true);

    if (rc != 0)
        return rc;
    fprintf(stderr,
            "keng-aggregate: the config loads: registry of %zu boards, schemas, %zu alert "
            "rule(s), HTTP limits, Kafka settings; nothing was started\n",
            keng_registry_board_count(app->reg),
            app->alerts ? (size_t)keng_alerts_rule_count(app->alerts) : (size_t)0);
    return 0;
}

/* The web config file (users and their scopes), and the refusal to serve the counts per
 * hamlet to anyone on the network without one. Returns 0, KENG_EXIT_USAGE (a file that does
 * not load; an unsafe listen), or KENG_EXIT_CONFIG (a scope the registry does not have). */
static int load_web_config(app_t *app)
{
    const char *path = keng_config_get(app->cfg, "web.config.file", NULL);
    const char *listen = keng_config_get(app->cfg, "listen", DEFAULT_LISTEN);
    char errstr[512];

    if (keng_web_config_from_config(app->cfg, &app->web, &app->insecure_listen, errstr,
                                    sizeof(errstr)) != 0) {
        keng_log_error("the web settings do not load", "error=\"%s\"", errstr);
        return KENG_EXIT_USAGE;
    }
    if (app->web) {
        if (keng_api__check_units(app->reg, app->regs, app->web, errstr, sizeof(errstr)) != 0) {
            keng_log_error("the web config file names a unit the registry does not have",
                           "file=%s error=\"%s\"", path, errstr);
            return KENG_EXIT_CONFIG;
        }
        keng_log_info("web config loaded", "file=%s users=%zu", path,
                      keng_web_config_user_count(app->web));
    }
    if (!keng_web_listen_is_loopback(listen) && !app->insecure_listen &&
        (!keng_web_config_has_users(app->web) || !keng_web_config_tls(app->web))) {
        keng_log_error("refusing to serve the counts per hamlet to the network without users "
                       "and TLS: give --web.config.file with basic_auth_users, user_scopes and "
                       "tls_server_config, or, when a proxy in front terminates TLS and "
                       "authenticates every user and nothing else can reach this port, "
                       "--insecure-listen (docs/OPERATIONS.md, \"Security\")",
                       "listen=%s users=%zu tls=%s", listen, keng_web_config_user_count(app->web),
                       keng_web_config_tls(app->web) ? "yes" : "no");
        return KENG_EXIT_USAGE;
    }
    return 0;
}
static int run_loaded(app_t *app);

static int run(app_t *app)
{
    char errstr[512];
    int rc = keng_schemareg_conf_from_config(app->cfg, &app->sr, errstr, sizeof(errstr));

    if (rc < 0) {
        keng_log_error("the schema registry's config does not load", "error=\"%s\"", errstr);
        rc = KENG_EXIT_CONFIG;
    } else {
        app->sr_on = rc > 0;
        rc = run_loaded(app);
    }
    keng_schemareg_conf_free(&app->sr);
    return rc;
}

static int run_loaded(app_t *app)
{
    char errstr[512];
    settings_t st;
    int rc = read_settings(app, &st);
    if (rc != 0)
        return rc;
    rc = load_state(app, &st);
    if (rc == 0)
        rc = load_web_config(app);
    if (rc == 0)
        rc = read_limits(app, &st.limits);
    if (rc != 0)
        return rc;
    if (app->check_only)
        return check_kafka_settings(app);
    rc = start_http(app, &st.limits);
    if (rc == 0)
        rc = start_kafka(app, &st);
    if (rc != 0) {
        if (keng_kafka_denial())
            rc = KENG_EXIT_CONFIG;
        shutdown_app(app);
        uv_run(app->loop, UV_RUN_DEFAULT);
        return rc;
    }
    if (app->regs && keng_registry_follow_start(app->regs, app->loop, on_registry_switch, app,
                                                errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot follow the registry topic", "error=\"%s\"", errstr);
        shutdown_app(app);
        uv_run(app->loop, UV_RUN_DEFAULT);
        return KENG_EXIT_CONFIG;
    }
    if (app->regs)
        keng_registry_follow_on_read(app->regs, on_registry_read, app);
    keng_program_signals_start(&app->signals, app->loop, on_signal, app, 1);
    uv_timer_init(app->loop, &app->denial_timer);
    app->denial_timer.data = app;
    app->denial_timer_on = true;
    uv_timer_start(&app->denial_timer, on_denial_timer, DENIAL_CHECK_MS, DENIAL_CHECK_MS);
    uv_run(app->loop, UV_RUN_DEFAULT);
    return app->exit_code;
}

/* --hash-password: a bcrypt hash for basic_auth_users of the password on standard input (its
 * first line), so that no password is ever on a command line. */
static int hash_password(void)
{
    char password[256], hash[64], errstr[256];

    if (!fgets(password, sizeof(password), stdin)) {
        fprintf(stderr, "keng-aggregate: --hash-password reads the password from standard "
                        "input: printf '%%s' \"$PASSWORD\" | keng-aggregate --hash-password\n");
        return KENG_EXIT_USAGE;
    }
    password[strcspn(password, "\r\n")] = '\0';
    if (!password[0]) {
        fprintf(stderr, "keng-aggregate: --hash-password: the password is empty\n");
        return KENG_EXIT_USAGE;
    }
    int rc = keng_web_hash_password(password, hash, sizeof(hash), errstr, sizeof(errstr));
    OPENSSL_cleanse(password, sizeof(password));
    if (rc != 0) {
        fprintf(stderr, "keng-aggregate: %s\n", errstr);
        return 1;
    }
    printf("%s\n", hash);
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {0};
    const keng_program_flag_t table[] = {
        KENG_FLAG("config", &opt.config_path, NULL),
        KENG_FLAG("brokers", &opt.brokers, "brokers"),
        KENG_FLAG("registry", &opt.registry, "registry"),
        KENG_FLAG("registry-topic", &opt.registry_topic, "registry.topic"),
        KENG_FLAG("lineage", &opt.lineage, "registry.lineage"),
        KENG_FLAG("listen", &opt.listen, "listen"),
        KENG_FLAG("state-dir", &opt.state_dir, "state.dir"),
        KENG_FLAG("group", &opt.group, "group.id"),
        KENG_FLAG("max-connections", &opt.max_connections, "http.max_connections"),
        KENG_FLAG("max-streams", &opt.max_streams, "http.max_streams"),
        KENG_FLAG("web.config.file", &opt.web_config, "web.config.file"),
        KENG_FLAG_SET("insecure-listen", &opt.insecure_listen),
        KENG_FLAG_SET("hash-password", &opt.hash_password),
        KENG_FLAG_SET("check-config", &opt.check_config),
        KENG_FLAGS_END,
    };
    keng_config_flag_t flags[KENG_PROGRAM_MAX_FLAGS + 2];
    app_t app = {0};
    uv_loop_t loop;

    keng_program_start(&program);
    int rc = keng_program_parse(&program, argc, argv, table, NULL);
    if (rc >= 0)
        return rc;
    if (opt.hash_password)
        return hash_password();
    const char *clock_env = getenv("KENG_CLOCK_MS");
    int n = keng_program_overlay(table, flags, KENG_PROGRAM_MAX_FLAGS + 1);
    flags[n] = (keng_config_flag_t){"clock.fixed_ms", clock_env && *clock_env ? clock_env : NULL};
    flags[n + 1] = (keng_config_flag_t){NULL, NULL};
    app.cfg = keng_program_config(&program, opt.config_path, flags);
    if (!app.cfg)
        return 64;
    app.check_only = opt.check_config;
    if (opt.insecure_listen)
        keng_config_set(app.cfg, "http.insecure_listen", "true");
    if ((rc = keng_program_require_brokers(app.cfg)) != 0) {
        keng_config_destroy(app.cfg);
        return rc;
    }

    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    app.loop = &loop;
    rc = run(&app);

    if (uv_loop_close(&loop) != 0)
        keng_log_warn("the loop still had handles at exit", NULL);
    keng_alerts_destroy(app.alerts);
    keng_counts_destroy(app.counts);
    keng_checkpoint_close(app.cp);
    keng_schema_store_destroy(app.store);
    if (app.regs)
        keng_registry_follow_destroy(app.regs); /* it owns app.reg */
    else
        keng_registry_destroy(app.reg);
    for (size_t i = 0; i < app.nswitched; i++)
        keng_registry_destroy(app.switched[i]);
    free(app.switched);
    keng_lineage_destroy(app.lineage);
    keng_web_config_destroy(app.web);
    keng_config_destroy(app.cfg);
    return rc;
}
