/* The opening every keng program shares (see program.h); it never exits the process and
 * never touches a program's own options or state beyond the stop flag it is given. */
#include "program.h"

#include <string.h>

#include <librdkafka/rdkafka.h>

#include "log.h"

void keng_program_start(const keng_program_t *p)
{
    keng_log_set_program(p->name);
}

int keng_program_help(const keng_program_t *p)
{
    p->usage(stdout);
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

keng_config_t *keng_program_config(const keng_program_t *p, const char *path,
                                   const keng_config_flag_t *flags)
{
    return keng_config_from_args(p->name, path, flags, p->config_tables);
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
