"""Clusters, 四山 flags, density, rebound, priority list and the pipeline step of gis.hotspots."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis import hotspots
from gis._errors import AnalysisError
from gis.catalog import load_yaml
from gis.settings import LAYERS_DIR

CRS = "EPSG:4544"
X0, Y0 = 640_000.0, 3_270_000.0  # CGCS2000 3° GK CM 105°E, near Shapingba

PLANTED = [
    # name, kind, centre offset, radius, n, level (None = outside 四山)
    ("A", "illegal_elv_dismantling", (2000, 2000), 120, 25, None),
    ("B", "illegal_ewaste_dismantling", (6000, 2500), 100, 18, "key_control"),
    ("C", "unlicensed_recycling", (3000, 6500), 150, 30, None),
    ("D", "illegal_elv_dismantling", (7500, 7000), 90, 15, "no_build"),
    ("E", "fire_hazard", (2000, 2150), 80, 12, None),  # overlaps A in space, other kind
]


def _zones() -> gpd.GeoDataFrame:
    geoms = [
        shapely.box(X0 + 5000, Y0 + 1500, X0 + 7000, Y0 + 3500),  # key control around B
        shapely.box(X0 + 6800, Y0 + 6300, X0 + 8200, Y0 + 7700),  # no-build around D
        shapely.box(X0 + 4500, Y0 + 1000, X0 + 9000, Y0 + 9000).difference(
            shapely.box(X0 + 5000, Y0 + 1500, X0 + 7000, Y0 + 3500)
        ),
    ]
    return gpd.GeoDataFrame(
        {
            "zone_type": ["four_mountains"] * 3,
            "level": ["key_control", "no_build", "general_control"],
            "name": ["中梁山", "铜锣山", "中梁山"],
        },
        geometry=geoms,
        crs=CRS,
    )


def make_incidents(seed: int = 0, n_noise: int = 300) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Synthetic incidents (metric CRS) with planted clusters; returns (incidents, truth)."""
    rng = np.random.default_rng(seed)
    kinds = [p[1] for p in PLANTED]
    rows = []
    truth = []
    start = pd.Timestamp("2022-01-01")
    for name, kind, (cx, cy), radius, n, _level in PLANTED:
        ang = rng.uniform(0, 2 * np.pi, n)
        rad = radius * np.sqrt(rng.uniform(0, 1, n))
        days = rng.integers(0, 700, n)
        for i in range(n):
            rows.append((X0 + cx + rad[i] * np.cos(ang[i]), Y0 + cy + rad[i] * np.sin(ang[i]), kind, days[i]))
            truth.append(name)
    noise = rng.uniform([0, 0], [10_000, 10_000], size=(n_noise, 2))
    for i in range(n_noise):
        rows.append((X0 + noise[i, 0], Y0 + noise[i, 1], kinds[i % len(kinds)], int(rng.integers(0, 700))))
        truth.append(None)
    df = pd.DataFrame(rows, columns=["x", "y", "kind", "day"])
    df["incident_id"] = [f"I{i:05d}" for i in range(len(df))]
    df["date"] = start + pd.to_timedelta(df["day"], unit="D")
    df["status"] = "open"
    df["closed_date"] = pd.NaT
    df["township"] = np.where(df["x"] < X0 + 5000, "青木关镇", "歌乐山街道")
    df["address"] = None
    gdf = gpd.GeoDataFrame(
        df.drop(columns=["x", "y", "day"]), geometry=gpd.points_from_xy(df["x"], df["y"]), crs=CRS
    )
    return gdf, pd.DataFrame({"incident_id": gdf["incident_id"], "planted": truth})


@pytest.fixture(scope="module")
def config() -> dict:
    return load_yaml(LAYERS_DIR / "hotspots.yaml")


@pytest.fixture(scope="module")
def synthetic():
    return make_incidents()


def _recall(result: hotspots.ClusterResult, truth: pd.DataFrame) -> dict[str, str | None]:
    """Planted cluster -> found cluster id (centroid within radius and majority of members)."""
    found = result.members.merge(truth, on="incident_id")
    cl = result.clusters.set_index("cluster_id")
    out = {}
    for name, _kind, (cx, cy), radius, n, _lvl in PLANTED:
        share = found[found["planted"] == name]["cluster_id"].value_counts()
        out[name] = None
        if len(share) and share.iloc[0] > n / 2:
            c = cl.loc[share.index[0]]
            if np.hypot(c["centroid_x"] - X0 - cx, c["centroid_y"] - Y0 - cy) <= radius:
                out[name] = share.index[0]
    return out


# ------------------------------------------------------------------ clusters


