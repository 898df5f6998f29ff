/* What the alert engine carries across processes: alerts read back from antt.alerts (apply,
 * adopt on a handover), the listing and JSON of alerts, and the saved state; it never decides
 * when a rule fires. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC0  'K'
#define STATE_MAGIC1  'A'
#define STATE_VERSION 1

/* ---- reading back ---- */

static const rule_t *rule_by_name(const keng_alerts_t *a, const char *name, uint32_t *index)
{
    for (size_t i = 0; i < a->nrules; i++) {
        if (strcmp(a->rules[i].name, name) == 0) {
            *index = (uint32_t)i;
            return &a->rules[i];
        }
    }
    return NULL;
}

static bool resolved_has(const keng_alerts_t *a, const char *alert_id)
{
    for (size_t i = 0; i < a->nresolved; i++)
        if (strcmp(a->resolved[i].alert_id, alert_id) == 0)
            return true;
    return false;
}

static void rec_from_alert(const keng_alert_t *t, rec_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    snprintf(rec->alert_id, sizeof(rec->alert_id), "%s", t->alert_id);
    snprintf(rec->fingerprint, sizeof(rec->fingerprint), "%s", t->fingerprint);
    snprintf(rec->rule, sizeof(rec->rule), "%s", t->rule);
    rec->level = (keng_level_t)t->level;
    snprintf(rec->scope_id, sizeof(rec->scope_id), "%s", t->scope_id);
    int w = keng_alerts__name_index(keng_window_names, KENG_WIN_COUNT, t->window);
    int days;
    char text[8];
    /* A silent rule's window reads "<days>d". */
    snprintf(text, sizeof(text), "%.6s", t->window);
    if (w < 0 && strlen(text) > 1 && text[strlen(text) - 1] == 'd') {
        text[strlen(text) - 1] = '\0';
        if (keng_silent_parse_days(text, &days) == 0)
            w = SILENT_WINDOW + days;
    }
    keng_alerts__rec_set_window(rec, w < 0 ? KENG_WIN_ALL : w);
    rec->count = t->count;
    rec->threshold = t->threshold;
    rec->starts_at = t->starts_at;
    rec->ends_at = t->has_ends_at ? t->ends_at : 0;
    snprintf(rec->summary, sizeof(rec->summary), "%s", t->summary);
    rec->nsamples = t->nsamples > KENG_ALERT_SAMPLES_MAX ? KENG_ALERT_SAMPLES_MAX : t->nsamples;
    for (size_t i = 0; i < rec->nsamples; i++)
        snprintf(rec->samples[i], sizeof(rec->samples[i]), "%s", t->sample_event_ids[i]);
}

static int apply(keng_alerts_t *a, const keng_alert_t *t, bool held_only)
{
    uint32_t ri;
    const rule_t *r = rule_by_name(a, t->rule, &ri);
    int32_t scope;
    entry_t *e;
    rec_t rec;

    if (!r || (unsigned)t->level >= KENG_LEVEL_COUNT || (keng_level_t)t->level != r->level)
        return 0;
    scope = keng_scope_find(a->reg, (keng_level_t)t->level, t->scope_id);
    if (scope < 0)
        return 0;
    if (held_only && !keng_alerts__rule_holds(a, r, r->level, (uint32_t)scope))
        return 0;
    rec_from_alert(t, &rec);
    if (t->status == KENG_ALERT_FIRING) {
        e = keng_alerts__entry_find(a, keng_alerts__entry_key(ri, r->level, (uint32_t)scope));
        if ((e && e->fire && strcmp(e->fire->alert_id, t->alert_id) == 0) ||
            resolved_has(a, t->alert_id))
            return 0; /* already known, or already resolved later in the log */
        e = keng_alerts__entry_get(a, ri, r->level, (uint32_t)scope);
        if (!e)
            return 0;
        if (!e->fire) {
            if (!(e->fire = malloc(sizeof(*e->fire))))
                return 0;
            a->stats.firing++;
        }
        *e->fire = rec;
        a->dirty = true;
        return 1;
    }
    e = keng_alerts__entry_find(a, keng_alerts__entry_key(ri, r->level, (uint32_t)scope));
    if (e && e->fire && strcmp(e->fire->alert_id, t->alert_id) == 0) {
        free(e->fire);
        e->fire = NULL;
        a->stats.firing--;
    } else if (resolved_has(a, t->alert_id)) {
        return 0;
    }
    keng_alerts__resolved_push(a, &rec);
    a->dirty = true;
    return 1;
}

