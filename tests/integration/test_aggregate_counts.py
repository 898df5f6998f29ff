"""keng-aggregate against the embedded broker, fed by an outside Kafka client (confluent-kafka
and Apache Avro's Python library, DESIGN.md's framing): /v1/counts matches the totals computed
here at board, commune, district and province level in every window; messages it cannot count
land in antt.deadletter with the reason in the keng.reason header while counting goes on; and
after SIGTERM or SIGKILL a restart from the same --state-dir counts every event exactly once."""

import json
import random
import signal
import struct
import time

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "365d": 365 * DAY,
           "all": None}
# Ages at least 2/60 of a window away from its edge: the allowed edge rounding (1/60 of the
# length) cannot move them.
AGE_BANDS = [(2 * MINUTE, 40 * MINUTE), (2 * HOUR, 20 * HOUR), (2 * DAY, 6 * DAY),
             (8 * DAY, 25 * DAY), (40 * DAY, 300 * DAY), (400 * DAY, 3 * 365 * DAY)]


def pick_boards(rows, rng):
    chosen = []
    for d in ("D02", "D11"):
        chosen += rng.sample([r for r in rows if r["district_id"] == d], 15)
    return chosen


def make_events(boards, n, now, rng):
    events = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        low, high = rng.choice(AGE_BANDS)
        events.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                             now - rng.randint(low, high))))
    return events


def expected_windows(events, boards_by_id, now):
    out = {}
    for window, length in WINDOWS.items():
        in_window = [(k, e) for k, e in events
                     if length is None or e["occurred_at"] >= now - length]
        for scope, tally in kt.expected_all_time(in_window, boards_by_id).items():
            out.setdefault(scope, {})[window] = tally
    for scope in out:
        for window in WINDOWS:
            out[scope].setdefault(window, kt.empty_tally())
    return out


def check_counts(base, expected, what, timeout=120):
    def all_match():
        for (level, scope_id), windows in expected.items():
            got = kt.get_json(f"{base}/v1/counts?level={level}&id={scope_id}")
            if any(got["windows"][w] != t for w, t in windows.items()):
                return False
        return True

    try:
        kt.wait_until(all_match, timeout, f"/v1/counts to match ({what})", interval=0.5)
    except kt.TestFailure:
        for (level, scope_id), windows in expected.items():
            got = kt.get_json(f"{base}/v1/counts?level={level}&id={scope_id}")
            for window, tally in windows.items():
                kt.check_equal(got["windows"][window], tally,
                               f"{what}: {level} {scope_id} window {window}")
        raise
    kt.log(f"{what}: {len(expected)} scopes match in every window")


def snapshot(base, expected):
    """Every scope's windows, for comparing two runs."""
    return {scope: kt.get_json(f"{base}/v1/counts?level={scope[0]}&id={scope[1]}")["windows"]
            for scope in expected}


class Aggregate:
    def __init__(self, work, broker, now, group, extra_config=""):
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = work.file("aggregate.conf")
        with open(config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=200\n" + extra_config)
        self.process = kt.Process(
            "keng-aggregate",
            ["--config", config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
             work.file("state"), "--group", group],
            work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(now)})

    def wait_ready(self):
        def ready():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-aggregate exited: {self.process.log_tail()}")
            return kt.http("GET", self.base + "/readyz")[0] == 200
        kt.wait_until(ready, 120, "keng-aggregate to be ready")


def bad_messages(now, rng):
    """(topic, key, value, expected reason) for what the aggregator must dead-letter."""
    good = kt.random_event(rng, "incident", "D02-C001-B01", now - HOUR)
    unknown_board = kt.random_event(rng, "incident", "D99-C999-B99", now - HOUR)
    future = kt.random_event(rng, "mediation", "D11-C001-B01", now + 2 * HOUR)
    framed = kt.encode_framed("incident", good)
    return [
        ("antt.incidents", b"D02-C001-B01", b"\x01" + framed[1:], "bad-magic"),
        ("antt.mediations", b"D11-C001-B01", struct.pack(">bI", 0, 99) + framed[5:],
         "unknown-schema-id"),
        ("antt.incidents", b"D99-C999-B99", kt.encode_framed("incident", unknown_board),
         "unknown-board"),
        ("antt.mediations", b"D11-C001-B01", kt.encode_framed("mediation", future),
         "future-event"),
    ]


