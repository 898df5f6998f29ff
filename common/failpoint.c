/* The crash points of failpoint.h, linked only into the test copies of the programs, so that it
 * never reaches a build that users run. */
#include "failpoint.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#ifndef KENG_FAILPOINTS
#error "failpoint.c belongs to the test copies only (build them with KENG_FAILPOINTS)"
#endif

static atomic_long hits;

void keng_failpoint(const char *name)
{
    const char *want = getenv("KENG_FAILPOINT");
    size_t len = strlen(name);
    long nth = 1, hit;

    if (!want || strncmp(want, name, len) != 0 || (want[len] != '\0' && want[len] != ':'))
        return;
    if (want[len] == ':')
        nth = strtol(want + len + 1, NULL, 10);
    hit = atomic_fetch_add(&hits, 1) + 1;
    if (hit != nth)
        return;
    keng_log_warn("failpoint reached: the process kills itself", "failpoint=%s hit=%ld", name, hit);
    raise(SIGKILL);
}
