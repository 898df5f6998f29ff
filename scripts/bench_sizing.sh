#!/usr/bin/env bash
# make bench-sizing: the figures of the sizing table in docs/OPERATIONS.md, measured on this
# machine with the embedded broker. For the province today (the generated registry's 7,588
# boards, a year of SIZING_EVENTS events) and for ten times that (75,880 boards, ten times the
# events), it runs keng-simulate into keng-broker, then keng-aggregate over the whole year, and
# reports keng-aggregate's peak RSS and CPU seconds, its state dir, and the bytes the input
# topics' messages take (key and value, as a broker stores them before its own overhead).
# Prints a table and writes it to BUILD_DIR/sizing-results.md.
#
# With SIZING_KAFKA=1 it also writes the year of the province today into Apache Kafka (one
# node of scripts/kafka-cluster.sh, replication 1) and reports the input topics' log dirs on
# disk, index files and Kafka's record overhead included: one replica's bytes per event.
#
# Environment: SIZING_EVENTS (a year of the province today, default 100000: about seven times
# the seed report's rate, for late reports, resends and growth), SIZING_KAFKA.
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
events=${SIZING_EVENTS:-100000}
work=$(mktemp -d /tmp/keng-sizing.XXXXXX)
results="$build/sizing-results.md"
pids=()

cleanup() {
    stop_all TERM
    if [[ -d "$work/kafka" ]]; then "$(dirname "$0")/kafka-cluster.sh" down "$work/kafka" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"
say() { printf '%s\n' "$*" | tee -a "$results"; }

# The generated registry, each board repeated $2 times under ids of its own (BOARD.k).
registry_times() {
    "$bin/keng-registry" --write - | awk -F, -v OFS=, -v n="$2" '
        NR == 1 { print; next }
        { for (k = 0; k < n; k++) { b = $1; if (k > 0) $1 = b "." k; print; $1 = b } }' >"$1"
}

# Bytes of keys and values in both input topics of brokers $1.
input_bytes() {
    local t total=0 n
    for t in antt.incidents antt.mediations; do
        n=$(kcat -C -b "$1" -t "$t" -o beginning -e -q -f '%K%s' | wc -c)
        total=$((total + n))
    done
    echo "$total"
}

# VmHWM of pid $1 in KiB.
peak_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# User plus system CPU seconds of pid $1.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# One scale: $1 its name, $2 the board multiple, $3 the events of its year.
measure() {
    local name=$1 times=$2 n=$3 dir="$work/$1" port agg total counted bytes
    mkdir -p "$dir"
    registry_times "$dir/registry.csv" "$times"
    "$bin/keng-broker" --partitions 24 --bootstrap-file "$dir/bootstrap" \
        >/dev/null 2>"$dir/broker.log" &
    local broker=$!
    pids+=("$broker")
    for ((i = 0; i < 100; i++)); do [[ -s "$dir/bootstrap" ]] && break; sleep 0.1; done
    local brokers
    brokers=$(cat "$dir/bootstrap")
    # A year, backfilled: from a year before --now to --now.
    "$bin/keng-simulate" --brokers "$brokers" --registry "$dir/registry.csv" --count "$n" \
        --rate 0 --seed 1 --now 2026-07-01T00:00:00+07:00 \
        --start-time 2025-07-01T00:00:00+07:00 2>"$dir/simulate.log"
    total=$(input_events "$brokers")
    bytes=$(input_bytes "$brokers")
    printf 'topic.board_counts=\nevents.min_occurred_at=2025-01-01T00:00:00Z\n' >"$dir/aggregate.conf"
    port=$(free_port)
    KENG_BROKERS=$brokers "$bin/keng-aggregate" --listen "127.0.0.1:$port" \
        --state-dir "$dir/state" --registry "$dir/registry.csv" --group "sizing-$name" \
        --config "$dir/aggregate.conf" 2>"$dir/aggregate.log" &
    agg=$!
    pids+=("$agg")
    for ((k = 0; k < 30000; k++)); do
        counted=$(counted_events "$port")
        [[ "$counted" -ge "$total" ]] && break
        sleep 0.02
    done
    # Past a checkpoint (checkpoint.interval.ms is 1 s), then measured while it runs.
    sleep 3
    local rss cpu state
    rss=$(peak_kib "$agg")
    cpu=$(cpu_s "$agg")
    state=$(du -sk "$dir/state" | cut -f1)
    kill -TERM "$agg" "$broker"
    wait "$agg" "$broker" 2>/dev/null || true
    say "| $name | $((7588 * times)) | $total | $(awk -v b="$bytes" -v n="$total" 'BEGIN {printf "%.0f", b / n}') | $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') | $(awk -v k="$rss" 'BEGIN {printf "%.0f", k / 1024}') | $cpu | $(awk -v k="$state" 'BEGIN {printf "%.1f", k / 1024}') |"
}

: >"$results"
say "# keng sizing ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, embedded broker)"
say ""
say "| scale | boards | events in a year | bytes per event (key + value) | input topics, MiB (one copy) | keng-aggregate peak RSS, MiB | keng-aggregate CPU, s | state dir, MiB |"
say "|---|---|---|---|---|---|---|---|"
measure today 1 "$events"
measure "ten times" 10 $((events * 10))

if [[ "${SIZING_KAFKA:-0}" == 1 ]]; then
    src=$(readlink -f "$(dirname "$0")/..")
    "$src/scripts/kafka-cluster.sh" up "$work/kafka" 1 2>"$work/cluster.log"
    KENG_BOOTSTRAP=$(<"$work/kafka/bootstrap") KAFKA_BIN="$work/kafka/kafka-home/bin" \
        KENG_REPLICATION=1 KENG_MIN_INSYNC=1 "$src/deploy/create-topics.sh" \
        >"$work/create-topics.log" 2>&1
    brokers=$(<"$work/kafka/bootstrap")
    kafka_year() { # $1 the board multiple, $2 the events; prints the input topics' KiB after
        registry_times "$work/registry-kafka-$1.csv" "$1"
        "$bin/keng-simulate" --brokers "$brokers" --registry "$work/registry-kafka-$1.csv" \
            --count "$2" --rate 0 --seed 1 --now 2026-07-01T00:00:00+07:00 \
            --start-time 2025-07-01T00:00:00+07:00 2>>"$work/simulate-kafka.log"
        du -skc "$work"/kafka/node-1/data/antt.incidents-* \
            "$work"/kafka/node-1/data/antt.mediations-* | tail -1 | cut -f1
    }
    say ""
    say "Apache Kafka, one node, replication 1: the input topics' log dirs (segments and indexes, 48 partitions) after each year."
    say ""
    say "| scale | events | MiB on disk | bytes per event |"
    say "|---|---|---|---|"
    kib1=$(kafka_year 1 "$events")
    say "| today | $events | $(awk -v k="$kib1" 'BEGIN {printf "%.1f", k / 1024}') | $(awk -v k="$kib1" -v n="$events" 'BEGIN {printf "%.0f", k * 1024 / n}') |"
    kib10=$(($(kafka_year 10 $((events * 10))) - kib1))
    say "| ten times | $((events * 10)) | $(awk -v k="$kib10" 'BEGIN {printf "%.1f", k / 1024}') | $(awk -v k="$kib10" -v n="$((events * 10))" 'BEGIN {printf "%.0f", k * 1024 / n}') |"
    total=$(input_events "$brokers")
    say ""
    say "The topics hold $total events ($((events * 11)) written)."
fi
