/* keng-registry's side of the topic antt.registry: reads every version to the end of the
 * topic and publishes one, waiting for its delivery report, so that keng-registry can refuse
 * a version before anything reaches Kafka. */
#include "registry_topic.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>

#include "kafka_denied.h"
#include "log.h"
#include "program.h"
#include "timeutil.h"

void keng_regtopic_sha256(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;

    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = '\0';
}

void keng_regtopic_list_free(keng_regtopic_list_t *list)
{
    for (size_t i = 0; i < list->n; i++)
        json_decref(list->v[i].doc);
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

void keng_regtopic_ends_free(keng_regtopic_ends_t *ends)
{
    free(ends->partitions);
    free(ends->offsets);
    memset(ends, 0, sizeof(*ends));
}

/* The first error librdkafka reported outside a request, for the words of a failure: a
 * refused login shows only here. Called on the thread that polls. */
typedef struct client_state {
    rd_kafka_resp_err_t first_error;
    char reason[256];
    bool denied;
    bool delivered;
    rd_kafka_resp_err_t dr_err;
    int32_t partition;
    int64_t offset;
} client_state_t;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    client_state_t *st = opaque;
    char fatal[256];
    keng_kafka_role_t role =
        rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? KENG_KAFKA_PRODUCER : KENG_KAFKA_CONSUMER;

    /* librdkafka looks up the coordinator of the group it must be given, which keng-registry
     * never joins: its user needs no group ACL. */
    if (err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED)
        return;
    /* The idempotent producer of a user that may write to no topic fails for good with
     * CLUSTER_AUTHORIZATION_FAILED, which comes wrapped as _FATAL. */
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        err = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        reason = fatal;
    }
    if (keng_kafka_denied(role, err, NULL, reason))
        st->denied = true;
    if (st->first_error == RD_KAFKA_RESP_ERR_NO_ERROR) {
        st->first_error = (rd_kafka_resp_err_t)err;
        snprintf(st->reason, sizeof(st->reason), "%s", reason);
    }
}

/* The log callback keeps librdkafka's own lines off stderr: on_error says what matters. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

/* Whether the config sets key (or alias, when not NULL) for any client. */
static bool configured(const keng_config_t *cfg, const char *key, const char *alias)
{
    static const char *const prefixes[] = {"kafka.", "kafka.producer.", "kafka.consumer."};
    char name[128];

    for (int a = 0; a < 2; a++) {
        const char *k = a == 0 ? key : alias;
        for (size_t i = 0; k && i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            snprintf(name, sizeof(name), "%s%s", prefixes[i], k);
            if (keng_config_get(cfg, name, NULL))
                return true;
        }
    }
    return false;
}

/* keng-registry's default for key, unless the config sets it (or its alias). */
static int set(rd_kafka_conf_t *conf, const keng_config_t *cfg, const char *key, const char *alias,
               const char *value, char *errstr, size_t errstr_size)
{
    if (configured(cfg, key, alias))
        return 0;
    return keng_kafka_conf_set(conf, key, value, errstr, errstr_size);
}

/* An exit code and errstr for err, met on topic at brokers. */
static int failure(const client_state_t *st, rd_kafka_resp_err_t err, const char *topic,
                   const char *brokers, const char *what, char *errstr, size_t errstr_size)
{
    /* A producer whose user may write to no topic is refused the idempotent producer id
     * before it names a topic: that is a missing Write on this one. */
    if (err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED) {
        const char *op = strcmp(what, "reading") == 0 ? "Read" : "Write";
        snprintf(errstr, errstr_size,
                 "Kafka at %s denies keng-registry's user %s on topic %s: grant the ACL (%s and "
                 "Describe on topic %s; deploy/create-acls.sh)",
                 brokers, op, topic, op, topic);
        return KENG_EXIT_CONFIG;
    }
    if (st->denied || keng_kafka_is_denial(err, rd_kafka_err2str(err))) {
        snprintf(errstr, errstr_size,
                 "Kafka at %s refused keng-registry's user while %s %s: %s (the ACLs: "
                 "deploy/create-acls.sh)",
                 brokers, what, topic,
                 keng_kafka_denial() ? keng_kafka_denial() : rd_kafka_err2str(err));
        return KENG_EXIT_CONFIG;
    }
    if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        snprintf(errstr, errstr_size,
                 "topic %s does not exist at %s: deploy/create-topics.sh creates it (keng-broker "
                 "has it)",
                 topic, brokers);
        return KENG_EXIT_CONFIG;
    }
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        snprintf(errstr, errstr_size,
                 "Kafka at %s refused the version as too large for %s: give the topic "
                 "max.message.bytes=%s (deploy/create-topics.sh)",
                 brokers, topic, KENG_REGTOPIC_MESSAGE_MAX);
        return KENG_EXIT_CONFIG;
    }
    snprintf(errstr, errstr_size, "Kafka at %s did not answer while %s %s within %d s: %s%s%s",
             brokers, what, topic, KENG_REGTOPIC_TIMEOUT_MS / 1000, rd_kafka_err2str(err),
             st->first_error ? "; " : "", st->first_error ? st->reason : "");
    return KENG_EXIT_UNAVAILABLE;
}

