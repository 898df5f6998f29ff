#!/usr/bin/env bash
# Gives each keng-aggregate container of a scaled service its own state directory on one
# shared volume, then runs the program in its place.
#
#   with-state-slot keng-aggregate ... --state-dir /var/lib/keng ...
#
# runs keng-aggregate with --state-dir /var/lib/keng/instance-N, where N is the lowest slot
# that no running instance holds. A slot is held by an flock on /var/lib/keng/instance-N.lock
# that stays open in the program after exec, so the kernel releases it when the program
# ends, however it ends (SIGKILL included). A restarted container usually gets its slot
# back; when two swap slots, each still starts from a consistent checkpoint (counts and
# offsets are written together), so the counts stay exact either way.
#
# KENG_STATE_SLOTS (default 24, the partitions of the input topics) is how many slots are
# tried; an instance beyond that would get no partition anyway, and exits with status 75.
set -euo pipefail

slots=${KENG_STATE_SLOTS:-24}

if [[ $# -eq 0 ]]; then
    echo "usage: with-state-slot PROGRAM [ARGS...] --state-dir BASE [ARGS...]" >&2
    exit 64
fi

args=("$@")
index=-1
for ((i = 0; i < ${#args[@]} - 1; i++)); do
    if [[ "${args[i]}" == "--state-dir" ]]; then
        index=$((i + 1))
    fi
done
if ((index < 0)); then
    echo "with-state-slot: no --state-dir BASE among the arguments" >&2
    exit 64
fi
base=${args[index]}
mkdir -p "$base"

for ((n = 1; n <= slots; n++)); do
    # fd 9 is deliberately left open across exec: it is the lock.
    exec 9>>"$base/instance-$n.lock"
    if flock --nonblock 9; then
        args[index]="$base/instance-$n"
        echo "with-state-slot: state slot $n, --state-dir ${args[index]}" >&2
        exec "${args[@]}"
    fi
    exec 9>&-
done
echo "with-state-slot: all $slots state slots under $base are held by running instances;" \
    "scale keng-aggregate to at most $slots (the partition count) or raise KENG_STATE_SLOTS" >&2
exit 75
