/* The /metrics route: keng-aggregate's counters in Prometheus's text format; it only reads
 * what the other parts count, never counts anything itself. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_health.h"
#include "log.h"
#include "silent.h"
#include "timeutil.h"

static const char *const known_reasons[] = {
    "bad-magic",          "unknown-schema-id",
    "truncated",          "invalid-avro",
    "wrong-record",       "bad-field",
    "unknown-board",      "future-event",
    "occurred-too-early", "reported-before-occurred",
};

/* ---- metrics ---- */

typedef struct metrics_ctx {
    FILE *out;
    const char *seen[32];
    size_t nseen;
} metrics_ctx_t;

static void metric_reason(const char *reason, uint64_t count, void *arg)
{
    metrics_ctx_t *m = arg;

    fprintf(m->out, "keng_deadletter_total{reason=\"%s\"} %" PRIu64 "\n", reason, count);
    if (m->nseen < 32)
        m->seen[m->nseen++] = reason;
}

static void metric_lag(const char *topic, int32_t partition, int64_t lag, void *arg)
{
    metrics_ctx_t *m = arg;

    fprintf(m->out, "keng_consumer_lag{topic=\"%s\",partition=\"%" PRId32 "\"} %" PRId64 "\n",
            topic, partition, lag);
}

static void metrics_alerts(const keng_api_t *api, FILE *out)
{
    keng_alerts_stats_t as = {0};

    if (api->alerts)
        keng_alerts_stats(api->alerts, &as);
    fprintf(out,
            "# HELP keng_alerts_firing Alerts firing now.\n"
            "# TYPE keng_alerts_firing gauge\n"
            "keng_alerts_firing %" PRIu64 "\n"
            "# HELP keng_alert_transitions_total Alert transitions emitted since the process "
            "started, by status.\n"
            "# TYPE keng_alert_transitions_total counter\n"
            "keng_alert_transitions_total{status=\"firing\"} %" PRIu64 "\n"
            "keng_alert_transitions_total{status=\"resolved\"} %" PRIu64 "\n",
            as.firing, as.transitions[KENG_ALERT_FIRING], as.transitions[KENG_ALERT_RESOLVED]);
}

/* The exact one: the distinct events in this instance's own counts (the units of the
 * partitions it owns), all time, so that a group's instances sum to every event once. */
static void metrics_in_counts(const keng_api_t *api, FILE *out)
{
    keng_tally_t all = {0};

    keng_counts_get(api->counts, KENG_LEVEL_PROVINCE, 0, KENG_WIN_ALL, &all);
    fprintf(out,
            "# HELP keng_events_in_counts Distinct events in this instance's counts of the "
            "partitions it owns, all time; summed over a group's instances, every event "
            "once.\n"
            "# TYPE keng_events_in_counts gauge\n"
            "keng_events_in_counts{kind=\"incident\"} %" PRIu64 "\n"
            "keng_events_in_counts{kind=\"mediation\"} %" PRIu64 "\n",
            all.incidents, all.mediations);
}