@pytest.mark.parametrize("method", ["dbscan", "hdbscan"])
def test_planted_clusters_recovered_per_kind(synthetic, method):
    inc, truth = synthetic
    res = hotspots.find_clusters(inc, zones=_zones(), method=method, min_cluster_size=5)
    rec = _recall(res, truth)
    assert all(rec.values()), rec
    # A and E overlap in space but are different kinds: kept apart by grouping on kind
    assert rec["A"] != rec["E"]
    if method == "dbscan":
        assert all(30 <= e <= 1500 for e in res.eps.values())
    assert len(res.members) == res.clusters["n_incidents"].sum()


def test_cluster_attributes_and_four_mountains_flags(synthetic):
    inc, truth = synthetic
    res = hotspots.find_clusters(inc, zones=_zones())
    rec = _recall(res, truth)
    cl = res.clusters.set_index("cluster_id")
    for name, kind, (cx, cy), _radius, n, level in PLANTED:
        c = cl.loc[rec[name]]
        assert (c["four_mountains_level"] if pd.notna(c["four_mountains_level"]) else None) == level
        assert c["main_kind"] == kind and kind in c["kinds"]
        assert c["first_date"] <= c["last_date"]
        assert c.geometry.contains(shapely.Point(c["centroid_x"], c["centroid_y"]))
        assert c["township"] == ("青木关镇" if cx < 5000 else "歌乐山街道")
    b = cl.loc[rec["B"]]
    assert b["share_key_control"] == pytest.approx(1.0)
    assert "中梁山" in b["fm_ranges"] and "key_control" in b["fm_levels"]
    d = cl.loc[rec["D"]]
    assert d["share_no_build"] == pytest.approx(1.0) and "铜锣山" in d["fm_ranges"]
    assert cl.loc[rec["A"]]["fm_levels"] == [] and cl.loc[rec["A"]]["share_no_build"] == 0
    # members' lon/lat round-trip to WGS84 near the metric centroid
    pt = gpd.GeoSeries(gpd.points_from_xy([b["lon"]], [b["lat"]]), crs=4326).to_crs(CRS).iloc[0]
    assert pt.distance(shapely.Point(b["centroid_x"], b["centroid_y"])) < 0.01


def test_time_window_and_kind_filters(synthetic):
    inc, _ = synthetic
    res = hotspots.find_clusters(inc, kinds=["unlicensed_recycling"], start="2022-06-01", end="2022-12-31")
    assert set(res.clusters["main_kind"]) <= {"unlicensed_recycling"}
    assert (res.clusters["first_date"] >= pd.Timestamp("2022-06-01")).all()
    assert (res.clusters["last_date"] <= pd.Timestamp("2022-12-31")).all()


def test_dispersed_clusters_dropped():
    rng = np.random.default_rng(4)
    tight = rng.normal(0, 50, size=(30, 2))
    wide = rng.uniform(-5000, 5000, size=(30, 2))
    labels = np.r_[np.zeros(30, int), np.ones(30, int), -np.ones(2, int)]
    out = hotspots.drop_dispersed(np.vstack([tight, wide, [[0, 0], [1, 1]]]), labels, 500.0)
    assert (out[:30] == 0).all() and (out[30:] == -1).all()


def test_kdistance_knee_separates_clusters_from_noise():
    rng = np.random.default_rng(3)
    tight = np.vstack([rng.normal(c, 20, size=(40, 2)) for c in ((0, 0), (3000, 0), (0, 3000))])
    noise = rng.uniform(-2000, 5000, size=(200, 2))
    eps = hotspots.kdistance_eps(np.vstack([tight, noise]), 5)
    d_tight = np.sort(np.linalg.norm(tight[:40] - tight[:40].mean(0), axis=1))
    assert 10 < eps < 400
    assert eps > np.percentile(d_tight, 10)


def test_clusters_need_metric_crs_and_fields(synthetic):
    inc, _ = synthetic
    with pytest.raises(AnalysisError, match="metric"):
        hotspots.find_clusters(inc.to_crs(4326))
    with pytest.raises(AnalysisError, match="'kind'"):
        hotspots.find_clusters(inc.drop(columns="kind"))


# ------------------------------------------------------------------ density


