"""keng-simulate across a registry switch: with registry.topic (--registry-topic) it reads the
versions of antt.registry, and each event's board comes from the version in force at its
occurred_at. Version A (2024-01-01) has boards B1-B3 under a district; version B
(2025-07-01) adds B5 and removes B3. A backfill from 28 June to 4 July 2025 goes to Kafka;
read back, every event's board is in the version in force when it occurred, B5 is never
reported before B's time, B3 never occurs after it, and events on both sides and late events
crossing the switch are there. The same seed gives the same stream; --registry with
registry.topic is a usage error, and a topic without a version in force at the start exits
78."""

import collections
import os
import subprocess

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
KEY_A = "2023-12-31T17:00:00Z"
KEY_B = "2025-06-30T17:00:00Z"
SWITCH_MS = 1_751_302_800_000  # KEY_B
BOARDS = {KEY_A: {"B1", "B2", "B3"}, KEY_B: {"B1", "B2", "B5"}}
COUNT = 3000
WEEK_MS = 7 * 86400_000


def write(wd, name, text):
    path = wd.file(name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def run(program, *args, timeout=120):
    env = dict(os.environ)
    env.pop("KENG_BROKERS", None)
    return subprocess.run([kt.binary(program), *args], capture_output=True, timeout=timeout,
                          env=env)


def simulate(broker, *args):
    """A backfill over the switch: 28 June to 4 July 2025, in Vietnam."""
    return run("keng-simulate", "--brokers", broker.bootstrap, "--registry-topic", TOPIC,
               "--count", str(COUNT), "--rate", "0", "--seed", "5",
               "--start-time", "2025-06-28T00:00:00+07:00", "--now", "2025-07-04T00:00:00+07:00",
               "--late", "0.3", "--late-crossing", "0.5", *args)


def test_simulated_events_follow_the_version_in_force():
    wd = kt.Workdir(prefix="keng-simulate-switch-")
    broker = kt.Broker(wd, partitions=2)
    try:
        reg_a = write(wd, "version-a.csv", VERSION_A)
        reg_b = write(wd, "version-b.csv", VERSION_B)
        lineage_b = write(wd, "lineage-b.csv", LINEAGE_B)

        out = simulate(broker, "--registry", reg_a)
        kt.check_equal(out.returncode, 64, f"--registry with --registry-topic ({out.stderr!r})")
        kt.check(b"not both" in out.stderr, "--registry with --registry-topic: says why",
                 "not both", out.stderr)
        out = simulate(broker)
        kt.check_equal(out.returncode, 78, f"no version in the topic: exit ({out.stderr!r})")
        kt.check(b"no registry version is in force" in out.stderr,
                 "no version in the topic: says why", "no registry version is in force",
                 out.stderr)

        out = run("keng-registry", "--publish", reg_a, "--effective", "2024-01-01",
                  "--allow-past", "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish version A ({out.stderr!r})")
        out = run("keng-registry", "--publish", reg_b, "--effective", "2025-07-01", "--lineage",
                  lineage_b, "--allow-past", "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish version B ({out.stderr!r})")

        # Reproducible: the same seed twice gives the same NDJSON.
        one = simulate(broker, "--output", "ndjson")
        two = simulate(broker, "--output", "ndjson")
        kt.check_equal(one.returncode, 0, f"NDJSON run exit ({one.stderr[-600:]!r})")
        kt.check_equal(len(one.stdout.splitlines()), COUNT, "NDJSON lines")
        kt.check(one.stdout == two.stdout, "the same seed gives the same stream", "equal",
                 "different")

        out = simulate(broker)
        err = out.stderr.decode("utf-8", "replace")
        kt.check_equal(out.returncode, 0, f"keng-simulate exit ({err[-600:]!r})")
        start_line = next((line for line in err.splitlines()
                           if 'msg="board registry in use"' in line), "")
        for part in ("source=topic", f"topic={TOPIC}", f"version={KEY_A}",
                     f"versions={KEY_A},{KEY_B}", "later=1"):
            kt.check(part in start_line, "the start line names the versions used", part,
                     start_line)
        kt.check(f"version={KEY_B}" in err, "the version to come is logged", KEY_B, err)
        kt.check("across a registry version's time" in err, "the summary counts crossings",
                 "across a registry version's time", err[-400:])

        events = []
        for kind, topic in kt.TOPIC.items():
            for msg in kt.consume_all(broker.bootstrap, topic):
                ev = kt.decode_framed(kind, msg.value())
                kt.check_equal(msg.key().decode(), ev["board_id"], "message key")
                events.append(ev)
        kt.check_equal(len(events), COUNT, "events in Kafka")

        sides = collections.Counter()
        boards = collections.Counter()
        for ev in events:
            occurred, reported, board = ev["occurred_at"], ev["reported_at"], ev["board_id"]
            in_force = KEY_B if occurred >= SWITCH_MS else KEY_A
            kt.check(board in BOARDS[in_force],
                     f"event {ev['event_id']}: its board is in the version in force when it "
                     f"occurred ({occurred})", sorted(BOARDS[in_force]), board)
            if board not in BOARDS[KEY_A]:
                kt.check(reported >= SWITCH_MS, f"event {ev['event_id']}: board {board} not "
                         "reported before its version's time", f">= {SWITCH_MS}", reported)
            kt.check(occurred <= reported, f"event {ev['event_id']}: occurred before reported",
                     f"<= {reported}", occurred)
            boards[board] += 1
            if occurred < SWITCH_MS <= reported:
                sides["crossing"] += 1
                if reported - occurred >= 3600_000:
                    sides["late crossing"] += 1
            elif occurred < SWITCH_MS:
                sides["before"] += 1
            else:
                sides["after"] += 1
            if reported >= SWITCH_MS and reported - SWITCH_MS < WEEK_MS and \
                    reported - occurred >= 3600_000:
                sides["late after"] += 1
        kt.log(f"{len(events)} events: {dict(sides)}, boards {dict(boards)}")
        kt.check(sides["before"] > 500 and sides["after"] > 500, "events on both sides",
                 "> 500 each", dict(sides))
        kt.check(boards["B3"] > 100 and boards["B5"] > 100,
                 "events of the removed board and of the added one", "> 100 each", dict(boards))
        # About half of the late events reported after the switch occurred before it.
        share = sides["late crossing"] / max(sides["late after"], 1)
        kt.check(sides["late crossing"] > 50 and 0.35 < share < 0.65,
                 "late events cross the switch, about half of those reported after it",
                 "about 0.5", f"{sides['late crossing']} of {sides['late after']}")
    finally:
        kt.close_all([], broker, wd)


if __name__ == "__main__":
    kt.main([test_simulated_events_follow_the_version_in_force])
