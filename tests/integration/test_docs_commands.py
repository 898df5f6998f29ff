"""The commands in README.md and docs/OPERATIONS.md stay true (issue 21, section 4).

Every fenced code block (```) of the two files is found with its line and classified:

- run: a runner below claims it by a line of its text, runs the block's own text through
  `bash -e -o pipefail` against the real programs (KENG_BIN_DIR first on PATH) on the
  embedded broker, and checks what the docs say follows (exit status, the HTTP status a
  token gets, the shape of the output). A doc edit that breaks a command breaks this test;
  one that changes a claimed line leaves the block unclassified, which fails too.
- marked: the line before the fence (blank lines skipped) is
      <!-- not run by the tests: REASON -->
  for a command that needs what a test has not got here: Docker, root, systemd, Apache
  Kafka's own tools, or the whole suite. The reason is required.
- not a command: the info string says the block is a file's contents or a picture, not
  something to type: `text` or `yaml` (NOT_COMMANDS). A block with no info string, or
  `sh`, is a command and must be run or marked, so that a new command block cannot slip
  in unlabelled. A runner may still claim a `text` block (the `!no-tokens` file is loaded
  by keng-ingest below).

Anything else fails the test naming file:line.

The block's text is run as written but for this table of substitutions, each of which must
find its text in the block (else the doc changed and the test says so):

  build/bin/               -> (nothing)          the programs are on PATH
  127.0.0.1:8080           -> 127.0.0.1:<port>   keng-aggregate (the demo's) that the test started
  /tmp/keng-demo.*         -> the demo's --dir
  registry/<file>          -> the checkout's registry/<file> (in the demo block, the one the
                              Makefile's REGISTRY names, which the demo runs on)
  localhost:19092          -> the embedded broker's bootstrap list
  /var/lib/keng-aggregate  -> the running keng-aggregate's --state-dir (the systemd unit's)
  /backup/                 -> <work>/backup/
  0f3c9a11 (a token id)    -> the id --list-tokens printed
  -p 0 -o 42               -> the dead letter's partition and offset

and two shell functions defined before the block: `curl` adds --fail (so that an HTTP
error fails the block) and checks each answer is JSON; `xdg-open` checks that the file is
a PDF instead of opening it. Each block runs in a work folder that holds a copy of
deploy/tokens.example and a boards.csv written by `keng-registry --write`.
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time

import kengtest as kt

DOCS = ["README.md", os.path.join("docs", "OPERATIONS.md")]
MARKER = re.compile(r"^\s*<!-- not run by the tests: (\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(.*)$")
NOT_COMMANDS = {"text", "yaml"}

SHIMS = r"""
curl() {
    local out
    out=$(command curl --fail --silent --show-error --max-time 20 "$@")
    printf '%s\n' "$out"
    printf '%s' "$out" | python3 -c 'import json, sys; json.load(sys.stdin)' \
        || { echo "curl $*: the answer is not JSON" >&2; return 1; }
}
xdg-open() {
    head -c 5 "$1" | grep -q '^%PDF-' || { echo "xdg-open $1: not a PDF" >&2; return 1; }
}
"""


def blocks():
    """Every fenced block: (file, line of the opening fence, info string, text, marker)."""
    found = []
    for name in DOCS:
        with open(os.path.join(kt.SOURCE_DIR, name), encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            indent, info = m.group(1), m.group(2).strip()
            j = i + 1
            while j < len(lines) and not FENCE.match(lines[j]):
                j += 1
            kt.check(j < len(lines), f"{name}:{i + 1}: the block is closed", "```", "end of file")
            body = "\n".join(l[len(indent):] if l.startswith(indent) else l.lstrip()
                             for l in lines[i + 1:j])
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.match(lines[k]) if k >= 0 else None
            found.append((name, i + 1, info, body + "\n", marker.group(1) if marker else None))
            i = j + 1
    return found


def substitute(text, table, where):
    for old, new in table:
        kt.check(old in text, f"{where}: the block still has '{old}' to substitute", old, text)
        text = text.replace(old, new)
    return text


class Docs:
    """The work folder the blocks run in, and the pipeline they run against."""

    def __init__(self):
        self.work = kt.Workdir(prefix="keng-docs-test-")
        self.cwd = self.work.file("cwd")
        os.makedirs(os.path.join(self.cwd, "deploy"))
        shutil.copy(os.path.join(kt.SOURCE_DIR, "deploy", "tokens.example"),
                    os.path.join(self.cwd, "deploy", "tokens.example"))
        self.registry = os.path.join(self.cwd, "boards.csv")
        subprocess.run([kt.binary("keng-registry"), "--write", self.registry], check=True,
                       capture_output=True, timeout=30)
        self.env = dict(os.environ, PATH=kt.BIN_DIR + os.pathsep + os.environ["PATH"])
        self.processes = []
        self.broker = None
        self.blocks = {}

    def run(self, block, table=(), expect_status=0, timeout=120):
        """Runs a block's text (after the table) with bash -e; returns its stdout."""
        name, line, _, text, _ = block
        where = f"{name}:{line}"
        script = SHIMS + substitute(text, [("build/bin/", "")] + list(table)
                                    if "build/bin/" in text else list(table), where)
        kt.log(f"{where}: running\n{script[len(SHIMS):].rstrip()}")
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.cwd,
                           env=self.env, capture_output=True, timeout=timeout)
        out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        kt.check_equal(r.returncode, expect_status,
                       f"{where}: exit status of the block (stdout {out[-1500:]!r}, "
                       f"stderr {err[-1500:]!r})")
        return out

    def start(self, name, args):
        p = kt.Process(name, args, self.work)
        self.processes.append(p)
        return p

    def close(self):
        if self.broker is not None:
            kt.close_all(self.processes, self.broker, self.work)
        else:
            self.work.cleanup()


