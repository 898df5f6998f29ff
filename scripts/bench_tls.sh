#!/usr/bin/env bash
# What HTTPS costs keng-aggregate: two instances on one keng-broker, the same users (bcrypt,
# a remembered password), one serving plain HTTP and one HTTPS (tls_server_config, an ECDSA
# P-256 certificate), measured run after run in turns so that the machine's load falls on
# both alike, with wrk on the dashboard's own request (/v1/counts of the province, signed in):
#   keep-alive: requests/s and p99 (the authenticated dashboard request's p99 is the HTTPS
#   one), and the ratio HTTPS / plain;
#   a new connection per request (Connection: close): connections/s, each HTTPS one a full
#   handshake, and the ratio;
#   memory: RSS added by BENCH_IDLE (2000) idle keep-alive connections that each asked once,
#   per connection.
# Every run's figures follow the table.
#
# Usage: scripts/bench_tls.sh [BUILD_DIR]   (default build)
# Environment: BENCH_RUNS (3), BENCH_SECONDS (8 per wrk run), BENCH_CONNECTIONS (8).
set -euo pipefail

build=${1:-build}
bin=$(readlink -f "$build/bin")
src=$(readlink -f "$(dirname "$0")/..")
runs=${BENCH_RUNS:-3}
seconds=${BENCH_SECONDS:-8}
connections=${BENCH_CONNECTIONS:-8}
idle=${BENCH_IDLE:-2000}
work=$(mktemp -d /tmp/keng-bench-tls.XXXXXX)
pids=()

# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/bench_lib.sh"

cleanup() {
    stop_all TERM
    rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || {
    echo "bench_tls: wrk is not installed" >&2
    exit 1
}

"$bin/keng-broker" --partitions 4 --bootstrap-file "$work/bootstrap" >/dev/null 2>"$work/broker.log" &
pids+=($!)
for ((i = 0; i < 100; i++)); do [[ -s "$work/bootstrap" ]] && break; sleep 0.1; done
[[ -s "$work/bootstrap" ]] || { echo "bench_tls: keng-broker did not start" >&2; exit 1; }
brokers=$(cat "$work/bootstrap")

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/keng.key" -out "$work/keng.crt" 2>/dev/null
chmod 600 "$work/keng.key"
hash=$(printf '%s' bench-pw | "$bin/keng-aggregate" --hash-password)
auth="Basic $(printf '%s' 'ops:bench-pw' | base64)"
users="basic_auth_users:
  ops: $hash
user_scopes:
  ops: [NA]
"
printf '%s' "$users" >"$work/plain.yml"
printf '%stls_server_config:\n  cert_file: keng.crt\n  key_file: keng.key\n' "$users" >"$work/tls.yml"
chmod 600 "$work/plain.yml" "$work/tls.yml"

declare -A port pid
for kind in plain tls; do
    port[$kind]=$(free_port)
    "$bin/keng-aggregate" --brokers "$brokers" --listen "127.0.0.1:${port[$kind]}" \
        --state-dir "$work/state-$kind" --group "bench-$kind" \
        --web.config.file "$work/$kind.yml" 2>"$work/aggregate-$kind.log" &
    pids+=($!)
    pid[$kind]=$!
done
for kind in plain tls; do
    scheme=http
    [[ $kind == tls ]] && scheme=https
    for ((i = 0; i < 300; i++)); do
        curl -ksf "$scheme://127.0.0.1:${port[$kind]}/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
done

# One wrk run: prints "requests/s p99_ms".
run_wrk() {
    local kind=$1 close=$2 scheme=http out line requests non2xx failed secs p99
    [[ $kind == tls ]] && scheme=https
    out=$(BENCH_AUTH="$auth" BENCH_CLOSE="$close" wrk -t1 -c"$connections" -d"${seconds}s" \
        --timeout 10s -s "$src/scripts/bench_tls.lua" \
        "$scheme://127.0.0.1:${port[$kind]}/v1/counts?level=province&id=NA")
    line=$(grep '^RESULT' <<<"$out")
    requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    non2xx=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$line")
    failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$line")
    secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
    if ((non2xx + failed > 0)); then
        echo "bench_tls: $kind close=${close:-no}: $non2xx non-2xx and $failed failed of $requests" >&2
    fi
    awk -v r="$requests" -v s="$secs" -v p="$p99" 'BEGIN {printf "%.0f %.2f\n", r / s, p}'
}

declare -A results
for ((i = 0; i < runs; i++)); do
    for mode in keepalive close; do
        close=""
        [[ $mode == close ]] && close=1
        for kind in plain tls; do
            results[$mode-$kind]+="$(run_wrk "$kind" "$close")"$'\n'
        done
    done
done

# KiB of RSS per idle connection that asked once, on the instance of $1.
idle_kib() {
    local kind=$1 proc=$2
    /usr/bin/python3 - "$kind" "${port[$kind]}" "$proc" "$idle" <<'PY'
import socket, ssl, sys
kind, port, pid, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
before, conns = rss(), []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s = ctx.wrap_socket(s) if kind == "tls" else s
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    s.recv(4096)
    conns.append(s)
print(f"{(rss() - before) / n:.1f}")
PY
}

col() { awk -v c="$1" 'NF {print $c}' <<<"${results[$2]}" | median; }
echo "# keng-aggregate, plain HTTP against HTTPS ($(nproc) cores, wrk -t1 -c$connections -d${seconds}s, keng-broker, median of $runs runs in turns)"
echo "| request | plain requests/s | HTTPS requests/s | ratio | plain p99 | HTTPS p99 |"
echo "|---|---|---|---|---|---|"
for mode in keepalive close; do
    label="keep-alive, signed in"
    [[ $mode == close ]] && label="a new connection each (Connection: close)"
    p=$(col 1 "$mode-plain")
    t=$(col 1 "$mode-tls")
    printf '| %s | %s | %s | %.2f | %s ms | %s ms |\n' "$label" "$p" "$t" \
        "$(awk -v a="$t" -v b="$p" 'BEGIN {print a / b}')" "$(col 2 "$mode-plain")" "$(col 2 "$mode-tls")"
done
printf '| %s idle keep-alive connections | %s KiB each | %s KiB each | | | |\n' "$idle" \
    "$(idle_kib plain "${pid[plain]}")" "$(idle_kib tls "${pid[tls]}")"
echo
echo "runs (requests/s p99_ms):"
for key in keepalive-plain keepalive-tls close-plain close-tls; do
    echo "  $key: $(tr '\n' ';' <<<"${results[$key]}")"
done
