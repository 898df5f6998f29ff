/* keng-replay: replays the input topics for a period and writes the annual review; it never
 * commits an offset, so a replay moves no group.
 *
 * It notes every partition's high watermark at the start and reads up to it, so a replay
 * ends even while the field keeps reporting. Where the broker can map the period's start to
 * an offset (ListOffsets by timestamp) it starts there; where it cannot (it answers -1, as
 * the embedded broker does), it scans from the beginning. Events are counted once per
 * event_id, by occurred_at in Asia/Ho_Chi_Minh calendar time. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "avro_codec.h"
#include "config.h"
#include "event_rule.h"
#include "kafka_denied.h"
#include "log.h"
#include "pdf.h"
#include "program.h"
#include "registry.h"
#include "registry_check.h"
#include "registry_topic.h"
#include "schemareg.h"
#include "review.h"
#include "timeutil.h"

/* Messages carry the time they were produced; an event produced before the period began can
 * still have occurred in it only if a gateway's clock ran fast, so the seek by time leaves a
 * day of margin. */
#define SEEK_MARGIN_MS (24 * 3600 * 1000LL)

static volatile sig_atomic_t stop_requested = 0;

/* The keys keng-replay reads itself; the schema store lists its own. */
static keng_config_keys_t replay_keys = {"topic.incidents", "topic.mediations", "topic.registry",
                                         NULL};
static const char *const *const config_tables[] = {
    keng_config_common_keys,       replay_keys,
    keng_schema_store_config_keys, keng_schemareg_config_keys,
    keng_event_rule_config_keys,   NULL};

struct options {
    const char *config_path;
    const char *brokers;
    const char *registry_path;
    const char *units; /* --units current|as-of:TIME: the registry from the topic */
    const char *out_dir;
    int year;
    const char *from, *to;
    int pdf;           /* also print review.pdf */
    int pdf_timeout_s; /* how long Chromium may take to print it */
    int check_config;  /* load everything, read nothing, write nothing */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-replay [options] --year YYYY | --from YYYY-MM-DD --to YYYY-MM-DD\n"
            "       keng-replay --check-config [options] [--year YYYY | --from ... --to ...]\n"
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
            "  --units WHEN         draw the units of the registry version in force at WHEN,\n"
            "                       read from the topic antt.registry (config topic.registry):\n"
            "                       current (now), or as-of:TIME (a date, midnight in Vietnam,\n"
            "                       or RFC 3339); the review states each version that took\n"
            "                       effect within the period. Not with --registry\n"
            "  --config FILE        key=value config (topic.incidents, topic.mediations, kafka.*,\n"
            "                       events.min_occurred_at and events.max_future_ms: an event\n"
            "                       whose times break them is left out, as invalid_time)\n"
            "  --pdf                also print review.pdf (A4) with headless Chromium (Debian\n"
            "                       package chromium, or KENG_CHROMIUM); exits 69 at start when\n"
            "                       there is none\n"
            "  --pdf-timeout SECONDS  how long Chromium may take to print (default 120)\n"
            "  --check-config       load the config, registry, schemas and Kafka settings (and\n"
            "                       find Chromium with --pdf), say what is wrong (exit 64, 69\n"
            "                       or 78) or that they load (exit 0), and start nothing\n"
            "  --help, --version\n");
}

static const keng_program_t program = {"keng-replay", KENG_PROGRAM_RDKAFKA, usage, config_tables,
                                       0};

/* One partition to read: where it ended when the replay began. */
typedef struct partition_end {
    const char *topic;
    int32_t partition;
    int64_t high;
    int done;
} partition_end_t;

/* How many messages one call takes from the consumer queue: one queue lock per batch. */
#define BATCH_MAX 512

/* The state of one replay's read loop. */
typedef struct reader {
    const char *topics[2];
    partition_end_t *ends; /* ends[first[t] + partition] */
    size_t first[2], count[2];
    size_t remaining;
    const rd_kafka_topic_t *last_rkt; /* the topic of the last message, and its index */
    int last_topic;
    uint64_t messages;
    keng_avro_decoder_t *dec;
    keng_schemareg_conf_t *sr; /* Schema Registry mode, or NULL: the manifest's ids */
    keng_review_t *review;
    keng_event_rule_t rule; /* events.min_occurred_at, events.max_future_ms */
    int64_t now_ms;         /* the replay's start: the clock the rule's future bound uses */
} reader_t;

/* Schema Registry mode: a writer id not seen before, from the registry, once. While no
 * registry answers the replay waits (with a growing pause, until stopped): an event is never
 * left out of the review because the registry was away. Returns 0 when the decoder knows id
 * now, -1 when the registry does not know it (or it cannot be used, or the replay stops). */
