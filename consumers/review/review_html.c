/* review.html: the annual review as a province office prints and sends it on; it never shows a
 * number that review.json does not hold. */
#include "review_html.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chart.h"
#include "counts.h"
#include "event.h"
#include "review.h"
#include "timeutil.h"

/* The schemas' symbols in the words the province's summaries use. */
static const char *const category_vi[KENG_CAT_COUNT] = {"Trộm cắp tài sản",
                                                        "Cố ý gây thương tích",
                                                        "Gây rối trật tự công cộng",
                                                        "Ma túy",
                                                        "Cờ bạc",
                                                        "Bạo lực gia đình",
                                                        "Trật tự an toàn giao thông",
                                                        "Mua bán người",
                                                        "Xuất nhập cảnh trái phép",
                                                        "Lừa đảo",
                                                        "Hủy hoại tài sản",
                                                        "Khác"};
static const char *const resolution_vi[KENG_RES_COUNT] = {"Đang xử lý", "Giải quyết tại chỗ",
                                                          "Chuyển Công an xã"};
static const char *const outcome_vi[KENG_OUTCOME_COUNT] = {"Hòa giải thành", "Hòa giải không thành",
                                                           "Chuyển cơ quan có thẩm quyền"};

char *keng_review_date_vi(int64_t ms, char *buf, size_t size)
{
    /* Periods start in 1970 or later (keng_review_parse_date), so the division floors. */
    time_t secs = (time_t)((ms + KENG_LOCAL_OFFSET_MS) / 1000);
    struct tm tm;

    char out[48];

    gmtime_r(&secs, &tm);
    snprintf(out, sizeof(out), "%02d/%02d/%04d", tm.tm_mday, tm.tm_mon + 1, tm.tm_year + 1900);
    snprintf(buf, size, "%.*s", (int)size - 1, out);
    return buf;
}

char *keng_review_period_vi(int64_t from_ms, int64_t to_ms, char *buf, size_t size)
{
    char from[16], last[16];
    int64_t year_from, year_to;
    int year;

    /* The year of the period's first local day, and whether the period is exactly it. */
    keng_review_date_vi(from_ms, from, sizeof(from));
    year = atoi(from + 6);
    keng_review_year_bounds(year, &year_from, &year_to);
    if (year_from == from_ms && year_to == to_ms) {
        snprintf(buf, size, "năm %d", year);
        return buf;
    }
    /* to is exclusive: the report names the last day that is in the period */
    keng_review_date_vi(to_ms - 1, last, sizeof(last));
    snprintf(buf, size, "từ %s đến %s", from, last);
    return buf;
}

/* ---- reading the review document ---- */

static uint64_t get_count(const json_t *scope, const char *kind, const char *group, const char *key)
{
    const json_t *o = json_object_get(scope, kind);

    if (group)
        o = json_object_get(o, group);
    return (uint64_t)json_integer_value(json_object_get(o, key));
}

static uint64_t incidents(const json_t *s)
{
    return get_count(s, "incidents", NULL, "total");
}

static uint64_t resolved(const json_t *s, keng_resolution_t r)
{
    return get_count(s, "incidents", "by_resolution", keng_resolution_names[r]);
}

static uint64_t mediations(const json_t *s)
{
    return get_count(s, "mediations", NULL, "total");
}

static uint64_t reconciled(const json_t *s)
{
    return get_count(s, "mediations", "by_outcome", keng_outcome_names[KENG_OUTCOME_RECONCILED]);
}

static uint64_t field(const json_t *s, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(s, key));
}

static const char *text(const json_t *s, const char *key)
{
    const char *v = json_string_value(json_object_get(s, key));
    return v ? v : "";
}

/* ---- writing ---- */

static void count(FILE *f, uint64_t n)
{
    char buf[32];
    fputs(keng_chart_format_count(n, buf, sizeof(buf)), f);
}

/* A number the tests read back: data-key names the review.json figure it shows. */
static void figure(FILE *f, const char *key, uint64_t n)
{
    fprintf(f, "<span class=fig data-key=\"%s\">", key);
    count(f, n);
    fputs("</span>", f);
}

