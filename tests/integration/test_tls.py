"""HTTPS on keng's own listeners (tls_server_config in --web.config.file), with real clients:
curl and openssl s_client negotiate TLS 1.2 and 1.3 with keng-aggregate and keng-ingest, and
TLS 1.1, a plain HTTP request, and a missing, untrusted or expired client certificate (where
one is required) are refused at the handshake, counted on /metrics. A handshake that stalls is
closed after http.header_timeout_ms. SIGHUP rotates the certificate while clients keep asking:
no request fails, an open keep-alive connection keeps working, new connections get the new
certificate, and a reload that fails keeps the old one. A file keng cannot serve as Prometheus
would is refused with its line."""

import base64
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time

import kengtest as kt
import test_dashboard as dash

DAY = 86_400_000


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    kt.check_equal(out.returncode, 0, f"openssl {' '.join(args[:2])} ({out.stderr[-300:]!r})")


def make_pki(folder):
    """A CA, two server certificates it signed (for the rotation), a client certificate it
    signed, one it signed that expired yesterday, and one from another CA."""
    def key(name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                f"{name}.key", cwd=folder)

    def ca(name):
        key(name)
        openssl("req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.crt", "-days",
                "30", "-subj", f"/CN={name}", cwd=folder)

    def signed(name, cn, days, ca_name="ca", server=False):
        key(name)
        openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
                cwd=folder)
        ext = f"{name}.ext"
        with open(os.path.join(folder, ext), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                    if server else "extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.crt", "-CAkey",
                f"{ca_name}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days),
                "-extfile", ext, cwd=folder)

    ca("ca")
    ca("other-ca")
    signed("server1", "keng-one", 30, server=True)
    signed("server2", "keng-two", 60, server=True)
    signed("client", "gateway-1", 30)
    signed("expired", "gateway-old", -1)
    signed("stranger", "gateway-x", 30, ca_name="other-ca")
    for name in os.listdir(folder):
        if name.endswith(".key"):
            os.chmod(os.path.join(folder, name), 0o600)


def curl(url, *args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w",
                           "\n%{http_code} %{ssl_verify_result}", *args, url],
                          capture_output=True, text=True, timeout=timeout)


def s_client(port, *args):
    """The protocol openssl s_client negotiated, or None when the handshake failed."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
                          *args], input="", capture_output=True, text=True, timeout=30)
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith("Protocol version:"):
            return line.split(":", 1)[1].strip()
    return None


def metrics_of(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def peer_fingerprint(port, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def fingerprint(path):
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def spki_hash(cert_path):
    """The base64 SHA-256 of a certificate's public key, as Chromium's
    --ignore-certificate-errors-spki-list takes it: the browser trusts that key alone."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                         capture_output=True, timeout=30, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, timeout=30, check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()




