/* Structured logs on stderr: one line per event, written with a single write(2) so that
 * lines from librdkafka's threads and the loop thread never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static keng_log_level_t min_level = KENG_LOG_INFO;
static const char *program_name = NULL;
static int env_checked = 0;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void keng_log_set_level(keng_log_level_t level)
{
    min_level = level;
    env_checked = 1;
}

void keng_log_set_program(const char *name)
{
    program_name = name;
}

static void check_env(void)
{
    const char *v = getenv("KENG_LOG_LEVEL");

    env_checked = 1;
    if (!v)
        return;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, level_names[i]) == 0)
            min_level = (keng_log_level_t)i;
    }
}

void keng_log(keng_log_level_t level, const char *msg, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int w;

    if (!env_checked)
        check_env();
    if (level < min_level)
        return;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    w = snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s", ts.tv_nsec / 1000000,
                 level_names[level < 0 || level > 3 ? 1 : level]);
    n += (size_t)w;
    if (program_name) {
        w = snprintf(line + n, sizeof(line) - n, " prog=%s", program_name);
        n += (size_t)w;
    }
    /* The message is quoted so that spaces in it keep the line parseable as key=value. */
    n += (size_t)snprintf(line + n, sizeof(line) - n, " msg=\"");
    for (const char *p = msg; *p && n < sizeof(line) - 8; p++) {
        if (*p == '"' || *p == '\\')
            line[n++] = '\\';
        line[n++] = *p == '\n' ? ' ' : *p;
    }
    line[n++] = '"';
    if (fmt && *fmt && n < sizeof(line) - 2) {
        line[n++] = ' ';
        va_start(ap, fmt);
        w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
        va_end(ap);
        if (w > 0)
            n += (size_t)w < sizeof(line) - n - 1 ? (size_t)w : sizeof(line) - n - 2;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nowhere left to report a failed log write. */
    }
}