static const char style[] =
    "<style>\n"
    ":root{--ink:#1d2330;--muted:#5b6372;--line:#c9ced8;--head:#eef1f6;--accent:#1f5fa8}\n"
    "body{font-family:'Noto Sans','DejaVu Sans',Arial,sans-serif;color:var(--ink);"
    "max-width:980px;margin:2em auto;padding:0 1.5em;line-height:1.45}\n"
    "header{border-bottom:3px solid var(--accent);margin-bottom:1.2em}\n"
    ".org{text-transform:uppercase;font-size:.85em;letter-spacing:.04em;color:var(--muted);"
    "margin:0}\n"
    "h1{font-size:1.7em;margin:.2em 0}h2{font-size:1.3em;margin:1.4em 0 .5em;"
    "color:var(--accent)}h3{font-size:1.05em;margin:1.1em 0 .4em}\n"
    ".period{margin:.2em 0 .8em;color:var(--muted)}\n"
    ".headline{display:grid;grid-template-columns:1fr 1fr;gap:.8em;margin:1em 0}\n"
    ".hl{border:1px solid var(--line);border-left:5px solid var(--accent);padding:.6em .9em;"
    "break-inside:avoid}\n"
    ".hl .big{font-size:1.9em;font-weight:bold;display:block;line-height:1.2}\n"
    ".hl .of{font-size:.6em;font-weight:normal;color:var(--muted)}\n"
    ".hl p{margin:.2em 0 0}.hl .note{color:var(--muted);font-size:.9em}\n"
    "table{border-collapse:collapse;margin:.5em 0 1em;width:100%;font-size:.92em}\n"
    "td,th{border:1px solid var(--line);padding:.25em .5em;vertical-align:top}\n"
    "th{background:var(--head);text-align:left;font-weight:600;vertical-align:bottom}"
    "td.n{text-align:right;"
    "white-space:nowrap}td.name{white-space:nowrap}th.n{text-align:right;font-size:.9em}\n"
    "tr.total td{font-weight:bold;background:#f7f8fa}\n"
    ".chart-box{break-inside:avoid;margin:.4em 0 1.2em}\n"
    "svg.chart{width:100%;max-width:720px;height:auto;display:block}\n"
    ".charts h3{margin-bottom:.2em}\n"
    ".summary{margin:.3em 0 .6em}\n"
    ".silent{margin:.25em 0;font-size:.9em}.silent b{font-weight:600}\n"
    ".none{color:var(--muted);font-style:italic}\n"
    ".predecessors tr.head th{background:none;border-left:0;border-right:0;padding-top:.7em}\n"
    ".predecessors tr.pred td.name{padding-left:1.5em}\n"
    ".predecessors span.split{color:var(--muted)}\n"
    ".predecessors tr.since td{font-style:italic}\n"
    ".quality{font-size:.9em;color:var(--muted)}\n"
    "footer{margin-top:2em;font-size:.85em;color:var(--muted)}\n"
    "@page{size:A4;margin:14mm 12mm 16mm}\n"
    "@media print{body{max-width:none;margin:0;padding:0;font-size:10pt}"
    "h2{break-after:avoid}h3{break-after:avoid}"
    "section.district{break-before:page}svg.chart{max-width:none}"
    "thead{display:table-header-group}tr{break-inside:avoid}"
    "tbody.commune{break-inside:avoid}"
    ".headline{gap:.5em}}\n"
    "</style>\n";

static void table_head(FILE *f, const char *first, const char *second, bool with_boards)
{
    fputs("<thead><tr>", f);
    if (first)
        fprintf(f, "<th>%s</th>", first);
    fprintf(f, "<th>%s</th>", second);
    if (with_boards)
        fputs("<th class=n>Ban có báo cáo</th>", f);
    fputs("<th class=n>Vụ việc phát hiện</th>"
          "<th class=n>Giải quyết tại chỗ</th><th class=n>Chuyển Công an xã</th>"
          "<th class=n>Đang xử lý</th><th class=n>Vụ hòa giải</th>"
          "<th class=n>Hòa giải thành</th></tr></thead>\n",
          f);
}

/* Column classes name the review.json figure each cell shows. */
static void table_cells(FILE *f, const json_t *s, bool with_boards)
{
    const struct {
        const char *cls;
        uint64_t value;
    } cells[] = {
        {"incidents", incidents(s)},
        {"handled_locally", resolved(s, KENG_RES_HANDLED_LOCALLY)},
        {"transferred_to_police", resolved(s, KENG_RES_TRANSFERRED_TO_POLICE)},
        {"pending", resolved(s, KENG_RES_PENDING)},
        {"mediations", mediations(s)},
        {"reconciled", reconciled(s)},
    };
    if (with_boards) {
        fputs("<td class=\"n boards\">", f);
        count(f, field(s, "boards_reported"));
        fputs("/", f);
        count(f, field(s, "boards_total"));
        fputs("</td>", f);
    }
    for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
        fprintf(f, "<td class=\"n %s\">", cells[i].cls);
        count(f, cells[i].value);
        fputs("</td>", f);
    }
    fputs("</tr>\n", f);
}

