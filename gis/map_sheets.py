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

Chinese text needs a CJK font: :func:`find_cjk_font` finds an installed one (Noto Sans
CJK from ``fonts-noto-cjk`` or WenQuanYi Micro Hei from ``fonts-wqy-microhei``) and
fails with a one-line message naming the package to install when there is none.

Sheet settings (paper, dpi, padding, which layers) live in ``layers/map.yaml`` under
``sheets:`` (per district under ``map: sheets:`` in ``project.yaml``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import shapely

from gis._errors import AnalysisError
from gis.export import atomic_path

if TYPE_CHECKING:
    from gis.district import District

__all__ = [
    "PAPER_MM",
    "SheetSettings",
    "find_cjk_font",
    "nice_scale_length",
    "render_overview_png",
    "sheet_settings",
    "write_map_sheets",
]

#: ISO 216 paper sizes in millimetres, landscape (width, height).
PAPER_MM: Mapping[str, tuple[float, float]] = {"A4": (297.0, 210.0), "A3": (420.0, 297.0)}

#: CJK font families looked for, best first, and the files that provide them.
CJK_FONT_FAMILIES: tuple[str, ...] = ("Noto Sans CJK SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
                                      "Source Han Sans SC", "SimHei", "Microsoft YaHei")
CJK_FONT_FILES: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)
_MM_PER_INCH = 25.4
_MARKERS = {"circle": "o", "dot": ".", "ring": "o", "square": "s", "triangle": "^", "diamond": "D",
            "star": "*", "hexagon": "h"}


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
    """

    enabled: bool
    paper: str
    overview_paper: str
    dpi: int
    pad_ratio: float
    layers: tuple[str, ...]
    png_compress_level: int

    @classmethod
    def from_section(cls, section: Mapping[str, Any], source: str = "layers/map.yaml") -> SheetSettings:
        """Settings from the ``sheets`` mapping; a missing or wrong key is a one-line error."""
        s = dict(section or {})
        missing = [k for k in ("enabled", "paper", "overview_paper", "dpi", "pad_ratio", "layers", "png_compress_level")
                   if s.get(k) is None]
        if missing:
            raise AnalysisError(f"{source}: map.sheets is missing {', '.join(missing)}")
        for key in ("paper", "overview_paper"):
            if str(s[key]).upper() not in PAPER_MM:
                raise AnalysisError(f"{source}: map.sheets.{key} '{s[key]}' is not one of {', '.join(PAPER_MM)}")
        return cls(enabled=bool(s["enabled"]), paper=str(s["paper"]).upper(), overview_paper=str(s["overview_paper"]).upper(),
                   dpi=int(s["dpi"]), pad_ratio=float(s["pad_ratio"]), layers=tuple(str(k) for k in s["layers"]),
                   png_compress_level=int(s["png_compress_level"]))


def sheet_settings(district: District) -> SheetSettings:
    """The district's sheet settings (``layers/map.yaml`` merged with its ``map:`` section)."""
    project = getattr(district, "project", None)
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
    """matplotlib rc settings of a sheet: the CJK font, TrueType embedding in the PDF."""
    import matplotlib

    font = find_cjk_font()
    rc = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"], "axes.unicode_minus": False,
          "pdf.fonttype": 42}
    with matplotlib.rc_context(rc):
        yield font


def nice_scale_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 × 10ⁿ metres) of about a fifth of ``span_m``.

    .. math:: L = \\max\\{m \\cdot 10^{n} \\le s/5 : m \\in \\{1, 2, 5\\}\\},\\quad n = \\lfloor \\log_{10}(s/5) \\rfloor
    """
    if not span_m > 0:
        raise AnalysisError(f"scale bar: map width must be positive, got {span_m}")
    target = span_m / 5.0
    exp = 10.0 ** math.floor(math.log10(target))
    return max(m * e for e in (exp / 10.0, exp) for m in (1.0, 2.0, 5.0) if m * e <= target)  # log10 rounding


def _metric_crs(townships: gpd.GeoDataFrame) -> Any:
    """The townships' CRS when it is projected (metres), else their UTM zone."""
    if townships.crs is not None and townships.crs.is_projected:
        return townships.crs
    return townships.estimate_utm_crs()


def _prepare(layers: Sequence[Any], keys: Sequence[str], crs: Any) -> list[tuple[Any, gpd.GeoDataFrame]]:
    """The sheet's layers (in ``keys``, with features) re-projected once into ``crs``."""
    wanted = set(keys)
    out = []
    for lay in layers:
        if lay.key in wanted and lay.gdf is not None and len(lay.gdf):
            out.append((lay, lay.gdf.to_crs(crs)))
    return out


