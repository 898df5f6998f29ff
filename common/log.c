/* Structured logs on stderr: one line per event, written with a single write(2) so that
 * lines from librdkafka's threads and the loop thread never interleave. Every value is
 * escaped (quotes, backslashes, control bytes), so that what a gateway, a file or Kafka sent
 * can neither start a line of its own nor forge a key; it never allocates. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
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

/* The line being built: text past the end is dropped, and the last bytes are kept for the
 * newline, so a line is never longer than LINE_MAX_BYTES nor ever two lines. */
#define LINE_MAX_BYTES 2048

typedef struct {
    char buf[LINE_MAX_BYTES];
    size_t n;
} line_t;

static void put(line_t *l, const char *s, size_t len)
{
    size_t room = sizeof(l->buf) - 1 - l->n; /* one byte stays for the newline */
    if (len > room)
        len = room;
    memcpy(l->buf + l->n, s, len);
    l->n += len;
}

/* One byte of a value, escaped so that nothing in it ends the line, the value or its quotes. */
static void put_escaped_byte(line_t *l, unsigned char c)
{
    char esc[5];

    switch (c) {
    case '"':
        put(l, "\\\"", 2);
        return;
    case '\\':
        put(l, "\\\\", 2);
        return;
    case '\n':
        put(l, "\\n", 2);
        return;
    case '\r':
        put(l, "\\r", 2);
        return;
    case '\t':
        put(l, "\\t", 2);
        return;
    default:
        if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            put(l, esc, 4);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
}

/* A bare value (key=%s) that holds a space, a quote, an equals sign or a control byte, or is
 * empty, would read as another key or end the line: such a value is quoted. */
static bool needs_quotes(const char *v, size_t len)
{
    if (len == 0)
        return true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

/* Where a %s stands in the pairs: inside quotes (key="%s"), bare (key=%s), or on its own
 * (" %s "), where it holds ready pairs that its caller built with keng_log_value. */
typedef enum { VALUE_QUOTED, VALUE_BARE, VALUE_PAIRS } value_place_t;

static void put_value(line_t *l, const char *v, size_t len, value_place_t place)
{
    bool quote = place == VALUE_BARE && needs_quotes(v, len);

    if (quote)
        put(l, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        /* Ready pairs keep their quotes and escapes; only a line break or another control
         * byte is escaped, so that they stay on this line. */
        if (place == VALUE_PAIRS && c != '\r' && c != '\n' && c >= 0x20 && c != 0x7f)
            put(l, (const char *)&c, 1);
        else
            put_escaped_byte(l, c);
    }
    if (quote)
        put(l, "\"", 1);
}

/* One conversion of put_pairs: spec is its text ("%-5d", "%.*s", "%" PRId64), width and
 * precision the values of its stars (-1: none), length its length modifier. */
static void put_conversion(line_t *l, const char *spec, char conv, const char *length,
                           size_t length_len, int width, int precision, value_place_t place,
                           va_list *ap)
{
    char out[128];
    int w = 0;

    if (conv == '%') {
        put(l, "%", 1);
        return;
    }
    if (conv == 's') {
        const char *v = va_arg(*ap, const char *);
        if (!v)
            v = "(null)";
        size_t len = precision >= 0 ? strnlen(v, (size_t)precision) : strlen(v);
        put_value(l, v, len, place);
        return;
    }
    /* Stars were read already: hand snprintf their values in the spec's place. */
    char fixed[48];
    if (strchr(spec, '*')) {
        char *o = fixed;
        for (const char *c = spec; *c && o < fixed + sizeof(fixed) - 12; c++) {
            if (*c == '*')
                o += sprintf(o, "%d", c[-1] == '.' ? precision : width);
            else
                *o++ = *c;
        }
        *o = '\0';
        spec = fixed;
    }
#define LEN_IS(s) (length_len == sizeof(s) - 1 && strncmp(length, s, length_len) == 0)
    switch (conv) {
    case 'd':
    case 'i':
    case 'u':
    case 'o':
    case 'x':
    case 'X':
    case 'c':
        if (LEN_IS("ll") || LEN_IS("j"))
            w = snprintf(out, sizeof(out), spec, va_arg(*ap, long long));
        else if (LEN_IS("l") || LEN_IS("z") || LEN_IS("t"))
            w = snprintf(out, sizeof(out), spec, va_arg(*ap, long));
        else
            w = snprintf(out, sizeof(out), spec, va_arg(*ap, int));
        break;
    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
        w = LEN_IS("L") ? snprintf(out, sizeof(out), spec, va_arg(*ap, long double))
                        : snprintf(out, sizeof(out), spec, va_arg(*ap, double));
        break;
    case 'p':
        w = snprintf(out, sizeof(out), spec, va_arg(*ap, void *));
        break;
    default:
        return; /* unknown: the line ends here rather than read a wrong argument */
    }
#undef LEN_IS
    if (w > 0)
        put(l, out, (size_t)w < sizeof(out) ? (size_t)w : sizeof(out) - 1);
}

/* printf for the key=value pairs, with every %s escaped (put_value); the other conversions
 * are formatted by snprintf one at a time, with their own flags, width and precision. */
static void put_pairs(line_t *l, const char *fmt, va_list *ap)
{
    const char *p = fmt;

    while (*p) {
        const char *pct = strchr(p, '%');
        if (!pct) {
            put(l, p, strlen(p));
            return;
        }
        put(l, p, (size_t)(pct - p));
        value_place_t place = pct > fmt && pct[-1] == '"'   ? VALUE_QUOTED
                              : pct > fmt && pct[-1] == '=' ? VALUE_BARE
                                                            : VALUE_PAIRS;
        /* The conversion: %[flags][width][.precision][length]conversion. */
        const char *q = pct + 1;
        char spec[32];
        int width = -1, precision = -1;
        q += strspn(q, "-+ #0");
        if (*q == '*') {
            width = va_arg(*ap, int);
            q++;
        } else {
            q += strspn(q, "0123456789");
        }
        if (*q == '.') {
            q++;
            if (*q == '*') {
                precision = va_arg(*ap, int);
                q++;
            } else {
                q += strspn(q, "0123456789");
            }
        }
        const char *length = q;
        q += strspn(q, "hljztL");
        char conv = *q;
        if (!conv)
            return;
        p = q + 1;
        size_t spec_len = (size_t)(p - pct);
        if (spec_len >= sizeof(spec))
            return; /* no conversion keng writes is this long */
        memcpy(spec, pct, spec_len);
        spec[spec_len] = '\0';
        put_conversion(l, spec, conv, length, (size_t)(q - length), width, precision, place, ap);
    }
}

void keng_log(keng_log_level_t level, const char *msg, const char *fmt, ...)
{
    line_t l;
    struct timespec ts;
    struct tm tm;
    va_list ap;

    if (!env_checked)
        check_env();
    if (level < min_level)
        return;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    l.n = strftime(l.buf, sizeof(l.buf), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    char head[64];
    int w = snprintf(head, sizeof(head), ".%03ldZ level=%s", ts.tv_nsec / 1000000,
                     level_names[level < 0 || level > 3 ? 1 : level]);
    put(&l, head, (size_t)w);
    if (program_name) {
        put(&l, " prog=", 6);
        put(&l, program_name, strlen(program_name));
    }
    /* The message is quoted so that spaces in it keep the line parseable as key=value. */
    put(&l, " msg=\"", 6);
    put_value(&l, msg, strlen(msg), VALUE_QUOTED);
    put(&l, "\"", 1);
    if (fmt && *fmt) {
        put(&l, " ", 1);
        va_start(ap, fmt);
        put_pairs(&l, fmt, &ap);
        va_end(ap);
    }
    l.buf[l.n++] = '\n';
    if (write(STDERR_FILENO, l.buf, l.n) < 0) {
        /* Nowhere left to report a failed log write. */
    }
}

size_t keng_log_value(char *out, size_t size, const char *value)
{
    line_t l;

    l.n = 0;
    put_value(&l, value, strlen(value), VALUE_BARE);
    if (size == 0)
        return l.n;
    size_t n = l.n < size - 1 ? l.n : size - 1;
    memcpy(out, l.buf, n);
    out[n] = '\0';
    return n;
}
