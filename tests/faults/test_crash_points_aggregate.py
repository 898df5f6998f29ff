"""keng-aggregate killed at its named crash points (common/failpoint.h), not at random
moments: just after an LMDB checkpoint commits, after antt.board-counts acknowledges a unit
or a partition mark, and after antt.alerts acknowledges an alert. Each test runs the test
copy build/test-bin/keng-aggregate for a few rounds; in each round events flow while the
program runs until it kills itself at the N-th hit of the point (N differs between rounds),
and the round fails if the point is never reached. Then a copy without a crash point
restarts on the same --state-dir, and every scope's all-time counts must equal the events
produced (each event_id once), and every alert must have fired exactly once.
KENG_FAULT_SEED=N replays a run; KENG_CRASH_ROUNDS=N changes the number of rounds (4)."""

import os
import random
import re
import threading
import time
import zlib

import faultlib as fl
from faultlib import kt

ROUNDS = int(os.environ.get("KENG_CRASH_ROUNDS", "4"))
TEST_BIN = os.path.join(kt.BIN_DIR, "..", "test-bin")
# Counts only grow on the 365-day window: a board FIRES once when it reaches 5 incidents, and
# every round brings boards that reach it.
RULES = [("board_inc_5", "board", "incident", 5)]
SESSION_MS = 3000  # the mock waits out a killed member's session before it rebalances


class CrashingAggregate(fl.Aggregate):
    """faultlib's Aggregate, started from build/test-bin/ with KENG_FAILPOINT set (or not)."""

    def start_at(self, failpoint):
        saved = kt.BIN_DIR
        kt.BIN_DIR = TEST_BIN
        try:
            self.port = kt.free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            env = {"KENG_BROKERS": self.bootstrap}
            if failpoint:
                env["KENG_FAILPOINT"] = failpoint
            self.process = kt.Process(
                "keng-aggregate",
                ["--config", self.config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
                 self.state_dir, "--group", self.group], self.work, env=env)
        finally:
            kt.BIN_DIR = saved
        return self


class Workload:
    """Each round: fresh boards that each get 6 incidents (so each fires board_inc_5), plus
    mediations and incidents over boards already used, plus resends of earlier events."""

    def __init__(self, rng):
        self.rng = rng
        rows, _ = fl.registry()
        self.fresh = [r["board_id"] for r in rows if r["district_id"] in ("D03", "D07", "D15")]
        rng.shuffle(self.fresh)
        self.used = []
        self.src = fl.EventSource(rng, [])

    def round(self):
        boards, self.fresh = self.fresh[:8], self.fresh[8:]
        self.used += boards
        now = int(time.time() * 1000)
        batch = []
        for b in boards:
            for _ in range(6):
                ev = kt.random_event(self.rng, "incident", b,
                                     now - self.rng.randint(fl.DAY, 300 * fl.DAY))
                self.src.unique[ev["event_id"]] = ("incident", ev)
                batch.append(("incident", ev))
        self.src.sent += batch
        self.src.boards = self.used
        batch += self.src.new(self.rng.randint(100, 200)) + self.src.resends(30)
        self.rng.shuffle(batch)
        return kt.messages(batch)


