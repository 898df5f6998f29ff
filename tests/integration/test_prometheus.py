"""keng in the real Prometheus (Debian's prometheus package): promtool checks deploy/'s
prometheus.yml and keng-rules.yml, amtool checks deploy/alertmanager.yml, promtool checks
the /metrics of keng-ingest and keng-aggregate after a load, and a Prometheus started here
(127.0.0.1, its own data dir, a 1 s scrape interval, keng-rules.yml loaded) scrapes both
programs: its HTTP API returns keng's series with the values of that known load, and keng's
recording rules evaluate over them."""

import base64
import json
import os
import random
import shutil
import subprocess
import time
import urllib.parse

import kengtest as kt
import test_tls

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
DEPLOY = os.path.join(os.path.abspath(kt.SOURCE_DIR), "deploy")
REQUESTS = 4
PER_REQUEST = 10


def run(args, stdin=None):
    if not os.path.exists(args[0]):
        raise kt.TestFailure(f"{args[0]} is missing (Debian's prometheus and "
                             "prometheus-alertmanager): run scripts/install-deps.sh")
    r = subprocess.run(args, input=stdin, capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_deploy_files_check():
    for args in ([PROMTOOL, "check", "config", os.path.join(DEPLOY, "prometheus.yml")],
                 [PROMTOOL, "check", "rules", os.path.join(DEPLOY, "keng-rules.yml")],
                 [AMTOOL, "check-config", os.path.join(DEPLOY, "alertmanager.yml")]):
        rc, out = run(args)
        kt.check_equal(rc, 0, f"{' '.join(args[1:])} exit status ({out})")
    # A route per district, D01 to D21.
    with open(os.path.join(DEPLOY, "alertmanager.yml"), encoding="utf-8") as f:
        text = f.read()
    missing = [f"D{i:02d}" for i in range(1, 22) if f"district_id=\"D{i:02d}\"" not in text]
    kt.check_equal(missing, [], "districts without a route in deploy/alertmanager.yml")
    # A route per commune of the two-tier province (registry/nghe-an-2025-07-01.communes.csv).
    with open(os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2025-07-01.communes.csv"),
              encoding="utf-8") as f:
        communes = [line.split(",", 1)[0] for line in f.read().splitlines()[1:]]
    kt.check_equal(len(communes), 130, "communes of 1 July 2025")
    missing = [c for c in communes if f"commune_id=\"{c}\"" not in text]
    kt.check_equal(missing, [], "communes without a route in deploy/alertmanager.yml")
    # Where amtool sends an alert: a commune's of 2025 to that commune, one of the 2024
    # registry (district_id and a commune id of its own) to its district, the province's and
    # keng's own where they went.
    for labels, receiver in (
            (["alertname=x", "level=board", "commune_id=16681", "scope_id=D01-C001-B01"],
             "commune-16681"),
            (["alertname=x", "level=commune", "commune_id=16690"], "commune-16690"),
            (["alertname=x", "level=board", "district_id=D07", "commune_id=D07-C012"],
             "district-D07"),
            (["alertname=x", "level=province", "scope_id=NA"], "province"),
            (["alertname=KengBrokerUnreachable", "job=keng-ingest"], "operations")):
        rc, out = run([AMTOOL, "config", "routes", "test", "--config.file",
                       os.path.join(DEPLOY, "alertmanager.yml"), *labels])
        said = [line for line in out.splitlines() if not line.startswith("Warning:")]
        kt.check_equal((rc, said), (0, [receiver]),
                       f"amtool's receiver for {' '.join(labels)}")


RULE_TESTS = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  # Time 0 is 1970-01-01 00:00 UTC, 07:00 in Vietnam. No event from the start: at 09:00
  # Vietnam time the daytime alert fires; at 22:00 (15h) it does not.
  - interval: 1m
    input_series:
      - series: 'keng_events_counted_total{{job="keng-aggregate",instance="a:8080"}}'
        values: '100+0x1000'
      - series: 'keng_kafka_errors_total{{job="keng-ingest",instance="i:8088",client="producer",error="_TRANSPORT"}}'
        values: '0 0 0 0 0 1+1x100'
      - series: 'keng_kafka_errors_total{{job="keng-ingest",instance="i:8088",client="producer",error="other"}}'
        values: '0+1x100'
    alert_rule_test:
      - eval_time: 2h
        alertname: KengNoEventsInDaytime
        exp_alerts:
          - exp_labels: {{severity: warning, job: keng-aggregate}}
            exp_annotations:
              summary: keng-aggregate counted no event in the last hour of daytime
      - eval_time: 15h
        alertname: KengNoEventsInDaytime
        exp_alerts: []
      - eval_time: 4m
        alertname: KengBrokerUnreachable
        exp_alerts: []
      - eval_time: 10m
        alertname: KengBrokerUnreachable
        exp_alerts:
          - exp_labels: {{severity: critical, job: keng-ingest, instance: "i:8088", client: producer}}
            exp_annotations:
              summary: the producer of keng-ingest at i:8088 cannot reach a Kafka broker
  # Two instances count events and never write a checkpoint (a full disk from the start):
  # c reports its start time (1 minute), d reports 0, as releases before 0.10 did. Both
  # alert once 5 minutes old for 5 minutes; e checkpoints every minute and does not.
  - interval: 1m
    input_series:
      - series: 'keng_events_counted_total{{job="keng-aggregate",instance="c:8080"}}'
        values: '0+10x30'
      - series: 'keng_checkpoint_last_success_timestamp_seconds{{job="keng-aggregate",instance="c:8080"}}'
        values: '60x30'
      - series: 'keng_events_counted_total{{job="keng-aggregate",instance="d:8080"}}'
        values: '0+10x30'
      - series: 'keng_checkpoint_last_success_timestamp_seconds{{job="keng-aggregate",instance="d:8080"}}'
        values: '0x30'
      - series: 'keng_events_counted_total{{job="keng-aggregate",instance="e:8080"}}'
        values: '0+10x30'
      - series: 'keng_checkpoint_last_success_timestamp_seconds{{job="keng-aggregate",instance="e:8080"}}'
        values: '0+60x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: KengCheckpointStale
        exp_alerts: []
      - eval_time: 15m
        alertname: KengCheckpointStale
        exp_alerts:
          - exp_labels: {{severity: critical, job: keng-aggregate, instance: "c:8080"}}
            exp_annotations:
              summary: >-
                keng-aggregate c:8080 counts events but has not checkpointed for 14m 0s: a
                restart would redo that work
          - exp_labels: {{severity: critical, job: keng-aggregate, instance: "d:8080"}}
            exp_annotations:
              summary: >-
                keng-aggregate d:8080 counts events but has not checkpointed for 15m 0s: a
                restart would redo that work
  # f is fenced for good from minute 2 (keng_ready 0 on), g catches up in 10 minutes:
  # only f alerts, after 15 minutes not ready.
  - interval: 1m
    input_series:
      - series: 'keng_ready{{job="keng-aggregate",instance="f:8080"}}'
        values: '1 1 0x40'
      - series: 'keng_ready{{job="keng-aggregate",instance="g:8080"}}'
        values: '0x10 1x30'
    alert_rule_test:
      - eval_time: 12m
        alertname: KengAggregateNotReady
        exp_alerts: []
      - eval_time: 20m
        alertname: KengAggregateNotReady
        exp_alerts:
          - exp_labels: {{severity: critical, job: keng-aggregate, instance: "f:8080"}}
            exp_annotations:
              summary: >-
                keng-aggregate f:8080 has not been ready for 15 minutes: its /readyz says why
                (fenced for good, checkpoints failing, or still catching up)
  # h's certificate ends on day 20, i's on day 10: only i's is near its end.
  - interval: 1m
    input_series:
      - series: 'keng_tls_certificate_not_after_timestamp_seconds{{job="keng-ingest",instance="h:8088"}}'
        values: '1728000x30'
      - series: 'keng_tls_certificate_not_after_timestamp_seconds{{job="keng-ingest",instance="i:8088"}}'
        values: '864000x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: KengTLSCertificateExpiresSoon
        exp_alerts: []
      - eval_time: 20m
        alertname: KengTLSCertificateExpiresSoon
        exp_alerts:
          - exp_labels: {{severity: warning, job: keng-ingest, instance: "i:8088"}}
            exp_annotations:
              summary: >-
                the certificate that keng-ingest at i:8088 serves ends in 9d 23h 40m 0s: renew
                it and send SIGHUP
"""


def test_rules_fire_when_they_should():
    """promtool's rule unit tests: the daytime window in Vietnam time, and a broker that
    cannot be reached (other Kafka errors do not count)."""
    wd = kt.Workdir()
    try:
        path = wd.file("rules-test.yml")
        with open(path, "w") as f:
            f.write(RULE_TESTS.format(rules=os.path.join(DEPLOY, "keng-rules.yml")))
        rc, out = run([PROMTOOL, "test", "rules", path])
        kt.check_equal(rc, 0, f"promtool test rules ({out})")
    finally:
        wd.cleanup()


def new_token(tokens_path):
    r = subprocess.run([kt.binary("keng-ingest"), "--new-token", "prom-gw", "--districts", "*",
                        "--tokens", tokens_path], capture_output=True, timeout=10)
    kt.check_equal(r.returncode, 0, f"--new-token exit status ({r.stderr!r})")
    return r.stdout.decode().strip()


class Prometheus:
    def __init__(self, wd, targets, auth=None, tls=None):
        """auth: {job: (username, password file)} for the targets that ask for a user; tls:
        {job: CA file} for the targets that serve HTTPS."""
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = wd.file("prometheus.yml")
        auth = auth or {}
        tls = tls or {}
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n" +
            (f"    basic_auth:\n      username: {auth[job][0]}\n"
             f"      password_file: {auth[job][1]}\n" if job in auth else "") +
            (f"    scheme: https\n    tls_config:\n      ca_file: {tls[job]}\n"
             f"      server_name: localhost\n" if job in tls else "")
            for job, target in targets.items())
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    f"rule_files:\n  - {os.path.join(DEPLOY, 'keng-rules.yml')}\n"
                    f"scrape_configs:\n{scrape}")
        rc, out = run([PROMTOOL, "check", "config", config])
        kt.check_equal(rc, 0, f"promtool check config of the test's config ({out})")
        self.log = open(wd.file("prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={wd.file('tsdb')}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=self.log)
        kt.wait_until(lambda: kt.http("GET", f"{self.base}/-/ready")[0] == 200, 60,
                      "Prometheus ready")

    def query(self, expr):
        """{labels as a sorted tuple of pairs (without __name__): value} of an instant query."""
        answer = kt.get_json(f"{self.base}/api/v1/query?query={urllib.parse.quote(expr)}")
        kt.check_equal(answer["status"], "success", f"query {expr}")
        return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")):
                float(r["value"][1]) for r in answer["data"]["result"]}

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def scalar(prom, expr):
    values = list(prom.query(expr).values())
    return values[0] if len(values) == 1 else None


def test_metrics_scraped_by_prometheus():
    wd = kt.Workdir()
    broker = kt.Broker(wd, partitions=2)
    agg = ingest = prom = None
    try:
        agg_port, ingest_port = kt.free_port(), kt.free_port()
        # keng-aggregate serves HTTPS, as deploy/prometheus.yml shows; Python's clients here
        # trust the test's CA.
        pki = wd.file("pki")
        os.makedirs(pki)
        test_tls.make_pki(pki)
        ca_file = os.path.join(pki, "ca.crt")
        os.environ["SSL_CERT_FILE"] = ca_file
        agg_base, ingest_base = f"https://localhost:{agg_port}", f"http://127.0.0.1:{ingest_port}"
        cfg = wd.file("keng.conf")
        with open(cfg, "w") as f:
            f.write("kafka.session.timeout.ms=6000\ncheckpoint.interval.ms=200\n")
        # keng-aggregate with users: Prometheus scrapes it as its metrics user, with the
        # password from a file, as deploy/prometheus.yml shows.
        password = "scrape-secret"
        password_file = wd.file("prometheus-password")
        with open(password_file, "w") as f:
            f.write(password)
        hashed = subprocess.run([kt.binary("keng-aggregate"), "--hash-password"], input=password,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        web = wd.file("web.yml")
        with open(web, "w") as f:
            f.write(f"basic_auth_users:\n  prometheus: {hashed}\nmetrics_users: [prometheus]\n"
                    f"tls_server_config:\n  cert_file: {pki}/server1.crt\n"
                    f"  key_file: {pki}/server1.key\n")
        scrape_auth = {"Authorization": "Basic " +
                       base64.b64encode(f"prometheus:{password}".encode()).decode()}
        agg = kt.Process("keng-aggregate", ["--config", cfg, "--brokers", broker.bootstrap,
                                            "--state-dir", wd.file("state"), "--listen",
                                            f"127.0.0.1:{agg_port}", "--web.config.file", web],
                         wd)
        tokens = wd.file("tokens")
        token = new_token(tokens)
        ingest = kt.Process("keng-ingest", ["--brokers", broker.bootstrap, "--tokens", tokens,
                                            "--listen", f"127.0.0.1:{ingest_port}"], wd)
        kt.wait_until(lambda: kt.http("GET", f"{agg_base}/readyz")[0] == 200, 90,
                      "keng-aggregate ready")
        kt.wait_until(lambda: kt.http("GET", f"{ingest_base}/healthz")[0] == 200, 30,
                      "keng-ingest up")

        # The known load: REQUESTS accepted requests of PER_REQUEST incidents, one 401.
        rows = kt.registry_rows()
        rng = random.Random(5)
        now = int(time.time() * 1000)
        for i in range(REQUESTS):
            events = [kt.random_event(rng, "incident", rng.choice(rows)["board_id"],
                                      now - rng.randint(1, 600) * 1000, now)
                      for _ in range(PER_REQUEST)]
            status, _, body = kt.http("POST", f"{ingest_base}/v1/incidents",
                                      json.dumps(events).encode(),
                                      {"Content-Type": "application/json",
                                       "Authorization": f"Bearer {token}"}, timeout=30)
            kt.check_equal(status, 202, f"request {i} status ({body!r})")
        status, _, _ = kt.http("POST", f"{ingest_base}/v1/incidents", b"[]",
                               {"Content-Type": "application/json"})
        kt.check_equal(status, 401, "status without a token")
        total = REQUESTS * PER_REQUEST
        kt.wait_until(lambda: kt.metrics(agg_base, headers=scrape_auth)
                      ["keng_events_counted_total"] == total, 60, f"{total} events counted")
        kt.wait_until(lambda: kt.metrics(agg_base, headers=scrape_auth)
                      ["keng_checkpoints_total"] > 0, 30, "a checkpoint")
        kt.check_equal(kt.http("GET", f"{agg_base}/metrics")[0], 401,
                       "keng-aggregate's /metrics without its user")

        # promtool lints each program's /metrics.
        for name, base, headers in (("keng-aggregate", agg_base, scrape_auth),
                                    ("keng-ingest", ingest_base, None)):
            _, _, body = kt.http("GET", f"{base}/metrics", headers=headers)
            rc, out = run([PROMTOOL, "check", "metrics"], stdin=body)
            kt.check_equal((rc, out.strip()), (0, ""), f"promtool check metrics of {name}")

        prom = Prometheus(wd, {"keng-aggregate": f"127.0.0.1:{agg_port}",
                               "keng-ingest": f"127.0.0.1:{ingest_port}"},
                          auth={"keng-aggregate": ("prometheus", password_file)},
                          tls={"keng-aggregate": ca_file})
        kt.wait_until(lambda: prom.query("up") and all(v == 1 for v in prom.query("up").values())
                      and len(prom.query("up")) == 2, 60, "both targets up in Prometheus")
        expected = {
            'keng_events_counted_total{job="keng-aggregate"}': total,
            'keng_ingest_events_accepted_total{job="keng-ingest"}': total,
            'keng_ingest_requests_total{job="keng-ingest",status="202"}': REQUESTS,
            'keng_ingest_requests_total{job="keng-ingest",status="401"}': 1,
            'sum(keng_deadletter_total{job="keng-aggregate"})': 0,
            'sum(keng_kafka_errors_total{error="_ALL_BROKERS_DOWN"})': 0,
            'keng:consumer_lag:sum{topic="antt.incidents"}': 0,
            'count(keng:checkpoint_age_seconds >= 0)': 1,
        }
        for expr, value in expected.items():
            kt.wait_until(lambda: scalar(prom, expr) is not None, 30, f"{expr} in Prometheus")
            kt.check_equal(scalar(prom, expr), value, f"Prometheus: {expr}")
        groups = kt.get_json(f"{prom.base}/api/v1/rules")["data"]["groups"]
        unhealthy = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
                     if r["health"] not in ("ok", "unknown")]
        kt.check_equal(unhealthy, [], "keng's rules that Prometheus cannot evaluate")
        kt.check_equal(sorted(g["name"] for g in groups), ["keng-alerts", "keng-recording"],
                       "rule groups loaded")
        kt.check_equal(agg.stop(), 0, "keng-aggregate exit status")
        kt.check_equal(ingest.stop(), 0, "keng-ingest exit status")
        agg = ingest = None
    finally:
        os.environ.pop("SSL_CERT_FILE", None)
        if prom:
            prom.stop()
        kt.close_all([agg, ingest], broker, wd)


if __name__ == "__main__":
    kt.main([test_deploy_files_check, test_rules_fire_when_they_should,
             test_metrics_scraped_by_prometheus])
