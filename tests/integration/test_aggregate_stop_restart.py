"""keng-aggregate stops cleanly and comes back quickly: SIGTERM exits 0 even while the group
still withholds its first assignment (librdkafka 2.0.2 aborted there); a SIGTERM after the
assignment writes the checkpoint, so that a restart reads nothing again; and a restart after
one SIGKILL, or after five quick ones, on the same --state-dir is ready again with exact
counts (the seconds it took are printed as FIGURES; no timing is asserted). Runs on
whichever broker the harness starts (KENG_TEST_BROKER). On Apache Kafka the stop before the
first assignment lands before the group's JoinGroup answer, where librdkafka 2.0.2 does not
abort; the embedded broker answers JoinGroup early and so reproduces the abort."""

import os
import random
import signal
import time

import kengtest as kt

BOARDS = ["D03-C001-B01", "D07-C002-B02", "D15-C003-B01", "D07-C001-B03"]


class Aggregate:
    """keng-aggregate on one state dir and group, restartable."""

    def __init__(self, work, broker, name, group, config):
        self.work = work
        self.broker = broker
        self.state_dir = work.file(f"{name}-state")
        self.config = work.file(f"{name}.conf")
        self.group = group
        with open(self.config, "w") as f:
            f.write(config)
        self.process = None

    def start(self):
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = kt.Process(
            "keng-aggregate",
            ["--config", self.config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
             self.state_dir, "--group", self.group],
            self.work, env={"KENG_BROKERS": self.broker.bootstrap})

        def healthy():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-aggregate exited with "
                                     f"{self.process.proc.returncode}: {self.process.log_tail()}")
            return kt.http("GET", self.base + "/healthz", timeout=2)[0] == 200
        kt.wait_until(healthy, 60, "keng-aggregate /healthz", interval=0.05)
        return self

    def ready(self):
        if not self.process.alive():
            raise kt.TestFailure(f"keng-aggregate exited with {self.process.proc.returncode}: "
                                 f"{self.process.log_tail()}")
        return kt.http("GET", self.base + "/readyz", timeout=5)[0] == 200

    def wait_ready(self, timeout=120):
        started = time.monotonic()
        kt.wait_until(self.ready, timeout, "keng-aggregate to be ready", interval=0.1)
        return time.monotonic() - started

    def sigkill(self):
        self.process.signal(signal.SIGKILL)
        self.process.kill()

    def stop_status(self):
        return self.process.stop(timeout=60)

    def province(self):
        return kt.get_json(f"{self.base}/v1/counts?level=province&id=NA")["windows"]["all"]

    def counted(self):
        return kt.metrics(self.base).get("keng_events_counted_total")


def events(rng, n):
    now = int(time.time() * 1000)
    out = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        out.append((kind, kt.random_event(rng, kind, rng.choice(BOARDS),
                                          now - rng.randint(86_400_000, 30 * 86_400_000))))
    return out


def log_of(agg):
    with open(agg.process.log_path, "rb") as f:
        return f.read()


def province_of(evs):
    rows = {r["board_id"]: r for r in kt.registry_rows()}
    return kt.expected_all_time(evs, rows)[("province", "NA")]


def test_stop_before_the_first_assignment_exits_0():
    """Five members of a group die (SIGKILL) just after they ask to join it; a sixth joins
    and waits for the group, which waits for the dead ones; it is stopped while it waits."""
    work = kt.Workdir(prefix="keng-stop-")
    broker = kt.Broker(work, partitions=4)
    procs = []
    try:
        # The default session (45 s): the group still waits for the dead members at the stop.
        # Each dies once librdkafka has sent its JoinGroup (its debug log says so), not at
        # its first /healthz: on a busy machine that comes before the consumer even
        # subscribed, all five died outside the group, and the sixth was assigned at once.
        for i in range(5):
            a = Aggregate(work, broker, f"dead{i}", "keng-stop-early",
                          "kafka.debug=cgrp\n").start()
            kt.wait_until(lambda: b"-> wait-join" in log_of(a), 60, f"dead{i}'s JoinGroup",
                          interval=0.01)
            a.sigkill()
        last = Aggregate(work, broker, "last", "keng-stop-early", "").start()
        procs.append(last)
        time.sleep(20)
        kt.check(not last.ready(), "the sixth instance still waits for its partitions at the "
                 "stop (else this test tests nothing)", "not ready", "ready")
        rc = last.stop_status()
        log = open(last.process.log_path, "rb").read().decode("utf-8", "replace")
        kt.check_equal(rc, 0, f"exit status of a SIGTERM before the first assignment; log "
                       f"tail: {last.process.log_tail(5)}")
        kt.check("Assertion" not in log, "no assertion in the log", "none",
                 [line for line in log.splitlines() if "Assertion" in line])
    finally:
        kt.close_all([p.process for p in procs if p.process and p.process.alive()], broker, work)


def test_stop_after_assignment_checkpoints_and_sigkill_restart_is_quick():
    rng = random.Random(int(os.environ.get("KENG_TEST_SEED", "8")))
    work = kt.Workdir(prefix="keng-stop-")
    broker = kt.Broker(work, partitions=4)
    # Checkpoints only at the stop: a restart that reads nothing again proves the stop wrote one.
    agg = Aggregate(work, broker, "agg", "keng-stop-late",
                    "kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=3600000\ncheckpoint.events=100000000\n")
    try:
        sent = events(rng, 300)
        kt.produce(broker.bootstrap, kt.messages(sent))
        agg.start().wait_ready()
        want = province_of(sent)
        kt.wait_until(lambda: agg.province() == want, 60, "counts of the first 300 events")
        kt.check_equal(agg.stop_status(), 0, "exit status of a SIGTERM after the assignment")

        agg.start()
        ready_s = agg.wait_ready()
        kt.check_equal(agg.province(), want, "province counts after the clean restart")
        kt.check_equal(agg.counted(), 0.0, "events read again after a clean stop (the stop "
                       "must have checkpointed them)")
        kt.log(f"ready {ready_s:.1f}s after a restart that followed SIGTERM")

        more = events(rng, 200)
        kt.produce(broker.bootstrap, kt.messages(more))
        want = province_of(sent + more)
        kt.wait_until(lambda: agg.province() == want, 60, "counts of all 500 events")
        agg.sigkill()
        agg.start()
        ready_s = agg.wait_ready()
        kt.check_equal(agg.province(), want, "province counts after SIGKILL and restart")
        kt.log(f"FIGURES restart after SIGKILL: ready in {ready_s:.1f}s (broker "
               f"{os.environ.get('KENG_TEST_BROKER', 'embedded')}, session 6 s)")

        # Five quick SIGKILLs, each just after /healthz, then a restart: with static
        # membership every incarnation is the same member on Apache Kafka.
        for _ in range(5):
            agg.sigkill()
            agg.start()
        agg.sigkill()
        agg.start()
        ready_s = agg.wait_ready()
        kt.check_equal(agg.province(), want, "province counts after five quick SIGKILLs")
        kt.log(f"FIGURES restart after five quick SIGKILLs: ready in {ready_s:.1f}s (broker "
               f"{os.environ.get('KENG_TEST_BROKER', 'embedded')}, session 6 s)")
        kt.check_equal(agg.stop_status(), 0, "exit status of the last SIGTERM")
    finally:
        kt.close_all([agg.process] if agg.process and agg.process.alive() else [], broker, work)


if __name__ == "__main__":
    kt.main([test_stop_before_the_first_assignment_exits_0,
             test_stop_after_assignment_checkpoints_and_sigkill_restart_is_quick])
