/* Logs on stderr, one line per event: ts=... level=... msg="..." key=value ...; it never
 * allocates, and never interleaves lines (one write(2) each). */
#ifndef KENG_LOG_H
#define KENG_LOG_H

#include <stddef.h>

typedef enum { KENG_LOG_DEBUG, KENG_LOG_INFO, KENG_LOG_WARN, KENG_LOG_ERROR } keng_log_level_t;

/* Lines below this level are dropped. Default info; $KENG_LOG_LEVEL overrides at start. */
void keng_log_set_level(keng_log_level_t level);
void keng_log_set_program(const char *name);

/* msg is a short sentence; fmt, when not NULL, formats the key=value pairs that follow it, as
 * printf does but for %s: a string in quotes (key="%s") is escaped (\" \\ \n \r \t \xNN);
 * a bare one (key=%s) is escaped too, and quoted when it holds a space, a quote or '=', or is
 * empty; a %s on its own (" %s ") is ready pairs, whose values the caller escaped with
 * keng_log_value, and only its control bytes are escaped. A line is at most
 * 2 KiB; what is past that is cut, the newline never. Safe to call from any thread: each line
 * is written with one write(2). */
void keng_log(keng_log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes value into out (size bytes, NUL-terminated, cut to fit) as a bare %s of keng_log
 * writes it: escaped, and quoted when it must be. For a caller that builds ready pairs once
 * ("path=... peer=...") and logs them as " %s " in several lines. Returns the length. */
size_t keng_log_value(char *out, size_t size, const char *value);

#define keng_log_debug(msg, ...) keng_log(KENG_LOG_DEBUG, msg, __VA_ARGS__)
#define keng_log_info(msg, ...)  keng_log(KENG_LOG_INFO, msg, __VA_ARGS__)
#define keng_log_warn(msg, ...)  keng_log(KENG_LOG_WARN, msg, __VA_ARGS__)
#define keng_log_error(msg, ...) keng_log(KENG_LOG_ERROR, msg, __VA_ARGS__)

#endif
