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

# The EXIT trap's common part: signals ($1: TERM or KILL) every background program whose pid
# is in the array pids, and waits for them.
stop_all() {
    local p
    # shellcheck disable=SC2154 # pids is the sourcing script's array of background programs
    for p in "${pids[@]}"; do kill "-$1" "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# How many messages keng's two input topics hold on brokers $1.
input_events() {
    local t n total=0
    for t in antt.incidents antt.mediations; do
        n=$(kcat -C -b "$1" -t "$t" -o beginning -e -q -f 'x\n' | wc -l)
        total=$((total + n))
    done
    echo "$total"
}

# The median seconds, over $2 runs, of kcat reading both input topics raw from brokers $1.
kcat_read_median() {
    local i t t0 times=()
    for ((i = 0; i < $2; i++)); do
        t0=$(now)
        for t in antt.incidents antt.mediations; do
            kcat -C -b "$1" -t "$t" -o beginning -e -q >/dev/null
        done
        times+=("$(elapsed "$t0")")
    done
    printf '%s\n' "${times[@]}" | median
}