# ---- the runners: (a line the block holds, the function that runs it) ----

def demo_registry():
    """The registry `make demo` runs on: the Makefile's REGISTRY default, from the checkout."""
    with open(os.path.join(kt.SOURCE_DIR, "Makefile")) as f:
        m = re.search(r"^REGISTRY \?= (\S+)$", f.read(), re.M)
    kt.check(m is not None, "the Makefile's default REGISTRY", "REGISTRY ?= FILE", None)
    return m.group(1)


def run_demo_block(docs, block):
    """README's "A few things to try once make demo runs", on a keng-demo of its own that runs
    on make demo's registry."""
    port, ingest_port = kt.free_port(), kt.free_port()
    demo_dir = docs.work.file("demo")
    registry = demo_registry()
    demo = subprocess.Popen([kt.binary("keng-demo"), "--listen", f"127.0.0.1:{port}",
                             "--ingest-listen", f"127.0.0.1:{ingest_port}", "--rate", "100",
                             "--duration", "240", "--dir", demo_dir, "--registry",
                             os.path.join(kt.SOURCE_DIR, registry)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=docs.env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline().decode()
            if not line or line.startswith("Running for"):
                break
        base = f"http://127.0.0.1:{port}"
        kt.wait_until(lambda: kt.get_json(f"{base}/v1/counts?level=province&id=NA")
                      ["windows"]["all"]["incidents"]["total"] > 0, 60, "the demo counts")
        docs.run(block, [("127.0.0.1:8080", f"127.0.0.1:{port}"),
                         ("/tmp/keng-demo.*", demo_dir),
                         (registry, os.path.join(kt.SOURCE_DIR, registry))], timeout=240)
        for f in ("events.ndjson", "review/review.pdf", "review/review.html"):
            path = os.path.join(docs.cwd, f)
            kt.check(os.path.isfile(path) and os.path.getsize(path) > 0,
                     f"README's demo commands wrote {f}", "a file", "none")
        with open(os.path.join(docs.cwd, "events.ndjson")) as f:
            kt.check_equal(sum(1 for _ in f), 1000, "keng-simulate --count 1000 lines")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(10)


def run_tokens_copy(docs, block):
    docs.run(block)
    with open(os.path.join(docs.cwd, "deploy", "tokens")) as f, \
            open(os.path.join(docs.cwd, "deploy", "tokens.example")) as g:
        kt.check_equal(f.read(), g.read(), "deploy/tokens is a copy of the example")
    # The copy as it is loads: keng-ingest starts on it (the pipeline below).
    start_pipeline(docs)


def start_pipeline(docs):
    docs.broker = kt.Broker(docs.work, partitions=2)
    docs.ingest_port, docs.aggregate_port = kt.free_port(), kt.free_port()
    docs.state_dir = docs.work.file("state")
    docs.ingest = docs.start("keng-ingest", [
        "--listen", f"127.0.0.1:{docs.ingest_port}", "--brokers", docs.broker.bootstrap,
        "--registry", docs.registry, "--tokens", os.path.join(docs.cwd, "deploy", "tokens")])
    docs.aggregate = docs.start("keng-aggregate", [
        "--listen", f"127.0.0.1:{docs.aggregate_port}", "--brokers", docs.broker.bootstrap,
        "--registry", docs.registry, "--state-dir", docs.state_dir, "--group", "docs"])
    kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{docs.ingest_port}/healthz",
                                  timeout=2)[0] == 200, 30, "keng-ingest /healthz")
    kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{docs.aggregate_port}/readyz",
                                  timeout=2)[0] == 200, 60, "keng-aggregate /readyz")


