"""Incident v2 on a live topic: one topic mixing Incident v1 (id 1) and v2 (id 4) messages,
written by an outside client (Apache Avro's Python library and the Confluent framing).

- keng-aggregate as built (reader: the newest, v2) counts every event exactly;
- keng-aggregate run as it was before the upgrade (schemas.dir pointing at a copy of
  schemas/, schemas.reader.vn.antt.Incident=1) counts the same topic exactly;
- keng-replay reads it too, with and without the pinned reader;
- keng-produce writes v2 by default and v1 with schemas.writer.vn.antt.Incident=1."""

import io
import json
import os
import random
import shutil
import struct
import subprocess
import time
from datetime import datetime, timedelta, timezone

import kengtest as kt

HOUR = 3600_000
DAY = 24 * HOUR
VN = timezone(timedelta(hours=7))
TOPIC = {"incident": "antt.incidents", "mediation": "antt.mediations"}


def frame_v2(ev):
    """An incident framed with schema id 4 (Incident v2), police_case_id included."""
    import avro.io
    _, schema = kt.schema_by_id(4)
    record = kt.to_avro_record("incident", ev)
    record.setdefault("police_case_id", None)
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, 4))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def make_events(rng, boards, now, n):
    """(kind, event, schema id): incidents alternate at random between v1 and v2; v2
    incidents transferred to the police mostly carry a case number."""
    out = []
    for i in range(n):
        kind = "incident" if rng.random() < 0.75 else "mediation"
        ev = kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                             now - rng.randint(HOUR, 20 * DAY))
        schema_id = 2
        if kind == "incident":
            schema_id = rng.choice([1, 4])
            if schema_id == 4 and ev["resolution"] == "TRANSFERRED_TO_POLICE" and rng.random() < 0.8:
                ev["police_case_id"] = f"{100 + i}/2025/CAX Nghi Lộc"
        out.append((kind, ev, schema_id))
    return out


def messages(events):
    out = []
    for kind, ev, schema_id in events:
        value = frame_v2(ev) if schema_id == 4 else kt.encode_framed(kind, ev, schema_id)
        out.append((TOPIC[kind], ev["board_id"].encode(), value))
    return out


def schemas_copy(work):
    """A directory laid out like schemas/, as an operator would deploy it."""
    path = work.file("schemas")
    shutil.copytree(kt.SCHEMA_DIR, path, ignore=shutil.ignore_patterns("CMakeLists.txt"))
    return path


def run_aggregate(work, broker, now, name, extra_config, expected):
    port = kt.free_port()
    base = f"http://127.0.0.1:{port}"
    config = work.file(f"{name}.conf")
    with open(config, "w") as f:
        f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n" + extra_config)
    proc = kt.Process("keng-aggregate",
                      ["--config", config, "--listen", f"127.0.0.1:{port}", "--state-dir",
                       work.file(f"{name}-state"), "--group", f"keng-schema-{name}"],
                      work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(now)})
    try:
        def ready():
            if not proc.alive():
                raise kt.TestFailure(f"keng-aggregate ({name}) exited: {proc.log_tail()}")
            return kt.http("GET", base + "/readyz")[0] == 200
        kt.wait_until(ready, 120, f"keng-aggregate ({name}) to be ready")

        def all_match():
            return all(kt.get_json(f"{base}/v1/counts?level={level}&id={sid}")["windows"]["all"]
                       == tally for (level, sid), tally in expected.items())
        try:
            kt.wait_until(all_match, 120, f"/v1/counts to match ({name})", interval=0.5)
        except kt.TestFailure:
            for (level, sid), tally in expected.items():
                got = kt.get_json(f"{base}/v1/counts?level={level}&id={sid}")["windows"]["all"]
                kt.check_equal(got, tally, f"{name}: {level} {sid} all-time counts")
            raise
        kt.log(f"{name}: {len(expected)} scopes match")
    finally:
        kt.check_equal(proc.stop(), 0, f"keng-aggregate ({name}) exit status")
    return proc


def run_replay(work, broker, now, name, extra_config, expected, n_events):
    config = work.file(f"{name}.conf")
    with open(config, "w") as f:
        f.write(extra_config)
    day = timedelta(days=1)
    first = (datetime.fromtimestamp((now - 30 * DAY) / 1000, VN)).date()
    last = (datetime.fromtimestamp(now / 1000, VN) + 2 * day).date()
    out_dir = work.file(f"{name}-review")
    result = subprocess.run([kt.binary("keng-replay"), "--from", first.isoformat(), "--to",
                             last.isoformat(), "--out", out_dir, "--config", config],
                            env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                            capture_output=True, timeout=300)
    kt.check_equal(result.returncode, 0, f"keng-replay ({name}) exit status "
                   f"({result.stderr[-800:]!r})")
    with open(os.path.join(out_dir, "review.json")) as f:
        review = json.load(f)
    kt.check_equal(review["data_quality"]["counted"], n_events, f"{name}: events counted")
    kt.check_equal(review["data_quality"]["undecodable"], 0, f"{name}: undecodable messages")
    province = review["province"]
    got = {"incidents": province["incidents"],
           "mediations": {k: v for k, v in province["mediations"].items()
                          if k != "by_dispute_type"}}
    kt.check_equal(got, expected[("province", "NA")], f"{name}: province totals")
    kt.log(f"{name}: review counts {n_events} events")


