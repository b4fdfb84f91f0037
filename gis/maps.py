"""Interactive and static maps of a district and its analyses (专题地图).

One layer model (:mod:`gis.map_render`), two renderers (:mod:`gis.map_folium` and
:mod:`gis.map_render`, re-exported here; the folium ones imported when first used, so
building the layers for the print sheets does not import folium). :func:`build_layers` turns a
:class:`~gis.district.District` and whatever analysis results exist (compliance,
coverage, siting, hotspots) into a list of :class:`MapLayer` — display-ready
GeoDataFrames in WGS84 with every user string HTML-escaped and length-capped, or RGBA
images for rasters. :func:`render_folium` draws them as a self-contained Leaflet page
(used by ``gis run`` for ``OUT/map.html`` and by the Streamlit app), and
:func:`render_static` draws them with matplotlib (the PNG fallback when no headless
Chromium is available).

Coordinates
-----------
Everything is shown in **WGS84 (EPSG:4326)**. Chinese commercial basemaps (Amap 高德 /
Tencent 腾讯 use GCJ-02, Baidu 百度 uses BD-09) are deliberately shifted by
100–700 m, so our layers would appear offset on them. Use no basemap (the default —
the page works offline), or a WGS84/CGCS2000 basemap such as Tianditu (天地图 ``*_w``
layers, :func:`tianditu_basemap`) or OpenStreetMap.

Offline
-------
folium loads Leaflet from a CDN. The toolkit runs without network, so
:func:`localize_assets` replaces those links with ``data:`` URIs of the copies
vendored in ``gis/assets/`` (Leaflet 1.9.3, Leaflet.markercluster 1.5.3); the HTML
written by :func:`save_map_html` loads nothing from the internet unless a tile
basemap is configured.

Safety
------
Ledger fields are typed by clerks and may contain anything. Only whitelisted columns
reach the page, each value passes :func:`escape_text` (``html.escape`` after
cutting to ``max_text_chars``), and layer names, legend labels and attribution are
escaped too, so no markup from user data is ever interpreted.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis import map_scale, settings
from gis.map_render import (
    ASSETS_DIR,
    LEGEND_ONE_COLUMN_MAX,
    LEGEND_STRIP_PX,
    WEB_MERCATOR,
    WGS84,
    Basemap,
    MapLayer,
    MapOptions,
    chromium_path,
    render_static,
    save_map_png,
)
from gis.schema import (
    INCIDENT_KIND_LABEL_ZH,
    SITE_STATUS_LABEL_ZH,
    TIER_LABEL_ZH,
    ZONE_LEVEL_LABEL_ZH,
    IncidentKind,
    Tier,
    ZoneLevel,
    ZoneType,
)

if TYPE_CHECKING:
    import folium

    from gis.district import District

#: Names re-exported from :mod:`gis.map_folium`, imported on first use (:func:`__getattr__`).
_FOLIUM_NAMES = ("Legend", "localize_assets", "render_folium", "save_map_html")


def __getattr__(name: str) -> Any:
    """``gis.maps.render_folium`` and the other folium renderers: :mod:`gis.map_folium`, imported now."""
    if name in _FOLIUM_NAMES:
        from gis import map_folium

        return getattr(map_folium, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ASSETS_DIR",
    "LEGEND_ONE_COLUMN_MAX",
    "LEGEND_STRIP_PX",
    "WEB_MERCATOR",
    "WGS84",
    "Basemap",
    "Legend",
    "chromium_path",
    "MapLayer",
    "MapOptions",
    "StaticLayers",
    "build_layers",
    "build_map",
    "escape_column",
    "escape_text",
    "localize_assets",
    "render_folium",
    "render_static",
    "save_map_html",
    "save_map_png",
    "static_layers",
    "tianditu_basemap",
]


# ---------------------------------------------------------------------------------
# Palettes (constant text only; never user data)
# ---------------------------------------------------------------------------------

#: Marker shape and colour per tier (distinct symbols, colour-blind-safe hues).
TIER_SYMBOL: dict[str, tuple[str, str]] = {
    Tier.SORTING_CENTRE.value: ("square", "#6a3d9a"),
    Tier.TRANSFER_STATION.value: ("triangle", "#1f78b4"),
    Tier.COLLECTION_POINT.value: ("circle", "#33a02c"),
    Tier.DROP_OFF_POINT.value: ("diamond", "#b2df8a"),
    Tier.DISMANTLER.value: ("star", "#ff7f00"),
}
TIER_LABEL_EN: dict[str, str] = {
    Tier.SORTING_CENTRE.value: "Sorting centre",
    Tier.TRANSFER_STATION.value: "Transfer station",
    Tier.COLLECTION_POINT.value: "Collection point",
    Tier.DROP_OFF_POINT.value: "Drop-off point",
    Tier.DISMANTLER.value: "Dismantler",
}
#: 四山 control levels, strictest darkest.
ZONE_LEVEL_COLOR: dict[str, str] = {
    ZoneLevel.NO_BUILD.value: "#8b0000",
    ZoneLevel.KEY_CONTROL.value: "#e34a33",
    ZoneLevel.GENERAL_CONTROL.value: "#fdae6b",
}
ZONE_LEVEL_LABEL_EN: dict[str, str] = {
    ZoneLevel.NO_BUILD.value: "no-build",
    ZoneLevel.KEY_CONTROL.value: "key control",
    ZoneLevel.GENERAL_CONTROL.value: "general control",
}
ZONE_TYPE_STYLE: dict[str, tuple[str, str, str]] = {
    ZoneType.ECOLOGICAL_RED_LINE.value: ("#238b45", "生态保护红线", "Ecological red line"),
    ZoneType.BASIC_FARMLAND.value: ("#c2a83e", "永久基本农田", "Permanent basic farmland"),
    ZoneType.WATER_SOURCE.value: ("#2171b5", "饮用水水源保护区", "Water-source protection"),
    ZoneType.URBAN_DEVELOPMENT_BOUNDARY.value: ("#636363", "城镇开发边界", "Urban development boundary"),
}
#: GB/T 21010 first-level classes (三调 cartographic colours, approximated).
LANDUSE_COLOR: dict[str, str] = {
    "01": "#f5f0a0", "02": "#d9c27a", "03": "#4f9d4f", "04": "#b5d98b",
    "05": "#e8746f", "06": "#b38f8f", "07": "#f2b6a0", "08": "#d77fc1",
    "09": "#9e7bb5", "10": "#bdbdbd", "11": "#8fc3ea", "12": "#e0e0e0",
}
#: Compliance verdicts (gis.compliance): worst verdict of a site.
VERDICT_STYLE: dict[str, tuple[str, str, str]] = {
    "prohibited": ("#d7191c", "违规", "prohibited"),
    "needs_review": ("#fdae61", "需核查", "needs review"),
    "ok": ("#1a9641", "合规", "compliant"),
}
#: Gi* confidence bins (−3…+3 = cold/hot spot at 99/95/90 %).
GI_BIN_STYLE: dict[int, tuple[str, str]] = {
    3: ("#b2182b", "热点 Hot spot 99%"),
    2: ("#ef8a62", "热点 Hot spot 95%"),
    1: ("#fddbc7", "热点 Hot spot 90%"),
    -1: ("#d1e5f0", "冷点 Cold spot 90%"),
    -2: ("#67a9cf", "冷点 Cold spot 95%"),
    -3: ("#2166ac", "冷点 Cold spot 99%"),
}
INCIDENT_KIND_COLOR: dict[str, str] = dict(
    zip(
        [k.value for k in IncidentKind],
        ["#e31a1c", "#fb9a99", "#ff7f00", "#fdbf6f", "#6a3d9a", "#cab2d6", "#b15928", "#1f78b4"],
    )
)

# ---------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------


def tianditu_basemap(key: str, kind: str = "vec") -> list[Basemap]:
    """Tianditu (天地图) Web-Mercator tiles in CGCS2000 (≈ WGS84, no offset).

    Parameters
    ----------
    key
        The district's Tianditu developer key (``tk``).
    kind
        ``vec`` (streets) or ``img`` (imagery); the matching label layer is added.
    """
    labels = {"vec": "cva", "img": "cia"}[kind]

    def url(layer: str) -> str:
        return (
            f"https://t{{s}}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile"
            f"&VERSION=1.0.0&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
            f"&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}"
        )

    attr = "© 天地图 Tianditu"
    return [
        Basemap(url(kind), attr, "天地图 Tianditu", subdomains="01234567"),
        Basemap(url(labels), attr, "天地图注记 Tianditu labels", subdomains="01234567", overlay=True),
    ]


def district_options(district: District) -> MapOptions:
    """Map options of a district (``layers/map.yaml`` merged with its ``map:`` section)."""
    project = getattr(district, "project", None)
    if project is not None and hasattr(project, "section"):
        return MapOptions.from_section(project.section("map"))
    return MapOptions()


# ---------------------------------------------------------------------------------
# Escaping
# ---------------------------------------------------------------------------------


def escape_text(value: Any, max_chars: int) -> str:
    """User text made safe for HTML: cut to ``max_chars`` (with ``…``), then escaped.

    ``None``/NaN become ``""``. Cutting happens before escaping so an entity is never
    split; ``&``, ``<``, ``>``, ``"`` and ``'`` are escaped (:func:`html.escape`).
    """
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (pd.Timestamp,)):
        value = value.date().isoformat() if value == value.normalize() else value.isoformat()
    text = str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return html.escape(text, quote=True)


_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_ENTITY_RE = re.compile("[&<>\"']")


def escape_column(values: pd.Series, max_chars: int) -> pd.Series:
    """Vectorised :func:`escape_text` over a column (same output, as ``object`` strings)."""
    s = values
    if s.dtype == object:
        sample = s.dropna()
        if len(sample) and isinstance(sample.iloc[0], (list, tuple, set, np.ndarray)):
            s = s.map(_join_problems)
    if pd.api.types.is_datetime64_any_dtype(s):
        s = s.dt.strftime("%Y-%m-%d")
    elif pd.api.types.is_float_dtype(s):
        s = s.round(2)
    s = s.astype("string").fillna("")
    long = s.str.len() > max_chars
    if long.any():
        s = s.where(~long, s.str.slice(0, max_chars - 1) + "…")
    s = s.str.replace(_ENTITY_RE, lambda m: _ENTITY[m.group(0)], regex=True)
    return s.astype(object)


# ---------------------------------------------------------------------------------
# The layer model
# ---------------------------------------------------------------------------------


def _display_frame(
    gdf: gpd.GeoDataFrame,
    columns: Sequence[str],
    *,
    max_chars: int,
    simplify_m: float = 0.0,
) -> gpd.GeoDataFrame:
    """Whitelisted, escaped columns + simplified geometry (``simplify_m``) in EPSG:4326."""
    keep = [c for c in columns if c in gdf.columns]
    geom = gdf.geometry
    if simplify_m > 0 and gdf.crs is not None and gdf.crs.is_projected:
        geom = geom.simplify(simplify_m, preserve_topology=True)
    out = gpd.GeoDataFrame(
        {c: escape_column(gdf[c], max_chars) for c in keep},
        geometry=gpd.GeoSeries(geom.values, index=gdf.index, crs=gdf.crs),
        index=gdf.index,
    )
    if out.crs is None:
        out = out.set_crs(WGS84)
    out = out.to_crs(WGS84)
    # 6 decimals ≈ 0.1 m: plenty for display, a third of the JSON
    out = out.set_geometry(shapely.transform(out.geometry.values, lambda c: np.round(c, 6)))
    out = out[~out.geometry.is_empty & out.geometry.notna()]
    return out


def _n_vertices(gdf: gpd.GeoDataFrame) -> int:
    return int(shapely.get_num_coordinates(gdf.geometry.values).sum())


def _labels(vocab: Mapping[str, str], en: Mapping[str, str] | None, value: str) -> str:
    zh = vocab.get(value, value)
    return f"{zh} {en.get(value, '')}".strip() if en else zh


# --- district layers ---------------------------------------------------------------


def _townships_layer(d: Any, opt: MapOptions) -> MapLayer | None:
    t = getattr(d, "townships", None)
    if t is None or len(t) == 0:
        return None
    g = _display_frame(
        t, ["township", "kind", "population", "households"], max_chars=opt.max_text_chars,
        simplify_m=opt.simplify_m,
    )
    g["_color"] = "#444444"
    return MapLayer(
        "townships", "镇街 Townships", "polygon", g,
        popup=(("township", "镇街 Township"), ("population", "常住人口 Population"), ("households", "户数 Households")),
        tooltip="township", legend=(("line", "#444444", "镇街界 Township boundary"),),
        fill_opacity=0.0, weight=2.0,
    )


def _polygon_image(
    gdf: gpd.GeoDataFrame, colors: pd.Series, *, pixel_m: float | None = None, alpha: int = 150
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float, float]]:
    """Rasterise coloured polygons to an image in Web Mercator (for big layers): the pixels'
    palette indices (``uint8``; 0 transparent) and the RGBA palette — or, past 255 colours, the
    RGBA pixels and ``None`` — and the lat/lon bounds (:func:`gis.map_scale.burn`)."""
    from rasterio.transform import from_origin

    # through WGS84: a metric CGCS2000 layer straight to Web Mercator had PROJ search the
    # CGCS2000 → WGS84 datum operations again (0.3–0.6 s); the layer → WGS84 step is the
    # transformer district loading already made, WGS84 → Web Mercator is instant to make
    minx, miny, maxx, maxy = map_scale.mercator_bounds(gdf.geometry)  # re-projected in batches as burnt
    extent = max(maxx - minx, maxy - miny)
    pixel = pixel_m or max(extent / 2000.0, 1.0)
    width = max(1, int(np.ceil((maxx - minx) / pixel)))
    height = max(1, int(np.ceil((maxy - miny) / pixel)))
    transform = from_origin(minx, maxy, pixel, pixel)
    codes, uniques = pd.factorize(colors)
    indexed = len(uniques) < 256
    burned = map_scale.burn_mercator(gdf.geometry, codes + 1, (height, width), transform)
    burned = burned.astype(np.uint8) if indexed else burned
    palette = np.zeros((len(uniques) + 1, 4), dtype=np.uint8)
    for i, hexcol in enumerate(uniques, start=1):
        palette[i, :3] = _hex_rgb(hexcol)
        palette[i, 3] = alpha
    bounds = _merc_bounds_latlon(minx, miny, minx + width * pixel, maxy)
    return (burned, palette, bounds) if indexed else (palette[burned], None, bounds)


def _merc_bounds_latlon(minx: float, miny: float, maxx: float, maxy: float) -> tuple[float, float, float, float]:
    from pyproj import Transformer

    tr = Transformer.from_crs(WEB_MERCATOR, WGS84, always_xy=True)
    (w, e), (s, n) = tr.transform([minx, maxx], [miny, maxy])
    return (float(s), float(w), float(n), float(e))


def _hex_rgb(hexcol: str) -> tuple[int, int, int]:
    h = hexcol.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _landuse_color(codes: pd.Series) -> pd.Series:
    first = codes.astype("string").fillna("").str.slice(0, 2)
    return first.map(LANDUSE_COLOR).fillna("#f0f0f0").astype(object)


def _landuse_legend(codes: Iterable[str]) -> tuple[tuple[str, str, str], ...]:
    try:
        from gis.catalog import landuse_classes

        table = landuse_classes()
    except Exception:  # catalogue unavailable: codes only
        table = {}
    out = []
    for c in sorted({str(c)[:2] for c in codes if c is not None and str(c) not in ("", "nan", "<NA>")}):
        entry = table.get(c, {})
        label = f"{c} {entry.get('name_zh', '')} {entry.get('name_en', '')}".strip()
        out.append(("box", LANDUSE_COLOR.get(c, "#f0f0f0"), label))
    return tuple(out)


def _landuse_layer(d: Any, opt: MapOptions) -> MapLayer | None:
    lu = getattr(d, "landuse", None)
    title = "土地利用 Land use (GB/T 21010)"
    if lu is not None and len(lu):
        colors = _landuse_color(lu["landuse_code"])
        legend = _landuse_legend(lu["landuse_code"].dropna().unique())
        if len(lu) > opt.max_vector_polygons or _n_vertices(lu) > opt.max_vertices:
            img, palette, bounds = _polygon_image(lu, colors)
            return MapLayer("landuse", title, "image", image=img, palette=palette, bounds=bounds, legend=legend,
                            show=False)
        g = _display_frame(lu, ["landuse_code", "landuse_name"], max_chars=opt.max_text_chars, simplify_m=opt.simplify_m)
        g["_color"] = colors.loc[g.index]
        return MapLayer(
            "landuse", title, "polygon", g,
            popup=(("landuse_code", "地类编码 Code"), ("landuse_name", "地类名称 Class")),
            tooltip="landuse_name", legend=legend, show=False, fill_opacity=0.5, weight=0.3,
        )
    r = getattr(d, "landuse_raster", None)
    if r is not None:
        classes = getattr(r, "classes", {}) or {}
        lut = {int(v): LANDUSE_COLOR.get(str(code)[:2], "#f0f0f0") for v, code in classes.items()}
        img, bounds = _raster_image(Path(r.path), lambda a, nod: _categorical_rgba(a, nod, lut))
        legend = _landuse_legend(classes.values())
        return MapLayer("landuse", title, "image", image=img, bounds=bounds, legend=legend, show=False)
    return None


def _categorical_rgba(a: np.ndarray, nodata_mask: np.ndarray, lut: Mapping[int, str]) -> np.ndarray:
    rgba = np.zeros(a.shape + (4,), dtype=np.uint8)
    for value, hexcol in lut.items():  # loop over classes (≤ tens), not pixels
        m = (a == value) & ~nodata_mask
        rgba[m, :3] = _hex_rgb(hexcol)
        rgba[m, 3] = 150
    return rgba


def _continuous_rgba(a: np.ndarray, nodata_mask: np.ndarray, cmap: str = "YlOrRd") -> np.ndarray:
    """Colour a surface: zero/nodata transparent, alpha rising with the value."""
    from matplotlib import colormaps

    valid = ~nodata_mask & np.isfinite(a) & (a > 0)
    rgba = np.zeros(a.shape + (4,), dtype=np.uint8)
    if not valid.any():
        return rgba
    hi = float(np.nanpercentile(a[valid], 99.5)) or float(a[valid].max())
    t = np.clip(np.where(valid, a, 0) / hi, 0, 1)
    rgba[:] = (colormaps[cmap](t) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(valid, (60 + 170 * t).astype(np.uint8), 0)
    return rgba


def _raster_image(
    path: Path | None,
    colour: Callable[[np.ndarray, np.ndarray], np.ndarray],
    max_px: int = 1600,
    *,
    array: np.ndarray | None = None,
    transform: Any = None,
    crs: Any = None,
    nodata: float | None = None,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Band 1 of a GeoTIFF (or an in-memory array), warped to Web Mercator, coloured.

    The output is at most ``max_px`` pixels on its long side.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import array_bounds
    from rasterio.warp import calculate_default_transform, reproject

    if path is not None:
        with rasterio.open(path) as src:
            array, transform, crs, nodata = src.read(1), src.transform, src.crs, src.nodata
    assert array is not None and transform is not None
    src_crs = crs or WGS84
    src_transform = transform
    h0, w0 = array.shape
    west, south, east, north = array_bounds(h0, w0, src_transform)
    dst_transform, width, height = calculate_default_transform(src_crs, WEB_MERCATOR, w0, h0, west, south, east, north)
    scale = max(1.0, max(width, height) / max_px)
    width, height = max(1, int(width / scale)), max(1, int(height / scale))
    transform = dst_transform @ type(dst_transform).scale(scale, scale)
    dst = np.full((height, width), np.nan if nodata is None else nodata, dtype="float64")
    categorical = np.issubdtype(array.dtype, np.integer)
    reproject(
        source=array, destination=dst, src_transform=src_transform, src_crs=src_crs,
        dst_transform=transform, dst_crs=WEB_MERCATOR,
        resampling=Resampling.nearest if categorical else Resampling.bilinear,
        src_nodata=nodata, dst_nodata=np.nan if nodata is None else nodata,
    )
    mask = ~np.isfinite(dst) if nodata is None else (dst == nodata) | ~np.isfinite(dst)
    rgba = colour(dst, mask)
    minx, maxy = transform.c, transform.f
    maxx, miny = minx + width * transform.a, maxy + height * transform.e
    return rgba, _merc_bounds_latlon(minx, miny, maxx, maxy)


def _zone_layers(d: Any, opt: MapOptions) -> list[MapLayer]:
    z = getattr(d, "zones", None)
    if z is None or len(z) == 0:
        return []
    zt = z["zone_type"].astype("string")
    layers = []
    fm = z[zt == ZoneType.FOUR_MOUNTAINS.value]
    if len(fm):
        g = _display_frame(fm, ["name", "zone_id", "level"], max_chars=opt.max_text_chars, simplify_m=opt.simplify_m)
        lvl = fm["level"].astype("string").loc[g.index]
        g["level"] = escape_column(lvl.map(lambda v: _labels(ZONE_LEVEL_LABEL_ZH_STR, ZONE_LEVEL_LABEL_EN, v)
                                           if isinstance(v, str) else ""), opt.max_text_chars)
        g["_color"] = lvl.map(ZONE_LEVEL_COLOR).fillna("#fdae6b").astype(object)
        legend = tuple(
            ("box", ZONE_LEVEL_COLOR[v], f"四山{ZONE_LEVEL_LABEL_ZH_STR[v]} Four-Mountains {ZONE_LEVEL_LABEL_EN[v]}")
            for v in ZONE_LEVEL_COLOR
            if v in set(lvl.dropna())
        )
        layers.append(MapLayer(
            "four_mountains", "四山管制区 Four-Mountains zones", "polygon", g,
            popup=(("name", "名称 Name"), ("level", "管控级别 Level"), ("zone_id", "编号 ID")),
            tooltip="level", legend=legend, fill_opacity=0.35, weight=1.0,
        ))
    other = z[zt != ZoneType.FOUR_MOUNTAINS.value]
    if len(other):
        g = _display_frame(other, ["name", "zone_id", "zone_type"], max_chars=opt.max_text_chars, simplify_m=opt.simplify_m)
        t = other["zone_type"].astype("string").loc[g.index]
        g["zone_type"] = escape_column(
            t.map(lambda v: " ".join(ZONE_TYPE_STYLE[v][1:]) if v in ZONE_TYPE_STYLE else v), opt.max_text_chars
        )
        g["_color"] = t.map({k: v[0] for k, v in ZONE_TYPE_STYLE.items()}).fillna("#737373").astype(object)
        legend = tuple(("hatch", c, f"{zh} {en}") for k, (c, zh, en) in ZONE_TYPE_STYLE.items() if k in set(t.dropna()))
        layers.append(MapLayer(
            "other_zones", "其他管控区 Other control zones", "polygon", g,
            popup=(("name", "名称 Name"), ("zone_type", "类型 Type"), ("zone_id", "编号 ID")),
            tooltip="zone_type", legend=legend, show=False, fill_opacity=0.2, weight=1.5, dash="5,4",
        ))
    return layers


ZONE_LEVEL_LABEL_ZH_STR: dict[str, str] = {k.value: v for k, v in ZONE_LEVEL_LABEL_ZH.items()}
TIER_LABEL_ZH_STR: dict[str, str] = {k.value: v for k, v in TIER_LABEL_ZH.items()}
SITE_STATUS_ZH_STR: dict[str, str] = {k.value: v for k, v in SITE_STATUS_LABEL_ZH.items()}
INCIDENT_KIND_ZH_STR: dict[str, str] = {k.value: v for k, v in INCIDENT_KIND_LABEL_ZH.items()}

SITE_POPUP: tuple[tuple[str, str], ...] = (
    ("site_id", "网点编号 ID"),
    ("name", "网点名称 Name"),
    ("tier_label", "网点层级 Tier"),
    ("operator", "经营者 Operator"),
    ("address", "经营地址 Address"),
    ("township", "所属镇街 Township"),
    ("status_label", "经营状态 Status"),
    ("business_licence", "营业执照 Licence"),
    ("dismantling_qualification", "资质认定 Qualification"),
    ("police_filing", "公安备案 Police filing"),
    ("capacity_t_per_day", "日处理能力(吨) Capacity t/d"),
    ("floor_area_m2", "占地面积(㎡) Floor area"),
    ("business_scope", "经营范围 Scope"),
)


def _site_layers(d: Any, opt: MapOptions, verdicts: pd.DataFrame | None) -> list[MapLayer]:
    """One layer per tier; colour = compliance verdict when known, else tier colour."""
    s = getattr(d, "sites", None)
    if s is None or len(s) == 0:
        return []
    s = s.copy()
    tier = s["tier"].astype("string")
    s["tier_label"] = tier.map(lambda v: _labels(TIER_LABEL_ZH_STR, TIER_LABEL_EN, v) if isinstance(v, str) else "")
    s["status_label"] = s["status"].astype("string").map(SITE_STATUS_ZH_STR) if "status" in s else ""
    popup = list(SITE_POPUP)
    if verdicts is not None and len(verdicts):
        s = s.join(verdicts, on="site_id") if "site_id" in s else s
        popup += [("verdict_label", "合规结论 Compliance"), ("problems", "问题 Problems")]
        s["verdict_label"] = s["verdict"].map(lambda v: " ".join(VERDICT_STYLE[v][1:]) if v in VERDICT_STYLE else "")
    cols = [c for c, _ in popup]
    layers = []
    for t, (shape, colour) in TIER_SYMBOL.items():
        sub = s[tier == t]
        if not len(sub):
            continue
        g = _display_frame(sub, cols, max_chars=opt.max_text_chars)
        if verdicts is not None and "verdict" in sub:
            g["_color"] = sub["verdict"].map({k: v[0] for k, v in VERDICT_STYLE.items()}).fillna("#969696").loc[g.index].astype(object)
        else:
            g["_color"] = colour
        g["_symbol"] = shape
        zh, en = TIER_LABEL_ZH_STR[t], TIER_LABEL_EN[t]
        legend: tuple[tuple[str, str, str], ...] = ((shape, colour if verdicts is None else "#555555", f"{zh} {en}"),)
        layers.append(MapLayer(
            f"sites_{t}", f"{zh} {en} ({len(g)})", "point", g, popup=tuple(popup), tooltip="name",
            legend=legend, cluster=len(g) > opt.max_plain_markers,
            size=18 if t in (Tier.SORTING_CENTRE.value, Tier.DISMANTLER.value) else 14,
        ))
    if verdicts is not None and len(layers):
        layers[-1].legend = layers[-1].legend + tuple(
            ("circle", c, f"{zh} {en}") for c, zh, en in VERDICT_STYLE.values()
        )
    return layers


def _incident_layer(d: Any, opt: MapOptions) -> MapLayer | None:
    inc = getattr(d, "incidents", None)
    if inc is None or len(inc) == 0:
        return None
    inc = inc.copy()
    kind = inc["kind"].astype("string")
    inc["kind_label"] = kind.map(INCIDENT_KIND_ZH_STR)
    g = _display_frame(
        inc, ["incident_id", "date", "kind_label", "township", "address", "description"],
        max_chars=opt.max_text_chars,
    )
    g["_color"] = kind.loc[g.index].map(INCIDENT_KIND_COLOR).fillna("#e31a1c").astype(object)
    g["_symbol"] = "dot"
    legend = tuple(("dot", INCIDENT_KIND_COLOR[k], INCIDENT_KIND_ZH_STR[k]) for k in INCIDENT_KIND_COLOR if k in set(kind.dropna()))
    return MapLayer(
        "incidents", f"事件记录 Incidents ({len(g)})", "point", g,
        popup=(("incident_id", "记录编号 ID"), ("date", "发现日期 Date"), ("kind_label", "问题类型 Kind"),
               ("township", "镇街 Township"), ("address", "地址 Address"), ("description", "问题描述 Description")),
        tooltip="kind_label", legend=legend, show=False, cluster=len(g) > opt.max_plain_markers, size=9,
    )


def _candidate_layer(d: Any, opt: MapOptions) -> MapLayer | None:
    c = getattr(d, "candidates", None)
    if c is None or len(c) == 0:
        return None
    g = _display_frame(c, ["candidate_id", "name", "kind", "address"], max_chars=opt.max_text_chars)
    g["_color"] = "#737373"
    g["_symbol"] = "ring"
    return MapLayer(
        "candidates", f"候选站点 Candidate sites ({len(g)})", "point", g,
        popup=(("candidate_id", "编号 ID"), ("name", "名称 Name"), ("kind", "类型 Kind"), ("address", "地址 Address")),
        tooltip="name", legend=(("ring", "#737373", "候选站点 Candidate site"),), show=False,
        cluster=len(g) > opt.max_plain_markers, size=12,
    )


# --- analysis-result adapters ---------------------------------------------------------


def _attr(obj: Any, *names: str) -> Any:
    """First attribute (or mapping key) of ``obj`` among ``names`` that is not None."""
    if obj is None:
        return None
    for n in names:
        v = obj.get(n) if isinstance(obj, Mapping) else getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _gdf(obj: Any, *names: str) -> gpd.GeoDataFrame | None:
    v = _attr(obj, *names)
    return v if isinstance(v, gpd.GeoDataFrame) and len(v) else None


def _first_col(df: pd.DataFrame, *names: str) -> str | None:
    return next((n for n in names if n in df.columns), None)


_VERDICT_RANK = {"ok": 0, "needs_review": 1, "prohibited": 2}


def site_verdicts(compliance: Any) -> pd.DataFrame | None:
    """Worst verdict and problem text per ``site_id`` from a compliance result.

    Reads, in this order, a per-site frame carrying a ``verdict`` column, or a
    per-violation frame (``site_id``, ``verdict``, ``rule_id``/``problem``).
    """
    sites = _attr(compliance, "sites", "site_results", "site_checks")
    if isinstance(sites, pd.DataFrame) and "site_id" in sites and _first_col(sites, "verdict", "worst_verdict"):
        vcol = _first_col(sites, "verdict", "worst_verdict")
        out = pd.DataFrame({"verdict": sites[vcol].astype("string").values}, index=sites["site_id"].values)
        pcol = _first_col(sites, "problems", "violations", "rule_ids", "rules_broken")
        out["problems"] = sites[pcol].map(_join_problems).values if pcol else ""
        return out[~out.index.duplicated()]
    viol = _attr(compliance, "violations", "site_violations", "problems")
    if isinstance(viol, pd.DataFrame) and "site_id" in viol:
        v = viol.copy()
        vcol = _first_col(v, "verdict", "severity")
        v["_rank"] = v[vcol].map(_VERDICT_RANK).fillna(1) if vcol else 2
        pcol = _first_col(v, "problem", "rule_name", "description", "rule_id")
        worst = v.groupby("site_id")["_rank"].max()
        inv = {r: k for k, r in _VERDICT_RANK.items()}
        out = pd.DataFrame({"verdict": worst.map(inv)})
        out["problems"] = v.groupby("site_id")[pcol].agg(lambda x: "；".join(map(str, pd.unique(x)))) if pcol else ""
        checked = _attr(compliance, "checked_site_ids")
        if checked is not None:
            out = out.reindex(pd.Index(checked).union(out.index))
            out["verdict"] = out["verdict"].fillna("ok")
            out["problems"] = out["problems"].fillna("")
        return out
    return None


def _join_problems(v: Any) -> str:
    if isinstance(v, (list, tuple, set, np.ndarray)):
        return "；".join(map(str, v))
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def _generic_points(
    gdf: gpd.GeoDataFrame, key: str, title: str, colour: str, symbol: str, popup: Sequence[tuple[str, str]],
    opt: MapOptions, *, tooltip: str | None = None, show: bool = True, size: int = 16, attribution: str | None = None,
) -> MapLayer:
    popup = tuple((c, lbl) for c, lbl in popup if c in gdf.columns)
    pts = gdf
    if not (gdf.geom_type == "Point").all():
        pts = gdf.set_geometry(gdf.geometry.representative_point())
    g = _display_frame(pts, [c for c, _ in popup], max_chars=opt.max_text_chars)
    g["_color"] = colour
    g["_symbol"] = symbol
    return MapLayer(key, f"{title} ({len(g)})", "point", g, popup=popup,
                    tooltip=tooltip if tooltip in g.columns else (popup[0][0] if popup else None),
                    legend=((symbol, colour, title),), show=show, cluster=len(g) > opt.max_plain_markers,
                    size=size, attribution=attribution)


def _generic_polygons(
    gdf: gpd.GeoDataFrame, key: str, title: str, colour: str | pd.Series, popup: Sequence[tuple[str, str]],
    opt: MapOptions, *, tooltip: str | None = None, show: bool = True, fill_opacity: float = 0.3,
    weight: float = 1.0, legend: tuple[tuple[str, str, str], ...] | None = None, attribution: str | None = None,
    dash: str | None = None,
) -> MapLayer:
    popup = tuple((c, lbl) for c, lbl in popup if c in gdf.columns)
    polys = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"])]
    colors = colour if isinstance(colour, pd.Series) else pd.Series(colour, index=gdf.index)
    if len(polys) > opt.max_vector_polygons or _n_vertices(polys) > opt.max_vertices:
        img, palette, bounds = _polygon_image(polys, colors.loc[polys.index])
        return MapLayer(key, title, "image", image=img, palette=palette, bounds=bounds, show=show,
                        attribution=attribution,
                        legend=legend if legend is not None else (("box", str(colors.iloc[0]), title),))
    g = _display_frame(polys, [c for c, _ in popup], max_chars=opt.max_text_chars, simplify_m=opt.simplify_m)
    g["_color"] = colors.loc[g.index].astype(object)
    return MapLayer(key, f"{title} ({len(g)})", "polygon", g, popup=popup,
                    tooltip=tooltip if tooltip in g.columns else None,
                    legend=legend if legend is not None else (("box", str(colors.iloc[0]), title),),
                    show=show, fill_opacity=fill_opacity, weight=weight, attribution=attribution, dash=dash)


def _coverage_layers(coverage: Any, d: Any, opt: MapOptions) -> list[MapLayer]:
    layers = []
    osm = settings.OSM_ATTRIBUTION if getattr(d, "roads_path", None) is not None else None
    by_tier = _attr(coverage, "by_tier") or {}
    areas = [r.service_areas for r in by_tier.values()
             if isinstance(getattr(r, "service_areas", None), gpd.GeoDataFrame) and len(r.service_areas)]
    sa = (gpd.GeoDataFrame(pd.concat(areas, ignore_index=True), crs=areas[0].crs) if areas
          else _gdf(coverage, "service_areas", "service_area"))
    if sa is not None:
        layers.append(_generic_polygons(
            sa, "service_areas", "服务范围 Service areas", "#3182bd",
            (("site_id", "网点编号 Site"), ("name", "网点名称 Name"), ("tier", "层级 Tier"),
             ("distance_m", "服务半径(米) Distance m"), ("mode", "方式 Mode"), ("method", "方法 Method")),
            opt, tooltip="name", fill_opacity=0.12, weight=0.8, attribution=osm, show=False,
        ))
    gaps = _gdf(coverage, "gaps", "coverage_gaps")
    if gaps is not None:
        colours, legend = gap_classes(gaps)
        layers.append(_generic_polygons(
            gaps, "gaps", "覆盖缺口 Coverage gaps", colours,
            (("rank", "排名 Rank"), ("township", "镇街 Township"), ("population", "未覆盖人口 Uncovered population"),
             ("households", "未覆盖户数 Uncovered households"), ("area_km2", "面积(km²) Area")),
            opt, tooltip="township", fill_opacity=0.3, weight=1.0, attribution=osm, show=False, legend=legend,
        ))
    return layers


#: Coverage-gap classes by uncovered residents per km², light to dark (ColorBrewer PiYG pinks).
GAP_COLOURS = ("#fde0ef", "#f1b6da", "#de77ae", "#c51b7d")
#: Class breaks: the quantiles of the gaps' density that separate the four classes.
GAP_QUANTILES = (0.5, 0.75, 0.9)


def gap_classes(gaps: gpd.GeoDataFrame) -> tuple[pd.Series, tuple[tuple[str, str, str], ...]]:
    """Colour of each coverage gap (覆盖缺口) by its density of uncovered residents, and the legend.

    Density :math:`\\rho_g = P_g / A_g` (uncovered residents over area, km²); the classes
    are cut at the :data:`GAP_QUANTILES` of :math:`\\rho` over the gaps, so a dense
    urban gap stands out from the wide, thin gaps of a rural 镇 that would otherwise paint
    the whole district one colour. Without ``population``/``area_km2``: one class.
    """
    if not {"population", "area_km2"} <= set(gaps.columns) or len(gaps) == 0:
        return pd.Series(GAP_COLOURS[-1], index=gaps.index), (("box", GAP_COLOURS[-1], "覆盖缺口 Coverage gaps"),)
    area = pd.to_numeric(gaps["area_km2"], errors="coerce").to_numpy(float)
    density = pd.to_numeric(gaps["population"], errors="coerce").to_numpy(float) / np.where(area > 0, area, np.nan)
    density = np.nan_to_num(density, nan=0.0)
    breaks = np.unique(np.quantile(density, GAP_QUANTILES))
    cls = np.searchsorted(breaks, density, side="right")
    palette = GAP_COLOURS[len(GAP_COLOURS) - len(breaks) - 1:]
    edges = [f"{b:,.0f}" for b in breaks]
    labels = ([f"< {edges[0]}", *(f"{a}–{b}" for a, b in zip(edges, edges[1:])), f"≥ {edges[-1]}"] if edges
              else ["全部 all"])
    legend = tuple(("box", palette[i], f"覆盖缺口 {labels[i]} 人/km²" + (" Coverage gaps (uncovered residents)" if i == 0
                                                                       else ""))
                   for i in range(len(palette)) if (cls == i).any())
    return pd.Series(np.asarray(palette, dtype=object)[cls], index=gaps.index), legend


def _siting_layers(siting: Any, opt: MapOptions) -> list[MapLayer]:
    rec = _gdf(siting, "selected", "recommended", "new_sites", "sites")
    if rec is None:
        return []
    return [_generic_points(
        rec, "recommended", "推荐新址 Recommended sites", "#7a0177", "star",
        (("rank", "顺序 Rank"), ("candidate_id", "候选编号 Candidate"), ("name", "名称 Name"),
         ("township", "镇街 Township"), ("gain_population", "新增覆盖人口 Residents newly covered"),
         ("cumulative_share", "累计覆盖率 Cumulative share"), ("landuse_code", "地类 Land use"),
         ("solver", "求解 Solver")),
        opt, tooltip="name", size=20,
    )]


def _path_gdf(obj: Any, *paths: str) -> gpd.GeoDataFrame | None:
    """First non-empty GeoDataFrame among dotted attribute paths (``hex.grid`` …)."""
    for path in paths:
        v = obj
        for part in path.split("."):
            v = _attr(v, part)
            if v is None:
                break
        if isinstance(v, gpd.GeoDataFrame) and len(v):
            return v
    return None


CLUSTER_POPUP: tuple[tuple[str, str], ...] = (
    ("rank", "优先级 Priority rank"), ("score", "得分 Score"), ("cluster_id", "聚集区编号 Cluster"),
    ("n_incidents", "事件数 Incidents"), ("significance_zh", "显著性 Reports vs background"),
    ("kinds_label", "问题类型 Kinds"), ("first_date", "最早 First"),
    ("last_date", "最近 Last"), ("townships", "镇街 Townships"), ("address", "地址 Address"),
    ("_level_label", "四山级别 Four-Mountains level"), ("fm_ranges", "四山山系 Range"),
    ("rebound", "反弹 Rebound"), ("lead_departments", "牵头单位 Lead"), ("support_departments", "配合单位 Support"),
)


def _hotspot_layers(hot: Any, out: Path | None, opt: MapOptions) -> list[MapLayer]:
    """Gi* grid, density surface and incident clusters of a hotspot result."""
    layers: list[MapLayer] = []
    grid = _path_gdf(hot, "hex.grid", "gi_grid", "grid")
    if grid is not None and "gi_bin" in grid:
        b = pd.to_numeric(grid["gi_bin"], errors="coerce").fillna(0).astype(int)
        sig = grid[b != 0]
        if len(sig):
            colors = b.loc[sig.index].map({k: v[0] for k, v in GI_BIN_STYLE.items()})
            legend = tuple(("box", c, lbl) for k, (c, lbl) in GI_BIN_STYLE.items() if k in set(b.loc[sig.index]))
            layers.append(_generic_polygons(
                sig, "gi_grid", "Gi* 热点网格 Gi* hot-spot grid", colors,
                (("gi_bin", "置信分级 Bin"), ("count", "事件数 Incidents"), ("gi_z", "z 值 z-score"),
                 ("gi_p", "p 值 p-value"), ("emerging", "时空模式 Emerging pattern")),
                opt, fill_opacity=0.55, weight=0.3, legend=legend,
            ))
    dens = _attr(hot, "density")
    legend_d = (("ramp", "#fd8d3c", "核密度 Kernel density (低→高 low→high)"),)
    if dens is not None and getattr(dens, "array", None) is not None:
        img, bounds = _raster_image(None, _continuous_rgba, array=np.asarray(dens.array, dtype="float64"),
                                    transform=dens.transform, crs=dens.crs)
        layers.append(MapLayer("density", "事件核密度 Incident density", "image", image=img, bounds=bounds,
                               legend=legend_d, show=False))
    elif out is not None and (Path(out) / "density.tif").exists():
        img, bounds = _raster_image(Path(out) / "density.tif", _continuous_rgba)
        layers.append(MapLayer("density", "事件核密度 Incident density", "image", image=img, bounds=bounds,
                               legend=legend_d, show=False))
    clusters = _path_gdf(hot, "priority", "clusters.clusters", "clusters")
    if clusters is not None:
        c = clusters.copy()
        lvl = (c["four_mountains_level"].astype("string") if "four_mountains_level" in c
               else pd.Series(pd.NA, index=c.index, dtype="string"))
        colors = lvl.map(ZONE_LEVEL_COLOR).fillna("#6a51a3").astype(object)
        legend = (("box", "#6a51a3", "事件聚集区 Incident cluster"),) + tuple(
            ("box", ZONE_LEVEL_COLOR[v], f"聚集区位于四山{ZONE_LEVEL_LABEL_ZH_STR[v]} Cluster in Four-Mountains {ZONE_LEVEL_LABEL_EN[v]}")
            for v in ZONE_LEVEL_COLOR if v in set(lvl.dropna())
        )
        c["_level_label"] = lvl.map(
            lambda v: _labels(ZONE_LEVEL_LABEL_ZH_STR, ZONE_LEVEL_LABEL_EN, v) if isinstance(v, str) else ""
        )
        if "kinds" in c:
            c["kinds_label"] = c["kinds"].map(
                lambda ks: "、".join(INCIDENT_KIND_ZH_STR.get(k, str(k)) for k in ks)
                if isinstance(ks, (list, tuple, np.ndarray)) else ("" if ks is None else str(ks))
            )
        if c.geom_type.isin(["Polygon", "MultiPolygon"]).all():
            layers.append(_generic_polygons(c, "clusters", "事件聚集区 Incident clusters", colors, CLUSTER_POPUP, opt,
                                            tooltip="kinds_label", fill_opacity=0.4, weight=2.0, legend=legend))
        else:
            lay = _generic_points(c, "clusters", "事件聚集区 Incident clusters", "#6a51a3", "hexagon", CLUSTER_POPUP,
                                  opt, tooltip="kinds_label", size=18)
            lay.gdf["_color"] = colors.loc[lay.gdf.index].values
            lay.legend = legend
            layers.append(lay)
    return layers


@dataclass(frozen=True)
class StaticLayers:
    """The layers no analysis changes (land use, zones, townships, candidates, incidents),
    built once and handed to :func:`build_layers` for every map of the district."""

    landuse: MapLayer | None
    zones: tuple[MapLayer, ...]
    townships: MapLayer | None
    candidates: MapLayer | None
    incidents: MapLayer | None


def static_layers(district: District, options: MapOptions | None = None) -> StaticLayers:
    """Build the district's :class:`StaticLayers`."""
    opt = options or district_options(district)
    return StaticLayers(_landuse_layer(district, opt), tuple(_zone_layers(district, opt)),
                        _townships_layer(district, opt), _candidate_layer(district, opt), _incident_layer(district, opt))


