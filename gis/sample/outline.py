"""The district outline and its water: the real Shapingba outline, or a mosaic tile's box.

The single sample district takes its outline from ``data/boundaries/shapingba_outline.geojson``
(OSM-derived, simplified; © OpenStreetMap contributors, ODbL 1.0) and its water bodies from
``shapingba_water.geojson`` (OSM water / reservoir / riverbank polygons). The Jialing river
(嘉陵江) forms the district's east edge from 井口 down to 土湾; the OSM layer holds only a
few riverbank pieces of it, so the river is the OSM riverbank polygons plus a 150 m strip
inside that stretch of the outline. A municipal-mosaic tile keeps the former synthetic
layout (its outline is the whole tile box so that neighbours share their borders).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from gis.sample.constants import BOUNDARY_DIR, BOX, METRIC_EPSG, OUTLINE_FILE, WATER_FILE
from gis.sample.frame import Frame

#: Stretch of the outline that is the Jialing bank: latitude range and minimum longitude.
JIALING_LAT = (29.535, 29.665)
JIALING_MIN_LON = 106.445
#: Width (m) of the river strip inside the outline, and of the riverside red-line belt.
RIVER_STRIP_M = 150.0
RIVERSIDE_M = 320.0
#: Reservoirs protected as drinking-water sources (names in the OSM water layer).
PROTECTED_RESERVOIRS = ("工农水库", "苏家桥水库")
#: Synthetic reservoirs of a mosaic tile: name, lon, lat, semi-axes (m), rotation (°).
TILE_RESERVOIRS = (("红岩水库", 106.361, 29.752, 520.0, 240.0, 20.0), ("双河水库", 106.298, 29.512, 480.0, 260.0, -35.0))


@dataclass(frozen=True)
class Water:
    """District outline and water in EPSG:4544.

    Attributes
    ----------
    district
        The outline (one polygon).
    river, riverside
        The Jialing river inside the district and the 320 m belt along it.
    bodies
        Every other water polygon (lakes, reservoirs, ponds).
    protected, protected_names
        The reservoirs that are drinking-water sources, and their names.
    """

    district: shapely.Geometry
    river: shapely.Geometry
    riverside: shapely.Geometry
    bodies: list[shapely.Geometry]
    protected: list[shapely.Geometry]
    protected_names: list[str]


def read_outline(folder: Path = BOUNDARY_DIR) -> shapely.Geometry:
    """The real Shapingba outline (EPSG:4544, largest part if several)."""
    g = gpd.read_file(folder / OUTLINE_FILE).to_crs(METRIC_EPSG).geometry.union_all()
    g = shapely.make_valid(g)
    if g.geom_type != "Polygon":
        g = max(shapely.get_parts(g), key=lambda p: p.area)
    return g


def real_water(frame: Frame, folder: Path = BOUNDARY_DIR) -> Water:
    """Outline, Jialing river and water bodies of the real district (see the module docstring)."""
    district = read_outline(folder)
    water = gpd.read_file(folder / WATER_FILE).to_crs(METRIC_EPSG)
    water["geometry"] = shapely.intersection(shapely.make_valid(water.geometry.values), district)
    water = water[~water.geometry.is_empty & (water.geometry.area > 100.0)].reset_index(drop=True)
    bank = frame.ll_poly(JIALING_MIN_LON, JIALING_LAT[0], BOX[2] + 0.02, JIALING_LAT[1], n=20)
    edge = shapely.intersection(shapely.boundary(district), bank)
    strip = shapely.intersection(shapely.buffer(edge, RIVER_STRIP_M), district)
    is_bank = (water["fclass"] == "riverbank").to_numpy()
    river = shapely.union_all([strip, *water.geometry.values[is_bank]])
    riverside = shapely.difference(shapely.intersection(shapely.buffer(river, RIVERSIDE_M), district), river)
    others = water[~is_bank]
    bodies = [shapely.difference(g, river) for g in others.geometry.values]
    named = others[others["name"].isin(PROTECTED_RESERVOIRS)]
    named = named.dissolve(by="name", as_index=False)
    return Water(
        district=district, river=river, riverside=riverside, bodies=[b for b in bodies if not b.is_empty],
        protected=list(named.geometry.values), protected_names=list(named["name"]),
    )


def tile_water(rng: np.random.Generator, frame: Frame) -> Water:
    """A mosaic tile: the whole box, a synthetic river line and two synthetic reservoirs."""
    district = frame.ll_poly(*BOX, n=40)
    lat = np.linspace(BOX[1] - 0.02, BOX[3] + 0.02, 80)
    phase = rng.uniform(0, 2 * np.pi)
    lon = 106.486 + 0.006 * np.sin((lat - BOX[1]) / 0.35 * 2 * np.pi * 1.3 + phase)
    rx, ry = frame.to_metric(lon, lat)
    line = shapely.LineString(np.column_stack([rx, ry]))
    river = shapely.intersection(district, shapely.buffer(line, RIVER_STRIP_M))
    riverside = shapely.intersection(district, shapely.buffer(line, RIVERSIDE_M))
    bodies = []
    for _, lon0, lat0, ax, by, rot in TILE_RESERVOIRS:
        x0, y0 = frame.to_metric(lon0, lat0)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        wob = 1 + 0.12 * np.cos(3 * t + rng.uniform(0, 6.3))
        ex, ey = ax * wob * np.cos(t), by * wob * np.sin(t)
        cr, sr = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        poly = shapely.Polygon(np.column_stack([x0 + cr * ex - sr * ey, y0 + sr * ex + cr * ey]))
        bodies.append(shapely.intersection(poly, district))
    return Water(district, river, riverside, bodies, list(bodies), [r[0] for r in TILE_RESERVOIRS])
