"""Site layers of the map at any ledger size: big tiers go straight to a count grid (大台账地图).

:func:`gis.maps.build_layers` draws a point layer of more than ``max_page_points``
features (``layers/map.yaml``) as a grid of counts (:func:`gis.maps.aggregate_points`).
Building that layer first — every site's popup text escaped and capped, the verdicts
joined, a display frame in WGS84 — cost a million-row ledger tens of seconds and
gigabytes for rows the page never shows. :func:`site_layers` gives the same layers, but
a tier over the limit is built from its tier and coordinates alone before it is gridded;
tiers under the limit are built from every column as before, so their markers, popups
and the verdict legend are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
import re
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis.map_render import WEB_MERCATOR, WGS84, MapLayer, MapOptions

if TYPE_CHECKING:
    from gis.district import District

#: ``full(district, options, verdicts)``: one display layer per tier (:func:`gis.maps._site_layers`).
LayerBuilder = Callable[..., list[MapLayer]]
#: ``grid(layer, cells)``: a point layer as a grid of counts (:func:`gis.maps.aggregate_points`).
Gridder = Callable[[MapLayer, int], MapLayer]


def site_layers(
    district: District, opt: MapOptions, verdicts: pd.DataFrame | None, *, full: LayerBuilder, grid: Gridder,
    limit: int,
) -> list[MapLayer]:
    """One layer per tier, as ``full`` makes them, with every tier over ``limit`` as ``grid`` makes it.

    Parameters
    ----------
    district
        The loaded district (its ``sites``; only they are read).
    opt
        Display options; ``opt.max_vector_polygons`` bounds a grid's cells.
    verdicts
        Worst verdict and problems per ``site_id`` (:func:`gis.maps.site_verdicts`), or None.
    full, grid
        The map's layer builder and gridder (see :data:`LayerBuilder`, :data:`Gridder`).
    limit
        ``max_page_points``: a tier with :math:`n > \\text{limit}` sites becomes a grid.

    Returns
    -------
    list of MapLayer
        In ``full``'s tier order. A big tier's layer is ``full``'s layer of one of its sites
        with all its points (as a display frame holds them) and their number in the title,
        gridded — the same title, cells, counts and colours as gridding its complete layer,
        since the grid reads only the points; the other tiers' layers are ``full``'s own
        (the verdict legend rides on the last of them).
    """
    s = getattr(district, "sites", None)
    if s is None or len(s) == 0:
        return []
    tier = s["tier"].astype("string")
    counts = tier.value_counts()
    is_big = tier.isin([t for t, n in counts.items() if int(n) > limit]).fillna(False).to_numpy(dtype=bool)
    if not is_big.any():
        return full(district, opt, verdicts)
    small = full(SimpleNamespace(sites=s[~is_big]), opt, verdicts) if (~is_big).any() else []
    one_each = s.loc[~tier.duplicated().to_numpy(dtype=bool), ["tier", s.geometry.name]]
    layers = []
    for lay in full(SimpleNamespace(sites=one_each), opt, None):  # one site per tier: full's tier order and styles
        t = lay.key.removeprefix("sites_")
        if not int(counts.get(t, 0)) > limit:
            layers += [x for x in small if x.key == lay.key]
            continue
        pts = _display_points(s.geometry[(tier == t).fillna(False).to_numpy(dtype=bool)])
        title = re.sub(r"\(\d+\)$", f"({len(pts)})", lay.title)  # the count of the full layer's title
        layers.append(grid(replace(lay, title=title, gdf=gpd.GeoDataFrame(geometry=pts)), opt.max_vector_polygons))
    return layers


def _display_points(geom: gpd.GeoSeries) -> gpd.GeoSeries:
    """Points as a display frame holds them (:func:`gis.maps._display_frame`): WGS84, 6 decimals, no empties."""
    if geom.crs is None:
        geom = geom.set_crs(WGS84)
    g = geom.to_crs(WGS84)
    g = gpd.GeoSeries(shapely.transform(g.values, lambda c: np.round(c, 6)), index=g.index, crs=WGS84)
    return g[~g.is_empty & g.notna()]


#: Polygons converted and burnt at a time by :func:`burn` (bounds the Python objects alive at once).
BURN_BATCH = 20_000
#: From this many geometries :func:`burn_mercator` burns the second half in a forked child
#: (:class:`gis.background.ForkedGrid`) while it burns the first.
BURN_FORK_FROM = 200_000


def mercator_bounds(geoms: gpd.GeoSeries) -> tuple[float, float, float, float]:
    """Web Mercator bounds ``(minx, miny, maxx, maxy)`` of a layer, without re-projecting its geometries.

    The layer's own bounds are carried layer CRS → WGS84 → Web Mercator by
    :meth:`pyproj.Transformer.transform_bounds`, which densifies the box's edges (21
    points each) and takes the extremes: the box of the re-projected box, which holds
    every re-projected vertex (over a district, a few metres larger than the tight
    bounds). A million service-area polygons re-projected whole only to read their
    bounds cost two more copies of their coordinates (gigabytes; see :func:`burn_mercator`).
    """
    from pyproj import Transformer

    crs = geoms.crs if geoms.crs is not None else WGS84
    box = Transformer.from_crs(crs, WGS84, always_xy=True).transform_bounds(*geoms.total_bounds, densify_pts=21)
    minx, miny, maxx, maxy = Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True).transform_bounds(*box)
    return float(minx), float(miny), float(maxx), float(maxy)


def burn_mercator(geoms: gpd.GeoSeries, values: np.ndarray, shape: tuple[int, int], transform: Any) -> np.ndarray:
    """:func:`burn` of a layer in any CRS into a Web Mercator grid, :data:`BURN_BATCH` geometries at a time.

    Each batch is re-projected (layer CRS → WGS84 → Web Mercator, as
    :func:`gis.maps._polygon_image` did for the whole layer) and burnt into the same
    grid, then dropped: the re-projected copies alive at once are one batch's, not
    the layer's (595,550 service areas: two whole copies were most of the coverage
    step's peak memory). The pixels are those of burning the whole re-projected layer:
    the batches are burnt in order, a later geometry overwriting an earlier one.
    From :data:`BURN_FORK_FROM` geometries (where :func:`gis.background.can_fork`), the
    second half is burnt into a grid of its own in a forked child while this process
    burns the first half, then laid over it: every value burnt is non-zero (else the
    layer is burnt here alone), so a pixel the second half touched takes its value, as
    burning in order gives.

    Parameters
    ----------
    geoms
        Geometries with their CRS (none: WGS84).
    values, shape, transform
        As :func:`burn`; ``transform`` maps Web Mercator metres to pixels.
    """
    from pyproj import Transformer

    to_wgs = Transformer.from_crs(geoms.crs if geoms.crs is not None else WGS84, WGS84, always_xy=True)
    to_merc = Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_merc.transform(*to_wgs.transform(xy[:, 0], xy[:, 1])))

    values = np.asarray(values)
    arr = np.asarray(geoms.values, dtype=object)

    def burn_rows(start: int, stop: int, out: np.ndarray) -> None:
        for first in range(start, stop, BURN_BATCH):
            part = shapely.transform(arr[first:min(first + BURN_BATCH, stop)], project)
            burn(part, values[first:min(first + BURN_BATCH, stop)], shape, transform, out=out)

    from gis.background import ForkedGrid, can_fork

    out = np.zeros(shape, dtype="int32")
    half = len(arr) // 2 if len(arr) >= BURN_FORK_FROM and can_fork() and bool(np.all(values != 0)) else len(arr)
    later = ForkedGrid(lambda grid: burn_rows(half, len(arr), grid), shape) if half < len(arr) else None
    burn_rows(0, half, out)
    if later is not None:  # the second half, burnt in a child: its pixels are burnt after (over) the first's
        grid = later.result()
        if grid is None:  # the child failed: burnt here
            grid = np.zeros(shape, dtype="int32")
            burn_rows(half, len(arr), grid)
        np.copyto(out, grid, where=grid != 0)
    return out


def burn(geoms: np.ndarray, values: np.ndarray, shape: tuple[int, int], transform: Any, *,
         out: np.ndarray | None = None) -> np.ndarray:
    """``rasterio.features.rasterize`` of polygons with their values — the same pixels, fed faster.

    rasterio reads each shape's ``__geo_interface__``, which walks a polygon's
    coordinates in Python (most of the time of a 60,000-polygon service-area layer).
    Here the coordinates of every polygon leave shapely in one array
    (:func:`shapely.to_ragged_array`), become one Python list of ``(x, y)`` tuples, and each
    ring is a slice of it, :data:`BURN_BATCH` polygons at a time, each batch burnt into the
    same grid (so a later polygon still overwrites an earlier one); missing and empty
    geometries are dropped (rasterio skipped them with a warning each). Geometries other
    than polygons go to rasterio as they are.

    Parameters
    ----------
    geoms
        Shapely geometries in the raster's CRS.
    values
        The value burnt for each geometry (a later one overwrites an earlier one).
    shape, transform
        ``(height, width)`` and the affine transform of the output grid.
    out
        An ``int32`` grid of ``shape`` to burn into (None: a new one of zeros).

    Returns
    -------
    numpy.ndarray
        ``int32`` grid, 0 where no geometry lies (pixel centres inside, as rasterio).
    """
    from rasterio import features

    geoms = np.asarray(geoms, dtype=object)
    values = np.asarray(values)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms, values = geoms[keep], values[keep]
    out = np.zeros(shape, dtype="int32") if out is None else out
    for start in range(0, len(geoms), BURN_BATCH):  # in batches: a million polygons' coordinates as Python
        part = slice(start, start + BURN_BATCH)     # objects at once took gigabytes
        features.rasterize(zip(_geojson_like(geoms[part]), values[part].tolist()), out=out, transform=transform)
    return out


def _geojson_like(geoms: np.ndarray) -> list[Any]:
    """GeoJSON-like dicts of polygons and multipolygons (other geometries as they are), in input order."""
    out: list[Any] = list(geoms)
    kind = shapely.get_type_id(geoms)
    for type_id, name in ((3, "Polygon"), (6, "MultiPolygon")):
        idx = np.flatnonzero(kind == type_id)
        if not len(idx):
            continue
        _, coords, offsets = shapely.to_ragged_array(geoms[idx])
        flat = list(zip(coords[:, 0].tolist(), coords[:, 1].tolist()))  # (x, y) tuples: 4× faster than tolist()
        parts = [flat[a:b] for a, b in _pairs(offsets[0])]  # rings
        for level in offsets[1:]:  # rings → polygons (→ multipolygons)
            parts = [parts[a:b] for a, b in _pairs(level)]
        for i, coordinates in zip(idx.tolist(), parts):
            out[i] = {"type": name, "coordinates": coordinates}
    return out


def _pairs(offsets: np.ndarray) -> zip:
    """``(start, end)`` of each run of an offsets array."""
    o = offsets.tolist()
    return zip(o[:-1], o[1:])
