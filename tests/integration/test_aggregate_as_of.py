"""?as_of=TIME on keng-aggregate's API draws the units of the registry version in force at
TIME over the live counts of the boards. antt.registry holds the seed's 2024 registry
(effective 2024-01-01: 21 districts, 460 communes) and the two-tier one of 1 July 2025 (130
communes); keng-aggregate follows the topic and counts under 2025:
- /v1/children of the province gives the 130 communes, and with as_of=2025-06-30 the 21
  districts, named by as_of_units; the district D01 is there under as_of and 400 without;
- the province's totals are the same with no as_of, as_of=2025-06-30 and as_of=2026-01-01
  (the invariant), and every 2024 district and commune under as_of equals the sum of its
  boards' events, in /v1/counts, /v1/children, /v1/top and /v1/series;
- a version still to come that adds a board counts it as zero and says so (missing_boards);
- a bad as_of is 400 naming the field, a time before the first version 400 naming its time,
  /v1/silent refuses as_of, and a keng-aggregate with --registry FILE says as_of needs
  registry.topic;
- a user scoped to a 2025 commune sees a 2024 commune whose boards all lie in it, and gets 403
  for a 2024 district that has boards elsewhere."""

import json
import os
import random
import time
import urllib.parse

import kengtest as kt

TOPIC = "antt.registry"
REG_2025 = os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2025-07-01.csv")
UNITS_2025 = os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2025-07-01.communes.csv")
LINEAGE_2025 = os.path.join(kt.SOURCE_DIR, "registry", "nghe-an-2024-to-2025.lineage.csv")
KEY_2024 = "2023-12-31T17:00:00Z"
KEY_2025 = "2025-06-30T17:00:00Z"
KEY_2030 = "2029-12-31T17:00:00Z"
DAY = 86_400_000










ADMIN = kt.basic_auth("admin", "admin-pw")


def get(base, path, headers=ADMIN, **query):
    """GET path?query as (status, JSON body)."""
    url = f"{base}{path}?{urllib.parse.urlencode(query)}"
    status, _, body = kt.http("GET", url, headers=headers, timeout=30)
    return status, json.loads(body)


def ok(base, path, headers=ADMIN, **query):
    status, body = get(base, path, headers, **query)
    kt.check_equal(status, 200, f"GET {path} {query} status ({body})")
    return body


def totals(tally):
    return (tally["incidents"]["total"], tally["mediations"]["total"])


