"""keng-ingest follows the topic antt.registry (registry.topic) and switches registries at a
version's effective time, without a restart: version A (two communes under a district) is in
force at start; version B, published a few seconds ahead, adds board B5 and merges the communes
C1 and C2 into N1, removing board B3. Before the switch B5 is refused as unknown and B1, B3 are
taken; after it B5 is taken, the token scoped to commune C1 (which B no longer has) still
covers B1 and B2 but not B5, B3 is refused as unknown; /metrics says which version is in use,
the switch and the next effective time. A message on the topic that is not a version is
skipped, said in the log, on /metrics and on /readyz's body, while posts go on. The same
process throughout. Also: no version in force and a missing topic exit 78, no broker 69,
--registry with registry.topic is a usage error."""

import json
import os
import random
import subprocess
import time

import kengtest as kt

TOPIC = "antt.registry"

HEAD = "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
VERSION_A = HEAD + (
    "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5\n")
VERSION_B = HEAD + (
    "B1,Thôn 1,N1,Xã Mới,,,5,5\n"
    "B2,Thôn 2,N1,Xã Mới,,,5,5\n"
    "B5,Thôn 5,N1,Xã Mới,,,5,5\n")
LINEAGE_B = ("from_id,from_name,to_id,to_name\n"
             "C1,Xã Một,N1,Xã Mới\n"
             "C2,Xã Hai,N1,Xã Mới\n"
             "B3,Thôn 3,,\n")
# How far ahead of now version B is published: room for the checks before the switch, also
# on a real Kafka that takes a few seconds to publish.
AHEAD_S = 20




