/* keng's event model: the symbol tables that mirror the Avro enums, and the one place where
 * JSON from outside (HTTP bodies, NDJSON files) is checked field by field before it becomes a
 * keng_event_t; it never knows Avro, and never reads a socket or a file. */
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "event_rule.h"
#include "timeutil.h"

const char *const keng_category_names[KENG_CAT_COUNT] = {
    "THEFT",   "ASSAULT",           "PUBLIC_DISORDER",
    "DRUGS",   "GAMBLING",          "DOMESTIC_VIOLENCE",
    "TRAFFIC", "HUMAN_TRAFFICKING", "ILLEGAL_MIGRATION",
    "FRAUD",   "PROPERTY_DAMAGE",   "OTHER"};
const char *const keng_severity_names[KENG_SEV_COUNT] = {"LOW", "MEDIUM", "HIGH", "CRITICAL"};
const char *const keng_resolution_names[KENG_RES_COUNT] = {"PENDING", "HANDLED_LOCALLY",
                                                           "TRANSFERRED_TO_POLICE"};
const char *const keng_source_names[KENG_SRC_COUNT] = {"MOBILE_APP", "SMS",    "HOTLINE",
                                                       "PATROL",     "CAMERA", "OTHER"};
const char *const keng_dispute_names[KENG_DISPUTE_COUNT] = {"LAND", "FAMILY",      "NEIGHBOR",
                                                            "DEBT", "INHERITANCE", "OTHER"};
const char *const keng_outcome_names[KENG_OUTCOME_COUNT] = {"RECONCILED", "NOT_RECONCILED",
                                                            "REFERRED"};

#define COUNT_MAX 100000

const char *keng_kind_name(keng_kind_t kind)
{
    switch (kind) {
    case KENG_KIND_INCIDENT:
        return "incident";
    case KENG_KIND_MEDIATION:
        return "mediation";
    default:
        return "unknown";
    }
}

int keng_kind_parse(const char *name, keng_kind_t *out)
{
    if (name == NULL)
        return -1;
    if (strcmp(name, "incident") == 0) {
        *out = KENG_KIND_INCIDENT;
        return 0;
    }
    if (strcmp(name, "mediation") == 0) {
        *out = KENG_KIND_MEDIATION;
        return 0;
    }
    return -1;
}

int keng_symbol_find(const char *const *names, int count, const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

/* The characters of an event_id, as a table: the consumer checks every decoded id, and one
 * load per byte is several times cheaper than the chain of range tests. */
static const unsigned char event_id_chars[256] = {
    ['-'] = 1, ['.'] = 1, [':'] = 1, ['_'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1,
    ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

bool keng_event_id_valid(const char *id, size_t len)
{
    unsigned bad = 0;

    if (id == NULL || len == 0 || len > KENG_EVENT_ID_MAX)
        return false;
    /* No early exit: valid ids are the common case, and a branch-free loop suits them. */
    for (size_t i = 0; i < len; i++)
        bad |= event_id_chars[(unsigned char)id[i]] ^ 1u;
    return bad == 0;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). NUL bytes are
 * rejected too: keng's strings end up in C strings and Avro-C's NUL-terminated values. */
bool keng_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        unsigned char c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) < n)
            return false;
        for (size_t i = 1; i < n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n;
    }
    return true;
}

bool keng_police_case_id_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    if (s == NULL || len == 0 || len > KENG_POLICE_CASE_MAX || !keng_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return false;
        /* U+0080..U+009F are encoded C2 80..C2 9F. */
        if (p[i] == 0xC2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
            return false;
    }
    return true;
}

