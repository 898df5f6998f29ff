"""keng on a secured Apache Kafka cluster: `scripts/kafka-cluster.sh up DIR 1 --secure`
(SASL_SSL with SCRAM-SHA-512, a CA and broker certificate from openssl, the StandardAuthorizer
denying what no ACL allows), the topics made by deploy/create-topics.sh as keng-admin and the
ACLs by deploy/create-acls.sh, each program logging in as its own user with the keys of
DIR/client-<user>.conf. One cluster for every check, in this order:

a. least privilege is enough: events posted to keng-ingest (and resent) reach
   keng-aggregate, whose counts are exact at every scope; it shares them on
   antt.board-counts, publishes an alert to antt.alerts and dead-letters a message that is
   not an event to antt.deadletter; keng-replay's review counts each event once. No program
   logs a refusal;
a2. scale-out: a second keng-aggregate joins the group as the same user; with the
   partitions shared out, each instance answers the whole province exactly, and neither logs
   a refusal;
b. keng-ingest's user cannot read: keng-replay run as keng-ingest exits 78 at once, naming
   the topic and the ACL (Read), and writes no review;
c. keng-replay's user cannot write: keng-ingest run as keng-replay exits 78, naming the ACL
   (Write), and no event of it reaches a topic;
d. a user without Write on antt.board-counts (keng-ingest) cannot inject a state there: the
   write is refused, the topic's end does not move, keng-aggregate's counts stay exact;
e. a wrong password: keng-aggregate exits 78 with a line that says the login was refused,
   and the password is nowhere in its output;
f. a broker certificate for another host name (DNS:kafka.invalid) is refused: keng-replay
   exits 78 naming the certificate; the same run without hostname verification reads, which
   shows that the name alone was refused;
g. the registry versions (antt.registry, made by deploy/create-topics.sh, compacted): a
   version published with keng-admin's login is listed by keng-registry --versions logged in
   as keng-replay (Read on the topic, no group ACL); keng-registry --publish as keng-replay
   exits 78 naming the ACL (Write), and the topic's end does not move."""

import json
import os
import random
import subprocess
import time
from datetime import datetime, timedelta, timezone

import kafkalib as kl
from kafkalib import fl, kt

VN = timezone(timedelta(hours=7))
GROUP = "keng-aggregate"  # the group deploy/create-acls.sh grants by default
EVENTS, RESENDS = 400, 40


class Secured:
    """What the checks share: the cluster, keng-aggregate and the events sent."""
    work = cluster = agg = agg2 = ing = None
    src = None
    extra_messages = 0


S = Secured()


def admin():
    return S.cluster.login("keng-admin")


