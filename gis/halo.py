"""Halo kernels of the municipal engine: one district partition and the analyses that
cross its border, each exact when given the neighbours' points within the distance it
looks at (the *halo*). Used by both engines (:mod:`gis.parallel`, :mod:`gis.partitioned`).

DBSCAN (Ester et al. 1996): point *p* is a core point iff
:math:`|\\{q : \\lVert p-q \\rVert \\le \\varepsilon\\}| \\ge` ``min_samples`` (itself
included); clusters are the connected components of the graph of core points within
ε of each other; a non-core point within ε of a core point is a border point and
joins the cluster of its nearest core point (ties: lowest global index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

#: Coordinate offset (m) separating incident kinds, so one DBSCAN pass clusters each
#: kind on its own (points of different kinds are never within eps).
KIND_OFFSET_M = 1.0e7
LEVEL_RANK = {"general_control": 1, "key_control": 2, "no_build": 3}


# ===================================================================== partitions


@dataclass
class Partition:
    """One district's layers in the common metric CRS (the unit of work)."""

    code: str
    name: str
    bounds: tuple[float, float, float, float]
    sites: gpd.GeoDataFrame
    incidents: pd.DataFrame  # incident_id, kind, x, y
    cells: pd.DataFrame  # population, x, y
    zones: gpd.GeoDataFrame  # four_mountains: level, name


def load_partition(project: str | Path, code: str, crs: Any) -> Partition:
    """Load one district (:func:`gis.district.load_district`) into the common CRS."""
    from gis.district import load_district

    d = load_district(project)
    outline = gpd.GeoSeries([d.boundary], crs=d.crs).to_crs(crs)
    sites = d.sites[["site_id", "tier", "status", "geometry"]].to_crs(crs)
    sites.insert(0, "district_code", code)
    inc = d.incidents.to_crs(crs) if d.incidents is not None else None
    incidents = pd.DataFrame(
        {
            "incident_id": inc["incident_id"].astype(str).to_numpy() if inc is not None else [],
            "kind": inc["kind"].astype(str).to_numpy() if inc is not None else [],
            "x": inc.geometry.x.to_numpy() if inc is not None else [],
            "y": inc.geometry.y.to_numpy() if inc is not None else [],
            "days": _days(inc) if inc is not None else [],  # the scan mixture's time coordinate
        }
    )
    pts = d.population_points().to_crs(crs) if (d.population is not None or d.population_raster is not None) else None
    cells = pd.DataFrame(
        {
            "population": pts["population"].to_numpy(float) if pts is not None else [],
            "x": pts.geometry.x.to_numpy() if pts is not None else [],
            "y": pts.geometry.y.to_numpy() if pts is not None else [],
        }
    )
    z = d.zones
    fm = z[z["zone_type"].astype(str) == "four_mountains"][["level", "name", "geometry"]] if z is not None else None
    fm = fm.to_crs(crs).reset_index(drop=True) if fm is not None else gpd.GeoDataFrame({"level": [], "name": []}, geometry=[], crs=crs)
    return Partition(code, d.name, tuple(float(v) for v in outline.total_bounds), sites.reset_index(drop=True), incidents, cells, fm)


def _days(inc: pd.DataFrame) -> np.ndarray:
    """Each incident's date in days since 1970 (:func:`gis.hotspots.incident_days`; no date: 0)."""
    if "date" not in inc.columns:
        return np.zeros(len(inc))
    from gis.hotspots import incident_days

    return incident_days(inc)


def _within(x: np.ndarray, y: np.ndarray, bounds: tuple[float, float, float, float], halo: float) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    return (x >= x0 - halo) & (x <= x1 + halo) & (y >= y0 - halo) & (y <= y1 + halo)


# ============================================================ kernels (one partition)


def fm_overlay(points: gpd.GeoDataFrame, zones: gpd.GeoDataFrame) -> pd.DataFrame:
    """Strictest 四山 level and its range at each point (compliance overlay).

    Returns a frame on ``points.index`` with ``fm_level`` and ``fm_range`` (None
    outside every zone); on ties of level the range first in name order wins.
    """
    out = pd.DataFrame({"fm_level": pd.Series(None, index=points.index, dtype=object),
                        "fm_range": pd.Series(None, index=points.index, dtype=object)})
    if len(points) == 0 or len(zones) == 0:
        return out
    pi, zj = shapely.STRtree(zones.geometry.values).query(points.geometry.values, predicate="intersects")
    if len(pi) == 0:
        return out
    hits = pd.DataFrame({"p": pi, "rank": zones["level"].map(LEVEL_RANK).fillna(0).to_numpy()[zj],
                         "level": zones["level"].to_numpy()[zj], "name": zones["name"].astype(str).to_numpy()[zj]})
    best = hits.sort_values(["p", "rank", "name"], ascending=[True, False, True], kind="stable").drop_duplicates("p")
    out.iloc[best["p"].to_numpy(), 0] = best["level"].to_numpy()
    out.iloc[best["p"].to_numpy(), 1] = best["name"].to_numpy()
    return out


def cell_coverage(cells: pd.DataFrame, site_xy: np.ndarray, radius: float) -> pd.DataFrame:
    """Sites within ``radius`` of each population cell, and the nearest one's distance.

    ``n_sites`` = :math:`|\\{s : \\lVert c-s \\rVert \\le R\\}|`, ``covered`` = ``n_sites > 0``,
    ``dist_m`` the nearest distance when ≤ R (NaN otherwise).
    """
    xy = cells[["x", "y"]].to_numpy(float)
    if len(site_xy) == 0 or len(xy) == 0:
        return pd.DataFrame({"n_sites": np.zeros(len(xy), np.int64), "covered": np.zeros(len(xy), bool),
                             "dist_m": np.full(len(xy), np.nan)}, index=cells.index)
    tree = cKDTree(site_xy)
    n = tree.query_ball_point(xy, radius, return_length=True).astype(np.int64)
    d, _ = tree.query(xy, k=1, distance_upper_bound=radius)
    return pd.DataFrame({"n_sites": n, "covered": n > 0, "dist_m": np.where(np.isfinite(d), d, np.nan)}, index=cells.index)


