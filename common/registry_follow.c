/* A program follows antt.registry: every version read is loaded when it is read (so one that
 * cannot be used is refused then, and said), and waits for its effective time in a list; a
 * timer set to the next effective time, and a check at each poll of the topic, switch to it. */
#include "registry_follow.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "program.h"
#include "registry_check.h"
#include "registry_topic.h"
#include "timeutil.h"

typedef enum { V_PENDING, V_IN_FORCE, V_EARLIER, V_DROPPED } vstate_t;

/* One version loaded. */
typedef struct version {
    char key[40];
    char sha256[13]; /* the first 12 hex digits of its board CSV's */
    int64_t effective_ms;
    keng_registry_t *reg;
    keng_lineage_t *lineage; /* against the version before it; NULL without */
    vstate_t state;
} version_t;

struct keng_registry_follow {
    const keng_config_t *cfg;
    char topic[256];
    version_t *v;
    size_t n;
    size_t current; /* index of the version in force, once opened */
    bool opened;
    const keng_registry_t **earlier;
    size_t nearlier;
    unsigned long long switches, skipped;
    bool switching; /* on_switch is deciding */
    char last_skipped[400];

    keng_regtopic_list_t read; /* what the first read gave */
    keng_regtopic_ends_t ends; /* where it ended: following starts there */
    keng_regtopic_follower_t *follower;
    uv_timer_t poll_timer, switch_timer;
    bool timers_on;
    unsigned timers_open; /* closing: freed once both close callbacks ran */
    keng_registry_follow_switch_cb on_switch;
    void *arg;
    keng_registry_follow_read_cb on_read;
    void *read_arg;
};

/* A version that cannot be used: counted, said, and the one in force stays. where names the
 * message when known ("antt.registry partition 0 offset 2"). */
static void skip(keng_registry_follow_t *r, const char *key, const char *why, const char *where)
{
    r->skipped++;
    /* Cut to fit: the log line below has the whole reason. */
    if (snprintf(r->last_skipped, sizeof(r->last_skipped), "%s@%s: %s", r->topic, key, why) >=
        (int)sizeof(r->last_skipped))
        memcpy(r->last_skipped + sizeof(r->last_skipped) - 4, "...", 4);
    keng_log_warn("a registry version cannot be used; skipped, the registry in force stays",
                  "topic=%s version=%s why=\"%s\" in_force=%s message=\"%s\"", r->topic, key, why,
                  r->opened ? r->v[r->current].key : "-", where ? where : "-");
}

/* Loads version pv (its doc borrowed) and keeps it in state. Returns its index, or -1 after
 * skipping it (a CSV that does not load, no memory). */
static long add(keng_registry_follow_t *r, const keng_regtopic_version_t *pv, vstate_t state)
{
    char name[320], errstr[512];
    keng_registry_t *reg;
    version_t *grown;

    snprintf(name, sizeof(name), "%s@%s", r->topic, pv->key);
    reg = keng_registry_load_text(pv->text, pv->text_len, name, errstr, sizeof(errstr));
    if (!reg) {
        skip(r, pv->key, errstr, NULL);
        return -1;
    }
    grown = realloc(r->v, (r->n + 1) * sizeof(*grown));
    if (!grown) {
        keng_registry_destroy(reg);
        skip(r, pv->key, "out of memory", NULL);
        return -1;
    }
    r->v = grown;
    version_t *v = &r->v[r->n];
    memset(v, 0, sizeof(*v));
    snprintf(v->key, sizeof(v->key), "%s", pv->key);
    snprintf(v->sha256, sizeof(v->sha256), "%.12s", pv->sha256 ? pv->sha256 : "");
    v->effective_ms = pv->effective_ms;
    v->reg = reg;
    v->state = state;
    /* The lineage only names what the units were formerly: one that does not load leaves the
     * version usable, without it. */
    json_t *lineage = json_object_get(pv->doc, "lineage");
    const char *text = json_string_value(json_object_get(lineage, "text"));
    if (text) {
        snprintf(name, sizeof(name), "%s@%s lineage", r->topic, pv->key);
        v->lineage = keng_lineage_load_text(text, strlen(text), name, errstr, sizeof(errstr));
        if (!v->lineage)
            keng_log_warn("a registry version's lineage does not load; its units show nothing "
                          "as formerly",
                          "topic=%s version=%s error=\"%s\"", r->topic, pv->key, errstr);
    }
    return (long)r->n++;
}

