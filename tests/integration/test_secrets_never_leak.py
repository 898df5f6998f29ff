"""Secrets never leak (issue 19, part 4): every program that takes one is started with
known secret strings, in each place keng takes them: a Kafka SASL password from
kafka.sasl.password_file, credentials and a token inside the Alertmanager and webhook URLs,
Alertmanager's basic-auth password from a file, the webhook's bearer token from a file, and
a gateway's token. Then traffic and failures: events posted (with the good token, and with
a wrong one that looks like a secret too), an alert that fires while the Alertmanager and
the webhook are down, keng-produce and keng-simulate refused by the broker's missing SASL,
and keng-replay writing its review. Every log, every /metrics, every HTTP answer, the state
dir and the review folder are then searched for each secret: none may hold one.

On the embedded broker, which has no SASL: the programs whose brokers need the password
are run with it configured and fail to authenticate, which is the failure the test wants
logged without the secret."""

import glob
import json
import os
import random
import subprocess
import time

import faultlib as fl
from faultlib import kt

SECRETS = {
    "sasl": "SASL-pw-7f3a9c",
    "am_url_password": "AMurlPW-51e2",
    "am_url_token": "AMtok-9b77d0",
    "am_basic": "AMbasic-c41f",
    "hook_url_token": "HOOKq-2d8e61",
    "hook_bearer": "HOOKbearer-aa93",
    "wrong_token": "WRONGtoken-0c5b7e",
}


def secret_file(work, name, value):
    path = work.file(name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def search(where, data, secrets, found):
    text = data if isinstance(data, bytes) else str(data).encode()
    for name, value in secrets.items():
        if value.encode() in text:
            found.append(f"{name} in {where}")


def test_secrets_never_leak():
    work = kt.Workdir(prefix="keng-leak-")
    broker = kt.Broker(work, partitions=2)
    programs, found, answers = [], [], []
    try:
        down = kt.free_port()  # nothing listens there: the receivers are down
        sasl_file = secret_file(work, "kafka-password", SECRETS["sasl"])
        am_pw = secret_file(work, "am-password", SECRETS["am_basic"])
        hook_token = secret_file(work, "hook-token", SECRETS["hook_bearer"])
        rules = fl.AlertRules([("leak_board", "board", "incident", 1)])
        agg = fl.Aggregate(
            work, broker.bootstrap, "keng-leak",
            rules.config() +
            f"alertmanager.url=http://ops:{SECRETS['am_url_password']}@127.0.0.1:{down}/"
            f"?token={SECRETS['am_url_token']}\n"
            "alertmanager.basic_auth.username=keng\n"
            f"alertmanager.basic_auth.password_file={am_pw}\n"
            f"webhook.url=http://127.0.0.1:{down}/hook?token={SECRETS['hook_url_token']}\n"
            f"webhook.bearer_token_file={hook_token}\n"
            "alertmanager.timeout.ms=1000\nwebhook.timeout.ms=1000\n", name="agg")
        programs.append(agg)
        agg.start().wait_ready(timeout=120)
        ingest = fl.Ingest(work, broker.bootstrap)
        programs.append(ingest)
        secrets = dict(SECRETS, gateway_token=ingest.token)
        ingest.start()
        rng = random.Random(5)
        now = int(time.time() * 1000)
        events = [kt.random_event(rng, "incident", b, now - 3_600_000)
                  for b in fl.pick_boards(rng, per_district=2)]
        status, body = ingest.post("incident", events)
        answers.append(("keng-ingest POST", status, body))
        kt.check_equal(status, 202, "the gateway's POST")
        wrong = kt.http("POST", ingest.url("/v1/incidents"), body=b"[]",
                        headers={"Authorization": f"Bearer {SECRETS['wrong_token']}",
                                 "Content-Type": "application/json"})
        answers.append(("keng-ingest POST with a wrong token", wrong[0], wrong[2]))
        kt.check_equal(wrong[0], 401, "a wrong token")
        # The alert fires; its receivers are down: each failure is logged and counted.
        kt.wait_until(lambda: b"leak_board" in
                      kt.http("GET", agg.base + "/v1/alerts?status=firing")[2], 60,
                      "the alert to fire")
        time.sleep(4)  # a few sends to the receivers that are down
        for base, what in ((agg.base, "keng-aggregate"), (ingest.url(""), "keng-ingest")):
            for path in ("/metrics", "/readyz", "/healthz", "/v1/alerts?status=firing",
                         "/v1/counts?level=province&id=NA", "/"):
                if what == "keng-ingest" and path.startswith("/v1/"):
                    continue
                status, headers, body = kt.http("GET", base.rstrip("/") + path)
                answers.append((f"{what} GET {path}", status, body + str(headers).encode()))
        # The programs whose brokers want the SASL password they are given.
        sasl_conf = work.file("sasl.conf")
        with open(sasl_conf, "w") as f:
            f.write("kafka.security.protocol=SASL_PLAINTEXT\nkafka.sasl.mechanisms=PLAIN\n"
                    f"kafka.sasl.username=keng\nkafka.sasl.password_file={sasl_file}\n"
                    "kafka.message.timeout.ms=3000\nkafka.socket.timeout.ms=2000\n")
        ndjson = work.file("events.ndjson")
        with open(ndjson, "w") as f:
            f.write(json.dumps(dict(events[0], kind="incident")) + "\n")
        runs = [
            ("keng-produce", ["--config", sasl_conf, "--brokers", broker.bootstrap, ndjson]),
            ("keng-simulate", ["--config", sasl_conf, "--brokers", broker.bootstrap,
                               "--count", "3", "--rate", "0"]),
            ("keng-produce --check-config", ["--check-config", "--config", sasl_conf,
                                             "--brokers", broker.bootstrap]),
        ]
        # keng-replay refused by the broker, then writing its review on a plain connection.
        review = work.file("review")
        plain_conf = work.file("plain.conf")
        with open(plain_conf, "w") as f:
            f.write("kafka.client.id=keng-replay\n")
        runs += [("keng-replay", ["--config", sasl_conf, "--brokers", broker.bootstrap,
                                  "--year", time.strftime("%Y"), "--out", work.file("refused")]),
                 ("keng-replay --out review", ["--config", plain_conf, "--brokers",
                                               broker.bootstrap, "--year", time.strftime("%Y"),
                                               "--out", review])]
        for name, args in runs:
            program = name.split()[0]
            out = subprocess.run([kt.binary(program)] + args, capture_output=True, timeout=120)
            answers.append((f"{name} (exit {out.returncode})", out.returncode,
                            out.stdout + out.stderr))
        kt.check(os.path.exists(os.path.join(review, "review.html")),
                 "keng-replay wrote the review that is searched", "review.html",
                 os.listdir(review) if os.path.isdir(review) else None)
        # Search everything.
        for what, status, data in answers:
            search(what, data, secrets, found)
        for log in glob.glob(work.file("*.log")):
            with open(log, "rb") as f:
                search(f"the log {os.path.basename(log)}", f.read(), secrets, found)
        for root in (agg.state_dir, review):
            for path in glob.glob(os.path.join(root, "**"), recursive=True):
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        search(os.path.relpath(path, work.path), f.read(), secrets, found)
        kt.check_equal(found, [], "secrets found where they must not be")
        print(f"FIGURES secrets: {len(secrets)} secrets, {len(answers)} answers and "
              f"outputs, {len(glob.glob(work.file('*.log')))} logs, the state dir and the "
              "review searched: none found", flush=True)
    finally:
        fl.close_all(programs, broker, work)


if __name__ == "__main__":
    kt.main([test_secrets_never_leak])
