/* What every room of the codec (common/avro/) shares: the error-message helper and the
 * limits; it declares nothing that callers outside common/avro/ may use. */
#ifndef KENG_AVRO_INTERNAL_H
#define KENG_AVRO_INTERNAL_H

#include <stddef.h>

/* Names inside the codec that more than one of its files uses start with keng_avro__ (two
 * underscores), as libuv's uv__ do: they are not part of avro_codec.h. */

/* The largest people_involved or parties keng accepts, and the most array blocks an alert
 * record may have. */
#define KENG_AVRO_COUNT_MAX 100000

/* Formats a message into errstr when errstr is not NULL. */
void keng_avro__set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