/* The registries of earlier versions, for the tokens. */
static void list_earlier(keng_registry_follow_t *r)
{
    const keng_registry_t **list = realloc(r->earlier, (r->n + 1) * sizeof(*list));

    if (!list)
        return; /* the previous list stays: a token covers less, never more */
    r->earlier = list;
    r->nearlier = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].state == V_EARLIER)
            r->earlier[r->nearlier++] = r->v[i].reg;
}

int keng_registry_follow_open(const keng_config_t *cfg, const char *topic,
                              keng_registry_follow_t **out, char *errstr, size_t errstr_size)
{
    keng_registry_follow_t *r = calloc(1, sizeof(*r));
    int64_t now = keng_now_ms();
    long in_force = -1;
    int rc;

    *out = NULL;
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        return 1;
    }
    r->cfg = cfg;
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    rc = keng_regtopic_read_ends(cfg, topic, &r->read, &r->ends, errstr, errstr_size);
    if (rc != 0)
        goto fail;
    /* The version in force is the latest whose time has come; it must load. */
    for (size_t i = 0; i < r->read.n; i++)
        if (r->read.v[i].effective_ms <= now)
            in_force = (long)i;
    if (in_force < 0) {
        snprintf(errstr, errstr_size,
                 "no registry version is in force in %s (%zu version(s)%s%s): publish one with "
                 "keng-registry --publish FILE --effective TIME, or give --registry FILE instead",
                 topic, r->read.n, r->read.n ? ", the first effective " : "",
                 r->read.n ? r->read.v[0].key : "");
        rc = KENG_EXIT_CONFIG;
        goto fail;
    }
    for (size_t i = 0; i < r->read.n; i++) {
        const keng_regtopic_version_t *pv = &r->read.v[i];
        vstate_t state = (long)i < in_force    ? V_EARLIER
                         : (long)i == in_force ? V_IN_FORCE
                                               : V_PENDING;
        long at = add(r, pv, state);
        if (at >= 0 && state == V_IN_FORCE)
            r->current = (size_t)at;
        if (at < 0 && state == V_IN_FORCE) {
            snprintf(errstr, errstr_size,
                     "the registry version in force, %s@%s, does not load (%s): publish a "
                     "correction with keng-registry --publish --replace, or give --registry FILE",
                     topic, pv->key, r->last_skipped);
            rc = KENG_EXIT_CONFIG;
            goto fail;
        }
    }
    list_earlier(r);
    r->opened = true;
    /* The documents are loaded; the ends are kept for keng_registry_follow_start. */
    for (size_t i = 0; i < r->read.n; i++)
        json_decref(r->read.v[i].doc);
    free(r->read.v);
    r->read.v = NULL;
    r->read.n = 0;

    char what[200];
    const version_t *v = &r->v[r->current];
    keng_registry_describe_units(v->reg, what, sizeof(what));
    keng_log_info("board registry in use",
                  "source=topic topic=%s version=%s sha256=%s %s earlier=%zu pending=%zu", topic,
                  v->key, v->sha256, what, r->nearlier, r->n - r->nearlier - 1);
    *out = r;
    return 0;
fail:
    keng_registry_follow_destroy(r);
    return rc;
}

/* The pending version whose time came last, or -1. */
static long due(const keng_registry_follow_t *r, int64_t now)
{
    long best = -1;

    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].state == V_PENDING && r->v[i].effective_ms <= now &&
            (best < 0 || r->v[i].effective_ms >= r->v[best].effective_ms))
            best = (long)i;
    return best;
}

/* The earliest effective time still to come, or 0. */
static int64_t next_effective(const keng_registry_follow_t *r)
{
    int64_t next = 0;

    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].state == V_PENDING && (next == 0 || r->v[i].effective_ms < next))
            next = r->v[i].effective_ms;
    return next;
}

