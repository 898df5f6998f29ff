"""Across a SIGSTOP handover between two keng-aggregate instances, the events the stopped
instance counted after its last checkpoint are read and counted again by the one that takes
its partitions: keng_events_counted_total counts that work again (the test logs by how much),
while the results count each event once. keng_events_in_counts is the exact one: summed over
the group's instances it is every event once, before the handover, after it, and once the
stopped instance is back."""

import random
import signal
import threading
import time

import kengtest as kt

MINUTE = 60_000
DAY = 24 * 60 * MINUTE
GROUP = "keng-test-counted-metric"
EVENTS = 1200


class Instance:
    def __init__(self, work, broker, now, name):
        self.name = name
        self.port = kt.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = work.file(f"{name}.conf")
        with open(self.config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    f"checkpoint.interval.ms=200\ninstance.id={name}\n")
        self.process = kt.Process(
            "keng-aggregate", ["--config", self.config, "--listen", f"127.0.0.1:{self.port}",
                               "--state-dir", work.file(f"state-{name}"), "--group", GROUP],
            work, env={"KENG_BROKERS": broker.bootstrap, "KENG_CLOCK_MS": str(now)})

    def metrics(self):
        if not self.process.alive():
            raise kt.TestFailure(f"{self.name} exited: {self.process.log_tail()}")
        return kt.metrics(self.base)

    def ready(self):
        return kt.http("GET", self.base + "/readyz", timeout=5)[0] == 200

    def province(self):
        return kt.get_json(f"{self.base}/v1/counts?level=province&id=NA")["windows"]["all"]


def in_counts(inst):
    """keng_events_in_counts of both kinds summed, or None when /metrics has neither."""
    m = inst.metrics()
    series = [m.get(f'keng_events_in_counts{{kind="{k}"}}') for k in ("incident", "mediation")]
    return None if all(v is None for v in series) else sum(v or 0 for v in series)


def counted(inst):
    return inst.metrics().get("keng_events_counted_total")


def expected_of(events, by_id):
    return kt.expected_all_time(events, by_id).get(("province", "NA"), kt.empty_tally())


def fl_produce(bootstrap, events):
    """events in 40 paced chunks, so that counting goes on while an instance stops."""
    producer = kt.EventProducer(bootstrap)
    size = -(-len(events) // 40)
    for i in range(0, len(events), size):
        producer.send(kt.messages(events[i:i + size]))
        time.sleep(0.1)


def wait_exact(instances, expected, total, what, timeout=120):
    """Every instance answers the province exactly and keng_events_in_counts sums to total."""
    def settled():
        return (all(i.ready() and i.province() == expected for i in instances) and
                sum(in_counts(i) or 0 for i in instances) == total)
    try:
        kt.wait_until(settled, timeout, f"exact counts and metric ({what})", interval=0.3)
    except kt.TestFailure:
        for i in instances:
            kt.check_equal(i.province(), expected, f"{what}: {i.name} province all-time")
        kt.check_equal([in_counts(i) for i in instances], f"summing to {total}",
                       f"{what}: keng_events_in_counts of {[i.name for i in instances]}")
        raise


def test_counted_metric_across_sigstop_handover():
    rng = random.Random(4711)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    a = b = None
    try:
        rows = kt.registry_rows()
        by_id = {r["board_id"]: r for r in rows}
        boards = rng.sample(rows, 40)
        now = int(time.time() * 1000)
        events = []
        for _ in range(EVENTS):
            kind = "incident" if rng.random() < 0.6 else "mediation"
            events.append((kind, kt.random_event(rng, kind, rng.choice(boards)["board_id"],
                                                 now - rng.randint(MINUTE, 300 * DAY))))
        expected = expected_of(events, by_id)

        a = Instance(work, broker, now, "agg-a")
        kt.wait_until(a.ready, 90, "agg-a ready")
        b = Instance(work, broker, now, "agg-b")
        kt.wait_until(lambda: a.ready() and b.ready() and
                      all(any(k.startswith("keng_consumer_lag{") for k in i.metrics())
                          for i in (a, b)), 90, "both instances ready, each with partitions")
        half = EVENTS // 2
        kt.produce(broker.bootstrap, kt.messages(events[:half]))
        wait_exact([a, b], expected_of(events[:half], by_id), half, "two instances")

        # The rest flows while agg-a stops answering: once its session expires, agg-b takes
        # its partitions from the states agg-a last published, and reads again what agg-a
        # counted after its last checkpoint.
        flow = threading.Thread(target=fl_produce, args=(broker.bootstrap, events[half:]))
        flow.start()
        time.sleep(1.0)
        a_counted = counted(a)
        a.process.signal(signal.SIGSTOP)
        kt.log("agg-a SIGSTOPped")
        flow.join(120)
        kt.check(not flow.is_alive(), "the producer finished", True, False)
        wait_exact([b], expected, EVENTS, "agg-a stopped", timeout=150)
        kt.log(f"keng_events_counted_total: agg-a {a_counted:.0f} before it stopped, agg-b "
               f"{counted(b):.0f}: {a_counted + counted(b) - EVENTS:+.0f} against the "
               f"{EVENTS} events")

        a.process.signal(signal.SIGCONT)
        kt.log("agg-a resumed")
        wait_exact([a, b], expected, EVENTS, "agg-a back", timeout=150)
        kt.check_equal(a.process.stop(), 0, "agg-a exit status after SIGTERM")
        wait_exact([b], expected, EVENTS, "agg-a stopped cleanly")
        kt.check_equal(b.process.stop(), 0, "agg-b exit status after SIGTERM")
        a = b = None
    finally:
        for i in (a, b):
            if i and i.process.alive():
                i.process.signal(signal.SIGCONT)
        kt.close_all([i.process for i in (a, b) if i and i.process.alive()], broker, work)


if __name__ == "__main__":
    kt.main([test_counted_metric_across_sigstop_handover])
