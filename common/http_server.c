/* keng's HTTP/1.1 server: one connection state machine per client socket on the libuv loop,
 * with http-parser doing the parsing and this file deciding when to read, answer and close.
 *
 * Thread: everything runs on the loop's thread. */
#include "http_server.h"

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

#include <http_parser.h>

#include "log.h"

/* Bytes of later pipelined requests buffered while the handler works on the current one;
 * past it we stop reading so a client cannot make us buffer without bound. */
#define HANDLER_READ_CAP (64 * 1024)
#define READ_CHUNK       (16 * 1024)
/* After answering with an error we keep draining the socket for a while before closing it:
 * closing with unread bytes makes the kernel send a reset, which can destroy the answer
 * before the client has read it. */
#define LINGER_MS 2000
/* File descriptors kept for everything but client sockets: the listener, Kafka's sockets and
 * pipes, the checkpoint, log files. */
#define FD_RESERVE 256
/* Connection-cap refusals, evictions and stream cut-offs are logged at most this often, as
 * one line with the counts since the last one, so a flood cannot flood the log. */
#define NOTE_INTERVAL_MS 10000

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

struct header {
    struct buf name;
    struct buf value;
};

struct param {
    char *name;
    char *value;
};

enum conn_state {
    ST_IDLE,    /* waiting for the first byte of a request */
    ST_HEADERS, /* request line and headers */
    ST_BODY,    /* body */
    ST_HANDLER, /* the handler has the request; parsing paused, later bytes buffered */
    ST_STREAM,  /* a stream; reads are drained only to notice the client leaving */
    ST_CLOSING, /* last answer queued, write side shut down, draining until close */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    keng_http_server_t *srv;
    TAILQ_ENTRY(conn) link;
    enum conn_state state;
    char *inbuf; /* received bytes, parsed from inoff to inlen */
    size_t inlen;
    size_t inoff;
    size_t incap;
    keng_http_request_t *req;    /* being parsed; owned here */
    keng_http_request_t *active; /* with the handler, or a stream */
    size_t header_bytes;
    int error_status; /* set by a parser callback that refuses the request */
    char error_why[200];
    int handles_open;
    bool counted;        /* counts toward max_connections (a 503'd one does not) */
    bool stream_counted; /* counts toward max_streams */
    bool got_byte;       /* the client has sent something (else first_byte_timeout_ms) */
    bool out_paused;     /* not reading: too many answers unsent */
    /* Line ends of the request head, checked on the raw bytes before http-parser (which is
     * built lenient) sees them: CRLF only, no folded lines. */
    bool head_scan;
    bool head_line_seen; /* a non-empty line, so an empty one ends the head */
    size_t scan_off;     /* inbuf offset scanned up to */
    size_t line_len;
    char scan_prev;
    bool reading;
    bool closing; /* uv_close called */
    bool shutting_down;
    bool shutdown_done;
    bool processing;
    bool eof;
    char peer[80];
};

struct keng_http_request {
    struct conn *conn; /* NULL once the connection is gone and the answer will be dropped */
    const char *method;
    struct buf url;
    char *path;
    struct param *params;
    size_t nparams;
    struct header *headers;
    size_t nheaders;
    bool last_was_value;
    struct buf body;
    struct buf extra; /* response headers from keng_http_request_add_header */
    bool keep_alive;
    unsigned short http_major;
    unsigned short http_minor;
    bool streaming;
    void (*on_close)(void *arg);
    void *on_close_arg;
    char peer[80];
};

struct keng_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    keng_http_limits_t limits;
    keng_http_handler_fn handler;
    void *ctx;
    /* Least recently active first: the head is what the cap evicts. */
    TAILQ_HEAD(conn_list, conn) conns;
    unsigned nconns; /* counted connections */
    unsigned nstreams;
    keng_http_stats_t stats;
    keng_http_error_fn error_fn;
    uint64_t note_next_ms;   /* loop time of the next allowed log line about the caps */
    keng_http_stats_t noted; /* the stats at the last log line */
    unsigned nall;           /* every connection not yet freed, 503'd ones included */
    unsigned in_flight;
    int port;
    bool closing;
    bool listener_closed;
    void (*done)(void *arg);
    void *done_arg;
};

static void conn_close(struct conn *c);
static void conn_shutdown(struct conn *c);
static void conn_process(struct conn *c);
static void fit_fd_limit(keng_http_server_t *srv);

static int buf_append(struct buf *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return buf_append(b, tmp, (size_t)n);
}

void keng_http_limits_default(keng_http_limits_t *limits)
{
    limits->max_header_bytes = 16 * 1024;
    limits->max_body_bytes = 1024 * 1024;
    limits->header_timeout_ms = 10000;
    limits->body_timeout_ms = 10000;
    limits->idle_timeout_ms = 60000;
    limits->first_byte_timeout_ms = 5000;
    /* Room for every one of the province's 7,588 boards to hold a keep-alive connection at
     * once, with a third again for reconnects whose old connection has not yet timed out and
     * for operators. An idle connection costs about 1 KiB here (its read buffer is freed
     * between requests). */
    limits->max_connections = 10000;
    limits->max_streams = 256;
    limits->max_unsent_bytes = 256 * 1024;
    limits->stream_max_unsent_bytes = 64 * 1024;
    limits->stream_sndbuf_bytes = 16 * 1024;
}

