"""The folium renderer's shortcuts draw exactly what folium's own classes draw."""

from __future__ import annotations

import copy
import itertools

import branca.element as be
import folium
import geopandas as gpd
from shapely.geometry import Point, box

from gis import map_folium
from gis.map_folium import render_folium
from gis.map_render import MapLayer


def _layers() -> list[MapLayer]:
    pts = gpd.GeoDataFrame({"名称": ["回收点<1>", "站&2"], "_color": ["#d62728", "#1f77b4"], "_symbol": ["circle", "star"]},
                           geometry=[Point(106.45, 29.55), Point(106.46, 29.56)], crs=4326)
    zone = gpd.GeoDataFrame({"名称": ["四山管控区"], "_color": ["#2ca02c"]}, geometry=[box(106.4, 29.5, 106.5, 29.6)], crs=4326)
    return [MapLayer("zone", "管控区 Zone", "polygon", gdf=zone, popup=(("名称", "名称"),), tooltip="名称"),
            MapLayer("sites", "站点 Sites", "point", gdf=pts, popup=(("名称", "名称"),), tooltip="名称"),
            MapLayer("incidents", "事件 Incidents", "point", gdf=pts, cluster=True)]


def _page(monkeypatch, layers: list[MapLayer]) -> str:
    """The rendered page with element ids from a counter (folium's are random)."""
    counter = itertools.count()
    monkeypatch.setattr(be.Element, "_generate_id", classmethod(lambda cls: f"{next(counter):032x}"))
    return render_folium(layers, title="图例").get_root().render()


def test_page_equals_the_one_folium_classes_draw(monkeypatch):
    ours = _page(monkeypatch, _layers())
    # the same layers through folium's own classes, handed the GeoDataFrame (their render compiles every
    # rendered snippet, GeoJSON data included, as a template; they convert the frame on every render)
    for name, cls in (("_GeoJson", folium.GeoJson), ("_GeoJsonPopup", folium.GeoJsonPopup),
                      ("_GeoJsonTooltip", folium.GeoJsonTooltip)):
        monkeypatch.setattr(map_folium, name, cls)
    monkeypatch.setattr(MapLayer, "geojson", property(lambda lay: lay.gdf[
        [c for c, _ in lay.popup if c in lay.gdf] + ["_color"] + (["_symbol"] if "_symbol" in lay.gdf else [])
        + ["geometry"]]))
    theirs = _page(monkeypatch, _layers())
    assert "\\u56db\\u5c71" in ours and "markerClusterGroup" in ours  # the zone's name (JSON-escaped)
    assert ours == theirs


def test_cached_geojson_is_reused_and_left_unchanged(monkeypatch):
    layers = _layers()
    first = _page(monkeypatch, layers)
    before = [copy.deepcopy(lay.geojson) for lay in layers]
    assert all("id" in f for g in before for f in g["features"])  # folium finds ids: it adds none
    # the second map takes the layers' JSON text and style maps from the first render
    assert all("style_map" in lay.render_memo for lay in layers)
    second = _page(monkeypatch, layers)
    assert first == second
    assert [lay.geojson for lay in layers] == before


def test_bounds_are_folium_bounds_and_kept_per_layer():
    layers = _layers()
    m = render_folium(layers, title="图例")
    first = m.get_bounds()
    assert all("bounds" in lay.render_memo for lay in layers)
    assert render_folium(layers, title="图例").get_bounds() == first
    assert [[round(v, 6) for v in c] for c in first] == [[29.5, 106.4], [29.6, 106.5]]


def test_html_safe_json_is_jinjas() -> None:
    """The layer model's ``htmlsafe_json_dumps`` (no jinja2 import) gives jinja2's string, markup escaped."""
    from jinja2.utils import htmlsafe_json_dumps as jinja_dumps

    from gis.map_render import htmlsafe_json_dumps

    value = {"名称": "<script>alert('x')</script> & 回收站", "n": [1, 2.5, None], "ok": True}
    ours = htmlsafe_json_dumps(value, sort_keys=True)
    assert ours == str(jinja_dumps(value, sort_keys=True))
    assert "<" not in ours and ">" not in ours and "'" not in ours and "&" not in ours


def test_building_the_layers_does_not_import_folium(sample_project) -> None:
    """``gis run`` hands the sheet workers their layers before it pays for folium (a fresh process)."""
    import subprocess
    import sys

    code = ("import sys; from gis import maps; from gis.district import load_district; "
            f"d = load_district({str(sample_project)!r}); layers = maps.build_layers(d, {{}}); "
            "assert layers and 'folium' not in sys.modules, 'folium imported'; "
            "maps.render_folium; assert 'folium' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
