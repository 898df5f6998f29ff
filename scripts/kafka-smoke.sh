#!/usr/bin/env bash
# Checks keng's Kafka features (librdkafka 2.0.2) against one Apache Kafka version: an
# idempotent producer, a consumer group, offsets looked up by time, and which protocol
# features librdkafka turns on. docs/OPERATIONS.md ("Kafka versions") records the results.
#
#   scripts/kafka-smoke.sh [VERSION] [BUILD_DIR]
#
# VERSION defaults to the one scripts/kafka/pom.xml pins; BUILD_DIR to build. Exits 1 when a
# check fails. Starts one broker under a temporary folder and stops it at the end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
version=${1:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")}
bin=$(cd "${2:-$root/build}/bin" && pwd)
work=$(mktemp -d /tmp/keng-kafka-smoke.XXXXXX)
agg_pid=""
failed=0

# shellcheck disable=SC2317 # run by the trap
cleanup() {
    [[ -n "$agg_pid" ]] && kill "$agg_pid" 2>/dev/null && wait "$agg_pid" 2>/dev/null
    "$here/kafka-cluster.sh" down "$work/kafka" || true
    [[ -n "${KENG_KEEP_TMP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

result() { # ok|FAIL what
    printf '%-4s %s\n' "$1" "$2"
    [[ "$1" == ok ]] || failed=1
}

KENG_KAFKA_VERSION=$version "$here/kafka-cluster.sh" up "$work/kafka" 1
bootstrap=$(<"$work/kafka/bootstrap")
echo "Apache Kafka $version at $bootstrap; librdkafka $(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9.]*\).*/\1/p')"

# What librdkafka makes of the broker's API versions (upstream librdkafka issue 4948).
timeout 30 kcat -b "$bootstrap" -L -X debug=feature 2>&1 >/dev/null |
    sed -n 's/.*\(Enabling\|Disabling\) feature \([A-Za-z0-9]*\).*/\1 \2/p' | sort -u >"$work/features"
echo "librdkafka features: $(grep -c Enabling "$work/features") on; off: $(sed -n 's/^Disabling //p' "$work/features" | paste -sd' ')"
for f in IdempotentProducer OffsetTime BrokerBalancedConsumer MsgVer2; do
    if grep -qx "Enabling $f" "$work/features"; then result ok "feature $f on"; else result FAIL "feature $f on"; fi
done

KENG_BOOTSTRAP=$bootstrap KAFKA_BIN="$work/kafka/kafka-home/bin" KENG_PARTITIONS=4 \
    KENG_SIDE_PARTITIONS=1 KENG_REPLICATION=1 KENG_MIN_INSYNC=1 \
    "$root/deploy/create-topics.sh" >"$work/create-topics.log" 2>&1
"$work/kafka/kafka-home/bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create \
    --topic keng-smoke --partitions 2 --replication-factor 1 >/dev/null 2>&1

# 1. Produce with idempotence: keng-produce (enable.idempotence=true, acks=all) and kcat.
"$bin/keng-simulate" --output ndjson --count 2000 --rate 0 --seed 11 >"$work/events.ndjson" 2>"$work/simulate.log"
distinct=$(sed -n 's/.*distinct \([0-9]*\).*/\1/p' "$work/simulate.log")
if "$bin/keng-produce" --brokers "$bootstrap" --kind auto "$work/events.ndjson" 2>"$work/produce.log"; then
    result ok "keng-produce (idempotent, acks=all): $(grep -o 'delivered [0-9]*' "$work/produce.log")"
else
    result FAIL "keng-produce: $(tail -n 3 "$work/produce.log")"
fi
if seq 1 500 | sed 's/^/before-/' | kcat -b "$bootstrap" -P -t keng-smoke -X enable.idempotence=true \
    -X acks=all 2>"$work/kcat-p1.log"; then
    result ok "kcat -P with enable.idempotence=true: 500 messages"
else
    result FAIL "kcat -P with enable.idempotence=true: $(tail -n 2 "$work/kcat-p1.log")"
fi
sleep 2
split_ms=$(($(date +%s%3N) - 500))
sleep 1
seq 1 300 | sed 's/^/after-/' | kcat -b "$bootstrap" -P -t keng-smoke -X enable.idempotence=true -X acks=all 2>>"$work/kcat-p1.log"

# 2. Consume in a group: keng-aggregate counts every distinct event; kcat -G reads and commits.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin/keng-aggregate" --brokers "$bootstrap" --listen "127.0.0.1:$port" --state-dir "$work/state" \
    --group keng-smoke 2>"$work/aggregate.log" &
agg_pid=$!
total=""
for _ in $(seq 120); do
    total=$(curl -fsS "http://127.0.0.1:$port/v1/counts?level=province&id=NA" 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; c=json.load(sys.stdin)["windows"]["all"]; print(c["incidents"]["total"]+c["mediations"]["total"])' 2>/dev/null || true)
    [[ "$total" == "$distinct" ]] && break
    sleep 1
done
if [[ "$total" == "$distinct" ]]; then
    result ok "keng-aggregate in group keng-smoke counted $total distinct events"
else
    result FAIL "keng-aggregate counted '${total:-nothing}', expected $distinct: $(tail -n 5 "$work/aggregate.log")"
fi
kill "$agg_pid"
wait "$agg_pid" || true
agg_pid=""
got=$(timeout 60 kcat -b "$bootstrap" -G keng-smoke-kcat -X auto.offset.reset=earliest -e -q keng-smoke 2>"$work/kcat-g.log" | wc -l) || true
if [[ "$got" == 800 ]]; then result ok "kcat -G (balanced consumer group): read 800 of 800"; else result FAIL "kcat -G read $got of 800"; fi
# Static membership (group.instance.id), which keng-aggregate uses to take its partitions back
# after a restart without waiting out its old session.
got=$(timeout 60 kcat -b "$bootstrap" -G keng-smoke-static -X group.instance.id=smoke-1 \
    -X auto.offset.reset=earliest -e -q keng-smoke 2>"$work/kcat-static.log" | wc -l) || true
if [[ "$got" == 800 ]]; then
    result ok "kcat -G with group.instance.id (static membership): read 800 of 800"
else
    result FAIL "kcat -G with group.instance.id read $got of 800: $(tail -n 2 "$work/kcat-static.log")"
fi
lag=$("$work/kafka/kafka-home/bin/kafka-consumer-groups.sh" --bootstrap-server "$bootstrap" --describe \
    --group keng-smoke-kcat 2>/dev/null | awk '$2 == "keng-smoke" {s += $6} END {print s + 0}')
if [[ "$lag" == 0 ]]; then result ok "the group's committed offsets reach the end (lag 0)"; else result FAIL "group lag $lag"; fi

# 3. Offsets by time: kcat -o s@T (offsetsForTimes) reads only what was produced after T, and
# keng-replay maps its period's start to offsets instead of scanning from the beginning.
after=$(timeout 60 kcat -b "$bootstrap" -C -t keng-smoke -o "s@$split_ms" -e -q 2>"$work/kcat-t.log" | grep -c '^after-') || true
before=$(timeout 60 kcat -b "$bootstrap" -C -t keng-smoke -o "s@$split_ms" -e -q 2>>"$work/kcat-t.log" | grep -c '^before-') || true
if [[ "$after" == 300 && "$before" == 0 ]]; then
    result ok "offsets by time (kcat -o s@T): 300 later messages, none of the 500 earlier"
else
    result FAIL "offsets by time: read $after later and $before earlier messages (want 300 and 0)"
fi
today=$(TZ=Asia/Ho_Chi_Minh date +%F)
tomorrow=$(TZ=Asia/Ho_Chi_Minh date -d tomorrow +%F)
if "$bin/keng-replay" --brokers "$bootstrap" --from "$today" --to "$tomorrow" --out "$work/review" \
    >/dev/null 2>"$work/replay.log"; then
    scanned=$(sed -n 's/.*scanned_from_start=\([0-9]*\).*/\1/p' "$work/replay.log" | head -n 1)
    if [[ "$scanned" == 0 ]]; then
        result ok "keng-replay seeks by time on every partition (scanned_from_start=0)"
    else
        result FAIL "keng-replay scanned ${scanned:-?} partitions from the start"
    fi
else
    result FAIL "keng-replay: $(tail -n 3 "$work/replay.log")"
fi

exit "$failed"
