"""Benchmark: the compliance location step and raster sampling vs the strongest simple peers.

Ours: :func:`gis.compliance.locate` — one STRtree on the points queried with
each polygon layer, STRtree ``query_nearest`` per receptor class — and
:func:`gis.compliance.check_sites`. Peer: the location step written with one
``geopandas.sjoin`` per layer (townships, zones, land use) and one
``geopandas.sjoin_nearest(max_distance=…)`` per receptor class, aggregated with
sort/``drop_duplicates`` and ``groupby().agg(";".join)`` (no Python lambdas),
passed to ``check_sites(locator=…)`` so the rules and linkage are identical.
Inputs: the bundled sample district's layers and held-out random points, one set
mostly outside and one mostly inside the zones.

Raster land-use sampling: ours (inverse affine on all points, band read once) vs
vectorised rasterio (``rasterio.transform.rowcol`` + one ``read``); rasterio's
per-point ``sample`` generator once as reference.

Run: ``.venv/bin/python -m benchmarks.bench_compliance`` (a few minutes).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import geopandas as gpd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks._common import alternate, load_note, machine, med, ratio, span, write_section  # noqa: E402
from gis.compliance import (  # noqa: E402
    RECEPTORS,
    ZONE_TYPE_LABEL_ZH,
    LandUseClasses,
    RuleTable,
    check_sites,
    locate,
    sample_raster_codes,
)
from gis.schema import ZONE_LEVEL_RANK  # noqa: E402


def sjoin_locate(
    points: gpd.GeoSeries,
    *,
    townships=None,
    zones=None,
    landuse=None,
    landuse_raster=None,
    classes: LandUseClasses | None = None,
    receptor_max_distance_m: float = 1000.0,
) -> pd.DataFrame:
    """The location step written with one ``gpd.sjoin`` / ``sjoin_nearest`` per layer."""
    classes = classes or LandUseClasses.load()
    g = gpd.GeoDataFrame(geometry=points.reset_index(drop=True))
    out = pd.DataFrame(index=g.index)

    def first(j: pd.DataFrame, col: str) -> pd.Series:
        j = j.reset_index().sort_values(["index", "index_right"])
        j = j.drop_duplicates("index")
        return j.set_index("index")[col].reindex(g.index)

    t = gpd.sjoin(g, townships[["township", "geometry"]], how="inner", predicate="intersects")
    out["township"] = first(t, "township").astype(object).where(lambda s: s.notna(), None)
    lu = landuse[["landuse_code", "geometry"]]
    j = gpd.sjoin(g, lu, how="inner", predicate="intersects")
    raw = first(j, "landuse_code").astype(object)
    tab = classes.table(raw.where(raw.notna(), None))
    out["landuse_code"] = tab["landuse_code"]
    out["landuse_name"] = tab["landuse_name"]
    out["landuse_class"] = tab["class_entry"]
    out["landuse_source"] = np.where(tab["landuse_code"].notna(), "vector", None)
    out["landuse_raw"] = raw.where(raw.notna(), None)
    zj = gpd.sjoin(g, zones[["zone_type", "level", "name", "geometry"]], how="inner", predicate="intersects")
    zj = zj.reset_index()
    for zt in ZONE_TYPE_LABEL_ZH:
        out[f"in_{zt}"] = out.index.isin(zj.loc[zj["zone_type"] == zt, "index"])
    fm = zj[zj["zone_type"] == "four_mountains"].copy()
    fm["rank"] = fm["level"].map({k.value: v for k, v in ZONE_LEVEL_RANK.items()})
    best = fm.sort_values("rank", ascending=False).drop_duplicates("index").set_index("index")["level"]
    out["four_mountains_level"] = best.reindex(out.index).astype(object).where(lambda s: s.notna(), None)
    zj["label"] = zj["zone_type"] + np.where(zj["level"].notna(), ":" + zj["level"].astype(str), "")
    zj = zj.drop_duplicates(["index", "zone_type", "level"]).sort_values(["index", "label"])
    # labels are unique per point after the drop_duplicates: one C-level join per group, no Python lambda
    out["zones"] = zj.groupby("index")["label"].agg(";".join).reindex(out.index).fillna("")
    named = zj[zj["name"].map(type).eq(str).to_numpy() & zj["name"].astype(str).str.len().gt(0).to_numpy()]
    named = named.drop_duplicates(["index", "name"])
    out["zone_names"] = named.groupby("index")["name"].agg(";".join).reindex(out.index).fillna("")
    rec_of = classes.table(landuse["landuse_code"].astype(object))["receptor"]
    for rec in RECEPTORS:
        parts = [landuse.loc[(rec_of == rec).to_numpy(), ["geometry"]]]
        if rec == "water_source":
            parts.append(zones.loc[zones["zone_type"] == "water_source", ["geometry"]])
        target = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=landuse.crs)
        if len(target):
            nj = gpd.sjoin_nearest(g, target, how="inner", max_distance=receptor_max_distance_m, distance_col="d")
            d = nj.groupby(level=0)["d"].min().reindex(out.index)
        else:
            d = pd.Series(np.nan, index=out.index)
        out[f"dist_{rec}_m"] = d.to_numpy(dtype=float)
    out.index = points.index
    return out


def _codes(vals: np.ndarray, nd: float | None) -> list:
    return [None if (nd is not None and v == nd) else (f"{int(v):02d}" if v < 100 else f"{int(v):04d}") for v in vals]


def _raster_peer(path: Path, points: gpd.GeoSeries) -> list:
    """Vectorised rasterio: ``rowcol`` for all points at once, the band read once."""
    import rasterio
    from rasterio.transform import rowcol

    with rasterio.open(path) as ds:
        pts = points.to_crs(ds.crs)
        rows, cols = rowcol(ds.transform, pts.x.to_numpy(), pts.y.to_numpy())
        rows, cols = np.asarray(rows), np.asarray(cols)
        band = ds.read(1)
        nd = ds.nodata
    inside = (rows >= 0) & (rows < band.shape[0]) & (cols >= 0) & (cols < band.shape[1])
    vals = np.full(len(rows), nd if nd is not None else -1, dtype=float)
    vals[inside] = band[rows[inside], cols[inside]]
    out = _codes(vals, nd)
    return [None if not ok else c for c, ok in zip(out, inside, strict=True)]


def _raster_peer_per_point(path: Path, points: gpd.GeoSeries) -> list:
    """rasterio's per-point ``DatasetReader.sample`` generator (the slow way, for reference)."""
    import rasterio

    with rasterio.open(path) as ds:
        pts = points.to_crs(ds.crs)
        vals = np.array([v[0] for v in ds.sample(list(zip(pts.x, pts.y)), indexes=1)], float)
        nd = ds.nodata
    return _codes(vals, nd)


