"""Service areas (服务范围), population coverage, targets (目标任务) and coverage gaps.

For each tier a service standard (``layers/coverage.yaml``: collection and drop-off
points 500 m walk — GB 50180-2018 10-minute living circle; transfer stations by
drive distance; the sorting centre district-wide) is measured two ways:

* **Euclidean**: straight-line distance to the nearest site (KD-tree).
* **Network**: one multi-source Dijkstra pass over the road graph
  (:mod:`scipy.sparse.csgraph`) from a virtual super-source joined to every site's
  nearest node by an edge as long as the site's snap distance. It gives every node
  its distance to the nearest site — never one isochrone per site. A resident
  cell's network distance is

  .. math:: d_j = s_j + \\min_f \\bigl(s_f + D(n_j \\to n_f)\\bigr)

  with :math:`s_j`, :math:`s_f` the straight-line snap distances of the cell and
  the site to their nearest nodes :math:`n_j`, :math:`n_f` and :math:`D` the
  shortest-path length from the resident's node to the site's node (on the
  driving graph, one-way streets are followed in the resident → site direction).
  A cell is covered when :math:`d_j \\le L`, the standard's distance.

Only sites that are *active* and *compliant* count (see :func:`eligible_sites`).
"""

from __future__ import annotations

import heapq
import os

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis._errors import AnalysisError, CatalogError
from gis.landuse import classes_for_project
from gis.params import ServiceAreaDisplay
from gis.routing import (
    NetworkCSR,
    NodeDistances,
    euclidean_distances,
    multi_source_distances,
    network_point_distances,
    pairs_within,
    points_xy,
)

if TYPE_CHECKING:
    from gis.district import District

#: Tiers counted by default in target rows that do not name theirs.
DEFAULT_TARGET_TIERS: tuple[str, ...] = (
    "sorting_centre",
    "transfer_station",
    "collection_point",
    "drop_off_point",
)

METRICS: tuple[str, ...] = (
    "count",
    "township_presence",
    "population_coverage",
    "household_coverage",
    "households_per_point",
    "townships_meeting_norm",
)


# ---------------------------------------------------------------------------
# coverage of one standard
# ---------------------------------------------------------------------------


@dataclass
class Standard:
    """A tier's service standard (``service_standards.<tier>`` in coverage.yaml)."""

    tier: str
    mode: str  # walk | drive | euclidean | district
    distance_m: float | None
    label_zh: str = ""

    @classmethod
    def from_config(cls, tier: str, config: Mapping[str, Any]) -> Standard:
        """Read ``service_standards.<tier>``; a bad entry raises CatalogError."""
        std = (config.get("service_standards") or {}).get(tier)
        if std is None:
            raise CatalogError("coverage", f"service_standards.{tier}", "no service standard for this tier")
        mode = str(std.get("mode", "walk"))
        if mode not in ("walk", "drive", "euclidean", "district"):
            raise CatalogError("coverage", f"service_standards.{tier}.mode",
                               "must be walk, drive, euclidean or district")
        dist = std.get("distance_m")
        if mode != "district":
            try:
                dist = float(dist)
            except (TypeError, ValueError):
                raise CatalogError("coverage", f"service_standards.{tier}.distance_m",
                                   "must be a positive number of metres") from None
            if not dist > 0:
                raise CatalogError("coverage", f"service_standards.{tier}.distance_m",
                                   "must be a positive number of metres")
        return cls(tier, mode, dist, str(std.get("label_zh", "")))


@dataclass
class CoverageResult:
    """Coverage of residents by one tier's sites under its service standard.

    Attributes
    ----------
    standard
        The service standard applied.
    points
        The population cells: ``population``, ``households`` (the township's 户数
        spread over its cells in proportion to population), ``township``,
        ``dist_euclidean``, ``dist_network`` (``inf`` when unreachable or no road
        network), ``snap_m``, ``site`` (index into ``sites`` of the serving site,
        -1 none), ``covered`` (by network distance where a network was given, else
        Euclidean) and ``covered_euclidean``.
    sites
        The sites counted (active and compliant), in their given order.
    by_township
        Per township: ``population``, ``covered_population``, ``population_share``,
        ``households``, ``covered_households``, ``household_share``,
        ``population_share_euclidean``.
    population_covered_share, household_covered_share, population_covered_share_euclidean
        District-wide shares (``household_covered_share`` is NaN without 户数).
    service_areas
        One polygon per site (its catchment within the standard, for the map).
    method
        ``network`` or ``euclidean`` (what ``covered`` used).
    """

    standard: Standard
    points: gpd.GeoDataFrame
    sites: gpd.GeoDataFrame
    by_township: pd.DataFrame
    population_covered_share: float
    household_covered_share: float
    population_covered_share_euclidean: float
    service_areas: gpd.GeoDataFrame
    method: str
    node_distances: NodeDistances | None = field(default=None, repr=False)


