#!/usr/bin/env bash
# keng-demo: the whole pipeline on the embedded broker, on this machine only.
# Starts keng-broker, keng-aggregate, keng-ingest (when built) and keng-simulate, prints the
# dashboard address, and runs until Ctrl-C (or for --duration seconds), then stops them all.
set -euo pipefail

bin=$(dirname "$(readlink -f "$0")")
listen=${KENG_DEMO_LISTEN:-127.0.0.1:8080}
ingest_listen=${KENG_DEMO_INGEST_LISTEN:-127.0.0.1:8088}
rate=${KENG_DEMO_RATE:-50}
partitions=${KENG_DEMO_PARTITIONS:-6}
duration=0
workdir=""
registry=""
lineage=""

usage() {
    cat <<USAGE
Usage: keng-demo [--listen HOST:PORT] [--ingest-listen HOST:PORT] [--rate EVENTS_PER_S]
                 [--duration SECONDS] [--dir DIR] [--registry FILE] [--lineage FILE]

Runs the embedded broker, the aggregator with its dashboard, the ingest gateway and the
field simulator together. Logs and state go to DIR (default: a new directory in /tmp).
--registry runs all of them on your own board registry (a CSV as keng-registry --write
writes; checked first with keng-registry --check), else on the built-in one.
--lineage gives the dashboard what each unit was before (the format of keng-registry
--lineage).

Exit codes: 0 done, 1 failed, 64 usage, 65 damaged state, 69 unavailable, 75 state dir
held, 78 configuration; docs/DESIGN.md, "Exit codes".
USAGE
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --listen) listen=$2; shift 2 ;;
    --ingest-listen) ingest_listen=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --dir) workdir=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --lineage) lineage=$2; shift 2 ;;
    --help) usage; exit 0 ;;
    --version) "$bin/keng-broker" --version | sed 's/^keng-broker/keng-demo/'; exit 0 ;;
    *) usage >&2; exit 64 ;;
    esac
done
registry_args=()
if [[ -n "$registry" ]]; then
    # Before anything starts: a registry that does not load is a configuration error (78).
    if ! "$bin/keng-registry" --check "$registry" >/dev/null; then
        echo "keng-demo: the registry $registry does not load (above); nothing was started" >&2
        exit 78
    fi
    registry=$(readlink -f "$registry")
    registry_args=(--registry "$registry")
fi
# A board and the commune count of the registry in use, for the sample command and the
# alert thresholds.
sample_board=$("$bin/keng-registry" --write - ${registry:+--check "$registry"} |
    awk -F, 'NR == 2 {print $1}')
communes=$("$bin/keng-registry" --write - ${registry:+--check "$registry"} |
    awk -F, 'NR > 1 {c[$3]} END {print length(c)}')
[[ -n "$workdir" ]] || workdir=$(mktemp -d /tmp/keng-demo.XXXXXX)
mkdir -p "$workdir"

