/* The web config file (--web.config.file): the format of the Prometheus exporter toolkit's web
 * configuration, which operators already write for Prometheus and Alertmanager, so that a file
 * that works there means the same here:
 *
 *   basic_auth_users:            # user: bcrypt hash ($2y$, $2b$ or $2a$; htpasswd -nBC 10,
 *     alice: $2b$10$...          # mkpasswd -m bcrypt, keng-aggregate --hash-password)
 *   http_server_config:
 *     headers:                   # added to every answer
 *       Strict-Transport-Security: max-age=31536000
 *     http2: true                # read and ignored: keng speaks HTTP/1.1
 *   tls_server_config:           # HTTPS: TLS 1.2 and 1.3 on OpenSSL (tls.h)
 *     cert_file: keng.crt        # relative paths are from this file's folder
 *     key_file: keng.key
 *     client_ca_file: ca.crt     # with client_auth_type RequireAndVerifyClientCert or
 *     client_auth_type: ...      # VerifyClientCertIfGiven; NoClientCert by default
 *     min_version: TLS12         # TLS12 (default) or TLS13; TLS10 and TLS11 refused
 *     max_version: TLS13
 *     prefer_server_cipher_suites: true
 *   (cipher_suites, curve_preferences, client_allowed_sans and the inline cert and key are
 *   refused: keng takes OpenSSL's ciphers and curves, and certificates from files)
 *
 * and keng's own additions:
 *
 *   user_scopes:                 # user: the units whose data it may see (ids of any level of
 *     alice: [D07, 16681]        # the registry), or [NA] for the whole province; a user
 *     bob: [NA]                  # without a scope sees only /healthz and /readyz
 *   metrics_users: [prometheus]  # users that may read /metrics (and nothing else unless
 *                                # they have a scope)
 *
 * The YAML read is the subset these files use: block mappings by indentation, block and flow
 * sequences of scalars, plain and quoted scalars, comments. Anything else is refused with its
 * line, as are unknown keys and users without a hash. */
#ifndef KENG_WEB_CONFIG_H
#define KENG_WEB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "config.h"
#include "http_server.h"
#include "tls.h"

typedef struct keng_web_config keng_web_config_t;
typedef struct keng_web_user keng_web_user_t;

/* Loads the file. Returns NULL with errstr naming the file, the line and what is wrong
 * ("web.yml:4: basic_auth_users: alice: not a bcrypt hash"). The caller owns the result. */
keng_web_config_t *keng_web_config_load(const char *path, char *errstr, size_t errstr_size);

/* The same from text in memory (name is what messages call it). */
keng_web_config_t *keng_web_config_parse(const char *text, size_t len, const char *name,
                                         char *errstr, size_t errstr_size);

void keng_web_config_destroy(keng_web_config_t *wc);

/* Whether the file asks for users at all (basic_auth_users not empty). NULL has none. */
bool keng_web_config_has_users(const keng_web_config_t *wc);

/* The users, in file order (borrowed from wc). */
size_t keng_web_config_user_count(const keng_web_config_t *wc);
const keng_web_user_t *keng_web_config_user(const keng_web_config_t *wc, size_t i);

/* Who asks, in three steps, so that bcrypt (tens of milliseconds) runs off the loop thread:
 *
 *   keng_web_config_lookup (the loop)   reads an Authorization header ("Basic base64(user:
 *                                       password)"): -1 when it names no user with a password
 *                                       (missing, another scheme, malformed); 1 with *user when
 *                                       the password is the user's last verified one (kept as a
 *                                       keyed SHA-256, never in clear), so a dashboard's many
 *                                       requests pay bcrypt once; 0 when *check must run;
 *   keng_web_check_run (any thread)     the bcrypt check; an unknown user is checked against a
 *                                       hash of its own, so the time does not tell names apart;
 *   keng_web_config_finish (the loop)   the user when it passed (remembered), else NULL; wipes
 *                                       the password from the check. */
