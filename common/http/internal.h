/* What the rooms of the HTTP server share (http_server.c, http_request.c, http_response.c): the
 * connection, request and server structs and the steps one room asks of another; never
 * included outside them. */
#ifndef KENG_HTTP_SERVER_INTERNAL_H
#define KENG_HTTP_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>

#include <http_parser.h>
#include <openssl/ssl.h>

#include "http_server.h"
#include "tls.h"

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
    ST_DELAYED, /* a precheck's refusal held back (keng_http_request_delay_refusal): nothing
                 * is read, and the refusal is answered when the timer fires */
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
    int error_status;          /* set by a parser callback that refuses the request */
    unsigned refusal_delay_ms; /* keng_http_request_delay_refusal, for the precheck's refusal */
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
    /* TLS (keng_http_server_set_tls): the connection's session, reading from and writing to
     * memory BIOs that the socket's bytes go through; NULL for plain HTTP. */
    SSL *ssl;
    bool tls_started; /* the first handshake bytes came: the handshake's timer runs */
    bool tls_ready;   /* handshake done: requests can be read and answers written */
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
    struct buf extra;        /* response headers from keng_http_request_add_header */
    keng_http_server_t *srv; /* set with reserved */
    size_t reserved;         /* of srv->buffered_bytes, given back when the request is freed */
    bool keep_alive;
    unsigned short http_major;
    unsigned short http_minor;
    bool streaming;
    void (*on_close)(void *arg);
    void *on_close_arg;
    char peer[80];
    const void *user; /* keng_http_request_set_user */
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
    keng_http_precheck_fn precheck;
    char **allowed_hosts; /* names a Host may carry besides IP literals (http_server.c) */
    size_t nallowed_hosts;
    bool any_host;         /* no Host check: "*", or never configured (a library user's default) */
    size_t buffered_bytes; /* announced bodies of requests not freed yet (max_buffered_bytes) */
    uint64_t note_next_ms; /* loop time of the next allowed log line about the caps */
    keng_http_stats_t noted; /* the stats at the last log line */
    unsigned nall;           /* every connection not yet freed, 503'd ones included */
    unsigned in_flight;
    keng_tls_t *tls; /* borrowed; NULL for plain HTTP */
    /* Where a read goes that is not kept as it is: ciphertext (fed to its SSL at once) and
     * what a closing connection or a stream's reader still sends (dropped), so that such a
     * connection holds no read buffer of its own. */
    char *scratch;
    uint64_t tls_note_next_ms; /* loop time of the next allowed line about failed handshakes */
    uint64_t tls_failures_noted, tls_timeouts_noted;
    char tls_last_failure[160];
    int port;
    bool closing;
    bool listener_closed;
    void (*done)(void *arg);
    void *done_arg;
};

/* Whether a request's Host header (NULL: none) names this server (keng_http_server_allow_hosts). */
bool keng_http__host_allowed(const keng_http_server_t *srv, const char *host);

/* ---- buffers and the connection's lifecycle (http_server.c) ---- */

/* Appends to b, kept NUL-terminated; b owns its bytes. 0 or -ENOMEM. */
int keng_http__buf_append(struct buf *b, const char *data, size_t len);
int keng_http__buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Closes now; queued writes are cancelled. A request with the handler stays valid and its
 * answer will be dropped; a stream's on_close runs from the close callback. */
void keng_http__conn_close(struct conn *c);
/* Closes after the queued writes went out, draining what the client still sends. */
void keng_http__conn_shutdown(struct conn *c);
void keng_http__conn_read_start(struct conn *c);
void keng_http__conn_read_stop(struct conn *c);
/* (Re)arms the connection's timer; a limit of 0 means no timeout. */
void keng_http__conn_timer(struct conn *c, unsigned ms);
/* Marks the connection as the most recently active. */
void keng_http__conn_touch(struct conn *c);
/* Logs what the caps did since the last line, at most once per NOTE_INTERVAL_MS. */
void keng_http__server_note(keng_http_server_t *srv);

/* Takes n plaintext bytes the connection received at inbuf + inlen (a read, or TLS's
 * decryption of one): buffers and parses them as the connection's state allows. */
void keng_http__conn_received(struct conn *c, size_t n);
/* The client closed its side (EOF, or TLS's close_notify). */
void keng_http__conn_eof(struct conn *c);
/* Room for at least READ_CHUNK bytes at inbuf + inlen; returns the room, 0 when out of
 * memory. */
size_t keng_http__conn_room(struct conn *c);

/* ---- TLS on a connection (http_tls.c) ---- */

/* Size of the server's scratch buffer (keng_http_server_t.scratch). */
#define SCRATCH_BYTES (64 * 1024)
/* Starts a TLS session on an accepted connection. 0 or -ENOMEM. */
int keng_http__tls_accept(struct conn *c);
/* Takes ciphertext from the socket: handshakes, then decrypts into the connection. */
void keng_http__tls_received(struct conn *c, const char *data, size_t len);
/* Encrypts and queues head then body (body may be NULL); -ENOTCONN before the handshake is
 * done. */
int keng_http__tls_write(struct conn *c, const char *head, size_t head_len, const char *body,
                         size_t body_len);
/* Queues TLS's close_notify, before the write side is shut down. */
void keng_http__tls_close_notify(struct conn *c);
/* The connection's handshake took longer than http.header_timeout_ms: counted and closed. */
void keng_http__tls_timed_out(struct conn *c);
void keng_http__tls_free(struct conn *c);

/* ---- requests (http_request.c) ---- */

/* Parses and dispatches the buffered bytes, one request at a time, until the handler has one
 * or the bytes run out. */
void keng_http__conn_process(struct conn *c);
/* Frees req and everything it owns. */
void keng_http__request_free(keng_http_request_t *req);

/* ---- writing (http_response.c) ---- */

/* Bytes queued on the connection and not yet taken by its socket. */
size_t keng_http__conn_unsent(struct conn *c);
/* Queues head followed by body on the connection; both are borrowed (copied). 0 or <0. */
int keng_http__conn_write(struct conn *c, const char *head, size_t head_len, const char *body,
                          size_t body_len);
/* Raw bytes (TLS's records) written straight into a send buffer: a buffer of len bytes from
 * keng_http__send_buffer_new (NULL when out of memory), queued as it is by
 * keng_http__conn_send_buffer, which takes it in every case. 0 or <0. */
char *keng_http__send_buffer_new(size_t len);
void keng_http__send_buffer_free(char *buf);
int keng_http__conn_send_buffer(struct conn *c, char *buf, size_t len);
/* Answers an error of the server's own and closes the connection after it. */
void keng_http__conn_fail(struct conn *c, int status, const char *why);

#endif
