/* The alert rule engine: per (rule, scope) state, kept only for scopes that saw a matching
 * event or are firing, evaluated against counts.c after each batch and on the window timer. */
#include "alerts.h"
#include "silent.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_NAME_MAX   63
#define SCOPE_ID_MAX    31
#define ALERT_ID_MAX    48
#define SUMMARY_MAX     512
#define FILTER_NONE     (-1)
#define STATE_MAGIC0    'K'
#define STATE_MAGIC1    'A'
#define STATE_VERSION   1
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

/* The fields of a rule, in the order of the switch in on_config_key; a field is one line. */
const char *const keng_alerts_config_keys[] = {"alert.*.level",
                                               "alert.*.window",
                                               "alert.*.kind",
                                               "alert.*.category",
                                               "alert.*.resolution",
                                               "alert.*.outcome",
                                               "alert.*.threshold",
                                               "alert.*.summary",
                                               "alert.*.resolve_below",
                                               "alert.*.severity",
                                               "alert.*.days",
                                               "alert.*.share",
                                               NULL};
#define RULE_KEYS        (sizeof(keng_alerts_config_keys) / sizeof(keng_alerts_config_keys[0]) - 1)
#define FIELD(k)         (keng_alerts_config_keys[k] + 8) /* after "alert.*." */
#define DEFAULT_SEVERITY "warning"
#define KEY_SEVERITY     9
#define KEY_DAYS         10
#define KEY_SHARE        11

/* The scope of level that holds the board. */
static uint32_t scope_of_board(const keng_registry_t *reg, keng_level_t level, uint32_t board)
{
    switch (level) {
    case KENG_LEVEL_BOARD:
        return board;
    case KENG_LEVEL_COMMUNE:
        return keng_registry_board(reg, board)->commune;
    case KENG_LEVEL_DISTRICT:
        return keng_registry_board(reg, board)->district;
    default:
        return 0;
    }
}

/* ---- rules from the config ---- */

typedef struct parse_ctx {
    keng_alerts_t *a;
    char *errstr;
    size_t errstr_size;
    int failed;
} parse_ctx_t;

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > RULE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int name_index(const char *const *names, int count, const char *s)
{
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static rule_t *rule_get(keng_alerts_t *a, const char *name, size_t len)
{
    for (size_t i = 0; i < a->nrules; i++)
        if (strlen(a->rules[i].name) == len && memcmp(a->rules[i].name, name, len) == 0)
            return &a->rules[i];
    rule_t *r = realloc(a->rules, (a->nrules + 1) * sizeof(*r));
    if (!r)
        return NULL;
    a->rules = r;
    r = &a->rules[a->nrules++];
    memset(r, 0, sizeof(*r));
    memcpy(r->name, name, len);
    r->filter = FILTER_ALL;
    r->filter_value = FILTER_NONE;
    return r;
}

static int parse_long(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);

    if (end == s || *end || v < 1 || v > INT32_MAX)
        return -1;
    *out = v;
    return 0;
}

