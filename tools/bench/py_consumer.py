"""What a user would otherwise write: a Python consumer (confluent-kafka + Apache Avro's
Python library, both from Debian) that reads the topics to their end and computes the same
all-time counts as keng-aggregate (per board by category/resolution/outcome, rolled up to
commune, district and province). Prints 'python-consumer: N events in S s = R events/s'.

Usage: py_consumer.py BOOTSTRAP REGISTRY_CSV TOPIC..."""

import csv
import io
import struct
import sys
import time
import uuid

import avro.io
import avro.schema
from confluent_kafka import Consumer, TopicPartition


def main():
    bootstrap, registry_path, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
    schema_dir = sys.argv[0].rsplit("/", 3)[0] + "/schemas"
    readers = {}
    for sid, name in ((1, "incident.v1.avsc"), (2, "mediation.v1.avsc"), (4, "incident.v2.avsc")):
        with open(f"{schema_dir}/{name}") as f:
            readers[sid] = avro.io.DatumReader(avro.schema.parse(f.read()))
    parents = {}
    with open(registry_path, newline="") as f:
        for row in csv.DictReader(f):
            parents[row["board_id"]] = (row["commune_id"], row["district_id"])

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    ends, assignment = {}, []
    for topic in topics:
        for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[(topic, p)] = high
            assignment.append(TopicPartition(topic, p, 0))
    c.assign(assignment)

    counts = {}
    seen = set()
    n = 0
    started = time.monotonic()
    while ends:
        for msg in c.consume(1000, 1.0):
            if msg.error():
                continue
            key = (msg.topic(), msg.partition())
            if key in ends and msg.offset() + 1 >= ends[key]:
                del ends[key]
            data = msg.value()
            _, sid = struct.unpack(">bI", data[:5])
            ev = readers[sid].read(avro.io.BinaryDecoder(io.BytesIO(data[5:])))
            if ev["event_id"] in seen:
                continue
            seen.add(ev["event_id"])
            commune, district = parents[ev["board_id"]]
            if sid in (1, 4):
                fields = ("incidents", "category:" + ev["category"],
                          "resolution:" + ev["resolution"])
            else:
                fields = ("mediations", "outcome:" + ev["outcome"])
            for scope in (ev["board_id"], commune, district, "NA"):
                tally = counts.setdefault(scope, {})
                for field in fields:
                    tally[field] = tally.get(field, 0) + 1
            n += 1
    elapsed = time.monotonic() - started
    c.close()
    print(f"python-consumer: {n} events in {elapsed:.2f} s = {n / elapsed:.0f} events/s "
          f"(province incidents {counts.get('NA', {}).get('incidents', 0)})", flush=True)


if __name__ == "__main__":
    main()