int keng_regtopic_parse(const void *key, size_t key_len, const void *value, size_t len,
                        keng_regtopic_version_t *v, char *why, size_t why_size)
{
    json_error_t jerr;
    json_t *doc = value ? json_loadb(value, len, 0, &jerr) : NULL, *reg;
    char k[64], digest[65];
    int format = 0;

    memset(v, 0, sizeof(*v));
    if (!doc) {
        snprintf(why, why_size, "not JSON: %s", value ? jerr.text : "no value");
        return -1;
    }
    v->doc = doc;
    reg = json_object_get(doc, "registry");
    if (json_unpack_ex(doc, &jerr, 0, "{s:i, s:s, s:s, s:I, s:I, s:I}", "format", &format,
                       "effective", &v->key, "published_at", &v->published_at, "boards", &v->boards,
                       "communes", &v->communes, "districts", &v->districts) != 0 ||
        json_unpack_ex(reg, &jerr, 0, "{s:s%, s:s}", "text", &v->text, &v->text_len, "sha256",
                       &v->sha256) != 0) {
        snprintf(why, why_size, "not a registry document: %s", jerr.text);
        goto fail;
    }
    if (format != KENG_REGTOPIC_FORMAT) {
        snprintf(why, why_size, "a document of format %d (this keng reads %d)", format,
                 KENG_REGTOPIC_FORMAT);
        goto fail;
    }
    snprintf(k, sizeof(k), "%.*s", (int)key_len, key ? (const char *)key : "");
    if (strcmp(k, v->key) != 0 ||
        keng_time_parse_rfc3339(v->key, strlen(v->key), &v->effective_ms) != 0) {
        snprintf(why, why_size, "its key '%s' is not its effective time '%s'", k, v->key);
        goto fail;
    }
    keng_regtopic_sha256(v->text, v->text_len, digest);
    if (strcmp(digest, v->sha256) != 0) {
        snprintf(why, why_size, "its board CSV does not match its sha256");
        goto fail;
    }
    return 0;
fail:
    json_decref(doc);
    v->doc = NULL;
    return -1;
}

/* A message as a version into v, or -1 with why (a warning). */
static int parse_version(const rd_kafka_message_t *m, keng_regtopic_version_t *v, char *why,
                         size_t why_size)
{
    if (keng_regtopic_parse(m->key, m->key_len, m->payload, m->len, v, why, why_size) != 0)
        return -1;
    v->partition = m->partition;
    v->offset = m->offset;
    return 0;
}

/* Keeps v (taken) as the version of its key, replacing an earlier one; a tombstone (v NULL)
 * removes key. Returns 0, or -1 when memory runs out. */