void keng_api__get_metrics(keng_api_t *api, keng_http_request_t *req, keng_http_server_t *srv)
{
    char *buf = NULL;
    size_t len = 0;
    keng_consumer_stats_t st = {0};
    metrics_ctx_t m = {0};
    char reason[256];

    m.out = open_memstream(&buf, &len);
    if (!m.out) {
        keng_api__respond_error(api, req, 500, "out of memory");
        return;
    }
    if (api->consumer)
        keng_consumer_stats(api->consumer, &st);
    keng_api__count_status(api, 200); /* this answer is part of the numbers it reports */
    /* The work done, not the events: after a handover or a restart, the events since the
     * last checkpoint are read and counted again, by this instance or another one. */
    fprintf(m.out,
            "# HELP keng_events_counted_total Counts made since the process started, events "
            "read again after a handover or restart included (work, not distinct events).\n"
            "# TYPE keng_events_counted_total counter\n"
            "keng_events_counted_total %" PRIu64 "\n"
            "# HELP keng_board_moves_total Boards whose events began to come from another "
            "partition than their counts (partitions were added to an input topic); each "
            "partition's share is counted apart.\n"
            "# TYPE keng_board_moves_total counter\n"
            "keng_board_moves_total %" PRIu64 "\n"
            "# HELP keng_duplicates_dropped_total Events not counted because their id was "
            "already counted.\n"
            "# TYPE keng_duplicates_dropped_total counter\n"
            "keng_duplicates_dropped_total %" PRIu64 "\n"
            "# HELP keng_deadletter_total Messages sent to the dead-letter topic, by reason.\n"
            "# TYPE keng_deadletter_total counter\n",
            st.counted, st.board_moves, st.duplicates);
    if (api->consumer)
        keng_consumer_each_deadletter(api->consumer, metric_reason, &m);
    for (size_t i = 0; i < sizeof(known_reasons) / sizeof(known_reasons[0]); i++) {
        bool seen = false;
        for (size_t j = 0; j < m.nseen; j++)
            seen = seen || strcmp(m.seen[j], known_reasons[i]) == 0;
        if (!seen)
            fprintf(m.out, "keng_deadletter_total{reason=\"%s\"} 0\n", known_reasons[i]);
    }
    metrics_in_counts(api, m.out);
    fprintf(m.out, "# HELP keng_consumer_lag Messages between the high watermark and the next "
                   "offset to count.\n"
                   "# TYPE keng_consumer_lag gauge\n");
    if (api->consumer)
        keng_consumer_each_partition(api->consumer, metric_lag, &m);
    fprintf(m.out,
            "# HELP keng_checkpoint_seconds Duration of the last checkpoint.\n"
            "# TYPE keng_checkpoint_seconds gauge\n"
            "keng_checkpoint_seconds %.6f\n"
            "# HELP keng_checkpoints_total Checkpoints written since the process started.\n"
            "# TYPE keng_checkpoints_total counter\n"
            "keng_checkpoints_total %" PRIu64 "\n"
            "# HELP keng_checkpoint_failures_total Checkpoints that failed since the process "
            "started (each retry counts).\n"
            "# TYPE keng_checkpoint_failures_total counter\n"
            "keng_checkpoint_failures_total %" PRIu64 "\n"
            "# HELP keng_state_units_damaged_total Checkpointed unit states that failed their "
            "check when loaded, and were rebuilt.\n"
            "# TYPE keng_state_units_damaged_total counter\n"
            "keng_state_units_damaged_total %" PRIu64 "\n"
            "# HELP keng_consumer_fenced_total Times the group coordinator fenced this static "
            "member (another process with its group.instance.id, or a coordinator failover).\n"
            "# TYPE keng_consumer_fenced_total counter\n"
            "keng_consumer_fenced_total %" PRIu64 "\n"
            "# HELP keng_consumer_rejoins_total Times this instance rejoined its group under "
            "the same group.instance.id after a fence.\n"
            "# TYPE keng_consumer_rejoins_total counter\n"
            "keng_consumer_rejoins_total %" PRIu64 "\n"
            "# HELP keng_consumer_handles_abandoned_total Fenced Kafka handles left to the "
            "process exit: librdkafka 2.0.2 cannot destroy one fenced in the middle of a "
            "rebalance (its threads and memory stay until a restart).\n"
            "# TYPE keng_consumer_handles_abandoned_total counter\n"
            "keng_consumer_handles_abandoned_total %" PRIu64 "\n"
            "# HELP keng_schema_registry_waits_total Times a partition paused for a schema id "
            "the schema registry had not resolved yet.\n"
            "# TYPE keng_schema_registry_waits_total counter\n"
            "keng_schema_registry_waits_total %" PRIu64 "\n"
            "# HELP keng_schema_registry_lookups_total Schema ids the schema registry answered "
            "for (found or unknown).\n"
            "# TYPE keng_schema_registry_lookups_total counter\n"
            "keng_schema_registry_lookups_total %" PRIu64 "\n"
            "# HELP keng_schema_registry_lookup_failures_total Schema id lookups the schema "
            "registry did not answer (retried).\n"
            "# TYPE keng_schema_registry_lookup_failures_total counter\n"
            "keng_schema_registry_lookup_failures_total %" PRIu64 "\n"
            "# HELP keng_registry_board_waits_total Times a partition paused at an event whose "
            "board only a registry version about to take effect has.\n"
            "# TYPE keng_registry_board_waits_total counter\n"
            "keng_registry_board_waits_total %" PRIu64 "\n"
            /* The time rather than the age: Prometheus subtracts it from time() itself. */
            "# HELP keng_checkpoint_last_success_timestamp_seconds When the last checkpoint was "
            "written (the process start until the first).\n"
            "# TYPE keng_checkpoint_last_success_timestamp_seconds gauge\n"
            "keng_checkpoint_last_success_timestamp_seconds %.3f\n"
            "# HELP keng_dedup_ids Event ids remembered for deduplication.\n"
            "# TYPE keng_dedup_ids gauge\n"
            "keng_dedup_ids %zu\n"
            "# HELP keng_ready 1 once caught up with the topics.\n"
            "# TYPE keng_ready gauge\n"
            "keng_ready %d\n"
            "# HELP keng_http_connections Open HTTP connections.\n"
            "# TYPE keng_http_connections gauge\n"
            "keng_http_connections %u\n"
            "# HELP keng_http_requests_total HTTP requests answered, by status.\n"
            "# TYPE keng_http_requests_total counter\n",
            st.last_checkpoint_seconds, st.checkpoints, st.checkpoint_failures, st.units_damaged,
            st.fenced, st.rejoins, st.handles_abandoned, st.schema_waits, st.schema_lookups,
            st.schema_lookup_failures, st.board_waits, (double)st.last_checkpoint_ms / 1000.0,
            keng_counts_dedup_size(api->counts),
            api->consumer && keng_consumer_ready(api->consumer, reason, sizeof(reason)),
            srv ? keng_http_server_connections(srv) : 0u);
    for (int i = 0; i < STATUS_SLOTS && api->statuses[i].status; i++)
        fprintf(m.out, "keng_http_requests_total{status=\"%d\"} %" PRIu64 "\n",
                api->statuses[i].status, api->statuses[i].count);
    if (srv)
        keng_http_server_write_metrics(srv, m.out);
    metrics_alerts(api, m.out);
    keng_kafka_health_metrics(m.out);
    char registry[2048];
    if (api->follow)
        keng_registry_follow_metrics(api->follow, api->reg, m.out);
    else if (keng_registry_metrics(api->reg, registry, sizeof(registry)) > 0)
        fputs(registry, m.out);
    if (api->more_metrics)
        api->more_metrics(m.out, api->more_metrics_arg);
    fclose(m.out);
    keng_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
}
