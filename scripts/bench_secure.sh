#!/usr/bin/env bash
# What TLS and SASL cost keng: two one-node clusters of scripts/kafka-cluster.sh side by side,
# one plaintext and one `up --secure` (SASL_SSL, SCRAM-SHA-512, the ACLs of
# deploy/create-acls.sh), and the same measures on each, run after run in turns so that the
# machine's load falls on both alike:
#   keng-ingest: wrk with 100 events per request (scripts/bench_ingest.lua), events/s and p99;
#   keng-aggregate end to end: a new instance and group counting BENCH_SECURE_EVENTS events
#   preloaded by keng-simulate, seconds from its first counted event to the last (scaled to
#   the whole preload, as bench_kafka.sh does), and from its start to the last (joining the
#   group and the TLS and SASL handshakes included);
#   the ceiling: kcat -C reading the same preload, on the secured cluster as keng-replay's user.
# Every run's figures follow the table.
# Each program logs in as its own user on the secured cluster (DIR/client-<user>.conf).
#
# Usage: scripts/bench_secure.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (3), BENCH_SECONDS (10 per wrk run), BENCH_CONNECTIONS (32),
# BENCH_SECURE_EVENTS (events preloaded, default 300000).
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-32}
events=${BENCH_SECURE_EVENTS:-300000}
partitions=24
work=$(mktemp -d /tmp/keng-bench-secure.XXXXXX)
pids=()

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"

cleanup() {
    stop_all KILL
    "$src/scripts/kafka-cluster.sh" down "$work/plain" || true
    "$src/scripts/kafka-cluster.sh" down "$work/secure" || true
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || {
    echo "bench_secure: wrk is not installed" >&2
    exit 1
}

groups=""
for ((i = 0; i < runs; i++)); do groups+="${groups:+ }bench-$i"; done

# The clusters and keng's topics (and on the secured one, the ACLs for the groups used here).
for kind in plain secure; do
    dir="$work/$kind"
    flags=()
    if [[ $kind == secure ]]; then flags=(--secure); fi
    "$src/scripts/kafka-cluster.sh" up "$dir" 1 "${flags[@]}" 2>>"$work/cluster.log"
    env=(KENG_BOOTSTRAP="$(<"$dir/bootstrap")" KAFKA_BIN="$dir/kafka-home/bin"
        KENG_PARTITIONS="$partitions" KENG_REPLICATION=1 KENG_MIN_INSYNC=1 KENG_GROUPS="$groups")
    if [[ $kind == secure ]]; then env+=(KENG_ADMIN_CONFIG="$dir/admin.properties"); fi
    env "${env[@]}" "$src/deploy/create-topics.sh" >>"$work/setup.log" 2>&1
    if [[ $kind == secure ]]; then
        env "${env[@]}" "$src/deploy/create-acls.sh" >>"$work/setup.log" 2>&1
    fi
    # The config of each program: its login on the secured cluster, nothing on the other.
    for user in keng-ingest keng-aggregate keng-replay; do
        if [[ $kind == secure ]]; then
            grep -v '^#' "$dir/client-$user.conf" >"$work/$kind-$user.conf"
        else
            echo "kafka.bootstrap.servers=$(<"$dir/bootstrap")" >"$work/$kind-$user.conf"
        fi
    done
    # The preload, as keng-ingest's user (it may write the input topics).
    "$bin/keng-simulate" --config "$work/$kind-keng-ingest.conf" --count "$events" --rate 0 \
        --seed 1 >/dev/null 2>>"$work/simulate.log"
    printf 'ingest.max_in_flight_events=200000\nhttp.max_connections=4096\n' \
        >>"$work/$kind-keng-ingest.conf"
    # One instance on its own, as in bench.sh: no state shared through antt.board-counts.
    echo "topic.board_counts=" >>"$work/$kind-keng-aggregate.conf"
done

"$bin/keng-registry" --write - | tail -n +2 | cut -d, -f1 >"$work/boards.txt"
token=$("$bin/keng-ingest" --new-token bench --districts '*' --tokens "$work/tokens" 2>/dev/null)

# One wrk run against a new keng-ingest on cluster $1: prints "events/s p99_ms".
run_wrk() {
    local kind=$1 port out line requests non2xx secs p99 ingest
    port=$(free_port)
    "$bin/keng-ingest" --listen "127.0.0.1:$port" --tokens "$work/tokens" \
        --config "$work/$kind-keng-ingest.conf" 2>>"$work/ingest-$kind.log" &
    ingest=$!
    pids+=("$ingest")
    for ((k = 0; k < 100; k++)); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    out=$(BENCH_BATCH=100 BENCH_TOKEN=$token BENCH_BOARDS="$work/boards.txt" BENCH_DELAY_MS=0 \
        wrk -t2 -c"$connections" -d"${seconds}s" --timeout 10s -s "$src/scripts/bench_ingest.lua" \
        "http://127.0.0.1:$port/v1/incidents")
    kill -TERM "$ingest"
    wait "$ingest" || true
    line=$(grep '^RESULT' <<<"$out")
    requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    non2xx=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$line")
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    if ((non2xx > 0)); then
        echo "bench_secure: $kind: $non2xx of $requests requests were not answered 202" >&2
    fi
    awk -v r="$requests" -v f="$non2xx" -v s="$secs" -v p="$p99" \
        'BEGIN {printf "%.0f %.2f\n", (r - f) * 100 / s, p}'
}

# A new keng-aggregate (group $2) on cluster $1: prints the seconds from its first counted
# event to the last of the preload, scaled to the whole preload as bench_kafka.sh does, and
# the seconds from its start to the last.
run_aggregate() {
    local kind=$1 group=$2 port agg t0="" c0=0 counted t1 started
    port=$(free_port)
    started=$(now)
    "$bin/keng-aggregate" --listen "127.0.0.1:$port" --state-dir "$work/state-$kind-$group" \
        --group "$group" --config "$work/$kind-keng-aggregate.conf" \
        2>>"$work/aggregate-$kind.log" &
    agg=$!
    pids+=("$agg")
    for ((k = 0; k < 15000; k++)); do
        counted=$(counted_events "$port")
        if [[ -z "$t0" && "$counted" != "0" ]]; then
            t0=$(now)
            c0=$counted
        fi
        if [[ "$counted" -ge "$events" ]]; then break; fi
        sleep 0.02
    done
    t1=$(now)
    kill -TERM "$agg"
    wait "$agg" || true
    if [[ "$counted" -lt "$events" ]]; then
        echo "bench_secure: $kind: keng-aggregate counted $counted of $events" >&2
        exit 1
    fi
    awk -v a="$t0" -v b="$t1" -v n="$events" -v c="$c0" -v s="$started" \
        'BEGIN {printf "%.3f %.3f\n", (b - a) * n / (n - c), b - s}'
}

# kcat reading both input topics to their end on cluster $1: prints the seconds. On the
# secured one it logs in as keng-replay (Read on the input topics, no group), with the keys of
# its client config turned into kcat's -X properties.
run_kcat() {
    local kind=$1 key value t0 args=()
    while IFS='=' read -r key value; do
        key=${key#kafka.}
        case $key in
        bootstrap.servers) args+=(-b "$value") ;;
        sasl.password_file) args+=(-X "sasl.password=$(<"$value")") ;;
        '') ;;
        *) args+=(-X "$key=$value") ;;
        esac
    done <"$work/$kind-keng-replay.conf"
    t0=$(now)
    for t in antt.incidents antt.mediations; do
        kcat -C "${args[@]}" -t "$t" -o beginning -e -q >/dev/null
    done
    elapsed "$t0"
}