static int fail(keng_field_error_t *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(keng_field_error_t *err, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* A user's value echoed in a message, cut on a UTF-8 boundary so the message stays short
 * and valid. */
static void quote_value(const char *s, size_t len, char *buf, size_t size)
{
    size_t n = len < size - 1 ? len : size - 1;

    if (n < len) {
        n = n >= 3 ? n - 3 : 0;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        memcpy(buf, s, n);
        memcpy(buf + n, "...", 4);
        return;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
}

static int fail_enum(keng_field_error_t *err, const char *field, const char *what,
                     const char *value, size_t len, const char *const *names, int count)
{
    char shown[24];
    size_t used;

    if (err == NULL)
        return -1;
    quote_value(value, len, shown, sizeof(shown));
    snprintf(err->field, sizeof(err->field), "%s", field);
    used = (size_t)snprintf(err->message, sizeof(err->message), "unknown %s '%s'; expected one of ",
                            what, shown);
    /* As many symbols as fit, then ", ..." so the sentence never ends mid-word. */
    for (int i = 0; i < count && used < sizeof(err->message); i++) {
        size_t need = strlen(names[i]) + (i > 0 ? 2 : 0);
        size_t reserve = i + 1 < count ? 5 : 0;
        if (used + need + reserve >= sizeof(err->message)) {
            snprintf(err->message + used, sizeof(err->message) - used, ", ...");
            break;
        }
        used += (size_t)snprintf(err->message + used, sizeof(err->message) - used, "%s%s",
                                 i > 0 ? ", " : "", names[i]);
    }
    return -1;
}

/* A string field: required or nullable, bounded in bytes, valid UTF-8. Sets *out and *len to
 * NULL/0 for an absent or null nullable field. */
static int get_string(const json_t *obj, const char *field, bool nullable, size_t max,
                      const char **out, size_t *len, keng_field_error_t *err)
{
    const json_t *v = json_object_get(obj, field);

    *out = NULL;
    *len = 0;
    if (v == NULL || json_is_null(v)) {
        if (nullable)
            return 0;
        return fail(err, field, "%s is required", field);
    }
    if (!json_is_string(v))
        return fail(err, field, "%s must be a string%s", field, nullable ? " or null" : "");
    *out = json_string_value(v);
    *len = json_string_length(v);
    if (!keng_utf8_valid(*out, *len))
        return fail(err, field, "%s must be valid UTF-8 text without NUL characters", field);
    if (*len > max)
        return fail(err, field, "%s is %zu bytes long; at most %zu are allowed", field, *len, max);
    return 0;
}

static int get_id(const json_t *obj, const char *field, bool nullable, size_t max, char *dst,
                  bool *present, keng_field_error_t *err)
{
    const char *s;
    size_t len;

    if (get_string(obj, field, nullable, max, &s, &len, err) < 0)
        return -1;
    if (present != NULL)
        *present = s != NULL;
    if (s == NULL)
        return 0;
    if (len == 0)
        return fail(err, field, "%s must not be empty", field);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(err, field, "%s must not contain control characters", field);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

static int get_event_id(const json_t *obj, const char *field, bool nullable, char *dst,
                        bool *present, keng_field_error_t *err)
{
    if (get_id(obj, field, nullable, KENG_EVENT_ID_MAX, dst, present, err) < 0)
        return -1;
    if ((present == NULL || *present) && !keng_event_id_valid(dst, strlen(dst)))
        return fail(err, field,
                    "%s must be 1 to %d characters of letters, digits and . _ : - (a UUID fits)",
                    field, KENG_EVENT_ID_MAX);
    return 0;
}

/* Only the form: the bounds are the rule's (event_rule.c), once both times are known. */
static int get_time(const json_t *obj, const char *field, bool *present, int64_t *out,
                    keng_field_error_t *err)
{
    const json_t *v = json_object_get(obj, field);
    char shown[40];

    *present = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (keng_time_parse_rfc3339(s, len, out) < 0) {
            quote_value(s, len, shown, sizeof(shown));
            return fail(err, field,
                        "%s '%s' is not an RFC 3339 time with an offset, such as "
                        "2025-03-01T21:15:00+07:00",
                        field, shown);
        }
    } else {
        return fail(err, field, "%s must be an RFC 3339 time with an offset or epoch milliseconds",
                    field);
    }
    *present = true;
    return 0;
}

/* An enum field; when the schema gives it a default, absence means the default. */
static int get_enum(const json_t *obj, const char *field, const char *what,
                    const char *const *names, int count, int deflt, int *out,
                    keng_field_error_t *err)
{
    const json_t *v = json_object_get(obj, field);

    if (v == NULL && deflt >= 0) {
        *out = deflt;
        return 0;
    }
    if (v == NULL || json_is_null(v))
        return fail(err, field, "%s is required", field);
    if (!json_is_string(v))
        return fail(err, field, "%s must be a string such as \"%s\"", field, names[0]);
    *out = keng_symbol_find(names, count, json_string_value(v));
    if (*out < 0)
        return fail_enum(err, field, what, json_string_value(v), json_string_length(v), names,
                         count);
    return 0;
}

static int get_count(const json_t *obj, const char *field, int32_t *out, keng_field_error_t *err)
{
    const json_t *v = json_object_get(obj, field);

    if (v == NULL || json_is_null(v))
        return fail(err, field, "%s is required", field);
    if (!json_is_integer(v))
        return fail(err, field, "%s must be an integer", field);
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > COUNT_MAX)
        return fail(err, field, "%s is %lld; it must be between 0 and %d", field, (long long)n,
                    COUNT_MAX);
    *out = (int32_t)n;
    return 0;
}

static int get_coord(const json_t *loc, const char *field, double limit, double *out,
                     keng_field_error_t *err)
{
    const json_t *v = json_object_get(loc, field + strlen("location."));

    if (v == NULL || json_is_null(v))
        return fail(err, field, "%s is required when location is given", field);
    if (!json_is_number(v))
        return fail(err, field, "%s must be a number", field);
    *out = json_number_value(v);
    if (!(*out >= -limit && *out <= limit))
        return fail(err, field, "%s is %g; it must be between %g and %g", field, *out, -limit,
                    limit);
    return 0;
}

static int get_location(const json_t *obj, keng_event_t *out, keng_field_error_t *err)
{
    const json_t *loc = json_object_get(obj, "location");
    const char *key;
    const json_t *v;

    out->has_location = false;
    if (loc == NULL || json_is_null(loc))
        return 0;
    if (!json_is_object(loc))
        return fail(err, "location",
                    "location must be an object {\"lat\": ..., \"lon\": ...} or null");
    json_object_foreach((json_t *)loc, key, v)
    {
        if (strcmp(key, "lat") != 0 && strcmp(key, "lon") != 0) {
            char shown[24];
            quote_value(key, strlen(key), shown, sizeof(shown));
            return fail(err, "location", "unknown field 'location.%s'; expected lat and lon",
                        shown);
        }
    }
    if (get_coord(loc, "location.lat", 90.0, &out->lat, err) < 0 ||
        get_coord(loc, "location.lon", 180.0, &out->lon, err) < 0)
        return -1;
    out->has_location = true;
    return 0;
}

/* Optional, and accepted with any resolution (see event.h); only its form is checked. */
static int get_police_case_id(const json_t *obj, keng_event_t *out, keng_field_error_t *err)
{
    const char *s;
    size_t len;

    if (get_string(obj, "police_case_id", true, KENG_POLICE_CASE_MAX, &s, &len, err) < 0)
        return -1;
    if (s == NULL)
        return 0;
    if (!keng_police_case_id_valid(s, len))
        return fail(err, "police_case_id",
                    "police_case_id must be 1 to %d bytes of text without control characters",
                    KENG_POLICE_CASE_MAX);
    memcpy(out->police_case_id, s, len);
    out->police_case_id[len] = '\0';
    out->has_police_case_id = true;
    return 0;
}

/* Both times, then the rule for them (event_rule.c). */
static int get_times(const json_t *obj, const keng_event_limits_t *limits, keng_event_t *out,
                     keng_field_error_t *err)
{
    bool present;

    if (get_time(obj, "occurred_at", &present, &out->occurred_at, err) < 0)
        return -1;
    if (!present)
        return fail(err, "occurred_at", "occurred_at is required");
    if (get_time(obj, "reported_at", &present, &out->reported_at, err) < 0)
        return -1;
    if (!present) {
        if (!limits->fill_reported_at)
            return fail(err, "reported_at", "reported_at is required");
        /* Received now; but a device clock a little ahead (within the rule's bound) puts
         * occurred_at later, and nothing is received before it happens. */
        out->reported_at = out->occurred_at > limits->now_ms ? out->occurred_at : limits->now_ms;
    }
    if (keng_event_check_times(limits->rule, out, limits->now_ms, err) != KENG_TIMES_OK)
        return -1;
    return 0;
}

static const char *const incident_fields[] = {
    "event_id",       "board_id",   "group_id",        "occurred_at", "reported_at", "category",
    "severity",       "resolution", "people_involved", "source",      "location",    "summary",
    "police_case_id", NULL};
static const char *const mediation_fields[] = {"event_id",    "board_id",    "group_id",
                                               "occurred_at", "reported_at", "dispute_type",
                                               "outcome",     "parties",     "related_incident_id",
                                               "summary",     NULL};

static bool known_field(const char *const *fields, const char *key)
{
    for (; *fields != NULL; fields++)
        if (strcmp(*fields, key) == 0)
            return true;
    return false;
}

int keng_event_from_json(const json_t *obj, keng_kind_t kind, const keng_event_limits_t *limits,
                         keng_event_t *out, keng_field_error_t *err)
{
    keng_event_limits_t now_limits;
    const char *const *fields;
    const char *key;
    const json_t *v;
    int e;

    memset(out, 0, sizeof(*out));
    if (err != NULL)
        memset(err, 0, sizeof(*err));
    if (kind != KENG_KIND_INCIDENT && kind != KENG_KIND_MEDIATION)
        return fail(err, "", "unknown event kind %d", (int)kind);
    if (limits == NULL) {
        now_limits.now_ms = keng_now_ms();
        now_limits.fill_reported_at = false;
        now_limits.rule = NULL;
        limits = &now_limits;
    }
    if (!json_is_object(obj))
        return fail(err, "", "an %s must be a JSON object", keng_kind_name(kind));
    out->kind = kind;
    fields = kind == KENG_KIND_INCIDENT ? incident_fields : mediation_fields;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (!known_field(fields, key)) {
            char shown[32];
            quote_value(key, strlen(key), shown, sizeof(shown));
            return fail(err, shown, "unknown field '%s' for %s %s", shown,
                        kind == KENG_KIND_INCIDENT ? "an" : "a", keng_kind_name(kind));
        }
    }

    if (get_event_id(obj, "event_id", false, out->event_id, NULL, err) < 0 ||
        get_id(obj, "board_id", false, KENG_BOARD_ID_MAX, out->board_id, NULL, err) < 0 ||
        get_id(obj, "group_id", true, KENG_GROUP_ID_MAX, out->group_id, &out->has_group, err) < 0)
        return -1;

    if (get_times(obj, limits, out, err) < 0)
        return -1;

    if (kind == KENG_KIND_INCIDENT) {
        if (get_enum(obj, "category", "category", keng_category_names, KENG_CAT_COUNT,
                     KENG_CAT_OTHER, &e, err) < 0)
            return -1;
        out->category = (keng_category_t)e;
        if (get_enum(obj, "severity", "severity", keng_severity_names, KENG_SEV_COUNT, -1, &e,
                     err) < 0)
            return -1;
        out->severity = (keng_severity_t)e;
        if (get_enum(obj, "resolution", "resolution", keng_resolution_names, KENG_RES_COUNT, -1, &e,
                     err) < 0)
            return -1;
        out->resolution = (keng_resolution_t)e;
        if (get_count(obj, "people_involved", &out->people_involved, err) < 0)
            return -1;
        if (get_enum(obj, "source", "source", keng_source_names, KENG_SRC_COUNT, -1, &e, err) < 0)
            return -1;
        out->source = (keng_source_t)e;
        if (get_location(obj, out, err) < 0)
            return -1;
        if (get_police_case_id(obj, out, err) < 0)
            return -1;
    } else {
        if (get_enum(obj, "dispute_type", "dispute_type", keng_dispute_names, KENG_DISPUTE_COUNT,
                     KENG_DISPUTE_OTHER, &e, err) < 0)
            return -1;
        out->dispute_type = (keng_dispute_t)e;
        if (get_enum(obj, "outcome", "outcome", keng_outcome_names, KENG_OUTCOME_COUNT, -1, &e,
                     err) < 0)
            return -1;
        out->outcome = (keng_outcome_t)e;
        if (get_count(obj, "parties", &out->parties, err) < 0)
            return -1;
        if (get_event_id(obj, "related_incident_id", true, out->related_incident_id,
                         &out->has_related_incident, err) < 0)
            return -1;
    }

    if (get_string(obj, "summary", true, KENG_SUMMARY_MAX, &out->summary, &out->summary_len, err) <
        0)
        return -1;
    return 0;
}

static int set(json_t *obj, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

static json_t *opt_string(bool present, const char *s)
{
    return present ? json_string(s) : json_null();
}

json_t *keng_event_to_json(const keng_event_t *ev)
{
    json_t *obj = json_object();
    char occurred[32], reported[32];
    int rc = 0;

    if (obj == NULL)
        return NULL;
    rc |= set(obj, "event_id", json_string(ev->event_id));
    rc |= set(obj, "board_id", json_string(ev->board_id));
    rc |= set(obj, "group_id", opt_string(ev->has_group, ev->group_id));
    rc |= set(obj, "occurred_at",
              json_string(keng_time_format_utc(ev->occurred_at, occurred, sizeof(occurred))));
    rc |= set(obj, "reported_at",
              json_string(keng_time_format_utc(ev->reported_at, reported, sizeof(reported))));
    if (ev->kind == KENG_KIND_INCIDENT) {
        rc |= set(obj, "category",
                  json_string((unsigned)ev->category < KENG_CAT_COUNT
                                  ? keng_category_names[ev->category]
                                  : "OTHER"));
        rc |= set(obj, "severity",
                  (unsigned)ev->severity < KENG_SEV_COUNT
                      ? json_string(keng_severity_names[ev->severity])
                      : NULL);
        rc |= set(obj, "resolution",
                  (unsigned)ev->resolution < KENG_RES_COUNT
                      ? json_string(keng_resolution_names[ev->resolution])
                      : NULL);
        rc |= set(obj, "people_involved", json_integer(ev->people_involved));
        rc |= set(obj, "source",
                  (unsigned)ev->source < KENG_SRC_COUNT ? json_string(keng_source_names[ev->source])
                                                        : NULL);
        if (ev->has_location)
            rc |= set(obj, "location", json_pack("{s:f,s:f}", "lat", ev->lat, "lon", ev->lon));
        else
            rc |= set(obj, "location", json_null());
        if (ev->has_police_case_id)
            rc |= set(obj, "police_case_id", json_string(ev->police_case_id));
    } else {
        rc |= set(obj, "dispute_type",
                  json_string((unsigned)ev->dispute_type < KENG_DISPUTE_COUNT
                                  ? keng_dispute_names[ev->dispute_type]
                                  : "OTHER"));
        rc |= set(obj, "outcome",
                  (unsigned)ev->outcome < KENG_OUTCOME_COUNT
                      ? json_string(keng_outcome_names[ev->outcome])
                      : NULL);
        rc |= set(obj, "parties", json_integer(ev->parties));
        rc |= set(obj, "related_incident_id",
                  opt_string(ev->has_related_incident, ev->related_incident_id));
    }
    /* json_stringn refuses invalid UTF-8; decoded summaries were checked already. */
    rc |= set(obj, "summary",
              ev->summary != NULL ? json_stringn(ev->summary, ev->summary_len) : json_null());
    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}
