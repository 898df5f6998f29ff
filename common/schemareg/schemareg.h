/* A Confluent-compatible Schema Registry as the source of schema ids, over its REST API
 * (/subjects, /schemas/ids, /config, /compatibility): which registry (several URLs for
 * failover, basic auth, a CA file), which subject a record goes under (TopicNameStrategy:
 * "<topic>-value"), and the calls keng makes, blocking (libcurl's easy interface, for the
 * command-line programs and for start-up) or on a libuv loop (common/http/'s client). It
 * never encodes or decodes a datum: common/avro/ does, with the ids found here.
 *
 * Thread: the blocking calls on any thread (a conf is only read); the loop calls on the loop
 * thread only. */
#ifndef KENG_SCHEMAREG_H
#define KENG_SCHEMAREG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "http_client.h"

#define KENG_SCHEMAREG_MAX_URLS 8

/* Where the registry is and how to reach it. */
typedef struct keng_schemareg_conf {
    char *urls[KENG_SCHEMAREG_MAX_URLS];      /* base URLs, each as given (…/apis/ccompat/v7) */
    char shown[KENG_SCHEMAREG_MAX_URLS][256]; /* the same, redacted for logs */
    int url_count;
    int preferred;     /* the URL that answered last: tried first */
    char *username;    /* basic auth, or NULL */
    char *password;    /* read from its file; never logged */
    char *ca_file;     /* the CA bundle to check the registry's certificate with, or NULL */
    long timeout_ms;   /* one request to one URL */
    char *subjects[3]; /* by keng_kind_t order of records: incident, mediation, alert */
} keng_schemareg_conf_t;

/* The config keys read here (schema.registry.*), for keng_config_check. */
extern const char *const keng_schemareg_config_keys[];

/* Fills conf from cfg: schema.registry.url (comma-separated, tried in order), the basic auth
 * username and password_file, ca_file, timeout.ms, and the subjects from the topic.* keys.
 * Returns 1 when a registry is configured, 0 when schema.registry.url is not set (keng then
 * uses the manifest's ids; conf is left empty), or -1 with errstr naming the key. The caller
 * frees conf with keng_schemareg_conf_free, whatever the result. */
int keng_schemareg_conf_from_config(const keng_config_t *cfg, keng_schemareg_conf_t *conf,
                                    char *errstr, size_t errstr_size);

/* For --check-config: whether the schema.registry.* keys of cfg load (nothing is asked of the
 * registry). Returns 0, or KENG_EXIT_CONFIG after "<program>: why" on stderr. */
int keng_schemareg_check_config(const keng_config_t *cfg, const char *program);
void keng_schemareg_conf_free(keng_schemareg_conf_t *conf);

/* The subject a record (its full name, "vn.antt.Incident") goes under, or NULL for a record
 * keng does not write. Borrowed from conf. */
const char *keng_schemareg_subject(const keng_schemareg_conf_t *conf, const char *record);

/* The outcome of a call. */
typedef enum {
    KENG_SCHEMAREG_OK = 0,
    KENG_SCHEMAREG_NOT_FOUND = 1,    /* the registry answered 404: no such id or subject */
    KENG_SCHEMAREG_REFUSED = 2,      /* it answered 409 or 422: incompatible or invalid */
    KENG_SCHEMAREG_ERROR = -1,       /* it answered something else (401, 400, ...) */
    KENG_SCHEMAREG_UNREACHABLE = -2, /* no URL answered (refused, timed out, 5xx) */
    KENG_SCHEMAREG_CLOSED = -3,      /* loop calls: the HTTP client closed first */
} keng_schemareg_rc_t;

/* ---- blocking (libcurl easy) ---- */

/* One request: method and path under the base URL, body (JSON, or NULL). Tries the URLs in
 * order from the one that answered last; a URL that does not answer or answers 5xx is
 * passed over. On an answer, *status and *body (the caller frees it; NULL allowed) are set.
 * Returns KENG_SCHEMAREG_OK when any URL answered, else KENG_SCHEMAREG_UNREACHABLE with
 * errstr saying why for each URL. */
int keng_schemareg_call(keng_schemareg_conf_t *conf, const char *method, const char *path,
                        const char *body, long *status, char **out, char *errstr,
                        size_t errstr_size);

/* The schema JSON of id (*json: the caller frees it). */
int keng_schemareg_get_id(keng_schemareg_conf_t *conf, int32_t id, char **json, char *errstr,
                          size_t errstr_size);

