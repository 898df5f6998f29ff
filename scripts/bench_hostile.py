#!/usr/bin/python3
"""keng-ingest under hostile load (issue 18), against a keng-broker of its own:

1. BENCH_BAD_CONNECTIONS (10,000) connections at once, each sending a request head that
   announces a 1 MiB body with a wrong token, then the first 16 KiB of that body, and holding
   the connection open: how many were answered 401 before any body was taken, and what
   keng-ingest's peak RSS (VmHWM) was before and after.
2. One gateway flooding (wrk, 16 connections, 100 events a request) far past its rate
   (ingest.rate.events_per_s), while another posts one event at a time at a steady pace:
   the steady gateway's p99 with the flood and without it, in turns, BENCH_RUNS times, and the
   share of the flood answered 429.

Usage: scripts/bench_hostile.py [BUILD_DIR]   (default build; prints a Markdown table)
Environment: BENCH_RUNS (3), BENCH_SECONDS (8 per phase), BENCH_BAD_CONNECTIONS (10000),
BENCH_BROKERS (a cluster with keng's topics, such as scripts/kafka-cluster.sh's, instead of a
keng-broker of its own), BENCH_EXTRA_CONFIG (lines added to keng-ingest's config)."""

import json
import os
import random
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
BIN = os.path.abspath(os.path.join(BUILD, "bin"))
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
BAD = int(os.environ.get("BENCH_BAD_CONNECTIONS", "10000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # MiB
    return 0.0


def new_token(work, name):
    out = subprocess.run([f"{BIN}/keng-ingest", "--new-token", name, "--units", "*", "--tokens",
                          f"{work}/tokens"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def bad_connections(port, n):
    """n connections that announce 1 MiB with a wrong token; returns how many got 401."""
    head = (b"POST /v1/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer not-a-token\r\nContent-Length: 1048576\r\n\r\n")
    body = b"[" + b" " * (16 * 1024 - 1)
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        sel.register(s, selectors.EVENT_WRITE, b"")
    answered = {}
    deadline = time.monotonic() + 60
    while len(answered) < n and time.monotonic() < deadline:
        for key, mask in sel.select(timeout=1):
            s = key.fileobj
            if mask & selectors.EVENT_WRITE:
                try:
                    s.send(head + body)
                except OSError:
                    pass
                sel.modify(s, selectors.EVENT_READ, b"")
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            answered[s] = answered.get(s, b"") + data
            if not data or b"\r\n\r\n" in answered[s]:
                sel.unregister(s)
    got_401 = sum(1 for v in answered.values() if v.startswith(b"HTTP/1.1 401"))
    for s in socks:
        s.close()
    return got_401


def steady_gateway(port, token, seconds, boards, rng):
    """One event a request, one request each 20 ms; returns the latencies in ms."""
    lat = []
    end = time.monotonic() + seconds
    now = int(time.time() * 1000)
    while time.monotonic() < end:
        ev = {"event_id": f"{rng.getrandbits(64):016x}-{len(lat)}", "board_id": rng.choice(boards),
              "occurred_at": now - 3_600_000, "reported_at": now - 3_000_000,
              "category": "THEFT", "severity": "LOW", "resolution": "PENDING",
              "people_involved": 1, "source": "MOBILE_APP"}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/incidents",
                                     data=json.dumps(ev).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
        t0 = time.monotonic()
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            if r.status != 202:
                raise SystemExit(f"bench_hostile: the steady gateway got {r.status}")
        lat.append((time.monotonic() - t0) * 1000)
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t0)))
    return lat


def p99(values):
    return statistics.quantiles(values, n=100)[98]


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if not shutil.which("wrk"):
        raise SystemExit("bench_hostile: wrk is not installed")
    work = tempfile.mkdtemp(prefix="keng-bench-hostile.")
    procs = []
    try:
        brokers = os.environ.get("BENCH_BROKERS")
        if not brokers:
            bootstrap = f"{work}/bootstrap"
            procs.append(subprocess.Popen([f"{BIN}/keng-broker", "--partitions", "4",
                                           "--bootstrap-file", bootstrap],
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(f"{work}/b.log", "w")))
            for _ in range(100):
                if os.path.exists(bootstrap) and os.path.getsize(bootstrap):
                    break
                time.sleep(0.1)
            brokers = open(bootstrap).read().strip()
        flood_token, steady_token = new_token(work, "flood"), new_token(work, "steady")
        with open(f"{work}/ingest.conf", "w") as f:
            f.write("ingest.rate.events_per_s=500\ningest.rate.burst=1000\n"
                    "http.max_connections=12000\n" + os.environ.get("BENCH_EXTRA_CONFIG", ""))
        port = free_port()
        ingest = subprocess.Popen([f"{BIN}/keng-ingest", "--listen", f"127.0.0.1:{port}",
                                   "--brokers", brokers, "--tokens", f"{work}/tokens",
                                   "--config", f"{work}/ingest.conf"],
                                  stderr=open(f"{work}/ingest.log", "w"))
        procs.append(ingest)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        boards = subprocess.run([f"{BIN}/keng-registry", "--write", "-"], capture_output=True,
                                text=True, check=True).stdout.splitlines()[1:]
        boards = [line.split(",")[0] for line in boards]
        with open(f"{work}/boards.txt", "w") as f:
            f.write("\n".join(boards) + "\n")
        rng = random.Random(18)
        steady_gateway(port, steady_token, 1, boards, rng)  # warm up

        hwm_before = vm(ingest.pid, "VmHWM")
        got_401 = bad_connections(port, BAD)
        hwm_after = vm(ingest.pid, "VmHWM")

        unloaded, loaded, share_429 = [], [], []
        for _ in range(RUNS):
            unloaded.append(p99(steady_gateway(port, steady_token, SECONDS, boards, rng)))
            env = dict(os.environ, BENCH_BATCH="100", BENCH_TOKEN=flood_token,
                       BENCH_BOARDS=f"{work}/boards.txt")
            wrk = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{SECONDS + 2:.0f}s", "--timeout",
                                    "10s", "-s", f"{SRC}/scripts/bench_ingest.lua",
                                    f"http://127.0.0.1:{port}/v1/incidents"],
                                   env=env, stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            loaded.append(p99(steady_gateway(port, steady_token, SECONDS, boards, rng)))
            out = wrk.communicate()[0]
            line = next(x for x in out.splitlines() if x.startswith("RESULT"))
            fields = dict(kv.split("=") for kv in line.split()[1:])
            share_429.append(int(fields["non2xx"]) / max(1, int(fields["requests"])))
        label = "Apache Kafka at " + brokers if os.environ.get("BENCH_BROKERS") else "keng-broker"
        print(f"# keng-ingest under hostile load ({os.cpu_count()} cores, {label}, "
              f"medians of {RUNS} runs in turns, {SECONDS:.0f} s each)")
        print("| measure | result |")
        print("|---|---|")
        print(f"| {BAD:,} connections announcing 1 MiB with a wrong token: answered 401 | "
              f"{got_401:,} |")
        print(f"| keng-ingest's peak RSS before and after them | {hwm_before:.1f} MiB, "
              f"{hwm_after:.1f} MiB |")
        u, l = statistics.median(unloaded), statistics.median(loaded)
        print(f"| steady gateway's p99 (one event per request, 50 a second), alone | {u:.2f} ms |")
        print(f"| the same while another gateway floods (wrk -c16, 100 events a request) | "
              f"{l:.2f} ms |")
        pairs = statistics.median(b / a for a, b in zip(unloaded, loaded))
        print(f"| ratio flooded / alone (target <= 2): of the medians; median of each run's | "
              f"{l / u:.2f}; {pairs:.2f} |")
        print(f"| the flood's requests answered 429 | {statistics.median(share_429):.1%} |")
        print()
        print("runs: p99 alone " + ", ".join(f"{x:.2f}" for x in unloaded) + " ms; flooded " +
              ", ".join(f"{x:.2f}" for x in loaded) + " ms")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
