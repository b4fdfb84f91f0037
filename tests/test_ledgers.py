"""Problem ledger (问题台账), summary table (汇总表) and survey form (摸排表)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import Point, box

from gis._errors import InputError
from gis.compliance import RuleTable, check_sites
from gis.ledgers import (
    LEDGER_COLUMNS,
    SURVEY_COLUMNS,
    build_ledgers,
    problem_ledger,
    problems_from_compliance,
    write_ledgers,
)

CRS = "EPSG:4544"
X0, Y0 = 500_000.0, 3_300_000.0


def _b(x0, y0, x1, y1):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


@pytest.fixture()
def result():
    townships = gpd.GeoDataFrame(
        {"township": ["甲街道", "乙镇", "丙镇"]},
        geometry=[_b(0, 0, 1000, 1000), _b(1000, 0, 2000, 1000), _b(2000, 0, 3000, 1000)], crs=CRS,
    )
    zones = gpd.GeoDataFrame({"zone_type": ["four_mountains"], "level": ["no_build"], "name": ["缙云山"]},
                             geometry=[_b(0, 800, 300, 1000)], crs=CRS)
    landuse = gpd.GeoDataFrame({"landuse_code": ["0601", "0701", "0103"]},
                               geometry=[_b(0, 0, 1000, 800), _b(0, 800, 1000, 1000), _b(1000, 0, 2000, 1000)],
                               crs=CRS)
    rows = [
        # site_id, tier, x, y, status, licence, qualification, scope
        ("S1", "sorting_centre", 100, 100, "active", True, True, "再生资源分拣"),
        ("S2", "transfer_station", 300, 300, "active", True, True, "再生资源"),
        ("S3", "collection_point", 100, 900, "active", False, True, "废旧物资回收"),  # no-build + licence
        ("S4", "dismantler", 500, 500, "closed", True, False, "报废机动车回收拆解"),  # qualification, closed
        ("S5", "collection_point", 1500, 500, "active", True, True, "废品收购"),  # farmland, 乙镇
        ("S6", "collection_point", 600, 400, "active", True, True, "报废汽车零部件"),  # clean but ELV scope
        ("S7", "collection_point", 9000, 9000, "active", True, True, ""),  # outside everything
    ]
    sites = gpd.GeoDataFrame(
        pd.DataFrame(rows, columns=["site_id", "tier", "x", "y", "status", "business_licence",
                                    "dismantling_qualification", "business_scope"]).drop(columns=["x", "y"]),
        geometry=[Point(X0 + r[2], Y0 + r[3]) for r in rows], crs=CRS,
    )
    sites["name"] = "网点" + sites["site_id"]
    sites["address"] = "某路" + sites["site_id"] + "号"
    sites["township"] = ["甲街道", "甲街道", "甲街道", "甲街道", "乙镇", "甲街道", "丁镇"]
    sites["police_filing"] = True
    sites["capacity_t_per_day"] = np.nan
    sites["floor_area_m2"] = [5000, 800, 20, 2000, 20, 20, 20]
    incidents = gpd.GeoDataFrame(
        {"incident_id": ["I1", "I2"], "kind": ["illegal_elv_dismantling", "fire_hazard"],
         "status": ["open", "closed"], "five_assemblies_destination": ["外地废钢厂", None],
         "address": ["某村", "某街"]},
        geometry=[Point(X0 + 150, Y0 + 900), Point(X0 + 1500, Y0 + 100)], crs=CRS,
    )
    rules = RuleTable.default()
    rules.ledger["reference_date"] = "2022-10-21"
    return check_sites(sites, townships=townships, zones=zones, landuse=landuse, incidents=incidents, rules=rules), townships


def _hotspot_problems():
    return pd.DataFrame({
        "镇街": ["乙镇", "丙镇"], "网点名称": ["非法拆解聚集区1", "非法拆解聚集区2"], "经营地址": ["", ""],
        "问题类型": ["非法拆解聚集", "非法拆解聚集"], "问题描述": ["Gi*热点", "反弹"],
        "依据": ["《报废机动车回收管理办法》(国务院令第715号)"] * 2, "牵头单位": ["生态环境局", "公安局"],
        "配合单位": ["乙镇", "丙镇"], "整改措施": ["联合执法取缔", "严防反弹"], "整改时限": ["15日内"] * 2,
        "整改状态": ["待整改", "已整改"],
    })


class TestProblemRows:
    def test_one_row_per_violation_with_departments(self, result):
        r, _ = result
        p = problems_from_compliance(r)
        assert len(p) == len(r.violations)
        assert p["牵头单位"].str.len().gt(0).all()
        # the township (属地) is always co-responsible
        assert all(t in c for t, c in zip(p["镇街"], p["配合单位"]))
        s3 = p[p["site_id"] == "S3"].set_index("rule_id")
        assert s3.loc["four_mountains_no_build", "问题类型"] == "违规占用四山禁建区"
        assert s3.loc["no_business_licence", "牵头单位"] == "市场监管局"
        assert s3.loc["no_business_licence", "整改时限"] == "2022-11-05"  # 15 days after reference date
        s4 = p[p["site_id"] == "S4"].set_index("rule_id")
        assert s4.loc["no_dismantling_qualification", "整改状态"] == "已关停取缔"
        # outside every township: the ledger's own township stands in
        assert set(p.loc[p["site_id"] == "S7", "镇街"]) == {"丁镇"}

    def test_deadline_without_reference_date(self, result):
        r, _ = result
        p = problems_from_compliance(r, settings={})
        assert p["整改时限"].str.fullmatch(r"\d+日内").all()


class TestLedgerAssembly:
    def test_hotspot_problems_appended_and_numbered(self, result):
        r, towns = result
        led = build_ledgers(r, district_name="样例区", townships=towns, extra_problems=_hotspot_problems())
        assert len(led.ledger) == len(r.violations) + 2
        assert led.ledger["序号"].tolist() == list(range(1, len(led.ledger) + 1))
        assert list(led.ledger.columns[: len(LEDGER_COLUMNS)]) == list(LEDGER_COLUMNS)
        assert led.ledger["问题类型"].iloc[-1] == "非法拆解聚集"

    def test_missing_column_or_department_is_an_error(self):
        bad = _hotspot_problems().drop(columns=["依据"])
        with pytest.raises(InputError) as e:
            problem_ledger(bad)
        assert e.value.field == "依据"
        nodept = _hotspot_problems()
        nodept.loc[1, "牵头单位"] = ""
        with pytest.raises(InputError) as e:
            problem_ledger(nodept)
        assert e.value.field == "牵头单位" and e.value.row == 3

    def test_summary_table_per_township(self, result):
        r, towns = result
        led = build_ledgers(r, district_name="样例区", townships=towns, extra_problems=_hotspot_problems())
        s = led.summary.set_index("镇街")
        assert list(s.index[:3]) == ["甲街道", "乙镇", "丙镇"] and s.index[-1] == "合计"
        assert s.loc["甲街道", "检查网点数"] == 5 and s.loc["乙镇", "检查网点数"] == 1
        assert s.loc["丙镇", "检查网点数"] == 0 and s.loc["丁镇", "检查网点数"] == 1
        body = s.drop(index="合计")
        for col in s.columns.drop("序号"):
            assert s.loc["合计", col] == body[col].sum()
        assert s.loc["合计", "问题总数"] == len(led.ledger)
        assert (body["已关停取缔"] + body["已整改"] + body["未整改"] == body["问题总数"]).all()
        assert s.loc["丙镇", "已整改"] == 1
        types = [c for c in s.columns if c not in ("序号", "检查网点数", "问题总数", "已关停取缔", "已整改", "未整改")]
        assert (body[types].sum(axis=1) == body["问题总数"]).all()
        assert "违规占用四山禁建区" in types

    def test_survey_form_elv_sites_and_incidents(self, result):
        r, towns = result
        led = build_ledgers(r, district_name="样例区", townships=towns)
        sv = led.survey
        assert list(sv.columns[: len(SURVEY_COLUMNS)]) == list(SURVEY_COLUMNS)
        names = sv["网点名称"].tolist()
        assert names == ["网点S4", "网点S6", "某村非法拆解点"]  # a place is named after its address
        row4 = sv.set_index("网点名称").loc["网点S4"]
        assert row4["资质认定"] == "未取得" and "无资质拆解" in row4["发现问题"]
        place = sv.set_index("网点名称").loc["某村非法拆解点"]
        assert place['"五大总成"流向'] == "外地废钢厂" and place["线索数"] == 1 and "I1" in place["发现问题"]
        assert sv.set_index("网点名称").loc["网点S6", "发现问题"] == "未发现问题"


class TestExcel:
    def test_files_read_back(self, result, tmp_path):
        r, towns = result
        led = build_ledgers(r, district_name="样例区", townships=towns, extra_problems=_hotspot_problems())
        paths = write_ledgers(led, tmp_path, sample=True)
        wb = openpyxl.load_workbook(paths["problem_ledger"])
        ws = wb["问题台账"]
        assert ws.cell(1, 1).value == "样例区再生资源回收行业问题台账"
        header_row = next(i for i in range(1, 6) if ws.cell(i, 1).value == "序号")
        assert [c.value for c in ws[header_row]] == list(LEDGER_COLUMNS)
        assert ws.freeze_panes == f"A{header_row + 1}"
        df = pd.read_excel(paths["problem_ledger"], header=header_row - 1)
        assert list(df.columns) == list(LEDGER_COLUMNS)
        assert len(df) == len(r.violations) + 2  # one row per problem
        assert df["牵头单位"].notna().all() and (df["牵头单位"].astype(str).str.len() > 0).all()
        assert ws.column_dimensions["F"].width > ws.column_dimensions["A"].width  # 问题描述 wider than 序号

        sm = pd.read_excel(paths["summary_table"], header=header_row - 1)
        assert sm["镇街"].iloc[-1] == "合计"
        assert sm["问题总数"].iloc[-1] == len(df)
        sv = pd.read_excel(paths["survey_form"], header=header_row - 1)
        assert list(sv.columns) == list(SURVEY_COLUMNS)

        layers = set(pyogrio.list_layers(paths["gpkg"])[:, 0])
        assert layers == {"problem_ledger", "summary_table", "survey_form"}
        g = gpd.read_file(paths["gpkg"], layer="problem_ledger")
        assert len(g) == len(df) and "问题类型" in g.columns
        st = gpd.read_file(paths["gpkg"], layer="summary_table")
        assert st.crs.to_epsg() == 4544
        assert st.set_index("镇街").geometry.notna().to_dict() == {
            "甲街道": True, "乙镇": True, "丙镇": True, "丁镇": False, "合计": False}
