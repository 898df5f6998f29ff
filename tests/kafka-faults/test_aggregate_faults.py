"""keng-aggregate killed while events flow on a real 3-node Apache Kafka cluster (24
partitions, replication 3, min.insync.replicas 2):
c. one instance SIGKILLed at random moments and restarted, ROUNDS times: its counts end
   exact (each event once, resends included);
f. three instances in one group; one is SIGKILLed, then a new one joins; at the end every
   live instance answers the province-wide counts exactly (they share antt.board-counts);
g. a second process joins the group with an instance's group.instance.id, which fences the
   instance (as a coordinator that lost track of the member does, librdkafka 2.0.2 making it
   fatal); once the other is gone, the instance rejoins by itself and its counts end exact.
KENG_FAULT_SEED=N replays a run."""

import json
import random
import threading
import time

import kafkalib as kl
from kafkalib import fl, kt

ROUNDS = 3


class Flow:
    """A producer thread: batches of new events and a few resends, paced, until stopped."""

    def __init__(self, bootstrap, src):
        self.producer = kt.EventProducer(bootstrap, {"log_level": 2})
        self.src = src
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run)

    def run(self):
        for _ in range(10_000):  # bounded, whatever the speed
            if self.stop_event.is_set():
                return
            with self.lock:
                batch = self.src.new(150) + self.src.resends(10)
            self.sent += self.producer.send(kt.messages(batch), timeout=60)
            time.sleep(0.05)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.thread.join(120)
        kt.check(not self.thread.is_alive(), "producer thread finished", True, False)


def log_text(agg):
    with open(agg.process.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def fenced_instance_rejoins(cluster, work, src, programs):
    """g. The intruder is SIGKILLed as soon as the instance says it was fenced: an instance
    that is fenced again and again by a live twin stops rejoining (docs/OPERATIONS.md)."""
    agg = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-g",
                       "checkpoint.interval.ms=300\ngroup.instance.id=keng-g\n", name="g")
    intruder = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-g",
                            "group.instance.id=keng-g\n", name="g-intruder")
    programs += [agg, intruder]
    agg.start().wait_ready(timeout=180)
    flow = Flow(cluster.bootstrap, src).start()
    time.sleep(2)
    intruder.start()
    started = time.monotonic()
    kt.wait_until(lambda: "FENCED_INSTANCE_ID" in log_text(agg), 60,
                  "instance g to be fenced by the intruder's join")
    fenced_s = round(time.monotonic() - started, 1)
    intruder.sigkill()
    kt.log(f"g. instance fenced {fenced_s}s after the intruder started; intruder SIGKILLed")
    started = time.monotonic()
    agg.wait_ready(timeout=120)
    back_s = round(time.monotonic() - started, 1)
    time.sleep(2)
    flow.stop()
    fl.wait_counts(agg, src.expected(), "g. after the fence", timeout=120, scopes="all")
    m = agg.metrics()
    # Once, unless a stalled test let the intruder rejoin before its SIGKILL: then the
    # instance was fenced again, and rejoined again.
    fenced, rejoins = m.get("keng_consumer_fenced_total", 0), m.get("keng_consumer_rejoins_total")
    kt.check(fenced >= 1 and rejoins == fenced, "g. every fence was followed by a rejoin",
             "fenced >= 1 == rejoins", (fenced, rejoins))
    print(f"FIGURES g. fenced: instance fenced {fenced_s}s after a twin joined with its "
          f"group.instance.id, ready again {back_s}s after the twin was gone; "
          f"{len(src.unique)} events counted exactly once, lost 0, duplicates 0", flush=True)

    # A twin that stays: the two fence each other until one of them gives up for good, and
    # the other counts on.
    twin = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-g", "group.instance.id=keng-g\n",
                        name="g-twin")
    programs.append(twin)
    twin.start()
    started = time.monotonic()
    pair = {"g": agg, "g-twin": twin}

    def readyz(a):
        status, _, body = kt.http("GET", a.base + "/readyz", timeout=5)
        return "ready" if status == 200 else json.loads(body).get("status", "?") + (
            " for good" if b"counts nothing more" in body else "")

    def settled():
        return sorted(readyz(a) for a in pair.values()) == ["fenced for good", "ready"]

    kt.wait_until(settled, 240, "one twin to give up for good and the other to be ready",
                  interval=0.5)
    settled_s = round(time.monotonic() - started, 1)
    time.sleep(5)
    kt.check(settled(), "g. still one twin fenced for good and one ready 5 s later",
             "fenced for good, ready", [readyz(a) for a in pair.values()])
    survivor = next(n for n, a in pair.items() if readyz(a) == "ready")
    loser = next(n for n in pair if n != survivor)
    fl.wait_counts(pair[survivor], src.expected(), f"g. survivor {survivor}", timeout=120,
                   scopes="all")
    fences = [int(a.metrics().get("keng_consumer_fenced_total", 0)) for a in pair.values()]
    for a in pair.values():
        a.stop()
    print(f"FIGURES g. twins: {settled_s}s until {loser} gave up for good (fences per "
          f"instance {fences}); {survivor} counts all {len(src.unique)} events exactly",
          flush=True)