def _population_cells(points: gpd.GeoDataFrame, townships: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    """A copy of the population cells with numeric ``population``, ``township`` and ``households``."""
    pts = points.copy()
    if "population" not in pts:
        raise AnalysisError("population cells need a 'population' column")
    pts["population"] = pd.to_numeric(pts["population"], errors="coerce").fillna(0.0).astype(float)
    if "township" not in pts:
        pts["township"] = None
    if "households" not in pts:
        pts["households"] = _spread_households(pts, townships)
    return pts


def compute_coverage(
    points: gpd.GeoDataFrame,
    sites: gpd.GeoDataFrame,
    standard: Standard,
    *,
    network: NetworkCSR | None = None,
    max_snap_m: float | None = None,
    townships: gpd.GeoDataFrame | None = None,
    with_areas: bool = True,
) -> CoverageResult:
    """Coverage of population cells by sites under one service standard.

    Parameters
    ----------
    points
        Population cells (points, metric CRS) with ``population`` and optionally
        ``township`` and ``households``.
    sites
        The sites that count (already filtered to active, compliant ones).
    standard
        Service standard (mode and distance).
    network
        The road network of the standard's mode; ``None`` → Euclidean only.
    max_snap_m
        Cells or sites further than this from any node are unreachable by road
        (None: ``max_snap_m`` of ``layers/coverage.yaml``).
    townships
        Township polygons with ``households``; used to fill ``households`` when
        ``points`` lacks it.
    with_areas
        False: no service-area polygons (an empty ``service_areas``), for a share alone.

    Returns
    -------
    CoverageResult
    """
    pts = _population_cells(points, townships)
    pxy = points_xy(pts)
    sxy = points_xy(sites) if len(sites) else np.empty((0, 2))
    if max_snap_m is None:
        from gis.params import build_section

        max_snap_m = build_section("coverage").max_snap_m
    method, nodes = _point_distances(pts, pxy, sxy, len(sites), standard, network, max_snap_m)
    by_tw = _by_township(pts)
    pop = pts["population"].sum()
    hh = pts["households"].sum(min_count=1)
    share = float(pts.loc[pts["covered"], "population"].sum() / pop) if pop > 0 else float("nan")
    share_e = float(pts.loc[pts["covered_euclidean"], "population"].sum() / pop) if pop > 0 else float("nan")
    hshare = (
        float(pts.loc[pts["covered"], "households"].sum() / hh) if pd.notna(hh) and hh > 0 else float("nan")
    )
    areas = service_areas(sites if with_areas else sites.iloc[:0], standard, network=network, nodes=nodes)
    return CoverageResult(standard, pts, sites, by_tw, share, hshare, share_e, areas, method, nodes)


def _point_distances(
    pts: gpd.GeoDataFrame, pxy: np.ndarray, sxy: np.ndarray, n_sites: int, standard: Standard,
    network: NetworkCSR | None, max_snap_m: float,
) -> tuple[str, NodeDistances | None]:
    """Distance of every point to its nearest site; adds the distance and ``covered`` columns.

    ``district`` standards cover everything when a site exists; ``walk``/``drive``
    with a network use :func:`gis.routing.multi_source_distances` (covered when
    :math:`s_j + d(n_j) \\le L`); otherwise straight-line distance. Returns the
    method (``district``, ``network``, ``euclidean``) and the node distances.
    """
    L = standard.distance_m
    if standard.mode == "district":
        has = n_sites > 0
        pts["dist_euclidean"] = np.where(has, 0.0, np.inf)
        pts["dist_network"] = pts["dist_euclidean"]
        pts["snap_m"] = 0.0
        pts["site"] = np.where(has, 0, -1)
        pts["covered_euclidean"] = has
        pts["covered"] = has
        return "district", None
    de, fe = euclidean_distances(sxy, pxy)
    pts["dist_euclidean"] = de
    pts["covered_euclidean"] = de <= L
    if network is not None and standard.mode in ("walk", "drive"):
        nodes = multi_source_distances(network, sxy, limit=L, max_snap_m=max_snap_m)
        dn, fn, snap = network_point_distances(network, nodes, pxy, max_snap_m=max_snap_m)
        pts["dist_network"] = dn
        pts["snap_m"] = snap
        pts["site"] = fn
        pts["covered"] = dn <= L
        pts.loc[~pts["covered"], "site"] = -1
        return "network", nodes
    pts["dist_network"] = np.inf
    pts["snap_m"] = 0.0
    pts["site"] = np.where(de <= L, fe, -1)
    pts["covered"] = pts["covered_euclidean"]
    return "euclidean", None


@dataclass
class NearestSiteDistances:
    """Every population cell's distance to its nearest counted site, computed once.

    Coverage at any radius :math:`r \\le` ``limit_m`` is then a threshold,
    :math:`\\text{covered}_j = d_j \\le r` (:func:`coverage_at`), not a new search:
    the multi-source Dijkstra of :func:`gis.routing.multi_source_distances` ran once
    with ``limit = limit_m``, and a node's label below ``r`` is the same whatever
    the search limit (Dijkstra settles nodes in distance order).

    Attributes
    ----------
    standard
        The tier's standard with ``distance_m`` = ``limit_m`` (its mode is kept).
    points
        Population cells with ``population``, ``households``, ``township``.
    sites
        The counted sites.
    distance
        :math:`d_j`: network distance where ``method`` is ``network``, else
        straight-line (``inf`` beyond ``limit_m`` or unreachable).
    distance_euclidean
        Straight-line distance to the nearest site (not limited).
    site
        Index into ``sites`` of the nearest site by ``distance`` (-1 none).
    method
        ``network``, ``euclidean`` or ``district``.
    limit_m
        The search limit; :func:`coverage_at` refuses larger radii.
    nodes, network
        Node labels and road network (service-area polygons at any radius).
    """

    standard: Standard
    points: gpd.GeoDataFrame
    sites: gpd.GeoDataFrame
    distance: npt.NDArray[np.float64]
    distance_euclidean: npt.NDArray[np.float64]
    site: npt.NDArray[np.int64]
    method: str
    limit_m: float
    nodes: NodeDistances | None = field(default=None, repr=False)
    network: NetworkCSR | None = field(default=None, repr=False)


def nearest_site_distances(
    points: gpd.GeoDataFrame,
    sites: gpd.GeoDataFrame,
    standard: Standard,
    *,
    limit_m: float,
    network: NetworkCSR | None = None,
    max_snap_m: float = np.inf,
    townships: gpd.GeoDataFrame | None = None,
) -> NearestSiteDistances:
    """Distances of every cell to its nearest site up to ``limit_m`` (one search).

    Parameters
    ----------
    points, sites, network, max_snap_m, townships
        As in :func:`compute_coverage`.
    standard
        The tier's service standard (its ``mode`` decides network or straight line).
    limit_m
        Largest radius that will be asked of :func:`coverage_at` (e.g. the app's
        slider maximum).
    """
    if not limit_m > 0:
        raise AnalysisError(f"limit_m must be a positive number of metres, got {limit_m!r}")
    pts = _population_cells(points, townships)
    std = Standard(standard.tier, standard.mode, None if standard.mode == "district" else float(limit_m),
                   standard.label_zh)
    sxy = points_xy(sites) if len(sites) else np.empty((0, 2))
    work = pts.copy()
    method, nodes = _point_distances(work, points_xy(pts), sxy, len(sites), std, network, max_snap_m)
    dist = (work["dist_network"] if method == "network" else work["dist_euclidean"]).to_numpy(float).copy()
    if method == "euclidean":
        dist[dist > limit_m] = np.inf
    keep = [c for c in pts.columns if c not in ("covered", "covered_euclidean", "site", "dist_network",
                                                 "dist_euclidean", "snap_m")]
    return NearestSiteDistances(std, gpd.GeoDataFrame(pts[keep], crs=pts.crs), sites, dist,
                                work["dist_euclidean"].to_numpy(float), work["site"].to_numpy(np.int64), method,
                                float(limit_m), nodes, network if method == "network" else None)


def coverage_at(nd: NearestSiteDistances, radius_m: float, *, areas: bool = True) -> CoverageResult:
    """Coverage at radius ``radius_m`` by thresholding :class:`NearestSiteDistances`.

    Equal to :func:`compute_coverage` run with ``distance_m = radius_m`` (tested),
    at the cost of a comparison per cell: :math:`\\text{covered}_j = d_j \\le r`,
    :math:`\\text{share} = \\sum_j p_j [d_j \\le r] / \\sum_j p_j`.

    Parameters
    ----------
    nd
        Distances from :func:`nearest_site_distances`.
    radius_m
        Service radius (metres, ``≤ nd.limit_m``).
    areas
        Also draw the service-area polygons (for the map).
    """
    r = float(radius_m)
    if nd.method != "district" and not 0 < r <= nd.limit_m:
        raise AnalysisError(f"radius {r:g} m is outside the distances computed (0 < r ≤ {nd.limit_m:g} m)")
    pts = nd.points.copy()
    std = Standard(nd.standard.tier, nd.standard.mode, None if nd.method == "district" else r, nd.standard.label_zh)
    covered = nd.distance <= r if nd.method != "district" else nd.site >= 0
    pts["dist_euclidean"] = nd.distance_euclidean
    pts["dist_network"] = nd.distance if nd.method == "network" else (
        nd.distance_euclidean if nd.method == "district" else np.inf)
    pts["site"] = np.where(covered, nd.site, -1)
    pts["covered_euclidean"] = nd.distance_euclidean <= r if nd.method != "district" else covered
    pts["covered"] = covered
    pop = pts["population"].sum()
    hh = pts["households"].sum(min_count=1)
    share = float(pts.loc[covered, "population"].sum() / pop) if pop > 0 else float("nan")
    share_e = float(pts.loc[pts["covered_euclidean"], "population"].sum() / pop) if pop > 0 else float("nan")
    hshare = float(pts.loc[covered, "households"].sum() / hh) if pd.notna(hh) and hh > 0 else float("nan")
    nodes = None
    if nd.nodes is not None:
        within = nd.nodes.distance <= r
        nodes = NodeDistances(np.where(within, nd.nodes.distance, np.inf), np.where(within, nd.nodes.facility, -1), r)
    sa = (service_areas(nd.sites, std, network=nd.network, nodes=nodes) if areas
          else service_areas(nd.sites.iloc[0:0], std))
    return CoverageResult(std, pts, nd.sites, _by_township(pts), share, hshare, share_e, sa, nd.method, nodes)


def _spread_households(pts: gpd.GeoDataFrame, townships: gpd.GeoDataFrame | None) -> pd.Series:
    """Households per cell: the township's 户数 × the cell's share of its population."""
    if townships is None or "households" not in townships or "township" not in townships:
        return pd.Series(np.nan, index=pts.index)
    hh = pd.to_numeric(townships.set_index("township")["households"], errors="coerce")
    tw_pop = pts.groupby("township")["population"].sum()
    ratio = (hh / tw_pop).replace([np.inf, -np.inf], np.nan)
    return pts["population"] * pts["township"].map(ratio).astype(float)


def _by_township(pts: gpd.GeoDataFrame) -> pd.DataFrame:
    tw = pts["township"].astype("string").fillna("(无镇街)")
    cov = pts["covered"].to_numpy()
    cove = pts["covered_euclidean"].to_numpy()
    df = pd.DataFrame(
        {
            "township": tw.to_numpy(),
            "population": pts["population"].to_numpy(),
            "covered_population": np.where(cov, pts["population"], 0.0),
            "covered_population_euclidean": np.where(cove, pts["population"], 0.0),
            "households": pts["households"].to_numpy(dtype=float),
            "covered_households": np.where(cov, pts["households"].to_numpy(dtype=float), 0.0),
        }
    )
    g = df.groupby("township", sort=True).sum(min_count=1)
    g["population_share"] = g["covered_population"] / g["population"].where(g["population"] > 0)
    g["population_share_euclidean"] = g["covered_population_euclidean"] / g["population"].where(g["population"] > 0)
    g["household_share"] = g["covered_households"] / g["households"].where(g["households"] > 0)
    return g.reset_index()


def service_areas(
    sites: gpd.GeoDataFrame,
    standard: Standard,
    *,
    network: NetworkCSR | None = None,
    nodes: NodeDistances | None = None,
    display: ServiceAreaDisplay | None = None,
) -> gpd.GeoDataFrame:
    """One service-area polygon per site, for the map.

    Network mode: the concave hull of the nodes the site serves within the
    standard (its share of the multi-source search — nearest-site catchments do not
    overlap), buffered by ``display.buffer_m`` (None: ``service_area_display`` of
    ``layers/coverage.yaml``). Euclidean mode: a disc of radius ``distance_m``. These are display geometries; coverage shares are computed on
    the cells, not on these polygons.
    """
    crs = sites.crs
    cols = [c for c in ("site_id", "name", "tier", "township") if c in sites]
    base = pd.DataFrame(sites[cols].reset_index(drop=True)) if len(sites) else pd.DataFrame(columns=cols)
    base["site_index"] = np.arange(len(base))
    base["mode"] = standard.mode
    base["distance_m"] = standard.distance_m
    if len(sites) == 0 or standard.mode == "district":
        return gpd.GeoDataFrame(base, geometry=gpd.GeoSeries([None] * len(base), crs=crs), crs=crs)
    sxy = points_xy(sites)
    if network is None or nodes is None:
        geoms = shapely.buffer(shapely.points(sxy), standard.distance_m)
    else:
        reached = np.flatnonzero(nodes.facility >= 0)
        fac = nodes.facility[reached]
        order = np.argsort(fac, kind="stable")
        xy = np.r_[network.xy[reached[order]], sxy]
        idx = np.r_[fac[order], np.arange(len(sites))]
        order2 = np.argsort(idx, kind="stable")
        mp = shapely.multipoints(xy[order2], indices=idx[order2])
        if display is None:
            from gis.params import build_section

            display = build_section("coverage").service_area_display
        geoms = _hulls(mp, display)
    base["reached_nodes"] = (
        np.bincount(nodes.facility[nodes.facility >= 0], minlength=len(sites)) if nodes is not None else 0
    )
    return gpd.GeoDataFrame(base, geometry=np.asarray(geoms), crs=crs)


def _hulls(mp: np.ndarray, display: ServiceAreaDisplay) -> np.ndarray:
    """Concave hull of each site's reached nodes, buffered: one thread per core from
    ``display.threads_from_sites`` sites (shapely releases the GIL; the same polygons, in order)."""

    def draw(part: np.ndarray) -> np.ndarray:
        return shapely.buffer(shapely.concave_hull(part, ratio=display.concave_ratio), display.buffer_m)

    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if len(mp) < display.threads_from_sites or workers < 2:
        return draw(mp)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(draw, np.array_split(mp, workers))))


