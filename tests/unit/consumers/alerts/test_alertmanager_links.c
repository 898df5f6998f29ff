/* Tests of the links and labels keng-aggregate puts in an Alertmanager alert (consumers/alerts/
 * alertmanager.c): an id from the registry file may hold '&', '#', '%' or '?', and must stay
 * one parameter of the link, percent-encoded; the district_id label comes from the registry,
 * whatever the ids look like. Never starts a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alertmanager.h"

static void expect_str(const char *expected, const char *actual, const char *what)
{
    if (strcmp(expected, actual) != 0)
        fail_msg("%s: expected\n  %s\ngot\n  %s", what, expected, actual);
}

static void test_plain_ids_are_unchanged(void **state)
{
    char link[256], gen[256];
    (void)state;
    keng_alertmanager_links("http://keng:8080", "24h", "commune", "D07-C012", link, sizeof(link),
                            gen, sizeof(gen));
    expect_str("http://keng:8080/#w=24h&l=commune&s=D07-C012", link, "dashboard link");
    expect_str("http://keng:8080/v1/counts?level=commune&id=D07-C012", gen, "generatorURL");
}

static void test_ids_are_percent_encoded(void **state)
{
    char link[256], gen[256];
    (void)state;
    keng_alertmanager_links("https://ops.example", "7d", "board", "B1&l=x#y%z?w/", link,
                            sizeof(link), gen, sizeof(gen));
    expect_str("https://ops.example/#w=7d&l=board&s=B1%26l%3Dx%23y%25z%3Fw%2F", link,
               "dashboard link");
    expect_str("https://ops.example/v1/counts?level=board&id=B1%26l%3Dx%23y%25z%3Fw%2F", gen,
               "generatorURL");
}

/* Ids as the 2025 communes have them: a board's id does not begin with its district's. */
static void test_district_label_from_the_registry(void **state)
{
    char path[] = "/tmp/keng-test-registry-XXXXXX", err[256], out[32];
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    (void)state;

    assert_non_null(f);
    fputs("board_id,board_name,commune_id,commune_name,district_id,district_name,groups,"
          "members\n"
          "16681-K01,Khoi 1,16681,Phuong Thanh Vinh,VINH,Vinh,5,5\n"
          "D07-C001-B01,Xom 1,D07-C001,Xa 1,DC,Dien Chau,4,4\n",
          f);
    fclose(f);
    keng_registry_t *reg = keng_registry_load(path, err, sizeof(err));
    unlink(path);
    if (!reg)
        fail_msg("registry: %s", err);
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_BOARD, "16681-K01", out, sizeof(out));
    expect_str("VINH", out, "a board's district");
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_BOARD, "D07-C001-B01", out, sizeof(out));
    expect_str("DC", out, "a board whose id names another district");
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_COMMUNE, "16681", out, sizeof(out));
    expect_str("VINH", out, "a commune's district");
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_DISTRICT, "DC", out, sizeof(out));
    expect_str("DC", out, "a district");
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_PROVINCE, "NA", out, sizeof(out));
    expect_str("", out, "the province");
    keng_alertmanager_district_of(reg, KENG_ALERT_LEVEL_BOARD, "GONE-B01", out, sizeof(out));
    expect_str("", out, "an id the registry does not list");
    keng_registry_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_ids_are_unchanged),
        cmocka_unit_test(test_ids_are_percent_encoded),
        cmocka_unit_test(test_district_label_from_the_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
