#!/usr/bin/env bash
# Runs a real Apache Kafka cluster (KRaft) on 127.0.0.1 for keng's tests and benchmarks.
#
#   scripts/kafka-cluster.sh up DIR [N] [--secure]
#                                         start N nodes (default 1), each broker and controller,
#                                         node ids 1..N, data under DIR (an earlier
#                                         cluster's data there is removed); returns once every
#                                         broker is registered and metadata answers. Writes
#                                         DIR/bootstrap, DIR/broker-<id>.pid and
#                                         DIR/kafka-home/bin/{kafka-topics,kafka-configs,
#                                         kafka-consumer-groups,kafka-acls}.sh
#       --secure: clients on SASL_SSL (SCRAM-SHA-512), controllers on mutual TLS, the
#         StandardAuthorizer with allow.everyone.if.no.acl.found=false (only the brokers and
#         keng-admin are super users: the others need deploy/create-acls.sh). openssl makes a
#         CA and the brokers' certificate (DIR/tls/ca.pem; subjectAltName
#         $KENG_KAFKA_CERT_SAN). One SCRAM user per program, made at format time: keng-ingest,
#         keng-aggregate, keng-replay, and keng-admin for the tools, each with a random
#         password in DIR/password-<user> (0600). Writes DIR/client-<user>.conf (keng's
#         kafka.* keys to log in as that user, kafka.bootstrap.servers included) and
#         DIR/admin.properties (--command-config of the Kafka tools, KENG_ADMIN_CONFIG of
#         deploy/create-topics.sh and deploy/create-acls.sh)
#   scripts/kafka-cluster.sh kill DIR ID  SIGKILL one broker
#   scripts/kafka-cluster.sh start DIR ID restart it on the same data and ports, and wait
#                                         until it is registered again
#   scripts/kafka-cluster.sh down DIR     stop everything (safe to run twice)
#   scripts/kafka-cluster.sh cert DIR ID SAN
#                                         a secured cluster: a new certificate from DIR's CA
#                                         for subjectAltName SAN (DNS:kafka.invalid, say) on
#                                         node ID's client listener, taken at its next start
#
# The jars come from Maven Central through scripts/kafka/pom.xml (the pinned version), fetched
# with mvn on first use and kept under ~/.m2. Every wait is bounded.
#
# Environment (defaults in brackets):
#   KENG_KAFKA_VERSION  Apache Kafka version to run [the one scripts/kafka/pom.xml pins]
#   KENG_KAFKA_CACHE    where the jars are copied to [~/.m2/keng-kafka]
#   KENG_KAFKA_WAIT     seconds to wait for brokers to register [180]
#   KENG_KAFKA_HEAP     broker JVM heap options [-Xms256m -Xmx512m]
#   KENG_KAFKA_OWNER_PID  when set, the cluster is stopped once that process is gone (a test
#                       killed on its timeout leaves no brokers behind)
#   KENG_KAFKA_CERT_SAN for `up --secure`: the brokers' subjectAltName
#                       [IP:127.0.0.1,DNS:localhost]; clients check it (hostname verification)
#   KENG_KAFKA_PORTS    for `up`: 2N ports, broker and controller of node 1, then node 2, ...
#                       [free ports the kernel picks]; the tests pass ports they hold, so
#                       that tests running side by side never race for one
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/kafka/pom.xml"
pinned=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
version=${KENG_KAFKA_VERSION:-$pinned}
cache=${KENG_KAFKA_CACHE:-$HOME/.m2/keng-kafka}/$version
wait_seconds=${KENG_KAFKA_WAIT:-180}
heap=${KENG_KAFKA_HEAP:--Xms256m -Xmx512m}
# Small JVMs: the test machines have few cores and run several clusters side by side.
jvm_common=(-XX:+UseSerialGC -XX:CICompilerCount=2 -Djava.awt.headless=true)

