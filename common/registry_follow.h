/* A program's board registry when it follows the topic antt.registry (registry.topic; keng-ingest
 * and keng-aggregate): the version in force, those that were in force before it (a token scoped
 * to a unit that a later version removed keeps covering the boards that were in it), and those
 * still to come, each switched to at its effective time by a timer on the loop, with no
 * restart.
 *
 * Thread: the loop thread only. Every registry loaded stays alive until
 * keng_registry_follow_destroy, since requests in flight may point into an old one. */
#ifndef KENG_REGISTRY_FOLLOW_H
#define KENG_REGISTRY_FOLLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "registry.h"
#include "registry_check.h"

typedef struct keng_registry_follow keng_registry_follow_t;

/* How often the topic is polled for new versions, without blocking the loop. */
#define KENG_REGISTRY_FOLLOW_POLL_MS 1000

/* Called on the loop thread when a version's time has come, before it is in force: returns 0
 * when the program took reg (the switch is then made and logged), or -1 with why filled when
 * it cannot use it (keng-aggregate: alert rules at a level the version lacks). A refused
 * version is skipped as one that does not load is: the registry in force stays, and the log,
 * /metrics and /readyz say so. */
typedef int (*keng_registry_follow_switch_cb)(const keng_registry_t *reg, const char *version,
                                              void *arg, char *why, size_t why_size);

/* Reads topic to its end with cfg's brokers and kafka.* keys (cfg borrowed, for as long as the
 * result lives), and takes the version in force now; the versions before it are loaded too,
 * and those after it wait for their time. Logs "board registry in use" with source=topic.
 * Returns 0 with *out (the caller's: keng_registry_follow_destroy), or an exit code after
 * errstr: 69 when no broker answered, 78 when the topic is missing, no version is in force or
 * the one in force does not load. */
int keng_registry_follow_open(const keng_config_t *cfg, const char *topic,
                              keng_registry_follow_t **out, char *errstr, size_t errstr_size);

/* Starts following the topic on loop from where the read ended: a timer polls it every
 * KENG_REGISTRY_FOLLOW_POLL_MS, another fires at the next effective time. on_switch decides
 * each switch (above); NULL takes every version. Returns 0, or -1 with errstr (a Kafka setting
 * refused). */
int keng_registry_follow_start(keng_registry_follow_t *r, uv_loop_t *loop,
                               keng_registry_follow_switch_cb on_switch, void *arg, char *errstr,
                               size_t errstr_size);

/* Called on the loop thread for each version still to come: at once for those already read,
 * then for each one read later (a program says early what it will do at the version's time). */
typedef void (*keng_registry_follow_read_cb)(const keng_registry_t *reg, const char *version,
                                             void *arg);
void keng_registry_follow_on_read(keng_registry_follow_t *r, keng_registry_follow_read_cb cb,
                                  void *arg);

/* Stops following: closes the timers (the loop must run once more before destroy) and the
 * topic's consumer. Safe to call twice, and before start. */
void keng_registry_follow_stop(keng_registry_follow_t *r);

/* Frees every registry loaded; r may be NULL. */
void keng_registry_follow_destroy(keng_registry_follow_t *r);

/* The registry in force, borrowed from r (valid until destroy, even after a switch). */
keng_registry_t *keng_registry_follow_current(const keng_registry_follow_t *r);

/* The registries of the versions in force before the current one, borrowed from r, valid
 * until the next switch; *n gets how many. */
const keng_registry_t *const *keng_registry_follow_earlier(const keng_registry_follow_t *r,
                                                           size_t *n);

/* The registry of the version in force at at_ms (?as_of= on keng-aggregate's API): of the
 * versions loaded and not dropped (those still to come included), the one with the latest
 * effective time not after at_ms, a later one read with the same time winning. Borrowed from r
 * (valid until destroy); *version (may be NULL) gets its effective key, borrowed as well.
 * NULL before the first version, or with r NULL. */
const keng_registry_t *keng_registry_follow_at(const keng_registry_follow_t *r, int64_t at_ms,
                                               const char **version);

/* The effective key of the earliest version loaded and not dropped (for a time before it), or
 * NULL; borrowed from r. */
const char *keng_registry_follow_first(const keng_registry_follow_t *r);

/* The effective key of the version in force ("2025-06-30T17:00:00Z"), borrowed from r. */
const char *keng_registry_follow_version(const keng_registry_follow_t *r);

/* The lineage that the version of that effective key (NULL: the version in force) carries
 * against the one before it, borrowed from r (valid until destroy), or NULL without one. */
const keng_lineage_t *keng_registry_follow_lineage(const keng_registry_follow_t *r,
                                                   const char *version);

/* Whether a version still to come, taking effect within the next within_ms, has the board id:
 * an event of that board may arrive a moment before this program's switch (keng-ingest's
 * clock ahead of this one), and waits for it rather than being refused. */
bool keng_registry_follow_soon_has_board(const keng_registry_follow_t *r, const char *id,
                                         int64_t within_ms);

/* Whether a version in force before the current one had a unit (of any level) of that id. */
bool keng_registry_follow_knew_unit(const keng_registry_follow_t *r, const char *id);

/* The registry's series for /metrics: keng_registry_units and keng_registry_info (source,
 * version, path) of the version in force, keng_registry_switches_total,
 * keng_registry_versions_skipped_total and keng_registry_next_effective_timestamp_seconds.
 * With r NULL (a registry from --registry FILE or the built-in one, reg), the same with no
 * version, the counters 0. Returns 0, or -1 when memory runs out. */
int keng_registry_follow_metrics(const keng_registry_follow_t *r, const keng_registry_t *reg,
                                 FILE *out);

/* For /readyz's body: {"source": "topic", "version": KEY, "skipped": N, "last_skipped":
 * "..."} (the last two once a version was skipped). A new reference, or NULL. */
json_t *keng_registry_follow_status(const keng_registry_follow_t *r);

#endif
