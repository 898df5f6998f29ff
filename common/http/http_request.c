/* The request side of keng's HTTP server: http-parser's callbacks, the strict checks on
 * line ends, headers and framing, and the query string; it never writes to a socket but
 * through http_response.c. */
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

void keng_http__request_free(keng_http_request_t *req)
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
    if (req->srv)
        req->srv->buffered_bytes -= req->reserved;
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
    keng_http__conn_timer(c, c->srv->limits.header_timeout_ms);
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
    return keng_http__buf_append(&c->req->url, at, len) < 0 ? -1 : 0;
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
    return keng_http__buf_append(&req->headers[req->nheaders - 1].name, at, len) < 0 ? -1 : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    if (header_bytes_add(c, len) < 0)
        return -1;
    req->last_was_value = true;
    return keng_http__buf_append(&req->headers[req->nheaders - 1].value, at, len) < 0 ? -1 : 0;
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
        if (req->headers[i].value.p == NULL &&
            keng_http__buf_append(&req->headers[i].value, "", 0) < 0)
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
    /* A name this server does not go by is a page that rebound its own name to this
     * address: it reads nothing (keng_http_server_allow_hosts). */
    const char *host = keng_http_request_header(req, "Host");
    if (!keng_http__host_allowed(c->srv, host)) {
        char shown[80];
        keng_log_value(shown, sizeof(shown), host);
        return refuse(c, 421,
                      "Host %s is not a name of this server; add it to http.allowed_hosts if "
                      "clients use it",
                      shown);
    }
    /* Who asks comes first: a client that may not post learns nothing of the limits. */
    if (c->srv->precheck) {
        const char *why = "refused";
        int status = c->srv->precheck(req, c->srv->ctx, &why);
        if (status != 0)
            return refuse(c, status, "%s", why);
        c->refusal_delay_ms = 0; /* a delay without a refusal means nothing */
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->limits.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    if (p->flags & F_CONTENTLENGTH) {
        size_t announced = (size_t)p->content_length;
        if (announced > c->srv->limits.max_buffered_bytes - c->srv->buffered_bytes ||
            c->srv->buffered_bytes > c->srv->limits.max_buffered_bytes)
            return refuse(c, 503,
                          "the server holds as many request bodies as it may; send the "
                          "request again later");
        req->srv = c->srv;
        req->reserved = announced;
        c->srv->buffered_bytes += announced;
    }
    /* Clients such as curl wait for this before sending a large body. */
    const char *expect = keng_http_request_header(req, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && p->http_major == 1 &&
        p->http_minor >= 1 &&
        ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENTLENGTH) && p->content_length > 0))) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (keng_http__conn_write(c, cont, sizeof(cont) - 1, NULL, 0) < 0)
            return -1;
    }
    c->state = ST_BODY;
    keng_http__conn_timer(c, c->srv->limits.body_timeout_ms);
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
    return keng_http__buf_append(&req->body, at, len) < 0 ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    keng_http_request_t *req = c->req;
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    if (req->body.p == NULL && keng_http__buf_append(&req->body, "", 0) < 0)
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
    if (status != 0 && c->refusal_delay_ms > 0) {
        /* The precheck held its refusal back: read nothing more and answer when the timer
         * fires (keng_http_request_delay_refusal). */
        c->state = ST_DELAYED;
        keng_http__conn_read_stop(c);
        keng_http__conn_timer(c, c->refusal_delay_ms);
        return;
    }
    if (status != 0 && c->error_why[0] != '\0') {
        keng_http__conn_fail(c, status, c->error_why);
        return;
    }
    if (status == 0)
        status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
    switch (status) {
    case 413:
        keng_http__conn_fail(c, 413, "the request body is larger than this server accepts");
        break;
    case 431:
        keng_http__conn_fail(c, 431, "the request headers are larger than this server accepts");
        break;
    case 503:
        keng_http__conn_fail(c, 503, "the server is out of memory; retry later");
        break;
    default: {
        char why[200];
        snprintf(why, sizeof(why), "the request could not be parsed: %s",
                 http_errno_description(err));
        keng_http__conn_fail(c, 400, why);
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
void keng_http__conn_process(struct conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (!c->closing && c->inoff < c->inlen &&
           (c->state == ST_IDLE || c->state == ST_HEADERS || c->state == ST_BODY)) {
        if (c->state == ST_IDLE && keng_http__conn_unsent(c) > c->srv->limits.max_unsent_bytes) {
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
        keng_http__conn_read_stop(c);
    else if (c->eof && (c->state == ST_IDLE || c->state == ST_HEADERS || c->state == ST_BODY))
        keng_http__conn_shutdown(c); /* half-closed and every complete request answered */
    else if (c->state == ST_HANDLER && c->inlen >= HANDLER_READ_CAP)
        keng_http__conn_read_stop(c);
    else
        keng_http__conn_read_start(c);
}

void keng_http_request_set_user(keng_http_request_t *req, const void *user)
{
    req->user = user;
}

const void *keng_http_request_user(const keng_http_request_t *req)
{
    return req->user;
}
