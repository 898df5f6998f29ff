/* The alert rules from the config: parses and checks every alert.<name>.<field> key and
 * prepares what silent rules need; it never evaluates a rule or emits a transition. */
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Refuses the config: the message goes to the caller's errstr, and later keys are skipped. */
static void parse_fail(parse_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_fail(parse_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ctx->errstr, ctx->errstr_size, fmt, ap);
    va_end(ap);
    ctx->failed = 1;
}

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

int keng_alerts__name_index(const char *const *names, int count, const char *s)
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

/* What field k takes, for the message that refuses a value. */
static const char *expected_value(const keng_registry_t *reg, size_t k)
{
    if (k == 0 && !keng_registry_has_districts(reg))
        return "expected board, commune or province: the registry has no district level";
    return k == 0              ? "expected board, commune, district or province"
           : k == 1            ? "expected 1h, 24h, 7d, 30d or 365d"
           : k == 2            ? "expected incident, mediation or silent"
           : k == 3            ? "expected an IncidentCategory symbol such as DRUGS"
           : k == 4            ? "expected PENDING, HANDLED_LOCALLY or TRANSFERRED_TO_POLICE"
           : k == 5            ? "expected RECONCILED, NOT_RECONCILED or REFERRED"
           : k == KEY_SEVERITY ? "expected 1 to 31 letters, digits, '_' or '-', such as critical"
           : k == KEY_DAYS     ? "expected a whole number of days from 1 to 365"
           : k == KEY_SHARE    ? "expected a share of the boards from 0 to below 1, such as 0.5"
                               : "expected a whole number from 1 to 2147483647";
}

/* The rule that key (alert.<name>.<field>) names, created on its first key, and the index of
 * its field in *k; borrowed (a owns it). NULL with ctx failed when the key is not valid. */
static rule_t *rule_of_key(parse_ctx_t *ctx, const char *key, size_t *k)
{
    const char *name = key + 6, *dot = strrchr(name, '.'), *field;
    rule_t *r;

    if (!dot || !valid_name(name, (size_t)(dot - name))) {
        parse_fail(ctx,
                   "%s: alert keys are alert.<name>.<field>, the name of 1 to %d letters, digits, "
                   "'_' or '-'",
                   key, RULE_NAME_MAX);
        return NULL;
    }
    field = dot + 1;
    for (*k = 0; *k < RULE_KEYS; (*k)++)
        if (strcmp(field, FIELD(*k)) == 0)
            break;
    if (*k == RULE_KEYS) {
        parse_fail(ctx,
                   "%s: unknown field '%s' (expected level, window, kind, category, resolution, "
                   "outcome, threshold, resolve_below, summary, severity, days or share)",
                   key, field);
        return NULL;
    }
    r = rule_get(ctx->a, name, (size_t)(dot - name));
    if (!r) {
        parse_fail(ctx, "out of memory");
    }
    return r;
}

/* Sets the filter (category, resolution or outcome: k 3 to 5) of r. */
static int set_filter(parse_ctx_t *ctx, rule_t *r, size_t k, const char *key, const char *value)
{
    static const filter_t filters[] = {FILTER_CATEGORY, FILTER_RESOLUTION, FILTER_OUTCOME};
    const char *const *names = k == 3   ? keng_category_names
                               : k == 4 ? keng_resolution_names
                                        : keng_outcome_names;
    int count = k == 3 ? KENG_CAT_COUNT : k == 4 ? KENG_RES_COUNT : KENG_OUTCOME_COUNT;
    int v;

    if (r->filter != FILTER_ALL && r->filter != filters[k - 3]) {
        parse_fail(ctx, "%s: a rule takes at most one of category, resolution and outcome", key);
        return 0;
    }
    v = keng_alerts__name_index(names, count, value);
    if (v < 0)
        return -1;
    r->filter = filters[k - 3];
    r->filter_value = v;
    return 0;
}

