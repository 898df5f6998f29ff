"""keng-replay's review.html and review.pdf, read the way a person reads them: the page in a real
headless Chromium (Debian's chromium, chromium-driver, python3-selenium) shows exactly the
numbers of review.json (headline, tables, district sections, silent boards, dates in
Vietnamese form), every chart has one mark per data point at the place its value puts it, and
the PDF printed by --pdf is A4 with every district starting a page of its own. Also: --pdf
without a browser stops at start with exit 69, and a browser that hangs is stopped at
--pdf-timeout with all its processes. Screenshots go to /tmp/keng-review.png and
/tmp/keng-review-pdf-page1.png for a person to look at."""

import json
import math
import os
import random
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone

import kengtest as kt
from test_dashboard import CHROMIUM, CHROMEDRIVER, start_browser

VN = timezone(timedelta(hours=7))
START = int(datetime(2025, 1, 1, tzinfo=VN).timestamp() * 1000)
END = int(datetime(2026, 1, 1, tzinfo=VN).timestamp() * 1000)

# A small province, so that every district section fits on one printed page: D01 has a commune
# whose boards all stay silent, D02 has no silent board, D03 reports nothing at all.
REGISTRY = [
    ("D01", "Thành phố Vinh", [("D01-C001", "Phường Hưng Bình", ["Khối 1", "Khối 2", "Khối 3",
                                                                  "Khối 4", "Khối 5"]),
                               ("D01-C002", "Phường Lê Lợi", ["Khối 1", "Khối 2", "Khối 3",
                                                              "Khối 4"]),
                               ("D01-C003", "Xã Nghi Ân", ["Xóm 1", "Xóm 2", "Xóm 3"])]),
    ("D02", "Huyện Quỳnh Lưu", [("D02-C001", "Xã Quỳnh Đôi", ["Thôn Đông", "Thôn Tây",
                                                              "Thôn Nam", "Thôn Bắc"]),
                                ("D02-C002", "Xã Quỳnh Thạch", ["Xóm Trung", "Xóm Thượng",
                                                                "Xóm Hạ", "Xóm Mới"])]),
    ("D03", "Huyện Kỳ Sơn", [("D03-C001", "Xã Mường Xén", ["Bản Huồi Pủng", "Bản Xốp Lau",
                                                           "Bản Cha Nga"])]),
]
SILENT_COMMUNES = {"D01-C003", "D03-C001"}
SILENT_EXTRA = {"D01-C001-B05", "D01-C002-B03"}  # silent boards inside active communes
DISTRICT_NAMES = {d: name for d, name, _ in REGISTRY}


def write_registry(path):
    rows = []
    with open(path, "w", encoding="utf-8") as f:
        f.write("board_id,board_name,commune_id,commune_name,district_id,district_name,"
                "groups,members\n")
        for d, dname, communes in REGISTRY:
            for c, cname, boards in communes:
                for i, bname in enumerate(boards, 1):
                    bid = f"{c}-B{i:02d}"
                    f.write(f"{bid},{bname},{c},{cname},{d},{dname},4,5\n")
                    rows.append({"board_id": bid, "board_name": bname, "commune_id": c,
                                 "commune_name": cname, "district_id": d, "district_name": dname})
    return rows


