"""keng-replay: the annual review from the topics. Events of the year (in Vietnam's calendar),
events just outside it, resends and a message that is not a keng event are all on the topics;
the report counts exactly the year's events, once each, per board and rolled up, by month."""

import csv
import json
import os
import random
import subprocess
from datetime import datetime, timedelta, timezone

import kengtest as kt

VN = timezone(timedelta(hours=7))


def ms(dt):
    return int(dt.timestamp() * 1000)


def test_review_of_a_year():
    rng = random.Random(7)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=3)
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        boards = rng.sample(rows, 80)
        start, end = ms(datetime(2025, 1, 1, tzinfo=VN)), ms(datetime(2026, 1, 1, tzinfo=VN))
        in_year, outside = [], []
        for _ in range(3000):
            kind = rng.choice(["incident", "incident", "mediation"])
            ev = kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                 rng.randrange(start, end))
            in_year.append((kind, ev))
        # The edges: the last millisecond of 2024 and the first of 2026 in Vietnam's time are
        # outside; the first millisecond of 2025 is inside.
        for occurred in (start - 1, end, end + 5000, start - 86400_000):
            kind = "incident"
            outside.append((kind, kt.random_event(rng, kind, boards[0]["board_id"], occurred)))
        edge = kt.random_event(rng, "mediation", boards[1]["board_id"], start)
        in_year.append(("mediation", edge))
        resent = rng.sample(in_year, 150)
        messages = [("antt.incidents" if k == "incident" else "antt.mediations",
                     ev["board_id"].encode(), kt.encode_framed(k, ev))
                    for k, ev in in_year + outside + resent]
        rng.shuffle(messages)
        messages.append(("antt.incidents", b"D01-C001-B01", b"\x01not avro"))
        kt.produce(broker.bootstrap, messages)

        out_dir = work.file("review")
        result = subprocess.run([kt.binary("keng-replay"), "--year", "2025", "--out", out_dir],
                                env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                                capture_output=True, timeout=300)
        kt.check_equal(result.returncode, 0, f"keng-replay exit status ({result.stderr[-800:]!r})")

        with open(os.path.join(out_dir, "review.json")) as f:
            review = json.load(f)
        expected = kt.expected_all_time(in_year, boards_by_id)
        quality = review["data_quality"]
        kt.check_equal(quality, {"counted": len(in_year), "duplicates": len(resent),
                                 "out_of_period": len(outside), "unknown_board": 0,
                                 "undecodable": 1, "invalid_time": 0}, "data quality line")

        def strip(t):
            return {"incidents": {k: v for k, v in t["incidents"].items()},
                    "mediations": {k: v for k, v in t["mediations"].items()
                                   if k != "by_dispute_type"}}

        kt.check_equal(strip(review["province"]), expected[("province", "NA")], "province totals")
        for d in review["districts"]:
            want = expected.get(("district", d["id"]), kt.empty_tally())
            kt.check_equal(strip(d), want, f"district {d['id']}")
        for b in review["boards"]:
            kt.check_equal(strip(b), expected[("board", b["id"])], f"board {b['id']}")
        kt.check_equal(len(review["boards"]), len({ev["board_id"] for _, ev in in_year}),
                       "boards listed")

        months = [0] * 12
        for kind, ev in in_year:
            local = datetime.fromtimestamp(ev["occurred_at"] / 1000, VN)
            if kind == "incident":
                months[local.month - 1] += 1
        kt.check_equal([m["incidents"]["total"] for m in review["months"]], months,
                       "incidents by month")

        with open(os.path.join(out_dir, "review.csv"), newline="") as f:
            table = list(csv.DictReader(f))
        province = next(r for r in table if r["level"] == "province")
        kt.check_equal(int(province["incidents_TRANSFERRED_TO_POLICE"]),
                       expected[("province", "NA")]["incidents"]["by_resolution"]["TRANSFERRED_TO_POLICE"],
                       "CSV: cases transferred to police")
        kt.check_equal(len([r for r in table if r["level"] == "board"]), len(rows),
                       "CSV lists every board")
        with open(os.path.join(out_dir, "review.html"), encoding="utf-8") as f:
            html = f.read()
        kt.check("Báo cáo tổng kết năm 2025" in html, "HTML title", "the year's title", html[:200])
    finally:
        broker.stop()
        work.cleanup()


def test_bad_arguments():
    out = subprocess.run([kt.binary("keng-replay"), "--year", "1999"], capture_output=True,
                         timeout=10)
    kt.check_equal(out.returncode, 64, "exit status for a bad year")
    kt.check(b"--year" in out.stderr, "error names the flag", True, out.stderr)
    out = subprocess.run([kt.binary("keng-replay"), "--from", "2025-01-01"], capture_output=True,
                         timeout=10)
    kt.check_equal(out.returncode, 64, "exit status without --to")


if __name__ == "__main__":
    kt.main([test_review_of_a_year, test_bad_arguments])
