/* keng-replay: replays the input topics for a period and writes the annual review.
 *
 * It notes every partition's high watermark at the start and reads up to it, so a replay
 * ends even while the field keeps reporting. Where the broker can map the period's start to
 * an offset (ListOffsets by timestamp) it starts there; where it cannot (it answers -1, as
 * the embedded broker does), it scans from the beginning. Events are counted once per
 * event_id, by occurred_at in Asia/Ho_Chi_Minh calendar time. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "avro_codec.h"
#include "config.h"
#include "log.h"
#include "pdf.h"
#include "registry.h"
#include "review.h"
#include "timeutil.h"

/* Messages carry the time they were produced; an event produced before the period began can
 * still have occurred in it only if a gateway's clock ran fast, so the seek by time leaves a
 * day of margin. */
#define SEEK_MARGIN_MS (24 * 3600 * 1000LL)

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig)
{
    stop_requested = 1;
}

/* The keys keng-replay reads itself; the schema store lists its own. */
static keng_config_keys_t replay_keys = {"topic.incidents", "topic.mediations", NULL};
static const char *const *const config_tables[] = {keng_config_common_keys, replay_keys,
                                                   keng_schema_store_config_keys, NULL};

struct options {
    const char *config_path;
    const char *registry_path;
    const char *out_dir;
    int year;
    const char *from, *to;
    int pdf;           /* also print review.pdf */
    int pdf_timeout_s; /* how long Chromium may take to print it */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-replay [options] --year YYYY | --from YYYY-MM-DD --to YYYY-MM-DD\n"
            "\n"
            "Replays antt.incidents and antt.mediations up to their current end and writes\n"
            "the review of the events that occurred in the period (local dates, Asia/Ho_Chi_Minh;\n"
            "--to is exclusive) as review.html, review.csv and review.json.\n"
            "\n"
            "Options:\n"
            "  --year YYYY          the calendar year\n"
            "  --from DATE, --to DATE  any other period\n"
            "  --out DIR            where to write the report (default keng-review-<period>)\n"
            "  --brokers LIST       bootstrap servers (else KENG_BROKERS, else the config)\n"
            "  --registry FILE      the board registry CSV (else the generated default)\n"
            "  --config FILE        key=value config (topic.incidents, topic.mediations, kafka.*)\n"
            "  --pdf                also print review.pdf (A4) with headless Chromium (Debian\n"
            "                       package chromium, or KENG_CHROMIUM); exits 69 at start when\n"
            "                       there is none\n"
            "  --pdf-timeout SECONDS  how long Chromium may take to print (default 120)\n"
            "  --help, --version\n");
}

typedef struct partition_end {
    const char *topic;
    int32_t partition;
    int64_t high;
    int done;
} partition_end_t;

