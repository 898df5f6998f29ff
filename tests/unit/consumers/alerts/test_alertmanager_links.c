/* Tests of the links keng-aggregate puts in an Alertmanager alert (consumers/alerts/
 * alertmanager.c): an id from the registry file may hold '&', '#', '%' or '?', and must stay
 * one parameter of the link, percent-encoded. Never starts a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_ids_are_unchanged),
        cmocka_unit_test(test_ids_are_percent_encoded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
