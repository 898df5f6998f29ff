"""keng-aggregate whose checkpoint cannot be written: its state dir on a small tmpfs that the
test fills, and a state dir deleted under it. While events keep being counted, the
instance must say so: keng_checkpoint_failures_total and
keng_checkpoint_last_success_timestamp_seconds exist from the start (so that the alert
KengCheckpointStale can fire before any checkpoint succeeded), each failure counts, the
retries back off, a retry publishes nothing again to antt.board-counts, and past
checkpoint.stale.ms (default 60 s) /readyz answers 503 naming the checkpoint. When space
returns, it checkpoints again and a restart finds every event: nothing is lost.

The tmpfs needs root (the fault suite runs as root in CI); without it the full-disk test
says it skipped."""

import os
import random
import re
import shutil
import subprocess
import time

import faultlib as fl
from faultlib import kt

STALE_WAIT_S = 100  # the default checkpoint.stale.ms (60 s) and a margin
CHECKPOINT_MS = 200


def board_counts_end(bootstrap):
    """The sum of antt.board-counts' high watermarks: how many messages it ever got."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "keng-test-watermarks"})
    try:
        parts = c.list_topics("antt.board-counts", timeout=10).topics["antt.board-counts"]
        return sum(c.get_watermark_offsets(TopicPartition("antt.board-counts", p),
                                           timeout=10)[1] for p in parts.partitions)
    finally:
        c.close()


def fill(path):
    """Writes path until the filesystem is full (unbuffered: every byte that fits is in)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def readyz(agg):
    status, _, body = kt.http("GET", agg.base + "/readyz", timeout=5)
    return status, body.decode(errors="replace")


def wait_not_ready(agg, what, wrong, timeout=STALE_WAIT_S):
    """Waits for /readyz 503 naming the checkpoint; adds to wrong when it does not come."""
    deadline = time.monotonic() + timeout
    status, body = readyz(agg)
    while time.monotonic() < deadline:
        status, body = readyz(agg)
        if status == 503:
            break
        time.sleep(0.5)
    if status != 503 or "checkpoint" not in body:
        wrong.append(f"{what}: /readyz still {status} {body} after {timeout}s")
    return body


def metrics_from_start(agg, wrong):
    """/metrics as soon as it answers after the start, before the group has assigned a
    partition, so before any checkpoint can have been written."""
    got = {}

    def answered():
        try:
            got.update(agg.metrics())
            return True
        except (OSError, kt.TestFailure):
            return False

    kt.wait_until(answered, 30, "the first /metrics answer", interval=0.02)
    m = got
    if m.get("keng_checkpoints_total", 0) > 0:
        wrong.append(f"a checkpoint was written before the first /metrics answer ({m}): "
                     "the start is not observed")
    if "keng_checkpoint_failures_total" not in m:
        wrong.append("keng_checkpoint_failures_total is not on /metrics from the start")
    if not m.get("keng_checkpoint_last_success_timestamp_seconds", 0) > 0:
        wrong.append(f"keng_checkpoint_last_success_timestamp_seconds at start is "
                     f"{m.get('keng_checkpoint_last_success_timestamp_seconds')}, not the "
                     "start time: KengCheckpointStale could not fire")


def failures(agg):
    return agg.metrics().get("keng_checkpoint_failures_total", 0)


def settled_end(bootstrap, timeout=15, still_s=3):
    """antt.board-counts' end once it has not moved for still_s (what the last successful
    checkpoint published may still be on its way), or after timeout (it keeps moving)."""
    deadline = time.monotonic() + timeout
    end, since = board_counts_end(bootstrap), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < still_s:
        time.sleep(0.5)
        now = board_counts_end(bootstrap)
        if now != end:
            end, since = now, time.monotonic()
    return end


def publications_while_failing(agg, bootstrap, tries=3):
    """(failed retries, messages published) over a window of several retries in which no
    checkpoint succeeded; a window with a success (a full disk can still take a small
    commit) is measured again."""
    for _ in range(tries):
        before = settled_end(bootstrap)
        m = agg.metrics()
        n, ok = m.get("keng_checkpoint_failures_total", 0), m.get("keng_checkpoints_total")
        time.sleep(8)  # several retries, backed off or not
        m = agg.metrics()
        more = m.get("keng_checkpoint_failures_total", 0) - n
        if m.get("keng_checkpoints_total") == ok:
            return more, board_counts_end(bootstrap) - before
        kt.log("a checkpoint succeeded during the window; measuring again")
    raise kt.TestFailure(f"checkpoints kept succeeding on a full disk ({tries} windows)")


