/* The board registry: loaded from the deployment's CSV, or generated with the counts of the
 * provincial report so that keng runs out of the box; once built it is never changed. Lookups
 * by id go through one open-addressing table per level, since every consumed event needs one. */
#include "registry.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct id_index {
    int32_t *slots; /* entry index + 1; 0 is empty */
    size_t mask;
} id_index_t;

struct keng_registry {
    keng_district_t *districts;
    keng_commune_t *communes;
    keng_board_t *boards;
    size_t ndistricts, ncommunes, nboards;
    size_t cap_districts, cap_communes, cap_boards;
    /* While loading: the first board line, and whether it named a district; every later
     * line must agree, so that no level has holes. */
    int first_line;
    bool first_has_district;
    char *path; /* the file it came from; NULL for the built-in one */
    int *lines; /* the line of each board in that file; NULL for the built-in one */
    id_index_t district_index, commune_index, board_index;
    /* Every string of the registry lives in these arenas, freed together. */
    char **arenas;
    size_t narenas;
    char *arena_pos;
    size_t arena_left;
};

static uint64_t hash_id(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: ids are short, so it is fast enough */

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static char *arena_strndup(keng_registry_t *reg, const char *s, size_t len)
{
    char *p;

    if (reg->arena_left < len + 1) {
        size_t size = len + 1 > 65536 ? len + 1 : 65536;
        char **grown = realloc(reg->arenas, (reg->narenas + 1) * sizeof(*grown));
        if (!grown)
            return NULL;
        reg->arenas = grown;
        reg->arenas[reg->narenas] = malloc(size);
        if (!reg->arenas[reg->narenas])
            return NULL;
        reg->arena_pos = reg->arenas[reg->narenas++];
        reg->arena_left = size;
    }
    p = reg->arena_pos;
    memcpy(p, s, len);
    p[len] = '\0';
    reg->arena_pos += len + 1;
    reg->arena_left -= len + 1;
    return p;
}

static const char *entry_id(const keng_registry_t *reg, int level, size_t i)
{
    switch (level) {
    case 0:
        return reg->districts[i].id;
    case 1:
        return reg->communes[i].id;
    default:
        return reg->boards[i].id;
    }
}

static id_index_t *level_index(keng_registry_t *reg, int level)
{
    return level == 0 ? &reg->district_index : level == 1 ? &reg->commune_index : &reg->board_index;
}

static int32_t index_find(const keng_registry_t *reg, int level, const char *id, size_t len)
{
    const id_index_t *ix = level == 0   ? &reg->district_index
                           : level == 1 ? &reg->commune_index
                                        : &reg->board_index;
    size_t pos;

    if (!ix->slots)
        return -1;
    pos = hash_id(id, len) & ix->mask;
    for (;;) {
        int32_t slot = ix->slots[pos];
        if (slot == 0)
            return -1;
        const char *candidate = entry_id(reg, level, (size_t)(slot - 1));
        if (strncmp(candidate, id, len) == 0 && candidate[len] == '\0')
            return slot - 1;
        pos = (pos + 1) & ix->mask;
    }
}

/* Builds the table for one level once all its entries exist. Returns 0 or -1 (no memory). */
static int index_build(keng_registry_t *reg, int level, size_t count)
{
    id_index_t *ix = level_index(reg, level);
    size_t size = 16;

    while (size < count * 2)
        size <<= 1;
    free(ix->slots);
    ix->slots = calloc(size, sizeof(*ix->slots));
    if (!ix->slots)
        return -1;
    ix->mask = size - 1;
    for (size_t i = 0; i < count; i++) {
        const char *id = entry_id(reg, level, i);
        size_t pos = hash_id(id, strlen(id)) & ix->mask;
        while (ix->slots[pos] != 0)
            pos = (pos + 1) & ix->mask;
        ix->slots[pos] = (int32_t)(i + 1);
    }
    return 0;
}

static int grow(void **array, size_t *cap, size_t count, size_t elem)
{
    void *grown;
    size_t n;

    if (count < *cap)
        return 0;
    n = *cap ? *cap * 2 : 64;
    grown = realloc(*array, n * elem);
    if (!grown)
        return -1;
    *array = grown;
    *cap = n;
    return 0;
}

void keng_registry_destroy(keng_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->narenas; i++)
        free(reg->arenas[i]);
    free(reg->arenas);
    free(reg->district_index.slots);
    free(reg->commune_index.slots);
    free(reg->board_index.slots);
    free(reg->districts);
    free(reg->communes);
    free(reg->boards);
    free(reg->path);
    free(reg->lines);
    free(reg);
}

