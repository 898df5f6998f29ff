#!/usr/bin/env python3
"""Places the 7,588 boards of keng's 2024 registry in Nghệ An's 130 communes of 1 July 2025.

Usage: place_boards_2025.py REGISTRY_2024_CSV COMMUNES_2025_CSV OUT_CSV OUT_LINEAGE_CSV

REGISTRY_2024_CSV is the built-in registry as `keng-registry --write -` gives it (21
district-level units, 460 communes, 7,588 boards; the communes and boards are synthetic, the
district names real). COMMUNES_2025_CSV is registry/nghe-an-2025-07-01.communes.csv (the
official codes and names, and the early-2025 district-level units each new commune took
territory from).

Each 2024 commune goes whole to one new commune among those that took territory from its
district (Thị xã Cửa Lò, merged into Thành phố Vinh early in 2025, counts as Vinh). A
district's communes are dealt out in order over its new communes in proportion to how many
of their predecessors lay in that district (shared equally when a new commune took from two
districts), at least one each, so that every new commune gets
boards. Boards keep their ids, groups and members; their names gain the 2024 commune's, since
two old communes each had a "Thôn 3". Deterministic: the same inputs give the same files.

OUT_CSV is a board registry without a district level (keng's CSV with both district cells
empty); OUT_LINEAGE_CSV says which new commune each 2024 commune went to.
"""

import csv
import sys
import unicodedata

# Early 2025 merged Thị xã Cửa Lò into Thành phố Vinh.
MERGED_INTO = {"Thị xã Cửa Lò": "Thành phố Vinh"}


def norm(name):
    """One spelling per name: the sources write both "Thái Hoà" and "Thái Hòa"."""
    name = unicodedata.normalize("NFC", name)
    return name.replace("oà", "òa").replace("oá", "óa").replace("oả", "ỏa").replace(
        "oã", "õa").replace("oạ", "ọa")


def apportion(n, weights):
    """n items over len(weights) slots, at least one each, the rest in proportion to weights
    by the largest remainder; slot order breaks ties."""
    k = len(weights)
    if n < k:
        raise SystemExit(f"{n} communes cannot give each of {k} new communes one")
    spare, total = n - k, sum(weights)
    exact = [spare * w / total for w in weights]
    out = [1 + int(x) for x in exact]
    order = sorted(range(k), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in order[:n - sum(out)]:
        out[i] += 1
    return out


def main(reg_path, communes_path, out_path, lineage_path):
    with open(reg_path, encoding="utf-8") as f:
        boards = list(csv.DictReader(f))
    with open(communes_path, encoding="utf-8") as f:
        new_communes = list(csv.DictReader(f))

    # The 2024 communes of each district, in registry order.
    district_communes, commune_boards, names = {}, {}, {}
    for b in boards:
        d = norm(MERGED_INTO.get(b["district_name"], b["district_name"]))
        if b["commune_id"] not in commune_boards:
            district_communes.setdefault(d, []).append(b["commune_id"])
            names[b["commune_id"]] = b["commune_name"]
        commune_boards.setdefault(b["commune_id"], []).append(b)

    # The new communes that took territory from each early-2025 district, with the number of
    # their predecessors there.
    # The source lists a new commune's districts, not each predecessor's: a commune that took
    # territory from two districts counts half its predecessors in each.
    candidates = {}
    for c in new_communes:
        preds = c["predecessor_ids"].split(";")
        olds = c["old_district_names"].split(";")
        for d in olds:
            candidates.setdefault(norm(d), {})[c["commune_id"]] = max(1, len(preds) // len(olds))

    missing = sorted(set(district_communes) - set(candidates))
    if missing:
        raise SystemExit(f"no new communes for the 2024 districts {missing}")

    placed = {}  # 2024 commune id -> new commune id
    for d, olds in district_communes.items():
        ids = sorted(candidates[d])
        shares = apportion(len(olds), [candidates[d][i] for i in ids])
        pos = 0
        for new_id, share in zip(ids, shares):
            for old in olds[pos:pos + share]:
                placed[old] = new_id
            pos += share

    by_id = {c["commune_id"]: c for c in new_communes}
    got = {placed[o] for o in placed}
    if got != set(by_id):
        raise SystemExit(f"new communes without boards: {sorted(set(by_id) - got)}")

    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write("# Nghệ An's board registry from 1 July 2025: two-tier government, no district\n"
                "# level. Communes: official codes and names (registry/README.md). Boards: keng's\n"
                "# synthetic 2024 boards, same ids, each placed by\n"
                "# tools/registry/place_boards_2025.py in a commune that took its district's\n"
                "# territory; the placement and the board names are synthetic.\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["board_id", "board_name", "commune_id", "commune_name", "district_id",
                    "district_name", "groups", "members"])
        for b in boards:
            new = by_id[placed[b["commune_id"]]]
            w.writerow([b["board_id"], f"{b['board_name']} ({b['commune_name']} cũ)",
                        new["commune_id"], new["commune_name"], "", "", b["groups"],
                        b["members"]])
    with open(lineage_path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["commune_id_2024", "commune_name_2024", "commune_id_2025",
                    "commune_name_2025"])
        for old in sorted(placed, key=lambda o: (placed[o], o)):
            w.writerow([old, names[old], placed[old], by_id[placed[old]]["commune_name"]])


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
