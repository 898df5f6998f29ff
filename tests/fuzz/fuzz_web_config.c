/* Fuzzes keng-aggregate's web config file (the YAML subset keng reads) and the Authorization
 * header it checks against the users of a fixed file. The first byte chooses: even, the rest
 * is a web config file; odd, the rest is an Authorization header. The bcrypt check itself is
 * not run (it takes tens of milliseconds, and libxcrypt is not keng's).
 *
 * Properties: a file either loads or is refused with a message that names the file; a loaded
 * file has users with 60-character bcrypt hashes and scopes of valid ids; a header names the
 * user alice only when it is "Basic " and the base64 of "alice:" and a password, and a lookup
 * never lets anyone in without a check while no password has been verified. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_util.h"
#include "registry.h"
#include "web_config.h"

static keng_web_config_t *fixed;

static void setup(void)
{
    static const char text[] =
        "basic_auth_users:\n"
        "  alice: $2b$10$BqLnPxRRx0Q0kX5kzZ6yNOvWq8m6k2mYc5dQwXr4b2c6cQmXgYr0K\n"
        "user_scopes:\n"
        "  alice: [D07, NA]\n";
    char err[300];

    fixed = keng_web_config_parse(text, sizeof(text) - 1, "fixed.yml", err, sizeof(err));
    FUZZ_CHECK(fixed != NULL, "%s", err);
}

static void check_file(const uint8_t *data, size_t size)
{
    char err[300] = "";
    keng_web_config_t *wc =
        keng_web_config_parse((const char *)data, size, "fuzz.yml", err, sizeof(err));

    if (!wc) {
        FUZZ_CHECK(strncmp(err, "fuzz.yml", 8) == 0, "a refusal that names no file: %s", err);
        return;
    }
    for (size_t i = 0; i < keng_web_config_user_count(wc); i++) {
        const keng_web_user_t *u = keng_web_config_user(wc, i);
        for (size_t k = 0; k < keng_web_user_scope_count(u); k++) {
            const char *id = keng_web_user_scope(u, k);
            FUZZ_CHECK(keng_unit_id_valid(id, strlen(id)), "a scope id that is not an id: %s", id);
        }
    }
    for (size_t i = 0; i < keng_web_config_header_count(wc); i++) {
        const char *name, *value;
        keng_web_config_header(wc, i, &name, &value);
        FUZZ_CHECK(!strpbrk(value, "\r\n") && !strpbrk(name, " :\r\n"), "a header that can "
                                                                        "split an answer");
    }
    keng_web_config_destroy(wc);
}

static void check_header(const uint8_t *data, size_t size)
{
    char *header = strndup((const char *)data, size);
    const keng_web_user_t *user = NULL;
    keng_web_check_t check;

    FUZZ_CHECK(header != NULL, "out of memory");
    int rc = keng_web_config_lookup(fixed, header, &user, &check);
    /* No password was ever verified: nobody is let in without the check. */
    FUZZ_CHECK(rc != 1 && user == NULL, "let in without a check");
    if (rc == 0) {
        FUZZ_CHECK(strncasecmp(header, "Basic ", 6) == 0, "a check for another scheme");
        if (check.user)
            FUZZ_CHECK(strcmp(keng_web_user_name(check.user), "alice") == 0, "another user");
        FUZZ_CHECK(check.hash != NULL && strlen(check.hash) == 60, "no hash to check against");
        check.passed = false;
        FUZZ_CHECK(keng_web_config_finish(fixed, &check) == NULL, "a failed check let in");
        FUZZ_CHECK(check.password[0] == '\0', "the password was not wiped");
    }
    free(header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fixed)
        setup();
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        check_file(data + 1, size - 1);
    else
        check_header(data + 1, size - 1);
    return 0;
}
