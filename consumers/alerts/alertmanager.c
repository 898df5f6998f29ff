/* Sends the alert state to Alertmanager's API v2: one endpoint per URL, each with its own
 * request in progress, backoff and counters, so that one Alertmanager that is down never
 * holds back the other. */
#include "alertmanager.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "counts.h"
#include "log.h"
#include "timeutil.h"

#define URLS_MAX           8
#define URL_MAX            1024
#define SOON_MS            100 /* transitions of one batch of events go in one send */
#define BACKOFF_FIRST_MS   500
#define BACKOFF_MAX_MS     30000
#define RESOLVED_RESEND_MS (15 * 60 * 1000LL)
#define ENDS_AFTER_SENDS   4 /* a firing alert's endsAt: this many resend intervals ahead */

const char *const keng_alertmanager_config_keys[] = {"alertmanager.url",
                                                     "alertmanager.resend.interval.ms",
                                                     "alertmanager.timeout.ms",
                                                     "dashboard.url",
                                                     "alertmanager.basic_auth.username",
                                                     "alertmanager.basic_auth.password_file",
                                                     NULL};

typedef struct endpoint {
    keng_alertmanager_t *am;
    char url[URL_MAX + 32]; /* .../api/v2/alerts */
    char shown[URL_MAX];    /* scheme://host:port, for logs and labels (no credentials) */
    uv_timer_t backoff;
    bool busy, again; /* a POST in progress; the state changed since it started */
    int attempts;     /* failed in a row */
    bool up;
    uint64_t sends, failures;
    int64_t last_success_ms;
} endpoint_t;

struct keng_alertmanager {
    uv_loop_t *loop;
    keng_http_client_t *client;
    const keng_alerts_t *alerts;
    const keng_registry_t *reg;
    keng_alertmanager_options_t opt;
    char dashboard[URL_MAX]; /* opt.dashboard_url without a trailing '/' */
    keng_http_auth_t auth;   /* borrows opt's username and password */
    uv_timer_t soon, resend;
    endpoint_t endpoints[URLS_MAX];
    size_t nendpoints;
    int handles_open;
    bool closing;
};

/* ---- the payload ---- */

static void iso(int64_t ms, char *buf, size_t size)
{
    keng_time_format_utc(ms, buf, size);
}

void keng_alertmanager_district_of(const keng_registry_t *reg, keng_alert_level_t level,
                                   const char *scope_id, char *out, size_t size)
{
    size_t len = strlen(scope_id);
    int32_t i = -1;
    uint32_t district = KENG_NO_UNIT; /* also what a registry without districts gives */

    switch (level) {
    case KENG_ALERT_LEVEL_BOARD:
        if ((i = keng_registry_find_board(reg, scope_id, len)) >= 0)
            district = keng_registry_board(reg, (uint32_t)i)->district;
        break;
    case KENG_ALERT_LEVEL_COMMUNE:
        if ((i = keng_registry_find_commune(reg, scope_id, len)) >= 0)
            district = keng_registry_commune(reg, (uint32_t)i)->district;
        break;
    case KENG_ALERT_LEVEL_DISTRICT:
        if ((i = keng_registry_find_district(reg, scope_id, len)) >= 0)
            district = (uint32_t)i;
        break;
    default:
        break;
    }
    const keng_district_t *d = keng_registry_district(reg, district);
    snprintf(out, size, "%s", d ? d->id : "");
}

/* The id of the commune that holds a board or commune scope, or "" (a district, the
 * province): the label by which the two-tier province, which has no districts, routes. */
static const char *commune_of(const keng_registry_t *reg, keng_alert_level_t level,
                              const char *scope_id)
{
    int32_t i;

    if (level == KENG_ALERT_LEVEL_COMMUNE)
        return keng_registry_find_commune(reg, scope_id, strlen(scope_id)) >= 0 ? scope_id : "";
    if (level != KENG_ALERT_LEVEL_BOARD)
        return "";
    i = keng_registry_find_board(reg, scope_id, strlen(scope_id));
    return i >= 0 ? keng_registry_commune(reg, keng_registry_board(reg, (uint32_t)i)->commune)->id
                  : "";
}

