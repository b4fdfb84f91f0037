"""Checks run before any analysis (运行前检查) and honest rule skips.

``gis validate`` and the first stage of ``gis run`` call :func:`check_inputs` so
that what ``gis run`` would otherwise fail on minutes later — an empty or
truncated road file, a raster without georeferencing — fails at once with one
line naming the file, and nothing is written to ``--out``.

:func:`landuse_skip_reason` and :func:`landuse_rule_skips` implement the honest
skip: when the land-use layer carries no class at all (an all-nodata raster, a
vector layer with no features), the rules that depend on it cannot be
evaluated; they are listed under ``compliance_skipped_rules`` with the reason
instead of filing a 地类不明 problem for every site.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gis._errors import InputError

if TYPE_CHECKING:  # types only
    import geopandas as gpd

    from gis.catalog import Project
    from gis.io import RasterLayer

#: Receptors whose geometry comes from land-use classes only (water_source also comes from zones).
LANDUSE_RECEPTORS: frozenset[str] = frozenset({"school", "hospital", "residential"})


def check_road_file(path: Path, fmt: str) -> None:
    """Refuse an empty, truncated or unparseable road file (one line naming it).

    OSM XML / GraphML are parsed in full with :func:`xml.etree.ElementTree.iterparse`
    (streaming, constant memory) and must hold at least one ``way`` / ``edge``;
    vector road files must open with pyogrio and hold at least one feature.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(path, "the road file is empty")
    if fmt in ("osm", "graphml"):
        import xml.etree.ElementTree as ET

        wanted = "way" if fmt == "osm" else "edge"
        found = False
        try:
            for _event, elem in ET.iterparse(path, events=("end",)):
                found = found or elem.tag.rsplit("}", 1)[-1] == wanted
                elem.clear()
        except ET.ParseError as exc:
            raise InputError(path, f"not a complete {fmt.upper()} file (truncated or damaged: {exc})") from None
        if not found:
            raise InputError(path, f"the road file holds no {wanted}")
        return
    import pyogrio

    try:
        info = pyogrio.read_info(path)
    except Exception as exc:  # pyogrio raises DataSourceError with GDAL's text
        raise InputError(path, f"not a readable road file ({type(exc).__name__})") from None
    if not info.get("features"):
        raise InputError(path, "the road file holds no features")


#: Key endings that name a quantity (metres, km, km/h, seconds, days, months, m², shares): the value must be a number.
NUMERIC_KEY = re.compile(r"(_m|_km|_kmh|_s|_min|_days|_months|_m2|_ha|_pct|_share|_ratio)$")


def check_values(raw: Any, path: Path, prefix: str = "") -> None:
    """Refuse non-numbers where ``project.yaml`` names a quantity (e.g. ``distance_m: "abc"``).

    Checked: every key ending in a unit suffix (:data:`NUMERIC_KEY`) and every
    ``targets[i].target``; ``null`` is allowed (= use the default). The typed
    parameter schema checks more; this catches, at ``gis validate`` time, what
    would otherwise fail minutes into ``gis run``.

    Raises
    ------
    CatalogError
        Naming the file and the dotted key.
    """
    from gis._errors import CatalogError

    if isinstance(raw, dict):
        for k, v in raw.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if key == "layers":
                continue
            numeric = isinstance(k, str) and (NUMERIC_KEY.search(k) or (k == "target" and prefix.startswith("targets[")))
            if numeric and v is not None and not isinstance(v, (dict, list)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    raise CatalogError(path, key, f"must be a number, got {str(v)[:40]!r}")
            check_values(v, path, key)
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            check_values(v, path, f"{prefix}[{i}]")


def check_inputs(project: Project) -> None:
    """Every pre-analysis check of a loaded :class:`gis.catalog.Project` (raises on the first)."""
    check_values(project.raw, project.path)
    for spec in project.layers.get("roads") or []:
        check_road_file(spec.path, spec.format)


def landuse_skip_reason(
    landuse: gpd.GeoDataFrame | None, landuse_raster: RasterLayer | str | Path | None
) -> str | None:
    """Why the land-use rules cannot be evaluated, or ``None`` when they can.

    A raster counts as empty when every cell is nodata (or 0, the GB/T 21010
    "no class" value); a vector layer when it has no feature.
    """
    if landuse_raster is not None:
        if isinstance(landuse_raster, (str, Path)):  # a GeoTIFF path (as check_sites also accepts)
            import rasterio

            with rasterio.open(landuse_raster) as src:
                arr, nodata = src.read(1), src.nodata
        else:
            arr = np.asarray(landuse_raster.read())
            nodata = getattr(landuse_raster, "nodata", None)
        valid = arr != 0
        if nodata is not None:
            valid &= ~(np.isnan(arr) if np.isnan(nodata) else arr == nodata)
        if not valid.any():
            name = Path(getattr(landuse_raster, "path", "raster")).name
            return f"land-use raster {name} holds no class (every cell is nodata)"
        return None
    if landuse is not None and len(landuse) == 0:
        return "land-use layer holds no feature"
    return None


def landuse_rule_skips(rules: Iterable[Any], reason: str | None) -> dict[str, str]:
    """``{rule id: reason}`` of the rules that depend on land use, when ``reason`` is set."""
    if not reason:
        return {}
    out = {}
    for rule in rules:
        ctype = rule.condition_type
        receptor = rule.condition.get("receptor") if isinstance(rule.condition, dict) else None
        if ctype in ("landuse_not_allowed", "landuse_unknown") or (
            ctype == "near_receptor" and receptor in LANDUSE_RECEPTORS
        ):
            out[rule.id] = reason
    return out
