"""keng-replay --units: the review of 2025, a year that contains the reform of 1 July, drawn from
the registry versions in the topic antt.registry (the built-in 2024 registry from 2024-01-01,
the 130 communes from 2025-07-01). Under `current` it has the 130 communes and no district
level; under `as-of:2025-06-30` the 21 districts and 460 communes of before; the province's
totals are the same under both, and both state the change of 1 July. A time with no version
in force, a malformed --units and --units with --registry are refused.

Under `current` each commune of 2025 lists the communes of 2024 that became it, each with its
figures from before 1 July, and those lines plus the commune's figures since add up to its
total (review.json, review.csv, review.html). A small pair of versions publishes what the
real one lacks: a commune split board by board, a district gone whole into one commune, a
removed board and a new one. The removed board keeps its history under the newer units (under
the commune its old commune became, as former_boards), the new one under the older units
(under the province alone), so the province's totals are the same under both; only a board
that no version has is unknown_board."""

import csv
import hashlib
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


def read_csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def tally(events):
    """{'incidents': n, 'mediations': n} of a list of (kind, event)."""
    return {"incidents": sum(k == "incident" for k, _ in events),
            "mediations": sum(k == "mediation" for k, _ in events)}


def totals(scope):
    return {"incidents": scope["incidents"]["total"],
            "mediations": scope["mediations"]["total"]}


def check_sums(review, csv_path, what):
    """Under each commune, the predecessors' figures and its own since the switch add up to its
    total, in review.json and in review.csv (every figure column)."""
    for c in review["communes"]:
        for kind in ("incidents", "mediations"):
            parts = [p[kind] for p in c["predecessors"]] + [c["since_switch"][kind]]
            kt.check_equal(sum(p["total"] for p in parts), c[kind]["total"],
                           f"{what}: {c['id']}'s {kind}: predecessors before plus since")
            for key in ("by_category", "by_resolution") if kind == "incidents" else (
                    "by_outcome", "by_dispute_type"):
                for sym, n in c[kind][key].items():
                    kt.check_equal(sum(p[key][sym] for p in parts), n,
                                   f"{what}: {c['id']}'s {kind} {sym}")
    rows = read_csv_rows(csv_path)
    figures = [k for k in rows[0] if k not in ("level", "id", "name", "parent_id")]
    communes = {r["id"]: r for r in rows if r["level"] == "commune"}
    parts = {}
    for r in rows:
        if r["level"] == "since_switch" or r["level"].startswith("before_switch"):
            sums = parts.setdefault(r["parent_id"], {k: 0 for k in figures})
            for k in figures:
                sums[k] += int(r[k])
    kt.check_equal(sorted(parts), sorted(communes), f"{what}: review.csv's communes with parts")
    for cid, sums in parts.items():
        kt.check_equal(sums, {k: int(communes[cid][k]) for k in figures},
                       f"{what}: review.csv rows under {cid}")


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

        # Under current, each commune of 2025 lists the 2024 communes that became it (the
        # lineage's lines to it), with their figures from before 1 July.
        lineage = read_csv_rows(LINEAGE_2025)
        commune_2025 = {r["board_id"]: r["commune_id"] for r in read_csv_rows(REG_2025)}
        became = {r["commune_id_2024"]: r["commune_id_2025"] for r in lineage}
        names_2024 = {r["commune_id"]: r["commune_name"] for r in rows}
        kt.check_equal(now["registry"]["predecessors"],
                       {"effective": "2025-06-30T17:00:00.000Z",
                        "previous": "antt.registry@2023-12-31T17:00:00Z",
                        "districts": 21, "communes": 460, "boards": 7588},
                       "current: the version the predecessors come from")
        for c in now["communes"]:
            preds = c["predecessors"]
            kt.check_equal(sorted(p["id"] for p in preds),
                           sorted(o for o, n in became.items() if n == c["id"]),
                           f"{c['id']}: its predecessors are the lineage's communes")
            for p in preds:
                expect = tally([(k, ev) for k, ev in events if ev["occurred_at"] < reform and
                                by_id[ev["board_id"]]["commune_id"] == p["id"] and
                                commune_2025[ev["board_id"]] == c["id"]])
                kt.check_equal((p["level"], p["name"], p["split"], totals(p)),
                               ("commune", names_2024[p["id"]], False, expect),
                               f"{c['id']}: predecessor {p['id']} before 1 July")
            kt.check_equal(totals(c["since_switch"]),
                           tally([(k, ev) for k, ev in events if ev["occurred_at"] >= reform and
                                  commune_2025[ev["board_id"]] == c["id"]]),
                           f"{c['id']}: since 1 July")
        check_sums(now, os.path.join(work.file("review-current"), "review.csv"), "current")
        kt.check("predecessors" not in before["communes"][0] and
                 before["registry"]["predecessors"] is None,
                 "as-of:2025-06-30 (the first version, no lineage): no predecessors", None,
                 before["registry"]["predecessors"])
        with open(os.path.join(work.file("review-current"), "review.html"),
                  encoding="utf-8") as f:
            html = f.read()
        kt.check_equal(html.count("<tr class=pred data-level=commune"), 460,
                       "review.html: a line per 2024 commune under its 2025 commune")
        kt.check("Số liệu trước ngày 01/07/2025 của các đơn vị cũ" in html,
                 "review.html: the section of predecessors", "its heading", "absent")

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


