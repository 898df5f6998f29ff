/* keng-registry: writes the default board registry as CSV, or checks a deployment's CSV, alone
 * or against the version before it, and prints its counts, so that a registry can be reviewed
 * before keng uses it; publishes a version that passes to the topic antt.registry, checked
 * against the version in force before it there, and lists the versions published. It never
 * changes a CSV it checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "program.h"
#include "registry.h"
#include "registry_check.h"
#include "registry_topic.h"
#include "timeutil.h"

/* Findings past this many of a kind are counted, not printed: a version that drops every
 * board would otherwise print thousands of lines. */
#define MAX_PRINTED 50

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: keng-registry --write FILE\n"
            "       keng-registry --check FILE [--units UNITS.csv] [--effective TIME]\n"
            "                     [--previous OLD.csv [--lineage LINEAGE.csv]\n"
            "                      [--previous-effective TIME]]\n"
            "       keng-registry --publish FILE --effective TIME [--units UNITS.csv]\n"
            "                     [--lineage LINEAGE.csv] [--replace] [--allow-past]\n"
            "                     [--brokers LIST] [--config FILE]\n"
            "       keng-registry --versions [--brokers LIST] [--config FILE]\n"
            "       keng-registry\n"
            "\n"
            "  --write FILE               write the generated default registry as CSV ('-' for\n"
            "                             stdout)\n"
            "  --check FILE               load a registry CSV and print its counts, or refuse it\n"
            "                             naming the line (exit 78)\n"
            "  --units UNITS.csv          the version's list of units (commune_id,commune_name,\n"
            "                             ...): a board whose commune it lacks is refused, a\n"
            "                             listed commune with no board is a warning\n"
            "  --previous OLD.csv         the version in force before FILE (keng-registry --write\n"
            "                             gives the built-in one): a board of OLD missing from\n"
            "                             FILE, or an id that names another thing in FILE than in\n"
            "                             OLD, is refused unless the lineage says so\n"
            "  --lineage LINEAGE.csv      from_id,from_name,to_id,to_name: what each unit or\n"
            "                             board of OLD became (an empty to_id: removed)\n"
            "  --effective TIME           when FILE takes effect: a date YYYY-MM-DD (its midnight\n"
            "                             in Asia/Ho_Chi_Minh) or an RFC 3339 time\n"
            "  --previous-effective TIME  when OLD took effect; TIME must come after it\n"
            "  --publish FILE             check FILE as --check does, against the version in\n"
            "                             force before TIME in the topic antt.registry (with\n"
            "                             --lineage, --units), and publish it only if it passes;\n"
            "                             prints the topic, partition and offset\n"
            "  --replace                  publish again at the latest version's effective time\n"
            "                             (else TIME must come after every published version)\n"
            "  --allow-past               publish a TIME before now (a first version, a version\n"
            "                             no program has counted under yet)\n"
            "  --versions                 list the versions in antt.registry, marking the one in\n"
            "                             force now\n"
            "  --brokers LIST             bootstrap servers (else $KENG_BROKERS, else the config)\n"
            "  --config FILE              key=value config: kafka.* keys (a secured cluster's\n"
            "                             login), topic.registry (default antt.registry)\n"
            "  (no option)                print the counts of the generated default\n"
            "\n"
            "The rules, and the lineage's format: docs/DESIGN.md, \"Registry versions\"; the\n"
            "topic and its document: \"The topic antt.registry\".\n");
}

static keng_config_keys_t registry_keys = {"topic.registry", NULL};
static const char *const *const config_tables[] = {keng_config_common_keys, registry_keys, NULL};
static const keng_program_t program = {"keng-registry", KENG_PROGRAM_RDKAFKA, usage, config_tables,
                                       0};

typedef struct options {
    const char *write_path, *check_path, *previous_path, *lineage_path, *units_path;
    const char *effective, *previous_effective;
    const char *publish_path, *brokers, *config_path;
    int versions, replace, allow_past;
} options_t;

typedef struct printed {
    size_t refusals, warnings;
} printed_t;

static void say(void *arg, bool refusal, const char *message)
{
    printed_t *p = arg;
    size_t *n = refusal ? &p->refusals : &p->warnings;

    if ((*n)++ < MAX_PRINTED)
        fprintf(stderr, "keng-registry: %s%s\n", refusal ? "" : "warning: ", message);
}