def test_aggregate_https():
    """keng-aggregate over HTTPS: both protocol versions with curl and s_client, refusals,
    a stalled handshake, and the certificate rotated under load."""
    rng = random.Random(1812)
    work = kt.Workdir(prefix="keng-tls-")
    pki = work.file("pki")
    os.makedirs(pki)
    make_pki(pki)
    broker = kt.Broker(work, partitions=2)
    agg = None
    try:
        # The certificate's files are replaced in place for the rotation.
        for suffix in ("crt", "key"):
            with open(os.path.join(pki, f"server1.{suffix}"), "rb") as src, \
                    open(os.path.join(pki, f"live.{suffix}"), "wb") as dst:
                dst.write(src.read())
        os.chmod(os.path.join(pki, "live.key"), 0o600)
        web = os.path.join(pki, "web.yml")
        with open(web, "w") as f:
            f.write("basic_auth_users:\n"
                    f"  admin: {kt.hash_password('admin-pw')}\n"
                    "user_scopes:\n  admin: [NA]\n"
                    "tls_server_config:\n"
                    "  cert_file: live.crt   # relative: from this file's folder\n"
                    "  key_file: live.key\n")
        os.chmod(web, 0o600)
        conf = work.file("aggregate.conf")
        with open(conf, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "http.header_timeout_ms=1500\n")
        rows = kt.registry_rows()
        by_id = {r["board_id"]: r for r in rows}
        now = int(time.time() * 1000)
        events = [("incident", kt.random_event(rng, "incident", rng.choice(rows)["board_id"],
                                               now - rng.randint(DAY, 50 * DAY)))
                  for _ in range(80)]
        kt.produce(broker.bootstrap, kt.messages(events))
        expected = kt.expected_all_time(events, by_id)

        port = kt.free_port()
        base = f"https://127.0.0.1:{port}"
        cafile = os.path.join(pki, "ca.crt")
        agg = kt.Process("keng-aggregate", ["--config", conf, "--listen", f"127.0.0.1:{port}",
                                            "--state-dir", work.file("state"),
                                            "--web.config.file", web], work,
                         env={"KENG_BROKERS": broker.bootstrap})
        ok = ["--cacert", cafile, "-u", "admin:admin-pw"]
        kt.wait_until(lambda: agg.alive() and curl(base + "/readyz", "--cacert", cafile)
                      .stdout.endswith("200 0"), 90, "keng-aggregate ready over HTTPS")
        log = open(agg.log_path, "rb").read().decode()
        kt.check("scheme=https" in log and "serving TLS" in log and "keng-one" in log,
                 "the log says it serves TLS, and which certificate", "scheme=https", log[-1500:])

        # curl, TLS 1.2 and 1.3, verifying the certificate: the counts.
        def province(*extra):
            out = curl(base + "/v1/counts?level=province&id=NA", *ok, *extra)
            body, _, status = out.stdout.rpartition("\n")
            return status, (json.loads(body)["windows"]["all"] if status == "200 0" else None)
        kt.wait_until(lambda: province()[1] == expected[("province", "NA")], 60,
                      "the province's counts over HTTPS")
        for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
            status, windows = province(*flags)
            kt.check_equal((status, windows), ("200 0", expected[("province", "NA")]),
                           f"curl {' '.join(flags)}")
        # The live stream over TLS: its first events arrive encrypted like any answer.
        ctx = ssl.create_default_context(cafile=cafile)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: localhost\r\n"
                          b"Authorization: Basic YWRtaW46YWRtaW4tcHc=\r\n\r\n")
                got, deadline = b"", time.monotonic() + 10
                while b"event: counts" not in got and time.monotonic() < deadline:
                    got += s.recv(65536)
        kt.check(got.startswith(b"HTTP/1.1 200") and b"event: counts" in got,
                 "the stream over HTTPS", "200 and an event: counts", got[:300])
        # The dashboard in Chromium over HTTPS, signed in through the browser's Basic challenge:
        # the province's numbers, live through the stream.
        dash.require_browser()
        driver = dash.start_browser(work.file("chromium-profile"), extra_flags=[
            "--ignore-certificate-errors-spki-list=" +
            spki_hash(os.path.join(pki, "server1.crt"))])
        try:
            # The credentials in the address: the browser answers the 401 challenge with them,
            # as with what its own prompt takes, and keeps them for the page's fetch() calls and
            # its stream. The page's own address then holds them, and fetch() refuses a path
            # relative to such an address (a dashboard opened from a bookmark with the password
            # in it loaded nothing but its stream): the dashboard asks from the origin.
            driver.get(f"https://admin:admin-pw@localhost:{port}/")
            driver.get(f"https://admin:admin-pw@localhost:{port}/")  # signed in, remembered
            kt.check("admin:admin-pw@" in driver.current_url, "the page's address holds the "
                     "credentials (the case the dashboard must cope with)", "admin:admin-pw@",
                     driver.current_url)
            dash.click(driver, '#windows button[data-window="all"]')
            try:
                dash.wait_kpi(driver, "incidents",
                              expected[("province", "NA")]["incidents"]["total"],
                              "the province's incidents over HTTPS")
            except kt.TestFailure:
                dash.screenshot(driver, work, "keng-dashboard-https-failed.png")
                raise kt.TestFailure(f"the dashboard over HTTPS: console "
                                     f"{driver.get_log('browser')}; log "
                                     f"{[x for x in agg.log_tail(400).splitlines() if 'refused' in x or 'error' in x][-12:]}")
            kt.wait_until(lambda: dash.css(driver, "#conn")[0].get_attribute("data-state") ==
                          "live", dash.WAIT, "the live indicator over HTTPS")
            dash.screenshot(driver, work, "keng-dashboard-https.png")
            kt.check_equal(dash.console_errors(driver), [], "browser console errors over HTTPS")
        finally:
            driver.quit()
        # openssl s_client: each version, and TLS 1.1 refused.
        kt.check_equal(s_client(port, "-tls1_2"), "TLSv1.2", "s_client -tls1_2")
        kt.check_equal(s_client(port, "-tls1_3"), "TLSv1.3", "s_client -tls1_3")
        kt.check_equal(s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"), None,
                       "s_client -tls1_1 is refused")
        # Plain HTTP on the TLS port gets no answer in clear.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /v1/counts?level=province&id=NA HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            try:
                while chunk := s.recv(4096):
                    got += chunk
            except (ConnectionResetError, socket.timeout):
                pass
        kt.check(b"windows" not in got and not got.startswith(b"HTTP/1.1 200"),
                 "a plain request on the TLS port is not answered", "no counts", got[:200])
        # A client that starts a handshake and stalls is closed after header_timeout_ms.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, no more
            t0 = time.monotonic()
            try:
                left = s.recv(4096)
            except ConnectionResetError:
                left = b""
            waited = time.monotonic() - t0
        kt.check(left == b"" and 1.0 <= waited <= 8, "a stalled handshake is closed",
                 "closed after about 1.5 s", f"{waited:.1f} s, {left[:40]!r}")
        status_m = curl(base + "/metrics", *ok)
        m = metrics_of(status_m.stdout.rpartition("\n")[0])
        kt.check(m.get("keng_http_tls_handshake_failures_total", 0) >= 2,
                 "TLS 1.1 and the plain request counted as failed handshakes", ">= 2",
                 m.get("keng_http_tls_handshake_failures_total"))
        kt.check_equal(m.get("keng_http_tls_handshake_timeouts_total"), 1.0,
                       "the stalled handshake counted")
        kt.check(m.get("keng_http_tls_handshakes_total", 0) >= 5, "handshakes counted", ">= 5",
                 m.get("keng_http_tls_handshakes_total"))
        kt.check(m.get("keng_tls_certificate_not_after_timestamp_seconds", 0) > time.time() + 25 *
                 86400, "the certificate's expiry on /metrics", "in about 30 days",
                 m.get("keng_tls_certificate_not_after_timestamp_seconds"))

        # Rotation under load: a keep-alive connection and new connections keep asking while
        # the files are replaced and SIGHUP is sent; no request may fail.
        ctx = ssl.create_default_context(cafile=cafile)
        auth = {"Authorization": "Basic YWRtaW46YWRtaW4tcHc="}  # admin:admin-pw
        kept = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        kept.request("GET", "/healthz")
        kt.check_equal(kept.getresponse().read() is not None, True, "a keep-alive connection")
        failures, done = [], threading.Event()
        answered = [0]

        def load():
            while not done.is_set():
                try:
                    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                    c.request("GET", "/v1/counts?level=province&id=NA", headers=auth)
                    r = c.getresponse()
                    r.read()
                    c.close()
                    if r.status != 200:
                        failures.append(r.status)
                    answered[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    failures.append(repr(e))
        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        before = answered[0]
        kt.check_equal(peer_fingerprint(port, cafile),
                       fingerprint(os.path.join(pki, "server1.crt")), "the first certificate")
        for suffix in ("crt", "key"):
            with open(os.path.join(pki, f"server2.{suffix}"), "rb") as src, \
                    open(os.path.join(pki, f"live.{suffix}.new"), "wb") as dst:
                dst.write(src.read())
            os.chmod(os.path.join(pki, f"live.{suffix}.new"), 0o600)
            os.replace(os.path.join(pki, f"live.{suffix}.new"), os.path.join(pki, f"live.{suffix}"))
        agg.signal(signal.SIGHUP)
        kt.wait_until(lambda: peer_fingerprint(port, cafile) ==
                      fingerprint(os.path.join(pki, "server2.crt")), 10,
                      "new connections get the new certificate")
        time.sleep(1.0)
        # A reload that fails (a key that is not the certificate's) keeps the new one.
        with open(os.path.join(pki, "client.key"), "rb") as src, \
                open(os.path.join(pki, "live.key"), "wb") as dst:
            dst.write(src.read())
        agg.signal(signal.SIGHUP)
        kt.wait_until(lambda: b"the certificate did not reload" in open(agg.log_path, "rb").read(),
                      10, "the failed reload logged")
        time.sleep(1.0)
        done.set()
        for w in workers:
            w.join(30)
        kt.check_equal(failures, [], "no request failed across the rotations")
        kt.check(answered[0] > before + 20, "requests went on during the rotation",
                 f"> {before + 20}", answered[0])
        kt.check_equal(peer_fingerprint(port, cafile),
                       fingerprint(os.path.join(pki, "server2.crt")),
                       "a failed reload keeps the certificate in use")
        kept.request("GET", "/healthz")
        kt.check_equal(kept.getresponse().status, 200,
                       "the connection opened before the rotation still answers")
        kept.close()
        m = metrics_of(curl(base + "/metrics", *ok).stdout.rpartition("\n")[0])
        kt.check_equal((m.get('keng_tls_reloads_total{result="ok"}'),
                        m.get('keng_tls_reloads_total{result="failed"}')), (1.0, 1.0),
                       "reloads on /metrics")
        log = open(agg.log_path, "rb").read().decode()
        kt.check("certificate reloaded" in log and "keng-two" in log,
                 "the reload is logged with the new certificate", "keng-two", log[-2000:])
        kt.check_equal(agg.stop(), 0, "keng-aggregate exit status")
    finally:
        if agg and agg.alive():
            agg.kill()
        broker.stop()
        work.cleanup()


def test_ingest_client_certificates():
    """keng-ingest requiring client certificates: a gateway with one the CA signed posts over
    TLS 1.2 and 1.3; none, another CA's, and an expired one are refused at the handshake."""
    rng = random.Random(1813)
    work = kt.Workdir(prefix="keng-tls-ingest-")
    pki = work.file("pki")
    os.makedirs(pki)
    make_pki(pki)
    broker = kt.Broker(work, partitions=2)
    ing = None
    try:
        tokens = work.file("tokens")
        out = subprocess.run([kt.binary("keng-ingest"), "--new-token", "gw", "--districts", "*",
                              "--tokens", tokens], capture_output=True, text=True, timeout=10)
        kt.check_equal(out.returncode, 0, f"--new-token ({out.stderr!r})")
        token = out.stdout.strip()
        web = os.path.join(pki, "web.yml")
        with open(web, "w") as f:
            f.write("tls_server_config:\n"
                    f"  cert_file: {pki}/server1.crt\n"
                    f"  key_file: {pki}/server1.key\n"
                    "  client_ca_file: ca.crt\n"
                    "  client_auth_type: RequireAndVerifyClientCert\n")
        os.chmod(web, 0o600)
        port = kt.free_port()
        # Beyond loopback is allowed with TLS (checked, not bound: tests listen on loopback).
        check = subprocess.run([kt.binary("keng-ingest"), "--check-config", "--listen",
                                "0.0.0.0:8088", "--brokers", "127.0.0.1:1", "--web.config.file",
                                web], capture_output=True, text=True, timeout=60)
        kt.check_equal(check.returncode, 0, f"keng-ingest on 0.0.0.0 with TLS ({check.stderr!r})")
        ing = kt.Process("keng-ingest", ["--listen", f"127.0.0.1:{port}", "--brokers",
                                         broker.bootstrap, "--tokens", tokens,
                                         "--web.config.file", web], work)
        base = f"https://127.0.0.1:{port}"
        client = ["--cacert", os.path.join(pki, "ca.crt"), "--cert",
                  os.path.join(pki, "client.crt"), "--key", os.path.join(pki, "client.key")]
        kt.wait_until(lambda: curl(base + "/healthz", *client).stdout.endswith("200 0"), 30,
                      "keng-ingest over HTTPS with a client certificate")
        board = kt.registry_rows()[0]["board_id"]
        now = int(time.time() * 1000)
        for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
            ev = kt.random_event(rng, "incident", board, now - DAY, reported_ms=now - DAY + 1000)
            out = curl(base + "/v1/incidents", *client, *flags, "-H",
                       f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                       "--data-binary", json.dumps([ev]))
            kt.check(out.stdout.endswith("202 0"), f"a post with a client certificate {flags}",
                     "202", out.stdout[-300:] + out.stderr[-300:])
        refused = {
            "no client certificate": ["--cacert", os.path.join(pki, "ca.crt")],
            "another CA's": ["--cacert", os.path.join(pki, "ca.crt"), "--cert",
                             os.path.join(pki, "stranger.crt"), "--key",
                             os.path.join(pki, "stranger.key")],
            "an expired one": ["--cacert", os.path.join(pki, "ca.crt"), "--cert",
                               os.path.join(pki, "expired.crt"), "--key",
                               os.path.join(pki, "expired.key")],
        }
        for what, args in refused.items():
            for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
                out = curl(base + "/healthz", *args, *flags)
                kt.check(out.returncode != 0 and not out.stdout.rstrip().endswith("200 0"),
                         f"{what} is refused ({flags})", "a failed handshake",
                         f"rc={out.returncode} {out.stdout[-100:]} {out.stderr[-200:]}")
        kt.check_equal(s_client(port, "-tls1_3", "-cert", os.path.join(pki, "client.crt"),
                                "-key", os.path.join(pki, "client.key")), "TLSv1.3",
                       "s_client with the client certificate")
        m = metrics_of(curl(base + "/metrics", *client).stdout.rpartition("\n")[0])
        kt.check(m.get("keng_http_tls_handshake_failures_total", 0) >= 4,
                 "the refused certificates counted", ">= 4",
                 m.get("keng_http_tls_handshake_failures_total"))
        log = open(ing.log_path, "rb").read().decode()
        kt.check("TLS handshakes failed" in log, "the refusals are in the log (rate-bounded)",
                 "TLS handshakes failed", log[-1500:])
        kt.check_equal(ing.stop(), 0, "keng-ingest exit status")
    finally:
        if ing and ing.alive():
            ing.kill()
        broker.stop()
        work.cleanup()


def test_bad_tls_config():
    """What keng cannot serve as the file says is refused with its line or file (exit 64)."""
    work = kt.Workdir(prefix="keng-tls-bad-")
    pki = work.file("pki")
    os.makedirs(pki)
    try:
        make_pki(pki)
        good = f"  cert_file: {pki}/server1.crt\n  key_file: {pki}/server1.key\n"
        cases = [
            ("  cert_file: x.crt\n", ":1: tls_server_config: needs both cert_file and key_file"),
            (good + "  min_version: TLS11\n",
             ":4: tls_server_config.min_version: TLS11 is refused: keng serves TLS 1.2 and 1.3"),
            (good + "  min_version: TLS13\n  max_version: TLS12\n",
             "max_version is below min_version"),
            (good + "  client_ca_file: ca.crt\n",
             "client_ca_file is given without a client_auth_type that checks it"),
            (good + "  client_auth_type: RequireAndVerifyClientCert\n",
             "RequireAndVerifyClientCert needs client_ca_file"),
            (good + "  client_auth_type: Sometimes\n", ":4: tls_server_config.client_auth_type"),
            (good + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
             ":4: tls_server_config.cipher_suites: keng does not read this key"),
            (f"  cert_file: {pki}/server1.crt\n  key_file: {pki}/server2.key\n",
             f"{pki}/server2.key is not the key of {pki}/server1.crt"),
            (f"  cert_file: {pki}/missing.crt\n  key_file: {pki}/server1.key\n",
             f"{pki}/missing.crt"),
        ]
        for i, (text, message) in enumerate(cases):
            web = os.path.join(pki, f"web-{i}.yml")
            with open(web, "w") as f:
                f.write("tls_server_config:\n" + text)
            os.chmod(web, 0o600)
            for program in ("keng-aggregate", "keng-ingest"):
                out = subprocess.run([kt.binary(program), "--check-config", "--brokers",
                                      "127.0.0.1:1", "--web.config.file", web],
                                     capture_output=True, text=True, timeout=60)
                kt.check_equal(out.returncode, 64, f"{program}: exit status for {message!r} "
                               f"({out.stderr[-300:]!r})")
                kt.check(message in out.stderr, f"{program}: the refusal says why", message,
                         out.stderr[-500:])
        # keng-aggregate beyond loopback needs users and TLS (or --insecure-listen).
        web = os.path.join(pki, "web-users.yml")
        with open(web, "w") as f:
            f.write(f"basic_auth_users:\n  alice: {kt.hash_password('pw')}\n"
                    "user_scopes:\n  alice: [NA]\n")
        os.chmod(web, 0o600)
        for tls, code in ((False, 64), (True, 0)):
            if tls:
                with open(web, "a") as f:
                    f.write("tls_server_config:\n" + good)
            out = subprocess.run([kt.binary("keng-aggregate"), "--check-config", "--brokers",
                                  "127.0.0.1:1", "--listen", "0.0.0.0:8080", "--web.config.file",
                                  web], capture_output=True, text=True, timeout=60)
            kt.check_equal(out.returncode, code, f"keng-aggregate on 0.0.0.0 with users, "
                           f"tls={tls} ({out.stderr[-300:]!r})")
    finally:
        work.cleanup()


if __name__ == "__main__":
    kt.main([test_bad_tls_config, test_aggregate_https, test_ingest_client_certificates])
