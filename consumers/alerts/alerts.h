/* keng-aggregate's alert rules: thresholds on the rolling counts of one level, window and kind,
 * evaluated per (rule, scope). A scope whose count reaches the threshold FIRES; it RESOLVES
 * when the count falls below resolve_below (hysteresis). The engine is pure state and never
 * talks to Kafka or the network: it reads counts.c, hands every transition to an emit callback,
 * and saves and loads its state as bytes that keng-aggregate checkpoints with the counts and
 * the input offsets.
 *
 * Config keys, one rule per name (letters, digits, '_' and '-'):
 *   alert.<name>.level          board | commune | district | province
 *   alert.<name>.window         1h | 24h | 7d | 30d | 365d
 *   alert.<name>.kind           incident | mediation
 *   alert.<name>.category       optional, incidents: an IncidentCategory symbol (DRUGS)
 *   alert.<name>.resolution     optional, incidents: a Resolution symbol
 *   alert.<name>.outcome        optional, mediations: a MediationOutcome symbol
 *   alert.<name>.threshold      fire when count >= threshold (>= 1)
 *   alert.<name>.resolve_below  optional, 1..threshold: resolve when count < it (threshold)
 *   alert.<name>.summary        text with {scope_name} {scope_id} {count} {threshold}
 *                               {window} {rule} {level} {days}
 *   alert.<name>.severity       optional, the Alertmanager label severity (warning)
 *
 * A rule of kind silent (alert.<name>.kind=silent) takes level, days (default silent.days),
 * share (above a board: fires when more than that share of the scope's boards is silent),
 * summary and severity; silent.h says when a board is silent (docs/ALERTS.md, "Silent boards").
 *
 * Thread: not thread-safe; keng-aggregate uses it on the loop thread only. */
#ifndef KENG_ALERTS_H
#define KENG_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "alert.h"
#include "config.h"
#include "counts.h"
#include "event.h"
#include "registry.h"

/* How many resolved alerts GET /v1/alerts?status=resolved remembers (newest first). */
#define KENG_ALERTS_RESOLVED_MAX 100

typedef struct keng_alerts keng_alerts_t;

/* Reads the alert.* keys of cfg (borrowed for the call). reg and counts are borrowed and must
 * outlive the engine. No alert.* key is not an error: the engine then has no rule. Returns
 * NULL with errstr naming the key on a bad rule ("alert.drugs.window: expected one of 1h,
 * 24h, 7d, 30d, 365d (got '2h')"). */
keng_alerts_t *keng_alerts_new(const keng_config_t *cfg, const keng_registry_t *reg,
                               const keng_counts_t *counts, char *errstr, size_t errstr_size);
void keng_alerts_destroy(keng_alerts_t *a);

size_t keng_alerts_rule_count(const keng_alerts_t *a);

/* The keys of the rules, for keng_config_check (a field is one line there). */
extern const char *const keng_alerts_config_keys[];

/* The severity of the rule named rule (borrowed from a), or NULL for no such rule. */
const char *keng_alerts_rule_severity(const keng_alerts_t *a, const char *rule);

/* Called once for every transition, during keng_alerts_evaluate_*; t and its strings are
 * borrowed for the call. */
typedef void (*keng_alerts_emit_fn)(const keng_alert_t *t, void *arg);
void keng_alerts_set_emit(keng_alerts_t *a, keng_alerts_emit_fn fn, void *arg);

/* Whether this process decides a scope for a kind of event: for a board, whether it owns the
 * board's partition of that kind's topic; above a board, whether it is the one instance
 * that decides those scopes for the topic (consumer.h says which). Scopes it does not hold
 * are neither fired nor resolved here. Without a function (the default) every scope is
 * held. */
typedef bool (*keng_alerts_holds_fn)(keng_level_t level, uint32_t scope, keng_kind_t kind,
                                     void *arg);
void keng_alerts_set_holder(keng_alerts_t *a, keng_alerts_holds_fn fn, void *arg);

/* The counts of the units other instances own (cluster.h; borrowed, may be NULL), added to
 * this process's counts for every rule, so that scopes above a board count the whole group.
 * With them, every scope above a board is looked at by keng_alerts_evaluate_all. */
void keng_alerts_set_shared_counts(keng_alerts_t *a, const keng_counts_t *shared);

/* Forgets, without a transition, the state of the scopes this process no longer holds (after
 * partitions were revoked): their alerts carry on with the instance that holds them now,
 * which takes them over with keng_alerts_adopt. Returns the number of firing alerts let go. */
