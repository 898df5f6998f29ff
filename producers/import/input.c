/* Turns NDJSON lines and CSV rows into events, through one JSON form and one validator; it
 * never reads a file (the program does) and never talks to Kafka. */
#include "input.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csv.h"

/* A CSV column: which JSON field it fills and for which kinds. */
enum col_type { COL_STRING, COL_INT, COL_TIME, COL_LAT, COL_LON, COL_KIND };

struct col_def {
    const char *name;
    enum col_type type;
    unsigned kinds; /* bit per keng_kind_t */
};

#define K_INC (1u << KENG_KIND_INCIDENT)
#define K_MED (1u << KENG_KIND_MEDIATION)

static const struct col_def col_defs[] = {
    {"kind", COL_KIND, K_INC | K_MED},
    {"event_id", COL_STRING, K_INC | K_MED},
    {"board_id", COL_STRING, K_INC | K_MED},
    {"group_id", COL_STRING, K_INC | K_MED},
    {"occurred_at", COL_TIME, K_INC | K_MED},
    {"reported_at", COL_TIME, K_INC | K_MED},
    {"summary", COL_STRING, K_INC | K_MED},
    {"category", COL_STRING, K_INC},
    {"severity", COL_STRING, K_INC},
    {"resolution", COL_STRING, K_INC},
    {"people_involved", COL_INT, K_INC},
    {"source", COL_STRING, K_INC},
    {"lat", COL_LAT, K_INC},
    {"lon", COL_LON, K_INC},
    {"police_case_id", COL_STRING, K_INC}, /* Incident v2 */
    {"dispute_type", COL_STRING, K_MED},
    {"outcome", COL_STRING, K_MED},
    {"parties", COL_INT, K_MED},
    {"related_incident_id", COL_STRING, K_MED},
};
#define N_COL_DEFS (sizeof(col_defs) / sizeof(col_defs[0]))

struct keng_input {
    keng_input_format_t format;
    int kind;
    const keng_registry_t *reg;
    keng_csv_t *csv;
    const struct col_def **cols; /* per CSV column */
    size_t ncols;
    json_t *current;               /* the record's JSON, which the event borrows from */
    const keng_event_rule_t *rule; /* borrowed; NULL: the defaults */
};

keng_input_t *keng_input_new(keng_input_format_t format, int kind, const keng_registry_t *reg)
{
    keng_input_t *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->format = format;
    in->kind = kind;
    in->reg = reg;
    if (format == KENG_INPUT_CSV) {
        in->csv = keng_csv_new();
        if (!in->csv) {
            free(in);
            return NULL;
        }
    }
    return in;
}

void keng_input_set_rule(keng_input_t *in, const keng_event_rule_t *rule)
{
    in->rule = rule;
}

void keng_input_destroy(keng_input_t *in)
{
    if (!in)
        return;
    if (in->current)
        json_decref(in->current);
    keng_csv_destroy(in->csv);
    free(in->cols);
    free(in);
}

int keng_input_format_parse(const char *name, keng_input_format_t *out)
{
    if (strcmp(name, "ndjson") == 0 || strcmp(name, "jsonl") == 0)
        *out = KENG_INPUT_NDJSON;
    else if (strcmp(name, "csv") == 0)
        *out = KENG_INPUT_CSV;
    else
        return -1;
    return 0;
}

keng_input_format_t keng_input_format_for_path(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (dot && strcasecmp(dot, ".csv") == 0)
        return KENG_INPUT_CSV;
    return KENG_INPUT_NDJSON;
}

int keng_input_csv_header(keng_input_t *in, const char *s, size_t len, char *errstr,
                          size_t errstr_size)
{
    char why[200];
    unsigned want = in->kind == KENG_INPUT_KIND_AUTO ? (K_INC | K_MED) : (1u << in->kind);
    int n = keng_csv_split(in->csv, s, len, why, sizeof(why));

    if (n < 0) {
        snprintf(errstr, errstr_size, "header: %s", why);
        return -1;
    }
    free(in->cols);
    in->ncols = 0;
    in->cols = calloc((size_t)n, sizeof(*in->cols));
    if (!in->cols) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *name = keng_csv_field(in->csv, (size_t)i, NULL);
        const struct col_def *def = NULL;
        for (size_t d = 0; d < N_COL_DEFS; d++)
            if (strcmp(col_defs[d].name, name) == 0 && (col_defs[d].kinds & want))
                def = &col_defs[d];
        if (!def) {
            snprintf(errstr, errstr_size,
                     "header: column %d '%s' is not a field of %s events (use the schema's "
                     "field names, with location as lat and lon)",
                     i + 1, name,
                     in->kind == KENG_INPUT_KIND_AUTO ? "incident or mediation"
                                                      : keng_kind_name((keng_kind_t)in->kind));
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (in->cols[j] == def) {
                snprintf(errstr, errstr_size, "header: column '%s' appears twice", name);
                return -1;
            }
        }
        in->cols[i] = def;
    }
    in->ncols = (size_t)n;
    return 0;
}

static void set_err(keng_field_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(keng_field_error_t *err, const char *field, const char *fmt, ...)
{
    va_list ap;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

/* A cell that holds a whole integer in decimal; anything else stays a string, so that the
 * validator names the field and the type it wanted. */
static json_t *int_or_string(const char *s, size_t len)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (len > 0 && errno == 0 && end == s + len)
        return json_integer(v);
    return json_stringn(s, len);
}

static json_t *number_or_string(const char *s, size_t len)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (len > 0 && errno == 0 && end == s + len)
        return json_real(v);
    return json_stringn(s, len);
}

