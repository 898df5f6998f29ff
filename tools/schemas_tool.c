/* keng-schemas: keng's schemas in a Confluent-compatible Schema Registry, for operators and
 * CI: registers the manifest's schemas under their topics' subjects, sets BACKWARD on keng's
 * subjects, prints the ids, and asks the registry whether a new .avsc may follow the latest
 * version before it is committed. It never writes to Kafka; it is not keng-registry (the
 * board registry). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "avro_codec.h"
#include "program.h"
#include "schemareg.h"

/* keng-schemas's own exit codes, beside the shared ones (docs/DESIGN.md, "Exit codes"). */
enum { EXIT_INCOMPATIBLE = 3 };

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-schemas [options] register | ids | check FILE.avsc...\n"
            "\n"
            "  register   register every schema of the manifest, in its order, under its\n"
            "             topic's subject (antt.incidents-value, ...), then set BACKWARD\n"
            "             compatibility on those subjects; prints subject, version and id\n"
            "  ids        print the registry's id of every schema of the manifest (registers\n"
            "             nothing; exit 1 when one is not registered)\n"
            "  check      ask the registry whether each FILE.avsc may follow the latest\n"
            "             version of its subject: exit 0 when every one may, 3 when one may\n"
            "             not (the line names the subject and the fields)\n"
            "\n"
            "  --url URL               the registry's Confluent-compatible API (for Apicurio:\n"
            "                          http://host:port/apis/ccompat/v7); again for failover\n"
            "  --config FILE           a keng config: schema.registry.* and topic.* keys\n"
            "  --basic-auth-file FILE  HTTP basic auth: the file's first line is USER:PASSWORD\n"
            "  --ca-file FILE          the CA bundle that checks an https:// registry\n"
            "  --schemas DIR           a folder laid out like schemas/ [the built-in manifest]\n"
            "  --subject NAME          check: the subject to check against [the record's]\n"
            "  --require-manifest-ids  register: exit 1 when the registry's id of a schema is\n"
            "                          not the manifest's (docs/DESIGN.md, \"Schema ids\")\n"
            "\n"
            "Exit codes: 0 done; 1 the registry refused or lacks something; 3 incompatible;\n"
            "64 usage; 69 no registry answered; 78 a config, schema or auth file that does\n"
            "not load. docs/DESIGN.md, \"Exit codes\".\n");
}

static const keng_program_t program = {"keng-schemas", 0, usage, NULL, 0};

typedef struct options {
    char urls[2048];
    const char *config, *auth_file, *ca_file, *schemas, *subject;
    int require_ids;
} options_t;

static int take_url(const char *value, void *to)
{
    options_t *o = to;
    size_t used = strlen(o->urls);

    if (!*value || strchr(value, ',') || used + strlen(value) + 2 > sizeof(o->urls)) {
        fprintf(stderr, "keng-schemas: --url takes one URL (give --url again for another)\n");
        return KENG_EXIT_USAGE;
    }
    snprintf(o->urls + used, sizeof(o->urls) - used, "%s%s", used ? "," : "", value);
    return 0;
}

/* USER:PASSWORD from the first line of path into conf. Returns 0 or KENG_EXIT_CONFIG. */
static int read_auth_file(const char *path, keng_schemareg_conf_t *conf)
{
    char line[1024], *colon;
    FILE *f = fopen(path, "r");
    int rc = KENG_EXIT_CONFIG;

    if (!f) {
        fprintf(stderr, "keng-schemas: --basic-auth-file: cannot read %s\n", path);
        return rc;
    }
    keng_config_warn_if_exposed(path, "--basic-auth-file");
    if (!fgets(line, sizeof(line), f)) {
        fprintf(stderr, "keng-schemas: --basic-auth-file: %s is empty\n", path);
        goto out;
    }
    line[strcspn(line, "\r\n")] = '\0';
    colon = strchr(line, ':');
    if (!colon || colon == line) {
        fprintf(stderr,
                "keng-schemas: --basic-auth-file: the first line of %s is not "
                "USER:PASSWORD\n",
                path);
        goto out;
    }
    *colon = '\0';
    free(conf->username);
    free(conf->password);
    conf->username = strdup(line);
    conf->password = strdup(colon + 1);
    rc = conf->username && conf->password ? 0 : KENG_EXIT_FAILURE;
out:
    memset(line, 0, sizeof(line));
    fclose(f);
    return rc;
}

