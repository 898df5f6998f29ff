/* Confluent-framed Avro for keng's events: the schema store, an encoder that writes the
 * newest schema of each record, and a decoder that resolves any known writer schema to
 * keng's reader schema. Avro-C trusts length prefixes, so every datum is first walked
 * against its writer schema by a small bounds checker compiled from that schema. */
#include "avro_codec.h"

#include <avro.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "schemas_builtin.h"

#define SUBJECT_INCIDENT  "vn.antt.Incident"
#define SUBJECT_MEDIATION "vn.antt.Mediation"
#define COUNT_MAX         100000
#define GUARD_DEPTH_MAX   32

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (errstr == NULL || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

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

/* ------------------------------------------------------------------------------------------
 * Schema store
 */

typedef struct schema_entry {
    int32_t id;
    int version;
    char *subject;
    char *json;
    avro_schema_t schema;
    bool pinned[2]; /* by keng_schema_role_t: this version replaces the newest in that role */
} schema_entry_t;

struct keng_schema_store {
    schema_entry_t *entries;
    size_t count;
    keng_avro_path_t path; /* what decoders made from this store take (codec.decoder) */
};

void keng_schema_store_destroy(keng_schema_store_t *store)
{
    if (store == NULL)
        return;
    for (size_t i = 0; i < store->count; i++) {
        free(store->entries[i].subject);
        free(store->entries[i].json);
        if (store->entries[i].schema != NULL)
            avro_schema_decref(store->entries[i].schema);
    }
    free(store->entries);
    free(store);
}

static const schema_entry_t *store_find(const keng_schema_store_t *store, int32_t id)
{
    for (size_t i = 0; i < store->count; i++)
        if (store->entries[i].id == id)
            return &store->entries[i];
    return NULL;
}

/* The version of a subject keng reads with or writes: the pinned one, else the newest. */
static const schema_entry_t *store_pick(const keng_schema_store_t *store, const char *subject,
                                        keng_schema_role_t role)
{
    const schema_entry_t *best = NULL;

    for (size_t i = 0; i < store->count; i++) {
        const schema_entry_t *e = &store->entries[i];
        if (strcmp(e->subject, subject) != 0)
            continue;
        if (e->pinned[role])
            return e;
        if (best == NULL || e->version > best->version)
            best = e;
    }
    return best;
}

/* Takes a copy of json. `where` names the source in messages ("incident.v1.avsc"). */
static int store_add(keng_schema_store_t *store, int32_t id, const char *subject, int version,
                     const char *where, const char *json, size_t json_len, char *errstr,
                     size_t errstr_size)
{
    schema_entry_t *e, *grown;
    avro_schema_t schema = NULL;
    char fullname[256];

    if (id <= 0) {
        set_err(errstr, errstr_size, "%s: schema id %d must be a positive integer", where, (int)id);
        return -1;
    }
    if (store_find(store, id) != NULL) {
        set_err(errstr, errstr_size, "%s: schema id %d is listed twice; ids are never reused",
                where, (int)id);
        return -1;
    }
    for (size_t i = 0; i < store->count; i++) {
        if (strcmp(store->entries[i].subject, subject) == 0 &&
            store->entries[i].version == version) {
            set_err(errstr, errstr_size, "%s: %s version %d is listed twice", where, subject,
                    version);
            return -1;
        }
    }
    if (avro_schema_from_json_length(json, json_len, &schema) != 0) {
        set_err(errstr, errstr_size, "%s: not a valid Avro schema: %s", where, avro_strerror());
        return -1;
    }
    if (!is_avro_record(schema)) {
        set_err(errstr, errstr_size, "%s: the schema must be a record", where);
        avro_schema_decref(schema);
        return -1;
    }
    const char *ns = avro_schema_namespace(schema);
    snprintf(fullname, sizeof(fullname), "%s%s%s", ns != NULL ? ns : "",
             ns != NULL && *ns ? "." : "", avro_schema_name(schema));
    if (strcmp(fullname, subject) != 0) {
        set_err(errstr, errstr_size, "%s: the schema's record is %s but the manifest says %s",
                where, fullname, subject);
        avro_schema_decref(schema);
        return -1;
    }
    grown = realloc(store->entries, (store->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        avro_schema_decref(schema);
        set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    store->entries = grown;
    e = &store->entries[store->count];
    memset(e, 0, sizeof(*e));
    e->id = id;
    e->version = version;
    e->schema = schema;
    e->subject = strdup(subject);
    e->json = strndup(json, json_len);
    store->count++;
    if (e->subject == NULL || e->json == NULL) {
        set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

keng_schema_store_t *keng_schema_store_builtin(char *errstr, size_t errstr_size)
{
    keng_schema_store_t *store = calloc(1, sizeof(*store));

    if (store == NULL) {
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (const keng_builtin_schema_t *b = keng_builtin_schemas; b->id != 0; b++) {
        if (store_add(store, b->id, b->subject, b->version, b->file, b->json, strlen(b->json),
                      errstr, errstr_size) < 0) {
            keng_schema_store_destroy(store);
            return NULL;
        }
    }
    return store;
}

static char *read_file(const char *path, size_t *len, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long size;

    if (f == NULL) {
        set_err(errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        set_err(errstr, errstr_size, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        set_err(errstr, errstr_size, "out of memory reading %s", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        set_err(errstr, errstr_size, "cannot read %s", path);
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[size] = '\0';
    *len = (size_t)size;
out:
    fclose(f);
    return buf;
}

keng_schema_store_t *keng_schema_store_load(const char *dir, char *errstr, size_t errstr_size)
{
    keng_schema_store_t *store = NULL;
    char path[4096], *manifest = NULL, *json = NULL, *line, *save = NULL;
    size_t len;
    int lineno = 0;

    snprintf(path, sizeof(path), "%s/manifest.csv", dir);
    manifest = read_file(path, &len, errstr, errstr_size);
    if (manifest == NULL)
        goto fail;
    store = calloc(1, sizeof(*store));
    if (store == NULL) {
        set_err(errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (line = strtok_r(manifest, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char subject[256], file[1024], where[1200], extra;
        int id, version;

        lineno++;
        line[strcspn(line, "\r")] = '\0';
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '\0' || *line == '#')
            continue;
        if (sscanf(line, "%d,%255[^,],%d,%1023[^,] %c", &id, subject, &version, file, &extra) !=
            4) {
            set_err(errstr, errstr_size,
                    "%s line %d: expected id,subject,version,file but found '%s'", path, lineno,
                    line);
            goto fail;
        }
        snprintf(where, sizeof(where), "%s/%s", dir, file);
        json = read_file(where, &len, errstr, errstr_size);
        if (json == NULL)
            goto fail;
        if (store_add(store, id, subject, version, where, json, len, errstr, errstr_size) < 0)
            goto fail;
        free(json);
        json = NULL;
    }
    if (store->count == 0) {
        set_err(errstr, errstr_size, "%s lists no schema", path);
        goto fail;
    }
    free(manifest);
    return store;
fail:
    free(json);
    free(manifest);
    keng_schema_store_destroy(store);
    return NULL;
}

const char *keng_schema_store_json(const keng_schema_store_t *store, int32_t id)
{
    const schema_entry_t *e = store != NULL ? store_find(store, id) : NULL;

    return e != NULL ? e->json : NULL;
}

int keng_schema_store_pin(keng_schema_store_t *store, keng_schema_role_t role, const char *subject,
                          int version, char *errstr, size_t errstr_size)
{
    schema_entry_t *chosen = NULL;
    char versions[128] = "";
    size_t used = 0;

    if (role != KENG_SCHEMA_READER && role != KENG_SCHEMA_WRITER) {
        set_err(errstr, errstr_size, "unknown schema role %d", (int)role);
        return -1;
    }
    for (size_t i = 0; i < store->count; i++) {
        schema_entry_t *e = &store->entries[i];
        if (strcmp(e->subject, subject) != 0)
            continue;
        if (e->version == version)
            chosen = e;
        if (used < sizeof(versions))
            used += (size_t)snprintf(versions + used, sizeof(versions) - used, "%s%d",
                                     used > 0 ? ", " : "", e->version);
    }
    if (chosen == NULL) {
        if (used == 0)
            set_err(errstr, errstr_size, "the schema store has no subject %s", subject);
        else
            set_err(errstr, errstr_size,
                    "the schema store has no version %d of %s; it has version %s", version, subject,
                    versions);
        return -1;
    }
    for (size_t i = 0; i < store->count; i++)
        if (strcmp(store->entries[i].subject, subject) == 0)
            store->entries[i].pinned[role] = false;
    chosen->pinned[role] = true;
    return 0;
}

int32_t keng_schema_store_id_of(const keng_schema_store_t *store, const char *subject,
                                keng_schema_role_t role)
{
    const schema_entry_t *e;

    if (role != KENG_SCHEMA_READER && role != KENG_SCHEMA_WRITER)
        return -1;
    e = store_pick(store, subject, role);
    return e != NULL ? e->id : -1;
}

static int parse_path(const char *value, keng_avro_path_t *path)
{
    if (strcmp(value, "plan") == 0)
        *path = KENG_AVRO_PATH_PLAN;
    else if (strcmp(value, "avro-c") == 0)
        *path = KENG_AVRO_PATH_AVRO_C;
    else
        return -1;
    return 0;
}

typedef struct pin_walk {
    keng_schema_store_t *store;
    int rc;
    char *errstr;
    size_t errstr_size;
} pin_walk_t;

static void pin_key(const char *key, const char *value, void *arg)
{
    static const char reader[] = "schemas.reader.", writer[] = "schemas.writer.";
    pin_walk_t *w = arg;
    keng_schema_role_t role;
    const char *subject;
    char *end;
    long version;
    char why[300];

    if (w->rc != 0 || strncmp(key, "schemas.", 8) != 0 || strcmp(key, "schemas.dir") == 0)
        return;
    if (strncmp(key, reader, sizeof(reader) - 1) == 0) {
        role = KENG_SCHEMA_READER;
        subject = key + sizeof(reader) - 1;
    } else if (strncmp(key, writer, sizeof(writer) - 1) == 0) {
        role = KENG_SCHEMA_WRITER;
        subject = key + sizeof(writer) - 1;
    } else {
        set_err(w->errstr, w->errstr_size,
                "unknown config key %s; the schemas.* keys are schemas.dir, "
                "schemas.reader.<subject> and schemas.writer.<subject>",
                key);
        w->rc = -1;
        return;
    }
    errno = 0;
    version = strtol(value, &end, 10);
    if (*subject == '\0' || errno != 0 || end == value || *end != '\0' || version < 0 ||
        version > INT_MAX) {
        set_err(w->errstr, w->errstr_size,
                "%s=%s: expected a subject in the key and a version number as the value, "
                "such as schemas.reader.vn.antt.Incident=1",
                key, value);
        w->rc = -1;
        return;
    }
    if (keng_schema_store_pin(w->store, role, subject, (int)version, why, sizeof(why)) < 0) {
        set_err(w->errstr, w->errstr_size, "%s=%s: %s", key, value, why);
        w->rc = -1;
    }
}

const char *const keng_schema_store_config_keys[] = {"schemas.dir", "codec.decoder",
                                                     "schemas.reader.*", "schemas.writer.*", NULL};

keng_schema_store_t *keng_schema_store_from_config(const keng_config_t *cfg, char *errstr,
                                                   size_t errstr_size)
{
    const char *dir = keng_config_get(cfg, "schemas.dir", NULL);
    keng_schema_store_t *store;
    pin_walk_t walk;

    store = dir != NULL && *dir != '\0' ? keng_schema_store_load(dir, errstr, errstr_size)
                                        : keng_schema_store_builtin(errstr, errstr_size);
    if (store == NULL)
        return NULL;
    if (parse_path(keng_config_get(cfg, "codec.decoder", "plan"), &store->path) < 0) {
        set_err(errstr, errstr_size, "codec.decoder=%s: expected plan (the default) or avro-c",
                keng_config_get(cfg, "codec.decoder", ""));
        keng_schema_store_destroy(store);
        return NULL;
    }
    walk = (pin_walk_t){store, 0, errstr, errstr_size};
    keng_config_each(cfg, pin_key, &walk);
    if (walk.rc != 0) {
        keng_schema_store_destroy(store);
        return NULL;
    }
    return store;
}

/* ------------------------------------------------------------------------------------------
 * The fields keng reads and writes, and the shape each must have in a schema.
 */

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

static const field_spec_t fields[F_COUNT] = {
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

/* Where the parts of a field sit inside its schema. */
typedef struct shape_info {
    int null_branch, value_branch; /* unions */
    int lat, lon;                  /* GeoPoint fields */
} shape_info_t;

static avro_schema_t resolve_link(avro_schema_t s)
{
    while (s != NULL && is_avro_link(s))
        s = avro_schema_link_target(s);
    return s;
}

static int check_shape(avro_schema_t s, const field_spec_t *f, shape_info_t *info, char *errstr,
                       size_t errstr_size)
{
    s = resolve_link(s);
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
            avro_schema_t b = resolve_link(avro_schema_union_branch(s, i));
            if (is_avro_null(b)) {
                info->null_branch = i;
            } else if (f->shape == SH_OPT_STRING && is_avro_string(b)) {
                info->value_branch = i;
            } else if (f->shape == SH_OPT_GEO && is_avro_record(b)) {
                info->lat = avro_schema_record_field_get_index(b, "lat");
                info->lon = avro_schema_record_field_get_index(b, "lon");
                if (info->lat < 0 || info->lon < 0 ||
                    !is_avro_double(
                        resolve_link(avro_schema_record_field_get_by_index(b, info->lat))) ||
                    !is_avro_double(
                        resolve_link(avro_schema_record_field_get_by_index(b, info->lon))))
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
    set_err(errstr, errstr_size, "field %s must be %s", f->name, expected[f->shape]);
    return -1;
}

static int kind_of_subject(const char *subject)
{
    if (strcmp(subject, SUBJECT_INCIDENT) == 0)
        return KENG_KIND_INCIDENT;
    if (strcmp(subject, SUBJECT_MEDIATION) == 0)
        return KENG_KIND_MEDIATION;
    return -1;
}

/* ------------------------------------------------------------------------------------------
 * Encoder
 */

typedef struct extra_field {
    int index;
    json_t *deflt;
} extra_field_t;

typedef struct enc_kind {
    const schema_entry_t *writer;
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
    k->writer = store_pick(store, subject, KENG_SCHEMA_WRITER);
    if (k->writer == NULL)
        return 0;
    avro_schema_t ws = k->writer->schema;
    size_t nw = avro_schema_record_size(ws);

    for (int f = 0; f < F_COUNT; f++) {
        k->widx[f] = -1;
        if (!(fields[f].kinds & (1u << kind)))
            continue;
        k->widx[f] = avro_schema_record_field_get_index(ws, fields[f].name);
        if (k->widx[f] < 0)
            continue;
        avro_schema_t fs = avro_schema_record_field_get_by_index(ws, k->widx[f]);
        if (check_shape(fs, &fields[f], &k->info[f], why, sizeof(why)) < 0) {
            set_err(errstr, errstr_size, "schema id %d (%s v%d): %s", (int)k->writer->id, subject,
                    k->writer->version, why);
            goto out;
        }
        for (int e = 0; e < fields[f].nsymbols; e++)
            k->enum_map[f][e] =
                avro_schema_enum_get_by_name(resolve_link(fs), fields[f].symbols[e]);
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
            set_err(errstr, errstr_size,
                    "schema id %d (%s v%d): field %s has no default, and keng has no value "
                    "for it",
                    (int)k->writer->id, subject, k->writer->version, name);
            goto out;
        }
        extra_field_t *grown = realloc(k->extra, (k->nextra + 1) * sizeof(*grown));
        if (grown == NULL) {
            set_err(errstr, errstr_size, "out of memory");
            goto out;
        }
        k->extra = grown;
        k->extra[k->nextra].index = (int)i;
        k->extra[k->nextra].deflt = json_incref(deflt);
        k->nextra++;
    }

    k->iface = avro_generic_class_from_schema(ws);
    if (k->iface == NULL || avro_generic_value_new(k->iface, &k->value) != 0) {
        set_err(errstr, errstr_size, "cannot create an Avro value for schema id %d: %s",
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
        set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (int i = 0; i < KENG_KIND_COUNT; i++) {
        if (enc_kind_init(&enc->kinds[i], store, (keng_kind_t)i, errstr, errstr_size) < 0)
            goto fail;
    }
    enc->writer = avro_writer_memory(empty, 0);
    if (enc->writer == NULL) {
        set_err(errstr, errstr_size, "cannot create an Avro memory writer: %s", avro_strerror());
        goto fail;
    }
    return enc;
fail:
    keng_avro_encoder_destroy(enc);
    return NULL;
}

static int put_string(avro_value_t *rec, int index, const char *s, size_t len, char *scratch)
{
    avro_value_t v;
    int rc = avro_value_get_by_index(rec, (size_t)index, &v, NULL);

    if (rc != 0)
        return rc;
    /* Avro-C copies size bytes including the NUL, which a borrowed summary may lack. */
    if (scratch != NULL) {
        memcpy(scratch, s, len);
        scratch[len] = '\0';
        s = scratch;
    }
    return avro_value_set_string_len(&v, s, len + 1);
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
    if (rc != 0)
        return rc;
    if (scratch != NULL) {
        memcpy(scratch, s, len);
        scratch[len] = '\0';
        s = scratch;
    }
    return avro_value_set_string_len(&b, s, len + 1);
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

    if (value < 0 || value >= fields[f].nsymbols) {
        set_err(errstr, errstr_size, "%s has no symbol for value %d", fields[f].name, value);
        return -1;
    }
    if (k->enum_map[f][value] < 0) {
        set_err(errstr, errstr_size, "%s %s is not in writer schema id %d", fields[f].name,
                fields[f].symbols[value], (int)k->writer->id);
        return -1;
    }
    rc = avro_value_get_by_index(&k->value, (size_t)k->widx[f], &v, NULL);
    if (rc == 0)
        rc = avro_value_set_enum(&v, k->enum_map[f][value]);
    if (rc != 0) {
        set_err(errstr, errstr_size, "cannot set %s: %s", fields[f].name, avro_strerror());
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

int keng_avro_encode(keng_avro_encoder_t *enc, const keng_event_t *ev, void *buf, size_t cap,
                     size_t *len, char *errstr, size_t errstr_size)
{
    enc_kind_t *k;
    avro_value_t *rec;
    int rc = 0;

    if ((unsigned)ev->kind >= KENG_KIND_COUNT) {
        set_err(errstr, errstr_size, "unknown event kind %d", (int)ev->kind);
        return -1;
    }
    k = &enc->kinds[ev->kind];
    if (k->writer == NULL) {
        set_err(errstr, errstr_size, "the schema store has no schema for %s events",
                keng_kind_name(ev->kind));
        return -1;
    }
    if (ev->summary != NULL && ev->summary_len > KENG_SUMMARY_MAX) {
        set_err(errstr, errstr_size, "summary is %zu bytes long; at most %d are allowed",
                ev->summary_len, KENG_SUMMARY_MAX);
        return -1;
    }
    if (cap < KENG_FRAME_HEADER_LEN) {
        set_err(errstr, errstr_size, "the output buffer of %zu bytes cannot hold the header", cap);
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
    if (ev->kind == KENG_KIND_INCIDENT) {
        if ((k->widx[F_CATEGORY] >= 0 &&
             put_enum(k, F_CATEGORY, (int)ev->category, errstr, errstr_size) < 0) ||
            put_enum(k, F_SEVERITY, (int)ev->severity, errstr, errstr_size) < 0 ||
            put_enum(k, F_RESOLUTION, (int)ev->resolution, errstr, errstr_size) < 0 ||
            put_enum(k, F_SOURCE, (int)ev->source, errstr, errstr_size) < 0)
            return -1;
        rc |= put_int(rec, k->widx[F_PEOPLE], ev->people_involved);
        if (k->widx[F_LOCATION] >= 0)
            rc |= put_location(k, ev);
        /* A writer from before Incident v2 has no place for the case number: it is dropped,
         * as a producer from before v2 would. */
        if (k->widx[F_POLICE_CASE] >= 0)
            rc |= put_opt_string(rec, k->widx[F_POLICE_CASE], &k->info[F_POLICE_CASE],
                                 ev->has_police_case_id, ev->police_case_id,
                                 strlen(ev->police_case_id), NULL);
    } else {
        if ((k->widx[F_DISPUTE] >= 0 &&
             put_enum(k, F_DISPUTE, (int)ev->dispute_type, errstr, errstr_size) < 0) ||
            put_enum(k, F_OUTCOME, (int)ev->outcome, errstr, errstr_size) < 0)
            return -1;
        rc |= put_int(rec, k->widx[F_PARTIES], ev->parties);
        if (k->widx[F_RELATED] >= 0)
            rc |= put_opt_string(rec, k->widx[F_RELATED], &k->info[F_RELATED],
                                 ev->has_related_incident, ev->related_incident_id,
                                 strlen(ev->related_incident_id), NULL);
    }
    for (size_t i = 0; i < k->nextra && rc == 0; i++) {
        avro_value_t v;
        rc = avro_value_get_by_index(rec, (size_t)k->extra[i].index, &v, NULL);
        if (rc == 0)
            rc = set_from_default(&v, k->extra[i].deflt);
    }
    if (rc != 0)
        goto avro_fail;

    unsigned char *out = buf;
    out[0] = KENG_FRAME_MAGIC;
    out[1] = (unsigned char)((uint32_t)k->writer->id >> 24);
    out[2] = (unsigned char)((uint32_t)k->writer->id >> 16);
    out[3] = (unsigned char)((uint32_t)k->writer->id >> 8);
    out[4] = (unsigned char)(uint32_t)k->writer->id;
    avro_writer_memory_set_dest(enc->writer, (const char *)out + KENG_FRAME_HEADER_LEN,
                                (int64_t)(cap - KENG_FRAME_HEADER_LEN));
    if (avro_value_write(enc->writer, rec) != 0) {
        set_err(errstr, errstr_size, "the output buffer of %zu bytes is too small for event %s",
                cap, ev->event_id);
        return -1;
    }
    *len = KENG_FRAME_HEADER_LEN + (size_t)avro_writer_tell(enc->writer);
    return 0;
avro_fail:
    set_err(errstr, errstr_size, "cannot encode event %s with schema id %d: %s", ev->event_id,
            (int)k->writer->id, avro_strerror());
    return -1;
}

/* ------------------------------------------------------------------------------------------
 * Length guard: a writer schema compiled into a flat node table, walked over the datum
 * before Avro-C sees it.
 */

enum gtype {
    G_NULL,
    G_BOOL,
    G_INT,
    G_LONG,
    G_FLOAT,
    G_DOUBLE,
    G_BYTES,
    G_FIXED,
    G_ENUM,
    G_RECORD,
    G_UNION,
    G_ARRAY,
    G_MAP
};

typedef struct gnode {
    uint8_t type;
    uint32_t n;     /* fixed size, enum symbols, record fields, union branches */
    uint32_t first; /* first child in guard.kids (records, unions), or the item node */
} gnode_t;

typedef struct guard {
    gnode_t *nodes;
    uint32_t *kids;
    avro_schema_t *memo; /* schema of each node, to compile shared and recursive types once */
    size_t nnodes, nkids;
} guard_t;

/* Why a walk failed, kept out of the hot path until a message is wanted. */
typedef struct walk_fail {
    size_t offset;   /* where the bad value starts, from the start of the datum */
    int64_t claimed; /* the length or count it claims */
    size_t remain;   /* the bytes that remained for it */
    const char *what;
} walk_fail_t;

static void guard_free(guard_t *g)
{
    free(g->nodes);
    free(g->kids);
    free(g->memo);
    memset(g, 0, sizeof(*g));
}

static long guard_compile(guard_t *g, avro_schema_t s)
{
    s = resolve_link(s);
    for (size_t i = 0; i < g->nnodes; i++)
        if (g->memo[i] == s)
            return (long)i;

    gnode_t *nn = realloc(g->nodes, (g->nnodes + 1) * sizeof(*nn));
    if (nn == NULL)
        return -1;
    g->nodes = nn;
    avro_schema_t *nm = realloc(g->memo, (g->nnodes + 1) * sizeof(*nm));
    if (nm == NULL)
        return -1;
    g->memo = nm;
    size_t idx = g->nnodes++;
    g->memo[idx] = s;
    gnode_t node = {0};
    uint32_t *tmp = NULL;
    size_t nchildren = 0;

    switch (avro_typeof(s)) {
    case AVRO_NULL:
        node.type = G_NULL;
        break;
    case AVRO_BOOLEAN:
        node.type = G_BOOL;
        break;
    case AVRO_INT32:
        node.type = G_INT;
        break;
    case AVRO_INT64:
        node.type = G_LONG;
        break;
    case AVRO_FLOAT:
        node.type = G_FLOAT;
        break;
    case AVRO_DOUBLE:
        node.type = G_DOUBLE;
        break;
    case AVRO_STRING:
    case AVRO_BYTES:
        node.type = G_BYTES;
        break;
    case AVRO_FIXED:
        node.type = G_FIXED;
        node.n = (uint32_t)avro_schema_fixed_size(s);
        break;
    case AVRO_ENUM:
        node.type = G_ENUM;
        node.n = (uint32_t)avro_schema_enum_number_of_symbols(s);
        break;
    case AVRO_RECORD:
    case AVRO_UNION:
        node.type = is_avro_record(s) ? G_RECORD : G_UNION;
        nchildren = is_avro_record(s) ? avro_schema_record_size(s) : avro_schema_union_size(s);
        node.n = (uint32_t)nchildren;
        tmp = calloc(nchildren + 1, sizeof(*tmp));
        if (tmp == NULL)
            return -1;
        for (size_t i = 0; i < nchildren; i++) {
            avro_schema_t c = is_avro_record(s) ? avro_schema_record_field_get_by_index(s, (int)i)
                                                : avro_schema_union_branch(s, (int)i);
            long k = guard_compile(g, c);
            if (k < 0) {
                free(tmp);
                return -1;
            }
            tmp[i] = (uint32_t)k;
        }
        uint32_t *nk = realloc(g->kids, (g->nkids + nchildren + 1) * sizeof(*nk));
        if (nk == NULL) {
            free(tmp);
            return -1;
        }
        g->kids = nk;
        node.first = (uint32_t)g->nkids;
        memcpy(g->kids + g->nkids, tmp, nchildren * sizeof(*tmp));
        g->nkids += nchildren;
        free(tmp);
        break;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        node.type = is_avro_array(s) ? G_ARRAY : G_MAP;
        long k = guard_compile(g, is_avro_array(s) ? avro_schema_array_items(s)
                                                   : avro_schema_map_values(s));
        if (k < 0)
            return -1;
        node.first = (uint32_t)k;
        break;
    }
    default:
        return -1;
    }
    g->nodes[idx] = node;
    return (long)idx;
}

/* Zigzag varint of at most 10 bytes whose value fits in 64 bits. */
static inline int read_varint(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;

    for (int shift = 0;; shift += 7) {
        if (p >= end)
            return KENG_AVRO_ERR_TRUNCATED;
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return KENG_AVRO_ERR_INVALID;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        if (shift == 63)
            return KENG_AVRO_ERR_INVALID;
    }
    *pp = p;
    *out = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
    return 0;
}

static int walk_string(const uint8_t **pp, const uint8_t *start, const uint8_t *end,
                       walk_fail_t *wf)
{
    const uint8_t *at = *pp;
    int64_t v;
    int rc = read_varint(pp, end, &v);

    wf->offset = (size_t)(at - start);
    if (rc != 0) {
        wf->what = "string length";
        return rc;
    }
    if (v < 0) {
        wf->what = "string with a negative length";
        wf->claimed = v;
        return KENG_AVRO_ERR_INVALID;
    }
    if (v > end - *pp) {
        wf->what = "string";
        wf->claimed = v;
        wf->remain = (size_t)(end - *pp);
        return KENG_AVRO_ERR_TRUNCATED;
    }
    *pp += v;
    return 0;
}

/* Checks that [*pp, end) starts with a datum of node idx, every length and count within the
 * bytes that remain. Returns 0 or KENG_AVRO_ERR_TRUNCATED/INVALID with wf filled. */
static int walk(const guard_t *g, uint32_t idx, const uint8_t **pp, const uint8_t *start,
                const uint8_t *end, int depth, walk_fail_t *wf)
{
    const gnode_t *n = &g->nodes[idx];
    const uint8_t *at = *pp;
    int64_t v, count, size;
    int rc;

    if (depth > GUARD_DEPTH_MAX) {
        wf->what = "nesting deeper than keng allows";
        goto invalid;
    }
    switch (n->type) {
    case G_NULL:
        return 0;
    case G_BOOL:
        if (at >= end) {
            wf->what = "boolean";
            goto truncated;
        }
        if (*at > 1) {
            wf->what = "boolean byte other than 0 or 1";
            goto invalid;
        }
        (*pp)++;
        return 0;
    case G_INT:
    case G_LONG:
    case G_ENUM:
        if ((rc = read_varint(pp, end, &v)) != 0) {
            wf->what = n->type == G_ENUM ? "enum index" : "number";
            goto fail;
        }
        if (n->type != G_LONG && (*pp - at > 5 || v < INT32_MIN || v > INT32_MAX)) {
            wf->what = "int out of range";
            goto invalid;
        }
        if (n->type == G_ENUM && (v < 0 || v >= n->n)) {
            wf->what = "enum index out of range";
            wf->claimed = v;
            goto invalid;
        }
        return 0;
    case G_FLOAT:
    case G_DOUBLE:
    case G_FIXED:
        size = n->type == G_FLOAT ? 4 : n->type == G_DOUBLE ? 8 : n->n;
        if (end - at < size) {
            wf->what = n->type == G_FIXED ? "fixed" : "floating-point number";
            wf->claimed = size;
            wf->remain = (size_t)(end - at);
            goto truncated;
        }
        *pp += size;
        return 0;
    case G_BYTES:
        return walk_string(pp, start, end, wf);
    case G_RECORD:
        for (uint32_t i = 0; i < n->n; i++)
            if ((rc = walk(g, g->kids[n->first + i], pp, start, end, depth + 1, wf)) != 0)
                return rc;
        return 0;
    case G_UNION:
        if ((rc = read_varint(pp, end, &v)) != 0) {
            wf->what = "union branch";
            goto fail;
        }
        if (v < 0 || v >= n->n) {
            wf->what = "union branch out of range";
            wf->claimed = v;
            goto invalid;
        }
        return walk(g, g->kids[n->first + (uint32_t)v], pp, start, end, depth + 1, wf);
    case G_ARRAY:
    case G_MAP:
        for (;;) {
            at = *pp;
            if ((rc = read_varint(pp, end, &count)) != 0) {
                wf->what = "block count";
                goto fail;
            }
            if (count == 0)
                return 0;
            if (count < 0) {
                if (count == INT64_MIN) {
                    wf->what = "block count out of range";
                    goto invalid;
                }
                count = -count;
                if ((rc = read_varint(pp, end, &size)) != 0) {
                    wf->what = "block size";
                    goto fail;
                }
                wf->claimed = size;
                wf->remain = (size_t)(end - *pp);
                wf->what = "block size";
                if (size < 0)
                    goto invalid;
                if (size > end - *pp)
                    goto truncated;
                wf->what = NULL;
            }
            /* Every item takes at least one byte, except items of zero-size types, which no
             * keng schema has: so a count beyond the remaining bytes is a lie. */
            if (count > end - *pp) {
                wf->what = n->type == G_ARRAY ? "array block count" : "map block count";
                wf->claimed = count;
                wf->remain = (size_t)(end - *pp);
                goto truncated;
            }
            for (int64_t i = 0; i < count; i++) {
                if (n->type == G_MAP && (rc = walk_string(pp, start, end, wf)) != 0)
                    return rc;
                if ((rc = walk(g, n->first, pp, start, end, depth + 1, wf)) != 0)
                    return rc;
            }
        }
    }
    wf->what = "unknown schema node";
    goto invalid;
fail:
    wf->offset = (size_t)(at - start);
    return rc;
truncated:
    wf->offset = (size_t)(at - start);
    return KENG_AVRO_ERR_TRUNCATED;
invalid:
    wf->offset = (size_t)(at - start);
    return KENG_AVRO_ERR_INVALID;
}

/* ------------------------------------------------------------------------------------------
 * Decoder
 */

enum slot_state { SLOT_UNBUILT, SLOT_READY, SLOT_OTHER_RECORD, SLOT_FAILED };

/* Everything needed to decode one writer schema id, built on its first message. */
typedef struct slot {
    const schema_entry_t *writer;
    enum slot_state state;
    char error[256];
    keng_kind_t kind;
    guard_t guard;
    uint32_t root;
    avro_schema_t reader; /* keng's reader schema, narrowed to the fields the writer has */
    avro_value_iface_t *reader_iface;
    avro_value_t reader_value;
    bool has_reader_value;
    avro_value_iface_t *rw_iface;
    avro_value_t rw_value;
    bool has_rw_value;
    int ridx[F_COUNT]; /* index in the narrowed reader record, -1: take the default */
    shape_info_t info[F_COUNT];
    avro_schema_t wenum[F_COUNT]; /* writer's enum, for messages */
    int *enum_map[F_COUNT];       /* writer symbol index -> keng value, -1: unknown */
    int enum_n[F_COUNT];
    struct plan_op *plan; /* one op per writer field; NULL: this id takes the Avro-C path */
} slot_t;

struct keng_avro_decoder {
    keng_schema_store_t *store;
    slot_t *slots; /* parallel to store->entries */
    slot_t *last;
    avro_reader_t reader;
    bool avro_c;                        /* every id takes the Avro-C path (codec.decoder=avro-c) */
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
    guard_free(&s->guard);
}

void keng_avro_decoder_destroy(keng_avro_decoder_t *dec)
{
    if (dec == NULL)
        return;
    if (dec->slots != NULL)
        for (size_t i = 0; i < dec->store->count; i++)
            slot_clear(&dec->slots[i]);
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
        if (parse_path(env, &path) < 0) {
            set_err(errstr, errstr_size,
                    "KENG_AVRO_DECODER=%s: expected plan (the default) or avro-c", env);
            keng_avro_decoder_destroy(dec);
            return NULL;
        }
        dec->avro_c = path == KENG_AVRO_PATH_AVRO_C;
    }
    return dec;
oom:
    set_err(errstr, errstr_size, "out of memory creating the Avro decoder");
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
    avro_schema_t we = resolve_link(wfield), re = resolve_link(rfield);
    int wn, rn;

    if (!is_avro_enum(we)) {
        snprintf(s->error, sizeof(s->error), "writer field %s is not an enum", fields[f].name);
        return -1;
    }
    wn = avro_schema_enum_number_of_symbols(we);
    rn = avro_schema_enum_number_of_symbols(re);
    for (int i = 0; i < wn && i < rn; i++) {
        if (strcmp(avro_schema_enum_get(we, i), avro_schema_enum_get(re, i)) != 0) {
            snprintf(s->error, sizeof(s->error),
                     "enum %s has symbol %s at index %d in the writer but %s in keng's reader",
                     fields[f].name, avro_schema_enum_get(we, i), i, avro_schema_enum_get(re, i));
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
            keng_symbol_find(fields[f].symbols, fields[f].nsymbols, avro_schema_enum_get(we, i));
    return 0;
}

static void plan_build(slot_t *s);

static int slot_build(keng_avro_decoder_t *dec, slot_t *s)
{
    const schema_entry_t *w = s->writer, *r;
    char why[200];
    long root;
    int kind;

    root = guard_compile(&s->guard, w->schema);
    if (root < 0) {
        snprintf(s->error, sizeof(s->error), "cannot compile schema id %d", (int)w->id);
        goto fail;
    }
    s->root = (uint32_t)root;
    kind = kind_of_subject(w->subject);
    if (kind < 0) {
        s->state = SLOT_OTHER_RECORD;
        return 0;
    }
    s->kind = (keng_kind_t)kind;
    r = store_pick(dec->store, w->subject, KENG_SCHEMA_READER);
    s->reader = avro_schema_record(avro_schema_name(r->schema), avro_schema_namespace(r->schema));
    if (s->reader == NULL) {
        snprintf(s->error, sizeof(s->error), "cannot create the reader schema: %s",
                 avro_strerror());
        goto fail;
    }
    int nfields = 0;
    for (int f = 0; f < F_COUNT; f++) {
        s->ridx[f] = -1;
        if (!(fields[f].kinds & (1u << kind)))
            continue;
        int ri = avro_schema_record_field_get_index(r->schema, fields[f].name);
        int wi = avro_schema_record_field_get_index(w->schema, fields[f].name);
        if (ri < 0 || wi < 0) {
            if (fields[f].has_default)
                continue;
            snprintf(
                s->error, sizeof(s->error), "%s schema id %d lacks field %s, which has no default",
                ri < 0 ? "keng's reader" : "writer", (int)(ri < 0 ? r->id : w->id), fields[f].name);
            goto fail;
        }
        avro_schema_t rfield = avro_schema_record_field_get_by_index(r->schema, ri);
        avro_schema_t wfield = avro_schema_record_field_get_by_index(w->schema, wi);
        if (check_shape(rfield, &fields[f], &s->info[f], why, sizeof(why)) < 0) {
            snprintf(s->error, sizeof(s->error), "reader schema id %d: %s", (int)r->id, why);
            goto fail;
        }
        if (fields[f].shape == SH_ENUM && slot_enum_map(s, f, wfield, rfield) < 0)
            goto fail;
        if (avro_schema_record_field_append(s->reader, fields[f].name, rfield) != 0) {
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
    plan_build(s);
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

/* The fields of one datum as read, before keng's checks: what both decode paths produce.
 * Strings are borrowed from wherever they were read (Avro-C's value or the message). */
typedef struct raw_field {
    bool present;  /* false: the reader takes the default (null, or the enum's default) */
    const char *s; /* strings */
    size_t len;
    int64_t n; /* numbers; the writer's symbol index for enums */
} raw_field_t;

typedef struct raw_event {
    raw_field_t f[F_COUNT];
    double lat, lon; /* when f[F_LOCATION].present */
} raw_event_t;

static int get_enum_value(const slot_t *s, const raw_event_t *raw, int f, int *out, char *errstr,
                          size_t errstr_size)
{
    int64_t i = raw->f[f].n;

    if (!raw->f[f].present) {
        *out = fields[f].enum_default;
        return 0;
    }
    if (i < 0 || i >= s->enum_n[f])
        return field_fail(errstr, errstr_size, "%s index %d is out of range", fields[f].name,
                          (int)i);
    *out = s->enum_map[f][i];
    if (*out < 0) {
        if (fields[f].enum_default < 0)
            return field_fail(errstr, errstr_size, "%s %s is unknown to keng", fields[f].name,
                              avro_schema_enum_get(s->wenum[f], (int)i));
        *out = fields[f].enum_default;
    }
    return 0;
}

static int get_count_value(const raw_event_t *raw, int f, int32_t *out, char *errstr,
                           size_t errstr_size)
{
    int64_t n = raw->f[f].n;

    if (n < 0 || n > COUNT_MAX)
        return field_fail(errstr, errstr_size, "%s is %d; it must be between 0 and %d",
                          fields[f].name, (int)n, COUNT_MAX);
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
        switch (fields[f].shape) {
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
        return field_fail(errstr, errstr_size, "cannot read %s", fields[f].name);
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
    int e, rc;

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

    if (s->kind == KENG_KIND_INCIDENT) {
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
                return field_fail(errstr, errstr_size,
                                  "location %g,%g is outside -90..90, -180..180", ev->lat, ev->lon);
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
    } else {
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
    }
    return KENG_AVRO_OK;
}

/* ------------------------------------------------------------------------------------------
 * Decode plan: Avro schema resolution done once per writer id, then one pass over the bytes
 * per message. Each field of the writer's record becomes an op: read it into the raw event
 * (the fields keng's narrowed reader has, with the same shape in the writer) or skip it with
 * the length guard. Every length, count, branch, enum index and int is checked as the guard
 * checks it, so a datum the plan reads is one the guard accepts; on any doubt the plan gives
 * up and the datum takes the guard and Avro-C path, which also words the error.
 */

enum { OP_SKIP = F_COUNT };

typedef struct plan_op {
    uint8_t f;           /* keng field, or OP_SKIP */
    uint8_t null_branch; /* optional fields: the writer's null branch */
    uint32_t node;       /* the writer field's guard node */
    uint32_t geo;        /* SH_OPT_GEO: guard node of the writer's GeoPoint record */
    int lat, lon;        /* SH_OPT_GEO: lat and lon in that record */
} plan_op_t;

/* Compiles s's plan, leaving s->plan NULL when the writer has a shape the plan does not read
 * (a type promotion, say): that writer id then always takes the Avro-C path. */
static void plan_build(slot_t *s)
{
    const avro_schema_t ws = s->writer->schema;
    const gnode_t *root = &s->guard.nodes[s->root];
    plan_op_t *ops = calloc(root->n + 1, sizeof(*ops));
    shape_info_t winfo;

    if (ops == NULL)
        return;
    for (uint32_t i = 0; i < root->n; i++) {
        plan_op_t *op = &ops[i];
        op->f = OP_SKIP;
        op->node = s->guard.kids[root->first + i];
        for (int f = 0; f < F_COUNT; f++) {
            if (s->ridx[f] < 0 || avro_schema_record_field_get_index(ws, fields[f].name) != (int)i)
                continue;
            if (check_shape(avro_schema_record_field_get_by_index(ws, (int)i), &fields[f], &winfo,
                            NULL, 0) < 0)
                goto unsupported;
            op->f = (uint8_t)f;
            op->null_branch = (uint8_t)winfo.null_branch;
            if (fields[f].shape == SH_OPT_GEO) {
                const gnode_t *u = &s->guard.nodes[op->node];
                op->geo = s->guard.kids[u->first + (uint32_t)winfo.value_branch];
                op->lat = winfo.lat;
                op->lon = winfo.lon;
            }
        }
    }
    s->plan = ops;
    return;
unsupported:
    free(ops);
}

static inline bool plan_varint(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;

    if (p < end && *p < 0x80) { /* the common case: small numbers, branches, enums */
        *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
        *pp = p + 1;
        return true;
    }
    return read_varint(pp, end, out) == 0;
}

static inline bool plan_int(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *at = *pp;

    return plan_varint(pp, end, out) && *pp - at <= 5 && *out >= INT32_MIN && *out <= INT32_MAX;
}

static inline bool plan_string(const uint8_t **pp, const uint8_t *end, raw_field_t *r)
{
    int64_t n;

    if (!plan_varint(pp, end, &n) || n < 0 || n > end - *pp)
        return false;
    r->s = (const char *)*pp;
    r->len = (size_t)n;
    r->present = true;
    *pp += n;
    return true;
}

static inline bool plan_double(const uint8_t **pp, const uint8_t *end, double *out)
{
    uint64_t w;

    if (end - *pp < 8)
        return false;
    memcpy(&w, *pp, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    memcpy(out, &w, 8);
    *pp += 8;
    return true;
}

static bool plan_skip(const guard_t *g, uint32_t node, const uint8_t **pp, const uint8_t *start,
                      const uint8_t *end, int depth)
{
    walk_fail_t wf = {0, 0, 0, NULL};

    return walk(g, node, pp, start, end, depth, &wf) == 0;
}

/* Reads the datum [*pp, end) with s's plan into raw. False when anything is amiss. */
static bool plan_read(const slot_t *s, const uint8_t **pp, const uint8_t *start, const uint8_t *end,
                      raw_event_t *raw)
{
    const gnode_t *root = &s->guard.nodes[s->root];
    const guard_t *g = &s->guard;
    int64_t v;

    for (int f = 0; f < F_COUNT; f++)
        raw->f[f].present = false;
    for (uint32_t i = 0; i < root->n; i++) {
        const plan_op_t *op = &s->plan[i];
        raw_field_t *r = &raw->f[op->f < OP_SKIP ? op->f : 0];

        if (op->f == OP_SKIP) {
            if (!plan_skip(g, op->node, pp, start, end, 1))
                return false;
            continue;
        }
        switch (fields[op->f].shape) {
        case SH_STRING:
            if (!plan_string(pp, end, r))
                return false;
            break;
        case SH_OPT_STRING:
            if (!plan_varint(pp, end, &v) || (v != 0 && v != 1))
                return false;
            if (v != op->null_branch && !plan_string(pp, end, r))
                return false;
            break;
        case SH_LONG:
            if (!plan_varint(pp, end, &r->n))
                return false;
            r->present = true;
            break;
        case SH_INT:
            if (!plan_int(pp, end, &r->n))
                return false;
            r->present = true;
            break;
        case SH_ENUM:
            if (!plan_int(pp, end, &r->n) || r->n < 0 || r->n >= g->nodes[op->node].n)
                return false;
            r->present = true;
            break;
        case SH_OPT_GEO: {
            const gnode_t *rec = &g->nodes[op->geo];
            if (!plan_varint(pp, end, &v) || (v != 0 && v != 1))
                return false;
            if (v == op->null_branch)
                break;
            for (uint32_t j = 0; j < rec->n; j++) {
                bool ok = (int)j == op->lat ? plan_double(pp, end, &raw->lat)
                          : (int)j == op->lon
                              ? plan_double(pp, end, &raw->lon)
                              : plan_skip(g, g->kids[rec->first + j], pp, start, end, 3);
                if (!ok)
                    return false;
            }
            r->present = true;
            break;
        }
        }
    }
    return true;
}

static slot_t *find_slot(keng_avro_decoder_t *dec, int32_t id)
{
    if (dec->last != NULL && dec->last->writer->id == id)
        return dec->last;
    for (size_t i = 0; i < dec->store->count; i++) {
        if (dec->slots[i].writer->id == id) {
            dec->last = &dec->slots[i];
            return dec->last;
        }
    }
    return NULL;
}

int keng_avro_decode(keng_avro_decoder_t *dec, const void *buf, size_t len, keng_event_t *ev,
                     int32_t *schema_id, char *errstr, size_t errstr_size)
{
    const uint8_t *p = buf, *datum, *end, *q;
    walk_fail_t wf = {0, 0, 0, NULL};
    raw_event_t raw;
    slot_t *s;
    int32_t id;
    int rc;

    if (len < KENG_FRAME_HEADER_LEN) {
        set_err(errstr, errstr_size,
                "message of %zu bytes is shorter than the 5-byte Confluent header", len);
        return KENG_AVRO_ERR_FRAMING;
    }
    if (p[0] != KENG_FRAME_MAGIC) {
        set_err(errstr, errstr_size,
                "first byte is 0x%02x, not the 0x00 that starts Confluent-framed Avro", p[0]);
        return KENG_AVRO_ERR_FRAMING;
    }
    id = (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
    if (schema_id != NULL)
        *schema_id = id;
    s = find_slot(dec, id);
    if (s == NULL) {
        set_err(errstr, errstr_size,
                "schema id %d is not in keng's schema store (schemas/manifest.csv)", (int)id);
        return KENG_AVRO_ERR_UNKNOWN_ID;
    }
    if (s->state == SLOT_UNBUILT)
        slot_build(dec, s);
    if (s->state == SLOT_FAILED) {
        set_err(errstr, errstr_size, "%s", s->error);
        return KENG_AVRO_ERR_INVALID;
    }

    datum = p + KENG_FRAME_HEADER_LEN;
    end = p + len;
    if (s->plan != NULL && !dec->avro_c) {
        q = datum;
        if (plan_read(s, &q, datum, end, &raw) && q == end)
            return finish(s, &raw, ev, dec->summary, errstr, errstr_size);
        /* The guard and Avro-C below word the error (or read what the plan would not). */
    }
    q = datum;
    rc = walk(&s->guard, s->root, &q, datum, end, 0, &wf);
    if (rc == KENG_AVRO_ERR_TRUNCATED) {
        if (wf.claimed > 0)
            set_err(errstr, errstr_size,
                    "truncated datum: %s at byte %zu claims %lld bytes but %zu remain", wf.what,
                    KENG_FRAME_HEADER_LEN + wf.offset, (long long)wf.claimed, wf.remain);
        else
            set_err(errstr, errstr_size,
                    "truncated datum: the message ends inside a %s at byte %zu", wf.what,
                    KENG_FRAME_HEADER_LEN + wf.offset);
        return rc;
    }
    if (rc != 0) {
        set_err(errstr, errstr_size, "invalid datum for schema id %d: %s at byte %zu", (int)id,
                wf.what, KENG_FRAME_HEADER_LEN + wf.offset);
        return rc;
    }
    if (q != end) {
        set_err(errstr, errstr_size, "invalid datum for schema id %d: %zu bytes after its end",
                (int)id, (size_t)(end - q));
        return KENG_AVRO_ERR_INVALID;
    }
    if (s->state == SLOT_OTHER_RECORD) {
        set_err(errstr, errstr_size, "schema id %d is a %s, not an incident or a mediation",
                (int)id, s->writer->subject);
        return KENG_AVRO_ERR_WRONG_RECORD;
    }

    avro_reader_memory_set_source(dec->reader, (const char *)datum, (int64_t)(end - datum));
    avro_value_reset(&s->reader_value);
    if (avro_value_read(dec->reader, &s->rw_value) != 0) {
        set_err(errstr, errstr_size, "invalid datum for schema id %d: %s", (int)id,
                avro_strerror());
        return KENG_AVRO_ERR_INVALID;
    }
    if ((rc = gather_avro(s, &raw, errstr, errstr_size)) != 0)
        return rc;
    return finish(s, &raw, ev, NULL, errstr, errstr_size);
}

/* ------------------------------------------------------------------------------------------
 * Alert records. The schema is keng's own and fixed per id, so the datum is written and read
 * directly in Avro binary (zigzag varints, length-prefixed strings, one array block), without
 * Avro-C's values. The tests decode the result with Avro-C and Apache Avro's Python library.
 */

const char *const keng_alert_status_names[KENG_ALERT_STATUS_COUNT] = {"FIRING", "RESOLVED"};
const char *const keng_alert_level_names[KENG_ALERT_LEVEL_COUNT] = {"BOARD", "COMMUNE", "DISTRICT",
                                                                    "PROVINCE"};

typedef struct alert_out {
    unsigned char *p, *end;
    bool overflow;
} alert_out_t;

static void out_long(alert_out_t *o, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);

    do {
        unsigned char b = (unsigned char)(z & 0x7f);
        z >>= 7;
        if (z)
            b |= 0x80;
        if (o->p == o->end) {
            o->overflow = true;
            return;
        }
        *o->p++ = b;
    } while (z);
}

static void out_string(alert_out_t *o, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    out_long(o, (int64_t)n);
    if (o->overflow || (size_t)(o->end - o->p) < n) {
        o->overflow = true;
        return;
    }
    if (n)
        memcpy(o->p, s, n);
    o->p += n;
}

int keng_avro_encode_alert(const keng_alert_t *a, void *buf, size_t cap, size_t *len, char *errstr,
                           size_t errstr_size)
{
    unsigned char *b = buf;
    alert_out_t o;

    if ((unsigned)a->status >= KENG_ALERT_STATUS_COUNT ||
        (unsigned)a->level >= KENG_ALERT_LEVEL_COUNT || a->nsamples > KENG_ALERT_SAMPLES_MAX) {
        set_err(errstr, errstr_size, "alert %s: status, level or sample count out of range",
                a->alert_id ? a->alert_id : "");
        return -1;
    }
    if (cap < KENG_FRAME_HEADER_LEN) {
        set_err(errstr, errstr_size, "buffer of %zu bytes too small for an alert", cap);
        return -1;
    }
    b[0] = KENG_FRAME_MAGIC;
    b[1] = 0;
    b[2] = 0;
    b[3] = 0;
    b[4] = KENG_SCHEMA_ID_ALERT;
    o.p = b + KENG_FRAME_HEADER_LEN;
    o.end = b + cap;
    o.overflow = false;
    out_string(&o, a->alert_id);
    out_string(&o, a->fingerprint);
    out_string(&o, a->rule);
    out_long(&o, a->status);
    out_long(&o, a->level);
    out_string(&o, a->scope_id);
    out_string(&o, a->window);
    out_long(&o, a->count);
    out_long(&o, a->threshold);
    out_long(&o, a->starts_at);
    out_long(&o, a->has_ends_at ? 1 : 0); /* union branch: ["null", long] */
    if (a->has_ends_at)
        out_long(&o, a->ends_at);
    out_string(&o, a->summary);
    if (a->nsamples) {
        out_long(&o, (int64_t)a->nsamples);
        for (size_t i = 0; i < a->nsamples; i++)
            out_string(&o, a->sample_event_ids[i]);
    }
    out_long(&o, 0); /* end of the array */
    if (o.overflow) {
        set_err(errstr, errstr_size, "buffer of %zu bytes too small for alert %s", cap,
                a->alert_id ? a->alert_id : "");
        return -1;
    }
    *len = (size_t)(o.p - b);
    return 0;
}

typedef struct alert_in {
    const unsigned char *p, *end;
    char *scratch, *scratch_end;
    int err;
    const char *what;
} alert_in_t;

static int64_t in_long(alert_in_t *in, const char *what)
{
    uint64_t z = 0;

    for (int shift = 0; !in->err; shift += 7) {
        if (in->p == in->end) {
            in->err = KENG_AVRO_ERR_TRUNCATED;
            in->what = what;
            return 0;
        }
        if (shift > 63) {
            in->err = KENG_AVRO_ERR_INVALID;
            in->what = what;
            return 0;
        }
        unsigned char b = *in->p++;
        z |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* Copies the next string into scratch (or skips it when keep is false). */
static const char *in_string(alert_in_t *in, const char *what, bool keep)
{
    int64_t n = in_long(in, what);
    char *s;

    if (in->err)
        return "";
    if (n < 0) {
        in->err = KENG_AVRO_ERR_INVALID;
        in->what = what;
        return "";
    }
    if ((uint64_t)n > (uint64_t)(in->end - in->p)) {
        in->err = KENG_AVRO_ERR_TRUNCATED;
        in->what = what;
        return "";
    }
    if (!keep) {
        in->p += n;
        return "";
    }
    if ((uint64_t)n + 1 > (uint64_t)(in->scratch_end - in->scratch)) {
        in->err = KENG_AVRO_ERR_FIELD;
        in->what = what;
        return "";
    }
    s = in->scratch;
    memcpy(s, in->p, (size_t)n);
    s[n] = '\0';
    in->scratch += n + 1;
    in->p += n;
    return s;
}

int keng_avro_decode_alert(const void *buf, size_t len, keng_alert_t *out, char *scratch,
                           size_t scratch_cap, char *errstr, size_t errstr_size)
{
    const unsigned char *b = buf;
    alert_in_t in = {0};
    int64_t v;

    memset(out, 0, sizeof(*out));
    if (len < KENG_FRAME_HEADER_LEN || b[0] != KENG_FRAME_MAGIC) {
        set_err(errstr, errstr_size, "not a framed Avro message (%zu bytes)", len);
        return KENG_AVRO_ERR_FRAMING;
    }
    int32_t id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 |
                           (uint32_t)b[4]);
    if (id != KENG_SCHEMA_ID_ALERT) {
        set_err(errstr, errstr_size, "schema id %d is not the Alert schema (%d)", (int)id,
                KENG_SCHEMA_ID_ALERT);
        return KENG_AVRO_ERR_WRONG_RECORD;
    }
    in.p = b + KENG_FRAME_HEADER_LEN;
    in.end = b + len;
    in.scratch = scratch;
    in.scratch_end = scratch + scratch_cap;
    out->alert_id = in_string(&in, "alert_id", true);
    out->fingerprint = in_string(&in, "fingerprint", true);
    out->rule = in_string(&in, "rule", true);
    v = in_long(&in, "status");
    if (!in.err && (v < 0 || v >= KENG_ALERT_STATUS_COUNT)) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "status";
    }
    out->status = (keng_alert_status_t)v;
    v = in_long(&in, "level");
    if (!in.err && (v < 0 || v >= KENG_ALERT_LEVEL_COUNT)) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "level";
    }
    out->level = (keng_alert_level_t)v;
    out->scope_id = in_string(&in, "scope_id", true);
    out->window = in_string(&in, "window", true);
    out->count = in_long(&in, "count");
    out->threshold = in_long(&in, "threshold");
    out->starts_at = in_long(&in, "starts_at");
    v = in_long(&in, "ends_at");
    if (!in.err && v != 0 && v != 1) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "ends_at";
    }
    out->has_ends_at = v == 1;
    if (out->has_ends_at)
        out->ends_at = in_long(&in, "ends_at");
    out->summary = in_string(&in, "summary", true);
    for (int blocks = 0; !in.err; blocks++) {
        int64_t n = in_long(&in, "sample_event_ids");
        if (in.err || n == 0)
            break;
        if (n < 0) { /* a negative count is followed by the block's size in bytes */
            n = -n;
            in_long(&in, "sample_event_ids");
        }
        if (n > (int64_t)(in.end - in.p) || blocks > COUNT_MAX) {
            in.err = KENG_AVRO_ERR_TRUNCATED;
            in.what = "sample_event_ids";
            break;
        }
        for (int64_t i = 0; i < n && !in.err; i++) {
            bool keep = out->nsamples < KENG_ALERT_SAMPLES_MAX;
            const char *s = in_string(&in, "sample_event_ids", keep);
            if (keep && !in.err)
                out->sample_event_ids[out->nsamples++] = s;
        }
    }
    if (!in.err && in.p != in.end) {
        in.err = KENG_AVRO_ERR_INVALID;
        in.what = "the end of the record";
    }
    if (in.err) {
        set_err(errstr, errstr_size, "%s alert record at %s",
                in.err == KENG_AVRO_ERR_TRUNCATED ? "truncated"
                : in.err == KENG_AVRO_ERR_FIELD   ? "oversized"
                                                  : "invalid",
                in.what);
        return in.err;
    }
    return KENG_AVRO_OK;
}
