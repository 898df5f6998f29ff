/* SVG line, bar and share charts for the annual review, written as text; it never keeps state
 * or fetches anything. */
#include "chart.h"

#include <math.h>
#include <string.h>

#define WIDTH 720.0

static const char *const palette[12] = {"#1f5fa8", "#d9822b", "#3a8f4b", "#b8383b",
                                        "#7a5aa6", "#8c6239", "#c9569b", "#6b6b6b",
                                        "#9aa329", "#2a9fb0", "#e0b020", "#4d4d9c"};

void keng_chart_axis(uint64_t max, uint64_t *step, uint64_t *top)
{
    static const uint64_t mantissas[] = {1, 2, 5};
    uint64_t s = 1;

    /* The smallest 1/2/5 x 10^k step that covers max in at most 5 steps. */
    for (uint64_t power = 1;; power *= 10) {
        size_t i;
        for (i = 0; i < 3; i++) {
            s = mantissas[i] * power;
            if (s * 5 >= max)
                break;
        }
        if (i < 3 || power > UINT64_MAX / 100)
            break;
    }
    uint64_t steps = max == 0 ? 1 : (max + s - 1) / s;
    *step = s;
    *top = steps * s;
}

double keng_chart_scale(uint64_t value, uint64_t top, double length)
{
    return top == 0 ? 0.0 : (double)value / (double)top * length;
}

double keng_chart_band_center(size_t i, size_t n, double start, double length)
{
    return n == 0 ? start : start + length * ((double)i + 0.5) / (double)n;
}

void keng_chart_ring_slice(uint64_t value, uint64_t before, uint64_t total, double r, double *dash,
                           double *offset)
{
    double circumference = 2.0 * M_PI * r;

    *dash = keng_chart_scale(value, total, circumference);
    *offset = keng_chart_scale(before, total, circumference);
}

char *keng_chart_format_count(uint64_t n, char *buf, size_t size)
{
    char digits[24], out[32];
    int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n), o = 0;

    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = '.';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    snprintf(buf, size, "%.*s", (int)size - 1, out);
    return buf;
}

char *keng_chart_format_percent(uint64_t part, uint64_t total, char *buf, size_t size)
{
    if (total == 0) {
        snprintf(buf, size, "0%%");
        return buf;
    }
    /* tenths of a percent, rounded half up; always one decimal, so that a column of
     * percentages lines up ("9,0%" under "12,5%") */
    unsigned long long tenths = (unsigned long long)((part * 2000 + total) / (2 * total));
    char out[48];
    snprintf(out, sizeof(out), "%llu,%llu%%", tenths / 10, tenths % 10);
    snprintf(buf, size, "%.*s", (int)size - 1, out);
    return buf;
}

void keng_chart_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static void svg_open(FILE *f, const char *id, const char *title, double height)
{
    fprintf(f,
            "<svg class=chart data-chart=\"%s\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
            "height=\"%.0f\" role=img xmlns=\"http://www.w3.org/2000/svg\"><title>",
            id, WIDTH, height, WIDTH, height);
    keng_chart_escape(f, title);
    fputs("</title>\n", f);
}

static void mark_attrs(FILE *f, const keng_chart_item_t *item)
{
    fputs(" class=mark data-key=\"", f);
    keng_chart_escape(f, item->key);
    fprintf(f, "\" data-value=\"%llu\"", (unsigned long long)item->value);
}

