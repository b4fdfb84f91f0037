"""Record (or compare) a content digest of the sample district's outputs.

The "outputs identical before and after" check of a refactoring: ``summary.json``
without timings, and for every GeoPackage layer, CSV, workbook sheet and raster a
stable digest (row count, columns, sha256 of the normalised rows sorted, geometries
as WKB with coordinates rounded to the millimetre).

Usage (from the checkout root)::

    python tests/baseline/record.py                 # run the sample, (re)write sample_outputs.json
    python tests/baseline/record.py --out OUT       # digest an existing run folder instead
    python tests/baseline/record.py --check         # compare with the recorded digest

Re-record whenever the sample data or an analysis changes on purpose.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RECORD = HERE / "sample_outputs.json"
#: summary.json keys that change from run to run (wall-clock timings), and ``map`` (the
#: map files and how map.png was drawn — Chromium or matplotlib — are checked by
#: tests/test_maps.py and tests/test_map_sheets.py, not digested here).
VOLATILE_SUMMARY_KEYS = ("timings_s", "run_id", "map")
#: Campaign counts relative to the project's campaign store (campaign.gpkg), which
#: persists between runs by design: a second run finds 0 new problems.
CAMPAIGN_HISTORY_KEYS = ("new", "gone", "reopened")
#: The steps the baseline runs: every analysis and writer but the maps (¾ of the run's time).
STEPS = ("load", "compliance", "coverage", "hotspots", "ledgers")
#: Nested summary keys that measure time, not results (e.g. the solver's seconds).
VOLATILE_SUFFIX = "_seconds"
#: Decimals kept for coordinates (metres or degrees → sub-millimetre either way at 7).
COORD_DECIMALS = 3
FLOAT_DIGITS = 9


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return format(float(v), f".{FLOAT_DIGITS}g")
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ",".join(_cell(x) for x in v) + "]"
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    # source paths: the same run in another checkout, or on run_sample's copy of the sample
    return _SAMPLE_PATH.sub("<repo>/data/sample_district/", str(v).replace(_REPO_PREFIX, "<repo>/"))


_REPO_PREFIX = str(HERE.parents[1]) + "/"
_SAMPLE_PATH = re.compile(r"[^\s\"',;]*/data/sample_district/")


_DATE_CELL = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T]00:00:00)?$")


def relative_dates(df: pd.DataFrame, run_date: _dt.date) -> pd.DataFrame:
    """Cells holding a date on or after the run date as ``<run+Nd>`` (填报日期, 整改期限 = run date + N).

    The workbooks date themselves and their deadlines from the day of the run; the
    sample's own data dates all lie before it.
    """

    def one(v: Any) -> Any:
        m = _DATE_CELL.match(v) if isinstance(v, str) else None
        if not m:
            return v
        days = (_dt.date.fromisoformat(m.group(1)) - run_date).days
        return f"<run+{days}d>" if days >= 0 else v

    return df.map(one)


def frame_digest(df: pd.DataFrame) -> dict[str, Any]:
    """Row count, columns and a sha256 of the sorted normalised rows of a (Geo)DataFrame."""
    import shapely

    cols = [str(c) for c in df.columns]
    data = pd.DataFrame(df).copy()
    for c in data.columns:
        s = data[c]
        if str(s.dtype) == "geometry" or (len(s) and isinstance(s.dropna().iloc[0] if s.notna().any() else None,
                                                                  shapely.Geometry)):
            geoms = np.asarray(s.to_numpy(), dtype=object)
            rounded = shapely.transform(geoms, lambda xy: np.round(xy, COORD_DECIMALS))
            data[c] = [g.wkb_hex if g is not None else "" for g in shapely.normalize(rounded)]
    rows = sorted("\x1f".join(_cell(v) for v in row) for row in data.itertuples(index=False, name=None))
    h = hashlib.sha256("\x1e".join(rows).encode()).hexdigest()
    return {"rows": int(len(df)), "columns": cols, "sha256": h}


def _without_times(v: Any) -> Any:
    """``v`` without the keys that measure time (``*_seconds``), at any depth."""
    if isinstance(v, dict):
        return {k: _without_times(x) for k, x in v.items() if not str(k).endswith(VOLATILE_SUFFIX)}
    if isinstance(v, list):
        return [_without_times(x) for x in v]
    return v


def digest_folder(out: Path) -> dict[str, Any]:
    """Digest of every deterministic output in a ``gis run`` folder."""
    import geopandas as gpd
    import pyogrio

    res: dict[str, Any] = {}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    run_date = _dt.datetime.strptime(str(summary["run_id"])[:8], "%Y%m%d").date()  # run ids start with the UTC date
    for k in VOLATILE_SUMMARY_KEYS:
        summary.pop(k, None)
    summary["steps_run"] = [s for s in summary.get("steps_run", []) if s != "maps"]
    if isinstance(summary.get("campaign"), dict):  # new / gone / reopened depend on the store's history
        summary["campaign"] = {k: v for k, v in summary["campaign"].items() if k not in CAMPAIGN_HISTORY_KEYS}
    res["summary.json"] = _without_times(summary)
    for f in sorted(out.glob("*.gpkg")):
        for name, _ in pyogrio.list_layers(f):
            res[f"{f.name}:{name}"] = frame_digest(gpd.read_file(f, layer=name))
    for f in sorted(out.glob("*.csv")):
        res[f.name] = frame_digest(pd.read_csv(f, dtype=str, keep_default_na=False))
    for f in sorted(out.glob("*.xlsx")):
        for sheet, df in pd.read_excel(f, sheet_name=None, dtype=str, header=None).items():
            res[f"{f.name}:{sheet}"] = frame_digest(relative_dates(df, run_date))
    for f in sorted(out.glob("*.tif")):
        import rasterio

        with rasterio.open(f) as src:
            arr = src.read()
            res[f.name] = {
                "shape": list(arr.shape), "crs": str(src.crs),
                "transform": [round(v, COORD_DECIMALS) for v in tuple(src.transform)[:6]],
                "sha256": hashlib.sha256(np.round(arr.astype("float64"), 6).tobytes()).hexdigest(),
            }
    return res


def run_sample(out: Path) -> None:
    """``python -m gis run --out OUT --steps <STEPS>`` on a copy of the bundled sample, quietly.

    A copy without the campaign store (``campaign*.gpkg``, ``campaign_rejects/``): the store
    the sample folder keeps between runs numbers the problems (问题编号) in the order they were
    first seen, so a run in place digests this checkout's run history, not the analysis.
    """
    import shutil

    root = HERE.parent.parent
    project = out.parent / "checkout" / "data" / "sample_district"
    shutil.copytree(root / "data" / "sample_district", project,
                    ignore=shutil.ignore_patterns("campaign*.gpkg", "campaign_rejects"))
    subprocess.run([sys.executable, "-m", "gis", "run", "--project", str(project), "--out", str(out), "--quiet",
                    "--steps", ",".join(STEPS[1:])], check=True, cwd=root, capture_output=True)


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Readable list of the entries that differ."""
    out = []
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key) != actual.get(key):
            out.append(f"{key}: expected {json.dumps(expected.get(key), ensure_ascii=False)[:300]} "
                       f"got {json.dumps(actual.get(key), ensure_ascii=False)[:300]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="digest this existing run folder (default: run the sample)")
    ap.add_argument("--check", action="store_true", help="compare with the record instead of writing it")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "out"
        if not args.out:
            run_sample(out)
        digest = digest_folder(out)
    if args.check:
        diff = differences(json.loads(RECORD.read_text(encoding="utf-8")), digest)
        print("\n".join(diff) or "identical")
        return 1 if diff else 0
    RECORD.write_text(json.dumps(digest, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {len(digest)} entries in {RECORD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
