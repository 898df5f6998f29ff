#!/usr/bin/env bash
# Runs a real Confluent-compatible Schema Registry on 127.0.0.1 for keng's tests and
# benchmarks: Apicurio Registry (Apache-2.0) with in-memory storage, through its
# Confluent-compatible API.
#
#   scripts/schema-registry.sh up DIR     start it, data in memory (gone at `down`); returns
#                                         once the API answers and the global compatibility
#                                         is BACKWARD. Writes DIR/url (the base URL keng's
#                                         schema.registry.url takes, .../apis/ccompat/v7),
#                                         DIR/port, DIR/registry.pid, DIR/registry.log
#   scripts/schema-registry.sh kill DIR   SIGKILL it (a registry lost mid-run)
#   scripts/schema-registry.sh start DIR  start it again on the same port, empty (in memory),
#                                         and wait until it answers
#   scripts/schema-registry.sh down DIR   stop it (safe to run twice)
#   scripts/schema-registry.sh fetch      only fetch the registry into the cache
#
# The registry comes from Maven Central, io.apicurio:apicurio-registry-app:VERSION, the
# tar.gz with classifier `all` (a runner jar and its lib/), fetched with mvn on first use,
# kept under ~/.m2 and unpacked once into the cache. Every wait is bounded.
#
# Environment (defaults in brackets):
#   KENG_REGISTRY_VERSION  Apicurio Registry version [3.0.9]
#   KENG_REGISTRY_CACHE    where it is unpacked [~/.m2/keng-schema-registry]
#   KENG_M2_REPOSITORY     Maven's local repository, where the tar.gz is kept [~/.m2/repository]
#   KENG_REGISTRY_WAIT     seconds to wait for the API to answer [120]
#   KENG_REGISTRY_HEAP     JVM heap options [-Xms64m -Xmx384m]
#   KENG_REGISTRY_PORT     for `up`: the port [a free port the kernel picks]
#   KENG_REGISTRY_COMPATIBILITY  the global compatibility set at `up` [BACKWARD]
#   KENG_REGISTRY_OWNER_PID  when set, the registry is stopped once that process is gone (a
#                          test killed on its timeout leaves no registry behind)
set -euo pipefail

