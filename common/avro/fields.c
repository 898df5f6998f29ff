/* The fields keng reads and writes, and the check that a schema gives each the shape keng
 * expects; it never reads or writes a datum. */
#include "fields.h"

#include <string.h>

#include "event.h"
#include "internal.h"

const field_spec_t keng_avro__fields[F_COUNT] = {
    [F_EVENT_ID] = {"event_id", SH_STRING, K_INC | K_MED, false, NULL, 0, -1},
    [F_BOARD_ID] = {"board_id", SH_STRING, K_INC | K_MED, false, NULL, 0, -1},
    [F_GROUP_ID] = {"group_id", SH_OPT_STRING, K_INC | K_MED, true, NULL, 0, -1},
    [F_OCCURRED_AT] = {"occurred_at", SH_LONG, K_INC | K_MED, false, NULL, 0, -1},
    [F_REPORTED_AT] = {"reported_at", SH_LONG, K_INC | K_MED, false, NULL, 0, -1},
    [F_CATEGORY] = {"category", SH_ENUM, K_INC, true, keng_category_names, KENG_CAT_COUNT,
                    KENG_CAT_OTHER},
    [F_SEVERITY] = {"severity", SH_ENUM, K_INC, false, keng_severity_names, KENG_SEV_COUNT, -1},
    [F_RESOLUTION] = {"resolution", SH_ENUM, K_INC, false, keng_resolution_names, KENG_RES_COUNT,
                      -1},
    [F_PEOPLE] = {"people_involved", SH_INT, K_INC, false, NULL, 0, -1},
    [F_SOURCE] = {"source", SH_ENUM, K_INC, false, keng_source_names, KENG_SRC_COUNT, -1},
    [F_LOCATION] = {"location", SH_OPT_GEO, K_INC, true, NULL, 0, -1},
    [F_DISPUTE] = {"dispute_type", SH_ENUM, K_MED, true, keng_dispute_names, KENG_DISPUTE_COUNT,
                   KENG_DISPUTE_OTHER},
    [F_OUTCOME] = {"outcome", SH_ENUM, K_MED, false, keng_outcome_names, KENG_OUTCOME_COUNT, -1},
    [F_PARTIES] = {"parties", SH_INT, K_MED, false, NULL, 0, -1},
    [F_RELATED] = {"related_incident_id", SH_OPT_STRING, K_MED, true, NULL, 0, -1},
    [F_SUMMARY] = {"summary", SH_OPT_STRING, K_INC | K_MED, true, NULL, 0, -1},
    [F_POLICE_CASE] = {"police_case_id", SH_OPT_STRING, K_INC, true, NULL, 0, -1},
};

avro_schema_t keng_avro__resolve_link(avro_schema_t s)
{
    while (s != NULL && is_avro_link(s))
        s = avro_schema_link_target(s);
    return s;
}

int keng_avro__check_shape(avro_schema_t s, const field_spec_t *f, shape_info_t *info, char *errstr,
                           size_t errstr_size)
{
    s = keng_avro__resolve_link(s);
    memset(info, 0, sizeof(*info));
    switch (f->shape) {
    case SH_STRING:
        if (is_avro_string(s))
            return 0;
        break;
    case SH_LONG:
        if (is_avro_int64(s))
            return 0;
        break;
    case SH_INT:
        if (is_avro_int32(s))
            return 0;
        break;
    case SH_ENUM:
        if (is_avro_enum(s))
            return 0;
        break;
    case SH_OPT_STRING:
    case SH_OPT_GEO:
        if (!is_avro_union(s) || avro_schema_union_size(s) != 2)
            break;
        info->null_branch = info->value_branch = -1;
        for (int i = 0; i < 2; i++) {
            avro_schema_t b = keng_avro__resolve_link(avro_schema_union_branch(s, i));
            if (is_avro_null(b)) {
                info->null_branch = i;
            } else if (f->shape == SH_OPT_STRING && is_avro_string(b)) {
                info->value_branch = i;
            } else if (f->shape == SH_OPT_GEO && is_avro_record(b)) {
                info->lat = avro_schema_record_field_get_index(b, "lat");
                info->lon = avro_schema_record_field_get_index(b, "lon");
                if (info->lat < 0 || info->lon < 0 ||
                    !is_avro_double(keng_avro__resolve_link(
                        avro_schema_record_field_get_by_index(b, info->lat))) ||
                    !is_avro_double(keng_avro__resolve_link(
                        avro_schema_record_field_get_by_index(b, info->lon))))
                    break;
                info->value_branch = i;
            }
        }
        if (info->null_branch >= 0 && info->value_branch >= 0)
            return 0;
        break;
    }
    static const char *const expected[] = {
        [SH_STRING] = "a string",
        [SH_OPT_STRING] = "a union of null and string",
        [SH_LONG] = "a long",
        [SH_INT] = "an int",
        [SH_ENUM] = "an enum",
        [SH_OPT_GEO] = "a union of null and a record of double lat and lon"};
    keng_avro__set_err(errstr, errstr_size, "field %s must be %s", f->name, expected[f->shape]);
    return -1;
}

int keng_avro__kind_of_subject(const char *subject)
{
    if (strcmp(subject, SUBJECT_INCIDENT) == 0)
        return KENG_KIND_INCIDENT;
    if (strcmp(subject, SUBJECT_MEDIATION) == 0)
        return KENG_KIND_MEDIATION;
    return -1;
}
