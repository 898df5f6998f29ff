/* Request bodies of keng-ingest: JSON in, validated events or a list of errors out; it never
 * touches the socket or Kafka. */
#include "ingest_body.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keng_ingest_body {
    json_t *root; /* owns the strings the events' summaries point into */
    keng_event_t *events;
    size_t count;
};

size_t keng_ingest_body_count(const keng_ingest_body_t *body)
{
    return body->count;
}

const keng_event_t *keng_ingest_body_event(const keng_ingest_body_t *body, size_t i)
{
    return &body->events[i];
}

void keng_ingest_body_destroy(keng_ingest_body_t *body)
{
    if (!body)
        return;
    json_decref(body->root);
    free(body->events);
    free(body);
}

/* Appends {"index": index or null, "field": field, "message": message} to errors. */
static void add_error(json_t *errors, long long index, const char *field, const char *message)
{
    json_t *e =
        json_pack("{s:o, s:s, s:s}", "index", index >= 0 ? json_integer(index) : json_null(),
                  "field", field, "message", message);
    if (e)
        json_array_append_new(errors, e);
}

static json_t *one_error(const char *field, const char *message)
{
    json_t *errors = json_array();
    add_error(errors, -1, field, message);
    return json_pack("{s:o}", "errors", errors);
}

/* Finds the first place where arrays and objects nest deeper than max, outside strings, and
 * gives its line and column (1-based, as jansson counts). Returns true when there is one.
 * jansson parses recursively; this keeps a hostile body from taking it deep at all. */
static bool too_deep(const char *s, size_t len, unsigned max, int *line, int *column)
{
    unsigned depth = 0;
    bool in_string = false;
    int l = 1, c = 0;

    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        c++;
        if (ch == '\n') {
            l++;
            c = 0;
            continue;
        }
        if (in_string) {
            if (ch == '\\')
                i++, c++;
            else if (ch == '"')
                in_string = false;
            continue;
        }
        if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max) {
                *line = l;
                *column = c;
                return true;
            }
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

static bool all_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* The body's shape before any event is read: not empty, not too deep, JSON, one object or a
 * non-empty array of at most limits->max_events. Returns 0 with the document in *root (the
 * caller owns it) and its event count in *n, or the HTTP status with the errors in *answer. */
static int load_body(const char *body, size_t len, const keng_ingest_body_limits_t *limits,
                     json_t **root, size_t *n, json_t **answer)
{
    json_error_t jerr;
    char msg[320];
    int line, column;

    if (len == 0 || all_blank(body, len)) {
        *answer = one_error("", "the body is empty; send one JSON event or an array of them");
        return 400;
    }
    if (too_deep(body, len, limits->max_depth, &line, &column)) {
        snprintf(msg, sizeof(msg),
                 "JSON nests deeper than %u levels at line %d, column %d; an event needs at "
                 "most 3",
                 limits->max_depth, line, column);
        *answer = one_error("", msg);
        return 400;
    }
    /* Duplicate keys would let two readers of the same body see different events. */
    *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!*root) {
        snprintf(msg, sizeof(msg), "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        *answer = one_error("", msg);
        return 400;
    }
    if (json_is_object(*root)) {
        *n = 1;
    } else if (json_is_array(*root)) {
        *n = json_array_size(*root);
    } else {
        *answer = one_error("", "the body must be one JSON object or an array of them");
        return 400;
    }
    if (*n == 0) {
        *answer = one_error("", "the array holds no events; send at least one");
        return 400;
    }
    if (*n > limits->max_events) {
        snprintf(msg, sizeof(msg),
                 "the request holds %zu events; at most %zu are taken in one request, so "
                 "split it",
                 *n, limits->max_events);
        *answer = one_error("", msg);
        return 413;
    }
    return 0;
}

/* Reads event i into *ev and checks its board: an invalid event is added to `invalid`, one
 * outside the units the gateway may report for to `forbidden`. */
/* Whether gw may report for the board: in reg, or in an earlier version where the board was
 * in a unit that gw's list names (ids are never reused for another thing). */
