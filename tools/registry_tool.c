/* keng-registry: writes the default board registry as CSV, or checks a deployment's CSV and
 * prints its counts, so that a registry can be reviewed before keng uses it; it never changes a
 * CSV it checks. */
#include <stdio.h>
#include <string.h>

#include "program.h"
#include "registry.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: keng-registry [--write FILE | --check FILE]\n"
                 "\n"
                 "  --write FILE   write the generated default registry as CSV ('-' for stdout)\n"
                 "  --check FILE   load a registry CSV and print its counts, or the first error\n"
                 "  (no option)    print the counts of the generated default\n");
}

static const keng_program_t program = {"keng-registry", 0, usage, NULL, 0};

static int print_counts(const keng_registry_t *reg)
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
    return 0;
}

int main(int argc, char **argv)
{
    const char *write_path = NULL, *check_path = NULL;
    const keng_program_flag_t table[] = {
        KENG_FLAG("write", &write_path, NULL),
        KENG_FLAG("check", &check_path, NULL),
        KENG_FLAGS_END,
    };
    char errstr[512];
    keng_registry_t *reg;
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
                "keng-registry --check %s)\n",
                argv[operands], argv[operands]);
        return KENG_EXIT_USAGE;
    }
    rc = 0;
    reg = keng_registry_open(check_path, errstr, sizeof(errstr));
    if (!reg) {
        fprintf(stderr, "keng-registry: %s\n", errstr);
        return KENG_EXIT_CONFIG;
    }
    if (write_path) {
        FILE *out = strcmp(write_path, "-") == 0 ? stdout : fopen(write_path, "w");
        if (!out || keng_registry_write_csv(reg, out) != 0 || (out != stdout && fclose(out))) {
            perror("keng-registry: --write");
            rc = 1;
        }
    } else {
        print_counts(reg);
    }
    keng_registry_destroy(reg);
    return rc;
}
