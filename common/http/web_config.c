/* The web config file: a strict reader of the YAML subset that the exporter toolkit's web
 * configuration uses, its users with their bcrypt hashes and keng's scopes. The bcrypt check
 * itself (tens of milliseconds) is split out so that a program runs it off its loop thread. */
#include "web_config.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "config.h" /* keng_config_warn_if_exposed */
#include "log.h"
#include "registry.h" /* keng_unit_id_valid: scopes use the registry's id alphabet */

#define MAX_FILE_BYTES (1 << 20)
#define MAX_DEPTH      4

/* ---- the YAML subset: a tree of mappings, sequences and scalars ---- */

typedef enum { NODE_SCALAR, NODE_MAP, NODE_SEQ, NODE_NULL } node_kind_t;

typedef struct node {
    node_kind_t kind;
    int line;
    char *text;          /* NODE_SCALAR */
    char **keys;         /* NODE_MAP */
    struct node **items; /* NODE_MAP values, NODE_SEQ items */
    int *key_lines;
    size_t n;
} node_t;

typedef struct line {
    int number; /* in the file, from 1 */
    int indent;
    char *text; /* without indent, comment and trailing blanks */
} line_t;

typedef struct parser {
    line_t *lines;
    size_t nlines, pos;
    const char *name;
    char *errstr;
    size_t errstr_size;
    bool failed;
} parser_t;

static void fail(parser_t *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(parser_t *p, int line, const char *fmt, ...)
{
    char why[300];
    va_list ap;

    if (p->failed)
        return;
    p->failed = true;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(p->errstr, p->errstr_size, "%s:%d: %s", p->name, line, why);
    else
        snprintf(p->errstr, p->errstr_size, "%s: %s", p->name, why);
}

static void node_free(node_t *n)
{
    if (!n)
        return;
    free(n->text);
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->key_lines);
    free(n);
}

static node_t *node_new(node_kind_t kind, int line)
{
    node_t *n = calloc(1, sizeof(*n));
    if (n) {
        n->kind = kind;
        n->line = line;
    }
    return n;
}

static int node_add(node_t *parent, char *key, int key_line, node_t *child)
{
    size_t n = parent->n + 1;
    node_t **items = realloc(parent->items, n * sizeof(*items));
    if (!items)
        return -1;
    parent->items = items;
    if (parent->kind == NODE_MAP) {
        char **keys = realloc(parent->keys, n * sizeof(*keys));
        if (!keys)
            return -1;
        parent->keys = keys;
        int *lines = realloc(parent->key_lines, n * sizeof(*lines));
        if (!lines)
            return -1;
        parent->key_lines = lines;
        keys[parent->n] = key;
        lines[parent->n] = key_line;
    }
    items[parent->n] = child;
    parent->n = n;
    return 0;
}

/* Splits the text into lines: tabs in the indentation are refused, comments ('#' at the start
 * or after a blank, outside quotes) and trailing blanks are dropped, blank lines skipped. */
static int split_lines(parser_t *p, char *text)
{
    int number = 0;

    for (char *s = text; s && *s;) {
        char *end = strchr(s, '\n');
        if (end)
            *end = '\0';
        number++;
        int indent = 0;
        while (s[indent] == ' ')
            indent++;
        if (s[indent] == '\t') {
            fail(p, number, "a tab in the indentation (YAML indents with spaces)");
            return -1;
        }
        char *body = s + indent;
        char quote = 0;
        for (char *c = body; *c; c++) {
            if (quote) {
                if (*c == '\\' && quote == '"' && c[1])
                    c++;
                else if (*c == quote)
                    quote = 0;
            } else if (*c == '"' || *c == '\'') {
                quote = *c;
            } else if (*c == '#' && (c == body || c[-1] == ' ' || c[-1] == '\t')) {
                *c = '\0';
                break;
            }
        }
        size_t len = strlen(body);
        while (len > 0 && (body[len - 1] == ' ' || body[len - 1] == '\t' || body[len - 1] == '\r'))
            body[--len] = '\0';
        if (len > 0) {
            if (strcmp(body, "---") == 0 && p->nlines == 0) {
                s = end ? end + 1 : NULL;
                continue; /* a document start before anything else */
            }
            line_t *grown = realloc(p->lines, (p->nlines + 1) * sizeof(*grown));
            if (!grown) {
                fail(p, 0, "out of memory");
                return -1;
            }
            p->lines = grown;
            p->lines[p->nlines++] = (line_t){number, indent, body};
        }
        s = end ? end + 1 : NULL;
    }
    return 0;
}

/* A scalar: plain, 'single' ('' is a quote) or "double" (\" \\ \n \t). Returns a new string,
 * or NULL with p failed. */
static char *scalar(parser_t *p, int line, const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len + 1), *o = out;

    if (!out) {
        fail(p, line, "out of memory");
        return NULL;
    }
    if (*s != '"' && *s != '\'') {
        if (strchr("[]{}&*!|>%@`", *s)) {
            fail(p, line, "'%c' starts YAML that a web config file does not use here", *s);
            free(out);
            return NULL;
        }
        memcpy(out, s, len + 1);
        return out;
    }
    char quote = *s++;
    for (;;) {
        if (*s == '\0') {
            fail(p, line, "an unterminated quote");
            free(out);
            return NULL;
        }
        if (*s == quote) {
            if (quote == '\'' && s[1] == '\'') { /* '' is a quote inside '...' */
                *o++ = '\'';
                s += 2;
                continue;
            }
            break;
        }
        if (quote == '"' && *s == '\\') {
            char e = s[1];
            if (e == 'n')
                *o++ = '\n';
            else if (e == 't')
                *o++ = '\t';
            else if (e == '"' || e == '\\')
                *o++ = e;
            else {
                fail(p, line, "an escape that a web config file does not use: \\%c", e ? e : ' ');
                free(out);
                return NULL;
            }
            s += 2;
            continue;
        }
        *o++ = *s++;
    }
    if (s[1] != '\0') {
        fail(p, line, "text after a closing quote");
        free(out);
        return NULL;
    }
    *o = '\0';
    return out;
}

