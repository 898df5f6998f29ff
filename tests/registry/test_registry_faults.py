"""keng-aggregate and keng-ingest when the Schema Registry goes away:

- registry killed mid-run: messages with ids keng-aggregate already resolved keep being
  counted; a message with an id it never saw (Incident v3, an extra optional field, written
  by an outside producer) pauses its partition, is not dead-lettered and not skipped, and
  is counted, with what came after it, once the registry is back; nothing is dead-lettered;
- keng-ingest started while the registry is down is not ready (/readyz 503, POST 503, a log
  line that says why) and becomes ready by itself once the registry answers.
The registry keeps its schemas in memory: brought back, it is given the same schemas in the
same order, which gives the same ids (checked)."""

import json
import random
import sys
import time

import faultlib as fl
import kengtest as kt
import registrylib as rl


def v3_text():
    schema = json.loads(rl.manifest_text("incident.v2.avsc"))
    schema["fields"].append({"name": "reviewed_by", "type": ["null", "string"],
                             "default": None})
    return json.dumps(schema)


def fill(reg):
    """The registry's schemas, always in the same order: (ids by (record, version), v3 id)."""
    rl.shift_ids(reg)
    ids = rl.keng_schemas(reg, "register")
    return ids, reg.register("antt.incidents-value", v3_text())


def framed(reg_ids, v3_id, events, v3=False):
    out = []
    for kind, ev in events:
        if kind == "incident" and v3:
            value = rl.encode(kind, ev, v3_id, v3_text())
        elif kind == "incident":
            value = rl.encode(kind, ev, reg_ids[("vn.antt.Incident", 2)],
                              rl.manifest_text("incident.v2.avsc"))
        else:
            value = rl.encode(kind, ev, reg_ids[("vn.antt.Mediation", 1)],
                              rl.manifest_text("mediation.v1.avsc"))
        out.append((kt.TOPIC[kind], ev["board_id"].encode(), value))
    return out


def province_total(agg):
    t = agg.all_time("province", "NA")
    return t["incidents"]["total"] + t["mediations"]["total"]