static int resolve(reader_t *rd, int32_t id)
{
    char errstr[600];
    long backoff = 500;

    for (;;) {
        int rc = keng_schemareg_resolve(rd->sr, rd->dec, id, errstr, sizeof(errstr));
        if (rc == KENG_SCHEMAREG_OK)
            return 0;
        if (rc != KENG_SCHEMAREG_UNREACHABLE) {
            keng_log_warn("a schema id the schema registry cannot give; its events are counted "
                          "as undecodable",
                          "schema_id=%d error=\"%s\"", (int)id, errstr);
            return -1;
        }
        keng_log_warn("the schema registry does not answer; the replay waits for it",
                      "schema_id=%d retry_ms=%ld error=\"%s\"", (int)id, backoff, errstr);
        for (long slept = 0; slept < backoff; slept += 100) {
            if (stop_requested)
                return -1;
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
}

static partition_end_t *end_of(reader_t *rd, const rd_kafka_message_t *m)
{
    /* Messages come in runs of one partition: the topic name is compared once per run. */
    if (m->rkt != rd->last_rkt) {
        const char *name = rd_kafka_topic_name(m->rkt);
        rd->last_rkt = m->rkt;
        rd->last_topic = strcmp(name, rd->topics[0]) == 0   ? 0
                         : strcmp(name, rd->topics[1]) == 0 ? 1
                                                            : -1;
    }
    int t = rd->last_topic;
    if (t < 0 || m->partition < 0 || (size_t)m->partition >= rd->count[t])
        return NULL;
    return &rd->ends[rd->first[t] + (size_t)m->partition];
}

static void mark_done(reader_t *rd, partition_end_t *end)
{
    if (!end->done) {
        end->done = 1;
        rd->remaining--;
    }
}

/* Counts one message, or notes that its partition has reached the end noted at the start. */
static void read_message(reader_t *rd, const rd_kafka_message_t *m)
{
    char errstr[256];
    partition_end_t *end = end_of(rd, m);

    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (end && m->offset >= end->high)
                mark_done(rd, end);
        } else if (m->err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
            /* librdkafka looks up the coordinator of the group it must be given, which the
             * replay never joins: its user needs no group ACL. */
            keng_log_debug("no ACL on the replay's group, which it does not use", "error=\"%s\"",
                           rd_kafka_message_errstr(m));
        } else if (!keng_kafka_denied(KENG_KAFKA_CONSUMER, m->err,
                                      m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                                      rd_kafka_message_errstr(m))) {
            keng_log_warn("consumer error", "error=\"%s\"", rd_kafka_message_errstr(m));
        }
        return;
    }
    if (end && m->offset + 1 >= end->high)
        mark_done(rd, end);
    /* Messages past the noted end arrived after the replay began: they are the next
     * review's, and counting them would make two runs disagree. */
    if (end && m->offset >= end->high)
        return;
    keng_event_t ev;
    int32_t id = 0;
    rd->messages++;
    int rc = keng_avro_decode(rd->dec, m->payload, m->len, &ev, &id, errstr, sizeof(errstr));
    if (rc == KENG_AVRO_ERR_UNKNOWN_ID && rd->sr && resolve(rd, id) == 0)
        rc = keng_avro_decode(rd->dec, m->payload, m->len, &ev, &id, errstr, sizeof(errstr));
    if (rc != KENG_AVRO_OK)
        keng_review_add_undecodable(rd->review);
    else if (keng_event_check_times(&rd->rule, &ev, rd->now_ms, NULL) != KENG_TIMES_OK)
        keng_review_add_invalid_time(rd->review);
    else
        keng_review_add(rd->review, &ev);
}

static int set_conf(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        keng_log_error("bad Kafka configuration", "property=%s error=\"%s\"", key, errstr);
        return -1;
    }
    return 0;
}

/* Serves the errors librdkafka queued (for a refused login, say) for up to a second. */
static void drain_errors(reader_t *rd, rd_kafka_t *rk)
{
    int64_t until = keng_monotonic_ms() + 1000;
    while (!keng_kafka_denial() && keng_monotonic_ms() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) {
            read_message(rd, m);
            rd_kafka_message_destroy(m);
        }
    }
}

