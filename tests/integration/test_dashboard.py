"""The operations dashboard (GET / of keng-aggregate) in a real headless Chromium, driven by
Debian's python3-selenium and chromium-driver: the province's incident total on the page is
the number of events produced; more events change it without a reload (the /v1/stream
Server-Sent Events); a click on a district shows its communes with the right numbers, and
a commune its boards; the window switcher shows the 1h, 24h and all-time numbers; the board
search jumps to a board; stopping keng-aggregate shows the disconnected state and a restart
brings the page back to live by itself. Screenshots go to the test's temp dir and to
/tmp/keng-dashboard.png (and -phone.png) for a person to look at."""

import os
import random
import re
import shutil
import time

import kengtest as kt

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY, "all": None}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Without the background-networking flags Chromium's own connections to the outside are
# refused on a closed network and slow every page down; a fresh profile per run.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--lang=vi-VN"]
WAIT = 30  # seconds for anything the page must show


def require_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python3-selenium")
    if missing:
        raise kt.TestFailure(
            f"the dashboard test drives a real browser and {', '.join(missing)} is missing: "
            "install the Debian packages chromium chromium-driver python3-selenium "
            "(scripts/install-deps.sh as root, which make test runs first)")


def start_browser(profile_dir, width=1440, height=1000, extra_flags=()):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile_dir}",
                                  f"--window-size={width},{height}"] + list(extra_flags):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


class Aggregate:
    def __init__(self, work, broker, now, port=None, rules=""):
        self.port = port or kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = work.file("aggregate.conf")
        with open(config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=200\n" + rules)
        self.process = kt.Process(
            "keng-aggregate",
            ["--config", config, "--listen", f"127.0.0.1:{self.port}", "--state-dir",
             work.file("state"), "--group", "keng-test-dashboard"],
            work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(now)})

    def wait_ready(self):
        def ready():
            if not self.process.alive():
                raise kt.TestFailure(f"keng-aggregate exited: {self.process.log_tail()}")
            return kt.http("GET", self.base + "/readyz")[0] == 200
        kt.wait_until(ready, 120, "keng-aggregate to be ready")


def make_events(boards, n, now, rng, ages):
    out = []
    for _ in range(n):
        kind = "incident" if rng.random() < 0.7 else "mediation"
        low, high = rng.choice(ages)
        out.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                          now - rng.randint(low, high))))
    return out


def expected(events, boards_by_id, now):
    """{window: {(level, id): tally}} for the windows the test looks at."""
    out = {}
    for window, length in WINDOWS.items():
        inside = [(k, e) for k, e in events if length is None or e["occurred_at"] >= now - length]
        out[window] = kt.expected_all_time(inside, boards_by_id)
    return out


def tally(exp, window, level, scope_id):
    return exp[window].get((level, scope_id), kt.empty_tally())


def number(text):
    """A number as the page prints it in Vietnamese ("1.234")."""
    digits = re.sub(r"\D", "", text or "")
    return int(digits) if digits else None


# ---- what the page shows ----

def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def kpi(driver, name):
    els = css(driver, f"#kpi-{name} .kpi-value")
    return number(els[0].text) if els else None


def wait_kpi(driver, name, want, what):
    try:
        kt.wait_until(lambda: kpi(driver, name) == want, WAIT, what, interval=0.2)
    except kt.TestFailure:
        kt.check_equal(kpi(driver, name), want, what)
        raise


def table_rows(driver):
    """{row id: {column class: number as shown}} of the drill-down table, read in one script
    so that a redraw cannot fall in between."""
    texts = driver.execute_script("""
        var out = {};
        document.querySelectorAll('#scope-table tbody tr').forEach(function (tr) {
            var cells = {};
            tr.querySelectorAll('td').forEach(function (td) {
                var cls = Array.prototype.filter.call(td.classList,
                    function (c) { return c.indexOf('c-') === 0; })[0];
                if (cls) cells[cls] = td.textContent;  /* the count columns */
            });
            out[tr.dataset.id] = cells;
        });
        return out;""")
    return {rid: {c: number(t) for c, t in cells.items()} for rid, cells in texts.items()}