typedef struct keng_web_check {
    const keng_web_user_t *user; /* NULL for a name that is not a user */
    const char *hash;            /* borrowed from the config */
    char password[256];
    bool passed;
} keng_web_check_t;

int keng_web_config_lookup(keng_web_config_t *wc, const char *header, const keng_web_user_t **user,
                           keng_web_check_t *check);
void keng_web_check_run(keng_web_check_t *check);
const keng_web_user_t *keng_web_config_finish(keng_web_config_t *wc, keng_web_check_t *check);

/* The three steps for a server on a libuv loop: runs the check of a lookup that answered 0 on
 * libuv's thread pool and calls done(user, arg) on the loop (user NULL: refused, or the
 * thread pool failed). A check with the same user and password as one already running joins
 * it and gets its answer (a dashboard's first requests, which come together, pay bcrypt
 * once). At most KENG_WEB_CHECKS_MAX run at once: beyond that it returns -EBUSY at once
 * (answer 503 with Retry-After). The check's password is wiped in every
 * case. Returns 0 when done will be called. */
#define KENG_WEB_CHECKS_MAX 2
int keng_web_check_queue(uv_loop_t *loop, keng_web_config_t *wc, keng_web_check_t *check,
                         void (*done)(const keng_web_user_t *user, void *arg), void *arg);
/* Checks on the thread pool now: a server that closes waits for them. */
unsigned keng_web_checks_pending(const keng_web_config_t *wc);

/* What both servers read of their config: web.config.file (loaded into *out, NULL without
 * the key, with a warning for a file others may read, its TLS context made from its
 * certificate and key) and http.insecure_listen (true or false, into *insecure). Returns 0,
 * or -1 with errstr naming the key, the file's line, or a certificate file and its fault. */
int keng_web_config_from_config(const keng_config_t *cfg, keng_web_config_t **out, bool *insecure,
                                char *errstr, size_t errstr_size);

/* The TLS context of tls_server_config (keng_http_server_set_tls; keng_tls_reload on
 * SIGHUP), owned by wc; NULL without the key, or for a wc that keng_web_config_from_config
 * did not make. */
keng_tls_t *keng_web_config_tls(const keng_web_config_t *wc);

/* Logs the certificate served ("serving TLS"), at start; nothing without TLS. */
void keng_web_config_log_tls(const keng_web_config_t *wc);

/* SIGHUP: reads the certificate, key and client CAs again (keng_tls_reload) and logs the
 * outcome; a failure keeps the certificate in use. */
void keng_web_config_reload_tls(keng_web_config_t *wc);

/* Adds http_server_config.headers to an answer (nothing for a NULL wc). */
void keng_web_config_add_headers(const keng_web_config_t *wc, keng_http_request_t *req);

/* Whether "HOST:PORT" listens on loopback only (127.0.0.0/8, ::1, localhost): a server
 * without users refuses anything else unless told (--insecure-listen). */
bool keng_web_listen_is_loopback(const char *listen);

const char *keng_web_user_name(const keng_web_user_t *user);
/* The user's scope: unit ids, "NA" for the province; 0 units: no data at all. */
size_t keng_web_user_scope_count(const keng_web_user_t *user);
const char *keng_web_user_scope(const keng_web_user_t *user, size_t i);
/* Whether the user may read /metrics (metrics_users, or a province scope). */
bool keng_web_user_metrics(const keng_web_user_t *user);

/* http_server_config.headers, in file order: count and the name and value of one. */
size_t keng_web_config_header_count(const keng_web_config_t *wc);
void keng_web_config_header(const keng_web_config_t *wc, size_t i, const char **name,
                            const char **value);

/* A bcrypt hash of password for basic_auth_users ($2b$, cost 10), from the system's
 * libxcrypt. Returns 0, or -1 with errstr filled. out needs 64 bytes. */
int keng_web_hash_password(const char *password, char *out, size_t out_size, char *errstr,
                           size_t errstr_size);

#endif
