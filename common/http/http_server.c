/* keng's HTTP/1.1 server: the listener, its limits and caps, and one connection state machine
 * per client socket on the libuv loop, deciding when to read, answer and close; it never parses
 * a request (http_request.c) nor formats an answer (http_response.c).
 *
 * Thread: everything runs on the loop's thread. */
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
#include <arpa/inet.h>
#include <unistd.h>
#include <http_parser.h>
#include "log.h"

static void fit_fd_limit(keng_http_server_t *srv);

int keng_http__buf_append(struct buf *b, const char *data, size_t len)
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

int keng_http__buf_printf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -EINVAL;
    return keng_http__buf_append(b, tmp, (size_t)n);
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
    limits->max_buffered_bytes = 256 * 1024 * 1024;
    limits->stream_max_unsent_bytes = 64 * 1024;
    limits->stream_sndbuf_bytes = 16 * 1024;
}

/* The http.* keys keng_http_limits_from_config reads: every program that serves HTTP lists
 * them among its known config keys. */
keng_config_keys_t keng_http_server_config_keys = {
    "http.max_body_bytes",      "http.max_header_bytes",
    "http.header_timeout_ms",   "http.body_timeout_ms",
    "http.idle_timeout_ms",     "http.first_byte_timeout_ms",
    "http.max_connections",     "http.max_streams",
    "http.max_unsent_bytes",    "http.stream_max_unsent_bytes",
    "http.stream_sndbuf_bytes", "http.max_buffered_bytes",
    "http.allowed_hosts",       NULL};

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
        {"http.max_buffered_bytes", 1, 1LL << 40, &limits->max_buffered_bytes, NULL},
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

/* ---- connection lifecycle ---- */

static void server_maybe_done(keng_http_server_t *srv)
{
    if (!srv->closing || !srv->listener_closed || srv->nall > 0)
        return;
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    for (size_t i = 0; i < srv->nallowed_hosts; i++)
        free(srv->allowed_hosts[i]);
    free(srv->allowed_hosts);
    free(srv->scratch);
    free(srv);
    if (done != NULL)
        done(arg);
}

/* Logs what the caps did since the last line, at most once per NOTE_INTERVAL_MS; what
 * happens in between is in the next line and always in /metrics. */
void keng_http__server_note(keng_http_server_t *srv)
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
void keng_http__conn_touch(struct conn *c)
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
            c->active == NULL && c->inlen == 0 && keng_http__conn_unsent(c) == 0)
            return c;
    }
    return NULL;
}

