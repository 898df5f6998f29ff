/* Bearer tokens for keng-ingest: the token file, constant-time lookups by SHA-256, and new
 * random tokens. A token is never stored, only its hash, so a leaked file does not leak tokens. */
#include "tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "registry.h"
#include "timeutil.h"

#define HASH_LEN 32

struct keng_gateway {
    unsigned char hash[HASH_LEN];
    char name[KENG_GATEWAY_NAME_MAX + 1];
    bool all_districts;
    char **districts;
    size_t ndistricts;
};

struct keng_tokens {
    keng_gateway_t *gateways;
    size_t count;
    size_t cap;
    unsigned no_tokens_line; /* the line of the NO_TOKENS_DIRECTIVE, 0 without one */
};

/* The line that says a file holds no token on purpose, so that an emptied file (a truncated
 * save, a bad deploy) is never mistaken for "no gateway may post". */
#define NO_TOKENS_DIRECTIVE "!no-tokens"

static void gateway_clear(keng_gateway_t *gw)
{
    for (size_t i = 0; i < gw->ndistricts; i++)
        free(gw->districts[i]);
    free(gw->districts);
    gw->districts = NULL;
    gw->ndistricts = 0;
}

keng_tokens_t *keng_tokens_empty(void)
{
    return calloc(1, sizeof(keng_tokens_t));
}

void keng_tokens_destroy(keng_tokens_t *tokens)
{
    if (!tokens)
        return;
    for (size_t i = 0; i < tokens->count; i++)
        gateway_clear(&tokens->gateways[i]);
    free(tokens->gateways);
    free(tokens);
}

size_t keng_tokens_count(const keng_tokens_t *tokens)
{
    return tokens->count;
}

