/* keng-registry --check against a previous version: the rules of docs/DESIGN.md, "Registry
 * versions", each finding a sentence with its file and line. It only reads: the registries are
 * borrowed and the lineage and units files are parsed into memory freed before it returns. */
#include "registry_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

enum { NO_LEVEL = -1, DISTRICT = 0, COMMUNE = 1, BOARD = 2 };

static const char *const level_names[] = {"district", "commune", "board"};

/* One line of the lineage (from, to) or of the units list (from: the unit, to unused). */
typedef struct row {
    const char *from_id, *from_name, *to_id, *to_name;
    int line;
    bool has_board; /* units list: a board of next is in it */
} row_t;

typedef struct table {
    const char *path;
    row_t *rows;
    size_t n;
    char **lines; /* each row's fields point into its line */
    size_t nlines;
} table_t;

/* A registry with, for messages, its name and the line of each unit's first board. */
typedef struct side {
    const keng_registry_t *reg;
    const char *file;
    int *unit_line[2]; /* by level: district, commune */
} side_t;

typedef struct ctx {
    keng_registry_say_fn say;
    void *arg;
    keng_registry_check_summary_t *out;
    side_t next, prev;
    bool has_prev;
    table_t lineage, units;
} ctx_t;

/* Says one finding, "FILE: line N: ..." (no line when line is 0). */
static void report(ctx_t *c, bool refusal, const char *file, int line, const char *fmt, ...)
{
    char text[1024];
    int n = line > 0 ? snprintf(text, sizeof(text), "%s: line %d: ", file, line)
                     : snprintf(text, sizeof(text), "%s: ", file);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);
    if (refusal)
        c->out->refusals++;
    else
        c->out->warnings++;
    c->say(c->arg, refusal, text);
}

/* ---- the registries ---- */

static int level_of(const keng_registry_t *reg, const char *id, int32_t *index)
{
    size_t len = strlen(id);

    if ((*index = keng_registry_find_board(reg, id, len)) >= 0)
        return BOARD;
    if ((*index = keng_registry_find_commune(reg, id, len)) >= 0)
        return COMMUNE;
    if ((*index = keng_registry_find_district(reg, id, len)) >= 0)
        return DISTRICT;
    return NO_LEVEL;
}

static const char *unit_name(const keng_registry_t *reg, int level, int32_t i)
{
    if (level == BOARD)
        return keng_registry_board(reg, (uint32_t)i)->name;
    if (level == COMMUNE)
        return keng_registry_commune(reg, (uint32_t)i)->name;
    return keng_registry_district(reg, (uint32_t)i)->name;
}

static int unit_line(const side_t *s, int level, int32_t i)
{
    if (level == BOARD)
        return keng_registry_board_line(s->reg, (uint32_t)i);
    return s->unit_line[level] ? s->unit_line[level][i] : 0;
}

static int side_open(side_t *s, const keng_registry_t *reg)
{
    size_t counts[2] = {keng_registry_district_count(reg), keng_registry_commune_count(reg)};

    s->reg = reg;
    s->file = keng_registry_path(reg) ? keng_registry_path(reg) : "the built-in registry";
    if (!keng_registry_path(reg))
        return 0;
    for (int l = 0; l < 2; l++) {
        s->unit_line[l] = calloc(counts[l] + 1, sizeof(int));
        if (!s->unit_line[l])
            return -1;
    }
    /* Boards come in file order, so the first board of a unit is where it first appears. */
    for (uint32_t b = keng_registry_board_count(reg); b-- > 0;) {
        const keng_board_t *board = keng_registry_board(reg, b);
        s->unit_line[COMMUNE][board->commune] = keng_registry_board_line(reg, b);
        if (board->district != KENG_NO_UNIT)
            s->unit_line[DISTRICT][board->district] = keng_registry_board_line(reg, b);
    }
    return 0;
}

static void side_close(side_t *s)
{
    free(s->unit_line[0]);
    free(s->unit_line[1]);
}

/* ---- the lineage and units files ---- */

static int row_order(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    int cmp = strcmp(x->from_id, y->from_id);

    return cmp ? cmp : x->line - y->line;
}

