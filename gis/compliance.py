"""Site compliance (合规核查): location of every site against the layers, and the rule checks.

Every site of the ledger — and every incident location — is placed against the
district's layers in one vectorised pass:

* the GB/T 21010 land-use class under it (vector overlay: a spatial index on the
  points queried with the prepared land-use polygons, *and* raster sampling by index arithmetic on a land-use
  GeoTIFF, whichever the district provides; with both, the vector wins and the
  raster fills its gaps);
* every control zone it falls in (四山 / 生态保护红线 / 永久基本农田 / 饮用水水源保护区)
  with the strictest 四山 level. **A point exactly on a zone outline counts as inside**
  (the zone *covers* it): a site on the line of a no-build zone is treated as a no-build
  site, the conservative reading for enforcement;
* the distance to the nearest sensitive receptor of each class (school, hospital,
  residential, water source), from the receptor classes of the land-use table and the
  water-source zones (STRtree nearest with a ``max_distance``);
* the township (镇街, 属地) whose polygon covers it.

Then every rule of the rule table (``layers/compliance.yaml``; see
:class:`RuleTable`) is evaluated as a boolean mask over all sites at once — the only
Python loop runs over *rules*, never over sites. Defined outcomes at the edges:

* a site on a land-use gap, on a raster nodata cell, outside the raster, or on a code
  the class table does not know gets ``landuse_code`` null and breaks the
  ``landuse_unknown`` rule (地类不明, ``needs_review``) — never a crash, never a
  silent pass;
* a site outside every township polygon gets ``township`` null and breaks the
  ``outside_townships`` rule (位置待核实, ``needs_review``);
* a layer the district does not provide skips the rules that need it; the skipped
  rule ids and the reason are kept in :attr:`ComplianceResult.skipped_rules`.

The rule table and the land-use class table are read and validated in
:mod:`gis.rules`; the hierarchy linkage (三级衔接, points → transfer stations →
sorting centre) is :mod:`gis.linkage`, on the distances of :mod:`gis.routing`;
raster sampling is :mod:`gis.raster`. They are re-exported here under their old
names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Mapping, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis._errors import AnalysisError
from gis.schema import TIER_LABEL_ZH, ZONE_LEVEL_LABEL_ZH, ZONE_LEVEL_RANK, ZoneLevel
from gis.raster import sample_raster_codes, value_to_gbt21010
from gis.linkage import LinkageResult, link_hierarchy, linkage_lines
from gis.rules import (
    ATTRIBUTE_FIELDS,
    CONDITION_TYPES,
    DEFAULT_RULES_PATH,
    NORM_FIELDS,
    RECEPTOR_LABEL_ZH,
    RECEPTORS,
    VERDICT_RANK,
    ZONE_TYPE_LABEL_ZH,
    LandUseClasses,
    Rule,
    RuleTable,
)

if TYPE_CHECKING:
    from gis.district import District

__all__ = [
    "CONDITION_TYPES",
    "VERDICT_RANK",
    "ComplianceResult",
    "LandUseClasses",
    "LinkageResult",
    "Rule",
    "RuleTable",
    "check_district",
    "check_sites",
    "link_hierarchy",
    "linkage_lines",
    "locate",
    "sample_raster_codes",
]

def _none(s: pd.Series) -> pd.Series:
    """Object series with None (not NaN) for missing values."""
    s = s.astype("object")
    return s.where(s.notna(), None)


# ------------------------------------------------------------------------ location
def _raster_receptor_geoms(
    path: str | Path,
    crs: Any,
    classes: LandUseClasses,
    value_to_code: Mapping[int, str] | None,
    nodata: Any,
) -> dict[str, np.ndarray]:
    """Polygonise the receptor classes of a land-use raster (rasterio.features.shapes)."""
    import rasterio
    from rasterio.features import shapes

    with rasterio.open(path) as ds:
        band = ds.read(1)
        transform, rcrs = ds.transform, ds.crs
    values = np.unique(band)
    if nodata is not None:
        values = values[values != nodata]
    codes = [
        str(value_to_code[int(v)]) if value_to_code and int(v) in value_to_code else str(value_to_gbt21010(np.array([int(v)]))[0])
        for v in values
    ]
    out: dict[str, np.ndarray] = {}
    for receptor in RECEPTORS:
        hit = set(classes.receptor_codes(receptor, codes))
        vals = [v for v, c in zip(values, codes) if c in hit]
        if not vals:
            continue
        mask = np.isin(band, vals)
        geoms = [shapely.geometry.shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
        gs = gpd.GeoSeries(geoms, crs=rcrs)
        if crs is not None and rcrs is not None:
            gs = gs.to_crs(crs)
        out[receptor] = gs.values
    return out


def _covering(points: np.ndarray, polygons: np.ndarray, tree: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(point index, polygon index) of every polygon covering a point (boundary inside).

    The spatial index is built on the points and queried with the polygons, so each
    polygon is prepared once and tested against the points in its envelope — about
    ten times faster than querying a polygon index point by point on parcel layers.
    """
    if not len(points) or not len(polygons):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    tree = tree if tree is not None else shapely.STRtree(points)
    poly_i, pt_i = tree.query(polygons, predicate="covers")
    return pt_i.astype(np.int64), poly_i.astype(np.int64)


