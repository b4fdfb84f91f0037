"""Renderers for the map sheets that shape and measure each string once per worker.

A worker of :mod:`gis.sheet_render` draws some thirty sheets that repeat most of their
text: legend labels, the footer, the legend title, the scale-bar figures, 北 / N. With
matplotlib's own renderers every string is shaped again on every sheet (libraqm /
HarfBuzz over the 16 MB Noto Sans CJK face: about 0.1 ms per CJK character) and its glyphs
rendered again, and the PDF backend makes a new renderer for every page, so its text
metrics cache starts empty on every page. Text is about half the drawing time of a sheet.

* :class:`SheetCanvas` is a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`
  whose renderer (:class:`_CachingRendererAgg`) keeps, per string, font and size, the
  string's glyphs composited into one coverage mask. A glyph of coverage :math:`a` drawn
  over one of coverage :math:`b` leaves :math:`1-(1-a)(1-b)`, which is what the mask
  holds, so one ``draw_text_image`` of the mask gives the pixels of the glyph-by-glyph
  drawing. The string's pen position is rounded to whole pixels (at most half a pixel
  from matplotlib's sub-pixel placement): the mask is then the same wherever it is drawn.
  Rotated text, mathtext and text with font features or a language fall back to matplotlib.
* :meth:`SheetCanvas.pdf_page` draws the figure as one page of a
  :class:`~matplotlib.backends.backend_pdf.PdfFile` (what ``PdfPages.savefig`` does) with a
  :class:`~matplotlib.backends.backend_pdf.RendererPdf` whose text metrics (width, height,
  descent of a string in a font) are kept for the whole file, not for one page.

This module imports matplotlib; :mod:`gis.sheet_render` imports it when it draws.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.backends.backend_mixed import MixedModeRenderer
from matplotlib.backends.backend_pdf import Op, RendererPdf
from matplotlib.font_manager import FontPath
from matplotlib.ft2font import LoadFlags, RenderMode

__all__ = ["SheetCanvas"]


def _text_key(s: str, prop: Any, dpi: float, extra: Any) -> tuple[Any, ...]:
    """Cache key of a string drawn in ``prop`` (family, style, weight, size, file) at ``dpi``."""
    return (s, hash(prop), prop.get_size_in_points(), float(dpi), extra)


def _plain(ismath: Any, angle: float, mtext: Any) -> bool:
    """Whether the cached path applies: upright plain text without font features or language."""
    if ismath or angle:
        return False
    return mtext is None or (mtext.get_fontfeatures() is None and mtext.get_language() is None)


class _CachingRendererAgg(RendererAgg):
    """:class:`RendererAgg` drawing each (string, font, size) from a mask composited once (see the module notes)."""

    def __init__(self, width: float, height: float, dpi: float) -> None:
        super().__init__(width, height, dpi)
        self._masks: dict[tuple[Any, ...], tuple[np.ndarray, int, int] | None] = {}

    def _mask(self, s: str, prop: Any, antialiased: bool) -> tuple[np.ndarray, int, int] | None:
        """The string's glyphs with the pen at (0, 0): coverage mask (uint8), its left and top (pixels, y up)."""
        font = self._prepare_font(prop)
        size = prop.get_size_in_points()
        flags = get_hinting_flag()
        unit = np.array([[0x10000, 0], [0, 0x10000]])
        glyphs = []
        for item in font._layout(s, flags=flags):
            ft = item.ft_object
            ft.set_size(size, self.dpi)
            ft._set_transform(unit, [round(0x40 * item.x), round(0x40 * item.y)])
            bitmap = ft._render_glyph(item.glyph_index, flags, RenderMode.NORMAL if antialiased else RenderMode.MONO)
            buf = np.asarray(bitmap.buffer, dtype=np.float32) * (1.0 if antialiased else 255.0)
            if buf.size:
                glyphs.append((buf / 255.0, bitmap.left, bitmap.top))
        if not glyphs:
            return None
        left = min(g[1] for g in glyphs)
        top = max(g[2] for g in glyphs)
        right = max(g[1] + g[0].shape[1] for g in glyphs)
        bottom = min(g[2] - g[0].shape[0] for g in glyphs)
        keep = np.ones((top - bottom, right - left), dtype=np.float32)  # 1 − coverage
        for buf, gl, gt in glyphs:
            h, w = buf.shape
            keep[top - gt:top - gt + h, gl - left:gl - left + w] *= 1.0 - buf
        return np.rint((1.0 - keep) * 255.0).astype(np.uint8), left, top

    def draw_text(self, gc: Any, x: float, y: float, s: str, prop: Any, angle: float, ismath: Any = False,
                  mtext: Any = None) -> None:
        """Draw ``s`` from its cached mask (pen rounded to whole pixels); matplotlib's path otherwise."""
        if not _plain(ismath, angle, mtext):
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        antialiased = bool(gc.get_antialiased())
        key = _text_key(s, prop, self.dpi, antialiased)
        if key not in self._masks:
            self._masks[key] = self._mask(s, prop, antialiased)
        hit = self._masks[key]
        if hit is None:
            return None
        mask, left, top = hit
        pen_x, pen_y = round(x), round(self.height - y)  # FreeType's y is upwards
        # draw_text_image takes the bitmap's left and its bottom side, y downwards
        self._renderer.draw_text_image(mask, pen_x + left, int(self.height) - (pen_y + top) + mask.shape[0], 0, gc)
        return None


