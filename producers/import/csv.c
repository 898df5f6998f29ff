/* Splits CSV records into fields, unquoting in a buffer of its own; it never reads a file or
 * knows what a column means. */
#include "csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct field {
    size_t off; /* into buf */
    size_t len;
    bool quoted;
};

struct keng_csv {
    char *buf;
    size_t buf_cap;
    struct field *fields;
    size_t count;
    size_t fields_cap;
};

keng_csv_t *keng_csv_new(void)
{
    return calloc(1, sizeof(keng_csv_t));
}

void keng_csv_destroy(keng_csv_t *csv)
{
    if (!csv)
        return;
    free(csv->buf);
    free(csv->fields);
    free(csv);
}

bool keng_csv_needs_more(const char *s, size_t len)
{
    bool in_quotes = false;
    /* A doubled quote inside quotes toggles twice, so counting toggles is enough. */
    for (size_t i = 0; i < len; i++)
        if (s[i] == '"')
            in_quotes = !in_quotes;
    return in_quotes;
}

static int push_field(keng_csv_t *csv, size_t off, size_t len, bool quoted)
{
    if (csv->count == csv->fields_cap) {
        size_t cap = csv->fields_cap ? csv->fields_cap * 2 : 16;
        struct field *f = realloc(csv->fields, cap * sizeof(*f));
        if (!f)
            return -1;
        csv->fields = f;
        csv->fields_cap = cap;
    }
    csv->fields[csv->count++] = (struct field){off, len, quoted};
    return 0;
}

int keng_csv_split(keng_csv_t *csv, const char *s, size_t len, char *errstr, size_t errstr_size)
{
    size_t i = 0, out = 0, start = 0;
    bool quoted = false;

    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len > 0 && s[len - 1] == '\r')
        len--;
    /* Unquoting never makes a field longer; one NUL per field at most adds len + 1. */
    if (csv->buf_cap < 2 * len + 2) {
        char *b = realloc(csv->buf, 2 * len + 2);
        if (!b) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        csv->buf = b;
        csv->buf_cap = 2 * len + 2;
    }
    csv->count = 0;

    for (;;) {
        start = out;
        quoted = false;
        if (i < len && s[i] == '"') {
            quoted = true;
            i++;
            for (;;) {
                if (i >= len) {
                    snprintf(errstr, errstr_size, "field %zu: the quote is never closed",
                             csv->count + 1);
                    return -1;
                }
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        csv->buf[out++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                csv->buf[out++] = s[i++];
            }
            if (i < len && s[i] != ',') {
                snprintf(errstr, errstr_size, "field %zu: text after the closing quote",
                         csv->count + 1);
                return -1;
            }
        } else {
            while (i < len && s[i] != ',') {
                if (s[i] == '"') {
                    snprintf(errstr, errstr_size,
                             "field %zu: a quote inside an unquoted field (quote the whole "
                             "field and double the quote)",
                             csv->count + 1);
                    return -1;
                }
                csv->buf[out++] = s[i++];
            }
        }
        csv->buf[out++] = '\0';
        if (push_field(csv, start, out - start - 1, quoted) < 0) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        if (i >= len)
            break;
        i++; /* the comma */
    }
    return (int)csv->count;
}

size_t keng_csv_count(const keng_csv_t *csv)
{
    return csv->count;
}

const char *keng_csv_field(const keng_csv_t *csv, size_t i, size_t *len)
{
    if (i >= csv->count)
        return NULL;
    if (len)
        *len = csv->fields[i].len;
    return csv->buf + csv->fields[i].off;
}

bool keng_csv_field_is_null(const keng_csv_t *csv, size_t i)
{
    return i < csv->count && csv->fields[i].len == 0 && !csv->fields[i].quoted;
}
