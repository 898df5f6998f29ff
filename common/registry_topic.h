/* The registry versions in Kafka: the compacted topic antt.registry, one message per version,
 * key = its effective time in RFC 3339 UTC, value = a JSON document that carries the version's
 * files whole (docs/DESIGN.md, "The topic antt.registry"). Reads the topic to its end and
 * publishes one version; it never checks a version (registry_check.h does). One thread. */
#ifndef KENG_REGISTRY_TOPIC_H
#define KENG_REGISTRY_TOPIC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"

#define KENG_REGTOPIC_DEFAULT "antt.registry"
/* The document's format; a reader refuses another. */
#define KENG_REGTOPIC_FORMAT 1
/* The largest document keng-registry publishes (the 7,588-board CSV is about 600 KB), and the
 * producer's message.max.bytes: under the topic's max.message.bytes of 10 MiB
 * (deploy/create-topics.sh), which a compressed batch stays far below. */
#define KENG_REGTOPIC_DOCUMENT_MAX (8 * 1024 * 1024)
#define KENG_REGTOPIC_MESSAGE_MAX  "10485760"
/* How long a broker may take to answer a metadata or offsets request. */
#define KENG_REGTOPIC_TIMEOUT_MS 10000

/* One version as read from the topic; the strings are borrowed from doc. */
typedef struct keng_regtopic_version {
    json_t *doc;
    const char *key; /* "2025-06-30T17:00:00Z" */
    int64_t effective_ms;
    const char *published_at, *sha256, *text;
    size_t text_len;
    long long boards, communes, districts;
    int32_t partition;
    int64_t offset;
} keng_regtopic_version_t;

/* Every version of a topic, oldest effective time first. */
typedef struct keng_regtopic_list {
    keng_regtopic_version_t *v;
    size_t n;
} keng_regtopic_list_t;

/* A file of a version as the document carries it. */
typedef struct keng_regtopic_file {
    const char *path; /* its name in the document is the last part */
    const char *text;
    size_t len;
} keng_regtopic_file_t;

/* Reads topic from its beginning to the high watermarks noted first, with the brokers and
 * kafka.* keys of cfg (borrowed). For each key the last message counts (a null value deletes
 * it); a message that is not a document of KENG_REGTOPIC_FORMAT, or whose text does not match
 * its sha256, is skipped with a warning in the log. Returns 0 and fills out (the caller's; free
 * it with keng_regtopic_list_free, also on failure), or an exit code after errstr: 69 when no
 * broker answered, 78 when the topic does not exist or Kafka refused keng's user. */
int keng_regtopic_read(const keng_config_t *cfg, const char *topic, keng_regtopic_list_t *out,
                       char *errstr, size_t errstr_size);
void keng_regtopic_list_free(keng_regtopic_list_t *list);

/* Where a read ended: the high watermark of each partition, noted before reading, from which
 * keng_regtopic_follow goes on so that no version published after the read is missed. */
typedef struct keng_regtopic_ends {
    int32_t *partitions;
    int64_t *offsets;
    size_t n;
} keng_regtopic_ends_t;

/* keng_regtopic_read, and where it ended into ends (the caller's: keng_regtopic_ends_free,
 * also on failure). */
int keng_regtopic_read_ends(const keng_config_t *cfg, const char *topic, keng_regtopic_list_t *out,
                            keng_regtopic_ends_t *ends, char *errstr, size_t errstr_size);
void keng_regtopic_ends_free(keng_regtopic_ends_t *ends);

/* One message of the topic, its key and value borrowed, as a version into v, checked as
 * keng_regtopic_read checks each (a document of KENG_REGTOPIC_FORMAT, its effective time its
 * key, its text what its sha256 says). Returns 0, v->doc then the caller's (json_decref) and
 * v's strings borrowed from it, partition and offset left 0; or -1 with why (a sentence for a
 * warning) and nothing to free. A null value (a deletion) is not a version: check it first. */
int keng_regtopic_parse(const void *key, size_t key_len, const void *value, size_t len,
                        keng_regtopic_version_t *v, char *why, size_t why_size);

/* A reader that goes on after keng_regtopic_read, for a program that switches registries
 * while it runs: a consumer assigned to the topic's partitions from the ends that read noted
 * (no group is joined, nothing committed), polled without blocking. One thread: the one that
 * calls these. */
typedef struct keng_regtopic_follower keng_regtopic_follower_t;

/* Makes the reader with the brokers and kafka.* keys of cfg (borrowed for the call); from is
 * borrowed for the call. Returns NULL with errstr (a Kafka setting librdkafka refuses, no
 * memory); the caller destroys the result. */
keng_regtopic_follower_t *keng_regtopic_follow(const keng_config_t *cfg, const char *topic,
                                               const keng_regtopic_ends_t *from, char *errstr,
                                               size_t errstr_size);

/* What came since the last call, without waiting: 0 nothing; 1 a version in *v (as
 * keng_regtopic_parse gives it, with its partition and offset); 2 a deletion of the key in
 * key; -1 a message that is not a version keng can use, key holding its key and why the
 * reason. key gets the message's key in each case but 0. */
int keng_regtopic_follower_poll(keng_regtopic_follower_t *f, keng_regtopic_version_t *v, char *key,
                                size_t key_size, char *why, size_t why_size);

/* The latest message read: "antt.registry partition 0 offset 12" (offset -1 before any). */
void keng_regtopic_follower_position(const keng_regtopic_follower_t *f, char *buf, size_t size);

void keng_regtopic_follower_destroy(keng_regtopic_follower_t *f);

/* The document of a version: key its effective time, counts, the board CSV and the units list
 * and lineage (each may have a NULL path). Returns a string the caller frees (free), or NULL
 * with errstr (a file that is not UTF-8 text, no memory). */
char *keng_regtopic_document(const char *key, size_t boards, size_t communes, size_t districts,
                             const keng_regtopic_file_t *registry,
                             const keng_regtopic_file_t *units, const keng_regtopic_file_t *lineage,
                             char *errstr, size_t errstr_size);

/* Publishes doc (len bytes) under key with the idempotent producer (acks=all) and waits for
 * its delivery report. Returns 0 with *partition and *offset, or an exit code after errstr: 69
 * when Kafka did not take it in time, 78 for a refused user or a message too large. */
int keng_regtopic_publish(const keng_config_t *cfg, const char *topic, const char *key,
                          const char *doc, size_t len, int32_t *partition, int64_t *offset,
                          char *errstr, size_t errstr_size);

/* The SHA-256 of len bytes as 64 hex digits and a NUL in out (65 bytes). */
void keng_regtopic_sha256(const char *data, size_t len, char out[65]);

#endif
