/* The HTTP server against real client sockets: the server runs on a libuv loop in the test's
 * main thread, each scenario's client runs in a second thread with blocking sockets and receive
 * timeouts, and every assertion is made on the main thread after both are done; the server
 * never listens beyond 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define CLIENT_TIMEOUT_S 5
#define WATCHDOG_MS      30000
#define MAX_RESP         8

/* ---- the client side, run in the client thread ---- */

struct client {
    int fd;
    size_t len;
    char buf[256 * 1024];
};

struct response {
    int status;
    char head[4096];
    char body[8192];
    size_t body_len;
};

static int client_open(struct client *cl, int port)
{
    cl->len = 0;
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (cl->fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = CLIENT_TIMEOUT_S};
    setsockopt(cl->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(cl->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(cl->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(cl->fd);
        cl->fd = -1;
        return -1;
    }
    return 0;
}

static void client_close(struct client *cl)
{
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
}

static int client_send(struct client *cl, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int client_sends(struct client *cl, const char *text)
{
    return client_send(cl, text, strlen(text));
}

/* Reads more bytes into the buffer: >0 bytes read, 0 at end of stream, -1 on error or
 * timeout. */
static int client_fill(struct client *cl)
{
    if (cl->len == sizeof(cl->buf))
        return -1;
    for (;;) {
        ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        cl->len += (size_t)n;
        return (int)n;
    }
}

static void client_consume(struct client *cl, size_t n)
{
    memmove(cl->buf, cl->buf + n, cl->len - n);
    cl->len -= n;
}

/* Reads the head of a response; returns its length or -1. */
static long client_read_head(struct client *cl, struct response *r)
{
    char *end;
    while ((end = memmem(cl->buf, cl->len, "\r\n\r\n", 4)) == NULL) {
        if (client_fill(cl) <= 0)
            return -1;
    }
    size_t head_len = (size_t)(end - cl->buf) + 4;
    size_t copy = head_len < sizeof(r->head) - 1 ? head_len : sizeof(r->head) - 1;
    memcpy(r->head, cl->buf, copy);
    r->head[copy] = '\0';
    r->status = 0;
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    return (long)head_len;
}

/* Reads one complete response with a Content-Length. */
static int client_read_response(struct client *cl, struct response *r)
{
    long head_len = client_read_head(cl, r);
    if (head_len < 0)
        return -1;
    const char *cl_hdr = strcasestr(r->head, "\r\nContent-Length:");
    if (cl_hdr == NULL)
        return -1;
    size_t body_len = strtoul(cl_hdr + 17, NULL, 10);
    if (body_len >= sizeof(r->body))
        return -1;
    while (cl->len < (size_t)head_len + body_len) {
        if (client_fill(cl) <= 0)
            return -1;
    }
    memcpy(r->body, cl->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    client_consume(cl, (size_t)head_len + body_len);
    return 0;
}

/* True when the server closed the connection (end of stream or reset), with no further
 * response bytes before it. */
static bool client_sees_close(struct client *cl)
{
    if (cl->len > 0)
        return false;
    for (int i = 0; i < 10000; i++) {
        int n = client_fill(cl);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
        cl->len = 0; /* a stream's bytes before the end are not what we wait for */
    }
    return false;
}

static bool has_header(const struct response *r, const char *line)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "\r\n%s\r\n", line);
    return strcasestr(r->head, needle) != NULL;
}

/* ---- the harness, on the loop thread ---- */

struct async_reply {
    uv_timer_t timer;
    struct harness *h;
    keng_http_request_t *req;
    int id;
    int polls;
    bool wait_conn_gone;
};

struct harness {
    uv_loop_t loop;
    keng_http_server_t *srv;
    keng_http_limits_t limits;
    uv_async_t client_done;
    uv_timer_t watchdog;
    uv_timer_t finish;
    int finish_polls;
    pthread_t thread;
    int port;
    void (*client)(struct harness *h);
    bool (*ready_to_finish)(struct harness *h);
    bool harness_closed;
    bool server_close_called;
    bool server_done;
    bool timed_out;
    sem_t server_event; /* a stream closed or a request arrived; awaited by the client */

    /* written by the client thread, read after join */
    int client_fail_line;
    char client_fail_msg[256];
    struct response resp[MAX_RESP];
    bool closed_seen[MAX_RESP];
    char stream_text[4096];

    int strict_status[32]; /* by case of test_strict_framing */
    bool strict_closed[32];
    int pipelined_ok;

    /* written on the loop thread */
    keng_http_stats_t stats; /* as the last request arrived */
    int handled;
    char order[256];
    unsigned max_connections_seen;
    unsigned connections_at[MAX_RESP];
    char method[16];
    char path[128];
    char q_board[64];
    char q_text[64];
    char q_flag[64];
    bool q_missing_null;
    char header_value[64];
    char peer[80];
    char body[256];
    size_t body_len;
    int async_outstanding;
    int async_done;
    unsigned connections_at_late_answer;
    unsigned in_flight_at_close;
    keng_http_request_t *stream;
    uv_timer_t stream_timer;
    bool stream_timer_open;
    int stream_events;
    int stream_write_rc;
    int flood_writes;
    bool on_close_called;
    bool on_close_before_server_close;
};

#define CLIENT_CHECK(h, cond)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            (h)->client_fail_line = __LINE__;                                                      \
            snprintf((h)->client_fail_msg, sizeof((h)->client_fail_msg), "%s", #cond);             \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void order_add(struct harness *h, char what, int id)
{
    size_t n = strlen(h->order);
    snprintf(h->order + n, sizeof(h->order) - n, "%s%c%d", n ? " " : "", what, id);
}

static int query_int(keng_http_request_t *req, const char *name, int dflt)
{
    const char *v = keng_http_request_query(req, name);
    return v != NULL ? atoi(v) : dflt;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "(null)");
}

static void respond_ok(struct harness *h, keng_http_request_t *req, int id)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "ok %d", id);
    order_add(h, 'r', id);
    keng_http_respond(req, 200, "text/plain", body, (size_t)n);
}