# ---------------------------------------------------------------------------
# households per point (SB/T 10719)
# ---------------------------------------------------------------------------


def households_per_point(
    townships: gpd.GeoDataFrame, sites: gpd.GeoDataFrame, config: Mapping[str, Any]
) -> pd.DataFrame:
    """Households per collection/drop-off point in each township against the norm.

    SB/T 10719-2012 《再生资源回收站点建设管理规范》: one point per ``urban``
    (2,000) households in 街道 and per ``rural`` (2,500) in 镇/乡 (configurable).
    ``required = ceil(households / norm)``; ``met = points >= required``.

    A township is urban when its ``urban`` field is true, or — without one — when its
    ``kind``/name says 街道 (street).
    """
    norm_cfg = config.get("households_per_point") or {}
    tiers = list(norm_cfg.get("tiers") or ["collection_point", "drop_off_point"])
    urban_norm = float(norm_cfg["urban"])
    rural_norm = float(norm_cfg["rural"])
    tw = townships.reset_index(drop=True)
    pts = sites.loc[sites["tier"].astype(str).isin(tiers)] if len(sites) else sites
    counts = np.zeros(len(tw), np.int64)
    if len(pts):
        j = gpd.sjoin(pts[["geometry"]], tw[["geometry"]], how="inner", predicate="within")
        j = j[~j.index.duplicated()]
        counts = np.bincount(j["index_right"].to_numpy(), minlength=len(tw))
    hh = pd.to_numeric(tw.get("households", pd.Series(np.nan, index=tw.index)), errors="coerce")
    urban = _is_urban(tw)
    norm = np.where(urban, urban_norm, rural_norm)
    required = np.ceil(hh / norm)
    out = pd.DataFrame(
        {
            "township": tw["township"].astype(str),
            "urban": urban,
            "households": hh,
            "points": counts,
            "norm_households_per_point": norm,
            "households_per_point": np.where(counts > 0, hh / np.maximum(counts, 1), np.inf),
            "required_points": required,
        }
    )
    out["shortfall"] = np.maximum(out["required_points"] - out["points"], 0)
    out["met"] = (out["points"] >= out["required_points"]) & out["households"].notna()
    return out