/* Adds a district, or finds it when it exists with the same name. Returns its index or -1
 * with errstr filled. Districts are few, so a scan finds them. */
static int32_t upsert_district(keng_registry_t *reg, const char *id, const char *name, char *errstr,
                               size_t errstr_size)
{
    for (size_t i = reg->ndistricts; i-- > 0;) {
        if (strcmp(reg->districts[i].id, id) == 0) {
            if (strcmp(reg->districts[i].name, name) != 0) {
                snprintf(errstr, errstr_size,
                         "district_name: district %s is named both '%s' and '%s'", id,
                         reg->districts[i].name, name);
                return -1;
            }
            return (int32_t)i;
        }
    }
    if (grow((void **)&reg->districts, &reg->cap_districts, reg->ndistricts,
             sizeof(keng_district_t)) != 0)
        goto nomem;
    keng_district_t *d = &reg->districts[reg->ndistricts];
    d->id = arena_strndup(reg, id, strlen(id));
    d->name = arena_strndup(reg, name, strlen(name));
    if (!d->id || !d->name)
        goto nomem;
    return (int32_t)reg->ndistricts++;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

static int32_t upsert_commune(keng_registry_t *reg, const char *id, const char *name,
                              uint32_t district, char *errstr, size_t errstr_size)
{
    int32_t found = index_find(reg, 1, id, strlen(id));

    if (found >= 0) {
        /* Both have a district here: a registry's rows all have one or all lack one. */
        if (reg->communes[found].district != district) {
            snprintf(errstr, errstr_size, "district_id: commune %s is listed under both %s and %s",
                     id, reg->districts[reg->communes[found].district].id,
                     reg->districts[district].id);
            return -1;
        }
        if (strcmp(reg->communes[found].name, name) != 0) {
            snprintf(errstr, errstr_size, "commune_name: commune %s is named both '%s' and '%s'",
                     id, reg->communes[found].name, name);
            return -1;
        }
        return found;
    }
    if (grow((void **)&reg->communes, &reg->cap_communes, reg->ncommunes, sizeof(keng_commune_t)) !=
        0)
        goto nomem;
    keng_commune_t *c = &reg->communes[reg->ncommunes];
    c->id = arena_strndup(reg, id, strlen(id));
    c->name = arena_strndup(reg, name, strlen(name));
    c->district = district;
    if (!c->id || !c->name)
        goto nomem;
    reg->ncommunes++;
    /* Rebuilt at doubling sizes so that loading stays linear. */
    if (reg->ncommunes * 2 > reg->commune_index.mask || !reg->commune_index.slots) {
        if (index_build(reg, 1, reg->ncommunes) != 0)
            goto nomem;
    } else {
        size_t pos = hash_id(id, strlen(id)) & reg->commune_index.mask;
        while (reg->commune_index.slots[pos] != 0)
            pos = (pos + 1) & reg->commune_index.mask;
        reg->commune_index.slots[pos] = (int32_t)reg->ncommunes;
    }
    return (int32_t)reg->ncommunes - 1;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

static int add_board(keng_registry_t *reg, const char *id, const char *name, uint32_t commune,
                     uint32_t groups, uint32_t members, char *errstr, size_t errstr_size)
{
    if (grow((void **)&reg->boards, &reg->cap_boards, reg->nboards, sizeof(keng_board_t)) != 0)
        goto nomem;
    keng_board_t *b = &reg->boards[reg->nboards];
    b->id = arena_strndup(reg, id, strlen(id));
    b->name = arena_strndup(reg, name, strlen(name));
    b->commune = commune;
    b->district = reg->communes[commune].district;
    b->groups = groups;
    b->members = members;
    if (!b->id || !b->name)
        goto nomem;
    reg->nboards++;
    return 0;
nomem:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

/* ---- CSV ---- */

#define CSV_FIELDS 8

static const char *const csv_header[CSV_FIELDS] = {"board_id",     "board_name",  "commune_id",
                                                   "commune_name", "district_id", "district_name",
                                                   "groups",       "members"};

int keng_registry__csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        char *out = p;
        if (n == max)
            return max + 1;
        fields[n++] = p;
        if (*p == '"') {
            char *r = p + 1;
            for (;;) {
                if (*r == '\0')
                    return -1;
                if (*r == '"') {
                    if (r[1] == '"') {
                        *out++ = '"';
                        r += 2;
                        continue;
                    }
                    r++;
                    break;
                }
                *out++ = *r++;
            }
            if (*r != ',' && *r != '\0')
                return -1;
            *out = '\0';
            if (*r == '\0')
                return n;
            p = r + 1;
        } else {
            char *comma = strchr(p, ',');
            if (!comma)
                return n;
            *comma = '\0';
            p = comma + 1;
        }
    }
}

static int parse_count(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v;

    if (*s == '\0' || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end != '\0' || v > 1000000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

bool keng_unit_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > KENG_UNIT_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A name that is empty or only spaces names nothing on a page or in a review. */
static bool name_empty(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

/* The first combining accent (U+0300 to U+036F) in s, or 0. Every Vietnamese letter has a
 * precomposed form, so a name in NFC has none, and one that has one is in NFD: it prints
 * like its NFC twin but compares unequal to it (a commune "named both 'Xã A' and 'Xã A'"). */
static unsigned combining_accent(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((p[0] == 0xCC && p[1] >= 0x80 && p[1] <= 0xBF) ||
            (p[0] == 0xCD && p[1] >= 0x80 && p[1] <= 0xAF))
            return ((unsigned)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    }
    return 0;
}

int keng_registry__check_name(const char *field, const char *name, char *err, size_t err_size)
{
    unsigned accent;

    if (name_empty(name)) {
        snprintf(err, err_size, "%s is empty", field);
        return -1;
    }
    accent = combining_accent(name);
    if (accent) {
        snprintf(err, err_size,
                 "%s '%.60s' is in Unicode NFD (a letter followed by a combining accent, "
                 "U+%04X): keng compares names as NFC; convert the file, e.g. with `uconv -x "
                 "any-nfc FILE` or python3's unicodedata.normalize('NFC', text)",
                 field, name, accent);
        return -1;
    }
    return 0;
}

static keng_registry_t *finish(keng_registry_t *reg, char *errstr, size_t errstr_size)
{
    if (index_build(reg, 0, reg->ndistricts) != 0 || index_build(reg, 1, reg->ncommunes) != 0 ||
        index_build(reg, 2, reg->nboards) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        keng_registry_destroy(reg);
        return NULL;
    }
    return reg;
}

keng_registry_t *keng_registry_in_board_order(const keng_registry_t *next,
                                              const keng_registry_t *base, char *errstr,
                                              size_t errstr_size)
{
    keng_registry_t *reg = calloc(1, sizeof(*reg));
    size_t removed = 0, added = 0;
    const char *first_removed = NULL, *first_added = NULL;

    if (!reg)
        goto nomem;
    for (size_t i = 0; i < base->nboards; i++)
        if (index_find(next, 2, base->boards[i].id, strlen(base->boards[i].id)) < 0 &&
            removed++ == 0)
            first_removed = base->boards[i].id;
    for (size_t i = 0; i < next->nboards; i++)
        if (index_find(base, 2, next->boards[i].id, strlen(next->boards[i].id)) < 0 && added++ == 0)
            first_added = next->boards[i].id;
    if (removed || added) {
        snprintf(errstr, errstr_size,
                 "the version adds %zu board(s)%s%s%s and removes %zu%s%s%s: a board keeps its "
                 "index only when both versions have the same boards",
                 added, added ? " (the first: " : "", added ? first_added : "", added ? ")" : "",
                 removed, removed ? " (the first: " : "", removed ? first_removed : "",
                 removed ? ")" : "");
        keng_registry_destroy(reg);
        return NULL;
    }
    for (size_t i = 0; i < next->ndistricts; i++)
        if (upsert_district(reg, next->districts[i].id, next->districts[i].name, errstr,
                            errstr_size) < 0)
            goto fail;
    for (size_t i = 0; i < next->ncommunes; i++)
        if (upsert_commune(reg, next->communes[i].id, next->communes[i].name,
                           next->communes[i].district, errstr, errstr_size) < 0)
            goto fail;
    if (next->path && !(reg->path = strdup(next->path)))
        goto nomem;
    if (next->lines && !(reg->lines = calloc(base->nboards + 1, sizeof(int))))
        goto nomem;
    for (size_t i = 0; i < base->nboards; i++) {
        const char *id = base->boards[i].id;
        const keng_board_t *b = &next->boards[index_find(next, 2, id, strlen(id))];
        if (reg->lines)
            reg->lines[i] = next->lines[b - next->boards];
        if (add_board(reg, b->id, b->name, b->commune, b->groups, b->members, errstr,
                      errstr_size) != 0)
            goto fail;
    }
    return finish(reg, errstr, errstr_size);
nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    keng_registry_destroy(reg);
    return NULL;
}

/* One registry line, without its line end: a comment, a blank, the header (checked) or a
 * board row (added to reg). Returns 0, or -1 with the reason in err. */
static int load_line(keng_registry_t *reg, char *line, int lineno, char *err, size_t err_size)
{
    char *fields[CSV_FIELDS + 1];
    uint32_t groups, members;

    if (line[0] == '\0' || line[0] == '#')
        return 0;
    int n = keng_registry__csv_split(line, fields, CSV_FIELDS);
    if (n < 0) {
        snprintf(err, err_size, "unterminated quote");
        return -1;
    }
    if (n != CSV_FIELDS) {
        snprintf(err, err_size, "expected %d fields, found %d", CSV_FIELDS, n);
        return -1;
    }
    if (strcmp(fields[0], "board_id") == 0) {
        for (int i = 0; i < CSV_FIELDS; i++) {
            if (strcmp(fields[i], csv_header[i]) != 0) {
                snprintf(err, err_size, "column %d is '%s', expected '%s'", i + 1, fields[i],
                         csv_header[i]);
                return -1;
            }
        }
        return 0;
    }
    /* A registry of the two-tier government leaves both district cells empty on every row. */
    bool has_district = fields[4][0] != '\0' || fields[5][0] != '\0';
    if (reg->first_line == 0) {
        reg->first_line = lineno;
        reg->first_has_district = has_district;
    } else if (has_district != reg->first_has_district) {
        snprintf(err, err_size,
                 "%s, but line %d %s: every board has a district or none (a level may not "
                 "have holes)",
                 has_district ? "this board has a district" : "district_id is empty",
                 reg->first_line, reg->first_has_district ? "has one" : "has none");
        return -1;
    }
    for (int i = 0; i < (has_district ? 6 : 4); i += 2) {
        if (!keng_unit_id_valid(fields[i], strlen(fields[i]))) {
            snprintf(err, err_size, "%s: '%.40s' is not an id (%s)", csv_header[i], fields[i],
                     KENG_UNIT_ID_RULE);
            return -1;
        }
        if (keng_registry__check_name(csv_header[i + 1], fields[i + 1], err, err_size) != 0)
            return -1;
    }
    if (parse_count(fields[6], &groups) != 0 || parse_count(fields[7], &members) != 0) {
        int bad = parse_count(fields[6], &groups) != 0 ? 6 : 7;
        snprintf(err, err_size, "%s: '%s' is not a whole number", csv_header[bad], fields[bad]);
        return -1;
    }
    uint32_t district = KENG_NO_UNIT;
    if (has_district) {
        int32_t found = upsert_district(reg, fields[4], fields[5], err, err_size);
        if (found < 0)
            return -1;
        district = (uint32_t)found;
    }
    int32_t commune = upsert_commune(reg, fields[2], fields[3], district, err, err_size);
    if (commune < 0)
        return -1;
    return add_board(reg, fields[0], fields[1], (uint32_t)commune, groups, members, err, err_size);
}

/* Every board id once. Returns 0, or -1 with errstr filled. */
/* lines[i] is the line board i was read from, for the message. */
static int check_boards_unique(keng_registry_t *reg, const char *path, const int *lines,
                               char *errstr, size_t errstr_size)
{
    if (index_build(reg, 2, reg->nboards) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < reg->nboards; i++) {
        const char *id = reg->boards[i].id;
        int32_t first = index_find(reg, 2, id, strlen(id));
        if (first != (int32_t)i) {
            /* The index keeps one of the equal ids: name the later line as the repeat. */
            size_t a = (size_t)first < i ? (size_t)first : i,
                   b = (size_t)first < i ? i : (size_t)first;
            const char *commune_a = reg->communes[reg->boards[a].commune].id,
                       *commune_b = reg->communes[reg->boards[b].commune].id;
            if (strcmp(commune_a, commune_b) != 0)
                snprintf(errstr, errstr_size,
                         "%s: line %d: board_id %s is listed again (first on line %d), in "
                         "commune %s here and %s there: a board is in one commune",
                         path, lines[b], id, lines[a], commune_b, commune_a);
            else
                snprintf(errstr, errstr_size,
                         "%s: line %d: board_id %s is listed again (first on line %d)", path,
                         lines[b], id, lines[a]);
            return -1;
        }
    }
    return 0;
}

/* No id names units of two levels: an id picks one thing in the API, a token and a rule.
 * Returns 0, or -1 with errstr naming a line that uses the id. */
static int check_levels_apart(keng_registry_t *reg, const char *path, const int *lines,
                              char *errstr, size_t errstr_size)
{
    if (index_build(reg, 0, reg->ndistricts) != 0 || index_build(reg, 1, reg->ncommunes) != 0) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < reg->nboards; i++) {
        const keng_board_t *b = &reg->boards[i];
        const char *clash = NULL, *what = NULL;
        if (index_find(reg, 1, b->id, strlen(b->id)) >= 0 ||
            index_find(reg, 0, b->id, strlen(b->id)) >= 0)
            clash = b->id, what = "board_id";
        else if (index_find(reg, 0, reg->communes[b->commune].id,
                            strlen(reg->communes[b->commune].id)) >= 0)
            clash = reg->communes[b->commune].id, what = "commune_id";
        if (clash) {
            snprintf(errstr, errstr_size,
                     "%s: line %d: %s %s is also the id of a unit of another level (an id names "
                     "one thing)",
                     path, lines[i], what, clash);
            return -1;
        }
    }
    return 0;
}

/* The CSV from f (borrowed, left open), named path in messages and by keng_registry_path. */
static keng_registry_t *load_stream(FILE *f, const char *path, char *errstr, size_t errstr_size)
{
    keng_registry_t *reg = calloc(1, sizeof(*reg));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    char err[400];
    keng_registry_t *result = NULL;
    int *lines = NULL; /* the line of each board */
    size_t lines_cap = 0;

    if (!reg) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (lineno == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
            (unsigned char)line[2] == 0xBF)
            memmove(line, line + 3, (size_t)len - 2);
        size_t before = reg->nboards;
        if (load_line(reg, line, lineno, err, sizeof(err)) != 0) {
            snprintf(errstr, errstr_size, "%s: line %d: %s", path, lineno, err);
            goto out;
        }
        if (reg->nboards > before) {
            if (grow((void **)&lines, &lines_cap, before, sizeof(*lines)) != 0) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
            }
            lines[before] = lineno;
        }
    }
    if (reg->nboards == 0) {
        snprintf(errstr, errstr_size, "%s: no boards in the registry", path);
        goto out;
    }
    if (check_boards_unique(reg, path, lines, errstr, errstr_size) != 0 ||
        check_levels_apart(reg, path, lines, errstr, errstr_size) != 0)
        goto out;
    reg->path = strdup(path);
    if (!reg->path) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    reg->lines = lines;
    lines = NULL;
    result = finish(reg, errstr, errstr_size);
    reg = NULL;
out:
    free(lines);
    free(line);
    keng_registry_destroy(reg);
    return result;
}

keng_registry_t *keng_registry_load(const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    keng_registry_t *reg;

    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    reg = load_stream(f, path, errstr, errstr_size);
    fclose(f);
    return reg;
}

keng_registry_t *keng_registry_load_text(const char *text, size_t len, const char *name,
                                         char *errstr, size_t errstr_size)
{
    FILE *f;
    keng_registry_t *reg;

    if (len == 0) {
        snprintf(errstr, errstr_size, "%s: no boards in the registry", name);
        return NULL;
    }
    /* fmemopen reads the caller's bytes in place: nothing is copied or written. */
    f = fmemopen((void *)text, len, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", name, strerror(errno));
        return NULL;
    }
    reg = load_stream(f, name, errstr, errstr_size);
    fclose(f);
    return reg;
}

keng_registry_t *keng_registry_open(const char *path, char *errstr, size_t errstr_size)
{
    if (path && *path)
        return keng_registry_load(path, errstr, errstr_size);
    keng_registry_t *reg = keng_registry_default();
    if (!reg)
        snprintf(errstr, errstr_size, "out of memory");
    return reg;
}

/* ---- the generated default ---- */

/* Nghệ An's 21 district-level units, with the number of communes keng gives each (they add
 * up to the report's 460; the real split differs a little and changes with mergers). */
static const struct {
    const char *name;
    bool urban; /* a city or town: its communes are wards (phường), its hamlets blocks */
    int communes;
} default_districts[KENG_DEFAULT_DISTRICTS] = {
    {"Thành phố Vinh", true, 25},      {"Thị xã Cửa Lò", true, 7},
    {"Thị xã Thái Hòa", true, 9},      {"Thị xã Hoàng Mai", true, 10},
    {"Huyện Anh Sơn", false, 20},      {"Huyện Con Cuông", false, 12},
    {"Huyện Diễn Châu", false, 38},    {"Huyện Đô Lương", false, 32},
    {"Huyện Hưng Nguyên", false, 18},  {"Huyện Kỳ Sơn", false, 21},
    {"Huyện Nam Đàn", false, 19},      {"Huyện Nghi Lộc", false, 30},
    {"Huyện Nghĩa Đàn", false, 23},    {"Huyện Quế Phong", false, 13},
    {"Huyện Quỳ Châu", false, 12},     {"Huyện Quỳ Hợp", false, 21},
    {"Huyện Quỳnh Lưu", false, 34},    {"Huyện Tân Kỳ", false, 22},
    {"Huyện Thanh Chương", false, 38}, {"Huyện Tương Dương", false, 17},
    {"Huyện Yên Thành", false, 39},
};

/* "Huyện Quỳnh Lưu" -> "Quỳnh Lưu": synthetic commune names carry their district's. */
static const char *place_name(const char *district_name)
{
    static const char *const prefixes[] = {"Thành phố ", "Thị xã ", "Huyện "};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(district_name, prefixes[i], n) == 0)
            return district_name + n;
    }
    return district_name;
}

