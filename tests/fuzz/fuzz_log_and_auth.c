/* Fuzzes what keng does with the bytes of a request head before it trusts them: the
 * Authorization header through keng_tokens_authorize (keng-ingest's check before it reads a
 * body), and any string through the log's escaping (keng_log_value), which every request path,
 * gateway name and error reaches. It never starts a server or writes a log line.
 *
 * Properties: the header finds the one gateway only when it carries that gateway's token after
 * "Bearer "; an escaped value holds no control byte, and a quoted one has no unescaped quote
 * inside, so it can neither end the line nor forge a key. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "log.h"
#include "tokens.h"

static keng_tokens_t *tokens;
static char token[KENG_TOKEN_TEXT_LEN + 1];

static void setup(void)
{
    char hash[KENG_TOKEN_HASH_HEX_LEN + 1], path[] = "/tmp/keng-fuzz-tokens-XXXXXX", err[256];
    int fd = mkstemp(path);

    FUZZ_CHECK(fd >= 0, "mkstemp");
    close(fd);
    unlink(path);
    FUZZ_CHECK(keng_tokens_generate(token, hash, err, sizeof(err)) == 0, "%s", err);
    FUZZ_CHECK(keng_tokens_append(path, hash, "gw", "*", err, sizeof(err)) == 0, "%s", err);
    tokens = keng_tokens_load(path, err, sizeof(err));
    FUZZ_CHECK(tokens != NULL, "%s", err);
    unlink(path);
}

static void check_escaped(const char *in)
{
    char out[4096];
    size_t n = keng_log_value(out, sizeof(out), in);

    FUZZ_CHECK(n == strlen(out), "the length keng_log_value returns is its output's");
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f,
                   "a control byte 0x%02x at %zu of an escaped value", (unsigned char)out[i], i);
    if (n > 0 && out[0] == '"') {
        FUZZ_CHECK(n >= 2 && out[n - 1] == '"', "a quoted value ends with its quote: %s", out);
        for (size_t i = 1; i + 1 < n; i++) {
            if (out[i] == '\\')
                i++; /* an escape and what it escapes */
            else
                FUZZ_CHECK(out[i] != '"', "an unescaped quote inside a quoted value: %s", out);
        }
    } else {
        FUZZ_CHECK(n > 0 && !strpbrk(out, " \"="), "a bare value with a space, quote or '=': %s",
                   out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = malloc(size + 1);

    if (!tokens)
        setup();
    FUZZ_CHECK(header != NULL, "out of memory");
    memcpy(header, data, size);
    header[size] = '\0';

    const keng_gateway_t *gw = keng_tokens_authorize(tokens, header);
    if (gw) {
        FUZZ_CHECK(strcmp(keng_gateway_name(gw), "gw") == 0, "a gateway that was never listed");
        FUZZ_CHECK(strstr(header, token) != NULL,
                   "a gateway found by a header without its "
                   "token: '%s'",
                   header);
    }
    /* A log line is cut at 2 KiB; a value of 500 bytes escapes to at most 2,002. */
    if (size <= 500)
        check_escaped(header);
    free(header);
    return 0;
}
