"""Atomic writers for every output the toolkit produces.

Each writer writes to a temporary file in the destination folder and renames it
over the target (:func:`os.replace`), so a crash never leaves a half-written
GeoPackage, workbook or JSON behind, and a reader never sees one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd


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


#: First characters that make Excel / WPS / LibreOffice read a cell as a formula
#: (OWASP "CSV injection"): ``= + - @``, tab and carriage return.
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")

_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


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
    every layer name it expects.
    """
    with atomic_path(target) as tmp:
        for name, gdf in layers.items():
            gdf = _gpkg_safe(gdf)
            gdf.to_file(tmp, layer=name, driver="GPKG", engine="pyogrio")
    return Path(target)


def _gpkg_safe(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Turn columns GDAL cannot store (lists, dicts, categoricals) into text."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s.astype("string")
        elif s.dtype == object:
            sample = s.dropna()
            if len(sample) and isinstance(sample.iloc[0], (list, tuple, dict, set)):
                out[col] = s.map(
                    lambda v: json.dumps(
                        list(v) if isinstance(v, (set, tuple)) else v,
                        ensure_ascii=False,
                        default=_json_default,
                    )
                    if v is not None and not (isinstance(v, float) and np.isnan(v))
                    else None
                )
    return out


def write_excel(
    sheets: Mapping[str, pd.DataFrame],
    target: str | Path,
    *,
    title_rows: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write tables as an .xlsx workbook shaped for Chinese government forms.

    Frozen header row, bold header, column widths fitted to the (CJK-aware) text
    width, wrapped long text. ``title_rows`` optionally puts one or more title lines
    (e.g. ``沙坪坝区再生资源回收行业问题台账``) above a sheet's header.
    """
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    title_rows = title_rows or {}
    with atomic_path(target) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
            for sheet, df in sheets.items():
                titles = list(title_rows.get(sheet, ()))
                startrow = len(titles)
                df.to_excel(xw, sheet_name=sheet[:31], index=False, startrow=startrow)
                ws = xw.sheets[sheet[:31]]
                for i, title in enumerate(titles, start=1):
                    ws.cell(row=i, column=1, value=title).font = Font(bold=True, size=14 if i == 1 else 11)
                header_row = startrow + 1
                fill = PatternFill("solid", fgColor="DDEBF7")
                for cell in ws[header_row]:
                    cell.font = Font(bold=True)
                    cell.fill = fill
                    cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
                ws.freeze_panes = ws.cell(row=header_row + 1, column=1)
                store_text_cells(ws)
                for j, col in enumerate(df.columns, start=1):
                    texts = [str(col)] + [str(v) for v in df[col].head(500).tolist()]
                    width = max(_display_width(t) for t in texts) + 2
                    ws.column_dimensions[get_column_letter(j)].width = max(6, min(width, 60))
                    if width > 60:
                        for row in ws.iter_rows(min_row=header_row + 1, min_col=j, max_col=j):
                            for cell in row:
                                cell.alignment = Alignment(wrap_text=True, vertical="top")
    return Path(target)


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
