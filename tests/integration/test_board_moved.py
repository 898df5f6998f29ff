"""A board's events start coming from another partition, as they do once partitions are added
to an input topic and the board's key hashes elsewhere, after keng-aggregate restarted from its
checkpoint. The board's loaded state includes its first partition's events up to an offset;
that offset says nothing of the new partition, whose offsets start lower: every new event is
counted once, none skipped as counted already, and the move is reported in the log and in
keng_board_moves_total."""

import random
import time

import kengtest as kt

MINUTE = 60_000
DAY = 24 * 60 * MINUTE
FIRST, MOVED, OTHER = 300, 60, 20


class Aggregate:
    def __init__(self, work, broker, now):
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = work.file("aggregate.conf")
        # The restarted instance joins while the group still holds the stopped one (the
        # embedded broker has no static membership): a short session bounds that wait.
        with open(self.config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=200\n")
        self.args = ["--config", self.config, "--listen", f"127.0.0.1:{self.port}",
                     "--state-dir", work.file("state"), "--group", "keng-test-board-moved"]
        self.work, self.broker, self.now = work, broker, now
        self.process = None

    def start(self):
        self.process = kt.Process("keng-aggregate", self.args, self.work,
                                  env={"KENG_BROKERS": self.broker.bootstrap,
                                       "KENG_CLOCK_MS": str(self.now)})
        kt.wait_until(lambda: self.alive() and
                      kt.http("GET", self.base + "/readyz", timeout=5)[0] == 200, 90,
                      "keng-aggregate ready")
        return self

    def alive(self):
        if not self.process.alive():
            raise kt.TestFailure(f"keng-aggregate exited: {self.process.log_tail()}")
        return True

    def all_time(self, level, scope_id):
        return kt.get_json(f"{self.base}/v1/counts?level={level}&id={scope_id}")["windows"]["all"]


def produce_to(bootstrap, partition, events):
    """events (kind, event) to one partition of their topic, whatever their key hashes to."""
    from confluent_kafka import Producer
    failures = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for topic, key, value in kt.messages(events):
        p.produce(topic, value=value, key=key, partition=partition,
                  on_delivery=lambda err, msg: failures.append(err) if err else None)
    remaining = p.flush(60)
    kt.check_equal((remaining, failures), (0, []), f"delivery of {len(events)} events to "
                   f"partition {partition}")


def test_board_moved_after_restart():
    rng = random.Random(16)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    agg = None
    try:
        rows = kt.registry_rows()
        by_id = {r["board_id"]: r for r in rows}
        board, other = (r["board_id"] for r in rng.sample(rows, 2))
        now = int(time.time() * 1000)

        def incidents(board_id, n):
            return [("incident", kt.random_event(rng, "incident", board_id,
                                                 now - rng.randint(MINUTE, 300 * DAY)))
                    for _ in range(n)]

        # The board on partition 0, another board on partition 1 (fewer events).
        events = incidents(board, FIRST)
        produce_to(broker.bootstrap, 0, events)
        more = incidents(other, OTHER)
        produce_to(broker.bootstrap, 1, more)
        events += more
        agg = Aggregate(work, broker, now).start()
        expected = kt.expected_all_time(events, by_id)
        kt.wait_until(lambda: agg.all_time("board", board) == expected[("board", board)], 60,
                      "the board's first events counted")
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status after SIGTERM")

        # Restarted, it loads the board's state as of partition 0's offset FIRST; the board's
        # new events then come from partition 1, at offsets OTHER.. below FIRST.
        agg.start()
        moved = incidents(board, MOVED)
        produce_to(broker.bootstrap, 1, moved)
        events += moved
        expected = kt.expected_all_time(events, by_id)
        try:
            kt.wait_until(lambda: all(agg.all_time(*k) == expected[k] for k in
                                      (("board", board), ("province", "NA"))),
                          60, "the moved board's new events counted")
        except kt.TestFailure:
            got = agg.all_time("board", board)["incidents"]["total"]
            kt.check_equal(got, FIRST + MOVED, f"all-time incidents of board {board} "
                           f"({FIRST} on partition 0, then {MOVED} on partition 1)")
            raise
        moves = kt.metrics(agg.base).get("keng_board_moves_total")
        kt.check(moves is not None and moves >= 1, "the move is counted in /metrics",
                 "keng_board_moves_total >= 1", moves)
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status after SIGTERM")
        with open(agg.process.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        kt.check(f"board={board} topic=antt.incidents partition=1 before=0" in log,
                 "the move is in the log", f"a warning naming board {board}",
                 agg.process.log_tail(5))
        agg = None
    finally:
        kt.close_all([agg.process] if agg and agg.process and agg.process.alive() else [],
                     broker, work)


if __name__ == "__main__":
    kt.main([test_board_moved_after_restart])
