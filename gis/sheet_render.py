"""Drawing and saving print-ready map sheets: the worker side of :mod:`gis.map_sheets`.

:mod:`gis.map_sheets` turns a district's display layers into one :class:`SheetSpec` per
sheet — coordinate arrays in a metric CRS, colours and strings, nothing else — and
hands lists of them to :func:`render_task`, in the calling process or in spawned
worker processes. This module therefore imports only numpy and matplotlib (no
pandas, geopandas or pyproj), so a worker starts in about a second.

How a sheet is drawn, and why it is quick:

* every layer is one matplotlib collection (a :class:`~matplotlib.collections.PathCollection`
  of the polygons' compound paths, a :class:`~matplotlib.collections.LineCollection` of
  their rings, one ``scatter`` of the points), not one artist per feature;
* the sheets of one paper size are drawn on one reused figure and its two axes (what
  the last sheet drew is removed), on a :class:`gis.sheet_canvas.SheetCanvas`: its Agg
  renderer survives from sheet to sheet and keeps every string shaped and rendered once
  (the CJK legend labels, township names and footer are laid out once per worker, not
  once per sheet), and the PDF pages share one table of text metrics;
* the footer arrives wrapped (no ``wrap=True``, which measures the text word by word
  on every draw);
* a PNG is the Agg buffer written as RGB (the sheet is opaque), rows unfiltered, one zlib
  stream at ``png_compress_level`` (:func:`png_bytes`);
* the PDF is one :class:`~matplotlib.backends.backend_pdf.PdfFile`, written by
  one worker, so the CJK font is embedded once for all pages, as Type 3 fonts
  (``pdf.fonttype`` 3: the used glyphs' outlines, read by FreeType, with a ToUnicode map,
  so the text stays selectable and searchable). Type 42 had matplotlib subset the 16 MB
  Noto Sans CJK collection with fontTools (its layout tables), a third of the PDF's
  time, and poppler warned about its CFF outlines declared as TrueType. Every page stays
  vector.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PAPER_MM", "FRAME", "Shapes", "SheetSpec", "SheetTask", "cjk_style", "draw_sheet", "frame_aspect",
           "nice_scale_length", "png_bytes", "render_task", "run_tasks", "save_png", "warm_up"]

#: ISO 216 paper sizes in millimetres, landscape (width, height).
PAPER_MM: Mapping[str, tuple[float, float]] = {"A4": (297.0, 210.0), "A3": (420.0, 297.0)}
#: Map frame and legend panel (left, bottom, width, height) as fractions of the sheet.
FRAME: tuple[float, float, float, float] = (0.025, 0.075, 0.72, 0.82)
PANEL: tuple[float, float, float, float] = (0.76, 0.075, 0.215, 0.82)
_MM_PER_INCH = 25.4
_MARKERS = {"circle": "o", "dot": ".", "ring": "o", "square": "s", "triangle": "^", "diamond": "D",
            "star": "*", "hexagon": "h"}


@dataclass(frozen=True)
class Shapes:
    """One layer as drawn on one sheet (coordinates in the sheet's metric CRS).

    Attributes
    ----------
    kind
        ``fill`` (polygons: ``parts`` holds one list of rings per polygon, exterior first),
        ``line`` (``parts`` holds rings or lines, ``n × 2`` arrays) or ``points``
        (``parts`` holds one ``n × 2`` array).
    colours
        One colour per part (fill, line) or per point.
    zorder, alpha, linewidth
        matplotlib drawing order, opacity (fills; None = opaque) and line / edge width (pt).
    marker, size, hollow
        Points only: matplotlib marker, area (pt²), ring markers (coloured edge, no face).
    """

    kind: str
    parts: tuple[Any, ...]
    colours: tuple[str, ...]
    zorder: float
    alpha: float | None
    linewidth: float
    marker: str
    size: float
    hollow: bool


@dataclass(frozen=True)
class SheetSpec:
    """Everything on one sheet, ready to draw.

    Attributes
    ----------
    stem
        File name without suffix (``00_区县总图``).
    paper, dpi
        ``A4`` / ``A3`` landscape and the PNG resolution.
    extent
        Map frame ``(x0, y0, x1, y1)`` in metres (the frame's aspect).
    shapes
        Layers bottom to top.
    labels, label_size
        Township names ``(x, y, name)`` inside the frame and their font size (pt).
    legend
        ``(shape, colour, label)`` entries; a label may hold a line break.
    title, subtitle, footer
        Sheet texts; the footer is already wrapped to the sheet's width.
    """

    stem: str
    paper: str
    dpi: int
    extent: tuple[float, float, float, float]
    shapes: tuple[Shapes, ...]
    labels: tuple[tuple[float, float, str], ...]
    label_size: float
    legend: tuple[tuple[str, str, str], ...]
    title: str
    subtitle: str
    footer: str


@dataclass(frozen=True)
class SheetTask:
    """A worker's share of the sheets: PNGs into ``folder`` and / or the one PDF.

    Attributes
    ----------
    sheets
        Sheets in page order.
    folder
        Where ``<stem>.png`` is written.
    png, pdf
        Write PNGs; write every sheet as a page of ``pdf`` (a path) when set.
    claims
        With several workers, a folder where a worker claims a sheet's PNG before drawing
        it (creating ``<n>.claim`` exclusively), so each PNG is drawn once and a worker that
        is done early takes PNGs left over: the PNG workers go first to last, the PDF
        worker, once its PDF is written, last to first. None: every PNG of ``sheets``.
    reverse
        Take the PNGs last to first.
    pdf_title
        The PDF's Title metadata.
    font, font_file
        CJK font family, and its file (registered when the worker's matplotlib does not know it).
    png_compress_level
        zlib level of the PNGs (0–9).
    """

    sheets: tuple[SheetSpec, ...]
    folder: str
    png: bool
    pdf: str | None
    claims: str | None
    reverse: bool
    pdf_title: str
    font: str
    font_file: str | None
    png_compress_level: int


def frame_aspect(paper: str) -> float:
    """Width / height of the map frame on ``paper`` (landscape)."""
    w_mm, h_mm = PAPER_MM[paper]
    return (FRAME[2] * w_mm) / (FRAME[3] * h_mm)


def nice_scale_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 × 10ⁿ metres) of about a fifth of ``span_m``.

    .. math:: L = \\max\\{m \\cdot 10^{n} \\le s/5 : m \\in \\{1, 2, 5\\}\\},\\quad n = \\lfloor \\log_{10}(s/5) \\rfloor

    Raises
    ------
    ValueError
        ``span_m`` not positive (:func:`gis.map_sheets.nice_scale_length` turns it into an AnalysisError).
    """
    if not span_m > 0:
        raise ValueError(f"scale bar: map width must be positive, got {span_m}")
    target = span_m / 5.0
    exp = 10.0 ** math.floor(math.log10(target))
    return max(m * e for e in (exp / 10.0, exp) for m in (1.0, 2.0, 5.0) if m * e <= target)  # log10 rounding


@contextlib.contextmanager
def cjk_style(font: str) -> Iterator[None]:
    """matplotlib rc settings of a sheet: the CJK font first, Type 3 fonts in the PDF (see the module notes)."""
    import matplotlib

    rc = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"], "axes.unicode_minus": False,
          "pdf.fonttype": 3}
    with matplotlib.rc_context(rc):
        yield


def _figure(paper: str, dpi: int, reuse: Any | None) -> tuple[Any, Any, Any]:
    """A landscape sheet (map frame left, legend panel right); ``reuse``, when of the same size, wiped.

    A bare :class:`matplotlib.figure.Figure` (no pyplot: no global registry, no backend
    switch) on its own :class:`gis.sheet_canvas.SheetCanvas`, which keeps its renderer and
    its shaped text from sheet to sheet. A reused sheet keeps its two axes (making axes
    and their tick machinery again was a tenth of a sheet's time); what the last sheet
    drew on them is removed.
    """
    from matplotlib.figure import Figure

    from gis.sheet_canvas import SheetCanvas

    w_mm, h_mm = PAPER_MM[paper]
    size = (w_mm / _MM_PER_INCH, h_mm / _MM_PER_INCH)
    if reuse is not None and np.allclose(reuse.get_size_inches(), size) and reuse.dpi == dpi:
        ax, panel = reuse.axes
        for artist in [*ax.collections, *ax.patches, *ax.texts, *ax.lines, *panel.patches, *panel.texts,
                       *panel.lines, *reuse.texts]:
            artist.remove()
        return reuse, ax, panel
    fig = Figure(figsize=size, dpi=dpi)
    SheetCanvas(fig)
    ax = fig.add_axes(FRAME)
    panel = fig.add_axes(PANEL)
    panel.set_axis_off()
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#f7f6f2")
    return fig, ax, panel


def _compound(rings: Sequence[np.ndarray]) -> Any:
    """One polygon as a compound path: exterior then holes (as geopandas draws it)."""
    from matplotlib.path import Path as MplPath

    return MplPath.make_compound_path(*[MplPath(r) for r in rings])


def _draw_shapes(ax: Any, shapes: Sequence[Shapes]) -> None:
    """Each layer as one collection (fills, lines) or one scatter (points)."""
    from matplotlib.collections import LineCollection, PathCollection

    for s in shapes:
        if not s.parts:
            continue
        if s.kind == "fill":
            coll = PathCollection([_compound(p) for p in s.parts], facecolors=list(s.colours), edgecolors="none",
                                  linewidths=s.linewidth, alpha=s.alpha, zorder=s.zorder)
            ax.add_collection(coll, autolim=False)
        elif s.kind == "line":
            ax.add_collection(LineCollection(list(s.parts), colors=list(s.colours), linewidths=s.linewidth,
                                             zorder=s.zorder), autolim=False)
        else:
            xy = s.parts[0]
            colours = list(s.colours)
            ax.scatter(xy[:, 0], xy[:, 1], s=s.size, marker=_MARKERS.get(s.marker, "o"),
                       c="none" if s.hollow else colours, edgecolors=colours if s.hollow else "#222222",
                       linewidths=s.linewidth, zorder=s.zorder)


#: Legend layout in units of the label font size (matplotlib's legend defaults, labelspacing 0.55).
_LEGEND_PT, _LEGEND_TITLE_PT = 6.5, 9.0
_LEGEND_PAD, _LEGEND_HANDLE_W, _LEGEND_HANDLE_H, _LEGEND_TEXT_PAD, _LEGEND_ROW_GAP = 0.4, 2.0, 0.7, 0.8, 0.55


def _legend_handle(panel: Any, shape: str, colour: str, box: tuple[float, float, float, float], trans: Any) -> None:
    """The key of one legend entry in ``box`` (x, y centre, width, height; inches): a swatch, a line or a marker."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    x, y, w, h = box  # add_artist, not add_patch / add_line: the panel has no data limits to update
    if shape in ("box", "hatch", "ramp"):
        panel.add_artist(Rectangle((x, y - h / 2), w, h, facecolor=colour, edgecolor=colour, alpha=0.6,
                                   transform=trans, clip_on=False))
    elif shape == "line":
        panel.add_artist(Line2D([x, x + w], [y, y], color=colour, linewidth=1.2, transform=trans, clip_on=False))
    else:
        panel.add_artist(Line2D([x + w / 2], [y], marker=_MARKERS.get(shape, "o"), color="none", markersize=7,
                                markerfacecolor=colour, markeredgecolor="#222222", transform=trans, clip_on=False))


def _draw_legend(fig: Any, panel: Any, entries: Sequence[tuple[str, str, str]]) -> None:
    """The legend (图例) in the top left corner of the panel: a framed column of keys and labels.

    Laid out here, in points, from the labels' measured sizes (``SheetCanvas.text_extent``),
    as matplotlib's legend lays it out (border pad 0.4 em, keys 2 × 0.7 em, 0.8 em between
    key and label, 0.55 em between rows), without its box packing, which measured every
    label again on every sheet and PDF page. The labels are texts of ``panel``.
    """
    from matplotlib.patches import FancyBboxPatch

    em, pt = _LEGEND_PT, 1 / 72  # label font size (pt); inches per point
    measure = fig.canvas.text_extent
    title_w, title_h, _ = measure("图例 Legend", _LEGEND_TITLE_PT)
    rows = [max(measure(label, em)[1], _LEGEND_HANDLE_H * em) for _, _, label in entries]
    text_x = (_LEGEND_PAD + _LEGEND_HANDLE_W + _LEGEND_TEXT_PAD) * em
    width = max([title_w + 2 * _LEGEND_PAD * em] + [text_x + measure(lab, em)[0] + _LEGEND_PAD * em
                                                    for _, _, lab in entries])
    left, top = PANEL[0] * fig.get_figwidth(), (PANEL[1] + PANEL[3]) * fig.get_figheight()  # inches
    trans = fig.dpi_scale_trans
    y = _LEGEND_PAD * em + title_h  # points below the top
    panel.text(left + width / 2 * pt, top - (y - title_h / 2) * pt, "图例 Legend", fontsize=_LEGEND_TITLE_PT,
               ha="center", va="center", transform=trans, clip_on=False)
    for (shape, colour, label), h in zip(entries, rows):
        y += _LEGEND_ROW_GAP * em
        mid = top - (y + h / 2) * pt
        _legend_handle(panel, shape, colour, (left + _LEGEND_PAD * em * pt, mid, _LEGEND_HANDLE_W * em * pt,
                                              _LEGEND_HANDLE_H * em * pt), trans)
        panel.text(left + text_x * pt, mid, label, fontsize=em, ha="left", va="center", transform=trans,
                   clip_on=False, gid="legend_label")
        y += h
    y += _LEGEND_PAD * em
    panel.add_artist(FancyBboxPatch((left, top - y * pt), width * pt, y * pt, boxstyle=f"round,pad=0,rounding_size="
                                    f"{0.2 * em * pt}", facecolor="#ffffff", edgecolor="#444444", linewidth=0.8,
                                    transform=trans, clip_on=False, zorder=0.5))


def _scale_bar(ax: Any, extent: Sequence[float]) -> None:
    """A black-and-white scale bar (metres or km) in the lower left of the map frame."""
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = extent
    length = nice_scale_length(x1 - x0)
    bx, by, h = x0 + 0.04 * (x1 - x0), y0 + 0.05 * (y1 - y0), 0.012 * (y1 - y0)
    for i in range(4):  # add_artist: the frame's limits are set, nothing to update
        ax.add_artist(Rectangle((bx + i * length / 4, by), length / 4, h, facecolor="#000000" if i % 2 == 0 else
                                "#ffffff", edgecolor="#000000", linewidth=0.6, zorder=50))
    text = f"{length / 1000:g} 千米 km" if length >= 1000 else f"{length:g} 米 m"
    ax.text(bx, by + 1.6 * h, "0", fontsize=7, ha="center", va="bottom", zorder=50)
    ax.text(bx + length, by + 1.6 * h, text, fontsize=7, ha="center", va="bottom", zorder=50)


def _north_arrow(ax: Any) -> None:
    """A north arrow (grid north) in the upper right of the map frame: a split arrowhead, half black and
    half white, over 北 N. Two polygons and a text (no arrow path to clip against the text box)."""
    from matplotlib.patches import Polygon

    x, top = 0.955, 0.965  # axes fraction
    ratio = ax.bbox.height / ax.bbox.width if ax.bbox.width else 1.0  # the head's width in axes-x units
    height, half = 0.075, 0.02 * ratio
    notch = top - 0.72 * height
    for side, face in ((-half, "#000000"), (half, "#ffffff")):
        ax.add_artist(Polygon([(x, top), (x + side, top - height), (x, notch)], closed=True, facecolor=face,
                              edgecolor="#000000", linewidth=0.7, transform=ax.transAxes, zorder=50))
    ax.text(x, top - height - 0.008, "北\nN", transform=ax.transAxes, ha="center", va="top", fontsize=8.5,
            fontweight="bold", linespacing=1.0, zorder=50)


def draw_sheet(spec: SheetSpec, reuse: Any | None = None) -> Any:
    """Draw one sheet and return its figure (``reuse``: a figure of an earlier sheet, cleared and redrawn).

    Call inside :func:`cjk_style`. The figure has two axes, the map frame and the legend panel
    (:func:`_draw_legend`: its labels are the panel's texts with gid ``legend_label``).
    """
    fig, ax, panel = _figure(spec.paper, spec.dpi, reuse)
    _draw_shapes(ax, spec.shapes)
    x0, y0, x1, y1 = spec.extent
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    for x, y, name in spec.labels:
        ax.text(x, y, name, fontsize=spec.label_size, color="#333333", ha="center", va="center", zorder=45,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "#ffffff", "alpha": 0.6, "linewidth": 0})
    _scale_bar(ax, spec.extent)
    _north_arrow(ax)
    _draw_legend(fig, panel, spec.legend)
    fig.text(0.5, 0.955, spec.title, ha="center", va="center", fontsize=15, fontweight="bold")
    fig.text(0.5, 0.915, spec.subtitle, ha="center", va="center", fontsize=9, color="#333333")
    fig.text(0.025, 0.035, spec.footer, ha="left", va="center", fontsize=7, color="#333333")
    return fig


def png_bytes(rgb: np.ndarray, dpi: int, compress_level: int) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` (``h × w × 3``): filter type 0 on every row, one zlib stream.

    PIL chooses a filter row by row (trying all five), which is most of its time on a sheet;
    a map sheet's flat colour areas compress as well unfiltered (same size within a few
    %), so this writes the same image about 2.5× faster. The ``pHYs`` chunk records ``dpi``.
    """
    import struct
    import zlib

    h, w, _ = rgb.shape
    rows = np.empty((h, 1 + 3 * w), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:].reshape(h, w, 3)[...] = rgb  # a view of the rows: one copy, also from a strided RGBA view

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ppm = round(dpi / 0.0254)  # pixels per metre
    return b"".join((b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)),
                     chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)),
                     chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)), chunk(b"IEND", b"")))


