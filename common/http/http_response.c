/* The response side of keng's HTTP server: queued writes with their backpressure, error
 * answers, the handler's responses and Server-Sent Events streams; it never parses a request. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include "log.h"

/* ---- writing ---- */

struct write_req {
    uv_write_t req;
    size_t len;
    char data[];
};

size_t keng_http__conn_unsent(struct conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void on_write(uv_write_t *wr, int status)
{
    struct write_req *w = container_of(wr, struct write_req, req);
    struct conn *c = container_of((uv_tcp_t *)wr->handle, struct conn, tcp);
    free(w);
    if (c->closing)
        return;
    if (status < 0 && status != UV_ECANCELED) {
        keng_http__conn_close(c);
        return;
    }
    /* Resume at half the bound, so a client reading slowly does not toggle us every write. */
    if (c->out_paused && keng_http__conn_unsent(c) <= c->srv->limits.max_unsent_bytes / 2) {
        c->out_paused = false;
        keng_http__conn_process(c);
    }
}

/* Queues head followed by body on the socket as they are. Both are borrowed. */
static int raw_write(struct conn *c, const char *head, size_t head_len, const char *body,
                     size_t body_len)
{
    struct write_req *w = malloc(sizeof(*w) + head_len + body_len);
    if (w == NULL)
        return -ENOMEM;
    w->len = head_len + body_len;
    memcpy(w->data, head, head_len);
    if (body_len > 0)
        memcpy(w->data + head_len, body, body_len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0)
        free(w);
    return rc;
}

/* Queues head followed by body on the connection, encrypted on a TLS one. Both are
 * borrowed. */
int keng_http__conn_write(struct conn *c, const char *head, size_t head_len, const char *body,
                          size_t body_len)
{
    if (c->ssl != NULL)
        return keng_http__tls_write(c, head, head_len, body, body_len);
    return raw_write(c, head, head_len, body, body_len);
}

char *keng_http__send_buffer_new(size_t len)
{
    struct write_req *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return NULL;
    w->len = len;
    return w->data;
}

void keng_http__send_buffer_free(char *buf)
{
    if (buf != NULL)
        free(container_of(buf, struct write_req, data));
}

int keng_http__conn_send_buffer(struct conn *c, char *buf, size_t len)
{
    struct write_req *w = container_of(buf, struct write_req, data);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0)
        free(w);
    return rc;
}

static const char *reason_phrase(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return strcmp(s, "<unknown>") == 0 ? "Unknown" : s;
}

/* Whether the ready header lines in extra (may be NULL; kept NUL-terminated) name the header
 * name ("Name:"), in any case. */
static bool extra_has(const struct buf *extra, const char *name)
{
    char line[64];

    if (extra == NULL || extra->len == 0)
        return false;
    if (strncasecmp(extra->p, name, strlen(name)) == 0)
        return true;
    snprintf(line, sizeof(line), "\r\n%s", name);
    return strcasestr(extra->p, line) != NULL;
}

/* The headers every answer carries, whoever wrote it: no type sniffing, no referrer, and a
 * Content-Security-Policy that lets nothing load and no page frame it (JSON and text need
 * nothing more). A handler that serves a page sets its own policy (the dashboard does). */
static int write_security_headers(struct buf *head, const struct buf *extra)
{
    static const char always[] = "X-Content-Type-Options: nosniff\r\n"
                                 "Referrer-Policy: no-referrer\r\n";
    static const char csp[] = "Content-Security-Policy: default-src 'none'; "
                              "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n";
    int rc = keng_http__buf_append(head, always, sizeof(always) - 1);
    if (rc == 0 && !extra_has(extra, "Content-Security-Policy:"))
        rc = keng_http__buf_append(head, csp, sizeof(csp) - 1);
    return rc;
}

/* Writes a complete response. extra (may be NULL) holds ready "Name: value\r\n" lines.
 * keep_alive decides the Connection header; http10 says the client spoke HTTP/1.0, which
 * needs keep-alive said out loud. */
