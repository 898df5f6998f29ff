/* keng-ingest's request bodies: one JSON object or an array of them, parsed with sanity limits
 * (size, nesting, duplicate keys, numbers that overflow) and validated event by event, so that
 * a request is taken whole or refused whole with every problem named; nothing here touches the
 * socket or Kafka. */
#ifndef KENG_INGEST_BODY_H
#define KENG_INGEST_BODY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"
#include "event_rule.h"
#include "registry.h"
#include "tokens.h"

typedef struct keng_ingest_body keng_ingest_body_t;

typedef struct keng_ingest_body_limits {
    size_t max_events;  /* more events in one request: 413 */
    unsigned max_depth; /* deeper nesting of arrays and objects: 400, before jansson sees it */
    int64_t now_ms;     /* the gateway's clock: occurred_at bound, reported_at when missing */
    const keng_event_rule_t *rule; /* the times' rule, borrowed; NULL: the defaults */
    /* The registries of versions in force before reg (borrowed; none without a topic): a
     * token's unit that one of them had covers the boards that were in it there. */
    const keng_registry_t *const *earlier;
    size_t nearlier;
} keng_ingest_body_limits_t;

/* Events an array may hold and nesting allowed, unless the config says otherwise. An event
 * nests at most three deep (array, event, location). */
#define KENG_INGEST_MAX_EVENTS_DEFAULT 1000
#define KENG_INGEST_MAX_DEPTH          8

/* Parses and validates body[0..len) (borrowed) as events of kind, each for a board that reg
 * knows and, when gw is not NULL, in a district gw may report for.
 *
 * Returns 0 and sets *out when every event is good; the caller owns *out (keng_ingest_body_destroy;
 * the events borrow their summaries from the parsed JSON that *out keeps).
 *
 * Otherwise returns the HTTP status to answer and sets *answer to {"errors": [{"index": i,
 * "field": "...", "message": "..."}, ...]} (the caller owns the reference: json_decref): 400
 * listing every invalid event (or the one problem of the body as a whole, with index null: empty,
 * not JSON, too deep), 403 listing every event for a board outside gw's districts when no event is
 * invalid, 413 for more than max_events events. *nevents is the number of events the body holds (0
 * when it is not even JSON), for the counters. */
int keng_ingest_body_parse(const char *body, size_t len, keng_kind_t kind,
                           const keng_registry_t *reg, const keng_gateway_t *gw,
                           const keng_ingest_body_limits_t *limits, keng_ingest_body_t **out,
                           json_t **answer, size_t *nevents);

size_t keng_ingest_body_count(const keng_ingest_body_t *body);

/* The i-th event, borrowed from body. */
const keng_event_t *keng_ingest_body_event(const keng_ingest_body_t *body, size_t i);

void keng_ingest_body_destroy(keng_ingest_body_t *body);

#endif
