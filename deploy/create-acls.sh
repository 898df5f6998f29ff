#!/usr/bin/env bash
# Grants each keng program's Kafka user exactly what it uses, on a cluster whose authorizer
# denies what no ACL allows (allow.everyone.if.no.acl.found=false). Safe to run again and
# again: an ACL that exists is left as it is. It adds, and never removes: an ACL granted by
# hand beyond the table stays until you remove it (`kafka-acls.sh --remove`).
#
# The table below is the one place the ACLs are written: docs/OPERATIONS.md shows it, and
# `deploy/create-acls.sh --table` prints it with the names filled in (no cluster needed).
# `deploy/create-acls.sh --users` sets the four users' SCRAM-SHA-512 passwords instead,
# from KENG_SCRAM_DIR/<user> (docker-compose.yml's kafka-init runs it first).
#
#   user            operations            resource  names
#   keng-ingest     Write,Describe        topic     antt.incidents antt.mediations
#   keng-aggregate  Read,Describe         topic     antt.incidents antt.mediations
#   keng-aggregate  Read,Write,Describe   topic     antt.board-counts antt.alerts
#   keng-aggregate  Write,Describe        topic     antt.deadletter
#   keng-aggregate  Read                  group     keng-aggregate
#   keng-replay     Read,Describe         topic     antt.incidents antt.mediations
#   keng-ingest     Read,Describe         topic     antt.registry
#   keng-aggregate  Read,Describe         topic     antt.registry
#   keng-replay     Read,Describe         topic     antt.registry
#   keng-registry   Read,Write,Describe   topic     antt.registry
#
# No program needs an ACL on the cluster: the idempotent producers of keng-ingest and
# keng-aggregate need only Write on their topics (Apache Kafka 3.0 and later; IdempotentWrite
# was needed before). keng-aggregate's readers of antt.board-counts and antt.alerts, and
# keng-replay, assign partitions and commit nothing, so they join no group and need no group
# ACL. No program reads or alters configs. keng-registry (--publish, --versions) reads
# antt.registry by assigning its partition and writes the versions it checked; the three
# programs may read the versions (docs/DESIGN.md, "The topic antt.registry").
#
# Environment (defaults in brackets):
#   KENG_BOOTSTRAP         bootstrap servers [kafka-1:9092,kafka-2:9092,kafka-3:9092]
#   KENG_ADMIN_CONFIG      a client properties file of a user allowed to alter ACLs
#                          (--command-config; a secured cluster needs one)
#   KAFKA_BIN              where kafka-acls.sh is [/opt/kafka/bin]
#   KENG_USER_INGEST, KENG_USER_AGGREGATE, KENG_USER_REPLAY, KENG_USER_REGISTRY
#                          the SCRAM users [keng-ingest, keng-aggregate, keng-replay,
#                          keng-registry]
#   KENG_GROUPS            keng-aggregate's consumer groups, space-separated: each
#                          `--group` you run it with [keng-aggregate]
#   KENG_TOPIC_INCIDENTS, KENG_TOPIC_MEDIATIONS, KENG_TOPIC_ALERTS, KENG_TOPIC_DEADLETTER,
#   KENG_TOPIC_BOARD_COUNTS, KENG_TOPIC_REGISTRY
#                          topic names, as for create-topics.sh
#   KENG_SCRAM_DIR         for --users: a folder with one file per user, named as the user,
#                          whose first line is its password (letters and digits: the
#                          tool's syntax takes no ',' or ']')
#   KENG_WAIT_SECONDS      how long to wait for the cluster to answer [120]
set -euo pipefail

