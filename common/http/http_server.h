/* A small HTTP/1.1 server on a libuv loop, parsed by http-parser: keep-alive, pipelined
 * requests answered in order with backpressure, limits on header and body size, read timeouts
 * against slow clients, a connection cap that evicts idle connections, strict framing (bodies
 * only with Content-Length), and Server-Sent Events. It knows nothing of routes: one handler
 * sees every request.
 *
 * Thread: everything here runs on the loop's thread. */
#ifndef KENG_HTTP_SERVER_H
#define KENG_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

#include "config.h"
#include "tls.h"

typedef struct keng_http_server keng_http_server_t;
typedef struct keng_http_request keng_http_request_t;

typedef struct keng_http_limits {
    size_t max_header_bytes;        /* request line plus headers; over it: 431 */
    size_t max_body_bytes;          /* over it: 413, before the body is read */
    unsigned header_timeout_ms;     /* from the first byte to the end of the headers: 408 */
    unsigned body_timeout_ms;       /* from the end of the headers to the end of the body: 408 */
    unsigned idle_timeout_ms;       /* a keep-alive connection with no request is closed */
    unsigned first_byte_timeout_ms; /* a new connection that sends no byte is closed */
    /* Connections other than streams. At the cap a new connection closes the least recently
     * active idle one (as nginx reuses keep-alive connections); with none idle it gets 503. */
    unsigned max_connections;
    unsigned max_streams; /* Server-Sent Events streams, counted apart; over it: 503 (0: none) */
    /* Answers queued for a client and not yet taken by its socket. Past it the connection
     * reads no further request until they drain (backpressure against a client that
     * pipelines requests and never reads). */
    size_t max_unsent_bytes;
    size_t stream_max_unsent_bytes; /* a stream reader further behind is cut off */
    unsigned stream_sndbuf_bytes;   /* SO_SNDBUF of a stream's socket, so the bound is real */
    /* Request bodies held at once, across every connection, counted by their announced
     * Content-Length from the end of the head until the request is freed: a head past it gets
     * 503 with Retry-After before its body is read (many slow clients each announcing
     * max_body_bytes cannot take the memory). */
    size_t max_buffered_bytes;
} keng_http_limits_t;

/* 16 KiB headers, 1 MiB body, 10 s header and body timeouts, 60 s idle, 5 s to the first
 * byte, 10,000 connections, 256 streams, 256 KiB unsent per connection, 64 KiB per stream
 * with a 16 KiB socket send buffer, 256 MiB of bodies at once. */
void keng_http_limits_default(keng_http_limits_t *limits);

/* The http.* keys below and http.allowed_hosts, for a program's list of known config keys. */
extern keng_config_keys_t keng_http_server_config_keys;

/* Reads the http.* keys of a program's config over the defaults (http.max_body_bytes,
 * http.max_header_bytes, http.header_timeout_ms, http.body_timeout_ms, http.idle_timeout_ms,
 * http.first_byte_timeout_ms, http.max_connections, http.max_streams, http.max_unsent_bytes,
 * http.stream_max_unsent_bytes, http.stream_sndbuf_bytes). Returns 0, or -1 with errstr
 * naming the key. */
int keng_http_limits_from_config(keng_http_limits_t *limits, const keng_config_t *cfg, char *errstr,
                                 size_t errstr_size);

/* What the server did on its own, for /metrics. */
typedef struct keng_http_stats {
    unsigned connections;            /* open, streams not included */
    unsigned streams;                /* open streams */
    uint64_t refused;                /* connections answered 503: the cap was reached, none idle */
    uint64_t evicted;                /* idle connections closed to make room for a new one */
    uint64_t first_byte_timeouts;    /* connections closed that never sent a byte */
    uint64_t read_pauses;            /* times a connection stopped reading for unsent answers */
    uint64_t streams_refused;        /* streams answered 503 at max_streams */
    uint64_t streams_cut_off;        /* stream readers cut off past stream_max_unsent_bytes */
    uint64_t tls_handshakes;         /* TLS handshakes completed */
    uint64_t tls_handshake_failures; /* refused or broken (old protocol, bad client cert) */
    uint64_t tls_handshake_timeouts; /* unfinished after header_timeout_ms */
} keng_http_stats_t;

