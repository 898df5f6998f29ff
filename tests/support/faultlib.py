"""What the fault tests share on top of kengtest.py: keng-aggregate and
keng-ingest as restartable processes, a stream of events with resends, the expected counts
(each event_id once) and the comparison that turns a mismatch into 'lost' and 'duplicates'
figures. Not a test itself (the name does not start with test_)."""

import json
import os
import random
import signal
import subprocess
import time

import kengtest as kt

DAY = 86_400_000

_rows = None


def registry():
    """(rows, rows by board_id) of the default registry, computed once."""
    global _rows
    if _rows is None:
        rows = kt.registry_rows()
        _rows = (rows, {r["board_id"]: r for r in rows})
    return _rows


def pick_boards(rng, districts=("D03", "D07", "D15"), per_district=12):
    rows, _ = registry()
    chosen = []
    for d in districts:
        chosen += rng.sample([r["board_id"] for r in rows if r["district_id"] == d], per_district)
    return chosen


class EventSource:
    """New events over a fixed set of boards, occurred 1 to 300 days ago (so only the 'all'
    window is compared and the window edges never matter), plus resends of earlier ones."""

    def __init__(self, rng, boards):
        self.rng = rng
        self.boards = boards
        self.sent = []  # every (kind, event) handed out, resends included
        self.unique = {}  # event_id -> (kind, event)

    def new(self, n, kind=None):
        """n new events of kind, or of either kind (60% incidents) when kind is None."""
        now = int(time.time() * 1000)
        out = []
        for _ in range(n):
            if kind is None:
                kind_ = "incident" if self.rng.random() < 0.6 else "mediation"
            else:
                kind_ = kind
            ev = kt.random_event(self.rng, kind_, self.rng.choice(self.boards),
                                 now - self.rng.randint(DAY, 300 * DAY))
            self.unique[ev["event_id"]] = (kind_, ev)
            out.append((kind_, ev))
        self.sent += out
        return out

    def resends(self, n):
        pool = list(self.unique.values())
        out = self.rng.sample(pool, min(n, len(pool)))
        self.sent += out
        return out

    def expected(self):
        return kt.expected_all_time(list(self.unique.values()), registry()[1])


# On the embedded broker, producers send one request per partition at a time. It answers
# errors without writing and, unlike Kafka, checks no sequence numbers, so with requests in
# flight behind a failed one the next can succeed, and librdkafka 2.0.2's idempotent producer
# takes that success as proof that the failed one was written too (its "R1 failed ... but R2
# succeeded" implicit acknowledgement) and reports events delivered that are in no topic.
# Kafka refuses such a request (OUT_OF_ORDER_SEQUENCE_NUMBER); the real-Kafka tests keep
# librdkafka's default of 5.
ONE_REQUEST_AT_A_TIME = ({} if kt.on_real_kafka()
                         else {"max.in.flight.requests.per.connection": 1})
KENG_ONE_REQUEST_AT_A_TIME = ("" if kt.on_real_kafka()
                              else "kafka.max.in.flight.requests.per.connection=1\n")


