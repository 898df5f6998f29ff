/* keng-registry: writes the default board registry as CSV, or checks a deployment's CSV, alone
 * or against the version before it, and prints its counts, so that a registry can be reviewed
 * before keng uses it; it never changes a CSV it checks. */
#include <stdio.h>
#include <string.h>

#include "program.h"
#include "registry.h"
#include "registry_check.h"
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
            "  (no option)                print the counts of the generated default\n"
            "\n"
            "The rules, and the lineage's format: docs/DESIGN.md, \"Registry versions\".\n");
}

static const keng_program_t program = {"keng-registry", 0, usage, NULL, 0};

typedef struct options {
    const char *write_path, *check_path, *previous_path, *lineage_path, *units_path;
    const char *effective, *previous_effective;
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

/* The flags that only --check takes, and those that only --previous makes sense of, given
 * alone; and times that do not parse. Returns 0, or KENG_EXIT_USAGE after saying why. */
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

    in->effective_ms = in->previous_effective_ms = KENG_NO_TIME;
    if (needs_check && !o->check_path) {
        fprintf(stderr, "keng-registry: %s needs --check FILE\n", needs_check);
        return KENG_EXIT_USAGE;
    }
    if (needs_previous && !o->previous_path) {
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

/* --check FILE with what else was given; with --write too, FILE once checked is written
 * instead of its counts (keng-demo reads a deployment's registry so). Returns the exit code. */
static int run_check(const options_t *o, keng_registry_check_t *in)
{
    char errstr[512];
    keng_registry_t *next = NULL, *previous = NULL;
    keng_registry_check_summary_t summary;
    printed_t printed = {0, 0};
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
    if (keng_registry_check_run(in, say, &printed, &summary) != 0) {
        if (printed.refusals > MAX_PRINTED)
            fprintf(stderr, "keng-registry: ... and %zu more refusals\n",
                    printed.refusals - MAX_PRINTED);
        fprintf(stderr, "keng-registry: %s refused (refusals: %zu, warnings: %zu)\n", o->check_path,
                summary.refusals, summary.warnings);
        goto out;
    }
    if (printed.warnings > MAX_PRINTED)
        fprintf(stderr, "keng-registry: ... and %zu more warnings\n",
                printed.warnings - MAX_PRINTED);
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
    return o.check_path ? run_check(&o, &in) : run_default(&o);
}
