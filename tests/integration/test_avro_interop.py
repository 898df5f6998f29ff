"""keng's Avro against Apache Avro's Python library, both ways.

Python writes Confluent-framed incidents and mediations with avro.io.DatumWriter and
`keng-avro decode` must read every field back; then `keng-avro encode` writes and Python's
avro.io.DatumReader must read every field back. Runs with Debian's /usr/bin/python3 and
needs KENG_BIN_DIR (the build's bin/) and KENG_SOURCE_DIR.
"""
import csv
import datetime
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import avro.io
import avro.schema

BIN_DIR = os.environ.get("KENG_BIN_DIR", "")
SOURCE_DIR = os.environ.get("KENG_SOURCE_DIR", "")
KENG_AVRO = os.path.join(BIN_DIR, "keng-avro")
SCHEMA_DIR = os.path.join(SOURCE_DIR, "schemas")
UTC = datetime.timezone.utc
TIMEOUT = 60

CATEGORIES = ["THEFT", "ASSAULT", "PUBLIC_DISORDER", "DRUGS", "GAMBLING", "DOMESTIC_VIOLENCE",
              "TRAFFIC", "HUMAN_TRAFFICKING", "ILLEGAL_MIGRATION", "FRAUD", "PROPERTY_DAMAGE",
              "OTHER"]
SEVERITIES = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
RESOLUTIONS = ["PENDING", "HANDLED_LOCALLY", "TRANSFERRED_TO_POLICE"]
SOURCES = ["MOBILE_APP", "SMS", "HOTLINE", "PATROL", "CAMERA", "OTHER"]
DISPUTES = ["LAND", "FAMILY", "NEIGHBOR", "DEBT", "INHERITANCE", "OTHER"]
OUTCOMES = ["RECONCILED", "NOT_RECONCILED", "REFERRED"]
SUMMARIES = [
    "Mất trộm con bò của gia đình ông Nguyễn Văn Hùng ở xóm 5",
    "Hai thanh niên đánh nhau gây thương tích tại ngã ba chợ, đã lập biên bản",
    "Tranh chấp lối đi chung giữa hai hộ, Tổ hòa giải đã giải thích quy định",
    "Đánh bạc ăn tiền tại nhà văn hoá khối 7 — tạm giữ tang vật ₫ 2.500.000",
    "",
    "Bản Mường Lống: cháy rừng nhỏ, 🔥 dập tắt kịp thời",
]


def load_schemas():
    """Schema id -> (subject, parsed schema), as schemas/manifest.csv lists them."""
    out = {}
    with open(os.path.join(SCHEMA_DIR, "manifest.csv"), encoding="utf-8") as f:
        for row in csv.reader(line for line in f if line.strip() and not line.startswith("#")):
            schema_id, subject, _version, name = row
            with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as s:
                out[int(schema_id)] = (subject, avro.schema.parse(s.read()))
    return out


def dt(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=UTC).replace(
        microsecond=(ms % 1000) * 1000)


