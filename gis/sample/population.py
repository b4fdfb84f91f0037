"""Population raster: land-use-shaped density, weighted by real building footprints.

Density per cell ``d = d_landuse · (1 + B · a / ā)`` where ``d_landuse`` is the region
density (urban core, new town, town discs, rural; damped in industry and the 四山
bands, zero on water and the 禁建区), ``a`` the OSM building-footprint area whose
representative point falls in the cell (``data/boundaries/shapingba_buildings.csv``,
© OpenStreetMap contributors, ODbL 1.0; sparse, so land use carries the rest), ``ā``
the mean footprint area of the cells holding buildings and ``B`` = :data:`BUILDING_WEIGHT`.
Cells are then scaled to :data:`~gis.sample.constants.TOTAL_POPULATION`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from gis.sample.constants import BOUNDARY_DIR, BOX, BUILDINGS_FILE, TOTAL_POPULATION, FloatArray, ScaleParams
from gis.sample.frame import Frame, _contains
from gis.sample.geo import _Geo, _township_of

#: Weight of the building-footprint term (relative to the land-use density).
BUILDING_WEIGHT = 1.5
#: Density multiplier in each 四山 level.
BAND_DENSITY = MappingProxyType({"no_build": 0.0, "key_control": 0.2, "general_control": 0.6})


def _density(geo: _Geo, rng_fields: dict[str, Any], x: FloatArray, y: FloatArray) -> FloatArray:
    """Relative resident density from land-use regions at metric points (unscaled)."""
    n1 = np.clip(0.5 + 0.5 * rng_fields["noise"](x, y), 0.0, 1.0)
    core = _contains(geo.urban_core, x, y)
    newt = _contains(geo.new_town, x, y)
    town = _contains(geo.town_discs, x, y)
    cx, cy = rng_fields["centre"]
    d_centre = np.hypot(x - cx, y - cy)
    dens = np.full(np.shape(x), 0.08) * (0.5 + n1)
    dens = np.where(town, 0.60 * (0.6 + 0.8 * n1), dens)
    dens = np.where(newt, 0.40 * (0.4 + 1.2 * n1), dens)
    dens = np.where(core, (0.7 + 0.6 * n1) * (1.0 + 1.2 * np.exp(-((d_centre / 4000.0) ** 2))), dens)
    for g in geo.industrial.values():
        dens = np.where(_contains(g, x, y), dens * 0.25, dens)
    for (_, level), g in geo.bands.items():
        dens = np.where(_contains(g, x, y), dens * BAND_DENSITY[level], dens)
    water = shapely.union_all([geo.river, *geo.reservoirs])
    dens = np.where(_contains(water, x, y), 0.0, dens)
    dens = np.where(_contains(geo.district, x, y), dens, np.nan)
    return dens


def building_area_grid(res: float, nx: int, ny: int, folder: Path = BOUNDARY_DIR) -> FloatArray:
    """Footprint area (m²) per cell of the population grid over :data:`BOX` (row 0 = north)."""
    path = folder / BUILDINGS_FILE
    if not path.exists():
        return np.zeros(ny * nx)
    b = pd.read_csv(path)
    col = np.floor((b["lon"].to_numpy() - BOX[0]) / res).astype(int)
    row = np.floor((BOX[3] - b["lat"].to_numpy()) / res).astype(int)
    ok = (col >= 0) & (col < nx) & (row >= 0) & (row < ny)
    return np.bincount(row[ok] * nx + col[ok], weights=b["area_m2"].to_numpy()[ok], minlength=nx * ny).astype(float)


@dataclass
class _Population:
    array: npt.NDArray[np.float32]  # (ny, nx), -1 outside
    res: float
    lon: FloatArray  # cell-centre lon of valid cells (base frame)
    lat: FloatArray
    pop: FloatArray  # persons of valid cells
    township: npt.NDArray[np.int64]
    frame: Frame


def _population(geo: _Geo, p: ScaleParams, fields_: dict[str, Any], tile: bool) -> _Population:
    """Population grid over :data:`BOX` (see the module docstring for the density)."""
    res = p.population_res_deg
    nx = int(round((BOX[2] - BOX[0]) / res))
    ny = int(round((BOX[3] - BOX[1]) / res))
    lon = BOX[0] + (np.arange(nx) + 0.5) * res
    lat = BOX[3] - (np.arange(ny) + 0.5) * res
    LON, LAT = np.meshgrid(lon, lat)
    x, y = geo.frame.to_metric(LON.ravel(), LAT.ravel())
    dens = _density(geo, fields_, x, y)
    valid = np.isfinite(dens)
    dens = np.where(valid, dens, 0.0)
    if not tile:
        area = building_area_grid(res, nx, ny)
        has = (area > 0) & valid & (dens > 0)
        if has.any():
            dens = dens * (1.0 + BUILDING_WEIGHT * area / area[has].mean())
    pop = dens / dens.sum() * TOTAL_POPULATION
    arr = np.where(valid, pop, -1.0).astype(np.float32).reshape(ny, nx)
    v = np.flatnonzero(valid)
    pop32 = arr.ravel()[v].astype(np.float64)
    return _Population(arr, res, LON.ravel()[v], LAT.ravel()[v], pop32, _township_of(geo, x[v], y[v]), geo.frame)


def _population_points(rng: np.random.Generator, pop: _Population, n: int) -> tuple[FloatArray, FloatArray]:
    """``n`` points drawn by population weight, uniform inside the chosen cell (metric)."""
    w = pop.pop / pop.pop.sum()
    idx = rng.choice(len(w), size=n, p=w)
    lon = pop.lon[idx] + rng.uniform(-0.5, 0.5, n) * pop.res
    lat = pop.lat[idx] + rng.uniform(-0.5, 0.5, n) * pop.res
    return pop.frame.to_metric(lon, lat)
