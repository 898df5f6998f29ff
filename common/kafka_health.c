/* Per-process counters of the Kafka client errors that mean a broker cannot be reached; it
 * never locks (the counters are atomic). */
#include "kafka_health.h"

#include <inttypes.h>
#include <stdatomic.h>

#include <librdkafka/rdkafka.h>

/* The errors that say a broker is out of reach, and one slot for every other. */
static const rd_kafka_resp_err_t watched[] = {
    RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
    RD_KAFKA_RESP_ERR__RESOLVE,   RD_KAFKA_RESP_ERR__AUTHENTICATION,
    RD_KAFKA_RESP_ERR__SSL,       RD_KAFKA_RESP_ERR__TIMED_OUT,
};
#define WATCHED (sizeof(watched) / sizeof(watched[0]))

static atomic_uint_fast64_t counts[2][WATCHED + 1];

void keng_kafka_health_note(keng_kafka_role_t role, int err)
{
    size_t i = 0;

    while (i < WATCHED && (int)watched[i] != err)
        i++;
    atomic_fetch_add(&counts[role == KENG_KAFKA_PRODUCER][i], 1);
}

void keng_kafka_health_metrics(FILE *out)
{
    static const char *const roles[2] = {"consumer", "producer"};

    fprintf(out, "# HELP keng_kafka_errors_total Errors the Kafka clients reported, by client "
                 "and error (_TRANSPORT, _ALL_BROKERS_DOWN, _RESOLVE: a broker is out of "
                 "reach).\n"
                 "# TYPE keng_kafka_errors_total counter\n");
    for (int r = 0; r < 2; r++)
        for (size_t i = 0; i <= WATCHED; i++)
            fprintf(out, "keng_kafka_errors_total{client=\"%s\",error=\"%s\"} %" PRIu64 "\n",
                    roles[r], i < WATCHED ? rd_kafka_err2name(watched[i]) : "other",
                    (uint64_t)atomic_load(&counts[r][i]));
}