/* The first row for id in a sorted table, or NULL. */
static row_t *table_find(const table_t *t, const char *id)
{
    size_t lo = 0, hi = t->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->rows[mid].from_id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && strcmp(t->rows[lo].from_id, id) == 0 ? &t->rows[lo] : NULL;
}

static void table_free(table_t *t)
{
    for (size_t i = 0; i < t->nlines; i++)
        free(t->lines[i]);
    free(t->lines);
    free(t->rows);
}

static int table_add(table_t *t, char *line, const row_t *row)
{
    row_t *rows = realloc(t->rows, (t->n + 1) * sizeof(*rows));
    char **lines = rows ? realloc(t->lines, (t->nlines + 1) * sizeof(*lines)) : NULL;

    if (rows)
        t->rows = rows;
    if (!lines)
        return -1;
    t->lines = lines;
    t->lines[t->nlines++] = line;
    t->rows[t->n++] = *row;
    return 0;
}

/* The columns of the units list that matter, from its header. Returns 0, or -1 after a
 * refusal. */
static int units_header(ctx_t *c, char **fields, int n, int line, int *id_col, int *name_col)
{
    *id_col = *name_col = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(fields[i], "commune_id") == 0)
            *id_col = i;
        else if (strcmp(fields[i], "commune_name") == 0)
            *name_col = i;
    }
    if (*id_col < 0 || *name_col < 0) {
        report(c, true, c->units.path, line,
               "the header has no commune_id and commune_name columns (a units list names each "
               "commune of the version: commune_id,commune_name,...)");
        return -1;
    }
    return 0;
}

/* One data line of either file into row. Returns 0, or -1 after a refusal. */
static int parse_row(ctx_t *c, table_t *t, bool lineage, char **fields, int n, int line, int id_col,
                     int name_col, row_t *row)
{
    char err[400];
    const char *id_field = lineage ? "from_id" : "commune_id";

    memset(row, 0, sizeof(*row));
    row->line = line;
    if (lineage && n != 4) {
        report(c, true, t->path, line,
               "expected 4 fields (from_id,from_name,to_id,to_name), found %d", n);
        return -1;
    }
    if (!lineage && (n <= id_col || n <= name_col)) {
        report(c, true, t->path, line, "expected at least %d fields, found %d",
               (id_col > name_col ? id_col : name_col) + 1, n);
        return -1;
    }
    row->from_id = fields[lineage ? 0 : id_col];
    row->from_name = fields[lineage ? 1 : name_col];
    row->to_id = lineage ? fields[2] : "";
    row->to_name = lineage ? fields[3] : "";
    if (!keng_unit_id_valid(row->from_id, strlen(row->from_id)) ||
        (row->to_id[0] && !keng_unit_id_valid(row->to_id, strlen(row->to_id)))) {
        bool from = !keng_unit_id_valid(row->from_id, strlen(row->from_id));
        report(c, true, t->path, line, "%s: '%.40s' is not an id (%s)", from ? id_field : "to_id",
               from ? row->from_id : row->to_id, KENG_UNIT_ID_RULE);
        return -1;
    }
    if ((!lineage || row->from_name[0]) &&
        keng_registry__check_name(lineage ? "from_name" : "commune_name", row->from_name, err,
                                  sizeof(err)) != 0) {
        report(c, true, t->path, line, "%s", err);
        return -1;
    }
    if (row->to_name[0] && keng_registry__check_name("to_name", row->to_name, err, sizeof(err))) {
        report(c, true, t->path, line, "%s", err);
        return -1;
    }
    if (!row->to_id[0] && row->to_name[0]) {
        report(c, true, t->path, line,
               "to_name without to_id: a line with an empty to_id says that %s was removed, and "
               "leaves to_name empty too",
               row->from_id);
        return -1;
    }
    return 0;
}

/* Reads a lineage (lineage) or units file into t, sorted by from_id: the file at path, or
 * when text is not NULL its len bytes, which path then names in messages. Returns 0, or -1
 * after a refusal; a bad line is refused and the next ones are still read. */