static void on_switch_timer(uv_timer_t *t);

/* Switches to the version whose time has come, if any, and sets the timer to the next. */
static void apply_due(keng_registry_follow_t *r)
{
    int64_t now = keng_now_ms();
    long to = due(r, now);

    if (to >= 0) {
        version_t *old = &r->v[r->current], *v = &r->v[to];
        char what[200], why[400];
        int64_t began = keng_now_ms();

        /* While the program decides, the version in force counts as an earlier one for
         * keng_registry_follow_knew_unit: it will be, once the switch is made. */
        r->switching = true;
        int refused = r->on_switch && r->on_switch(v->reg, v->key, r->arg, why, sizeof(why)) != 0;
        r->switching = false;
        if (refused) {
            v->state = V_DROPPED;
            skip(r, v->key, why, NULL);
            apply_due(r); /* a later version whose time came too may still be usable */
            return;
        }

        /* Versions whose time also came but that a later one supersedes were in force for no
         * time here; their units still cover tokens, as any earlier version's. */
        for (size_t i = 0; i < r->n; i++)
            if (r->v[i].state == V_PENDING && r->v[i].effective_ms <= now && (long)i != to)
                r->v[i].state = V_EARLIER;
        old->state = V_EARLIER;
        v->state = V_IN_FORCE;
        r->current = (size_t)to;
        r->switches++;
        list_earlier(r);
        keng_registry_describe_units(v->reg, what, sizeof(what));
        keng_log_info("board registry switched",
                      "source=topic topic=%s version=%s previous=%s sha256=%s %s late_ms=%lld "
                      "pause_ms=%lld",
                      r->topic, v->key, old->key, v->sha256, what,
                      (long long)(now - v->effective_ms), (long long)(keng_now_ms() - began));
    }
    if (!r->timers_on)
        return;
    int64_t next = next_effective(r);
    if (next == 0) {
        uv_timer_stop(&r->switch_timer);
        return;
    }
    now = keng_now_ms();
    uv_timer_start(&r->switch_timer, on_switch_timer, next > now ? (uint64_t)(next - now) : 0, 0);
}

static void on_switch_timer(uv_timer_t *t)
{
    keng_registry_follow_t *r = t->data;

    /* The loop's clock and the wall clock may drift apart: a timer early by a few ms finds
     * nothing due and is set again. */
    apply_due(r);
}

/* A version read while running (pv's doc taken). */
static void take(keng_registry_follow_t *r, keng_regtopic_version_t *pv)
{
    long at = add(r, pv, V_PENDING);

    json_decref(pv->doc);
    if (at < 0)
        return;
    version_t *v = &r->v[at];
    /* The same key again (keng-registry --publish --replace) replaces a version still to come;
     * one already in force or past is superseded by the correction as it takes effect. */
    for (size_t i = 0; i < r->n; i++)
        if ((long)i != at && r->v[i].state == V_PENDING && strcmp(r->v[i].key, v->key) == 0)
            r->v[i].state = V_DROPPED;
    keng_log_info("registry version read", "topic=%s version=%s sha256=%s boards=%zu %s", r->topic,
                  v->key, v->sha256, keng_registry_board_count(v->reg),
                  v->effective_ms <= keng_now_ms() ? "takes_effect=now"
                                                   : "takes_effect=at_its_time");
    if (r->on_read)
        r->on_read(v->reg, v->key, r->read_arg);
}

void keng_registry_follow_on_read(keng_registry_follow_t *r, keng_registry_follow_read_cb cb,
                                  void *arg)
{
    r->on_read = cb;
    r->read_arg = arg;
    for (size_t i = 0; cb && i < r->n; i++)
        if (r->v[i].state == V_PENDING)
            cb(r->v[i].reg, r->v[i].key, arg);
}

/* A deletion of key (a null value): a version still to come is dropped; the one in force
 * stays, since nothing else could take its place. */
