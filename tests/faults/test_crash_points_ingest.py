"""keng-ingest killed at its named crash points (common/failpoint.h): just after a 202 is
handed to the socket, and just after the producer's flush at a stop has returned. The test
copy build/test-bin/keng-ingest runs until it kills itself there; gateways post meanwhile
and send again what got no answer, and a copy without a crash point restarts on the same
port. In the end every event that got a 202 is in the topics: exactly once when it was
posted once, at least once when a gateway had to send it again (its event_id makes the
copy harmless to keng-aggregate). KENG_FAULT_SEED=N replays a run; KENG_CRASH_ROUNDS=N
changes the number of rounds (3)."""

import os
import random
import signal
import threading
import time

import faultlib as fl
from faultlib import kt

ROUNDS = int(os.environ.get("KENG_CRASH_ROUNDS", "3"))
TEST_BIN = os.path.join(kt.BIN_DIR, "..", "test-bin")


class CrashingIngest(fl.Ingest):
    def start_at(self, failpoint, timeout=30):
        saved = kt.BIN_DIR
        kt.BIN_DIR = TEST_BIN
        try:
            self.process = kt.Process("keng-ingest", [
                "--listen", f"127.0.0.1:{self.port}", "--brokers", self.bootstrap, "--tokens",
                self.tokens, "--config", self.config], self.work,
                env={"KENG_FAILPOINT": failpoint} if failpoint else {})
        finally:
            kt.BIN_DIR = saved

        def healthy():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-ingest exited with {self.process.proc.returncode}: "
                                     f"{self.process.log_tail()}")
            return kt.http("GET", self.url("/healthz"), timeout=2)[0] == 200
        kt.wait_until(healthy, timeout, "keng-ingest /healthz", interval=0.05)
        return self

    def died_at(self, point, nth):
        log = open(self.process.log_path, "rb").read().decode("utf-8", "replace")
        return f"failpoint={point} hit={nth}" in log


class Gateway:
    """Posts requests of 1 to 5 events one after the other; a request without an answer or
    with a 503 is sent again (the same events) until it gets a 202."""

    def __init__(self, ing, rng):
        self.ing = ing
        self.rng = rng
        rows, _ = fl.registry()
        self.boards = [r["board_id"] for r in rows if r["district_id"] in ("D03", "D07")]
        self.acked = {}  # event_id -> times posted before its 202
        self.posts = {}  # event_id -> times posted
        self.pending = []  # requests still without a 202: (kind, events)
        self.stop = threading.Event()
        self.errors = []

    def request(self):
        if self.pending:
            return self.pending.pop(0)
        kind = "incident" if self.rng.random() < 0.6 else "mediation"
        now = int(time.time() * 1000)
        events = [kt.random_event(self.rng, kind, self.rng.choice(self.boards),
                                  now - self.rng.randint(fl.DAY, 30 * fl.DAY))
                  for _ in range(self.rng.randint(1, 5))]
        return kind, events

    def post(self, kind, events):
        for ev in events:
            self.posts[ev["event_id"]] = self.posts.get(ev["event_id"], 0) + 1
        status, answer = self.ing.post(kind, events, timeout=15)
        if status == 202:
            for ev in events:
                self.acked[ev["event_id"]] = self.posts[ev["event_id"]]
            return True
        if status not in (None, 503):
            self.errors.append((status, answer))
        self.pending.append((kind, events))
        return False

    def run(self, n=None):
        """Posts until stop is set, n requests got their 202, or keng-ingest is gone."""
        done = 0
        while not self.stop.is_set() and (n is None or done < n) and self.ing.process.alive():
            if self.post(*self.request()):
                done += 1
            else:
                time.sleep(0.05)

    def drain(self, timeout=60):
        """Sends every request still without a 202 until it gets one."""
        deadline = time.monotonic() + timeout
        while self.pending:
            kt.check(time.monotonic() < deadline, f"every request answered 202 within "
                     f"{timeout}s", "none left", self.pending[:2])
            kind, events = self.pending.pop(0)
            if not self.post(kind, events):
                time.sleep(0.2)


