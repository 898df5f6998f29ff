/* The incident and mediation events that flow through keng, as plain C structs, and their JSON
 * form at the edges (HTTP bodies, NDJSON files, API answers); nothing here knows Avro or Kafka. */
#ifndef KENG_EVENT_H
#define KENG_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define KENG_EVENT_ID_MAX 64 /* bytes, without the NUL */
#define KENG_BOARD_ID_MAX 31
#define KENG_GROUP_ID_MAX 39
#define KENG_SUMMARY_MAX  4096
/* Incident schema v2: the commune police's case number, bytes without the NUL. */
#define KENG_POLICE_CASE_MAX 40

/* The defaults of the times' rule (event_rule.h, events.min_occurred_at and
 * events.max_future_ms): the earliest occurred_at keng accepts (2000-01-01T00:00:00Z) and how
 * far in the future an event may claim to be, to tolerate gateway clocks that run a little
 * fast. */
#define KENG_EARLIEST_MS    946684800000LL
#define KENG_FUTURE_SKEW_MS (5 * 60 * 1000LL)

typedef enum { KENG_KIND_INCIDENT = 0, KENG_KIND_MEDIATION = 1, KENG_KIND_COUNT } keng_kind_t;

/* Enum values mirror the symbol order of the Avro schemas in schemas/. */
typedef enum {
    KENG_CAT_THEFT,
    KENG_CAT_ASSAULT,
    KENG_CAT_PUBLIC_DISORDER,
    KENG_CAT_DRUGS,
    KENG_CAT_GAMBLING,
    KENG_CAT_DOMESTIC_VIOLENCE,
    KENG_CAT_TRAFFIC,
    KENG_CAT_HUMAN_TRAFFICKING,
    KENG_CAT_ILLEGAL_MIGRATION,
    KENG_CAT_FRAUD,
    KENG_CAT_PROPERTY_DAMAGE,
    KENG_CAT_OTHER,
    KENG_CAT_COUNT
} keng_category_t;

typedef enum {
    KENG_SEV_LOW,
    KENG_SEV_MEDIUM,
    KENG_SEV_HIGH,
    KENG_SEV_CRITICAL,
    KENG_SEV_COUNT
} keng_severity_t;

typedef enum {
    KENG_RES_PENDING,
    KENG_RES_HANDLED_LOCALLY,
    KENG_RES_TRANSFERRED_TO_POLICE,
    KENG_RES_COUNT
} keng_resolution_t;

typedef enum {
    KENG_SRC_MOBILE_APP,
    KENG_SRC_SMS,
    KENG_SRC_HOTLINE,
    KENG_SRC_PATROL,
    KENG_SRC_CAMERA,
    KENG_SRC_OTHER,
    KENG_SRC_COUNT
} keng_source_t;

typedef enum {
    KENG_DISPUTE_LAND,
    KENG_DISPUTE_FAMILY,
    KENG_DISPUTE_NEIGHBOR,
    KENG_DISPUTE_DEBT,
    KENG_DISPUTE_INHERITANCE,
    KENG_DISPUTE_OTHER,
    KENG_DISPUTE_COUNT
} keng_dispute_t;

typedef enum {
    KENG_OUTCOME_RECONCILED,
    KENG_OUTCOME_NOT_RECONCILED,
    KENG_OUTCOME_REFERRED,
    KENG_OUTCOME_COUNT
} keng_outcome_t;

/* One event. Ids are copied into fixed buffers (their lengths are bounded by validation);
 * summary is borrowed from whatever the event was read from (a jansson value or the Avro
 * decoder's buffer) and stays valid only as long as that source. */
