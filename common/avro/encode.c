/* The encoder: writes keng's events as Confluent-framed Avro with the writer schema of each
 * record (the pinned version, else the newest), through Avro-C's values; it never reads a
 * datum. */
#include "avro_codec.h"

#include <avro.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "internal.h"
#include "store.h"

typedef struct extra_field {
    int index;
    json_t *deflt;
} extra_field_t;

typedef struct enc_kind {
    const schema_entry_t *writer;
    int32_t id; /* the id framed: the writer's, or the registry's (keng_avro_encoder_set_id) */
    avro_value_iface_t *iface;
    avro_value_t value;
    bool has_value;
    int widx[F_COUNT]; /* index in the writer record, -1 when the writer lacks the field */
    shape_info_t info[F_COUNT];
    int enum_map[F_COUNT][16]; /* keng enum value -> writer symbol index, -1 when missing */
    extra_field_t *extra;      /* writer fields keng does not know: written as their default */
    size_t nextra;
} enc_kind_t;

struct keng_avro_encoder {
    enc_kind_t kinds[KENG_KIND_COUNT];
    avro_writer_t writer;
    char summary[KENG_SUMMARY_MAX + 1];
};

/* Bytes and fixed defaults are JSON strings whose code points 0..255 are the bytes. */
static int latin1_bytes(const json_t *d, char *buf, size_t cap, size_t *n)
{
    const unsigned char *s = (const unsigned char *)json_string_value(d);
    size_t len = json_string_length(d);

    *n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned cp = s[i];
        if (cp >= 0x80) {
            if ((cp & 0xE0) != 0xC0 || i + 1 >= len)
                return -1;
            cp = ((cp & 0x1F) << 6) | (s[++i] & 0x3F);
            if (cp > 0xFF)
                return -1;
        }
        if (*n >= cap)
            return -1;
        buf[(*n)++] = (char)cp;
    }
    return 0;
}

/* Sets v to a schema default given as JSON (Avro spec: a union's default is of its first
 * branch). Returns 0 or an errno. */
static int set_from_default(avro_value_t *v, const json_t *d)
{
    avro_value_t child;
    char bytes[4096];
    size_t n;

    switch (avro_value_get_type(v)) {
    case AVRO_NULL:
        return json_is_null(d) ? avro_value_set_null(v) : EINVAL;
    case AVRO_BOOLEAN:
        return json_is_boolean(d) ? avro_value_set_boolean(v, json_is_true(d)) : EINVAL;
    case AVRO_INT32:
        return json_is_integer(d) ? avro_value_set_int(v, (int32_t)json_integer_value(d)) : EINVAL;
    case AVRO_INT64:
        return json_is_integer(d) ? avro_value_set_long(v, json_integer_value(d)) : EINVAL;
    case AVRO_FLOAT:
        return json_is_number(d) ? avro_value_set_float(v, (float)json_number_value(d)) : EINVAL;
    case AVRO_DOUBLE:
        return json_is_number(d) ? avro_value_set_double(v, json_number_value(d)) : EINVAL;
    case AVRO_STRING:
        return json_is_string(d)
                   ? avro_value_set_string_len(v, json_string_value(d), json_string_length(d) + 1)
                   : EINVAL;
    case AVRO_BYTES:
        if (!json_is_string(d) || latin1_bytes(d, bytes, sizeof(bytes), &n) < 0)
            return EINVAL;
        return avro_value_set_bytes(v, bytes, n);
    case AVRO_FIXED:
        if (!json_is_string(d) || latin1_bytes(d, bytes, sizeof(bytes), &n) < 0)
            return EINVAL;
        return avro_value_set_fixed(v, bytes, n);
    case AVRO_ENUM: {
        avro_schema_t s = avro_value_get_schema(v);
        int i = json_is_string(d) ? avro_schema_enum_get_by_name(s, json_string_value(d)) : -1;
        return i >= 0 ? avro_value_set_enum(v, i) : EINVAL;
    }
    case AVRO_UNION: {
        int rc = avro_value_set_branch(v, 0, &child);
        return rc != 0 ? rc : set_from_default(&child, d);
    }
    case AVRO_RECORD: {
        size_t count;
        if (!json_is_object(d) || avro_value_get_size(v, &count) != 0)
            return EINVAL;
        for (size_t i = 0; i < count; i++) {
            const char *name;
            int rc = avro_value_get_by_index(v, i, &child, &name);
            const json_t *fd = rc == 0 ? json_object_get(d, name) : NULL;
            if (fd == NULL || (rc = set_from_default(&child, fd)) != 0)
                return rc != 0 ? rc : EINVAL;
        }
        return 0;
    }
    case AVRO_ARRAY: {
        size_t i;
        const json_t *item;
        if (!json_is_array(d))
            return EINVAL;
        json_array_foreach(d, i, item)
        {
            int rc = avro_value_append(v, &child, NULL);
            if (rc != 0 || (rc = set_from_default(&child, item)) != 0)
                return rc;
        }
        return 0;
    }
    case AVRO_MAP: {
        const char *key;
        const json_t *item;
        if (!json_is_object(d))
            return EINVAL;
        json_object_foreach((json_t *)d, key, item)
        {
            int rc = avro_value_add(v, key, &child, NULL, NULL);
            if (rc != 0 || (rc = set_from_default(&child, item)) != 0)
                return rc;
        }
        return 0;
    }
    default:
        return EINVAL;
    }
}