# A small province across a switch: Xã Cũ 1 merged whole into Xã Mới 1, Xã Cũ 2 split board
# by board, Huyện Hai gone whole into Xã Mới 2, K7 removed, K8 new.
SMALL_BEFORE = """board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members
K1,Khối 1,OC1,Xã Cũ 1,OD1,Huyện Một,1,1
K2,Khối 2,OC1,Xã Cũ 1,OD1,Huyện Một,1,1
K7,Khối 7,OC1,Xã Cũ 1,OD1,Huyện Một,1,1
K3,Khối 3,OC2,Xã Cũ 2,OD1,Huyện Một,1,1
K4,Khối 4,OC2,Xã Cũ 2,OD1,Huyện Một,1,1
K5,Khối 5,OC3,Xã Cũ 3,OD2,Huyện Hai,1,1
K6,Khối 6,OC4,Xã Cũ 4,OD2,Huyện Hai,1,1
"""
SMALL_AFTER = """board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members
K1,Khối 1,N1,Xã Mới 1,,,1,1
K2,Khối 2,N1,Xã Mới 1,,,1,1
K3,Khối 3,N1,Xã Mới 1,,,1,1
K8,Khối 8,N1,Xã Mới 1,,,1,1
K4,Khối 4,N2,Xã Mới 2,,,1,1
K5,Khối 5,N2,Xã Mới 2,,,1,1
K6,Khối 6,N2,Xã Mới 2,,,1,1
"""
SMALL_LINEAGE = """from_id,from_name,to_id,to_name
OC1,Xã Cũ 1,N1,Xã Mới 1
K3,Khối 3,N1,Xã Mới 1
K4,Khối 4,N2,Xã Mới 2
OD2,Huyện Hai,N2,Xã Mới 2
K7,Khối 7,,
"""


