"""Two consumer groups share antt.board-counts: each counts every event itself. Records carry
the group, so the second group does not start from the first group's published states (it
would then count nothing itself, and a group with another registry or schema pins would
take states that are not its own)."""

import random
import time

import kengtest as kt


def counted(base):
    metrics = kt.http("GET", base + "/metrics")[2].decode()
    for line in metrics.splitlines():
        if line.startswith("keng_events_counted_total "):
            return int(line.split()[1])
    return None


def test_second_group_counts_for_itself():
    rng = random.Random(11)
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=3)
    procs = []
    try:
        rows = kt.registry_rows()
        boards = {r["board_id"]: r for r in rows}
        chosen = rng.sample(rows, 40)
        now = int(time.time() * 1000)
        events = []
        for _ in range(1200):
            kind = rng.choice(["incident", "mediation"])
            events.append((kind, kt.random_event(rng, kind, rng.choice(chosen)["board_id"],
                                                 now - rng.randint(60_000, 20 * 86400_000))))
        kt.produce(broker.bootstrap, [("antt.incidents" if k == "incident" else "antt.mediations",
                                       e["board_id"].encode(), kt.encode_framed(k, e))
                                      for k, e in events])
        expected = kt.expected_all_time(events, boards)[("province", "NA")]
        config = work.file("aggregate.conf")
        with open(config, "w") as f:
            f.write("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
                    "checkpoint.interval.ms=200\n")

        for group in ("keng-group-a", "keng-group-b"):
            port = kt.free_port()
            proc = kt.Process("keng-aggregate",
                              ["--listen", f"127.0.0.1:{port}", "--state-dir",
                               work.file(f"state-{group}"), "--group", group, "--config", config],
                              work, env={"KENG_BROKERS": broker.bootstrap})
            procs.append(proc)
            base = f"http://127.0.0.1:{port}"
            kt.wait_until(lambda: kt.http("GET", base + "/readyz")[0] == 200, 120,
                          f"{group} to be ready")
            kt.wait_until(lambda: kt.get_json(f"{base}/v1/counts?level=province&id=NA")
                          ["windows"]["all"] == expected, 60, f"{group}'s province counts")
            kt.check_equal(counted(base), len(events), f"events {group} counted itself")
            # Let this group publish its states before the next group starts.
            time.sleep(1)
        for proc in procs:
            kt.check_equal(proc.stop(), 0, "keng-aggregate exit status")
        procs = []
    finally:
        kt.close_all(procs, broker, work)


if __name__ == "__main__":
    kt.main([test_second_group_counts_for_itself])
