"""keng-ingest against a real broker: 202 only for events that Kafka holds (read back and
decoded), every invalid request refused with its errors and nothing produced, 503 with
Retry-After while the broker is down and 202 again once it is back, no 202'd event lost when
the gateway is killed under load, keep-alive with pipelined requests answered in order, and
token rotation with SIGHUP."""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid

import kengtest as kt

CONFIG = """\
ingest.deadline_ms=2000
http.header_timeout_ms=1000
http.body_timeout_ms=1000
http.max_body_bytes=65536
ingest.max_events=50
"""


def new_token(tokens_path, name, districts):
    out = subprocess.run([kt.binary("keng-ingest"), "--new-token", name, "--districts", districts,
                          "--tokens", tokens_path], capture_output=True, timeout=10)
    kt.check_equal(out.returncode, 0, f"--new-token exit status ({out.stderr!r})")
    token = out.stdout.decode().strip()
    kt.check(len(token) >= 32, "a printed token", "at least 32 characters", token)
    return token


class Ingest:
    """A broker and a keng-ingest in front of it, with a token for every district and one
    for D01 only."""

    def __init__(self, config=CONFIG, broker=None, work=None):
        self.work = work or kt.Workdir(prefix="keng-ingest-test-")
        self.broker = broker or kt.Broker(self.work, partitions=2)
        self.tokens_path = self.work.file("tokens")
        self.token_all = new_token(self.tokens_path, "province-gw", "*")
        self.token_d01 = new_token(self.tokens_path, "d01-gw", "D01")
        self.config_path = self.work.file("ingest.conf")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.port = kt.free_port()
        self.start()

    def start(self):
        self.process = kt.Process("keng-ingest", [
            "--listen", f"127.0.0.1:{self.port}", "--brokers", self.broker.bootstrap,
            "--tokens", self.tokens_path, "--config", self.config_path], self.work,
            env={"KENG_LOG_LEVEL": "debug"})
        kt.wait_until(lambda: kt.http("GET", self.url("/healthz"), timeout=2)[0] == 200, 20,
                      "keng-ingest /healthz")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, kind, body, token=None, content_type="application/json", timeout=20):
        headers = {"Content-Type": content_type} if content_type else {}
        if token is not False:
            headers["Authorization"] = f"Bearer {token or self.token_all}"
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        status, hdrs, data = kt.http("POST", self.url(f"/v1/{kind}s"), body=body,
                                     headers=headers, timeout=timeout)
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = data
        return status, hdrs, answer

    def metrics(self):
        status, _, body = kt.http("GET", self.url("/metrics"))
        kt.check_equal(status, 200, "GET /metrics status")
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def close(self, expect_clean=True):
        try:
            if self.process.alive():
                rc = self.process.stop()
                if expect_clean:
                    kt.check_equal(rc, 0, f"keng-ingest exit status; log: {self.process.log_tail()}")
        finally:
            self.broker.stop()
            self.work.cleanup()


BOARDS = None


def boards_by_district():
    global BOARDS
    if BOARDS is None:
        BOARDS = {}
        for row in kt.registry_rows():
            BOARDS.setdefault(row["district_id"], []).append(row["board_id"])
    return BOARDS


def events(rng, kind, n, districts=("D01", "D02", "D07")):
    now = int(time.time() * 1000)
    boards = boards_by_district()
    out = []
    for _ in range(n):
        board = rng.choice(boards[rng.choice(districts)])
        occurred = now - rng.randint(2 * 3600_000, 30 * 86400_000)
        out.append(kt.random_event(rng, kind, board, occurred, reported_ms=occurred + 1000))
    return out


def read_back(bootstrap, kind):
    """{event_id: (key, decoded record)} of the kind's topic."""
    got = {}
    for m in kt.consume_all(bootstrap, f"antt.{kind}s"):
        record = kt.decode_framed(kind, m.value())
        got[record["event_id"]] = (m.key().decode(), record)
    return got