version=${KENG_REGISTRY_VERSION:-3.0.9}
cache=${KENG_REGISTRY_CACHE:-$HOME/.m2/keng-schema-registry}/$version
wait_seconds=${KENG_REGISTRY_WAIT:-120}
heap=${KENG_REGISTRY_HEAP:--Xms64m -Xmx384m}
compatibility=${KENG_REGISTRY_COMPATIBILITY:-BACKWARD}
artifact="io.apicurio:apicurio-registry-app:$version:tar.gz:all"
jvm_common=(-XX:+UseSerialGC -XX:CICompilerCount=2 -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

say() { echo "schema-registry: $*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# ---- the registry's jars ----

runner() { echo "$cache/app/apicurio-registry-app-$version-runner.jar"; }

# Fetches the tar.gz into ~/.m2 (once) and unpacks it into $cache/app (once).
ensure_app() {
    [[ -f "$cache/complete" ]] && return 0
    command -v java >/dev/null || die "java is missing: run scripts/install-deps.sh (openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "mvn is missing: run scripts/install-deps.sh (maven)"
    mkdir -p "$cache"
    (
        exec 9>"$cache/.lock"
        flock -w 600 9 || die "another download of Apicurio Registry $version holds $cache/.lock for 10 minutes"
        [[ -f "$cache/complete" ]] && exit 0
        local repo=${KENG_M2_REPOSITORY:-$HOME/.m2/repository} tgz
        tgz="$repo/io/apicurio/apicurio-registry-app/$version/apicurio-registry-app-$version-all.tar.gz"
        if [[ ! -s "$tgz" ]]; then
            say "fetching Apicurio Registry $version (~104 MiB) from Maven Central (once; kept in $repo)"
            # The registry's parent POM is not on Maven Central, so no dependency resolution:
            # the one artifact alone, by the dependency plugin's get goal.
            if ! timeout 900 mvn -q -B -Dmaven.repo.local="$repo" -Dmaven.wagon.http.retryHandler.count=2 \
                -Dmaven.wagon.httpconnectionManager.ttlSeconds=30 -Dmaven.wagon.rto=30000 \
                org.apache.maven.plugins:maven-dependency-plugin:2.8:get -Dtransitive=false \
                -Dartifact="$artifact" >"$cache/mvn.log" 2>&1 || [[ ! -s "$tgz" ]]; then
                die "cannot fetch $artifact from Maven Central (no network, or mvn timed out; see $cache/mvn.log)"
            fi
        fi
        rm -rf "$cache/app"
        mkdir -p "$cache/app"
        tar -xzf "$tgz" -C "$cache/app" || die "cannot unpack $tgz"
        [[ -f "$(runner)" ]] || die "$tgz has no $(basename "$(runner)")"
        touch "$cache/complete"
    )
}

free_port() {
    /usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

pid_of() { # dir: the pid of the running registry, or nothing
    local f="$1/registry.pid" pid
    [[ -f "$f" ]] || return 0
    pid=$(<"$f")
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

start_registry() { # dir
    local dir=$1 port
    port=$(<"$dir/port")
    # In-memory storage (the default) on 127.0.0.1 only; no UI, no auth, no telemetry.
    # shellcheck disable=SC2086 # heap holds several options
    nohup java $heap "${jvm_common[@]}" -XX:+ExitOnOutOfMemoryError \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
        -Dquarkus.management.enabled=false -Dquarkus.log.level=WARN \
        -Dquarkus.otel.enabled=false -Dquarkus.otel.sdk.disabled=true \
        -jar "$(runner)" >>"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/registry.pid"
}

# Waits until the Confluent-compatible API answers, then sets and checks the global
# compatibility. Fails early when the process dies.
wait_ready() { # dir
    local dir=$1 pid url deadline
    pid=$(<"$dir/registry.pid")
    url=$(<"$dir/url")
    deadline=$((SECONDS + wait_seconds))
    until curl -sf -m 2 -o /dev/null "$url/config"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the registry (pid $pid) exited while starting; last lines of $dir/registry.log:"
            tail -n 15 "$dir/registry.log" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            say "the registry did not answer at $url within ${wait_seconds}s; last lines of $dir/registry.log:"
            tail -n 15 "$dir/registry.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    # Apicurio's default is NONE (any change accepted); keng's subjects are checked BACKWARD.
    local got
    got=$(curl -sf -m 5 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        -d "{\"compatibility\":\"$compatibility\"}" "$url/config") || {
        say "cannot set the global compatibility at $url/config"
        return 1
    }
    got=$(curl -sf -m 5 "$url/config") || got=""
    [[ "$got" == *"\"$compatibility\""* ]] || {
        say "the global compatibility at $url/config is $got, not $compatibility"
        return 1
    }
}

# In the background, detached from the caller's output: runs `down` once the owner process
# is gone, unless `down` ran first (it removes DIR/owner).
watch_owner() { # dir pid
    local dir=$1 owner=$2
    echo "$owner" >"$dir/owner"
    (
        while kill -0 "$owner" 2>/dev/null && [[ -f "$dir/owner" ]]; do sleep 2; done
        if [[ -f "$dir/owner" ]]; then cmd_down "$dir"; fi
    ) </dev/null >/dev/null 2>&1 &
    disown
}

cmd_up() { # dir
    local dir=$1 port
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -z "$(pid_of "$dir")" ]] || die "up: the registry of $dir is already running"
    ensure_app
    port=${KENG_REGISTRY_PORT:-$(free_port)}
    [[ "$port" =~ ^[0-9]+$ ]] || die "up: KENG_REGISTRY_PORT must be a port number, not '$port'"
    echo "$port" >"$dir/port"
    echo "http://127.0.0.1:$port/apis/ccompat/v7" >"$dir/url"
    : >"$dir/registry.log"
    start_registry "$dir"
    if ! wait_ready "$dir"; then
        cmd_down "$dir"
        die "up: the registry in $dir did not start; stopped it"
    fi
    if [[ -n "${KENG_REGISTRY_OWNER_PID:-}" ]]; then
        watch_owner "$dir" "$KENG_REGISTRY_OWNER_PID"
    fi
    say "up: Apicurio Registry $version at $(<"$dir/url") (compatibility $compatibility)"
}

cmd_kill() { # dir
    local dir=$1 pid
    pid=$(pid_of "$dir")
    [[ -n "$pid" ]] || die "kill: the registry of $dir is not running"
    kill -KILL "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    ! kill -0 "$pid" 2>/dev/null || die "kill: the registry (pid $pid) still runs 10 s after SIGKILL"
    rm -f "$dir/registry.pid"
}

cmd_start() { # dir
    local dir=$1
    [[ -f "$dir/port" ]] || die "start: $dir has no registry (run up first)"
    [[ -z "$(pid_of "$dir")" ]] || die "start: the registry of $dir is already running"
    ensure_app
    start_registry "$dir"
    wait_ready "$dir" || die "start: the registry did not answer again"
}

cmd_down() { # dir
    local dir=$1 pid
    [[ -d "$dir" ]] || return 0
    rm -f "$dir/owner"
    pid=$(pid_of "$dir")
    if [[ -n "$pid" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$dir/registry.pid"
}

[[ $# -ge 1 ]] || usage
case "$1" in
    fetch)
        [[ $# -eq 1 ]] || usage
        ensure_app
        ;;
    up | kill | start | down)
        [[ $# -eq 2 ]] || usage
        command=$1
        dir=$2
        if [[ "$command" != up && "$command" != down ]]; then
            [[ -d "$dir" ]] || die "$command: no folder $dir"
            dir=$(cd "$dir" && pwd)
        fi
        "cmd_$command" "$dir"
        ;;
    *) usage ;;
esac
