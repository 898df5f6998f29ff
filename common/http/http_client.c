/* libcurl's multi interface driven by the libuv loop, which it never blocks: curl says which
 * sockets to watch (socket callback) and when to call it back (timer callback); the loop tells
 * curl when a socket is ready or the timer fired, and finished transfers are collected after
 * each call. */
#include "http_client.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

typedef struct request {
    struct request *next, *prev;
    keng_http_client_t *client;
    CURL *easy;
    struct curl_slist *headers;
    keng_http_done_fn done;
    keng_http_body_fn body_done; /* instead of done, for keng_http_client_request */
    void *arg;
    char *answer; /* the answer's body, for body_done; NUL-terminated */
    size_t answer_len, answer_max;
    bool answer_cut; /* longer than answer_max */
    char error[CURL_ERROR_SIZE];
} request_t;

/* One socket curl asked to watch; freed in its close callback. */
typedef struct sock {
    uv_poll_t poll;
    struct sock *next, *prev; /* watched now */
    keng_http_client_t *client;
    curl_socket_t fd;
} sock_t;

struct keng_http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    request_t *requests; /* in flight */
    sock_t *socks;       /* watched */
    int handles_open;    /* the timer and the sockets' polls */
    bool closing;
};

static void maybe_free(keng_http_client_t *c)
{
    if (c->closing && c->handles_open == 0)
        free(c);
}

static void on_handle_closed(uv_handle_t *handle)
{
    keng_http_client_t *c;

    if (handle->type == UV_POLL) {
        sock_t *s = handle->data;
        c = s->client;
        free(s);
    } else {
        c = handle->data;
    }
    c->handles_open--;
    maybe_free(c);
}

static void request_free(request_t *r)
{
    keng_http_client_t *c = r->client;

    if (r->prev)
        r->prev->next = r->next;
    else
        c->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    curl_multi_remove_handle(c->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->answer);
    free(r);
}

/* Hands every finished transfer to its callback. */
static void collect(keng_http_client_t *c)
{
    CURLMsg *msg;
    int left;

    while (!c->closing && (msg = curl_multi_info_read(c->multi, &left))) {
        request_t *r;
        long status = 0;
        char why[CURL_ERROR_SIZE + 64];
        const char *error = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (msg->data.result != CURLE_OK) {
            snprintf(why, sizeof(why), "%s",
                     r->error[0] ? r->error : curl_easy_strerror(msg->data.result));
            error = why;
        } else {
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
            if (status < 200 || status > 299) {
                snprintf(why, sizeof(why), "the receiver answered %ld", status);
                error = why;
            }
        }
        keng_http_done_fn done = r->done;
        keng_http_body_fn body_done = r->body_done;
        void *arg = r->arg;
        if (body_done) {
            char *answer = r->answer;
            size_t len = r->answer_len;
            if (!error && r->answer_cut) {
                snprintf(why, sizeof(why), "the answer is longer than %zu bytes", r->answer_max);
                error = why;
            }
            r->answer = NULL;
            request_free(r);
            body_done(status, error, answer ? answer : "", len, arg); /* last, as below */
            free(answer);
            continue;
        }
        request_free(r);
        done(status, error, arg); /* last: it may post again, or close the client */
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    sock_t *s = handle->data;
    keng_http_client_t *c = s->client;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    collect(c);
}

static void on_timer(uv_timer_t *timer)
{
    keng_http_client_t *c = timer->data;
    int running;

    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect(c);
}

/* Stops watching s; uv_close does it now, while curl still has the fd open. */
static void sock_unwatch(sock_t *s)
{
    keng_http_client_t *c = s->client;

    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
}

/* curl: watch fd for what, or stop watching it. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    keng_http_client_t *c = userp;
    sock_t *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_unwatch(s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->client = c;
        s->fd = fd;
        s->poll.data = s;
        s->next = c->socks;
        if (s->next)
            s->next->prev = s;
        c->socks = s;
        c->handles_open++;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

/* curl: call back in timeout_ms (-1: no timer). */
static int on_timeout_change(CURLM *multi, long timeout_ms, void *userp)
{
    keng_http_client_t *c = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t discard(char *data, size_t size, size_t n, void *userp)
{
    (void)data;
    (void)userp;
    return size * n;
}

static size_t keep(char *data, size_t size, size_t n, void *userp)
{
    request_t *r = userp;
    size_t len = size * n;

    if (r->answer_len + len > r->answer_max) {
        r->answer_cut = true;
        return len; /* read on, keep no more */
    }
    char *grown = realloc(r->answer, r->answer_len + len + 1);
    if (!grown)
        return 0; /* curl fails the transfer */
    memcpy(grown + r->answer_len, data, len);
    r->answer = grown;
    r->answer_len += len;
    grown[r->answer_len] = '\0';
    return len;
}

keng_http_client_t *keng_http_client_new(uv_loop_t *loop, char *errstr, size_t errstr_size)
{
    keng_http_client_t *c = NULL;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errstr, errstr_size, "libcurl cannot start");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->multi = curl_multi_init())) {
        snprintf(errstr, errstr_size, "out of memory");
        free(c);
        return NULL;
    }
    c->loop = loop;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timeout_change);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 1;
    return c;
}

