"""e. keng-replay seeks by time on a real 3-node Apache Kafka cluster. The same messages
(300 days of events, each produced with its report time as the message timestamp, some
reported days late, some resent, one not a keng event) go to the cluster and to the embedded
broker, which cannot look up offsets by time and so is scanned. For a period in the middle
of the data the replay on the cluster seeks by timestamp (offsetsForTimes), reads fewer
messages than the scan, and writes the same report; the counts also equal a recount here."""

import csv
import json
import os
import random
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

import kafkalib as kl
from kafkalib import fl, kt

VN = timezone(timedelta(hours=7))
DAY = kl.DAY
EVENTS = 6000


def replay(bootstrap, date_from, date_to, out_dir):
    """Runs keng-replay; returns (review.json, review.csv rows, its figures from the log)."""
    result = subprocess.run([kt.binary("keng-replay"), "--from", date_from, "--to", date_to,
                             "--out", out_dir], env=dict(os.environ, KENG_BROKERS=bootstrap),
                            capture_output=True, timeout=300)
    log = result.stderr.decode(errors="replace")
    kt.check_equal(result.returncode, 0, f"keng-replay exit status ({log[-800:]})")
    figures = {}
    for key in ("sought_by_time", "scanned_from_start", "nothing_that_late", "messages"):
        m = re.search(rf"\b{key}=(\d+)", log)
        kt.check(m is not None, f"keng-replay logs {key}", f"{key}=N", log[-800:])
        figures[key] = int(m.group(1))
    with open(os.path.join(out_dir, "review.json")) as f:
        review = json.load(f)
    with open(os.path.join(out_dir, "review.csv"), newline="") as f:
        rows = list(csv.reader(f))
    return review, rows, figures


def check_same_review(got, scan, what):
    """The review by time equals the scan's: every scope's counts and the data-quality
    counts of what both read. A seek reads fewer of the messages outside the period, so
    out_of_period and undecodable may be smaller. Names the first scope that differs."""
    got, scan = dict(got), dict(scan)
    quality, scan_quality = got.pop("data_quality"), scan.pop("data_quality")
    kt.check_equal(sorted(got), sorted(scan), f"{what}: the review's sections")
    for key in sorted(scan):
        a, b = got[key], scan[key]
        if isinstance(b, list):
            kt.check_equal(len(a), len(b), f"{what}: number of {key}")
            for x, y in zip(a, b):
                kt.check_equal(x, y, f"{what}: {key} {y.get('id', y.get('month'))}")
        else:
            kt.check_equal(a, b, f"{what}: {key}")
    for key in ("counted", "duplicates", "unknown_board"):
        kt.check_equal(quality[key], scan_quality[key], f"{what}: data quality {key}")
    for key in ("out_of_period", "undecodable"):
        kt.check(quality[key] <= scan_quality[key], f"{what}: data quality {key} at most the "
                 "scan's", f"<= {scan_quality[key]}", quality[key])
    return quality