static void print_counts(const keng_registry_t *reg)
{
    unsigned long groups = 0, members = 0;

    for (uint32_t i = 0; i < keng_registry_board_count(reg); i++) {
        groups += keng_registry_board(reg, i)->groups;
        members += keng_registry_board(reg, i)->members;
    }
    printf("districts=%zu communes=%zu boards=%zu groups=%lu members=%lu\n",
           keng_registry_district_count(reg), keng_registry_commune_count(reg),
           keng_registry_board_count(reg), groups, members);
    printf("levels: %s\n", keng_registry_level_list(reg));
}

/* The flags that only --check (or --publish) takes, those that only --previous makes sense
 * of, and those that only --publish or --versions take, given alone or with a mode they do
 * not go with; and times that do not parse. Returns 0, or KENG_EXIT_USAGE after saying
 * why. */
static int check_flags(const options_t *o, keng_registry_check_t *in)
{
    const char *needs_check = o->previous_path        ? "--previous"
                              : o->lineage_path       ? "--lineage"
                              : o->units_path         ? "--units"
                              : o->effective          ? "--effective"
                              : o->previous_effective ? "--previous-effective"
                                                      : NULL;
    const char *needs_previous = o->lineage_path         ? "--lineage"
                                 : o->previous_effective ? "--previous-effective"
                                                         : NULL;
    const char *needs_publish = o->replace ? "--replace" : o->allow_past ? "--allow-past" : NULL;
    const char *needs_kafka = o->brokers ? "--brokers" : o->config_path ? "--config" : NULL;

    in->effective_ms = in->previous_effective_ms = KENG_NO_TIME;
    if (needs_publish && !o->publish_path) {
        fprintf(stderr, "keng-registry: %s needs --publish FILE\n", needs_publish);
        return KENG_EXIT_USAGE;
    }
    if (needs_kafka && !o->publish_path && !o->versions) {
        fprintf(stderr, "keng-registry: %s needs --publish FILE or --versions\n", needs_kafka);
        return KENG_EXIT_USAGE;
    }
    if (o->publish_path || o->versions) {
        const char *other = o->check_path                    ? "--check"
                            : o->write_path                  ? "--write"
                            : o->previous_path               ? "--previous"
                            : o->previous_effective          ? "--previous-effective"
                            : o->publish_path && o->versions ? "--versions"
                                                             : NULL;
        if (other) {
            fprintf(stderr, "keng-registry: %s does not go with %s%s\n",
                    o->publish_path ? "--publish" : "--versions", other,
                    o->publish_path ? " (a version is published against the one before it in "
                                      "the topic)"
                                    : "");
            return KENG_EXIT_USAGE;
        }
        if (o->versions && needs_check) {
            fprintf(stderr, "keng-registry: %s does not go with --versions\n", needs_check);
            return KENG_EXIT_USAGE;
        }
        if (o->publish_path && !o->effective) {
            fprintf(stderr, "keng-registry: --publish needs --effective TIME\n");
            return KENG_EXIT_USAGE;
        }
    }
    if (needs_check && !o->check_path && !o->publish_path) {
        fprintf(stderr, "keng-registry: %s needs --check FILE\n", needs_check);
        return KENG_EXIT_USAGE;
    }
    if (needs_previous && !o->previous_path && !o->publish_path) {
        fprintf(stderr, "keng-registry: %s needs --previous OLD.csv\n", needs_previous);
        return KENG_EXIT_USAGE;
    }
    if (o->previous_effective && !o->effective) {
        fprintf(stderr, "keng-registry: --previous-effective needs --effective\n");
        return KENG_EXIT_USAGE;
    }
    if ((o->effective && keng_time_parse_day_or_rfc3339(o->effective, &in->effective_ms) != 0) ||
        (o->previous_effective &&
         keng_time_parse_day_or_rfc3339(o->previous_effective, &in->previous_effective_ms) != 0)) {
        bool first = o->effective && in->effective_ms == KENG_NO_TIME;
        fprintf(stderr,
                "keng-registry: %s '%s' is not a date YYYY-MM-DD or an RFC 3339 time "
                "(2025-07-01, 2025-07-01T00:00:00+07:00)\n",
                first ? "--effective" : "--previous-effective",
                first ? o->effective : o->previous_effective);
        return KENG_EXIT_USAGE;
    }
    /* The topic's keys are whole seconds, so that they sort as text. */
    if (o->publish_path && in->effective_ms % 1000 != 0) {
        fprintf(stderr,
                "keng-registry: --effective '%s' has a fraction of a second: a version "
                "takes effect at a whole second\n",
                o->effective);
        return KENG_EXIT_USAGE;
    }
    in->lineage_path = o->lineage_path;
    in->units_path = o->units_path;
    return 0;
}

