"""Illegal-dismantling hot spots: clusters, Gi*, density, rebound and the priority list.

What inspectors need from the incident records (摸排/举报/巡查/执法记录):

* :func:`find_clusters` — clusters (聚集区) of incidents in the metric CRS, per
  incident kind and time window, by the local-background ``scan`` method
  (:mod:`gis.cluster_scan`, default) or DBSCAN / HDBSCAN (scikit-learn), each
  with its outline, centroid, townships (镇街), the 四山 (Four Mountains) control
  levels it touches and its significance (observed vs expected reports, p- and
  q-value; clusters failing the level are flagged and left out of the lists);
  :meth:`ClusterResult.incident_layer` / :meth:`ClusterResult.cluster_reports`
  give each report's cluster and each cluster's reports;
* :func:`hex_hot_spots` — Getis-Ord Gi* on a hexagon grid with FDR
  (:mod:`gis.gistar`), plus the emerging hot-spot categories (:mod:`gis.emerging`);
* :func:`kernel_density` — a kernel density surface for the map (GeoTIFF);
* :func:`detect_rebounds` — closed or rectified sites that came back (严防反弹);
* :func:`priority_list` / :func:`problem_rows` — clusters ranked by a documented
  score with lead and co-operating departments, as rows of the 问题台账;
* the pipeline step writing ``hotspots.gpkg`` and ``density.tif`` is :func:`gis.steps.run_hotspots`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from gis._errors import AnalysisError
from gis.catalog import deep_merge
from gis.params import GiStarParams, HotspotsParams, Section
from gis.cluster_mixture import MixtureParams
from gis.cluster_scan import (
    ScanParams,
    SignificanceParams,
    background_density,
    bh_qvalues,
    cluster_pvalues,
    flag_significant,
    poisson_sf,
    scan_labels,
    significance_text,
)
from gis.schema import (
    INCIDENT_KIND_LABEL_ZH,
    PROBLEM_LEDGER_COLUMNS,
    ZONE_LEVEL_LABEL_ZH,
    ZONE_LEVEL_RANK,
    IncidentKind,
    ZoneLevel,
)

log = logging.getLogger(__name__)

#: 四山 levels by rank (1 general, 2 key, 3 no-build).
_LEVEL_BY_RANK: dict[int, str] = {rank: level.value for level, rank in ZONE_LEVEL_RANK.items()}

#: Columns of the 问题台账 rows this module produces (``context["hotspot_problems"]``).
PROBLEM_COLUMNS: tuple[str, ...] = PROBLEM_LEDGER_COLUMNS


# ================================================================ clusters


def kdistance_eps(xy: np.ndarray, min_samples: int, *, bounds: tuple[float, float] | None = None) -> float:
    """DBSCAN search distance from the knee of the sorted k-distance curve.

    For every point, :math:`d_k` is the distance to its ``min_samples - 1``-th
    nearest other point (a point is a DBSCAN core point iff :math:`d_k \\le
    \\varepsilon`). The distances are sorted, the top 1 % are dropped (as ArcGIS
    density-based clustering ignores the most extreme core distances), and the
    knee is located as the best two-segment split of the log distances — the
    split maximising the between-segment variance (Otsu's criterion):

    .. math:: i^* = \\arg\\max_i\\; \\tfrac{i}{m}\\big(1-\\tfrac{i}{m}\\big)
              \\big(\\overline{\\log d}_{(<i)} - \\overline{\\log d}_{(\\ge i)}\\big)^2,
              \\qquad \\varepsilon = \\sqrt{d_{(i^*-1)}\\,d_{(i^*)}}

    Incident data give a k-distance curve that is flat for clustered points and
    then jumps to the background (noise) distances; the chord rule of Kneedle
    lands inside the noise part on such curves, the split does not.

    Parameters
    ----------
    xy
        ``(n, 2)`` metric coordinates.
    min_samples
        DBSCAN ``min_samples`` (the point itself included).
    bounds
        ``(lo, hi)`` clamp for the result.
    """
    xy = np.asarray(xy, dtype=float)
    if len(xy) <= min_samples:
        raise AnalysisError(f"{len(xy)} incidents are too few for clusters of {min_samples}")
    d, _ = cKDTree(xy).query(xy, k=min_samples)
    dk = np.sort(d[:, -1])
    dk = dk[: max(int(np.ceil(len(dk) * 0.99)), 2)]
    floor = bounds[0] if bounds is not None else 1e-3
    v = np.log(np.maximum(dk, max(floor * 1e-3, 1e-9)))
    m = len(v)
    i = np.arange(1, m)
    c = np.cumsum(v)
    mu0 = c[:-1] / i
    mu1 = (c[-1] - c[:-1]) / (m - i)
    between = (i / m) * (1 - i / m) * (mu0 - mu1) ** 2
    if not np.any(between > 0):
        eps = float(dk[-1])
    else:
        k = int(np.argmax(between)) + 1
        eps = float(np.sqrt(max(dk[k - 1], 1e-9) * max(dk[k], 1e-9)))
    if bounds is not None:
        eps = float(np.clip(eps, bounds[0], bounds[1]))
    return eps


def default_config() -> dict[str, Any]:
    """The ``layers/hotspots.yaml`` section (every parameter's default lives there)."""
    from gis.catalog import load_yaml
    from gis.settings import LAYERS_DIR

    return load_yaml(LAYERS_DIR / "hotspots.yaml")  # the one YAML reader (safe, line-numbered errors)


def cluster_params(params: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """``clusters`` parameters: ``layers/hotspots.yaml`` defaults, then ``params``, then ``overrides``."""
    cfg = {**default_config()["clusters"], **(params or {}), **overrides}
    for key in ("eps_bounds_m",):
        if cfg.get(key) is not None:
            cfg[key] = tuple(cfg[key])
    return cfg


def scan_params(cfg: dict[str, Any]) -> ScanParams:
    """:class:`gis.cluster_scan.ScanParams` from the ``clusters`` parameters (``scan`` block)."""
    sc = cfg["scan"]
    return ScanParams(
        radii_m=tuple(float(r) for r in sc["radii_m"]),
        annulus_m=(float(sc["annulus_m"][0]), float(sc["annulus_m"][1])),
        core_p=float(sc["core_p"]),
        link_m=float(sc["link_m"]),
        attach_m=float(sc["attach_m"]),
        bandwidth_m=float(sc["bandwidth_m"]),
        neighbours=int(sc["neighbours"]),
        merge=str(sc["merge"]),
        merge_link_m=float(sc["merge_link_m"]),
        merge_saddle_ratio=float(sc["merge_saddle_ratio"]),
        min_cluster_size=int(cfg["min_cluster_size"]),
        min_background=float(sc["min_background_per_km2"]),
        mixture=mixture_params(cfg),
    )


def mixture_params(cfg: dict[str, Any]) -> MixtureParams:
    """:class:`gis.cluster_mixture.MixtureParams` from the ``clusters`` parameters (``scan.mixture`` block)."""
    sc, mx = cfg["scan"], cfg["scan"]["mixture"]
    return MixtureParams(
        min_sigma_m=float(mx["min_sigma_m"]),
        max_sigma_m=float("inf") if mx["max_sigma_m"] is None else float(mx["max_sigma_m"]),
        min_background=float(sc["min_background_per_km2"]) / 1e6,
        fit_background=bool(mx["fit_background"]), criterion=str(mx["criterion"]), split=bool(mx["split"]),
        max_iter=int(mx["max_iter"]), tol=float(mx["tol"]), min_size=float(cfg["min_cluster_size"]),
        reach_sigmas=float(mx["reach_sigmas"]), sectors=int(mx["sectors"]),
        place_sigmas=float(mx["place_sigmas"]), time=bool(mx["time"]), min_tau_days=float(mx["min_tau_days"]),
        assign_sigmas=float(mx["assign_sigmas"]), propose=str(mx["propose"]),
        propose_tol=float(mx["propose_tol"]), split_max_iter=int(mx["split_max_iter"]),
        accelerate=str(mx["accelerate"]), max_step=float(mx["max_step"]),
    )


def significance_params(cfg: dict[str, Any]) -> SignificanceParams:
    """:class:`gis.cluster_scan.SignificanceParams` from the ``clusters.significance`` block."""
    sg = cfg["significance"]
    return SignificanceParams(
        annulus_m=(float(sg["annulus_m"][0]), float(sg["annulus_m"][1])),
        sectors=int(sg["sectors"]),
        radius_sigmas=float(sg["radius_sigmas"]),
        window_overlap=float(sg["window_overlap"]),
        min_radius_m=float(sg["min_radius_m"]),
        min_background=float(sg["min_background_per_km2"]),
        alpha=float(sg["alpha"]),
        controls=bool(sg["controls"]),
        background=_background_mode(cfg),
    )


def _background_mode(cfg: dict[str, Any]) -> str:
    """``significance.background``; ``auto``: ``unclustered`` for the scan mixture (its clusters are the sites
    over a fitted background), ``all`` for the other detectors (their clusters leave a site's fringe out)."""
    mode = str(cfg["significance"]["background"])
    if mode != "auto":
        return mode
    return "unclustered" if cfg["method"] == "scan" and cfg["scan"]["merge"] == "mixture" else "all"


def cluster_labels(xy: np.ndarray, cfg: dict[str, Any], days: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
    """Cluster labels (−1 = noise) of points, and the DBSCAN eps used.

    ``cfg`` holds the ``clusters`` parameters (:func:`cluster_params`); ``method``:

    * ``scan`` — local-background scan cores grouped by quick shift
      (:func:`gis.cluster_scan.scan_labels`; no global distance);
    * ``dbscan`` — ``sklearn.cluster.DBSCAN``, ``min_samples = min_cluster_size``;
      eps from :func:`kdistance_eps` unless ``eps_m`` is given;
    * ``hdbscan`` — ``sklearn.cluster.HDBSCAN``; members whose ``probabilities_``
      are below ``hdbscan_min_probability`` are noise, clusters left smaller
      than ``min_cluster_size`` are dropped.
    """
    xy = np.asarray(xy, dtype=float)
    method, size = cfg["method"], int(cfg["min_cluster_size"])
    if len(xy) < size:
        return np.full(len(xy), -1, dtype=np.int64), None
    if method == "scan":
        return scan_labels(xy, scan_params(cfg), days), None
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        eps = cfg["eps_m"]
        if eps is None:
            eps = kdistance_eps(xy, size, bounds=cfg["eps_bounds_m"])
        labels = DBSCAN(eps=eps, min_samples=size, algorithm="kd_tree").fit_predict(xy)
        return labels.astype(np.int64), float(eps)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        model = HDBSCAN(
            min_cluster_size=max(size, 2), min_samples=cfg["hdbscan_min_samples"], algorithm="kd_tree", copy=True
        ).fit(xy)
        labels = model.labels_.astype(np.int64).copy()
        # fringe records HDBSCAN attaches with little strength are background, not the site
        labels[model.probabilities_ < float(cfg["hdbscan_min_probability"])] = -1
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        labels[np.isin(labels, ids[counts < size])] = -1
        return labels, None
    raise AnalysisError(f"unknown clustering method '{method}' (scan, dbscan or hdbscan)")


def drop_dispersed(xy: np.ndarray, labels: np.ndarray, max_spread_m: float) -> np.ndarray:
    """Labels with dispersed clusters set to noise (−1).

    A cluster is dispersed when the median distance of its members from their
    coordinate-wise median centre exceeds ``max_spread_m`` (for a circular
    Gaussian cluster of scale σ that median is 1.18 σ).
    """
    labels = np.asarray(labels).copy()
    ok = labels >= 0
    if not ok.any():
        return labels
    df = pd.DataFrame({"l": labels[ok], "x": xy[ok, 0], "y": xy[ok, 1]})
    centre = df.groupby("l")[["x", "y"]].transform("median")
    df["d"] = np.hypot(df["x"] - centre["x"], df["y"] - centre["y"])
    spread = df.groupby("l")["d"].median()
    bad = spread.index[spread > max_spread_m].to_numpy()
    labels[np.isin(labels, bad)] = -1
    return labels


@dataclass
class ClusterResult:
    """Result of :func:`find_clusters`.

    Attributes
    ----------
    clusters
        One row per cluster (polygon outline, metric CRS): ``cluster_id``,
        ``method``, ``group``, ``n_incidents``, ``kinds``, ``main_kind``,
        ``first_date``, ``last_date``, ``centroid_x``/``centroid_y``, ``lon``/``lat``
        (WGS84 centroid), ``radius_m``, ``townships``, ``township``, ``address``,
        ``fm_levels`` / ``fm_ranges`` (四山 levels and ranges the outline touches),
        ``share_no_build`` / ``share_key_control`` / ``share_general_control``
        (share of members inside each level), ``four_mountains_level``,
        ``n_closed``, ``closed_date``, ``open_incidents``; significance
        (:mod:`gis.cluster_scan`): ``observed``, ``expected``, ``ratio``,
        ``p_value``, ``q_value``, ``significant``, ``significance_en`` /
        ``significance_zh`` ("40 reports where 3 would be expected").
    members
        ``incident_id`` → ``cluster_id`` for clustered incidents.
    eps
        DBSCAN search distance used per group (None for other methods).
    """

    clusters: gpd.GeoDataFrame
    members: pd.DataFrame
    eps: dict[str, float | None] = field(default_factory=dict)

    def reported(self) -> gpd.GeoDataFrame:
        """Clusters for the inspectors' list: those passing the significance level."""
        c = self.clusters
        if "significant" not in c.columns:
            return c
        return c[c["significant"].fillna(False).astype(bool).to_numpy()]

    def incident_layer(self, incidents: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """``incidents`` with ``cluster_id`` (None for background) and ``cluster_significant``.

        The ``incidents`` layer of ``hotspots.gpkg``: every report, so that an
        inspector (or anyone evaluating the method) sees which reports make a cluster.
        """
        out = incidents.copy()
        cmap = self.members.set_index("incident_id")["cluster_id"]
        out["cluster_id"] = out["incident_id"].map(cmap).astype(object)
        out.loc[out["cluster_id"].isna(), "cluster_id"] = None
        sig = self.clusters.set_index("cluster_id")["significant"] if "significant" in self.clusters else None
        out["cluster_significant"] = out["cluster_id"].map(sig).astype("boolean") if sig is not None else pd.NA
        return out

    def cluster_reports(self, incidents: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Per cluster, its reports (``incident_id``, ``date``, ``kind``, ``source``, ``status``), by date.

        What a cluster's map popup lists; :func:`gis.maps` can call it with
        ``context["hotspots"].clusters`` and the district's incidents.
        """
        cols = [c for c in ("incident_id", "date", "kind", "source", "status") if c in incidents.columns]
        rows = pd.DataFrame(incidents[cols]).merge(self.members, on="incident_id", how="inner")
        rows = rows.sort_values(["cluster_id", "date", "incident_id"], kind="stable")
        return {cid: g.drop(columns="cluster_id").reset_index(drop=True) for cid, g in rows.groupby("cluster_id")}


def select_incidents(
    incidents: gpd.GeoDataFrame,
    *,
    kinds: list[str] | None = None,
    start: Any = None,
    end: Any = None,
) -> gpd.GeoDataFrame:
    """Incidents of the given kinds inside the inclusive date window."""
    keep = np.ones(len(incidents), dtype=bool)
    if kinds:
        keep &= incidents["kind"].isin(list(kinds)).to_numpy()
    dates = pd.to_datetime(incidents["date"])
    if start is not None:
        keep &= (dates >= pd.Timestamp(start)).to_numpy()
    if end is not None:
        keep &= (dates <= pd.Timestamp(end)).to_numpy()
    return incidents[keep]


def find_clusters(
    incidents: gpd.GeoDataFrame,
    *,
    zones: gpd.GeoDataFrame | None = None,
    townships: gpd.GeoDataFrame | None = None,
    params: dict[str, Any] | None = None,
    tiles: tuple[int, int] | None = None,
    **overrides: Any,
) -> ClusterResult:
    """Find clusters of incidents, describe them and test each against its local background.

    Parameters
    ----------
    incidents
        Incident points in a metric CRS with ``incident_id``, ``date``, ``kind``
        (optional ``status``, ``closed_date``, ``township``, ``address``).
    zones
        Control zones (``zone_type``, ``level``, ``name``); the ``four_mountains``
        rows give the 四山 flags.
    townships
        Township polygons, used when incidents carry no ``township``.
    params
        The ``clusters`` section (``layers/hotspots.yaml`` merged with the
        project's); missing keys come from ``layers/hotspots.yaml``.
    tiles
        ``(nx, ny)``: run the ``scan`` detector per partition, the incidents split into ``nx × ny``
        rectangles, each read with its halo (:mod:`gis.cluster_tiles`; the same clusters as the whole
        run, which ``None`` does at once).
    **overrides
        Single keys over ``params`` (e.g. ``method="hdbscan"``): ``method``
        (``scan``, ``dbscan``, ``hdbscan``), ``group_by`` (``kind`` or None),
        ``kinds``/``start``/``end`` (inclusive window), ``min_cluster_size``,
        ``eps_m``/``eps_bounds_m`` (DBSCAN), ``hdbscan_min_samples``,
        ``hdbscan_min_probability``, ``outline``/``concave_ratio``/
        ``outline_buffer_m``, ``max_spread_m`` (None keeps all), ``scan`` and
        ``significance`` blocks.

    Notes
    -----
    The cluster centre is the coordinate-wise median of the members; ``radius_m``
    the largest member distance from it. ``four_mountains_level`` is the strictest
    四山 level at the centre, else the level holding most members when at least
    half are inside the 四山 area. Significance per cluster:
    :func:`gis.cluster_scan.cluster_pvalues`, q-values across all clusters
    (:func:`gis.cluster_scan.flag_significant`).

    Examples
    --------
    >>> res = find_clusters(district.incidents, zones=district.zones)  # doctest: +SKIP
    >>> res.reported()[["cluster_id", "n_incidents", "significance_en"]]  # doctest: +SKIP
    """
    cfg = cluster_params(params, **overrides)
    _check_incidents(incidents)
    crs = incidents.crs
    inc = select_incidents(incidents, kinds=cfg["kinds"], start=cfg["start"], end=cfg["end"]).reset_index(drop=True)
    xy = np.column_stack([inc.geometry.x.to_numpy(), inc.geometry.y.to_numpy()])
    if tiles is None:
        labels, group_of, eps_used, sig = _label_groups(inc, xy, cfg)
    else:
        labels, group_of, eps_used, sig = _label_tiles(inc, xy, cfg, tiles)
    clusters = _describe_clusters(inc, xy, labels, group_of, zones, townships, cfg, crs)
    clusters = _with_significance(clusters, sig)
    members = pd.DataFrame(
        {"incident_id": inc["incident_id"].to_numpy()[labels >= 0], "_label": labels[labels >= 0]}
    )
    members["cluster_id"] = members["_label"].map(dict(zip(clusters["_label"], clusters["cluster_id"])))
    return ClusterResult(
        clusters=clusters.drop(columns="_label"), members=members.drop(columns="_label"), eps=eps_used
    )


def incident_days(inc: pd.DataFrame) -> np.ndarray:
    """Each report's date as days since 1970-01-01 (float); a missing date gets the median day.

    Used as the time coordinate of the mixture (``clusters.scan.mixture.time``); a report
    without a date then sits in the middle of the period and tells no site apart by time.
    """
    d = pd.to_datetime(inc["date"], errors="coerce")
    days = ((d - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    ok = np.isfinite(days)
    return np.where(ok, days, np.median(days[ok]) if ok.any() else 0.0)


def _check_incidents(incidents: gpd.GeoDataFrame | None) -> None:
    """One-line errors for incidents that cannot be clustered."""
    if incidents is None or len(incidents) == 0:
        raise AnalysisError("there are no incidents to cluster")
    for col in ("incident_id", "date", "kind"):
        if col not in incidents.columns:
            raise AnalysisError(f"incidents lack the '{col}' field")
    if incidents.crs is None or not incidents.crs.is_projected:
        raise AnalysisError("incidents must be in a projected (metric) CRS to cluster")


def _label_groups(
    inc: gpd.GeoDataFrame, xy: np.ndarray, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, float | None], pd.DataFrame]:
    """Labels over all groups (kinds), group of each incident, eps per group, significance per label.

    Each group's clusters are tested with the other groups' incidents as
    case-control reports (where people report at all;
    :func:`gis.cluster_scan.case_control_expected`).
    """
    by = cfg["group_by"]
    groups = inc[by].astype(str).to_numpy() if by else np.full(len(inc), "all", dtype=object)
    return group_labels(xy, groups, incident_days(inc), cfg)


def group_labels(
    xy: np.ndarray, groups: np.ndarray, days: np.ndarray, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, float | None], pd.DataFrame]:
    """:func:`_label_groups` on arrays: ``groups`` the group (kind) of each incident, ``days`` its date in days."""
    size = int(cfg["min_cluster_size"])
    sparams = significance_params(cfg)
    labels = np.full(len(xy), -1, dtype=np.int64)
    group_of = np.full(len(xy), "all", dtype=object)
    eps_used: dict[str, float | None] = {}
    by = cfg["group_by"]
    next_id = 0
    for g in pd.unique(groups):  # a handful of incident kinds
        sel = np.flatnonzero(groups == g)
        if len(sel) <= size:
            continue
        lab, eps_used[str(g)] = cluster_labels(xy[sel], cfg, days[sel])
        if cfg["max_spread_m"] is not None:
            lab = drop_dispersed(xy[sel], lab, float(cfg["max_spread_m"]))
        ok = lab >= 0
        group_of[sel] = g
        labels[sel[ok]] = lab[ok] + next_id
        next_id += int(lab.max()) + 1 if ok.any() else 0
    tables, windows = [], 0.0
    for g in pd.unique(group_of[labels >= 0]):
        sel = np.flatnonzero(groups == g)
        ok = labels[sel] >= 0
        ctl = [(xy[groups == h], xy[(groups == h) & (labels < 0)]) for h in pd.unique(groups)
               if h != g and (groups == h).sum() > size] if by and sparams.controls else None  # fmt: skip
        table, w = cluster_pvalues(xy[sel], np.flatnonzero(ok), labels[sel[ok]], sparams, controls=ctl)
        tables.append(table)
        windows += w
    sig = pd.concat(tables) if tables else pd.DataFrame(columns=["p_value"], dtype=float)
    return labels, group_of, eps_used, flag_significant(sig, windows, sparams.alpha)


def _label_tiles(
    inc: gpd.GeoDataFrame, xy: np.ndarray, cfg: dict[str, Any], tiles: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, dict[str, float | None], pd.DataFrame]:
    """:func:`_label_groups` of the ``scan`` mixture run per partition (:func:`gis.cluster_tiles.tiled_label_groups`)."""
    from gis.cluster_tiles import grid_tiles, tiled_label_groups

    if cfg["method"] != "scan" or cfg["scan"]["merge"] != "mixture" or cfg["group_by"] != "kind":
        raise AnalysisError("clusters per partition need method: scan, scan.merge: mixture and group_by: kind")
    tile, boxes = grid_tiles(xy, int(tiles[0]), int(tiles[1]))
    groups = inc["kind"].astype(str).to_numpy()
    spread = None if cfg["max_spread_m"] is None else float(cfg["max_spread_m"])
    labels, sig = tiled_label_groups(xy, groups, incident_days(inc), tile, boxes, scan_params(cfg),
                                     significance_params(cfg), spread)  # fmt: skip
    size = int(cfg["min_cluster_size"])
    group_of = np.full(len(inc), "all", dtype=object)
    eps_used: dict[str, float | None] = {}
    for g in pd.unique(groups):
        if (groups == g).sum() > size:
            group_of[groups == g] = g
            eps_used[str(g)] = None
    return labels, group_of, eps_used, sig


def _with_significance(clusters: gpd.GeoDataFrame, sig: pd.DataFrame) -> gpd.GeoDataFrame:
    """Clusters with the significance columns of their label and the plain-language texts."""
    cols = ["observed", "expected", "ratio", "p_value", "q_value", "significant", "disc_radius_m"]
    out = clusters.copy()
    for col in cols:
        out[col] = out["_label"].map(sig[col]) if col in sig.columns and len(out) else pd.Series(dtype=float)
    out["significant"] = out["significant"].astype(bool) if len(out) else pd.Series(dtype=bool)
    out["significance_en"] = [significance_text(o, e) for o, e in zip(out["observed"], out["expected"])]
    out["significance_zh"] = [significance_text(o, e, lang="zh") for o, e in zip(out["observed"], out["expected"])]
    return out


def _four_mountains(zones: gpd.GeoDataFrame | None, crs: Any) -> gpd.GeoDataFrame | None:
    if zones is None or len(zones) == 0 or "zone_type" not in zones.columns:
        return None
    fm = zones[zones["zone_type"].astype(str) == "four_mountains"]
    if len(fm) == 0:
        return None
    fm = fm.to_crs(crs) if fm.crs != crs else fm
    fm = fm.reset_index(drop=True).copy()
    fm["_rank"] = fm["level"].map(lambda v: ZONE_LEVEL_RANK.get(ZoneLevel(v), 0) if v in set(ZoneLevel) else 0)
    return fm


def point_levels(xy: np.ndarray, fm: gpd.GeoDataFrame | None) -> np.ndarray:
    """Strictest 四山 rank (0 outside, 1 general, 2 key control, 3 no-build) at each point."""
    rank = np.zeros(len(xy), dtype=np.int64)
    if fm is None or len(xy) == 0:
        return rank
    pts = shapely.points(xy)
    ip, iz = fm.sindex.query(pts, predicate="intersects")
    np.maximum.at(rank, ip, fm["_rank"].to_numpy()[iz].astype(np.int64))
    return rank


_CLUSTER_COLUMNS = [
    "cluster_id", "_label", "method", "group", "n_incidents", "kinds", "main_kind", "first_date",
    "last_date", "centroid_x", "centroid_y", "lon", "lat", "radius_m", "townships", "township",
    "address", "fm_levels", "fm_ranges", "share_no_build", "share_key_control",
    "share_general_control", "four_mountains_level", "n_closed", "closed_date", "open_incidents",
]  # fmt: skip


def _describe_clusters(
    inc: gpd.GeoDataFrame,
    xy: np.ndarray,
    labels: np.ndarray,
    group_of: np.ndarray,
    zones: gpd.GeoDataFrame | None,
    townships: gpd.GeoDataFrame | None,
    cfg: dict[str, Any],
    crs: Any,
) -> gpd.GeoDataFrame:
    """One row per label: size, dates, centre, kinds, townships, outline and 四山 columns."""
    m = labels >= 0
    if not m.any():
        return gpd.GeoDataFrame(columns=_CLUSTER_COLUMNS, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    mxy = xy[m]
    mem = _member_frame(inc, mxy, m, labels[m], group_of[m], townships, crs)
    out, codes = _cluster_stats(mem)
    order = np.argsort(codes, kind="stable")  # outlines: vectorised multipoint -> hull -> buffer
    mp = shapely.multipoints(mxy[order], indices=codes[order])
    if cfg["outline"] == "concave":
        hull = shapely.concave_hull(mp, ratio=float(cfg["concave_ratio"]))
    else:
        hull = shapely.convex_hull(mp)
    geom = shapely.buffer(hull, float(cfg["outline_buffer_m"]))
    _four_mountain_columns(out, mxy, codes, geom, _four_mountains(zones, crs))
    out = out.reset_index()
    # stable ids: ordered by size then first date
    out = out.sort_values(["n_incidents", "first_date"], ascending=[False, True], kind="stable")
    geom = geom[out.index.to_numpy()]
    out = out.reset_index(drop=True)
    out["cluster_id"] = [f"HS-{i + 1:04d}" for i in range(len(out))]
    out["method"] = cfg["method"]
    lonlat = gpd.GeoSeries(shapely.points(out[["centroid_x", "centroid_y"]].to_numpy()), crs=crs).to_crs(4326)
    out["lon"], out["lat"] = lonlat.x.to_numpy(), lonlat.y.to_numpy()
    return gpd.GeoDataFrame(out[_CLUSTER_COLUMNS], geometry=geom, crs=crs)


def _member_frame(
    inc: gpd.GeoDataFrame,
    mxy: np.ndarray,
    m: np.ndarray,
    lab: np.ndarray,
    groups: np.ndarray,
    townships: gpd.GeoDataFrame | None,
    crs: Any,
) -> pd.DataFrame:
    """Clustered incidents (mask ``m``) with label, position, date, kind, township, status."""
    mem = pd.DataFrame(
        {
            "_label": lab,
            "x": mxy[:, 0],
            "y": mxy[:, 1],
            "date": pd.to_datetime(inc["date"].to_numpy()[m]),
            "kind": inc["kind"].astype(str).to_numpy()[m],
            "group": groups,
        }
    )
    if "township" in inc.columns and inc["township"].notna().any():
        mem["township"] = inc["township"].to_numpy()[m]
    elif townships is not None:
        from gis.district import assign_township

        mem["township"] = assign_township(gpd.GeoSeries(shapely.points(mxy), crs=crs), townships.to_crs(crs))
    else:
        mem["township"] = None
    mem["address"] = inc["address"].to_numpy()[m] if "address" in inc.columns else None
    status = inc["status"].astype(str).to_numpy()[m] if "status" in inc.columns else np.full(m.sum(), "")
    mem["closed"] = np.isin(status, ["closed", "rectified"])
    mem["closed_date"] = (
        pd.to_datetime(inc["closed_date"].to_numpy()[m]) if "closed_date" in inc.columns else pd.NaT
    )
    return mem


def _cluster_stats(mem: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Per label (sorted): counts, centre, dates, radius, kinds, townships; and each member's row code."""
    g = mem.groupby("_label", sort=True)
    out = g.agg(
        n_incidents=("x", "size"),
        centroid_x=("x", "median"),
        centroid_y=("y", "median"),
        first_date=("date", "min"),
        last_date=("date", "max"),
        group=("group", "first"),
        n_closed=("closed", "sum"),
        closed_date=("closed_date", "max"),
    )
    out["open_incidents"] = out["n_incidents"] - out["n_closed"]
    codes = out.index.get_indexer(mem["_label"])
    dx = mem["x"].to_numpy() - out["centroid_x"].to_numpy()[codes]
    dy = mem["y"].to_numpy() - out["centroid_y"].to_numpy()[codes]
    out["radius_m"] = pd.Series(np.hypot(dx, dy)).groupby(codes).max().to_numpy()
    kind_counts = mem.groupby(["_label", "kind"]).size().rename("n").reset_index()
    kind_counts = kind_counts.sort_values(["_label", "n", "kind"], ascending=[True, False, True])
    out["kinds"] = kind_counts.groupby("_label")["kind"].agg(list)
    out["main_kind"] = kind_counts.groupby("_label")["kind"].first()
    out["townships"], out["township"] = _modal_lists(mem, "township")
    _, out["address"] = _modal_lists(mem, "address")
    return out, codes


def _four_mountain_columns(
    out: pd.DataFrame, mxy: np.ndarray, codes: np.ndarray, geom: np.ndarray, fm: gpd.GeoDataFrame | None
) -> None:
    """Add the 四山 shares, ``four_mountains_level``, ``fm_levels`` and ``fm_ranges`` to ``out``."""
    rank = point_levels(mxy, fm)
    for r, name in ((3, "share_no_build"), (2, "share_key_control"), (1, "share_general_control")):
        out[name] = np.bincount(codes, weights=(rank == r).astype(float), minlength=len(out)) / out["n_incidents"]
    c_rank = point_levels(out[["centroid_x", "centroid_y"]].to_numpy(), fm)
    inside_share = out[["share_no_build", "share_key_control", "share_general_control"]].sum(axis=1).to_numpy()
    modal = out[["share_general_control", "share_key_control", "share_no_build"]].to_numpy().argmax(axis=1) + 1
    level_rank = np.where(c_rank > 0, c_rank, np.where(inside_share >= 0.5, modal, 0))
    out["four_mountains_level"] = [_LEVEL_BY_RANK.get(int(v)) for v in level_rank]
    out["fm_levels"] = [[] for _ in range(len(out))]
    out["fm_ranges"] = [[] for _ in range(len(out))]
    if fm is None:
        return
    ic, iz = fm.sindex.query(geom, predicate="intersects")
    touched = pd.DataFrame(
        {"c": ic, "level": fm["level"].astype(str).to_numpy()[iz], "rank": fm["_rank"].to_numpy()[iz]}
    )
    touched["range"] = fm["name"].astype(str).to_numpy()[iz] if "name" in fm.columns else ""
    lv = touched.sort_values("rank", ascending=False).drop_duplicates(["c", "level"]).groupby("c")["level"].agg(list)
    rg = touched[touched["range"].ne("") & touched["range"].ne("None")].drop_duplicates(["c", "range"])
    rg = rg.groupby("c")["range"].agg(sorted)
    for series, col in ((lv, "fm_levels"), (rg, "fm_ranges")):
        vals = out[col].to_list()
        for i, v in series.items():
            vals[i] = v
        out[col] = vals


def _modal_lists(mem: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
    """Per cluster: list of distinct values by frequency, and the most frequent one."""
    sub = mem[["_label", col]].dropna()
    sub = sub[sub[col].astype(str).str.strip().ne("")]
    counts = sub.groupby(["_label", col]).size().rename("n").reset_index()
    counts = counts.sort_values(["_label", "n", col], ascending=[True, False, True])
    lists = counts.groupby("_label")[col].agg(list)
    labels = mem["_label"].drop_duplicates().sort_values()
    lists = lists.reindex(labels.to_numpy())
    lists = lists.map(lambda v: v if isinstance(v, list) else [])
    first = lists.map(lambda v: v[0] if v else None)
    return lists, first


# ============================================================ Gi* grid


@dataclass
class HexHotSpots:
    """Result of :func:`hex_hot_spots`.

    Attributes
    ----------
    grid
        Hexagon cells (GeoDataFrame): ``cell_id``, ``q``, ``r``, ``count``,
        ``gi_z``, ``gi_p``, ``gi_bin``, ``n_neighbours`` (+ ``p_sim`` with
        permutations, ``emerging``, ``trend_z``, ``trend_p`` with space-time).
    hexgrid
        The :class:`gis.gistar.HexGrid`.
    gi
        The :class:`gis.gistar.GiStarResult`.
    cell_size_m, band_m
        Hexagon spacing and distance band used.
    emerging
        :class:`gis.emerging.EmergingResult` or None.
    """

    grid: gpd.GeoDataFrame
    hexgrid: Any
    gi: Any
    cell_size_m: float
    band_m: float | None
    emerging: Any = None


def hex_hot_spots(
    incidents: gpd.GeoDataFrame,
    *,
    area: Any = None,
    grid_params: GiStarParams | Mapping[str, Any] | None = None,
    cell_size_m: float | None = None,
    emerging: Mapping[str, Any] | None = None,
) -> HexHotSpots:
    """Optimized-Hot-Spot-style Gi* of incident counts on a hexagon grid (热点分析).

    Incidents are counted per hexagon (:class:`gis.gistar.HexGrid`) over ``area``
    (the district outline; default the incidents' extent); cell size from
    :func:`gis.gistar.choose_cell_size` unless given; weights binary within
    ``band_cells`` spacings (lattice) or the ``knn`` nearest cells; Gi* with
    BH-FDR bins (:func:`gis.gistar.gi_star`). ``grid_params`` is the ``gistar``
    section (:class:`gis.params.GiStarParams`; None: ``layers/hotspots.yaml``);
    ``cell_size_m`` overrides its cell size. With ``emerging`` parameters
    (``layers/hotspots.yaml`` ``emerging``), the space-time categories are added.
    """
    from gis import gistar

    g = grid_params if grid_params is not None else _default_section("gistar")
    cell_size_m = g["cell_size_m"] if cell_size_m is None else cell_size_m
    max_cells, weights = int(g["max_cells"]), g["weights"]
    kinds = g["kinds"]
    inc = select_incidents(incidents, kinds=list(kinds) if kinds else None)
    if len(inc) < 3:
        raise AnalysisError("Gi* needs at least 3 incidents")
    xy = np.column_stack([inc.geometry.x.to_numpy(), inc.geometry.y.to_numpy()])
    bounds = tuple(shapely.bounds(area)) if area is not None else (*xy.min(0), *xy.max(0))
    if cell_size_m is None:
        cell_size_m = gistar.choose_cell_size(xy, factor=float(g["cell_size_factor"]), bounds=bounds,
                                              max_cells=max_cells)
        cell_size_m = float(np.clip(cell_size_m, *g["cell_size_bounds_m"]))
    from gis.limits import check_size  # before allocating: cells ≈ W·H / s² (analysis.max_grid_cells)

    check_size((bounds[2] - bounds[0]) * (bounds[3] - bounds[1]) / max(float(cell_size_m), 1e-9) ** 2,
               "analysis", "max_grid_cells", "the hot-spot grid's cells (raise hotspots cell_size_m)")
    grid = gistar.HexGrid.covering(bounds, cell_size_m, crs=incidents.crs, mask=area)
    if len(grid) > 4 * max_cells:
        raise AnalysisError(f"a {cell_size_m:.0f} m hexagon grid has {len(grid)} cells; raise cell_size_m")
    counts = grid.count(xy)
    if weights == "distance_band":
        band = float(g["band_cells"]) * cell_size_m
        w = gistar.lattice_weights(grid, band)
    elif weights == "knn":
        band = None
        w = gistar.knn_weights(grid.centres, int(g["knn"]))
    else:
        raise AnalysisError(f"unknown weights '{weights}' (distance_band or knn)")
    gi = gistar.gi_star(counts, w, fdr=bool(g["fdr"]), permutations=int(g["permutations"]), seed=g["seed"])
    cols: dict[str, Any] = {
        "count": counts,
        "gi_z": gi.z,
        "gi_p": gi.p,
        "gi_bin": gi.gi_bin,
        "n_neighbours": gi.n_neighbours,
    }
    if gi.p_sim is not None:
        cols["p_sim"] = gi.p_sim
    em = _emerging(inc, xy, grid, w, emerging) if emerging is not None else None
    if em is not None:
        cols.update(emerging=em.category, trend_z=em.trend_z, trend_p=em.trend_p)
    return HexHotSpots(
        grid=grid.to_geodataframe(**cols), hexgrid=grid, gi=gi, cell_size_m=cell_size_m, band_m=band, emerging=em
    )


def _emerging(inc: gpd.GeoDataFrame, xy: np.ndarray, grid: Any, w: Any, cfg: dict[str, Any]) -> Any:
    """Emerging hot-spot categories (:func:`gis.emerging.emerging_hot_spots`), None when too few steps."""
    from gis import emerging as emg

    step, labels = emg.time_step_index(inc["date"], cfg["time_step"], cfg["stages"], max_steps=int(cfg["max_steps"]))
    if len(labels) < int(cfg["min_steps"]):
        return None
    return emg.emerging_hot_spots(
        grid.locate(xy),
        step,
        len(grid),
        w,
        steps=labels,
        time_steps=int(cfg["neighborhood_time_steps"]),
        alpha=float(cfg["alpha"]),
        fdr=bool(cfg["fdr"]),
    )


# ============================================================ density


def default_bandwidth(xy: np.ndarray) -> float:
    """Gaussian σ from ArcGIS Kernel Density's default search radius.

    ArcGIS uses the spatial Silverman rule for the radius of its quartic kernel,

    .. math:: h = 0.9\\,\\min\\Big(SD,\\ \\sqrt{1/\\ln 2}\\,D_m\\Big)\\,n^{-0.2}

    (:math:`SD` standard distance, :math:`D_m` median distance to the mean
    centre); a quartic kernel of radius *h* has standard deviation
    :math:`h/\\sqrt7`, which is the Gaussian σ returned.
    """
    xy = np.asarray(xy, dtype=float)
    c = xy.mean(axis=0)
    d = np.hypot(*(xy - c).T)
    sd = np.sqrt((d**2).mean())
    dm = np.median(d)
    h = 0.9 * min(sd, np.sqrt(1.0 / np.log(2.0)) * dm) * len(xy) ** -0.2
    return float(h / np.sqrt(7.0))


@dataclass
class DensitySurface:
    """A kernel density raster (核密度).

    Attributes
    ----------
    array
        ``float32`` incidents per km², north-up (row 0 = top).
    transform
        Affine transform (rasterio) of the array.
    crs
        CRS of the raster.
    bandwidth_m, cell_size_m
        Gaussian σ and pixel size.
    """

    array: np.ndarray
    transform: Any
    crs: Any
    bandwidth_m: float
    cell_size_m: float


def kernel_density(
    xy: np.ndarray,
    *,
    crs: Any = None,
    bandwidth_m: float | None = None,
    cell_size_m: float | None = None,
    bounds: tuple[float, float, float, float] | None = None,
    padding_m: float | None = None,
    max_pixels: int | None = None,
) -> DensitySurface:
    """Gaussian kernel density of points on a raster, by binning and filtering.

    .. math:: \\hat\\lambda(s) = \\sum_i \\frac{1}{2\\pi\\sigma^2}
              \\exp\\Big(-\\frac{\\lVert s - s_i\\rVert^2}{2\\sigma^2}\\Big)

    (incidents per m², reported per km²). Points are binned onto the pixel grid
    and the counts convolved with a separable Gaussian
    (:func:`scipy.ndimage.gaussian_filter`), O(pixels) instead of
    O(pixels × points); tested against ``sklearn.neighbors.KernelDensity``.

    Parameters
    ----------
    xy
        ``(n, 2)`` metric coordinates.
    bandwidth_m
        Gaussian σ; default :func:`default_bandwidth`.
    cell_size_m
        Pixel size; enlarged if the raster would exceed ``max_pixels`` (None for
        either: ``density`` of ``layers/hotspots.yaml``).
    bounds
        Raster extent (default: points' extent plus ``padding_m``).
    padding_m
        Margin around the points (default 3 σ).
    """
    from affine import Affine

    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if len(xy) == 0:
        raise AnalysisError("no incidents for a density surface")
    cell_size_m, max_pixels = _or_default("density", cell_size_m=cell_size_m, max_pixels=max_pixels)
    bw = float(bandwidth_m) if bandwidth_m else default_bandwidth(xy)
    if not bw > 0:
        bw = cell_size_m
    pad = 3.0 * bw if padding_m is None else float(padding_m)
    minx, miny, maxx, maxy = bounds if bounds is not None else (*xy.min(0) - pad, *xy.max(0) + pad)
    cell = float(cell_size_m)
    area_px = (maxx - minx) * (maxy - miny) / cell**2
    if area_px > max_pixels:
        cell *= float(np.sqrt(area_px / max_pixels))
    ncol = max(int(np.ceil((maxx - minx) / cell)), 1)
    nrow = max(int(np.ceil((maxy - miny) / cell)), 1)
    col = np.floor((xy[:, 0] - minx) / cell).astype(np.int64)
    row = np.floor((maxy - xy[:, 1]) / cell).astype(np.int64)
    ok = (col >= 0) & (col < ncol) & (row >= 0) & (row < nrow)
    counts = np.bincount(row[ok] * ncol + col[ok], minlength=nrow * ncol).reshape(nrow, ncol).astype(float)
    from scipy import ndimage  # here: a process that only reads hotspot results skips its import

    smooth = ndimage.gaussian_filter(counts, sigma=bw / cell, mode="constant", truncate=4.0)
    per_km2 = (smooth / cell**2 * 1e6).astype(np.float32)
    return DensitySurface(
        array=per_km2, transform=Affine(cell, 0.0, minx, 0.0, -cell, maxy), crs=crs, bandwidth_m=bw, cell_size_m=cell
    )


# ============================================================ rebound


def detect_rebounds(
    incidents: gpd.GeoDataFrame,
    *,
    distance_m: float | None = None,
    window_days: float | None = None,
    closed_statuses: tuple[str, ...] | list[str] = ("closed", "rectified"),
    same_kind: bool = True,
) -> pd.DataFrame:
    """Closed or rectified sites with new incidents nearby after closure (反弹).

    A *closed site* is an incident whose ``status`` is in ``closed_statuses`` and
    which has a ``closed_date``. Incident *j* is a rebound of closed site *i* when

    .. math:: \\lVert s_j - s_i \\rVert \\le D, \\qquad
              t_{close,i} < t_j \\le t_{close,i} + \\Delta

    (``distance_m`` = *D*, ``window_days`` = Δ; None: ``rebound`` of
    ``layers/hotspots.yaml``) and, with ``same_kind``, *j* is of
    the same incident kind as *i* (the same illegal activity came back, not an
    unrelated complaint next door). Pairs are found with one KD-tree sparse
    distance query.

    Returns
    -------
    DataFrame
        One row per (closed site, rebound incident): ``closed_id``,
        ``closed_date``, ``incident_id``, ``date``, ``distance_m``, ``days_after``,
        ``kind`` (of the new incident).
    """
    cols = ["closed_id", "closed_date", "incident_id", "date", "distance_m", "days_after", "kind"]
    if incidents is None or len(incidents) == 0 or "closed_date" not in incidents.columns:
        return pd.DataFrame(columns=cols)
    distance_m, window_days = _or_default("rebound", distance_m=distance_m, window_days=window_days)
    status = incidents["status"].astype(str).to_numpy() if "status" in incidents.columns else None
    cdate = pd.to_datetime(incidents["closed_date"])
    closed = cdate.notna().to_numpy().copy()
    if status is not None:
        closed &= np.isin(status, list(closed_statuses))
    ci = np.flatnonzero(closed)
    if len(ci) == 0:
        return pd.DataFrame(columns=cols)
    xy = np.column_stack([incidents.geometry.x.to_numpy(), incidents.geometry.y.to_numpy()])
    sdm = cKDTree(xy[ci]).sparse_distance_matrix(cKDTree(xy), distance_m, output_type="ndarray")
    a, b, dist = ci[sdm["i"]], sdm["j"].astype(np.int64), sdm["v"]  # zero distances are kept
    pairs = pd.DataFrame({"a": a, "b": b, "d": dist})
    pairs = pairs[pairs["a"] != pairs["b"]]
    dates = pd.to_datetime(incidents["date"]).to_numpy()
    cd = cdate.to_numpy()
    t_close = cd[pairs["a"].to_numpy()]
    t_new = dates[pairs["b"].to_numpy()]
    days = (t_new - t_close) / np.timedelta64(1, "D")
    keep = (days > 0) & (days <= window_days)
    if same_kind:
        kind = incidents["kind"].astype(str).to_numpy()
        keep &= kind[pairs["a"].to_numpy()] == kind[pairs["b"].to_numpy()]
    ids = incidents["incident_id"].to_numpy()
    p = pairs[keep]
    out = pd.DataFrame(
        {
            "closed_id": ids[p["a"].to_numpy()],
            "closed_date": t_close[keep],
            "incident_id": ids[p["b"].to_numpy()],
            "date": t_new[keep],
            "distance_m": p["d"].to_numpy(),
            "days_after": days[keep],
            "kind": incidents["kind"].astype(str).to_numpy()[p["b"].to_numpy()],
        }
    )
    return out.sort_values(["closed_date", "closed_id", "date"]).reset_index(drop=True)


def cluster_rebounds(
    result: ClusterResult,
    incidents: pd.DataFrame,
    rebounds: pd.DataFrame,
    *,
    window_days: float | None = None,
    closed_statuses: tuple[str, ...] | list[str] = ("closed", "rectified"),
    min_closed_share: float | None = None,
) -> pd.DataFrame:
    """Closure and rebound (反弹) of each cluster.

    A cluster is *closed* at :math:`t_c`, the latest ``closed_date`` among its
    members with a closed status, when those closed members are at least
    ``min_closed_share`` of the members reported up to :math:`t_c` (the site was
    shut down as a whole, 关停取缔 — not one stray record). It *rebounded* when
    an incident of one of the cluster's kinds, within the rebound distance of one
    of its closed members (the pairs of :func:`detect_rebounds`), is dated in
    :math:`(t_c,\\ t_c + \\Delta]` (None for Δ = ``window_days`` or ``min_closed_share``:
    ``rebound`` of ``layers/hotspots.yaml``).

    Returns
    -------
    DataFrame
        Indexed by ``cluster_id``: ``closed`` (bool), ``closed_date`` (:math:`t_c`
        or NaT), ``rebound`` (bool), ``rebound_first_date``, ``rebound_incidents``.
    """
    ids = result.clusters["cluster_id"]
    out = pd.DataFrame(index=pd.Index(ids, name="cluster_id"))
    out["closed"] = False
    out["closed_date"] = pd.NaT
    out["rebound"] = False
    out["rebound_first_date"] = pd.NaT
    out["rebound_incidents"] = 0
    if len(result.members) == 0 or "closed_date" not in incidents.columns:
        return out
    window_days, min_closed_share = _or_default("rebound", window_days=window_days, min_closed_share=min_closed_share)
    inc = pd.DataFrame(
        {
            "incident_id": incidents["incident_id"].to_numpy(),
            "date": pd.to_datetime(incidents["date"]).to_numpy(),
            "cdate": pd.to_datetime(incidents["closed_date"]).to_numpy(),
            "is_closed": incidents["status"].astype(str).isin(list(closed_statuses)).to_numpy()
            if "status" in incidents.columns
            else True,
        }
    )
    mem = result.members.merge(inc, on="incident_id", how="left")
    mem["is_closed"] &= mem["cdate"].notna()
    tc = mem[mem["is_closed"]].groupby("cluster_id")["cdate"].max()
    if len(tc) == 0:
        return out
    mem["tc"] = mem["cluster_id"].map(tc)
    upto = mem[mem["tc"].notna() & (mem["date"] <= mem["tc"])]
    share = upto.groupby("cluster_id")["is_closed"].mean()
    closed_ids = share.index[share >= min_closed_share]
    out.loc[closed_ids, "closed"] = True
    out.loc[closed_ids, "closed_date"] = tc.reindex(closed_ids).to_numpy()
    if len(rebounds) == 0 or len(closed_ids) == 0:
        return out
    cmap = result.members.set_index("incident_id")["cluster_id"]
    r = rebounds.assign(cluster_id=rebounds["closed_id"].map(cmap))
    r = r[r["cluster_id"].isin(closed_ids)]
    kinds = result.clusters.set_index("cluster_id")["kinds"]
    r = r.assign(t_c=r["cluster_id"].map(out["closed_date"]))
    days = (pd.to_datetime(r["date"]) - pd.to_datetime(r["t_c"])).dt.days
    r = r[(days > 0).to_numpy() & (days <= window_days).to_numpy()]
    cluster_kinds = kinds.explode().rename("kind").reset_index().drop_duplicates()
    r = r.merge(cluster_kinds, on=["cluster_id", "kind"], how="inner")  # the cluster's own kinds
    if len(r) == 0:
        return out
    agg = r.groupby("cluster_id").agg(
        rebound_first_date=("date", "min"), rebound_incidents=("incident_id", "nunique")
    )
    out.loc[agg.index, "rebound"] = True
    out.loc[agg.index, "rebound_first_date"] = agg["rebound_first_date"]
    out.loc[agg.index, "rebound_incidents"] = agg["rebound_incidents"].astype(int)
    return out


def match_planted(
    result: ClusterResult,
    clusters_truth: pd.DataFrame,
    incidents_truth: pd.DataFrame,
) -> pd.DataFrame:
    """Match found clusters to planted (known) clusters, e.g. the sample's truth files.

    A planted cluster is *recovered* by the found cluster holding most of its
    members when that cluster holds a majority (> half) of them and its centre
    lies within the planted ``radius_m`` of the planted centre (``lon``/``lat``,
    WGS84).

    Parameters
    ----------
    result
        Output of :func:`find_clusters`.
    clusters_truth
        ``cluster_id``, ``lon``, ``lat``, ``radius_m``, ``n_incidents`` and
        optionally ``four_mountains_level``.
    incidents_truth
        ``incident_id``, ``cluster_id`` (empty for background incidents).

    Returns
    -------
    DataFrame
        One row per planted cluster: ``truth_id``, ``found_id``, ``shared``,
        ``distance_m``, ``recovered``, ``level_truth``, ``level_found``.
    """
    t = clusters_truth.copy()
    t["truth_id"] = t["cluster_id"].astype(str)
    mt = incidents_truth.dropna(subset=["cluster_id"]).copy()
    mt["truth_id"] = mt["cluster_id"].astype(str)
    mt = mt[mt["truth_id"].str.strip().ne("")]
    found = result.members.rename(columns={"cluster_id": "found_id"})
    m = mt[["incident_id", "truth_id"]].merge(found, on="incident_id", how="inner")
    best = m.groupby(["truth_id", "found_id"]).size().rename("shared").reset_index()
    best = best.sort_values(["truth_id", "shared"], ascending=[True, False]).drop_duplicates("truth_id")
    out = t[["truth_id", "lon", "lat", "radius_m", "n_incidents"]].merge(best, on="truth_id", how="left")
    crs = result.clusters.crs
    centres = gpd.GeoSeries(gpd.points_from_xy(out["lon"], out["lat"]), crs=4326).to_crs(crs)
    cl = result.clusters.set_index("cluster_id")
    has = out["found_id"].notna().to_numpy()
    fx = np.full(len(out), np.nan)
    fy = np.full(len(out), np.nan)
    fx[has] = cl.loc[out.loc[has, "found_id"], "centroid_x"].to_numpy()
    fy[has] = cl.loc[out.loc[has, "found_id"], "centroid_y"].to_numpy()
    out["distance_m"] = np.hypot(fx - centres.x.to_numpy(), fy - centres.y.to_numpy())
    out["shared"] = out["shared"].fillna(0).astype(int)
    out["recovered"] = has & (out["shared"] * 2 > out["n_incidents"]) & (out["distance_m"] <= out["radius_m"])
    if "four_mountains_level" in t.columns:
        out["level_truth"] = t["four_mountains_level"].where(t["four_mountains_level"].map(_present), None).to_numpy()
    else:
        out["level_truth"] = None
    lv = np.full(len(out), None, dtype=object)
    lv[has] = cl.loc[out.loc[has, "found_id"], "four_mountains_level"].to_numpy()
    out["level_found"] = [v if _present(v) else None for v in lv]
    return out.drop(columns=["lon", "lat"])


# ============================================================ priority


def priority_list(
    clusters: gpd.GeoDataFrame, config: dict[str, Any], *, as_of: Any = None
) -> gpd.GeoDataFrame:
    """Clusters ranked for inspection by the score documented in ``layers/hotspots.yaml``.

    .. math:: \\text{score} = 100\\,\\frac{\\sum_k w_k c_k}{\\sum_k w_k}

    with components in [0, 1]: size :math:`\\log(1+n)/\\log(1+n_{max})`; recency
    :math:`0.5^{\\text{age}/T_{1/2}}` (age = days from the last incident to
    ``as_of``); zone = 四山 rank / 3; kind = the highest severity among the
    cluster's kinds; rebound = 1 if the cluster rebounded; excess =
    :math:`1 - E/O` (share of the reports beyond the local background,
    :func:`gis.cluster_scan.cluster_pvalues`). Adds ``rank``,
    ``score``, the components (``c_size`` …), ``lead_departments`` and
    ``support_departments`` (the township, 属地, always co-responsible).
    """
    config = merged_config(config)
    pr = config["priority"]
    kinds_cfg: dict[str, Any] = config["kinds"]
    fm_cfg: dict[str, Any] = config["four_mountains"]
    w = {k: float(v) for k, v in pr["weights"].items()}
    total = sum(w.values())
    if total <= 0:
        raise AnalysisError("hotspots.priority.weights must have a positive sum")
    out = clusters.copy()
    if len(out) == 0:
        for col in ("rank", "score", "lead_departments", "support_departments", "deadline"):
            out[col] = []
        return out
    as_of = pd.Timestamp(as_of) if as_of is not None else pd.to_datetime(out["last_date"]).max()
    n = out["n_incidents"].to_numpy(dtype=float)
    out["c_size"] = np.log1p(n) / np.log1p(n.max())
    age = (as_of - pd.to_datetime(out["last_date"])).dt.days.clip(lower=0).to_numpy(dtype=float)
    out["c_recency"] = 0.5 ** (age / float(pr["recency_half_life_days"]))
    rank = out["four_mountains_level"].map(lambda v: ZONE_LEVEL_RANK[ZoneLevel(v)] if _present(v) else 0)
    out["c_zone"] = rank.fillna(0).to_numpy(dtype=float) / 3.0
    other = float(pr["unknown_kind_severity"])
    sev = {k: float(v["severity"]) if v.get("severity") is not None else other for k, v in kinds_cfg.items()}
    out["c_kind"] = out["kinds"].map(lambda ks: max((sev.get(k, other) for k in ks), default=0.0))
    reb = out["rebound"] if "rebound" in out.columns else pd.Series(False, index=out.index)
    out["c_rebound"] = reb.fillna(False).astype(float)
    if "expected" in out.columns:  # share of the reports beyond the local background
        obs = out["observed"].to_numpy(dtype=float)
        out["c_excess"] = np.clip(1.0 - out["expected"].to_numpy(dtype=float) / np.maximum(obs, 1.0), 0.0, 1.0)
    else:
        out["c_excess"] = 0.0
    components = ("size", "recency", "zone", "kind", "rebound", "excess")
    score = sum(w[k] * out[f"c_{k}"] for k in components if k in w)
    out["score"] = (100.0 * score / total).round(2)
    out = out.sort_values(["score", "n_incidents"], ascending=[False, False], kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)

    def depts(kinds: list[str], key: str) -> list[str]:
        seen: list[str] = []
        for k in kinds:
            for dpt in kinds_cfg.get(k, {}).get(key, []) or []:
                if dpt not in seen:
                    seen.append(dpt)
        return seen

    lead = out["kinds"].map(lambda ks: depts(ks, "lead"))
    support = []
    for ks, ld, level, town in zip(out["kinds"], lead, out["four_mountains_level"], out["township"]):
        s = [d for d in depts(ks, "support") if d not in ld]
        if _present(level):
            s += [d for d in fm_cfg["support"] if d not in ld and d not in s]
        if _present(town):
            s.append(f"{town}（属地）")
        support.append(s)
    out["lead_departments"] = lead
    out["support_departments"] = support
    bands = sorted(pr["deadline_days"], key=lambda b: -float(b["min_score"]))
    days = np.full(len(out), float(bands[-1]["days"]))
    for b in reversed(bands):
        days[out["score"].to_numpy() >= float(b["min_score"])] = float(b["days"])
    out["deadline"] = as_of.normalize() + pd.to_timedelta(days, unit="D")
    return out


def problem_rows(priority: pd.DataFrame, config: dict[str, Any]) -> pd.DataFrame:
    """Rows of the 问题台账 (problem ledger) for the ranked clusters.

    Columns :data:`PROBLEM_COLUMNS` plus ``cluster_id``, ``score`` and ``source``
    (``hotspots``); one row per cluster in priority order, as a GeoDataFrame of
    cluster centres when ``priority`` is one. 整改时限 comes from the score band
    (``priority.deadline_days``), 整改状态 is 反弹 for rebounded clusters, 已整改
    when no member is open, else 待整改.
    """
    config = merged_config(config)
    kinds_cfg: dict[str, Any] = config["kinds"]
    fm_cfg: dict[str, Any] = config["four_mountains"]
    rows = []
    for r in priority.itertuples(index=False):  # one row per cluster (output formatting)
        kinds = list(r.kinds)
        labels = [_kind_zh(k) for k in kinds]
        level = r.four_mountains_level if _present(r.four_mountains_level) else None
        town = r.township if _present(r.township) else ""
        place = f"{town}{_kind_zh(r.main_kind)}聚集区（{r.cluster_id}）"
        rebound = bool(getattr(r, "rebound", False)) and _present(getattr(r, "rebound", None))
        desc = _problem_description(r, labels, level, rebound)
        basis = [kinds_cfg.get(k, {}).get("basis") for k in kinds]
        measures = [kinds_cfg.get(k, {}).get("measures") for k in kinds]
        if level:
            basis.append(fm_cfg["basis"])
            measures.append(fm_cfg["measures"])
        if rebound:
            status = "反弹"
        elif int(r.open_incidents) == 0:
            status = "已整改"
        else:
            status = "待整改"
        address = r.address if isinstance(r.address, str) and r.address else f"经度{r.lon:.5f}，纬度{r.lat:.5f}"
        rows.append(
            {
                "序号": int(r.rank),
                "镇街": town,
                "网点名称": place,
                "经营地址": address,
                "问题类型": "、".join(labels),
                "问题描述": desc,
                "依据": "；".join(dict.fromkeys(b for b in basis if b)),
                "牵头单位": "、".join(r.lead_departments),
                "配合单位": "、".join(r.support_departments),
                "整改措施": "；".join(dict.fromkeys(m for m in measures if m)),
                "整改时限": _date(r.deadline),
                "整改状态": status,
            }
        )
    table = pd.DataFrame(rows, columns=list(PROBLEM_COLUMNS))
    if len(priority):
        table["cluster_id"] = priority["cluster_id"].to_numpy()
        table["score"] = priority["score"].to_numpy()
    else:
        table["cluster_id"] = pd.Series(dtype=object)
        table["score"] = pd.Series(dtype=float)
    table["source"] = "hotspots"
    if isinstance(priority, gpd.GeoDataFrame) and {"centroid_x", "centroid_y"} <= set(priority.columns):
        pts = gpd.points_from_xy(priority["centroid_x"], priority["centroid_y"])
        return gpd.GeoDataFrame(table, geometry=pts, crs=priority.crs)
    return table


def _problem_description(r: Any, labels: list[str], level: str | None, rebound: bool) -> str:
    """问题描述 of one ranked cluster: dates, kinds, size, significance, 四山, rebound, score."""
    desc = (
        f"{_date(r.first_date)}至{_date(r.last_date)}发现{'、'.join(labels)}线索{int(r.n_incidents)}起，"
        f"聚集半径约{r.radius_m:.0f}米"
    )
    if _present(getattr(r, "significance_zh", None)):
        desc += f"（中心{r.disc_radius_m:.0f}米内{r.significance_zh}）"
    if level:
        ranges = "、".join(r.fm_ranges) if len(r.fm_ranges) else "四山"
        desc += f"；位于四山{ZONE_LEVEL_LABEL_ZH[ZoneLevel(level)]}（{ranges}）"
    if rebound:
        desc += f"；关停后于{_date(r.rebound_first_date)}复发（反弹"
        p = getattr(r, "rebound_p", None)
        desc += f"，p={p:.2g}）" if _present(p) else "）"
    return desc + f"；优先级评分{r.score:.1f}（第{int(r.rank)}位）"


def _present(value: Any) -> bool:
    """True for a real value (not None / NaN / empty text)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return not (isinstance(value, str) and not value.strip())


def _kind_zh(kind: str) -> str:
    try:
        return INCIDENT_KIND_LABEL_ZH[IncidentKind(kind)]
    except ValueError:
        return str(kind)


def _date(value: Any) -> str:
    return "" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


# ============================================================ pipeline step


@dataclass
class HotspotResult:
    """Everything :func:`analyse` finds (left in ``context["hotspots"]`` for the map).

    Attributes
    ----------
    clusters
        :class:`ClusterResult` (clusters carry ``rebound`` columns).
    priority
        Ranked clusters (:func:`priority_list`).
    problems
        问题台账 rows (:func:`problem_rows`).
    hex
        :class:`HexHotSpots` or None (too few incidents).
    density
        :class:`DensitySurface` or None.
    rebounds
        Site-level rebound pairs (:func:`detect_rebounds`).
    """

    clusters: ClusterResult
    priority: gpd.GeoDataFrame
    problems: pd.DataFrame
    hex: HexHotSpots | None
    density: DensitySurface | None
    rebounds: pd.DataFrame

    def summary(self) -> dict[str, int]:
        """The ``hotspots`` block of ``summary.json``."""
        c = self.clusters.reported()
        return {
            "clusters": int(len(c)),
            "clusters_not_significant": int(len(self.clusters.clusters) - len(c)),
            "clusters_in_four_mountains": int(c["four_mountains_level"].notna().sum()) if len(c) else 0,
            "hot_cells_99": int((self.hex.gi.gi_bin == 3).sum()) if self.hex is not None else 0,
            "rebounds": int(self.priority["rebound"].sum()) if len(self.priority) else 0,
            "rebound_sites": int(self.rebounds["closed_id"].nunique()) if len(self.rebounds) else 0,
        }

    def layers(self, incidents: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
        """Layers of ``hotspots.gpkg``.

        ``clusters`` (outlines, every cluster with its significance and the
        ``significant`` flag), ``cluster_centroids``, ``hex_gistar`` (when
        computed), ``priority`` (significant clusters, ranked), ``rebounds``
        (closed sites that came back, as points) and ``incidents`` (every report
        with its ``cluster_id``, :meth:`ClusterResult.incident_layer`).
        """
        c = self.clusters.clusters
        layers: dict[str, gpd.GeoDataFrame] = {"clusters": c}
        layers["cluster_centroids"] = gpd.GeoDataFrame(
            c.drop(columns="geometry"), geometry=gpd.points_from_xy(c["centroid_x"], c["centroid_y"]), crs=c.crs
        )
        if self.hex is not None:
            layers["hex_gistar"] = self.hex.grid
        layers["priority"] = self.priority
        rb = self.rebounds
        pos = incidents.set_index("incident_id").geometry
        layers["rebounds"] = gpd.GeoDataFrame(
            rb, geometry=pos.reindex(rb["incident_id"]).to_numpy() if len(rb) else [], crs=incidents.crs
        )
        layers["incidents"] = self.clusters.incident_layer(incidents)
        return layers


def merged_config(config: Mapping[str, Any] | Section | None) -> dict[str, Any]:
    """The ``hotspots`` parameters as a plain mapping with every key present.

    ``config`` is the typed :class:`gis.params.HotspotsParams` (already merged and
    checked by :func:`gis.params.params_for`) or a partial mapping deep-merged over
    ``layers/hotspots.yaml`` (read once by :func:`gis.catalog.load_yaml`).
    """
    if isinstance(config, Section):
        return config.to_dict()
    return deep_merge(default_config(), dict(config or {}))


def analyse(
    incidents: gpd.GeoDataFrame,
    config: HotspotsParams | Mapping[str, Any] | None,
    *,
    zones: gpd.GeoDataFrame | None = None,
    townships: gpd.GeoDataFrame | None = None,
    area: Any = None,
) -> HotspotResult:
    """Run every hot-spot analysis with the ``hotspots`` parameters.

    ``config`` is the typed :class:`gis.params.HotspotsParams` (``params.hotspots``
    of a run) or a partial mapping over ``layers/hotspots.yaml``.

    Clusters failing the significance level stay in ``clusters`` (flag
    ``significant`` False) and are left out of ``priority`` and ``problems``.
    """
    config = merged_config(config)
    res = find_clusters(incidents, zones=zones, townships=townships, params=config["clusters"])
    rb = config["rebound"]
    rebounds = detect_rebounds(
        incidents,
        distance_m=float(rb["distance_m"]),
        window_days=float(rb["window_days"]),
        closed_statuses=tuple(rb["closed_statuses"]),
        same_kind=bool(rb["same_kind"]),
    )
    cr = cluster_rebounds(
        res,
        incidents,
        rebounds,
        window_days=float(rb["window_days"]),
        closed_statuses=tuple(rb["closed_statuses"]),
        min_closed_share=float(rb["min_closed_share"]),
    )
    res.clusters = res.clusters.drop(columns="closed_date").merge(
        cr, left_on="cluster_id", right_index=True, how="left"
    )
    res.clusters = rebound_significance(res, incidents, config)
    pr = priority_list(res.reported(), config, as_of=config["priority"]["as_of"])
    problems = problem_rows(pr, config)
    hx = None
    try:
        hx = hex_hot_spots(incidents, area=area, grid_params=config["gistar"], emerging=config["emerging"])
    except AnalysisError as exc:
        log.warning("hot-spot grid skipped: %s", exc)
    dcfg = config["density"]
    xy = np.column_stack([incidents.geometry.x.to_numpy(), incidents.geometry.y.to_numpy()])
    dens = kernel_density(
        xy,
        crs=incidents.crs,
        bandwidth_m=dcfg["bandwidth_m"],
        cell_size_m=float(dcfg["cell_size_m"]),
        bounds=tuple(shapely.bounds(area)) if area is not None and dcfg["padding_m"] is None else None,
        padding_m=dcfg["padding_m"],
        max_pixels=int(dcfg["max_pixels"]),
    )
    return HotspotResult(clusters=res, priority=pr, problems=problems, hex=hx, density=dens, rebounds=rebounds)


def _default_section(name: str) -> Any:
    """Sub-section ``name`` of the bundled ``layers/hotspots.yaml`` (a keyword left None)."""
    from gis.params import build_section

    return getattr(build_section("hotspots"), name)


def _or_default(name: str, **given: Any) -> tuple[Any, ...]:
    """The ``given`` keywords in order, each None replaced by its value in sub-section ``name``
    of ``layers/hotspots.yaml`` (read only when one is None)."""
    if all(v is not None for v in given.values()):
        return tuple(given.values())
    sec = _default_section(name)
    return tuple(sec[k] if v is None else v for k, v in given.items())


def rebound_significance(result: ClusterResult, incidents: gpd.GeoDataFrame, config: dict[str, Any]) -> gpd.GeoDataFrame:
    """Clusters with ``rebound_expected``, ``rebound_p``, ``rebound_q``, ``rebound_significant``.

    A closed site's rebound count :math:`O` (incidents of its kinds in
    :math:`(t_c, t_c+\\Delta]` near it) is compared with what the background
    would bring to the same place in the same time:

    .. math:: E = \\hat\\lambda\\,\\pi (r_c + D)^2\\,\\frac{\\Delta}{T}, \\qquad
              p = P(N \\ge O),\\ N \\sim \\text{Poisson}(E)

    with :math:`\\hat\\lambda` the density of unclustered incidents of the
    cluster's main kind in the significance annulus over the whole period *T*,
    :math:`r_c` the cluster radius and *D* the rebound distance; q-values are
    Benjamini–Hochberg over the rebounded clusters, level
    ``clusters.significance.alpha``. ``rebound`` itself is unchanged (a closed site
    with any comeback is followed up); the p-value says how far it is beyond chance.
    """
    c = result.clusters.copy()
    for col, val in (("rebound_expected", np.nan), ("rebound_p", np.nan), ("rebound_q", np.nan)):
        c[col] = val
    c["rebound_significant"] = False
    hit = c["rebound"].fillna(False).astype(bool).to_numpy() if "rebound" in c.columns else np.zeros(len(c), bool)
    if not hit.any():
        return c
    sg, rb = config["clusters"]["significance"], config["rebound"]
    dates = pd.to_datetime(incidents["date"])
    period = max((dates.max() - dates.min()).days, 1)
    clustered = incidents["incident_id"].isin(result.members["incident_id"]).to_numpy()
    kinds = incidents["kind"].astype(str).to_numpy()
    xy = np.column_stack([incidents.geometry.x.to_numpy(), incidents.geometry.y.to_numpy()])
    exp = np.zeros(len(c))
    for i in np.flatnonzero(hit):
        bg = xy[~clustered & (kinds == str(c["main_kind"].iloc[i]))]
        centre = c[["centroid_x", "centroid_y"]].to_numpy()[i : i + 1]
        lam = background_density(bg, centre, tuple(sg["annulus_m"]))[0] if len(bg) else 0.0
        lam = max(lam, float(sg["min_background_per_km2"]) / 1e6)
        reach = float(c["radius_m"].iloc[i]) + float(rb["distance_m"])
        exp[i] = lam * np.pi * reach**2 * float(rb["window_days"]) / period
    obs = c["rebound_incidents"].fillna(0).to_numpy(dtype=float)
    p = poisson_sf(obs[hit] - 1, exp[hit])
    c.loc[hit, "rebound_expected"] = exp[hit]
    c.loc[hit, "rebound_p"] = p
    c.loc[hit, "rebound_q"] = bh_qvalues(p)
    c.loc[hit, "rebound_significant"] = c.loc[hit, "rebound_q"] <= float(sg["alpha"])
    return c

