/* Formats keng-produce's progress line and never draws it: drawing it is the program's
 * business. */
#include "progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

char *keng_progress_format_count(uint64_t n, char *buf, size_t size)
{
    char digits[32];
    int nd = snprintf(digits, sizeof(digits), "%" PRIu64, n);
    size_t out = 0;

    if (size == 0)
        return buf;
    for (int i = 0; i < nd && out + 1 < size; i++) {
        if (i > 0 && (nd - i) % 3 == 0) {
            buf[out++] = ',';
            if (out + 1 >= size)
                break;
        }
        buf[out++] = digits[i];
    }
    buf[out] = '\0';
    return buf;
}

char *keng_progress_format_duration(uint64_t seconds, char *buf, size_t size)
{
    uint64_t h = seconds / 3600, m = seconds / 60 % 60, s = seconds % 60;
    if (h > 0)
        snprintf(buf, size, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, h, m, s);
    else
        snprintf(buf, size, "%" PRIu64 ":%02" PRIu64, m, s);
    return buf;
}

size_t keng_progress_format(const keng_progress_state_t *st, int width, char *buf, size_t size)
{
    char lines[32], rate[32], eta[32], tail[128];
    uint64_t per_s = st->elapsed_ms > 0 ? st->lines * 1000 / (uint64_t)st->elapsed_ms : 0;
    int n;

    keng_progress_format_count(st->lines, lines, sizeof(lines));
    keng_progress_format_count(per_s, rate, sizeof(rate));
    if (size == 0)
        return 0;
    if (st->bytes_total == 0) {
        n = snprintf(buf, size, "%s lines  %s lines/s", lines, rate);
        return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
    }

    uint64_t done = st->bytes_done > st->bytes_total ? st->bytes_total : st->bytes_done;
    unsigned pct = (unsigned)(done * 100 / st->bytes_total);
    if (done > 0 && st->elapsed_ms > 0) {
        /* Remaining bytes at the average speed so far. */
        uint64_t left_ms =
            (uint64_t)((double)(st->bytes_total - done) * (double)st->elapsed_ms / (double)done);
        keng_progress_format_duration((left_ms + 999) / 1000, eta, sizeof(eta));
    } else {
        snprintf(eta, sizeof(eta), "?");
    }
    n = snprintf(tail, sizeof(tail), "%3u%%  %s lines  %s lines/s  ETA %s", pct, lines, rate, eta);
    if (n < 0)
        return 0;

    /* The bar takes what the width leaves, between 10 and 40 cells, or is dropped. */
    int bar = width - n - 4;
    if (bar > 40)
        bar = 40;
    size_t out = 0;
    if (bar >= 10) {
        int filled = (int)(done * (uint64_t)bar / st->bytes_total);
        if (out + (size_t)bar + 4 < size) {
            buf[out++] = '[';
            for (int i = 0; i < bar; i++)
                buf[out++] = i < filled ? '#' : '.';
            buf[out++] = ']';
            buf[out++] = ' ';
            buf[out++] = ' ';
        }
    }
    n = snprintf(buf + out, size - out, "%s", tail);
    out += n < 0 ? 0 : (size_t)n;
    return out < size ? out : size - 1;
}
