/* The one rule for an event's times, and its bounds from config, so that an event dated 1970
 * or reported before it happened is refused alike at every door and by every consumer; it
 * never decides what a refused event becomes (a 400, a rejected line, a dead letter). */
#include "event_rule.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "timeutil.h"

keng_config_keys_t keng_event_rule_config_keys = {"events.min_occurred_at", "events.max_future_ms",
                                                  NULL};

/* A date "2020-01-01" as midnight in Asia/Ho_Chi_Minh, as silent.start reads it. */
static int parse_time(const char *s, int64_t *out)
{
    char buf[40];

    if (strlen(s) == 10 && s[4] == '-' && s[7] == '-') {
        snprintf(buf, sizeof(buf), "%sT00:00:00+07:00", s);
        return keng_time_parse_rfc3339(buf, strlen(buf), out);
    }
    return keng_time_parse_rfc3339(s, strlen(s), out);
}

int keng_event_rule_from_config(const keng_config_t *cfg, keng_event_rule_t *rule, char *errstr,
                                size_t errstr_size)
{
    const char *min = keng_config_get(cfg, "events.min_occurred_at", NULL);
    long long future;

    *rule = KENG_EVENT_RULE_DEFAULT;
    if (min != NULL && parse_time(min, &rule->min_occurred_at_ms) != 0) {
        snprintf(errstr, errstr_size,
                 "events.min_occurred_at: '%.40s' is neither a date (2020-01-01) nor an RFC 3339 "
                 "time (2020-01-01T00:00:00+07:00)",
                 min);
        return -1;
    }
    if (keng_config_get_int(cfg, "events.max_future_ms", KENG_FUTURE_SKEW_MS, 0,
                            KENG_EVENT_MAX_FUTURE_MS_MAX, &future, errstr, errstr_size) != 0)
        return -1;
    rule->max_future_ms = future;
    return 0;
}

const char *keng_times_reason(keng_times_verdict_t verdict)
{
    switch (verdict) {
    case KENG_TIMES_OK:
        return "ok";
    case KENG_TIMES_TOO_EARLY:
        return "occurred-too-early";
    case KENG_TIMES_FUTURE:
        return "future-event";
    case KENG_TIMES_REPORTED_EARLIER:
        return "reported-before-occurred";
    default:
        return "bad-time";
    }
}

static keng_times_verdict_t refuse(keng_field_error_t *err, keng_times_verdict_t verdict,
                                   const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static keng_times_verdict_t refuse(keng_field_error_t *err, keng_times_verdict_t verdict,
                                   const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return verdict;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return verdict;
}

/* A time for a message: RFC 3339 for the years 0001 to 9999, the raw epoch milliseconds
 * beyond them, where calendar arithmetic would overflow. */
static const char *when(int64_t ms, char *buf, size_t size)
{
    if (ms < -62135596800000LL || ms > 253402300799999LL) {
        snprintf(buf, size, "%lld (epoch ms)", (long long)ms);
        return buf;
    }
    return keng_time_format_utc(ms, buf, size);
}

/* "5 minutes" when the bound is whole minutes (the default), else milliseconds. */
static const char *span(int64_t ms, char *buf, size_t size)
{
    if (ms > 0 && ms % 60000 == 0)
        snprintf(buf, size, "%lld minute%s", (long long)(ms / 60000), ms == 60000 ? "" : "s");
    else
        snprintf(buf, size, "%lld ms", (long long)ms);
    return buf;
}

static keng_times_verdict_t future(keng_field_error_t *err, const char *field, int64_t t,
                                   const keng_event_rule_t *rule)
{
    char at[32], ahead[32];

    return refuse(err, KENG_TIMES_FUTURE, field, "%s %s is more than %s in the future", field,
                  when(t, at, sizeof(at)), span(rule->max_future_ms, ahead, sizeof(ahead)));
}

keng_times_verdict_t keng_event_check_times(const keng_event_rule_t *rule, const keng_event_t *ev,
                                            int64_t now_ms, keng_field_error_t *err)
{
    static const keng_event_rule_t defaults = KENG_EVENT_RULE_DEFAULT;
    char a[32], b[32];

    if (rule == NULL)
        rule = &defaults;
    /* Compared as differences from now: an epoch-millisecond value from outside may be near
     * INT64_MIN or INT64_MAX, and now + max_future_ms must not be what overflows. */
    if (ev->occurred_at < rule->min_occurred_at_ms)
        return refuse(err, KENG_TIMES_TOO_EARLY, "occurred_at",
                      "occurred_at is before %s, the earliest time keng takes "
                      "(events.min_occurred_at); it was %s",
                      when(rule->min_occurred_at_ms, a, sizeof(a)),
                      when(ev->occurred_at, b, sizeof(b)));
    if (ev->occurred_at > now_ms && ev->occurred_at - now_ms > rule->max_future_ms)
        return future(err, "occurred_at", ev->occurred_at, rule);
    if (ev->reported_at < ev->occurred_at)
        return refuse(err, KENG_TIMES_REPORTED_EARLIER, "reported_at",
                      "reported_at %s is before occurred_at %s: an event is reported after it "
                      "happens",
                      when(ev->reported_at, a, sizeof(a)), when(ev->occurred_at, b, sizeof(b)));
    if (ev->reported_at > now_ms && ev->reported_at - now_ms > rule->max_future_ms)
        return future(err, "reported_at", ev->reported_at, rule);
    return KENG_TIMES_OK;
}