/* Notes where every partition of the input topics ends now, in rd->ends. */
static int note_ends(reader_t *rd, rd_kafka_t *rk)
{
    for (int t = 0; t < 2; t++) {
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, rd->topics[t], NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
            rd_kafka_resp_err_t why = err ? err : md->topics[0].err;
            /* A refused login shows here as a timeout; its error waits on the queue. */
            if (!keng_kafka_denied(KENG_KAFKA_CONSUMER, why, rd->topics[t], rd_kafka_err2str(why)))
                drain_errors(rd, rk);
            if (!keng_kafka_denial())
                keng_log_error("cannot read topic metadata", "topic=%s error=\"%s\"", rd->topics[t],
                               rd_kafka_err2str(why));
            if (md)
                rd_kafka_metadata_destroy(md);
            return -1;
        }
        size_t cnt = (size_t)md->topics[0].partition_cnt;
        size_t first = t == 0 ? 0 : rd->count[0];
        partition_end_t *grown = realloc(rd->ends, (first + cnt) * sizeof(*rd->ends));
        if (!grown) {
            rd_kafka_metadata_destroy(md);
            return -1;
        }
        rd->ends = grown;
        rd->first[t] = first;
        rd->count[t] = cnt;
        /* Kafka numbers a topic's partitions 0..n-1; each is placed at its id. */
        for (size_t p = 0; p < cnt; p++)
            rd->ends[first + p] = (partition_end_t){rd->topics[t], (int32_t)p, 0, 1};
        for (size_t p = 0; p < cnt; p++) {
            int32_t id = md->topics[0].partitions[p].id;
            int64_t low = 0, high = 0;
            if (id < 0 || (size_t)id >= cnt) {
                keng_log_error("partition id out of range", "topic=%s partition=%d", rd->topics[t],
                               id);
                rd_kafka_metadata_destroy(md);
                return -1;
            }
            err = rd_kafka_query_watermark_offsets(rk, rd->topics[t], id, &low, &high, 10000);
            if (err) {
                keng_kafka_denied(KENG_KAFKA_CONSUMER, err, rd->topics[t], rd_kafka_err2str(err));
                keng_log_error("cannot read the end of a partition",
                               "topic=%s partition=%d error=\"%s\"", rd->topics[t], id,
                               rd_kafka_err2str(err));
                rd_kafka_metadata_destroy(md);
                return -1;
            }
            partition_end_t *end = &rd->ends[first + (size_t)id];
            end->high = high;
            end->done = high <= low;
            if (!end->done)
                rd->remaining++;
        }
        rd_kafka_metadata_destroy(md);
    }
    return 0;
}

/* Where each unfinished partition starts: the first message produced from a day before the
 * period (ListOffsets by timestamp). A broker that answers -1 for every partition cannot look
 * up by time (the embedded broker): all are scanned from the beginning. Where it maps some,
 * -1 means the partition holds nothing produced that late, and it is not read at all.
 * Returns the list to assign (the caller owns it) and the counts of each kind. */
static rd_kafka_topic_partition_list_t *plan_starts(reader_t *rd, rd_kafka_t *rk, int64_t from_ms,
                                                    int *by_time, int *scanned, int *skipped)
{
    size_t total = rd->count[0] + rd->count[1];
    rd_kafka_topic_partition_list_t *query = rd_kafka_topic_partition_list_new((int)total);
    rd_kafka_topic_partition_list_t *start = rd_kafka_topic_partition_list_new((int)total);

    *by_time = *scanned = *skipped = 0;
    for (size_t i = 0; i < total; i++)
        if (!rd->ends[i].done)
            rd_kafka_topic_partition_list_add(query, rd->ends[i].topic, rd->ends[i].partition)
                ->offset = from_ms - SEEK_MARGIN_MS;
    rd_kafka_resp_err_t err =
        query->cnt > 0 ? rd_kafka_offsets_for_times(rk, query, 10000) : RD_KAFKA_RESP_ERR_NO_ERROR;
    int mapped = 0;
    for (int i = 0; i < query->cnt && !err; i++)
        if (!query->elems[i].err && query->elems[i].offset >= 0)
            mapped++;
    for (int i = 0; i < query->cnt; i++) {
        rd_kafka_topic_partition_t *q = &query->elems[i];
        partition_end_t *end = &rd->ends[rd->first[strcmp(q->topic, rd->topics[0]) == 0 ? 0 : 1] +
                                         (size_t)q->partition];
        int64_t offset;
        if (err || q->err || q->offset < 0) {
            if (mapped > 0 && !err && !q->err) {
                mark_done(rd, end);
                (*skipped)++;
                continue;
            }
            offset = RD_KAFKA_OFFSET_BEGINNING;
            (*scanned)++;
        } else if (q->offset >= end->high) {
            /* only messages newer than the replay's start are that late */
            mark_done(rd, end);
            (*skipped)++;
            continue;
        } else {
            offset = q->offset;
            (*by_time)++;
        }
        rd_kafka_topic_partition_list_add(start, q->topic, q->partition)->offset = offset;
    }
    rd_kafka_topic_partition_list_destroy(query);
    return start;
}

/* The period's bounds and its label for the review's title; 64 (usage) on bad dates. */
static int resolve_period(const struct options *opt, int64_t *from_ms, int64_t *to_ms, char *label,
                          size_t label_size)
{
    if (opt->year) {
        keng_review_year_bounds(opt->year, from_ms, to_ms);
        snprintf(label, label_size, "%d", opt->year);
        return 0;
    }
    if (keng_review_parse_date(opt->from, from_ms) != 0 ||
        keng_review_parse_date(opt->to, to_ms) != 0 || *to_ms <= *from_ms) {
        fprintf(stderr, "keng-replay: --from and --to must be dates YYYY-MM-DD, from first\n");
        return KENG_EXIT_USAGE;
    }
    snprintf(label, label_size, "%s – %s", opt->from, opt->to);
    return 0;
}