static void write_headline(FILE *f, const json_t *headline)
{
    char pct[16];
    uint64_t reported = field(headline, "boards_reported"), total = field(headline, "boards_total");
    uint64_t detected = field(headline, "incidents_detected");
    uint64_t mediated = field(headline, "disputes_mediated");

    fputs("<h2>Kết quả nổi bật</h2>\n<div class=headline>\n", f);
    fputs("<div class=hl><span class=big>", f);
    figure(f, "boards_reported", reported);
    fputs("<span class=of> / ", f);
    figure(f, "boards_total", total);
    fprintf(f,
            "</span></span><p>Ban tự quản về ANTT có báo cáo hoạt động trong kỳ</p>"
            "<p class=note>đạt %s tổng số ban tự quản</p></div>\n",
            keng_chart_format_percent(reported, total, pct, sizeof(pct)));

    fputs("<div class=hl><span class=big>", f);
    figure(f, "incidents_handled_locally", field(headline, "incidents_handled_locally"));
    fputs("</span><p>vụ việc được phát hiện, tiếp nhận và giải quyết ngay tại cơ sở</p>"
          "<p class=note>trên tổng số ",
          f);
    figure(f, "incidents_detected", detected);
    fputs(" vụ việc phát hiện</p></div>\n", f);

    fputs("<div class=hl><span class=big>", f);
    figure(f, "incidents_transferred_to_police",
           field(headline, "incidents_transferred_to_police"));
    fputs("</span><p>vụ việc được lập hồ sơ, chuyển Công an xã giải quyết</p>"
          "<p class=note>",
          f);
    keng_chart_format_percent(field(headline, "incidents_transferred_to_police"), detected, pct,
                              sizeof(pct));
    fprintf(f, "%s số vụ việc phát hiện</p></div>\n", pct);

    fputs("<div class=hl><span class=big>", f);
    figure(f, "disputes_reconciled", field(headline, "disputes_reconciled"));
    fputs("</span><p>vụ mâu thuẫn, tranh chấp được hòa giải thành</p><p class=note>trên ", f);
    figure(f, "disputes_mediated", mediated);
    fprintf(f, " vụ đã hòa giải (%s)</p></div>\n</div>\n",
            keng_chart_format_percent(field(headline, "disputes_reconciled"), mediated, pct,
                                      sizeof(pct)));
}

/* "2025-03" as "03/2025" into buf. */
static const char *month_vi(const char *month, char *buf, size_t size)
{
    if (strlen(month) == 7)
        snprintf(buf, size, "%.2s/%.4s", month + 5, month);
    else
        snprintf(buf, size, "%s", month);
    return buf;
}