static void on_config_key(const char *key, const char *value, void *arg)
{
    parse_ctx_t *ctx = arg;
    keng_alerts_t *a = ctx->a;
    const char *name, *dot, *field;
    rule_t *r;
    int v;

    if (ctx->failed || strncmp(key, "alert.", 6) != 0)
        return;
    name = key + 6;
    dot = strrchr(name, '.');
    if (!dot || !valid_name(name, (size_t)(dot - name))) {
        snprintf(ctx->errstr, ctx->errstr_size,
                 "%s: alert keys are alert.<name>.<field>, the name of 1 to %d letters, digits, "
                 "'_' or '-'",
                 key, RULE_NAME_MAX);
        ctx->failed = 1;
        return;
    }
    field = dot + 1;
    size_t k;
    for (k = 0; k < RULE_KEYS; k++)
        if (strcmp(field, FIELD(k)) == 0)
            break;
    if (k == RULE_KEYS) {
        snprintf(ctx->errstr, ctx->errstr_size,
                 "%s: unknown field '%s' (expected level, window, kind, category, resolution, "
                 "outcome, threshold, resolve_below, summary, severity, days or share)",
                 key, field);
        ctx->failed = 1;
        return;
    }
    r = rule_get(a, name, (size_t)(dot - name));
    if (!r) {
        snprintf(ctx->errstr, ctx->errstr_size, "out of memory");
        ctx->failed = 1;
        return;
    }
    r->seen[k] = true;
    switch (k) {
    case 0:
        v = name_index(keng_level_names, KENG_LEVEL_COUNT, value);
        if (v < 0)
            goto bad;
        r->level = (keng_level_t)v;
        return;
    case 1:
        v = name_index(keng_window_names, KENG_WIN_ALL, value); /* "all" never resolves */
        if (v < 0)
            goto bad;
        r->window = (keng_window_id_t)v;
        return;
    case 2:
        /* A silent rule is decided where the board's incidents are (any kind would do: the
         * board's last event is the later of its two units'). */
        r->silent = strcmp(value, "silent") == 0;
        if (r->silent)
            r->kind = KENG_KIND_INCIDENT;
        else if (keng_kind_parse(value, &r->kind) != 0)
            goto bad;
        return;
    case 3:
    case 4:
    case 5: {
        static const filter_t filters[] = {FILTER_CATEGORY, FILTER_RESOLUTION, FILTER_OUTCOME};
        const char *const *names = k == 3   ? keng_category_names
                                   : k == 4 ? keng_resolution_names
                                            : keng_outcome_names;
        int count = k == 3 ? KENG_CAT_COUNT : k == 4 ? KENG_RES_COUNT : KENG_OUTCOME_COUNT;
        if (r->filter != FILTER_ALL && r->filter != filters[k - 3]) {
            snprintf(ctx->errstr, ctx->errstr_size,
                     "%s: a rule takes at most one of category, resolution and outcome", key);
            ctx->failed = 1;
            return;
        }
        v = name_index(names, count, value);
        if (v < 0)
            goto bad;
        r->filter = filters[k - 3];
        r->filter_value = v;
        return;
    }
    case 6:
        if (parse_long(value, &r->threshold) != 0)
            goto bad;
        return;
    case 7:
        free(r->summary);
        r->summary = strdup(value);
        if (!r->summary) {
            snprintf(ctx->errstr, ctx->errstr_size, "out of memory");
            ctx->failed = 1;
        }
        return;
    case 8:
        if (parse_long(value, &r->resolve_below) != 0)
            goto bad;
        return;
    case KEY_SEVERITY:
        if (!valid_name(value, strlen(value)) || strlen(value) > SEVERITY_MAX)
            goto bad;
        snprintf(r->severity, sizeof(r->severity), "%s", value);
        return;
    case KEY_DAYS:
        if (keng_silent_parse_days(value, &r->days) != 0)
            goto bad;
        return;
    default: {
        char *end;
        r->share = strtod(value, &end);
        if (end == value || *end || !(r->share >= 0 && r->share < 1))
            goto bad;
        return;
    }
    }

bad:
    snprintf(ctx->errstr, ctx->errstr_size, "%s: '%.64s' is not valid here (%s)", key, value,
             k == 0              ? "expected board, commune, district or province"
             : k == 1            ? "expected 1h, 24h, 7d, 30d or 365d"
             : k == 2            ? "expected incident, mediation or silent"
             : k == 3            ? "expected an IncidentCategory symbol such as DRUGS"
             : k == 4            ? "expected PENDING, HANDLED_LOCALLY or TRANSFERRED_TO_POLICE"
             : k == 5            ? "expected RECONCILED, NOT_RECONCILED or REFERRED"
             : k == KEY_SEVERITY ? "expected 1 to 31 letters, digits, '_' or '-', such as critical"
             : k == KEY_DAYS     ? "expected a whole number of days from 1 to 365"
             : k == KEY_SHARE    ? "expected a share of the boards from 0 to below 1, such as 0.5"
                                 : "expected a whole number from 1 to 2147483647");
    ctx->failed = 1;
}

