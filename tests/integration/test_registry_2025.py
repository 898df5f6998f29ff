"""registry/nghe-an-2025-07-01.communes.csv, the communes of 1 July 2025 derived from
dvhcvn/20250701, holds what resolution 1678/NQ-UBTVQH15 says: 130 communes (119 xã, 11
phường), official codes unique, made of 412 communes of early 2025 from 20 district-level
units, each old commune in exactly one new one but for the two split between two, whose
licence notice sits beside it."""

import csv
import os
import re

import kengtest as kt

DIR = os.path.join(kt.SOURCE_DIR, "registry")


def test_communes_of_2025():
    with open(os.path.join(DIR, "nghe-an-2025-07-01.communes.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kt.check_equal(len(rows), 130, "communes of 1 July 2025")
    kinds = [r["kind"] for r in rows]
    kt.check_equal((kinds.count("xa"), kinds.count("phuong")), (119, 11), "(xã, phường)")
    ids = [r["commune_id"] for r in rows]
    kt.check_equal(len(set(ids)), 130, "distinct official codes")
    for r in rows:
        kt.check(re.fullmatch(r"\d{5}", r["commune_id"]), "a five-digit official code",
                 "NNNNN", r["commune_id"])
        prefix = "Phường " if r["kind"] == "phuong" else "Xã "
        kt.check(r["commune_name"].startswith(prefix), f"{r['commune_id']}'s name and kind",
                 prefix, r["commune_name"])
        preds = r["predecessor_ids"].split(";")
        kt.check_equal(len(preds), len(r["predecessor_names"].split(";")),
                       f"{r['commune_id']}: predecessor ids and names")
        kt.check(all(p in preds for p in r["partial_ids"].split(";") if p),
                 f"{r['commune_id']}: partial predecessors are predecessors", preds,
                 r["partial_ids"])
    whole, split = {}, {}
    for r in rows:
        partial = set(filter(None, r["partial_ids"].split(";")))
        for p in r["predecessor_ids"].split(";"):
            (split if p in partial else whole).setdefault(p, []).append(r["commune_id"])
    kt.check_equal(len(set(whole) | set(split)), 412, "communes of early 2025")
    kt.check_equal([p for p, n in whole.items() if len(n) > 1], [],
                   "old communes wholly in two new ones")
    kt.check_equal(sorted(len(n) for n in split.values()), [2, 2], "the two split communes")
    kt.check(not set(whole) & set(split), "a split commune is nowhere whole", "none",
             set(whole) & set(split))
    districts = {d for r in rows for d in r["old_district_ids"].split(";")}
    kt.check_equal(len(districts), 20, "district-level units of early 2025")
    with open(os.path.join(DIR, "LICENSE.dvhcvn"), encoding="utf-8") as f:
        kt.check("MIT License" in f.read(), "the source's licence notice beside the file",
                 "MIT License", "absent")


if __name__ == "__main__":
    kt.main([test_communes_of_2025])
