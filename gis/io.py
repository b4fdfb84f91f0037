"""Readers for the files a district really holds, and row validation into rejects.

Tables (CSV in UTF-8 or GBK/GB18030, Excel .xlsx), vector files (GeoPackage,
Shapefile with .cpg or GBK attributes, GeoJSON) and rasters (GeoTIFF via rasterio).
Headers are mapped onto the canonical data model (:mod:`gis.schema`) through the
declared alias table (``layers/aliases.yaml``) — exact matches after normalisation,
never fuzzy guesses. Every row read ends up either in the returned layer or in the
returned rejects table with its file, spreadsheet row number, field and reason.

Row numbers: for tables, the row as a spreadsheet shows it (the header is row 1
unless title rows precede it); for vector files, the 1-based feature number.
"""

from __future__ import annotations

import io as _io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from gis import settings
from gis._errors import InputError
from gis.catalog import LayerSpec, column_aliases, normalise_label, value_lookup
from gis.limits import check_size, date_window
from gis.schema import LAYER_FIELDS, LAYER_ID_FIELD, REJECT_COLUMNS, Field, RejectReason

# ----------------------------------------------------------------------------- rejects


class RejectCollector:
    """Accumulates rejected rows of one input file, one reason per row.

    The first reason found for a row wins (checks run in a fixed order), so each
    rejected input row appears exactly once and ``loaded + rejected == read``.
    """

    def __init__(self, layer: str, path: Path, rows: np.ndarray) -> None:
        self.layer = layer
        self.path = str(path)
        self.rows = np.asarray(rows)
        n = len(self.rows)
        self.reason = np.full(n, None, dtype=object)
        self.field = np.full(n, None, dtype=object)
        self.value = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of rows not yet rejected."""
        return pd.isna(self.reason)  # reasons are text or None

    def reject(
        self,
        mask: np.ndarray | pd.Series,
        reason: RejectReason,
        field: str | np.ndarray | None,
        values: Any = None,
        detail: str | None = None,
    ) -> None:
        """Reject rows in ``mask`` that are not already rejected."""
        mask = np.asarray(mask, dtype=bool) & self.ok
        if not mask.any():
            return
        self.reason[mask] = reason.value
        fields = np.asarray(field, dtype=object)
        self.field[mask] = fields[mask] if fields.shape == mask.shape else field
        if values is not None:
            vals = np.asarray(values, dtype=object)
            self.value[mask] = vals[mask] if vals.shape == mask.shape else vals
        self.detail[mask] = detail

    def frame(self) -> pd.DataFrame:
        """Rejected rows as a table with :data:`gis.schema.REJECT_COLUMNS`."""
        bad = ~self.ok
        return pd.DataFrame(
            {
                "layer": self.layer,
                "file": self.path,
                "row": self.rows[bad].astype(int),
                "field": self.field[bad],
                "value": [None if v is None else str(v)[:200] for v in self.value[bad]],
                "reason": self.reason[bad],
                "detail": self.detail[bad],
            },
            columns=list(REJECT_COLUMNS),
        )


def empty_rejects() -> pd.DataFrame:
    """An empty rejects table with the canonical columns."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in REJECT_COLUMNS})


# ----------------------------------------------------------------------------- tables


@dataclass
class RawTable:
    """A table read as text, with spreadsheet row numbers.

    Attributes
    ----------
    frame
        All cells as stripped strings (``""`` for empty).
    rows
        Spreadsheet row number of each record.
    header_row
        Spreadsheet row number of the header.
    encoding
        Encoding used (CSV only).
    malformed
        ``{spreadsheet row: what is wrong}`` for CSV records with more fields than
        the file's usual width (e.g. an unquoted comma); their extra cells are
        dropped and the caller rejects them.
    """

    frame: pd.DataFrame
    rows: np.ndarray
    header_row: int
    encoding: str | None = None
    malformed: dict[int, str] = field(default_factory=dict)


