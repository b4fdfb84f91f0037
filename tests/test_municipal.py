"""Municipal mosaic sample and the roll-up (gis.municipal)."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import yaml

from gis.municipal import FOUR_RANGES, load_index, merge_cross_border, rollup
from gis.sample.mosaic import tile_layout
from _municipal_sample import two_district_sample


@pytest.fixture(scope="module")
def muni(run_tmp):
    return two_district_sample(run_tmp)


def test_tile_layout_stacks_columns_northwards():
    assert tile_layout(2) == [(0, 0), (1, 0)]
    assert tile_layout(38)[:7] == [(k, 0) for k in range(7)]
    assert len(set(tile_layout(38))) == 38


def test_index_lists_distinct_valid_projects(muni):
    idx = load_index(muni)
    names = [d["name"] for d in idx["districts"]]
    codes = [d["code"] for d in idx["districts"]]
    assert len(set(names)) == len(set(codes)) == 2
    for d in idx["districts"]:
        proj = yaml.safe_load((muni / d["path"] / "project.yaml").read_text(encoding="utf-8"))
        assert proj["name"] == d["name"] and proj["code"] == d["code"] and proj["sample"] is True


def _fm(muni, code):
    return gpd.read_file(muni / "districts" / code / "zones.gpkg", layer="four_mountains").to_crs(4544)


def test_districts_share_their_border_and_four_mountains_ranges_continue(muni):
    idx = load_index(muni)
    (a, b) = [d["code"] for d in idx["districts"]]
    ta = gpd.read_file(muni / "districts" / a / "townships.gpkg").to_crs(4544).union_all()
    tb = gpd.read_file(muni / "districts" / b / "townships.gpkg").to_crs(4544).union_all()
    shared = shapely.intersection(ta.boundary, tb.boundary)
    assert shared.length > 20_000  # the whole box edge (~24 km)
    assert shapely.intersection(ta, tb).area < 1.0  # no overlap
    za, zb = _fm(muni, a), _fm(muni, b)
    for rng in ("缙云山", "中梁山"):
        for level in ("no_build", "key_control"):
            ga = za[(za["名称"] == rng) & (za["管控级别"] == {"no_build": "禁建区", "key_control": "重点控建区"}[level])].union_all()
            gb = zb[(zb["名称"] == rng) & (zb["管控级别"] == {"no_build": "禁建区", "key_control": "重点控建区"}[level])].union_all()
            # the band leaves district a through the shared edge exactly where it enters district b
            ea, eb = shapely.intersection(ga.boundary, shared), shapely.intersection(gb.boundary, shared)
            assert shapely.intersection(ga, shared.buffer(1)).length > 0
            assert shapely.hausdorff_distance(shapely.intersection(ga.buffer(1), shared), shapely.intersection(gb.buffer(1), shared)) < 5.0
            del ea, eb


def test_border_cluster_halves_are_in_both_ledgers(muni):
    truth = pd.read_csv(muni / "truth" / "border_clusters.csv", encoding="utf-8-sig")
    assert len(truth) == 1
    cid = truth["cluster_id"].iloc[0]
    n = 0
    for code in truth["districts"].iloc[0].split(";"):
        inc = pd.read_csv(muni / "districts" / code / "incidents.csv", dtype=str, encoding="utf-8-sig")
        n += int(inc["记录编号"].str.startswith(cid).sum())
        assert inc["记录编号"].str.startswith(cid).sum() > 5
    assert n == truth["n_incidents"].iloc[0]


def test_merge_cross_border_joins_only_neighbouring_districts_same_kind():
    polys = [shapely.box(0, 0, 100, 100), shapely.box(150, 0, 250, 100), shapely.box(150, 0, 250, 100), shapely.box(5000, 0, 5100, 100)]
    gdf = gpd.GeoDataFrame({"district_code": ["a", "b", "a", "b"], "group": ["elv", "elv", "ewaste", "elv"]}, geometry=polys, crs=4544)
    comp = merge_cross_border(gdf, 100.0, "EPSG:4544")
    assert comp[0] == comp[1] and len(set(comp)) == 3


@pytest.fixture(scope="module")
def runs(muni, tmp_path_factory):
    from gis.pipeline import run

    out = tmp_path_factory.mktemp("runs")
    for d in load_index(muni)["districts"]:
        run(muni / d["path"], out / "districts" / d["code"], steps=["compliance", "coverage", "hotspots", "ledgers"], progress=False)
    return out


def test_rollup_merges_the_cross_border_cluster_and_writes_excel_and_gpkg(runs, tmp_path):
    import openpyxl
    import pyogrio

    r = rollup(runs, tmp_path)
    s = r.summary
    assert s["districts"] == 2
    assert s["cross_border_clusters"] >= 1
    assert s["clusters_merged"] == s["clusters_district_level"] - s["cross_border_clusters"]
    cb = r.clusters[r.clusters["cross_border"]]
    assert set(cb["range"]) <= {"中梁山"} and cb["n_parts"].min() == 2
    assert list(r.ranges["range"]) == list(FOUR_RANGES)
    # targets per district = the districts' own target tables
    assert len(r.targets) == sum(len(d) for d in [r.targets[r.targets["代码"] == c] for c in r.districts["代码"]])
    assert r.departments["违规条数"].sum() == s["violations_total"]
    wb = openpyxl.load_workbook(tmp_path / "municipal_summary.xlsx", read_only=True)
    assert {"区县汇总", "目标完成", "覆盖率", "四山聚集区", "跨区聚集区", "全部聚集区", "部门违规"} <= set(wb.sheetnames)
    wb.close()
    xlsx = tmp_path / "municipal_summary.xlsx"
    rg = pd.read_excel(xlsx, sheet_name="四山聚集区")
    assert list(rg["四山山系"]) == list(FOUR_RANGES)
    assert dict(zip(rg["四山山系"], rg["跨区聚集区数"])) == s["cross_border_by_range"]
    # the cross-border sheet holds exactly the cross-border clusters, in Chinese
    cbs = pd.read_excel(xlsx, sheet_name="跨区聚集区", dtype=str)
    assert len(cbs) == s["cross_border_clusters"] and set(cbs["是否跨区"]) == {"是"}
    assert set(cbs["编号"]) == set(r.clusters.loc[r.clusters["cross_border"], "merged_id"])
    assert cbs["主要问题类型"].str.contains("[\u4e00-\u9fff]").all()
    allc = pd.read_excel(xlsx, sheet_name="全部聚集区", dtype=str)
    assert len(allc) == s["clusters_merged"]
    assert pd.to_numeric(allc["事件数"]).is_monotonic_decreasing
    assert {n for n, _ in pyogrio.list_layers(tmp_path / "municipal.gpkg")} == {"districts", "clusters"}
    cov = r.coverage.set_index("代码")["人口覆盖率"]
    for code, share in s["coverage_by_district"].items():
        assert cov[code] == share


def test_cli_rollup(runs, tmp_path):
    from gis.cli import main

    assert main(["rollup", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "municipal_summary.json").exists()


def test_rollup_reading_the_districts_on_dask_workers_equals_the_local_rollup(runs, tmp_path):
    """``rollup(..., client=)`` (each district's results read on a worker, only summaries
    returned): same summary and the same workbook, sheet by sheet. An in-process cluster:
    worker processes on 127.0.0.1 are exercised by tests/test_parallel.py and
    tests/test_dask_cli_cluster.py (starting two here cost half a minute of CPU)."""
    from distributed import Client, LocalCluster

    local = rollup(runs, tmp_path / "local")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dist = rollup(runs, tmp_path / "dask", client=client)
    assert dist.summary == local.summary
    for sheet in ("区县汇总", "目标完成", "覆盖率", "四山聚集区", "跨区聚集区", "全部聚集区", "部门违规"):
        a, b = (pd.read_excel(tmp_path / k / "municipal_summary.xlsx", sheet_name=sheet, dtype=str) for k in ("local", "dask"))
        pd.testing.assert_frame_equal(a, b)
