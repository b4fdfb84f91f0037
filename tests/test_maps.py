"""gis.maps: layers, offline self-contained HTML, escaping of hostile ledgers, PNG."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import folium
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from gis import maps
from gis.district import load_district

HOSTILE = [
    "<script>alert('x')</script>",
    'He said "hi" & \'bye\' </script><img src=x onerror=alert(1)>',
    "长" * 10_000,
    "回收站 ♻️🚗💥 emoji",
    "`${alert(2)}`",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from gis.testing import make_tiny_project

    return load_district(make_tiny_project(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture(scope="module")
def hostile(tiny):
    sites = tiny.sites.copy()
    n = len(sites)
    sites["name"] = [HOSTILE[i % len(HOSTILE)] for i in range(n)]
    sites["address"] = "<b onmouseover=alert(3)>地址</b>"
    sites["operator"] = "</div><iframe src=javascript:alert(4)>"
    return dataclasses.replace(tiny, sites=sites)


# --------------------------------------------------------------------- escaping


@given(st.lists(st.one_of(st.none(), st.text(max_size=300)), max_size=30), st.integers(2, 250))
@hsettings(max_examples=60, deadline=None)
def test_escape_column_equals_escape_text(values: list[str | None], cap: int) -> None:
    got = maps.escape_column(pd.Series(values, dtype=object), cap).tolist()
    assert got == [maps.escape_text(v, cap) for v in values]
    for v in got:
        assert "<" not in v and ">" not in v and '"' not in v


def test_escape_text_cuts_before_escaping() -> None:
    assert maps.escape_text("<" * 10, 5) == "&lt;" * 4 + "…"
    assert maps.escape_text(None, 200) == "" and maps.escape_text(float("nan"), 200) == ""
    assert maps.escape_text("🚗" * 3, 200) == "🚗🚗🚗"


def test_hostile_ledger_renders_safely(hostile, tmp_path: Path) -> None:
    m = maps.build_map(hostile)
    page = maps.save_map_html(m, tmp_path / "map.html").read_text(encoding="utf-8")
    # no markup from user data survives: every tag we find is one we wrote
    assert "<script>alert" not in page
    assert "<img src=x" not in page and "<iframe src=javascript" not in page
    assert "<b onmouseover" not in page
    assert page.count("</script>") == page.count("<script")  # nothing closes our script blocks early
    # the text is there, escaped (JSON keeps the entities), emoji intact, long names cut
    assert "\\u0026lt;script\\u0026gt;alert" in page or "&lt;script&gt;alert" in page
    assert "♻️🚗💥" in page or "\\u267b" in page.lower()
    assert "长" * 10_000 not in page
    assert ("长" * 199 + "…") in page or ("\\u957f" * 199) in page.lower()


def test_only_whitelisted_columns_reach_the_page(tiny, tmp_path: Path) -> None:
    sites = tiny.sites.copy()
    sites["secret_note"] = "INTERNAL-ONLY-7f3a"
    d = dataclasses.replace(tiny, sites=sites)
    page = maps.save_map_html(maps.build_map(d), tmp_path / "m.html").read_text(encoding="utf-8")
    assert "INTERNAL-ONLY-7f3a" not in page


# --------------------------------------------------------------------- layers


def test_district_layers_in_wgs84_with_distinct_tier_symbols(tiny) -> None:
    layers = maps.build_layers(tiny)
    keys = [lay.key for lay in layers]
    assert {"townships", "four_mountains", "landuse", "incidents"} <= set(keys)
    site_layers = [lay for lay in layers if lay.key.startswith("sites_")]
    assert sum(lay.n for lay in site_layers) == len(tiny.sites)
    symbols = {lay.gdf["_symbol"].iloc[0] for lay in site_layers}
    assert len(symbols) == len(site_layers)  # one distinct shape per tier
    for lay in layers:
        if lay.gdf is not None:
            assert lay.gdf.crs.to_epsg() == 4326
            w, s, e, n = lay.gdf.total_bounds
            assert 105 < w <= e < 108 and 28 < s <= n < 31
    fm = next(lay for lay in layers if lay.key == "four_mountains")
    assert set(fm.gdf["_color"]) <= set(maps.ZONE_LEVEL_COLOR.values())


def test_map_is_offline_and_self_contained(tiny, tmp_path: Path) -> None:
    page = maps.save_map_html(maps.build_map(tiny), tmp_path / "map.html").read_text(encoding="utf-8")
    srcs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert srcs, "Leaflet must be linked"
    assert all(s.startswith("data:") for s in srcs), srcs
    assert "cdn.jsdelivr" not in page and "cdnjs" not in page and "code.jquery" not in page
    assert "tile.openstreetmap" not in page  # no basemap by default
    assert "L.control.layers" in page and "gis-legend" in page


def test_legend_folds_and_uses_two_columns_only_on_a_full_page() -> None:
    entries = [("box", "#abcdef", f"类 {i} <b>&</b>") for i in range(maps.LEGEND_ONE_COLUMN_MAX + 1)]

    def page(full_page: bool) -> str:
        m = folium.Map(tiles=None)
        m.add_child(maps.Legend("图例 Legend", entries, full_page=full_page))
        return m.get_root().render()

    narrow, wide = page(False), page(True)
    assert "<details open>" in narrow and "column-count" not in narrow
    assert "column-count:2" in wide
    assert "<b>&</b>" not in wide and "&lt;b&gt;&amp;&lt;/b&gt;" in wide  # labels escaped
    few = folium.Map(tiles=None)
    few.add_child(maps.Legend("图例", entries[:3], full_page=True))
    assert "column-count" not in few.get_root().render()  # a short legend stays one column


def test_pipeline_map_html_has_the_two_column_legend(tmp_path: Path) -> None:
    from gis.pipeline import run

    import shutil

    import yaml

    root = shutil.copytree(Path(__file__).resolve().parents[1] / "data" / "sample_district", tmp_path / "sample")
    raw = yaml.safe_load((root / "project.yaml").read_text(encoding="utf-8"))
    raw.setdefault("map", {}).setdefault("sheets", {})["enabled"] = False  # only map.html is looked at here
    (root / "project.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    run(root, tmp_path / "out", steps=["maps"], progress=False)
    page = (tmp_path / "out" / "map.html").read_text(encoding="utf-8")
    assert "column-count:2" in page and "right:10px" in page
    # the district is fitted beside the legend's strip, so the legend hides none of it
    assert re.search(r'"paddingBottomRight": \[%d, 0\]' % maps.LEGEND_STRIP_PX[True], page)


def test_map_has_no_zoom_animation_so_snapshots_are_aligned(tiny, tmp_path: Path) -> None:
    """A snapshot taken during the initial fitBounds animation drew markers at another zoom
    than the polygons (sites appeared outside the district in map.png)."""
    page = maps.save_map_html(maps.build_map(tiny), tmp_path / "map.html").read_text(encoding="utf-8")
    for option in ('"zoomAnimation": false', '"fadeAnimation": false', '"markerZoomAnimation": false'):
        assert option in page
    assert '"zoomSnap": 0.25' in page  # fractional zoom: the district fills the view


def test_many_points_are_clustered_and_big_layers_become_images(tiny) -> None:
    opt = maps.MapOptions(max_plain_markers=0, max_vector_polygons=1)
    layers = maps.build_layers(tiny, options=opt)
    lu = next(lay for lay in layers if lay.key == "landuse")
    assert lu.kind == "image" and lu.rgba.shape[2] == 4 and lu.rgba[..., 3].any()
    s, w, n, e = lu.bounds
    assert s < n and w < e
    html = maps.render_folium(layers, opt).get_root().render()
    assert "L.markerClusterGroup" in html
    assert "L.imageOverlay" in html


def test_a_palette_image_encodes_the_same_pixels_as_its_rgba(tiny) -> None:
    """The land-use image is sent as a palette PNG with per-entry transparency: decoded, it is
    the RGBA image pixel for pixel (and smaller than the RGBA PNG)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    lu = next(lay for lay in maps.build_layers(tiny, options=maps.MapOptions(max_vector_polygons=1))
              if lay.key == "landuse")
    assert lu.palette is not None and lu.image.dtype == np.uint8 and lu.image.ndim == 2
    png = base64.b64decode(lu.image_url.split(",", 1)[1])
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    np.testing.assert_array_equal(decoded, lu.rgba)
    assert decoded[..., 3].max() > 0 and len(np.unique(decoded.reshape(-1, 4), axis=0)) == len(np.unique(lu.image))
    plain = io.BytesIO()
    Image.fromarray(lu.rgba).save(plain, format="PNG")
    assert len(png) < len(plain.getvalue())