def watermarks(topic):
    """{partition: high watermark} of topic, read as keng-admin."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer(dict(admin(), **{"bootstrap.servers": S.cluster.bootstrap,
                                  "group.id": "keng-test-watermarks", "log_level": 0}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
    finally:
        c.close()


def conf_file(name, user, extra=""):
    path = S.work.file(name)
    with open(path, "w") as f:
        f.write(S.cluster.client_conf(user) + extra)
    return path


def replay(user_conf, out_dir, timeout=120):
    """keng-replay over the last 400 days, with the config file given."""
    today = datetime.now(VN).date()
    return subprocess.run(
        [kt.binary("keng-replay"), "--config", user_conf, "--from",
         (today - timedelta(days=400)).isoformat(), "--to", (today + timedelta(days=2)).isoformat(),
         "--out", out_dir], capture_output=True, timeout=timeout)


def refusals(text):
    """The log lines that say Kafka refused something."""
    return [line for line in text.splitlines()
            if "refuses this program" in line or "AUTHORIZATION_FAILED" in line
            or "_AUTHENTICATION" in line]


def test_a_least_privilege_is_enough():
    rng = random.Random(1919)
    S.work = kt.Workdir(prefix="keng-kafka-secure-")
    S.cluster = kl.Cluster(S.work, nodes=1, partitions=4, secure=True, groups=GROUP)
    rules = "alert.busy.level=province\nalert.busy.window=365d\nalert.busy.kind=incident\n" \
            "alert.busy.threshold=50\n"
    S.agg = fl.Aggregate(S.work, S.cluster.bootstrap, GROUP,
                         S.cluster.client_conf("keng-aggregate") + rules
                         + "checkpoint.interval.ms=500\n").start()
    S.ing = fl.Ingest(S.work, S.cluster.bootstrap,
                      config=S.cluster.client_conf("keng-ingest") + "ingest.deadline_ms=20000\n")
    S.ing.start(timeout=60)
    S.agg.wait_ready(timeout=120)
    S.src = fl.EventSource(rng, fl.pick_boards(rng))
    batches = [S.src.new(40) for _ in range(EVENTS // 40)] + [S.src.resends(RESENDS)]
    for batch in batches:
        for kind in ("incident", "mediation"):
            events = [ev for k, ev in batch if k == kind]
            if events:
                status, answer = S.ing.post(kind, events, timeout=30)
                kt.check_equal((status, answer), (202, {"accepted": len(events)}),
                               f"POST of {len(events)} {kind}s as keng-ingest over SASL_SSL")
    # Not an event: keng-aggregate dead-letters it, which takes Write on antt.deadletter.
    kt.EventProducer(S.cluster.bootstrap, S.cluster.login("keng-ingest")).send(
        [("antt.incidents", b"D01-C001-B01", b"\x01not an event")])
    S.extra_messages = 1
    expected = S.src.expected()
    fl.wait_counts(S.agg, expected, "counts over SASL_SSL", timeout=120, scopes="all")

    kt.wait_until(lambda: sum(watermarks("antt.deadletter").values()) == 1, 60,
                  "the dead letter in antt.deadletter")
    alerts = [fl.decode_alert(m.value()) for m in
              kt.consume_all(S.cluster.bootstrap, "antt.alerts", 30, admin())]
    kt.check_equal([(a["rule"], a["status"]) for a in alerts], [("busy", "FIRING")],
                   "the alert keng-aggregate published to antt.alerts")
    kt.wait_until(lambda: sum(watermarks("antt.board-counts").values()) > 0, 60,
                  "keng-aggregate's states in antt.board-counts")

    out = replay(conf_file("replay.conf", "keng-replay"), S.work.file("review"))
    kt.check_equal(out.returncode, 0, f"keng-replay as keng-replay: exit status "
                   f"({out.stderr.decode(errors='replace')[-800:]})")
    with open(S.work.file("review/review.json")) as f:
        review = json.load(f)
    kt.check_equal(review["data_quality"],
                   {"counted": len(S.src.unique), "duplicates": RESENDS, "out_of_period": 0,
                    "unknown_board": 0, "undecodable": 1, "invalid_time": 0},
                   "keng-replay's data quality line over SASL_SSL")
    for name, text in (("keng-aggregate", open(S.agg.process.log_path).read()),
                       ("keng-ingest", open(S.ing.process.log_path).read()),
                       ("keng-replay", out.stderr.decode(errors="replace"))):
        kt.check_equal(refusals(text), [], f"{name}: lines saying Kafka refused it")
    print(f"FIGURES secured: cluster up in {S.cluster.up_s:.1f}s, topics and ACLs in "
          f"{S.cluster.topics_s:.1f}s; {len(S.src.unique)} events and {RESENDS} resends "
          "through keng-ingest, counted exactly by keng-aggregate and keng-replay, each as its "
          "own SCRAM user over SASL_SSL", flush=True)


def test_a2_scale_out():
    """A second keng-aggregate in the group, as the same SCRAM user: the partitions are shared
    out, and each instance still answers the whole province exactly (the states it reads from
    antt.board-counts), with no refusal in either log."""
    S.agg2 = fl.Aggregate(S.work, S.cluster.bootstrap, GROUP,
                          S.cluster.client_conf("keng-aggregate") + "checkpoint.interval.ms=500\n",
                          name="aggregate2").start()
    S.agg2.wait_ready(timeout=120)
    more = [pair for _ in range(5) for pair in S.src.new(40)]
    for kind in ("incident", "mediation"):
        events = [ev for k, ev in more if k == kind]
        status, answer = S.ing.post(kind, events, timeout=30)
        kt.check_equal((status, answer), (202, {"accepted": len(events)}),
                       f"POST of {len(events)} {kind}s with two instances")
    expected = S.src.expected()
    for agg in (S.agg, S.agg2):
        fl.wait_counts(agg, expected, f"{agg.process.name} on {agg.state_dir}: the province "
                       "with two instances", timeout=120)
        kt.check_equal(refusals(open(agg.process.log_path).read()), [],
                       f"{agg.state_dir}: lines saying Kafka refused it")
    print(f"FIGURES secured scale-out: two keng-aggregate instances as keng-aggregate, each "
          f"answering {len(S.src.unique)} events exactly", flush=True)


def test_b_ingest_user_cannot_read():
    started = time.monotonic()
    out = replay(conf_file("as-ingest.conf", "keng-ingest"), S.work.file("review-ingest"),
                 timeout=60)
    took = time.monotonic() - started
    err = out.stderr.decode(errors="replace")
    kt.check_equal(out.returncode, 78, f"keng-replay as keng-ingest: exit status ({err[-600:]})")
    kt.check("TOPIC_AUTHORIZATION_FAILED" in err and "Read" in err and "on topic antt." in err,
             "the line names the topic and the ACL", "Read ... on topic antt.*", err[-600:])
    kt.check(not os.path.exists(S.work.file("review-ingest/review.json")), "no review written",
             "none", "review.json")
    print(f"FIGURES ingest user reads: keng-replay exited 78 after {took:.1f}s", flush=True)


def test_c_replay_user_cannot_write():
    before = {t: watermarks(t) for t in kt.TOPIC.values()}
    ing = fl.Ingest(S.work, S.cluster.bootstrap,
                    config=S.cluster.client_conf("keng-replay") + "ingest.deadline_ms=5000\n")
    ing.process = kt.Process("keng-ingest", [
        "--listen", f"127.0.0.1:{ing.port}", "--brokers", S.cluster.bootstrap, "--tokens",
        ing.tokens, "--config", ing.config], S.work)
    # Events of their own: these never reach the topics, so they stay out of S.src.
    rng = random.Random(7)
    events = [kt.random_event(rng, "incident", S.src.boards[0],
                              int(time.time() * 1000) - 86_400_000) for _ in range(3)]
    status, _ = ing.post("incident", events)
    try:
        rc = ing.process.proc.wait(30)
    except subprocess.TimeoutExpired:
        ing.process.kill()
        raise kt.TestFailure(f"keng-ingest as keng-replay still runs after 30 s: "
                             f"{ing.process.log_tail()}")
    ing.process.log_file.close()
    log = open(ing.process.log_path).read()
    kt.check_equal(rc, 78, f"keng-ingest as keng-replay: exit status ({log[-600:]})")
    kt.check("Write and Describe" in log and "deploy/create-acls.sh" in log,
             "the line names the ACL", "Write and Describe ... deploy/create-acls.sh", log[-600:])
    kt.check(status != 202, "no 202 as keng-replay", "not 202", status)
    kt.check_equal({t: watermarks(t) for t in kt.TOPIC.values()}, before,
                   "the input topics' ends after keng-ingest ran as keng-replay")


def test_d_no_state_injected():
    from confluent_kafka import KafkaError, Producer
    before = watermarks("antt.board-counts")
    failures = []
    p = Producer(dict(S.cluster.login("keng-ingest"),
                      **{"bootstrap.servers": S.cluster.bootstrap, "acks": "all",
                         "message.timeout.ms": 20000, "log_level": 0}))
    board = S.src.boards[0]
    p.produce("antt.board-counts", key=f"u/{GROUP}/{board}/incident".encode(),
              value=b"\x00" * 64, partition=0,
              on_delivery=lambda err, msg: failures.append(err))
    kt.check_equal(p.flush(30), 0, "the injection attempt answered")
    kt.check(len(failures) == 1 and failures[0] is not None
             and failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
             "writing a state to antt.board-counts as keng-ingest", "TOPIC_AUTHORIZATION_FAILED",
             failures)
    kt.check_equal(watermarks("antt.board-counts"), before, "antt.board-counts' end")
    fl.wait_counts(S.agg, S.src.expected(), "counts after the injection attempt", timeout=30,
                   scopes="all")


def test_e_wrong_password():
    secret = "wrong-password-of-keng-aggregate-5d2c"
    password = S.work.file("wrong-password")
    with open(password, "w") as f:
        f.write(secret + "\n")
    os.chmod(password, 0o600)
    conf = conf_file("wrong.conf", "keng-aggregate")
    with open(conf) as f:
        lines = [line for line in f.read().splitlines()
                 if not line.startswith("kafka.sasl.password_file=")]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + f"\nkafka.sasl.password_file={password}\n")
    port = kt.free_port()
    p = kt.Process("keng-aggregate", ["--config", conf, "--listen", f"127.0.0.1:{port}",
                                      "--state-dir", S.work.file("wrong-state"), "--group",
                                      GROUP], S.work, env={"KENG_BROKERS": S.cluster.bootstrap})
    started = time.monotonic()
    try:
        rc = p.proc.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        raise kt.TestFailure(f"keng-aggregate with a wrong password still runs after 60 s: "
                             f"{p.log_tail()}")
    took = time.monotonic() - started
    p.log_file.close()
    log = open(p.log_path).read()
    kt.check_equal(rc, 78, f"keng-aggregate with a wrong password: exit status ({log[-600:]})")
    kt.check("Kafka refused the login" in log and "kafka.sasl.password_file" in log,
             "the line says the login was refused", "Kafka refused the login", log[-600:])
    kt.check(secret not in log, "the password is not in the log", "absent", "present")
    print(f"FIGURES wrong password: keng-aggregate exited 78 after {took:.1f}s", flush=True)


def test_g_registry_versions_by_acl():
    registry = S.work.file("registry-boards.csv")
    subprocess.run([kt.binary("keng-registry"), "--write", registry], check=True,
                   capture_output=True, timeout=60)

    def keng_registry(user, *args):
        return subprocess.run([kt.binary("keng-registry"), *args, "--config",
                               conf_file(f"registry-{user}.conf", user), "--brokers",
                               S.cluster.bootstrap], capture_output=True, text=True, timeout=120)

    out = keng_registry("keng-admin", "--publish", registry, "--effective", "2024-01-01",
                        "--allow-past")
    kt.check_equal(out.returncode, 0, f"keng-registry --publish as keng-admin: exit status "
                   f"({out.stderr[-600:]})")
    kt.check("published: antt.registry partition 0 offset 0" in out.stdout, "published",
             "antt.registry partition 0 offset 0", out.stdout)
    out = keng_registry("keng-replay", "--versions")
    kt.check_equal(out.returncode, 0, f"keng-registry --versions as keng-replay: exit status "
                   f"({out.stderr[-600:]})")
    kt.check(out.stdout.splitlines()[1].startswith("2023-12-31T17:00:00Z   7588      460"),
             "--versions as keng-replay lists the version", "2023-12-31T17:00:00Z 7588 460 ...",
             out.stdout)
    before = watermarks("antt.registry")
    out = keng_registry("keng-replay", "--publish", registry, "--effective", "2099-01-01")
    kt.check_equal(out.returncode, 78, f"keng-registry --publish as keng-replay: exit status "
                   f"({out.stderr[-600:]})")
    kt.check("Write on topic antt.registry" in out.stderr and "deploy/create-acls.sh" in
             out.stderr, "the line names the ACL", "Write on topic antt.registry",
             out.stderr[-600:])
    kt.check_equal(watermarks("antt.registry"), before, "antt.registry's end after the refusal")
    from confluent_kafka.admin import AdminClient, ConfigResource
    res = ConfigResource(ConfigResource.Type.TOPIC, "antt.registry")
    # The client must outlive its futures: it is kept in a name.
    client = AdminClient(dict(admin(), **{"bootstrap.servers": S.cluster.bootstrap}))
    configs = client.describe_configs([res])[res].result(30)
    kt.check_equal((configs["cleanup.policy"].value, configs["max.message.bytes"].value),
                   ("compact", "10485760"), "antt.registry as deploy/create-topics.sh made it")


def test_f_certificate_for_another_host():
    S.agg.stop()
    S.ing.stop()
    S.cluster.kill(1)
    S.cluster.cert(1, "DNS:kafka.invalid")
    S.cluster.start(1)
    out = replay(conf_file("replay-2.conf", "keng-replay"), S.work.file("review-badhost"),
                 timeout=60)
    err = out.stderr.decode(errors="replace")
    kt.check_equal(out.returncode, 78, f"keng-replay against a certificate for kafka.invalid: "
                   f"exit status ({err[-600:]})")
    kt.check("certificate" in err and "_SSL" in err, "the line names the certificate",
             "certificate ... _SSL", err[-600:])
    kt.check(not os.path.exists(S.work.file("review-badhost/review.json")), "no review",
             "none", "review.json")
    # The same without hostname verification reads: the name was all that was refused.
    out = replay(conf_file("replay-noverify.conf", "keng-replay",
                           "kafka.ssl.endpoint.identification.algorithm=none\n"),
                 S.work.file("review-noverify"), timeout=60)
    kt.check_equal(out.returncode, 0, f"keng-replay without hostname verification: exit status "
                   f"({out.stderr.decode(errors='replace')[-600:]})")


def main():
    if kl.skipped("test_secure_cluster"):
        return
    try:
        kt.main([test_a_least_privilege_is_enough, test_a2_scale_out,
                 test_b_ingest_user_cannot_read,
                 test_c_replay_user_cannot_write, test_d_no_state_injected,
                 test_e_wrong_password, test_g_registry_versions_by_acl,
                 test_f_certificate_for_another_host])
    finally:
        kl.close_all((S.agg, S.agg2, S.ing), S.cluster, S.work or kt.Workdir())


if __name__ == "__main__":
    main()