/* librdkafka's errors that are not a message's, served by rd_kafka_consumer_poll: a refused
 * login ends the replay (keng_kafka_denied); the rest it retries by itself. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (!keng_kafka_denied(KENG_KAFKA_CONSUMER, err, NULL, reason))
        keng_log_warn("Kafka error", "code=%s error=\"%s\"",
                      rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* A consumer in a group of its own that commits nothing: a replay never moves the offsets of
 * the programs that keep the live counts. Returns NULL (logged) on failure; the caller owns
 * the handle and closes it with rd_kafka_consumer_close before rd_kafka_destroy. */
static rd_kafka_t *new_consumer(keng_config_t *cfg)
{
    char errstr[512], group[64];
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, sizeof(errstr));
    if (!conf) {
        keng_log_error("bad Kafka configuration", "error=\"%s\"", errstr);
        return NULL;
    }
    snprintf(group, sizeof(group), "keng-replay-%d", (int)getpid());
    if (set_conf(conf, "group.id", group) || set_conf(conf, "enable.auto.commit", "false") ||
        set_conf(conf, "enable.auto.offset.store", "false") ||
        set_conf(conf, "enable.partition.eof", "true"))
        goto fail;
    rd_kafka_conf_set_error_cb(conf, on_error);
    /* As in keng-aggregate: librdkafka 2.0.2 stops fetching every partition for a second
     * once the whole queue holds queued.min.messages (default 100,000), which left the
     * replay idle for most of its run; queued.max.messages.kbytes still bounds the memory. */
    if (!keng_config_get(cfg, "kafka.queued.min.messages", NULL) &&
        !keng_config_get(cfg, "kafka.consumer.queued.min.messages", NULL) &&
        set_conf(conf, "queued.min.messages", "1000000"))
        goto fail;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        keng_log_error("cannot create the Kafka consumer", "error=\"%s\"", errstr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Reads every assigned partition up to the end noted at the start, or until a signal. */
static void read_to_end(reader_t *rd, rd_kafka_t *rk, rd_kafka_queue_t *queue)
{
    int64_t last_progress = keng_monotonic_ms();
    while (rd->remaining > 0 && !stop_requested && !keng_kafka_denial()) {
        rd_kafka_message_t *batch[BATCH_MAX];
        /* Take what is queued without waiting; wait only when nothing is (a batch call with
         * a timeout would wait for a full batch at each partition's tail). */
        ssize_t got = rd_kafka_consume_batch_queue(queue, 0, batch, BATCH_MAX);
        if (got <= 0) {
            batch[0] = rd_kafka_consumer_poll(rk, 500);
            got = batch[0] ? 1 : 0;
        }
        for (ssize_t i = 0; i < got; i++) {
            read_message(rd, batch[i]);
            rd_kafka_message_destroy(batch[i]);
        }
        if (keng_monotonic_ms() - last_progress > 5000) {
            last_progress = keng_monotonic_ms();
            keng_log_info("replay progress", "messages=%llu partitions_left=%zu",
                          (unsigned long long)rd->messages, rd->remaining);
        }
    }
}

/* Writes review.html, .csv and .json (and review.pdf with --pdf, printed by `chromium`) into
 * the output folder and prints their paths on stdout. Returns 0, or -1 (logged). */
static int write_review(const struct options *opt, const reader_t *rd, const char *chromium)
{
    char errstr[512], dir[4096];
    if (opt->out_dir)
        snprintf(dir, sizeof(dir), "%s", opt->out_dir);
    else if (opt->year)
        snprintf(dir, sizeof(dir), "keng-review-%d", opt->year);
    else
        snprintf(dir, sizeof(dir), "keng-review-%s-%s", opt->from, opt->to);
    if (keng_review_write(rd->review, dir, errstr, sizeof(errstr)) != 0) {
        keng_log_error("cannot write the review", "error=\"%s\"", errstr);
        return -1;
    }
    keng_log_info(
        "review written",
        "dir=%s messages=%llu counted=%llu duplicates=%llu "
        "out_of_period=%llu unknown_board=%llu former_board=%llu undecodable=%llu "
        "invalid_time=%llu",
        dir, (unsigned long long)rd->messages,
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_COUNTED),
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_DUPLICATE),
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_OUT_OF_PERIOD),
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_UNKNOWN_BOARD),
        (unsigned long long)keng_review_former_count(rd->review),
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_UNDECODABLE),
        (unsigned long long)keng_review_outcome_count(rd->review, KENG_REVIEW_INVALID_TIME));
    printf("%s/review.html\n%s/review.csv\n%s/review.json\n", dir, dir, dir);
    if (opt->pdf) {
        char html[4200], pdf[4200];
        snprintf(html, sizeof(html), "%s/review.html", dir);
        snprintf(pdf, sizeof(pdf), "%s/review.pdf", dir);
        if (keng_pdf_print(chromium, html, pdf, opt->pdf_timeout_s, &stop_requested, errstr,
                           sizeof(errstr)) != 0) {
            keng_log_error("cannot print the review to PDF", "error=\"%s\"", errstr);
            return -1;
        }
        printf("%s\n", pdf);
    }
    return 0;
}

