"""keng-ingest SIGKILLed at random moments under a bounded load of a few gateway threads, and
restarted on the same port, for ROUNDS rounds; now and then keng-aggregate is SIGKILLed in
the same round. The gateways do what real ones do: a batch answered anything but 202 (or
not answered at all) is sent again later. After every round every event answered 202 is in
Kafka; at the end, once every batch got its 202, Kafka holds exactly the events sent (some
more than once, from the resends) and keng-aggregate counts each of them exactly once.
KENG_FAULT_SEED=N replays a run; KENG_FAULT_ROUNDS=N changes the number of rounds."""

import os
import random
import threading
import time

import faultlib as fl
from faultlib import kt

ROUNDS = int(os.environ.get("KENG_FAULT_ROUNDS", "20"))
GATEWAYS = 3
# The embedded broker keeps only the newest 5 MiB of each partition; past this many events
# (about 2 MiB per partition over 8) the gateways only resend, whatever the machine's speed.
MAX_EVENTS = 80_000
AGGREGATE_KILL_CHANCE = 0.15


class Gateways:
    """GATEWAYS threads posting batches of 5 to 40 events of one kind, each thread with its
    own RNG seeded from the test's; every batch not answered 202 goes back on the pending
    list and is resent before new ones."""

    def __init__(self, ing, src, seed):
        self.ing = ing
        self.src = src
        self.seed = seed
        self.lock = threading.Lock()
        self.accepted = {}  # event_id -> (kind, event), answered 202
        self.pending = []  # (kind, [(kind, event)]) waiting for a 202
        self.posts = self.resent = 0
        self.statuses = {}
        self.errors = []

    def next_batch(self, rng):
        with self.lock:
            if self.pending:
                self.resent += 1
                return self.pending.pop(0)
            if len(self.src.unique) >= MAX_EVENTS:
                return None
            kind = rng.choice(("incident", "mediation"))
            return kind, self.src.new(rng.randint(5, 40), kind)

    def gateway(self, n, stop):
        rng = random.Random(self.seed * 31 + n)
        for _ in range(10_000):  # bounded, whatever the speed
            if stop.is_set():
                return
            work = self.next_batch(rng)
            if work is None:
                return  # the event budget is spent and nothing waits for a resend
            kind, batch = work
            status, answer = self.ing.post(kind, [ev for _, ev in batch], timeout=10)
            with self.lock:
                self.posts += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 202 and answer == {"accepted": len(batch)}:
                    for k, ev in batch:
                        self.accepted[ev["event_id"]] = (k, ev)
                elif status in (None, 502, 503, 504):
                    self.pending.append((kind, batch))
                else:
                    self.errors.append((status, answer))
                    self.pending.append((kind, batch))
            if status is None:
                time.sleep(0.05)  # the gateway is gone: do not spin
            else:
                time.sleep(0.01)

    def run(self, seconds_before_kill, kill):
        """Runs the gateways, calls kill() after the delay, then stops them."""
        stop = threading.Event()
        threads = [threading.Thread(target=self.gateway, args=(n, stop)) for n in range(GATEWAYS)]
        for t in threads:
            t.start()
        try:
            time.sleep(seconds_before_kill)
            kill()
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        kt.check(not any(t.is_alive() for t in threads), "gateway threads finished", True, False)
        kt.check_equal(self.errors, [], "answers other than 202, 503 or no answer")


