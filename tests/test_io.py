"""Readers and row validation: every reject reason, encodings, aliases, formats."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import LineString, Point, Polygon, box

from gis._errors import InputError
from gis.catalog import LayerSpec
from gis.io import map_columns, parse_dates, points_from_table, raster_layer, read_table, vector_layer
from gis.testing import TINY_BAD_ROWS


def spec(path: Path, role: str = "sites", **kw) -> LayerSpec:
    fmt = kw.pop("format", None) or {".csv": "csv", ".xlsx": "xlsx", ".gpkg": "gpkg", ".shp": "shp", ".geojson": "geojson", ".tif": "tif"}[path.suffix]
    return LayerSpec(role=role, path=path, format=fmt, key=f"layers.{role}", **kw)


LEDGER = pd.DataFrame(
    {
        "网点编号": ["A1", "A2", "A3"],
        "网点名称": ["红星回收站", "绿源中转站", "废品分类点"],
        "网点层级": ["回收网点", "中转站", "分类投放点"],
        "经营状态": ["在营", "规划", "关停"],
        "营业执照": ["有", "无", "91500106MA5U7XXX1K"],
        "公安备案": ["已备案", "未备案", ""],
        "占地面积(㎡)": ["1,200", "15", ""],
        "经度": ["106.41", "106.42", "106.43"],
        "纬度": ["29.61", "29.62", "29.63"],
    }
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_encodings_read_identically(tmp_path, encoding):
    path = tmp_path / "ledger.csv"
    LEDGER.to_csv(path, index=False, encoding=encoding)
    layer, rejects, n, info = points_from_table(spec(path, coords="wgs84"))
    assert n == 3 and len(layer) == 3 and rejects.empty
    assert layer["name"].tolist() == LEDGER["网点名称"].tolist()
    assert layer["tier"].tolist() == ["collection_point", "transfer_station", "drop_off_point"]
    assert layer["status"].tolist() == ["active", "planned", "closed"]
    assert layer["business_licence"].tolist() == [True, False, True]  # a licence number counts as a licence
    assert layer["police_filing"].tolist() == [True, False, None]
    assert layer["floor_area_m2"].tolist()[:2] == [1200.0, 15.0]
    assert np.isnan(layer["floor_area_m2"].iloc[2])
    assert layer["source_row"].tolist() == [2, 3, 4]


def test_undecodable_csv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes("网点编号,网点名称\n".encode("utf-8") + b"\xff\xfe\xfa\n")
    with pytest.raises(InputError) as err:
        read_table(spec(path, encoding="utf-8", coords="wgs84"))
    assert err.value.path == str(path) and err.value.row == 2


def test_excel_with_title_rows_above_header(tmp_path):
    path = tmp_path / "ledger.xlsx"
    with pd.ExcelWriter(path) as xw:
        pd.DataFrame([["沙坪坝区再生资源回收网点台账"], ["填报单位：区商务委"]]).to_excel(xw, index=False, header=False)
        LEDGER.to_excel(xw, index=False, startrow=3)
    layer, rejects, n, info = points_from_table(spec(path, coords="wgs84"))
    assert info["header_row"] == 4
    assert layer["source_row"].tolist() == [5, 6, 7]
    assert len(layer) == 3


def test_explicit_column_mapping_and_missing_required(tmp_path):
    path = tmp_path / "odd.csv"
    df = LEDGER.rename(columns={"网点层级": "回收站级别分类"})
    df.to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        points_from_table(spec(path, coords="wgs84"))
    assert err.value.field == "tier"
    assert "columns" in str(err.value)
    layer, *_ = points_from_table(spec(path, coords="wgs84", columns={"tier": "回收站级别分类"}))
    assert layer["tier"].iloc[1] == "transfer_station"


def test_map_columns_prefers_declared_alias_order(tmp_path):
    s = spec(tmp_path / "x.csv", coords="wgs84")
    m = map_columns(["编号", "网点名称", "类别", "lng", "lat", "名称"], s, coordinates=True)
    assert m["site_id"] == "编号" and m["name"] == "网点名称" and m["tier"] == "类别"
    assert m["lon"] == "lng" and m["lat"] == "lat"


def test_every_reject_reason_on_tiny_ledger(tiny_project):
    from gis.district import load_district

    d = load_district(tiny_project)
    got = dict(zip(d.rejects.loc[d.rejects.layer == "sites", "row"], d.rejects.loc[d.rejects.layer == "sites", "reason"]))
    assert got == TINY_BAD_ROWS
    r = d.rejects.set_index("row")
    assert r.loc[8, "field"] == "经度"
    assert r.loc[13, "field"] == "网点名称"
    assert "row 2" in r.loc[11, "detail"]


def test_bad_values_are_rejected_with_field(tmp_path):
    path = tmp_path / "inc.csv"
    pd.DataFrame(
        {
            "记录编号": ["I1", "I2", "I3", "I4"],
            "发现日期": ["2023-01-01", "去年", "2023年5月6日", "45000"],
            "问题类型": ["散乱污", "散乱污", "不明类型", "三合一"],
            "经度": [106.4] * 4,
            "纬度": [29.6] * 4,
        }
    ).to_csv(path, index=False)
    layer, rejects, n, _ = points_from_table(spec(path, role="incidents", coords="wgs84"))
    assert n == 4 and len(layer) + len(rejects) == 4
    assert rejects.set_index("row").loc[3, "reason"] == "bad_value"
    assert rejects.set_index("row").loc[3, "field"] == "发现日期"
    assert rejects.set_index("row").loc[4, "reason"] == "unknown_category"
    assert layer["date"].dt.strftime("%Y-%m-%d").tolist() == ["2023-01-01", "2023-03-15"]


def test_parse_dates_formats():
    got = parse_dates(pd.Series(["2024-02-29", "2024/2/3", "2024.02.03 10:00", "2024年2月3日", "", "2024-13-01"]))
    assert got.dt.strftime("%Y-%m-%d").tolist()[:4] == ["2024-02-29", "2024-02-03", "2024-02-03", "2024-02-03"]
    assert got.iloc[4:].isna().all()


def test_projected_table_coordinates(tmp_path):
    path = tmp_path / "xy.csv"
    pd.DataFrame({"编号": ["P1"], "名称": ["a"], "层级": ["回收网点"], "x": [500000.0], "y": [3277000.0]}).to_csv(path, index=False)
    layer, rejects, *_ = points_from_table(spec(path, coords="EPSG:4544"))
    assert rejects.empty
    assert layer.geometry.x.iloc[0] == pytest.approx(105.0, abs=1e-6)


def _polygons(crs="EPSG:4544"):
    ok = box(500000, 3270000, 501000, 3271000)
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])
    bowtie = Polygon([(500000 + x * 100, 3270000 + y * 100) for x, y in bowtie.exterior.coords])
    line = LineString([(500000, 3270000), (501000, 3270000)])
    return gpd.GeoDataFrame(
        {"地类编码": ["0701", "0101", "0601", "0301"], "地类名称": ["城镇住宅用地", "水田", "工业用地", "乔木林地"]},
        geometry=[ok, bowtie, line, None],
        crs=crs,
    )


def test_vector_geometry_repair_and_rejects(tmp_path):
    path = tmp_path / "lu.gpkg"
    _polygons().to_file(path, layer="landuse")
    layer, rejects, n, info = vector_layer(spec(path, role="landuse", layer="landuse"))
    assert n == 4 and len(layer) == 2
    assert layer.crs.to_epsg() == 4326
    assert layer["landuse_code"].tolist() == ["0701", "0101"]
    assert layer.geometry.is_valid.all()
    assert info["repaired_geometries"] == 1
    assert dict(zip(rejects["row"], rejects["reason"])) == {3: "invalid_geometry", 4: "empty_geometry"}


def test_shapefile_gbk_without_cpg(tmp_path):
    path = tmp_path / "zones.shp"
    gdf = gpd.GeoDataFrame({"名称": ["缙云山"], "管控级别": ["禁建区"]}, geometry=[box(106.3, 29.7, 106.32, 29.75)], crs="EPSG:4326")
    gdf.to_file(path, encoding="gbk")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    layer, rejects, n, _ = vector_layer(spec(path, role="zones", zone_type="four_mountains"))
    assert layer["name"].iloc[0] == "缙云山"
    assert layer["level"].iloc[0] == "no_build"
    assert layer["zone_type"].iloc[0] == "four_mountains"


def test_shapefile_with_cpg_and_geojson(tmp_path):
    gdf = gpd.GeoDataFrame({"名称": ["中梁山"], "级别": ["重点控建区"]}, geometry=[box(106.3, 29.7, 106.32, 29.75)], crs="EPSG:4326")
    gdf.to_file(tmp_path / "z.shp", encoding="utf-8")
    gdf.to_file(tmp_path / "z.geojson", driver="GeoJSON")
    for f in ("z.shp", "z.geojson"):
        layer, *_ = vector_layer(spec(tmp_path / f, role="zones", zone_type="four_mountains"))
        assert layer["name"].iloc[0] == "中梁山" and layer["level"].iloc[0] == "key_control"


def test_vector_without_crs_needs_declaration(tmp_path):
    path = tmp_path / "nocrs.geojson"
    path.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"DLBM":"0701"},"geometry":{"type":"Point","coordinates":[1,2]}}]}')
    gdf = gpd.read_file(path)
    gdf.set_crs(None, allow_override=True).to_file(tmp_path / "nocrs.shp")
    with pytest.raises(InputError, match="no CRS"):
        vector_layer(spec(tmp_path / "nocrs.shp", role="landuse"))


def test_gcj02_vector_layer_is_converted(tmp_path):
    from gis.coords import wgs84_to_gcj02

    lon, lat = wgs84_to_gcj02(np.array([106.4]), np.array([29.6]))
    gdf = gpd.GeoDataFrame({"编号": ["C1"], "名称": ["垃圾站"]}, geometry=[Point(lon[0], lat[0])], crs="EPSG:4326")
    gdf.to_file(tmp_path / "c.gpkg")
    layer, *_ = vector_layer(spec(tmp_path / "c.gpkg", role="candidates", coords="gcj02"))
    assert layer.geometry.x.iloc[0] == pytest.approx(106.4, abs=1e-7)
    assert layer.geometry.y.iloc[0] == pytest.approx(29.6, abs=1e-7)


def test_landuse_raster_codes_and_nodata(tmp_path):
    path = tmp_path / "lu.tif"
    arr = np.array([[701, 101], [0, 601]], dtype="uint16")
    with rasterio.open(path, "w", driver="GTiff", height=2, width=2, count=1, dtype="uint16", crs="EPSG:4544", transform=from_origin(500000, 3271000, 100, 100), nodata=0) as dst:
        dst.write(arr, 1)
    r = raster_layer(spec(path, role="landuse", classes="gbt21010"))
    pts = gpd.GeoSeries([Point(500050, 3270950), Point(500150, 3270950), Point(500050, 3270850), Point(400000, 0)], crs="EPSG:4544")
    assert r.sample_codes(pts).tolist() == ["0701", "0101", None, None]


def test_empty_and_corrupt_files_give_clear_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as err:
        points_from_table(spec(empty, coords="wgs84"))
    assert err.value.path == str(empty)
    broken = tmp_path / "broken.xlsx"
    broken.write_text("not a workbook", encoding="utf-8")
    with pytest.raises(InputError, match="not a readable .xlsx"):
        points_from_table(spec(broken, coords="wgs84"))
    good = tmp_path / "ok.xlsx"
    LEDGER.to_excel(good, index=False)
    with pytest.raises(InputError, match="sheet") as err:
        points_from_table(spec(good, coords="wgs84", sheet="台账2"))
    assert err.value.field == "layers.sites.sheet"
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('网点编号,网点名称,网点层级,经度,纬度\nA,"unterminated,回收网点,106.4,29.6\n', encoding="utf-8")
    with pytest.raises(InputError, match="well-formed CSV"):
        points_from_table(spec(quoted, coords="wgs84"))


def test_header_only_ledger_loads_nothing_and_rejects_nothing(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("网点编号,网点名称,网点层级,经度,纬度\n", encoding="utf-8")
    layer, rejects, n, _ = points_from_table(spec(path, coords="wgs84"))
    assert n == 0 and len(layer) == 0 and len(rejects) == 0


def test_impossible_coordinates_are_out_of_range(tmp_path):
    path = tmp_path / "range.csv"
    pd.DataFrame(
        {"编号": ["A", "B", "C"], "名称": ["a", "b", "c"], "层级": ["回收网点"] * 3,
         "经度": ["106.4", "200.5", "106.4"], "纬度": ["29.6", "29.6", "-95"]}
    ).to_csv(path, index=False)
    layer, rejects, n, _ = points_from_table(spec(path, coords="wgs84"))
    assert n == 3 and len(layer) == 1
    assert dict(zip(rejects["row"], rejects["reason"])) == {3: "coordinates_out_of_range", 4: "coordinates_out_of_range"}


def test_parse_numbers_fast_path_equals_the_cell_by_cell_parse():
    """The Arrow / vectorised passes give what normalising and parsing each cell gives."""
    from gis.catalog import normalise_label
    from gis.io import parse_numbers

    cells = ["1.5", "", "-3e2", "1,234", "１２．５", "abc", "0.0000001", "106.4567891", " 7 ", "+4", None]
    for values in (cells, ["106.1", "29.5", "", "1e-3"]):  # with and without cells Arrow cannot parse
        got = parse_numbers(pd.Series(values, dtype=object)).to_numpy()
        want = pd.to_numeric(pd.Series([normalise_label(v or "").replace(",", "") or None for v in values],
                                       dtype=object), errors="coerce").to_numpy(dtype=float)
        np.testing.assert_array_equal(got, want)


def test_arrow_csv_is_pandas_grid_or_declines() -> None:
    """The fast CSV path gives pandas' text grid (quoted commas and line breaks, empty cells, leading zeros,
    spaces kept) for a rectangular file, and declines (None) where pandas' own handling is needed."""
    import io as _io

    from gis.io import _arrow_csv

    def pandas_grid(b: bytes) -> pd.DataFrame:
        return pd.read_csv(_io.BytesIO(b), encoding="utf-8", header=None, dtype=str, keep_default_na=False,
                           skip_blank_lines=False)

    ok = ('网点编号,名称,地址,经度\r\n007,"回收站,一号"," 某路\n1号 ",106.1\r\n'
          'A2,,"",NA\r\n"A""3",乙, x ,\r\n').encode("utf-8")
    got = _arrow_csv(ok)
    assert got is not None and got.iloc[1, 0] == "007" and got.iloc[2, 3] == "NA"
    pd.testing.assert_frame_equal(got, pandas_grid(ok))
    blank = b"a,b\n\n1,2\n"  # a blank record: empty cells (pandas: missing, which read_table turns into "")
    pd.testing.assert_frame_equal(_arrow_csv(blank), pandas_grid(blank).fillna(""))
    for bad in ("a,b,c\n1,2\n", "a,b\n1,2,3\n", ""):
        assert _arrow_csv(bad.encode("utf-8")) is None