static void drop(keng_registry_follow_t *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].key, key) != 0)
            continue;
        if (r->v[i].state == V_PENDING) {
            r->v[i].state = V_DROPPED;
            keng_log_info("registry version deleted from the topic before its time; dropped",
                          "topic=%s version=%s", r->topic, key);
        } else if (i == r->current) {
            keng_log_warn("the registry version in force was deleted from the topic; it stays "
                          "in force until another takes effect",
                          "topic=%s version=%s", r->topic, key);
        }
    }
}

static void on_poll_timer(uv_timer_t *t)
{
    keng_registry_follow_t *r = t->data;
    keng_regtopic_version_t pv;
    char key[64], why[300], where[300];
    int rc;

    /* A bounded number per tick, so that a burst on the topic cannot hold the loop. */
    for (int i = 0; i < 16 && (rc = keng_regtopic_follower_poll(r->follower, &pv, key, sizeof(key),
                                                                why, sizeof(why))) != 0;
         i++) {
        if (rc == 1)
            take(r, &pv);
        else if (rc == 2)
            drop(r, key);
        else {
            keng_regtopic_follower_position(r->follower, where, sizeof(where));
            skip(r, key[0] ? key : "(no key)", why, where);
        }
    }
    apply_due(r);
}

int keng_registry_follow_start(keng_registry_follow_t *r, uv_loop_t *loop,
                               keng_registry_follow_switch_cb on_switch, void *arg, char *errstr,
                               size_t errstr_size)
{
    r->follower = keng_regtopic_follow(r->cfg, r->topic, &r->ends, errstr, errstr_size);
    if (!r->follower)
        return -1;
    r->on_switch = on_switch;
    r->arg = arg;
    uv_timer_init(loop, &r->poll_timer);
    uv_timer_init(loop, &r->switch_timer);
    r->poll_timer.data = r;
    r->switch_timer.data = r;
    r->timers_on = true;
    uv_timer_start(&r->poll_timer, on_poll_timer, KENG_REGISTRY_FOLLOW_POLL_MS,
                   KENG_REGISTRY_FOLLOW_POLL_MS);
    apply_due(r);
    return 0;
}

void keng_registry_follow_stop(keng_registry_follow_t *r)
{
    if (!r)
        return;
    if (r->timers_on) {
        r->timers_on = false;
        uv_close((uv_handle_t *)&r->poll_timer, NULL);
        uv_close((uv_handle_t *)&r->switch_timer, NULL);
    }
    keng_regtopic_follower_destroy(r->follower);
    r->follower = NULL;
}

void keng_registry_follow_destroy(keng_registry_follow_t *r)
{
    if (!r)
        return;
    keng_regtopic_follower_destroy(r->follower);
    for (size_t i = 0; i < r->n; i++) {
        keng_registry_destroy(r->v[i].reg);
        keng_lineage_destroy(r->v[i].lineage);
    }
    free(r->v);
    free(r->earlier);
    keng_regtopic_list_free(&r->read);
    keng_regtopic_ends_free(&r->ends);
    free(r);
}

const char *keng_registry_follow_version(const keng_registry_follow_t *r)
{
    return r->v[r->current].key;
}

const keng_lineage_t *keng_registry_follow_lineage(const keng_registry_follow_t *r,
                                                   const char *version)
{
    const keng_lineage_t *found = NULL;

    /* The last one read of that key: a version published again replaces the earlier. */
    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].state != V_DROPPED &&
            strcmp(r->v[i].key, version ? version : r->v[r->current].key) == 0)
            found = r->v[i].lineage;
    return found;
}

keng_registry_t *keng_registry_follow_current(const keng_registry_follow_t *r)
{
    return r->v[r->current].reg;
}

const keng_registry_t *keng_registry_follow_at(const keng_registry_follow_t *r, int64_t at_ms,
                                               const char **version)
{
    long best = -1;

    /* A version published again at the same time (--replace) is read after the one it
     * replaces: the later index wins a tie. */
    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].state != V_DROPPED && r->v[i].effective_ms <= at_ms &&
            (best < 0 || r->v[i].effective_ms >= r->v[best].effective_ms))
            best = (long)i;
    if (version)
        *version = best >= 0 ? r->v[best].key : NULL;
    return best >= 0 ? r->v[best].reg : NULL;
}