/* [a, b, "c"]: a sequence of scalars on one line. */
static node_t *flow_sequence(parser_t *p, int line, const char *s)
{
    node_t *seq = node_new(NODE_SEQ, line);
    size_t len = strlen(s);

    if (!seq || s[len - 1] != ']') {
        fail(p, line, seq ? "a '[' sequence must end with ']' on its line" : "out of memory");
        node_free(seq);
        return NULL;
    }
    char *copy = strndup(s + 1, len - 2);
    if (!copy) {
        fail(p, line, "out of memory");
        node_free(seq);
        return NULL;
    }
    char *item = copy;
    while (!p->failed) {
        while (*item == ' ')
            item++;
        /* A comma inside quotes belongs to the item. */
        char *end = item, quote = 0;
        for (; *end && (quote || *end != ','); end++) {
            if (quote && *end == quote)
                quote = 0;
            else if (!quote && (*end == '"' || *end == '\''))
                quote = *end;
        }
        char last = *end;
        *end = '\0';
        size_t n = strlen(item);
        while (n > 0 && item[n - 1] == ' ')
            item[--n] = '\0';
        if (n == 0) {
            if (last == '\0' && seq->n == 0 && item == copy + strspn(copy, " "))
                break; /* [] */
            fail(p, line, "an empty item in a '[' sequence");
            break;
        }
        node_t *v = node_new(NODE_SCALAR, line);
        if (!v || !(v->text = scalar(p, line, item)) || node_add(seq, NULL, line, v) != 0) {
            if (v && !p->failed)
                fail(p, line, "out of memory");
            node_free(v);
            break;
        }
        if (last == '\0')
            break;
        item = end + 1;
    }
    free(copy);
    if (p->failed) {
        node_free(seq);
        return NULL;
    }
    return seq;
}

static node_t *block(parser_t *p, int indent, int depth);

/* The value after "key:" on its line, or the block under it. */
static node_t *value(parser_t *p, int line, const char *rest, int indent, int depth)
{
    if (*rest) {
        if (*rest == '[')
            return flow_sequence(p, line, rest);
        node_t *v = node_new(NODE_SCALAR, line);
        if (!v || !(v->text = scalar(p, line, rest))) {
            if (!v)
                fail(p, line, "out of memory");
            node_free(v);
            return NULL;
        }
        return v;
    }
    /* A block below (deeper), or a sequence at the key's own indent ("key:\n- a"). */
    if (p->pos < p->nlines) {
        const line_t *next = &p->lines[p->pos];
        if (next->indent > indent || (next->indent == indent && next->text[0] == '-' &&
                                      (next->text[1] == ' ' || next->text[1] == '\0')))
            return block(p, next->indent, depth + 1);
    }
    return node_new(NODE_NULL, line);
}

