/* A small HTTP/1.1 client on uv_tcp for alert webhooks: resolve, connect, write one POST with
 * Connection: close, read the status line, close. One request at a time keeps the
 * receiver's view in the order of the transitions. */
#include "webhook.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define QUEUE_MAX          1000
#define ATTEMPTS_MAX       6
#define BACKOFF_FIRST_MS   500
#define BACKOFF_MAX_MS     30000
#define REQUEST_TIMEOUT_MS 5000
#define HOST_MAX           256
#define PATH_MAX_LEN       1024

typedef struct item {
    struct item *next;
    char *body;
    int attempts;
} item_t;

typedef struct conn {
    keng_webhook_t *wh;
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char *request;
    char resp[64];
    size_t resp_len;
    bool resolving; /* gai in progress */
    bool tcp_open;
    bool done;
} conn_t;

struct keng_webhook {
    uv_loop_t *loop;
    char host[HOST_MAX];
    char port[8];
    char path[PATH_MAX_LEN];
    char *url;
    item_t *head, *tail;
    size_t queued;
    conn_t *cur;
    uv_timer_t backoff; /* waits before the next attempt */
    uv_timer_t timeout; /* bounds one attempt */
    int handles_open;   /* the two timers */
    int conns_open;     /* conns whose handles are not closed yet */
    bool closing;
    uint64_t failures, delivered;
};

static void start(keng_webhook_t *wh);
static void on_backoff(uv_timer_t *timer);

static int parse_url(keng_webhook_t *wh, const char *url, char *errstr, size_t errstr_size)
{
    const char *p, *host, *host_end, *path;
    size_t len;

    if (strncmp(url, "http://", 7) != 0) {
        snprintf(errstr, errstr_size,
                 "webhook.url: only http://host:port/path is supported (got '%.64s')", url);
        return -1;
    }
    p = url + 7;
    path = strchr(p, '/');
    if (!path)
        path = p + strlen(p);
    if (*p == '[') { /* IPv6 literal */
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(path - host));
        if (!host_end) {
            snprintf(errstr, errstr_size, "webhook.url: unclosed '[' in '%.64s'", url);
            return -1;
        }
        p = host_end + 1;
    } else {
        host = p;
        host_end = memchr(p, ':', (size_t)(path - p));
        if (!host_end)
            host_end = path;
        p = host_end;
    }
    len = (size_t)(host_end - host);
    if (len == 0 || len >= sizeof(wh->host)) {
        snprintf(errstr, errstr_size, "webhook.url: no host, or a host too long, in '%.64s'", url);
        return -1;
    }
    memcpy(wh->host, host, len);
    wh->host[len] = '\0';
    snprintf(wh->port, sizeof(wh->port), "80");
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end != path || port < 1 || port > 65535) {
            snprintf(errstr, errstr_size, "webhook.url: the port must be 1 to 65535 in '%.64s'",
                     url);
            return -1;
        }
        snprintf(wh->port, sizeof(wh->port), "%ld", port);
    } else if (p != path) {
        snprintf(errstr, errstr_size, "webhook.url: cannot read '%.64s'", url);
        return -1;
    }
    len = strlen(path);
    if (len >= sizeof(wh->path)) {
        snprintf(errstr, errstr_size, "webhook.url: the path is too long");
        return -1;
    }
    snprintf(wh->path, sizeof(wh->path), "%s", len ? path : "/");
    for (const char *c = wh->path; *c; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(errstr, errstr_size, "webhook.url: the path has spaces or control bytes");
            return -1;
        }
    }
    return 0;
}

static void maybe_free(keng_webhook_t *wh)
{
    if (!wh->closing || wh->handles_open > 0 || wh->conns_open > 0)
        return;
    while (wh->head) {
        item_t *it = wh->head;
        wh->head = it->next;
        free(it->body);
        free(it);
    }
    free(wh->url);
    free(wh);
}

static void conn_free(conn_t *c)
{
    keng_webhook_t *wh = c->wh;

    free(c->request);
    free(c);
    wh->conns_open--;
    maybe_free(wh);
}

static void on_tcp_closed(uv_handle_t *handle)
{
    conn_free(handle->data);
}

static void pop(keng_webhook_t *wh)
{
    item_t *it = wh->head;

    wh->head = it->next;
    if (!wh->head)
        wh->tail = NULL;
    wh->queued--;
    free(it->body);
    free(it);
}