def crash_rounds(point, extra_config=""):
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-crash-")
    broker = kt.Broker(work, partitions=4)
    alerts = fl.AlertRules(RULES)
    agg = CrashingAggregate(work, broker.bootstrap, "keng-crash-" + point.replace(".", "-"),
                            "checkpoint.interval.ms=200\ncheckpoint.events=50\n" +
                            alerts.config() + extra_config, session_ms=SESSION_MS)
    load = Workload(rng)
    crashes = 0
    lost = duplicates = "unknown"
    try:
        kt.produce(broker.bootstrap, load.round())
        for r in range(1, ROUNDS + 1):
            nth = r if point != "checkpoint.commit" else 1 + r
            msgs = load.round()
            failure = []

            def produce():
                try:
                    fl.produce_paced(broker.bootstrap, msgs, 8, 0.3)
                except Exception as e:  # reported below
                    failure.append(e)

            agg.start_at(f"{point}:{nth}")
            producer = threading.Thread(target=produce)
            producer.start()
            kt.wait_until(lambda: not agg.alive(), 120,
                          f"round {r}: keng-aggregate to reach {point} for the {nth}th time")
            producer.join(120)
            kt.check(not producer.is_alive() and not failure, f"round {r}: produce finished",
                     "no error", failure)
            log = open(agg.process.log_path, "rb").read().decode("utf-8", "replace")
            kt.check(f"failpoint={point} hit={nth}" in log, f"round {r}: died at {point}",
                     f"failpoint={point} hit={nth} in its log", agg.process.log_tail(8))
            agg.process.kill()
            crashes += 1
            kt.log(f"round {r}: killed at {point} hit {nth}")

        agg.start_at(None).wait_ready()
        expected = load.src.expected()
        fl.wait_counts(agg, expected, f"after {crashes} crashes at {point}", scopes="all")
        fired = alerts.check(agg, expected, broker.bootstrap, f"after the crashes at {point}")[0]
        counted = agg.metrics().get("keng_events_counted_total")
        agg.stop()
        alerts.check_stopped(expected, broker.bootstrap, f"after the crashes at {point}")
        lost = duplicates = 0
        kt.log(f"{point}: {len(expected)} scopes exact, {fired} alerts fired once, "
               f"{counted:.0f} events counted after the last restart")
    except kt.TestFailure:
        lost, duplicates = fl.mismatch_figures(agg, load.src) if agg.alive() else ("?", "?")
        raise
    finally:
        fl.figures(f"crash point {point}", crashes, len(load.src.sent), crashes, lost,
                   duplicates, f"seed {seed}")
        fl.close_all((agg,), broker, work)


def test_firing_acknowledged_before_its_board_is_checkpointed():
    """The narrowest case of the rounds above, made certain: a board's FIRING is acknowledged
    by antt.alerts while none of the board's events is in a checkpoint yet (no checkpoint
    runs: their interval is longer than the test), and the process dies there. The next
    start reads the FIRING back and must keep it while it counts the board's events again
    from the partition's start, instead of firing a second time under a new alert_id."""
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-crash-")
    broker = kt.Broker(work, partitions=4)
    alerts = fl.AlertRules(RULES)
    agg = CrashingAggregate(work, broker.bootstrap, "keng-crash-firing-unsaved",
                            "checkpoint.interval.ms=600000\ncheckpoint.events=1000000\n" +
                            alerts.config(), session_ms=SESSION_MS)
    load = Workload(rng)
    try:
        boards, load.fresh = load.fresh[:2], load.fresh[2:]
        now = int(time.time() * 1000)
        batch = []
        for b in boards:
            for _ in range(6):
                ev = kt.random_event(rng, "incident", b, now - rng.randint(fl.DAY, 300 * fl.DAY))
                load.src.unique[ev["event_id"]] = ("incident", ev)
                batch.append(("incident", ev))
        load.src.sent += batch
        kt.produce(broker.bootstrap, kt.messages(batch))
        agg.start_at("alerts.delivered:1")
        kt.wait_until(lambda: not agg.alive(), 120, "keng-aggregate to die at the first alert "
                      "acknowledged")
        log = open(agg.process.log_path, "rb").read().decode("utf-8", "replace")
        kt.check("failpoint=alerts.delivered hit=1" in log, "died at alerts.delivered",
                 "failpoint=alerts.delivered hit=1 in its log", agg.process.log_tail(8))
        agg.process.kill()

        agg.start_at(None).wait_ready()
        expected = load.src.expected()
        fl.wait_counts(agg, expected, "after the crash", scopes="all")
        fired = alerts.check(agg, expected, broker.bootstrap, "after the crash", timeout=20)[0]
        agg.stop()
        alerts.check_stopped(expected, broker.bootstrap, "after the crash")
        kt.log(f"{fired} alerts fired once across the crash (seed {seed})")
    finally:
        fl.close_all((agg,), broker, work)


def owned_partitions(agg):
    """{kind: partitions of its topic that agg consumes}, from its /metrics."""
    text = kt.http("GET", agg.base + "/metrics", timeout=5)[2].decode()
    out = {"incident": set(), "mediation": set()}
    for topic, p in re.findall(r'^keng_consumer_lag\{topic="antt\.(\w+)s",partition="(\d+)"\}',
                               text, re.M):
        out[topic].add(int(p))
    return out