static const char *scope_name(const keng_registry_t *reg, keng_alert_level_t level, const char *id)
{
    int32_t i;

    switch (level) {
    case KENG_ALERT_LEVEL_BOARD:
        i = keng_registry_find_board(reg, id, strlen(id));
        return i >= 0 ? keng_registry_board(reg, (uint32_t)i)->name : id;
    case KENG_ALERT_LEVEL_COMMUNE:
        i = keng_registry_find_commune(reg, id, strlen(id));
        return i >= 0 ? keng_registry_commune(reg, (uint32_t)i)->name : id;
    case KENG_ALERT_LEVEL_DISTRICT:
        i = keng_registry_find_district(reg, id, strlen(id));
        return i >= 0 ? keng_registry_district(reg, (uint32_t)i)->name : id;
    default:
        return KENG_PROVINCE_NAME;
    }
}

typedef struct batch {
    keng_alertmanager_t *am;
    json_t *array;
    int64_t now;
    char resolved[KENG_ALERTS_RESOLVED_MAX][17]; /* fingerprints sent resolved */
    size_t nresolved;
} batch_t;

/* Copies s into out percent-encoded but for RFC 3986's unreserved characters, so that an id
 * with '&', '#', '%' or '?' in it stays one parameter. Cut to fit. */
static void url_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (; *s && n + 4 <= size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

/* Appends the strings of parts (NULL-terminated) to out, cut to fit size. */
static void join(char *out, size_t size, const char *const *parts)
{
    size_t n = 0;

    for (; *parts; parts++) {
        size_t len = strlen(*parts);
        if (len > size - 1 - n)
            len = size - 1 - n;
        memcpy(out + n, *parts, len);
        n += len;
    }
    out[n] = '\0';
}

void keng_alertmanager_links(const char *dashboard, const char *window, const char *level,
                             const char *scope_id, char *link, size_t link_size, char *gen,
                             size_t gen_size)
{
    char id[3 * 64 + 1], win[3 * 16 + 1];

    url_encode(scope_id, id, sizeof(id));
    url_encode(window, win, sizeof(win));
    join(link, link_size,
         (const char *const[]){dashboard, "/#w=", win, "&l=", level, "&s=", id, NULL});
    join(gen, gen_size,
         (const char *const[]){dashboard, "/v1/counts?level=", level, "&id=", id, NULL});
}

static json_t *alert_json(const batch_t *b, const keng_alert_t *t, int64_t ends_at)
{
    const keng_alertmanager_t *am = b->am;
    char level[16], district[KENG_UNIT_ID_MAX + 1], starts[32], ends[32], link[URL_MAX + 128],
        gen[URL_MAX + 128];
    const char *commune = commune_of(am->reg, t->level, t->scope_id);
    const char *severity = keng_alerts_rule_severity(am->alerts, t->rule);
    size_t i;

    for (i = 0; keng_alert_level_names[t->level][i] && i + 1 < sizeof(level); i++)
        level[i] = (char)tolower((unsigned char)keng_alert_level_names[t->level][i]);
    level[i] = '\0';
    keng_alertmanager_district_of(am->reg, t->level, t->scope_id, district, sizeof(district));
    iso(t->starts_at, starts, sizeof(starts));
    iso(ends_at, ends, sizeof(ends));
    keng_alertmanager_links(am->dashboard, t->window, level, t->scope_id, link, sizeof(link), gen,
                            sizeof(gen));
    /* The labels name the alert: the same rule and scope is the same alert to Alertmanager,
     * whatever its count. The province has no district_id and no commune_id, a district no
     * commune_id, and nothing has a district_id in a registry without districts. */
    json_t *j =
        json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s},s:{s:s,s:s},s:s,s:s,s:s}", "labels",
                  "alertname", t->rule, "level", level, "scope_id", t->scope_id, "scope_name",
                  scope_name(am->reg, t->level, t->scope_id), "district_id", district, "commune_id",
                  commune, "severity", severity ? severity : "warning", "annotations", "summary",
                  t->summary ? t->summary : "", "dashboard", link, "startsAt", starts, "endsAt",
                  ends, "generatorURL", gen);

    if (j && !district[0])
        json_object_del(json_object_get(j, "labels"), "district_id");
    if (j && !commune[0])
        json_object_del(json_object_get(j, "labels"), "commune_id");
    return j;
}

