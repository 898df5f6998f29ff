"""A truncated data.mdb in keng-aggregate's state dir (a disk that filled while the file was
copied, a restore cut short). LMDB maps the file and trusts its meta page, so a page beyond
the end of the file is a SIGBUS on the first read, with nothing in the log. keng-aggregate
must check the file before it reads it, and refuse to start: exit code 65
(KENG_EXIT_DAMAGED, docs/DESIGN.md) within seconds, one log line naming the file and the
recovery command. The test cuts one clean checkpoint at several sizes, each on a copy, then
follows the recovery the line gives and checks that the counts come back exact."""

import os
import random
import shutil
import time

import faultlib as fl
from faultlib import kt

EXIT_DAMAGED = 65
EXIT_WITHIN_S = 20


def cut_sizes(size, page=4096):
    """Where the copies are cut: empty, inside each meta page, after both meta pages, half,
    one page short, one byte short."""
    sizes = [0, 100, page + 100, 2 * page, size // 2, size - page, size - 1]
    return sorted({s for s in sizes if 0 <= s < size})


def start_on(agg, state_dir):
    agg.state_dir = state_dir
    agg.start()
    deadline = time.monotonic() + EXIT_WITHIN_S
    while agg.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if agg.alive():
        ready = agg.ready()
        agg.sigkill()
        return None, f"still running after {EXIT_WITHIN_S}s (ready={ready})", \
            agg.process.log_tail(6)
    rc = agg.process.proc.returncode
    agg.process.kill()
    return rc, None, agg.process.log_tail(6)


def test_truncated_store_refused_at_start():
    rng = random.Random(162)
    work = kt.Workdir(prefix="keng-fault-truncated-")
    broker = kt.Broker(work, partitions=2)
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-truncated",
                       "group.instance.id=none\n", session_ms=3000)
    src = fl.EventSource(rng, fl.pick_boards(rng, per_district=4))
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(300)))
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "before the cut")
        agg.stop()
        clean = agg.state_dir
        size = os.path.getsize(os.path.join(clean, "data.mdb"))
        kt.log(f"data.mdb is {size} bytes")

        wrong = []
        for cut in cut_sizes(size):
            copy = work.file(f"cut-{cut}")
            shutil.copytree(clean, copy)
            os.truncate(os.path.join(copy, "data.mdb"), cut)
            rc, what, log = start_on(agg, copy)
            data_mdb = os.path.join(copy, "data.mdb")
            kt.log(f"cut to {cut}: {what or f'exit {rc}'}")
            if what is not None or rc != EXIT_DAMAGED:
                wrong.append(f"cut to {cut} of {size} bytes: {what or f'exit {rc}'}; log: {log}")
            elif data_mdb not in log or f"mv {copy} " not in log:
                wrong.append(f"cut to {cut}: the line lacks '{data_mdb}' or 'mv {copy} ': {log}")
        kt.check_equal(wrong, [], f"starts on a truncated data.mdb that did not exit "
                       f"{EXIT_DAMAGED} with the file and the recovery command in the log")

        # The recovery the line gives: move the state aside, start again, the counts are
        # rebuilt from the topics.
        copy = work.file(f"cut-{size - 1}")
        os.rename(copy, copy + ".damaged")
        agg.state_dir = copy
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "after the recovery", scopes="all")
        agg.stop()
    finally:
        fl.close_all((agg,), broker, work)


if __name__ == "__main__":
    kt.main([test_truncated_store_refused_at_start])
