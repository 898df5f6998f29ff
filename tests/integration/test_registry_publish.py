"""keng-registry --publish and --versions against a broker: the built-in 2024 registry and the
1 July 2025 one (with its units list and lineage) are published to the compacted topic
antt.registry, listed, and read back raw; each refusal (a version the check refuses, an
effective time before the latest, a past time without --allow-past, the same time without
--replace, an unreachable broker) is shown with its message, its exit status and that nothing
was published. On real Kafka the topic is also checked to be compacted."""

import hashlib
import json
import os
import subprocess
import time

import kengtest as kt

TOPIC = "antt.registry"
REGISTRY_DIR = os.path.join(kt.SOURCE_DIR, "registry")
REG_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.csv")
UNITS_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.communes.csv")
LINEAGE_2025 = os.path.join(REGISTRY_DIR, "nghe-an-2024-to-2025.lineage.csv")

HEAD = "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"
PREVIOUS = HEAD + (
    "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5\n")
NEXT = HEAD + (
    "B1,Thôn 1,N1,Xã Mới,,,5,5\n"
    "B2,Thôn 2,N1,Xã Mới,,,5,5\n")
LINEAGE = ("from_id,from_name,to_id,to_name\n"
           "C1,Xã Một,N1,Xã Mới\n"
           "C2,Xã Hai,N1,Xã Mới\n"
           "B3,Thôn 3,,\n")


