"""Print-ready map sheets (出图): one sheet per 镇街 plus a district overview.

Planners print maps for meetings, so ``gis run`` writes ``OUT/map_sheets/``: a PNG per
sheet and one combined PDF (``map_sheets.pdf``). Every sheet carries a title, the
district name and the date, a legend, a scale bar, a north arrow and a data-source /
attribution line (``© OpenStreetMap contributors (ODbL 1.0)`` when an OSM-derived layer
is drawn, the 样例数据 label for the sample district) and no interactive control.

The sheets are drawn with matplotlib from the renderer-independent layers of
:func:`gis.maps.build_layers` (townships, 四山 zones by level, sites by tier and verdict,
coverage gaps, recommended sites, hot-spot clusters), re-projected once into a metric
CRS so that the scale bar is true: a bar of ``L`` metres spans ``L`` map units.
:func:`render_overview_png` draws the same overview as ``map.png``.

This module prepares the sheets (one :class:`gis.sheet_render.SheetSpec` each: the layers
cut to the sheet's frame as coordinate arrays, the legend of what shows, the texts);
:mod:`gis.sheet_render` draws and saves them. With ``sheets.workers`` ≥ 2 the drawing
runs in spawned worker processes — one writes the PDF (every page, the CJK font embedded
once) and then helps with the PNGs, the others draw the PNGs — while the caller goes on:
``SheetJob(district)`` starts the workers (``gis run`` then builds the map layers),
:meth:`SheetJob.submit` hands them the sheets (``gis run`` then writes ``map.html``) and
:meth:`SheetJob.result` waits for the files. :func:`write_map_sheets` does all three.

Chinese text needs a CJK font: :func:`find_cjk_font` finds an installed one (Noto Sans
CJK from ``fonts-noto-cjk`` or WenQuanYi Micro Hei from ``fonts-wqy-microhei``) and
fails with a one-line message naming the package to install when there is none.

Sheet settings (paper, dpi, padding, which layers, workers) live in ``layers/map.yaml`` under
``sheets:`` (per district under ``map: sheets:`` in ``project.yaml``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import shapely

from gis import sheet_render
from gis._errors import AnalysisError
from gis.sheet_render import PAPER_MM, Shapes, SheetSpec, SheetTask

if TYPE_CHECKING:
    from gis.district import District

__all__ = [
    "PAPER_MM",
    "SheetJob",
    "SheetSettings",
    "find_cjk_font",
    "nice_scale_length",
    "render_overview_png",
    "project_sheet_settings",
    "sheet_settings",
    "start_map_sheets",
    "write_map_sheets",
]

#: CJK font families looked for, best first, and the files that provide them.
CJK_FONT_FAMILIES: tuple[str, ...] = ("Noto Sans CJK SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                                      "Source Han Sans SC", "SimHei", "Microsoft YaHei")
CJK_FONT_FILES: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
#: Footer font size (pt), the share of the sheet's width it may fill, and the widths (em) a
#: character of display width 1 (Latin) and 2 (CJK) is budgeted when the footer is wrapped.
_FOOTER_PT = 7.0
_FOOTER_WIDTH = 0.95
_EM_PER_DISPLAY_UNIT = {1: 0.6, 2: 1.0}
_LEGEND_LABEL_WIDTH = 44
_PT_PER_MM = 72 / 25.4


@dataclass(frozen=True)
class SheetSettings:
    """How map sheets are laid out (``layers/map.yaml`` → ``sheets:``).

    Attributes
    ----------
    paper, overview_paper
        ``A4`` or ``A3`` (landscape) for the township sheets and the district overview.
    dpi
        Resolution of the PNGs (the PDF is vector).
    pad_ratio
        A township sheet shows the township's bounding box grown by this share of its
        larger side on every edge.
    layers
        Keys of the :class:`gis.maps.MapLayer` drawn (bottom to top as built).
    enabled
        Write ``map_sheets/`` in ``gis run`` (switch off for bulk runs, e.g. benchmarks).
    png_compress_level
        zlib level of the PNGs (0–9): 1 writes them twice as fast as 6, ~10 % larger.
    workers
        Processes that draw the sheets: 1 draws them in the calling process; n ≥ 2 spawns
        n workers (one writes the PDF, all share the PNGs).
    """

    enabled: bool
    paper: str
    overview_paper: str
    dpi: int
    pad_ratio: float
    layers: tuple[str, ...]
    png_compress_level: int
    workers: int

    @classmethod
    def from_section(cls, section: Mapping[str, Any], source: str = "layers/map.yaml") -> SheetSettings:
        """Settings from the ``sheets`` mapping; a missing or wrong key is a one-line error."""
        s = dict(section or {})
        missing = [k for k in ("enabled", "paper", "overview_paper", "dpi", "pad_ratio", "layers", "png_compress_level",
                               "workers") if s.get(k) is None]
        if missing:
            raise AnalysisError(f"{source}: map.sheets is missing {', '.join(missing)}")
        for key in ("paper", "overview_paper"):
            if str(s[key]).upper() not in PAPER_MM:
                raise AnalysisError(f"{source}: map.sheets.{key} '{s[key]}' is not one of {', '.join(PAPER_MM)}")
        return cls(enabled=bool(s["enabled"]), paper=str(s["paper"]).upper(), overview_paper=str(s["overview_paper"]).upper(),
                   dpi=int(s["dpi"]), pad_ratio=float(s["pad_ratio"]), layers=tuple(str(k) for k in s["layers"]),
                   png_compress_level=int(s["png_compress_level"]), workers=max(int(s["workers"]), 1))


def sheet_settings(district: District) -> SheetSettings:
    """The district's sheet settings (``layers/map.yaml`` merged with its ``map:`` section)."""
    return project_sheet_settings(getattr(district, "project", None))


