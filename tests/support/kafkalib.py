"""What the real-Kafka fault tests share: a 3-broker Apache Kafka cluster from
scripts/kafka-cluster.sh with keng's topics made by deploy/create-topics.sh (replication 3,
min.insync.replicas 2), who leads a partition and which node is the active controller, a
producer that sets message timestamps, and reading the input topics back with Apache Avro.
Built on faultlib.py (keng-aggregate and keng-ingest as restartable processes).
Not a test itself (the name does not start with test_)."""

import os
import re
import subprocess
import time

import faultlib as fl
from faultlib import kt

SCRIPT = os.path.join(kt.SOURCE_DIR, "scripts", "kafka-cluster.sh")
CREATE_TOPICS = os.path.join(kt.SOURCE_DIR, "deploy", "create-topics.sh")
CREATE_ACLS = os.path.join(kt.SOURCE_DIR, "deploy", "create-acls.sh")
DAY = 86_400_000


def available():
    """True when the cluster script and Java are there; else the test says it is skipped."""
    return os.path.exists(SCRIPT) and subprocess.run(
        ["sh", "-c", "command -v java && command -v mvn"], capture_output=True).returncode == 0


def skipped(test_name):
    """True, after saying so, when the cluster cannot run here (no script, java or mvn): the
    test then returns at once."""
    if available():
        return False
    print(f"SKIPPED {test_name}: no scripts/kafka-cluster.sh, java or mvn; this is not a pass",
          flush=True)
    return True


def close_all(programs, cluster, work):
    """The end of a test: prints the log tail of each program still running (None skipped)
    and kills it, then stops the cluster and removes the work folder."""
    for p in programs:
        if p is not None and p.process is not None and p.process.alive():
            print(p.process.log_tail())
            p.process.kill()
    if cluster is not None:
        cluster.down()
    work.cleanup()


class Cluster:
    """N Apache Kafka nodes (each broker and controller, ids 1..N) under work/kafka, with
    keng's topics. Node i listens on the i-th address of the bootstrap list.

    secure=True: `up --secure` (SASL_SSL, SCRAM users, the StandardAuthorizer), the topics
    made as keng-admin, and the ACLs of deploy/create-acls.sh for keng-aggregate's groups
    (`groups`, space-separated). The test's own clients then log in (login(user))."""

    def __init__(self, work, nodes=3, partitions=24, secure=False, groups="keng-aggregate"):
        self.dir = work.file("kafka")
        self.nodes = nodes
        self.secure = secure
        started = time.monotonic()
        try:
            self._script("up", str(nodes), *(["--secure"] if secure else []), timeout=900,
                         env=kt.kafka_ports_env(nodes))
        except BaseException:
            self.down()  # brokers it did start must not outlive the test
            raise
        with open(os.path.join(self.dir, "bootstrap")) as f:
            self.bootstrap = f.read().strip()
        self.addresses = self.bootstrap.split(",")
        self.up_s = time.monotonic() - started
        env = dict(os.environ, KAFKA_BIN=os.path.join(self.dir, "kafka-home", "bin"),
                   KENG_BOOTSTRAP=self.bootstrap, KENG_PARTITIONS=str(partitions),
                   KENG_WAIT_SECONDS="180")
        if secure:
            env.update(KENG_ADMIN_CONFIG=self.file("admin.properties"), KENG_GROUPS=groups)
        if nodes < 3:
            env.update(KENG_REPLICATION=str(nodes), KENG_MIN_INSYNC="1")
        for script in [CREATE_TOPICS] + ([CREATE_ACLS] if secure else []):
            out = subprocess.run([script], env=env, capture_output=True, timeout=600)
            if out.returncode != 0:
                self.down()
            kt.check_equal(out.returncode, 0, f"{os.path.relpath(script, kt.SOURCE_DIR)} exit "
                           f"status ({out.stderr.decode(errors='replace')[-1500:]})")
        self.topics_s = time.monotonic() - started - self.up_s
        kt.log(f"cluster of {nodes} up in {self.up_s:.1f}s, topics created in "
               f"{self.topics_s:.1f}s: {self.bootstrap}")

    def file(self, name):
        return os.path.join(self.dir, name)

    def client_conf(self, user):
        """The keng config lines that log a program in as user (DIR/client-<user>.conf), or
        nothing on a plaintext cluster."""
        if not self.secure:
            return ""
        with open(self.file(f"client-{user}.conf")) as f:
            return f.read()

    def login(self, user="keng-admin"):
        """librdkafka settings that log a test's own client in as user (nothing on a plaintext
        cluster)."""
        if not self.secure:
            return {}
        with open(self.file(f"password-{user}")) as f:
            password = f.read().strip()
        return {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": user, "sasl.password": password,
                "ssl.ca.location": self.file("tls/ca.pem")}

    def _admin_args(self):
        return ["--command-config", self.file("admin.properties")] if self.secure else []

    def _script(self, *args, timeout=300, env=None):
        # Where the script supports it, the brokers stop by themselves if this process dies.
        env = dict(os.environ, KENG_KAFKA_OWNER_PID=str(os.getpid()), **(env or {}))
        out = subprocess.run([SCRIPT, args[0], self.dir] + list(args[1:]), capture_output=True,
                             timeout=timeout, env=env)
        kt.check_equal(out.returncode, 0, f"kafka-cluster.sh {' '.join(args)} exit status "
                       f"({out.stderr.decode(errors='replace')[-2000:]})")

    def kill(self, node):
        """SIGKILLs one node."""
        self._script("kill", str(node))
        kt.log(f"SIGKILLed Kafka node {node}")

    def start(self, node):
        """Restarts a node on its data and ports; returns once it is registered."""
        started = time.monotonic()
        self._script("start", str(node), timeout=300)
        kt.log(f"Kafka node {node} back in {time.monotonic() - started:.1f}s")

    def cert(self, node, san):
        """A secured cluster: node's client listener gets a certificate of the same CA for
        subjectAltName san at its next start."""
        self._script("cert", str(node), san)

    def down(self):
        subprocess.run([SCRIPT, "down", self.dir], capture_output=True, timeout=120)

    def tool(self, name, *args, timeout=120):
        """Runs DIR/kafka-home/bin/<name>.sh against the cluster; returns its stdout."""
        out = subprocess.run([os.path.join(self.dir, "kafka-home", "bin", name + ".sh"),
                              "--bootstrap-server", self.bootstrap] + self._admin_args()
                             + list(args),
                             capture_output=True, timeout=timeout)
        kt.check_equal(out.returncode, 0, f"{name}.sh {' '.join(args)} exit status "
                       f"({out.stderr.decode(errors='replace')[-800:]})")
        return out.stdout.decode()

    def alive_bootstrap(self, nodes):
        return ",".join(self.addresses[n - 1] for n in nodes)

    def leader(self, topic, partition, via=None):
        """The node id leading topic's partition, as a live broker reports it (-1: none)."""
        from confluent_kafka.admin import AdminClient
        admin = AdminClient(dict(self.login(), **{"bootstrap.servers": via or self.bootstrap,
                                                  "log_level": 0}))
        md = admin.list_topics(topic, timeout=10)
        return md.topics[topic].partitions[partition].leader

    def active_controller(self, alive=None):
        """The node id of the KRaft quorum's leader (the active controller), from
        kafka-metadata-quorum's status, which the wrappers do not include: it runs the same
        JVM line as kafka-topics.sh with the quorum tool's class."""
        topics = os.path.join(self.dir, "kafka-home", "bin", "kafka-topics.sh")
        with open(topics) as f:
            line = f.read()
        cmd = line.replace("org.apache.kafka.tools.TopicCommand",
                           "org.apache.kafka.tools.MetadataQuorumCommand")
        via = self.alive_bootstrap(alive) if alive else self.bootstrap
        out = subprocess.run(["bash", "-c", cmd, "quorum", "--bootstrap-server", via]
                             + self._admin_args() + ["describe", "--status"],
                             capture_output=True, timeout=120)
        m = re.search(rb"LeaderId:\s*(\d+)", out.stdout)
        kt.check(m is not None, "kafka-metadata-quorum names the quorum's leader", "LeaderId: N",
                 (out.stdout + out.stderr)[-600:])
        return int(m.group(1))