bool keng_tokens_none_intended(const keng_tokens_t *tokens)
{
    return tokens->no_tokens_line != 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool name_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

/* Splits off the next whitespace-separated word of *s; NULL at the end. */
static char *next_word(char **s)
{
    char *p = *s;
    char *start;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return NULL;
    start = p;
    while (*p != '\0' && *p != ' ' && *p != '\t')
        p++;
    if (*p != '\0')
        *p++ = '\0';
    *s = p;
    return start;
}

/* Parses the districts word into gw. Returns 0, or -1 with why filled. */
static int parse_districts(keng_gateway_t *gw, const char *word, char *why, size_t why_size)
{
    const char *p = word;

    if (strcmp(word, "*") == 0) {
        gw->all_districts = true;
        return 0;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char **grown;

        if (len == 0) {
            snprintf(why, why_size, "empty district id in '%s'; write D01,D07 or *", word);
            return -1;
        }
        if (!keng_unit_id_valid(p, len)) {
            snprintf(why, why_size,
                     "district list '%.80s': '%.*s' is not an id (%s); write D01,D07 or *", word,
                     (int)(len > 40 ? 40 : len), p, KENG_UNIT_ID_RULE);
            return -1;
        }
        grown = realloc(gw->districts, (gw->ndistricts + 1) * sizeof(*grown));
        if (!grown) {
            snprintf(why, why_size, "out of memory");
            return -1;
        }
        gw->districts = grown;
        gw->districts[gw->ndistricts] = strndup(p, len);
        if (!gw->districts[gw->ndistricts]) {
            snprintf(why, why_size, "out of memory");
            return -1;
        }
        gw->ndistricts++;
        p += len;
        if (*p == ',')
            p++;
        if (end && *p == '\0') {
            snprintf(why, why_size, "district list '%s' ends with a comma", word);
            return -1;
        }
    }
    return 0;
}

/* Parses one line (modified in place) into gw. Returns 1 for an entry, 2 for the
 * NO_TOKENS_DIRECTIVE, 0 for a blank or comment line, -1 with why filled. On -1, gw may hold memory
 * for gateway_clear. */
static int parse_line(char *line, keng_gateway_t *gw, char *why, size_t why_size)
{
    char *hash, *name, *districts, *extra;
    char *hash_cut = strchr(line, '#');

    if (hash_cut)
        *hash_cut = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    memset(gw, 0, sizeof(*gw));
    hash = next_word(&line);
    if (!hash)
        return 0;
    if (hash[0] == '!') {
        if (strcmp(hash, NO_TOKENS_DIRECTIVE) != 0 || next_word(&line) != NULL) {
            snprintf(why, why_size,
                     "unknown directive '%.40s'; the only one is '%s' on a line of "
                     "its own",
                     hash, NO_TOKENS_DIRECTIVE);
            return -1;
        }
        return 2;
    }
    name = next_word(&line);
    districts = next_word(&line);
    extra = next_word(&line);
    if (!name || !districts) {
        snprintf(why, why_size, "expected '<sha256 hex> <gateway name> <districts>'");
        return -1;
    }
    if (extra) {
        snprintf(why, why_size, "unexpected '%.40s' after the districts", extra);
        return -1;
    }
    if (strlen(hash) != KENG_TOKEN_HASH_HEX_LEN) {
        snprintf(why, why_size, "the hash must be %d hex digits (the SHA-256 of the token)",
                 KENG_TOKEN_HASH_HEX_LEN);
        return -1;
    }
    for (size_t i = 0; i < HASH_LEN; i++) {
        int hi = hexval((unsigned char)hash[2 * i]);
        int lo = hexval((unsigned char)hash[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(why, why_size, "the hash must be %d hex digits (the SHA-256 of the token)",
                     KENG_TOKEN_HASH_HEX_LEN);
            return -1;
        }
        gw->hash[i] = (unsigned char)(hi << 4 | lo);
    }
    if (strlen(name) > KENG_GATEWAY_NAME_MAX) {
        snprintf(why, why_size, "the gateway name is longer than %d characters",
                 KENG_GATEWAY_NAME_MAX);
        return -1;
    }
    for (const char *c = name; *c; c++) {
        if (!name_char_ok((unsigned char)*c)) {
            snprintf(why, why_size, "the gateway name must be printable ASCII without spaces");
            return -1;
        }
    }
    strcpy(gw->name, name);
    if (parse_districts(gw, districts, why, why_size) < 0)
        return -1;
    return 1;
}

keng_tokens_t *keng_tokens_load(const char *path, char *errstr, size_t errstr_size)
{
    keng_tokens_t *tokens = NULL;
    FILE *f = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    unsigned lineno = 0;
    char why[200];
    keng_gateway_t gw;

    f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "cannot open the token file %s: %s", path, strerror(errno));
        goto fail;
    }
    tokens = keng_tokens_empty();
    if (!tokens) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    while (getline(&line, &line_cap, f) >= 0) {
        int r;
        lineno++;
        r = parse_line(line, &gw, why, sizeof(why));
        if (r == 0)
            continue;
        if (r == 2) {
            tokens->no_tokens_line = lineno;
            continue;
        }
        if (r < 0) {
            gateway_clear(&gw);
            snprintf(errstr, errstr_size, "%s:%u: %s", path, lineno, why);
            goto fail;
        }
        for (size_t i = 0; i < tokens->count; i++) {
            if (memcmp(tokens->gateways[i].hash, gw.hash, HASH_LEN) == 0) {
                gateway_clear(&gw);
                snprintf(errstr, errstr_size,
                         "%s:%u: the same token hash is already listed for gateway '%s'", path,
                         lineno, tokens->gateways[i].name);
                goto fail;
            }
        }
        if (tokens->count == tokens->cap) {
            size_t cap = tokens->cap ? tokens->cap * 2 : 8;
            keng_gateway_t *grown = realloc(tokens->gateways, cap * sizeof(*grown));
            if (!grown) {
                gateway_clear(&gw);
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
            }
            tokens->gateways = grown;
            tokens->cap = cap;
        }
        tokens->gateways[tokens->count++] = gw;
    }
    if (ferror(f)) {
        snprintf(errstr, errstr_size, "cannot read the token file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (tokens->no_tokens_line != 0 && tokens->count > 0) {
        snprintf(errstr, errstr_size,
                 "%s:%u: '%s' says no gateway may post, but the file lists %zu token(s); keep "
                 "one or the other",
                 path, tokens->no_tokens_line, NO_TOKENS_DIRECTIVE, tokens->count);
        goto fail;
    }
    free(line);
    fclose(f);
    return tokens;

fail:
    free(line);
    if (f)
        fclose(f);
    keng_tokens_destroy(tokens);
    return NULL;
}

static int sha256(const void *data, size_t len, unsigned char out[HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != HASH_LEN)
        return -1;
    return 0;
}

const keng_gateway_t *keng_tokens_find(const keng_tokens_t *tokens, const char *token, size_t len)
{
    unsigned char hash[HASH_LEN];
    size_t found = 0; /* index + 1 of the match */

    if (len == 0 || sha256(token, len, hash) < 0)
        return NULL;
    /* No early exit and no branch on the comparison: every entry costs the same. */
    for (size_t i = 0; i < tokens->count; i++) {
        size_t equal = (size_t)(CRYPTO_memcmp(hash, tokens->gateways[i].hash, HASH_LEN) == 0);
        found |= (0 - equal) & (i + 1);
    }
    return found ? &tokens->gateways[found - 1] : NULL;
}

const keng_gateway_t *keng_tokens_authorize(const keng_tokens_t *tokens, const char *header)
{
    const char *p;
    size_t len;

    if (!header)
        return NULL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    p = header + 6;
    while (*p == ' ' || *p == '\t')
        p++;
    len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    return keng_tokens_find(tokens, p, len);
}

const char *keng_gateway_name(const keng_gateway_t *gw)
{
    return gw->name;
}

bool keng_gateway_allows(const keng_gateway_t *gw, const char *district_id, size_t len)
{
    if (gw->all_districts)
        return true;
    for (size_t i = 0; i < gw->ndistricts; i++)
        if (strlen(gw->districts[i]) == len && memcmp(gw->districts[i], district_id, len) == 0)
            return true;
    return false;
}

bool keng_gateway_allows_board(const keng_gateway_t *gw, const keng_registry_t *reg, uint32_t board)
{
    const keng_board_t *b = keng_registry_board(reg, board);
    const keng_commune_t *c;
    const keng_district_t *d;

    if (gw->all_districts)
        return true;
    if (!b)
        return false;
    c = keng_registry_commune(reg, b->commune);
    d = keng_registry_district(reg, b->district);
    return keng_gateway_allows(gw, b->id, strlen(b->id)) ||
           keng_gateway_allows(gw, c->id, strlen(c->id)) ||
           (d && keng_gateway_allows(gw, d->id, strlen(d->id)));
}

static bool unit_known(const keng_registry_t *reg, const char *id, size_t len)
{
    return keng_registry_find_district(reg, id, len) >= 0 ||
           keng_registry_find_commune(reg, id, len) >= 0 ||
           keng_registry_find_board(reg, id, len) >= 0;
}

int keng_tokens_check_units(const char *units, const keng_registry_t *reg, char *errstr,
                            size_t errstr_size)
{
    const char *p = units;

    if (strcmp(units, "*") == 0)
        return 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0 && !unit_known(reg, p, len)) {
            snprintf(errstr, errstr_size,
                     "the %s registry has no unit '%.*s' (ids are case-sensitive; its levels are "
                     "%s)%s",
                     keng_registry_path(reg) ? "board" : "built-in", (int)(len > 40 ? 40 : len), p,
                     keng_registry_level_list(reg),
                     keng_registry_path(reg)
                         ? ""
                         : "; give the deployment's registry with --registry FILE or --config");
            return -1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

size_t keng_tokens_each_unknown_unit(const keng_tokens_t *tokens, const keng_registry_t *reg,
                                     void (*fn)(const char *gateway, const char *unit, void *arg),
                                     void *arg)
{
    size_t n = 0;

    for (size_t i = 0; i < tokens->count; i++) {
        const keng_gateway_t *gw = &tokens->gateways[i];
        for (size_t k = 0; k < gw->ndistricts; k++) {
            if (unit_known(reg, gw->districts[k], strlen(gw->districts[k])))
                continue;
            fn(gw->name, gw->districts[k], arg);
            n++;
        }
    }
    return n;
}

int keng_tokens_generate(char *token, char *hash_hex, char *errstr, size_t errstr_size)
{
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[KENG_TOKEN_RANDOM_BYTES + 1] = {0};
    unsigned char hash[HASH_LEN];
    size_t n = 0;

    if (RAND_bytes(raw, KENG_TOKEN_RANDOM_BYTES) != 1) {
        snprintf(errstr, errstr_size, "the system's random generator failed; try again");
        return -1;
    }
    /* 32 bytes are 10 full groups of 3 and one of 2: 43 characters without padding. */
    for (size_t i = 0; i < KENG_TOKEN_RANDOM_BYTES; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
        size_t left = KENG_TOKEN_RANDOM_BYTES - i;
        if (left >= 3)
            v |= raw[i + 2];
        token[n++] = b64url[(v >> 18) & 63];
        token[n++] = b64url[(v >> 12) & 63];
        token[n++] = b64url[(v >> 6) & 63];
        if (left >= 3)
            token[n++] = b64url[v & 63];
    }
    token[n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    if (sha256(token, n, hash) < 0) {
        snprintf(errstr, errstr_size, "cannot compute SHA-256");
        return -1;
    }
    for (size_t i = 0; i < HASH_LEN; i++)
        sprintf(hash_hex + 2 * i, "%02x", hash[i]);
    return 0;
}

/* Whether the file at path says "!no-tokens": a token appended under it would make a file
 * that every reload refuses. Returns its line, or 0 (no such line, or no file yet). */
static unsigned no_tokens_line_of(const char *path)
{
    char err[256];
    keng_tokens_t *t = keng_tokens_load(path, err, sizeof(err));
    unsigned line = t ? t->no_tokens_line : 0;

    keng_tokens_destroy(t);
    return line;
}

int keng_tokens_append(const char *path, const char *hash_hex, const char *name,
                       const char *districts, char *errstr, size_t errstr_size)
{
    char line[512];
    char check[512];
    char why[200] = "the line would not load back";
    keng_gateway_t gw;
    int fd = -1;
    int rc = -1;
    int len;
    int parsed;
    struct stat st;

    char created[32];
    keng_time_format_utc(keng_now_ms(), created, sizeof(created));
    /* "2026-12-06T08:00:00.000Z": to the second is enough to tell tokens apart. */
    len = snprintf(line, sizeof(line), "%s %s %s # created %.19sZ\n", hash_hex, name, districts,
                   created);
    if (len < 0 || (size_t)len >= sizeof(line)) {
        snprintf(errstr, errstr_size, "the gateway name or district list is too long");
        goto out;
    }
    if (strpbrk(name, " \t#\r\n") || strpbrk(districts, " \t#\r\n")) {
        snprintf(errstr, errstr_size,
                 "cannot add the token: the gateway name and districts may not contain "
                 "spaces or '#'");
        goto out;
    }
    unsigned no_tokens = no_tokens_line_of(path);
    if (no_tokens) {
        snprintf(errstr, errstr_size,
                 "%s:%u: the file says '%s' (no gateway may post), and a token added under it "
                 "would make the next reload refuse the file; remove that line first, then add "
                 "the token",
                 path, no_tokens, NO_TOKENS_DIRECTIVE);
        goto out;
    }
    memcpy(check, line, (size_t)len + 1);
    parsed = parse_line(check, &gw, why, sizeof(why));
    gateway_clear(&gw);
    if (parsed != 1) {
        snprintf(errstr, errstr_size, "cannot add the token: %s", why);
        goto out;
    }
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "cannot open the token file %s: %s", path, strerror(errno));
        goto out;
    }
    /* A file whose last line has no newline would glue our line onto it. */
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        char last = '\n';
        int rfd = open(path, O_RDONLY | O_CLOEXEC);
        if (rfd >= 0) {
            if (pread(rfd, &last, 1, st.st_size - 1) != 1)
                last = '\n';
            close(rfd);
        }
        if (last != '\n' && write(fd, "\n", 1) != 1) {
            snprintf(errstr, errstr_size, "cannot write the token file %s: %s", path,
                     strerror(errno));
            goto out;
        }
    }
    if (write(fd, line, (size_t)len) != len || fsync(fd) != 0) {
        snprintf(errstr, errstr_size, "cannot write the token file %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;

out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- --list-tokens and --revoke: the file as its lines ---- */

#define TOKEN_ID_LEN 8

typedef struct {
    char **lines; /* as read, each with its newline */
    size_t count, cap;
} lines_t;

static void lines_free(lines_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->lines[i]);
    free(l->lines);
}

/* Reads the file's lines after checking that it loads, so that a listing or a revocation
 * never works from a file keng-ingest would refuse. */
static int lines_read(const char *path, lines_t *l, char *errstr, size_t errstr_size)
{
    keng_tokens_t *t = keng_tokens_load(path, errstr, errstr_size);
    char *line = NULL;
    size_t cap = 0;
    FILE *f;

    memset(l, 0, sizeof(*l));
    if (!t)
        return -1;
    keng_tokens_destroy(t);
    f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "cannot open the token file %s: %s", path, strerror(errno));
        return -1;
    }
    while (getline(&line, &cap, f) >= 0) {
        if (l->count == l->cap) {
            size_t ncap = l->cap ? l->cap * 2 : 16;
            char **grown = realloc(l->lines, ncap * sizeof(*grown));
            if (!grown)
                break;
            l->lines = grown;
            l->cap = ncap;
        }
        l->lines[l->count] = strdup(line);
        if (!l->lines[l->count])
            break;
        l->count++;
    }
    bool failed = ferror(f) || !feof(f);
    free(line);
    fclose(f);
    if (failed) {
        snprintf(errstr, errstr_size, "cannot read the token file %s", path);
        lines_free(l);
        return -1;
    }
    return 0;
}

