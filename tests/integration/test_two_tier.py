"""Nghệ An as it is governed since 1 July 2025: two tiers, 130 communes, no district level.
registry/nghe-an-2025-07-01.csv places the 7,588 boards in the 130 communes; every program
takes it with --registry. Its levels come from the data: the API answers province, commune
and board, and refuses the district level by naming the levels there are; the province's
children are its communes; tokens are scoped to a commune; an alert rule at the district
level is refused at start; the annual review compares communes. A registry whose rows mix
boards with and without a district, or that gives one id to two levels, is refused with its
line."""

import csv
import json
import os
import random
import subprocess
import time

import kengtest as kt
import test_dashboard as dash

REGISTRY = os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2025-07-01.csv")
LINEAGE = os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2024-to-2025.lineage.csv")
DAY = 86_400_000


def rows_by_id():
    with open(REGISTRY, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return rows, {r["board_id"]: r for r in rows}


def registry_check(path):
    return subprocess.run([kt.binary("keng-registry"), "--check", path], capture_output=True,
                          text=True, timeout=30)


def test_registry_of_2025_loads():
    out = registry_check(REGISTRY)
    kt.check_equal(out.returncode, 0, f"keng-registry --check exit status ({out.stderr!r})")
    kt.check_equal(out.stdout.splitlines(),
                   ["districts=0 communes=130 boards=7588 groups=38578 members=38661",
                    "levels: province, commune, board"], "counts and levels")
    rows, _ = rows_by_id()
    default = {r["board_id"] for r in kt.registry_rows()}
    kt.check_equal({r["board_id"] for r in rows}, default, "the same 7,588 boards as 2024")
    with open(os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2025-07-01.communes.csv"),
              encoding="utf-8") as f:
        official = {r["commune_id"]: r["commune_name"] for r in csv.DictReader(f)}
    kt.check_equal({(r["commune_id"], r["commune_name"]) for r in rows}, set(official.items()),
                   "the 130 official communes, each with boards")


def test_bad_registries_are_refused():
    work = kt.Workdir(prefix="keng-two-tier-bad-")
    try:
        head = "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
        cases = [
            ("mixed", head + "B1,Thôn 1,C1,Xã Một,,,5,5\nB2,Thôn 2,C2,Xã Hai,D1,Huyện Một,5,5\n",
             "line 3: this board has a district, but line 2 has none"),
            ("mixed-other-way", head + "B1,Thôn 1,C1,Xã Một,D1,Huyện,5,5\nB2,Thôn 2,C2,Xã Hai,,,5,5\n",
             "line 3: district_id is empty, but line 2 has one"),
            ("half-district", head + "B1,Thôn 1,C1,Xã Một,D1,,5,5\n", "line 2: district_name is empty"),
            ("id-twice", head + "B1,Thôn 1,C1,Xã Một,,,5,5\nC1,Thôn 2,C2,Xã Hai,,,5,5\n",
             "line 3: board_id C1 is also the id of a unit of another level"),
            ("commune-two-names", head + "B1,Thôn 1,C1,Xã Một,,,5,5\nB2,Thôn 2,C1,Xã Khác,,,5,5\n",
             "line 3: commune_name: commune C1 is named both 'Xã Một' and 'Xã Khác'"),
        ]
        for name, text, message in cases:
            path = work.file(f"{name}.csv")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            out = registry_check(path)
            kt.check_equal(out.returncode, 78, f"{name}: exit status ({out.stderr!r})")
            kt.check(message in out.stderr, f"{name}: the refusal names the line", message,
                     out.stderr)
    finally:
        work.cleanup()


def test_two_tier_province_end_to_end():
    rng = random.Random(2025)
    rows, by_id = rows_by_id()
    communes = sorted({r["commune_id"] for r in rows})
    chosen = rng.sample(communes, 3)
    boards = [r for r in rows if r["commune_id"] in chosen]
    work = kt.Workdir(prefix="keng-two-tier-")
    broker = kt.Broker(work, partitions=2)
    procs = []
    try:
        # A token for one commune; a district's id is refused, since there are none.
        tokens = work.file("tokens")
        made = subprocess.run([kt.binary("keng-ingest"), "--new-token", "commune-gw", "--units",
                               chosen[0], "--registry", REGISTRY, "--tokens", tokens],
                              capture_output=True, text=True, timeout=10)
        kt.check_equal(made.returncode, 0, f"--new-token for a commune ({made.stderr!r})")
        token = made.stdout.strip()
        refused = subprocess.run([kt.binary("keng-ingest"), "--new-token", "d-gw", "--units",
                                  "D07", "--registry", REGISTRY, "--tokens", tokens],
                                 capture_output=True, text=True, timeout=10)
        kt.check_equal(refused.returncode, 64, f"--units D07 exit status ({refused.stderr!r})")
        kt.check("the board registry has no unit 'D07'" in refused.stderr and
                 "province, commune, board" in refused.stderr, "--units D07 refused",
                 "names the unit and the levels", refused.stderr)

        # An alert rule at a level the registry lacks stops keng-aggregate at start.
        bad_conf = work.file("bad.conf")
        with open(bad_conf, "w") as f:
            f.write("alert.d.level=district\nalert.d.kind=incident\nalert.d.window=24h\n"
                    "alert.d.threshold=5\n")
        bad = subprocess.run([kt.binary("keng-aggregate"), "--check-config", "--config", bad_conf,
                              "--registry", REGISTRY, "--brokers", broker.bootstrap],
                             capture_output=True, text=True, timeout=30)
        kt.check(bad.returncode != 0 and "alert.d.level" in bad.stderr and
                 "no district level" in bad.stderr, "a district rule refused",
                 "exit != 0 naming alert.d.level", (bad.returncode, bad.stderr[-400:]))

        conf = work.file("aggregate.conf")
        with open(conf, "w") as f:
            f.write("alert.c.level=commune\nalert.c.kind=incident\nalert.c.window=365d\n"
                    "alert.c.threshold=1000000\n")
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        agg = kt.Process("keng-aggregate", ["--config", conf, "--registry", REGISTRY, "--lineage",
                                            LINEAGE, "--listen", f"127.0.0.1:{port}",
                                            "--state-dir", work.file("state")], work,
                         env={"KENG_BROKERS": broker.bootstrap})
        procs.append(agg)
        iport = kt.free_port()
        ing = kt.Process("keng-ingest", ["--registry", REGISTRY, "--tokens", tokens, "--listen",
                                          f"127.0.0.1:{iport}", "--brokers", broker.bootstrap],
                         work)
        procs.append(ing)
        kt.wait_until(lambda: agg.alive() and kt.http("GET", base + "/readyz", timeout=5)[0] == 200,
                      90, "keng-aggregate ready")
        kt.wait_until(lambda: kt.http("GET", f"http://127.0.0.1:{iport}/healthz",
                                      timeout=2)[0] == 200, 20, "keng-ingest up")

        # Each program says which registry it uses, in its log and on /metrics.
        for proc, url in ((agg, base), (ing, f"http://127.0.0.1:{iport}")):
            line = f"source={REGISTRY} districts=0 communes=130 boards=7588 " \
                "levels=province,commune,board"
            kt.check(line in proc.log_tail(400), f"{proc.name}: the registry in its log", line,
                     proc.log_tail(20))
            m = kt.metrics(url)
            kt.check_equal({k: v for k, v in m.items()
                            if k.startswith(("keng_registry_units", "keng_registry_info"))},
                           {'keng_registry_units{level="board"}': 7588,
                            'keng_registry_units{level="commune"}': 130,
                            f'keng_registry_info{{source="file",path="{REGISTRY}"}}': 1},
                           f"{proc.name}: the registry on /metrics")

        now = int(time.time() * 1000)
        events = []
        for _ in range(400):
            kind = "incident" if rng.random() < 0.6 else "mediation"
            b = rng.choice(boards)["board_id"]
            events.append((kind, kt.random_event(rng, kind, b, now - rng.randint(DAY, 200 * DAY))))
        kt.produce(broker.bootstrap, kt.messages(events))

        # Through keng-ingest: the commune's gateway may post for its boards, not others'.
        own = [b for b in boards if b["commune_id"] == chosen[0]][0]["board_id"]
        other = [b for b in boards if b["commune_id"] == chosen[1]][0]["board_id"]
        ev = kt.random_event(rng, "incident", own, now - DAY)
        status, _, body = kt.http("POST", f"http://127.0.0.1:{iport}/v1/incidents",
                                  body=json.dumps(ev).encode(),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/json"})
        kt.check_equal(status, 202, f"POST for a board of the token's commune ({body!r})")
        events.append(("incident", ev))
        status, _, body = kt.http("POST", f"http://127.0.0.1:{iport}/v1/incidents",
                                  body=json.dumps(kt.random_event(rng, "incident", other,
                                                                  now - DAY)).encode(),
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": "application/json"})
        kt.check_equal(status, 403, "POST for a board of another commune")
        kt.check(chosen[1] in body.decode() and "district" not in body.decode(),
                 "the 403 names the board's commune and no district", chosen[1], body)

        expected = kt.expected_all_time(events, by_id)
        keys = [("province", "NA")] + [("commune", c) for c in chosen] + \
            [("board", b["board_id"]) for b in boards[:20]]

        def counts(level, scope):
            return kt.get_json(f"{base}/v1/counts?level={level}&id={scope}")

        kt.wait_until(lambda: all(counts(*k)["windows"]["all"] ==
                                  expected.get(k, kt.empty_tally()) for k in keys),
                      90, "counts per board, commune and province")
        kt.check(not [k for k in expected if k[0] == "district"], "no district scope expected",
                 "none", [k for k in expected if k[0] == "district"])

        c = counts("commune", chosen[0])
        kt.check("district_id" not in c, "a commune's counts carry no district_id", "absent", c)
        b = counts("board", own)
        kt.check_equal((b["commune_id"], "district_id" in b), (chosen[0], False),
                       "a board's commune, and no district_id")

        status, _, body = kt.http("GET", f"{base}/v1/counts?level=district&id=D07")
        kt.check_equal(status, 400, "level=district on the two-tier province")
        kt.check("province, commune, board" in json.loads(body)["error"],
                 "the 400 names the levels there are", "province, commune, board", body)

        children = kt.get_json(f"{base}/v1/children?level=province&window=all")
        kt.check_equal((children["level"], len(children["items"])), ("commune", 130),
                       "the province's children are its 130 communes")
        total = sum(i["incidents"]["total"] for i in children["items"])
        kt.check_equal(total, expected[("province", "NA")]["incidents"]["total"],
                       "the communes add up to the province")
        top = kt.get_json(f"{base}/v1/top?level=commune&window=365d")
        kt.check(top["items"] and top["items"][0]["id"] in chosen, "top communes",
                 chosen, top["items"][:3])
        silent = kt.get_json(f"{base}/v1/silent?level=commune&id={chosen[0]}&limit=5")
        kt.check_equal(silent["districts"], [], "no district rows in /v1/silent")
        kt.check(all("district_id" not in i for i in silent["items"]),
                 "silent boards carry no district_id", "absent", silent["items"][:1])

        # The lineage: each commune says what it was before 1 July 2025.
        formerly = {}
        with open(LINEAGE, newline="", encoding="utf-8") as f:
            for line in csv.DictReader(f):
                formerly.setdefault(line["commune_id_2025"], []).append(line["commune_name_2024"])
        children = kt.get_json(f"{base}/v1/children?level=province&window=all")
        got = {i["id"]: i.get("formerly") for i in children["items"]}
        kt.check_equal(got[chosen[0]], formerly[chosen[0]], f"{chosen[0]}: formerly, in children")
        kt.check_equal(sum(1 for v in got.values() if v), 130, "every commune has a formerly")
        counts = kt.get_json(f"{base}/v1/counts?level=commune&id={chosen[0]}")
        kt.check_equal(counts.get("formerly"), formerly[chosen[0]], "formerly in /v1/counts")

        # The dashboard in Chromium: the province's table is its 130 communes, a click on
        # one shows its boards, and no district appears anywhere.
        dash.require_browser()
        driver = dash.start_browser(work.file("chromium-profile"))
        try:
            driver.get(base + "/")
            kt.wait_until(lambda: dash.table_is(driver, "commune", "NA"), dash.WAIT,
                          "the province's communes in the table")
            rows = dash.table_rows(driver)
            kt.check_equal(len(rows), 130, "rows of the province's table")
            kt.check_equal(dash.css(driver, "#children-title")[0].text,
                           "Các xã, phường, thị trấn", "the table's title")
            dash.click(driver, '#windows button[data-window="all"]')
            dash.wait_kpi(driver, "incidents", expected[("province", "NA")]["incidents"]["total"],
                          "the province's incidents (all time) in the headline")
            dash.check_table(driver, {"all": expected}, "all", "commune", communes,
                             "the 130 communes (all time)")
            note = dash.css(driver, f'#scope-table tr[data-id="{chosen[0]}"] .formerly')
            kt.check(note and note[0].text.startswith("trước đây: " + formerly[chosen[0]][0]),
                     "the row says what the commune was formerly",
                     "trước đây: " + formerly[chosen[0]][0], note[0].text if note else None)
            dash.screenshot(driver, work, "keng-dashboard-two-tier.png")
            dash.click(driver, f'#scope-table tr[data-id="{chosen[0]}"] th a')
            kt.wait_until(lambda: dash.table_is(driver, "board", chosen[0]), dash.WAIT,
                          f"the boards of {chosen[0]}")
            crumbs = dash.css(driver, "#crumbs")[0].text
            kt.check(chosen[0] in crumbs and "Nghệ An" in crumbs and "Huyện" not in crumbs,
                     "breadcrumbs: province, then the commune", f"NA › {chosen[0]}", crumbs)
            dash.screenshot(driver, work, "keng-dashboard-two-tier-commune.png")
            kt.check_equal(dash.console_errors(driver), [], "errors in the browser console")
        finally:
            driver.quit()

        # The review of the period compares communes.
        out_dir = work.file("review")
        today = time.strftime("%Y-%m-%d", time.gmtime(now / 1000 + 86400 * 2))
        start = time.strftime("%Y-%m-%d", time.gmtime(now / 1000 - 365 * 86400))
        rep = subprocess.run([kt.binary("keng-replay"), "--from", start, "--to", today,
                              "--registry", REGISTRY, "--out", out_dir],
                             env=dict(os.environ, KENG_BROKERS=broker.bootstrap),
                             capture_output=True, text=True, timeout=300)
        kt.check_equal(rep.returncode, 0, f"keng-replay exit status ({rep.stderr[-800:]!r})")
        with open(os.path.join(out_dir, "review.json"), encoding="utf-8") as f:
            review = json.load(f)
        kt.check_equal((review["districts"], len(review["communes"])), ([], 130),
                       "the review's districts and communes")
        kt.check_equal(review["registry"],
                       {"source": "file", "path": REGISTRY, "districts": 0, "communes": 130,
                        "boards": 7588, "levels": ["province", "commune", "board"],
                        "units": None, "changes": [], "predecessors": None},
                       "the review names its registry")
        kt.check_equal(review["province"]["incidents"]["total"],
                       expected[("province", "NA")]["incidents"]["total"],
                       "the review's province total")
        with open(os.path.join(out_dir, "review.csv"), newline="", encoding="utf-8") as f:
            table = list(csv.DictReader(f))
        parents = {r["parent_id"] for r in table if r["level"] == "commune"}
        kt.check_equal(parents, {"NA"}, "a commune's parent in the CSV is the province")
        with open(os.path.join(out_dir, "review.html"), encoding="utf-8") as f:
            html = f.read()
        kt.check(f"Danh mục ban tự quản: {REGISTRY} — 7588 ban tự quản, 130 xã, phường." in html,
                 "the HTML names its registry", REGISTRY, html[-600:])
        kt.check("Vụ việc phát hiện theo xã, phường" in html and
                 "theo huyện" not in html, "the HTML compares communes", "xã, phường",
                 html[:300])
    finally:
        kt.close_all(procs, broker, work)


if __name__ == "__main__":
    kt.main([test_registry_of_2025_loads, test_bad_registries_are_refused,
             test_two_tier_province_end_to_end])
