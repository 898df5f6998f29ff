"""What the Schema Registry tests share: a real Confluent-compatible registry (Apicurio
Registry, from scripts/schema-registry.sh) on 127.0.0.1, stopped by itself should the test
die, and the few REST calls the tests make to it. Not a test itself."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import kengtest as kt

SCRIPT = os.path.join(kt.SOURCE_DIR, "scripts", "schema-registry.sh")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def skipped(test_name):
    """True, after saying so, when the registry cannot run here (no java or mvn): the test
    then returns at once."""
    ok = subprocess.run(["sh", "-c", "command -v java && command -v mvn"],
                        capture_output=True).returncode == 0
    if ok:
        return False
    print(f"SKIPPED {test_name}: no java or mvn for scripts/schema-registry.sh; this is not a "
          "pass", flush=True)
    return True


class Registry:
    """One registry under work/registry, on a port this test holds; .url is the base URL
    (…/apis/ccompat/v7) that keng's schema.registry.url takes."""

    def __init__(self, work):
        self.dir = work.file("registry")
        self.port = kt.free_port()
        try:
            self._script("up", timeout=1200)
        except BaseException:
            self.down()
            raise
        with open(os.path.join(self.dir, "url")) as f:
            self.url = f.read().strip()

    def _script(self, command, timeout=300):
        env = dict(os.environ, KENG_REGISTRY_OWNER_PID=str(os.getpid()),
                   KENG_REGISTRY_PORT=str(self.port))
        out = subprocess.run([SCRIPT, command, self.dir], capture_output=True, timeout=timeout,
                             env=env)
        kt.check_equal(out.returncode, 0, f"schema-registry.sh {command} exit status "
                       f"({out.stderr.decode(errors='replace')[-2000:]})")

    def kill(self):
        self._script("kill")
        kt.log("SIGKILLed the schema registry")

    def start(self):
        """Starts it again on the same port; it is empty (in-memory storage)."""
        self._script("start")
        kt.log("the schema registry is back (empty)")

    def down(self):
        subprocess.run([SCRIPT, "down", self.dir], capture_output=True, timeout=120)

    def call(self, method, path, body=None, timeout=10):
        """(status, parsed JSON or None) of one request to the registry's API."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": CONTENT_TYPE,
                                              "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, None

    def register(self, subject, schema_text):
        status, body = self.call("POST", f"/subjects/{subject}/versions", {"schema": schema_text})
        kt.check_equal(status, 200, f"registering under {subject} ({body})")
        return body["id"]

    def schema_text(self, schema_id):
        status, body = self.call("GET", f"/schemas/ids/{schema_id}")
        kt.check_equal(status, 200, f"GET /schemas/ids/{schema_id} ({body})")
        return body["schema"]

    def versions(self, subject):
        status, body = self.call("GET", f"/subjects/{subject}/versions")
        return body if status == 200 else []

    def compatibility(self, subject=None):
        status, body = self.call("GET", f"/config/{subject}" if subject else "/config")
        kt.check_equal(status, 200, f"GET config of {subject or 'the registry'} ({body})")
        return body.get("compatibilityLevel") or body.get("compatibility")


# ---- an outside client's view: Confluent framing with the registry's ids ----

_parsed = {}


def writer_schema(reg, schema_id):
    """The parsed schema of a registry id, asked once."""
    import avro.schema
    key = (reg.url, schema_id)
    if key not in _parsed:
        _parsed[key] = avro.schema.parse(reg.schema_text(schema_id))
    return _parsed[key]


def decode(reg, data):
    """(schema id, record) of a framed message, read with its writer's schema from the
    registry, as any Confluent-compatible client does."""
    import io
    import struct

    import avro.io
    magic, schema_id = struct.unpack(">bI", data[:5])
    kt.check_equal(magic, 0, "magic byte")
    record = avro.io.DatumReader(writer_schema(reg, schema_id)).read(
        avro.io.BinaryDecoder(io.BytesIO(data[5:])))
    return schema_id, record


def encode(kind, event, schema_id, schema_text):
    """event framed with schema_id, written with the schema schema_text."""
    import io
    import struct

    import avro.io
    import avro.schema
    record = kt.to_avro_record(kind, event)
    schema = avro.schema.parse(schema_text)
    for field in schema.fields:
        record.setdefault(field.name, None)
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def manifest_text(name):
    with open(os.path.join(kt.SCHEMA_DIR, name)) as f:
        return f.read()


def shift_ids(reg):
    """Registers another team's schema first, so that the registry's ids of keng's schemas
    differ from the manifest's: a test that passed with manifest ids would fail."""
    other = {"type": "record", "name": "Other", "namespace": "org.example",
             "fields": [{"name": "x", "type": "int"}]}
    return reg.register("other-value", json.dumps(other))


