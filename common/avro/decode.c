/* The decoder: finds the writer schema of a framed message, builds each writer id's slot on
 * its first message, reads the datum with the plan or with Avro-C's resolver (the reference
 * path, behind the length guard), and applies keng's checks to the fields either path read;
 * it never writes a datum. */
#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "plan.h"

const char *keng_avro_err_reason(int err)
{
    switch (err) {
    case KENG_AVRO_OK:
        return "ok";
    case KENG_AVRO_ERR_FRAMING:
        return "bad-magic";
    case KENG_AVRO_ERR_UNKNOWN_ID:
        return "unknown-schema-id";
    case KENG_AVRO_ERR_TRUNCATED:
        return "truncated";
    case KENG_AVRO_ERR_INVALID:
        return "invalid-avro";
    case KENG_AVRO_ERR_WRONG_RECORD:
        return "wrong-record";
    case KENG_AVRO_ERR_FIELD:
        return "bad-field";
    default:
        return "unknown-error";
    }
}

struct keng_avro_decoder {
    keng_schema_store_t *store;
    slot_t *slots; /* parallel to store->entries */
    slot_t *last;
    avro_reader_t reader;
    bool avro_c;                        /* every id takes the Avro-C path (codec.decoder=avro-c) */
    bool registry;                      /* ids are the registry's: the store's are not looked up */
    slot_t added[KENG_AVRO_ADDED_MAX];  /* writers from the registry, each with its own entry */
    size_t added_count, added_next;     /* in use; the one to drop next when full */
    char summary[KENG_SUMMARY_MAX + 1]; /* the plan's copy of the last summary */
};

static void slot_clear(slot_t *s)
{
    if (s->has_rw_value)
        avro_value_decref(&s->rw_value);
    if (s->rw_iface != NULL)
        avro_value_iface_decref(s->rw_iface);
    if (s->has_reader_value)
        avro_value_decref(&s->reader_value);
    if (s->reader_iface != NULL)
        avro_value_iface_decref(s->reader_iface);
    if (s->reader != NULL)
        avro_schema_decref(s->reader);
    for (int f = 0; f < F_COUNT; f++)
        free(s->enum_map[f]);
    free(s->plan);
    keng_avro__guard_free(&s->guard);
}

/* An added slot and the entry it owns. */
static void added_clear(slot_t *s)
{
    schema_entry_t *e = (schema_entry_t *)s->writer;

    slot_clear(s);
    if (e != NULL) {
        free(e->subject);
        free(e->json);
        if (e->schema != NULL)
            avro_schema_decref(e->schema);
        free(e);
    }
    memset(s, 0, sizeof(*s));
}

void keng_avro_decoder_destroy(keng_avro_decoder_t *dec)
{
    if (dec == NULL)
        return;
    if (dec->slots != NULL)
        for (size_t i = 0; i < dec->store->count; i++)
            slot_clear(&dec->slots[i]);
    for (size_t i = 0; i < dec->added_count; i++)
        added_clear(&dec->added[i]);
    free(dec->slots);
    if (dec->reader != NULL)
        avro_reader_free(dec->reader);
    free(dec);
}

keng_avro_decoder_t *keng_avro_decoder_new(keng_schema_store_t *store, char *errstr,
                                           size_t errstr_size)
{
    keng_avro_decoder_t *dec = calloc(1, sizeof(*dec));
    const char *env = getenv("KENG_AVRO_DECODER");
    keng_avro_path_t path;
    static const char empty[1];

    if (dec == NULL)
        goto oom;
    dec->store = store;
    dec->slots = calloc(store->count + 1, sizeof(*dec->slots));
    if (dec->slots == NULL)
        goto oom;
    for (size_t i = 0; i < store->count; i++)
        dec->slots[i].writer = &store->entries[i];
    dec->reader = avro_reader_memory(empty, 0);
    if (dec->reader == NULL)
        goto oom;
    dec->avro_c = store->path == KENG_AVRO_PATH_AVRO_C;
    if (env != NULL && *env != '\0') {
        if (keng_avro__parse_path(env, &path) < 0) {
            keng_avro__set_err(errstr, errstr_size,
                               "KENG_AVRO_DECODER=%s: expected plan (the default) or avro-c", env);
            keng_avro_decoder_destroy(dec);
            return NULL;
        }
        dec->avro_c = path == KENG_AVRO_PATH_AVRO_C;
    }
    return dec;
oom:
    keng_avro__set_err(errstr, errstr_size, "out of memory creating the Avro decoder");
    keng_avro_decoder_destroy(dec);
    return NULL;
}