const char *keng_registry_follow_first(const keng_registry_follow_t *r)
{
    long first = -1;

    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].state != V_DROPPED &&
            (first < 0 || r->v[i].effective_ms < r->v[first].effective_ms))
            first = (long)i;
    return first >= 0 ? r->v[first].key : NULL;
}

const keng_registry_t *const *keng_registry_follow_earlier(const keng_registry_follow_t *r,
                                                           size_t *n)
{
    *n = r ? r->nearlier : 0;
    return r ? r->earlier : NULL;
}

bool keng_registry_follow_soon_has_board(const keng_registry_follow_t *r, const char *id,
                                         int64_t within_ms)
{
    int64_t until = keng_now_ms() + within_ms;

    for (size_t i = 0; r && i < r->n; i++)
        if (r->v[i].state == V_PENDING && r->v[i].effective_ms <= until &&
            keng_registry_find_board(r->v[i].reg, id, strlen(id)) >= 0)
            return true;
    return false;
}

bool keng_registry_follow_knew_unit(const keng_registry_follow_t *r, const char *id)
{
    size_t len = strlen(id);

    for (size_t i = 0; r && i <= r->nearlier; i++) {
        const keng_registry_t *reg = i < r->nearlier ? r->earlier[i]
                                     : r->switching  ? r->v[r->current].reg
                                                     : NULL;
        if (reg && (keng_registry_find_board(reg, id, len) >= 0 ||
                    keng_registry_find_commune(reg, id, len) >= 0 ||
                    keng_registry_find_district(reg, id, len) >= 0))
            return true;
    }
    return false;
}

int keng_registry_follow_metrics(const keng_registry_follow_t *r, const keng_registry_t *reg,
                                 FILE *out)
{
    char text[2048];
    char *info;

    if (keng_registry_metrics(reg, text, sizeof(text)) < 0)
        return -1;
    /* keng_registry_metrics says file or built-in; a version of the topic is said here, with
     * its version, and the units lines before it are kept as they are. */
    info = r ? strstr(text, "# HELP keng_registry_info") : NULL;
    if (info) {
        const version_t *v = &r->v[r->current];
        *info = '\0';
        fprintf(out,
                "%s# HELP keng_registry_info The board registry in use: its source (topic, file "
                "or built-in), the version (its effective time) and its path.\n"
                "# TYPE keng_registry_info gauge\n"
                "keng_registry_info{source=\"topic\",version=\"%s\",path=\"%s@%s\"} 1\n",
                text, v->key, r->topic, v->key);
    } else {
        fputs(text, out);
    }
    fprintf(out,
            "# HELP keng_registry_switches_total Switches to another registry version at its "
            "effective time, since start.\n"
            "# TYPE keng_registry_switches_total counter\n"
            "keng_registry_switches_total %llu\n"
            "# HELP keng_registry_versions_skipped_total Registry versions read that could not "
            "be used (not a format 1 document, or a CSV that does not load), since start.\n"
            "# TYPE keng_registry_versions_skipped_total counter\n"
            "keng_registry_versions_skipped_total %llu\n"
            "# HELP keng_registry_next_effective_timestamp_seconds When the next registry "
            "version read takes effect (0: none is waiting).\n"
            "# TYPE keng_registry_next_effective_timestamp_seconds gauge\n"
            "keng_registry_next_effective_timestamp_seconds %lld\n",
            r ? r->switches : 0ULL, r ? r->skipped : 0ULL,
            r ? (long long)(next_effective(r) / 1000) : 0LL);
    return 0;
}

json_t *keng_registry_follow_status(const keng_registry_follow_t *r)
{
    const version_t *v = &r->v[r->current];
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "source", "topic", "topic", r->topic, "version", v->key);

    if (o && r->skipped > 0) {
        char says[1024];
        snprintf(says, sizeof(says), "%llu version(s) skipped, the last: %s; %s@%s stays in use",
                 r->skipped, r->last_skipped, r->topic, v->key);
        json_object_set_new(o, "skipped", json_integer((json_int_t)r->skipped));
        json_object_set_new(o, "last_skipped", json_string(says));
    }
    return o;
}
