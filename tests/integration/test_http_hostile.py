"""Hostile clients against the real keng-ingest and keng-aggregate (issue 9), on 127.0.0.1 with
bounded connections and time: a pipelined flood that never reads costs either process less
than 16 MiB while /healthz is answered throughout; idle sockets at the connection cap give
way to new clients, silent ones are closed at the first-byte timeout, and refusals are
counted and logged; /v1/stream has its own cap and cuts off readers that fall behind; the
request-smuggling corpus (tests/fuzz/corpus/fuzz_http_request/smuggle_*.http) and the other
lenient framings are refused with 400, 411, 501 or 505; every error answer is JSON in the
program's own shape; ids with a NUL or a byte no id has get 400; an emptied token file is not
loaded by SIGHUP, and '!no-tokens' is.

Each test prints its figures (RSS before and after from /proc/PID/status, statuses)."""

import json
import os
import random
import signal
import socket
import time

import kengtest as kt

HERE = os.path.dirname(os.path.abspath(__file__))
SMUGGLE_DIR = os.path.join(HERE, "..", "fuzz", "corpus", "fuzz_http_request")
MIB = 1024 * 1024
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the aggregator's fixed clock

# What each seed of the request-smuggling corpus must get, and then a closed connection.
SMUGGLE_EXPECTED = {
    "smuggle_chunk_no_crlf.http": 411,
    "smuggle_te_gzip_chunked.http": 501,
    "smuggle_te_identity.http": 501,
    "smuggle_te_and_cl.http": 400,
    "smuggle_te_space_colon.http": 400,
    "smuggle_te_tab_value.http": 400,
    "smuggle_host_space_colon.http": 400,
    "smuggle_bare_lf.http": 400,
    "smuggle_bare_lf_header.http": 400,
    "smuggle_bare_cr.http": 400,
    "smuggle_obs_fold.http": 400,
    "smuggle_http_9_9.http": 505,
    "smuggle_http_1_2.http": 505,
    "smuggle_dup_authorization.http": 400,
    "smuggle_dup_host.http": 400,
    "smuggle_dup_content_length.http": 400,
    "smuggle_query_nul.http": 400,
    "smuggle_target_tab.http": 400,
}


# ---- the programs ----