void keng_avro_decoder_set_path(keng_avro_decoder_t *dec, keng_avro_path_t path)
{
    dec->avro_c = path == KENG_AVRO_PATH_AVRO_C;
}

/* Maps the writer's enum symbols to keng's values by name. Avro-C passes enum indexes
 * through resolution unchanged, so the writer's and reader's symbols must agree on every
 * index they share; keng's schemas only ever append symbols. */
static int slot_enum_map(slot_t *s, int f, avro_schema_t wfield, avro_schema_t rfield)
{
    avro_schema_t we = keng_avro__resolve_link(wfield), re = keng_avro__resolve_link(rfield);
    int wn, rn;

    if (!is_avro_enum(we)) {
        snprintf(s->error, sizeof(s->error), "writer field %s is not an enum",
                 keng_avro__fields[f].name);
        return -1;
    }
    wn = avro_schema_enum_number_of_symbols(we);
    rn = avro_schema_enum_number_of_symbols(re);
    for (int i = 0; i < wn && i < rn; i++) {
        if (strcmp(avro_schema_enum_get(we, i), avro_schema_enum_get(re, i)) != 0) {
            snprintf(s->error, sizeof(s->error),
                     "enum %s has symbol %s at index %d in the writer but %s in keng's reader",
                     keng_avro__fields[f].name, avro_schema_enum_get(we, i), i,
                     avro_schema_enum_get(re, i));
            return -1;
        }
    }
    s->enum_map[f] = calloc((size_t)wn + 1, sizeof(int));
    if (s->enum_map[f] == NULL) {
        snprintf(s->error, sizeof(s->error), "out of memory");
        return -1;
    }
    s->enum_n[f] = wn;
    s->wenum[f] = we;
    for (int i = 0; i < wn; i++)
        s->enum_map[f][i] =
            keng_symbol_find(keng_avro__fields[f].symbols, keng_avro__fields[f].nsymbols,
                             avro_schema_enum_get(we, i));
    return 0;
}