say() { echo "kafka-cluster: $*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,31s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# ---- the jars ----

# Copies the broker's and tools' jars into $cache/libs once; later runs use the copy.
ensure_jars() {
    if [[ -f "$cache/complete" ]]; then
        # A cache made before a tool joined main_classes lacks its line: list them again
        # (a rename is atomic, so a test reading the list beside this one never sees half).
        grep -q '^acls=' "$cache/classes" && return 0
        main_classes >"$cache/classes.$$" && mv "$cache/classes.$$" "$cache/classes" && return 0
        die "the jars of Apache Kafka $version lack a class keng needs"
    fi
    command -v java >/dev/null || die "java is missing: run scripts/install-deps.sh (openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "mvn is missing: run scripts/install-deps.sh (maven)"
    mkdir -p "$cache"
    (
        # Two tests starting at once must not both write the same folder.
        exec 9>"$cache/.lock"
        flock -w 600 9 || die "another download of Apache Kafka $version holds $cache/.lock for 10 minutes"
        [[ -f "$cache/complete" ]] && exit 0
        rm -rf "$cache/libs"
        say "fetching Apache Kafka $version jars from Maven Central (once; cached in $cache)"
        # mvn's own timeouts keep a dead network from hanging it; timeout bounds the rest.
        if ! timeout 600 mvn -q -B -f "$pom" -Dkafka.version="$version" \
            -Dmaven.wagon.http.retryHandler.count=2 -Dmaven.wagon.httpconnectionManager.ttlSeconds=30 \
            -Dmaven.wagon.rto=30000 \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cache/libs" \
            >"$cache/mvn.log" 2>&1; then
            die "cannot fetch Apache Kafka $version from Maven Central (mvn failed or timed out; see $cache/mvn.log)"
        fi
        main_classes >"$cache/classes" || die "the jars of Apache Kafka $version lack a class keng needs"
        touch "$cache/complete"
    )
}

# Where each command lives moves between Kafka versions; finds it in the jars.
main_classes() {
    /usr/bin/python3 - "$cache/libs" <<'EOF'
import glob, os, sys, zipfile
names = set()
for jar in glob.glob(os.path.join(sys.argv[1], "*.jar")):
    names.update(zipfile.ZipFile(jar).namelist())
want = {
    "server": ["kafka.Kafka"],
    "storage": ["kafka.tools.StorageTool", "org.apache.kafka.tools.StorageTool"],
    "topics": ["org.apache.kafka.tools.TopicCommand", "kafka.admin.TopicCommand"],
    "configs": ["org.apache.kafka.tools.ConfigCommand", "kafka.admin.ConfigCommand"],
    "consumer-groups": ["org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                        "org.apache.kafka.tools.ConsumerGroupCommand",
                        "kafka.admin.ConsumerGroupCommand"],
    "acls": ["org.apache.kafka.tools.AclCommand", "kafka.admin.AclCommand"],
}
for key, candidates in want.items():
    found = [c for c in candidates if c.replace(".", "/") + ".class" in names]
    if not found:
        sys.exit(f"kafka-cluster: no class for {key} among {candidates}")
    print(f"{key}={found[0]}")
EOF
}

main_class() { sed -n "s/^$1=//p" "$cache/classes"; }

# ---- one cluster folder ----

write_log_configs() {
    local dir=$1
    # log4j 1 (Kafka 3.x) and log4j 2 (Kafka 4.x): brokers log INFO to their log file,
    # tools only warnings to stderr.
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.log.LogCleaner=INFO
log4j.logger.org.apache.kafka.storage.internals.log.LogCleaner=INFO
EOF
    cat >"$dir/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
EOF
    cat >"$dir/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
    cat >"$dir/tools-log4j2.properties" <<'EOF'
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
EOF
}

# DIR/kafka-home/bin/<tool>.sh: what an Apache Kafka distribution's bin/ offers, over the jars.
write_tools() {
    local dir=$1 bin="$1/kafka-home/bin" tool class
    mkdir -p "$bin"
    for tool in topics configs consumer-groups acls; do
        class=$(main_class "$tool")
        cat >"$bin/kafka-$tool.sh" <<EOF
#!/usr/bin/env bash
# kafka-$tool.sh of Apache Kafka $version, over the jars in $cache/libs.
exec java -Xmx256m -XX:TieredStopAtLevel=1 ${jvm_common[*]} \\
    -Dlog4j.configuration=file:$dir/tools-log4j.properties \\
    -Dlog4j2.configurationFile=$dir/tools-log4j2.properties \\
    -cp "$cache/libs/*" $class "\$@"
EOF
        chmod +x "$bin/kafka-$tool.sh"
    done
}

free_ports() { # count
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_node_config() { # dir id n voters broker_port controller_port
    local dir=$1 id=$2 n=$3 voters=$4 bport=$5 cport=$6
    local rf=$((n < 3 ? n : 3)) min_isr=$((n < 2 ? 1 : 2))
    mkdir -p "$dir/node-$id/data"
    (
        umask 077 # a secured node's file holds the broker's own password
        cat >"$dir/node-$id/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
EOF
    )
    if [[ -f "$dir/secure" ]]; then
        write_secure_listeners "$dir" "$id" "$bport" "$cport" >>"$dir/node-$id/server.properties"
    else
        cat >>"$dir/node-$id/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
EOF
    fi
    cat >>"$dir/node-$id/server.properties" <<EOF
log.dirs=$dir/node-$id/data
default.replication.factor=$rf
min.insync.replicas=$min_isr
# As in docker-compose.yml: topics come only from whoever runs deploy/create-topics.sh (or
# the test), never from a client's typo.
auto.create.topics.enable=false
unclean.leader.election.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
# A test's group starts consuming at once instead of after 3 s.
group.initial.rebalance.delay.ms=0
# Few threads and small segments: several clusters share two cores.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=16777216
log.retention.check.interval.ms=30000
EOF
}

# ---- the secured cluster (--secure) ----

# The SCRAM users: one per keng program, and the admin the tools run as. kafka-broker is the
# brokers' own user between themselves.
keng_users=(keng-ingest keng-aggregate keng-replay keng-admin)

# A random secret of 32 hex digits.
secret() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# DIR/tls: a CA, and a certificate of the brokers signed by it for KENG_KAFKA_CERT_SAN, in
# PKCS12 keystores. broker.p12 serves the controller listener and is a node's client
# certificate towards the controllers (CN=kafka-broker); listener-<id>.p12, the same at
# first, serves clients on SASL_SSL, so that a test may put another one there.
make_tls() { # dir n
    local dir=$1 n=$2 tls="$1/tls" id
    local san=${KENG_KAFKA_CERT_SAN:-IP:127.0.0.1,DNS:localhost}
    command -v openssl >/dev/null || die "openssl is missing: it makes the secured cluster's certificates"
    mkdir -p "$tls"
    chmod 700 "$tls"
    (umask 077 && secret >"$tls/store-password")
    {
        openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 30 -subj "/CN=keng test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
            -keyout "$tls/ca.key" -out "$tls/ca.pem" &&
            make_cert "$dir" broker "$san"
    } >"$tls/openssl.log" 2>&1 || {
        cat "$tls/openssl.log" >&2
        die "up: openssl could not make the certificates"
    }
    chmod 644 "$tls/ca.pem"
    for ((id = 1; id <= n; id++)); do cp "$tls/broker.p12" "$tls/listener-$id.p12"; done
}

# DIR/tls/NAME.p12 (and NAME.pem): a key and a certificate for CN=kafka-broker and the
# subjectAltName SAN, signed by DIR/tls/ca.key, for TLS server and client.
make_cert() { # dir name san
    local tls="$1/tls" name=$2 san=$3
    openssl req -new -nodes -newkey rsa:2048 -subj "/CN=kafka-broker" \
        -keyout "$tls/$name.key" -out "$tls/$name.csr" &&
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$tls/$name.ext" &&
        openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
            -CAcreateserial -days 30 -sha256 -extfile "$tls/$name.ext" -out "$tls/$name.pem" &&
        openssl pkcs12 -export -inkey "$tls/$name.key" -in "$tls/$name.pem" -certfile "$tls/ca.pem" \
            -name kafka-broker -passout "file:$tls/store-password" -out "$tls/$name.p12"
}

# DIR/password-<user> for each user and the brokers (mode 0600), and DIR/admin.properties
# for the Kafka tools (keng-admin).
make_users() { # dir
    local dir=$1 user
    (
        umask 077
        for user in "${keng_users[@]}" kafka-broker; do secret >"$dir/password-$user"; done
        cat >"$dir/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="keng-admin" password="$(<"$dir/password-keng-admin")";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
EOF
    )
}

# DIR/client-<user>.conf: the keng config keys that log a program in as that user.
write_client_confs() { # dir bootstrap
    local dir=$1 bootstrap=$2 user
    for user in "${keng_users[@]}"; do
        cat >"$dir/client-$user.conf" <<EOF
# keng's config keys for the secured test cluster in $dir, as $user.
kafka.bootstrap.servers=$bootstrap
kafka.security.protocol=SASL_SSL
kafka.sasl.mechanisms=SCRAM-SHA-512
kafka.sasl.username=$user
kafka.sasl.password_file=$dir/password-$user
kafka.ssl.ca.location=$dir/tls/ca.pem
EOF
    done
}

# The --add-scram arguments of kafka-storage format, one a line: every user's SCRAM-SHA-512
# credential goes into the metadata the cluster starts from.
scram_args() { # dir
    local dir=$1 user
    for user in "${keng_users[@]}" kafka-broker; do
        printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$user,password=$(<"$dir/password-$user")]"
    done
}

# The listener lines of a secured node: clients, and the brokers between themselves, on
# SASL_SSL with SCRAM-SHA-512; the controllers on mutual TLS (a KRaft controller cannot take
# SCRAM, whose credentials live in the metadata it serves). The StandardAuthorizer denies
# what no ACL allows; the brokers (by certificate and by SCRAM) and keng-admin are super
# users.
write_secure_listeners() { # dir id broker_port controller_port
    local dir=$1 id=$2 bport=$3 cport=$4 store
    store=$(<"$dir/tls/store-password")
    cat <<EOF
listeners=SASL_SSL://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=SASL_SSL://127.0.0.1:$bport
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="kafka-broker" password="$(<"$dir/password-kafka-broker")";
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$dir/tls/listener-$id.p12
listener.name.sasl_ssl.ssl.keystore.password=$store
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$store
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:CN=kafka-broker;User:kafka-broker;User:keng-admin
EOF
}

pid_of() { # dir id: the pid of a running broker, or nothing
    local f="$1/broker-$2.pid" pid
    [[ -f "$f" ]] || return 0
    pid=$(<"$f")
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
    fi
}

start_node() { # dir id
    local dir=$1 id=$2 class
    class=$(main_class server)
    # shellcheck disable=SC2086 # heap holds several options
    nohup java $heap "${jvm_common[@]}" -XX:+ExitOnOutOfMemoryError \
        -Dlog4j.configuration="file:$dir/log4j.properties" \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -Dkafka.logs.dir="$dir/node-$id" \
        -cp "$cache/libs/*" "$class" "$dir/node-$id/server.properties" \
        >>"$dir/node-$id/server.log" 2>&1 </dev/null &
    echo $! >"$dir/broker-$id.pid"
}

# Waits until each broker named answers metadata itself and lists itself (registered and
# unfenced). Asking the broker itself matters after a restart: the others still list the old
# incarnation until its session expires. Fails early when one of the processes dies.
wait_registered() { # dir ids...
    local dir=$1
    shift
    local pids=() id
    for id in "$@"; do pids+=("$(<"$dir/broker-$id.pid")"); done
    /usr/bin/python3 - "$(<"$dir/bootstrap")" "$wait_seconds" "${*}" "${pids[*]}" "$dir" <<'EOF' ||
import os, sys, time
from confluent_kafka.admin import AdminClient
bootstrap, timeout = sys.argv[1].split(","), float(sys.argv[2])
dir_ = sys.argv[5]
login = {}
if os.path.exists(os.path.join(dir_, "secure")):
    # keng-admin; the host name is not checked here, so that a test may serve clients a
    # certificate for another name and still see the node registered.
    with open(os.path.join(dir_, "password-keng-admin")) as f:
        login = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                 "sasl.username": "keng-admin", "sasl.password": f.read().strip(),
                 "ssl.ca.location": os.path.join(dir_, "tls", "ca.pem"),
                 "ssl.endpoint.identification.algorithm": "none"}
pending = dict(zip((int(i) for i in sys.argv[3].split()), (int(p) for p in sys.argv[4].split())))
deadline = time.monotonic() + timeout
while pending and time.monotonic() < deadline:
    for id_, pid in list(pending.items()):
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(f"kafka-cluster: broker {id_} (pid {pid}) exited while starting")
        try:
            # A new client per try: its first request goes to the one address it knows.
            admin = AdminClient(dict(login, **{"bootstrap.servers": bootstrap[id_ - 1],
                                               "log_level": 0}))
            if id_ in admin.list_topics(timeout=2).brokers:
                del pending[id_]
        except Exception:
            pass
    if pending:
        time.sleep(0.5)
if pending:
    sys.exit(f"kafka-cluster: brokers {sorted(pending)} not registered within {timeout:.0f}s")
EOF
        {
            for id in "$@"; do
                say "log of broker $id ($dir/node-$id/server.log), last lines:"
                tail -n 15 "$dir/node-$id/server.log" >&2 || true
            done
            return 1
        }
}