def post(docs, board, token):
    event = kt.random_event(random.Random(), "incident", board, int(time.time() * 1000) - 60_000)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, _, _ = kt.http("POST", f"http://127.0.0.1:{docs.ingest_port}/v1/incidents",
                           json.dumps(event).encode(), headers)
    return status


def reload_tokens(docs):
    """What `docker compose kill -s SIGHUP keng-ingest` does: waits for the log's line."""
    def reloads():
        with open(docs.ingest.log_path, "rb") as f:
            return f.read().count(b"tokens reloaded")
    before = reloads()
    docs.ingest.signal(signal.SIGHUP)
    kt.wait_until(lambda: reloads() > before, 10, "keng-ingest's 'tokens reloaded'")


def check_statuses(docs, expected, what):
    """expected: {(board, token): status}: the statuses the Tokens section gives."""
    actual = {k: post(docs, *k) for k in expected}
    kt.check_equal(actual, expected, what)


D07_BOARD, D01_BOARD = "D07-C012-B03", None


def run_new_token(docs, block):
    """Tokens, step 1 (run twice: step 4.1 says "as in step 1")."""
    global D01_BOARD
    D01_BOARD = next(r["board_id"] for r in kt.registry_rows(docs.registry)
                     if r["district_id"] == "D01")
    tokens = os.path.join(docs.cwd, "deploy", "tokens")
    fresh = []
    for _ in range(2):
        out = docs.run(block).strip()
        kt.check(re.fullmatch(r"[A-Za-z0-9_-]{32,}", out) is not None,
                 "--new-token prints the token once", "a token", out)
        fresh.append(out)
        with open(tokens) as f:
            last = f.read().rstrip("\n").split("\n")[-1]
        kt.check(re.fullmatch(r"[0-9a-f]{64} gateway-d07-02 D07 # created "
                              r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last) is not None,
                 "the line --new-token appends", "<sha256> gateway-d07-02 D07 # created <time>",
                 last)
        if len(fresh) == 1:
            # Step 2: SIGHUP loads it. A token outside its districts gets 403; a missing or
            # unknown token gets 401.
            reload_tokens(docs)
            check_statuses(docs, {(D07_BOARD, fresh[0]): 202, (D01_BOARD, fresh[0]): 403,
                                  (D07_BOARD, None): 401, (D07_BOARD, "x" * 43): 401},
                           "statuses after step 1 and SIGHUP")
    reload_tokens(docs)
    check_statuses(docs, {(D07_BOARD, fresh[0]): 202, (D07_BOARD, fresh[1]): 202},
                   "step 4.2: both tokens work")
    docs.old_token, docs.new_token = fresh


def run_list_tokens(docs, block):
    out = docs.run(block)
    shown = [l[2:] for l in block[3].split("\n") if l.startswith("# ")]
    rows = [l for l in out.split("\n") if l.strip()]
    kt.check_equal(rows[0].split(), shown[0].split(), "--list-tokens header")
    want = shown[1].split()
    mine = [r.split() for r in rows[1:] if r.split()[1:3] == want[1:3]]
    kt.check_equal(len(mine), 2, f"--list-tokens rows of {want[1]} (two after step 4.1)")
    for row in mine:
        kt.check(re.fullmatch(r"[0-9a-f]{8}", row[0]) and
                 re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[3]),
                 "a --list-tokens row is shaped like the docs'", shown[1], " ".join(row))
    docs.old_id = mine[0][0]


def run_revoke(docs, block):
    docs.run(block, [("0f3c9a11", docs.old_id)])
    reload_tokens(docs)
    check_statuses(docs, {(D07_BOARD, docs.old_token): 401, (D07_BOARD, docs.new_token): 202},
                   "step 4.5: the revoked token gets 401, the new one works")


def run_no_tokens_file(docs, block):
    with open(os.path.join(docs.cwd, "deploy", "tokens"), "w") as f:
        f.write(block[3])
    reload_tokens(docs)
    check_statuses(docs, {(D07_BOARD, docs.new_token): 401}, "every POST gets 401 on !no-tokens")