typedef struct keng_event {
    keng_kind_t kind;
    char event_id[KENG_EVENT_ID_MAX + 1];
    char board_id[KENG_BOARD_ID_MAX + 1];
    bool has_group;
    char group_id[KENG_GROUP_ID_MAX + 1];
    int64_t occurred_at; /* ms since the epoch, UTC */
    int64_t reported_at;
    const char *summary; /* NULL when absent; not NUL-terminated, see summary_len */
    size_t summary_len;

    /* KENG_KIND_INCIDENT */
    keng_category_t category;
    keng_severity_t severity;
    keng_resolution_t resolution;
    keng_source_t source;
    int32_t people_involved;
    bool has_location;
    double lat, lon;
    /* Incident schema v2 (id 4). Absent in v1 data and when no case number was given. It is
     * meant for TRANSFERRED_TO_POLICE incidents, but accepted with any resolution: the case
     * number can arrive before the board updates the resolution. */
    bool has_police_case_id;
    char police_case_id[KENG_POLICE_CASE_MAX + 1];

    /* KENG_KIND_MEDIATION */
    keng_dispute_t dispute_type;
    keng_outcome_t outcome;
    int32_t parties;
    bool has_related_incident;
    char related_incident_id[KENG_EVENT_ID_MAX + 1];
} keng_event_t;

/* Where one event of a request or file went wrong: the field (a JSON name, "" for the
 * event as a whole) and a sentence a user can act on. */
typedef struct keng_field_error {
    char field[32];
    char message[160];
} keng_field_error_t;

/* "incident", "mediation": static storage. */
const char *keng_kind_name(keng_kind_t kind);
int keng_kind_parse(const char *name, keng_kind_t *out);

/* Symbol tables, indexed by the enum values above; count entries each. */
extern const char *const keng_category_names[KENG_CAT_COUNT];
extern const char *const keng_severity_names[KENG_SEV_COUNT];
extern const char *const keng_resolution_names[KENG_RES_COUNT];
extern const char *const keng_source_names[KENG_SRC_COUNT];
extern const char *const keng_dispute_names[KENG_DISPUTE_COUNT];
extern const char *const keng_outcome_names[KENG_OUTCOME_COUNT];

/* Returns the index of name in names[0..count), or -1. */
int keng_symbol_find(const char *const *names, int count, const char *name);

/* Board ids are checked against the registry by the caller; this checks everything else. */
struct keng_event_rule;
typedef struct keng_event_limits {
    int64_t now_ms;        /* the clock the rule's future bound is taken from */
    bool fill_reported_at; /* missing reported_at becomes now_ms (the gateway's time), or
                            * occurred_at when a fast device clock put that later */
    const struct keng_event_rule *rule; /* the times' rule (event_rule.h), borrowed; NULL:
                                         * the defaults */
} keng_event_limits_t;

/* Fills out from a JSON object of the given kind, with every field checked against the
 * schema: types, enums, required fields, UTF-8 and length bounds, the event_id's form, and
 * the times against limits->rule (keng_event_check_times). The event borrows summary from
 * obj. Returns 0, or -1 with err filled for the first problem found. */
int keng_event_from_json(const json_t *obj, keng_kind_t kind, const keng_event_limits_t *limits,
                         keng_event_t *out, keng_field_error_t *err);

/* A new JSON object with every field of the event, times as RFC 3339 UTC strings;
 * police_case_id only when the event has one, so that keng versions from before Incident v2
 * still accept the output. The caller owns the reference. */
json_t *keng_event_to_json(const keng_event_t *ev);

/* The json_dump* flag for events whose coordinates were typed or rounded to at most 15
 * significant digits (keng-simulate's): they print as typed (18.67891, not jansson's
 * default 18.678909999999998). Tools that must print any double exactly (keng-avro) keep
 * jansson's 17 digits. */
#define KENG_JSON_REAL_PRECISION JSON_REAL_PRECISION(15)

/* A well-formed event_id: 1..KENG_EVENT_ID_MAX characters of [A-Za-z0-9._:-]. UUIDs fit. */
bool keng_event_id_valid(const char *id, size_t len);

/* A well-formed police_case_id: 1..KENG_POLICE_CASE_MAX bytes of UTF-8 text without
 * control characters (C0, DEL or C1). */
bool keng_police_case_id_valid(const char *s, size_t len);

/* Strict UTF-8 (no overlong forms, surrogates or NUL bytes): what keng accepts as text. */
bool keng_utf8_valid(const char *s, size_t len);

#endif
