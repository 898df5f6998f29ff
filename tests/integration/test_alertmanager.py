"""keng-aggregate's alerts in the real Prometheus Alertmanager (Debian's
prometheus-alertmanager, started here on 127.0.0.1 with its own storage): an alert fires and
then resolves; keng-aggregate SIGKILLed while it fires leaves Alertmanager with exactly that
alert after the restart; a restarted Alertmanager gets it back from keng's re-sends. Each time
Alertmanager's API v2 (GET /api/v2/alerts) must hold exactly the expected alerts with the
expected labels. Then Alertmanagers and a webhook that are down, answer 500 or answer after
60 s: counting and /v1/counts go on, /metrics shows the failures, and each is caught up once
it answers."""

import http.server
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
RULE = "drugs_commune"


class Alertmanager:
    """prometheus-alertmanager on 127.0.0.1:port, clustering off, storage in the workdir."""

    def __init__(self, wd):
        if not os.path.exists(ALERTMANAGER):
            raise kt.TestFailure("prometheus-alertmanager is missing: run scripts/install-deps.sh")
        self.wd = wd
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = wd.file("alertmanager.yml")
        self.storage = wd.file("alertmanager-data")
        os.makedirs(self.storage, exist_ok=True)
        with open(self.config, "w") as f:
            f.write("route:\n  receiver: nobody\n  group_wait: 1s\n"
                    "receivers:\n  - name: nobody\n")
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.wd.file(f"alertmanager-{int(time.time() * 1000)}.log"), "wb")
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={self.config}", f"--storage.path={self.storage}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=self.log)
        kt.wait_until(lambda: kt.http("GET", f"{self.base}/-/ready")[0] == 200, 60,
                      "Alertmanager ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc:
            self.log.close()
        self.proc = None

    def alerts(self):
        """The alerts Alertmanager holds (API v2 leaves resolved ones out)."""
        return kt.get_json(f"{self.base}/api/v2/alerts")


# A second rule, over the whole province: its alert has no district_id, no commune_id and
# the default severity.
PROVINCE_LABELS = {"alertname": "province_busy", "level": "province", "scope_id": "NA",
                   "scope_name": "Tỉnh Nghệ An", "severity": "warning"}


def expected_labels(commune_row):
    return {"alertname": RULE, "level": "commune", "scope_id": commune_row["commune_id"],
            "scope_name": commune_row["commune_name"], "district_id": commune_row["district_id"],
            "commune_id": commune_row["commune_id"], "severity": "critical"}


def check_exactly(am, labels, what):
    """Alertmanager holds exactly these alerts (a list of label sets), active; returns the one
    with the first label set."""
    alerts = sorted(am.alerts(), key=lambda a: a["labels"]["alertname"])
    kt.check_equal([a["labels"] for a in alerts],
                   sorted(labels, key=lambda x: x["alertname"]), f"{what}: labels of the alerts")
    kt.check_equal([a["status"]["state"] for a in alerts], ["active"] * len(labels),
                   f"{what}: states")
    return next(a for a in alerts if a["labels"] == labels[0])


def write_config(wd, extra):
    cfg = wd.file("keng.conf")
    with open(cfg, "w") as f:
        f.write("kafka.session.timeout.ms=6000\n"
                "checkpoint.interval.ms=600000\n"
                f"alert.{RULE}.level=commune\n"
                f"alert.{RULE}.window=24h\n"
                f"alert.{RULE}.kind=incident\n"
                f"alert.{RULE}.category=DRUGS\n"
                f"alert.{RULE}.threshold=3\n"
                f"alert.{RULE}.severity=critical\n"
                f"alert.{RULE}.summary=Xã {{scope_name}}: {{count}} vụ ma túy trong 24 giờ\n"
                + extra)
    return cfg


def start_aggregate(wd, broker, cfg, state, port, clock_ms):
    env = {"KENG_CLOCK_MS": str(clock_ms)} if clock_ms else {}
    return kt.Process("keng-aggregate",
                      ["--config", cfg, "--brokers", broker.bootstrap, "--state-dir", state,
                       "--listen", f"127.0.0.1:{port}"], wd, env=env)


def wait_ready(base, proc):
    try:
        kt.wait_until(lambda: kt.http("GET", f"{base}/readyz")[0] == 200, 90,
                      "keng-aggregate ready")
    except kt.TestFailure:
        kt.log(proc.log_tail())
        raise


def commune_with_boards(rows, index=100):
    commune = rows[index]
    boards = [r["board_id"] for r in rows if r["commune_id"] == commune["commune_id"]][:3]
    return commune, boards


def produce_drugs(broker, boards, t0, seed):
    rng = random.Random(seed)
    events = []
    for i, board in enumerate(boards):
        ev = kt.random_event(rng, "incident", board, t0 - (10 + i) * MINUTE, t0 - 5 * MINUTE)
        ev["category"] = "DRUGS"
        events.append(ev)
    kt.produce(broker.bootstrap, kt.messages([("incident", e) for e in events]))
    return events


def sends(base, am):
    return kt.metrics(base).get(
        f'keng_alertmanager_sends_total{{url="{am.base}"}}', 0)


def test_fire_resolve_and_restarts():
    wd = kt.Workdir()
    broker = kt.Broker(wd, partitions=2)
    am = agg = None
    try:
        am = Alertmanager(wd)
        rows = kt.registry_rows()
        commune, boards = commune_with_boards(rows)
        labels = [expected_labels(commune), PROVINCE_LABELS]
        t0 = int(time.time() * 1000)
        # A resend interval of 10 s: a firing alert's endsAt is 40 s ahead, more than a
        # restart of keng-aggregate takes here.
        cfg = write_config(wd, f"alertmanager.url={am.base}\n"
                               "alert.province_busy.level=province\n"
                               "alert.province_busy.window=24h\n"
                               "alert.province_busy.kind=incident\n"
                               "alert.province_busy.threshold=3\n"
                               "alertmanager.resend.interval.ms=10000\n"
                               "dashboard.url=http://keng.example:8080/\n")
        state = wd.file("state")
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        agg = start_aggregate(wd, broker, cfg, state, port, t0)
        wait_ready(base, agg)
        kt.wait_until(lambda: sends(base, am) >= 1, 30, "a first (empty) send")
        kt.check_equal(am.alerts(), [], "Alertmanager's alerts before anything fires")

        produce_drugs(broker, boards, t0, 7)
        kt.wait_until(lambda: len(kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"]) == 2,
                      60, "the alerts to fire in keng")
        kt.wait_until(lambda: len(am.alerts()) == 2, 30, "the alerts in Alertmanager")
        a = check_exactly(am, labels, "after firing")
        starts = a["startsAt"]
        kt.check_equal(starts[:19], time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 / 1000)),
                       "startsAt = the alert's start")
        kt.check(a["annotations"]["summary"].startswith("Xã ") and "3 vụ" in
                 a["annotations"]["summary"], "summary annotation", "Xã ...: 3 vụ ...",
                 a["annotations"]["summary"])
        kt.check_equal(a["annotations"]["dashboard"],
                       f"http://keng.example:8080/#w=24h&l=commune&s={commune['commune_id']}",
                       "dashboard annotation")
        kt.check_equal(a["generatorURL"],
                       "http://keng.example:8080/v1/counts?level=commune&id="
                       + commune["commune_id"], "generatorURL")

        # SIGKILL while it fires: after the restart Alertmanager holds exactly that alert,
        # with its start, not resolved and not twice.
        agg.signal(signal.SIGKILL)
        agg.kill()
        agg = start_aggregate(wd, broker, cfg, state, port, t0)
        # All along, while keng-aggregate is down and starts again, Alertmanager holds the
        # alert, active.
        deadline = time.monotonic() + 120
        polls = 0
        while time.monotonic() < deadline:
            check_exactly(am, labels, f"while keng-aggregate restarts (poll {polls})")
            polls += 1
            try:
                if sends(base, am) >= 2:
                    break
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        kt.check(sends(base, am) >= 2, "two sends of the restarted instance", ">= 2",
                 sends(base, am))
        a = check_exactly(am, labels, "after keng-aggregate was SIGKILLed and restarted")
        kt.check_equal(a["startsAt"], starts, "startsAt after the restart")

        # Alertmanager restarted while the alert fires: keng's next send brings it back.
        am.stop()
        am.start()
        kt.check_equal(am.alerts(), [], "a restarted Alertmanager's alerts before keng re-sends")
        kt.wait_until(lambda: len(am.alerts()) == 2, 60,
                      "the alerts back in the restarted Alertmanager")
        a = check_exactly(am, labels, "after Alertmanager restarted")
        kt.check_equal(a["startsAt"], starts, "startsAt after Alertmanager restarted")

        # Stop, move the clock past the window: the alert resolves in keng and Alertmanager.
        kt.check_equal(agg.stop(), 0, "exit status after SIGTERM")
        agg = start_aggregate(wd, broker, cfg, state, port, t0 + 25 * HOUR)
        wait_ready(base, agg)
        kt.wait_until(lambda: len(kt.get_json(f"{base}/v1/alerts?status=resolved")["alerts"])
                      == 2, 30, "the alerts to resolve in keng")
        kt.wait_until(lambda: am.alerts() == [], 30, "the alert resolved in Alertmanager")
        # It stays resolved through further sends.
        n = sends(base, am)
        kt.wait_until(lambda: sends(base, am) >= n + 2, 60, "two more sends")
        kt.check_equal(am.alerts(), [], "Alertmanager's alerts after the resolve")
        kt.check_equal(agg.stop(), 0, "exit status after SIGTERM")
        agg = None
    finally:
        if am:
            am.stop()
        kt.close_all([agg], broker, wd)


