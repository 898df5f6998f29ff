/* What the fuzz targets share: comparing two events field by field, and failing loudly; nothing
 * here chooses what a target feeds in. A broken property calls abort() so that libFuzzer keeps
 * the input as a crash. */
#ifndef KENG_FUZZ_UTIL_H
#define KENG_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

/* The clock every target uses, so that a reproducer behaves the same on any day:
 * 2025-06-01T00:00:00Z. */
#define FUZZ_NOW_MS 1748736000000LL

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property broken at %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The bytes of a borrowed summary, copied so that it outlives its source. Returns NULL for
 * an absent summary; the caller frees. */
static inline char *fuzz_summary_dup(const keng_event_t *ev)
{
    char *s;

    if (ev->summary == NULL)
        return NULL;
    s = malloc(ev->summary_len + 1);
    if (s == NULL)
        abort();
    memcpy(s, ev->summary, ev->summary_len);
    s[ev->summary_len] = '\0';
    return s;
}

/* Aborts, naming the first field that differs, unless a and b are the same event. a's summary
 * is given separately (a copy, see fuzz_summary_dup) because its source may be gone. */
static inline void fuzz_expect_same_event(const keng_event_t *a, const char *a_summary,
                                          const keng_event_t *b)
{
    FUZZ_CHECK(a->kind == b->kind, "kind %d != %d", a->kind, b->kind);
    FUZZ_CHECK(strcmp(a->event_id, b->event_id) == 0, "event_id '%s' != '%s'", a->event_id,
               b->event_id);
    FUZZ_CHECK(strcmp(a->board_id, b->board_id) == 0, "board_id '%s' != '%s'", a->board_id,
               b->board_id);
    FUZZ_CHECK(a->has_group == b->has_group, "has_group %d != %d", a->has_group, b->has_group);
    if (a->has_group)
        FUZZ_CHECK(strcmp(a->group_id, b->group_id) == 0, "group_id '%s' != '%s'", a->group_id,
                   b->group_id);
    FUZZ_CHECK(a->occurred_at == b->occurred_at, "occurred_at %lld != %lld",
               (long long)a->occurred_at, (long long)b->occurred_at);
    FUZZ_CHECK(a->reported_at == b->reported_at, "reported_at %lld != %lld",
               (long long)a->reported_at, (long long)b->reported_at);
    FUZZ_CHECK((a_summary == NULL) == (b->summary == NULL), "summary present %d != %d",
               a_summary != NULL, b->summary != NULL);
    if (a_summary != NULL)
        FUZZ_CHECK(a->summary_len == b->summary_len &&
                       memcmp(a_summary, b->summary, b->summary_len) == 0,
                   "summary of %zu bytes != summary of %zu bytes", a->summary_len, b->summary_len);
    if (a->kind == KENG_KIND_INCIDENT) {
        FUZZ_CHECK(a->category == b->category, "category %d != %d", a->category, b->category);
        FUZZ_CHECK(a->severity == b->severity, "severity %d != %d", a->severity, b->severity);
        FUZZ_CHECK(a->resolution == b->resolution, "resolution %d != %d", a->resolution,
                   b->resolution);
        FUZZ_CHECK(a->source == b->source, "source %d != %d", a->source, b->source);
        FUZZ_CHECK(a->people_involved == b->people_involved, "people_involved %d != %d",
                   (int)a->people_involved, (int)b->people_involved);
        FUZZ_CHECK(a->has_location == b->has_location, "has_location %d != %d", a->has_location,
                   b->has_location);
        if (a->has_location)
            FUZZ_CHECK(a->lat == b->lat && a->lon == b->lon, "location %.17g,%.17g != %.17g,%.17g",
                       a->lat, a->lon, b->lat, b->lon);
    } else {
        FUZZ_CHECK(a->dispute_type == b->dispute_type, "dispute_type %d != %d", a->dispute_type,
                   b->dispute_type);
        FUZZ_CHECK(a->outcome == b->outcome, "outcome %d != %d", a->outcome, b->outcome);
        FUZZ_CHECK(a->parties == b->parties, "parties %d != %d", (int)a->parties, (int)b->parties);
        FUZZ_CHECK(a->has_related_incident == b->has_related_incident,
                   "has_related_incident %d != %d", a->has_related_incident,
                   b->has_related_incident);
        if (a->has_related_incident)
            FUZZ_CHECK(strcmp(a->related_incident_id, b->related_incident_id) == 0,
                       "related_incident_id '%s' != '%s'", a->related_incident_id,
                       b->related_incident_id);
    }
}

/* The invariants every accepted event keeps, whatever it was read from: ids NUL-terminated
 * inside their buffers and well formed, enums in range. */
static inline void fuzz_expect_sane_event(const keng_event_t *ev)
{
    FUZZ_CHECK(memchr(ev->event_id, '\0', sizeof(ev->event_id)) != NULL, "event_id unterminated");
    FUZZ_CHECK(keng_event_id_valid(ev->event_id, strlen(ev->event_id)), "event_id '%s' accepted",
               ev->event_id);
    FUZZ_CHECK(memchr(ev->board_id, '\0', sizeof(ev->board_id)) != NULL, "board_id unterminated");
    FUZZ_CHECK(!ev->has_group || memchr(ev->group_id, '\0', sizeof(ev->group_id)) != NULL,
               "group_id unterminated");
    FUZZ_CHECK(ev->summary == NULL || ev->summary_len <= KENG_SUMMARY_MAX,
               "summary of %zu bytes accepted", ev->summary_len);
    FUZZ_CHECK(ev->summary == NULL || keng_utf8_valid(ev->summary, ev->summary_len),
               "summary with invalid UTF-8 accepted");
    if (ev->kind == KENG_KIND_INCIDENT) {
        FUZZ_CHECK((unsigned)ev->category < KENG_CAT_COUNT, "category %d", ev->category);
        FUZZ_CHECK((unsigned)ev->severity < KENG_SEV_COUNT, "severity %d", ev->severity);
        FUZZ_CHECK((unsigned)ev->resolution < KENG_RES_COUNT, "resolution %d", ev->resolution);
        FUZZ_CHECK((unsigned)ev->source < KENG_SRC_COUNT, "source %d", ev->source);
    } else {
        FUZZ_CHECK(ev->kind == KENG_KIND_MEDIATION, "kind %d", ev->kind);
        FUZZ_CHECK((unsigned)ev->dispute_type < KENG_DISPUTE_COUNT, "dispute_type %d",
                   ev->dispute_type);
        FUZZ_CHECK((unsigned)ev->outcome < KENG_OUTCOME_COUNT, "outcome %d", ev->outcome);
        FUZZ_CHECK(!ev->has_related_incident || memchr(ev->related_incident_id, '\0',
                                                       sizeof(ev->related_incident_id)) != NULL,
                   "related_incident_id unterminated");
    }
}

#endif
