/* keng-ingest's rate per gateway: a token bucket of events for each gateway name, so that one
 * gateway that floods cannot push every other one into 503s. It never reads a body, a token
 * or a clock of its own: the caller gives it names, counts and the time. */
#ifndef KENG_INGEST_RATE_H
#define KENG_INGEST_RATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct keng_ingest_rate keng_ingest_rate_t;

/* events_per_s 0 turns the limit off (every request is admitted); burst is the most events
 * a gateway may send at once after a quiet spell. NULL when memory runs out; the caller owns
 * the result (keng_ingest_rate_destroy). */
keng_ingest_rate_t *keng_ingest_rate_new(double events_per_s, double burst);
void keng_ingest_rate_destroy(keng_ingest_rate_t *r);

/* At a request's head, before its body is read: 0 when the gateway may post, else the whole
 * seconds to wait (at least 1), for Retry-After, and the refusal is counted. */
long keng_ingest_rate_admit(keng_ingest_rate_t *r, const char *gateway, int64_t now_ms);

/* Once the body is read: charges its n events. The bucket may go below zero, so that a
 * gateway that sent a large batch waits before its next one. */
void keng_ingest_rate_charge(keng_ingest_rate_t *r, const char *gateway, size_t n, int64_t now_ms);

/* keng_ingest_rate_limited_total{gateway} in the Prometheus text format. */
void keng_ingest_rate_metrics(const keng_ingest_rate_t *r, FILE *out);

#endif