def test_binned_kde_matches_sklearn():
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(2)
    xy = np.vstack([rng.normal((0, 0), 300, (400, 2)), rng.normal((1500, 800), 150, (200, 2))])
    bw = 200.0
    surf = hotspots.kernel_density(xy, bandwidth_m=bw, cell_size_m=20.0, crs=CRS)
    rows, cols = np.mgrid[0 : surf.array.shape[0] : 7, 0 : surf.array.shape[1] : 7]
    t = surf.transform
    xs = t.c + (cols.ravel() + 0.5) * t.a
    ys = t.f + (rows.ravel() + 0.5) * t.e
    ref = np.exp(KernelDensity(bandwidth=bw).fit(xy).score_samples(np.column_stack([xs, ys])))
    ref_km2 = ref * len(xy) * 1e6
    ours = surf.array[rows.ravel(), cols.ravel()]
    big = ref_km2 > 0.05 * ref_km2.max()
    assert np.max(np.abs(ours[big] - ref_km2[big]) / ref_km2[big]) < 0.02
    # the surface integrates to the number of incidents
    assert surf.array.sum() * (surf.cell_size_m**2) / 1e6 == pytest.approx(len(xy), rel=1e-3)


def test_density_geotiff_written(tmp_path: Path):
    import rasterio

    xy = np.random.default_rng(0).normal((X0, Y0), 200, (100, 2))
    surf = hotspots.kernel_density(xy, crs=CRS)
    assert surf.bandwidth_m == pytest.approx(hotspots.default_bandwidth(xy))
    from gis.steps import write_density

    path = write_density(surf, tmp_path / "density.tif")
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 4544
        assert np.allclose(src.read(1), surf.array)
        assert src.tags()["units"] == "incidents per km2"


# ------------------------------------------------------------------ rebound


def _closure_case() -> gpd.GeoDataFrame:
    pts = [(0, 0), (50, 0), (1000, 0), (10, 10), (5000, 5000)]
    df = pd.DataFrame(
        {
            "incident_id": ["c1", "new_near", "new_far", "late", "c2"],
            "date": pd.to_datetime(["2022-01-01", "2022-06-01", "2022-06-01", "2024-01-01", "2022-01-01"]),
            "kind": "illegal_elv_dismantling",
            "status": ["closed", "open", "open", "open", "rectified"],
            "closed_date": pd.to_datetime(["2022-03-01", None, None, None, "2022-02-01"]),
        }
    )
    return gpd.GeoDataFrame(df, geometry=[shapely.Point(X0 + x, Y0 + y) for x, y in pts], crs=CRS)


def test_rebound_within_distance_and_window_only():
    inc = _closure_case()
    rb = hotspots.detect_rebounds(inc, distance_m=300, window_days=365)
    assert rb[["closed_id", "incident_id"]].values.tolist() == [["c1", "new_near"]]
    assert rb["days_after"].iloc[0] == (pd.Timestamp("2022-06-01") - pd.Timestamp("2022-03-01")).days
    longer = hotspots.detect_rebounds(inc, distance_m=300, window_days=800)
    assert set(longer["incident_id"]) == {"new_near", "late"}
    assert len(hotspots.detect_rebounds(inc, distance_m=30, window_days=365)) == 0
    assert len(hotspots.detect_rebounds(inc.assign(status="open"))) == 0
    other = inc.copy()
    other.loc[other["incident_id"] == "new_near", "kind"] = "fire_hazard"
    assert len(hotspots.detect_rebounds(other)) == 0
    assert len(hotspots.detect_rebounds(other, same_kind=False)) == 1


def test_cluster_rebound_flag(synthetic):
    inc, truth = synthetic
    inc = inc.copy()
    a_ids = truth.loc[truth["planted"] == "A", "incident_id"]
    a = inc["incident_id"].isin(a_ids)
    closure = inc.loc[a, "date"].median().normalize()
    before = a & (inc["date"] <= closure)
    inc.loc[before, "status"] = "closed"
    inc.loc[before, "closed_date"] = closure
    expected_first = inc.loc[a & (inc["date"] > closure), "date"].min()
    res = hotspots.find_clusters(inc)
    rb = hotspots.detect_rebounds(inc)
    flags = hotspots.cluster_rebounds(res, inc, rb)
    rec = _recall(res, truth)
    assert flags.loc[rec["A"], "rebound"]
    assert flags.loc[rec["A"], "closed"] and flags.loc[rec["A"], "closed_date"] == closure
    assert flags.loc[rec["A"], "rebound_first_date"] == expected_first
    assert not flags.loc[rec["C"], "closed"]
    assert not flags.loc[rec["C"], "rebound"]


# ------------------------------------------------------------------ priority + ledger rows


