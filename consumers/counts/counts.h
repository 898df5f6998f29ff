/* Rolling counts per board for the windows 1h, 24h, 7d, 30d, 365d and all-time, rolled up to
 * commune, district and province, with the event-id memory that makes every event count once.
 * Windows select by occurred_at and trail the clock passed in (so tests inject it, and nothing
 * here reads a clock); each edge is rounded to at most 1/60 of the window's length.
 *
 * Thread: not thread-safe; keng-aggregate touches it on the loop thread only. */
#ifndef KENG_COUNTS_H
#define KENG_COUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "registry.h"

typedef enum {
    KENG_WIN_1H,
    KENG_WIN_24H,
    KENG_WIN_7D,
    KENG_WIN_30D,
    KENG_WIN_365D,
    KENG_WIN_ALL,
    KENG_WIN_COUNT
} keng_window_id_t;

typedef enum {
    KENG_LEVEL_BOARD,
    KENG_LEVEL_COMMUNE,
    KENG_LEVEL_DISTRICT,
    KENG_LEVEL_PROVINCE,
    KENG_LEVEL_COUNT
} keng_level_t;

extern const char *const keng_window_names[KENG_WIN_COUNT];  /* "1h" ... "all" */
extern const int64_t keng_window_length_ms[KENG_WIN_COUNT];  /* 0 for "all" */
extern const char *const keng_level_names[KENG_LEVEL_COUNT]; /* "board" ... "province" */

/* The scopes of a level: the registry's boards, communes or districts, or the province, one
 * scope with this id and name. Indexes are the registry's (0 for the province). */
#define KENG_PROVINCE_ID   "NA"
#define KENG_PROVINCE_NAME "Tỉnh Nghệ An"
size_t keng_scope_count(const keng_registry_t *reg, keng_level_t level);
/* Sets the borrowed id and name of the scope at index (below keng_scope_count). */
void keng_scope_names(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                      const char **id, const char **name);
/* The index of the scope with id at level, or -1. */
int32_t keng_scope_find(const keng_registry_t *reg, keng_level_t level, const char *id);

/* The registry's own levels: the district level exists only in a registry that has one, so
 * nothing above this header need assume it. keng_level_parse takes a level's name and fails
 * for a name the registry has no level of. */
bool keng_level_exists(const keng_registry_t *reg, keng_level_t level);
int keng_level_parse(const keng_registry_t *reg, const char *name, keng_level_t *out);
/* The level right above (board -> commune -> district or province) or below (province ->
 * district or commune -> board) level in the registry; level itself at the top or bottom. */
keng_level_t keng_level_above(const keng_registry_t *reg, keng_level_t level);
/* The scope with this id at the lowest level from `lowest` up that has it (ids are unique
 * across levels, so at most one). Returns 0, or -1 when no level has the id. */
int keng_scope_find_any(const keng_registry_t *reg, const char *id, keng_level_t lowest,
                        keng_level_t *level, uint32_t *index);
keng_level_t keng_level_below(const keng_registry_t *reg, keng_level_t level);
/* The index of the scope at level `outer` (above `level`) that holds the scope (level,
 * index): a board's commune or district, a commune's district, 0 for the province. */
uint32_t keng_scope_parent(const keng_registry_t *reg, keng_level_t level, uint32_t index,
                           keng_level_t outer);

/* Totals of one scope over one window. */
typedef struct keng_tally {
    uint64_t incidents;
    uint64_t by_category[KENG_CAT_COUNT];
    uint64_t by_resolution[KENG_RES_COUNT];
    uint64_t mediations;
    uint64_t by_outcome[KENG_OUTCOME_COUNT];
} keng_tally_t;

/* Adds every field of from to to. */
static inline void keng_tally_add(keng_tally_t *to, const keng_tally_t *from)
{
    uint64_t *a = (uint64_t *)to;
    const uint64_t *b = (const uint64_t *)from;

    for (size_t i = 0; i < sizeof(*to) / sizeof(uint64_t); i++)
        a[i] += b[i];
}

typedef struct keng_counts keng_counts_t;

typedef struct keng_counts_options {
    int64_t dedup_horizon_ms; /* event ids remembered this long after they arrive (30 days) */
    size_t dedup_max_entries; /* hard bound on remembered ids; oldest dropped first */
    int state_version;        /* board-state format written: 3 (the default) or 2, which
                                 keng releases before 3 read (counts.state_version) */
    uint32_t lanes;           /* slots per board (below); 0 or 1: one, the board itself */
} keng_counts_options_t;

void keng_counts_options_default(keng_counts_options_t *opt);

