"""keng-ingest across a Kafka outage: gateways resend every request answered 503 until it is
answered 202, as they are told to. A resent event whose first copy still waits for Kafka joins
that copy instead of queueing another, so once the broker is back each event is in the topic
at most twice (docs/OPERATIONS.md, "Requests fail or time out"), and every event answered 202
is there. Before, every resend queued one more copy: an event reached the topic once per
attempt made while the broker was down."""

import threading
import time

import faultlib as fl
from faultlib import kt

GATEWAYS = 4
EVENTS_PER_REQUEST = 10
OUTAGE_S = 8
# Copies of one event in the topic after the outage: the copy every resend joined, and one
# more when a gateway resends after a 503 whose copy Kafka wrote in the meantime.
MOST_COPIES = 2


def gateway(ing, kind, events, out, deadline_s=120):
    """POSTs one request until it is answered 202; out gets (attempts, statuses) or the
    error."""
    deadline = time.monotonic() + deadline_s
    statuses = []
    try:
        while True:
            status, answer = ing.post(kind, [ev for _, ev in events], timeout=30)
            statuses.append(status)
            if status == 202:
                kt.check_equal(answer, {"accepted": len(events)}, "202 answer")
                out.append((len(statuses), statuses))
                return
            kt.check(status in (None, 503) and time.monotonic() < deadline,
                     "202 within the deadline, 503 or no answer before", 202, (status, answer))
            time.sleep(0.2)
    except Exception as e:  # reported by the test
        out.append(e)


def test_resends_during_an_outage_join_the_copy_in_flight():
    seed = fl.seed_from_env(None)
    import random
    rng = random.Random(seed)
    work = kt.Workdir(prefix="keng-fault-ingest-retries-")
    broker = kt.Broker(work, partitions=2)
    ing = None
    try:
        src = fl.EventSource(rng, fl.pick_boards(rng))
        # A deadline well inside the outage, so that every gateway hears 503 several times.
        ing = fl.Ingest(work, broker.bootstrap, config="ingest.deadline_ms=1000\n").start()
        warm = src.new(5, "incident")
        status, _ = ing.post("incident", [ev for _, ev in warm])
        kt.check_equal(status, 202, "a request before the outage")

        broker.down(1)
        results = []
        threads = []
        for g in range(GATEWAYS):
            kind = "incident" if g % 2 == 0 else "mediation"
            events = src.new(EVENTS_PER_REQUEST, kind)
            t = threading.Thread(target=gateway, args=(ing, kind, events, results))
            t.start()
            threads.append(t)
        time.sleep(OUTAGE_S)
        broker.up(1)
        for t in threads:
            t.join(150)
        errors = [r for r in results if isinstance(r, Exception)]
        kt.check(not errors and len(results) == GATEWAYS and
                 not any(t.is_alive() for t in threads),
                 "every gateway got its 202", "no error", errors or results)
        attempts = [a for a, _ in results]
        kt.check(min(attempts) >= 3, "every gateway was answered 503 during the outage and "
                 "resent", ">= 3 attempts each", attempts)

        copies = fl.read_ids(broker.bootstrap)
        sent = {ev["event_id"] for _, ev in src.sent}
        missing = sorted(sent - set(copies))
        kt.check_equal(missing, [], "events answered 202 missing from the topics")
        spread = {}
        for eid in sent:
            spread[copies[eid]] = spread.get(copies[eid], 0) + 1
        kt.log(f"attempts per gateway {attempts}; events by copies in the topics {spread}")
        worst = max(copies[eid] for eid in sent)
        kt.check(worst <= MOST_COPIES, "copies of one event in the topics after the outage",
                 f"at most {MOST_COPIES}", f"{worst} (events by copies: {spread}, attempts "
                 f"{attempts})")
        m = kt.metrics(ing.url(""))
        joined = m.get("keng_ingest_events_joined_total")
        kt.check(joined is not None and joined > 0, "keng_ingest_events_joined_total",
                 "> 0", joined)
        print(f"FIGURES ingest-retries: gateways {GATEWAYS}, events {len(sent)}, outage "
              f"{OUTAGE_S} s, attempts {attempts}, events by copies {spread}, joined "
              f"{joined}, seed {seed}", flush=True)
        ing.stop()
    finally:
        fl.close_all([ing] if ing else [], broker, work)


if __name__ == "__main__":
    kt.main([test_resends_during_an_outage_join_the_copy_in_flight])