/* Ends the attempt: the conn goes once its handle is closed (or now, when it has none). */
static void finish(conn_t *c, bool ok, const char *why)
{
    keng_webhook_t *wh = c->wh;

    if (c->done)
        return;
    c->done = true;
    wh->cur = NULL;
    uv_timer_stop(&wh->timeout);
    if (c->tcp_open)
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    else if (!c->resolving)
        conn_free(c);
    if (wh->closing || !wh->head)
        return;
    if (ok) {
        wh->delivered++;
        pop(wh);
        start(wh);
        return;
    }
    wh->failures++;
    item_t *it = wh->head;
    if (++it->attempts >= ATTEMPTS_MAX) {
        keng_log_error("a webhook delivery was given up", "url=%s attempts=%d error=\"%s\"",
                       wh->url, it->attempts, why);
        pop(wh);
        start(wh);
        return;
    }
    uint64_t delay = BACKOFF_FIRST_MS;
    for (int i = 1; i < it->attempts && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    keng_log_warn("webhook attempt failed; retrying",
                  "url=%s attempt=%d retry_in_ms=%llu error=\"%s\"", wh->url, it->attempts,
                  (unsigned long long)delay, why);
    uv_timer_start(&wh->backoff, on_backoff, delay, 0);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char scratch[4096];

    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    char why[96];

    if (c->done)
        return;
    if (nread < 0) {
        finish(c, false, "the receiver closed the connection without a status line");
        return;
    }
    size_t n = (size_t)nread;
    if (n > sizeof(c->resp) - 1 - c->resp_len)
        n = sizeof(c->resp) - 1 - c->resp_len;
    memcpy(c->resp + c->resp_len, buf->base, n);
    c->resp_len += n;
    c->resp[c->resp_len] = '\0';
    if (!strstr(c->resp, "\r\n") && c->resp_len < sizeof(c->resp) - 1)
        return;
    int status = 0;
    if (sscanf(c->resp, "HTTP/1.%*d %d", &status) != 1) {
        finish(c, false, "the answer is not HTTP");
        return;
    }
    snprintf(why, sizeof(why), "the receiver answered %d", status);
    finish(c, status >= 200 && status < 300, why);
}

static void on_write(uv_write_t *req, int status)
{
    conn_t *c = req->data;

    if (c->done)
        return;
    if (status < 0)
        finish(c, false, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    uv_buf_t buf;

    if (c->done)
        return;
    if (status < 0) {
        finish(c, false, uv_strerror(status));
        return;
    }
    buf = uv_buf_init(c->request, (unsigned)strlen(c->request));
    c->write.data = c;
    status = uv_write(&c->write, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (status == 0)
        status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (status < 0)
        finish(c, false, uv_strerror(status));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn_t *c = req->data;
    keng_webhook_t *wh = c->wh;

    c->resolving = false;
    if (c->done) { /* timed out or closed while resolving */
        uv_freeaddrinfo(res);
        conn_free(c);
        return;
    }
    if (status < 0) {
        finish(c, false, uv_strerror(status));
        return;
    }
    uv_tcp_init(wh->loop, &c->tcp);
    c->tcp.data = c;
    c->tcp_open = true;
    c->connect.data = c;
    status = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (status < 0)
        finish(c, false, uv_strerror(status));
}

static void on_timeout(uv_timer_t *timer)
{
    keng_webhook_t *wh = timer->data;

    if (wh->cur)
        finish(wh->cur, false, "no answer within 5 s");
}

/* Starts an attempt for the head of the queue, unless one runs or a backoff waits. */
static void start(keng_webhook_t *wh)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    conn_t *c;
    int rc;

    if (wh->closing || wh->cur || !wh->head || uv_is_active((uv_handle_t *)&wh->backoff))
        return;
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->wh = wh;
    if (asprintf(&c->request,
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: keng-aggregate\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 wh->path, wh->host, wh->port, strlen(wh->head->body), wh->head->body) < 0) {
        free(c);
        return;
    }
    wh->conns_open++;
    wh->cur = c;
    c->gai.data = c;
    c->resolving = true;
    uv_timer_start(&wh->timeout, on_timeout, REQUEST_TIMEOUT_MS, 0);
    rc = uv_getaddrinfo(wh->loop, &c->gai, on_resolved, wh->host, wh->port, &hints);
    if (rc < 0) {
        c->resolving = false;
        finish(c, false, uv_strerror(rc));
    }
}

static void on_backoff(uv_timer_t *timer)
{
    start(timer->data);
}

static void on_timer_closed(uv_handle_t *handle)
{
    keng_webhook_t *wh = handle->data;

    wh->handles_open--;
    maybe_free(wh);
}

keng_webhook_t *keng_webhook_new(uv_loop_t *loop, const char *url, char *errstr, size_t errstr_size)
{
    keng_webhook_t *wh = calloc(1, sizeof(*wh));

    if (!wh || !(wh->url = strdup(url))) {
        snprintf(errstr, errstr_size, "out of memory");
        free(wh);
        return NULL;
    }
    if (parse_url(wh, url, errstr, errstr_size) != 0) {
        free(wh->url);
        free(wh);
        return NULL;
    }
    wh->loop = loop;
    uv_timer_init(loop, &wh->backoff);
    uv_timer_init(loop, &wh->timeout);
    wh->backoff.data = wh->timeout.data = wh;
    wh->handles_open = 2;
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
        wh->failures++;
        free(old->body);
        free(old);
        keng_log_error("the webhook queue is full; the oldest alert was dropped", "url=%s",
                       wh->url);
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

uint64_t keng_webhook_failures(const keng_webhook_t *wh)
{
    return wh->failures;
}

uint64_t keng_webhook_delivered(const keng_webhook_t *wh)
{
    return wh->delivered;
}

void keng_webhook_close(keng_webhook_t *wh)
{
    if (!wh || wh->closing)
        return;
    wh->closing = true;
    if (wh->cur) {
        conn_t *c = wh->cur;
        if (c->resolving)
            uv_cancel((uv_req_t *)&c->gai);
        finish(c, false, "shutting down");
    }
    uv_close((uv_handle_t *)&wh->backoff, on_timer_closed);
    uv_close((uv_handle_t *)&wh->timeout, on_timer_closed);
}