void keng_http_server_stats(const keng_http_server_t *srv, keng_http_stats_t *out);

/* Writes the stats in the Prometheus text format (keng_http_streams,
 * keng_http_connections_refused_total, keng_http_connections_evicted_total,
 * keng_http_first_byte_timeouts_total, keng_http_read_pauses_total,
 * keng_http_streams_refused_total, keng_http_streams_cut_off_total; with TLS also
 * keng_http_tls_handshakes_total, keng_http_tls_handshake_failures_total,
 * keng_http_tls_handshake_timeouts_total and keng_tls_write_metrics's). */
void keng_http_server_write_metrics(const keng_http_server_t *srv, FILE *out);

/* The body of an error the server answers by itself (400 malformed request, 408, 411, 413,
 * 431, 501, 503, 505), so that it has the same shape as the program's own errors. Returns
 * a new reference, or NULL for the default {"error": message}. Also the place to count the
 * answer. ctx is the handler's. */
typedef json_t *(*keng_http_error_fn)(int status, const char *message, void *ctx);

void keng_http_server_set_error_body(keng_http_server_t *srv, keng_http_error_fn fn);

/* Called once a request's head is complete, before 100 Continue and before any of its body
 * is read. Returns 0 to go on, or an HTTP status (401, 429, 503, ...) to refuse the request
 * at once with *why (borrowed, a sentence) as its message: the server answers through the
 * error body (keng_http_server_set_error_body), with any header the check added
 * (keng_http_request_add_header), and closes the connection without reading the body. The
 * head's method, path, query and headers can be read; the body cannot. */
typedef int (*keng_http_precheck_fn)(keng_http_request_t *req, void *ctx, const char **why);

/* From a precheck that refuses: answers the refusal after ms instead of at once, reading
 * nothing from the connection meanwhile (a tarpit: a client that floods past its rate, and
 * retries the moment it is refused, then costs the server one request per ms on each
 * connection instead of a core). The connection counts toward max_connections meanwhile, and
 * is closed without the answer when the client leaves or the server closes. */
void keng_http_request_delay_refusal(keng_http_request_t *req, unsigned ms);

void keng_http_server_set_precheck(keng_http_server_t *srv, keng_http_precheck_fn fn);

/* The names a request's Host may carry, against DNS rebinding (a hostile web page that points
 * a name of its own at this server's address, loopback included, and reads the answers as its
 * own). An IP literal is always allowed: a rebinding carries a name. Other names must be one
 * of http.allowed_hosts (comma-separated, case-insensitive, without port; "*" allows any),
 * or, without that key, "localhost", this host's name (gethostname) and the extra names the
 * program gives (its advertised URL's host; NULL-terminated, may be NULL). A request with
 * another name gets 421 before its body is read. Returns 0, or -1 with errstr naming the key
 * (an empty name). */
int keng_http_server_allow_hosts(keng_http_server_t *srv, const keng_config_t *cfg,
                                 const char *const *extra, char *errstr, size_t errstr_size);

/* Called once per complete request, in order per connection. The handler must end the
 * request with keng_http_respond*() or keng_http_stream_begin(), now or later; the
 * connection reads no further request until then (which is what keeps pipelined answers in
 * order). */
typedef void (*keng_http_handler_fn)(keng_http_request_t *req, void *ctx);

/* limits may be NULL for the defaults (copied when given); ctx is borrowed and must outlive the
 * server. Returns NULL on allocation failure. The caller owns the server and gives it back with
 * keng_http_server_close, which frees it. */
