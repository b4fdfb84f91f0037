"""Atomic writers: nothing half-written, government-form Excel styling."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from shapely.geometry import Point

from gis.export import atomic_path, write_excel, write_gpkg, write_json


def test_failed_write_leaves_target_untouched(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("crash mid-write")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_json_handles_numpy_and_chinese(tmp_path):
    write_json({"n": np.int64(3), "x": np.float64("nan"), "镇街": "井口街道", "a": np.arange(2)}, tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text(encoding="utf-8")
    assert "井口街道" in text
    assert json.loads(text) == {"n": 3, "x": None, "镇街": "井口街道", "a": [0, 1]}


def test_gpkg_layers_including_empty_and_lists(tmp_path):
    a = gpd.GeoDataFrame({"kinds": [["x", "y"]], "n": [1]}, geometry=[Point(0, 0)], crs="EPSG:4544")
    empty = a.iloc[0:0]
    write_gpkg({"a": a, "empty": empty}, tmp_path / "o.gpkg")
    import pyogrio

    assert {n for n, _ in pyogrio.list_layers(tmp_path / "o.gpkg")} == {"a", "empty"}
    back = gpd.read_file(tmp_path / "o.gpkg", layer="a")
    assert json.loads(back["kinds"].iloc[0]) == ["x", "y"]


def test_excel_header_frozen_and_widths(tmp_path):
    df = pd.DataFrame({"序号": [1, 2], "网点名称": ["沙坪坝区某某再生资源回收站", "x"]})
    write_excel({"问题台账": df}, tmp_path / "l.xlsx", title_rows={"问题台账": ["某区问题台账"]})
    ws = load_workbook(tmp_path / "l.xlsx")["问题台账"]
    assert ws["A1"].value == "某区问题台账"
    header_row = next(i for i in range(1, 6) if ws.cell(i, 1).value == "序号")  # below the 填报 line
    assert [c.value for c in ws[header_row]][:2] == ["序号", "网点名称"]
    assert ws.freeze_panes == f"A{header_row + 1}"
    assert ws.column_dimensions["B"].width >= 2 * len("沙坪坝区某某再生资源回收站")
    assert ws.cell(header_row, 1).font.bold


def test_formula_text_is_stored_as_text_in_excel(tmp_path):
    df = pd.DataFrame({"网点名称": ['=HYPERLINK("http://evil","点")', "@SUM(A1)", "普通"], "面积": [-3.5, 1, 2]})
    write_excel({"台账": df}, tmp_path / "l.xlsx", title_rows={"台账": ["=1+1区问题台账"]})
    ws = load_workbook(tmp_path / "l.xlsx")["台账"]
    assert ws["A1"].value == "=1+1区问题台账" and ws["A1"].data_type == "s"
    h = next(i for i in range(1, 6) if ws.cell(i, 1).value == "网点名称")  # header below the 填报 line
    assert [ws.cell(row=r, column=1).value for r in (h + 1, h + 2, h + 3)] == df["网点名称"].tolist()
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    assert ws.cell(h + 1, 1).quotePrefix and not ws.cell(h + 3, 1).quotePrefix
    assert ws.cell(h + 1, 2).value == -3.5  # numbers stay numbers


def test_csv_cells_are_neutralised_owasp_style(tmp_path):
    from gis.export import write_csv

    df = pd.DataFrame({"=名称": ["=1+1", "+cmd", "-2+3", "@x", "\tx", "-3.5", "普通"], "n": [1, -2, 3, 4, 5, 6, 7]})
    write_csv(df, tmp_path / "r.csv")
    back = pd.read_csv(tmp_path / "r.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert back.columns.tolist() == ["'=名称", "n"]
    assert back["'=名称"].tolist() == ["'=1+1", "'+cmd", "'-2+3", "'@x", "'\tx", "-3.5", "普通"]
    assert back["n"].tolist() == ["1", "-2", "3", "4", "5", "6", "7"]


def test_gpkg_writes_leave_gdals_sqlite_option_as_they_found_it(tmp_path, monkeypatch):
    """A GeoPackage is written with SQLite's per-transaction flush off and flushed once before the
    rename; GDAL's process-wide option is put back after every write, failed ones and ones on
    several threads at once included (the app writes its files on threads)."""
    import os
    import threading

    import pyogrio

    from gis import export

    key = "OGR_SQLITE_SYNCHRONOUS"
    layer = gpd.GeoDataFrame({"n": np.arange(50)}, geometry=[Point(i, i) for i in range(50)], crs="EPSG:4544")
    seen, flushed = [], []
    real_to_file, real_fsync = gpd.GeoDataFrame.to_file, os.fsync

    def to_file(self, *args, **kwargs):
        seen.append(pyogrio.get_gdal_config_option(key))
        return real_to_file(self, *args, **kwargs)

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", to_file)
    monkeypatch.setattr(export.os, "fsync", lambda fd: flushed.append(fd) or real_fsync(fd))
    before = pyogrio.get_gdal_config_option(key)
    try:
        pyogrio.set_gdal_config_options({key: "FULL"})
        write_gpkg({"a": layer, "b": layer}, tmp_path / "one.gpkg")
        assert seen == [False, False] and len(flushed) == 1  # pyogrio reads "OFF" back as False
        assert pyogrio.get_gdal_config_option(key) == "FULL"
        with pytest.raises(AttributeError):  # the second layer is no frame: fails after the first is written
            write_gpkg({"a": layer, "b": "not a frame"}, tmp_path / "bad.gpkg")
        assert pyogrio.get_gdal_config_option(key) == "FULL" and not (tmp_path / "bad.gpkg").exists()
        threads = [threading.Thread(target=write_gpkg, args=({"a": layer}, tmp_path / f"t{i}.gpkg")) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pyogrio.get_gdal_config_option(key) == "FULL"
        assert all(len(pyogrio.read_dataframe(tmp_path / f"t{i}.gpkg")) == 50 for i in range(6))
    finally:
        pyogrio.set_gdal_config_options({key: before})


def test_the_run_manifest_hashed_on_threads_equals_it_hashed_in_turn(tmp_path: Path, monkeypatch) -> None:
    """From ``outdir.HASH_THREADS_FROM_BYTES`` the files are hashed on several threads: the same manifest."""
    import hashlib

    from gis import outdir

    (tmp_path / "sub").mkdir()
    for i, name in enumerate(["b.gpkg", "a.xlsx", "sub/c.png", "empty.csv"]):
        (tmp_path / name).write_bytes(bytes([i]) * (3 * 2**20 + i if name != "empty.csv" else 0))
    monkeypatch.setattr(outdir, "HASH_THREADS_FROM_BYTES", 2**60)
    in_turn = outdir.manifest(tmp_path, "r1")
    monkeypatch.setattr(outdir, "HASH_THREADS_FROM_BYTES", 0)
    threaded = outdir.manifest(tmp_path, "r1")
    assert threaded == in_turn and list(threaded["files"]) == ["a.xlsx", "b.gpkg", "empty.csv", "sub/c.png"]
    assert threaded["files"]["b.gpkg"]["sha256"] == hashlib.sha256((tmp_path / "b.gpkg").read_bytes()).hexdigest()
