"""Exit codes mean the same in every program (docs/DESIGN.md, "Exit codes"), and every
program's --help points there: a registry that does not load is a configuration error (78)
wherever it happens, a program that cannot do its job without a broker refuses to start (78)
instead of warning and running, and an argument the program does not take is a usage error
(64). No broker is needed: every case stops before Kafka."""

import os
import socket
import subprocess

import kengtest as kt

# Each program, with the arguments that take it as far as loading its registry.
REGISTRY_USERS = {
    "keng-ingest": ["--listen", "127.0.0.1:0"],
    "keng-aggregate": ["--listen", "127.0.0.1:0", "--state-dir", "state"],
    "keng-produce": ["--dry-run", "-"],
    "keng-simulate": ["--output", "ndjson", "--count", "1"],
    "keng-replay": ["--year", "2025", "--out", "review-out"],
}
EVERY_PROGRAM = sorted(list(REGISTRY_USERS) + ["keng-broker", "keng-registry", "keng-avro",
                                                "keng-demo", "keng-schemas"])


def run(wd, args, env=None):
    r = subprocess.run([kt.binary(args[0])] + args[1:], capture_output=True, timeout=30,
                       cwd=wd.path, stdin=subprocess.DEVNULL,
                       env=env if env is not None else {"KENG_BROKERS": "127.0.0.1:1"})
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_registry_that_does_not_load_is_78_everywhere():
    wd = kt.Workdir()
    try:
        bad = wd.file("boards.csv")
        with open(bad, "w") as f:
            f.write("this is not a registry\n")
        for program, args in REGISTRY_USERS.items():
            for path, what in ((bad, "a malformed registry"), (wd.file("absent.csv"),
                                                                 "a registry that is absent")):
                rc, _, err = run(wd, [program, "--registry", path] + args)
                kt.check_equal(rc, 78, f"{program} exit status for {what} ({err.strip()[-300:]})")
        rc, _, err = run(wd, ["keng-registry", "--check", bad])
        kt.check_equal(rc, 78, f"keng-registry --check exit status for a malformed registry "
                               f"({err.strip()[-300:]})")
    finally:
        wd.cleanup()


def test_no_broker_refuses_to_start():
    wd = kt.Workdir()
    try:
        for program in ("keng-ingest", "keng-aggregate", "keng-replay"):
            rc, _, err = run(wd, [program] + REGISTRY_USERS[program], env={})
            kt.check_equal(rc, 78, f"{program} exit status without any bootstrap servers "
                                   f"({err.strip()[-300:]})")
            for way in ("--brokers", "KENG_BROKERS", "kafka.bootstrap.servers"):
                kt.check(way in err, f"{program} names {way} as a way to set the brokers",
                         way, err.strip()[-300:])
    finally:
        wd.cleanup()


def test_kafka_setting_librdkafka_refuses_is_78():
    wd = kt.Workdir()
    try:
        cfg = wd.file("bogus.conf")
        with open(cfg, "w") as f:
            f.write("kafka.bogus.property=1\n")
        for program in ("keng-ingest", "keng-aggregate"):
            rc, _, err = run(wd, [program, "--config", cfg] + REGISTRY_USERS[program])
            kt.check_equal(rc, 78, f"{program} exit status for a kafka.* key librdkafka refuses "
                                   f"({err.strip()[-300:]})")
            kt.check("bogus.property" in err, f"{program} names the setting", "bogus.property",
                     err.strip()[-300:])
    finally:
        wd.cleanup()


def test_check_config_starts_nothing():
    """--check-config on the two servers: a config that loads exits 0 and says so, without
    listening or touching the state dir; each kind of problem gets its exit code."""
    wd = kt.Workdir()
    try:
        tokens = wd.file("tokens")
        subprocess.run([kt.binary("keng-ingest"), "--new-token", "gw", "--districts", "*",
                        "--tokens", tokens], capture_output=True, timeout=10, check=True)
        bad_registry = wd.file("bad.csv")
        with open(bad_registry, "w") as f:
            f.write("not a registry\n")
        cases = [("", [], 0), ("bogus.key=1\n", [], 64), ("kafka.bogus.property=1\n", [], 78),
                 ("", ["--registry", bad_registry], 78),
                 (f"schemas.dir={wd.file('no-schemas')}\n", [], 78)]
        for program in ("keng-ingest", "keng-aggregate"):
            for i, (text, extra, expected) in enumerate(cases):
                cfg = wd.file(f"{program}-{i}.conf")
                with open(cfg, "w") as f:
                    f.write(text)
                port = kt.free_port()
                state = wd.file(f"state-{program}-{i}")
                args = {"keng-ingest": ["--tokens", tokens],
                        "keng-aggregate": ["--state-dir", state]}[program]
                rc, _, err = run(wd, [program, "--check-config", "--config", cfg, "--listen",
                                      f"127.0.0.1:{port}"] + args + extra)
                what = text.strip() or " ".join(extra) or "a good config"
                kt.check_equal(rc, expected, f"{program} --check-config with {what} "
                                             f"({err.strip()[-300:]})")
                if expected == 0:
                    kt.check("nothing was started" in err, f"{program} says the config loads",
                             "nothing was started", err.strip()[-300:])
                kt.check(not os.path.exists(state), f"{program} --check-config leaves no state "
                         "dir", "none", state)
    finally:
        wd.cleanup()