pids=()
stop_all() {
    trap - EXIT INT TERM
    echo "keng-demo: stopping" >&2
    # Producers first, then the aggregator (it checkpoints), then the broker.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop_all EXIT
trap 'exit 0' INT TERM

wait_for() { # what, seconds, command...
    local what=$1 seconds=$2
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "keng-demo: $what did not come up within ${seconds}s; see $workdir/*.log" >&2
    exit 1
}

"$bin/keng-broker" --partitions "$partitions" --bootstrap-file "$workdir/bootstrap" \
    >/dev/null 2>"$workdir/broker.log" &
pids+=($!)
wait_for "keng-broker" 10 test -s "$workdir/bootstrap"
export KENG_BROKERS=$(cat "$workdir/bootstrap")

# Two alert rules sized for the simulated rate, so that the dashboard shows alerts firing and
# resolving within minutes (real thresholds are the province's to set; docs/ALERTS.md).
surge=$(awk -v r="$rate" 'BEGIN {t = int(r * 0.6 * 3600 / 50); print (t < 20 ? 20 : t)}')
# The embedded broker has no static membership: a restarted keng-aggregate is a new member
# that waits until the group has given up on the old one (up to session.timeout.ms - 1 s more
# in librdkafka's mock). 3 s keeps a restart in the demo under about 10 s; the cost is that a
# heartbeat thread stalled for 3 s (a suspended laptop) costs a rebalance. Apache Kafka
# refuses sessions under its group.min.session.timeout.ms (6 s): production keeps the default.
cat >"$workdir/aggregate.conf" <<EOF_CONF
kafka.session.timeout.ms=3000
kafka.heartbeat.interval.ms=1000
alert.province_surge.level=province
alert.province_surge.window=1h
alert.province_surge.kind=incident
alert.province_surge.threshold=$surge
alert.province_surge.summary=Toàn tỉnh: {count} vụ việc trong 1 giờ
alert.drugs_commune.level=commune
alert.drugs_commune.window=1h
alert.drugs_commune.kind=incident
alert.drugs_commune.category=DRUGS
alert.drugs_commune.threshold=$(awk -v r="$rate" -v c="$communes" 'BEGIN {t = int(r * 0.6 * 0.05 * 3600 / c * 2); print (t < 3 ? 3 : t)}')
alert.drugs_commune.summary={scope_name}: {count} vụ ma túy trong 1 giờ
EOF_CONF

"$bin/keng-aggregate" --listen "$listen" --state-dir "$workdir/aggregate-state" \
    --config "$workdir/aggregate.conf" "${registry_args[@]}" ${lineage:+--lineage "$lineage"} \
    2>"$workdir/aggregate.log" &
pids+=($!)
wait_for "keng-aggregate" 20 curl -fsS "http://$listen/healthz"

token=""
if [[ -x "$bin/keng-ingest" ]]; then
    # A demo gateway token for every district; the file keeps only its hash.
    token=$("$bin/keng-ingest" --new-token demo-gateway --districts '*' \
        --tokens "$workdir/tokens" 2>/dev/null)
    "$bin/keng-ingest" --listen "$ingest_listen" --tokens "$workdir/tokens" \
        "${registry_args[@]}" 2>"$workdir/ingest.log" &
    pids+=($!)
    wait_for "keng-ingest" 20 curl -fsS "http://$ingest_listen/healthz"
fi

"$bin/keng-simulate" --rate "$rate" "${registry_args[@]}" 2>"$workdir/simulate.log" &
pids+=($!)

cat <<EOF_MSG
keng demo is running on the embedded broker ($KENG_BROKERS), with ${registry:-the built-in registry}.

  Dashboard:  http://$listen/
  Counts:     curl 'http://$listen/v1/counts?level=province&id=NA'
  Top boards: curl 'http://$listen/v1/top?level=board&window=24h&kind=incident&limit=10'
EOF_MSG
if [[ -n "$token" ]]; then
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    cat <<EOF_INGEST
  Ingest:     curl -H 'Authorization: Bearer $token' -H 'Content-Type: application/json' \\
                -d '{"event_id":"$(cat /proc/sys/kernel/random/uuid)","board_id":"$sample_board",
                     "occurred_at":"$now","category":"THEFT","severity":"LOW",
                     "resolution":"HANDLED_LOCALLY","people_involved":1,"source":"MOBILE_APP"}' \\
                http://$ingest_listen/v1/incidents
EOF_INGEST
fi
echo "  Logs:       $workdir/*.log"
echo
if [[ "$duration" -gt 0 ]]; then
    echo "Running for ${duration}s."
    # In the background, so that a signal's trap runs at once instead of after the sleep.
    sleep "$duration" &
    pids+=($!)
    wait $!
else
    echo "Press Ctrl-C to stop."
    wait -n "${pids[@]}" || true
    echo "keng-demo: a component exited; see $workdir/*.log" >&2
    exit 1
fi
