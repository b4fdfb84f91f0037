"""The map layer model (专题地图图层) and the static renderers: matplotlib, PNG.

The renderer-independent layer model — :class:`MapLayer` (display-ready
GeoDataFrames in WGS84 with user strings already escaped, or RGBA images) and
:class:`MapOptions` / :class:`Basemap` — and the static ways to draw it:
:func:`save_map_png` (headless Chromium, else :func:`render_static` with
matplotlib). :mod:`gis.map_folium` draws the same layers as a Leaflet page
(``OUT/map.html``, the Streamlit app's map); :mod:`gis.maps` builds the layers from a
district and its analyses. Nothing here imports folium: ``gis run`` builds the layers
and hands them to the sheet workers before it pays for that import.

Examples
--------
>>> import geopandas as gpd
>>> from shapely.geometry import Point
>>> from gis.map_render import MapLayer
>>> pts = gpd.GeoDataFrame({"_color": ["#d62728"], "_symbol": ["circle"]}, geometry=[Point(106.45, 29.55)], crs=4326)
>>> MapLayer("sites", "站点 Sites", "point", gdf=pts).geojson["features"][0]["geometry"]["type"]
'Point'
"""

from __future__ import annotations

import base64
import functools
import io
import html
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from gis.export import atomic_path

__all__ = [
    "ASSETS_DIR",
    "LEGEND_ONE_COLUMN_MAX",
    "LEGEND_STRIP_PX",
    "WEB_MERCATOR",
    "WGS84",
    "Basemap",
    "MapLayer",
    "MapOptions",
    "chromium_path",
    "htmlsafe_json_dumps",
    "render_static",
    "save_map_png",
]

WGS84 = "EPSG:4326"
WEB_MERCATOR = "EPSG:3857"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def htmlsafe_json_dumps(obj: Any, **kwargs: Any) -> str:
    """JSON of ``obj`` safe inside HTML ``<script>`` tags and attributes: ``< > & '`` as ``\\u`` escapes.

    The same string as :func:`jinja2.utils.htmlsafe_json_dumps` (a test compares them)
    without importing jinja2 where no page is rendered.
    """
    return (json.dumps(obj, **kwargs).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("'", "\\u0027"))


@dataclass(frozen=True)
class Basemap:
    """A tile layer drawn under the data (optional; needs network).

    Attributes
    ----------
    url
        Leaflet tile URL template (``{z}/{x}/{y}``, optional ``{s}``).
    attribution
        Attribution text, shown on the map (required by every provider).
    name
        Name in the layer control.
    subdomains
        Values of ``{s}``.
    overlay
        Draw on top of the base (e.g. a label layer) instead of as the base.
    """

    url: str
    attribution: str
    name: str = "底图 Basemap"
    subdomains: str | None = None
    overlay: bool = False
    max_zoom: int = 18


@dataclass(frozen=True)
class MapOptions:
    """How a map is drawn (defaults in ``layers/map.yaml``, per district under ``map:``)."""

    basemaps: tuple[Basemap, ...] = ()
    max_plain_markers: int = 300
    max_vector_polygons: int = 3000
    max_vertices: int = 50_000
    simplify_m: float = 15.0
    max_text_chars: int = 200
    width: int = 1400
    height: int = 1000

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> MapOptions:
        """Options from a ``map`` config section (``Project.section("map")``)."""
        s = dict(section or {})
        basemaps: list[Basemap] = []
        if s.get("tiles"):
            if not s.get("attribution"):
                from gis._errors import AnalysisError

                raise AnalysisError("map.tiles needs map.attribution (every tile provider requires it)")
            basemaps.append(Basemap(str(s["tiles"]), str(s["attribution"]), subdomains=s.get("subdomains")))
            if s.get("annotation_tiles"):
                basemaps.append(
                    Basemap(
                        str(s["annotation_tiles"]),
                        str(s["attribution"]),
                        "注记 Labels",
                        subdomains=s.get("subdomains"),
                        overlay=True,
                    )
                )
        kw = {k: type(getattr(cls(), k))(s[k]) for k in (
            "max_plain_markers", "max_vector_polygons", "max_vertices", "simplify_m", "max_text_chars", "width", "height"
        ) if s.get(k) is not None}
        return cls(basemaps=tuple(basemaps), **kw)