static int table_load(ctx_t *c, table_t *t, const char *path, const char *text, size_t len_text,
                      bool lineage)
{
    /* fmemopen reads the caller's bytes in place, as keng_registry_load_text does. */
    FILE *f = text ? (len_text ? fmemopen((void *)text, len_text, "r") : fopen("/dev/null", "r"))
                   : fopen(path, "r");
    char *buf = NULL, *fields[65];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, id_col = 0, name_col = 1, rc = 0;
    bool header = false;

    t->path = path;
    if (!f) {
        report(c, true, path, 0, "%s", strerror(errno));
        return -1;
    }
    while ((len = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        /* A spreadsheet's UTF-8 byte order mark, as the registry loader skips it. */
        size_t bom = lineno == 1 && strncmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
        if (buf[bom] == '\0' || buf[bom] == '#')
            continue;
        char *copy = strdup(buf + bom);
        int n = copy ? keng_registry__csv_split(copy, fields, 64) : 0;
        row_t row;
        if (!copy) {
            report(c, true, path, lineno, "out of memory");
            rc = -1;
            break;
        }
        if (n < 0 || n > 64) {
            report(c, true, path, lineno, n < 0 ? "unterminated quote" : "too many fields");
            rc = -1;
        } else if (!header) {
            header = true;
            if (!lineage && units_header(c, fields, n, lineno, &id_col, &name_col) != 0) {
                free(copy);
                rc = -1;
                break;
            }
        } else if (parse_row(c, t, lineage, fields, n, lineno, id_col, name_col, &row) != 0) {
            rc = -1;
        } else if (table_add(t, copy, &row) != 0) {
            report(c, true, path, lineno, "out of memory");
            rc = -1;
            break;
        } else {
            continue;
        }
        free(copy);
    }
    free(buf);
    fclose(f);
    if (t->n > 1)
        qsort(t->rows, t->n, sizeof(*t->rows), row_order);
    return rc;
}

/* Each id once in the file: a board goes to one commune, a unit to one unit, and a split is
 * written board by board. */
static void table_check_repeats(ctx_t *c, const table_t *t, bool lineage)
{
    for (size_t i = 1; i < t->n; i++) {
        const row_t *a = &t->rows[i - 1], *b = &t->rows[i];
        if (strcmp(a->from_id, b->from_id) != 0)
            continue;
        if (!lineage)
            report(c, true, t->path, b->line, "commune_id %s is listed again (first on line %d)",
                   b->from_id, a->line);
        else
            report(c, true, t->path, b->line,
                   "%s is listed again (first on line %d): each board or unit of the previous "
                   "version goes to one unit; a unit split between several is written board by "
                   "board, one line per board with its new commune",
                   b->from_id, a->line);
    }
}

/* ---- the checks ---- */

static void check_times(ctx_t *c, const keng_registry_check_t *in)
{
    char next[40], prev[40];

    if (in->effective_ms == KENG_NO_TIME || in->previous_effective_ms == KENG_NO_TIME ||
        in->effective_ms > in->previous_effective_ms)
        return;
    keng_time_format_local(in->effective_ms, next, sizeof(next));
    keng_time_format_local(in->previous_effective_ms, prev, sizeof(prev));
    report(c, true, c->next.file, 0,
           "--effective %s is %s --previous-effective %s: a version takes over from the one "
           "before it at a later time, or two versions would be in force at once",
           next, in->effective_ms == in->previous_effective_ms ? "the same as" : "before", prev);
}

/* A unit of the units list or of next: its name there, or NULL when neither has it. */
static const char *next_unit_name(const ctx_t *c, const char *id, int *level)
{
    int32_t i;
    const row_t *listed;

    *level = level_of(c->next.reg, id, &i);
    if (*level != NO_LEVEL)
        return unit_name(c->next.reg, *level, i);
    listed = table_find(&c->units, id);
    if (listed)
        *level = COMMUNE;
    return listed ? listed->from_name : NULL;
}

/* A lineage line that leads somewhere: to a unit of next (or of its units list), never to a
 * board, and for a board to the commune next puts it in. */
static void check_lineage_target(ctx_t *c, const row_t *r, int from_level)
{
    int to_level;
    const char *name = next_unit_name(c, r->to_id, &to_level);
    int32_t b;

    if (!name) {
        report(c, true, c->lineage.path, r->line,
               "to_id %s is not a unit of %s%s (a line leads to a unit of the new version)",
               r->to_id, c->next.file, c->units.path ? " nor of its units list" : "");
        return;
    }
    if (to_level == BOARD || (from_level == BOARD && to_level != COMMUNE)) {
        report(c, true, c->lineage.path, r->line, "to_id %s is a %s of %s: a %s goes to a %s",
               r->to_id, level_names[to_level], c->next.file, level_names[from_level],
               from_level == BOARD ? "commune" : "commune or district");
        return;
    }
    if (r->to_name[0] && strcmp(r->to_name, name) != 0)
        report(c, true, c->lineage.path, r->line, "to_name '%s': %s %s is '%s' in %s", r->to_name,
               level_names[to_level], r->to_id, name, c->next.file);
    if (from_level != BOARD)
        return;
    b = keng_registry_find_board(c->next.reg, r->from_id, strlen(r->from_id));
    if (b < 0) {
        report(c, true, c->lineage.path, r->line,
               "board %s is not in %s: a board that moves keeps its id, and one that is gone is "
               "written '%s,%s,,'",
               r->from_id, c->next.file, r->from_id, r->from_name);
        return;
    }
    const keng_commune_t *in =
        keng_registry_commune(c->next.reg, keng_registry_board(c->next.reg, (uint32_t)b)->commune);
    if (strcmp(in->id, r->to_id) != 0)
        report(c, true, c->lineage.path, r->line,
               "board %s goes to commune %s here, but %s puts it in commune %s (line %d): a board "
               "is in one commune",
               r->from_id, r->to_id, c->next.file, in->id,
               keng_registry_board_line(c->next.reg, b));
}

/* An id the lineage says is gone, or became another unit, must not name a unit of next. */
static void check_lineage_reuse(ctx_t *c, const row_t *r)
{
    int32_t i;
    int level = level_of(c->next.reg, r->from_id, &i);

    if (level == NO_LEVEL || (r->to_id[0] && strcmp(r->to_id, r->from_id) == 0))
        return;
    if (r->to_id[0] && level == BOARD)
        return; /* a board that moved keeps its id */
    report(c, true, c->lineage.path, r->line,
           "%s %s%s, but %s lists %s as a %s (line %d): an id names one thing for ever; give "
           "the new %s an id of its own",
           r->from_id, r->to_id[0] ? "became " : "was removed", r->to_id, c->next.file, r->from_id,
           level_names[level], unit_line(&c->next, level, i), level_names[level]);
}

static void check_lineage(ctx_t *c)
{
    for (size_t k = 0; k < c->lineage.n; k++) {
        const row_t *r = &c->lineage.rows[k];
        int32_t i;
        int level = level_of(c->prev.reg, r->from_id, &i);
        if (level == NO_LEVEL) {
            report(c, true, c->lineage.path, r->line,
                   "from_id %s is not in %s (a line starts from a board or unit of the previous "
                   "version)",
                   r->from_id, c->prev.file);
            continue;
        }
        if (r->from_name[0] && strcmp(r->from_name, unit_name(c->prev.reg, level, i)) != 0)
            report(c, true, c->lineage.path, r->line, "from_name '%s': %s %s is '%s' in %s",
                   r->from_name, level_names[level], r->from_id, unit_name(c->prev.reg, level, i),
                   c->prev.file);
        if (r->to_id[0])
            check_lineage_target(c, r, level);
        check_lineage_reuse(c, r);
    }
}

/* The units of next (communes and districts) against previous: an id keeps its level, and its
 * unit unless lineage says the unit of that id took the old one over. */
static void check_units_against_previous(ctx_t *c)
{
    for (int level = DISTRICT; level <= COMMUNE; level++) {
        size_t count = level == DISTRICT ? keng_registry_district_count(c->next.reg)
                                         : keng_registry_commune_count(c->next.reg);
        for (int32_t i = 0; i < (int32_t)count; i++) {
            const char *id = level == DISTRICT ? keng_registry_district(c->next.reg, i)->id
                                               : keng_registry_commune(c->next.reg, i)->id;
            const char *name = unit_name(c->next.reg, level, i);
            int32_t p;
            int was = level_of(c->prev.reg, id, &p);
            if (was == NO_LEVEL)
                continue;
            if (was != level) {
                report(c, true, c->next.file, unit_line(&c->next, level, i),
                       "%s_id %s was a %s of %s (line %d): an id names one thing for ever; give "
                       "this %s an id of its own",
                       level_names[level], id, level_names[was], c->prev.file,
                       unit_line(&c->prev, was, p), level_names[level]);
                continue;
            }
            const char *old = unit_name(c->prev.reg, was, p);
            const row_t *r = table_find(&c->lineage, id);
            if (strcmp(old, name) == 0 || (r && strcmp(r->to_id, id) == 0))
                continue;
            report(c, true, c->next.file, unit_line(&c->next, level, i),
                   "%s %s is '%s' here but '%s' in %s (line %d): an id names one unit; if this is "
                   "that unit renamed, or the unit that took it over, say so in the lineage with "
                   "the line '%s,%s,%s,%s', else give it an id of its own",
                   level_names[level], id, name, old, c->prev.file, unit_line(&c->prev, was, p), id,
                   old, id, name);
        }
    }
}

/* A board of previous that lineage has in another commune than next does; a board whose old
 * commune the lineage sends elsewhere without a line of its own. */
static void check_board_commune(ctx_t *c, uint32_t b, const char *old_commune)
{
    const keng_board_t *board = keng_registry_board(c->next.reg, b);
    const char *now = keng_registry_commune(c->next.reg, board->commune)->id;
    const row_t *r;
    int level;

    if (!c->lineage.path || table_find(&c->lineage, board->id))
        return; /* its own line was checked with the lineage */
    r = table_find(&c->lineage, old_commune);
    if (!r || !r->to_id[0] || strcmp(r->to_id, now) == 0 || !next_unit_name(c, r->to_id, &level) ||
        level != COMMUNE)
        return;
    report(c, true, c->next.file, keng_registry_board_line(c->next.reg, b),
           "board %s is in commune %s, but %s line %d sends its commune %s of %s to %s: a board is "
           "in one commune; if %s was split, give this board a line of its own: '%s,%s,%s,%s'",
           board->id, now, c->lineage.path, r->line, old_commune, c->prev.file, r->to_id,
           old_commune, board->id, board->name, now,
           keng_registry_commune(c->next.reg, board->commune)->name);
}

static void check_boards_of_next(ctx_t *c)
{
    for (uint32_t b = 0; b < keng_registry_board_count(c->next.reg); b++) {
        const keng_board_t *board = keng_registry_board(c->next.reg, b);
        int32_t p;
        int was = level_of(c->prev.reg, board->id, &p);
        if (was == NO_LEVEL) {
            c->out->added++;
            continue;
        }
        if (was != BOARD) {
            report(c, true, c->next.file, keng_registry_board_line(c->next.reg, b),
                   "board_id %s was a %s of %s (line %d): an id names one thing for ever; give "
                   "this board an id of its own",
                   board->id, level_names[was], c->prev.file, unit_line(&c->prev, was, p));
            continue;
        }
        const keng_board_t *old = keng_registry_board(c->prev.reg, (uint32_t)p);
        const char *old_commune = keng_registry_commune(c->prev.reg, old->commune)->id;
        if (strcmp(old_commune, keng_registry_commune(c->next.reg, board->commune)->id) == 0)
            c->out->kept++;
        else
            c->out->moved++;
        check_board_commune(c, b, old_commune);
    }
}

/* Whether the lineage says that board b of previous is gone: its own line, or its commune's
 * or district's, with an empty to_id. */
static bool removed_by_lineage(const ctx_t *c, const keng_board_t *old)
{
    const char *ids[3] = {old->id, keng_registry_commune(c->prev.reg, old->commune)->id,
                          old->district != KENG_NO_UNIT
                              ? keng_registry_district(c->prev.reg, old->district)->id
                              : NULL};

    for (int k = 0; k < 3; k++) {
        const row_t *r = ids[k] ? table_find(&c->lineage, ids[k]) : NULL;
        if (r && !r->to_id[0])
            return true;
    }
    return false;
}

static void check_boards_of_previous(ctx_t *c)
{
    for (uint32_t b = 0; b < keng_registry_board_count(c->prev.reg); b++) {
        const keng_board_t *old = keng_registry_board(c->prev.reg, b);
        const row_t *own = table_find(&c->lineage, old->id);
        if (keng_registry_find_board(c->next.reg, old->id, strlen(old->id)) >= 0)
            continue;
        if (removed_by_lineage(c, old)) {
            c->out->removed++;
            continue;
        }
        if (own)
            continue; /* its line leads to a commune, and was refused with the lineage */
        report(c, true, c->prev.file, keng_registry_board_line(c->prev.reg, b),
               "board %s (commune %s) is not in %s, and %s: if it was removed, add the line "
               "'%s,%s,,' to the lineage; if not, put it back",
               old->id, keng_registry_commune(c->prev.reg, old->commune)->id, c->next.file,
               c->lineage.path ? "the lineage does not say it was removed"
                               : "no --lineage says it was removed",
               old->id, old->name);
    }
}

/* Communes of previous that are in neither next nor the lineage: nothing says what they
 * became. One warning for all of them. */
static void check_vanished_communes(ctx_t *c)
{
    size_t vanished = 0;
    int32_t first = -1;

    for (int32_t i = 0; i < (int32_t)keng_registry_commune_count(c->prev.reg); i++) {
        const char *id = keng_registry_commune(c->prev.reg, i)->id;
        int32_t j;
        if (level_of(c->next.reg, id, &j) != NO_LEVEL || table_find(&c->lineage, id))
            continue;
        if (vanished++ == 0)
            first = i;
    }
    if (vanished > 0)
        report(c, false, c->prev.file, unit_line(&c->prev, COMMUNE, first),
               "%zu commune(s), the first %s, are in neither %s nor %s: nothing says what they "
               "became",
               vanished, keng_registry_commune(c->prev.reg, first)->id, c->next.file,
               c->lineage.path ? c->lineage.path : "a lineage (--lineage)");
}

/* Every commune of next in the units list under the same name; a listed unit with no board is
 * allowed, with a warning. */
static void check_units_list(ctx_t *c)
{
    for (int32_t i = 0; i < (int32_t)keng_registry_commune_count(c->next.reg); i++) {
        const keng_commune_t *commune = keng_registry_commune(c->next.reg, i);
        row_t *r = table_find(&c->units, commune->id);
        int line = unit_line(&c->next, COMMUNE, i);
        if (!r) {
            report(c, true, c->next.file, line,
                   "commune_id %s is not in the units list %s: a version lists its units; add "
                   "'%s,%s' there, or correct the board's commune",
                   commune->id, c->units.path, commune->id, commune->name);
            continue;
        }
        r->has_board = true;
        if (strcmp(r->from_name, commune->name) != 0)
            report(c, true, c->next.file, line,
                   "commune %s is '%s' here but '%s' in %s (line %d): an id names one unit",
                   commune->id, commune->name, r->from_name, c->units.path, r->line);
    }
    for (size_t k = 0; k < c->units.n; k++) {
        const row_t *r = &c->units.rows[k];
        int32_t i;
        int level = level_of(c->next.reg, r->from_id, &i);
        if (r->has_board)
            continue;
        if (level != NO_LEVEL)
            report(c, true, c->units.path, r->line,
                   "commune_id %s is a %s of %s (line %d): an id names one thing", r->from_id,
                   level_names[level], c->next.file, unit_line(&c->next, level, i));
        else
            report(c, false, c->units.path, r->line, "commune %s '%s' has no board yet", r->from_id,
                   r->from_name);
    }
}

int keng_registry_check_run(const keng_registry_check_t *in, keng_registry_say_fn say, void *arg,
                            keng_registry_check_summary_t *out)
{
    ctx_t c;

    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    c.say = say;
    c.arg = arg;
    c.out = out;
    if (side_open(&c.next, in->next) != 0 ||
        (in->previous && side_open(&c.prev, in->previous) != 0)) {
        report(&c, true, c.next.file, 0, "out of memory");
        goto out;
    }
    check_times(&c, in);
    if (in->units_path && table_load(&c, &c.units, in->units_path, NULL, 0, false) == 0) {
        table_check_repeats(&c, &c.units, false);
        check_units_list(&c);
    }
    out->units_listed = c.units.n;
    if (in->lineage_path && !in->previous)
        report(&c, true, in->lineage_path, 0, "a lineage needs the previous version");
    if (!in->previous)
        goto out;
    if (in->lineage_path && table_load(&c, &c.lineage, in->lineage_path, NULL, 0, true) != 0)
        goto out; /* a lineage read in part would name boards as dropped that it does not drop */
    out->lineage_lines = c.lineage.n;
    table_check_repeats(&c, &c.lineage, true);
    check_lineage(&c);
    check_units_against_previous(&c);
    check_boards_of_next(&c);
    check_boards_of_previous(&c);
    check_vanished_communes(&c);
out:
    table_free(&c.lineage);
    table_free(&c.units);
    side_close(&c.prev);
    side_close(&c.next);
    return out->refusals > 0 ? -1 : 0;
}

/* ---- a lineage for showing where units came from ---- */

struct keng_lineage {
    table_t t;
    const row_t **by_to; /* rows that lead to another unit, or to another name, by to_id then
                          * line */
    size_t n;
};

typedef struct first_error {
    char *errstr;
    size_t size;
    bool said;
} first_error_t;

static void keep_first_error(void *arg, bool refusal, const char *message)
{
    first_error_t *e = arg;

    if (refusal && !e->said) {
        snprintf(e->errstr, e->size, "%s", message);
        e->said = true;
    }
}

static int by_to_order(const void *a, const void *b)
{
    const row_t *x = *(const row_t *const *)a, *y = *(const row_t *const *)b;
    int cmp = strcmp(x->to_id, y->to_id);

    return cmp ? cmp : x->line - y->line;
}

/* keng_lineage_load and keng_lineage_load_text: the file at path, or text when not NULL. */
static keng_lineage_t *lineage_load(const char *path, const char *text, size_t len, char *errstr,
                                    size_t errstr_size)
{
    keng_lineage_t *l = calloc(1, sizeof(*l));
    keng_registry_check_summary_t summary = {0};
    first_error_t first = {errstr, errstr_size, false};
    ctx_t c = {.say = keep_first_error, .arg = &first, .out = &summary};

    if (!l) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (table_load(&c, &l->t, path, text, len, true) != 0 ||
        !(l->by_to = calloc(l->t.n + 1, sizeof(*l->by_to)))) {
        if (!first.said)
            snprintf(errstr, errstr_size, "out of memory");
        keng_lineage_destroy(l);
        return NULL;
    }
    for (size_t i = 0; i < l->t.n; i++)
        if (l->t.rows[i].to_id[0] && (strcmp(l->t.rows[i].to_id, l->t.rows[i].from_id) != 0 ||
                                      strcmp(l->t.rows[i].to_name, l->t.rows[i].from_name) != 0))
            l->by_to[l->n++] = &l->t.rows[i];
    if (l->n > 1)
        qsort(l->by_to, l->n, sizeof(*l->by_to), by_to_order);
    return l;
}

keng_lineage_t *keng_lineage_load(const char *path, char *errstr, size_t errstr_size)
{
    return lineage_load(path, NULL, 0, errstr, errstr_size);
}

keng_lineage_t *keng_lineage_load_text(const char *text, size_t len, const char *name, char *errstr,
                                       size_t errstr_size)
{
    return lineage_load(name, text ? text : "", text ? len : 0, errstr, errstr_size);
}

const char *keng_lineage_became(const keng_lineage_t *l, const char *from_id)
{
    const row_t *r = l ? table_find(&l->t, from_id) : NULL;

    return r ? r->to_id : NULL;
}

size_t keng_lineage_formerly(const keng_lineage_t *l, const char *id, const char **names,
                             size_t max)
{
    size_t lo = 0, hi = l ? l->n : 0, count = 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(l->by_to[mid]->to_id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; l && lo < l->n && strcmp(l->by_to[lo]->to_id, id) == 0; lo++, count++)
        if (count < max)
            names[count] =
                l->by_to[lo]->from_name[0] ? l->by_to[lo]->from_name : l->by_to[lo]->from_id;
    return count;
}

void keng_lineage_destroy(keng_lineage_t *l)
{
    if (!l)
        return;
    table_free(&l->t);
    free(l->by_to);
    free(l);
}