class Flaky:
    """An HTTP receiver on 127.0.0.1 that answers 500, or 200, or only after 60 s, as told
    (mode), and keeps the JSON bodies it took with 200."""

    def __init__(self, mode, port=0):
        self.mode = mode
        self.bodies = []
        self.requests = 0
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                receiver.requests += 1
                if receiver.mode == "slow":
                    receiver.release.wait(60)
                    return
                if receiver.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_receivers_down_failing_or_slow():
    wd = kt.Workdir()
    broker = kt.Broker(wd, partitions=2)
    agg = None
    down_port = kt.free_port()  # nothing listens there until later
    failing = Flaky("500")
    slow = Flaky("slow")
    hook = Flaky("500")
    down = None
    try:
        rows = kt.registry_rows()
        commune, boards = commune_with_boards(rows, 200)
        urls = {"down": f"http://127.0.0.1:{down_port}", "failing": failing.url,
                "slow": slow.url}
        cfg = write_config(wd, f"alertmanager.url={urls['down']}, {urls['failing']},"
                               f"{urls['slow']}\n"
                               "alertmanager.resend.interval.ms=2000\n"
                               "alertmanager.timeout.ms=1000\n"
                               "webhook.timeout.ms=1000\n"
                               f"webhook.url={hook.url}/hook\n")
        state = wd.file("state")
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        t0 = int(time.time() * 1000)
        agg = start_aggregate(wd, broker, cfg, state, port, None)  # the real clock
        wait_ready(base, agg)

        produce_drugs(broker, boards, t0, 11)
        kt.wait_until(lambda: kt.get_json(f"{base}/v1/alerts?status=firing")["alerts"], 60,
                      "the alert to fire while every receiver fails")
        # Counting and the API go on: more events are counted and answered promptly.
        more = [kt.random_event(random.Random(1000 + i), "incident", boards[0], t0 - MINUTE, t0)
                for i in range(20)]
        kt.produce(broker.bootstrap, kt.messages([("incident", e) for e in more]))
        cid = urllib.parse.quote(commune["commune_id"])
        seen = []

        def counted():
            seen.append(kt.get_json(f"{base}/v1/counts?level=commune&id={cid}",
                                    timeout=5)["windows"]["all"]["incidents"]["total"])
            return seen[-1] == 23

        try:
            kt.wait_until(counted, 60, "all 23 events counted while the receivers fail")
        except kt.TestFailure:
            kt.log(f"incidents counted: {seen[-1:]}; {kt.metrics(base)}")
            raise

        def failures(which):
            return kt.metrics(base).get(
                f'keng_alertmanager_failures_total{{url="{urls[which]}"}}', 0)

        for which in ("down", "failing", "slow"):
            kt.wait_until(lambda: failures(which) >= 2, 60, f"retried sends to the {which} one")
        m = kt.metrics(base)
        for which in ("down", "failing", "slow"):
            kt.check_equal(m[f'keng_alertmanager_up{{url="{urls[which]}"}}'], 0,
                           f"keng_alertmanager_up of the {which} one")
        kt.wait_until(lambda: kt.metrics(base)["keng_webhook_failures_total"] >= 2, 60,
                      "retried webhook posts")
        kt.check_equal(kt.metrics(base)["keng_webhook_queued"], 1, "webhook bodies queued")
        kt.check_equal((failing.bodies, hook.bodies), ([], []), "bodies taken while failing")

        # They come back: each is caught up with the firing alert.
        down = Flaky("ok", down_port)
        failing.mode = "ok"
        hook.mode = "ok"
        for which, receiver in (("down", down), ("failing", failing)):
            batch = kt.wait_until(lambda: [b for b in receiver.bodies if b], 60,
                                  f"the {which} Alertmanager caught up")[-1]
            kt.check_equal([(x["labels"]["alertname"], x["labels"]["scope_id"]) for x in batch],
                           [(RULE, commune["commune_id"])], f"alerts sent to the {which} one")
            kt.wait_until(lambda: kt.metrics(base).get(
                f'keng_alertmanager_up{{url="{urls[which]}"}}') == 1, 30,
                f"keng_alertmanager_up of the {which} one")
        kt.wait_until(lambda: hook.bodies, 60, "the webhook caught up")
        kt.check_equal([(b["rule"], b["status"]) for b in hook.bodies], [(RULE, "FIRING")],
                       "webhook bodies")
        kt.check_equal(kt.metrics(base)["keng_webhook_queued"], 0, "webhook bodies queued")
        kt.check(slow.requests >= 1, "the slow one was tried", ">= 1", slow.requests)
        kt.check_equal(agg.stop(), 0, "exit status after SIGTERM, with a slow receiver")
        agg = None
    finally:
        for r in (failing, slow, hook, down):
            if r:
                r.stop()
        kt.close_all([agg], broker, wd)