def build_layers(
    district: District,
    results: Mapping[str, Any] | None = None,
    options: MapOptions | None = None,
    *,
    out: Path | None = None,
    static: StaticLayers | None = None,
) -> list[MapLayer]:
    """All display layers of a district and the analysis results that exist.

    Parameters
    ----------
    district
        A loaded :class:`gis.district.District`.
    results
        Optional analysis results keyed ``compliance``, ``coverage``, ``siting``,
        ``hotspots`` (the objects the analysis modules return, or the same keys of a
        pipeline ``context``). Missing keys simply give no layer.
    options
        Display options; default: the district's ``map`` section.
    out
        Output folder, to find ``density.tif`` when the hotspot result has no path.
    static
        :func:`static_layers` of the district with these options, if already built.

    Returns
    -------
    list of MapLayer
        Bottom to top: land use, zones, townships, analysis surfaces, sites, points.
    """
    opt = options or district_options(district)
    results = results or {}
    fixed = static or static_layers(district, opt)
    layers: list[MapLayer | None] = [fixed.landuse, *fixed.zones, fixed.townships]
    hot = results.get("hotspots")
    hot_layers = _hotspot_layers(hot, out, opt) if hot is not None else []  # built once: surfaces below, clusters above
    layers += [lay for lay in hot_layers if lay.key in ("gi_grid", "density")]
    cov = results.get("coverage")
    if cov is not None:  # drawn ahead by a lean run (gis.steps.lean_coverage), else now
        layers += _attr(cov, "map_layers") or _coverage_layers(cov, district, opt)
    layers += [lay for lay in hot_layers if lay.key == "clusters"]
    comp = results.get("compliance")
    layers += map_scale.site_layers(district, opt, site_verdicts(comp) if comp is not None else None,
                                    full=_site_layers, grid=aggregate_points, limit=max_page_points(district))
    layers.append(fixed.candidates)
    siting = results.get("siting") if results.get("siting") is not None else _attr(cov, "siting", "recommended")
    if siting is not None:
        layers += _siting_layers(siting, opt)
    layers.append(fixed.incidents)
    kept = [lay for lay in layers if lay is not None and (lay.n > 0 or lay.image is not None)]
    limit = max_page_points(district)
    return [aggregate_points(lay, opt.max_vector_polygons) if lay.kind == "point" and lay.n > limit else lay
            for lay in kept]


