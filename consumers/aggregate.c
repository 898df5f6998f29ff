/* keng-aggregate: reads the incident and mediation topics on a libuv loop, keeps rolling
 * counts per board rolled up to commune, district and province, checkpoints them with the
 * input offsets in LMDB, and serves them over HTTP. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <uv.h>

#include "alertlog.h"
#include "alerts.h"
#include "api.h"
#include "avro_codec.h"
#include "checkpoint.h"
#include "cluster.h"
#include "config.h"
#include "consumer.h"
#include "counts.h"
#include "deadletter.h"
#include "http_server.h"
#include "log.h"
#include "registry.h"

#define DEFAULT_LISTEN    "127.0.0.1:8080"
#define DEFAULT_STATE_DIR "./keng-state"
#define DEFAULT_GROUP     "keng-aggregate"
#define SHUTDOWN_FLUSH_MS 5000
#define INSTANCE_ID_META  "group.instance.id"

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry;
    const char *listen;
    const char *state_dir;
    const char *group;
};

/* Everything the program runs; each piece is closed in reverse order of its creation. */
typedef struct app {
    uv_loop_t *loop;
    keng_config_t *cfg;
    keng_registry_t *reg;
    keng_schema_store_t *store;
    keng_counts_t *counts;
    keng_checkpoint_t *cp;
    keng_deadletter_t *dl;
    keng_alerts_t *alerts;     /* NULL without alert.* rules */
    keng_alertlog_t *alertlog; /* with alerts */
    int alerts_read_timeout_ms;
    keng_cluster_t *cluster; /* NULL when the counts topic is not usable */
    keng_consumer_t *consumer;
    keng_api_t *api;
    keng_http_server_t *srv;
    uv_signal_t sigint, sigterm;
    bool signals_open;
    bool stopping;
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
            "  --listen HOST:PORT HTTP address (default " DEFAULT_LISTEN ")\n"
            "  --state-dir DIR    LMDB checkpoint directory (default " DEFAULT_STATE_DIR ")\n"
            "  --group ID         consumer group (default " DEFAULT_GROUP ")\n"
            "  --help, --version\n"
            "\n"
            "Config keys: topic.incidents, topic.mediations, topic.deadletter (default antt.*),\n"
            "checkpoint.interval.ms (1000), checkpoint.events (1000000), checkpoint.map_size_mb\n"
            "(4096), dedup.horizon.ms (30 days), clock.fixed_ms (tests; also KENG_CLOCK_MS),\n"
            "topic.board_counts (antt.board-counts), instance.id (hostname-pid),\n"
            "advertised.url (http://<listen>), group.instance.id (auto: kept in the state dir;\n"
            "none: a dynamic member), and registry, listen, state.dir, group.id as the flags.\n"
            "Scale-out: docs/SCALE_OUT.md.\n"
            "Alerts: alert.<name>.level|window|kind|category|resolution|outcome|threshold|\n"
            "resolve_below|summary (docs/ALERTS.md), topic.alerts (antt.alerts), webhook.url,\n"
            "alerts.recover.timeout.ms (15000).\n"
            "\n"
            "HTTP: /v1/counts, /v1/top, /v1/alerts, /v1/stream, /healthz, /readyz, /metrics, /\n");
}

static void on_server_closed(void *arg)
{
    (void)arg;
}

