/* The alert rule engine: per (rule, scope) state, kept only for scopes that saw a matching
 * event or are firing, evaluated against counts.c after each batch and on the window timer; it
 * never parses rules (alerts_rules.c) nor carries alerts across processes (alerts_handover.c). */
#include "internal.h"
#include "silent.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

keng_alerts_t *keng_alerts_new(const keng_config_t *cfg, const keng_registry_t *reg,
                               const keng_counts_t *counts, char *errstr, size_t errstr_size)
{
    keng_alerts_t *a = calloc(1, sizeof(*a));

    if (!a || !(a->buckets = calloc(BUCKETS_INITIAL, sizeof(*a->buckets)))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    a->nbuckets = BUCKETS_INITIAL;
    a->reg = reg;
    a->counts = counts;
    if (keng_alerts__rules_from_config(a, cfg, errstr, errstr_size) != 0)
        goto fail;
    return a;

fail:
    keng_alerts_destroy(a);
    return NULL;
}

void keng_alerts_destroy(keng_alerts_t *a)
{
    if (!a)
        return;
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e->fire);
            free(e);
        }
    }
    for (size_t i = 0; i < a->nrules; i++)
        free(a->rules[i].summary);
    for (int l = 0; l < KENG_LEVEL_COUNT; l++) {
        free(a->scope_off[l]);
        free(a->scope_boards[l]);
    }
    free(a->rules);
    free(a->buckets);
    free(a->touched);
    free(a);
}

size_t keng_alerts_rule_count(const keng_alerts_t *a)
{
    return a->nrules;
}

const char *keng_alerts_rule_severity(const keng_alerts_t *a, const char *rule)
{
    for (size_t i = 0; i < a->nrules; i++)
        if (strcmp(a->rules[i].name, rule) == 0)
            return a->rules[i].severity;
    return NULL;
}

void keng_alerts_set_emit(keng_alerts_t *a, keng_alerts_emit_fn fn, void *arg)
{
    a->emit = fn;
    a->emit_arg = arg;
}

void keng_alerts_set_holder(keng_alerts_t *a, keng_alerts_holds_fn fn, void *arg)
{
    a->holds = fn;
    a->holds_arg = arg;
}

void keng_alerts_set_shared_counts(keng_alerts_t *a, const keng_counts_t *shared)
{
    a->shared = shared;
}

static bool holds_scope(const keng_alerts_t *a, keng_level_t level, uint32_t scope,
                        keng_kind_t kind)
{
    return !a->holds || a->holds(level, scope, kind, a->holds_arg);
}

/* Whether this process decides the rule's scope. A silent rule is decided, for boards too,
 * where the scopes above a board are: a board that never reported has no partition that
 * anyone knows of, and that instance sees every board's last event (its own units and those
 * the others publish), so one instance decides every board, whether it reported or not. */
bool keng_alerts__rule_holds(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                             uint32_t scope)
{
    if (r->silent)
        return holds_scope(a, KENG_LEVEL_PROVINCE, 0, r->kind);
    return holds_scope(a, level, scope, r->kind);
}

static bool holds(const keng_alerts_t *a, const entry_t *e)
{
    return keng_alerts__rule_holds(a, &a->rules[e->rule], e->level, e->scope);
}

/* ---- scopes ---- */

uint64_t keng_alerts__entry_key(uint32_t rule, keng_level_t level, uint32_t scope)
{
    return (uint64_t)rule << 34 | (uint64_t)level << 32 | scope;
}

static size_t bucket_of(const keng_alerts_t *a, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;

    return (size_t)(h >> 32) & (a->nbuckets - 1);
}

entry_t *keng_alerts__entry_find(const keng_alerts_t *a, uint64_t key)
{
    for (entry_t *e = a->buckets[bucket_of(a, key)]; e; e = e->next)
        if (e->key == key)
            return e;
    return NULL;
}

static void grow(keng_alerts_t *a)
{
    size_t n = a->nbuckets * 2;
    entry_t **nb = calloc(n, sizeof(*nb));

    if (!nb)
        return; /* longer chains, still correct */
    entry_t **old = a->buckets;
    size_t oldn = a->nbuckets;
    a->buckets = nb;
    a->nbuckets = n;
    for (size_t b = 0; b < oldn; b++) {
        for (entry_t *e = old[b], *next; e; e = next) {
            next = e->next;
            size_t i = bucket_of(a, e->key);
            e->next = nb[i];
            nb[i] = e;
        }
    }
    free(old);
}

