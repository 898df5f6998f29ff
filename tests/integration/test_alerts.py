"""Alerts end to end: keng-broker plus keng-aggregate with an alert rule in its config. Events
that cross the threshold make the alert FIRE on /v1/alerts, as exactly one Avro record on
antt.alerts (decoded with schemas/alert.v1.avsc) and one webhook POST; a SIGKILL and restart
neither repeats nor loses it; moving the injected clock past the window RESOLVES it, exactly
once, and the next restart does not repeat that either."""

import http.server
import io
import json
import signal
import struct
import threading
import time

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
TOPIC = "antt.alerts"


class Receiver:
    """A webhook receiver on 127.0.0.1 in a thread; keeps every JSON body it got."""

    def __init__(self):
        self.bodies = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def decode_alert(data):
    import avro.io
    magic, schema_id = struct.unpack(">bI", data[:5])
    kt.check_equal((magic, schema_id), (0, 3), "alert framing (magic, schema id)")
    record = avro.io.DatumReader(kt.schema("alert")).read(
        avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    return record


def alert_records(bootstrap):
    try:
        msgs = kt.consume_all(bootstrap, TOPIC, timeout=30)
    except kt.TestFailure:
        raise
    out = []
    for m in msgs:
        rec = decode_alert(m.value())
        kt.check_equal(m.key().decode(), rec["fingerprint"], "message key = fingerprint")
        out.append(rec)
    return out


def transitions(records, alert_id, status):
    return [r for r in records if r["alert_id"] == alert_id and r["status"] == status]


def start_aggregate(wd, broker, cfg, state, port, clock_ms):
    return kt.Process("keng-aggregate",
                      ["--config", cfg, "--brokers", broker.bootstrap, "--state-dir", state,
                       "--listen", f"127.0.0.1:{port}"], wd,
                      env={"KENG_CLOCK_MS": str(clock_ms)})


def wait_ready(base, proc):
    try:
        kt.wait_until(lambda: kt.http("GET", f"{base}/readyz")[0] == 200, 90,
                      "keng-aggregate ready")
    except kt.TestFailure:
        kt.log(proc.log_tail())
        raise


def metric(base, name):
    _, _, body = kt.http("GET", f"{base}/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise kt.TestFailure(f"metric {name} missing")


def test_alert_fires_resolves_once_across_restarts():
    wd = kt.Workdir()
    broker = kt.Broker(wd, partitions=2)
    receiver = Receiver()
    agg = None
    try:
        rows = kt.registry_rows()
        commune = rows[100]["commune_id"]
        boards = [r["board_id"] for r in rows if r["commune_id"] == commune][:3]
        t0 = int(time.time() * 1000)
        cfg = wd.file("keng.conf")
        with open(cfg, "w") as f:
            f.write("kafka.session.timeout.ms=6000\n"
                    # A long interval: the SIGKILL below lands after the alert was
                    # acknowledged and before any checkpoint holds it.
                    "checkpoint.interval.ms=600000\n"
                    f"webhook.url=http://127.0.0.1:{receiver.port}/hook\n"
                    "alert.drugs_commune.level=commune\n"
                    "alert.drugs_commune.window=24h\n"
                    "alert.drugs_commune.kind=incident\n"
                    "alert.drugs_commune.category=DRUGS\n"
                    "alert.drugs_commune.threshold=3\n"
                    "alert.drugs_commune.summary=Xã {scope_name}: {count} vụ ma túy trong 24 giờ\n")
        state = wd.file("state")
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        agg = start_aggregate(wd, broker, cfg, state, port, t0)
        wait_ready(base, agg)

        import random
        rng = random.Random(7)
        events = []
        for i, board in enumerate(boards):
            ev = kt.random_event(rng, "incident", board, t0 - (10 + i) * MINUTE, t0 - 5 * MINUTE)
            ev["category"] = "DRUGS"
            events.append(ev)
        # Two first: below the threshold, nothing fires.
        kt.produce(broker.bootstrap, [("antt.incidents", e["board_id"].encode(),
                                       kt.encode_framed("incident", e)) for e in events[:2]])
        kt.wait_until(lambda: kt.get_json(f"{base}/v1/counts?level=commune&id={commune}")
                      ["windows"]["24h"]["incidents"]["by_category"]["DRUGS"] == 2, 60,
                      "two DRUGS incidents counted")
        time.sleep(1.5)
        kt.check_equal(kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"], [],
                       "firing alerts below the threshold")
        kt.produce(broker.bootstrap, [("antt.incidents", events[2]["board_id"].encode(),
                                       kt.encode_framed("incident", events[2]))])

        firing = kt.wait_until(lambda: kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"],
                               60, "the alert to fire")
        kt.check_equal(len(firing), 1, "firing alerts")
        a = firing[0]
        kt.check_equal((a["rule"], a["level"], a["scope_id"], a["status"], a["count"],
                        a["threshold"], a["window"]),
                       ("drugs_commune", "COMMUNE", commune, "FIRING", 3, 3, "24h"),
                       "the firing alert")
        kt.check(a["summary"].startswith("Xã ") and "3 vụ ma túy" in a["summary"],
                 "summary rendered", "Xã ...: 3 vụ ma túy trong 24 giờ", a["summary"])
        kt.check_equal(sorted(a["sample_event_ids"]), sorted(e["event_id"] for e in events),
                       "sample event ids")
        alert_id = a["alert_id"]
        kt.check_equal(alert_id, f"{a['fingerprint']}-{t0}", "alert_id = fingerprint-start")

        records = kt.wait_until(lambda: transitions(alert_records(broker.bootstrap), alert_id,
                                                    "FIRING"), 30, "the FIRING record")
        kt.check_equal(len(records), 1, "FIRING records on antt.alerts")
        kt.check_equal(records[0]["count"], 3, "count in the FIRING record")
        kt.check_equal(records[0]["ends_at"], None, "ends_at of a FIRING record")
        kt.wait_until(lambda: receiver.bodies, 30, "the webhook POST")
        kt.check_equal([(b["alert_id"], b["status"]) for b in receiver.bodies],
                       [(alert_id, "FIRING")], "webhook bodies")

        # SIGKILL before any checkpoint holds the alert: the restart reads it back.
        agg.signal(signal.SIGKILL)
        agg.kill()
        agg = start_aggregate(wd, broker, cfg, state, port, t0)
        wait_ready(base, agg)
        time.sleep(3)  # a few evaluations of the window timer
        firing = kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"]
        kt.check_equal([x["alert_id"] for x in firing], [alert_id], "firing after the restart")
        kt.check_equal(metric(base, "keng_alert_transitions_total{status=\"firing\"}"), 0.0,
                       "transitions emitted by the restarted instance")
        records = alert_records(broker.bootstrap)
        kt.check_equal([(r["alert_id"], r["status"]) for r in records], [(alert_id, "FIRING")],
                       "antt.alerts after SIGKILL and restart")

        # Stop cleanly, then move the clock past the window: the alert resolves, once.
        kt.check_equal(agg.stop(), 0, "exit status after SIGTERM")
        t1 = t0 + 25 * HOUR
        agg = start_aggregate(wd, broker, cfg, state, port, t1)
        wait_ready(base, agg)
        resolved = kt.wait_until(
            lambda: kt.get_json(f"{base}/v1/alerts?status=resolved")["alerts"], 30,
            "the alert to resolve")
        kt.check_equal([(x["alert_id"], x["status"], x["ends_at"], x["count"]) for x in resolved],
                       [(alert_id, "RESOLVED", t1, 0)], "resolved alerts")
        kt.check_equal(kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"], [],
                       "firing alerts after the window passed")
        kt.wait_until(lambda: len(transitions(alert_records(broker.bootstrap), alert_id,
                                              "RESOLVED")) >= 1, 30, "the RESOLVED record")
        kt.wait_until(lambda: len(receiver.bodies) >= 2, 30, "the second webhook POST")

        agg.signal(signal.SIGKILL)
        agg.kill()
        agg = start_aggregate(wd, broker, cfg, state, port, t1 + MINUTE)
        wait_ready(base, agg)
        time.sleep(3)
        records = alert_records(broker.bootstrap)
        kt.check_equal([(r["alert_id"], r["status"]) for r in records],
                       [(alert_id, "FIRING"), (alert_id, "RESOLVED")],
                       "antt.alerts after the second SIGKILL and restart")
        kt.check_equal([(b["alert_id"], b["status"]) for b in receiver.bodies],
                       [(alert_id, "FIRING"), (alert_id, "RESOLVED")], "webhook bodies")
        resolved = kt.get_json(f"{base}/v1/alerts?status=resolved")["alerts"]
        kt.check_equal([x["alert_id"] for x in resolved], [alert_id], "resolved after restart")
        kt.check_equal(metric(base, "keng_alerts_firing"), 0.0, "keng_alerts_firing")
        kt.check_equal(agg.stop(), 0, "exit status after SIGTERM")
        agg = None
    except Exception:
        if agg:
            kt.log(agg.log_tail(40))
        raise
    finally:
        if agg:
            agg.kill()
        receiver.stop()
        broker.stop()
        wd.cleanup()


def test_bad_rule_is_refused():
    wd = kt.Workdir()
    try:
        cfg = wd.file("bad.conf")
        with open(cfg, "w") as f:
            f.write("alert.x.level=commune\nalert.x.window=2h\nalert.x.kind=incident\n"
                    "alert.x.threshold=3\n")
        import subprocess
        r = subprocess.run([kt.binary("keng-aggregate"), "--config", cfg, "--state-dir",
                            wd.file("s"), "--listen", "127.0.0.1:0"], capture_output=True,
                           timeout=30, env={"KENG_BROKERS": "127.0.0.1:1"})
        kt.check_equal(r.returncode, 64, "exit status for a bad rule")
        kt.check(b"alert.x.window" in r.stderr, "the error names the key", "alert.x.window",
                 r.stderr.decode(errors="replace"))
    finally:
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_alert_fires_resolves_once_across_restarts, test_bad_rule_is_refused])