bootstrap=${KENG_BOOTSTRAP:-kafka-1:9092,kafka-2:9092,kafka-3:9092}
kafka_bin=${KAFKA_BIN:-/opt/kafka/bin}
wait_seconds=${KENG_WAIT_SECONDS:-120}
ingest=${KENG_USER_INGEST:-keng-ingest}
aggregate=${KENG_USER_AGGREGATE:-keng-aggregate}
replay=${KENG_USER_REPLAY:-keng-replay}
registry_user=${KENG_USER_REGISTRY:-keng-registry}
groups=${KENG_GROUPS:-keng-aggregate}
incidents=${KENG_TOPIC_INCIDENTS:-antt.incidents}
mediations=${KENG_TOPIC_MEDIATIONS:-antt.mediations}
alerts=${KENG_TOPIC_ALERTS:-antt.alerts}
deadletter=${KENG_TOPIC_DEADLETTER:-antt.deadletter}
board_counts=${KENG_TOPIC_BOARD_COUNTS:-antt.board-counts}
registry=${KENG_TOPIC_REGISTRY:-antt.registry}

say() { echo "create-acls: $*" >&2; }

# The table of the header, with the names of this run: user, operations, resource, names.
table() {
    cat <<EOF
$ingest Write,Describe topic $incidents $mediations
$aggregate Read,Describe topic $incidents $mediations
$aggregate Read,Write,Describe topic $board_counts $alerts
$aggregate Write,Describe topic $deadletter
$aggregate Read group $groups
$replay Read,Describe topic $incidents $mediations
$ingest Read,Describe topic $registry
$aggregate Read,Describe topic $registry
$replay Read,Describe topic $registry
$registry_user Read,Write,Describe topic $registry
EOF
}

if [[ "${1:-}" == "--table" ]]; then
    table
    exit 0
fi
users_only=0
if [[ "${1:-}" == "--users" ]]; then
    users_only=1
    shift
fi
[[ $# -eq 0 ]] || {
    sed -n '2,48s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

admin=()
if [[ -n "${KENG_ADMIN_CONFIG:-}" ]]; then
    admin=(--command-config "$KENG_ADMIN_CONFIG")
fi
acls() { "$kafka_bin/kafka-acls.sh" --bootstrap-server "$bootstrap" "${admin[@]}" "$@"; }

# The brokers may answer before the authorizer has its ACLs: wait until a listing works.
deadline=$((SECONDS + wait_seconds))
until acls --list --topic "$incidents" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        say "cannot list ACLs on $bootstrap within ${wait_seconds}s: is the cluster up, does it" \
            "run an authorizer, and may the user of KENG_ADMIN_CONFIG alter ACLs?"
        exit 1
    fi
    sleep 2
done

# SCRAM credentials go into the cluster's metadata (KRaft, Kafka 3.5 and later).
if ((users_only)); then
    [[ -n "${KENG_SCRAM_DIR:-}" ]] || {
        say "--users needs KENG_SCRAM_DIR, a folder with one password file per user"
        exit 2
    }
    for user in "$ingest" "$aggregate" "$replay" "$registry_user"; do
        file="$KENG_SCRAM_DIR/$user"
        [[ -r "$file" ]] || {
            say "no password for $user: $file is missing or unreadable"
            exit 1
        }
        password=$(head -n 1 "$file")
        [[ "$password" =~ ^[A-Za-z0-9]{16,}$ ]] || {
            say "$file: the password must be 16 or more letters and digits"
            exit 1
        }
        say "setting the SCRAM-SHA-512 password of $user"
        "$kafka_bin/kafka-configs.sh" --bootstrap-server "$bootstrap" "${admin[@]}" --alter \
            --entity-type users --entity-name "$user" \
            --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
    done
    say "done"
    exit 0
fi

# One kafka-acls.sh per row: every operation of the row on every name of it.
while read -r user operations resource names; do
    args=(--add --allow-principal "User:$user")
    IFS=, read -r -a ops <<<"$operations"
    for op in "${ops[@]}"; do args+=(--operation "$op"); done
    for name in $names; do args+=("--$resource" "$name"); done
    say "allowing User:$user $operations on $resource $names"
    acls "${args[@]}" >/dev/null
done < <(table)
say "done"