def max_page_points(district: District) -> int:
    """``max_page_points`` of the map settings (``layers/map.yaml``, per district under ``map:``)."""
    project = getattr(district, "project", None)
    section = project.section("map") if project is not None and hasattr(project, "section") else None
    if section is None:
        from gis.catalog import load_yaml

        section = load_yaml(settings.LAYERS_DIR / "map.yaml") or {}
    return int(section["max_page_points"])


#: Count classes of an aggregated point layer, light to dark (YlOrRd).
COUNT_RAMP: tuple[str, ...] = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")


def _count_grid(xy: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, float]:
    r"""Square cells (Web-Mercator metres) holding the points, at most ``limit`` of them.

    The side starts at :math:`\sqrt{A / \mathrm{limit}}` (:math:`A` the points' bounding
    box area) and doubles until the occupied cells number at most ``limit``.

    Returns
    -------
    (cells, counts, side)
        ``k × 2`` integer cell indices, points per cell, cell side (m).
    """
    lo = xy.min(axis=0)
    w, h = np.ptp(xy, axis=0)
    side = max(float(np.sqrt(max(w * h, 1.0) / limit)), 1.0)
    while True:
        ij = np.floor((xy - lo) / side).astype(np.int64)
        cells, counts = np.unique(ij, axis=0, return_counts=True)
        if len(cells) <= limit:
            return cells, counts, side
        side *= 2