def require_tools():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    missing += [t for t in ("pdfinfo", "pdftotext", "pdftoppm") if not shutil.which(t)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("python3-selenium")
    if missing:
        raise kt.TestFailure(
            f"the review page test reads the page in a real browser and the PDF with poppler, and "
            f"{', '.join(missing)} is missing: install the Debian packages chromium "
            "chromium-driver python3-selenium poppler-utils (scripts/install-deps.sh as root)")


def number(text):
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else None


def replay(broker, out_dir, registry, *extra, env=None, timeout=300):
    return subprocess.run([kt.binary("keng-replay"), "--year", "2025", "--out", out_dir,
                           "--registry", registry, *extra],
                          env=dict(os.environ, KENG_BROKERS=broker.bootstrap, **(env or {})),
                          capture_output=True, timeout=timeout)


def make_events(rng, rows):
    active = [r for r in rows if r["commune_id"] not in SILENT_COMMUNES
              and r["board_id"] not in SILENT_EXTRA]
    events = []
    for i in range(400):
        board = active[i % len(active)]
        kind = "incident" if rng.random() < 0.7 else "mediation"
        events.append((kind, kt.random_event(rng, kind, board["board_id"],
                                             rng.randrange(START, END))))
    events.append(("incident", kt.random_event(rng, "incident", active[0]["board_id"], END - 1)))
    # A silent board's event outside the year does not make it active.
    events.append(("incident", kt.random_event(rng, "incident", "D01-C003-B01", END)))
    return events


def read_page(driver):
    """Everything the test compares, read in one script."""
    return driver.execute_script("""
        function cells(tr) {
            var out = {};
            tr.querySelectorAll('td').forEach(function (td, i) {
                out[td.classList.length > 1 ? td.classList[1] : (td.className || 'col' + i)] =
                    td.textContent;
            });
            return out;
        }
        function rows(table) {
            return Array.prototype.map.call(table.querySelectorAll('tbody tr'), function (tr) {
                return {key: tr.dataset.key, cells: cells(tr)};
            });
        }
        var out = {figs: {}, times: {}, charts: {}, sections: [], text: document.body.innerText,
                   title: document.querySelector('h1').textContent};
        document.querySelectorAll('.fig').forEach(function (e) { out.figs[e.dataset.key] = e.textContent; });
        document.querySelectorAll('time').forEach(function (e) { out.times[e.dataset.key] = e.textContent; });
        out.months = rows(document.querySelector('table.months'));
        out.districts = rows(document.querySelector('table.districts'));
        document.querySelectorAll('svg.chart').forEach(function (svg) {
            out.charts[svg.dataset.chart] = Array.prototype.map.call(
                svg.querySelectorAll('.mark'), function (m) {
                    var b = m.getBBox();
                    return {key: m.dataset.key, value: +m.dataset.value, tag: m.tagName,
                            x: b.x, y: b.y, w: b.width, h: b.height,
                            cy: +(m.getAttribute('cy') || 0), r: +(m.getAttribute('r') || 0),
                            dash: m.getAttribute('stroke-dasharray')};
                });
        });
        document.querySelectorAll('section.district').forEach(function (s) {
            out.sections.push({id: s.dataset.id, name: s.querySelector('h2').textContent,
                communes: rows(s.querySelector('table.communes')),
                silent: Array.prototype.map.call(s.querySelectorAll('.silent-board'),
                                                 function (e) { return e.dataset.id; }),
                silent_count: +s.querySelector('.silent-count').textContent});
        });
        return out;""")


def check_row(cells, scope, what, with_boards=True):
    want = {"incidents": scope["incidents"]["total"],
            "handled_locally": scope["incidents"]["by_resolution"]["HANDLED_LOCALLY"],
            "transferred_to_police": scope["incidents"]["by_resolution"]["TRANSFERRED_TO_POLICE"],
            "pending": scope["incidents"]["by_resolution"]["PENDING"],
            "mediations": scope["mediations"]["total"],
            "reconciled": scope["mediations"]["by_outcome"]["RECONCILED"]}
    got = {k: number(cells.get(k, "")) for k in want}
    if with_boards:
        reported, _, total = cells.get("boards", "").partition("/")
        want["boards"] = (scope["boards_reported"], scope["boards_total"])
        got["boards"] = (number(reported), number(total))
    kt.check_equal(got, want, what)


def check_charts(charts, review):
    province = review["province"]
    expect = {
        "months": {m["month"]: m["incidents"]["total"] for m in review["months"]},
        "districts": {d["id"]: d["incidents"]["total"] for d in review["districts"]},
        "categories": province["incidents"]["by_category"],
        "resolutions": province["incidents"]["by_resolution"],
        "outcomes": province["mediations"]["by_outcome"],
    }
    kt.check_equal(sorted(charts), sorted(expect), "the charts on the page")
    for name, want in expect.items():
        marks = charts[name]
        kt.check_equal(len(marks), len(want), f"chart {name}: marks")
        kt.check_equal({m["key"]: m["value"] for m in marks}, want, f"chart {name}: values")
    # The line: heights follow the values on one linear scale (cy = base - k * value).
    line = charts["months"]
    hi = max(line, key=lambda m: m["value"])
    lo = min(line, key=lambda m: m["value"])
    k = (lo["cy"] - hi["cy"]) / (hi["value"] - lo["value"])
    for m in line:
        kt.check(abs(m["cy"] - (lo["cy"] - k * (m["value"] - lo["value"]))) < 0.2,
                 f"chart months: point {m['key']} at the height of its value",
                 lo["cy"] - k * (m["value"] - lo["value"]), m["cy"])
    kt.check(k > 0, "chart months: a larger value stands higher", "> 0", k)
    # Bars: lengths proportional to the values; the largest is drawn.
    bars = charts["districts"]
    top = max(bars, key=lambda m: m["value"])
    kt.check(top["w"] > 100, "chart districts: the largest bar is drawn", "> 100 px", top["w"])
    for m in bars:
        want = top["w"] * m["value"] / top["value"]
        kt.check(abs(m["w"] - want) < 0.2, f"chart districts: bar {m['key']} length", want, m["w"])
    # Rings: each slice's dash is its share of the circumference; together once round.
    for name in ("categories", "resolutions", "outcomes"):
        marks = charts[name]
        total = sum(m["value"] for m in marks)
        circumference = 2 * math.pi * marks[0]["r"]
        dashes = [float(m["dash"].split()[0]) for m in marks]
        for m, dash in zip(marks, dashes):
            want = circumference * m["value"] / total
            kt.check(abs(dash - want) < 0.01, f"chart {name}: slice {m['key']}", want, dash)
        kt.check(abs(sum(dashes) - circumference) < 0.05, f"chart {name}: slices go once round",
                 circumference, sum(dashes))


def pdf_pages(path):
    info = subprocess.run(["pdfinfo", path], capture_output=True, text=True, timeout=60).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    pages = int(fields["Pages"])
    texts = [subprocess.run(["pdftotext", "-f", str(i), "-l", str(i), path, "-"],
                            capture_output=True, text=True, timeout=60).stdout
             for i in range(1, pages + 1)]
    return fields, texts


def test_review_page_and_pdf():
    require_tools()
    rng = random.Random(12)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=2)
    driver = None
    try:
        registry = work.file("registry.csv")
        rows = write_registry(registry)
        boards_by_id = {r["board_id"]: r for r in rows}
        events = make_events(rng, rows)
        resent = rng.sample(events[:-1], 20)
        kt.produce(broker.bootstrap, kt.messages(events + resent))

        out_dir = work.file("review")
        result = replay(broker, out_dir, registry, "--pdf")
        kt.check_equal(result.returncode, 0, f"keng-replay --pdf exit status "
                                             f"({result.stderr[-1500:]!r})")
        kt.check(os.path.join(out_dir, "review.pdf").encode() in result.stdout,
                 "keng-replay names the PDF it wrote", "review.pdf", result.stdout)
        with open(os.path.join(out_dir, "review.json"), encoding="utf-8") as f:
            review = json.load(f)

        # review.json's new figures, against the events themselves.
        in_year = [(k, e) for k, e in events if START <= e["occurred_at"] < END]
        expected = kt.expected_all_time(in_year, boards_by_id)
        active = {e["board_id"] for _, e in in_year}
        p = expected[("province", "NA")]
        kt.check_equal(review["headline"], {
            "boards_reported": len(active), "boards_total": len(rows),
            "incidents_detected": p["incidents"]["total"],
            "incidents_handled_locally": p["incidents"]["by_resolution"]["HANDLED_LOCALLY"],
            "incidents_transferred_to_police":
                p["incidents"]["by_resolution"]["TRANSFERRED_TO_POLICE"],
            "disputes_mediated": p["mediations"]["total"],
            "disputes_reconciled": p["mediations"]["by_outcome"]["RECONCILED"]},
            "review.json headline")
        for d in review["districts"]:
            mine = [r for r in rows if r["district_id"] == d["id"]]
            kt.check_equal((d["boards_reported"], d["boards_total"]),
                           (len([r for r in mine if r["board_id"] in active]), len(mine)),
                           f"review.json boards of {d['id']}")

        # Distinct figures, so that a figure shown in another's place cannot pass unseen.
        figures = list(review["headline"].values())
        kt.check_equal(len(set(figures)), len(figures), f"distinct headline figures {figures}")

        # The page, in a real browser.
        driver = start_browser(work.file("chromium-profile"), width=1200, height=3000)
        driver.get("file://" + os.path.join(out_dir, "review.html"))
        page = read_page(driver)
        driver.save_screenshot("/tmp/keng-review.png")

        kt.check_equal(page["title"], "Báo cáo tổng kết năm 2025", "page title")
        kt.check_equal(page["times"], {"from": "01/01/2025", "to": "31/12/2025"},
                       "the period in Vietnamese form")
        kt.check("T00:00" not in page["text"] and "+07:00" not in page["text"],
                 "no ISO timestamps on the page", "none", page["text"][:300])
        want_figs = dict(review["headline"], **review["data_quality"])
        kt.check_equal({k: number(v) for k, v in page["figs"].items()}, want_figs,
                       "headline and data-quality figures on the page")

        kt.check_equal([r["key"] for r in page["months"]], [m["month"] for m in review["months"]],
                       "month rows")
        for row, month in zip(page["months"], review["months"]):
            y, m = month["month"].split("-")
            kt.check_equal(row["cells"].get("col0"), f"{m}/{y}", f"month {month['month']}: name")
            check_row(row["cells"], month, f"month {month['month']}", with_boards=False)
        kt.check_equal([r["key"] for r in page["districts"]],
                       [d["id"] for d in review["districts"]] + ["NA"], "district rows")
        for row, scope in zip(page["districts"], review["districts"] + [review["province"]]):
            kt.check(row["cells"].get("name"), f"district {scope['id']}: the name column",
                     scope["name"], row["cells"].get("name"))
            check_row(row["cells"], scope, f"district table {scope['id']}")

        check_charts(page["charts"], review)

        communes = {c["id"]: (i, c) for i, c in enumerate(review["communes"])}
        kt.check_equal([(s["id"], s["name"]) for s in page["sections"]],
                       [(d["id"], d["name"]) for d in review["districts"]], "district sections")
        for section in page["sections"]:
            mine = [c for c in review["communes"] if c["district_id"] == section["id"]]
            ranked = sorted(mine, key=lambda c: (-c["incidents"]["total"],
                                                 -c["mediations"]["total"], communes[c["id"]][0]))
            kt.check_equal([r["key"] for r in section["communes"]], [c["id"] for c in ranked],
                           f"{section['id']}: communes ranked")
            for i, row in enumerate(section["communes"]):
                kt.check_equal(number(row["cells"]["n"]), i + 1, f"{row['key']}: rank")
                check_row(row["cells"], communes[row["key"]][1], f"commune {row['key']}")
            silent = [r["board_id"] for r in rows
                      if r["district_id"] == section["id"] and r["board_id"] not in active]
            kt.check_equal(section["silent"], silent, f"{section['id']}: silent boards")
            kt.check_equal(section["silent_count"], len(silent), f"{section['id']}: silent count")
        kt.check_equal(sorted(b for s in page["sections"] for b in s["silent"]),
                       sorted({"D01-C003-B01", "D01-C003-B02", "D01-C003-B03", "D03-C001-B01",
                               "D03-C001-B02", "D03-C001-B03"} | SILENT_EXTRA),
                       "the silent boards of the province")

        # The PDF: A4, the front pages, then one page per district, each starting its own.
        pdf = os.path.join(out_dir, "review.pdf")
        fields, texts = pdf_pages(pdf)
        width, height = (float(x) for x in fields["Page size"].split("pts")[0].split("x"))
        kt.check(abs(width - 595.3) < 2 and abs(height - 841.9) < 2, "PDF page size is A4",
                 "595 x 842 pts", fields["Page size"])
        kt.check("Báo cáo tổng kết năm 2025" in texts[0] and "Kết quả nổi bật" in texts[0],
                 "PDF page 1 has the title and the headline", "both", texts[0][:400])
        starts = {}
        for i, text in enumerate(texts, 1):
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            for d, name in DISTRICT_NAMES.items():
                if first == name:
                    starts[d] = i
        kt.check_equal(sorted(starts), sorted(DISTRICT_NAMES),
                       "PDF: every district section starts a page")
        first = starts["D01"]
        kt.check_equal([starts[d] for d, _, _ in REGISTRY], list(range(first, first + 3)),
                       "PDF: districts on consecutive pages, one page each")
        kt.check_equal(len(texts), first + 2, "PDF pages: the front pages and one per district")
        kt.check(first >= 2, "PDF: the front matter comes before the districts", ">= 2", first)
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile",
                        pdf, "/tmp/keng-review-pdf-page1"], check=True, timeout=60)
    finally:
        if driver is not None:
            driver.quit()
        kt.close_all([], broker, work)