static int slot_build(keng_avro_decoder_t *dec, slot_t *s)
{
    const schema_entry_t *w = s->writer, *r;
    char why[200];
    long root;
    int kind;

    root = keng_avro__guard_compile(&s->guard, w->schema);
    if (root < 0) {
        snprintf(s->error, sizeof(s->error), "cannot compile schema id %d", (int)w->id);
        goto fail;
    }
    s->root = (uint32_t)root;
    kind = keng_avro__kind_of_subject(w->subject);
    if (kind < 0) {
        s->state = SLOT_OTHER_RECORD;
        return 0;
    }
    s->kind = (keng_kind_t)kind;
    r = keng_avro__store_pick(dec->store, w->subject, KENG_SCHEMA_READER);
    s->reader = avro_schema_record(avro_schema_name(r->schema), avro_schema_namespace(r->schema));
    if (s->reader == NULL) {
        snprintf(s->error, sizeof(s->error), "cannot create the reader schema: %s",
                 avro_strerror());
        goto fail;
    }
    int nfields = 0;
    for (int f = 0; f < F_COUNT; f++) {
        s->ridx[f] = -1;
        if (!(keng_avro__fields[f].kinds & (1u << kind)))
            continue;
        int ri = avro_schema_record_field_get_index(r->schema, keng_avro__fields[f].name);
        int wi = avro_schema_record_field_get_index(w->schema, keng_avro__fields[f].name);
        if (ri < 0 || wi < 0) {
            if (keng_avro__fields[f].has_default)
                continue;
            snprintf(s->error, sizeof(s->error),
                     "%s schema id %d lacks field %s, which has no default",
                     ri < 0 ? "keng's reader" : "writer", (int)(ri < 0 ? r->id : w->id),
                     keng_avro__fields[f].name);
            goto fail;
        }
        avro_schema_t rfield = avro_schema_record_field_get_by_index(r->schema, ri);
        avro_schema_t wfield = avro_schema_record_field_get_by_index(w->schema, wi);
        if (keng_avro__check_shape(rfield, &keng_avro__fields[f], &s->info[f], why, sizeof(why)) <
            0) {
            snprintf(s->error, sizeof(s->error), "reader schema id %d: %s", (int)r->id, why);
            goto fail;
        }
        if (keng_avro__fields[f].shape == SH_ENUM && slot_enum_map(s, f, wfield, rfield) < 0)
            goto fail;
        if (avro_schema_record_field_append(s->reader, keng_avro__fields[f].name, rfield) != 0) {
            snprintf(s->error, sizeof(s->error), "cannot build the reader schema: %s",
                     avro_strerror());
            goto fail;
        }
        s->ridx[f] = nfields++;
    }
    s->reader_iface = avro_generic_class_from_schema(s->reader);
    if (s->reader_iface == NULL || avro_generic_value_new(s->reader_iface, &s->reader_value) != 0) {
        snprintf(s->error, sizeof(s->error), "cannot create the reader value: %s", avro_strerror());
        goto fail;
    }
    s->has_reader_value = true;
    s->rw_iface = avro_resolved_writer_new(w->schema, s->reader);
    if (s->rw_iface == NULL) {
        snprintf(s->error, sizeof(s->error),
                 "writer schema id %d cannot be resolved to keng's reader %s v%d: %s", (int)w->id,
                 r->subject, r->version, avro_strerror());
        goto fail;
    }
    if (avro_resolved_writer_new_value(s->rw_iface, &s->rw_value) != 0) {
        snprintf(s->error, sizeof(s->error), "cannot create the resolver value: %s",
                 avro_strerror());
        goto fail;
    }
    s->has_rw_value = true;
    avro_resolved_writer_set_dest(&s->rw_value, &s->reader_value);
    s->state = SLOT_READY;
    keng_avro__plan_build(s);
    return 0;
fail:
    s->state = SLOT_FAILED;
    return -1;
}