static void close_rest(app_t *app)
{
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
    if (app->cluster) {
        keng_cluster_close(app->cluster);
        app->cluster = NULL;
    }
    if (app->dl) {
        keng_deadletter_close(app->dl, SHUTDOWN_FLUSH_MS);
        app->dl = NULL;
    }
    if (app->signals_open) {
        uv_close((uv_handle_t *)&app->sigint, NULL);
        uv_close((uv_handle_t *)&app->sigterm, NULL);
        app->signals_open = false;
    }
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

static void on_signal(uv_signal_t *handle, int signum)
{
    app_t *app = handle->data;

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

static void on_alert_delivered(const char *json, void *arg)
{
    app_t *app = arg;

    if (app->api)
        keng_api_push_alert(app->api, json);
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
        app->alertlog = keng_alertlog_new(
            app->loop, conf, keng_config_get(app->cfg, "topic.alerts", "antt.alerts"),
            keng_config_get(app->cfg, "webhook.url", NULL), errstr, sizeof(errstr));
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
    return 0;
}

/* The counts topic shared by the instances of the group (docs/SCALE_OUT.md). Without it an
 * instance still counts its own partitions exactly, but answers for them only. Returns -1
 * only for a setting the user must fix. */
static int start_cluster(app_t *app, const keng_counts_options_t *kopt, long long fixed)
{
    char errstr[512], host[256], id[300], url[600];
    const char *listen = keng_config_get(app->cfg, "listen", DEFAULT_LISTEN);
    const char *colon = strrchr(listen, ':');
    keng_cluster_options_t opt;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "keng");
    host[sizeof(host) - 1] = '\0';
    snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
    /* A wildcard address is no address for others to call: name the host instead. */
    if (!colon || colon == listen || strncmp(listen, "0.0.0.0:", 8) == 0 ||
        strncmp(listen, "[::]:", 5) == 0)
        snprintf(url, sizeof(url), "http://%s:%d", host, keng_http_server_port(app->srv));
    else
        snprintf(url, sizeof(url), "http://%.*s:%d", (int)(colon - listen), listen,
                 keng_http_server_port(app->srv));
    opt.topic = keng_config_get(app->cfg, "topic.board_counts", "antt.board-counts");
    opt.instance_id = keng_config_get(app->cfg, "instance.id", id);
    opt.advertised_url = keng_config_get(app->cfg, "advertised.url", url);
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

static int run(app_t *app)
{
    char errstr[512], instance_id[128];
    keng_consumer_options_t copt;
    keng_counts_options_t kopt;
    long long interval, events, map_mb, fixed, horizon;
    const char *listen = keng_config_get(app->cfg, "listen", DEFAULT_LISTEN);
    const char *state_dir = keng_config_get(app->cfg, "state.dir", DEFAULT_STATE_DIR);
    int rc;

    keng_consumer_options_default(&copt);
    keng_counts_options_default(&kopt);
    if (config_int(app, "checkpoint.interval.ms", 1000, 10, 3600000, &interval) ||
        config_int(app, "checkpoint.events", 1000000, 1, 100000000, &events) ||
        config_int(app, "checkpoint.map_size_mb", 4096, 1, 1 << 20, &map_mb) ||
        config_int(app, "clock.fixed_ms", 0, 0, INT64_MAX, &fixed) ||
        config_int(app, "dedup.horizon.ms", kopt.dedup_horizon_ms, 0, INT64_MAX, &horizon))
        return 64;
    copt.topic_incidents = keng_config_get(app->cfg, "topic.incidents", "antt.incidents");
    copt.topic_mediations = keng_config_get(app->cfg, "topic.mediations", "antt.mediations");
    copt.group_id = keng_config_get(app->cfg, "group.id", DEFAULT_GROUP);
    copt.checkpoint_interval_ms = interval;
    copt.checkpoint_events = events;
    copt.fixed_clock_ms = fixed;
    kopt.dedup_horizon_ms = horizon;

    app->reg =
        keng_registry_open(keng_config_get(app->cfg, "registry", NULL), errstr, sizeof(errstr));
    if (!app->reg) {
        keng_log_error("cannot load the board registry", "error=\"%s\"", errstr);
        return 1;
    }
    /* schemas.dir and schemas.reader.<subject> let an operator run this consumer with the
     * schemas of another release without a rebuild. */
    app->store = keng_schema_store_from_config(app->cfg, errstr, sizeof(errstr));
    if (!app->store) {
        keng_log_error("cannot load the schemas", "error=\"%s\"", errstr);
        return 1;
    }
    app->counts = keng_counts_new(app->reg, &kopt);
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
    }
    app->cp = keng_checkpoint_open(state_dir, (size_t)map_mb << 20, errstr, sizeof(errstr));
    if (!app->cp) {
        keng_log_error("cannot open the checkpoint", "error=\"%s\"", errstr);
        return 1;
    }

    /* HTTP first: a taken port fails before the group sees this instance, and /readyz
     * answers 503 while the consumer starts. */
    app->api = keng_api_new(app->loop, app->reg, app->counts);
    app->srv = app->api ? keng_http_server_new(app->loop, NULL, keng_api_handle, app->api) : NULL;
    if (!app->srv) {
        keng_log_error("cannot create the HTTP server", NULL);
        rc = 1;
        goto fail;
    }
    keng_api_set_server(app->api, app->srv);
    rc = keng_http_server_listen(app->srv, listen);
    if (rc < 0) {
        keng_log_error("cannot listen", "listen=%s error=\"%s\"", listen, uv_strerror(rc));
        rc = 1;
        goto fail;
    }
    keng_log_info("listening", "listen=%s port=%d", listen, keng_http_server_port(app->srv));

    rd_kafka_conf_t *pconf =
        keng_config_kafka(app->cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    if (pconf)
        app->dl = keng_deadletter_new(
            app->loop, pconf, keng_config_get(app->cfg, "topic.deadletter", "antt.deadletter"),
            errstr, sizeof(errstr));
    if (!app->dl) {
        keng_log_error("cannot create the dead-letter producer", "error=\"%s\"", errstr);
        rc = 1;
        goto fail;
    }
    if (app->alerts && start_alerts(app) != 0) {
        rc = 1;
        goto fail;
    }
    if (group_instance_id(app, instance_id, sizeof(instance_id)) != 0) {
        rc = 1;
        goto fail;
    }
    copt.group_instance_id = instance_id[0] ? instance_id : NULL;
    if (start_cluster(app, &kopt, fixed) != 0) {
        rc = 64;
        goto fail;
    }
    app->consumer = keng_consumer_new(app->loop, app->cfg, &copt, app->store, app->reg, app->counts,
                                      app->cp, app->dl, errstr, sizeof(errstr));
    if (!app->consumer) {
        keng_log_error("cannot start the consumer", "error=\"%s\"", errstr);
        rc = 1;
        goto fail;
    }
    keng_api_set_consumer(app->api, app->consumer);
    keng_consumer_set_cluster(app->consumer, app->cluster);
    keng_api_set_cluster(app->api, app->cluster);
    keng_consumer_set_alerts(app->consumer, app->alerts, app->alertlog,
                             app->alerts_read_timeout_ms);

    uv_signal_init(app->loop, &app->sigint);
    uv_signal_init(app->loop, &app->sigterm);
    app->sigint.data = app->sigterm.data = app;
    app->signals_open = true;
    uv_signal_start(&app->sigint, on_signal, SIGINT);
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);

    uv_run(app->loop, UV_RUN_DEFAULT);
    return 0;

fail:
    shutdown_app(app);
    uv_run(app->loop, UV_RUN_DEFAULT);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"brokers", required_argument, NULL, 'b'},
        {"registry", required_argument, NULL, 'r'},
        {"listen", required_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 's'},
        {"group", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct options opt = {0};
    app_t app = {0};
    uv_loop_t loop;
    const char *clock_env;
    int c, rc;

    keng_log_set_program("keng-aggregate");
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt.config_path = optarg;
            break;
        case 'b':
            opt.brokers = optarg;
            break;
        case 'r':
            opt.registry = optarg;
            break;
        case 'l':
            opt.listen = optarg;
            break;
        case 's':
            opt.state_dir = optarg;
            break;
        case 'g':
            opt.group = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("keng-aggregate %s (librdkafka %s, libuv %s)\n", KENG_VERSION,
                   rd_kafka_version_str(), uv_version_string());
            return 0;
        default:
            usage(stderr);
            return 64;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "keng-aggregate: unexpected argument '%s'\n", argv[optind]);
        return 64;
    }

    clock_env = getenv("KENG_CLOCK_MS");
    const keng_config_flag_t flags[] = {
        {"brokers", opt.brokers},
        {"registry", opt.registry},
        {"listen", opt.listen},
        {"state.dir", opt.state_dir},
        {"group.id", opt.group},
        {"clock.fixed_ms", clock_env && *clock_env ? clock_env : NULL},
        {NULL, NULL},
    };
    app.cfg = keng_config_from_args("keng-aggregate", opt.config_path, flags);
    if (!app.cfg)
        return 64;
    if (!keng_config_brokers(app.cfg))
        keng_log_warn("no bootstrap servers: set --brokers, KENG_BROKERS or "
                      "kafka.bootstrap.servers",
                      NULL);

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
    keng_registry_destroy(app.reg);
    keng_config_destroy(app.cfg);
    return rc;
}
