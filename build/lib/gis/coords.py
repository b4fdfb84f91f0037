"""Coordinate conventions of Chinese district data, and the district's metric CRS.

The trap
--------
Chinese district files mix four coordinate conventions that all *look* like
longitude/latitude in degrees:

``wgs84``
    GPS receivers, OpenStreetMap (EPSG:4326).
``cgcs2000``
    Official surveying and planning maps (2000国家大地坐标系, EPSG:4490). Its frame
    differs from WGS84 by well under 1 m today; at district scale (hundreds of
    metres of service radius, kilometres of zones) this module treats the two as
    identical and passes CGCS2000 values through unchanged.
``gcj02``
    "Mars coordinates" (火星坐标, 国测局坐标): the obfuscated lon/lat that Amap
    (高德), Tencent and every address geocoder return. The shift against WGS84 is a
    deliberately irregular function of position, about 100–700 m in mainland China.
``bd09``
    Baidu coordinates (百度坐标, BD-09 lon/lat): a second, smaller distortion
    applied on top of GCJ-02.

PROJ (and therefore pyproj, GeoPandas and QGIS) does **not** implement GCJ-02 or
BD-09: a geocoded site ledger loaded "as EPSG:4326" silently lands several hundred
metres off, i.e. on the wrong parcel, outside the four-mountains zone it is in, on
the other side of a river. The conversion must therefore be explicit for each input
(``coords:`` in ``project.yaml``), done here, and recorded in the district's
provenance. Files with a real CRS (e.g. EPSG:4544) go through pyproj.

GCJ-02 is only applied inside a rectangle around China (:func:`out_of_china`, the
box used by the widely shared public implementations: longitude 72.004–137.8347°E,
latitude 0.8293–55.8271°N); outside it :func:`wgs84_to_gcj02` and
:func:`gcj02_to_wgs84` return their input unchanged. The BD-09 step is applied
everywhere (as Baidu's published formula is; libraries differ on this outside
China, which never matters for a Chinese district).

Forward conversions are the public closed-form formulas. Their inverses are *not*
the usual one-step approximation (``wgs ≈ gcj - shift(gcj)``, typically ~0.7 m and
up to ~5 m off) but a fixed-point iteration solved until the forward image
reproduces the input to better than ``tol`` (default 1e-10°, about 0.01 mm); see
:func:`gcj02_to_wgs84`. The forward map jumps at the edge of the box, so within
~1 km of the box edge (open sea, Central Asia, Siberia — never a Chinese
district) a GCJ-02 value may have no exact preimage; the iteration then stops at
``max_iter`` with a :class:`ConvergenceWarning`.

Metric work uses the CGCS2000 3-degree Gauss-Krüger zone of the district's central
longitude (:func:`choose_metric_crs`): EPSG:4544 (CM 105°E) for Shapingba,
EPSG:4545 (CM 108°E) further east, UTM outside China's range.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from pyproj.exceptions import CRSError
from shapely.geometry.base import BaseGeometry

from gis._errors import CoordinateError

__all__ = [
    "COORDINATE_CONVENTIONS",
    "CONVENTION_ALIASES",
    "ConvergenceWarning",
    "Convention",
    "ConventionLike",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "choose_metric_crs",
    "convert_geoseries_convention",
    "describe_crs",
    "from_wgs84_lonlat",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "out_of_china",
    "parse_convention",
    "to_wgs84_lonlat",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

#: A canonical lon/lat convention name.
Convention: TypeAlias = Literal["wgs84", "cgcs2000", "gcj02", "bd09"]
#: Anything :func:`parse_convention` accepts.
ConventionLike: TypeAlias = str | int | pyproj.CRS
#: A float or an array of floats.
ArrayLike: TypeAlias = float | npt.ArrayLike
FloatArray: TypeAlias = npt.NDArray[np.float64]
#: What :func:`choose_metric_crs` accepts as an extent.
ExtentLike: TypeAlias = (
    float
    | Sequence[float]
    | npt.NDArray[np.float64]
    | BaseGeometry
    | gpd.GeoSeries
    | gpd.GeoDataFrame
)

# --- constants of the public GCJ-02 / BD-09 formulas ------------------------------
#: Semi-major axis (Krassowsky ellipsoid) used by the GCJ-02 formula.
GCJ_A: float = 6378245.0
#: First eccentricity squared used by the GCJ-02 formula.
GCJ_EE: float = 0.00669342162296594323
#: BD-09 angular constant ``pi * 3000 / 180``.
BD_X_PI: float = math.pi * 3000.0 / 180.0
#: Out-of-China box (inclusive) inside which GCJ-02 applies.
CHINA_LON_RANGE: tuple[float, float] = (72.004, 137.8347)
CHINA_LAT_RANGE: tuple[float, float] = (0.8293, 55.8271)

#: Default convergence tolerance of the iterative inverses, in degrees
#: (1e-10° ≈ 0.01 mm; the required accuracy is 1e-9°).
INVERSE_TOL_DEG: float = 1e-10
#: Default iteration cap of the inverses (3–5 iterations suffice in practice).
INVERSE_MAX_ITER: int = 30

#: Canonical lon/lat conventions and what they are.
COORDINATE_CONVENTIONS: Mapping[str, str] = {
    "wgs84": "WGS84 lon/lat (EPSG:4326): GPS, OpenStreetMap",
    "cgcs2000": "CGCS2000 lon/lat (EPSG:4490, 2000国家大地坐标系): official maps; "
    "treated as identical to WGS84 (<1 m apart)",
    "gcj02": "GCJ-02 lon/lat (火星坐标): Amap/Tencent, address geocoders; "
    "shifted ~100-700 m, converted by gis.coords",
    "bd09": "BD-09 lon/lat (百度坐标): Baidu maps and geocoder; "
    "GCJ-02 plus a further shift, converted by gis.coords",
}

#: Accepted spellings (compared after lower-casing and removing spaces, '-' and '_').
CONVENTION_ALIASES: Mapping[str, Convention] = {
    "wgs84": "wgs84",
    "wgs1984": "wgs84",
    "epsg:4326": "wgs84",
    "ogc:crs84": "wgs84",
    "gps": "wgs84",
    "cgcs2000": "cgcs2000",
    "epsg:4490": "cgcs2000",
    "2000国家大地坐标系": "cgcs2000",
    "国家2000坐标系": "cgcs2000",
    "gcj02": "gcj02",
    "gcj": "gcj02",
    "火星坐标": "gcj02",
    "火星坐标系": "gcj02",
    "国测局坐标": "gcj02",
    "国测局坐标系": "gcj02",
    "高德坐标": "gcj02",
    "腾讯坐标": "gcj02",
    "amap": "gcj02",
    "bd09": "bd09",
    "bd09ll": "bd09",
    "baidu": "bd09",
    "百度坐标": "bd09",
    "百度坐标系": "bd09",
}

_ACCEPTED_TEXT = (
    "accepted: 'wgs84' (EPSG:4326), 'cgcs2000' (EPSG:4490), 'gcj02' (GCJ-02, 火星坐标), "
    "'bd09' (BD-09, 百度坐标), or any CRS pyproj understands, e.g. 'EPSG:4544'"
)


class ConvergenceWarning(RuntimeWarning):
    """An iterative inverse stopped at ``max_iter`` before reaching ``tol``."""


# --- array helpers ----------------------------------------------------------------
def _as_arrays(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray, bool]:
    """Broadcast ``lon``/``lat`` to float64 arrays (copies); flag scalar input."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    scalar = x.ndim == 0 and y.ndim == 0
    x, y = np.broadcast_arrays(x, y)
    return np.array(x, dtype=np.float64), np.array(y, dtype=np.float64), scalar