def test_priority_score_and_problem_rows(synthetic, config):
    inc, truth = synthetic
    res = hotspots.analyse(inc, config, zones=_zones())
    pr = res.priority
    assert list(pr["rank"]) == list(range(1, len(pr) + 1))
    assert pr["score"].is_monotonic_decreasing and pr["score"].between(0, 100).all()
    w = config["priority"]["weights"]
    comp = sum(w[k] * pr[f"c_{k}"] for k in w) / sum(w.values()) * 100
    np.testing.assert_allclose(pr["score"], comp, atol=0.01)
    rec = _recall(res.clusters, truth)
    by_id = pr.set_index("cluster_id")
    d = by_id.loc[rec["D"]]  # ELV dismantling in the 四山 no-build zone
    assert d["lead_departments"] == ["生态环境局", "商务委"]
    assert "林业局" in d["support_departments"] and "规划自然资源局" in d["support_departments"]
    assert d["support_departments"][-1] == "歌乐山街道（属地）"
    c = by_id.loc[rec["C"]]
    assert c["lead_departments"] == ["市场监管局"] and "林业局" not in c["support_departments"]
    assert by_id.loc[rec["E"]]["lead_departments"] == ["消防救援支队"]
    # D outranks A (same kind, 四山 no-build) unless A is much larger
    assert d["c_zone"] == 1.0
    rows = res.problems
    assert list(rows.columns)[: len(hotspots.PROBLEM_COLUMNS)] == list(hotspots.PROBLEM_COLUMNS)
    assert rows["cluster_id"].tolist() == pr["cluster_id"].tolist() and (rows["source"] == "hotspots").all()
    assert rows.crs == pr.crs and rows.geometry.x.tolist() == pr["centroid_x"].tolist()
    assert len(rows) == len(pr) and rows["序号"].tolist() == pr["rank"].tolist()
    row_d = rows[rows["网点名称"].str.contains(rec["D"])].iloc[0]
    assert "禁建区" in row_d["问题描述"] and "铜锣山" in row_d["问题描述"]
    assert "渝府令第204号" in row_d["依据"] and row_d["牵头单位"] == "生态环境局、商务委"
    assert row_d["整改状态"] == "待整改" and row_d["镇街"] == "歌乐山街道"
    assert pd.Timestamp(row_d["整改时限"]) > pr["last_date"].max()
    s = res.summary()
    assert s["clusters"] == len(pr) and s["clusters_in_four_mountains"] >= 2
    assert s["hot_cells_99"] > 0


def test_priority_prefers_recent_rebounded_four_mountains(config):
    base = pd.DataFrame(
        {
            "cluster_id": ["X", "Y"],
            "n_incidents": [10, 10],
            "kinds": [["unlicensed_recycling"], ["unlicensed_recycling"]],
            "last_date": pd.to_datetime(["2024-06-01", "2024-06-01"]),
            "four_mountains_level": [None, None],
            "township": ["t", "t"],
            "rebound": [False, False],
        }
    )
    for col, val in (("four_mountains_level", "general_control"), ("rebound", True)):
        df = base.copy()
        df.loc[1, col] = val
        pr = hotspots.priority_list(df, config)
        assert pr.iloc[0]["cluster_id"] == "Y"
    df = base.copy()
    df.loc[0, "last_date"] = pd.Timestamp("2023-01-01")
    assert hotspots.priority_list(df, config).iloc[0]["cluster_id"] == "Y"


# ------------------------------------------------------------------ pipeline step


@pytest.fixture()
def synthetic_district(tiny_project, synthetic):
    """The tiny project's catalogue with synthetic townships, zones and incidents (EPSG:4544)."""
    import dataclasses

    from gis.district import load_district
    from pyproj import CRS as ProjCRS

    d = load_district(tiny_project)
    inc, _ = synthetic
    towns = gpd.GeoDataFrame(
        {"township": ["青木关镇", "歌乐山街道"]},
        geometry=[shapely.box(X0, Y0, X0 + 5000, Y0 + 10_000), shapely.box(X0 + 5000, Y0, X0 + 10_000, Y0 + 10_000)],
        crs=CRS,
    )
    return dataclasses.replace(
        d, crs=ProjCRS(CRS), townships=towns, zones=_zones(), incidents=inc, sites=d.sites.to_crs(CRS)
    )


