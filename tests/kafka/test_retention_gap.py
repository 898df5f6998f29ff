"""Counts that retention left incomplete are said, never silently (real Apache Kafka: the
embedded broker cannot delete records). A first batch of events is counted and
checkpointed, then deleted from the topics (kafka-delete-records.sh, as retention would),
and a second batch follows. Then:
a. a new instance (no state) reads every partition from its first retained event: /readyz
   names every partition with the time its events are whole from, the counts API marks every
   scope incomplete with the windows that start before that time, and a restart still says
   so (the gap is checkpointed);
b. the first instance restarted on its checkpoint has no gap; with one board's saved state
   damaged, only that board is rebuilt from the partition's start: /readyz and the API name
   that board alone, and it counts the second batch only;
c. two instances that share their counts through antt.board-counts: the first rebuilds every
   partition after the deletion, the second joins and takes some partitions over from the
   counts topic, then all of them when the first stops. The new owner says each gap that the
   instance that rebuilt the partition knew, with the same time, and the counts stay exact."""

import datetime
import json
import os
import random
import re
import subprocess
import sys
import time

import faultlib as fl
from faultlib import kt

sys.path.insert(0, os.path.join(kt.SOURCE_DIR, "tests", "faults"))
sys.path.insert(0, os.path.join(kt.SOURCE_DIR, "tests", "integration"))
from test_state_record_corrupt import flip_values  # noqa: E402
import test_dashboard as dash  # noqa: E402

PARTITIONS = 2
ALL_WINDOWS = ["1h", "24h", "7d", "30d", "365d", "all"]


def delete_everything(broker):
    """Deletes every record now in keng's input topics, as retention would."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "keng-test-probe"})
    spec = []
    try:
        for topic in ("antt.incidents", "antt.mediations"):
            for p in range(PARTITIONS):
                _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                spec.append({"topic": topic, "partition": p, "offset": high})
    finally:
        c.close()
    path = os.path.join(broker.dir, "delete-records.json")
    with open(path, "w") as f:
        json.dump({"partitions": spec, "version": 1}, f)
    # The cluster's wrappers are kafka-topics.sh and a few more: the same JVM line runs the
    # delete-records tool's class.
    with open(os.path.join(broker.dir, "kafka-home", "bin", "kafka-topics.sh")) as f:
        line = f.read().replace("org.apache.kafka.tools.TopicCommand",
                                "org.apache.kafka.tools.DeleteRecordsCommand")
    out = subprocess.run(["bash", "-c", line, "delete-records", "--bootstrap-server",
                          broker.bootstrap, "--offset-json-file", path], capture_output=True,
                         timeout=120)
    kt.check_equal(out.returncode, 0, f"kafka-delete-records.sh ({out.stderr[-500:]!r})")
    return spec


def time_ms(text):
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def readyz(agg):
    status, _, body = kt.http("GET", agg.base + "/readyz", timeout=5)
    kt.check_equal(status, 200, f"/readyz ({body[:300]!r})")
    return json.loads(body)


def counts(agg, level, scope):
    return kt.get_json(f"{agg.base}/v1/counts?level={level}&id={scope}", timeout=5)


LAG = re.compile(r'^keng_consumer_lag\{topic="([^"]+)",partition="(\d+)"\} \d+$')


def owned(agg):
    """The (topic, partition) pairs an instance consumes, from its keng_consumer_lag lines."""
    status, _, body = kt.http("GET", agg.base + "/metrics", timeout=5)
    kt.check_equal(status, 200, "GET /metrics status")
    return {(m.group(1), int(m.group(2))) for m in map(LAG.match, body.decode().splitlines())
            if m}


def gaps_of(agg):
    """{(topic, partition): events_before} of the whole-partition gaps /readyz names."""
    return {(g["topic"], g["partition"]): g["events_before"]
            for g in readyz(agg).get("incomplete", [])
            if g["boards"] == "every board of the partition"}


def handover_keeps_gaps(work, broker, expected, programs):
    """Part c: the gaps of a rebuild are said by whoever owns the partition next. The two
    instances join programs, for the test's clean-up."""
    every = {(t, p) for t in ("antt.incidents", "antt.mediations") for p in range(PARTITIONS)}
    config = "group.instance.id=none\ncheckpoint.interval.ms=200\n"
    one = fl.Aggregate(work, broker.bootstrap, "keng-gap-c", config, name="c1", session_ms=6000)
    two = fl.Aggregate(work, broker.bootstrap, "keng-gap-c", config, name="c2", session_ms=6000)
    programs += [one, two]
    one.start().wait_ready(timeout=120)
    fl.wait_counts(one, expected, "c. the instance that rebuilds", timeout=60)
    rebuilt = gaps_of(one)
    kt.check_equal(set(rebuilt), every, "c. the rebuilding instance's gaps")

    two.start().wait_ready(timeout=120)

    def split():
        a, b = owned(one), owned(two)
        return a | b == every and not a & b and a and b
    kt.wait_until(split, 60, "c. the partitions shared between the two instances")
    for agg, name in ((one, "c1"), (two, "c2 (took them over)")):
        one.wait_ready(timeout=60)
        two.wait_ready(timeout=60)
        mine = owned(agg)
        kt.check_equal(gaps_of(agg), {k: rebuilt[k] for k in mine},
                       f"c. /readyz's gaps on {name}: those of its partitions, same times")
    fl.wait_counts(two, expected, "c. the second instance, whole province", timeout=60)

    one.stop()
    kt.wait_until(lambda: owned(two) == every, 60, "c. every partition on the second")
    two.wait_ready(timeout=120)
    kt.check_equal(gaps_of(two), rebuilt, "c. every gap said by the new owner of all")
    province = counts(two, "province", "NA").get("incomplete")
    kt.check(province is not None and province["windows"] == ALL_WINDOWS,
             "c. the province's counts on the new owner say they are incomplete",
             ALL_WINDOWS, province)
    fl.wait_counts(two, expected, "c. the new owner of all, exact", timeout=60)
    two.stop()


