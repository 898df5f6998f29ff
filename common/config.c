/* key=value configuration shared by every program; flags land here too, so that one lookup
 * answers "flag, else environment, else file"; it never talks to Kafka (kafka.* keys are only
 * copied into a librdkafka conf). */
#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

typedef struct entry {
    char *key;
    char *value;
    int line; /* in the file, or 0 for a flag */
} entry_t;

struct keng_config {
    entry_t *entries;
    size_t count, cap;
    char *path; /* the file loaded, for messages */
    int line;   /* the line being loaded, given to the keys it sets */
};

keng_config_keys_t keng_config_common_keys = {"brokers", NULL};

keng_config_t *keng_config_new(void)
{
    return calloc(1, sizeof(keng_config_t));
}

void keng_config_destroy(keng_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    free(cfg->path);
    free(cfg);
}

static entry_t *find(const keng_config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->count; i++) {
        if (strcmp(cfg->entries[i].key, key) == 0)
            return &cfg->entries[i];
    }
    return NULL;
}

void keng_config_set(keng_config_t *cfg, const char *key, const char *value)
{
    entry_t *e = find(cfg, key);
    char *v = strdup(value);

    if (!v)
        abort();
    if (e) {
        free(e->value);
        e->value = v;
        e->line = cfg->line;
        return;
    }
    if (cfg->count == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 16;
        entry_t *grown = realloc(cfg->entries, cap * sizeof(*grown));
        if (!grown)
            abort();
        cfg->entries = grown;
        cfg->cap = cap;
    }
    cfg->entries[cfg->count].key = strdup(key);
    cfg->entries[cfg->count].value = v;
    cfg->entries[cfg->count].line = cfg->line;
    if (!cfg->entries[cfg->count].key)
        abort();
    cfg->count++;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

int keng_config_load(keng_config_t *cfg, const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    int rc = -1;

    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    free(cfg->path);
    cfg->path = strdup(path);
    while (getline(&line, &cap, f) >= 0) {
        char *s, *eq, *key, *value;

        lineno++;
        s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s:%d: expected key=value", path, lineno);
            goto out;
        }
        *eq = '\0';
        key = trim(s);
        value = trim(eq + 1);
        if (*key == '\0') {
            snprintf(errstr, errstr_size, "%s:%d: empty key before '='", path, lineno);
            goto out;
        }
        cfg->line = lineno;
        keng_config_set(cfg, key, value);
        cfg->line = 0;
    }
    rc = 0;
out:
    free(line);
    fclose(f);
    return rc;
}

const char *keng_config_get(const keng_config_t *cfg, const char *key, const char *def)
{
    const entry_t *e = find(cfg, key);
    return e ? e->value : def;
}

int keng_config_get_int(const keng_config_t *cfg, const char *key, long long def, long long min,
                        long long max, long long *out, char *errstr, size_t errstr_size)
{
    const char *v = keng_config_get(cfg, key, NULL);
    char *end;
    long long n;

    if (!v) {
        *out = def;
        return 0;
    }
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0') {
        snprintf(errstr, errstr_size, "%s: '%s' is not a whole number", key, v);
        return -1;
    }
    if (n < min || n > max) {
        snprintf(errstr, errstr_size, "%s: %lld is outside %lld..%lld", key, n, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

const char *keng_config_brokers(const keng_config_t *cfg)
{
    const char *v = keng_config_get(cfg, "brokers", NULL);

    if (v && *v)
        return v;
    v = getenv("KENG_BROKERS");
    if (v && *v)
        return v;
    return keng_config_get(cfg, "kafka.bootstrap.servers", NULL);
}

/* librdkafka 2.0.2's CONFIGURATION.md marks these C (consumer) or P (producer); a client
 * given a property of the other kind logs a CONFWARN and ignores it. */
static const char *const consumer_only[] = {"group.id",
                                            "group.instance.id",
                                            "partition.assignment.strategy",
                                            "session.timeout.ms",
                                            "heartbeat.interval.ms",
                                            "group.protocol.type",
                                            "coordinator.query.interval.ms",
                                            "max.poll.interval.ms",
                                            "enable.auto.commit",
                                            "auto.commit.interval.ms",
                                            "enable.auto.offset.store",
                                            "queued.min.messages",
                                            "queued.max.messages.kbytes",
                                            "fetch.wait.max.ms",
                                            "fetch.message.max.bytes",
                                            "max.partition.fetch.bytes",
                                            "fetch.max.bytes",
                                            "fetch.min.bytes",
                                            "fetch.error.backoff.ms",
                                            "offset.store.method",
                                            "isolation.level",
                                            "enable.partition.eof",
                                            "check.crcs",
                                            "auto.offset.reset",
                                            "consume.callback.max.messages",
                                            "auto.commit.enable",
                                            "offset.store.path",
                                            "offset.store.sync.interval.ms",
                                            "consume_cb",
                                            "rebalance_cb",
                                            "offset_commit_cb"};
static const char *const producer_only[] = {"transactional.id",
                                            "transaction.timeout.ms",
                                            "enable.idempotence",
                                            "enable.gapless.guarantee",
                                            "queue.buffering.max.messages",
                                            "queue.buffering.max.kbytes",
                                            "queue.buffering.max.ms",
                                            "linger.ms",
                                            "message.send.max.retries",
                                            "retries",
                                            "queue.buffering.backpressure.threshold",
                                            "compression.codec",
                                            "compression.type",
                                            "batch.num.messages",
                                            "batch.size",
                                            "delivery.report.only.error",
                                            "dr_cb",
                                            "dr_msg_cb",
                                            "sticky.partitioning.linger.ms",
                                            "request.required.acks",
                                            "acks",
                                            "request.timeout.ms",
                                            "message.timeout.ms",
                                            "delivery.timeout.ms",
                                            "queuing.strategy",
                                            "produce.offset.report",
                                            "partitioner",
                                            "compression.level",
                                            "retry.backoff.ms",
                                            "partitioner_cb",
                                            "msg_order_cmp"};

static bool listed(const char *const *list, size_t n, const char *property)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], property) == 0)
            return true;
    return false;
}