def rss_kib(pid):
    """(VmRSS, VmHWM) of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def new_token(tokens_path, name, districts):
    import subprocess
    out = subprocess.run([kt.binary("keng-ingest"), "--new-token", name, "--districts", districts,
                          "--tokens", tokens_path], capture_output=True, timeout=10)
    kt.check_equal(out.returncode, 0, f"--new-token exit status ({out.stderr!r})")
    return out.stdout.decode().strip()


class Server:
    """keng-ingest or keng-aggregate on a free port, with config lines and flags."""

    def __init__(self, name, work, broker, config="", args=()):
        self.name = name
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = work.file(f"{name}-{self.port}.conf")
        with open(conf, "w") as f:
            f.write(config)
        if name == "keng-ingest":
            self.tokens_path = work.file(f"tokens-{self.port}")
            self.token = new_token(self.tokens_path, "gw", "*")
            full = ["--tokens", self.tokens_path]
        else:
            full = ["--state-dir", work.file(f"state-{self.port}"), "--group", f"g{self.port}"]
            with open(conf, "a") as f:
                f.write("\nkafka.session.timeout.ms=6000\n")
        full += ["--listen", f"127.0.0.1:{self.port}", "--config", conf] + list(args)
        self.process = kt.Process(name, full, work, env={"KENG_BROKERS": broker.bootstrap,
                                                          "KENG_CLOCK_MS": str(NOW)})
        kt.wait_until(self.healthy, 60, f"{name} /healthz")

    def healthy(self):
        if not self.process.alive():
            raise kt.TestFailure(f"{self.name} exited: {self.process.log_tail()}")
        try:
            return kt.http("GET", self.base + "/healthz", timeout=5)[0] == 200
        except OSError:
            return False

    def healthz(self):
        try:
            return kt.http("GET", self.base + "/healthz", timeout=10)[0]
        except OSError as e:
            return f"error: {e}"

    def metrics(self):
        return kt.metrics(self.base, timeout=10)

    def pid(self):
        return self.process.proc.pid

    def log(self):
        with open(self.process.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def connect(port, rcvbuf=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # Before connect, so the window is small from the handshake on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_response(sock, buf=b""):
    """(status, headers, body, rest) of one response, or None when the connection closed
    first."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers.append((name.strip().lower(), value.strip()))
    length = int(dict(headers).get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def sees_close(sock, rest=b""):
    """True when the server closes with nothing more sent after the answer."""
    if rest:
        return False
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def raw(port, data, timeout=10, wait_close=True):
    """Sends data on a new connection: (status, headers, body, closed after it); with
    wait_close False (an answer on a keep-alive connection) closed is None."""
    with connect(port, timeout=timeout) as s:
        s.sendall(data)
        r = read_response(s)
        if r is None:
            return None, [], b"", True
        return r[0], r[1], r[2], sees_close(s, r[3]) if wait_close else None


def check_error_shape(server, status, body, what):
    """Every error is JSON: keng-ingest's {"errors": [{index, field, message}]}, keng-
    aggregate's {"error": message}."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise kt.TestFailure(f"{server.name} {what}: the {status} body is not JSON: {body!r}")
    if server.name == "keng-ingest":
        ok = (isinstance(answer.get("errors"), list) and answer["errors"] and
              {"index", "field", "message"} <= set(answer["errors"][0]))
        kt.check(ok, f"{what}: keng-ingest's error shape", '{"errors": [{index, field, message}]}',
                 answer)
    else:
        kt.check(isinstance(answer.get("error"), str) and answer["error"],
                 f"{what}: keng-aggregate's error shape", '{"error": "..."}', answer)


# ---- tests ----

def flood(server, path, count, honest):
    """Pipelines count GETs on one connection with a 4 KiB receive buffer and never reads an
    answer, checking /healthz on other connections meanwhile. Returns (bytes sent, RSS before,
    RSS after, peak RSS) in KiB."""
    rss_before, _ = rss_kib(server.pid())
    data = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * count
    s = connect(server.port, rcvbuf=4096)
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 20
    next_check = 0
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.05)
        if time.monotonic() >= next_check:
            honest.append(server.healthz())
            next_check = time.monotonic() + 0.5
    # Give the server time to build what it will of the answers, still checking on it.
    for _ in range(10):
        honest.append(server.healthz())
        time.sleep(0.5)
    rss_after, hwm = rss_kib(server.pid())
    s.close()
    return sent, rss_before, rss_after, hwm


def test_pipelined_flood_memory_bounded(extra_config=""):
    work = kt.Workdir(prefix="keng-hostile-")
    broker = kt.Broker(work, partitions=2)
    servers = []
    try:
        for name, path in (("keng-aggregate", "/"), ("keng-ingest", "/metrics")):
            server = Server(name, work, broker, config=extra_config)
            servers.append(server)
            # Warm up what every server allocates once (the metrics text, the page).
            for _ in range(3):
                kt.http("GET", server.base + path, timeout=10)
            honest = []
            sent, before, after, hwm = flood(server, path, 20000, honest)
            grown = max(after, hwm) - before
            m = server.metrics()
            print(f"{name}: 20000 x GET {path} pipelined, {sent} bytes sent, answers never "
                  f"read: RSS before {before} KiB, after {after} KiB, peak {hwm} KiB, grew "
                  f"{grown} KiB; /healthz on other connections: {len(honest)} checks, statuses "
                  f"{sorted(set(map(str, honest)))}; keng_http_read_pauses_total "
                  f"{m.get('keng_http_read_pauses_total')}", flush=True)
            kt.check(all(h == 200 for h in honest), f"{name}: /healthz answered 200 throughout",
                     "all 200", honest)
            # AddressSanitizer keeps freed memory in quarantine and pads every allocation, so
            # its builds get a looser bound; without backpressure either build grows by
            # hundreds of MiB (920 MiB measured), so both bounds still catch the defect.
            limit = 64 * 1024 if os.environ.get("KENG_TEST_SANITIZE") else 16 * 1024
            kt.check(grown < limit, f"{name}: RSS growth under the flood", f"< {limit} KiB",
                     f"{grown} KiB")
            kt.check(m.get("keng_http_read_pauses_total", 0) >= 1,
                     f"{name}: the flooding connection paused", ">= 1",
                     m.get("keng_http_read_pauses_total"))
            kt.check_equal(server.process.stop(), 0, f"{name} exit status")
    finally:
        kt.close_all([s.process for s in servers if s.process.alive()], broker, work)


def test_connection_cap_eviction_and_first_byte_timeout():
    work = kt.Workdir(prefix="keng-hostile-")
    broker = kt.Broker(work, partitions=2)
    servers = []
    socks = []
    try:
        # 1,024 silent sockets against a cap of 256 (the flag), and against the default.
        for name, args in (("keng-aggregate", ["--max-connections", "256"]),
                           ("keng-ingest", ["--max-connections", "256"]),
                           ("keng-aggregate", [])):
            server = Server(name, work, broker, config="http.first_byte_timeout_ms=30000\n",
                            args=args)
            servers.append(server)
            before, _ = rss_kib(server.pid())
            socks = [connect(server.port) for _ in range(1024)]
            statuses = [server.healthz() for _ in range(5)]
            m = server.metrics()
            after, _ = rss_kib(server.pid())
            cap = args[1] if args else "default"
            print(f"{name} (cap {cap}): 1024 idle sockets open; /healthz {statuses}; evicted "
                  f"{m.get('keng_http_connections_evicted_total')}, refused "
                  f"{m.get('keng_http_connections_refused_total')}, connections "
                  f"{m.get('keng_http_connections')}; RSS {before} -> {after} KiB", flush=True)
            kt.check(all(s == 200 for s in statuses), f"{name} cap {cap}: /healthz under 1024 "
                     "idle sockets", "all 200", statuses)
            if args:
                kt.check(m.get("keng_http_connections_evicted_total", 0) >= 1024 - 256,
                         f"{name}: idle connections evicted", ">= 768",
                         m.get("keng_http_connections_evicted_total"))
                kt.check_equal(m.get("keng_http_connections_refused_total"), 0.0,
                               f"{name}: nothing refused while idle ones could give way")
            for s in socks:
                s.close()
            socks = []

        # The first-byte timeout closes a silent connection long before the idle timeout.
        server = Server("keng-ingest", work, broker, config="http.first_byte_timeout_ms=1500\n")
        servers.append(server)
        s = connect(server.port, timeout=30)
        started = time.monotonic()
        closed = sees_close(s)
        took = time.monotonic() - started
        s.close()
        print(f"keng-ingest: a silent connection closed={closed} after {took:.1f}s "
              f"(http.first_byte_timeout_ms=1500, idle timeout 60s)", flush=True)
        kt.check(closed and took < 30, "silent connection closed at the first-byte timeout",
                 "closed before 30s", f"closed={closed} after {took:.1f}s")
        kt.check(server.metrics().get("keng_http_first_byte_timeouts_total", 0) >= 1,
                 "first-byte timeouts counted", ">= 1", None)

        # With every connection busy, a new one is refused: 503, JSON, counted and logged.
        server = Server("keng-aggregate", work, broker, config="http.max_connections=8\n")
        servers.append(server)
        busy = [connect(server.port) for _ in range(8)]
        for b in busy:
            b.sendall(b"GET /healthz HTTP/1.1\r\n")  # half a request: not idle
        time.sleep(0.5)
        status, headers, body, closed = raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        print(f"keng-aggregate, 8 busy connections at a cap of 8: the 9th got {status} "
              f"{body!r}, closed={closed}", flush=True)
        kt.check_equal(status, 503, "a connection over the cap with none idle")
        kt.check(("retry-after", "1") in headers, "Retry-After on the 503", "1", headers)
        check_error_shape(server, 503, body, "connection cap")
        for b in busy:
            b.close()
        kt.wait_until(lambda: server.metrics().get("keng_http_connections_refused_total", 0) >= 1,
                      10, "the refusal in /metrics")
        kt.check("http server at its limits" in server.log(), "the refusal logged", True,
                 server.process.log_tail())
        for server in servers:
            kt.check_equal(server.process.stop(), 0, f"{server.name} exit status")
    finally:
        for s in socks:
            s.close()
        kt.close_all([s.process for s in servers if s.process.alive()], broker, work)


def test_stream_cap_and_cut_off():
    work = kt.Workdir(prefix="keng-hostile-")
    broker = kt.Broker(work, partitions=2)
    server = None
    streams = []
    try:
        server = Server("keng-aggregate", work, broker, args=["--max-streams", "20"],
                        config="http.stream_max_unsent_bytes=4096\n"
                               "http.stream_sndbuf_bytes=4096\n")
        before, _ = rss_kib(server.pid())
        statuses = []
        for _ in range(60):
            s = connect(server.port, rcvbuf=4096)
            s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            status = int(head.split()[1]) if head else None
            statuses.append(status)
            if status == 200:
                kt.check_equal(head.lower().count("cache-control:"), 1,
                               "Cache-Control lines in the stream's answer")
                streams.append(s)
            else:
                s.close()
        health = [server.healthz() for _ in range(5)]
        m = server.metrics()
        print(f"keng-aggregate, 60 stream clients at --max-streams 20: 200 x "
              f"{statuses.count(200)}, 503 x {statuses.count(503)}; /healthz {health}; "
              f"keng_http_streams {m.get('keng_http_streams')}", flush=True)
        kt.check_equal(statuses.count(200), 20, "streams served")
        kt.check_equal(statuses.count(503), 40, "streams refused with 503")
        kt.check(all(h == 200 for h in health), "/healthz with the streams full", "all 200",
                 health)
        kt.check_equal(m.get("keng_http_streams_refused_total"), 40.0, "streams refused counted")

        # The streams never read: events change the counts every second, and each reader
        # is cut off once it is more than the bound behind.
        rng = random.Random(9)
        boards = [r["board_id"] for r in kt.registry_rows()[:50]]
        deadline = time.monotonic() + 90
        cut = 0
        sent = 0
        while time.monotonic() < deadline:
            batch = [("incident", kt.random_event(rng, "incident", rng.choice(boards),
                                                  NOW - 60_000)) for _ in range(5)]
            kt.produce(broker.bootstrap, kt.messages(batch))
            sent += len(batch)
            cut = server.metrics().get("keng_http_streams_cut_off_total", 0)
            if cut >= 20:
                break
            time.sleep(0.5)
        after, hwm = rss_kib(server.pid())
        m = server.metrics()
        print(f"keng-aggregate: {sent} events produced; streams cut off {cut}, open "
              f"{m.get('keng_http_streams')}; RSS {before} -> {after} KiB (peak {hwm}); "
              f"/healthz {server.healthz()}", flush=True)
        kt.check_equal(cut, 20.0, "non-reading stream readers cut off")
        kt.check_equal(m.get("keng_http_streams"), 0.0, "streams open after the cut-off")
        kt.check_equal(server.process.stop(), 0, "keng-aggregate exit status")
    finally:
        for s in streams:
            s.close()
        kt.close_all([server.process] if server and server.process.alive() else [], broker, work)


def test_strict_framing_and_json_errors():
    work = kt.Workdir(prefix="keng-hostile-")
    broker = kt.Broker(work, partitions=2)
    servers = []
    try:
        config = "http.header_timeout_ms=1000\nhttp.max_body_bytes=4096\n"
        for name in ("keng-ingest", "keng-aggregate"):
            server = Server(name, work, broker, config=config)
            servers.append(server)
            results = []
            for seed in sorted(SMUGGLE_EXPECTED):
                with open(os.path.join(SMUGGLE_DIR, seed), "rb") as f:
                    data = f.read()
                if server.name == "keng-ingest":
                    data = data.replace(b"keng-fuzz-token-all-districts",
                                        server.token.encode())
                status, _, body, closed = raw(server.port, data)
                results.append((seed, status))
                kt.check_equal(status, SMUGGLE_EXPECTED[seed], f"{name}: {seed}")
                kt.check(closed, f"{name}: {seed} closes the connection, nothing smuggled after",
                         True, closed)
                check_error_shape(server, status, body, seed)
            print(f"{name}: smuggling corpus {results}", flush=True)

            # The other errors the server answers by itself.
            big_head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
            # keng-ingest judges the token before the size: the 413 comes with a good one.
            auth = (b"Authorization: Bearer " + server.token.encode() + b"\r\n"
                    if name == "keng-ingest" else b"")
            cases = [
                ("413", b"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\n" + auth +
                        b"Content-Length: 100000\r\n\r\n", 413),
                ("431", big_head, 431),
                ("400 garbage", b"\x00\x01 nonsense\r\n\r\n", 400),
                ("408", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n", 408),
            ]
            for what, data, expected in cases:
                status, _, body, closed = raw(server.port, data, timeout=15)
                print(f"{name}: {what} -> {status} {body[:120]!r}", flush=True)
                kt.check_equal(status, expected, f"{name}: {what}")
                check_error_shape(server, status, body, what)
            # The answers the server gave by itself are counted with the program's own.
            m = server.metrics()
            series = ("keng_ingest_requests_total" if name == "keng-ingest"
                      else "keng_http_requests_total")
            for code in (400, 408, 411, 413, 431, 501, 505):
                kt.check(m.get(f'{series}{{status="{code}"}}', 0) >= 1,
                         f"{name}: {code} counted in /metrics", ">= 1",
                         {k: v for k, v in m.items() if k.startswith(series)})

        # Parameters: a NUL or any byte no id has is a 400, never a shortened id.
        agg = servers[1]
        for query in ("/v1/counts?level=district&id=D04%00junk",
                      "/v1/counts?level=district&id=D04%ffjunk",
                      "/v1/counts?level=district&id=D04%20junk",
                      "/v1/counts?level=district&id=D04;x",
                      "/v1/children?level=district&id=D04%00",
                      "/v1/children?level=district&id=D04%2F..",
                      "/v1/top?level=district&window=24h%00x",
                      "/v1/alerts?status=firing%00x",
                      "/v1/counts?level=district%00&id=D04"):
            status, _, body, _ = raw(agg.port, f"GET {query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
                                     wait_close=False)
            print(f"keng-aggregate: {query} -> {status} {body[:100]!r}", flush=True)
            kt.check_equal(status, 400, f"status of {query}")
            check_error_shape(agg, status, body, query)
        status, _, body, _ = raw(agg.port, b"GET /v1/counts?level=district&id=D04 HTTP/1.1\r\n"
                                           b"Host: localhost\r\n\r\n", wait_close=False)
        kt.check_equal(status, 200, "status of a plain id=D04")
        # keng's one id alphabet (A-Z a-z 0-9 . _ -, up to 31): an id a registry may hold is
        # looked up (404 here: the built-in registry has no such commune), a longer one is 400.
        for query, expected in (("/v1/counts?level=commune&id=D01_C001", 404),
                                ("/v1/counts?level=commune&id=40.17542", 404),
                                ("/v1/counts?level=commune&id=" + "a" * 32, 400)):
            status, _, body, _ = raw(agg.port, f"GET {query} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                     .encode(), wait_close=False)
            kt.check_equal(status, expected, f"status of {query} ({body[:120]!r})")
        for server in servers:
            kt.check_equal(server.process.stop(), 0, f"{server.name} exit status")
    finally:
        kt.close_all([s.process for s in servers if s.process.alive()], broker, work)


def test_emptied_token_file_is_not_loaded():
    work = kt.Workdir(prefix="keng-hostile-")
    broker = kt.Broker(work, partitions=2)
    server = None
    try:
        server = Server("keng-ingest", work, broker)
        rng = random.Random(4)
        board = kt.registry_rows()[0]["board_id"]

        def post():
            ev = kt.random_event(rng, "incident", board, NOW - 60_000)
            body = json.dumps(ev).encode()
            data = (f"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                    f"{server.token}\r\nContent-Type: application/json\r\nContent-Length: "
                    f"{len(body)}\r\n\r\n").encode() + body
            return raw(server.port, data, timeout=20, wait_close=False)[0]

        kt.check_equal(post(), 202, "a post with the token")
        open(server.tokens_path, "w").close()  # an editor's truncating save
        server.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: "the token file holds no token" in server.log(), 10,
                      "the refused reload in the log")
        line = [ln for ln in server.log().splitlines() if "the token file holds no token" in ln]
        after_empty = post()
        tokens_gauge = server.metrics().get("keng_ingest_tokens")
        print(f"keng-ingest: emptied token file + SIGHUP -> log {line[-1]!r}; a post then got "
              f"{after_empty}; keng_ingest_tokens {tokens_gauge}", flush=True)
        kt.check("level=error" in line[-1], "the refused reload is logged at level error",
                 "level=error", line[-1])
        kt.check_equal(after_empty, 202, "a post after the emptied file's reload")

        with open(server.tokens_path, "w") as f:
            f.write("# maintenance: no gateway may post\n!no-tokens\n")
        server.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: post() == 401, 10, "401 once '!no-tokens' is loaded")
        print("keng-ingest: '!no-tokens' + SIGHUP -> a post got 401", flush=True)
        kt.check_equal(server.process.stop(), 0, "keng-ingest exit status")
    finally:
        kt.close_all([server.process] if server and server.process.alive() else [], broker, work)


def check_security_headers(name, what, headers, dashboard=False):
    """nosniff, no referrer, no framing and a Content-Security-Policy on every answer: the
    dashboard's lets it load only from keng itself; every other answer's lets nothing load."""
    h = dict(headers)
    kt.check_equal(h.get("x-content-type-options"), "nosniff", f"{name} {what}: nosniff")
    kt.check_equal(h.get("referrer-policy"), "no-referrer", f"{name} {what}: Referrer-Policy")
    csp = h.get("content-security-policy", "")
    kt.check("frame-ancestors 'none'" in csp, f"{name} {what}: no framing",
             "frame-ancestors 'none'", csp)
    wanted = "default-src 'self'" if dashboard else "default-src 'none'"
    kt.check(wanted in csp, f"{name} {what}: what may load", wanted, csp)
    kt.check_equal(sum(1 for k, _ in headers if k == "content-security-policy"), 1,
                   f"{name} {what}: one Content-Security-Policy")


def test_security_headers_on_every_answer():
    work = kt.Workdir(prefix="keng-headers-")
    broker = kt.Broker(work, partitions=2)
    servers = []
    try:
        for name in ("keng-ingest", "keng-aggregate"):
            server = Server(name, work, broker, config="http.max_body_bytes=4096\n")
            servers.append(server)
            get = [("/healthz", False), ("/readyz", False), ("/metrics", False),
                   ("/no-such-path", False)]
            if name == "keng-aggregate":
                get += [("/", True), ("/v1/counts?level=district&id=D04", False),
                        ("/v1/counts?level=district&id=D99", False)]
            for path, dashboard in get:
                status, headers, _, _ = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                            .encode(), wait_close=False)
                check_security_headers(name, f"GET {path} ({status})", headers, dashboard)
            # Answers the server gives by itself, before any handler.
            for what, data in (("413", b"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\n"
                                       b"Content-Length: 100000\r\n\r\n"),
                               ("400", b"\x00\x01 nonsense\r\n\r\n")):
                status, headers, _, _ = raw(server.port, data)
                check_security_headers(name, f"the server's own {what} ({status})", headers)
            if name == "keng-ingest":
                status, headers, _, _ = raw(server.port, b"POST /v1/incidents HTTP/1.1\r\n"
                                            b"Host: localhost\r\nContent-Type: application/json\r\n"
                                            b"Content-Length: 2\r\n\r\n[]", wait_close=False)
                check_security_headers(name, f"POST without a token ({status})", headers)
            else:
                with connect(server.port) as s:
                    s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        buf += s.recv(65536)
                    lines = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                    headers = [(k.strip().lower(), v.strip()) for k, v in
                               (line.split(":", 1) for line in lines[1:])]
                    check_security_headers(name, "the stream", headers)
            print(f"{name}: security headers on every answer", flush=True)
        for server in servers:
            kt.check_equal(server.process.stop(), 0, f"{server.name} exit status")
    finally:
        kt.close_all([s.process for s in servers if s.process.alive()], broker, work)


def head_only(port, head, timeout=5):
    """Sends a request head and no body; returns (status, whether '100 Continue' came first,
    closed after the answer), or status None when nothing came within timeout."""
    with connect(port, timeout=timeout) as s:
        s.sendall(head)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf or buf.startswith(b"HTTP/1.1 100") and \
                    buf.count(b"\r\n\r\n") < 2:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except socket.timeout:
            return None, False, False
        continued = buf.startswith(b"HTTP/1.1 100")
        if continued:
            buf = buf.split(b"\r\n\r\n", 1)[1]
        r = read_response(s, buf)
        if r is None:
            return None, continued, True
        return r[0], continued, sees_close(s, r[3])


def test_ingest_checks_before_it_reads():
    """keng-ingest judges a request by its head: a missing or wrong token gets 401 before any
    of the body is read and before 100 Continue, and the connection closes; a gateway over
    its rate gets 429 with Retry-After while another posts on; and the bodies buffered
    across connections are bounded (503 with Retry-After at the bound)."""
    work = kt.Workdir(prefix="keng-precheck-")
    broker = kt.Broker(work, partitions=2)
    server = None
    try:
        server = Server("keng-ingest", work, broker,
                        config="ingest.rate.events_per_s=20\ningest.rate.burst=40\n"
                               "http.max_body_bytes=80000\nhttp.max_buffered_bytes=100000\n"
                               "http.body_timeout_ms=3000\n")
        for what, auth, expect in (("no token", b"", True), ("a wrong token", b"Authorization: "
                                   b"Bearer wrong-token\r\n", True),
                                   ("a wrong token, no Expect", b"Authorization: Bearer "
                                    b"wrong-token\r\n", False)):
            head = (b"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                    b"\r\nContent-Length: 60000\r\n" + auth +
                    (b"Expect: 100-continue\r\n" if expect else b"") + b"\r\n")
            status, continued, closed = head_only(server.port, head)
            print(f"keng-ingest: {what}, 60 kB announced, none sent -> {status} "
                  f"continue={continued} closed={closed}", flush=True)
            kt.check_equal((status, continued, closed), (401, False, True),
                           f"{what}: (status, 100 Continue, closed) before any body byte")

        # Two heads of 60 kB with a good token: the second is over the 100 kB bound.
        good = (b"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 60000\r\nAuthorization: Bearer " + server.token.encode() +
                b"\r\n\r\n")
        with connect(server.port) as first:
            first.sendall(good)
            time.sleep(0.3)
            status, headers, _, _ = raw(server.port, good, timeout=5)
            kt.check_equal(status, 503, "a body past http.max_buffered_bytes")
            kt.check("retry-after" in dict(headers), "Retry-After on the 503", "present", headers)

        # One gateway over its rate, another within it.
        other_token = new_token(server.tokens_path, "other", "*")
        server.process.signal(signal.SIGHUP)
        time.sleep(0.5)
        rows = kt.registry_rows()
        rng = random.Random(18)

        def post(token, n):
            evs = [kt.random_event(rng, "incident", rng.choice(rows)["board_id"],
                                   NOW - 3_600_000) for _ in range(n)]
            return kt.http("POST", server.base + "/v1/incidents", json.dumps(evs).encode(),
                           {"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"}, timeout=30)
        statuses = []
        for _ in range(6):
            t0 = time.monotonic()
            status, headers, _ = post(server.token, 20)
            waited = time.monotonic() - t0
            statuses.append(status)
            if status == 429:
                kt.check("Retry-After" in headers or "retry-after" in headers,
                         "Retry-After on a 429", "present", headers)
                # Held back as long as the gateway would wait for a token (up to
                # ingest.rate.refusal_delay_ms, 1 s): a flooder cannot spin the loop.
                kt.check(waited >= 0.5, "a 429 is answered after a delay (a tarpit)",
                         ">= 0.5 s", f"{waited:.3f} s")
        print(f"keng-ingest: a gateway posting 6 x 20 events at once -> {statuses}", flush=True)
        # The refusals are logged as the first line and then a count, not a line each.
        with open(server.process.log_path, "rb") as f:
            lines = [x for x in f.read().decode().splitlines()
                     if "request refused before its body" in x and "status=429" in x]
        kt.check_equal(len(lines), 1, "one log line for the 429s within 10 s "
                       f"({statuses.count(429)} of them)")
        kt.check(429 in statuses and 202 in statuses, "the flooding gateway gets 202 within its "
                 "burst and 429 past it", "both", statuses)
        kt.check_equal(post(other_token, 5)[0], 202, "another gateway meanwhile")
        m = server.metrics()
        kt.check(m.get('keng_ingest_rate_limited_total{gateway="gw"}', 0) >= 1,
                 "429s counted per gateway", ">= 1",
                 {k: v for k, v in m.items() if "rate_limited" in k})
        kt.check_equal(server.process.stop(), 0, "keng-ingest exit status")
    finally:
        kt.close_all([server.process] if server and server.process.alive() else [], broker, work)


def test_host_names_against_dns_rebinding():
    """A page that rebinds a name of its own to 127.0.0.1 reads nothing: a Host that is not
    one of the server's names gets 421 before the handler (and before any body), with the key
    to set named; IP literals, localhost and the configured names pass. http.allowed_hosts
    replaces the default names, and '*' turns the check off."""
    work = kt.Workdir(prefix="keng-hosts-")
    broker = kt.Broker(work, partitions=2)
    servers = []
    figures = []
    try:
        for name in ("keng-ingest", "keng-aggregate"):
            extra = "advertised.url=http://keng-agg.example:8080/\n" if name == "keng-aggregate" else ""
            server = Server(name, work, broker, config=extra)
            servers.append(server)
            cases = [(f"127.0.0.1:{server.port}", 200), (f"[::1]:{server.port}", 200),
                     (f"localhost:{server.port}", 200), ("LOCALHOST.", 200),
                     (f"rebind.attacker.example:{server.port}", 421), ("keng.example", 421)]
            if name == "keng-aggregate":
                cases.append(("keng-agg.example:8080", 200))
            for host, expected in cases:
                path = "/metrics" if name == "keng-aggregate" else "/healthz"
                status, _, body, _ = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                                         "\r\n".encode(), wait_close=False)
                kt.check_equal(status, expected, f"{name}: GET {path} with Host: {host}")
                if expected == 421:
                    check_error_shape(server, status, body, f"{name}: 421 for Host {host}")
                    kt.check(b"http.allowed_hosts" in body, f"{name}: the 421 names the key",
                             "http.allowed_hosts", body[:300])
                    kt.check(b"# TYPE" not in body, f"{name}: nothing of the answer leaks", "",
                             body[:300])
            figures.append(f"{name}: {len(cases)} Host names, "
                           f"{sum(1 for _, e in cases if e == 421)} refused with 421")
        # An explicit list replaces the defaults; * turns the check off.
        only = Server("keng-aggregate", work, broker, config="http.allowed_hosts=keng.example\n")
        servers.append(only)
        for host, expected in (("keng.example", 200), ("KENG.example:443", 200),
                               ("localhost", 421), (f"127.0.0.1:{only.port}", 200)):
            status = raw(only.port, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
                         wait_close=False)[0]
            kt.check_equal(status, expected, f"http.allowed_hosts=keng.example: Host {host}")
        anyone = Server("keng-ingest", work, broker, config="http.allowed_hosts=*\n")
        servers.append(anyone)
        status = raw(anyone.port, b"GET /healthz HTTP/1.1\r\nHost: rebind.example\r\n\r\n",
                     wait_close=False)[0]
        kt.check_equal(status, 200, "http.allowed_hosts=*: any Host")
        print("FIGURES hosts: " + "; ".join(figures), flush=True)
        servers, done = [], servers
        for s in done:
            s.process.kill()
    finally:
        kt.close_all([s.process for s in servers], broker, work)


if __name__ == "__main__":
    kt.main([
        test_pipelined_flood_memory_bounded,
        test_connection_cap_eviction_and_first_byte_timeout,
        test_stream_cap_and_cut_off,
        test_strict_framing_and_json_errors,
        test_emptied_token_file_is_not_loaded,
        test_security_headers_on_every_answer,
        test_ingest_checks_before_it_reads,
        test_host_names_against_dns_rebinding,
    ])
