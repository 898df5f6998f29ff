/* keng-simulate: a field simulator that streams realistic incidents and mediations over the
 * board registry into Kafka (or as NDJSON on stdout), at a given rate, reproducibly. The only
 * thing it reads from Kafka is the registry's versions (registry.topic), once, at start. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "event.h"
#include "event_rule.h"
#include "log.h"
#include "avro_codec.h"
#include "producer.h"
#include "program.h"
#include "registry.h"
#include "registry_topic.h"
#include "sim.h"
#include "timeutil.h"

#define EXIT_DELIVERY 2

#define DAY_MS           (24 * 3600 * 1000LL)
#define SEND_TIMEOUT_MS  60000
#define FLUSH_TIMEOUT_MS 60000
/* With --rate 0 and no --count, the simulated clock runs at this many events a second. */
#define FAST_EVENTS_PER_S 100.0
/* Of the late events reported within a week after a switch, those that occurred before it. */
#define DEFAULT_CROSSING 0.5

enum output { OUT_KAFKA, OUT_NDJSON };

/* The keys keng-simulate reads itself; the producer and the schema store list theirs. */
static keng_config_keys_t simulate_keys = {"registry.topic", NULL};
static const char *const *const config_tables[] = {keng_config_common_keys,
                                                   simulate_keys,
                                                   keng_producer_config_keys,
                                                   keng_schema_store_config_keys,
                                                   keng_schemareg_config_keys,
                                                   keng_event_rule_config_keys,
                                                   NULL};

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry_path;
    const char *registry_topic;
    double rate;
    uint64_t count;
    uint64_t seed;
    bool seed_given;
    int64_t start_ms;
    bool start_given;
    int64_t now_ms;
    bool now_given;
    double late, out_of_order, duplicates, crossing;
    enum output output;
    int check_config; /* load everything, send and write nothing */
};

/* A registry version the events' boards are drawn from: the one of --registry FILE or the
 * built-in one, or those of registry.topic that a simulation from its start can use. */
struct version {
    keng_registry_t *reg; /* owned */
    int64_t effective_ms; /* INT64_MIN for a file or the built-in registry */
    char key[32];         /* the topic's key, its effective time; "" for a file */
};

struct app {
    struct options opt;
    keng_config_t *cfg;
    struct version *versions; /* oldest first */
    size_t nversions;
    int64_t now0; /* the simulator's present at start (--now or the wall clock) */
    keng_sim_t *sim;
    keng_producer_t *producer;
    keng_event_rule_t rule; /* events.min_occurred_at, events.max_future_ms */
    uint64_t delivered, failed, send_errors;
};

static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-simulate [OPTIONS]\n"
            "Streams realistic incidents and mediations of the registry's boards into Kafka.\n"
            "\n"
            "  --config FILE         config file (kafka.*, topic.incidents, topic.mediations,\n"
            "                        events.min_occurred_at and events.max_future_ms: an event\n"
            "                        outside them stops the run, exit 2)\n"
            "  --brokers LIST        bootstrap servers (else $KENG_BROKERS, else the config)\n"
            "  --registry FILE       board registry CSV (else the generated default)\n"
            "  --registry-topic TOPIC  the registry versions of TOPIC (config registry.topic,\n"
            "                        e.g. antt.registry) instead of --registry, read once at\n"
            "                        start: each event's board is one of the version in force\n"
            "                        at its occurred_at, so boards a version adds appear after\n"
            "                        its time and boards it removes before\n"
            "  --rate EPS            events per second on average (default 10; 0 = as fast\n"
            "                        as possible)\n"
            "  --count N             stop after N events, duplicates included (default 0 =\n"
            "                        until SIGINT or SIGTERM)\n"
            "  --seed N              PRNG seed: the same seed, --now and --start-time give\n"
            "                        the same events (default: from the clock; printed)\n"
            "  --now TIME            the simulator's present (default: the wall clock)\n"
            "  --start-time TIME     simulated time of the first event; with --count the\n"
            "                        events are spread from it to --now (backfill)\n"
            "  --late FRACTION       share of events reported 1 hour to 7 days late\n"
            "  --late-crossing FRACTION  of the late events reported in the week after a\n"
            "                        version's time, the share that occurred before it\n"
            "                        (default 0.5; with --registry-topic)\n"
            "  --out-of-order FRACTION  share of events sent 1-20 events after later ones\n"
            "  --duplicates FRACTION share of events that resend an earlier event exactly\n"
            "  --output kafka|ndjson kafka (default), or NDJSON on stdout (with \"kind\")\n"
            "  --check-config        load the config, registry, schemas and Kafka settings,\n"
            "                        say what is wrong (exit 64 or 78) or that they load\n"
            "                        (exit 0), and start nothing\n"
            "  --help, --version\n"
            "\n"
            "TIME is RFC 3339 with an offset (2025-03-01T21:15:00+07:00) or epoch ms.\n"
            "Events follow the day in Asia/Ho_Chi_Minh (busiest in the evening); a district\n"
            "gets events in proportion to its boards; 3 in 5 events are incidents, of which\n"
            "about 40%% go to police. With --rate 0 and no --start-time the events cover the\n"
            "last 24 hours. To simulate across a registry version's time, span it with\n"
            "--start-time and --now (or run past it). A summary goes to stderr at exit.\n"
            "Exit status: 0 done (or stopped by a signal), 2 events not delivered, 64 usage,\n"
            "69 no broker answered (--registry-topic), 78 configuration.\n");
}