int keng_alerts_apply(keng_alerts_t *a, const keng_alert_t *t)
{
    return apply(a, t, false);
}

int keng_alerts_adopt(keng_alerts_t *a, const keng_alert_t *t)
{
    return apply(a, t, true);
}

void keng_alerts_each(const keng_alerts_t *a, keng_alert_status_t status,
                      void (*fn)(const keng_alert_t *t, void *arg), void *arg)
{
    keng_alert_t t;

    if (status == KENG_ALERT_RESOLVED) {
        for (size_t i = 0; i < a->nresolved; i++) {
            size_t at =
                (a->resolved_pos + KENG_ALERTS_RESOLVED_MAX - 1 - i) % KENG_ALERTS_RESOLVED_MAX;
            keng_alerts__rec_to_alert(&a->resolved[at], KENG_ALERT_RESOLVED, &t);
            fn(&t, arg);
        }
        return;
    }
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (const entry_t *e = a->buckets[b]; e; e = e->next) {
            if (!e->fire)
                continue;
            keng_alerts__rec_to_alert(e->fire, KENG_ALERT_FIRING, &t);
            fn(&t, arg);
        }
    }
}

json_t *keng_alerts_json(const keng_alert_t *t)
{
    json_t *samples = json_array();
    json_t *o;

    for (size_t i = 0; i < t->nsamples; i++)
        json_array_append_new(samples, json_string(t->sample_event_ids[i]));
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:o}", "alert_id", t->alert_id,
                  "fingerprint", t->fingerprint, "rule", t->rule, "status",
                  keng_alert_status_names[t->status], "level", keng_alert_level_names[t->level],
                  "scope_id", t->scope_id, "window", t->window, "count", (json_int_t)t->count,
                  "threshold", (json_int_t)t->threshold, "starts_at", (json_int_t)t->starts_at,
                  "summary", t->summary, "sample_event_ids", samples);
    if (o)
        json_object_set_new(o, "ends_at",
                            t->has_ends_at ? json_integer((json_int_t)t->ends_at) : json_null());
    return o;
}

/* ---- state ---- */

typedef struct buf {
    unsigned char *data;
    size_t len, cap;
    bool failed;
} buf_t;