static int by_value_desc(const void *a, const void *b)
{
    const keng_chart_item_t *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* The units right below the province that the charts and tables compare: the districts, or
 * the communes of a registry without a district level (the two-tier province of 2025). */
typedef struct top_units {
    const char *key;   /* "districts" or "communes": the document's array */
    const char *title; /* "Vụ việc phát hiện theo ..." */
    const char *table; /* "Số liệu theo ..." */
} top_units_t;

static top_units_t top_units(const keng_registry_t *reg)
{
    if (keng_registry_has_districts(reg))
        return (top_units_t){"districts", "Vụ việc phát hiện theo huyện, thị xã, thành phố",
                             "Số liệu theo huyện, thị xã, thành phố"};
    return (top_units_t){"communes", "Vụ việc phát hiện theo xã, phường",
                         "Số liệu theo xã, phường"};
}

/* Returns 0, or -1 when out of memory. */
static int write_charts(FILE *f, const json_t *doc, top_units_t top)
{
    const json_t *province = json_object_get(doc, "province");
    const json_t *months = json_object_get(doc, "months");
    const json_t *districts = json_object_get(doc, top.key);
    size_t nmonths = json_array_size(months), ndistricts = json_array_size(districts);
    keng_chart_item_t *items = calloc(nmonths + ndistricts + KENG_CAT_COUNT + 1, sizeof(*items));
    char(*labels)[16] = calloc(nmonths + 1, sizeof(*labels));
    int rc = -1;

    if (!items || !labels)
        goto out;
    fputs("<section class=charts>\n<h2>Biểu đồ</h2>\n", f);

    for (size_t i = 0; i < nmonths; i++) {
        const json_t *m = json_array_get(months, i);
        items[i] = (keng_chart_item_t){text(m, "month"),
                                       month_vi(text(m, "month"), labels[i], sizeof(labels[i])),
                                       incidents(m)};
    }
    fputs("<div class=chart-box><h3>Vụ việc phát hiện theo tháng</h3>\n", f);
    keng_chart_line(f, "months", "Vụ việc phát hiện theo tháng", items, nmonths);
    fputs("</div>\n", f);

    for (size_t i = 0; i < ndistricts; i++) {
        const json_t *d = json_array_get(districts, i);
        items[i] = (keng_chart_item_t){text(d, "id"), text(d, "name"), incidents(d)};
    }
    fprintf(f, "<div class=chart-box><h3>%s</h3>\n", top.title);
    keng_chart_bars(f, top.key, top.title, items, ndistricts);
    fputs("</div>\n", f);

    for (int i = 0; i < KENG_CAT_COUNT; i++)
        items[i] = (keng_chart_item_t){
            keng_category_names[i], category_vi[i],
            get_count(province, "incidents", "by_category", keng_category_names[i])};
    qsort(items, KENG_CAT_COUNT, sizeof(*items), by_value_desc);
    fputs("<div class=chart-box><h3>Cơ cấu vụ việc theo loại</h3>\n", f);
    keng_chart_shares(f, "categories", "Cơ cấu vụ việc theo loại", items, KENG_CAT_COUNT);
    fputs("</div>\n", f);

    for (int i = 0; i < KENG_RES_COUNT; i++) {
        /* handled on the spot first, as the province reports it */
        static const keng_resolution_t order[KENG_RES_COUNT] = {
            KENG_RES_HANDLED_LOCALLY, KENG_RES_TRANSFERRED_TO_POLICE, KENG_RES_PENDING};
        items[i] = (keng_chart_item_t){keng_resolution_names[order[i]], resolution_vi[order[i]],
                                       resolved(province, order[i])};
    }
    fputs("<div class=chart-box><h3>Kết quả xử lý vụ việc</h3>\n", f);
    keng_chart_shares(f, "resolutions", "Kết quả xử lý vụ việc", items, KENG_RES_COUNT);
    fputs("</div>\n", f);

    for (int i = 0; i < KENG_OUTCOME_COUNT; i++)
        items[i] = (keng_chart_item_t){
            keng_outcome_names[i], outcome_vi[i],
            get_count(province, "mediations", "by_outcome", keng_outcome_names[i])};
    fputs("<div class=chart-box><h3>Kết quả hòa giải</h3>\n", f);
    keng_chart_shares(f, "outcomes", "Kết quả hòa giải", items, KENG_OUTCOME_COUNT);
    fputs("</div>\n</section>\n", f);
    rc = 0;
out:
    free(items);
    free(labels);
    return rc;
}

/* One line of the table of former boards: a unit (or the province) and what they reported
 * in it. */
static void former_row(FILE *f, const char *cls, const char *level, const char *id,
                       const char *name, const json_t *figures)
{
    fprintf(f, "<tr class=%s data-level=%s data-key=\"", cls, level);
    keng_chart_escape(f, id);
    fputs("\"><td>", f);
    keng_chart_escape(f, id);
    fputs("</td><td class=name>", f);
    keng_chart_escape(f, name);
    fputs("</td>", f);
    table_cells(f, figures, false);
}

/* The events of boards the units drawn lack (review.json's former_boards), when there are
 * any: the units the lineage placed them under, those in no unit, and the province's sum. */
static void write_former_boards(FILE *f, const json_t *doc)
{
    const json_t *province = json_object_get(doc, "province");
    const json_t *all = json_object_get(province, "former_boards"), *o;
    static const char *const levels[] = {"districts", "communes"};
    size_t i;

    if (!all || incidents(all) + mediations(all) == 0)
        return;
    fputs("<h2>Ban không còn trong danh mục</h2>\n<p class=summary>Số liệu trong kỳ của các ban "
          "có trong một phiên bản danh mục nhưng không có trong danh mục dùng cho báo cáo này. "
          "Số liệu được tính vào đơn vị mà đơn vị cũ của ban đã trở thành, nếu danh mục cho "
          "biết; nếu không, chỉ tính vào toàn tỉnh.</p>\n<table class=former>\n",
          f);
    table_head(f, "Mã", "Đơn vị", false);
    fputs("<tbody>\n", f);
    for (int l = 0; l < 2; l++)
        json_array_foreach(json_object_get(doc, levels[l]), i, o)
        {
            const json_t *former = json_object_get(o, "former_boards");
            if (former && incidents(former) + mediations(former) > 0)
                former_row(f, "unit", l ? "commune" : "district", text(o, "id"), text(o, "name"),
                           former);
        }
    former_row(f, "nowhere", "province", KENG_PROVINCE_ID,
               "Không thuộc đơn vị nào hiện nay (chỉ tính vào toàn tỉnh)",
               json_object_get(province, "former_boards_in_no_unit"));
    former_row(f, "total", "province", KENG_PROVINCE_ID, "Toàn tỉnh", all);
    fputs("</tbody></table>\n", f);
}

static void write_tables(FILE *f, const json_t *doc, top_units_t top)
{
    const json_t *months = json_object_get(doc, "months");
    const json_t *districts = json_object_get(doc, top.key);
    char month[16];

    fputs("<h2>Số liệu theo tháng</h2>\n<table class=months>\n", f);
    table_head(f, NULL, "Tháng", false);
    fputs("<tbody>\n", f);
    for (size_t i = 0; i < json_array_size(months); i++) {
        const json_t *m = json_array_get(months, i);
        fputs("<tr data-key=\"", f);
        keng_chart_escape(f, text(m, "month"));
        fprintf(f, "\"><td>%s</td>", month_vi(text(m, "month"), month, sizeof(month)));
        table_cells(f, m, false);
    }
    fputs("</tbody></table>\n", f);

    fprintf(f, "<h2>%s</h2>\n<table class=%s>\n", top.table, top.key);
    table_head(f, "Mã", "Tên", true);
    fputs("<tbody>\n", f);
    for (size_t i = 0; i < json_array_size(districts); i++) {
        const json_t *d = json_array_get(districts, i);
        fputs("<tr data-key=\"", f);
        keng_chart_escape(f, text(d, "id"));
        fputs("\"><td>", f);
        keng_chart_escape(f, text(d, "id"));
        fputs("</td><td class=name>", f);
        keng_chart_escape(f, text(d, "name"));
        fputs("</td>", f);
        table_cells(f, d, true);
    }
    fputs("<tr class=total data-key=\"" KENG_PROVINCE_ID "\"><td>" KENG_PROVINCE_ID
          "</td><td class=name>Toàn tỉnh</td>",
          f);
    table_cells(f, json_object_get(doc, "province"), true);
    fputs("</tbody></table>\n", f);
    write_former_boards(f, doc);
}

typedef struct ranked {
    uint32_t commune;
    uint64_t incidents, mediations;
} ranked_t;

/* Communes rank by incidents detected, then by mediations, then in registry order. */
static int by_rank(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->incidents != y->incidents)
        return x->incidents > y->incidents ? -1 : 1;
    if (x->mediations != y->mediations)
        return x->mediations > y->mediations ? -1 : 1;
    return x->commune < y->commune ? -1 : x->commune > y->commune;
}