def gi_local(grid: Any, counts: np.ndarray, owned: np.ndarray, band: float, xbar: float, s: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gi* z-scores and neighbour counts of the ``owned`` cells of a (sub)grid.

    The grid must hold every cell within ``band`` of an owned cell (the halo);
    :math:`\\bar X`, *S* and *n* are the global statistics, so the result is the
    global Gi* (:func:`gis.gistar.gi_star`):

    .. math:: G_i^* = \\frac{\\sum_j w_{ij}x_j - \\bar X W_i}{S\\sqrt{(n S_{1i} - W_i^2)/(n-1)}}
    """
    from gis.gistar import lattice_weights, with_self_weight

    w = lattice_weights(grid, band)
    ws = with_self_weight(w, 1.0)[owned]
    wi = np.asarray(ws.sum(axis=1)).ravel()
    s1 = np.asarray(ws.multiply(ws).sum(axis=1)).ravel()
    lag = ws @ counts
    den = s * np.sqrt(np.maximum(n * s1 - wi**2, 0.0) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(den > 0, (lag - xbar * wi) / den, 0.0)
    return z, np.diff(ws.indptr).astype(np.int64)


def dbscan_local(xy: np.ndarray, gid: np.ndarray, n_own: int, eps: float, min_samples: int) -> dict[str, np.ndarray]:
    """DBSCAN pieces of one partition: own points first, then the halo (≤ 2·eps away).

    Returns ``core_gid`` (global ids of points that are core here — exact for own
    points and for halo points within eps of an own point, never a false core),
    ``edge_a``/``edge_b`` (global ids of core pairs within eps seen here) and, for
    own non-core points within eps of a core point, ``border_gid`` /
    ``border_core`` (their nearest core point; ties by lowest global id).
    """
    if len(xy) == 0:
        e = np.zeros(0, np.int64)
        return {"core_gid": e, "edge_a": e, "edge_b": e, "border_gid": e, "border_core": e}
    tree = cKDTree(xy)
    nb = tree.query_ball_point(xy, eps, return_length=True)
    core = nb >= min_samples
    # exact core status: own points and halo points within eps of an own point
    exact = np.zeros(len(xy), bool)
    exact[:n_own] = True
    if n_own < len(xy) and n_own:
        d, _ = cKDTree(xy[:n_own]).query(xy[n_own:], k=1, distance_upper_bound=eps)
        exact[n_own:] = np.isfinite(d)
    core &= exact
    ci = np.flatnonzero(core)
    pairs = cKDTree(xy[ci]).query_pairs(eps, output_type="ndarray") if len(ci) > 1 else np.zeros((0, 2), np.int64)
    ea, eb = gid[ci[pairs[:, 0]]], gid[ci[pairs[:, 1]]]
    own_nc = np.flatnonzero(~core[:n_own])
    bg = bc = np.zeros(0, np.int64)
    if len(own_nc) and len(ci):
        m = cKDTree(xy[own_nc]).sparse_distance_matrix(cKDTree(xy[ci]), eps, output_type="coo_matrix")
        if m.nnz:
            # explicit zeros (coincident points) are kept by sparse_distance_matrix's coo output
            rows, cols, dist = m.row, m.col, m.data
            order = np.lexsort((gid[ci[cols]], dist, rows))
            rows, cols = rows[order], cols[order]
            first = np.unique(rows, return_index=True)[1]
            bg, bc = gid[own_nc[rows[first]]], gid[ci[cols[first]]]
    return {"core_gid": gid[ci], "edge_a": ea, "edge_b": eb, "border_gid": bg, "border_core": bc}


def dbscan_assemble(n: int, pieces: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """Global DBSCAN labels from the partition pieces (−1 = noise).

    Core points: connected components of the union of the core graphs; labels are
    numbered by the lowest global id in each cluster, so they do not depend on the
    partitioning. Border points take their nearest core point's label.
    """
    core = np.zeros(n, bool)
    for p in pieces:
        core[p["core_gid"]] = True
    ea = np.concatenate([p["edge_a"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    eb = np.concatenate([p["edge_b"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    adj = coo_matrix((np.ones(len(ea)), (ea, eb)), shape=(n, n))
    _, comp = connected_components(adj, directed=False)
    labels = np.full(n, -1, dtype=np.int64)
    ci = np.flatnonzero(core)
    if len(ci):
        first_of = pd.Series(ci).groupby(comp[ci]).min()  # lowest global id per component
        order = first_of.sort_values()
        rank = pd.Series(np.arange(len(order)), index=order.index)
        labels[ci] = rank.reindex(comp[ci]).to_numpy()
    for p in pieces:
        labels[p["border_gid"]] = labels[p["border_core"]]
    return labels


def dbscan_labels(xy: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """Single-process DBSCAN with the deterministic border rule (one partition, no halo)."""
    gid = np.arange(len(xy), dtype=np.int64)
    return dbscan_assemble(len(xy), [dbscan_local(xy, gid, len(xy), eps, min_samples)])


def _kind_xy(inc: pd.DataFrame, kinds: Sequence[str]) -> np.ndarray:
    k = pd.Categorical(inc["kind"], categories=list(kinds)).codes.astype(float)
    return np.column_stack([inc["x"].to_numpy(float) + k * KIND_OFFSET_M, inc["y"].to_numpy(float)])
