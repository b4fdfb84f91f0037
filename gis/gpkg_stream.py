"""A large GeoPackage layer written as a stream of Arrow batches (bounded memory, same file).

``GeoDataFrame.to_file(engine="pyogrio", use_arrow=True)`` turns the whole layer into
one Arrow table before GDAL sees a row: every geometry as WKB, every text column copied
into Arrow buffers. At a million rows that is hundreds of MiB held at once (596,440
service areas of 33 vertices: 315 MB of WKB, copied again into the table), on top of the
layer itself. :func:`write_layer` hands GDAL the same table a batch of
:data:`BATCH_ROWS` rows at a time (``pyogrio.raw.write_arrow`` over a
``pyarrow.RecordBatchReader``): one layer created once, GDAL's R-tree built once at the
end as for a single write (appending batch by batch with ``mode="a"`` would update it row
by row, 3× slower on a million points).

Each batch is converted exactly as ``pyogrio.write_dataframe`` converts a whole frame,
with what depends on the whole layer decided once from the whole layer (the geometry
type, promotion to multi-part types, the CRS, whether the index is written). A layer
with a column of Python objects other than text (whose Arrow type could differ from batch to
batch) is written whole, as before; a text column missing from a whole batch is typed as
text there, as ``pyogrio`` types a text column missing from the whole layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

__all__ = ["BATCH_ROWS", "write_layer"]

#: Rows per Arrow batch; a layer of at most this many rows is written whole (``to_file``).
BATCH_ROWS = 100_000

_DRIVER = "GPKG"


def write_layer(gdf: gpd.GeoDataFrame, path: str | Path, layer: str) -> None:
    """Write ``gdf`` as ``layer`` of the GeoPackage ``path`` (created or added to).

    The file is the one ``gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio",
    use_arrow=True)`` writes; above :data:`BATCH_ROWS` rows it is written in batches.

    Parameters
    ----------
    gdf
        The layer (one geometry column; columns GDAL can store, see :func:`gis.export.write_gpkg`).
    path
        The GeoPackage.
    layer
        Layer name.
    """
    plan = _plan(gdf) if len(gdf) > BATCH_ROWS else None
    if plan is None:  # small, or a layer whose batches would not share the whole layer's types
        gdf.to_file(path, layer=layer, driver=_DRIVER, engine="pyogrio", use_arrow=True)
        return
    import pyarrow as pa
    from pyogrio.raw import write_arrow

    frame, geometry_type, promote, crs = plan
    first = _table(frame.iloc[:BATCH_ROWS], promote)
    table, datetime_cols = first
    schema = table.schema

    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches()
        for start in range(BATCH_ROWS, len(frame), BATCH_ROWS):
            part, cols = _table(frame.iloc[start:start + BATCH_ROWS], promote)
            if cols != datetime_cols or not part.schema.equals(schema):
                raise ValueError(f"layer {layer}: rows {start}+ have other Arrow types than the first batch")
            for batch in part.to_batches():  # the first batch's schema (pandas' metadata differs by batch)
                yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    write_arrow(reader, path, layer=layer, driver=_DRIVER, geometry_name=frame.geometry.name,
                geometry_type=geometry_type, crs=crs, encoding=None, append=False, dataset_metadata=None,
                layer_metadata=None, metadata=None, dataset_options=None, layer_options=None)


def _plan(gdf: gpd.GeoDataFrame) -> tuple[pd.DataFrame, str, bool, str | None] | None:
    """What ``to_file`` decides from the whole layer: (frame with the index as columns when it
    writes it, geometry type, promote to multi, CRS); None when the layer is written whole (no
    single geometry column, Z coordinates, duplicated column names, a column of Python objects
    other than text: its Arrow type could differ by batch)."""
    geom_cols = gdf.columns[gdf.dtypes == "geometry"]
    if len(geom_cols) != 1 or not gdf.columns.is_unique:
        return None
    frame = gdf
    if list(gdf.index.names) != [None] or not pd.api.types.is_integer_dtype(gdf.index.dtype):
        frame = gdf.reset_index(drop=False)  # geopandas' rule for writing the index
    for col in frame.columns[(frame.dtypes == "object").to_numpy()]:  # text (a batch without any: null → text)
        if pd.api.types.infer_dtype(frame[col], skipna=True) not in ("string", "empty"):
            return None
    geometry = frame[geom_cols[0]]
    present = geometry.notna().to_numpy() & ~geometry.is_empty.to_numpy()
    if geometry[present].has_z.any():
        return None
    kinds = pd.Series(geometry.geom_type.unique()).dropna().tolist()
    geometry_type, promote = "Unknown", False
    if len(kinds) == 1:
        geometry_type = kinds[0]
    elif len(kinds) == 2:
        for single in ("Polygon", "LineString", "Point"):
            if set(kinds) == {single, f"Multi{single}"}:
                geometry_type, promote = f"Multi{single}", True
    crs = None
    if geometry.crs:
        epsg = geometry.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else geometry.crs.to_wkt("WKT1_GDAL")
    return frame, geometry_type, promote, crs


def _table(part: pd.DataFrame, promote: bool) -> tuple[Any, list[str]]:
    """One batch as ``pyogrio.write_dataframe`` (``use_arrow=True``) converts a frame: (Arrow table,
    the columns written as text marked DateTime)."""
    import pyarrow as pa
    import shapely
    from geopandas.array import to_wkb

    df = pd.DataFrame(part, copy=False)
    name = part.geometry.name
    geoms = part.geometry.values
    if promote:
        geoms = _promoted(np.asarray(geoms, dtype=object), shapely)
        geoms = gpd.array.from_shapely(geoms, crs=part.crs)
    df = df.copy(deep=False)
    df[name] = to_wkb(geoms)
    datetime_cols = []
    for col, dtype in df.dtypes.items():
        if col == name:
            continue
        if dtype == "object":
            kind = pd.api.types.infer_dtype(df[col])
            if kind == "string":
                continue
            if kind == "datetime":
                df[col] = df[col].astype("string")
                datetime_cols.append(col)
            else:
                try:
                    pa.Schema.from_pandas(df[[col]])
                except pa.ArrowInvalid:
                    df[col] = df[col].astype("string")
        elif isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) != "UTC":
            df[col] = df[col].astype("string")
            datetime_cols.append(col)
    table = pa.Table.from_pandas(df, preserve_index=False)
    if datetime_cols:
        from pyogrio.geopandas import _add_column_metadata

        table = _add_column_metadata(table, column_metadata={c: {"GDAL:OGR:type": "DateTime"} for c in datetime_cols})
    for i, field in enumerate(table.schema):  # GDAL has no null type (a column missing in the whole batch)
        if pa.types.is_null(field.type):
            table = table.set_column(i, field.with_type(pa.string()), table[i].cast(pa.string()))
        elif pa.types.is_dictionary(field.type) and pa.types.is_null(field.type.value_type):
            kind = pa.dictionary(field.type.index_type, pa.string())
            table = table.set_column(i, field.with_type(kind), table[i].cast(kind))
    geom = table.schema.field(name)
    if not (pa.types.is_binary(geom.type) or pa.types.is_large_binary(geom.type)):
        table = table.set_column(table.schema.get_field_index(name), geom.with_type(pa.binary()),
                                 table[name].cast(pa.binary()))
    return table, datetime_cols


def _promoted(geoms: np.ndarray, shapely: Any) -> np.ndarray:
    """Single-part geometries as one-part multi-part ones (``pyogrio``'s ``promote_to_multi``)."""
    kinds = shapely.get_type_id(geoms)
    out = geoms.copy()
    for single, make in ((0, shapely.multipoints), (1, shapely.multilinestrings), (3, shapely.multipolygons)):
        mask = kinds == single
        if mask.any():
            out[mask] = make(np.atleast_2d(geoms[mask]), axis=0)
    return out