def run(*args, env=None, timeout=120):
    full_env = dict(os.environ)
    full_env.pop("KENG_BROKERS", None)
    full_env.update(env or {})
    return subprocess.run([kt.binary("keng-registry"), *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def write(wd, name, text):
    path = wd.file(name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def documents(bootstrap):
    """The topic's messages as (key, document), in offset order."""
    out = []
    for msg in kt.consume_all(bootstrap, TOPIC):
        out.append((msg.key().decode(), json.loads(msg.value())))
    return out


def expect_refused(out, status, fragments, what):
    kt.check_equal(out.returncode, status, f"{what}: exit status ({out.stderr.strip()[-800:]!r})")
    kt.check("published:" not in out.stdout, f"{what}: nothing published", "no 'published:'",
             out.stdout)
    for fragment in fragments:
        kt.check(fragment in out.stderr, f"{what}: the refusal says it", fragment,
                 out.stderr.strip())
    for line in out.stderr.splitlines():
        if "warning: " not in line:
            kt.log(f"{what}: {line}")


def versions(bootstrap):
    """keng-registry --versions as a list of rows (split on spaces), header left out."""
    out = run("--versions", "--brokers", bootstrap)
    kt.check_equal(out.returncode, 0, f"--versions: exit status ({out.stderr.strip()!r})")
    lines = out.stdout.splitlines()
    kt.check(lines and lines[0].split()[:6] == ["effective", "boards", "communes", "districts",
                                                "sha256", "published_at"],
             "--versions: header", "effective boards communes districts sha256 published_at",
             lines[:1])
    return [line.split() for line in lines[1:]]


def test_publish_2024_then_2025_list_and_read_back():
    wd = kt.Workdir(prefix="keng-regpub-")
    broker = kt.Broker(wd)
    try:
        reg_2024 = wd.file("boards-2024.csv")
        kt.check_equal(run("--write", reg_2024).returncode, 0, "keng-registry --write")

        out = run("--publish", reg_2024, "--effective", "2024-01-01", "--allow-past",
                  "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish 2024: exit status ({out.stderr.strip()!r})")
        kt.check(f"published: {TOPIC} partition 0 offset 0 effective 2023-12-31T17:00:00Z" in
                 out.stdout, "publish 2024: topic, partition and offset",
                 "published: antt.registry partition 0 offset 0 ...", out.stdout)
        kt.check("no version before it" in out.stdout, "the first version is checked alone",
                 "no version before it", out.stdout)

        # A config file with kafka.* keys, as the other programs take it.
        conf = write(wd, "registry.conf", f"kafka.bootstrap.servers={broker.bootstrap}\n"
                                          "kafka.client.id=keng-registry-test\n")
        out = run("--publish", REG_2025, "--effective", "2025-07-01", "--units", UNITS_2025,
                  "--lineage", LINEAGE_2025, "--allow-past", "--config", conf)
        kt.check_equal(out.returncode, 0, f"publish 2025: exit status ({out.stderr.strip()!r})")
        for fragment in ("districts=0 communes=130 boards=7588 groups=38578 members=38661",
                         "effective: 2025-07-01T00:00:00.000+07:00",
                         f"previous: {TOPIC}@2023-12-31T17:00:00Z districts=21 communes=460 "
                         "boards=7588 effective=2024-01-01T00:00:00.000+07:00",
                         "boards against the previous version: 0 in the same commune, 7588 "
                         "moved, 0 new, 0 removed",
                         f"published: {TOPIC} partition 0 offset 1 effective "
                         "2025-06-30T17:00:00Z"):
            kt.check(fragment in out.stdout, "publish 2025 says it", fragment, out.stdout)

        rows = versions(broker.bootstrap)
        kt.check_equal([r[:4] for r in rows],
                       [["2023-12-31T17:00:00Z", "7588", "460", "21"],
                        ["2025-06-30T17:00:00Z", "7588", "130", "0"]], "--versions")
        kt.check_equal([r[4] for r in rows], [sha256(reg_2024)[:12], sha256(REG_2025)[:12]],
                       "--versions: the sha256 prefixes are those of the files")
        kt.check_equal([r[6:] for r in rows], [[], ["in", "force"]],
                       "--versions marks the 2025 version as in force now")

        # The same files at the same time again (docker-compose.yml's one-shot service at
        # every start): nothing is published, exit 0.
        out = run("--publish", reg_2024, "--effective", "2024-01-01", "--allow-past",
                  "--brokers", broker.bootstrap)
        kt.check_equal(out.returncode, 0, f"publish 2024 again: exit status "
                       f"({out.stderr.strip()!r})")
        kt.check(f"already published: {TOPIC} partition 0 offset 0 effective "
                 f"2023-12-31T17:00:00Z sha256 {sha256(reg_2024)}, the same files; nothing "
                 "published" in out.stdout, "publish 2024 again says it is there",
                 "already published ...", out.stdout)

        docs = documents(broker.bootstrap)
        kt.check_equal([k for k, _ in docs], ["2023-12-31T17:00:00Z", "2025-06-30T17:00:00Z"],
                       "the keys are the effective times, and nothing published twice")
        key, doc = docs[1]
        kt.check_equal(doc["format"], 1, "document format")
        kt.check_equal(doc["effective"], key, "effective time in the document")
        kt.check_equal((doc["boards"], doc["communes"], doc["districts"]), (7588, 130, 0),
                       "counts in the document")
        kt.check_equal(doc["registry"]["text"], read_text(REG_2025), "the board CSV, whole")
        kt.check_equal(doc["registry"]["sha256"], sha256(REG_2025), "the board CSV's sha256")
        kt.check_equal(doc["registry"]["file"], "nghe-an-2025-07-01.csv", "the file's name")
        kt.check_equal(doc["units"]["text"], read_text(UNITS_2025), "the units list, whole")
        kt.check_equal(doc["units"]["sha256"], sha256(UNITS_2025), "the units list's sha256")
        kt.check_equal(doc["lineage"]["text"], read_text(LINEAGE_2025), "the lineage, whole")
        kt.check_equal(doc["lineage"]["sha256"], sha256(LINEAGE_2025), "the lineage's sha256")
        published = time.strptime(doc["published_at"][:19], "%Y-%m-%dT%H:%M:%S")
        kt.check(abs(time.mktime(published) - time.mktime(time.gmtime())) < 600,
                 "published_at is now, in UTC", time.strftime("%Y-%m-%dT%H:%M:%S",
                                                              time.gmtime()), doc["published_at"])
        kt.check_equal(docs[0][1]["units"], None, "no units list for 2024")
        kt.check_equal(docs[0][1]["lineage"], None, "no lineage for 2024")

        if kt.on_real_kafka():
            from confluent_kafka.admin import AdminClient, ConfigResource
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            res = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
            configs = admin.describe_configs([res])[res].result(30)
            kt.check_equal(configs["cleanup.policy"].value, "compact", "antt.registry policy")
            kt.check_equal(configs["max.message.bytes"].value, "10485760",
                           "antt.registry max.message.bytes")
    finally:
        broker.stop()
        wd.cleanup()


def test_refusals_publish_nothing():
    wd = kt.Workdir(prefix="keng-regpub-bad-")
    broker = kt.Broker(wd)
    try:
        previous = write(wd, "previous.csv", PREVIOUS)
        next_ = write(wd, "next.csv", NEXT)
        lineage = write(wd, "lineage.csv", LINEAGE)
        dropping = write(wd, "dropping.csv", LINEAGE.replace("B3,Thôn 3,,\n", ""))
        b = ["--brokers", broker.bootstrap]

        out = run("--publish", previous, "--effective", "2024-01-01", "--allow-past", *b)
        kt.check_equal(out.returncode, 0, f"first version: exit status ({out.stderr.strip()!r})")

        # A version the check refuses: its lineage drops a board without saying so.
        expect_refused(run("--publish", next_, "--effective", "2025-07-01", "--lineage",
                           dropping, "--allow-past", *b), 78,
                       [f"{TOPIC}@2023-12-31T17:00:00Z: line 4: board B3 (commune C2) is not in",
                        "add the line 'B3,Thôn 3,,' to the lineage",
                        "next.csv refused", "not published"], "a lineage that drops a board")
        # A version the loader refuses, naming its line.
        bad = write(wd, "bad.csv", NEXT + "B9,Thôn 9,N1,,,,5,5\n")
        expect_refused(run("--publish", bad, "--effective", "2025-07-01", "--lineage", lineage,
                           "--allow-past", *b), 78, ["bad.csv: line 4:"], "a bad row")
        # A past time without --allow-past.
        expect_refused(run("--publish", next_, "--effective", "2025-07-01", "--lineage",
                           lineage, *b), 78,
                       ["--effective 2025-06-30T17:00:00Z is in the past", "--allow-past"],
                       "a past time without --allow-past")
        # Before the latest version, and the same time without --replace.
        expect_refused(run("--publish", next_, "--effective", "2023-06-01", "--lineage",
                           lineage, "--allow-past", *b), 78,
                       ["--effective 2023-05-31T17:00:00Z is before 2023-12-31T17:00:00Z, the "
                        "latest version in antt.registry"], "an effective time before the latest")
        expect_refused(run("--publish", next_, "--effective", "2024-01-01", "--lineage", lineage,
                           "--allow-past", *b), 78,
                       ["antt.registry has a version effective at 2023-12-31T17:00:00Z already",
                        "--replace"], "the same effective time without --replace")
        # A broker that does not answer.
        expect_refused(run("--publish", next_, "--effective", "2030-01-01", "--lineage", lineage,
                           "--brokers", f"127.0.0.1:{kt.free_port()}"), 69,
                       ["did not answer"], "an unreachable broker")
        out = run("--versions", "--brokers", f"127.0.0.1:{kt.free_port()}")
        kt.check_equal(out.returncode, 69, f"--versions, unreachable broker: exit status "
                       f"({out.stderr.strip()!r})")
        # No brokers at all, and flags that need --publish.
        expect_refused(run("--publish", next_, "--effective", "2030-01-01"), 78,
                       ["no brokers"], "no brokers")
        expect_refused(run("--check", next_, "--allow-past"), 64, ["--allow-past needs --publish"],
                       "--allow-past without --publish")
        expect_refused(run("--publish", next_, *b), 64, ["--publish needs --effective"],
                       "--publish without --effective")

        docs = documents(broker.bootstrap)
        kt.check_equal([k for k, _ in docs], ["2023-12-31T17:00:00Z"],
                       "nothing was published by the refused versions")

        # --replace publishes other files at the same time; a future version needs no
        # --allow-past and is not in force yet.
        corrected = write(wd, "corrected.csv", PREVIOUS.replace("Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5",
                                                                "Thôn 3,C2,Xã Hai,D1,Huyện Một,6,7"))
        out = run("--publish", corrected, "--effective", "2024-01-01", "--allow-past", "--replace",
                  *b)
        kt.check_equal(out.returncode, 0, f"--replace: exit status ({out.stderr.strip()!r})")
        kt.check("published: antt.registry partition 0 offset 1" in out.stdout,
                 "--replace publishes", "offset 1", out.stdout)
        out = run("--publish", next_, "--effective", "2099-01-01", "--lineage", lineage, *b)
        kt.check_equal(out.returncode, 0, f"a future version: exit status "
                       f"({out.stderr.strip()!r})")
        rows = versions(broker.bootstrap)
        kt.check_equal([(r[0], r[6:]) for r in rows],
                       [("2023-12-31T17:00:00Z", ["in", "force"]),
                        ("2098-12-31T17:00:00Z", ["future"])],
                       "--versions: one version per effective time, the future one not in force")
    finally:
        broker.stop()
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_publish_2024_then_2025_list_and_read_back, test_refusals_publish_nothing])