static void print_check(const keng_registry_check_t *in, const keng_registry_check_summary_t *s)
{
    char when[40];

    if (in->effective_ms != KENG_NO_TIME)
        printf("effective: %s\n", keng_time_format_local(in->effective_ms, when, sizeof(when)));
    if (in->units_path)
        printf("units list: %s, %zu communes\n", in->units_path, s->units_listed);
    if (!in->previous)
        return;
    printf("previous: %s districts=%zu communes=%zu boards=%zu",
           keng_registry_path(in->previous) ? keng_registry_path(in->previous) : "built-in",
           keng_registry_district_count(in->previous), keng_registry_commune_count(in->previous),
           keng_registry_board_count(in->previous));
    if (in->previous_effective_ms != KENG_NO_TIME)
        printf(" effective=%s",
               keng_time_format_local(in->previous_effective_ms, when, sizeof(when)));
    printf("\n");
    if (in->lineage_path)
        printf("lineage: %s, %zu lines\n", in->lineage_path, s->lineage_lines);
    printf("boards against the previous version: %zu in the same commune, %zu moved, %zu new, "
           "%zu removed\n",
           s->kept, s->moved, s->added, s->removed);
}

/* --write: reg as CSV to path ('-' for stdout). Returns the exit code. */
static int write_csv(const keng_registry_t *reg, const char *path)
{
    FILE *out = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");

    if (!out || keng_registry_write_csv(reg, out) != 0 || (out != stdout && fclose(out))) {
        perror("keng-registry: --write");
        return KENG_EXIT_FAILURE;
    }
    return KENG_EXIT_OK;
}

/* Runs the check of in (next and previous set) and says what it found on stderr, path being
 * the version's file. Returns 0, or KENG_EXIT_CONFIG when the version is refused. */
static int check_version(const keng_registry_check_t *in, const char *path, bool publishing,
                         keng_registry_check_summary_t *summary)
{
    printed_t printed = {0, 0};

    if (keng_registry_check_run(in, say, &printed, summary) != 0) {
        if (printed.refusals > MAX_PRINTED)
            fprintf(stderr, "keng-registry: ... and %zu more refusals\n",
                    printed.refusals - MAX_PRINTED);
        fprintf(stderr, "keng-registry: %s refused (refusals: %zu, warnings: %zu)%s\n", path,
                summary->refusals, summary->warnings, publishing ? ": not published" : "");
        return KENG_EXIT_CONFIG;
    }
    if (printed.warnings > MAX_PRINTED)
        fprintf(stderr, "keng-registry: ... and %zu more warnings\n",
                printed.warnings - MAX_PRINTED);
    return 0;
}

/* --check FILE with what else was given; with --write too, FILE once checked is written
 * instead of its counts (keng-demo reads a deployment's registry so). Returns the exit code. */
static int run_check(const options_t *o, keng_registry_check_t *in)
{
    char errstr[512];
    keng_registry_t *next = NULL, *previous = NULL;
    keng_registry_check_summary_t summary;
    int rc = KENG_EXIT_CONFIG;

    next = keng_registry_load(o->check_path, errstr, sizeof(errstr));
    if (!next) {
        fprintf(stderr, "keng-registry: %s\n", errstr);
        goto out;
    }
    if (o->previous_path) {
        previous = keng_registry_load(o->previous_path, errstr, sizeof(errstr));
        if (!previous) {
            fprintf(stderr, "keng-registry: --previous: %s\n", errstr);
            goto out;
        }
    }
    in->next = next;
    in->previous = previous;
    if (check_version(in, o->check_path, false, &summary) != 0)
        goto out;
    if (o->write_path) {
        rc = write_csv(next, o->write_path);
        goto out;
    }
    print_counts(next);
    print_check(in, &summary);
    rc = KENG_EXIT_OK;
out:
    keng_registry_destroy(previous);
    keng_registry_destroy(next);
    return rc;
}