/* The mapping or sequence whose lines start at this indent. */
static node_t *block(parser_t *p, int indent, int depth)
{
    const line_t *first = &p->lines[p->pos];
    bool is_seq = first->text[0] == '-' && (first->text[1] == ' ' || first->text[1] == '\0');
    node_t *n = node_new(is_seq ? NODE_SEQ : NODE_MAP, first->number);

    if (!n) {
        fail(p, first->number, "out of memory");
        return NULL;
    }
    if (depth > MAX_DEPTH) {
        fail(p, first->number, "nested deeper than a web config file goes");
        node_free(n);
        return NULL;
    }
    while (p->pos < p->nlines && !p->failed) {
        const line_t *l = &p->lines[p->pos];
        if (l->indent < indent)
            break;
        if (l->indent > indent) {
            fail(p, l->number, "unexpected indentation");
            break;
        }
        bool item = l->text[0] == '-' && (l->text[1] == ' ' || l->text[1] == '\0');
        if (item != is_seq) {
            fail(p, l->number,
                 is_seq ? "expected '- item' like the lines above"
                        : "a '- item' where a 'key: value' was expected");
            break;
        }
        p->pos++;
        if (is_seq) {
            const char *rest = l->text + 1 + strspn(l->text + 1, " ");
            if (!*rest || strstr(rest, ": ") || rest[strlen(rest) - 1] == ':') {
                fail(p, l->number, "a sequence item must be a single value here");
                break;
            }
            node_t *v = value(p, l->number, rest, indent, depth);
            if (!v || node_add(n, NULL, l->number, v) != 0) {
                node_free(v);
                if (!p->failed)
                    fail(p, l->number, "out of memory");
                break;
            }
            continue;
        }
        /* key: value, the key plain or quoted. */
        const char *t = l->text, *colon;
        if (*t == '"' || *t == '\'') {
            const char *close = strchr(t + 1, *t);
            colon = close ? close + 1 : NULL;
            if (!colon || *colon != ':') {
                fail(p, l->number, "expected a quoted key followed by ':'");
                break;
            }
        } else {
            colon = strstr(t, ": ");
            if (!colon && t[strlen(t) - 1] == ':')
                colon = t + strlen(t) - 1;
            if (!colon) {
                fail(p, l->number, "expected 'key: value'");
                break;
            }
        }
        char *keytext = strndup(t, (size_t)(colon - t));
        char *key = keytext ? scalar(p, l->number, keytext) : NULL;
        free(keytext);
        if (!key) {
            if (!p->failed)
                fail(p, l->number, "out of memory");
            break;
        }
        for (size_t i = 0; i < n->n; i++) {
            if (strcmp(n->keys[i], key) == 0) {
                fail(p, l->number, "%s is given twice (first on line %d)", key, n->key_lines[i]);
                break;
            }
        }
        const char *rest = colon + 1 + strspn(colon + 1, " ");
        node_t *v = p->failed ? NULL : value(p, l->number, rest, indent, depth);
        if (!v || node_add(n, key, l->number, v) != 0) {
            free(key);
            node_free(v);
            if (!p->failed)
                fail(p, l->number, "out of memory");
            break;
        }
    }
    if (p->failed) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* ---- the configuration ---- */

struct keng_web_user {
    char *name;
    char *hash;
    char **scope;
    size_t nscope;
    bool metrics;
    /* The last password that passed bcrypt, as SHA-256(key || password): a later request with
     * the same password is let in without bcrypt's cost. */
    unsigned char remembered[32];
    bool has_remembered;
};

struct keng_web_config {
    keng_web_user_t *users;
    size_t nusers;
    char **header_names, **header_values;
    size_t nheaders;
    unsigned char key[32];  /* for the remembered passwords, new per process */
    unsigned pending;       /* checks on the thread pool (keng_web_check_queue) */
    struct check_job *jobs; /* those checks, for a request with the same credentials to join */
    /* tls_server_config: the settings read, their paths (relative ones from the file's
     * folder, as the toolkit does), and the context made from them by
     * keng_web_config_from_config. */
    bool has_tls;
    keng_tls_settings_t tls_settings;
    char *cert_file, *key_file, *client_ca_file;
    char *dir; /* the file's folder; NULL for text not from a file */
    keng_tls_t *tls;
};

/* What an unknown user's password is checked against, so that it costs what a known user's
 * does: a bcrypt hash of cost 10 of 32 random bytes that were thrown away. */
static const char dummy_hash[] = "$2b$10$oo2oCjPuisVz4.n4SA7WeePSK.bGeywtV/IiqsPP8O2Bl.tfZ2ym2";

static keng_web_user_t *user_find(const keng_web_config_t *wc, const char *name, size_t len)
{
    for (size_t i = 0; i < wc->nusers; i++)
        if (strlen(wc->users[i].name) == len && memcmp(wc->users[i].name, name, len) == 0)
            return &wc->users[i];
    return NULL;
}

void keng_web_config_destroy(keng_web_config_t *wc)
{
    if (!wc)
        return;
    for (size_t i = 0; i < wc->nusers; i++) {
        free(wc->users[i].name);
        free(wc->users[i].hash);
        for (size_t k = 0; k < wc->users[i].nscope; k++)
            free(wc->users[i].scope[k]);
        free(wc->users[i].scope);
    }
    for (size_t i = 0; i < wc->nheaders; i++) {
        free(wc->header_names[i]);
        free(wc->header_values[i]);
    }
    free(wc->header_names);
    free(wc->header_values);
    OPENSSL_cleanse(wc->key, sizeof(wc->key));
    keng_tls_destroy(wc->tls);
    free(wc->cert_file);
    free(wc->key_file);
    free(wc->client_ca_file);
    free(wc->dir);
    free(wc->users);
    free(wc);
}

/* A list of scalars: a sequence, or one scalar. Returns its count, or -1 with p failed. */
static long scalars(parser_t *p, const node_t *n, const char *what)
{
    if (n->kind == NODE_SCALAR)
        return 1;
    if (n->kind == NODE_NULL)
        return 0;
    if (n->kind != NODE_SEQ) {
        fail(p, n->line, "%s: expected a list such as [a, b]", what);
        return -1;
    }
    return (long)n->n;
}

static const char *scalar_at(const node_t *n, size_t i)
{
    return n->kind == NODE_SCALAR ? n->text : n->items[i]->text;
}

static bool bcrypt_hash(const char *s)
{
    /* $2a$, $2b$ or $2y$, two cost digits, '$', 53 characters of salt and hash. */
    if (strlen(s) != 60 || s[0] != '$' || s[1] != '2' || !strchr("aby", s[2]) || s[3] != '$' ||
        !isdigit((unsigned char)s[4]) || !isdigit((unsigned char)s[5]) || s[6] != '$')
        return false;
    for (const char *c = s + 7; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '/')
            return false;
    return true;
}

static bool header_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* Headers that keng writes itself, or that would change what an answer means. */
static bool header_reserved(const char *s)
{
    static const char *const reserved[] = {"Content-Type",      "Content-Length",   "Connection",
                                           "Transfer-Encoding", "WWW-Authenticate", "Date",
                                           "Keep-Alive",        "Upgrade"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(s, reserved[i]) == 0)
            return true;
    return false;
}

static void read_users(parser_t *p, keng_web_config_t *wc, const node_t *n)
{
    if (n->kind == NODE_NULL)
        return;
    if (n->kind != NODE_MAP) {
        fail(p, n->line, "basic_auth_users: expected 'user: bcrypt hash' lines under it");
        return;
    }
    wc->users = calloc(n->n ? n->n : 1, sizeof(*wc->users));
    if (!wc->users) {
        fail(p, n->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < n->n && !p->failed; i++) {
        const node_t *v = n->items[i];
        if (!*n->keys[i] || strchr(n->keys[i], ':')) {
            fail(p, n->key_lines[i], "basic_auth_users: '%s' is not a user name (no ':')",
                 n->keys[i]);
            return;
        }
        if (v->kind != NODE_SCALAR || !bcrypt_hash(v->text)) {
            fail(p, n->key_lines[i],
                 "basic_auth_users: %s: not a bcrypt hash ($2b$10$ and 53 characters; make one "
                 "with keng-aggregate --hash-password)",
                 n->keys[i]);
            return;
        }
        keng_web_user_t *u = &wc->users[wc->nusers++];
        u->name = strdup(n->keys[i]);
        u->hash = strdup(v->text);
        if (!u->name || !u->hash)
            fail(p, n->key_lines[i], "out of memory");
    }
}

static void read_scopes(parser_t *p, keng_web_config_t *wc, const node_t *n)
{
    if (n->kind == NODE_NULL)
        return;
    if (n->kind != NODE_MAP) {
        fail(p, n->line, "user_scopes: expected 'user: [unit, ...]' lines under it");
        return;
    }
    for (size_t i = 0; i < n->n && !p->failed; i++) {
        keng_web_user_t *u = user_find(wc, n->keys[i], strlen(n->keys[i]));
        if (!u) {
            fail(p, n->key_lines[i], "user_scopes: %s is not in basic_auth_users", n->keys[i]);
            return;
        }
        long count = scalars(p, n->items[i], "user_scopes");
        if (count < 0)
            return;
        u->scope = calloc((size_t)count + 1, sizeof(*u->scope));
        if (!u->scope) {
            fail(p, n->key_lines[i], "out of memory");
            return;
        }
        for (long k = 0; k < count; k++) {
            const char *id = scalar_at(n->items[i], (size_t)k);
            if (!keng_unit_id_valid(id, strlen(id))) {
                fail(p, n->key_lines[i], "user_scopes: %s: '%.40s' is not a unit id (%s)",
                     n->keys[i], id, KENG_UNIT_ID_RULE);
                return;
            }
            if (!(u->scope[u->nscope++] = strdup(id)))
                fail(p, n->key_lines[i], "out of memory");
        }
    }
}

static void read_metrics_users(parser_t *p, keng_web_config_t *wc, const node_t *n)
{
    long count = scalars(p, n, "metrics_users");

    for (long k = 0; k < count && !p->failed; k++) {
        const char *name = scalar_at(n, (size_t)k);
        keng_web_user_t *u = user_find(wc, name, strlen(name));
        if (!u) {
            fail(p, n->line, "metrics_users: %s is not in basic_auth_users", name);
            return;
        }
        u->metrics = true;
    }
}

static void read_server_config(parser_t *p, keng_web_config_t *wc, const node_t *n)
{
    if (n->kind == NODE_NULL)
        return;
    if (n->kind != NODE_MAP) {
        fail(p, n->line, "http_server_config: expected keys under it");
        return;
    }
    for (size_t i = 0; i < n->n && !p->failed; i++) {
        const node_t *v = n->items[i];
        if (strcmp(n->keys[i], "http2") == 0) {
            /* The toolkit's switch for HTTP/2; keng speaks HTTP/1.1 either way. */
            if (v->kind != NODE_SCALAR ||
                (strcmp(v->text, "true") != 0 && strcmp(v->text, "false") != 0))
                fail(p, n->key_lines[i], "http_server_config.http2: expected true or false");
            continue;
        }
        if (strcmp(n->keys[i], "headers") != 0) {
            fail(p, n->key_lines[i],
                 "http_server_config: unknown key '%s' (keng reads headers "
                 "and http2)",
                 n->keys[i]);
            return;
        }
        if (v->kind == NODE_NULL)
            continue;
        if (v->kind != NODE_MAP) {
            fail(p, v->line, "http_server_config.headers: expected 'Name: value' lines");
            return;
        }
        wc->header_names = calloc(v->n + 1, sizeof(char *));
        wc->header_values = calloc(v->n + 1, sizeof(char *));
        if (!wc->header_names || !wc->header_values) {
            fail(p, v->line, "out of memory");
            return;
        }
        for (size_t k = 0; k < v->n; k++) {
            const node_t *h = v->items[k];
            if (!header_name_ok(v->keys[k]) || header_reserved(v->keys[k])) {
                fail(p, v->key_lines[k], "http_server_config.headers: '%s' %s", v->keys[k],
                     header_name_ok(v->keys[k]) ? "is set by keng itself" : "is not a header name");
                return;
            }
            if (h->kind != NODE_SCALAR || strpbrk(h->text, "\r\n")) {
                fail(p, v->key_lines[k],
                     "http_server_config.headers: %s: expected one line of "
                     "text",
                     v->keys[k]);
                return;
            }
            wc->header_names[wc->nheaders] = strdup(v->keys[k]);
            wc->header_values[wc->nheaders] = strdup(h->text);
            if (!wc->header_names[wc->nheaders++] || !wc->header_values[wc->nheaders - 1])
                fail(p, v->key_lines[k], "out of memory");
        }
    }
}

/* A TLS version's name in the toolkit's spelling; 0 when it is not one keng serves. */
static int tls_version(parser_t *p, const node_t *v, int line, const char *key)
{
    if (v->kind == NODE_SCALAR && strcmp(v->text, "TLS12") == 0)
        return TLS1_2_VERSION;
    if (v->kind == NODE_SCALAR && strcmp(v->text, "TLS13") == 0)
        return TLS1_3_VERSION;
    if (v->kind == NODE_SCALAR && (strcmp(v->text, "TLS10") == 0 || strcmp(v->text, "TLS11") == 0))
        fail(p, line,
             "tls_server_config.%s: %s is refused: keng serves TLS 1.2 and 1.3 only (TLS12 or "
             "TLS13)",
             key, v->text);
    else
        fail(p, line, "tls_server_config.%s: expected TLS12 or TLS13", key);
    return 0;
}

/* n is the value of tls_server_config, whose key is on key_line. */
static void read_tls_config(parser_t *p, keng_web_config_t *wc, const node_t *n, int key_line)
{
    /* Keys of the toolkit's that would change what the file means and keng does not apply:
     * refused, so that the file never means less here than in Prometheus. */
    static const char *const not_read[] = {
        "cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans"};
    keng_tls_settings_t *t = &wc->tls_settings;
    int auth_line = key_line;
    bool auth_given = false;

    if (n->kind == NODE_NULL)
        return;
    if (n->kind != NODE_MAP) {
        fail(p, n->line, "tls_server_config: expected keys under it");
        return;
    }
    wc->has_tls = true;
    t->client_auth = KENG_TLS_NO_CLIENT_CERT;
    t->min_version = TLS1_2_VERSION;
    t->prefer_server_cipher_suites = true;
    for (size_t i = 0; i < n->n && !p->failed; i++) {
        const char *key = n->keys[i];
        const node_t *v = n->items[i];
        int line = n->key_lines[i];
        char **path = strcmp(key, "cert_file") == 0        ? &wc->cert_file
                      : strcmp(key, "key_file") == 0       ? &wc->key_file
                      : strcmp(key, "client_ca_file") == 0 ? &wc->client_ca_file
                                                           : NULL;
        if (path) {
            if (v->kind != NODE_SCALAR || !*v->text) {
                fail(p, line, "tls_server_config.%s: expected a file's path", key);
                return;
            }
            if (!(*path = strdup(v->text)))
                fail(p, line, "out of memory");
        } else if (strcmp(key, "client_auth_type") == 0) {
            int auth = v->kind == NODE_SCALAR ? keng_tls_client_auth_parse(v->text) : -1;
            if (auth < 0) {
                fail(p, line,
                     "tls_server_config.client_auth_type: expected NoClientCert, "
                     "RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or "
                     "RequireAndVerifyClientCert");
                return;
            }
            t->client_auth = (keng_tls_client_auth_t)auth;
            auth_given = true;
            auth_line = line;
        } else if (strcmp(key, "min_version") == 0) {
            t->min_version = tls_version(p, v, line, key);
        } else if (strcmp(key, "max_version") == 0) {
            t->max_version = tls_version(p, v, line, key);
        } else if (strcmp(key, "prefer_server_cipher_suites") == 0) {
            if (v->kind != NODE_SCALAR ||
                (strcmp(v->text, "true") != 0 && strcmp(v->text, "false") != 0)) {
                fail(p, line, "tls_server_config.%s: expected true or false", key);
                return;
            }
            t->prefer_server_cipher_suites = strcmp(v->text, "true") == 0;
        } else {
            bool known = false;
            for (size_t k = 0; k < sizeof(not_read) / sizeof(not_read[0]); k++)
                known = known || strcmp(key, not_read[k]) == 0;
            fail(p, line,
                 known ? "tls_server_config.%s: keng does not read this key; leave it out "
                         "(keng takes OpenSSL's choice of ciphers and curves, and certificates "
                         "from files)"
                       : "tls_server_config: unknown key '%s' (keng reads cert_file, key_file, "
                         "client_ca_file, client_auth_type, min_version, max_version and "
                         "prefer_server_cipher_suites)",
                 key);
            return;
        }
    }
    if (p->failed)
        return;
    if (!wc->cert_file || !wc->key_file)
        fail(p, key_line, "tls_server_config: needs both cert_file and key_file");
    else if (t->max_version && t->max_version < t->min_version)
        fail(p, key_line, "tls_server_config: max_version is below min_version");
    else if (wc->client_ca_file && t->client_auth == KENG_TLS_NO_CLIENT_CERT)
        fail(p, auth_line,
             "tls_server_config: client_ca_file is given without a client_auth_type that "
             "checks it (RequireAndVerifyClientCert or VerifyClientCertIfGiven)%s",
             auth_given ? "" : "; none is given");
    else if (!wc->client_ca_file && (t->client_auth == KENG_TLS_VERIFY_CLIENT_CERT_IF_GIVEN ||
                                     t->client_auth == KENG_TLS_REQUIRE_AND_VERIFY_CLIENT_CERT))
        fail(p, auth_line,
             "tls_server_config.client_auth_type: %s needs client_ca_file, the CAs that client "
             "certificates are checked against",
             keng_tls_client_auth_name(t->client_auth));
}

keng_web_config_t *keng_web_config_parse(const char *text, size_t len, const char *name,
                                         char *errstr, size_t errstr_size)
{
    parser_t p = {.name = name, .errstr = errstr, .errstr_size = errstr_size};
    keng_web_config_t *wc = calloc(1, sizeof(*wc));
    char *copy = malloc(len + 1);
    node_t *root = NULL;

    if (!wc || !copy) {
        fail(&p, 0, "out of memory");
        goto out;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (strlen(copy) != len) {
        fail(&p, 0, "a NUL byte in the file");
        goto out;
    }
    if (RAND_bytes(wc->key, sizeof(wc->key)) != 1) {
        fail(&p, 0, "no randomness from the system");
        goto out;
    }
    if (split_lines(&p, copy) != 0)
        goto out;
    if (p.nlines > 0) {
        if (p.lines[0].indent != 0) {
            fail(&p, p.lines[0].number, "unexpected indentation");
            goto out;
        }
        root = block(&p, 0, 0);
        if (!root)
            goto out;
        if (root->kind != NODE_MAP) {
            fail(&p, root->line, "expected 'key: value' lines at the top");
            goto out;
        }
    }
    /* basic_auth_users first: the other keys name its users. */
    for (int pass = 0; pass < 2 && root && !p.failed; pass++) {
        for (size_t i = 0; i < root->n && !p.failed; i++) {
            const char *key = root->keys[i];
            bool users = strcmp(key, "basic_auth_users") == 0;
            if (pass == 0) {
                if (users)
                    read_users(&p, wc, root->items[i]);
                continue;
            }
            if (users)
                continue;
            if (strcmp(key, "user_scopes") == 0)
                read_scopes(&p, wc, root->items[i]);
            else if (strcmp(key, "metrics_users") == 0)
                read_metrics_users(&p, wc, root->items[i]);
            else if (strcmp(key, "http_server_config") == 0)
                read_server_config(&p, wc, root->items[i]);
            else if (strcmp(key, "tls_server_config") == 0)
                read_tls_config(&p, wc, root->items[i], root->key_lines[i]);
            else
                fail(&p, root->key_lines[i],
                     "unknown key '%s' (a web config file has basic_auth_users, "
                     "http_server_config, tls_server_config, and keng's user_scopes and "
                     "metrics_users)",
                     key);
        }
    }
out:
    node_free(root);
    free(p.lines);
    free(copy);
    if (p.failed) {
        keng_web_config_destroy(wc);
        return NULL;
    }
    return wc;
}

keng_web_config_t *keng_web_config_load(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t len = 0;

    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    text = malloc(MAX_FILE_BYTES + 1);
    if (text)
        len = fread(text, 1, MAX_FILE_BYTES + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (!text || failed || len > MAX_FILE_BYTES) {
        snprintf(errstr, errstr_size, "%s: %s", path,
                 !text    ? "out of memory"
                 : failed ? "cannot be read"
                          : "larger than 1 MiB");
        free(text);
        return NULL;
    }
    keng_web_config_t *wc = keng_web_config_parse(text, len, path, errstr, errstr_size);
    free(text);
    if (wc) {
        const char *slash = strrchr(path, '/');
        wc->dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup("");
        if (!wc->dir) {
            snprintf(errstr, errstr_size, "out of memory");
            keng_web_config_destroy(wc);
            return NULL;
        }
    }
    return wc;
}

bool keng_web_config_has_users(const keng_web_config_t *wc)
{
    return wc && wc->nusers > 0;
}

size_t keng_web_config_user_count(const keng_web_config_t *wc)
{
    return wc ? wc->nusers : 0;
}

const keng_web_user_t *keng_web_config_user(const keng_web_config_t *wc, size_t i)
{
    return i < wc->nusers ? &wc->users[i] : NULL;
}

/* ---- who asks ---- */

static void remember_digest(const keng_web_config_t *wc, const char *password,
                            unsigned char out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;

    memset(out, 0, 32);
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
        EVP_DigestUpdate(ctx, wc->key, sizeof(wc->key)) &&
        EVP_DigestUpdate(ctx, password, strlen(password)))
        EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
}

int keng_web_config_lookup(keng_web_config_t *wc, const char *header, const keng_web_user_t **user,
                           keng_web_check_t *check)
{
    unsigned char decoded[400];
    char *colon;
    const char *b64;
    size_t len;
    int n;

    memset(check, 0, sizeof(*check));
    *user = NULL;
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return -1;
    b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    len = strlen(b64);
    while (len > 0 && b64[len - 1] == ' ')
        len--;
    if (len == 0 || len % 4 != 0 || len > 4 * (sizeof(decoded) / 3) - 4)
        return -1;
    n = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as bytes. */
    if (b64[len - 1] == '=')
        n--;
    if (b64[len - 2] == '=')
        n--;
    decoded[n] = '\0';
    if (memchr(decoded, '\0', (size_t)n))
        return -1;
    colon = strchr((char *)decoded, ':');
    if (!colon) {
        OPENSSL_cleanse(decoded, sizeof(decoded));
        return -1;
    }
    keng_web_user_t *u = user_find(wc, (char *)decoded, (size_t)(colon - (char *)decoded));
    if (snprintf(check->password, sizeof(check->password), "%s", colon + 1) >=
        (int)sizeof(check->password)) {
        OPENSSL_cleanse(decoded, sizeof(decoded));
        OPENSSL_cleanse(check, sizeof(*check));
        return -1;
    }
    OPENSSL_cleanse(decoded, sizeof(decoded));
    /* An unknown user pays bcrypt's cost too, against a fixed hash, so that the time taken
     * does not tell which user names exist. */
    check->hash = u ? u->hash : dummy_hash;
    check->user = u;
    if (u && u->has_remembered) {
        unsigned char d[32];
        remember_digest(wc, check->password, d);
        if (CRYPTO_memcmp(d, u->remembered, sizeof(d)) == 0) {
            OPENSSL_cleanse(check, sizeof(*check));
            *user = u;
            return 1;
        }
    }
    return 0;
}

void keng_web_check_run(keng_web_check_t *check)
{
    struct crypt_data *data = calloc(1, sizeof(*data));
    const char *out = data ? crypt_r(check->password, check->hash, data) : NULL;

    check->passed = out && out[0] != '*' && strlen(out) == strlen(check->hash) &&
                    CRYPTO_memcmp(out, check->hash, strlen(check->hash)) == 0 && check->user;
    if (data) {
        OPENSSL_cleanse(data, sizeof(*data));
        free(data);
    }
}

const keng_web_user_t *keng_web_config_finish(keng_web_config_t *wc, keng_web_check_t *check)
{
    keng_web_user_t *u = (keng_web_user_t *)check->user;

    if (check->passed && u) {
        remember_digest(wc, check->password, u->remembered);
        u->has_remembered = true;
    }
    OPENSSL_cleanse(check->password, sizeof(check->password));
    return check->passed ? u : NULL;
}

/* Who waits for a check: its first asker, and any that asked with the same user and password
 * while it ran (a dashboard's first requests come together). */
typedef struct check_waiter {
    void (*done)(const keng_web_user_t *user, void *arg);
    void *arg;
} check_waiter_t;

/* Requests that may wait for one check, beyond which the next gets -EBUSY too. */
#define CHECK_WAITERS_MAX 64

typedef struct check_job {
    uv_work_t work;
    keng_web_config_t *wc;
    keng_web_check_t check;
    unsigned char digest[32]; /* remember_digest of the password, to find a joiner */
    check_waiter_t waiters[CHECK_WAITERS_MAX];
    size_t nwaiters;
    struct check_job *next; /* wc->jobs */
} check_job_t;

static void check_job_run(uv_work_t *work)
{
    check_job_t *job = work->data;

    keng_web_check_run(&job->check);
}

static void check_job_done(uv_work_t *work, int status)
{
    check_job_t *job = work->data;
    keng_web_config_t *wc = job->wc;
    const keng_web_user_t *user = keng_web_config_finish(wc, &job->check);

    for (check_job_t **p = &wc->jobs; *p; p = &(*p)->next)
        if (*p == job) {
            *p = job->next;
            break;
        }
    wc->pending--;
    OPENSSL_cleanse(job->digest, sizeof(job->digest));
    for (size_t i = 0; i < job->nwaiters; i++)
        job->waiters[i].done(status == 0 ? user : NULL, job->waiters[i].arg);
    free(job);
}

/* The check running for the same user (or the same unknown name's fixed hash) and password,
 * or NULL. */
static check_job_t *running_check(keng_web_config_t *wc, const keng_web_check_t *check,
                                  const unsigned char digest[32])
{
    for (check_job_t *job = wc->jobs; job; job = job->next)
        if (job->check.user == check->user && job->check.hash == check->hash &&
            CRYPTO_memcmp(job->digest, digest, 32) == 0)
            return job;
    return NULL;
}

int keng_web_check_queue(uv_loop_t *loop, keng_web_config_t *wc, keng_web_check_t *check,
                         void (*done)(const keng_web_user_t *user, void *arg), void *arg)
{
    unsigned char digest[32];
    check_job_t *job;
    int rc;

    remember_digest(wc, check->password, digest);
    job = running_check(wc, check, digest);
    if (job && job->nwaiters < CHECK_WAITERS_MAX) {
        /* The same credentials are being checked: their answer is this one's too. */
        job->waiters[job->nwaiters++] = (check_waiter_t){done, arg};
        OPENSSL_cleanse(digest, sizeof(digest));
        OPENSSL_cleanse(check->password, sizeof(check->password));
        return 0;
    }
    bool busy = job != NULL || wc->pending >= KENG_WEB_CHECKS_MAX;
    job = busy ? NULL : calloc(1, sizeof(*job));
    if (!job) {
        OPENSSL_cleanse(digest, sizeof(digest));
        keng_web_config_finish(wc, check); /* wipes the password */
        return busy ? -EBUSY : -ENOMEM;
    }
    job->wc = wc;
    job->check = *check;
    memcpy(job->digest, digest, sizeof(digest));
    OPENSSL_cleanse(digest, sizeof(digest));
    job->waiters[0] = (check_waiter_t){done, arg};
    job->nwaiters = 1;
    job->work.data = job;
    OPENSSL_cleanse(check->password, sizeof(check->password));
    wc->pending++;
    rc = uv_queue_work(loop, &job->work, check_job_run, check_job_done);
    if (rc != 0) {
        wc->pending--;
        keng_web_config_finish(wc, &job->check);
        free(job);
        return rc;
    }
    job->next = wc->jobs;
    wc->jobs = job;
    return 0;
}

unsigned keng_web_checks_pending(const keng_web_config_t *wc)
{
    return wc ? wc->pending : 0;
}

bool keng_web_listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    size_t len = colon ? (size_t)(colon - listen) : strlen(listen);
    char host[256];

    if (len >= sizeof(host))
        return false;
    memcpy(host, listen, len);
    host[len] = '\0';
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

const char *keng_web_user_name(const keng_web_user_t *user)
{
    return user->name;
}

size_t keng_web_user_scope_count(const keng_web_user_t *user)
{
    return user->nscope;
}

const char *keng_web_user_scope(const keng_web_user_t *user, size_t i)
{
    return i < user->nscope ? user->scope[i] : NULL;
}

bool keng_web_user_metrics(const keng_web_user_t *user)
{
    return user->metrics;
}

size_t keng_web_config_header_count(const keng_web_config_t *wc)
{
    return wc ? wc->nheaders : 0;
}

void keng_web_config_header(const keng_web_config_t *wc, size_t i, const char **name,
                            const char **value)
{
    *name = wc->header_names[i];
    *value = wc->header_values[i];
}

int keng_web_hash_password(const char *password, char *out, size_t out_size, char *errstr,
                           size_t errstr_size)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *data = calloc(1, sizeof(*data));
    const char *hash = NULL;

    if (data && crypt_gensalt_rn("$2b$", 10, NULL, 0, salt, sizeof(salt)))
        hash = crypt_r(password, salt, data);
    int ok = hash && hash[0] == '$' && strlen(hash) < out_size;
    if (ok)
        snprintf(out, out_size, "%s", hash);
    else
        snprintf(errstr, errstr_size, "the system's libcrypt cannot make a bcrypt hash (%s)",
                 data ? strerror(errno) : "out of memory");
    if (data) {
        OPENSSL_cleanse(data, sizeof(*data));
        free(data);
    }
    return ok ? 0 : -1;
}

/* A path of the file's, relative ones taken from the file's folder. NULL when out of
 * memory. */
static char *resolve(const keng_web_config_t *wc, const char *path)
{
    char *out = NULL;

    if (!path)
        return NULL;
    if (path[0] == '/' || !wc->dir)
        return strdup(path);
    if (asprintf(&out, "%s%s", wc->dir, path) < 0)
        return NULL;
    return out;
}

/* The TLS context of tls_server_config, from its files. 0, or -1 with errstr naming the
 * file. */
static int tls_start(keng_web_config_t *wc, char *errstr, size_t errstr_size)
{
    keng_tls_settings_t t = wc->tls_settings;
    char *cert = resolve(wc, wc->cert_file), *key = resolve(wc, wc->key_file);
    char *ca = resolve(wc, wc->client_ca_file);
    int rc = -1;

    if (!cert || !key || (wc->client_ca_file && !ca)) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    t.cert_file = cert;
    t.key_file = key;
    t.client_ca_file = ca;
    wc->tls = keng_tls_new(&t, errstr, errstr_size);
    if (wc->tls) {
        keng_config_warn_if_exposed(key, "TLS private key");
        rc = 0;
    }
out:
    free(cert);
    free(key);
    free(ca);
    return rc;
}

int keng_web_config_from_config(const keng_config_t *cfg, keng_web_config_t **out, bool *insecure,
                                char *errstr, size_t errstr_size)
{
    const char *path = keng_config_get(cfg, "web.config.file", NULL);
    const char *insecure_s = keng_config_get(cfg, "http.insecure_listen", "false");

    *out = NULL;
    if (strcmp(insecure_s, "true") != 0 && strcmp(insecure_s, "false") != 0) {
        snprintf(errstr, errstr_size, "http.insecure_listen must be true or false (got '%.32s')",
                 insecure_s);
        return -1;
    }
    *insecure = strcmp(insecure_s, "true") == 0;
    if (!path || !*path)
        return 0;
    *out = keng_web_config_load(path, errstr, errstr_size);
    if (!*out)
        return -1;
    keng_config_warn_if_exposed(path, "web config file");
    if ((*out)->has_tls && tls_start(*out, errstr, errstr_size) != 0) {
        keng_web_config_destroy(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

keng_tls_t *keng_web_config_tls(const keng_web_config_t *wc)
{
    return wc ? wc->tls : NULL;
}

void keng_web_config_log_tls(const keng_web_config_t *wc)
{
    char what[700];

    if (!keng_web_config_tls(wc))
        return;
    keng_tls_describe(wc->tls, what, sizeof(what));
    keng_log_info("serving TLS", "%s", what);
}

void keng_web_config_reload_tls(keng_web_config_t *wc)
{
    char errstr[512], what[700];

    if (!keng_web_config_tls(wc)) {
        keng_log_info("SIGHUP: no certificate to reload (no tls_server_config)", NULL);
        return;
    }
    if (keng_tls_reload(wc->tls, errstr, sizeof(errstr)) != 0) {
        keng_log_error("SIGHUP: the certificate did not reload; the one in use stays",
                       "error=\"%s\"", errstr);
        return;
    }
    keng_tls_describe(wc->tls, what, sizeof(what));
    keng_log_info("SIGHUP: certificate reloaded; new connections get it, open ones keep theirs",
                  "%s", what);
}

void keng_web_config_add_headers(const keng_web_config_t *wc, keng_http_request_t *req)
{
    for (size_t i = 0; wc && i < wc->nheaders; i++)
        keng_http_request_add_header(req, wc->header_names[i], wc->header_values[i]);
}
