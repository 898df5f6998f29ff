/* keng-produce: bulk import of NDJSON or CSV files of incidents and mediations into Kafka.
 * Every record is validated as keng-ingest would; bad ones are reported by line and never sent,
 * good ones go to Kafka with their event ids untouched, so importing a file twice is counted
 * once downstream. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avro_codec.h"
#include "config.h"
#include "csv.h"
#include "event.h"
#include "input.h"
#include "log.h"
#include "producer.h"
#include "program.h"
#include "progress.h"
#include "registry.h"
#include "timeutil.h"

#define EXIT_REJECTED 1
#define EXIT_DELIVERY 2

/* How long one event may wait for room in librdkafka's queue before the import stops: long
 * enough to ride out a broker restart, short of hanging forever on a dead cluster. */
#define SEND_TIMEOUT_MS           60000
#define PROGRESS_EVERY_MS         200
#define MAX_DELIVERY_ERRORS_SHOWN 20

/* The producer and the schema store list the keys they read. */
static const char *const *const config_tables[] = {
    keng_config_common_keys,    keng_producer_config_keys,   keng_schema_store_config_keys,
    keng_schemareg_config_keys, keng_event_rule_config_keys, NULL};

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry_path;
    int kind;   /* keng_kind_t or KENG_INPUT_KIND_AUTO */
    int format; /* keng_input_format_t, or -1 for by extension */
    int dry_run;
    int no_progress;
    int check_config; /* load everything, read no file, produce nothing */
    char **files;
    int nfiles;
};

struct app {
    struct options opt;
    keng_config_t *cfg;
    keng_registry_t *reg;
    keng_producer_t *producer;  /* NULL in a dry run */
    keng_schema_store_t *store; /* dry run: encoding is still checked */
    keng_avro_encoder_t *enc;
    keng_event_rule_t rule; /* events.min_occurred_at, events.max_future_ms */
    bool show_progress;
    bool progress_drawn;
    int term_width;
    bool aborted; /* Kafka refused events: stop reading */
    uint64_t read, valid, rejected, delivered, failed, unreadable_files;
};

/* Travels with each produced event to its delivery report. */
struct msg_ctx {
    struct app *app;
    const char *file;
    uint64_t line;
};

static volatile sig_atomic_t stop_requested;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-produce [OPTIONS] [FILE...]\n"
            "Imports incidents or mediations from NDJSON or CSV files (or - for stdin) into\n"
            "Kafka, Avro-encoded with the Confluent framing, key = board_id.\n"
            "\n"
            "  --config FILE     config file (key=value; kafka.* keys go to librdkafka;\n"
            "                    topic.incidents, topic.mediations name the topics;\n"
            "                    events.min_occurred_at, events.max_future_ms bound the times)\n"
            "  --brokers LIST    bootstrap servers (else $KENG_BROKERS, else the config)\n"
            "  --registry FILE   board registry CSV (else the generated default)\n"
            "  --kind KIND       incident (default), mediation, or auto: then each record\n"
            "                    names its kind in a \"kind\" field (NDJSON key or CSV column)\n"
            "  --format FORMAT   ndjson or csv (default: csv for *.csv, else ndjson)\n"
            "  --dry-run         validate and encode every record, produce nothing\n"
            "  --no-progress     no progress line, even on a terminal\n"
            "  --check-config    load the config, registry, schemas and Kafka settings, say\n"
            "                    what is wrong (exit 64 or 78) or that they load (exit 0),\n"
            "                    and read no file\n"
            "  --help, --version\n"
            "\n"
            "NDJSON: one JSON object per line, fields named as in the schemas; times in\n"
            "RFC 3339 with an offset or epoch milliseconds. CSV: a header line of field\n"
            "names (location as lat,lon columns); an empty cell is null, \"\" an empty\n"
            "string. A missing reported_at becomes the time of the import. Event ids are\n"
            "sent as they are, so importing a file twice is counted once.\n"
            "\n"
            "Every bad record is reported on stderr as 'line N: field: reason' and skipped.\n"
            "Exit status: 0 every record valid and delivered, 1 some records rejected (or a\n"
            "file unreadable), 2 some events not delivered, 64 usage, 78 configuration.\n");
}

