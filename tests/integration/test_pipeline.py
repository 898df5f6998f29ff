"""The whole pipeline on the embedded broker: 10,000 events over 60 boards in 3 districts,
imported with keng-produce, then more from an outside Kafka client (confluent-kafka with
Apache Avro's Python library, following DESIGN.md's framing). keng-aggregate's /v1/counts
must show exactly the right totals at board, commune, district and province level, in every
window."""

import json
import os
import random
import subprocess
import time

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "365d": 365 * DAY,
           "all": None}
# Ages that keep every event at least 2/60 of a window away from that window's edge, so
# that the allowed rounding of edges (1/60 of the length) cannot move it.
AGE_BANDS = [(2 * MINUTE, 40 * MINUTE), (2 * HOUR, 20 * HOUR), (2 * DAY, 6 * DAY),
             (8 * DAY, 25 * DAY), (40 * DAY, 300 * DAY), (400 * DAY, 3 * 365 * DAY)]


def pick_boards(rows, rng):
    """60 boards from 3 districts, spread over several communes."""
    districts = ["D01", "D07", "D19"]
    chosen = []
    for d in districts:
        of_district = [r for r in rows if r["district_id"] == d]
        chosen += rng.sample(of_district, 20)
    return chosen


def make_events(boards, n, now, rng):
    events = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        low, high = rng.choice(AGE_BANDS)
        occurred = now - rng.randint(low, high)
        events.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"], occurred)))
    return events


def expected_windows(events, boards_by_id, now):
    """{(level, id): {window: tally}} with each event counted once."""
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


def check_counts(base_url, expected, what):
    def all_match():
        for (level, scope_id), windows in expected.items():
            got = kt.get_json(f"{base_url}/v1/counts?level={level}&id={scope_id}")
            for window, tally in windows.items():
                if got["windows"][window] != tally:
                    return False
        return True

    try:
        kt.wait_until(all_match, 120, f"/v1/counts to match ({what})", interval=0.5)
    except kt.TestFailure:
        # Say exactly which scope and window differ, with both values.
        for (level, scope_id), windows in expected.items():
            got = kt.get_json(f"{base_url}/v1/counts?level={level}&id={scope_id}")
            for window, tally in windows.items():
                kt.check_equal(got["windows"][window], tally,
                               f"{what}: {level} {scope_id} window {window}")
        raise
    kt.log(f"{what}: {len(expected)} scopes match in every window")


def test_produce_then_outside_client():
    rng = random.Random(20251)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    aggregate = None
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = pick_boards(rows, rng)
        now = int(time.time() * 1000)
        events = make_events(boards, 10_000, now, rng)

        incidents = work.file("incidents.ndjson")
        mediations = work.file("mediations.ndjson")
        with open(incidents, "w") as fi, open(mediations, "w") as fm:
            for kind, ev in events:
                (fi if kind == "incident" else fm).write(json.dumps(ev, ensure_ascii=False) + "\n")
        env = dict(os.environ, KENG_BROKERS=broker.bootstrap)
        for kind, path in (("incident", incidents), ("mediation", mediations)):
            out = subprocess.run([kt.binary("keng-produce"), "--kind", kind, path], env=env,
                                 capture_output=True, timeout=180)
            kt.check_equal(out.returncode, 0,
                           f"keng-produce exit status for {kind}s (stderr: {out.stderr[-500:]!r})")

        port = kt.free_port()
        aggregate = kt.Process("keng-aggregate",
                               ["--listen", f"127.0.0.1:{port}", "--state-dir",
                                work.file("state"), "--group", "keng-test-pipeline"],
                               work, env={"KENG_BROKERS": broker.bootstrap})
        base = f"http://127.0.0.1:{port}"
        kt.wait_until(lambda: kt.http("GET", base + "/readyz")[0] == 200, 120,
                      "keng-aggregate to be ready")
        wanted = expected_windows(events, boards_by_id, now)
        check_counts(base, wanted, "after keng-produce")

        # An outside client, following DESIGN.md's framing: schema id 1 or 2, Avro binary.
        more = make_events(boards, 2_000, now, rng)
        more += rng.sample(events, 200)  # resends of events already counted
        kt.produce(broker.bootstrap, kt.messages(more))
        check_counts(base, expected_windows(events + more, boards_by_id, now),
                     "after the outside client")
        kt.check_equal(aggregate.stop(), 0, "keng-aggregate exit status")
        aggregate = None
    finally:
        kt.close_all([aggregate], broker, work)


if __name__ == "__main__":
    kt.main([test_produce_then_outside_client])
