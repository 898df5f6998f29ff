"""scripts/schema-registry.sh: `up DIR` starts a real Confluent-compatible registry on
127.0.0.1 with BACKWARD as its global compatibility (the registry's own default is NONE) and
writes DIR/url; `kill` and `start` take it away and bring it back on the same port; `down`
stops it and is safe twice; a test that dies leaves no registry behind (owner watchdog)."""

import os
import signal
import subprocess
import sys
import time

import kengtest as kt
import registrylib as rl


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def pid_in(d):
    with open(os.path.join(d, "registry.pid")) as f:
        return int(f.read())


def test_up_kill_start_down():
    work = kt.Workdir(prefix="keng-schema-registry-")
    reg = None
    try:
        reg = rl.Registry(work)
        kt.check(reg.url.startswith("http://127.0.0.1:"), "DIR/url on 127.0.0.1",
                 "http://127.0.0.1:…", reg.url)
        kt.check(reg.url.endswith("/apis/ccompat/v7"), "DIR/url is the Confluent API", "…/apis/ccompat/v7",
                 reg.url)
        kt.check_equal(reg.compatibility(), "BACKWARD", "global compatibility after up")
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        pid = pid_in(reg.dir)
        mine = [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()
                if f"pid={pid}," in line]
        kt.check(mine and all(a in ("127.0.0.1", "[::ffff:127.0.0.1]") for a in mine),
                 "the registry listens on 127.0.0.1 only", "127.0.0.1", mine)

        reg.kill()
        kt.check(not alive(pid), "the registry is gone after kill", False, True)
        status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "2", reg.url + "/config"],
                                capture_output=True).returncode
        kt.check(status != 0, "nothing answers after kill", "no answer", status)
        reg.start()
        kt.check_equal(reg.compatibility(), "BACKWARD", "global compatibility after start")
        pid = pid_in(reg.dir)
        reg.down()
        kt.check(not alive(pid), "the registry is gone after down", False, True)
        out = subprocess.run([rl.SCRIPT, "down", reg.dir], capture_output=True, timeout=60)
        kt.check_equal(out.returncode, 0, "a second down")
    finally:
        if reg is not None:
            reg.down()
        work.cleanup()


def test_owner_watchdog():
    """A registry started for a process that dies stops by itself within seconds."""
    work = kt.Workdir(prefix="keng-schema-registry-owner-")
    d = work.file("registry")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        out = subprocess.run([rl.SCRIPT, "up", d], capture_output=True, timeout=600,
                             env=dict(os.environ, KENG_REGISTRY_OWNER_PID=str(owner.pid),
                                      KENG_REGISTRY_PORT=str(kt.free_port())))
        kt.check_equal(out.returncode, 0, f"up exit status ({out.stderr[-1500:]!r})")
        pid = pid_in(d)
        kt.check(alive(pid), "the registry runs while its owner lives", True, False)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        kt.wait_until(lambda: not alive(pid), 30, "the registry to stop after its owner died")
    finally:
        owner.kill()
        owner.wait(10)
        subprocess.run([rl.SCRIPT, "down", d], capture_output=True, timeout=60)
        work.cleanup()


def test_no_network_fails_in_one_line():
    """A version Maven Central does not have (as good as no network) fails at once with one
    clear line, and leaves nothing running."""
    work = kt.Workdir(prefix="keng-schema-registry-fail-")
    try:
        out = subprocess.run([rl.SCRIPT, "up", work.file("registry")], capture_output=True,
                             text=True, timeout=600,
                             env=dict(os.environ, KENG_REGISTRY_VERSION="0.0.0-keng-none",
                                      KENG_REGISTRY_CACHE=work.file("cache"),
                                      KENG_M2_REPOSITORY=work.file("m2")))
        kt.check_equal(out.returncode, 1, "exit status without the registry's jars")
        last = out.stderr.strip().splitlines()[-1]
        kt.check("cannot fetch io.apicurio:apicurio-registry-app:0.0.0-keng-none" in last,
                 "the last line names what could not be fetched", "cannot fetch …", last)
    finally:
        work.cleanup()


if __name__ == "__main__":
    if rl.skipped("test_schema_registry_script"):
        sys.exit(0)
    kt.main([test_up_kill_start_down, test_owner_watchdog, test_no_network_fails_in_one_line])
