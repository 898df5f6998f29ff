/* keng-ingest's board registry when it follows the topic antt.registry (registry.topic): the
 * version in force, those that were in force before it (a token scoped to a unit that a later
 * version removed keeps covering the boards that were in it), and those still to come, each
 * switched to at its effective time by a timer on the loop, with no restart.
 *
 * Thread: the loop thread only. Every registry loaded stays alive until
 * keng_ingest_registry_destroy, since requests in flight may point into an old one. */
#ifndef KENG_INGEST_REGISTRY_H
#define KENG_INGEST_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "registry.h"

typedef struct keng_ingest_registry keng_ingest_registry_t;

/* How often the topic is polled for new versions, without blocking the loop. */
#define KENG_INGEST_REGISTRY_POLL_MS 1000

/* Called on the loop thread after each switch, with the registry now in force. */
typedef void (*keng_ingest_registry_switch_cb)(const keng_registry_t *reg, void *arg);

/* Reads topic to its end with cfg's brokers and kafka.* keys (cfg borrowed, for as long as the
 * result lives), and takes the version in force now; the versions before it are loaded too,
 * and those after it wait for their time. Logs "board registry in use" with source=topic.
 * Returns 0 with *out (the caller's: keng_ingest_registry_destroy), or an exit code after
 * errstr: 69 when no broker answered, 78 when the topic is missing, no version is in force or
 * the one in force does not load. */
int keng_ingest_registry_open(const keng_config_t *cfg, const char *topic,
                              keng_ingest_registry_t **out, char *errstr, size_t errstr_size);

/* Starts following the topic on loop from where the read ended: a timer polls it every
 * KENG_INGEST_REGISTRY_POLL_MS, another fires at the next effective time. on_switch(reg, arg)
 * runs after each switch. Returns 0, or -1 with errstr (a Kafka setting refused). */
int keng_ingest_registry_start(keng_ingest_registry_t *r, uv_loop_t *loop,
                               keng_ingest_registry_switch_cb on_switch, void *arg, char *errstr,
                               size_t errstr_size);

/* Stops following: closes the timers (the loop must run once more before destroy) and the
 * topic's consumer. Safe to call twice, and before start. */
void keng_ingest_registry_stop(keng_ingest_registry_t *r);

/* Frees every registry loaded; r may be NULL. */
void keng_ingest_registry_destroy(keng_ingest_registry_t *r);

/* The registry in force, borrowed from r (valid until destroy, even after a switch). */
keng_registry_t *keng_ingest_registry_current(const keng_ingest_registry_t *r);

/* The registries of the versions in force before the current one, borrowed from r, valid
 * until the next switch; *n gets how many. */
const keng_registry_t *const *keng_ingest_registry_earlier(const keng_ingest_registry_t *r,
                                                           size_t *n);

/* Whether a version in force before the current one had a unit (of any level) of that id. */
bool keng_ingest_registry_knew_unit(const keng_ingest_registry_t *r, const char *id);

/* The registry's series for /metrics: keng_registry_units and keng_registry_info (source,
 * version, path) of the version in force, keng_registry_switches_total,
 * keng_registry_versions_skipped_total and keng_registry_next_effective_timestamp_seconds.
 * With r NULL (a registry from --registry FILE or the built-in one, reg), the same with no
 * version, the counters 0. Returns 0, or -1 when memory runs out. */
int keng_ingest_registry_metrics(const keng_ingest_registry_t *r, const keng_registry_t *reg,
                                 FILE *out);

/* For /readyz's body: {"source": "topic", "version": KEY, "skipped": N, "last_skipped":
 * "..."} (the last two once a version was skipped). A new reference, or NULL. */
json_t *keng_ingest_registry_status(const keng_ingest_registry_t *r);

#endif