def read_table(spec: LayerSpec) -> RawTable:
    """Read a CSV or Excel file as text, locating its header row.

    A CSV without a declared encoding is tried as UTF-8 (with or without BOM) and
    then GB18030 (a superset of GBK/GB2312). The header is the first of the first
    ten rows in which at least two cells are known headers of the layer's role —
    government spreadsheets often carry title rows above it.

    Raises
    ------
    InputError
        If the file cannot be decoded or parsed, or no header row is found.
    """
    path = spec.path
    encoding = None
    malformed: dict[int, str] = {}
    if spec.format == "csv":
        data = path.read_bytes()
        encodings = (spec.encoding,) if spec.encoding else settings.CSV_ENCODINGS
        text = None
        for enc in encodings:
            try:
                text = data.decode(enc)
                encoding = enc
                break
            except (UnicodeDecodeError, LookupError) as exc:
                last = exc
        if text is None:
            line = data[: getattr(last, "start", 0)].count(b"\n") + 1
            raise InputError(
                path,
                f"cannot decode as {' or '.join(encodings)} (first bad byte on line {line}); "
                "save it as UTF-8 or declare `encoding:` in project.yaml",
                row=line,
            )
        utf8 = text.encode("utf-8")
        grid = _arrow_csv(utf8)
        try:
            grid = grid if grid is not None else pd.read_csv(  # from UTF-8 bytes: pandas reads a StringIO ~10x
                _io.BytesIO(utf8), encoding="utf-8", header=None, dtype=str, keep_default_na=False,  # slower
                skip_blank_lines=False,
            )
        except pd.errors.EmptyDataError:
            raise InputError(path, "the file is empty") from None
        except pd.errors.ParserError as exc:
            if "Expected" not in str(exc):  # e.g. EOF inside a quoted field: the file is broken
                m = re.search(r"line (\d+)", str(exc))
                raise InputError(path, f"not a well-formed CSV: {exc}", row=int(m.group(1)) if m else None) from None
            grid, malformed = _ragged_csv(text)
    else:
        try:
            grid = pd.read_excel(
                path, sheet_name=spec.sheet if spec.sheet is not None else 0, header=None, dtype=str
            ).fillna("")
        except ValueError as exc:
            if "sheet" in str(exc).lower() or "worksheet" in str(exc).lower():
                raise InputError(path, f"cannot read sheet {spec.sheet!r}: {exc}", field=f"{spec.key}.sheet") from None
            raise InputError(path, f"not a readable .xlsx workbook ({exc})") from None
        except Exception as exc:  # zipfile/openpyxl errors on a corrupt workbook
            raise InputError(
                path, f"not a readable .xlsx workbook (the file is not a complete Excel package: {type(exc).__name__})"
            ) from None
    grid = grid.apply(lambda s: s.where(s.notna(), "").astype(str).str.strip())  # column by column, not cell by cell
    # drop fully empty rows but keep their numbers accounted as not records
    header_idx = _find_header(grid, spec)
    header = [str(h) for h in grid.iloc[header_idx].tolist()]
    body = grid.iloc[header_idx + 1 :].copy()
    body.columns = _dedupe_headers(header)
    rows = np.arange(header_idx + 2, header_idx + 2 + len(body))
    nonempty = (body != "").any(axis=1).to_numpy()
    bad = {r: why for r, why in malformed.items() if r > header_idx + 1}
    return RawTable(body[nonempty].reset_index(drop=True), rows[nonempty], header_idx + 1, encoding, bad)


