"""Compare two `gis run` output folders: summary.json minus timings, every GeoPackage layer, the CSVs.

Usage: python tests/_compare_runs.py BEFORE AFTER  (prints one line per layer and RESULT).
"""
import json, sys
from pathlib import Path
import geopandas as gpd, pandas as pd, pyogrio

a, b = Path(sys.argv[1]), Path(sys.argv[2])
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in ("timings_s", "timings", "out", "output", "map") and not k.endswith("_s")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
bad = 0
sa, sb = strip(json.loads((a / "summary.json").read_text())), strip(json.loads((b / "summary.json").read_text()))
if sa != sb:
    bad += 1
    for k in sorted(set(sa) | set(sb)):
        if sa.get(k) != sb.get(k):
            print("summary differs at", k)
else:
    print("summary.json equal (minus timings)")
for ga in sorted(a.rglob("*.gpkg")):
    gb = b / ga.relative_to(a)
    if not gb.exists():
        print("missing", gb); bad += 1; continue
    la = [l[0] for l in pyogrio.list_layers(ga)]; lb = [l[0] for l in pyogrio.list_layers(gb)]
    if la != lb:
        print("layers differ", ga.name, la, lb); bad += 1; continue
    for layer in la:
        da, db = gpd.read_file(ga, layer=layer), gpd.read_file(gb, layer=layer)
        try:
            pd.testing.assert_frame_equal(da, db, check_exact=True)
            print(f"equal {ga.relative_to(a)}:{layer} ({len(da)} rows)")
        except AssertionError as e:
            bad += 1; print(f"DIFF {ga.relative_to(a)}:{layer}: {str(e)[:300]}")
for fa in sorted(a.rglob("*.csv")):
    fb = b / fa.relative_to(a)
    same = fb.exists() and fa.read_bytes() == fb.read_bytes()
    print(("equal " if same else "DIFF ") + str(fa.relative_to(a))); bad += (not same)
print("RESULT:", "identical" if not bad else f"{bad} differences")