/* reg is borrowed and must outlive the counts. opt may be NULL for the defaults. */
keng_counts_t *keng_counts_new(const keng_registry_t *reg, const keng_counts_options_t *opt);
void keng_counts_destroy(keng_counts_t *c);

/* Rolls the boards up under reg from now on: reg must have the same boards at the same indexes
 * (keng_registry_in_board_order), with any communes and districts above them. Every board's
 * state stays as it is; the commune and district tallies are summed again from the boards
 * (the province's cannot change). reg is borrowed, as the first one. Returns 0, or -1 when the
 * board counts differ or memory runs out, with nothing changed. */
int keng_counts_set_registry(keng_counts_t *c, const keng_registry_t *reg);

typedef enum {
    KENG_COUNTS_ADDED = 0,
    KENG_COUNTS_DUPLICATE = 1 /* event_id already counted within the horizon: nothing changed */
} keng_counts_add_result_t;

/* Counts ev for the board at board_index (from keng_registry_find_board), in every window it
 * falls in at now_ms and in all its rollups. Future events are the caller's to reject.
 * Returns a keng_counts_add_result_t. */
int keng_counts_add(keng_counts_t *c, uint32_t board_index, const keng_event_t *ev, int64_t now_ms);

/* Moves every window's trailing edge to now_ms (events that fell out stop counting, ids
 * older than the horizon are forgotten). Cheap when called often; now_ms never goes back. */
void keng_counts_advance(keng_counts_t *c, int64_t now_ms);

/* The tally of one scope (level plus the registry index of the board, commune or district;
 * 0 for the province) over one window, as of the last add/advance. */
void keng_counts_get(const keng_counts_t *c, keng_level_t level, uint32_t index,
                     keng_window_id_t window, keng_tally_t *out);

/* Number of ids currently remembered for deduplication, and events counted since start. */
size_t keng_counts_dedup_size(const keng_counts_t *c);

/* Per-board state, for checkpoints and partition hand-over: everything counts.c keeps for one
 * board (its events' time buckets and its remembered ids) as a self-contained byte string.
 * keng_counts_board_save appends to a malloc'd buffer the caller frees; returns 0 or -1.
 * keng_counts_board_load replaces the board's state (rollups adjusted) from such bytes;
 * returns 0, or -1 with errstr filled when the bytes are not a valid state.
 * keng_counts_board_clear forgets the board (rollups adjusted), when its partition moves
 * to another instance. */
int keng_counts_board_save(const keng_counts_t *c, uint32_t board_index, unsigned char **buf,
                           size_t *len);
int keng_counts_board_load(keng_counts_t *c, uint32_t board_index, const unsigned char *buf,
                           size_t len, int64_t now_ms, char *errstr, size_t errstr_size);
void keng_counts_board_clear(keng_counts_t *c, uint32_t board_index);

/* True when the board changed since the last keng_counts_board_mark_clean (for incremental
 * checkpoints). */
bool keng_counts_board_dirty(const keng_counts_t *c, uint32_t board_index);
void keng_counts_board_mark_clean(keng_counts_t *c, uint32_t board_index);

/* ---- Added by counts.c's author (additive; nothing above changed) ---- */

/* Notes on the functions above:
 * - keng_counts_add returns -1 and changes nothing when board_index is outside the registry,
 *   the event's kind or enums are out of range, occurred_at is past year 6000, or memory
 *   runs out.
 * - keng_counts_board_save appends after the *len bytes of *buf (start with NULL and 0).
 * - keng_counts_board_load first advances the clock to now_ms, drops ids whose horizon has
 *   passed, and moves old buckets to the levels this clock puts them in; it leaves the board
 *   clean. keng_counts_board_clear leaves it dirty. Only counted adds make a board dirty:
 *   expiry does not, since a load re-applies it.
 * - dedup_max_entries 0 turns deduplication off. */

/* Edge rounding of each window: 1, 24, 168, 672 and 8736 minutes (each divides the next and
 * is at most 1/60 of its window); 0 for "all". At the clock now, window w starts at
 * keng_counts_window_start(now, w) = floor((now - length) / granularity) * granularity (on
 * multiples since the epoch) and an event counts in w iff occurred_at >= that start. */
extern const int64_t keng_window_granularity_ms[KENG_WIN_COUNT];
int64_t keng_counts_window_start(int64_t now_ms, keng_window_id_t window); /* INT64_MIN: all */

/* The clock of the last add/advance (INT64_MIN before the first), for an answer's as_of. */
int64_t keng_counts_now(const keng_counts_t *c);

/* Events counted (KENG_COUNTS_ADDED) since keng_counts_new. */
uint64_t keng_counts_events_counted(const keng_counts_t *c);

