"""Planner dashboard of the app (规划看板): coverage at any radius, target cards, what-if.

No Streamlit here: :mod:`app` caches these calls (``st.cache_resource`` keyed on the
project and the parameters) and draws what they return; the tests call them directly.

The service radius and the number of new sites ``k`` are answered from inputs
computed once per project (:func:`gis.coverage.nearest_site_distances`,
:func:`gis.coverage.siting_inputs`): a radius change is a threshold on cached
per-cell distances, a ``k`` change one MCLP solve on a cached coverage matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from gis import coverage as cov
from gis.routing import NetworkCSR, points_xy

if TYPE_CHECKING:
    from gis.district import District


@dataclass(frozen=True)
class CoverageScope:
    """What the planner's one coverage figure measures.

    Attributes
    ----------
    tiers
        Tiers whose sites count (those of the project's ``population_coverage``
        target, else the headline tier).
    standard
        The first tier's service standard (mode and the project's radius).
    target
        The ``population_coverage`` target row, or ``None``.
    """

    tiers: tuple[str, ...]
    standard: cov.Standard
    target: Mapping[str, Any] | None


def coverage_scope(district: District, target_rows: Sequence[Mapping[str, Any]]) -> CoverageScope:
    """The tiers and standard of the district's coverage target (headline tier without one)."""
    cfg = district.project.section("coverage")
    row = next((r for r in target_rows if r.get("metric") == "population_coverage"), None)
    tiers = cov.target_tiers(target_rows, str(cfg.get("headline_tier", "collection_point")))
    std = cov.Standard.from_config(tiers[0], cfg)
    return CoverageScope(tiers, std, row)


def scope_distances(
    district: District, compliance: Any, scope: CoverageScope, network: NetworkCSR | None, limit_m: float,
    *, statuses: Sequence[str] = ("active",),
) -> cov.NearestSiteDistances:
    """Per-cell distances to the nearest counted site of the scope's tiers (one search up to ``limit_m``)."""
    sites = cov.eligible_sites(district, compliance, statuses=statuses)
    if len(sites):
        sites = sites.loc[sites["tier"].astype(str).isin(scope.tiers).to_numpy()]
    cfg = district.project.section("coverage")
    return cov.nearest_site_distances(district.population_points(), sites, scope.standard, limit_m=limit_m,
                                      network=network, max_snap_m=float(cfg["max_snap_m"]),
                                      townships=district.townships)


TIER_ZH = {"sorting_centre": "分拣中心", "transfer_station": "中转站", "collection_point": "回收网点",
            "drop_off_point": "分类投放点"}
MODE_ZH = {"walk": "步行", "drive": "车行", "euclidean": "直线", "district": "全区"}


def target_title(row: Mapping[str, Any], *, radius_m: float | None = None, mode: str | None = None) -> str:
    """A target's name generated from its parameters (metric, tiers, radius, target value).

    ``radius_m``/``mode`` are the coverage standard in force (the app's slider), so a
    coverage target's name follows the radius: ``回收网点+分类投放点 800米步行覆盖人口 ≥ 90%``.
    """
    tiers = "+".join(TIER_ZH.get(str(t), str(t)) for t in (row.get("tiers") or [])) or "网点"
    metric, target = str(row.get("metric", "")), row.get("target")
    op = "≤" if row.get("direction") == "<=" else "≥"
    if metric == "population_coverage" or metric == "household_coverage":
        r = radius_m if radius_m is not None else row.get("distance_m")
        where = f" {float(r):.0f}米{MODE_ZH.get(str(mode or row.get('mode') or 'walk'), '')}" if r else ""
        what = "覆盖人口" if metric == "population_coverage" else "覆盖户数"
        return f"{tiers}{where}{what} {op} {float(target):.0%}"
    if metric == "count":
        return f"{tiers}数量 {op} {float(target):.0f} 个"
    if metric == "township_presence":
        return f"镇街{tiers}覆盖 {op} {float(target):.0%}"
    if metric == "households_per_point":
        return f"每{tiers}服务户数 {op} {float(target):,.0f} 户"
    return str(row.get("name") or metric)


@dataclass(frozen=True)
class TargetCard:
    """One target as a red/amber/green card.

    ``status``: ``green`` met; ``amber`` not met but the planned sites close the
    gap; ``red`` not met even with them. ``actual``, ``target``, ``shortfall`` and
    ``planned`` (the planned sites' contribution, ``with planned − built``) are
    display strings.
    """

    title: str
    name: str
    status: str
    actual: float
    target: float
    actual_text: str
    target_text: str
    shortfall_text: str
    planned_text: str


def _fmt(value: float, share: bool) -> str:
    return f"{value:.1%}" if share else f"{value:,.0f}"