def test_pdf_without_a_browser():
    work = kt.Workdir()
    try:
        env = dict(os.environ, KENG_BROKERS="127.0.0.1:1", KENG_CHROMIUM="/nonexistent/chromium")
        out_dir = work.file("review")
        started = time.monotonic()
        result = subprocess.run([kt.binary("keng-replay"), "--year", "2025", "--out", out_dir,
                                 "--pdf"], env=env, capture_output=True, timeout=60)
        kt.check_equal(result.returncode, 69, "exit status without the named browser")
        kt.check(b"KENG_CHROMIUM=/nonexistent/chromium" in result.stderr,
                 "the message names the browser path", "KENG_CHROMIUM=…", result.stderr)
        kt.check(time.monotonic() - started < 30, "it says so at start, before replaying",
                 "< 30 s", time.monotonic() - started)
        kt.check(not os.path.exists(out_dir), "no report written", "no folder", out_dir)

        env.pop("KENG_CHROMIUM")
        env["PATH"] = work.file("empty-path")
        result = subprocess.run([kt.binary("keng-replay"), "--year", "2025", "--out", out_dir,
                                 "--pdf"], env=env, capture_output=True, timeout=60)
        kt.check_equal(result.returncode, 69, "exit status with no browser on PATH")
        kt.check(b"chromium" in result.stderr and b"--pdf" in result.stderr,
                 "the message says what to install", "chromium, --pdf", result.stderr)
    finally:
        work.cleanup()