/* The CSV row as the JSON object an NDJSON line would hold. Empty cells are left out (null,
 * or the schema's default). Returns NULL with err filled. */
static json_t *csv_row_to_json(keng_input_t *in, const char *s, size_t len, keng_field_error_t *err)
{
    char why[160];
    json_t *obj = NULL, *loc = NULL;
    int n = keng_csv_split(in->csv, s, len, why, sizeof(why));

    if (n < 0) {
        set_err(err, "", "%s", why);
        return NULL;
    }
    if ((size_t)n != in->ncols) {
        set_err(err, "", "the row has %d fields but the header has %zu", n, in->ncols);
        return NULL;
    }
    obj = json_object();
    if (!obj)
        goto nomem;
    for (size_t i = 0; i < in->ncols; i++) {
        const struct col_def *def = in->cols[i];
        size_t flen = 0;
        const char *f = keng_csv_field(in->csv, i, &flen);
        json_t *v = NULL;

        if (keng_csv_field_is_null(in->csv, i))
            continue;
        switch (def->type) {
        case COL_INT:
            v = int_or_string(f, flen);
            break;
        case COL_TIME: /* epoch milliseconds or RFC 3339 */
            v = int_or_string(f, flen);
            break;
        case COL_LAT:
        case COL_LON:
            if (!loc && !(loc = json_object()))
                goto nomem;
            if (json_object_set_new(loc, def->type == COL_LAT ? "lat" : "lon",
                                    number_or_string(f, flen)) < 0)
                goto nomem;
            continue;
        case COL_STRING:
        case COL_KIND:
            v = json_stringn(f, flen);
            break;
        }
        if (!v) {
            set_err(err, def->name, "not valid UTF-8");
            goto fail;
        }
        if (json_object_set_new(obj, def->name, v) < 0)
            goto nomem;
    }
    if (loc) {
        if (json_object_size(loc) != 2) {
            set_err(err, "location", "give both lat and lon, or leave both empty");
            goto fail;
        }
        json_object_set_new(obj, "location", loc);
        loc = NULL;
    }
    return obj;

nomem:
    set_err(err, "", "out of memory");
fail:
    json_decref(loc);
    json_decref(obj);
    return NULL;
}

static json_t *ndjson_to_json(const char *s, size_t len, keng_field_error_t *err)
{
    json_error_t jerr;
    json_t *obj = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!obj) {
        set_err(err, "", "not valid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    if (!json_is_object(obj)) {
        set_err(err, "", "expected a JSON object");
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Decides the record's kind and takes "kind" out of obj, which the schemas do not have. */
static int resolve_kind(keng_input_t *in, json_t *obj, keng_kind_t *kind, keng_field_error_t *err)
{
    json_t *k = json_object_get(obj, "kind");

    if (!k) {
        if (in->kind == KENG_INPUT_KIND_AUTO) {
            set_err(err, "kind",
                    "missing: with --kind auto every record names its kind "
                    "(\"incident\" or \"mediation\")");
            return -1;
        }
        *kind = (keng_kind_t)in->kind;
        return 0;
    }
    if (!json_is_string(k) || keng_kind_parse(json_string_value(k), kind) < 0) {
        set_err(err, "kind", "must be \"incident\" or \"mediation\"");
        return -1;
    }
    if (in->kind != KENG_INPUT_KIND_AUTO && (int)*kind != in->kind) {
        set_err(err, "kind", "the record is a %s but the import is of %s events",
                keng_kind_name(*kind), keng_kind_name((keng_kind_t)in->kind));
        return -1;
    }
    json_object_del(obj, "kind");
    return 0;
}

/* In --kind auto CSV, a row fills only its own kind's columns. */
static int check_foreign_columns(keng_input_t *in, keng_kind_t kind, keng_field_error_t *err)
{
    for (size_t i = 0; i < in->ncols; i++) {
        if (in->cols[i]->kinds & (1u << kind))
            continue;
        if (!keng_csv_field_is_null(in->csv, i)) {
            set_err(err, in->cols[i]->name, "not a field of %s events; leave it empty",
                    keng_kind_name(kind));
            return -1;
        }
    }
    return 0;
}

int keng_input_parse(keng_input_t *in, const char *s, size_t len, int64_t now_ms, keng_event_t *ev,
                     keng_field_error_t *err)
{
    json_t *obj = NULL;
    keng_kind_t kind;
    keng_event_limits_t limits = {.now_ms = now_ms, .fill_reported_at = true, .rule = in->rule};

    if (in->current) {
        json_decref(in->current);
        in->current = NULL;
    }
    if (in->format == KENG_INPUT_CSV) {
        if (!in->cols) {
            set_err(err, "", "no header line before the first row");
            return -1;
        }
        obj = csv_row_to_json(in, s, len, err);
    } else {
        obj = ndjson_to_json(s, len, err);
    }
    if (!obj)
        return -1;
    in->current = obj;

    if (resolve_kind(in, obj, &kind, err) < 0)
        return -1;
    if (in->format == KENG_INPUT_CSV && check_foreign_columns(in, kind, err) < 0)
        return -1;
    memset(ev, 0, sizeof(*ev));
    if (keng_event_from_json(obj, kind, &limits, ev, err) < 0)
        return -1;
    if (in->reg && keng_registry_find_board(in->reg, ev->board_id, strlen(ev->board_id)) < 0) {
        set_err(err, "board_id", "unknown board '%s' (not in the registry)", ev->board_id);
        return -1;
    }
    return 0;
}
