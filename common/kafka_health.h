/* What a process's Kafka clients said about the brokers, for /metrics: the errors librdkafka's
 * error callbacks reported, counted by client role and error, so that Prometheus can tell that
 * a broker is unreachable (deploy/keng-rules.yml); it only counts, and never acts on an error.
 *
 * Thread: any; the counters are atomic (keng-produce polls on its own thread). */
#ifndef KENG_KAFKA_HEALTH_H
#define KENG_KAFKA_HEALTH_H

#include <stdio.h>

#include "config.h"

/* Counts err (an rd_kafka_resp_err_t an error callback got) for a client of role. */
void keng_kafka_health_note(keng_kafka_role_t role, int err);

/* Writes keng_kafka_errors_total{client,error} in the Prometheus text format: every error
 * keng watches, zero or not, so that rate() has a series from the start. */
void keng_kafka_health_metrics(FILE *out);

#endif
