"""The operator's route of docs/OPERATIONS.md, "A single host with systemd", with the real
programs in place of systemd: the units' own ExecStart lines (deploy/systemd/*.service) run
with /usr/local/bin, /etc/keng and the state dir moved into a work folder and the ports
chosen here, on the configs of deploy/ as shipped (the broker set, as step 4 says). The
operator's own registry (two wards of Vinh as of 2025, not the built-in one) is checked
with keng-registry --check; the topics are there (on Apache Kafka, deploy/create-topics.sh
brings them to keng's settings); a gateway gets a token for one district with --new-token.
Then: the gateway's POSTs by curl (202, 403 outside its district, 401 without a token), the
live counts on the dashboard in Chromium, a backup with mdb_copy -c while keng-aggregate
runs, more events, and the backup restored into a new state dir, whose counts are exact
once it has read what came after the copy. Runs on the embedded broker, and as
kafka.test_operator_route on Apache Kafka."""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

import kengtest as kt
import test_dashboard as dash

UNITS = os.path.join(kt.SOURCE_DIR, "deploy", "systemd")
REGISTRY = """board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members
16681-K01,Khối 1,16681,Phường Thành Vinh,VINH,Vinh (trước 2025),6,6
16681-K02,Khối 2,16681,Phường Thành Vinh,VINH,Vinh (trước 2025),5,5
16681-K03,Khối 3,16681,Phường Thành Vinh,VINH,Vinh (trước 2025),7,7
16690-K01,Khối 1,16690,Phường Trường Vinh,VINH,Vinh (trước 2025),5,5
16690-K02,Khối 2,16690,Phường Trường Vinh,VINH,Vinh (trước 2025),4,4
17011-X01,Xóm 1,17011,Xã Diễn Châu,DC,Diễn Châu (trước 2025),4,4
"""
BOARDS = [line.split(",")[0] for line in REGISTRY.splitlines()[1:]]


def exec_start(unit, etc, state, port):
    """The unit's ExecStart, moved into the work folder: the argv to run."""
    with open(os.path.join(UNITS, unit)) as f:
        line = next(ln for ln in f if ln.startswith("ExecStart="))[len("ExecStart="):].strip()
    line = (line.replace("/usr/local/bin/", "").replace("/etc/keng", etc)
            .replace("/var/lib/keng-aggregate", state))
    line = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", line)
    argv = shlex.split(line)
    kt.check(argv and argv[0] in ("keng-ingest", "keng-aggregate"),
             f"{unit}'s ExecStart runs a keng program", "keng-*", line)
    return argv


def install_config(name, etc, bootstrap, extra=""):
    """deploy/NAME.conf as step 4 says: copied, kafka.bootstrap.servers set, and the TLS and
    SASL keys removed (the brokers of this test have neither, as the file's comment says)."""
    with open(os.path.join(kt.SOURCE_DIR, "deploy", name)) as f:
        text = "".join(line for line in f if not line.startswith(
            ("kafka.security.protocol", "kafka.sasl.", "kafka.ssl.")))
    with open(os.path.join(etc, name), "w") as f:
        f.write(text + f"\nkafka.bootstrap.servers={bootstrap}\n" + extra)


