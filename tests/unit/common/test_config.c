/* Config files: key=value with comments, errors that name the line, and the bootstrap
 * list's order of precedence (flag, then KENG_BROKERS, then the file). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/keng-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_load_and_override(void **state)
{
    char *path = write_temp("# comment\n\n  topic.incidents = my.incidents  \n"
                            "kafka.bootstrap.servers=file:9092\nlimit=12\n");
    keng_config_t *cfg = keng_config_new();
    char errstr[256];
    long long n;

    assert_int_equal(keng_config_load(cfg, path, errstr, sizeof(errstr)), 0);
    assert_string_equal(keng_config_get(cfg, "topic.incidents", "x"), "my.incidents");
    assert_string_equal(keng_config_get(cfg, "absent", "default"), "default");
    assert_int_equal(keng_config_get_int(cfg, "limit", 1, 0, 100, &n, errstr, sizeof(errstr)), 0);
    assert_int_equal(n, 12);
    assert_int_equal(keng_config_get_int(cfg, "limit", 1, 0, 10, &n, errstr, sizeof(errstr)), -1);
    assert_string_equal(errstr, "limit: 12 is outside 0..10");

    unsetenv("KENG_BROKERS");
    assert_string_equal(keng_config_brokers(cfg), "file:9092");
    setenv("KENG_BROKERS", "env:9092", 1);
    assert_string_equal(keng_config_brokers(cfg), "env:9092");
    keng_config_set(cfg, "brokers", "flag:9092");
    assert_string_equal(keng_config_brokers(cfg), "flag:9092");
    unsetenv("KENG_BROKERS");

    keng_config_destroy(cfg);
    unlink(path);
    free(path);
}

static void test_errors_name_the_line(void **state)
{
    char *path = write_temp("a=1\nthis line has no equals sign\n");
    keng_config_t *cfg = keng_config_new();
    char errstr[256], expected[300];

    assert_int_equal(keng_config_load(cfg, path, errstr, sizeof(errstr)), -1);
    snprintf(expected, sizeof(expected), "%s:2: expected key=value", path);
    assert_string_equal(errstr, expected);
    keng_config_destroy(cfg);
    unlink(path);
    free(path);
}

static void test_kafka_keys_reach_librdkafka(void **state)
{
    keng_config_t *cfg = keng_config_new();
    char errstr[256], value[64];
    size_t size = sizeof(value);

    keng_config_set(cfg, "kafka.client.id", "keng-test");
    keng_config_set(cfg, "brokers", "127.0.0.1:9");
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, errstr, sizeof(errstr));
    assert_non_null(conf);
    assert_int_equal(rd_kafka_conf_get(conf, "client.id", value, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(value, "keng-test");
    size = sizeof(value);
    assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", value, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(value, "127.0.0.1:9");
    rd_kafka_conf_destroy(conf);

    keng_config_set(cfg, "kafka.no.such.property", "1");
    assert_null(keng_config_kafka(cfg, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "kafka.no.such.property"));
    keng_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_override),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_kafka_keys_reach_librdkafka),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
