#!/usr/bin/env python3
"""Derives Nghệ An's communes of 1 July 2025 and their predecessors from dvhcvn/20250701.

Usage: derive_nghe_an_2025.py DVHCVN_DIR OUT_CSV

DVHCVN_DIR is a checkout of the public repository dvhcvn/20250701 (MIT licence; its notice is
registry/LICENSE.dvhcvn beside the derived file). It reads:
  mapping/merges.json            every new commune of the country with the old communes that
                                 make it up ("full", or "partial" for the two that were split)
  output/40/<district>/<old>.json  for each old commune of Nghệ An (province code 40), its
                                 address, whose second part names its old district

and writes one row per new commune of province 40:
  commune_id, commune_name, kind (xa or phuong), predecessor_ids, predecessor_names,
  partial_ids (predecessors split between two new communes), old_district_ids,
  old_district_names
with lists separated by ';', in the order of the official codes. It checks what the
resolution 1678/NQ-UBTVQH15 says: 130 communes, 119 xã and 11 phường, from 412 old
communes of 20 district-level units. Nothing here runs at build or test time; the derived
file is committed, and tests check its invariants (tests/integration/test_registry_2025.py).
"""

import csv
import glob
import json
import os
import sys

PROVINCE = "40"


def old_districts(root):
    """{old commune id: (old district id, old district name)} from output/40/."""
    out = {}
    for path in glob.glob(os.path.join(root, "output", PROVINCE, "*", "*.json")):
        district_id = os.path.basename(os.path.dirname(path))
        commune_id = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            address = json.load(f)["address"]
        parts = [p.strip() for p in address.split(",")]
        if len(parts) != 3:
            sys.exit(f"{path}: address '{address}' is not 'commune, district, province'")
        out[commune_id] = (district_id, parts[1])
    return out


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    root, out_csv = argv[1], argv[2]
    with open(os.path.join(root, "mapping", "merges.json"), encoding="utf-8") as f:
        provinces = json.load(f)["data"]
    province = [p for p in provinces if p["level1_id"] == PROVINCE]
    if len(province) != 1:
        sys.exit(f"mapping/merges.json has no single province {PROVINCE}")
    districts = old_districts(root)
    rows = []
    for c in sorted(province[0]["level2s"], key=lambda c: c["level2_id"]):
        kind = {"Xã": "xa", "Phường": "phuong"}.get(c["name"].split()[0])
        if kind is None:
            sys.exit(f"{c['level2_id']} {c['name']}: neither a xã nor a phường")
        preds = c["merges"]
        missing = [m["old_id"] for m in preds if m["old_id"] not in districts]
        if missing:
            sys.exit(f"{c['level2_id']}: no output/{PROVINCE}/*/ file for {missing}")
        dist = sorted({districts[m["old_id"]] for m in preds})
        rows.append([c["level2_id"], c["name"], kind,
                     ";".join(m["old_id"] for m in preds),
                     ";".join(m["name"] for m in preds),
                     ";".join(m["old_id"] for m in preds if m["type"] != "full"),
                     ";".join(d[0] for d in dist), ";".join(d[1] for d in dist)])
    kinds = [r[2] for r in rows]
    olds = {i for r in rows for i in r[3].split(";")}
    old_dist = {i for r in rows for i in r[6].split(";")}
    got = (len(rows), kinds.count("xa"), kinds.count("phuong"), len(olds), len(old_dist))
    if got != (130, 119, 11, 412, 20):
        sys.exit(f"expected 130 communes (119 xã, 11 phường) from 412 old communes of 20 "
                 f"districts, got {got}")
    with open(out_csv, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["commune_id", "commune_name", "kind", "predecessor_ids",
                    "predecessor_names", "partial_ids", "old_district_ids",
                    "old_district_names"])
        w.writerows(rows)
    print(f"{out_csv}: {len(rows)} communes from {len(olds)} old communes of "
          f"{len(old_dist)} district-level units")


if __name__ == "__main__":
    main(sys.argv)
