"""scripts/kafka-cluster.sh keeps the interface other tools drive: `up DIR 3` starts three
registered KRaft nodes and writes DIR/bootstrap, DIR/broker-<id>.pid and working tool
wrappers that deploy/create-topics.sh runs unchanged; `kill` and `start` take one node out
and bring it back on the same port; `down` stops everything and is safe twice."""

import os
import signal
import subprocess
import time

import kengtest as kt

SCRIPT = kt.KAFKA_CLUSTER


def run(*args, env=None, timeout=600):
    r = subprocess.run([SCRIPT] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, **(env or {})))
    return r.returncode, r.stderr


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def pid_of(d, node_id):
    with open(os.path.join(d, f"broker-{node_id}.pid")) as f:
        return int(f.read())


def registered(bootstrap):
    """Node ids in the cluster's metadata, as a fresh client sees them."""
    from confluent_kafka.admin import AdminClient
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).brokers)


def test_three_nodes_kill_start_down():
    work = kt.Workdir(prefix="keng-kafka-cluster-")
    d = work.file("cluster")
    pids = []
    try:
        status, err = run("up", d, 3, env=dict(kt.kafka_ports_env(3),
                                               KENG_KAFKA_OWNER_PID=str(os.getpid())))
        kt.check_equal(status, 0, f"up exit status ({err[-1500:]})")
        with open(os.path.join(d, "bootstrap")) as f:
            bootstrap = f.read().strip()
        addresses = bootstrap.split(",")
        kt.check_equal(len(addresses), 3, "addresses in DIR/bootstrap")
        kt.check(all(a.startswith("127.0.0.1:") for a in addresses), "addresses on 127.0.0.1",
                 "127.0.0.1:port", addresses)
        pids = [pid_of(d, i) for i in (1, 2, 3)]
        kt.check_equal([alive(p) for p in pids], [True] * 3, "broker processes alive")
        kt.check_equal(registered(bootstrap), {1, 2, 3}, "registered node ids after up")

        # The tool wrappers: create-topics.sh as kafka-init runs it, then a second time.
        env = dict(os.environ, KENG_BOOTSTRAP=bootstrap,
                   KAFKA_BIN=os.path.join(d, "kafka-home", "bin"), KENG_PARTITIONS="3",
                   KENG_SIDE_PARTITIONS="1")
        script = os.path.join(kt.SOURCE_DIR, "deploy", "create-topics.sh")
        for attempt in ("first", "second"):
            r = subprocess.run([script], capture_output=True, text=True, timeout=300, env=env)
            kt.check_equal(r.returncode, 0, f"create-topics.sh {attempt} run ({r.stderr[-1500:]})")
        kt.check("exists with 3 partitions; setting" in r.stderr,
                 "the second run finds the topics", "exists with 3 partitions", r.stderr[-600:])
        from confluent_kafka.admin import AdminClient, ConfigResource
        admin = AdminClient({"bootstrap.servers": bootstrap})
        md = admin.list_topics(timeout=10)
        for topic in kt.TOPICS:
            parts = md.topics[topic].partitions
            kt.check_equal(sorted(len(p.replicas) for p in parts.values()),
                           [3] * len(parts), f"replicas of each partition of {topic}")
        res = ConfigResource(ConfigResource.Type.TOPIC, "antt.board-counts")
        config = admin.describe_configs([res])[res].result(30)
        kt.check_equal((config["min.insync.replicas"].value, config["cleanup.policy"].value),
                       ("2", "compact"), "antt.board-counts settings")
        r = subprocess.run([os.path.join(d, "kafka-home", "bin", "kafka-consumer-groups.sh"),
                            "--bootstrap-server", bootstrap, "--list"], capture_output=True,
                           text=True, timeout=120)
        kt.check_equal(r.returncode, 0, f"kafka-consumer-groups.sh --list ({r.stderr[-600:]})")

        # kill: the process is gone at once; the cluster fences the node after its session.
        status, err = run("kill", d, 2)
        kt.check_equal(status, 0, f"kill exit status ({err})")
        kt.check(not alive(pids[1]), "node 2 gone after kill", "dead", "alive")
        kt.wait_until(lambda: registered(bootstrap) == {1, 3}, 60, "node 2 fenced")
        status, err = run("kill", d, 2)
        kt.check(status != 0 and "not running" in err, "kill of a stopped node refused",
                 "an error naming it", (status, err))

        # start: back on the same address, registered when the command returns.
        status, err = run("start", d, 2)
        kt.check_equal(status, 0, f"start exit status ({err[-1500:]})")
        pids[1] = pid_of(d, 2)
        kt.check_equal(registered(addresses[1]), {1, 2, 3}, "node ids after start, asked of node 2")

        # down: every process gone; a second down is fine.
        status, err = run("down", d)
        kt.check_equal(status, 0, f"down exit status ({err})")
        kt.check_equal([alive(p) for p in pids], [False] * 3, "broker processes alive after down")
        status, err = run("down", d)
        kt.check_equal(status, 0, f"second down exit status ({err})")
    finally:
        run("down", d)
        for p in pids:
            if alive(p):
                os.kill(p, signal.SIGKILL)
        work.cleanup()


def test_usage_errors():
    for args in ([], ["up"], ["bogus", "/tmp/x"], ["kill", "/tmp"], ["up", "/tmp/x", "zero"]):
        status, err = run(*args, timeout=60)
        kt.check(status != 0 and err.strip(), f"kafka-cluster.sh {' '.join(args)} refused",
                 "non-zero with a message", (status, err[-300:]))
    status, err = run("down", "/nonexistent/keng-kafka-cluster")
    kt.check_equal(status, 0, f"down of a folder that does not exist ({err})")


if __name__ == "__main__":
    kt.main([test_three_nodes_kill_start_down, test_usage_errors])
