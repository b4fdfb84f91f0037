"""Table rows of an .xlsx sheet written as XML in bulk, column by column.

openpyxl (and xlsxwriter) build a Python object per cell and serialise it through
several layers of calls: about 20–30 µs a cell, so a 400,000-row 问题台账 of 16
columns took minutes. :func:`gis.export.write_excel` lets openpyxl write everything
that has a shape (title, 填报 line, header, the first table row with its styles, print
setup, frozen panes, merged cells) and then streams the remaining table rows into the
saved sheet with :func:`inject_rows`: each column becomes its cell XML in one pass
(escaping with pandas string methods; one f-string per cell), each row one join.

The cells are what openpyxl itself writes for the same values (SpreadsheetML,
ECMA-376 Part 1 §18.3.1.4 ``c``):

- text: an inline string ``<c r="B7" s="3" t="inlineStr"><is><t>…</t></is></c>``
  (read back exactly like openpyxl's shared strings); text a spreadsheet would run as a
  formula gets the column's style with ``quotePrefix`` (Excel's leading ``'``);
- numbers: ``<c r="C7" s="4"><v>12.5</v></c>`` (``inf`` written as the text ``inf``,
  as pandas does);
- dates: the Excel serial day number ``(t − 1899-12-30) / 1 day`` in the column's date
  style;
- booleans: ``t="b"`` with 1 / 0;
- missing values (None, NaN, NaT, empty text): the styled cell without a value (typed
  ``inlineStr``: pandas writes them as empty text), so the borders stay.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: First characters that make Excel / WPS / LibreOffice read a cell as a formula
#: (OWASP "CSV injection"): ``= + - @``, tab and carriage return (see :func:`gis.export.is_formula_like`).
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: A plain signed number such as ``-3.5``: data, not a formula.
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ILLEGAL_XML = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # characters XML 1.0 cannot hold (openpyxl refuses them)
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_CHUNK_ROWS = 20_000  # rows turned into XML at a time (bounds the memory of a big sheet)
_BYTES_PER_CELL = 120  # generous size of one cell's XML, to decide on ZIP64 for a sheet part
_ZIP32_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ColumnStyle:
    """The ``s`` (cell format index) of one table column: plain and with ``quotePrefix``."""

    plain: int
    quoted: int


@dataclass(frozen=True)
class BulkRows:
    """Table rows to stream into one saved sheet.

    ``first_row`` is the 1-based sheet row of ``frame``'s first row; ``member`` the
    sheet's part in the package (``xl/worksheets/sheet1.xml``).
    """

    member: str
    frame: pd.DataFrame
    first_row: int
    styles: Sequence[ColumnStyle]


def column_letters(n: int) -> list[str]:
    """Excel column letters of the first ``n`` columns (A … Z, AA …)."""
    out = []
    for j in range(1, n + 1):
        s, k = "", j
        while k:
            k, r = divmod(k - 1, 26)
            s = chr(65 + r) + s
        out.append(s)
    return out


def _escaped_text(s: pd.Series) -> pd.Series:
    """Text for ``<t>``: illegal control characters dropped, ``& < >`` escaped."""
    t = s.astype("string").str.replace(_ILLEGAL_XML, "", regex=True)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        t = t.str.replace(a, b, regex=False)
    return t


def _formula_like(s: pd.Series) -> np.ndarray:
    """Vectorised :func:`gis.export.is_formula_like` over a text column."""
    first = s.str[:1]
    trig = first.isin(list(FORMULA_TRIGGERS)).fillna(False).to_numpy(dtype=bool)
    if not trig.any():
        return trig
    plain = s.str.fullmatch(PLAIN_NUMBER.pattern).fillna(False).to_numpy(dtype=bool)
    return trig & ~plain


def _kind(s: pd.Series) -> str:
    """``date``, ``bool``, ``number``, ``text`` or ``mixed`` (per-value types)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return "date"
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_numeric_dtype(s):
        return "number"
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred in ("string", "empty"):
        return "text"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "number"
    if inferred == "boolean":
        return "bool"
    if inferred in ("datetime64", "datetime", "date"):
        return "date"
    return "mixed"


def _number_cells(s: pd.Series, refs: np.ndarray, style: ColumnStyle) -> list[str]:
    v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    text = np.char.mod("%.16g", v)  # openpyxl's own number text (safe_string)
    out = [f'<c r="{r}" s="{style.plain}"><v>{t}</v></c>' for r, t in zip(refs, text)]
    for i in np.flatnonzero(~np.isfinite(v)):
        out[i] = (f'<c r="{refs[i]}" s="{style.plain}" t="inlineStr"/>' if np.isnan(v[i]) else
                  f'<c r="{refs[i]}" s="{style.plain}" t="inlineStr"><is><t>{"inf" if v[i] > 0 else "-inf"}</t></is></c>')
    return out


def _integer_texts(s: pd.Series) -> np.ndarray | None:
    """Integers written without ``.0`` (as openpyxl writes ints); ``None`` when not all integers."""
    if pd.api.types.is_integer_dtype(s) and not s.isna().any():
        return s.to_numpy().astype(str)
    return None


