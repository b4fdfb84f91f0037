"""gis.map_sheets: print-ready sheets read back (paper size, pages, fonts, texts, no missing glyph)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time
import warnings
from pathlib import Path

import matplotlib.colors as mcolors
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from gis import map_sheets, maps, settings, sheet_render
from gis._errors import AnalysisError
from gis.district import load_district

DAY = dt.date(2026, 3, 15)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from gis.testing import make_tiny_project

    return load_district(make_tiny_project(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture(scope="module")
def tiny_sheets(tiny, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sheets")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*[Gg]lyph.*missing")
        result = map_sheets.write_map_sheets(tiny, maps.build_layers(tiny), out, date=DAY)
    return tiny, out, result


def _pdf_pages(path: Path) -> list[tuple[float, float]]:
    """(width, height) in points of every page object of a PDF written by matplotlib."""
    raw = path.read_bytes()
    boxes = re.findall(rb"/Type /Page\b(?!s).*?/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", raw, flags=re.S)
    return [(float(w), float(h)) for w, h in boxes]


def test_one_sheet_per_township_plus_overview_png_and_pdf(tiny_sheets) -> None:
    d, out, result = tiny_sheets
    folder = out / "map_sheets"
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == len(d.townships) + 1 == result["sheets"]
    assert pngs[0].name.startswith("00_")
    for name in d.townships["township"]:
        assert any(name in p.stem for p in pngs), name
    pages = _pdf_pages(folder / "map_sheets.pdf")
    assert len(pages) == len(pngs)


def test_paper_sizes_are_landscape_a4_a3(tiny_sheets) -> None:
    d, out, result = tiny_sheets
    cfg = map_sheets.sheet_settings(d)
    pages = _pdf_pages(out / "map_sheets" / "map_sheets.pdf")
    pt = 72 / 25.4
    overview = map_sheets.PAPER_MM[cfg.overview_paper]
    sheet = map_sheets.PAPER_MM[cfg.paper]
    assert pages[0] == pytest.approx((overview[0] * pt, overview[1] * pt), abs=1.0)
    for w, h in pages[1:]:
        assert (w, h) == pytest.approx((sheet[0] * pt, sheet[1] * pt), abs=1.0)
    with Image.open(result["png"][1]) as im:
        assert im.size == pytest.approx((sheet[0] / 25.4 * cfg.dpi, sheet[1] / 25.4 * cfg.dpi), abs=2)


def test_pdf_embeds_the_cjk_font(tiny_sheets) -> None:
    _, out, result = tiny_sheets
    raw = (out / "map_sheets" / "map_sheets.pdf").read_bytes()
    family = result["font"].replace(" ", "").lower()
    fonts = [f.decode().lower() for f in re.findall(rb"/BaseFont /[A-Z]{6}\+([A-Za-z0-9-]+)", raw)]
    assert fonts and all(f.startswith(family) for f in fonts), fonts  # CJK font subset embedded, no fallback


def test_sheet_carries_title_date_legend_scale_north_and_sources(tiny) -> None:
    cfg = map_sheets.sheet_settings(tiny)
    sh = map_sheets._sheets(maps.build_layers(tiny), tiny.townships, tiny.project.name, True, cfg, DAY)
    name = str(sh.towns["township"].iloc[0])
    with map_sheets._cjk_style():
        fig = sheet_render.draw_sheet(map_sheets._township_spec(sh, 0))
    texts = [t.get_text() for t in fig.texts]
    ax, panel = fig.axes
    ax_texts = [t.get_text() for t in ax.texts]
    assert any(name in t and "图" in t for t in texts)  # title names the township
    assert any(DAY.isoformat() in t and tiny.project.name in t for t in texts)  # district and date
    footer = next(t for t in texts if t.startswith("数据来源"))
    assert settings.SAMPLE_LABEL in footer
    assert any(t.startswith("北") for t in ax_texts)  # north arrow: 北 N under a split head pointing up
    from matplotlib.patches import Polygon

    heads = [p for p in ax.patches if isinstance(p, Polygon) and p.get_transform() == ax.transAxes]
    assert sorted(mcolors.to_hex(p.get_facecolor()) for p in heads) == ["#000000", "#ffffff"]
    for head in heads:
        xy = head.get_xy()[:3]
        assert xy[0, 1] == xy[:, 1].max() and xy[0, 1] > 0.85  # its tip is its highest point, near the top
    assert any(re.search(r"\d+ (米 m|千米 km)$", t) for t in ax_texts)  # scale bar
    labels = [t.get_text() for t in panel.texts if t.get_gid() == "legend_label"]
    assert any(t.get_text() == "图例 Legend" for t in panel.texts)
    assert any("回收网点" in lab for lab in labels) and any("镇街" in lab for lab in labels)
    assert not ax.get_xticks().size and not ax.get_yticks().size  # no axis ticks on a print sheet


def test_osm_attribution_only_when_an_osm_layer_is_drawn(tiny) -> None:
    cfg = map_sheets.sheet_settings(tiny)
    layers = maps.build_layers(tiny)
    osm = next((lay for lay in layers if lay.attribution), None)
    sh = map_sheets._sheets(layers, tiny.townships, "区", False, cfg, DAY)
    assert ("OpenStreetMap" in sh.footer) == (osm is not None and osm.key in cfg.layers)
    assert settings.SAMPLE_LABEL not in sh.footer


def test_scale_bar_is_true_to_metres(tiny) -> None:
    """The sheets are drawn in a projected CRS, so x-limits are metres (the bar's units)."""
    cfg = map_sheets.sheet_settings(tiny)
    sh = map_sheets._sheets(maps.build_layers(tiny), tiny.townships, "区", False, cfg, DAY)
    assert sh.towns.crs.is_projected and sh.towns.crs.axis_info[0].unit_name == "metre"
    utm = tiny.townships.to_crs(tiny.townships.estimate_utm_crs())
    assert sh.towns.area.sum() == pytest.approx(utm.area.sum(), rel=0.01)


@given(st.floats(min_value=10.0, max_value=5e6))
def test_nice_scale_length(span: float) -> None:
    length = map_sheets.nice_scale_length(span)
    mantissa = length / 10 ** math.floor(math.log10(length) + 1e-12)
    assert round(mantissa, 6) in (1.0, 2.0, 5.0)
    assert length <= span / 5 < 2.5 * length + 1e-9


def test_no_cjk_font_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(map_sheets, "CJK_FONT_FAMILIES", ("No Such Font 字体",))
    monkeypatch.setattr(map_sheets, "CJK_FONT_FILES", ("/nonexistent/font.ttc",))
    with pytest.raises(AnalysisError, match="fonts-noto-cjk"):
        map_sheets.find_cjk_font()


def test_bad_sheet_settings_name_the_key() -> None:
    with pytest.raises(AnalysisError, match="map.sheets.paper 'B5'"):
        map_sheets.SheetSettings.from_section({"enabled": True, "paper": "B5", "overview_paper": "A3", "dpi": 100,
                                               "pad_ratio": 0.1, "layers": [], "png_compress_level": 1, "workers": 2})
    with pytest.raises(AnalysisError, match="missing dpi"):
        map_sheets.SheetSettings.from_section({"enabled": True, "paper": "A4", "overview_paper": "A3", "pad_ratio": 0.1,
                                               "layers": [], "png_compress_level": 1, "workers": 2})


def test_sample_overview_renders_every_chinese_glyph_fast(sample_district, tmp_path: Path) -> None:
    """map.png of the sample district: no missing glyph (every township name), under 3 s a sheet."""
    layers = maps.build_layers(sample_district)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*[Gg]lyph.*missing")
        map_sheets.render_overview_png(sample_district, layers, tmp_path / "warm.png", date=DAY)  # font loaded
        t0 = time.process_time()  # CPU time: the machine is shared, wall time is not the sheet's cost
        png = map_sheets.render_overview_png(sample_district, layers, tmp_path / "map.png", date=DAY)
        elapsed = time.process_time() - t0
    cfg = map_sheets.sheet_settings(sample_district)
    with Image.open(png) as im:
        w_mm, h_mm = map_sheets.PAPER_MM[cfg.overview_paper]
        assert im.size == pytest.approx((w_mm / 25.4 * cfg.dpi, h_mm / 25.4 * cfg.dpi), abs=2)
        assert len(im.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50  # drawn, not blank
    assert elapsed < 3.0, f"overview sheet took {elapsed:.1f} s of CPU"


def test_pipeline_writes_map_sheets_and_print_map_png(tiny, tmp_path: Path) -> None:
    from gis import pipeline

    summary = pipeline.run(tiny.project.path, tmp_path / "out", steps=["maps"], progress=False)
    sheets = summary["map"]["sheets"]
    assert (tmp_path / "out" / sheets["pdf"]).stat().st_size > 10_000
    assert len(sheets["png"]) == len(tiny.townships) + 1
    with Image.open(tmp_path / "out" / "map.png") as im:
        assert im.size[0] > im.size[1]  # the landscape overview sheet, not a browser screenshot


def test_sheets_can_be_switched_off(tiny, tmp_path: Path) -> None:
    cfg = dataclasses.replace(map_sheets.sheet_settings(tiny), enabled=False)
    result = map_sheets.write_map_sheets(tiny, maps.build_layers(tiny), tmp_path, settings=cfg)
    assert result["sheets"] == 0 and not (tmp_path / "map_sheets").exists()


def test_worker_processes_draw_the_same_sheets_as_one_process(tiny, tmp_path: Path) -> None:
    """``sheets.workers`` changes who draws, not what: same PNG pixels, same PDF pages."""
    from PIL import ImageChops

    layers = maps.build_layers(tiny)
    cfg = map_sheets.sheet_settings(tiny)
    one = map_sheets.write_map_sheets(tiny, layers, tmp_path / "one", settings=dataclasses.replace(cfg, workers=1),
                                      date=DAY)
    three = map_sheets.write_map_sheets(tiny, layers, tmp_path / "three",
                                        settings=dataclasses.replace(cfg, workers=3), date=DAY)
    assert [p.name for p in one["png"]] == [p.name for p in three["png"]]
    for a, b in zip(one["png"], three["png"]):
        with Image.open(a) as ia, Image.open(b) as ib:
            assert ia.size == ib.size and ImageChops.difference(ia, ib).getbbox() is None, a.name
    assert len(_pdf_pages(one["pdf"])) == len(_pdf_pages(three["pdf"])) == len(one["png"])
    assert not list((tmp_path / "three" / "map_sheets").glob(".*"))  # no temporary file left behind


def test_long_footer_is_wrapped_within_the_sheet(tiny) -> None:
    """A footer with many attributions breaks into lines, each narrower than the sheet (measured by matplotlib)."""
    cfg = map_sheets.sheet_settings(tiny)
    sh = map_sheets._sheets(maps.build_layers(tiny), tiny.townships, tiny.project.name, True, cfg, DAY)
    long = "；".join([sh.footer] + [f"© 数据提供单位 Data provider number {i} (CC BY 4.0)" for i in range(6)])
    sh = dataclasses.replace(sh, footer=long)
    spec = map_sheets._township_spec(sh, 0)
    assert spec.footer.count("\n") >= 1 and re.sub(r"\s", "", spec.footer) == re.sub(r"\s", "", long)  # nothing lost
    with map_sheets._cjk_style():
        fig = sheet_render.draw_sheet(spec)
        renderer = fig.canvas.get_renderer()
        footer = next(t for t in fig.texts if t.get_text().startswith("数据来源"))
        lines = footer.get_text().split("\n")
        widths = [footer.__class__(0, 0, line, fontsize=footer.get_fontsize(), figure=fig)
                  .get_window_extent(renderer).width for line in lines]
    assert max(widths) < 0.975 * fig.bbox.width  # from x = 0.025 of the sheet to its right edge


def test_png_writer_round_trips_through_pil(tmp_path: Path) -> None:
    """gis.sheet_render.png_bytes: PIL reads back the same pixels and the resolution."""
    import numpy as np

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    rgb[10:20] = (255, 255, 255)  # a flat band, as on a sheet
    path = tmp_path / "x.png"
    path.write_bytes(sheet_render.png_bytes(rgb, 150, 1))
    with Image.open(path) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgb)
        assert im.info["dpi"] == pytest.approx((150, 150), abs=0.1)


def test_a_failing_worker_is_reported_in_one_line(tiny, tmp_path: Path) -> None:
    """A drawing worker that fails makes result() raise an AnalysisError naming the worker's error."""
    cfg = dataclasses.replace(map_sheets.sheet_settings(tiny), workers=2)
    sh = map_sheets._sheets(maps.build_layers(tiny), tiny.townships, "区", False, cfg, DAY)
    bad = dataclasses.replace(map_sheets._township_spec(sh, 0), paper="B5")  # no such paper: the worker fails
    font = map_sheets.find_cjk_font()
    task = sheet_render.SheetTask((bad,), str(tmp_path), png=True, pdf=None, claims=None, reverse=False, pdf_title="",
                                  font=font, font_file=None, png_compress_level=1)
    (workers, scratch) = map_sheets._start_workers(1)
    job = map_sheets.SheetJob(tiny, settings=dataclasses.replace(cfg, enabled=False))
    job._workers, job._scratch, job._tasks = workers, scratch, [task]
    workers[0].send([task])
    with pytest.raises(AnalysisError, match=r"drawing worker failed: KeyError: 'B5'"):
        job.result()
    assert not Path(scratch.name).exists()  # scratch folder removed
