"""keng-registry --check FILE against the version before it (--previous), with its lineage,
its units list and the effective times: the 1 July 2025 registry passes against the built-in
2024 one, and each refusal of issue 17 is shown with its message, its file and line, exit 78
and nothing on stdout. No broker: keng-registry only reads files."""

import os
import subprocess

import kengtest as kt

REGISTRY_DIR = os.path.join(kt.SOURCE_DIR, "registry")
HEAD = "board_id,board_name,commune_id,commune_name,district_id,district_name,groups,members\n"

# Four boards in three communes of one district.
PREVIOUS = HEAD + (
    "B1,Thôn 1,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B2,Thôn 2,C1,Xã Một,D1,Huyện Một,5,5\n"
    "B3,Thôn 3,C2,Xã Hai,D1,Huyện Một,5,5\n"
    "B4,Thôn 4,C3,Xã Ba,D1,Huyện Một,5,5\n")
# Two tiers: C1 and C2 merged into N1, C3 into N2; B4 removed, B5 new.
NEXT = HEAD + (
    "B1,Thôn 1,N1,Xã Mới,,,5,5\n"
    "B2,Thôn 2,N1,Xã Mới,,,5,5\n"
    "B3,Thôn 3,N1,Xã Mới,,,5,5\n"
    "B5,Thôn 5,N2,Xã Hai Mới,,,5,5\n")
LINEAGE = ("from_id,from_name,to_id,to_name\n"
           "C1,Xã Một,N1,Xã Mới\n"
           "C2,Xã Hai,N1,Xã Mới\n"
           "C3,Xã Ba,N2,Xã Hai Mới\n"
           "B4,Thôn 4,,\n")
UNITS = ("commune_id,commune_name,kind\n"
         "N1,Xã Mới,xa\n"
         "N2,Xã Hai Mới,xa\n"
         "N3,Xã Ba Mới,xa\n")


def run(*args):
    return subprocess.run([kt.binary("keng-registry"), *args], capture_output=True, text=True,
                          timeout=60)


class Case:
    """A folder with the four files, any of them replaced, and keng-registry --check on it."""

    def __init__(self, wd, name, previous=PREVIOUS, next_=NEXT, lineage=LINEAGE, units=UNITS):
        self.files = {}
        for kind, text in (("previous", previous), ("next", next_), ("lineage", lineage),
                           ("units", units)):
            path = wd.file(f"{name}-{kind}.csv")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            self.files[kind] = path

    def check(self, *extra, lineage=True, units=True):
        args = ["--check", self.files["next"], "--previous", self.files["previous"]]
        if lineage:
            args += ["--lineage", self.files["lineage"]]
        if units:
            args += ["--units", self.files["units"]]
        return run(*args, *extra)


def expect_refused(out, fragments, what):
    kt.check_equal(out.returncode, 78, f"{what}: exit status ({out.stderr.strip()!r})")
    kt.check_equal(out.stdout, "", f"{what}: nothing on stdout")
    for fragment in fragments:
        kt.check(fragment in out.stderr, f"{what}: the refusal says it", fragment,
                 out.stderr.strip())
    for line in out.stderr.splitlines():
        if "warning: " not in line:
            kt.log(f"{what}: {line}")


def test_2025_registry_passes_against_the_built_in_2024_one():
    wd = kt.Workdir(prefix="keng-regcheck-2025-")
    try:
        previous = wd.file("boards-2024.csv")
        kt.check_equal(run("--write", previous).returncode, 0, "keng-registry --write")
        out = run("--check", os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.csv"),
                  "--previous", previous,
                  "--lineage", os.path.join(REGISTRY_DIR, "nghe-an-2024-to-2025.lineage.csv"),
                  "--units", os.path.join(REGISTRY_DIR, "nghe-an-2025-07-01.communes.csv"),
                  "--effective", "2025-07-01", "--previous-effective", "2024-01-01")
        kt.check_equal(out.returncode, 0, f"exit status ({out.stderr.strip()[-600:]!r})")
        kt.check_equal(out.stderr, "", "no refusal and no warning")
        lines = out.stdout.splitlines()
        kt.check_equal(lines[:3], [
            "districts=0 communes=130 boards=7588 groups=38578 members=38661",
            "levels: province, commune, board",
            "effective: 2025-07-01T00:00:00.000+07:00"], "counts, levels, effective time")
        kt.check("boards against the previous version: 0 in the same commune, 7588 moved, 0 new, "
                 "0 removed" in lines, "every 2024 board is in a 2025 commune",
                 "7588 moved", lines)
    finally:
        wd.cleanup()


def test_a_good_version_passes_with_a_warning_for_a_commune_without_boards():
    wd = kt.Workdir(prefix="keng-regcheck-good-")
    try:
        out = Case(wd, "good").check("--effective", "2025-07-01",
                                     "--previous-effective", "2024-01-01T00:00:00+07:00")
        kt.check_equal(out.returncode, 0, f"exit status ({out.stderr.strip()!r})")
        kt.check("warning: " in out.stderr and "line 4: commune N3 'Xã Ba Mới' has no board yet"
                 in out.stderr, "a listed unit without a board is a warning",
                 "commune N3 ... has no board yet", out.stderr)
        kt.check("boards against the previous version: 0 in the same commune, 3 moved, 1 new, "
                 "1 removed" in out.stdout, "the boards' summary", "3 moved, 1 new, 1 removed",
                 out.stdout)
    finally:
        wd.cleanup()


