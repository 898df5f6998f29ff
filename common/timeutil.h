/* Time at the edges: RFC 3339 parsing and formatting, and keng's one clock; nothing here
 * allocates. */
#ifndef KENG_TIMEUTIL_H
#define KENG_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the epoch by the wall clock. */
int64_t keng_now_ms(void);

/* Monotonic milliseconds, for deadlines and rates. */
int64_t keng_monotonic_ms(void);

/* Parses RFC 3339 with an offset or Z ("2025-03-01T21:15:00+07:00", fractional seconds
 * allowed) into ms since the epoch. Returns 0, or -1 when s is not such a time. */
int keng_time_parse_rfc3339(const char *s, size_t len, int64_t *out_ms);

/* A date YYYY-MM-DD, meaning its midnight in Asia/Ho_Chi_Minh ("2025-07-01" is
 * 2025-06-30T17:00:00Z), or an RFC 3339 time as keng_time_parse_rfc3339 takes it, into ms since
 * the epoch. Returns 0, or -1 when s is neither. */
int keng_time_parse_day_or_rfc3339(const char *s, int64_t *out_ms);

/* Formats ms as "2025-03-01T14:15:00.000Z" into buf (at least 25 bytes). Returns buf, the
 * caller's. */
char *keng_time_format_utc(int64_t ms, char *buf, size_t size);

/* The same instant in Asia/Ho_Chi_Minh, "2025-03-01T21:15:00.000+07:00" (30 bytes),
 * into the caller's buf, which it returns. */
char *keng_time_format_local(int64_t ms, char *buf, size_t size);

/* Offset of Asia/Ho_Chi_Minh from UTC: keng's calendar days, months and years use it. */
#define KENG_LOCAL_OFFSET_MS (7 * 3600 * 1000LL)

#endif