def test_firing_adopted_from_an_owner_that_died_before_publishing():
    """The same hole at a handover: instance A fires a board and dies before any checkpoint
    published the board's state to antt.board-counts (A's checkpoints are off). Instance B,
    already running in the group, takes A's partitions over: it must adopt the FIRING from
    antt.alerts although the board's state is not among those it loads, and not fire the
    board a second time when it counts the board's events."""
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-crash-")
    broker = kt.Broker(work, partitions=4)
    # The group's assignor may give A only one of the two topics: a rule for each.
    alerts = fl.AlertRules(RULES + [("board_med_5", "board", "mediation", 5)])
    group = "keng-crash-handover-unpublished"
    a = CrashingAggregate(work, broker.bootstrap, group, "checkpoint.interval.ms=600000\n"
                          "checkpoint.events=1000000\n" + alerts.config(), name="a",
                          session_ms=SESSION_MS)
    b = CrashingAggregate(work, broker.bootstrap, group, "checkpoint.interval.ms=200\n" +
                          alerts.config(), name="b", session_ms=SESSION_MS)
    load = Workload(rng)
    try:
        a.start_at("alerts.delivered:1").wait_ready()
        b.start_at(None).wait_ready()
        split = {}

        def settled():
            if not (a.ready() and b.ready()):
                return False
            split.update(a=owned_partitions(a), b=owned_partitions(b))
            return all(not split["a"][k] & split["b"][k] and
                       split["a"][k] | split["b"][k] == {0, 1, 2, 3} for k in split["a"]) and \
                any(split["a"].values()) and any(split["b"].values())
        kt.wait_until(settled, 60, "the partitions split between A and B")
        kind = "incident" if split["a"]["incident"] else "mediation"
        # The test's producer partitions by board id: CRC-32 of the key.
        board = next(x for x in load.fresh if zlib.crc32(x.encode()) % 4 in split["a"][kind])
        now = int(time.time() * 1000)
        batch = []
        for _ in range(6):
            ev = kt.random_event(rng, kind, board, now - rng.randint(fl.DAY, 300 * fl.DAY))
            load.src.unique[ev["event_id"]] = (kind, ev)
            batch.append((kind, ev))
        load.src.sent += batch
        kt.produce(broker.bootstrap, kt.messages(batch))
        parts = {m.partition() for m in kt.consume_all(broker.bootstrap, kt.TOPIC[kind])}
        kt.check(parts <= split["a"][kind], f"{board}'s {kind}s on A's partitions",
                 split["a"][kind], parts)
        kt.wait_until(lambda: not a.alive(), 120, "A to die at its first alert acknowledged")
        log = open(a.process.log_path, "rb").read().decode("utf-8", "replace")
        kt.check("failpoint=alerts.delivered hit=1" in log, "A died at alerts.delivered",
                 "failpoint=alerts.delivered hit=1 in its log", a.process.log_tail(8))
        a.process.kill()

        # B gets A's partitions once A's session has expired.
        kt.wait_until(lambda: b.ready() and owned_partitions(b)[kind] == {0, 1, 2, 3}, 60,
                      "B to take over A's partitions")
        expected = load.src.expected()
        fl.wait_counts(b, expected, "after the handover", scopes="all")
        fired = alerts.check(b, expected, broker.bootstrap, "after the handover", timeout=20)[0]
        b.stop()
        alerts.check_stopped(expected, broker.bootstrap, "after the handover")
        kt.log(f"{fired} alert fired once across the handover ({kind}s, seed {seed})")
    finally:
        fl.close_all((a, b), broker, work)


def test_crash_after_checkpoint_commit():
    crash_rounds("checkpoint.commit")


def test_crash_after_board_counts_unit():
    crash_rounds("board-counts.unit")


def test_crash_after_board_counts_mark():
    crash_rounds("board-counts.mark")


def test_crash_after_alert_delivered():
    crash_rounds("alerts.delivered")


if __name__ == "__main__":
    if not os.path.exists(os.path.join(TEST_BIN, "keng-aggregate")):
        raise SystemExit(f"{TEST_BIN}/keng-aggregate is missing: build first")
    kt.main([test_crash_after_checkpoint_commit, test_crash_after_board_counts_unit,
             test_crash_after_board_counts_mark, test_crash_after_alert_delivered,
             test_firing_acknowledged_before_its_board_is_checkpointed,
             test_firing_adopted_from_an_owner_that_died_before_publishing])
