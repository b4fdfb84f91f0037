"""The map layers as a Leaflet page (交互地图): folium, offline.

:func:`render_folium` draws :class:`gis.map_render.MapLayer` lists as a self-contained
Leaflet map (used by ``gis run`` for ``OUT/map.html`` and by the Streamlit app);
:func:`save_map_html` writes it. Each layer's GeoJSON is rendered once and kept
(:class:`_GeoJson`), the legend, scale and attribution are small
:class:`~branca.element.MacroElement` s.

Offline: folium loads Leaflet from a CDN; :func:`localize_assets` replaces those
links with ``data:`` URIs of the copies vendored in ``gis/assets/`` (Leaflet 1.9.3,
Leaflet.markercluster 1.5.3), so the HTML loads nothing from the internet unless a
tile basemap is configured.

This module imports folium (and jinja2, branca): :mod:`gis.maps` imports it only when a
page is drawn, so building the layers (and the print sheets from them) does not.

Examples
--------
>>> import geopandas as gpd
>>> from shapely.geometry import Point
>>> from gis.map_render import MapLayer
>>> from gis.map_folium import render_folium
>>> pts = gpd.GeoDataFrame({"_color": ["#d62728"], "_symbol": ["circle"]}, geometry=[Point(106.45, 29.55)], crs=4326)
>>> m = render_folium([MapLayer("sites", "站点 Sites", "point", gdf=pts)])
>>> "leaflet" in m.get_root().render().lower()
True
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import folium
import numpy as np
from branca.element import Element, MacroElement
from jinja2 import Template

from gis.export import atomic_path
from gis.map_render import (
    ASSETS_DIR,
    LEGEND_ONE_COLUMN_MAX,
    LEGEND_OPEN_MIN_PX,
    LEGEND_STRIP_PX,
    MapLayer,
    MapOptions,
    _svg,
    htmlsafe_json_dumps,
)

__all__ = ["Legend", "localize_assets", "render_folium", "save_map_html"]


_LEGEND_TEMPLATE = """
{% macro html(this, kwargs) %}
<div class="gis-legend" style="position:absolute; z-index:1000; bottom:24px;
 {% if this.full_page %}right:10px; max-height:55%;{% else %}left:10px; max-height:42%; max-width:45%;{% endif %}
 overflow-y:auto; background:rgba(255,255,255,0.92); padding:8px 10px; border:1px solid #999;
 border-radius:4px; font:11px/1.45 'WenQuanYi Micro Hei','Noto Sans CJK SC','Microsoft YaHei',sans-serif;">