static int keep(keng_regtopic_list_t *list, const char *key, keng_regtopic_version_t *v)
{
    for (size_t i = 0; i < list->n; i++) {
        if (strcmp(list->v[i].key, key) != 0)
            continue;
        json_decref(list->v[i].doc);
        if (v)
            list->v[i] = *v;
        else
            list->v[i] = list->v[--list->n];
        return 0;
    }
    if (!v)
        return 0;
    keng_regtopic_version_t *grown = realloc(list->v, (list->n + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    list->v = grown;
    list->v[list->n++] = *v;
    return 0;
}

static int by_effective(const void *a, const void *b)
{
    const keng_regtopic_version_t *x = a, *y = b;

    return x->effective_ms < y->effective_ms ? -1 : x->effective_ms > y->effective_ms;
}

int keng_regtopic_read(const keng_config_t *cfg, const char *topic, keng_regtopic_list_t *out,
                       char *errstr, size_t errstr_size)
{
    keng_regtopic_ends_t ends = {NULL, NULL, 0};
    int rc = keng_regtopic_read_ends(cfg, topic, out, &ends, errstr, errstr_size);

    keng_regtopic_ends_free(&ends);
    return rc;
}

int keng_regtopic_read_ends(const keng_config_t *cfg, const char *topic, keng_regtopic_list_t *out,
                            keng_regtopic_ends_t *noted, char *errstr, size_t errstr_size)
{
    const char *brokers = keng_config_brokers(cfg);
    client_state_t st = {0};
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    rd_kafka_resp_err_t err;
    char group[64], why[256];
    int64_t *ends = NULL;
    int rc = KENG_EXIT_CONFIG, pending = 0, nparts = 0;

    memset(out, 0, sizeof(*out));
    memset(noted, 0, sizeof(*noted));
    conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    if (!conf)
        goto out;
    /* Partitions are assigned, nothing is committed: keng-registry joins no group. */
    snprintf(group, sizeof(group), "keng-registry-%d", (int)getpid());
    if (keng_kafka_conf_set(conf, "group.id", group, errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size) < 0 ||
        set(conf, cfg, "fetch.message.max.bytes", "max.partition.fetch.bytes",
            KENG_REGTOPIC_MESSAGE_MAX, errstr, errstr_size) < 0)
        goto out;
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!rk)
        goto out;
    conf = NULL;
    rd_kafka_poll_set_consumer(rk);
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    err =
        rkt ? rd_kafka_metadata(rk, 0, rkt, &md, KENG_REGTOPIC_TIMEOUT_MS) : rd_kafka_last_error();
    if (!err && (md->topic_cnt != 1 || md->topics[0].err))
        err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (!err && md->topics[0].partition_cnt == 0)
        err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (err) {
        rc = failure(&st, err, topic, brokers, "reading", errstr, errstr_size);
        goto out;
    }
    nparts = md->topics[0].partition_cnt;
    ends = calloc((size_t)nparts, sizeof(*ends));
    noted->partitions = calloc((size_t)nparts, sizeof(*noted->partitions));
    noted->offsets = calloc((size_t)nparts, sizeof(*noted->offsets));
    assignment = rd_kafka_topic_partition_list_new(nparts);
    if (!ends || !noted->partitions || !noted->offsets || !assignment) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    for (int i = 0; i < nparts; i++) {
        int32_t id = md->topics[0].partitions[i].id;
        int64_t low, high;

        err =
            rd_kafka_query_watermark_offsets(rk, topic, id, &low, &high, KENG_REGTOPIC_TIMEOUT_MS);
        if (err) {
            rc = failure(&st, err, topic, brokers, "reading", errstr, errstr_size);
            goto out;
        }
        ends[i] = high;
        noted->partitions[i] = id;
        noted->offsets[i] = high;
        noted->n = (size_t)i + 1;
        if (high > low) {
            rd_kafka_topic_partition_list_add(assignment, topic, id)->offset = low;
            pending++;
        }
    }
    if (pending && (err = rd_kafka_assign(rk, assignment))) {
        rc = failure(&st, err, topic, brokers, "reading", errstr, errstr_size);
        goto out;
    }
    for (int64_t deadline = keng_monotonic_ms() + 3 * KENG_REGTOPIC_TIMEOUT_MS; pending > 0;) {
        if (keng_monotonic_ms() > deadline) {
            rc = failure(&st, RD_KAFKA_RESP_ERR__TIMED_OUT, topic, brokers, "reading", errstr,
                         errstr_size);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            err = m->err;
            rd_kafka_message_destroy(m);
            if (err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                err != RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED &&
                keng_kafka_is_denial(err, rd_kafka_err2str(err))) {
                rc = failure(&st, err, topic, brokers, "reading", errstr, errstr_size);
                goto out;
            }
            continue;
        }
        keng_regtopic_version_t v;
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
        int kept = 0;
        if (!m->payload)
            kept = keep(out, key, NULL);
        else if (parse_version(m, &v, why, sizeof(why)) == 0) {
            kept = keep(out, v.key, &v);
            if (kept != 0)
                json_decref(v.doc);
        } else
            keng_log_warn("a message of the registry topic is not a version keng can use; skipped",
                          "topic=%s partition=%d offset=%lld why=\"%s\"", topic, (int)m->partition,
                          (long long)m->offset, why);
        for (int i = 0; i < nparts; i++)
            if (md->topics[0].partitions[i].id == m->partition && m->offset + 1 >= ends[i] &&
                ends[i] > 0) {
                ends[i] = 0; /* reached */
                pending--;
            }
        rd_kafka_message_destroy(m);
        if (kept != 0) {
            snprintf(errstr, errstr_size, "out of memory");
            goto out;
        }
    }
    if (out->n > 1) /* qsort takes no NULL, even for nothing to sort */
        qsort(out->v, out->n, sizeof(*out->v), by_effective);
    rc = 0;
out:
    free(ends);
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}

struct keng_regtopic_follower {
    rd_kafka_t *rk;
    char topic[256];
    client_state_t st;
    int32_t partition; /* of the latest message, for keng_regtopic_follower_position */
    int64_t offset;
};

keng_regtopic_follower_t *keng_regtopic_follow(const keng_config_t *cfg, const char *topic,
                                               const keng_regtopic_ends_t *from, char *errstr,
                                               size_t errstr_size)
{
    keng_regtopic_follower_t *f = calloc(1, sizeof(*f));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *assignment = NULL;
    rd_kafka_resp_err_t err;
    char group[64];

    if (!f) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    snprintf(f->topic, sizeof(f->topic), "%s", topic);
    conf = keng_config_kafka(cfg, KENG_KAFKA_CONSUMER, errstr, errstr_size);
    if (!conf)
        goto fail;
    /* As keng_regtopic_read: partitions are assigned, nothing is committed, no group joined. */
    snprintf(group, sizeof(group), "keng-regtopic-%d", (int)getpid());
    if (keng_kafka_conf_set(conf, "group.id", group, errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, errstr_size) < 0 ||
        set(conf, cfg, "fetch.message.max.bytes", "max.partition.fetch.bytes",
            KENG_REGTOPIC_MESSAGE_MAX, errstr, errstr_size) < 0)
        goto fail;
    rd_kafka_conf_set_opaque(conf, &f->st);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    f->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!f->rk)
        goto fail;
    conf = NULL;
    rd_kafka_poll_set_consumer(f->rk);
    assignment = rd_kafka_topic_partition_list_new(from->n > 0 ? (int)from->n : 1);
    if (!assignment) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < from->n; i++)
        rd_kafka_topic_partition_list_add(assignment, topic, from->partitions[i])->offset =
            from->offsets[i];
    /* A topic read with no partition (it cannot exist: keng_regtopic_read refuses it) would
     * leave nothing to follow; partition 0 is the contract's one. */
    if (from->n == 0)
        rd_kafka_topic_partition_list_add(assignment, topic, 0)->offset = RD_KAFKA_OFFSET_END;
    f->partition = assignment->elems[0].partition;
    f->offset = -1;
    err = rd_kafka_assign(f->rk, assignment);
    if (err) {
        snprintf(errstr, errstr_size, "cannot follow %s: %s", topic, rd_kafka_err2str(err));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(assignment);
    return f;
fail:
    if (assignment)
        rd_kafka_topic_partition_list_destroy(assignment);
    if (conf)
        rd_kafka_conf_destroy(conf);
    keng_regtopic_follower_destroy(f);
    return NULL;
}