def test_basemap_and_attributions(tiny) -> None:
    bm = maps.tianditu_basemap("KEY123")
    opt = maps.MapOptions(basemaps=tuple(bm))
    html = maps.build_map(tiny, options=opt).get_root().render()
    assert "tianditu.gov.cn/vec_w" in html and "tk=KEY123" in html and "Tianditu" in html
    section = {"tiles": "https://example.test/{z}/{x}/{y}.png", "attribution": "© Example <b>"}
    opt2 = maps.MapOptions.from_section(section)
    html2 = maps.build_map(tiny, options=opt2).get_root().render()
    assert "example.test" in html2 and "Example" in html2 and "Example <b>" not in html2
    with pytest.raises(Exception, match="attribution"):
        maps.MapOptions.from_section({"tiles": "https://x/{z}/{x}/{y}.png"})


def test_coverage_layers_carry_osm_attribution() -> None:
    import geopandas as gpd
    from shapely.geometry import box

    areas = gpd.GeoDataFrame({"site_id": ["S1"], "name": ["<x>"]}, geometry=[box(0, 0, 500, 500)], crs="EPSG:4544")
    areas = areas.set_geometry(areas.translate(443000, 3270000))
    cov = type("Cov", (), {"service_areas": areas, "gaps": None})()
    d = type("D", (), {"roads_path": Path("roads.osm")})()
    (sa,) = maps._coverage_layers(cov, d, maps.MapOptions())
    assert sa.attribution == maps.settings.OSM_ATTRIBUTION
    html = maps.render_folium([sa]).get_root().render()
    assert "OpenStreetMap" in html