/* The http.* keys keng_http_limits_from_config reads: every program that serves HTTP lists
 * them among its known config keys. */
keng_config_keys_t keng_http_server_config_keys = {
    "http.max_body_bytes",          "http.max_header_bytes",    "http.header_timeout_ms",
    "http.body_timeout_ms",         "http.idle_timeout_ms",     "http.first_byte_timeout_ms",
    "http.max_connections",         "http.max_streams",         "http.max_unsent_bytes",
    "http.stream_max_unsent_bytes", "http.stream_sndbuf_bytes", NULL};

int keng_http_limits_from_config(keng_http_limits_t *limits, const keng_config_t *cfg, char *errstr,
                                 size_t errstr_size)
{
    struct {
        const char *key;
        long long min, max;
        size_t *size;
        unsigned *ms;
    } keys[] = {
        {"http.max_body_bytes", 1, 1LL << 30, &limits->max_body_bytes, NULL},
        {"http.max_header_bytes", 256, 1 << 20, &limits->max_header_bytes, NULL},
        {"http.header_timeout_ms", 0, 3600000, NULL, &limits->header_timeout_ms},
        {"http.body_timeout_ms", 0, 3600000, NULL, &limits->body_timeout_ms},
        {"http.idle_timeout_ms", 0, 86400000, NULL, &limits->idle_timeout_ms},
        {"http.first_byte_timeout_ms", 0, 3600000, NULL, &limits->first_byte_timeout_ms},
        {"http.max_connections", 1, 1000000, NULL, &limits->max_connections},
        {"http.max_streams", 0, 1000000, NULL, &limits->max_streams},
        {"http.max_unsent_bytes", 4096, 1LL << 30, &limits->max_unsent_bytes, NULL},
        {"http.stream_max_unsent_bytes", 4096, 1LL << 30, &limits->stream_max_unsent_bytes, NULL},
        {"http.stream_sndbuf_bytes", 0, 1 << 24, NULL, &limits->stream_sndbuf_bytes},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        long long def = keys[i].size ? (long long)*keys[i].size : (long long)*keys[i].ms;
        long long v;
        if (keng_config_get_int(cfg, keys[i].key, def, keys[i].min, keys[i].max, &v, errstr,
                                errstr_size) != 0)
            return -1;
        if (keys[i].size)
            *keys[i].size = (size_t)v;
        else
            *keys[i].ms = (unsigned)v;
    }
    return 0;
}

/* ---- requests ---- */

static keng_http_request_t *request_new(struct conn *c)
{
    keng_http_request_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return NULL;
    req->conn = c;
    req->method = "GET";
    snprintf(req->peer, sizeof(req->peer), "%s", c->peer);
    return req;
}

static void request_free(keng_http_request_t *req)
{
    if (req == NULL)
        return;
    for (size_t i = 0; i < req->nheaders; i++) {
        free(req->headers[i].name.p);
        free(req->headers[i].value.p);
    }
    for (size_t i = 0; i < req->nparams; i++) {
        free(req->params[i].name);
        free(req->params[i].value);
    }
    free(req->headers);
    free(req->params);
    free(req->url.p);
    free(req->path);
    free(req->body.p);
    free(req->extra.p);
    free(req);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes %XX and '+' of a query component; a malformed %-sequence stays as written. A
 * decoded control character (%00 above all, which would cut the C string short and let
 * "D04%00junk" pass as "D04") sets *bad. */
static char *query_decode(const char *s, size_t n, bool *bad)
{
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            unsigned char ch = (unsigned char)out[o - 1];
            if (ch < 0x20 || ch == 0x7f)
                *bad = true;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Returns 0, -ENOMEM, or -EINVAL for a parameter with a control character. */
static int query_parse(keng_http_request_t *req, const char *q, size_t n)
{
    size_t i = 0;
    bool bad = false;
    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        if (end > i) {
            size_t eq = i;
            while (eq < end && q[eq] != '=')
                eq++;
            struct param *params = realloc(req->params, (req->nparams + 1) * sizeof(*params));
            if (params == NULL)
                return -ENOMEM;
            req->params = params;
            struct param *p = &params[req->nparams];
            p->name = query_decode(q + i, eq - i, &bad);
            p->value =
                eq < end ? query_decode(q + eq + 1, end - eq - 1, &bad) : query_decode("", 0, &bad);
            req->nparams++;
            if (p->name == NULL || p->value == NULL)
                return -ENOMEM;
        }
        i = end + 1;
    }
    return bad ? -EINVAL : 0;
}

/* ---- writing ---- */

struct write_req {
    uv_write_t req;
    size_t len;
    char data[];
};

static size_t conn_unsent(struct conn *c)
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
        conn_close(c);
        return;
    }
    /* Resume at half the bound, so a client reading slowly does not toggle us every write. */
    if (c->out_paused && conn_unsent(c) <= c->srv->limits.max_unsent_bytes / 2) {
        c->out_paused = false;
        conn_process(c);
    }
}