static void enc_kind_clear(enc_kind_t *k)
{
    for (size_t i = 0; i < k->nextra; i++)
        json_decref(k->extra[i].deflt);
    free(k->extra);
    if (k->has_value)
        avro_value_decref(&k->value);
    if (k->iface != NULL)
        avro_value_iface_decref(k->iface);
    memset(k, 0, sizeof(*k));
}

/* Prepares writing one kind with the writer schema of its subject: the pinned version, else
 * the newest. A store without the subject leaves k->writer NULL, and encoding that kind then
 * fails with a clear message. */
static int enc_kind_init(enc_kind_t *k, keng_schema_store_t *store, keng_kind_t kind, char *errstr,
                         size_t errstr_size)
{
    const char *subject = kind == KENG_KIND_INCIDENT ? SUBJECT_INCIDENT : SUBJECT_MEDIATION;
    json_t *root = NULL, *jfields;
    char why[200];
    int rc = -1;

    memset(k, 0, sizeof(*k));
    k->writer = keng_avro__store_pick(store, subject, KENG_SCHEMA_WRITER);
    if (k->writer == NULL)
        return 0;
    k->id = k->writer->id;
    avro_schema_t ws = k->writer->schema;
    size_t nw = avro_schema_record_size(ws);

    for (int f = 0; f < F_COUNT; f++) {
        k->widx[f] = -1;
        if (!(keng_avro__fields[f].kinds & (1u << kind)))
            continue;
        k->widx[f] = avro_schema_record_field_get_index(ws, keng_avro__fields[f].name);
        if (k->widx[f] < 0)
            continue;
        avro_schema_t fs = avro_schema_record_field_get_by_index(ws, k->widx[f]);
        if (keng_avro__check_shape(fs, &keng_avro__fields[f], &k->info[f], why, sizeof(why)) < 0) {
            keng_avro__set_err(errstr, errstr_size, "schema id %d (%s v%d): %s", (int)k->writer->id,
                               subject, k->writer->version, why);
            goto out;
        }
        for (int e = 0; e < keng_avro__fields[f].nsymbols; e++)
            k->enum_map[f][e] = avro_schema_enum_get_by_name(keng_avro__resolve_link(fs),
                                                             keng_avro__fields[f].symbols[e]);
    }

    /* Fields of a newer writer schema that keng does not know get their schema default. */
    root = json_loads(k->writer->json, 0, NULL);
    jfields = json_object_get(root, "fields");
    for (size_t i = 0; i < nw; i++) {
        const char *name = avro_schema_record_field_name(ws, (int)i);
        bool known = false;
        for (int f = 0; f < F_COUNT; f++)
            if (k->widx[f] == (int)i)
                known = true;
        if (known)
            continue;
        json_t *deflt = NULL, *jf;
        size_t j;
        json_array_foreach(jfields, j, jf)
        {
            if (json_is_string(json_object_get(jf, "name")) &&
                strcmp(json_string_value(json_object_get(jf, "name")), name) == 0)
                deflt = json_object_get(jf, "default");
        }
        if (deflt == NULL) {
            keng_avro__set_err(
                errstr, errstr_size,
                "schema id %d (%s v%d): field %s has no default, and keng has no value "
                "for it",
                (int)k->writer->id, subject, k->writer->version, name);
            goto out;
        }
        extra_field_t *grown = realloc(k->extra, (k->nextra + 1) * sizeof(*grown));
        if (grown == NULL) {
            keng_avro__set_err(errstr, errstr_size, "out of memory");
            goto out;
        }
        k->extra = grown;
        k->extra[k->nextra].index = (int)i;
        k->extra[k->nextra].deflt = json_incref(deflt);
        k->nextra++;
    }

    k->iface = avro_generic_class_from_schema(ws);
    if (k->iface == NULL || avro_generic_value_new(k->iface, &k->value) != 0) {
        keng_avro__set_err(errstr, errstr_size, "cannot create an Avro value for schema id %d: %s",
                           (int)k->writer->id, avro_strerror());
        goto out;
    }
    k->has_value = true;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void keng_avro_encoder_destroy(keng_avro_encoder_t *enc)
{
    if (enc == NULL)
        return;
    for (int i = 0; i < KENG_KIND_COUNT; i++)
        enc_kind_clear(&enc->kinds[i]);
    if (enc->writer != NULL)
        avro_writer_free(enc->writer);
    free(enc);
}

keng_avro_encoder_t *keng_avro_encoder_new(keng_schema_store_t *store, char *errstr,
                                           size_t errstr_size)
{
    keng_avro_encoder_t *enc = calloc(1, sizeof(*enc));
    static char empty[1];

    if (enc == NULL) {
        keng_avro__set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (int i = 0; i < KENG_KIND_COUNT; i++) {
        if (enc_kind_init(&enc->kinds[i], store, (keng_kind_t)i, errstr, errstr_size) < 0)
            goto fail;
    }
    enc->writer = avro_writer_memory(empty, 0);
    if (enc->writer == NULL) {
        keng_avro__set_err(errstr, errstr_size, "cannot create an Avro memory writer: %s",
                           avro_strerror());
        goto fail;
    }
    return enc;
fail:
    keng_avro_encoder_destroy(enc);
    return NULL;
}

/* Sets string value v to s[0..len). scratch, when not NULL, has room for len + 1 bytes. */
static int set_string(avro_value_t *v, const char *s, size_t len, char *scratch)
{
    /* Avro-C copies size bytes including the NUL, which a borrowed summary may lack. */
    if (scratch != NULL) {
        memcpy(scratch, s, len);
        scratch[len] = '\0';
        s = scratch;
    }
    return avro_value_set_string_len(v, s, len + 1);
}

static int put_string(avro_value_t *rec, int index, const char *s, size_t len, char *scratch)
{
    avro_value_t v;
    int rc = avro_value_get_by_index(rec, (size_t)index, &v, NULL);

    return rc != 0 ? rc : set_string(&v, s, len, scratch);
}

static int put_opt_string(avro_value_t *rec, int index, const shape_info_t *info, bool present,
                          const char *s, size_t len, char *scratch)
{
    avro_value_t v, b;
    int rc = avro_value_get_by_index(rec, (size_t)index, &v, NULL);

    if (rc != 0)
        return rc;
    if (!present) {
        rc = avro_value_set_branch(&v, info->null_branch, &b);
        return rc != 0 ? rc : avro_value_set_null(&b);
    }
    rc = avro_value_set_branch(&v, info->value_branch, &b);
    return rc != 0 ? rc : set_string(&b, s, len, scratch);
}

static int put_long(avro_value_t *rec, int index, int64_t n)
{
    avro_value_t v;
    int rc = avro_value_get_by_index(rec, (size_t)index, &v, NULL);
    return rc != 0 ? rc : avro_value_set_long(&v, n);
}

static int put_int(avro_value_t *rec, int index, int32_t n)
{
    avro_value_t v;
    int rc = avro_value_get_by_index(rec, (size_t)index, &v, NULL);
    return rc != 0 ? rc : avro_value_set_int(&v, n);
}

static int put_enum(enc_kind_t *k, int f, int value, char *errstr, size_t errstr_size)
{
    avro_value_t v;
    int rc;

    if (value < 0 || value >= keng_avro__fields[f].nsymbols) {
        keng_avro__set_err(errstr, errstr_size, "%s has no symbol for value %d",
                           keng_avro__fields[f].name, value);
        return -1;
    }
    if (k->enum_map[f][value] < 0) {
        keng_avro__set_err(errstr, errstr_size, "%s %s is not in writer schema id %d",
                           keng_avro__fields[f].name, keng_avro__fields[f].symbols[value],
                           (int)k->writer->id);
        return -1;
    }
    rc = avro_value_get_by_index(&k->value, (size_t)k->widx[f], &v, NULL);
    if (rc == 0)
        rc = avro_value_set_enum(&v, k->enum_map[f][value]);
    if (rc != 0) {
        keng_avro__set_err(errstr, errstr_size, "cannot set %s: %s", keng_avro__fields[f].name,
                           avro_strerror());
        return -1;
    }
    return 0;
}

static int put_location(enc_kind_t *k, const keng_event_t *ev)
{
    const shape_info_t *info = &k->info[F_LOCATION];
    avro_value_t v, b, c;
    int rc = avro_value_get_by_index(&k->value, (size_t)k->widx[F_LOCATION], &v, NULL);

    if (rc != 0)
        return rc;
    if (!ev->has_location) {
        rc = avro_value_set_branch(&v, info->null_branch, &b);
        return rc != 0 ? rc : avro_value_set_null(&b);
    }
    if ((rc = avro_value_set_branch(&v, info->value_branch, &b)) != 0 ||
        (rc = avro_value_get_by_index(&b, (size_t)info->lat, &c, NULL)) != 0 ||
        (rc = avro_value_set_double(&c, ev->lat)) != 0 ||
        (rc = avro_value_get_by_index(&b, (size_t)info->lon, &c, NULL)) != 0)
        return rc;
    return avro_value_set_double(&c, ev->lon);
}

/* Sets the fields only an incident has. Returns -1 with errstr filled when an enum value has
 * no symbol in the writer schema, else 0 with Avro-C's failures ORed into *rc. */
static int put_incident(enc_kind_t *k, const keng_event_t *ev, int *rc, char *errstr,
                        size_t errstr_size)
{
    avro_value_t *rec = &k->value;

    if ((k->widx[F_CATEGORY] >= 0 &&
         put_enum(k, F_CATEGORY, (int)ev->category, errstr, errstr_size) < 0) ||
        put_enum(k, F_SEVERITY, (int)ev->severity, errstr, errstr_size) < 0 ||
        put_enum(k, F_RESOLUTION, (int)ev->resolution, errstr, errstr_size) < 0 ||
        put_enum(k, F_SOURCE, (int)ev->source, errstr, errstr_size) < 0)
        return -1;
    *rc |= put_int(rec, k->widx[F_PEOPLE], ev->people_involved);
    if (k->widx[F_LOCATION] >= 0)
        *rc |= put_location(k, ev);
    /* A writer from before Incident v2 has no place for the case number: it is dropped, as a
     * producer from before v2 would. */
    if (k->widx[F_POLICE_CASE] >= 0)
        *rc |= put_opt_string(rec, k->widx[F_POLICE_CASE], &k->info[F_POLICE_CASE],
                              ev->has_police_case_id, ev->police_case_id,
                              strlen(ev->police_case_id), NULL);
    return 0;
}

/* Sets the fields only a mediation has; returns as put_incident does. */
static int put_mediation(enc_kind_t *k, const keng_event_t *ev, int *rc, char *errstr,
                         size_t errstr_size)
{
    avro_value_t *rec = &k->value;

    if ((k->widx[F_DISPUTE] >= 0 &&
         put_enum(k, F_DISPUTE, (int)ev->dispute_type, errstr, errstr_size) < 0) ||
        put_enum(k, F_OUTCOME, (int)ev->outcome, errstr, errstr_size) < 0)
        return -1;
    *rc |= put_int(rec, k->widx[F_PARTIES], ev->parties);
    if (k->widx[F_RELATED] >= 0)
        *rc |=
            put_opt_string(rec, k->widx[F_RELATED], &k->info[F_RELATED], ev->has_related_incident,
                           ev->related_incident_id, strlen(ev->related_incident_id), NULL);
    return 0;
}

/* Sets the writer's fields that keng does not know to their schema defaults. Returns 0 or
 * Avro-C's error. */
static int put_defaults(enc_kind_t *k)
{
    int rc = 0;

    for (size_t i = 0; i < k->nextra && rc == 0; i++) {
        avro_value_t v;
        rc = avro_value_get_by_index(&k->value, (size_t)k->extra[i].index, &v, NULL);
        if (rc == 0)
            rc = set_from_default(&v, k->extra[i].deflt);
    }
    return rc;
}

int keng_avro_encode(keng_avro_encoder_t *enc, const keng_event_t *ev, void *buf, size_t cap,
                     size_t *len, char *errstr, size_t errstr_size)
{
    enc_kind_t *k;
    avro_value_t *rec;
    int rc = 0;

    if ((unsigned)ev->kind >= KENG_KIND_COUNT) {
        keng_avro__set_err(errstr, errstr_size, "unknown event kind %d", (int)ev->kind);
        return -1;
    }
    k = &enc->kinds[ev->kind];
    if (k->writer == NULL) {
        keng_avro__set_err(errstr, errstr_size, "the schema store has no schema for %s events",
                           keng_kind_name(ev->kind));
        return -1;
    }
    if (ev->summary != NULL && ev->summary_len > KENG_SUMMARY_MAX) {
        keng_avro__set_err(errstr, errstr_size, "summary is %zu bytes long; at most %d are allowed",
                           ev->summary_len, KENG_SUMMARY_MAX);
        return -1;
    }
    if (cap < KENG_FRAME_HEADER_LEN) {
        keng_avro__set_err(errstr, errstr_size,
                           "the output buffer of %zu bytes cannot hold the header", cap);
        return -1;
    }
    rec = &k->value;
    avro_value_reset(rec);
    rc |= put_string(rec, k->widx[F_EVENT_ID], ev->event_id, strlen(ev->event_id), NULL);
    rc |= put_string(rec, k->widx[F_BOARD_ID], ev->board_id, strlen(ev->board_id), NULL);
    if (k->widx[F_GROUP_ID] >= 0)
        rc |= put_opt_string(rec, k->widx[F_GROUP_ID], &k->info[F_GROUP_ID], ev->has_group,
                             ev->group_id, strlen(ev->group_id), NULL);
    rc |= put_long(rec, k->widx[F_OCCURRED_AT], ev->occurred_at);
    rc |= put_long(rec, k->widx[F_REPORTED_AT], ev->reported_at);
    if (k->widx[F_SUMMARY] >= 0)
        rc |= put_opt_string(rec, k->widx[F_SUMMARY], &k->info[F_SUMMARY], ev->summary != NULL,
                             ev->summary, ev->summary_len, enc->summary);
    if (rc != 0)
        goto avro_fail;
    if ((ev->kind == KENG_KIND_INCIDENT ? put_incident(k, ev, &rc, errstr, errstr_size)
                                        : put_mediation(k, ev, &rc, errstr, errstr_size)) < 0)
        return -1;
    if (rc == 0)
        rc = put_defaults(k);
    if (rc != 0)
        goto avro_fail;

    unsigned char *out = buf;
    out[0] = KENG_FRAME_MAGIC;
    out[1] = (unsigned char)((uint32_t)k->id >> 24);
    out[2] = (unsigned char)((uint32_t)k->id >> 16);
    out[3] = (unsigned char)((uint32_t)k->id >> 8);
    out[4] = (unsigned char)(uint32_t)k->id;
    avro_writer_memory_set_dest(enc->writer, (const char *)out + KENG_FRAME_HEADER_LEN,
                                (int64_t)(cap - KENG_FRAME_HEADER_LEN));
    if (avro_value_write(enc->writer, rec) != 0) {
        keng_avro__set_err(errstr, errstr_size,
                           "the output buffer of %zu bytes is too small for event %s", cap,
                           ev->event_id);
        return -1;
    }
    *len = KENG_FRAME_HEADER_LEN + (size_t)avro_writer_tell(enc->writer);
    return 0;
avro_fail:
    keng_avro__set_err(errstr, errstr_size, "cannot encode event %s with schema id %d: %s",
                       ev->event_id, (int)k->writer->id, avro_strerror());
    return -1;
}

const char *keng_avro_encoder_writer(const keng_avro_encoder_t *enc, keng_kind_t kind,
                                     const char **json)
{
    const schema_entry_t *w = (unsigned)kind < KENG_KIND_COUNT ? enc->kinds[kind].writer : NULL;

    if (json != NULL)
        *json = w != NULL ? w->json : NULL;
    return w != NULL ? w->subject : NULL;
}

void keng_avro_encoder_set_id(keng_avro_encoder_t *enc, keng_kind_t kind, int32_t id)
{
    if ((unsigned)kind < KENG_KIND_COUNT && enc->kinds[kind].writer != NULL)
        enc->kinds[kind].id = id;
}