@dataclass
class MapLayer:
    """One display layer, renderer-independent.

    Attributes
    ----------
    key
        Stable identifier (``sites_transfer_station``, ``gi_grid`` …).
    title
        Name in the layer control and legend (Chinese, English secondary).
    kind
        ``polygon``, ``point`` or ``image``.
    gdf
        Features in EPSG:4326; text columns already escaped; ``_color`` per feature;
        ``_symbol`` (marker shape) for points.
    popup
        ``(column, label)`` pairs shown in the popup.
    tooltip
        Column shown on hover.
    image, bounds
        For ``image`` layers: an RGBA ``uint8`` array in Web-Mercator pixel grid and
        its ``(south, west, north, east)`` bounds.
    legend
        ``(shape, colour, label)`` entries.
    show
        Visible when the page opens.
    cluster
        Draw points as clustered markers.
    attribution
        Attribution this layer requires (e.g. OSM for road-derived layers).
    fill_opacity, weight, dash
        Polygon styling.
    """

    key: str
    title: str
    kind: str
    gdf: gpd.GeoDataFrame | None = None
    popup: tuple[tuple[str, str], ...] = ()
    tooltip: str | None = None
    image: np.ndarray | None = None
    palette: np.ndarray | None = None
    bounds: tuple[float, float, float, float] | None = None
    legend: tuple[tuple[str, str, str], ...] = ()
    show: bool = True
    cluster: bool = False
    attribution: str | None = None
    fill_opacity: float = 0.35
    weight: float = 1.0
    dash: str | None = None
    size: int = 14

    @property
    def n(self) -> int:
        """Number of features (0 for images)."""
        return 0 if self.gdf is None else len(self.gdf)

    @property
    def popup_fields(self) -> list[str]:
        """The popup's columns that the layer has."""
        return [c for c, _ in self.popup if self.gdf is not None and c in self.gdf.columns]

    @functools.cached_property
    def geojson(self) -> dict[str, Any] | None:
        """The shown columns (popup fields, ``_color``, ``_symbol``) as a GeoJSON
        FeatureCollection, converted once per layer: the app draws a fresh map on every
        rerun from cached layers, and folium would convert the frame each time. Features
        carry their ``id``, so folium reads this dict and never writes to it."""
        if self.gdf is None:
            return None
        g = self.gdf
        data = g[self.popup_fields + ["_color"] + (["_symbol"] if "_symbol" in g else []) + ["geometry"]]
        return json.loads(json.dumps(data.to_crs(WGS84).__geo_interface__))

    @functools.cached_property
    def geojson_text(self) -> str | None:
        """:attr:`geojson` as the page embeds it — Jinja's ``tojson`` (keys sorted, ``<>&'``
        escaped), serialised once per layer instead of on every render of every map."""
        return None if self.geojson is None else str(htmlsafe_json_dumps(self.geojson, sort_keys=True))

    @functools.cached_property
    def render_memo(self) -> dict[str, Any]:
        """folium's per-render work that depends on the layer only (its style maps, its bounds),
        kept from the layer's first render (filled by :class:`_GeoJson`)."""
        return {}

    @functools.cached_property
    def image_url(self) -> str | None:
        """The image as a PNG ``data:`` URL, encoded once per layer (the app redraws the map
        on every rerun from cached layers; folium would re-encode the array each time).

        With a ``palette`` (RGBA rows; ``image`` then holds its indices, ``uint8``) the PNG
        is palette-indexed with per-entry transparency: the same pixels as the RGBA image
        (tested), a quarter of the bytes to compress."""
        if self.image is None:
            return None
        from PIL import Image

        buf = io.BytesIO()
        if self.palette is not None:
            im = Image.fromarray(np.ascontiguousarray(self.image, dtype=np.uint8), mode="P")
            im.putpalette(self.palette[:, :3].astype(np.uint8).ravel().tolist())
            im.save(buf, format="PNG", transparency=bytes(self.palette[:, 3].astype(np.uint8).tolist()))
        else:
            Image.fromarray(np.ascontiguousarray(self.image)).save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    @property
    def rgba(self) -> np.ndarray | None:
        """The image as RGBA pixels (``palette[image]`` for a palette image)."""
        if self.image is None or self.palette is None:
            return self.image
        return self.palette[self.image]


# ---------------------------------------------------------------------------------
# Folium renderer
# ---------------------------------------------------------------------------------

_SVG_SHAPES: dict[str, str] = {
    "circle": '<circle cx="12" cy="12" r="9" fill="{c}" stroke="#222" stroke-width="1.5"/>',
    "dot": '<circle cx="12" cy="12" r="7" fill="{c}" fill-opacity="0.85" stroke="#fff" stroke-width="1"/>',
    "ring": '<circle cx="12" cy="12" r="8" fill="none" stroke="{c}" stroke-width="3"/>',
    "square": '<rect x="3" y="3" width="18" height="18" fill="{c}" stroke="#222" stroke-width="1.5"/>',
    "triangle": '<polygon points="12,2 22,21 2,21" fill="{c}" stroke="#222" stroke-width="1.5"/>',
    "diamond": '<polygon points="12,1 23,12 12,23 1,12" fill="{c}" stroke="#222" stroke-width="1.5"/>',
    "star": '<polygon points="12,1 15,9 23,9 17,14 19,22 12,17 5,22 7,14 1,9 9,9" fill="{c}" stroke="#222" stroke-width="1.2"/>',
    "hexagon": '<polygon points="12,1 22,6.5 22,17.5 12,23 2,17.5 2,6.5" fill="{c}" stroke="#222" stroke-width="1.5"/>',
}


def _svg(shape: str, colour: str, size: int) -> str:
    body = _SVG_SHAPES.get(shape, _SVG_SHAPES["circle"]).format(c=html.escape(colour))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 24 24">{body}</svg>'