def _first_hit(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For each of ``n`` inputs, the smallest tree index hit (-1 when none)."""
    res = np.full(n, -1, dtype=np.int64)
    if len(left):
        order = np.lexsort((right, left))
        l, r = left[order], right[order]
        first = np.r_[True, l[1:] != l[:-1]]
        res[l[first]] = r[first]
    return res


def locate(
    points: gpd.GeoSeries,
    *,
    townships: gpd.GeoDataFrame | None = None,
    zones: gpd.GeoDataFrame | None = None,
    landuse: gpd.GeoDataFrame | None = None,
    landuse_raster: Any = None,
    classes: LandUseClasses | None = None,
    receptor_max_distance_m: float | None = None,
) -> pd.DataFrame:
    """Place points against the district's layers (one spatial-index query per layer).

    Parameters
    ----------
    points
        Point geometries in the district's metric CRS.
    townships, zones, landuse
        GeoDataFrames (canonical fields) in the same CRS, or None.
    landuse_raster
        An object with ``path``, and optionally ``nodata`` and ``classes``
        (``{raster value: code}``) — :class:`gis.district.RasterLayer` — or a path.
    classes
        The GB/T 21010 class table.
    receptor_max_distance_m
        Distances to receptors are searched up to this far; further → NaN (None:
        ``receptor_search_m`` of ``layers/compliance.yaml``).

    Returns
    -------
    DataFrame aligned with ``points`` with ``township``, ``landuse_code``,
    ``landuse_name``, ``landuse_source`` (vector / raster / None), ``zones`` (``;``-joined
    ``zone_type[:level]``), ``in_<zone_type>`` booleans, ``four_mountains_level``,
    ``zone_names`` and ``dist_<receptor>_m`` for each receptor.
    """
    classes = classes or LandUseClasses.load()
    geoms = points.values
    n = len(points)
    out = pd.DataFrame(index=points.index)
    ptree = shapely.STRtree(geoms) if n else None
    receptor_geoms: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {r: [] for r in RECEPTORS}
    _locate_township(out, geoms, townships, ptree)
    _locate_landuse(out, points, ptree, landuse, landuse_raster, classes, receptor_geoms)
    _locate_zones(out, geoms, zones, ptree, receptor_geoms)
    if receptor_max_distance_m is None:
        from gis.params import build_section

        receptor_max_distance_m = build_section("compliance").receptor_search_m
    _receptor_distances(out, geoms, receptor_geoms, receptor_max_distance_m)
    return out


def _locate_township(out: pd.DataFrame, geoms: np.ndarray, townships: gpd.GeoDataFrame | None, ptree: Any) -> None:
    """属地: the township polygon covering each point (boundary counts as inside); adds ``township``."""
    n = len(geoms)
    if townships is not None and len(townships):
        l, r = _covering(geoms, townships.geometry.values, ptree)
        hit = _first_hit(n, l, r)
        names = townships["township"].to_numpy(dtype=object)
        out["township"] = np.where(hit >= 0, names[np.clip(hit, 0, None)], None)
    else:
        out["township"] = None


def _locate_landuse(
    out: pd.DataFrame, points: gpd.GeoSeries, ptree: Any, landuse: gpd.GeoDataFrame | None, landuse_raster: Any,
    classes: LandUseClasses, receptor_geoms: dict[str, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    """Land use under each point: vector overlay first, the raster fills the gaps.

    Adds ``landuse_code``, ``landuse_name``, ``landuse_class``, ``landuse_source``,
    ``landuse_raw``; appends the receptor-class polygons to ``receptor_geoms``.
    """
    geoms, n = points.values, len(points)
    codes = pd.Series([None] * n, index=points.index, dtype="object")
    source = pd.Series([None] * n, index=points.index, dtype="object")
    if landuse is not None and len(landuse):
        l, r = _covering(geoms, landuse.geometry.values, ptree)
        hit = _first_hit(n, l, r)
        lc = landuse["landuse_code"].astype("object").where(landuse["landuse_code"].notna(), None)
        lc = lc.astype("string").str.strip().to_numpy(dtype=object, na_value=None)
        got = hit >= 0
        codes.iloc[np.flatnonzero(got)] = lc[hit[got]]
        source.iloc[np.flatnonzero(got)] = "vector"
        distinct = [str(c) for c in pd.unique(pd.Series(lc, dtype="object").dropna())]
        for rec in RECEPTORS:
            # receptor_codes: a class may be several receptors (三调 08H2 school and hospital)
            sel = pd.Series(lc, dtype="object").isin(classes.receptor_codes(rec, distinct)).to_numpy()
            if sel.any():
                receptor_geoms[rec].append((landuse.geometry.values[sel], l[sel[r]]))
    if landuse_raster is not None:
        rpath = getattr(landuse_raster, "path", landuse_raster)
        v2c = getattr(landuse_raster, "classes", None) or None
        nodata = getattr(landuse_raster, "nodata", None)
        need = codes.isna().to_numpy()
        if need.any():
            sampled = sample_raster_codes(rpath, points[need], value_to_code=v2c, nodata=nodata)
            got = sampled.notna().to_numpy()
            idx = np.flatnonzero(need)[got]
            codes.iloc[idx] = sampled.to_numpy(dtype=object)[got]
            source.iloc[idx] = "raster"
        if landuse is None or not len(landuse):
            for rec, g in _raster_receptor_geoms(rpath, points.crs, classes, v2c, nodata).items():
                receptor_geoms[rec].append((g, _covering(geoms, g, ptree)[0]))
    _landuse_columns(out, codes, source, classes)


def _obj(out: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """An object column aligned with ``out`` (no string-dtype inference)."""
    return pd.Series(values, index=out.index, dtype=object)


def _landuse_columns(out: pd.DataFrame, codes: pd.Series, source: pd.Series, classes: LandUseClasses) -> None:
    """``landuse_*`` columns from the class table, looked up once per distinct code (codes → integer index)."""
    idx, uniq = pd.factorize(codes.to_numpy(dtype=object))
    tab = classes.table(pd.Series(np.append(np.asarray(uniq, dtype=object), None), dtype=object))
    idx = np.where(idx < 0, len(uniq), idx)
    for col, src in (("landuse_code", "landuse_code"), ("landuse_name", "landuse_name"), ("landuse_class", "class_entry")):
        out[col] = _obj(out, tab[src].to_numpy(dtype=object)[idx])
    known = tab["landuse_code"].notna().to_numpy()[idx]
    out["landuse_source"] = _obj(out, np.where(known, source.to_numpy(dtype=object), None))
    out["landuse_raw"] = _obj(out, codes.to_numpy(dtype=object))  # what the layer said, even when the table does not know it


def _locate_zones(
    out: pd.DataFrame, geoms: np.ndarray, zones: gpd.GeoDataFrame | None, ptree: Any,
    receptor_geoms: dict[str, list[tuple[np.ndarray, np.ndarray]]],
) -> None:
    """Every zone covering each point and the strictest 四山 level.

    Adds ``in_<zone_type>``, ``four_mountains_level``, ``zones``, ``zone_names`` and
    ``zone_names_<zone_type>``; water-source zones become receptors. Works on the
    (point, zone) index pairs of the covering query and per-zone integer codes;
    strings are built once per distinct combination (:mod:`gis.overlay`).
    """
    n = len(geoms)
    for zt in ZONE_TYPE_LABEL_ZH:
        out[f"in_{zt}"] = False
    out["four_mountains_level"] = None
    out["zones"] = ""
    out["zone_names"] = ""
    if zones is None or not len(zones):
        return
    l, r = _covering(geoms, zones.geometry.values, ptree)
    is_ws = (zones["zone_type"].astype(str) == "water_source").to_numpy()
    if is_ws.any():
        receptor_geoms["water_source"].append((zones.geometry.values[is_ws], l[is_ws[r]]))
    zt = zones["zone_type"].astype(str).to_numpy(dtype=object)
    lv = _none(zones["level"]).to_numpy(dtype=object) if "level" in zones else np.full(len(zones), None, dtype=object)
    nm = zones["name"].astype("object").where(zones["name"].notna(), "").to_numpy(dtype=object) if "name" in zones else np.full(len(zones), "", dtype=object)
    for t in pd.unique(zt[r]) if len(r) else []:
        hit = np.zeros(n, dtype=bool)
        hit[l[zt[r] == t]] = True
        out[f"in_{t}"] = hit
    label = np.array([f"{t}:{v}" if v is not None else str(t) for t, v in zip(zt, lv)], dtype=object)
    label_code = np.unique(label, return_inverse=True)[1].ravel()  # code order = label sort order
    # one pair per (point, zone type, level): the first zone of the layer, as drop_duplicates keeps it
    first = np.unique(l * (len(zones) + 1) + label_code[r], return_index=True)[1]
    l, r = l[first], r[first]
    order = np.lexsort((label_code[r], l))
    l, r = l[order], r[order]
    _strictest_four_mountains(out, l, zt[r], lv[r])
    _zone_labels(out, l, r, zt, label, nm)


def _strictest_four_mountains(out: pd.DataFrame, l: np.ndarray, zone_type: np.ndarray, level: np.ndarray) -> None:
    """``four_mountains_level`` = the highest-ranked 四山 level among a point's zones."""
    rank_of = {k.value: v for k, v in ZONE_LEVEL_RANK.items()}
    sel = (zone_type == "four_mountains") & pd.notna(level)
    if sel.any():
        li, lv = l[sel], level[sel]
        rank = np.array([rank_of.get(v, 0) for v in lv], dtype=float)
        order = np.lexsort((-rank, li))
        li, lv = li[order], lv[order]
        head = np.r_[True, li[1:] != li[:-1]]
        col = np.full(len(out), None, dtype=object)
        col[li[head]] = lv[head]
        out["four_mountains_level"] = _obj(out, col)


def _zone_labels(
    out: pd.DataFrame, l: np.ndarray, r: np.ndarray, zone_type: np.ndarray, label: np.ndarray, name: np.ndarray
) -> None:
    """``zones`` (``zone_type[:level]``), ``zone_names`` and per-type names, ``;``-joined in label order.

    ``l``, ``r``: (point, zone) pairs, one per point and label, sorted by point and label.
    """
    from gis.overlay import join_codes_per_point  # per-point joins without per-point Python

    n = len(out)
    lab_codes, lab_names = pd.factorize(label)
    out["zones"] = _obj(out, join_codes_per_point(l, lab_codes[r], np.asarray(lab_names, dtype=object), n))
    named = np.asarray([str(x) != "" for x in name])[r]
    nm_codes, nm_names = pd.factorize(np.asarray([str(x) for x in name], dtype=object))
    nm_names = np.asarray(nm_names, dtype=object)
    out["zone_names"] = _obj(out, join_codes_per_point(l[named], nm_codes[r[named]], nm_names, n))
    for t in sorted(set(zone_type[r[named]])):
        part = named & (zone_type[r] == t)
        out[f"zone_names_{t}"] = _obj(out, join_codes_per_point(l[part], nm_codes[r[part]], nm_names, n))


def _receptor_distances(
    out: pd.DataFrame, geoms: np.ndarray, receptor_geoms: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    max_distance_m: float,
) -> None:
    """``dist_<receptor>_m``: nearest receptor of each class within ``max_distance_m`` (NaN beyond).

    ``receptor_geoms[rec]`` holds (polygons, indices of the points they cover): a
    covered point is at distance 0 (known from the layer's covering query), the
    others go through :func:`gis.overlay.nearest_distance` (exact; short outline
    segments in a KD-tree instead of a GEOS distance per candidate polygon).
    """
    from gis.overlay import nearest_distance

    n = len(geoms)
    xy = np.c_[shapely.get_x(geoms), shapely.get_y(geoms)] if n else np.empty((0, 2))
    for rec in RECEPTORS:
        parts = [(g, i) for g, i in receptor_geoms[rec] if len(g)]
        if parts and n:
            inside = np.concatenate([i for _g, i in parts])
            dist = nearest_distance(xy, np.concatenate([g for g, _i in parts]), max_distance_m, inside=inside)
        else:
            dist = np.full(n, np.nan)
        out[f"dist_{rec}_m"] = dist


# ------------------------------------------------------------------------ checking
@dataclass
class ComplianceResult:
    """Outcome of the compliance check (合规核查).

    Attributes
    ----------
    sites
        The sites with compliance fields: ``township`` (spatial, 属地; the ledger's own
        value is kept as ``township_ledger``), ``landuse_code``, ``landuse_name``,
        ``zones``, ``four_mountains_level``, ``dist_<receptor>_m``, ``verdict`` (worst),
        ``rules_broken`` (``;``-joined ids), ``n_violations``, and the linkage fields
        ``assigned_to``, ``link_distance_m``, ``link_method``.
    violations
        One row per (site, rule): ``site_id``, ``name``, ``address``, ``township``,
        ``rule_id``, ``verdict``, ``problem_type``, ``description``, ``legal_source``,
        ``lead_department``, ``co_departments``, ``measure_zh``, ``deadline_days``,
        ``site_status``, geometry.
    by_rule
        Violations per enabled rule id (zeros included).
    incidents
        The incident locations with the same location fields (or None).
    linkage
        :class:`LinkageResult`.
    skipped_rules
        ``{rule_id: reason}`` for rules whose layer the district lacks.
    rules
        The :class:`RuleTable` used.
    """

    sites: gpd.GeoDataFrame
    violations: gpd.GeoDataFrame
    by_rule: pd.Series
    incidents: gpd.GeoDataFrame | None
    linkage: LinkageResult
    skipped_rules: dict[str, str]
    rules: RuleTable

    def sites_in_four_mountains(self) -> dict[str, int]:
        """Number of sites per strictest 四山 level."""
        s = self.sites["four_mountains_level"].dropna().value_counts()
        return {lv.value: int(s.get(lv.value, 0)) for lv in ZoneLevel}

    def summary(self) -> dict[str, Any]:
        """The keys this step adds to ``summary.json``."""
        out: dict[str, Any] = {
            "violations_total": int(len(self.violations)),
            "violations_by_rule": {k: int(v) for k, v in self.by_rule.items()},
            "sites_by_verdict": {
                v: int((self.sites["verdict"] == v).sum()) for v in VERDICT_RANK
            },
            "sites_in_four_mountains": self.sites_in_four_mountains(),
            "orphan_points": int(
                self.linkage.assignments.loc[
                    self.linkage.assignments["assigned_to"].isna()
                    & self.linkage.assignments["tier"].isin(["collection_point", "drop_off_point"])
                ].shape[0]
            ),
            "orphan_transfer_stations": int(
                self.linkage.assignments.loc[
                    self.linkage.assignments["assigned_to"].isna()
                    & (self.linkage.assignments["tier"] == "transfer_station")
                ].shape[0]
            ),
            "overloaded_stations": list(self.linkage.overloaded),
            "townships_without_transfer_station": list(self.linkage.townships_without_transfer_station),
            "has_working_sorting_centre": bool(self.linkage.has_working_sorting_centre),
            "linkage_method": self.linkage.method,
            "compliance_skipped_rules": dict(self.skipped_rules),
        }
        if self.incidents is not None:
            out["incidents_in_four_mountains"] = int(self.incidents["four_mountains_level"].notna().sum())
        return out


def _applies(rule: Rule, sites: pd.DataFrame) -> np.ndarray:
    tier_ok = sites["tier"].astype(str).isin(rule.tiers).to_numpy() if rule.tiers else None
    kw_ok = None
    if rule.scope_keywords and "business_scope" in sites:
        scope = sites["business_scope"].astype("object").fillna("").astype(str)
        pattern = "|".join(map(_re_escape, rule.scope_keywords))
        kw_ok = scope.str.contains(pattern, regex=True).to_numpy()
    elif rule.scope_keywords:
        kw_ok = np.zeros(len(sites), dtype=bool)
    if tier_ok is None:
        m = kw_ok
    elif kw_ok is None:
        m = tier_ok
    else:
        m = (tier_ok | kw_ok) if rule.match == "any" else (tier_ok & kw_ok)
    if rule.statuses:
        st = sites["status"].astype("object").where(sites["status"].notna(), "active").astype(str)
        m = m & st.isin(rule.statuses).to_numpy()
    return np.asarray(m, dtype=bool)


def _re_escape(s: str) -> str:
    import re

    return re.escape(s)


def _bool_field(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(is_false, is_unknown) of a boolean-ish column."""
    v = s.astype("object")
    unknown = v.isna().to_numpy()
    false = np.zeros(len(v), dtype=bool)
    known = ~unknown
    false[known] = ~v[known].astype(bool).to_numpy()
    return false, unknown


def _fmt_m(x: pd.Series) -> pd.Series:
    return x.round(0).astype("Int64").astype(str)


#: ``describe(sites, loc)``: the 问题描述 of the given rows (a subset of the sites, with their locations).
Describe = Callable[[pd.DataFrame, pd.DataFrame], Any]


def _evaluate(
    rule: Rule,
    sites: pd.DataFrame,
    loc: pd.DataFrame,
    classes: LandUseClasses,
    allowed: set[str],
    orphans: set[str],
    have: Mapping[str, Any],
) -> tuple[np.ndarray, Describe] | str:
    """Mask of sites breaking ``rule`` and how to describe them (问题描述); or a skip reason.

    The description is built for the breaking rows only (:func:`_evaluate_rules`), not for
    every site of a million-row ledger.
    """
    c = rule.condition
    t = rule.condition_type
    n = len(sites)
    if t == "in_zone":
        return _evaluate_in_zone(c, loc, n, have)
    if t in ("landuse_not_allowed", "landuse_unknown"):
        if not have["landuse"]:
            return "district has no land-use layer (vector or raster)"
        known = loc["landuse_code"].notna().to_numpy()
        if t == "landuse_unknown":
            def unknown(s: pd.DataFrame, lc: pd.DataFrame) -> Any:
                raw = lc["landuse_raw"].astype("object")
                return np.where(raw.notna(), "地类编码 " + raw.astype(str) + " 不在GB/T 21010分类表中",
                                "网点所在位置无地类数据（图斑空隙或栅格无数据）")
            return ~known, unknown
        key = loc["landuse_class"].astype(str) + "|" + sites["tier"].astype(str)
        m = known & ~key.isin(allowed).to_numpy()

        def not_allowed(s: pd.DataFrame, lc: pd.DataFrame) -> Any:
            tier_zh = s["tier"].astype(str).map({k.value: v for k, v in TIER_LABEL_ZH.items()}).fillna("")
            return "现状地类为" + lc["landuse_code"].astype(str) + " " + lc["landuse_name"].astype(str) + "，" + tier_zh + "不得占用"
        return m, not_allowed
    if t == "near_receptor":
        col = f"dist_{c['receptor']}_m"
        m = (loc[col] <= float(c["distance_m"])).to_numpy()
        return m, lambda s, lc: ("距最近" + RECEPTOR_LABEL_ZH[c["receptor"]] + _fmt_m(lc[col]) + "米（限值"
                                 + f"{float(c['distance_m']):.0f}" + "米）")
    if t == "missing_attribute":
        f = c["field"]
        if f not in sites:
            return f"sites have no '{f}' field"
        false, unknown = _bool_field(sites[f])
        m = false | (unknown if c.get("unknown", "ok") == "missing" else False)
        return m, lambda s, lc: np.where(_bool_field(s[f])[1], "未登记", "未取得") + ATTRIBUTE_FIELDS[f]
    if t == "below_norm":
        f = c["field"]
        if f not in sites:
            return f"sites have no '{f}' field"
        m = (pd.to_numeric(sites[f], errors="coerce") < float(c["min"])).fillna(False).to_numpy(dtype=bool)
        label, unit = NORM_FIELDS[f]
        return m, lambda s, lc: (label + pd.to_numeric(s[f], errors="coerce").round(1).astype(str) + unit + "，低于规范"
                                 + f"{float(c['min']):g}" + unit)
    if t == "outside_townships":
        return loc["township"].isna().to_numpy(), lambda s, lc: "坐标不在辖区任何镇街范围内"
    if t == "unlinked":
        m = sites["site_id"].astype(str).isin(orphans).to_numpy()
        return m, lambda s, lc: "限定距离内无在营的上级站点（中转站/分拣中心）"
    raise AssertionError(t)  # validated in _parse_rule


def _evaluate_in_zone(c: Mapping[str, Any], loc: pd.DataFrame, n: int, have: Mapping[str, Any]) -> tuple[np.ndarray, Describe] | str:
    """:func:`_evaluate` of an ``in_zone`` rule (inside, or with ``outside`` outside, a zone type)."""
    if not have["zones"]:
        return "district has no zones layer"
    col = f"in_{c['zone_type']}"
    m = loc[col].to_numpy(dtype=bool) if col in loc else np.zeros(n, dtype=bool)
    levels = c.get("levels") or []
    if levels:
        if c["zone_type"] == "four_mountains":
            m = m & loc["four_mountains_level"].isin(levels).to_numpy()
        else:
            pat = "|".join(f"{c['zone_type']}:{lv}" for lv in levels)
            m = m & loc["zones"].str.contains(pat, regex=True).to_numpy()
    label = ZONE_TYPE_LABEL_ZH.get(c["zone_type"], c["zone_type"])
    if c.get("outside"):  # e.g. 城镇开发边界: what may stand outside it
        if c["zone_type"] not in have.get("zone_types", ()):
            return f"district has no {c['zone_type']} zone"
        return ~m, lambda s, lc: "位于" + label + "外"

    def inside(s: pd.DataFrame, lc: pd.DataFrame) -> Any:
        lvl = lc["four_mountains_level"].map({k.value: v for k, v in ZONE_LEVEL_LABEL_ZH.items()}).fillna("")
        names = lc.get(f"zone_names_{c['zone_type']}", pd.Series("", index=lc.index)).fillna("")
        return "位于" + label + (lvl if c["zone_type"] == "four_mountains" else "") + np.where(
            names != "", "（" + names + "）", "")
    return m, inside


def check_sites(
    sites: gpd.GeoDataFrame,
    *,
    townships: gpd.GeoDataFrame | None,
    zones: gpd.GeoDataFrame | None = None,
    landuse: gpd.GeoDataFrame | None = None,
    landuse_raster: Any = None,
    incidents: gpd.GeoDataFrame | None = None,
    rules: RuleTable | None = None,
    graph: Any = None,
    locator: Any = None,
) -> ComplianceResult:
    """Check every site against land use, zones and receptors, and link the hierarchy.

    Parameters
    ----------
    sites
        Canonical site layer (points, metric CRS).
    townships, zones, landuse, landuse_raster
        The district's layers (see :func:`locate`).
    incidents
        Incident points; they get the same location fields.
    rules
        The rule table (default: the bundled one).
    graph
        Road graph for network-distance linkage (None: straight-line).
    locator
        Replacement for :func:`locate` with the same signature (benchmarks compare a
        plain ``geopandas.sjoin`` implementation through it).

    Returns
    -------
    ComplianceResult
    """
    rules = rules or RuleTable.default()
    if sites.crs is not None and sites.crs.is_geographic:
        raise AnalysisError("compliance check needs sites in a metric CRS")
    sites = sites.copy()
    if "status" not in sites:
        sites["status"] = "active"
    from gis.precheck import landuse_rule_skips, landuse_skip_reason  # honest skips

    lu_skips = landuse_rule_skips(rules.enabled, landuse_skip_reason(landuse, landuse_raster))
    if lu_skips:
        landuse = landuse_raster = None
    locator = _bound_locator(locator or locate, rules, townships=townships, zones=zones, landuse=landuse,
                             landuse_raster=landuse_raster)
    loc = locator(sites.geometry)
    sites = _keep_ledger_township(sites)
    for col in loc.columns:
        sites[col] = loc[col]
    have = _layers_present(zones, landuse, landuse_raster)

    # Pre-linkage verdicts (working-centre test), then linkage, then the unlinked rule.
    allowed = rules.classes.allowed_pairs()
    results, skipped = _evaluate_rules(rules, sites, loc, allowed, set(), have, unlinked=False)
    for rid, why in lu_skips.items():
        results.pop(rid, None)
        skipped[rid] = why
    pre = _worst(rules, results, len(sites), sites.index)
    linkage = link_hierarchy(
        sites, params=rules.linkage, graph=graph, townships=townships, verdicts=pre
    )
    late, late_skipped = _evaluate_rules(rules, sites, loc, allowed, set(linkage.orphans), have, unlinked=True)
    results.update(late)
    skipped.update(late_skipped)
    violations = _violation_rows(rules, results, sites)
    _mark_sites(sites, rules, results, violations, linkage)
    by_rule = pd.Series({r.id: int((violations["rule_id"] == r.id).sum()) for r in rules.enabled}, dtype=int)

    return ComplianceResult(sites=sites, violations=violations, by_rule=by_rule,
                            incidents=_located_incidents(incidents, locator), linkage=linkage,
                            skipped_rules=skipped, rules=rules)


def _layers_present(zones: gpd.GeoDataFrame | None, landuse: Any, landuse_raster: Any) -> dict[str, Any]:
    """Which layers the rules can use (a rule needing an absent one is skipped)."""
    return {
        "zones": zones is not None,
        "landuse": landuse is not None or landuse_raster is not None,
        "zone_types": set(zones["zone_type"].astype(str)) if zones is not None and len(zones) else set(),
    }


def _located_incidents(incidents: gpd.GeoDataFrame | None, locator: Any) -> gpd.GeoDataFrame | None:
    """Incidents with the same location fields as the sites (None without incidents)."""
    if incidents is None or not len(incidents):
        return None
    inc = _keep_ledger_township(incidents.copy())
    iloc = locator(incidents.geometry)
    for col in iloc.columns:
        inc[col] = iloc[col]
    return inc


def _bound_locator(base: Any, rules: RuleTable, **layers: Any) -> Any:
    """:func:`locate` (or a replacement) bound to the district's layers and class table.

    Receptors are searched up to the largest ``near_receptor`` distance of the
    enabled rules, at least ``receptor_search_m`` (``layers/compliance.yaml``).
    """
    rmax = max(
        [float(r.condition["distance_m"]) for r in rules.enabled if r.condition_type == "near_receptor"]
        + [float(rules.receptor_search_m or 0.0)]
    )

    def bound(points: gpd.GeoSeries) -> pd.DataFrame:
        return base(points, classes=rules.classes, receptor_max_distance_m=rmax, **layers)

    return bound


def _evaluate_rules(
    rules: RuleTable, sites: gpd.GeoDataFrame, loc: pd.DataFrame, allowed: set[str], orphans: set[str],
    have: dict[str, bool], *, unlinked: bool,
) -> tuple[dict[str, tuple[np.ndarray, pd.Series]], dict[str, str]]:
    """Masks and descriptions of the enabled rules (only the ``unlinked`` ones, or all others).

    Returns ``{rule_id: (broken mask ∧ applies, description of the masked rows)}`` and
    ``{rule_id: reason}`` for the rules skipped for a missing layer.
    """
    results: dict[str, tuple[np.ndarray, pd.Series]] = {}
    skipped: dict[str, str] = {}
    for rule in rules.enabled:
        if (rule.condition_type == "unlinked") != unlinked:
            continue
        r = _evaluate(rule, sites, loc, rules.classes, allowed, orphans, have)
        if isinstance(r, str):
            skipped[rule.id] = r
            continue
        mask = r[0] & _applies(rule, sites)
        rows = np.flatnonzero(mask)
        text = r[1](sites.iloc[rows], loc.iloc[rows])
        desc = (text.set_axis(sites.index[rows]) if isinstance(text, pd.Series) else
                pd.Series(np.broadcast_to(np.asarray(text, dtype=object), (len(rows),)), index=sites.index[rows]))
        results[rule.id] = (mask, desc)
    return results, skipped


_VIOLATION_COLUMNS = [
    "site_id", "name", "address", "township", "township_ledger", "tier", "site_status", "rule_id",
    "verdict", "problem_type", "title_zh", "description", "legal_source", "lead_department",
    "co_departments", "measure_zh", "deadline_days", "geometry",
]


def _violation_rows(
    rules: RuleTable, results: dict[str, tuple[np.ndarray, pd.Series]], sites: gpd.GeoDataFrame
) -> gpd.GeoDataFrame:
    """One row per (site, broken rule), in rule-table order, with the rule's ledger fields."""
    frames = []
    for rule in rules.enabled:
        if rule.id not in results:
            continue
        m, desc = results[rule.id]
        if not m.any():
            continue
        sel = sites.loc[m]
        frames.append(
            pd.DataFrame(
                {
                    "site_id": sel["site_id"].astype(str).to_numpy(),
                    "name": sel["name"].to_numpy() if "name" in sel else None,
                    "address": sel["address"].to_numpy() if "address" in sel else None,
                    "township": sel["township"].to_numpy(),
                    "township_ledger": sel["township_ledger"].to_numpy() if "township_ledger" in sel else None,
                    "tier": sel["tier"].astype(str).to_numpy(),
                    "site_status": sel["status"].astype("object").to_numpy(),
                    "rule_id": rule.id,
                    "verdict": rule.verdict,
                    "problem_type": rule.problem_type,
                    "title_zh": rule.title_zh,
                    "description": (rule.title_zh + "：" + desc).to_numpy(),
                    "legal_source": rule.legal_source,
                    "lead_department": rule.lead_department,
                    "co_departments": "、".join(rule.co_departments),
                    "measure_zh": rule.measure_zh,
                    "deadline_days": rule.deadline_days,
                    "geometry": sel.geometry.to_numpy(),
                }
            )
        )
    cols = _VIOLATION_COLUMNS
    vdf = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in cols})
    return gpd.GeoDataFrame(vdf[cols], geometry="geometry", crs=sites.crs)