void keng_chart_line(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                     size_t n)
{
    const double left = 56, right = 16, top_margin = 24, bottom = 40, height = 250;
    const double plot_w = WIDTH - left - right, plot_h = height - top_margin - bottom;
    uint64_t max = 0, step, top;
    char num[32];

    for (size_t i = 0; i < n; i++)
        max = items[i].value > max ? items[i].value : max;
    keng_chart_axis(max, &step, &top);
    svg_open(f, id, title, height);
    for (uint64_t v = 0; v <= top; v += step) {
        double y = top_margin + plot_h - keng_chart_scale(v, top, plot_h);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=end fill=\"#555\">%s"
                "</text>\n",
                left, y, left + plot_w, y, v == 0 ? "#888" : "#ddd", left - 6, y + 4,
                keng_chart_format_count(v, num, sizeof(num)));
    }
    fputs("<polyline fill=none stroke=\"#1f5fa8\" stroke-width=\"2\" points=\"", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", keng_chart_band_center(i, n, left, plot_w),
                top_margin + plot_h - keng_chart_scale(items[i].value, top, plot_h));
    fputs("\"/>\n", f);
    for (size_t i = 0; i < n; i++) {
        double x = keng_chart_band_center(i, n, left, plot_w);
        double y = top_margin + plot_h - keng_chart_scale(items[i].value, top, plot_h);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f5fa8\"", x, y);
        mark_attrs(f, &items[i]);
        fprintf(f,
                "/><text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=middle>%s</text>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=middle fill=\"#333\">",
                x, y - 8, keng_chart_format_count(items[i].value, num, sizeof(num)), x,
                top_margin + plot_h + 18);
        keng_chart_escape(f, items[i].label);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

void keng_chart_bars(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                     size_t n)
{
    const double label_w = 200, value_w = 64, row = 20, bar = 14, pad = 6;
    const double bar_w = WIDTH - label_w - value_w;
    uint64_t max = 0;
    char num[32];

    for (size_t i = 0; i < n; i++)
        max = items[i].value > max ? items[i].value : max;
    svg_open(f, id, title, (double)n * row + 2 * pad);
    for (size_t i = 0; i < n; i++) {
        double y = pad + (double)i * row;
        double w = keng_chart_scale(items[i].value, max, bar_w);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=end>", label_w - 8,
                y + bar - 2);
        keng_chart_escape(f, items[i].label);
        fprintf(f, "</text><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"",
                label_w, y, w, bar, palette[0]);
        mark_attrs(f, &items[i]);
        fprintf(f, "/><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n", label_w + w + 6,
                y + bar - 2, keng_chart_format_count(items[i].value, num, sizeof(num)));
    }
    fputs("</svg>\n", f);
}

void keng_chart_shares(FILE *f, const char *id, const char *title, const keng_chart_item_t *items,
                       size_t n)
{
    const double cx = 110, cy = 110, r = 70, ring = 36, legend_x = 250, row = 20;
    double height = (double)n * row + 24;
    uint64_t total = 0, before = 0;
    char num[32], pct[16];

    for (size_t i = 0; i < n; i++)
        total += items[i].value;
    if (height < 220)
        height = 220;
    svg_open(f, id, title, height);
    fprintf(f,
            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=none stroke=\"#eee\" "
            "stroke-width=\"%.1f\"/>\n",
            cx, cy, r, ring);
    for (size_t i = 0; i < n; i++) {
        double dash, offset, y = 12 + (double)i * row;
        const char *colour = palette[i % 12];
        keng_chart_ring_slice(items[i].value, before, total, r, &dash, &offset);
        before += items[i].value;
        /* A dashed stroke starts at 3 o'clock; the rotation puts the first slice at 12. */
        fprintf(f,
                "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=none stroke=\"%s\" "
                "stroke-width=\"%.1f\" stroke-dasharray=\"%.3f %.3f\" stroke-dashoffset=\"%.3f\" "
                "transform=\"rotate(-90 %.1f %.1f)\"",
                cx, cy, r, colour, ring, dash, 2.0 * M_PI * r, -offset, cx, cy);
        mark_attrs(f, &items[i]);
        fprintf(f,
                "/><rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">",
                legend_x, y, colour, legend_x + 18, y + 11);
        keng_chart_escape(f, items[i].label);
        fprintf(f,
                "</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=end>%s</text>"
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=end fill=\"#555\">%s"
                "</text>\n",
                WIDTH - 70, y + 11, keng_chart_format_count(items[i].value, num, sizeof(num)),
                WIDTH - 4, y + 11,
                keng_chart_format_percent(items[i].value, total, pct, sizeof(pct)));
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"18\" font-weight=bold "
            "text-anchor=middle>%s</text>"
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=middle fill=\"#555\">"
            "tổng số</text>\n</svg>\n",
            cx, cy + 4, keng_chart_format_count(total, num, sizeof(num)), cx, cy + 20);
}
