"""Shared harness for keng's integration and fault tests.

Starts the real programs from $KENG_BIN_DIR (keng-broker, keng-aggregate, ...) as child
processes on 127.0.0.1, talks to them over HTTP and Kafka, and cleans up after itself.
Everything here is bounded in time: every wait has a deadline and raises when it passes.
Runs under Debian's /usr/bin/python3 (python3-avro, python3-confluent-kafka).

Every Python test imports its support from tests/support/ (this file, faultlib.py,
kafkalib.py). ctest puts that folder on PYTHONPATH; to run a test by hand:
    PYTHONPATH=tests/support KENG_BIN_DIR=build/bin python3 tests/faults/test_ingest_kills.py
"""

import base64
import io
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

BIN_DIR = os.environ.get("KENG_BIN_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
SOURCE_DIR = os.environ.get("KENG_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
SCHEMA_DIR = os.path.join(SOURCE_DIR, "schemas")

CATEGORIES = ["THEFT", "ASSAULT", "PUBLIC_DISORDER", "DRUGS", "GAMBLING", "DOMESTIC_VIOLENCE",
              "TRAFFIC", "HUMAN_TRAFFICKING", "ILLEGAL_MIGRATION", "FRAUD", "PROPERTY_DAMAGE",
              "OTHER"]
SEVERITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
RESOLUTIONS = ["PENDING", "HANDLED_LOCALLY", "TRANSFERRED_TO_POLICE"]
SOURCES = ["MOBILE_APP", "SMS", "HOTLINE", "PATROL", "CAMERA", "OTHER"]
DISPUTES = ["LAND", "FAMILY", "NEIGHBOR", "DEBT", "INHERITANCE", "OTHER"]
OUTCOMES = ["RECONCILED", "NOT_RECONCILED", "REFERRED"]
# The ids Python writes with by default (Incident v1: what producers from before Incident v2
# wrote). keng's producers write the newest, Incident v2 (id 4); decode_framed takes any id.
SCHEMA_IDS = {"incident": 1, "mediation": 2, "alert": 3}
SUBJECTS = {"incident": "vn.antt.Incident", "mediation": "vn.antt.Mediation",
            "alert": "vn.antt.Alert"}


class TestFailure(AssertionError):
    pass


def check(cond, what, expected=None, actual=None):
    """Fails the test with both values when cond is false."""
    if not cond:
        raise TestFailure(f"{what}: expected {expected!r}, got {actual!r}")


def check_equal(actual, expected, what):
    check(actual == expected, what, expected, actual)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def close_all(processes, broker, work):
    """The end of a test: prints the log tail of each process given (None skipped; a test
    passes only those a failure left behind) and kills it, then stops the broker and removes
    the work folder."""
    for p in processes:
        if p is not None:
            print(p.log_tail())
            p.kill()
    broker.stop()
    work.cleanup()


def wait_until(fn, timeout, what, interval=0.1):
    """Calls fn until it returns a true value, for at most timeout seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # the thing waited for may not be up yet
            last_error = e
        time.sleep(interval)
    raise TestFailure(f"timed out after {timeout}s waiting for {what}"
                      + (f" (last error: {last_error})" if last_error else ""))


# Ports for the programs a test starts. A port asked of the kernel (bind to 0) is free only
# until the socket closes: before the program binds it, a test running beside this one can
# be handed the same port, or an outgoing connection can take it as its local port. So the
# ports come from below the kernel's ephemeral range, where neither happens, and each is
# claimed by an flock on a file named by the port: the claim holds while this process lives
# (restarts on the same port included), and the kernel drops it when the process ends,
# however it ends.
PORT_CLAIMS = os.path.join(tempfile.gettempdir(), f"keng-test-ports-{os.getuid()}")
_claims = []  # file descriptors of the claims this process holds


def _port_pool():
    """The ports free_port hands out: those below the ephemeral range (or above it), or
    None when the range leaves no room and the kernel must choose."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 10000 >= 2000:
        return range(10000, low)
    if 65535 - high >= 2000:
        return range(high + 1, 65536)
    return None


def _claim(port):
    """True when this process now holds the claim on port."""
    import fcntl
    fd = os.open(os.path.join(PORT_CLAIMS, str(port)), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claims.append(fd)
    return True


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A port on 127.0.0.1 that nothing listens on and that no other test is handed while
    this process lives."""
    os.makedirs(PORT_CLAIMS, exist_ok=True)
    pool = _port_pool()
    if pool is None:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if _claim(port):
                return port
    import random
    start = random.SystemRandom().randrange(len(pool))
    for i in range(len(pool)):
        port = pool[(start + i) % len(pool)]
        if _claim(port):
            if _bindable(port):
                return port
            os.close(_claims.pop())
    raise TestFailure(f"no free port in {pool.start}..{pool.stop - 1}")


def kafka_ports_env(nodes):
    """The environment that has scripts/kafka-cluster.sh `up` put its nodes on claimed ports
    (two per node: broker and controller), which stay this test's for a `start` after a
    `kill`."""
    return {"KENG_KAFKA_PORTS": " ".join(str(free_port()) for _ in range(2 * nodes))}


def binary(name):
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        raise TestFailure(f"{path} is missing: build first")
    return path


class Workdir:
    """A temporary directory removed at exit unless KENG_KEEP_TMP is set."""

    def __init__(self, prefix="keng-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def file(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        if not os.environ.get("KENG_KEEP_TMP"):
            shutil.rmtree(self.path, ignore_errors=True)


class Process:
    """A keng program running in the background, its stderr in a log file."""

    # Two programs of one name started in the same millisecond must not share a log file
    # (each would truncate the other's): the start time is followed by a sequence number.
    _started = itertools.count()

    def __init__(self, name, args, workdir, env=None, stdin=None):
        self.name = name
        self.log_path = workdir.file(
            f"{name}-{int(time.time() * 1000)}-{next(Process._started)}.log")
        self.log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen([binary(name)] + list(args), stdout=subprocess.PIPE,
                                     stderr=self.log_file, stdin=stdin, env=full_env)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM, then waits; returns the exit status. SIGKILL if it does not stop."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TestFailure(f"{self.name} did not stop within {timeout}s of SIGTERM; "
                              f"log: {self.log_tail()}")
        finally:
            self.log_file.close()

    def kill(self):
        if self.alive():
            self.proc.kill()
        self.proc.wait(10)
        self.log_file.close()

    def log_text(self):
        """Everything the program logged so far."""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


# Which broker the tests run against: "embedded" (keng-broker, librdkafka's mock cluster) or
# "kafka" (a real Apache Kafka cluster from scripts/kafka-cluster.sh).
BROKER_KIND = os.environ.get("KENG_TEST_BROKER", "embedded")
KAFKA_CLUSTER = os.path.join(SOURCE_DIR, "scripts", "kafka-cluster.sh")
TOPICS = ["antt.incidents", "antt.mediations", "antt.alerts", "antt.deadletter",
          "antt.board-counts"]
# The registry versions (keng-registry --publish): one partition, compacted, with room for a
# whole registry, as deploy/create-topics.sh and keng-broker create it.
REGISTRY_TOPIC = "antt.registry"
REGISTRY_TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": "10485760"}


def Broker(workdir, partitions=4, brokers=1):
    """The broker a test runs against, chosen by KENG_TEST_BROKER: both kinds have
    .bootstrap and stop(), and keng's five topics with the given partition count."""
    if BROKER_KIND == "embedded":
        return EmbeddedBroker(workdir, partitions, brokers)
    if BROKER_KIND == "kafka":
        return KafkaBroker(workdir, partitions, brokers)
    raise TestFailure(f"KENG_TEST_BROKER is '{BROKER_KIND}': it must be 'embedded' or 'kafka'")


def on_real_kafka():
    return BROKER_KIND == "kafka"


class EmbeddedBroker:
    """keng-broker: the embedded mock cluster, with fault commands on its stdin."""

    def __init__(self, workdir, partitions=4, brokers=1):
        self.process = Process("keng-broker", ["--partitions", str(partitions), "--broker-count",
                                               str(brokers), "--control"], workdir,
                               stdin=subprocess.PIPE)
        line = self.process.proc.stdout.readline().decode().strip()
        if not line:
            raise TestFailure(f"keng-broker printed no bootstrap list: {self.process.log_tail()}")
        self.bootstrap = line

    def command(self, line):
        """Sends one fault command ('down 1', 'leader antt.incidents 0 2', ...)."""
        self.process.proc.stdin.write((line + "\n").encode())
        self.process.proc.stdin.flush()
        answer = self.process.proc.stdout.readline().decode().strip()
        check_equal(answer, "ok", f"broker command '{line}'")

    def down(self, node_id):
        """Takes one broker down: its connections close and it refuses new ones."""
        self.command(f"down {node_id}")

    def up(self, node_id):
        self.command(f"up {node_id}")

    def stop(self):
        return self.process.stop()


def kafka_cluster(*args, timeout=900):
    """Runs scripts/kafka-cluster.sh with args; fails the test with its output on an error."""
    try:
        # The cluster goes down by itself should this process die without stopping it.
        env = dict(os.environ, KENG_KAFKA_OWNER_PID=str(os.getpid()))
        if args[0] == "up":
            env.update(kafka_ports_env(int(args[2]) if len(args) > 2 else 1))
        r = subprocess.run([KAFKA_CLUSTER] + [str(a) for a in args], capture_output=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"kafka-cluster.sh {' '.join(map(str, args))} ran over {timeout}s")
    if r.returncode != 0:
        raise TestFailure(f"kafka-cluster.sh {' '.join(map(str, args))} exited "
                          f"{r.returncode}: {r.stderr.decode(errors='replace')[-2000:]}")


# A test process keeps its real Kafka cluster from one test function to the next: the next
# KafkaBroker of as many nodes takes it over with every topic deleted and keng's created
# afresh, instead of starting the JVMs again (5 to 30 s of both cores each time). A cluster
# with a node down or a consumer group that still has members (a group of the same name
# would wait out their sessions) is not taken over: a new one starts, as it always did.
_spare_clusters = {}  # node count -> folder of a running cluster no KafkaBroker uses
_clusters_down = set()


def _cluster_down(folder):
    """Stops the cluster in folder and removes it; safe twice."""
    if folder in _clusters_down:
        return
    _clusters_down.add(folder)
    try:
        kafka_cluster("down", folder, timeout=120)
    finally:
        if not os.environ.get("KENG_KEEP_TMP"):
            shutil.rmtree(os.path.dirname(folder), ignore_errors=True)


def _take_over(folder, nodes):
    """Makes a spare cluster as good as new: every node running, no consumer group with
    members, no topic but Kafka's own. False, after saying why, when it cannot be."""
    from confluent_kafka.admin import AdminClient
    try:
        for node in range(1, nodes + 1):
            with open(os.path.join(folder, f"broker-{node}.pid")) as f:
                os.kill(int(f.read()), signal.SIGCONT)  # a test may have left it paused
        with open(os.path.join(folder, "bootstrap")) as f:
            admin = AdminClient({"bootstrap.servers": f.read().strip(), "log_level": 0})
        md = admin.list_topics(timeout=10)
        check_equal(len(md.brokers), nodes, "nodes in the metadata")
        busy = [g.id for g in admin.list_groups(timeout=10) if g.members]
        check_equal(busy, [], "consumer groups with members")
        names = [t for t in md.topics if not t.startswith("__")]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result(60)
            wait_until(lambda: not set(names) & set(admin.list_topics(timeout=5).topics), 60,
                       f"topics {names} deleted", 0.2)
        return True
    except Exception as e:
        log(f"a new Kafka cluster instead of the one in {folder}: {e}")
        return False


class KafkaBroker:
    """A real Apache Kafka cluster of `brokers` nodes (scripts/kafka-cluster.sh) with keng's
    topics created as keng-broker creates them: the one an earlier test function of this
    process stopped using (see _take_over), or a new one in a folder of its own."""

    def __init__(self, workdir, partitions=4, brokers=1):
        import atexit
        self.brokers = brokers
        self.stopped = False
        self.dir = _spare_clusters.pop(brokers, None)
        if self.dir is not None and not _take_over(self.dir, brokers):
            _cluster_down(self.dir)
            self.dir = None
        if self.dir is None:
            self.dir = Workdir(prefix="keng-kafka-").file("kafka")
            # Stopped at exit even when a test fails before its own clean-up, or `up` fails
            # half way.
            atexit.register(_cluster_down, self.dir)
            try:
                kafka_cluster("up", self.dir, brokers)
            except TestFailure:
                _cluster_down(self.dir)
                raise
        with open(os.path.join(self.dir, "bootstrap")) as f:
            self.bootstrap = f.read().strip()
        self.create_topics(TOPICS, partitions, min(brokers, 3))
        self.create_topics([REGISTRY_TOPIC], 1, min(brokers, 3), config=REGISTRY_TOPIC_CONFIG)

    def create_topics(self, names, partitions, replication, timeout=120, config=None):
        """Creates the topics (with config, else keng's settings for each) and waits until
        every partition has a leader."""
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        new = [NewTopic(t, num_partitions=partitions, replication_factor=replication,
                        config=config if config is not None else
                        {"cleanup.policy": "compact"} if t == "antt.board-counts" else {})
               for t in names]
        for topic, future in admin.create_topics(new, request_timeout=60).items():
            try:
                future.result(timeout)
            except Exception as e:
                raise TestFailure(f"cannot create topic {topic} on {self.bootstrap}: {e}")

        def described():
            md = admin.list_topics(timeout=5)
            for t in names:
                parts = md.topics.get(t)
                if (parts is None or parts.error is not None
                        or len(parts.partitions) != partitions
                        or any(p.leader < 0 for p in parts.partitions.values())):
                    return False
            return True
        wait_until(described, timeout, f"leaders for every partition of {names}", 0.2)

        # Metadata names a leader a moment before that broker serves the partition; a test's
        # first request must not meet NOT_LEADER, so wait until each answers ListOffsets.
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "keng-test-probe"})
        pending = [(t, p) for t in names for p in range(partitions)]

        def serving():
            while pending:
                t, p = pending[-1]
                c.get_watermark_offsets(TopicPartition(t, p), timeout=5)
                pending.pop()
            return True
        try:
            wait_until(serving, timeout, f"every partition of {names} served by its leader", 0.2)
        finally:
            c.close()

    def command(self, line):
        raise TestFailure(f"broker command '{line}' needs the embedded broker: real Kafka has "
                          "no fault commands (run this test with KENG_TEST_BROKER=embedded)")

    def kill_broker(self, node_id):
        """SIGKILLs one node of the cluster."""
        kafka_cluster("kill", self.dir, node_id, timeout=60)

    def start_broker(self, node_id):
        """Restarts a killed node and waits until it is registered again."""
        kafka_cluster("start", self.dir, node_id, timeout=300)

    # The names EmbeddedBroker has for taking a broker down and up, so that one test runs on
    # both.
    down = kill_broker
    up = start_broker

    def pause(self, node_id):
        """SIGSTOPs one node: a broker that holds its connections and answers nothing, until
        resume()."""
        with open(os.path.join(self.dir, f"broker-{node_id}.pid")) as f:
            os.kill(int(f.read()), signal.SIGSTOP)

    def resume(self, node_id):
        with open(os.path.join(self.dir, f"broker-{node_id}.pid")) as f:
            os.kill(int(f.read()), signal.SIGCONT)

    def stop(self):
        """Leaves the cluster to the next KafkaBroker of this process; it stops at exit."""
        if not self.stopped:
            self.stopped = True
            if self.brokers in _spare_clusters:
                _cluster_down(_spare_clusters[self.brokers])
            _spare_clusters[self.brokers] = self.dir
        return 0


# ---- HTTP ----

def http(method, url, body=None, headers=None, timeout=10):
    """Returns (status, headers, body bytes); never raises for an HTTP error status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url, timeout=10):
    status, _, body = http("GET", url, timeout=timeout)
    if status != 200:
        raise TestFailure(f"GET {url}: status {status}: {body[:300]!r}")
    return json.loads(body)


# ---- Avro with the Confluent framing ----

_schemas = {}


def schema(kind):
    import avro.schema
    if kind not in _schemas:
        with open(os.path.join(SCHEMA_DIR, f"{kind}.v1.avsc")) as f:
            _schemas[kind] = avro.schema.parse(f.read())
    return _schemas[kind]


_by_id = {}


def schema_by_id(schema_id):
    """(subject, parsed schema) of a schema id, as schemas/manifest.csv lists it."""
    import avro.schema
    if not _by_id:
        with open(os.path.join(SCHEMA_DIR, "manifest.csv")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    sid, subject, _, name = line.split(",")
                    with open(os.path.join(SCHEMA_DIR, name)) as s:
                        _by_id[int(sid)] = (subject, avro.schema.parse(s.read()))
    check(schema_id in _by_id, "a schema id listed in schemas/manifest.csv", sorted(_by_id),
          schema_id)
    return _by_id[schema_id]


def to_avro_record(kind, event):
    """The JSON form of an event (times as epoch ms, location as an object) as Avro wants it."""
    from datetime import datetime, timezone
    record = dict(event)
    # Apache Avro's Python library wants timestamp-millis fields as aware datetimes.
    for field in ("occurred_at", "reported_at"):
        record[field] = datetime.fromtimestamp(record[field] / 1000, timezone.utc)
    record.setdefault("group_id", None)
    record.setdefault("summary", None)
    if kind == "incident":
        record.setdefault("location", None)
    else:
        record.setdefault("related_incident_id", None)
    return record


def encode_framed(kind, event, schema_id=None):
    import avro.io
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id or SCHEMA_IDS[kind]))
    avro.io.DatumWriter(schema(kind)).write(to_avro_record(kind, event), avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def decode_framed(kind, data):
    """The record of a framed message, read with its writer's schema: any version of the
    kind's subject."""
    import avro.io
    magic, schema_id = struct.unpack(">bI", data[:5])
    check_equal(magic, 0, "magic byte")
    subject, writer = schema_by_id(schema_id)
    check_equal(subject, SUBJECTS[kind], f"subject of schema id {schema_id}")
    record = avro.io.DatumReader(writer).read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    for field in ("occurred_at", "reported_at"):
        record[field] = round(record[field].timestamp() * 1000)
    return record


# ---- Kafka ----

TOPIC = {"incident": "antt.incidents", "mediation": "antt.mediations"}


def messages(events):
    """(kind, event) pairs as (topic, key, Confluent-framed Avro value), keyed by board_id
    as keng's producers key them."""
    return [(TOPIC[kind], ev["board_id"].encode(), encode_framed(kind, ev)) for kind, ev in events]


def metric_value(series, name, **labels):
    """In metrics()'s answer, the value of the first series of name whose labels include
    labels, or None."""
    for key, value in series.items():
        if key == name and not labels:
            return value
        if key.startswith(name + "{") and all(f'{k}="{v}"' in key for k, v in labels.items()):
            return value
    return None


def metrics(base, timeout=5, headers=None):
    """GET base/metrics as {series: value}."""
    status, _, body = http("GET", base + "/metrics", headers=headers, timeout=timeout)
    check_equal(status, 200, f"GET {base}/metrics status")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class EventProducer:
    """An idempotent acks=all producer that keeps every failed delivery for the check."""

    def __init__(self, bootstrap, config=None):
        from confluent_kafka import Producer
        self.producer = Producer(dict({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                       "acks": "all", "linger.ms": 5}, **(config or {})))
        self.failures = []

    def _on_delivery(self, err, msg):
        if err is not None:
            self.failures.append(err)

    def send(self, messages, timeout=60):
        """messages: iterable of (topic, key bytes, value bytes). Waits for every delivery
        and fails the test if one failed. Returns how many were sent."""
        n = 0
        for topic, key, value in messages:
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key,
                                          on_delivery=self._on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            n += 1
        remaining = self.producer.flush(timeout)
        check_equal((remaining, self.failures), (0, []), f"delivery of {n} messages")
        return n


def produce(bootstrap, messages, timeout=60):
    """messages: iterable of (topic, key bytes, value bytes). Waits for every delivery."""
    return EventProducer(bootstrap).send(messages, timeout)


def consume_all(bootstrap, topic, timeout=60, config=None):
    """Every message of topic up to the high watermarks seen at the start, as a list of
    confluent_kafka Message objects. config: more librdkafka settings (a login)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer(dict({"bootstrap.servers": bootstrap, "group.id": f"keng-test-{uuid.uuid4()}",
                       "enable.auto.commit": False, "auto.offset.reset": "earliest"},
                      **(config or {})))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions
        ends = {}
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            # The embedded broker drops a partition's oldest messages once it holds more
            # than 5 MiB; a test that reads back what it sent must stay under that.
            check_equal(low, 0, f"{topic} [{p}] low watermark (messages dropped by the "
                        "embedded broker's retention: the test sent too much)")
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        out = []
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg)
            if msg.partition() in ends and msg.offset() + 1 >= ends[msg.partition()]:
                del ends[msg.partition()]
        check(not ends, f"read {topic} to its end within {timeout}s", "all partitions", ends)
        return out
    finally:
        c.close()


# ---- events and expected counts ----

def random_event(rng, kind, board_id, occurred_ms, reported_ms=None):
    """A valid event in its JSON form, times as epoch milliseconds."""
    event = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "board_id": board_id,
        "group_id": f"{board_id}-G{rng.randint(1, 6):02d}" if rng.random() < 0.5 else None,
        "occurred_at": occurred_ms,
        # Reported after it occurred, but never after now: keng rejects times in the future.
        "reported_at": (reported_ms if reported_ms is not None else
                        min(occurred_ms + rng.randint(0, 3600_000), int(time.time() * 1000))),
        "summary": rng.choice([None, "Trộm cắp xe máy tại thôn", "Hòa giải tranh chấp đất đai"]),
    }
    if kind == "incident":
        event.update({
            "category": rng.choice(CATEGORIES),
            "severity": rng.choice(SEVERITIES),
            "resolution": rng.choice(RESOLUTIONS),
            "people_involved": rng.randint(0, 12),
            "source": rng.choice(SOURCES),
            "location": ({"lat": round(rng.uniform(18.5, 20.0), 6),
                          "lon": round(rng.uniform(103.8, 105.8), 6)}
                         if rng.random() < 0.5 else None),
        })
    else:
        event.update({
            "dispute_type": rng.choice(DISPUTES),
            "outcome": rng.choice(OUTCOMES),
            "parties": rng.randint(2, 6),
            "related_incident_id": None,
        })
    return event


def registry_rows(path=None):
    """The board registry as a list of dicts: the default one unless path is given."""
    import csv
    if path is None:
        out = subprocess.run([binary("keng-registry"), "--write", "-"], check=True,
                             capture_output=True).stdout.decode()
        return list(csv.DictReader(io.StringIO(out)))
    with open(path, newline="", encoding="utf-8") as f:
        # A registry file may open with '#' lines saying where it comes from.
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def registry_tool(*args, timeout=120):
    """keng-registry run to its end, with the brokers its flags give (KENG_BROKERS left out):
    the CompletedProcess, text."""
    env = dict(os.environ)
    env.pop("KENG_BROKERS", None)
    return subprocess.run([binary("keng-registry"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def rfc3339(epoch_s):
    """A time in whole seconds as RFC 3339 UTC, as antt.registry's keys are."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def hash_password(password):
    """keng-aggregate --hash-password's bcrypt hash, for a web config's basic_auth_users."""
    out = subprocess.run([binary("keng-aggregate"), "--hash-password"], input=password,
                         capture_output=True, text=True, timeout=30)
    check_equal(out.returncode, 0, f"--hash-password exit status ({out.stderr!r})")
    return out.stdout.strip()


def basic_auth(user, password):
    """The Authorization header of a Basic sign-in."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def empty_tally():
    return {"incidents": {"total": 0, "by_category": {c: 0 for c in CATEGORIES},
                          "by_resolution": {r: 0 for r in RESOLUTIONS}},
            "mediations": {"total": 0, "by_outcome": {o: 0 for o in OUTCOMES}}}


def expected_all_time(events, boards):
    """All-time tallies per (level, id) for a list of (kind, event) pairs, counting each
    event_id once. boards maps board_id to its registry row."""
    tallies = {}
    seen = set()
    for kind, ev in events:
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        row = boards[ev["board_id"]]
        scopes = [("board", row["board_id"]), ("commune", row["commune_id"]),
                  ("district", row.get("district_id")), ("province", "NA")]
        # A registry of the two-tier government has no districts.
        for scope in (s for s in scopes if s[1]):
            t = tallies.setdefault(scope, empty_tally())
            if kind == "incident":
                t["incidents"]["total"] += 1
                t["incidents"]["by_category"][ev["category"]] += 1
                t["incidents"]["by_resolution"][ev["resolution"]] += 1
            else:
                t["mediations"]["total"] += 1
                t["mediations"]["by_outcome"][ev["outcome"]] += 1
    return tallies


def main(tests):
    """Runs each test function, prints a closing 'N passed, N failed' line, exits 1 on any
    failure."""
    passed = failed = 0
    for test in tests:
        log(f"RUN  {test.__name__}")
        started = time.monotonic()
        try:
            test()
            passed += 1
            log(f"PASS {test.__name__} ({time.monotonic() - started:.1f}s)")
        except Exception as e:
            failed += 1
            log(f"FAIL {test.__name__}: {type(e).__name__}: {e}")
            import traceback
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
