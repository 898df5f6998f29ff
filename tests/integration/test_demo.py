"""make demo's launcher: keng-demo starts the whole pipeline, prints the dashboard address
and a working ingest command, the simulated counts move, and it stops everything cleanly."""

import json
import random
import re
import signal
import subprocess
import time

import kengtest as kt


def test_demo_runs_and_counts_move():
    work = kt.Workdir()
    port, ingest_port = kt.free_port(), kt.free_port()
    demo = subprocess.Popen([kt.binary("keng-demo"), "--listen", f"127.0.0.1:{port}",
                             "--ingest-listen", f"127.0.0.1:{ingest_port}", "--rate", "200",
                             "--duration", "120", "--dir", work.path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if line.startswith("Running for"):
                break
        text = "".join(lines)
        kt.check(f"http://127.0.0.1:{port}/" in text, "the dashboard address is printed",
                 f"http://127.0.0.1:{port}/", text)
        base = f"http://127.0.0.1:{port}"

        def province_total():
            c = kt.get_json(f"{base}/v1/counts?level=province&id=NA")["windows"]["all"]
            return c["incidents"]["total"] + c["mediations"]["total"]

        first = kt.wait_until(province_total, 60, "simulated events to be counted")
        kt.wait_until(lambda: province_total() > first, 60, "the counts to keep moving")

        # The ingest command the demo prints works as printed (token included).
        token = re.search(r"Bearer ([A-Za-z0-9_-]+)", text)
        kt.check(token is not None, "a demo token is printed", "a token", text)
        event = kt.random_event(random.Random(5), "incident", "D07-C012-B03",
                                int(time.time() * 1000) - 60_000)
        status, _, body = kt.http("POST", f"http://127.0.0.1:{ingest_port}/v1/incidents",
                                  json.dumps(event).encode(),
                                  {"Authorization": f"Bearer {token.group(1)}",
                                   "Content-Type": "application/json"})
        kt.check_equal((status, json.loads(body)), (202, {"accepted": 1}), "ingest answer")
        kt.wait_until(lambda: kt.get_json(f"{base}/v1/counts?level=board&id=D07-C012-B03")
                      ["windows"]["1h"]["incidents"]["total"] >= 1, 60,
                      "the ingested event to be counted")
        status, headers, page = kt.http("GET", base + "/")
        kt.check_equal(status, 200, "dashboard status")
        kt.check(b"<html" in page.lower(), "the dashboard is an HTML page", "<html", page[:100])
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            kt.check_equal(demo.wait(30), 0, "keng-demo exit status after Ctrl-C")
        finally:
            if demo.poll() is None:
                demo.kill()
            work.cleanup()
    leftovers = subprocess.run(["pgrep", "-f", work.path], capture_output=True).stdout
    kt.check_equal(leftovers, b"", "processes left running after keng-demo stopped")


OWN_REGISTRY = """board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members
X1-A-1,Xóm 1,X1-A,Xã Thử A,X1,Huyện Thử,3,3
X1-A-2,Xóm 2,X1-A,Xã Thử A,X1,Huyện Thử,3,3
X1-B-1,Xóm 1,X1-B,Xã Thử B,X1,Huyện Thử,2,2
X1-B-2,Xóm 2,X1-B,Xã Thử B,X1,Huyện Thử,2,2
"""


def test_demo_on_an_own_registry():
    """keng-demo --registry (make demo REGISTRY=FILE): every program runs on the operator's
    boards, the printed command posts for one of them, and a registry that does not load
    stops the demo before anything starts."""
    work = kt.Workdir()
    bad = work.file("bad.csv")
    with open(bad, "w") as f:
        f.write("not,a,registry\n")
    r = subprocess.run([kt.binary("keng-demo"), "--registry", bad, "--dir", work.file("bad")],
                       capture_output=True, timeout=30)
    kt.check_equal(r.returncode, 78, f"keng-demo with a registry that does not load ({r.stderr!r})")
    kt.check(b"nothing was started" in r.stderr, "it says nothing was started", "said",
             r.stderr)
    registry = work.file("boards.csv")
    with open(registry, "w", encoding="utf-8") as f:
        f.write(OWN_REGISTRY)
    port, ingest_port = kt.free_port(), kt.free_port()
    demo = subprocess.Popen([kt.binary("keng-demo"), "--listen", f"127.0.0.1:{port}",
                             "--ingest-listen", f"127.0.0.1:{ingest_port}", "--rate", "50",
                             "--duration", "120", "--dir", work.file("run"),
                             "--registry", registry],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline().decode()
            if not line or line.startswith("Running for"):
                break
            lines.append(line)
        text = "".join(lines)
        kt.check(registry in text, "the demo names the registry it runs on", registry, text)
        kt.check('"board_id":"X1-A-1"' in text, "the sample command posts for a board of it",
                 "X1-A-1", text)
        base = f"http://127.0.0.1:{port}"
        total = lambda: (lambda c: c["incidents"]["total"] + c["mediations"]["total"])(  # noqa
            kt.get_json(f"{base}/v1/counts?level=district&id=X1")["windows"]["all"])
        kt.wait_until(lambda: total() > 0, 60, "simulated events counted for X1")
        children = kt.get_json(f"{base}/v1/children?level=district&id=X1")
        ids = sorted(c["id"] for c in children["items"])
        kt.check_equal(ids, ["X1-A", "X1-B"], "the communes of the own registry")
        status, _, _ = kt.http("GET", f"{base}/v1/counts?level=district&id=D07")
        kt.check_equal(status, 404, "a district of the built-in registry")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            kt.check_equal(demo.wait(30), 0, "keng-demo exit status after Ctrl-C")
        finally:
            if demo.poll() is None:
                demo.kill()
            work.cleanup()


if __name__ == "__main__":
    kt.main([test_demo_runs_and_counts_move, test_demo_on_an_own_registry])
