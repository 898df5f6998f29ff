/* Records of bulk files (NDJSON lines, CSV rows) into validated events. Both formats go through
 * the same JSON form and keng_event_from_json, so a file is checked exactly as an HTTP request
 * would be; nothing here reads a file or produces. */
#ifndef KENG_INPUT_H
#define KENG_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "event_rule.h"
#include "registry.h"

typedef enum { KENG_INPUT_NDJSON, KENG_INPUT_CSV } keng_input_format_t;

/* For keng_input_new's kind: each record names its own kind in a "kind" field. */
#define KENG_INPUT_KIND_AUTO (-1)

typedef struct keng_input keng_input_t;

/* kind is a keng_kind_t, or KENG_INPUT_KIND_AUTO. With a fixed kind a record may still carry
 * "kind", and then it must agree. reg (borrowed, may be NULL to skip the check) must outlive
 * the input. Returns NULL on allocation failure. */
keng_input_t *keng_input_new(keng_input_format_t format, int kind, const keng_registry_t *reg);
void keng_input_destroy(keng_input_t *in);

/* "ndjson" or "csv". Returns 0 or -1. */
int keng_input_format_parse(const char *name, keng_input_format_t *out);

/* By extension: .csv is CSV, anything else (.ndjson, .jsonl, .json, stdin) NDJSON. */
keng_input_format_t keng_input_format_for_path(const char *path);

/* CSV only: the header record, with the schema's field names (location as two columns lat
 * and lon; "kind" allowed). Returns 0, or -1 with errstr naming the column. */
int keng_input_csv_header(keng_input_t *in, const char *s, size_t len, char *errstr,
                          size_t errstr_size);

/* The times' rule every record is checked against from now on (borrowed: it must outlive
 * in; NULL, the default, means the rule's defaults). */
void keng_input_set_rule(keng_input_t *in, const keng_event_rule_t *rule);

/* One record (a trailing newline is ignored) into ev. now_ms is the clock for the time checks
 * and the reported_at of records without one. Returns 0, or -1 with err filled: the field
 * ("" for the record as a whole) and a sentence. ev borrows summary from in, valid until the
 * next call. */
int keng_input_parse(keng_input_t *in, const char *s, size_t len, int64_t now_ms, keng_event_t *ev,
                     keng_field_error_t *err);

#endif
