"""Campaign pieces on small inputs: calendar, params, store, identity, places, disposition, progress."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import yaml
from shapely.geometry import Point, box

from gis._errors import CatalogError
from gis.campaign import campaign_params, deadline_for, match_clusters, progress, state_at
from gis.campaign_disposition import disposition_params, propose
from gis.campaign_store import open_store
from gis.catalog import load_project
from gis.ledgers import places

D = dt.date


@pytest.fixture(scope="module")
def sample_params(sample_project: Path):
    return campaign_params(sample_project)


def _with_campaign(tmp_path: Path, sample_project: Path, **changes) -> Path:
    raw = yaml.safe_load((sample_project / "project.yaml").read_text(encoding="utf-8"))
    raw["campaign"].update(changes)
    for f in sample_project.iterdir():
        if f.name != "project.yaml" and not (tmp_path / f.name).exists():
            (tmp_path / f.name).symlink_to(f)
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return tmp_path


class TestCalendar:
    def test_sample_campaign_is_typed(self, sample_params) -> None:
        p = sample_params
        assert p.lead_office == "区商务委" and len(p.phases) == 3
        assert p.phase(p.rectify_phase).start_date == D(2025, 3, 1)
        assert all(p.start <= d <= p.end for d in p.reporting_dates)

    def test_deadline_inside_rectify_phase(self, sample_params) -> None:
        p = sample_params
        ph = p.phase(p.rectify_phase)
        for issued in (D(2025, 1, 10), D(2025, 2, 20), D(2025, 3, 15), D(2025, 5, 20)):
            for days in (15, 30, 60, 365):
                d = deadline_for(issued, days, p)
                assert d >= issued and ph.start_date <= d <= ph.end_date, (issued, days, d)
        assert deadline_for(D(2025, 3, 15), 30, p) == D(2025, 4, 14)  # room in the phase: issue + days

    def test_deadline_after_the_phase(self, sample_params) -> None:
        p = sample_params
        assert deadline_for(D(2025, 6, 10), 30, p) == D(2025, 6, 30)  # the phase holding the issue date
        assert deadline_for(D(2025, 8, 1), 30, p) == D(2025, 8, 31)  # after the campaign: issue + days
        bare = dataclasses.replace(p, phases=())
        assert deadline_for(D(2025, 1, 10), 30, bare) == D(2025, 2, 9)

    @pytest.mark.parametrize(
        ("changes", "key"),
        [
            ({"start": "2025-13-01"}, "campaign.start"),
            ({"rectify_phase": "巩固提升"}, "campaign.rectify_phase"),
            ({"phases": [{"name": "a", "start": "2025-01-06", "end": "2025-03-01"},
                         {"name": "b", "start": "2025-02-01", "end": "2025-04-01"}]}, "campaign.phases[1].start"),
            ({"phases": [{"name": "a", "start": "2024-12-01", "end": "2025-03-01"}]}, "campaign.phases[0]"),
            ({"lead_ofice": "区商务委"}, "campaign.lead_ofice"),
        ],
    )
    def test_bad_campaign_is_one_clear_error(self, tmp_path, sample_project, changes, key) -> None:
        with pytest.raises(CatalogError) as err:
            campaign_params(load_project(_with_campaign(tmp_path, sample_project, **changes)))
        assert key in str(err.value) and "Traceback" not in str(err.value)


class TestStore:
    def test_rollback_and_append_only_history(self, tmp_path) -> None:
        path = tmp_path / "campaign.gpkg"
        with open_store(path) as s:
            with s.transaction() as c:
                s.insert_problem(c, "X-1", {"key": "k1", "status": "未整改", "x": 1.0, "y": 2.0, "found": 1})
                s.log(c, "X-1", who="t", source="run:1", field="整改状态", old=None, new="未整改")
            before = s.dump()
            with pytest.raises(RuntimeError), s.transaction() as c:
                s.update_problem(c, "X-1", {"status": "已销号"})
                raise RuntimeError("die midway")
            assert s.dump() == before
            for sql in ("UPDATE history SET new = 'x'", "DELETE FROM history"):
                with pytest.raises(sqlite3.DatabaseError, match="append-only"), s.transaction() as c:
                    c.execute(sql)
        layers = {name for name, _g in pyogrio.list_layers(path)}
        assert {"problems", "history"} <= layers  # a GeoPackage GIS tools open
        assert pyogrio.read_dataframe(path, layer="problems")["number"].tolist() == ["X-1"]

    def test_store_must_stay_in_the_project_folder(self, tmp_path, sample_project) -> None:
        from gis.campaign import store_path

        proj = load_project(_with_campaign(tmp_path, sample_project, store="../elsewhere.gpkg"))
        with pytest.raises(CatalogError, match="campaign.store"):
            store_path(proj, campaign_params(proj))


class TestIdentity:
    def test_clusters_match_by_shared_incidents_then_distance(self) -> None:
        old = pd.DataFrame({"number": ["N1", "N2", "N3"], "members": [json.dumps(list("abcd")), json.dumps(list("xyz")),
                                                                     json.dumps(["q"])],
                            "x": [0.0, 1000.0, 5000.0], "y": [0.0, 0.0, 0.0], "problem_type": ["散乱污"] * 3})
        new = pd.DataFrame({"members": [list("bcde"), list("zw"), [], list("mn")],
                            "x": [10.0, 990.0, 5100.0, 9000.0], "y": [0.0] * 4, "问题类型": ["散乱污"] * 4})
        got = match_clusters(new, old, min_share=0.3, max_m=300.0)
        assert got == {0: "N1", 1: "N2", 2: "N3"}  # 3 by distance; 3 (far away) is new

    def test_places_equal_dbscan_with_one_sample(self) -> None:
        from sklearn.cluster import DBSCAN

        rng = np.random.default_rng(3)
        xy = np.vstack([rng.normal(c, 30, size=(15, 2)) for c in ((0, 0), (500, 0), (0, 700))])
        ours = places(xy, 50.0)
        ref = DBSCAN(eps=50.0, min_samples=1).fit_predict(xy)
        assert pd.crosstab(ours, ref).astype(bool).sum(axis=1).eq(1).all()  # the same partition
        assert len(np.unique(ours)) == len(np.unique(ref))


class TestDisposition:
    def test_rules_and_nearest_industrial_land(self) -> None:
        crs = "EPSG:4544"
        led = gpd.GeoDataFrame({
            "site_id": ["S1", "S2", "S3", None], "rule_id": ["four_mountains_no_build", "landuse_not_allowed",
                                                            "landuse_not_allowed", None],
            "问题类型": ["违规占用四山禁建区", "违法用地", "违法用地", "占道经营"], "source": ["compliance"] * 3 + ["hotspots"],
        }, geometry=[Point(0, 0), Point(0, 0), Point(0, 0), Point(0, 0)], crs=crs)
        sites = pd.DataFrame({"site_id": ["S1", "S2", "S3"], "business_licence": [True, True, False],
                              "tier": ["collection_point"] * 3})
        landuse = gpd.GeoDataFrame({"landuse_code": ["0601", "0601", "0701"], "landuse_name": ["工业用地", "工业用地", "城镇住宅用地"]},
                                   geometry=[box(900, 0, 1000, 100), box(300, 0, 400, 100), box(10, 0, 50, 50)], crs=crs)
        zones = gpd.GeoDataFrame({"zone_type": ["four_mountains"]}, geometry=[box(250, -50, 450, 150)], crs=crs)
        district = SimpleNamespace(landuse=landuse, zones=zones, project=None)
        out = propose(led, sites, district=district)
        assert out["disposition_proposed"].tolist() == ["关停取缔", "入园发展", "关停取缔", "整治规范"]
        assert "约900米" in out["disposition_note"].iloc[1]  # the parcel inside the 四山 zone is not legal land
        assert set(out["disposition_proposed"]) <= set(disposition_params().allowed)

    def test_many_rows_are_proposed_as_each_row_alone(self) -> None:
        """The rule match kept per distinct (rule, type, source, licence) gives each row its own answer."""
        led = pd.DataFrame({
            "site_id": ["S1", "S2", "S3", None, "S9", 7], "rule_id": ["four_mountains_no_build", "landuse_not_allowed",
                                                                      "landuse_not_allowed", None, "landuse_not_allowed", None],
            "问题类型": ["违规占用四山禁建区", "违法用地", "违法用地", "占道经营", "违法用地", np.nan],
            "source": ["compliance"] * 3 + ["hotspots", "compliance", None]})
        big = pd.concat([led] * 4, ignore_index=True).sample(frac=1.0, random_state=2)
        sites = pd.DataFrame({"site_id": ["S1", "S2", "S3", "7"], "business_licence": [True, True, False, None],
                              "tier": ["collection_point"] * 3 + ["dismantler"]})
        alone = pd.concat([propose(big.iloc[[i]], sites) for i in range(len(big))])
        pd.testing.assert_frame_equal(propose(big, sites), alone)
        assert set(alone["licensed"]) == {"1", "0", ""}


class TestProgress:
    def test_counts_as_of_a_date(self, sample_params) -> None:
        p = sample_params
        probs = pd.DataFrame({
            "number": ["A", "B", "C"], "township": ["甲镇", "甲镇", "乙镇"], "lead": ["区商务委", "区商务委、区林业局", "区林业局"],
            "issued": ["2025-01-10", "2025-01-10", "2025-03-05"], "deadline": ["2025-03-01", "2025-04-01", "2025-04-01"],
            "status": ["已销号", "整改中", "未整改"], "disposition": [None, "入园发展", None],
            "disposition_proposed": ["关停取缔", "整治规范", "整治规范"],
        })
        hist = pd.DataFrame({
            "fid": [1, 2, 3, 4, 5], "number": ["A", "B", "A", "B", "C"], "field": ["整改状态"] * 5,
            "effective": ["2025-01-10", "2025-01-10", "2025-03-15", "2025-02-01", "2025-03-05"],
            "new": ["未整改", "未整改", "已销号", "整改中", "未整改"],
        })
        assert state_at(probs, hist, D(2025, 2, 15))["status"].tolist() == ["未整改", "整改中"]
        t = progress(probs, hist, p, by="township", start=D(2025, 3, 1), end=D(2025, 3, 31)).set_index("镇街")
        assert t.loc["甲镇", ["问题总数", "已销号", "整改中", "逾期"]].tolist() == [2, 1, 1, 0]
        assert t.loc["乙镇", "本期新增"] == 1 and t.loc["合计", "问题总数"] == 3
        d = progress(probs, hist, p, by="department", end=D(2025, 4, 30)).set_index("单位")
        assert d.loc["区林业局", "问题总数"] == 2 and d.loc["合计", "问题总数"] == 3  # each problem once in 合计
        assert d.loc["合计", "逾期"] == 2 and d.loc["合计", "入园发展"] == 1


class TestSync:
    """Two runs into one store: numbers kept, gone problems marked, closed places watched."""

    @staticmethod
    def _ledger(rows):
        cols = ["镇街", "网点名称", "经营地址", "问题类型", "问题描述", "依据", "牵头单位", "配合单位", "整改措施",
                "整改时限", "整改状态", "site_id", "rule_id", "source", "cluster_id"]
        df = pd.DataFrame([r[0] for r in rows], columns=cols)
        return gpd.GeoDataFrame(df, geometry=[Point(*r[1]) for r in rows], crs="EPSG:4544")

    @staticmethod
    def _row(site, rule, cluster=None, ptype="违法用地"):
        return ["甲镇", f"网点{site or cluster}", "某路1号", ptype, "描述", "依据", "区规划自然资源局", "甲镇（属地）",
                "整改", "30日内", "待整改", site, rule, "hotspots" if cluster else "compliance", cluster]

    def test_two_runs(self, tmp_path, sample_params) -> None:
        from gis.campaign import RunInput, sync_run

        p = sample_params
        sites = gpd.GeoDataFrame({"site_id": ["S9"], "status": ["closed"], "name": ["已关停回收站"], "township": ["甲镇"],
                                  "address": ["某路9号"]}, geometry=[Point(5000, 5000)], crs="EPSG:4544")
        inc = gpd.GeoDataFrame({"incident_id": ["I1", "I2", "I3"], "date": pd.to_datetime(["2024-05-01"] * 3)},
                               geometry=[Point(0, 0), Point(10, 0), Point(20, 0)], crs="EPSG:4544")
        members = pd.DataFrame({"incident_id": ["I1", "I2", "I3"], "cluster_id": ["HS-0001"] * 3})
        first = self._ledger([(self._row("S1", "r1"), (100, 100)), (self._row("S2", "r2"), (200, 200)),
                              (self._row(None, None, "HS-0001", "散乱污"), (10, 0))])
        with open_store(tmp_path / "campaign.gpkg") as s:
            c1 = sync_run(s, RunInput(first, members, inc, sites, "500106", "run1"), p)
            one = s.problems().set_index("key")
            # second run: S2's problem gone, the cluster renumbered HS-0007 with one incident more
            inc2 = pd.concat([inc, gpd.GeoDataFrame({"incident_id": ["I4", "R1"], "date": pd.to_datetime(["2024-06-01", "2025-02-01"])},
                                                    geometry=[Point(30, 0), Point(5050, 5000)], crs="EPSG:4544")])
            members2 = pd.DataFrame({"incident_id": ["I2", "I3", "I4"], "cluster_id": ["HS-0007"] * 3})
            second = self._ledger([(self._row(None, None, "HS-0007", "散乱污"), (20, 0)), (self._row("S1", "r1"), (100, 100))])
            c2 = sync_run(s, RunInput(second, members2, inc2, sites, "500106", "run2"), p)
            two = s.problems().set_index("number")
            hist = s.history()
        assert c1 == {"found": 3, "new": 3, "gone": 0, "reopened": 0}
        assert c2["new"] == 0 and c2["gone"] == 1 and c2["reopened"] == 1  # the rebound at the closed site
        assert two.loc[one.loc["site:S1|rule:r1", "number"], "found"] == 1
        assert two.loc[one.loc["site:S2|rule:r2", "number"], "found"] == 0  # marked, not deleted
        cluster_no = one[one["kind"] == "cluster"]["number"].iloc[0]
        assert json.loads(two.loc[cluster_no, "members"]) == ["I2", "I3", "I4"]  # same place, same number
        reb = two[two["kind"] == "rebound_site"].iloc[0]
        assert reb["status"] == "反弹" and reb["rebound_incidents"] == "R1" and reb["site_id"] == "S9"
        assert (two["deadline"] >= two["issued"]).all()
        assert set(hist["source"]) == {"run:run1", "run:run2"}


def test_read_only_project_runs_on_a_temporary_store(tmp_path, caplog, monkeypatch) -> None:
    import gis.campaign as camp

    folder = tmp_path / "ro"
    folder.mkdir()
    with open_store(folder / "campaign.gpkg") as s, s.transaction() as c:
        s.insert_problem(c, "X-1", {"key": "k", "status": "未整改", "found": 1})
    before = (folder / "campaign.gpkg").read_bytes()
    monkeypatch.setattr(camp.os, "access", lambda path, mode: False)  # a folder we may not write (e.g. a wheel)
    with camp._writable_store(folder / "campaign.gpkg") as s, s.transaction() as c:
        assert s.problems()["number"].tolist() == ["X-1"]
        s.update_problem(c, "X-1", {"status": "整改中"})
    assert (folder / "campaign.gpkg").read_bytes() == before
    assert "read-only" in caplog.text


def test_campaign_files_are_state_not_inputs() -> None:
    from gis.campaign import is_campaign_file

    assert is_campaign_file("campaign.gpkg") and is_campaign_file("campaign_raster.gpkg-journal")
    assert is_campaign_file("campaign_rejects/back.rejects.csv")
    assert not is_campaign_file("zones.gpkg") and not is_campaign_file("sub/campaign.gpkg")


def test_buffered_writes_leave_the_store_as_row_by_row_writes_do(tmp_path):
    """sync_run's batched writer (one executemany per statement shape) = the per-row writers."""
    from gis.campaign_store import BufferedWrites, CampaignStore, open_store

    def ops(w, c):
        for k in range(3):
            n = f"T-{w.next_seq(c):04d}"
            w.insert_problem(c, n, {"key": f"site:S{k}|rule:r", "kind": "site", "status": "待整改", "x": 1.5 * k})
            w.log(c, n, who="gis run", source="run:1", field="整改状态", old=None, new="待整改", evidence="首次发现")
        w.insert_problem(c, "T-0100", {"key": "cluster:T-0100", "kind": "cluster", "members": '["i1"]'})
        w.update_problem(c, "T-0001", {"found": 0, "status": "已整改"})
        w.log(c, "T-0001", who="gis run", source="run:1", field="found", old=1, new=0, effective="2026-01-02")

    dumps = []
    for name in ("rows", "buffered"):
        with open_store(tmp_path / f"{name}.gpkg") as s, s.transaction() as c:
            if name == "rows":
                ops(CampaignStore, c)
            else:
                b = BufferedWrites(c)
                ops(b, c)
                b.flush(c)
        with open_store(tmp_path / f"{name}.gpkg") as s:
            problems, history, *rest, meta = s.dump()
            dumps.append((problems, [h[:2] + h[3:] for h in history], rest, meta))  # `at` is the clock
    assert dumps[0] == dumps[1]
    assert len(dumps[0][0]) == 4 and len(dumps[0][1]) == 4
    with open_store(tmp_path / "buffered.gpkg") as s, s.transaction() as c:
        with pytest.raises(KeyError, match="unknown problem field"):
            BufferedWrites(c).insert_problem(c, "x", {"nope": 1})


