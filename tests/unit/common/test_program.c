/* The shared opening of every program: the version line, the usage exit codes, the config
 * refused with an unknown key, and the stop signals counted on the flag; they never touch
 * Kafka. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "program.h"

static int usage_calls;
static FILE *usage_out;

static void fake_usage(FILE *out)
{
    usage_calls++;
    usage_out = out;
}

static keng_config_keys_t test_keys = {"topic.incidents", NULL};
static const char *const *const tables[] = {keng_config_common_keys, test_keys, NULL};
static const keng_program_t program = {"keng-test", KENG_PROGRAM_RDKAFKA, fake_usage, tables, 0};

static void test_help_and_bad_flag_codes(void **state)
{
    (void)state;
    usage_calls = 0;
    assert_int_equal(keng_program_help(&program), KENG_EXIT_OK);
    assert_ptr_equal(usage_out, stdout);
    assert_int_equal(keng_program_bad_flag(&program), 64);
    assert_ptr_equal(usage_out, stderr);
    assert_int_equal(usage_calls, 2);
    assert_int_equal(keng_program_try_help(&program), 64);
}

static void test_version_names_the_program_and_librdkafka(void **state)
{
    (void)state;
    char buf[256] = "";
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), STDOUT_FILENO);
    assert_int_equal(keng_program_version(&program), KENG_EXIT_OK);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    char expected[128];
    snprintf(expected, sizeof(expected), "keng-test %s (commit ", KENG_VERSION);
    if (strncmp(buf, expected, strlen(expected)) != 0)
        fail_msg("expected the version line to start '%s', got '%s'", expected, buf);
}

static void test_config_refuses_an_unknown_flag_key(void **state)
{
    (void)state;
    const keng_config_flag_t known[] = {{"topic.incidents", "t"}, {NULL, NULL}};
    const keng_config_flag_t unknown[] = {{"topic.incidnets", "t"}, {NULL, NULL}};
    keng_config_t *cfg = keng_program_config(&program, NULL, known);
    assert_non_null(cfg);
    assert_string_equal(keng_config_get(cfg, "topic.incidents", NULL), "t");
    keng_config_destroy(cfg);
    assert_null(keng_program_config(&program, NULL, unknown));
}

static void test_each_stop_signal_counts(void **state)
{
    (void)state;
    static volatile sig_atomic_t stop;
    keng_program_stop_on_signals(&stop);
    raise(SIGINT);
    raise(SIGTERM);
    assert_int_equal(stop, 2);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

#define parse(...) parse_as(&program, __VA_ARGS__)

/* A table like a program's: a value with a key, a value without, a boolean, a checked one. */
typedef struct parsed {
    const char *brokers, *out;
    int dry_run, count;
} parsed_t;

static int take_count(const char *value, void *to)
{
    if (strcmp(value, "0") == 0)
        return 64;
    *(int *)to = atoi(value);
    return 0;
}

static const keng_program_t brief_program = {"keng-brief", 0, fake_usage, NULL, 1};

