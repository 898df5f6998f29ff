"""The dashboard's silent boards, trend line and scoped top list in a real headless Chromium
(Debian's python3-selenium and chromium-driver), against keng-aggregate's own answers: the
active and silent boards of the province, of each district and of a district's communes
equal /v1/silent's; the trend's SVG line has as many points as /v1/series and its total, and
follows new events without a reload; the window switcher changes the series; the top panel
follows the district selected; a silent board in the list drills down to that board.
Screenshots go to the test's temp dir and to /tmp/keng-dashboard-silent*.png."""

import random
import time

import kengtest as kt
import test_dashboard as td

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WAIT = td.WAIT


def page_int(driver, selector, attr="data-value"):
    els = td.css(driver, selector)
    if not els:
        return None
    v = els[0].get_attribute(attr)
    return int(v) if v not in (None, "") else None


def wait_equal(fn, want, what, timeout=WAIT):
    try:
        kt.wait_until(lambda: fn() == want, timeout, what, interval=0.3)
    except kt.TestFailure:
        kt.check_equal(fn(), want, what)
        raise


def table_silence(driver):
    """{row id: (active, silent)} of the drill-down table."""
    return {k: tuple(v) for k, v in driver.execute_script("""
        var out = {};
        document.querySelectorAll('#scope-table tbody tr').forEach(function (tr) {
            out[tr.dataset.id] = [Number(tr.querySelector('td.b-active').dataset.value),
                                  Number(tr.querySelector('td.b-silent').dataset.value)];
        });
        return out;""").items()}


def series_points(driver):
    return driver.execute_script(
        "var l = document.getElementById('series-line');"
        "return l ? l.getAttribute('points').trim().split(/\\s+/).filter(Boolean).length : null;")


def check_scope(driver, base, level, scope, children, window, what):
    """The page's numbers for the scope in view against the API's."""
    silent = kt.get_json(f"{base}/v1/silent?level={level}&id={scope}")
    wait_equal(lambda: (page_int(driver, "#boards-active"), page_int(driver, "#boards-silent")),
               (silent["active"], silent["silent"]), f"{what}: active and silent boards")
    rows = {r["id"]: (r["active"], r["silent"]) for r in silent[children]
            if children == "districts" or r["id"].startswith(scope + "-")}
    wait_equal(lambda: table_silence(driver), rows, f"{what}: active and silent per {children[:-1]}")
    shown = driver.execute_script("return Array.prototype.map.call(document.querySelectorAll("
                                  "'#silent-boards li'), function (li) { return li.dataset.id; });")
    kt.check_equal(shown, [i["id"] for i in silent["items"]][:len(shown)],
                   f"{what}: the silent boards listed, longest silent first")
    kt.check(len(shown) == min(silent["silent"], 500), f"{what}: silent boards listed",
             min(silent["silent"], 500), len(shown))
    sw = {"1h": "24h", "24h": "24h", "7d": "30d", "30d": "30d", "365d": "365d", "all": "365d"}[window]
    series = kt.get_json(f"{base}/v1/series?level={level}&id={scope}&kind=incident&window={sw}")
    wait_equal(lambda: (series_points(driver), page_int(driver, "#series-svg", "data-total")),
               (len(series["points"]), series["total"]), f"{what}: the trend line's points, total")
    return silent, series