static void conn_handle_closed(struct conn *c)
{
    if (--c->handles_open > 0)
        return;
    keng_http_server_t *srv = c->srv;
    keng_http__request_free(c->req);
    if (c->active != NULL) {
        /* Only a stream is still attached here; a handler's request was let go in
         * keng_http__conn_close. */
        keng_http_request_t *stream = c->active;
        stream->conn = NULL;
        if (stream->on_close != NULL)
            stream->on_close(stream->on_close_arg);
        keng_http__request_free(stream);
    }
    TAILQ_REMOVE(&srv->conns, c, link);
    srv->nall--;
    keng_http__tls_free(c);
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
void keng_http__conn_close(struct conn *c)
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

void keng_http__conn_read_start(struct conn *c)
{
    if (c->reading || c->closing || c->eof)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

void keng_http__conn_read_stop(struct conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    struct conn *c = container_of(sr, struct conn, shutdown);
    c->shutdown_done = true;
    if (c->closing)
        return;
    if (status < 0 || c->eof || c->srv->closing) {
        keng_http__conn_close(c);
        return;
    }
    keng_http__conn_timer(c, LINGER_MS);
}

/* Closes after the queued writes went out, draining what the client still sends. The timer
 * bounds both steps, so a client that reads nothing cannot keep the connection open. */
void keng_http__conn_shutdown(struct conn *c)
{
    if (c->closing || c->shutting_down)
        return;
    c->shutting_down = true;
    c->state = ST_CLOSING;
    keng_http__conn_timer(c, LINGER_MS);
    c->inlen = c->inoff = 0;
    if (c->ssl != NULL)
        keng_http__tls_close_notify(c);
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        keng_http__conn_close(c);
        return;
    }
    keng_http__conn_read_start(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = container_of(t, struct conn, timer);
    switch (c->state) {
    case ST_IDLE:
        if (c->ssl != NULL && !c->tls_ready && c->got_byte) {
            keng_http__tls_timed_out(c);
            break;
        }
        if (!c->got_byte)
            c->srv->stats.first_byte_timeouts++;
        keng_http__conn_close(c);
        break;
    case ST_CLOSING:
        keng_http__conn_close(c);
        break;
    case ST_DELAYED:
        c->refusal_delay_ms = 0;
        keng_http__conn_fail(c, c->error_status, c->error_why);
        break;
    case ST_HEADERS:
        keng_http__conn_fail(c, 408, "the request headers took too long to arrive");
        break;
    case ST_BODY:
        keng_http__conn_fail(c, 408, "the request body took too long to arrive");
        break;
    case ST_HANDLER:
    case ST_STREAM:
        break;
    }
}

/* A limit of 0 means no timeout. */
void keng_http__conn_timer(struct conn *c, unsigned ms)
{
    if (ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, ms, 0);
}

size_t keng_http__conn_room(struct conn *c)
{
    if (c->incap - c->inlen < READ_CHUNK) {
        size_t cap = c->inlen + READ_CHUNK;
        char *p = realloc(c->inbuf, cap);
        if (p == NULL)
            return 0;
        c->inbuf = p;
        c->incap = cap;
    }
    return c->incap - c->inlen;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = container_of((uv_tcp_t *)handle, struct conn, tcp);
    (void)suggested;
    /* A closing connection and a stream only drain what the client sends: their request
     * buffer goes (ten thousand refused 1 MiB uploads held 16 KiB each while they lingered). */
    if (c->state == ST_CLOSING || c->state == ST_STREAM) {
        free(c->inbuf);
        c->inbuf = NULL;
        c->incap = c->inlen = c->inoff = 0;
    }
    /* TLS: ciphertext goes into the scratch buffer and from there into the SSL's own at
     * once, so an idle connection holds no read buffer either. */
    if (c->ssl != NULL || c->state == ST_CLOSING || c->state == ST_STREAM ||
        c->state == ST_DELAYED) {
        *buf = uv_buf_init(c->srv->scratch, SCRATCH_BYTES);
        return;
    }
    size_t room = keng_http__conn_room(c);
    *buf = uv_buf_init(room ? c->inbuf + c->inlen : NULL, (unsigned)room);
}

/* The client closed its side (EOF, or TLS's close_notify). */
void keng_http__conn_eof(struct conn *c)
{
    c->eof = true;
    keng_http__conn_read_stop(c);
    /* A client may half-close after its last request and still read the answers. */
    switch (c->state) {
    case ST_HANDLER:
        break; /* keng_http_respond answers, then carries on with what is buffered */
    case ST_IDLE:
    case ST_HEADERS:
    case ST_BODY:
        keng_http__conn_shutdown(c); /* no request can complete; flush what is queued */
        break;
    case ST_STREAM:
    case ST_DELAYED: /* nobody is left to answer */
        keng_http__conn_close(c);
        break;
    case ST_CLOSING:
        if (c->shutdown_done)
            keng_http__conn_close(c); /* else on_shutdown closes once the answer is out */
        break;
    }
}

/* Takes n plaintext bytes received at inbuf + inlen. */
void keng_http__conn_received(struct conn *c, size_t n)
{
    switch (c->state) {
    case ST_STREAM:
    case ST_CLOSING:
    case ST_DELAYED:
        return; /* drained: the bytes at inbuf + inlen are simply not kept */
    case ST_HANDLER:
        c->inlen += n;
        if (c->inlen - c->inoff >= HANDLER_READ_CAP)
            keng_http__conn_read_stop(c);
        return;
    case ST_IDLE:
    case ST_HEADERS:
    case ST_BODY:
        c->inlen += n;
        keng_http__conn_process(c);
        return;
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = container_of((uv_tcp_t *)stream, struct conn, tcp);
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF) {
            c->eof = true;
            keng_http__conn_read_stop(c);
            keng_http__conn_close(c); /* reset: nobody is left to answer */
            return;
        }
        keng_http__conn_eof(c);
        return;
    }
    c->got_byte = true;
    keng_http__conn_touch(c);
    if (c->ssl == NULL) {
        keng_http__conn_received(c, (size_t)nread);
        return;
    }
    if (c->state != ST_STREAM && c->state != ST_CLOSING && c->state != ST_DELAYED)
        keng_http__tls_received(c, buf->base, (size_t)nread);
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
        keng_http__conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* Before the cap's 503: a TLS client could not read a plain answer (it is closed). */
    if (srv->tls != NULL && keng_http__tls_accept(c) < 0) {
        keng_log_error("http server is out of memory for a new TLS connection", NULL);
        keng_http__conn_close(c);
        return;
    }
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
            keng_http__server_note(srv);
            keng_http__conn_fail(c, 503, "the server has too many connections; retry later");
            return;
        }
        srv->stats.evicted++;
        keng_http__server_note(srv);
        keng_http__conn_close(idle);
    }
    c->counted = true;
    srv->nconns++;
    keng_http__conn_timer(c, srv->limits.first_byte_timeout_ms);
    keng_http__conn_read_start(c);
}

