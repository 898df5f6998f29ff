#!/usr/bin/env bash
# Creates keng's six topics on an Apache Kafka cluster, or brings the settings of existing
# ones up to date. Safe to run again and again: docker-compose.yml runs it as the one-shot
# kafka-init service before keng starts, and an operator may run it against any cluster.
#
# It never changes the partition count of a topic that exists: a new count moves boards to
# other partitions, which breaks the order of a board's events and every keng-aggregate
# checkpoint. It says so and stops instead.
#
# Environment (defaults in brackets):
#   KENG_BOOTSTRAP         bootstrap servers [kafka-1:9092,kafka-2:9092,kafka-3:9092]
#   KENG_PARTITIONS        partitions of antt.incidents and antt.mediations [24]
#   KENG_SIDE_PARTITIONS   partitions of antt.alerts and antt.deadletter [6]
#   KENG_REPLICATION       replication factor [3]
#   KENG_MIN_INSYNC        min.insync.replicas [2]
#   KENG_RETENTION_MS      retention of antt.incidents and antt.mediations [34560000000, 400 days]
#   KENG_SIDE_RETENTION_MS retention of antt.alerts and antt.deadletter [34560000000]
#   KENG_TOPIC_INCIDENTS, KENG_TOPIC_MEDIATIONS, KENG_TOPIC_ALERTS, KENG_TOPIC_DEADLETTER,
#   KENG_TOPIC_BOARD_COUNTS, KENG_TOPIC_REGISTRY
#                          topic names [antt.incidents, antt.mediations, antt.alerts,
#                          antt.deadletter, antt.board-counts (compacted, with the input
#                          topics' partition count), antt.registry (the registry versions:
#                          compacted, one partition, max.message.bytes=10485760)]
#   KAFKA_BIN              where kafka-topics.sh and kafka-configs.sh are [/opt/kafka/bin]
#   KENG_ADMIN_CONFIG      a client properties file for TLS/SASL clusters (--command-config)
#   KENG_WAIT_SECONDS      how long to wait for the cluster to answer [120]
set -euo pipefail

bootstrap=${KENG_BOOTSTRAP:-kafka-1:9092,kafka-2:9092,kafka-3:9092}
partitions=${KENG_PARTITIONS:-24}
side_partitions=${KENG_SIDE_PARTITIONS:-6}
replication=${KENG_REPLICATION:-3}
min_insync=${KENG_MIN_INSYNC:-2}
retention_ms=${KENG_RETENTION_MS:-34560000000}
side_retention_ms=${KENG_SIDE_RETENTION_MS:-34560000000}
kafka_bin=${KAFKA_BIN:-/opt/kafka/bin}
wait_seconds=${KENG_WAIT_SECONDS:-120}

admin=()
if [[ -n "${KENG_ADMIN_CONFIG:-}" ]]; then
    admin=(--command-config "$KENG_ADMIN_CONFIG")
fi

say() { echo "create-topics: $*" >&2; }

topics() { "$kafka_bin/kafka-topics.sh" --bootstrap-server "$bootstrap" "${admin[@]}" "$@"; }

# The brokers answer the health check before they all agree on the metadata; wait until a
# topic listing works rather than fail the first attempt.
deadline=$((SECONDS + wait_seconds))
until topics --list >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        say "no answer from $bootstrap within ${wait_seconds}s"
        exit 1
    fi
    sleep 2
done

if ((min_insync > replication)); then
    say "min.insync.replicas ($min_insync) is above the replication factor ($replication):" \
        "no write could ever be acknowledged"
    exit 1
fi

# The partition count of an existing topic, or nothing when it does not exist.
partition_count() {
    local out
    out=$(topics --describe --topic "$1" 2>/dev/null) || return 0
    sed -n '/PartitionCount:/{s/.*PartitionCount:[[:space:]]*\([0-9][0-9]*\).*/\1/p;q;}' <<<"$out"
}

ensure_topic() { # name partitions retention_ms [cleanup_policy [more settings: a=1,b=2]]
    local name=$1 want=$2 retention=$3 policy=${4:-delete} more=${5:-} have
    local settings="retention.ms=$retention,min.insync.replicas=$min_insync,cleanup.policy=$policy"
    local more_configs=() more_args=() setting
    if [[ -n "$more" ]]; then
        settings="$settings,$more"
        IFS=, read -r -a more_configs <<<"$more"
        for setting in "${more_configs[@]}"; do
            more_args+=(--config "$setting")
        done
    fi

    have=$(partition_count "$name")
    if [[ -z "$have" ]]; then
        say "creating $name: $want partitions, replication $replication, $settings"
        topics --create --if-not-exists --topic "$name" --partitions "$want" \
            --replication-factor "$replication" \
            --config "retention.ms=$retention" \
            --config "min.insync.replicas=$min_insync" \
            --config "cleanup.policy=$policy" "${more_args[@]}"
        # The broker that answers may not have the new topic's metadata yet: ask again for a
        # while before calling it a failure.
        for ((try = 0; try < 15; try++)); do
            have=$(partition_count "$name")
            [[ "$have" == "$want" ]] && break
            sleep 1
        done
        if [[ "$have" != "$want" ]]; then
            say "$name was not created as asked: it has '${have:-no}' partitions, not $want"
            exit 1
        fi
        return
    fi
    if [[ "$have" != "$want" ]]; then
        say "$name exists with $have partitions, not $want. keng does not change a partition" \
            "count (boards would move partitions); see docs/OPERATIONS.md, 'Partitions'"
        exit 1
    fi
    say "$name exists with $have partitions; setting $settings"
    "$kafka_bin/kafka-configs.sh" --bootstrap-server "$bootstrap" "${admin[@]}" --alter \
        --entity-type topics --entity-name "$name" --add-config "$settings"
}

ensure_topic "${KENG_TOPIC_INCIDENTS:-antt.incidents}" "$partitions" "$retention_ms"
ensure_topic "${KENG_TOPIC_MEDIATIONS:-antt.mediations}" "$partitions" "$retention_ms"
ensure_topic "${KENG_TOPIC_ALERTS:-antt.alerts}" "$side_partitions" "$side_retention_ms"
ensure_topic "${KENG_TOPIC_DEADLETTER:-antt.deadletter}" "$side_partitions" "$side_retention_ms"
# keng-aggregate instances share per-board state here (docs/SCALE_OUT.md): compacted, so the
# newest state of every board stays forever, with the input topics' partition count.
ensure_topic "${KENG_TOPIC_BOARD_COUNTS:-antt.board-counts}" "$partitions" -1 compact
# The board registry's versions (keng-registry --publish; docs/DESIGN.md, "The topic
# antt.registry"): one partition, so that readers see them in the order published;
# compacted, so the newest version of each effective time stays for ever; room for a whole
# registry (the producer compresses, so a batch stays far under it); and a replaced version
# left readable for a day before compaction may drop it.
ensure_topic "${KENG_TOPIC_REGISTRY:-antt.registry}" 1 -1 compact \
    max.message.bytes=10485760,min.compaction.lag.ms=86400000
say "done"
