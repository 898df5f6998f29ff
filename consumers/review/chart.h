/* SVG charts for keng's printed reports: drawn as plain SVG text, with no script, no font
 * download and nothing fetched, so that a report opens and prints the same offline.
 *
 * Every data point is drawn as one element of class "mark" carrying data-key and
 * data-value, so a reader (or a test) can match the picture to the numbers.
 *
 * Thread: the functions keep no state. */
#ifndef KENG_CHART_H
#define KENG_CHART_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct keng_chart_item {
    const char *key;   /* stable id of the point ("THEFT", "D07", "2025-03") */
    const char *label; /* what the reader sees, UTF-8 */
    uint64_t value;
} keng_chart_item_t;

/* The axis of a chart whose largest value is max: a step of 1, 2 or 5 times a power of ten
 * and at most 5 steps, whose top (steps * step) is at least max. max 0 gives step 1, top 1. */
void keng_chart_axis(uint64_t max, uint64_t *step, uint64_t *top);

/* Where value falls on a length of `length` units whose end stands for top (0 when top is 0). */
double keng_chart_scale(uint64_t value, uint64_t top, double length);

/* The centre of band i of n equal bands across [start, start + length). */
double keng_chart_band_center(size_t i, size_t n, double start, double length);

/* A slice of a ring of radius r drawn as a dashed circle stroke: the slice of `value` out of
 * `total`, after `before` of the total already drawn, is a dash of *dash units starting
 * *offset units along the circle (stroke-dashoffset takes -offset). All 0 when total is 0. */
void keng_chart_ring_slice(uint64_t value, uint64_t before, uint64_t total, double r, double *dash,
                           double *offset);

/* A line of one point per item (months), with an axis and the value above each point.
 * id becomes the svg's data-chart; title its <title>. */
void keng_chart_line(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                     size_t n);

/* Horizontal bars, one per item in the order given, labelled with the item and its value. */
void keng_chart_bars(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                     size_t n);

/* A ring of shares with a legend giving each item's count and percentage, in the order
 * given. Colours repeat after 12 items. */
void keng_chart_shares(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                       size_t n);

/* Writes n in Vietnamese digit grouping ("11.000") into buf. Returns buf, the caller's. */
char *keng_chart_format_count(uint64_t n, char *buf, size_t size);

/* Writes part/total as a Vietnamese percentage with one decimal ("12,5%", "9,0%"; "0%" when
 * total is 0) into buf. Returns buf, the caller's. */
char *keng_chart_format_percent(uint64_t part, uint64_t total, char *buf, size_t size);

/* Writes s with <, >, & and " escaped for HTML and SVG text and attributes. */
void keng_chart_escape(FILE *f, const char *s);

#endif