def _is_urban(tw: pd.DataFrame) -> npt.NDArray[np.bool_]:
    if "urban" in tw and tw["urban"].notna().any():
        u = tw["urban"]
        if u.dtype == object:
            u = u.map(lambda v: str(v).strip().lower() in ("true", "1", "yes", "是", "城镇"))
        return u.fillna(False).astype(bool).to_numpy()
    text = tw.get("kind", pd.Series("", index=tw.index)).astype("string").fillna("") + tw["township"].astype(str)
    return text.str.contains("街道|street", regex=True).to_numpy()


# ---------------------------------------------------------------------------
# gaps
# ---------------------------------------------------------------------------


def coverage_gaps(
    points: gpd.GeoDataFrame,
    *,
    min_population: float | None = None,
    max_gaps: int | None = None,
    cell_size_m: float | None = None,
    raster: Any = None,
    footprints: np.ndarray | None = None,
) -> gpd.GeoDataFrame:
    """Uncovered population as polygons of merged cells, ranked by uncovered residents.

    When the points come from a population raster (``row``/``col`` columns and the
    :class:`gis.io.RasterLayer` passed as ``raster``), each cell is its true
    footprint — drawn in the raster's CRS and projected — so neighbouring cells share
    edges exactly and merge into clean polygons (a raster in degrees is not a square
    grid once projected).

    Uncovered cells (``covered`` false, ``population`` > 0) are squares of side
    ``cell_size_m`` (default: the median nearest-neighbour spacing of all cells)
    around their centres; cells closer than ``1.5 ×`` that spacing (the
    8-neighbourhood on a raster) and in the same township are joined by connected
    components (:func:`scipy.sparse.csgraph.connected_components`) and dissolved,
    so a gap never straddles a township boundary. Each gap
    gets ``population`` (uncovered residents), ``households``, ``cells``,
    ``township`` (the township holding most of its uncovered residents) and
    ``rank`` (1 = largest).

    ``footprints`` (:func:`cell_footprints` of ``points``, with ``cell_size_m``) spare
    drawing the cells again when gaps are asked for at several radii (the app's slider).
    """
    crs = points.crs
    cols = ["rank", "gap_id", "township", "population", "households", "cells", "area_km2"]
    empty = gpd.GeoDataFrame({c: [] for c in cols}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    if len(points) == 0:
        return empty
    if cell_size_m is None:
        cell_size_m = cell_spacing(points_xy(points))
    uncovered = ~points["covered"].to_numpy(bool) & (points["population"].to_numpy(float) > 0)
    unc = points.loc[uncovered]
    if len(unc) == 0:
        return empty
    xy = points_xy(unc)
    pairs = cKDTree(xy).query_pairs(1.5 * cell_size_m, output_type="ndarray")
    # a gap never straddles a township boundary: each gap has one township to act on it
    tw_codes = pd.factorize(unc["township"].astype("string").fillna("(无镇街)"))[0]
    if len(pairs):
        pairs = pairs[tw_codes[pairs[:, 0]] == tw_codes[pairs[:, 1]]]
    n = len(unc)
    adj = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else sp.coo_matrix((n, n))
    _, comp = connected_components(adj, directed=False)
    pop, hh, ncell = _gap_totals(unc, comp)
    order = np.argsort(-pop, kind="stable")
    if min_population is not None:  # None: every uncovered polygon is kept
        order = order[pop[order] >= min_population]
    if max_gaps is not None:
        order = order[: int(max_gaps)]
    if len(order) == 0:
        return empty
    rank_of = np.full(len(pop), -1)
    rank_of[order] = np.arange(1, len(order) + 1)
    cells = footprints[uncovered] if footprints is not None else _ranked_footprints(unc, rank_of[comp], raster, cell_size_m)
    merged = _gap_polygons(cells, rank_of[comp], crs)
    tw = pd.DataFrame({"rank": rank_of[comp], "township": unc["township"].astype("string").fillna("(无镇街)").to_numpy(),
                       "population": unc["population"].to_numpy(float)})
    tw = tw[tw["rank"] > 0].groupby(["rank", "township"])["population"].sum().reset_index()
    main_tw = tw.sort_values(["rank", "population"], ascending=[True, False]).drop_duplicates("rank").set_index("rank")["township"]
    out = gpd.GeoDataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "gap_id": [f"GAP{r:04d}" for r in range(1, len(order) + 1)],
            "township": main_tw.reindex(np.arange(1, len(order) + 1)).to_numpy(),
            "population": pop[order],
            "households": hh[order],
            "cells": ncell[order],
        },
        geometry=merged.reindex(np.arange(1, len(order) + 1)).to_numpy(),
        crs=crs,
    )
    out["area_km2"] = out.geometry.area / 1e6
    return out


def cell_spacing(xy: np.ndarray) -> float:
    """Median nearest-neighbour spacing of the cells (100 m for a single cell)."""
    if len(xy) > 1:
        d, _ = cKDTree(xy).query(xy, k=2)
        return float(np.median(d[:, 1]))
    return 100.0


