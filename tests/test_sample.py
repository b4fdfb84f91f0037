"""The seeded sample-district generator (gis.sample): files, truth, determinism, scales."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from gis import settings
from gis.coords import bd09_to_wgs84, gcj02_to_wgs84
from gis.sample import (
    BAND_HALF_WIDTH_M,
    CANDIDATE_HEADERS,
    INCIDENT_HEADERS,
    LEDGER_HEADERS,
    SCALES,
    TOTAL_POPULATION,
    PLACES,
    TOWNSHIPS,
    TOWNSHIPS_WITHOUT_TS,
    SampleResult,
    generate,
    to_metric,
)
from gis.sample.frame import _ll_poly
from gis.sample.geo import _district_outline
from gis.schema import INCIDENT_KIND_LABEL_ZH, RejectReason

LEVEL_ZH = {"no_build": "禁建区", "key_control": "重点控建区", "general_control": "一般控建区"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SampleResult:
    return generate(tmp_path_factory.mktemp("sample") / "small", seed=42, scale="small")


@pytest.fixture(scope="module")
def ledger(small: SampleResult) -> pd.DataFrame:
    return pd.read_csv(small.out / "sites_ledger.csv", encoding="gb18030", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def truth(small: SampleResult) -> pd.DataFrame:
    return pd.read_csv(small.truth_files["sites"], keep_default_na=False)


@pytest.fixture(scope="module")
def bad_rows(small: SampleResult) -> pd.DataFrame:
    return pd.read_csv(small.truth_files["bad_rows"], dtype={"value": str}, keep_default_na=False)


@pytest.fixture(scope="module")
def zones(small: SampleResult) -> dict[str, gpd.GeoDataFrame]:
    return {
        name: gpd.read_file(small.out / "zones.gpkg", layer=name)
        for name in ("four_mountains", "ecological_red_line", "basic_farmland", "water_source")
    }


def _metric_points(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = to_metric(lon, lat)
    return shapely.points(x, y)


# ------------------------------------------------------------------ files and labels
def test_all_files_written_and_labelled(small: SampleResult) -> None:
    names = [
        "project.yaml", "project_raster.yaml", "README.md", "sites_ledger.csv", "incidents.csv",
        "garbage_transfer_stations.xlsx", "townships.gpkg", "zones.gpkg", "landuse.gpkg", "landuse.tif",
        "population.tif", "roads.osm",
    ]
    for name in names:
        assert (small.out / name).stat().st_size > 0, name
    for path in small.truth_files.values():
        assert path.exists() and path.parent.name == "truth"
    import yaml

    proj = yaml.safe_load((small.out / "project.yaml").read_text(encoding="utf-8"))
    assert proj["sample"] is True and proj["label"] == settings.SAMPLE_LABEL
    assert proj["layers"]["sites"]["coords"] == "gcj02" and proj["layers"]["candidates"]["coords"] == "bd09"
    assert [z["layer"] for z in proj["layers"]["zones"]] == ["four_mountains", "ecological_red_line", "basic_farmland", "water_source"]
    raster = yaml.safe_load((small.out / "project_raster.yaml").read_text(encoding="utf-8"))
    assert raster["layers"]["landuse"] == {"file": "landuse.tif", "classes": "gbt21010"}
    assert {t["metric"] for t in proj["targets"]} >= {"count", "township_presence", "population_coverage", "households_per_point"}
    assert settings.SAMPLE_LABEL in (small.out / "README.md").read_text(encoding="utf-8")
    assert (gpd.read_file(small.out / "townships.gpkg")["sample"] == 1).all()
    with rasterio.open(small.out / "population.tif") as src:
        assert src.tags()["sample"] == "1"


def test_counts_small(small: SampleResult, truth: pd.DataFrame) -> None:
    c = small.counts
    assert 190 <= c["collection_point"] <= 240 and 80 <= c["drop_off_point"] <= 100
    assert 3 <= c["dismantler"] <= 5
    sc = truth[truth["tier"] == "sorting_centre"]
    assert (sc["status"] == "active").sum() == 1 and (sc["status"] == "planned").sum() == 1
    assert c["clusters"] == 12 and 600 <= c["incidents"] <= 1200
    assert 25 <= c["candidates"] <= 35 and c["townships"] == len(TOWNSHIPS)
    assert c["sites_rows"] == c["sites"] + 7 and c["incidents_rows"] == c["incidents"] + 2


# ------------------------------------------------------------------------- ledger
def test_ledger_is_gb18030_with_exact_headers(small: SampleResult, ledger: pd.DataFrame) -> None:
    raw = (small.out / "sites_ledger.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert list(ledger.columns) == list(LEDGER_HEADERS)
    assert set(ledger["网点层级"]) - {"废品收购大户"} == {"分拣中心", "中转分拣站", "回收网点", "分类投放点", "拆解企业"}
    assert set(ledger["经营状态"]) <= {"在营", "规划", "关停", "非法"}
    assert set(ledger["营业执照"]) <= {"有", "无"} and set(ledger["公安备案"]) <= {"已备案", "未备案"}
    assert set(ledger["资质认定"]) <= {"已取得", "未取得", ""}


def test_bad_rows_are_where_truth_says(small: SampleResult, ledger: pd.DataFrame, bad_rows: pd.DataFrame) -> None:
    reasons = {r.value for r in RejectReason}
    assert set(bad_rows["reason"]) <= reasons
    sites_bad = bad_rows[bad_rows["file"] == "sites_ledger.csv"]
    assert set(sites_bad["reason"]) == {
        "missing_coordinates", "non_numeric_coordinates", "swapped_lon_lat", "outside_district",
        "duplicate_id", "unknown_category", "missing_value",
    }
    for _, b in sites_bad.iterrows():
        row = ledger.iloc[b["row"] - 2]
        reason = b["reason"]
        if reason == "missing_coordinates":
            assert row["经度"] == "" and row["纬度"] == ""
        elif reason == "non_numeric_coordinates":
            assert row["经度"].endswith("x") and pd.isna(pd.to_numeric(row["经度"], errors="coerce"))
        elif reason == "swapped_lon_lat":
            assert 20 < float(row["经度"]) < 40 and 100 < float(row["纬度"]) < 115
        elif reason == "outside_district":
            assert float(row["经度"]) > 106.8
        elif reason == "duplicate_id":
            first = ledger.index[ledger["网点编号"] == row["网点编号"]]
            assert len(first) == 2 and first[1] == b["row"] - 2
        elif reason == "unknown_category":
            assert row["网点层级"] == "废品收购大户"
        elif reason == "missing_value":
            assert row["网点名称"] == ""
    inc = pd.read_csv(small.out / "incidents.csv", dtype=str, keep_default_na=False)
    inc_bad = bad_rows[bad_rows["file"] == "incidents.csv"]
    assert set(inc_bad["reason"]) == {"bad_value", "unknown_category"}
    for _, b in inc_bad.iterrows():
        assert inc.iloc[b["row"] - 2][b["field"]] == b["value"]
    good = ~inc["记录编号"].isin(inc_bad["id"])
    assert pd.to_datetime(inc.loc[good, "发现日期"], format="%Y-%m-%d").between("2022-01-01", "2024-12-31").all()
    assert set(inc.loc[good, "问题类型"]) <= set(INCIDENT_KIND_LABEL_ZH.values())
    assert list(inc.columns) == list(INCIDENT_HEADERS)


def test_gcj02_shift_present_and_reversible(ledger: pd.DataFrame, truth: pd.DataFrame) -> None:
    merged = truth.merge(ledger.drop_duplicates("网点编号"), left_on="site_id", right_on="网点编号")
    assert len(merged) == len(truth)
    glon = merged["经度"].astype(float).to_numpy()
    glat = merged["纬度"].astype(float).to_numpy()
    shift = np.hypot(*(np.subtract(to_metric(glon, glat), to_metric(merged["lon"], merged["lat"]))))
    assert shift.min() > 100.0  # the ledger is really GCJ-02, not WGS84
    wlon, wlat = gcj02_to_wgs84(glon, glat)
    err = np.hypot(*(np.subtract(to_metric(wlon, wlat), to_metric(merged["lon"], merged["lat"]))))
    assert err.max() < 0.5


def test_candidates_are_bd09(small: SampleResult) -> None:
    cand = pd.read_excel(small.out / "garbage_transfer_stations.xlsx", sheet_name=0)
    assert list(cand.columns) == list(CANDIDATE_HEADERS) and (cand["类型"] == "垃圾中转站").all()
    ct = pd.read_csv(small.truth_files["candidates"])
    assert 3 <= ct["prohibited"].sum() <= 8
    wlon, wlat = bd09_to_wgs84(cand["经度"].to_numpy(), cand["纬度"].to_numpy())
    err = np.hypot(*(np.subtract(to_metric(wlon, wlat), to_metric(ct["lon"], ct["lat"]))))
    assert err.max() < 0.5


# ---------------------------------------------------------------- planted sites
def test_planted_situations_cover_the_catalogue(truth: pd.DataFrame) -> None:
    codes = truth["planted"].str.split(";").explode()
    codes = codes[codes != ""]
    heads = set(codes.str.replace(r":\d+$", "", regex=True).str.replace(r"^landuse_not_allowed:.*", "landuse_not_allowed", regex=True))
    for needed in (
        "four_mountains:no_build", "four_mountains:key_control", "four_mountains:general_control",
        "ecological_red_line", "basic_farmland", "water_source", "landuse_not_allowed", "near_receptor:school",
        "no_business_licence", "no_dismantling_qualification", "no_police_filing", "floor_area_below_norm",
        "far_from_transfer_station",
    ):
        assert needed in heads, needed
    planted = truth[truth["planted"] != ""]
    assert {"active", "planned"} <= set(planted["status"])
    assert (truth["clean"] == (truth["planted"] == "")).all()
    school = planted[planted["planted"].str.contains("near_receptor:school:")]
    assert (school["tier"] == "dismantler").any()
    m = school["planted"].str.extract(r"near_receptor:school:(\d+)")[0].astype(int)
    assert (m[school["tier"] == "dismantler"] < 150).any()


def test_four_mountains_sites_inside_their_band_and_clean_sites_outside_zones(
    truth: pd.DataFrame, zones: dict[str, gpd.GeoDataFrame]
) -> None:
    fm = zones["four_mountains"].to_crs(4544)
    pts = _metric_points(truth["lon"].to_numpy(), truth["lat"].to_numpy())
    for level, zh in LEVEL_ZH.items():
        band = shapely.union_all(fm.geometry[fm["管控级别"] == zh].values)
        planted = truth["planted"].str.contains(f"four_mountains:{level}").to_numpy()
        assert planted.sum() >= 1
        assert shapely.contains(band, pts[planted]).all()
        # ≥ 30 m inside: the level is unambiguous
        assert (shapely.distance(pts[planted], band.boundary) >= 30.0).all()
    everything = shapely.union_all(np.concatenate([z.to_crs(4544).geometry.values for z in zones.values()]))
    clean = truth["clean"].to_numpy()
    assert clean.sum() > 250
    assert not shapely.intersects(everything, pts[clean]).any()
    assert (shapely.distance(pts[clean], everything) >= 30.0).all()


def test_clean_sites_on_allowed_landuse(small: SampleResult, truth: pd.DataFrame) -> None:
    from gis.landuse import load_scheme

    classes = load_scheme("gbt21010_2017").classes  # the sample is coded in GB/T 21010-2017
    lu = gpd.read_file(small.out / "landuse.gpkg")
    pts = gpd.GeoDataFrame(truth, geometry=gpd.points_from_xy(truth["lon"], truth["lat"]), crs=4326).to_crs(lu.crs)
    j = gpd.sjoin(pts[truth["clean"]], lu[["地类编码", "geometry"]], predicate="within")
    assert len(j) == truth["clean"].sum()
    allowed = [
        tier in ((classes.get(code) or classes[code[:2]]).get("allowed_tiers") or [])
        for code, tier in zip(j["地类编码"], j["tier"])
    ]
    assert all(allowed)
    # the raster says the same as the vector layer at every clean site
    with rasterio.open(small.out / "landuse.tif") as src:
        vals = np.array([v[0] for v in src.sample(zip(j.geometry.x, j.geometry.y))])
    assert (vals == j["地类编码"].astype(int).to_numpy()).all()


# ------------------------------------------------------------------ incidents
def test_clusters_in_four_mountains_lie_entirely_inside_their_level(
    small: SampleResult, zones: dict[str, gpd.GeoDataFrame]
) -> None:
    clusters = pd.read_csv(small.truth_files["clusters"], keep_default_na=False)
    inc = pd.read_csv(small.out / "incidents.csv", dtype=str, keep_default_na=False)
    it = pd.read_csv(small.truth_files["incidents"], keep_default_na=False)
    inc = inc.merge(it, left_on="记录编号", right_on="incident_id")
    fm = zones["four_mountains"].to_crs(4544)
    inside = clusters[clusters["four_mountains_level"] != ""]
    assert 4 <= len(inside) <= 5
    assert set(inside["four_mountains_level"]) == set(LEVEL_ZH)
    for _, c in clusters.iterrows():
        members = inc[inc["cluster_id"] == c["cluster_id"]]
        assert len(members) == c["n_incidents"] and 15 <= len(members) <= 75
        pts = _metric_points(members["经度"].astype(float).to_numpy(), members["纬度"].astype(float).to_numpy())
        if c["four_mountains_level"]:
            zh = LEVEL_ZH[c["four_mountains_level"]]
            band = shapely.union_all(fm.geometry[(fm["管控级别"] == zh) & (fm["名称"] == c["four_mountains_range"])].values)
            assert shapely.contains(band, pts).all(), c["cluster_id"]
        else:
            assert not shapely.intersects(shapely.union_all(fm.geometry.values), pts).any(), c["cluster_id"]
        centre = _metric_points(np.array([c["lon"]]), np.array([c["lat"]]))[0]
        d = shapely.distance(centre, pts)
        assert np.mean(d <= c["radius_m"] + 0.5) >= 0.95
    noise = (it["cluster_id"] == "").mean()
    assert 0.3 <= noise <= 0.5


def test_rebounds_follow_closures(small: SampleResult) -> None:
    clusters = pd.read_csv(small.truth_files["clusters"], keep_default_na=False)
    inc = pd.read_csv(small.out / "incidents.csv", dtype=str, keep_default_na=False)
    it = pd.read_csv(small.truth_files["incidents"], keep_default_na=False)
    inc = inc.merge(it, left_on="记录编号", right_on="incident_id")
    reb = clusters[clusters["rebound"]]
    assert len(reb) == 3
    for _, c in reb.iterrows():
        m = inc[inc["cluster_id"] == c["cluster_id"]]
        before = m[m["发现日期"] < c["closed_date"]]
        after = m[m["发现日期"] > c["closed_date"]]
        assert (before["处置状态"] == "已关停").all() and (before["关停日期"] == c["closed_date"]).all()
        assert len(after) >= 5 and set(after["处置状态"]) <= {"反弹", "待整改"}
        assert after["发现日期"].min() == c["rebound_first_date"]
        centre = _metric_points(np.array([c["lon"]]), np.array([c["lat"]]))[0]
        pts = _metric_points(after["经度"].astype(float).to_numpy(), after["纬度"].astype(float).to_numpy())
        assert (shapely.distance(centre, pts) <= 400.0).all()


# ------------------------------------------------------- townships, population
def test_population_raster_matches_townships(small: SampleResult, zones: dict[str, gpd.GeoDataFrame]) -> None:
    tw = gpd.read_file(small.out / "townships.gpkg")
    assert tw.crs.to_epsg() == 4490 and len(tw) == len(TOWNSHIPS)
    assert set(tw["类型"]) == {"街道", "镇"} and set(tw["城镇"]) == {"是", "否"}
    with rasterio.open(small.out / "population.tif") as src:
        arr = src.read(1)
        assert src.crs.to_epsg() == 4326 and src.nodata == -1 and arr.dtype == np.float32
        transform = src.transform
    total = arr[arr >= 0].sum(dtype=np.float64)
    assert total == pytest.approx(TOTAL_POPULATION, rel=1e-4)
    assert tw["常住人口"].sum() == pytest.approx(total, rel=1e-4)
    ratio = tw["常住人口"] / tw["户数"]
    assert ratio[tw["类型"] == "街道"].between(2.55, 2.65).all() and ratio[tw["类型"] == "镇"].between(2.85, 2.95).all()
    # zero population on the no-build cores
    rows, cols = np.nonzero(arr > 0)
    lon, lat = rasterio.transform.xy(transform, rows, cols)
    fm = zones["four_mountains"].to_crs(4544)
    core = shapely.union_all(fm.geometry[fm["管控级别"] == "禁建区"].values)
    assert not shapely.contains_xy(core, *to_metric(np.asarray(lon), np.asarray(lat))).any()
    town_truth = pd.read_csv(small.truth_files["townships"]).set_index("township")
    without = set(town_truth.index[~town_truth["has_transfer_station"]])
    assert set(TOWNSHIPS_WITHOUT_TS) <= without
    # any other township without a station has almost no ground outside the zones
    free = shapely.difference(shapely.union_all(tw.to_crs(4544).geometry.values), shapely.union_all(
        [z.to_crs(4544).geometry.union_all() for z in zones.values()]))
    for name in without - set(TOWNSHIPS_WITHOUT_TS):
        cell = tw.to_crs(4544).geometry[tw["镇街名称"] == name].iloc[0]
        assert shapely.intersection(cell, free).area < 0.25 * cell.area, name


def test_four_mountains_bands_are_wide_nonoverlapping_rings(zones: dict[str, gpd.GeoDataFrame]) -> None:
    fm = zones["four_mountains"].to_crs(4544)
    assert set(fm["名称"]) == {"缙云山", "中梁山"} and set(fm["管控类型"]) == {"四山"}
    geoms = fm.geometry.values
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            assert shapely.intersection(geoms[i], geoms[j]).area < 1.0
    # a 300 m cluster fits inside each level: the inscribed width is > 600 m somewhere
    for geom in geoms:
        assert not shapely.buffer(geom, -300.0).is_empty
    assert BAND_HALF_WIDTH_M["key_control"] - BAND_HALF_WIDTH_M["no_build"] >= 600


# -------------------------------------------------------------------- roads
def test_roads_load_in_osmnx_as_one_component(small: SampleResult) -> None:
    import networkx as nx
    import osmnx as ox

    raw = ox.graph_from_xml(small.out / "roads.osm", simplify=False, retain_all=True)
    g = ox.graph_from_xml(small.out / "roads.osm", simplify=True, retain_all=False)
    largest = max(nx.weakly_connected_components(raw), key=len)
    assert len(largest) / raw.number_of_nodes() >= 0.95
    assert g.number_of_nodes() > 500
    highways = {h for _, _, h in g.edges(data="highway") if isinstance(h, str)}
    assert {"primary", "secondary", "tertiary", "residential", "unclassified", "service"} <= highways
    assert any(t == "yes" for _, _, t in g.edges(data="tunnel"))


# --------------------------------------------------------------- determinism
def test_same_seed_same_bytes_different_seed_differs(small: SampleResult, tmp_path: Path) -> None:
    names = ["sites_ledger.csv", "incidents.csv", "truth/sites_truth.csv", "truth/clusters_truth.csv"]
    bundled = settings.SAMPLE_PROJECT_DIR
    import yaml

    meta = yaml.safe_load((bundled / "project.yaml").read_text(encoding="utf-8")) if (bundled / "project.yaml").exists() else None
    if meta and meta.get("generator", {}).get("seed") == 42 and meta["generator"].get("scale") == "small":
        for name in names:  # the bundled sample is exactly what the generator writes
            assert (bundled / name).read_bytes() == (small.out / name).read_bytes(), name
    other = generate(tmp_path / "seed7", seed=7, scale="small")
    for name in names:
        assert (other.out / name).read_bytes() != (small.out / name).read_bytes(), name


# -------------------------------------------------------------------- scales
def test_scale_sizes_meet_benchmark_thresholds() -> None:
    city = SCALES["city"]
    assert city.expected_sites >= 20_000
    assert city.expected_incidents >= 100_000
    district, _, _ = _district_outline(np.random.default_rng(42))
    from gis.sample import BOX

    share = district.area / _ll_poly(*BOX, n=40).area
    assert city.population_cells() * share >= 1_000_000
    assert SCALES["city"].road_urban_m < SCALES["small"].road_urban_m
    d, s = SCALES["district"], SCALES["small"]
    assert 4 <= d.expected_sites / s.expected_sites <= 6
    with pytest.raises(ValueError):
        generate(Path("/nonexistent"), scale="huge")


# ------------------------------------------------------- the real Shapingba ground
#: The current 街道 and 镇 of Shapingba (沙坪坝区人民政府, 行政区划; 双碑街道 no longer exists).
CURRENT_TOWNSHIPS = {
    "小龙坎街道", "沙坪坝街道", "渝碚路街道", "磁器口街道", "童家桥街道", "石井坡街道", "詹家溪街道", "井口街道",
    "歌乐山街道", "山洞街道", "新桥街道", "天星桥街道", "土湾街道", "覃家岗街道", "联芳街道", "陈家桥街道",
    "虎溪街道", "西永街道", "土主街道", "香炉山街道", "丰文街道",
    "青木关镇", "凤凰镇", "中梁镇", "回龙坝镇", "曾家镇",
}
SHARED_COUNTIES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chongqing_osm" / "chongqing_counties_wgs84.geojson"


def _real_outline() -> shapely.Geometry:
    """Shapingba's outline from the shared OSM file when present, else the bundled copy."""
    if SHARED_COUNTIES.exists():
        c = gpd.read_file(SHARED_COUNTIES)
        return c[c["Code_County"].astype(str) == "500106"].to_crs(4544).geometry.union_all()
    return gpd.read_file(settings.PACKAGE_ROOT / "data" / "boundaries" / "shapingba_outline.geojson").to_crs(4544).geometry.union_all()