static int conn_write_response(struct conn *c, int status, const char *content_type,
                               const struct buf *extra, const char *body, size_t len,
                               bool keep_alive, bool http10)
{
    struct buf head = {0};
    int rc = keng_http__buf_printf(&head, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (rc == 0 && content_type != NULL) {
        rc = keng_http__buf_append(&head, "Content-Type: ", 14);
        if (rc == 0)
            rc = keng_http__buf_append(&head, content_type, strlen(content_type));
        if (rc == 0)
            rc = keng_http__buf_append(&head, "\r\n", 2);
    }
    if (rc == 0)
        rc = keng_http__buf_printf(&head, "Content-Length: %zu\r\n", len);
    if (rc == 0)
        rc = write_security_headers(&head, extra);
    if (rc == 0 && extra != NULL && extra->len > 0)
        rc = keng_http__buf_append(&head, extra->p, extra->len);
    if (rc == 0 && !keep_alive)
        rc = keng_http__buf_append(&head, "Connection: close\r\n", 19);
    if (rc == 0 && keep_alive && http10)
        rc = keng_http__buf_append(&head, "Connection: keep-alive\r\n", 24);
    if (rc == 0)
        rc = keng_http__buf_append(&head, "\r\n", 2);
    if (rc == 0)
        rc = keng_http__conn_write(c, head.p, head.len, body, len);
    free(head.p);
    return rc;
}

/* Answers with an error the server decided on, then closes: the request, if any, is dropped
 * and the handler never sees it. */
/* The JSON text of an error the server answers by itself; NULL when out of memory. */
static char *error_text(keng_http_server_t *srv, int status, const char *why)
{
    json_t *body = srv->error_fn != NULL ? srv->error_fn(status, why, srv->ctx) : NULL;
    if (body == NULL)
        body = json_pack("{s:s}", "error", why);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

/* Answers an error of the server's own and closes the connection after it. */
void keng_http__conn_fail(struct conn *c, int status, const char *why)
{
    char *text = error_text(c->srv, status, why);
    struct buf extra = {0};
    int rc = 0;
    /* The headers a precheck added (WWW-Authenticate, Retry-After) go with its refusal. */
    if (c->req && c->req->extra.len > 0)
        rc = keng_http__buf_append(&extra, c->req->extra.p, c->req->extra.len);
    if (rc == 0 && (status == 503 || status == 429) && !extra_has(&extra, "Retry-After:"))
        rc = keng_http__buf_append(&extra, "Retry-After: 1\r\n", 16);
    keng_http__request_free(c->req);
    c->req = NULL;
    if (rc == 0 && text != NULL)
        rc = conn_write_response(c, status, "application/json", &extra, text, strlen(text), false,
                                 false);
    free(text);
    free(extra.p);
    if (rc < 0 || text == NULL) {
        keng_http__conn_close(c);
        return;
    }
    keng_http__conn_shutdown(c);
}

/* ---- request accessors ---- */

void keng_http_request_delay_refusal(keng_http_request_t *req, unsigned ms)
{
    if (req->conn != NULL)
        req->conn->refusal_delay_ms = ms;
}

const char *keng_http_request_method(const keng_http_request_t *req)
{
    return req->method;
}

const char *keng_http_request_path(const keng_http_request_t *req)
{
    return req->path;
}

const char *keng_http_request_query(const keng_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++) {
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    }
    return NULL;
}

const char *keng_http_request_header(const keng_http_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (req->headers[i].name.p != NULL && strcasecmp(req->headers[i].name.p, name) == 0)
            return req->headers[i].value.p;
    }
    return NULL;
}

const char *keng_http_request_body(const keng_http_request_t *req, size_t *len)
{
    if (len != NULL)
        *len = req->body.len;
    return req->body.p != NULL ? req->body.p : "";
}

const char *keng_http_request_peer(const keng_http_request_t *req)
{
    return req->peer;
}

/* A name or value with CR or LF would let a caller split the response; such a header is
 * refused with a warning. */
void keng_http_request_add_header(keng_http_request_t *req, const char *name, const char *value)
{
    if (name[strcspn(name, "\r\n:")] != '\0' || value[strcspn(value, "\r\n")] != '\0') {
        keng_log_warn("http response header refused: it contains a line break", "name=\"%s\"",
                      name);
        return;
    }
    if (keng_http__buf_append(&req->extra, name, strlen(name)) < 0 ||
        keng_http__buf_append(&req->extra, ": ", 2) < 0 ||
        keng_http__buf_append(&req->extra, value, strlen(value)) < 0 ||
        keng_http__buf_append(&req->extra, "\r\n", 2) < 0)
        keng_log_error("http response header dropped: out of memory", "name=\"%s\"", name);
}