def test_run_step_writes_outputs_and_context(synthetic_district, tmp_path):
    import pyogrio
    import rasterio

    from gis.steps import run_steps

    summary, ctx = run_steps(synthetic_district, tmp_path, ["hotspots"])
    context = ctx.results()
    layers = dict(pyogrio.list_layers(tmp_path / "hotspots.gpkg"))
    assert {"clusters", "cluster_centroids", "hex_gistar", "priority", "rebounds"} <= set(layers)
    hs = summary["hotspots"]
    assert hs["clusters"] == len(PLANTED)
    assert hs["clusters_in_four_mountains"] == 2 and hs["hot_cells_99"] > 0 and hs["rebounds"] == 0
    grid = gpd.read_file(tmp_path / "hotspots.gpkg", layer="hex_gistar")
    assert {"count", "gi_z", "gi_p", "gi_bin", "emerging"} <= set(grid.columns)
    assert grid["count"].sum() == len(synthetic_district.incidents)
    pr = gpd.read_file(tmp_path / "hotspots.gpkg", layer="priority")
    assert pr["rank"].tolist() == list(range(1, len(PLANTED) + 1))
    with rasterio.open(tmp_path / "density.tif") as src:
        arr = src.read(1)
        total = arr.sum() * abs(src.transform.a * src.transform.e) / 1e6
    assert total == pytest.approx(len(synthetic_district.incidents), rel=0.05)  # mass inside the district
    assert isinstance(context["hotspots"], hotspots.HotspotResult)
    probs = context["hotspot_problems"]
    assert set(hotspots.PROBLEM_COLUMNS) <= set(probs.columns) and len(probs) == len(PLANTED)


def test_run_step_with_few_incidents(tiny_project, tmp_path):
    from gis.district import load_district

    from gis.steps import run_steps

    summary, ctx = run_steps(load_district(tiny_project), tmp_path, ["hotspots"])
    context = ctx.results()
    assert summary["hotspots"]["clusters"] == 0
    assert len(context["hotspot_problems"]) == 0
    assert (tmp_path / "hotspots.gpkg").exists() and (tmp_path / "density.tif").exists()


# ------------------------------------------------------------------ the bundled sample district


@pytest.fixture(scope="module")
def sample_hotspots(sample_district):
    config = sample_district.project.section("hotspots")
    d = sample_district
    return hotspots.analyse(d.incidents, config, zones=d.zones, townships=d.townships, area=d.boundary)


@pytest.fixture(scope="module")
def sample_truth(sample_project):
    clusters = pd.read_csv(sample_project / "truth" / "clusters_truth.csv")
    members = pd.read_csv(sample_project / "truth" / "incidents_truth.csv")
    return clusters, members


def test_sample_planted_clusters_recovered_with_four_mountains_levels(sample_hotspots, sample_truth):
    clusters, members = sample_truth
    m = hotspots.match_planted(sample_hotspots.clusters, clusters, members)
    assert m["recovered"].mean() >= 0.9, m
    in_fm = m[m["level_truth"].notna()]
    assert len(in_fm) > 0
    assert in_fm["recovered"].all() and (in_fm["level_found"] == in_fm["level_truth"]).all(), in_fm
    outside = m[m["level_truth"].isna() & m["recovered"]]
    assert outside["level_found"].isna().all()
    # precision: at least nine in ten clusters found are a planted site (no district-wide noise "clusters")
    assert m["recovered"].sum() >= 0.9 * len(sample_hotspots.clusters.clusters)


def test_sample_hdbscan_recall(sample_district, sample_truth):
    clusters, members = sample_truth
    d = sample_district
    res = hotspots.find_clusters(d.incidents, zones=d.zones, method="hdbscan")
    m = hotspots.match_planted(res, clusters, members)
    assert m["recovered"].mean() >= 0.9
    assert (res.clusters["radius_m"] < 2000).all()


def test_sample_rebounds_and_closures_match_truth(sample_hotspots, sample_truth):
    clusters, members = sample_truth
    m = hotspots.match_planted(sample_hotspots.clusters, clusters, members)
    m = m[m["recovered"]].set_index("truth_id")
    t = clusters.assign(truth_id=clusters["cluster_id"].astype(str)).set_index("truth_id").loc[m.index]
    found = sample_hotspots.clusters.clusters.set_index("cluster_id").loc[m["found_id"]]
    assert t["rebound"].any()
    assert np.array_equal(found["rebound"].to_numpy(bool), t["rebound"].to_numpy(bool))
    reb = t["rebound"].to_numpy(bool)
    assert (pd.to_datetime(found["rebound_first_date"])[reb].to_numpy() == pd.to_datetime(t["rebound_first_date"])[reb].to_numpy()).all()
    closed = t["closed_date"].notna().to_numpy()
    assert (pd.to_datetime(found["closed_date"])[closed].to_numpy() == pd.to_datetime(t["closed_date"])[closed].to_numpy()).all()
    # rebounded clusters are ranked and flagged in the problem ledger
    rows = sample_hotspots.problems
    flagged = set(rows.loc[rows["整改状态"] == "反弹", "cluster_id"])
    assert set(m.loc[t.index[reb], "found_id"]) <= flagged
    # any other 反弹 row is a part of a rebounded site (its reports are that site's)
    truth_of = members.set_index("incident_id")["cluster_id"]
    mem = sample_hotspots.clusters.members
    for cid in flagged - set(m["found_id"]):
        site = truth_of.reindex(mem.loc[mem["cluster_id"] == cid, "incident_id"]).mode().iloc[0]
        assert bool(clusters.set_index("cluster_id").loc[site, "rebound"]), cid


