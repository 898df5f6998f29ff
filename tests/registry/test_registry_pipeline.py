"""keng in Schema Registry mode against a real Confluent-compatible registry whose ids are
not the manifest's (another team's schema was registered first):

- keng-ingest and keng-produce frame with the registry's ids (read back from the topics by
  an outside client that knows only the registry);
- keng-aggregate counts them exactly, raises alerts framed with the registry's Alert id,
  and dead-letters a message whose id the registry answers 404 for (reason
  unknown-schema-id), nothing else;
- keng-replay's review counts every event, and keng-avro decode --schema-registry prints
  one;
- without schema.registry.url the same programs still frame with the manifest's ids.
Runs on the embedded broker, and on real Kafka as kafka.registry.test_registry_pipeline."""

import json
import os
import random
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import faultlib as fl
import kengtest as kt
import registrylib as rl

DAY = 86_400_000
VN = timezone(timedelta(hours=7))


def read_ids(bootstrap, topic):
    return [struct.unpack(">bI", m.value()[:5])[1] for m in kt.consume_all(bootstrap, topic)]


def test_pipeline_with_registry_ids():
    rng = random.Random(20)
    work = kt.Workdir(prefix="keng-registry-pipeline-")
    reg = broker = ingest = agg = None
    try:
        reg = rl.Registry(work)
        rl.shift_ids(reg)
        ids = rl.keng_schemas(reg, "register")
        inc_id, med_id = ids[("vn.antt.Incident", 2)], ids[("vn.antt.Mediation", 1)]
        alert_id = ids[("vn.antt.Alert", 1)]
        kt.check(inc_id != 4 and med_id != 2 and alert_id != 3,
                 "the registry's ids differ from the manifest's", "not 4, 2, 3",
                 (inc_id, med_id, alert_id))
        broker = kt.Broker(work, partitions=3)
        # The first URL is down: every program fails over to the second.
        dead = f"http://127.0.0.1:{kt.free_port()}/apis/ccompat/v7"
        registry_conf = f"schema.registry.url={dead}, {reg.url}\n"

        boards = fl.pick_boards(rng, per_district=4)
        src = fl.EventSource(rng, boards)

        # keng-ingest: ready once it has the ids, then frames with them.
        ingest = fl.Ingest(work, broker.bootstrap,
                           config="ingest.deadline_ms=5000\n" + registry_conf).start()
        kt.wait_until(lambda: kt.http("GET", ingest.url("/readyz"))[0] == 200, 30,
                      "keng-ingest /readyz")
        for kind in ("incident", "mediation"):
            evs = [e for _, e in src.new(30, kind)]
            status, answer = ingest.post(kind, evs)
            kt.check_equal((status, answer), (202, {"accepted": 30}), f"POST {kind}s")

        # keng-produce: NDJSON of incidents.
        ndjson = work.file("bulk.ndjson")
        with open(ndjson, "w", encoding="utf-8") as f:
            for _, ev in src.new(40, "incident"):
                f.write(json.dumps({k: v for k, v in ev.items() if v is not None},
                                   ensure_ascii=False) + "\n")
        conf = work.file("produce.conf")
        with open(conf, "w") as f:
            f.write(registry_conf)
        out = subprocess.run([kt.binary("keng-produce"), "--kind", "incident", "--config", conf,
                              "--no-progress", ndjson],
                             env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                             capture_output=True, timeout=120)
        kt.check_equal(out.returncode, 0, f"keng-produce exit status ({out.stderr[-600:]!r})")

        # The outside client's view: every frame carries the registry's id and decodes with
        # the schema the registry gives for it.
        incidents = kt.consume_all(broker.bootstrap, "antt.incidents")
        mediations = kt.consume_all(broker.bootstrap, "antt.mediations")
        kt.check_equal(sorted({rl.decode(reg, m.value())[0] for m in incidents}), [inc_id],
                       "schema ids of the incidents keng wrote")
        kt.check_equal(sorted({rl.decode(reg, m.value())[0] for m in mediations}), [med_id],
                       "schema ids of the mediations keng wrote")
        got = {r["event_id"] for _, r in (rl.decode(reg, m.value()) for m in incidents)}
        kt.check_equal(got, {e["event_id"] for k, e in src.unique.values() if k == "incident"},
                       "incident ids read back through the registry")

        # One message whose id the registry does not know, and one keng never saw before but
        # the registry knows (Incident v1 under its registry id): dead letter and counted.
        ghost_kind, ghost = src.new(1, "incident")[0]
        del src.unique[ghost["event_id"]]
        v1_kind, v1_ev = src.new(1, "incident")[0]
        kt.produce(broker.bootstrap, [
            ("antt.incidents", ghost["board_id"].encode(),
             rl.encode("incident", ghost, 9999, rl.manifest_text("incident.v1.avsc"))),
            ("antt.incidents", v1_ev["board_id"].encode(),
             rl.encode("incident", v1_ev, ids[("vn.antt.Incident", 1)],
                       rl.manifest_text("incident.v1.avsc")))])

        rules = fl.AlertRules([("board_any", "board", "incident", 3)])
        agg = fl.Aggregate(work, broker.bootstrap, "keng-registry-agg",
                           extra_config=registry_conf + rules.config()).start()
        agg.wait_ready(120)
        fl.wait_counts(agg, src.expected(), "registry ids", timeout=90, scopes="all")
        # Dead letters are produced on their own: they may land after the counts match.
        dl = kt.wait_until(lambda: kt.consume_all(broker.bootstrap, "antt.deadletter",
                                                  timeout=30), 60, "the dead letter", interval=1)
        reasons = [dict(m.headers() or []).get("keng.reason", b"").decode() for m in dl]
        kt.check_equal(reasons, ["unknown-schema-id"], "dead letters: the unknown id alone")
        m = agg.metrics()
        kt.check(m.get("keng_schema_registry_lookups_total", 0) >= 3,
                 "ids resolved from the registry (incident v2, v1, mediation, 9999)", ">= 3",
                 m.get("keng_schema_registry_lookups_total"))
        if rules.rules:
            expected = rules.expected(src.expected())
            kt.check(len(expected) > 0, "some board reaches the alert threshold", "> 0", 0)

            def alerts():
                msgs = kt.consume_all(broker.bootstrap, "antt.alerts", timeout=30)
                return msgs if len(msgs) >= len(expected) else None
            msgs = kt.wait_until(alerts, 60, "the alerts", interval=1)
            kt.check_equal(sorted({rl.decode(reg, x.value())[0] for x in msgs}), [alert_id],
                           "schema ids of the alerts keng wrote")
            kt.check_equal({(r["rule"], r["scope_id"]) for _, r in
                            (rl.decode(reg, x.value()) for x in msgs)}, expected,
                           "alerts, read through the registry")
        agg.stop()
        agg = None

        # keng-replay's review counts every event; the ghost is undecodable.
        now = int(time.time() * 1000)
        first = datetime.fromtimestamp((now - 400 * DAY) / 1000, VN).date()
        last = (datetime.fromtimestamp(now / 1000, VN) + timedelta(days=2)).date()
        conf = work.file("replay.conf")
        with open(conf, "w") as f:
            f.write(registry_conf)
        out = subprocess.run([kt.binary("keng-replay"), "--from", first.isoformat(), "--to",
                              last.isoformat(), "--out", work.file("review"), "--config", conf],
                             env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                             capture_output=True, timeout=300)
        kt.check_equal(out.returncode, 0, f"keng-replay exit status ({out.stderr[-800:]!r})")
        with open(work.file("review/review.json")) as f:
            review = json.load(f)
        kt.check_equal((review["data_quality"]["counted"], review["data_quality"]["undecodable"]),
                       (len(src.unique), 1), "the review's counted and undecodable events")

        # keng-avro decode asks the registry for the id of a message it is given.
        msg = work.file("one.bin")
        with open(msg, "wb") as f:
            f.write(incidents[0].value())
        out = subprocess.run([kt.binary("keng-avro"), "decode", "--schema-registry", reg.url,
                              msg], capture_output=True, text=True, timeout=60)
        kt.check_equal(out.returncode, 0, f"keng-avro decode exit status ({out.stderr})")
        kt.check_equal(json.loads(out.stdout)["event_id"],
                       rl.decode(reg, incidents[0].value())[1]["event_id"],
                       "keng-avro decode --schema-registry")
        out = subprocess.run([kt.binary("keng-avro"), "decode", msg], capture_output=True,
                             text=True, timeout=60)
        kt.check(out.returncode != 0, "without the registry the id is not the manifest's",
                 "non-zero", out.returncode)
        ingest.stop()
        ingest = None
    finally:
        for p in (ingest, agg):
            if p is not None and p.process is not None and p.process.alive():
                print(p.process.log_tail())
                p.process.kill()
        if broker is not None:
            broker.stop()
        if reg is not None:
            reg.down()
        work.cleanup()