/* ---- responses ---- */

void keng_http_respond(keng_http_request_t *req, int status, const char *content_type,
                       const char *body, size_t len)
{
    struct conn *c = req->conn;
    if (c == NULL) {
        keng_http__request_free(req); /* the client left; the answer goes nowhere */
        return;
    }
    bool keep = req->keep_alive && !c->srv->closing;
    bool http10 = req->http_major == 1 && req->http_minor == 0;
    int rc = conn_write_response(c, status, content_type, &req->extra, body, len, keep, http10);
    c->active = NULL;
    c->srv->in_flight--;
    keng_http__request_free(req);
    keng_http__conn_touch(c);
    if (rc < 0) {
        keng_http__conn_close(c);
        return;
    }
    if (!keep) {
        keng_http__conn_shutdown(c);
        return;
    }
    c->state = ST_IDLE;
    keng_http__conn_timer(c, c->srv->limits.idle_timeout_ms);
    keng_http__conn_process(c);
}

void keng_http_respond_json(keng_http_request_t *req, int status, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char msg[] = "{\"error\":\"the response could not be encoded\"}";
        keng_http_respond(req, 500, "application/json", msg, sizeof(msg) - 1);
        return;
    }
    keng_http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

/* When the client already left, returns -ENOTCONN and the request is still the handler's
 * to end with keng_http_respond (which then drops the answer). */
int keng_http_stream_begin(keng_http_request_t *req, const char *content_type)
{
    struct conn *c = req->conn;
    if (c == NULL || c->closing)
        return -ENOTCONN;
    keng_http_server_t *srv = c->srv;
    if (srv->nstreams >= srv->limits.max_streams) {
        srv->stats.streams_refused++;
        keng_http__server_note(srv);
        return -EBUSY;
    }
    /* Cache-Control once: the handler's own, else no-cache. */
    bool own_cc = extra_has(&req->extra, "Cache-Control:");
    struct buf head = {0};
    int rc = keng_http__buf_printf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%s",
                                   content_type != NULL ? content_type : "text/event-stream",
                                   own_cc ? "" : "Cache-Control: no-cache\r\n");
    if (rc == 0)
        rc = write_security_headers(&head, &req->extra);
    if (rc == 0 && req->extra.len > 0)
        rc = keng_http__buf_append(&head, req->extra.p, req->extra.len);
    if (rc == 0)
        rc = keng_http__buf_append(&head, "\r\n", 2);
    if (rc == 0)
        rc = keng_http__conn_write(c, head.p, head.len, NULL, 0);
    free(head.p);
    if (rc < 0)
        return rc;
    req->streaming = true;
    c->srv->in_flight--;
    c->state = ST_STREAM;
    /* Streams have their own cap: this one leaves room for ordinary connections. */
    if (c->counted)
        srv->nconns--;
    c->counted = false;
    c->stream_counted = true;
    srv->nstreams++;
    /* A small kernel buffer keeps most of what a stalled reader has not taken in our queue,
     * where stream_max_unsent_bytes sees it (the kernel would otherwise take megabytes). */
    if (srv->limits.stream_sndbuf_bytes > 0) {
        int size = (int)srv->limits.stream_sndbuf_bytes;
        uv_send_buffer_size((uv_handle_t *)&c->tcp, &size);
    }
    c->inlen = c->inoff = 0;
    keng_http__conn_read_start(c);
    return 0;
}

int keng_http_stream_write(keng_http_request_t *req, const char *data, size_t len)
{
    struct conn *c = req->conn;
    if (c == NULL || c->closing || c->shutting_down)
        return -EPIPE;
    if (keng_http__conn_unsent(c) + len > c->srv->limits.stream_max_unsent_bytes) {
        c->srv->stats.streams_cut_off++;
        keng_http__server_note(c->srv);
        keng_http__conn_close(c);
        return -ENOBUFS;
    }
    int rc = keng_http__conn_write(c, data, len, NULL, 0);
    if (rc < 0)
        keng_http__conn_close(c);
    return rc;
}

void keng_http_stream_on_close(keng_http_request_t *req, void (*on_close)(void *arg), void *arg)
{
    req->on_close = on_close;
    req->on_close_arg = arg;
}

void keng_http_stream_end(keng_http_request_t *req)
{
    struct conn *c = req->conn;
    if (c != NULL)
        keng_http__conn_shutdown(c);
}