static void add_firing(const keng_alert_t *t, void *arg)
{
    batch_t *b = arg;
    json_t *j =
        alert_json(b, t, b->now + ENDS_AFTER_SENDS * (int64_t)b->am->opt.resend_interval_ms);

    if (j)
        json_array_append_new(b->array, j);
}

static void is_firing(const keng_alert_t *t, void *arg)
{
    const keng_alert_t *resolved = ((const keng_alert_t **)arg)[0];

    if (strcmp(t->fingerprint, resolved->fingerprint) == 0)
        ((const keng_alert_t **)arg)[1] = t;
}

/* A resolved alert is sent again for a while, in case a send was lost; not when its rule
 * and scope fire again, which Alertmanager would take as the same alert resolving, and only
 * its newest resolution (they come newest first). */
static void add_resolved(const keng_alert_t *t, void *arg)
{
    batch_t *b = arg;
    const keng_alert_t *pair[2] = {t, NULL};
    int64_t ends = t->has_ends_at ? t->ends_at : b->now;

    if (ends < b->now - RESOLVED_RESEND_MS || b->nresolved == KENG_ALERTS_RESOLVED_MAX)
        return;
    for (size_t i = 0; i < b->nresolved; i++)
        if (strcmp(b->resolved[i], t->fingerprint) == 0)
            return;
    keng_alerts_each(b->am->alerts, KENG_ALERT_FIRING, is_firing, pair);
    if (pair[1])
        return;
    snprintf(b->resolved[b->nresolved++], sizeof(b->resolved[0]), "%s", t->fingerprint);
    json_t *j = alert_json(b, t, ends < b->now ? ends : b->now);
    if (j)
        json_array_append_new(b->array, j);
}

static char *payload(keng_alertmanager_t *am)
{
    batch_t b = {.am = am, .array = json_array(), .now = keng_now_ms()};
    char *text;

    if (!b.array)
        return NULL;
    keng_alerts_each(am->alerts, KENG_ALERT_FIRING, add_firing, &b);
    keng_alerts_each(am->alerts, KENG_ALERT_RESOLVED, add_resolved, &b);
    text = json_dumps(b.array, JSON_COMPACT);
    json_decref(b.array);
    return text;
}

/* ---- sending ---- */

static void send_to(endpoint_t *ep);

static void on_backoff(uv_timer_t *timer)
{
    send_to(timer->data);
}

