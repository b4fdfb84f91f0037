"""Loading a whole district: CRS choice, GCJ-02 repair, 属地 township, counts that balance, real OSM layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from pyproj import Geod
from rasterio.transform import from_origin

from gis.catalog import LayerSpec
from gis.district import load_district
from gis.io import vector_layer
from gis.testing import assert_counts_balance, tiny_positions

GEOD = Geod(ellps="WGS84")


def test_tiny_district_loads_in_metric_crs(tiny_project):
    d = load_district(tiny_project)
    assert d.crs.to_epsg() == 4544  # CGCS2000 3° GK CM 105E for Shapingba
    for layer in (d.sites, d.incidents, d.townships, d.zones, d.landuse):
        assert layer.crs == d.crs
    assert_counts_balance(d)
    assert d.read_counts["sites"] == 12 and len(d.sites) == 5


def test_gcj02_ledger_lands_on_true_position(tiny_project):
    d = load_district(tiny_project)
    wgs = d.sites.to_crs("EPSG:4326").set_index("site_id").geometry
    for sid, (lon, lat) in tiny_positions().items():
        _, _, dist = GEOD.inv(lon, lat, wgs[sid].x, wgs[sid].y)
        assert dist < 0.5, f"{sid} is {dist:.2f} m from its true position"
    assert set(d.sites["coords_source"]) == {"gcj02"}
    conv = d.provenance["sites"][0]
    assert conv["coords"] == "gcj02" and conv["converted_to"] == "wgs84"


def test_without_conversion_sites_would_be_hundreds_of_metres_off(tiny_project):
    data = yaml.safe_load(tiny_project.read_text(encoding="utf-8"))
    data["layers"]["sites"]["coords"] = "wgs84"  # the classic mistake
    tiny_project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    d = load_district(tiny_project)
    wgs = d.sites.to_crs("EPSG:4326").set_index("site_id").geometry
    lon, lat = tiny_positions()["S001"]
    _, _, dist = GEOD.inv(lon, lat, wgs["S001"].x, wgs["S001"].y)
    assert 100 < dist < 700


def test_township_is_the_polygon_the_point_lies_in(tiny_project):
    d = load_district(tiny_project)
    by_id = d.sites.set_index("site_id")["township"]
    assert by_id["S001"] == "东街道" and by_id["S003"] == "西镇"
    assert d.incidents["township"].tolist() == ["西镇", "西镇", "东街道", "东街道"]


def test_declared_metric_crs_is_used(tiny_project):
    data = yaml.safe_load(tiny_project.read_text(encoding="utf-8"))
    data["crs"] = {"metric": "EPSG:32648"}
    tiny_project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert load_district(tiny_project).crs.to_epsg() == 32648


def test_population_points_from_raster(tiny_project):
    folder = tiny_project.parent
    arr = np.zeros((10, 10), dtype="float32")
    arr[2, 3] = 100.0
    arr[7, 8] = 50.0
    arr[0, 0] = -1  # nodata
    with rasterio.open(folder / "pop.tif", "w", driver="GTiff", height=10, width=10, count=1, dtype="float32", crs="EPSG:4326", transform=from_origin(106.35, 29.65, 0.01, 0.01), nodata=-1) as dst:
        dst.write(arr, 1)
    data = yaml.safe_load(tiny_project.read_text(encoding="utf-8"))
    data["layers"]["population"] = {"file": "pop.tif"}
    tiny_project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    d = load_district(tiny_project)
    pts = d.population_points()
    assert pts["population"].sum() == pytest.approx(150.0)
    assert pts.crs == d.crs
    assert set(pts["township"]) <= {"西镇", "东街道"}


def test_sample_district_counts_balance(sample_district):
    assert_counts_balance(sample_district)
    assert len(sample_district.sites) > 100
    assert sample_district.rejects["reason"].notna().all()


def test_sample_bad_rows_are_rejected_as_recorded(sample_project, sample_district):
    truth = pd.read_csv(sample_project / "truth" / "bad_rows.csv")
    got = sample_district.rejects.assign(file=lambda r: r["file"].map(lambda f: f.rsplit("/", 1)[-1]))
    got = set(zip(got["file"], got["row"].astype(int), got["reason"]))
    want = set(zip(truth["file"].map(lambda f: str(f).rsplit("/", 1)[-1]), truth["row"].astype(int), truth["reason"]))
    assert want == got


def test_outside_district_reject_names_the_point_as_lon_lat(sample_project, sample_district):
    """The reject shows where the point is (WGS84 lon/lat), near what the ledger holds."""
    rej = sample_district.rejects[sample_district.rejects["reason"] == "outside_district"]
    assert len(rej) >= 1
    ledger = pd.read_csv(sample_project / "sites_ledger.csv", dtype=str, keep_default_na=False, encoding="gb18030")
    for _, r in rej.iterrows():
        lon, lat = (float(v) for v in r["value"].removesuffix(" (WGS84)").split(","))
        row = ledger.iloc[int(r["row"]) - 2]
        # GCJ-02 → WGS84 moves a point by well under 0.01°
        assert abs(lon - float(row["经度"])) < 0.01 and abs(lat - float(row["纬度"])) < 0.01


# ----------------------------------------------------------------------------- real OSM data


@pytest.mark.shared
def test_real_county_outlines_as_townships(shared_osm, tmp_path):

    counties = LayerSpec(
        role="townships",
        path=shared_osm / "chongqing_counties_wgs84.geojson",
        format="geojson",
        key="layers.townships",
        columns={"township": "Name_County", "township_code": "Code_County", "population": "Pop_2018"},
    )
    gdf, rejects, n, _ = vector_layer(counties)
    assert n == 38 and len(gdf) + len(rejects) == 38 and len(gdf) == 38
    assert gdf["population"].sum() > 25e6  # ~31 million people in 2018
    from gis.coords import choose_metric_crs

    assert choose_metric_crs(*gdf.total_bounds[[0, 2]]).to_epsg() == 4545  # centre ~107.7E → CM 108E


@pytest.mark.shared
@pytest.mark.parametrize("name", ["road_yuzhong", "road_nanan", "road_jiangbei"])
def test_real_osm_roads_load(shared_osm, name):
    spec = LayerSpec(role="roads", path=shared_osm / f"{name}.geojson", format="geojson", key="layers.roads")
    gdf, rejects, n, info = vector_layer(spec)
    assert len(gdf) + len(rejects) == n > 1000
    assert gdf["fclass"].notna().all()
    assert gdf.crs.to_epsg() == 4326
    # true WGS84, central Chongqing: Yuzhong, Nanan and Jiangbei lie within 106.4–107.0E, 29.4–29.7N
    minx, miny, maxx, maxy = gdf.total_bounds
    assert 106.4 < minx < maxx < 107.0 and 29.4 < miny < maxy < 29.7


@pytest.mark.shared
def test_real_osm_buildings_load(shared_osm):
    from gis.io import read_vector_file

    spec = LayerSpec(role="zones", path=shared_osm / "build_shapingba.geojson", format="geojson", key="x")
    gdf = read_vector_file(spec)
    assert len(gdf) > 1000 and gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"]).all()
