"""A three-district municipality far from Chongqing (Ürümqi, ~87.6°E 43.8°N), written
from the sample district's own layers moved there, each district in its own CRS.

The districts are copies of ``data/sample_district`` laid side by side west to east;
a cluster of incidents is planted across each shared border (half on each side) so
that DBSCAN must join pieces from two partitions. The third district's files hold
GCJ-02 (火星坐标) lon/lat, declared ``coords: gcj02`` in its ``project.yaml``, and its
folder lies outside the municipal folder (``municipality.yaml`` lists its absolute
path) with neither name nor code in the index (read from its ``project.yaml``).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_district"
#: Where the municipality is moved: lon/lat of the first district's south-west corner.
ORIGIN = (87.40, 43.70)
#: The CRS each district's files are written in (their own, not the analysis CRS).
FILE_CRS = ("EPSG:4326", "EPSG:32645", "gcj02")
ZONE_TYPES = ("four_mountains", "ecological_red_line", "basic_farmland", "water_source")


def _moved(gdf: gpd.GeoDataFrame, dlon: float, dlat: float, crs: str) -> gpd.GeoDataFrame:
    out = gdf.drop(columns=[c for c in ("source_row", "coords_source", "source_file", "source_layer", "township_ledger") if c in gdf])
    out = out.to_crs("EPSG:4326")
    out = out.set_geometry(out.geometry.translate(dlon, dlat))
    return _to_gcj02(out) if crs == "gcj02" else out.to_crs(crs)


def _to_gcj02(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """WGS84 lon/lat → GCJ-02 lon/lat on every vertex (the file still says EPSG:4326, as Amap exports do)."""
    from gis.coords import wgs84_to_gcj02

    def shift(xy: np.ndarray) -> np.ndarray:
        lon, lat = wgs84_to_gcj02(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return gdf.set_geometry(shapely.transform(gdf.geometry.values, shift), crs="EPSG:4326")


def _border_cluster(incidents: gpd.GeoDataFrame, x: float, y: float, k: int) -> gpd.GeoDataFrame:
    """12 incidents of one kind within ~60 m of ``(x, y)`` (EPSG:4326), ids unique per border ``k``."""
    rng = np.random.default_rng(k)
    rows = incidents.iloc[:12].copy()
    rows["kind"] = incidents["kind"].iloc[0]
    rows["incident_id"] = [f"B{k}-{i}" for i in range(len(rows))]
    return rows.set_geometry(gpd.points_from_xy(x + rng.normal(0, 0.0005, 12), y + rng.normal(0, 0.0004, 12), crs="EPSG:4326"))


def _write_district(folder: Path, code: str, layers: dict[str, gpd.GeoDataFrame], zones: gpd.GeoDataFrame, coords: str | None) -> None:
    folder.mkdir(parents=True)
    for role, gdf in layers.items():
        gdf.to_file(folder / f"{role}.gpkg", layer=role, driver="GPKG")
    for zt in ZONE_TYPES:
        zones[zones["zone_type"] == zt].to_file(folder / "zones.gpkg", layer=zt, driver="GPKG")
    project = {
        "name": f"远区{code}（样例）",
        "code": code,
        "sample": True,
        "crs": {"metric": "auto"},
        "outside_tolerance_m": 100000,  # copies do not share borders exactly
        "layers": {
            "sites": {"file": "sites.gpkg", "layer": "sites"},
            "incidents": {"file": "incidents.gpkg", "layer": "incidents"},
            "townships": {"file": "townships.gpkg", "layer": "townships"},
            "population": {"file": "townships.gpkg", "layer": "townships"},
            "zones": [{"file": "zones.gpkg", "layer": zt, "zone_type": zt} for zt in ZONE_TYPES],
        },
    }
    if coords:
        for spec in project["layers"].values():
            for s in spec if isinstance(spec, list) else [spec]:
                s["coords"] = coords
    (folder / "project.yaml").write_text(yaml.safe_dump(project, allow_unicode=True, sort_keys=False), encoding="utf-8")


@functools.lru_cache(maxsize=4)
def far_municipality(base: Path) -> Path:
    """Write the three-district municipality once per session under ``base`` (a pytest temporary
    folder, e.g. the ``run_tmp`` fixture); returns its folder (``municipality.yaml``)."""
    return tiled_municipality(3, Path(tempfile.mkdtemp(prefix="gis_far_", dir=base)) / "muni")


def tiled_municipality(n: int, out: Path) -> Path:
    """``n`` copies of the sample district in rows of ``ceil(√n)`` (3 in one row for n = 3),
    their files in the CRSs of :data:`FILE_CRS` in turn; a cluster planted across every
    west–east border of a row. Returns ``out`` (holding ``municipality.yaml``)."""
    from gis.district import load_district

    d = load_district(SAMPLE)
    outline = gpd.GeoSeries([d.boundary], crs=d.crs).to_crs("EPSG:4326").iloc[0]
    x0, y0, x1, y1 = outline.bounds
    width, height = x1 - x0, y1 - y0
    cols = 3 if n == 3 else int(np.ceil(np.sqrt(n)))
    east = shapely.get_coordinates(outline)
    y_east = float(east[np.argmax(east[:, 0]), 1]) + ORIGIN[1] - y0  # latitude of the east-most vertex, moved
    inc_ll = d.incidents.to_crs("EPSG:4326")
    borders = [_border_cluster(inc_ll, ORIGIN[0] + (k % cols + 1) * width, y_east + (k // cols) * height, k)
               for k in range(n - 1) if k % cols < cols - 1]
    entries = []
    for k in range(n):
        crs, col, row = FILE_CRS[k % len(FILE_CRS)], k % cols, k // cols
        dlon, dlat = ORIGIN[0] - x0 + col * width, ORIGIN[1] - y0 + row * height
        west, east_edge = ORIGIN[0] + col * width, ORIGIN[0] + (col + 1) * width
        south, north = ORIGIN[1] + row * height, ORIGIN[1] + (row + 1) * height
        mine = [b[(b.geometry.x >= west) & (b.geometry.x < east_edge) & (b.geometry.y >= south) & (b.geometry.y < north)] for b in borders]
        inc = pd.concat([_moved(d.incidents, dlon, dlat, "EPSG:4326"), *mine], ignore_index=True)
        layers = {
            "sites": _moved(d.sites, dlon, dlat, crs),
            "incidents": _moved(gpd.GeoDataFrame(inc, geometry="geometry", crs="EPSG:4326"), 0.0, 0.0, crs),
            "townships": _moved(d.townships, dlon, dlat, crs),
        }
        code = str(650102 + k)
        if crs == "gcj02":  # elsewhere on disk, listed by absolute path, name and code from its project.yaml
            folder = out.parent / "elsewhere" / code
            entries.append({"path": str(folder)})
        else:
            folder = out / "districts" / code
            entries.append({"name": f"远区{code}（样例）", "code": code, "path": f"districts/{code}"})
        _write_district(folder, code, layers, _moved(d.zones, dlon, dlat, crs), "gcj02" if crs == "gcj02" else None)
    index = {"name": "远市（样例）", "sample": True, "districts": entries}
    (out / "municipality.yaml").write_text(yaml.safe_dump(index, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out