def _in_frame(prepared: Sequence[tuple[Any, gpd.GeoDataFrame]], extent: Sequence[float],
              ) -> list[tuple[Any, gpd.GeoDataFrame]]:
    """Each layer cut to the sheet's frame grown by 2 %: features outside are left out and
    polygons are clipped (:func:`shapely.clip_by_rect`), so a township sheet draws — and its
    PDF page stores — only what shows; the cut edges fall outside the frame."""
    return [(lay, _clipped(g, extent, polygons=lay.kind == "polygon")) for lay, g in prepared]


def _clipped(g: gpd.GeoDataFrame, extent: Sequence[float], *, polygons: bool) -> gpd.GeoDataFrame:
    """The features of ``g`` in ``extent`` grown by 2 % (polygons clipped to it)."""
    x0, y0, x1, y1 = extent
    m = 0.02 * max(x1 - x0, y1 - y0)
    box = (x0 - m, y0 - m, x1 + m, y1 + m)
    sub = g.cx[box[0]:box[2], box[1]:box[3]]
    if polygons and len(sub):
        sub = sub.set_geometry(shapely.clip_by_rect(sub.geometry.values, *box))
        sub = sub[~sub.geometry.is_empty]
    return sub


def _draw(ax: Any, prepared: Sequence[tuple[Any, gpd.GeoDataFrame]]) -> None:
    """Draw polygons (filled or outline) and points (shape per tier, colour per verdict)."""
    for z, (lay, g) in enumerate(prepared, start=2):
        if not len(g):
            continue
        if lay.kind == "polygon":
            colours = g["_color"].tolist()
            if lay.key == "townships":
                g.boundary.plot(ax=ax, color=colours, linewidth=0.8, zorder=z)
            else:
                g.plot(ax=ax, color=colours, alpha=min(max(lay.fill_opacity, 0.25), 0.6), edgecolor="none",
                       linewidth=0, zorder=z)
                g.boundary.plot(ax=ax, color=colours, linewidth=0.5, zorder=z)
        else:
            sym = str(g["_symbol"].iloc[0]) if "_symbol" in g else "circle"
            filled = sym != "ring"
            ax.scatter(g.geometry.x, g.geometry.y, s=max(lay.size, 8) * 2.2, marker=_MARKERS.get(sym, "o"),
                       c=g["_color"].tolist() if filled else "none",
                       edgecolors="#222222" if filled else g["_color"].tolist(), linewidths=0.5, zorder=20 + z)