def test_dashboard_silent_boards_and_trend():
    td.require_browser()
    rng = random.Random(30)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    agg = driver = None
    try:
        rows = kt.registry_rows()
        now = int(time.time() * 1000)
        # Most boards reported within 30 days; some last reported 35 to 60 days ago; the rest
        # never. The deployment has watched for 45 days (silent.start), so the last two groups
        # are silent.
        events = []
        for r in rows:
            x = rng.random()
            if x < 0.9:
                age = rng.randint(HOUR, 29 * DAY) if rng.random() < 0.7 else rng.randint(2 * MINUTE, 23 * HOUR)
            elif x < 0.95:
                age = rng.randint(35 * DAY, 60 * DAY)
            else:
                continue
            kind = "incident" if rng.random() < 0.7 else "mediation"
            events.append((kind, kt.random_event(rng, kind, r["board_id"], now - age, now - age)))
        # D07's busiest boards, so that its top list differs from the province's.
        d07 = [r["board_id"] for r in rows if r["district_id"] == "D07"]
        for board in rng.sample(d07, 5):
            for _ in range(rng.randint(3, 8)):
                age = rng.randint(2 * MINUTE, 20 * HOUR)
                events.append(("incident", kt.random_event(rng, "incident", board, now - age,
                                                           now - age)))
        kt.produce(broker.bootstrap, kt.messages(events))
        start = time.strftime("%Y-%m-%d", time.gmtime(now / 1000 + 7 * 3600 - 45 * 86400))
        agg = td.Aggregate(work, broker, now, rules=f"silent.start={start}\n")
        agg.wait_ready()
        kt.wait_until(lambda: (lambda w: w["incidents"]["total"] + w["mediations"]["total"])(
            kt.get_json(agg.base + "/v1/counts?level=province")["windows"]["all"]) == len(events),
            60, "every event counted")

        driver = td.start_browser(work.file("chromium-profile"))
        driver.get(agg.base + "/#w=24h&l=province&s=NA")
        kt.wait_until(lambda: td.css(driver, "#conn")[0].get_attribute("data-state") == "live",
                      WAIT, "the live indicator")
        silent, _ = check_scope(driver, agg.base, "province", "NA", "districts", "24h", "province")
        kt.check(0 < silent["silent"] < silent["boards"], "some boards silent, not all",
                 "between", silent["silent"])
        top = driver.execute_script("return Array.prototype.map.call(document.querySelectorAll("
                                    "'#top-list li'), function (li) { return li.dataset.id; });")
        want = kt.get_json(agg.base + "/v1/top?level=board&window=24h&kind=incident&limit=10")
        kt.check_equal(top, [i["id"] for i in want["items"]], "top boards of the province")
        td.screenshot(driver, work, "keng-dashboard-silent.png")

        # Live: events for the province now move the trend line's total without a reload.
        driver.execute_script("window.kengNoReload = 'still here';")
        before = page_int(driver, "#series-svg", "data-total")
        more = [("incident", kt.random_event(rng, "incident", rng.choice(rows)["board_id"],
                                             now - rng.randint(MINUTE, 50 * MINUTE), now))
                for _ in range(25)]
        kt.produce(broker.bootstrap, kt.messages(more))
        kt.wait_until(lambda: page_int(driver, "#series-svg", "data-total") == before + 25, WAIT,
                      "the trend to follow the stream")
        kt.check_equal(driver.execute_script("return window.kengNoReload;"), "still here",
                       "the trend updated without a reload")
        check_scope(driver, agg.base, "province", "NA", "districts", "24h", "province, later")

        # A district: its communes, its silent boards, its trend, and its own top list.
        td.click(driver, '#scope-table tr[data-id="D07"] th a')
        kt.wait_until(lambda: td.table_is(driver, "commune", "D07"), WAIT, "the communes of D07")
        check_scope(driver, agg.base, "district", "D07", "communes", "24h", "D07")
        want = kt.get_json(agg.base + "/v1/top?level=board&window=24h&kind=incident&limit=10"
                           "&within=D07")
        wait_equal(lambda: driver.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('#top-list li'),"
            " function (li) { return li.dataset.id; });"), [i["id"] for i in want["items"]],
            "the top list follows D07")
        kt.check(all(i["id"].startswith("D07-") for i in want["items"]) and want["items"],
                 "D07's top list holds D07's boards", "D07-…", want["items"])
        kt.check("D07" not in td.css(driver, "#top-sub")[0].text and
                 "toàn tỉnh" not in td.css(driver, "#top-sub")[0].text,
                 "the top panel names the district", "the district's name",
                 td.css(driver, "#top-sub")[0].text)
        # The 30 days' trend.
        td.click(driver, '#windows button[data-window="30d"]')
        check_scope(driver, agg.base, "district", "D07", "communes", "30d", "D07 (30d)")
        td.screenshot(driver, work, "keng-dashboard-silent-district.png")

        # A silent board of the list drills down to that board.
        first = td.css(driver, "#silent-boards li")[0].get_attribute("data-id")
        td.click(driver, "#silent-boards li a")
        kt.wait_until(lambda: driver.execute_script("return location.hash;").endswith(
            "s=" + first), WAIT, "the silent board's page")
        wait_equal(lambda: (page_int(driver, "#boards-active"), page_int(driver, "#boards-silent")),
                   (0, 1), f"{first} shown silent")
        series = kt.get_json(f"{agg.base}/v1/series?level=board&id={first}&window=30d")
        wait_equal(lambda: series_points(driver), len(series["points"]),
                   f"{first}'s trend points")
        td.screenshot(driver, work, "keng-dashboard-silent-board.png")
        kt.check_equal(td.console_errors(driver), [], "errors in the browser console")
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status")
        agg = None
    finally:
        if driver:
            driver.quit()
        kt.close_all([agg.process if agg else None], broker, work)


if __name__ == "__main__":
    kt.main([test_dashboard_silent_boards_and_trend])
