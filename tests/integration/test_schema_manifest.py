"""schemas/manifest.csv stays a log that only grows, and every version of a subject can be
read by its neighbours both ways.

- ids are unique and increasing, (subject, version) pairs unique, versions increasing with
  the id within a subject;
- every file parses with Apache Avro's Python library, as the record the manifest names;
- a released file never changes: its SHA-256 is recorded below, and a new id must be added
  there when it is released (edit a schema by adding a version, never in place);
- each version is backward AND forward compatible with its predecessor, by Avro's own
  resolution: sample records written with one are read with the other, both ways;
- enum symbols are only appended (keng's decoder relies on it: Avro-C passes enum indexes
  through resolution unchanged).

Runs with Debian's /usr/bin/python3 and needs KENG_SOURCE_DIR.
"""
import datetime
import hashlib
import io
import os
import sys
import unittest

import avro.errors
import avro.io
import avro.schema

SOURCE_DIR = os.environ.get("KENG_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
SCHEMA_DIR = os.path.join(SOURCE_DIR, "schemas")

# id -> SHA-256 of the file as released. Never change a line; add one per new id.
RELEASED = {
    1: "incident.v1.avsc",
    2: "mediation.v1.avsc",
    3: "alert.v1.avsc",
    4: "incident.v2.avsc",
}
RELEASED_SHA256 = {
    1: "2b5eded5f745c203d59f6854ba27fd7537d115721d60d0831265a5b5aee924bc",
    2: "fa5af959fcbb2fabf799994f68aa6edae6b082795b7fbf91bd47e7041eb56dda",
    3: "c77d5fe650b7a7296cd6ec7f9aada697224997200a70700ac63704668ffa61f5",
    4: "202d271f05db2a72b5ac8ded01888b0c0b699ba6da203752927fc6100ef51b6e",
}


def read_manifest():
    """[(id, subject, version, file)] in file order, with the line number for messages."""
    rows = []
    with open(os.path.join(SCHEMA_DIR, "manifest.csv"), encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(",")
            if len(parts) != 4:
                raise AssertionError(f"manifest.csv line {lineno}: expected id,subject,version,file, "
                                     f"got {line!r}")
            rows.append((int(parts[0]), parts[1], int(parts[2]), parts[3], lineno))
    return rows


def parse(name):
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
        return avro.schema.parse(f.read())


def samples(schema, count=12):
    """count records that between them take every union branch and enum symbol the schema
    has (variant k takes branch k mod n), with non-ASCII text."""
    return [sample(schema, k) for k in range(count)]


def sample(s, k):
    if isinstance(s, avro.schema.TimestampMillisSchema):
        return datetime.datetime(2025, 3, 1, 14, 0, 0, 1000 * (123 + k), tzinfo=datetime.timezone.utc)
    t = s.type
    if t == "record":
        return {f.name: sample(f.type, k + i) for i, f in enumerate(s.fields)}
    if t == "union":
        return sample(s.schemas[k % len(s.schemas)], k // len(s.schemas) + k)
    if t == "enum":
        return s.symbols[k % len(s.symbols)]
    if t == "array":
        return [sample(s.items, k + i) for i in range(k % 3)]
    if t == "map":
        return {f"k{i}": sample(s.values, k + i) for i in range(k % 3)}
    if t == "string":
        return f"Nghệ An {k}"
    if t == "bytes":
        return bytes([k % 256]) * (k % 4)
    if t == "fixed":
        return bytes([k % 256]) * s.size
    if t in ("int", "long"):
        return k * 7 - 3
    if t in ("float", "double"):
        return k / 4
    if t == "boolean":
        return k % 2 == 0
    if t == "null":
        return None
    raise AssertionError(f"no sample for Avro type {t}")


def resolve(writer, reader, record):
    """Writes record with writer, reads it with reader: Avro's schema resolution."""
    buf = io.BytesIO()
    avro.io.DatumWriter(writer).write(record, avro.io.BinaryEncoder(buf))
    return avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(buf.getvalue())))


def field_default(field):
    return field.default if field.has_default else None


def check_resolved(test, writer, reader, record, got, where):
    """Fields both have keep their value; fields only the reader has take their default."""
    writer_fields = {f.name for f in writer.fields}
    test.assertEqual(sorted(got), sorted(f.name for f in reader.fields),
                     f"{where}: expected the reader's fields, got {sorted(got)}")
    for f in reader.fields:
        want = record[f.name] if f.name in writer_fields else field_default(f)
        test.assertEqual(got[f.name], want,
                         f"{where}: field {f.name}: expected {want!r}, got {got[f.name]!r}")


def enums(schema, out=None):
    """Named enum schemas inside schema, by full name."""
    out = {} if out is None else out
    t = schema.type
    if t == "enum":
        out[schema.fullname] = schema
    elif t == "record":
        for f in schema.fields:
            enums(f.type, out)
    elif t == "union":
        for b in schema.schemas:
            enums(b, out)
    elif t == "array":
        enums(schema.items, out)
    elif t == "map":
        enums(schema.values, out)
    return out


class SchemaManifest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = read_manifest()

    def test_ids_unique_and_increasing(self):
        ids = [r[0] for r in self.rows]
        self.assertTrue(all(i > 0 for i in ids), f"ids must be positive, got {ids}")
        self.assertEqual(ids, sorted(set(ids)),
                         f"ids must be unique and increasing in file order, got {ids}")
        pairs = [(r[1], r[2]) for r in self.rows]
        self.assertEqual(len(pairs), len(set(pairs)),
                         f"each (subject, version) must be listed once, got {pairs}")
        last = {}
        for schema_id, subject, version, _, lineno in self.rows:
            if subject in last:
                self.assertGreater(version, last[subject],
                                   f"line {lineno}: {subject} version {version} must be newer "
                                   f"than version {last[subject]} listed before it")
            last[subject] = version

    def test_files_parse_as_their_subject(self):
        for schema_id, subject, _, name, lineno in self.rows:
            schema = parse(name)
            self.assertEqual(schema.type, "record", f"line {lineno}: {name} must be a record")
            self.assertEqual(schema.fullname, subject,
                             f"line {lineno}: {name} is record {schema.fullname}, "
                             f"the manifest says {subject}")

    def test_released_files_never_change(self):
        for schema_id, _, _, name, lineno in self.rows:
            self.assertIn(schema_id, RELEASED_SHA256,
                          f"line {lineno}: id {schema_id} ({name}) is not recorded in "
                          f"RELEASED_SHA256 of this test: record its SHA-256 when it is released")
            self.assertEqual(name, RELEASED[schema_id],
                             f"line {lineno}: id {schema_id} must stay file {RELEASED[schema_id]}")
            with open(os.path.join(SCHEMA_DIR, name), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            self.assertEqual(digest, RELEASED_SHA256[schema_id],
                             f"{name} (id {schema_id}) changed after its release: expected "
                             f"SHA-256 {RELEASED_SHA256[schema_id]}, got {digest}; add a new "
                             f"version with a new id instead")
        listed = {r[0] for r in self.rows}
        self.assertEqual(sorted(set(RELEASED_SHA256) - listed), [],
                         "released ids must stay in the manifest")

    def neighbours(self):
        """(subject, (id, version, schema) older, newer) for consecutive versions."""
        by_subject = {}
        for schema_id, subject, version, name, _ in self.rows:
            by_subject.setdefault(subject, []).append((schema_id, version, parse(name)))
        for subject, versions in by_subject.items():
            versions.sort(key=lambda v: v[1])
            for old, new in zip(versions, versions[1:]):
                yield subject, old, new

    def test_each_version_backward_and_forward_compatible(self):
        pairs = list(self.neighbours())
        self.assertTrue(any(s == "vn.antt.Incident" for s, _, _ in pairs),
                        "expected at least two versions of vn.antt.Incident")
        for subject, (old_id, old_v, old), (new_id, new_v, new) in pairs:
            for i, record in enumerate(samples(old)):
                got = resolve(old, new, record)
                check_resolved(self, old, new, record, got,
                               f"{subject} v{old_v} (id {old_id}) data, v{new_v} reader, sample {i}")
            for i, record in enumerate(samples(new)):
                got = resolve(new, old, record)
                check_resolved(self, new, old, record, got,
                               f"{subject} v{new_v} (id {new_id}) data, v{old_v} reader, sample {i}")

    def test_enum_symbols_only_appended(self):
        for subject, (_, old_v, old), (_, new_v, new) in self.neighbours():
            new_enums = enums(new)
            for name, e in enums(old).items():
                if name not in new_enums:
                    continue
                self.assertEqual(list(new_enums[name].symbols[:len(e.symbols)]), list(e.symbols),
                                 f"{subject} v{new_v}: enum {name} must keep v{old_v}'s symbols "
                                 f"in order and only append")

    def test_incident_v2_adds_police_case_id(self):
        v1, v2 = parse("incident.v1.avsc"), parse("incident.v2.avsc")
        self.assertEqual([f.name for f in v2.fields], [f.name for f in v1.fields] + ["police_case_id"],
                         "Incident v2 is v1 plus police_case_id at the end")
        field = v2.fields_dict["police_case_id"]
        self.assertTrue(field.has_default and field.default is None,
                        f"police_case_id must default to null, got {field.default!r}")
        self.assertEqual([b.type for b in field.type.schemas], ["null", "string"],
                         "police_case_id must be [\"null\", \"string\"]")

    def test_checker_catches_incompatible_change(self):
        """The check above can fail: a field added without a default cannot be read from
        data written before it, and Avro's resolution says so."""
        old = parse("incident.v1.avsc")
        text = open(os.path.join(SCHEMA_DIR, "incident.v1.avsc"), encoding="utf-8").read()
        bad = avro.schema.parse(text.replace(
            '{"name": "summary", "type": ["null", "string"], "default": null}',
            '{"name": "summary", "type": ["null", "string"], "default": null},'
            ' {"name": "witnesses", "type": "int"}'))
        self.assertIn("witnesses", bad.fields_dict, "the test schema has the new field")
        with self.assertRaises(avro.errors.SchemaResolutionException):
            resolve(old, bad, samples(old)[0])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.wasSuccessful() else 0)
