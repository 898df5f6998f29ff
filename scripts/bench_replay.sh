#!/usr/bin/env bash
# keng-replay's benchmark: the annual review's replay of a preloaded topic against kcat reading
# the same messages raw, run interleaved BENCH_RUNS times (default 5), printing the medians and
# the median of the per-run ratios (kcat seconds / keng-replay seconds).
#
# Usage: scripts/bench_replay.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (5), BENCH_EVENTS (1000000; the embedded broker keeps 5 MiB per
# partition, so the topics have 24 partitions), BENCH_REPLAY_OTHER=/path/to/keng-replay to
# time a second build in the same interleaved runs (an A/B comparison), KENG_BROKERS to use
# a running cluster whose topics already hold the events instead of starting keng-broker,
# BENCH_REPLAY_LABEL (what the heading says the broker is; default the embedded broker).
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
runs=${BENCH_RUNS:-5}
events=${BENCH_EVENTS:-1000000}
other=${BENCH_REPLAY_OTHER:-}
label=${BENCH_REPLAY_LABEL:-the embedded broker}
work=$(mktemp -d /tmp/keng-bench-replay.XXXXXX)
pids=()

command -v kcat >/dev/null || { echo "bench_replay: kcat is not installed" >&2; exit 1; }

cleanup() {
    stop_all TERM
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"

if [[ -z "${KENG_BROKERS:-}" ]]; then
    "$bin/keng-broker" --partitions 24 --bootstrap-file "$work/bootstrap" \
        >/dev/null 2>"$work/broker.log" &
    pids+=($!)
    for ((i = 0; i < 100; i++)); do [[ -s "$work/bootstrap" ]] && break; sleep 0.1; done
    KENG_BROKERS=$(cat "$work/bootstrap")
    export KENG_BROKERS
    "$bin/keng-simulate" --count "$events" --rate 0 --seed 1 2>"$work/simulate.log"
fi

# The simulator's events cover the last 24 hours; the period takes in all of them.
from=$(date -u -d '2 days ago' +%F)
to=$(date -u -d 'tomorrow + 1 day' +%F)
replay() {
    local exe=$1 out=$2
    "$exe" --from "$from" --to "$to" --out "$out" >/dev/null 2>"$out.log"
}

kcat_t=() keng_t=() other_t=() ratio=() other_ratio=()
for ((i = 0; i < runs; i++)); do
    k=$(kcat_read_median "$KENG_BROKERS" 1)
    t0=$(now)
    replay "$bin/keng-replay" "$work/review-$i"
    r=$(elapsed "$t0")
    kcat_t+=("$k") keng_t+=("$r")
    ratio+=("$(awk -v k="$k" -v r="$r" 'BEGIN {print k / r}')")
    if [[ -n "$other" ]]; then
        t0=$(now)
        replay "$other" "$work/other-$i"
        o=$(elapsed "$t0")
        other_t+=("$o")
        other_ratio+=("$(awk -v k="$k" -v r="$o" 'BEGIN {print k / r}')")
        cmp -s "$work/review-$i/review.json" "$work/other-$i/review.json" ||
            echo "bench_replay: run $i: the two builds' reviews differ" >&2
    fi
done
read_n=$(sed -n 's/.*review written.* messages=\([0-9]*\).*/\1/p' "$work/review-0.log")

echo "| keng-replay on $label, $read_n messages | seconds | events/s | ratio kcat / keng (median of runs) |"
echo "|---|---|---|---|"
k=$(printf '%s\n' "${kcat_t[@]}" | median)
echo "| kcat -C -e -q -o beginning (raw read) | $(printf '%.2f' "$k") | $(awk -v n="$read_n" -v s="$k" 'BEGIN {printf "%.0f", n / s}') | |"
r=$(printf '%s\n' "${keng_t[@]}" | median)
echo "| keng-replay (decode, dedup, tally, report) | $(printf '%.2f' "$r") | $(awk -v n="$read_n" -v s="$r" 'BEGIN {printf "%.0f", n / s}') | $(printf '%s\n' "${ratio[@]}" | median | xargs printf '%.2f') (target >= 0.9) |"
if [[ -n "$other" ]]; then
    o=$(printf '%s\n' "${other_t[@]}" | median)
    echo "| $other | $(printf '%.2f' "$o") | $(awk -v n="$read_n" -v s="$o" 'BEGIN {printf "%.0f", n / s}') | $(printf '%s\n' "${other_ratio[@]}" | median | xargs printf '%.2f') |"
fi
echo "ratios per run: ${ratio[*]}${other:+ / other: ${other_ratio[*]}}"