static void on_done(long status, const char *error, void *arg)
{
    endpoint_t *ep = arg;
    keng_alertmanager_t *am = ep->am;

    (void)status;
    ep->busy = false;
    if (!error) {
        if (!ep->up || ep->attempts > 0)
            keng_log_info("Alertmanager takes the alerts", "url=%s", ep->shown);
        ep->sends++;
        ep->up = true;
        ep->attempts = 0;
        ep->last_success_ms = keng_now_ms();
        if (ep->again)
            send_to(ep);
        return;
    }
    ep->failures++;
    ep->up = false;
    ep->attempts++;
    uint64_t delay = BACKOFF_FIRST_MS;
    for (int i = 1; i < ep->attempts && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    if (delay > (uint64_t)am->opt.resend_interval_ms)
        delay = (uint64_t)am->opt.resend_interval_ms;
    keng_log_warn("Alertmanager did not take the alerts; retrying",
                  "url=%s attempt=%d retry_in_ms=%" PRIu64 " error=\"%s\"", ep->shown, ep->attempts,
                  delay, error);
    uv_timer_start(&ep->backoff, on_backoff, delay, 0);
}

/* Sends the state as it is now, unless a send is in progress (then once more after it) or a
 * backoff waits (its end sends). */
static void send_to(endpoint_t *ep)
{
    keng_alertmanager_t *am = ep->am;
    char *body;

    if (am->closing)
        return;
    if (ep->busy) {
        ep->again = true;
        return;
    }
    if (uv_is_active((uv_handle_t *)&ep->backoff))
        return;
    ep->again = false;
    body = payload(am);
    if (!body || keng_http_client_post_auth(
                     am->client, ep->url, body, am->opt.timeout_ms,
                     am->opt.username && *am->opt.username ? &am->auth : NULL, on_done, ep) != 0) {
        free(body);
        on_done(0, "the request could not be made", ep);
        return;
    }
    free(body);
    ep->busy = true;
}

static void send_all(uv_timer_t *timer)
{
    keng_alertmanager_t *am = timer->data;

    for (size_t i = 0; i < am->nendpoints; i++)
        send_to(&am->endpoints[i]);
}

void keng_alertmanager_notify(keng_alertmanager_t *am)
{
    if (am && !am->closing && !uv_is_active((uv_handle_t *)&am->soon))
        uv_timer_start(&am->soon, send_all, SOON_MS, 0);
}

/* ---- setup ---- */

/* Fills the endpoints' URLs from the list in urls ("http://a:9093, http://b:9093/"). */
static int parse_urls(const char *urls, endpoint_t *endpoints, size_t *n, char *errstr,
                      size_t errstr_size)
{
    const char *p = urls;
    char why[300];

    *n = 0;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        const char *start = p;
        char base[URL_MAX];

        p += len;
        if (*p == ',')
            p++;
        while (len > 0 && isspace((unsigned char)*start)) {
            start++;
            len--;
        }
        while (len > 0 && (isspace((unsigned char)start[len - 1]) || start[len - 1] == '/'))
            len--;
        if (len == 0)
            continue;
        if (len >= sizeof(base) - 20 || *n == URLS_MAX) {
            snprintf(errstr, errstr_size,
                     "alertmanager.url: at most %d URLs of at most %d bytes each", URLS_MAX,
                     URL_MAX - 20);
            return -1;
        }
        snprintf(base, sizeof(base), "%.*s", (int)len, start);
        if (keng_http_client_check_url(base, why, sizeof(why)) != 0) {
            snprintf(errstr, errstr_size, "alertmanager.url: %s", why);
            return -1;
        }
        snprintf(endpoints[*n].url, sizeof(endpoints[*n].url), "%s/api/v2/alerts", base);
        keng_http_client_redact(base, endpoints[*n].shown, sizeof(endpoints[*n].shown));
        (*n)++;
    }
    if (*n == 0) {
        snprintf(errstr, errstr_size, "alertmanager.url: no URL in the list");
        return -1;
    }
    return 0;
}

int keng_alertmanager_options_from_config(const keng_config_t *cfg,
                                          const char *default_dashboard_url,
                                          keng_alertmanager_options_t *opt, char *errstr,
                                          size_t errstr_size)
{
    long long resend, timeout;
    const char *urls = keng_config_get(cfg, "alertmanager.url", NULL);

    memset(opt, 0, sizeof(*opt));
    if (keng_config_get_int(cfg, "alertmanager.resend.interval.ms", 60000, 100, 3600000, &resend,
                            errstr, errstr_size) != 0 ||
        keng_config_get_int(cfg, "alertmanager.timeout.ms", 10000, 100, 600000, &timeout, errstr,
                            errstr_size) != 0)
        return -1;
    opt->urls = urls && *urls ? urls : NULL;
    if (opt->urls) {
        /* Checked here, at start, rather than found out at the first send. */
        endpoint_t *scratch = calloc(URLS_MAX, sizeof(*scratch));
        size_t n;
        int rc = scratch ? parse_urls(urls, scratch, &n, errstr, errstr_size) : -1;
        free(scratch);
        if (rc != 0)
            return -1;
    }
    opt->resend_interval_ms = (long)resend;
    opt->timeout_ms = (long)timeout;
    opt->dashboard_url = keng_config_get(cfg, "dashboard.url", default_dashboard_url);
    opt->username = keng_config_get(cfg, "alertmanager.basic_auth.username", NULL);
    int got = keng_config_read_secret(cfg, "alertmanager.basic_auth.password_file", opt->password,
                                      sizeof(opt->password), errstr, errstr_size);
    if (got < 0)
        return -1;
    if (got && !(opt->username && *opt->username)) {
        snprintf(errstr, errstr_size,
                 "alertmanager.basic_auth.password_file is set without "
                 "alertmanager.basic_auth.username");
        return -1;
    }
    return 0;
}