static const keng_program_t program = {"keng-simulate", KENG_PROGRAM_RDKAFKA, usage, config_tables,
                                       1};

static int parse_time(const char *s, int64_t *out)
{
    char *end = NULL;
    size_t len = strlen(s);
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (len > 0 && errno == 0 && end == s + len) {
        *out = v;
        return 0;
    }
    return keng_time_parse_rfc3339(s, len, out);
}

static int parse_fraction(const char *name, const char *s, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1)) {
        fprintf(stderr, "keng-simulate: %s takes a fraction between 0 and 1, not '%s'\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* The flags that take a number, a time or a choice: each checks its value and stores it in
 * the options at to. Returns 0, or KENG_EXIT_USAGE after saying on stderr what it takes. */
static int take_rate(const char *arg, void *to)
{
    struct options *opt = to;
    char *end;

    opt->rate = strtod(arg, &end);
    if (end == arg || *end || !(opt->rate >= 0) || !isfinite(opt->rate)) {
        fprintf(stderr, "keng-simulate: --rate takes events per second >= 0\n");
        return KENG_EXIT_USAGE;
    }
    return 0;
}

static int take_count(const char *arg, void *to)
{
    struct options *opt = to;
    char *end;

    errno = 0;
    opt->count = strtoull(arg, &end, 10);
    if (end == arg || *end || errno || arg[0] == '-') {
        fprintf(stderr, "keng-simulate: --count takes a whole number >= 0\n");
        return KENG_EXIT_USAGE;
    }
    return 0;
}

static int take_seed(const char *arg, void *to)
{
    struct options *opt = to;
    char *end;

    errno = 0;
    opt->seed = strtoull(arg, &end, 0);
    if (end == arg || *end || errno) {
        fprintf(stderr, "keng-simulate: --seed takes a whole number\n");
        return KENG_EXIT_USAGE;
    }
    opt->seed_given = true;
    return 0;
}

static int take_time(const char *name, const char *arg, int64_t *out, bool *given)
{
    if (parse_time(arg, out) < 0) {
        fprintf(stderr, "keng-simulate: %s takes RFC 3339 with an offset or epoch ms, not '%s'\n",
                name, arg);
        return KENG_EXIT_USAGE;
    }
    *given = true;
    return 0;
}

static int take_now(const char *arg, void *to)
{
    struct options *opt = to;
    return take_time("--now", arg, &opt->now_ms, &opt->now_given);
}

static int take_start(const char *arg, void *to)
{
    struct options *opt = to;
    return take_time("--start-time", arg, &opt->start_ms, &opt->start_given);
}

static int take_late(const char *arg, void *to)
{
    struct options *opt = to;
    return parse_fraction("--late", arg, &opt->late) < 0 ? KENG_EXIT_USAGE : 0;
}

static int take_out_of_order(const char *arg, void *to)
{
    struct options *opt = to;
    return parse_fraction("--out-of-order", arg, &opt->out_of_order) < 0 ? KENG_EXIT_USAGE : 0;
}

static int take_crossing(const char *arg, void *to)
{
    struct options *opt = to;
    return parse_fraction("--late-crossing", arg, &opt->crossing) < 0 ? KENG_EXIT_USAGE : 0;
}

static int take_duplicates(const char *arg, void *to)
{
    struct options *opt = to;
    if (parse_fraction("--duplicates", arg, &opt->duplicates) < 0)
        return KENG_EXIT_USAGE;
    if (opt->duplicates >= 1) {
        fprintf(stderr, "keng-simulate: --duplicates must be below 1\n");
        return KENG_EXIT_USAGE;
    }
    return 0;
}

static int take_output(const char *arg, void *to)
{
    struct options *opt = to;
    if (strcmp(arg, "kafka") == 0) {
        opt->output = OUT_KAFKA;
    } else if (strcmp(arg, "ndjson") == 0) {
        opt->output = OUT_NDJSON;
    } else {
        fprintf(stderr, "keng-simulate: --output must be kafka or ndjson\n");
        return KENG_EXIT_USAGE;
    }
    return 0;
}

/* Delivery report, on this thread (inside poll, flush or a send waiting for room). */
static void on_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct app *app = opaque;
    if (err) {
        if (app->failed++ == 0)
            keng_log_error("event not delivered", "error=%s", rd_kafka_err2name(err));
    } else {
        app->delivered++;
    }
}

static int write_ndjson(const keng_event_t *ev)
{
    json_t *obj = keng_event_to_json(ev);
    int rc = -1;

    if (!obj)
        return -1;
    /* keng-produce --kind auto reads the kind from each line. */
    if (!json_object_get(obj, "kind"))
        json_object_set_new(obj, "kind", json_string(keng_kind_name(ev->kind)));
    if (json_dumpf(obj, stdout, JSON_COMPACT | KENG_JSON_REAL_PRECISION) == 0 &&
        fputc('\n', stdout) != EOF)
        rc = 0;
    json_decref(obj);
    return rc;
}

/* Waits until mono_ms, serving delivery reports meanwhile; returns early on a signal. */
static void wait_until(struct app *app, int64_t mono_ms)
{
    for (;;) {
        int64_t left = mono_ms - keng_monotonic_ms();
        if (left <= 0 || stop_requested)
            return;
        if (left > 100)
            left = 100;
        if (app->producer) {
            keng_producer_poll(app->producer, (int)left);
        } else {
            struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* The simulator's settings from the options: a stream with --count and a start in the past
 * spreads the events evenly up to now0; otherwise it runs at --rate (or fast). */
static keng_sim_opts_t sim_options(const struct options *o, int64_t now0)
{
    keng_sim_opts_t so = {
        .seed = o->seed,
        .count = o->count,
        .late_fraction = o->late,
        .out_of_order_fraction = o->out_of_order,
        .duplicate_fraction = o->duplicates,
        .crossing_fraction = o->crossing,
    };

    so.start_ms = o->start_given ? o->start_ms : o->rate > 0 ? now0 : now0 - DAY_MS;
    if (so.start_ms < now0 && o->count > 0)
        so.events_per_s = (double)o->count / ((double)(now0 - so.start_ms) / 1000.0);
    else
        so.events_per_s = o->rate > 0 ? o->rate : FAST_EVENTS_PER_S;
    return so;
}

/* Sends one event to Kafka or writes it to stdout. Returns 0, or -1 (said on stderr). */
static int emit(struct app *app, const keng_event_t *ev)
{
    char errstr[256];

    if (app->producer) {
        if (keng_producer_send(app->producer, ev, on_delivered, app, SEND_TIMEOUT_MS, NULL, errstr,
                               sizeof(errstr)) < 0) {
            fprintf(stderr, "keng-simulate: %s\n", errstr);
            return -1;
        }
        keng_producer_poll(app->producer, 0);
    } else if (write_ndjson(ev) < 0) {
        fprintf(stderr, "keng-simulate: cannot write to stdout: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Waits for the delivery reports of everything sent, up to FLUSH_TIMEOUT_MS; a second
 * signal stops the wait. */
static void drain(struct app *app)
{
    char errstr[256];

    if (!app->producer) {
        fflush(stdout);
        return;
    }
    int64_t deadline = keng_monotonic_ms() + FLUSH_TIMEOUT_MS;
    sig_atomic_t interrupts = stop_requested;
    while (keng_producer_flush(app->producer, 200, errstr, sizeof(errstr)) < 0) {
        if (stop_requested > interrupts || keng_monotonic_ms() > deadline) {
            fprintf(stderr, "keng-simulate: stopped waiting: %s\n", errstr);
            break;
        }
    }
}

/* The summary line on stderr; returns the exit code: EXIT_DELIVERY if anything was not
 * delivered or written. */
static int report(struct app *app, int64_t first_at, int64_t last_at)
{
    keng_sim_stats_t st;
    char t1[32] = "-", t2[32] = "-";
    keng_sim_get_stats(app->sim, &st);
    if (st.emitted) {
        keng_time_format_utc(first_at, t1, sizeof(t1));
        keng_time_format_utc(last_at, t2, sizeof(t2));
    }
    fprintf(stderr,
            "keng-simulate: emitted %" PRIu64 " (incidents %" PRIu64 ", mediations %" PRIu64
            "), distinct %" PRIu64 ", duplicates %" PRIu64 ", late %" PRIu64
            ", out-of-order %" PRIu64 ", reported %s .. %s, seed %" PRIu64,
            st.emitted, st.incidents, st.mediations, st.emitted - st.duplicates, st.duplicates,
            st.late, st.out_of_order, t1, t2, app->opt.seed);
    if (app->nversions > 1)
        fprintf(stderr, ", across a registry version's time %" PRIu64, st.crossing);
    if (app->producer) {
        uint64_t undelivered = st.emitted - app->delivered - app->failed;
        fprintf(stderr, ", delivered %" PRIu64 ", failed %" PRIu64 "\n", app->delivered,
                app->failed + undelivered);
        if (app->failed || undelivered || app->send_errors)
            return EXIT_DELIVERY;
    } else {
        fputc('\n', stderr);
        if (app->send_errors)
            return EXIT_DELIVERY;
    }
    return 0;
}

static int run_simulation(struct app *app)
{
    const struct options *o = &app->opt;
    keng_event_t ev;
    char errstr[256];
    int64_t now0 = app->now0;
    int64_t mono0 = keng_monotonic_ms();
    int64_t first_at = 0, last_at = 0;
    uint64_t backfilled = 0;
    keng_sim_opts_t so = sim_options(o, now0);
    keng_sim_version_t *versions = calloc(app->nversions, sizeof(*versions));

    for (size_t i = 0; versions && i < app->nversions; i++)
        versions[i] = (keng_sim_version_t){app->versions[i].reg, app->versions[i].effective_ms};
    if (versions)
        app->sim = keng_sim_new_versions(versions, app->nversions, &so, errstr, sizeof(errstr));
    else
        snprintf(errstr, sizeof(errstr), "out of memory");
    free(versions);
    if (!app->sim) {
        fprintf(stderr, "keng-simulate: %s\n", errstr);
        return KENG_EXIT_USAGE;
    }

    while (!stop_requested) {
        /* Never claim the future: a paced stream waits for the clock to reach each event
         * (below); one as fast as possible is held at the clock. */
        if (o->rate <= 0)
            keng_sim_set_ceiling(app->sim, now0 + (keng_monotonic_ms() - mono0));
        if (!keng_sim_next(app->sim, &ev))
            break;
        int64_t clock = keng_sim_clock(app->sim);
        if (o->rate > 0) {
            if (clock < now0)
                wait_until(app, mono0 + (int64_t)((double)backfilled++ * 1000.0 / o->rate));
            else
                wait_until(app, mono0 + (clock - now0));
            /* Interrupted while waiting, the event still goes out: the counts then agree
             * with what was sent. */
        }
        if (!first_at || ev.reported_at < first_at)
            first_at = ev.reported_at;
        if (ev.reported_at > last_at)
            last_at = ev.reported_at;

        /* The rule every consumer applies, at the simulated present: an event it would
         * dead-letter is not sent, and the simulation stops to say so. */
        keng_field_error_t ferr;
        if (keng_event_check_times(&app->rule, &ev, now0 + (keng_monotonic_ms() - mono0), &ferr) !=
            KENG_TIMES_OK) {
            fprintf(stderr, "keng-simulate: event %s: %s: %s; not sent\n", ev.event_id, ferr.field,
                    ferr.message);
            app->send_errors++;
            break;
        }
        if (emit(app, &ev) != 0) {
            app->send_errors++;
            break;
        }
    }
    drain(app);
    return report(app, first_at, last_at);
}

static bool brokers_named(const keng_config_t *cfg)
{
    if (keng_config_brokers(cfg))
        return true;
    fprintf(stderr, "keng-simulate: no brokers: give --brokers, set KENG_BROKERS, set "
                    "kafka.bootstrap.servers in the config, or use --output ndjson\n");
    return false;
}

/* --check-config, once the config, registry and event times loaded: for a stream to Kafka,
 * its brokers, the schemas the producer encodes with and the Kafka settings as librdkafka
 * judges them, without a client, so nothing connects. Returns 0 or KENG_EXIT_CONFIG. */
static int check_config(struct app *app)
{
    char errstr[512];
    int rc;

    if (app->opt.output == OUT_KAFKA) {
        if (!brokers_named(app->cfg))
            return KENG_EXIT_CONFIG;
        keng_schema_store_t *store =
            keng_schema_store_from_config(app->cfg, errstr, sizeof(errstr));
        keng_avro_encoder_t *enc =
            store ? keng_avro_encoder_new(store, errstr, sizeof(errstr)) : NULL;
        bool schemas_load = enc != NULL;
        keng_avro_encoder_destroy(enc);
        keng_schema_store_destroy(store);
        if (!schemas_load) {
            fprintf(stderr, "keng-simulate: %s\n", errstr);
            return KENG_EXIT_CONFIG;
        }
        if ((rc = keng_program_check_kafka(app->cfg, false)) != 0)
            return rc;
        if ((rc = keng_schemareg_check_config(app->cfg, "keng-simulate")) != 0)
            return rc;
    }
    fprintf(stderr,
            "keng-simulate: the config loads: registry of %zu boards%s, event times%s; "
            "nothing was started\n",
            keng_registry_board_count(app->versions[app->nversions - 1].reg),
            app->nversions > 1 ? " (the last of its versions used)" : "",
            app->opt.output == OUT_KAFKA ? ", schemas, Kafka settings"
                                         : " (NDJSON output uses no schemas or Kafka settings)");
    return 0;
}

/* With schema.registry.url: the registry's ids for the writer schemas, before any event is
 * read. Returns 0, or the exit code (KENG_EXIT_CONFIG; KENG_EXIT_OK when stopped first). */
static int use_registry(struct app *app)
{
    keng_schemareg_conf_t conf;
    char errstr[512];
    int rc = keng_schemareg_conf_from_config(app->cfg, &conf, errstr, sizeof(errstr));

    if (rc < 0)
        fprintf(stderr, "keng-simulate: %s\n", errstr);
    else if (rc > 0)
        rc = keng_producer_use_registry(app->producer, &conf, &stop_requested);
    keng_schemareg_conf_free(&conf);
    return rc < 0 ? KENG_EXIT_CONFIG : rc == 1 ? KENG_EXIT_OK : rc;
}

/* Loads version v of topic into app->versions; a version that does not load is skipped with a
 * warning (the one before it stays in force, as for keng-ingest), unless must_load. Returns 0,
 * or KENG_EXIT_CONFIG after saying why. */
static int add_version(struct app *app, const char *topic, const keng_regtopic_version_t *v,
                       bool must_load)
{
    char name[320], errstr[512];
    struct version *grown;
    keng_registry_t *reg;

    snprintf(name, sizeof(name), "%s@%s", topic, v->key);
    reg = keng_registry_load_text(v->text, v->text_len, name, errstr, sizeof(errstr));
    if (!reg && must_load) {
        keng_log_error("cannot take the board registry from the topic",
                       "topic=%s error=\"the registry version in force at the simulation's "
                       "start, %s, does not load (%s)\"",
                       topic, name, errstr);
        return KENG_EXIT_CONFIG;
    }
    if (!reg) {
        keng_log_warn("a registry version cannot be used; skipped, the one before it stays",
                      "topic=%s version=%s why=\"%s\"", topic, v->key, errstr);
        return 0;
    }
    grown = realloc(app->versions, (app->nversions + 1) * sizeof(*grown));
    if (!grown) {
        keng_registry_destroy(reg);
        fprintf(stderr, "keng-simulate: out of memory\n");
        return KENG_EXIT_CONFIG;
    }
    app->versions = grown;
    app->versions[app->nversions++] = (struct version){.reg = reg, .effective_ms = v->effective_ms};
    snprintf(app->versions[app->nversions - 1].key, sizeof(grown->key), "%s", v->key);
    return 0;
}

/* The versions of registry.topic that a simulation from start_ms can use: the one in force
 * KENG_SIM_LATE_MAX_MS before the start (a late event may have occurred then) and every later
 * one. Returns 0,
 * or an exit code after saying why: 69 when no broker answered, 78 when the topic is missing,
 * no version is in force at the start or that one does not load. */
static int registry_from_topic(struct app *app, const char *topic, int64_t start_ms)
{
    keng_regtopic_list_t list = {0};
    const struct version *now = NULL;
    char errstr[512], what[200], keys[1024] = "", start[32], sha[13];
    size_t first = 0, later = 0, len = 0;
    long at_start = -1;
    int rc;

    rc = keng_regtopic_read(app->cfg, topic, &list, errstr, sizeof(errstr));
    if (rc != 0) {
        keng_log_error("cannot take the board registry from the topic", "topic=%s error=\"%s\"",
                       topic, errstr);
        goto out;
    }
    for (size_t i = 0; i < list.n; i++) {
        if (list.v[i].effective_ms <= start_ms - KENG_SIM_LATE_MAX_MS)
            first = i;
        if (list.v[i].effective_ms <= start_ms)
            at_start = (long)i;
    }
    keng_time_format_utc(start_ms, start, sizeof(start));
    if (at_start < 0) {
        keng_log_error("cannot take the board registry from the topic",
                       "topic=%s error=\"no registry version is in force at the simulation's "
                       "start, %s (%zu version(s)%s%s): start later with --start-time, publish "
                       "one with keng-registry --publish FILE --effective TIME, or give "
                       "--registry FILE instead\"",
                       topic, start, list.n, list.n ? ", the first effective " : "",
                       list.n ? list.v[0].key : "");
        rc = KENG_EXIT_CONFIG;
        goto out;
    }
    for (size_t i = first; i < list.n && rc == 0; i++)
        rc = add_version(app, topic, &list.v[i], (long)i == at_start);
    if (rc != 0)
        goto out;

    /* Which versions the events are drawn from, the one in force at the start first. */
    for (size_t i = 0; i < app->nversions; i++) {
        const struct version *v = &app->versions[i];
        if (v->effective_ms <= start_ms)
            now = v;
        else
            later++;
        if (len < sizeof(keys))
            len += (size_t)snprintf(keys + len, sizeof(keys) - len, "%s%s", i ? "," : "", v->key);
    }
    keng_registry_describe_units(now->reg, what, sizeof(what));
    snprintf(sha, sizeof(sha), "%s", list.v[at_start].sha256 ? list.v[at_start].sha256 : "-");
    keng_log_info("board registry in use",
                  "source=topic topic=%s version=%s sha256=%s %s start=%s versions=%s "
                  "earlier=%zu later=%zu",
                  topic, now->key, sha, what, start, keys, (size_t)(now - app->versions), later);
    for (size_t i = (size_t)(now - app->versions) + 1; i < app->nversions; i++) {
        keng_registry_describe_units(app->versions[i].reg, what, sizeof(what));
        keng_log_info("board registry version to come", "source=topic topic=%s version=%s %s",
                      topic, app->versions[i].key, what);
    }
out:
    keng_regtopic_list_free(&list);
    return rc;
}

/* The board registry: the versions of registry.topic, else --registry FILE or the built-in
 * one. Returns 0, or an exit code after saying why (64 for both, as keng-ingest). */
static int open_registry(struct app *app)
{
    const char *topic = keng_config_get(app->cfg, "registry.topic", NULL);
    char errstr[512];
    keng_registry_t *reg;

    if (topic && *topic) {
        if (app->opt.registry_path) {
            fprintf(stderr, "keng-simulate: give the registry by --registry FILE or by "
                            "--registry-topic TOPIC (registry.topic), not both\n");
            return KENG_EXIT_USAGE;
        }
        if (!keng_config_brokers(app->cfg)) {
            fprintf(stderr,
                    "keng-simulate: no brokers to read the registry topic %s from: give "
                    "--brokers, set KENG_BROKERS or set kafka.bootstrap.servers in the "
                    "config\n",
                    topic);
            return KENG_EXIT_CONFIG;
        }
        return registry_from_topic(app, topic, sim_options(&app->opt, app->now0).start_ms);
    }
    reg = keng_registry_open(app->opt.registry_path, errstr, sizeof(errstr));
    if (!reg) {
        fprintf(stderr, "keng-simulate: registry: %s\n", errstr);
        return KENG_EXIT_CONFIG;
    }
    keng_program_log_registry(reg);
    app->versions = calloc(1, sizeof(*app->versions));
    if (!app->versions) {
        keng_registry_destroy(reg);
        fprintf(stderr, "keng-simulate: out of memory\n");
        return KENG_EXIT_CONFIG;
    }
    app->versions[0] = (struct version){.reg = reg, .effective_ms = INT64_MIN};
    app->nversions = 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct app app = {.opt = {.rate = 10, .crossing = DEFAULT_CROSSING}};
    struct options *opt = &app.opt;
    const keng_program_flag_t table[] = {
        KENG_FLAG("config", &opt->config_path, NULL),
        KENG_FLAG("brokers", &opt->brokers, "brokers"),
        KENG_FLAG("registry", &opt->registry_path, NULL),
        KENG_FLAG("registry-topic", &opt->registry_topic, "registry.topic"),
        KENG_FLAG_TAKE("rate", take_rate, opt),
        KENG_FLAG_TAKE("count", take_count, opt),
        KENG_FLAG_TAKE("seed", take_seed, opt),
        KENG_FLAG_TAKE("now", take_now, opt),
        KENG_FLAG_TAKE("start-time", take_start, opt),
        KENG_FLAG_TAKE("late", take_late, opt),
        KENG_FLAG_TAKE("late-crossing", take_crossing, opt),
        KENG_FLAG_TAKE("out-of-order", take_out_of_order, opt),
        KENG_FLAG_TAKE("duplicates", take_duplicates, opt),
        KENG_FLAG_TAKE("output", take_output, opt),
        KENG_FLAG_SET("check-config", &opt->check_config),
        KENG_FLAGS_END,
    };
    char errstr[512];

    keng_program_start(&program);
    int rc = keng_program_parse(&program, argc, argv, table, NULL);
    if (rc >= 0)
        return rc;
    if (!app.opt.seed_given)
        app.opt.seed = (uint64_t)keng_now_ms() ^ ((uint64_t)getpid() << 32);

    keng_program_stop_on_signals(&stop_requested);
    signal(SIGPIPE, SIG_IGN);

    app.now0 = opt->now_given ? opt->now_ms : keng_now_ms();
    app.cfg = keng_program_config_table(&program, opt->config_path, table);
    if (!app.cfg) {
        rc = KENG_EXIT_USAGE; /* a config that does not load, or an unknown key */
        goto out;
    }
    if ((rc = open_registry(&app)) != 0)
        goto out;
    if (keng_event_rule_from_config(app.cfg, &app.rule, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-simulate: %s\n", errstr);
        rc = KENG_EXIT_USAGE;
        goto out;
    }
    if (opt->check_config) {
        rc = check_config(&app);
        goto out;
    }
    rc = KENG_EXIT_CONFIG;
    if (app.opt.output == OUT_KAFKA) {
        if (!brokers_named(app.cfg))
            goto out;
        app.producer = keng_producer_new(app.cfg, errstr, sizeof(errstr));
        if (!app.producer) {
            fprintf(stderr, "keng-simulate: %s\n", errstr);
            goto out;
        }
        if ((rc = use_registry(&app)) != 0)
            goto out;
        rc = KENG_EXIT_CONFIG;
    }
    rc = run_simulation(&app);

out:
    keng_producer_destroy(app.producer, 0);
    keng_sim_destroy(app.sim);
    for (size_t i = 0; i < app.nversions; i++)
        keng_registry_destroy(app.versions[i].reg);
    free(app.versions);
    keng_config_destroy(app.cfg);
    return rc;
}
