/* The progress line that keng-produce draws on a terminal: lines, rate, share done, ETA;
 * nothing here writes to the terminal. */
#ifndef KENG_PROGRESS_H
#define KENG_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct keng_progress_state {
    uint64_t lines;
    uint64_t bytes_done;
    uint64_t bytes_total; /* 0 when unknown (a pipe): no bar, no ETA */
    int64_t elapsed_ms;
} keng_progress_state_t;

/* "1234567" -> "1,234,567". Returns buf, the caller's. */
char *keng_progress_format_count(uint64_t n, char *buf, size_t size);

/* Seconds as "0:42", "12:05" or "3:02:10". Returns buf, the caller's. */
char *keng_progress_format_duration(uint64_t seconds, char *buf, size_t size);

/* One line without a newline, at most width columns wide when width allows:
 *   "[#######.............]  35%  12,345 lines  4,567 lines/s  ETA 0:12"
 * or, with no total, "12,345 lines  4,567 lines/s". The rate is lines over elapsed time;
 * the ETA extrapolates bytes over elapsed time. Returns the number of bytes written. */
size_t keng_progress_format(const keng_progress_state_t *st, int width, char *buf, size_t size);

#endif