/* A silent rule: level, and share above a board; no count keys. */
static int check_silent_rule(rule_t *r, int default_days, char *errstr, size_t errstr_size)
{
    static const int refused[] = {1, 3, 4, 5, 6, 8};

    if (!r->seen[0]) {
        snprintf(errstr, errstr_size, "alert.%s.level is missing (a silent rule needs a level)",
                 r->name);
        return -1;
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (r->seen[refused[i]]) {
            snprintf(errstr, errstr_size,
                     "alert.%s.%s does not apply to a silent rule (it takes level, days, share, "
                     "summary and severity)",
                     r->name, FIELD(refused[i]));
            return -1;
        }
    }
    if (r->level == KENG_LEVEL_BOARD && r->seen[KEY_SHARE]) {
        snprintf(errstr, errstr_size,
                 "alert.%s.share applies to a silent rule above a board (commune, district or "
                 "province); a board is silent or not",
                 r->name);
        return -1;
    }
    if (r->level != KENG_LEVEL_BOARD && !r->seen[KEY_SHARE]) {
        snprintf(errstr, errstr_size,
                 "alert.%s.share is missing (a silent rule for a %s fires when more than that "
                 "share of its boards is silent, e.g. 0.5)",
                 r->name, keng_level_names[r->level]);
        return -1;
    }
    if (!r->seen[KEY_DAYS])
        r->days = default_days;
    r->threshold = r->resolve_below = r->days;
    if (!r->summary &&
        !(r->summary = strdup(r->level == KENG_LEVEL_BOARD
                                  ? "{scope_name}: không báo cáo sự việc nào trong {count} ngày "
                                    "(quy tắc {rule})"
                                  : "{scope_name}: {count} ban tự quản không báo cáo quá {days} "
                                    "ngày, ngưỡng {threshold} (quy tắc {rule})"))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

static int check_rule(rule_t *r, int default_days, char *errstr, size_t errstr_size)
{
    static const int required[] = {0, 1, 2, 6};

    if (r->silent)
        return check_silent_rule(r, default_days, errstr, errstr_size);
    if (r->seen[KEY_DAYS] || r->seen[KEY_SHARE]) {
        snprintf(errstr, errstr_size, "alert.%s.%s applies to silent rules only (kind=silent)",
                 r->name, r->seen[KEY_DAYS] ? "days" : "share");
        return -1;
    }

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!r->seen[required[i]]) {
            snprintf(errstr, errstr_size,
                     "alert.%s.%s is missing (a rule needs level, window, "
                     "kind and threshold)",
                     r->name, FIELD(required[i]));
            return -1;
        }
    }
    if ((r->filter == FILTER_OUTCOME && r->kind != KENG_KIND_MEDIATION) ||
        ((r->filter == FILTER_CATEGORY || r->filter == FILTER_RESOLUTION) &&
         r->kind != KENG_KIND_INCIDENT)) {
        snprintf(errstr, errstr_size,
                 "alert.%s: category and resolution filter incidents, outcome mediations; "
                 "the rule's kind is %s",
                 r->name, keng_kind_name(r->kind));
        return -1;
    }
    if (r->resolve_below == 0)
        r->resolve_below = r->threshold;
    if (!r->severity[0])
        snprintf(r->severity, sizeof(r->severity), "%s", DEFAULT_SEVERITY);
    if (r->resolve_below > r->threshold) {
        snprintf(errstr, errstr_size,
                 "alert.%s.resolve_below (%" PRId64 ") must not exceed the threshold (%" PRId64 ")",
                 r->name, r->resolve_below, r->threshold);
        return -1;
    }
    if (!r->summary &&
        !(r->summary = strdup("{scope_name}: {count} sự việc trong {window} (quy tắc {rule})"))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

/* The boards of every commune and district, for the silent rules above a board. */
static int build_scope_boards(keng_alerts_t *a)
{
    size_t nboards = keng_registry_board_count(a->reg);
    bool wanted = false;

    for (size_t i = 0; i < a->nrules; i++)
        wanted |= a->rules[i].silent && a->rules[i].level != KENG_LEVEL_BOARD;
    if (!wanted)
        return 0;
    for (int l = KENG_LEVEL_COMMUNE; l <= KENG_LEVEL_PROVINCE; l++) {
        size_t n = keng_scope_count(a->reg, (keng_level_t)l);
        uint32_t *off = calloc(n + 2, sizeof(uint32_t));
        uint32_t *boards = malloc((nboards ? nboards : 1) * sizeof(uint32_t));
        a->scope_off[l] = off;
        a->scope_boards[l] = boards;
        if (!off || !boards)
            return -1;
        for (uint32_t b = 0; b < nboards; b++)
            off[scope_of_board(a->reg, (keng_level_t)l, b) + 2]++;
        for (size_t s = 0; s < n; s++)
            off[s + 2] += off[s + 1];
        for (uint32_t b = 0; b < nboards; b++)
            boards[off[scope_of_board(a->reg, (keng_level_t)l, b) + 1]++] = b;
    }
    return 0;
}

keng_alerts_t *keng_alerts_new(const keng_config_t *cfg, const keng_registry_t *reg,
                               const keng_counts_t *counts, char *errstr, size_t errstr_size)
{
    keng_alerts_t *a = calloc(1, sizeof(*a));
    parse_ctx_t ctx = {.a = a, .errstr = errstr, .errstr_size = errstr_size};

    if (!a || !(a->buckets = calloc(BUCKETS_INITIAL, sizeof(*a->buckets)))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    a->nbuckets = BUCKETS_INITIAL;
    a->reg = reg;
    a->counts = counts;
    if (keng_silent_options_from_config(cfg, &a->silent, errstr, errstr_size) != 0)
        goto fail;
    keng_config_each(cfg, on_config_key, &ctx);
    if (ctx.failed)
        goto fail;
    for (size_t i = 0; i < a->nrules; i++)
        if (check_rule(&a->rules[i], a->silent.days, errstr, errstr_size) != 0)
            goto fail;
    if (build_scope_boards(a) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
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
static bool rule_holds(const keng_alerts_t *a, const rule_t *r, keng_level_t level, uint32_t scope)
{
    if (r->silent)
        return holds_scope(a, KENG_LEVEL_PROVINCE, 0, r->kind);
    return holds_scope(a, level, scope, r->kind);
}

static bool holds(const keng_alerts_t *a, const entry_t *e)
{
    return rule_holds(a, &a->rules[e->rule], e->level, e->scope);
}

/* ---- scopes ---- */

static uint64_t entry_key(uint32_t rule, keng_level_t level, uint32_t scope)
{
    return (uint64_t)rule << 34 | (uint64_t)level << 32 | scope;
}

static size_t bucket_of(const keng_alerts_t *a, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;

    return (size_t)(h >> 32) & (a->nbuckets - 1);
}

static entry_t *entry_find(const keng_alerts_t *a, uint64_t key)
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

static entry_t *entry_get(keng_alerts_t *a, uint32_t rule, keng_level_t level, uint32_t scope)
{
    uint64_t key = entry_key(rule, level, scope);
    entry_t *e = entry_find(a, key);

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
        entry_t *e = entry_get(a, (uint32_t)r, rule->level, scope);
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

static void rec_set_window(rec_t *rec, int window)
{
    rec->window = window;
    if (window >= SILENT_WINDOW)
        snprintf(rec->window_s, sizeof(rec->window_s), "%dd",
                 (window - SILENT_WINDOW) % (KENG_SILENT_DAYS_MAX + 1));
    else
        snprintf(rec->window_s, sizeof(rec->window_s), "%s", keng_window_names[window]);
}

static void rec_to_alert(const rec_t *rec, keng_alert_status_t status, keng_alert_t *t)
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

static void resolved_push(keng_alerts_t *a, const rec_t *rec)
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
    rec_to_alert(rec, status, &t);
    a->emit(&t, a->emit_arg);
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
        rec_set_window(rec, r->silent ? SILENT_WINDOW + r->days : (int)r->window);
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
        rec->ends_at = now;
        render_summary(a, r, e->level, e->scope, count, rec->threshold, rec->window_s, rec->summary,
                       sizeof(rec->summary));
        e->fire = NULL;
        a->stats.firing--;
        resolved_push(a, rec);
        emit(a, rec, KENG_ALERT_RESOLVED);
        free(rec);
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
        if (!rule_holds(a, r, r->level, (uint32_t)i) ||
            rule_count(a, r, r->level, (uint32_t)i, now_ms) <
                rule_threshold(a, r, r->level, (uint32_t)i))
            continue;
        entry_t *e = entry_get(a, rule, r->level, (uint32_t)i);
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

/* ---- reading back ---- */

static const rule_t *rule_by_name(const keng_alerts_t *a, const char *name, uint32_t *index)
{
    for (size_t i = 0; i < a->nrules; i++) {
        if (strcmp(a->rules[i].name, name) == 0) {
            *index = (uint32_t)i;
            return &a->rules[i];
        }
    }
    return NULL;
}

static bool resolved_has(const keng_alerts_t *a, const char *alert_id)
{
    for (size_t i = 0; i < a->nresolved; i++)
        if (strcmp(a->resolved[i].alert_id, alert_id) == 0)
            return true;
    return false;
}

static void rec_from_alert(const keng_alert_t *t, rec_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    snprintf(rec->alert_id, sizeof(rec->alert_id), "%s", t->alert_id);
    snprintf(rec->fingerprint, sizeof(rec->fingerprint), "%s", t->fingerprint);
    snprintf(rec->rule, sizeof(rec->rule), "%s", t->rule);
    rec->level = (keng_level_t)t->level;
    snprintf(rec->scope_id, sizeof(rec->scope_id), "%s", t->scope_id);
    int w = name_index(keng_window_names, KENG_WIN_COUNT, t->window);
    int days;
    char text[8];
    /* A silent rule's window reads "<days>d". */
    snprintf(text, sizeof(text), "%.6s", t->window);
    if (w < 0 && strlen(text) > 1 && text[strlen(text) - 1] == 'd') {
        text[strlen(text) - 1] = '\0';
        if (keng_silent_parse_days(text, &days) == 0)
            w = SILENT_WINDOW + days;
    }
    rec_set_window(rec, w < 0 ? KENG_WIN_ALL : w);
    rec->count = t->count;
    rec->threshold = t->threshold;
    rec->starts_at = t->starts_at;
    rec->ends_at = t->has_ends_at ? t->ends_at : 0;
    snprintf(rec->summary, sizeof(rec->summary), "%s", t->summary);
    rec->nsamples = t->nsamples > KENG_ALERT_SAMPLES_MAX ? KENG_ALERT_SAMPLES_MAX : t->nsamples;
    for (size_t i = 0; i < rec->nsamples; i++)
        snprintf(rec->samples[i], sizeof(rec->samples[i]), "%s", t->sample_event_ids[i]);
}

static int apply(keng_alerts_t *a, const keng_alert_t *t, bool held_only)
{
    uint32_t ri;
    const rule_t *r = rule_by_name(a, t->rule, &ri);
    int32_t scope;
    entry_t *e;
    rec_t rec;

    if (!r || (unsigned)t->level >= KENG_LEVEL_COUNT || (keng_level_t)t->level != r->level)
        return 0;
    scope = keng_scope_find(a->reg, (keng_level_t)t->level, t->scope_id);
    if (scope < 0)
        return 0;
    if (held_only && !rule_holds(a, r, r->level, (uint32_t)scope))
        return 0;
    rec_from_alert(t, &rec);
    if (t->status == KENG_ALERT_FIRING) {
        e = entry_find(a, entry_key(ri, r->level, (uint32_t)scope));
        if ((e && e->fire && strcmp(e->fire->alert_id, t->alert_id) == 0) ||
            resolved_has(a, t->alert_id))
            return 0; /* already known, or already resolved later in the log */
        e = entry_get(a, ri, r->level, (uint32_t)scope);
        if (!e)
            return 0;
        if (!e->fire) {
            if (!(e->fire = malloc(sizeof(*e->fire))))
                return 0;
            a->stats.firing++;
        }
        *e->fire = rec;
        a->dirty = true;
        return 1;
    }
    e = entry_find(a, entry_key(ri, r->level, (uint32_t)scope));
    if (e && e->fire && strcmp(e->fire->alert_id, t->alert_id) == 0) {
        free(e->fire);
        e->fire = NULL;
        a->stats.firing--;
    } else if (resolved_has(a, t->alert_id)) {
        return 0;
    }
    resolved_push(a, &rec);
    a->dirty = true;
    return 1;
}

int keng_alerts_apply(keng_alerts_t *a, const keng_alert_t *t)
{
    return apply(a, t, false);
}

int keng_alerts_adopt(keng_alerts_t *a, const keng_alert_t *t)
{
    return apply(a, t, true);
}

void keng_alerts_each(const keng_alerts_t *a, keng_alert_status_t status,
                      void (*fn)(const keng_alert_t *t, void *arg), void *arg)
{
    keng_alert_t t;

    if (status == KENG_ALERT_RESOLVED) {
        for (size_t i = 0; i < a->nresolved; i++) {
            size_t at =
                (a->resolved_pos + KENG_ALERTS_RESOLVED_MAX - 1 - i) % KENG_ALERTS_RESOLVED_MAX;
            rec_to_alert(&a->resolved[at], KENG_ALERT_RESOLVED, &t);
            fn(&t, arg);
        }
        return;
    }
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (const entry_t *e = a->buckets[b]; e; e = e->next) {
            if (!e->fire)
                continue;
            rec_to_alert(e->fire, KENG_ALERT_FIRING, &t);
            fn(&t, arg);
        }
    }
}

json_t *keng_alerts_json(const keng_alert_t *t)
{
    json_t *samples = json_array();
    json_t *o;

    for (size_t i = 0; i < t->nsamples; i++)
        json_array_append_new(samples, json_string(t->sample_event_ids[i]));
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:o}", "alert_id", t->alert_id,
                  "fingerprint", t->fingerprint, "rule", t->rule, "status",
                  keng_alert_status_names[t->status], "level", keng_alert_level_names[t->level],
                  "scope_id", t->scope_id, "window", t->window, "count", (json_int_t)t->count,
                  "threshold", (json_int_t)t->threshold, "starts_at", (json_int_t)t->starts_at,
                  "summary", t->summary, "sample_event_ids", samples);
    if (o)
        json_object_set_new(o, "ends_at",
                            t->has_ends_at ? json_integer((json_int_t)t->ends_at) : json_null());
    return o;
}

/* ---- state ---- */

typedef struct buf {
    unsigned char *data;
    size_t len, cap;
    bool failed;
} buf_t;

static void put_bytes(buf_t *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u64(buf_t *b, uint64_t v)
{
    unsigned char x[8];

    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    put_bytes(b, x, 8);
}

static void put_str(buf_t *b, const char *s)
{
    size_t n = strlen(s);

    put_u64(b, n);
    put_bytes(b, s, n);
}

static void put_rec(buf_t *b, const rec_t *r)
{
    put_str(b, r->alert_id);
    put_str(b, r->fingerprint);
    put_str(b, r->rule);
    put_u64(b, (uint64_t)r->level);
    put_str(b, r->scope_id);
    put_u64(b, (uint64_t)r->window);
    put_u64(b, (uint64_t)r->count);
    put_u64(b, (uint64_t)r->threshold);
    put_u64(b, (uint64_t)r->starts_at);
    put_u64(b, (uint64_t)r->ends_at);
    put_str(b, r->summary);
    put_u64(b, r->nsamples);
    for (size_t i = 0; i < r->nsamples; i++)
        put_str(b, r->samples[i]);
}

int keng_alerts_save(const keng_alerts_t *a, unsigned char **out, size_t *len)
{
    buf_t b = {.data = *out, .len = *len, .cap = *len};
    unsigned char magic[3] = {STATE_MAGIC0, STATE_MAGIC1, STATE_VERSION};
    uint64_t nfiring = 0;

    put_bytes(&b, magic, 3);
    for (size_t i = 0; i < a->nbuckets; i++)
        for (const entry_t *e = a->buckets[i]; e; e = e->next)
            nfiring += e->fire != NULL;
    put_u64(&b, nfiring);
    for (size_t i = 0; i < a->nbuckets; i++)
        for (const entry_t *e = a->buckets[i]; e; e = e->next)
            if (e->fire)
                put_rec(&b, e->fire);
    /* Oldest first, so that loading pushes them back in order. */
    put_u64(&b, a->nresolved);
    for (size_t i = a->nresolved; i-- > 0;)
        put_rec(&b, &a->resolved[(a->resolved_pos + KENG_ALERTS_RESOLVED_MAX - 1 - i) %
                                 KENG_ALERTS_RESOLVED_MAX]);
    *out = b.data;
    *len = b.len;
    return b.failed ? -1 : 0;
}

typedef struct rd {
    const unsigned char *p, *end;
    bool failed;
} rd_t;

static uint64_t get_u64(rd_t *r)
{
    uint64_t v = 0;

    if (r->failed || r->end - r->p < 8) {
        r->failed = true;
        return 0;
    }
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return v;
}

static void get_str(rd_t *r, char *out, size_t cap)
{
    uint64_t n = get_u64(r);

    out[0] = '\0';
    if (r->failed || n >= cap || n > (uint64_t)(r->end - r->p)) {
        r->failed = true;
        return;
    }
    memcpy(out, r->p, (size_t)n);
    out[n] = '\0';
    r->p += n;
}

static void get_rec(rd_t *r, rec_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    get_str(r, rec->alert_id, sizeof(rec->alert_id));
    get_str(r, rec->fingerprint, sizeof(rec->fingerprint));
    get_str(r, rec->rule, sizeof(rec->rule));
    rec->level = (keng_level_t)get_u64(r);
    get_str(r, rec->scope_id, sizeof(rec->scope_id));
    rec->window = (int)get_u64(r);
    rec->count = (int64_t)get_u64(r);
    rec->threshold = (int64_t)get_u64(r);
    rec->starts_at = (int64_t)get_u64(r);
    rec->ends_at = (int64_t)get_u64(r);
    get_str(r, rec->summary, sizeof(rec->summary));
    rec->nsamples = (size_t)get_u64(r);
    if (rec->level >= KENG_LEVEL_COUNT || rec->window < 0 ||
        rec->window > SILENT_WINDOW + KENG_SILENT_DAYS_MAX ||
        (rec->window >= KENG_WIN_COUNT && rec->window <= SILENT_WINDOW) ||
        rec->nsamples > KENG_ALERT_SAMPLES_MAX) {
        r->failed = true;
        return;
    }
    rec_set_window(rec, rec->window);
    for (size_t i = 0; i < rec->nsamples; i++)
        get_str(r, rec->samples[i], sizeof(rec->samples[i]));
}

static void clear_state(keng_alerts_t *a)
{
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e->fire);
            free(e);
        }
        a->buckets[b] = NULL;
    }
    a->nentries = 0;
    a->ntouched = 0;
    a->nresolved = a->resolved_pos = 0;
    a->stats.firing = 0;
}

int keng_alerts_load(keng_alerts_t *a, const unsigned char *buf, size_t len, char *errstr,
                     size_t errstr_size)
{
    rd_t r = {.p = buf, .end = buf + len};
    rec_t rec;
    keng_alert_t t;
    uint64_t n;

    clear_state(a);
    if (len < 3 || buf[0] != STATE_MAGIC0 || buf[1] != STATE_MAGIC1 || buf[2] != STATE_VERSION) {
        snprintf(errstr, errstr_size, "the alert state has an unknown format");
        return -1;
    }
    r.p += 3;
    n = get_u64(&r);
    for (uint64_t i = 0; i < n && !r.failed; i++) {
        get_rec(&r, &rec);
        if (r.failed)
            break;
        rec_to_alert(&rec, KENG_ALERT_FIRING, &t);
        keng_alerts_apply(a, &t);
    }
    n = get_u64(&r);
    for (uint64_t i = 0; i < n && !r.failed; i++) {
        get_rec(&r, &rec);
        if (!r.failed)
            resolved_push(a, &rec);
    }
    if (r.failed || r.p != r.end) {
        clear_state(a);
        snprintf(errstr, errstr_size, "the alert state is truncated or corrupt");
        return -1;
    }
    a->dirty = false;
    return 0;
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