def check_topics(bootstrap, gw, what):
    ids = fl.read_ids(bootstrap)
    once = {e for e, n in gw.acked.items() if gw.posts[e] == 1}
    missing = sorted(e for e in gw.acked if e not in ids)
    doubled = sorted(e for e in once if ids.get(e, 0) != 1)
    kt.check_equal(missing, [], f"{what}: events answered 202 but not in the topics")
    kt.check_equal(doubled, [], f"{what}: events posted once, answered 202, not exactly once "
                   "in the topics")
    kt.check_equal(gw.errors, [], f"{what}: answers other than 202 or 503")
    return len(gw.acked), len(once)


def test_crash_after_the_202():
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-crash-ingest-")
    broker = kt.Broker(work, partitions=4)
    ing = CrashingIngest(work, broker.bootstrap)
    gw = Gateway(ing, rng)
    crashes = 0
    try:
        for r in range(1, ROUNDS + 1):
            nth = rng.randint(3, 12)
            ing.start_at(f"ingest.answered:{nth}")
            gw.run(n=nth + 2)  # ends when keng-ingest is gone
            kt.wait_until(lambda: not ing.process.alive(), 30, "keng-ingest to die")
            kt.check(ing.died_at("ingest.answered", nth), f"round {r}: died after the 202",
                     f"failpoint=ingest.answered hit={nth}", ing.process.log_tail(5))
            ing.process.kill()
            crashes += 1
            ing.start_at(None)
            gw.drain()
            gw.run(n=3)
            ing.stop()
            kt.log(f"round {r}: killed after the {nth}th 202")
        acked, once = check_topics(broker.bootstrap, gw, "after the crashes after the 202")
        kt.log(f"{acked} events answered 202 are in the topics ({once} posted once: exactly "
               f"once)")
    finally:
        print(f"FIGURES crash point ingest.answered: crashes {crashes}, events answered 202 "
              f"{len(gw.acked)}, seed {seed}", flush=True)
        fl.close_all((ing,), broker, work)


def test_crash_after_the_flush():
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-crash-ingest-")
    broker = kt.Broker(work, partitions=4)
    ing = CrashingIngest(work, broker.bootstrap)
    gw = Gateway(ing, rng)
    crashes = 0
    try:
        for r in range(1, ROUNDS + 1):
            ing.start_at("ingest.flush")
            gw.stop.clear()
            poster = threading.Thread(target=gw.run)
            poster.start()
            time.sleep(rng.uniform(0.5, 2.0))
            # SIGTERM while requests are in flight: they are answered, the producer flushes,
            # and the process dies right after the flush.
            ing.process.signal(signal.SIGTERM)
            kt.wait_until(lambda: not ing.process.alive(), 60, "keng-ingest to stop")
            gw.stop.set()
            poster.join(60)
            kt.check(ing.died_at("ingest.flush", 1), f"round {r}: died after the flush",
                     "failpoint=ingest.flush hit=1", ing.process.log_tail(5))
            ing.process.kill()
            crashes += 1
            ing.start_at(None)
            gw.drain()
            ing.stop()
            kt.log(f"round {r}: killed after the flush")
        acked, once = check_topics(broker.bootstrap, gw, "after the crashes after the flush")
        kt.log(f"{acked} events answered 202 are in the topics ({once} posted once: exactly "
               f"once)")
    finally:
        print(f"FIGURES crash point ingest.flush: crashes {crashes}, events answered 202 "
              f"{len(gw.acked)}, seed {seed}", flush=True)
        fl.close_all((ing,), broker, work)


if __name__ == "__main__":
    if not os.path.exists(os.path.join(TEST_BIN, "keng-ingest")):
        raise SystemExit(f"{TEST_BIN}/keng-ingest is missing: build first")
    kt.main([test_crash_after_the_202, test_crash_after_the_flush])