<details open><summary style="font-weight:bold; margin-bottom:4px; cursor:pointer;">{{ this.title }}</summary>
<div{% if this.two_columns %} style="column-count:2; column-gap:14px;"{% endif %}>
{{ this.body }}
</div></details>
</div>
{% endmacro %}
{% macro script(this, kwargs) %}
{% if not this.full_page %}(function(){var d=document.querySelector('.gis-legend details');
 if (d && window.innerWidth < {{ this.open_min_px }}) { d.open=false; }})();{% else %}(function(){
 var g=document.querySelector('.gis-legend'), c=document.querySelector('.leaflet-control-layers');
 function fit(){ if (!g || !c) { return; } var top=c.getBoundingClientRect().bottom + 8; g.style.boxSizing='border-box';
  g.style.maxHeight=Math.max(120, window.innerHeight - top - 24) + 'px'; }
 fit(); window.addEventListener('resize', fit);})();{% endif %}
{% endmacro %}
"""


class _Rendered(Element):
    """A snippet already rendered, kept as it is.

    branca's :meth:`MacroElement.render` wraps each rendered header/html/script
    snippet in a new ``Element``, which compiles the snippet as a Jinja template —
    for a GeoJSON layer that is its whole embedded data, lexed for nothing (about
    half of a map's render time). This element holds the text and returns it.
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def render(self, **kwargs: Any) -> str:
        return self._text


class _RenderedOnce(MacroElement):
    """Mixin: :meth:`MacroElement.render` with the snippets kept as :class:`_Rendered`."""

    def render(self, **kwargs: Any) -> None:
        figure = self.get_root()
        parts = self._template.module.__dict__
        for part, target in (("header", figure.header), ("html", figure.html), ("script", figure.script)):
            macro = parts.get(part)
            if macro is not None:
                target.add_child(_Rendered(self._snippet(macro, kwargs)), name=self.get_name())
        for element in self._children.values():
            element.render(**kwargs)

    def _snippet(self, macro: Any, kwargs: Any) -> str:
        return str(macro(self, kwargs))


#: Stands in for a layer's data while its script is rendered; replaced by the layer's JSON text.
_DATA_PLACEHOLDER = {"type": "FeatureCollection", "features": [], "gis_data_placeholder": "b3f1c2e0"}
_DATA_PLACEHOLDER_TEXT = str(htmlsafe_json_dumps(_DATA_PLACEHOLDER, sort_keys=True))


class _GeoJson(folium.GeoJson, _RenderedOnce):
    """folium's GeoJson layer, rendered without compiling its data as a template.

    Given its :class:`MapLayer` (``layer``), the work folium repeats on every render
    that depends on the layer only — serialising the data, mapping each feature to its
    style, the bounds — is done once per layer (:attr:`MapLayer.geojson_text`,
    :attr:`MapLayer.render_memo`); the page is the same byte for byte.
    """

    layer: MapLayer | None = None

    def render(self, **kwargs: Any) -> None:
        memo = None if self.layer is None else self.layer.render_memo
        if memo is None or "style_map" not in memo or not (self.style or self.highlight) or not self.data["features"]:
            super().render(**kwargs)  # folium's GeoJson.render maps the styles
            if memo is not None:
                memo.setdefault("style_map", getattr(self, "style_map", None))
                memo.setdefault("highlight_map", getattr(self, "highlight_map", None))
            return
        self.parent_map = folium.utilities.get_obj_in_upper_tree(self, folium.Map)
        self.style_map, self.highlight_map = memo["style_map"], memo["highlight_map"]
        folium.map.Layer.render(self, **kwargs)

    def _snippet(self, macro: Any, kwargs: Any) -> str:
        text = None if self.layer is None else self.layer.geojson_text
        if text is None or not self.embed:
            return str(macro(self, kwargs))
        data, self.data = self.data, _DATA_PLACEHOLDER
        try:
            out = str(macro(self, kwargs))
        finally:
            self.data = data
        assert out.count(_DATA_PLACEHOLDER_TEXT) == 1, "folium's GeoJson template embeds its data once"
        return out.replace(_DATA_PLACEHOLDER_TEXT, text)

    def _get_self_bounds(self) -> Any:
        memo = None if self.layer is None else self.layer.render_memo
        if memo is None:
            return super()._get_self_bounds()
        if "bounds" not in memo:
            memo["bounds"] = super()._get_self_bounds()
        return memo["bounds"]


class _ImageOverlay(folium.raster_layers.ImageOverlay, _RenderedOnce):
    """folium's ImageOverlay (a data-URI raster), rendered without compiling it as a template."""


class _DetailRenderedOnce(_RenderedOnce):
    """Mixin for folium's GeoJsonPopup / GeoJsonTooltip: their ``render`` compiles the same
    table-style template on every call; here it is compiled once (folium's text, verbatim)."""

    _table_style = Template("""
                    <style>
                        .{{ this.class_name }} {
                            {{ this.style }}
                        }
                       .{{ this.class_name }} table{
                            margin: auto;
                        }
                        .{{ this.class_name }} tr{
                            text-align: left;
                        }
                        .{{ this.class_name }} th{
                            padding: 2px; padding-right: 8px;
                        }
                    </style>
            """)

    def render(self, **kwargs: Any) -> None:
        features = self._parent.data["features"]
        keys = [k for k in (features[0]["properties"] if features else ()) if k not in ("style", "highlight")]
        missing = [f for f in self.fields if f not in keys]
        if missing:
            raise ValueError(f"fields {missing} are not in the layer's data (it has {keys})")
        self.warn_for_geometry_collections()
        self.get_root().header.add_child(_Rendered(self._table_style.render(this=self)),
                                         name=self.get_name() + "tablestyle")
        _RenderedOnce.render(self, **kwargs)


class _GeoJsonPopup(_DetailRenderedOnce, folium.GeoJsonPopup):
    """folium's GeoJsonPopup, its snippets kept as rendered."""


class _GeoJsonTooltip(_DetailRenderedOnce, folium.GeoJsonTooltip):
    """folium's GeoJsonTooltip, its snippets kept as rendered."""


class Legend(MacroElement):
    """A fixed legend box (图例) drawn over the map; content built from constants."""

    _template = Template(_LEGEND_TEMPLATE)

    def __init__(self, title: str, entries: Sequence[tuple[str, str, str]], full_page: bool = False,
                 groups: Sequence[tuple[str, Sequence[tuple[str, str, str]]]] = ()) -> None:
        super().__init__()
        self._name = "Legend"
        self.title = html.escape(title)
        rows = []
        # grouped by layer (the app's compact legend): a small heading per layer, then its keys
        flat = [(None, e) for e in entries] + [(g if i == 0 else None, e) for g, es in groups for i, e in enumerate(es)]
        for group, (shape, colour, label) in flat:
            if group is not None:
                rows.append(f'<div style="break-inside:avoid;font-weight:bold;margin-top:3px;color:#444">{html.escape(group)}</div>')
            if shape in ("box", "hatch", "line", "ramp"):
                style = {
                    "box": f"background:{colour};opacity:0.8;",
                    "hatch": f"background:repeating-linear-gradient(45deg,{colour} 0 3px,transparent 3px 6px);border:1px dashed {colour};",
                    "line": f"border:2px solid {colour};background:transparent;",
                    "ramp": "background:linear-gradient(90deg,#ffffb2,#fd8d3c,#bd0026);",
                }[shape]
                sym = f'<span style="display:inline-block;width:16px;height:11px;margin-right:5px;vertical-align:middle;{html.escape(style)}"></span>'
            else:
                sym = f'<span style="display:inline-block;width:16px;margin-right:5px;vertical-align:middle">{_svg(shape, colour, 14)}</span>'
            rows.append(f'<div style="break-inside:avoid;">{sym}{html.escape(label)}</div>')
        self.body = "\n".join(rows)
        # a full-page legend (map.html, map.png) stands bottom right, under the layer control,
        # in two columns when long, so every entry shows; the map is fitted beside it (render_folium)
        self.full_page = full_page
        self.two_columns = full_page and len(rows) > LEGEND_ONE_COLUMN_MAX
        self.open_min_px = LEGEND_OPEN_MIN_PX


class _RefitWhenShown(MacroElement):
    """Fit the district again whenever the map's container is resized, until the view is moved.

    A map drawn inside a hidden tab has a 0×0 container, so its initial
    ``fitBounds`` lands at zoom 0 (the whole world); a map whose frame is sized after
    it was drawn (Streamlit's component iframe) keeps its top-left corner and cuts
    the district off at the bottom. A ``ResizeObserver`` keeps Leaflet's size in step
    and fits the district again as long as the view is the one last fitted (nobody
    panned, zoomed or focused a feature since).
    """

    _template = Template("""
{% macro script(this, kwargs) %}
(function(){var m={{ this._parent.get_name() }}, el=m.getContainer(), b={{ this.bounds }}, o={{ this.options }}, v=null;
 function sized(){ return el.clientWidth>0 && el.clientHeight>0; }
 function keep(){ v=[m.getZoom(), m.getCenter()]; }
 function untouched(){ return !v || (m.getZoom()===v[0] && m.getCenter().equals(v[1], 1e-9)); }
 if (sized()) { keep(); }
 if (window.ResizeObserver) { new ResizeObserver(function(){ var refit=untouched(); m.invalidateSize(false);
   if (refit && sized()) { m.fitBounds(b, o); keep(); } }).observe(el); }})();
{% endmacro %}
""")

    def __init__(self, bounds: Sequence[Sequence[float]], options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._name = "RefitWhenShown"
        self.bounds = json.dumps([[float(v) for v in b] for b in bounds])
        self.options = json.dumps(dict(options or {}))


class _MetricScale(MacroElement):
    """A scale bar in metres and kilometres only (Leaflet's default adds miles and feet)."""

    _template = Template("""
{% macro script(this, kwargs) %}
L.control.scale({metric: true, imperial: false}).addTo({{ this._parent.get_name() }});
{% endmacro %}
""")

    def __init__(self) -> None:
        super().__init__()
        self._name = "MetricScale"


class _Attribution(MacroElement):
    """Adds attribution strings to the map's attribution control."""

    _template = Template("""
{% macro script(this, kwargs) %}
{% for a in this.items %}{{ this._parent.get_name() }}.attributionControl.addAttribution({{ a|tojson }});
{% endfor %}
{% endmacro %}
""")

    def __init__(self, items: Sequence[str]) -> None:
        super().__init__()
        self._name = "Attribution"
        self.items = [html.escape(a) for a in items]


@lru_cache(maxsize=None)
def _data_uri(path: str, mime: str) -> str:
    data = Path(path).read_bytes()
    if mime == "text/css":
        # inline the images the CSS refers to (leaflet.css: images/layers.png …)
        base = Path(path).parent

        def repl(m: re.Match[str]) -> str:
            ref = m.group(1).strip("'\"")
            f = base / ref
            if ref.startswith(("data:", "#")) or not f.exists():
                return m.group(0)
            return f"url(data:image/png;base64,{base64.b64encode(f.read_bytes()).decode()})"

        data = re.sub(r"url\(([^)]+)\)", repl, data.decode("utf-8")).encode("utf-8")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


#: folium asset names → vendored file; everything else folium links is dropped (unused).
_VENDORED: dict[str, tuple[str, str]] = {
    "leaflet": ("leaflet/leaflet.js", "text/javascript"),
    "leaflet_css": ("leaflet/leaflet.css", "text/css"),
    "markerclusterjs": ("leaflet.markercluster/leaflet.markercluster.js", "text/javascript"),
    "markerclustercss": ("leaflet.markercluster/MarkerCluster.css", "text/css"),
    "markerclusterdefaultcss": ("leaflet.markercluster/MarkerCluster.Default.css", "text/css"),
}


def localize_assets(element: Any) -> Any:
    """Point every folium element's JS/CSS at the vendored copies (``data:`` URIs).

    Walks the element tree; links to libraries this module does not use (jQuery,
    Bootstrap, Font Awesome, awesome-markers) are dropped, so the page makes no
    request to a CDN. Returns ``element``.
    """
    stack = [element]
    while stack:
        el = stack.pop()
        for attr in ("default_js", "default_css"):
            links = getattr(el, attr, None)
            if links is None:
                continue
            local = []
            for name, _url in links:
                if name in _VENDORED:
                    rel, mime = _VENDORED[name]
                    local.append((name, _data_uri(str(ASSETS_DIR / rel), mime)))
            setattr(el, attr, local)
        stack.extend(getattr(el, "_children", {}).values())
    return element


def _layer_bounds(layers: Sequence[MapLayer]) -> list[list[float]] | None:
    boxes = []
    for lay in layers:
        if lay.gdf is not None and len(lay.gdf):
            w, s, e, n = lay.gdf.total_bounds
            boxes.append((s, w, n, e))
        elif lay.bounds is not None:
            boxes.append(lay.bounds)
    if not boxes:
        return None
    a = np.array(boxes, dtype=float)
    return [[float(a[:, 0].min()), float(a[:, 1].min())], [float(a[:, 2].max()), float(a[:, 3].max())]]


def render_folium(
    layers: Sequence[MapLayer],
    options: MapOptions | None = None,
    *,
    title: str = "",
    attributions: Sequence[str] = (),
    full_page_legend: bool = False,
) -> folium.Map:
    """Draw layers as a Leaflet map (offline assets, layer control, legend).

    Parameters
    ----------
    layers
        From :func:`build_layers`.
    options
        Basemaps and limits.
    title
        Legend title (escaped).
    attributions
        Extra attribution strings (e.g. the sample-data label).
    full_page_legend
        False: a narrow, scrolling legend bottom left (the app's small map). True:
        for a full-page map (``map.html`` / ``map.png``), the legend, in two columns
        when long, stands bottom right under the layer control and the district is
        fitted beside it, so nothing is hidden. Either way the legend folds away
        (click its title).
    """
    opt = options or MapOptions()
    bounds = _layer_bounds(layers)
    # No zoom/fade animation: the initial fitBounds is then applied at once, so a
    # snapshot (map.png, screenshots) never catches markers and polygons mid-zoom.
    # max_zoom: with no tile layer Leaflet has no zoom range, and the clustered incidents
    # layer (markercluster) refuses to draw ("Map has no maxZoom specified")
    m = folium.Map(tiles=None, control_scale=False, prefer_canvas=False, zoom_start=12, min_zoom=3, max_zoom=19,
                   zoom_animation=False, fade_animation=False, marker_zoom_animation=False, zoom_snap=0.25,
                   location=[(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2] if bounds else [29.56, 106.45])
    # folium hands max_zoom to a tile layer only; with none, the map itself needs it (markercluster throws
    # "Map has no maxZoom specified" when the hidden incidents layer is switched on)
    m.options["maxZoom"], m.options["minZoom"] = 19, 3
    _MetricScale().add_to(m)
    m.get_root().header.add_child(Element(
        "<style>.leaflet-container{background:#f4f3ee !important;}"
        ".leaflet-popup-content{max-width:420px;max-height:320px;overflow:auto;word-break:break-all;"
        "font-family:'WenQuanYi Micro Hei','Noto Sans CJK SC','Microsoft YaHei',sans-serif;}"
        ".gis-marker{background:none;border:none;}"
        # a narrow map (the inspector's half-width one) wraps the attribution inside the map
        ".leaflet-control-attribution{max-width:calc(100% - 20px);white-space:normal;font-size:10px;"
        "line-height:1.35;}</style>"
    ))
    for bm in opt.basemaps:
        kw: dict[str, Any] = {"subdomains": bm.subdomains} if bm.subdomains else {}
        folium.TileLayer(tiles=bm.url, attr=html.escape(bm.attribution), name=bm.name, overlay=bm.overlay,
                         control=True, max_zoom=bm.max_zoom, **kw).add_to(m)
    attrs = list(attributions)
    for lay in layers:
        _add_layer(m, lay)
        if lay.attribution and lay.attribution not in attrs:
            attrs.append(lay.attribution)
    if attrs:
        m.add_child(_Attribution(attrs))
    # the app's map is small: the layer control folds into its button; the legend (folds on its title) is
    # grouped by layer and scrolls within 42 % of the map height (a full-page map keeps both open)
    folium.LayerControl(collapsed=not full_page_legend).add_to(m)
    entries = [e for lay in layers for e in lay.legend]
    if full_page_legend:
        legend = Legend(title or "图例 Legend", entries, full_page=True) if entries else None
    else:
        groups = [(lay.title, lay.legend) for lay in layers if lay.legend]
        legend = Legend(title or "图例 Legend", (), groups=groups) if groups else None
    if legend is not None:
        m.add_child(legend)
    if bounds:
        # a full-page legend keeps a strip on the right free of the district
        pad = (LEGEND_STRIP_PX[legend.two_columns], 0) if legend is not None and legend.full_page else None
        m.fit_bounds(bounds, padding_bottom_right=pad)
        m.add_child(_RefitWhenShown(bounds, {"paddingBottomRight": list(pad)} if pad else None))
    localize_assets(m)
    return m


def _add_layer(m: folium.Map, lay: MapLayer) -> None:
    name = html.escape(lay.title)
    if lay.kind == "image":
        s, w, n, e = lay.bounds  # type: ignore[misc]
        _ImageOverlay(
            image=lay.image_url, bounds=[[s, w], [n, e]], name=name, show=lay.show, opacity=1.0,
            interactive=False, cross_origin=False, zindex=1,
        ).add_to(m)
        return
    g = lay.gdf
    assert g is not None
    fields = lay.popup_fields
    aliases = [html.escape(lbl) for c, lbl in lay.popup if c in fields]
    data = lay.geojson
    popup = _GeoJsonPopup(fields=fields, aliases=aliases, labels=True, max_width=440) if fields else None
    tooltip = _GeoJsonTooltip(fields=[lay.tooltip], labels=False) if lay.tooltip in g.columns else None
    if lay.kind == "polygon":
        fo, weight, dash = lay.fill_opacity, lay.weight, lay.dash

        def style(feature: dict[str, Any]) -> dict[str, Any]:
            c = feature["properties"]["_color"]
            return {"color": c, "fillColor": c, "weight": weight, "fillOpacity": fo, "dashArray": dash}

        _geojson(lay, data, name=name, show=lay.show, style_function=style, popup=popup, tooltip=tooltip,
                 highlight_function=lambda f: {"weight": weight + 2}, smooth_factor=1.0).add_to(m)
        return
    size = lay.size
    icons = {(sym, col): _svg(sym, col, size) for sym, col in set(zip(g["_symbol"], g["_color"]))}

    def marker_style(feature: dict[str, Any]) -> dict[str, Any]:
        p = feature["properties"]
        return {"html": icons[(p["_symbol"], p["_color"])]}

    marker = folium.Marker(icon=folium.DivIcon(html="", icon_size=(size, size), icon_anchor=(size // 2, size // 2),
                                               class_name="gis-marker"))
    if lay.cluster:
        from folium.plugins import MarkerCluster

        parent = MarkerCluster(name=name, show=lay.show, options={"disableClusteringAtZoom": 17,
                                                                  "chunkedLoading": True}).add_to(m)
        _geojson(lay, data, style_function=marker_style, marker=marker, popup=popup, tooltip=tooltip,
                 control=False).add_to(parent)
    else:
        _geojson(lay, data, name=name, show=lay.show, style_function=marker_style, marker=marker,
                 popup=popup, tooltip=tooltip).add_to(m)


def _geojson(lay: MapLayer, data: dict[str, Any], **kwargs: Any) -> _GeoJson:
    """The layer's :class:`_GeoJson`, tied to ``lay`` (its JSON text and render memo)."""
    g = _GeoJson(data, **kwargs)
    g.layer = lay
    return g


# ---------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------


def save_map_html(m: folium.Map, target: str | Path) -> Path:
    """Write the map as one self-contained HTML page, atomically."""
    localize_assets(m)
    with atomic_path(target) as tmp:
        m.save(str(tmp))
    return Path(target)