def held_out_points(d, n: int, inside_share: float, seed: int) -> gpd.GeoSeries:
    """``n`` points in the district, ``inside_share`` of them inside a zone polygon (held-out input)."""
    import shapely

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = d.boundary.bounds
    cand = shapely.points(rng.uniform(minx, maxx, 8 * n), rng.uniform(miny, maxy, 8 * n))
    cand = cand[shapely.contains(d.boundary, cand)]
    tree = shapely.STRtree(d.zones.geometry.to_numpy())
    hit = np.zeros(len(cand), bool)
    hit[np.unique(tree.query(cand, predicate="intersects")[0])] = True
    n_in = int(round(n * inside_share))
    pick = np.r_[rng.choice(np.flatnonzero(hit), n_in, replace=False),
                 rng.choice(np.flatnonzero(~hit), n - n_in, replace=False)]
    return gpd.GeoSeries(cand[rng.permutation(pick)], crs=d.crs)


def same_location(a: pd.DataFrame, b: pd.DataFrame, label: str) -> None:
    for col in ("township", "landuse_code", "four_mountains_level", "zones", "zone_names"):
        x = a[col].astype(object).where(a[col].notna(), "∅")
        y = b[col].astype(object).where(b[col].notna(), "∅")
        if not (x.to_numpy() == y.to_numpy()).all():
            raise SystemExit(f"{label}: {col} differs between ours and the sjoin peer")
    for zt in ZONE_TYPE_LABEL_ZH:
        if not (a[f"in_{zt}"].to_numpy(bool) == b[f"in_{zt}"].to_numpy(bool)).all():
            raise SystemExit(f"{label}: in_{zt} differs between ours and the sjoin peer")
    for rec in RECEPTORS:
        np.testing.assert_allclose(a[f"dist_{rec}_m"], b[f"dist_{rec}_m"], rtol=0, atol=1e-6)


N_POINTS = 100_000
ROUNDS = 3


