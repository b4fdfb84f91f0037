"""Land-use classification schemes (gis.landuse): the published code lists, the
crosswalk to canonical classes, detection and the buffers they drive."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely

from gis._errors import CatalogError
from gis.compliance import RuleTable, check_sites, locate
from gis.landuse import SCHEMES, LandUseScheme, code_report, detect_scheme, normalise_codes, scheme_for_layer

CRS = "EPSG:32648"


@pytest.fixture(scope="module")
def schemes() -> dict[str, LandUseScheme]:
    return {n: LandUseScheme.load(n) for n in SCHEMES}


class TestPublishedCodeLists:
    def test_gbt21010_public_service_second_level(self, schemes):
        g = schemes["gbt21010_2017"]
        # GB/T 21010-2017 table 1, class 08
        names = {c: g.classes[c]["name_zh"] for c in ["0801", "0802", "0803", "0804", "0805", "0806", "0807", "0808", "0809", "0810"]}
        assert names == {
            "0801": "机关团体用地", "0802": "新闻出版用地", "0803": "教育用地", "0804": "科研用地",
            "0805": "医疗卫生用地", "0806": "社会福利用地", "0807": "文化设施用地", "0808": "体育用地",
            "0809": "公用设施用地", "0810": "公园与绿地",
        }

    def test_gbt21010_is_complete_to_second_level(self, schemes):
        codes = schemes["gbt21010_2017"].classes
        first = [c for c in codes if len(c) == 2]
        assert first == [f"{i:02d}" for i in range(1, 13)]
        # GB/T 21010-2017 has 73 second-level classes
        assert sum(len(c) == 4 for c in codes) == 73

    @pytest.mark.parametrize(
        "code,gbt,yy",
        [
            ("0803", "education", "culture"),
            ("0804", "research", "education"),
            ("0805", "medical", "sports"),
            ("0806", "social_welfare", "medical"),
            ("0808", "sports", "public_administration"),  # not a 用地用海 second-level code: its parent 08
            ("0809", "utilities", "public_administration"),
            ("1101", "water_surface", "storage_logistics"),
        ],
    )
    def test_same_code_differs_across_schemes(self, schemes, code, gbt, yy):
        assert schemes["gbt21010_2017"].canonical_of(code) == gbt
        assert schemes["yongdi_yonghai_2023"].canonical_of(code) == yy

    def test_receptors_per_scheme(self, schemes):
        g, y, s = schemes["gbt21010_2017"], schemes["yongdi_yonghai_2023"], schemes["sandiao"]
        assert g.receptor_codes("school", ["0803", "0804", "0808"]) == ["0803"]
        assert g.receptor_codes("hospital", ["0805", "0809"]) == ["0805"]
        assert y.receptor_codes("school", ["0803", "0804", "080403"]) == ["0804", "080403"]
        assert y.receptor_codes("hospital", ["0805", "0806"]) == ["0806"]
        # 三调: 08H2 科教文卫 is school and hospital; 08H2A 高教 is school only
        assert s.receptor_codes("school", ["08H1", "08H2", "08H2A"]) == ["08H2", "08H2A"]
        assert s.receptor_codes("hospital", ["08H1", "08H2", "08H2A"]) == ["08H2"]

    def test_sanitation_land_admits_transfer_station(self, schemes):
        y, g = schemes["yongdi_yonghai_2023"], schemes["gbt21010_2017"]
        assert y.classes["1309"]["name_zh"] == "环卫用地"
        assert "1309|transfer_station" in y.allowed_pairs()
        assert "0809|transfer_station" in g.allowed_pairs()  # 公用设施 (环卫) in GB/T
        assert "0803|transfer_station" not in g.allowed_pairs()

    def test_sandiao_working_codes(self, schemes):
        s = schemes["sandiao"]
        assert {c: s.classes[c]["name_zh"] for c in ["05H1", "08H1", "08H2", "08H2A", "0810A", "0508"]} == {
            "05H1": "商业服务业设施用地", "08H1": "机关团体新闻出版用地", "08H2": "科教文卫用地",
            "08H2A": "高教用地", "0810A": "广场用地", "0508": "物流仓储用地",
        }
        assert s.canonical_of("0810A") == "plaza"
        assert s.resolve("08H2A") == "08H2A" and s.resolve("08H9") == "08"

    def test_every_scheme_names_its_source(self, schemes):
        assert "GB/T 21010-2017" in schemes["gbt21010_2017"].source
        assert "第三次全国国土调查" in schemes["sandiao"].source
        assert "用地用海分类" in schemes["yongdi_yonghai_2023"].source


class TestDetection:
    def test_unique_scheme_detected(self):
        assert detect_scheme(["08H2", "0101", "0701"]).scheme.name == "sandiao"
        assert detect_scheme(["1309", "0804", "1101"]).scheme.name == "yongdi_yonghai_2023"
        assert detect_scheme(["0803", "0808", "0604"]).scheme.name == "gbt21010_2017"

    def test_ambiguous_layer_names_conflicting_codes(self):
        with pytest.raises(CatalogError) as e:
            detect_scheme(["0101", "0804", "0701"], source="p.yaml")
        msg = str(e.value)
        assert "\n" not in msg and e.value.key == "layers.landuse.scheme"
        assert "0804" in msg and "科研用地" in msg and "教育用地" in msg
        assert "0101" not in msg.split("codes read differently")[1]  # 水田 everywhere

    def test_agreeing_schemes_are_not_ambiguous(self):
        # 0101/0701 mean the same in every scheme that lists them
        d = detect_scheme(["0101", "0701"])
        assert len(d.candidates) > 1 and d.scheme.canonical_of("0701") == "residential"

    def test_declared_scheme_wins_and_reports_unknown_codes(self):
        codes = ["0803"] * 3 + ["0899"] * 2 + ["X1"] + [None]
        d = scheme_for_layer({"scheme": "gbt21010_2017"}, codes)
        assert d.declared
        unk = d.unknown.set_index("code")["count"].to_dict()
        assert unk == {"0899": 2, "X1": 1}
        assert "0899×2" in d.message() and "X1×1" in d.message()

    def test_unknown_declared_scheme(self):
        with pytest.raises(CatalogError, match="unknown land-use scheme 'gbt'"):
            scheme_for_layer({"scheme": "gbt"}, ["01"])

    def test_numeric_codes_regain_leading_zero(self):
        assert normalise_codes([801, 1.0, "08h2a", None]).tolist() == ["0801", "01", "08H2A", None]

    def test_code_report_counts(self, schemes):
        rep = code_report(["0701", "0701", "0808"], schemes["yongdi_yonghai_2023"])
        assert rep.set_index("code")["count"].to_dict() == {"0701": 2, "0808": 1}
        assert rep.set_index("code")["in_scheme"].to_dict() == {"0701": True, "0808": False}
        assert rep.set_index("code").loc["0808", "resolved_as"] == "08"


def _sq(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(x0, y0, x1, y1)


class TestBuffersFromSchemes:
    """A 三调-coded layer drives the school and hospital buffers (compliance.locate)."""

    @pytest.fixture()
    def sandiao_layer(self) -> gpd.GeoDataFrame:
        return gpd.GeoDataFrame(
            {"landuse_code": ["08H2A", "08H2", "0601", "0809"]},
            geometry=[_sq(0, 0, 100, 100), _sq(1000, 0, 1100, 100), _sq(100, 0, 1000, 100), _sq(1100, 0, 1300, 100)],
            crs=CRS,
        )

    def test_distances_to_receptors(self, sandiao_layer):
        pts = gpd.GeoSeries([shapely.Point(250, 50), shapely.Point(900, 50), shapely.Point(1250, 50)], crs=CRS)
        loc = locate(pts, landuse=sandiao_layer, classes=LandUseScheme.load("sandiao"))
        # 08H2A (x ≤ 100) is a school; 08H2 (1000..1100) school and hospital
        assert loc["dist_school_m"].round(6).tolist() == [150.0, 100.0, 150.0]
        assert loc["dist_hospital_m"].round(6).tolist() == [750.0, 100.0, 150.0]
        assert loc["landuse_name"].tolist() == ["工业用地", "工业用地", "公用设施用地"]

    def test_school_and_hospital_rules_fire(self, sandiao_layer):
        sites = gpd.GeoDataFrame(
            {"site_id": ["A", "B", "C"], "tier": ["transfer_station"] * 3, "status": ["active"] * 3},
            geometry=[shapely.Point(250, 50), shapely.Point(900, 50), shapely.Point(1250, 50)],
            crs=CRS,
        )
        rules = RuleTable.default()
        rules.classes = LandUseScheme.load("sandiao")
        res = check_sites(sites, townships=None, landuse=sandiao_layer, rules=rules)
        f = res.violations
        hit = {(r.site_id, r.rule_id) for r in f.itertuples()} if len(f) else set()
        assert ("B", "school_buffer") in hit and ("B", "hospital_buffer") in hit
        assert ("A", "school_buffer") in hit and ("A", "hospital_buffer") not in hit
        assert ("C", "school_buffer") in hit  # 150 m from 08H2
        # C stands on 公用设施 (环卫) land: allowed for a transfer station
        assert ("C", "landuse_not_allowed") not in hit
        assert ("A", "landuse_not_allowed") not in hit