def _gap_totals(unc: gpd.GeoDataFrame, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uncovered population, households (NaN when none known) and cell count per component."""
    pop = np.bincount(comp, weights=unc["population"].to_numpy(float))
    hh_vals = pd.to_numeric(unc.get("households", pd.Series(np.nan, index=unc.index)), errors="coerce").to_numpy(float)
    hh = np.bincount(comp, weights=np.nan_to_num(hh_vals))
    hh = np.where(np.bincount(comp, weights=np.isfinite(hh_vals).astype(float)) > 0, hh, np.nan)
    return pop, hh, np.bincount(comp)


def cell_footprints(points: gpd.GeoDataFrame, *, raster: Any = None, cell_size_m: float | None = None) -> np.ndarray:
    """Each population cell's footprint in ``points.crs`` (shapely polygons, one per row).

    Raster cells (``row``/``col`` columns and the :class:`gis.io.RasterLayer`) are
    drawn in the raster's CRS and projected, so neighbours share edges exactly;
    other cells are squares of side ``cell_size_m`` (default: the median
    nearest-neighbour spacing) around their centres. Cells tile without overlap.
    """
    if raster is not None and {"row", "col"} <= set(points.columns):
        r = points["row"].to_numpy(float)
        c = points["col"].to_numpy(float)
        x0, y0 = raster.transform @ (c, r)
        x1, y1 = raster.transform @ (c + 1, r + 1)
        return gpd.GeoSeries(shapely.box(x0, y0, x1, y1), crs=raster.crs).to_crs(points.crs).to_numpy()
    xy = points_xy(points)
    half = (cell_size_m if cell_size_m is not None else cell_spacing(xy)) / 2
    return shapely.box(xy[:, 0] - half, xy[:, 1] - half, xy[:, 0] + half, xy[:, 1] + half)


def _ranked_footprints(unc: gpd.GeoDataFrame, cell_rank: np.ndarray, raster: Any, cell_size_m: float) -> np.ndarray:
    """Footprints of the cells of ranked gaps only (``None`` for the others)."""
    cells = np.empty(len(unc), dtype=object)
    cells[cell_rank > 0] = cell_footprints(unc.loc[cell_rank > 0], raster=raster, cell_size_m=cell_size_m)
    return cells


def _gap_polygons(cells: np.ndarray, cell_rank: np.ndarray, crs: Any) -> gpd.GeoSeries:
    """Dissolved footprint of the ranked gaps' cells, indexed by rank (cells tile without
    overlap, so :func:`shapely.coverage_union_all` is exact)."""
    sel = cell_rank > 0
    boxes = cells[sel]
    ranks = cell_rank[sel]
    by_rank = pd.Series(np.arange(len(ranks))).groupby(ranks).indices
    return gpd.GeoSeries(
        {rank: shapely.coverage_union_all(boxes[idx]) for rank, idx in sorted(by_rank.items())}, crs=crs
    )


# ---------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------




def _round(x: float | None) -> float | None:
    """Round for JSON; NaN and ±inf (e.g. households per point with no point) → None."""
    if x is None or not np.isfinite(x):
        return None
    return float(round(x, 6))


def _per_township(sites: gpd.GeoDataFrame, townships: gpd.GeoDataFrame) -> npt.NDArray[np.int64]:
    tw = townships.reset_index(drop=True)
    if len(sites) == 0:
        return np.zeros(len(tw), np.int64)
    j = gpd.sjoin(sites[["geometry"]], tw[["geometry"]], how="inner", predicate="within")
    j = j[~j.index.duplicated()]
    return np.bincount(j["index_right"].to_numpy(), minlength=len(tw))


# ---------------------------------------------------------------------------
# the district
# ---------------------------------------------------------------------------


def eligible_sites(district: District, compliance: Any = None, *, statuses: Sequence[str] = ("active",),
                   columns: Sequence[str] | None = None) -> gpd.GeoDataFrame:
    """The district's active, compliant sites (the ones that count).

    Active: ``status`` is one of ``statuses`` (``active``; add ``planned`` to count
    the sites planned as well; a ledger without a status column counts every site
    as active). Compliant: no rule with verdict ``prohibited`` broken
    (:mod:`gis.compliance`; the pipeline's compliance result is reused when given).
    ``columns``: copy only these (those present) and the points; None: every column.
    """
    sites = district.sites
    if len(sites) == 0:
        return sites.copy()
    status = sites["status"] if "status" in sites else pd.Series(None, index=sites.index)
    active = status.astype("string").isin(list(statuses)).fillna(False).to_numpy(bool)
    if status.isna().all():
        active[:] = True
    if compliance is None:
        from gis.compliance import RuleTable, check_sites
        from gis.schema import field_names

        cols = [c for c in field_names("sites") if c in sites] + [sites.geometry.name]
        rules = RuleTable.from_section(district.project.section("compliance"), source=district.project.path,
                                   classes=classes_for_project(district.project))
        compliance = check_sites(
            sites[cols], townships=district.townships, zones=district.zones, landuse=district.landuse,
            landuse_raster=district.landuse_raster, rules=rules, graph=None,
        )
    verdict = compliance.sites.set_index("site_id")["verdict"] if len(compliance.sites) else pd.Series(dtype=object)
    v = sites["site_id"].map(verdict[~verdict.index.duplicated()]).astype("string").fillna("ok")
    ok = (v != "prohibited").to_numpy(bool)
    keep = list(sites.columns) if columns is None else [c for c in columns if c in sites] + [sites.geometry.name]
    return sites.loc[active & ok, keep].copy()


@dataclass
class DistrictCoverage:
    """Coverage, targets, gaps and recommended sites of one district.

    Attributes
    ----------
    sites
        The active, compliant sites counted.
    by_tier
        :class:`CoverageResult` per tier with a service standard and sites or a
        headline role.
    headline
        The result of ``headline_tier`` (drives ``population_covered_share`` and gaps).
    households
        :func:`households_per_point` table per township.
    targets
        ``[{name, metric, tiers, target, actual, met}]``.
    gaps
        :func:`coverage_gaps` of the headline tier.
    siting
        :class:`gis.siting.SitingOutcome` or ``None`` (no population / no candidates).
    networks
        ``{mode: NetworkCSR}`` used.
    candidate_check
        :func:`siting_candidates` of the headline tier (legal candidates; reused by the
        app's planner), or ``None``.
    scope
        Coverage by the tiers the population-coverage target counts
        (:func:`target_tiers`), which ``gaps`` and ``siting`` complement, or ``None``.
        Its ``service_areas`` are empty unless it is one of ``by_tier`` (only the tiers'
        are written and drawn).
    map_layers
        The map's service-area and gap layers drawn ahead (a lean ``gis run`` draws them
        when the step ends and drops the service-area polygons: :func:`gis.steps.lean_coverage`),
        or ``None``: the map draws them from ``by_tier`` and ``gaps``.
    """

    sites: gpd.GeoDataFrame
    by_tier: dict[str, CoverageResult]
    headline: CoverageResult | None
    households: pd.DataFrame
    targets: list[dict[str, Any]]
    gaps: gpd.GeoDataFrame
    siting: Any
    networks: dict[str, NetworkCSR]
    config: dict[str, Any]
    candidate_check: Any = None
    scope: CoverageResult | None = None
    map_layers: list[Any] | None = None

    def summary(self) -> dict[str, Any]:
        """``coverage`` and ``targets`` keys for ``summary.json``."""
        h = self.headline
        cov: dict[str, Any] = {
            "headline_tier": h.standard.tier if h else None,
            "method": h.method if h else None,
            "population_covered_share": _round(h.population_covered_share) if h else None,
            "household_covered_share": _round(h.household_covered_share) if h else None,
            "population_covered_share_euclidean": _round(h.population_covered_share_euclidean) if h else None,
            "standard": {"mode": h.standard.mode, "distance_m": h.standard.distance_m} if h else None,
            "by_township": {},
            "by_tier": {
                t: {
                    "sites": int(len(r.sites)),
                    "mode": r.standard.mode,
                    "distance_m": r.standard.distance_m,
                    "method": r.method,
                    "population_covered_share": _round(r.population_covered_share),
                    "household_covered_share": _round(r.household_covered_share),
                }
                for t, r in self.by_tier.items()
            },
            "gaps": int(len(self.gaps)),
            "uncovered_population_in_gaps": float(self.gaps["population"].sum()) if len(self.gaps) else 0.0,
        }
        if h is not None:
            hh = self.households.set_index("township")
            for _, r in h.by_township.iterrows():
                tw = str(r["township"])
                entry = {
                    "population": _round(r["population"]),
                    "population_share": _round(r["population_share"]),
                    "household_share": _round(r["household_share"]),
                }
                if tw in hh.index:
                    e = hh.loc[tw]
                    entry.update(
                        points=int(e["points"]),
                        households_per_point=_round(float(e["households_per_point"])),
                        norm_households_per_point=float(e["norm_households_per_point"]),
                        households_norm_met=bool(e["met"]),
                    )
                cov["by_township"][tw] = entry
        if self.siting is not None:
            cov["siting"] = self.siting.summary()
        return {"coverage": cov, "targets": self.targets}

    def layers(self) -> dict[str, gpd.GeoDataFrame]:
        """The layers of ``coverage.gpkg``."""
        crs = self.sites.crs
        areas = [r.service_areas for r in self.by_tier.values() if len(r.service_areas)]
        sa = (
            gpd.GeoDataFrame(pd.concat(areas, ignore_index=True), crs=crs)
            if areas
            else gpd.GeoDataFrame({"tier": []}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
        )
        rec = (
            self.siting.recommended
            if self.siting is not None
            else gpd.GeoDataFrame({"rank": []}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
        )
        out = {"service_areas": sa, "gaps": self.gaps, "recommended_sites": rec}
        if self.headline is not None:
            cells = self.headline.points.copy()
            for c in ("dist_euclidean", "dist_network"):
                cells[c] = cells[c].where(np.isfinite(cells[c]))
            out["population_cells"] = cells
        return out


#: The columns of the counted sites that coverage reads and writes (service areas: id, name, tier, township;
#: township minimums and households per point: tier, township): copies of a million sites keep only these.
COUNTED_SITE_COLUMNS: tuple[str, ...] = ("site_id", "name", "tier", "township", "status")


def analyse_district(
    district: District,
    *,
    compliance: Any = None,
    networks: Mapping[str, NetworkCSR] | None = None,
    target_evaluator: Callable[[gpd.GeoDataFrame, Any], list[dict[str, Any]]] | None = None,
) -> DistrictCoverage:
    """Coverage of every tier, targets, households per point, gaps and new sites.

    Parameters
    ----------
    district
        A loaded :class:`gis.district.District`.
    compliance
        A :class:`gis.compliance.ComplianceResult` already computed (pipeline).
    networks
        ``{mode: NetworkCSR}`` already built (else read from ``district.roads_path``).
    target_evaluator
        ``(eligible sites, coverage_share) -> target rows``, usually
        :func:`gis.targets.district_evaluator` (targets build on coverage, not the reverse);
        ``None``: no targets evaluated.
    """

    cfg = district.project.section("coverage")
    max_snap = float(cfg["max_snap_m"])
    sites = eligible_sites(district, compliance, columns=COUNTED_SITE_COLUMNS)
    nets: dict[str, NetworkCSR] = dict(networks or {})

    def net_for(mode: str) -> NetworkCSR | None:
        if mode not in ("walk", "drive") or district.roads_path is None:
            return None
        if mode not in nets:
            from gis.roadgraph import network_for_district  # vectorised build, per-project cache

            nets[mode] = network_for_district(district, mode)  # type: ignore[arg-type]
        return nets[mode]

    try:
        pop = district.population_points()
    except Exception:  # LayerMissingError: no population layer
        pop = None
    tiers_cfg = cfg.get("service_standards") or {}
    headline_tier = str(cfg.get("headline_tier", "collection_point"))
    tier_col = sites["tier"].astype(str) if len(sites) else pd.Series([], dtype=str)
    by_tier: dict[str, CoverageResult] = {}
    cache: dict[tuple[Any, ...], CoverageResult] = {}

    def cover(tiers: Sequence[str], std: Standard, *, areas: bool) -> CoverageResult:
        key = (tuple(sorted(tiers)), std.mode, std.distance_m)
        if key not in cache:
            s = sites.loc[tier_col.isin(list(tiers)).to_numpy()] if len(sites) else sites
            cache[key] = compute_coverage(pop, s, std, network=net_for(std.mode), max_snap_m=max_snap,
                                          townships=district.townships, with_areas=areas)
        return cache[key]

    if pop is not None:
        for tier in tiers_cfg:
            if tier == headline_tier or (tier_col == tier).any():
                by_tier[tier] = cover([tier], Standard.from_config(tier, cfg), areas=True)
    headline = by_tier.get(headline_tier)
    # gaps and new sites complement the coverage the target counts (all its tiers), as the app's planner does
    tiers = target_tiers(district.project.targets or [], headline_tier)
    # the scope's own service areas are neither written nor drawn (a tier's, when it is one, are)
    scope = cover(tiers, Standard.from_config(tiers[0], cfg), areas=False) if headline is not None else None

    def coverage_share(s: gpd.GeoDataFrame, row: Mapping[str, Any]) -> tuple[float, float]:
        std = _target_standard(s, row, cfg, headline_tier)
        r = compute_coverage(pop, s, std, network=net_for(std.mode), max_snap_m=max_snap, townships=district.townships,
                             with_areas=False)
        return r.population_covered_share, r.household_covered_share

    target_rows = (target_evaluator(sites, coverage_share if pop is not None else None)
                   if target_evaluator is not None else [])
    hh_tab = households_per_point(district.townships, sites, cfg)
    gaps = _headline_gaps(district, scope, cfg.get("gaps") or {})
    outcome, checked = None, None
    if scope is not None and scope.standard.mode != "district":
        outcome, checked = _new_sites(district, scope, sites, headline_tier, cfg.get("siting") or {},
                                      net_for(scope.standard.mode), max_snap)
    return DistrictCoverage(sites, by_tier, headline, hh_tab, target_rows, gaps, outcome, nets, cfg, checked, scope)


def _new_sites(district: District, scope: CoverageResult, sites: gpd.GeoDataFrame, tier: str, scfg: Mapping[str, Any],
               net: NetworkCSR | None, max_snap: float) -> tuple[Any, Any]:
    """New ``tier`` sites complementing ``scope`` (:func:`_recommend`), with the targets' per-镇街
    minimums, and the candidate check they were chosen from."""
    checked = siting_candidates(district, tier, scfg)
    minima = township_minimums(district, tier, sites)
    return _recommend(scope, checked, tier, scfg, net, max_snap, min_per_township=minima), checked


def township_minimums(district: District, tier: str, sites: gpd.GeoDataFrame) -> dict[str, int]:
    """New ``tier`` sites each 镇街 needs for the district's targets, given the counted ``sites``
    (:func:`gis.siting.township_minimums`; ``gis run`` and the app's planner alike)."""
    from gis import siting

    return siting.township_minimums(district.project.targets or [], tier, sites, district.townships["township"])


def _target_standard(
    sites: gpd.GeoDataFrame, row: Mapping[str, Any], cfg: Mapping[str, Any], headline_tier: str
) -> Standard:
    """The service standard a coverage target measures: its tiers' standard, or its own distance/mode."""
    tiers = list(row.get("tiers") or []) or sorted(set(sites["tier"].astype(str))) or [headline_tier]
    std = Standard.from_config(tiers[0], cfg)
    if row.get("distance_m") is not None or row.get("mode") is not None:
        std = Standard(std.tier, str(row.get("mode") or std.mode), float(row.get("distance_m") or std.distance_m))
    return std


def target_tiers(targets: Sequence[Mapping[str, Any]], headline_tier: str) -> tuple[str, ...]:
    """Tiers whose sites count toward the district's coverage: those of its ``population_coverage``
    target, else the headline tier. Coverage gaps and new sites complement this coverage (in
    ``gis run`` and in the app's planner alike)."""
    row = next((r for r in targets if r.get("metric") == "population_coverage"), None)
    return tuple(str(t) for t in ((row or {}).get("tiers") or [headline_tier]))


def _headline_gaps(district: District, headline: CoverageResult | None, gcfg: Mapping[str, Any]) -> gpd.GeoDataFrame:
    """:func:`coverage_gaps` of the coverage the target counts (an empty layer without population)."""
    if headline is None:
        return coverage_gaps(gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=district.crs)))
    return coverage_gaps(headline.points, min_population=float(gcfg["min_population"]),
                         raster=district.population_raster, max_gaps=gcfg.get("max_gaps"))


