/* The fields keng reads and writes and the shape each must have in a writer or reader
 * schema, shared by the encoder, the decoder and the plan; nothing here touches a datum. */
#ifndef KENG_AVRO_FIELDS_H
#define KENG_AVRO_FIELDS_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>

#include "event.h"

#define SUBJECT_INCIDENT  "vn.antt.Incident"
#define SUBJECT_MEDIATION "vn.antt.Mediation"

enum shape { SH_STRING, SH_OPT_STRING, SH_LONG, SH_INT, SH_ENUM, SH_OPT_GEO };

enum {
    F_EVENT_ID,
    F_BOARD_ID,
    F_GROUP_ID,
    F_OCCURRED_AT,
    F_REPORTED_AT,
    F_CATEGORY,
    F_SEVERITY,
    F_RESOLUTION,
    F_PEOPLE,
    F_SOURCE,
    F_LOCATION,
    F_DISPUTE,
    F_OUTCOME,
    F_PARTIES,
    F_RELATED,
    F_SUMMARY,
    F_POLICE_CASE,
    F_COUNT
};

#define K_INC (1u << KENG_KIND_INCIDENT)
#define K_MED (1u << KENG_KIND_MEDIATION)

typedef struct field_spec {
    const char *name;
    enum shape shape;
    unsigned kinds;
    bool has_default; /* the schema gives a default, so a writer may lack the field */
    const char *const *symbols;
    int nsymbols;
    int enum_default; /* -1: none */
} field_spec_t;

/* The spec of every field, indexed by F_*. */
extern const field_spec_t keng_avro__fields[F_COUNT];

/* Where the parts of a field sit inside its schema. */
typedef struct shape_info {
    int null_branch, value_branch; /* unions */
    int lat, lon;                  /* GeoPoint fields */
} shape_info_t;

/* s with every named-type link followed to the type it names. */
avro_schema_t keng_avro__resolve_link(avro_schema_t s);

/* Checks that schema s has field f's shape and fills info with where its parts sit. Returns 0,
 * or -1 with errstr (may be NULL) naming the field and the shape it must have. */
int keng_avro__check_shape(avro_schema_t s, const field_spec_t *f, shape_info_t *info, char *errstr,
                           size_t errstr_size);

/* The keng_kind_t of a subject keng counts, or -1 for any other record (Alert). */
int keng_avro__kind_of_subject(const char *subject);

#endif
