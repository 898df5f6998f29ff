"""One byte flipped in checkpointed board states (a bad sector, a bit flip in RAM on its way
to disk), first with antt.board-counts sharing off, so that only the input topics can
rebuild them, then with it on, where the shared states can. keng-aggregate must notice
each damaged record, rebuild it (from the shared state, or by reading its partition again
from the start), say on /metrics how many records it found damaged, and not answer /readyz
200 before the counts are whole again: the first time it is ready, every scope counts
exactly what was produced.

The test stops keng-aggregate cleanly, then finds each chosen unit's key
("u/<board id>/incident") in data.mdb and flips one byte of the value that follows it (an
LMDB leaf node is its 8-byte header, the key, then the value). LMDB writes copies, so a key
can be in several pages; every copy is flipped."""

import os
import random
import struct

import faultlib as fl
from faultlib import kt

DAMAGED = 6


def is_key(buf, at, k, ksize):
    """Whether the LMDB key of ksize bytes at `at` is k, or k's lane, k + "/<partition>"."""
    tail = bytes(buf[at + len(k):at + ksize])
    return ksize == len(k) or (tail[:1] == b"/" and tail[1:].isdigit())


def flip_values(data_mdb, keys, rng):
    """Flips one byte in the value of every copy of each key (a unit's key "u/<board>/<kind>"
    stands for its lanes' keys too); returns how many copies."""
    with open(data_mdb, "rb") as f:
        buf = bytearray(f.read())
    flipped = {}
    for key in keys:
        k = key.encode()
        at = buf.find(k)
        while at >= 0:
            lo, hi, flags, ksize = struct.unpack_from("<HHHH", buf, at - 8)
            size = lo | (hi << 16)
            if is_key(buf, at, k, ksize) and not flags & 1 and 16 < size < 4096:
                # Past the unit's header, inside the counts state.
                pos = at + ksize + rng.randint(12, size - 1)
                buf[pos] ^= 1 << rng.randint(0, 7)
                flipped[key] = flipped.get(key, 0) + 1
            at = buf.find(k, at + 1)
    with open(data_mdb, "wb") as f:
        f.write(buf)
    return flipped


def test_damaged_records_rebuilt_before_ready():
    damage_and_restart("topic.board_counts=\n", 166)


def test_damaged_records_taken_from_the_shared_topic():
    """With sharing on, the damaged units come back from antt.board-counts."""
    damage_and_restart("", 167)


def damage_and_restart(sharing, seed):
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-fault-corrupt-")
    broker = kt.Broker(work, partitions=2)
    agg = fl.Aggregate(work, broker.bootstrap, f"keng-fault-corrupt-{seed}",
                       sharing + "group.instance.id=none\n", session_ms=3000)
    src = fl.EventSource(rng, fl.pick_boards(rng, per_district=6))
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(300, kind="incident")))
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "before the damage", scopes="all")
        agg.stop()

        boards = rng.sample(sorted({ev["board_id"] for _, ev in src.unique.values()}), DAMAGED)
        flipped = flip_values(os.path.join(agg.state_dir, "data.mdb"),
                              [f"u/{b}/incident" for b in boards], rng)
        kt.check_equal(sorted(flipped), sorted(f"u/{b}/incident" for b in boards),
                       "unit records found and flipped in data.mdb")
        kt.log(f"flipped {flipped}")

        agg.start().wait_ready()
        # No waiting: once ready, the counts must already be whole.
        expected = src.expected()
        wrong = [f"{level} {sid}: {agg.all_time(level, sid)} != {want}"
                 for (level, sid), want in sorted(expected.items())
                 if agg.all_time(level, sid) != want]
        kt.check_equal(wrong[:4], [], f"scopes wrong when /readyz first said ready "
                       f"({len(wrong)} of {len(expected)})")
        rebuilt = agg.metrics().get("keng_state_units_damaged_total")
        kt.check_equal(rebuilt, float(DAMAGED), "keng_state_units_damaged_total")
        agg.stop()
        agg.start().wait_ready()
        fl.wait_counts(agg, expected, "after a restart", scopes="all")
        agg.stop()
    finally:
        fl.close_all((agg,), broker, work)


if __name__ == "__main__":
    kt.main([test_damaged_records_rebuilt_before_ready,
             test_damaged_records_taken_from_the_shared_topic])
