/* Silent boards: a board's last event and its days of silence, from the counts (silent.h); it
 * never changes the counts. */
#include "silent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

int keng_silent_parse_days(const char *s, int *days)
{
    char *end;
    long v;

    if (!s || !*s)
        return -1;
    v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > KENG_SILENT_DAYS_MAX)
        return -1;
    *days = (int)v;
    return 0;
}

/* "YYYY-MM-DD": midnight of that day in Asia/Ho_Chi_Minh (UTC+7 all year). */
static int parse_date(const char *s, int64_t *out)
{
    char buf[40];

    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    snprintf(buf, sizeof(buf), "%sT00:00:00+07:00", s);
    return keng_time_parse_rfc3339(buf, strlen(buf), out);
}

keng_config_keys_t keng_silent_config_keys = {"silent.days", "silent.start", NULL};

int keng_silent_options_from_config(const keng_config_t *cfg, keng_silent_options_t *opt,
                                    char *errstr, size_t errstr_size)
{
    const char *days = keng_config_get(cfg, "silent.days", NULL);
    const char *start = keng_config_get(cfg, "silent.start", NULL);

    opt->days = KENG_SILENT_DAYS_DEFAULT;
    opt->start_ms = INT64_MIN;
    if (days && keng_silent_parse_days(days, &opt->days) != 0) {
        snprintf(errstr, errstr_size,
                 "silent.days: '%.32s' is not a whole number of days from 1 to %d", days,
                 KENG_SILENT_DAYS_MAX);
        return -1;
    }
    if (start && *start && parse_date(start, &opt->start_ms) != 0 &&
        keng_time_parse_rfc3339(start, strlen(start), &opt->start_ms) != 0) {
        snprintf(errstr, errstr_size,
                 "silent.start: '%.40s' is neither a date (2025-01-31) nor an RFC 3339 time "
                 "(2025-01-31T08:00:00+07:00)",
                 start);
        return -1;
    }
    return 0;
}

int64_t keng_silent_last_event(const keng_silent_view_t *v, uint32_t board_index)
{
    int64_t last = keng_counts_last_event(v->local, board_index);

    if (v->shared) {
        int64_t other = keng_counts_last_event(v->shared, board_index);
        if (other > last)
            last = other;
    }
    return last;
}

int64_t keng_silent_watch_start(const keng_silent_view_t *v)
{
    int64_t start;

    if (v->start_ms != INT64_MIN)
        return v->start_ms;
    start = keng_counts_watch_start(v->local);
    if (v->shared && keng_counts_watch_start(v->shared) < start)
        start = keng_counts_watch_start(v->shared);
    return start;
}

int64_t keng_silent_days(const keng_silent_view_t *v, uint32_t board_index, int64_t now_ms)
{
    int64_t from = keng_silent_watch_start(v);
    int64_t last = keng_silent_last_event(v, board_index);

    if (from == INT64_MAX)
        return 0;
    if (last > from)
        from = last;
    return now_ms > from ? (now_ms - from) / KENG_DAY_MS : 0;
}
