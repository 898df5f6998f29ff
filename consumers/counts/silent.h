/* Silent boards: when a board last reported, across this instance's units and those other
 * instances publish, and for how many whole days it has been silent, counted from the later of
 * its last event and the start of the deployment's watch (docs/ALERTS.md, "Silent boards");
 * nothing here changes the counts.
 *
 * Thread: loop thread only, like the counts it reads. */
#ifndef KENG_SILENT_H
#define KENG_SILENT_H

#include <stdint.h>

#include "config.h"
#include "counts.h"

#define KENG_DAY_MS              86400000LL
#define KENG_SILENT_DAYS_DEFAULT 30
#define KENG_SILENT_DAYS_MAX     365

typedef struct keng_silent_options {
    int days;         /* silent.days: a board is silent after this many days without an event */
    int64_t start_ms; /* silent.start: the watch start set by hand; INT64_MIN when not set */
} keng_silent_options_t;

/* The config keys keng_silent_options_from_config reads. */
extern keng_config_keys_t keng_silent_config_keys;

/* Reads silent.days (1..365, default 30) and silent.start (an RFC 3339 time, or a calendar
 * date YYYY-MM-DD meaning its midnight in Asia/Ho_Chi_Minh) from cfg. Returns 0, or -1 with
 * errstr naming the key. */
int keng_silent_options_from_config(const keng_config_t *cfg, keng_silent_options_t *opt,
                                    char *errstr, size_t errstr_size);

/* Parses a number of days, 1..365. Returns 0 or -1. */
int keng_silent_parse_days(const char *s, int *days);

/* What the answers are computed from: this instance's counts, the other instances' (may be
 * NULL) and the options; all borrowed. */
typedef struct keng_silent_view {
    const keng_counts_t *local;
    const keng_counts_t *shared;
    int64_t start_ms; /* silent.start, or INT64_MIN to take the counts' watch start */
} keng_silent_view_t;

/* The board's last event, INT64_MIN when none is known. */
int64_t keng_silent_last_event(const keng_silent_view_t *v, uint32_t board_index);

/* When the deployment began watching: silent.start when set, else the earliest watch start
 * of the two stores; INT64_MAX while unknown (then no board is silent). */
int64_t keng_silent_watch_start(const keng_silent_view_t *v);

/* Whole days the board has been silent at now_ms (0 up to the first full day, and while the
 * watch start is unknown). A board is silent for d days when this is >= d. */
int64_t keng_silent_days(const keng_silent_view_t *v, uint32_t board_index, int64_t now_ms);

#endif
