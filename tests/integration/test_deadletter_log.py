"""A registry mistake that dead-letters many events does not flood the log: keng-aggregate
writes at most one line per reason at a time (at once for the first, then a summary with the
count at most every 10 s), while keng_deadletter_total keeps the exact count."""

import random
import time

import kengtest as kt


def test_dead_letters_logged_once_per_reason_with_counts():
    rng = random.Random(33)
    work = kt.Workdir(prefix="keng-dlog-")
    broker = kt.Broker(work, partitions=2)
    proc = None
    try:
        now = int(time.time() * 1000)
        unknown = [("incident", kt.random_event(rng, "incident", "X99-NO-SUCH-BOARD",
                                                 now - 3_600_000)) for _ in range(50)]
        kt.produce(broker.bootstrap, kt.messages(unknown))
        port = kt.free_port()
        base = f"http://127.0.0.1:{port}"
        proc = kt.Process("keng-aggregate", ["--listen", f"127.0.0.1:{port}", "--state-dir",
                                             work.file("state"), "--group", "dlog"], work,
                          env={"KENG_BROKERS": broker.bootstrap})
        kt.wait_until(lambda: kt.metrics(base).get('keng_deadletter_total{reason="unknown-board"}')
                      == 50, 60, "the 50 dead letters counted")
        # The summary of what came after the first line, at most 10 s later.
        kt.wait_until(lambda: "count=49" in open(proc.log_path).read(), 20,
                      "the summary line of the other 49")
        kt.check_equal(proc.stop(), 0, "exit status")
        lines = [ln for ln in open(proc.log_path).read().splitlines() if "dead-letter" in ln
                 and "unknown-board" in ln]
        print("\n".join(lines), flush=True)
        kt.check_equal(len(lines), 2, "log lines for 50 dead letters of one reason")
        kt.check("count=1 " in lines[0] and "X99-NO-SUCH-BOARD" in lines[0],
                 "the first line names the first one", "count=1, the board", lines[0])
    finally:
        kt.close_all([proc] if proc and proc.alive() else [], broker, work)


if __name__ == "__main__":
    kt.main([test_dead_letters_logged_once_per_reason_with_counts])