def test_cli_hotspots_subcommand_runs_the_step_alone(tiny_project, tmp_path):
    import json

    from gis.cli import main

    assert main(["hotspots", "--project", str(tiny_project), "--out", str(tmp_path), "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps_run"] == ["load", "hotspots"]
    assert set(summary["hotspots"]) >= {"clusters", "clusters_in_four_mountains", "hot_cells_99", "rebounds"}
    assert (tmp_path / "hotspots.gpkg").exists() and (tmp_path / "density.tif").exists()


# ------------------------------------------------------------------ evaluation, significance, membership


def test_sample_scan_meets_recall_and_precision_of_the_harness(sample_district, sample_truth):
    """The harness (benchmarks/bench_clusters.py) on the small sample: every detectable site, precision >= 90 %."""
    from gis import cluster_eval

    clusters, members = sample_truth
    d = sample_district
    oracle = cluster_eval.detectable_planted(
        d.incidents, clusters, members, sigmas=2.0, annulus_m=(500.0, 1500.0), fdr=0.01, same_kind=True
    )
    assert oracle["detectable"].all()  # the bundled sample's sites are all far above their background
    res = hotspots.find_clusters(d.incidents, zones=d.zones)
    assert (res.clusters["method"] == "scan").all()
    e = cluster_eval.evaluate(res, clusters, members, oracle)
    assert e["recall_detectable"] == 1.0 and e["precision"] >= 0.9, {k: v for k, v in e.items() if k != "table"}
    by_kind = cluster_eval.recall_by(e["table"], "kind")
    assert (by_kind["recall_detectable"] == 1.0).all()
    p = cluster_eval.evaluate_places(res, clusters, members, oracle, link_sigmas=2.0)  # the harness's place columns
    assert p["recall_place_detectable"] == 1.0 and p["precision_place"] >= e["precision"]


def _uniform(seed: int, n: int = 1500, side: float = 8000.0) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, side, size=(n, 2))
    return gpd.GeoDataFrame(
        {
            "incident_id": [f"U{seed}-{i:05d}" for i in range(n)],
            "date": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "kind": "unlicensed_recycling",
        },
        geometry=gpd.points_from_xy(X0 + xy[:, 0], Y0 + xy[:, 1]),
        crs=CRS,
    )


@pytest.mark.parametrize("method", ["scan", "dbscan", "hdbscan"])
def test_uniform_points_give_no_significant_cluster(method):
    """Complete spatial randomness: whatever a detector groups, nothing passes q <= 1 % (5 seeds)."""
    passed = found = 0
    for seed in range(5):
        res = hotspots.find_clusters(_uniform(seed), method=method)
        found += len(res.clusters)
        passed += int(res.clusters["significant"].sum())
    assert passed <= 1, (method, passed, found)  # within the 1 % false-positive rate


def test_planted_clusters_over_uniform_are_significant_with_their_counts():
    inc = _uniform(11)
    rng = np.random.default_rng(11)
    centres = [(2000.0, 2000.0), (6000.0, 5000.0), (3000.0, 6500.0)]
    pts = np.vstack([rng.normal(c, 100.0, size=(30, 2)) for c in centres])
    planted = gpd.GeoDataFrame(
        {"incident_id": [f"P{i:03d}" for i in range(len(pts))], "date": pd.Timestamp("2023-06-01"),
         "kind": "unlicensed_recycling"},
        geometry=gpd.points_from_xy(X0 + pts[:, 0], Y0 + pts[:, 1]),
        crs=CRS,
    )  # fmt: skip
    res = hotspots.find_clusters(pd.concat([inc, planted], ignore_index=True))
    rep = res.reported()
    assert len(rep) == 3, res.clusters[["n_incidents", "observed", "expected", "q_value"]]
    # background 1500 / 64 km² ≈ 23 per km²: a disc of 2σ̂ (σ̂ ≤ 175 m, < 0.4 km²) expects under 10
    assert (rep["expected"] < 10).all() and (rep["observed"] >= 25).all() and (rep["q_value"] < 1e-6).all()
    assert (rep["observed"] > 2.5 * rep["expected"]).all()
    assert rep["significance_en"].str.match(r"^\d+ reports where [\d.]+ would be expected$").all()
    assert rep["significance_zh"].str.contains("按背景预期约").all()


