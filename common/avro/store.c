/* The schema store: the schemas keng knows by id (built in, or read from a schemas/-like
 * directory) and the pins a config sets; it never encodes or decodes a datum. */
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "internal.h"
#include "schemas_builtin.h"

void keng_avro__set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (errstr == NULL || errstr_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}
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
const schema_entry_t *keng_avro__store_pick(const keng_schema_store_t *store, const char *subject,
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
        keng_avro__set_err(errstr, errstr_size, "%s: schema id %d must be a positive integer",
                           where, (int)id);
        return -1;
    }
    if (store_find(store, id) != NULL) {
        keng_avro__set_err(errstr, errstr_size,
                           "%s: schema id %d is listed twice; ids are never reused", where,
                           (int)id);
        return -1;
    }
    for (size_t i = 0; i < store->count; i++) {
        if (strcmp(store->entries[i].subject, subject) == 0 &&
            store->entries[i].version == version) {
            keng_avro__set_err(errstr, errstr_size, "%s: %s version %d is listed twice", where,
                               subject, version);
            return -1;
        }
    }
    if (avro_schema_from_json_length(json, json_len, &schema) != 0) {
        keng_avro__set_err(errstr, errstr_size, "%s: not a valid Avro schema: %s", where,
                           avro_strerror());
        return -1;
    }
    if (!is_avro_record(schema)) {
        keng_avro__set_err(errstr, errstr_size, "%s: the schema must be a record", where);
        avro_schema_decref(schema);
        return -1;
    }
    const char *ns = avro_schema_namespace(schema);
    snprintf(fullname, sizeof(fullname), "%s%s%s", ns != NULL ? ns : "",
             ns != NULL && *ns ? "." : "", avro_schema_name(schema));
    if (strcmp(fullname, subject) != 0) {
        keng_avro__set_err(errstr, errstr_size,
                           "%s: the schema's record is %s but the manifest says %s", where,
                           fullname, subject);
        avro_schema_decref(schema);
        return -1;
    }
    grown = realloc(store->entries, (store->count + 1) * sizeof(*grown));
    if (grown == NULL) {
        avro_schema_decref(schema);
        keng_avro__set_err(errstr, errstr_size, "out of memory");
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
        keng_avro__set_err(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

keng_schema_store_t *keng_schema_store_builtin(char *errstr, size_t errstr_size)
{
    keng_schema_store_t *store = calloc(1, sizeof(*store));

    if (store == NULL) {
        keng_avro__set_err(errstr, errstr_size, "out of memory");
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
        keng_avro__set_err(errstr, errstr_size, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        keng_avro__set_err(errstr, errstr_size, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        keng_avro__set_err(errstr, errstr_size, "out of memory reading %s", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        keng_avro__set_err(errstr, errstr_size, "cannot read %s", path);
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
        keng_avro__set_err(errstr, errstr_size, "out of memory");
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
            keng_avro__set_err(errstr, errstr_size,
                               "%s line %d: expected id,subject,version,file but found '%s'", path,
                               lineno, line);
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
        keng_avro__set_err(errstr, errstr_size, "%s lists no schema", path);
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

size_t keng_schema_store_count(const keng_schema_store_t *store)
{
    return store != NULL ? store->count : 0;
}

int32_t keng_schema_store_at(const keng_schema_store_t *store, size_t i, const char **subject,
                             int *version, const char **json)
{
    if (store == NULL || i >= store->count)
        return -1;
    if (subject != NULL)
        *subject = store->entries[i].subject;
    if (version != NULL)
        *version = store->entries[i].version;
    if (json != NULL)
        *json = store->entries[i].json;
    return store->entries[i].id;
}

int keng_schema_store_pin(keng_schema_store_t *store, keng_schema_role_t role, const char *subject,
                          int version, char *errstr, size_t errstr_size)
{
    schema_entry_t *chosen = NULL;
    char versions[128] = "";
    size_t used = 0;

    if (role != KENG_SCHEMA_READER && role != KENG_SCHEMA_WRITER) {
        keng_avro__set_err(errstr, errstr_size, "unknown schema role %d", (int)role);
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
            keng_avro__set_err(errstr, errstr_size, "the schema store has no subject %s", subject);
        else
            keng_avro__set_err(errstr, errstr_size,
                               "the schema store has no version %d of %s; it has version %s",
                               version, subject, versions);
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
    e = keng_avro__store_pick(store, subject, role);
    return e != NULL ? e->id : -1;
}

int keng_avro__parse_path(const char *value, keng_avro_path_t *path)
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
        keng_avro__set_err(w->errstr, w->errstr_size,
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
        keng_avro__set_err(
            w->errstr, w->errstr_size,
            "%s=%s: expected a subject in the key and a version number as the value, "
            "such as schemas.reader.vn.antt.Incident=1",
            key, value);
        w->rc = -1;
        return;
    }
    if (keng_schema_store_pin(w->store, role, subject, (int)version, why, sizeof(why)) < 0) {
        keng_avro__set_err(w->errstr, w->errstr_size, "%s=%s: %s", key, value, why);
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
    if (keng_avro__parse_path(keng_config_get(cfg, "codec.decoder", "plan"), &store->path) < 0) {
        keng_avro__set_err(errstr, errstr_size,
                           "codec.decoder=%s: expected plan (the default) or avro-c",
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
