"""Raster sampling (栅格取值): the one home of "value of the cell under each point".

Both the land-use overlay (:func:`gis.compliance.locate`, through
:func:`sample_raster_codes`) and :class:`gis.io.RasterLayer` (land-use and population
GeoTIFFs of a district) sample through :func:`cell_index` and :func:`sample_band`.

For an affine geotransform *T* (pixel → map), the cell holding map point
:math:`(x, y)` is :math:`(c, r) = \\lfloor T^{-1} \\cdot (x, y) \\rfloor`, computed
for all points at once; points outside ``0 ≤ r < height``, ``0 ≤ c < width`` have
no value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

__all__ = ["cell_index", "sample_band", "sample_raster_codes", "value_to_gbt21010"]


def cell_index(
    transform: Any, shape: tuple[int, int], x: npt.ArrayLike, y: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Row, column and inside-mask of map points in a raster grid.

    Parameters
    ----------
    transform
        The raster's ``affine.Affine`` (pixel → map).
    shape
        ``(height, width)``.
    x, y
        Map coordinates in the raster's CRS.

    Returns
    -------
    rows, cols, inside
        :math:`(c, r) = \\lfloor T^{-1}(x, y) \\rfloor`; ``inside`` is False for
        points off the grid or with non-finite coordinates (their row/column are -1).

    Examples
    --------
    >>> from affine import Affine
    >>> r, c, ok = cell_index(Affine(10, 0, 0, 0, -10, 100), (10, 10), [5.0, 150.0], [95.0, 5.0])
    >>> r.tolist(), c.tolist(), ok.tolist()
    ([0, 9], [0, 15], [True, False])
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    inv = ~transform
    colf = np.floor(inv.a * x + inv.b * y + inv.c)
    rowf = np.floor(inv.d * x + inv.e * y + inv.f)
    finite = np.isfinite(colf) & np.isfinite(rowf)
    rows = np.where(finite, rowf, -1).astype(np.int64)
    cols = np.where(finite, colf, -1).astype(np.int64)
    inside = finite & (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return rows, cols, inside


def sample_band(
    band: npt.NDArray[Any], transform: Any, x: npt.ArrayLike, y: npt.ArrayLike, nodata: float | None = None
) -> npt.NDArray[np.float64]:
    """Cell values under map points; NaN outside the grid, on NaN cells and on ``nodata``.

    Parameters
    ----------
    band
        ``height × width`` array of the band.
    transform
        The raster's affine transform.
    x, y
        Map coordinates in the raster's CRS.
    nodata
        The band's nodata value (None: no nodata).

    Returns
    -------
    numpy.ndarray
        Float values, one per point.
    """
    rows, cols, inside = cell_index(transform, band.shape, x, y)
    out = np.full(len(rows), np.nan)
    out[inside] = band[rows[inside], cols[inside]]
    if nodata is not None:
        out[out == nodata] = np.nan
    return out


def value_to_gbt21010(values: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """Raster value → GB/T 21010 code: zero-padded to 2 digits below 100, else to 4.

    ``1`` → ``"01"``, ``701`` → ``"0701"`` (the class table stores
    ``raster_value = int(code)``).
    """
    sv = np.asarray(values, dtype=np.int64).astype(str)
    return np.where(np.asarray(values) < 100, np.char.zfill(sv, 2), np.char.zfill(sv, 4))


def sample_raster_codes(
    path: str | Path,
    points: gpd.GeoSeries,
    *,
    value_to_code: Mapping[int, str] | None = None,
    nodata: float | int | None = None,
) -> pd.Series:
    """Land-use code under each point of a classified GeoTIFF.

    The band is read once; cells come from :func:`cell_index`. Points outside the
    raster and cells equal to ``nodata`` give null.

    Parameters
    ----------
    path
        Single-band classified raster.
    points
        Points (any CRS with a defined ``crs``; reprojected to the raster's).
    value_to_code
        Raster value → GB/T 21010 code; default :func:`value_to_gbt21010`.
    nodata
        Overrides the file's nodata value.

    Returns
    -------
    pandas.Series
        Codes (str) or None, on ``points.index``.
    """
    import rasterio

    with rasterio.open(path) as ds:
        pts = points.to_crs(ds.crs) if points.crs is not None and ds.crs is not None else points
        band = ds.read(1)
        vals = sample_band(band, ds.transform, shapely.get_x(pts.values), shapely.get_y(pts.values),
                           ds.nodata if nodata is None else nodata)
    out = pd.Series([None] * len(vals), index=points.index, dtype="object")
    valid = np.isfinite(vals)
    if valid.any():
        v = vals[valid].astype(np.int64)
        if value_to_code:
            mapped = pd.Series(v).map({int(k): str(c) for k, c in value_to_code.items()})
        else:
            mapped = pd.Series(value_to_gbt21010(v), dtype=object)
        out.iloc[np.flatnonzero(valid)] = mapped.to_numpy(dtype=object)
    return out.where(out.notna(), None)
