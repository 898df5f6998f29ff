/* The opening every keng program shares (see program.h); it never exits the process and
 * never touches a program's own options or state beyond the stop flag it is given. */
#include "program.h"

#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

#include <librdkafka/rdkafka.h>

#include "log.h"

void keng_program_start(const keng_program_t *p)
{
    keng_log_set_program(p->name);
}

int keng_program_help(const keng_program_t *p)
{
    p->usage(stdout);
    /* One table for every program, so that scripts can rely on it. */
    printf("\nExit codes: 0 done, 1 failed, 64 usage, 69 unavailable, 78 configuration; "
           "docs/DESIGN.md, \"Exit codes\".\n");
    return KENG_EXIT_OK;
}

int keng_program_version(const keng_program_t *p)
{
    printf("%s %s", p->name, KENG_VERSION);
    if (p->versions & KENG_PROGRAM_RDKAFKA && p->versions & KENG_PROGRAM_LIBUV)
        printf(" (librdkafka %s, libuv %s)", rd_kafka_version_str(), uv_version_string());
    else if (p->versions & KENG_PROGRAM_RDKAFKA)
        printf(" (librdkafka %s)", rd_kafka_version_str());
    else if (p->versions & KENG_PROGRAM_LIBUV)
        printf(" (libuv %s)", uv_version_string());
    printf("\n");
    return KENG_EXIT_OK;
}

int keng_program_bad_flag(const keng_program_t *p)
{
    p->usage(stderr);
    return KENG_EXIT_USAGE;
}

int keng_program_try_help(const keng_program_t *p)
{
    fprintf(stderr, "Try '%s --help'.\n", p->name);
    return KENG_EXIT_USAGE;
}

int keng_program_parse(const keng_program_t *p, int argc, char **argv,
                       const keng_program_flag_t *flags, int *operands)
{
    /* Values past any character getopt returns, so the index says which flag it was. */
    enum { FLAG_BASE = 256, FLAG_HELP = FLAG_BASE + KENG_PROGRAM_MAX_FLAGS, FLAG_VERSION };
    struct option longopts[KENG_PROGRAM_MAX_FLAGS + 3];
    int n = 0, c;

    for (; flags[n].name; n++) {
        if (n == KENG_PROGRAM_MAX_FLAGS) {
            fprintf(stderr, "%s: more than %d flags\n", p->name, KENG_PROGRAM_MAX_FLAGS);
            return KENG_EXIT_FAILURE;
        }
        longopts[n] = (struct option){flags[n].name, flags[n].set ? no_argument : required_argument,
                                      NULL, FLAG_BASE + n};
    }
    longopts[n] = (struct option){"help", no_argument, NULL, FLAG_HELP};
    longopts[n + 1] = (struct option){"version", no_argument, NULL, FLAG_VERSION};
    longopts[n + 2] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* GNU getopt starts afresh, so a test may parse twice */
    while ((c = getopt_long(argc, argv, p->brief ? "h" : "", longopts, NULL)) != -1) {
        if (c == FLAG_HELP || c == 'h')
            return keng_program_help(p);
        if (c == FLAG_VERSION)
            return keng_program_version(p);
        if (c < FLAG_BASE || c >= FLAG_BASE + n)
            return p->brief ? keng_program_try_help(p) : keng_program_bad_flag(p);
        const keng_program_flag_t *f = &flags[c - FLAG_BASE];
        if (f->take) {
            int rc = f->take(optarg, f->to);
            if (rc != 0)
                return rc;
        } else if (f->set) {
            *f->set = 1;
        } else {
            *f->value = optarg;
        }
    }
    if (operands) {
        *operands = optind;
    } else if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", p->name, argv[optind]);
        if (p->brief)
            return keng_program_try_help(p);
        return KENG_EXIT_USAGE;
    }
    return -1;
}

int keng_program_overlay(const keng_program_flag_t *flags, keng_config_flag_t *out, int cap)
{
    int n = 0;

    for (; flags->name; flags++) {
        if (flags->key && flags->value && *flags->value && n < cap - 1)
            out[n++] = (keng_config_flag_t){flags->key, *flags->value};
    }
    out[n] = (keng_config_flag_t){NULL, NULL};
    return n;
}

keng_config_t *keng_program_config(const keng_program_t *p, const char *path,
                                   const keng_config_flag_t *flags)
{
    return keng_config_from_args(p->name, path, flags, p->config_tables);
}

keng_config_t *keng_program_config_table(const keng_program_t *p, const char *path,
                                         const keng_program_flag_t *table)
{
    keng_config_flag_t flags[KENG_PROGRAM_MAX_FLAGS + 1];

    keng_program_overlay(table, flags, KENG_PROGRAM_MAX_FLAGS + 1);
    return keng_program_config(p, path, flags);
}

int keng_program_open(const keng_program_t *p, const char *path, const keng_program_flag_t *table,
                      const char *registry_path, keng_config_t **cfg, keng_registry_t **reg)
{
    char errstr[512];

    *reg = NULL;
    *cfg = keng_program_config_table(p, path, table);
    if (!*cfg)
        return KENG_EXIT_USAGE; /* a config that does not load, or an unknown key */
    *reg = keng_registry_open(registry_path, errstr, sizeof(errstr));
    if (!*reg) {
        fprintf(stderr, "%s: registry: %s\n", p->name, errstr);
        return KENG_EXIT_CONFIG;
    }
    return 0;
}

int keng_program_require_brokers(const keng_config_t *cfg)
{
    if (keng_config_brokers(cfg))
        return 0;
    keng_log_error("no bootstrap servers: set --brokers, KENG_BROKERS or "
                   "kafka.bootstrap.servers",
                   "exit=%d", KENG_EXIT_CONFIG);
    return KENG_EXIT_CONFIG;
}

void keng_program_warn_if_exposed(const char *path, const char *what)
{
    struct stat st;

    if (stat(path, &st) != 0 || (st.st_mode & 077) == 0)
        return;
    keng_log_warn("a secret file is readable by its group or other users: chmod 600 it",
                  "what=\"%s\" file=%s mode=0%o", what, path, (unsigned)(st.st_mode & 0777));
}

static volatile sig_atomic_t *stop_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    (*stop_flag)++;
}

void keng_program_stop_on_signals(volatile sig_atomic_t *flag)
{
    struct sigaction sa;

    stop_flag = flag;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void keng_program_signals_start(keng_program_signals_t *s, uv_loop_t *loop, uv_signal_cb cb,
                                void *data, int with_hup)
{
    static const int signums[] = {SIGINT, SIGTERM, SIGHUP};
    int n = with_hup ? 3 : 2;

    for (s->count = 0; s->count < n; s->count++) {
        uv_signal_t *h = &s->handles[s->count];
        uv_signal_init(loop, h);
        h->data = data;
        uv_signal_start(h, cb, signums[s->count]);
    }
}

void keng_program_signals_close(keng_program_signals_t *s)
{
    for (int i = 0; i < s->count; i++)
        uv_close((uv_handle_t *)&s->handles[i], NULL);
    s->count = 0;
}
