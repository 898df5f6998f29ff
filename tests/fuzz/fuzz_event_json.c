/* Fuzzes the JSON event validator that every edge shares (HTTP bodies, NDJSON files): any bytes
 * go through json_loadb and keng_event_from_json as both kinds, and never reach Avro or Kafka.
 * An event that passes must survive keng_event_to_json, a trip through JSON text and a second
 * validation unchanged; when it does not, the target aborts so that libFuzzer keeps the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "fuzz_util.h"

/* A body may be an array of events; a few are enough to reach every path. */
#define MAX_EVENTS 8

static void check_round_trip(const keng_event_t *ev, const keng_event_limits_t *limits)
{
    json_t *back = NULL, *reparsed = NULL;
    char *text = NULL, *summary = NULL;
    json_error_t jerr;
    keng_event_t again;
    keng_field_error_t err;

    fuzz_expect_sane_event(ev);
    back = keng_event_to_json(ev);
    FUZZ_CHECK(back != NULL, "keng_event_to_json refused an event that keng_event_from_json took");
    text = json_dumps(back, JSON_COMPACT);
    FUZZ_CHECK(text != NULL, "json_dumps failed on keng_event_to_json's object");
    reparsed = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_CHECK(reparsed != NULL, "keng_event_to_json wrote JSON that does not parse: %s: %s",
               jerr.text, text);
    FUZZ_CHECK(keng_event_from_json(reparsed, ev->kind, limits, &again, &err) == 0,
               "the round trip refused its own output: %s: %s: %s", err.field, err.message, text);
    summary = fuzz_summary_dup(ev);
    fuzz_expect_same_event(ev, summary, &again);

    free(summary);
    json_decref(reparsed);
    free(text);
    json_decref(back);
}

static void validate(const json_t *obj)
{
    for (int kind = 0; kind < KENG_KIND_COUNT; kind++) {
        for (int fill = 0; fill < 2; fill++) {
            keng_event_limits_t limits = {.now_ms = FUZZ_NOW_MS, .fill_reported_at = fill};
            keng_event_t ev;
            keng_field_error_t err;

            if (keng_event_from_json(obj, (keng_kind_t)kind, &limits, &ev, &err) == 0) {
                FUZZ_CHECK(ev.kind == (keng_kind_t)kind, "kind %d asked, %d given", kind, ev.kind);
                check_round_trip(&ev, &limits);
            } else {
                /* The field name and message are printed to users: they must be strings. */
                FUZZ_CHECK(memchr(err.field, '\0', sizeof(err.field)) != NULL,
                           "error field unterminated");
                FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL,
                           "error message unterminated");
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);

    if (root == NULL)
        return 0;
    if (json_is_array(root)) {
        for (size_t i = 0; i < json_array_size(root) && i < MAX_EVENTS; i++)
            validate(json_array_get(root, i));
    } else {
        validate(root);
    }
    json_decref(root);
    return 0;
}