def aggregate_points(layer: MapLayer, limit: int) -> MapLayer:
    """A point layer as a grid of at most ``limit`` cells with counts (聚合显示).

    :func:`build_layers` does this to a point layer of more than ``max_page_points``
    features, with ``limit`` = ``max_vector_polygons`` (the cells stay vector polygons
    with popups). A page with every one of a million sites is hundreds of megabytes
    and does not open; the grid keeps each cell's count (popup) and a
    colour by count quintile, so the page stays small whatever the ledger's size.
    The full list stays in the GeoPackage and the ledgers.
    """
    pts = layer.gdf.to_crs(WEB_MERCATOR)
    xy = np.c_[pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()]
    xy = xy[np.isfinite(xy).all(axis=1)]
    cells, counts, side = _count_grid(xy, limit)
    lo = xy.min(axis=0)
    x0, y0 = lo[0] + cells[:, 0] * side, lo[1] + cells[:, 1] * side
    edges = np.unique(np.quantile(counts, [0.2, 0.4, 0.6, 0.8]))
    cls = np.searchsorted(edges, counts, side="right")
    colours = np.array(COUNT_RAMP)[np.minimum(cls, len(COUNT_RAMP) - 1)]
    g = gpd.GeoDataFrame({"count": counts.astype(str), "_color": colours.astype(object)},
                         geometry=shapely.box(x0, y0, x0 + side, y0 + side), crs=WEB_MERCATOR).to_crs(WGS84)
    legend = tuple(("box", COUNT_RAMP[min(c, len(COUNT_RAMP) - 1)],
                    f"{counts[cls == c].min():,} – {counts[cls == c].max():,} 个/格 per cell")
                   for c in np.unique(cls))
    side_txt = f"{side / 1000:.1f} km" if side >= 1000 else f"{side:.0f} m"
    return replace(layer, title=f"{layer.title} · 聚合 {len(g):,} 格 grid of {side_txt}", kind="polygon", gdf=g,
                   popup=(("count", "点数 Points"),), tooltip="count", legend=legend, cluster=False,
                   fill_opacity=0.6, weight=0.3)


