/* keng's clocks and its one RFC 3339 parser and formatter, written without the C library's
 * time zone machinery so that results never depend on TZ or the locale. */
#include "timeutil.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t keng_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t keng_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Reads exactly n digits at s[*pos]. */
static bool digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0;

    if (*pos + (size_t)n > len)
        return false;
    for (int i = 0; i < n; i++) {
        char c = s[*pos + (size_t)i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *pos += (size_t)n;
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *pos, char c)
{
    if (*pos >= len || s[*pos] != c)
        return false;
    (*pos)++;
    return true;
}

int keng_time_parse_day_or_rfc3339(const char *s, int64_t *out_ms)
{
    char midnight[32];

    if (s == NULL)
        return -1;
    if (strlen(s) != 10)
        return keng_time_parse_rfc3339(s, strlen(s), out_ms);
    snprintf(midnight, sizeof(midnight), "%sT00:00:00+07:00", s);
    return keng_time_parse_rfc3339(midnight, strlen(midnight), out_ms);
}

int keng_time_parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    size_t pos = 0;
    /* Zeroed only for the optimiser: every path that reads them has parsed them. */
    int year = 0, mon = 0, day = 0, hour = 0, min = 0, sec = 0, ms = 0, off_h = 0, off_m = 0,
        sign = 0;

    if (s == NULL)
        return -1;
    if (!digits(s, len, &pos, 4, &year) || !expect(s, len, &pos, '-') ||
        !digits(s, len, &pos, 2, &mon) || !expect(s, len, &pos, '-') ||
        !digits(s, len, &pos, 2, &day))
        return -1;
    /* RFC 3339 section 5.6 allows a lower-case t, and a space for readability. */
    if (pos >= len || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' '))
        return -1;
    pos++;
    if (!digits(s, len, &pos, 2, &hour) || !expect(s, len, &pos, ':') ||
        !digits(s, len, &pos, 2, &min) || !expect(s, len, &pos, ':') ||
        !digits(s, len, &pos, 2, &sec))
        return -1;
    if (pos < len && s[pos] == '.') {
        int n = 0, scale = 100;
        pos++;
        while (pos < len && s[pos] >= '0' && s[pos] <= '9') {
            /* Digits past milliseconds are truncated: keng's times are milliseconds. */
            if (n < 3) {
                ms += (s[pos] - '0') * scale;
                scale /= 10;
            }
            n++;
            pos++;
        }
        if (n == 0)
            return -1;
    }
    if (pos >= len)
        return -1;
    if (s[pos] == 'Z' || s[pos] == 'z') {
        pos++;
    } else if (s[pos] == '+' || s[pos] == '-') {
        sign = s[pos] == '-' ? -1 : 1;
        pos++;
        if (!digits(s, len, &pos, 2, &off_h) || !expect(s, len, &pos, ':') ||
            !digits(s, len, &pos, 2, &off_m))
            return -1;
    } else {
        return -1;
    }
    if (pos != len)
        return -1;
    /* A leap second (:60) is taken as the last millisecond-aligned second before it. */
    if (mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour > 23 || min > 59 ||
        sec > 60 || off_h > 23 || off_m > 59)
        return -1;
    if (sec == 60)
        sec = 59;

    int64_t secs = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec;
    secs -= (int64_t)sign * (off_h * 3600 + off_m * 60);
    *out_ms = secs * 1000 + ms;
    return 0;
}

static char *format(int64_t ms, int64_t offset_ms, const char *suffix, char *buf, size_t size)
{
    int64_t local = ms + offset_ms;
    int64_t days = local / 86400000, rem = local % 86400000;
    int64_t y;
    int m, d;

    if (rem < 0) {
        rem += 86400000;
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02d-%02dT%02d:%02d:%02d.%03d%s", (long long)y, m, d,
             (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
             (int)(rem % 1000), suffix);
    return buf;
}

char *keng_time_format_utc(int64_t ms, char *buf, size_t size)
{
    return format(ms, 0, "Z", buf, size);
}

char *keng_time_format_local(int64_t ms, char *buf, size_t size)
{
    return format(ms, KENG_LOCAL_OFFSET_MS, "+07:00", buf, size);
}