/* Registers json under subject (or finds it registered); *id is the registry's id, *version
 * the subject's version when the answer says it. REFUSED with the registry's words when it
 * is incompatible. */
int keng_schemareg_register(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                            int32_t *id, char *errstr, size_t errstr_size);

/* The id of json under subject when it is registered there (NOT_FOUND when it is not). */
int keng_schemareg_lookup(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                          int32_t *id, int *version, char *errstr, size_t errstr_size);

/* Sets subject's compatibility level ("BACKWARD"). */
int keng_schemareg_set_compatibility(keng_schemareg_conf_t *conf, const char *subject,
                                     const char *level, char *errstr, size_t errstr_size);

/* Whether json may be registered under subject after its latest version: *compatible. A
 * subject with no version yet is NOT_FOUND. */
int keng_schemareg_check(keng_schemareg_conf_t *conf, const char *subject, const char *json,
                         bool *compatible, char *errstr, size_t errstr_size);

/* The latest version's schema JSON under subject (*json: the caller frees it). */
int keng_schemareg_latest(keng_schemareg_conf_t *conf, const char *subject, char **json,
                          char *errstr, size_t errstr_size);

/* Makes dec (in registry mode: keng_avro_decoder_use_registry) able to decode id: asks the
 * registry for its schema and adds it. OK when added; NOT_FOUND, or ERROR when the schema
 * cannot be used, with errstr naming the id; UNREACHABLE when no registry answered. */
struct keng_avro_decoder;
int keng_schemareg_resolve(keng_schemareg_conf_t *conf, struct keng_avro_decoder *dec, int32_t id,
                           char *errstr, size_t errstr_size);

/* ---- on a libuv loop (common/http/'s client) ---- */

/* How a loop call ended: rc as above; for OK, id (a lookup or registration) or json (an id's
 * schema, borrowed for the call). error is a sentence for the log when rc is not OK. */
typedef void (*keng_schemareg_done_fn)(int rc, int32_t id, const char *json, const char *error,
                                       void *arg);

/* The schema of id, on the loop. done is called exactly once, later (with
 * KENG_SCHEMAREG_CLOSED inside keng_http_client_close when the client is closed first). Returns 0,
 * or -1 (out of memory) without calling done. conf is borrowed and must outlive the call. */
int keng_schemareg_get_id_async(keng_http_client_t *client, keng_schemareg_conf_t *conf, int32_t id,
                                keng_schemareg_done_fn done, void *arg);

/* Looks up json under subject and registers it when it is not there, on the loop; done gets
 * the id. */
int keng_schemareg_register_async(keng_http_client_t *client, keng_schemareg_conf_t *conf,
                                  const char *subject, const char *json,
                                  keng_schemareg_done_fn done, void *arg);

/* ---- a program's writer ids, on a libuv loop ---- */

/* Finds the registry's ids of a program's writer schemas at its start, on the loop: looks
 * each up under its subject, registering it when it is not there. While no registry answers
 * (or it refuses) it logs why at each try and tries again after a growing pause (0.5 s
 * doubling to 30 s); it never falls back to the manifest's ids. Until every id is known the
 * program is not ready (keng_schemareg_ids_ready), and says so on /readyz. */
typedef struct keng_schemareg_ids keng_schemareg_ids_t;

/* ready(ids, arg) is called once, on the loop, when every id is known (ids[i] for
 * subjects[i] and jsons[i], borrowed for the call). subjects and jsons are copied; conf and
 * client are borrowed and must outlive the resolver. Returns NULL when memory runs out. The
 * caller owns the resolver: keng_schemareg_ids_close before closing client. */
keng_schemareg_ids_t *
keng_schemareg_ids_start(uv_loop_t *loop, keng_http_client_t *client, keng_schemareg_conf_t *conf,
                         const char *const *subjects, const char *const *jsons, int n,
                         void (*ready)(const int32_t *ids, void *arg), void *arg);

/* Whether every id is known. */
bool keng_schemareg_ids_ready(const keng_schemareg_ids_t *r);

/* Stops trying; the memory goes once the loop has closed the timer and the call in flight
 * (if any) has ended, which closing the client ends at once. NULL is a no-op. */
void keng_schemareg_ids_close(keng_schemareg_ids_t *r);

#endif