/* A small deterministic generator, so the default registry is the same everywhere. */
static uint32_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

/* Spreads total over n slots in proportion to weights, each slot at least min, with the
 * largest-remainder rule so the sum is exact. */
static void apportion(const uint32_t *weights, size_t n, uint32_t total, uint32_t min,
                      uint32_t *out)
{
    uint64_t sum = 0;
    uint32_t given = 0;
    uint32_t spare = total - (uint32_t)n * min;

    for (size_t i = 0; i < n; i++)
        sum += weights[i];
    for (size_t i = 0; i < n; i++) {
        out[i] = min + (uint32_t)((uint64_t)spare * weights[i] / sum);
        given += out[i];
    }
    /* The remainders are small; hand them out round-robin from a fixed start. */
    for (size_t i = 0; given < total; i = (i + 7) % n) {
        out[i]++;
        given++;
    }
}

keng_registry_t *keng_registry_default(void)
{
    keng_registry_t *reg = calloc(1, sizeof(*reg));
    uint32_t weights[KENG_DEFAULT_COMMUNES], boards_per_commune[KENG_DEFAULT_COMMUNES];
    uint64_t seed = 0x6b656e67; /* "keng" */
    char id[64], name[128], err[200];
    size_t commune = 0;
    uint32_t board = 0;

    if (!reg)
        return NULL;
    for (size_t i = 0; i < KENG_DEFAULT_COMMUNES; i++)
        weights[i] = 50 + next_random(&seed) % 100;
    apportion(weights, KENG_DEFAULT_COMMUNES, KENG_DEFAULT_BOARDS, 4, boards_per_commune);

    for (int d = 0; d < KENG_DEFAULT_DISTRICTS; d++) {
        char district_id[16];
        snprintf(district_id, sizeof(district_id), "D%02d", d + 1);
        if (upsert_district(reg, district_id, default_districts[d].name, err, sizeof(err)) < 0)
            goto fail;
        const char *place = place_name(default_districts[d].name);
        for (int c = 0; c < default_districts[d].communes; c++, commune++) {
            char commune_id[32];
            snprintf(commune_id, sizeof(commune_id), "%s-C%03d", district_id, c + 1);
            snprintf(name, sizeof(name), "%s %s %d", default_districts[d].urban ? "Phường" : "Xã",
                     place, c + 1);
            int32_t ci = upsert_commune(reg, commune_id, name, (uint32_t)d, err, sizeof(err));
            if (ci < 0)
                goto fail;
            for (uint32_t b = 0; b < boards_per_commune[commune]; b++, board++) {
                snprintf(id, sizeof(id), "%s-B%02u", commune_id, b + 1);
                snprintf(name, sizeof(name), "%s %u", default_districts[d].urban ? "Khối" : "Thôn",
                         b + 1);
                /* 5 groups and 5 members a board, one more at evenly spread boards, gives
                 * exactly the report's totals. */
                uint32_t extra_groups = KENG_DEFAULT_GROUPS - 5 * KENG_DEFAULT_BOARDS;
                uint32_t extra_members = KENG_DEFAULT_MEMBERS - 5 * KENG_DEFAULT_BOARDS;
                uint32_t groups = 5 + ((uint64_t)(board + 1) * extra_groups / KENG_DEFAULT_BOARDS -
                                       (uint64_t)board * extra_groups / KENG_DEFAULT_BOARDS);
                uint32_t members =
                    5 + ((uint64_t)(board + 1) * extra_members / KENG_DEFAULT_BOARDS -
                         (uint64_t)board * extra_members / KENG_DEFAULT_BOARDS);
                if (add_board(reg, id, name, (uint32_t)ci, groups, members, err, sizeof(err)) != 0)
                    goto fail;
            }
        }
    }
    return finish(reg, err, sizeof(err));
fail:
    keng_registry_destroy(reg);
    return NULL;
}

