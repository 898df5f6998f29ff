"""keng-produce against the broker (embedded or real, KENG_TEST_BROKER): bad lines reported by line and field while the
good ones go through, every valid event on its topic exactly once with key = board_id and the
Confluent framing, re-imports keep event ids, CSV with quoted cells, --dry-run produces
nothing, keng-simulate's NDJSON imports as is, and the exit statuses scripts rely on."""

import json
import random
import re
import subprocess
import time

import kengtest as kt

NOW_MS = int(time.time() * 1000)
TOPICS = {"incident": "antt.incidents", "mediation": "antt.mediations"}


def run(args, stdin=None, timeout=120):
    """Runs a keng program to its end; returns (exit status, stdout, stderr)."""
    p = subprocess.run([kt.binary(args[0])] + args[1:], input=stdin, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def summary(stderr):
    m = re.search(r"keng-produce: read (\d+), valid (\d+), rejected (\d+), delivered (\d+), "
                  r"failed (\d+)", stderr)
    kt.check(m is not None, "a summary line on stderr", "keng-produce: read ...", stderr)
    return dict(zip(("read", "valid", "rejected", "delivered", "failed"),
                    (int(x) for x in m.groups())))


def boards(n, seed):
    rows = kt.registry_rows()
    return [r["board_id"] for r in random.Random(seed).sample(rows, n)]


def valid_events(n, seed):
    rng = random.Random(seed)
    ids = boards(20, seed)
    out = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.6 else "mediation"
        occurred = NOW_MS - rng.randint(60_000, 300 * 86_400_000)
        out.append((kind, kt.random_event(rng, kind, rng.choice(ids), occurred)))
    return out


def read_back(bootstrap):
    """{event_id: [(kind, key, value bytes, decoded record)]} over both topics."""
    got = {}
    for kind, topic in TOPICS.items():
        for msg in kt.consume_all(bootstrap, topic):
            record = kt.decode_framed(kind, msg.value())
            got.setdefault(record["event_id"], []).append((kind, msg.key(), msg.value(), record))
    return got


def check_on_topics(got, events, times):
    kt.check_equal(sorted(got), sorted(e["event_id"] for _, e in events), "event ids on the topics")
    for kind, ev in events:
        copies = got[ev["event_id"]]
        kt.check_equal(len(copies), times, f"copies of {ev['event_id']}")
        for got_kind, key, _, record in copies:
            kt.check_equal(got_kind, kind, f"topic of {ev['event_id']}")
            kt.check_equal(key, ev["board_id"].encode(), f"key of {ev['event_id']}")
            for field, value in ev.items():
                kt.check_equal(record[field], value, f"{field} of {ev['event_id']}")
        kt.check_equal(len({c[2] for c in copies}), 1, f"values of {ev['event_id']} identical")


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def test_bad_lines_reported_and_good_lines_delivered_once():
    work = kt.Workdir()
    broker = kt.Broker(work)
    try:
        events = valid_events(200, 1)
        lines = [json.dumps(dict(e, kind=k), ensure_ascii=False) for k, e in events]
        inc = next(e for k, e in events if k == "incident")
        bad = {
            5: ('{"event_id": "x-1", "board_id": ', "",
                "not valid JSON"),
            40: (json.dumps(dict(inc, event_id="x-2", board_id="D07-C999-B99", kind="incident")),
                 "board_id", "unknown board 'D07-C999-B99'"),
            77: (json.dumps(dict(inc, event_id="x-3", category="ROBBERY", kind="incident")),
                 "category", "ROBBERY"),
            150: (json.dumps(dict(inc, event_id="x-4", occurred_at=NOW_MS + 86_400_000,
                                  kind="incident")),
                  "occurred_at", "future"),
        }
        for lineno in sorted(bad):
            lines.insert(lineno - 1, bad[lineno][0])
        path = work.file("import.ndjson")
        write_lines(path, lines)

        status, _, err = run(["keng-produce", "--brokers", broker.bootstrap, "--kind", "auto",
                              path])
        kt.log(f"keng-produce stderr:\n{err}")
        kt.check_equal(status, 1, "exit status with rejected lines")
        reported = [l for l in err.splitlines() if l.startswith("line ")]
        kt.check_equal(len(reported), len(bad), "lines reported")
        for line, (lineno, (_, field, part)) in zip(reported, sorted(bad.items())):
            prefix = f"line {lineno}: {field + ': ' if field else ''}"
            kt.check(line.startswith(prefix) and part in line, "error line", prefix + "..." + part,
                     line)
        kt.check_equal(summary(err), {"read": 204, "valid": 200, "rejected": 4, "delivered": 200,
                                      "failed": 0}, "summary")
        check_on_topics(read_back(broker.bootstrap), events, 1)

        # A second import sends the same ids again, byte for byte: the consumer dedups.
        status, _, err = run(["keng-produce", "--brokers", broker.bootstrap, "--kind", "auto",
                              path])
        kt.check_equal(status, 1, "exit status of the second import")
        check_on_topics(read_back(broker.bootstrap), events, 2)
    finally:
        kt.check_equal(broker.stop(), 0, "keng-broker exit status")
        work.cleanup()


def test_dry_run_produces_nothing():
    work = kt.Workdir()
    broker = kt.Broker(work)
    try:
        events = valid_events(50, 2)
        lines = [json.dumps(e) for k, e in events if k == "incident"]
        lines.append('{"event_id": "bad"}')
        path = work.file("incidents.jsonl")
        write_lines(path, lines)
        status, _, err = run(["keng-produce", "--brokers", broker.bootstrap, "--dry-run", path])
        kt.check_equal(status, 1, "dry-run exit status with a rejected line")
        s = summary(err)
        kt.check_equal((s["valid"], s["rejected"], s["delivered"]), (len(lines) - 1, 1, 0),
                       "dry-run summary (valid, rejected, delivered)")
        kt.check("dry run" in err, "dry run named in the summary", "dry run", err)
        kt.check_equal(read_back(broker.bootstrap), {}, "what the topics hold after --dry-run")
        # No broker needed at all for a dry run.
        status, _, err = run(["keng-produce", "--dry-run", path],
                             stdin=None)
        kt.check_equal(status, 1, "dry-run exit status without brokers")
    finally:
        broker.stop()
        work.cleanup()


def test_csv_with_quoted_cells():
    work = kt.Workdir()
    broker = kt.Broker(work)
    try:
        b = boards(2, 3)
        path = work.file("old-records.csv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("event_id,board_id,group_id,occurred_at,reported_at,category,severity,"
                    "resolution,people_involved,source,lat,lon,summary\r\n")
            f.write(f"csv-1,{b[0]},,2025-03-01T21:15:00+07:00,1740838600000,THEFT,LOW,"
                    f"HANDLED_LOCALLY,1,PATROL,18.75,105.5,\"Mất trộm, \"\"xe máy\"\"\"\r\n")
            f.write(f"csv-2,{b[1]},{b[1]}-G02,1740838500000,1740838600000,TRAFFIC,MEDIUM,"
                    f"TRANSFERRED_TO_POLICE,3,SMS,,,\"hai\ndòng\"\r\n")
            f.write(f"csv-3,{b[1]},,1740838500000,1740838600000,TRAFFIC,MEDIUM,PENDING,"
                    f"lots,SMS,,,\r\n")
        status, _, err = run(["keng-produce", "--brokers", broker.bootstrap, path])
        kt.check_equal(status, 1, "exit status")
        kt.check(re.search(r"^line 5: people_involved: ", err, re.M) is not None,
                 "the bad row reported by its first line", "line 5: people_involved: ...", err)
        got = read_back(broker.bootstrap)
        kt.check_equal(sorted(got), ["csv-1", "csv-2"], "events on the topics")
        r1 = got["csv-1"][0][3]
        kt.check_equal((r1["summary"], r1["occurred_at"], r1["location"], r1["group_id"]),
                       ('Mất trộm, "xe máy"', 1740838500000, {"lat": 18.75, "lon": 105.5}, None),
                       "csv-1 fields")
        r2 = got["csv-2"][0][3]
        kt.check_equal((r2["summary"], r2["group_id"], r2["location"], r2["resolution"]),
                       ("hai\ndòng", f"{b[1]}-G02", None, "TRANSFERRED_TO_POLICE"),
                       "csv-2 fields")
    finally:
        broker.stop()
        work.cleanup()


def test_simulated_stream_imports_exactly():
    work = kt.Workdir()
    broker = kt.Broker(work)
    try:
        status, out, err = run(["keng-simulate", "--output", "ndjson", "--count", "500",
                                "--rate", "0", "--seed", "5", "--duplicates", "0.1",
                                "--late", "0.2", "--out-of-order", "0.1"])
        kt.check_equal(status, 0, "keng-simulate exit status")
        m = re.search(r"emitted (\d+) .* distinct (\d+), duplicates (\d+)", err)
        kt.check(m is not None, "keng-simulate summary", "emitted ... distinct ...", err)
        emitted, distinct, dups = (int(x) for x in m.groups())
        lines = out.splitlines()
        kt.check_equal(len(lines), emitted, "NDJSON lines")
        kt.check_equal(len({json.loads(l)["event_id"] for l in lines}), distinct, "distinct ids")
        kt.check_equal(emitted - distinct, dups, "duplicates")
        # Coordinates as the simulator rounds them (5 decimals), not as binary doubles.
        coords = re.findall(r'"(?:lat|lon)":\s*(-?[0-9.eE+-]+)', out)
        kt.check(coords, "coordinates in the NDJSON", "some", out[:300])
        long_ones = [c for c in coords if len(c.partition(".")[2]) > 5]
        kt.check_equal(long_ones[:5], [], "coordinates printed with more than 5 decimals")

        status, _, err = run(["keng-produce", "--brokers", broker.bootstrap, "--kind", "auto",
                              "-"], stdin=out.encode())
        kt.check_equal(status, 0, f"keng-produce exit status ({err.strip()})")
        got = read_back(broker.bootstrap)
        kt.check_equal(len(got), distinct, "distinct event ids on the topics")
        kt.check_equal(sum(len(v) for v in got.values()), emitted, "messages on the topics")
    finally:
        broker.stop()
        work.cleanup()


def test_delivery_failure_and_usage_exit_statuses():
    work = kt.Workdir()
    broker = kt.Broker(work)
    try:
        events = valid_events(5, 4)
        path = work.file("few.ndjson")
        write_lines(path, [json.dumps(dict(e, kind=k)) for k, e in events])
        conf = work.file("keng.conf")
        with open(conf, "w") as f:
            f.write("kafka.message.timeout.ms = 1500\n")
        broker.down(1)
        status, _, err = run(["keng-produce", "--config", conf, "--brokers", broker.bootstrap,
                              "--kind", "auto", path])
        kt.check_equal(status, 2, "exit status when Kafka never acknowledges")
        kt.check_equal(summary(err)["failed"], 5, "failed in the summary")
        broker.up(1)

        for args in (["keng-produce"], ["keng-produce", "--kind", "alert", path],
                     ["keng-produce", "--format", "xml", path], ["keng-produce", "--bogus"],
                     ["keng-simulate", "--late", "2"], ["keng-simulate", "--rate", "fast"]):
            status, _, err = run(args)
            kt.check_equal(status, 64, f"exit status of {' '.join(args[1:]) or 'no arguments'}")
        for prog in ("keng-produce", "keng-simulate"):
            status, out, _ = run([prog, "--help"])
            kt.check_equal((status, "--brokers" in out), (0, True), f"{prog} --help")
            status, out, _ = run([prog, "--version"])
            kt.check_equal((status, out.startswith(prog + " ")), (0, True), f"{prog} --version")
    finally:
        broker.stop()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_bad_lines_reported_and_good_lines_delivered_once,
             test_dry_run_produces_nothing,
             test_csv_with_quoted_cells,
             test_simulated_stream_imports_exactly,
             test_delivery_failure_and_usage_exit_statuses])
