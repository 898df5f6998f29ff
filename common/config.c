/* key=value configuration shared by every program; flags land here too, so that one lookup
 * answers "flag, else environment, else file". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *key;
    char *value;
} entry_t;

struct keng_config {
    entry_t *entries;
    size_t count, cap;
};

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
        keng_config_set(cfg, key, value);
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

rd_kafka_conf_t *keng_config_kafka(const keng_config_t *cfg, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *brokers = keng_config_brokers(cfg);
    char kerr[256];

    for (size_t i = 0; i < cfg->count; i++) {
        const entry_t *e = &cfg->entries[i];
        if (strncmp(e->key, "kafka.", 6) != 0)
            continue;
        if (rd_kafka_conf_set(conf, e->key + 6, e->value, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
            snprintf(errstr, errstr_size, "%s: %s", e->key, kerr);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (brokers && rd_kafka_conf_set(conf, "bootstrap.servers", brokers, kerr, sizeof(kerr)) !=
                       RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "brokers: %s", kerr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

void keng_config_each(const keng_config_t *cfg,
                      void (*fn)(const char *key, const char *value, void *arg), void *arg)
{
    for (size_t i = 0; i < cfg->count; i++)
        fn(cfg->entries[i].key, cfg->entries[i].value, arg);
}