size_t keng_alerts_release_unheld(keng_alerts_t *a);

/* keng_alerts_apply for the scopes this process holds only; other transitions are skipped.
 * Applied to the whole alert topic in order, it takes over the firing alerts of the scopes
 * that came with newly assigned partitions, under the ids their previous holder gave them. */
int keng_alerts_adopt(keng_alerts_t *a, const keng_alert_t *t);

/* Tells the engine that ev (borrowed) was just counted for the board at board_index: the
 * scopes of the rules it matches are evaluated at the next keng_alerts_evaluate_touched, and
 * its id joins their recent sample ids. */
void keng_alerts_note(keng_alerts_t *a, uint32_t board_index, const keng_event_t *ev);

/* Evaluates the scopes noted since the last call, with the counts as of now_ms (counts.c's
 * clock; also the time stamped on transitions). */
void keng_alerts_evaluate_touched(keng_alerts_t *a, int64_t now_ms);

/* Evaluates every scope that has state (firing, or events seen since it was last zero), so
 * that events leaving a window resolve alerts; forgets scopes whose counts went to zero. */
void keng_alerts_evaluate_all(keng_alerts_t *a, int64_t now_ms);

/* Evaluates every scope of every rule's level (also those without state), for counts that
 * were loaded rather than noted: at start, after the checkpoint. */
void keng_alerts_evaluate_every_scope(keng_alerts_t *a, int64_t now_ms);

/* A registry switch (reg: the same boards at the same indexes, keng_registry_in_board_order,
 * borrowed as the first one): the scopes above a board are other units from now on. Refuses,
 * with nothing changed, a version that lacks the level of a rule: returns -1 with errstr
 * naming the rule's key ("alert.NAME.level is district; the registry version's levels are
 * province, commune, board"). Otherwise the noted scopes are evaluated first, every alert
 * firing for a commune or district is resolved at now_ms (its unit is no more what it was),
 * the state of those scopes is forgotten, and the engine rolls up under reg; the caller then
 * evaluates every scope (keng_alerts_evaluate_every_scope), so the new units fire anew.
 * Returns 0, or -1 with "out of memory". */
int keng_alerts_set_registry(keng_alerts_t *a, const keng_registry_t *reg, int64_t now_ms,
                             char *errstr, size_t errstr_size);

/* Whether keng_alerts_set_registry would take reg: 0, or -1 with errstr naming the rule whose
 * level reg lacks. Changes nothing. */
int keng_alerts_check_registry(const keng_alerts_t *a, const keng_registry_t *reg, char *errstr,
                               size_t errstr_size);

/* Applies a transition read back from the alert topic (borrowed): a FIRING makes its scope
 * firing with that alert id, a RESOLVED resolves it. Unknown rules or scopes are skipped.
 * Returns 1 when the state changed, 0 when it already reflected t. */
int keng_alerts_apply(keng_alerts_t *a, const keng_alert_t *t);

/* Calls fn for every firing alert (status KENG_ALERT_FIRING, count as of the last evaluation),
 * or for the resolved ones, newest first. The alert is borrowed for the call. */
void keng_alerts_each(const keng_alerts_t *a, keng_alert_status_t status,
                      void (*fn)(const keng_alert_t *t, void *arg), void *arg);

/* The alert as the JSON object of the HTTP API, the webhook and the stream: a new reference
 * that the caller owns (json_decref); NULL when memory runs out. */
json_t *keng_alerts_json(const keng_alert_t *t);

/* The state (firing alerts with their ids and start times, the resolved ones) as bytes that
 * keng_alerts_load takes back. save appends to a malloc'd *buf the caller frees (start with
 * NULL and 0); returns 0 or -1 (out of memory). load replaces the state; alerts of rules no
 * longer configured are dropped. Returns 0, or -1 with errstr when the bytes are not a
 * state (then the state is empty). */
int keng_alerts_save(const keng_alerts_t *a, unsigned char **buf, size_t *len);
int keng_alerts_load(keng_alerts_t *a, const unsigned char *buf, size_t len, char *errstr,
                     size_t errstr_size);

/* True when the saved state would differ from the last one marked clean. */
bool keng_alerts_dirty(const keng_alerts_t *a);
void keng_alerts_mark_clean(keng_alerts_t *a);

typedef struct keng_alerts_stats {
    uint64_t firing;
    uint64_t transitions[KENG_ALERT_STATUS_COUNT]; /* emitted since start */
} keng_alerts_stats_t;

void keng_alerts_stats(const keng_alerts_t *a, keng_alerts_stats_t *out);

#endif