def test_mixed_topic_read_by_new_and_pinned_consumers():
    rng = random.Random(2025)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=3)
    try:
        now = int(time.time() * 1000)
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = rng.sample(rows, 40)
        events = make_events(rng, boards, now, 600)
        ids = [sid for kind, _, sid in events if kind == "incident"]
        kt.check(ids.count(1) > 50 and ids.count(4) > 50, "both incident versions on the topic",
                 "over 50 each", (ids.count(1), ids.count(4)))
        kt.produce(broker.bootstrap, messages(events))
        expected = kt.expected_all_time([(k, e) for k, e, _ in events], boards_by_id)
        schemas = schemas_copy(work)

        run_aggregate(work, broker, now, "newest", "", expected)
        pinned = f"schemas.dir={schemas}\nschemas.reader.vn.antt.Incident=1\n"
        run_aggregate(work, broker, now, "pinned-v1", pinned, expected)
        run_replay(work, broker, now, "replay-newest", "", expected, len(events))
        run_replay(work, broker, now, "replay-pinned-v1", pinned, expected, len(events))
    finally:
        broker.stop()
        work.cleanup()


def test_bad_schema_config_is_refused():
    """A pin to a version the store lacks, or a misspelt key, stops the consumer at start
    with a message naming the key."""
    work = kt.Workdir()
    try:
        for line, needle in (("schemas.reader.vn.antt.Incident=3", "no version 3"),
                             ("schemas.raeder.vn.antt.Incident=1",
                              "unknown key 'schemas.raeder.vn.antt.Incident' (nearest known key: "
                              "schemas.reader.vn.antt.Incident)"),
                             (f"schemas.dir={work.file('nowhere')}", "manifest.csv")):
            config = work.file("bad.conf")
            with open(config, "w") as f:
                f.write(line + "\n")
            result = subprocess.run([kt.binary("keng-replay"), "--year", "2025", "--config",
                                     config, "--out", work.file("out")],
                                    env=dict(os.environ, KENG_BROKERS="127.0.0.1:1"),
                                    capture_output=True, timeout=60)
            kt.check(result.returncode != 0, f"keng-replay refuses {line}", "non-zero exit",
                     result.returncode)
            kt.check(needle in result.stderr.decode(), f"message for {line}", needle,
                     result.stderr.decode()[-400:])
    finally:
        work.cleanup()


def test_producer_writes_v2_unless_pinned():
    rng = random.Random(4)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=1)
    try:
        now = int(time.time() * 1000)
        board = kt.registry_rows()[0]["board_id"]
        for name, config_text, want_id in (("newest", "", 4),
                                           ("pinned", "schemas.writer.vn.antt.Incident=1\n", 1)):
            ev = kt.random_event(rng, "incident", board, now - HOUR)
            ev["resolution"] = "TRANSFERRED_TO_POLICE"
            ev["police_case_id"] = "17/2025/CAX Hưng Dũng"
            ndjson = work.file(f"{name}.ndjson")
            with open(ndjson, "w", encoding="utf-8") as f:
                f.write(json.dumps({k: v for k, v in ev.items() if v is not None},
                                   ensure_ascii=False) + "\n")
            config = work.file(f"{name}.conf")
            with open(config, "w") as f:
                f.write(config_text)
            result = subprocess.run([kt.binary("keng-produce"), "--config", config, "--brokers",
                                     broker.bootstrap, "--no-progress", ndjson],
                                    capture_output=True, timeout=120)
            kt.check_equal(result.returncode, 0, f"keng-produce ({name}) exit status "
                           f"({result.stderr[-600:]!r})")
            got = {kt.decode_framed("incident", m.value())["event_id"]: m.value()
                   for m in kt.consume_all(broker.bootstrap, "antt.incidents")}
            value = got.get(ev["event_id"])
            kt.check(value is not None, f"{name}: event on the topic", ev["event_id"], sorted(got))
            kt.check_equal(struct.unpack(">I", value[1:5])[0], want_id, f"{name}: schema id")
            record = kt.decode_framed("incident", value)
            kt.check_equal(record.get("police_case_id"),
                           ev["police_case_id"] if want_id == 4 else None,
                           f"{name}: police_case_id on the topic")
    finally:
        broker.stop()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_mixed_topic_read_by_new_and_pinned_consumers, test_bad_schema_config_is_refused,
             test_producer_writes_v2_unless_pinned])
