/* Outgoing HTTP on the libuv loop: libcurl's multi interface, its sockets watched by uv_poll
 * and its timeouts by a uv_timer, so that a receiver that is down, slow or failing never blocks
 * the loop. http:// and https:// (certificates checked, as libcurl does by default).
 *
 * Thread: loop thread only; callbacks run on the loop thread. */
#ifndef KENG_HTTP_CLIENT_H
#define KENG_HTTP_CLIENT_H

#include <stddef.h>

#include <uv.h>

typedef struct keng_http_client keng_http_client_t;

/* How a request ended: status is the HTTP status, or 0 when no answer came (error then says
 * why: "Connection refused", "Operation timed out after 2000 milliseconds ..."). error is
 * NULL for a 2xx answer. Both are borrowed for the call. */
typedef void (*keng_http_done_fn)(long status, const char *error, void *arg);

/* A client on loop. Returns NULL with errstr filled. The caller owns the client and gives it
 * back with keng_http_client_close, which frees it once its handles are closed. */
keng_http_client_t *keng_http_client_new(uv_loop_t *loop, char *errstr, size_t errstr_size);

/* POSTs body (copied) to url with Content-Type application/json, given up after timeout_ms.
 * done is called exactly once, later, unless the client is closed first. Returns 0, or -1
 * (out of memory, or libcurl refused the request) without calling done. */
int keng_http_client_post(keng_http_client_t *c, const char *url, const char *body, long timeout_ms,
                          keng_http_done_fn done, void *arg);

/* Credentials for a POST: HTTP basic (username and password) or a bearer token. Borrowed for
 * the call only: libcurl copies them. Never logged. */
typedef struct keng_http_auth {
    const char *username, *password; /* basic, when username is set */
    const char *bearer;              /* Authorization: Bearer, when set */
} keng_http_auth_t;

/* keng_http_client_post with credentials (auth may be NULL). */
int keng_http_client_post_auth(keng_http_client_t *c, const char *url, const char *body,
                               long timeout_ms, const keng_http_auth_t *auth,
                               keng_http_done_fn done, void *arg);

/* One request of any method, whose answer's body the caller wants (a REST API such as a
 * Schema Registry's). Everything is borrowed for the call only: libcurl copies it. */
typedef struct keng_http_request {
    const char *method; /* "GET", "POST", "PUT"; NULL: POST with a body, else GET */
    const char *url;
    const char *body;         /* NULL for none */
    const char *content_type; /* NULL: application/json */
    const char *accept;       /* an Accept header, or NULL */
    long timeout_ms;
    const keng_http_auth_t *auth; /* basic auth, or NULL */
    const char *ca_file;          /* the CA bundle that checks an https:// server, or NULL */
    size_t max_answer;            /* the most of the answer's body kept; 0: 1 MiB */
} keng_http_request_t;

/* How such a request ended: status and error as for keng_http_done_fn (error also for an
 * answer longer than max_answer); body is the answer's body, NUL-terminated, len bytes (""
 * when none), borrowed for the call. */
typedef void (*keng_http_body_fn)(long status, const char *error, const char *body, size_t len,
                                  void *arg);

/* Sends req; done is called exactly once, later: when the client is closed first, inside
 * keng_http_client_close with status -1 (the request was not answered, and nothing may be
 * sent on the client any more). Returns 0, or -1 (out of memory, or libcurl refused the
 * request, or the client is closing) without calling done. */
int keng_http_client_request(keng_http_client_t *c, const keng_http_request_t *req,
                             keng_http_body_fn done, void *arg);

/* Checks that url is an http:// or https:// URL with a host. Returns 0, or -1 with errstr
 * saying what is wrong (without the key: the caller names it). */
int keng_http_client_check_url(const char *url, char *errstr, size_t errstr_size);

/* What of url may be shown (in a log line, a metric label, an error): its scheme, host and
 * port alone, "https://am.example:9093". User, password, path and query may hold secrets (a
 * webhook's path often is one) and are left out, through libcurl's URL parser rather than by
 * cutting the string. A URL that does not parse is shown as "(not a URL)". */
void keng_http_client_redact(const char *url, char *out, size_t size);

/* Aborts the requests in progress without calling their done, and frees the client once the
 * loop has closed its handles. */
void keng_http_client_close(keng_http_client_t *c);

#endif
