"""keng-schemas against a real Confluent-compatible registry: `register` puts the manifest's
schemas under the topics' subjects in order, with the manifest's ids on a fresh registry, and
sets BACKWARD on keng's subjects; `ids` reads them back; on a registry that already holds
other schemas the ids differ, which it says (and --require-manifest-ids fails on); `check`
is the CI gate for schemas/: a compatible new version passes, an incompatible one is refused
naming the subject and the field, and `register` of a folder holding it is refused by the
registry itself. Several --url fail over; a registry that is down is exit 69."""

import json
import os
import shutil
import subprocess
import sys

import kengtest as kt
import registrylib as rl

SUBJECTS = ["antt.incidents-value", "antt.mediations-value", "antt.alerts-value"]


def schemas(*args, timeout=60):
    r = subprocess.run([kt.binary("keng-schemas")] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def lines(out):
    return [dict(kv.split("=", 1) for kv in line.split()) for line in out.splitlines()
            if line.startswith("subject=") and " id=" in line]


def incident_v2():
    with open(os.path.join(kt.SCHEMA_DIR, "incident.v2.avsc")) as f:
        return json.load(f)


def write_schema(work, name, schema):
    path = work.file(name)
    with open(path, "w") as f:
        json.dump(schema, f)
    return path


def test_register_ids_check():
    work = kt.Workdir(prefix="keng-schemas-")
    reg = None
    try:
        reg = rl.Registry(work)
        dead = f"http://127.0.0.1:{kt.free_port()}/apis/ccompat/v7"
        # The first URL is down: every call fails over to the second.
        rc, out, err = schemas("--url", dead, "--url", reg.url, "register")
        kt.check_equal(rc, 0, f"register exit status ({err})")
        got = [(r["subject"], int(r["id"]), int(r["manifest_id"])) for r in lines(out)]
        kt.check_equal(got, [("antt.incidents-value", 1, 1), ("antt.mediations-value", 2, 2),
                             ("antt.alerts-value", 3, 3), ("antt.incidents-value", 4, 4)],
                       "subjects and ids registered (a fresh registry gives the manifest's ids)")
        for subject in SUBJECTS:
            kt.check_equal(reg.compatibility(subject), "BACKWARD", f"compatibility of {subject}")
        kt.check_equal(reg.versions("antt.incidents-value"), [1, 2], "versions of incidents")
        with open(os.path.join(kt.SCHEMA_DIR, "incident.v1.avsc")) as f:
            kt.check_equal(json.loads(reg.schema_text(1)), json.loads(f.read()),
                           "the registry's id 1 is Incident v1")

        rc, out, err = schemas("--url", reg.url, "ids")
        kt.check_equal(rc, 0, f"ids exit status ({err})")
        kt.check_equal([int(r["id"]) for r in lines(out)], [1, 2, 3, 4], "ids read back")
        rc, out, err = schemas("--url", reg.url, "register")
        kt.check_equal((rc, [int(r["id"]) for r in lines(out)]), (0, [1, 2, 3, 4]),
                       "register a second time: the same ids")

        # The CI gate: v3 with an optional field may follow; one with a required field may not.
        v3 = incident_v2()
        v3["fields"].append({"name": "reviewed_by", "type": ["null", "string"], "default": None})
        ok = write_schema(work, "incident.v3.avsc", v3)
        rc, out, err = schemas("--url", reg.url, "check", ok)
        kt.check_equal((rc, "compatible=true" in out), (0, True), f"check of a compatible v3 ({err})")
        bad = incident_v2()
        bad["fields"].append({"name": "patrol_leader", "type": "string"})
        bad_path = write_schema(work, "incident.v3-bad.avsc", bad)
        rc, out, err = schemas("--url", reg.url, "check", ok, bad_path)
        kt.check_equal(rc, 3, f"check exit status for an incompatible v3 ({err})")
        kt.check("antt.incidents-value" in err and "patrol_leader" in err,
                 "the refusal names the subject and the field", "antt.incidents-value, patrol_leader",
                 err)

        # register of a schemas/ folder that holds it: the registry refuses (BACKWARD).
        folder = work.file("schemas")
        shutil.copytree(kt.SCHEMA_DIR, folder)
        shutil.copy(bad_path, os.path.join(folder, "incident.v3.avsc"))
        with open(os.path.join(folder, "manifest.csv"), "a") as f:
            f.write("5,vn.antt.Incident,3,incident.v3.avsc\n")
        rc, out, err = schemas("--url", reg.url, "--schemas", folder, "register")
        kt.check_equal(rc, 3, f"register of an incompatible v3: exit status ({err})")
        kt.check("antt.incidents-value refused vn.antt.Incident v3" in err,
                 "the refusal names the subject and the version", "antt.incidents-value refused …",
                 err)
        kt.check_equal(reg.versions("antt.incidents-value"), [1, 2],
                       "versions of incidents after the refusal")

        # Down: 69, naming the URL tried.
        rc, _, err = schemas("--url", dead, "ids")
        kt.check_equal(rc, 69, f"ids with no registry answering: exit status ({err})")
        kt.check("127.0.0.1" in err, "the line names the registry", "127.0.0.1…", err)
    finally:
        if reg is not None:
            reg.down()
        work.cleanup()


def test_ids_differ_on_a_shared_registry():
    """A registry that already holds another team's schema gives other ids: register says
    so, and --require-manifest-ids makes it a failure."""
    work = kt.Workdir(prefix="keng-schemas-shared-")
    reg = None
    try:
        reg = rl.Registry(work)
        other = {"type": "record", "name": "Other", "namespace": "org.example",
                 "fields": [{"name": "x", "type": "int"}]}
        reg.register("other-value", json.dumps(other))
        rc, out, err = schemas("--url", reg.url, "--require-manifest-ids", "register")
        kt.check_equal(rc, 1, f"register --require-manifest-ids exit status ({err})")
        ids = [(int(r["id"]), int(r["manifest_id"])) for r in lines(out)]
        kt.check(all(i != m for i, m in ids), "the registry's ids differ from the manifest's",
                 "all different", ids)
        kt.check("the manifest's" in err, "register says the ids differ", "…the manifest's…", err)
        rc, out, _ = schemas("--url", reg.url, "ids")
        kt.check_equal((rc, [int(r["id"]) for r in lines(out)]), (0, [i for i, _ in ids]),
                       "ids reads the registry's ids")
    finally:
        if reg is not None:
            reg.down()
        work.cleanup()


def test_usage_and_config_errors():
    work = kt.Workdir(prefix="keng-schemas-usage-")
    try:
        url = "http://127.0.0.1:1/apis/ccompat/v7"
        kt.check_equal(schemas("register")[0], 64, "register without --url")
        kt.check_equal(schemas("--url", url, "frob")[0], 64, "an unknown command")
        kt.check_equal(schemas("--url", url, "check")[0], 64, "check without a file")
        kt.check_equal(schemas("--url", "ftp://x/", "ids")[0], 78, "an ftp:// URL")
        kt.check_equal(schemas("--url", url, "--ca-file", work.file("none.pem"), "ids")[0], 78,
                       "a CA file that does not exist")
        auth = work.file("auth")
        with open(auth, "w") as f:
            f.write("no colon here\n")
        os.chmod(auth, 0o600)
        rc, _, err = schemas("--url", url, "--basic-auth-file", auth, "ids")
        kt.check_equal(rc, 78, f"an auth file without USER:PASSWORD ({err})")
        kt.check("no colon here" not in err, "the auth file's line is never shown", "not shown",
                 err)
        with open(auth, "w") as f:
            f.write("keng:s3cret-pass\n")
        rc, _, err = schemas("--url", url, "--basic-auth-file", auth, "ids")
        kt.check_equal(rc, 69, f"with auth, no registry ({err})")
        kt.check("s3cret-pass" not in err, "the password is never shown", "not shown", err)
    finally:
        work.cleanup()


def test_basic_auth_and_tls():
    """Through an HTTPS front that wants basic auth: keng-schemas with --ca-file and
    --basic-auth-file registers; without the CA it cannot reach the registry (69), with a
    wrong password the registry refuses (1, the 401 named); keng-ingest with
    schema.registry.ca_file and basic_auth.* gets its ids (its loop client sends both)."""
    work = kt.Workdir(prefix="keng-schemas-auth-")
    reg = proxy = ingest = broker = None
    try:
        reg = rl.Registry(work)
        proxy = rl.AuthProxy(work, reg, "keng", "s3cret-pass")
        auth = work.file("auth")
        with open(auth, "w") as f:
            f.write("keng:s3cret-pass\n")
        os.chmod(auth, 0o600)
        rc, out, err = schemas("--url", proxy.url, "--ca-file", proxy.ca_file,
                               "--basic-auth-file", auth, "register")
        kt.check_equal(rc, 0, f"register through HTTPS with basic auth ({err})")
        kt.check_equal([int(r["id"]) for r in lines(out)], [1, 2, 3, 4], "ids")
        kt.check(all(ok for _, _, ok in proxy.seen), "every request carried the credentials",
                 "all authorized", proxy.seen[:3])
        rc, _, err = schemas("--url", proxy.url, "--basic-auth-file", auth, "ids")
        kt.check_equal(rc, 69, f"without the CA file ({err})")
        with open(auth, "w") as f:
            f.write("keng:wrong\n")
        rc, _, err = schemas("--url", proxy.url, "--ca-file", proxy.ca_file,
                             "--basic-auth-file", auth, "ids")
        kt.check_equal(rc, 1, f"a wrong password ({err})")
        kt.check("401" in err and "wrong" not in err, "the 401 is named, the password is not",
                 "401", err)

        import faultlib as fl
        broker = kt.Broker(work, partitions=1)
        secret = work.file("password")
        with open(secret, "w") as f:
            f.write("s3cret-pass\n")
        os.chmod(secret, 0o600)
        seen_before = len(proxy.seen)
        ingest = fl.Ingest(work, broker.bootstrap, config=(
            f"schema.registry.url={proxy.url}\nschema.registry.ca_file={proxy.ca_file}\n"
            "schema.registry.basic_auth.username=keng\n"
            f"schema.registry.basic_auth.password_file={secret}\n")).start()
        kt.wait_until(lambda: kt.http("GET", ingest.url("/readyz"))[0] == 200, 30,
                      "keng-ingest ready through HTTPS with basic auth")
        kt.check(len(proxy.seen) > seen_before and all(ok for _, _, ok in
                                                       proxy.seen[seen_before:]),
                 "keng-ingest's requests carried the credentials", "authorized",
                 proxy.seen[seen_before:])
        ingest.stop()
        ingest = None
    finally:
        if ingest is not None and ingest.process is not None:
            print(ingest.process.log_tail())
            ingest.process.kill()
        if broker is not None:
            broker.stop()
        if proxy is not None:
            proxy.stop()
        if reg is not None:
            reg.down()
        work.cleanup()


if __name__ == "__main__":
    if rl.skipped("test_keng_schemas"):
        sys.exit(0)
    kt.main([test_register_ids_check, test_ids_differ_on_a_shared_registry,
             test_usage_and_config_errors, test_basic_auth_and_tls])