def run_registry_check(docs, block):
    out = docs.run(block)
    for what in ("districts", "communes", "boards"):
        kt.check(re.search(rf"\d[\d,]* {what}|{what}[=: ]+\d", out) is not None,
                 f"keng-registry --check prints the count of {what}", what, out)
    with open(docs.registry) as f:
        good = f.read()
    with open(docs.registry, "w") as f:
        f.write(good + "D99-C001-B01,broken\n")
    try:
        r = subprocess.run(["bash", "-e", "-c", substitute(block[3], [("build/bin/", "")], "")],
                           cwd=docs.cwd, env=docs.env, capture_output=True, timeout=30)
        err = (r.stdout + r.stderr).decode()
        kt.check(r.returncode != 0 and re.search(r"\bline \d+|:\d+:", err) is not None,
                 "a broken registry: the first error with its line", "status != 0, a line", err)
    finally:
        with open(docs.registry, "w") as f:
            f.write(good)


def run_registry_version(docs, block):
    """OPERATIONS' check of a new registry version: the 2025 registry against the built-in one
    with its lineage and units list passes, and says what became of the boards."""
    out = docs.run(block, [("registry/", os.path.join(kt.SOURCE_DIR, "registry") + "/")])
    for line in ("districts=0 communes=130 boards=7588 groups=38578 members=38661",
                 "effective: 2025-07-01T00:00:00.000+07:00",
                 "boards against the previous version: 0 in the same commune, 7588 moved, 0 new, "
                 "0 removed"):
        kt.check(line in out.splitlines(), "keng-registry --check against the previous version",
                 line, out)


def run_registry_publish(docs, block):
    """OPERATIONS' publishing of registry versions: the built-in registry, then the 2025 one
    checked against it in the topic, both listed by --versions with the 2025 one in force."""
    out = docs.run(block, [("registry/", os.path.join(kt.SOURCE_DIR, "registry") + "/"),
                           ("localhost:19092", docs.broker.bootstrap)])
    for line in ("published: antt.registry partition 0 offset 0 effective 2023-12-31T17:00:00Z",
                 "published: antt.registry partition 0 offset 1 effective 2025-06-30T17:00:00Z",
                 "boards against the previous version: 0 in the same commune, 7588 moved, 0 new, "
                 "0 removed"):
        kt.check(line in out, "keng-registry --publish says it", line, out)
    rows = [l.split() for l in out.splitlines() if l.startswith(("2023-", "2025-"))]
    kt.check_equal([(r[0], r[1], r[2], r[3], r[6:]) for r in rows],
                   [("2023-12-31T17:00:00Z", "7588", "460", "21", []),
                    ("2025-06-30T17:00:00Z", "7588", "130", "0", ["in", "force"])],
                   "keng-registry --versions")


def dead_letter(docs):
    """One event for a board the registry does not list, dead-lettered by keng-aggregate."""
    if getattr(docs, "dead", None):
        return docs.dead
    event = kt.random_event(random.Random(3), "incident", "D07-C999-B99",
                            int(time.time() * 1000) - 60_000)
    kt.produce(docs.broker.bootstrap, kt.messages([("incident", event)]))
    base = f"http://127.0.0.1:{docs.aggregate_port}"
    kt.wait_until(lambda: sum(v for k, v in kt.metrics(base).items()
                              if k.startswith("keng_deadletter_total")) >= 1, 60,
                  "the unknown board's event to be dead-lettered")
    # The metric counts it when produced; kcat -e needs it in the topic.
    kt.wait_until(lambda: kt.consume_all(docs.broker.bootstrap, "antt.deadletter", timeout=10),
                  30, "the dead letter in antt.deadletter")
    docs.dead = event
    return event


def run_deadletter_read(docs, block):
    event = dead_letter(docs)
    out = docs.run(block, [("localhost:19092", docs.broker.bootstrap)], timeout=60)
    m = re.search(r"^partition (\d+) offset (\d+) key D07-C999-B99 headers (.*)$", out, re.M)
    kt.check(m is not None, "kcat prints the dead letter's partition, offset, key, headers",
             "partition N offset N key D07-C999-B99 headers ...", out)
    for header in ("keng.reason=unknown-board", "keng.error=", "keng.source.topic=antt.incidents",
                   "keng.source.partition=", "keng.source.offset="):
        kt.check(header in m.group(3), f"the dead letter's header {header}", header, m.group(3))
    docs.dead_at = (m.group(1), m.group(2))
    docs.dead_event = event


