"""Departments as data (gis.departments) and the rule table's leads and legal bases."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
import yaml

from gis._errors import CatalogError
from gis.compliance import RuleTable, check_sites
from gis.departments import DepartmentTable, district_prefix, foreign_campaign_citations, legal_basis, split_departments
from gis.settings import LAYERS_DIR

CRS = "EPSG:32648"


@pytest.fixture(scope="module")
def deps() -> DepartmentTable:
    return DepartmentTable.load()


@pytest.fixture(scope="module")
def rules_raw() -> list[dict]:
    return yaml.safe_load((LAYERS_DIR / "compliance.yaml").read_text(encoding="utf-8"))["rules"]


class TestNames:
    def test_prefix_from_district_name(self, deps):
        assert district_prefix("石柱土家族自治县", deps.prefix_by_suffix) == "县"
        assert district_prefix("沙坪坝区（样例）", deps.prefix_by_suffix) == "区"
        assert district_prefix("某市", deps.prefix_by_suffix) is None

    def test_full_names_with_prefix(self, deps):
        assert deps.full_name("商务委", "区") == "区商务委"
        assert deps.full_name("商务局", "县") == "县商务委"
        assert deps.full_name("公安局", "区") == "区公安分局"
        assert deps.full_name("公安分局", "县") == "县公安局"
        assert deps.full_name("属地", "区") == "属地镇街"

    def test_both_urban_management_spellings_are_one(self, deps):
        assert deps.resolve("城管局") == deps.resolve("城市管理局") == deps.resolve("区城市管理局") == "urban_management"

    def test_joint_leads_listed_separately(self, deps):
        assert split_departments("生态环境局、商务委") == ["生态环境局", "商务委"]
        assert deps.full_names(["生态环境局、商务委", "商务局"], "县") == ["县生态环境局", "县商务委"]

    def test_unknown_department_named(self, deps):
        with pytest.raises(CatalogError, match="unknown department '环卫所'"):
            deps.check("商务委、环卫所", source="x.yaml", key="rules[0].lead_department")


class TestRuleTable:
    def test_every_rule_department_is_known(self, deps, rules_raw):
        for i, r in enumerate(rules_raw):
            deps.check(r["lead_department"], source="compliance.yaml", key=f"rules[{i}].lead_department")
            deps.check(r.get("co_departments") or [], source="compliance.yaml", key=f"rules[{i}].co_departments")

    def test_four_mountains_lead_is_forestry(self, deps, rules_raw):
        fm = [r for r in rules_raw if r["condition"].get("zone_type") == "four_mountains"]
        assert fm and all(deps.resolve(r["lead_department"]) == "forestry" for r in fm)
        assert all("planning_natural_resources" in deps.check(r["co_departments"], source="", key="") for r in fm)

    def test_no_district_plan_hard_coded(self, rules_raw):
        names = ["沙坪坝区", "江津区", "九龙坡区", "石柱土家族自治县"]
        assert foreign_campaign_citations(rules_raw, "石柱县", known_districts=names) == []
        planted = [{"id": "x", "legal_source": "沙坪坝区再生资源回收行业专项整治行动实施方案"}]
        assert foreign_campaign_citations(planted, "石柱县", known_districts=names) == ["x"]
        assert foreign_campaign_citations(planted, "沙坪坝区", known_districts=names) == []

    def test_campaign_plan_comes_from_the_project(self, rules_raw):
        rule = next(r for r in rules_raw if r["id"] == "no_business_licence")
        assert legal_basis(rule, {}) == rule["legal_source"]
        plan = "石柱县再生资源回收行业专项整治行动实施方案"
        assert legal_basis(rule, {"plan_title": plan}).endswith("；" + plan)
        section = yaml.safe_load((LAYERS_DIR / "compliance.yaml").read_text(encoding="utf-8"))
        section["campaign"] = {"plan_title": plan}
        rt = RuleTable.from_section(section)
        assert rt.get("no_business_licence").legal_source.endswith(plan)
        assert plan not in rt.get("school_buffer").legal_source  # only rules citing the campaign

    def test_outside_development_boundary_rule(self):
        udb = gpd.GeoDataFrame({"zone_type": ["urban_development_boundary"], "level": [None], "name": ["城镇开发边界"]},
                               geometry=[shapely.box(0, 0, 1000, 1000)], crs=CRS)
        sites = gpd.GeoDataFrame(
            {"site_id": ["in", "out", "pt"], "tier": ["sorting_centre", "sorting_centre", "collection_point"],
             "status": ["active"] * 3},
            geometry=[shapely.Point(500, 500), shapely.Point(1500, 500), shapely.Point(1600, 500)], crs=CRS)
        res = check_sites(sites, townships=None, zones=udb)
        hit = set(res.violations.loc[res.violations["rule_id"] == "outside_development_boundary", "site_id"])
        assert hit == {"out"}  # a collection point may stand outside the boundary
        # without the zone the rule is skipped, never fired on everything
        res2 = check_sites(sites, townships=None, zones=udb.assign(zone_type="water_source"))
        assert "outside_development_boundary" in res2.skipped_rules


class TestViolationKinds:
    @pytest.mark.parametrize(
        "text,kind,lead",
        [
            ("乱堆乱放", "random_dumping", "agriculture_rural"),
            ("机动车维修经营者承修报废机动车", "repair_shop_scrapped_vehicle", "transport"),
            ("新能源汽车废旧动力蓄电池违规贮存", "ev_battery_dismantling", "commerce"),
            ("无地面硬化", "no_pollution_controls", "ecology_environment"),
            ("超出核准经营范围", "beyond_licensed_scope", "market_regulation"),
            ("资质企业分支机构拆解", "branch_dismantling", "commerce"),
            ("伪造《回收证明》", "forged_recycling_certificate", "public_security"),
        ],
    )
    def test_seed_kinds_have_leads(self, deps, text, kind, lead):
        assert deps.kind_for(text) == kind
        spec = deps.violation_kinds[kind]
        assert deps.check(spec["lead"], source="", key="")[0] == lead
        assert spec["basis"]


def test_seed_kinds_are_incident_kinds_with_the_same_leads(deps):
    from gis.catalog import normalise_label, value_lookup
    from gis.schema import INCIDENT_KIND_LABEL_ZH, IncidentKind

    hot = yaml.safe_load((LAYERS_DIR / "hotspots.yaml").read_text(encoding="utf-8"))["kinds"]
    look = value_lookup("incident_kind")
    for kind, spec in deps.violation_kinds.items():
        assert IncidentKind(kind) in INCIDENT_KIND_LABEL_ZH
        assert look[normalise_label(spec["label_zh"])] == kind  # an incident table may write the label
        assert deps.check(hot[kind]["lead"], source="", key="") == deps.check(spec["lead"], source="", key="")
    assert look[normalise_label("乱堆乱放")] == "random_dumping"


def test_ledger_columns_get_the_district_prefix(deps):
    import pandas as pd

    from gis.departments import prefix_columns

    t = pd.DataFrame({"牵头单位": ["公安局", "生态环境局、商务委"], "配合单位": ["城管局、井口街道（属地）", None]})
    county = prefix_columns(t, "石柱土家族自治县", departments=deps)
    assert county["牵头单位"].tolist() == ["县公安局", "县生态环境局、县商务委"]
    assert county["配合单位"].tolist()[0] == "县城市管理局、井口街道（属地）"
    assert prefix_columns(t, "沙坪坝区", departments=deps)["牵头单位"].tolist()[0] == "区公安分局"
