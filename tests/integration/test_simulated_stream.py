"""A simulated field day, with the faults gateways really produce: late events (hours to
days), events out of order, and exact resends. keng-simulate writes the stream, keng-produce
imports it, and keng-aggregate, on an injected clock, must count every event once and in
the window its occurred_at belongs to, at every level. Expected counts follow the window
rule of consumers/counts/counts.h exactly: an event counts in a window iff occurred_at >=
floor((now - length) / step) * step."""

import collections
import json
from datetime import datetime
import os
import subprocess

import kengtest as kt

MIN = 60_000
WINDOWS = {"1h": (3600_000, MIN), "24h": (86400_000, 24 * MIN),
           "7d": (7 * 86400_000, 168 * MIN), "30d": (30 * 86400_000, 672 * MIN),
           "365d": (365 * 86400_000, 8736 * MIN), "all": (None, None)}
SIM_NOW_MS = 1_767_225_600_000 + 9 * 3600_000  # 2026-01-01T09:00Z, 16:00 in Vietnam


def to_ms(value):
    """Times in the NDJSON are RFC 3339 strings (or epoch ms)."""
    if isinstance(value, int):
        return value
    return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def window_start(window, now):
    length, step = WINDOWS[window]
    return None if length is None else ((now - length) // step) * step


def test_late_out_of_order_and_duplicate_events():
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    aggregate = None
    try:
        stream = work.file("day.ndjson")
        with open(stream, "w") as out:
            # Two simulated days up to NOW, with a fifth of the events late, a tenth out of
            # order and a tenth resent.
            subprocess.run([kt.binary("keng-simulate"), "--output", "ndjson", "--count", "6000",
                            "--seed", "42", "--rate", "0", "--now", str(SIM_NOW_MS),
                            "--start-time", str(SIM_NOW_MS - 2 * 86400_000), "--late", "0.2",
                            "--out-of-order", "0.1", "--duplicates", "0.1"],
                           stdout=out, check=True, timeout=60)
        events = [json.loads(line) for line in open(stream)]
        for e in events:
            e["occurred_at"], e["reported_at"] = to_ms(e["occurred_at"]), to_ms(e["reported_at"])
        ids = collections.Counter(e["event_id"] for e in events)
        resent = sum(n - 1 for n in ids.values())
        late = sum(1 for e in events if e["reported_at"] - e["occurred_at"] > 3600_000)
        kt.check(resent > 300, "the stream has resends", "> 300", resent)
        kt.check(late > 600, "the stream has late events", "> 600", late)
        # The aggregator's clock: half an hour after the newest event, so that every window,
        # the hour included, holds some events and none is in the future.
        now = max(e["occurred_at"] for e in events) + 30 * MIN
        for window in ("1h", "24h"):
            inside = sum(1 for e in events if e["occurred_at"] >= window_start(window, now))
            kt.check(0 < inside < len(events), f"some events in and out of the {window} window",
                     "some", inside)

        env = dict(os.environ, KENG_BROKERS=broker.bootstrap)
        out = subprocess.run([kt.binary("keng-produce"), "--kind", "auto", stream], env=env,
                             capture_output=True, timeout=120)
        kt.check_equal(out.returncode, 0, f"keng-produce exit status ({out.stderr[-400:]!r})")

        port = kt.free_port()
        aggregate = kt.Process("keng-aggregate",
                               ["--listen", f"127.0.0.1:{port}", "--state-dir",
                                work.file("state"), "--group", "keng-test-sim"], work,
                               env={"KENG_BROKERS": broker.bootstrap,
                                    "KENG_CLOCK_MS": str(now)})
        base = f"http://127.0.0.1:{port}"
        kt.wait_until(lambda: kt.http("GET", base + "/readyz")[0] == 200, 120, "readiness")

        rows = {r["board_id"]: r for r in kt.registry_rows()}
        pairs = [(e["kind"], {k: v for k, v in e.items() if k != "kind"}) for e in events]
        districts = sorted({rows[e["board_id"]]["district_id"] for e in events})
        for window in WINDOWS:
            start = window_start(window, now)
            chosen = [(k, e) for k, e in pairs if start is None or e["occurred_at"] >= start]
            expected = kt.expected_all_time(chosen, rows)
            for scope in [("province", "NA")] + [("district", d) for d in districts]:
                got = kt.get_json(f"{base}/v1/counts?level={scope[0]}&id={scope[1]}")
                kt.check_equal(got["windows"][window], expected.get(scope, kt.empty_tally()),
                               f"{scope[0]} {scope[1]} window {window}")
        metrics = kt.http("GET", base + "/metrics")[2].decode()
        dropped = [line for line in metrics.splitlines()
                   if line.startswith("keng_duplicates_dropped_total")]
        kt.check_equal(dropped, [f"keng_duplicates_dropped_total {resent}"],
                       "duplicates dropped, as resent by the simulator")
        kt.log(f"{len(events)} events, {resent} resends, {late} late: every window exact")
        kt.check_equal(aggregate.stop(), 0, "keng-aggregate exit status")
        aggregate = None
    finally:
        kt.close_all([aggregate], broker, work)


if __name__ == "__main__":
    kt.main([test_late_out_of_order_and_duplicate_events])