entry_t *keng_alerts__entry_get(keng_alerts_t *a, uint32_t rule, keng_level_t level, uint32_t scope)
{
    uint64_t key = keng_alerts__entry_key(rule, level, scope);
    entry_t *e = keng_alerts__entry_find(a, key);

    if (e)
        return e;
    if (a->nentries >= a->nbuckets)
        grow(a);
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->key = key;
    e->rule = rule;
    e->level = level;
    e->scope = scope;
    size_t b = bucket_of(a, key);
    e->next = a->buckets[b];
    a->buckets[b] = e;
    a->nentries++;
    return e;
}

static void entry_remove(keng_alerts_t *a, entry_t *e)
{
    entry_t **pp = &a->buckets[bucket_of(a, e->key)];

    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    a->nentries--;
    free(e->fire);
    free(e);
}

static bool rule_matches(const rule_t *r, const keng_event_t *ev)
{
    if (r->kind != ev->kind)
        return false;
    switch (r->filter) {
    case FILTER_CATEGORY:
        return (int)ev->category == r->filter_value;
    case FILTER_RESOLUTION:
        return (int)ev->resolution == r->filter_value;
    case FILTER_OUTCOME:
        return (int)ev->outcome == r->filter_value;
    default:
        return true;
    }
}

static int64_t silent_count(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                            uint32_t scope, int64_t now)
{
    keng_silent_view_t v = {a->counts, a->shared, a->silent.start_ms};
    int64_t n = 0;

    if (level == KENG_LEVEL_BOARD)
        return keng_silent_days(&v, scope, now);
    for (uint32_t i = a->scope_off[level][scope]; i < a->scope_off[level][scope + 1]; i++)
        n += keng_silent_days(&v, a->scope_boards[level][i], now) >= r->days;
    return n;
}

/* The count a scope fires at: the rule's threshold, or for a silent rule above a board the
 * smallest number of boards that is more than its share of the scope's boards. */
static int64_t rule_threshold(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                              uint32_t scope)
{
    if (!r->silent || level == KENG_LEVEL_BOARD)
        return r->threshold;
    int64_t boards = a->scope_off[level][scope + 1] - a->scope_off[level][scope];
    return (int64_t)floor(r->share * (double)boards) + 1;
}

static int64_t rule_count(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                          uint32_t scope, int64_t now)
{
    keng_tally_t t;

    if (r->silent)
        return silent_count(a, r, level, scope, now);

    keng_counts_get(a->counts, level, scope, r->window, &t);
    if (a->shared) {
        /* The two never hold the same unit, so the sum is the group's count. */
        keng_tally_t other;
        uint64_t *to = (uint64_t *)&t;
        const uint64_t *from = (const uint64_t *)&other;

        keng_counts_get(a->shared, level, scope, r->window, &other);
        for (size_t i = 0; i < sizeof(t) / sizeof(uint64_t); i++)
            to[i] += from[i];
    }
    switch (r->filter) {
    case FILTER_CATEGORY:
        return (int64_t)t.by_category[r->filter_value];
    case FILTER_RESOLUTION:
        return (int64_t)t.by_resolution[r->filter_value];
    case FILTER_OUTCOME:
        return (int64_t)t.by_outcome[r->filter_value];
    default:
        return (int64_t)(r->kind == KENG_KIND_INCIDENT ? t.incidents : t.mediations);
    }
}

void keng_alerts_note(keng_alerts_t *a, uint32_t board_index, const keng_event_t *ev)
{
    const keng_board_t *b;

    if (a->nrules == 0)
        return;
    b = keng_registry_board(a->reg, board_index);
    for (size_t r = 0; r < a->nrules; r++) {
        const rule_t *rule = &a->rules[r];
        uint32_t scope;

        /* Silence ends with time, not with a count: the window timer looks at it. */
        if (rule->silent || !rule_matches(rule, ev))
            continue;
        switch (rule->level) {
        case KENG_LEVEL_BOARD:
            scope = board_index;
            break;
        case KENG_LEVEL_COMMUNE:
            scope = b->commune;
            break;
        case KENG_LEVEL_DISTRICT:
            scope = b->district;
            break;
        default:
            scope = 0;
            break;
        }
        entry_t *e = keng_alerts__entry_get(a, (uint32_t)r, rule->level, scope);
        if (!e)
            continue; /* out of memory: this scope is evaluated once memory allows */
        snprintf(e->ring[e->ring_pos], sizeof(e->ring[0]), "%s", ev->event_id);
        e->ring_pos = (e->ring_pos + 1) % KENG_ALERT_SAMPLES_MAX;
        if (e->nring < KENG_ALERT_SAMPLES_MAX)
            e->nring++;
        if (e->touched)
            continue;
        if (a->ntouched == a->touched_cap) {
            size_t cap = a->touched_cap ? a->touched_cap * 2 : 64;
            entry_t **t = realloc(a->touched, cap * sizeof(*t));
            if (!t)
                continue; /* evaluated by the next keng_alerts_evaluate_all */
            a->touched = t;
            a->touched_cap = cap;
        }
        e->touched = true;
        a->touched[a->ntouched++] = e;
    }
}