/* Queues head followed by body on the connection. Both are borrowed. */
static int conn_write(struct conn *c, const char *head, size_t head_len, const char *body,
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

static const char *reason_phrase(int status)
{
    const char *s = http_status_str((enum http_status)status);
    return strcmp(s, "<unknown>") == 0 ? "Unknown" : s;
}

/* Writes a complete response. extra (may be NULL) holds ready "Name: value\r\n" lines.
 * keep_alive decides the Connection header; http10 says the client spoke HTTP/1.0, which
 * needs keep-alive said out loud. */
static int conn_write_response(struct conn *c, int status, const char *content_type,
                               const struct buf *extra, const char *body, size_t len,
                               bool keep_alive, bool http10)
{
    struct buf head = {0};
    int rc = buf_printf(&head, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (rc == 0 && content_type != NULL) {
        rc = buf_append(&head, "Content-Type: ", 14);
        if (rc == 0)
            rc = buf_append(&head, content_type, strlen(content_type));
        if (rc == 0)
            rc = buf_append(&head, "\r\n", 2);
    }
    if (rc == 0)
        rc = buf_printf(&head, "Content-Length: %zu\r\n", len);
    if (rc == 0 && extra != NULL && extra->len > 0)
        rc = buf_append(&head, extra->p, extra->len);
    if (rc == 0 && !keep_alive)
        rc = buf_append(&head, "Connection: close\r\n", 19);
    if (rc == 0 && keep_alive && http10)
        rc = buf_append(&head, "Connection: keep-alive\r\n", 24);
    if (rc == 0)
        rc = buf_append(&head, "\r\n", 2);
    if (rc == 0)
        rc = conn_write(c, head.p, head.len, body, len);
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
static void conn_fail(struct conn *c, int status, const char *why)
{
    char *text = error_text(c->srv, status, why);
    struct buf extra = {0};
    int rc = 0;
    if (status == 503)
        rc = buf_append(&extra, "Retry-After: 1\r\n", 16);
    request_free(c->req);
    c->req = NULL;
    if (rc == 0 && text != NULL)
        rc = conn_write_response(c, status, "application/json", &extra, text, strlen(text), false,
                                 false);
    free(text);
    free(extra.p);
    if (rc < 0 || text == NULL) {
        conn_close(c);
        return;
    }
    conn_shutdown(c);
}

/* ---- connection lifecycle ---- */

static void server_maybe_done(keng_http_server_t *srv)
{
    if (!srv->closing || !srv->listener_closed || srv->nall > 0)
        return;
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    free(srv);
    if (done != NULL)
        done(arg);
}

/* Logs what the caps did since the last line, at most once per NOTE_INTERVAL_MS; what
 * happens in between is in the next line and always in /metrics. */
static void server_note(keng_http_server_t *srv)
{
    uint64_t now = uv_now(srv->loop);
    if (now < srv->note_next_ms)
        return;
    srv->note_next_ms = now + NOTE_INTERVAL_MS;
    const keng_http_stats_t *s = &srv->stats, *n = &srv->noted;
    keng_log_warn("http server at its limits (counts since the last such line)",
                  "refused=%" PRIu64 " evicted=%" PRIu64 " streams_refused=%" PRIu64
                  " streams_cut_off=%" PRIu64 " connections=%u max_connections=%u streams=%u "
                  "max_streams=%u",
                  s->refused - n->refused, s->evicted - n->evicted,
                  s->streams_refused - n->streams_refused, s->streams_cut_off - n->streams_cut_off,
                  srv->nconns, srv->limits.max_connections, srv->nstreams, srv->limits.max_streams);
    srv->noted = srv->stats;
}

/* Marks the connection as the most recently active. */
static void conn_touch(struct conn *c)
{
    TAILQ_REMOVE(&c->srv->conns, c, link);
    TAILQ_INSERT_TAIL(&c->srv->conns, c, link);
}

/* The least recently active connection that is between requests with nothing buffered
 * either way, or NULL. */
static struct conn *server_idle_conn(keng_http_server_t *srv)
{
    struct conn *c;
    TAILQ_FOREACH (c, &srv->conns, link) {
        if (c->counted && !c->closing && !c->shutting_down && c->state == ST_IDLE &&
            c->active == NULL && c->inlen == 0 && conn_unsent(c) == 0)
            return c;
    }
    return NULL;
}

static void conn_handle_closed(struct conn *c)
{
    if (--c->handles_open > 0)
        return;
    keng_http_server_t *srv = c->srv;
    request_free(c->req);
    if (c->active != NULL) {
        /* Only a stream is still attached here; a handler's request was let go in
         * conn_close. */
        keng_http_request_t *stream = c->active;
        stream->conn = NULL;
        if (stream->on_close != NULL)
            stream->on_close(stream->on_close_arg);
        request_free(stream);
    }
    TAILQ_REMOVE(&srv->conns, c, link);
    srv->nall--;
    free(c->inbuf);
    free(c);
    server_maybe_done(srv);
}

static void on_tcp_closed(uv_handle_t *h)
{
    conn_handle_closed(container_of((uv_tcp_t *)h, struct conn, tcp));
}

static void on_timer_closed(uv_handle_t *h)
{
    conn_handle_closed(container_of((uv_timer_t *)h, struct conn, timer));
}

/* Closes now; queued writes are cancelled. A request with the handler stays valid and its
 * answer will be dropped; a stream's on_close runs from the close callback. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    /* The slot is free now: an eviction makes room for the new connection at once. */
    if (c->counted)
        c->srv->nconns--;
    if (c->stream_counted)
        c->srv->nstreams--;
    c->counted = c->stream_counted = false;
    if (c->active != NULL && !c->active->streaming) {
        c->active->conn = NULL;
        c->active = NULL;
        c->srv->in_flight--;
    }
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);

static void conn_read_start(struct conn *c)
{
    if (c->reading || c->closing || c->eof)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void conn_read_stop(struct conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void conn_timer(struct conn *c, unsigned ms);

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct conn *c = container_of(sr, struct conn, shutdown);
    c->shutdown_done = true;
    if (c->closing)
        return;
    if (status < 0 || c->eof || c->srv->closing) {
        conn_close(c);
        return;
    }
    conn_timer(c, LINGER_MS);
}

/* Closes after the queued writes went out, draining what the client still sends. The timer
 * bounds both steps, so a client that reads nothing cannot keep the connection open. */
static void conn_shutdown(struct conn *c)
{
    if (c->closing || c->shutting_down)
        return;
    c->shutting_down = true;
    c->state = ST_CLOSING;
    conn_timer(c, LINGER_MS);
    c->inlen = c->inoff = 0;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    conn_read_start(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = container_of(t, struct conn, timer);
    switch (c->state) {
    case ST_IDLE:
        if (!c->got_byte)
            c->srv->stats.first_byte_timeouts++;
        conn_close(c);
        break;
    case ST_CLOSING:
        conn_close(c);
        break;
    case ST_HEADERS:
        conn_fail(c, 408, "the request headers took too long to arrive");
        break;
    case ST_BODY:
        conn_fail(c, 408, "the request body took too long to arrive");
        break;
    case ST_HANDLER:
    case ST_STREAM:
        break;
    }
}

/* A limit of 0 means no timeout. */
static void conn_timer(struct conn *c, unsigned ms)
{
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = container_of((uv_tcp_t *)handle, struct conn, tcp);
    if (c->incap - c->inlen < READ_CHUNK) {
        size_t cap = c->inlen + READ_CHUNK;
        char *p = realloc(c->inbuf, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->inbuf = p;
        c->incap = cap;
    }
    *buf = uv_buf_init(c->inbuf + c->inlen, (unsigned)(c->incap - c->inlen));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = container_of((uv_tcp_t *)stream, struct conn, tcp);
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        c->eof = true;
        conn_read_stop(c);
        if (nread != UV_EOF) {
            conn_close(c); /* reset: nobody is left to answer */
            return;
        }
        /* A client may half-close after its last request and still read the answers. */
        switch (c->state) {
        case ST_HANDLER:
            break; /* keng_http_respond answers, then carries on with what is buffered */
        case ST_IDLE:
        case ST_HEADERS:
        case ST_BODY:
            conn_shutdown(c); /* no request can complete; flush what is queued */
            break;
        case ST_STREAM:
            conn_close(c);
            break;
        case ST_CLOSING:
            if (c->shutdown_done)
                conn_close(c); /* else on_shutdown closes once the answer is out */
            break;
        }
        return;
    }
    c->got_byte = true;
    conn_touch(c);
    switch (c->state) {
    case ST_STREAM:
    case ST_CLOSING:
        return; /* drained: the bytes at inbuf + inlen are simply not kept */
    case ST_HANDLER:
        c->inlen += (size_t)nread;
        if (c->inlen - c->inoff >= HANDLER_READ_CAP)
            conn_read_stop(c);
        return;
    case ST_IDLE:
    case ST_HEADERS:
    case ST_BODY:
        c->inlen += (size_t)nread;
        conn_process(c);
        return;
    }
}

/* ---- parsing ---- */

/* Sets the answer that refuses the request being parsed; returns -1 for the callback. */
static int refuse(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct conn *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error_why, sizeof(c->error_why), fmt, ap);
    va_end(ap);
    c->error_status = status;
    return -1;
}

static int header_bytes_add(struct conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->srv->limits.max_header_bytes) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->req = request_new(c);
    if (c->req == NULL) {
        c->error_status = 503;
        return -1;
    }
    c->header_bytes = 0;
    c->state = ST_HEADERS;
    conn_timer(c, c->srv->limits.header_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (header_bytes_add(c, len) < 0)
        return -1;
    /* http-parser, built lenient, lets tabs and form feeds into the target. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)at[i];
        if (ch <= 0x20 || ch == 0x7f)
            return refuse(c, 400, "the request target has a control character or a space");
    }
    return buf_append(&c->req->url, at, len) < 0 ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    if (header_bytes_add(c, len) < 0)
        return -1;
    if (req->nheaders == 0 || req->last_was_value) {
        struct header *h = realloc(req->headers, (req->nheaders + 1) * sizeof(*h));
        if (h == NULL)
            return -1;
        req->headers = h;
        memset(&h[req->nheaders], 0, sizeof(*h));
        req->nheaders++;
        req->last_was_value = false;
        /* ": " and CRLF around each header line */
        if (header_bytes_add(c, 4) < 0)
            return -1;
    }
    return buf_append(&req->headers[req->nheaders - 1].name, at, len) < 0 ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    if (header_bytes_add(c, len) < 0)
        return -1;
    req->last_was_value = true;
    return buf_append(&req->headers[req->nheaders - 1].value, at, len) < 0 ? -1 : 0;
}

static bool token_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Headers that a request may carry once: a second Authorization or Host is what a proxy and
 * this server could each read differently. */
static const char *const singleton_headers[] = {
    "Host", "Authorization", "Content-Length", "Content-Type", "Transfer-Encoding", "Expect",
};

/* What http-parser's lenient build lets through and a proxy in front could frame otherwise:
 * versions other than HTTP/1.0 and 1.1 (505), header names with a space or another
 * non-token character, duplicated singleton headers (400), and any Transfer-Encoding:
 * request bodies come with Content-Length only (411 for chunked, 501 for another coding).
 * Returns 0, or -1 with the refusal set. */
static int headers_check(struct conn *c, const http_parser *p)
{
    keng_http_request_t *req = c->req;
    if (p->http_major != 1 || p->http_minor > 1)
        return refuse(c, 505, "HTTP/%u.%u is not supported; send HTTP/1.1", p->http_major,
                      p->http_minor);
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *name = req->headers[i].name.p != NULL ? req->headers[i].name.p : "";
        if (*name == '\0')
            return refuse(c, 400, "a header has an empty name");
        for (const char *ch = name; *ch; ch++) {
            if (!token_char((unsigned char)*ch))
                return refuse(c, 400,
                              "the header name '%.40s' has a character a name cannot have (a "
                              "space before the colon?)",
                              name);
        }
        for (size_t s = 0; s < sizeof(singleton_headers) / sizeof(singleton_headers[0]); s++) {
            if (strcasecmp(name, singleton_headers[s]) != 0)
                continue;
            for (size_t j = i + 1; j < req->nheaders; j++) {
                if (req->headers[j].name.p != NULL && strcasecmp(req->headers[j].name.p, name) == 0)
                    return refuse(c, 400, "the %s header is sent more than once; send it once",
                                  singleton_headers[s]);
            }
        }
    }
    const char *te = keng_http_request_header(req, "Transfer-Encoding");
    if (te == NULL)
        return 0;
    if (keng_http_request_header(req, "Content-Length") != NULL)
        return refuse(c, 400,
                      "the request has both Transfer-Encoding and Content-Length; send "
                      "Content-Length only");
    const char *q = te;
    while (*q != '\0') {
        while (*q == ' ' || *q == '\t' || *q == ',')
            q++;
        size_t n = strcspn(q, ", \t");
        if (n > 0 && !(n == 7 && strncasecmp(q, "chunked", 7) == 0))
            return refuse(c, 501,
                          "the transfer coding '%.*s' is not supported; send the body with "
                          "Content-Length",
                          (int)(n > 40 ? 40 : n), q);
        q += n;
    }
    return refuse(c, 411, "send the body with Content-Length; Transfer-Encoding is not taken");
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    struct http_parser_url u;

    req->method = http_method_str((enum http_method)p->method);
    /* A header with no value still gets its empty string. */
    for (size_t i = 0; i < req->nheaders; i++) {
        if (req->headers[i].value.p == NULL && buf_append(&req->headers[i].value, "", 0) < 0)
            return -1;
    }
    http_parser_url_init(&u);
    if (headers_check(c, p) < 0)
        return -1;
    if (req->url.len == 0 ||
        http_parser_parse_url(req->url.p, req->url.len, p->method == HTTP_CONNECT, &u) != 0)
        return refuse(c, 400, "the request target is not a valid URL");
    if (u.field_set & (1 << UF_PATH))
        req->path = strndup(req->url.p + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        req->path = strdup("/");
    if (req->path == NULL)
        return -1;
    if (u.field_set & (1 << UF_QUERY)) {
        int rc =
            query_parse(req, req->url.p + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        if (rc == -EINVAL)
            return refuse(c, 400, "a query parameter has a control character (such as %%00)");
        if (rc < 0)
            return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    /* Clients such as curl wait for this before sending a large body. */
    const char *expect = keng_http_request_header(req, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1 &&
        ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0))) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (conn_write(c, cont, sizeof(cont) - 1, NULL, 0) < 0)
            return -1;
    }
    c->state = ST_BODY;
    conn_timer(c, c->srv->limits.body_timeout_ms);
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    struct conn *c = p->data;
    if (p->content_length > c->srv->limits.max_body_bytes - c->req->body.len) {
        c->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    if (len > c->srv->limits.max_body_bytes - req->body.len) {
        c->error_status = 413;
        return -1;
    }
    return buf_append(&req->body, at, len) < 0 ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    if (req->body.p == NULL && buf_append(&req->body, "", 0) < 0)
        return -1;
    /* Stop here: the next pipelined request waits until this one is answered. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

static void conn_dispatch(struct conn *c)
{
    keng_http_request_t *req = c->req;
    c->req = NULL;
    c->active = req;
    c->state = ST_HANDLER;
    uv_timer_stop(&c->timer);
    c->srv->in_flight++;
    c->srv->handler(req, c->srv->ctx);
}

static void conn_parse_error(struct conn *c, enum http_errno err)
{
    int status = c->error_status;
    if (status != 0 && c->error_why[0] != '\0') {
        conn_fail(c, status, c->error_why);
        return;
    }
    if (status == 0)
        status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
    switch (status) {
    case 413:
        conn_fail(c, 413, "the request body is larger than this server accepts");
        break;
    case 431:
        conn_fail(c, 431, "the request headers are larger than this server accepts");
        break;
    case 503:
        conn_fail(c, 503, "the server is out of memory; retry later");
        break;
    default: {
        char why[200];
        snprintf(why, sizeof(why), "the request could not be parsed: %s",
                 http_errno_description(err));
        conn_fail(c, 400, why);
        break;
    }
    }
}

/* Checks the line ends of the request head in inbuf from scan_off on, up to the end of
 * the head: every line ends in CRLF, and no header line is folded onto the one before.
 * http-parser, built lenient, takes a bare LF, which a proxy in front may read otherwise.
 * Returns 0, or -1 with the refusal set. */
static int head_scan(struct conn *c)
{
    size_t i = c->scan_off > c->inoff ? c->scan_off : c->inoff;
    int rc = 0;
    for (; c->head_scan && i < c->inlen; i++) {
        char ch = c->inbuf[i];
        char prev = c->scan_prev;
        c->scan_prev = ch;
        if (prev == '\r' && ch != '\n') {
            rc = refuse(c, 400, "a CR in the request head is not followed by LF");
            break;
        }
        if (ch == '\r')
            continue;
        if (ch == '\n') {
            if (prev != '\r') {
                rc = refuse(c, 400,
                            "a line of the request head ends in a bare LF; end lines "
                            "with CRLF");
                break;
            }
            if (c->line_len == 0 && c->head_line_seen)
                c->head_scan = false; /* the empty line that ends the head */
            if (c->line_len > 0)
                c->head_line_seen = true;
            c->line_len = 0;
            continue;
        }
        if (c->line_len == 0 && c->head_line_seen && (ch == ' ' || ch == '\t')) {
            rc = refuse(c, 400,
                        "a header line is folded onto the one before; send each header "
                        "on one line");
            break;
        }
        c->line_len++;
    }
    c->scan_off = i;
    return rc;
}

/* The next request's head starts at inoff. */
static void head_scan_reset(struct conn *c)
{
    c->head_scan = true;
    c->head_line_seen = false;
    c->line_len = 0;
    c->scan_prev = '\0';
    c->scan_off = c->inoff;
}

/* Parses buffered bytes while the connection is between requests or inside one, handing
 * each complete request to the handler. Re-entered from keng_http_respond when a handler
 * answers synchronously; the flag turns that into a no-op and the loop here continues.
 * Before each request it checks the answers not yet sent: past max_unsent_bytes it stops
 * reading until on_write sees them drain, so a client that pipelines requests and never
 * reads costs a bounded amount of memory. */
static void conn_process(struct conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (!c->closing && c->inoff < c->inlen &&
           (c->state == ST_IDLE || c->state == ST_HEADERS || c->state == ST_BODY)) {
        if (c->state == ST_IDLE && conn_unsent(c) > c->srv->limits.max_unsent_bytes) {
            if (!c->out_paused)
                c->srv->stats.read_pauses++;
            c->out_paused = true;
            break;
        }
        if (c->head_scan && head_scan(c) < 0) {
            conn_parse_error(c, HPE_OK);
            break;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->inbuf + c->inoff,
                                       c->inlen - c->inoff);
        c->inoff += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            head_scan_reset(c);
            conn_dispatch(c);
            continue;
        }
        if (err != HPE_OK) {
            conn_parse_error(c, err);
            break;
        }
        if (n == 0)
            break; /* an upgrade left bytes the parser will not take */
    }
    if (c->inoff == c->inlen) {
        c->inoff = c->inlen = 0;
        c->scan_off = 0;
        if (c->state != ST_STREAM && c->state != ST_CLOSING) {
            /* An idle connection keeps no read buffer: thousands of them cost little. */
            free(c->inbuf);
            c->inbuf = NULL;
            c->incap = 0;
        }
    } else if (c->inoff > 0) {
        memmove(c->inbuf, c->inbuf + c->inoff, c->inlen - c->inoff);
        c->inlen -= c->inoff;
        c->scan_off = c->scan_off > c->inoff ? c->scan_off - c->inoff : 0;
        c->inoff = 0;
    }
    c->processing = false;
    if (c->closing)
        return;
    if (c->out_paused)
        conn_read_stop(c);
    else if (c->eof && (c->state == ST_IDLE || c->state == ST_HEADERS || c->state == ST_BODY))
        conn_shutdown(c); /* half-closed and every complete request answered */
    else if (c->state == ST_HANDLER && c->inlen >= HANDLER_READ_CAP)
        conn_read_stop(c);
    else
        conn_read_start(c);
}

/* ---- server ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    keng_http_server_t *srv = container_of((uv_tcp_t *)listener, keng_http_server_t, listener);
    if (status < 0) {
        keng_log_warn("http server could not accept a connection", "error=\"%s\"",
                      uv_strerror(status));
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        keng_log_error("http server is out of memory for a new connection", NULL);
        return;
    }
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->handles_open = 2;
    TAILQ_INSERT_TAIL(&srv->conns, c, link);
    srv->nall++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = ST_IDLE;
    c->head_scan = true;
    snprintf(c->peer, sizeof(c->peer), "unknown");

    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        keng_log_warn("http server could not accept a connection", "error=\"%s\"", uv_strerror(rc));
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        char ip[48] = "";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
            uv_ip4_name(sin, ip, sizeof(ip));
            port = ntohs(sin->sin_port);
            snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(sin6, ip, sizeof(ip));
            port = ntohs(sin6->sin6_port);
            snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip, port);
        }
    }
    if (srv->limits.max_connections > 0 && srv->nconns >= srv->limits.max_connections) {
        struct conn *idle = server_idle_conn(srv);
        if (idle == NULL) {
            srv->stats.refused++;
            server_note(srv);
            conn_fail(c, 503, "the server has too many connections; retry later");
            return;
        }
        srv->stats.evicted++;
        server_note(srv);
        conn_close(idle);
    }
    c->counted = true;
    srv->nconns++;
    conn_timer(c, srv->limits.first_byte_timeout_ms);
    conn_read_start(c);
}

keng_http_server_t *keng_http_server_new(uv_loop_t *loop, const keng_http_limits_t *limits,
                                         keng_http_handler_fn handler, void *ctx)
{
    keng_http_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    if (limits != NULL)
        srv->limits = *limits;
    else
        keng_http_limits_default(&srv->limits);
    srv->handler = handler;
    srv->ctx = ctx;
    TAILQ_INIT(&srv->conns);
    uv_tcp_init(loop, &srv->listener);
    return srv;
}

int keng_http_server_listen(keng_http_server_t *srv, const char *host_port)
{
    char host[256];
    const char *colon = strrchr(host_port, ':');
    if (colon == NULL || colon == host_port || (size_t)(colon - host_port) >= sizeof(host))
        return -EINVAL;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -EINVAL;
    const char *h = host_port;
    size_t hlen = (size_t)(colon - host_port);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0)
        return -EINVAL;
    fit_fd_limit(srv);
    int rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rc < 0)
        return rc;
    rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
    if (rc < 0)
        return rc;
    int sslen = sizeof(ss);
    rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &sslen);
    if (rc < 0)
        return rc;
    if (ss.ss_family == AF_INET)
        srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else
        srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int keng_http_server_port(const keng_http_server_t *srv)
{
    return srv->port;
}

unsigned keng_http_server_connections(const keng_http_server_t *srv)
{
    return srv->nconns;
}

unsigned keng_http_server_in_flight(const keng_http_server_t *srv)
{
    return srv->in_flight;
}

void keng_http_server_stats(const keng_http_server_t *srv, keng_http_stats_t *out)
{
    *out = srv->stats;
    out->connections = srv->nconns;
    out->streams = srv->nstreams;
}

void keng_http_server_write_metrics(const keng_http_server_t *srv, FILE *out)
{
    keng_http_stats_t st;
    keng_http_server_stats(srv, &st);
    fprintf(out,
            "# HELP keng_http_streams Open Server-Sent Events streams.\n"
            "# TYPE keng_http_streams gauge\n"
            "keng_http_streams %u\n"
            "# HELP keng_http_connections_refused_total Connections answered 503 at "
            "http.max_connections with none idle.\n"
            "# TYPE keng_http_connections_refused_total counter\n"
            "keng_http_connections_refused_total %" PRIu64 "\n"
            "# HELP keng_http_connections_evicted_total Idle connections closed to make room at "
            "http.max_connections.\n"
            "# TYPE keng_http_connections_evicted_total counter\n"
            "keng_http_connections_evicted_total %" PRIu64 "\n"
            "# HELP keng_http_first_byte_timeouts_total Connections closed that sent no byte "
            "within http.first_byte_timeout_ms.\n"
            "# TYPE keng_http_first_byte_timeouts_total counter\n"
            "keng_http_first_byte_timeouts_total %" PRIu64 "\n"
            "# HELP keng_http_read_pauses_total Times a connection stopped reading requests "
            "with more than http.max_unsent_bytes of answers unsent.\n"
            "# TYPE keng_http_read_pauses_total counter\n"
            "keng_http_read_pauses_total %" PRIu64 "\n"
            "# HELP keng_http_streams_refused_total Streams answered 503 at http.max_streams.\n"
            "# TYPE keng_http_streams_refused_total counter\n"
            "keng_http_streams_refused_total %" PRIu64 "\n"
            "# HELP keng_http_streams_cut_off_total Stream readers cut off past "
            "http.stream_max_unsent_bytes.\n"
            "# TYPE keng_http_streams_cut_off_total counter\n"
            "keng_http_streams_cut_off_total %" PRIu64 "\n",
            st.streams, st.refused, st.evicted, st.first_byte_timeouts, st.read_pauses,
            st.streams_refused, st.streams_cut_off);
}

void keng_http_server_set_error_body(keng_http_server_t *srv, keng_http_error_fn fn)
{
    srv->error_fn = fn;
}

/* Client sockets need file descriptors: raises the soft RLIMIT_NOFILE to the hard limit when
 * the caps need more, and lowers max_connections to fit when even the hard limit is short. */
static void fit_fd_limit(keng_http_server_t *srv)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)srv->limits.max_connections + srv->limits.max_streams + FD_RESERVE;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rlim_t before = rl.rlim_cur;
        /* An unlimited hard limit still stops at the kernel's nr_open: ask for what we need. */
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            keng_log_info("raised the open file limit for the HTTP caps",
                          "soft_before=%llu soft=%llu", (unsigned long long)before,
                          (unsigned long long)rl.rlim_cur);
        else if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return;
    rlim_t room = rl.rlim_cur > FD_RESERVE + srv->limits.max_streams + 16
                      ? rl.rlim_cur - FD_RESERVE - srv->limits.max_streams
                      : 16;
    keng_log_warn("the open file limit is too low for http.max_connections; lowering it",
                  "nofile=%llu max_connections=%u lowered_to=%llu (raise the hard limit, "
                  "e.g. LimitNOFILE= or ulimit -Hn)",
                  (unsigned long long)rl.rlim_cur, srv->limits.max_connections,
                  (unsigned long long)room);
    srv->limits.max_connections = (unsigned)room;
}

