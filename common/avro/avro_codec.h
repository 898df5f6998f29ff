/* The codec's public face, Confluent-framed Avro for keng's events and alerts; it never
 * shows the rooms behind it (common/avro/: store, fields, encode, guard, decode, plan,
 * alert), whose headers no caller includes.
 *
 * The framing: byte 0 is 0x00, bytes 1-4 the writer's schema id (big-endian), then the Avro
 * binary datum. Decoding uses the writer's schema, found by id in the schema store, resolved
 * to keng's reader schema for that record.
 *
 * Ownership: a _new or store constructor returns an object the caller owns and frees with
 * its _destroy; everything else returned is borrowed, for as long as its comment says. */
#ifndef KENG_AVRO_CODEC_H
#define KENG_AVRO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define KENG_FRAME_MAGIC      0x00
#define KENG_FRAME_HEADER_LEN 5

/* Schema ids of the newest version of each record this build writes. */
#define KENG_SCHEMA_ID_INCIDENT  4
#define KENG_SCHEMA_ID_MEDIATION 2
#define KENG_SCHEMA_ID_ALERT     3
/* Incident version 1, which keng wrote before Incident v2 (id 4) added police_case_id. */
#define KENG_SCHEMA_ID_INCIDENT_V1 1

/* Decode failures, as negative return values. Each maps to a dead-letter reason. */
typedef enum {
    KENG_AVRO_OK = 0,
    KENG_AVRO_ERR_FRAMING = -1,      /* shorter than the header or magic byte not 0x00 */
    KENG_AVRO_ERR_UNKNOWN_ID = -2,   /* schema id not in the store */
    KENG_AVRO_ERR_TRUNCATED = -3,    /* the datum ends early or claims more bytes than remain */
    KENG_AVRO_ERR_INVALID = -4,      /* bytes that do not form a valid datum of the schema */
    KENG_AVRO_ERR_WRONG_RECORD = -5, /* a valid datum of a record keng does not count (Alert) */
    KENG_AVRO_ERR_FIELD = -6         /* a decoded field out of keng's bounds (id too long, ...) */
} keng_avro_err_t;

/* Short machine-readable reason for a decode failure, used in dead-letter headers:
 * "bad-magic", "unknown-schema-id", "truncated", "invalid-avro", "wrong-record", "bad-field".
 * The string is static: never freed, valid for the life of the program. */
const char *keng_avro_err_reason(int err);

/* The schemas keng knows, by id: those of schemas/manifest.csv, built into every program. */
typedef struct keng_schema_store keng_schema_store_t;

/* The built-in store. Returns NULL with errstr filled when a built-in schema fails to parse.
 * The caller owns the store (keng_schema_store_destroy). */
keng_schema_store_t *keng_schema_store_builtin(char *errstr, size_t errstr_size);

/* The store of a directory laid out like schemas/ (manifest.csv and .avsc files). Returns
 * NULL with errstr filled naming the file and line. The caller owns the store. */
keng_schema_store_t *keng_schema_store_load(const char *dir, char *errstr, size_t errstr_size);

/* Frees store (NULL is a no-op). Encoders and decoders borrow their store: destroy them
 * first. */
void keng_schema_store_destroy(keng_schema_store_t *store);

/* The schema's JSON text for id, or NULL. Borrowed from the store. */
const char *keng_schema_store_json(const keng_schema_store_t *store, int32_t id);

/* How many schemas store has, and the i-th (0 <= i < count) in the order they were listed:
 * its id, returned, and its record's full name ("vn.antt.Incident"), version and JSON, each
 * borrowed from the store (pointers may be NULL). Returns -1 when i is out of range. */
size_t keng_schema_store_count(const keng_schema_store_t *store);
int32_t keng_schema_store_at(const keng_schema_store_t *store, size_t i, const char **subject,
                             int *version, const char **json);