def siting_candidates(district: District, tier: str, scfg: Mapping[str, Any]) -> Any:
    """Candidates for new ``tier`` sites checked against the compliance rules (legal land only).

    Candidates are the district's own (``candidates: district``, e.g. garbage transfer
    stations for 一场两用), a grid over the district (``grid``) or both; returns a
    :class:`gis.siting.CandidateCheck`, or ``None`` without candidates.
    """
    from gis import siting
    from gis.rules import RuleTable

    kind = str(scfg.get("candidates", "both"))
    parts = []
    if kind in ("district", "both") and district.candidates is not None and len(district.candidates):
        c = district.candidates.copy()
        c["kind"] = c["kind"].fillna("given") if "kind" in c else "given"
        parts.append(c)
    if kind in ("grid", "both"):
        parts.append(siting.grid_candidates(district.boundary, float(scfg["grid_spacing_m"]),
                                            district.crs))
    if not parts:
        return None
    cand = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=district.crs)
    rules = RuleTable.from_section(district.project.section("compliance"), source=district.project.path,
                                   classes=classes_for_project(district.project))
    return siting.eligible_candidates(
        cand, tier, townships=district.townships, zones=district.zones,
        landuse=district.landuse, landuse_raster=district.landuse_raster, rules=rules,
    )


