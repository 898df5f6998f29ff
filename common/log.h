/* Logs on stderr, one line per event: ts=... level=... msg="..." key=value ...; it never
 * allocates, and never interleaves lines (one write(2) each). */
#ifndef KENG_LOG_H
#define KENG_LOG_H

typedef enum { KENG_LOG_DEBUG, KENG_LOG_INFO, KENG_LOG_WARN, KENG_LOG_ERROR } keng_log_level_t;

/* Lines below this level are dropped. Default info; $KENG_LOG_LEVEL overrides at start. */
void keng_log_set_level(keng_log_level_t level);
void keng_log_set_program(const char *name);

/* msg is a short sentence; fmt, when not NULL, formats the key=value pairs that follow it, as
 * printf does but for %s: each string is escaped (\" \\ \n \r \t \xNN), and a bare one
 * (key=%s) that holds a space, a quote or '=', or is empty, is quoted too. A line is at most
 * 2 KiB; what is past that is cut, the newline never. Safe to call from any thread: each line
 * is written with one write(2). */
void keng_log(keng_log_level_t level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define keng_log_debug(msg, ...) keng_log(KENG_LOG_DEBUG, msg, __VA_ARGS__)
#define keng_log_info(msg, ...)  keng_log(KENG_LOG_INFO, msg, __VA_ARGS__)
#define keng_log_warn(msg, ...)  keng_log(KENG_LOG_WARN, msg, __VA_ARGS__)
#define keng_log_error(msg, ...) keng_log(KENG_LOG_ERROR, msg, __VA_ARGS__)

#endif