def target_cards(rows: Sequence[Mapping[str, Any]], *, radius_m: float | None = None, mode: str | None = None,
                 coverage_now: tuple[float, float] | None = None) -> list[TargetCard]:
    """Cards for the target rows of the coverage step (``summary["targets"]``).

    ``coverage_now`` = (built share, share with the planned sites) at the app's radius
    replaces a ``population_coverage`` row's figures (the step ran at the project's radius).
    """
    cards = []
    for row in rows:
        share = str(row.get("metric")) in ("population_coverage", "household_coverage", "township_presence")
        built, tgt = float(row.get("actual", row.get("built")) or 0.0), float(row.get("target") or 0.0)
        with_planned = float(row.get("with_planned", built) if row.get("with_planned") is not None else built)
        if coverage_now is not None and row.get("metric") == "population_coverage":
            built, with_planned = coverage_now
        less = row.get("direction") == "<="
        met = built <= tgt if less else built >= tgt
        closes = with_planned <= tgt if less else with_planned >= tgt
        status = "green" if met else ("amber" if closes else "red")
        if met:
            short = "已达标 met"
        elif share:
            short = f"差 {abs(tgt - built) * 100:.1f} 个百分点 short by {abs(tgt - built) * 100:.1f} points"
        elif row.get("gap") is not None and row.get("gap_unit") == "sites":
            short = f"缺 {float(row['gap']):,.0f} 个网点 short by {float(row['gap']):,.0f} sites"
        else:
            short = f"差 {abs(tgt - built):,.0f} short by {abs(tgt - built):,.0f}"
        delta = with_planned - built
        planned = (f"规划网点 {int(row.get('planned') or 0)} 个 → {_fmt(with_planned, share)} "
                   f"({'+' if delta >= 0 else '−'}{_fmt(abs(delta), share)})")
        cards.append(TargetCard(target_title(row, radius_m=radius_m, mode=mode), str(row.get("name", "")), status,
                                built, tgt, _fmt(built, share), ("≤ " if less else "≥ ") + _fmt(tgt, share),
                                short, planned))
    return cards


def township_chart(result: cov.CoverageResult) -> pd.DataFrame:
    """Coverage by township for the chart: ``镇街``, ``覆盖率 %`` (network or straight-line as measured),
    ``直线距离 %``, integer ``人口``; sorted from least covered."""
    t = result.by_township
    out = pd.DataFrame({
        "镇街": t["township"].astype(str),
        "覆盖率 %": (t["population_share"].astype(float) * 100).round(1),
        "直线距离 %": (t["population_share_euclidean"].astype(float) * 100).round(1),
        "人口": t["population"].round().astype("int64"),
        "覆盖人口": t["covered_population"].round().astype("int64"),
    })
    return out.sort_values("覆盖率 %", kind="stable").reset_index(drop=True)