static void put_bytes(buf_t *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u64(buf_t *b, uint64_t v)
{
    unsigned char x[8];

    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    put_bytes(b, x, 8);
}

static void put_str(buf_t *b, const char *s)
{
    size_t n = strlen(s);

    put_u64(b, n);
    put_bytes(b, s, n);
}

static void put_rec(buf_t *b, const rec_t *r)
{
    put_str(b, r->alert_id);
    put_str(b, r->fingerprint);
    put_str(b, r->rule);
    put_u64(b, (uint64_t)r->level);
    put_str(b, r->scope_id);
    put_u64(b, (uint64_t)r->window);
    put_u64(b, (uint64_t)r->count);
    put_u64(b, (uint64_t)r->threshold);
    put_u64(b, (uint64_t)r->starts_at);
    put_u64(b, (uint64_t)r->ends_at);
    put_str(b, r->summary);
    put_u64(b, r->nsamples);
    for (size_t i = 0; i < r->nsamples; i++)
        put_str(b, r->samples[i]);
}

int keng_alerts_save(const keng_alerts_t *a, unsigned char **out, size_t *len)
{
    buf_t b = {.data = *out, .len = *len, .cap = *len};
    unsigned char magic[3] = {STATE_MAGIC0, STATE_MAGIC1, STATE_VERSION};
    uint64_t nfiring = 0;

    put_bytes(&b, magic, 3);
    for (size_t i = 0; i < a->nbuckets; i++)
        for (const entry_t *e = a->buckets[i]; e; e = e->next)
            nfiring += e->fire != NULL;
    put_u64(&b, nfiring);
    for (size_t i = 0; i < a->nbuckets; i++)
        for (const entry_t *e = a->buckets[i]; e; e = e->next)
            if (e->fire)
                put_rec(&b, e->fire);
    /* Oldest first, so that loading pushes them back in order. */
    put_u64(&b, a->nresolved);
    for (size_t i = a->nresolved; i-- > 0;)
        put_rec(&b, &a->resolved[(a->resolved_pos + KENG_ALERTS_RESOLVED_MAX - 1 - i) %
                                 KENG_ALERTS_RESOLVED_MAX]);
    *out = b.data;
    *len = b.len;
    return b.failed ? -1 : 0;
}

typedef struct rd {
    const unsigned char *p, *end;
    bool failed;
} rd_t;

static uint64_t get_u64(rd_t *r)
{
    uint64_t v = 0;

    if (r->failed || r->end - r->p < 8) {
        r->failed = true;
        return 0;
    }
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += 8;
    return v;
}

static void get_str(rd_t *r, char *out, size_t cap)
{
    uint64_t n = get_u64(r);

    out[0] = '\0';
    if (r->failed || n >= cap || n > (uint64_t)(r->end - r->p)) {
        r->failed = true;
        return;
    }
    memcpy(out, r->p, (size_t)n);
    out[n] = '\0';
    r->p += n;
}

static void get_rec(rd_t *r, rec_t *rec)
{
    memset(rec, 0, sizeof(*rec));
    get_str(r, rec->alert_id, sizeof(rec->alert_id));
    get_str(r, rec->fingerprint, sizeof(rec->fingerprint));
    get_str(r, rec->rule, sizeof(rec->rule));
    rec->level = (keng_level_t)get_u64(r);
    get_str(r, rec->scope_id, sizeof(rec->scope_id));
    rec->window = (int)get_u64(r);
    rec->count = (int64_t)get_u64(r);
    rec->threshold = (int64_t)get_u64(r);
    rec->starts_at = (int64_t)get_u64(r);
    rec->ends_at = (int64_t)get_u64(r);
    get_str(r, rec->summary, sizeof(rec->summary));
    rec->nsamples = (size_t)get_u64(r);
    if (rec->level >= KENG_LEVEL_COUNT || rec->window < 0 ||
        rec->window > SILENT_WINDOW + KENG_SILENT_DAYS_MAX ||
        (rec->window >= KENG_WIN_COUNT && rec->window <= SILENT_WINDOW) ||
        rec->nsamples > KENG_ALERT_SAMPLES_MAX) {
        r->failed = true;
        return;
    }
    keng_alerts__rec_set_window(rec, rec->window);
    for (size_t i = 0; i < rec->nsamples; i++)
        get_str(r, rec->samples[i], sizeof(rec->samples[i]));
}

static void clear_state(keng_alerts_t *a)
{
    for (size_t b = 0; b < a->nbuckets; b++) {
        for (entry_t *e = a->buckets[b], *next; e; e = next) {
            next = e->next;
            free(e->fire);
            free(e);
        }
        a->buckets[b] = NULL;
    }
    a->nentries = 0;
    a->ntouched = 0;
    a->nresolved = a->resolved_pos = 0;
    a->stats.firing = 0;
}

int keng_alerts_load(keng_alerts_t *a, const unsigned char *buf, size_t len, char *errstr,
                     size_t errstr_size)
{
    rd_t r = {.p = buf, .end = buf + len};
    rec_t rec;
    keng_alert_t t;
    uint64_t n;

    clear_state(a);
    if (len < 3 || buf[0] != STATE_MAGIC0 || buf[1] != STATE_MAGIC1 || buf[2] != STATE_VERSION) {
        snprintf(errstr, errstr_size, "the alert state has an unknown format");
        return -1;
    }
    r.p += 3;
    n = get_u64(&r);
    for (uint64_t i = 0; i < n && !r.failed; i++) {
        get_rec(&r, &rec);
        if (r.failed)
            break;
        keng_alerts__rec_to_alert(&rec, KENG_ALERT_FIRING, &t);
        keng_alerts_apply(a, &t);
    }
    n = get_u64(&r);
    for (uint64_t i = 0; i < n && !r.failed; i++) {
        get_rec(&r, &rec);
        if (!r.failed)
            keng_alerts__resolved_push(a, &rec);
    }
    if (r.failed || r.p != r.end) {
        clear_state(a);
        snprintf(errstr, errstr_size, "the alert state is truncated or corrupt");
        return -1;
    }
    a->dirty = false;
    return 0;
}
