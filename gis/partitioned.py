"""Partition tasks of the Dask engine: nothing is gathered (``gis run --engine dask``).

Every function here runs *on a worker* for one district partition *i* and takes
paths and a small :class:`Plan`, never another partition's layers in memory:

1. :func:`stage` loads the district (:func:`gis.halo.load_partition`) in the
   municipal metric CRS and writes it as columnar scratch files
   (``<out>/.partitions/<code>/{sites,incidents,cells,zones}.parquet``); it returns
   only its extents, counts and incident kinds;
2. the cross-border analyses read the partition's own files plus a *halo* read
   from its neighbours' files only (row-filtered Parquet reads of the points within
   the distance the analysis looks at);
3. :func:`finish` writes the district's GeoParquet partition
   (``municipal_analysis/<layer>/district=<code>/part.parquet``) and its GeoPackage
   (``municipal_analysis/gpkg/<code>.gpkg``) and returns a summary of a few numbers;
   summaries and statistics are combined by tree reduction (:func:`combine`).

Hexagon ownership: the municipal hexagon grid (the single-process grid over the
union of the outlines' bounds) is divided among the partitions by the rule
*owner(h)* = :math:`\\arg\\min_i d(c_h, B_i)` (lowest *i* on ties), the distance of
the hexagon's centre to partition *i*'s outline bounding box; every hexagon has one
owner, and each lies within :attr:`Plan.reach` of its owner's box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

#: Scratch folder (under the output folder) of the staged partitions.
SCRATCH = ".partitions"
#: Layers of the partitioned output, in writing order.
LAYERS = ("sites", "cells", "hexes", "incidents")
#: Lattice points per side used to bound :attr:`Plan.reach` (any value gives a valid
#: bound; more points give a tighter one). An algorithm constant, not a parameter.
REACH_LATTICE = 200


@dataclass(frozen=True)
class Plan:
    """What every partition task knows about the whole municipality (a few numbers per district).

    Attributes
    ----------
    codes
        District codes, in index order (partition *i* is ``codes[i]``).
    bounds
        ``(P, 4)`` outline bounding boxes (metric CRS).
    extents
        ``(P, 4)`` bounding boxes of each partition's data (outline, points, zones).
    offsets
        ``(P + 1,)`` first global incident id of each partition (prefix sums).
    kinds
        Sorted incident kinds of the whole municipality.
    crs
        The municipal metric CRS (WKT).
    out
        Output folder (a path every worker sees).
    params
        The engine parameters (:func:`gis.parallel.defaults`).
    reach
        Upper bound of the distance of any grid hexagon's centre to its owner's box.
    """

    codes: tuple[str, ...]
    bounds: np.ndarray
    extents: np.ndarray
    offsets: np.ndarray
    kinds: tuple[str, ...]
    crs: str
    out: str
    params: dict[str, Any] = field(default_factory=dict)
    reach: float = 0.0

    @property
    def grid_bounds(self) -> tuple[float, float, float, float]:
        """Union of the outline boxes: the single-process grid's bounds and origin."""
        b = self.bounds
        return (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))

    def scratch(self, i: int) -> tuple[Any, str]:
        """Filesystem and scratch folder of partition ``i`` (:func:`location`)."""
        return location(self.out, SCRATCH, self.codes[i])


# ====================================================================== storage