/* The switch the communes' predecessors date from, as "01/07/2025", into day; false when the
 * review lists no predecessors. */
static bool predecessors_switch(const json_t *doc, char *day, size_t size)
{
    const json_t *before = json_object_get(json_object_get(doc, "registry"), "predecessors");
    const char *when = json_string_value(json_object_get(before, "effective"));
    int64_t ms;

    if (!when || keng_time_parse_rfc3339(when, strlen(when), &ms) != 0)
        return false;
    keng_review_date_vi(ms, day, size);
    return true;
}

/* One line of a commune's table of predecessors: label (escaped here), a note, its boards. */
static void predecessor_row(FILE *f, const char *cls, const json_t *line, const char *level,
                            const char *label, const char *id, const char *note, uint64_t boards)
{
    fprintf(f, "<tr class=%s", cls);
    if (level)
        fprintf(f, " data-level=%s", level);
    if (id) {
        fputs(" data-key=\"", f);
        keng_chart_escape(f, id);
        fputs("\"", f);
    }
    fputs("><td class=name>", f);
    keng_chart_escape(f, label);
    if (id && strcmp(id, label) != 0) {
        fputs(" (", f);
        keng_chart_escape(f, id);
        fputs(")", f);
    }
    fprintf(f, "%s</td><td class=\"n boards\">", note);
    count(f, boards);
    fputs("</td>", f);
    table_cells(f, line, false);
}

/* Under each commune of district d (KENG_NO_UNIT: of the province without districts), the
 * former units that became it with their figures from before the switch, then its own since,
 * then its total: the lines add up to the total. */