def test_bh_qvalues_equal_scipy():
    from scipy.stats import false_discovery_control

    from gis.cluster_scan import bh_qvalues

    p = np.random.default_rng(2).uniform(0, 0.2, 40) ** 2
    np.testing.assert_allclose(bh_qvalues(p), false_discovery_control(p, method="bh"), rtol=1e-12)
    assert (bh_qvalues(p, m=400) >= bh_qvalues(p)).all()  # unreported windows only make q larger


def test_flagged_clusters_stay_in_gpkg_but_not_in_priority_or_ledger(config):
    inc = pd.concat([make_incidents()[0], _uniform(3, n=600)], ignore_index=True)
    res = hotspots.analyse(inc, config)
    c = res.clusters.clusters
    assert res.priority["cluster_id"].isin(c.loc[c["significant"], "cluster_id"]).all()
    assert set(res.problems["cluster_id"]) == set(res.priority["cluster_id"])
    assert "（中心" in res.problems["问题描述"].iloc[0] and "按背景预期约" in res.problems["问题描述"].iloc[0]
    assert res.summary()["clusters"] == int(c["significant"].sum())
    assert res.summary()["clusters_not_significant"] == int((~c["significant"]).sum())


def test_membership_round_trips_through_the_geopackage(synthetic_district, tmp_path):
    from gis.steps import run_steps

    _summary, ctx = run_steps(synthetic_district, tmp_path, ["hotspots"])
    res = ctx.hotspots
    layer = gpd.read_file(tmp_path / "hotspots.gpkg", layer="incidents")
    assert len(layer) == len(synthetic_district.incidents)  # every report, clustered or not
    back = layer.dropna(subset=["cluster_id"]).set_index("incident_id")["cluster_id"].sort_index()
    want = res.clusters.members.set_index("incident_id")["cluster_id"].sort_index()
    pd.testing.assert_series_equal(back, want, check_names=False)
    clusters = gpd.read_file(tmp_path / "hotspots.gpkg", layer="clusters")
    n = layer.dropna(subset=["cluster_id"]).groupby("cluster_id").size()
    assert (clusters.set_index("cluster_id")["n_incidents"] == n.reindex(clusters["cluster_id"]).to_numpy()).all()
    assert {"observed", "expected", "p_value", "q_value", "significant"} <= set(clusters.columns)


def test_cluster_reports_list_each_clusters_reports_by_date(synthetic):
    inc, truth = synthetic
    inc = inc.assign(source=np.where(np.arange(len(inc)) % 2, "patrol", "hotline"))
    res = hotspots.find_clusters(inc)
    reports = res.cluster_reports(inc)
    assert set(reports) == set(res.clusters["cluster_id"])
    for cid, rows in reports.items():
        assert list(rows.columns) == ["incident_id", "date", "kind", "source", "status"]
        assert rows["date"].is_monotonic_increasing
        assert len(rows) == int(res.clusters.set_index("cluster_id").loc[cid, "n_incidents"])
        assert set(rows["incident_id"]) == set(res.members.loc[res.members["cluster_id"] == cid, "incident_id"])


def test_rebounds_carry_their_own_p_value(sample_hotspots):
    c = sample_hotspots.clusters.clusters
    reb = c[c["rebound"].fillna(False).astype(bool)]
    assert len(reb) > 0
    assert reb["rebound_p"].between(0, 1).all() and (reb["rebound_q"] >= reb["rebound_p"]).all()
    assert (reb["rebound_expected"] > 0).all()
    assert c.loc[~c["rebound"].fillna(False).astype(bool), "rebound_p"].isna().all()


def test_time_bins_are_bounded_for_an_absurd_date_range():
    from gis import emerging

    dates = pd.Series(pd.to_datetime(["1900-01-15", "2022-01-10", "2022-03-05", "2023-12-31"]))
    idx, labels = emerging.time_step_index(dates, "month", None, max_steps=24)
    assert len(labels) == 24 and labels[-1] == "2023-12"
    assert idx[0] == -1 and idx[-1] == 23 and idx[2] == labels.index("2022-03")