/* The exit code of a registry call that did not succeed. */
static int exit_of(int rc)
{
    return rc == KENG_SCHEMAREG_UNREACHABLE ? KENG_EXIT_UNAVAILABLE : KENG_EXIT_FAILURE;
}

static int run_register(keng_schemareg_conf_t *conf, const keng_schema_store_t *store,
                        int require_ids)
{
    char errstr[1024];
    int exit_code = 0;
    bool seen[3] = {false, false, false};

    for (size_t i = 0; i < keng_schema_store_count(store); i++) {
        const char *record, *json, *subject;
        int version;
        int32_t manifest_id = keng_schema_store_at(store, i, &record, &version, &json), id = 0;
        int got_version = -1, rc;

        subject = keng_schemareg_subject(conf, record);
        if (!subject) {
            fprintf(stderr,
                    "keng-schemas: %s v%d (manifest id %d): keng writes no topic of this "
                    "record; not registered\n",
                    record, version, (int)manifest_id);
            continue;
        }
        rc = keng_schemareg_register(conf, subject, json, &id, errstr, sizeof(errstr));
        if (rc == KENG_SCHEMAREG_REFUSED) {
            fprintf(stderr, "keng-schemas: %s refused %s v%d (manifest id %d): %s\n", subject,
                    record, version, (int)manifest_id, errstr);
            return EXIT_INCOMPATIBLE;
        }
        if (rc != KENG_SCHEMAREG_OK) {
            fprintf(stderr, "keng-schemas: registering %s v%d under %s: %s\n", record, version,
                    subject, errstr);
            return exit_of(rc);
        }
        keng_schemareg_lookup(conf, subject, json, &id, &got_version, errstr, sizeof(errstr));
        printf("subject=%s version=%d id=%d record=%s record_version=%d manifest_id=%d\n", subject,
               got_version, (int)id, record, version, (int)manifest_id);
        if (id != manifest_id) {
            fprintf(stderr,
                    "keng-schemas: %s: the registry's id of %s v%d is %d, the manifest's %d: "
                    "messages framed with manifest ids read differently in the two modes "
                    "(docs/DESIGN.md, \"Schema ids\")\n",
                    subject, record, version, (int)id, (int)manifest_id);
            if (require_ids)
                exit_code = KENG_EXIT_FAILURE;
        }
        /* BACKWARD from its first version on, so that every later one is checked. */
        for (int k = 0; k < 3; k++) {
            if (seen[k] || strcmp(subject, conf->subjects[k]) != 0)
                continue;
            seen[k] = true;
            rc =
                keng_schemareg_set_compatibility(conf, subject, "BACKWARD", errstr, sizeof(errstr));
            if (rc != KENG_SCHEMAREG_OK) {
                fprintf(stderr, "keng-schemas: setting BACKWARD on %s: %s\n", subject, errstr);
                return exit_of(rc);
            }
            printf("subject=%s compatibility=BACKWARD\n", subject);
        }
    }
    return exit_code;
}

static int run_ids(keng_schemareg_conf_t *conf, const keng_schema_store_t *store)
{
    char errstr[1024];
    int exit_code = 0;

    for (size_t i = 0; i < keng_schema_store_count(store); i++) {
        const char *record, *json, *subject;
        int version, got_version = -1, rc;
        int32_t manifest_id = keng_schema_store_at(store, i, &record, &version, &json), id = 0;

        if (!(subject = keng_schemareg_subject(conf, record)))
            continue;
        rc = keng_schemareg_lookup(conf, subject, json, &id, &got_version, errstr, sizeof(errstr));
        if (rc == KENG_SCHEMAREG_NOT_FOUND) {
            printf("subject=%s record=%s record_version=%d manifest_id=%d id=none\n", subject,
                   record, version, (int)manifest_id);
            exit_code = KENG_EXIT_FAILURE;
            continue;
        }
        if (rc != KENG_SCHEMAREG_OK) {
            fprintf(stderr, "keng-schemas: looking up %s v%d under %s: %s\n", record, version,
                    subject, errstr);
            return exit_of(rc);
        }
        printf("subject=%s version=%d id=%d record=%s record_version=%d manifest_id=%d\n", subject,
               got_version, (int)id, record, version, (int)manifest_id);
    }
    return exit_code;
}