def save_png(fig: Any, target: Path, dpi: int, compress_level: int) -> Path:
    """The figure's Agg buffer written as an RGB PNG (:func:`png_bytes`; atomically: temporary name, then rename)."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]  # the sheet is opaque (a view: copied once, in png_bytes)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.png")
    try:
        tmp.write_bytes(png_bytes(rgb, dpi, compress_level))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _register_font(font: str, font_file: str | None) -> None:
    """Make ``font`` known to this process's matplotlib (a worker's font cache may lack it)."""
    from matplotlib import font_manager

    if font_file and font not in {f.name for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(font_file)


def _claim(claims: str | None, n: int) -> bool:
    """Whether this worker draws PNG ``n``: True unless another worker claimed it first."""
    if claims is None:
        return True
    try:
        os.close(os.open(os.path.join(claims, f"{n}.claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _write_pdf(task: SheetTask, figures: dict[str, Any], png_too: bool) -> list[str]:
    """Every sheet as a page of the task's PDF (and as a PNG when ``png_too``), renamed into place at the end."""
    from matplotlib.backends.backend_pdf import PdfFile

    written: list[str] = []
    tmp_pdf = Path(task.pdf).with_name(f".{Path(task.pdf).stem}.{os.getpid()}.tmp.pdf")
    try:
        pdf = PdfFile(tmp_pdf, metadata={"Title": task.pdf_title})
        for spec in task.sheets:
            fig = figures[spec.paper] = draw_sheet(spec, figures.get(spec.paper))
            if png_too:
                written.append(str(save_png(fig, Path(task.folder) / f"{spec.stem}.png", spec.dpi,
                                            task.png_compress_level)))
            fig.canvas.pdf_page(pdf)
        pdf.finalize()  # the fonts are embedded here, once for every page
        pdf.close()
        os.replace(tmp_pdf, task.pdf)
    finally:
        tmp_pdf.unlink(missing_ok=True)
    return [*written, str(task.pdf)]


