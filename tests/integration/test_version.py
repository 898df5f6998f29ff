"""--version names the release and the commit, the same in every program, from the one place
the version is kept (the project() line of CMakeLists.txt, with its pre-release label); and
CHANGELOG.md has the section that version's changes are written in."""

import os
import re
import subprocess

import kengtest as kt

PROGRAMS = ["keng-aggregate", "keng-avro", "keng-broker", "keng-ingest", "keng-produce",
            "keng-registry", "keng-replay", "keng-schemas", "keng-simulate", "keng-demo"]


def source_version():
    with open(os.path.join(kt.SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
        text = f.read()
    version = re.search(r"^project\(keng VERSION (\d+\.\d+\.\d+)", text, re.M)
    kt.check(version is not None, "project(keng VERSION x.y.z) in CMakeLists.txt", "found", None)
    label = re.search(r'^set\(KENG_PRERELEASE "([^"]*)"', text, re.M)
    kt.check(label is not None, "KENG_PRERELEASE in CMakeLists.txt", "found", None)
    return version.group(1), label.group(1)


def head_commit():
    r = subprocess.run(["git", "-C", kt.SOURCE_DIR, "rev-parse", "--short=12", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_version_names_release_and_commit():
    version, label = source_version()
    expected = version + (f"-{label}" if label else "")
    commit = head_commit()
    for program in PROGRAMS:
        r = subprocess.run([kt.binary(program), "--version"], capture_output=True, text=True,
                           timeout=30)
        kt.check_equal(r.returncode, 0, f"{program} --version exit status")
        line = r.stdout.strip()
        kt.check(line.startswith(f"{program} {expected} (commit "), f"{program} --version",
                 f"{program} {expected} (commit ...", line)
        if commit:
            # The build may be of a tree with uncommitted changes: "<commit>-dirty".
            kt.check(f"(commit {commit}" in line, f"{program} --version names HEAD (is the "
                     "build older than HEAD? build again)", commit, line)


def test_changelog_has_the_version():
    version, label = source_version()
    with open(os.path.join(kt.SOURCE_DIR, "CHANGELOG.md"), encoding="utf-8") as f:
        sections = re.findall(r"^## (.+)$", f.read(), re.M)
    if label:
        kt.check_equal(sections[0], "Unreleased", f"the first CHANGELOG section of {version}-"
                                                  f"{label}, on its way to {version}")
        kt.check(not any(s.startswith(version + " ") for s in sections),
                 f"no CHANGELOG section claims {version} released before it is",
                 "none", sections)
    else:
        kt.check(sections[0].startswith(version + " "), f"the CHANGELOG section of {version}",
                 f"## {version} (date)", sections[0])


if __name__ == "__main__":
    kt.main([test_version_names_release_and_commit, test_changelog_has_the_version])
