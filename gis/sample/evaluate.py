"""Situation facts at any point of the generated layers (zones, land use, receptors, stations)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from gis.schema import Tier
from gis.sample.constants import (
    CLEAN_TS_M, FAR_FROM_TS_M, FLOOR_NORM_M2, MARGIN_M, RECEPTOR_RADIUS_M, RECEPTOR_TIERS, FloatArray,
)
from gis.sample.landuse import _allowed_vec, _codes_of_receptor

#: Distances (m) that rule tables use as thresholds; planted distances keep clear of them.
_THRESHOLDS_M = np.array([100.0, 150.0, 200.0, 300.0, 500.0, 800.0])

@dataclass(frozen=True)
class _SegmentIndex:
    """Outline segments of polygons, for exact capped nearest distances.

    ``polygons`` holds the polygons themselves (a point inside one is at distance 0),
    ``coords`` the segments' ends ``(m, 2, 2)`` and ``tree`` an STRtree over them.
    """

    tree: shapely.STRtree
    coords: FloatArray
    polygons: shapely.STRtree | None = None

    @classmethod
    def of(cls, geoms: npt.ArrayLike, *, polygons: bool) -> "_SegmentIndex":
        seg = _segments(geoms)
        coords = shapely.get_coordinates(seg).reshape(-1, 2, 2) if len(seg) else np.empty((0, 2, 2))
        return cls(shapely.STRtree(seg), coords, shapely.STRtree(np.asarray(geoms, dtype=object)) if polygons else None)


@dataclass
class _Index:
    """Spatial indexes over the generated layers, to evaluate any point's situation."""

    parcels: gpd.GeoDataFrame
    parcel_tree: shapely.STRtree
    boundary_tree: _SegmentIndex
    zones: gpd.GeoDataFrame  # zone_type, level, name, geometry
    zone_tree: shapely.STRtree
    receptor_trees: dict[str, _SegmentIndex]
    classes: MappingProxyType[str, dict[str, Any]]
    ts_xy: FloatArray = field(default_factory=lambda: np.empty((0, 2)))
    ts_active_xy: FloatArray = field(default_factory=lambda: np.empty((0, 2)))