def test_retention_gap_said():
    if not kt.on_real_kafka():
        print("SKIPPED test_retention_gap_said: the embedded broker cannot delete records; "
              "this runs as kafka.* on Apache Kafka", flush=True)
        return
    rng = random.Random(271)
    work = kt.Workdir(prefix="keng-retention-gap-")
    broker = kt.Broker(work, partitions=PARTITIONS)
    boards = fl.pick_boards(rng, per_district=4)
    first, second = fl.EventSource(rng, boards), fl.EventSource(rng, boards)
    config = "topic.board_counts=\ngroup.instance.id=none\ncheckpoint.interval.ms=200\n"
    agg = fl.Aggregate(work, broker.bootstrap, "keng-gap-a", config, name="a", session_ms=6000)
    fresh = fl.Aggregate(work, broker.bootstrap, "keng-gap-b", config, name="b", session_ms=6000)
    programs = [agg, fresh]
    try:
        kt.produce(broker.bootstrap, kt.messages(first.new(300)))
        agg.start().wait_ready(timeout=120)
        fl.wait_counts(agg, first.expected(), "the first batch", timeout=60)
        kt.check("incomplete" not in readyz(agg), "no gap before any deletion", None,
                 readyz(agg))
        agg.stop()
        delete_everything(broker)
        before_second = int(time.time() * 1000)
        kt.produce(broker.bootstrap, kt.messages(second.new(200)))

        # a. A new instance: every partition read from its first retained event.
        for round_ in ("a. a new instance", "a. the same, restarted"):
            fresh.start().wait_ready(timeout=120)
            fl.wait_counts(fresh, second.expected(), round_, timeout=60)
            gaps = readyz(fresh).get("incomplete", [])
            kt.check_equal(sorted((g["topic"], g["partition"], g["boards"]) for g in gaps),
                           sorted((t, p, "every board of the partition")
                                  for t in ("antt.incidents", "antt.mediations")
                                  for p in range(PARTITIONS)), f"{round_}: /readyz's gaps")
            for g in gaps:
                when = time_ms(g["events_before"])
                kt.check(before_second - 60_000 <= when <= int(time.time() * 1000),
                         f"{round_}: events_before is the first retained event's time",
                         before_second, g["events_before"])
            province = counts(fresh, "province", "NA").get("incomplete")
            kt.check(province is not None and province["windows"] == ALL_WINDOWS,
                     f"{round_}: the province's counts say they are incomplete, every window",
                     ALL_WINDOWS, province)
            board = counts(fresh, "board", boards[0]).get("incomplete")
            kt.check(board is not None and board["boards"] == 1,
                     f"{round_}: a board's counts say so too", 1, board)
            if round_.endswith("restarted"):
                # The dashboard says it over the numbers, in a real browser.
                dash.require_browser()
                driver = dash.start_browser(work.file("chromium"))
                try:
                    driver.get(fresh.base + "/")
                    kt.wait_until(lambda: driver.execute_script(
                        "var n = document.getElementById('incomplete');"
                        "return n && !n.hidden ? n.textContent : '';"), dash.WAIT,
                        "the dashboard's incomplete-counts note")
                    note = driver.execute_script(
                        "return document.getElementById('incomplete').textContent")
                    kt.check("incomplete" in note and " ban " in note,
                             "a. the dashboard names the incomplete counts", "incomplete",
                             note)
                finally:
                    driver.quit()
            fresh.stop()

        # b. The first instance: its checkpoint says where to start, nothing is rebuilt.
        agg.start().wait_ready(timeout=120)
        expected = kt.expected_all_time(list(first.unique.values()) +
                                        list(second.unique.values()), fl.registry()[1])
        fl.wait_counts(agg, expected, "b. restarted on its checkpoint", timeout=60)
        kt.check("incomplete" not in readyz(agg), "b. no gap from a checkpoint", None,
                 readyz(agg))
        agg.stop()
        damaged = boards[1]
        flipped = flip_values(os.path.join(agg.state_dir, "data.mdb"),
                              [f"u/{damaged}/incident"], rng)
        kt.check(flipped, "b. the board's saved incident state was found and damaged",
                 damaged, flipped)
        agg.start().wait_ready(timeout=120)
        gaps = readyz(agg).get("incomplete", [])
        kt.check_equal([g["boards"] for g in gaps], [damaged], "b. /readyz names the board")
        kt.check_equal(counts(agg, "board", damaged).get("incomplete", {}).get("boards"), 1,
                       "b. the damaged board's counts say they are incomplete")
        kt.check("incomplete" not in counts(agg, "board", boards[2]),
                 "b. another board's counts are whole", None, counts(agg, "board", boards[2]))
        kt.check_equal(counts(agg, "province", "NA").get("incomplete", {}).get("boards"), 1,
                       "b. the province's counts name one incomplete board")
        lacks = kt.expected_all_time([e for e in first.unique.values()
                                      if e[1]["board_id"] == damaged and e[0] == "incident"],
                                     fl.registry()[1]).get(("board", damaged))
        if lacks:
            got = agg.all_time("board", damaged)["incidents"]["total"]
            want = expected[("board", damaged)]["incidents"]["total"]
            kt.check_equal(want - got, lacks["incidents"]["total"],
                           "b. the rebuilt board lacks exactly its deleted incidents")
        agg.stop()

        handover_keeps_gaps(work, broker, second.expected(), programs)
        print(f"FIGURES retention gap: {len(first.unique)} events deleted, "
              f"{len(second.unique)} kept; a new instance names all {2 * PARTITIONS} "
              f"partitions, a damaged board alone is named after its rebuild, and a new owner "
              f"names the gaps of the partitions it took over", flush=True)
    finally:
        fl.close_all(programs, broker, work)


if __name__ == "__main__":
    kt.main([test_retention_gap_said])