def _date_cells(s: pd.Series, refs: np.ndarray, style: ColumnStyle) -> list[str]:
    t = pd.to_datetime(s, errors="coerce")
    serial = ((t - _EXCEL_EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    whole = np.isfinite(serial) & (serial == np.floor(np.nan_to_num(serial)))
    text = np.where(whole, np.nan_to_num(serial).astype(np.int64).astype(str), np.char.mod("%.16g", serial))
    return [f'<c r="{r}" s="{style.plain}"><v>{x}</v></c>' if ok else f'<c r="{r}" s="{style.plain}" t="inlineStr"/>'
            for r, x, ok in zip(refs, text, np.isfinite(serial))]


def _text_cells(s: pd.Series, refs: np.ndarray, style: ColumnStyle) -> list[str]:
    raw = s.astype("string")
    missing = (raw.isna() | (raw == "")).to_numpy(dtype=bool)
    quoted = _formula_like(raw.fillna(""))
    esc = _escaped_text(raw.fillna("")).to_numpy(dtype=object)
    sid = np.where(quoted, style.quoted, style.plain)
    return [f'<c r="{r}" s="{k}" t="inlineStr"/>' if m else
            f'<c r="{r}" s="{k}" t="inlineStr"><is><t xml:space="preserve">{x}</t></is></c>'
            for r, k, x, m in zip(refs, sid, esc, missing)]


def _mixed_cells(s: pd.Series, refs: np.ndarray, style: ColumnStyle) -> list[str]:
    """A column of several value types: each value by its own type (numbers stay numbers)."""
    import numbers

    vals = s.to_numpy(dtype=object)
    numeric = np.array([isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals], dtype=bool)
    out = _text_cells(pd.Series(np.where(numeric, None, vals), dtype=object).map(
        lambda v: v if v is None or isinstance(v, str) else str(v)), refs, style)
    if numeric.any():
        idx = np.flatnonzero(numeric)
        nums = _number_cells(pd.Series(vals[idx]), refs[idx], style)
        for i, cell in zip(idx, nums):
            out[i] = cell
    return out


def column_cells(s: pd.Series, refs: np.ndarray, style: ColumnStyle) -> list[str]:
    """The ``<c>`` elements of one column (see the module docstring for the cell kinds)."""
    kind = _kind(s)
    if kind == "date":
        return _date_cells(s, refs, style)
    if kind == "bool":
        b = s.astype("boolean")
        return [f'<c r="{r}" s="{style.plain}" t="inlineStr"/>' if pd.isna(v) else f'<c r="{r}" s="{style.plain}" t="b"><v>{int(v)}</v></c>'
                for r, v in zip(refs, b.to_numpy(dtype=object))]
    if kind == "number":
        ints = _integer_texts(s)
        if ints is not None:
            return [f'<c r="{r}" s="{style.plain}"><v>{t}</v></c>' for r, t in zip(refs, ints)]
        return _number_cells(s, refs, style)
    if kind == "text":
        return _text_cells(s, refs, style)
    return _mixed_cells(s, refs, style)


def rows_xml(frame: pd.DataFrame, first_row: int, styles: Sequence[ColumnStyle]) -> str:
    """``<row>`` elements of ``frame`` starting at sheet row ``first_row`` (1-based)."""
    rows = np.arange(first_row, first_row + len(frame))
    row_text = rows.astype(str)
    columns = []
    for letter, col, style in zip(column_letters(frame.shape[1]), range(frame.shape[1]), styles):
        refs = np.char.add(letter, row_text).astype(object)
        columns.append(column_cells(frame.iloc[:, col], refs, style))
    return "".join(f'<row r="{r}">' + "".join(cells) + "</row>" for r, cells in zip(row_text, zip(*columns)))


def _chunks(bulk: BulkRows) -> Iterator[str]:
    for start in range(0, len(bulk.frame), _CHUNK_ROWS):
        part = bulk.frame.iloc[start: start + _CHUNK_ROWS]
        yield rows_xml(part, bulk.first_row + start, bulk.styles)


def inject_rows(path: Path, bulks: Sequence[BulkRows]) -> None:
    """Append each :class:`BulkRows` to its sheet's ``<sheetData>`` in the saved workbook ``path``.

    The package is copied member by member into a new file beside it (other parts
    byte for byte), the sheet parts streamed with their new rows a few thousand rows at a
    time so memory stays bounded; the ``<dimension>`` ref is widened to the last row.
    """
    by_member = {b.member: b for b in bulks if len(b.frame)}
    if not by_member:
        return
    tmp = path.with_name(path.name + ".rows")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            bulk = by_member.get(info.filename)
            if bulk is None:
                dst.writestr(info, data)
                continue
            head, sep, tail = data.decode("utf-8").rpartition("</sheetData>")
            if not sep:
                raise ValueError(f"{path.name}: {info.filename} has no <sheetData> to append rows to")
            last = bulk.first_row + len(bulk.frame) - 1
            letters = column_letters(max(bulk.frame.shape[1], 1))
            head = re.sub(r'<dimension ref="([A-Z]+\d+)(:[A-Z]+\d+)?"',
                          lambda m: f'<dimension ref="{m.group(1)}:{letters[-1]}{last}"', head, count=1)
            big = len(bulk.frame) * max(bulk.frame.shape[1], 1) * _BYTES_PER_CELL > _ZIP32_LIMIT
            with dst.open(info.filename, "w", force_zip64=big) as out:
                out.write(head.encode("utf-8"))
                for piece in _chunks(bulk):
                    out.write(piece.encode("utf-8"))
                out.write((sep + tail).encode("utf-8"))
    tmp.replace(path)
