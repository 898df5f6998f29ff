/* Kafka refusing keng's user: a SASL login that fails, an ACL that is missing, a broker
 * certificate that does not verify. None of them passes by itself (librdkafka would retry for
 * ever, and a program would wait without a word), so the first one is logged once, naming the
 * topic or group and the ACL that is missing (deploy/create-acls.sh grants them), and the
 * program stops with KENG_EXIT_CONFIG once it sees keng_kafka_denial().
 *
 * Thread: any (librdkafka's callbacks call keng_kafka_denied); the first denial is kept under a
 * lock and never changes after. */
#ifndef KENG_KAFKA_DENIED_H
#define KENG_KAFKA_DENIED_H

#include <stdbool.h>

#include "config.h"

/* True when err (an rd_kafka_resp_err_t) is a refusal as above; reason is librdkafka's text
 * of the error, which tells a certificate that does not verify from other TLS errors (may be
 * NULL). */
bool keng_kafka_is_denial(int err, const char *reason);

/* Notes err, met by a client of role on resource (a topic or a group, NULL when librdkafka
 * did not say), when it is a refusal: the first is logged at error with what to grant or fix.
 * reason is librdkafka's text (may be NULL). Returns true when err was a refusal, false (and
 * nothing done) for any other error. */
bool keng_kafka_denied(keng_kafka_role_t role, int err, const char *resource, const char *reason);

/* The first refusal as one sentence (for /readyz and the exit line), or NULL when there was
 * none. The string lives as long as the process. */
const char *keng_kafka_denial(void);

#endif
