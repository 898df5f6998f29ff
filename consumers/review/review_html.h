/* The annual review as the province writes it: a printable HTML page (A4) with the headline in
 * the province's terms, SVG charts, a section per district and its silent boards. It is
 * rendered from the same JSON document that is written as review.json, so the page never shows
 * a number that the JSON does not hold.
 *
 * Thread: no state; any thread. */
#ifndef KENG_REVIEW_HTML_H
#define KENG_REVIEW_HTML_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "registry.h"

/* Writes review.html to path from doc (review.json's document, borrowed) and the registry the
 * review was counted against (borrowed). The period is [from_ms, to_ms). Returns 0, or -1
 * with errno set (EINVAL when doc does not match the registry). */
int keng_review_html_write(const json_t *doc, const keng_registry_t *reg, int64_t from_ms,
                           int64_t to_ms, const char *path);

/* The local (Asia/Ho_Chi_Minh) calendar date of ms in Vietnamese form, "25/10/2025", into buf
 * (at least 11 bytes). Returns buf, the caller's. */
char *keng_review_date_vi(int64_t ms, char *buf, size_t size);

/* The period [from_ms, to_ms) as the report names it: "năm 2025" for a calendar year, else
 * "từ 01/03/2025 đến 31/05/2025" (the last day included). Returns buf, the
 * caller's. */
char *keng_review_period_vi(int64_t from_ms, int64_t to_ms, char *buf, size_t size);

#endif
