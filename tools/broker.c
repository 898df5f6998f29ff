/* keng-broker: the embedded Kafka broker for development, demos and tests. It runs librdkafka's
 * mock cluster (a Kafka-protocol server inside librdkafka) in a process of its own, creates
 * keng's topics, and publishes the bootstrap list. Any Kafka client can use it. It keeps
 * everything in memory, never on disk.
 *
 * With --control, it reads fault-injection commands on stdin, one per line, so that tests
 * can take brokers down, move partition leaders, add latency or push request errors. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "log.h"
#include "program.h"

static volatile sig_atomic_t stop_requested = 0;

/* The topics keng-broker creates. */
static keng_config_keys_t broker_keys = {"topic.incidents",
                                         "topic.mediations",
                                         "topic.alerts",
                                         "topic.deadletter",
                                         "topic.board_counts",
                                         "topic.registry",
                                         NULL};
static const char *const *const config_tables[] = {keng_config_common_keys, broker_keys, NULL};

struct options {
    const char *config_path;
    const char *bootstrap_file;
    int partitions;
    int brokers;
    int control;
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: keng-broker [options]\n"
                 "\n"
                 "Runs the embedded Kafka broker (in memory) with keng's topics, prints its\n"
                 "bootstrap list on stdout, and serves until SIGINT or SIGTERM.\n"
                 "\n"
                 "Options:\n"
                 "  --partitions N         partitions per topic (default 4; antt.registry has 1)\n"
                 "  --broker-count N       brokers in the cluster (default 1; 3 for leader moves)\n"
                 "  --bootstrap-file FILE  also write the bootstrap list to FILE\n"
                 "  --config FILE          key=value config (topic.incidents, topic.mediations,\n"
                 "                         topic.alerts, topic.deadletter, topic.board_counts,\n"
                 "                         topic.registry name the topics)\n"
                 "  --control              read fault commands on stdin, one per line:\n"
                 "                           down BROKER | up BROKER | rtt BROKER MS\n"
                 "                           leader TOPIC PARTITION BROKER\n"
                 "                           errors APIKEY COUNT ERRCODE   (e.g. errors 0 5 7)\n"
                 "                           clear APIKEY\n"
                 "                         each answered with 'ok' or 'error: ...' on stdout\n"
                 "  --help, --version\n"
                 "\n"
                 "The mock cluster keeps only the newest 5 MiB or 100,000 message sets per\n"
                 "partition and answers offsetsForTimes with -1; production uses Apache Kafka.\n");
}

static const keng_program_t program = {"keng-broker", KENG_PROGRAM_RDKAFKA, usage, config_tables,
                                       0};

