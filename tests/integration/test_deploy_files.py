"""The production deployment files: docker-compose.yml, Dockerfile, .dockerignore, deploy/
and docs/OPERATIONS.md.

No Docker engine runs where keng is built and tested, so nothing here starts a container.
What can be checked without one is checked: the compose file parses and says what
docs/OPERATIONS.md says it does; every flag it passes is in docs/DESIGN.md's flag table;
the Dockerfile installs exactly the packages of scripts/install-deps.sh (runtime names
derived from the -dev ones through dpkg, and the libraries the built programs load);
every config key in deploy/*.conf is documented and accepted (kafka.* keys by
librdkafka itself, through confluent-kafka, which links the same librdkafka); the topic
script and the state-slot wrapper run against stand-ins for Kafka's tools and for
keng-aggregate.
"""

import base64
import csv
import fnmatch
import glob
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys

import kengtest as kt

SRC = os.path.abspath(kt.SOURCE_DIR)
BROKERS = ["kafka-1", "kafka-2", "kafka-3"]
RETENTION_400_DAYS_MS = 400 * 24 * 3600 * 1000
# In the runtime stage beyond the -dev packages' libraries: the health checks' client and
# the CA bundle for brokers with publicly signed certificates, and mdb_copy for backups.
RUNTIME_EXTRAS = {"curl", "ca-certificates", "lmdb-utils"}
# -dev packages of scripts/install-deps.sh that no program links: the unit tests' library,
# and the sanitizer and libFuzzer runtimes of the fuzz and sanitizer builds.
TEST_ONLY_DEV = {"libcmocka-dev", "libclang-rt-14-dev"}
# What debian:12-slim has already.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}


def path(*parts):
    return os.path.join(SRC, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def compose():
    try:
        import yaml
    except ImportError:
        raise kt.TestFailure("python3-yaml is missing: run scripts/install-deps.sh") from None
    with open(path("docker-compose.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def interpolate(value, env=None):
    """Compose's ${VAR}, ${VAR:-default} and ${VAR-default} with the given environment."""
    env = env or {}

    def one(m):
        name, op, default = m.group(1), m.group(2), m.group(3) or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return re.sub(r"\$\{(\w+)(?:(:?-)([^}]*))?\}", one, str(value))


def design_flags():
    """docs/DESIGN.md's flag table: {flag: program it is limited to, or None}."""
    flags = {}
    for line in read("docs", "DESIGN.md").splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"(keng-[a-z]+):", cells[1])
        for flag in re.findall(r"`(--[a-z][a-z-]*)", cells[0]):
            flags[flag] = m.group(1) if m else None
    kt.check(len(flags) >= 8, "flags in docs/DESIGN.md's table", ">= 8", sorted(flags))
    return flags


def keng_command(service):
    """(program, argv) of a keng service; the argv after any wrapper."""
    argv = [interpolate(a) for a in service["command"]]
    for i, word in enumerate(argv):
        if word.startswith("keng-"):
            return word, argv[i:]
    raise kt.TestFailure(f"no keng program in the command {argv}")


def flag_value(argv, flag):
    kt.check(flag in argv, f"{flag} in {argv[0]}'s command", flag, argv)
    return argv[argv.index(flag) + 1]


def mounts(service):
    """{container path: (source, read_only)} of a service's volumes (short syntax)."""
    out = {}
    for v in service.get("volumes", []):
        parts = interpolate(v).split(":")
        out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
    return out


# ---- docker-compose.yml ----

def tested_kafka_version():
    """The Apache Kafka version scripts/kafka-cluster.sh runs in the tests: a 3.9.x, pinned
    in scripts/kafka/pom.xml."""
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", read("scripts", "kafka", "pom.xml"))
    kt.check(m is not None, "<kafka.version> in scripts/kafka/pom.xml", "a version", None)
    kt.check(re.fullmatch(r"3\.9\.\d+", m.group(1)), "the pinned Kafka version",
             "3.9.x (the last 3.x line; librdkafka 2.0.2 predates Kafka 4.0)", m.group(1))
    return m.group(1)


def test_compose_kafka_cluster():
    c = compose()
    services = c["services"]
    for name in BROKERS + ["kafka-init", "keng-ingest", "keng-aggregate"]:
        kt.check(name in services, "service in docker-compose.yml", name, sorted(services))
    cluster_ids, voters, node_ids = set(), set(), set()
    for name in BROKERS:
        s = services[name]
        kt.check_equal(s["image"], f"apache/kafka:{tested_kafka_version()}",
                       f"{name}: the official image of the Kafka version the tests run "
                       "(scripts/kafka/pom.xml)")
        env = {k: interpolate(v) for k, v in s["environment"].items()}
        kt.check_equal(env["KAFKA_PROCESS_ROLES"], "broker,controller", f"{name}: KRaft roles")
        cluster_ids.add(env["CLUSTER_ID"])
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        node_ids.add(env["KAFKA_NODE_ID"])
        kt.check_equal(int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]), 3, f"{name}: replication")
        kt.check_equal(int(env["KAFKA_MIN_INSYNC_REPLICAS"]), 2, f"{name}: min.insync.replicas")
        kt.check_equal(int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]), 3,
                       f"{name}: replication of the group offsets")
        kt.check_equal(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false",
                       f"{name}: topics come only from kafka-init")
        kt.check(f"INTERNAL://{s['hostname']}:9092" in env["KAFKA_ADVERTISED_LISTENERS"],
                 f"{name}: advertises its own host name", s["hostname"],
                 env["KAFKA_ADVERTISED_LISTENERS"])
        kt.check("CONTROLLER" not in env["KAFKA_ADVERTISED_LISTENERS"],
                 f"{name}: the controller listener is not advertised", "no CONTROLLER",
                 env["KAFKA_ADVERTISED_LISTENERS"])
        data = mounts(s).get(env["KAFKA_LOG_DIRS"])
        kt.check(data and not data[0].startswith((".", "/")), f"{name}: log dirs on a named volume",
                 env["KAFKA_LOG_DIRS"], s.get("volumes"))
        kt.check(s.get("healthcheck"), f"{name}: a health check", "one", None)
    kt.check_equal(len(cluster_ids), 1, "one CLUSTER_ID for the three nodes")
    cluster_id = cluster_ids.pop()
    raw = base64.urlsafe_b64decode(cluster_id + "==")
    kt.check_equal(len(raw), 16, f"CLUSTER_ID {cluster_id} as a base64url UUID, in bytes")
    kt.check_equal(len(voters), 1, "one quorum voter list for the three nodes")
    kt.check_equal(sorted(voters.pop().split(",")),
                   [f"{i}@kafka-{i}:9093" for i in (1, 2, 3)], "quorum voters")
    kt.check_equal(sorted(int(n) for n in node_ids), [1, 2, 3], "node ids")

    init = services["kafka-init"]
    kt.check_equal(init["image"], services["kafka-1"]["image"], "kafka-init's image")
    kt.check_equal(str(init.get("restart")), "no", "kafka-init runs once")
    for name in BROKERS:
        kt.check_equal(init["depends_on"][name]["condition"], "service_healthy",
                       f"kafka-init waits for {name}")
    env = {k: interpolate(v) for k, v in init["environment"].items()}
    kt.check_equal(int(env["KENG_PARTITIONS"]), 24, "partitions of the input topics")
    kt.check_equal(int(env["KENG_REPLICATION"]), 3, "replication factor of the topics")
    kt.check_equal(int(env["KENG_MIN_INSYNC"]), 2, "min.insync.replicas of the topics")
    for key in ("KENG_RETENTION_MS", "KENG_SIDE_RETENTION_MS"):
        kt.check(int(env[key]) >= RETENTION_400_DAYS_MS, f"{key}: at least 400 days",
                 f">= {RETENTION_400_DAYS_MS}", env[key])
    script = mounts(init)
    kt.check(any(src.endswith("deploy/create-topics.sh") and ro for src, ro in script.values()),
             "kafka-init mounts deploy/create-topics.sh read-only", True, init.get("volumes"))