static void write_predecessors(FILE *f, const json_t *doc, const keng_registry_t *reg, uint32_t d)
{
    const json_t *communes = json_object_get(doc, "communes");
    char day[16], label[64];

    if (!predecessors_switch(doc, day, sizeof(day)))
        return;
    fprintf(f,
            "<h3>Số liệu trước ngày %s của các đơn vị cũ</h3>\n"
            "<p class=summary>Mỗi xã, phường gồm số liệu trước ngày %s của các ban nay thuộc xã, "
            "phường đó, theo đơn vị mà ban thuộc về khi ấy, và số liệu của xã, phường từ ngày "
            "%s.</p>\n<table class=predecessors>\n",
            day, day, day);
    fputs("<thead><tr><th>Xã, phường và đơn vị cũ</th><th class=n>Số ban</th>"
          "<th class=n>Vụ việc phát hiện</th><th class=n>Giải quyết tại chỗ</th>"
          "<th class=n>Chuyển Công an xã</th><th class=n>Đang xử lý</th>"
          "<th class=n>Vụ hòa giải</th><th class=n>Hòa giải thành</th></tr></thead>\n",
          f);
    for (uint32_t c = 0; c < keng_registry_commune_count(reg); c++) {
        if (keng_registry_commune(reg, c)->district != d)
            continue;
        const json_t *o = json_array_get(communes, c), *line;
        size_t i;
        fputs("<tbody class=commune data-key=\"", f);
        keng_chart_escape(f, text(o, "id"));
        fputs("\"><tr class=head><th colspan=8>", f);
        keng_chart_escape(f, text(o, "name"));
        fputs("</th></tr>\n", f);
        json_array_foreach(json_object_get(o, "predecessors"), i, line)
        {
            const char *level = text(line, "level");
            bool split = json_is_true(json_object_get(line, "split"));
            if (strcmp(level, "new_boards") == 0) {
                snprintf(label, sizeof(label), "Ban mới, chưa có trước ngày %s", day);
                predecessor_row(f, "pred", line, level, label, NULL, "", field(line, "boards"));
                continue;
            }
            if (strcmp(level, "former_boards") == 0) {
                predecessor_row(f, "pred", line, level, "Ban cũ, nay không còn trong danh mục",
                                NULL, "", field(line, "boards"));
                continue;
            }
            predecessor_row(f, split ? "\"pred split\"" : "pred", line, level, text(line, "name"),
                            text(line, "id"),
                            split ? " — <span class=split>chia tách: chỉ các ban nay thuộc xã, "
                                    "phường này</span>"
                            : strcmp(level, "district") == 0 ? " — cả huyện"
                                                             : "",
                            field(line, "boards"));
        }
        snprintf(label, sizeof(label), "Từ ngày %s", day);
        predecessor_row(f, "since", json_object_get(o, "since_switch"), NULL, label, NULL, "",
                        field(o, "boards_total"));
        predecessor_row(f, "total", o, NULL, "Cả kỳ", NULL, "", field(o, "boards_total"));
        fputs("</tbody>\n", f);
    }
    fputs("</table>\n", f);
}

/* The section of district d, or with d KENG_NO_UNIT of the whole province of a registry
 * without districts (whose communes and boards all have KENG_NO_UNIT as their district). */
static void write_district(FILE *f, const json_t *doc, const keng_registry_t *reg, uint32_t d,
                           const bool *active, ranked_t *scratch)
{
    const keng_district_t *dist = keng_registry_district(reg, d);
    const json_t *district = dist ? json_array_get(json_object_get(doc, "districts"), d)
                                  : json_object_get(doc, "province");
    const json_t *communes = json_object_get(doc, "communes");
    size_t n = 0, silent = 0;
    char pct[16];

    fputs("<section class=district data-id=\"", f);
    keng_chart_escape(f, dist ? dist->id : KENG_PROVINCE_ID);
    fputs("\">\n<h2>", f);
    keng_chart_escape(f, dist ? dist->name : KENG_PROVINCE_NAME);
    fputs("</h2>\n<p class=summary>", f);
    count(f, field(district, "boards_reported"));
    fputs("/", f);
    count(f, field(district, "boards_total"));
    fprintf(f, " ban tự quản có báo cáo (%s); ",
            keng_chart_format_percent(field(district, "boards_reported"),
                                      field(district, "boards_total"), pct, sizeof(pct)));
    count(f, incidents(district));
    fputs(" vụ việc phát hiện, trong đó ", f);
    count(f, resolved(district, KENG_RES_HANDLED_LOCALLY));
    fputs(" giải quyết tại chỗ và ", f);
    count(f, resolved(district, KENG_RES_TRANSFERRED_TO_POLICE));
    fputs(" chuyển Công an xã; ", f);
    count(f, reconciled(district));
    fputs("/", f);
    count(f, mediations(district));
    fputs(" vụ hòa giải thành.</p>\n", f);

    for (uint32_t c = 0; c < keng_registry_commune_count(reg); c++) {
        if (keng_registry_commune(reg, c)->district != d)
            continue;
        const json_t *o = json_array_get(communes, c);
        scratch[n++] = (ranked_t){c, incidents(o), mediations(o)};
    }
    qsort(scratch, n, sizeof(*scratch), by_rank);
    fputs("<h3>Xếp hạng các xã, phường, thị trấn</h3>\n<table class=communes>\n", f);
    table_head(f, "Hạng", "Xã, phường, thị trấn", true);
    fputs("<tbody>\n", f);
    for (size_t i = 0; i < n; i++) {
        const json_t *o = json_array_get(communes, scratch[i].commune);
        fputs("<tr data-key=\"", f);
        keng_chart_escape(f, text(o, "id"));
        fprintf(f, "\"><td class=n>%zu</td><td class=name>", i + 1);
        keng_chart_escape(f, text(o, "name"));
        fputs("</td>", f);
        table_cells(f, o, true);
    }
    fputs("</tbody></table>\n", f);
    write_predecessors(f, doc, reg, d);

    for (uint32_t b = 0; b < keng_registry_board_count(reg); b++)
        silent += keng_registry_board(reg, b)->district == d && !active[b];
    fprintf(f,
            "<h3>Ban tự quản không có báo cáo trong kỳ (<span class=silent-count>%zu</span>)"
            "</h3>\n",
            silent);
    if (silent == 0)
        fprintf(f, "<p class=none>Tất cả ban tự quản của %s đều có báo cáo trong kỳ.</p>\n",
                dist ? "huyện" : "tỉnh");
    /* One line per commune in registry order, so a reader can find a hamlet by its commune. */
    for (uint32_t c = 0; c < keng_registry_commune_count(reg) && silent > 0; c++) {
        const keng_commune_t *commune = keng_registry_commune(reg, c);
        size_t listed = 0, boards = 0;
        if (commune->district != d)
            continue;
        for (uint32_t b = 0; b < keng_registry_board_count(reg); b++) {
            const keng_board_t *board = keng_registry_board(reg, b);
            if (board->commune != c)
                continue;
            boards++;
            if (active[b])
                continue;
            if (listed++ == 0) {
                fputs("<p class=silent data-commune=\"", f);
                keng_chart_escape(f, commune->id);
                fputs("\"><b>", f);
                keng_chart_escape(f, commune->name);
                fputs("</b>: ", f);
            } else {
                fputs(", ", f);
            }
            fputs("<span class=silent-board data-id=\"", f);
            keng_chart_escape(f, board->id);
            fputs("\">", f);
            keng_chart_escape(f, board->name);
            fputs("</span>", f);
        }
        if (listed > 0)
            fprintf(f, " <span class=of>(%zu/%zu ban)</span></p>\n", listed, boards);
    }
    fputs("</section>\n", f);
}

