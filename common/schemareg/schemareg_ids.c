/* A program's writer ids from the registry, on the loop, retried until they are all known:
 * the start-up half of Schema Registry mode for keng-ingest and keng-aggregate (alerts). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "schemareg.h"

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   30000

struct keng_schemareg_ids {
    keng_http_client_t *client;
    keng_schemareg_conf_t *conf;
    uv_timer_t timer;
    int n, next; /* schemas; the one being resolved */
    char **subjects, **jsons;
    int32_t *ids;
    long backoff_ms;
    bool in_flight, timer_open, closing, done;
    void (*ready)(const int32_t *ids, void *arg);
    void *arg;
};

static void ids_free(keng_schemareg_ids_t *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->subjects[i]);
        free(r->jsons[i]);
    }
    free(r->subjects);
    free(r->jsons);
    free(r->ids);
    free(r);
}

static void maybe_free(keng_schemareg_ids_t *r)
{
    if (r->closing && !r->in_flight && !r->timer_open)
        ids_free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    keng_schemareg_ids_t *r = h->data;

    r->timer_open = false;
    maybe_free(r);
}

static void ask(keng_schemareg_ids_t *r);

static void on_timer(uv_timer_t *t)
{
    ask(t->data);
}

static void retry_later(keng_schemareg_ids_t *r)
{
    uv_timer_start(&r->timer, on_timer, (uint64_t)r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void on_done(int rc, int32_t id, const char *json, const char *error, void *arg)
{
    keng_schemareg_ids_t *r = arg;

    (void)json;
    r->in_flight = false;
    if (r->closing || rc == KENG_SCHEMAREG_CLOSED) {
        maybe_free(r);
        return;
    }
    if (rc != KENG_SCHEMAREG_OK) {
        if (rc == KENG_SCHEMAREG_UNREACHABLE)
            keng_log_warn("the schema registry does not answer; not ready, and nothing is "
                          "written until it does (no fallback to the manifest's ids)",
                          "subject=%s retry_ms=%ld error=\"%s\"", r->subjects[r->next],
                          r->backoff_ms, error ? error : "");
        else
            keng_log_error("the schema registry refused keng's writer schema; not ready",
                           "subject=%s retry_ms=%ld error=\"%s\"", r->subjects[r->next],
                           r->backoff_ms, error ? error : "");
        retry_later(r);
        return;
    }
    r->ids[r->next] = id;
    keng_log_info("writer schema id from the schema registry", "subject=%s id=%d",
                  r->subjects[r->next], (int)id);
    r->next++;
    r->backoff_ms = BACKOFF_FIRST_MS;
    if (r->next < r->n) {
        ask(r);
        return;
    }
    r->done = true;
    r->ready(r->ids, r->arg);
}

static void ask(keng_schemareg_ids_t *r)
{
    if (r->closing || r->done)
        return;
    if (keng_schemareg_register_async(r->client, r->conf, r->subjects[r->next], r->jsons[r->next],
                                      on_done, r) != 0) {
        retry_later(r);
        return;
    }
    r->in_flight = true;
}

keng_schemareg_ids_t *
keng_schemareg_ids_start(uv_loop_t *loop, keng_http_client_t *client, keng_schemareg_conf_t *conf,
                         const char *const *subjects, const char *const *jsons, int n,
                         void (*ready)(const int32_t *ids, void *arg), void *arg)
{
    keng_schemareg_ids_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->n = n;
    r->subjects = calloc((size_t)n, sizeof(char *));
    r->jsons = calloc((size_t)n, sizeof(char *));
    r->ids = calloc((size_t)n, sizeof(int32_t));
    if (!r->subjects || !r->jsons || !r->ids)
        goto oom;
    for (int i = 0; i < n; i++)
        if (!(r->subjects[i] = strdup(subjects[i])) || !(r->jsons[i] = strdup(jsons[i])))
            goto oom;
    r->client = client;
    r->conf = conf;
    r->ready = ready;
    r->arg = arg;
    r->backoff_ms = BACKOFF_FIRST_MS;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->timer_open = true;
    /* Unreferenced: a program stopping does not wait for the next try. */
    uv_unref((uv_handle_t *)&r->timer);
    if (n == 0) {
        r->done = true;
        ready(r->ids, arg);
    } else {
        ask(r);
    }
    return r;
oom:
    ids_free(r);
    return NULL;
}

bool keng_schemareg_ids_ready(const keng_schemareg_ids_t *r)
{
    return r != NULL && r->done;
}

void keng_schemareg_ids_close(keng_schemareg_ids_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}