def main() -> int:
    from gis import settings
    from gis.district import load_district

    d = load_district(settings.SAMPLE_PROJECT_DIR)
    rules = RuleTable.from_section(d.project.section("compliance"), source=d.project.path)
    rules.linkage["distance"] = "euclidean"  # same linkage for both; routing is benchmarked elsewhere
    start = load_note()
    kw = dict(townships=d.townships, zones=d.zones, landuse=d.landuse, classes=rules.classes,
              receptor_max_distance_m=1000.0)
    rows = []
    for label, share, seed in (("mostly outside zones (10 % inside)", 0.1, 11),
                               ("mostly inside zones (90 % inside)", 0.9, 12)):
        pts = held_out_points(d, N_POINTS, share, seed)
        times, res = alternate({"ours": lambda: locate(pts, **kw), "peer": lambda: sjoin_locate(pts, **kw)}, ROUNDS)
        same_location(res["ours"], res["peer"], label)
        rows.append((f"location step, {len(pts):,} held-out points {label}", times))
        print(label, {k: med(v) for k, v in times.items()}, flush=True)

    inc = d.incidents
    times, res = alternate({
        "ours": lambda: check_sites(d.sites, townships=d.townships, zones=d.zones, landuse=d.landuse,
                                    incidents=inc, rules=rules),
        "peer": lambda: check_sites(d.sites, townships=d.townships, zones=d.zones, landuse=d.landuse,
                                    incidents=inc, rules=rules, locator=sjoin_locate),
    }, ROUNDS)
    key = ["site_id", "rule_id"]
    v1 = res["ours"].violations[key].sort_values(key).reset_index(drop=True)
    v2 = res["peer"].violations[key].sort_values(key).reset_index(drop=True)
    if not v1.equals(v2):
        raise SystemExit("full check: violations differ between ours and the sjoin peer")
    n_inc = 0 if inc is None else len(inc)
    rows.append((f"full check of the bundled sample ({len(d.sites):,} sites + {n_inc:,} incidents; "
                 f"{len(v1):,} violations)", times))

    rpath = settings.SAMPLE_PROJECT_DIR / "landuse.tif"
    raster_rows = []
    if rpath.exists():
        pts = held_out_points(d, N_POINTS, 0.5, 13)
        times, res = alternate({"ours": lambda: sample_raster_codes(rpath, pts),
                                "peer": lambda: _raster_peer(rpath, pts)}, ROUNDS)
        ours_codes = [c if isinstance(c, str) else None for c in res["ours"].tolist()]
        if ours_codes != res["peer"]:
            raise SystemExit("raster samples differ from vectorised rasterio")
        t0 = time.perf_counter()
        slow = _raster_peer_per_point(rpath, pts)
        t_slow = time.perf_counter() - t0
        if ours_codes != slow:
            raise SystemExit("raster samples differ from rasterio sample()")
        raster_rows.append((f"raster land-use sampling, {len(pts):,} points", times, t_slow))
    write_section("compliance", report(d, rows, raster_rows, start))
    return 0


def report(d, rows, raster_rows, start: str) -> str:
    lines = [
        "## Compliance check (`benchmarks/bench_compliance.py`)",
        "",
        f"Bundled sample district layers ({len(d.townships)} townships, {len(d.zones)} zone polygons, "
        f"{len(d.landuse):,} land-use parcels); held-out random points in the district, drawn so that 10 % or 90 % "
        f"fall inside a zone. {machine()}; {ROUNDS} rounds, ours and the peer alternating in one process; median "
        f"(min–max) seconds; ratio = peer / ours (range of the per-round ratios). Shared machine: {start} at the "
        f"start, {load_note()} at the end.",
        "",
        "Location step: ours `gis.compliance.locate` vs one `geopandas.sjoin` per layer + `sjoin_nearest"
        "(max_distance)` per receptor class, with vectorised aggregation (sort + `drop_duplicates`, "
        "`groupby(...).agg(';'.join)`, no Python lambdas). Township, land use, zones, zone flags, zone names, 四山 level and "
        "receptor distances checked equal; the full check compares the violations.",
        "",
        "| task | ours (s) | peer (s) | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, t in rows:
        lines.append(f"| {label} | {span(t['ours'])} | {span(t['peer'])} | {ratio(t['peer'], t['ours'])} |")
    for label, t, slow in raster_rows:
        lines.append(f"| {label}; peer: vectorised rasterio (`rowcol` + one `read`) | {span(t['ours'])} | "
                     f"{span(t['peer'])} | {ratio(t['peer'], t['ours'])} |")
        lines.append(f"| same; rasterio per-point `sample` (1 run, reference) | — | {slow:.3f} | "
                     f"{slow / med(t['ours']):.1f}× |")
    loc = [med(t["peer"]) / med(t["ours"]) for label, t in rows if label.startswith("location step")]
    verdict = ("met on both inputs by the median ratio (the per-round range is in the table)" if loc and min(loc) >= 3 else
               f"not met (lowest median ratio {min(loc):.2f}×)" if loc else "not measured")
    lines += [
        "",
        "Ours places the points with integer indices and codes only: one STRtree on the points queried with each "
        "polygon layer (`covers`), zone labels and names joined once per distinct combination "
        "(`gis.overlay.join_codes_per_point`: each point's codes as one mixed-radix integer, `numpy.unique`), the "
        "land-use class table looked up once per distinct code, and receptor distances from "
        "`gis.overlay.nearest_distance` (outline segments in a `scipy.spatial.cKDTree` on their midpoints with an "
        "exact k-nearest certificate, a grid pre-filter for points beyond the search radius, points inside a "
        "receptor polygon at 0 from the covering query already made) instead of a GEOS distance per candidate "
        "polygon (`query_nearest`, what `sjoin_nearest` also runs). Distances agree with the peer to 1e-6 m "
        "(checked). The issue's ≥ 3× target for the location step: " + verdict + ".",
        "",
        "The earlier figures (location step 2.29× vs `sjoin`, raster sampling 30.6×) compared against a peer with "
        "per-group Python lambdas and per-point raster reads, on the sample the code was tuned on; they are "
        "withdrawn. The full check times the whole `check_sites` (rules, linkage, violations), where the location "
        "step is a small part of the sample's few points.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