/* --check-config, once the config, registry, event times and schemas loaded: librdkafka
 * judges the Kafka settings, and nothing connects. Returns 0 or KENG_EXIT_CONFIG. */
static int check_kafka_settings(keng_config_t *cfg, const keng_registry_t *reg)
{
    int rc = keng_program_check_kafka(cfg, true);

    if (rc != 0)
        return rc;
    fprintf(stderr,
            "keng-replay: the config loads: registry of %zu boards, event times, schemas, "
            "Kafka settings; nothing was started\n",
            keng_registry_board_count(reg));
    return 0;
}

/* What the communes of a review drawn from the topic came from: the version before the one
 * drawn and the drawn one's lineage against it, when the drawn one took effect within the
 * period (both NULL otherwise). */
typedef struct predecessors {
    keng_registry_t *previous;
    keng_lineage_t *lineage;
    int64_t switch_ms;
} predecessors_t;

/* The lineage version v carries into *out (NULL when it has none). what names the version in
 * the log ("the version drawn"). Returns 0, or 78 after a line in the log when the lineage is
 * not a file object, does not match its sha256 or does not load. */
static int lineage_of(const keng_regtopic_version_t *v, const char *topic, const char *what,
                      keng_lineage_t **out)
{
    const json_t *lineage = json_object_get(v->doc, "lineage");
    const char *text = NULL, *sha256 = NULL;
    size_t len = 0;
    char name[160], msg[256], errstr[512], digest[65];

    *out = NULL;
    if (!lineage || json_is_null(lineage))
        return 0;
    snprintf(name, sizeof(name), "%s@%s lineage", topic, v->key);
    if (json_unpack((json_t *)lineage, "{s:s%, s:s}", "text", &text, &len, "sha256", &sha256) !=
        0) {
        snprintf(msg, sizeof(msg),
                 "the lineage of %s is not a file object ({\"file\", \"sha256\", \"text\"}); "
                 "republish the version with keng-registry --publish --replace",
                 what);
        keng_log_error(msg, "lineage=\"%s\"", name);
        return KENG_EXIT_CONFIG;
    }
    keng_regtopic_sha256(text, len, digest);
    if (strcmp(digest, sha256) != 0) {
        snprintf(msg, sizeof(msg),
                 "the lineage of %s does not match its sha256; republish the version with "
                 "keng-registry --publish --replace",
                 what);
        keng_log_error(msg, "lineage=\"%s\" sha256=%.12s actual=%.12s", name, sha256, digest);
        return KENG_EXIT_CONFIG;
    }
    *out = keng_lineage_load_text(text, len, name, errstr, sizeof(errstr));
    if (!*out) {
        snprintf(msg, sizeof(msg), "the lineage of %s does not load", what);
        keng_log_error(msg, "error=\"%s\"", errstr);
        return KENG_EXIT_CONFIG;
    }
    return 0;
}

/* The predecessors of the units of list->v[drawn] (taken from the version before it and its
 * lineage) into *out, when it took effect within (from_ms, to_ms) and carries a lineage.
 * Returns 0 (with or without them, said in the log), or 78 after a line in the log when the
 * lineage or the version before it does not load. */
static int predecessors_from_topic(const keng_regtopic_list_t *list, size_t drawn,
                                   const char *topic, int64_t from_ms, int64_t to_ms,
                                   predecessors_t *out)
{
    const keng_regtopic_version_t *v = &list->v[drawn];
    char previous_name[128], errstr[512];

    if (v->effective_ms <= from_ms || v->effective_ms >= to_ms || drawn == 0)
        return 0; /* the units drawn were in force all through the period, or came first */
    int rc = lineage_of(v, topic, "the version drawn", &out->lineage);
    if (rc != 0)
        return rc;
    if (!out->lineage) {
        keng_log_info("the version drawn has no lineage: the communes list no predecessors",
                      "version=%s@%s", topic, v->key);
        return 0;
    }
    const keng_regtopic_version_t *prev = &list->v[drawn - 1];
    snprintf(previous_name, sizeof(previous_name), "%s@%s", topic, prev->key);
    out->previous =
        keng_registry_load_text(prev->text, prev->text_len, previous_name, errstr, sizeof(errstr));
    if (!out->previous) {
        keng_log_error("the version before the one drawn does not load, so its communes cannot "
                       "be shown as predecessors",
                       "version=%s error=\"%s\"", previous_name, errstr);
        keng_lineage_destroy(out->lineage);
        out->lineage = NULL;
        return KENG_EXIT_CONFIG;
    }
    out->switch_ms = v->effective_ms;
    keng_log_info("each commune lists its predecessors' figures from before the switch",
                  "switch=%s previous=%s districts=%zu communes=%zu boards=%zu", v->key,
                  previous_name, keng_registry_district_count(out->previous),
                  keng_registry_commune_count(out->previous),
                  keng_registry_board_count(out->previous));
    return 0;
}

