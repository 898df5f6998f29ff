#!/usr/bin/env bash
# make bench's real-Kafka column: the same measures as scripts/bench.sh, on Apache Kafka from
# scripts/kafka-cluster.sh instead of keng-broker. On one broker: keng-aggregate end to end
# against kcat reading the same preloaded topic, and keng-aggregate's restart to ready after
# SIGKILL. On three brokers: keng-ingest with acks=all on replication factor 3 against
# kcat -P of the same payloads (scripts/bench_ingest.sh with BENCH_BROKERS).
#
# Usage: scripts/bench_kafka.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (3), BENCH_KAFKA_EVENTS (events preloaded, default 1000000),
# BENCH_SKIP_INGEST=1 to leave out the 3-broker part.
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
events=${BENCH_KAFKA_EVENTS:-1000000}
partitions=24
work=$(mktemp -d /tmp/keng-bench-kafka.XXXXXX)
pids=()
cluster="$work/kafka"

cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "$src/scripts/kafka-cluster.sh" down "$cluster" || true
    rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now() { date +%s.%N; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a cluster of $1 nodes and creates keng's topics with replication $2.
cluster_up() {
    local nodes=$1 replication=$2
    "$src/scripts/kafka-cluster.sh" up "$cluster" "$nodes" 2>"$work/cluster.log"
    KENG_BOOTSTRAP=$(<"$cluster/bootstrap") KAFKA_BIN="$cluster/kafka-home/bin" \
        KENG_PARTITIONS=$partitions KENG_REPLICATION=$replication \
        KENG_MIN_INSYNC=$((replication < 2 ? 1 : 2)) \
        "$src/deploy/create-topics.sh" >"$work/create-topics.log" 2>&1
}

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$src/scripts/kafka/pom.xml")
echo "# Real Apache Kafka $version (scripts/kafka-cluster.sh, $(nproc) cores, median of $runs runs)"

# 1. End to end on one broker, topic preloaded.
cluster_up 1 1
brokers=$(<"$cluster/bootstrap")
KENG_BROKERS=$brokers "$bin/keng-simulate" --count "$events" --rate 0 --seed 1 2>"$work/simulate.log"
total=0
for t in antt.incidents antt.mediations; do
    n=$(kcat -C -b "$brokers" -t "$t" -o beginning -e -q -f 'x\n' | wc -l)
    total=$((total + n))
done
echo
echo "Preloaded $total events over $partitions partitions of each input topic, one broker."

kcat_times=()
for ((i = 0; i < runs; i++)); do
    t0=$(now)
    for t in antt.incidents antt.mediations; do
        kcat -C -b "$brokers" -t "$t" -o beginning -e -q >/dev/null
    done
    kcat_times+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
done
kcat_s=$(printf '%s\n' "${kcat_times[@]}" | median)

# One instance on its own, as in bench.sh: no state shared through antt.board-counts.
printf 'topic.board_counts=\n' >"$work/aggregate.conf"
agg_times=()
for ((i = 0; i < runs; i++)); do
    port=$(free_port)
    "$bin/keng-aggregate" --brokers "$brokers" --listen "127.0.0.1:$port" \
        --state-dir "$work/state-$i" --group "bench-$i-$RANDOM" --config "$work/aggregate.conf" \
        2>"$work/aggregate-$i.log" &
    agg=$!
    pids+=("$agg")
    t0=""
    c0=0
    for ((k = 0; k < 6000; k++)); do
        counted=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null |
            awk '/^keng_events_counted_total/ {print $2}')
        counted=${counted:-0}
        if [[ -z "$t0" && "$counted" != "0" ]]; then
            t0=$(now)
            c0=$counted
        fi
        if [[ "$counted" -ge "$total" ]]; then break; fi
        sleep 0.02
    done
    t1=$(now)
    kill -TERM "$agg"
    wait "$agg" || true
    agg_times+=("$(awk -v a="$t0" -v b="$t1" -v n="$total" -v c="$c0" 'BEGIN {print (b - a) * n / (n - c)}')")
done
agg_s=$(printf '%s\n' "${agg_times[@]}" | median)
echo
echo "| end to end from one Kafka broker | seconds | events/s |"
echo "|---|---|---|"
echo "| kcat -C -e -q -o beginning (raw read) | $(printf '%.2f' "$kcat_s") | $(awk -v n="$total" -v s="$kcat_s" 'BEGIN {printf "%.0f", n / s}') |"
echo "| keng-aggregate (decode, dedup, count, checkpoint) | $(printf '%.2f' "$agg_s") | $(awk -v n="$total" -v s="$agg_s" 'BEGIN {printf "%.0f", n / s}') |"
echo "| ratio keng / kcat (target >= 0.9) | $(awk -v a="$agg_s" -v k="$kcat_s" 'BEGIN {printf "%.2f", k / a}') | |"

# 2. Restart to ready after SIGKILL: an instance that has counted everything and checkpointed
# is killed, and a new one on the same state and group starts at once. It is ready when
# /readyz answers 200 (its partitions assigned and caught up).
port=$(free_port)
start_restart_instance() {
    "$bin/keng-aggregate" --brokers "$brokers" --listen "127.0.0.1:$port" \
        --state-dir "$work/state-restart" --group bench-restart --config "$work/aggregate.conf" \
        2>>"$work/aggregate-restart.log" &
    agg=$!
    pids+=("$agg")
}
wait_ready() {
    for ((k = 0; k < 30000; k++)); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    return 1
}
start_restart_instance
wait_ready
sleep 2 # a checkpoint (checkpoint.interval.ms, 1 s) after catching up
restart=()
for ((i = 0; i < runs; i++)); do
    kill -KILL "$agg"
    wait "$agg" 2>/dev/null || true
    t0=$(now)
    start_restart_instance
    wait_ready
    restart+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
    sleep 2
done
kill -TERM "$agg"
wait "$agg" || true
echo
echo "| restart to ready after SIGKILL, checkpoint of $total events, same group | $(printf '%s\n' "${restart[@]}" | median | xargs printf '%.2f') s (runs: $(printf '%.1f ' "${restart[@]}")) |"
echo "|---|---|"
"$src/scripts/kafka-cluster.sh" down "$cluster"

# 3. keng-ingest with acks=all on replication factor 3 (min.insync.replicas 2), three brokers.
if [[ -z "${BENCH_SKIP_INGEST:-}" ]]; then
    cluster_up 3 3
    echo
    BENCH_BROKERS=$(<"$cluster/bootstrap") \
        BENCH_BROKER_LABEL="3 Apache Kafka $version brokers, replication factor 3, min.insync.replicas 2" \
        "$src/scripts/bench_ingest.sh" "$build"
    "$src/scripts/kafka-cluster.sh" down "$cluster"
fi
