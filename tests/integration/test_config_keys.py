"""Every program refuses a config key it does not read, at start: exit status 64 and a
message naming the key, its line and the nearest known key, so that a mistyped key cannot
quietly turn a feature off. kafka.* keys stay librdkafka's to judge, and deploy/'s configs
still start."""

import os
import subprocess

import kengtest as kt

# Each program with the arguments it needs to get as far as reading its config.
PROGRAMS = {
    "keng-broker": [],
    "keng-ingest": ["--listen", "127.0.0.1:0"],
    "keng-produce": ["--dry-run", "-"],
    "keng-simulate": ["--output", "ndjson", "--count", "1"],
    "keng-replay": ["--year", "2025", "--out", "review-out"],
    "keng-aggregate": ["--listen", "127.0.0.1:0", "--state-dir", "state"],
}


def run(wd, program, text):
    cfg = wd.file(f"{program}.conf")
    with open(cfg, "w") as f:
        f.write(text)
    r = subprocess.run([kt.binary(program), "--config", cfg] + PROGRAMS[program],
                       capture_output=True, timeout=30, cwd=wd.path, stdin=subprocess.DEVNULL,
                       env={"KENG_BROKERS": "127.0.0.1:1"})
    return r.returncode, r.stderr.decode(errors="replace"), cfg


def test_every_program_refuses_an_unknown_key():
    wd = kt.Workdir()
    try:
        for program in PROGRAMS:
            for text, line, key, nearest in [
                ("topic.incidents=antt.incidents\nbogus.key=1\n", 2, "bogus.key", None),
                ("# the incidents\ntopic.incidnets=antt.incidents\n", 2, "topic.incidnets",
                 "topic.incidents"),
            ]:
                rc, err, cfg = run(wd, program, text)
                kt.check_equal(rc, 64, f"{program} exit status for {key}")
                expected = f"{program}: {cfg}:{line}: unknown key '{key}' (nearest known key: "
                kt.check(expected in err, f"{program} names the key and its line", expected, err)
                if nearest:
                    kt.check(f"nearest known key: {nearest})" in err,
                             f"{program} names the nearest key", nearest, err)
    finally:
        wd.cleanup()


def test_aggregate_names_the_nearest_key_of_a_family():
    wd = kt.Workdir()
    try:
        rc, err, _ = run(wd, "keng-aggregate", "alert.drugs.level=commune\nalert.drugs.windwo=24h\n"
                                               "alertmanagr.url=http://127.0.0.1:9093\n")
        kt.check_equal(rc, 64, "exit status")
        kt.check("unknown key 'alert.drugs.windwo' (nearest known key: alert.drugs.window)" in err,
                 "the first unknown key and its nearest", "alert.drugs.window", err)
        rc, err, _ = run(wd, "keng-aggregate", "alertmanagr.url=http://127.0.0.1:9093\n")
        kt.check("unknown key 'alertmanagr.url' (nearest known key: alertmanager.url)" in err,
                 "a mistyped alertmanager.url", "alertmanager.url", err)
    finally:
        wd.cleanup()


def test_kafka_keys_stay_librdkafkas():
    wd = kt.Workdir()
    try:
        # An unknown librdkafka property: keng passes it on, librdkafka refuses it by name.
        rc, err, _ = run(wd, "keng-ingest", "kafka.bogus.property=1\n")
        kt.check(rc != 0 and "bogus.property" in err and "unknown key" not in err,
                 "librdkafka judges kafka.* keys", "librdkafka's refusal", (rc, err))
    finally:
        wd.cleanup()


def test_alert_links_without_dashboard_url_are_warned_of():
    """The links in keng's alerts lead to dashboard.url, else to this instance's own address,
    which the operators who read the alert elsewhere may not reach (a container's name, a
    loopback address): keng-aggregate says so at start unless dashboard.url is set."""
    wd = kt.Workdir()
    try:
        for extra, warned in (("", True), ("dashboard.url=https://keng.example\n", False)):
            cfg = wd.file(f"agg-{warned}.conf")
            with open(cfg, "w") as f:
                f.write("alert.busy.level=province\nalert.busy.window=1h\n"
                        "alert.busy.kind=incident\nalert.busy.threshold=100\n"
                        "alertmanager.url=http://127.0.0.1:9\n" + extra)
            port = kt.free_port()
            proc = kt.Process("keng-aggregate", ["--config", cfg, "--listen", f"127.0.0.1:{port}",
                                                 "--state-dir", wd.file(f"state-{warned}")],
                              wd, env={"KENG_BROKERS": "127.0.0.1:1"})
            try:
                kt.wait_until(lambda: "sending alerts to Alertmanager" in
                              open(proc.log_path).read(), 30, "keng-aggregate to start sending")
            finally:
                proc.stop()
            log = open(proc.log_path).read()
            line = [ln for ln in log.splitlines() if "set dashboard.url" in ln]
            kt.check_equal(len(line), 1 if warned else 0,
                           f"warnings about the alerts' links ({extra.strip() or 'no dashboard.url'})")
            if warned:
                kt.check(f"http://127.0.0.1:{port}" in line[0], "the warning names the links' "
                         "address", f"http://127.0.0.1:{port}", line[0])
    finally:
        wd.cleanup()


SECRETS = ("s3cret-am-pass", "s3cret-hook-token", "s3cret-query")


