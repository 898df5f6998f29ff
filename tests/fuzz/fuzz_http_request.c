/* Fuzzes keng-ingest's request path over a real socket: the bytes are sent as they are to a
 * keng_http_server on 127.0.0.1, whose handler does what keng-ingest's does up to the point
 * where it would hand the events to Kafka (routes, bearer token, Content-Type, body limits,
 * JSON parsing and validation, the 403 district check, /healthz and /metrics), and answers 202
 * there instead: later, from a timer, as keng-ingest answers once Kafka has acknowledged, so
 * that the server's handling of a request in flight (pipelined requests behind it, the client
 * leaving before the answer) is fuzzed too. It never hands anything to Kafka, and never listens
 * beyond 127.0.0.1.
 *
 * Each input is one connection: connect, write everything, shut down the writing side, then
 * run the loop until the server closes the connection. One input in seven (by its length)
 * instead resets the connection right after writing, before any answer.
 *
 * Everything runs on this thread: the client socket is non-blocking and the loop is run with
 * UV_RUN_NOWAIT between the client's reads and writes.
 *
 * Seeds authenticate with the tokens below: FUZZ_TOKEN_ALL may report for every district,
 * FUZZ_TOKEN_D01 only for D01. The server takes the Host names localhost and keng.example
 * (and IP literals): a request with another name must never reach the handler. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <uv.h>

#include "config.h"
#include "fuzz_util.h"
#include "http_server.h"
#include "ingest_body.h"
#include "ingest_metrics.h"
#include "log.h"
#include "registry.h"
#include "timeutil.h"
#include "tokens.h"

#define FUZZ_TOKEN_ALL "keng-fuzz-token-all-districts"
#define FUZZ_TOKEN_D01 "keng-fuzz-token-district-d01"

/* How long one input may take from connect to the server's close. Far above what a sane
 * server needs on loopback and below libFuzzer's -timeout. */
#define CONN_DEADLINE_MS 3000

/* Response bytes kept to check the status line; the rest is read and dropped. */
#define RESPONSE_KEEP 256

static uv_loop_t loop;
static keng_http_server_t *server;
static int server_port;
static keng_registry_t *registry;
static keng_tokens_t *tokens;
static keng_ingest_metrics_t *metrics;
static keng_ingest_body_limits_t body_limits;

/* ---- the handler: keng-ingest's, without Kafka ---- */

/* A 202 waiting for its timer, as a request waits for Kafka's acknowledgements. */
typedef struct pending {
    uv_timer_t timer;
    keng_http_request_t *req;
    size_t events;
} pending_t;

static void on_pending_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_pending_timer(uv_timer_t *t)
{
    pending_t *pd = t->data;

    keng_ingest_metrics_accepted(metrics, pd->events);
    keng_ingest_metrics_request(metrics, 202);
    keng_http_respond_json(pd->req, 202, json_pack("{s:I}", "accepted", (json_int_t)pd->events));
    uv_close((uv_handle_t *)&pd->timer, on_pending_closed);
}

/* Answers 202 for events after delay_ms, from the loop. */
static void respond_later(keng_http_request_t *req, size_t events, unsigned delay_ms)
{
    pending_t *pd = calloc(1, sizeof(*pd));

    FUZZ_CHECK(pd != NULL, "out of memory");
    pd->req = req;
    pd->events = events;
    FUZZ_CHECK(uv_timer_init(&loop, &pd->timer) == 0, "uv_timer_init failed");
    pd->timer.data = pd;
    FUZZ_CHECK(uv_timer_start(&pd->timer, on_pending_timer, delay_ms, 0) == 0,
               "uv_timer_start failed");
}

static void answer_error(keng_http_request_t *req, int status, const char *field,
                         const char *message)
{
    keng_ingest_metrics_request(metrics, status);
    keng_http_respond_json(
        req, status,
        json_pack("{s:[{s:n, s:s, s:s}]}", "errors", "index", "field", field, "message", message));
}

/* application/json, optionally with a UTF-8 charset (keng-ingest's own check is static in
 * producers/ingest/ingest.c; this is the same rule, less carefully). */
