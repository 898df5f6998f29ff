/* Program configuration: a key=value file, overridden by flags; nothing here talks to Kafka.
 * Keys starting "kafka." are handed to librdkafka without the prefix (see keng_config_kafka for
 * which client gets which). */
#ifndef KENG_CONFIG_H
#define KENG_CONFIG_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef struct keng_config keng_config_t;

/* An empty config, or NULL when memory runs out. The caller owns it (keng_config_destroy). */
keng_config_t *keng_config_new(void);
void keng_config_destroy(keng_config_t *cfg);

/* Reads key=value lines ('#' starts a comment, blank lines skipped, whitespace around key
 * and value trimmed). Later keys replace earlier ones. Returns 0, or -1 with errstr naming
 * the line ("keng.conf:4: expected key=value"). */
int keng_config_load(keng_config_t *cfg, const char *path, char *errstr, size_t errstr_size);

/* A command-line flag that sets a key; value NULL when the flag was not given. */
typedef struct keng_config_flag {
    const char *key;
    const char *value;
} keng_config_flag_t;

/* The keys a module reads, as a list ending with NULL that lives next to the code reading
 * them (keng_alerts_config_keys in alerts.c, keng_schema_store_config_keys in avro_codec.c).
 * A "*" segment stands for a name of letters, digits, '_' and '-' ("alert.*.level"); a "*"
 * as the last segment stands for the rest of the key, dots included
 * ("schemas.reader.*" takes "schemas.reader.vn.antt.Incident"). Keys starting "kafka." are
 * librdkafka's to judge and never need listing. */
typedef const char *const keng_config_keys_t[];

/* Checks that every key of cfg is one of the tables (a list of key lists ending with NULL).
 * Returns 0, or -1 with errstr naming the first unknown key, where it was set and the
 * nearest known key ("keng.conf:3: unknown key 'alertmanagr.url' (nearest known key:
 * alertmanager.url)"). */
int keng_config_check(const keng_config_t *cfg, const char *const *const *tables, char *errstr,
                      size_t errstr_size);

/* A program's configuration: the file at path (none when NULL), then the command line's
 * flags over it (a list ending with a NULL key; flags may be NULL), checked against the
 * program's key tables (see keng_config_check; a list ending with NULL). On a file that does
 * not load or an unknown key, prints "program: error" to stderr and returns NULL (the caller
 * exits with 64, a usage error). */
keng_config_t *keng_config_from_args(const char *program, const char *path,
                                     const keng_config_flag_t *flags,
                                     const char *const *const *tables);

/* The keys every program knows: brokers (the --brokers flag). */
extern keng_config_keys_t keng_config_common_keys;

/* Sets or replaces a key (both copied). */
void keng_config_set(keng_config_t *cfg, const char *key, const char *value);

/* The value, or def when the key is absent. Borrowed from cfg. */
const char *keng_config_get(const keng_config_t *cfg, const char *key, const char *def);

/* Integer value with a range check. Returns 0, or -1 with errstr naming the key. */
/* A warning in the log when the file at path (a token file, a secret) may be read or written
 * by its group or other users, naming what it is, the file and its mode. Nothing when it is
 * 0600 or stricter, or cannot be stat'ed (its loader reports that). */
void keng_config_warn_if_exposed(const char *path, const char *what);

/* A secret kept in a file rather than in the config, so that configs can be shared and
 * committed without it: key names the file (for example alertmanager.basic_auth.password_file);
 * its first line, without the line end, goes into out (size bytes). Returns 1 when read, 0
 * when key is not set, or -1 with errstr naming the key and the file (never the secret). A
 * file its group or other users may read gets a warning in the log. */
int keng_config_read_secret(const keng_config_t *cfg, const char *key, char *out, size_t size,
                            char *errstr, size_t errstr_size);

int keng_config_get_int(const keng_config_t *cfg, const char *key, long long def, long long min,
                        long long max, long long *out, char *errstr, size_t errstr_size);

/* The bootstrap list: the "brokers" key (set from --brokers), else $KENG_BROKERS, else the
 * config's kafka.bootstrap.servers. NULL when none is set. Borrowed from cfg or the environment,
 * valid until that key is set again or cfg is destroyed. */
const char *keng_config_brokers(const keng_config_t *cfg);

/* One setting a program makes itself on a librdkafka config. Returns 0, or -1 with errstr
 * "Kafka setting key=value: librdkafka's reason". */
int keng_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                        size_t errstr_size);

/* Which client a librdkafka config is for. A program such as keng-aggregate runs both, from
 * one config file. */
typedef enum { KENG_KAFKA_CONSUMER, KENG_KAFKA_PRODUCER } keng_kafka_role_t;

/* A new librdkafka config for a client of role: bootstrap.servers, then every kafka.<key>
 * except the keys librdkafka applies only to the other role (kafka.session.timeout.ms does
 * not reach a producer, kafka.linger.ms not a consumer: librdkafka would warn), then every
 * kafka.consumer.<key> or kafka.producer.<key> of that role, which override. Returns NULL
 * with errstr naming the key librdkafka refused. The caller owns the result. */
rd_kafka_conf_t *keng_config_kafka(const keng_config_t *cfg, keng_kafka_role_t role, char *errstr,
                                   size_t errstr_size);

/* The role a librdkafka property applies to alone, or -1 for a property of both. */
int keng_kafka_property_role(const char *property);

/* Calls fn for every key and value, in the order they were first set (both borrowed for the
 * call). Added for keng-aggregate's alert rules, which are named by their keys. */
void keng_config_each(const keng_config_t *cfg,
                      void (*fn)(const char *key, const char *value, void *arg), void *arg);

#endif