static const keng_program_t program = {"keng-produce", KENG_PROGRAM_RDKAFKA, usage, config_tables,
                                       1};

static int take_kind(const char *value, void *to)
{
    keng_kind_t k;

    if (strcmp(value, "auto") == 0) {
        *(int *)to = KENG_INPUT_KIND_AUTO;
    } else if (keng_kind_parse(value, &k) == 0) {
        *(int *)to = (int)k;
    } else {
        fprintf(stderr, "keng-produce: --kind must be incident, mediation or auto\n");
        return KENG_EXIT_USAGE;
    }
    return 0;
}

static int take_format(const char *value, void *to)
{
    keng_input_format_t f;

    if (keng_input_format_parse(value, &f) < 0) {
        fprintf(stderr, "keng-produce: --format must be ndjson or csv\n");
        return KENG_EXIT_USAGE;
    }
    *(int *)to = (int)f;
    return 0;
}

static void progress_clear(struct app *app)
{
    if (app->progress_drawn) {
        fputs("\r\033[K", stderr);
        app->progress_drawn = false;
    }
}

static void progress_draw(struct app *app, const keng_progress_state_t *st)
{
    char line[256];
    keng_progress_format(st, app->term_width - 1, line, sizeof(line));
    fprintf(stderr, "\r%s\033[K", line);
    app->progress_drawn = true;
}

/* Reports one bad record; with several files the file name comes first. */
static void report(struct app *app, const char *file, uint64_t line, const char *field,
                   const char *message)
{
    progress_clear(app);
    if (app->opt.nfiles > 1)
        fprintf(stderr, "%s: ", file);
    if (field && field[0])
        fprintf(stderr, "line %" PRIu64 ": %s: %s\n", line, field, message);
    else
        fprintf(stderr, "line %" PRIu64 ": %s\n", line, message);
}

/* Delivery report, on this thread (inside poll, flush or a send waiting for room). */
static void on_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct msg_ctx *m = opaque;
    struct app *app = m->app;

    if (err) {
        app->failed++;
        if (app->failed <= MAX_DELIVERY_ERRORS_SHOWN)
            report(app, m->file, m->line, "", rd_kafka_err2str(err));
        if (app->failed == MAX_DELIVERY_ERRORS_SHOWN)
            fprintf(stderr, "(further delivery failures are only counted)\n");
    } else {
        app->delivered++;
    }
    free(m);
}

/* Validates and sends one record. */
static void handle_record(struct app *app, keng_input_t *in, const char *file, uint64_t line,
                          const char *s, size_t len)
{
    keng_event_t ev;
    keng_field_error_t ferr;
    char why[256];

    app->read++;
    if (keng_input_parse(in, s, len, keng_now_ms(), &ev, &ferr) < 0) {
        app->rejected++;
        report(app, file, line, ferr.field, ferr.message);
        return;
    }
    if (!app->producer) {
        unsigned char buf[16 * 1024];
        size_t n;
        if (keng_avro_encode(app->enc, &ev, buf, sizeof(buf), &n, why, sizeof(why)) < 0) {
            app->rejected++;
            report(app, file, line, "", why);
            return;
        }
        app->valid++;
        return;
    }

    struct msg_ctx *m = malloc(sizeof(*m));
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!m) {
        app->failed++;
        app->aborted = true;
        report(app, file, line, "", "out of memory");
        return;
    }
    *m = (struct msg_ctx){app, file, line};
    if (keng_producer_send(app->producer, &ev, on_delivered, m, SEND_TIMEOUT_MS, &err, why,
                           sizeof(why)) < 0) {
        free(m);
        if (err == RD_KAFKA_RESP_ERR__INVALID_ARG) {
            app->rejected++;
            report(app, file, line, "", why);
            return;
        }
        app->failed++;
        app->aborted = true;
        report(app, file, line, "", why);
        return;
    }
    app->valid++;
    keng_producer_poll(app->producer, 0);
}