def _arrow_csv(utf8: bytes) -> pd.DataFrame | None:
    """Every cell of a rectangular CSV as text, read by pyarrow's CSV reader; None when it is not rectangular.

    The same grid as ``pandas.read_csv(header=None, dtype=str, keep_default_na=False,
    skip_blank_lines=False)`` — columns numbered from 0, empty cells ``""``, quoted
    line breaks inside a cell; a blank record's cells ``""`` where pandas has them missing,
    which :func:`read_table` makes ``""``) — for a file whose every record has as many
    fields as its first line, in a fraction of the time (a million-row ledger: 18 s with
    pandas' parser and its conversion to Arrow strings). Anything else (a short or long
    record, an empty file) gives None and the caller parses the file as before.
    """
    import csv

    import pyarrow as pa
    from pyarrow import csv as pa_csv

    try:
        n = len(next(csv.reader([utf8.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")])))
    except (StopIteration, csv.Error, UnicodeDecodeError):
        return None
    names = [f"c{k}" for k in range(n)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(utf8),
            read_options=pa_csv.ReadOptions(column_names=names),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, ValueError):
        return None
    if table.num_rows == 0:
        return None
    grid = table.to_pandas()
    grid.columns = range(n)
    return grid


def _ragged_csv(text: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """Parse a CSV whose records do not all have the same number of fields.

    The file's width :math:`w` is the most common number of fields per record.
    A record with more than :math:`w` fields, the extra ones not all empty, is
    kept truncated to :math:`w` cells and reported in the returned
    ``{record number (1-based): reason}``; shorter records are padded with ``""``.
    """
    import csv

    records = list(csv.reader(_io.StringIO(text, newline="")))
    lengths = pd.Series([len(r) for r in records if r])
    width = int(lengths.mode().max()) if len(lengths) else 0
    malformed: dict[int, str] = {}
    cells = []
    for i, rec in enumerate(records, start=1):
        if len(rec) > width and any(c.strip() for c in rec[width:]):
            malformed[i] = f"{len(rec)} fields where the file has {width} (an unquoted comma?)"
        cells.append((rec + [""] * width)[:width])
    return pd.DataFrame(cells, dtype=str), malformed


def _dedupe_headers(header: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in header:
        h = h or "(blank)"
        if h in seen:
            seen[h] += 1
            out.append(f"{h}.{seen[h]}")
        else:
            seen[h] = 0
            out.append(h)
    return out


def _find_header(grid: pd.DataFrame, spec: LayerSpec) -> int:
    known = {normalise_label(a) for names in column_aliases(spec.role).values() for a in names}
    known |= {normalise_label(h) for h in spec.columns.values()}
    known |= {normalise_label(h) for h in (spec.lon, spec.lat) if h}
    for i in range(min(10, len(grid))):
        cells = {normalise_label(c) for c in grid.iloc[i].tolist() if c}
        if len(cells & known) >= 2:
            return i
    if len(grid) == 0:
        raise InputError(spec.path, "the file is empty")
    raise InputError(
        spec.path,
        f"no header row found in the first 10 rows: expected headers such as "
        f"{', '.join(a[0] for a in list(column_aliases(spec.role).values())[:6] if a)}",
        row=1,
    )


def map_columns(headers: list[str], spec: LayerSpec, *, coordinates: bool) -> dict[str, str]:
    """Map a file's headers onto canonical field names.

    Explicit ``columns:`` in the spec win; otherwise the alias table decides. Two
    headers claiming the same field is an error, so is a required field with no
    header.

    Returns
    -------
    dict
        ``{canonical: header}`` for every field found (plus ``lon``/``lat``).
    """
    role = spec.role
    by_norm: dict[str, str] = {}
    for h in headers:
        by_norm.setdefault(normalise_label(h), h)
    mapping: dict[str, str] = {}
    explicit = dict(spec.columns)
    if spec.lon:
        explicit["lon"] = spec.lon
    if spec.lat:
        explicit["lat"] = spec.lat
    for canon, header in explicit.items():
        if normalise_label(header) not in by_norm:
            raise InputError(spec.path, f"column {header!r} named in project.yaml ({spec.key}.columns) is not in the file", field=header)
        mapping[canon] = by_norm[normalise_label(header)]
    wanted = [f.name for f in LAYER_FIELDS[role]] + (["lon", "lat"] if coordinates else [])
    aliases = column_aliases(role)
    used = set(mapping.values())
    for canon in wanted:
        if canon in mapping:
            continue
        hits = [by_norm[normalise_label(a)] for a in aliases.get(canon, []) if normalise_label(a) in by_norm]
        hits = list(dict.fromkeys(h for h in hits if h not in used))
        if hits:
            mapping[canon] = hits[0]  # alias list order is the declared preference
            used.add(hits[0])
    missing = [f.name for f in LAYER_FIELDS[role] if f.required and f.name not in mapping]
    if coordinates:
        missing += [c for c in ("lon", "lat") if c not in mapping]
    if missing:
        canon = missing[0]
        expected = aliases.get(canon, [])[:6]
        raise InputError(
            spec.path,
            f"no column for required field '{canon}' (known headers: {', '.join(expected)}); "
            f"add the header to `{spec.key}.columns` in project.yaml",
            field=canon,
        )
    return mapping


# ----------------------------------------------------------------------------- values

_DATE_RE = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})")


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse dates as government tables write them.

    Accepts ``2023-05-01``, ``2023/5/1``, ``2023.05.01``, ``2023年5月1日`` (a time
    part is ignored) and Excel serial day numbers. Unparseable values become NaT.
    """
    s = values.astype("string").fillna("")
    parts = s.str.extract(_DATE_RE)
    out = pd.to_datetime(
        pd.DataFrame({"year": parts[0], "month": parts[1], "day": parts[2]})
        .apply(pd.to_numeric, errors="coerce")
        .astype(float),
        errors="coerce",
    )
    serial = pd.to_numeric(s.where(parts[0].isna()), errors="coerce").astype(float)
    serial = serial.where((serial > 20000) & (serial < 80000))
    from_serial = pd.to_datetime(serial, unit="D", origin="1899-12-30", errors="coerce")
    return out.fillna(from_serial)


def parse_numbers(values: pd.Series) -> pd.Series:
    """Parse numbers, tolerating thousands separators and full-width digits.

    Plain numbers are parsed in one vectorised pass; only the cells that fail it are
    normalised (:func:`gis.catalog.normalise_label`, commas dropped) and parsed again.
    """
    s = values.astype("string").fillna("")
    out = _arrow_floats(s)
    if out is None:  # some cell is not a plain number: pandas' parser, cell by cell where it fails
        out = pd.to_numeric(s.astype(object).where(s != "", np.nan), errors="coerce").astype(float)
    retry = (out.isna() & (s != "")).to_numpy()
    if retry.any():
        fixed = s[retry].map(lambda v: normalise_label(v).replace(",", ""))
        out[retry] = pd.to_numeric(fixed.astype(object).where(fixed != "", np.nan), errors="coerce").astype(float).to_numpy()
    return out


def _arrow_floats(s: pd.Series) -> pd.Series | None:
    """Text cells cast to float64 by Arrow's C++ parser (empty → NaN); ``None`` when any cell is not a number."""
    import pyarrow as pa

    try:
        arr = pa.array(s.astype(object).where(s != "", None), type=pa.string())
        return pd.Series(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), index=s.index, dtype=float)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


_LICENCE_NUMBER = re.compile(r"[0-9A-Za-z]{6,}")


def _none_for_na(values: pd.Series) -> pd.Series:
    """Object column with ``None`` (not ``pd.NA``) for missing values."""
    out = values.astype(object)
    return out.where(out.notna(), None)


def _lookup_distinct(text: pd.Series, lookup: Mapping[str, str]) -> pd.Series:
    """Each cell's vocabulary value (``None`` when empty or unknown), normalising each distinct text once."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    values = np.array([lookup.get(normalise_label(v)) if v else None for v in uniques] + [None], dtype=object)
    return pd.Series(values[codes], index=text.index, dtype=object)  # code -1 (missing) takes the last: None


def _coerce_field(fld: Field, raw: pd.Series, col: RejectCollector, header: str) -> pd.Series:
    """Turn one text column into its canonical type, rejecting bad cells."""
    text = raw.astype("string").fillna("").str.strip()
    empty = (text == "").to_numpy()
    if fld.required:
        col.reject(empty, RejectReason.MISSING_VALUE, header, text.to_numpy(), f"required field '{fld.name}' is empty")
    if fld.kind == "str":
        return text.where(~empty).astype("str")  # Arrow-backed text, NaN when empty: ~10x less memory than objects
    if fld.kind == "category":
        lookup = value_lookup(fld.vocabulary or fld.name)
        mapped = _lookup_distinct(text, lookup)
        unknown = (~empty) & mapped.isna().to_numpy()
        known = sorted(set(lookup.values()))
        col.reject(unknown, RejectReason.UNKNOWN_CATEGORY, header, text.to_numpy(), f"not a known {fld.name}; known: {', '.join(known)}")
        return _none_for_na(mapped)
    if fld.kind == "bool":
        lookup = value_lookup("bool")
        mapped = _lookup_distinct(text, lookup)
        # a licence / filing number in the cell means the document exists
        numbered = text.str.contains(_LICENCE_NUMBER, regex=True).fillna(False).to_numpy() & mapped.isna().to_numpy()
        mapped = mapped.where(~numbered, "true")
        bad = (~empty) & mapped.isna().to_numpy()
        col.reject(bad, RejectReason.BAD_VALUE, header, text.to_numpy(), "expected yes/no (有/无, 是/否, 已备案/未备案) or a licence number")
        as_bool = np.full(len(mapped), None, dtype=object)
        arr = mapped.astype(object).where(mapped.notna(), "").to_numpy(dtype=object)
        as_bool[arr == "true"] = True
        as_bool[arr == "false"] = False
        return pd.Series(as_bool, dtype=object)
    if fld.kind in ("float", "int"):
        nums = parse_numbers(text)
        bad = (~empty) & nums.isna().to_numpy()
        col.reject(bad, RejectReason.BAD_VALUE, header, text.to_numpy(), "not a number")
        return nums.astype(float)
    if fld.kind == "date":
        dates = parse_dates(text)
        bad = (~empty) & dates.isna().to_numpy()
        col.reject(bad, RejectReason.BAD_VALUE, header, text.to_numpy(), "not a date (expected e.g. 2023-05-01 or 2023年5月1日)")
        lo, hi = date_window()
        implausible = (~empty) & dates.notna().to_numpy() & ~dates.between(lo, hi).to_numpy()
        col.reject(
            implausible,
            RejectReason.BAD_VALUE,
            header,
            text.to_numpy(),
            f"implausible date: outside {lo:%Y-%m-%d} – {hi:%Y-%m-%d} (dates.* in layers/limits.yaml)",
        )
        return dates.where(~implausible)
    raise ValueError(f"unknown field kind {fld.kind}")


def coerce_fields(
    frame: pd.DataFrame, spec: LayerSpec, mapping: dict[str, str], col: RejectCollector
) -> pd.DataFrame:
    """Canonical, typed attribute columns of a layer (absent optional fields are null)."""
    out = {}
    for fld in LAYER_FIELDS[spec.role]:
        header = mapping.get(fld.name)
        if header is None:
            out[fld.name] = pd.Series([None] * len(frame), dtype=object)
            continue
        out[fld.name] = _coerce_field(fld, frame[header].reset_index(drop=True), col, header).reset_index(drop=True)
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- points


def parse_coordinates(
    lon_text: pd.Series, lat_text: pd.Series, col: RejectCollector, headers: tuple[str, str], geographic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Parse coordinate columns, rejecting missing, non-numeric, swapped or impossible ones."""
    lon_t = lon_text.astype("string").fillna("").str.strip()
    lat_t = lat_text.astype("string").fillna("").str.strip()
    both = (lon_t + " / " + lat_t).to_numpy()
    missing = ((lon_t == "") | (lat_t == "")).to_numpy()
    col.reject(missing, RejectReason.MISSING_COORDINATES, np.where(lon_t == "", headers[0], headers[1]), both, "longitude or latitude is empty")
    lon = parse_numbers(lon_t).to_numpy(dtype=float)
    lat = parse_numbers(lat_t).to_numpy(dtype=float)
    nonnum_lon = ~missing & np.isnan(lon)
    nonnum_lat = ~missing & np.isnan(lat)
    col.reject(nonnum_lon, RejectReason.NON_NUMERIC_COORDINATES, headers[0], lon_t.to_numpy(), "longitude is not a number")
    col.reject(nonnum_lat, RejectReason.NON_NUMERIC_COORDINATES, headers[1], lat_t.to_numpy(), "latitude is not a number")
    if geographic:
        with np.errstate(invalid="ignore"):
            lat_bad = np.abs(lat) > 90
            lon_bad = np.abs(lon) > 180
            swapped = lat_bad & (np.abs(lon) <= 90) & (np.abs(lat) <= 180)
        col.reject(swapped, RejectReason.SWAPPED_LON_LAT, f"{headers[0]}/{headers[1]}", both, "longitude and latitude appear swapped (latitude > 90°)")
        col.reject(lat_bad | lon_bad, RejectReason.COORDINATES_OUT_OF_RANGE, f"{headers[0]}/{headers[1]}", both, "outside -180..180 / -90..90")
    return lon, lat


def points_from_table(spec: LayerSpec) -> tuple[gpd.GeoDataFrame, pd.DataFrame, int, dict[str, Any]]:
    """Read a point table (ledger, incident records, candidates) into WGS84 points.

    Returns
    -------
    layer
        GeoDataFrame in EPSG:4326 with canonical columns plus ``source_row`` and
        ``coords_source`` (the declared convention, recorded on every row).
    rejects
        Rejected rows (file, row, field, value, reason, detail).
    read
        Number of records read.
    info
        Provenance: encoding, header row, column mapping, convention.
    """
    from gis.coords import parse_convention, to_wgs84_lonlat

    table = read_table(spec)
    mapping = map_columns(list(table.frame.columns), spec, coordinates=True)
    col = RejectCollector(spec.role, spec.path, table.rows)
    reject_malformed(table, col)
    attrs = coerce_fields(table.frame, spec, mapping, col)
    conv = parse_convention(spec.coords)
    geographic = isinstance(conv, str) or (isinstance(conv, CRS) and conv.is_geographic)
    lon, lat = parse_coordinates(
        table.frame[mapping["lon"]].reset_index(drop=True),
        table.frame[mapping["lat"]].reset_index(drop=True),
        col,
        (mapping["lon"], mapping["lat"]),
        geographic,
    )
    _reject_duplicate_ids(attrs, spec, mapping, col)
    ok = col.ok
    x, y = to_wgs84_lonlat(lon[ok], lat[ok], spec.coords)
    layer = gpd.GeoDataFrame(
        attrs[ok].reset_index(drop=True),
        geometry=gpd.points_from_xy(x, y),
        crs="EPSG:4326",
    )
    layer.insert(0, "source_row", table.rows[ok])
    layer["coords_source"] = spec.coords
    info = {
        "file": str(spec.path),
        "format": spec.format,
        "encoding": table.encoding,
        "header_row": table.header_row,
        "columns": mapping,
        "coords": spec.coords,
        "converted_to": "wgs84" if str(spec.coords).lower() not in ("wgs84", "epsg:4326") else None,
    }
    return layer, col.frame(), len(table.rows), info


def reject_malformed(table: RawTable, col: RejectCollector) -> None:
    """Reject the records :func:`read_table` found malformed (file, row and reason kept)."""
    if not table.malformed:
        return
    bad = np.isin(table.rows, list(table.malformed))
    col.reject(bad, RejectReason.BAD_VALUE, "(row)", None, None)
    col.detail[bad] = [f"malformed row: {table.malformed[int(r)]}" for r in table.rows[bad]]
    col.value[bad] = [",".join(table.frame.iloc[i].tolist())[:200] for i in np.flatnonzero(bad)]


def _reject_duplicate_ids(attrs: pd.DataFrame, spec: LayerSpec, mapping: dict[str, str], col: RejectCollector) -> None:
    id_field = LAYER_ID_FIELD.get(spec.role)
    if not id_field or id_field not in mapping:
        return
    ids = attrs[id_field]
    ok = col.ok
    dup = np.zeros(len(ids), dtype=bool)
    sub = ids[ok]
    dup_ok = sub.duplicated(keep="first").to_numpy() & sub.notna().to_numpy()
    dup[np.flatnonzero(ok)[dup_ok]] = True
    col.reject(dup, RejectReason.DUPLICATE_ID, mapping[id_field], ids.to_numpy(), None)
    if dup.any():  # the detail names the first row with the same id (only ids that repeat are grouped)
        again = sub.duplicated(keep=False).to_numpy() & sub.notna().to_numpy()
        first_row = pd.Series(col.rows[ok][again], index=sub.index[again]).groupby(sub[again]).transform("min")
        details = np.full(len(ids), None, dtype=object)
        rows_of_dups = first_row.to_numpy()[dup_ok[again]]
        details[np.flatnonzero(ok)[dup_ok]] = [f"same {mapping[id_field]} as row {r}" for r in rows_of_dups]
        col.detail[dup] = details[dup]


# ----------------------------------------------------------------------------- vectors


def read_vector_file(spec: LayerSpec) -> gpd.GeoDataFrame:
    """Read a GeoPackage / Shapefile / GeoJSON with pyogrio, handling encodings.

    A Shapefile without a ``.cpg`` and without a declared encoding is read as
    UTF-8 and, if that fails or yields replacement characters, as GB18030 (the
    usual encoding of Shapefiles made on Chinese Windows).
    """
    import pyogrio
    from shapely.errors import GEOSException

    kwargs: dict[str, Any] = {}
    if spec.layer is not None:
        kwargs["layer"] = spec.layer
    if spec.format == "shp":
        for side in (".shx", ".dbf"):
            if not spec.path.with_suffix(side).exists() and not spec.path.with_suffix(side.upper()).exists():
                raise InputError(
                    spec.path.with_suffix(side), f"missing: a Shapefile needs its {side} beside {spec.path.name}"
                )
    try:
        try:
            return _read_vector_encoded(spec, kwargs, pyogrio.read_dataframe)
        except (GEOSException, ValueError) as exc:
            if isinstance(exc, UnicodeDecodeError):
                raise
            return _read_vector_encoded(spec, kwargs, _read_tolerant)
    except UnicodeDecodeError as exc:
        raise InputError(
            spec.path,
            f"attribute names or values are not in the expected encoding ({exc.reason}); declare `{spec.key}.encoding` (e.g. gb18030)",
        ) from None
    except pyogrio.errors.DataLayerError as exc:
        raise InputError(spec.path, f"layer {spec.layer!r} not found ({exc})", field=f"{spec.key}.layer") from None
    except pyogrio.errors.DataSourceError as exc:
        raise InputError(spec.path, f"not a readable {spec.format} file ({exc})") from None


def _read_vector_encoded(spec: LayerSpec, kwargs: dict[str, Any], reader: Any) -> gpd.GeoDataFrame:
    """Call ``reader`` with the declared encoding, or UTF-8 then GB18030 for a Shapefile without .cpg."""
    if spec.encoding:
        return reader(spec.path, encoding=spec.encoding, **kwargs)
    if spec.format == "shp" and not spec.path.with_suffix(".cpg").exists():
        try:
            gdf = reader(spec.path, encoding="utf-8", **kwargs)
            if not _has_replacement_chars(gdf):
                return gdf
        except UnicodeDecodeError:
            pass
        return reader(spec.path, encoding="gb18030", **kwargs)
    return reader(spec.path, **kwargs)


def _read_tolerant(path: Path, **kwargs: Any) -> gpd.GeoDataFrame:
    """Read a vector file feature by feature where one geometry cannot be built.

    Used when a file holds a geometry GEOS refuses to construct (a polygon ring
    that is not closed, too few points). Such features get a ``None`` geometry and
    are listed in ``gdf.attrs["unbuildable"]`` (0-based positions) so the loader
    rejects them with their reason instead of refusing the whole file.
    """
    import pyogrio.raw

    meta, _fids, wkb, fields = pyogrio.raw.read(path, **kwargs)
    geoms = np.array([_from_wkb_or_none(g) for g in wkb], dtype=object)
    unbuildable = [i for i, (g, raw) in enumerate(zip(geoms, wkb)) if g is None and raw is not None]
    data = {name: values for name, values in zip(meta["fields"], fields)}
    gdf = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms), crs=meta.get("crs"))
    gdf.attrs["unbuildable"] = unbuildable
    return gdf


def _from_wkb_or_none(raw: bytes | None) -> Any:
    from shapely.errors import GEOSException

    if raw is None:
        return None
    try:
        return shapely.from_wkb(raw)
    except (GEOSException, ValueError):
        return None


def _has_replacement_chars(gdf: pd.DataFrame) -> bool:
    for c in gdf.columns:
        if gdf[c].dtype == object and gdf[c].astype(str).str.contains("\ufffd", regex=False).any():
            return True
    return any("\ufffd" in str(c) for c in gdf.columns)


def vector_layer(spec: LayerSpec) -> tuple[gpd.GeoDataFrame, pd.DataFrame, int, dict[str, Any]]:
    """Read and validate a vector layer into EPSG:4326 with canonical columns.

    Geometries are repaired with ``shapely.make_valid``; features whose geometry is
    missing, empty or cannot be repaired into the layer's geometry type go to the
    rejects with ``empty_geometry`` / ``invalid_geometry``.

    Returns
    -------
    layer, rejects, read, info
        As :func:`points_from_table`.
    """
    from gis.coords import convert_geoseries_convention, parse_convention

    gdf = read_vector_file(spec)
    n = len(gdf)
    rows = np.arange(1, n + 1)
    col = RejectCollector(spec.role, spec.path, rows)
    headers = [str(c) for c in gdf.columns if c != gdf.geometry.name]
    point_role = spec.role in LAYER_ID_FIELD
    fill = {k: getattr(spec, k) for k in ("zone_type", "level", "name") if getattr(spec, k)}
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).astype(object).where(lambda d: d.notna(), "")
    frame = frame.map(lambda v: str(v) if not isinstance(v, str) else v)
    mapping = _map_vector_columns(headers, spec, fill)
    for canon, value in fill.items():
        if canon not in mapping:
            frame[f"__{canon}"] = value
            mapping[canon] = f"__{canon}"
    attrs = coerce_fields(frame.reset_index(drop=True), spec, mapping, col)

    geom = gdf.geometry.reset_index(drop=True)
    if gdf.crs is None and spec.coords is None:
        raise InputError(spec.path, f"the file has no CRS: declare it as `{spec.key}.coords` (e.g. EPSG:4544 or wgs84)")
    declared = parse_convention(spec.coords) if spec.coords else None
    unbuildable = np.zeros(n, dtype=bool)
    unbuildable[list(gdf.attrs.get("unbuildable", []))] = True
    col.reject(unbuildable, RejectReason.INVALID_GEOMETRY, "geometry", None, "geometry cannot be built (a polygon ring not closed, or too few points)")
    nonfinite = _nonfinite_geometries(geom.values)
    col.reject(nonfinite, RejectReason.INVALID_GEOMETRY, "geometry", None, "coordinates are not numbers (NaN or infinite)")
    geom = geom.where(~(unbuildable | nonfinite), None)
    empty = (geom.isna() | geom.is_empty).to_numpy()
    col.reject(empty, RejectReason.EMPTY_GEOMETRY, "geometry", None, "feature has no geometry")
    valid = np.asarray(shapely.is_valid(geom.values), dtype=bool) | empty
    repaired = geom.copy()
    if (~valid).any():
        fixed = shapely.make_valid(geom.values[~valid])
        repaired.iloc[np.flatnonzero(~valid)] = fixed
    wanted = "Point" if point_role else ("Polygon" if spec.role in ("zones", "landuse", "townships", "population") else None)
    if wanted:
        repaired = _keep_dimension(repaired, wanted)
        broken = ~empty & (repaired.isna() | repaired.is_empty).to_numpy()
        col.reject(broken, RejectReason.INVALID_GEOMETRY, "geometry", None, f"geometry cannot be repaired into a {wanted.lower()}")
    _reject_duplicate_ids(attrs, spec, mapping, col)
    ok = col.ok
    out = gpd.GeoDataFrame(attrs[ok].reset_index(drop=True), geometry=repaired[ok].reset_index(drop=True).values)
    if isinstance(declared, str):  # wgs84 / cgcs2000 / gcj02 / bd09 convention on lon/lat values
        out = out.set_crs("EPSG:4326", allow_override=True)
        out["geometry"] = convert_geoseries_convention(out.geometry, declared)
    else:
        out = out.set_crs(declared if declared is not None else gdf.crs, allow_override=True)
        out = out.to_crs("EPSG:4326")
    out.insert(0, "source_row", rows[ok])
    out["coords_source"] = spec.coords or (gdf.crs.to_string() if gdf.crs else None)
    info = {
        "file": str(spec.path),
        "format": spec.format,
        "layer": spec.layer,
        "columns": {k: v for k, v in mapping.items() if not v.startswith("__")},
        "coords": spec.coords,
        "file_crs": gdf.crs.to_string() if gdf.crs is not None else None,
        "repaired_geometries": int((~valid & ok).sum()),
    }
    return out, col.frame(), n, info


