"""Alerts across rebalances: keng-aggregate A alone, then B joins A's group and takes half
of the partitions, then B stops and A takes them back, with events produced in every phase.
The counts only grow (alert rules on the 365-day window), so every (rule, scope) that
reached its threshold must FIRE exactly once in antt.alerts and nothing may RESOLVE: a
partition that moves hands its boards' alerts over under the same ids. While the partitions
are split, each instance lists the board alerts of the boards it holds and no other, and
the district alerts, counted across both, are decided and listed by one of them.
KENG_FAULT_SEED=N replays a run."""

import random

import faultlib as fl
from faultlib import kt

GROUP = "keng-fault-alert-handover"
RULES = [("board_inc_20", "board", "incident", 20),
         ("district_med_150", "district", "mediation", 150)]


def firing(agg):
    return {(a["rule"], a["scope_id"]) for a in
            kt.get_json(f"{agg.base}/v1/alerts?status=firing", timeout=5)["alerts"]}


def settle(rules, bootstrap, instances, want, what, timeout=60):
    """Waits until antt.alerts holds one FIRING for every (rule, scope) of want, nothing else
    and no RESOLVED, and until the instances list want as firing, each alert on one instance
    only. Returns the transitions read."""
    state = {}

    def settled():
        records = rules.records(bootstrap)
        lists = [firing(agg) for agg in instances]
        state.update(records=records, got={(r["rule"], r["scope_id"]) for r in records},
                     lists=lists)
        listed = set().union(*lists)
        return (state["got"] == want and not rules.repeated(records) and listed == want and
                sum(len(x) for x in lists) == len(listed))

    try:
        kt.wait_until(settled, timeout, f"{what}: alert transitions", interval=0.5)
    except kt.TestFailure:
        pass
    got = state.get("got", set())
    kt.check_equal(sorted(want - got), [], f"{what}: alerts that never fired")
    kt.check_equal(sorted(got - want), [], f"{what}: alerts that should not have fired")
    kt.check_equal(rules.repeated(state.get("records", [])), [],
                   f"{what}: transitions repeated, or RESOLVED")
    lists = state.get("lists", [])
    listed = set().union(*lists) if lists else set()
    kt.check_equal(sorted(listed), sorted(want), f"{what}: alerts listed as firing")
    kt.check_equal(sum(len(x) for x in lists), len(listed),
                   f"{what}: alerts listed by two instances")
    return state["records"]


def test_alerts_follow_their_partitions():
    rules = fl.AlertRules(RULES)
    if not rules.rules:
        return  # AlertRules printed why this is not a pass
    seed = fl.seed_from_env(None)
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-fault-handover-")
    broker = kt.Broker(work, partitions=4)
    config = "checkpoint.interval.ms=300\n" + rules.config()
    a = fl.Aggregate(work, broker.bootstrap, GROUP, config, name="a")
    b = fl.Aggregate(work, broker.bootstrap, GROUP, config, name="b")
    src = fl.EventSource(rng, fl.pick_boards(rng))
    try:
        # A alone: about 15 incidents a board and 120 mediations a district.
        kt.produce(broker.bootstrap, kt.messages(src.new(900)))
        a.start().wait_ready()
        fl.wait_counts(a, src.expected(), "A alone")
        before_split = rules.expected(src.expected())
        settle(rules, broker.bootstrap, [a], before_split, "A alone")

        # B joins: half of the partitions move. Then most boards cross 20, on either side,
        # and the districts cross 150 with mediations counted by both: the owner of the
        # mediation topic's partition 0 adds the other's published boards and decides.
        b.start().wait_ready()
        kt.produce(broker.bootstrap, kt.messages(src.new(600)))
        for agg, name in ((a, "A"), (b, "B")):
            fl.wait_counts(agg, src.expected(), f"{name} with the partitions split")
        split = rules.expected(src.expected())
        kt.check(split - before_split, "alerts that fire while the partitions are split",
                 "some", split)
        settle(rules, broker.bootstrap, [a, b], split, "partitions split between A and B")

        # B leaves: A takes every partition back and decides the districts.
        b.stop()
        kt.produce(broker.bootstrap, kt.messages(src.new(300)))
        a.wait_ready()
        fl.wait_counts(a, src.expected(), "A alone again", scopes="all")
        want = rules.expected(src.expected())
        records = settle(rules, broker.bootstrap, [a], want, "A alone again")
        kt.log(f"{len(want)} alerts fired once each across two rebalances "
               f"({len(records)} transitions, seed {seed})")
        a.stop()
    finally:
        fl.close_all((a, b), broker, work)


if __name__ == "__main__":
    kt.main([test_alerts_follow_their_partitions])