def _legend_handles(prepared: Sequence[tuple[Any, gpd.GeoDataFrame]]) -> list[Any]:
    """One legend entry per (shape, colour, label) of the drawn layers, without repeats."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    seen: set[str] = set()
    handles: list[Any] = []
    for lay, _ in prepared:
        for shape, colour, label in lay.legend:
            if label in seen:
                continue
            seen.add(label)
            if shape in ("box", "hatch", "ramp"):
                handles.append(Patch(facecolor=colour, edgecolor=colour, alpha=0.6, label=label))
            elif shape == "line":
                handles.append(Line2D([], [], color=colour, linewidth=1.2, label=label))
            else:
                handles.append(Line2D([], [], marker=_MARKERS.get(shape, "o"), color="none", markersize=7,
                                      markerfacecolor=colour, markeredgecolor="#222222", label=label))
    return handles


def _shown(prepared: Sequence[tuple[Any, gpd.GeoDataFrame]], extent: Sequence[float]) -> list[tuple[Any, Any]]:
    """The layers with a feature on the sheet (for its legend).

    The verdict keys (违规 / 需核查 / 合规) ride on the site layers after each tier's
    symbol; they are kept whenever any site layer is on the sheet.
    """
    x0, y0, x1, y1 = extent
    on = [(lay, g) for lay, g in prepared if len(g.cx[x0:x1, y0:y1])]
    if any(lay.key.startswith("sites_") for lay, _ in on):
        keep = {id(lay) for lay, _ in on}
        on += [(replace(lay, legend=lay.legend[1:]), g) for lay, g in prepared
               if lay.key.startswith("sites_") and id(lay) not in keep and len(lay.legend) > 1]
    return on


def _scale_bar(ax: Any) -> None:
    """A black-and-white scale bar (metres or km) in the lower left of the map frame."""
    from matplotlib.patches import Rectangle

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = nice_scale_length(x1 - x0)
    bx, by, h = x0 + 0.04 * (x1 - x0), y0 + 0.05 * (y1 - y0), 0.012 * (y1 - y0)
    for i in range(4):
        ax.add_patch(Rectangle((bx + i * length / 4, by), length / 4, h, facecolor="#000000" if i % 2 == 0 else
                               "#ffffff", edgecolor="#000000", linewidth=0.6, zorder=50))
    text = f"{length / 1000:g} 千米 km" if length >= 1000 else f"{length:g} 米 m"
    ax.text(bx, by + 1.6 * h, "0", fontsize=7, ha="center", va="bottom", zorder=50)
    ax.text(bx + length, by + 1.6 * h, text, fontsize=7, ha="center", va="bottom", zorder=50)


def _north_arrow(ax: Any) -> None:
    """A north arrow with 北 N in the upper right of the map frame (grid north)."""
    ax.annotate("北\nN", xy=(0.95, 0.95), xytext=(0.95, 0.84), xycoords="axes fraction", ha="center", va="top",
                fontsize=9, fontweight="bold", zorder=50,
                arrowprops={"facecolor": "#000000", "edgecolor": "#000000", "width": 3, "headwidth": 10})


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


@dataclass(frozen=True)
class _Page:
    """Text of one sheet: title, the line under it and the footer (sources, date)."""

    title: str
    subtitle: str
    footer: str


def _figure(paper: str, dpi: int) -> tuple[Any, Any, Any]:
    """A landscape sheet: map frame left, legend panel right, title band top, footer bottom.

    A bare :class:`matplotlib.figure.Figure` (no pyplot): no global figure registry, no
    backend switch, nothing shown in a notebook.
    """
    from matplotlib.figure import Figure

    w_mm, h_mm = PAPER_MM[paper]
    fig = Figure(figsize=(w_mm / _MM_PER_INCH, h_mm / _MM_PER_INCH), dpi=dpi)
    ax = fig.add_axes((0.025, 0.075, 0.72, 0.82))
    panel = fig.add_axes((0.76, 0.075, 0.215, 0.82))
    panel.set_axis_off()
    for a in (ax,):
        a.set_xticks([])
        a.set_yticks([])
        a.set_facecolor("#f7f6f2")
    return fig, ax, panel


def _frame_aspect(fig: Any, ax: Any) -> float:
    """Width / height of the map frame on paper."""
    fw, fh = fig.get_size_inches()
    pos = ax.get_position()
    return (pos.width * fw) / (pos.height * fh)


def _label_townships(ax: Any, towns: gpd.GeoDataFrame, extent: Sequence[float], size: float) -> None:
    """Township names at a point inside each township that lies in the frame."""
    minx, miny, maxx, maxy = extent
    pts = towns.geometry.representative_point()
    for name, p in zip(towns["township"].astype(str), pts):
        if minx <= p.x <= maxx and miny <= p.y <= maxy:
            ax.text(p.x, p.y, name, fontsize=size, color="#333333", ha="center", va="center", zorder=45,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "#ffffff", "alpha": 0.6, "linewidth": 0})


def _render(prepared: Sequence[tuple[Any, gpd.GeoDataFrame]], towns: gpd.GeoDataFrame, page: _Page,
            paper: str, dpi: int, bounds: Sequence[float], pad_ratio: float,
            focus: gpd.GeoDataFrame | None = None) -> Any:
    """Draw one sheet and return its matplotlib figure (caller saves and closes it)."""
    fig, ax, panel = _figure(paper, dpi)
    extent = _extent(bounds, pad_ratio, _frame_aspect(fig, ax))
    _draw(ax, _in_frame(prepared, extent) if focus is not None else prepared)
    if focus is not None:
        others = towns[~towns.index.isin(focus.index)]
        others = _clipped(others, extent, polygons=True)
        if len(others):
            others.plot(ax=ax, color="#ffffff", alpha=0.55, linewidth=0, zorder=15)
        focus.boundary.plot(ax=ax, color="#c00000", linewidth=2.0, zorder=16)
    ax.set_xlim(extent[0], extent[2])
    ax.set_ylim(extent[1], extent[3])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("")
    ax.set_ylabel("")
    _label_townships(ax, towns, extent, 7 if focus is None else 8)
    _scale_bar(ax)
    _north_arrow(ax)
    handles = _legend_handles(_shown(prepared, extent))
    for h in handles:
        h.set_label(_wrap_label(h.get_label(), 44))
    panel.legend(handles=handles, loc="upper left", fontsize=6.5, title="图例 Legend", title_fontsize=9,
                 frameon=True, framealpha=1.0, edgecolor="#444444", borderaxespad=0.0, labelspacing=0.55)
    fig.text(0.5, 0.955, page.title, ha="center", va="center", fontsize=15, fontweight="bold")
    fig.text(0.5, 0.915, page.subtitle, ha="center", va="center", fontsize=9, color="#333333")
    fig.text(0.025, 0.035, page.footer, ha="left", va="center", fontsize=7, color="#333333", wrap=True)
    return fig


def _footer(prepared: Sequence[tuple[Any, gpd.GeoDataFrame]], district_name: str, sample: bool) -> str:
    """数据来源 line: the district's layers, every required attribution, the sample label."""
    from gis import settings

    parts = [f"数据来源 Data: {district_name}图层及本工具分析结果"]
    for lay, _ in prepared:
        if lay.attribution and lay.attribution not in parts:
            parts.append(lay.attribution)
    if sample:
        parts.append(settings.SAMPLE_LABEL)
    return "；".join(parts)