def curl_post(port, token, board, now_ms):
    event = {"event_id": str(uuid.uuid4()), "board_id": board,
             "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000 - 600)),
             "category": "THEFT", "severity": "LOW", "resolution": "HANDLED_LOCALLY",
             "people_involved": 1, "source": "MOBILE_APP"}
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
            "Content-Type: application/json", "--data-binary", json.dumps(event),
            f"http://127.0.0.1:{port}/v1/incidents"]
    if token:
        args[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run(args, capture_output=True, timeout=30)
    return int(out.stdout.decode() or 0)


def test_operator_route():
    dash.require_browser()
    work = kt.Workdir(prefix="keng-route-")
    broker = kt.Broker(work, partitions=2)
    etc, programs, driver = work.file("etc-keng"), [], None
    os.makedirs(etc)
    try:
        # 2. The registry first, checked.
        with open(os.path.join(etc, "boards.csv"), "w") as f:
            f.write(REGISTRY)
        out = subprocess.run([kt.binary("keng-registry"), "--check",
                              os.path.join(etc, "boards.csv")], capture_output=True, timeout=30)
        kt.check_equal((out.returncode, b"boards=6" in out.stdout), (0, True),
                       f"keng-registry --check ({out.stdout!r} {out.stderr!r})")
        # 3. The topics: on Apache Kafka, create-topics.sh brings them to keng's settings.
        if kt.on_real_kafka():
            env = dict(os.environ, KENG_BOOTSTRAP=broker.bootstrap,
                       KAFKA_BIN=os.path.join(broker.dir, "kafka-home", "bin"),
                       KENG_PARTITIONS="2", KENG_SIDE_PARTITIONS="2", KENG_REPLICATION="1",
                       KENG_MIN_INSYNC="1")
            out = subprocess.run([os.path.join(kt.SOURCE_DIR, "deploy", "create-topics.sh")],
                                 env=env, capture_output=True, timeout=300)
            kt.check_equal(out.returncode, 0, f"create-topics.sh ({out.stderr[-600:]!r})")
        # 4. The configs; 5. a token for one district.
        install_config("keng-ingest.conf", etc, broker.bootstrap)
        install_config("keng-aggregate.conf", etc, broker.bootstrap,
                       "checkpoint.interval.ms=200\ngroup.instance.id=none\n"
                       "kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n")
        out = subprocess.run([kt.binary("keng-ingest"), "--new-token", "gateway-vinh-01",
                              "--units", "VINH", "--registry", os.path.join(etc, "boards.csv"),
                              "--tokens", os.path.join(etc, "tokens")],
                             capture_output=True, timeout=30)
        token = out.stdout.decode().strip().split()[-1]
        kt.check_equal(out.returncode, 0, f"--new-token ({out.stderr!r})")
        # 6. Start them as the units do.
        ingest_port, agg_port = kt.free_port(), kt.free_port()
        state = work.file("var-lib-keng-aggregate")
        os.makedirs(state, mode=0o700)  # StateDirectory= and StateDirectoryMode=0700
        ingest = kt.Process("keng-ingest", exec_start("keng-ingest.service", etc, state,
                                                      ingest_port)[1:], work)
        agg = kt.Process("keng-aggregate", exec_start("keng-aggregate.service", etc, state,
                                                      agg_port)[1:], work)
        programs += [ingest, agg]
        base = f"http://127.0.0.1:{agg_port}"
        kt.wait_until(lambda: kt.http("GET", base + "/readyz")[0] == 200, 120,
                      "keng-aggregate ready (step 6)")
        kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{ingest_port}/healthz")[0] == 200,
                      60, "keng-ingest healthy (step 6)")
        now = int(time.time() * 1000)
        vinh = [b for b in BOARDS if b.startswith(("16681", "16690"))]
        statuses = [curl_post(ingest_port, token, vinh[i % len(vinh)], now) for i in range(12)]
        kt.check_equal(set(statuses), {202}, "the gateway's POSTs by curl")
        kt.check_equal(curl_post(ingest_port, token, "17011-X01", now), 403,
                       "a board outside the token's district")
        kt.check_equal(curl_post(ingest_port, None, vinh[0], now), 401, "no token")

        def province():
            return kt.get_json(base + "/v1/counts?level=province&id=NA")["windows"]["24h"][
                "incidents"]["total"]
        kt.wait_until(lambda: province() == 12, 60, "the 12 incidents counted")
        # The dashboard shows them live, then the next ones as they come.
        driver = dash.start_browser(work.file("chromium"))
        driver.get(base + "/")
        dash.wait_kpi(driver, "incidents", 12, "the dashboard's incidents (24h)")
        # A backup while it runs (Back up and restore).
        backup = work.file("backup")
        os.makedirs(backup)
        out = subprocess.run(["mdb_copy", "-c", state, backup], capture_output=True, timeout=60)
        kt.check_equal(out.returncode, 0, f"mdb_copy -c ({out.stderr!r})")
        statuses = [curl_post(ingest_port, token, vinh[i % len(vinh)], now) for i in range(8)]
        kt.check_equal(set(statuses), {202}, "more POSTs after the backup")
        dash.wait_kpi(driver, "incidents", 20, "the dashboard follows live")
        agg.stop()
        # The restore: the copy as a new state dir, the same command.
        shutil.rmtree(state)
        shutil.copytree(backup, state)
        agg = kt.Process("keng-aggregate", exec_start("keng-aggregate.service", etc, state,
                                                      agg_port)[1:], work)
        programs.append(agg)
        kt.wait_until(lambda: kt.http("GET", base + "/readyz")[0] == 200, 120,
                      "keng-aggregate ready on the restored state")
        kt.wait_until(lambda: province() == 20, 60, "the restored counts: all 20, none twice")
        time.sleep(1)
        kt.check_equal(province(), 20, "the restored counts stay at 20")
        driver.refresh()
        dash.wait_kpi(driver, "incidents", 20, "the dashboard on the restored state")
        print(f"FIGURES operator route ({'Apache Kafka' if kt.on_real_kafka() else 'embedded'}"
              "): registry of 6 boards checked, token for one district, 20 POSTs by curl 202 "
              "(403 outside, 401 without), dashboard live, backup restored exactly", flush=True)
        for p in (ingest, agg):
            kt.check_equal(p.stop(), 0, f"{p.name} stops cleanly")
        programs = []
    finally:
        if driver is not None:
            driver.quit()
        kt.close_all(programs, broker, work)


if __name__ == "__main__":
    kt.main([test_operator_route])