def test_counts_deadletter_and_restart():
    rng = random.Random(7588)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    agg = None
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = pick_boards(rows, rng)
        now = int(time.time() * 1000)
        first = make_events(boards, 1500, now, rng)
        first += rng.sample(first, 100)  # resends: counted once
        bad = bad_messages(now, rng)
        kt.produce(broker.bootstrap, kt.messages(first) + [(t, k, v) for t, k, v, _ in bad])

        agg = Aggregate(work, broker, now, "keng-test-aggregate")
        agg.wait_ready()
        wanted = expected_windows(first, boards_by_id, now)
        check_counts(agg.base, wanted, "first batch")

        # The dead letters: the original key and value, the reason and where they came from.
        letters = kt.wait_until(
            lambda: (lambda m: m if len(m) >= len(bad) else None)(
                kt.consume_all(broker.bootstrap, "antt.deadletter")),
            60, "dead letters")
        by_reason = {}
        for m in letters:
            headers = {k: v.decode() for k, v in (m.headers() or [])}
            by_reason[headers.get("keng.reason")] = (m, headers)
        kt.check_equal(sorted(by_reason), sorted(r for _, _, _, r in bad), "dead-letter reasons")
        for topic, key, value, reason in bad:
            m, headers = by_reason[reason]
            kt.check_equal((m.key(), m.value()), (key, value), f"{reason}: key and value")
            kt.check_equal(headers.get("keng.source.topic"), topic, f"{reason}: source topic")
            kt.check("keng.source.partition" in headers and "keng.source.offset" in headers
                     and headers.get("keng.error"), f"{reason}: headers",
                     "source partition, offset and error", headers)
        got = kt.metrics(agg.base)
        for _, _, _, reason in bad:
            kt.check_equal(got.get(f'keng_deadletter_total{{reason="{reason}"}}'), 1.0,
                           f"keng_deadletter_total for {reason}")
        kt.check_equal(got.get("keng_events_counted_total"), 1500.0, "keng_events_counted_total")
        kt.check_equal(got.get("keng_duplicates_dropped_total"), 100.0,
                       "keng_duplicates_dropped_total")

        # Counting goes on after the bad messages.
        second = make_events(boards, 500, now, rng)
        kt.produce(broker.bootstrap, kt.messages(second))
        wanted = expected_windows(first + second, boards_by_id, now)
        check_counts(agg.base, wanted, "second batch")

        # The API's answers to bad requests, and the top list.
        status, _, body = kt.http("GET", agg.base + "/v1/counts?level=village&id=x")
        kt.check_equal(status, 400, f"bad level status ({body!r})")
        status, _, body = kt.http("GET", agg.base + "/v1/counts?level=board&id=D99-C999-B99")
        kt.check_equal(status, 404, f"unknown board status ({body!r})")
        prov = kt.get_json(agg.base + "/v1/counts?level=province")
        kt.check_equal((prov["id"], prov["windows"]["all"]), ("NA", wanted[("province", "NA")]["all"]),
                       "province without an id")
        top = kt.get_json(agg.base + "/v1/top?level=district&window=all&kind=incident&limit=5")
        want_top = sorted(((-t["all"]["incidents"]["total"], sid) for (lvl, sid), t in wanted.items()
                           if lvl == "district" and t["all"]["incidents"]["total"] > 0))
        kt.check_equal([(i["id"], i["count"]) for i in top["items"]],
                       [(sid, -n) for n, sid in want_top][:5], "top districts")
        kt.check_equal(kt.http("GET", agg.base + "/healthz")[0], 200, "/healthz")
        import urllib.request
        with urllib.request.urlopen(agg.base + "/v1/stream", timeout=10) as r:
            lines = [r.readline().decode().rstrip("\n") for _ in range(2)]
        kt.check_equal(lines[0], "event: counts", "first line of /v1/stream")
        streamed = json.loads(lines[1][len("data: "):])
        kt.check_equal(streamed["windows"]["all"], wanted[("province", "NA")]["all"],
                       "province totals on /v1/stream")

        before = snapshot(agg.base, wanted)
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status after SIGTERM")

        # Same state dir: resumes from the checkpoint, re-reads nothing, counts the same.
        agg = Aggregate(work, broker, now, "keng-test-aggregate")
        agg.wait_ready()
        check_counts(agg.base, wanted, "after restart")
        kt.check_equal(snapshot(agg.base, wanted), before, "counts after restart")
        got = kt.metrics(agg.base)
        kt.check_equal(got.get("keng_events_counted_total"), 0.0,
                       "events counted again after a clean restart")
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status after SIGTERM")
        agg = None
    finally:
        kt.close_all([agg.process if agg else None], broker, work)


def test_kill_and_restart_counts_once():
    rng = random.Random(38661)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    agg = None
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = pick_boards(rows, rng)
        now = int(time.time() * 1000)
        first = make_events(boards, 2000, now, rng)
        kt.produce(broker.bootstrap, kt.messages(first))
        # Checkpoints every 700 events only, so that the kill always leaves counted events
        # behind that the checkpoint does not have.
        every = "checkpoint.interval.ms=3600000\ncheckpoint.events=700\n"
        agg = Aggregate(work, broker, now, "keng-test-kill", every)
        agg.wait_ready()
        check_counts(agg.base, expected_windows(first, boards_by_id, now), "before the kill")

        second = make_events(boards, 3000, now, rng)
        kt.produce(broker.bootstrap, kt.messages(second))
        kt.wait_until(lambda: kt.metrics(agg.base).get("keng_events_counted_total") == 5000, 120,
                      "all 5000 events to be counted")
        agg.process.signal(signal.SIGKILL)
        agg.process.kill()

        # What was counted after the last checkpoint is read again, from the checkpointed
        # offsets onto the checkpointed state, and so counted once.
        agg = Aggregate(work, broker, now, "keng-test-kill", every)
        agg.wait_ready()
        again = kt.metrics(agg.base).get("keng_events_counted_total")
        kt.check(again is not None and 0 < again < 5000,
                 "events read again after SIGKILL", "some, not all", again)
        check_counts(agg.base, expected_windows(first + second, boards_by_id, now),
                     "after SIGKILL and restart")
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status after SIGTERM")
        agg = None
    finally:
        kt.close_all([agg.process if agg else None], broker, work)


if __name__ == "__main__":
    kt.main([test_counts_deadletter_and_restart, test_kill_and_restart_counts_once])
