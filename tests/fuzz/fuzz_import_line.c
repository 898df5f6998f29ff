/* Fuzzes keng-produce's import path: the bytes after the first are a file, read the way
 * keng-produce reads one (lines, CSV records that go on while a quoted cell is open, blank
 * lines skipped, the CSV header first) and each record turned into an event by
 * keng_input_parse; it never reads a real file or touches Kafka. The first byte chooses the
 * format and the kind:
 *   bit 0: 0 NDJSON, 1 CSV
 *   bits 1-2: 0 or 3 kind from each record ("kind" field), 1 incident, 2 mediation */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "event.h"
#include "fuzz_util.h"
#include "input.h"
#include "registry.h"

/* Records per input: a few are enough to reach the state kept between records. */
#define MAX_RECORDS 64

static keng_registry_t *registry;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    registry = keng_registry_default();
    FUZZ_CHECK(registry != NULL, "the default registry could not be built");
    return 0;
}

/* The next line of [*pos, end), with its newline, as getline would give it. */
static bool next_line(const char **pos, const char *end, const char **line, size_t *len)
{
    const char *nl;

    if (*pos >= end)
        return false;
    nl = memchr(*pos, '\n', (size_t)(end - *pos));
    *line = *pos;
    *len = nl ? (size_t)(nl - *pos) + 1 : (size_t)(end - *pos);
    *pos += *len;
    return true;
}

static bool blank(const char *s, size_t len)
{
    for (size_t k = 0; k < len; k++)
        if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r' && s[k] != '\n')
            return false;
    return true;
}

static void check_event(const keng_event_t *ev, int kind)
{
    json_t *obj;

    fuzz_expect_sane_event(ev);
    FUZZ_CHECK(kind == KENG_INPUT_KIND_AUTO || ev->kind == (keng_kind_t)kind,
               "kind %d asked, %d given", kind, ev->kind);
    FUZZ_CHECK(keng_registry_find_board(registry, ev->board_id, strlen(ev->board_id)) >= 0,
               "board '%s' is not in the registry but was accepted", ev->board_id);
    obj = keng_event_to_json(ev);
    FUZZ_CHECK(obj != NULL, "keng_event_to_json refused an imported event");
    json_decref(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keng_input_format_t format;
    keng_input_t *in = NULL;
    const char *pos, *end;
    char *rec = NULL;
    size_t rec_cap = 0;
    bool need_header;
    int kind, records = 0;

    if (size < 1)
        return 0;
    format = (data[0] & 1) ? KENG_INPUT_CSV : KENG_INPUT_NDJSON;
    switch ((data[0] >> 1) & 3) {
    case 1:
        kind = KENG_KIND_INCIDENT;
        break;
    case 2:
        kind = KENG_KIND_MEDIATION;
        break;
    default:
        kind = KENG_INPUT_KIND_AUTO;
        break;
    }
    pos = (const char *)data + 1;
    end = (const char *)data + size;
    need_header = format == KENG_INPUT_CSV;

    in = keng_input_new(format, kind, registry);
    FUZZ_CHECK(in != NULL, "keng_input_new failed");

    const char *line;
    size_t len;
    while (records < MAX_RECORDS && next_line(&pos, end, &line, &len)) {
        const char *s = line;
        char why[512];
        keng_event_t ev;
        keng_field_error_t err;

        /* As keng-produce does: a quoted CSV cell may hold newlines. */
        if (format == KENG_INPUT_CSV && keng_csv_needs_more(line, len)) {
            size_t rlen = 0;
            do {
                if (rlen + len + 1 > rec_cap) {
                    rec_cap = (rlen + len + 1) * 2;
                    rec = realloc(rec, rec_cap);
                    FUZZ_CHECK(rec != NULL, "out of memory");
                }
                memcpy(rec + rlen, line, len);
                rlen += len;
                rec[rlen] = '\0';
                if (!keng_csv_needs_more(rec, rlen))
                    break;
            } while (next_line(&pos, end, &line, &len));
            s = rec;
            len = rlen;
        }
        if (blank(s, len))
            continue;
        records++;
        if (need_header) {
            need_header = false;
            why[0] = '\0';
            if (keng_input_csv_header(in, s, len, why, sizeof(why)) < 0) {
                FUZZ_CHECK(why[0] != '\0', "a refused header with no reason");
                break;
            }
            continue;
        }
        if (keng_input_parse(in, s, len, FUZZ_NOW_MS, &ev, &err) == 0) {
            check_event(&ev, kind);
        } else {
            FUZZ_CHECK(memchr(err.field, '\0', sizeof(err.field)) != NULL,
                       "error field unterminated");
            FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL &&
                           err.message[0] != '\0',
                       "a refused record with no reason");
        }
    }

    free(rec);
    keng_input_destroy(in);
    return 0;
}
