"""GeoPackage layers written in Arrow batches (:func:`gis.gpkg_stream.write_layer`).

What a user would check: a layer written in batches is the same file content as the layer
written whole by ``GeoDataFrame.to_file`` — the same fields and field types, geometry type
(promoted to multi-part where the layer mixes single and multi parts), CRS, values and
geometries, the index written when geopandas writes it — and a layer whose batches could
differ in type is written whole.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from gis import gpkg_stream

ROWS = 1_000
BATCH = 128


def _frame(geoms: np.ndarray) -> gpd.GeoDataFrame:
    n = len(geoms)
    rng = np.random.default_rng(3)
    frame = gpd.GeoDataFrame({
        "name": [f"网点{i}" if i % 3 else None for i in range(n)],
        "share": np.where(np.arange(n) % 4, rng.uniform(size=n), np.nan),
        "count": np.arange(n),
        "flag": np.arange(n) % 2 == 0,
        "site_id": pd.array([f"S{i}" for i in range(n)], dtype="string[pyarrow]"),
        "when": pd.date_range("2024-01-01", periods=n, freq="h"),
        "known": pd.array(np.where(np.arange(n) % 3, np.arange(n), 0), dtype="Int64"),
    }, geometry=geoms, crs=32650)
    frame.loc[frame.index % 3 == 0, "known"] = pd.NA
    return frame


def _points(n: int = ROWS) -> np.ndarray:
    rng = np.random.default_rng(0)
    return shapely.points(rng.uniform(0, 1e4, n), rng.uniform(0, 1e4, n))


def _mixed_polygons() -> np.ndarray:
    polys = shapely.buffer(_points(), 5, quad_segs=2)
    geoms = np.array([shapely.MultiPolygon([g]) if i % 5 == 0 else g for i, g in enumerate(polys)], dtype=object)
    geoms[7] = None
    return geoms


def _written(frame: gpd.GeoDataFrame, path: Path, batched: bool) -> tuple[dict, gpd.GeoDataFrame]:
    if batched:
        gpkg_stream.write_layer(frame, path, "layer")
    else:
        frame.to_file(path, layer="layer", driver="GPKG", engine="pyogrio", use_arrow=True)
    info = pyogrio.read_info(path, layer="layer")
    return info, pyogrio.read_dataframe(path, layer="layer")


def _assert_same(frame: gpd.GeoDataFrame, tmp_path: Path) -> None:
    ref_info, ref = _written(frame, tmp_path / "whole.gpkg", batched=False)
    got_info, got = _written(frame, tmp_path / "batched.gpkg", batched=True)
    for key in ("crs", "fields", "dtypes", "geometry_type", "features", "fid_column", "geometry_name"):
        assert str(got_info[key]) == str(ref_info[key]), key
    assert got.drop(columns="geometry").equals(ref.drop(columns="geometry"))
    same = got.geometry.geom_equals_exact(ref.geometry, tolerance=0) | (got.geometry.isna() & ref.geometry.isna())
    assert same.all()


@pytest.fixture(autouse=True)
def _small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpkg_stream, "BATCH_ROWS", BATCH)


@pytest.mark.parametrize("kind", ["points", "mixed polygons", "named index"])
def test_a_layer_written_in_batches_equals_the_layer_written_whole(kind: str, tmp_path: Path) -> None:
    frame = _frame(_points() if kind == "points" else _mixed_polygons())
    if kind == "named index":
        frame = frame.set_index("site_id")
    assert gpkg_stream._plan(frame) is not None  # batched, not the whole-layer fallback
    _assert_same(frame, tmp_path)


def test_mixed_polygons_are_written_as_multipolygons(tmp_path: Path) -> None:
    info, got = _written(_frame(_mixed_polygons()), tmp_path / "x.gpkg", batched=True)
    assert info["geometry_type"] == "MultiPolygon"
    assert set(got.geometry.dropna().geom_type) == {"MultiPolygon"}


def test_text_missing_from_whole_batches_is_still_text(tmp_path: Path) -> None:
    frame = _frame(_points())
    frame.loc[frame.index < BATCH, "name"] = None  # the first batch alone would type it as null
    frame.loc[(frame.index >= 3 * BATCH) & (frame.index < 4 * BATCH), "name"] = None
    frame["note"] = pd.Series([None] * ROWS, dtype=object)
    assert gpkg_stream._plan(frame) is not None
    _assert_same(frame, tmp_path)


def test_a_column_of_other_python_values_is_written_whole(tmp_path: Path) -> None:
    frame = _frame(_points())
    frame["checked"] = pd.Series([True if i % 2 else None for i in range(ROWS)], dtype=object)
    assert gpkg_stream._plan(frame) is None
    _assert_same(frame, tmp_path)


def test_a_small_layer_is_written_whole(tmp_path: Path) -> None:
    frame = _frame(_points(BATCH))
    _assert_same(frame, tmp_path)


@pytest.mark.parametrize("role", ["sites", "townships", "incidents"])
def test_the_sample_layers_written_in_batches_equal_them_written_whole(sample_district, role: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from gis.export import _gpkg_safe

    frame = _gpkg_safe(getattr(sample_district, role))  # as write_gpkg hands it over
    monkeypatch.setattr(gpkg_stream, "BATCH_ROWS", max(len(frame) // 3, 1))
    assert gpkg_stream._plan(frame) is not None
    _assert_same(frame, tmp_path)
