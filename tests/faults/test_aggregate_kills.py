"""keng-aggregate SIGKILLed at random moments while events (new ones and resends of earlier
event ids) are being produced, and restarted on the same --state-dir, for ROUNDS rounds.
After every restart the province's all-time counts equal what Python computes from every
event produced so far (each event_id once); at the end every board, commune, district and
the province match, and a clean restart changes nothing. Some rounds kill it a second time
while it is still starting (loading the checkpoint, joining the group, catching up).
KENG_FAULT_SEED=N replays a run; KENG_FAULT_ROUNDS=N changes the number of rounds."""

import os
import random
import threading
import time

import faultlib as fl
from faultlib import kt

ROUNDS = int(os.environ.get("KENG_FAULT_ROUNDS", "20"))
# After a SIGKILL the group waits for the dead member's session to expire and then
# rebalances (the mock cluster waits session.timeout.ms - 1 s): with 6000 every restart
# takes ~11 s before it gets partitions, with 3000 about 5 s, which keeps 20 rounds in the
# suite's time budget.
SESSION_MS = 3000
# Thresholds that scopes cross at different rounds (about 100 incidents per board and 800
# mediations per district by the end), so that transitions are emitted around the kills.
ALERT_RULES = [("board_inc_40", "board", "incident", 40),
               ("board_inc_80", "board", "incident", 80),
               ("district_med_500", "district", "mediation", 500)]


def test_sigkill_loop_counts_once():
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-fault-kills-")
    broker = kt.Broker(work, partitions=4)
    # Checkpoints every 250 ms or 120 events, whichever first: kills land before, during and
    # after checkpoints, with counted events the checkpoint does not have yet.
    alerts = fl.AlertRules(ALERT_RULES)
    agg = fl.Aggregate(work, broker.bootstrap, "keng-fault-kills",
                       "checkpoint.interval.ms=250\ncheckpoint.events=120\n" + alerts.config(),
                       session_ms=SESSION_MS)
    src = fl.EventSource(rng, fl.pick_boards(rng))
    kills = rounds_done = 0
    lost = duplicates = "unknown"
    alert_figures = "alert invariant not checked"
    round_times = []
    try:
        kt.produce(broker.bootstrap, kt.messages(src.new(400)))
        agg.start().wait_ready()
        fl.wait_counts(agg, src.expected(), "before the first kill")

        for r in range(1, ROUNDS + 1):
            started = time.monotonic()
            batch = src.new(rng.randint(150, 400)) + src.resends(rng.randint(10, 60))
            rng.shuffle(batch)
            msgs = kt.messages(batch)
            expected = src.expected()
            delay = rng.uniform(0.0, 1.6)
            failure = []

            def produce():
                try:
                    fl.produce_paced(broker.bootstrap, msgs, 6, 0.25)
                except Exception as e:  # reported by the main thread
                    failure.append(e)

            producer = threading.Thread(target=produce)
            producer.start()
            time.sleep(delay)
            kt.check(agg.alive(), f"round {r}: keng-aggregate alive before the kill", True,
                     agg.process.log_tail())
            agg.sigkill()
            kills += 1
            producer.join(90)
            kt.check(not producer.is_alive() and not failure, f"round {r}: produce finished",
                     "no error", failure)

            agg.start()
            again = rng.random() < 0.2
            if again:  # a second kill while it starts up
                time.sleep(rng.uniform(0.05, 1.0))
                agg.sigkill()
                kills += 1
                agg.start()
            restarted = time.monotonic()
            agg.wait_ready()
            ready = time.monotonic()
            fl.wait_counts(agg, expected, f"round {r}")
            recounted = agg.metrics().get("keng_events_counted_total")
            fired = alerts.check(agg, expected, broker.bootstrap, f"round {r}")[0]
            rounds_done = r
            round_times.append(time.monotonic() - started)
            kt.log(f"round {r}: {len(batch)} events, killed after {delay:.2f}s"
                   f"{' and again while starting' if again else ''}, counts exact, "
                   f"{recounted:.0f} counted since the restart, {fired} alerts fired once "
                   f"({round_times[-1]:.1f}s, of which {ready - restarted:.1f}s to be ready "
                   f"again)")

        expected = src.expected()
        fl.wait_counts(agg, expected, "after the last round", scopes="all")
        if alerts.rules:
            want, lost_a, extra_a = alerts.check(agg, expected, broker.bootstrap,
                                                 "after the last round")
            alert_figures = (f"alert transitions expected {want}, lost {lost_a}, "
                             f"repeated {extra_a}")
        agg.stop()
        agg.start().wait_ready()
        fl.wait_counts(agg, expected, "after a clean restart", scopes="all")
        if alerts.rules:
            alerts.check(agg, expected, broker.bootstrap, "after a clean restart")
        counted = agg.metrics().get("keng_events_counted_total")
        kt.check_equal(counted, 0.0, "events counted again after a clean restart")
        agg.stop()
        alerts.check_stopped(expected, broker.bootstrap, "after a clean restart")
        lost = duplicates = 0
        kt.log(f"{len(expected)} scopes match; longest round {max(round_times):.1f}s")
    except kt.TestFailure:
        lost, duplicates = fl.mismatch_figures(agg, src) if agg.alive() else ("?", "?")
        raise
    finally:
        fl.figures("aggregate kills", rounds_done, len(src.sent), kills, lost, duplicates,
                   f"unique events {len(src.unique)}, {alert_figures}, seed {seed}")
        fl.close_all((agg,), broker, work)


if __name__ == "__main__":
    kt.main([test_sigkill_loop_counts_once])