static void on_async_closed(uv_handle_t *handle)
{
    free(container_of((uv_timer_t *)handle, struct async_reply, timer));
}

static void on_async_timer(uv_timer_t *t)
{
    struct async_reply *a = container_of(t, struct async_reply, timer);
    struct harness *h = a->h;
    /* Answer a request whose client left only once the server noticed it left, so the
     * late answer really goes to a dead connection. */
    if (a->wait_conn_gone && keng_http_server_connections(h->srv) > 0 && a->polls++ < 1000) {
        uv_timer_start(&a->timer, on_async_timer, 5, 0);
        return;
    }
    if (a->wait_conn_gone)
        h->connections_at_late_answer = keng_http_server_connections(h->srv);
    respond_ok(h, a->req, a->id);
    h->async_outstanding--;
    h->async_done++;
    uv_close((uv_handle_t *)&a->timer, on_async_closed);
}

static void reply_later(struct harness *h, keng_http_request_t *req, int id, int delay_ms,
                        bool wait_conn_gone)
{
    struct async_reply *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    a->h = h;
    a->req = req;
    a->id = id;
    a->wait_conn_gone = wait_conn_gone;
    uv_timer_init(&h->loop, &a->timer);
    uv_timer_start(&a->timer, on_async_timer, (uint64_t)delay_ms, 0);
    h->async_outstanding++;
}

static void on_server_done(void *arg)
{
    struct harness *h = arg;
    h->server_done = true;
}

static void on_stream_timer_closed(uv_handle_t *handle)
{
    (void)handle;
}

static void stream_timer_close(struct harness *h)
{
    if (!h->stream_timer_open)
        return;
    h->stream_timer_open = false;
    uv_close((uv_handle_t *)&h->stream_timer, on_stream_timer_closed);
}

static void on_stream_closed(void *arg)
{
    struct harness *h = arg;
    h->on_close_called = true;
    h->on_close_before_server_close = !h->server_close_called;
    h->stream = NULL;
    stream_timer_close(h);
    sem_post(&h->server_event);
}

static void on_stream_timer(uv_timer_t *t)
{
    struct harness *h = container_of(t, struct harness, stream_timer);
    if (h->stream == NULL || h->stream_events >= 1000)
        return;
    char ev[64];
    int n = snprintf(ev, sizeof(ev), "data: %d\n\n", ++h->stream_events);
    h->stream_write_rc = keng_http_stream_write(h->stream, ev, (size_t)n);
}

