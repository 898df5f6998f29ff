#!/usr/bin/env bash
# keng-ingest's benchmark: wrk against a real keng-ingest in front of keng-broker, with
# batches of 100 events and with single events per request, BENCH_RUNS times each (default
# 3), printing the median events/s, requests/s, p99 latency and keng-ingest's peak RSS
# (VmHWM). The ceiling beside it: kcat producing the same Avro payloads (idempotent, acks=all)
# straight to the same broker.
#
# Usage: scripts/bench_ingest.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (3), BENCH_SECONDS (10 per run), BENCH_CONNECTIONS (32),
# BENCH_THREADS (2), BENCH_KCAT_EVENTS (100000), BENCH_BROKERS (a cluster with keng's topics
# to use instead of starting keng-broker; scripts/bench_kafka.sh sets it) and
# BENCH_BROKER_LABEL (how the heading names that cluster).
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
seconds=${BENCH_SECONDS:-10}
connections=${BENCH_CONNECTIONS:-32}
threads=${BENCH_THREADS:-2}
kcat_events=${BENCH_KCAT_EVENTS:-100000}
work=$(mktemp -d /tmp/keng-bench-ingest.XXXXXX)
pids=()
ingest_pid=""

for tool in wrk kcat; do
    command -v "$tool" >/dev/null || { echo "bench_ingest: $tool is not installed" >&2; exit 1; }
done

cleanup() {
    [[ -n "$ingest_pid" ]] && kill "$ingest_pid" 2>/dev/null || true
    stop_all TERM
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"

if [[ -n "${BENCH_BROKERS:-}" ]]; then
    brokers=$BENCH_BROKERS
else
    "$bin/keng-broker" --partitions 6 --bootstrap-file "$work/bootstrap" >/dev/null 2>"$work/broker.log" &
    pids+=($!)
    for ((i = 0; i < 100; i++)); do [[ -s "$work/bootstrap" ]] && break; sleep 0.1; done
    [[ -s "$work/bootstrap" ]] || { echo "bench_ingest: keng-broker did not start" >&2; exit 1; }
    brokers=$(cat "$work/bootstrap")
fi

"$bin/keng-registry" --write - | tail -n +2 | cut -d, -f1 >"$work/boards.txt"
token=$("$bin/keng-ingest" --new-token bench --districts '*' --tokens "$work/tokens" 2>/dev/null)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/ingest.conf" <<CONF
ingest.max_in_flight_events=200000
http.max_connections=4096
CONF

start_ingest() {
    "$bin/keng-ingest" --listen "127.0.0.1:$port" --brokers "$brokers" --tokens "$work/tokens" \
        --config "$work/ingest.conf" 2>>"$work/ingest.log" &
    ingest_pid=$!
    for ((i = 0; i < 100; i++)); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench_ingest: keng-ingest did not start; see $work/ingest.log" >&2
    exit 1
}

stop_ingest() {
    kill -TERM "$ingest_pid"
    wait "$ingest_pid" || true
    ingest_pid=""
}

# One wrk run against a fresh keng-ingest: prints "events/s requests/s p99_ms rss_mib".
run_wrk() {
    local batch=$1 conns=${2:-$connections} pace=${3:-0} out line requests non2xx secs p99 rss
    start_ingest
    out=$(BENCH_BATCH=$batch BENCH_TOKEN=$token BENCH_BOARDS="$work/boards.txt" \
        BENCH_DELAY_MS=$pace wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 10s \
        -s "$src/scripts/bench_ingest.lua" "http://127.0.0.1:$port/v1/incidents")
    rss=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$ingest_pid/status")
    stop_ingest
    line=$(grep '^RESULT' <<<"$out")
    requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    non2xx=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$line")
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    if ((non2xx > 0)); then
        echo "bench_ingest: $non2xx of $requests requests were not answered 202" >&2
    fi
    awk -v r="$requests" -v f="$non2xx" -v s="$secs" -v b="$batch" -v p="$p99" -v m="$rss" \
        'BEGIN {printf "%.0f %.0f %.2f %s\n", (r - f) * b / s, r / s, p, m}'
}

report() {
    local label=$1 batch=$2 conns=${3:-} pace=${4:-} results=() i
    for ((i = 0; i < runs; i++)); do
        results+=("$(run_wrk "$batch" "$conns" "$pace")")
    done
    printf '%s\n' "${results[@]}" >"$work/results"
    printf '| %s | %s | %s | %s | %s |\n' "$label" \
        "$(cut -d' ' -f1 "$work/results" | median)" "$(cut -d' ' -f2 "$work/results" | median)" \
        "$(cut -d' ' -f3 "$work/results" | median)" "$(cut -d' ' -f4 "$work/results" | median)"
}

echo "# keng-ingest on ${BENCH_BROKER_LABEL:-keng-broker} ($(nproc) cores, wrk -t$threads -c$connections -d${seconds}s, median of $runs runs)"
echo
echo "| requests | events/s | requests/s | p99 latency (ms) | keng-ingest peak RSS (MiB) |"
echo "|---|---|---|---|---|"
report "100 events each" 100
report "1 event each" 1
# A fixed load near 1,000 requests/s: 26 connections, each pausing 19 ms between requests.
report "1 event each, paced near 1,000 requests/s (26 connections)" 1 26 19

# The ceiling: kcat producing the same framed Avro, key = board_id, with the same producer
# guarantees, read from a file of key<TAB>value messages split by a delimiter that Avro of
# these events never holds.
/usr/bin/python3 - "$work/boards.txt" "$kcat_events" >"$work/events.ndjson" <<'PY'
import json, random, sys, time
boards = [b for b in open(sys.argv[1]).read().split() if b]
rng = random.Random(1)
now = int(time.time() * 1000)
for i in range(int(sys.argv[2])):
    print(json.dumps({"event_id": f"k-{i}", "board_id": rng.choice(boards),
                      "occurred_at": now - rng.randint(3600, 30 * 86400) * 1000,
                      "category": "THEFT", "severity": "HIGH", "resolution": "PENDING",
                      "people_involved": rng.randint(0, 12), "source": "MOBILE_APP",
                      "location": {"lat": 19.1, "lon": 105.2},
                      "summary": "Trộm cắp xe máy tại thôn"}, ensure_ascii=False))
PY
"$bin/keng-avro" encode --kind incident -o "$work/events.avro" <"$work/events.ndjson"
/usr/bin/python3 - "$work/events.ndjson" "$work/events.avro" "$work/events.kcat" <<'PY'
import json, struct, sys
keys = [json.loads(line)["board_id"] for line in open(sys.argv[1], encoding="utf-8")]
data = open(sys.argv[2], "rb").read()
out = open(sys.argv[3], "wb")
pos = 0
for key in keys:
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    value = data[pos + 4:pos + 4 + n]
    assert b"@@KENG@@" not in value
    out.write(key.encode() + b"\t" + value + b"@@KENG@@")
    pos += 4 + n
PY
rates=()
for ((i = 0; i < runs; i++)); do
    t0=$(now)
    kcat -P -b "$brokers" -t antt.incidents -K '\t' -D '@@KENG@@' -X enable.idempotence=true \
        -X acks=all -X linger.ms=5 -l "$work/events.kcat"
    rates+=("$(awk -v n="$kcat_events" -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.0f", n / (b - a)}')")
done
echo
echo "Ceiling, kcat -P of the same Avro payloads ($kcat_events events, idempotent, acks=all):" \
    "$(printf '%s\n' "${rates[@]}" | median) events/s"