def _safe_name(text: str) -> str:
    """A file-name-safe form of a township name (path separators and controls removed)."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f\s]+', "_", text).strip("._") or "township"


@dataclass(frozen=True)
class _Sheets:
    """Everything the sheets of one district share (layers projected once)."""

    prepared: list[tuple[Any, gpd.GeoDataFrame]]
    towns: gpd.GeoDataFrame
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
    return _Sheets(prepared, townships.to_crs(crs), district_name, _footer(prepared, district_name, sample),
                   day, crs.name, settings)


def _overview_figure(sh: _Sheets) -> Any:
    """The district overview sheet (all townships)."""
    page = _Page(f"{sh.district_name}再生资源回收网络与问题点位总图",
                 f"{sh.district_name} · 全区 {len(sh.towns)} 个镇街 · 制图日期 {sh.date} · 坐标系 {sh.crs_name}",
                 sh.footer)
    return _render(sh.prepared, sh.towns, page, sh.settings.overview_paper, sh.settings.dpi,
                   sh.towns.total_bounds, sh.settings.pad_ratio / 4)


def _township_figure(sh: _Sheets, i: int) -> tuple[str, Any]:
    """The sheet of the ``i``-th township: its name and figure."""
    focus = sh.towns.iloc[[i]]
    name = str(focus["township"].iloc[0])
    page = _Page(f"{sh.district_name}{name}再生资源回收网络与问题点位图",
                 f"{sh.district_name} · {name} · 制图日期 {sh.date} · 坐标系 {sh.crs_name}", sh.footer)
    fig = _render(sh.prepared, sh.towns, page, sh.settings.paper, sh.settings.dpi, focus.total_bounds,
                  sh.settings.pad_ratio, focus=focus)
    return name, fig


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
    from matplotlib.backends.backend_pdf import PdfPages

    settings = settings or sheet_settings(district)
    if not settings.enabled:
        return {"pdf": None, "png": [], "sheets": 0, "font": None}
    project = getattr(district, "project", None)
    sh = _sheets(layers, district.townships, str(getattr(project, "name", "") or ""),
                 bool(getattr(project, "sample", False)), settings, date)
    folder = Path(out) / "map_sheets"
    folder.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    with _cjk_style() as font, atomic_path(folder / "map_sheets.pdf") as tmp_pdf, PdfPages(tmp_pdf) as pdf:
        figures = [("00_区县总图", lambda: _overview_figure(sh))]
        figures += [(f"{i + 1:02d}_{_safe_name(str(n))}", (lambda i=i: _township_figure(sh, i)[1]))
                    for i, n in enumerate(sh.towns["township"])]
        for stem, make in figures:
            fig = make()
            with atomic_path(folder / f"{stem}.png") as tmp:
                fig.savefig(tmp, dpi=settings.dpi, pil_kwargs={"compress_level": settings.png_compress_level})
            pdf.savefig(fig)
            pngs.append(folder / f"{stem}.png")
        meta = pdf.infodict()
        meta["Title"] = f"{sh.district_name}再生资源回收网络图集"
    return {"pdf": folder / "map_sheets.pdf", "png": pngs, "sheets": len(pngs), "font": font}


def render_overview_png(district: District, layers: Sequence[Any], target: str | Path, *,
                        settings: SheetSettings | None = None, date: dt.date | None = None) -> Path:
    """Draw the district overview sheet as one PNG (``map.png``), same quality as the sheets."""
    settings = settings or sheet_settings(district)
    project = getattr(district, "project", None)
    sh = _sheets(layers, district.townships, str(getattr(project, "name", "") or ""),
                 bool(getattr(project, "sample", False)), settings, date)
    with _cjk_style():
        fig = _overview_figure(sh)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=settings.dpi, pil_kwargs={"compress_level": settings.png_compress_level})
    return Path(target)