static bool content_type_ok(const char *ct)
{
    static const char json_type[] = "application/json";

    if (ct == NULL || strncasecmp(ct, json_type, sizeof(json_type) - 1) != 0)
        return false;
    ct += sizeof(json_type) - 1;
    return *ct == '\0' || *ct == ';';
}

static void serve_events(keng_http_request_t *req, keng_kind_t kind)
{
    const char *auth = keng_http_request_header(req, "Authorization");
    const keng_gateway_t *gw = keng_tokens_authorize(tokens, auth);
    keng_ingest_body_t *body = NULL;
    json_t *errors = NULL;
    const char *data;
    size_t len = 0, nevents = 0;
    int status;

    if (gw == NULL) {
        keng_http_request_add_header(req, "WWW-Authenticate", "Bearer realm=\"keng-ingest\"");
        answer_error(req, 401, "Authorization", "send Authorization: Bearer <token>");
        return;
    }
    if (!content_type_ok(keng_http_request_header(req, "Content-Type"))) {
        answer_error(req, 415, "Content-Type", "the body must be application/json");
        return;
    }
    data = keng_http_request_body(req, &len);
    FUZZ_CHECK(len == 0 || data != NULL, "a body of %zu bytes at NULL", len);
    status = keng_ingest_body_parse(data, len, kind, registry, gw, &body_limits, &body, &errors,
                                    &nevents);
    if (status != 0) {
        FUZZ_CHECK(body == NULL, "a refused body (status %d) was handed out", status);
        FUZZ_CHECK(status == 400 || status == 403 || status == 413 || status == 503,
                   "keng_ingest_body_parse answered status %d", status);
        FUZZ_CHECK(json_array_size(json_object_get(errors, "errors")) > 0,
                   "status %d without a list of errors", status);
        keng_ingest_metrics_rejected(metrics,
                                     status == 403   ? KENG_REJECT_FORBIDDEN
                                     : status == 413 ? KENG_REJECT_TOO_MANY
                                     : status == 503 ? KENG_REJECT_UNAVAILABLE
                                                     : KENG_REJECT_INVALID,
                                     nevents);
        keng_ingest_metrics_request(metrics, status);
        keng_http_respond_json(req, status, errors);
        return;
    }
    FUZZ_CHECK(body != NULL && keng_ingest_body_count(body) == nevents &&
                   nevents <= body_limits.max_events && nevents > 0,
               "an accepted body of %zu events", nevents);
    for (size_t i = 0; i < nevents; i++) {
        const keng_event_t *ev = keng_ingest_body_event(body, i);
        int32_t board = keng_registry_find_board(registry, ev->board_id, strlen(ev->board_id));
        const keng_district_t *district;

        fuzz_expect_sane_event(ev);
        FUZZ_CHECK(ev->kind == kind, "a %d event accepted on the path of kind %d", ev->kind, kind);
        FUZZ_CHECK(board >= 0, "board '%s' accepted but not in the registry", ev->board_id);
        district = keng_registry_district(registry,
                                          keng_registry_board(registry, (uint32_t)board)->district);
        FUZZ_CHECK(keng_gateway_allows(gw, district->id, strlen(district->id)),
                   "board '%s' accepted from gateway '%s', which may not report for it",
                   ev->board_id, keng_gateway_name(gw));
    }
    keng_ingest_body_destroy(body);
    /* One event: the next loop iteration; more: a millisecond, so that the client has often
     * shut down or gone by then. */
    respond_later(req, nevents, nevents > 1 ? 1 : 0);
}