def produce_paced(bootstrap, msgs, chunks, pause_s, config=None, timeout=60):
    """Produces msgs in chunks with pause_s between them, so that a consumer is busy for
    the whole run rather than a burst; waits for every delivery of each chunk. Raises when
    a delivery failed."""
    # Disconnects while brokers are down are what the tests cause.
    p = kt.EventProducer(bootstrap, dict({"log_level": 2}, **ONE_REQUEST_AT_A_TIME,
                                         **(config or {})))
    size = max(1, -(-len(msgs) // chunks))
    for i in range(0, len(msgs), size):
        if i:
            time.sleep(pause_s)
        p.send(msgs[i:i + size], timeout)


class Aggregate:
    """keng-aggregate with one state dir and group for its whole life, restartable."""

    def __init__(self, work, bootstrap, group, extra_config="", name="aggregate",
                 session_ms=6000):
        """Rebalances in the mock cluster wait up to session.timeout.ms - 1 s (DESIGN.md);
        after a SIGKILL the dead member holds the group for one session timeout more."""
        self.work = work
        self.bootstrap = bootstrap
        self.group = group
        self.state_dir = work.file(f"{name}-state")
        self.config = work.file(f"{name}.conf")
        with open(self.config, "w") as f:
            f.write(f"kafka.session.timeout.ms={session_ms}\n"
                    "kafka.heartbeat.interval.ms=500\n" + extra_config)
        self.process = None

    def start(self):
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = kt.Process(
            "keng-aggregate",
            ["--config", self.config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
             self.state_dir, "--group", self.group],
            self.work, env={"KENG_BROKERS": self.bootstrap})
        return self

    def alive(self):
        return self.process is not None and self.process.alive()

    def ready(self):
        if not self.process.alive():
            raise kt.TestFailure(f"keng-aggregate exited with {self.process.proc.returncode}: "
                                 f"{self.process.log_tail()}")
        return kt.http("GET", self.base + "/readyz", timeout=5)[0] == 200

    def wait_ready(self, timeout=90):
        kt.wait_until(self.ready, timeout, "keng-aggregate to be ready", interval=0.1)

    def sigkill(self):
        self.process.signal(signal.SIGKILL)
        self.process.kill()  # reaps it and closes the log

    def stop(self):
        rc = self.process.stop()
        kt.check_equal(rc, 0, f"keng-aggregate exit status after SIGTERM; log: "
                       f"{self.process.log_tail()}")

    def metrics(self):
        return kt.metrics(self.base)

    def all_time(self, level, scope_id):
        got = kt.get_json(f"{self.base}/v1/counts?level={level}&id={scope_id}", timeout=5)
        return got["windows"]["all"]


def _flatten(tally, prefix=""):
    out = {}
    for k, v in tally.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def difference(got, want):
    """(lost, duplicates) between two tallies of one scope: events the expected totals have
    that the counts lack, and events counted more than the expected totals allow."""
    lost = dup = 0
    for field in ("incidents.total", "mediations.total"):
        g, w = _flatten(got).get(field, 0), _flatten(want)[field]
        lost += max(0, w - g)
        dup += max(0, g - w)
    return lost, dup


def missing_from_topics(bootstrap, src):
    """For a failed run: how many of src's events are not in the input topics at all, so
    were lost before keng-aggregate could read them. Tells a loss on the producing side from
    one on the consuming side."""
    try:
        found = set()
        for kind, topic in kt.TOPIC.items():
            for m in kt.consume_all(bootstrap, topic):
                found.add(kt.decode_framed(kind, m.value())["event_id"])
        missing = [i for i in src.unique if i not in found]
        return f"events missing from the topics {len(missing)} of {len(src.unique)}"
    except Exception as e:  # the broker may be the thing that failed
        return f"topics not read ({type(e).__name__}: {e})"


def mismatch_figures(agg, src):
    """(lost, duplicates) at province level between keng-aggregate and every event src
    handed out, for the figures line of a failed run."""
    try:
        return difference(agg.all_time("province", "NA"),
                          src.expected().get(("province", "NA"), kt.empty_tally()))
    except Exception:  # the aggregator may be the thing that failed
        return "?", "?"


def wait_counts(agg, expected, what, timeout=60, scopes="province"):
    """Waits until keng-aggregate's all-time counts equal expected: the province only
    (cheap, after each round) or every scope (scopes='all'). On timeout fails with the
    first differing scope and the lost/duplicate figures. Returns (lost, duplicates), which
    is (0, 0) on success."""
    keys = [("province", "NA")] if scopes == "province" else sorted(expected)

    def matches():
        return all(agg.all_time(*k) == expected.get(k, kt.empty_tally()) for k in keys)

    try:
        kt.wait_until(matches, timeout, f"counts to match ({what})", interval=0.2)
        return 0, 0
    except kt.TestFailure:
        want = expected.get(("province", "NA"), kt.empty_tally())
        got = agg.all_time("province", "NA")
        lost, dup = difference(got, want)
        kt.log(f"{what}: province expected {json.dumps(want)}\n got {json.dumps(got)}; "
               f"lost {lost}, duplicates {dup}")
        for k in keys:
            kt.check_equal(agg.all_time(*k), expected.get(k, kt.empty_tally()),
                           f"{what}: all-time counts of {k[0]} {k[1]} (lost {lost}, "
                           f"duplicates {dup})")
        raise


# ---- keng-ingest ----

def new_token(tokens_path, name="fault-gw", districts="*"):
    out = subprocess.run([kt.binary("keng-ingest"), "--new-token", name, "--districts",
                          districts, "--tokens", tokens_path], capture_output=True, timeout=20)
    kt.check_equal(out.returncode, 0, f"keng-ingest --new-token exit status ({out.stderr!r})")
    return out.stdout.decode().strip()


def have(program):
    return os.path.exists(os.path.join(kt.BIN_DIR, program))


class Ingest:
    """keng-ingest in front of a broker, with a token for every district, restartable on
    the same port (a gateway keeps its address)."""

    def __init__(self, work, bootstrap, config="ingest.deadline_ms=3000\n"):
        self.work = work
        self.bootstrap = bootstrap
        self.tokens = work.file("tokens")
        self.token = new_token(self.tokens)
        self.config = work.file("ingest.conf")
        with open(self.config, "w") as f:
            f.write(KENG_ONE_REQUEST_AT_A_TIME + config)
        self.port = kt.free_port()
        self.process = None

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, timeout=30):
        self.process = kt.Process("keng-ingest", [
            "--listen", f"127.0.0.1:{self.port}", "--brokers", self.bootstrap, "--tokens",
            self.tokens, "--config", self.config], self.work)

        def healthy():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-ingest exited with {self.process.proc.returncode}: "
                                     f"{self.process.log_tail()}")
            return kt.http("GET", self.url("/healthz"), timeout=2)[0] == 200
        kt.wait_until(healthy, timeout, "keng-ingest /healthz", interval=0.05)
        return self

    def post(self, kind, events, timeout=15):
        """(status, answer) of one POST; status None when the connection failed."""
        body = json.dumps(events).encode()
        try:
            status, _, data = kt.http("POST", self.url(f"/v1/{kind}s"), body=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
                timeout=timeout)
        except OSError:
            return None, None
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data

    def sigkill(self):
        self.process.signal(signal.SIGKILL)
        self.process.kill()

    def stop(self):
        rc = self.process.stop()
        kt.check_equal(rc, 0, f"keng-ingest exit status after SIGTERM; log: "
                       f"{self.process.log_tail()}")


