"""Two keng-aggregate processes on one --state-dir: the second must not open the checkpoint
the first is writing (two writers of one LMDB store count every event twice between them
and each checkpoints the other's offsets away). It exits at once with exit code 75
(KENG_EXIT_LOCKED, docs/DESIGN.md) and one line naming the first one's pid, and the first
one goes on serving as before. An instance the group coordinator fences says so on
/readyz."""

import os
import random
import stat
import time

import faultlib as fl
from faultlib import kt

EXIT_LOCKED = 75
EXIT_WITHIN_S = 15


def test_second_process_on_one_state_dir_exits():
    rng = random.Random(16)
    work = kt.Workdir(prefix="keng-fault-lock-")
    broker = kt.Broker(work, partitions=2)
    first = fl.Aggregate(work, broker.bootstrap, "keng-fault-lock", name="first")
    second = fl.Aggregate(work, broker.bootstrap, "keng-fault-lock", name="second")
    second.state_dir = first.state_dir
    src = fl.EventSource(rng, fl.pick_boards(rng, per_district=2))
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(60)))
        first.start().wait_ready()
        fl.wait_counts(first, src.expected(), "before the second process")
        # The counts per hamlet are the data to protect: the state dir keng-aggregate made is
        # its user's alone, and so is every file in it.
        modes = {name: stat.S_IMODE(os.stat(os.path.join(first.state_dir, name)).st_mode)
                 for name in os.listdir(first.state_dir)}
        modes["."] = stat.S_IMODE(os.stat(first.state_dir).st_mode)
        kt.check_equal({n: oct(m) for n, m in modes.items() if m & 0o077}, {},
                       "state dir and files readable by group or others")

        second.start()
        deadline = time.monotonic() + EXIT_WITHIN_S
        while second.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if second.alive():
            second.sigkill()
            raise kt.TestFailure(f"the second keng-aggregate on {first.state_dir} was still "
                                 f"running {EXIT_WITHIN_S}s after it started; expected exit "
                                 f"{EXIT_LOCKED}; its log: {second.process.log_tail(8)}")
        rc = second.process.proc.returncode
        second.process.kill()
        log = second.process.log_tail(5)
        kt.check_equal(rc, EXIT_LOCKED, f"exit status of the second keng-aggregate; log: {log}")
        pid = str(first.process.proc.pid)
        kt.check(f"pid {pid}" in log, "the refusal names the holder's pid",
                 f"'pid {pid}' in the log", log)
        kt.check(first.state_dir in log, "the refusal names the state dir", first.state_dir, log)

        kt.produce(broker.bootstrap, kt.messages(src.new(40)))
        fl.wait_counts(first, src.expected(), "the first process after the refusal")
        first.stop()
        first.start().wait_ready()
        fl.wait_counts(first, src.expected(), "after a restart on the same state dir")
        first.stop()
    finally:
        fl.close_all((first, second), broker, work)


HEARTBEAT = 12
FENCED_INSTANCE_ID = 82


def test_fenced_instance_says_so():
    """The group coordinator fences this static member (another process joined with its
    group.instance.id, as a copied state dir does): librdkafka raises a fatal error and the
    consumer reads nothing more. /readyz must answer 503 'fenced' with the error, instead of
    200 over counts that no longer move."""
    if kt.on_real_kafka():
        kt.log("SKIP test_fenced_instance_says_so: it injects errors into the embedded broker")
        return
    rng = random.Random(165)
    work = kt.Workdir(prefix="keng-fault-fenced-")
    broker = kt.Broker(work, partitions=2)
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-fenced", "group.instance.id=fence-1\n")
    src = fl.EventSource(rng, fl.pick_boards(rng, per_district=2))
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(40)))
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "before the fence")
        broker.command(f"errors {HEARTBEAT} 20 {FENCED_INSTANCE_ID}")
        status, body = 0, ""

        def fenced():
            nonlocal status, body
            if not agg.alive():
                return True
            status, _, raw = kt.http("GET", agg.base + "/readyz", timeout=5)
            body = raw.decode(errors="replace")
            return status == 503 and "fenced" in body

        try:
            kt.wait_until(fenced, 30, "/readyz 503 'fenced' after the coordinator fenced it")
        except kt.TestFailure:
            raise kt.TestFailure(f"/readyz after the fence: {status} {body}; log: "
                                 f"{agg.process.log_tail(6)}")
        kt.log(f"/readyz after the fence: {status} {body}")
        agg.sigkill()
    finally:
        fl.close_all((agg,), broker, work)


if __name__ == "__main__":
    kt.main([test_second_process_on_one_state_dir_exits, test_fenced_instance_says_so])