/* The token of one line: its id, gateway, districts and creation time (from the comment
 * append writes, "-" without one). Returns 1 for a token line, 0 for any other. */
static int line_token(const char *line, char *id, char *name, size_t name_size, char *districts,
                      size_t districts_size, char *created, size_t created_size)
{
    char copy[512], why[200];
    keng_gateway_t gw;
    const char *mark = strstr(line, "# created ");

    snprintf(copy, sizeof(copy), "%s", line);
    if (parse_line(copy, &gw, why, sizeof(why)) != 1)
        return 0;
    gateway_clear(&gw);
    /* parse_line cut the copy into words: hash, name and districts, in that order. */
    snprintf(copy, sizeof(copy), "%s", line);
    copy[strcspn(copy, "#\r\n")] = '\0';
    char *rest = copy, *hash = next_word(&rest), *n = next_word(&rest), *d = next_word(&rest);
    snprintf(id, TOKEN_ID_LEN + 1, "%.*s", TOKEN_ID_LEN, hash); /* the hash's first digits */
    snprintf(name, name_size, "%s", n);
    snprintf(districts, districts_size, "%s", d);
    if (mark)
        snprintf(created, created_size, "%.*s", (int)strcspn(mark + 10, " \t\r\n"), mark + 10);
    else
        snprintf(created, created_size, "-");
    return 1;
}