keng_http_server_t *keng_http_server_new(uv_loop_t *loop, const keng_http_limits_t *limits,
                                         keng_http_handler_fn handler, void *ctx)
{
    keng_http_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->scratch = malloc(SCRATCH_BYTES);
    if (srv->scratch == NULL) {
        free(srv);
        return NULL;
    }
    srv->loop = loop;
    if (limits != NULL)
        srv->limits = *limits;
    else
        keng_http_limits_default(&srv->limits);
    srv->handler = handler;
    srv->ctx = ctx;
    srv->any_host = true; /* until keng_http_server_allow_hosts says which */
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
    if (srv->tls == NULL)
        return;
    fprintf(out,
            "# HELP keng_http_tls_handshakes_total TLS handshakes completed.\n"
            "# TYPE keng_http_tls_handshakes_total counter\n"
            "keng_http_tls_handshakes_total %" PRIu64 "\n"
            "# HELP keng_http_tls_handshake_failures_total TLS handshakes refused or broken "
            "(an old protocol, a client certificate missing or not trusted, not TLS at all).\n"
            "# TYPE keng_http_tls_handshake_failures_total counter\n"
            "keng_http_tls_handshake_failures_total %" PRIu64 "\n"
            "# HELP keng_http_tls_handshake_timeouts_total TLS handshakes closed unfinished after "
            "http.header_timeout_ms.\n"
            "# TYPE keng_http_tls_handshake_timeouts_total counter\n"
            "keng_http_tls_handshake_timeouts_total %" PRIu64 "\n",
            st.tls_handshakes, st.tls_handshake_failures, st.tls_handshake_timeouts);
    keng_tls_write_metrics(srv->tls, out);
}

/* Adds one name (len bytes of s, a trailing dot dropped) to the allowed hosts. 0 or -1. */
static int allow_host(keng_http_server_t *srv, const char *s, size_t len)
{
    while (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0)
        return 0;
    if (len == 1 && s[0] == '*') {
        srv->any_host = true;
        return 0;
    }
    char **grown = realloc(srv->allowed_hosts, (srv->nallowed_hosts + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    srv->allowed_hosts = grown;
    if (!(grown[srv->nallowed_hosts] = strndup(s, len)))
        return -1;
    srv->nallowed_hosts++;
    return 0;
}

int keng_http_server_allow_hosts(keng_http_server_t *srv, const keng_config_t *cfg,
                                 const char *const *extra, char *errstr, size_t errstr_size)
{
    const char *list = keng_config_get(cfg, "http.allowed_hosts", NULL);
    int rc = 0;

    srv->any_host = false;
    if (list) {
        for (const char *s = list; rc == 0 && *s;) {
            size_t n = strcspn(s, ", \t");
            rc = allow_host(srv, s, n);
            s += n;
            s += strspn(s, ", \t");
        }
        if (rc == 0 && srv->nallowed_hosts == 0 && !srv->any_host) {
            snprintf(errstr, errstr_size,
                     "http.allowed_hosts: no name (give the names clients use, or * for any)");
            return -1;
        }
    } else {
        char name[256] = "";
        rc = allow_host(srv, "localhost", strlen("localhost"));
        if (rc == 0 && gethostname(name, sizeof(name) - 1) == 0)
            rc = allow_host(srv, name, strlen(name));
        for (size_t i = 0; rc == 0 && extra && extra[i]; i++)
            rc = allow_host(srv, extra[i], strlen(extra[i]));
    }
    if (rc != 0)
        snprintf(errstr, errstr_size, "out of memory");
    return rc;
}

bool keng_http__host_allowed(const keng_http_server_t *srv, const char *host)
{
    char name[256];
    unsigned char addr[sizeof(struct in6_addr)];
    size_t len;

    if (srv->any_host || host == NULL)
        return true;      /* HTTP/1.0 without Host: no name to rebind */
    if (host[0] == '[') { /* [v6]:port */
        const char *end = strchr(host, ']');
        if (!end || (size_t)(end - host - 1) >= sizeof(name))
            return false;
        len = (size_t)(end - host - 1);
        memcpy(name, host + 1, len);
        name[len] = '\0';
        return inet_pton(AF_INET6, name, addr) == 1;
    }
    len = strcspn(host, ":");
    if (len >= sizeof(name))
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (inet_pton(AF_INET, name, addr) == 1)
        return true;
    while (len > 0 && name[len - 1] == '.')
        name[--len] = '\0';
    for (size_t i = 0; i < srv->nallowed_hosts; i++)
        if (strcasecmp(srv->allowed_hosts[i], name) == 0)
            return true;
    return false;
}

int keng_http_server_set_tls(keng_http_server_t *srv, keng_tls_t *tls)
{
    srv->tls = tls;
    return 0;
}

void keng_http_server_set_precheck(keng_http_server_t *srv, keng_http_precheck_fn fn)
{
    srv->precheck = fn;
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
            keng_http__conn_shutdown(c);
            break;
        case ST_CLOSING:
            if (c->shutdown_done)
                keng_http__conn_close(c);
            break;
        case ST_DELAYED: /* its refusal is not worth waiting for */
            keng_http__conn_close(c);
            break;
        case ST_HANDLER:
            break; /* keng_http_respond closes it, the server being closed */
        }
    }
}