def _segments(geoms: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Boundary of polygons as individual 2-point segments (for fast nearest queries)."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.empty(0, dtype=object)
    lines = shapely.get_parts(shapely.boundary(geoms))
    lines = shapely.get_parts(lines)
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    same = idx[:-1] == idx[1:]
    a, b = coords[:-1][same], coords[1:][same]
    return shapely.linestrings(np.stack([a, b], axis=1))


def _build_index(parcels: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, classes: MappingProxyType[str, dict[str, Any]]) -> _Index:
    """Trees over parcels, parcel/zone boundaries, zones and receptors."""
    receptor_trees = {}
    for kind in ("school", "hospital", "residential"):
        g = parcels.geometry.values[parcels["code"].isin(_codes_of_receptor(kind, classes)).to_numpy()]
        receptor_trees[kind] = _SegmentIndex.of(g, polygons=True)
    ws = list(parcels.geometry.values[(parcels["code"] == "1103").to_numpy()])
    ws += list(zones.geometry.values[(zones["zone_type"] == "water_source").to_numpy()])
    receptor_trees["water_source"] = _SegmentIndex.of(np.array(ws, dtype=object), polygons=True)
    return _Index(
        parcels=parcels,
        parcel_tree=shapely.STRtree(parcels.geometry.values),
        boundary_tree=_SegmentIndex.of(np.concatenate([parcels.geometry.to_numpy(), zones.geometry.to_numpy()]), polygons=False),
        zones=zones,
        zone_tree=shapely.STRtree(zones.geometry.values),
        receptor_trees=receptor_trees,
        classes=classes,
    )


#: Distances are only compared with thresholds below these caps (MARGIN_M for parcel
#: boundaries; receptor radii, _THRESHOLDS_M ± 8 m and RECEPTOR_RADIUS_M + 20 m for
#: receptors), so anything farther is recorded as ``inf`` — the same decisions, and the
#: tree search stops at the cap instead of measuring every far polygon.
_BOUNDARY_CAP_M = 4 * MARGIN_M
_RECEPTOR_CAP_M = 1000.0


def _point_segment_distance(px: FloatArray, py: FloatArray, ab: FloatArray) -> FloatArray:
    r"""Point–segment distance, computed as GEOS does (``Distance::pointToSegment``), so
    results are bit-identical with ``shapely.distance``: with :math:`\delta = b - a`,
    :math:`r = (p - a)\cdot\delta / \lVert\delta\rVert^2`; :math:`r \le 0` → :math:`\lVert p - a\rVert`,
    :math:`r \ge 1` → :math:`\lVert p - b\rVert`, else :math:`|s|\,\lVert\delta\rVert` with
    :math:`s = ((a_y - p_y)\delta_x - (a_x - p_x)\delta_y) / \lVert\delta\rVert^2`."""
    ax, ay, bx, by = ab[:, 0, 0], ab[:, 0, 1], ab[:, 1, 0], ab[:, 1, 1]
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        r = ((px - ax) * dx + (py - ay) * dy) / len2
        s = ((ay - py) * dx - (ax - px) * dy) / len2
        perp = np.abs(s) * np.sqrt(len2)
    da = np.sqrt((px - ax) * (px - ax) + (py - ay) * (py - ay))
    db = np.sqrt((px - bx) * (px - bx) + (py - by) * (py - by))
    return np.where((len2 == 0) | (r <= 0), da, np.where(r >= 1, db, perp))


#: Points per batch of :func:`_nearest_within` (bounds the candidate pairs held at once).
_NEAREST_BATCH = 50_000
#: First search box of :func:`_nearest_within`, as a fraction of the cap (doubled until the cap).
_FIRST_REACH = 1 / 4


def _nearest_within(index: _SegmentIndex, x: FloatArray, y: FloatArray, cap: float) -> FloatArray:
    """Distance from each point to the nearest geometry of ``index`` when within ``cap``, else ``inf``.

    Same values as ``STRtree(geoms).query_nearest(points, max_distance=cap)`` (bit for bit),
    without a GEOS call per candidate: a point inside one of the polygons is at distance 0;
    the others take the segments whose envelopes meet their box of half-side :math:`r`
    and measure them exactly (:func:`_point_segment_distance`). Every segment within
    :math:`r` of the point meets that box, so a minimum :math:`\le r` is final; the
    remaining points search again with :math:`2r`, up to the cap. (Not
    :func:`gis.overlay.nearest_distance`: that one is exact only to rounding, and the
    sample's bytes must not change with the method.)
    """
    d = np.full(len(x), np.inf)
    if not len(index.coords):
        return d
    todo = np.arange(len(x))
    if index.polygons is not None:
        inside = index.polygons.query(shapely.points(x, y), predicate="intersects")[0]
        d[inside] = 0.0
        todo = np.setdiff1d(todo, inside)
    reach = cap * _FIRST_REACH
    while len(todo):
        reach = min(reach, cap)
        for lo in range(0, len(todo), _NEAREST_BATCH):
            t = todo[lo:lo + _NEAREST_BATCH]
            bx, by = x[t], y[t]
            pi, sj = index.tree.query(shapely.box(bx - reach, by - reach, bx + reach, by + reach))
            part = np.full(len(t), np.inf)
            np.minimum.at(part, pi, _point_segment_distance(bx[pi], by[pi], index.coords[sj]))
            d[t] = part
        done = (d[todo] <= reach) | (reach >= cap)
        todo, reach = todo[~done], 2 * reach
    d[d > cap] = np.inf
    return d


def _evaluate(ix: _Index, x: FloatArray, y: FloatArray) -> pd.DataFrame:
    """Situation facts at metric points (vectorised)."""
    n = len(x)
    pts = shapely.points(x, y)
    out = pd.DataFrame(index=np.arange(n))
    pi, pj = ix.parcel_tree.query(pts, predicate="within")
    code = np.full(n, None, dtype=object)
    code[pi] = ix.parcels["code"].to_numpy()[pj]
    out["code"] = code
    out["d_boundary"] = _nearest_within(ix.boundary_tree, x, y, _BOUNDARY_CAP_M)
    zi, zj = ix.zone_tree.query(pts, predicate="intersects")
    zt = ix.zones["zone_type"].to_numpy()[zj]
    zl = ix.zones["level"].to_numpy()[zj]
    zn = ix.zones["name"].to_numpy()[zj]
    out["fm_level"] = None
    out["fm_range"] = None
    fm = zt == "four_mountains"
    out.loc[zi[fm], "fm_level"] = zl[fm]
    out.loc[zi[fm], "fm_range"] = zn[fm]
    for t in ("ecological_red_line", "basic_farmland", "water_source"):
        col = np.zeros(n, bool)
        col[zi[zt == t]] = True
        out[t] = col
    out["in_zone"] = np.isin(np.arange(n), zi)
    for kind, tree in ix.receptor_trees.items():
        out[f"d_{kind}"] = _nearest_within(tree, x, y, _RECEPTOR_CAP_M)
    for name, xy in (("d_ts", ix.ts_xy), ("d_ts_active", ix.ts_active_xy)):
        if len(xy):
            out[name] = cKDTree(xy).query(np.column_stack([x, y]))[0]
        else:
            out[name] = np.inf
    return out


def _situations(ev: pd.DataFrame, tier: npt.ArrayLike, attrs: pd.DataFrame, classes: MappingProxyType[str, dict[str, Any]]) -> npt.NDArray[np.object_]:
    """The ';'-joined situation codes of each site (see the module docstring)."""
    tier = np.asarray(tier, dtype=object)
    n = len(tier)
    parts: list[npt.NDArray[np.object_]] = []
    lvl = ev["fm_level"].to_numpy(dtype=object)
    parts.append(np.where(pd.notna(lvl), "four_mountains:" + lvl.astype(str), ""))
    for t in ("ecological_red_line", "basic_farmland", "water_source"):
        parts.append(np.where(ev[t].to_numpy(), t, ""))
    code = ev["code"].to_numpy(dtype=object)
    not_allowed = pd.notna(code) & ~_allowed_vec(code, tier, classes)
    parts.append(np.where(not_allowed, "landuse_not_allowed:" + code.astype(str), ""))
    for kind, tiers in RECEPTOR_TIERS.items():
        d = ev[f"d_{kind}"].to_numpy()
        hit = np.isin(tier, [str(t) for t in tiers]) & (d < RECEPTOR_RADIUS_M[kind])
        parts.append(np.where(hit, np.char.add(f"near_receptor:{kind}:", np.floor(np.where(hit, d, 0)).astype(int).astype(str)), ""))
    parts.append(np.where(attrs["营业执照"].to_numpy() == "无", "no_business_licence", ""))
    parts.append(np.where(attrs["资质认定"].to_numpy() == "未取得", "no_dismantling_qualification", ""))
    parts.append(np.where(attrs["公安备案"].to_numpy() == "未备案", "no_police_filing", ""))
    area = attrs["占地面积(㎡)"].to_numpy(dtype=float)
    norm = pd.Series(tier).map({str(k): v for k, v in FLOOR_NORM_M2.items()}).fillna(-np.inf).to_numpy(float)
    parts.append(np.where(area < norm, "floor_area_below_norm", ""))
    far = (tier == str(Tier.COLLECTION_POINT)) & (ev["d_ts"].to_numpy() > FAR_FROM_TS_M)
    parts.append(np.where(far, "far_from_transfer_station", ""))
    joined = np.full(n, "", dtype=object)
    for p in parts:
        p = p.astype(object)
        joined = np.where((joined != "") & (p != ""), joined + ";" + p, joined + p)
    return joined


def _clean_mask(ev: pd.DataFrame, tier: str, classes: MappingProxyType[str, dict[str, Any]]) -> npt.NDArray[np.bool_]:
    """Positions where a site of ``tier`` with full licences is unambiguously clean."""
    code = ev["code"].to_numpy(dtype=object)
    ok = _allowed_vec(code, str(tier), classes)
    ok &= ev["d_boundary"].to_numpy() >= MARGIN_M
    ok &= ~ev["in_zone"].to_numpy()
    for kind, tiers in RECEPTOR_TIERS.items():
        if tier in [str(t) for t in tiers]:
            ok &= ev[f"d_{kind}"].to_numpy() >= RECEPTOR_RADIUS_M[kind] + 20.0
    if tier in (Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT):
        ok &= ev["d_ts_active"].to_numpy() <= CLEAN_TS_M
    return ok


def _unambiguous(ev: pd.DataFrame, tier: str) -> npt.NDArray[np.bool_]:
    """Planted positions whose situation does not hinge on a metre or two."""
    ok = ev["code"].notna().to_numpy().copy() & (ev["d_boundary"].to_numpy() >= MARGIN_M)
    for kind, tiers in RECEPTOR_TIERS.items():
        if tier in [str(t) for t in tiers]:
            d = ev[f"d_{kind}"].to_numpy()
            ok &= np.min(np.abs(d[:, None] - _THRESHOLDS_M[None, :]), axis=1) > 8.0
    if tier in (Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT):
        d = ev["d_ts"].to_numpy()
        da = ev["d_ts_active"].to_numpy()
        ok &= (da < 4500.0) | (d > 5500.0)
        if tier == Tier.DROP_OFF_POINT:
            ok &= da < 4500.0
    return ok