def test_ingest_sigkill_loop():
    if not fl.have("keng-ingest"):
        print("SKIPPED test_ingest_sigkill_loop: keng-ingest is not built; this is not a pass",
              flush=True)
        return
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-fault-ingest-")
    broker = kt.Broker(work, partitions=4)
    # On 2 cores a round adds some 25 incidents per board and 300 mediations per district:
    # scopes cross these in different rounds.
    alerts = fl.AlertRules([("board_inc_100", "board", "incident", 100),
                            ("board_inc_300", "board", "incident", 300),
                            ("district_med_3000", "district", "mediation", 3000)])
    alert_figures = "alert invariant not checked"
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-ingest",
                       "checkpoint.interval.ms=250\ncheckpoint.events=200\n" + alerts.config(),
                       session_ms=3000)
    ing = fl.Ingest(work, broker.bootstrap)
    src = fl.EventSource(rng, fl.pick_boards(rng))
    gw = Gateways(ing, src, seed)
    ingest_kills = aggregate_kills = rounds_done = 0
    lost = duplicates = "unknown"
    in_kafka = {}
    try:
        agg.start()
        ing.start()
        for r in range(1, ROUNDS + 1):
            started = time.monotonic()
            delay = rng.uniform(0.2, 1.5)
            kill_aggregate = rng.random() < AGGREGATE_KILL_CHANCE
            aggregate_delay = rng.uniform(0.0, delay)

            def kill():
                nonlocal ingest_kills, aggregate_kills
                if kill_aggregate:
                    time.sleep(aggregate_delay)
                    agg.sigkill()
                    aggregate_kills += 1
                    time.sleep(delay - aggregate_delay)
                else:
                    time.sleep(delay)
                kt.check(ing.process.alive(), f"round {r}: keng-ingest alive before the kill",
                         True, ing.process.log_tail())
                ing.sigkill()
                ingest_kills += 1

            gw.run(0, kill)
            ing.start()
            if kill_aggregate:
                agg.start()

            in_kafka = fl.read_ids(broker.bootstrap)
            missing = [eid for eid in gw.accepted if eid not in in_kafka]
            lost = len(missing)
            kt.check_equal(missing[:10], [], f"round {r}: events answered 202 missing from "
                           f"Kafka ({lost} in all)")
            lost = "unknown"
            # Every event in Kafka, answered 202 or not, is counted once.
            in_topics = [src.unique[eid] for eid in in_kafka if eid in src.unique]
            tallies = kt.expected_all_time(in_topics, fl.registry()[1])
            fl.wait_counts(agg, tallies, f"round {r}: keng-aggregate")
            fired = alerts.check(agg, tallies, broker.bootstrap, f"round {r}")[0]
            rounds_done = r
            kt.log(f"round {r}: keng-ingest killed after {delay:.2f}s"
                   f"{f', keng-aggregate after {aggregate_delay:.2f}s' if kill_aggregate else ''}; "
                   f"{len(gw.accepted)} events answered 202 so far, all in Kafka and "
                   f"counted once, {fired} alerts fired once; {len(gw.pending)} batches to resend "
                   f"({time.monotonic() - started:.1f}s)")

        # Every batch still without a 202 is sent again until it gets one, as gateways do.
        deadline = time.monotonic() + 60
        while gw.pending:
            kind, batch = gw.pending[0]
            status, answer = ing.post(kind, [ev for _, ev in batch])
            if status == 202:
                gw.pending.pop(0)
                gw.resent += 1
                for k, ev in batch:
                    gw.accepted[ev["event_id"]] = (k, ev)
            else:
                kt.check(status in (None, 503) and time.monotonic() < deadline,
                         "the last resends answered 202 within 60 s", 202, (status, answer))
                time.sleep(0.2)
        ing.stop()

        in_kafka = fl.read_ids(broker.bootstrap)
        missing = [eid for eid in gw.accepted if eid not in in_kafka]
        lost = len(missing)
        kt.check_equal(missing[:10], [], f"events answered 202 missing from Kafka ({lost})")
        kt.check_equal(len(gw.accepted), len(src.unique), "events answered 202 = events sent")
        strangers = [eid for eid in in_kafka if eid not in src.unique]
        kt.check_equal(strangers[:10], [], "events in Kafka that no gateway sent")

        agg.wait_ready()
        expected = src.expected()
        fl.wait_counts(agg, expected, "keng-aggregate after the last round", scopes="all")
        got = agg.all_time("province", "NA")
        if alerts.rules:
            want, lost_a, extra_a = alerts.check(agg, expected, broker.bootstrap, "at the end")
            alert_figures = (f"alert transitions expected {want}, lost {lost_a}, "
                             f"repeated {extra_a}")
        lost, duplicates = 0, 0
        agg.stop()
        alerts.check_stopped(expected, broker.bootstrap, "at the end")
        copies = sum(in_kafka.values()) - len(in_kafka)
        kt.log(f"{gw.posts} POSTs ({gw.statuses}), {gw.resent} batches resent; "
               f"{copies} extra copies in Kafka from resends, each counted once "
               f"(province all-time {got['incidents']['total']} incidents, "
               f"{got['mediations']['total']} mediations)")
    except kt.TestFailure:
        if duplicates == "unknown" and agg.alive():
            lost_c, duplicates = fl.mismatch_figures(agg, src)
            if lost == "unknown":
                lost = lost_c
        raise
    finally:
        fl.figures("ingest kills", rounds_done, len(gw.accepted), ingest_kills + aggregate_kills,
                   lost, duplicates,
                   f"keng-ingest kills {ingest_kills}, keng-aggregate kills {aggregate_kills}, "
                   f"events in Kafka {len(in_kafka)}, {alert_figures}, seed {seed}")
        fl.close_all((ing, agg), broker, work)


if __name__ == "__main__":
    kt.main([test_ingest_sigkill_loop])
