"""Atomic writers for every output the toolkit produces.

Each writer writes to a temporary file in the destination folder and renames it
over the target (:func:`os.replace`), so a crash never leaves a half-written
GeoPackage, workbook or JSON behind, and a reader never sees one.

A GeoPackage is written without SQLite's flush to disk after every transaction
(GDAL's ``OGR_SQLITE_SYNCHRONOUS=OFF`` while :func:`write_gpkg` runs) and flushed
once, whole, before it is renamed into place: the temporary file is thrown away if
anything fails, so the per-transaction flushes bought nothing but waiting (0.5–0.9 s
for the sample's ``district.gpkg`` here, 0.1 s without them).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis.gpkg_stream import write_layer
from gis.xlsx_rows import FORMULA_TRIGGERS, PLAIN_NUMBER as _PLAIN_NUMBER  # noqa: F401 - part of this module's API


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file keeps ``target``'s suffix (drivers such as GPKG and GTiff
    choose their format from it). On an exception the temporary file is removed
    and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=suffix or target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # let the writer create it (GDAL drivers refuse an empty file)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        for leftover in (tmp_path, Path(str(tmp_path) + "-journal")):
            if leftover.exists():
                leftover.unlink()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by ``None``, recursively."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(data: Mapping[str, Any], target: str | Path) -> Path:
    """Write ``data`` as pretty UTF-8 JSON (Chinese kept readable; NaN → null)."""
    with atomic_path(target) as tmp:
        tmp.write_text(
            json.dumps(_finite(data), ensure_ascii=False, indent=2, default=_json_default, allow_nan=False) + "\n",
            encoding="utf-8",
        )
    return Path(target)


def write_csv(df: pd.DataFrame, target: str | Path, *, encoding: str = "utf-8-sig") -> Path:
    """Write a table as CSV. ``utf-8-sig`` so that Excel on Chinese Windows opens it.

    Text cells that a spreadsheet would run as a formula are neutralised
    (:func:`neutralise_csv_frame`).
    """
    with atomic_path(target) as tmp:
        neutralise_csv_frame(df).to_csv(tmp, index=False, encoding=encoding)
    return Path(target)




def is_formula_like(value: object) -> bool:
    """Whether a text value would be run as a formula by a spreadsheet (公式注入).

    A plain signed number such as ``-3.5`` is data, not a formula, and stays as it is.
    """
    return (
        isinstance(value, str)
        and value.startswith(FORMULA_TRIGGERS)
        and not _PLAIN_NUMBER.match(value)
    )


def neutralise_csv_value(value: object) -> object:
    """OWASP CSV-injection defence: prefix a formula-like text with ``'``."""
    return "'" + value if is_formula_like(value) else value