/* Every version of the topic, for keng_review_set_versions: the events of boards the version
 * drawn lacks are counted by them. */
typedef struct versions {
    keng_registry_t **regs;    /* NULL at drawn: the review's registry stands there */
    keng_lineage_t **lineages; /* of the versions up to the one drawn; NULL without */
    keng_review_version_t *v;
    size_t n, drawn;
} versions_t;

static void versions_free(versions_t *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        if (vs->regs)
            keng_registry_destroy(vs->regs[i]);
        if (vs->lineages)
            keng_lineage_destroy(vs->lineages[i]);
    }
    free(vs->regs);
    free(vs->lineages);
    free(vs->v);
    *vs = (versions_t){0};
}

/* Loads every version of list but the one drawn (reg), and the lineages from the first to the
 * one drawn (those that carry the units of a removed board forward to the units drawn), into
 * *out. Returns 0, or 78 after a line in the log when one does not load. */
static int versions_from_topic(const keng_regtopic_list_t *list, size_t drawn, const char *topic,
                               const keng_registry_t *reg, versions_t *out)
{
    char name[128], errstr[512];

    out->n = list->n;
    out->drawn = drawn;
    out->regs = calloc(list->n + 1, sizeof(*out->regs));
    out->lineages = calloc(list->n + 1, sizeof(*out->lineages));
    out->v = calloc(list->n + 1, sizeof(*out->v));
    if (!out->regs || !out->lineages || !out->v) {
        keng_log_error("out of memory", "versions=%zu", list->n);
        return KENG_EXIT_CONFIG;
    }
    for (size_t i = 0; i < list->n; i++) {
        const keng_regtopic_version_t *v = &list->v[i];
        snprintf(name, sizeof(name), "%s@%s", topic, v->key);
        if (i != drawn) {
            out->regs[i] =
                keng_registry_load_text(v->text, v->text_len, name, errstr, sizeof(errstr));
            if (!out->regs[i]) {
                keng_log_error("a registry version does not load, so the events of its boards "
                               "cannot be placed",
                               "version=%s error=\"%s\"", name, errstr);
                return KENG_EXIT_CONFIG;
            }
        }
        if (i > 0 && i <= drawn && lineage_of(v, topic, "a registry version", &out->lineages[i]))
            return KENG_EXIT_CONFIG;
        out->v[i] = (keng_review_version_t){i == drawn ? reg : out->regs[i], out->lineages[i],
                                            v->effective_ms};
    }
    return 0;
}

/* --units: the registry version in force at the time it names (now for current), from the
 * topic antt.registry, the versions that took effect within [from_ms, to_ms) (*changes,
 * the caller frees it), and the predecessors of its units when it took effect within the
 * period (*preds, the caller's). Returns 0, or an exit code after a line in the log: 64 for
 * a time that does not parse, 69 when no broker answers, 78 for a topic that is missing or
 * holds no version in force then, or whose version in force, its lineage or the version
 * before it does not load. */
static int registry_from_topic(const struct options *opt, keng_config_t *cfg, int64_t from_ms,
                               int64_t to_ms, keng_registry_t **reg,
                               keng_review_registry_change_t **changes, size_t *nchanges,
                               predecessors_t *preds, versions_t *versions)
{
    const char *topic = keng_config_get(cfg, "topic.registry", KENG_REGTOPIC_DEFAULT);
    keng_regtopic_list_t list = {0};
    char errstr[512], name[128];
    int64_t at_ms;
    int rc;

    if (strcmp(opt->units, "current") == 0)
        at_ms = keng_now_ms();
    else if (strncmp(opt->units, "as-of:", 6) != 0 ||
             keng_time_parse_day_or_rfc3339(opt->units + 6, &at_ms) != 0) {
        keng_log_error("--units takes current or as-of:TIME (a date such as 2025-06-30, "
                       "midnight in Vietnam, or an RFC 3339 time)",
                       "units=%s", opt->units);
        return KENG_EXIT_USAGE;
    }
    rc = keng_regtopic_read(cfg, topic, &list, errstr, sizeof(errstr));
    if (rc != 0) {
        keng_log_error("cannot read the registry versions", "topic=%s error=\"%s\"", topic, errstr);
        keng_regtopic_list_free(&list);
        return rc;
    }
    const keng_regtopic_version_t *in_force = NULL;
    size_t drawn = 0;
    *changes = calloc(list.n + 1, sizeof(**changes));
    for (size_t i = 0; *changes && i < list.n; i++) {
        const keng_regtopic_version_t *v = &list.v[i];
        if (v->effective_ms <= at_ms) {
            in_force = v;
            drawn = i;
        }
        if (v->effective_ms > from_ms && v->effective_ms < to_ms)
            (*changes)[(*nchanges)++] = (keng_review_registry_change_t){
                v->effective_ms, (size_t)v->districts, (size_t)v->communes, (size_t)v->boards};
    }
    if (!*changes || !in_force) {
        keng_log_error(!*changes ? "out of memory"
                                 : "no registry version is in force at that time (publish one "
                                   "with keng-registry --publish, or give --registry FILE)",
                       "topic=%s units=%s versions=%zu first=%s", topic, opt->units, list.n,
                       list.n ? list.v[0].key : "-");
        keng_regtopic_list_free(&list);
        return KENG_EXIT_CONFIG;
    }
    snprintf(name, sizeof(name), "%s@%s", topic, in_force->key);
    *reg =
        keng_registry_load_text(in_force->text, in_force->text_len, name, errstr, sizeof(errstr));
    if (!*reg)
        keng_log_error("the registry version in force does not load", "version=%s error=\"%s\"",
                       name, errstr);
    else
        keng_log_info("registry version chosen", "units=%s version=%s sha256=%.12s changes=%zu",
                      opt->units, name, in_force->sha256 ? in_force->sha256 : "-", *nchanges);
    rc = *reg ? predecessors_from_topic(&list, drawn, topic, from_ms, to_ms, preds)
              : KENG_EXIT_CONFIG;
    if (rc == 0)
        rc = versions_from_topic(&list, drawn, topic, *reg, versions);
    keng_regtopic_list_free(&list);
    return rc;
}