static bool allowed(const keng_gateway_t *gw, const keng_registry_t *reg, uint32_t board,
                    const keng_ingest_body_limits_t *limits)
{
    const char *id;

    if (keng_gateway_allows_board(gw, reg, board))
        return true;
    id = keng_registry_board(reg, board)->id;
    for (size_t k = 0; k < limits->nearlier; k++) {
        int32_t then = keng_registry_find_board(limits->earlier[k], id, strlen(id));
        if (then >= 0 && keng_gateway_allows_board(gw, limits->earlier[k], (uint32_t)then))
            return true;
    }
    return false;
}

static void check_event(const json_t *obj, size_t i, keng_kind_t kind, const keng_registry_t *reg,
                        const keng_gateway_t *gw, const keng_ingest_body_limits_t *limits,
                        const keng_event_limits_t *ev_limits, keng_event_t *ev, json_t *invalid,
                        json_t *forbidden)
{
    keng_field_error_t ferr;
    char msg[320];

    if (keng_event_from_json(obj, kind, ev_limits, ev, &ferr) < 0) {
        add_error(invalid, (long long)i, ferr.field, ferr.message);
        return;
    }
    int32_t board = keng_registry_find_board(reg, ev->board_id, strlen(ev->board_id));
    if (board < 0) {
        snprintf(msg, sizeof(msg), "board '%s' is not in the board registry", ev->board_id);
        add_error(invalid, (long long)i, "board_id", msg);
        return;
    }
    if (gw && !allowed(gw, reg, (uint32_t)board, limits)) {
        const keng_board_t *b = keng_registry_board(reg, (uint32_t)board);
        const keng_district_t *district = keng_registry_district(reg, b->district);
        snprintf(msg, sizeof(msg),
                 "board '%s' (commune %s%s%s) is in no unit that gateway '%s' may report for",
                 ev->board_id, keng_registry_commune(reg, b->commune)->id,
                 district ? ", district " : "", district ? district->id : "",
                 keng_gateway_name(gw));
        add_error(forbidden, (long long)i, "board_id", msg);
    }
}

int keng_ingest_body_parse(const char *body, size_t len, keng_kind_t kind,
                           const keng_registry_t *reg, const keng_gateway_t *gw,
                           const keng_ingest_body_limits_t *limits, keng_ingest_body_t **out,
                           json_t **answer, size_t *nevents)
{
    keng_ingest_body_t *b = NULL;
    json_t *root = NULL;
    json_t *invalid = NULL;
    json_t *forbidden = NULL;
    size_t n = 0;
    int status;
    keng_event_limits_t ev_limits = {
        .now_ms = limits->now_ms, .fill_reported_at = true, .rule = limits->rule};

    *out = NULL;
    *answer = NULL;
    *nevents = 0;
    status = load_body(body, len, limits, &root, &n, answer);
    *nevents = n;
    if (status != 0)
        goto out;

    status = 400;
    b = calloc(1, sizeof(*b));
    if (b)
        b->events = calloc(n, sizeof(*b->events));
    invalid = json_array();
    forbidden = json_array();
    if (!b || !b->events || !invalid || !forbidden) {
        *answer = one_error("", "out of memory; retry later");
        status = 503;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        check_event(json_is_array(root) ? json_array_get(root, i) : root, i, kind, reg, gw, limits,
                    &ev_limits, &b->events[i], invalid, forbidden);
    if (json_array_size(invalid) > 0) {
        *answer = json_pack("{s:O}", "errors", invalid);
        goto out;
    }
    if (json_array_size(forbidden) > 0) {
        *answer = json_pack("{s:O}", "errors", forbidden);
        status = 403;
        goto out;
    }
    b->root = root;
    b->count = n;
    root = NULL;
    *out = b;
    b = NULL;
    status = 0;

out:
    json_decref(invalid);
    json_decref(forbidden);
    json_decref(root);
    keng_ingest_body_destroy(b);
    return status;
}