def close_all(programs, broker, work):
    """The end of every fault test: prints the log tail of each program still running (a
    failure left it so) and kills it, then stops the broker and removes the work folder."""
    kt.close_all([p.process for p in programs if p.process is not None and p.process.alive()],
                 broker, work)


def event_id_of(value):
    """The event_id of a framed incident or mediation without decoding the whole datum:
    it is the first field, an Avro string (zigzag varint length, then UTF-8)."""
    shift = n = 0
    i = 5
    while True:
        b = value[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
    length = (n >> 1) ^ -(n & 1)
    return value[i:i + length].decode()


def read_ids(bootstrap):
    """{event_id: number of copies} over both topics."""
    ids = {}
    for topic in kt.TOPIC.values():
        for m in kt.consume_all(bootstrap, topic):
            eid = event_id_of(m.value())
            ids[eid] = ids.get(eid, 0) + 1
    return ids


def seed_from_env(default):
    """KENG_FAULT_SEED replays a run; otherwise a fresh seed, printed."""
    value = os.environ.get("KENG_FAULT_SEED")
    seed = int(value) if value else (default if default is not None else
                                     random.SystemRandom().randrange(1 << 32))
    kt.log(f"seed {seed} (replay with KENG_FAULT_SEED={seed})")
    return seed


def figures(test, rounds, events, kills, lost, duplicates, extra=""):
    line = (f"FIGURES {test}: rounds {rounds}, events {events}, kills survived {kills}, "
            f"lost {lost} (must be 0), duplicates counted {duplicates} (must be 0)"
            + (f", {extra}" if extra else ""))
    print(line, flush=True)


# ---- alerts ----

def decode_alert(data):
    import io
    import struct

    import avro.io
    magic, schema_id = struct.unpack(">bI", data[:5])
    kt.check_equal((magic, schema_id), (0, kt.SCHEMA_IDS["alert"]), "alert framing")
    return avro.io.DatumReader(kt.schema("alert")).read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))


def aggregate_has_alerts():
    """True when keng-aggregate knows alert rules (its --help documents alert.<name>.*)."""
    out = subprocess.run([kt.binary("keng-aggregate"), "--help"], capture_output=True,
                         timeout=20)
    return b"alert.<name>" in out.stdout + out.stderr