def neutralise_csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (and headers) cannot run as formulas."""
    out = df.copy()
    out.columns = [neutralise_csv_value(c) for c in out.columns]
    for col in out.columns:
        s = out[col]
        if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
            if s.map(is_formula_like).any():
                out[col] = s.map(neutralise_csv_value)
    return out


def store_text_cells(ws: Any) -> None:
    """Make every formula-looking cell of an openpyxl worksheet a plain string cell.

    openpyxl stores any string beginning with ``=`` as a live formula (e.g. a
    clickable ``=HYPERLINK(...)`` in a site name). Such cells become string
    cells with Excel's quote prefix, so Excel shows the text and never runs it.
    """
    for row in ws.iter_rows():
        for cell in row:
            if cell.data_type == "f" or is_formula_like(cell.value):
                cell.data_type = "s"
                cell.quotePrefix = True


def write_gpkg(layers: Mapping[str, gpd.GeoDataFrame], target: str | Path) -> Path:
    """Write several layers into one GeoPackage, atomically as a whole.

    Empty layers are written too (with their columns), so a reader always finds
    every layer name it expects. A layer of more than :data:`gis.gpkg_stream.BATCH_ROWS`
    rows goes to GDAL in Arrow batches (:func:`gis.gpkg_stream.write_layer`: the same
    file, without the whole layer's WKB held at once). SQLite does not flush each transaction
    (:class:`_UnsyncedSqlite`); the finished file is flushed once before the rename.
    """
    with atomic_path(target) as tmp:
        with _UnsyncedSqlite():
            for name, gdf in layers.items():
                write_layer(_gpkg_safe(gdf), tmp, name)  # Arrow batches: ~3x faster than row-wise, bounded memory
        _flush_to_disk(tmp)
    return Path(target)


class _UnsyncedSqlite:
    """GDAL's SQLite writers without a disk flush per transaction (``OGR_SQLITE_SYNCHRONOUS=OFF``) while inside.

    The option is process-wide in GDAL, so writers on several threads (the app's file
    writes) share it: the first one in sets it, the last one out puts back what was
    there before, under one lock (class attributes: GDAL's option is the state).
    """

    _lock = threading.Lock()
    _inside = 0
    _before: str | None = None
    _KEY = "OGR_SQLITE_SYNCHRONOUS"

    def __enter__(self) -> _UnsyncedSqlite:
        import pyogrio

        cls = type(self)
        with cls._lock:
            if cls._inside == 0:
                cls._before = pyogrio.get_gdal_config_option(cls._KEY)
                pyogrio.set_gdal_config_options({cls._KEY: "OFF"})
            cls._inside += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        import pyogrio

        cls = type(self)
        with cls._lock:
            cls._inside -= 1
            if cls._inside == 0:
                pyogrio.set_gdal_config_options({cls._KEY: cls._before})


def _flush_to_disk(path: Path) -> None:
    """``fsync`` the finished file, so it is on disk before its rename makes it visible (opened for
    writing: Windows' ``_commit`` refuses a read-only handle)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _gpkg_safe(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Turn columns GDAL cannot store (lists, dicts, categoricals, mixed Python values) into text.

    A shallow copy: the columns stored as they are share the caller's memory (a
    million-row site layer was copied whole before every write).
    """
    out = gdf.copy(deep=False)
    for col in out.columns:
        if col == out.geometry.name:
            continue
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s.astype("string")
        elif s.dtype == object:
            first = _first_present(s)
            if isinstance(first, (list, tuple, dict, set)):
                out[col] = s.map(
                    lambda v: json.dumps(
                        list(v) if isinstance(v, (set, tuple)) else v,
                        ensure_ascii=False,
                        default=_json_default,
                    )
                    if v is not None and not (isinstance(v, float) and np.isnan(v))
                    else None
                )
            elif pd.api.types.infer_dtype(s, skipna=True) not in ("string", "empty"):
                # mixed Python values (True / None, 500.0 / None): text, as GDAL's row-wise writer stored them
                out[col] = s.astype(str).where(s.notna(), None).astype(object)
    return out


def _first_present(s: pd.Series) -> Any:
    """The first non-missing value of an object column (None when all are missing).

    Walks from the top and stops at the first value (a ``notna`` mask of a million
    Python strings costs more than the whole walk on a usual column).
    """
    for v in s.to_numpy(dtype=object, copy=False):
        if v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v)):
            return v
    return None


def write_excel(
    sheets: Mapping[str, pd.DataFrame],
    target: str | Path,
    *,
    title_rows: Mapping[str, Sequence[str]] | None = None,
    filing: Mapping[str, str] | None = None,
    finish: Callable[[Any], None] | None = None,
) -> Path:
    """Write tables as an .xlsx workbook in the shape of a Chinese government form.

    Every sheet: 宋体 body and bold header, thin borders, column widths fitted to the
    (CJK-aware) text width, frozen and print-repeated header row, A4 landscape fitted
    to one page wide, page numbers in the footer, dates as real Excel dates.

    ``title_rows`` gives a sheet a form head above its table: the first line is the
    title (黑体, merged and centred across the table); a line ``填报日期：YYYY-MM-DD``
    sets the filing date; every other line (e.g. the 样例数据 label) becomes a merged
    note row. A sheet with a title also gets the 填报单位 / 填报人 / 联系电话 / 填报日期
    line (values from ``filing``, keys ``填报单位``, ``填报人``, ``联系电话``; blank to
    fill in by hand when absent). Sheets without ``title_rows`` start with the header
    in row 1, so readers that expect a plain table still find it. ``finish`` is called
    with the openpyxl workbook before it is saved (sheet protection, validation lists).

    A table longer than an Excel sheet holds is split over several sheets
    (:func:`sheet_parts`). Without ``finish``, rows after the first are streamed into the
    saved file by :mod:`gis.xlsx_rows` (same cells and styles, ~50× faster than openpyxl
    cell objects for a 100,000-row ledger).
    """
    from gis.xlsx_rows import inject_rows

    bulks = []
    with atomic_path(target) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
            for sheet, df, lines in sheet_parts(sheets, title_rows or {}, filing):
                df = _dates_as_dates(df)
                head = _FormHead.parse(lines, filing)
                # openpyxl writes the form's shape and the first table row; the other rows are streamed
                # in afterwards (gis.xlsx_rows), unless `finish` styles or protects cells one by one
                shaped = df if finish is not None else df.head(1)
                shaped.to_excel(xw, sheet_name=sheet, index=False, startrow=head.n_rows)
                ws = xw.sheets[sheet]
                head.write(ws, max(len(df.columns), 1))
                style_form_table(ws, df, header_row=head.n_rows + 1)
                store_text_cells(ws)  # formula-like text stays text (security); after styling: it sets quotePrefix
                if len(df) > len(shaped):
                    bulks.append(_bulk_rows(ws, df.iloc[len(shaped):], head.n_rows + 2 + len(shaped)))
            if finish is not None:
                finish(xw.book)
        inject_rows(tmp, bulks)
    return Path(target)


#: Rows of one Excel worksheet (Excel 2007 and later; ECMA-376 limits a sheet to 2**20 rows).
EXCEL_MAX_ROWS = 1_048_576


def sheet_parts(sheets: Mapping[str, pd.DataFrame], title_rows: Mapping[str, Sequence[str]],
                filing: Mapping[str, str] | None) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """``(sheet name, rows, form-head lines)`` per sheet; a table over Excel's row limit split.

    A table with more rows than fit below its form head (:data:`EXCEL_MAX_ROWS` minus
    the head and header rows) is written as consecutive sheets ``名称``, ``名称（2）``, …
    each with the same head plus a note ``第 k / n 部分（共 N 行）``, never truncated.
    """
    out = []
    for sheet, df in sheets.items():
        lines = [str(x) for x in title_rows.get(sheet, ())]
        room = EXCEL_MAX_ROWS - 1 - _FormHead.parse([*lines, "note"] if lines else lines, filing).n_rows
        n = max(1, -(-len(df) // room))
        if n == 1:
            out.append((sheet[:31], df, lines))
            continue
        for k in range(n):
            suffix = "" if k == 0 else f"（{k + 1}）"
            note = f"第 {k + 1} / {n} 部分（共 {len(df):,} 行）"
            out.append((sheet[: 31 - len(suffix)] + suffix, df.iloc[k * room: (k + 1) * room],
                        [*lines, note] if lines else lines))
    return out


def _bulk_rows(ws: Any, rows: pd.DataFrame, first_row: int) -> Any:
    """The rows to stream into ``ws`` after saving, with each column's cell style ids.

    Every column's cells share the style of the first table row (see
    :func:`style_form_table`); formula-like text gets that style with ``quotePrefix``.
    """
    from gis.xlsx_rows import BulkRows, ColumnStyle

    book = ws.parent
    styles = []
    for j in range(1, rows.shape[1] + 1):
        first = ws.cell(row=first_row - 1, column=j)  # its quotePrefix depends on its own value
        plain, quoted = copy.copy(first._style), copy.copy(first._style)
        plain.quotePrefix, quoted.quotePrefix = 0, 1
        styles.append(ColumnStyle(plain=book._cell_styles.add(plain), quoted=book._cell_styles.add(quoted)))
    member = f"xl/worksheets/sheet{book.worksheets.index(ws) + 1}.xml"
    return BulkRows(member=member, frame=rows, first_row=first_row, styles=styles)


#: Fonts of the official form: 黑体 (SimHei) for the title, 宋体 (SimSun) for everything else.
FORM_TITLE_FONT = "黑体"
FORM_BODY_FONT = "宋体"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"


def _dates_as_dates(df: pd.DataFrame) -> pd.DataFrame:
    """Columns whose every non-empty value is an ISO date (``YYYY-MM-DD``) become datetimes.

    So that Excel holds dates (sortable, filterable) rather than text; a column that
    mixes dates with other text (e.g. ``30日内``) is left as it is.
    """
    out = df
    for col in df.columns:
        s = df[col]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
            continue
        text = s.dropna().astype(str).str.strip()
        text = text[text != ""]
        if len(text) and (text.str.len() == len("YYYY-MM-DD")).all() and text.str.fullmatch(_ISO_DATE).all():
            if out is df:
                out = df.copy()
            out[col] = pd.to_datetime(s.where(s.astype(str).str.strip() != ""), format="%Y-%m-%d", errors="coerce")
    return out


class _FormHead:
    """The rows above a form's table: merged title, note rows, the 填报 line."""

    FIELDS = ("填报单位", "填报人", "联系电话")

    def __init__(self, title: str | None, notes: list[str], filed: dt.date | None,
                 filing: Mapping[str, str]) -> None:
        self.title, self.notes, self.filed, self.filing = title, notes, filed, dict(filing)

    @classmethod
    def parse(cls, lines: Sequence[str], filing: Mapping[str, str] | None) -> _FormHead:
        """Split ``title_rows`` lines into title, 填报日期 and notes."""
        lines = [str(x) for x in lines]
        if not lines:
            return cls(None, [], None, {})
        filed, notes = None, []
        for line in lines[1:]:
            m = re.fullmatch(r"填报日期[：:]\s*(" + _ISO_DATE + r")\s*", line)
            if m:
                filed = dt.date.fromisoformat(m.group(1))
            else:
                notes.append(line)
        return cls(lines[0], notes, filed or dt.date.today(), filing or {})

    @property
    def n_rows(self) -> int:
        """Rows the head takes (0 without a title)."""
        return 0 if self.title is None else 2 + len(self.notes)

    def write(self, ws: Any, ncols: int) -> None:
        """Write the head into rows 1… of ``ws`` across ``ncols`` columns."""
        from openpyxl.styles import Alignment, Font

        if self.title is None:
            return
        width = max(ncols, 4)
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
        cell = ws.cell(row=1, column=1, value=self.title)
        cell.font = Font(name=FORM_TITLE_FONT, size=18, bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center")
        ws.row_dimensions[1].height = 36
        self._write_filing(ws, 2, width)
        for i, note in enumerate(self.notes, start=3):
            ws.merge_cells(start_row=i, start_column=1, end_row=i, end_column=width)
            c = ws.cell(row=i, column=1, value=note)
            c.font = Font(name=FORM_BODY_FONT, size=10, color="C00000")
            c.alignment = Alignment(horizontal="left", vertical="center")

    def _write_filing(self, ws: Any, row: int, width: int) -> None:
        """填报单位 / 填报人 / 联系电话 / 填报日期 in four merged groups; the date a real date."""
        from openpyxl.styles import Alignment, Font

        bounds = [round(width * k / 4) for k in range(5)]
        font = Font(name=FORM_BODY_FONT, size=11)
        for k, field in enumerate((*self.FIELDS, "填报日期")):
            c0, c1 = bounds[k] + 1, bounds[k + 1]
            if c1 > c0:
                ws.merge_cells(start_row=row, start_column=c0, end_row=row, end_column=c1)
            if field == "填报日期":  # a real date; the label is part of its number format
                cell = ws.cell(row=row, column=c0, value=self.filed)
                cell.number_format = '"填报日期："yyyy"年"m"月"d"日"'
            else:
                cell = ws.cell(row=row, column=c0, value=f"{field}：{self.filing.get(field, '')}")
            cell.font, cell.alignment = font, Alignment(horizontal="left", vertical="center")
        ws.row_dimensions[row].height = 22


def style_form_table(ws: Any, df: pd.DataFrame, *, header_row: int) -> None:
    """Style a written table as an official form and set it up for printing.

    Header: 宋体 bold, centred, wrapped, shaded; body: 宋体; thin borders on every
    table cell; column width = min(max display width + 2, 60) with CJK characters
    counted 2 (:func:`_display_width`), longer text wrapped; date columns formatted
    ``yyyy-mm-dd``; header frozen and repeated on every printed page
    (``print_title_rows``); A4 landscape, one page wide (``fitToWidth = 1``,
    ``fitToHeight = 0``), centred, page x of n in the footer.
    """
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    thin = Side(style="thin", color="000000")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    body_font, head_font = Font(name=FORM_BODY_FONT, size=10), Font(name=FORM_BODY_FONT, size=11, bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    last_row = min(header_row + len(df), ws.max_row)  # rows written by openpyxl (the rest: gis.xlsx_rows)
    for cell in ws[header_row][: len(df.columns)]:
        cell.font, cell.fill, cell.border = head_font, fill, border
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for j, col in enumerate(df.columns, start=1):
        letter = get_column_letter(j)
        texts = [str(col)] + [_cell_text(v) for v in df[col].head(500).tolist()]
        width = max(_display_width(t) for t in texts) + 2
        ws.column_dimensions[letter].width = max(6, min(width, 60))
        fmt = _date_format(df[col])
        if last_row <= header_row:
            continue
        first = ws.cell(row=header_row + 1, column=j)
        first.font, first.border = body_font, border
        first.alignment = Alignment(wrap_text=width > 60, vertical="center")
        if fmt:
            first.number_format = fmt
        # the rest of the column shares the first cell's style record (openpyxl's own way of
        # copying styles): setting font, border and alignment per cell hashes them for every cell
        for (cell,) in ws.iter_rows(min_row=header_row + 2, max_row=last_row, min_col=j, max_col=j):
            cell._style = copy.copy(first._style)
    ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
    _print_setup(ws, header_row)


def _cell_text(value: Any) -> str:
    """The text a cell shows (dates as ``YYYY-MM-DD``)."""
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)) and not pd.isna(value):
        return value.strftime("%Y-%m-%d")
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _date_format(s: pd.Series) -> str | None:
    """Excel number format of a date(time) column (``yyyy-mm-dd``, with time when any is set)."""
    if not pd.api.types.is_datetime64_any_dtype(s):
        return None
    t = pd.to_datetime(s).dropna()
    has_time = bool(len(t)) and bool((t != t.dt.normalize()).any())
    return "yyyy-mm-dd hh:mm" if has_time else "yyyy-mm-dd"


def _print_setup(ws: Any, header_row: int) -> None:
    """A4 landscape, fit to one page wide, header row repeated, centred, page numbers."""
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = ws.ORIENTATION_LANDSCAPE
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.page_margins.top = ws.page_margins.bottom = 0.6
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"


def _display_width(text: str) -> int:
    """Width of ``text`` in Excel character units (CJK characters count double)."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def write_geotiff(
    array: np.ndarray,
    target: str | Path,
    *,
    transform: Any,
    crs: Any,
    nodata: float | int | None = None,
    tags: Mapping[str, str] | None = None,
) -> Path:
    """Write a single-band array as a compressed, tiled GeoTIFF."""
    import rasterio

    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype,
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
    }
    if array.shape[0] >= 256 and array.shape[1] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if nodata is not None:
        profile["nodata"] = nodata
    with atomic_path(target) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array, 1)
            if tags:
                dst.update_tags(**tags)
    return Path(target)