def test_without_registry_the_manifest_ids():
    """The default: no schema.registry.url, no registry anywhere, manifest ids."""
    rng = random.Random(21)
    work = kt.Workdir(prefix="keng-registry-default-")
    broker = ingest = None
    try:
        broker = kt.Broker(work, partitions=1)
        src = fl.EventSource(rng, fl.pick_boards(rng, per_district=2))
        ingest = fl.Ingest(work, broker.bootstrap).start()
        kt.check_equal(kt.http("GET", ingest.url("/readyz"))[0], 200, "keng-ingest /readyz")
        status, _ = ingest.post("incident", [e for _, e in src.new(5, "incident")])
        kt.check_equal(status, 202, "POST incidents")
        kt.check_equal(sorted(set(read_ids(broker.bootstrap, "antt.incidents"))), [4],
                       "schema ids without a registry")
    finally:
        if ingest is not None and ingest.process is not None:
            ingest.process.kill()
        if broker is not None:
            broker.stop()
        work.cleanup()


def test_bad_registry_config_is_refused():
    """Every program that reads or writes events refuses a registry config that does not
    load, at --check-config, with exit 78 and the key named; the password never shows."""
    work = kt.Workdir(prefix="keng-registry-config-")
    try:
        secret = work.file("password")
        with open(secret, "w") as f:
            f.write("s3cret-registry-pass\n")
        os.chmod(secret, 0o600)
        cases = [("schema.registry.url=ftp://registry.example/x\n", "schema.registry.url"),
                 ("schema.registry.url=http://127.0.0.1:1/apis/ccompat/v7\n"
                  f"schema.registry.basic_auth.password_file={secret}\n",
                  "schema.registry.basic_auth.username"),
                 ("schema.registry.url=http://127.0.0.1:1/apis/ccompat/v7\n"
                  f"schema.registry.ca_file={work.file('none.pem')}\n",
                  "schema.registry.ca_file"),
                 (f"schema.registry.basic_auth.username=keng\n", "schema.registry.url")]
        programs = {"keng-ingest": [], "keng-produce": ["-"],
                    "keng-simulate": [], "keng-replay": ["--year", "2025", "--out", "out"],
                    "keng-aggregate": ["--state-dir", work.file("state")]}
        for text, key in cases:
            conf = work.file("bad.conf")
            with open(conf, "w") as f:
                f.write(text)
            for program, args in programs.items():
                out = subprocess.run([kt.binary(program), "--config", conf, "--check-config"]
                                     + args, capture_output=True, text=True, timeout=30,
                                     cwd=work.path, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, KENG_BROKERS="127.0.0.1:1"))
                kt.check_equal(out.returncode, 78, f"{program} --check-config with {text!r}")
                kt.check(key in out.stderr and "s3cret" not in out.stderr,
                         f"{program} names {key} and never the password", key,
                         out.stderr[-300:])
    finally:
        work.cleanup()


if __name__ == "__main__":
    if rl.skipped("test_registry_pipeline"):
        sys.exit(0)
    kt.main([test_pipeline_with_registry_ids, test_without_registry_the_manifest_ids,
             test_bad_registry_config_is_refused])