def test_credentials_in_urls_never_leak():
    """alertmanager.url and webhook.url can only carry credentials inside the URL: they are
    used, but never written to the log, /metrics or an error message; those name the scheme,
    host and port alone."""
    wd = kt.Workdir()
    try:
        am = f"http://keng:{SECRETS[0]}@127.0.0.1:9"
        hook = f"http://127.0.0.1:9/hooks/{SECRETS[1]}?token={SECRETS[2]}"
        cfg = wd.file("agg.conf")
        with open(cfg, "w") as f:
            f.write("alert.busy.level=province\nalert.busy.window=1h\nalert.busy.kind=incident\n"
                    f"alert.busy.threshold=100\ndashboard.url=https://keng.example\n"
                    f"alertmanager.url={am}\nwebhook.url={hook}\n")
        port = kt.free_port()
        proc = kt.Process("keng-aggregate", ["--config", cfg, "--listen", f"127.0.0.1:{port}",
                                             "--state-dir", wd.file("state")],
                          wd, env={"KENG_BROKERS": "127.0.0.1:1"})
        try:
            kt.wait_until(lambda: "Alertmanager did not take the alerts" in
                          open(proc.log_path).read(), 30, "a failed send to Alertmanager")
            _, _, body = kt.http("GET", f"http://127.0.0.1:{port}/metrics")
            metrics = body.decode()
            kt.check('keng_alertmanager_up{url="http://127.0.0.1:9"}' in metrics,
                     "the Alertmanager series is labelled by scheme, host and port",
                     'url="http://127.0.0.1:9"',
                     [ln for ln in metrics.splitlines() if ln.startswith("keng_alertmanager_up")])
        finally:
            proc.stop()
        texts = {"the log": open(proc.log_path).read(), "/metrics": metrics}
        # A URL that does not load is named in the error without what it holds.
        for key, value in (("alertmanager.url", f"ftp://keng:{SECRETS[0]}@x"),
                           ("webhook.url", f"gopher://x/{SECRETS[1]}")):
            bad = wd.file(f"bad-{key}.conf")
            with open(bad, "w") as f:
                f.write(f"{key}={value}\n")
            r = subprocess.run([kt.binary("keng-aggregate"), "--config", bad, "--listen",
                                "127.0.0.1:0", "--state-dir", wd.file("state-bad")],
                               capture_output=True, text=True, timeout=30,
                               env={"KENG_BROKERS": "127.0.0.1:1"})
            kt.check(r.returncode != 0, f"a bad {key} refused", "non-zero", r.returncode)
            texts[f"the error for a bad {key}"] = r.stderr
        for where, text in texts.items():
            for secret in SECRETS:
                kt.check(secret not in text, f"{secret} absent from {where}", "absent",
                         [ln for ln in text.splitlines() if secret in ln][:3])
    finally:
        wd.cleanup()


def test_credentials_from_files():
    """Secrets come from files, so that configs can be shared and committed without them:
    alertmanager.basic_auth.password_file and webhook.bearer_token_file reach the receivers as
    Authorization headers, and nothing of them reaches the log or /metrics. A secret file that
    its group or others may read is warned of."""
    import base64
    import http.server
    import threading

    seen = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{receiver.server_address[1]}"
    wd = kt.Workdir()
    broker = kt.Broker(wd, partitions=1)
    proc = None
    try:
        password, token = "am-pass-from-file", "hook-token-from-file"
        pw_file, token_file = wd.file("am-password"), wd.file("hook-token")
        with open(pw_file, "w") as f:
            f.write(password + "\n")
        os.chmod(pw_file, 0o600)
        with open(token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(token_file, 0o644)
        cfg = wd.file("agg.conf")
        with open(cfg, "w") as f:
            f.write("alert.any.level=province\nalert.any.window=1h\nalert.any.kind=incident\n"
                    "alert.any.threshold=1\ndashboard.url=https://keng.example\n"
                    f"alertmanager.url={base}/am\nalertmanager.basic_auth.username=keng\n"
                    f"alertmanager.basic_auth.password_file={pw_file}\n"
                    f"webhook.url={base}/hook\nwebhook.bearer_token_file={token_file}\n")
        import random
        import time
        ev = kt.random_event(random.Random(4), "incident", kt.registry_rows()[0]["board_id"],
                             int(time.time() * 1000) - 60_000)
        kt.produce(broker.bootstrap, kt.messages([("incident", ev)]))
        port = kt.free_port()
        proc = kt.Process("keng-aggregate", ["--config", cfg, "--listen", f"127.0.0.1:{port}",
                                             "--state-dir", wd.file("state")],
                          wd, env={"KENG_BROKERS": broker.bootstrap})
        basic = "Basic " + base64.b64encode(f"keng:{password}".encode()).decode()
        kt.wait_until(lambda: ("/am/api/v2/alerts", basic) in seen and
                      ("/hook", f"Bearer {token}") in seen, 60,
                      "the alert at Alertmanager and the webhook, each with its credentials")
        _, _, body = kt.http("GET", f"http://127.0.0.1:{port}/metrics")
        kt.check_equal(proc.stop(), 0, "exit status")
        log = open(proc.log_path).read()
        for where, text in (("the log", log), ("/metrics", body.decode())):
            for secret in (password, token):
                kt.check(secret not in text, f"{secret} absent from {where}", "absent",
                         [ln for ln in text.splitlines() if secret in ln][:3])
        warned = [ln for ln in log.splitlines() if "readable by its group" in ln]
        kt.check(len(warned) == 1 and token_file in warned[0], "the 0644 token file is warned "
                 "of, the 0600 password file is not", token_file, warned)
    finally:
        receiver.shutdown()
        kt.close_all([proc] if proc and proc.alive() else [], broker, wd)


if __name__ == "__main__":
    kt.main([test_credentials_from_files, test_credentials_in_urls_never_leak, test_alert_links_without_dashboard_url_are_warned_of,
             test_every_program_refuses_an_unknown_key,
             test_aggregate_names_the_nearest_key_of_a_family, test_kafka_keys_stay_librdkafkas])