def test_aggregate_sigkill_and_scale_out():
    if kl.skipped("test_aggregate_sigkill_and_scale_out"):
        return
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-kafka-aggregate-")
    cluster = None
    programs = []
    try:
        cluster = kl.Cluster(work, nodes=3, partitions=24)
        src = fl.EventSource(rng, fl.pick_boards(rng, per_district=20))

        # c. One instance, SIGKILLed while events flow.
        agg = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-c",
                           "checkpoint.interval.ms=300\n", name="c")
        programs.append(agg)
        agg.start().wait_ready(timeout=120)
        flow = Flow(cluster.bootstrap, src).start()
        ready_s = []
        for r in range(1, ROUNDS + 1):
            time.sleep(rng.uniform(1.0, 4.0))
            counted = agg.metrics().get("keng_events_counted_total", 0)
            agg.sigkill()
            agg.start()
            started = time.monotonic()
            agg.wait_ready(timeout=120)
            ready_s.append(round(time.monotonic() - started, 1))
            kt.log(f"c. round {r}: SIGKILLed after {counted:.0f} events counted; ready again "
                   f"in {ready_s[-1]}s")
        time.sleep(2)
        flow.stop()
        fl.wait_counts(agg, src.expected(), "c. after the last restart", timeout=120,
                       scopes="all")
        agg.stop()
        print(f"FIGURES c. aggregator crash: {ROUNDS} SIGKILLs while events flowed, restart to "
              f"ready {ready_s} s; {len(src.unique)} events ({len(src.sent)} messages with "
              f"resends) counted exactly once, lost 0, duplicates 0", flush=True)

        # f. Three instances in one group; one SIGKILLed, then one joins.
        group = [fl.Aggregate(work, cluster.bootstrap, "keng-kafka-f",
                              "checkpoint.interval.ms=300\n", name=f"f{i}") for i in range(4)]
        programs += group
        for a in group[:3]:
            a.start()
        for a in group[:3]:
            a.wait_ready(timeout=180)
        flow = Flow(cluster.bootstrap, src).start()
        time.sleep(rng.uniform(2.0, 4.0))
        group[1].sigkill()
        kt.log("f. instance f1 SIGKILLed")
        time.sleep(rng.uniform(2.0, 4.0))
        group[3].start()
        group[3].wait_ready(timeout=180)
        kt.log("f. instance f3 joined")
        time.sleep(3)
        flow.stop()
        expected = src.expected()
        live = [group[0], group[2], group[3]]
        for a in live:
            fl.wait_counts(a, expected, f"f. instance {a.state_dir.rsplit('/', 1)[-1]}",
                           timeout=180)
        for d in ("D03", "D07", "D15"):
            for a in live:
                kt.check_equal(a.all_time("district", d),
                               expected.get(("district", d), kt.empty_tally()),
                               f"f. district {d} on {a.state_dir.rsplit('/', 1)[-1]}")
        owned = [a.metrics().get("keng_events_counted_total", 0) for a in live]
        for a in live:
            a.stop()
        print(f"FIGURES f. scale-out: 3 instances, one SIGKILLed, one joined; each of the 3 "
              f"live instances answers province and district counts of all {len(src.unique)} "
              f"events exactly (events each counted itself: {[int(x) for x in owned]})",
              flush=True)

        fenced_instance_rejoins(cluster, work, src, programs)
    finally:
        kl.close_all(programs, cluster, work)


if __name__ == "__main__":
    kt.main([test_aggregate_sigkill_and_scale_out])