static void serve_metrics(keng_http_request_t *req)
{
    keng_ingest_gauges_t g = {
        .connections = keng_http_server_connections(server),
        .tokens = (long long)keng_tokens_count(tokens),
    };
    size_t len = 0;
    char *text;

    keng_ingest_metrics_request(metrics, 200);
    text = keng_ingest_metrics_render(metrics, &g, &len);
    FUZZ_CHECK(text != NULL, "metrics could not be rendered");
    keng_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* The names the server takes in Host besides IP literals (keng_http_server_allow_hosts). */
static const char *const allowed_hosts[] = {"localhost", "keng.example"};

/* A Host that names a host (it starts with a letter: not an IP literal) reached the handler
 * only if it is one of allowed_hosts, in any case, with or without a port or a final dot: the
 * check against DNS rebinding let nothing else through. */
static void check_host(const keng_http_request_t *req)
{
    const char *host = keng_http_request_header(req, "Host");
    size_t len;

    if (!host)
        return;
    while (*host == ' ' || *host == '\t')
        host++;
    if (!((*host >= 'a' && *host <= 'z') || (*host >= 'A' && *host <= 'Z')))
        return;
    len = strcspn(host, ": \t");
    /* "keng.example." is the same name as "keng.example", written as a full domain name. */
    while (len > 0 && host[len - 1] == '.')
        len--;
    for (size_t i = 0; i < sizeof(allowed_hosts) / sizeof(allowed_hosts[0]); i++)
        if (strlen(allowed_hosts[i]) == len && strncasecmp(host, allowed_hosts[i], len) == 0)
            return;
    FUZZ_CHECK(0, "a request with Host '%.60s' reached the handler", host);
}

static void on_request(keng_http_request_t *req, void *ctx)
{
    const char *method = keng_http_request_method(req);
    const char *path = keng_http_request_path(req);

    FUZZ_CHECK(method != NULL && path != NULL, "a request without method or path");
    check_host(req);
    if (strcmp(path, "/v1/incidents") == 0 || strcmp(path, "/v1/mediations") == 0) {
        if (strcmp(method, "POST") != 0) {
            keng_http_request_add_header(req, "Allow", "POST");
            answer_error(req, 405, "", "use POST");
            return;
        }
        serve_events(req, path[4] == 'i' ? KENG_KIND_INCIDENT : KENG_KIND_MEDIATION);
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0) {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            keng_http_request_add_header(req, "Allow", "GET, HEAD");
            answer_error(req, 405, "", "use GET");
            return;
        }
        if (path[1] == 'm') {
            serve_metrics(req);
            return;
        }
        keng_ingest_metrics_request(metrics, 200);
        keng_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    /* Query parameters are parsed lazily; ask for one so that path is fuzzed too. */
    (void)keng_http_request_query(req, "id");
    answer_error(req, 404, "", "no such endpoint");
}

/* ---- set-up, once per process ---- */

static void sha256_hex(const char *text, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    FUZZ_CHECK(EVP_Digest(text, strlen(text), md, &n, EVP_sha256(), NULL) == 1, "SHA-256 failed");
    for (unsigned int i = 0; i < n; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
}

static void load_tokens(void)
{
    char dir[] = "/tmp/keng-fuzz-XXXXXX", path[64], errstr[512];
    char all[KENG_TOKEN_HASH_HEX_LEN + 1], d01[KENG_TOKEN_HASH_HEX_LEN + 1];
    FILE *f;

    FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/tokens", dir);
    sha256_hex(FUZZ_TOKEN_ALL, all);
    sha256_hex(FUZZ_TOKEN_D01, d01);
    f = fopen(path, "w");
    FUZZ_CHECK(f != NULL, "%s: %s", path, strerror(errno));
    fprintf(f, "# keng fuzz tokens\n%s fuzz-all *\n%s fuzz-d01 D01\n", all, d01);
    fclose(f);
    tokens = keng_tokens_load(path, errstr, sizeof(errstr));
    FUZZ_CHECK(tokens != NULL, "tokens: %s", errstr);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    keng_http_limits_t limits;
    int rc;

    keng_log_set_level(KENG_LOG_ERROR);
    /* A client that goes away mid-answer must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    registry = keng_registry_default();
    FUZZ_CHECK(registry != NULL, "the default registry could not be built");
    load_tokens();
    metrics = keng_ingest_metrics_new();
    FUZZ_CHECK(metrics != NULL, "metrics: out of memory");
    body_limits.max_events = 16; /* small, so that 413 is within reach */
    body_limits.max_depth = KENG_INGEST_MAX_DEPTH;
    body_limits.now_ms = FUZZ_NOW_MS;

    FUZZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init failed");
    keng_http_limits_default(&limits);
    /* Small enough that 413 and 431 are reachable with inputs of a few KiB. */
    limits.max_header_bytes = 2048;
    limits.max_body_bytes = 8192;
    server = keng_http_server_new(&loop, &limits, on_request, NULL);
    FUZZ_CHECK(server != NULL, "keng_http_server_new failed");
    keng_config_t *cfg = keng_config_new();
    char err[256];
    FUZZ_CHECK(cfg != NULL, "out of memory");
    keng_config_set(cfg, "http.allowed_hosts", "localhost,keng.example");
    FUZZ_CHECK(keng_http_server_allow_hosts(server, cfg, NULL, err, sizeof(err)) == 0, "%s", err);
    keng_config_destroy(cfg);
    rc = keng_http_server_listen(server, "127.0.0.1:0");
    FUZZ_CHECK(rc == 0, "listen on 127.0.0.1:0: %s", uv_strerror(rc));
    server_port = keng_http_server_port(server);
    return 0;
}

/* ---- one input, one connection ---- */

/* Waits for the client socket or the loop, at most what the loop's next timer allows. */
static void wait_for_io(int fd, short events)
{
    struct pollfd p[2] = {{.fd = fd, .events = events},
                          {.fd = uv_backend_fd(&loop), .events = POLLIN}};
    int timeout = uv_backend_timeout(&loop);

    if (timeout < 0 || timeout > 10)
        timeout = 10;
    poll(p, 2, timeout);
}

/* Checks what the server sent back: HTTP/1.1 responses with a sane status (100 Continue
 * answers Expect: 100-continue). */
static void check_response(const char *resp, size_t len)
{
    int status;

    if (len == 0)
        return;
    FUZZ_CHECK(len >= 12 && memcmp(resp, "HTTP/1.1 ", 9) == 0, "a response that starts '%.*s'",
               (int)(len < 32 ? len : 32), resp);
    status = atoi(resp + 9);
    FUZZ_CHECK((status == 100 || (status >= 200 && status <= 599)) && status != 500, "status %d",
               status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    char resp[RESPONSE_KEEP], scratch[4096];
    size_t sent = 0, kept = 0;
    bool shut = false, closed = false;
    int64_t deadline = keng_monotonic_ms() + CONN_DEADLINE_MS;
    /* One input in seven, by length so that a reproducer replays the same way, is sent by a
     * client that resets the connection as soon as it has written everything. */
    bool abrupt = size % 7 == 3;
    int fd;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        FUZZ_CHECK(errno == EINPROGRESS, "connect: %s", strerror(errno));

    while (!closed) {
        bool progress = false;
        ssize_t n;

        FUZZ_CHECK(keng_monotonic_ms() < deadline,
                   "the server did not close the connection within %d ms of the connect "
                   "(sent %zu of %zu bytes)",
                   CONN_DEADLINE_MS, sent, size);
        if (sent < size) {
            n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
                /* The server answered and closed before reading everything (413, 431). */
                sent = size;
            }
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
            if (abrupt) {
                /* Leave with a reset, before any answer: the server still has requests in
                 * flight and must answer into the void, then free them. */
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
                break;
            }
        }
        while ((n = recv(fd, scratch, sizeof(scratch), 0)) > 0) {
            size_t take = (size_t)n < sizeof(resp) - kept ? (size_t)n : sizeof(resp) - kept;
            memcpy(resp + kept, scratch, take);
            kept += take;
            progress = true;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN))
            closed = true;
        if (uv_run(&loop, UV_RUN_NOWAIT) != 0 && !progress && !closed)
            wait_for_io(fd, (short)(POLLIN | (sent < size ? POLLOUT : 0)));
    }
    close(fd);
    check_response(resp, kept);

    /* The server's side of the connection must go away too; anything left is a leak that a
     * hostile client could repeat up to the connection cap. */
    while (keng_http_server_connections(server) > 0) {
        FUZZ_CHECK(keng_monotonic_ms() < deadline,
                   "%u connection(s) left open after the client left",
                   keng_http_server_connections(server));
        uv_run(&loop, UV_RUN_NOWAIT);
        if (keng_http_server_connections(server) > 0)
            wait_for_io(-1, 0);
    }
    FUZZ_CHECK(keng_http_server_in_flight(server) == 0, "%u request(s) in flight and no connection",
               keng_http_server_in_flight(server));
    return 0;
}
