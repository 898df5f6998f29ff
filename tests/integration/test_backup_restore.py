"""The backup docs/OPERATIONS.md describes, taken while keng-aggregate runs, restores: a copy
of the state dir made with `mdb_copy -c` mid-stream, started as a new instance's state dir
after the original stopped, is ready with exact counts once Kafka's newer events are read,
and nothing is counted twice. Runs on whichever broker the harness starts."""

import os
import random
import shutil
import subprocess

import kengtest as kt
from test_aggregate_stop_restart import Aggregate, events, province_of


def test_backup_while_running_then_restore():
    if not shutil.which("mdb_copy"):
        raise kt.TestFailure("mdb_copy is missing: scripts/install-deps.sh installs lmdb-utils")
    rng = random.Random(int(os.environ.get("KENG_TEST_SEED", "21")))
    work = kt.Workdir(prefix="keng-backup-")
    broker = kt.Broker(work, partitions=4)
    # Sharing through antt.board-counts is off, so that only the backup can spare the restored
    # instance from reading every event again: what it reads shows that the backup was used.
    config = ("kafka.session.timeout.ms=6000\nkafka.heartbeat.interval.ms=500\n"
              "topic.board_counts=\ncheckpoint.interval.ms=200\n")
    agg = Aggregate(work, broker, "agg", "keng-backup", config)
    restored = None
    try:
        first = events(rng, 300)
        kt.produce(broker.bootstrap, kt.messages(first))
        agg.start().wait_ready()
        kt.wait_until(lambda: agg.province() == province_of(first), 60, "the first 300 counted")
        # One more event, counted and then checkpointed: the checkpoint that follows it holds
        # the first 300 too (checkpoints are written only when something changed).
        more = events(rng, 200)
        checkpoints = kt.metrics(agg.base).get("keng_checkpoints_total", 0)
        kt.produce(broker.bootstrap, kt.messages(more[:1]))
        kt.wait_until(lambda: agg.province() == province_of(first + more[:1]), 60,
                      "the 301st counted")
        kt.wait_until(lambda: kt.metrics(agg.base).get("keng_checkpoints_total", 0) > checkpoints,
                      30, "a checkpoint after the 301st")

        # The backup, while the instance runs and more events arrive.
        backup = work.file("backup")
        os.mkdir(backup)
        kt.produce(broker.bootstrap, kt.messages(more[1:100]))
        r = subprocess.run(["mdb_copy", "-c", agg.state_dir, backup], capture_output=True,
                           timeout=60)
        kt.check_equal(r.returncode, 0, f"mdb_copy -c exit status ({r.stderr!r})")
        kt.produce(broker.bootstrap, kt.messages(more[100:]))
        want = province_of(first + more)
        kt.wait_until(lambda: agg.province() == want, 60, "all 500 counted by the original")
        kt.check_equal(agg.stop_status(), 0, "the original's exit status")

        # The restore: the copy as a new instance's state dir, in the same group.
        restored = Aggregate(work, broker, "restored", "keng-backup", config)
        shutil.copytree(backup, restored.state_dir)
        restored.start().wait_ready()
        kt.wait_until(lambda: restored.province() == want, 60,
                      "the restored instance's counts to reach all 500 events")
        kt.check_equal(restored.province(), want, "counts after the restore (nothing twice)")
        read_again = restored.counted()
        kt.check(read_again <= len(more), "the restored instance reads only what came after "
                 "the backup's checkpoint", f"<= {len(more)} events", read_again)
        kt.check_equal(restored.stop_status(), 0, "the restored instance's exit status")
    finally:
        kt.close_all([p.process for p in (agg, restored)
                      if p is not None and p.process and p.process.alive()], broker, work)


if __name__ == "__main__":
    kt.main([test_backup_while_running_then_restore])