/* The record's full name of a schema's JSON, into out. Returns 0, or -1. */
static int record_name(json_t *schema, char *out, size_t size)
{
    const char *name = json_string_value(json_object_get(schema, "name"));
    const char *ns = json_string_value(json_object_get(schema, "namespace"));

    if (!json_is_object(schema) || !name ||
        strcmp(json_string_value(json_object_get(schema, "type")) ?: "", "record") != 0)
        return -1;
    if (strchr(name, '.') || !ns || !*ns)
        snprintf(out, size, "%s", name);
    else
        snprintf(out, size, "%s.%s", ns, name);
    return 0;
}

static json_t *field_named(json_t *schema, const char *name)
{
    json_t *fields = json_object_get(schema, "fields"), *f;
    size_t i;

    json_array_foreach(fields, i, f)
    {
        if (strcmp(json_string_value(json_object_get(f, "name")) ?: "", name) == 0)
            return f;
    }
    return NULL;
}

/* What makes new unable to read data written with old (BACKWARD), field by field, as far as
 * keng can tell by itself: the registry said it is incompatible, this says where. */
static void name_fields(json_t *old, json_t *new, char *out, size_t size)
{
    json_t *fields = json_object_get(new, "fields"), *f;
    size_t i, used = 0;

    out[0] = '\0';
    json_array_foreach(fields, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name")) ?: "?";
        json_t *was = field_named(old, name);
        if (!was && !json_object_get(f, "default"))
            used +=
                (size_t)snprintf(out + used, used < size ? size - used : 0,
                                 "%sfield %s is new and has no default", used ? "; " : "", name);
        else if (was && !json_equal(json_object_get(was, "type"), json_object_get(f, "type")))
            used += (size_t)snprintf(out + used, used < size ? size - used : 0,
                                     "%sfield %s changed its type", used ? "; " : "", name);
        if (used >= size)
            return;
    }
}

static int run_check(keng_schemareg_conf_t *conf, const char *subject_flag, char **files, int count)
{
    int exit_code = 0;

    for (int k = 0; k < count; k++) {
        json_error_t jerr;
        json_t *schema = json_load_file(files[k], 0, &jerr), *old = NULL;
        char record[256], errstr[1024], where[1024] = "", *json = NULL, *latest = NULL;
        const char *subject;
        bool compatible = false;
        int rc;

        if (!schema || record_name(schema, record, sizeof(record)) != 0) {
            fprintf(stderr, "keng-schemas: %s: %s\n", files[k],
                    schema ? "not an Avro record schema" : jerr.text);
            json_decref(schema);
            return KENG_EXIT_CONFIG;
        }
        subject = subject_flag ? subject_flag : keng_schemareg_subject(conf, record);
        if (!subject) {
            fprintf(stderr,
                    "keng-schemas: %s: keng writes no topic of %s; name one with "
                    "--subject\n",
                    files[k], record);
            json_decref(schema);
            return KENG_EXIT_USAGE;
        }
        json = json_dumps(schema, JSON_COMPACT);
        rc = json ? keng_schemareg_check(conf, subject, json, &compatible, errstr, sizeof(errstr))
                  : KENG_SCHEMAREG_ERROR;
        if (rc == KENG_SCHEMAREG_NOT_FOUND) {
            printf("subject=%s file=%s compatible=true (the subject has no version yet)\n", subject,
                   files[k]);
        } else if (rc != KENG_SCHEMAREG_OK) {
            fprintf(stderr, "keng-schemas: %s: checking against %s: %s\n", files[k], subject,
                    errstr);
            exit_code = exit_of(rc);
        } else if (compatible) {
            printf("subject=%s file=%s compatible=true\n", subject, files[k]);
        } else {
            if (keng_schemareg_latest(conf, subject, &latest, errstr, sizeof(errstr)) ==
                    KENG_SCHEMAREG_OK &&
                (old = json_loads(latest, 0, NULL)) != NULL)
                name_fields(old, schema, where, sizeof(where));
            printf("subject=%s file=%s compatible=false\n", subject, files[k]);
            fprintf(stderr,
                    "keng-schemas: %s: incompatible with the latest version of %s "
                    "(BACKWARD: keng must read every event already written)%s%s\n",
                    files[k], subject, where[0] ? ": " : "", where);
            exit_code = EXIT_INCOMPATIBLE;
        }
        json_decref(old);
        free(latest);
        free(json);
        json_decref(schema);
        if (exit_code != 0 && exit_code != EXIT_INCOMPATIBLE)
            return exit_code;
    }
    return exit_code;
}

