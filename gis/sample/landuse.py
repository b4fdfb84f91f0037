"""GB/T 21010 land use of the sample district, and the land-use class table it is read from."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from gis.sample.constants import METRIC_EPSG
from gis.sample.frame import _contains, _smooth_noise
from gis.sample.geo import _Geo
from gis.sample.roads import _Roads

ClassTable = MappingProxyType  # code -> class entry (name_zh, allowed_tiers, receptor …)


def _class_table() -> MappingProxyType[str, dict[str, Any]]:
    """The GB/T 21010-2017 class table (:func:`gis.landuse.load_scheme`), read once per generation."""
    from gis.landuse import load_scheme

    return MappingProxyType({str(k): dict(v) for k, v in load_scheme("gbt21010_2017").classes.items()})


def _class_entry(code: str, table: MappingProxyType[str, dict[str, Any]]) -> dict[str, Any]:
    """Entry of ``code`` (or of its 2-digit parent class)."""
    return table.get(code) or table.get(code[:2]) or {}


def _allowed(code: str, tier: str, table: MappingProxyType[str, dict[str, Any]]) -> bool:
    """Whether ``tier`` may sit on class ``code``."""
    return tier in (_class_entry(code, table).get("allowed_tiers") or [])


def _allowed_vec(code: npt.ArrayLike, tier: npt.ArrayLike, table: MappingProxyType[str, dict[str, Any]]) -> npt.NDArray[np.bool_]:
    """Vectorised :func:`_allowed` (one lookup per distinct code and tier; null → False)."""
    code = pd.Series(np.asarray(code, dtype=object))
    tier = pd.Series(np.broadcast_to(np.asarray(tier, dtype=object), (len(code),)))
    key = code.where(code.notna(), "") + "|" + tier.astype(str)
    lut = {k: bool(k.split("|")[0]) and _allowed(*k.split("|"), table) for k in key.unique()}
    return key.map(lut).to_numpy(dtype=bool).copy()


def _codes_of_receptor(kind: str, table: MappingProxyType[str, dict[str, Any]]) -> list[str]:
    """4-digit classes that are receptors of ``kind`` (school, hospital, residential)."""
    return [c for c, e in table.items() if e.get("receptor") == kind and len(c) == 4]


#: Class mix per land-use region: (codes, probabilities).
_MIX: MappingProxyType[str, tuple[tuple[str, ...], tuple[float, ...]]] = MappingProxyType({
    "core": (("0301",), (1.0,)),
    "key": (("0301", "0103", "0702"), (0.85, 0.10, 0.05)),
    "general": (("0301", "0103", "0101", "0702", "12"), (0.48, 0.22, 0.12, 0.14, 0.04)),
    "ind_b": (("0601", "0604", "0803", "12", "0501"), (0.50, 0.32, 0.07, 0.06, 0.05)),
    "ind": (("0601", "0604", "12", "0501"), (0.55, 0.35, 0.05, 0.05)),
    "university": (("0803", "0701", "0501", "0810", "0805", "12"), (0.45, 0.25, 0.08, 0.12, 0.03, 0.07)),
    "urban": (("0701", "0501", "0803", "0805", "0810", "0601", "0604", "12"), (0.56, 0.13, 0.06, 0.03, 0.09, 0.04, 0.03, 0.06)),
    "town": (("0701", "0501", "0702", "0803", "0805", "12"), (0.40, 0.22, 0.22, 0.05, 0.03, 0.08)),
    "rural_farm": (("0101", "0103"), (0.5, 0.5)),
    "rural": (("0702", "0301", "12", "0501", "0601"), (0.50, 0.35, 0.07, 0.04, 0.04)),
})


def _landuse(rng: np.random.Generator, geo: _Geo, roads: _Roads) -> gpd.GeoDataFrame:
    """Jittered 250 m cells classified by region rules, dissolved by class and 1 km block."""
    cell = 250.0
    minx, miny, maxx, maxy = geo.district.bounds
    gx = np.arange(minx - cell, maxx + 2 * cell, cell)
    gy = np.arange(miny - cell, maxy + 2 * cell, cell)
    VX, VY = np.meshgrid(gx, gy)
    VX = VX + rng.uniform(-45, 45, VX.shape)
    VY = VY + rng.uniform(-45, 45, VY.shape)
    corners = np.stack(
        [
            np.stack([VX[:-1, :-1], VY[:-1, :-1]], -1),
            np.stack([VX[:-1, 1:], VY[:-1, 1:]], -1),
            np.stack([VX[1:, 1:], VY[1:, 1:]], -1),
            np.stack([VX[1:, :-1], VY[1:, :-1]], -1),
        ],
        axis=2,
    ).reshape(-1, 4, 2)
    ring = np.concatenate([corners, corners[:, :1]], axis=1)
    cells = shapely.polygons(ring)
    cx, cy = corners[:, :, 0].mean(1), corners[:, :, 1].mean(1)
    keep = shapely.intersects(cells, geo.district)
    cells, cx, cy = cells[keep], cx[keep], cy[keep]
    n = len(cells)
    region = np.full(n, "rural", dtype=object)
    farm_noise = _smooth_noise(rng, cx, cy, 5000.0)
    region[farm_noise > -0.15] = "rural_farm"
    region[_contains(geo.town_discs, cx, cy)] = "town"
    region[_contains(geo.urban_core, cx, cy) | _contains(geo.new_town, cx, cy)] = "urban"
    region[_contains(geo.university, cx, cy)] = "university"
    for name, g in geo.industrial.items():
        region[_contains(g, cx, cy)] = "ind_b" if name == "b" else "ind"
    for (rname, level), g in geo.bands.items():
        region[_contains(g, cx, cy)] = {"no_build": "core", "key_control": "key", "general_control": "general"}[level]
    codes = np.empty(n, dtype=object)
    for reg, (cls, prob) in _MIX.items():
        m = np.flatnonzero(region == reg)
        if len(m):
            codes[m] = rng.choice(np.array(cls, dtype=object), size=len(m), p=np.array(prob) / sum(prob))
    # a few deliberate unclassified gaps (holes)
    eligible = np.flatnonzero(np.isin(region, ["rural", "rural_farm", "urban"]))
    holes = rng.choice(eligible, size=5, replace=False)
    codes[holes] = None
    has = np.array([c is not None for c in codes])
    block = (np.floor((cx - minx) / 1000.0).astype(int) * 1000 + np.floor((cy - miny) / 1000.0).astype(int))
    gdf = gpd.GeoDataFrame({"code": codes[has], "block": block[has]}, geometry=cells[has], crs=METRIC_EPSG)
    gdf = gdf.dissolve(by=["code", "block"], as_index=False)
    gdf["geometry"] = shapely.intersection(gdf.geometry.values, geo.district)
    # river, reservoirs and major-road strips cut through the cells
    water = shapely.union_all([geo.river, *geo.reservoirs])
    lines = [
        shapely.linestrings(np.column_stack([roads.node_x[w["nodes"]], roads.node_y[w["nodes"]]]))
        for w in roads.ways
        if w["highway"] in ("primary", "secondary") and not w["tunnel"]
    ]
    strips = shapely.intersection(shapely.union_all(shapely.buffer(np.array(lines), 12.0, cap_style="flat")), geo.district)
    strips = shapely.difference(strips, water)
    cut = gpd.GeoDataFrame(geometry=[shapely.union(strips, water)], crs=METRIC_EPSG)
    gdf = gpd.overlay(gdf[["code", "geometry"]], cut, how="difference", keep_geom_type=True)
    extra = gpd.GeoDataFrame(
        {"code": ["1101", "1004"] + ["1103"] * len(geo.reservoirs)},
        geometry=[geo.river, strips, *geo.reservoirs],
        crs=METRIC_EPSG,
    )
    gdf = pd.concat([gdf, extra], ignore_index=True)
    gdf = gdf.explode(index_parts=False, ignore_index=True)
    gdf = gdf[gdf.geometry.geom_type == "Polygon"]
    gdf = gdf[gdf.geometry.area > 200.0].reset_index(drop=True)
    gdf["geometry"] = shapely.make_valid(gdf.geometry.values)
    return gdf


# ------------------------------------------------------------------ evaluation
