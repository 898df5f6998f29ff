#!/usr/bin/env bash
# make bench's real-Kafka column: the same measures as scripts/bench.sh, on Apache Kafka from
# scripts/kafka-cluster.sh instead of keng-broker. On one broker: keng-aggregate end to end
# and keng-replay over a period holding every event (scripts/bench_replay.sh with
# KENG_BROKERS), each against kcat reading the same preloaded topics; keng-aggregate's restart
# to ready after SIGKILL with static membership; and keng-replay for a period in the middle
# of 300 days of events produced with their report times as message timestamps, where it
# seeks by time (offsetsForTimes) and reads only part of the topics. On three brokers:
# keng-ingest with acks=all on replication factor 3 against kcat -P of the same payloads
# (scripts/bench_ingest.sh with BENCH_BROKERS).
#
# Usage: scripts/bench_kafka.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (3), BENCH_KAFKA_EVENTS (events preloaded, default 1000000),
# BENCH_KAFKA_DATED_EVENTS (events over 300 days for the seek by time, default 100000),
# BENCH_SKIP_INGEST=1 to leave out the 3-broker part.
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
events=${BENCH_KAFKA_EVENTS:-1000000}
dated_events=${BENCH_KAFKA_DATED_EVENTS:-100000}
partitions=24
work=$(mktemp -d /tmp/keng-bench-kafka.XXXXXX)
pids=()
cluster="$work/kafka"