/* ---- transitions ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The fingerprint names (rule, level, scope) and nothing else, so it is the same in every
 * run and on every instance: the alert topic's key. */
static void fingerprint(const char *rule, keng_level_t level, const char *scope_id, char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *lvl = keng_level_names[level];

    h = fnv1a(h, rule, strlen(rule) + 1);
    h = fnv1a(h, lvl, strlen(lvl) + 1);
    h = fnv1a(h, scope_id, strlen(scope_id));
    snprintf(out, 17, "%016" PRIx64, h);
}

static void append(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
    size_t room = cap - 1 - *n;

    if (len > room) {
        len = room;
        /* Never cut a UTF-8 sequence in half. */
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    memcpy(out + *n, s, len);
    *n += len;
    out[*n] = '\0';
}

static void render_summary(const keng_alerts_t *a, const rule_t *r, keng_level_t level,
                           uint32_t scope, int64_t count, int64_t threshold, const char *window,
                           char *out, size_t cap)
{
    const char *id, *name, *p = r->summary;
    char num[32];
    size_t n = 0;

    out[0] = '\0';
    keng_scope_names(a->reg, level, scope, &id, &name);
    while (*p) {
        const char *open = strchr(p, '{'), *close = open ? strchr(open, '}') : NULL;
        if (!open || !close) {
            append(out, cap, &n, p, strlen(p));
            break;
        }
        append(out, cap, &n, p, (size_t)(open - p));
        size_t len = (size_t)(close - open - 1);
        const char *key = open + 1, *val = NULL;
#define IS(k) (len == sizeof(k) - 1 && memcmp(key, k, len) == 0)
        if (IS("scope_name"))
            val = name;
        else if (IS("scope_id"))
            val = id;
        else if (IS("rule"))
            val = r->name;
        else if (IS("window"))
            val = window;
        else if (IS("level"))
            val = keng_level_names[level];
        else if (IS("count") || IS("threshold") || IS("days")) {
            snprintf(num, sizeof(num), "%" PRId64,
                     IS("count")       ? count
                     : IS("threshold") ? threshold
                                       : (int64_t)r->days);
            val = num;
        }
#undef IS
        if (val)
            append(out, cap, &n, val, strlen(val));
        else
            append(out, cap, &n, open, (size_t)(close - open + 1)); /* unknown: kept as is */
        p = close + 1;
    }
}

void keng_alerts__rec_set_window(rec_t *rec, int window)
{
    rec->window = window;
    if (window >= SILENT_WINDOW)
        snprintf(rec->window_s, sizeof(rec->window_s), "%dd",
                 (window - SILENT_WINDOW) % (KENG_SILENT_DAYS_MAX + 1));
    else
        snprintf(rec->window_s, sizeof(rec->window_s), "%s", keng_window_names[window]);
}

void keng_alerts__rec_to_alert(const rec_t *rec, keng_alert_status_t status, keng_alert_t *t)
{
    memset(t, 0, sizeof(*t));
    t->alert_id = rec->alert_id;
    t->fingerprint = rec->fingerprint;
    t->rule = rec->rule;
    t->status = status;
    t->level = (keng_alert_level_t)rec->level;
    t->scope_id = rec->scope_id;
    t->window = rec->window_s;
    t->count = rec->count;
    t->threshold = rec->threshold;
    t->starts_at = rec->starts_at;
    t->has_ends_at = status == KENG_ALERT_RESOLVED;
    t->ends_at = rec->ends_at;
    t->summary = rec->summary;
    t->nsamples = rec->nsamples;
    for (size_t i = 0; i < rec->nsamples; i++)
        t->sample_event_ids[i] = rec->samples[i];
}

/* The entry's recent ids, newest first. */
static void copy_samples(const entry_t *e, rec_t *rec)
{
    rec->nsamples = e->nring;
    for (size_t i = 0; i < e->nring; i++) {
        size_t at = (e->ring_pos + KENG_ALERT_SAMPLES_MAX - 1 - i) % KENG_ALERT_SAMPLES_MAX;
        memcpy(rec->samples[i], e->ring[at], sizeof(rec->samples[i]));
    }
}

void keng_alerts__resolved_push(keng_alerts_t *a, const rec_t *rec)
{
    a->resolved[a->resolved_pos] = *rec;
    a->resolved_pos = (a->resolved_pos + 1) % KENG_ALERTS_RESOLVED_MAX;
    if (a->nresolved < KENG_ALERTS_RESOLVED_MAX)
        a->nresolved++;
}

static void emit(keng_alerts_t *a, const rec_t *rec, keng_alert_status_t status)
{
    keng_alert_t t;

    a->stats.transitions[status]++;
    a->dirty = true;
    if (!a->emit)
        return;
    keng_alerts__rec_to_alert(rec, status, &t);
    a->emit(&t, a->emit_arg);
}

/* Ends e's alert at now: the RESOLVED transition is recorded and emitted, and e fires no more
 * (its record's count and summary are the caller's to set first). */
static void end_firing(keng_alerts_t *a, entry_t *e, int64_t now)
{
    rec_t *rec = e->fire;

    rec->ends_at = now;
    e->fire = NULL;
    a->stats.firing--;
    keng_alerts__resolved_push(a, rec);
    emit(a, rec, KENG_ALERT_RESOLVED);
    free(rec);
}

/* Returns the count, or -1 when the entry was freed. */
static int64_t evaluate(keng_alerts_t *a, entry_t *e, int64_t now, bool may_forget)
{
    const rule_t *r = &a->rules[e->rule];
    int64_t count, threshold, resolve_below;

    /* A partial count would resolve what is firing, or fire what another instance fired. */
    if (!holds(a, e)) {
        if (may_forget && !e->fire && !e->touched) {
            entry_remove(a, e);
            return -1;
        }
        return e->fire ? e->fire->count : 0;
    }
    count = rule_count(a, r, e->level, e->scope, now);
    threshold = rule_threshold(a, r, e->level, e->scope);
    resolve_below = r->silent ? threshold : r->resolve_below;
    if (!e->fire && count >= threshold) {
        rec_t *rec = calloc(1, sizeof(*rec));
        const char *id, *name;
        if (!rec)
            return count; /* out of memory: fires at a later evaluation */
        keng_scope_names(a->reg, e->level, e->scope, &id, &name);
        snprintf(rec->rule, sizeof(rec->rule), "%s", r->name);
        snprintf(rec->scope_id, sizeof(rec->scope_id), "%s", id);
        fingerprint(r->name, e->level, id, rec->fingerprint);
        rec->starts_at = now;
        snprintf(rec->alert_id, sizeof(rec->alert_id), "%s-%" PRId64, rec->fingerprint, now);
        rec->level = e->level;
        keng_alerts__rec_set_window(rec, r->silent ? SILENT_WINDOW + r->days : (int)r->window);
        rec->count = count;
        rec->threshold = threshold;
        render_summary(a, r, e->level, e->scope, count, threshold, rec->window_s, rec->summary,
                       sizeof(rec->summary));
        copy_samples(e, rec);
        e->fire = rec;
        a->stats.firing++;
        emit(a, rec, KENG_ALERT_FIRING);
    } else if (e->fire && count < resolve_below) {
        rec_t *rec = e->fire;
        rec->count = count;
        render_summary(a, r, e->level, e->scope, count, rec->threshold, rec->window_s, rec->summary,
                       sizeof(rec->summary));
        end_firing(a, e, now);
    } else if (e->fire) {
        e->fire->count = count; /* what GET /v1/alerts shows; not a transition */
    }
    /* A silent rule's scope that is not firing has nothing to remember: the timer looks at
     * every scope of the rule anyway. */
    if (may_forget && !e->fire && (count == 0 || r->silent) && !e->touched) {
        entry_remove(a, e);
        return -1;
    }
    return count;
}

void keng_alerts_evaluate_touched(keng_alerts_t *a, int64_t now_ms)
{
    for (size_t i = 0; i < a->ntouched; i++) {
        a->touched[i]->touched = false;
        evaluate(a, a->touched[i], now_ms, false);
    }
    a->ntouched = 0;
}

/* Evaluates the scopes of a rule that have no state yet but reached the threshold. */
static void evaluate_new_scopes(keng_alerts_t *a, uint32_t rule, int64_t now_ms)
{
    const rule_t *r = &a->rules[rule];
    size_t n = keng_scope_count(a->reg, r->level);

    for (size_t i = 0; i < n; i++) {
        if (!keng_alerts__rule_holds(a, r, r->level, (uint32_t)i) ||
            rule_count(a, r, r->level, (uint32_t)i, now_ms) <
                rule_threshold(a, r, r->level, (uint32_t)i))
            continue;
        entry_t *e = keng_alerts__entry_get(a, rule, r->level, (uint32_t)i);
        if (e)
            evaluate(a, e, now_ms, false);
    }
}

void keng_alerts_evaluate_all(keng_alerts_t *a, int64_t now_ms)
{
    keng_alerts_evaluate_touched(a, now_ms);
    /* Counts above a board also grow by other instances' events, which touch nothing here:
     * their scopes (482 a rule at most) are all looked at. */
    for (size_t r = 0; a->shared && r < a->nrules; r++)
        if (a->rules[r].level != KENG_LEVEL_BOARD && !a->rules[r].silent)
            evaluate_new_scopes(a, (uint32_t)r, now_ms);
    /* Silence grows with the clock alone: every scope of a silent rule is looked at (7,588
     * boards of a board rule cost well under a millisecond). */
    for (size_t r = 0; r < a->nrules; r++)
        if (a->rules[r].silent)
            evaluate_new_scopes(a, (uint32_t)r, now_ms);
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            evaluate(a, e, now_ms, true);
        }
    }
}