def test_registry_lost_mid_run():
    rng = random.Random(22)
    work = kt.Workdir(prefix="keng-registry-faults-")
    reg = broker = agg = ingest = None
    try:
        reg = rl.Registry(work)
        ids, v3_id = fill(reg)
        broker = kt.Broker(work, partitions=3)
        # keng-aggregate reaches the registry through a forwarder that is closed from the kill
        # until the registry has been given its schemas again: an id asked for in between
        # would be answered 404 by the empty registry (and rightly dead-lettered).
        agg_path = rl.Forwarder(reg)
        agg_path.start()
        conf = f"schema.registry.url={agg_path.url}\nschema.registry.timeout.ms=1000\n"
        src = fl.EventSource(rng, fl.pick_boards(rng, per_district=5))
        agg = fl.Aggregate(work, broker.bootstrap, "keng-registry-faults",
                           extra_config=conf).start()
        agg.wait_ready(120)
        kt.produce(broker.bootstrap, framed(ids, v3_id, src.new(60)))
        fl.wait_counts(agg, src.expected(), "before the registry is lost")

        reg.kill()
        agg_path.stop()
        # Known ids keep flowing.
        kt.produce(broker.bootstrap, framed(ids, v3_id, src.new(60)))
        fl.wait_counts(agg, src.expected(), "known ids while the registry is down")
        known = province_total(agg)

        # An id never seen: its partition waits; the others go on. Nothing is dead-lettered.
        v3_events = src.new(6, "incident")
        kt.produce(broker.bootstrap, framed(ids, v3_id, v3_events, v3=True))
        after = src.new(60)
        kt.produce(broker.bootstrap, framed(ids, v3_id, after))
        kt.wait_until(lambda: agg.metrics().get("keng_schema_registry_lookup_failures_total", 0)
                      >= 2, 30, "lookups of the new id to fail (and be retried)")
        time.sleep(3)
        total = province_total(agg)
        want = known + len(v3_events) + len(after)
        kt.check(known <= total < want, "the new id's events (and those behind them) wait",
                 f"between {known} and {want - 1}", total)
        kt.check_equal(len(kt.consume_all(broker.bootstrap, "antt.deadletter", timeout=10)), 0,
                       "dead letters while the registry is down")

        # keng-ingest started now: not ready, says why, refuses posts with 503. It reaches
        # the registry through a forwarder that opens only after the registry has been given
        # its schemas again, so that it cannot register its own first and take their ids.
        forwarder = rl.Forwarder(reg)
        ingest = fl.Ingest(work, broker.bootstrap,
                           config=f"ingest.deadline_ms=5000\nschema.registry.url={forwarder.url}"
                           "\nschema.registry.timeout.ms=1000\n").start()
        time.sleep(1.5)
        status, _, body = kt.http("GET", ingest.url("/readyz"))
        kt.check_equal((status, json.loads(body)["reason"]),
                       (503, "waiting for the schema registry"), "keng-ingest /readyz")
        posted = [e for _, e in src.new(5, "mediation")]
        status, _ = ingest.post("mediation", posted)
        kt.check_equal(status, 503, "POST while waiting for the registry")
        with open(ingest.process.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        kt.check("the schema registry does not answer" in log, "keng-ingest says why",
                 "the schema registry does not answer", log[-600:])

        # The registry is back, with the same schemas in the same order: the same ids.
        reg.start()
        again, v3_again = fill(reg)
        kt.check_equal((again, v3_again), (ids, v3_id), "ids after the registry came back")
        forwarder.start()
        agg_path.start()
        not_posted = {e["event_id"] for e in posted}
        fl.wait_counts(agg, kt.expected_all_time([x for x in src.unique.values()
                                                  if x[1]["event_id"] not in not_posted],
                                                 fl.registry()[1]),
                       "every event once the registry is back", timeout=90, scopes="all")
        kt.wait_until(lambda: kt.http("GET", ingest.url("/readyz"))[0] == 200, 60,
                      "keng-ingest ready once the registry answers")
        status, _ = ingest.post("mediation", posted)
        kt.check_equal(status, 202, "POST once ready")
        fl.wait_counts(agg, src.expected(), "the posted events", timeout=60, scopes="all")
        dl = kt.consume_all(broker.bootstrap, "antt.deadletter", timeout=10)
        kt.check_equal(len(dl), 0, "dead letters at the end")
        ingest.stop()
        ingest = None
        agg.stop()
        agg = None
        forwarder.stop()
        agg_path.stop()
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


def test_cli_producer_waits_for_the_registry():
    """keng-simulate started while the registry is down waits (saying so), writes nothing
    with the manifest's ids, and writes with the registry's once it is back; a SIGTERM while
    it waits ends it at once with nothing written."""
    work = kt.Workdir(prefix="keng-registry-cli-")
    reg = broker = None
    procs = []
    try:
        reg = rl.Registry(work)
        broker = kt.Broker(work, partitions=1)
        conf = work.file("sim.conf")
        with open(conf, "w") as f:
            f.write(f"schema.registry.url={reg.url}\nschema.registry.timeout.ms=1000\n")
        reg.kill()
        args = ["--config", conf, "--count", "20", "--rate", "0", "--seed", "7"]
        env = {"KENG_BROKERS": broker.bootstrap}
        stopped = kt.Process("keng-simulate", args, work, env=env)
        procs.append(stopped)
        time.sleep(2)
        kt.check(stopped.alive(), "keng-simulate waits while the registry is down", "alive",
                 stopped.log_tail())
        kt.check_equal(stopped.stop(timeout=10), 0, "keng-simulate exit status on SIGTERM "
                       "while it waits")
        kt.check("the schema registry does not answer" in stopped.log_tail(),
                 "keng-simulate says why it waits", "the schema registry does not answer",
                 stopped.log_tail())

        sim = kt.Process("keng-simulate", args, work, env=env)
        procs.append(sim)
        time.sleep(2)
        kt.check(sim.alive(), "keng-simulate still waits", "alive", sim.log_tail())
        kt.check_equal(len(kt.consume_all(broker.bootstrap, "antt.incidents", timeout=10)) +
                       len(kt.consume_all(broker.bootstrap, "antt.mediations", timeout=10)), 0,
                       "messages written while the registry is down")
        reg.start()
        ids, _ = fill(reg)
        sim.proc.wait(120)
        kt.check_equal(sim.proc.returncode, 0, f"keng-simulate exit status ({sim.log_tail()})")
        got = set()
        for topic in ("antt.incidents", "antt.mediations"):
            got |= {rl.decode(reg, m.value())[0]
                    for m in kt.consume_all(broker.bootstrap, topic, timeout=30)}
        kt.check_equal(got, {ids[("vn.antt.Incident", 2)], ids[("vn.antt.Mediation", 1)]},
                       "schema ids keng-simulate wrote once the registry was back")
    finally:
        for p in procs:
            if p.alive():
                print(p.log_tail())
                p.kill()
        if broker is not None:
            broker.stop()
        if reg is not None:
            reg.down()
        work.cleanup()


if __name__ == "__main__":
    if rl.skipped("test_registry_faults"):
        sys.exit(0)
    kt.main([test_registry_lost_mid_run, test_cli_producer_waits_for_the_registry])