/* Whether each registry board appears in the document's list of boards with events. */
static int active_boards(const json_t *doc, const keng_registry_t *reg, bool *active)
{
    const json_t *boards = json_object_get(doc, "boards");

    for (size_t i = 0; i < json_array_size(boards); i++) {
        const char *id = text(json_array_get(boards, i), "id");
        int32_t b = keng_registry_find_board(reg, id, strlen(id));
        if (b < 0)
            return -1;
        active[b] = true;
    }
    return 0;
}

/* The registry versions that took effect within the period (the reform of 1 July 2025 in a
 * review of 2025), and which units the review draws: stated under the title, so that nobody
 * reads a commune's figures without knowing which commune it was then. */
static void write_registry_changes(FILE *f, const json_t *registry)
{
    const json_t *changes = json_object_get(registry, "changes");
    const char *units = json_string_value(json_object_get(registry, "units"));
    size_t i;
    const json_t *c;

    if (json_array_size(changes) == 0)
        return;
    fputs("<p class=reform>Danh mục đơn vị thay đổi trong kỳ:", f);
    json_array_foreach(changes, i, c)
    {
        const char *when = json_string_value(json_object_get(c, "effective"));
        int64_t ms = 0;
        char day[16] = "";
        if (when && keng_time_parse_rfc3339(when, strlen(when), &ms) == 0)
            keng_review_date_vi(ms, day, sizeof(day));
        fprintf(f, "%s từ ngày <time data-key=reform>%s</time> có %lld xã, phường", i ? ";" : "",
                day, (long long)json_integer_value(json_object_get(c, "communes")));
        long long districts = json_integer_value(json_object_get(c, "districts"));
        if (districts > 0)
            fprintf(f, " thuộc %lld huyện, thị xã, thành phố", districts);
        else
            fputs(", không còn cấp huyện", f);
    }
    fputs(". Báo cáo này tính theo ", f);
    if (units && strncmp(units, "as-of:", 6) == 0) {
        fputs("các đơn vị tại thời điểm ", f);
        keng_chart_escape(f, units + 6);
    } else {
        fputs("các đơn vị hiện hành; số liệu của mỗi đơn vị gồm cả số liệu trước ngày thay đổi "
              "của các ban nay thuộc đơn vị đó",
              f);
    }
    fputs(".</p>\n", f);
    const json_t *before = json_object_get(registry, "predecessors");
    const char *when = json_string_value(json_object_get(before, "effective"));
    int64_t ms = 0;
    char day[16];
    if (!when || keng_time_parse_rfc3339(when, strlen(when), &ms) != 0)
        return;
    fprintf(f,
            "<p class=reform>Mỗi xã, phường kèm số liệu trước ngày %s của các đơn vị cũ hợp "
            "thành (<span data-key=predecessors-previous>%lld xã, phường",
            keng_review_date_vi(ms, day, sizeof(day)),
            (long long)json_integer_value(json_object_get(before, "communes")));
    if (json_integer_value(json_object_get(before, "districts")) > 0)
        fprintf(f, " thuộc %lld huyện, thị xã, thành phố",
                (long long)json_integer_value(json_object_get(before, "districts")));
    fputs("</span>).</p>\n", f);
}

