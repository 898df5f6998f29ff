/* The board registry: every hamlet board with the units above it. Reference data, loaded
 * once from a CSV or generated with the province's published counts, and never changed after
 * that. Its levels come from the data: province, district, commune, board for a registry of
 * the years before July 2025, and province, commune, board for the two-tier government in
 * force since then, which has no district level at all. */
#ifndef KENG_REGISTRY_H
#define KENG_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* keng's one id alphabet, for the ids of boards and of every unit above them: 1 to 31 of
 * A-Z a-z 0-9 . _ - (so "D07-C012-B03", "D01_C001" and official codes such as "40.17542").
 * The registry loader, the HTTP API, tokens and alert rules take exactly these, so that an
 * id that loads can be asked for everywhere. Ids are opaque: nothing parses them. */
#define KENG_UNIT_ID_MAX  31
#define KENG_UNIT_ID_RULE "1 to 31 of A-Z a-z 0-9 . _ -"
bool keng_unit_id_valid(const char *id, size_t len);

/* The counts of the provincial report that the default registry reproduces exactly. */
#define KENG_DEFAULT_DISTRICTS 21
#define KENG_DEFAULT_COMMUNES  460
#define KENG_DEFAULT_BOARDS    7588
#define KENG_DEFAULT_GROUPS    38578
#define KENG_DEFAULT_MEMBERS   38661

typedef struct keng_registry keng_registry_t;

/* The district of a commune or board in a registry without a district level. */
#define KENG_NO_UNIT UINT32_MAX

typedef struct keng_district {
    const char *id;   /* "D07" */
    const char *name; /* "Huyện Quỳnh Lưu" */
} keng_district_t;

typedef struct keng_commune {
    const char *id; /* "D07-C012" */
    const char *name;
    uint32_t district; /* index into the districts, or KENG_NO_UNIT */
} keng_commune_t;

typedef struct keng_board {
    const char *id; /* "D07-C012-B03" */
    const char *name;
    uint32_t commune;  /* index into the communes */
    uint32_t district; /* index into the districts, or KENG_NO_UNIT */
    uint32_t groups;
    uint32_t members;
} keng_board_t;

/* Loads the CSV board_id,board_name,commune_id,commune_name,district_id,district_name,
 * groups,members (a header line first). district_id and district_name are both empty on every
 * row of a registry without a district level, and both set on every row of one with it.
 * Returns NULL with errstr naming the line and the field on any bad row ("line 12: groups:
 * not a number"), a level with holes, or an id that names two units. The caller owns the
 * registry (keng_registry_destroy). */
keng_registry_t *keng_registry_load(const char *path, char *errstr, size_t errstr_size);

/* The same CSV from len bytes of text (borrowed for the call), for a version read from Kafka;
 * name stands for the file in messages and in keng_registry_path ("antt.registry@2025-06-30T
 * 17:00:00Z"). Returns NULL with errstr filled; the caller owns the registry. */
keng_registry_t *keng_registry_load_text(const char *text, size_t len, const char *name,
                                         char *errstr, size_t errstr_size);

/* The generated default: 21 districts with their real names, 460 communes, 7,588 boards,
 * 38,578 groups and 38,661 members. Deterministic. NULL when memory runs out; the caller owns
 * the registry (keng_registry_destroy). */
keng_registry_t *keng_registry_default(void);

/* Loads path, or the default when path is NULL or empty. Returns NULL with errstr filled; the
 * caller owns the registry (keng_registry_destroy). */
keng_registry_t *keng_registry_open(const char *path, char *errstr, size_t errstr_size);

void keng_registry_destroy(keng_registry_t *reg);

/* A copy of next (its units, names and counts) with its boards in base's order, so that every
 * board keeps its index from one version to the next: keng-aggregate's counts, alerts and
 * checkpoints are indexed by board, and a switch then changes only what is above the boards.
 * The board sets must be the same: when they differ it returns NULL with errstr saying how
 * many boards next adds and removes, with the first of each. NULL with "out of memory" too.
 * The caller owns the result; its path is next's. */
keng_registry_t *keng_registry_in_board_order(const keng_registry_t *next,
                                              const keng_registry_t *base, char *errstr,
                                              size_t errstr_size);

/* Writes the registry as CSV, header first. Returns 0 or -1 (errno set). */
int keng_registry_write_csv(const keng_registry_t *reg, FILE *out);

size_t keng_registry_board_count(const keng_registry_t *reg);
size_t keng_registry_commune_count(const keng_registry_t *reg);
size_t keng_registry_district_count(const keng_registry_t *reg);

/* The file the registry was loaded from, or NULL for the built-in one (the 2024 seed). */
const char *keng_registry_path(const keng_registry_t *reg);

/* Where the registry came from, what it holds and its levels, for every program's start line
 * and the review: "source=FILE districts=0 communes=130 boards=7588 levels=province,commune,
 * board" (source=built-in for the default). */
void keng_registry_describe(const keng_registry_t *reg, char *buf, size_t size);

/* The same without its source: "districts=0 communes=130 boards=7588 levels=province,commune,
 * board", for the lines that name a version of antt.registry instead. */
void keng_registry_describe_units(const keng_registry_t *reg, char *buf, size_t size);

/* The registry for Prometheus: keng_registry_units{level} for each level it has and
 * keng_registry_info{source,path} 1, with HELP and TYPE lines. Returns what it wrote, or -1
 * when buf is too small. */
int keng_registry_metrics(const keng_registry_t *reg, char *buf, size_t size);

/* Whether the registry has a district level (false for the two-tier government of 2025). */
bool keng_registry_has_districts(const keng_registry_t *reg);

/* The registry's levels from the top, for messages: "province, district, commune, board" or
 * "province, commune, board". */
const char *keng_registry_level_list(const keng_registry_t *reg);

/* Dense indexes 0..count-1; the pointers are borrowed from the registry. NULL for an index
 * out of range, KENG_NO_UNIT included. */
const keng_board_t *keng_registry_board(const keng_registry_t *reg, uint32_t index);
const keng_commune_t *keng_registry_commune(const keng_registry_t *reg, uint32_t index);
const keng_district_t *keng_registry_district(const keng_registry_t *reg, uint32_t index);

/* The line of the registry's file that board index came from, for messages; 0 for the built-in
 * registry or an index out of range. */
int keng_registry_board_line(const keng_registry_t *reg, uint32_t index);

/* Index of the id, or -1 when the registry does not know it. len is the id's length
 * (ids need not be NUL-terminated). O(1) on average. */
int32_t keng_registry_find_board(const keng_registry_t *reg, const char *id, size_t len);
int32_t keng_registry_find_commune(const keng_registry_t *reg, const char *id, size_t len);
int32_t keng_registry_find_district(const keng_registry_t *reg, const char *id, size_t len);

/* For the registry's own files (registry.c, registry_check.c), not for callers. */

/* Splits one CSV record in place (RFC 4180 quoting, no embedded newlines) into at most max
 * fields. Returns the number of fields (max + 1 when there are more), or -1 on an unterminated
 * quote. */
int keng_registry__csv_split(char *line, char **fields, int max);

/* A unit's or board's name as field (for the message): 0, or -1 with err saying what is wrong
 * and what to do: empty, or in Unicode NFD. */
int keng_registry__check_name(const char *field, const char *name, char *err, size_t err_size);

#endif
