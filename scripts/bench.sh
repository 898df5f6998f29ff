#!/usr/bin/env bash
# make bench: keng's speed and memory targets, measured side by side in one run, as medians
# of several runs. Prints a table and writes it to BUILD_DIR/bench-results.md.
#
# Environment: BENCH_RUNS (default 3), BENCH_EVENTS (events preloaded for the end-to-end
# runs, default 1000000; the embedded broker keeps at most 5 MiB per partition, so the
# topic has 24 partitions), BENCH_SKIP_PYTHON=1 to skip the slow Python baseline,
# BENCH_SKIP_KAFKA=1 to skip the real-Kafka column (scripts/bench_kafka.sh).
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
events=${BENCH_EVENTS:-1000000}
partitions=24
work=$(mktemp -d /tmp/keng-bench.XXXXXX)
results="$build/bench-results.md"
pids=()

cleanup() {
    stop_all TERM
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"
say() { printf '%s\n' "$*" | tee -a "$results"; }

: >"$results"
say "# keng benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, median of $runs runs)"
say ""

# 1. Decode and aggregate in one process, from pre-encoded messages.
rates=()
for ((i = 0; i < runs; i++)); do
    rates+=("$("$bin/keng-bench-codec" | sed -n 's/.*= \([0-9.]*\) events\/s.*/\1/p' | head -1)")
done
codec=$(printf '%s\n' "${rates[@]}" | median)
rates=()
rss=""
switches=()
for ((i = 0; i < runs; i++)); do
    out=$("$bin/keng-bench-aggregate")
    rates+=("$(echo "$out" | sed -n 's/^aggregate:.*= \([0-9.]*\) events\/s.*/\1/p' | head -1)")
    rss=$(echo "$out" | sed -n 's/.*peak RSS[^0-9]*\([0-9.]*\) *MiB.*/\1/p' | head -1)
    switches+=("$(echo "$out" | sed -n 's/^registry switch:.*: \([0-9.]*\) ms in all.*/\1/p')")
done
aggregate=$(printf '%s\n' "${rates[@]}" | median)
switch_ms=$(printf '%s\n' "${switches[@]}" | median)
rates=()
for ((i = 0; i < runs; i++)); do
    rates+=("$("$bin/keng-bench-consume" | sed -n 's/^consume:.*= \([0-9.]*\) events\/s.*/\1/p')")
done
combined=$(printf '%s\n' "${rates[@]}" | median)

say "| measure | result | target |"
say "|---|---|---|"
say "| decode (keng-bench-codec) | $(printf '%.0f' "$codec") events/s | |"
say "| aggregate (keng-bench-aggregate) | $(printf '%.0f' "$aggregate") events/s | |"
say "| decode + lookup + count in one loop, one core (keng-bench-consume) | $(printf '%.0f' "$combined") events/s | >= 1,000,000 |"
say "| peak RSS, full province, every window populated | ${rss:-?} MiB | < 64 MiB |"
say "| counting pause at a registry switch, 7,588 boards to 130 communes, full province | ${switch_ms:-?} ms | < 1,000 ms |"

# 2. End to end from keng-broker, topic preloaded.
"$bin/keng-broker" --partitions "$partitions" --bootstrap-file "$work/bootstrap" \
    >/dev/null 2>"$work/broker.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do [[ -s "$work/bootstrap" ]] && break; sleep 0.1; done
export KENG_BROKERS=$(cat "$work/bootstrap")
"$bin/keng-registry" --write "$work/registry.csv"
"$bin/keng-simulate" --count "$events" --rate 0 --seed 1 2>"$work/simulate.log"
total=$(input_events "$KENG_BROKERS")
say ""
say "Preloaded $total events over $partitions partitions of each input topic."

kcat_s=$(kcat_read_median "$KENG_BROKERS" "$runs")

# One instance on its own: no state shared through antt.board-counts, or a later run would
# start from the state an earlier one published and count nothing. The embedded broker makes
# a rebalance wait up to session.timeout.ms - 1 s, so restarts use a short one.
printf 'topic.board_counts=\nkafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n' \
    >"$work/aggregate.conf"
agg_times=()
for ((i = 0; i < runs; i++)); do
    port=$((20000 + RANDOM % 20000))
    "$bin/keng-aggregate" --listen "127.0.0.1:$port" --state-dir "$work/state-$i" \
        --group "bench-$i-$RANDOM" --config "$work/aggregate.conf" 2>"$work/aggregate-$i.log" &
    agg=$!
    pids+=($agg)
    t0=""
    for ((k = 0; k < 6000; k++)); do
        counted=$(counted_events "$port")
        if [[ -z "$t0" && "$counted" != "0" ]]; then t0=$(now); c0=$counted; fi
        if [[ "$counted" -ge "$total" ]]; then break; fi
        sleep 0.02
    done
    t1=$(now)
    kill -TERM "$agg"; wait "$agg" || true
    agg_times+=("$(awk -v a="$t0" -v b="$t1" -v n="$total" -v c="$c0" 'BEGIN {print (b - a) * n / (n - c)}')")
done
agg_s=$(printf '%s\n' "${agg_times[@]}" | median)
say ""
say "| end to end from keng-broker | seconds | events/s |"
say "|---|---|---|"
say "| kcat -C -e -q -o beginning (raw read) | $(printf '%.2f' "$kcat_s") | $(awk -v n="$total" -v s="$kcat_s" 'BEGIN {printf "%.0f", n / s}') |"
say "| keng-aggregate (decode, dedup, count, checkpoint) | $(printf '%.2f' "$agg_s") | $(awk -v n="$total" -v s="$agg_s" 'BEGIN {printf "%.0f", n / s}') |"
say "| ratio keng / kcat (target >= 0.9) | $(awk -v a="$agg_s" -v k="$kcat_s" 'BEGIN {printf "%.2f", k / a}') | |"

if [[ -z "${BENCH_SKIP_PYTHON:-}" ]]; then
    py=$(/usr/bin/python3 "$src/tools/bench/py_consumer.py" "$KENG_BROKERS" "$work/registry.csv" \
        antt.incidents antt.mediations | sed -n 's/.*= \([0-9.]*\) events\/s.*/\1/p')
    say "| Python consumer (confluent-kafka + avro), one run | $(awk -v n="$total" -v r="$py" 'BEGIN {printf "%.2f", n / r}') | $py |"
    say "| ratio keng / Python (target >= 50) | $(awk -v a="$agg_s" -v n="$total" -v r="$py" 'BEGIN {printf "%.1f", (n / a) / r}') | |"
fi

# 3. Restart: from start to ready with a checkpoint of every preloaded event.
port=$((20000 + RANDOM % 20000))
"$bin/keng-aggregate" --listen "127.0.0.1:$port" --state-dir "$work/state-restart" \
    --group bench-restart --config "$work/aggregate.conf" 2>"$work/aggregate-restart.log" &
agg=$!
pids+=($agg)
for ((k = 0; k < 12000; k++)); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.05
done
kill -TERM "$agg"; wait "$agg" || true
restart=()
for ((i = 0; i < runs; i++)); do
    t0=$(now)
    "$bin/keng-aggregate" --listen "127.0.0.1:$port" --state-dir "$work/state-restart" \
        --group bench-restart --config "$work/aggregate.conf" 2>>"$work/aggregate-restart.log" &
    agg=$!
    pids+=($agg)
    for ((k = 0; k < 12000; k++)); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.01
    done
    restart+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
    rss_agg=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$agg/status")
    kill -TERM "$agg"; wait "$agg" || true
done
say ""
say "| restart to ready, checkpoint of $total events | $(printf '%s\n' "${restart[@]}" | median | xargs printf '%.2f') s | peak RSS ${rss_agg} MiB |"

if [[ -x "$src/scripts/bench_ingest.sh" ]]; then
    say ""
    "$src/scripts/bench_ingest.sh" "$build" | tee -a "$results"
fi
if [[ -x "$src/scripts/bench_replay.sh" ]]; then
    say ""
    BENCH_RUNS=$runs BENCH_EVENTS=$events "$src/scripts/bench_replay.sh" "$build" | tee -a "$results"
fi
if [[ -x "$src/scripts/bench_tls.sh" ]]; then
    say ""
    BENCH_RUNS=$runs "$src/scripts/bench_tls.sh" "$build" | tee -a "$results"
fi
if [[ -x "$src/scripts/bench_hostile.py" ]]; then
    say ""
    BENCH_RUNS=$runs /usr/bin/python3 "$src/scripts/bench_hostile.py" "$build" | tee -a "$results"
fi
if [[ -z "${BENCH_SKIP_KAFKA:-}" ]]; then
    say ""
    "$src/scripts/bench_kafka.sh" "$build" | tee -a "$results"
fi
echo
echo "Written to $results"
