"""One rule for an event's times, on every path: events produced straight to the topics by
another producer (bypassing keng-ingest) dated in the year 0001, 1970 or 1999, before
events.min_occurred_at, with reported_at before occurred_at or reported_at in the future are
dead-lettered by keng-aggregate with the reason, never counted, and counted on /metrics by
reason; keng-replay leaves them out of the review and counts them as invalid_time; keng-produce
refuses them naming the line and the field; keng-simulate stops rather than send one."""

import json
import os
import random
import subprocess
import time
from datetime import datetime, timedelta, timezone

import kengtest as kt

HOUR = 3_600_000
VN = timezone(timedelta(hours=7))
# The config both consumers run with: a later earliest time than the default 2000-01-01.
MIN_OCCURRED = "2020-01-01T00:00:00+07:00"
MIN_OCCURRED_MS = int(datetime(2020, 1, 1, tzinfo=VN).timestamp() * 1000)


def utc_ms(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def bad_events(rng, now, board):
    """(kind, event, reason) for every way an event's times can break the rule."""
    def ev(kind, occurred, reported):
        return kind, kt.random_event(rng, kind, board, occurred, reported)

    cases = [
        (ev("incident", utc_ms(1, 1, 1), utc_ms(1, 1, 1, 1)), "occurred-too-early"),
        (ev("incident", 0, 1000), "occurred-too-early"),
        (ev("mediation", utc_ms(1999, 12, 31, 23, 59, 59), utc_ms(2000, 1, 2)),
         "occurred-too-early"),
        # After the built-in earliest time, before the configured one.
        (ev("incident", MIN_OCCURRED_MS - 1, now - HOUR), "occurred-too-early"),
        (ev("incident", now - HOUR, now - 2 * HOUR), "reported-before-occurred"),
        (ev("mediation", now - 3 * HOUR, now - 3 * HOUR - 1), "reported-before-occurred"),
        (ev("incident", now - HOUR, now + 2 * HOUR), "future-event"),
        (ev("mediation", now + 2 * HOUR, now + 2 * HOUR), "future-event"),
    ]
    return [(kind, event, reason) for (kind, event), reason in cases]


def good_events(rng, now, boards):
    out = []
    for i in range(60):
        kind = "incident" if i % 3 else "mediation"
        occurred = now - rng.randint(HOUR, 300 * 24 * HOUR)
        out.append((kind, kt.random_event(rng, kind, rng.choice(boards), occurred)))
    # The edges of the rule: the configured earliest time itself, reported_at equal to
    # occurred_at, and reported_at a minute ahead of the consumer's clock (within the 5 min).
    board = boards[0]
    out.append(("incident", kt.random_event(rng, "incident", board, MIN_OCCURRED_MS,
                                            MIN_OCCURRED_MS)))
    out.append(("mediation", kt.random_event(rng, "mediation", board, now - HOUR, now - HOUR)))
    out.append(("incident", kt.random_event(rng, "incident", board, now, now + 60_000)))
    return out


def start_aggregate(work, broker, now):
    port = kt.free_port()
    config = work.file("aggregate.conf")
    with open(config, "w") as f:
        f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                f"checkpoint.interval.ms=200\nevents.min_occurred_at={MIN_OCCURRED}\n")
    proc = kt.Process("keng-aggregate", ["--config", config, "--listen", f"127.0.0.1:{port}",
                                         "--state-dir", work.file("state"), "--group",
                                         "keng-test-event-times"],
                      work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(now)})
    base = f"http://127.0.0.1:{port}"

    def ready():
        if not proc.alive():
            raise kt.TestFailure(f"keng-aggregate exited: {proc.log_tail()}")
        return kt.http("GET", base + "/readyz")[0] == 200
    kt.wait_until(ready, 120, "keng-aggregate to be ready")
    return proc, base


def check_dead_letters(broker, bad):
    want = {ev["event_id"]: reason for _, ev, reason in bad}

    def letters():
        got = kt.consume_all(broker.bootstrap, "antt.deadletter")
        return got if len(got) >= len(bad) else None
    got = {}
    for m in kt.wait_until(letters, 60, "the dead letters"):
        headers = {k: v.decode() for k, v in (m.headers() or [])}
        topic = headers.get("keng.source.topic", "")
        kind = "incident" if topic == "antt.incidents" else "mediation"
        got[kt.decode_framed(kind, m.value())["event_id"]] = headers.get("keng.reason")
        kt.check(headers.get("keng.error"), "a keng.error header naming the field", "a sentence",
                 headers)
    kt.check_equal(got, want, "dead letters by event_id: their keng.reason")