/* The whole file at path, NUL-terminated, its length in *len; NULL after saying why. The
 * caller frees it. */
static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t cap = 0, n = 0, got;

    if (!f)
        goto fail;
    do {
        if (cap - n < 65536) {
            char *grown = realloc(text, cap + 262144);
            if (!grown)
                goto fail;
            text = grown;
            cap += 262144;
        }
        got = fread(text + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    if (ferror(f))
        goto fail;
    fclose(f);
    text[n] = '\0';
    *len = n;
    return text;
fail:
    fprintf(stderr, "keng-registry: %s: %s\n", path, strerror(errno ? errno : ENOMEM));
    if (f)
        fclose(f);
    free(text);
    return NULL;
}

/* ms as a key of the topic, "2025-06-30T17:00:00Z" (whole seconds, so keys sort as text). */
static char *format_key(int64_t ms, char *buf, size_t size)
{
    char full[40];

    keng_time_format_utc(ms, full, sizeof(full));
    snprintf(buf, size, "%.19sZ", full);
    return buf;
}

/* The config of --publish and --versions: the file, --brokers over it, and bootstrap servers
 * named. Returns 0 with *cfg (the caller's), or the exit code after saying why. */
static int open_kafka_config(const options_t *o, const keng_program_flag_t *table,
                             keng_config_t **cfg)
{
    *cfg = keng_program_config_table(&program, o->config_path, table);
    if (!*cfg)
        return KENG_EXIT_USAGE;
    if (!keng_config_brokers(*cfg)) {
        fprintf(stderr, "keng-registry: no brokers: give --brokers, set KENG_BROKERS, or set "
                        "kafka.bootstrap.servers in the config\n");
        return KENG_EXIT_CONFIG;
    }
    return 0;
}

/* Whether TIME may be published after the versions of list; says why not. */
static bool time_allowed(const options_t *o, const keng_registry_check_t *in,
                         const keng_regtopic_list_t *list, const char *topic, const char *key)
{
    const keng_regtopic_version_t *latest = list->n ? &list->v[list->n - 1] : NULL;
    char now[40];

    if (latest && in->effective_ms < latest->effective_ms) {
        fprintf(stderr,
                "keng-registry: --effective %s is before %s, the latest version in %s: versions "
                "follow one another, and one before the latest would change what the latest was "
                "checked against; not published\n",
                key, latest->key, topic);
        return false;
    }
    if (latest && in->effective_ms == latest->effective_ms && !o->replace) {
        fprintf(stderr,
                "keng-registry: %s has a version effective at %s already: --replace publishes "
                "%s in its place; not published\n",
                topic, key, o->publish_path);
        return false;
    }
    if (in->effective_ms < keng_now_ms() && !o->allow_past) {
        fprintf(stderr,
                "keng-registry: --effective %s is in the past (now is %s): a version must not "
                "rewrite history that keng has counted already; --allow-past publishes it anyway "
                "(a deployment's first version, or one that no program has counted under yet); "
                "not published\n",
                key, format_key(keng_now_ms(), now, sizeof(now)));
        return false;
    }
    return true;
}

/* Whether v carries the same files as files (the board CSV, the units list, the lineage), by
 * their SHA-256. */
static bool same_content(const keng_regtopic_version_t *v, const keng_regtopic_file_t *files)
{
    static const char *const names[3] = {"registry", "units", "lineage"};
    char digest[65];

    for (int i = 0; i < 3; i++) {
        json_t *sha = json_object_get(json_object_get(v->doc, names[i]), "sha256");
        if (!files[i].path || !sha) {
            if (files[i].path || sha)
                return false;
            continue;
        }
        keng_regtopic_sha256(files[i].text, files[i].len, digest);
        if (!json_is_string(sha) || strcmp(json_string_value(sha), digest) != 0)
            return false;
    }
    return true;
}

/* --publish FILE --effective TIME: loads FILE, reads the topic, checks FILE against the
 * version in force before TIME, and publishes it. Returns the exit code; nothing is published
 * unless it is 0. */
static int run_publish(const options_t *o, keng_registry_check_t *in,
                       const keng_program_flag_t *table)
{
    char errstr[768], key[40], name[160], digest[65];
    keng_config_t *cfg = NULL;
    keng_regtopic_list_t list = {NULL, 0};
    keng_registry_t *next = NULL, *previous = NULL;
    keng_registry_check_summary_t summary;
    keng_regtopic_file_t files[3] = {
        {o->publish_path, NULL, 0}, {o->units_path, NULL, 0}, {o->lineage_path, NULL, 0}};
    char *texts[3] = {NULL, NULL, NULL}, *doc = NULL;
    const keng_regtopic_version_t *before = NULL;
    const char *topic;
    int32_t partition;
    int64_t offset;
    int rc = open_kafka_config(o, table, &cfg);

    if (rc != 0)
        goto out;
    rc = KENG_EXIT_CONFIG;
    for (int i = 0; i < 3; i++) {
        if (!files[i].path)
            continue;
        texts[i] = read_whole(files[i].path, &files[i].len);
        if (!texts[i])
            goto out;
        files[i].text = texts[i];
    }
    next = keng_registry_load_text(files[0].text, files[0].len, o->publish_path, errstr,
                                   sizeof(errstr));
    if (!next) {
        fprintf(stderr, "keng-registry: %s; not published\n", errstr);
        goto out;
    }
    topic = keng_config_get(cfg, "topic.registry", KENG_REGTOPIC_DEFAULT);
    rc = keng_regtopic_read(cfg, topic, &list, errstr, sizeof(errstr));
    if (rc != 0) {
        fprintf(stderr, "keng-registry: %s; not published\n", errstr);
        goto out;
    }
    rc = KENG_EXIT_CONFIG;
    format_key(in->effective_ms, key, sizeof(key));
    /* The same files at the same time again (a deployment that publishes its registry at
     * every start): nothing to do. */
    for (size_t i = 0; i < list.n; i++) {
        if (list.v[i].effective_ms == in->effective_ms && same_content(&list.v[i], files)) {
            printf("already published: %s partition %d offset %lld effective %s sha256 %s, the "
                   "same files; nothing published\n",
                   topic, (int)list.v[i].partition, (long long)list.v[i].offset, key,
                   list.v[i].sha256);
            rc = KENG_EXIT_OK;
            goto out;
        }
    }
    if (!time_allowed(o, in, &list, topic, key))
        goto out;
    for (size_t i = 0; i < list.n && list.v[i].effective_ms < in->effective_ms; i++)
        before = &list.v[i];
    if (before) {
        snprintf(name, sizeof(name), "%s@%s", topic, before->key);
        previous =
            keng_registry_load_text(before->text, before->text_len, name, errstr, sizeof(errstr));
        if (!previous) {
            fprintf(stderr,
                    "keng-registry: the version in force before %s does not load: %s; "
                    "not published\n",
                    key, errstr);
            goto out;
        }
        in->previous_effective_ms = before->effective_ms;
    }
    in->next = next;
    in->previous = previous;
    if (check_version(in, o->publish_path, true, &summary) != 0)
        goto out;
    doc = keng_regtopic_document(
        key, keng_registry_board_count(next), keng_registry_commune_count(next),
        keng_registry_district_count(next), &files[0], files[1].path ? &files[1] : NULL,
        files[2].path ? &files[2] : NULL, errstr, sizeof(errstr));
    if (!doc) {
        fprintf(stderr, "keng-registry: %s; not published\n", errstr);
        goto out;
    }
    if (strlen(doc) > KENG_REGTOPIC_DOCUMENT_MAX) {
        fprintf(stderr,
                "keng-registry: the version's document is %zu bytes, over keng's bound of %d; "
                "not published\n",
                strlen(doc), KENG_REGTOPIC_DOCUMENT_MAX);
        goto out;
    }
    rc = keng_regtopic_publish(cfg, topic, key, doc, strlen(doc), &partition, &offset, errstr,
                               sizeof(errstr));
    if (rc != 0) {
        fprintf(stderr, "keng-registry: %s\n", errstr);
        goto out;
    }
    print_counts(next);
    print_check(in, &summary);
    if (!before)
        printf("previous: none in %s (no version before it): checked alone\n", topic);
    keng_regtopic_sha256(files[0].text, files[0].len, digest);
    printf("published: %s partition %d offset %lld effective %s sha256 %s\n", topic, (int)partition,
           (long long)offset, key, digest);
out:
    free(doc);
    for (int i = 0; i < 3; i++)
        free(texts[i]);
    keng_registry_destroy(previous);
    keng_registry_destroy(next);
    keng_regtopic_list_free(&list);
    keng_config_destroy(cfg);
    return rc;
}

/* --versions: every version of the topic, the one in force now marked. Returns the exit
 * code. */
static int run_versions(const options_t *o, const keng_program_flag_t *table)
{
    char errstr[768];
    keng_config_t *cfg = NULL;
    keng_regtopic_list_t list = {NULL, 0};
    const char *topic;
    size_t in_force = SIZE_MAX;
    int rc = open_kafka_config(o, table, &cfg);

    if (rc != 0)
        goto out;
    topic = keng_config_get(cfg, "topic.registry", KENG_REGTOPIC_DEFAULT);
    rc = keng_regtopic_read(cfg, topic, &list, errstr, sizeof(errstr));
    if (rc != 0) {
        fprintf(stderr, "keng-registry: %s\n", errstr);
        goto out;
    }
    for (size_t i = 0; i < list.n && list.v[i].effective_ms <= keng_now_ms(); i++)
        in_force = i;
    printf("%-20s %6s %8s %9s %-12s %s\n", "effective", "boards", "communes", "districts", "sha256",
           "published_at");
    for (size_t i = 0; i < list.n; i++) {
        const keng_regtopic_version_t *v = &list.v[i];
        printf("%-20s %6lld %8lld %9lld %-12.12s %-24s%s\n", v->key, v->boards, v->communes,
               v->districts, v->sha256, v->published_at,
               i == in_force                     ? " in force"
               : v->effective_ms > keng_now_ms() ? " future"
                                                 : "");
    }
    if (list.n == 0)
        fprintf(stderr, "keng-registry: no version in %s yet\n", topic);
out:
    keng_regtopic_list_free(&list);
    keng_config_destroy(cfg);
    return rc;
}

/* --write FILE, or the default's counts. Returns the exit code. */
static int run_default(const options_t *o)
{
    keng_registry_t *reg = keng_registry_default();
    int rc = KENG_EXIT_OK;

    if (!reg) {
        fprintf(stderr, "keng-registry: out of memory\n");
        return KENG_EXIT_FAILURE;
    }
    if (o->write_path)
        rc = write_csv(reg, o->write_path);
    else
        print_counts(reg);
    keng_registry_destroy(reg);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o = {0};
    const keng_program_flag_t table[] = {
        KENG_FLAG("write", &o.write_path, NULL),
        KENG_FLAG("check", &o.check_path, NULL),
        KENG_FLAG("previous", &o.previous_path, NULL),
        KENG_FLAG("lineage", &o.lineage_path, NULL),
        KENG_FLAG("units", &o.units_path, NULL),
        KENG_FLAG("effective", &o.effective, NULL),
        KENG_FLAG("previous-effective", &o.previous_effective, NULL),
        KENG_FLAG("publish", &o.publish_path, NULL),
        KENG_FLAG_SET("versions", &o.versions),
        KENG_FLAG_SET("replace", &o.replace),
        KENG_FLAG_SET("allow-past", &o.allow_past),
        KENG_FLAG("brokers", &o.brokers, "brokers"),
        KENG_FLAG("config", &o.config_path, NULL),
        KENG_FLAGS_END,
    };
    keng_registry_check_t in;
    int operands, rc;

    keng_program_start(&program);
    rc = keng_program_parse(&program, argc, argv, table, &operands);
    if (rc >= 0)
        return rc;
    /* `keng-registry FILE` once printed the built-in registry's counts and exited 0, so an
     * operator took FILE for checked. */
    if (operands < argc) {
        fprintf(stderr,
                "keng-registry: unexpected argument '%s' (to check a registry: "
                "keng-registry --check %s)\n\n",
                argv[operands], argv[operands]);
        usage(stderr);
        return KENG_EXIT_USAGE;
    }
    memset(&in, 0, sizeof(in));
    rc = check_flags(&o, &in);
    if (rc != 0)
        return rc;
    if (o.publish_path)
        return run_publish(&o, &in, table);
    if (o.versions)
        return run_versions(&o, table);
    return o.check_path ? run_check(&o, &in) : run_default(&o);
}