def test_hotspot_functions_are_short():
    """No function over 80 lines in the hot-spot modules (team guide)."""
    import ast

    root = Path(hotspots.__file__).parent
    for name in ("hotspots.py", "emerging.py", "gistar.py", "cluster_scan.py", "cluster_eval.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 80, f"{name}:{node.name}"


def _busy_street_and_site(seed: int) -> gpd.GeoDataFrame:
    """Uniform reports of 4 kinds, a busy street where every kind is reported 4x as often, one ELV site."""
    rng = np.random.default_rng(seed)
    kinds = ["illegal_elv_dismantling", "unlicensed_recycling", "fire_hazard", "road_occupying"]
    parts = [rng.uniform(0, 8000, size=(400, 2)) for _ in kinds]  # 400 per kind on 64 km²
    parts = [np.vstack([p, rng.normal((2500.0, 2500.0), 150.0, size=(30, 2))]) for p in parts]  # the busy street
    parts[0] = np.vstack([parts[0], rng.normal((6000.0, 5500.0), 100.0, size=(30, 2))])  # the dismantling site
    xy = np.vstack(parts)
    kind = np.concatenate([[k] * len(p) for k, p in zip(kinds, parts)])
    return gpd.GeoDataFrame(
        {"incident_id": [f"I{i:05d}" for i in range(len(xy))], "date": pd.Timestamp("2023-06-01"), "kind": kind},
        geometry=gpd.points_from_xy(X0 + xy[:, 0], Y0 + xy[:, 1]),
        crs=CRS,
    )  # fmt: skip


def _near(rep: gpd.GeoDataFrame, x: float, y: float) -> gpd.GeoDataFrame:
    return rep[np.hypot(rep["centroid_x"] - X0 - x, rep["centroid_y"] - Y0 - y) < 300]


def test_case_control_busy_street_is_no_site_but_the_site_is():
    """Every kind piles up in a busy street: an excess of one kind over its surroundings, but not over the
    reporting of the other kinds (case-control); the one-kind site passes both tests."""
    inc = _busy_street_and_site(3)
    sig = hotspots.cluster_params()["significance"]
    with_cc = hotspots.find_clusters(inc, significance={**sig, "controls": True}).reported()
    without = hotspots.find_clusters(inc, significance={**sig, "controls": False}).reported()
    assert len(_near(without, 2500, 2500)) >= 2  # the street is "significant" against the kind's own annulus
    assert len(_near(with_cc, 2500, 2500)) == 0, with_cc[["main_kind", "observed", "expected", "q_value"]]
    site = _near(with_cc, 6000, 5500)
    assert list(site["main_kind"]) == ["illegal_elv_dismantling"] and (site["observed"] >= 25).all()


def test_analyse_takes_the_typed_hotspot_params(synthetic, config):
    """The pipeline hands analyse() the typed HotspotsParams; a plain mapping gives the same clusters."""
    from gis.params import HotspotsParams, default_params

    typed = default_params().hotspots
    assert isinstance(typed, HotspotsParams) and typed.clusters.significance.controls in (True, False)
    inc, _ = synthetic
    a = hotspots.analyse(inc, typed, zones=_zones())
    b = hotspots.analyse(inc, config, zones=_zones())
    cols = ["cluster_id", "n_incidents", "observed", "significant"]
    pd.testing.assert_frame_equal(a.clusters.clusters[cols], b.clusters.clusters[cols])
    assert list(a.priority["cluster_id"]) == list(b.priority["cluster_id"])


def test_bic_merge_joins_a_cut_site_and_keeps_neighbours_apart():
    """One Gaussian site cut in two trees is merged; two sites 600 m apart (σ 100 m) stay two."""
    from gis.cluster_scan import merge_by_bic

    rng = np.random.default_rng(5)
    one = rng.normal(0.0, 150.0, size=(60, 2))
    cut = (one[:, 0] > 0).astype(np.int64)  # kernel bumps cut the wide site down the middle
    assert len(np.unique(merge_by_bic(one, cut, 150.0))) == 1
    two = np.vstack([rng.normal((0.0, 0.0), 100.0, size=(40, 2)), rng.normal((600.0, 0.0), 100.0, size=(40, 2))])
    sites = np.repeat([0, 1], 40)
    out = merge_by_bic(two, sites, 150.0)
    assert len(np.unique(out)) == 2 and (out[:40] != out[40]).all()


def test_unknown_merge_or_background_is_a_one_line_error(synthetic):
    inc, _ = synthetic
    cfg = hotspots.cluster_params()
    with pytest.raises(AnalysisError, match="scan merge 'tree' must be mixture, bic, saddle or none"):
        hotspots.find_clusters(inc, scan={**cfg["scan"], "merge": "tree"})
    with pytest.raises(AnalysisError, match="significance background 'near'"):
        hotspots.find_clusters(inc, significance={**cfg["significance"], "background": "near"})