static void handler(keng_http_request_t *req, void *ctx)
{
    struct harness *h = ctx;
    const char *path = keng_http_request_path(req);
    int id = query_int(req, "id", 0);
    unsigned conns = keng_http_server_connections(h->srv);
    if (conns > h->max_connections_seen)
        h->max_connections_seen = conns;
    if (id >= 0 && id < MAX_RESP)
        h->connections_at[id] = conns;
    h->handled++;
    order_add(h, 'h', id);
    keng_http_server_stats(h->srv, &h->stats);

    if (strcmp(path, "/query") == 0) {
        copy_str(h->method, sizeof(h->method), keng_http_request_method(req));
        copy_str(h->path, sizeof(h->path), path);
        copy_str(h->q_board, sizeof(h->q_board), keng_http_request_query(req, "board"));
        copy_str(h->q_text, sizeof(h->q_text), keng_http_request_query(req, "text"));
        copy_str(h->q_flag, sizeof(h->q_flag), keng_http_request_query(req, "flag"));
        h->q_missing_null = keng_http_request_query(req, "missing") == NULL;
        copy_str(h->header_value, sizeof(h->header_value),
                 keng_http_request_header(req, "x-keng-test"));
        copy_str(h->peer, sizeof(h->peer), keng_http_request_peer(req));
        keng_http_request_add_header(req, "X-Keng", "yes");
        respond_ok(h, req, id);
    } else if (strcmp(path, "/echo") == 0) {
        size_t len = 0;
        const char *body = keng_http_request_body(req, &len);
        copy_str(h->method, sizeof(h->method), keng_http_request_method(req));
        h->body_len = len;
        memcpy(h->body, body, len < sizeof(h->body) - 1 ? len : sizeof(h->body) - 1);
        keng_http_respond(req, 200, "application/octet-stream", body, len);
    } else if (strcmp(path, "/async") == 0) {
        if (keng_http_request_query(req, "wait_gone") != NULL)
            sem_post(&h->server_event);
        reply_later(h, req, id, query_int(req, "delay", 50),
                    keng_http_request_query(req, "wait_gone") != NULL);
    } else if (strcmp(path, "/close-server") == 0) {
        h->server_close_called = true;
        keng_http_server_close(h->srv, on_server_done, h);
        h->in_flight_at_close = keng_http_server_in_flight(h->srv);
        reply_later(h, req, id, 50, false);
    } else if (strcmp(path, "/stream") == 0) {
        assert_int_equal(keng_http_stream_begin(req, "text/event-stream"), 0);
        keng_http_stream_on_close(req, on_stream_closed, h);
        h->stream = req;
        h->stream_write_rc = keng_http_stream_write(req, "data: 0\n\n", 9);
        uv_timer_init(&h->loop, &h->stream_timer);
        h->stream_timer_open = true;
        uv_timer_start(&h->stream_timer, on_stream_timer, 10, 10);
    } else if (strcmp(path, "/stream-cap") == 0) {
        keng_http_request_add_header(req, "Cache-Control", "no-cache");
        if (keng_http_stream_begin(req, "text/event-stream") != 0) {
            keng_http_respond(req, 503, "text/plain", "busy", 4);
            return;
        }
        keng_http_stream_on_close(req, on_stream_closed, h);
        h->stream = req;
        keng_http_stream_write(req, "data: 0\n\n", 9);
    } else if (strcmp(path, "/stream-end") == 0) {
        assert_int_equal(keng_http_stream_begin(req, "text/event-stream"), 0);
        keng_http_stream_on_close(req, on_stream_closed, h);
        h->stream = req;
        h->stream_write_rc = keng_http_stream_write(req, "data: bye\n\n", 11);
        keng_http_stream_end(req);
    } else if (strcmp(path, "/big") == 0) {
        static char big[128 * 1024];
        memset(big, 'b', sizeof(big));
        keng_http_respond(req, 200, "text/plain", big, sizeof(big));
    } else if (strcmp(path, "/flood") == 0) {
        static char chunk[64 * 1024];
        memset(chunk, 'x', sizeof(chunk));
        assert_int_equal(keng_http_stream_begin(req, "text/event-stream"), 0);
        keng_http_stream_on_close(req, on_stream_closed, h);
        h->stream = req;
        /* The client never reads: once the kernel buffers are full, writes queue up until
         * the server cuts the client off. */
        for (int i = 0; i < 1000; i++) {
            h->stream_write_rc = keng_http_stream_write(req, chunk, sizeof(chunk));
            if (h->stream_write_rc < 0)
                break;
            h->flood_writes++;
        }
    } else {
        respond_ok(h, req, id);
    }
}

static void on_harness_handle_closed(uv_handle_t *handle)
{
    (void)handle;
}

static void harness_shutdown(struct harness *h)
{
    if (h->harness_closed)
        return;
    h->harness_closed = true;
    uv_close((uv_handle_t *)&h->client_done, on_harness_handle_closed);
    uv_close((uv_handle_t *)&h->watchdog, on_harness_handle_closed);
    uv_close((uv_handle_t *)&h->finish, on_harness_handle_closed);
    if (h->timed_out)
        stream_timer_close(h);
    if (!h->server_close_called) {
        h->server_close_called = true;
        keng_http_server_close(h->srv, on_server_done, h);
    }
}

static void on_finish(uv_timer_t *t)
{
    struct harness *h = container_of(t, struct harness, finish);
    if (h->ready_to_finish != NULL && !h->ready_to_finish(h) && h->finish_polls++ < 1000)
        return;
    uv_timer_stop(&h->finish);
    harness_shutdown(h);
}

static void on_client_done(uv_async_t *a)
{
    struct harness *h = container_of(a, struct harness, client_done);
    uv_timer_start(&h->finish, on_finish, 0, 5);
}

static void on_watchdog(uv_timer_t *t)
{
    struct harness *h = container_of(t, struct harness, watchdog);
    h->timed_out = true;
    harness_shutdown(h);
}

static void *client_thread(void *arg)
{
    struct harness *h = arg;
    h->client(h);
    uv_async_send(&h->client_done);
    return NULL;
}

static struct harness *harness_new(void)
{
    struct harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    keng_http_limits_default(&h->limits);
    sem_init(&h->server_event, 0, 0);
    return h;
}

static void harness_free(struct harness *h)
{
    sem_destroy(&h->server_event);
    free(h);
}

/* Runs the server until the client is done and the server closed, then checks that the
 * loop has no handle left. */