/* Sets field k of r from value. Returns 0, or -1 when value is not one the field takes; other
 * failures (out of memory, a second filter) are reported in ctx. */
static int set_field(parse_ctx_t *ctx, rule_t *r, size_t k, const char *key, const char *value)
{
    int v;

    switch (k) {
    case 0:
        return keng_level_parse(ctx->a->reg, value, &r->level);
    case 1:
        v = keng_alerts__name_index(keng_window_names, KENG_WIN_ALL,
                                    value); /* "all" never resolves */
        if (v < 0)
            return -1;
        r->window = (keng_window_id_t)v;
        return 0;
    case 2:
        /* A silent rule is decided where the board's incidents are (any kind would do: the
         * board's last event is the later of its two units'). */
        r->silent = strcmp(value, "silent") == 0;
        if (r->silent)
            r->kind = KENG_KIND_INCIDENT;
        else if (keng_kind_parse(value, &r->kind) != 0)
            return -1;
        return 0;
    case 3:
    case 4:
    case 5:
        return set_filter(ctx, r, k, key, value);
    case 6:
        return parse_long(value, &r->threshold);
    case 7:
        free(r->summary);
        r->summary = strdup(value);
        if (!r->summary) {
            parse_fail(ctx, "out of memory");
        }
        return 0;
    case 8:
        return parse_long(value, &r->resolve_below);
    case KEY_SEVERITY:
        if (!valid_name(value, strlen(value)) || strlen(value) > SEVERITY_MAX)
            return -1;
        snprintf(r->severity, sizeof(r->severity), "%s", value);
        return 0;
    case KEY_DAYS:
        return keng_silent_parse_days(value, &r->days) != 0 ? -1 : 0;
    default: {
        char *end;
        r->share = strtod(value, &end);
        if (end == value || *end || !(r->share >= 0 && r->share < 1))
            return -1;
        return 0;
    }
    }
}

static void on_config_key(const char *key, const char *value, void *arg)
{
    parse_ctx_t *ctx = arg;
    rule_t *r;
    size_t k;

    if (ctx->failed || strncmp(key, "alert.", 6) != 0)
        return;
    r = rule_of_key(ctx, key, &k);
    if (!r)
        return;
    r->seen[k] = true;
    if (set_field(ctx, r, k, key, value) != 0) {
        parse_fail(ctx, "%s: '%.64s' is not valid here (%s)", key, value,
                   expected_value(ctx->a->reg, k));
    }
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

int keng_alerts__build_scope_boards(keng_alerts_t *a)
{
    size_t nboards = keng_registry_board_count(a->reg);
    bool wanted = false;

    for (int l = 0; l < KENG_LEVEL_COUNT; l++) {
        free(a->scope_off[l]);
        free(a->scope_boards[l]);
        a->scope_off[l] = NULL;
        a->scope_boards[l] = NULL;
    }
    for (size_t i = 0; i < a->nrules; i++)
        wanted |= a->rules[i].silent && a->rules[i].level != KENG_LEVEL_BOARD;
    if (!wanted)
        return 0;
    for (int l = KENG_LEVEL_COMMUNE; l <= KENG_LEVEL_PROVINCE; l++) {
        if (!keng_level_exists(a->reg, (keng_level_t)l))
            continue;
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

int keng_alerts__rules_from_config(keng_alerts_t *a, const keng_config_t *cfg, char *errstr,
                                   size_t errstr_size)
{
    parse_ctx_t ctx = {.a = a, .errstr = errstr, .errstr_size = errstr_size};

    if (keng_silent_options_from_config(cfg, &a->silent, errstr, errstr_size) != 0)
        return -1;
    keng_config_each(cfg, on_config_key, &ctx);
    if (ctx.failed)
        return -1;
    for (size_t i = 0; i < a->nrules; i++)
        if (check_rule(&a->rules[i], a->silent.days, errstr, errstr_size) != 0)
            return -1;
    if (keng_alerts__build_scope_boards(a) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}