cleanup() {
    stop_all KILL
    "$src/scripts/kafka-cluster.sh" down "$cluster" || true
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"

# Creates keng's topics with replication $1 on the running cluster; KENG_TOPIC_* in the
# environment name other ones.
create_topics() {
    local replication=$1
    KENG_BOOTSTRAP=$(<"$cluster/bootstrap") KAFKA_BIN="$cluster/kafka-home/bin" \
        KENG_PARTITIONS=$partitions KENG_REPLICATION=$replication \
        KENG_MIN_INSYNC=$((replication < 2 ? 1 : 2)) \
        "$src/deploy/create-topics.sh" >>"$work/create-topics.log" 2>&1
}

# Starts a cluster of $1 nodes and creates keng's topics with replication $2.
cluster_up() {
    "$src/scripts/kafka-cluster.sh" up "$cluster" "$1" 2>"$work/cluster.log"
    create_topics "$2"
}

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$src/scripts/kafka/pom.xml")
echo "# Real Apache Kafka $version (scripts/kafka-cluster.sh, $(nproc) cores, median of $runs runs)"

# 1. End to end on one broker, topic preloaded.
cluster_up 1 1
brokers=$(<"$cluster/bootstrap")
KENG_BROKERS=$brokers "$bin/keng-simulate" --count "$events" --rate 0 --seed 1 2>"$work/simulate.log"
total=$(input_events "$brokers")
echo
echo "Preloaded $total events over $partitions partitions of each input topic, one broker."

kcat_s=$(kcat_read_median "$brokers" "$runs")

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
        counted=$(counted_events "$port")
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

# 2. keng-replay over a period holding every preloaded event, against kcat.
echo
KENG_BROKERS=$brokers BENCH_RUNS=$runs BENCH_REPLAY_LABEL="one Kafka broker" \
    "$src/scripts/bench_replay.sh" "$build"

# 3. Restart to ready after SIGKILL: an instance that has counted everything and checkpointed
# is killed, and a new one on the same state and group starts at once. It is ready when
# /readyz answers 200 (its partitions assigned and caught up). group.instance.id is left at
# its default (auto: made once and kept in the state dir), so the new instance rejoins as the
# same static member and takes its partitions back without waiting for the session timeout:
# what operators get.
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
made=$(grep -c 'new consumer group instance id kept in the state dir' "$work/aggregate-restart.log" || true)
if [[ "$made" != 1 ]]; then
    echo "bench_kafka: the restarts made $made group.instance.ids, not 1: not static membership" >&2
    exit 1
fi
echo
echo "| restart to ready after SIGKILL, checkpoint of $total events, same state dir and static member id | $(printf '%s\n' "${restart[@]}" | median | xargs printf '%.2f') s (runs: $(printf '%.1f ' "${restart[@]}")) |"
echo "|---|---|"

# 4. Seek by time: events over 300 days, each produced with its report time as the message
# timestamp (as a gateway sending them then would have), on topics of their own. keng-replay
# for 60 days in the middle looks its start offsets up by time and reads only from there;
# over all 300 days it reads everything.
KENG_TOPIC_INCIDENTS=dated.incidents KENG_TOPIC_MEDIATIONS=dated.mediations create_topics 1
printf 'topic.incidents=dated.incidents\ntopic.mediations=dated.mediations\n' >"$work/dated.conf"
all=$(KENG_BIN_DIR=$bin PYTHONPATH="$src/tests/support" /usr/bin/python3 - "$brokers" \
    "$dated_events" 2>"$work/dated.log" <<'EOF'
import random, sys, time
import kafkalib as kl
rows, _ = kl.fl.registry()
boards = [r["board_id"] for r in rows]
count = int(sys.argv[2])
_, records = kl.reports_over_days(random.Random(1), boards, count, count // 40,
                                  int(time.time() * 1000), 300)
records = [("dated." + t.split(".")[1], k, v, ts) for t, k, v, ts in records]
records.sort(key=lambda r: r[3])  # as a stream: in the order the reports came in
kl.produce_with_times(sys.argv[1], records)
print(len(records))
EOF
)
day() { TZ=Asia/Ho_Chi_Minh date -d "$1" +%F; }
# Replays the dated topics from $2 to $3 into dated-$1 and prints the seconds it took.
dated_replay() {
    local t0
    t0=$(now)
    KENG_BROKERS=$brokers "$bin/keng-replay" --config "$work/dated.conf" --from "$2" --to "$3" \
        --out "$work/dated-$1" >/dev/null 2>"$work/dated-$1.log"
    elapsed "$t0"
}
middle_t=() whole_t=()
for ((i = 0; i < runs; i++)); do
    middle_t+=("$(dated_replay middle "$(day '200 days ago')" "$(day '140 days ago')")")
    whole_t+=("$(dated_replay whole "$(day '301 days ago')" "$(day tomorrow)")")
done
# $2=N from the log line $1 of the replay named $3.
figure() { sed -n "s/.*$1.* $2=\([0-9]*\).*/\1/p" "$work/dated-$3.log"; }
# One row: its label, the replay's name, then its times.
dated_row() {
    local label=$1 name=$2
    shift 2
    echo "| $label | $(figure 'review written' messages "$name") of $all | $(printf '%s\n' "$@" | median | xargs printf '%.2f') | $(figure 'replay starting' sought_by_time "$name") of $((2 * partitions)) |"
}
echo
echo "| keng-replay seeking by time (offsetsForTimes), $all messages over 300 days | messages read | seconds | partitions sought by time |"
echo "|---|---|---|---|"
dated_row "60 days in the middle" middle "${middle_t[@]}"
dated_row "all 300 days" whole "${whole_t[@]}"
"$src/scripts/kafka-cluster.sh" down "$cluster"

# 5. keng-ingest with acks=all on replication factor 3 (min.insync.replicas 2), three brokers.
if [[ -z "${BENCH_SKIP_INGEST:-}" ]]; then
    cluster_up 3 3
    echo
    BENCH_BROKERS=$(<"$cluster/bootstrap") \
        BENCH_BROKER_LABEL="3 Apache Kafka $version brokers, replication factor 3, min.insync.replicas 2" \
        "$src/scripts/bench_ingest.sh" "$build"
    "$src/scripts/kafka-cluster.sh" down "$cluster"
fi
