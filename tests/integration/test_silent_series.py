"""Silent boards and series against the real keng-aggregate, over HTTP, on a small registry of
20 boards with the clock set by KENG_CLOCK_MS: a new deployment shows no silent board and
fires nothing; 31 days later (same state directory) every board that did not report is
silent and the silent rules fire once each on antt.alerts; boards that report resolve; a
SIGKILL and restart keep the last events and repeat no transition; a second instance in the
group (fresh state directory) sees the same silent boards through antt.board-counts and,
when the first leaves, takes every alert over without a transition, and gives them back; /v1/series adds up to /v1/counts at a clock on a
bucket edge with events on the window edges; bad parameters get 400s that name them."""

import collections
import random
import time

import kengtest as kt
from test_alerts import alert_records

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# A clock on a 24-minute boundary, which is where the 24h window's start moves.
T = (1767225600000 // (24 * MINUTE)) * (24 * MINUTE) + 200 * DAY

DISTRICTS = {"D01": {"D01-C001": 6, "D01-C002": 4}, "D02": {"D02-C001": 5, "D02-C002": 5}}


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def write_registry(work):
    path = work.file("registry.csv")
    rows = []
    with open(path, "w") as f:
        f.write("board_id,board_name,commune_id,commune_name,district_id,district_name,"
                "groups,members\n")
        for d, communes in DISTRICTS.items():
            for c, n in communes.items():
                for b in range(1, n + 1):
                    bid = f"{c}-B{b:02d}"
                    f.write(f"{bid},Thôn {b} {c},{c},Xã {c},{d},Huyện {d},5,20\n")
                    rows.append({"board_id": bid, "commune_id": c, "district_id": d})
    return path, rows


class Aggregate:
    def __init__(self, work, broker, registry, clock, state, port=None, rules="", name="a"):
        self.port = port or kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = work.file(f"aggregate-{name}.conf")
        with open(config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=200\n" + rules)
        self.process = kt.Process(
            "keng-aggregate",
            ["--config", config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
             work.file(state), "--group", "keng-test-silent", "--registry", registry],
            work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(clock)})

    def wait_ready(self):
        def ready():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-aggregate exited: {self.process.log_tail()}")
            return kt.http("GET", self.base + "/readyz")[0] == 200
        kt.wait_until(ready, 120, "keng-aggregate to be ready")

    def get(self, path):
        return kt.get_json(self.base + path)


RULES = ("alert.quiet.kind=silent\nalert.quiet.level=board\n"
         "alert.quiet_commune.kind=silent\nalert.quiet_commune.level=commune\n"
         "alert.quiet_commune.share=0.5\n")


def event(rng, kind, board, occurred, reported):
    return (kind, kt.random_event(rng, kind, board, occurred, reported))


def expected_silent(rows, last_report, watch_start, now, days):
    """{board: silent days} of the silent boards."""
    out = {}
    for r in rows:
        start = max(last_report.get(r["board_id"], watch_start), watch_start)
        if now - start >= days * DAY:
            out[r["board_id"]] = (now - start) // DAY
    return out


def check_silent(agg, rows, last_report, watch_start, now, days, what):
    want = expected_silent(rows, last_report, watch_start, now, days)
    got = agg.get(f"/v1/silent?days={days}")
    kt.check_equal({i["id"]: i["silent_days"] for i in got["items"]}, want, f"{what}: silent boards")
    order = [r["board_id"] for r in rows]
    kt.check_equal([i["id"] for i in got["items"]],
                   sorted(want, key=lambda b: (last_report.get(b, -1), order.index(b))),
                   f"{what}: longest silent first (never reported, then by last event)")
    kt.check_equal((got["boards"], got["silent"], got["active"]),
                   (len(rows), len(want), len(rows) - len(want)), f"{what}: boards, silent, active")
    for c in got["communes"]:
        n = sum(1 for r in rows if r["commune_id"] == c["id"])
        s = sum(1 for b in want if b.startswith(c["id"] + "-"))
        kt.check_equal((c["boards"], c["silent"], c["active"]), (n, s, n - s),
                       f"{what}: commune {c['id']}")
    for d in got["districts"]:
        s = sum(1 for b in want if b.startswith(d["id"] + "-"))
        kt.check_equal(d["silent"], s, f"{what}: district {d['id']}")
    kt.check_equal(len(got["communes"]), 4, f"{what}: communes listed")
    # Under a district: only its communes and boards.
    d01 = agg.get(f"/v1/silent?level=district&id=D01&days={days}")
    kt.check_equal(sorted(i["id"] for i in d01["items"]),
                   sorted(b for b in want if b.startswith("D01-")), f"{what}: D01's silent boards")
    kt.check_equal(sorted(c["id"] for c in d01["communes"]), ["D01-C001", "D01-C002"],
                   f"{what}: D01's communes")
    for i in got["items"]:
        last = last_report.get(i["id"])
        kt.check_equal(i["last_event"] is None, last is None, f"{what}: {i['id']} last_event")
    return got


def firing_set(agg):
    return sorted((a["rule"], a["scope_id"]) for a in agg.get("/v1/alerts?status=firing")["alerts"])


def wait_firing(aggs, want, what, timeout=60):
    """Waits until the instances together list exactly want, each alert once."""
    try:
        kt.wait_until(lambda: sorted(sum((firing_set(x) for x in aggs), [])) == want, timeout,
                      what)
    except kt.TestFailure:
        kt.check_equal(sorted(sum((firing_set(x) for x in aggs), [])), want, what)
        raise


def expected_firing(rows, silent):
    out = [("quiet", b) for b in silent]
    by_commune = collections.Counter(r["commune_id"] for r in rows)
    for c, n in by_commune.items():
        s = sum(1 for b in silent if b.startswith(c + "-"))
        if s > n // 2:
            out.append(("quiet_commune", c))
    return sorted(out)


def check_alert_topic(broker, what):
    """Every (alert_id, status) on antt.alerts exactly once; returns the records."""
    records = alert_records(broker.bootstrap)
    seen = collections.Counter((r["alert_id"], r["status"]) for r in records)
    twice = [k for k, n in seen.items() if n > 1]
    kt.check_equal(twice, [], f"{what}: transitions written more than once")
    return records


def test_silent_boards_across_restarts_and_instances():
    rng = random.Random(10)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    a = b = None
    try:
        registry, rows = write_registry(work)
        # A new deployment at T: 12 of the 20 boards reported before, some 40 days ago.
        reporting = [r["board_id"] for r in rows][::2] + ["D01-C001-B02", "D01-C001-B04"]
        reporting = sorted(set(reporting))
        first, last_report = [], {}
        for i, board in enumerate(reporting):
            reported = T - (40 if i % 3 == 0 else 2) * DAY - i * HOUR
            first.append(event(rng, "incident" if i % 2 else "mediation", board,
                               reported - HOUR, reported))
            last_report[board] = max(last_report.get(board, 0), reported)
        kt.produce(broker.bootstrap, kt.messages(first))
        a = Aggregate(work, broker, registry, T, "state-a", rules=RULES)
        a.wait_ready()
        kt.wait_until(lambda: a.get("/v1/counts?level=province")["windows"]["all"]["incidents"]
                      ["total"] + a.get("/v1/counts?level=province")["windows"]["all"]
                      ["mediations"]["total"] == len(first), 60, "the first events counted")
        got = check_silent(a, rows, last_report, T, T, 30, "new deployment")
        kt.check_equal(got["watch_start"], iso(T), "watch start: the first start's clock")
        kt.check_equal(check_silent(a, rows, last_report, T, T, 1, "days=1")["silent"], 0,
                       "silent boards a day into nothing")
        kt.check_equal(firing_set(a), [], "alerts of a new deployment")
        kt.check_equal(a.process.stop(), 0, "exit status on SIGTERM")

        # 31 days later, the same state directory: the watch start survived, so every board
        # that has not reported since T is silent.
        now = T + 31 * DAY
        a = Aggregate(work, broker, registry, now, "state-a", port=a.port, rules=RULES)
        a.wait_ready()
        silent = check_silent(a, rows, last_report, T, now, 30, "31 days on")
        kt.check_equal(silent["silent"], 20, "every board silent 31 days on")
        want = expected_firing(rows, {i["id"] for i in silent["items"]})
        wait_firing([a], want, "the silent alerts to fire")
        # Three boards of D01-C001 report: they resolve, and so does their commune (3 of 6).
        second = []
        for board in ("D01-C001-B01", "D01-C001-B02", "D01-C001-B03"):
            second.append(event(rng, "incident", board, now - 2 * HOUR, now - HOUR))
            last_report[board] = now - HOUR
        kt.produce(broker.bootstrap, kt.messages(second))
        silent = kt.wait_until(
            lambda: (lambda s: s if s["silent"] == 17 else None)(a.get("/v1/silent")), 30,
            "three boards to report")
        check_silent(a, rows, last_report, T, now, 30, "after three reports")
        want = expected_firing(rows, {i["id"] for i in silent["items"]})
        kt.check(("quiet_commune", "D01-C001") not in want, "D01-C001 below its share", "absent",
                 want)
        wait_firing([a], want, "the reporting boards to resolve")
        records = check_alert_topic(broker, "after the reports")
        kt.check_equal(sum(1 for r in records if r["status"] == "RESOLVED"), 4,
                       "RESOLVED transitions (3 boards, 1 commune)")
        kt.check_equal(sorted({r["window"] for r in records}), ["30d"], "the alerts' window")

        # SIGKILL, restart: last events and alerts come back from the checkpoint and the
        # alert topic; nothing is written twice.
        a.process.kill()
        a = Aggregate(work, broker, registry, now, "state-a", port=a.port, rules=RULES)
        a.wait_ready()
        check_silent(a, rows, last_report, T, now, 30, "after SIGKILL")
        wait_firing([a], want, "the same alerts after SIGKILL")
        kt.check_equal(len(check_alert_topic(broker, "after SIGKILL")), len(records),
                       "transitions on antt.alerts after SIGKILL and restart")

        # A second instance with a fresh state directory joins: it learns the watch start
        # and the last events from antt.board-counts, takes its share of the alerts without
        # a transition, and answers the same.
        b = Aggregate(work, broker, registry, now, "state-b", rules=RULES, name="b")
        b.wait_ready()
        kt.wait_until(lambda: kt.http("GET", a.base + "/readyz")[0] == 200, 60,
                      "a ready after the join")
        for agg, name in ((a, "a"), (b, "b")):
            kt.wait_until(lambda: agg.get("/v1/silent")["silent"] == 17, 30,
                          f"instance {name} to see the 17 silent boards")
            check_silent(agg, rows, last_report, T, now, 30, f"instance {name} of two")
        wait_firing([a, b], want, "the alerts split between the two instances")
        kt.check_equal(len(check_alert_topic(broker, "two instances")), len(records),
                       "transitions on antt.alerts after the second instance joined")
        # a leaves: b takes every partition, partition 0 with the silent rules included, and
        # goes on with the same alerts; then a comes back and b leaves.
        kt.check_equal(a.process.stop(), 0, "a's exit status")
        wait_firing([b], want, "b to take every alert over")
        check_silent(b, rows, last_report, T, now, 30, "instance b alone")
        kt.check_equal(len(check_alert_topic(broker, "b alone")), len(records),
                       "transitions on antt.alerts after a left")
        a = Aggregate(work, broker, registry, now, "state-a", port=a.port, rules=RULES)
        a.wait_ready()
        kt.check_equal(b.process.stop(), 0, "b's exit status")
        b = None
        wait_firing([a], want, "a to take every alert back")
        kt.check_equal(len(check_alert_topic(broker, "one instance again")), len(records),
                       "transitions on antt.alerts after the second instance left")

        # Bad parameters.
        for query, key in (("days=0", "days"), ("days=abc", "days"), ("level=town", "level"),
                           ("level=district", "id"), ("limit=-1", "limit")):
            status, _, body = kt.http("GET", f"{a.base}/v1/silent?{query}")
            kt.check_equal(status, 400, f"/v1/silent?{query} status ({body!r})")
            kt.check(key in body.decode(), f"/v1/silent?{query} names {key}", key, body)
        status, _, _ = kt.http("GET", f"{a.base}/v1/silent?level=district&id=D99")
        kt.check_equal(status, 404, "/v1/silent of an unknown district")
        kt.check_equal(a.process.stop(), 0, "a's exit status")
        a = None
    finally:
        kt.close_all([a.process if a else None, b.process if b else None], broker, work)


def test_watch_start_kept_without_any_event():
    """A deployment none of whose boards ever reported: the watch start comes from the
    checkpoint alone, so a restart 31 days later finds every board silent, with no alert
    before."""
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=2)
    a = None
    try:
        registry, rows = write_registry(work)
        a = Aggregate(work, broker, registry, T, "state", rules=RULES)
        a.wait_ready()
        kt.check_equal((a.get("/v1/silent")["silent"], a.get("/v1/silent")["watch_start"]),
                       (0, iso(T)), "a new deployment: silent boards, watch start")
        kt.check_equal(a.process.stop(), 0, "exit status")
        a = Aggregate(work, broker, registry, T + 29 * DAY, "state", port=a.port, rules=RULES)
        a.wait_ready()
        kt.check_equal(a.get("/v1/silent")["silent"], 0, "silent boards 29 days on")
        kt.check_equal(a.process.stop(), 0, "exit status")
        a = Aggregate(work, broker, registry, T + 31 * DAY, "state", port=a.port, rules=RULES)
        a.wait_ready()
        got = check_silent(a, rows, {}, T, T + 31 * DAY, 30, "31 days on, no event ever")
        kt.check_equal(got["watch_start"], iso(T), "the watch start after two restarts")
        wait_firing([a], expected_firing(rows, {i["id"] for i in got["items"]}),
                    "every board's and commune's silent alert")
        kt.check_equal(a.process.stop(), 0, "exit status")
        a = None
    finally:
        kt.close_all([a.process if a else None], broker, work)


