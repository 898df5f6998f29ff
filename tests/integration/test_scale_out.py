"""Two keng-aggregate instances in one consumer group share the input topics (cooperative-
sticky) and antt.board-counts: the union of their counts is exact, the province totals from
either instance are exact, a board owned by the other instance names its owner; after SIGKILL
of one the other takes every partition and counts every event once, also events produced while
one is down; and when the killed one comes back and partitions move back, still exactly once."""

import random
import signal
import time

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
GROUP = "keng-test-scale-out"


class Instance:
    def __init__(self, work, broker, now, name):
        self.name = name
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = work.file(f"{name}.conf")
        with open(self.config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    f"checkpoint.interval.ms=200\ninstance.id={name}\n")
        self.args = ["--config", self.config, "--listen", f"127.0.0.1:{self.port}",
                     "--state-dir", work.file(f"state-{name}"), "--group", GROUP]
        self.work, self.broker, self.now = work, broker, now
        self.start()

    def start(self):
        self.process = kt.Process("keng-aggregate", self.args, self.work,
                                  env={"KENG_BROKERS": self.broker.bootstrap,
                                       "KENG_CLOCK_MS": str(self.now)})

    def counts(self, level, scope_id):
        return kt.get_json(f"{self.base}/v1/counts?level={level}&id={scope_id}")

    def alive_check(self):
        if not self.process.alive():
            raise kt.TestFailure(f"{self.name} exited: {self.process.log_tail()}")


def make_events(boards, n, now, rng):
    events = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        events.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                             now - rng.randint(MINUTE, 300 * DAY))))
    return events


def check_exact(instances, expected, boards, what, timeout=120):
    """Every board and the province, all-time, from every live instance: a board's answer is
    the same whoever owns it (live state or the owner's published state)."""
    province = expected[("province", "NA")]
    scopes = [("province", "NA")] + [("board", b["board_id"]) for b in boards]
    scopes += sorted({("district", b["district_id"]) for b in boards})

    def matches():
        for inst in instances:
            inst.alive_check()
            for level, sid in scopes:
                got = inst.counts(level, sid)["windows"]["all"]
                if got != expected.get((level, sid), kt.empty_tally()):
                    return False
        return True

    try:
        kt.wait_until(matches, timeout, f"exact counts ({what})", interval=0.5)
    except kt.TestFailure:
        for inst in instances:
            if not inst.process.alive():
                continue
            kt.log(f"{inst.name} log:\n{inst.process.log_tail(40)}")
            for level, sid in scopes:
                kt.check_equal(inst.counts(level, sid)["windows"]["all"],
                               expected.get((level, sid), kt.empty_tally()),
                               f"{what}: {inst.name} {level} {sid} all-time")
        raise
    kt.log(f"{what}: province {province['incidents']['total']} incidents, "
           f"{province['mediations']['total']} mediations, exact on "
           f"{', '.join(i.name for i in instances)}")


def metric(inst, name):
    status, _, body = kt.http("GET", inst.base + "/metrics")
    kt.check_equal(status, 200, "/metrics status")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def assigned(inst):
    """Partitions the instance consumes, from its keng_consumer_lag lines."""
    status, _, body = kt.http("GET", inst.base + "/metrics")
    if status != 200:
        return 0
    return sum(1 for line in body.decode().splitlines() if line.startswith("keng_consumer_lag{"))


def test_two_instances_kill_and_rejoin():
    rng = random.Random(460)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=6)
    a = b = None
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = rng.sample(rows, 60)
        now = int(time.time() * 1000)

        a = Instance(work, broker, now, "agg-a")
        b = Instance(work, broker, now, "agg-b")
        events = make_events(boards, 1500, now, rng)
        events += rng.sample(events, 50)  # resends: counted once
        kt.produce(broker.bootstrap, kt.messages(events))
        check_exact([a, b], kt.expected_all_time(events, boards_by_id), boards, "two instances")

        # Both hold a share: the sum of what each counted live is every event once.
        counted = kt.wait_until(
            lambda: (lambda x, y: (x, y) if x is not None and y is not None else None)(
                metric(a, "keng_events_counted_total"), metric(b, "keng_events_counted_total")),
            30, "metrics of both instances")
        kt.check(counted[0] > 0 and counted[1] > 0, "each instance counts a share",
                 "both > 0", counted)

        # A board owned by the other instance names its owner.
        owners = {}
        for board in boards:
            got = b.counts("board", board["board_id"])
            if "owner" in got:
                owners[board["board_id"]] = got["owner"]
        kt.check(owners, "boards of agg-b's answers owned by another instance", "some", owners)
        some = next(iter(owners.values()))
        kt.check_equal((some["instance"], some["url"]), ("agg-a", a.base), "owner of a board")

        # SIGKILL: agg-b takes every partition and counts every event once.
        a.process.signal(signal.SIGKILL)
        a.process.kill()
        kt.log("agg-a killed")
        more = make_events(boards, 700, now, rng)
        kt.produce(broker.bootstrap, kt.messages(more))
        events += more
        check_exact([b], kt.expected_all_time(events, boards_by_id), boards,
                    "after SIGKILL, produced while one is down", timeout=150)
        for board in boards:
            got = b.counts("board", board["board_id"])
            kt.check("owner" not in got, f"board {board['board_id']} owned by agg-b alone",
                     "no owner field", got.get("owner"))

        # The killed one rejoins from its stale local checkpoint; partitions move back.
        a.start()
        kt.wait_until(lambda: assigned(a) > 0 and kt.http("GET", a.base + "/readyz")[0] == 200,
                      90, "agg-a to own partitions again and catch up")
        kt.log(f"agg-a owns {assigned(a)} partitions again")
        last = make_events(boards, 500, now, rng)
        kt.produce(broker.bootstrap, kt.messages(last))
        events += last
        check_exact([a, b], kt.expected_all_time(events, boards_by_id), boards,
                    "after agg-a rejoined", timeout=150)
        kt.check(metric(a, "keng_events_counted_total") > 0, "agg-a counts again after rejoining",
                 "> 0", metric(a, "keng_events_counted_total"))

        kt.check_equal(a.process.stop(), 0, "agg-a exit status after SIGTERM")
        check_exact([b], kt.expected_all_time(events, boards_by_id), boards,
                    "after agg-a stopped cleanly")
        kt.check_equal(b.process.stop(), 0, "agg-b exit status after SIGTERM")
        a = b = None
    finally:
        kt.close_all([i.process for i in (a, b) if i and i.process.alive()], broker, work)


if __name__ == "__main__":
    kt.main([test_two_instances_kill_and_rejoin])