def _mark_sites(
    sites: gpd.GeoDataFrame, rules: RuleTable, results: dict[str, tuple[np.ndarray, pd.Series]],
    violations: gpd.GeoDataFrame, linkage: LinkageResult,
) -> None:
    """Add ``verdict`` (worst), ``rules_broken``, ``n_violations`` and the linkage columns to ``sites``."""
    sites["verdict"] = _worst(rules, results, len(sites), sites.index)
    if len(violations):
        broken, cnt = _join_per_key(violations["site_id"].to_numpy(dtype=object), violations["rule_id"], ";")
    else:
        broken = pd.Series(dtype=object)
        cnt = pd.Series(dtype=int)
    key = sites["site_id"].astype(str)
    rb = key.map(broken).astype("object")
    sites["rules_broken"] = rb.where(rb.notna(), "")
    sites["n_violations"] = key.map(cnt).fillna(0).astype(int)
    a = linkage.assignments.set_index("site_id")
    for col in ("assigned_to", "link_distance_m", "link_method"):
        sites[col] = key.map(a[col]) if len(a) else None


def _join_per_key(keys: np.ndarray, values: pd.Series, sep: str) -> tuple[pd.Series, pd.Series]:
    """``sep``-joined values per distinct key in row order, and the number of rows per key.

    What ``groupby(keys)[values].agg(sep.join)`` and ``.size()`` give, without a Python
    call per key: each key's value codes (in row order) form a row of a small code
    matrix, :func:`numpy.unique` finds the distinct rows (a few dozen rule
    combinations among hundreds of thousands of sites; a row of codes
    :math:`c_0 \dots c_{w-1}` is packed as :math:`\sum_j (c_j + 1)(K + 1)^j` when that
    fits in 62 bits, :math:`K` the number of distinct values) and one string is joined
    per distinct row.

    Returns
    -------
    (joined, counts)
        Series indexed by the distinct keys (in sorted order, as ``groupby``).
    """
    group, uniq = pd.factorize(keys)
    codes, names = pd.factorize(values.to_numpy(dtype=object))
    order = np.argsort(group, kind="stable")
    group, codes = group[order], codes[order]
    lens = np.bincount(group, minlength=len(uniq))
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    matrix = np.full((len(uniq), int(lens.max())), -1, dtype=np.int64)
    matrix[group, np.arange(len(group)) - starts[group]] = codes
    radix = len(names) + 1
    if matrix.shape[1] * np.log2(radix) < 62:  # each row as one mixed-radix integer: a 1-D unique
        packed = (matrix + 1) @ (radix ** np.arange(matrix.shape[1], dtype=np.int64))
        first, inverse = np.unique(packed, return_index=True, return_inverse=True)[1:]
        combos = matrix[first]
    else:
        combos, inverse = np.unique(matrix, axis=0, return_inverse=True)
    names = np.asarray(names, dtype=object)
    text = np.array([sep.join(names[row[row >= 0]]) for row in combos], dtype=object)
    index = pd.Index(np.asarray(uniq, dtype=object))
    joined = pd.Series(text[inverse.ravel()], index=index, dtype=object).sort_index()
    return joined, pd.Series(lens, index=index).sort_index()