def project_sheet_settings(project: Any) -> SheetSettings:
    """A project's sheet settings (``layers/map.yaml`` merged with its ``map:`` section; None: the catalogue's)."""
    if project is not None and hasattr(project, "section"):
        return SheetSettings.from_section(project.section("map").get("sheets") or {})
    from gis import settings
    from gis.catalog import load_yaml

    return SheetSettings.from_section((load_yaml(settings.LAYERS_DIR / "map.yaml") or {}).get("sheets") or {})


def find_cjk_font() -> str:
    """Family name of an installed CJK font, registered with matplotlib.

    Looks for :data:`CJK_FONT_FAMILIES` among matplotlib's known fonts, then adds the
    first existing file of :data:`CJK_FONT_FILES` (matplotlib's font cache may predate
    the font's installation).

    Raises
    ------
    AnalysisError
        When no CJK font is installed (names the Debian packages that provide one).
    """
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONT_FAMILIES:
        if name in known:
            return name
    for path in CJK_FONT_FILES:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    raise AnalysisError("no CJK font installed for the map sheets: install fonts-noto-cjk or fonts-wqy-microhei "
                        "(apt-get install fonts-noto-cjk), then run again")


@contextlib.contextmanager
def _cjk_style() -> Iterator[str]:
    """matplotlib rc settings of a sheet (:func:`gis.sheet_render.cjk_style`) with the installed CJK font."""
    font = find_cjk_font()
    with sheet_render.cjk_style(font):
        yield font


def _font_file(font: str) -> str | None:
    """The file of the CJK font ``font`` (a worker registers it when its font cache lacks it)."""
    from matplotlib import font_manager

    return next((f.fname for f in font_manager.fontManager.ttflist if f.name == font), None)


def nice_scale_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 × 10ⁿ metres) of about a fifth of ``span_m``.

    .. math:: L = \\max\\{m \\cdot 10^{n} \\le s/5 : m \\in \\{1, 2, 5\\}\\},\\quad n = \\lfloor \\log_{10}(s/5) \\rfloor

    See :func:`gis.sheet_render.nice_scale_length` (which draws it); a span that is not
    positive is an :class:`~gis._errors.AnalysisError` here.
    """
    try:
        return sheet_render.nice_scale_length(span_m)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None


def _metric_crs(townships: gpd.GeoDataFrame) -> Any:
    """The townships' CRS when it is projected (metres), else their UTM zone."""
    if townships.crs is not None and townships.crs.is_projected:
        return townships.crs
    return townships.estimate_utm_crs()


