/* The first time Kafka refused this process's user, and the sentence that says what to grant
 * or fix. */
#include "kafka_denied.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char first[512];
static bool noted;

static bool certificate_refused(const char *reason)
{
    return reason && (strstr(reason, "certificate verify failed") ||
                      strstr(reason, "ertificate verification failed"));
}

bool keng_kafka_is_denial(int err, const char *reason)
{
    switch ((rd_kafka_resp_err_t)err) {
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return true;
    case RD_KAFKA_RESP_ERR__SSL:
        return certificate_refused(reason);
    default:
        return false;
    }
}

/* What to grant or fix, for the operator: the ACLs are deploy/create-acls.sh's table. */
static void describe(char *out, size_t size, keng_kafka_role_t role, rd_kafka_resp_err_t err,
                     const char *resource)
{
    const char *res = resource && *resource ? resource : "?";

    switch (err) {
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        snprintf(out, size,
                 "Kafka denies this program's user %s on topic %s: grant the ACL (%s and "
                 "Describe on topic %s; deploy/create-acls.sh)",
                 role == KENG_KAFKA_PRODUCER ? "Write" : "Read", res,
                 role == KENG_KAFKA_PRODUCER ? "Write" : "Read", res);
        break;
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        snprintf(out, size,
                 "Kafka denies this program's user its consumer group %s: grant the ACL (Read on "
                 "group %s; deploy/create-acls.sh)",
                 res, res);
        break;
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        snprintf(out, size,
                 "Kafka refuses this program's user an idempotent producer: it may write to no "
                 "topic; grant the ACL (Write and Describe on the topics it writes; "
                 "deploy/create-acls.sh)");
        break;
    case RD_KAFKA_RESP_ERR__SSL:
        snprintf(out, size,
                 "the broker's TLS certificate does not verify: it must be signed by a CA in "
                 "kafka.ssl.ca.location and name the host the broker is reached at");
        break;
    default:
        snprintf(out, size,
                 "Kafka refused the login: check kafka.sasl.username, kafka.sasl.mechanisms and "
                 "the password (kafka.sasl.password_file)");
        break;
    }
}

bool keng_kafka_denied(keng_kafka_role_t role, int err, const char *resource, const char *reason)
{
    char line[sizeof(first)];

    if (!keng_kafka_is_denial(err, reason))
        return false;
    describe(line, sizeof(line), role, (rd_kafka_resp_err_t)err, resource);
    pthread_mutex_lock(&lock);
    bool was = noted;
    if (!noted) {
        memcpy(first, line, sizeof(first));
        noted = true;
    }
    pthread_mutex_unlock(&lock);
    if (!was)
        keng_log_error("Kafka refuses this program's user",
                       "denied=\"%s\" code=%s client=%s error=\"%s\"", line,
                       rd_kafka_err2name((rd_kafka_resp_err_t)err),
                       role == KENG_KAFKA_PRODUCER ? "producer" : "consumer", reason ? reason : "");
    return true;
}

const char *keng_kafka_denial(void)
{
    pthread_mutex_lock(&lock);
    const char *out = noted ? first : NULL;
    pthread_mutex_unlock(&lock);
    return out;
}
