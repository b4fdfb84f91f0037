"""The general target model (gis.targets) and the bundled Shizhu 2025 example."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import geopandas as gpd
import pandas as pd
import pytest
import shapely
import yaml

from gis._errors import CatalogError
from gis.settings import PACKAGE_ROOT
from gis.targets import (
    TableSpec,
    evaluate_targets,
    load_categories,
    read_table,
    validate_project,
    validate_targets,
)

SHIZHU = PACKAGE_ROOT / "data" / "examples" / "shizhu_2025"
CRS = "EPSG:32648"
SHIZHU_SEVEN = [
    "建成40个再生资源回收站", "建成85个分类投放点", "回收企业数量达20家", "可循环快递回收装置网点达40个",
    "城乡生活垃圾回收利用率达40%以上", "二手商品经营市场主体达50个", "城区生活垃圾分类全覆盖",
]


@pytest.fixture(scope="module")
def cats():
    return load_categories()


def _townships() -> gpd.GeoDataFrame:
    # two 街道 and one 镇, 1 km squares side by side
    return gpd.GeoDataFrame(
        {"township": ["甲街道", "乙街道", "丙镇"], "kind": ["街道", "街道", "镇"], "urban": [True, True, False],
         "households": [3000.0, 1000.0, 1000.0]},
        geometry=[shapely.box(0, 0, 1000, 1000), shapely.box(1000, 0, 2000, 1000), shapely.box(2000, 0, 3000, 1000)],
        crs=CRS,
    )


def _sites(rows: list[tuple[str, str, float, str | None]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"site_id": [f"S{i}" for i in range(len(rows))], "tier": [r[0] for r in rows], "status": [r[1] for r in rows],
         "operator": [r[3] for r in rows]},
        geometry=[shapely.Point(r[2], 500) for r in rows], crs=CRS,
    )


def _eval(rows, targets, cats, tables=None):
    sites = _sites(rows)
    norm = validate_targets(targets, categories=cats, tables=tables or {})
    return evaluate_targets(norm, categories=cats, tables=tables or {}, sites=sites, townships=_townships())


class TestValidation:
    def test_unknown_metric_named(self, cats):
        with pytest.raises(CatalogError) as e:
            validate_targets([{"name": "x", "metric": "counts", "category": "分类投放点", "target": 1}], categories=cats, tables={})
        assert e.value.key == "targets[0].metric" and "counts" in str(e.value)

    def test_unknown_category_named(self, cats):
        with pytest.raises(CatalogError) as e:
            validate_targets([{"metric": "count", "category": "快递柜", "target": 1}], categories=cats, tables={})
        assert e.value.key == "targets[0].category" and "快递柜" in str(e.value)

    def test_missing_table_named(self, cats):
        with pytest.raises(CatalogError, match="not declared under target_tables"):
            validate_targets([{"metric": "ratio", "table": "tonnage", "numerator": "a", "denominator": "b", "target": 0.4}],
                             categories=cats, tables={})
        # a table category without its table
        with pytest.raises(CatalogError, match="express_points"):
            validate_targets([{"metric": "count", "category": "快递网点回收装置", "target": 4}], categories=cats, tables={})

    def test_missing_column_named(self, cats, tmp_path):
        f = tmp_path / "t.csv"
        f.write_text("镇街,回收量\n甲街道,1\n", encoding="utf-8")
        spec = TableSpec("tonnage", f, {"township": "镇街", "recovered_t": "回收量", "generated_t": "产生量"})
        with pytest.raises(CatalogError) as e:
            validate_targets([{"metric": "ratio", "table": "tonnage", "numerator": "recovered_t", "denominator": "generated_t",
                               "target": 0.4}], categories=cats, tables={"tonnage": spec})
        assert "产生量" in str(e.value) and e.value.key.endswith("columns.generated_t")

    def test_aliases_resolve(self, cats, tmp_path):
        (tmp_path / "x.csv").write_text("网点名称\n", encoding="utf-8")
        rows = validate_targets([{"metric": "count", "category": "可循环快递回收装置网点", "target": 1},
                                 {"metric": "count", "category": "回收站点", "target": 1}], categories=cats,
                                tables={"express_points": TableSpec("express_points", tmp_path / "x.csv")})
        assert [r["categories"] for r in rows] == [["express_recycling_point"], ["recycling_station"]]


class TestMetrics:
    def test_count_built_planned_gap(self, cats):
        rows = [("drop_off_point", "active", 100, None)] * 3 + [("drop_off_point", "planned", 200, None)] * 2 + \
               [("drop_off_point", "closed", 300, None)]
        r = _eval(rows, [{"metric": "count", "category": "分类投放点", "target": 5}], cats).rows[0]
        assert (r["built"], r["planned"], r["gap"], r["met"], r["planned_closes_gap"]) == (3, 2, 2, False, True)

    def test_enterprises_counted_once(self, cats):
        rows = [("collection_point", "active", 100, "张三"), ("collection_point", "active", 200, " 张三 "),
                ("transfer_station", "active", 300, "李四"), ("collection_point", "planned", 1200, "王五"),
                ("collection_point", "planned", 1300, "李四")]
        r = _eval(rows, [{"metric": "count", "category": "回收企业", "target": 4}], cats).rows[0]
        assert r["built"] == 2 and r["planned"] == 1 and r["gap"] == 2 and r["planned_closes_gap"] is False

    def test_street_one_town_two(self, cats):
        # 甲街道 1 station, 乙街道 0, 丙镇 1 active + 1 planned
        rows = [("transfer_station", "active", 500, None), ("transfer_station", "active", 2500, None),
                ("transfer_station", "planned", 2600, None)]
        t = [{"metric": "per_township", "category": "中转站", "min_per_street": 1, "min_per_town": 2, "target": 1.0}]
        r = _eval(rows, t, cats).rows[0]
        assert r["built"] == pytest.approx(1 / 3) and r["gap"] == 2  # 乙街道 1, 丙镇 1
        assert r["with_planned"] == pytest.approx(2 / 3) and r["planned_closes_gap"] is False

    def test_urban_full_coverage(self, cats):
        rows = [("drop_off_point", "active", 500, None), ("drop_off_point", "planned", 1500, None)]
        t = [{"metric": "per_township", "category": "分类投放点", "only": "urban", "target": 1.0}]
        r = _eval(rows, t, cats).rows[0]
        assert r["built"] == 0.5 and r["with_planned"] == 1.0 and r["planned_closes_gap"] is True

    def test_households_per_point(self, cats):
        rows = [("collection_point", "active", 100, None)] * 2 + [("collection_point", "planned", 100, None)]
        r = _eval(rows, [{"metric": "households_per_point", "category": "回收站", "target": 2000}], cats).rows[0]
        assert r["built"] == 2500 and r["gap"] == math.ceil(5000 / 2000) - 2 and r["planned_closes_gap"] is True

    def test_ratio_with_rejects(self, cats, tmp_path):
        f = tmp_path / "t.csv"
        f.write_text("镇街,回收,产生\n甲街道,30,100\n乙街道,x,50\n丁镇,10,10\n丙镇,-1,5\n甲街道,1,1\n", encoding="gb18030")
        spec = TableSpec("tonnage", f, {"township": "镇街", "rec": "回收", "gen": "产生"})
        t = [{"metric": "ratio", "table": "tonnage", "numerator": "rec", "denominator": "gen", "target": 0.4}]
        rep = _eval([], t, cats, {"tonnage": spec})
        assert rep.rows[0]["built"] == pytest.approx(0.3) and rep.rows[0]["gap"] == pytest.approx(0.1)
        assert rep.rows[0]["planned_closes_gap"] is None
        assert sorted(zip(rep.rejects["row"], rep.rejects["reason"])) == [
            (3, "not a number"), (4, "not a township of the district"), (5, "negative"), (6, "township repeated")]

    def test_read_table_keeps_every_row(self, tmp_path):
        f = tmp_path / "t.csv"
        f.write_text("镇街,a\n甲街道,1\n乙,2\n,3\n", encoding="utf-8")
        clean, rej = read_table(TableSpec("t", f, {"township": "镇街"}), numeric=["a"], townships=["甲街道"])
        assert len(clean) + len(rej) == 3


@pytest.fixture(scope="module")
def shizhu(tmp_path_factory):
    out = tmp_path_factory.mktemp("shizhu")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "gis.targets", str(SHIZHU), "--out", str(out)], capture_output=True,
                         text=True, cwd=PACKAGE_ROOT, timeout=600)
    assert res.returncode == 0, res.stderr
    return out, res.stdout, time.perf_counter() - t0


class TestShizhuExample:
    def test_reports_all_seven_targets_with_values(self, shizhu):
        out, stdout, _ = shizhu
        rows = pd.read_csv(out / "targets.csv", encoding="utf-8-sig").set_index("name")
        assert set(SHIZHU_SEVEN) <= set(rows.index)
        for name in SHIZHU_SEVEN:
            assert pd.notna(rows.loc[name, "built"]) and pd.notna(rows.loc[name, "gap"]), name
            assert name in stdout

    def test_values_match_the_inputs(self, shizhu):
        out, _, _ = shizhu
        rows = pd.read_csv(out / "targets.csv", encoding="utf-8-sig").set_index("name")
        sh = pd.read_csv(SHIZHU / "second_hand.csv", encoding="utf-8-sig")
        built = sh[sh["状态"] == "在营"]["统一社会信用代码"].nunique()
        assert rows.loc["二手商品经营市场主体达50个", "built"] == built
        ex = pd.read_csv(SHIZHU / "express_points.csv", encoding="utf-8-sig")
        assert rows.loc["可循环快递回收装置网点达40个", "built"] == (ex["状态"] == "在营").sum()
        assert rows.loc["可循环快递回收装置网点达40个", "planned"] == (ex["状态"] == "规划").sum()
        tw = set(gpd.read_file(PACKAGE_ROOT / "data" / "sample_district" / "townships.gpkg")["镇街名称"])
        tn = pd.read_csv(SHIZHU / "tonnage.csv", encoding="utf-8-sig")
        rec = pd.to_numeric(tn["回收量（吨）"], errors="coerce")
        ok = tn["镇街"].isin(tw) & rec.notna()
        expect = rec[ok].sum() / tn.loc[ok, "产生量（吨）"].astype(float).sum()
        assert rows.loc["城乡生活垃圾回收利用率达40%以上", "built"] == pytest.approx(expect, abs=1e-6)
        rej = pd.read_csv(out / "targets_rejects.csv", encoding="utf-8-sig")
        assert len(rej) == (~ok).sum()

    def test_unknown_metric_fails_fast_and_writes_nothing(self, tmp_path):
        proj = yaml.safe_load((SHIZHU / "project.yaml").read_text(encoding="utf-8"))
        proj["targets"][0]["metric"] = "cout"
        for layer in proj["layers"].values():
            for spec in layer if isinstance(layer, list) else [layer]:
                spec["file"] = str((SHIZHU / spec["file"]).resolve())
        for spec in proj["target_tables"].values():
            spec["file"] = str((SHIZHU / spec["file"]).resolve())
        pdir = tmp_path / "p"
        pdir.mkdir()
        (pdir / "project.yaml").write_text(yaml.safe_dump(proj, allow_unicode=True), encoding="utf-8")
        with pytest.raises(CatalogError, match="targets\\[0\\].metric"):
            validate_project(pdir)
        out = tmp_path / "out"
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "gis.targets", str(pdir), "--out", str(out)], capture_output=True,
                             text=True, cwd=PACKAGE_ROOT, timeout=120)
        assert res.returncode == 2 and "unknown metric 'cout'" in res.stderr and res.stderr.count("\n") == 1
        assert time.perf_counter() - t0 < 10 and not out.exists()