void keng_alerts_evaluate_every_scope(keng_alerts_t *a, int64_t now_ms)
{
    for (size_t r = 0; r < a->nrules; r++)
        evaluate_new_scopes(a, (uint32_t)r, now_ms);
    keng_alerts_evaluate_all(a, now_ms);
}

int keng_alerts_check_registry(const keng_alerts_t *a, const keng_registry_t *reg, char *errstr,
                               size_t errstr_size)
{
    for (size_t i = 0; i < a->nrules; i++) {
        if (keng_level_exists(reg, a->rules[i].level))
            continue;
        snprintf(errstr, errstr_size,
                 "alert.%s.level is %s; the registry version's levels are %s: change the rule "
                 "(and restart keng-aggregate) before the version takes effect",
                 a->rules[i].name, keng_level_names[a->rules[i].level],
                 keng_registry_level_list(reg));
        return -1;
    }
    return 0;
}

int keng_alerts_set_registry(keng_alerts_t *a, const keng_registry_t *reg, int64_t now_ms,
                             char *errstr, size_t errstr_size)
{
    if (keng_alerts_check_registry(a, reg, errstr, errstr_size) != 0)
        return -1;
    /* Noted entries first: the touched list must not outlive the entries removed below. */
    keng_alerts_evaluate_touched(a, now_ms);
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            if (e->level != KENG_LEVEL_COMMUNE && e->level != KENG_LEVEL_DISTRICT)
                continue;
            if (e->fire)
                end_firing(a, e, now_ms);
            entry_remove(a, e);
        }
    }
    a->reg = reg;
    a->dirty = true;
    if (keng_alerts__build_scope_boards(a) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

size_t keng_alerts_release_unheld(keng_alerts_t *a)
{
    size_t released = 0;

    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            if (holds(a, e))
                continue;
            if (e->fire) {
                free(e->fire);
                e->fire = NULL;
                a->stats.firing--;
                a->dirty = true;
                released++;
            }
            /* A touched entry stays listed until the next evaluation, which skips it. */
            if (!e->touched)
                entry_remove(a, e);
        }
    }
    return released;
}

bool keng_alerts_dirty(const keng_alerts_t *a)
{
    return a->dirty;
}

void keng_alerts_mark_clean(keng_alerts_t *a)
{
    a->dirty = false;
}

void keng_alerts_stats(const keng_alerts_t *a, keng_alerts_stats_t *out)
{
    *out = a->stats;
}
