/* The annual review: what the boards did over a period, per board and rolled up to commune,
 * district and province, with a month-by-month line for the province. Fed one decoded event at
 * a time by keng-replay (it never reads Kafka itself); written as JSON, CSV and a
 * self-contained HTML page.
 *
 * Thread: not thread-safe; one replay owns one review. */
#ifndef KENG_REVIEW_H
#define KENG_REVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "registry.h"
#include "registry_check.h"

typedef struct keng_review keng_review_t;

/* Why an event read from the topics was not counted. */
typedef enum {
    KENG_REVIEW_COUNTED = 0,
    KENG_REVIEW_DUPLICATE,     /* its event_id was counted already */
    KENG_REVIEW_OUT_OF_PERIOD, /* occurred_at outside [from, to) */
    KENG_REVIEW_UNKNOWN_BOARD, /* no registry version knows its board */
    KENG_REVIEW_UNDECODABLE,   /* not a keng event (reported by the caller) */
    KENG_REVIEW_INVALID_TIME,  /* its times break the rule of event_rule.h (reported by the
                                * caller) */
    KENG_REVIEW_OUTCOME_COUNT
} keng_review_outcome_t;

/* A review of events whose occurred_at is in [from_ms, to_ms). reg is borrowed and must
 * outlive the review. label names the period in the report ("2025"). */
keng_review_t *keng_review_new(const keng_registry_t *reg, int64_t from_ms, int64_t to_ms,
                               const char *label);
void keng_review_destroy(keng_review_t *review);

/* Counts ev once per event_id. Returns a keng_review_outcome_t. */
keng_review_outcome_t keng_review_add(keng_review_t *review, const keng_event_t *ev);

/* Records a message that could not be decoded, for the report's data-quality line. */
void keng_review_add_undecodable(keng_review_t *review);

/* A registry version that took effect within the review's period. */
typedef struct keng_review_registry_change {
    int64_t effective_ms;
    size_t districts, communes, boards;
} keng_review_registry_change_t;

/* How the review's registry was chosen, when it came from the topic antt.registry: source
 * ("topic"), units ("current", "as-of:2025-06-30"), and the versions that took effect within
 * the period (n of them, copied), which review.json lists under registry.changes and
 * review.html states under its title. Strings are copied. Returns 0 or -1 (no memory). */
int keng_review_set_registry(keng_review_t *review, const char *source, const char *units,
                             const keng_review_registry_change_t *changes, size_t n);

/* Lists, under each commune of the review's registry, the units of the version before it
 * that became it, each with its figures from before switch_ms (the effective time of the
 * review's registry, within the period): a commune of previous, or a district when the
 * lineage sends the district whole and not its commune, and the boards that became the
 * commune of a unit split between communes, marked split; the boards this version added
 * stand together as one line. A board counts under the unit it was in at previous, as the
 * lineage places it, and the commune's figures since switch_ms make up the rest, so the
 * lines under a commune and its figures since the switch add up to its total (docs/DESIGN.md,
 * "The annual review"). Call it before the first keng_review_add. previous is borrowed and
 * must outlive the review; lineage is borrowed for the call. Returns 0, or -1 (no memory). */
int keng_review_set_predecessors(keng_review_t *review, const keng_registry_t *previous,
                                 const keng_lineage_t *lineage, int64_t switch_ms);

/* A registry version of the topic antt.registry, as keng_review_set_versions takes it. */
typedef struct keng_review_version {
    const keng_registry_t *reg;    /* its boards and units */
    const keng_lineage_t *lineage; /* against the version before it, or NULL */
    int64_t effective_ms;
} keng_review_version_t;

/* Gives the review every registry version of the topic, oldest first, v[drawn] being the one it
 * counts by (the same boards as the review's registry; its reg may be that registry). An event
 * of a board the review's registry lacks but a version has is then counted, not left out as
 * unknown_board: under the commune (or district) of the units drawn that the lineages say its
 * unit became, or under the province alone, as the figures of former boards (docs/DESIGN.md,
 * "The annual review"). Call it before the first keng_review_add, after
 * keng_review_set_predecessors when there are predecessors. The array is copied; the
 * registries and lineages are borrowed and must outlive the review. Returns 0, or -1 (no
 * memory). */
int keng_review_set_versions(keng_review_t *review, const keng_review_version_t *v, size_t n,
                             size_t drawn);

/* How many of the events counted came from boards the review's registry lacks. */
uint64_t keng_review_former_count(const keng_review_t *review);

/* Records an event left out because its times break the rule (keng_event_check_times), for
 * the report's data-quality line. */
void keng_review_add_invalid_time(keng_review_t *review);

/* How many events ended in each outcome so far. */
uint64_t keng_review_outcome_count(const keng_review_t *review, keng_review_outcome_t outcome);

/* Writes review.json, review.csv and review.html into dir (created if missing). Returns 0, or
 * -1 with errstr naming the file that failed. */
int keng_review_write(const keng_review_t *review, const char *dir, char *errstr,
                      size_t errstr_size);

/* The local-calendar (Asia/Ho_Chi_Minh) bounds of a year, as ms since the epoch. */
void keng_review_year_bounds(int year, int64_t *from_ms, int64_t *to_ms);

/* Parses a local date "2025-03-01" to the ms of its local midnight. Returns 0 or -1. */
int keng_review_parse_date(const char *s, int64_t *out_ms);

#endif