static void on_listener_closed(uv_handle_t *h)
{
    keng_http_server_t *srv = container_of((uv_tcp_t *)h, keng_http_server_t, listener);
    srv->listener_closed = true;
    server_maybe_done(srv);
}

void keng_http_server_close(keng_http_server_t *srv, void (*done)(void *arg), void *arg)
{
    if (srv->closing)
        return;
    srv->closing = true;
    srv->done = done;
    srv->done_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    struct conn *c;
    TAILQ_FOREACH (c, &srv->conns, link) {
        switch (c->state) {
        case ST_IDLE: /* may still be flushing its last answer */
        case ST_HEADERS:
        case ST_BODY:
        case ST_STREAM:
            conn_shutdown(c);
            break;
        case ST_CLOSING:
            if (c->shutdown_done)
                conn_close(c);
            break;
        case ST_HANDLER:
            break; /* keng_http_respond closes it, the server being closed */
        }
    }
}

/* ---- request accessors ---- */

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
    if (buf_append(&req->extra, name, strlen(name)) < 0 || buf_append(&req->extra, ": ", 2) < 0 ||
        buf_append(&req->extra, value, strlen(value)) < 0 || buf_append(&req->extra, "\r\n", 2) < 0)
        keng_log_error("http response header dropped: out of memory", "name=\"%s\"", name);
}