def coverage_siting_layers(district: District, results: Mapping[str, Any], options: MapOptions | None = None) -> list[MapLayer]:
    """Only the service-area, gap and recommended-site layers of ``results`` (see :func:`build_layers`).

    For a caller that redraws these alone when a service radius or the number of new
    sites changes, keeping the other layers it already built.
    """
    opt = options or district_options(district)
    cov = results.get("coverage")
    layers = _coverage_layers(cov, district, opt) if cov is not None else []
    siting = results.get("siting") if results.get("siting") is not None else _attr(cov, "siting", "recommended")
    if siting is not None:
        layers += _siting_layers(siting, opt)
    return [lay for lay in layers if lay is not None and (lay.n > 0 or lay.image is not None)]


def district_title(district: District) -> str:
    """Legend title: the district's name."""
    project = getattr(district, "project", None)
    name = getattr(project, "name", None) or ""
    return f"{name} 图例 Legend".strip()


def district_attributions(district: District) -> list[str]:
    """Attribution lines every map of the district carries (the sample-data label)."""
    project = getattr(district, "project", None)
    return [settings.SAMPLE_LABEL] if getattr(project, "sample", False) else []


def build_map(
    district: District,
    results: Mapping[str, Any] | None = None,
    options: MapOptions | None = None,
    *,
    out: Path | None = None,
) -> folium.Map:
    """The district map with every available analysis layer (see :func:`build_layers`)."""
    from gis.map_folium import render_folium

    opt = options or district_options(district)
    layers = build_layers(district, results, opt, out=out)
    return render_folium(layers, opt, title=district_title(district), attributions=district_attributions(district))




def with_options(options: MapOptions, **changes: Any) -> MapOptions:
    """A copy of ``options`` with fields changed (e.g. a basemap chosen in the app)."""
    return replace(options, **changes)