class _MetricsRendererPdf(RendererPdf):
    """:class:`RendererPdf` reading text metrics from a table shared by every page of the file."""

    def __init__(self, file: Any, image_dpi: float, height: float, width: float,
                 metrics: dict[tuple[Any, ...], tuple[float, float, float]]) -> None:
        super().__init__(file, image_dpi, height, width)
        self._metrics = metrics

    def get_text_width_height_descent(self, s: str, prop: Any, ismath: Any) -> tuple[float, float, float]:
        """Width, height and descent of ``s`` (points), measured once per string, font and size."""
        key = _text_key(s, prop, 72.0, ismath)
        if key not in self._metrics:
            self._metrics[key] = super().get_text_width_height_descent(s, prop, ismath)
        return self._metrics[key]

    def _glyphs(self, s: str, prop: Any) -> list[tuple[Any, str, int, float, float, float]]:
        """``s`` shaped once per string, font and size: (font, character, glyph, x, y, kern before) per glyph."""
        key = _text_key(s, prop, 72.0, "glyphs")
        if key not in self._metrics:
            font = self._get_font_ttf(prop)
            self._metrics[key] = [(i.ft_object, i.char, i.glyph_index, i.x, i.y, i.prev_kern)
                                  for i in font._layout(s, LoadFlags.NO_HINTING)]
        return self._metrics[key]

    def draw_text(self, gc: Any, x: float, y: float, s: str, prop: Any, angle: float, ismath: Any = False,
                  mtext: Any = None) -> None:
        """Emit ``s`` from its cached shaping (Type 3 / 42 fonts; matplotlib's path for anything else).

        The operators written are those of ``RendererPdf.draw_text``: one BT/ET group, a
        font selection per 256-glyph subset, kerns between chunks, text rise for glyphs off
        the baseline.
        """
        fonttype = mpl.rcParams["pdf.fonttype"]
        if (not _plain(ismath, 0, mtext) or mpl.rcParams["pdf.use14corefonts"] or fonttype not in (3, 42)
                or gc.get_url() is not None):
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        self.check_gc(gc, gc._rgb)
        fontsize = prop.get_size_in_points()
        out = self.file.output
        chunk: list[Any] = []  # [kern, glyph code, glyph code, ...] of one font subset

        def flush() -> None:
            if chunk:
                out([(-1000 * next(group) / fontsize) if tp is float else self._encode_glyphs(group, fonttype)
                     for tp, group in itertools.groupby(chunk, type)], Op.showkern)
                chunk.clear()

        a = math.radians(angle)
        out(Op.gsave)
        out(math.cos(a), math.sin(a), -math.sin(a), math.cos(a), x, y, Op.concat_matrix)
        out(Op.begin_text)
        prev_font, prev_x = None, 0
        for ft, char, glyph, gx, gy, kern in self._glyphs(s, prop):
            subset, code = self.file._character_tracker.track_glyph(ft, char, glyph)
            if (ft, subset) != prev_font:
                flush()
                out(self.file.fontName(FontPath(ft.fname, ft.face_index), subset), fontsize, Op.selectfont)
                self._setup_textpos(gx, 0, 0, prev_x, 0, 0)
                prev_font, prev_x = (ft, subset), gx
            if gy:
                flush()
                out(gy, Op.textrise)
            if kern:
                chunk.append(kern)
            chunk.append(code)
            if gy:
                flush()
                out(0, Op.textrise)
        flush()
        out(Op.end_text)
        out(Op.grestore)
        return None