def _out(x: FloatArray, y: FloatArray, scalar: bool) -> tuple[Any, Any]:
    if scalar:
        return np.float64(x[()]), np.float64(y[()])
    return x, y


def out_of_china(lon: ArrayLike, lat: ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether points lie outside the box in which GCJ-02 is applied.

    Parameters
    ----------
    lon, lat
        Longitude and latitude in degrees (scalars or broadcastable arrays).

    Returns
    -------
    numpy.ndarray of bool
        True outside ``72.004 <= lon <= 137.8347`` and ``0.8293 <= lat <= 55.8271``
        (the box of the public GCJ-02 implementations). NaN counts as inside, so
        that NaN propagates through the conversions rather than being passed
        through as if it were a foreign coordinate.
    """
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    return (
        (x < CHINA_LON_RANGE[0])
        | (x > CHINA_LON_RANGE[1])
        | (y < CHINA_LAT_RANGE[0])
        | (y > CHINA_LAT_RANGE[1])
    )


def _gcj_delta(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 shift (dlon, dlat) in degrees at WGS84 ``lon, lat`` (no box check).

    With ``x = lon - 105``, ``y = lat - 35``::

        T_lat = -100 + 2x + 3y + 0.2y² + 0.1xy + 0.2√|x|
                + ⅔(20 sin 6πx + 20 sin 2πx) + ⅔(20 sin πy + 40 sin πy/3)
                + ⅔(160 sin πy/12 + 320 sin πy/30)
        T_lon = 300 + x + 2y + 0.1x² + 0.1xy + 0.1√|x|
                + ⅔(20 sin 6πx + 20 sin 2πx) + ⅔(20 sin πx + 40 sin πx/3)
                + ⅔(150 sin πx/12 + 300 sin πx/30)

    and with ``m = 1 - ee sin²(lat)`` on the Krassowsky ellipsoid (``a``, ``ee``)::

        dlat = 180 T_lat / (π a (1 - ee) / m^1.5)
        dlon = 180 T_lon / (π a cos(lat) / √m)
    """
    x = lon - 105.0
    y = lat - 35.0
    xp = x * np.pi
    yp = y * np.pi
    common = (20.0 * np.sin(6.0 * xp) + 20.0 * np.sin(2.0 * xp)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    t_lat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * sqrt_abs_x
        + common
        + (20.0 * np.sin(yp) + 40.0 * np.sin(yp / 3.0)) * 2.0 / 3.0
        + (160.0 * np.sin(yp / 12.0) + 320.0 * np.sin(yp / 30.0)) * 2.0 / 3.0
    )
    t_lon = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * sqrt_abs_x
        + common
        + (20.0 * np.sin(xp) + 40.0 * np.sin(xp / 3.0)) * 2.0 / 3.0
        + (150.0 * np.sin(xp / 12.0) + 300.0 * np.sin(xp / 30.0)) * 2.0 / 3.0
    )
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - GCJ_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (t_lat * 180.0) / ((GCJ_A * (1.0 - GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (t_lon * 180.0) / (GCJ_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def _wgs_to_gcj(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    dlon, dlat = _gcj_delta(x, y)
    inside = ~out_of_china(x, y)
    return np.where(inside, x + dlon, x), np.where(inside, y + dlat, y)


def _gcj_to_bd(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    z = np.hypot(x, y) + 0.00002 * np.sin(y * BD_X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * BD_X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_to_gcj_one_step(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    xs = x - 0.0065
    ys = y - 0.006
    z = np.hypot(xs, ys) - 0.00002 * np.sin(ys * BD_X_PI)
    theta = np.arctan2(ys, xs) - 0.000003 * np.cos(xs * BD_X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _fixed_point_inverse(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    tx: FloatArray,
    ty: FloatArray,
    x0: FloatArray,
    y0: FloatArray,
    tol: float,
    max_iter: int,
    name: str,
) -> tuple[FloatArray, FloatArray]:
    """Solve ``forward(x, y) == (tx, ty)`` by ``p ← p + (t - forward(p))``.

    The forward maps here are the identity plus a shift whose gradient is of order
    1e-3, so the iteration is a strong contraction (about three correct digits per
    step). ``max_iter`` corrections are applied at most, each one checked by a
    forward evaluation (``max_iter=0`` returns the checked starting point). Only
    points not yet converged are re-evaluated; non-finite targets are returned as
    NaN without iterating.
    """
    if not tol > 0 or max_iter < 0:
        raise ValueError("tol must be > 0 and max_iter >= 0")
    x = np.where(np.isfinite(x0), x0, np.nan)
    y = np.where(np.isfinite(y0), y0, np.nan)
    active = np.flatnonzero(np.isfinite(tx) & np.isfinite(ty))
    xf, yf, txf, tyf = x.reshape(-1), y.reshape(-1), tx.reshape(-1), ty.reshape(-1)
    for step in range(max_iter + 1):
        if active.size == 0:
            break
        fx, fy = forward(xf[active], yf[active])
        rx = txf[active] - fx
        ry = tyf[active] - fy
        done = (np.abs(rx) < tol) & (np.abs(ry) < tol)
        keep = ~done
        active = active[keep]
        if step == max_iter:  # the last correction has been checked: stop
            break
        xf[active] += rx[keep]
        yf[active] += ry[keep]
    if active.size:
        warnings.warn(
            f"{name}: {active.size} point(s) did not converge to {tol:g}° within "
            f"{max_iter} iterations; their result is the last iterate",
            ConvergenceWarning,
            stacklevel=3,
        )
    return xf.reshape(tx.shape), yf.reshape(ty.shape)


# --- public conversions -----------------------------------------------------------
def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """Convert WGS84 lon/lat to GCJ-02 (火星坐标), the public closed-form formula.

    Parameters
    ----------
    lon, lat
        WGS84 degrees; scalars or broadcastable arrays.

    Returns
    -------
    lon, lat
        GCJ-02 degrees, same (broadcast) shape; numpy float64 scalars for scalar
        input. Points outside :func:`out_of_china`'s box are returned unchanged;
        NaN propagates.

    Notes
    -----
    ``gcj = wgs + delta(wgs)`` with ``delta`` the polynomial-plus-sine shift of
    :func:`_gcj_delta` (Krassowsky ``a = 6378245``, ``ee = 0.00669342162296594323``).
    The shift is ~100–700 m in mainland China. PROJ has no such operation.
    """
    x, y, scalar = _as_arrays(lon, lat)
    gx, gy = _wgs_to_gcj(x, y)
    return _out(gx, gy, scalar)


def gcj02_to_wgs84(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    tol: float = INVERSE_TOL_DEG,
    max_iter: int = INVERSE_MAX_ITER,
) -> tuple[Any, Any]:
    """Convert GCJ-02 lon/lat to WGS84 with an accurate iterative inverse.

    Parameters
    ----------
    lon, lat
        GCJ-02 degrees; scalars or broadcastable arrays.
    tol
        Stop when ``wgs84_to_gcj02(result)`` reproduces the input to better than
        ``tol`` degrees in both lon and lat (default 1e-10° ≈ 0.01 mm).
    max_iter
        Iteration cap; if reached, a :class:`ConvergenceWarning` names how many
        points did not converge (it does not happen inside China).

    Returns
    -------
    lon, lat
        WGS84 degrees, same shape. Points outside the China box are returned
        unchanged; NaN propagates.

    Notes
    -----
    The forward map ``F(w) = w + delta(w)`` has no closed-form inverse. The common
    one-step approximation ``w ≈ g - delta(g)`` is ~0.7 m off typically, up to ~5 m
    in China. Here, starting from
    that approximation, ``w ← w + (g - F(w))`` is iterated; since the gradient of
    ``delta`` is ~1e-3, each step gains two to three digits and 3–4 steps reach
    ``tol``.
    """
    gx, gy, scalar = _as_arrays(lon, lat)
    inside = ~out_of_china(gx, gy)
    dlon, dlat = _gcj_delta(gx, gy)
    x0 = np.where(inside, gx - dlon, gx)
    y0 = np.where(inside, gy - dlat, gy)
    wx, wy = _fixed_point_inverse(
        _wgs_to_gcj, gx, gy, x0, y0, tol, max_iter, "gcj02_to_wgs84"
    )
    # outside the box the forward map is the identity: return the input as is
    wx = np.where(inside, wx, gx)
    wy = np.where(inside, wy, gy)
    return _out(wx, wy, scalar)


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """Convert GCJ-02 lon/lat to BD-09 (百度坐标), Baidu's public formula.

    Parameters
    ----------
    lon, lat
        GCJ-02 degrees; scalars or broadcastable arrays.

    Returns
    -------
    lon, lat
        BD-09 degrees, same shape; NaN propagates. Applied everywhere (no box).

    Notes
    -----
    With ``x_pi = π·3000/180``::

        z = √(x² + y²) + 2e-5 sin(y·x_pi)
        θ = atan2(y, x) + 3e-6 cos(x·x_pi)
        bd = (z cos θ + 0.0065, z sin θ + 0.006)
    """
    x, y, scalar = _as_arrays(lon, lat)
    bx, by = _gcj_to_bd(x, y)
    return _out(bx, by, scalar)


def bd09_to_gcj02(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    tol: float = INVERSE_TOL_DEG,
    max_iter: int = INVERSE_MAX_ITER,
) -> tuple[Any, Any]:
    """Convert BD-09 lon/lat to GCJ-02 with an accurate iterative inverse.

    Parameters
    ----------
    lon, lat
        BD-09 degrees; scalars or broadcastable arrays.
    tol, max_iter
        As in :func:`gcj02_to_wgs84`: ``gcj02_to_bd09(result)`` reproduces the
        input to better than ``tol`` degrees.

    Returns
    -------
    lon, lat
        GCJ-02 degrees, same shape; NaN propagates.

    Notes
    -----
    Baidu's published reverse formula (subtract the offsets, subtract the
    perturbations evaluated at the shifted point) is only approximate (up to
    ~0.2 m off);
    it is used as the starting point of the fixed-point iteration
    ``g ← g + (b - BD(g))``.
    """
    bx, by, scalar = _as_arrays(lon, lat)
    x0, y0 = _bd_to_gcj_one_step(bx, by)
    gx, gy = _fixed_point_inverse(_gcj_to_bd, bx, by, x0, y0, tol, max_iter, "bd09_to_gcj02")
    return _out(gx, gy, scalar)


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[Any, Any]:
    """Convert WGS84 lon/lat to BD-09: :func:`wgs84_to_gcj02` then :func:`gcj02_to_bd09`.

    Parameters
    ----------
    lon, lat
        WGS84 degrees; scalars or broadcastable arrays.

    Returns
    -------
    lon, lat
        BD-09 degrees, same shape. Outside the China box only the BD-09 step
        applies (the GCJ-02 step is the identity there).
    """
    x, y, scalar = _as_arrays(lon, lat)
    gx, gy = _wgs_to_gcj(x, y)
    bx, by = _gcj_to_bd(gx, gy)
    return _out(bx, by, scalar)


def bd09_to_wgs84(
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    tol: float = INVERSE_TOL_DEG,
    max_iter: int = INVERSE_MAX_ITER,
) -> tuple[Any, Any]:
    """Convert BD-09 lon/lat to WGS84 (both iterative inverses in turn).

    Parameters
    ----------
    lon, lat
        BD-09 degrees; scalars or broadcastable arrays.
    tol, max_iter
        Passed to :func:`bd09_to_gcj02` and :func:`gcj02_to_wgs84`.

    Returns
    -------
    lon, lat
        WGS84 degrees, same shape; NaN propagates.
    """
    gx, gy = bd09_to_gcj02(lon, lat, tol=tol, max_iter=max_iter)
    return gcj02_to_wgs84(gx, gy, tol=tol, max_iter=max_iter)


# --- conventions ------------------------------------------------------------------
def _normalise_key(text: str) -> str:
    return re.sub(r"[\s\-_]", "", text).lower()


def parse_convention(value: ConventionLike) -> Convention | pyproj.CRS:
    """Parse a ``coords:`` value into a canonical convention name or a CRS.

    Parameters
    ----------
    value
        One of the spellings in :data:`CONVENTION_ALIASES` (case, spaces, ``-``
        and ``_`` ignored: ``'GCJ-02'``, ``'火星坐标'``, ``'BD-09'``, ``'百度坐标'``,
        ``'EPSG:4326'``, ``'EPSG:4490'``, …), an EPSG code as ``int``, a
        :class:`pyproj.CRS`, or any other string pyproj understands
        (``'EPSG:4544'``, a WKT, a PROJ string).

    Returns
    -------
    str or pyproj.CRS
        ``'wgs84'``, ``'cgcs2000'``, ``'gcj02'`` or ``'bd09'`` for the lon/lat
        conventions (EPSG:4326 and EPSG:4490 map to the first two, whatever their
        axis order); otherwise the :class:`pyproj.CRS`.

    Raises
    ------
    gis._errors.CoordinateError
        For an empty or unknown value, listing the accepted values. BD-09
        Mercator (``bd09mc``) is rejected explicitly.
    """
    if isinstance(value, pyproj.CRS):
        crs = value
    elif isinstance(value, bool) or value is None:
        raise CoordinateError(f"no coordinate convention given ({value!r}); {_ACCEPTED_TEXT}")
    elif isinstance(value, (int, np.integer)):
        try:
            crs = pyproj.CRS.from_epsg(int(value))
        except CRSError as exc:
            raise CoordinateError(f"unknown EPSG code {value}; {_ACCEPTED_TEXT}") from exc
    elif isinstance(value, str):
        key = _normalise_key(value)
        if not key:
            raise CoordinateError(f"empty coordinate convention; {_ACCEPTED_TEXT}")
        if key in CONVENTION_ALIASES:
            return CONVENTION_ALIASES[key]
        if key in {"bd09mc", "baidumercator", "百度墨卡托"}:
            raise CoordinateError(
                f"{value!r}: BD-09 Mercator (metres) is not supported; export Baidu "
                f"lon/lat (bd09ll) instead; {_ACCEPTED_TEXT}"
            )
        try:
            if key.isdigit():
                crs = pyproj.CRS.from_epsg(int(key))
            else:
                crs = pyproj.CRS.from_user_input(value)
        except CRSError as exc:
            raise CoordinateError(
                f"unknown coordinate convention or CRS {value!r}; {_ACCEPTED_TEXT}"
            ) from exc
    else:
        raise CoordinateError(
            f"coordinate convention must be text, an EPSG code or a pyproj.CRS, "
            f"not {type(value).__name__}; {_ACCEPTED_TEXT}"
        )
    if crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "wgs84"
    if crs.equals(pyproj.CRS.from_epsg(4490), ignore_axis_order=True):
        return "cgcs2000"
    return crs


def _transformer_to_wgs84(crs: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(crs, 4326, always_xy=True)


def _transformer_from_wgs84(crs: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(4326, crs, always_xy=True)


def _apply_transformer(
    t: pyproj.Transformer, x: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray]:
    ox, oy = t.transform(x, y)
    ox = np.asarray(ox, dtype=np.float64)
    oy = np.asarray(oy, dtype=np.float64)
    bad = ~(np.isfinite(ox) & np.isfinite(oy))  # PROJ reports failures as inf
    return np.where(bad, np.nan, ox), np.where(bad, np.nan, oy)


def to_wgs84_lonlat(
    lon: ArrayLike, lat: ArrayLike, convention: ConventionLike
) -> tuple[Any, Any]:
    """Convert table coordinates in ``convention`` to WGS84 lon/lat.

    Parameters
    ----------
    lon, lat
        Coordinate columns (degrees for lon/lat conventions; easting/northing in
        the CRS's units for a projected CRS).
    convention
        Anything :func:`parse_convention` accepts.

    Returns
    -------
    lon, lat
        WGS84 degrees, same shape. ``gcj02``/``bd09`` go through the iterative
        inverses; ``wgs84`` and ``cgcs2000`` pass through unchanged (CGCS2000 is
        within ~1 m of WGS84, negligible at district scale); any other CRS is
        transformed with ``pyproj.Transformer(..., always_xy=True)``. NaN
        propagates, and points PROJ cannot transform come back as NaN. Values are
        not range-checked here: validating rows is the loader's job.
    """
    conv = parse_convention(convention)
    x, y, scalar = _as_arrays(lon, lat)
    if conv == "gcj02":
        ox, oy = gcj02_to_wgs84(x, y)
    elif conv == "bd09":
        ox, oy = bd09_to_wgs84(x, y)
    elif isinstance(conv, pyproj.CRS):
        ox, oy = _apply_transformer(_transformer_to_wgs84(conv), x, y)
    else:
        ox, oy = x, y
    return _out(np.asarray(ox), np.asarray(oy), scalar)


def from_wgs84_lonlat(
    lon: ArrayLike, lat: ArrayLike, convention: ConventionLike
) -> tuple[Any, Any]:
    """Convert WGS84 lon/lat into ``convention`` (the inverse of :func:`to_wgs84_lonlat`).

    Used to write files in the convention a district's other systems expect
    (e.g. a GCJ-02 ledger for Amap).

    Parameters
    ----------
    lon, lat
        WGS84 degrees.
    convention
        Anything :func:`parse_convention` accepts.

    Returns
    -------
    lon, lat (or x, y for a projected CRS)
        Same shape; NaN propagates.
    """
    conv = parse_convention(convention)
    x, y, scalar = _as_arrays(lon, lat)
    if conv == "gcj02":
        ox, oy = _wgs_to_gcj(x, y)
    elif conv == "bd09":
        ox, oy = _gcj_to_bd(*_wgs_to_gcj(x, y))
    elif isinstance(conv, pyproj.CRS):
        ox, oy = _apply_transformer(_transformer_from_wgs84(conv), x, y)
    else:
        ox, oy = x, y
    return _out(ox, oy, scalar)


def _is_lonlat_crs(crs: pyproj.CRS) -> bool:
    """Geographic CRS on a WGS84/GRS80-sized ellipsoid (WGS84, CGCS2000, CRS84, ...)."""
    return bool(crs.is_geographic) and abs(crs.ellipsoid.semi_major_metre - 6378137.0) < 1.0


def _shift_coords(
    func: Callable[..., tuple[Any, Any]],
) -> Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    def apply(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.array(coords, dtype=np.float64)
        out[:, 0], out[:, 1] = func(coords[:, 0], coords[:, 1])
        return out

    return apply


def convert_geoseries_convention(gs: gpd.GeoSeries, convention: ConventionLike) -> gpd.GeoSeries:
    """Convert every vertex of a vector layer from ``convention`` to WGS84 (EPSG:4326).

    Meant for layers whose file claims EPSG:4326 (or has no CRS) but whose values
    are really GCJ-02 or BD-09, e.g. a shapefile digitised on an Amap basemap.

    Parameters
    ----------
    gs
        Geometries of any type (points, lines, polygons, multi-parts,
        collections; empty and missing geometries are kept as they are).
    convention
        What the coordinate *values* are (anything :func:`parse_convention`
        accepts). It is authoritative: a projected ``convention`` replaces the
        file's CRS (how ``project.yaml`` corrects a wrong ``.prj``).

    Returns
    -------
    geopandas.GeoSeries
        Same index, name and vertex counts, CRS EPSG:4326. GCJ-02/BD-09 are
        converted with the iterative inverses through one vectorised
        :func:`shapely.transform` call (all vertices as one ``(N, 2)`` array; Z,
        where present, is kept).

    Raises
    ------
    gis._errors.CoordinateError
        When a lon/lat convention is claimed for a layer whose CRS is projected or
        on another ellipsoid, or whose values exceed ±180°/±90°.
    """
    conv = parse_convention(convention)
    if isinstance(conv, pyproj.CRS):
        return gs.set_crs(conv, allow_override=True).to_crs(4326)
    if gs.crs is not None and not _is_lonlat_crs(gs.crs):
        raise CoordinateError(
            f"coords={conv!r} says the values are lon/lat degrees, but the layer's CRS "
            f"is {describe_crs(gs.crs)}; give coords as that CRS (or fix the file)"
        )
    values = np.asarray(gs.array, dtype=object)
    if len(gs) and not bool(np.all(shapely.is_missing(values) | shapely.is_empty(values))):
        minx, miny, maxx, maxy = gs.total_bounds
        if not (-180.0 <= minx and maxx <= 180.0 and -90.0 <= miny and maxy <= 90.0):
            raise CoordinateError(
                f"coords={conv!r} says lon/lat degrees, but the layer's bounds "
                f"({minx:.6g}, {miny:.6g}, {maxx:.6g}, {maxy:.6g}) are not; the values "
                "look projected — give coords as the file's projected CRS (e.g. EPSG:4544)"
            )
    if conv in ("gcj02", "bd09"):
        func = gcj02_to_wgs84 if conv == "gcj02" else bd09_to_wgs84
        out = values.copy()
        has_z = shapely.has_z(values)
        for mask, include_z in ((~has_z, False), (has_z, True)):
            if mask.any():
                out[mask] = shapely.transform(
                    values[mask], _shift_coords(func), include_z=include_z
                )
        return gpd.GeoSeries(out, index=gs.index, name=gs.name, crs="EPSG:4326")
    return gpd.GeoSeries(values.copy(), index=gs.index, name=gs.name, crs="EPSG:4326")


# --- metric CRS -------------------------------------------------------------------
def _extent(
    extent: ExtentLike,
    lon_max: float | None,
    lat: float | None,
) -> tuple[float, float, float | None]:
    """Return (lon_min, lon_max, lat_centre or None) from the accepted inputs."""
    if isinstance(extent, (gpd.GeoSeries, gpd.GeoDataFrame)):
        data = extent
        if data.crs is not None and not _is_lonlat_crs(data.crs):
            data = data.to_crs(4326)
        b = data.total_bounds
        return float(b[0]), float(b[2]), float((b[1] + b[3]) / 2.0)
    if isinstance(extent, BaseGeometry):
        b = extent.bounds
        return float(b[0]), float(b[2]), float((b[1] + b[3]) / 2.0)
    if np.ndim(extent) == 1:
        vals = [float(v) for v in np.asarray(extent, dtype=np.float64)]
        if len(vals) == 4:
            return vals[0], vals[2], (vals[1] + vals[3]) / 2.0
        if len(vals) == 2:
            return vals[0], vals[1], lat
        raise CoordinateError(
            "an extent must be (lon_min, lon_max) or (minx, miny, maxx, maxy), "
            f"got {len(vals)} values"
        )
    lo = float(extent)  # type: ignore[arg-type]
    return lo, float(lo if lon_max is None else lon_max), lat


def choose_metric_crs(
    extent: ExtentLike,
    lon_max: float | None = None,
    *,
    lat: float | None = None,
) -> pyproj.CRS:
    """Choose the district's metric CRS: the CGCS2000 3° Gauss-Krüger zone of its centre.

    Parameters
    ----------
    extent
        ``lon_min`` (then give ``lon_max``), a ``(lon_min, lon_max)`` pair, a
        ``(minx, miny, maxx, maxy)`` lon/lat bounds tuple, a shapely geometry in
        lon/lat, or a GeoSeries/GeoDataFrame (reprojected to lon/lat if needed).
    lon_max
        Eastern longitude when ``extent`` is ``lon_min``.
    lat
        Central latitude when only longitudes are given (decides the UTM
        hemisphere; assumed north when unknown).

    Returns
    -------
    pyproj.CRS
        With ``lon_c`` the centre longitude, ``CM = 3·round(lon_c / 3)``:
        ``EPSG:(4534 + (CM - 75) / 3)`` ("CGCS2000 / 3-degree Gauss-Kruger CM …E",
        false easting 500 km, no zone prefix) when ``75 <= CM <= 135`` and the
        centre latitude (if known) is inside the China box — EPSG:4544 (CM 105°E)
        for Shapingba, EPSG:4545 (CM 108°E) for districts around 106.5–109.5°E.
        Otherwise the WGS84 UTM zone of the centre (EPSG:326zz north / 327zz
        south, ``zz = floor((lon_c + 180) / 6) + 1``).

    Raises
    ------
    gis._errors.CoordinateError
        For NaN, reversed or out-of-range longitudes (metres passed as degrees).

    Notes
    -----
    The centre's zone is used even when a district spans more than ±1.5° from the
    CM (no district does, but a whole municipality might): the Gauss-Krüger scale
    error grows as ``k - 1 ≈ (Δλ cos φ)² / 2`` (Δλ in radians), about 0.03 % at
    1.5° and 0.1 % at 3° from the CM at 30°N — negligible against the
    hundreds-of-metres service radii analysed here, and one CRS per district
    keeps every layer comparable.
    """
    lo, hi, lat_c = _extent(extent, lon_max, lat)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise CoordinateError(f"cannot choose a metric CRS from a non-finite extent ({lo}, {hi})")
    if lo > hi:
        raise CoordinateError(f"longitude range is reversed: lon_min {lo} > lon_max {hi}")
    if lo < -180.0 or hi > 180.0:
        raise CoordinateError(
            f"longitudes ({lo:.6g}, {hi:.6g}) are outside ±180°; are these projected metres?"
        )
    if lat_c is not None and not (math.isfinite(lat_c) and -90.0 <= lat_c <= 90.0):
        raise CoordinateError(f"central latitude {lat_c} is not a latitude")
    lon_c = (lo + hi) / 2.0
    cm = 3 * math.floor(lon_c / 3.0 + 0.5)
    lat_in_china = lat_c is None or CHINA_LAT_RANGE[0] <= lat_c <= CHINA_LAT_RANGE[1]
    if 75 <= cm <= 135 and lat_in_china:
        return pyproj.CRS.from_epsg(4534 + (cm - 75) // 3)
    zone = int(math.floor((lon_c + 180.0) / 6.0)) % 60 + 1
    south = lat_c is not None and lat_c < 0
    return pyproj.CRS.from_epsg((32700 if south else 32600) + zone)


def describe_crs(crs: ConventionLike) -> str:
    """One line describing a convention or CRS, for reports and provenance.

    Parameters
    ----------
    crs
        Anything :func:`parse_convention` accepts.

    Returns
    -------
    str
        E.g. ``'EPSG:4544 — CGCS2000 / 3-degree Gauss-Kruger CM 105E (projected, metre)'``
        or ``'gcj02 — GCJ-02 lon/lat (火星坐标): …'``.
    """
    conv = parse_convention(crs)
    if isinstance(conv, str):
        return f"{conv} — {COORDINATE_CONVENTIONS[conv]}"
    auth = conv.to_authority(min_confidence=90)
    ident = f"{auth[0]}:{auth[1]}" if auth else "custom CRS"
    if conv.is_projected:
        kind = "projected"
    elif conv.is_geographic:
        kind = "geographic"
    else:
        kind = conv.type_name
    unit = conv.axis_info[0].unit_name if conv.axis_info else "unknown unit"
    return f"{ident} — {conv.name} ({kind}, {unit})"