@dataclass(frozen=True)
class _SheetLayer:
    """A display layer in the sheets' metric CRS, as arrays (cut per sheet without pandas).

    Attributes
    ----------
    layer
        The :class:`gis.maps.MapLayer` (key, kind, legend, attribution, fill_opacity, size).
    geoms, colours, bounds
        Its features, their ``_color`` and their bounding boxes (``n × 4``).
    symbol
        Marker of a point layer (``_symbol``).
    """

    layer: Any
    geoms: np.ndarray
    colours: np.ndarray
    bounds: np.ndarray
    symbol: str


def _prepare(layers: Sequence[Any], keys: Sequence[str], crs: Any) -> list[_SheetLayer]:
    """The sheet's layers (in ``keys``, with features) re-projected once into ``crs``."""
    wanted = set(keys)
    out = []
    for lay in layers:
        if lay.key in wanted and lay.gdf is not None and len(lay.gdf):
            g = lay.gdf.to_crs(crs)
            geoms = np.asarray(g.geometry.values, dtype=object)
            symbol = str(g["_symbol"].iloc[0]) if "_symbol" in g else "circle"
            out.append(_SheetLayer(lay, geoms, g["_color"].astype(str).to_numpy(dtype=object),
                                   shapely.bounds(geoms), symbol))
    return out


def _grown(extent: Sequence[float]) -> tuple[float, float, float, float]:
    """``extent`` grown by 2 % of its larger side (cut edges then fall outside the frame)."""
    x0, y0, x1, y1 = extent
    m = 0.02 * max(x1 - x0, y1 - y0)
    return x0 - m, y0 - m, x1 + m, y1 + m


