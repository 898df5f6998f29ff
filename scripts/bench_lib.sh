# shellcheck shell=bash
# What the benchmark scripts share (sourced, not run): medians, clocks and free ports.

# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
now() { date +%s.%N; }
# Seconds since $1 (a value of now).
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {print b - a}'; }
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# keng_events_counted_total from the /metrics of keng-aggregate on port $1; 0 while it does not
# answer yet (a failed curl must not end a script under set -e -o pipefail).
counted_events() {
    local n
    n=$(curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '/^keng_events_counted_total/ {print $2}') || true
    echo "${n:-0}"
}
