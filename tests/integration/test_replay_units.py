"""keng-replay --units: the review of 2025, a year that contains the reform of 1 July, drawn from
the registry versions in the topic antt.registry (the built-in 2024 registry from 2024-01-01,
the 130 communes from 2025-07-01). Under `current` it has the 130 communes and no district
level; under `as-of:2025-06-30` the 21 districts and 460 communes of before; the province's
totals are the same under both, and both state the change of 1 July. A time with no version
in force, a malformed --units and --units with --registry are refused."""

import json
import os
import random
import subprocess
from datetime import datetime, timedelta, timezone

import kengtest as kt

VN = timezone(timedelta(hours=7))
REGISTRY_DIR = os.path.join(kt.SOURCE_DIR, "registry")
REG_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.csv")
UNITS_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.communes.csv")
LINEAGE_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2024-to-2025.lineage.csv")


def ms(dt):
    return int(dt.timestamp() * 1000)


def registry_tool(*args):
    out = subprocess.run([kt.binary("keng-registry"), *args], capture_output=True, text=True,
                         timeout=120)
    kt.check_equal(out.returncode, 0, f"keng-registry {args[0]} ({out.stderr[-500:]!r})")
    return out


def replay(broker, *args):
    return subprocess.run([kt.binary("keng-replay"), "--year", "2025", *args],
                          env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                          capture_output=True, text=True, timeout=300)


def test_review_across_the_reform():
    rng = random.Random(1707)
    work = kt.Workdir(prefix="keng-replay-units-")
    broker = kt.Broker(work, partitions=3)
    try:
        reg_2024 = work.file("boards-2024.csv")
        registry_tool("--write", reg_2024)
        registry_tool("--publish", reg_2024, "--effective", "2024-01-01", "--allow-past",
                      "--brokers", broker.bootstrap)
        registry_tool("--publish", REG_2025, "--effective", "2025-07-01", "--units", UNITS_2025,
                      "--lineage", LINEAGE_2025, "--allow-past", "--brokers", broker.bootstrap)

        rows = kt.registry_rows()
        by_id = {r["board_id"]: r for r in rows}
        boards = rng.sample(rows, 120)
        start, reform = ms(datetime(2025, 1, 1, tzinfo=VN)), ms(datetime(2025, 7, 1, tzinfo=VN))
        end = ms(datetime(2026, 1, 1, tzinfo=VN))
        events = []
        for lo, hi in ((start, reform), (reform, end)):  # both sides of the reform
            for _ in range(400):
                kind = rng.choice(["incident", "incident", "mediation"])
                events.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                                     rng.randrange(lo, hi))))
        kt.produce(broker.bootstrap, [("antt.incidents" if k == "incident" else
                                       "antt.mediations", ev["board_id"].encode(),
                                       kt.encode_framed(k, ev)) for k, ev in events])
        expected = kt.expected_all_time(events, by_id)[("province", "NA")]

        reviews = {}
        for units in ("current", "as-of:2025-06-30"):
            out_dir = work.file(f"review-{units.replace(':', '-')}")
            result = replay(broker, "--units", units, "--out", out_dir)
            kt.check_equal(result.returncode, 0, f"--units {units}: exit status "
                           f"({result.stderr[-800:]!r})")
            with open(os.path.join(out_dir, "review.json")) as f:
                reviews[units] = json.load(f)
            with open(os.path.join(out_dir, "review.html"), encoding="utf-8") as f:
                html = f.read()
            kt.check("Danh mục đơn vị thay đổi trong kỳ" in html and "01/07/2025" in html and
                     "130 xã, phường, không còn cấp huyện" in html,
                     f"--units {units}: review.html states the reform", "the change of 1 July",
                     html[html.find("<header>"):html.find("</header>") + 400])
            kt.check("registry version chosen" in result.stderr,
                     f"--units {units}: the log names the version", "registry version chosen",
                     result.stderr[-800:])

        now, before = reviews["current"], reviews["as-of:2025-06-30"]
        for units, review in reviews.items():
            reg = review["registry"]
            kt.check_equal((reg["source"], reg["units"]), ("topic", units),
                           f"{units}: registry source and units")
            kt.check_equal([(c["effective"], c["communes"], c["districts"])
                            for c in reg["changes"]],
                           [("2025-06-30T17:00:00.000Z", 130, 0)],
                           f"{units}: the change within 2025")
            kt.check_equal(review["data_quality"]["counted"], len(events),
                           f"{units}: every event counted")
            kt.check_equal(review["data_quality"]["unknown_board"], 0,
                           f"{units}: no unknown board")
            kt.check_equal(review["province"]["incidents"]["total"], expected["incidents"]["total"],
                           f"{units}: the province's incidents")
        kt.check_equal((now["registry"]["communes"], now["registry"]["districts"],
                        now["registry"]["path"]), (130, 0, "antt.registry@2025-06-30T17:00:00Z"),
                       "current: the 130 communes")
        kt.check_equal((before["registry"]["communes"], before["registry"]["districts"],
                        before["registry"]["path"]), (460, 21, "antt.registry@2023-12-31T17:00:00Z"),
                       "as-of:2025-06-30: the 2024 structure")
        kt.check_equal((len(now["communes"]), len(now["districts"])), (130, 0),
                       "current: the review's communes and districts")
        kt.check_equal((len(before["communes"]), len(before["districts"])), (460, 21),
                       "as-of:2025-06-30: the review's communes and districts")
        kt.check_equal(now["province"], before["province"],
                       "the province's totals are the same under both")

        # Refusals.
        result = replay(broker, "--units", "as-of:2023-06-01", "--out", work.file("none"))
        kt.check_equal(result.returncode, 78, f"no version in force ({result.stderr[-500:]!r})")
        kt.check("no registry version is in force at that time" in result.stderr,
                 "the refusal says why", "no registry version", result.stderr[-500:])
        result = replay(broker, "--units", "yesterday")
        kt.check_equal(result.returncode, 64, f"a malformed --units ({result.stderr[-500:]!r})")
        kt.check("--units takes current or as-of:TIME" in result.stderr, "says what it takes",
                 "current or as-of:TIME", result.stderr[-500:])
        result = replay(broker, "--units", "current", "--registry", reg_2024)
        kt.check_equal(result.returncode, 64, f"--units with --registry ({result.stderr!r})")
    finally:
        broker.stop()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_review_across_the_reform])