def place_context(rec: gpd.GeoDataFrame, district: District, existing: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Recommended sites with their land use (地类) and nearest existing site and its distance.

    Land use: the land-use polygon holding the site (``landuse_code`` ``landuse_name``);
    nearest existing site: straight-line nearest of ``existing`` (KD-tree).
    """
    out = rec.copy()
    out["landuse"] = "—"
    lu = getattr(district, "landuse", None)
    if len(out) and lu is not None and len(lu) and "landuse_code" in lu:
        cols = [c for c in ("landuse_code", "landuse_name") if c in lu]
        j = gpd.sjoin(out[["geometry"]], lu[cols + ["geometry"]].to_crs(out.crs), how="left", predicate="within")
        j = j[~j.index.duplicated()]
        out["landuse"] = (j[cols].astype("string").fillna("").agg(" ".join, axis=1).str.strip()
                          .replace("", "—")).reindex(out.index).fillna("—")
    out["nearest_site"] = "—"
    out["nearest_site_m"] = np.nan
    if len(out) and len(existing):
        d, i = cKDTree(points_xy(existing)).query(points_xy(out))
        names = existing["name"].astype(str).to_numpy() if "name" in existing else existing["site_id"].astype(str).to_numpy()
        out["nearest_site"] = names[i]
        out["nearest_site_m"] = np.round(d).astype("int64")
    return out


def recommended_view(rec: gpd.GeoDataFrame) -> pd.DataFrame:
    """The recommended-sites table as shown (Chinese headers, integer residents, shares in %)."""
    cols = {"rank": "顺序", "name": "名称", "township": "镇街", "landuse": "地类", "kind": "类型",
            "gain_population": "新增覆盖人口", "cumulative_share": "累计覆盖率", "nearest_site": "最近现有网点",
            "nearest_site_m": "距离(米)"}
    df = pd.DataFrame(rec[[c for c in cols if c in rec]]).copy()
    if "kind" in df:
        df["kind"] = df["kind"].astype(str).replace({"grid": "网格候选点"})
    if "gain_population" in df:
        df["gain_population"] = df["gain_population"].round().astype("int64")
    if "cumulative_share" in df:
        df["cumulative_share"] = (df["cumulative_share"].astype(float) * 100).round(1).map(lambda v: f"{v:.1f}%")
    return df.rename(columns=cols)


def what_if_sentence(answer: cov.ReachAnswer, k: int, share_k: float) -> str:
    """The what-if answer in one sentence (Chinese, with the English gist)."""
    n = len(answer.sites)
    head = f"新增 {k} 个网点(最优选址)后覆盖率可达 {share_k:.1%}。 With {k} new sites (optimal): {share_k:.1%}. "
    method = "精确解 exact" if answer.optimal else (
        f"近似解，已证明至少需要 {answer.lower_bound} 个 approximate, proven ≥ {answer.lower_bound}"
        if answer.lower_bound > 0 else "贪心近似解 greedy approximation")
    proof = f"({method})"
    if answer.reachable:
        return head + (f"要达到 {answer.share:.0%}，需要新增 {n} 个网点{proof}，位置见下表和地图。"
                       f" To reach {answer.share:.0%} we need {n} new sites at the places below.")
    return head + (f"仅用合法用地内的候选点无法达到 {answer.share:.0%}：即使开设全部合法候选点，最多 "
                   f"{answer.best_share:.1%}。 Not reachable with candidates inside legal land: "
                   f"best is {answer.best_share:.1%}.")


@dataclass
class PlannerBase:
    """What the planner's sliders reuse, built once per project (and compliance result).

    Attributes
    ----------
    scope
        The coverage figure's tiers and standard.
    distances, distances_planned
        :class:`gis.coverage.NearestSiteDistances` of the built sites, and of the
        built plus planned ones (the planned sites' contribution).
    checked
        Siting candidates checked against the rules (``None`` without candidates).
    existing
        Every counted site (for "nearest existing site").
    network, max_snap_m
        Road network of the standard's mode and its snapping limit.
    siting_config, gaps_config
        The ``siting`` and ``gaps`` blocks of the coverage section.
    cells, cell_size_m
        Footprints of the population cells (rows of ``distances.points``) and their
        spacing: gaps at any radius merge these, none is drawn again.
    minima
        New sites required per 镇街 by the targets (as ``gis run`` sets them), or ``None``.
    reach
        Eligible candidates × cells within the slider's largest radius, with distances
        (:class:`gis.coverage.CandidateReach`): each radius thresholds it.
    """

    scope: CoverageScope
    distances: cov.NearestSiteDistances
    distances_planned: cov.NearestSiteDistances
    checked: Any
    existing: gpd.GeoDataFrame
    network: NetworkCSR | None
    max_snap_m: float
    siting_config: dict[str, Any]
    gaps_config: dict[str, Any]
    cells: np.ndarray
    cell_size_m: float
    minima: Mapping[str, int] | None = None
    reach: cov.CandidateReach | None = None


def planner_base(district: District, compliance: Any, target_rows: Sequence[Mapping[str, Any]],
                 networks: Mapping[str, NetworkCSR] | None, limit_m: float, *,
                 candidate_check: Any = None) -> PlannerBase:
    """Build the planner's reusable inputs (one distance search up to ``limit_m``, one candidate check).

    ``candidate_check`` is the coverage step's :func:`gis.coverage.siting_candidates` of the
    headline tier when it ran (``DistrictCoverage.candidate_check``); else it is made here.
    """
    scope = coverage_scope(district, target_rows)
    cfg = district.project.section("coverage")
    net = (networks or {}).get(scope.standard.mode)
    if net is None and scope.standard.mode in ("walk", "drive") and district.roads_path is not None:
        from gis.roadgraph import network_for_district

        net = network_for_district(district, scope.standard.mode)  # type: ignore[arg-type]
    built = scope_distances(district, compliance, scope, net, limit_m)
    planned = scope_distances(district, compliance, scope, net, limit_m, statuses=("active", "planned"))
    headline = str(cfg.get("headline_tier", "collection_point"))
    scfg = dict(cfg.get("siting") or {})
    checked = candidate_check if candidate_check is not None else cov.siting_candidates(district, headline, scfg)
    spacing = cov.cell_spacing(points_xy(built.points))
    cells = cov.cell_footprints(built.points, raster=district.population_raster, cell_size_m=spacing)
    existing = cov.eligible_sites(district, compliance)
    minima = cov.township_minimums(district, headline, existing)
    reach = None
    if checked is not None and scope.standard.mode != "district":
        elig = checked.eligible
        reach = cov.CandidateReach.search(points_xy(elig) if len(elig) else np.empty((0, 2)), points_xy(built.points),
                                          limit_m, network=net, max_snap_m=float(cfg["max_snap_m"]))
    return PlannerBase(scope, built, planned, checked, existing, net, float(cfg["max_snap_m"]), scfg,
                       dict(cfg.get("gaps") or {}), cells, spacing, minima or None, reach)


@dataclass
class PlannerAt:
    """The planner's figures at one radius: coverage (built, with planned), gaps, siting inputs."""

    radius_m: float
    coverage: cov.CoverageResult
    coverage_planned: cov.CoverageResult
    gaps: gpd.GeoDataFrame
    inputs: cov.SitingInputs | None


def planner_at(base: PlannerBase, district: District, radius_m: float) -> PlannerAt:
    """Coverage, gaps and siting inputs at ``radius_m`` (thresholds and one coverage matrix)."""
    now = cov.coverage_at(base.distances, radius_m)
    planned = cov.coverage_at(base.distances_planned, radius_m, areas=False)
    g = base.gaps_config
    gaps = cov.coverage_gaps(now.points, min_population=float(g.get("min_population") or 0.0),
                             raster=district.population_raster, max_gaps=g.get("max_gaps"),
                             cell_size_m=base.cell_size_m, footprints=base.cells)
    inputs = (cov.siting_inputs(now, base.checked, base.siting_config, network=base.network,
                                max_snap_m=base.max_snap_m, min_per_township=base.minima, reach=base.reach)
              if base.checked is not None else None)
    return PlannerAt(float(radius_m), now, planned, gaps, inputs)


def map_results(at: PlannerAt, recommended: gpd.GeoDataFrame | None) -> dict[str, Any]:
    """Map results (:func:`gis.maps.build_layers` keys) for the radius and k in force."""
    out: dict[str, Any] = {"coverage": {"by_tier": {at.coverage.standard.tier: at.coverage}, "gaps": at.gaps}}
    if recommended is not None:
        out["siting"] = {"recommended": recommended}
    return out


FEATURE_COLUMNS = ["类型", "编号", "名称", "镇街", "lat", "lon", "x", "y"]


def feature_rows(kind: str, g: gpd.GeoDataFrame | None, id_col: str, name_col: str | None) -> pd.DataFrame | None:
    """Rows of :func:`feature_table` for one layer (None when it is empty or missing)."""
    if g is None or not len(g):
        return None
    pts = g.geometry.representative_point()
    ll = pts.to_crs(4326)
    return pd.DataFrame({
        "类型": kind, "编号": g[id_col].astype(str).to_numpy() if id_col in g else np.arange(1, len(g) + 1).astype(str),
        "名称": g[name_col].astype(str).to_numpy() if name_col and name_col in g else "",
        "镇街": g["township"].astype(str).to_numpy() if "township" in g else "",
        "lat": ll.y.to_numpy(), "lon": ll.x.to_numpy(), "x": pts.x.to_numpy(), "y": pts.y.to_numpy()})


def site_features(district: District) -> pd.DataFrame | None:
    """The sites' rows of :func:`feature_table`: no analysis parameter changes them, so the app builds
    them once per project (at a million sites they are most of the table's time)."""
    return feature_rows("网点 Site", district.sites, "site_id", "name")


def feature_table(district: District, hot: Any, at: PlannerAt | None, recommended: gpd.GeoDataFrame | None,
                  sites: pd.DataFrame | None = None) -> pd.DataFrame:
    """Clickable map features in one table: sites, clusters, coverage gaps, recommended sites.

    Columns ``类型`` (kind), ``编号`` (id), ``名称``, ``镇街``, ``lat``/``lon`` (WGS84 of the
    point or polygon centroid, for zooming to a row) and ``x``/``y`` (district CRS, to find
    the feature nearest a click). ``sites``: the sites' rows from :func:`site_features`
    (None: built here).
    """
    parts = [
        feature_rows("聚集区 Cluster", getattr(hot, "priority", None), "cluster_id", "address"),
        feature_rows("覆盖缺口 Gap", at.gaps, "gap_id", None) if at is not None else None,
        feature_rows("推荐新址 Recommended", recommended, "candidate_id", "name"),
        site_features(district) if sites is None else sites,
    ]
    parts = [p for p in parts if p is not None and len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FEATURE_COLUMNS)


def nearest_feature(table: pd.DataFrame, lat: float, lon: float, crs: Any) -> int | None:
    """Row of ``table`` nearest a clicked point (WGS84 ``lat``/``lon``), or ``None`` for an empty table."""
    if not len(table):
        return None
    p = gpd.GeoSeries(gpd.points_from_xy([lon], [lat]), crs=4326).to_crs(crs).iloc[0]
    d = np.hypot(table["x"].to_numpy(float) - p.x, table["y"].to_numpy(float) - p.y)
    return int(np.argmin(d))