/* Schema evolution. By default keng reads every writer version of a subject with its newest
 * version and writes the newest. Pinning replaces the newest in one role, so that an operator
 * can run a consumer as it was before an upgrade (reader) or keep producers on the old
 * version until every consumer knows the new one (writer). Pins apply to encoders and
 * decoders created after the call; call it before handing the store to other threads. */
typedef enum { KENG_SCHEMA_READER = 0, KENG_SCHEMA_WRITER = 1 } keng_schema_role_t;

/* Pins subject's version for role, changing store in place (subject is only read during the
 * call). Returns 0, or -1 with errstr filled when the store has no such version (the message
 * lists those it has). */
int keng_schema_store_pin(keng_schema_store_t *store, keng_schema_role_t role, const char *subject,
                          int version, char *errstr, size_t errstr_size);

/* The id keng reads with or writes for subject (after pins), or -1 when the store lacks it. */
int32_t keng_schema_store_id_of(const keng_schema_store_t *store, const char *subject,
                                keng_schema_role_t role);

/* The store a program's configuration asks for: the directory of `schemas.dir` (laid out
 * like schemas/), else the built-in one; then every `schemas.reader.<subject>=<version>` and
 * `schemas.writer.<subject>=<version>` key pinned. Any other schemas.* key is an error, so a
 * typo does not silently leave the newest version in place. Returns NULL with errstr filled.
 * The caller owns the store. */
struct keng_config;
keng_schema_store_t *keng_schema_store_from_config(const struct keng_config *cfg, char *errstr,
                                                   size_t errstr_size);

/* The keys keng_schema_store_from_config reads (see keng_config_check). */
extern const char *const keng_schema_store_config_keys[];

/* Encoder: one per thread; reuses its Avro values between calls. The caller owns the encoder
 * (keng_avro_encoder_destroy, NULL is a no-op); it borrows store, which must outlive it.
 * Returns NULL with errstr filled when a writer schema does not fit keng's events (a field of
 * the wrong shape, or one keng cannot fill that has no default) or memory runs out. */
typedef struct keng_avro_encoder keng_avro_encoder_t;
keng_avro_encoder_t *keng_avro_encoder_new(keng_schema_store_t *store, char *errstr,
                                           size_t errstr_size);
void keng_avro_encoder_destroy(keng_avro_encoder_t *enc);

/* Writes the framed message for ev into buf[0..cap), which stays the caller's; ev is only
 * read during the call. Sets *len. Returns 0, or -1 with errstr filled when buf is too small
 * or the event breaks the schema. */
int keng_avro_encode(keng_avro_encoder_t *enc, const keng_event_t *ev, void *buf, size_t cap,
                     size_t *len, char *errstr, size_t errstr_size);

/* The writer schema enc writes kind with: returns its record's full name ("vn.antt.Incident")
 * and sets *json (may be NULL) to its JSON, both borrowed from the store; NULL when the store
 * has none for kind. */
const char *keng_avro_encoder_writer(const keng_avro_encoder_t *enc, keng_kind_t kind,
                                     const char **json);

/* Frames kind's messages with id from the next call on, instead of the store's id of the
 * writer schema: the id a Schema Registry gave the same schema (common/schemareg/). */
void keng_avro_encoder_set_id(keng_avro_encoder_t *enc, keng_kind_t kind, int32_t id);

/* Decoder: one per thread. Keeps one resolved reader per writer id it has seen. */
typedef struct keng_avro_decoder keng_avro_decoder_t;

/* The two decode paths, which accept the same datums and give the same events. The plan (the
 * default) reads the bytes directly with the writer schema resolved once per id; Avro-C's
 * value API is the reference, kept so that an operator can fall back: `codec.decoder=avro-c`
 * in the config (keng_schema_store_from_config; decoders made from that store take it) or
 * KENG_AVRO_DECODER=avro-c in the environment, which wins over the config. (Added for the
 * consumer's speed target; additive.) */
typedef enum { KENG_AVRO_PATH_PLAN = 0, KENG_AVRO_PATH_AVRO_C = 1 } keng_avro_path_t;