def test_outline_is_the_real_shapingba(small: SampleResult) -> None:
    tw = gpd.read_file(small.out / "townships.gpkg").to_crs(4544)
    sample = tw.geometry.union_all()
    real = _real_outline()
    iou = shapely.intersection(sample, real).area / shapely.union(sample, real).area
    assert iou >= 0.95
    assert 380e6 <= sample.area <= 410e6  # Shapingba is about 396 km²


def test_townships_are_current_and_places_fall_in_their_township(small: SampleResult) -> None:
    tw = gpd.read_file(small.out / "townships.gpkg").to_crs(4544)
    assert set(tw["镇街名称"]) == CURRENT_TOWNSHIPS
    assert (tw.geometry.area > 0.5e6).all()  # every township has a real share of the district
    for place, (lon, lat, township) in PLACES.items():
        x, y = to_metric(lon, lat)
        hit = tw[tw.contains(shapely.Point(float(x), float(y)))]["镇街名称"].tolist()
        assert hit == [township], place
    for place in ("磁器口", "大学城", "歌乐山", "西永"):
        assert place in PLACES


def test_four_mountains_levels_are_nested_ridge_bands(zones: dict[str, gpd.GeoDataFrame], small: SampleResult) -> None:
    fm = zones["four_mountains"].to_crs(4544)
    district = gpd.read_file(small.out / "townships.gpkg").to_crs(4544).geometry.union_all()
    for name in ("缙云山", "中梁山"):
        lv = {r["管控级别"]: r.geometry for _, r in fm[fm["名称"] == name].iterrows()}
        nb, kc, gc = lv["禁建区"], lv["重点控建区"], lv["一般控建区"]
        # 禁建区 ⊂ 重点控建区 envelope ⊂ 一般控建区 envelope: a 100 m step out of an inner level
        # stays inside the next level (or leaves the district)
        for inner, outer in ((nb, shapely.union(nb, kc)), (shapely.union(nb, kc), shapely.union_all([nb, kc, gc]))):
            ring = shapely.intersection(shapely.difference(shapely.buffer(inner, 100.0), inner), shapely.buffer(district, -5.0))
            assert shapely.difference(ring, shapely.buffer(outer, 1.0)).area < 0.01 * ring.area + 1.0, name
        # NNE–SSW: the band's long axis points between north and 35° east of north
        rect = shapely.minimum_rotated_rectangle(shapely.union_all([nb, kc, gc]))
        xy = np.asarray(rect.exterior.coords)[:3]
        edges = [xy[1] - xy[0], xy[2] - xy[1]]
        long_ = max(edges, key=lambda e: np.hypot(*e))
        bearing = np.degrees(np.arctan2(abs(long_[0]), abs(long_[1])))
        assert bearing <= 35.0, (name, bearing)
    # 歌乐山 lies in the 中梁山 control area, the urban centre (三峡广场) outside every band
    zl = shapely.union_all(fm.geometry[fm["名称"] == "中梁山"].values)
    assert zl.contains(shapely.Point(*map(float, to_metric(*PLACES["歌乐山"][:2]))))
    assert not shapely.union_all(fm.geometry.values).contains(shapely.Point(*map(float, to_metric(*PLACES["三峡广场"][:2]))))


def test_population_follows_the_urban_east_and_real_water(small: SampleResult) -> None:
    tw = pd.read_csv(small.truth_files["townships"])
    urban = {"沙坪坝街道", "小龙坎街道", "渝碚路街道", "磁器口街道", "天星桥街道", "土湾街道", "覃家岗街道", "新桥街道"}
    dens = tw.set_index("township")["population"]
    assert dens[list(urban)].sum() > 0.35 * dens.sum()
    lu = gpd.read_file(small.out / "landuse.gpkg")
    assert (lu["地类编码"] == "1101").any() and (lu["地类编码"] == "1103").sum() >= 20  # Jialing + real water bodies