static int terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 80;
}

/* One file's lines, joined into records where a quoted CSV cell spans lines. */
struct reader {
    FILE *f;
    keng_input_format_t format;
    char *line, *rec; /* owned; the record returned points into one of them */
    size_t line_cap, rec_cap;
    uint64_t lineno;     /* of the last line read */
    uint64_t bytes_done; /* for the progress line */
};

/* The next record in *s and *len, starting at line *first. Returns 1, 0 at the end of the
 * file, or -1 when out of memory (said on stderr). */
static int read_record(struct reader *r, const char **s, size_t *len, uint64_t *first)
{
    ssize_t n = getline(&r->line, &r->line_cap, r->f);
    if (n < 0)
        return 0;
    *first = ++r->lineno;
    *len = (size_t)n;
    *s = r->line;
    r->bytes_done += (uint64_t)n;
    /* A quoted CSV cell may hold newlines: the record goes on until its quotes close. */
    if (r->format != KENG_INPUT_CSV || !keng_csv_needs_more(r->line, *len))
        return 1;
    size_t rlen = 0, llen = *len;
    do {
        if (rlen + llen + 1 > r->rec_cap) {
            size_t cap = (rlen + llen + 1) * 2;
            char *grown = realloc(r->rec, cap);
            if (!grown) {
                fprintf(stderr, "keng-produce: out of memory\n");
                return -1;
            }
            r->rec = grown;
            r->rec_cap = cap;
        }
        memcpy(r->rec + rlen, r->line, llen);
        rlen += llen;
        r->rec[rlen] = '\0';
        if (!keng_csv_needs_more(r->rec, rlen))
            break;
        n = getline(&r->line, &r->line_cap, r->f);
        if (n < 0)
            break;
        r->lineno++;
        llen = (size_t)n;
        r->bytes_done += (uint64_t)n;
    } while (true);
    *s = r->rec;
    *len = rlen;
    return 1;
}

/* Blank lines separate nothing and mean nothing. */
static bool is_blank(const char *s, size_t len)
{
    size_t k = 0;
    while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\n'))
        k++;
    return k == len;
}

/* Redraws the progress line at most every PROGRESS_EVERY_MS. */
static void progress_tick(struct app *app, keng_progress_state_t *st, int64_t started,
                          int64_t *last_draw)
{
    if (!app->show_progress)
        return;
    int64_t now = keng_monotonic_ms();
    if (now - *last_draw >= PROGRESS_EVERY_MS) {
        st->elapsed_ms = now - started;
        progress_draw(app, st);
        *last_draw = now;
    }
}