static void on_closed(uv_handle_t *handle)
{
    keng_alertmanager_t *am = handle->data;

    if (--am->handles_open == 0)
        free(am);
}

void keng_alertmanager_set_registry(keng_alertmanager_t *am, const keng_registry_t *reg)
{
    if (am)
        am->reg = reg;
}

keng_alertmanager_t *keng_alertmanager_new(uv_loop_t *loop, keng_http_client_t *client,
                                           const keng_alertmanager_options_t *opt,
                                           const keng_alerts_t *alerts, const keng_registry_t *reg,
                                           char *errstr, size_t errstr_size)
{
    keng_alertmanager_t *am = calloc(1, sizeof(*am));

    if (!am) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (parse_urls(opt->urls, am->endpoints, &am->nendpoints, errstr, errstr_size) != 0) {
        free(am);
        return NULL;
    }
    am->loop = loop;
    am->client = client;
    am->alerts = alerts;
    am->reg = reg;
    am->opt = *opt;
    am->auth = (keng_http_auth_t){am->opt.username, am->opt.password, NULL};
    am->opt.urls = NULL; /* parsed into the endpoints */
    snprintf(am->dashboard, sizeof(am->dashboard), "%s",
             opt->dashboard_url ? opt->dashboard_url : "");
    am->opt.dashboard_url = am->dashboard;
    for (size_t n = strlen(am->dashboard); n > 0 && am->dashboard[n - 1] == '/'; n--)
        am->dashboard[n - 1] = '\0';
    uv_timer_init(loop, &am->soon);
    uv_timer_init(loop, &am->resend);
    am->soon.data = am->resend.data = am;
    am->handles_open = 2;
    for (size_t i = 0; i < am->nendpoints; i++) {
        endpoint_t *ep = &am->endpoints[i];
        ep->am = am;
        uv_timer_init(loop, &ep->backoff);
        ep->backoff.data = ep;
        am->handles_open++;
    }
    /* The first send tells a restarted Alertmanager, or one that outlived keng, what fires. */
    uv_timer_start(&am->resend, send_all, 0, (uint64_t)opt->resend_interval_ms);
    return am;
}

size_t keng_alertmanager_endpoint_count(const keng_alertmanager_t *am)
{
    return am ? am->nendpoints : 0;
}

void keng_alertmanager_metrics(const keng_alertmanager_t *am, FILE *out)
{
    static const struct {
        const char *name, *type, *help;
    } metrics[] = {
        {"keng_alertmanager_up", "gauge",
         "1 when the last send to this Alertmanager worked, else 0."},
        {"keng_alertmanager_sends_total", "counter",
         "Sends of the alert state this Alertmanager took."},
        {"keng_alertmanager_failures_total", "counter",
         "Sends to this Alertmanager that failed (each is retried with backoff)."},
        {"keng_alertmanager_last_success_timestamp_seconds", "gauge",
         "When this Alertmanager last took the alert state (0: never)."},
    };

    if (!am)
        return;
    for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help,
                metrics[m].name, metrics[m].type);
        for (size_t i = 0; i < am->nendpoints; i++) {
            const endpoint_t *ep = &am->endpoints[i];
            fprintf(out, "%s{url=\"%s\"} ", metrics[m].name, ep->shown);
            if (m == 0)
                fprintf(out, "%d\n", ep->up ? 1 : 0);
            else if (m == 1)
                fprintf(out, "%" PRIu64 "\n", ep->sends);
            else if (m == 2)
                fprintf(out, "%" PRIu64 "\n", ep->failures);
            else
                fprintf(out, "%.3f\n", (double)ep->last_success_ms / 1000.0);
        }
    }
}

void keng_alertmanager_close(keng_alertmanager_t *am)
{
    if (!am || am->closing)
        return;
    am->closing = true;
    uv_close((uv_handle_t *)&am->soon, on_closed);
    uv_close((uv_handle_t *)&am->resend, on_closed);
    for (size_t i = 0; i < am->nendpoints; i++) {
        am->endpoints[i].backoff.data = am;
        uv_close((uv_handle_t *)&am->endpoints[i].backoff, on_closed);
    }
}
