"""keng-aggregate killed while events flow on a real 3-node Apache Kafka cluster (24
partitions, replication 3, min.insync.replicas 2):
c. one instance SIGKILLed at random moments and restarted, ROUNDS times: its counts end
   exact (each event once, resends included);
f. three instances in one group; one is SIGKILLed, then a new one joins; at the end every
   live instance answers the province-wide counts exactly (they share antt.board-counts).
KENG_FAULT_SEED=N replays a run."""

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
    finally:
        kl.close_all(programs, cluster, work)


if __name__ == "__main__":
    kt.main([test_aggregate_sigkill_and_scale_out])