/* Reads one file to its end, or until a stop is requested. */
static void import_file(struct app *app, const char *path)
{
    keng_input_t *in = NULL;
    bool is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "stdin" : path;
    struct reader r = {.format = app->opt.format >= 0 ? (keng_input_format_t)app->opt.format
                                                      : keng_input_format_for_path(path)};
    bool need_header = r.format == KENG_INPUT_CSV;
    keng_progress_state_t st = {0};
    int64_t started = keng_monotonic_ms(), last_draw = 0;
    struct stat sb;
    char why[300];

    r.f = is_stdin ? stdin : fopen(path, "r");
    if (!r.f) {
        fprintf(stderr, "keng-produce: cannot open %s: %s\n", path, strerror(errno));
        app->unreadable_files++;
        goto out;
    }
    if (fstat(fileno(r.f), &sb) == 0 && S_ISREG(sb.st_mode))
        st.bytes_total = (uint64_t)sb.st_size;
    in = keng_input_new(r.format, app->opt.kind, app->reg);
    if (!in) {
        fprintf(stderr, "keng-produce: out of memory\n");
        app->unreadable_files++;
        goto out;
    }
    keng_input_set_rule(in, &app->rule);

    while (!stop_requested && !app->aborted) {
        const char *s;
        size_t len;
        uint64_t first;
        int got = read_record(&r, &s, &len, &first);
        st.bytes_done = r.bytes_done;
        if (got < 0) {
            app->aborted = true;
            goto out;
        }
        if (got == 0)
            break;
        if (is_blank(s, len))
            continue;
        if (need_header) {
            need_header = false;
            if (keng_input_csv_header(in, s, len, why, sizeof(why)) < 0) {
                progress_clear(app);
                if (app->opt.nfiles > 1)
                    fprintf(stderr, "%s: ", name);
                fprintf(stderr, "line %" PRIu64 ": %s; skipping the file\n", first, why);
                app->unreadable_files++;
                goto out;
            }
            continue;
        }
        handle_record(app, in, name, first, s, len);
        st.lines = app->read;
        progress_tick(app, &st, started, &last_draw);
    }
    if (r.f && ferror(r.f) && !stop_requested) {
        fprintf(stderr, "keng-produce: error reading %s: %s\n", name, strerror(errno));
        app->unreadable_files++;
    }

out:
    progress_clear(app);
    free(r.line);
    free(r.rec);
    keng_input_destroy(in);
    if (r.f && !is_stdin)
        fclose(r.f);
}

/* Waits for every report. An interrupt while waiting gives up: there is no work left to
 * stop taking, so it can only mean "do not wait". */
static void wait_for_deliveries(struct app *app)
{
    char why[128];
    sig_atomic_t interrupts = stop_requested;

    while (keng_producer_flush(app->producer, 200, why, sizeof(why)) < 0) {
        if (stop_requested > interrupts) {
            fprintf(stderr, "keng-produce: stopped waiting: %s\n", why);
            break;
        }
    }
}

static int run_import(struct app *app)
{
    for (int i = 0; i < app->opt.nfiles && !stop_requested && !app->aborted; i++)
        import_file(app, app->opt.files[i]);

    if (app->producer)
        wait_for_deliveries(app);

    uint64_t undelivered = app->producer ? app->valid - app->delivered - app->failed : 0;

    fprintf(stderr,
            "keng-produce: read %" PRIu64 ", valid %" PRIu64 ", rejected %" PRIu64
            ", delivered %" PRIu64 ", failed %" PRIu64 "%s%s\n",
            app->read, app->valid, app->rejected, app->delivered, app->failed + undelivered,
            app->opt.dry_run ? " (dry run: nothing produced)" : "",
            stop_requested ? " (interrupted)" : "");

    if (app->failed > 0 || undelivered > 0 || app->aborted)
        return EXIT_DELIVERY;
    if (app->rejected > 0 || app->unreadable_files > 0)
        return EXIT_REJECTED;
    return 0;
}

/* The encoder a dry run checks every record with (the producer has its own). Returns 0, or
 * KENG_EXIT_CONFIG after saying why the schemas did not load. */
static int open_encoder(struct app *app)
{
    char errstr[512];

    app->store = keng_schema_store_from_config(app->cfg, errstr, sizeof(errstr));
    app->enc = app->store ? keng_avro_encoder_new(app->store, errstr, sizeof(errstr)) : NULL;
    if (!app->enc) {
        fprintf(stderr, "keng-produce: %s\n", errstr);
        return KENG_EXIT_CONFIG;
    }
    return 0;
}

static bool brokers_named(const keng_config_t *cfg)
{
    if (keng_config_brokers(cfg))
        return true;
    fprintf(stderr, "keng-produce: no brokers: give --brokers, set KENG_BROKERS, or "
                    "set kafka.bootstrap.servers in the config\n");
    return false;
}

/* --check-config, once the config, registry and event times loaded: the schemas, and for an
 * import to Kafka its brokers and the Kafka settings as librdkafka judges them, without a
 * client, so nothing connects. Returns 0 or KENG_EXIT_CONFIG. */
