"""keng-aggregate with a web config file (--web.config.file): users with bcrypt passwords in
the format of Prometheus's web config, and keng's scopes. Without a user nothing but /healthz
and /readyz answers (401 with a Basic challenge); a district's user sees its district and
what is in it, and gets 403 for the province, another district and /metrics; its alerts and
stream hold its district's only; a metrics user reads /metrics alone; the file's headers are
on every answer. A bad file is refused naming its line, a scope the registry lacks with its
user, and a listen beyond loopback without users is refused (exit 64) unless
--insecure-listen says so (keng-ingest's too without TLS; test_tls has TLS). keng-ingest takes the
same file for its /metrics. The dashboard in Chromium, signed in as the district's user, opens
at the district and shows no province number."""

import json
import random
import socket
import subprocess
import time

import kengtest as kt
import test_dashboard as dash

DAY = 86_400_000






def get(base, path, user=None, password=None):
    headers = kt.basic_auth(user, password) if user else {}
    status, hdrs, body = kt.http("GET", base + path, headers=headers, timeout=20)
    return status, {k.lower(): v for k, v in hdrs.items()}, body


def stream_events(port, headers, seconds):
    """The event names a /v1/stream sends within seconds, read from a raw socket."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds + 5)
    req = "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s.sendall(req.encode())
    data = b""
    deadline = time.monotonic() + seconds
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    s.close()
    text = data.decode("utf-8", "replace")
    return text, [line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")]


def check_config(work, conf_text, web_text=None, extra=()):
    conf = work.file(f"check-{time.monotonic_ns()}.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    args = [kt.binary("keng-aggregate"), "--check-config", "--config", conf,
            "--brokers", "127.0.0.1:1"] + list(extra)
    if web_text is not None:
        web = work.file(f"web-{time.monotonic_ns()}.yml")
        with open(web, "w") as f:
            f.write(web_text)
        args += ["--web.config.file", web]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_users_and_scopes():
    rng = random.Random(18)
    work = kt.Workdir(prefix="keng-web-users-")
    broker = kt.Broker(work, partitions=2)
    procs = []
    driver = None
    try:
        rows = kt.registry_rows()
        by_id = {r["board_id"]: r for r in rows}
        d07 = [r for r in rows if r["district_id"] == "D07"]
        d01 = [r for r in rows if r["district_id"] == "D01"]
        commune = d07[0]["commune_id"]
        passwords = {"admin": "admin-pw", "d07": "d07 pw: with spaces", "prom": "prom-pw",
                     "nobody": "nobody-pw"}
        hashes = {u: kt.hash_password(p) for u, p in passwords.items()}
        web = work.file("web.yml")
        with open(web, "w") as f:
            f.write("# keng-aggregate's users\n"
                    "basic_auth_users:\n" +
                    "".join(f"  {u}: {h}\n" for u, h in hashes.items()) +
                    "user_scopes:\n"
                    "  admin: [NA]\n"
                    "  d07:\n"
                    "    - D07\n"
                    "metrics_users: [prom]\n"
                    "http_server_config:\n"
                    "  headers:\n"
                    "    X-Keng-Test: 'yes'\n")
        conf = work.file("aggregate.conf")
        with open(conf, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "alert.busy.level=district\nalert.busy.window=365d\n"
                    "alert.busy.kind=incident\nalert.busy.threshold=5\n")
        now = int(time.time() * 1000)
        events = []
        for rows_of in (d07, d01):
            for _ in range(60):
                b = rng.choice(rows_of)["board_id"]
                events.append(("incident", kt.random_event(rng, "incident", b,
                                                           now - rng.randint(DAY, 100 * DAY))))
        kt.produce(broker.bootstrap, kt.messages(events))
        expected = kt.expected_all_time(events, by_id)

        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        agg = kt.Process("keng-aggregate", ["--config", conf, "--listen", f"127.0.0.1:{port}",
                                            "--state-dir", work.file("state"),
                                            "--web.config.file", web], work,
                         env={"KENG_BROKERS": broker.bootstrap})
        procs.append(agg)
        # The probes stay open.
        kt.wait_until(lambda: agg.alive() and get(base, "/readyz")[0] == 200, 90,
                      "keng-aggregate ready, /readyz without a user")
        kt.check_equal(get(base, "/healthz")[0], 200, "/healthz without a user")

        # No user, a wrong password, an unknown user: 401 with a Basic challenge.
        for who, (user, password) in {"no user": (None, None),
                                      "a wrong password": ("d07", "guess"),
                                      "an unknown user": ("mallory", "x")}.items():
            for path in ("/", "/v1/counts?level=province", "/metrics", "/v1/stream"):
                status, hdrs, _ = get(base, path, user, password)
                kt.check_equal((status, hdrs.get("www-authenticate")),
                               (401, 'Basic realm="keng", charset="UTF-8"'),
                               f"{path} with {who}")

        def counts(user, level, scope):
            return get(base, f"/v1/counts?level={level}&id={scope}", user, passwords[user])

        kt.wait_until(lambda: json.loads(counts("admin", "province", "NA")[2])["windows"]["all"]
                      == expected[("province", "NA")], 60, "the admin sees the province")
        status, hdrs, _ = counts("admin", "province", "NA")
        kt.check_equal(hdrs.get("x-keng-test"), "yes", "the web config's header on an answer")

        # The district's user: its district and what is in it, nothing else.
        status, _, body = counts("d07", "district", "D07")
        kt.check_equal((status, json.loads(body)["windows"]["all"]),
                       (200, expected[("district", "D07")]), "d07 sees D07")
        kt.check_equal(counts("d07", "commune", commune)[0], 200, "d07 sees a commune of D07")
        kt.check_equal(counts("d07", "board", d07[0]["board_id"])[0], 200, "d07 sees a board")
        for level, scope in (("province", "NA"), ("district", "D01"),
                             ("board", d01[0]["board_id"])):
            status, _, body = counts("d07", level, scope)
            kt.check_equal(status, 403, f"d07 asks for the {level} {scope}")
            kt.check(scope in json.loads(body)["error"], "the 403 names the scope", scope, body)
        pw = passwords["d07"]
        kt.check_equal(get(base, "/v1/children?level=district&id=D07", "d07", pw)[0], 200,
                       "d07: the communes of D07")
        kt.check_equal(get(base, "/v1/children?level=province", "d07", pw)[0], 403,
                       "d07: the districts of the province")
        status, _, body = get(base, "/v1/top?level=board&window=all&within=D07", "d07", pw)
        kt.check(status == 200 and all(by_id[i["id"]]["district_id"] == "D07"
                                       for i in json.loads(body)["items"]),
                 "d07: top boards within D07", "D07's boards only", body[:300])
        kt.check_equal(get(base, "/v1/top?level=board&window=all", "d07", pw)[0], 403,
                       "d07: top boards of the province")
        kt.check_equal(get(base, "/v1/silent?level=district&id=D07", "d07", pw)[0], 200,
                       "d07: silent boards of D07")
        kt.check_equal(get(base, "/v1/silent", "d07", pw)[0], 403,
                       "d07: silent boards of the province")
        kt.check_equal(get(base, "/v1/series?level=district&id=D07&window=30d", "d07", pw)[0],
                       200, "d07: series of D07")
        kt.check_equal(get(base, "/v1/series?level=province&window=30d", "d07", pw)[0], 403,
                       "d07: series of the province")
        kt.check_equal(get(base, "/metrics", "d07", pw)[0], 403, "d07: /metrics")

        # Alerts: both districts fire; d07 sees its own.
        kt.wait_until(lambda: len(json.loads(get(base, "/v1/alerts", "admin", "admin-pw")[2])
                                  ["alerts"]) == 2, 60, "both districts' alerts firing")
        mine = json.loads(get(base, "/v1/alerts", "d07", pw)[2])["alerts"]
        kt.check_equal([a["scope_id"] for a in mine], ["D07"], "d07's alerts")

        # /metrics is the metrics user's and the admin's.
        kt.check_equal(get(base, "/metrics", "prom", "prom-pw")[0], 200, "prom: /metrics")
        kt.check_equal(counts("prom", "province", "NA")[0], 403, "prom: the province's counts")
        kt.check_equal(get(base, "/metrics", "admin", "admin-pw")[0], 200, "admin: /metrics")
        # A user without a scope: nothing.
        kt.check_equal(counts("nobody", "district", "D07")[0], 403, "a user without a scope")
        me = json.loads(get(base, "/v1/me", "d07", pw)[2])
        kt.check_equal(me, {"user": "d07", "scope": [{"level": "district", "id": "D07"}],
                            "metrics": False}, "/v1/me of d07")

        # The stream: d07 gets word of changes and its alerts, never the province's numbers.
        more = [("incident", kt.random_event(rng, "incident", rng.choice(d01)["board_id"],
                                             now - DAY)) for _ in range(5)]

        def produce_later():
            time.sleep(1.5)
            kt.produce(broker.bootstrap, kt.messages(more))
        import threading
        t = threading.Thread(target=produce_later)
        t.start()
        text, names = stream_events(port, kt.basic_auth("d07", pw), 6)
        t.join()
        kt.check("counts" not in names and "changed" in names, "d07's stream",
                 "'changed' events, no 'counts'", names)
        kt.check('"windows"' not in text, "no numbers of the province in d07's stream", "none",
                 text[:400])
        text, names = stream_events(port, kt.basic_auth("admin", "admin-pw"), 2)
        kt.check("counts" in names, "the admin's stream has the province's counts", "counts",
                 names)

        # keng-ingest takes the same file: /metrics for metrics_users, the headers on every
        # answer; the gateways' POSTs keep their bearer tokens.
        iport = kt.free_port()
        ing = kt.Process("keng-ingest", ["--listen", f"127.0.0.1:{iport}", "--brokers",
                                         broker.bootstrap, "--web.config.file", web], work)
        procs.append(ing)
        ibase = f"http://127.0.0.1:{iport}"
        kt.wait_until(lambda: get(ibase, "/healthz")[0] == 200, 30, "keng-ingest up")
        status, hdrs, _ = get(ibase, "/metrics")
        kt.check_equal((status, hdrs.get("www-authenticate"), hdrs.get("x-keng-test")),
                       (401, 'Basic realm="keng", charset="UTF-8"', "yes"),
                       "keng-ingest's /metrics without a user")
        kt.check_equal(get(ibase, "/metrics", "d07", pw)[0], 403, "keng-ingest's /metrics: d07")
        kt.check_equal(get(ibase, "/metrics", "prom", "prom-pw")[0], 200,
                       "keng-ingest's /metrics: prom")
        kt.check_equal(get(ibase, "/metrics", "prom", "wrong")[0], 401,
                       "keng-ingest's /metrics: a wrong password")

        # The dashboard, signed in as d07: it opens at D07 and shows D07's numbers.
        dash.require_browser()
        driver = dash.start_browser(work.file("chromium-profile"))
        # What the browser sends once its own prompt has the user's password: the header on
        # every request of the page, the stream and fetch() included (set through the
        # DevTools protocol, since a script cannot type into the native prompt).
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                               {"headers": kt.basic_auth("d07", pw)})
        driver.get(f"{base}/")
        try:
            kt.wait_until(lambda: dash.table_is(driver, "commune", "D07"), dash.WAIT,
                          "the dashboard of d07 opens at D07's communes")
        except kt.TestFailure:
            dash.screenshot(driver, work, "keng-dashboard-d07-user.png")
            raise kt.TestFailure(f"the dashboard of d07 did not open at D07: at "
                                 f"{driver.current_url}, console {driver.get_log('browser')}")
        dash.click(driver, '#windows button[data-window="all"]')
        dash.wait_kpi(driver, "incidents", expected[("district", "D07")]["incidents"]["total"],
                      "D07's incidents (all time) in the headline")
        kt.wait_until(lambda: dash.css(driver, "#conn")[0].get_attribute("data-state") == "live",
                      dash.WAIT, "the live indicator")
        dash.screenshot(driver, work, "keng-dashboard-d07-user.png")
        page = driver.page_source
        province_total = expected[("province", "NA")]["incidents"]["total"]
        kt.check(f">{province_total}<" not in page.replace(".", ""),
                 "the province's total nowhere on d07's page", "absent", province_total)
        errors = [e for e in dash.console_errors(driver) if "403" not in e.get("message", "")]
        kt.check_equal(errors, [], "browser console errors other than refused province calls")
    finally:
        if driver:
            driver.quit()
        kt.close_all(procs, broker, work)


def test_bad_files_and_unsafe_listen():
    work = kt.Workdir(prefix="keng-web-bad-")
    try:
        good = kt.hash_password("pw")
        cases = [
            ("basic_auth_users:\n  alice: not-a-hash\n",
             64, "web-", ":2: basic_auth_users: alice: not a bcrypt hash"),
            (f"basic_auth_users:\n  alice: {good}\nuser_scope:\n  alice: [NA]\n",
             64, "web-", ":3: unknown key 'user_scope'"),
            (f"basic_auth_users:\n  alice: {good}\ntls_server_config:\n  cert_file: x\n",
             64, "web-", ":3: tls_server_config: needs both cert_file and key_file"),
            (f"basic_auth_users:\n  alice: {good}\nuser_scopes:\n  bob: [NA]\n",
             64, "web-", ":4: user_scopes: bob is not in basic_auth_users"),
            (f"basic_auth_users:\n  alice: {good}\nuser_scopes:\n  alice: [D99]\n",
             78, "", "user_scopes: alice: the registry has no unit 'D99'"),
            (f"basic_auth_users:\n\talice: {good}\n", 64, "web-", ":2: a tab in the indentation"),
        ]
        for text, code, _, message in cases:
            out = check_config(work, "", text)
            kt.check_equal(out.returncode, code, f"exit status for {message!r} ({out.stderr!r})")
            kt.check(message in out.stderr, "the refusal says why, with its line", message,
                     out.stderr[-500:])
        # Beyond loopback: refused without users and TLS (test_tls has both), taken with
        # --insecure-listen.
        out = check_config(work, "listen=0.0.0.0:8080\n")
        kt.check_equal(out.returncode, 64, f"0.0.0.0 without users ({out.stderr!r})")
        kt.check("--web.config.file" in out.stderr and "--insecure-listen" in out.stderr,
                 "the refusal names both ways out", "both flags", out.stderr[-500:])
        out = check_config(work, "listen=0.0.0.0:8080\n", extra=["--insecure-listen"])
        kt.check_equal(out.returncode, 0, f"0.0.0.0 with --insecure-listen ({out.stderr!r})")
        out = check_config(work, "listen=0.0.0.0:8080\n",
                           f"basic_auth_users:\n  alice: {good}\nuser_scopes:\n  alice: [NA]\n")
        kt.check_equal(out.returncode, 64, f"0.0.0.0 with users but no TLS ({out.stderr!r})")
        kt.check("tls_server_config" in out.stderr, "the refusal names what is missing",
                 "tls_server_config", out.stderr[-500:])
        out = check_config(work, "listen=127.0.0.1:8080\n")
        kt.check_equal(out.returncode, 0, f"loopback without users ({out.stderr!r})")
        # keng-ingest without TLS takes tokens in clear: beyond loopback only when told.
        for extra, code in (([], 64), (["--insecure-listen"], 0)):
            out = subprocess.run([kt.binary("keng-ingest"), "--check-config", "--listen",
                                  "0.0.0.0:8088", "--brokers", "127.0.0.1:1"] + extra,
                                 capture_output=True, text=True, timeout=60)
            kt.check_equal(out.returncode, code, f"keng-ingest on 0.0.0.0 {extra} "
                           f"({out.stderr[-300:]!r})")
            if code:
                kt.check("--insecure-listen" in out.stderr, "the refusal names the flag",
                         "--insecure-listen", out.stderr[-400:])
    finally:
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_bad_files_and_unsafe_listen, test_users_and_scopes])