static int parse_as(const keng_program_t *prog, parsed_t *p, int *operands, int argc, ...)
{
    char *argv[8] = {"keng-test"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    const keng_program_flag_t table[] = {
        KENG_FLAG("brokers", &p->brokers, "brokers"),
        KENG_FLAG("out", &p->out, NULL),
        KENG_FLAG_SET("dry-run", &p->dry_run),
        KENG_FLAG_TAKE("count", take_count, &p->count),
        KENG_FLAGS_END,
    };
    memset(p, 0, sizeof(*p));
    return keng_program_parse(prog, argc, argv, table, operands);
}

static void test_parse_takes_values_and_booleans(void **state)
{
    (void)state;
    parsed_t p;
    assert_int_equal(parse(&p, NULL, 5, "--brokers", "h:9092", "--dry-run", "--out=o"), -1);
    assert_string_equal(p.brokers, "h:9092");
    assert_string_equal(p.out, "o");
    assert_int_equal(p.dry_run, 1);
    assert_int_equal(p.count, 0);
    assert_int_equal(parse(&p, NULL, 3, "--count", "7"), -1);
    assert_int_equal(p.count, 7);
    assert_int_equal(parse(&p, NULL, 1), -1);
    assert_null(p.brokers);
    assert_int_equal(p.dry_run, 0);
}

static void test_parse_refuses_bad_flags_and_arguments(void **state)
{
    (void)state;
    parsed_t p;
    int operands = 0;
    usage_calls = 0;
    assert_int_equal(parse(&p, NULL, 2, "--nope"), 64);
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_out, stderr);
    assert_int_equal(parse(&p, NULL, 2, "--brokers"), 64); /* the value missing */
    assert_int_equal(parse(&p, NULL, 3, "--dry-run", "stray"), 64);
    assert_int_equal(parse(&p, NULL, 3, "--count", "0"), 64);
    assert_int_equal(parse(&p, &operands, 4, "a", "--dry-run", "b"), -1);
    assert_int_equal(operands, 2); /* GNU getopt moved a and b after the flag */
    assert_int_equal(p.dry_run, 1);
}

static void test_parse_brief_takes_h_and_says_try_help(void **state)
{
    (void)state;
    parsed_t p;
    usage_calls = 0;
    assert_int_equal(parse_as(&brief_program, &p, NULL, 2, "--nope"), 64);
    assert_int_equal(parse_as(&brief_program, &p, NULL, 2, "stray"), 64);
    assert_int_equal(usage_calls, 0); /* "Try 'keng-brief --help'." instead of the usage */
    assert_int_equal(parse_as(&brief_program, &p, NULL, 2, "-h"), KENG_EXIT_OK);
    assert_int_equal(usage_calls, 1);
    assert_int_equal(parse(&p, NULL, 2, "-h"), 64); /* not a flag of the others */
}

static void test_parse_help_and_version_end_with_ok(void **state)
{
    (void)state;
    parsed_t p;
    usage_calls = 0;
    assert_int_equal(parse(&p, NULL, 3, "--help", "--nope"), KENG_EXIT_OK);
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_out, stdout);
    fflush(stdout);
    assert_int_equal(parse(&p, NULL, 2, "--version"), KENG_EXIT_OK);
}

static void test_overlay_lists_the_given_flags_with_a_key(void **state)
{
    (void)state;
    const char *brokers = "h:9092", *out = "o", *registry = NULL;
    const keng_program_flag_t table[] = {
        KENG_FLAG("brokers", &brokers, "brokers"),
        KENG_FLAG("out", &out, NULL),
        KENG_FLAG("registry", &registry, "registry"),
        KENG_FLAGS_END,
    };
    keng_config_flag_t flags[4];
    assert_int_equal(keng_program_overlay(table, flags, 4), 1);
    assert_string_equal(flags[0].key, "brokers");
    assert_string_equal(flags[0].value, "h:9092");
    assert_null(flags[1].key);
    keng_config_t *cfg = keng_program_config(&program, NULL, flags);
    assert_non_null(cfg);
    assert_string_equal(keng_config_get(cfg, "brokers", NULL), "h:9092");
    keng_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_bad_flag_codes),
        cmocka_unit_test(test_version_names_the_program_and_librdkafka),
        cmocka_unit_test(test_config_refuses_an_unknown_flag_key),
        cmocka_unit_test(test_each_stop_signal_counts),
        cmocka_unit_test(test_parse_takes_values_and_booleans),
        cmocka_unit_test(test_parse_refuses_bad_flags_and_arguments),
        cmocka_unit_test(test_parse_brief_takes_h_and_says_try_help),
        cmocka_unit_test(test_parse_help_and_version_end_with_ok),
        cmocka_unit_test(test_overlay_lists_the_given_flags_with_a_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