def _nonfinite_geometries(geoms: np.ndarray) -> np.ndarray:
    """Mask of geometries with any NaN or infinite coordinate."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad = np.zeros(len(geoms), dtype=bool)
    if len(coords):
        bad[index[~np.isfinite(coords).all(axis=1)]] = True
    return bad


def _map_vector_columns(headers: list[str], spec: LayerSpec, fill: dict[str, str]) -> dict[str, str]:
    try:
        return map_columns(headers, spec, coordinates=False)
    except InputError as exc:
        if exc.field in fill:  # the spec fills the missing field (e.g. zone_type)
            mapping = {}
            by_norm = {normalise_label(h): h for h in headers}
            for canon, names in column_aliases(spec.role).items():
                for a in names:
                    if normalise_label(a) in by_norm and canon not in mapping:
                        mapping[canon] = by_norm[normalise_label(a)]
            for canon, header in spec.columns.items():
                mapping[canon] = header
            missing = [f.name for f in LAYER_FIELDS[spec.role] if f.required and f.name not in mapping and f.name not in fill]
            if missing:
                raise InputError(spec.path, f"no column for required field '{missing[0]}'", field=missing[0]) from None
            return mapping
        raise


def _keep_dimension(geoms: gpd.GeoSeries, wanted: str) -> gpd.GeoSeries:
    """Keep only the parts of the wanted dimension (make_valid may return collections)."""
    types = geoms.geom_type
    if wanted == "Point":
        ok = types.isin(["Point", "MultiPoint"])
        return geoms.where(ok, None)
    ok = types.isin(["Polygon", "MultiPolygon"])
    out = geoms.where(ok, None)
    coll = types == "GeometryCollection"
    if coll.any():
        parts = geoms[coll].apply(
            lambda g: shapely.union_all([p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
        )
        out[coll] = parts.where(~parts.is_empty, None)
    return out


# ----------------------------------------------------------------------------- rasters


@dataclass
class RasterLayer:
    """A single-band raster layer (land-use classes or population counts).

    Attributes
    ----------
    path
        The GeoTIFF.
    role
        ``landuse`` or ``population``.
    crs, transform, nodata, shape
        From the file.
    classes
        For land use: ``{raster value: GB/T 21010 code}``; ``None`` for population.
    """

    path: Path
    role: str
    crs: CRS
    transform: Any
    nodata: float | None
    shape: tuple[int, int]
    classes: dict[int, str] | None = None
    _array: np.ndarray | None = field(default=None, repr=False)

    def read(self) -> np.ndarray:
        """The band as an array (cached)."""
        if self._array is None:
            import rasterio

            with rasterio.open(self.path) as src:
                self._array = src.read(1)
        return self._array

    def cell_index(self, points: gpd.GeoSeries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and inside-mask of each point in the raster grid (:func:`gis.raster.cell_index`)."""
        from gis.raster import cell_index

        pts = points.to_crs(self.crs)
        return cell_index(self.transform, self.shape, pts.x.to_numpy(), pts.y.to_numpy())

    def sample(self, points: gpd.GeoSeries) -> np.ndarray:
        """Raw cell values under points; NaN where outside the raster or on nodata (:func:`gis.raster.sample_band`)."""
        from gis.raster import sample_band

        pts = points.to_crs(self.crs)
        return sample_band(self.read(), self.transform, pts.x.to_numpy(), pts.y.to_numpy(), self.nodata)

    def sample_codes(self, points: gpd.GeoSeries) -> np.ndarray:
        """Land-use codes (strings) under points; ``None`` on nodata, gaps or outside."""
        vals = self.sample(points)
        out = np.full(len(vals), None, dtype=object)
        if self.classes is None:
            return out
        good = np.isfinite(vals)
        out[good] = [self.classes.get(int(v)) for v in vals[good]]
        return out