def test_predecessors_split_and_whole_district():
    rng = random.Random(2025)
    work = kt.Workdir(prefix="keng-replay-preds-")
    broker = kt.Broker(work, partitions=2)
    try:
        files = {}
        for name, text in (("before.csv", SMALL_BEFORE), ("after.csv", SMALL_AFTER),
                           ("lineage.csv", SMALL_LINEAGE)):
            files[name] = work.file(name)
            with open(files[name], "w", encoding="utf-8") as f:
                f.write(text)
        registry_tool("--publish", files["before.csv"], "--effective", "2024-01-01",
                      "--allow-past", "--brokers", broker.bootstrap)
        registry_tool("--publish", files["after.csv"], "--effective", "2025-07-01", "--lineage",
                      files["lineage.csv"], "--allow-past", "--brokers", broker.bootstrap)

        old = {r["board_id"]: r for r in csv.DictReader(SMALL_BEFORE.splitlines())}
        new = {r["board_id"]: r for r in csv.DictReader(SMALL_AFTER.splitlines())}
        start, reform = ms(datetime(2025, 1, 1, tzinfo=VN)), ms(datetime(2025, 7, 1, tzinfo=VN))
        end = ms(datetime(2026, 1, 1, tzinfo=VN))
        events = []
        for board in sorted(set(old) | set(new) | {"K99"}):
            # Before and after the switch, and at its edges (a millisecond before it, and it).
            times = [rng.randrange(start, reform) for _ in range(15)] + \
                    [rng.randrange(reform, end) for _ in range(15)] + [reform - 1, reform]
            for t in times:
                kind = rng.choice(["incident", "incident", "mediation"])
                events.append((kind, kt.random_event(rng, kind, board, t)))
        kt.produce(broker.bootstrap, [("antt.incidents" if k == "incident" else
                                       "antt.mediations", ev["board_id"].encode(),
                                       kt.encode_framed(k, ev)) for k, ev in events])

        out_dir = work.file("review-current")
        result = replay(broker, "--units", "current", "--out", out_dir)
        kt.check_equal(result.returncode, 0, f"--units current ({result.stderr[-800:]!r})")
        kt.check("each commune lists its predecessors' figures from before the switch" in
                 result.stderr, "the log says the communes list their predecessors",
                 "its line", result.stderr[-800:])
        with open(os.path.join(out_dir, "review.json")) as f:
            review = json.load(f)

        def before(boards):
            return tally([(k, ev) for k, ev in events
                          if ev["occurred_at"] < reform and ev["board_id"] in boards])

        expected = {
            "N1": [("commune", "OC1", "Xã Cũ 1", False, 2, before({"K1", "K2", "K7"})),
                   ("commune", "OC2", "Xã Cũ 2", True, 1, before({"K3"})),
                   ("new_boards", None, None, False, 1, before({"K8"}))],
            "N2": [("commune", "OC2", "Xã Cũ 2", True, 1, before({"K4"})),
                   ("district", "OD2", "Huyện Hai", False, 2, before({"K5", "K6"}))],
        }
        for c in review["communes"]:
            kt.check_equal([(p["level"], p["id"], p["name"], p["split"], p["boards"], totals(p))
                            for p in c["predecessors"]], expected[c["id"]],
                           f"{c['id']}: its predecessors before the switch")
            kt.check_equal(totals(c["since_switch"]),
                           tally([(k, ev) for k, ev in events if ev["occurred_at"] >= reform
                                  and (new.get(ev["board_id"], {}).get("commune_id") == c["id"]
                                       or (ev["board_id"] == "K7" and c["id"] == "N1"))]),
                           f"{c['id']}: since the switch (K7's late events in N1)")
        k7 = tally([(k, ev) for k, ev in events if ev["board_id"] == "K7"])
        k8 = tally([(k, ev) for k, ev in events if ev["board_id"] == "K8"])
        k99 = sum(ev["board_id"] == "K99" for _, ev in events)
        kt.check_equal(review["data_quality"]["unknown_board"], k99,
                       "only the board no version has is unknown_board")
        kt.check_equal(review["data_quality"]["former_board"], sum(k7.values()),
                       "the removed board's events are counted as a former board's")
        n1 = next(c for c in review["communes"] if c["id"] == "N1")
        kt.check_equal((totals(n1["former_boards"]), totals(review["province"]["former_boards"]),
                        totals(review["province"]["former_boards_in_no_unit"])),
                       (k7, k7, {"incidents": 0, "mediations": 0}),
                       "K7 under N1 (Xã Cũ 1 became it), marked former_boards")
        kt.check_equal(totals(n1), tally([(k, ev) for k, ev in events
                                          if ev["board_id"] in {"K1", "K2", "K3", "K8", "K7"}]),
                       "N1's totals hold K7's history")
        check_sums(review, os.path.join(out_dir, "review.csv"), "small")
        rows = read_csv_rows(os.path.join(out_dir, "review.csv"))
        kt.check_equal(sorted((r["level"], r["id"], r["parent_id"]) for r in rows
                              if r["level"].startswith("before_switch")),
                       [("before_switch", "OC1", "N1"), ("before_switch", "OD2", "N2"),
                        ("before_switch_new_boards", "", "N1"),
                        ("before_switch_split", "OC2", "N1"),
                        ("before_switch_split", "OC2", "N2")],
                       "review.csv: the rows of the predecessors")
        former_rows = {(r["level"], r["id"]): r for r in rows if r["level"].startswith("former")}
        kt.check_equal(sorted(former_rows), [("former_boards", "N1"), ("former_boards", "NA"),
                                             ("former_boards_in_no_unit", "NA")],
                       "review.csv: the rows of former boards")
        kt.check_equal((int(former_rows[("former_boards", "N1")]["incidents"]),
                        int(former_rows[("former_boards", "N1")]["mediations"])),
                       (k7["incidents"], k7["mediations"]), "review.csv: N1's former boards")
        with open(os.path.join(out_dir, "review.html"), encoding="utf-8") as f:
            html = f.read()
        kt.check_equal(html.count('<tr class="pred split" data-level=commune data-key="OC2">'), 2,
                       "review.html: the split commune under both")
        kt.check("chia tách" in html and "cả huyện" in html and "Ban mới" in html,
                 "review.html says split, whole district and new boards", "all three",
                 html[html.find("<table class=predecessors>"):][:1500])
        kt.check('<tr class=unit data-level=commune data-key="N1"><td>N1</td><td '
                 f'class=name>Xã Mới 1</td><td class="n incidents">{k7["incidents"]}</td>' in html
                 and "Ban không còn trong danh mục" in html,
                 "review.html: the table of former boards shows K7 under N1", "its row",
                 html[html.find("<table class=former>"):][:1500])

        # The province's totals under the units before the switch are the same: K8, which
        # only the later version has, counts there under the province alone.
        as_of = work.file("review-before")
        result = replay(broker, "--units", "as-of:2025-06-30", "--out", as_of)
        kt.check_equal(result.returncode, 0, f"as-of:2025-06-30 ({result.stderr[-800:]!r})")
        with open(os.path.join(as_of, "review.json")) as f:
            earlier = json.load(f)
        kt.check_equal(totals(review["province"]), totals(earlier["province"]),
                       "province totals: the same under current and as-of:2025-06-30")
        kt.check_equal(totals(review["province"]),
                       tally([(k, ev) for k, ev in events if ev["board_id"] != "K99"]),
                       "province totals: every event of a board some version has")
        kt.check_equal({k: review["province"][k] for k in ("incidents", "mediations")},
                       {k: earlier["province"][k] for k in ("incidents", "mediations")},
                       "province: every figure the same under both")
        kt.check_equal((totals(earlier["province"]["former_boards_in_no_unit"]),
                        earlier["data_quality"]["unknown_board"]), (k8, k99),
                       "as-of:2025-06-30: K8 under the province alone, K99 unknown")
        kt.check_equal(earlier["registry"]["predecessors"], None,
                       "as-of:2025-06-30: no predecessors")

        # A lineage that does not match its sha256 (a document written by hand) stops the
        # replay, naming it, rather than show predecessors from a damaged file.
        key = "2025-06-30T17:00:00Z"
        doc = {"format": 1, "effective": key, "published_at": "2025-06-01T00:00:00.000Z",
               "boards": 7, "communes": 2, "districts": 0,
               "registry": {"file": "after.csv", "text": SMALL_AFTER,
                            "sha256": hashlib.sha256(SMALL_AFTER.encode()).hexdigest()},
               "units": None,
               "lineage": {"file": "lineage.csv", "text": SMALL_LINEAGE.replace("N2", "N1"),
                           "sha256": hashlib.sha256(SMALL_LINEAGE.encode()).hexdigest()}}
        kt.produce(broker.bootstrap, [("antt.registry", key.encode(), json.dumps(doc).encode())])
        result = replay(broker, "--units", "current", "--out", work.file("review-damaged"))
        kt.check_equal(result.returncode, 78, f"a damaged lineage ({result.stderr[-800:]!r})")
        kt.check("the lineage of the version drawn does not match its sha256" in result.stderr
                 and "antt.registry@2025-06-30T17:00:00Z lineage" in result.stderr,
                 "the refusal names the lineage", "does not match its sha256",
                 result.stderr[-800:])
    finally:
        broker.stop()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_review_across_the_reform, test_predecessors_split_and_whole_district])