for ((i = 0; i < runs; i++)); do
    for kind in plain secure; do
        run_wrk "$kind" >>"$work/ingest-$kind"
        run_aggregate "$kind" "bench-$i" >>"$work/aggregate-$kind"
        run_kcat "$kind" >>"$work/kcat-$kind"
    done
done

version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$src/scripts/kafka/pom.xml")
echo "# keng over SASL_SSL against plaintext: Apache Kafka $version, one broker each," \
    "$(nproc) cores, median of $runs runs in turns"
echo
echo "| measure | plaintext | SASL_SSL (SCRAM-SHA-512) | SASL_SSL / plaintext |"
echo "|---|---|---|---|"
row() { # label file column format
    local p s
    p=$(cut -d' ' -f"$3" "$work/$2-plain" | median)
    s=$(cut -d' ' -f"$3" "$work/$2-secure" | median)
    printf "| %s | $4 | $4 | %.2f |\n" "$1" "$p" "$s" "$(awk -v a="$s" -v b="$p" 'BEGIN {print a / b}')"
}
row "keng-ingest, 100 events per request: events/s" ingest 1 "%.0f"
row "keng-ingest, 100 events per request: p99 latency (ms)" ingest 2 "%.2f"
row "keng-aggregate end to end, $events events: seconds, first counted to last" aggregate 1 "%.2f"
row "keng-aggregate, $events events: seconds from start to the last" aggregate 2 "%.2f"
pa=$(cut -d' ' -f1 "$work/aggregate-plain" | median)
sa=$(cut -d' ' -f1 "$work/aggregate-secure" | median)
printf '| keng-aggregate end to end: events/s | %.0f | %.0f | %.2f |\n' \
    "$(awk -v n="$events" -v s="$pa" 'BEGIN {print n / s}')" \
    "$(awk -v n="$events" -v s="$sa" 'BEGIN {print n / s}')" \
    "$(awk -v a="$pa" -v b="$sa" 'BEGIN {print a / b}')"
pk=$(median <"$work/kcat-plain")
sk=$(median <"$work/kcat-secure")
printf '| kcat -C reading the preload (the ceiling): events/s | %.0f | %.0f | %.2f |\n' \
    "$(awk -v n="$events" -v s="$pk" 'BEGIN {print n / s}')" \
    "$(awk -v n="$events" -v s="$sk" 'BEGIN {print n / s}')" \
    "$(awk -v a="$pk" -v b="$sk" 'BEGIN {print a / b}')"
echo
for kind in plain secure; do
    echo "Runs, $kind: keng-ingest (events/s p99_ms) $(paste -sd, "$work/ingest-$kind");" \
        "keng-aggregate (first-to-last start-to-last s) $(paste -sd, "$work/aggregate-$kind");" \
        "kcat (s) $(paste -sd, "$work/kcat-$kind")"
done
