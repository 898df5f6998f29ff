/* Rolling counts per board for the windows 1h, 24h, 7d, 30d, 365d and all-time, rolled up
 * to commune, district and province, with the event-id memory that makes every event count
 * once. Windows select by occurred_at and trail the clock passed in (so tests inject it);
 * each edge is rounded to at most 1/60 of the window's length.
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

/* Totals of one scope over one window. */
typedef struct keng_tally {
    uint64_t incidents;
    uint64_t by_category[KENG_CAT_COUNT];
    uint64_t by_resolution[KENG_RES_COUNT];
    uint64_t mediations;
    uint64_t by_outcome[KENG_OUTCOME_COUNT];
} keng_tally_t;

typedef struct keng_counts keng_counts_t;

typedef struct keng_counts_options {
    int64_t dedup_horizon_ms; /* event ids remembered this long after they arrive (30 days) */
    size_t dedup_max_entries; /* hard bound on remembered ids; oldest dropped first */
} keng_counts_options_t;

void keng_counts_options_default(keng_counts_options_t *opt);

/* reg is borrowed and must outlive the counts. opt may be NULL for the defaults. */
keng_counts_t *keng_counts_new(const keng_registry_t *reg, const keng_counts_options_t *opt);
void keng_counts_destroy(keng_counts_t *c);

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

#endif