static void harness_run(struct harness *h, void (*client)(struct harness *h))
{
    h->client = client;
    assert_int_equal(uv_loop_init(&h->loop), 0);
    h->srv = keng_http_server_new(&h->loop, &h->limits, handler, h);
    assert_non_null(h->srv);
    assert_int_equal(keng_http_server_listen(h->srv, "127.0.0.1:0"), 0);
    h->port = keng_http_server_port(h->srv);
    assert_true(h->port > 0);
    uv_async_init(&h->loop, &h->client_done, on_client_done);
    uv_timer_init(&h->loop, &h->watchdog);
    uv_timer_init(&h->loop, &h->finish);
    uv_timer_start(&h->watchdog, on_watchdog, WATCHDOG_MS, 0);
    assert_int_equal(pthread_create(&h->thread, NULL, client_thread, h), 0);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    pthread_join(h->thread, NULL);
    assert_false(h->timed_out);
    assert_true(h->server_done);
    assert_int_equal(uv_loop_close(&h->loop), 0);
    if (h->client_fail_line != 0)
        fail_msg("client check failed at line %d: %s", h->client_fail_line, h->client_fail_msg);
}

/* ---- scenarios ---- */

static bool wait_server_event(struct harness *h);

static void client_get_query(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /query?id=7&board=D07%2DC001-B01&text=a+b%20c%21&flag"
                                     "&board=second HTTP/1.1\r\nHost: keng\r\n"
                                     "X-Keng-Test: from the client\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    client_close(cl);
    free(cl);
}

static void test_get_with_query_decoding(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_get_query);
    assert_int_equal(h->handled, 1);
    assert_string_equal(h->method, "GET");
    assert_string_equal(h->path, "/query");
    assert_string_equal(h->q_board, "D07-C001-B01");
    assert_string_equal(h->q_text, "a b c!");
    assert_string_equal(h->q_flag, "");
    assert_true(h->q_missing_null);
    assert_string_equal(h->header_value, "from the client");
    assert_true(strncmp(h->peer, "127.0.0.1:", 10) == 0);
    assert_int_equal(h->resp[0].status, 200);
    assert_string_equal(h->resp[0].body, "ok 7");
    assert_true(has_header(&h->resp[0], "Content-Type: text/plain"));
    assert_true(has_header(&h->resp[0], "X-Keng: yes"));
    assert_true(strncmp(h->resp[0].head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    harness_free(h);
}

static void client_post(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "POST /echo HTTP/1.1\r\nHost: keng\r\nContent-Type: "
                                     "application/json\r\nContent-Length: 17\r\n\r\n"
                                     "{\"board\":\"D07\"}\n\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    /* A client that expects 100 Continue gets it before sending the body. */
    CLIENT_CHECK(h, client_sends(cl, "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\n"
                                     "Content-Length: 17\r\n\r\n") == 0);
    long head_len = client_read_head(cl, &h->resp[1]);
    CLIENT_CHECK(h, head_len > 0);
    client_consume(cl, (size_t)head_len);
    CLIENT_CHECK(h, client_sends(cl, "{\"board\":\"D07\"}\n\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[2]) == 0);
    client_close(cl);
    free(cl);
}

static void test_post_with_body(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_post);
    assert_int_equal(h->handled, 2);
    assert_int_equal(h->resp[1].status, 100);
    h->resp[1] = h->resp[2];
    assert_string_equal(h->method, "POST");
    assert_int_equal(h->body_len, 17);
    assert_string_equal(h->body, "{\"board\":\"D07\"}\n\n");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(h->resp[i].status, 200);
        assert_int_equal(h->resp[i].body_len, 17);
        assert_string_equal(h->resp[i].body, "{\"board\":\"D07\"}\n\n");
        assert_true(has_header(&h->resp[i], "Content-Length: 17"));
    }
    harness_free(h);
}

static void client_keep_alive(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    for (int i = 0; i < 3; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET /?id=%d HTTP/1.1\r\nHost: keng\r\n\r\n", i + 1);
        CLIENT_CHECK(h, client_sends(cl, req) == 0);
        CLIENT_CHECK(h, client_read_response(cl, &h->resp[i]) == 0);
    }
    /* Connection: close is honoured. */
    CLIENT_CHECK(h, client_sends(cl, "GET /?id=4 HTTP/1.1\r\nConnection: close\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[3]) == 0);
    h->closed_seen[3] = client_sees_close(cl);
    client_close(cl);

    /* HTTP/1.0 closes unless it asks for keep-alive. */
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /?id=5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[4]) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /?id=6 HTTP/1.0\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[5]) == 0);
    h->closed_seen[5] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_keep_alive_three_requests(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_keep_alive);
    assert_int_equal(h->handled, 6);
    for (int id = 1; id <= 4; id++)
        assert_int_equal(h->connections_at[id], 1);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof(want), "ok %d", i + 1);
        assert_int_equal(h->resp[i].status, 200);
        assert_string_equal(h->resp[i].body, want);
        assert_false(has_header(&h->resp[i], "Connection: close"));
    }
    assert_true(has_header(&h->resp[3], "Connection: close"));
    assert_true(h->closed_seen[3]);
    assert_true(has_header(&h->resp[4], "Connection: keep-alive"));
    assert_true(has_header(&h->resp[5], "Connection: close"));
    assert_true(h->closed_seen[5]);
    harness_free(h);
}

