/* The web config file's YAML subset and its users: what Prometheus's own files write (comments,
 * quotes, both list forms, a list at its key's indent) loads the same here; what keng cannot
 * read is refused with its line; a password passes bcrypt once and is then remembered. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "web_config.h"

/* bcrypt, cost 10, of "pw" (made with keng-aggregate --hash-password). */
static char hash_pw[64];

static int setup(void **state)
{
    char err[200];

    (void)state;
    return keng_web_hash_password("pw", hash_pw, sizeof(hash_pw), err, sizeof(err));
}

static keng_web_config_t *parse(const char *text, char *err, size_t err_size)
{
    return keng_web_config_parse(text, strlen(text), "web.yml", err, err_size);
}

static void test_prometheus_forms_load(void **state)
{
    char text[2048], err[300] = "";
    (void)state;

    snprintf(text, sizeof(text),
             "---\n"
             "# users of keng\n"
             "basic_auth_users:   # user: hash\n"
             "  alice: %s\n"
             "  \"bob\": '%s'\n"
             "user_scopes:\n"
             "  alice: [D07, \"16681\", 'D01-C001']\n"
             "  bob:\n"
             "  - NA\n"
             "metrics_users:\n"
             "  - bob\n"
             "http_server_config:\n"
             "  http2: false\n"
             "  headers:\n"
             "    X-Frame-Options: deny # a comment\n"
             "    Content-Security-Policy: \"default-src 'self'; a#b\"\n",
             hash_pw, hash_pw);
    keng_web_config_t *wc = parse(text, err, sizeof(err));
    assert_non_null(wc);
    assert_int_equal(keng_web_config_user_count(wc), 2);
    const keng_web_user_t *alice = keng_web_config_user(wc, 0);
    assert_string_equal(keng_web_user_name(alice), "alice");
    assert_int_equal(keng_web_user_scope_count(alice), 3);
    assert_string_equal(keng_web_user_scope(alice, 1), "16681");
    assert_string_equal(keng_web_user_scope(alice, 2), "D01-C001");
    assert_false(keng_web_user_metrics(alice));
    const keng_web_user_t *bob = keng_web_config_user(wc, 1);
    assert_string_equal(keng_web_user_scope(bob, 0), "NA");
    assert_true(keng_web_user_metrics(bob));
    assert_int_equal(keng_web_config_header_count(wc), 2);
    const char *name, *value;
    keng_web_config_header(wc, 1, &name, &value);
    assert_string_equal(name, "Content-Security-Policy");
    assert_string_equal(value, "default-src 'self'; a#b");
    keng_web_config_destroy(wc);

    /* A tls_server_config as Prometheus's documentation writes it parses; its files are read
     * when a program starts it (test_tls). */
    wc = parse("tls_server_config:\n"
               "  cert_file: server.crt\n"
               "  key_file: server.key\n"
               "  client_ca_file: ca.crt\n"
               "  client_auth_type: \"RequireAndVerifyClientCert\"\n"
               "  min_version: TLS13\n"
               "  max_version: TLS13\n"
               "  prefer_server_cipher_suites: false\n",
               err, sizeof(err));
    assert_non_null(wc);
    assert_null(keng_web_config_tls(wc));
    keng_web_config_destroy(wc);

    /* An empty file has no users. */
    wc = parse("# nothing yet\n", err, sizeof(err));
    assert_non_null(wc);
    assert_false(keng_web_config_has_users(wc));
    keng_web_config_destroy(wc);
}