def render_task(task: SheetTask) -> list[str]:
    """Draw the task's sheets; write their PNGs and / or the PDF. Returns the paths written.

    One figure per paper size is reused across the sheets (see the module notes). With
    one worker (no ``claims``) each sheet is drawn once and saved both ways; with several,
    the PDF worker writes the PDF first and then helps with the PNGs left over.
    """
    _register_font(task.font, task.font_file)
    figures: dict[str, Any] = {}
    written: list[str] = []
    with cjk_style(task.font):
        if task.pdf:
            written += _write_pdf(task, figures, png_too=task.png and task.claims is None)
        if task.png and (task.claims is not None or not task.pdf):
            order = list(enumerate(task.sheets))
            for n, spec in reversed(order) if task.reverse else order:
                if _claim(task.claims, n):
                    fig = figures[spec.paper] = draw_sheet(spec, figures.get(spec.paper))
                    written.append(str(save_png(fig, Path(task.folder) / f"{spec.stem}.png", spec.dpi,
                                                task.png_compress_level)))
    return written


def warm_up() -> None:
    """Import the drawing modules (a new worker does this while the sheets are being prepared)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_pdf  # noqa: F401
    import matplotlib.figure  # noqa: F401

    import gis.sheet_canvas  # noqa: F401


def can_fork() -> bool:
    """Whether drawing workers are forked from one that has imported matplotlib (Linux), not each spawned."""
    import sys

    return hasattr(os, "fork") and sys.platform.startswith("linux")


def _forked(task: SheetTask) -> int:
    """Fork a child that runs ``task`` and exits (never returns into the caller's stack); its pid.

    A failure's traceback goes to stderr, read by :mod:`gis.map_sheets`."""
    import sys

    from gis.background import fork_child

    def body() -> None:
        try:
            render_task(task)
        finally:
            sys.stderr.flush()  # the child leaves with os._exit: what it wrote must be out first

    def report(trace: str) -> None:
        sys.stderr.write(trace)
        sys.stderr.flush()

    return fork_child(body, report)


def run_tasks(tasks: Sequence[SheetTask]) -> int:
    """Run ``tasks`` side by side: the first in this process, each other in a child forked from it.

    The children start with matplotlib already imported (:func:`warm_up` ran before the
    fork), so the import is paid once per run, not once per worker. Returns 0, or 1 when a
    task failed (its traceback is on stderr). Without :func:`can_fork` the tasks run one
    after the other.
    """
    import traceback

    from gis.background import reap

    children = [_forked(t) for t in tasks[1:]] if can_fork() else []
    here = list(tasks[:1]) if children else list(tasks)
    failed = False
    try:
        for task in here:
            render_task(task)
    except BaseException:  # noqa: BLE001 - the children are still waited for
        traceback.print_exc()
        failed = True
    for pid in children:
        failed |= reap(pid) != 0
    return int(failed)


def main() -> int:
    """Worker entry (``python -m gis.sheet_render``): import, then run the tasks whose pickle paths arrive on stdin.

    One path per line until stdin closes; several tasks are run side by side
    (:func:`run_tasks`).
    """
    import pickle
    import sys

    warm_up()
    tasks = []
    for line in sys.stdin:
        if line.strip():
            with open(line.strip(), "rb") as fh:
                tasks.append(pickle.load(fh))  # written by gis.map_sheets into its private scratch folder
    return run_tasks(tasks)


if __name__ == "__main__":
    raise SystemExit(main())
