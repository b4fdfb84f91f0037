"""Site compliance, rule table and hierarchy linkage (gis.compliance)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import Point, box

from gis._errors import CatalogError
from gis.compliance import (
    DEFAULT_RULES_PATH,
    LandUseClasses,
    RuleTable,
    check_sites,
    link_hierarchy,
    locate,
    sample_raster_codes,
)

CRS = "EPSG:4544"
X0, Y0 = 500_000.0, 3_300_000.0


def _b(x0, y0, x1, y1):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _p(x, y):
    return Point(X0 + x, Y0 + y)


@pytest.fixture()
def layers():
    """A 2 km × 1 km synthetic district: two townships, zones along the top, land use below."""
    townships = gpd.GeoDataFrame(
        {"township": ["甲街道", "乙镇"]}, geometry=[_b(0, 0, 1000, 1000), _b(1000, 0, 2000, 1000)], crs=CRS
    )
    zones = gpd.GeoDataFrame(
        {
            "zone_type": ["four_mountains", "four_mountains", "four_mountains", "four_mountains",
                          "water_source", "ecological_red_line", "basic_farmland"],
            "level": ["no_build", "key_control", "general_control", "general_control", None, None, None],
            "name": ["缙云山", "缙云山", "缙云山", "中梁山", "水源地", "红线", "基本农田"],
        },
        geometry=[
            _b(0, 800, 200, 1000), _b(200, 800, 400, 1000), _b(400, 800, 600, 1000),
            _b(0, 700, 300, 1000),  # overlaps no_build and key_control: strictest wins
            _b(1800, 800, 2000, 1000), _b(1600, 800, 1800, 1000), _b(1500, 0, 2000, 300),
        ],
        crs=CRS,
    )
    landuse = gpd.GeoDataFrame(
        {"landuse_code": ["0601", "0701", "0803", "05", "0103", "06", "0805", "9999"]},
        geometry=[
            _b(0, 0, 1000, 400), _b(0, 400, 1000, 1000), _b(1000, 0, 1100, 100), _b(1100, 0, 1500, 800),
            _b(1500, 0, 2000, 800), _b(1000, 100, 1100, 400), _b(1900, 900, 2000, 1000), _b(1000, 900, 1050, 950),
        ],
        crs=CRS,
    )
    return {"townships": townships, "zones": zones, "landuse": landuse}


def _sites(rows):
    base = {"status": "active", "business_licence": True, "dismantling_qualification": True,
            "police_filing": True, "capacity_t_per_day": np.nan, "floor_area_m2": np.nan,
            "business_scope": "", "address": "", "township": None}
    df = pd.DataFrame([{**base, **r} for r in rows])
    for col in ("business_licence", "dismantling_qualification", "police_filing"):
        df[col] = df[col].astype("object")
    geom = [_p(x, y) for x, y in zip(df.pop("x"), df.pop("y"))]
    df["name"] = df["site_id"]
    return gpd.GeoDataFrame(df, geometry=geom, crs=CRS)


def _by_site(result):
    return result.violations.groupby("site_id")["rule_id"].agg(set).to_dict()


# ------------------------------------------------------------------- rule table
class TestRuleTable:
    def test_default_table_validates(self):
        t = RuleTable.default()
        ids = [r.id for r in t.rules]
        assert len(ids) == len(set(ids)) >= 15
        assert all(r.lead_department for r in t.rules)

    def _section(self):
        return yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))

    def test_unknown_condition_type_names_the_key(self):
        s = self._section()
        s["rules"][3]["condition"]["type"] = "inside_volcano"
        with pytest.raises(CatalogError) as e:
            RuleTable.from_section(s, source="project.yaml")
        assert e.value.key == "compliance.rules[3].condition.type"
        assert e.value.path == "project.yaml"

    @pytest.mark.parametrize(
        "mutate, key",
        [
            (lambda r: r.pop("lead_department"), "compliance.rules[0].lead_department"),
            (lambda r: r["condition"].pop("zone_type"), "compliance.rules[0].condition.zone_type"),
            (lambda r: r.update(verdict="maybe"), "compliance.rules[0].verdict"),
            (lambda r: r["applies_to"].update(tiers=["castle"]), "compliance.rules[0].applies_to.tiers"),
            (lambda r: r["condition"].update(levels=["sort_of"]), "compliance.rules[0].condition.levels"),
        ],
    )
    def test_missing_or_bad_field(self, mutate, key):
        s = self._section()
        mutate(s["rules"][0])
        with pytest.raises(CatalogError) as e:
            RuleTable.from_section(s)
        assert e.value.key == key

    def test_override_by_id_disable_and_add(self):
        s = self._section()
        s["rule_overrides"] = {
            "school_buffer": {"condition": {"distance_m": 350}, "deadline_days": 10},
            "no_police_filing": {"enabled": False},
            "big_site_review": {
                "title_zh": "大型站点复核", "problem_type": "设施复核", "verdict": "needs_review",
                "applies_to": {"tiers": ["transfer_station"]},
                "condition": {"type": "below_norm", "field": "capacity_t_per_day", "min": 5},
                "legal_source": "SB/T 10719-2012", "lead_department": "商务委",
            },
        }
        t = RuleTable.from_section(s)
        sb = t.get("school_buffer")
        assert sb.condition["distance_m"] == 350 and sb.condition["receptor"] == "school"
        assert sb.deadline_days == 10
        assert not t.get("no_police_filing").enabled
        assert "no_police_filing" not in [r.id for r in t.enabled]
        assert t.get("big_site_review").condition_type == "below_norm"

    def test_override_of_unknown_id_without_condition(self):
        s = self._section()
        s["rule_overrides"] = {"no_such_rule": {"enabled": False}}
        with pytest.raises(CatalogError) as e:
            RuleTable.from_section(s)
        assert e.value.key == "compliance.rule_overrides.no_such_rule"

    def test_bad_override_field_names_override_key(self):
        s = self._section()
        s["rule_overrides"] = {"school_buffer": {"condition": {"type": "nope"}}}
        with pytest.raises(CatalogError) as e:
            RuleTable.from_section(s)
        assert e.value.key == "compliance.rule_overrides.school_buffer.condition.type"


class TestProjectOverrides:
    def test_project_yaml_compliance_block(self, tmp_path):
        from gis.catalog import load_project
        from gis.testing import make_tiny_project

        path = make_tiny_project(tmp_path / "proj")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["compliance"] = {
            "rules": [{"id": "no_police_filing", "enabled": False},
                      {"id": "school_buffer", "condition": {"distance_m": 400}}],
            "rule_overrides": {"landuse_unknown": {"verdict": "prohibited"}},
            "linkage": {"point_max_distance_m": 1500},
        }
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        project = load_project(path)
        t = RuleTable.from_section(project.section("compliance"), source=project.path)
        assert not t.get("no_police_filing").enabled
        assert t.get("school_buffer").condition == {"type": "near_receptor", "receptor": "school", "distance_m": 400}
        assert t.get("landuse_unknown").verdict == "prohibited"
        assert t.linkage["point_max_distance_m"] == 1500 and t.linkage["station_max_distance_m"] == 60000
        assert len(t.rules) == len(RuleTable.default().rules)

    def test_bad_project_rule_names_project_key(self, tmp_path):
        from gis.catalog import load_project
        from gis.testing import make_tiny_project

        path = make_tiny_project(tmp_path / "proj")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["compliance"] = {"rules": [{"id": "school_buffer", "condition": {"type": "near_volcano"}}]}
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        project = load_project(path)
        with pytest.raises(CatalogError) as e:
            RuleTable.from_section(project.section("compliance"), source=project.path)
        assert e.value.key.startswith("compliance.rules[") and e.value.key.endswith("].condition.type")
        assert e.value.path == str(project.path)


class TestLandUseClasses:
    def test_second_level_inherits_first_level(self):
        c = LandUseClasses.load()
        t = c.table(pd.Series(["0702", "0602", "0699", "0105", "9999", None], dtype="object"))
        assert t["class_entry"].tolist() == ["0702", "0602", "06", "01", None, None]
        assert t["landuse_code"].tolist()[:4] == ["0702", "0602", "0699", "0105"]
        assert t["landuse_name"].tolist()[2] == "工矿仓储用地"  # inherited name
        assert t["receptor"].tolist()[0] == "residential"


# --------------------------------------------------------------------- location
class TestLocate:
    def test_zones_landuse_township_receptors(self, layers):
        pts = gpd.GeoSeries([_p(100, 900), _p(250, 900), _p(500, 900), _p(1200, 50), _p(1700, 900)], crs=CRS)
        loc = locate(pts, **layers, classes=LandUseClasses.load())
        assert loc["four_mountains_level"].tolist() == ["no_build", "key_control", "general_control", None, None]
        assert loc["zones"].iloc[0] == "four_mountains:general_control;four_mountains:no_build"
        assert loc["zone_names"].iloc[0] == "中梁山;缙云山" or set(loc["zone_names"].iloc[0].split(";")) == {"中梁山", "缙云山"}
        assert loc["in_ecological_red_line"].tolist() == [False, False, False, False, True]
        assert loc["township"].tolist() == ["甲街道", "甲街道", "甲街道", "乙镇", "乙镇"]
        assert loc["landuse_code"].tolist()[:4] == ["0701", "0701", "0701", "05"]
        # site at x=1200 is 100 m east of the school parcel (x ≤ 1100)
        assert loc["dist_school_m"].iloc[3] == pytest.approx(100.0)
        # water-source zone starts at x=1800: 100 m
        assert loc["dist_water_source_m"].iloc[4] == pytest.approx(100.0)
        # inside residential land: distance 0
        assert loc["dist_residential_m"].iloc[0] == 0.0

    def test_point_on_zone_boundary_counts_as_inside(self, layers):
        # exactly on the east edge of the no-build zone (x=200) and on the shared edge
        # with key_control: inside both, strictest level wins
        pts = gpd.GeoSeries([_p(200, 900), _p(0, 850), _p(600, 900), _p(600.001, 900)], crs=CRS)
        loc = locate(pts, **layers, classes=LandUseClasses.load())
        assert loc["four_mountains_level"].tolist() == ["no_build", "no_build", "general_control", None]

    def test_vector_gap_and_unknown_code_are_null(self, layers):
        pts = gpd.GeoSeries([_p(1050, 500), _p(1025, 925)], crs=CRS)  # gap; code 9999
        loc = locate(pts, **layers, classes=LandUseClasses.load())
        assert loc["landuse_code"].isna().all()
        assert loc["landuse_raw"].tolist() == [None, "9999"]

    def test_outside_every_layer(self, layers):
        pts = gpd.GeoSeries([_p(5000, 5000)], crs=CRS)
        loc = locate(pts, **layers, classes=LandUseClasses.load(), receptor_max_distance_m=500)
        assert loc["township"].iloc[0] is None
        assert loc["landuse_code"].iloc[0] is None
        assert loc["zones"].iloc[0] == ""
        assert np.isnan(loc["dist_school_m"].iloc[0])


# ----------------------------------------------------------------------- raster
@pytest.fixture()
def landuse_tif(tmp_path, layers):
    """The vector land use rasterised at 10 m, nodata 0 in the gaps."""
    from affine import Affine
    from rasterio.features import rasterize

    from gis.export import write_geotiff

    lu = layers["landuse"]
    transform = Affine(10.0, 0.0, X0, 0.0, -10.0, Y0 + 1000)
    arr = rasterize(
        zip(lu.geometry, lu["landuse_code"].astype(int)), out_shape=(100, 200), transform=transform,
        fill=0, dtype="int32",
    )
    return write_geotiff(arr, tmp_path / "landuse.tif", transform=transform, crs=CRS, nodata=0)


class TestRaster:
    def test_raster_sampling_matches_vector(self, layers, landuse_tif):
        rng = np.random.default_rng(3)
        xy = rng.uniform([5, 5], [1995, 995], size=(300, 2))
        # keep away from parcel edges (cell-centre rasterisation differs there)
        edges_x = np.array([0, 1000, 1100, 1500, 1050, 2000, 1900])
        edges_y = np.array([0, 100, 300, 400, 800, 900, 950, 1000])
        ok = (np.abs(xy[:, 0, None] - edges_x).min(1) > 15) & (np.abs(xy[:, 1, None] - edges_y).min(1) > 15)
        pts = gpd.GeoSeries([_p(x, y) for x, y in xy[ok]], crs=CRS)
        c = LandUseClasses.load()
        vec = locate(pts, landuse=layers["landuse"], classes=c)
        ras = locate(pts, landuse_raster=landuse_tif, classes=c)
        assert (vec["landuse_code"].fillna("-") == ras["landuse_code"].fillna("-")).all()
        assert ras.loc[ras["landuse_code"].notna(), "landuse_source"].eq("raster").all()
        # receptor distances from polygonised raster cells agree with the vector
        np.testing.assert_allclose(vec["dist_school_m"], ras["dist_school_m"], atol=1e-6)

    def test_nodata_cell_and_outside_raster_are_null(self, landuse_tif):
        pts = gpd.GeoSeries([_p(1050, 500), _p(-50, 500), _p(500, 200)], crs=CRS)
        codes = sample_raster_codes(landuse_tif, pts)
        assert codes.tolist() == [None, None, "0601"]

    def test_raster_reprojected_points(self, landuse_tif):
        pts = gpd.GeoSeries([_p(500, 200)], crs=CRS).to_crs("EPSG:4326")
        assert sample_raster_codes(landuse_tif, pts).tolist() == ["0601"]

    def test_nodata_site_breaks_landuse_unknown_like_a_gap(self, layers, landuse_tif):
        sites = _sites([
            dict(site_id="gap", tier="collection_point", x=1050, y=500),  # nodata cell
            dict(site_id="ok", tier="collection_point", x=500, y=500),
            dict(site_id="ts", tier="transfer_station", x=300, y=200, floor_area_m2=600),
            dict(site_id="sc", tier="sorting_centre", x=100, y=100, floor_area_m2=6000),
        ])
        r = check_sites(sites, townships=layers["townships"], zones=layers["zones"], landuse_raster=landuse_tif)
        got = _by_site(r)
        assert got == {"gap": {"landuse_unknown"}}
        s = r.sites.set_index("site_id")
        assert pd.isna(s.loc["gap", "landuse_code"]) and s.loc["ok", "landuse_code"] == "0701"
        assert s.loc["ok", "landuse_source"] == "raster"
        assert "网点所在位置无地类数据" in r.violations.set_index("site_id").loc["gap", "description"]

    def test_value_to_code_table(self, landuse_tif):
        pts = gpd.GeoSeries([_p(500, 200)], crs=CRS)
        assert sample_raster_codes(landuse_tif, pts, value_to_code={601: "0604"}).tolist() == ["0604"]


# ------------------------------------------------------------------------ rules
class TestCheckSites:
    def test_each_rule_fires_where_planted(self, layers):
        sites = _sites([
            dict(site_id="nb", tier="collection_point", x=100, y=900),
            dict(site_id="kc_ts", tier="transfer_station", x=250, y=900, floor_area_m2=800),
            dict(site_id="kc_pt", tier="collection_point", x=350, y=900),
            dict(site_id="gc", tier="collection_point", x=500, y=900),
            dict(site_id="erl", tier="collection_point", x=1700, y=900),
            dict(site_id="farm", tier="collection_point", x=1700, y=100),
            dict(site_id="ws", tier="drop_off_point", x=1850, y=850),
            dict(site_id="lu", tier="sorting_centre", x=500, y=600, floor_area_m2=5000),
            dict(site_id="school", tier="transfer_station", x=1150, y=50, floor_area_m2=600),
            dict(site_id="lic", tier="collection_point", x=500, y=500, business_licence=False),
            dict(site_id="qual", tier="collection_point", x=520, y=500, business_scope="报废机动车回收拆解",
                 dismantling_qualification=False),
            dict(site_id="pol", tier="collection_point", x=540, y=500, police_filing=False),
            dict(site_id="area", tier="transfer_station", x=300, y=200, floor_area_m2=120),
            dict(site_id="gap", tier="collection_point", x=1050, y=500),
            dict(site_id="out", tier="collection_point", x=5000, y=5000),
            dict(site_id="clean", tier="collection_point", x=560, y=520, floor_area_m2=20),
        ])
        r = check_sites(sites, **layers)
        got = _by_site(r)
        assert "four_mountains_no_build" in got["nb"]
        assert "four_mountains_key_control" in got["kc_ts"]
        assert "four_mountains_key_control_point" in got["kc_pt"]
        assert got["gc"] == {"four_mountains_general_control"}
        assert "ecological_red_line" in got["erl"]
        assert "basic_farmland" in got["farm"] and "landuse_not_allowed" in got["farm"]
        assert "water_source_zone" in got["ws"]
        assert got["lu"] == {"landuse_not_allowed", "residential_buffer"}  # sorting centre on residential land
        assert "school_buffer" in got["school"]
        assert got["lic"] == {"no_business_licence"}
        assert got["qual"] == {"no_dismantling_qualification"}
        assert got["pol"] == {"no_police_filing"}
        assert "floor_area_transfer_station" in got["area"]
        assert got["gap"] == {"landuse_unknown"}
        assert "outside_townships" in got["out"] and "landuse_unknown" in got["out"]
        assert "clean" not in got
        v = r.sites.set_index("site_id")["verdict"]
        assert v["clean"] == "ok" and v["nb"] == "prohibited" and v["gap"] == "needs_review"
        assert pd.isna(r.sites.set_index("site_id").loc["out", "township"])
        assert r.by_rule.sum() == len(r.violations)
        row = r.violations.set_index(["site_id", "rule_id"]).loc[("school", "school_buffer")]
        assert "距最近学校50米" in row["description"]
        assert row["lead_department"] == "生态环境局" and row["legal_source"].startswith("GB 22128-2019")
        assert r.violations["township"].loc[r.violations["site_id"] == "nb"].iloc[0] == "甲街道"

    def test_missing_layers_skip_their_rules(self, layers):
        sites = _sites([dict(site_id="a", tier="collection_point", x=100, y=900)])
        r = check_sites(sites, townships=layers["townships"])
        assert "four_mountains_no_build" in r.skipped_rules
        assert "landuse_unknown" in r.skipped_rules  # no land use at all ≠ a gap
        # only the linkage finding remains: no transfer station serves the point
        assert r.violations["rule_id"].tolist() == ["unlinked_point"]

    def test_unknown_attribute_policy(self, layers):
        sites = _sites([dict(site_id="u", tier="collection_point", x=500, y=500, business_licence=None),
                        dict(site_id="ts", tier="transfer_station", x=300, y=200, floor_area_m2=600),
                        dict(site_id="sc", tier="sorting_centre", x=100, y=100, floor_area_m2=6000)])
        assert len(check_sites(sites, **layers).violations) == 0
        s = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
        s["rule_overrides"] = {"no_business_licence": {"condition": {"unknown": "missing"}}}
        r = check_sites(sites, **layers, rules=RuleTable.from_section(s))
        assert r.violations["rule_id"].tolist() == ["no_business_licence"]
        assert "未登记营业执照" in r.violations["description"].iloc[0]

    def test_incidents_are_located(self, layers):
        sites = _sites([dict(site_id="a", tier="collection_point", x=500, y=500)])
        inc = gpd.GeoDataFrame({"incident_id": ["i1", "i2"], "kind": ["illegal_elv_dismantling"] * 2},
                               geometry=[_p(100, 900), _p(1700, 100)], crs=CRS)
        r = check_sites(sites, **layers, incidents=inc)
        assert r.incidents["four_mountains_level"].tolist() == ["no_build", None]
        assert r.incidents["landuse_code"].tolist() == ["0701", "0103"]
        assert r.summary()["incidents_in_four_mountains"] == 1


# ---------------------------------------------------------------------- linkage
def _net_sites():
    return _sites([
        dict(site_id="sc", tier="sorting_centre", x=100, y=100, capacity_t_per_day=50),
        dict(site_id="ts1", tier="transfer_station", x=300, y=100, capacity_t_per_day=1.5),
        dict(site_id="ts2", tier="transfer_station", x=1500, y=100, capacity_t_per_day=10),
        dict(site_id="ts_closed", tier="transfer_station", x=1900, y=600, status="closed"),
        dict(site_id="p1", tier="collection_point", x=400, y=100),
        dict(site_id="p2", tier="collection_point", x=600, y=100),
        dict(site_id="p3", tier="drop_off_point", x=1400, y=100),
        dict(site_id="p_far", tier="collection_point", x=1900, y=650),
    ])


class TestLinkage:
    def test_euclidean_assignment_orphans_overload(self, layers):
        s = _net_sites()
        s["township"] = locate(s.geometry, townships=layers["townships"])["township"]
        params = {"point_max_distance_m": 300, "station_max_distance_m": 5000}
        lk = link_hierarchy(s, params=params, townships=layers["townships"])
        a = lk.assignments.set_index("site_id")
        assert a.loc["p1", "assigned_to"] == "ts1" and a.loc["p1", "link_distance_m"] == pytest.approx(100)
        assert a.loc["p2", "assigned_to"] == "ts1"
        assert a.loc["p3", "assigned_to"] == "ts2"
        assert pd.isna(a.loc["p_far", "assigned_to"])  # the nearby station is closed
        assert a.loc["ts2", "assigned_to"] == "sc"
        assert lk.orphans == ["p_far"]
        st = lk.stations.set_index("site_id")
        assert st.loc["ts1", "load_t_per_day"] == pytest.approx(2.0)  # two collection points × 1 t
        assert lk.overloaded == ["ts1"]
        assert st.loc["sc", "load_t_per_day"] == pytest.approx(2.2)
        assert lk.townships_without_transfer_station == []
        assert lk.has_working_sorting_centre

    def test_township_without_station_and_no_working_centre(self, layers):
        s = _net_sites()
        s = s[s["site_id"] != "ts2"]
        s["township"] = locate(s.geometry, townships=layers["townships"])["township"]
        verdicts = pd.Series(np.where(s["site_id"] == "sc", "prohibited", "ok"), index=s.index)
        lk = link_hierarchy(s, params={}, townships=layers["townships"], verdicts=verdicts)
        assert lk.townships_without_transfer_station == ["乙镇"]
        assert not lk.has_working_sorting_centre

    def test_network_distance_multi_source_dijkstra_matches_networkx(self, layers):
        # a road along y=100 with a detour: ts2 is nearer in a straight line to p3,
        # but the road to it goes round via y=700
        g = nx.MultiDiGraph(crs=CRS)
        coords = {1: (300, 100), 2: (600, 100), 3: (1000, 100), 4: (1000, 700), 5: (1500, 700),
                  6: (1500, 100), 7: (1400, 100), 8: (100, 100), 9: (400, 100), 10: (1900, 650)}
        for k, (x, y) in coords.items():
            g.add_node(k, x=X0 + x, y=Y0 + y)
        for a, b in [(8, 1), (1, 9), (9, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (3, 7)]:
            (xa, ya), (xb, yb) = coords[a], coords[b]
            length = float(np.hypot(xa - xb, ya - yb)) * (5.0 if (a, b) == (3, 7) else 1.0)
            g.add_edge(a, b, length=length)
            g.add_edge(b, a, length=length)
        s = _net_sites()
        params = {"point_max_distance_m": 3000, "station_max_distance_m": 5000}
        net = link_hierarchy(s, params=params, graph=g)
        euc = link_hierarchy(s, params=params)
        a_net = net.assignments.set_index("site_id")
        a_euc = euc.assignments.set_index("site_id")
        assert a_euc.loc["p3", "assigned_to"] == "ts2"
        ug = nx.Graph()
        for u, v, d in g.edges(data=True):
            ug.add_edge(u, v, length=d["length"])
        d_ts1 = nx.shortest_path_length(ug, 7, 1, weight="length")
        d_ts2 = nx.shortest_path_length(ug, 7, 6, weight="length")
        assert a_net.loc["p3", "link_method"] == "network"
        expect = "ts1" if d_ts1 < d_ts2 else "ts2"
        assert a_net.loc["p3", "assigned_to"] == expect
        assert a_net.loc["p3", "link_distance_m"] == pytest.approx(min(d_ts1, d_ts2))
        assert net.method == "network"
        # p_far lies on an isolated road node; sites snap onto the largest strongly
        # connected component instead (node 5 at (1500, 700)), then route to ts2
        assert a_net.loc["p_far", "assigned_to"] == "ts2"
        assert a_net.loc["p_far", "link_distance_m"] == pytest.approx(np.hypot(400, 50) + 600)
        # a point further from the graph than snap_max_distance_m falls back to euclidean
        s2 = pd.concat([s, _sites([dict(site_id="q", tier="collection_point", x=600, y=400)])], ignore_index=True)
        fb = link_hierarchy(s2, params={**params, "snap_max_distance_m": 100}, graph=g)
        q = fb.assignments.set_index("site_id").loc["q"]
        assert q["link_method"] == "euclidean" and q["assigned_to"] == "ts1"
        assert q["link_distance_m"] == pytest.approx(np.hypot(300, 300))
        # a station off the road graph is reached in a straight line when that is nearer
        # (p3 is 100 m by road from ts2; ts_off is 50 m away but 50 m off the graph)
        s3 = pd.concat([s, _sites([dict(site_id="ts_off", tier="transfer_station", x=1400, y=150)])],
                       ignore_index=True)
        off = link_hierarchy(s3, params={**params, "snap_max_distance_m": 30}, graph=g)
        p3 = off.assignments.set_index("site_id").loc["p3"]
        assert p3["assigned_to"] == "ts_off" and p3["link_method"] == "euclidean"
        assert p3["link_distance_m"] == pytest.approx(50.0)
        # a sorting centre off the graph still serves the routed stations
        s4 = s.copy()
        s4.loc[s4["site_id"] == "sc", "geometry"] = _p(100, 900)
        sc_off = link_hierarchy(s4, params={**params, "snap_max_distance_m": 100}, graph=g)
        assert sc_off.assignments.set_index("site_id").loc[["ts1", "ts2"], "assigned_to"].tolist() == ["sc", "sc"]

    def test_capacity_enforced(self, layers):
        s = _net_sites()
        params = {"point_max_distance_m": 3000, "capacity": "enforce"}
        lk = link_hierarchy(s, params=params)
        st = lk.stations.set_index("site_id")
        assert not lk.overloaded
        assert (st["load_t_per_day"] <= st["capacity_t_per_day"] + 1e-9).all()
        a = lk.assignments.set_index("site_id")
        # ts1 (1.5 t) keeps one of p1/p2; the other moves to ts2
        assert sorted(a.loc[["p1", "p2"], "assigned_to"]) == ["ts1", "ts2"]

    def test_unlinked_rule_and_summary(self, layers):
        s = _net_sites()
        s2 = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
        s2["linkage"]["point_max_distance_m"] = 300
        r = check_sites(s, **layers, rules=RuleTable.from_section(s2))
        assert "unlinked_point" in _by_site(r)["p_far"]
        summ = r.summary()
        assert summ["orphan_points"] == 1
        assert summ["has_working_sorting_centre"] in (True, False)
        assert set(summ["sites_in_four_mountains"]) == {"no_build", "key_control", "general_control"}
        assert r.sites.set_index("site_id").loc["p1", "assigned_to"] == "ts1"


# --------------------------------------------------------------------- pipeline
class TestPipelineStep:
    def test_gis_check_writes_sites_gpkg_ledgers_and_summary(self, tmp_path):
        import json

        import pyogrio

        from gis.cli import main
        from gis.testing import make_tiny_project

        project = make_tiny_project(tmp_path / "proj")
        out = tmp_path / "out"
        assert main(["check", "--project", str(project), "--out", str(out), "--quiet"]) == 0
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["steps_run"] == ["load", "compliance", "ledgers"]
        for key in ("violations_total", "violations_by_rule", "sites_in_four_mountains", "orphan_points",
                    "townships_without_transfer_station", "has_working_sorting_centre"):
            assert key in summary
        assert summary["violations_total"] == sum(summary["violations_by_rule"].values())
        assert summary["problems_total"] == summary["violations_total"]
        layers = set(pyogrio.list_layers(out / "sites.gpkg")[:, 0])
        assert {"sites", "violations", "linkage"} <= layers
        sites = gpd.read_file(out / "sites.gpkg", layer="sites")
        assert {"landuse_code", "four_mountains_level", "verdict", "rules_broken", "assigned_to"} <= set(sites.columns)
        viol = gpd.read_file(out / "sites.gpkg", layer="violations")
        assert len(viol) == summary["violations_total"]
        # the tiny project's zone band holds S003 (west township)
        assert "four_mountains_no_build" in sites.set_index("site_id").loc["S003", "rules_broken"]
        for name in ("problem_ledger.xlsx", "summary_table.xlsx", "survey_form.xlsx"):
            assert (out / name).exists()


# --------------------------------------------------------------- sample district
def _sample_project(tmp_path_factory) -> Path:
    """The bundled sample district, or a freshly generated small one."""
    from gis import settings

    bundled = settings.SAMPLE_PROJECT_DIR
    if (bundled / "project.yaml").exists() and (bundled / "truth" / "sites_truth.csv").exists():
        return bundled
    from gis.sample import generate

    out = tmp_path_factory.mktemp("sample_district")
    generate(out, seed=42, scale="small")
    return out


@pytest.fixture(scope="module")
def sample_check(tmp_path_factory):
    from gis.district import load_district
    from gis.compliance import check_district

    root = _sample_project(tmp_path_factory)
    d = load_district(root)
    result = check_district(d)
    truth = pd.read_csv(root / "truth" / "sites_truth.csv", encoding="utf-8-sig")
    truth = truth[truth["site_id"].isin(result.sites["site_id"])].set_index("site_id")
    truth["planted"] = truth["planted"].fillna("").astype(str)
    return d, result, truth


def _expected(rule, truth: pd.DataFrame, sites: pd.DataFrame) -> set[str]:
    """Sites that must break ``rule``, from the rule-independent planted situations."""
    s = sites.set_index("site_id").loc[truth.index]
    tier = truth["tier"]
    applies = tier.isin(rule.tiers)
    if rule.scope_keywords:
        kw = s["business_scope"].astype(object).fillna("").str.contains("|".join(rule.scope_keywords))
        applies = (applies | kw) if rule.match == "any" else (applies & kw)
    if rule.statuses:
        applies &= truth["status"].isin(rule.statuses)
    codes = truth["planted"].str.split(";")
    c = rule.condition
    t = rule.condition_type

    def has(pred) -> pd.Series:
        return codes.map(lambda cs: any(pred(x) for x in cs))

    if t == "in_zone" and c["zone_type"] == "four_mountains":
        hit = has(lambda x: x.startswith("four_mountains:") and x.split(":")[1] in c["levels"])
    elif t == "in_zone":
        hit = has(lambda x: x == c["zone_type"])
    elif t == "landuse_not_allowed":
        hit = has(lambda x: x.startswith("landuse_not_allowed:"))
    elif t == "near_receptor":
        hit = has(lambda x: x.startswith(f"near_receptor:{c['receptor']}:")
                  and float(x.split(":")[2]) <= float(c["distance_m"]))
    elif t == "missing_attribute":
        code = {"business_licence": "no_business_licence", "dismantling_qualification": "no_dismantling_qualification",
                "police_filing": "no_police_filing"}[c["field"]]
        hit = has(lambda x: x == code)
    elif t == "below_norm" and c["field"] == "floor_area_m2":
        hit = has(lambda x: x == "floor_area_below_norm")
    elif t == "unlinked" and "collection_point" in rule.tiers:
        hit = has(lambda x: x == "far_from_transfer_station")
    else:  # landuse_unknown, outside_townships, unlinked stations: nothing planted
        hit = pd.Series(False, index=truth.index)
    return set(truth.index[(hit & applies).to_numpy()])


_SAMPLE_RULES = [r.id for r in RuleTable.default().enabled]


class TestSampleDistrict:
    """Every planted violation is found, with no false verdicts on clean sites."""

    @pytest.mark.parametrize("rule_id", _SAMPLE_RULES)
    def test_rule_matches_planted_situations(self, sample_check, rule_id):
        d, result, truth = sample_check
        rule = result.rules.get(rule_id)
        expected = _expected(rule, truth, result.sites)
        found = set(result.violations.loc[result.violations["rule_id"] == rule_id, "site_id"])
        assert expected <= found, f"{rule_id}: planted but not found {sorted(expected - found)}"
        if rule_id in ("unlinked_point", "unlinked_station"):
            # linkage also orphans planted sites in remote zones; never a clean site
            assert not (found & set(truth.index[truth["clean"]]))
        else:
            assert found == expected, f"{rule_id}: found without a planted situation {sorted(found - expected)}"

    def test_planted_rules_are_exercised(self, sample_check):
        d, result, truth = sample_check
        fired = set(result.violations["rule_id"])
        for rid in ("four_mountains_no_build", "four_mountains_key_control_point", "four_mountains_general_control",
                    "ecological_red_line", "basic_farmland", "water_source_zone", "landuse_not_allowed",
                    "school_buffer", "no_business_licence", "no_dismantling_qualification", "no_police_filing",
                    "unlinked_point"):
            assert rid in fired

    def test_clean_sites_have_no_verdict(self, sample_check):
        d, result, truth = sample_check
        clean = truth.index[truth["clean"]]
        s = result.sites.set_index("site_id").loc[clean]
        assert len(clean) > 100
        assert (s["verdict"] == "ok").all(), s.loc[s["verdict"] != "ok", "rules_broken"].to_dict()
        assert (s["n_violations"] == 0).all()

    def test_linkage_on_sample(self, sample_check):
        d, result, truth = sample_check
        lk = result.linkage
        towns = pd.read_csv(d.project.root / "truth" / "townships_truth.csv", encoding="utf-8-sig")
        assert set(lk.townships_without_transfer_station) == set(towns.loc[~towns["has_transfer_station"], "township"])
        assert lk.has_working_sorting_centre
        if d.roads_path is not None:
            assert lk.method == "network"
        far = truth.index[truth["planted"].str.contains("far_from_transfer_station")
                          & truth["status"].isin(["active", "planned"])]
        assert set(far) <= set(lk.orphans)
        summ = result.summary()
        assert summ["sites_in_four_mountains"]["no_build"] == truth["planted"].str.contains("four_mountains:no_build").sum()

    def test_raster_land_use_gives_the_same_findings(self, sample_check):
        from gis.compliance import check_district
        from gis.district import load_district

        d, result, truth = sample_check
        raster_yaml = d.project.root / "project_raster.yaml"
        if not raster_yaml.exists():
            pytest.skip("sample has no raster variant")
        dr = load_district(raster_yaml)
        assert dr.landuse is None and dr.landuse_raster is not None
        rr = check_district(dr)
        assert rr.sites["landuse_source"].dropna().eq("raster").all()
        key = ["site_id", "rule_id"]
        a = result.violations[key].sort_values(key).reset_index(drop=True)
        b = rr.violations[key].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_linkage_nearest_station_by_kd_tree_equals_the_strtree_search():
    """The k-d tree used for points gives the STRtree's nearest station and distance, misses included."""
    import shapely

    from gis.linkage import _nearest_within
    from gis.routing import nearest_euclidean

    rng = np.random.default_rng(7)
    sites = shapely.points(rng.uniform(0, 10_000, (5_000, 2)))
    stations = shapely.points(rng.uniform(0, 10_000, (40, 2)))
    for limit in (300.0, 800.0, 1e9):
        got_i, got_d = _nearest_within(sites, stations, limit)
        want_i, want_d = nearest_euclidean(sites, stations, limit)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-12)
    assert (nearest_euclidean(sites, stations, 300.0)[0] < 0).any()  # the limit leaves some sites unlinked
    with_polygon = np.array([shapely.box(0, 0, 10, 10), *stations[1:]], dtype=object)  # not all points: STRtree
    np.testing.assert_array_equal(_nearest_within(sites, with_polygon, 800.0)[0],
                                  nearest_euclidean(sites, with_polygon, 800.0)[0])


def test_rules_broken_per_site_equal_pandas_groupby_join():
    """_join_per_key = groupby(site_id)[rule_id].agg(";".join) and .size(), repeated site ids and rule order kept."""
    from gis.compliance import _join_per_key

    rng = np.random.default_rng(5)
    sites = np.array([f"S{k}" for k in rng.integers(0, 300, 2000)], dtype=object)
    rules = pd.Series(rng.choice(["R01", "R02", "R07", "R10", "R11"], 2000))
    joined, counts = _join_per_key(sites, rules, ";")
    frame = pd.DataFrame({"site_id": sites, "rule_id": rules})
    expected = frame.groupby("site_id")["rule_id"].agg(";".join)
    pd.testing.assert_series_equal(joined, expected, check_names=False, check_index_type=False, check_dtype=False)
    pd.testing.assert_series_equal(counts, frame.groupby("site_id").size(), check_names=False,
                                   check_index_type=False, check_dtype=False)
    assert joined.str.count(";").max() >= 5  # sites with many rows joined in row order