static void test_refusals_name_the_line(void **state)
{
    static const struct {
        const char *text, *message;
    } cases[] = {
        {"basic_auth_users:\n  alice: x\n", "web.yml:2: basic_auth_users: alice: not a bcrypt"},
        {"basic_auth_users:\n   alice: x\n  bob: y\n", "web.yml:3: "},
        {"user_scopes:\n  alice: [NA\n", "web.yml:2: a '[' sequence must end with ']'"},
        {"headers: {a: b}\n", "web.yml:1: '{' starts YAML"},
        {"a: 'open\n", "web.yml:1: an unterminated quote"},
        {"a: b\na: c\n", "web.yml:2: a is given twice (first on line 1)"},
        {"- a\n", "web.yml:1: expected 'key: value' lines at the top"},
        {"http_server_config:\n  headers:\n    Content-Type: x\n",
         "web.yml:3: http_server_config.headers: 'Content-Type' is set by keng itself"},
        {"tls_server_config:\n  cert_file: c\n",
         "web.yml:1: tls_server_config: needs both cert_file and key_file"},
        {"tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS10\n",
         "web.yml:4: tls_server_config.min_version: TLS10 is refused: keng serves TLS 1.2 and 1.3"},
        {"tls_server_config:\n  cert_file: c\n  key_file: k\n  curve_preferences: [X25519]\n",
         "web.yml:4: tls_server_config.curve_preferences: keng does not read this key"},
        {"tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n",
         "web.yml:1: tls_server_config: client_ca_file is given without a client_auth_type"},
        {"tls_server_config:\n  cert_file: c\n  key_file: k\n"
         "  client_auth_type: VerifyClientCertIfGiven\n",
         "web.yml:4: tls_server_config.client_auth_type: VerifyClientCertIfGiven needs "
         "client_ca_file"},
        {"tls_server_config:\n  cert_file: c\n  key_file: k\n  ciphers: x\n",
         "web.yml:4: tls_server_config: unknown key 'ciphers'"},
        {"metrics_users: [carol]\n", "web.yml:1: metrics_users: carol is not in"},
        {"user_scopes:\n  alice: [a b]\n", "web.yml:2: user_scopes: alice is not in"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[300] = "";
        keng_web_config_t *wc = parse(cases[i].text, err, sizeof(err));
        if (wc || !strstr(err, cases[i].message))
            fail_msg("case %zu: expected a refusal with '%s', got '%s'", i, cases[i].message,
                     wc ? "(loaded)" : err);
    }
}

static void test_password_checked_then_remembered(void **state)
{
    char text[512], err[300], header[128];
    const keng_web_user_t *user = NULL;
    keng_web_check_t check;
    (void)state;

    snprintf(text, sizeof(text), "basic_auth_users:\n  alice: %s\n", hash_pw);
    keng_web_config_t *wc = parse(text, err, sizeof(err));
    assert_non_null(wc);

    /* "alice:pw", then "alice:no", "mallory:pw" and a bearer token. */
    snprintf(header, sizeof(header), "Basic %s", "YWxpY2U6cHc=");
    assert_int_equal(keng_web_config_lookup(wc, header, &user, &check), 0);
    keng_web_check_run(&check);
    assert_ptr_equal(keng_web_config_finish(wc, &check), keng_web_config_user(wc, 0));
    assert_string_equal(check.password, "");
    /* The same password again: no bcrypt. */
    assert_int_equal(keng_web_config_lookup(wc, header, &user, &check), 1);
    assert_ptr_equal(user, keng_web_config_user(wc, 0));

    assert_int_equal(keng_web_config_lookup(wc, "Basic YWxpY2U6bm8=", &user, &check), 0);
    keng_web_check_run(&check);
    assert_null(keng_web_config_finish(wc, &check));
    assert_int_equal(keng_web_config_lookup(wc, "Basic bWFsbG9yeTpwdw==", &user, &check), 0);
    assert_null(check.user);
    keng_web_check_run(&check);
    assert_null(keng_web_config_finish(wc, &check));
    assert_int_equal(keng_web_config_lookup(wc, "Bearer abc", &user, &check), -1);
    assert_int_equal(keng_web_config_lookup(wc, "Basic !!!!", &user, &check), -1);
    assert_int_equal(keng_web_config_lookup(wc, NULL, &user, &check), -1);
    keng_web_config_destroy(wc);
}

static int answered, signed_in;

static void count_answer(const keng_web_user_t *user, void *arg)
{
    (void)arg;
    answered++;
    signed_in += user != NULL;
}

/* A dashboard's first requests come together with the same password: they share one bcrypt
 * check instead of getting 503 beyond KENG_WEB_CHECKS_MAX; other credentials still queue at
 * most KENG_WEB_CHECKS_MAX checks. */
static void test_same_credentials_share_a_check(void **state)
{
    char text[512], err[300];
    const keng_web_user_t *user = NULL;
    keng_web_check_t check;
    uv_loop_t loop;
    (void)state;

    snprintf(text, sizeof(text), "basic_auth_users:\n  alice: %s\n  bob: %s\n", hash_pw, hash_pw);
    keng_web_config_t *wc = parse(text, err, sizeof(err));
    assert_non_null(wc);
    assert_int_equal(uv_loop_init(&loop), 0);
    answered = signed_in = 0;
    for (int i = 0; i < 8; i++) { /* alice:pw */
        assert_int_equal(keng_web_config_lookup(wc, "Basic YWxpY2U6cHc=", &user, &check), 0);
        assert_int_equal(keng_web_check_queue(&loop, wc, &check, count_answer, NULL), 0);
        assert_string_equal(check.password, "");
    }
    assert_int_equal(keng_web_checks_pending(wc), 1);
    /* bob:no is another check; bob:nope a third, past the bound. */
    assert_int_equal(keng_web_config_lookup(wc, "Basic Ym9iOm5v", &user, &check), 0);
    assert_int_equal(keng_web_check_queue(&loop, wc, &check, count_answer, NULL), 0);
    assert_int_equal(keng_web_config_lookup(wc, "Basic Ym9iOm5vcGU=", &user, &check), 0);
    assert_int_equal(keng_web_check_queue(&loop, wc, &check, count_answer, NULL), -EBUSY);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(answered, 9);
    assert_int_equal(signed_in, 8);
    assert_int_equal(keng_web_checks_pending(wc), 0);
    assert_int_equal(keng_web_config_lookup(wc, "Basic YWxpY2U6cHc=", &user, &check), 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    keng_web_config_destroy(wc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prometheus_forms_load),
        cmocka_unit_test(test_refusals_name_the_line),
        cmocka_unit_test(test_password_checked_then_remembered),
        cmocka_unit_test(test_same_credentials_share_a_check),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