def test_result_layers_from_pipeline_context(tiny, tmp_path: Path) -> None:
    from gis import pipeline

    summary = pipeline.run(tiny.project.path, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "map.html").stat().st_size > 50_000
    assert (tmp_path / "out" / "map.png").stat().st_size > 5_000
    assert summary["map"]["html"] == "map.html"
    if "compliance" in summary["steps_run"]:
        page = (tmp_path / "out" / "map.html").read_text(encoding="utf-8")
        assert "需核查 needs review" in page  # legend of compliance verdicts
    if "hotspots" in summary["steps_run"] and summary["hotspots"]["hot_cells_99"]:
        assert "gi_grid" in summary["map"]["layers"]


def test_png_falls_back_to_matplotlib(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layers = maps.build_layers(tiny)
    monkeypatch.setattr(maps, "chromium_path", lambda: None)
    path, method = maps.save_map_png(tmp_path / "m.png", html_path=None, layers=layers, title="测试 test")
    assert method == "matplotlib"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_huge_point_layer_becomes_a_grid_of_counts(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above max_page_points a point layer is drawn as count cells: every point counted, no site on the page."""
    from gis import settings
    from gis.catalog import load_yaml

    assert maps.max_page_points(tiny) == int(load_yaml(settings.LAYERS_DIR / "map.yaml")["max_page_points"])
    monkeypatch.setattr(maps, "max_page_points", lambda d: 0)
    opt = maps.MapOptions(max_vector_polygons=4)
    layers = maps.build_layers(tiny, options=opt)
    sites = [lay for lay in layers if lay.key.startswith("sites_")]
    big = [lay for lay in sites if lay.kind == "polygon"]
    assert big, "no site layer was aggregated"
    for lay in big:
        tier = lay.key.removeprefix("sites_")
        assert lay.gdf["count"].astype(int).sum() == int((tiny.sites["tier"] == tier).sum())
        assert 1 <= lay.n <= 4 and "聚合" in lay.title
        assert (lay.gdf.geometry.geom_type == "Polygon").all() and str(lay.gdf.crs) == "EPSG:4326"
    html = maps.render_folium(big, opt).get_root().render()
    name = str(tiny.sites.loc[tiny.sites["tier"] == big[0].key.removeprefix("sites_"), "name"].iloc[0])
    assert name not in html


def test_coverage_gaps_are_shaded_by_uncovered_residents_per_km2() -> None:
    """A wide thin rural gap is drawn light and a small dense urban one dark (not one pink sheet)."""
    import geopandas as gpd
    from shapely.geometry import box

    dens = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 20000.0]
    gaps = gpd.GeoDataFrame({"population": [d * 2.0 for d in dens], "area_km2": [2.0] * len(dens)},
                            geometry=[box(i, 0, i + 1, 1) for i in range(len(dens))], crs=3857)
    colours, legend = maps.gap_classes(gaps)
    assert colours.iloc[0] == maps.GAP_COLOURS[0] and colours.iloc[-1] == maps.GAP_COLOURS[-1]
    order = [maps.GAP_COLOURS.index(c) for c in colours]
    assert order == sorted(order)  # denser never lighter
    assert [e[1] for e in legend] == sorted({*colours}, key=maps.GAP_COLOURS.index)
    assert legend[0][2].startswith("覆盖缺口 < ") and "人/km²" in legend[-1][2]
    no_area = maps.gap_classes(gaps.drop(columns="area_km2"))
    assert set(no_area[0]) == {maps.GAP_COLOURS[-1]} and len(no_area[1]) == 1
