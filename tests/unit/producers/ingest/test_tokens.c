/* keng-ingest's token file: lines that load and lines that are refused with their line number,
 * lookups by token and by Authorization header, districts, and new tokens that load back; they
 * never open a socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokens.h"

/* Any 64 hex digits make a well-formed line. */
#define HASH_ONE "5a7fd49b2ce4302b0a6a1ab1a48ba7bd0c96a1bd3e6c2e0a8e08e5f4b7f2d6a1"
/* HASH_ONE without its last two digits, to make other hashes from: "6b" HASH_ONE_TAIL. */
#define HASH_ONE_TAIL "5a7fd49b2ce4302b0a6a1ab1a48ba7bd0c96a1bd3e6c2e0a8e08e5f4b7f2d6"

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/keng-tokens-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_generate_append_and_find(void **state)
{
    char *path = write_temp("# gateways of Quynh Luu\n\n");
    char token[KENG_TOKEN_TEXT_LEN + 1], token2[KENG_TOKEN_TEXT_LEN + 1];
    char hash[KENG_TOKEN_HASH_HEX_LEN + 1], hash2[KENG_TOKEN_HASH_HEX_LEN + 1];
    char errstr[256], header[128];
    keng_tokens_t *t;
    const keng_gateway_t *gw;
    struct stat st;

    assert_int_equal(keng_tokens_generate(token, hash, errstr, sizeof(errstr)), 0);
    assert_int_equal(strlen(token), KENG_TOKEN_TEXT_LEN);
    assert_int_equal(strlen(hash), KENG_TOKEN_HASH_HEX_LEN);
    assert_int_equal(
        strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        KENG_TOKEN_TEXT_LEN);
    assert_int_equal(keng_tokens_generate(token2, hash2, errstr, sizeof(errstr)), 0);
    assert_string_not_equal(token, token2);

    assert_int_equal(
        keng_tokens_append(path, hash, "quynh-luu-1", "D07,D08", errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_tokens_append(path, hash2, "province", "*", errstr, sizeof(errstr)), 0);
    /* The file stores hashes only, never the token. */
    t = keng_tokens_load(path, errstr, sizeof(errstr));
    assert_non_null(t);
    assert_int_equal(keng_tokens_count(t), 2);
    {
        FILE *f = fopen(path, "r");
        char text[1024] = {0};
        assert_non_null(f);
        assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
        fclose(f);
        assert_null(strstr(text, token));
        assert_non_null(strstr(text, hash));
    }

    gw = keng_tokens_find(t, token, strlen(token));
    assert_non_null(gw);
    assert_string_equal(keng_gateway_name(gw), "quynh-luu-1");
    assert_true(keng_gateway_allows(gw, "D07", 3));
    assert_true(keng_gateway_allows(gw, "D08", 3));
    assert_false(keng_gateway_allows(gw, "D09", 3));
    assert_false(keng_gateway_allows(gw, "D0", 2));

    snprintf(header, sizeof(header), "bearer   %s ", token2);
    gw = keng_tokens_authorize(t, header);
    assert_non_null(gw);
    assert_string_equal(keng_gateway_name(gw), "province");
    assert_true(keng_gateway_allows(gw, "D21", 3));

    assert_null(keng_tokens_find(t, token, strlen(token) - 1));
    assert_null(keng_tokens_find(t, "", 0));
    assert_null(keng_tokens_authorize(t, NULL));
    snprintf(header, sizeof(header), "Basic %s", token);
    assert_null(keng_tokens_authorize(t, header));
    assert_null(keng_tokens_authorize(t, "Bearer"));

    assert_int_equal(stat(path, &st), 0);
    keng_tokens_destroy(t);

    /* A name with a space would not load back: refused before anything is written. */
    assert_int_equal(keng_tokens_append(path, hash, "two words", "D01", errstr, sizeof(errstr)),
                     -1);
    assert_int_equal(keng_tokens_append(path, hash, "gw", "D01,", errstr, sizeof(errstr)), -1);
    unlink(path);
    free(path);
}

static void test_new_file_mode(void **state)
{
    char path[] = "/tmp/keng-tokens-new-XXXXXX";
    char token[KENG_TOKEN_TEXT_LEN + 1], hash[KENG_TOKEN_HASH_HEX_LEN + 1], errstr[256];
    struct stat st;
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    assert_int_equal(keng_tokens_generate(token, hash, errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_tokens_append(path, hash, "gw", "D01", errstr, sizeof(errstr)), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(path);
}

static void expect_load_error(const char *text, const char *expected_part)
{
    char *path = write_temp(text);
    char errstr[256] = "";
    keng_tokens_t *t = keng_tokens_load(path, errstr, sizeof(errstr));

    if (t != NULL || strstr(errstr, expected_part) == NULL)
        fail_msg("loading %s: expected an error with '%s', got %s '%s'", text, expected_part,
                 t ? "success" : "error", errstr);
    unlink(path);
    free(path);
}

static void test_bad_lines(void **state)
{
    expect_load_error("abc gw D01\n", ":1: the hash must be 64 hex digits");
    expect_load_error("# c\n" HASH_ONE " gw\n", ":2: expected '<sha256 hex> <gateway name>");
    expect_load_error(HASH_ONE " gw D01 extra\n", ":1: unexpected 'extra'");
    expect_load_error(HASH_ONE " gw D01,,D02\n", ":1: empty district id");
    expect_load_error(HASH_ONE " gw D01\n" HASH_ONE " other *\n",
                      ":2: the same token hash is already listed for gateway 'gw'");
    expect_load_error("5a7fd49b2ce4302b0a6a1ab1a48ba7bd0c96a1bd3e6c2e0a8e08e5f4b7f2d6aZ gw D01\n",
                      ":1: the hash must be 64 hex digits");
}

/* The file holds what `printf %s TOKEN | sha256sum` prints, so operators can make lines by
 * hand: sha256("abc") is the FIPS 180-2 example. */
static void test_sha256_of_the_token(void **state)
{
    char *path = write_temp(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad hand-made D03\n");
    char errstr[256];
    keng_tokens_t *t = keng_tokens_load(path, errstr, sizeof(errstr));
    const keng_gateway_t *gw;

    assert_non_null(t);
    gw = keng_tokens_authorize(t, "Bearer abc");
    assert_non_null(gw);
    assert_string_equal(keng_gateway_name(gw), "hand-made");
    assert_null(keng_tokens_authorize(t, "Bearer abd"));
    keng_tokens_destroy(t);
    unlink(path);
    free(path);
}

static void test_comments_and_blank_lines(void **state)
{
    char *path = write_temp("# header\n   \n" HASH_ONE " gw-1 D01,D02   # the first gateway\r\n");
    char errstr[256];
    keng_tokens_t *t = keng_tokens_load(path, errstr, sizeof(errstr));

    assert_non_null(t);
    assert_int_equal(keng_tokens_count(t), 1);
    keng_tokens_destroy(t);
    unlink(path);
    free(path);
    t = keng_tokens_load("/nonexistent/keng/tokens", errstr, sizeof(errstr));
    assert_null(t);
    assert_non_null(strstr(errstr, "cannot open the token file /nonexistent/keng/tokens"));
}

/* An empty file and a file that says "!no-tokens" both hold no token; only the second means
 * it, which is what keng-ingest's SIGHUP reload tells apart. */
static void test_no_tokens_directive(void **state)
{
    const char *texts[] = {"", "# emptied\n", "# maintenance\n!no-tokens\n", "  !no-tokens  \n"};
    const bool intended[] = {false, false, true, true};
    char errstr[256];

    for (size_t i = 0; i < 4; i++) {
        char *path = write_temp(texts[i]);
        keng_tokens_t *t = keng_tokens_load(path, errstr, sizeof(errstr));
        if (t == NULL)
            fail_msg("loading '%s': %s", texts[i], errstr);
        assert_int_equal(keng_tokens_count(t), 0);
        if (keng_tokens_none_intended(t) != intended[i])
            fail_msg("'%s': expected none_intended %d, got %d", texts[i], intended[i],
                     keng_tokens_none_intended(t));
        keng_tokens_destroy(t);
        unlink(path);
        free(path);
    }
    expect_load_error("!no-tokens\n" HASH_ONE " gw D01\n",
                      ":1: '!no-tokens' says no gateway may post, but the file lists 1 token");
    expect_load_error("!no-token\n", ":1: unknown directive '!no-token'");
    expect_load_error("!no-tokens please\n", ":1: unknown directive '!no-tokens'");
}

/* Adding a token to a file that says no gateway may post would leave a file the next reload
 * refuses (both the directive and a token): the append is refused, naming the line, and the
 * file is left as it was. */
static void test_append_refused_under_no_tokens(void **state)
{
    const char *text = "# maintenance\n!no-tokens\n";
    char *path = write_temp(text);
    char errstr[256], after[256];
    (void)state;

    assert_int_equal(keng_tokens_append(path, HASH_ONE, "gw", "D01", errstr, sizeof(errstr)), -1);
    if (!strstr(errstr, ":2: the file says '!no-tokens'"))
        fail_msg("expected the refusal to name line 2 and the directive, got: %s", errstr);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(after, 1, sizeof(after) - 1, f);
    after[n] = '\0';
    fclose(f);
    assert_string_equal(after, text);
    unlink(path);
    free(path);
}

static char *read_all(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* --list-tokens: one line per token with its short id, gateway, districts and creation time,
 * and never the hash beyond its first 8 digits. */
static void test_list_shows_no_hash(void **state)
{
    char *path = write_temp("# gateways\n" HASH_ONE " old-gw D01\n");
    char token[KENG_TOKEN_TEXT_LEN + 1], hash[KENG_TOKEN_HASH_HEX_LEN + 1], errstr[256];
    char out[4096];
    (void)state;

    assert_int_equal(keng_tokens_generate(token, hash, errstr, sizeof(errstr)), 0);
    assert_int_equal(keng_tokens_append(path, hash, "new-gw", "D07,D12", errstr, sizeof(errstr)),
                     0);
    assert_non_null(strstr(read_all(path), " # created 20"));
    FILE *mem = fmemopen(out, sizeof(out), "w");
    assert_non_null(mem);
    assert_int_equal(keng_tokens_list(path, mem, errstr, sizeof(errstr)), 0);
    fclose(mem);
    if (!strstr(out, "5a7fd49b  old-gw  D01  -\n"))
        fail_msg("the old line (no creation time) is not listed as expected:\n%s", out);
    char expected[64];
    snprintf(expected, sizeof(expected), "%.8s  new-gw  D07,D12  20", hash);
    if (!strstr(out, expected))
        fail_msg("expected '%s' in:\n%s", expected, out);
    if (strstr(out, hash + 8) || strstr(out, HASH_ONE + 8) || strstr(out, token))
        fail_msg("the listing shows more than a hash's first 8 digits:\n%s", out);
    unlink(path);
    free(path);
}

static void test_revoke(void **state)
{
    const char *text = "# gateways\n" HASH_ONE " gw-a D01 # created 2026-01-02T03:04:05Z\n"
                       "6b" HASH_ONE_TAIL " gw-b D02\n"
                       "7c" HASH_ONE_TAIL " gw-b D02 # the new one\n";
    char *path = write_temp(text);
    char errstr[512], what[256];
    keng_tokens_t *t;
    struct stat st;
    (void)state;

    chmod(path, 0640);
    assert_int_equal(keng_tokens_revoke(path, "gw-c", what, sizeof(what), errstr, sizeof(errstr)),
                     -1);
    if (!strstr(errstr, "no token of gateway 'gw-c'"))
        fail_msg("unknown gateway: %s", errstr);
    assert_int_equal(keng_tokens_revoke(path, "gw-b", what, sizeof(what), errstr, sizeof(errstr)),
                     -1);
    if (!strstr(errstr, "gateway 'gw-b' has 2 tokens") || !strstr(errstr, "gw-b@6b5a7fd4") ||
        !strstr(errstr, "gw-b@7c5a7fd4"))
        fail_msg("two tokens, no id: %s", errstr);
    assert_string_equal(read_all(path), text);

    assert_int_equal(
        keng_tokens_revoke(path, "gw-b@6b5a7fd4", what, sizeof(what), errstr, sizeof(errstr)), 0);
    t = keng_tokens_load(path, errstr, sizeof(errstr));
    assert_non_null(t);
    assert_int_equal(keng_tokens_count(t), 2);
    keng_tokens_destroy(t);
    assert_null(strstr(read_all(path), "6b" HASH_ONE_TAIL));
    assert_non_null(strstr(read_all(path), "# gateways\n"));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    assert_int_equal(keng_tokens_revoke(path, "gw-b", what, sizeof(what), errstr, sizeof(errstr)),
                     0);
    /* The last token: the file then says no gateway may post, so that the reload takes it. */
    assert_int_equal(keng_tokens_revoke(path, "gw-a", what, sizeof(what), errstr, sizeof(errstr)),
                     0);
    t = keng_tokens_load(path, errstr, sizeof(errstr));
    assert_non_null(t);
    assert_int_equal(keng_tokens_count(t), 0);
    assert_true(keng_tokens_none_intended(t));
    keng_tokens_destroy(t);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_append_and_find),
        cmocka_unit_test(test_new_file_mode),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_sha256_of_the_token),
        cmocka_unit_test(test_comments_and_blank_lines),
        cmocka_unit_test(test_no_tokens_directive),
        cmocka_unit_test(test_append_refused_under_no_tokens),
        cmocka_unit_test(test_list_shows_no_hash),
        cmocka_unit_test(test_revoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