class SheetCanvas(FigureCanvasAgg):
    """An Agg canvas with a text-caching renderer (kept while the size and dpi stay) and PDF pages.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> fig = Figure(figsize=(2, 1), dpi=100)
    >>> canvas = SheetCanvas(fig)
    >>> _ = fig.text(0.5, 0.5, "图例 Legend")
    >>> canvas.draw()
    >>> type(canvas.get_renderer()).__name__
    '_CachingRendererAgg'
    """

    def __init__(self, figure: Any) -> None:
        super().__init__(figure)
        self._pdf_metrics: dict[tuple[Any, ...], tuple[float, float, float]] = {}
        self._extents: dict[tuple[Any, ...], tuple[float, float, float]] = {}

    def text_extent(self, s: str, size: float) -> tuple[float, float, float]:
        r"""Width, height and descent (points) of ``s`` at ``size`` pt in the current font, lines stacked.

        As matplotlib's ``Text`` lays lines out: a line is as tall as the taller of itself
        and ``"lp"`` (height :math:`h`, descent :math:`d`), baselines are
        :math:`1.2\,(h - d)` apart, so :math:`n` lines stand :math:`(h - d)(1 + 1.2(n-1)) + d` tall.
        """
        from matplotlib.font_manager import FontProperties

        key = (s, size, hash(FontProperties(size=size)))
        if key not in self._extents:
            renderer = self.get_renderer()
            scale = 72.0 / self.figure.dpi
            prop = FontProperties(size=size)
            _, lp_h, lp_d = renderer.get_text_width_height_descent("lp", prop, False)
            sizes = [renderer.get_text_width_height_descent(line, prop, False) for line in s.split("\n")]
            line_h = max([lp_h] + [h for _, h, _ in sizes])
            height = (line_h - lp_d) * (1 + 1.2 * (len(sizes) - 1)) + lp_d
            self._extents[key] = (max(w for w, _, _ in sizes) * scale, height * scale, lp_d * scale)
        return self._extents[key]

    def get_renderer(self) -> RendererAgg:
        """The caching renderer, made again only when the canvas's pixel size or dpi changes."""
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = _CachingRendererAgg(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer

    def pdf_page(self, file: Any) -> None:
        """Draw the figure as the next page of the open :class:`~matplotlib.backends.backend_pdf.PdfFile` ``file``.

        The steps of ``FigureCanvasPdf.print_pdf`` for one page of a multi-page file, with
        text metrics kept across pages (:class:`_MetricsRendererPdf`).
        """
        fig = self.figure
        dpi = fig.dpi
        width, height = fig.get_size_inches()
        file.newPage(width, height)
        fig.dpi = 72  # PDF units are points
        try:
            renderer = MixedModeRenderer(fig, width, height, dpi,
                                         _MetricsRendererPdf(file, dpi, height, width, self._pdf_metrics))
            fig.draw(renderer)
            renderer.finalize()
        finally:
            fig.dpi = dpi
            file.endStream()