def test_first_run_columns_equal_the_per_problem_inserts(tmp_path, sample_params, monkeypatch) -> None:
    """sync_run's new problems, built column by column (in one batch or several), = _insert_new row by row
    (problems, history, counter)."""
    import gis.campaign as camp
    from gis.campaign_store import CampaignStore

    p = sample_params
    rows = [TestSync._row(f"S{k}", f"r{k % 3}") for k in range(7)] + [TestSync._row(None, None, "HS-0001", "散乱污")]
    rows[1][9], rows[2][9], rows[3][10] = "15日内", None, "整改中"  # 整改时限 / 整改状态: other, missing, mapped
    rows[4][0], rows[5][13] = None, ""  # 镇街 missing, source empty
    ledger = TestSync._ledger([(r, (100.0 * k, 50.0 * k)) for k, r in enumerate(rows)])
    ledger.loc[6, "geometry"] = None  # no point: x, y NULL
    disposition = pd.DataFrame({"disposition_proposed": ["关停取缔", None, "整治规范", "", None, "入园发展", None, None],
                                "disposition_note": ["说明", None, None, None, None, None, None, None],
                                "licensed": [True, False, None, True, None, None, None, None]}, index=ledger.index)
    inc = gpd.GeoDataFrame({"incident_id": ["I1", "I2"], "date": pd.to_datetime(["2024-05-01"] * 2)},
                           geometry=[Point(0, 0), Point(10, 0)], crs="EPSG:4544")
    members = pd.DataFrame({"incident_id": ["I2", "I1"], "cluster_id": ["HS-0001"] * 2})
    sites = gpd.GeoDataFrame({"site_id": [], "status": []}, geometry=[], crs="EPSG:4544")
    inp = camp.RunInput(ledger, members, inc, sites, "500106", "run1", disposition=disposition)
    dumps = []
    for name in ("columns", "batches", "rows"):
        with open_store(tmp_path / f"{name}.gpkg") as s:
            if name != "rows":
                monkeypatch.setattr(camp, "SYNC_BATCH_ROWS", 3 if name == "batches" else len(rows))
                assert camp.sync_run(s, inp, p)["new"] == len(rows)
            else:  # the per-problem path this replaced
                led, today = camp._run_frame(inp), p.today()
                with s.transaction() as c:
                    for r in camp._records(led, camp._SYNC_FIELDS):
                        camp._insert_new(CampaignStore, c, r, camp._run_values(r, "run1"), inp, p, today, "run:run1")
            problems, history, *_, meta = s.dump()
            dumps.append((problems, [h[:2] + h[3:] for h in history], meta))  # `at` is the clock
    assert dumps[0] == dumps[1] == dumps[2]
    stored = {r[0]: r for r in dumps[0][0]}
    assert len(stored) == len(rows) and any(r[-1] is None for r in stored.values())  # the point-less row: y NULL