int keng_regtopic_follower_poll(keng_regtopic_follower_t *f, keng_regtopic_version_t *v, char *key,
                                size_t key_size, char *why, size_t why_size)
{
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->rk, 0);
        int rc;

        if (!m)
            return 0;
        /* Errors of the connection pass (librdkafka reconnects); the reader goes on. */
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        snprintf(key, key_size, "%.*s", (int)m->key_len, m->key ? (const char *)m->key : "");
        f->partition = m->partition;
        f->offset = m->offset;
        if (!m->payload)
            rc = 2;
        else
            rc = parse_version(m, v, why, why_size) == 0 ? 1 : -1;
        rd_kafka_message_destroy(m);
        return rc;
    }
}

void keng_regtopic_follower_position(const keng_regtopic_follower_t *f, char *buf, size_t size)
{
    snprintf(buf, size, "%s partition %d offset %lld", f->topic, (int)f->partition,
             (long long)f->offset);
}

void keng_regtopic_follower_destroy(keng_regtopic_follower_t *f)
{
    if (!f)
        return;
    if (f->rk) {
        rd_kafka_consumer_close(f->rk);
        rd_kafka_destroy(f->rk);
    }
    free(f);
}

/* {"file": basename, "sha256": hex, "text": the file} for f, json null for none; NULL when
 * the text is not UTF-8. */
