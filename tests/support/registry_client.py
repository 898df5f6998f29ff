"""An outside Kafka client of keng's topics through the Schema Registry: confluent-kafka's
own SchemaRegistryClient, AvroSerializer and AvroDeserializer, run in the virtualenv that
registrylib.confluent_python() makes (Debian's python3-confluent-kafka is too old for them).
Not a test itself: test_registry_interop.py runs it.

    registry_client.py read BOOTSTRAP REGISTRY_URL TOPIC...
        every message of each topic, deserialized with its writer's schema from the
        registry: one JSON line {"topic", "schema_id", "record"} each
    registry_client.py write BOOTSTRAP REGISTRY_URL TOPIC SCHEMA_FILE < NDJSON
        serializes each JSON record with the schema in SCHEMA_FILE (registered under
        TOPIC-value if it is not there) and produces it keyed by board_id; prints the id
"""

import json
import struct
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(value):
    if hasattr(value, "timestamp"):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def read(bootstrap, url, topics):
    registry = SchemaRegistryClient({"url": url})
    deserializer = AvroDeserializer(registry)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "keng-interop-read",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        for topic in topics:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = {}
            for p in parts:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[p] = high
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            while ends:
                msg = consumer.poll(10)
                if msg is None:
                    sys.exit(f"registry_client: {topic} ended early: {ends}")
                if msg.error():
                    continue
                record = deserializer(msg.value(),
                                      SerializationContext(topic, MessageField.VALUE))
                schema_id = struct.unpack(">I", msg.value()[1:5])[0]
                print(json.dumps({"topic": topic, "schema_id": schema_id,
                                  "record": plain(record)}, ensure_ascii=False))
                if msg.partition() in ends and msg.offset() + 1 >= ends[msg.partition()]:
                    del ends[msg.partition()]
    finally:
        consumer.close()


def write(bootstrap, url, topic, schema_file):
    registry = SchemaRegistryClient({"url": url})
    with open(schema_file) as f:
        schema = f.read()
    serializer = AvroSerializer(registry, schema, conf={"auto.register.schemas": True})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    failures = []
    value = None
    for line in sys.stdin:
        record = json.loads(line)
        value = serializer(record, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=record["board_id"].encode(), value=value,
                         on_delivery=lambda err, msg: err and failures.append(err))
    left = producer.flush(60)
    if left or failures:
        sys.exit(f"registry_client: {left} not delivered, failures {failures}")
    print(json.dumps({"schema_id": struct.unpack(">I", value[1:5])[0] if value else None}))


if __name__ == "__main__":
    if sys.argv[1] == "read":
        read(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(__doc__)
