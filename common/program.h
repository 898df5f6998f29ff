/* The opening every keng program shares: its name in the log, --help and --version, its
 * configuration from file and flags, the stop signals and the exit codes; it never parses a
 * program's own options, never does a program's work and never exits the process. */
#ifndef KENG_PROGRAM_H
#define KENG_PROGRAM_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include <uv.h>

#include "config.h"
#include "registry.h"

/* The exit codes every keng program uses (sysexits.h where one fits); a program adds its own
 * between 2 and 63 (keng-produce's 2: events read but not delivered). */
enum {
    KENG_EXIT_OK = 0,
    KENG_EXIT_FAILURE = 1,
    KENG_EXIT_USAGE = 64,       /* a bad flag or argument, a config that does not load */
    KENG_EXIT_DAMAGED = 65,     /* state on disk is truncated or corrupt (EX_DATAERR) */
    KENG_EXIT_UNAVAILABLE = 69, /* something the program needs is not there (Chromium) */
    KENG_EXIT_LOCKED = 75,      /* another process holds the state dir (EX_TEMPFAIL) */
    KENG_EXIT_RESTART = 75,     /* keng-aggregate: a registry version that adds or removes
                                   boards took effect; started again, it takes it (EX_TEMPFAIL) */
    KENG_EXIT_CONFIG = 78       /* the config loaded but its registry or Kafka set-up did not */
};

/* Which libraries --version names after keng's version. */
#define KENG_PROGRAM_RDKAFKA 1u
#define KENG_PROGRAM_LIBUV   2u

typedef struct keng_program {
    const char *name;                        /* "keng-produce": the log's and messages' prefix */
    unsigned versions;                       /* KENG_PROGRAM_RDKAFKA | KENG_PROGRAM_LIBUV */
    void (*usage)(FILE *out);                /* the --help text */
    const char *const *const *config_tables; /* the keys it reads (keng_config_check) */
    int brief; /* -h is --help too, and a bad flag or argument gets "Try 'keng-x --help'." */
} keng_program_t;

/* Names the program in every log line. Call first; p is borrowed and must outlive the
 * program (a static). */
void keng_program_start(const keng_program_t *p);

/* --help: the usage on stdout. Returns KENG_EXIT_OK for main to return. */
int keng_program_help(const keng_program_t *p);

/* --version: "keng-x 0.9.0 (librdkafka 2.0.2, libuv 1.44.2)" on stdout, naming the libraries
 * in p->versions. Returns KENG_EXIT_OK for main to return. */
int keng_program_version(const keng_program_t *p);

/* A flag getopt did not take: the usage on stderr. Returns KENG_EXIT_USAGE. */
int keng_program_bad_flag(const keng_program_t *p);

/* A flag getopt did not take, for the programs with a long usage: "Try 'keng-x --help'." on
 * stderr. Returns KENG_EXIT_USAGE. */
int keng_program_try_help(const keng_program_t *p);

/* One long flag of a program, in a table ending with KENG_FLAGS_END. A flag with value
 * takes one (--brokers HOST) and keeps it there as given, for the config key key when that
 * is set (keng_program_overlay); one with set takes none (--dry-run) and sets *set to 1; one
 * with take hands its value to take(value, to) as it comes, which converts it into *to and
 * returns 0, or an exit code after saying on stderr what the flag takes. */
typedef struct keng_program_flag {
    const char *name;
    const char **value;
    const char *key;
    int *set;
    int (*take)(const char *value, void *to);
    void *to;
} keng_program_flag_t;

#define KENG_FLAG(name, value, key)                                                                \
    {                                                                                              \
        name, value, key, NULL, NULL, NULL                                                         \
    }
#define KENG_FLAG_SET(name, set)                                                                   \
    {                                                                                              \
        name, NULL, NULL, set, NULL, NULL                                                          \
    }
#define KENG_FLAG_TAKE(name, take, to)                                                             \
    {                                                                                              \
        name, NULL, NULL, NULL, take, to                                                           \
    }
