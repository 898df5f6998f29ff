/* One alert transition as it travels on antt.alerts (schema vn.antt.Alert, id 3): the record
 * that keng-aggregate's rule engine produces and that the alert topic's readers decode. Plain
 * data that never encodes itself: its Avro encoding is in common/avro/alert.c, behind
 * avro_codec.h. */
#ifndef KENG_ALERT_H
#define KENG_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KENG_ALERT_SAMPLES_MAX 5

typedef enum {
    KENG_ALERT_FIRING = 0,
    KENG_ALERT_RESOLVED = 1,
    KENG_ALERT_STATUS_COUNT
} keng_alert_status_t;

/* The symbols of the schema's ScopeLevel enum, in its order. */
typedef enum {
    KENG_ALERT_LEVEL_BOARD = 0,
    KENG_ALERT_LEVEL_COMMUNE = 1,
    KENG_ALERT_LEVEL_DISTRICT = 2,
    KENG_ALERT_LEVEL_PROVINCE = 3,
    KENG_ALERT_LEVEL_COUNT
} keng_alert_level_t;

extern const char *const keng_alert_status_names[KENG_ALERT_STATUS_COUNT]; /* "FIRING" ... */
extern const char *const keng_alert_level_names[KENG_ALERT_LEVEL_COUNT];   /* "BOARD" ... */

/* Every string is borrowed from whoever filled the struct and must be NUL-terminated. */
typedef struct keng_alert {
    const char *alert_id;    /* fingerprint "-" starts_at: stable across restarts */
    const char *fingerprint; /* hex hash of rule, level and scope id */
    const char *rule;
    keng_alert_status_t status;
    keng_alert_level_t level;
    const char *scope_id;
    const char *window; /* "24h" */
    int64_t count;
    int64_t threshold;
    int64_t starts_at; /* ms since the epoch, UTC */
    bool has_ends_at;  /* RESOLVED transitions have one */
    int64_t ends_at;
    const char *summary; /* Vietnamese text */
    size_t nsamples;
    const char *sample_event_ids[KENG_ALERT_SAMPLES_MAX];
} keng_alert_t;

#endif