def test_pdf_browser_that_hangs_is_stopped():
    rng = random.Random(5)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=1)
    pids = []
    try:
        registry = work.file("registry.csv")
        rows = write_registry(registry)
        kt.produce(broker.bootstrap, kt.messages(make_events(rng, rows)[:50]))
        fake = work.file("fake-chromium")
        with open(fake, "w") as f:
            f.write(f"#!/bin/sh\necho $$ > {work.file('browser.pid')}\n"
                    f"sleep 300 &\necho $! > {work.file('helper.pid')}\nexec sleep 300\n")
        os.chmod(fake, 0o755)
        out_dir = work.file("review")
        started = time.monotonic()
        result = replay(broker, out_dir, registry, "--pdf", "--pdf-timeout", "2",
                        env={"KENG_CHROMIUM": fake}, timeout=120)
        elapsed = time.monotonic() - started
        kt.check_equal(result.returncode, 1, "exit status when the browser hangs")
        kt.check(b"within 2 s" in result.stderr, "the message says it ran out of time",
                 "within 2 s", result.stderr[-600:])
        kt.check(elapsed < 60, "keng-replay returns soon after the deadline", "< 60 s", elapsed)
        kt.check(os.path.exists(os.path.join(out_dir, "review.html")),
                 "review.html is written all the same", True, os.listdir(out_dir))
        kt.check_equal(sorted(f for f in os.listdir(out_dir) if "pdf" in f), [],
                       "no PDF nor part of one left")
        for name in ("browser.pid", "helper.pid"):
            with open(work.file(name)) as f:
                pids.append(int(f.read()))
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "gone"
            kt.check(state in ("gone", "Z", "X"), f"browser process {pid} stopped",
                     "gone or a zombie", state)
            pids = [q for q in pids if q != pid]

        # SIGINT while the browser prints stops it at once, not at the deadline.
        os.unlink(work.file("browser.pid"))
        proc = subprocess.Popen([kt.binary("keng-replay"), "--year", "2025", "--out", out_dir,
                                 "--registry", registry, "--pdf", "--pdf-timeout", "600"],
                                env=dict(os.environ, KENG_BROKERS=broker.bootstrap,
                                         KENG_CHROMIUM=fake),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            kt.wait_until(lambda: os.path.exists(work.file("browser.pid")), 120,
                          "keng-replay to start the browser")
            started = time.monotonic()
            proc.send_signal(2)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kt.check_equal(proc.returncode, 1, "exit status when interrupted while printing")
        kt.check(b"interrupted" in err, "the message says it was interrupted", "interrupted",
                 err[-600:])
        kt.check(time.monotonic() - started < 30, "SIGINT stops the printing at once", "< 30 s",
                 time.monotonic() - started)
        with open(work.file("browser.pid")) as f:
            pid = int(f.read())
        kt.check(not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in "ZX",
                 "the interrupted browser is stopped", "gone", pid)

        # A browser that fails: its reason, without the D-Bus noise of a headless server.
        with open(fake, "w") as f:
            f.write("#!/bin/sh\necho 'cannot open the page' >&2\n"
                    "echo '[1:1:ERROR:dbus/bus.cc(407)] Failed to connect to the bus' >&2\n"
                    "exit 3\n")
        result = replay(broker, out_dir, registry, "--pdf", env={"KENG_CHROMIUM": fake},
                        timeout=120)
        kt.check_equal(result.returncode, 1, "exit status when the browser fails")
        kt.check(b"exit status 3): cannot open the page" in result.stderr,
                 "the message gives the browser's status and last words",
                 "exit status 3): cannot open the page", result.stderr[-600:])

        # A browser that exits 0 without writing the file is an error too.
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        result = replay(broker, out_dir, registry, "--pdf", env={"KENG_CHROMIUM": fake},
                        timeout=120)
        kt.check_equal(result.returncode, 1, "exit status when the browser writes nothing")
        kt.check(b"without writing" in result.stderr, "the message says no PDF came",
                 "without writing", result.stderr[-600:])
    finally:
        for pid in pids:  # only if the test failed with them alive
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        kt.close_all([], broker, work)


def test_pdf_keeps_the_browser_sandbox_unless_root():
    """Chromium's sandbox is what stands between a page and the machine: keng-replay turns it
    off only as root, where Chromium refuses to start with it. A fake browser records its
    arguments; the review is then written as root and as the unprivileged user nobody. Either
    way the review's folder and files are not readable by other users."""
    if os.geteuid() != 0:
        print("SKIPPED test_pdf_keeps_the_browser_sandbox_unless_root: needs root to run "
              "keng-replay as both root and nobody; this is not a pass", flush=True)
        return
    rng = random.Random(6)
    work = kt.Workdir()
    os.chmod(work.path, 0o777)
    broker = kt.Broker(work, partitions=1)
    try:
        registry = work.file("registry.csv")
        rows = write_registry(registry)
        os.chmod(registry, 0o644)
        kt.produce(broker.bootstrap, kt.messages(make_events(rng, rows)[:20]))
        fake = work.file("fake-chromium")
        with open(fake, "w") as f:
            # Records its arguments, one a line, and writes a PDF where it is told to.
            f.write("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > \"$KENG_FAKE_ARGS\"\n"
                    "for a in \"$@\"; do case \"$a\" in --print-to-pdf=*) "
                    "printf '%%PDF-1.4\\n' > \"${a#--print-to-pdf=}\";; esac; done\n")
        os.chmod(fake, 0o755)
        for user, prefix in (("root", []),
                             ("nobody", ["setpriv", "--reuid=65534", "--regid=65534",
                                         "--clear-groups"])):
            out_dir, args_file = work.file(f"review-{user}"), work.file(f"args-{user}")
            env = dict(os.environ, KENG_BROKERS=broker.bootstrap, KENG_CHROMIUM=fake,
                       KENG_FAKE_ARGS=args_file, HOME=work.path, TMPDIR=work.path)
            result = subprocess.run(prefix + [kt.binary("keng-replay"), "--year", "2025", "--out",
                                              out_dir, "--registry", registry, "--pdf"],
                                    env=env, capture_output=True, timeout=120)
            kt.check_equal(result.returncode, 0, f"keng-replay --pdf as {user} "
                                                 f"({result.stderr.decode()[-500:]})")
            with open(args_file) as f:
                args = f.read().split("\n")
            kt.check_equal("--no-sandbox" in args, user == "root",
                           f"--no-sandbox given to the browser as {user}")
            # The review holds counts per hamlet by category: not for every local user.
            for name in ("", "review.html", "review.csv", "review.json", "review.pdf"):
                mode = os.stat(os.path.join(out_dir, name)).st_mode & 0o777
                kt.check_equal(oct(mode & 0o007), oct(0), f"what others may do with "
                               f"{name or 'the review folder'} (mode {oct(mode)}) as {user}")
    finally:
        kt.close_all([], broker, work)


if __name__ == "__main__":
    kt.main([test_review_page_and_pdf, test_pdf_without_a_browser,
             test_pdf_browser_that_hangs_is_stopped,
             test_pdf_keeps_the_browser_sandbox_unless_root])