static int field_fail(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int field_fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (errstr != NULL && errstr_size > 0) {
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return KENG_AVRO_ERR_FIELD;
}

/* Borrows the string of a string value, or of the value branch of an optional string. */
static int get_str(avro_value_t *field, const char **s, size_t *len)
{
    size_t size = 0;

    if (avro_value_get_string(field, s, &size) != 0)
        return -1;
    *len = size > 0 ? size - 1 : 0;
    return 0;
}

/* An optional string: *s NULL when the null branch is set. */
static int get_opt_str(avro_value_t *field, const shape_info_t *info, const char **s, size_t *len)
{
    avro_value_t b;
    int disc;

    *s = NULL;
    *len = 0;
    if (avro_value_get_discriminant(field, &disc) != 0)
        return -1;
    if (disc == info->null_branch)
        return 0;
    if (avro_value_get_current_branch(field, &b) != 0)
        return -1;
    return get_str(&b, s, len);
}

static int copy_id(const char *name, const char *s, size_t len, size_t max, bool event_id,
                   char *dst, char *errstr, size_t errstr_size)
{
    if (len > max)
        return field_fail(errstr, errstr_size, "%s is %zu bytes long; at most %zu are allowed",
                          name, len, max);
    if (event_id ? !keng_event_id_valid(s, len) : (len == 0 || !keng_utf8_valid(s, len)))
        return field_fail(errstr, errstr_size, "%s is empty or not well formed", name);
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

static int get_enum_value(const slot_t *s, const raw_event_t *raw, int f, int *out, char *errstr,
                          size_t errstr_size)
{
    int64_t i = raw->f[f].n;

    if (!raw->f[f].present) {
        *out = keng_avro__fields[f].enum_default;
        return 0;
    }
    if (i < 0 || i >= s->enum_n[f])
        return field_fail(errstr, errstr_size, "%s index %d is out of range",
                          keng_avro__fields[f].name, (int)i);
    *out = s->enum_map[f][i];
    if (*out < 0) {
        if (keng_avro__fields[f].enum_default < 0)
            return field_fail(errstr, errstr_size, "%s %s is unknown to keng",
                              keng_avro__fields[f].name, avro_schema_enum_get(s->wenum[f], (int)i));
        *out = keng_avro__fields[f].enum_default;
    }
    return 0;
}

static int get_count_value(const raw_event_t *raw, int f, int32_t *out, char *errstr,
                           size_t errstr_size)
{
    int64_t n = raw->f[f].n;

    if (n < 0 || n > KENG_AVRO_COUNT_MAX)
        return field_fail(errstr, errstr_size, "%s is %d; it must be between 0 and %d",
                          keng_avro__fields[f].name, (int)n, KENG_AVRO_COUNT_MAX);
    *out = (int32_t)n;
    return 0;
}

/* Reads the fields of slot s's reader value into raw, borrowing its strings. */
static int gather_avro(slot_t *s, raw_event_t *raw, char *errstr, size_t errstr_size)
{
    avro_value_t *rec = &s->reader_value, v, b, c;

    for (int f = 0; f < F_COUNT; f++) {
        raw_field_t *r = &raw->f[f];
        int i32;

        r->present = false;
        if (s->ridx[f] < 0)
            continue;
        if (avro_value_get_by_index(rec, (size_t)s->ridx[f], &v, NULL) != 0)
            goto fail;
        switch (keng_avro__fields[f].shape) {
        case SH_STRING:
            if (get_str(&v, &r->s, &r->len) != 0)
                goto fail;
            r->present = true;
            break;
        case SH_OPT_STRING:
            if (get_opt_str(&v, &s->info[f], &r->s, &r->len) != 0)
                goto fail;
            r->present = r->s != NULL;
            break;
        case SH_LONG:
            if (avro_value_get_long(&v, &r->n) != 0)
                goto fail;
            r->present = true;
            break;
        case SH_INT:
            if (avro_value_get_int(&v, &i32) != 0)
                goto fail;
            r->n = i32;
            r->present = true;
            break;
        case SH_ENUM:
            if (avro_value_get_enum(&v, &i32) != 0)
                goto fail;
            r->n = i32;
            r->present = true;
            break;
        case SH_OPT_GEO: {
            int disc;
            if (avro_value_get_discriminant(&v, &disc) != 0)
                goto fail;
            if (disc == s->info[f].null_branch)
                break;
            if (avro_value_get_current_branch(&v, &b) != 0 ||
                avro_value_get_by_index(&b, (size_t)s->info[f].lat, &c, NULL) != 0 ||
                avro_value_get_double(&c, &raw->lat) != 0 ||
                avro_value_get_by_index(&b, (size_t)s->info[f].lon, &c, NULL) != 0 ||
                avro_value_get_double(&c, &raw->lon) != 0)
                goto fail;
            r->present = true;
            break;
        }
        }
        continue;
    fail:
        if (f == F_OCCURRED_AT || f == F_REPORTED_AT)
            return field_fail(errstr, errstr_size, "cannot read occurred_at or reported_at");
        return field_fail(errstr, errstr_size, "cannot read %s", keng_avro__fields[f].name);
    }
    return KENG_AVRO_OK;
}

/* keng's checks on the fields only an incident has. */
static int finish_incident(const slot_t *s, const raw_event_t *raw, keng_event_t *ev, char *errstr,
                           size_t errstr_size)
{
    const raw_field_t *r;
    int e, rc;

    if ((rc = get_enum_value(s, raw, F_CATEGORY, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->category = (keng_category_t)e;
    if ((rc = get_enum_value(s, raw, F_SEVERITY, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->severity = (keng_severity_t)e;
    if ((rc = get_enum_value(s, raw, F_RESOLUTION, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->resolution = (keng_resolution_t)e;
    if ((rc = get_enum_value(s, raw, F_SOURCE, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->source = (keng_source_t)e;
    if ((rc = get_count_value(raw, F_PEOPLE, &ev->people_involved, errstr, errstr_size)) != 0)
        return rc;
    if (raw->f[F_LOCATION].present) {
        ev->lat = raw->lat;
        ev->lon = raw->lon;
        if (!(ev->lat >= -90.0 && ev->lat <= 90.0 && ev->lon >= -180.0 && ev->lon <= 180.0))
            return field_fail(errstr, errstr_size, "location %g,%g is outside -90..90, -180..180",
                              ev->lat, ev->lon);
        ev->has_location = true;
    }
    r = &raw->f[F_POLICE_CASE];
    if (r->present) {
        if (!keng_police_case_id_valid(r->s, r->len))
            return field_fail(errstr, errstr_size,
                              "police_case_id must be 1 to %d bytes of text without "
                              "control characters",
                              KENG_POLICE_CASE_MAX);
        memcpy(ev->police_case_id, r->s, r->len);
        ev->police_case_id[r->len] = '\0';
        ev->has_police_case_id = true;
    }
    return KENG_AVRO_OK;
}

/* keng's checks on the fields only a mediation has. */
static int finish_mediation(const slot_t *s, const raw_event_t *raw, keng_event_t *ev, char *errstr,
                            size_t errstr_size)
{
    const raw_field_t *r;
    int e, rc;

    if ((rc = get_enum_value(s, raw, F_DISPUTE, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->dispute_type = (keng_dispute_t)e;
    if ((rc = get_enum_value(s, raw, F_OUTCOME, &e, errstr, errstr_size)) != 0)
        return rc;
    ev->outcome = (keng_outcome_t)e;
    if ((rc = get_count_value(raw, F_PARTIES, &ev->parties, errstr, errstr_size)) != 0)
        return rc;
    r = &raw->f[F_RELATED];
    if (r->present) {
        ev->has_related_incident = true;
        if ((rc = copy_id("related_incident_id", r->s, r->len, KENG_EVENT_ID_MAX, true,
                          ev->related_incident_id, errstr, errstr_size)) != 0)
            return rc;
    }
    return KENG_AVRO_OK;
}

/* keng's checks on the fields of one datum, whichever path read them, so that both paths
 * accept and refuse the same datums with the same messages. Strings are copied into ev;
 * the summary is borrowed from raw, or copied into summary_buf when that is not NULL. */
static int finish(const slot_t *s, const raw_event_t *raw, keng_event_t *ev, char *summary_buf,
                  char *errstr, size_t errstr_size)
{
    const raw_field_t *r;
    int rc;

    memset(ev, 0, sizeof(*ev));
    ev->kind = s->kind;
    r = &raw->f[F_EVENT_ID];
    if ((rc = copy_id("event_id", r->s, r->len, KENG_EVENT_ID_MAX, true, ev->event_id, errstr,
                      errstr_size)) != 0)
        return rc;
    r = &raw->f[F_BOARD_ID];
    if ((rc = copy_id("board_id", r->s, r->len, KENG_BOARD_ID_MAX, false, ev->board_id, errstr,
                      errstr_size)) != 0)
        return rc;
    r = &raw->f[F_GROUP_ID];
    if (r->present) {
        ev->has_group = true;
        if ((rc = copy_id("group_id", r->s, r->len, KENG_GROUP_ID_MAX, false, ev->group_id, errstr,
                          errstr_size)) != 0)
            return rc;
    }
    ev->occurred_at = raw->f[F_OCCURRED_AT].n;
    ev->reported_at = raw->f[F_REPORTED_AT].n;
    r = &raw->f[F_SUMMARY];
    if (r->present) {
        if (r->len > KENG_SUMMARY_MAX)
            return field_fail(errstr, errstr_size,
                              "summary is %zu bytes long; at most %d are allowed", r->len,
                              KENG_SUMMARY_MAX);
        if (!keng_utf8_valid(r->s, r->len))
            return field_fail(errstr, errstr_size, "summary is not valid UTF-8 text");
        ev->summary = r->s;
        if (summary_buf != NULL) {
            memcpy(summary_buf, r->s, r->len);
            summary_buf[r->len] = '\0';
            ev->summary = summary_buf;
        }
        ev->summary_len = r->len;
    }

    if (s->kind == KENG_KIND_INCIDENT)
        return finish_incident(s, raw, ev, errstr, errstr_size);
    return finish_mediation(s, raw, ev, errstr, errstr_size);
}

static slot_t *find_slot(keng_avro_decoder_t *dec, int32_t id)
{
    if (dec->last != NULL && dec->last->writer->id == id)
        return dec->last;
    for (size_t i = 0; !dec->registry && i < dec->store->count; i++) {
        if (dec->slots[i].writer->id == id) {
            dec->last = &dec->slots[i];
            return dec->last;
        }
    }
    for (size_t i = 0; i < dec->added_count; i++) {
        if (dec->added[i].writer->id == id) {
            dec->last = &dec->added[i];
            return dec->last;
        }
    }
    return NULL;
}

void keng_avro_decoder_use_registry(keng_avro_decoder_t *dec)
{
    dec->registry = true;
    dec->last = NULL;
}

int keng_avro_decoder_knows(const keng_avro_decoder_t *dec, int32_t id)
{
    return find_slot((keng_avro_decoder_t *)dec, id) != NULL;
}

int keng_avro_decoder_add_writer(keng_avro_decoder_t *dec, int32_t id, const char *json,
                                 char *errstr, size_t errstr_size)
{
    schema_entry_t *e = NULL;
    avro_schema_t schema = NULL;
    char fullname[256];
    slot_t *s;

    if (avro_schema_from_json_length(json, strlen(json), &schema) != 0) {
        keng_avro__set_err(errstr, errstr_size, "the registry's schema id %d is not valid Avro: %s",
                           (int)id, avro_strerror());
        return -1;
    }
    if (!is_avro_record(schema)) {
        keng_avro__set_err(errstr, errstr_size, "the registry's schema id %d is not a record",
                           (int)id);
        avro_schema_decref(schema);
        return -1;
    }
    const char *ns = avro_schema_namespace(schema);
    snprintf(fullname, sizeof(fullname), "%s%s%s", ns != NULL ? ns : "",
             ns != NULL && *ns ? "." : "", avro_schema_name(schema));
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->subject = strdup(fullname)) == NULL || (e->json = strdup(json)) == NULL) {
        if (e != NULL) {
            free(e->subject);
            free(e);
        }
        avro_schema_decref(schema);
        keng_avro__set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    e->id = id;
    e->schema = schema;
    if (dec->added_count < KENG_AVRO_ADDED_MAX) {
        s = &dec->added[dec->added_count++];
    } else {
        s = &dec->added[dec->added_next];
        dec->added_next = (dec->added_next + 1) % KENG_AVRO_ADDED_MAX;
        added_clear(s);
    }
    dec->last = NULL;
    s->writer = e;
    return 0;
}

/* Walks the datum [datum, end) with s's length guard before Avro-C may see it. Returns 0, or
 * KENG_AVRO_ERR_TRUNCATED/INVALID with errstr naming what is wrong and at which byte. */
static int guard_check(const slot_t *s, const uint8_t *datum, const uint8_t *end, char *errstr,
                       size_t errstr_size)
{
    walk_fail_t wf = {0, 0, 0, NULL};
    const uint8_t *q = datum;
    int rc;

    rc = keng_avro__guard_walk(&s->guard, s->root, &q, datum, end, 0, &wf);
    if (rc == KENG_AVRO_ERR_TRUNCATED) {
        if (wf.claimed > 0)
            keng_avro__set_err(errstr, errstr_size,
                               "truncated datum: %s at byte %zu claims %lld bytes but %zu remain",
                               wf.what, KENG_FRAME_HEADER_LEN + wf.offset, (long long)wf.claimed,
                               wf.remain);
        else
            keng_avro__set_err(errstr, errstr_size,
                               "truncated datum: the message ends inside a %s at byte %zu", wf.what,
                               KENG_FRAME_HEADER_LEN + wf.offset);
        return rc;
    }
    if (rc != 0) {
        keng_avro__set_err(errstr, errstr_size, "invalid datum for schema id %d: %s at byte %zu",
                           (int)s->writer->id, wf.what, KENG_FRAME_HEADER_LEN + wf.offset);
        return rc;
    }
    if (q != end) {
        keng_avro__set_err(errstr, errstr_size,
                           "invalid datum for schema id %d: %zu bytes after its end",
                           (int)s->writer->id, (size_t)(end - q));
        return KENG_AVRO_ERR_INVALID;
    }
    return 0;
}

int keng_avro_decode(keng_avro_decoder_t *dec, const void *buf, size_t len, keng_event_t *ev,
                     int32_t *schema_id, char *errstr, size_t errstr_size)
{
    const uint8_t *p = buf, *datum, *end, *q;
    raw_event_t raw;
    slot_t *s;
    int32_t id;
    int rc;

    if (len < KENG_FRAME_HEADER_LEN) {
        keng_avro__set_err(errstr, errstr_size,
                           "message of %zu bytes is shorter than the 5-byte Confluent header", len);
        return KENG_AVRO_ERR_FRAMING;
    }
    if (p[0] != KENG_FRAME_MAGIC) {
        keng_avro__set_err(errstr, errstr_size,
                           "first byte is 0x%02x, not the 0x00 that starts Confluent-framed Avro",
                           p[0]);
        return KENG_AVRO_ERR_FRAMING;
    }
    id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
    if (schema_id != NULL)
        *schema_id = id;
    s = find_slot(dec, id);
    if (s == NULL) {
        keng_avro__set_err(errstr, errstr_size,
                           dec->registry ? "schema id %d is not known from the schema registry"
                                         : "schema id %d is not in keng's schema store "
                                           "(schemas/manifest.csv)",
                           (int)id);
        return KENG_AVRO_ERR_UNKNOWN_ID;
    }
    if (s->state == SLOT_UNBUILT)
        slot_build(dec, s);
    if (s->state == SLOT_FAILED) {
        keng_avro__set_err(errstr, errstr_size, "%s", s->error);
        return KENG_AVRO_ERR_INVALID;
    }

    datum = p + KENG_FRAME_HEADER_LEN;
    end = p + len;
    if (s->plan != NULL && !dec->avro_c) {
        q = datum;
        if (keng_avro__plan_read(s, &q, datum, end, &raw) && q == end)
            return finish(s, &raw, ev, dec->summary, errstr, errstr_size);
        /* The guard and Avro-C below word the error (or read what the plan would not). */
    }
    if ((rc = guard_check(s, datum, end, errstr, errstr_size)) != 0)
        return rc;
    if (s->state == SLOT_OTHER_RECORD) {
        keng_avro__set_err(errstr, errstr_size,
                           "schema id %d is a %s, not an incident or a mediation", (int)id,
                           s->writer->subject);
        return KENG_AVRO_ERR_WRONG_RECORD;
    }

    avro_reader_memory_set_source(dec->reader, (const char *)datum, (int64_t)(end - datum));
    avro_value_reset(&s->reader_value);
    if (avro_value_read(dec->reader, &s->rw_value) != 0) {
        keng_avro__set_err(errstr, errstr_size, "invalid datum for schema id %d: %s", (int)id,
                           avro_strerror());
        return KENG_AVRO_ERR_INVALID;
    }
    if ((rc = gather_avro(s, &raw, errstr, errstr_size)) != 0)
        return rc;
    return finish(s, &raw, ev, NULL, errstr, errstr_size);
}