def test_compose_keng_services():
    services = compose()["services"]
    for name, port in (("keng-ingest", "8088"), ("keng-aggregate", "8080")):
        s = services[name]
        program, argv = keng_command(s)
        kt.check_equal(program, name, f"{name}: the program it runs")
        kt.check_equal(s["build"]["context"], ".", f"{name}: built from this folder")
        kt.check_equal(s["build"]["dockerfile"], "Dockerfile", f"{name}: its Dockerfile")
        kt.check_equal(s["depends_on"]["kafka-init"]["condition"],
                       "service_completed_successfully", f"{name}: starts once the topics exist")
        kt.check_equal(s["depends_on"]["keng-registry"]["condition"],
                       "service_completed_successfully",
                       f"{name}: starts once the registry is in antt.registry")
        kt.check_equal(flag_value(argv, "--listen"), f"0.0.0.0:{port}", f"{name}: --listen")
        kt.check_equal(flag_value(argv, "--brokers"), ",".join(f"{b}:9092" for b in BROKERS),
                       f"{name}: --brokers")
        test = s["healthcheck"]["test"]
        kt.check(test[:2] == ["CMD", "curl"] and
                 test[-1] == f"http://127.0.0.1:{port}/healthz",
                 f"{name}: health check", f"curl ... http://127.0.0.1:{port}/healthz", test)
        ports = [interpolate(p) for p in s["ports"]]
        kt.check(all(p.endswith(f":{port}") for p in ports), f"{name}: published port",
                 f"...:{port}", ports)
        m = mounts(s)
        kt.check("/etc/keng" in m and m["/etc/keng"][1], f"{name}: /etc/keng mounted read-only",
                 True, s["volumes"])
        config_dir = m["/etc/keng"][0]
        for flag in ("--config", "--tokens"):
            if flag not in argv:
                continue
            inside = flag_value(argv, flag)
            kt.check(inside.startswith("/etc/keng/"), f"{name}: {flag} in the mounted folder",
                     "/etc/keng/...", inside)
            rel = os.path.join(config_dir, inside[len("/etc/keng/"):])
            if flag == "--tokens":
                rel += ".example"  # the real file is the deployment's, never in the repo
            kt.check(os.path.exists(path(rel)), f"{name}: {flag} file in the repo", rel, "missing")
        kt.check_equal(flag_value(argv, "--registry-topic"), "antt.registry",
                       f"{name}: follows the registry versions of antt.registry")
        kt.check("--registry" not in argv, f"{name}: no --registry beside --registry-topic",
                 "no --registry", argv)
    publish = flag_value(keng_command(services["keng-registry"])[1], "--publish")
    kt.check_equal(interpolate(publish), "/usr/share/keng/boards.csv",
                   "keng-registry publishes the default registry unless KENG_REGISTRY says")
    kt.check("/usr/share/keng/boards.csv" in read("Dockerfile"),
             "the Dockerfile writes the default registry where keng-registry publishes from",
             True, False)

    agg = services["keng-aggregate"]
    _, argv = keng_command(agg)
    state = flag_value(argv, "--state-dir")
    kt.check_equal(state, "/var/lib/keng", "keng-aggregate: --state-dir base")
    kt.check_equal(interpolate(agg["command"][0]), "with-state-slot",
                   "keng-aggregate: each instance takes its own state slot")
    source, ro = mounts(agg)[state]
    kt.check(not ro and source in (compose().get("volumes") or {}),
             "keng-aggregate: state on a named, writable volume", "a named volume", source)
    kt.check(flag_value(argv, "--group"), "keng-aggregate: --group", "an id", None)
    # --scale keng-aggregate=3 must not ask for one host port three times.
    for p in agg["ports"]:
        parts = interpolate(p).split(":")
        kt.check(len(parts) == 3 and parts[1] == "",
                 "keng-aggregate: no fixed host port unless KENG_AGGREGATE_HOST_PORT is set",
                 "IP::8080", interpolate(p))
        fixed = interpolate(p, {"KENG_AGGREGATE_HOST_PORT": "8080"})
        kt.check_equal(fixed, "127.0.0.1:8080:8080", "keng-aggregate with a fixed host port")
    for s in (services["keng-ingest"], agg):
        kt.check(s.get("init") is True, "an init process forwards signals", True, s.get("init"))
        grace = s.get("stop_grace_period", "10s")
        kt.check(int(grace.rstrip("s")) >= 20, "time to flush and checkpoint on SIGTERM",
                 ">= 20s", grace)


def test_compose_flags_are_in_design():
    flags = design_flags()
    for name in ("keng-ingest", "keng-aggregate"):
        program, argv = keng_command(compose()["services"][name])
        used = [a for a in argv if a.startswith("--")]
        for flag in used:
            kt.check(flag in flags, f"{program} {flag} in docs/DESIGN.md's flag table",
                     "a documented flag", flag)
            only = flags[flag]
            kt.check(only is None or only == program, f"{flag} belongs to", only, program)
    kt.check("--tokens" in keng_command(compose()["services"]["keng-ingest"])[1],
             "keng-ingest gets --tokens", True, False)


def test_compose_commands_run():
    """The two keng commands of docker-compose.yml, with the container's paths mapped to
    this checkout, start the real programs against keng-broker: the config files, the token
    file and the state-slot wrapper work as the containers would use them."""
    for name in ("keng-broker", "keng-ingest", "keng-aggregate", "keng-registry"):
        if not os.path.exists(os.path.join(kt.BIN_DIR, name)):
            kt.log(f"{name} is not built: the compose commands were not run")
            return
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    procs = []
    try:
        registry = work.file("boards.csv")
        subprocess.run([kt.binary("keng-registry"), "--write", registry], check=True,
                       capture_output=True, timeout=60)
        # The embedded broker holds a group's first join for session.timeout.ms - 1 s
        # (docs/DESIGN.md); a copy of the config with a short one keeps this test quick.
        conf_dir = work.file("etc-keng")
        os.makedirs(conf_dir)
        for file in ("keng-ingest.conf", "keng-aggregate.conf"):
            text = without_security(read("deploy", file))
            if file == "keng-aggregate.conf":
                text += "\nkafka.session.timeout.ms=6000\n"
            with open(os.path.join(conf_dir, file), "w") as f:
                f.write(text)
        shutil.copy(path("deploy", "tokens.example"), os.path.join(conf_dir, "tokens"))
        services = compose()["services"]
        # What the one-shot keng-registry service does first: the deployment's registry into
        # antt.registry, which the two programs follow.
        out = subprocess.run([kt.binary("keng-registry"), "--publish", registry, "--effective",
                              "2024-01-01", "--allow-past", "--brokers", broker.bootstrap],
                             capture_output=True, text=True, timeout=120)
        kt.check_equal(out.returncode, 0, f"the registry published ({out.stderr[-400:]!r})")
        ports = {}
        for name in ("keng-ingest", "keng-aggregate"):
            argv = []
            program, found = keng_command(services[name])[0], False
            for word in (interpolate(w) for w in services[name]["command"]):
                if word.startswith("/etc/keng/"):
                    word = os.path.join(conf_dir, word[len("/etc/keng/"):])
                elif word == "/usr/share/keng/boards.csv":
                    word = registry
                elif word == "/var/lib/keng":
                    word = work.file("state")
                elif word.startswith("0.0.0.0:"):
                    ports[name] = kt.free_port()
                    word = f"127.0.0.1:{ports[name]}"
                elif word == "kafka-1:9092,kafka-2:9092,kafka-3:9092":
                    word = broker.bootstrap
                elif word == "with-state-slot":
                    word = path("deploy", "with-state-slot.sh")
                elif word == program and not found:
                    word, found = kt.binary(word), True
                argv.append(word)
            log = open(work.file(f"{name}.log"), "wb")
            procs.append((name, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log),
                          log))

        def status(name, route):
            return kt.http("GET", f"http://127.0.0.1:{ports[name]}{route}", timeout=5)[0]

        for name, route in (("keng-ingest", "/healthz"), ("keng-aggregate", "/healthz"),
                            ("keng-aggregate", "/readyz")):
            kt.wait_until(lambda: status(name, route) == 200, 90, f"{name} {route} answers 200")
        # The placeholder tokens let nobody in.
        code, _, _ = kt.http("POST", f"http://127.0.0.1:{ports['keng-ingest']}/v1/incidents",
                             b"{}", {"Content-Type": "application/json",
                                     "Authorization": "Bearer not-a-token"})
        kt.check_equal(code, 401, "a POST with a token that is not in the file")
        ingest = procs[0][1]
        ingest.send_signal(signal.SIGHUP)
        kt.wait_until(lambda: b"tokens reloaded" in open(work.file("keng-ingest.log"), "rb").read(),
                      20, "keng-ingest reloads its tokens on SIGHUP")
        kt.check_equal(status("keng-ingest", "/healthz"), 200, "keng-ingest after SIGHUP")
        agg_log = open(work.file("keng-aggregate.log"), "rb").read().decode("utf-8", "replace")
        group = interpolate(flag_value(keng_command(services["keng-aggregate"])[1], "--group"))
        kt.check(f"group={group} " in agg_log, "keng-aggregate's consumer group",
                 f"group={group}", re.findall(r"group=\S+", agg_log))
        kt.check(os.path.isdir(work.file("state/instance-1")), "keng-aggregate's state slot",
                 "state/instance-1", sorted(os.listdir(work.file("state"))))
        for name, p, _ in procs:
            p.send_signal(signal.SIGTERM)
            kt.check_equal(p.wait(30), 0, f"{name}'s exit status after SIGTERM")
    finally:
        for name, p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            log.close()
        broker.stop()
        work.cleanup()