def gbt21010_value_to_code(value: int) -> str:
    """Raster value → GB/T 21010 code: ``1`` → ``"01"``, ``701`` → ``"0701"``."""
    value = int(value)
    return f"{value:02d}" if value < 100 else f"{value:04d}"


def raster_layer(spec: LayerSpec) -> RasterLayer:
    """Open a GeoTIFF layer, checking its CRS and (for land use) its class table."""
    import rasterio

    try:
        src = rasterio.open(spec.path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(spec.path, f"not a readable GeoTIFF ({exc})") from None
    with src:
        if src.transform.is_identity and not src.gcps[0]:
            raise InputError(
                spec.path,
                "the raster has no georeferencing (no geotransform): export it as a GeoTIFF with its coordinates",
            )
        check_size(src.width * src.height, "analysis", "max_raster_cells", f"{spec.path.name}: raster cells")
        crs = src.crs
        if crs is None and spec.coords is None:
            raise InputError(spec.path, f"the raster has no CRS: declare it as `{spec.key}.coords`")
        crs = CRS.from_user_input(spec.coords if spec.coords and not crs else crs)
        classes = None
        if spec.role == "landuse":
            if spec.classes in (None, "gbt21010"):
                vals = np.unique(src.read(1))
                classes = {int(v): gbt21010_value_to_code(v) for v in vals if src.nodata is None or v != src.nodata}
                classes = {k: v for k, v in classes.items() if k != 0}
            elif isinstance(spec.classes, dict):
                classes = {int(k): str(v) for k, v in spec.classes.items()}
            else:
                raise InputError(spec.path, "classes must be 'gbt21010' or a mapping {raster value: code}", field=f"{spec.key}.classes")
        return RasterLayer(
            path=spec.path,
            role=spec.role,
            crs=crs,
            transform=src.transform,
            nodata=src.nodata,
            shape=(src.height, src.width),
            classes=classes,
        )