def _hits(geoms: np.ndarray, bounds: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Indices of the features that meet ``box`` (bounding boxes first, then :func:`shapely.intersects`)."""
    x0, y0, x1, y1 = box
    near = np.flatnonzero((bounds[:, 0] <= x1) & (bounds[:, 2] >= x0) & (bounds[:, 1] <= y1) & (bounds[:, 3] >= y0))
    return near[shapely.intersects(geoms[near], shapely.box(x0, y0, x1, y1))]


def _clipped(geoms: np.ndarray, colours: np.ndarray, bounds: np.ndarray, box: Sequence[float], *,
             polygons: bool) -> tuple[np.ndarray, np.ndarray]:
    """The features in ``box`` and their colours; polygons cut to it (:func:`shapely.clip_by_rect`).

    A township sheet so draws — and its PDF page stores — only what shows.
    """
    i = _hits(geoms, bounds, box)
    g, c = geoms[i], colours[i]
    if polygons and len(g):
        g = shapely.clip_by_rect(g, *box)
        keep = ~shapely.is_empty(g)
        g, c = g[keep], c[keep]
    return g, c


def _rings(geoms: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every ring of the polygons in ``geoms`` as an ``n × 2`` array, exterior before holes.

    Returns
    -------
    (rings, feature, polygon)
        The rings, the index in ``geoms`` of each ring's feature, and a running number of
        each ring's polygon (a multipolygon's parts are separate polygons).
    """
    polys, feature = shapely.get_parts(geoms, return_index=True)
    keep = shapely.get_type_id(polys) == 3  # Polygon (a clip may leave lines or points in a collection)
    polys, feature = polys[keep], feature[keep]
    rings, polygon = shapely.get_rings(polys, return_index=True)
    if not len(rings):
        return [], np.empty(0, dtype=int), np.empty(0, dtype=int)
    coords, ring = shapely.get_coordinates(rings, return_index=True)
    arrays = np.split(coords, np.flatnonzero(np.diff(ring)) + 1)
    return arrays, feature[polygon], polygon


def _polygon_shapes(geoms: np.ndarray, colours: np.ndarray, z: float, *, fill_alpha: float | None,
                    edge_width: float) -> list[Shapes]:
    """A polygon layer as one fill collection (when ``fill_alpha`` is set) and one collection of its rings."""
    rings, feature, polygon = _rings(geoms)
    if not rings:
        return []
    out = [Shapes("line", tuple(rings), tuple(colours[feature]), z, None, edge_width, "", 0.0, False)]
    if fill_alpha is not None:
        starts = np.r_[0, np.flatnonzero(np.diff(polygon)) + 1]
        parts = tuple(tuple(rings[a:b]) for a, b in zip(starts, np.r_[starts[1:], len(rings)]))
        out.insert(0, Shapes("fill", parts, tuple(colours[feature[starts]]), z, fill_alpha, 0.0, "", 0.0, False))
    return out


def _layer_shapes(sl: _SheetLayer, geoms: np.ndarray, colours: np.ndarray, z: int) -> list[Shapes]:
    """Polygons (outline, or fill and outline) or points (shape per tier, colour per verdict) of a layer."""
    lay = sl.layer
    if not len(geoms):
        return []
    if lay.kind == "polygon":
        if lay.key == "townships":
            return _polygon_shapes(geoms, colours, z, fill_alpha=None, edge_width=0.8)
        return _polygon_shapes(geoms, colours, z, fill_alpha=min(max(lay.fill_opacity, 0.25), 0.6), edge_width=0.5)
    xy = np.c_[shapely.get_x(geoms), shapely.get_y(geoms)]
    return [Shapes("points", (xy,), tuple(colours), 20 + z, None, 0.5, sl.symbol, max(lay.size, 8) * 2.2,
                   sl.symbol == "ring")]


def _legend(layers: Sequence[_SheetLayer], extent: Sequence[float]) -> tuple[tuple[str, str, str], ...]:
    """One legend entry per label of the layers with a feature on the sheet, without repeats.

    The verdict keys (违规 / 需核查 / 合规) ride on the site layers after each tier's
    symbol; they are kept whenever any site layer is on the sheet. Long bilingual labels
    break before their English part.
    """
    on = [(sl.layer, sl.layer.legend) for sl in layers if len(_hits(sl.geoms, sl.bounds, extent))]
    if any(lay.key.startswith("sites_") for lay, _ in on):
        keep = {id(lay) for lay, _ in on}
        on += [(sl.layer, sl.layer.legend[1:]) for sl in layers
               if sl.layer.key.startswith("sites_") and id(sl.layer) not in keep and len(sl.layer.legend) > 1]
    seen: set[str] = set()
    entries = []
    for _, legend in on:
        for shape, colour, label in legend:
            if label not in seen:
                seen.add(label)
                entries.append((str(shape), str(colour), _wrap_label(str(label), _LEGEND_LABEL_WIDTH)))
    return tuple(entries)


def _extent(bounds: Sequence[float], pad_ratio: float, aspect: float) -> tuple[float, float, float, float]:
    """``bounds`` grown by ``pad_ratio`` of the larger side, then widened to the frame's aspect (w/h)."""
    minx, miny, maxx, maxy = bounds
    pad = pad_ratio * max(maxx - minx, maxy - miny, 1.0)
    minx, miny, maxx, maxy = minx - pad, miny - pad, maxx + pad, maxy + pad
    w, h = maxx - minx, maxy - miny
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def _wrap_label(label: str, max_width: int) -> str:
    """Break a bilingual legend label before its English part when it is wider than ``max_width``.

    Width counts a CJK character as 2 (:func:`gis.export._display_width`).
    """
    from gis.export import _display_width

    if _display_width(label) <= max_width:
        return label
    m = re.search(r" (?=[A-Za-z])", label)
    return label[: m.start()] + "\n" + label[m.end():] if m else label


def _wrap_footer(text: str, paper: str) -> str:
    r"""The footer broken into lines that fit the sheet's width, at ``；`` (else at spaces).

    A line of characters :math:`c_i` is budgeted :math:`\sum_i e(c_i) \cdot 7\,\mathrm{pt}`
    wide, :math:`e` = 0.6 em for a Latin character and 1 em for a CJK one (display width 1
    or 2, :func:`gis.export._display_width`), against 95 % of the paper's width. Wrapping
    here, once, replaces matplotlib's ``wrap=True``, which measures the text word by word
    each time the sheet is drawn.
    """
    from gis.export import _display_width

    limit = _FOOTER_WIDTH * PAPER_MM[paper][0] * _PT_PER_MM / _FOOTER_PT  # em

    def width(s: str) -> float:
        return sum(_EM_PER_DISPLAY_UNIT[min(max(_display_width(ch), 1), 2)] for ch in s)

    lines: list[str] = []
    for piece in re.split(r"(?<=；)|(?<= )", text):
        if lines and width(lines[-1] + piece) <= limit:
            lines[-1] += piece
        else:
            lines.append(piece)
    return "\n".join(line.rstrip() for line in lines)


def _footer(layers: Sequence[_SheetLayer], district_name: str, sample: bool) -> str:
    """数据来源 line: the district's layers, every required attribution, the sample label."""
    from gis import settings

    parts = [f"数据来源 Data: {district_name}图层及本工具分析结果"]
    for sl in layers:
        if sl.layer.attribution and sl.layer.attribution not in parts:
            parts.append(sl.layer.attribution)
    if sample:
        parts.append(settings.SAMPLE_LABEL)
    return "；".join(parts)


def _safe_name(text: str) -> str:
    """A file-name-safe form of a township name (path separators and controls removed)."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f\s]+', "_", text).strip("._") or "township"


@dataclass(frozen=True)
class _Sheets:
    """Everything the sheets of one district share (layers projected once).

    ``label_xy`` holds a point inside each township (where its name goes); ``town_geoms``
    and ``town_bounds`` the townships as arrays (a township sheet's frame and the mask over
    the other townships).
    """

    layers: list[_SheetLayer]
    towns: gpd.GeoDataFrame
    label_xy: np.ndarray
    town_geoms: np.ndarray
    town_bounds: np.ndarray
    district_name: str
    footer: str
    date: str
    crs_name: str
    settings: SheetSettings


def _sheets(layers: Sequence[Any], townships: gpd.GeoDataFrame, district_name: str, sample: bool,
            settings: SheetSettings, date: dt.date | None) -> _Sheets:
    """Project the sheet layers and townships into the metric CRS and compose the footer."""
    if townships is None or not len(townships):
        raise AnalysisError("map sheets: the district has no townships layer (one sheet is drawn per 镇街)")
    crs = _metric_crs(townships)
    prepared = _prepare(layers, settings.layers, crs)
    day = (date or dt.date.today()).isoformat()
    towns = townships.to_crs(crs)
    geoms = np.asarray(towns.geometry.values, dtype=object)
    pts = shapely.point_on_surface(geoms)
    return _Sheets(prepared, towns, np.c_[shapely.get_x(pts), shapely.get_y(pts)], geoms, shapely.bounds(geoms),
                   district_name, _footer(prepared, district_name, sample), day, crs.name, settings)


def _labels(sh: _Sheets, extent: Sequence[float]) -> tuple[tuple[float, float, str], ...]:
    """Township names at a point inside each township that lies in the frame."""
    minx, miny, maxx, maxy = extent
    x, y = sh.label_xy[:, 0], sh.label_xy[:, 1]
    inside = np.flatnonzero((minx <= x) & (x <= maxx) & (miny <= y) & (y <= maxy))
    names = sh.towns["township"].astype(str).to_numpy()
    return tuple((float(x[i]), float(y[i]), str(names[i])) for i in inside)


def _spec(sh: _Sheets, stem: str, paper: str, page: tuple[str, str], focus: int | None) -> SheetSpec:
    """One sheet: the overview (``focus`` None) or the sheet of the ``focus``-th township."""
    cfg = sh.settings
    bounds = sh.town_bounds[focus] if focus is not None else sh.towns.total_bounds
    extent = _extent(bounds, cfg.pad_ratio if focus is not None else cfg.pad_ratio / 4,
                     sheet_render.frame_aspect(paper))
    box = _grown(extent)
    shapes: list[Shapes] = []
    for z, sl in enumerate(sh.layers, start=2):
        geoms, colours = ((sl.geoms, sl.colours) if focus is None else
                          _clipped(sl.geoms, sl.colours, sl.bounds, box, polygons=sl.layer.kind == "polygon"))
        shapes += _layer_shapes(sl, geoms, colours, z)
    if focus is not None:
        others = np.flatnonzero(np.arange(len(sh.town_geoms)) != focus)
        g, _ = _clipped(sh.town_geoms[others], np.full(len(others), "#ffffff", dtype=object),
                        sh.town_bounds[others], box, polygons=True)
        white = np.full(len(g), "#ffffff", dtype=object)
        shapes += [s for s in _polygon_shapes(g, white, 15, fill_alpha=0.55, edge_width=0.0) if s.kind == "fill"]
        red = np.array(["#c00000"], dtype=object)
        shapes += _polygon_shapes(sh.town_geoms[[focus]], red, 16, fill_alpha=None, edge_width=2.0)
    return SheetSpec(stem, paper, cfg.dpi, extent, tuple(shapes), _labels(sh, extent), 7 if focus is None else 8,
                     _legend(sh.layers, extent), page[0], page[1], _wrap_footer(sh.footer, paper))


def _overview_spec(sh: _Sheets, stem: str) -> SheetSpec:
    """The district overview sheet (all townships)."""
    page = (f"{sh.district_name}再生资源回收网络与问题点位总图",
            f"{sh.district_name} · 全区 {len(sh.towns)} 个镇街 · 制图日期 {sh.date} · 坐标系 {sh.crs_name}")
    return _spec(sh, stem, sh.settings.overview_paper, page, None)


def _township_spec(sh: _Sheets, i: int) -> SheetSpec:
    """The sheet of the ``i``-th township (file ``NN_<name>``)."""
    name = str(sh.towns["township"].iloc[i])
    page = (f"{sh.district_name}{name}再生资源回收网络与问题点位图",
            f"{sh.district_name} · {name} · 制图日期 {sh.date} · 坐标系 {sh.crs_name}")
    return _spec(sh, f"{i + 1:02d}_{_safe_name(name)}", sh.settings.paper, page, i)


def _tasks(specs: Sequence[SheetSpec], folder: Path, sh: _Sheets, font: str, claims: Path | None) -> list[SheetTask]:
    """The workers' tasks: one draws every page of the PDF and then helps with the PNGs, the others draw PNGs.

    With one worker a single task draws each sheet once and saves it both ways. With
    several, each PNG is claimed in ``claims`` before it is drawn (see
    :class:`gis.sheet_render.SheetTask`), so the work balances itself whatever the machine's load.
    """
    cfg = sh.settings
    common = {"sheets": tuple(specs), "folder": str(folder), "pdf_title": f"{sh.district_name}再生资源回收网络图集",
              "font": font, "font_file": _font_file(font), "png_compress_level": cfg.png_compress_level}
    pdf = str(folder / "map_sheets.pdf")
    if cfg.workers <= 1 or claims is None:
        return [SheetTask(png=True, pdf=pdf, claims=None, reverse=False, **common)]
    return [SheetTask(png=True, pdf=pdf, claims=str(claims), reverse=True, **common)] + [
        SheetTask(png=True, pdf=None, claims=str(claims), reverse=False, **common) for _ in range(cfg.workers - 1)]


class _Worker:
    """A spawned drawing process: ``python -m gis.sheet_render``, fed its :class:`SheetTask` list.

    It starts at once and imports matplotlib while this process prepares the sheets;
    :meth:`send` hands it its tasks (pickles in ``scratch``, their paths on the worker's
    stdin); it runs the first and forks a child for each other
    (:func:`gis.sheet_render.run_tasks`). A plain child process rather than
    :mod:`multiprocessing`: nothing of the caller's ``__main__`` is re-imported, so a
    script without a main guard works too.
    """

    def __init__(self, scratch: Path, n: int) -> None:
        import os
        import subprocess
        import sys

        root = str(Path(sheet_render.__file__).resolve().parent.parent)  # this copy of gis
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._scratch, self._n = scratch, n
        self._stderr = open(scratch / f"worker{n}.err", "w+b")  # noqa: SIM115 (closed in wait)
        self._proc = subprocess.Popen([sys.executable, "-m", "gis.sheet_render"], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._stderr, env=env)

    def send(self, tasks: Sequence[SheetTask]) -> None:
        """Give the worker its tasks (none: nothing to do, it exits); later calls do nothing."""
        import pickle

        if self._proc.stdin.closed:
            return
        lines = []
        for i, task in enumerate(tasks):
            path = self._scratch / f"task{self._n}_{i}.pickle"
            path.write_bytes(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
            lines.append(str(path).encode() + b"\n")
        try:
            self._proc.stdin.write(b"".join(lines))
        finally:
            self._proc.stdin.close()

    def wait(self) -> str | None:
        """Wait for the worker; its last line of error output when it failed, else None."""
        code = self._proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace").strip().splitlines()
        self._stderr.close()
        return None if code == 0 else (err[-1] if err else f"exit status {code}")


class SheetJob:
    """Map sheets of one district being drawn, in three calls that let the caller work in between.

    ``SheetJob(district)`` starts the drawing workers (``sheets.workers`` ≥ 2) — they import
    matplotlib while the caller builds the display layers; :meth:`submit` prepares the
    sheets from the layers and hands them over; :meth:`result` waits for the files. With
    one worker (or sheets switched off) the drawing happens in :meth:`result`.

    Parameters
    ----------
    district
        The loaded district (townships, ``project.name``, ``project.sample``); None when the
        job is started before the district is loaded (``settings`` then given, and the
        district handed over with :meth:`attach` before :meth:`submit`).
    settings
        Sheet settings (default: :func:`sheet_settings` of the district).
    date
        Date printed on the sheets (default: today).
    """

    def __init__(self, district: District | None, *, settings: SheetSettings | None = None,
                 date: dt.date | None = None) -> None:
        if district is None and settings is None:
            raise ValueError("SheetJob: give the district or the settings")
        self._district, self._date = district, date
        self._settings = settings or sheet_settings(district)
        self._tasks: list[SheetTask] = []
        self._summary: dict[str, Any] = {"pdf": None, "png": [], "sheets": 0, "font": None}
        self._font = find_cjk_font() if self._settings.enabled else None
        self._workers: list[_Worker] = []
        self._scratch: Any | None = None
        if self._settings.enabled and self._settings.workers > 1:
            self._workers, self._scratch = _start_workers(self._settings.workers)

    def attach(self, district: District) -> SheetJob:
        """The district whose sheets this job draws (a job started before the district was loaded)."""
        self._district = district
        return self

    def submit(self, layers: Sequence[Any], out: str | Path) -> SheetJob:
        """Prepare the sheets of ``layers`` (cut to each frame) for ``out/map_sheets/`` and start drawing them."""
        if not self._settings.enabled:
            return self
        if self._district is None:
            raise ValueError("SheetJob.submit: attach the district first")
        try:
            project = getattr(self._district, "project", None)
            sh = _sheets(layers, self._district.townships, str(getattr(project, "name", "") or ""),
                         bool(getattr(project, "sample", False)), self._settings, self._date)
            folder = Path(out) / "map_sheets"
            folder.mkdir(parents=True, exist_ok=True)
            specs = [_overview_spec(sh, "00_区县总图")] + [_township_spec(sh, i) for i in range(len(sh.towns))]
            claims = Path(self._scratch.name) if self._scratch is not None else None
            self._tasks = _tasks(specs, folder, sh, self._font, claims)
        except BaseException:
            self._stop()
            raise
        for w, share in zip(self._workers, _shares(self._tasks, len(self._workers))):
            w.send(share)
        self._summary = {"pdf": folder / "map_sheets.pdf", "png": [folder / f"{s.stem}.png" for s in specs],
                         "sheets": len(specs), "font": self._font}
        return self

    def close(self) -> None:
        """Stop the drawing workers without drawing (the run failed before the sheets were submitted)."""
        self._stop()

    def _stop(self) -> list[str]:
        """Let the workers finish (an idle one is told to exit); their error lines. Removes the scratch folder."""
        for w in self._workers:
            w.send(())  # no-op for a worker that has its tasks
        errors = [e for e in (w.wait() for w in self._workers) if e]
        if self._scratch is not None:
            self._scratch.cleanup()
        self._workers, self._scratch = [], None
        return errors

    def result(self) -> dict[str, Any]:
        """``pdf`` (path), ``png`` (paths, overview first), ``sheets`` (count), ``font``, once every file is written.

        Raises
        ------
        AnalysisError
            A drawing worker failed (its last error line).
        """
        if not self._workers:
            for t in self._tasks:
                sheet_render.render_task(t)
        errors = self._stop()
        self._tasks = []
        if errors:
            raise AnalysisError(f"map sheets: a drawing worker failed: {errors[0]}")
        return self._summary


def _start_workers(n: int) -> tuple[list[_Worker], Any]:
    """The spawned drawing processes for ``n`` workers, started now, and their scratch folder.

    One process when it can fork the others once matplotlib is imported
    (:func:`gis.sheet_render.can_fork`), else ``n``. The folder is a
    :class:`tempfile.TemporaryDirectory`.
    """
    import tempfile

    scratch = tempfile.TemporaryDirectory(prefix="gis_sheets_")
    spawned = 1 if sheet_render.can_fork() else n
    return [_Worker(Path(scratch.name), i) for i in range(spawned)], scratch


def _shares(tasks: Sequence[SheetTask], processes: int) -> list[list[SheetTask]]:
    """``tasks`` dealt to ``processes`` spawned workers: all to one that forks, else one each."""
    if processes <= 1:
        return [list(tasks)]
    return [list(tasks[i:i + 1]) for i in range(processes)]


def start_map_sheets(district: District, layers: Sequence[Any], out: str | Path, *,
                     settings: SheetSettings | None = None, date: dt.date | None = None) -> SheetJob:
    """Start writing ``out/map_sheets/`` (see :func:`write_map_sheets`); returns at once with ``workers`` ≥ 2.

    ``SheetJob(district, ...).submit(layers, out)``: call :meth:`SheetJob.result` before
    using the files.
    """
    return SheetJob(district, settings=settings, date=date).submit(layers, out)


def write_map_sheets(district: District, layers: Sequence[Any], out: str | Path, *,
                     settings: SheetSettings | None = None, date: dt.date | None = None) -> dict[str, Any]:
    """Write ``out/map_sheets/``: the overview and one sheet per 镇街 as PNG, and one combined PDF.

    Parameters
    ----------
    district
        The loaded district (townships, ``project.name``, ``project.sample``).
    layers
        Display layers of :func:`gis.maps.build_layers` (the ones in ``settings.layers`` are drawn).
    out
        Output folder; the sheets go to ``out/map_sheets``.
    settings
        Sheet settings (default: :func:`sheet_settings` of the district).
    date
        Date printed on the sheets (default: today).

    Returns
    -------
    dict
        ``pdf`` (path), ``png`` (paths, overview first), ``sheets`` (count), ``font``;
        nothing written (``pdf`` None, no PNG) when ``settings.enabled`` is false.
    """
    return start_map_sheets(district, layers, out, settings=settings, date=date).result()


def render_overview_png(district: District, layers: Sequence[Any], target: str | Path, *,
                        settings: SheetSettings | None = None, date: dt.date | None = None) -> Path:
    """Draw the district overview sheet as one PNG (``map.png``), same quality as the sheets."""
    settings = settings or sheet_settings(district)
    project = getattr(district, "project", None)
    sh = _sheets(layers, district.townships, str(getattr(project, "name", "") or ""),
                 bool(getattr(project, "sample", False)), settings, date)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    font = find_cjk_font()
    sheet_render.render_task(SheetTask((_overview_spec(sh, target.stem),), str(target.parent), png=True, pdf=None,
                                       claims=None, reverse=False, pdf_title="", font=font, font_file=_font_file(font),
                                       png_compress_level=settings.png_compress_level))
    return target
