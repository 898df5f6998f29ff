"""d. antt.board-counts on a real 3-node Apache Kafka cluster really compacts, and a new
keng-aggregate instance resumes from the compacted state with exact counts.
The topic gets a small segment.ms and min.cleanable.dirty.ratio, so that the states one
instance publishes round after round leave closed segments for the log cleaner. Once
records are gone (the topic holds fewer records than its offsets span, one per key in the
cleaned part), the instance stops; a new one with an empty state dir in the same group takes
every partition, starts from the states and marks in the topic (its log shows checkpoint -1
and a mark for each partition) and must count exactly, before and after more events arrive.
KENG_FAULT_SEED=N replays a run."""

import random
import re
import time

import kafkalib as kl
from kafkalib import fl, kt

TOPIC = "antt.board-counts"
ROUNDS = 5
SEGMENT_MS = 2000


def topic_records(bootstrap):
    """(records, offsets spanned, records whose key appears again later in their partition)
    of the counts topic, read to its end."""
    from confluent_kafka import Consumer, TopicPartition
    import uuid
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"keng-test-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "log_level": 2})
    try:
        parts = c.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        ends, spanned = {}, 0
        for p in parts:
            low, high = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            spanned += high - low
            if high > low:
                ends[p] = high
        c.assign([TopicPartition(TOPIC, p, 0) for p in parts])
        keys = []
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            keys.append((msg.partition(), msg.key()))
            if msg.partition() in ends and msg.offset() + 1 >= ends[msg.partition()]:
                del ends[msg.partition()]
        kt.check(not ends, f"read {TOPIC} to its end", "all partitions", ends)
        return len(keys), spanned, len(keys) - len(set(keys))
    finally:
        c.close()


def test_board_counts_compaction():
    if kl.skipped("test_board_counts_compaction"):
        return
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-kafka-compaction-")
    cluster = None
    first = second = None
    try:
        cluster = kl.Cluster(work, nodes=3, partitions=24)
        cluster.tool("kafka-configs", "--alter", "--entity-type", "topics", "--entity-name",
                     TOPIC, "--add-config",
                     f"segment.ms={SEGMENT_MS},min.cleanable.dirty.ratio=0.01,"
                     "delete.retention.ms=1000,min.compaction.lag.ms=0")
        # The cleaner looks for work every 15 s by default; sooner keeps the test short.
        # Not every version lets this change at run time: then the test waits longer.
        try:
            cluster.tool("kafka-configs", "--alter", "--entity-type", "brokers",
                         "--entity-default", "--add-config", "log.cleaner.backoff.ms=1000")
        except kt.TestFailure as e:
            kt.log(f"cannot shorten the cleaner's backoff ({e}); waiting the default")
        src = fl.EventSource(rng, fl.pick_boards(rng, per_district=10))
        first = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-d",
                             "checkpoint.interval.ms=300\n", name="first")
        first.start().wait_ready(timeout=120)
        producer = kt.EventProducer(cluster.bootstrap, {"log_level": 2})
        for r in range(ROUNDS):
            producer.send(kt.messages(src.new(1500) + src.resends(50)))
            fl.wait_counts(first, src.expected(), f"d. first instance, round {r + 1}",
                           timeout=120)
            time.sleep(SEGMENT_MS / 1000 + 0.5)  # the next round's states roll the segment
        state = {}

        def compacted():
            # Keeps the segments rolling: each pass publishes a few new states.
            producer.send(kt.messages(src.new(20)))
            state["now"] = topic_records(cluster.bootstrap)
            return state["now"][0] < state["now"][1]
        kt.wait_until(compacted, 240, f"{TOPIC} to be compacted", interval=3)
        after = state["now"]
        kt.log(f"{TOPIC} after cleaning: {after[0]} records over {after[1]} offsets, "
               f"{after[2]} superseded")
        fl.wait_counts(first, src.expected(), "d. first instance before it stops", timeout=120)
        first.stop()

        second = fl.Aggregate(work, cluster.bootstrap, "keng-kafka-d",
                              "checkpoint.interval.ms=300\n", name="second")
        second.start().wait_ready(timeout=180)
        expected = src.expected()
        resumed_events = len(src.unique)
        fl.wait_counts(second, expected, "d. new instance from the compacted state",
                       timeout=120, scopes="all")
        counted_at_start = second.metrics().get("keng_events_counted_total", 0)
        with open(second.process.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        assigned = re.findall(r'partition assigned".*?checkpoint=(-?\d+) mark=(-?\d+) '
                              r'units=(\d+)', log)
        kt.check(assigned and all(cp == "-1" for cp, _, _ in assigned),
                 "the new instance starts without a local checkpoint", "checkpoint=-1 for all",
                 assigned[:5])
        from_marks = sum(1 for _, mark, _ in assigned if int(mark) > 0)
        units = sum(int(u) for _, _, u in assigned)
        kt.check(from_marks > 0 and units > 0, "the new instance resumed from marks and unit "
                 "states in the topic", "> 0 marks and units", (from_marks, units))
        producer.send(kt.messages(src.new(1000) + src.resends(50)))
        fl.wait_counts(second, src.expected(), "d. new instance after more events",
                       timeout=120, scopes="all")
        second.stop()
        print(f"FIGURES d. compaction: {after[1]} records published to {TOPIC}, {after[0]} "
              f"left by the log cleaner ({after[2]} of them superseded, not cleaned yet); "
              f"a new instance resumed {from_marks} partitions from "
              f"their marks with {units} unit states, counted {counted_at_start:.0f} input "
              f"events itself, and counts all {resumed_events} events exactly, then "
              f"{len(src.unique)} after more arrived", flush=True)
    finally:
        kl.close_all((first, second), cluster, work)


if __name__ == "__main__":
    kt.main([test_board_counts_compaction])