int keng_tokens_list(const char *path, FILE *out, char *errstr, size_t errstr_size)
{
    lines_t l;
    char id[TOKEN_ID_LEN + 1], name[KENG_GATEWAY_NAME_MAX + 1], districts[256], created[40];

    if (lines_read(path, &l, errstr, errstr_size) < 0)
        return -1;
    for (size_t i = 0; i < l.count; i++) {
        if (line_token(l.lines[i], id, name, sizeof(name), districts, sizeof(districts), created,
                       sizeof(created)))
            fprintf(out, "%s  %s  %s  %s\n", id, name, districts, created);
    }
    lines_free(&l);
    return 0;
}

/* Writes lines (but the one at skip) to a new file beside path with mode, synced, and renames
 * it over path. Returns 0, or -1 with errstr filled and path unchanged. */
static int replace_file(const char *path, const lines_t *l, size_t skip, const char *append,
                        mode_t mode, char *errstr, size_t errstr_size)
{
    char tmp[4096];
    int fd;
    bool ok = true;

    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "cannot write beside %s: %s", path, strerror(errno));
        return -1;
    }
    ok = fchmod(fd, mode) == 0;
    for (size_t i = 0; ok && i < l->count; i++) {
        size_t len = strlen(l->lines[i]);
        if (i != skip)
            ok = write(fd, l->lines[i], len) == (ssize_t)len;
    }
    if (ok && append)
        ok = write(fd, append, strlen(append)) == (ssize_t)strlen(append);
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(errstr, errstr_size, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int keng_tokens_revoke(const char *path, const char *which, char *what, size_t what_size,
                       char *errstr, size_t errstr_size)
{
    char want[KENG_GATEWAY_NAME_MAX + 1], ids[256] = "";
    char id[TOKEN_ID_LEN + 1], name[KENG_GATEWAY_NAME_MAX + 1], districts[256], created[40];
    const char *at = strchr(which, '@');
    size_t matches = 0, match = 0, tokens = 0;
    struct stat st;
    lines_t l;
    int rc = -1;

    snprintf(want, sizeof(want), "%.*s", (int)(at ? (size_t)(at - which) : strlen(which)), which);
    if (stat(path, &st) != 0) {
        snprintf(errstr, errstr_size, "cannot open the token file %s: %s", path, strerror(errno));
        return -1;
    }
    if (lines_read(path, &l, errstr, errstr_size) < 0)
        return -1;
    for (size_t i = 0; i < l.count; i++) {
        if (!line_token(l.lines[i], id, name, sizeof(name), districts, sizeof(districts), created,
                        sizeof(created)))
            continue;
        tokens++;
        if (strcmp(name, want) != 0)
            continue;
        size_t used = strlen(ids);
        snprintf(ids + used, sizeof(ids) - used, "%s%s@%s", used ? ", " : "", name, id);
        if (at && strncmp(id, at + 1, strlen(at + 1)) != 0)
            continue;
        matches++;
        match = i;
        snprintf(what, what_size, "%s@%s (%s)", name, id, districts);
    }
    if (matches == 0) {
        snprintf(errstr, errstr_size, "%s: no token of gateway '%s'%s%s (--list-tokens shows them)",
                 path, which, ids[0] ? "; its tokens are " : "", ids);
    } else if (matches > 1) {
        snprintf(errstr, errstr_size,
                 "%s: gateway '%s' has %zu tokens (%s): name the one to revoke, as --revoke %s",
                 path, want, matches, ids, strchr(ids, ',') ? "NAME@ID" : ids);
    } else {
        const char *last = tokens == 1 ? "# every token was revoked: no gateway may post\n"
                                         "!no-tokens\n"
                                       : NULL;
        rc = replace_file(path, &l, match, last, st.st_mode & 0777, errstr, errstr_size);
    }
    lines_free(&l);
    return rc;
}