def test_replay_seeks_by_time():
    if kl.skipped("test_replay_seeks_by_time"):
        return
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-kafka-replay-")
    cluster = broker = None
    try:
        cluster = kl.Cluster(work, nodes=3, partitions=24)
        # The embedded broker whatever KENG_TEST_BROKER says: it is the scan to compare with.
        broker = kt.EmbeddedBroker(work, partitions=24)

        rows, by_id = fl.registry()
        boards = rng.sample([r["board_id"] for r in rows], 60)
        now = int(time.time() * 1000)
        events, records = kl.reports_over_days(rng, boards, EVENTS, 150, now, 300)
        # One message that is not a keng event, in the middle of the period below.
        middle = now - 170 * DAY
        records.append(("antt.incidents", boards[0].encode(), b"\x01not avro", middle))
        records.sort(key=lambda r: r[3])  # as a stream: in the order the reports came in
        kl.produce_with_times(cluster.bootstrap, records)
        kl.produce_with_times(broker.bootstrap, records)

        # A period in the middle: local dates, the end exclusive.
        today = datetime.fromtimestamp(now / 1000, VN).date()
        date_from = (today - timedelta(days=200)).isoformat()
        date_to = (today - timedelta(days=140)).isoformat()
        sought, sought_rows, on_kafka = replay(cluster.bootstrap, date_from, date_to,
                                               work.file("review-kafka"))
        scanned, scanned_rows, on_embedded = replay(broker.bootstrap, date_from, date_to,
                                                    work.file("review-scan"))
        kt.log(f"on Kafka: {on_kafka}; on the embedded broker: {on_embedded}")

        kt.check(on_kafka["sought_by_time"] > 0 and on_kafka["scanned_from_start"] == 0,
                 "the replay on Kafka seeks every partition by time",
                 "sought_by_time > 0, scanned_from_start 0", on_kafka)
        kt.check_equal((on_embedded["sought_by_time"], on_embedded["scanned_from_start"]),
                       (0, on_kafka["sought_by_time"] + on_kafka["nothing_that_late"]),
                       "the embedded broker's partitions with messages all scanned (sought by "
                       "time, scanned)")
        kt.check_equal(on_embedded["messages"], len(records), "messages the scan read")
        kt.check(on_kafka["messages"] < on_embedded["messages"],
                 "the replay by time reads fewer messages than the scan",
                 f"< {on_embedded['messages']}", on_kafka["messages"])

        # The report is the scan's. Only the count of events read that fell outside the
        # period can differ: the seek does not read most of them.
        kt.check_equal(sought_rows, scanned_rows, "review.csv by time = review.csv of the scan")
        q_sought = check_same_review(sought, scanned, "the middle period")
        kt.check_equal(q_sought["undecodable"], 1, "undecodable messages in the period")

        # And both are right: each event of the period once.
        start = int(datetime.fromisoformat(date_from).replace(tzinfo=VN).timestamp() * 1000)
        end = int(datetime.fromisoformat(date_to).replace(tzinfo=VN).timestamp() * 1000)
        in_period = [(k, ev) for k, ev, _ in events if start <= ev["occurred_at"] < end]
        expected = kt.expected_all_time(in_period, by_id)
        kt.check_equal(q_sought["counted"], len(in_period), "events counted")
        got = sought["province"]
        kt.check_equal({"incidents": got["incidents"]["total"],
                        "mediations": got["mediations"]["total"]},
                       {"incidents": expected.get(("province", "NA"), kt.empty_tally())
                        ["incidents"]["total"],
                        "mediations": expected.get(("province", "NA"), kt.empty_tally())
                        ["mediations"]["total"]}, "province totals")
        late_in = sum(1 for k, ev, ts in events if start <= ev["occurred_at"] < end
                      and ts - ev["occurred_at"] >= DAY)
        print(f"FIGURES e. replay by time: {len(records)} messages over 300 days; period "
              f"{date_from} to {date_to}: the replay on Kafka sought {on_kafka['sought_by_time']} "
              f"partitions by time ({on_kafka['nothing_that_late']} had nothing that late) and "
              f"read {on_kafka['messages']} messages, the scan {on_embedded['messages']}; both "
              f"counted {q_sought['counted']} events ({late_in} of them reported a day or more "
              f"late) and wrote the same review", flush=True)

        # The last days: a partition that holds nothing produced from a day before the
        # period on is not read at all; the report is still the scan's.
        date_from = (today - timedelta(days=3)).isoformat()
        date_to = (today + timedelta(days=1)).isoformat()
        recent, recent_rows, on_kafka = replay(cluster.bootstrap, date_from, date_to,
                                               work.file("recent-kafka"))
        recent_scan, recent_scan_rows, on_embedded = replay(broker.bootstrap, date_from, date_to,
                                                            work.file("recent-scan"))
        kt.check_equal((on_kafka["scanned_from_start"],
                        on_kafka["sought_by_time"] + on_kafka["nothing_that_late"]),
                       (0, on_embedded["scanned_from_start"]),
                       "the last days on Kafka: partitions scanned, and sought or skipped")
        kt.check_equal(recent_rows, recent_scan_rows, "the last days: review.csv = the scan's")
        check_same_review(recent, recent_scan, "the last days")
        print(f"FIGURES e. replay by time, {date_from} to {date_to}: "
              f"{on_kafka['sought_by_time']} partitions sought by time, "
              f"{on_kafka['nothing_that_late']} not read (nothing that late), "
              f"{on_kafka['messages']} messages read against {on_embedded['messages']} scanned; "
              f"{recent['data_quality']['counted']} events counted by both", flush=True)
    finally:
        if broker is not None:
            broker.stop()
        if cluster is not None:
            cluster.down()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_replay_seeks_by_time])