/* Writes the list to path.tmp and renames it, so that a reader never sees half a line. */
static int write_bootstrap_file(const char *path, const char *bootstraps)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    if (fprintf(f, "%s\n", bootstraps) < 0 || fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

static void run_command(rd_kafka_mock_cluster_t *mcluster, char *line)
{
    char *argv[8];
    int argc = 0;
    char *save = NULL;

    for (char *tok = strtok_r(line, " \t\r\n", &save); tok && argc < 8;
         tok = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = tok;
    if (argc == 0)
        return;

    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (strcmp(argv[0], "down") == 0 && argc == 2) {
        err = rd_kafka_mock_broker_set_down(mcluster, atoi(argv[1]));
    } else if (strcmp(argv[0], "up") == 0 && argc == 2) {
        err = rd_kafka_mock_broker_set_up(mcluster, atoi(argv[1]));
    } else if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
        err = rd_kafka_mock_broker_set_rtt(mcluster, atoi(argv[1]), atoi(argv[2]));
    } else if (strcmp(argv[0], "leader") == 0 && argc == 4) {
        err = rd_kafka_mock_partition_set_leader(mcluster, argv[1], atoi(argv[2]), atoi(argv[3]));
    } else if (strcmp(argv[0], "errors") == 0 && argc == 4) {
        int count = atoi(argv[2]);
        rd_kafka_resp_err_t *errors = calloc((size_t)(count > 0 ? count : 1), sizeof(*errors));
        for (int i = 0; i < count; i++)
            errors[i] = (rd_kafka_resp_err_t)atoi(argv[3]);
        rd_kafka_mock_push_request_errors_array(mcluster, (int16_t)atoi(argv[1]),
                                                (size_t)(count > 0 ? count : 0), errors);
        free(errors);
    } else if (strcmp(argv[0], "clear") == 0 && argc == 2) {
        rd_kafka_mock_clear_request_errors(mcluster, (int16_t)atoi(argv[1]));
    } else {
        printf("error: unknown command '%s' or wrong number of arguments\n", argv[0]);
        fflush(stdout);
        return;
    }
    if (err)
        printf("error: %s\n", rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
    keng_log_info("fault command", "command=%s result=%s", argv[0],
                  err ? rd_kafka_err2str(err) : "ok");
}

static int run(const struct options *opt, keng_config_t *cfg)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mcluster = NULL;
    const char *topics[6];
    int rc = 1;

    topics[0] = keng_config_get(cfg, "topic.incidents", "antt.incidents");
    topics[1] = keng_config_get(cfg, "topic.mediations", "antt.mediations");
    topics[2] = keng_config_get(cfg, "topic.alerts", "antt.alerts");
    topics[3] = keng_config_get(cfg, "topic.deadletter", "antt.deadletter");
    /* keng-aggregate's shared counts: as many partitions as the input topics, since an input
     * partition's states go to the partition of the same number. Kafka compacts it
     * (cleanup.policy=compact); the mock cannot, which only makes it longer to read. */
    topics[4] = keng_config_get(cfg, "topic.board_counts", "antt.board-counts");
    /* The registry versions (keng-registry --publish): one partition, so that a reader sees
     * them in the order they were published. */
    topics[5] = keng_config_get(cfg, "topic.registry", "antt.registry");

    /* The cluster needs a client instance for its bookkeeping; it sends nothing. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        keng_log_error("cannot create the client for the mock cluster", "error=\"%s\"", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    mcluster = rd_kafka_mock_cluster_new(rk, opt->brokers);
    if (!mcluster) {
        keng_log_error("cannot start the mock cluster", NULL);
        goto out;
    }
    for (int i = 0; i < 6; i++) {
        int replication = opt->brokers < 3 ? opt->brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            mcluster, topics[i], i == 5 ? 1 : opt->partitions, replication);
        if (err) {
            keng_log_error("cannot create topic", "topic=%s error=\"%s\"", topics[i],
                           rd_kafka_err2str(err));
            goto out;
        }
    }

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
    if (opt->bootstrap_file && write_bootstrap_file(opt->bootstrap_file, bootstraps) != 0) {
        keng_log_error("cannot write the bootstrap file", "path=%s error=\"%s\"",
                       opt->bootstrap_file, strerror(errno));
        goto out;
    }
    printf("%s\n", bootstraps);
    fflush(stdout);
    keng_log_info("broker ready", "bootstrap=%s brokers=%d partitions=%d", bootstraps, opt->brokers,
                  opt->partitions);

    char line[512];
    size_t used = 0;
    while (!stop_requested) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        if (!opt->control) {
            pause();
            continue;
        }
        int n = poll(&pfd, 1, 200);
        if (n <= 0)
            continue;
        ssize_t got = read(STDIN_FILENO, line + used, sizeof(line) - 1 - used);
        if (got <= 0) {
            /* The controlling test went away: nothing more will come, keep serving. */
            if (got == 0)
                while (!stop_requested)
                    pause();
            continue;
        }
        used += (size_t)got;
        line[used] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            run_command(mcluster, line);
            size_t rest = used - (size_t)(nl + 1 - line);
            memmove(line, nl + 1, rest + 1);
            used = rest;
        }
        if (used == sizeof(line) - 1)
            used = 0; /* an over-long line: drop it */
    }
    keng_log_info("broker stopping", NULL);
    rc = 0;
out:
    if (opt->bootstrap_file)
        unlink(opt->bootstrap_file);
    if (mcluster)
        rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(rk);
    return rc;
}

static int take_partitions(const char *value, void *to)
{
    int n = atoi(value);
    if (n < 1 || n > 1000) {
        fprintf(stderr, "keng-broker: --partitions: '%s' is not 1..1000\n", value);
        return KENG_EXIT_USAGE;
    }
    *(int *)to = n;
    return 0;
}

static int take_broker_count(const char *value, void *to)
{
    int n = atoi(value);
    if (n < 1 || n > 10) {
        fprintf(stderr, "keng-broker: --broker-count: '%s' is not 1..10\n", value);
        return KENG_EXIT_USAGE;
    }
    *(int *)to = n;
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {.partitions = 4, .brokers = 1};
    const keng_program_flag_t table[] = {
        KENG_FLAG_TAKE("partitions", take_partitions, &opt.partitions),
        KENG_FLAG_TAKE("broker-count", take_broker_count, &opt.brokers),
        KENG_FLAG("bootstrap-file", &opt.bootstrap_file, NULL),
        KENG_FLAG("config", &opt.config_path, NULL),
        KENG_FLAG_SET("control", &opt.control),
        KENG_FLAGS_END,
    };

    keng_program_start(&program);
    int rc = keng_program_parse(&program, argc, argv, table, NULL);
    if (rc >= 0)
        return rc;
    keng_config_t *cfg = keng_program_config(&program, opt.config_path, NULL);
    if (!cfg)
        return KENG_EXIT_USAGE;
    keng_program_stop_on_signals(&stop_requested);
    signal(SIGPIPE, SIG_IGN);
    rc = run(&opt, cfg);
    keng_config_destroy(cfg);
    return rc;
}