static int run(const struct options *opt, keng_config_t *cfg)
{
    char errstr[512], label[64] = "", chromium[4096];
    int64_t from_ms = 0, to_ms = 0;
    keng_registry_t *reg = NULL;
    keng_review_registry_change_t *changes = NULL;
    size_t nchanges = 0;
    predecessors_t preds = {NULL, NULL, 0};
    versions_t versions = {0};
    keng_schema_store_t *store = NULL;
    reader_t rd = {0};
    keng_schemareg_conf_t sr = {0};
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *queue = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    /* --check-config needs no period; one given is checked. */
    int rc =
        opt->year || opt->from ? resolve_period(opt, &from_ms, &to_ms, label, sizeof(label)) : 0;
    if (rc != 0)
        return rc;
    if (keng_event_rule_from_config(cfg, &rd.rule, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "keng-replay: %s\n", errstr);
        return KENG_EXIT_USAGE;
    }
    rc = 1;

    /* Asked for a PDF without a browser to print it: say so before a long replay, not after. */
    if (opt->pdf &&
        keng_pdf_find_chromium(chromium, sizeof(chromium), errstr, sizeof(errstr)) != 0) {
        fprintf(stderr,
                "keng-replay: %s; without --pdf the review is written as HTML, CSV and JSON\n",
                errstr);
        return KENG_EXIT_UNAVAILABLE;
    }

    if (opt->units) {
        rc = registry_from_topic(opt, cfg, from_ms, to_ms, &reg, &changes, &nchanges, &preds,
                                 &versions);
        if (rc != 0)
            goto out;
        rc = 1;
    } else {
        reg = keng_registry_open(opt->registry_path, errstr, sizeof(errstr));
        if (!reg) {
            keng_log_error("cannot load the board registry", "error=\"%s\"", errstr);
            rc = KENG_EXIT_CONFIG;
            goto out;
        }
    }
    keng_program_log_registry(reg);
    store = keng_schema_store_from_config(cfg, errstr, sizeof(errstr));
    rd.dec = store ? keng_avro_decoder_new(store, errstr, sizeof(errstr)) : NULL;
    rd.review = keng_review_new(reg, from_ms, to_ms, label);
    if (rd.review && opt->units &&
        (keng_review_set_registry(rd.review, "topic", opt->units, changes, nchanges) != 0 ||
         (preds.previous && keng_review_set_predecessors(rd.review, preds.previous, preds.lineage,
                                                         preds.switch_ms) != 0) ||
         keng_review_set_versions(rd.review, versions.v, versions.n, versions.drawn) != 0)) {
        keng_review_destroy(rd.review);
        rd.review = NULL;
    }
    if (store && rd.dec && !rd.review)
        snprintf(errstr, sizeof(errstr), "out of memory for the review");
    if (!store || !rd.dec || !rd.review) {
        keng_log_error("cannot set up decoding", "error=\"%s\"", errstr);
        /* Schemas that do not load are the configuration's fault, as a registry's are. */
        if (!store || !rd.dec)
            rc = KENG_EXIT_CONFIG;
        goto out;
    }
    int sr_rc = keng_schemareg_conf_from_config(cfg, &sr, errstr, sizeof(errstr));
    if (sr_rc < 0) {
        keng_log_error("the schema registry's config does not load", "error=\"%s\"", errstr);
        rc = KENG_EXIT_CONFIG;
        goto out;
    }
    if (sr_rc > 0) {
        rd.sr = &sr;
        keng_avro_decoder_use_registry(rd.dec);
    }
    if (opt->check_config) {
        rc = check_kafka_settings(cfg, reg);
        goto out;
    }
    rd.now_ms = keng_now_ms();

    rk = new_consumer(cfg);
    if (!rk)
        goto out;
    queue = rd_kafka_queue_get_consumer(rk);

    rd.topics[0] = keng_config_get(cfg, "topic.incidents", "antt.incidents");
    rd.topics[1] = keng_config_get(cfg, "topic.mediations", "antt.mediations");
    if (note_ends(&rd, rk) != 0) {
        if (keng_kafka_denial())
            rc = KENG_EXIT_CONFIG;
        goto out;
    }
    size_t to_read = rd.remaining;
    int by_time, scanned, skipped;
    assignment = plan_starts(&rd, rk, from_ms, &by_time, &scanned, &skipped);
    keng_log_info("replay starting",
                  "period=\"%s\" partitions=%zu to_read=%zu sought_by_time=%d "
                  "scanned_from_start=%d nothing_that_late=%d",
                  label, rd.count[0] + rd.count[1], to_read, by_time, scanned, skipped);
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, assignment);
    if (err) {
        keng_log_error("cannot assign partitions", "error=\"%s\"", rd_kafka_err2str(err));
        goto out;
    }

    read_to_end(&rd, rk, queue);
    if (keng_kafka_denial()) {
        keng_log_error("replay stopped; no report written", "denied=\"%s\"", keng_kafka_denial());
        rc = KENG_EXIT_CONFIG;
        goto out;
    }
    if (stop_requested) {
        keng_log_warn("replay interrupted; no report written", NULL);
        goto out;
    }
    if (write_review(opt, &rd, chromium) != 0)
        goto out;
    rc = 0;