/* Frees a request that never reached the multi handle. Returns -1, for the caller's return. */
static int drop(request_t *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r);
    return -1;
}

/* What every request shares once its URL, body and write function are set: the headers, the
 * credentials, the timeout, and its place in the multi handle and the client's list. Returns
 * 0, or -1 with r freed. */
static int start(keng_http_client_t *c, request_t *r, const keng_http_auth_t *auth, long timeout_ms)
{
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    if (auth && auth->username &&
        (curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, CURLAUTH_BASIC) != CURLE_OK ||
         curl_easy_setopt(r->easy, CURLOPT_USERNAME, auth->username) != CURLE_OK ||
         curl_easy_setopt(r->easy, CURLOPT_PASSWORD, auth->password ? auth->password : "") !=
             CURLE_OK))
        return drop(r);
    if (auth && auth->bearer &&
        (curl_easy_setopt(r->easy, CURLOPT_HTTPAUTH, CURLAUTH_BEARER) != CURLE_OK ||
         curl_easy_setopt(r->easy, CURLOPT_XOAUTH2_BEARER, auth->bearer) != CURLE_OK))
        return drop(r);
    /* NOSIGNAL: no SIGALRM for name lookups in a program with its own signal handling. */
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "keng/" KENG_VERSION);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
        return drop(r);
    r->next = c->requests;
    if (r->next)
        r->next->prev = r;
    c->requests = r;
    return 0;
}

int keng_http_client_post(keng_http_client_t *c, const char *url, const char *body, long timeout_ms,
                          keng_http_done_fn done, void *arg)
{
    return keng_http_client_post_auth(c, url, body, timeout_ms, NULL, done, arg);
}

int keng_http_client_post_auth(keng_http_client_t *c, const char *url, const char *body,
                               long timeout_ms, const keng_http_auth_t *auth,
                               keng_http_done_fn done, void *arg)
{
    request_t *r;

    if (c->closing)
        return -1;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->client = c;
    r->done = done;
    r->arg = arg;
    r->easy = curl_easy_init();
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!r->easy || !r->headers)
        goto fail;
    if (curl_easy_setopt(r->easy, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
        goto fail;
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, discard);
    return start(c, r, auth, timeout_ms);

fail:
    return drop(r);
}

int keng_http_client_request(keng_http_client_t *c, const keng_http_request_t *req,
                             keng_http_body_fn done, void *arg)
{
    request_t *r;
    char header[160];
    const keng_http_auth_t *auth = req->auth;

    if (c->closing)
        return -1;
    r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->client = c;
    r->body_done = done;
    r->arg = arg;
    r->answer_max = req->max_answer ? req->max_answer : 1 << 20;
    r->easy = curl_easy_init();
    if (!r->easy)
        goto fail;
    snprintf(header, sizeof(header), "Content-Type: %s",
             req->content_type ? req->content_type : "application/json");
    r->headers = curl_slist_append(NULL, header);
    if (r->headers && req->accept) {
        snprintf(header, sizeof(header), "Accept: %s", req->accept);
        struct curl_slist *more = curl_slist_append(r->headers, header);
        if (!more)
            goto fail;
        r->headers = more;
    }
    if (!r->headers)
        goto fail;
    if (curl_easy_setopt(r->easy, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
        goto fail;
    if (req->body && curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, req->body) != CURLE_OK)
        goto fail;
    if (req->method && curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK)
        goto fail;
    if (req->ca_file && curl_easy_setopt(r->easy, CURLOPT_CAINFO, req->ca_file) != CURLE_OK)
        goto fail;
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    return start(c, r, auth, req->timeout_ms);

fail:
    return drop(r);
}

void keng_http_client_redact(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;

    if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) != CURLUE_OK)
            port = NULL;
        snprintf(out, size, "%s://%s%s%s", scheme, host, port ? ":" : "", port ? port : "");
    } else {
        snprintf(out, size, "(not a URL)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

int keng_http_client_check_url(const char *url, char *errstr, size_t errstr_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -1;

    if (!u) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    /* The URL itself is never in the message: it may hold credentials. */
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        snprintf(errstr, errstr_size,
                 "the value is not a URL (expected http://host:port/path; not shown, as it may "
                 "hold credentials)");
        goto out;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(errstr, errstr_size, "%s://%s...: only http:// and https:// are supported", scheme,
                 host);
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

void keng_http_client_close(keng_http_client_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    while (c->requests) {
        request_t *r = c->requests;
        keng_http_body_fn body_done = r->body_done;
        void *arg = r->arg;
        request_free(r);
        /* Its owner may have memory to give back: told, with status -1. */
        if (body_done)
            body_done(-1, "the HTTP client is closing", "", 0, arg);
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_unwatch(c->socks);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}