def test_bad_settings_stop_the_program():
    wd = kt.Workdir()
    try:
        cases = [
            ("alertmanager.url=ftp://am:9093\n", "alertmanager.url"),
            ("alertmanager.url=http://\n", "alertmanager.url"),
            ("webhook.url=not a url\n", "webhook.url"),
            ("alertmanager.resend.interval.ms=soon\n", "alertmanager.resend.interval.ms"),
            (f"alert.{RULE}.severity=very bad\n", f"alert.{RULE}.severity"),
            (f"alert.{RULE}.kind=incidents\n", f"alert.{RULE}.kind"),
            ("alertmanagr.url=http://am:9093\n",
             "unknown key 'alertmanagr.url' (nearest known key: alertmanager.url)"),
            ("bogus.key=1\n", "unknown key 'bogus.key'"),
        ]
        for text, named in cases:
            cfg = write_config(wd, text)
            r = subprocess.run([kt.binary("keng-aggregate"), "--config", cfg, "--state-dir",
                                wd.file("s"), "--listen", "127.0.0.1:0"], capture_output=True,
                               timeout=30, env={"KENG_BROKERS": "127.0.0.1:1"})
            err = r.stderr.decode(errors="replace")
            kt.check_equal(r.returncode, 64, f"exit status for {text.strip()!r}")
            kt.check(named in err, f"the error for {text.strip()!r} names the key", named, err)
    finally:
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_bad_settings_stop_the_program, test_receivers_down_failing_or_slow,
             test_fire_resolve_and_restarts])