def retry_delays(agg):
    with open(agg.process.log_path, "rb") as f:
        text = f.read().decode(errors="replace")
    return [int(x) for x in re.findall(r'checkpoint failed.*retry_in_ms=(\d+)', text)]


def test_full_disk_not_ready_then_recovers():
    if os.geteuid() != 0:
        kt.log("SKIP test_full_disk_not_ready_then_recovers: mounting a tmpfs needs root")
        return
    rng = random.Random(163)
    work = kt.Workdir(prefix="keng-fault-full-")
    small = work.file("small")
    os.mkdir(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "keng-test", small], check=True)
    broker = kt.Broker(work, partitions=2)
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-full",
                       f"checkpoint.interval.ms={CHECKPOINT_MS}\n", session_ms=3000)
    agg.state_dir = os.path.join(small, "state")
    rows, _ = fl.registry()
    boards = rng.sample([r["board_id"] for r in rows], 90)
    src = fl.EventSource(rng, boards[:10])
    wrong = []
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(100)))
        agg.start()
        metrics_from_start(agg, wrong)
        agg.wait_ready()
        fl.wait_counts(agg, src.expected(), "before the disk fills")

        fill(os.path.join(small, "filler"))
        # Boards with no state yet: their units need new pages, which a full disk refuses.
        src.boards = boards[10:]
        kt.produce(broker.bootstrap, kt.messages(src.new(800)))
        fl.wait_counts(agg, src.expected(), "counted while the disk is full")
        kt.wait_until(lambda: failures(agg) >= 1 or "checkpoint failed" in
                      agg.process.log_tail(50), 30, "a failed checkpoint")
        more, republished = publications_while_failing(agg, broker.bootstrap)
        kt.log(f"while the disk is full: {more} failed retries published {republished} "
               "messages to antt.board-counts")
        if republished:
            wrong.append(f"{more} failed retries published {republished} messages to "
                         "antt.board-counts (each unit again at every retry)")
        delays = retry_delays(agg)
        if len(delays) < 2 or delays[-1] <= delays[0]:
            wrong.append(f"the retries do not back off: retry_in_ms in the log {delays[:8]}")
        body = wait_not_ready(agg, "with a full disk", wrong)
        kt.log(f"/readyz with a full disk: {body}")
        kt.check_equal(wrong, [], "what a full disk showed")

        os.remove(os.path.join(small, "filler"))
        kt.wait_until(lambda: readyz(agg)[0] == 200, 60, "/readyz 200 once space returned")
        fl.wait_counts(agg, src.expected(), "after space returned", scopes="all")
        agg.stop()
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "after a restart", scopes="all")
        kt.check_equal(agg.metrics().get("keng_events_counted_total"), 0.0,
                       "events read again after a clean restart (the checkpoint lacked them)")
        agg.stop()
    finally:
        subprocess.run(["umount", "--lazy", small], check=False)
        fl.close_all((agg,), broker, work)


def test_deleted_state_dir_not_ready():
    rng = random.Random(164)
    work = kt.Workdir(prefix="keng-fault-deleted-")
    broker = kt.Broker(work, partitions=2)
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-deleted",
                       f"checkpoint.interval.ms={CHECKPOINT_MS}\n", session_ms=3000)
    src = fl.EventSource(rng, fl.pick_boards(rng, per_district=4))
    wrong = []
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(100)))
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "before the state dir is deleted")
        shutil.rmtree(agg.state_dir)
        kt.produce(broker.bootstrap, kt.messages(src.new(100)))
        fl.wait_counts(agg, src.expected(), "counted after the state dir was deleted")
        body = wait_not_ready(agg, "with the state dir deleted", wrong)
        if failures(agg) < 1:
            wrong.append("keng_checkpoint_failures_total did not count the failures")
        kt.log(f"/readyz with the state dir deleted: {body}")
        kt.check_equal(wrong, [], "what a deleted state dir showed")
        agg.sigkill()
    finally:
        fl.close_all((agg,), broker, work)


if __name__ == "__main__":
    kt.main([test_full_disk_not_ready_then_recovers, test_deleted_state_dir_not_ready])
