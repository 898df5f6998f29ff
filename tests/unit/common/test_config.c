/* Config files: key=value with comments, errors that name the line, and the bootstrap list's
 * order of precedence (flag, then KENG_BROKERS, then the file); they never touch Kafka. */
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

static keng_config_keys_t test_keys = {"listen", "registry", "group.id", NULL};
static const char *const *const tables[] = {test_keys, NULL};

/* What every program does with its command line: the file first, then the flags given. */
static void test_flags_override_the_file(void **state)
{
    char *path = write_temp("listen=127.0.0.1:1\nregistry=file.csv\n");
    const keng_config_flag_t flags[] = {
        {"listen", "127.0.0.1:2"},
        {"registry", NULL},
        {"group.id", "g"},
        {NULL, NULL},
    };
    keng_config_t *cfg;

    (void)state;
    cfg = keng_config_from_args("keng-test", path, flags, tables);
    assert_non_null(cfg);
    assert_string_equal(keng_config_get(cfg, "listen", NULL), "127.0.0.1:2");
    assert_string_equal(keng_config_get(cfg, "registry", NULL), "file.csv"); /* not given */
    assert_string_equal(keng_config_get(cfg, "group.id", NULL), "g");
    keng_config_destroy(cfg);

    cfg = keng_config_from_args("keng-test", NULL, NULL, tables);
    assert_non_null(cfg);
    assert_null(keng_config_get(cfg, "listen", NULL));
    keng_config_destroy(cfg);

    /* A file that does not load: NULL (the message goes to stderr). */
    assert_null(keng_config_from_args("keng-test", "/nonexistent/keng.conf", flags, tables));
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

/* A mistyped key stops the program: the message names it, its line and the nearest key. */
static void test_unknown_keys_are_named(void **state)
{
    static keng_config_keys_t program = {"alertmanager.url", "group.id", "listen", NULL};
    static keng_config_keys_t rules = {"alert.*.level", "alert.*.severity", NULL};
    static keng_config_keys_t schemas = {"schemas.reader.*", NULL};
    static const char *const *const all[] = {program, rules, schemas, NULL};
    static const struct {
        const char *text;
        const char *expected; /* NULL: accepted */
    } cases[] = {
        {"alertmanager.url=http://a\nalert.x_1.level=board\nschemas.reader.vn.antt.Incident=1\n"
         "kafka.bogus.property=1\n",
         NULL},
        {"listen=1\nalertmanagr.url=http://a\n",
         ":2: unknown key 'alertmanagr.url' (nearest known key: alertmanager.url)"},
        {"bogus.key=1\n", ":1: unknown key 'bogus.key' (nearest known key: group.id)"},
        {"alert.drugs.levle=board\n",
         ":1: unknown key 'alert.drugs.levle' (nearest known key: alert.drugs.level)"},
        {"alert.drugs.severity.x=1\n",
         ":1: unknown key 'alert.drugs.severity.x' (nearest known key: alert.drugs.severity)"},
        {"schemas.reader=1\n", ":1: unknown key 'schemas.reader' (nearest known key: "
                               "schemas.reader.<name>)"},
        {"alert..level=1\n",
         ":1: unknown key 'alert..level' (nearest known key: alert.<name>.level)"},
    };
    char errstr[256];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = write_temp(cases[i].text);
        keng_config_t *cfg = keng_config_new();
        assert_int_equal(keng_config_load(cfg, path, errstr, sizeof(errstr)), 0);
        int rc = keng_config_check(cfg, all, errstr, sizeof(errstr));
        if (!cases[i].expected) {
            if (rc != 0)
                fail_msg("case %zu: expected no error, got '%s'", i, errstr);
        } else {
            char expected[300];
            snprintf(expected, sizeof(expected), "%s%s", path, cases[i].expected);
            assert_int_equal(rc, -1);
            assert_string_equal(errstr, expected);
        }
        keng_config_destroy(cfg);
        unlink(path);
        free(path);
    }

    /* A flag has no line; and from_args refuses the unknown key. */
    keng_config_t *cfg = keng_config_new();
    keng_config_set(cfg, "grop.id", "g");
    assert_int_equal(keng_config_check(cfg, all, errstr, sizeof(errstr)), -1);
    assert_string_equal(errstr, "unknown key 'grop.id' (nearest known key: group.id)");
    keng_config_destroy(cfg);
    const keng_config_flag_t flags[] = {{"grop.id", "g"}, {NULL, NULL}};
    assert_null(keng_config_from_args("keng-test", NULL, flags, all));
}

