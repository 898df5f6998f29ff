"""keng-aggregate, keng-produce and keng-ingest against a 3-broker mock cluster that
misbehaves: brokers going down and coming back while events are consumed, partition leaders
moving, injected Fetch (ApiKey 1), Produce (ApiKey 0) and OffsetCommit (ApiKey 8) errors,
and a 500 ms round trip on every broker. After each fault the all-time counts equal what
Python computes from every event produced (each event_id once, resends included), nothing
is dead-lettered, and no process had to be restarted by hand. KENG_FAULT_SEED=N replays."""

import json
import random
import re
import subprocess
import threading
import time

import faultlib as fl
from faultlib import kt

PARTITIONS = 4
BROKERS = (1, 2, 3)
# Kafka error codes, as the mock cluster answers them.
REQUEST_TIMED_OUT = 7
NOT_LEADER_OR_FOLLOWER = 6
NOT_COORDINATOR = 16
# The Produce errors pushed onto the embedded broker: it answers them without writing, and the
# producers send one request per partition at a time there (faultlib.ONE_REQUEST_AT_A_TIME
# says why). REQUEST_TIMED_OUT, which says "maybe written", lost an event of a 202'd request
# in a CI run before that; NOT_LEADER_OR_FOLLOWER did too, once, in a repeat.
PRODUCE_ERRORS = (REQUEST_TIMED_OUT, NOT_LEADER_OR_FOLLOWER)
FETCH, PRODUCE, OFFSET_COMMIT = 1, 0, 8