int keng_kafka_property_role(const char *property)
{
    if (listed(consumer_only, sizeof(consumer_only) / sizeof(consumer_only[0]), property))
        return KENG_KAFKA_CONSUMER;
    if (listed(producer_only, sizeof(producer_only) / sizeof(producer_only[0]), property))
        return KENG_KAFKA_PRODUCER;
    return -1;
}

int keng_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                        size_t errstr_size)
{
    char why[256];

    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "Kafka setting %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

static int apply_kafka(rd_kafka_conf_t *conf, const char *key, const char *property,
                       const char *value, char *errstr, size_t errstr_size)
{
    char kerr[256];

    if (rd_kafka_conf_set(conf, property, value, kerr, sizeof(kerr)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errstr, errstr_size, "%s: %s", key, kerr);
    return -1;
}

void keng_config_warn_if_exposed(const char *path, const char *what)
{
    struct stat st;

    if (stat(path, &st) != 0 || (st.st_mode & 077) == 0)
        return;
    keng_log_warn("a secret file is readable by its group or other users: chmod 600 it",
                  "what=\"%s\" file=%s mode=0%o", what, path, (unsigned)(st.st_mode & 0777));
}

int keng_config_read_secret(const keng_config_t *cfg, const char *key, char *out, size_t size,
                            char *errstr, size_t errstr_size)
{
    const char *path = keng_config_get(cfg, key, NULL);
    FILE *f;

    if (!path || !*path)
        return 0;
    f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: cannot read %s: %s", key, path, strerror(errno));
        return -1;
    }
    keng_config_warn_if_exposed(path, key);
    bool got = fgets(out, (int)size, f) != NULL;
    fclose(f);
    if (!got) {
        snprintf(errstr, errstr_size, "%s: %s is empty", key, path);
        return -1;
    }
    size_t n = strcspn(out, "\r\n");
    if (out[n] == '\0' && n == size - 1) {
        snprintf(errstr, errstr_size, "%s: the first line of %s is longer than %zu bytes", key,
                 path, size - 2);
        return -1;
    }
    out[n] = '\0';
    if (n == 0) {
        snprintf(errstr, errstr_size, "%s: the first line of %s is empty", key, path);
        return -1;
    }
    return 1;
}

rd_kafka_conf_t *keng_config_kafka(const keng_config_t *cfg, keng_kafka_role_t role, char *errstr,
                                   size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *brokers = keng_config_brokers(cfg);
    const char *mine = role == KENG_KAFKA_CONSUMER ? "kafka.consumer." : "kafka.producer.";

    if (brokers &&
        apply_kafka(conf, "brokers", "bootstrap.servers", brokers, errstr, errstr_size) != 0)
        goto fail;
    for (size_t i = 0; i < cfg->count; i++) {
        const entry_t *e = &cfg->entries[i];
        const char *property = e->key + 6;
        int only;

        if (strncmp(e->key, "kafka.", 6) != 0 || strncmp(e->key, "kafka.consumer.", 15) == 0 ||
            strncmp(e->key, "kafka.producer.", 15) == 0)
            continue;
        if (strcmp(property, "bootstrap.servers") == 0 && brokers)
            continue; /* already set, from the same key or one that overrides it */
        /* keng's own: the SASL password from a file, for librdkafka's sasl.password. */
        if (strcmp(property, "sasl.password_file") == 0) {
            char secret[1024];
            if (keng_config_read_secret(cfg, e->key, secret, sizeof(secret), errstr, errstr_size) <
                    0 ||
                apply_kafka(conf, e->key, "sasl.password", secret, errstr, errstr_size) != 0) {
                memset(secret, 0, sizeof(secret));
                goto fail;
            }
            memset(secret, 0, sizeof(secret));
            continue;
        }
        only = keng_kafka_property_role(property);
        if (only >= 0 && only != (int)role)
            continue;
        if (apply_kafka(conf, e->key, property, e->value, errstr, errstr_size) != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->count; i++) {
        const entry_t *e = &cfg->entries[i];

        if (strncmp(e->key, mine, 15) == 0 &&
            apply_kafka(conf, e->key, e->key + 15, e->value, errstr, errstr_size) != 0)
            goto fail;
    }
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Whether key matches pattern (see keng_config_keys_t). */
static bool key_matches(const char *pattern, const char *key)
{
    while (*pattern) {
        if (pattern[0] == '*' && (pattern[1] == '.' || pattern[1] == '\0')) {
            const char *end = key;
            if (pattern[1] == '\0')
                return *key != '\0';
            while (isalnum((unsigned char)*end) || *end == '_' || *end == '-')
                end++;
            if (end == key)
                return false;
            key = end;
            pattern++;
            continue;
        }
        if (*pattern != *key)
            return false;
        pattern++;
        key++;
    }
    return *key == '\0';
}

/* The start of the key's segment number seg (counting from 0), or NULL when it has fewer. */
static const char *segment(const char *key, size_t seg)
{
    for (; seg > 0; seg--) {
        key = strchr(key, '.');
        if (!key)
            return NULL;
        key++;
    }
    return key;
}

/* pattern with each "*" segment replaced by the key's segment at the same place, so that
 * "alert.drugs.levle" is compared with "alert.drugs.level" rather than "alert.*.level". */
static void instantiate(const char *pattern, const char *key, char *out, size_t out_size)
{
    size_t n = 0, seg = 0;

    for (const char *p = pattern; *p && n + 1 < out_size; seg++) {
        const char *end = strchr(p, '.');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len == 1 && *p == '*') {
            const char *from = segment(key, seg);
            size_t flen = 0;
            if (from)
                flen = end ? strcspn(from, ".") : strlen(from);
            if (flen == 0) {
                from = "<name>";
                flen = 6;
            }
            n += (size_t)snprintf(out + n, out_size - n, "%.*s", (int)flen, from);
        } else {
            n += (size_t)snprintf(out + n, out_size - n, "%.*s", (int)len, p);
        }
        if (n >= out_size)
            n = out_size - 1;
        if (!end)
            break;
        if (n + 1 < out_size)
            out[n++] = '.';
        p = end + 1;
    }
    out[n] = '\0';
}

/* Levenshtein distance, for the nearest known key; keys are short. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[128];

    if (lb >= sizeof(row) / sizeof(row[0]))
        lb = sizeof(row) / sizeof(row[0]) - 1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

int keng_config_check(const keng_config_t *cfg, const char *const *const *tables, char *errstr,
                      size_t errstr_size)
{
    for (size_t i = 0; i < cfg->count; i++) {
        const entry_t *e = &cfg->entries[i];
        char best[256] = "", candidate[256], where[300];
        size_t best_d = (size_t)-1;
        bool known = strncmp(e->key, "kafka.", 6) == 0;

        for (size_t t = 0; !known && tables && tables[t]; t++)
            for (size_t k = 0; !known && tables[t][k]; k++)
                known = key_matches(tables[t][k], e->key);
        if (known)
            continue;
        for (size_t t = 0; tables && tables[t]; t++) {
            for (size_t k = 0; tables[t][k]; k++) {
                instantiate(tables[t][k], e->key, candidate, sizeof(candidate));
                size_t d = distance(e->key, candidate);
                if (d < best_d) {
                    best_d = d;
                    snprintf(best, sizeof(best), "%s", candidate);
                }
            }
        }
        if (e->line > 0 && cfg->path)
            snprintf(where, sizeof(where), "%s:%d: ", cfg->path, e->line);
        else
            where[0] = '\0';
        snprintf(errstr, errstr_size, "%sunknown key '%s' (nearest known key: %s)", where, e->key,
                 best[0] ? best : "none");
        return -1;
    }
    return 0;
}

keng_config_t *keng_config_from_args(const char *program, const char *path,
                                     const keng_config_flag_t *flags,
                                     const char *const *const *tables)
{
    keng_config_t *cfg = keng_config_new();
    char errstr[512];

    if (!cfg) {
        fprintf(stderr, "%s: out of memory\n", program);
        return NULL;
    }
    if (path && keng_config_load(cfg, path, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "%s: %s\n", program, errstr);
        keng_config_destroy(cfg);
        return NULL;
    }
    for (size_t i = 0; flags && flags[i].key; i++)
        if (flags[i].value)
            keng_config_set(cfg, flags[i].key, flags[i].value);
    if (keng_config_check(cfg, tables, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "%s: %s\n", program, errstr);
        keng_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

void keng_config_each(const keng_config_t *cfg,
                      void (*fn)(const char *key, const char *value, void *arg), void *arg)
{
    for (size_t i = 0; i < cfg->count; i++)
        fn(cfg->entries[i].key, cfg->entries[i].value, arg);
}