def test_check_config_on_the_command_line_programs():
    """--check-config on keng-produce, keng-simulate and keng-replay: a config that loads exits
    0 and says so without contacting the broker, reading an input file or writing the review;
    an unknown key is 64 and a registry that does not load 78, each naming file and line."""
    wd = kt.Workdir()
    # A broker address that listens but never accepts: a client that tried to connect would
    # leave its connection queued here (and wait for an answer that never comes).
    broker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        broker.bind(("127.0.0.1", 0))
        broker.listen(16)
        bootstrap = f"127.0.0.1:{broker.getsockname()[1]}"
        bad_registry = wd.file("bad-boards.csv")
        with open(bad_registry, "w") as f:
            f.write("board_id,board_name,commune_id,commune_name,district_id,district_name,"
                    "groups,members\n"
                    "B1,Board,C1,Commune,D01,District,1,many\n")
        # Read, this file would fail the import (exit 1) and its summary would say "read 1".
        events = wd.file("events.ndjson")
        with open(events, "w") as f:
            f.write("not json\n")
        review = wd.file("review-out")
        programs = {
            "keng-produce": [events],
            "keng-simulate": ["--count", "1"],
            "keng-replay": ["--year", "2025", "--out", review],
        }
        cases = [("", [], 0), ("# a comment\nbogus.key=1\n", [], 64),
                 ("kafka.bogus.property=1\n", [], 78), ("", ["--registry", bad_registry], 78)]
        for program, args in programs.items():
            for i, (text, extra, expected) in enumerate(cases):
                cfg = wd.file(f"{program}-{i}.conf")
                with open(cfg, "w") as f:
                    f.write(text)
                rc, out, err = run(wd, [program, "--check-config", "--config", cfg, "--brokers",
                                        bootstrap] + args + extra)
                what = text.strip().replace("\n", " ") or " ".join(extra) or "a good config"
                tail = err.strip()[-300:]
                kt.check_equal(rc, expected, f"{program} --check-config with {what} ({tail})")
                if expected == 0:
                    kt.check("nothing was started" in err, f"{program} says the config loads",
                             "nothing was started", tail)
                if "bogus.key" in text:
                    kt.check(f"{cfg}:2:" in err, f"{program} names the unknown key's line",
                             f"{cfg}:2:", tail)
                if extra:
                    kt.check(bad_registry in err and "line 2" in err,
                             f"{program} names the registry's file and line",
                             f"{bad_registry}: line 2", tail)
                kt.check_equal(out, "", f"{program} --check-config writes nothing on stdout")
                kt.check("keng-produce: read" not in err, f"{program} --check-config reads no "
                         "input", "no import summary", tail)
                kt.check(not os.path.exists(review), f"{program} --check-config writes no "
                         "review", "none", review)
                broker.setblocking(False)
                try:
                    conn, _ = broker.accept()
                    conn.close()
                    contacted = True
                except BlockingIOError:
                    contacted = False
                kt.check(not contacted, f"{program} --check-config with {what} contacts no "
                         "broker", "no connection", "a connection")
        # keng-produce needs no file to check its config.
        rc, _, err = run(wd, ["keng-produce", "--check-config", "--brokers", bootstrap])
        kt.check_equal(rc, 0, f"keng-produce --check-config without a file ({err.strip()[-300:]})")
    finally:
        broker.close()
        wd.cleanup()


def test_help_points_to_the_exit_codes():
    wd = kt.Workdir()
    try:
        for program in EVERY_PROGRAM:
            rc, out, err = run(wd, [program, "--help"])
            kt.check_equal(rc, 0, f"{program} --help exit status")
            kt.check("docs/DESIGN.md, \"Exit codes\"" in out, f"{program} --help points to the "
                     "exit codes", 'docs/DESIGN.md, "Exit codes"', out.strip()[-300:])
    finally:
        wd.cleanup()


def test_unknown_flag_is_64_everywhere():
    wd = kt.Workdir()
    try:
        for program in EVERY_PROGRAM:
            rc, _, err = run(wd, [program, "--no-such-flag"])
            kt.check_equal(rc, 64, f"{program} exit status for an unknown flag ({err.strip()[-200:]})")
        for args in (["keng-avro", "recode"], ["keng-avro", "encode"], ["keng-avro"]):
            rc, _, err = run(wd, args)
            kt.check_equal(rc, 64, f"{' '.join(args)} exit status ({err.strip()[-200:]})")
    finally:
        wd.cleanup()


def test_registry_file_without_a_flag_is_a_usage_error():
    # `keng-registry FILE` used to print the built-in registry's counts and exit 0, so an
    # operator believed FILE valid.
    wd = kt.Workdir()
    try:
        rc, out, err = run(wd, ["keng-registry", wd.file("boards.csv")])
        kt.check_equal(rc, 64, "keng-registry FILE (no --check) exit status")
        kt.check("--check" in err, "the error says to use --check", "--check", err.strip())
        kt.check_equal(out, "", "nothing on stdout")
    finally:
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_registry_that_does_not_load_is_78_everywhere, test_no_broker_refuses_to_start,
             test_kafka_setting_librdkafka_refuses_is_78, test_check_config_starts_nothing,
             test_check_config_on_the_command_line_programs,
             test_help_points_to_the_exit_codes, test_unknown_flag_is_64_everywhere,
             test_registry_file_without_a_flag_is_a_usage_error])