/* ---- output and accessors ---- */

static int csv_write_field(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\n"))
        return fputs(s, out) < 0 ? -1 : 0;
    if (fputc('"', out) == EOF)
        return -1;
    for (; *s; s++) {
        if (*s == '"' && fputc('"', out) == EOF)
            return -1;
        if (fputc(*s, out) == EOF)
            return -1;
    }
    return fputc('"', out) == EOF ? -1 : 0;
}

int keng_registry_write_csv(const keng_registry_t *reg, FILE *out)
{
    if (fprintf(out, "board_id,board_name,commune_id,commune_name,district_id,district_name,"
                     "groups,members\n") < 0)
        return -1;
    for (size_t i = 0; i < reg->nboards; i++) {
        const keng_board_t *b = &reg->boards[i];
        const keng_commune_t *c = &reg->communes[b->commune];
        const keng_district_t *d = keng_registry_district(reg, b->district);
        const char *cells[6] = {b->id, b->name, c->id, c->name, d ? d->id : "", d ? d->name : ""};
        for (int k = 0; k < 6; k++) {
            if (csv_write_field(out, cells[k]) != 0 || fputc(',', out) == EOF)
                return -1;
        }
        if (fprintf(out, "%u,%u\n", b->groups, b->members) < 0)
            return -1;
    }
    return 0;
}