def test_series_add_up_to_the_window():
    rng = random.Random(11)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    a = None
    try:
        registry, rows = write_registry(work)
        boards = [r["board_id"] for r in rows]
        events = []
        # Spread over 400 days, plus events on each window's edge and a millisecond on
        # either side of it.
        for _ in range(600):
            when = T - rng.randint(0, 400 * DAY)
            events.append(event(rng, rng.choice(["incident", "mediation"]), rng.choice(boards),
                                when, when))
        for length, gran in ((DAY, 24 * MINUTE), (30 * DAY, 672 * MINUTE),
                             (365 * DAY, 8736 * MINUTE)):
            start = ((T - length) // gran) * gran
            for dt in (-1, 0, 1):
                for kind in ("incident", "mediation"):
                    events.append(event(rng, kind, rng.choice(boards), start + dt, start + dt))
        kt.produce(broker.bootstrap, kt.messages(events))
        a = Aggregate(work, broker, registry, T, "state", rules="")
        a.wait_ready()
        kt.wait_until(lambda: (lambda w: w["incidents"]["total"] + w["mediations"]["total"])(
            a.get("/v1/counts?level=province")["windows"]["all"]) == len(events), 60,
            "every event counted")
        for level, scope in (("province", "NA"), ("district", "D02"), ("commune", "D01-C001"),
                             ("board", "D01-C001-B01")):
            counts = a.get(f"/v1/counts?level={level}&id={scope}")
            for window, step, lo, hi in (("24h", "1h", 24, 26), ("30d", "1d", 30, 32),
                                         ("365d", "1d", 365, 373), ("24h", "1d", 2, 2)):
                for kind in ("incident", "mediation"):
                    s = a.get(f"/v1/series?level={level}&id={scope}&kind={kind}&window={window}"
                              f"&step={step}")
                    total = counts["windows"][window][kind + "s"]["total"]
                    what = f"{level} {scope} {kind} {window} by {step}"
                    kt.check_equal(sum(p["count"] for p in s["points"]), total, f"{what}: sum")
                    kt.check_equal(s["total"], total, f"{what}: total")
                    kt.check(lo <= len(s["points"]) <= hi, f"{what}: points", f"{lo}..{hi}",
                             len(s["points"]))
                    kt.check(s["points"][0]["t"].endswith("+07:00"), f"{what}: local times",
                             "+07:00", s["points"][0]["t"])
        # The default is incidents per hour over 24 hours.
        s = a.get("/v1/series?level=province")
        kt.check_equal((s["kind"], s["window"], s["step"]), ("incident", "24h", "1h"), "defaults")
        for query, key in (("window=7d", "window"), ("window=1y", "window"), ("step=1w", "step"),
                           ("kind=vote", "kind"), ("level=district", "id"),
                           ("window=365d&step=1h", "step=1d")):
            status, _, body = kt.http("GET", f"{a.base}/v1/series?{query}")
            kt.check_equal(status, 400, f"/v1/series?{query} status ({body!r})")
            kt.check(key in body.decode(), f"/v1/series?{query} names {key}", key, body)
        # The top list follows a district or a commune; an unknown scope is a 404.
        top = a.get("/v1/top?level=board&window=all&within=D01-C002&limit=100")
        kt.check(top["items"] and all(i["id"].startswith("D01-C002-") for i in top["items"]),
                 "top boards within D01-C002", "only D01-C002's", top["items"])
        kt.check_equal(top["within"]["id"], "D01-C002", "top's within")
        status, _, _ = kt.http("GET", f"{a.base}/v1/top?level=board&within=D09")
        kt.check_equal(status, 404, "top within an unknown district")
        status, _, _ = kt.http("GET", f"{a.base}/v1/top?level=district&within=D01")
        kt.check_equal(status, 400, "top of districts within a district")
        kt.check_equal(a.process.stop(), 0, "exit status")
        a = None
    finally:
        kt.close_all([a.process if a else None], broker, work)


if __name__ == "__main__":
    kt.main([test_silent_boards_across_restarts_and_instances, test_watch_start_kept_without_any_event,
             test_series_add_up_to_the_window])