def test_consumers_apply_the_time_rule():
    rng = random.Random(2000)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=2)
    agg = None
    try:
        rows = kt.registry_rows()
        boards = [r["board_id"] for r in rng.sample(rows, 10)]
        now = int(time.time() * 1000)
        good = good_events(rng, now, boards)
        bad = bad_events(rng, now, boards[1])
        mixed = [(k, e) for k, e in good] + [(k, e) for k, e, _ in bad]
        rng.shuffle(mixed)
        kt.produce(broker.bootstrap, kt.messages(mixed))

        agg, base = start_aggregate(work, broker, now)
        province = kt.get_json(base + "/v1/counts?level=province")["windows"]["all"]
        counted = province["incidents"]["total"] + province["mediations"]["total"]
        kt.check_equal(counted, len(good), "events counted into province 'all'")
        got = kt.metrics(base)
        kt.check_equal(got.get("keng_events_counted_total"), float(len(good)),
                       "keng_events_counted_total")
        for reason in sorted({r for _, _, r in bad}):
            kt.check_equal(got.get(f'keng_deadletter_total{{reason="{reason}"}}'),
                           float(sum(1 for _, _, r in bad if r == reason)),
                           f"keng_deadletter_total for {reason}")
        check_dead_letters(broker, bad)
        kt.check_equal(agg.stop(), 0, "keng-aggregate exit status after SIGTERM")
        agg = None

        # keng-replay over a period that holds every date but the year 0001.
        config = work.file("replay.conf")
        with open(config, "w") as f:
            f.write(f"events.min_occurred_at={MIN_OCCURRED}\n")
        out_dir = work.file("review")
        tomorrow = (datetime.now(VN) + timedelta(days=2)).strftime("%Y-%m-%d")
        result = subprocess.run([kt.binary("keng-replay"), "--from", "1970-01-01", "--to",
                                 tomorrow, "--out", out_dir, "--config", config],
                                env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                                capture_output=True, timeout=300)
        kt.check_equal(result.returncode, 0, f"keng-replay exit status ({result.stderr[-800:]!r})")
        with open(os.path.join(out_dir, "review.json")) as f:
            quality = json.load(f)["data_quality"]
        kt.check_equal(quality, {"counted": len(good), "duplicates": 0, "out_of_period": 0,
                                 "unknown_board": 0, "undecodable": 0,
                                 "invalid_time": len(bad)}, "review data quality")
    finally:
        kt.close_all([agg], broker, work)


def test_import_refuses_bad_times():
    rng = random.Random(1970)
    work = kt.Workdir()
    try:
        now = int(time.time() * 1000)
        bad = bad_events(rng, now, "D01-C001-B01")
        path = work.file("bad.ndjson")
        with open(path, "w") as f:
            for kind, ev, _ in bad:
                f.write(json.dumps(dict(ev, kind=kind)) + "\n")
        config = work.file("produce.conf")
        with open(config, "w") as f:
            f.write(f"events.min_occurred_at={MIN_OCCURRED}\n")
        p = subprocess.run([kt.binary("keng-produce"), "--kind", "auto", "--dry-run",
                            "--no-progress", "--config", config, path],
                           capture_output=True, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        kt.check_equal(p.returncode, 1, f"keng-produce exit status ({err[-1500:]})")
        for line, (_, _, reason) in enumerate(bad, start=1):
            field = "occurred_at" if reason == "occurred-too-early" else "reported_at"
            if reason == "future-event" and line == len(bad):
                field = "occurred_at"
            kt.check(f"line {line}: {field}" in err, f"keng-produce names line {line} and "
                     f"{field}", f"line {line}: {field}", err[-1500:])
    finally:
        work.cleanup()


def test_simulate_sends_no_refused_event():
    """keng-simulate checks the rule at its simulated present: with events.min_occurred_at
    ahead of today, its first event breaks it, and it stops rather than send it."""
    work = kt.Workdir()
    try:
        config = work.file("simulate.conf")
        later = (datetime.now(VN) + timedelta(days=400)).strftime("%Y-%m-%d")
        with open(config, "w") as f:
            f.write(f"events.min_occurred_at={later}\n")
        p = subprocess.run([kt.binary("keng-simulate"), "--output", "ndjson", "--count", "3",
                            "--seed", "16", "--config", config], capture_output=True, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        kt.check_equal((p.returncode, p.stdout), (2, b""), f"keng-simulate exit status and "
                       f"output ({err[-800:]})")
        kt.check("occurred_at: occurred_at is before" in err and "not sent" in err,
                 "keng-simulate names the event and the field", "occurred_at ... not sent",
                 err[-800:])
    finally:
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_consumers_apply_the_time_rule, test_import_refuses_bad_times,
             test_simulate_sends_no_refused_event])