#: Legend entries above which a full-page legend flows into two columns.
LEGEND_ONE_COLUMN_MAX = 14
#: Width (px) kept free for a full-page legend of one / two columns when the map is fitted.
LEGEND_STRIP_PX = {False: 380, True: 740}
#: The app's legend starts folded (its title only) on maps narrower than this (px): on a laptop's
#: map or the inspector's half-width map an open legend would hide half of the district.
LEGEND_OPEN_MIN_PX = 1000


def chromium_path() -> str | None:
    """Path of a headless-capable Chromium/Chrome, or None."""
    for cand in (os.environ.get("GIS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    return None


def save_map_png(
    target: str | Path,
    *,
    html_path: str | Path | None = None,
    layers: Sequence[MapLayer] | None = None,
    options: MapOptions | None = None,
    title: str = "",
    timeout_s: float = 60.0,
) -> tuple[Path, str]:
    """A PNG snapshot of the map for reports.

    Renders ``html_path`` with headless Chromium when one is installed; otherwise (or
    if Chromium fails) draws ``layers`` with matplotlib (:func:`render_static`).

    Returns
    -------
    (path, method)
        ``method`` is ``"chromium"`` or ``"matplotlib"``.
    """
    opt = options or MapOptions()
    target = Path(target)
    exe = chromium_path()
    if html_path is not None and exe is not None:
        with tempfile.TemporaryDirectory(prefix="gis-chromium-") as work:
            shot = Path(work) / "shot.png"
            cmd = [
                exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", f"--user-data-dir={Path(work) / 'profile'}",
                f"--window-size={opt.width},{opt.height}", "--virtual-time-budget=4000",
                f"--screenshot={shot}", Path(html_path).resolve().as_uri(),
            ]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s)
                ok = shot.exists() and shot.stat().st_size > 0
            except (subprocess.SubprocessError, OSError):
                ok = False
            if ok:
                with atomic_path(target) as tmp:
                    shutil.copyfile(shot, tmp)
                return target, "chromium"
    if layers is None:
        from gis._errors import AnalysisError

        raise AnalysisError("save_map_png: no Chromium available and no layers given for the static fallback")
    render_static(layers, target, options=opt, title=title)
    return target, "matplotlib"


@lru_cache(maxsize=1)
def _register_cjk_font() -> str | None:
    """Make an installed CJK font known to matplotlib (its font cache may predate it)."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for name in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "SimHei", "Microsoft YaHei"):
        if name in known:
            return name
    candidates = [
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    ]
    for path in candidates:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


def render_static(
    layers: Sequence[MapLayer], target: str | Path, *, options: MapOptions | None = None, title: str = ""
) -> Path:
    """Draw layers with matplotlib in Web Mercator (PNG), with a legend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    opt = options or MapOptions()
    _register_cjk_font()
    plt.rcParams["font.sans-serif"] = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "SimHei", "Microsoft YaHei", "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    fig, ax = plt.subplots(figsize=(opt.width / 100, opt.height / 100), dpi=100)
    ax.set_facecolor("#f4f3ee")
    marker_of = {"circle": "o", "dot": ".", "ring": "o", "square": "s", "triangle": "^", "diamond": "D",
                 "star": "*", "hexagon": "h"}
    handles = []
    from pyproj import Transformer

    tr = Transformer.from_crs(WGS84, WEB_MERCATOR, always_xy=True)
    for lay in layers:
        if not lay.show and lay.key not in ("landuse",):
            continue
        if lay.kind == "image" and lay.image is not None and lay.bounds is not None:
            s, w, n, e = lay.bounds
            (x0, x1), (y0, y1) = tr.transform([w, e], [s, n])
            ax.imshow(lay.rgba, extent=(x0, x1, y0, y1), origin="upper", zorder=1)
        elif lay.gdf is not None and len(lay.gdf):
            g = lay.gdf.to_crs(WEB_MERCATOR)
            if lay.kind == "polygon":
                g.plot(ax=ax, color=g["_color"].tolist() if lay.fill_opacity > 0 else "none",
                       edgecolor=g["_color"].tolist(), alpha=max(lay.fill_opacity, 0.9 if lay.fill_opacity == 0 else 0),
                       linewidth=lay.weight, zorder=2)
            else:
                sym = str(g["_symbol"].iloc[0])
                ax.scatter(g.geometry.x, g.geometry.y, c=g["_color"].tolist(), marker=marker_of.get(sym, "o"),
                           s=lay.size * 3, edgecolors="#222222", linewidths=0.5, zorder=3)
        for shape, colour, label in lay.legend:
            if shape in ("box", "hatch", "line", "ramp"):
                handles.append(Patch(facecolor=colour if shape != "line" else "none", edgecolor=colour, label=label))
            else:
                handles.append(Line2D([], [], marker=marker_of.get(shape, "o"), color="none", markerfacecolor=colour,
                                      markeredgecolor="#222222", markersize=8, label=label))
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.set_ylabel("")
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.9)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(target)
