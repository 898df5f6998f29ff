/* Prometheus counters of keng-ingest, which never lock (the loop thread alone records them).
 * Statuses are counted in a flat table so that recording one costs an increment; only the
 * statuses seen are rendered. */
#include "ingest_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define STATUS_MIN 100
#define STATUS_MAX 599

static const double bucket_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define NBUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

static const char *const reject_names[KENG_REJECT_COUNT] = {"invalid", "forbidden", "too_many",
                                                            "unavailable"};

struct keng_ingest_metrics {
    uint64_t requests[STATUS_MAX - STATUS_MIN + 1];
    uint64_t accepted;
    uint64_t joined;
    uint64_t rejected[KENG_REJECT_COUNT];
    uint64_t buckets[NBUCKETS]; /* not cumulative; summed when rendered */
    uint64_t delivery_count;
    double delivery_sum;
};

keng_ingest_metrics_t *keng_ingest_metrics_new(void)
{
    return calloc(1, sizeof(keng_ingest_metrics_t));
}

void keng_ingest_metrics_destroy(keng_ingest_metrics_t *m)
{
    free(m);
}

void keng_ingest_metrics_request(keng_ingest_metrics_t *m, int status)
{
    if (status >= STATUS_MIN && status <= STATUS_MAX)
        m->requests[status - STATUS_MIN]++;
}

void keng_ingest_metrics_accepted(keng_ingest_metrics_t *m, uint64_t events)
{
    m->accepted += events;
}

void keng_ingest_metrics_joined(keng_ingest_metrics_t *m, uint64_t events)
{
    m->joined += events;
}

void keng_ingest_metrics_rejected(keng_ingest_metrics_t *m, keng_reject_t why, uint64_t events)
{
    if ((int)why >= 0 && why < KENG_REJECT_COUNT)
        m->rejected[why] += events;
}

void keng_ingest_metrics_delivery(keng_ingest_metrics_t *m, double seconds)
{
    size_t i = 0;

    while (i < NBUCKETS && seconds > bucket_bounds[i])
        i++;
    if (i < NBUCKETS)
        m->buckets[i]++;
    m->delivery_count++;
    m->delivery_sum += seconds;
}

typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out_t *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *grown = realloc(o->s, cap);
        if (!grown) {
            o->failed = 1;
            return;
        }
        o->s = grown;
        o->cap = cap;
    }
}

char *keng_ingest_metrics_render(const keng_ingest_metrics_t *m, const keng_ingest_gauges_t *g,
                                 size_t *len)
{
    out_t o = {.s = malloc(4096), .cap = 4096};
    uint64_t cumulative = 0;

    if (!o.s)
        return NULL;
    o.s[0] = '\0';
    put(&o, "# HELP keng_ingest_requests_total HTTP requests answered by keng-ingest, by "
            "status.\n# TYPE keng_ingest_requests_total counter\n");
    for (int s = STATUS_MIN; s <= STATUS_MAX; s++)
        if (m->requests[s - STATUS_MIN])
            put(&o, "keng_ingest_requests_total{status=\"%d\"} %llu\n", s,
                (unsigned long long)m->requests[s - STATUS_MIN]);
    put(&o,
        "# HELP keng_ingest_events_accepted_total Events acknowledged by Kafka and "
        "answered 202.\n# TYPE keng_ingest_events_accepted_total counter\n"
        "keng_ingest_events_accepted_total %llu\n",
        (unsigned long long)m->accepted);
    put(&o,
        "# HELP keng_ingest_events_joined_total Resent events that joined the copy of the same "
        "event still waiting for Kafka instead of queueing another.\n"
        "# TYPE keng_ingest_events_joined_total counter\n"
        "keng_ingest_events_joined_total %llu\n",
        (unsigned long long)m->joined);
    put(&o, "# HELP keng_ingest_events_rejected_total Events of requests that were refused, by "
            "reason.\n# TYPE keng_ingest_events_rejected_total counter\n");
    for (int r = 0; r < KENG_REJECT_COUNT; r++)
        put(&o, "keng_ingest_events_rejected_total{reason=\"%s\"} %llu\n", reject_names[r],
            (unsigned long long)m->rejected[r]);
    put(&o, "# HELP keng_ingest_delivery_seconds Time from producing a request's events to "
            "Kafka acknowledging the last of them.\n"
            "# TYPE keng_ingest_delivery_seconds histogram\n");
    for (size_t i = 0; i < NBUCKETS; i++) {
        cumulative += m->buckets[i];
        put(&o, "keng_ingest_delivery_seconds_bucket{le=\"%g\"} %llu\n", bucket_bounds[i],
            (unsigned long long)cumulative);
    }
    put(&o, "keng_ingest_delivery_seconds_bucket{le=\"+Inf\"} %llu\n",
        (unsigned long long)m->delivery_count);
    put(&o, "keng_ingest_delivery_seconds_sum %.6f\nkeng_ingest_delivery_seconds_count %llu\n",
        m->delivery_sum, (unsigned long long)m->delivery_count);
    put(&o,
        "# HELP keng_ingest_producer_queue_depth Messages librdkafka holds that Kafka has "
        "not acknowledged yet.\n# TYPE keng_ingest_producer_queue_depth gauge\n"
        "keng_ingest_producer_queue_depth %lld\n",
        g->queue_depth);
    put(&o,
        "# HELP keng_http_connections Open HTTP connections.\n"
        "# TYPE keng_http_connections gauge\nkeng_http_connections %lld\n",
        g->connections);
    put(&o,
        "# HELP keng_ingest_in_flight_requests Requests waiting for Kafka.\n"
        "# TYPE keng_ingest_in_flight_requests gauge\nkeng_ingest_in_flight_requests %lld\n",
        g->in_flight_requests);
    put(&o,
        "# HELP keng_ingest_in_flight_events Events of requests waiting for Kafka.\n"
        "# TYPE keng_ingest_in_flight_events gauge\nkeng_ingest_in_flight_events %lld\n",
        g->in_flight_events);
    put(&o,
        "# HELP keng_ingest_tokens Tokens loaded from the token file.\n"
        "# TYPE keng_ingest_tokens gauge\nkeng_ingest_tokens %lld\n",
        g->tokens);
    if (o.failed) {
        free(o.s);
        return NULL;
    }
    *len = o.len;
    return o.s;
}