#define KENG_FLAGS_END                                                                             \
    {                                                                                              \
        NULL, NULL, NULL, NULL, NULL, NULL                                                         \
    }

#define KENG_PROGRAM_MAX_FLAGS 24

/* getopt_long over argv with the flags plus --help and --version; a flag not in the table
 * gets the usage on stderr (p->brief: "Try 'keng-x --help'."). Arguments after the flags are
 * an error ("keng-x: unexpected argument 'a'") unless operands is set: then *operands is the
 * index of the first (GNU getopt moves them after the flags). Returns -1
 * to go on, else the exit code for main (KENG_EXIT_OK after --help or --version). */
int keng_program_parse(const keng_program_t *p, int argc, char **argv,
                       const keng_program_flag_t *flags, int *operands);

/* The flags given that have a key, as the list keng_program_config takes, in out (room for
 * cap, the NULL end included). Returns how many it put before the end. */
int keng_program_overlay(const keng_program_flag_t *flags, keng_config_flag_t *out, int cap);

/* The configuration: the file at path (none when NULL), the flags over it (a list ending
 * with a NULL key, or NULL), checked against p->config_tables. Returns NULL after saying why
 * on stderr (the caller exits with KENG_EXIT_USAGE); the caller owns the result and frees
 * it with keng_config_destroy. */
keng_config_t *keng_program_config(const keng_program_t *p, const char *path,
                                   const keng_config_flag_t *flags);

/* keng_program_config with the table's flags over the file (keng_program_overlay). */
keng_config_t *keng_program_config_table(const keng_program_t *p, const char *path,
                                         const keng_program_flag_t *table);

/* For the command-line importers: the configuration (keng_program_config_table) into *cfg,
 * then the board registry at registry_path (the generated default when NULL) into *reg.
 * Returns 0; KENG_EXIT_USAGE when the config did not load; KENG_EXIT_CONFIG after
 * "keng-x: registry: why" on stderr when the registry did not. The caller owns and frees
 * what was opened, also on failure (*reg NULL then). */
int keng_program_open(const keng_program_t *p, const char *path, const keng_program_flag_t *table,
                      const char *registry_path, keng_config_t **cfg, keng_registry_t **reg);

/* Logs which board registry the program uses: its file or the built-in one, its counts and
 * its levels (keng_program_open does it; programs that open their registry themselves call
 * it), so that a deployment that forgot --registry can see it. */
void keng_program_log_registry(const keng_registry_t *reg);

/* For the servers, which cannot do their job without Kafka: returns 0 when cfg names bootstrap
 * servers, else KENG_EXIT_CONFIG after logging the three ways to name them. (A broker that is
 * named but down is not this: the servers start, and /readyz says what they wait for.) */
int keng_program_require_brokers(const keng_config_t *cfg);

/* For --check-config: whether librdkafka takes cfg's Kafka settings for the producer, and
 * for the consumer too when consumer is set, without making a client. Returns 0, or
 * KENG_EXIT_CONFIG after logging librdkafka's words. */
int keng_program_check_kafka(const keng_config_t *cfg, bool consumer);

/* For the programs without a loop: SIGINT and SIGTERM add one to *flag and do nothing else
 * (a second signal can end a wait the first one started). flag is borrowed for the life of
 * the process. */
void keng_program_stop_on_signals(volatile sig_atomic_t *flag);

/* For the programs on a libuv loop: SIGINT and SIGTERM (and SIGHUP when with_hup) call cb on
 * the loop thread, with handle->data set to data. The handles live in the caller's struct
 * (borrowed until keng_program_signals_close has run its close callbacks, i.e. until the loop
 * has turned once more). */
typedef struct keng_program_signals {
    uv_signal_t handles[3];
    int count; /* started; 0 before start and after close */
} keng_program_signals_t;

void keng_program_signals_start(keng_program_signals_t *s, uv_loop_t *loop, uv_signal_cb cb,
                                void *data, int with_hup);

/* Stops and closes the handles that were started; safe to call twice. */
void keng_program_signals_close(keng_program_signals_t *s);

#endif