def _recommend(
    headline: CoverageResult, checked: Any, headline_tier: str, scfg: Mapping[str, Any],
    net: NetworkCSR | None, max_snap: float, *, min_per_township: Any = None,
) -> Any:
    """New sites for the headline tier (:func:`gis.siting.recommend_sites`) among the
    checked candidates (:func:`siting_candidates`), or None without candidates."""
    from gis import siting

    if checked is None:
        return None
    return siting.recommend_sites(
        headline.points, checked, distance_m=float(headline.standard.distance_m), tier=headline_tier,
        network=net, max_snap_m=max_snap, config=scfg, min_per_township=min_per_township,
    )


# ---------------------------------------------------------------------------
# what-if: new sites at any radius and k from cached inputs
# ---------------------------------------------------------------------------


@dataclass
class CandidateReach:
    """Every (candidate, cell) pair within ``limit_m`` with its distance, searched once.

    :meth:`matrix` at a radius :math:`r \\le L` keeps the pairs with :math:`d \\le r`:
    the same coverage matrix as :func:`gis.siting.coverage_matrix` at :math:`r` (tested),
    without a new search — the planner's radius slider thresholds these.
    """

    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    distance: npt.NDArray[np.float64]
    shape: tuple[int, int]
    limit_m: float

    @classmethod
    def search(cls, candidates_xy: npt.ArrayLike, cells_xy: npt.ArrayLike, limit_m: float, *,
               network: NetworkCSR | None = None, max_snap_m: float = np.inf) -> CandidateReach:
        """The pairs within ``limit_m`` (:func:`gis.routing.pairs_within`, snapped network distance)."""
        cxy, dxy = np.asarray(candidates_xy, float).reshape(-1, 2), np.asarray(cells_xy, float).reshape(-1, 2)
        rows, cols, dist = pairs_within(cxy, dxy, limit_m, network=network, max_snap_m=max_snap_m,
                                        with_distance=True)
        return cls(rows, cols, dist, (len(cxy), len(dxy)), float(limit_m))

    def matrix(self, radius_m: float) -> sp.csr_matrix:
        """Boolean candidates × cells matrix: candidate reaches cell within ``radius_m``."""
        from gis.siting import pairs_matrix

        if radius_m > self.limit_m:
            raise AnalysisError(f"radius {radius_m:g} m is beyond the {self.limit_m:g} m searched")
        keep = self.distance <= radius_m
        return pairs_matrix(self.rows[keep], self.cols[keep], self.shape)


@dataclass
class SitingInputs:
    """Everything the MCLP/LSCP models need at one radius, built once and reused for any k.

    Attributes
    ----------
    candidates
        Eligible candidates (legal land only), in matrix row order.
    matrix
        :func:`gis.siting.coverage_matrix` (candidates × cells) at ``radius_m``.
    weights, covered
        Cell population :math:`w_j` and coverage by the existing sites.
    bonus, groups, min_per_township, config
        As passed to :func:`gis.siting.mclp`.
    radius_m
        The service radius the matrix was built for.
    """

    candidates: gpd.GeoDataFrame
    matrix: sp.csr_matrix
    weights: npt.NDArray[np.float64]
    covered: npt.NDArray[np.bool_]
    bonus: npt.NDArray[np.float64]
    groups: Any
    min_per_township: Mapping[str, int] | None
    config: dict[str, Any]
    radius_m: float

    @property
    def share_before(self) -> float:
        """Covered share with the existing sites, :math:`\\sum_j w_j c_j / \\sum_j w_j`."""
        total = self.weights.sum()
        return float(self.weights[self.covered].sum() / total) if total > 0 else float("nan")


