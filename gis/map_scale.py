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
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pandas as pd

from gis.map_render import MapLayer, MapOptions

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
        In ``full``'s tier order. A big tier's layer is ``grid(full(its tier and points))``
        — the same title, cells, counts and colours as gridding its complete layer, since
        the grid reads only the points and the title only their number; the other tiers'
        layers are ``full``'s own (the verdict legend rides on the last of them).
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
    bare = s.loc[is_big, ["tier", s.geometry.name]]  # no popup text, no verdicts: the grid shows neither
    big = [grid(lay, opt.max_vector_polygons) for lay in full(SimpleNamespace(sites=bare), opt, None)]
    by_key = {lay.key: lay for lay in [*small, *big]}
    one_each = s.loc[~tier.duplicated().to_numpy(dtype=bool), ["tier", s.geometry.name]]
    return [by_key[lay.key] for lay in full(SimpleNamespace(sites=one_each), opt, None)]  # full's tier order