def expected_record(kind, ev):
    """What the decoder gives back for an event sent in its JSON form with epoch-ms times:
    absent optional fields are null. (kt.to_avro_record turns times into datetimes for the
    Avro writer; the reader gives epoch ms.)"""
    record = dict(ev)
    record.setdefault("group_id", None)
    record.setdefault("summary", None)
    if kind == "incident":
        record.setdefault("location", None)
        record.setdefault("police_case_id", None)  # Incident v2, which keng writes
    else:
        record.setdefault("related_incident_id", None)
    return record


def check_in_kafka(bootstrap, kind, sent, exact=True):
    got = read_back(bootstrap, kind)
    for ev in sent:
        kt.check(ev["event_id"] in got, "event in Kafka", ev["event_id"], sorted(got)[:5])
        key, record = got[ev["event_id"]]
        kt.check_equal(key, ev["board_id"], f"key of {ev['event_id']}")
        if exact:
            kt.check_equal(record, expected_record(kind, ev), f"record {ev['event_id']}")
    return got


# ---- raw HTTP, for what urllib cannot do ----

def read_response(sock, buf):
    """Reads one response from sock (buf holds bytes already read). Returns
    (status, headers, body, rest) or None when the connection closed first."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length], rest[length:]


def request_bytes(path, body, token, content_type="application/json"):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


# ---- tests ----

def test_valid_single_and_batch():
    ing = Ingest()
    try:
        rng = random.Random(11)
        single = events(rng, "incident", 1)
        status, _, answer = ing.post("incident", single[0])
        kt.check_equal((status, answer), (202, {"accepted": 1}), "single incident")

        batch = events(rng, "incident", 40)
        status, _, answer = ing.post("incident", batch,
                                     content_type="application/json; charset=UTF-8")
        kt.check_equal((status, answer), (202, {"accepted": 40}), "batch of incidents")

        mediations = events(rng, "mediation", 25)
        status, _, answer = ing.post("mediation", mediations)
        kt.check_equal((status, answer), (202, {"accepted": 25}), "batch of mediations")

        # reported_at is the gateway's time when the event does not say.
        no_reported = events(rng, "incident", 1)[0]
        del no_reported["reported_at"]
        before = int(time.time() * 1000)
        status, _, _ = ing.post("incident", [no_reported])
        after = int(time.time() * 1000)
        kt.check_equal(status, 202, "incident without reported_at")

        # RFC 3339 times are taken too.
        rfc = events(rng, "mediation", 1)[0]
        rfc["occurred_at"] = "2025-03-01T21:15:00+07:00"
        rfc["reported_at"] = "2025-03-01T21:16:00.500+07:00"
        status, _, _ = ing.post("mediation", rfc)
        kt.check_equal(status, 202, "mediation with RFC 3339 times")

        got = check_in_kafka(ing.broker.bootstrap, "incident", single + batch)
        kt.check_equal(len(got), 42, "incidents in Kafka")
        _, record = got[no_reported["event_id"]]
        kt.check(before <= record["reported_at"] <= after, "reported_at filled with now",
                 (before, after), record["reported_at"])
        got = check_in_kafka(ing.broker.bootstrap, "mediation", mediations)
        kt.check_equal(got[rfc["event_id"]][1]["occurred_at"], 1740838500000, "RFC 3339 occurred_at")
        kt.check_equal(got[rfc["event_id"]][1]["reported_at"], 1740838560500, "RFC 3339 reported_at")

        m = ing.metrics()
        kt.check_equal(m.get('keng_ingest_requests_total{status="202"}'), 5.0, "202s counted")
        kt.check_equal(m.get("keng_ingest_events_accepted_total"), 68.0, "events accepted")
        kt.check_equal(m.get("keng_ingest_delivery_seconds_count"), 5.0, "delivery histogram count")
        kt.check("keng_ingest_producer_queue_depth" in m, "queue depth exported", True, sorted(m))
        kt.check("keng_http_connections" in m, "connections exported", True, sorted(m))
    finally:
        ing.close()


def test_invalid_requests_produce_nothing():
    ing = Ingest()
    try:
        rng = random.Random(12)
        good = events(rng, "incident", 1)[0]

        def bad(**changes):
            ev = dict(good, event_id=str(uuid.uuid4()))
            for k, v in changes.items():
                if v is KeyError:
                    del ev[k]
                else:
                    ev[k] = v
            return ev

        future = int(time.time() * 1000) + 3600_000
        batch = [
            good,
            bad(severity="HUGE"),
            bad(event_id=KeyError),
            bad(occurred_at=future),
            bad(occurred_at=900000000000),
            bad(people_involved="two"),
            bad(board_id="D01-C999-B99"),
            bad(group_id="G" * 60),
            bad(summary=12),
            bad(category="ALIENS"),
            bad(colour="red"),
            bad(event_id="not an id!"),
            bad(location={"lat": 200, "lon": 105}),
            bad(resolution=KeyError),
            "not an object",
        ]
        expected = [(1, "severity"), (2, "event_id"), (3, "occurred_at"), (4, "occurred_at"),
                    (5, "people_involved"), (6, "board_id"), (7, "group_id"), (8, "summary"),
                    (9, "category"), (10, "colour"), (11, "event_id"), (12, "location.lat"),
                    (13, "resolution"), (14, "")]
        status, _, answer = ing.post("incident", batch)
        kt.check_equal(status, 400, "status of a batch with invalid events")
        kt.check_equal([(e["index"], e["field"]) for e in answer["errors"]], expected,
                       "errors (index, field)")
        for e in answer["errors"]:
            kt.check(len(e["message"]) > 10, "each error has a message", "a sentence", e)

        def refused(what, status_expected, body, **kw):
            status, headers, answer = ing.post("incident", body, **kw)
            kt.check_equal(status, status_expected, f"status for {what}")
            kt.check(isinstance(answer, dict) and answer.get("errors"), f"errors for {what}",
                     "a list", answer)
            return headers, answer

        _, answer = refused("truncated JSON", 400, json.dumps([good])[:-7].encode())
        msg = answer["errors"][0]["message"]
        kt.check("line 1" in msg and "column" in msg, "line and column of truncated JSON",
                 "line 1, column N", msg)
        refused("10000 nested arrays", 400, b"[" * 10000 + b"]" * 10000)
        refused("a huge integer", 400, json.dumps(good).replace(
            f'"people_involved": {good["people_involved"]}',
            '"people_involved": 123456789012345678901234567890').encode())
        refused("a huge real", 400, b'{"location": {"lat": 1e999, "lon": 1}}')
        refused("invalid UTF-8", 400, json.dumps(dict(good, summary="X")).encode().replace(
            b'"X"', b'"\xc3\x28\xff"'))
        refused("a duplicate key", 400, b'{"event_id": "a", "event_id": "b"}')
        refused("an empty body", 400, b"")
        refused("an empty array", 400, b"[]")
        refused("more events than ingest.max_events", 413, events(rng, "incident", 51))
        refused("text/plain", 415, [good], content_type="text/plain")
        refused("no content type", 415, [good], content_type=None)
        refused("a Latin-1 charset", 415, [good], content_type="application/json; charset=latin1")
        headers, _ = refused("no token", 401, [good], token=False)
        kt.check(headers.get("WWW-Authenticate", "").startswith("Bearer"),
                 "WWW-Authenticate on 401", "Bearer ...", headers)
        # One character changed; a token can itself start with "x" (1 in 64).
        wrong = ("y" if ing.token_all[0] == "x" else "x") + ing.token_all[1:]
        headers, _ = refused("a wrong token", 401, [good], token=wrong)
        kt.check(headers.get("WWW-Authenticate", "").startswith("Bearer"),
                 "WWW-Authenticate on 401", "Bearer ...", headers)

        d01 = boards_by_district()["D01"][0]
        d02 = boards_by_district()["D02"][0]
        _, answer = refused("a board outside the token's districts", 403,
                            [dict(good, board_id=d01), dict(good, board_id=d02,
                                                            event_id=str(uuid.uuid4()))],
                            token=ing.token_d01)
        kt.check_equal([(e["index"], e["field"]) for e in answer["errors"]], [(1, "board_id")],
                       "403 errors")
        kt.check(d02 in answer["errors"][0]["message"], "403 names the board", d02,
                 answer["errors"][0]["message"])

        # Over http.max_body_bytes: 413 from the Content-Length, before the body is read.
        with socket.create_connection(("127.0.0.1", ing.port), timeout=10) as s:
            s.sendall(request_bytes("/v1/incidents", b"", ing.token_all).replace(
                b"Content-Length: 0", b"Content-Length: 200000") + b"[" * 1000)
            r = read_response(s, b"")
            kt.check(r is not None, "an answer to an oversized body", "413", None)
            kt.check_equal(r[0], 413, "status of an oversized body")
        # A chunked body is refused at once: gateways send Content-Length (411, JSON).
        with socket.create_connection(("127.0.0.1", ing.port), timeout=10) as s:
            chunk = b" " * 30000
            s.sendall((f"POST /v1/incidents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                       f"{ing.token_all}\r\nContent-Type: application/json\r\n"
                       f"Transfer-Encoding: chunked\r\n\r\n").encode())
            try:
                for _ in range(3):
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                pass
            r = read_response(s, b"")
            kt.check_equal(r[0] if r else None, 411, "status of a chunked body")
            kt.check(json.loads(r[2]).get("errors"), "a JSON errors list with the 411", "errors",
                     r[2])

        # A slow client: half the headers, then nothing. 408 or a close after
        # http.header_timeout_ms (1 s); the socket's own timeout only bounds the test.
        with socket.create_connection(("127.0.0.1", ing.port), timeout=15) as s:
            s.sendall(b"POST /v1/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            try:
                r = read_response(s, b"")
            except (ConnectionResetError, socket.timeout) as e:
                if isinstance(e, socket.timeout):
                    raise kt.TestFailure("a slow client was neither answered nor closed")
                r = None
            kt.check(r is None or r[0] == 408, "slow client gets 408 or a close", 408,
                     r and r[0])

        m = ing.metrics()
        kt.check_equal(m.get("keng_ingest_events_accepted_total"), 0.0, "events accepted")
        kt.check(m.get('keng_ingest_events_rejected_total{reason="invalid"}', 0) >= 15,
                 "rejected events counted", ">= 15", m)
        kt.check_equal(m.get('keng_ingest_requests_total{status="401"}'), 2.0, "401s counted")
        kt.check_equal(len(kt.consume_all(ing.broker.bootstrap, "antt.incidents")), 0,
                       "incidents in Kafka after refused requests")
        kt.check_equal(len(kt.consume_all(ing.broker.bootstrap, "antt.mediations")), 0,
                       "mediations in Kafka after refused requests")
    finally:
        ing.close()


def test_routes_and_methods():
    ing = Ingest()
    try:
        status, _, body = kt.http("GET", ing.url("/healthz"))
        kt.check_equal((status, json.loads(body)["status"]), (200, "ok"), "/healthz")
        kt.check_equal(kt.http("GET", ing.url("/nope"))[0], 404, "unknown path")
        kt.check_equal(kt.http("GET", ing.url("/v1/incidents"))[0], 405, "GET on a POST route")
        out = subprocess.run([kt.binary("keng-ingest"), "--help"], capture_output=True, timeout=10)
        kt.check_equal(out.returncode, 0, "--help exit status")
        kt.check(b"SIGHUP" in out.stdout and b"--tokens" in out.stdout, "--help documents SIGHUP",
                 True, out.stdout[:300])
        out = subprocess.run([kt.binary("keng-ingest"), "--version"], capture_output=True,
                             timeout=10)
        kt.check(out.returncode == 0 and out.stdout.startswith(b"keng-ingest "), "--version",
                 "keng-ingest X.Y.Z", out.stdout)
        out = subprocess.run([kt.binary("keng-ingest"), "--bogus"], capture_output=True,
                             timeout=10)
        kt.check_equal(out.returncode, 64, "exit status for an unknown flag")
    finally:
        ing.close()


def test_keepalive_and_pipelining():
    ing = Ingest()
    try:
        rng = random.Random(13)
        first, third = events(rng, "incident", 1), events(rng, "incident", 2)
        data = (request_bytes("/v1/incidents", json.dumps(first).encode(), ing.token_all)
                + request_bytes("/v1/incidents", b'{"event_id": 1}', ing.token_all)
                + request_bytes("/v1/incidents", json.dumps(third).encode(), ing.token_all))
        with socket.create_connection(("127.0.0.1", ing.port), timeout=20) as s:
            s.sendall(data)
            buf = b""
            answers = []
            for _ in range(3):
                r = read_response(s, buf)
                kt.check(r is not None, "three answers on one connection", 3, len(answers))
                status, _, body, buf = r
                answers.append((status, json.loads(body)))
            kt.check_equal([a[0] for a in answers], [202, 400, 202], "statuses, in order")
            kt.check_equal(answers[0][1], {"accepted": 1}, "first answer")
            kt.check_equal(answers[2][1], {"accepted": 2}, "third answer")
            # The connection stays open for a fourth request.
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            r = read_response(s, buf)
            kt.check_equal(r[0] if r else None, 200, "a later request on the same connection")
        check_in_kafka(ing.broker.bootstrap, "incident", first + third)
    finally:
        ing.close()


def test_broker_down_then_up():
    ing = Ingest()
    try:
        rng = random.Random(14)
        warm = events(rng, "incident", 1)
        kt.check_equal(ing.post("incident", warm)[0], 202, "a request before the broker goes down")
        ing.broker.down(1)
        pending = [events(rng, "incident", 10) for _ in range(3)]
        for batch in pending:
            started = time.monotonic()
            status, headers, answer = ing.post("incident", batch)
            elapsed = time.monotonic() - started
            kt.check_equal(status, 503, f"status while the broker is down ({answer})")
            kt.check(headers.get("Retry-After", "").isdigit(), "Retry-After on 503", "seconds",
                     headers)
            kt.log(f"503 after {elapsed:.2f}s (deadline 2s)")
        ing.broker.up(1)
        deadline = time.monotonic() + 60
        for batch in pending:
            while True:
                status, headers, _ = ing.post("incident", batch)
                if status == 202:
                    break
                kt.check(status == 503 and time.monotonic() < deadline,
                         "202 again once the broker is back", 202, status)
                time.sleep(float(headers.get("Retry-After", "1")))
        check_in_kafka(ing.broker.bootstrap, "incident",
                       warm + [ev for batch in pending for ev in batch])
        m = ing.metrics()
        kt.check(m.get('keng_ingest_requests_total{status="503"}', 0) >= 3, "503s counted",
                 ">= 3", m.get('keng_ingest_requests_total{status="503"}'))
    finally:
        ing.close()


def test_crash_under_load():
    # The embedded broker keeps only the newest 5 MiB of each partition and drops older
    # messages without a word, so the load is paced and capped: at most max_events events
    # (about 1.5 MiB per partition) whatever the machine's speed, still in flight when the
    # gateway is killed at 2.5 s.
    max_events = 16000
    batch_size = 20
    batches_per_second = 40  # per sender: 4 senders x 40 x 20 = 3,200 events/s
    ing = Ingest()
    try:
        accepted = []
        lock = threading.Lock()
        budget = [max_events]
        stop_at = time.monotonic() + 5

        def take_budget():
            with lock:
                if budget[0] < batch_size:
                    return False
                budget[0] -= batch_size
                return True

        def sender(seed):
            rng = random.Random(seed)
            next_send = time.monotonic()
            while time.monotonic() < stop_at and take_budget():
                time.sleep(max(0.0, next_send - time.monotonic()))
                next_send += 1.0 / batches_per_second
                batch = events(rng, "incident", batch_size)
                try:
                    status, _, _ = ing.post("incident", batch, timeout=10)
                except OSError:
                    status = None  # the gateway is gone
                if status == 202:
                    with lock:
                        accepted.extend(batch)
                elif status is None:
                    time.sleep(0.05)

        threads = [threading.Thread(target=sender, args=(100 + i,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.5)
        ing.process.proc.send_signal(signal.SIGKILL)
        ing.process.proc.wait(10)
        for t in threads:
            t.join(30)
        kt.check(not any(t.is_alive() for t in threads), "senders finished", True, False)
        kt.log(f"{len(accepted)} events got a 202 before the kill")
        kt.check(len(accepted) > 0, "some events accepted before the kill", "> 0", 0)
        got = read_back(ing.broker.bootstrap, "incident")
        missing = [ev["event_id"] for ev in accepted if ev["event_id"] not in got]
        kt.check_equal(missing, [], "202'd events missing from Kafka")
        ing.process.log_file.close()
    finally:
        ing.close(expect_clean=False)


def test_token_rotation_with_sighup():
    ing = Ingest()
    try:
        rng = random.Random(15)
        token = new_token(ing.tokens_path, "late-gw", "D07")
        batch = events(rng, "incident", 2, districts=("D07",))
        kt.check_equal(ing.post("incident", batch, token=token)[0], 401, "a token not loaded yet")
        ing.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: ing.post("incident", batch, token=token)[0] == 202, 10,
                      "the new token after SIGHUP")
        kt.check_equal(ing.post("incident", events(rng, "incident", 1, districts=("D01",)),
                                token=token)[0], 403, "the new token's districts")
        # A broken file leaves the tokens in use.
        with open(ing.tokens_path, "a") as f:
            f.write("not-a-hash gw D01\n")
        ing.process.signal(signal.SIGHUP)
        time.sleep(0.5)
        kt.check_equal(ing.post("incident", events(rng, "incident", 1, districts=("D07",)),
                                token=token)[0], 202, "tokens after a failed reload")
        with open(ing.process.log_path, "rb") as f:
            kt.check(b"the token file did not load" in f.read(), "failed reload logged", True,
                     ing.process.log_tail())
        with open(ing.tokens_path) as f:
            kt.check(token not in f.read(), "the token file keeps only hashes", True, False)
    finally:
        ing.close()


def test_rotation_with_list_and_revoke():
    """The rotation docs/OPERATIONS.md walks through: a second token for the gateway, both
    work while the gateway changes over, then the old one is revoked by its id and refused
    after SIGHUP. --list-tokens shows ids, never a token or a whole hash."""
    ing = Ingest()
    try:
        rng = random.Random(16)

        def admin(*args):
            r = subprocess.run([kt.binary("keng-ingest"), *args, "--tokens", ing.tokens_path],
                               capture_output=True, text=True, timeout=10)
            return r.returncode, r.stdout, r.stderr

        def post(token):
            return ing.post("incident", events(rng, "incident", 1, districts=("D07",)),
                            token=token)[0]

        old = new_token(ing.tokens_path, "gw-d07", "D07")
        ing.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: post(old) == 202, 10, "the first token after SIGHUP")
        new = new_token(ing.tokens_path, "gw-d07", "D07")
        ing.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: post(new) == 202, 10, "the second token after SIGHUP")
        kt.check_equal(post(old), 202, "the first token while both are loaded")

        rc, out, err = admin("--list-tokens")
        kt.check_equal(rc, 0, f"--list-tokens exit status ({err})")
        kt.check_equal(out.splitlines()[0].split(), ["id", "gateway", "units", "created"],
                       "--list-tokens heading")
        # A file that does not load lists nothing: a heading alone would read as "no tokens".
        r = subprocess.run([kt.binary("keng-ingest"), "--list-tokens", "--tokens",
                            ing.tokens_path + ".missing"], capture_output=True, text=True,
                           timeout=10)
        kt.check_equal((r.returncode, r.stdout), (78, ""),
                       f"--list-tokens of a missing file ({r.stderr!r})")
        mine = [line.split() for line in out.splitlines() if " gw-d07 " in f" {line} "]
        kt.check_equal(len(mine), 2, f"the gateway's two tokens listed:\n{out}")
        with open(ing.tokens_path) as f:
            hashes = [line.split()[0] for line in f if " gw-d07 " in line]
        for text in [old, new] + [h[8:] for h in hashes]:
            kt.check(text not in out, "the listing shows no token and no whole hash", "absent",
                     out)
        rc, _, err = admin("--revoke", "gw-d07")
        kt.check_equal(rc, 1, "--revoke of a gateway with two tokens, without an id")
        kt.check("gw-d07@" in err, "the refusal names the ids", "gw-d07@…", err)
        rc, _, err = admin("--revoke", f"gw-d07@{hashes[0][:8]}")
        kt.check_equal(rc, 0, f"--revoke gw-d07@{hashes[0][:8]} exit status ({err})")
        ing.process.signal(signal.SIGHUP)
        kt.wait_until(lambda: post(old) == 401, 10, "the revoked token refused after SIGHUP")
        kt.check_equal(post(new), 202, "the second token after the first is revoked")
    finally:
        ing.close()


def test_sigterm_finishes_requests_in_flight():
    ing = Ingest()
    try:
        rng = random.Random(16)
        batch = events(rng, "mediation", 30)
        # A slow broker keeps the request in flight: the embedded one delays its answers, a
        # real one is stopped (SIGSTOP) until the answer is in.
        if kt.on_real_kafka():
            ing.broker.pause(1)
        else:
            ing.broker.command("rtt 1 500")
        result = {}

        def send():
            result["answer"] = ing.post("mediation", batch)

        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.2)
        ing.process.signal(signal.SIGTERM)
        t.join(30)
        status = result["answer"][0]
        kt.check(status in (202, 503), "the request in flight is answered", "202 or 503", status)
        if kt.on_real_kafka():
            ing.broker.resume(1)
        rc = ing.process.proc.wait(30)
        kt.check_equal(rc, 0, "exit status after SIGTERM")
        if not kt.on_real_kafka():
            ing.broker.command("rtt 1 0")
        if status == 202:
            check_in_kafka(ing.broker.bootstrap, "mediation", batch)
        ing.process.log_file.close()
    finally:
        ing.close()


def test_token_file_readable_by_others_is_warned_of():
    """The token file holds the gateways' token hashes: a file that the group or other users
    may read gets a warning at start and at each reload, naming the file and its mode; a
    0600 file gets none."""
    work = kt.Workdir()
    try:
        for mode, warned in ((0o644, True), (0o640, True), (0o600, False)):
            tokens = work.file(f"tokens-{mode:o}")
            r = subprocess.run([kt.binary("keng-ingest"), "--new-token", "gw", "--districts", "*",
                                "--tokens", tokens], capture_output=True, timeout=10)
            kt.check_equal(r.returncode, 0, f"--new-token ({r.stderr!r})")
            os.chmod(tokens, mode)
            port = kt.free_port()
            proc = kt.Process("keng-ingest", ["--tokens", tokens, "--listen",
                                              f"127.0.0.1:{port}"], work,
                              env={"KENG_BROKERS": "127.0.0.1:1"})
            try:
                kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200,
                              30, "keng-ingest /healthz")
                proc.signal(signal.SIGHUP)
                kt.wait_until(lambda: "tokens reloaded" in open(proc.log_path).read(), 10,
                              "the reload")
            finally:
                proc.stop()
            log = open(proc.log_path).read()
            lines = [ln for ln in log.splitlines() if "readable by" in ln]
            if warned:
                kt.check_equal(len(lines), 2, f"warnings for a {mode:o} token file (start and "
                                              f"reload): {log[-1500:]}")
                kt.check(tokens in lines[0] and f"mode=0{mode:o}" in lines[0],
                         "the warning names the file and its mode", tokens, lines[0])
            else:
                kt.check_equal(lines, [], f"warnings for a {mode:o} token file")
    finally:
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_token_file_readable_by_others_is_warned_of, test_valid_single_and_batch, test_invalid_requests_produce_nothing,
             test_routes_and_methods, test_keepalive_and_pipelining, test_broker_down_then_up,
             test_crash_under_load, test_token_rotation_with_sighup,
             test_rotation_with_list_and_revoke,
             test_sigterm_finishes_requests_in_flight])