static json_t *file_object(const keng_regtopic_file_t *f)
{
    char digest[65];
    const char *base;
    json_t *text;

    if (!f || !f->path)
        return json_null();
    text = json_stringn(f->text, f->len);
    if (!text)
        return NULL;
    base = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
    keng_regtopic_sha256(f->text, f->len, digest);
    return json_pack("{s:s, s:s, s:o}", "file", base, "sha256", digest, "text", text);
}

char *keng_regtopic_document(const char *key, size_t boards, size_t communes, size_t districts,
                             const keng_regtopic_file_t *registry,
                             const keng_regtopic_file_t *units, const keng_regtopic_file_t *lineage,
                             char *errstr, size_t errstr_size)
{
    const keng_regtopic_file_t *files[3] = {registry, units, lineage};
    json_t *objects[3] = {NULL, NULL, NULL}, *doc = NULL;
    char published[40];
    char *text = NULL;

    for (int i = 0; i < 3; i++) {
        objects[i] = file_object(files[i]);
        if (!objects[i]) {
            snprintf(errstr, errstr_size, "%s: not UTF-8 text (save it as UTF-8)", files[i]->path);
            goto out;
        }
    }
    keng_time_format_utc(keng_now_ms(), published, sizeof(published));
    doc = json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:O, s:O, s:O}", "format", KENG_REGTOPIC_FORMAT,
                    "effective", key, "published_at", published, "boards", (json_int_t)boards,
                    "communes", (json_int_t)communes, "districts", (json_int_t)districts,
                    "registry", objects[0], "units", objects[1], "lineage", objects[2]);
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    if (!text)
        snprintf(errstr, errstr_size, "out of memory");
out:
    for (int i = 0; i < 3; i++)
        json_decref(objects[i]);
    json_decref(doc);
    return text;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    client_state_t *st = opaque;

    (void)rk;
    st->delivered = true;
    st->dr_err = m->err;
    st->partition = m->partition;
    st->offset = m->offset;
}

int keng_regtopic_publish(const keng_config_t *cfg, const char *topic, const char *key,
                          const char *doc, size_t len, int32_t *partition, int64_t *offset,
                          char *errstr, size_t errstr_size)
{
    const char *brokers = keng_config_brokers(cfg);
    client_state_t st = {0};
    rd_kafka_conf_t *conf = keng_config_kafka(cfg, KENG_KAFKA_PRODUCER, errstr, errstr_size);
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t err;
    int rc = KENG_EXIT_CONFIG;

    if (!conf)
        return rc;
    /* A version is in Kafka once, or not at all: never let a config file weaken that. The
     * CSV compresses well, so the batch stays far under the topic's max.message.bytes. */
    if (keng_kafka_conf_set(conf, "enable.idempotence", "true", errstr, errstr_size) < 0 ||
        keng_kafka_conf_set(conf, "acks", "all", errstr, errstr_size) < 0 ||
        set(conf, cfg, "compression.codec", "compression.type", "gzip", errstr, errstr_size) < 0 ||
        set(conf, cfg, "message.max.bytes", NULL, KENG_REGTOPIC_MESSAGE_MAX, errstr, errstr_size) <
            0 ||
        set(conf, cfg, "message.timeout.ms", "delivery.timeout.ms", "30000", errstr, errstr_size) <
            0)
        goto out;
    rd_kafka_conf_set_opaque(conf, &st);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto out;
    conf = NULL;
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE((void *)doc, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) {
        rc = failure(&st, err, topic, brokers, "publishing to", errstr, errstr_size);
        goto out;
    }
    while (!st.delivered && !st.denied)
        rd_kafka_poll(rk, 100);
    if (st.denied || st.dr_err) {
        rc = failure(&st, st.denied ? st.first_error : st.dr_err, topic, brokers, "publishing to",
                     errstr, errstr_size);
        goto out;
    }
    *partition = st.partition;
    *offset = st.offset;
    rc = 0;
out:
    if (rk) {
        /* A denied user's message is purged: nothing waits for it. */
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, 5000);
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    return rc;
}
