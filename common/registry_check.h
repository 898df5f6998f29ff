/* Checks a registry version against the one before it, its lineage and its units list, so that
 * a version that would lose a board, reuse an id or run time backwards is refused before any
 * program uses it; it reads files and never changes them. */
#ifndef KENG_REGISTRY_CHECK_H
#define KENG_REGISTRY_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* No effective time given. */
#define KENG_NO_TIME INT64_MIN

/* What is checked. Everything is borrowed for the call; every field but next may be NULL (or
 * KENG_NO_TIME), and the checks that need it are then not made. */
typedef struct keng_registry_check {
    const keng_registry_t *next;     /* the version checked */
    const keng_registry_t *previous; /* the version in force before it */
    /* Lineage: from_id,from_name,to_id,to_name after a header line (registry/README.md):
     * which unit or board of previous became which unit of next, or an empty to_id for one
     * that was removed. Needs previous. */
    const char *lineage_path;
    /* A units list: a CSV whose header has commune_id and commune_name (other columns are
     * ignored), every commune of the version once, boards or not
     * (registry/nghe-an-2025-07-01.communes.csv). */
    const char *units_path;
    int64_t effective_ms, previous_effective_ms;
} keng_registry_check_t;

/* One finding, a sentence that names the file and the line. refusal is false for a warning.
 * Called on the caller's thread, during keng_registry_check_run; message is borrowed for the
 * call. */
typedef void (*keng_registry_say_fn)(void *arg, bool refusal, const char *message);

/* What the check found, besides what it said. Boards of next against previous: kept in a
 * commune of the same id, moved to another, new, and the boards of previous that lineage
 * removed. */
typedef struct keng_registry_check_summary {
    size_t refusals, warnings;
    size_t kept, moved, added, removed;
    size_t lineage_lines, units_listed;
} keng_registry_check_summary_t;

/* Runs every check that in allows and says each finding through say. Returns 0 when nothing
 * was refused, -1 otherwise (out->refusals says how many, a file that does not open among
 * them). out is the caller's. The rules are in docs/DESIGN.md, "Registry versions". */
int keng_registry_check_run(const keng_registry_check_t *in, keng_registry_say_fn say, void *arg,
                            keng_registry_check_summary_t *out);

/* A lineage read to show where units came from ("formerly ..." on the dashboard): the same
 * file and rules as keng_registry_check_t's lineage_path. */
typedef struct keng_lineage keng_lineage_t;

/* Reads path. Returns NULL with errstr naming the file and the line of the first refusal;
 * the caller owns the result (keng_lineage_destroy). */
keng_lineage_t *keng_lineage_load(const char *path, char *errstr, size_t errstr_size);

/* The same from len bytes of text (the lineage a version of the topic antt.registry carries),
 * which name stands for in messages ("antt.registry@2025-06-30T17:00:00Z lineage"). text is
 * borrowed for the call. */
keng_lineage_t *keng_lineage_load_text(const char *text, size_t len, const char *name, char *errstr,
                                       size_t errstr_size);

/* What the unit or board from_id of the previous version became: the to_id of its line ("" for
 * one removed), or NULL when the lineage has no line for it. Borrowed from l; l may be NULL. */
const char *keng_lineage_became(const keng_lineage_t *l, const char *from_id);

/* The names (the id where a line has no name) of the units and boards that became id, in
 * file order: up to max of them into names (borrowed from l), and how many there are in all.
 * A unit renamed under its id has its old name there; a line that changes nothing does not
 * count. l may be NULL. */
size_t keng_lineage_formerly(const keng_lineage_t *l, const char *id, const char **names,
                             size_t max);

void keng_lineage_destroy(keng_lineage_t *l);

#endif