def location(out: str | Path, *parts: str) -> tuple[Any, str]:
    """The fsspec filesystem and path of ``out/part/…``; ``out`` a local path or an fsspec URL.

    Parameters
    ----------
    out
        Output folder: a local (or shared-filesystem) path, ``file://…``, or any URL
        fsspec resolves (``memory://…``; ``s3://…`` with ``s3fs`` installed).
    parts
        Path components below ``out``.

    Returns
    -------
    tuple
        ``(filesystem, path)``: an ``fsspec.AbstractFileSystem`` and the path in it.

    Examples
    --------
    >>> fs, path = location("memory://muni", "municipal_analysis", "sites")
    >>> type(fs).__name__, path
    ('MemoryFileSystem', '/muni/municipal_analysis/sites')
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(out))
    return fs, "/".join([root.rstrip("/"), *parts])


def is_local(fs: Any) -> bool:
    """Is ``fs`` the local filesystem (where GDAL can write a GeoPackage in place)?"""
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _put_parquet(fs: Any, path: str, frame: pd.DataFrame) -> None:
    """Write ``frame`` (a GeoDataFrame as GeoParquet) to ``path`` on ``fs``."""
    with fs.open(path, "wb") as f:
        frame.to_parquet(f, index=False)


def put_file(fs: Any, path: str, write: Callable[[Path], Any]) -> None:
    """Write a file at ``path`` on ``fs`` with ``write(local_path)`` (GDAL and the JSON writer need a
    local file: on a remote ``fs`` it is written in a temporary folder, then uploaded)."""
    import tempfile

    if is_local(fs):
        write(Path(path))
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / path.rsplit("/", 1)[-1]
        write(local)
        fs.put_file(str(local), path)


# ====================================================================== staging


def stage(project: str | Path, code: str, crs: Any, out: str | Path) -> dict[str, Any]:
    """Load one district in the metric CRS and write its scratch files; return its extents.

    Returns
    -------
    dict
        ``code``, ``bounds`` (outline box), ``extent`` (box of outline, points and
        zones), ``n_incidents`` and ``kinds``.
    """
    from gis.halo import load_partition

    p = load_partition(project, code, crs)
    fs, folder = location(out, SCRATCH, code)
    fs.makedirs(folder, exist_ok=True)
    sites = pd.DataFrame(p.sites.drop(columns="geometry")).assign(x=p.sites.geometry.x.to_numpy(), y=p.sites.geometry.y.to_numpy())
    _put_parquet(fs, f"{folder}/sites.parquet", sites)
    _put_parquet(fs, f"{folder}/incidents.parquet", p.incidents.assign(row=np.arange(len(p.incidents), dtype=np.int64)))
    _put_parquet(fs, f"{folder}/cells.parquet", p.cells)
    _put_parquet(fs, f"{folder}/zones.parquet", p.zones)
    boxes = [np.asarray(p.bounds, float)]
    for f in (sites, p.incidents, p.cells):
        if len(f):
            boxes.append(np.array([f["x"].min(), f["y"].min(), f["x"].max(), f["y"].max()], float))
    if len(p.zones):
        boxes.append(np.asarray(p.zones.total_bounds, float))
    b = np.vstack(boxes)
    extent = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))
    return {"code": code, "bounds": tuple(float(v) for v in p.bounds), "extent": extent,
            "n_incidents": int(len(p.incidents)), "kinds": sorted(p.incidents["kind"].unique().tolist())}


def reach(bounds: np.ndarray, spacing: float, steps: int) -> float:
    """Upper bound of :math:`\\min_i d(c, B_i)` over every point *c* the grid can hold.

    Evaluated on a ``steps × steps`` lattice over the union box grown by two
    spacings (the grid's one-cell margin); the lattice step *h* is added, since any
    point lies within :math:`h/\\sqrt2` of a lattice point.
    """
    x0, y0 = bounds[:, 0].min() - 2 * spacing, bounds[:, 1].min() - 2 * spacing
    x1, y1 = bounds[:, 2].max() + 2 * spacing, bounds[:, 3].max() + 2 * spacing
    h = max(x1 - x0, y1 - y0) / steps
    gx, gy = np.meshgrid(np.arange(x0, x1 + h, h), np.arange(y0, y1 + h, h))
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    d = np.full(len(xy), np.inf)
    for b in bounds:
        d = np.minimum(d, _box_distance(xy, b))
    return float(d.max() + h + spacing)


def _box_distance(xy: np.ndarray, b: Sequence[float]) -> np.ndarray:
    """Euclidean distance of points to the box ``b`` (0 inside)."""
    dx = np.maximum(np.maximum(b[0] - xy[:, 0], 0.0), xy[:, 0] - b[2])
    dy = np.maximum(np.maximum(b[1] - xy[:, 1], 0.0), xy[:, 1] - b[3])
    return np.hypot(dx, dy)


def hex_owner(centres: np.ndarray, bounds: np.ndarray, candidates: Sequence[int]) -> np.ndarray:
    """Owner partition of each hexagon centre among ``candidates`` (ascending; nearest box, lowest on ties)."""
    cand = np.asarray(sorted(candidates), dtype=np.int64)
    d = np.column_stack([_box_distance(centres, bounds[j]) for j in cand]) if len(cand) else np.zeros((len(centres), 0))
    return cand[np.argmin(d, axis=1)] if len(cand) else np.zeros(len(centres), np.int64)


def near(boxes: np.ndarray, box: Sequence[float], halo: float, skip: int) -> list[int]:
    """Partitions (other than ``skip``) whose box comes within ``halo`` of ``box``."""
    from gis.cluster_tiles import boxes_within

    hit = boxes_within(boxes, np.asarray(box, dtype=float), halo)
    hit[skip] = False
    return [int(j) for j in np.flatnonzero(hit)]


def read(plan: Plan, i: int, layer: str, box: Sequence[float] | None = None, halo: float = 0.0) -> pd.DataFrame:
    """Partition ``i``'s scratch ``layer``; with ``box``, only the points within ``halo`` of it.

    The row filter is pushed into the Parquet reader (pyarrow), so a neighbour's
    layer is never read whole into memory.
    """
    fs, folder = plan.scratch(i)
    path = f"{folder}/{layer}.parquet"
    if box is None:
        return pd.read_parquet(path, filesystem=fs)
    x0, y0, x1, y1 = box
    flt = [("x", ">=", x0 - halo), ("x", "<=", x1 + halo), ("y", ">=", y0 - halo), ("y", "<=", y1 + halo)]
    return pd.read_parquet(path, filesystem=fs, filters=flt)


def _box(f: pd.DataFrame) -> tuple[float, float, float, float] | None:
    if not len(f):
        return None
    return float(f["x"].min()), float(f["y"].min()), float(f["x"].max()), float(f["y"].max())


# ====================================================================== combining


def combine(*parts: dict[str, Any]) -> dict[str, Any]:
    """Merge partial results (tree reduction): numbers add, lists concatenate, dicts merge."""
    out: dict[str, Any] = {}
    for p in parts:
        for k, v in p.items():
            if k not in out:
                out[k] = v
            elif isinstance(v, dict):
                out[k] = combine(out[k], v)
            elif isinstance(v, list):
                out[k] = out[k] + v
            elif isinstance(v, np.ndarray):
                out[k] = np.sort(np.concatenate([out[k], v]))
            else:
                out[k] = out[k] + v
    return out


def fdr_cutoff_partial(p_small: np.ndarray, n: int, alpha: float) -> float:
    """:func:`gis.gistar.fdr_cutoff` from only the p-values below ``alpha`` (sorted) and the total ``n``.

    A p-value :math:`\\ge \\alpha` never passes :math:`p_{(k)} < k\\alpha/n \\le \\alpha`,
    so the ranks and the cut-off are those of the full list.
    """
    p_sorted = np.sort(np.asarray(p_small, float))
    p_sorted = p_sorted[p_sorted < alpha]
    if n == 0:
        return alpha
    thresh = np.arange(1, len(p_sorted) + 1) * alpha / n
    passed = np.flatnonzero(p_sorted < thresh)
    return float(thresh[passed[-1]]) if len(passed) else alpha / n


def summary_of(parts: dict[str, Any], n_hexes: int, clusters: int, cross: int, params: dict[str, Any]) -> dict[str, Any]:
    """The municipal headline figures from the reduced partition summaries (both engines).

    Population sums are :func:`math.fsum` of the districts' exactly rounded sums, so
    they do not depend on the order of the reduction.
    """
    pop, covered = math.fsum(parts["population"]), math.fsum(parts["population_covered"])
    return {
        "sites": int(parts["sites"]),
        "sites_in_four_mountains": {k: int(v) for k, v in sorted(parts["sites_in_four_mountains"].items())},
        "population_cells": int(parts["population_cells"]),
        "population": pop,
        "population_covered": covered,
        "population_covered_share": covered / pop if pop else None,
        "hexes": int(n_hexes),
        "hot_cells_99": int(parts["hot_cells_99"]),
        "incidents": int(parts["incidents"]),
        "clusters": int(clusters),
        "cross_border_clusters": int(cross),
        "params": params,
    }


def district_summary(sites: pd.DataFrame, cells: pd.DataFrame, hexes: pd.DataFrame, incidents: pd.DataFrame) -> dict[str, Any]:
    """One district's contribution to :func:`summary_of` (from its output layers)."""
    pop = cells["population"].to_numpy(float)
    cov = cells["covered"].to_numpy(bool)
    return {
        "sites": int(len(sites)),
        "sites_in_four_mountains": {str(k): int(v) for k, v in sites["fm_range"].value_counts().items()},
        "population_cells": int(len(cells)),
        "population": [math.fsum(pop)],
        "population_covered": [math.fsum(pop[cov])],
        "hot_cells_99": int((hexes["gi_bin"].to_numpy() == 3).sum()),
        "incidents": int(len(incidents)),
    }


# ====================================================================== writing


def write_district(out: str | Path, code: str, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """GeoParquet partition ``municipal_analysis/<layer>/district=<code>/part.parquet`` and ``gpkg/<code>.gpkg``
    under ``out`` (a local path or an fsspec URL, :func:`location`)."""
    from gis.export import write_gpkg

    fs, root = location(out, "municipal_analysis")
    for name, gdf in layers.items():
        folder = f"{root}/{name}/district={code}"
        fs.makedirs(folder, exist_ok=True)
        _put_parquet(fs, f"{folder}/part.parquet", gdf)
    fs.makedirs(f"{root}/gpkg", exist_ok=True)
    put_file(fs, f"{root}/gpkg/{code}.gpkg", lambda path: write_gpkg(dict(layers), path))


def as_layers(sites: gpd.GeoDataFrame, cells: pd.DataFrame, hexes: gpd.GeoDataFrame, incidents: pd.DataFrame, crs: Any) -> dict[str, gpd.GeoDataFrame]:
    """The four output layers of one district, in one column layout whichever engine built them."""
    sites = gpd.GeoDataFrame(sites.reset_index(drop=True), geometry="geometry", crs=crs)
    for c in ("district_code", "site_id", "tier", "status", "fm_level", "fm_range"):
        sites[c] = pd.Series(sites[c].to_numpy(dtype=object), dtype=object).where(sites[c].notna().to_numpy(), None)
    cells = cells.reset_index(drop=True)
    incidents = incidents.reset_index(drop=True)
    return {
        "sites": sites,
        "cells": gpd.GeoDataFrame(cells, geometry=gpd.points_from_xy(cells["x"], cells["y"]), crs=crs),
        "hexes": gpd.GeoDataFrame(hexes.drop(columns="cell_id", errors="ignore").reset_index(drop=True), geometry="geometry", crs=crs),
        "incidents": gpd.GeoDataFrame(incidents, geometry=gpd.points_from_xy(incidents["x"], incidents["y"]), crs=crs),
    }


# ====================================================================== 四山 and coverage


def fm_part(plan: Plan, i: int) -> gpd.GeoDataFrame:
    """Partition ``i``'s sites with their 四山 level and range; halo: neighbours' zones over the sites' box."""
    from gis.halo import fm_overlay

    s = read(plan, i, "sites")
    sites = gpd.GeoDataFrame(s.drop(columns=["x", "y"]), geometry=gpd.points_from_xy(s["x"], s["y"]), crs=plan.crs)
    box = _box(s)
    zones = [_zones(plan, i)]
    if box is not None:
        for j in near(plan.extents, box, 0.0, i):
            z = _zones(plan, j)
            zones.append(z[z.intersects(_box_polygon(box))])
    zz = gpd.GeoDataFrame(pd.concat(zones, ignore_index=True), geometry="geometry", crs=plan.crs)
    return sites.join(fm_overlay(sites, zz))


def _zones(plan: Plan, i: int) -> gpd.GeoDataFrame:
    """Partition ``i``'s staged 四山 polygons."""
    fs, folder = plan.scratch(i)
    return gpd.read_parquet(f"{folder}/zones.parquet", filesystem=fs)


def _box_polygon(box: Sequence[float]) -> Any:
    import shapely

    return shapely.box(*box)


def coverage_part(plan: Plan, i: int) -> pd.DataFrame:
    """Partition ``i``'s population cells with ``n_sites``, ``covered``, ``dist_m``;
    halo: the neighbours' covering sites within the radius *R* of the cells' box."""
    from gis.halo import cell_coverage

    R, tiers = plan.params["coverage_radius_m"], plan.params["coverage_tiers"]
    cells = read(plan, i, "cells").assign(district_code=plan.codes[i])
    box = _box(cells)
    ss = [read(plan, i, "sites")]
    if box is not None:
        ss += [read(plan, j, "sites", box, R) for j in near(plan.extents, box, R, i)]
    s = pd.concat(ss, ignore_index=True)
    s = s[s["tier"].isin(tiers)]
    return cells.join(cell_coverage(cells, s[["x", "y"]].to_numpy(float), R))


# ====================================================================== hexagons and Gi*


def _member(q: np.ndarray, r: np.ndarray, plan: Plan) -> np.ndarray:
    """Whether axial cells belong to the municipal grid (``HexGrid.covering`` of the union box)."""
    from gis.gistar import SQRT3

    minx, miny, maxx, maxy = plan.grid_bounds
    s = plan.params["hex_spacing_m"]
    dy = s * SQRT3 / 2.0
    r_lo, r_hi = int(np.floor((miny - miny) / dy)) - 1, int(np.ceil((maxy - miny) / dy)) + 1
    rf = r.astype(float)
    q_lo = np.floor((minx - minx) / s - rf / 2.0).astype(np.int64) - 1
    q_hi = np.ceil((maxx - minx) / s - rf / 2.0).astype(np.int64) + 1
    return (r >= r_lo) & (r <= r_hi) & (q >= q_lo) & (q <= q_hi)


def _subgrid(plan: Plan, box: Sequence[float]) -> Any:
    """The municipal grid's cells whose centres fall in ``box`` grown by one cell."""
    from gis.gistar import HexGrid

    u = plan.grid_bounds
    g = HexGrid.covering(box, plan.params["hex_spacing_m"], crs=plan.crs, origin=(u[0], u[1]))
    return g.subset(_member(g.q, g.r, plan))


def hex_part(plan: Plan, i: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """Partition ``i``'s Gi* working grid: owned cells plus every cell within the band, and counts.

    Returns ``(grid, counts, owned)``; ``owned`` indexes the cells partition ``i``
    owns (:func:`hex_owner`). Counts include the neighbours' incidents in the grid's box.
    """
    s = plan.params["hex_spacing_m"]
    band = plan.params["band_cells"] * s
    b = plan.bounds[i]
    cand = _subgrid(plan, (b[0] - plan.reach, b[1] - plan.reach, b[2] + plan.reach, b[3] + plan.reach))
    mine = hex_owner(cand.centres, plan.bounds, [i, *near(plan.bounds, b, 3 * plan.reach + 2 * s, i)]) == i
    if not mine.any():
        return cand.subset(mine), np.zeros(0), np.zeros(0, np.int64)
    c = cand.centres[mine]
    box = (c[:, 0].min() - band - s, c[:, 1].min() - band - s, c[:, 0].max() + band + s, c[:, 1].max() + band + s)
    g = _subgrid(plan, box)
    owned = np.flatnonzero(np.isin(g._key(g.q, g.r), cand._key(cand.q[mine], cand.r[mine])))
    inc = [read(plan, j, "incidents", box, s) for j in [i, *near(plan.extents, box, s, i)]]
    xy = pd.concat(inc, ignore_index=True)[["x", "y"]].to_numpy(float)
    return g, g.count(xy), owned


def hex_stats(plan: Plan, i: int) -> dict[str, Any]:
    """Sum, sum of squares and number of partition ``i``'s owned cells' counts (for :math:`\\bar X`, *S*)."""
    _, counts, owned = hex_part(plan, i)
    c = counts[owned]
    return {"sum": float(c.sum()), "sum2": float((c**2).sum()), "n": int(len(c))}


def hex_gi(plan: Plan, i: int, stats: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gi* of partition ``i``'s owned cells: ``(grid, counts, z, p, n_neighbours)`` (owned only)."""
    from scipy.special import ndtr

    from gis._errors import AnalysisError
    from gis.halo import gi_local

    g, counts, owned = hex_part(plan, i)
    n = int(stats["n"])
    xbar = stats["sum"] / n
    s = np.sqrt(max(stats["sum2"] / n - xbar**2, 0.0))
    if s == 0:
        raise AnalysisError("Gi* is undefined: every hexagon has the same count")
    band = plan.params["band_cells"] * plan.params["hex_spacing_m"]
    if not len(owned):
        e = np.zeros(0)
        return g.subset(np.zeros(len(g), bool)), e, e, e, np.zeros(0, np.int64)
    z, nn = gi_local(g, counts, owned, band, xbar, s, n)
    keep = np.zeros(len(g), bool)
    keep[owned] = True
    return g.subset(keep), counts[owned], z, 2.0 * ndtr(-np.abs(z)), nn


def hex_small_p(plan: Plan, i: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Partition ``i``'s Gi* p-values below the largest bin level α (for the global FDR cut-offs)."""
    from gis.gistar import GI_BIN_ALPHAS

    p = hex_gi(plan, i, stats)[3]
    return {"p": np.sort(p[p < max(GI_BIN_ALPHAS)])}


def hex_layer(plan: Plan, i: int, stats: dict[str, Any], cutoffs: Sequence[float]) -> gpd.GeoDataFrame:
    """Partition ``i``'s owned hexagons with a count or a significant bin (the single engine's rule)."""
    from gis.gistar import GI_BIN_ALPHAS

    g, counts, z, p, nn = hex_gi(plan, i, stats)
    level = np.zeros(len(z), dtype=np.int8)
    for k, (_a, cut) in enumerate(zip(GI_BIN_ALPHAS, cutoffs), start=1):
        level[p < cut] = k
    gi_bin = (np.sign(z).astype(np.int8) * level).astype(np.int8)
    keep = (counts > 0) | (gi_bin != 0)
    return g.subset(keep).to_geodataframe(count=counts[keep], gi_z=z[keep], gi_p=p[keep], gi_bin=gi_bin[keep], n_neighbours=nn[keep])


# ====================================================================== DBSCAN across borders


def db_local(plan: Plan, i: int) -> dict[str, Any]:
    """Partition ``i``'s DBSCAN pieces (:func:`gis.halo.dbscan_local`, halo 2ε) compressed to components.

    The core points seen here (own, and halo points within ε of an own point) are
    joined into *local components* (node ids ``i·2³² + c``). Returns ``own_node``
    (node of each own incident: its core component, or its nearest core point's for
    a border point; −1 noise), the node ``table`` (id, lowest global id, whether
    it holds an own incident) and ``requests``: per neighbour *j*, the halo core
    points of *j* seen here with their node here (to be joined with *j*'s nodes).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from gis.halo import _kind_xy, dbscan_local

    eps, ms = plan.params["eps_m"], int(plan.params["min_samples"])
    own = read(plan, i, "incidents")
    box = _box(own)
    parts, gids = [own], [plan.offsets[i] + own["row"].to_numpy(np.int64)]
    for j in near(plan.extents, box, 2 * eps, i) if box is not None else []:
        h = read(plan, j, "incidents", box, 2 * eps)
        parts.append(h)
        gids.append(plan.offsets[j] + h["row"].to_numpy(np.int64))
    allp = pd.concat(parts, ignore_index=True)
    gid = np.concatenate(gids)
    pc = dbscan_local(_kind_xy(allp, plan.kinds), gid, len(own), eps, ms)
    nodes = np.unique(pc["core_gid"])
    a, b = np.searchsorted(nodes, pc["edge_a"]), np.searchsorted(nodes, pc["edge_b"])
    ncomp, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(nodes),) * 2), directed=False)
    node_of = (np.int64(i) << 32) + comp.astype(np.int64)
    lo, hi = plan.offsets[i], plan.offsets[i + 1]
    own_node = np.full(len(own), -1, np.int64)
    is_own = (nodes >= lo) & (nodes < hi)
    own_node[nodes[is_own] - lo] = node_of[is_own]
    own_node[pc["border_gid"] - lo] = node_of[np.searchsorted(nodes, pc["border_core"])]
    used = np.unique(own_node[own_node >= 0])
    min_gid = pd.Series(nodes).groupby(comp).min().reindex(range(ncomp)).to_numpy(np.int64)
    table = {"node": (np.int64(i) << 32) + np.arange(ncomp, dtype=np.int64), "min_gid": min_gid}
    table["has_own"] = np.isin(table["node"], used)
    owner = np.searchsorted(plan.offsets, nodes, side="right") - 1
    req = {int(j): (nodes[owner == j], node_of[owner == j]) for j in np.unique(owner[~is_own])}
    return {"own_node": own_node, "table": table, "requests": req}


def db_request(state: dict[str, Any], j: int) -> tuple[np.ndarray, np.ndarray]:
    """The halo core points of partition ``j`` that a partition saw, with their nodes there."""
    e = np.zeros(0, np.int64)
    return state["requests"].get(j, (e, e))


def db_resolve(plan: Plan, j: int, state: dict[str, Any], *requests: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Join nodes across borders: a halo core point *g* seen by *i* is an own core point of ``j``."""
    a = [state["own_node"][g - plan.offsets[j]] for g, _ in requests]
    b = [n for _, n in requests]
    e = np.zeros(0, np.int64)
    return {"a": np.concatenate(a) if a else e, "b": np.concatenate(b) if b else e}


def db_table(state: dict[str, Any]) -> dict[str, Any]:
    """A partition's node table as a reducible piece."""
    return {"tables": [state["table"]]}


def db_assemble(tables: dict[str, Any], edges: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Global cluster labels of every node (on a worker): components of the nodes joined across borders.

    Clusters are numbered by their lowest global incident id (as
    :func:`gis.halo.dbscan_assemble`); a cluster is cross-border when nodes of
    several partitions hold own incidents of it. Returns ``node`` (sorted),
    ``label``, ``clusters`` and ``cross_border_clusters``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = tables["tables"]
    node = np.concatenate([x["node"] for x in t]) if t else np.zeros(0, np.int64)
    min_gid = np.concatenate([x["min_gid"] for x in t]) if t else np.zeros(0, np.int64)
    has_own = np.concatenate([x["has_own"] for x in t]) if t else np.zeros(0, bool)
    order = np.argsort(node)
    node, min_gid, has_own = node[order], min_gid[order], has_own[order]
    a = np.concatenate([np.searchsorted(node, e["a"]) for e in edges]) if edges else np.zeros(0, np.int64)
    b = np.concatenate([np.searchsorted(node, e["b"]) for e in edges]) if edges else np.zeros(0, np.int64)
    _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(node),) * 2), directed=False)
    first = pd.Series(min_gid).groupby(comp).min()
    rank = pd.Series(np.arange(len(first)), index=first.sort_values(kind="stable").index)
    label = rank.reindex(comp).to_numpy(np.int64)
    part = node >> 32
    spans = pd.Series(part[has_own]).groupby(label[has_own]).nunique()
    return {"node": node, "label": label, "clusters": int(len(first)), "cross_border_clusters": int((spans > 1).sum())}


def db_counts(labels: dict[str, Any]) -> dict[str, int]:
    """The cluster counts of :func:`db_assemble` (what the client receives)."""
    return {"clusters": labels["clusters"], "cross_border_clusters": labels["cross_border_clusters"]}


# ====================================================================== finishing


def db_own_labels(state: dict[str, Any], labels: dict[str, Any]) -> dict[str, np.ndarray]:
    """DBSCAN label (−1 noise) of each of a partition's incidents (its nodes' labels, :func:`db_assemble`)."""
    own = state["own_node"]
    lab = np.full(len(own), -1, np.int64)
    ok = own >= 0
    lab[ok] = labels["label"][np.searchsorted(labels["node"], own[ok])]
    return {"cluster": lab}


def finish(plan: Plan, i: int, stats: dict[str, Any], cutoffs: Sequence[float], own_labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Compute and write partition ``i``'s output layers (``own_labels``: the cluster of each of its incidents, and
    with ``scan`` whether it is in a significant one: :func:`db_own_labels`, :func:`sc_own_labels`); return its
    summary (:func:`district_summary`)."""
    code = plan.codes[i]
    sites = fm_part(plan, i)
    cells = coverage_part(plan, i)
    hexes = hex_layer(plan, i, stats, cutoffs)
    inc = read(plan, i, "incidents").drop(columns="row").assign(district_code=code)
    inc["cluster"] = own_labels["cluster"]
    if "significant" in own_labels:
        inc["cluster_significant"] = own_labels["significant"]
    layers = as_layers(sites, cells, hexes, inc, plan.crs)
    write_district(plan.out, code, layers)
    return district_summary(layers["sites"], layers["cells"], layers["hexes"], layers["incidents"])


# ====================================================================== scan clusters across borders


class Reads:
    """One task's reads of the partitions' incidents (every kind): a partition is read again (:func:`read`)
    only for a region its last read does not cover; otherwise its rows are filtered from that read."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.got: dict[int, tuple[tuple[float, ...] | None, pd.DataFrame]] = {}

    def get(self, j: int, box: Sequence[float] | None, halo: float) -> pd.DataFrame:
        """Partition ``j``'s incidents within ``halo`` of ``box`` (all of them without ``box``)."""
        want = None if box is None else (box[0] - halo, box[1] - halo, box[2] + halo, box[3] + halo)
        have = self.got.get(j)
        if have is not None and (have[0] is None or (want is not None and have[0][0] <= want[0] and have[0][1] <= want[1]
                                                     and have[0][2] >= want[2] and have[0][3] >= want[3])):  # fmt: skip
            f = have[1]
            return f if want is None else f[(f["x"] >= want[0]) & (f["x"] <= want[2]) & (f["y"] >= want[1]) & (f["y"] <= want[3])]
        f = read(self.plan, j, "incidents", box, halo) if box is not None else read(self.plan, j, "incidents")
        self.got[j] = (want, f)
        return f

    def warm(self, box: Sequence[float], halo: float) -> None:
        """Read once every partition within ``halo`` of ``box`` (the later reads inside it are filtered from it)."""
        for j in range(len(self.plan.codes)):
            if _meets(self.plan.extents[j], box, halo):
                self.get(j, box, halo)


def _meets(extent: Sequence[float], box: Sequence[float], halo: float) -> bool:
    return bool(extent[0] <= box[2] + halo and extent[2] >= box[0] - halo and extent[1] <= box[3] + halo and extent[3] >= box[1] - halo)


class PlanSource:
    """The incidents of one kind as :mod:`gis.cluster_tiles` reads them: a partition's own, or those of every
    partition within a halo of a box (row-filtered Parquet reads through the task's :class:`Reads`); gid =
    global incident id."""

    def __init__(self, plan: Plan, kind: str, reads: Reads | None = None) -> None:
        self.plan, self.kind, self.boxes = plan, kind, plan.extents
        self.reads = reads if reads is not None else Reads(plan)

    def _points(self, frames: list[tuple[int, pd.DataFrame]]) -> Any:
        from gis.cluster_tiles import Points

        fs = [(j, f[f["kind"].astype(str) == self.kind]) for j, f in frames]
        gid = np.concatenate([self.plan.offsets[j] + f["row"].to_numpy(np.int64) for j, f in fs]) if fs else np.zeros(0, np.int64)
        xy = np.vstack([f[["x", "y"]].to_numpy(float) for _, f in fs]) if fs else np.zeros((0, 2))
        days = np.concatenate([f["days"].to_numpy(float) for _, f in fs]) if fs else np.zeros(0)
        order = np.argsort(gid, kind="stable")
        return Points(gid[order], xy[order], days[order])

    def own(self, t: int) -> Any:
        return self._points([(t, self.reads.get(t, None, 0.0))])

    def near(self, box: np.ndarray, halo: float) -> Any:
        hit = [j for j in range(len(self.boxes)) if _meets(self.boxes[j], box, halo)]
        return self._points([(j, self.reads.get(j, box, halo)) for j in hit])


def _scan_cfg() -> tuple[Any, Any, float | None]:
    """Scan parameters, significance parameters and ``max_spread_m`` of ``layers/hotspots.yaml``."""
    from gis.hotspots import cluster_params, scan_params, significance_params

    cfg = cluster_params()
    return scan_params(cfg), significance_params(cfg), None if cfg["max_spread_m"] is None else float(cfg["max_spread_m"])


def sc_cores(plan: Plan, i: int) -> dict[str, Any]:
    """Step 1 on partition ``i``, every kind: its cores (:func:`gis.cluster_tiles.tile_cores`) and incidents per kind."""
    from gis.cluster_tiles import tile_cores

    p, _, _ = _scan_cfg()
    rd = Reads(plan)
    n = rd.get(i, None, 0.0)["kind"].astype(str).value_counts()
    return {k: {"n": int(n.get(k, 0)), "cores": tile_cores(PlanSource(plan, k, rd), i, p)} for k in plan.kinds}


def sc_count(piece: dict[str, Any]) -> dict[str, Any]:
    """A partition's incidents and cores per kind (two numbers each)."""
    return {k: (v["n"], len(v["cores"].gid)) for k, v in piece.items()}


def sc_prefix(*counts: dict[str, Any]) -> dict[str, Any]:
    """Per kind run (more than ``min_cluster_size`` incidents and some cores): the cores of the partitions before
    each (a core's rank in the whole run = those + its rank in its partition: partitions hold consecutive gids)."""
    p, _, _ = _scan_cfg()
    out = {}
    for k in counts[0] if counts else {}:
        n, c = np.array([x[k][0] for x in counts]), np.array([x[k][1] for x in counts], dtype=np.int64)
        if n.sum() > p.min_cluster_size and c.sum():
            out[k] = np.concatenate([[0], np.cumsum(c)])
    return out


def sc_halo(piece: dict[str, Any], j: int, box: Sequence[float], prefix: dict[str, Any]) -> dict[str, Any]:
    """Partition ``j``'s cores within :func:`gis.cluster_tiles.link_halo` of ``box``, with their whole-run ranks."""
    from gis.cluster_tiles import in_box, link_halo

    p, _, _ = _scan_cfg()
    out = {}
    for k, start in prefix.items():
        c = piece[k]["cores"]
        m = in_box(c.xy, np.asarray(box, float), link_halo(p))
        out[k] = (c.take(m), start[j] + np.flatnonzero(m))
    return out


def sc_links(plan: Plan, i: int, prefix: dict[str, Any], piece: dict[str, Any], *halos: dict[str, Any]) -> dict[str, Any]:
    """Step 2 on partition ``i``: quick-shift parents and local groups (:func:`gis.cluster_tiles.tile_links`)."""
    from gis.cluster_tiles import concat_cores, tile_links

    p, _, _ = _scan_cfg()
    out = {}
    for k, start in prefix.items():
        own = piece[k]["cores"]
        halo = concat_cores([h[k][0] for h in halos])
        hr = np.concatenate([h[k][1] for h in halos]) if halos else np.zeros(0, np.int64)
        hr = hr[np.argsort(np.concatenate([h[k][0].gid for h in halos]), kind="stable")] if halos else hr
        rank = np.concatenate([start[i] + np.arange(len(own.gid)), hr]).astype(np.int64)
        out[k] = tile_links(i, own, halo, rank, np.delete(plan.extents, i, axis=0), p)
    return out


def sc_exchange(state: dict[str, Any]) -> dict[str, Any]:
    """What a partition sends to the join (:func:`gis.cluster_tiles.exchange`), per kind."""
    from gis.cluster_tiles import exchange

    return {k: exchange(v) for k, v in state.items()}


def sc_join(*parts: dict[str, Any]) -> dict[str, Any]:
    """The join of every kind (:func:`gis.cluster_tiles.join_links`)."""
    from gis.cluster_tiles import join_links

    return {k: join_links([x[k] for x in parts]) for k in (parts[0] if parts else {})}


def sc_label(state: dict[str, Any], joined: dict[str, Any]) -> dict[str, Any]:
    """A partition's cores with their roots and groups, per kind."""
    from gis.cluster_tiles import label_cores

    return {k: label_cores(v, joined[k]) for k, v in state.items()}


def sc_peaks(plan: Plan, i: int, labelled: dict[str, Any]) -> dict[str, Any]:
    """Step 3 on partition ``i``: background at its quick-shift roots (:func:`gis.cluster_tiles.tile_peaks`)."""
    from gis.cluster_tiles import tile_peaks

    p, _, _ = _scan_cfg()
    rd = Reads(plan)
    rd.warm(plan.extents[i], p.annulus_m[1])  # the roots are the partition's own cores
    return {k: tile_peaks(PlanSource(plan, k, rd), c, p) for k, c in labelled.items()}


def sc_peak_table(*peaks: dict[str, Any]) -> dict[str, Any]:
    """Every root with its background, in gid order, per kind (a few per site)."""
    from gis.cluster_tiles import concat_cores

    return {k: concat_cores([x[k] for x in peaks]) for k in (peaks[0] if peaks else {})}


def sc_fit_box(plan: Plan, i: int, joined: dict[str, Any]) -> list[float] | None:
    """The box of the cores of the groups partition ``i`` fits, all kinds (None: none)."""
    from gis.cluster_tiles import owned_groups

    lo, hi = plan.offsets[i], plan.offsets[i + 1]
    boxes = [owned_groups(j, np.arange(lo, hi))[1] for j in joined.values()]
    b = np.array([x for x in boxes if np.isfinite(x).all()])
    return [float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())] if len(b) else None


def sc_fit_cores(labelled: dict[str, Any], box: Sequence[float]) -> dict[str, Any]:
    """A partition's labelled cores within 2 × ``attach_m`` of a fitting partition's ``box``."""
    from gis.cluster_tiles import in_box

    p, _, _ = _scan_cfg()
    return {k: c.take(in_box(c.xy, np.asarray(box, float), 2 * p.attach_m)) for k, c in labelled.items()}


def sc_fits(plan: Plan, i: int, joined: dict[str, Any], peaks: dict[str, Any], *cores: dict[str, Any]) -> dict[str, Any]:
    """Step 4 on partition ``i``: the groups whose lowest core is its own, fitted (:func:`gis.cluster_tiles.tile_fits`)."""
    from gis.cluster_tiles import concat_cores, owned_groups, tile_fits

    p, _, _ = _scan_cfg()
    own = np.arange(plan.offsets[i], plan.offsets[i + 1])
    rd = Reads(plan)
    box = sc_fit_box(plan, i, joined)
    if box is not None:
        rd.warm(box, 2 * p.attach_m)
    return {k: tile_fits(PlanSource(plan, k, rd), owned_groups(j, own)[0], concat_cores([c[k] for c in cores]), peaks[k], p)
            for k, j in joined.items()}  # fmt: skip


def sc_number(plan: Plan, *fits: dict[str, Any]) -> dict[str, Any]:
    """Labels of every clustered incident (numbered by lowest global id, :func:`gis.cluster_tiles.by_lowest`)
    and the counts: clusters, and those holding incidents of several partitions."""
    from gis.cluster_tiles import by_lowest, numbered_members

    p, _, spread = _scan_cfg()
    gids, labs, kinds, next_id = [], [], [], 0
    for k in sorted({k for f in fits for k in f}):
        g, lab = numbered_members([f[k] for f in fits if k in f], p.min_cluster_size, spread)
        gids.append(g)
        labs.append(lab + next_id)
        kinds.append(np.full(len(g), plan.kinds.index(k), dtype=np.int64))
        next_id += int(lab.max()) + 1 if len(lab) else 0
    gid = np.concatenate(gids) if gids else np.zeros(0, np.int64)
    label = by_lowest(gid, np.concatenate(labs) if labs else np.zeros(0, np.int64))
    o = np.argsort(gid)
    gid, label, kind = gid[o], label[o], (np.concatenate(kinds) if kinds else np.zeros(0, np.int64))[o]
    part = np.searchsorted(plan.offsets, gid, side="right") - 1
    spans = pd.Series(part).groupby(label).nunique()
    return {"gid": gid, "label": label, "kind": kind, "clusters": int(len(spans)), "cross_border_clusters": int((spans > 1).sum())}


def sc_hull(plan: Plan, i: int) -> dict[str, Any]:
    """Vertices of the convex hull of partition ``i``'s incidents, per kind (:func:`gis.cluster_tiles.tile_hull`)."""
    from gis.cluster_tiles import tile_hull

    rd = Reads(plan)
    return {k: tile_hull(PlanSource(plan, k, rd), i) for k in plan.kinds}


def sc_windows(*hulls: dict[str, Any]) -> dict[str, Any]:
    """Each kind's observation window (:func:`gis.cluster_tiles.kind_window`)."""
    from gis.cluster_tiles import kind_window

    return {k: kind_window([h[k] for h in hulls]) for k in (hulls[0] if hulls else {}) if any(len(h[k]) for h in hulls)}


def sc_significance(plan: Plan, fits: dict[str, Any], numbered: dict[str, Any], windows: dict[str, Any]) -> dict[str, Any]:
    """Observed, expected and p-value of the clusters a partition fitted (:func:`gis.cluster_tiles.tile_significance`),
    per kind, indexed by their municipal label."""
    from gis.cluster_tiles import tile_significance

    _, sp, _ = _scan_cfg()
    out, rd = {}, Reads(plan)
    g, lab, kind = numbered["gid"], numbered["label"], numbered["kind"]
    for k, f in fits.items():
        at = np.searchsorted(g, f.gid)
        kept = (at < len(g)) & (g[np.minimum(at, len(g) - 1)] == f.gid) if len(g) else np.zeros(len(f.gid), bool)
        mem = pd.DataFrame({"gid": f.gid[kept], "x": f.xy[kept, 0], "y": f.xy[kept, 1], "label": lab[at[kept]]})
        if len(mem):
            out[k] = tile_significance(PlanSource(plan, k, rd), mem, g[kind == plan.kinds.index(k)], sp, windows[k])
    return out


def sc_flags(plan: Plan, numbered: dict[str, Any], windows: dict[str, Any], *sigs: dict[str, Any]) -> np.ndarray:
    """Whether each municipal cluster passes the BH step over all clusters (:func:`gis.cluster_scan.flag_significant`;
    the places looked at summed over the kinds in the whole run's order, by their first clustered incident)."""
    from gis.cluster_scan import flag_significant
    from gis.cluster_tiles import search_windows

    _, sp, _ = _scan_cfg()
    g, kind = numbered["gid"], numbered["kind"]
    first = pd.Series(g).groupby(kind).min().sort_values()
    tables, w = [], 0.0
    for kc in first.index:
        k = plan.kinds[int(kc)]
        t = pd.concat([s[k] for s in sigs if k in s])
        tables.append(t)
        w += search_windows(t, windows[k], sp)
    if not tables:
        return np.zeros(0, bool)
    flags = flag_significant(pd.concat(tables), w, sp.alpha)["significant"]
    return flags.reindex(np.arange(numbered["clusters"])).fillna(False).to_numpy(bool)


def sc_own_labels(plan: Plan, i: int, numbered: dict[str, Any], flags: np.ndarray) -> dict[str, np.ndarray]:
    """Cluster label (−1 noise) of each of partition ``i``'s incidents, in row order, and whether it is in a
    significant cluster."""
    n = int(plan.offsets[i + 1] - plan.offsets[i])
    lab = np.full(n, -1, np.int64)
    g = numbered["gid"]
    m = (g >= plan.offsets[i]) & (g < plan.offsets[i + 1])
    lab[g[m] - plan.offsets[i]] = numbered["label"][m]
    return {"cluster": lab, "significant": np.where(lab >= 0, flags[np.maximum(lab, 0)] if len(flags) else False, False)}
