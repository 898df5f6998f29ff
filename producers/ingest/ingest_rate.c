/* keng-ingest's token buckets, one per gateway name (ingest_rate.h); never reads a body or a
 * token, and keeps no clock of its own. */
#include "ingest_rate.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bucket {
    char *gateway;
    double tokens;
    int64_t last_ms;
    uint64_t limited;
} bucket_t;

struct keng_ingest_rate {
    double per_ms, burst;
    bucket_t *buckets; /* open addressing, cap a power of two */
    size_t count, cap;
};

keng_ingest_rate_t *keng_ingest_rate_new(double events_per_s, double burst)
{
    keng_ingest_rate_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->per_ms = events_per_s / 1000.0;
    r->burst = burst < 1 ? 1 : burst;
    return r;
}

void keng_ingest_rate_destroy(keng_ingest_rate_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->cap; i++)
        free(r->buckets[i].gateway);
    free(r->buckets);
    free(r);
}

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int grow(keng_ingest_rate_t *r)
{
    size_t cap = r->cap ? r->cap * 2 : 64;
    bucket_t *b = calloc(cap, sizeof(*b));

    if (!b)
        return -1;
    for (size_t i = 0; i < r->cap; i++) {
        if (!r->buckets[i].gateway)
            continue;
        size_t j = hash(r->buckets[i].gateway) & (cap - 1);
        while (b[j].gateway)
            j = (j + 1) & (cap - 1);
        b[j] = r->buckets[i];
    }
    free(r->buckets);
    r->buckets = b;
    r->cap = cap;
    return 0;
}

/* The gateway's bucket, refilled to now; a new one starts full. NULL when memory runs out
 * (the request is then admitted: a limit that fails must not refuse the province). */
static bucket_t *bucket_at(keng_ingest_rate_t *r, const char *gateway, int64_t now_ms)
{
    if ((r->count + 1) * 2 > r->cap && grow(r) != 0)
        return NULL;
    size_t i = hash(gateway) & (r->cap - 1);
    while (r->buckets[i].gateway && strcmp(r->buckets[i].gateway, gateway) != 0)
        i = (i + 1) & (r->cap - 1);
    bucket_t *b = &r->buckets[i];
    if (!b->gateway) {
        if (!(b->gateway = strdup(gateway)))
            return NULL;
        b->tokens = r->burst;
        b->last_ms = now_ms;
        r->count++;
    }
    if (now_ms > b->last_ms) {
        b->tokens = fmin(r->burst, b->tokens + r->per_ms * (double)(now_ms - b->last_ms));
        b->last_ms = now_ms;
    }
    return b;
}

long keng_ingest_rate_admit(keng_ingest_rate_t *r, const char *gateway, int64_t now_ms)
{
    if (r->per_ms <= 0)
        return 0;
    bucket_t *b = bucket_at(r, gateway, now_ms);
    if (!b || b->tokens >= 1)
        return 0;
    b->limited++;
    double wait_s = (1 - b->tokens) / (r->per_ms * 1000.0);
    return wait_s < 1 ? 1 : (long)ceil(wait_s);
}

void keng_ingest_rate_charge(keng_ingest_rate_t *r, const char *gateway, size_t n, int64_t now_ms)
{
    if (r->per_ms <= 0)
        return;
    bucket_t *b = bucket_at(r, gateway, now_ms);
    if (b)
        b->tokens -= (double)n;
}

void keng_ingest_rate_metrics(const keng_ingest_rate_t *r, FILE *out)
{
    fprintf(out, "# HELP keng_ingest_rate_limited_total Requests refused with 429, the gateway "
                 "over ingest.rate.events_per_s.\n"
                 "# TYPE keng_ingest_rate_limited_total counter\n");
    for (size_t i = 0; i < r->cap; i++) {
        if (!r->buckets[i].gateway || !r->buckets[i].limited)
            continue;
        /* A label value escapes backslash, quote and newline (the text format's rule). */
        fputs("keng_ingest_rate_limited_total{gateway=\"", out);
        for (const char *c = r->buckets[i].gateway; *c; c++) {
            if (*c == '\\' || *c == '"')
                fputc('\\', out);
            fputc(*c, out);
        }
        fprintf(out, "\"} %" PRIu64 "\n", r->buckets[i].limited);
    }
}