def write(wd, name, text):
    path = wd.file(name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def new_token(wd, tokens, registry, name, units):
    out = subprocess.run([kt.binary("keng-ingest"), "--new-token", name, "--units", units,
                          "--tokens", tokens, "--registry", registry], capture_output=True,
                         text=True, timeout=10)
    kt.check_equal(out.returncode, 0, f"--new-token {name} exit status ({out.stderr!r})")
    return out.stdout.strip()


def ingest_once(*args, timeout=60):
    """keng-ingest run to its exit (a refusal at start): (status, stderr)."""
    env = dict(os.environ)
    env.pop("KENG_BROKERS", None)
    out = subprocess.run([kt.binary("keng-ingest"), *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    return out.returncode, out.stderr


RNG = random.Random(17)


def event(board):
    now = int(time.time() * 1000)
    return kt.random_event(RNG, "incident", board, now - 60_000, reported_ms=now - 1000)


def post(port, token, board):
    body = json.dumps(event(board)).encode()
    status, _, data = kt.http("POST", f"http://127.0.0.1:{port}/v1/incidents", body=body,
                              headers={"Content-Type": "application/json",
                                       "Authorization": f"Bearer {token}"}, timeout=20)
    return status, data.decode("utf-8", "replace")


def expect(port, token, board, status, fragment, what):
    got, body = post(port, token, board)
    kt.check_equal(got, status, f"{what}: POST board {board} ({body})")
    if fragment:
        kt.check(fragment in body, f"{what}: the answer says it", fragment, body)








def test_switch_at_the_effective_time_without_restart():
    wd = kt.Workdir(prefix="keng-ingest-switch-")
    broker = kt.Broker(wd, partitions=2)
    ingest = None
    try:
        reg_a = write(wd, "version-a.csv", VERSION_A)
        reg_b = write(wd, "version-b.csv", VERSION_B)
        lineage_b = write(wd, "lineage-b.csv", LINEAGE_B)
        tokens = wd.file("tokens")
        token_all = new_token(wd, tokens, reg_a, "province-gw", "*")
        token_c1 = new_token(wd, tokens, reg_a, "c1-gw", "C1")
        conf = write(wd, "ingest.conf", f"registry.topic={TOPIC}\ningest.deadline_ms=5000\n")

        # The refusals at start: both registries, no version in force, no such topic.
        status, err = ingest_once("--brokers", broker.bootstrap, "--config", conf,
                                  "--registry", reg_a)
        kt.check_equal(status, 64, f"--registry with registry.topic: exit status ({err!r})")
        kt.check("registry.topic" in err, "--registry with registry.topic: says why",
                 "registry.topic", err)
        status, err = ingest_once("--brokers", broker.bootstrap, "--config", conf,
                                  "--listen", f"127.0.0.1:{kt.free_port()}")
        kt.check_equal(status, 78, f"an empty topic: exit status ({err!r})")
        kt.check("no registry version is in force" in err, "an empty topic: says why",
                 "no registry version is in force", err)
        status, err = ingest_once("--brokers", broker.bootstrap, "--registry-topic",
                                  "antt.no-such-topic", "--listen",
                                  f"127.0.0.1:{kt.free_port()}")
        kt.check_equal(status, 78, f"a missing topic: exit status ({err!r})")
        # Real Kafka says the topic does not exist; the embedded broker makes any topic asked
        # for, which is then empty.
        kt.check("does not exist" in err or
                 "no registry version is in force in antt.no-such-topic" in err,
                 "a missing topic: says why", "does not exist", err)

        status, err = ingest_once("--brokers", f"127.0.0.1:{kt.free_port()}", "--config", conf,
                                  "--listen", f"127.0.0.1:{kt.free_port()}")
        kt.check_equal(status, 69, f"no broker answers: exit status ({err!r})")
        kt.check("did not answer" in err, "no broker answers: says why", "did not answer", err)

        out = kt.registry_tool("--publish", reg_a, "--effective", "2024-01-01", "--allow-past",
                               "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish version A: exit status ({out.stderr!r})")
        key_a = "2023-12-31T17:00:00Z"

        port = kt.free_port()
        ingest = kt.Process("keng-ingest", [
            "--listen", f"127.0.0.1:{port}", "--brokers", broker.bootstrap, "--tokens", tokens,
            "--config", conf], wd)
        pid = ingest.proc.pid
        kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{port}/healthz",
                                      timeout=2)[0] == 200, 30, "keng-ingest /healthz")
        text = ingest.log_text()
        kt.check("board registry in use" in text and "source=topic" in text and
                 f"version={key_a}" in text, "the start line names the topic's version",
                 f"board registry in use source=topic version={key_a}", text)
        base = f"http://127.0.0.1:{port}"
        m = kt.metrics(base)
        kt.check_equal(kt.metric_value(m, "keng_registry_info", source="topic", version=key_a),
                       1.0,
                       f"keng_registry_info of version A ({[k for k in m if 'registry' in k]})")
        kt.check_equal(kt.metric_value(m, "keng_registry_switches_total"), 0.0, "no switch yet")
        kt.check_equal(kt.metric_value(m, "keng_registry_next_effective_timestamp_seconds"), 0.0,
                       "no version pending")

        effective_s = int(time.time()) + AHEAD_S
        key_b = kt.rfc3339(effective_s)
        out = kt.registry_tool("--publish", reg_b, "--effective", key_b, "--lineage", lineage_b,
                               "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish version B: exit status ({out.stderr!r})")
        kt.wait_until(lambda: kt.metric_value(kt.metrics(base),
                                              "keng_registry_next_effective_timestamp_seconds")
                      == float(effective_s), 15, "keng-ingest reads version B as pending")

        # Before the switch: version A.
        expect(port, token_all, "B5", 400, "board 'B5' is not in the board registry",
               "before the switch, the new board")
        expect(port, token_c1, "B1", 202, None, "before the switch, C1's token")
        expect(port, token_all, "B3", 202, None, "before the switch, the board B removes")
        kt.check(time.time() < effective_s - 1, "the checks before the switch ran before it",
                 f"before {key_b}", kt.rfc3339(int(time.time())))

        kt.wait_until(lambda: "board registry switched" in ingest.log_text(), AHEAD_S + 30,
                      "the log line of the switch")
        kt.check(time.time() >= effective_s - 1, "the switch came at the effective time",
                 f"not before {key_b}", kt.rfc3339(int(time.time())))
        line = [ln for ln in ingest.log_text().splitlines() if "board registry switched" in ln][0]
        kt.log(line)
        for fragment in (f"version={key_b}", f"previous={key_a}", "boards=3", "communes=1",
                         "districts=0"):
            kt.check(fragment in line, "the switch's line says it", fragment, line)
        warned = [ln for ln in ingest.log_text().splitlines()
                  if "gateway=c1-gw" in ln and "unit=C1" in ln]
        kt.check(warned and "level=warn" in warned[-1],
                 "the switch warns about C1's token, naming the gateway", "gateway=c1-gw unit=C1",
                 warned)

        # After: version B, and C1's token still covers the boards that were in C1.
        expect(port, token_all, "B5", 202, None, "after the switch, the new board")
        expect(port, token_c1, "B1", 202, None, "after the switch, C1's token for B1")
        expect(port, token_c1, "B2", 202, None, "after the switch, C1's token for B2")
        expect(port, token_c1, "B5", 403, "may report for", "after the switch, C1's token for B5")
        expect(port, token_all, "B3", 400, "board 'B3' is not in the board registry",
               "after the switch, the removed board")
        m = kt.metrics(base)
        kt.check_equal(kt.metric_value(m, "keng_registry_info", source="topic", version=key_b),
                       1.0,
                       f"keng_registry_info of version B ({[k for k in m if 'registry' in k]})")
        kt.check_equal(kt.metric_value(m, "keng_registry_info", version=key_a), None,
                       "version A is no longer in keng_registry_info")
        kt.check_equal(kt.metric_value(m, "keng_registry_switches_total"), 1.0, "one switch")
        kt.check_equal(kt.metric_value(m, "keng_registry_next_effective_timestamp_seconds"), 0.0,
                       "nothing pending after the switch")
        kt.check_equal(kt.metric_value(m, "keng_registry_units", level="board"), 3.0, "B's boards")
        kt.check_equal(kt.metric_value(m, "keng_registry_versions_skipped_total"), 0.0,
                       "nothing skipped")

        # A message that is not a version: skipped, said, and posts go on under B.
        kt.produce(broker.bootstrap, [(TOPIC, b"2030-01-01T00:00:00Z", b"not a document")])
        kt.wait_until(lambda: kt.metric_value(kt.metrics(base),
                                              "keng_registry_versions_skipped_total") == 1.0, 30,
                      "keng_registry_versions_skipped_total 1")
        text = ingest.log_text()
        kt.log([ln for ln in text.splitlines() if "skipped" in ln][-1])
        kt.check("2030-01-01T00:00:00Z" in text and "skipped" in text,
                 "the log names the skipped message", "skipped ... 2030-01-01T00:00:00Z",
                 text[-1500:])
        status, _, body = kt.http("GET", base + "/readyz")
        kt.check_equal(status, 200, "/readyz stays ready with a skipped version")
        kt.check("skipped" in body.decode() and key_b in body.decode(),
                 "/readyz's body says a version was skipped and which is in use",
                 f"skipped, {key_b}", body.decode())
        expect(port, token_all, "B5", 202, None, "after the skipped message")
        m = kt.metrics(base)
        kt.check_equal(kt.metric_value(m, "keng_registry_info", source="topic", version=key_b),
                       1.0,
                       "version B stays in use")

        kt.check(ingest.alive() and ingest.proc.pid == pid, "keng-ingest never restarted",
                 pid, ingest.proc.pid if ingest.alive() else "exited")
        kt.check_equal(ingest.log_text().count("msg=\"listening\""), 1, "one start in the log")
        rc = ingest.stop()
        kt.check_equal(rc, 0, f"keng-ingest exit status; log: {ingest.log_tail()}")
    finally:
        if ingest and ingest.alive():
            ingest.kill()
        broker.stop()
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_switch_at_the_effective_time_without_restart])