def ms_of(value):
    """Milliseconds from a datetime that Python's avro returns, or an RFC 3339 string."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    delta = value - datetime.datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def frame(schema_id, schema, datum):
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", schema_id))
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def unframe(schemas, data):
    assert data[0] == 0, f"expected magic byte 0x00, got {data[0]:#04x}"
    (schema_id,) = struct.unpack(">i", data[1:5])
    subject, schema = schemas[schema_id]
    decoder = avro.io.BinaryDecoder(io.BytesIO(data[5:]))
    return schema_id, subject, avro.io.DatumReader(schema).read(decoder)


def incidents():
    """Incidents with every symbol of every enum, nulls and non-nulls, Vietnamese text."""
    base = 1740837600000  # 2025-03-01T14:00:00Z
    out = []
    for i in range(24):
        out.append({
            "event_id": f"5b0e{i:04d}-8c1d-4f6a-9e2b-{i:012d}",
            "board_id": f"D{1 + i % 21:02d}-C{1 + i * 7 % 460:03d}-B{1 + i % 9:02d}",
            "group_id": None if i % 3 == 0 else f"D{1 + i % 21:02d}-C{1 + i * 7 % 460:03d}-B{1 + i % 9:02d}-G{1 + i % 5:02d}",
            "occurred_at": dt(base + i * 3_600_123),
            "reported_at": dt(base + i * 3_600_123 + 61_001),
            "category": CATEGORIES[i % len(CATEGORIES)],
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "resolution": RESOLUTIONS[i % len(RESOLUTIONS)],
            "people_involved": [0, 1, 2, 7, 100000][i % 5],
            "source": SOURCES[i % len(SOURCES)],
            "location": None if i % 4 == 1 else {"lat": 18.6733 + i / 1000 - (90 if i == 2 else 0),
                                                  "lon": 105.6923 - i / 997 + (74.3077 if i == 3 else 0)},
            "summary": None if i % 5 == 4 else SUMMARIES[i % len(SUMMARIES)],
        })
    return out


def incidents_v2():
    """The incidents with Incident v2's police_case_id on those transferred to the police
    (every other one, so that null is written too)."""
    out = incidents()
    for i, ev in enumerate(out):
        transferred = ev["resolution"] == "TRANSFERRED_TO_POLICE"
        ev["police_case_id"] = (f"{117 + i}/2025/CAX Nghi Lộc" if transferred and i % 2 == 0
                                else None)
    return out


def mediations():
    base = 1700000000000
    out = []
    for i in range(12):
        out.append({
            "event_id": f"med:{i}.x_y-{i * 7919}",
            "board_id": f"D{1 + i % 21:02d}-C{1 + i % 460:03d}-B{1 + i % 3:02d}",
            "group_id": None if i % 2 else f"D07-C012-B03-G{i:02d}",
            "occurred_at": dt(base + i * 86_400_007),
            "reported_at": dt(base + i * 86_400_007 + 999),
            "dispute_type": DISPUTES[i % len(DISPUTES)],
            "outcome": OUTCOMES[i % len(OUTCOMES)],
            "parties": [2, 3, 0, 100000][i % 4],
            "related_incident_id": None if i % 3 else f"5b0e{i:04d}-8c1d-4f6a-9e2b-{i:012d}",
            "summary": None if i % 4 == 3 else SUMMARIES[(i + 1) % len(SUMMARIES)],
        })
    return out


def run(args, stdin=None):
    return subprocess.run([KENG_AVRO] + args, input=stdin, capture_output=True,
                          timeout=TIMEOUT, check=False)


class AvroInterop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(KENG_AVRO):
            raise unittest.SkipTest(f"{KENG_AVRO} is not built")
        cls.schemas = load_schemas()
        cls.ids = {subject: schema_id for schema_id, (subject, _) in cls.schemas.items()}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="keng-interop-")
        self.addCleanup(self.tmp.cleanup)

    def assert_same(self, kind, want, got, where):
        """want: an Avro datum (datetimes for times); got: keng's JSON or an Avro datum.
        Incident v2's police_case_id may be absent from either (v1 data, or keng's JSON
        without a case number), which means null."""
        fields = ["event_id", "board_id", "group_id", "occurred_at", "reported_at", "summary"]
        fields += (["category", "severity", "resolution", "people_involved", "source", "location"]
                   if kind == "incident" else
                   ["dispute_type", "outcome", "parties", "related_incident_id"])
        optional = ["police_case_id"] if kind == "incident" else []
        self.assertEqual(sorted(k for k in got if k not in optional), sorted(fields),
                         f"{where}: expected exactly the fields {sorted(fields)}, got {sorted(got)}")
        for name in optional:
            w, g = want.get(name), got.get(name)
            self.assertEqual(w, g, f"{where}: field {name}: expected {w!r}, got {g!r}")
        for name in fields:
            w, g = want[name], got[name]
            if name in ("occurred_at", "reported_at"):
                w, g = ms_of(w), ms_of(g)
            self.assertEqual(w, g, f"{where}: field {name}: expected {w!r}, got {g!r}")

    def python_to_keng(self, kind, events, schema_ids=None):
        """schema_ids: the writer id of each event (default: the subject's newest)."""
        subject = "vn.antt.Incident" if kind == "incident" else "vn.antt.Mediation"
        paths = []
        for i, ev in enumerate(events):
            schema_id = schema_ids[i] if schema_ids else self.ids[subject]
            schema = self.schemas[schema_id][1]
            path = os.path.join(self.tmp.name, f"{kind}-{i:03d}.bin")
            with open(path, "wb") as f:
                f.write(frame(schema_id, schema, ev))
            paths.append(path)
        res = run(["decode"] + paths)
        self.assertEqual(res.returncode, 0,
                         f"keng-avro decode: expected exit 0, got {res.returncode}: {res.stderr.decode()}")
        lines = res.stdout.decode("utf-8").splitlines()
        self.assertEqual(len(lines), len(events),
                         f"expected {len(events)} JSON lines, got {len(lines)}")
        for i, (ev, line) in enumerate(zip(events, lines)):
            self.assert_same(kind, ev, json.loads(line), f"{paths[i]}")

    def test_python_writes_incidents_keng_reads(self):
        self.python_to_keng("incident", incidents())

    def test_python_writes_v1_and_v2_incidents_keng_reads(self):
        """A topic mixing both versions: v1 data reads with a null police_case_id, v2 data
        with the case number its writer gave."""
        self.assertEqual(self.ids["vn.antt.Incident"], 4, "Incident v2 is schema id 4")
        events = incidents_v2()
        ids = [1 if i % 3 == 0 else 4 for i in range(len(events))]
        for ev, schema_id in zip(events, ids):
            if schema_id == 1:
                del ev["police_case_id"]
        self.assertTrue(any(ev.get("police_case_id") for ev in events), "some case numbers")
        self.python_to_keng("incident", events, ids)

    def test_python_writes_mediations_keng_reads(self):
        self.python_to_keng("mediation", mediations())

    def keng_to_python(self, kind, events, use_stream):
        lines = []
        for i, ev in enumerate(events):
            obj = dict(ev)
            # Both time forms that keng takes at its edges.
            if i % 2:
                obj["occurred_at"] = ms_of(ev["occurred_at"])
            else:
                local = ev["occurred_at"].astimezone(datetime.timezone(datetime.timedelta(hours=7)))
                obj["occurred_at"] = local.isoformat(timespec="milliseconds")
            obj["reported_at"] = ev["reported_at"].isoformat(timespec="milliseconds")
            if i % 3 == 1:
                # Nullable fields may also be absent.
                obj = {k: v for k, v in obj.items() if v is not None}
            lines.append(json.dumps(obj, ensure_ascii=(i % 2 == 0)))
        stdin = ("\n".join(lines) + "\n").encode("utf-8")
        if use_stream:
            out = os.path.join(self.tmp.name, f"{kind}.stream")
            res = run(["encode", "--kind", kind, "-o", out], stdin)
        else:
            out = os.path.join(self.tmp.name, f"{kind}-out")
            res = run(["encode", "--kind", kind, "--out-dir", out], stdin)
        self.assertEqual(res.returncode, 0,
                         f"keng-avro encode: expected exit 0, got {res.returncode}: {res.stderr.decode()}")
        messages = []
        if use_stream:
            with open(out, "rb") as f:
                data = f.read()
            pos = 0
            while pos < len(data):
                (n,) = struct.unpack(">I", data[pos:pos + 4])
                messages.append(data[pos + 4:pos + 4 + n])
                pos += 4 + n
        else:
            for name in sorted(os.listdir(out)):
                with open(os.path.join(out, name), "rb") as f:
                    messages.append(f.read())
        self.assertEqual(len(messages), len(events),
                         f"expected {len(events)} messages, got {len(messages)}")
        subject = "vn.antt.Incident" if kind == "incident" else "vn.antt.Mediation"
        for i, (ev, msg) in enumerate(zip(events, messages)):
            schema_id, got_subject, datum = unframe(self.schemas, msg)
            self.assertEqual(got_subject, subject,
                             f"message {i}: expected schema of {subject}, got id {schema_id} ({got_subject})")
            self.assert_same(kind, ev, datum, f"message {i}")
        # And keng reads back what it wrote, the stream file or the whole directory.
        res = run(["decode", out])
        self.assertEqual(res.returncode, 0, f"decode: {res.stderr.decode()}")
        for i, (ev, line) in enumerate(zip(events, res.stdout.decode("utf-8").splitlines())):
            self.assert_same(kind, ev, json.loads(line), f"keng round trip {i}")

    def test_keng_writes_incidents_python_reads(self):
        self.keng_to_python("incident", incidents(), use_stream=False)

    def test_keng_writes_v2_incidents_python_reads_as_v1_and_v2(self):
        """keng writes Incident v2 (id 4); Python reads it with the v2 schema (every field)
        and, as a consumer from before v2 would, resolved to a v1 reader (no case number)."""
        events = incidents_v2()
        lines = []
        for ev in events:
            obj = dict(ev, occurred_at=ms_of(ev["occurred_at"]), reported_at=ms_of(ev["reported_at"]))
            lines.append(json.dumps(obj, ensure_ascii=False))
        out = os.path.join(self.tmp.name, "v2-out")
        res = run(["encode", "--kind", "incident", "--out-dir", out],
                  ("\n".join(lines) + "\n").encode("utf-8"))
        self.assertEqual(res.returncode, 0, f"keng-avro encode: {res.stderr.decode()}")
        names = sorted(os.listdir(out))
        self.assertEqual(len(names), len(events), f"expected {len(events)} messages, got {len(names)}")
        v1 = self.schemas[1][1]
        for i, (ev, name) in enumerate(zip(events, names)):
            with open(os.path.join(out, name), "rb") as f:
                msg = f.read()
            schema_id, _, datum = unframe(self.schemas, msg)
            self.assertEqual(schema_id, 4, f"message {i}: expected writer id 4, got {schema_id}")
            self.assertIn("police_case_id", datum, f"message {i}: v2 datum lacks police_case_id")
            self.assert_same("incident", ev, datum, f"message {i} read as v2")
            old = avro.io.DatumReader(self.schemas[4][1], v1).read(
                avro.io.BinaryDecoder(io.BytesIO(msg[5:])))
            self.assertNotIn("police_case_id", old, f"message {i}: a v1 reader has no case number")
            self.assert_same("incident", dict(ev, police_case_id=None), old,
                             f"message {i} read as v1")

    def test_keng_writes_mediations_python_reads(self):
        self.keng_to_python("mediation", mediations(), use_stream=True)

    def test_decode_errors_name_file_and_reason(self):
        schema_id = self.ids["vn.antt.Incident"]
        good = frame(schema_id, self.schemas[schema_id][1], incidents()[0])
        alert_id = self.ids["vn.antt.Alert"]
        alert = frame(alert_id, self.schemas[alert_id][1], {
            "alert_id": "a:1", "fingerprint": "a", "rule": "board-spike", "status": "FIRING",
            "level": "BOARD", "scope_id": "D07-C012-B03", "window": "24h", "count": 12,
            "threshold": 10, "starts_at": dt(1740837600000), "ends_at": None,
            "summary": "Số vụ việc tăng đột biến", "sample_event_ids": ["e1", "e2"]})
        cases = {
            "truncated.bin": (good[:-3], "truncated"),
            "magic.bin": (b"{" + good[1:], "bad-magic"),
            "unknown.bin": (good[:1] + struct.pack(">i", 4242) + good[5:], "unknown-schema-id"),
            "alert.bin": (alert, "wrong-record"),
            "huge.bin": (b"\x00" + struct.pack(">i", schema_id) + b"\x80\x80\x80\x80\x40abc",
                         "truncated"),
        }
        for name, (data, reason) in cases.items():
            path = os.path.join(self.tmp.name, name)
            with open(path, "wb") as f:
                f.write(data)
            res = run(["decode", path])
            err = res.stderr.decode("utf-8")
            self.assertEqual(res.returncode, 1, f"{name}: expected exit 1, got {res.returncode}")
            self.assertIn(path, err, f"{name}: expected the file name in {err!r}")
            self.assertIn(reason, err, f"{name}: expected reason {reason} in {err!r}")
            self.assertEqual(res.stdout, b"", f"{name}: expected no output, got {res.stdout!r}")

    def test_encode_rejects_invalid_lines_and_names_them(self):
        stdin = ('{"event_id": "x", "board_id": "D01-C001-B01", "occurred_at": 1740837600000,'
                 ' "category": "THEFTX", "severity": "LOW", "resolution": "PENDING",'
                 ' "people_involved": 1, "source": "SMS"}\n').encode()
        res = run(["encode", "--kind", "incident", "--out-dir",
                   os.path.join(self.tmp.name, "bad")], stdin)
        err = res.stderr.decode()
        self.assertEqual(res.returncode, 1, f"expected exit 1, got {res.returncode}: {err}")
        self.assertIn("line 1: category: unknown category 'THEFTX'", err)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.wasSuccessful() else 0)
