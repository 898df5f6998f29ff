/* The one rule for an event's times that every path applies (keng-ingest, keng-produce,
 * keng-simulate, keng-aggregate, keng-replay): occurred_at no earlier than
 * events.min_occurred_at, reported_at no earlier than occurred_at, and neither more than
 * events.max_future_ms ahead of the clock of whoever checks. Nothing here reads Kafka, a file
 * or a socket. */
#ifndef KENG_EVENT_RULE_H
#define KENG_EVENT_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"

/* The rule's bounds. KENG_EVENT_RULE_DEFAULT is what applies without config. */
typedef struct keng_event_rule {
    int64_t min_occurred_at_ms; /* events.min_occurred_at */
    int64_t max_future_ms;      /* events.max_future_ms */
} keng_event_rule_t;

#define KENG_EVENT_RULE_DEFAULT ((keng_event_rule_t){KENG_EARLIEST_MS, KENG_FUTURE_SKEW_MS})

/* The most events.max_future_ms may be: a day. */
#define KENG_EVENT_MAX_FUTURE_MS_MAX (24 * 3600 * 1000LL)

/* How an event's times break the rule; KENG_TIMES_OK when they do not. */
typedef enum {
    KENG_TIMES_OK = 0,
    KENG_TIMES_TOO_EARLY,        /* occurred_at before events.min_occurred_at */
    KENG_TIMES_FUTURE,           /* occurred_at or reported_at too far ahead of the clock */
    KENG_TIMES_REPORTED_EARLIER, /* reported_at before occurred_at */
    KENG_TIMES_COUNT
} keng_times_verdict_t;

/* The config keys keng_event_rule_from_config reads: every program that takes events lists
 * them among its key tables. */
extern keng_config_keys_t keng_event_rule_config_keys;

/* The rule of cfg (borrowed, only read): events.min_occurred_at is an RFC 3339 time or a
 * date (2020-01-01, midnight in Asia/Ho_Chi_Minh), default 2000-01-01T00:00:00Z;
 * events.max_future_ms is 0..86400000, default 300000. Returns 0, or -1 with errstr naming
 * the key and its value. */
int keng_event_rule_from_config(const keng_config_t *cfg, keng_event_rule_t *rule, char *errstr,
                                size_t errstr_size);

/* Checks ev's occurred_at and reported_at against rule (NULL: the defaults) at now_ms, in
 * this order: occurred_at too early, occurred_at in the future, reported_at before
 * occurred_at, reported_at in the future. Returns KENG_TIMES_OK, or the first verdict with
 * err (may be NULL) naming the field and saying why. */
keng_times_verdict_t keng_event_check_times(const keng_event_rule_t *rule, const keng_event_t *ev,
                                            int64_t now_ms, keng_field_error_t *err);

/* The dead-letter reason of a verdict: "occurred-too-early", "future-event",
 * "reported-before-occurred" ("ok" for KENG_TIMES_OK). Static storage. */
const char *keng_times_reason(keng_times_verdict_t verdict);

#endif