# ---- Dockerfile and .dockerignore ----

def install_deps_packages():
    text = read("scripts", "install-deps.sh")
    m = re.search(r"packages=\((.*?)\)", text, re.S)
    kt.check(m, "the packages=( ... ) list in scripts/install-deps.sh", "found", None)
    return m.group(1).split()


def dockerfile_stages():
    """[(base image, stage name, [apt packages])] of the Dockerfile."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#") or not line:
            continue
        word = line.split()[0].upper()
        if word == "FROM":
            parts = line.split()
            stages.append((parts[1], parts[3] if len(parts) > 3 else None, []))
        elif word == "RUN" and stages:
            for cmd in re.split(r"&&|;", line[3:]):
                words = cmd.split()
                if words[:2] == ["apt-get", "install"]:
                    stages[-1][2].extend(w for w in words[2:] if not w.startswith("-"))
    return stages


def dpkg_owner(file):
    """The package that installed file, or ''. Debian 12 merged /lib into /usr/lib while
    dpkg's database keeps either spelling, so both are asked."""
    candidates = []
    for f in (file, os.path.realpath(file)):
        candidates.append(f)
        if f.startswith("/usr/"):
            candidates.append(f[len("/usr"):])
        else:
            candidates.append("/usr" + f)
    for f in candidates:
        r = subprocess.run(["dpkg-query", "-S", f], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    return ""


def runtime_packages_of(dev):
    """The packages holding the shared libraries that a -dev package's .so links point to.
    C++ bindings are left out: keng is C."""
    listed = subprocess.run(["dpkg-query", "-L", dev], capture_output=True, text=True)
    kt.check_equal(listed.returncode, 0, f"dpkg knows {dev} (run scripts/install-deps.sh)")
    out = set()
    for f in listed.stdout.split():
        if not re.search(r"/lib[^/+]*\.so$", f) or not os.path.islink(f):
            continue
        owner = dpkg_owner(os.path.realpath(f))
        kt.check(owner, f"the package of {os.path.realpath(f)}", "a package", owner)
        out.add(owner)
    kt.check(out, f"shared libraries of {dev}", "at least one", out)
    return out


def test_dockerfile_packages_match_install_deps():
    deps = install_deps_packages()
    stages = dockerfile_stages()
    kt.check_equal([s[0] for s in stages], ["debian:12-slim", "debian:12-slim"],
                   "base images of the two stages")
    build, runtime = stages[0][2], stages[1][2]
    devs = [p for p in deps if p.endswith("-dev")]
    for p in build:
        kt.check(p in deps, "build-stage package listed in scripts/install-deps.sh", p, deps)
    for p in [d for d in devs if d not in TEST_ONLY_DEV] + ["cmake", "pkg-config",
                                                             "build-essential"]:
        kt.check(p in build, "scripts/install-deps.sh package in the build stage", p, build)

    expected = set()
    for dev in devs:
        if dev not in TEST_ONLY_DEV:
            expected |= runtime_packages_of(dev)
    kt.check_equal(sorted(set(runtime) - RUNTIME_EXTRAS), sorted(expected),
                   "runtime-stage libraries (from the -dev packages through dpkg)")
    kt.check(RUNTIME_EXTRAS <= set(runtime), "curl and ca-certificates in the runtime stage",
             sorted(RUNTIME_EXTRAS), runtime)
    kt.check(not any(p.endswith("-dev") for p in runtime), "no -dev package at runtime", [],
             runtime)

    # The programs as built here: every library they load directly comes from the runtime
    # stage or the base image.
    checked = 0
    for name in ("keng-ingest", "keng-aggregate", "keng-registry"):
        binary = os.path.join(kt.BIN_DIR, name)
        if not os.path.exists(binary) or not shutil.which("ldd"):
            kt.log(f"{binary} not built: its libraries are not checked")
            continue
        needed = set(re.findall(r"\(NEEDED\).*\[(.+)\]",
                                subprocess.run(["readelf", "-d", binary], capture_output=True,
                                               text=True).stdout))
        paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", binary], capture_output=True, text=True).stdout, re.M))
        # Libraries loaded only through another library come with it from apt. A sanitizer
        # build (make test-sanitize) links its runtime, which no image ships.
        for soname in sorted(needed):
            if re.match(r"lib(asan|ubsan|lsan|tsan)\.so", soname):
                continue
            kt.check(soname in paths, f"{name}: ldd finds {soname}", "a path", None)
            owner = dpkg_owner(paths[soname])
            kt.check(owner in set(runtime) | BASE_IMAGE_PACKAGES,
                     f"{name} needs {soname}: its package in the image", owner, sorted(runtime))
        checked += 1
    kt.log(f"libraries of {checked} built program(s) checked against the runtime stage")


def dockerignored(rel, patterns):
    """Whether Docker's context would leave out rel (a path relative to the repo root):
    the last matching pattern decides, '!' re-includes, a match on a parent folder counts."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        for cand in candidates:
            if fnmatch.fnmatchcase(cand, pat) or (pat.startswith("**/") and
                                                  fnmatch.fnmatchcase(cand.split("/")[-1],
                                                                      pat[3:])):
                ignored = not negate
                break
    return ignored


def test_dockerignore():
    patterns = [l.strip() for l in read(".dockerignore").splitlines()
                if l.strip() and not l.strip().startswith("#")]
    needed = ["CMakeLists.txt", "cmake/embed_schemas.cmake", "common/config.c",
              "producers/CMakeLists.txt", "consumers/CMakeLists.txt", "schemas/manifest.csv",
              "tools/CMakeLists.txt", "tests/CMakeLists.txt", "cmake/keng_library.cmake",
              "consumers/counts/CMakeLists.txt", "deploy/with-state-slot.sh",
              "Dockerfile"]
    for rel in needed:
        kt.check(os.path.exists(path(rel)), "file the image build needs exists", rel, "missing")
        kt.check(not dockerignored(rel, patterns), "file the build needs is in the context",
                 rel, "ignored")
    for rel in [".git/HEAD", "build/bin/keng-aggregate", "build-ops/CMakeCache.txt",
                "deploy/tokens", "deploy/boards.csv", "deploy/kafka-ca.pem", ".env"]:
        kt.check(dockerignored(rel, patterns), "left out of the build context", rel, "included")


# ---- deploy/ ----

def conf_keys(file):
    keys = []
    for n, line in enumerate(read("deploy", file).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kt.check("=" in line, f"deploy/{file}:{n} is key=value", "key=value", line)
        keys.append((line.split("=", 1)[0].strip(), line.split("=", 1)[1].strip()))
    return keys


def librdkafka_properties():
    """Property names from librdkafka's CONFIGURATION.md (librdkafka-dev), or None."""
    doc = "/usr/share/doc/librdkafka-dev/CONFIGURATION.md.gz"
    if not os.path.exists(doc):
        return None
    with gzip.open(doc, "rt", encoding="utf-8") as f:
        return {m.group(1) for m in re.finditer(r"^([a-z][a-z0-9._]+)\s+\|", f.read(), re.M)}


def accepted_by_librdkafka(kind, conf):
    """Builds a confluent-kafka client (the same librdkafka keng links) with conf; raises
    TestFailure with librdkafka's words when it refuses a key or value."""
    from confluent_kafka import Consumer, KafkaException, Producer
    conf = dict(conf)
    conf["bootstrap.servers"] = "127.0.0.1:9"  # never contacted: the client is closed at once
    conf["log_level"] = 0
    try:
        if kind == "consumer":
            conf.setdefault("group.id", "keng-deploy-check")
            c = Consumer(conf)
            c.close()
        else:
            p = Producer(conf)
            p.flush(0)
    except (KafkaException, ValueError, TypeError) as e:
        raise kt.TestFailure(f"librdkafka refuses the {kind} config {conf}: {e}") from None


def test_config_keys_documented_and_accepted():
    ops = read("docs", "OPERATIONS.md")
    props = librdkafka_properties()
    # The http.* keys are read by the HTTP server both programs share, in common/.
    def c_files(folder):
        return sorted(glob.glob(path(folder, "**", "*.c"), recursive=True))
    common = c_files("common")
    sources = {"keng-ingest.conf": c_files("producers") + common,
               "keng-aggregate.conf": c_files("consumers") + common,
               "keng-registry.conf": c_files("tools") + common}
    confs = sorted(os.path.basename(p) for p in glob.glob(path("deploy", "*.conf")))
    kt.check_equal(confs, sorted(sources), "config files in deploy/")
    for file in confs:
        keys = conf_keys(file)
        kafka = {}
        for key, value in keys:
            kt.check(f"`{key}`" in ops, f"deploy/{file}: key documented in docs/OPERATIONS.md",
                     f"`{key}`", "absent")
            if key == "kafka.sasl.password_file":
                # keng's own key: keng hands the file's first line to librdkafka.
                kafka["sasl.password"] = "change-me"
                continue
            if key == "kafka.ssl.ca.location":
                # A path in the container: librdkafka would open it when the client is made.
                kt.check(key[len("kafka."):] in (props or [key[len("kafka."):]]),
                         f"deploy/{file}: {key} is a librdkafka property", "known", "unknown")
                continue
            if key.startswith("kafka."):
                kafka[key[len("kafka."):]] = value
                if props is not None:
                    kt.check(key[len("kafka."):] in props, f"deploy/{file}: {key} is a librdkafka "
                             "property (CONFIGURATION.md)", "known", "unknown")
                continue
            code = "".join(open(f, encoding="utf-8").read() for f in sources[file])
            kt.check(f'"{key}"' in code, f"deploy/{file}: {key} is read by the program's code",
                     f'"{key}" in {os.path.relpath(sources[file][0], SRC)}...', "absent")
        accepted_by_librdkafka("producer", kafka)
        if file == "keng-aggregate.conf":
            accepted_by_librdkafka("consumer", kafka)

    # The TLS/SASL example of docs/OPERATIONS.md, with its CA file left out (it does not
    # exist here, and librdkafka opens it when the client is made).
    example = {}
    for m in re.finditer(r"^\s*kafka\.([a-z._]+)=(.*)$", ops, re.M):
        example[m.group(1)] = m.group(2).strip()
    # keng's own key, read by keng and handed to librdkafka as sasl.password.
    kt.check("sasl.password_file" in example, "docs/OPERATIONS.md's TLS/SASL example sets",
             "kafka.sasl.password_file", sorted(example))
    example["sasl.password"] = "change-me"
    example.pop("sasl.password_file")
    for key in ("security.protocol", "sasl.mechanisms", "sasl.username", "sasl.password",
                "ssl.ca.location"):
        kt.check(key in example, "docs/OPERATIONS.md's TLS/SASL example sets", f"kafka.{key}",
                 sorted(example))
    # kafka.consumer.<key> and kafka.producer.<key> are <key> for one kind of client.
    by_role = {"consumer": {}, "producer": {}}
    for key in list(example):
        role, _, rest = key.partition(".")
        if role in by_role:
            by_role[role][rest] = example.pop(key)
    if props is not None:
        for key in list(example) + [k for r in by_role.values() for k in r]:
            kt.check(key in props, "docs/OPERATIONS.md: a librdkafka property", f"kafka.{key}",
                     "unknown")
    example.pop("ssl.ca.location")
    example.pop("ssl.certificate.location", None)
    example.pop("ssl.key.location", None)
    for role, keys in by_role.items():
        accepted_by_librdkafka(role, dict(example, **keys))


def test_tokens_example():
    lines = [l.split("#", 1)[0].strip() for l in read("deploy", "tokens.example").splitlines()]
    entries = [l.split() for l in lines if l]
    kt.check(entries, "entries in deploy/tokens.example", "at least one", entries)
    districts = {f"D{i:02d}" for i in range(1, 22)}
    for e in entries:
        kt.check_equal(len(e), 3, f"words in the token line {e}")
        kt.check(re.fullmatch(r"[0-9a-f]{64}", e[0]), "a SHA-256 in hex", "64 hex digits", e[0])
        kt.check(re.fullmatch(r"[!-~]+", e[1]) and "#" not in e[1], "a gateway name",
                 "printable, no spaces", e[1])
        kt.check(e[2] == "*" or set(e[2].split(",")) <= districts, "district ids",
                 "D01..D21 or *", e[2])


FAKE_KAFKA_TOPICS = r"""#!/usr/bin/env bash
# A stand-in for kafka-topics.sh: one file per topic in $FAKE_STATE holding its partitions.
echo "kafka-topics.sh $*" >>"$FAKE_STATE/calls"
op="" topic="" partitions=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --list | --describe | --create) op=$1; shift ;;
    --topic) topic=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    *) shift ;;
    esac
done
case "$op" in
--list) ls "$FAKE_STATE/topics" ;;
--describe)
    [[ -f "$FAKE_STATE/topics/$topic" ]] || { echo "Topic '$topic' does not exist" >&2; exit 1; }
    printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 3\tConfigs: \n' \
        "$topic" "$(cat "$FAKE_STATE/topics/$topic")"
    printf '\tTopic: %s\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2,3\n' "$topic" ;;
--create) echo "$partitions" >"$FAKE_STATE/topics/$topic" ;;
esac
"""

FAKE_KAFKA_CONFIGS = r"""#!/usr/bin/env bash
echo "kafka-configs.sh $*" >>"$FAKE_STATE/calls"
"""


def run_create_topics(work, env_extra):
    env = dict(os.environ)
    init = compose()["services"]["kafka-init"]
    env.update({k: interpolate(v) for k, v in init["environment"].items()})
    env.update({"KAFKA_BIN": work.file("bin"), "FAKE_STATE": work.file("state"),
                "KENG_WAIT_SECONDS": "5"})
    env.update(env_extra)
    open(work.file("state/calls"), "w").close()
    r = subprocess.run(["bash", path("deploy", "create-topics.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    with open(work.file("state/calls")) as f:
        return r, f.read().splitlines()


def test_create_topics_script():
    work = kt.Workdir()
    try:
        os.makedirs(work.file("bin"))
        os.makedirs(work.file("state/topics"))
        for name, text in (("kafka-topics.sh", FAKE_KAFKA_TOPICS),
                           ("kafka-configs.sh", FAKE_KAFKA_CONFIGS)):
            with open(work.file(f"bin/{name}"), "w") as f:
                f.write(text)
            os.chmod(work.file(f"bin/{name}"), 0o755)

        r, calls = run_create_topics(work, {})
        kt.check_equal(r.returncode, 0, f"first run's exit status (stderr: {r.stderr})")
        creates = [c for c in calls if " --create " in c]
        want = {"antt.incidents": "24", "antt.mediations": "24", "antt.alerts": "6",
                "antt.deadletter": "6", "antt.board-counts": "24", "antt.registry": "1"}
        got = {}
        for c in creates:
            words = c.split()
            got[words[words.index("--topic") + 1]] = words[words.index("--partitions") + 1]
            kt.check_equal(words[words.index("--replication-factor") + 1], "3",
                           "replication factor asked for")
            # kafka-init's: the brokers' certificate listener (keng's is 9092).
            kt.check_equal(words[words.index("--bootstrap-server") + 1],
                           "kafka-1:9094,kafka-2:9094,kafka-3:9094", "bootstrap servers")
            configs = dict(words[i + 1].split("=", 1) for i, w in enumerate(words)
                           if w == "--config")
            if words[words.index("--topic") + 1] == "antt.registry":
                # The registry versions: compacted, kept for ever, room for a whole registry.
                kt.check_equal((configs["cleanup.policy"], configs["retention.ms"],
                                configs["max.message.bytes"], configs["min.insync.replicas"]),
                               ("compact", "-1", "10485760", "2"), "antt.registry's settings")
                kt.check(int(configs["min.compaction.lag.ms"]) > 0,
                         "a replaced version stays readable a while", "> 0", configs)
                continue
            if words[words.index("--topic") + 1] == "antt.board-counts":
                # Shared per-board state: compacted, so each board's newest state stays.
                kt.check_equal(configs["cleanup.policy"], "compact",
                               "antt.board-counts cleanup policy")
                continue
            kt.check(int(configs["retention.ms"]) >= RETENTION_400_DAYS_MS,
                     "retention of every topic", f">= {RETENTION_400_DAYS_MS}", configs)
            kt.check_equal(configs["min.insync.replicas"], "2", "min.insync.replicas")
        kt.check_equal(got, want, "topics created with their partitions")

        r, calls = run_create_topics(work, {})
        kt.check_equal(r.returncode, 0, f"second run's exit status (stderr: {r.stderr})")
        kt.check_equal([c for c in calls if " --create " in c], [], "creates on the second run")
        alters = [c for c in calls if c.startswith("kafka-configs.sh") and "--alter" in c]
        kt.check_equal(len(alters), len(want),
                       f"settings brought up to date on the second run: {alters}")
        kt.check(all(("retention.ms=34560000000" in a or "cleanup.policy=compact" in a) and
                     "min.insync.replicas=2" in a for a in alters),
                 "settings applied", "retention (or compaction) and min.insync", alters)

        with open(work.file("state/topics/antt.incidents"), "w") as f:
            f.write("12\n")
        r, calls = run_create_topics(work, {})
        kt.check(r.returncode != 0, "a topic with another partition count stops the script",
                 "non-zero", r.returncode)
        kt.check("12 partitions" in r.stderr, "what it says", "...12 partitions...", r.stderr)
        kt.check_equal([c for c in calls if " --create " in c or "--alter" in c and
                        "antt.incidents" in c], [], "nothing changed on antt.incidents")

        r, _ = run_create_topics(work, {"KENG_MIN_INSYNC": "4"})
        kt.check(r.returncode != 0 and "min.insync.replicas" in r.stderr,
                 "min.insync.replicas above the replication factor is refused", "an error",
                 (r.returncode, r.stderr))
    finally:
        work.cleanup()


def test_compose_registry_service():
    """docker-compose.yml publishes the deployment's registry once: a one-shot keng-registry
    after the topics exist, with the registry the other services use, and its command runs:
    against keng-broker it publishes, and a second run publishes nothing and exits 0."""
    services = compose()["services"]
    s = services.get("keng-registry")
    kt.check(s is not None, "a keng-registry service in docker-compose.yml", "one",
             sorted(services))
    program, argv = keng_command(s)
    kt.check_equal(program, "keng-registry", "keng-registry: the program it runs")
    kt.check_equal(str(s.get("restart")), "no", "keng-registry runs once")
    kt.check_equal(s["depends_on"]["kafka-init"]["condition"], "service_completed_successfully",
                   "keng-registry starts once the topics exist")
    kt.check_equal(interpolate(flag_value(argv, "--publish")), "/usr/share/keng/boards.csv",
                   "keng-registry publishes KENG_REGISTRY, the built-in registry by default")
    for name in ("keng-ingest", "keng-aggregate"):
        kt.check_equal(flag_value(keng_command(services[name])[1], "--registry-topic"),
                       "antt.registry", f"{name} follows the topic keng-registry publishes to")
    kt.check_equal(flag_value(argv, "--effective"), "2024-01-01", "the default effective time")
    kt.check("--allow-past" in argv, "the first version takes effect before now", "--allow-past",
             argv)
    kt.check_equal(flag_value(argv, "--brokers"), ",".join(f"{b}:9092" for b in BROKERS),
                   "keng-registry: --brokers")
    inside = flag_value(argv, "--config")
    m = mounts(s)
    kt.check(inside.startswith("/etc/keng/") and "/etc/keng" in m and m["/etc/keng"][1],
             "keng-registry: --config in the folder mounted read-only", "/etc/keng/...", inside)
    kt.check(os.path.exists(path(m["/etc/keng"][0], inside[len("/etc/keng/"):])),
             "keng-registry: its --config file in the repo", inside, "missing")
    flags = design_flags()
    for flag in (a for a in argv if a.startswith("--")):
        kt.check(flag in flags and flags[flag] in (None, "keng-registry"),
                 f"keng-registry {flag} in docs/DESIGN.md's flag table", "a documented flag",
                 flag)

    if not os.path.exists(os.path.join(kt.BIN_DIR, "keng-registry")):
        kt.log("keng-registry is not built: its compose command was not run")
        return
    work = kt.Workdir()
    broker = kt.Broker(work, partitions=4)
    try:
        registry = work.file("boards.csv")
        subprocess.run([kt.binary("keng-registry"), "--write", registry], check=True,
                       capture_output=True, timeout=60)
        conf = work.file("keng-registry.conf")
        with open(conf, "w") as f:
            f.write(without_security(read("deploy", "keng-registry.conf")))
        mapped = [kt.binary("keng-registry") if w == "keng-registry" else
                  registry if w == "/usr/share/keng/boards.csv" else
                  conf if w == inside else
                  broker.bootstrap if w == "kafka-1:9092,kafka-2:9092,kafka-3:9092" else w
                  for w in argv]
        for run, said in ((1, "published: antt.registry partition 0 offset 0"),
                          (2, "already published: antt.registry partition 0 offset 0")):
            r = subprocess.run(mapped, capture_output=True, text=True, timeout=120)
            kt.check_equal(r.returncode, 0, f"keng-registry's compose command, run {run} "
                           f"({r.stderr.strip()[-400:]})")
            kt.check(said in r.stdout, f"run {run} says", said, r.stdout)
    finally:
        broker.stop()
        work.cleanup()


FAKE_KAFKA_ACLS = r"""#!/usr/bin/env bash
echo "kafka-acls.sh $*" >>"$FAKE_STATE/calls"
"""

# keng's programs, their SCRAM users (deploy/create-acls.sh's defaults) and their config files.
PROGRAM_USERS = {"keng-ingest": "keng-ingest", "keng-aggregate": "keng-aggregate",
                 "keng-replay": "keng-replay", "keng-registry": "keng-registry"}
SECURITY_KEYS = ("kafka.security.protocol", "kafka.sasl.", "kafka.ssl.")


def acl_table(env=None):
    """deploy/create-acls.sh --table as {(user, resource, name): set of operations}."""
    r = subprocess.run(["bash", path("deploy", "create-acls.sh"), "--table"],
                       env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                       timeout=30)
    kt.check_equal((r.returncode, r.stderr), (0, ""), "deploy/create-acls.sh --table")
    out = {}
    for line in r.stdout.splitlines():
        user, ops, resource, *names = line.split()
        for name in names:
            out.setdefault((user, resource, name), set()).update(ops.split(","))
    return out


def doc_acl_table():
    """The ACL table of docs/OPERATIONS.md, "A real cluster", in acl_table's form."""
    ops = read("docs", "OPERATIONS.md")
    start = ops.index("<!-- the ACL table:")
    out = {}
    for line in ops[start:].splitlines()[1:]:
        if not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in ("user", "") or set(cells[0]) <= {"-"}:
            continue
        names = re.sub(r"\(.*?\)", "", cells[3])
        for name in (n.strip() for n in names.split(",")):
            out.setdefault((cells[0], cells[2], name), set()).update(
                o.strip() for o in cells[1].split(","))
    return out


def test_acls_script_doc_and_compose():
    """deploy/create-acls.sh's table is docs/OPERATIONS.md's; the script grants exactly that
    (against a stand-in for kafka-acls.sh) and sets the SCRAM passwords with --users;
    docker-compose.yml's brokers authorize with it and keng logs in as the table's users."""
    table = acl_table()
    kt.check_equal(doc_acl_table(), table, "docs/OPERATIONS.md's ACL table against "
                   "deploy/create-acls.sh --table")
    # What keng-aggregate uses, which the doc once left out; and nothing on the cluster.
    for topic in ("antt.board-counts", "antt.alerts"):
        kt.check_equal(table.get(("keng-aggregate", "topic", topic)),
                       {"Read", "Write", "Describe"}, f"keng-aggregate's ACL on {topic}")
    kt.check_equal(sorted({k[0] for k in table}), sorted(PROGRAM_USERS.values()),
                   "the users of the table")
    kt.check_equal([k for k in table if k[0] != "keng-aggregate" and k[1] == "group"], [],
                   "group ACLs of users that join no group")
    kt.check_equal([k for k in table if k[0] == "keng-ingest" and "Read" in table[k] and
                    k[2] != "antt.registry"], [], "what keng-ingest's user may read")
    # The registry versions: keng-registry alone writes them, and no other user may.
    kt.check_equal(sorted(k[0] for k in table if k[2] == "antt.registry" and "Write" in table[k]),
                   ["keng-registry"], "the users that may write antt.registry")
    kt.check_equal(sorted(k[0] for k in table if k[2] == "antt.registry" and "Read" in table[k]),
                   ["keng-aggregate", "keng-ingest", "keng-registry", "keng-replay"],
                   "the users that may read antt.registry")
    kt.check_equal([k for k in table if k[0] == "keng-registry" and k[2] != "antt.registry"], [],
                   "keng-registry's user may touch nothing but antt.registry")
    kt.check_equal([k for k in table if k[0] == "keng-replay" and "Write" in table[k]], [],
                   "what keng-replay's user may write")
    kt.check(("keng-aggregate", "group", "g2") in acl_table({"KENG_GROUPS": "keng-aggregate g2"}),
             "KENG_GROUPS names every group", "g2", None)

    work = kt.Workdir()
    try:
        os.makedirs(work.file("bin"))
        os.makedirs(work.file("state"))
        os.makedirs(work.file("scram"))
        for name, text in (("kafka-acls.sh", FAKE_KAFKA_ACLS),
                           ("kafka-configs.sh", FAKE_KAFKA_CONFIGS)):
            with open(work.file(f"bin/{name}"), "w") as f:
                f.write(text)
            os.chmod(work.file(f"bin/{name}"), 0o755)
        env = dict(os.environ, KAFKA_BIN=work.file("bin"), FAKE_STATE=work.file("state"),
                   KENG_WAIT_SECONDS="5", KENG_ADMIN_CONFIG="/x/admin.properties",
                   KENG_SCRAM_DIR=work.file("scram"))

        def run(*args):
            open(work.file("state/calls"), "w").close()
            r = subprocess.run(["bash", path("deploy", "create-acls.sh")] + list(args), env=env,
                               capture_output=True, text=True, timeout=60)
            with open(work.file("state/calls")) as f:
                return r, [c.split() for c in f.read().splitlines()]

        r, calls = run()
        kt.check_equal(r.returncode, 0, f"create-acls.sh exit status ({r.stderr})")
        granted = {}
        for words in (c for c in calls if "--add" in c):
            kt.check(words[words.index("--command-config") + 1] == "/x/admin.properties",
                     "kafka-acls.sh gets KENG_ADMIN_CONFIG", "--command-config", words)
            user = words[words.index("--allow-principal") + 1]
            ops = {words[i + 1] for i, w in enumerate(words) if w == "--operation"}
            for i, w in enumerate(words):
                if w in ("--topic", "--group"):
                    key = (user.removeprefix("User:"), w[2:], words[i + 1])
                    granted.setdefault(key, set()).update(ops)
        kt.check_equal(granted, table, "the ACLs create-acls.sh asks kafka-acls.sh for")

        for user in PROGRAM_USERS.values():
            with open(work.file(f"scram/{user}"), "w") as f:
                f.write(f"{user.replace('-', '')}Passw0rd1234\n")
        r, calls = run("--users")
        kt.check_equal(r.returncode, 0, f"create-acls.sh --users exit status ({r.stderr})")
        users = sorted(c[c.index("--entity-name") + 1] for c in calls if "--alter" in c)
        kt.check_equal(users, sorted(PROGRAM_USERS.values()), "users whose password is set")
        kt.check(all("--add-acls" not in c and "SCRAM-SHA-512=[" in " ".join(c) for c in calls
                     if "--alter" in c), "SCRAM-SHA-512 credentials", True, calls)
        with open(work.file("scram/keng-replay"), "w") as f:
            f.write("short,pw]\n")
        r, _ = run("--users")
        kt.check(r.returncode != 0 and "letters and digits" in r.stderr,
                 "a password the tool's syntax cannot carry is refused", "an error",
                 (r.returncode, r.stderr))
    finally:
        work.cleanup()

    services = compose()["services"]
    init = services["kafka-init"]
    command = " ".join(init["command"])
    kt.check("create-acls.sh --users &&" in command and
             command.index("create-acls.sh --users") < command.index("create-topics.sh") <
             command.rindex("create-acls.sh"),
             "kafka-init sets the users, then the topics, then the ACLs", "in that order",
             command)
    kt.check(any(src.endswith("deploy/create-acls.sh") and ro
                 for src, ro in mounts(init).values()),
             "kafka-init mounts deploy/create-acls.sh read-only", True, init.get("volumes"))
    env = {k: interpolate(v) for k, v in init["environment"].items()}
    _, argv = keng_command(services["keng-aggregate"])
    kt.check_equal(env["KENG_GROUPS"], flag_value(argv, "--group"),
                   "kafka-init grants keng-aggregate's --group")
    for name in BROKERS:
        benv = {k: interpolate(v) for k, v in services[name]["environment"].items()}
        protocols = dict(p.split(":") for p in benv["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        kt.check("PLAINTEXT" not in protocols.values() and
                 "SASL_PLAINTEXT" not in protocols.values(),
                 f"{name}: every listener encrypted", "SSL or SASL_SSL", protocols)
        kt.check_equal(protocols["INTERNAL"], "SASL_SSL", f"{name}: keng's listener")
        kt.check_equal(benv["KAFKA_SASL_ENABLED_MECHANISMS"], "SCRAM-SHA-512", f"{name}: SASL")
        kt.check_equal(benv["KAFKA_AUTHORIZER_CLASS_NAME"],
                       "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                       f"{name}: the KRaft authorizer")
        kt.check_equal(benv["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"], "false",
                       f"{name}: nothing allowed without an ACL")
        supers = benv["KAFKA_SUPER_USERS"].split(";")
        kt.check(not any(u.removeprefix("User:") in PROGRAM_USERS.values() for u in supers),
                 f"{name}: no keng user is a super user", "certificates only", supers)
        for listener in ("CONTROLLER", "BROKER"):
            kt.check_equal(benv.get(f"KAFKA_LISTENER_NAME_{listener}_SSL_CLIENT_AUTH"),
                           "required", f"{name}: {listener} by client certificate")
        kt.check_equal(benv["KAFKA_INTER_BROKER_LISTENER_NAME"], "BROKER",
                       f"{name}: the brokers between themselves by certificate")
        kt.check(mounts(services[name]).get("/etc/kafka/jaas.conf", ("", False))[0]
                 .endswith("deploy/kafka/server-jaas.conf"), f"{name}: the JAAS file of deploy/",
                 True, services[name].get("volumes"))
    for name in ("keng-ingest", "keng-aggregate", "keng-registry"):
        conf = dict(conf_keys(f"{name}.conf"))
        kt.check_equal((conf.get("kafka.security.protocol"), conf.get("kafka.sasl.mechanisms"),
                        conf.get("kafka.sasl.username")),
                       ("SASL_SSL", "SCRAM-SHA-512", PROGRAM_USERS[name]),
                       f"deploy/{name}.conf logs in as its own user")
        m = mounts(services[name])
        password = m.get(conf["kafka.sasl.password_file"])
        kt.check(password and password[1] and password[0].endswith(f"/scram/{name}"),
                 f"{name}: its own password, read-only, at kafka.sasl.password_file",
                 f".../scram/{name}", password)
        ca = m.get(conf["kafka.ssl.ca.location"])
        kt.check(ca and ca[1] and ca[0].endswith("/ca.pem"), f"{name}: the cluster's CA",
                 ".../ca.pem", ca)


def without_security(text):
    """A config of deploy/ for a broker without TLS and SASL (the embedded one): its security
    keys removed, as its comment says to."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(SECURITY_KEYS)) + "\n"


def test_state_slots():
    """with-state-slot gives concurrent instances different state directories, keeps a slot
    held for as long as the program runs (across exec), and hands it back when it ends."""
    work = kt.Workdir()
    script = path("deploy", "with-state-slot.sh")
    base = work.file("state")
    procs = []

    def start(tag, hold=True):
        out = work.file(f"{tag}.out")
        prog = f'echo "$*" >"{out}"' + ("; exec sleep 60" if hold else "")
        p = subprocess.Popen(["bash", script, "sh", "-c", prog, "keng-aggregate", "--group", "g",
                              "--state-dir", base, "--listen", "0.0.0.0:8080"],
                             stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p, out

    def args_of(out):
        def ready():
            with open(out) as f:
                return f.read().strip()
        return kt.wait_until(lambda: os.path.exists(out) and ready(), 10, f"output in {out}")

    try:
        a, a_out = start("a")
        kt.check_equal(args_of(a_out), f"--group g --state-dir {base}/instance-1 --listen "
                       "0.0.0.0:8080", "first instance's arguments")
        b, b_out = start("b")
        kt.check_equal(args_of(b_out).split()[3], f"{base}/instance-2", "second instance's dir")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        c, c_out = start("c")
        kt.check_equal(args_of(c_out).split()[3], f"{base}/instance-1",
                       "a killed instance's slot is free again")

        env = dict(os.environ, KENG_STATE_SLOTS="2")
        full = subprocess.run(["bash", script, "true", "--state-dir", base], env=env,
                              capture_output=True, text=True, timeout=30)
        kt.check_equal(full.returncode, 75, "exit status with every slot held")
        kt.check("all 2 state slots" in full.stderr, "what it says", "all 2 state slots",
                 full.stderr)
        none = subprocess.run(["bash", script, "true"], capture_output=True, text=True,
                              timeout=30)
        kt.check_equal(none.returncode, 64, "exit status without --state-dir")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
            p.stderr.close()
        work.cleanup()


def test_shell_scripts():
    # deploy/'s scripts, and the real-Kafka ones that the tests and benchmarks drive (with
    # bench_lib.sh, which bench_kafka.sh, bench_replay.sh and bench_secure.sh source:
    # shellcheck follows it only when it is given too).
    scripts = sorted(glob.glob(path("deploy", "*.sh")) + glob.glob(path("scripts", "kafka-*.sh"))
                     + [path("scripts", n) for n in ("bench_kafka.sh", "bench_replay.sh",
                                                     "bench_secure.sh", "bench_lib.sh",
                                                     "schema-registry.sh")])
    for s in scripts:
        r = subprocess.run(["bash", "-n", s], capture_output=True, text=True)
        kt.check_equal((r.returncode, r.stderr), (0, ""), f"bash -n {os.path.relpath(s, SRC)}")
    if not shutil.which("shellcheck"):
        kt.log("shellcheck is not installed: the scripts were only parsed")
        return
    r = subprocess.run(["shellcheck"] + scripts, capture_output=True, text=True)
    kt.check_equal((r.returncode, r.stdout), (0, ""),
                   "shellcheck deploy/*.sh scripts/kafka-*.sh "
                   "scripts/bench_{kafka,replay,secure,lib}.sh scripts/schema-registry.sh")


# ---- deploy/systemd/ ----

SYSTEMD_HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                     "PrivateTmp=yes", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service",
                     "RestrictAddressFamilies=", "LimitNOFILE=", "User=keng",
                     "RestartPreventExitStatus=64 78")


def test_systemd_units():
    """Each unit passes `systemd-analyze verify` with not a word said (a value systemd cannot
    parse is only warned about, so any output fails), is hardened, and starts its program
    with flags the program has."""
    units = sorted(glob.glob(path("deploy", "systemd", "*.service")))
    kt.check_equal([os.path.basename(u) for u in units],
                   ["keng-aggregate.service", "keng-ingest.service"], "units in deploy/systemd/")
    flags = design_flags()
    work = kt.Workdir()
    try:
        for unit in units:
            text = open(unit, encoding="utf-8").read()
            for needed in SYSTEMD_HARDENING:
                kt.check(needed in text, f"{os.path.basename(unit)} has {needed.strip()}",
                         needed.strip(), "absent")
            start = re.search(r"^ExecStart=/usr/local/bin/(keng-[a-z]+) (.*)$", text, re.M)
            kt.check(start is not None, f"{os.path.basename(unit)}: ExecStart runs a keng "
                     "program from /usr/local/bin", "ExecStart=/usr/local/bin/keng-...", None)
            program = start.group(1)
            for flag in re.findall(r"(--[a-z][a-z-]*)", start.group(2)):
                kt.check(flags.get(flag, "?") in (None, program),
                         f"{program} takes {flag} (docs/DESIGN.md's flag table)", program,
                         flags.get(flag))
            if program == "keng-aggregate":
                kt.check("StateDirectory=keng-aggregate" in text and
                         "--state-dir /var/lib/keng-aggregate" in text,
                         "keng-aggregate's state dir is systemd's StateDirectory", True, False)
            # Both take SIGHUP (keng-ingest: tokens and certificate; keng-aggregate: the
            # certificate), and neither stops on it.
            kt.check("ExecReload=/bin/kill -HUP $MAINPID" in text,
                     f"{program}: systemctl reload sends SIGHUP", "ExecReload", text[:200])
            local = os.path.join(work.path, os.path.basename(unit))
            with open(local, "w") as f:
                f.write(text.replace("/usr/local/bin/", kt.BIN_DIR + "/"))
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", local],
                               capture_output=True, text=True, timeout=60)
            kt.check_equal((r.returncode, r.stdout + r.stderr), (0, ""),
                           f"systemd-analyze verify {os.path.basename(unit)}")
        kt.check(os.path.exists(path("deploy", "systemd", "keng.conf")),
                 "deploy/systemd/keng.conf, the sysusers.d line of the keng user", True, False)
    finally:
        work.cleanup()


# ---- deploy/alertmanager.yml's routes by commune ----

AM_ROUTES = os.path.join(SRC, "tools", "registry", "alertmanager_routes.py")
REGISTRY_2025 = os.path.join(SRC, "registry", "nghe-an-2025-07-01.csv")


def am_routes(*args):
    return subprocess.run([sys.executable, AM_ROUTES, *args], capture_output=True, text=True,
                          timeout=60)


def test_alertmanager_routes_follow_the_registry():
    """deploy/alertmanager.yml's commune routes and receivers are what
    tools/registry/alertmanager_routes.py writes from the 2025 registry, so they cannot drift
    from it; the script sees a drift, follows a new commune, and takes a mapping of receivers
    that amtool accepts."""
    am = os.path.join(SRC, "deploy", "alertmanager.yml")
    out = am_routes(REGISTRY_2025, "--check", am)
    kt.check_equal(out.returncode, 0, "deploy/alertmanager.yml's blocks are the script's "
                   f"(write them again with --update): {out.stdout[-1500:]}{out.stderr}")
    text = read("deploy", "alertmanager.yml")
    with open(REGISTRY_2025, encoding="utf-8") as f:
        communes = sorted({r["commune_id"] for r in
                           csv.DictReader(line for line in f if not line.startswith("#"))})
    block = text[text.index("# BEGIN commune routes"):text.index("# END commune routes")]
    kt.check_equal(re.findall(r"commune_id=\"([^\"]+)\"", block), communes,
                   "one route per commune of the registry, in the order of their ids")
    printed = am_routes(REGISTRY_2025)
    kt.check_equal(printed.returncode, 0, f"routes to stdout ({printed.stderr})")
    def routes_only(text):
        return [line for line in text.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    kt.check_equal(routes_only(printed.stdout), routes_only(block),
                   "the routes printed are the file's")

    work = kt.Workdir(prefix="keng-am-routes-")
    try:
        copy = work.file("alertmanager.yml")
        # A route dropped by hand is a drift.
        with open(copy, "w", encoding="utf-8") as f:
            f.write(text.replace("    - receiver: commune-16690  # Phường Trường Vinh\n"
                                 "      matchers: ['commune_id=\"16690\"']\n", "", 1))
        out = am_routes(REGISTRY_2025, "--check", copy)
        kt.check_equal(out.returncode, 1, f"a dropped route is seen ({out.stderr})")
        kt.check("+      matchers: ['commune_id=\"16690\"']" in out.stdout,
                 "the diff shows the route", "commune 16690", out.stdout[-800:])
        # A registry with one commune more: --update adds its route and receiver.
        bigger = work.file("registry.csv")
        with open(REGISTRY_2025, encoding="utf-8") as f:
            reg = f.read()
        with open(bigger, "w", encoding="utf-8") as f:
            f.write(reg + "X-NEW-B01,Khối Mới,X-NEW,Xã Thử,,,1,1\n")
        out = am_routes(bigger, "--update", copy)
        kt.check_equal(out.returncode, 0, f"--update ({out.stderr})")
        with open(copy, encoding="utf-8") as f:
            updated = f.read()
        kt.check("    - receiver: commune-X-NEW  # Xã Thử\n" in updated and
                 "  - name: commune-X-NEW\n" in updated and
                 "      matchers: ['commune_id=\"16690\"']" in updated,
                 "--update writes every route and receiver again", "X-NEW and 16690",
                 updated[:3000])
        kt.check_equal(am_routes(bigger, "--check", copy).returncode, 0, "--check after --update")
        # A mapping: every commune to a receiver the file defines.
        mapping = work.file("map.csv")
        with open(mapping, "w", encoding="utf-8") as f:
            f.write("# test\ncommune_id,receiver\n" + "".join(
                f"{c},{'operations' if c == '16681' else 'province'}\n" for c in communes))
        with open(copy, "w", encoding="utf-8") as f:
            f.write(text)
        out = am_routes(REGISTRY_2025, "--map", mapping, "--update", copy)
        kt.check_equal(out.returncode, 0, f"--map --update ({out.stderr})")
        with open(copy, encoding="utf-8") as f:
            mapped = f.read()
        routes = mapped[mapped.index("# BEGIN commune routes"):mapped.index("# END commune routes")]
        kt.check_equal((routes.count("- receiver: province  #"),
                        routes.count("- receiver: operations  # Phường Thành Vinh")),
                       (len(communes) - 1, 1), "the mapping's receivers")
        if shutil.which("amtool"):
            r = subprocess.run(["amtool", "check-config", copy], capture_output=True, text=True,
                               timeout=60)
            kt.check_equal(r.returncode, 0, f"amtool check-config of the mapped file "
                           f"({r.stdout[-500:]}{r.stderr[-500:]})")
        # Refusals, naming the file and line.
        with open(mapping, "a", encoding="utf-8") as f:
            f.write("99999,province\n")
        out = am_routes(REGISTRY_2025, "--map", mapping)
        kt.check_equal((out.returncode, f"map.csv:{len(communes) + 3}: commune '99999' is not in "
                        "the registry" in out.stderr), (2, True), f"a stray commune ({out.stderr})")
        with open(mapping, "w", encoding="utf-8") as f:
            f.write("commune_id,receiver\n16681,province\n")
        out = am_routes(REGISTRY_2025, "--map", mapping)
        kt.check_equal((out.returncode, f"no receiver for {len(communes) - 1} commune(s)" in
                        out.stderr), (2, True), f"a commune without receiver ({out.stderr})")
    finally:
        work.cleanup()


# ---- docs/OPERATIONS.md ----

def test_operations_doc():
    ops = read("docs", "OPERATIONS.md")
    for metric in ("keng_ingest_requests_total", "keng_ingest_delivery_seconds",
                   "keng_ingest_producer_queue_depth", "keng_consumer_lag",
                   "keng_events_counted_total", "keng_duplicates_dropped_total",
                   "keng_deadletter_total", "keng_checkpoint_seconds"):
        kt.check(metric in ops, "metric explained in docs/OPERATIONS.md", metric, "absent")
    for name in compose()["services"]:
        kt.check(name in ops, "service explained in docs/OPERATIONS.md", name, "absent")
    for heading in ("## What was checked", "## Recovery"):
        kt.check(heading in ops, "section of docs/OPERATIONS.md", heading, "absent")
    flags = design_flags()
    # Flags of single programs that the table leaves out, and which the doc uses.
    extra = {"--new-token", "--districts", "--check", "--write", "--help", "--version"}
    for block in re.findall(r"```(?:sh|console)?\n(.*?)```", ops, re.S):
        for line in block.splitlines():
            starts = [m.end() for m in re.finditer(r"\bkeng-[a-z]+\b(?![=.-])", line)]
            if not starts:
                continue
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line[starts[-1]:]):
                kt.check(flag in flags or flag in extra,
                         "flag of a keng program in docs/OPERATIONS.md is documented", flag,
                         line.strip())


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(__file__))
    kt.main([test_systemd_units, test_compose_kafka_cluster, test_compose_keng_services,
             test_acls_script_doc_and_compose,
             test_compose_flags_are_in_design, test_compose_commands_run,
             test_dockerfile_packages_match_install_deps,
             test_dockerignore, test_config_keys_documented_and_accepted, test_tokens_example,
             test_create_topics_script, test_compose_registry_service, test_state_slots,
             test_shell_scripts, test_alertmanager_routes_follow_the_registry,
             test_operations_doc])