def test_each_refusal_names_its_file_and_line():
    wd = kt.Workdir(prefix="keng-regcheck-bad-")
    try:
        # A board in two communes: twice in the version, or where the lineage does not put it.
        case = Case(wd, "two-rows", next_=NEXT + "B1,Thôn 1,N2,Xã Hai Mới,,,5,5\n")
        expect_refused(case.check(), [
            "two-rows-next.csv: line 6: board_id B1 is listed again (first on line 2), in "
            "commune N2 here and N1 there: a board is in one commune"], "a board listed twice")
        case = Case(wd, "lineage-elsewhere", next_=NEXT.replace("B3,Thôn 3,N1,Xã Mới",
                                                                "B3,Thôn 3,N2,Xã Hai Mới"))
        expect_refused(case.check(), [
            "lineage-elsewhere-next.csv: line 4: board B3 is in commune N2, but",
            "lineage-elsewhere-lineage.csv line 3 sends its commune C2 of",
            "a board is in one commune; if C2 was split, give this board a line of its own: "
            "'B3,Thôn 3,N2,Xã Hai Mới'"], "a board the lineage puts in another commune")

        # A level with holes.
        case = Case(wd, "holes", next_=NEXT.replace("B5,Thôn 5,N2,Xã Hai Mới,,",
                                                    "B5,Thôn 5,N2,Xã Hai Mới,D1,Huyện Một"))
        expect_refused(case.check(), [
            "holes-next.csv: line 5: this board has a district, but line 2 has none",
            "a level may not have holes"], "a level with holes")

        # Effective times backwards or the same.
        case = Case(wd, "times")
        expect_refused(case.check("--effective", "2024-01-01", "--previous-effective",
                                  "2025-07-01"),
                       ["--effective 2024-01-01T00:00:00.000+07:00 is before --previous-effective "
                        "2025-07-01T00:00:00.000+07:00"], "effective times backwards")
        expect_refused(case.check("--effective", "2025-07-01", "--previous-effective",
                                  "2025-06-30T17:00:00Z"),
                       ["is the same as --previous-effective", "two versions would be in force "
                        "at once"], "effective times that overlap")

        # A board dropped without the lineage saying so.
        case = Case(wd, "dropped", lineage=LINEAGE.replace("B4,Thôn 4,,\n", ""))
        expect_refused(case.check(), [
            "dropped-previous.csv: line 5: board B4 (commune C3) is not in",
            "the lineage does not say it was removed: if it was removed, add the line "
            "'B4,Thôn 4,,' to the lineage"], "a board dropped without a word")
        expect_refused(Case(wd, "no-lineage").check(lineage=False), [
            "no-lineage-previous.csv: line 5: board B4 (commune C3) is not in",
            "no --lineage says it was removed"], "a board dropped, no lineage given")

        # The same id for two things.
        case = Case(wd, "board-was-commune", next_=NEXT.replace("B5,", "C3,"))
        expect_refused(case.check(), [
            "board-was-commune-next.csv: line 5: board_id C3 was a commune of",
            "(line 5): an id names one thing for ever"], "a commune's id on a board")
        case = Case(wd, "renamed", next_=NEXT.replace("N2,Xã Hai Mới", "C3,Xã Khác"),
                    lineage=LINEAGE.replace("C3,Xã Ba,N2,Xã Hai Mới", "C3,Xã Ba,,"),
                    units=UNITS.replace("N2,Xã Hai Mới", "C3,Xã Khác"))
        expect_refused(case.check(), [
            "renamed-next.csv: line 5: commune C3 is 'Xã Khác' here but 'Xã Ba' in",
            "say so in the lineage with the line 'C3,Xã Ba,C3,Xã Khác'",
            "renamed-lineage.csv: line 4: C3 was removed, but"], "a unit id reused for another")
        case = Case(wd, "reused-board", next_=NEXT + "B4,Thôn Bốn,N2,Xã Hai Mới,,,5,5\n")
        expect_refused(case.check(), [
            "reused-board-lineage.csv: line 5: B4 was removed, but",
            "lists B4 as a board (line 6): an id names one thing for ever"],
            "a removed board's id used again")

        # A board under a commune the units list lacks; a lineage to nowhere.
        case = Case(wd, "unlisted", units=UNITS.replace("N2,Xã Hai Mới,xa\n", ""))
        expect_refused(case.check(), [
            "unlisted-next.csv: line 5: commune_id N2 is not in the units list"],
            "a commune the units list lacks")
        case = Case(wd, "nowhere", lineage=LINEAGE.replace("C3,Xã Ba,N2", "C3,Xã Ba,N9"))
        expect_refused(case.check(), [
            "nowhere-lineage.csv: line 4: to_id N9 is not a unit of"], "a lineage to nowhere")
    finally:
        wd.cleanup()


def test_usage_errors():
    wd = kt.Workdir(prefix="keng-regcheck-usage-")
    try:
        case = Case(wd, "usage")
        for args, fragment in (
                ([case.files["next"]], "Usage: keng-registry"),
                (["--check", case.files["next"], "--lineage", case.files["lineage"]],
                 "--lineage needs --previous"),
                (["--previous", case.files["previous"]], "--previous needs --check"),
                (["--check", case.files["next"], "--effective", "1 July 2025"],
                 "--effective '1 July 2025' is not a date YYYY-MM-DD or an RFC 3339 time")):
            out = run(*args)
            kt.check_equal(out.returncode, 64, f"keng-registry {' '.join(args)}: exit status")
            kt.check(fragment in out.stderr, "the usage error says why", fragment, out.stderr)
            kt.check_equal(out.stdout, "", "nothing on stdout")
    finally:
        wd.cleanup()


if __name__ == "__main__":
    kt.main([test_2025_registry_passes_against_the_built_in_2024_one,
             test_a_good_version_passes_with_a_warning_for_a_commune_without_boards,
             test_each_refusal_names_its_file_and_line, test_usage_errors])
