/* The webhook's queue: one POST at a time keeps the receiver's view in the order of the
 * transitions; it never talks HTTP itself, the HTTP client does. */
#include "webhook.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define QUEUE_MAX        1000
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   30000

typedef struct item {
    struct item *next;
    char *body;
} item_t;

struct keng_webhook {
    uv_loop_t *loop;
    keng_http_client_t *client;
    char *url;
    char *bearer;    /* webhook.bearer_token_file's token, or NULL */
    char shown[256]; /* scheme://host:port, for the log (the path may be the secret) */
    long timeout_ms;
    item_t *head, *tail;
    size_t queued;
    bool busy;          /* a POST of the head is in progress */
    int attempts;       /* of the head */
    uv_timer_t backoff; /* waits before the next attempt */
    bool closing;
    struct {
        uint64_t delivered;
        uint64_t failures; /* attempts that failed (each is retried) */
        uint64_t dropped;  /* bodies refused by the receiver or pushed out of a full queue */
    } stats;
};

static void start(keng_webhook_t *wh);
static void on_backoff(uv_timer_t *timer);

static void pop(keng_webhook_t *wh)
{
    item_t *it = wh->head;

    wh->head = it->next;
    if (!wh->head)
        wh->tail = NULL;
    wh->queued--;
    wh->attempts = 0;
    free(it->body);
    free(it);
}

/* 408 and 429 ask to try again later; any other 4xx refuses this body for good. */
static bool refused(long status)
{
    return status >= 400 && status < 500 && status != 408 && status != 429;
}

static void on_done(long status, const char *error, void *arg)
{
    keng_webhook_t *wh = arg;

    wh->busy = false;
    if (!error) {
        wh->stats.delivered++;
        pop(wh);
        start(wh);
        return;
    }
    wh->stats.failures++;
    wh->attempts++;
    if (refused(status)) {
        wh->stats.dropped++;
        keng_log_error("the webhook refused an alert; it was dropped",
                       "url=%s status=%ld attempts=%d", wh->shown, status, wh->attempts);
        pop(wh);
        start(wh);
        return;
    }
    uint64_t delay = BACKOFF_FIRST_MS;
    for (int i = 1; i < wh->attempts && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    keng_log_warn("webhook attempt failed; retrying",
                  "url=%s attempt=%d retry_in_ms=%" PRIu64 " queued=%zu error=\"%s\"", wh->shown,
                  wh->attempts, delay, wh->queued, error);
    uv_timer_start(&wh->backoff, on_backoff, delay, 0);
}

/* Starts an attempt for the head of the queue, unless one runs or a backoff waits. */
static void start(keng_webhook_t *wh)
{
    if (wh->closing || wh->busy || !wh->head || uv_is_active((uv_handle_t *)&wh->backoff))
        return;
    keng_http_auth_t auth = {NULL, NULL, wh->bearer};
    if (keng_http_client_post_auth(wh->client, wh->url, wh->head->body, wh->timeout_ms,
                                   wh->bearer ? &auth : NULL, on_done, wh) != 0) {
        on_done(0, "the request could not be made", wh);
        return;
    }
    wh->busy = true;
}

static void on_backoff(uv_timer_t *timer)
{
    start(timer->data);
}

static void on_closed(uv_handle_t *handle)
{
    keng_webhook_t *wh = handle->data;

    while (wh->head)
        pop(wh);
    free(wh->url);
    free(wh->bearer);
    free(wh);
}

keng_webhook_t *keng_webhook_new(uv_loop_t *loop, keng_http_client_t *client, const char *url,
                                 const char *bearer, long timeout_ms, char *errstr,
                                 size_t errstr_size)
{
    keng_webhook_t *wh;
    char why[300];

    if (keng_http_client_check_url(url, why, sizeof(why)) != 0) {
        snprintf(errstr, errstr_size, "webhook.url: %s", why);
        return NULL;
    }
    wh = calloc(1, sizeof(*wh));
    if (!wh || !(wh->url = strdup(url)) || (bearer && !(wh->bearer = strdup(bearer)))) {
        snprintf(errstr, errstr_size, "out of memory");
        free(wh);
        return NULL;
    }
    keng_http_client_redact(url, wh->shown, sizeof(wh->shown));
    wh->loop = loop;
    wh->client = client;
    wh->timeout_ms = timeout_ms;
    uv_timer_init(loop, &wh->backoff);
    wh->backoff.data = wh;
    return wh;
}

int keng_webhook_post(keng_webhook_t *wh, const char *body)
{
    item_t *it;

    if (wh->closing)
        return -1;
    it = calloc(1, sizeof(*it));
    if (!it || !(it->body = strdup(body))) {
        free(it);
        return -1;
    }
    if (wh->queued >= QUEUE_MAX && wh->head && wh->head->next) {
        /* Drop the oldest that is not in progress. */
        item_t *old = wh->head->next;
        wh->head->next = old->next;
        if (wh->tail == old)
            wh->tail = wh->head;
        wh->queued--;
        wh->stats.dropped++;
        free(old->body);
        free(old);
        keng_log_error("the webhook queue is full; the oldest alert was dropped", "url=%s",
                       wh->shown);
    }
    if (wh->tail)
        wh->tail->next = it;
    else
        wh->head = it;
    wh->tail = it;
    wh->queued++;
    start(wh);
    return 0;
}

void keng_webhook_metrics(const keng_webhook_t *wh, FILE *out)
{
    static const keng_webhook_t none;

    if (!wh)
        wh = &none;
    fprintf(out,
            "# HELP keng_webhook_delivered_total Alert transitions the webhook took.\n"
            "# TYPE keng_webhook_delivered_total counter\n"
            "keng_webhook_delivered_total %" PRIu64 "\n"
            "# HELP keng_webhook_failures_total Webhook attempts that failed (each is retried "
            "with backoff).\n"
            "# TYPE keng_webhook_failures_total counter\n"
            "keng_webhook_failures_total %" PRIu64 "\n"
            "# HELP keng_webhook_dropped_total Alert transitions the webhook refused or a full "
            "queue pushed out.\n"
            "# TYPE keng_webhook_dropped_total counter\n"
            "keng_webhook_dropped_total %" PRIu64 "\n"
            "# HELP keng_webhook_queued Alert transitions waiting for the webhook.\n"
            "# TYPE keng_webhook_queued gauge\n"
            "keng_webhook_queued %zu\n",
            wh->stats.delivered, wh->stats.failures, wh->stats.dropped, wh->queued);
}

void keng_webhook_close(keng_webhook_t *wh)
{
    if (!wh || wh->closing)
        return;
    wh->closing = true;
    uv_close((uv_handle_t *)&wh->backoff, on_closed);
}