def test_as_of_draws_the_units_of_another_version():
    rng = random.Random(17)
    work = kt.Workdir(prefix="keng-as-of-")
    broker = kt.Broker(work, partitions=2)
    procs = []
    try:
        reg_2024 = work.file("boards-2024.csv")
        kt.check_equal(kt.registry_tool("--write", reg_2024).returncode, 0,
                       "keng-registry --write")
        out = kt.registry_tool("--publish", reg_2024, "--effective", "2024-01-01", "--allow-past",
                               "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish 2024: exit status ({out.stderr!r})")
        out = kt.registry_tool("--publish", REG_2025, "--effective", "2025-07-01", "--units",
                               UNITS_2025, "--lineage", LINEAGE_2025, "--allow-past", "--brokers",
                               broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish 2025: exit status ({out.stderr!r})")
        # A version still to come that adds a board: under as_of of its time that board is
        # one the counts lack.
        rows_2025 = kt.registry_rows(REG_2025)
        first = rows_2025[0]
        reg_2030 = work.file("boards-2030.csv")
        with open(REG_2025, encoding="utf-8") as src, open(reg_2030, "w",
                                                           encoding="utf-8") as dst:
            dst.write(src.read().rstrip("\n") + "\n")
            dst.write(f"NEW-B0001,Tổ dân cư mới,{first['commune_id']},{first['commune_name']}"
                      ",,,1,1\n")
        out = kt.registry_tool("--publish", reg_2030, "--effective", "2030-01-01", "--brokers",
                               broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish 2030: exit status ({out.stderr!r})")

        rows_2024 = kt.registry_rows(reg_2024)
        by_id_2024 = {r["board_id"]: r for r in rows_2024}
        by_id_2025 = {r["board_id"]: r for r in rows_2025}
        boards = [r["board_id"] for r in rows_2024]
        now = int(time.time() * 1000)
        events = []
        for _ in range(3000):
            kind = "incident" if rng.random() < 0.6 else "mediation"
            events.append((kind, kt.random_event(rng, kind, rng.choice(boards),
                                                 now - rng.randint(2 * DAY, 200 * DAY))))
        kt.produce(broker.bootstrap, kt.messages(events))
        want_2024 = kt.expected_all_time(events, by_id_2024)
        want_2025 = kt.expected_all_time(events, by_id_2025)
        empty = kt.empty_tally()

        # A user scoped to one 2025 commune: a 2024 commune all of whose boards went to it,
        # and that commune's 2024 district, which has boards elsewhere too.
        boards_of_2024 = {}
        for r in rows_2024:
            boards_of_2024.setdefault(r["commune_id"], []).append(r["board_id"])
        whole = sorted(c for c, bs in boards_of_2024.items()
                       if len({by_id_2025[b]["commune_id"] for b in bs}) == 1)
        kt.check(whole, "a 2024 commune wholly inside one 2025 commune", "one", whole[:3])
        inside = whole[0]
        scope_2025 = by_id_2025[boards_of_2024[inside][0]]["commune_id"]
        district = by_id_2024[boards_of_2024[inside][0]]["district_id"]
        web = work.file("web.yml")
        with open(web, "w") as f:
            f.write("basic_auth_users:\n"
                    f"  admin: {kt.hash_password('admin-pw')}\n"
                    f"  cu: {kt.hash_password('cu-pw')}\n"
                    f"user_scopes:\n  admin: [NA]\n  cu: ['{scope_2025}']\n")
        os.chmod(web, 0o600)
        conf = work.file("aggregate.conf")
        with open(conf, "w") as f:
            f.write(f"registry.topic={TOPIC}\n")
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        agg = kt.Process("keng-aggregate", ["--config", conf, "--listen", f"127.0.0.1:{port}",
                                            "--state-dir", work.file("state"),
                                            "--web.config.file", web], work,
                         env={"KENG_BROKERS": broker.bootstrap})
        procs.append(agg)
        kt.wait_until(lambda: agg.alive() and kt.http("GET", base + "/readyz",
                                                      timeout=5)[0] == 200,
                      90, "keng-aggregate ready")
        want_province = totals(want_2025[("province", "NA")])
        kt.wait_until(lambda: totals(ok(base, "/v1/counts", level="province", id="NA")
                                     ["windows"]["all"]) == want_province,
                      90, f"every event counted ({want_province})")

        # Today's units, and those of 30 June 2025.
        now_children = ok(base, "/v1/children", level="province", id="NA", window="all")
        kt.check_equal((now_children["level"], len(now_children["items"]),
                        "as_of_units" in now_children), ("commune", 130, False),
                       "the province's children: 130 communes, no as_of_units")
        old = ok(base, "/v1/children", level="province", id="NA", window="all",
                 as_of="2025-06-30")
        # What a request under as_of costs (summed over the boards, uncached), against the
        # same answer under the units in force: the median of 20, the whole HTTP round trip.
        for q in ({"as_of": "2025-06-30"}, {}):
            took = []
            for _ in range(20):
                started = time.monotonic()
                ok(base, "/v1/children", level="province", id="NA", window="all", **q)
                took.append((time.monotonic() - started) * 1000)
            took.sort()
            kt.log(f"/v1/children of the province {q or '(units in force)'}: median "
                   f"{took[10]:.1f} ms, min {took[0]:.1f} ms, max {took[-1]:.1f} ms")
        kt.check_equal((old["level"], len(old["items"]), old["as_of_units"],
                        old["missing_boards"]), ("district", 21, KEY_2024, 0),
                       "as_of=2025-06-30: the 21 districts of 2024")
        for item in old["items"]:
            kt.check_equal(item["incidents"], want_2024.get(("district", item["id"]),
                                                            empty)["incidents"],
                           f"district {item['id']}: incidents")
            kt.check_equal(item["mediations"], want_2024.get(("district", item["id"]),
                                                             empty)["mediations"],
                           f"district {item['id']}: mediations")
        d01 = ok(base, "/v1/counts", level="district", id="D01", as_of="2025-06-30")
        kt.check_equal((d01["level"], d01["id"], d01["as_of_units"], d01["windows"]["all"]),
                       ("district", "D01", KEY_2024, want_2024.get(("district", "D01"), empty)),
                       "D01 under as_of=2025-06-30")
        status, body = get(base, "/v1/counts", level="district", id="D01")
        kt.check_equal(status, 400, "D01 without as_of")
        kt.check("province, commune, board" in body["error"], "the 400 names the levels",
                 "province, commune, board", body)
        board = boards[0]
        b = ok(base, "/v1/counts", level="board", id=board, as_of="2024-06-01T00:00:00Z")
        kt.check_equal((b["commune_id"], b["district_id"], b["windows"]["all"]),
                       (by_id_2024[board]["commune_id"], by_id_2024[board]["district_id"],
                        want_2024.get(("board", board), empty)),
                       "a board under as_of: its 2024 commune and district")

        # The invariant: the province's totals under every version and every as_of.
        def province(**q):
            return ok(base, "/v1/counts", level="province", id="NA", **q)["windows"]

        def equal_everywhere():
            seen = [province(), province(as_of="2025-06-30"), province(as_of="2026-01-01"),
                    province(as_of="2030-01-02")]
            return all(s == seen[0] for s in seen)
        kt.wait_until(equal_everywhere, 20, "the province's totals equal under every as_of")
        kt.check_equal(totals(province(as_of="2025-06-30")["all"]), want_province,
                       "the province under as_of: every event")
        late = ok(base, "/v1/children", level="province", id="NA", window="all",
                  as_of="2026-01-01")
        kt.check_equal((late["level"], late["as_of_units"],
                        {i["id"]: totals(i) for i in late["items"]}),
                       ("commune", KEY_2025, {i["id"]: totals(i) for i in now_children["items"]}),
                       "as_of=2026-01-01: the 130 communes in force, as without as_of")
        future = ok(base, "/v1/counts", level="province", id="NA", as_of="2030-01-02")
        kt.check_equal((future["as_of_units"], future["missing_boards"]), (KEY_2030, 1),
                       "a version that adds a board: that board is missing from the counts")
        new_board = get(base, "/v1/counts", level="board", id="NEW-B0001", as_of="2030-01-02")
        kt.check_equal((new_board[0], new_board[1].get("missing_boards"),
                        totals(new_board[1]["windows"]["all"])), (200, 1, (0, 0)),
                       "the new board under as_of: zero, and said")

        # Every 2024 commune under as_of equals the sum of its boards' events.
        checked = 0
        for d in sorted({r["district_id"] for r in rows_2024}):
            got = ok(base, "/v1/children", level="district", id=d, window="all",
                     as_of="2025-06-30")
            kt.check_equal(got["level"], "commune", f"{d}'s children under as_of")
            for item in got["items"]:
                want = want_2024.get(("commune", item["id"]), empty)
                kt.check_equal((item["incidents"], item["mediations"]),
                               (want["incidents"], want["mediations"]),
                               f"2024 commune {item['id']} under as_of")
                checked += 1
        kt.check_equal(checked, 460, "2024 communes checked")
        top = ok(base, "/v1/top", level="district", window="all", kind="incident", limit=21,
                 as_of="2025-06-30")
        kt.check_equal({i["id"]: i["count"] for i in top["items"]},
                       {k[1]: v["incidents"]["total"] for k, v in want_2024.items()
                        if k[0] == "district" and v["incidents"]["total"] > 0},
                       "/v1/top of the 2024 districts")
        series = ok(base, "/v1/series", level="district", id="D01", window="365d", step="1d",
                    as_of="2025-06-30")
        kt.check_equal((series["as_of_units"], series["total"],
                        sum(p["count"] for p in series["points"])),
                       (KEY_2024, want_2024.get(("district", "D01"), empty)["incidents"]["total"],
                        want_2024.get(("district", "D01"), empty)["incidents"]["total"]),
                       "/v1/series of D01 under as_of")

        # Refusals.
        for value in ("yesterday", "2025-13-01", ""):
            status, body = get(base, "/v1/counts", level="province", as_of=value)
            kt.check(status == 400 and "as_of" in body["error"], f"as_of={value!r} refused",
                     "400 naming as_of", (status, body))
        status, body = get(base, "/v1/children", level="province", as_of="2023-06-01")
        kt.check(status == 400 and KEY_2024 in body["error"], "a time before the first version",
                 f"400 naming {KEY_2024}", (status, body))
        status, body = get(base, "/v1/silent", as_of="2025-06-30")
        kt.check(status == 400 and "as_of" in body["error"], "/v1/silent refuses as_of",
                 "400 naming as_of", (status, body))
        status, body = get(base, "/v1/counts", level="commune", id=inside)
        kt.check_equal(status, 404, f"the 2024 commune {inside} without as_of")

        # Users: a unit of another version needs every one of its boards in the user's scope.
        cu = kt.basic_auth("cu", "cu-pw")
        got = ok(base, "/v1/counts", cu, level="commune", id=inside, as_of="2025-06-30")
        kt.check_equal(got["windows"]["all"], want_2024.get(("commune", inside), empty),
                       f"cu sees the 2024 commune {inside}, inside {scope_2025}")
        for path, q in (("/v1/counts", {"level": "district", "id": district}),
                        ("/v1/children", {"level": "province", "id": "NA"}),
                        ("/v1/top", {"level": "commune", "within": district})):
            status, body = get(base, path, cu, as_of="2025-06-30", **q)
            kt.check(status == 403 and "cu" in body["error"], f"cu: {path} {q} under as_of",
                     "403", (status, body))
        ok(base, "/v1/counts", cu, level="commune", id=scope_2025)

        # With one registry (--registry FILE) as_of has no versions to draw from.
        port2 = kt.free_port()
        single = kt.Process("keng-aggregate", ["--registry", REG_2025, "--listen",
                                               f"127.0.0.1:{port2}", "--state-dir",
                                               work.file("state-single"), "--group",
                                               "keng-test-as-of-single"], work,
                            env={"KENG_BROKERS": broker.bootstrap})
        procs.append(single)
        base2 = f"http://127.0.0.1:{port2}"
        kt.wait_until(lambda: single.alive() and kt.http("GET", base2 + "/healthz",
                                                         timeout=2)[0] == 200,
                      60, "the second keng-aggregate up")
        status, body = get(base2, "/v1/counts", headers=None, level="province",
                           as_of="2025-06-30")
        kt.check(status == 400 and "registry.topic" in body["error"],
                 "as_of without registry.topic", "400 naming registry.topic", (status, body))
    finally:
        for p in procs:
            if p.alive():
                p.stop()
        broker.stop()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_as_of_draws_the_units_of_another_version])