int main(int argc, char **argv)
{
    options_t o;
    const keng_program_flag_t table[] = {
        KENG_FLAG_TAKE("url", take_url, &o),
        KENG_FLAG("config", &o.config, NULL),
        KENG_FLAG("basic-auth-file", &o.auth_file, NULL),
        KENG_FLAG("ca-file", &o.ca_file, NULL),
        KENG_FLAG("schemas", &o.schemas, NULL),
        KENG_FLAG("subject", &o.subject, NULL),
        KENG_FLAG_SET("require-manifest-ids", &o.require_ids),
        KENG_FLAGS_END,
    };
    keng_config_t *cfg = NULL;
    keng_schemareg_conf_t conf;
    keng_schema_store_t *store = NULL;
    char errstr[1024];
    const char *command;
    int operands, rc;

    memset(&o, 0, sizeof(o));
    memset(&conf, 0, sizeof(conf));
    keng_program_start(&program);
    rc = keng_program_parse(&program, argc, argv, table, &operands);
    if (rc >= 0)
        return rc;
    if (operands >= argc) {
        fprintf(stderr, "keng-schemas: name a command: register, ids or check FILE.avsc\n");
        return KENG_EXIT_USAGE;
    }
    command = argv[operands];
    if (strcmp(command, "check") == 0
            ? operands + 1 >= argc
            : (strcmp(command, "register") != 0 && strcmp(command, "ids") != 0) ||
                  operands + 1 < argc) {
        fprintf(stderr, "keng-schemas: expected register, ids or check FILE.avsc..., not '%s%s'\n",
                command, operands + 1 < argc ? " ..." : "");
        return KENG_EXIT_USAGE;
    }
    /* Any program's config: only its schema.registry.* and topic.* keys are read here. */
    cfg = keng_config_new();
    if (!cfg)
        return KENG_EXIT_FAILURE;
    if (o.config && keng_config_load(cfg, o.config, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "keng-schemas: %s\n", errstr);
        keng_config_destroy(cfg);
        return KENG_EXIT_USAGE;
    }
    if (o.ca_file)
        keng_config_set(cfg, "schema.registry.ca_file", o.ca_file);
    if (o.urls[0])
        keng_config_set(cfg, "schema.registry.url", o.urls);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = keng_schemareg_conf_from_config(cfg, &conf, errstr, sizeof(errstr));
    if (rc <= 0) {
        fprintf(stderr, "keng-schemas: %s\n",
                rc < 0 ? errstr : "no registry: give --url (or schema.registry.url in --config)");
        rc = rc < 0 ? KENG_EXIT_CONFIG : KENG_EXIT_USAGE;
        goto out;
    }
    if (o.auth_file && (rc = read_auth_file(o.auth_file, &conf)) != 0)
        goto out;
    if (strcmp(command, "check") == 0) {
        rc = run_check(&conf, o.subject, argv + operands + 1, argc - operands - 1);
        goto out;
    }
    store = o.schemas ? keng_schema_store_load(o.schemas, errstr, sizeof(errstr))
                      : keng_schema_store_builtin(errstr, sizeof(errstr));
    if (!store) {
        fprintf(stderr, "keng-schemas: %s\n", errstr);
        rc = KENG_EXIT_CONFIG;
        goto out;
    }
    rc = strcmp(command, "register") == 0 ? run_register(&conf, store, o.require_ids)
                                          : run_ids(&conf, store);
out:
    keng_schema_store_destroy(store);
    keng_schemareg_conf_free(&conf);
    keng_config_destroy(cfg);
    curl_global_cleanup();
    return rc;
}