size_t keng_registry_board_count(const keng_registry_t *reg)
{
    return reg->nboards;
}

size_t keng_registry_commune_count(const keng_registry_t *reg)
{
    return reg->ncommunes;
}

size_t keng_registry_district_count(const keng_registry_t *reg)
{
    return reg->ndistricts;
}

const char *keng_registry_path(const keng_registry_t *reg)
{
    return reg->path;
}

void keng_registry_describe_units(const keng_registry_t *reg, char *buf, size_t size)
{
    snprintf(buf, size, "districts=%zu communes=%zu boards=%zu levels=%s", reg->ndistricts,
             reg->ncommunes, reg->nboards,
             reg->ndistricts > 0 ? "province,district,commune,board" : "province,commune,board");
}

void keng_registry_describe(const keng_registry_t *reg, char *buf, size_t size)
{
    char units[160];

    keng_registry_describe_units(reg, units, sizeof(units));
    snprintf(buf, size, "source=%s %s", reg->path ? reg->path : "built-in", units);
}

int keng_registry_metrics(const keng_registry_t *reg, char *buf, size_t size)
{
    char path[512];
    size_t n = 0;
    int w;

    /* A label value escapes backslash, quote and newline (Prometheus's text format). */
    for (const char *p = reg->path ? reg->path : ""; *p && n + 3 < sizeof(path); p++) {
        if (*p == '\\' || *p == '"' || *p == '\n')
            path[n++] = '\\';
        path[n++] = *p == '\n' ? 'n' : *p;
    }
    path[n] = '\0';
    w = snprintf(buf, size,
                 "# HELP keng_registry_units Units of the board registry in use, by level (a "
                 "level the registry has not got is absent).\n"
                 "# TYPE keng_registry_units gauge\n"
                 "keng_registry_units{level=\"board\"} %zu\n"
                 "keng_registry_units{level=\"commune\"} %zu\n",
                 reg->nboards, reg->ncommunes);
    if (w >= 0 && (size_t)w < size && reg->ndistricts > 0)
        w += snprintf(buf + w, size - (size_t)w, "keng_registry_units{level=\"district\"} %zu\n",
                      reg->ndistricts);
    if (w >= 0 && (size_t)w < size)
        w += snprintf(buf + w, size - (size_t)w,
                      "# HELP keng_registry_info The board registry in use: a file (its path) or "
                      "the built-in one.\n"
                      "# TYPE keng_registry_info gauge\n"
                      "keng_registry_info{source=\"%s\",path=\"%s\"} 1\n",
                      reg->path ? "file" : "built-in", path);
    return w >= 0 && (size_t)w < size ? w : -1;
}

