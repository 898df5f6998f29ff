/* What the rooms of the alert engine share (alerts.c, alerts_rules.c, alerts_handover.c): the
 * rules, the per-(rule, scope) entries and the transition records; never included outside them. */
#ifndef KENG_ALERTS_INTERNAL_H
#define KENG_ALERTS_INTERNAL_H

#include "alerts.h"
#include "silent.h"

#define RULE_NAME_MAX   63
#define SCOPE_ID_MAX    31
#define ALERT_ID_MAX    48
#define SUMMARY_MAX     512
#define FILTER_NONE     (-1)
#define BUCKETS_INITIAL 256
#define SEVERITY_MAX    31

typedef enum { FILTER_ALL, FILTER_CATEGORY, FILTER_RESOLUTION, FILTER_OUTCOME } filter_t;

/* A transition's window is a keng_window_id_t, or SILENT_WINDOW + days for a silent rule (its
 * "window" then reads "30d"): one number in the saved state either way. */
#define SILENT_WINDOW KENG_WIN_COUNT

typedef struct rule {
    char name[RULE_NAME_MAX + 1];
    keng_level_t level;
    keng_window_id_t window;
    keng_kind_t kind;
    filter_t filter;
    int filter_value;
    int64_t threshold;
    int64_t resolve_below;
    char *summary;                   /* template */
    char severity[SEVERITY_MAX + 1]; /* the Alertmanager label */
    bool silent;                     /* kind silent: days without an event instead of a count */
    int days;                        /* silent: how many days make a board silent */
    double share;  /* silent above a board: fires when more than this share is silent */
    bool seen[16]; /* which keys were given, for the checks (see keng_alerts_config_keys) */
} rule_t;

/* A transition's content: self-contained, so the resolved ring outlives rule changes. */
typedef struct rec {
    char alert_id[ALERT_ID_MAX];
    char fingerprint[17];
    char rule[RULE_NAME_MAX + 1];
    keng_level_t level;
    char scope_id[SCOPE_ID_MAX + 1];
    int window;        /* see SILENT_WINDOW */
    char window_s[12]; /* its name */
    int64_t count, threshold, starts_at, ends_at;
    char summary[SUMMARY_MAX];
    size_t nsamples;
    char samples[KENG_ALERT_SAMPLES_MAX][KENG_EVENT_ID_MAX + 1];
} rec_t;

typedef struct entry {
    struct entry *next; /* hash chain */
    uint64_t key;
    uint32_t rule;
    keng_level_t level;
    uint32_t scope;
    bool touched;
    rec_t *fire; /* non-NULL while firing */
    size_t nring, ring_pos;
    char ring[KENG_ALERT_SAMPLES_MAX][KENG_EVENT_ID_MAX + 1];
} entry_t;

struct keng_alerts {
    const keng_registry_t *reg;
    const keng_counts_t *counts;
    rule_t *rules;
    size_t nrules;
    keng_alerts_emit_fn emit;
    void *emit_arg;
    keng_alerts_holds_fn holds; /* NULL: every scope is held */
    void *holds_arg;
    const keng_counts_t *shared; /* the other instances' units, or NULL */
    keng_silent_options_t silent;
    /* The boards of each commune and district (silent rules above a board count them):
     * scope s of level l has boards scope_boards[l][scope_off[l][s] .. scope_off[l][s + 1]). */
    uint32_t *scope_off[KENG_LEVEL_COUNT];
    uint32_t *scope_boards[KENG_LEVEL_COUNT];

    entry_t **buckets;
    size_t nbuckets, nentries;
    entry_t **touched;
    size_t ntouched, touched_cap;

    rec_t resolved[KENG_ALERTS_RESOLVED_MAX]; /* ring, newest at resolved_pos - 1 */
    size_t nresolved, resolved_pos;

    bool dirty;
    keng_alerts_stats_t stats;
};

/* ---- rules (alerts_rules.c) ---- */

/* Reads the silent options and every alert.* key of cfg into a->rules, checks each rule and
 * builds the scope boards that silent rules above a board need. Returns 0, or -1 with errstr
 * filled; what it allocated is a's, freed by keng_alerts_destroy either way. */
int keng_alerts__rules_from_config(keng_alerts_t *a, const keng_config_t *cfg, char *errstr,
                                   size_t errstr_size);
/* Builds the boards of every commune and district of a->reg that silent rules above a board
 * count, freeing those built before. Returns 0, or -1 when memory runs out. */
int keng_alerts__build_scope_boards(keng_alerts_t *a);
/* The index of s in names[0..count), or -1. */
int keng_alerts__name_index(const char *const *names, int count, const char *s);

/* ---- entries and transitions (alerts.c) ---- */

/* Whether this process decides the rule's scope. */
bool keng_alerts__rule_holds(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                             uint32_t scope);
uint64_t keng_alerts__entry_key(uint32_t rule, keng_level_t level, uint32_t scope);
/* The entry of key, borrowed (a owns it), or NULL. */
entry_t *keng_alerts__entry_find(const keng_alerts_t *a, uint64_t key);
/* The entry of (rule, level, scope), created if missing; borrowed (a owns it), NULL when
 * memory runs out. */
entry_t *keng_alerts__entry_get(keng_alerts_t *a, uint32_t rule, keng_level_t level,
                                uint32_t scope);
/* Sets rec's window and its name ("24h", or "<days>d" for a silent rule). */
void keng_alerts__rec_set_window(rec_t *rec, int window);
/* Fills t with pointers into rec, which t borrows: rec must outlive t. */
void keng_alerts__rec_to_alert(const rec_t *rec, keng_alert_status_t status, keng_alert_t *t);
/* Copies rec into the ring of resolved alerts (the oldest leaves when it is full). */
void keng_alerts__resolved_push(keng_alerts_t *a, const rec_t *rec);

#endif