static void test_kafka_keys_reach_librdkafka(void **state)
{
    keng_config_t *cfg = keng_config_new();
    char errstr[256], value[64];
    size_t size = sizeof(value);

    keng_config_set(cfg, "kafka.client.id", "keng-test");
    keng_config_set(cfg, "brokers", "127.0.0.1:9");
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    assert_non_null(conf);
    assert_int_equal(rd_kafka_conf_get(conf, "client.id", value, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(value, "keng-test");
    size = sizeof(value);
    assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", value, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(value, "127.0.0.1:9");
    rd_kafka_conf_destroy(conf);

    keng_config_set(cfg, "kafka.no.such.property", "1");
    assert_null(keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "kafka.no.such.property"));
    keng_config_destroy(cfg);
}

/* kafka.sasl.password_file: the password from a file, so that the config holds no secret;
 * errors name the key and the file, never the password. */
static void test_sasl_password_from_a_file(void **state)
{
    (void)state;
    keng_config_t *cfg = keng_config_new();
    char errstr[256], value[64];
    size_t size = sizeof(value);
    char *path = write_temp("s3cret-sasl\n");

    keng_config_set(cfg, "kafka.sasl.mechanisms", "SCRAM-SHA-512");
    keng_config_set(cfg, "kafka.security.protocol", "SASL_PLAINTEXT");
    keng_config_set(cfg, "kafka.sasl.username", "keng-ingest");
    keng_config_set(cfg, "kafka.sasl.password_file", path);
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    if (!conf)
        fail_msg("keng_config_kafka: %s", errstr);
    assert_int_equal(rd_kafka_conf_get(conf, "sasl.password", value, &size), RD_KAFKA_CONF_OK);
    assert_string_equal(value, "s3cret-sasl");
    rd_kafka_conf_destroy(conf);

    keng_config_set(cfg, "kafka.sasl.password_file", "/nonexistent/keng-password");
    assert_null(keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "kafka.sasl.password_file: cannot read /nonexistent"));
    keng_config_destroy(cfg);
    unlink(path);
    free(path);
}

/* One file configures keng-aggregate's consumer and its producers: each client gets the
 * keys that apply to it, and kafka.consumer.* / kafka.producer.* override for one role. */
static void get_property(rd_kafka_conf_t *conf, const char *name, char *value, size_t size)
{
    assert_int_equal(rd_kafka_conf_get(conf, name, value, &size), RD_KAFKA_CONF_OK);
}

static void test_kafka_keys_by_role(void **state)
{
    keng_config_t *cfg = keng_config_new();
    char errstr[256], value[64], dflt_linger[64], dflt_session[64];
    rd_kafka_conf_t *consumer, *producer, *plain = rd_kafka_conf_new();

    (void)state;
    get_property(plain, "linger.ms", dflt_linger, sizeof(dflt_linger));
    get_property(plain, "session.timeout.ms", dflt_session, sizeof(dflt_session));
    rd_kafka_conf_destroy(plain);
    keng_config_set(cfg, "kafka.session.timeout.ms", "6000");
    keng_config_set(cfg, "kafka.linger.ms", "20");
    keng_config_set(cfg, "kafka.client.id", "keng-both");
    keng_config_set(cfg, "kafka.producer.client.id", "keng-producer");
    keng_config_set(cfg, "kafka.consumer.fetch.wait.max.ms", "50");

    consumer = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, sizeof(errstr));
    producer = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr));
    assert_non_null(consumer);
    assert_non_null(producer);
    get_property(consumer, "session.timeout.ms", value, sizeof(value));
    assert_string_equal(value, "6000");
    get_property(producer, "session.timeout.ms", value, sizeof(value));
    assert_string_equal(value, dflt_session); /* not given to the producer */
    get_property(producer, "linger.ms", value, sizeof(value));
    assert_string_equal(value, "20");
    get_property(consumer, "linger.ms", value, sizeof(value));
    assert_string_equal(value, dflt_linger);
    get_property(consumer, "client.id", value, sizeof(value));
    assert_string_equal(value, "keng-both");
    get_property(producer, "client.id", value, sizeof(value));
    assert_string_equal(value, "keng-producer");
    get_property(consumer, "fetch.wait.max.ms", value, sizeof(value));
    assert_string_equal(value, "50");
    rd_kafka_conf_destroy(consumer);
    rd_kafka_conf_destroy(producer);

    assert_int_equal(keng_kafka_property_role("heartbeat.interval.ms"), KENG_KAFKA_CONSUMER);
    assert_int_equal(keng_kafka_property_role("enable.idempotence"), KENG_KAFKA_PRODUCER);
    assert_int_equal(keng_kafka_property_role("socket.keepalive.enable"), -1);

    keng_config_set(cfg, "kafka.producer.no.such.property", "1");
    assert_non_null(consumer = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, sizeof(errstr)));
    rd_kafka_conf_destroy(consumer);
    assert_null(keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, sizeof(errstr)));
    assert_non_null(strstr(errstr, "kafka.producer.no.such.property"));
    keng_config_destroy(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_override),
        cmocka_unit_test(test_flags_override_the_file),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_unknown_keys_are_named),
        cmocka_unit_test(test_kafka_keys_reach_librdkafka),
        cmocka_unit_test(test_kafka_keys_by_role),
        cmocka_unit_test(test_sasl_password_from_a_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