def table_is(driver, level, parent):
    t = css(driver, "#scope-table")
    return bool(t) and (t[0].get_attribute("data-level"), t[0].get_attribute("data-parent")) == \
        (level, parent)


def expected_row(t):
    return {"c-inc": t["incidents"]["total"],
            "c-local": t["incidents"]["by_resolution"]["HANDLED_LOCALLY"],
            "c-police": t["incidents"]["by_resolution"]["TRANSFERRED_TO_POLICE"],
            "c-pending": t["incidents"]["by_resolution"]["PENDING"],
            "c-med": t["mediations"]["total"],
            "c-rec": t["mediations"]["by_outcome"]["RECONCILED"]}


def check_table(driver, exp, window, level, ids, what):
    want = {i: expected_row(tally(exp, window, level, i)) for i in ids}
    try:
        kt.wait_until(lambda: table_rows(driver) == want, WAIT, what, interval=0.3)
    except kt.TestFailure:
        got = table_rows(driver)
        kt.check_equal(sorted(got), sorted(want), f"{what}: row ids")
        for i in ids:
            kt.check_equal(got[i], want[i], f"{what}: row {i}")
        raise
    kt.log(f"{what}: {len(ids)} rows match")


def click(driver, selector):
    """Clicks the element, found again if the page redrew it in between."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        els = css(driver, selector)
        if not els:
            return False
        try:
            els[0].click()
            return True
        except StaleElementReferenceException:
            return False
    kt.wait_until(attempt, WAIT, f"an element {selector} to click")


def screenshot(driver, work, name, full=True):
    """The whole page (the window grows to the page's height for the picture), or what the
    window shows."""
    path = work.file(name)
    size = driver.get_window_size()
    if full:
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
    driver.save_screenshot(path)
    if full:
        driver.set_window_size(size["width"], size["height"])
    shutil.copyfile(path, os.path.join("/tmp", name))
    kt.log(f"screenshot {path} (copy in /tmp/{name})")


def shown_alerts(driver):
    return driver.execute_script("return Array.prototype.map.call(document.querySelectorAll("
                                 "'#alert-list li'), function (li) { return li.dataset.alert; });")


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_dashboard_in_chromium():
    require_browser()
    rng = random.Random(460)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    agg = driver = None
    try:
        rows = kt.registry_rows()
        boards_by_id = {r["board_id"]: r for r in rows}
        d07 = [r for r in rows if r["district_id"] == "D07"]
        communes_d07 = sorted({r["commune_id"] for r in d07})
        # Most events in two communes of D07 (so that a commune's boards table has numbers),
        # the rest over D07 and D14.
        busy = [r for r in d07 if r["commune_id"] in communes_d07[:2]]
        spread = rng.sample(d07, 20) + rng.sample([r for r in rows if r["district_id"] == "D14"], 20)
        now = int(time.time() * 1000)
        # Ages kept 2/60 of a window away from its edges, which may be rounded by 1/60.
        recent, today, older = (2 * MINUTE, 40 * MINUTE), (2 * HOUR, 20 * HOUR), (2 * DAY, 6 * DAY)
        first = (make_events(busy, 120, now, rng, [recent, today, older]) +
                 make_events(spread, 180, now, rng, [recent, today, older]))
        kt.produce(broker.bootstrap, kt.messages(first))
        second = make_events(busy + spread, 40, now, rng, [recent])
        exp = expected(first, boards_by_id, now)
        exp2 = expected(first + second, boards_by_id, now)
        province = lambda e, w: tally(e, w, "province", "NA")["incidents"]["total"]  # noqa: E731
        kt.check(province(exp, "1h") != province(exp, "24h") != province(exp, "all"),
                 "events placed so that the windows differ", "1h < 24h < all",
                 [province(exp, w) for w in ("1h", "24h", "all")])

        # Two alert rules: one that fires with the first batch (D07 is the busy district) and
        # one that the second batch sets off while the page is open.
        d07_24h = tally(exp, "24h", "district", "D07")["incidents"]["total"]
        na_1h, na_1h_later = province(exp, "1h"), province(exp2, "1h")
        kt.check(na_1h < na_1h_later, "the second batch adds to the 1h window", "more", na_1h_later)
        rules = (f"alert.busy.level=district\nalert.busy.window=24h\nalert.busy.kind=incident\n"
                 f"alert.busy.threshold={d07_24h}\n"
                 f"alert.surge.level=province\nalert.surge.window=1h\nalert.surge.kind=incident\n"
                 f"alert.surge.threshold={na_1h_later}\n")
        agg = Aggregate(work, broker, now, rules=rules)
        agg.wait_ready()
        kt.wait_until(lambda: kt.get_json(agg.base + "/v1/counts?level=province")["windows"]
                      ["all"] == tally(exp, "all", "province", "NA"), 60,
                      "/v1/counts to count the first batch")

        # The page itself: HTML, not cached, nothing fetched from elsewhere.
        status, headers, body = kt.http("GET", agg.base + "/")
        headers = {k.lower(): v for k, v in headers.items()}
        kt.check_equal((status, headers.get("content-type"), headers.get("cache-control")),
                       (200, "text/html; charset=utf-8", "no-cache"), "GET / status and headers")
        page = body.decode("utf-8")
        with open(os.path.join(kt.SOURCE_DIR, "consumers", "aggregate",
                               "dashboard.html"), encoding="utf-8") as f:
            source = f.read()
        kt.check(page == source, "GET / serves consumers/aggregate/dashboard.html (is the build older "
                 "than the file?)", f"its {len(source)} characters",
                 f"{len(page)} characters" + (" that differ" if len(page) == len(source) else ""))
        external = re.findall(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//[^"' >]*|"""
                              r"""url\(\s*["']?(?:https?:)?//[^)]*|@import""", page)
        kt.check_equal(external, [], "references to anything outside keng-aggregate")
        status, _, body = kt.http("GET", agg.base + "/v1/children?level=district&id=D99")
        kt.check_equal(status, 404, f"/v1/children of an unknown district ({body!r})")

        driver = start_browser(work.file("chromium-profile"))
        driver.get(agg.base + "/")
        wait_kpi(driver, "incidents", province(exp, "24h"), "province incidents (24h) on the page")
        t24 = tally(exp, "24h", "province", "NA")
        for name, want in (("local", t24["incidents"]["by_resolution"]["HANDLED_LOCALLY"]),
                           ("police", t24["incidents"]["by_resolution"]["TRANSFERRED_TO_POLICE"]),
                           ("mediations", t24["mediations"]["total"]),
                           ("reconciled", t24["mediations"]["by_outcome"]["RECONCILED"])):
            wait_kpi(driver, name, want, f"province {name} (24h)")
        kt.wait_until(lambda: css(driver, "#conn")[0].get_attribute("data-state") == "live", WAIT,
                      "the live indicator")
        check_table(driver, exp, "24h", "district", [f"D{i:02d}" for i in range(1, 22)],
                    "the 21 districts (24h)")
        as_of = css(driver, "#as-of")[0].text
        vn = time.gmtime(now / 1000 + 7 * 3600)
        kt.check_equal(as_of[:5], time.strftime("%H:%M", vn), "as-of time in Asia/Ho_Chi_Minh")
        top = driver.execute_script("return Array.prototype.map.call("
                                    "document.querySelectorAll('#top-list li'),"
                                    " function (li) { return li.dataset.id; });")
        want_top = kt.get_json(agg.base + "/v1/top?level=board&window=24h&kind=incident&limit=10")
        kt.check_equal(top, [i["id"] for i in want_top["items"]], "top boards (24h)")
        bars = {c: number(t) for c, t in driver.execute_script(
            "var o = {}; document.querySelectorAll('#categories li').forEach(function (li) {"
            " o[li.dataset.category] = li.querySelector('.v').textContent; }); return o;").items()}
        kt.check_equal(bars, t24["incidents"]["by_category"], "incidents by category (24h)")
        firing = kt.wait_until(
            lambda: kt.get_json(agg.base + "/v1/alerts?status=firing")["alerts"], WAIT,
            "the alert on D07 to fire")
        kt.check_equal([(a["rule"], a["scope_id"]) for a in firing], [("busy", "D07")],
                       "alerts firing after the first batch")
        kt.wait_until(lambda: shown_alerts(driver) == [firing[0]["alert_id"]], WAIT,
                      "the firing alert in the alerts panel")
        kt.check_equal(number(css(driver, "#alerts-count")[0].text), 1, "the alerts badge")

        # Live: more events, and the number changes with no reload.
        driver.execute_script("window.kengNoReload = 'still here';")
        kt.produce(broker.bootstrap, kt.messages(second))
        exp = exp2
        wait_kpi(driver, "incidents", province(exp, "24h"), "province incidents after more events")
        kt.check_equal(driver.execute_script("return window.kengNoReload;"), "still here",
                       "the page updated without a reload")
        check_table(driver, exp, "24h", "district", [f"D{i:02d}" for i in range(1, 22)],
                    "the 21 districts after more events")
        # The surge alert reaches the page through the stream's "alert" events.
        firing = kt.wait_until(
            lambda: (lambda a: a if len(a) == 2 else None)(
                kt.get_json(agg.base + "/v1/alerts?status=firing")["alerts"]), WAIT,
            "the surge alert to fire")
        kt.wait_until(lambda: sorted(shown_alerts(driver)) == sorted(a["alert_id"] for a in firing),
                      WAIT, "both alerts in the alerts panel")
        kt.check_equal(driver.execute_script("return window.kengNoReload;"), "still here",
                       "the alert arrived without a reload")
        screenshot(driver, work, "keng-dashboard.png")

        # The window switcher.
        for window in ("1h", "all", "7d", "24h"):
            click(driver, f'#windows button[data-window="{window}"]')
            wait_kpi(driver, "incidents", province(exp, window), f"province incidents ({window})")
            pressed = css(driver, f'#windows button[data-window="{window}"]')[0]
            kt.check_equal(pressed.get_attribute("aria-pressed"), "true", f"{window} button pressed")

        # Drill down: a district, its communes, a commune, its boards; then back up.
        click(driver, '#scope-table tr[data-id="D07"] th a')
        kt.wait_until(lambda: table_is(driver, "commune", "D07"), WAIT, "the communes of D07")
        wait_kpi(driver, "incidents", tally(exp, "24h", "district", "D07")["incidents"]["total"],
                 "D07's incidents in the headline")
        check_table(driver, exp, "24h", "commune", communes_d07, "the communes of D07 (24h)")
        crumbs = css(driver, "#crumbs")[0].text
        kt.check("D07" in crumbs and "Nghệ An" in crumbs, "breadcrumbs", "province › D07", crumbs)
        click(driver, '#windows button[data-window="1h"]')
        check_table(driver, exp, "1h", "commune", communes_d07, "the communes of D07 (1h)")
        click(driver, '#windows button[data-window="24h"]')

        commune = communes_d07[0]
        boards = sorted(r["board_id"] for r in d07 if r["commune_id"] == commune)
        click(driver, f'#scope-table tr[data-id="{commune}"] th a')
        kt.wait_until(lambda: table_is(driver, "board", commune), WAIT, f"the boards of {commune}")
        check_table(driver, exp, "24h", "board", boards, f"the boards of {commune} (24h)")
        screenshot(driver, work, "keng-dashboard-commune.png")

        driver.back()
        kt.wait_until(lambda: table_is(driver, "commune", "D07"), WAIT, "Back to the communes")
        click(driver, '#crumbs a[href*="s=NA"]')
        kt.wait_until(lambda: table_is(driver, "district", "NA"), WAIT, "the breadcrumb to the province")

        # The search box jumps to a board: its numbers in the headline, its row marked.
        board = max(boards, key=lambda b: tally(exp, "24h", "board", b)["incidents"]["total"])
        box = css(driver, "#search-input")[0]
        box.send_keys(board.lower())
        click(driver, "#search button")
        kt.wait_until(lambda: table_is(driver, "board", commune), WAIT, f"the search for {board}")
        wait_kpi(driver, "incidents", tally(exp, "24h", "board", board)["incidents"]["total"],
                 f"{board}'s incidents in the headline")
        kt.check(css(driver, f'#scope-table tr.current[data-id="{board}"]'), f"{board}'s row marked",
                 "tr.current", "no marked row")
        kt.check_equal(console_errors(driver), [], "errors in the browser console")
        box.send_keys("D99-C999-B99")
        click(driver, "#search button")
        kt.wait_until(lambda: "D99-C999-B99" in css(driver, "#search-msg")[0].text, WAIT,
                      "the message for an unknown id")


        # Disconnected, then live again after a restart on the same port, all by itself.
        driver.get(agg.base + "/#w=24h&l=province&s=NA")
        driver.refresh()
        wait_kpi(driver, "incidents", province(exp, "24h"), "province incidents after a reload")
        # A window restored from localStorage that is no window of the page (another page of
        # the same origin, or an older build, wrote it) is ignored: the page opens on 24h.
        driver.execute_script("localStorage.setItem('keng.window', '<b>x</b>');")
        driver.get(agg.base + "/")
        wait_kpi(driver, "incidents", province(exp, "24h"), "province incidents after a bad "
                 "saved window")
        pressed = css(driver, '#windows button[data-window="24h"]')[0]
        kt.check_equal(pressed.get_attribute("aria-pressed"), "true",
                       "24h pressed after a bad saved window")
        port = agg.port
        kt.check_equal(agg.process.stop(), 0, "keng-aggregate exit status on SIGTERM")
        kt.wait_until(lambda: css(driver, "#conn")[0].get_attribute("data-state") == "down", WAIT,
                      "the disconnected state")
        banner = css(driver, "#banner-down")[0]
        kt.check(banner.is_displayed() and "Mất kết nối" in banner.text, "the disconnected banner",
                 "shown", banner.text)
        screenshot(driver, work, "keng-dashboard-down.png")
        agg = Aggregate(work, broker, now, port=port, rules=rules)
        kt.wait_until(lambda: css(driver, "#conn")[0].get_attribute("data-state") == "live", 60,
                      "the page to reconnect by itself")
        wait_kpi(driver, "incidents", province(exp, "24h"), "province incidents after the restart")
        kt.wait_until(lambda: sorted(shown_alerts(driver)) == sorted(a["alert_id"] for a in firing),
                      WAIT, "the same firing alerts after the restart")

        # A phone-sized screen.
        driver.set_window_size(390, 844)
        screenshot(driver, work, "keng-dashboard-phone.png", full=False)
        driver.execute_script("document.getElementById('children-h').scrollIntoView();")
        screenshot(driver, work, "keng-dashboard-phone-table.png", full=False)
        # The 404s of the unknown id and the refused connections while it was down are
        # expected; anything else (a script error) is not.
        errors = [e for e in console_errors(driver)
                  if not re.search(r"status of 404|ERR_CONNECTION_REFUSED|/v1/stream", e["message"])]
        kt.check_equal(errors, [], "errors in the browser console")
    finally:
        if driver:
            driver.quit()
        if agg:
            agg.process.kill()
        broker.process.kill()
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_dashboard_in_chromium])