static void client_pipelined(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /async?id=1&delay=100 HTTP/1.1\r\nHost: keng\r\n\r\n"
                                     "POST /?id=2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                                     "GET /async?id=3&delay=20 HTTP/1.1\r\nHost: keng\r\n\r\n"
                                     "GET /?id=4 HTTP/1.1\r\nHost: keng\r\n\r\n") == 0);
    for (int i = 0; i < 4; i++)
        CLIENT_CHECK(h, client_read_response(cl, &h->resp[i]) == 0);
    client_close(cl);
    free(cl);
}

static void test_pipelined_answers_in_order(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_pipelined);
    /* Each request reaches the handler only after the previous one was answered. */
    assert_string_equal(h->order, "h1 r1 h2 r2 h3 r3 h4 r4");
    for (int i = 0; i < 4; i++) {
        char want[16];
        snprintf(want, sizeof(want), "ok %d", i + 1);
        assert_int_equal(h->resp[i].status, 200);
        assert_string_equal(h->resp[i].body, want);
    }
    harness_free(h);
}

static void client_too_large(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    h->closed_seen[0] = client_sees_close(cl);
    client_close(cl);

    /* A chunked body is refused before it is read: bodies come with Content-Length. */
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    char req[4096];
    char chunk[700];
    memset(chunk, 'a', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2bb\r\n%s\r\n2bb\r\n%s\r\n",
             chunk, chunk);
    CLIENT_CHECK(h, client_sends(cl, req) == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_body_too_large_413(void **state)
{
    struct harness *h = harness_new();
    h->limits.max_body_bytes = 1024;
    harness_run(h, client_too_large);
    assert_int_equal(h->handled, 0);
    assert_int_equal(h->resp[0].status, 413);
    assert_int_equal(h->resp[1].status, 411);
    for (int i = 0; i < 2; i++) {
        assert_true(has_header(&h->resp[i], "Content-Type: application/json"));
        assert_true(strncmp(h->resp[i].body, "{\"error\":", 9) == 0);
        assert_true(has_header(&h->resp[i], "Connection: close"));
        assert_true(h->closed_seen[i]);
    }
    harness_free(h);
}

static void client_huge_headers(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    char *req = malloc(8192);
    CLIENT_CHECK(h, req != NULL);
    char big[4001];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(req, 8192, "GET / HTTP/1.1\r\nHost: keng\r\nX-Big: %s\r\n\r\n", big);
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, req) == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    h->closed_seen[0] = client_sees_close(cl);
    client_close(cl);
    free(req);

    /* Not HTTP at all: 400 and close. */
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "HELLO\x01 there\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_huge_headers_431_and_garbage_400(void **state)
{
    struct harness *h = harness_new();
    h->limits.max_header_bytes = 1024;
    harness_run(h, client_huge_headers);
    assert_int_equal(h->handled, 0);
    assert_int_equal(h->resp[0].status, 431);
    assert_true(has_header(&h->resp[0], "Connection: close"));
    assert_true(h->closed_seen[0]);
    assert_int_equal(h->resp[1].status, 400);
    assert_true(has_header(&h->resp[1], "Connection: close"));
    assert_true(h->closed_seen[1]);
    harness_free(h);
}

static void client_slow(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /slow HTTP/1.1\r\nHost: keng\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    h->closed_seen[0] = client_sees_close(cl);
    client_close(cl);

    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(cl);
    client_close(cl);

    /* A keep-alive connection left idle is closed without an answer. */
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /?id=1 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[2]) == 0);
    h->closed_seen[2] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_slow_client_408_and_idle_close(void **state)
{
    struct harness *h = harness_new();
    h->limits.header_timeout_ms = 200;
    h->limits.body_timeout_ms = 200;
    h->limits.idle_timeout_ms = 200;
    harness_run(h, client_slow);
    assert_int_equal(h->handled, 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(h->resp[i].status, 408);
        assert_true(has_header(&h->resp[i], "Connection: close"));
        assert_true(h->closed_seen[i]);
    }
    assert_int_equal(h->resp[2].status, 200);
    assert_true(h->closed_seen[2]);
    harness_free(h);
}

static void client_max_connections(struct harness *h)
{
    struct client *a = calloc(1, sizeof(*a));
    struct client *b = calloc(1, sizeof(*b));
    CLIENT_CHECK(h, client_open(a, h->port) == 0);
    CLIENT_CHECK(h, client_sends(a, "GET /?id=1 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(a, &h->resp[0]) == 0);
    /* Half a request: the only connection is busy, so the next one cannot take its place.
     * The pause lets the server read it before it accepts the next connection. */
    CLIENT_CHECK(h, client_sends(a, "GET /?id=3 HTTP/1.1\r\n") == 0);
    usleep(200 * 1000);
    CLIENT_CHECK(h, client_open(b, h->port) == 0);
    CLIENT_CHECK(h, client_sends(b, "GET /?id=2 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(b, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(b);
    client_close(b);
    /* The first connection still works. */
    CLIENT_CHECK(h, client_sends(a, "\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(a, &h->resp[2]) == 0);
    /* Now idle, it gives way to a new connection. */
    CLIENT_CHECK(h, client_open(b, h->port) == 0);
    CLIENT_CHECK(h, client_sends(b, "GET /?id=4 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(b, &h->resp[3]) == 0);
    h->closed_seen[0] = client_sees_close(a);
    client_close(b);
    client_close(a);
    free(a);
    free(b);
}

static void test_max_connections_503(void **state)
{
    struct harness *h = harness_new();
    h->limits.max_connections = 1;
    harness_run(h, client_max_connections);
    assert_int_equal(h->handled, 3);
    assert_string_equal(h->order, "h1 r1 h3 r3 h4 r4");
    assert_int_equal(h->resp[0].status, 200);
    assert_int_equal(h->resp[1].status, 503);
    assert_true(has_header(&h->resp[1], "Retry-After: 1"));
    assert_true(has_header(&h->resp[1], "Connection: close"));
    assert_true(has_header(&h->resp[1], "Content-Type: application/json"));
    assert_true(h->closed_seen[1]);
    assert_int_equal(h->resp[2].status, 200);
    assert_int_equal(h->resp[3].status, 200);
    assert_true(h->closed_seen[0]);
    assert_int_equal(h->stats.refused, 1);
    assert_int_equal(h->stats.evicted, 1);
    harness_free(h);
}

static void client_stream(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /stream HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n") ==
                        0);
    long head_len = client_read_head(cl, &h->resp[0]);
    CLIENT_CHECK(h, head_len > 0);
    client_consume(cl, (size_t)head_len);
    for (int i = 0; i < 1000 && memmem(cl->buf, cl->len, "data: 3\n\n", 9) == NULL; i++)
        CLIENT_CHECK(h, client_fill(cl) > 0);
    size_t n = cl->len < sizeof(h->stream_text) - 1 ? cl->len : sizeof(h->stream_text) - 1;
    memcpy(h->stream_text, cl->buf, n);
    h->stream_text[n] = '\0';
    client_close(cl);
    free(cl);
}

static bool stream_closed(struct harness *h)
{
    return h->on_close_called;
}

static void test_sse_stream_and_client_disconnect(void **state)
{
    struct harness *h = harness_new();
    h->ready_to_finish = stream_closed;
    harness_run(h, client_stream);
    assert_int_equal(h->resp[0].status, 200);
    assert_true(has_header(&h->resp[0], "Content-Type: text/event-stream"));
    assert_true(has_header(&h->resp[0], "Cache-Control: no-cache"));
    assert_null(strcasestr(h->resp[0].head, "Content-Length"));
    assert_true(strncmp(h->stream_text, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n", 36) == 0);
    /* The server noticed the client leaving by itself, before the server was closed. */
    assert_true(h->on_close_called);
    assert_true(h->on_close_before_server_close);
    harness_free(h);
}

static void client_stream_end(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /stream-end HTTP/1.1\r\n\r\n") == 0);
    long head_len = client_read_head(cl, &h->resp[0]);
    CLIENT_CHECK(h, head_len > 0);
    client_consume(cl, (size_t)head_len);
    /* Everything up to the server's end of stream. */
    for (int i = 0; i < 1000 && client_fill(cl) > 0; i++)
        continue;
    memcpy(h->stream_text, cl->buf, cl->len < 64 ? cl->len : 64);
    client_close(cl);
    free(cl);
}

static void test_sse_stream_ended_by_server(void **state)
{
    struct harness *h = harness_new();
    h->ready_to_finish = stream_closed;
    harness_run(h, client_stream_end);
    assert_int_equal(h->stream_write_rc, 0);
    assert_string_equal(h->stream_text, "data: bye\n\n");
    assert_true(h->on_close_called);
    assert_true(h->on_close_before_server_close);
    harness_free(h);
}

static void client_flood(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /flood HTTP/1.1\r\n\r\n") == 0);
    /* Reads nothing until the server gave up on us, then drains to the end. */
    CLIENT_CHECK(h, wait_server_event(h));
    h->closed_seen[0] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_sse_slow_reader_cut_off(void **state)
{
    struct harness *h = harness_new();
    h->ready_to_finish = stream_closed;
    harness_run(h, client_flood);
    assert_true(h->stream_write_rc < 0);
    assert_true(h->flood_writes > 0);
    assert_true(h->on_close_called);
    assert_true(h->on_close_before_server_close);
    assert_true(h->closed_seen[0]);
    harness_free(h);
}

static bool wait_server_event(struct harness *h)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 20;
    return sem_timedwait(&h->server_event, &deadline) == 0;
}

static void client_disconnects_early(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /async?id=1&delay=20&wait_gone=1 HTTP/1.1\r\n"
                                     "Host: keng\r\n\r\nGET /?id=2 HTTP/1.1\r\n\r\n") == 0);
    /* Once the handler has the request, the client resets the connection. */
    CLIENT_CHECK(h, wait_server_event(h));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(cl->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    client_close(cl);
    free(cl);
}

static bool late_answer_given(struct harness *h)
{
    return h->async_done == 1;
}

static void test_async_answer_after_client_left(void **state)
{
    struct harness *h = harness_new();
    h->ready_to_finish = late_answer_given;
    harness_run(h, client_disconnects_early);
    assert_int_equal(h->async_done, 1);
    assert_int_equal(h->connections_at_late_answer, 0);
    /* The pipelined second request died with its connection. */
    assert_string_equal(h->order, "h1 r1");
    harness_free(h);
}

static void client_half_closes(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    CLIENT_CHECK(h, client_sends(cl, "GET /async?id=1&delay=50 HTTP/1.1\r\n\r\n"
                                     "GET /?id=2 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, shutdown(cl->fd, SHUT_WR) == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[0]) == 0);
    CLIENT_CHECK(h, client_read_response(cl, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(cl);
    client_close(cl);
    free(cl);
}

static void test_half_closed_client_still_answered(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_half_closes);
    assert_string_equal(h->order, "h1 r1 h2 r2");
    assert_string_equal(h->resp[0].body, "ok 1");
    assert_string_equal(h->resp[1].body, "ok 2");
    assert_true(h->closed_seen[1]);
    harness_free(h);
}

static void client_close_while_in_flight(struct harness *h)
{
    struct client *idle = calloc(1, sizeof(*idle));
    struct client *busy = calloc(1, sizeof(*busy));
    CLIENT_CHECK(h, client_open(idle, h->port) == 0);
    CLIENT_CHECK(h, client_sends(idle, "GET /?id=1 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(idle, &h->resp[0]) == 0);
    CLIENT_CHECK(h, client_open(busy, h->port) == 0);
    CLIENT_CHECK(h, client_sends(busy, "GET /close-server?id=2 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(busy, &h->resp[1]) == 0);
    h->closed_seen[1] = client_sees_close(busy);
    h->closed_seen[0] = client_sees_close(idle);
    client_close(busy);
    client_close(idle);
    free(idle);
    free(busy);
}

static void test_server_close_with_request_in_flight(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_close_while_in_flight);
    assert_int_equal(h->in_flight_at_close, 1);
    assert_string_equal(h->order, "h1 r1 h2 r2");
    assert_int_equal(h->resp[1].status, 200);
    assert_string_equal(h->resp[1].body, "ok 2");
    assert_true(has_header(&h->resp[1], "Connection: close"));
    assert_true(h->closed_seen[1]);
    assert_true(h->closed_seen[0]);
    harness_free(h);
}

/* What http-parser's lenient build takes and a proxy in front could frame otherwise, each on
 * a connection of its own, with the answer each must get. */
static const struct strict_case {
    const char *request;
    int status;
} strict_cases[] = {
    /* chunk data not followed by CRLF: no chunked body is taken at all */
    {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabcXX0\r\n\r\n",
     411},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     "3\r\nabc\r\n0\r\n\r\n",
     501},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 501},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     "Content-Length: 3\r\n\r\nabc",
     400},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
     "0\r\n\r\n",
     400},
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
    {"GET / HTTP/1.1\nHost: x\n\n", 400},
    {"GET / HTTP/1.1\r\nHost: x\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400},
    {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", 400},
    {"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505},
    {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
    {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
    {"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\n"
     "Authorization: Bearer b\r\n\r\n",
     400},
    {"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\ncontent-type: b\r\n"
     "Content-Length: 0\r\n\r\n",
     400},
    {"GET /?id=D04%00junk HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    {"GET /?id=D04%0d%0aX:%20y HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    {"GET /\t/x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
    /* and what stays fine */
    {"GET /?id=3 HTTP/1.1\r\nHost: x\r\n\r\n", 200},
    {"\r\nGET /?id=3 HTTP/1.0\r\nHost: x\r\n\r\n", 200},
    {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 200},
};
#define NSTRICT (sizeof(strict_cases) / sizeof(strict_cases[0]))

static void client_strict(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    for (size_t i = 0; i < NSTRICT; i++) {
        struct response r;
        CLIENT_CHECK(h, client_open(cl, h->port) == 0);
        CLIENT_CHECK(h, client_sends(cl, strict_cases[i].request) == 0);
        h->strict_status[i] = client_read_response(cl, &r) == 0 ? r.status : -1;
        if (r.status >= 400)
            h->strict_closed[i] = has_header(&r, "Connection: close") &&
                                  has_header(&r, "Content-Type: application/json") &&
                                  r.body[0] == '{';
        client_close(cl);
    }
    free(cl);
}

static void test_strict_framing(void **state)
{
    struct harness *h = harness_new();
    harness_run(h, client_strict);
    for (size_t i = 0; i < NSTRICT; i++) {
        if (h->strict_status[i] != strict_cases[i].status)
            fail_msg("case %zu: expected %d, got %d for %s", i, strict_cases[i].status,
                     h->strict_status[i], strict_cases[i].request);
        if (strict_cases[i].status >= 400 && !h->strict_closed[i])
            fail_msg("case %zu: the %d is not JSON with Connection: close", i,
                     strict_cases[i].status);
    }
    harness_free(h);
}

/* A client pipelines requests for 128 KiB answers (38 MiB in all, more than the kernel's
 * socket buffers take) without reading: the server stops reading past max_unsent_bytes, and
 * every answer still arrives once the client reads. */
#define PIPELINED 300
static void client_pipelined_no_read(struct harness *h)
{
    struct client *cl = calloc(1, sizeof(*cl));
    static char reqs[PIPELINED * 32];
    size_t n = 0;
    CLIENT_CHECK(h, client_open(cl, h->port) == 0);
    for (int i = 0; i < PIPELINED; i++)
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /big HTTP/1.1\r\n\r\n");
    /* 7 KiB of requests: the kernel takes them whole even when the server stops reading. */
    CLIENT_CHECK(h, client_send(cl, reqs, n) == 0);
    usleep(300 * 1000);
    for (int i = 0; i < PIPELINED; i++) {
        struct response r;
        long head = client_read_head(cl, &r);
        CLIENT_CHECK(h, head > 0 && r.status == 200);
        client_consume(cl, (size_t)head);
        size_t left = 128 * 1024;
        while (left > 0) {
            if (cl->len == 0)
                CLIENT_CHECK(h, client_fill(cl) > 0);
            size_t take = cl->len < left ? cl->len : left;
            client_consume(cl, take);
            left -= take;
        }
        h->pipelined_ok++;
    }
    client_close(cl);
    free(cl);
}

static void test_pipelined_backpressure(void **state)
{
    struct harness *h = harness_new();
    h->limits.max_unsent_bytes = 64 * 1024;
    harness_run(h, client_pipelined_no_read);
    assert_int_equal(h->pipelined_ok, PIPELINED);
    assert_int_equal(h->handled, PIPELINED);
    if (h->stats.read_pauses < 1)
        fail_msg("expected the connection to pause reading at least once, got %llu pauses",
                 (unsigned long long)h->stats.read_pauses);
    harness_free(h);
}

/* Streams have a cap of their own; past it a stream is refused and ordinary requests go on. */
static void client_stream_cap(struct harness *h)
{
    struct client *a = calloc(1, sizeof(*a));
    struct client *b = calloc(1, sizeof(*b));
    struct response r;
    CLIENT_CHECK(h, client_open(a, h->port) == 0);
    CLIENT_CHECK(h, client_sends(a, "GET /stream-cap HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_head(a, &r) > 0);
    h->resp[0] = r;
    CLIENT_CHECK(h, client_open(b, h->port) == 0);
    CLIENT_CHECK(h, client_sends(b, "GET /stream-cap HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(b, &h->resp[1]) == 0);
    CLIENT_CHECK(h, client_sends(b, "GET /?id=5 HTTP/1.1\r\n\r\n") == 0);
    CLIENT_CHECK(h, client_read_response(b, &h->resp[2]) == 0);
    client_close(b);
    client_close(a);
    CLIENT_CHECK(h, wait_server_event(h));
    free(a);
    free(b);
}

static void test_stream_cap(void **state)
{
    struct harness *h = harness_new();
    h->limits.max_streams = 1;
    h->limits.max_connections = 2;
    harness_run(h, client_stream_cap);
    assert_int_equal(h->resp[0].status, 200);
    /* Cache-Control once, even when the handler adds it too. */
    const char *cc = strcasestr(h->resp[0].head, "Cache-Control:");
    assert_non_null(cc);
    assert_null(strcasestr(cc + 1, "Cache-Control:"));
    assert_int_equal(h->resp[1].status, 503);
    assert_int_equal(h->resp[2].status, 200);
    assert_int_equal(h->stats.streams_refused, 1);
    assert_int_equal(h->stats.streams, 1);
    harness_free(h);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_query_decoding),
        cmocka_unit_test(test_post_with_body),
        cmocka_unit_test(test_keep_alive_three_requests),
        cmocka_unit_test(test_pipelined_answers_in_order),
        cmocka_unit_test(test_body_too_large_413),
        cmocka_unit_test(test_huge_headers_431_and_garbage_400),
        cmocka_unit_test(test_slow_client_408_and_idle_close),
        cmocka_unit_test(test_max_connections_503),
        cmocka_unit_test(test_sse_stream_and_client_disconnect),
        cmocka_unit_test(test_sse_stream_ended_by_server),
        cmocka_unit_test(test_sse_slow_reader_cut_off),
        cmocka_unit_test(test_async_answer_after_client_left),
        cmocka_unit_test(test_half_closed_client_still_answered),
        cmocka_unit_test(test_server_close_with_request_in_flight),
        cmocka_unit_test(test_strict_framing),
        cmocka_unit_test(test_pipelined_backpressure),
        cmocka_unit_test(test_stream_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