def siting_inputs(
    cov: CoverageResult, checked: Any, config: Mapping[str, Any], *, network: NetworkCSR | None = None,
    max_snap_m: float = np.inf, min_per_township: Mapping[str, int] | None = None,
    reach: CandidateReach | None = None,
) -> SitingInputs:
    """The siting models' inputs for coverage ``cov`` (its radius and covered cells).

    ``checked`` is :func:`siting_candidates`' result; ``config`` the ``siting`` block.
    The coverage matrix uses the same snapped network distance as the coverage;
    ``reach`` (the eligible candidates × ``cov``'s cells, searched once to a larger
    radius) is thresholded instead of searching again.
    """
    from gis import siting

    cfg = siting.solver_config(config)
    elig = checked.eligible.reset_index(drop=True)
    r = float(cov.standard.distance_m)
    A = (reach.matrix(r) if reach is not None else
         siting.coverage_matrix(points_xy(elig) if len(elig) else np.empty((0, 2)), points_xy(cov.points), r,
                                network=network, max_snap_m=max_snap_m))
    kinds = elig["kind"].astype(str).to_numpy() if "kind" in elig else np.full(len(elig), "grid")
    bonus = np.where(kinds != "grid", float(cfg["preferred_bonus_residents"]), 0.0)
    groups = elig["township"].to_numpy(object) if min_per_township and "township" in elig else None
    return SitingInputs(elig, A, cov.points["population"].to_numpy(float), cov.points["covered"].to_numpy(bool),
                        bonus, groups, min_per_township or None, cfg, r)


def what_if_sites(inputs: SitingInputs, k: int) -> tuple[gpd.GeoDataFrame, float]:
    """The best ``k`` new sites (:func:`gis.siting.mclp`) and the covered share after adding them.

    Returns the chosen candidates with ``rank``, ``gain_population`` (residents newly
    covered in rank order, :math:`\\sum_j w_j` over cells first covered by the site)
    and ``cumulative_share``, and the share after all ``k``.
    """
    from gis import siting

    w, cov0 = inputs.weights, inputs.covered
    total = w.sum()
    best = siting.mclp(inputs.matrix, w, int(k), covered=cov0, bonus=inputs.bonus, groups=inputs.groups,
                       min_per_group=inputs.min_per_township, config=inputs.config)
    return _ranked(inputs, best.selected, best.method), float(w[best.covered].sum() / total) if total > 0 else float("nan")


def sites_to_reach(inputs: SitingInputs, share: float, *, exact: bool = False,
                   time_limit_s: float | None = None) -> ReachAnswer:
    """Fewest new sites reaching ``share`` covered.

    ``exact``: :func:`gis.siting.lscp` (HiGHS, bounded by ``time_limit_s``; the best
    answer found is returned with its proven lower bound); otherwise
    :func:`gis.siting.greedy_lscp` (within :math:`H(\\max_i |A_i|)` of the fewest,
    Chvátal 1979), fast enough for every slider change. Whether ``share`` is
    reachable at all is decided exactly either way: the ceiling is the share covered
    with every eligible candidate open, :math:`\\sum_j w_j [c_j \\lor \\exists i: a_{ij}] / \\sum_j w_j`.
    """
    from gis import siting

    w, cov0 = inputs.weights, inputs.covered
    total = w.sum()
    reach = cov0 | (np.asarray(inputs.matrix.sum(axis=0)).ravel() > 0)
    best = float(w[reach].sum() / total) if total > 0 else float("nan")
    if not best >= float(share) - 1e-9:  # the ceiling is below the target: no solve needed to say so
        return ReachAnswer(inputs.candidates.iloc[0:0].copy(), float(share), False, inputs.share_before, best,
                           True, 0)
    if exact or inputs.min_per_township:  # per-township minima are constraints only the exact model keeps
        res = siting.lscp(inputs.matrix, w, share=float(share), covered=cov0, groups=inputs.groups,
                          min_per_group=inputs.min_per_township, config=inputs.config, time_limit_s=time_limit_s)
    else:
        res = siting.greedy_lscp(inputs.matrix, w, float(share), covered0=cov0)
    reached = float(w[res.covered].sum() / total) if total > 0 else float("nan")
    return ReachAnswer(_ranked(inputs, res.selected, res.method), float(share),
                       bool(res.extra.get("reached", reached >= share)), reached, best, bool(res.optimal),
                       int(np.ceil(res.bound)) if np.isfinite(res.bound) else 0)


@dataclass
class ReachAnswer:
    """Answer of :func:`sites_to_reach`.

    Attributes
    ----------
    sites
        The new sites, ranked by marginal gain.
    share
        The share asked for.
    reachable
        Whether ``share`` can be reached with the eligible candidates at all.
    reached_share
        Share covered with ``sites`` added.
    best_share
        Share covered if every eligible candidate were opened (the ceiling).
    optimal, lower_bound
        Whether ``len(sites)`` is proven the fewest; a proven lower bound on it.
    """

    sites: gpd.GeoDataFrame
    share: float
    reachable: bool
    reached_share: float
    best_share: float
    optimal: bool
    lower_bound: int


def _gain_order(A: sp.csr_matrix, w: np.ndarray, covered: np.ndarray, selected: np.ndarray) -> tuple[list[int], list[float]]:
    """The chosen sites in greedy order: each next the one adding the most residents not yet covered
    (ties: the earlier in ``selected``), with those gains.

    Lazy greedy (Minoux 1978): a site's gain :math:`g_i = \\sum_{j \\in A_i, \\neg c_j} w_j` only falls as
    coverage grows, so a gain computed earlier bounds it from above; the heap's top is recomputed and
    taken when it still beats the next bound, the same choice as recomputing every gain each time.
    """
    cov = covered.copy()

    def gain(i: int) -> float:
        idx = A.indices[A.indptr[i]:A.indptr[i + 1]]
        return float(w[idx[~cov[idx]]].sum())

    heap = [(-gain(int(i)), pos, int(i)) for pos, i in enumerate(selected)]
    heapq.heapify(heap)
    order, gains = [], []
    while heap:
        _, pos, i = heapq.heappop(heap)
        key = (-gain(i), pos)
        if heap and key > heap[0][:2]:  # another site's bound is higher: look at it first
            heapq.heappush(heap, (*key, i))
            continue
        order.append(i)
        gains.append(-key[0])
        cov[A.indices[A.indptr[i]:A.indptr[i + 1]]] = True
    return order, gains


def _ranked(inputs: SitingInputs, selected: npt.NDArray[np.int64], method: str) -> gpd.GeoDataFrame:
    """Chosen candidates ordered by marginal gain (largest first) with the cumulative share."""
    order, gains = _gain_order(sp.csr_matrix(inputs.matrix, dtype=bool), inputs.weights, inputs.covered,
                               np.asarray(selected, np.int64))
    total = inputs.weights.sum()
    rec = inputs.candidates.iloc[order].copy().reset_index(drop=True)
    rec["rank"] = np.arange(1, len(rec) + 1)
    rec["gain_population"] = np.asarray(gains, float)
    rec["cumulative_share"] = inputs.share_before + np.cumsum(gains) / total if total > 0 else np.nan
    rec["solver"] = method
    return rec
