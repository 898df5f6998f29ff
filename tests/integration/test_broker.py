"""keng-broker: any Kafka client can use it (kcat and confluent-kafka here), it creates
keng's topics with the partitions asked for, and its fault commands take effect."""

import shutil
import subprocess

import kengtest as kt


def test_topics_and_clients():
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=3)
    try:
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "keng-test-md"})
        topics = c.list_topics(timeout=10).topics
        c.close()
        for name in ("antt.incidents", "antt.mediations", "antt.alerts", "antt.deadletter"):
            kt.check(name in topics, "topic created", name, sorted(topics))
            kt.check_equal(len(topics[name].partitions), 3, f"partitions of {name}")

        values = [f"message-{i}".encode() for i in range(50)]
        kt.produce(broker.bootstrap, [("antt.alerts", b"D07-C012-B03", v) for v in values])
        if shutil.which("kcat"):
            out = subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", "antt.alerts",
                                  "-e", "-q", "-f", "%k %s\n"], capture_output=True,
                                 timeout=60, check=True).stdout.decode().splitlines()
            kt.check_equal(sorted(out), sorted(f"D07-C012-B03 {v.decode()}" for v in values),
                           "what kcat reads back")
        got = kt.consume_all(broker.bootstrap, "antt.alerts")
        kt.check_equal(sorted(m.value() for m in got), sorted(values), "what confluent-kafka reads")
        # One key, one partition: the order of a board's events is kept.
        kt.check_equal(len({m.partition() for m in got}), 1, "partitions used by one key")
        kt.check_equal([m.value() for m in got], values, "order within the key")
    finally:
        kt.check_equal(broker.stop(), 0, "keng-broker exit status")
        work.cleanup()


def test_broker_down_and_up():
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=1)
    try:
        from confluent_kafka import Producer
        broker.command("down 1")
        p = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 1500})
        results = []
        p.produce("antt.alerts", b"x", on_delivery=lambda err, msg: results.append(err))
        p.flush(10)
        kt.check(results and results[0] is not None, "delivery fails while the broker is down",
                 "an error", results)
        broker.command("up 1")
        kt.produce(broker.bootstrap, [("antt.alerts", b"k", b"after")])
        kt.check_equal([m.value() for m in kt.consume_all(broker.bootstrap, "antt.alerts")],
                       [b"after"], "topic after the broker came back")
    finally:
        broker.stop()
        work.cleanup()


def test_help_and_bad_flags():
    out = subprocess.run([kt.binary("keng-broker"), "--help"], capture_output=True, timeout=10)
    kt.check_equal(out.returncode, 0, "--help exit status")
    kt.check(b"--partitions" in out.stdout, "--help lists --partitions", True, out.stdout[:200])
    out = subprocess.run([kt.binary("keng-broker"), "--partitions", "0"], capture_output=True,
                         timeout=10)
    kt.check_equal(out.returncode, 64, "exit status for a bad --partitions")
    kt.check(b"--partitions" in out.stderr, "error names the flag", True, out.stderr)


if __name__ == "__main__":
    kt.main([test_topics_and_clients, test_broker_down_and_up, test_help_and_bad_flags])