/* Bytes the counts have allocated (their own accounting, without malloc's overhead). */
size_t keng_counts_memory_bytes(const keng_counts_t *c);

/* The 64-bit hash under which an event id is remembered (and saved): stable across versions
 * of keng, since saved board states hold it. Two distinct ids of one board collide with
 * probability about 2^-64; with n ids remembered for a board, a new event is wrongly taken
 * for a duplicate with probability about n / 2^64. */
uint64_t keng_counts_id_hash(keng_kind_t kind, const char *id, size_t len);

/* ---- Per-(board, kind) state, for scale-out (additive) ----
 *
 * A board's incidents and mediations come from two topics, and cooperative-sticky assignment
 * may give the two partitions to two instances: the unit of state that moves with a
 * partition is (board, kind), a "unit". The board_* functions above act on both units of a
 * board at once (board_save writes both kinds in one state; board_load replaces both).
 * keng_counts_unit_save writes one unit in the same format (its kind set in the header);
 * keng_counts_unit_load replaces one unit from a state that holds that kind (a unit's or a
 * board's), leaving the board's other unit as it is, and leaves it clean; returns 0, or -1
 * with errstr. keng_counts_unit_clear forgets one unit (rollups adjusted; dirty if it had
 * state). unit_set_dirty forces (or drops) a save at the next checkpoint. */
int keng_counts_unit_save(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                          unsigned char **buf, size_t *len);
int keng_counts_unit_load(keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                          const unsigned char *buf, size_t len, int64_t now_ms, char *errstr,
                          size_t errstr_size);
void keng_counts_unit_clear(keng_counts_t *c, uint32_t board_index, keng_kind_t kind);
bool keng_counts_unit_dirty(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind);
void keng_counts_unit_set_dirty(keng_counts_t *c, uint32_t board_index, keng_kind_t kind,
                                bool dirty);
bool keng_counts_unit_has_state(const keng_counts_t *c, uint32_t board_index, keng_kind_t kind);

/* ---- Lanes: a board's units from several partitions (additive) ----
 *
 * When an input topic grows, a board's key hashes to another partition, and its events of one
 * kind then come from two partitions that two instances may own. Each partition's share must
 * move with that partition alone, so a store made with opt.lanes = L > 1 keeps L slots per
 * board: slot s = lane * board_count + board, s < keng_counts_slots. Every unit function
 * above (keng_counts_add, keng_counts_unit_*) and keng_counts_board_save/load take a slot
 * where they say board_index; a slot below board_count is the board itself, so a store of one
 * lane is what it always was. The answers (keng_counts_get at board level,
 * keng_counts_last_event, keng_counts_series_add) and the rollups add up every lane of a
 * board. An event id that one lane of a (board, kind) remembers is a duplicate in the others.
 * Which lane holds which partition is the caller's to decide. */
uint32_t keng_counts_slots(const keng_counts_t *c);

/* ---- Last events and series (silent boards, trends; additive) ----
 *
 * Each unit keeps the time its board last reported: the largest reported_at (the gateway's
 * receive time; occurred_at when there is none) of its counted events, capped at the clock.
 * It is part of the unit's state (format version 3), so it moves with the unit through the
 * checkpoint and the counts topic. keng_counts_last_event is the latest of the board's units
 * held here, INT64_MIN when none is known.
 *
 * The watch start is when the deployment began watching its boards (docs/ALERTS.md, "Silent
 * boards"): every state saved carries this store's value, every state loaded lowers it to the
 * saver's, and keng_counts_note_watch_start lowers it too. INT64_MAX while unknown. */
int64_t keng_counts_last_event(const keng_counts_t *c, uint32_t board_index);
int64_t keng_counts_watch_start(const keng_counts_t *c);
void keng_counts_note_watch_start(keng_counts_t *c, int64_t ms);

/* Adds to out[0..npoints) the events of one kind in window (not "all") of a scope, from the
 * same buckets the window's count is the sum of: a bucket starting at s goes to point
 * floor((s - origin_ms) / step_ms), clamped to the first and last point. So the points add up
 * to the window's count exactly, and a point's edges are exact to the bucket's granularity
 * (1 min in the last hour, then keng_window_granularity_ms of the smallest window holding the
 * bucket). out is not cleared, so that two stores can be added. Returns 0, or -1 for
 * arguments out of range. */
int keng_counts_series_add(const keng_counts_t *c, keng_level_t level, uint32_t index,
                           keng_kind_t kind, keng_window_id_t window, int64_t origin_ms,
                           int64_t step_ms, uint64_t *out, size_t npoints);

#endif