int keng_review_html_write(const json_t *doc, const keng_registry_t *reg, int64_t from_ms,
                           int64_t to_ms, const char *path)
{
    const json_t *quality = json_object_get(doc, "data_quality");
    bool *active = calloc(keng_registry_board_count(reg) + 1, sizeof(*active));
    ranked_t *scratch = calloc(keng_registry_commune_count(reg) + 1, sizeof(*scratch));
    char period[64], from[16], last[16];
    FILE *f = NULL;
    int rc = -1;

    if (!active || !scratch)
        goto out;
    if (json_array_size(json_object_get(doc, "districts")) != keng_registry_district_count(reg) ||
        json_array_size(json_object_get(doc, "communes")) != keng_registry_commune_count(reg) ||
        active_boards(doc, reg, active) != 0) {
        errno = EINVAL;
        goto out;
    }
    f = fopen(path, "w");
    if (!f)
        goto out;
    keng_review_period_vi(from_ms, to_ms, period, sizeof(period));
    fputs("<!doctype html>\n<html lang=vi><head><meta charset=utf-8>\n"
          "<meta name=viewport content=\"width=device-width,initial-scale=1\">\n<title>",
          f);
    fprintf(f, "Báo cáo tổng kết %s — keng</title>\n", period);
    fputs(style, f);
    fputs("</head><body>\n<header>\n<p class=org>Ban Chỉ đạo phong trào Toàn dân bảo vệ an ninh "
          "Tổ quốc tỉnh Nghệ An</p>\n",
          f);
    fprintf(f, "<h1>Báo cáo tổng kết %s</h1>\n", period);
    fprintf(f,
            "<p class=period>Hoạt động của các Ban tự quản về an ninh, trật tự thôn, bản, khối "
            "phố từ ngày <time data-key=from>%s</time> đến ngày <time data-key=to>%s</time> "
            "(giờ Việt Nam).</p>\n</header>\n",
            keng_review_date_vi(from_ms, from, sizeof(from)),
            keng_review_date_vi(to_ms - 1, last, sizeof(last)));

    write_registry_changes(f, json_object_get(doc, "registry"));
    write_headline(f, json_object_get(doc, "headline"));
    if (write_charts(f, doc, top_units(reg)) != 0) {
        errno = ENOMEM;
        goto out;
    }
    write_tables(f, doc, top_units(reg));
    for (uint32_t d = 0; d < keng_registry_district_count(reg); d++)
        write_district(f, doc, reg, d, active, scratch);
    if (!keng_registry_has_districts(reg))
        write_district(f, doc, reg, KENG_NO_UNIT, active, scratch);

    fputs("<footer>\n<h2>Chất lượng dữ liệu</h2>\n<p class=quality>", f);
    fputs("Đã tính ", f);
    figure(f, "counted", field(quality, "counted"));
    fputs(" sự kiện; bỏ qua ", f);
    figure(f, "duplicates", field(quality, "duplicates"));
    fputs(" bản gửi trùng, ", f);
    figure(f, "out_of_period", field(quality, "out_of_period"));
    fputs(" ngoài kỳ báo cáo, ", f);
    figure(f, "unknown_board", field(quality, "unknown_board"));
    fputs(" của ban không có trong danh mục, ", f);
    if (json_object_get(quality, "former_board")) {
        fputs("(đã tính ", f);
        figure(f, "former_board", field(quality, "former_board"));
        fputs(" của ban cũ, không còn trong danh mục này), ", f);
    }
    figure(f, "undecodable", field(quality, "undecodable"));
    fputs(" không giải mã được, ", f);
    figure(f, "invalid_time", field(quality, "invalid_time"));
    fputs(" có thời điểm không hợp lệ. Một ban tự quản <i>không có báo cáo</i> là ban không có vụ "
          "việc hay vụ hòa giải nào được tính trong kỳ. Số liệu từng ban có trong review.csv "
          "và review.json.</p>\n",
          f);
    /* The registry the figures follow, so that a review made on the wrong one shows it. */
    const char *registry_path = keng_registry_path(reg);
    fputs("<p class=registry>Danh mục ban tự quản: ", f);
    keng_chart_escape(f, registry_path ? registry_path
                                       : "danh mục có sẵn của keng (số liệu năm 2024)");
    fprintf(f, " — %zu ban tự quản, %zu xã, phường", keng_registry_board_count(reg),
            keng_registry_commune_count(reg));
    if (keng_registry_has_districts(reg))
        fprintf(f, ", %zu huyện, thị xã, thành phố", keng_registry_district_count(reg));
    fputs(".</p>\n</footer>\n</body></html>\n", f);
    rc = ferror(f) ? -1 : 0;
out:
    if (f && fclose(f) != 0)
        rc = -1;
    free(active);
    free(scratch);
    return rc;
}
