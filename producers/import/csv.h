/* CSV records as RFC 4180 writes them: comma-separated, fields optionally in double quotes, a
 * doubled quote inside quotes for a quote, commas and newlines allowed inside quotes; nothing
 * here reads a file. */
#ifndef KENG_CSV_H
#define KENG_CSV_H

#include <stdbool.h>
#include <stddef.h>

typedef struct keng_csv keng_csv_t;

/* A splitter that keeps its fields between calls. Returns NULL on allocation failure;
 * the caller owns it (keng_csv_destroy). */
keng_csv_t *keng_csv_new(void);
void keng_csv_destroy(keng_csv_t *csv);

/* True when s[0..len) ends inside a quoted field: the record goes on on the next line. */
bool keng_csv_needs_more(const char *s, size_t len);

/* Splits one record (a trailing "\n" or "\r\n" is ignored). Returns the number of fields, or
 * -1 with errstr naming the field ("field 3: text after the closing quote"). The fields stay
 * valid until the next split or destroy. */
int keng_csv_split(keng_csv_t *csv, const char *s, size_t len, char *errstr, size_t errstr_size);

size_t keng_csv_count(const keng_csv_t *csv);

/* Field i, NUL-terminated, with its length in *len when len is not NULL; borrowed from csv.
 * NULL when i is out of range. */
const char *keng_csv_field(const keng_csv_t *csv, size_t i, size_t *len);

/* True when field i is empty and was not written in quotes: an empty cell means null, while
 * "" is an empty string. */
bool keng_csv_field_is_null(const keng_csv_t *csv, size_t i);

#endif