cmd_up() { # dir n secure(0|1)
    local dir=$1 n=$2 secure=$3 ports voters="" cluster_id id class
    [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "up: N must be 1..99, not '$n'"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for ((id = 1; id <= n; id++)); do
        [[ -z "$(pid_of "$dir" "$id")" ]] || die "up: broker $id of $dir is already running"
    done
    # A new cluster each time: the data of an earlier one in DIR is removed.
    rm -rf "$dir"/node-* "$dir/bootstrap" "$dir/nodes" "$dir/kafka-home" "$dir/secure" \
        "$dir/tls" "$dir"/password-* "$dir"/client-*.conf "$dir/admin.properties"
    ensure_jars
    write_log_configs "$dir"
    write_tools "$dir"
    local scram=()
    if ((secure)); then
        touch "$dir/secure"
        make_tls "$dir" "$n"
        make_users "$dir"
        mapfile -t scram < <(scram_args "$dir")
    fi

    if [[ -n "${KENG_KAFKA_PORTS:-}" ]]; then
        read -r -a ports <<<"$KENG_KAFKA_PORTS"
        ((${#ports[@]} == 2 * n)) || die "up: KENG_KAFKA_PORTS has ${#ports[@]} ports; $n node(s) need $((2 * n))"
    else
        read -r -a ports <<<"$(free_ports $((2 * n)))"
    fi
    local bootstrap=""
    for ((id = 1; id <= n; id++)); do
        voters+="${voters:+,}$id@127.0.0.1:${ports[2 * id - 1]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[2 * id - 2]}"
    done
    # A cluster id as Kafka makes them: 16 random bytes in URL-safe base64, never starting
    # with '-' (a command line would take it for an option).
    cluster_id=$(/usr/bin/python3 -c '
import base64, uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        print(i)
        break')
    class=$(main_class storage)
    for ((id = 1; id <= n; id++)); do
        write_node_config "$dir" "$id" "$n" "$voters" "${ports[2 * id - 2]}" "${ports[2 * id - 1]}"
        # Formatting is one JVM per node; they run side by side.
        timeout 120 java -Xmx256m -XX:TieredStopAtLevel=1 "${jvm_common[@]}" \
            -Dlog4j.configuration="file:$dir/tools-log4j.properties" \
            -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" \
            -cp "$cache/libs/*" "$class" format --cluster-id "$cluster_id" --ignore-formatted \
            --config "$dir/node-$id/server.properties" "${scram[@]}" >"$dir/node-$id/format.log" 2>&1 &
    done
    local failed=0
    for ((id = 1; id <= n; id++)); do
        wait -n || failed=1
    done
    if ((failed)); then
        cat "$dir"/node-*/format.log >&2
        die "up: formatting the storage failed"
    fi
    echo "$bootstrap" >"$dir/bootstrap"
    echo "$n" >"$dir/nodes"
    if ((secure)); then write_client_confs "$dir" "$bootstrap"; fi
    for ((id = 1; id <= n; id++)); do start_node "$dir" "$id"; done
    local ids
    ids=$(seq 1 "$n")
    # shellcheck disable=SC2086 # one id per word
    if ! wait_registered "$dir" $ids; then
        cmd_down "$dir"
        die "up: the cluster in $dir did not start; stopped it"
    fi
    if [[ -n "${KENG_KAFKA_OWNER_PID:-}" ]]; then
        watch_owner "$dir" "$KENG_KAFKA_OWNER_PID"
    fi
    say "up: $n broker(s) of Apache Kafka $version at $bootstrap$( ((secure)) && echo " (SASL_SSL)")"
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

cmd_kill() { # dir id
    local dir=$1 id=$2 pid
    pid=$(pid_of "$dir" "$id")
    [[ -n "$pid" ]] || die "kill: broker $id of $dir is not running"
    kill -KILL "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    ! kill -0 "$pid" 2>/dev/null || die "kill: broker $id (pid $pid) still runs 10 s after SIGKILL"
    rm -f "$dir/broker-$id.pid"
}

cmd_start() { # dir id
    local dir=$1 id=$2
    [[ -f "$dir/node-$id/server.properties" ]] || die "start: $dir has no broker $id"
    [[ -z "$(pid_of "$dir" "$id")" ]] || die "start: broker $id of $dir is already running"
    ensure_jars
    start_node "$dir" "$id"
    wait_registered "$dir" "$id" || die "start: broker $id did not register again"
}

cmd_cert() { # dir id san
    local dir=$1 id=$2 san=$3
    [[ -f "$dir/secure" ]] || die "cert: $dir is not a secured cluster (up --secure)"
    [[ -f "$dir/tls/listener-$id.p12" ]] || die "cert: $dir has no node $id"
    make_cert "$dir" "listener-$id-new" "$san" >"$dir/tls/openssl.log" 2>&1 || {
        cat "$dir/tls/openssl.log" >&2
        die "cert: openssl could not make the certificate"
    }
    mv "$dir/tls/listener-$id-new.p12" "$dir/tls/listener-$id.p12"
}

cmd_down() { # dir
    local dir=$1 pids=() f pid
    [[ -d "$dir" ]] || return 0
    rm -f "$dir/owner"
    for f in "$dir"/broker-*.pid; do
        [[ -f "$f" ]] || continue
        pid=$(<"$f")
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # A clean shutdown of the last nodes of a KRaft quorum can wait for a controller that
    # is gone; the data is thrown away anyway, so after 5 s SIGKILL.
    for _ in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    rm -f "$dir"/broker-*.pid
}

[[ $# -ge 2 ]] || usage
command=$1
dir=$2
case "$command" in
    up)
        shift 2
        n=1 secure=0
        for arg in "$@"; do
            case "$arg" in
                --secure) secure=1 ;;
                [0-9]*) n=$arg ;;
                *) usage ;;
            esac
        done
        [[ $# -le 2 ]] || usage
        cmd_up "$dir" "$n" "$secure"
        ;;
    kill | start)
        [[ $# -eq 3 && "$3" =~ ^[0-9]+$ ]] || usage
        "cmd_$command" "$(cd "$dir" && pwd)" "$3"
        ;;
    down)
        [[ $# -eq 2 ]] || usage
        cmd_down "$dir"
        ;;
    cert)
        [[ $# -eq 4 && "$3" =~ ^[0-9]+$ ]] || usage
        cmd_cert "$(cd "$dir" && pwd)" "$3" "$4"
        ;;
    *) usage ;;
esac
