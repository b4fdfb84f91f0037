"""Coordinate frame of one generation: metric CRS, tile offset, small geometry helpers.

A :class:`Frame` replaces the former module-level tile state: every function that
turns lon/lat into metres receives the frame of the district being generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer

from gis.sample.constants import METRIC_EPSG, FloatArray


@dataclass(frozen=True)
class Frame:
    """Metric frame of one generated district.

    Attributes
    ----------
    dlon, dlat
        Offset (degrees) added to the base lon/lat before projecting: zero for the single
        sample district, the tile offset for a district of a municipal mosaic.
    """

    dlon: float = 0.0
    dlat: float = 0.0
    fwd: Transformer = field(init=False, repr=False, compare=False)
    inv: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fwd", Transformer.from_crs("EPSG:4326", f"EPSG:{METRIC_EPSG}", always_xy=True))
        object.__setattr__(self, "inv", Transformer.from_crs(f"EPSG:{METRIC_EPSG}", "EPSG:4326", always_xy=True))

    def to_metric(self, lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
        """Base lon/lat → EPSG:4544 metres of this frame (``lon + dlon``, ``lat + dlat``)."""
        x, y = self.fwd.transform(np.asarray(lon, float) + self.dlon, np.asarray(lat, float) + self.dlat)
        return np.asarray(x, float), np.asarray(y, float)

    def to_lonlat(self, x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
        """EPSG:4544 metres → WGS84 lon/lat (true position, offset included)."""
        lon, lat = self.inv.transform(np.asarray(x, float), np.asarray(y, float))
        return np.asarray(lon, float), np.asarray(lat, float)

    def ll_poly(self, lon0: float, lat0: float, lon1: float, lat1: float, n: int = 20) -> shapely.Polygon:
        """A base lon/lat box as a densified metric polygon."""
        t = np.linspace(0, 1, n, endpoint=False)
        lon = np.concatenate([lon0 + (lon1 - lon0) * t, np.full(n, lon1), lon1 - (lon1 - lon0) * t, np.full(n, lon0)])
        lat = np.concatenate([np.full(n, lat0), lat0 + (lat1 - lat0) * t, np.full(n, lat1), lat1 - (lat1 - lat0) * t])
        x, y = self.to_metric(lon, lat)
        return shapely.Polygon(np.column_stack([x, y]))

    def ll_line(self, points: list[tuple[float, float]]) -> shapely.LineString:
        """A base lon/lat polyline in metres."""
        lon, lat = np.array(points).T
        x, y = self.to_metric(lon, lat)
        return shapely.LineString(np.column_stack([x, y]))


def to_metric(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """WGS84 lon/lat → EPSG:4544 metres (no tile offset)."""
    return Frame().to_metric(lon, lat)


def to_lonlat(x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
    """EPSG:4544 metres → WGS84 lon/lat."""
    return Frame().to_lonlat(x, y)


def _ll_poly(lon0: float, lat0: float, lon1: float, lat1: float, n: int = 20) -> shapely.Polygon:
    """A lon/lat box as a densified metric polygon (no tile offset)."""
    return Frame().ll_poly(lon0, lat0, lon1, lat1, n)


def _smooth_noise(rng: np.random.Generator, x: FloatArray, y: FloatArray, wavelength_m: float, n: int = 6) -> FloatArray:
    """Smooth random field in about [-1, 1]: a sum of ``n`` random plane waves.

    ``f(x, y) = Σ_i cos(k_i (cos θ_i x + sin θ_i y) + φ_i) / (1.5 √(n/2))`` with
    ``k_i = 2π / (λ u_i)``, ``u_i ~ U(0.7, 1.4)``.
    """
    theta = rng.uniform(0, 2 * np.pi, n)
    k = 2 * np.pi / (wavelength_m * rng.uniform(0.7, 1.4, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    field_ = np.zeros(np.shape(x))
    for i in range(n):
        field_ = field_ + np.cos(k[i] * (np.cos(theta[i]) * x + np.sin(theta[i]) * y) + phase[i])
    return field_ / math.sqrt(n / 2.0) / 1.5


def _contains(geom: shapely.Geometry, x: FloatArray, y: FloatArray) -> npt.NDArray[np.bool_]:
    """Point-in-polygon of metric points (prepares ``geom``)."""
    shapely.prepare(geom)
    return shapely.contains_xy(geom, x, y)


def _uniform_in(rng: np.random.Generator, geom: shapely.Geometry, n: int) -> tuple[FloatArray, FloatArray]:
    """About ``n`` points uniform inside ``geom`` (rejection from its bounds)."""
    if geom.is_empty or n <= 0:
        return np.empty(0), np.empty(0)
    minx, miny, maxx, maxy = geom.bounds
    frac = max(geom.area / ((maxx - minx) * (maxy - miny)), 0.01)
    m = int(n / frac) + 10
    x = rng.uniform(minx, maxx, m)
    y = rng.uniform(miny, maxy, m)
    inside = _contains(geom, x, y)
    return x[inside][:n], y[inside][:n]


def _seq_ids(prefix: Any, numbers: npt.ArrayLike, width: int) -> npt.NDArray[np.object_]:
    """``prefix`` + zero-padded ``numbers`` (vectorised)."""
    return np.char.add(prefix, np.char.zfill(np.asarray(numbers).astype(str), width)).astype(object)