bool keng_registry_has_districts(const keng_registry_t *reg)
{
    return reg->ndistricts > 0;
}

const char *keng_registry_level_list(const keng_registry_t *reg)
{
    return reg->ndistricts > 0 ? "province, district, commune, board" : "province, commune, board";
}

int keng_registry_board_line(const keng_registry_t *reg, uint32_t index)
{
    return reg->lines && index < reg->nboards ? reg->lines[index] : 0;
}

const keng_board_t *keng_registry_board(const keng_registry_t *reg, uint32_t index)
{
    return index < reg->nboards ? &reg->boards[index] : NULL;
}

const keng_commune_t *keng_registry_commune(const keng_registry_t *reg, uint32_t index)
{
    return index < reg->ncommunes ? &reg->communes[index] : NULL;
}

const keng_district_t *keng_registry_district(const keng_registry_t *reg, uint32_t index)
{
    return index < reg->ndistricts ? &reg->districts[index] : NULL;
}

int32_t keng_registry_find_board(const keng_registry_t *reg, const char *id, size_t len)
{
    return index_find(reg, 2, id, len);
}

int32_t keng_registry_find_commune(const keng_registry_t *reg, const char *id, size_t len)
{
    return index_find(reg, 1, id, len);
}

int32_t keng_registry_find_district(const keng_registry_t *reg, const char *id, size_t len)
{
    return index_find(reg, 0, id, len);
}