def produce_with_times(bootstrap, records, timeout=120, config=None):
    """records: (topic, key bytes, value bytes, timestamp ms). An idempotent acks=all
    producer sets each message's timestamp (CreateTime), as a gateway that sent it then
    would have; waits for every delivery. config: more librdkafka settings (a login)."""
    from confluent_kafka import Producer
    failures = []
    p = Producer(dict({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                       "linger.ms": 20, "log_level": 2}, **(config or {})))

    def on_delivery(err, msg):
        if err is not None:
            failures.append(err)
    for topic, key, value, ts in records:
        while True:
            try:
                p.produce(topic, value=value, key=key, timestamp=ts, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
    remaining = p.flush(timeout)
    kt.check_equal((remaining, failures[:5]), (0, []), f"delivery of {len(records)} messages")


def reports_over_days(rng, boards, count, resends, now, days):
    """count events of the boards, occurred over the `days` days before the last day, each
    with its report time as its message timestamp (1 in 20 reported 1 to 5 days late), and
    `resends` of them sent again up to 2 days later. Returns (events as (kind, event,
    timestamp), records for produce_with_times); the records are not yet in report order."""
    first = now - days * DAY
    events = []  # (kind, event, message timestamp)
    for _ in range(count):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        occurred = rng.randrange(first, now - DAY)
        late = rng.random() < 0.05
        reported = occurred + (rng.randrange(DAY, 5 * DAY) if late else
                               rng.randrange(0, 3600_000))
        reported = min(reported, now)
        ev = kt.random_event(rng, kind, rng.choice(boards), occurred, reported)
        events.append((kind, ev, reported))
    resent = [(k, ev, min(ts + rng.randrange(0, 2 * DAY), now))
              for k, ev, ts in rng.sample(events, resends)]
    records = [(kt.TOPIC[k], ev["board_id"].encode(), kt.encode_framed(k, ev), ts)
               for k, ev, ts in events + resent]
    return events, records


def read_events(bootstrap, config=None):
    """{event_id: copies} and {event_id: (kind, record)} over both input topics, every
    message decoded with Apache Avro (python3-avro) with its writer's schema. config: more
    librdkafka settings (a login)."""
    copies, events = {}, {}
    for kind, topic in kt.TOPIC.items():
        for m in kt.consume_all(bootstrap, topic, timeout=120, config=config):
            record = kt.decode_framed(kind, m.value())
            eid = record["event_id"]
            copies[eid] = copies.get(eid, 0) + 1
            events[eid] = (kind, record)
    return copies, events


def province(agg):
    """keng-aggregate's all-time province counts, or None when it does not answer."""
    try:
        return agg.all_time("province", "NA")
    except Exception:
        return None