/* ---- responses ---- */

void keng_http_respond(keng_http_request_t *req, int status, const char *content_type,
                       const char *body, size_t len)
{
    struct conn *c = req->conn;
    if (c == NULL) {
        request_free(req); /* the client left; the answer goes nowhere */
        return;
    }
    bool keep = req->keep_alive && !c->srv->closing;
    bool http10 = req->http_major == 1 && req->http_minor == 0;
    int rc = conn_write_response(c, status, content_type, &req->extra, body, len, keep, http10);
    c->active = NULL;
    c->srv->in_flight--;
    request_free(req);
    conn_touch(c);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (!keep) {
        conn_shutdown(c);
        return;
    }
    c->state = ST_IDLE;
    conn_timer(c, c->srv->limits.idle_timeout_ms);
    conn_process(c);
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
        server_note(srv);
        return -EBUSY;
    }
    /* Cache-Control once: the handler's own, else no-cache. */
    bool own_cc = req->extra.len > 0 && (strncasecmp(req->extra.p, "Cache-Control:", 14) == 0 ||
                                         strcasestr(req->extra.p, "\r\nCache-Control:") != NULL);
    struct buf head = {0};
    int rc = buf_printf(&head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n%s",
                        content_type != NULL ? content_type : "text/event-stream",
                        own_cc ? "" : "Cache-Control: no-cache\r\n");
    if (rc == 0 && req->extra.len > 0)
        rc = buf_append(&head, req->extra.p, req->extra.len);
    if (rc == 0)
        rc = buf_append(&head, "\r\n", 2);
    if (rc == 0)
        rc = conn_write(c, head.p, head.len, NULL, 0);
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
    conn_read_start(c);
    return 0;
}

int keng_http_stream_write(keng_http_request_t *req, const char *data, size_t len)
{
    struct conn *c = req->conn;
    if (c == NULL || c->closing || c->shutting_down)
        return -EPIPE;
    if (conn_unsent(c) + len > c->srv->limits.stream_max_unsent_bytes) {
        c->srv->stats.streams_cut_off++;
        server_note(c->srv);
        conn_close(c);
        return -ENOBUFS;
    }
    int rc = conn_write(c, data, len, NULL, 0);
    if (rc < 0)
        conn_close(c);
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
        conn_shutdown(c);
}