static int check_config(struct app *app)
{
    int rc = open_encoder(app);

    if (rc != 0)
        return rc;
    if (!app->opt.dry_run) {
        if (!brokers_named(app->cfg))
            return KENG_EXIT_CONFIG;
        if ((rc = keng_program_check_kafka(app->cfg, false)) != 0)
            return rc;
        if ((rc = keng_schemareg_check_config(app->cfg, "keng-produce")) != 0)
            return rc;
    }
    fprintf(stderr,
            "keng-produce: the config loads: registry of %zu boards, event times, schemas%s; "
            "nothing was started\n",
            keng_registry_board_count(app->reg),
            app->opt.dry_run ? " (a dry run uses no Kafka settings)" : ", Kafka settings");
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
        fprintf(stderr, "keng-produce: %s\n", errstr);
    else if (rc > 0)
        rc = keng_producer_use_registry(app->producer, &conf, &stop_requested);
    keng_schemareg_conf_free(&conf);
    return rc < 0 ? KENG_EXIT_CONFIG : rc == 1 ? KENG_EXIT_OK : rc;
}

int main(int argc, char **argv)
{
    struct app app = {.opt = {.kind = KENG_KIND_INCIDENT, .format = -1}};
    struct options *opt = &app.opt;
    const keng_program_flag_t table[] = {
        KENG_FLAG("config", &opt->config_path, NULL),
        KENG_FLAG("brokers", &opt->brokers, "brokers"),
        KENG_FLAG("registry", &opt->registry_path, NULL),
        KENG_FLAG_TAKE("kind", take_kind, &opt->kind),
        KENG_FLAG_TAKE("format", take_format, &opt->format),
        KENG_FLAG_SET("dry-run", &opt->dry_run),
        KENG_FLAG_SET("no-progress", &opt->no_progress),
        KENG_FLAG_SET("check-config", &opt->check_config),
        KENG_FLAGS_END,
    };
    char errstr[512];
    int first;

    keng_program_start(&program);
    int rc = keng_program_parse(&program, argc, argv, table, &first);
    if (rc >= 0)
        return rc;
    opt->files = argv + first;
    opt->nfiles = argc - first;
    if (opt->nfiles == 0 && !opt->check_config) {
        fprintf(stderr, "keng-produce: name at least one file, or - for stdin\n"
                        "Try 'keng-produce --help'.\n");
        return KENG_EXIT_USAGE;
    }

    keng_program_stop_on_signals(&stop_requested);

    rc = keng_program_open(&program, opt->config_path, table, opt->registry_path, &app.cfg,
                           &app.reg);
    if (rc != 0)
        goto out;
    if (keng_event_rule_from_config(app.cfg, &app.rule, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-produce: %s\n", errstr);
        rc = KENG_EXIT_USAGE;
        goto out;
    }
    if (opt->check_config) {
        rc = check_config(&app);
        goto out;
    }
    rc = KENG_EXIT_CONFIG;

    if (app.opt.dry_run) {
        if (open_encoder(&app) != 0)
            goto out;
    } else {
        if (!brokers_named(app.cfg))
            goto out;
        app.producer = keng_producer_new(app.cfg, errstr, sizeof(errstr));
        if (!app.producer) {
            fprintf(stderr, "keng-produce: %s\n", errstr);
            goto out;
        }
        if ((rc = use_registry(&app)) != 0)
            goto out;
        rc = KENG_EXIT_CONFIG;
    }

    app.show_progress = !app.opt.no_progress && isatty(STDERR_FILENO);
    app.term_width = app.show_progress ? terminal_width() : 80;
    rc = run_import(&app);

out:
    keng_producer_destroy(app.producer, 0);
    if (app.enc)
        keng_avro_encoder_destroy(app.enc);
    if (app.store)
        keng_schema_store_destroy(app.store);
    keng_registry_destroy(app.reg);
    keng_config_destroy(app.cfg);
    return rc;
}