def _keep_ledger_township(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Keep the ledger's own 镇街 as ``township_ledger`` (the spatial one replaces ``township``).

    :func:`gis.district.load_district` already stores it as ``township_ledger``; a
    plain GeoDataFrame's ``township`` column is taken to be the ledger's value.
    """
    if "township_ledger" in gdf:
        return gdf.drop(columns=["township"], errors="ignore")
    if "township" in gdf:
        return gdf.rename(columns={"township": "township_ledger"})
    return gdf


def _worst(
    rules: RuleTable, results: Mapping[str, tuple[np.ndarray, pd.Series]], n: int, index: pd.Index
) -> pd.Series:
    rank = np.zeros(n, dtype=np.int8)
    for rule in rules.enabled:
        if rule.id in results:
            m = results[rule.id][0]
            rank = np.where(m, np.maximum(rank, VERDICT_RANK[rule.verdict]), rank)
    inv = {v: k for k, v in VERDICT_RANK.items()}
    return pd.Series([inv[int(r)] for r in rank], index=index, dtype="object") if n else pd.Series([], index=index, dtype="object")


# ----------------------------------------------------------------------- district
def _road_graph(district: District, mode: str) -> Any:
    """The district's road network as CSR (:func:`gis.roadgraph.network_for_district`, cached), or None."""
    if getattr(district, "roads_path", None) is None:
        return None
    from gis.roadgraph import network_for_district

    return network_for_district(district, mode=mode)  # type: ignore[arg-type]


def check_district(district: District, *, graph: Any = None, use_network: bool = True) -> ComplianceResult:
    """Run :func:`check_sites` on a loaded :class:`gis.district.District`.

    The rule table is ``district.project.section("compliance")``; the road graph comes
    from :mod:`gis.network` when the district has roads (unless ``graph`` is given or
    ``use_network`` is False).
    """
    project = getattr(district, "project", None)
    if project is not None:
        src = getattr(project, "path", DEFAULT_RULES_PATH)
        from gis.landuse import classes_for_project  # the layer's declared scheme (scheme: in project.yaml)

        rules = RuleTable.from_section(project.section("compliance"), source=src, classes=classes_for_project(project))
    else:
        rules = RuleTable.default()
    if graph is None and use_network and rules.linkage.get("distance", "auto") != "euclidean":
        graph = _road_graph(district, str(rules.linkage.get("network_mode", "drive")))
    return check_sites(
        district.sites,
        townships=district.townships,
        zones=district.zones,
        landuse=district.landuse,
        landuse_raster=district.landuse_raster,
        incidents=getattr(district, "incidents", None),
        rules=rules,
        graph=graph,
    )


