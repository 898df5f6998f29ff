/* The shared opening of every program: the version line, the usage exit codes, the config
 * refused with an unknown key, and the stop signals counted on the flag; they never touch
 * Kafka. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
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
static const keng_program_t program = {"keng-test", KENG_PROGRAM_RDKAFKA, fake_usage, tables};

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
    snprintf(expected, sizeof(expected), "keng-test %s (librdkafka ", KENG_VERSION);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_bad_flag_codes),
        cmocka_unit_test(test_version_names_the_program_and_librdkafka),
        cmocka_unit_test(test_config_refuses_an_unknown_flag_key),
        cmocka_unit_test(test_each_stop_signal_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