class Run:
    """One broker cluster and one keng-aggregate shared by a test's phases, and the
    figures they add up to."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = random.Random(seed)
        self.seed = seed
        self.work = kt.Workdir(prefix=f"keng-fault-{name}-")
        self.broker = kt.Broker(self.work, partitions=PARTITIONS, brokers=len(BROKERS))
        # About 60 incidents per board and 500 mediations per district by the end.
        self.alerts = fl.AlertRules([("board_inc_30", "board", "incident", 30),
                                     ("district_med_300", "district", "mediation", 300)])
        self.alert_figures = "alert invariant not checked"
        self.agg = fl.Aggregate(self.work, self.broker.bootstrap, f"keng-fault-{name}",
                                "checkpoint.interval.ms=300\n" + self.alerts.config())
        self.src = fl.EventSource(self.rng, fl.pick_boards(self.rng))
        self.phases = 0
        self.kills = 0
        self.lost = self.duplicates = "unknown"

    def start(self):
        kt.produce(self.broker.bootstrap, kt.messages(self.src.new(300)))
        self.agg.start().wait_ready()
        fl.wait_counts(self.agg, self.src.expected(), "before any fault")

    def batch(self, n, resends=30):
        events = self.src.new(n) + self.src.resends(resends)
        self.rng.shuffle(events)
        return events

    def produce_during(self, events, fault, chunks=6, pause=0.3):
        """Produces events in paced chunks from a thread while fault() runs here."""
        msgs = kt.messages(events)
        failure = []

        def produce():
            try:
                fl.produce_paced(self.broker.bootstrap, msgs, chunks, pause, timeout=90)
            except Exception as e:  # reported below
                failure.append(e)

        t = threading.Thread(target=produce)
        t.start()
        try:
            fault()
        finally:
            t.join(120)
        kt.check(not t.is_alive() and not failure, "the test's producer finished",
                 "no error", failure)

    def settled(self, what, timeout=90, scopes="province"):
        """The invariants after a fault: keng-aggregate still running on its own, counts
        exact, nothing dead-lettered."""
        kt.check(self.agg.alive(), f"{what}: keng-aggregate still running", True,
                 self.agg.process.log_tail())
        fl.wait_counts(self.agg, self.src.expected(), what, timeout=timeout, scopes=scopes)
        m = self.agg.metrics()
        dead = {k: v for k, v in m.items() if k.startswith("keng_deadletter_total") and v}
        kt.check_equal(dead, {}, f"{what}: dead letters")
        self.alerts.check(self.agg, self.src.expected(), self.broker.bootstrap, what)
        self.phases += 1
        kt.log(f"{what}: counts exact")

    def finish(self):
        fl.wait_counts(self.agg, self.src.expected(), f"{self.name}: at the end", scopes="all")
        if self.alerts.rules:
            want, lost, extra = self.alerts.check(self.agg, self.src.expected(),
                                                  self.broker.bootstrap, "at the end")
            self.alert_figures = (f"alert transitions expected {want}, lost {lost}, "
                                  f"repeated {extra}")
        self.agg.stop()
        self.lost = self.duplicates = 0

    def close(self, failed):
        in_topics = ""
        if failed and self.agg.alive():
            self.lost, self.duplicates = fl.mismatch_figures(self.agg, self.src)
            in_topics = ", " + fl.missing_from_topics(self.broker.bootstrap, self.src)
        fl.figures(self.name, self.phases, len(self.src.sent), self.kills, self.lost,
                   self.duplicates, f"unique events {len(self.src.unique)}, "
                   f"{self.alert_figures}, seed {self.seed}{in_topics}")
        fl.close_all((self.agg,), self.broker, self.work)


def run_phases(name, default_seed, body):
    run = Run(name, fl.seed_from_env(default_seed))
    failed = True
    try:
        run.start()
        body(run)
        run.finish()
        failed = False
    finally:
        run.close(failed)


def test_consumer_under_broker_faults():
    def body(run):
        b = run.broker

        def down_up(ids, hold):
            def fault():
                time.sleep(0.4)
                for i in ids:
                    b.command(f"down {i}")
                time.sleep(hold)
                for i in ids:
                    b.command(f"up {i}")
            return fault

        run.produce_during(run.batch(500), down_up([2], 2.0))
        run.settled("broker 2 down for 2 s and up again during consumption")
        run.produce_during(run.batch(500), down_up([1, 3], 2.0))
        run.settled("brokers 1 and 3 down for 2 s and up again during consumption")

        def move_leaders():
            for _ in range(3):
                time.sleep(0.4)
                topic = run.rng.choice(list(kt.TOPIC.values()))
                partition = run.rng.randrange(PARTITIONS)
                leader = run.rng.choice(BROKERS)
                kt.log(f"leader of {topic} [{partition}] -> broker {leader}")
                b.command(f"leader {topic} {partition} {leader}")

        run.produce_during(run.batch(500), move_leaders)
        run.settled("partition leaders moved during consumption")

        for code in (NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT):
            def fetch_errors(code=code):
                time.sleep(0.3)
                b.command(f"errors {FETCH} 15 {code}")
            run.produce_during(run.batch(400), fetch_errors)
            run.settled(f"15 Fetch requests answered with error {code}")
            b.command(f"clear {FETCH}")

        def commit_errors():
            b.command(f"errors {OFFSET_COMMIT} 6 {REQUEST_TIMED_OUT}")
            b.command(f"errors {OFFSET_COMMIT} 6 {NOT_COORDINATOR}")
        run.produce_during(run.batch(400), commit_errors)
        run.settled("12 OffsetCommit requests failed")
        # The checkpoint, not the group's offsets, is where counting resumes: a SIGKILL and
        # a restart while commits fail count nothing twice.
        b.command(f"errors {OFFSET_COMMIT} 20 {REQUEST_TIMED_OUT}")
        run.produce_during(run.batch(300), lambda: time.sleep(0.7))
        run.agg.sigkill()
        run.kills += 1
        run.agg.start().wait_ready()
        run.settled("SIGKILL and restart while OffsetCommit fails")
        b.command(f"clear {OFFSET_COMMIT}")

        def slow():
            for i in BROKERS:
                b.command(f"rtt {i} 500")
        run.produce_during(run.batch(300), slow, chunks=3, pause=0.5)
        run.settled("500 ms RTT on every broker", timeout=120)
        for i in BROKERS:
            b.command(f"rtt {i} 0")

    run_phases("broker-faults", None, body)


def keng_produce(run, events):
    """Imports events with keng-produce from an NDJSON file; returns its summary."""
    path = run.work.file(f"import-{len(run.src.sent)}.ndjson")
    with open(path, "w") as f:
        for kind, ev in events:
            f.write(json.dumps(dict(ev, kind=kind)) + "\n")
    conf = run.work.file("produce.conf")
    with open(conf, "w") as f:
        f.write(fl.KENG_ONE_REQUEST_AT_A_TIME)
    p = subprocess.run([kt.binary("keng-produce"), "--brokers", run.broker.bootstrap, "--config",
                        conf, "--kind", "auto", "--no-progress", path], capture_output=True,
                       timeout=180)
    err = p.stderr.decode("utf-8", "replace")
    kt.check_equal(p.returncode, 0, f"keng-produce exit status; stderr: {err[-2000:]}")
    m = re.search(r"read (\d+), valid (\d+), rejected (\d+), delivered (\d+), failed (\d+)", err)
    kt.check(m is not None, "keng-produce summary line", "read N, ...", err[-500:])
    return dict(zip(("read", "valid", "rejected", "delivered", "failed"),
                    (int(x) for x in m.groups())))


def post_until_accepted(ing, kind, events, deadline_s=90):
    """POSTs one batch, resending on anything but 202 as a gateway does; returns the number
    of attempts."""
    deadline = time.monotonic() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        status, answer = ing.post(kind, [ev for _, ev in events])
        if status == 202:
            kt.check_equal(answer, {"accepted": len(events)}, "202 answer")
            return attempts
        kt.check(status in (None, 503) and time.monotonic() < deadline,
                 "202 within the deadline, 503 or no answer before", 202, (status, answer))
        time.sleep(0.2)


def test_producers_under_produce_errors():
    def body(run):
        b = run.broker
        for code in PRODUCE_ERRORS:
            events = run.batch(400)
            b.command(f"errors {PRODUCE} 8 {code}")
            got = keng_produce(run, events)
            kt.check_equal((got["valid"], got["delivered"], got["failed"]),
                           (len(events), len(events), 0),
                           f"keng-produce (valid, delivered, failed) under Produce error {code}")
            b.command(f"clear {PRODUCE}")
            run.settled(f"keng-produce with 8 Produce requests failing with error {code}")

        if not fl.have("keng-ingest"):
            kt.log("SKIPPED the keng-ingest part: keng-ingest is not built")
            return
        ing = fl.Ingest(run.work, b.bootstrap).start()
        try:
            attempts = 0
            for code in PRODUCE_ERRORS:
                b.command(f"errors {PRODUCE} 6 {code}")
                for _ in range(6):
                    kind = run.rng.choice(("incident", "mediation"))
                    events = run.src.new(run.rng.randint(5, 40), kind)
                    attempts += post_until_accepted(ing, kind, events)
                b.command(f"clear {PRODUCE}")
                run.settled(f"keng-ingest with 6 Produce requests failing with error {code}")
            kt.log(f"keng-ingest: {attempts} POSTs for 12 batches")
            kt.check(ing.process.alive(), "keng-ingest still running", True,
                     ing.process.log_tail())
            ing.stop()
        finally:
            if ing.process.alive():
                print(ing.process.log_tail())
                ing.process.kill()

    run_phases("produce-errors", None, body)


if __name__ == "__main__":
    kt.main([test_consumer_under_broker_faults, test_producers_under_produce_errors])
