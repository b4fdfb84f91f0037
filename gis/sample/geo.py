"""The generated district's geometry: outline, water, 四山 ridges and bands, regions, townships."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import shapely

from gis.sample.constants import BAND_HALF_WIDTH_M, BOX, FloatArray
from gis.sample.frame import Frame
from gis.sample.outline import Water, real_water, tile_water
from gis.sample.townships import TOWNSHIPS, township_anchors, township_cells, township_of

#: 四山 ridge lines crossing Shapingba (lon, lat), NNE–SSW: 缙云山 along the western
#: border with 璧山 (through 青木关), 中梁山 between 大学城/西永 and the urban core, its
#: 歌乐山 part west of 磁器口 (approximate positions).
RIDGES = MappingProxyType({
    "中梁山": ((106.440, 29.79), (106.414, 29.70), (106.402, 29.63), (106.394, 29.58), (106.385, 29.53), (106.376, 29.47)),
    "缙云山": ((106.312, 29.78), (106.289, 29.70), (106.272, 29.63), (106.256, 29.55), (106.244, 29.49)),
})
#: Half width (m) of the ridge corridors kept free of urban regions.
RIDGE_CLEAR_M = 3300.0
#: Lon/lat boxes of the land-use regions: real district and mosaic tile.
REGION_BOXES = MappingProxyType({
    "real": MappingProxyType({
        "urban": (106.38, 29.48, 106.51, 29.70), "new_town": (106.27, 29.535, 106.375, 29.665),
        "university": (106.295, 29.588, 106.335, 29.625), "ind_a": (106.272, 29.555, 106.305, 29.585),
        "ind_b": (106.3, 29.62, 106.5, 29.70), "ind_c": (106.25, 29.535, 106.29, 29.56),
    }),
    "tile": MappingProxyType({
        "urban": (106.3, 29.468, 106.51, 29.712), "new_town": (106.282, 29.535, 106.40, 29.645),
        "university": (106.312, 29.598, 106.35, 29.64), "ind_a": (106.282, 29.537, 106.312, 29.572),
        "ind_b": (106.3, 29.62, 106.5, 29.70), "ind_c": (106.318, 29.462, 106.352, 29.492),
    }),
})
#: Radius (m) of the built-up disc around each 镇 seat, and the water-source protection buffer.
TOWN_DISC_M = 650.0
WATER_SOURCE_M = 400.0


@dataclass
class _Geo:
    """The district's geometry in EPSG:4544 (built once per generation)."""

    frame: Frame
    district: shapely.Geometry
    river: shapely.Geometry
    riverside: shapely.Geometry
    ridges: dict[str, shapely.LineString]
    bands: dict[tuple[str, str], shapely.Geometry]  # (range name, level) -> polygon
    urban_core: shapely.Geometry
    new_town: shapely.Geometry
    university: shapely.Geometry
    industrial: dict[str, shapely.Geometry]
    reservoirs: list[shapely.Geometry]
    reservoir_names: list[str]
    water_source: list[shapely.Geometry]
    seeds: FloatArray  # township anchor points (n, 2)
    seed_owner: npt.NDArray[np.int64]  # township of each anchor
    townships: list[shapely.Geometry]
    town_discs: shapely.Geometry


def _ridges(frame: Frame, tile: bool) -> dict[str, shapely.LineString]:
    """Ridge lines; a tile's are periodic in latitude so that ranges run on across tiles."""
    if not tile:
        return {name: frame.ll_line(list(pts)) for name, pts in RIDGES.items()}
    lat = np.linspace(BOX[1] - 0.1, BOX[3] + 0.1, 181)
    ph = 2 * np.pi * (lat - BOX[1]) / (BOX[3] - BOX[1])
    return {
        "中梁山": frame.ll_line(list(zip(106.398 + 0.010 * np.sin(ph), lat))),
        "缙云山": frame.ll_line(list(zip(106.262 + 0.004 * np.sin(ph + 1.0), lat))),
    }


def _bands(ridges: dict[str, shapely.LineString], district: shapely.Geometry) -> dict[tuple[str, str], shapely.Geometry]:
    """Nested 四山 levels around each ridge: 禁建区 core, 重点控建区 ring, 一般控建区 ring.

    Level ``l`` is ``buffer(ridge, w_l) − buffer(ridge, w_{l-1})`` clipped to the district,
    so the 禁建区 lies inside the 重点控建区 envelope, which lies inside the 一般控建区 one.
    """
    bands: dict[tuple[str, str], shapely.Geometry] = {}
    for name, line in ridges.items():
        inner = None
        for level in ("no_build", "key_control", "general_control"):
            buf = shapely.buffer(line, BAND_HALF_WIDTH_M[level], cap_style="flat", quad_segs=4)
            ring = buf if inner is None else shapely.difference(buf, inner)
            bands[(name, level)] = shapely.intersection(ring, district)
            inner = buf
    return bands