class AlertRules:
    """Alert rules on the 365-day window, which holds every event these tests produce (1 to
    300 days old) and which no event leaves during a run: counts only grow, so a scope FIRES
    exactly once when it reaches the threshold and never RESOLVES. The expected transitions
    follow from the events alone; the check compares them with antt.alerts.

    rules: (name, level, kind, threshold)."""

    def __init__(self, rules):
        self.rules = rules if aggregate_has_alerts() else []
        if not self.rules:
            print("SKIPPED the alert invariant: this keng-aggregate has no alert rules; "
                  "this is not a pass", flush=True)

    def config(self):
        out = ""
        for name, level, kind, threshold in self.rules:
            out += (f"alert.{name}.level={level}\nalert.{name}.window=365d\n"
                    f"alert.{name}.kind={kind}\nalert.{name}.threshold={threshold}\n")
        return out

    def expected(self, tallies):
        """{(rule, scope_id)} that must have fired, from the all-time tallies of every
        event in the topics (kt.expected_all_time)."""
        out = set()
        for name, level, kind, threshold in self.rules:
            for (lvl, scope_id), t in tallies.items():
                if lvl == level and t[kind + "s"]["total"] >= threshold:
                    out.add((name, scope_id))
        return out

    def records(self, bootstrap):
        return [decode_alert(m.value()) for m in kt.consume_all(bootstrap, "antt.alerts",
                                                                timeout=30)]

    @staticmethod
    def repeated(records):
        """Records beyond the first for one (rule, scope, status): repeats, and RESOLVED
        records, which these rules can never cause."""
        seen = set()
        extra = []
        for r in records:
            key = (r["rule"], r["scope_id"], r["status"])
            if key in seen or r["status"] != "FIRING":
                extra.append(key)
            seen.add(key)
        return extra

    def check(self, agg, tallies, bootstrap, what, timeout=60):
        """Once the counts equal tallies: every scope over a threshold FIRED exactly once on
        antt.alerts, no other scope did, and /v1/alerts?status=firing lists the same.
        Waits for transitions still on their way. Returns (expected, lost, repeated)."""
        if not self.rules:
            return 0, 0, 0
        want = self.expected(tallies)
        state = {}

        def settled():
            records = self.records(bootstrap)
            got = {(r["rule"], r["scope_id"]) for r in records}
            firing = {(a["rule"], a["scope_id"]) for a in
                      kt.get_json(f"{agg.base}/v1/alerts?status=firing")["alerts"]}
            state.update(records=records, got=got, firing=firing)
            return got == want and firing == want and not self.repeated(records)
        try:
            kt.wait_until(settled, timeout, f"{what}: alert transitions", interval=0.3)
        except kt.TestFailure:
            pass
        lost = sorted(want - state.get("got", set()))
        extra = self.repeated(state.get("records", [])) + sorted(state.get("got", set()) - want)
        kt.check_equal((lost, extra), ([], []), f"{what}: (lost, repeated or unexpected) alert "
                       f"transitions of {len(want)} expected")
        kt.check_equal(sorted(state["firing"]), sorted(want), f"{what}: /v1/alerts firing")
        return len(want), len(lost), len(extra)

    def check_stopped(self, tallies, bootstrap, what):
        """check() again once keng-aggregate has stopped: its SIGTERM flushes every transition
        in flight, so antt.alerts is final. check() alone returns at the first moment the topic
        looks right, before a repeat still on its way has arrived. Repeats are named with their
        alert_ids: different ids are a second evaluation, one id twice a resent record."""
        if not self.rules:
            return
        want = self.expected(tallies)
        records = self.records(bootstrap)
        got = {(r["rule"], r["scope_id"]) for r in records}
        extra = self.repeated(records) + sorted(got - want)
        ids = {}
        for r in records:
            if (r["rule"], r["scope_id"], r["status"]) in extra:
                ids.setdefault(r["scope_id"], []).append(r["alert_id"])
        kt.check_equal((sorted(want - got), extra), ([], []), f"{what}, after the stop: (lost, "
                       f"repeated or unexpected) alert transitions of {len(want)} expected "
                       f"(alert_ids of the repeated: {ids})")
