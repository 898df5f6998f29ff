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


if __name__ == "__main__":
    kt.main([test_demo_runs_and_counts_move])