def keng_schemas(reg, *args):
    out = subprocess.run([kt.binary("keng-schemas"), "--url", reg.url] + list(args),
                         capture_output=True, text=True, timeout=120)
    kt.check_equal(out.returncode, 0, f"keng-schemas {' '.join(args)} ({out.stderr})")
    ids = {}
    for line in out.stdout.splitlines():
        kv = dict(x.split("=", 1) for x in line.split())
        if "id" in kv:
            ids[(kv["record"], int(kv["record_version"]))] = int(kv["id"])
    return ids


# ---- confluent-kafka from PyPI, in a virtualenv of the tests' own ----

CONFLUENT_KAFKA = "confluent-kafka[avro,schemaregistry]==2.16.2"
VENV_ROOT = os.environ.get("KENG_TEST_VENV_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "keng-test-venvs")
CLIENT = os.path.join(os.path.dirname(__file__), "registry_client.py")


def confluent_python():
    """The python of a virtualenv with confluent-kafka's Schema Registry client from PyPI
    (made once, kept in ~/.cache/keng-test-venvs), or (None, why) when PyPI cannot be
    reached or the install fails."""
    import fcntl
    import venv
    path = os.path.join(VENV_ROOT, "confluent-kafka-2.16.2")
    python = os.path.join(path, "bin", "python")
    os.makedirs(VENV_ROOT, exist_ok=True)
    with open(os.path.join(VENV_ROOT, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(path, "complete")):
            return python, None
        subprocess.run(["rm", "-rf", path], check=False)
        try:
            venv.EnvBuilder(with_pip=True).create(path)
        except Exception as e:  # python3-venv missing
            return None, f"cannot make a virtualenv: {e}"
        try:
            out = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  "--timeout", "30", "--retries", "1", CONFLUENT_KAFKA],
                                 capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, "pip install of confluent-kafka from PyPI timed out"
        if out.returncode != 0:
            return None, ("pip install of confluent-kafka from PyPI failed (is PyPI reachable?): "
                          + out.stderr.strip()[-300:])
        open(os.path.join(path, "complete"), "w").close()
        return python, None


def client(python, *args, stdin=None, timeout=180):
    """Runs registry_client.py in the virtualenv; its stdout's JSON lines."""
    out = subprocess.run([python, CLIENT] + list(args), input=stdin, capture_output=True,
                         text=True, timeout=timeout)
    kt.check_equal(out.returncode, 0, f"registry_client.py {args[0]} ({out.stderr[-1500:]})")
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to the registry's port, listening only once started: a
    program given its URL finds no registry until the test says so (while the registry
    itself is already up for the test's own calls)."""

    def __init__(self, reg):
        self.port = kt.free_port()
        self.target = reg.port
        self.url = reg.url.replace(f":{reg.port}/", f":{self.port}/")
        self.server = None

    def start(self):
        import socket
        import threading
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(16)

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass

        def accept():
            while True:
                try:
                    client, _ = self.server.accept()
                except OSError:
                    return
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                except OSError:
                    client.close()
                    continue
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.close()


class AuthProxy:
    """An HTTPS front for the registry on 127.0.0.1 that wants HTTP basic auth, as a
    deployment's registry may: a request without the right Authorization gets 401, the rest
    is passed on. Its certificate is made for 127.0.0.1 here; ca_file checks it."""

    def __init__(self, work, reg, username, password):
        import base64
        import http.server
        import ssl
        import threading
        self.ca_file, key = work.file("proxy-cert.pem"), work.file("proxy-key.pem")
        out = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                              "-keyout", key, "-out", self.ca_file, "-days", "1", "-subj",
                              "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                             capture_output=True, text=True, timeout=60)
        kt.check_equal(out.returncode, 0, f"openssl req ({out.stderr[-300:]})")
        want = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        target = reg.url.rsplit("/apis/", 1)[0]
        self.seen = []  # (method, path, authorized)

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def forward(self):
                ok = self.headers.get("Authorization") == want
                proxy.seen.append((self.command, self.path, ok))
                if not ok:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="registry"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                req = urllib.request.Request(target + self.path, data=body, method=self.command,
                                             headers={"Content-Type": CONTENT_TYPE})
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = forward

        proxy = self
        self.port = kt.free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.port}/apis/ccompat/v7"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
