"""Zone layers: 四山 levels, ecological red lines, drinking-water sources, basic farmland."""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import shapely

from gis.sample.constants import METRIC_EPSG
from gis.sample.geo import _Geo

def _zones(geo: _Geo, parcels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """All zone polygons (EPSG:4544) with zone_type, level, name."""
    rows: list[dict[str, Any]] = []
    for (rng_name, level), g in geo.bands.items():
        rows.append({"zone_type": "four_mountains", "level": level, "name": rng_name, "geometry": g})
    for rng_name in geo.ridges:
        rows.append({"zone_type": "ecological_red_line", "level": None, "name": f"{rng_name}生态保护红线", "geometry": geo.bands[(rng_name, "no_build")]})
    rows.append({"zone_type": "ecological_red_line", "level": None, "name": "嘉陵江沿岸生态保护红线", "geometry": geo.riverside})
    for name, g in zip(geo.reservoir_names, geo.water_source):
        rows.append({"zone_type": "water_source", "level": None, "name": f"{name}饮用水水源保护区", "geometry": g})
    # basic farmland: large farmland blocks outside the 四山 bands and water-source zones
    farm = parcels[parcels["code"].isin(["0101", "0103"])]
    excl = shapely.union_all([*geo.bands.values(), *geo.water_source, geo.riverside, geo.urban_core, geo.new_town])
    merged = shapely.difference(shapely.union_all(farm.geometry.values), excl)
    pieces = shapely.get_parts(shapely.buffer(merged, -25.0))
    pieces = pieces[shapely.area(pieces) > 600_000.0]
    pieces = shapely.simplify(pieces, 5.0)
    for k, g in enumerate(pieces):
        rows.append({"zone_type": "basic_farmland", "level": None, "name": f"永久基本农田保护片区{k + 1:02d}", "geometry": g})
    zones = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    zones = zones[~zones.geometry.is_empty].reset_index(drop=True)
    zones["geometry"] = shapely.make_valid(zones.geometry.values)
    return zones