def run_deadletter_decode(docs, block):
    p, o = docs.dead_at
    out = docs.run(block, [("localhost:19092", docs.broker.bootstrap),
                           ("-p 0 -o 42", f"-p {p} -o {o}")], timeout=60)
    kt.check(docs.dead_event["event_id"] in out, "keng-avro decode prints the event",
             docs.dead_event["event_id"], out)


def run_state_copy(docs, block):
    dead_letter(docs)  # something counted, so that there is a checkpoint
    backup = docs.work.file("backup")
    docs.run(block, [("/var/lib/keng-aggregate", docs.state_dir), ("/backup/", backup + "/")])
    copies = [os.path.join(backup, d) for d in os.listdir(backup)]
    kt.check_equal(len(copies), 1, "one dated copy under /backup")
    kt.check(re.search(r"keng-state-\d{4}-\d\d-\d\d$", copies[0]) is not None,
             "the copy is named by the date", "keng-state-YYYY-MM-DD", copies[0])
    r = subprocess.run(["mdb_stat", "-a", copies[0]], capture_output=True, timeout=30)
    kt.check_equal(r.returncode, 0, f"mdb_stat on the copy ({r.stderr!r})")


# Order matters: the blocks run in this order (the Tokens steps, then what needs the pipeline).
RUNNERS = [
    ("cp deploy/tokens.example deploy/tokens", run_tokens_copy),
    ("build/bin/keng-ingest --new-token gateway-d07-02", run_new_token),
    ("build/bin/keng-ingest --list-tokens", run_list_tokens),
    ("build/bin/keng-ingest --revoke gateway-d07-02@0f3c9a11", run_revoke),
    ("!no-tokens", run_no_tokens_file),
    ("build/bin/keng-registry --check boards.csv", run_registry_check),
    ("build/bin/keng-registry --write boards-in-force.csv", run_registry_version),
    ("build/bin/keng-registry --versions --brokers localhost:19092", run_registry_publish),
    ("-f 'partition %p offset %o key %k headers %h\\n'", run_deadletter_read),
    ("build/bin/keng-avro decode msg.bin", run_deadletter_decode),
    ("mdb_copy -c /var/lib/keng-aggregate", run_state_copy),
    ("export KENG_BROKERS=$(cat /tmp/keng-demo.*/bootstrap)", run_demo_block),
]


def claim(block):
    lines = [l.strip() for l in block[3].split("\n")]
    return [runner for key, runner in RUNNERS if key in lines or
            any(l.startswith(key) or l.endswith(key) for l in lines if l)]


def test_every_block_is_run_or_marked():
    problems, run, marked, files = [], [], [], []
    for block in blocks():
        name, line, info, text, marker = block
        where = f"{name}:{line}"
        runners = claim(block)
        if len(runners) > 1:
            problems.append(f"{where}: claimed by {len(runners)} runners")
        elif runners and marker:
            problems.append(f"{where}: marked not run, but the test runs it")
        elif runners:
            run.append((runners[0], block))
        elif marker:
            marked.append(where)
        elif info in NOT_COMMANDS:
            files.append(where)
        else:
            problems.append(f"{where}: a ```{info} block that this test neither runs nor finds "
                            f"marked '<!-- not run by the tests: REASON -->' on the line before "
                            f"(or give a file's contents the info string text or yaml)")
    claimed = [r for r, _ in run]
    for key, runner in RUNNERS:
        if runner not in claimed:
            problems.append(f"no block holds '{key}' any more ({runner.__name__})")
    kt.log(f"{len(run) + len(marked) + len(files)} blocks: {len(run)} run, {len(marked)} "
           f"marked not run, {len(files)} not commands ({', '.join(files)})")
    kt.check(not problems, "every block is run or marked", "none", "\n  " + "\n  ".join(problems))

    docs = Docs()
    try:
        for _, runner in RUNNERS:
            block = next(b for r, b in run if r is runner)
            kt.log(f"{block[0]}:{block[1]}: {runner.__name__}")
            runner(docs, block)
        for p in list(docs.processes):
            status = p.stop()
            kt.check_equal(status, 0, f"{p.name} exit status at SIGTERM ({p.log_tail(5)})")
            docs.processes.remove(p)
    finally:
        docs.close()


if __name__ == "__main__":
    kt.main([test_every_block_is_run_or_marked])