keng_http_server_t *keng_http_server_new(uv_loop_t *loop, const keng_http_limits_t *limits,
                                         keng_http_handler_fn handler, void *ctx);

/* Speaks TLS on every connection accepted from now on, with the context tls holds at
 * accept time (keng_tls_reload changes it for later connections only). tls is borrowed and
 * must outlive the server. A handshake is bounded by header_timeout_ms from its first byte;
 * a connection refused at max_connections is closed, as a TLS client cannot read a plain
 * 503. Call before listening. Returns 0 or -ENOMEM. */
int keng_http_server_set_tls(keng_http_server_t *srv, keng_tls_t *tls);

/* Listens on "HOST:PORT" (port 0 picks a free one). Returns 0 or a negative errno. */
int keng_http_server_listen(keng_http_server_t *srv, const char *host_port);

/* The port actually bound, after a successful listen. */
int keng_http_server_port(const keng_http_server_t *srv);

/* Stops accepting, closes idle connections and streams, lets requests in flight finish,
 * then frees the server and calls done (may be NULL). */
void keng_http_server_close(keng_http_server_t *srv, void (*done)(void *arg), void *arg);

/* Live connection and in-flight request counts, for /metrics. */
unsigned keng_http_server_connections(const keng_http_server_t *srv);
/* Requests handed to the handler and not yet answered (streams not included). */
unsigned keng_http_server_in_flight(const keng_http_server_t *srv);

/* Request accessors; strings are borrowed from the request and valid until it ends. */
const char *keng_http_request_method(const keng_http_request_t *req); /* "GET", "POST", ... */
const char *keng_http_request_path(const keng_http_request_t *req);   /* without the query */
/* The decoded value of a query parameter, or NULL when absent. */
const char *keng_http_request_query(const keng_http_request_t *req, const char *name);
/* A header's value by case-insensitive name, or NULL. */
const char *keng_http_request_header(const keng_http_request_t *req, const char *name);
const char *keng_http_request_body(const keng_http_request_t *req, size_t *len);
/* "127.0.0.1:53122", for logs; borrowed like the strings above. */
const char *keng_http_request_peer(const keng_http_request_t *req);
/* What the program attached to the request, such as the user who asked (borrowed; the
 * server never reads it), or NULL. */
void keng_http_request_set_user(keng_http_request_t *req, const void *user);
const void *keng_http_request_user(const keng_http_request_t *req);

/* Adds a response header (both copied); call before the respond or stream_begin. */
void keng_http_request_add_header(keng_http_request_t *req, const char *name, const char *value);

/* Ends the request with a complete response. body is copied. Safe to call after the client
 * went away (the answer is then dropped). req is invalid afterwards. */
void keng_http_respond(keng_http_request_t *req, int status, const char *content_type,
                       const char *body, size_t len);

/* Same with a JSON body; takes the reference to body. */
void keng_http_respond_json(keng_http_request_t *req, int status, json_t *body);

/* Turns the request into an open-ended stream (Server-Sent Events): sends the status line
 * and headers (Cache-Control: no-cache among them) with no Content-Length. The connection
 * serves no other request after it. Returns 0 or a negative errno: -EBUSY at max_streams,
 * -ENOTCONN when the client left; the request is then still the handler's to answer. */
int keng_http_stream_begin(keng_http_request_t *req, const char *content_type);

/* Queues data on a stream. Returns 0, or a negative errno when the client is gone or has
 * more than the limit of unsent bytes queued (a slow reader is cut off, never buffered
 * without bound); after a negative return the stream is closed and on_close will run. */
int keng_http_stream_write(keng_http_request_t *req, const char *data, size_t len);

/* Called once when a stream ends for any reason, after which req is invalid. */
void keng_http_stream_on_close(keng_http_request_t *req, void (*on_close)(void *arg), void *arg);

/* Ends a stream from the server's side. */
void keng_http_stream_end(keng_http_request_t *req);

#endif