def _regions(frame: Frame, tile: bool, district: shapely.Geometry, ridges: dict[str, shapely.LineString],
             river: shapely.Geometry, all_bands: shapely.Geometry) -> dict[str, shapely.Geometry]:
    """Urban core (east of 中梁山), new town (the valley between the ridges), university, industry."""
    box = {k: frame.ll_poly(*v) for k, v in REGION_BOXES["tile" if tile else "real"].items()}
    zl = ridges["中梁山"]
    zl_wide = shapely.buffer(zl, RIDGE_CLEAR_M, cap_style="flat")
    jy_wide = shapely.buffer(ridges["缙云山"], RIDGE_CLEAR_M, cap_style="flat")
    zc = np.asarray(zl.coords)
    east_half = shapely.Polygon(np.vstack([zc, [zc[-1][0] + 60_000, zc[-1][1]], [zc[0][0] + 60_000, zc[0][1]]]))
    west_half = shapely.Polygon(np.vstack([zc, [zc[-1][0] - 60_000, zc[-1][1]], [zc[0][0] - 60_000, zc[0][1]]]))
    core = shapely.difference(shapely.intersection(shapely.intersection(district, box["urban"]), east_half), zl_wide)
    core = shapely.difference(core, river)
    new_town = shapely.difference(
        shapely.intersection(shapely.intersection(district, box["new_town"]), west_half), shapely.union(zl_wide, jy_wide)
    )
    ring_b = shapely.difference(shapely.buffer(zl, 4700.0, cap_style="flat"), zl_wide)
    return {
        "urban_core": core, "new_town": new_town, "university": shapely.intersection(new_town, box["university"]),
        "a": shapely.intersection(new_town, box["ind_a"]),
        "b": shapely.intersection(core, shapely.intersection(ring_b, box["ind_b"])),
        "c": shapely.difference(shapely.intersection(district, box["ind_c"]), all_bands),
    }


def build_geometry(rng: np.random.Generator, frame: Frame, tile: bool) -> _Geo:
    """All geometry of one district (real Shapingba, or a mosaic tile when ``tile``)."""
    water: Water = tile_water(rng, frame) if tile else real_water(frame)
    district = water.district
    ridges = _ridges(frame, tile)
    bands = _bands(ridges, district)
    all_bands = shapely.union_all(list(bands.values()))
    reg = _regions(frame, tile, district, ridges, water.river, all_bands)
    protection = [shapely.intersection(shapely.buffer(p, WATER_SOURCE_M), district) for p in water.protected]
    seeds, owner = township_anchors(rng, frame.to_metric)
    townships = township_cells(seeds, owner, district)
    is_town = np.array([t[1] == "镇" for t in TOWNSHIPS])
    discs = shapely.buffer(shapely.points(seeds[: len(TOWNSHIPS)][is_town]), TOWN_DISC_M)
    strict = shapely.union_all([bands[k] for k in bands if k[1] != "general_control"])
    town_discs = shapely.difference(shapely.intersection(shapely.union_all(discs), district), strict)
    return _Geo(
        frame=frame, district=district, river=water.river, riverside=water.riverside, ridges=ridges, bands=bands,
        urban_core=reg["urban_core"], new_town=reg["new_town"], university=reg["university"],
        industrial={k: reg[k] for k in ("a", "b", "c")}, reservoirs=water.bodies,
        reservoir_names=water.protected_names, water_source=protection, seeds=seeds, seed_owner=owner,
        townships=townships, town_discs=town_discs,
    )


def _township_of(geo: _Geo, x: FloatArray, y: FloatArray) -> npt.NDArray[np.int64]:
    """Index of the township (the owner of the nearest anchor = its cell) of each point."""
    return township_of(geo.seeds, geo.seed_owner, x, y)


def _district_outline(rng: np.random.Generator, frame: Frame | None = None) -> tuple[shapely.Geometry, shapely.Geometry, shapely.Geometry]:
    """``(district, river, riverside)`` of the real sample district (EPSG:4544)."""
    w = real_water(frame or Frame())
    return w.district, w.river, w.riverside