static int run(const struct options *opt, keng_config_t *cfg)
{
    char errstr[512], label[64], chromium[4096];
    int64_t from_ms, to_ms;
    keng_registry_t *reg = NULL;
    keng_schema_store_t *store = NULL;
    keng_avro_decoder_t *dec = NULL;
    keng_review_t *review = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    partition_end_t *ends = NULL;
    size_t nends = 0, remaining = 0;
    uint64_t messages = 0;
    int rc = 1;

    if (opt->year) {
        keng_review_year_bounds(opt->year, &from_ms, &to_ms);
        snprintf(label, sizeof(label), "%d", opt->year);
    } else {
        if (keng_review_parse_date(opt->from, &from_ms) != 0 ||
            keng_review_parse_date(opt->to, &to_ms) != 0 || to_ms <= from_ms) {
            fprintf(stderr, "keng-replay: --from and --to must be dates YYYY-MM-DD, from first\n");
            return 64;
        }
        snprintf(label, sizeof(label), "%s – %s", opt->from, opt->to);
    }

    /* Asked for a PDF without a browser to print it: say so before a long replay, not after. */
    if (opt->pdf &&
        keng_pdf_find_chromium(chromium, sizeof(chromium), errstr, sizeof(errstr)) != 0) {
        fprintf(stderr,
                "keng-replay: %s; without --pdf the review is written as HTML, CSV and JSON\n",
                errstr);
        return 69;
    }

    reg = keng_registry_open(opt->registry_path, errstr, sizeof(errstr));
    if (!reg) {
        keng_log_error("cannot load the board registry", "error=\"%s\"", errstr);
        goto out;
    }
    store = keng_schema_store_from_config(cfg, errstr, sizeof(errstr));
    dec = store ? keng_avro_decoder_new(store, errstr, sizeof(errstr)) : NULL;
    review = keng_review_new(reg, from_ms, to_ms, label);
    if (!store || !dec || !review) {
        keng_log_error("cannot set up decoding", "error=\"%s\"", errstr);
        goto out;
    }

    conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, sizeof(errstr));
    if (!conf) {
        keng_log_error("bad Kafka configuration", "error=\"%s\"", errstr);
        goto out;
    }
    char group[64];
    snprintf(group, sizeof(group), "keng-replay-%d", (int)getpid());
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        keng_log_error("cannot create the Kafka consumer", "error=\"%s\"", errstr);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(rk);

    const char *topics[2] = {keng_config_get(cfg, "topic.incidents", "antt.incidents"),
                             keng_config_get(cfg, "topic.mediations", "antt.mediations")};
    assignment = rd_kafka_topic_partition_list_new(64);
    for (int t = 0; t < 2; t++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            keng_log_error("cannot read topic metadata", "topic=%s error=\"%s\"", topics[t],
                           rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            goto out;
        }
        partition_end_t *grown =
            realloc(ends, (nends + (size_t)md->topics[0].partition_cnt) * sizeof(*ends));
        if (!grown) {
            rd_kafka_metadata_destroy(md);
            goto out;
        }
        ends = grown;
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            int32_t id = md->topics[0].partitions[p].id;
            int64_t low = 0, high = 0;
            err = rd_kafka_query_watermark_offsets(rk, topics[t], id, &low, &high, 10000);
            if (err) {
                keng_log_error("cannot read the end of a partition",
                               "topic=%s partition=%d error=\"%s\"", topics[t], id,
                               rd_kafka_err2str(err));
                rd_kafka_metadata_destroy(md);
                goto out;
            }
            ends[nends] = (partition_end_t){topics[t], id, high, high <= low};
            if (!ends[nends].done)
                remaining++;
            rd_kafka_topic_partition_list_add(assignment, topics[t], id)->offset =
                from_ms - SEEK_MARGIN_MS;
            nends++;
        }
        rd_kafka_metadata_destroy(md);
    }

    /* Map the period's start to offsets; a partition the broker cannot map is scanned. */
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, assignment, 10000);
    int scanned = 0;
    for (int i = 0; i < assignment->cnt; i++) {
        if (err || assignment->elems[i].err || assignment->elems[i].offset < 0) {
            assignment->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
            scanned++;
        }
    }
    keng_log_info("replay starting",
                  "period=\"%s\" partitions=%zu to_read=%zu scanned_from_start=%d", label, nends,
                  remaining, scanned);
    err = rd_kafka_assign(rk, assignment);
    if (err) {
        keng_log_error("cannot assign partitions", "error=\"%s\"", rd_kafka_err2str(err));
        goto out;
    }

    int64_t last_progress = keng_monotonic_ms();
    while (remaining > 0 && !stop_requested) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                keng_log_warn("consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        const char *topic = rd_kafka_topic_name(m->rkt);
        partition_end_t *end = NULL;
        for (size_t i = 0; i < nends && !end; i++) {
            if (ends[i].partition == m->partition && strcmp(ends[i].topic, topic) == 0)
                end = &ends[i];
        }
        if (end && !end->done && m->offset + 1 >= end->high) {
            end->done = 1;
            remaining--;
        }
        /* Messages past the noted end arrived after the replay began: they are the next
         * review's, and counting them would make two runs disagree. */
        int past_end = end && m->offset >= end->high;
        if (!past_end) {
            keng_event_t ev;
            messages++;
            if (keng_avro_decode(dec, m->payload, m->len, &ev, NULL, errstr, sizeof(errstr)) !=
                KENG_AVRO_OK)
                keng_review_add_undecodable(review);
            else
                keng_review_add(review, &ev);
        }
        rd_kafka_message_destroy(m);
        if (keng_monotonic_ms() - last_progress > 5000) {
            last_progress = keng_monotonic_ms();
            keng_log_info("replay progress", "messages=%llu partitions_left=%zu",
                          (unsigned long long)messages, remaining);
        }
    }
    if (stop_requested) {
        keng_log_warn("replay interrupted; no report written", NULL);
        goto out;
    }

    char dir[4096];
    if (opt->out_dir)
        snprintf(dir, sizeof(dir), "%s", opt->out_dir);
    else if (opt->year)
        snprintf(dir, sizeof(dir), "keng-review-%d", opt->year);
    else
        snprintf(dir, sizeof(dir), "keng-review-%s-%s", opt->from, opt->to);
    if (keng_review_write(review, dir, errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot write the review", "error=\"%s\"", errstr);
        goto out;
    }
    keng_log_info("review written",
                  "dir=%s messages=%llu counted=%llu duplicates=%llu "
                  "out_of_period=%llu unknown_board=%llu undecodable=%llu",
                  dir, (unsigned long long)messages,
                  (unsigned long long)keng_review_outcome_count(review, KENG_REVIEW_COUNTED),
                  (unsigned long long)keng_review_outcome_count(review, KENG_REVIEW_DUPLICATE),
                  (unsigned long long)keng_review_outcome_count(review, KENG_REVIEW_OUT_OF_PERIOD),
                  (unsigned long long)keng_review_outcome_count(review, KENG_REVIEW_UNKNOWN_BOARD),
                  (unsigned long long)keng_review_outcome_count(review, KENG_REVIEW_UNDECODABLE));
    printf("%s/review.html\n%s/review.csv\n%s/review.json\n", dir, dir, dir);
    if (opt->pdf) {
        char html[4200], pdf[4200];
        snprintf(html, sizeof(html), "%s/review.html", dir);
        snprintf(pdf, sizeof(pdf), "%s/review.pdf", dir);
        if (keng_pdf_print(chromium, html, pdf, opt->pdf_timeout_s, &stop_requested, errstr,
                           sizeof(errstr)) != 0) {
            keng_log_error("cannot print the review to PDF", "error=\"%s\"", errstr);
            goto out;
        }
        printf("%s\n", pdf);
    }
    rc = 0;
out:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    free(ends);
    keng_review_destroy(review);
    keng_avro_decoder_destroy(dec);
    keng_schema_store_destroy(store);
    keng_registry_destroy(reg);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"year", required_argument, NULL, 'y'},        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},          {"out", required_argument, NULL, 'o'},
        {"brokers", required_argument, NULL, 'b'},     {"registry", required_argument, NULL, 'r'},
        {"config", required_argument, NULL, 'c'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},           {"pdf", no_argument, NULL, 'p'},
        {"pdf-timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
    };
    struct options opt = {.pdf_timeout_s = 120};
    keng_config_t *cfg = NULL;
    const char *brokers = NULL;
    int c, rc;

    keng_log_set_program("keng-replay");
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'y': {
            char *end;
            long y = strtol(optarg, &end, 10);
            if (*end || y < 2000 || y > 9999) {
                fprintf(stderr, "keng-replay: --year: '%s' is not a year from 2000\n", optarg);
                return 64;
            }
            opt.year = (int)y;
            break;
        }
        case 'f':
            opt.from = optarg;
            break;
        case 't':
            opt.to = optarg;
            break;
        case 'o':
            opt.out_dir = optarg;
            break;
        case 'p':
            opt.pdf = 1;
            break;
        case 'T': {
            char *end;
            long s = strtol(optarg, &end, 10);
            if (*end || end == optarg || s < 1 || s > 3600) {
                fprintf(stderr,
                        "keng-replay: --pdf-timeout: '%s' is not a number of seconds "
                        "from 1 to 3600\n",
                        optarg);
                return 64;
            }
            opt.pdf_timeout_s = (int)s;
            break;
        }
        case 'b':
            brokers = optarg;
            break;
        case 'r':
            opt.registry_path = optarg;
            break;
        case 'c':
            opt.config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("keng-replay %s (librdkafka %s)\n", KENG_VERSION, rd_kafka_version_str());
            return 0;
        default:
            usage(stderr);
            return 64;
        }
    }
    if (optind != argc || (!opt.year && (!opt.from || !opt.to)) ||
        (opt.year && (opt.from || opt.to))) {
        fprintf(stderr, "keng-replay: give either --year or both --from and --to\n");
        usage(stderr);
        return 64;
    }
    const keng_config_flag_t flags[] = {{"brokers", brokers}, {NULL, NULL}};
    cfg = keng_config_from_args("keng-replay", opt.config_path, flags, config_tables);
    if (!cfg)
        return 64;
    if (!keng_config_brokers(cfg)) {
        fprintf(stderr, "keng-replay: no brokers: give --brokers, KENG_BROKERS or "
                        "kafka.bootstrap.servers in the config\n");
        keng_config_destroy(cfg);
        return 64;
    }

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = run(&opt, cfg);
    keng_config_destroy(cfg);
    return rc;
}