/* The caller owns the decoder (keng_avro_decoder_destroy, NULL is a no-op); it borrows store,
 * which must outlive it. Returns NULL with errstr filled when KENG_AVRO_DECODER names no path
 * or memory runs out. */
keng_avro_decoder_t *keng_avro_decoder_new(keng_schema_store_t *store, char *errstr,
                                           size_t errstr_size);
void keng_avro_decoder_destroy(keng_avro_decoder_t *dec);

/* Chooses dec's path from its next call on, over the config and the environment (tests). */
void keng_avro_decoder_set_path(keng_avro_decoder_t *dec, keng_avro_path_t path);

/* Schema Registry mode: from now on an id is the registry's, and dec knows only the writer
 * schemas added with keng_avro_decoder_add_writer; the store's ids are no longer looked up
 * (its reader schemas still are). An id not added decodes as KENG_AVRO_ERR_UNKNOWN_ID, which
 * the caller resolves from the registry (keng_avro_decoder_knows says which). */
void keng_avro_decoder_use_registry(keng_avro_decoder_t *dec);

/* Adds the writer schema json (copied) under id, as the registry gave it. At most
 * KENG_AVRO_ADDED_MAX are kept: past that the one added longest ago is dropped (and would be
 * asked for again). Returns 0, or -1 with errstr filled when json is not an Avro record
 * schema (the caller dead-letters the message: the registry's answer cannot be used). */
#define KENG_AVRO_ADDED_MAX 256
int keng_avro_decoder_add_writer(keng_avro_decoder_t *dec, int32_t id, const char *json,
                                 char *errstr, size_t errstr_size);

/* Whether dec decodes id without asking anyone: a store id outside registry mode, or an id
 * added. */
int keng_avro_decoder_knows(const keng_avro_decoder_t *dec, int32_t id);

/* Decodes one framed message. Every length and block count is checked against the bytes
 * that remain before Avro-C sees them, so hostile prefixes cannot make it allocate.
 * The config key codec.decoder and KENG_AVRO_DECODER choose the path; see above.
 * On success fills ev (summary borrowed from the decoder, valid until its next call) and,
 * when schema_id is not NULL, the writer's id. Returns KENG_AVRO_OK or a keng_avro_err_t
 * with errstr filled. */
int keng_avro_decode(keng_avro_decoder_t *dec, const void *buf, size_t len, keng_event_t *ev,
                     int32_t *schema_id, char *errstr, size_t errstr_size);

/* ---- Alert records (vn.antt.Alert, id 3); added for keng-aggregate's alerts ---- */

#include "alert.h"

/* Writes the framed Alert record of a into buf[0..cap) with schema id KENG_SCHEMA_ID_ALERT.
 * Needs no encoder: the record is written directly in Avro binary, field by field in the
 * schema's order. Sets *len. Returns 0, or -1 with errstr filled when buf is too small or a
 * field is out of range. Thread-safe. */
int keng_avro_encode_alert(const keng_alert_t *a, void *buf, size_t cap, size_t *len, char *errstr,
                           size_t errstr_size);

/* Schema Registry mode: alerts are framed with id, the registry's id of the Alert schema,
 * from now on, and decoded when framed with it or with KENG_SCHEMA_ID_ALERT (alerts written
 * before the move to the registry). Call once at start, before any thread encodes or decodes
 * an alert; 0 goes back to the manifest's id. */
void keng_avro_alert_use_id(int32_t id);

/* Decodes a framed Alert record written with schema id KENG_SCHEMA_ID_ALERT. Strings are
 * copied, NUL-terminated, into scratch[0..scratch_cap), which out's pointers borrow; sample
 * ids beyond KENG_ALERT_SAMPLES_MAX are skipped. Every length is checked against the bytes
 * that remain. Returns KENG_AVRO_OK or a keng_avro_err_t with errstr filled. Thread-safe. */
int keng_avro_decode_alert(const void *buf, size_t len, keng_alert_t *out, char *scratch,
                           size_t scratch_cap, char *errstr, size_t errstr_size);

#endif