out:
    if (queue)
        rd_kafka_queue_destroy(queue);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    free(rd.ends);
    keng_review_destroy(rd.review);
    keng_avro_decoder_destroy(rd.dec);
    keng_schema_store_destroy(store);
    keng_registry_destroy(reg);
    keng_registry_destroy(preds.previous);
    keng_lineage_destroy(preds.lineage);
    versions_free(&versions);
    free(changes);
    keng_schemareg_conf_free(&sr);
    return rc;
}

static int take_year(const char *value, void *to)
{
    char *end;
    long y = strtol(value, &end, 10);
    if (*end || y < 2000 || y > 9999) {
        fprintf(stderr, "keng-replay: --year: '%s' is not a year from 2000\n", value);
        return KENG_EXIT_USAGE;
    }
    *(int *)to = (int)y;
    return 0;
}

static int take_pdf_timeout(const char *value, void *to)
{
    char *end;
    long s = strtol(value, &end, 10);
    if (*end || end == value || s < 1 || s > 3600) {
        fprintf(stderr,
                "keng-replay: --pdf-timeout: '%s' is not a number of seconds from 1 to 3600\n",
                value);
        return KENG_EXIT_USAGE;
    }
    *(int *)to = (int)s;
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {.pdf_timeout_s = 120};
    const keng_program_flag_t table[] = {
        KENG_FLAG_TAKE("year", take_year, &opt.year),
        KENG_FLAG("from", &opt.from, NULL),
        KENG_FLAG("to", &opt.to, NULL),
        KENG_FLAG("out", &opt.out_dir, NULL),
        KENG_FLAG("brokers", &opt.brokers, "brokers"),
        KENG_FLAG("registry", &opt.registry_path, NULL),
        KENG_FLAG("units", &opt.units, NULL),
        KENG_FLAG("config", &opt.config_path, NULL),
        KENG_FLAG_SET("pdf", &opt.pdf),
        KENG_FLAG_TAKE("pdf-timeout", take_pdf_timeout, &opt.pdf_timeout_s),
        KENG_FLAG_SET("check-config", &opt.check_config),
        KENG_FLAGS_END,
    };
    int operands;

    keng_program_start(&program);
    /* The arguments after the flags get the either-or message below, as they always have. */
    int rc = keng_program_parse(&program, argc, argv, table, &operands);
    if (rc >= 0)
        return rc;
    bool period_needed = !opt.check_config || opt.year || opt.from || opt.to;
    if (operands != argc || (period_needed && !opt.year && (!opt.from || !opt.to)) ||
        (opt.year && (opt.from || opt.to))) {
        fprintf(stderr, "keng-replay: give either --year or both --from and --to\n");
        usage(stderr);
        return KENG_EXIT_USAGE;
    }
    if (opt.units && opt.registry_path) {
        fprintf(stderr, "keng-replay: --units takes the registry from the topic antt.registry; "
                        "give it or --registry FILE, not both\n");
        return KENG_EXIT_USAGE;
    }
    keng_config_t *cfg = keng_program_config_table(&program, opt.config_path, table);
    if (!cfg)
        return KENG_EXIT_USAGE;
    if ((rc = keng_program_require_brokers(cfg)) != 0) {
        keng_config_destroy(cfg);
        return rc;
    }
    /* The review holds counts per hamlet by category: its folder and files (the browser's PDF
     * too) are the user's and the group's, never other users' (0750 and 0640). */
    umask(027);
    keng_program_stop_on_signals(&stop_requested);
    rc = run(&opt, cfg);
    keng_config_destroy(cfg);
    return rc;
}
