"""gis.cluster_eval.planted_ceiling: recall of the true-parameter assignment in a crowded case."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from gis.cluster_eval import evaluate, evaluate_places, place_groups, planted_ceiling, planted_places
from gis.cluster_mixture import Sites


def _crowded(rng: np.random.Generator) -> tuple[gpd.GeoDataFrame, pd.DataFrame, pd.DataFrame]:
    """A small site B (15 reports, σ 60 m) between two big ones 120 m either side (60 each, σ 100 m); a far one C."""
    plan = [("A1", (-120.0, 0.0), 100.0, 60), ("B", (0.0, 0.0), 60.0, 15), ("A2", (120.0, 0.0), 100.0, 60),
            ("C", (3000.0, 0.0), 80.0, 30)]  # fmt: skip
    origin = np.array([640_000.0, 3_270_000.0])  # EPSG:4544 metres (Chongqing)
    xs, ids, rows = [], [], []
    for cid, centre, sigma, n in plan:
        pts = rng.normal(centre, sigma, (n, 2))
        xs.append(pts)
        ids += [cid] * n
        d = np.hypot(*(pts - centre).T)
        lonlat = gpd.GeoSeries(gpd.points_from_xy([centre[0] + origin[0]], [centre[1] + origin[1]]), crs=4544).to_crs(4326)
        rows.append({"cluster_id": cid, "kind": "illegal_elv_dismantling", "lon": lonlat.x[0], "lat": lonlat.y[0],
                     "radius_m": float(np.quantile(d, 0.95)), "sigma_m": sigma, "n_incidents": n})  # fmt: skip
    xy = np.vstack(xs) + origin
    inc = gpd.GeoDataFrame(
        {"incident_id": [f"I{i}" for i in range(len(xy))], "kind": "illegal_elv_dismantling"},
        geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=4544,
    )  # fmt: skip
    members = pd.DataFrame({"incident_id": inc["incident_id"], "cluster_id": ids})
    return inc, pd.DataFrame(rows), members


def test_true_sites_miss_a_swallowed_neighbour_and_places_recover_it():
    """Even with the true parameters the small site between two big ones is shared out (no cluster holds over
    half of it); with too-close sites reported as one place it is recovered."""
    inc, truth, members = _crowded(np.random.default_rng(0))  # a draw where B's own region holds under half of it
    alone = planted_ceiling(inc, truth, members, reach_sigmas=3.0, place_sigmas=0.0).set_index("truth_id")
    assert alone.loc[["A1", "A2", "C"], "recovered"].all()
    assert not alone.loc["B", "recovered"] and alone.loc["B", "shared"] * 2 <= 15
    places = planted_ceiling(inc, truth, members, reach_sigmas=3.0, place_sigmas=2.0).set_index("truth_id")
    assert places["recovered"].all()
    assert places.loc["B", "found_id"] in {places.loc["A1", "found_id"], places.loc["A2", "found_id"]}


def test_place_groups_merge_only_sites_closer_than_two_rms_spreads():
    """Sites 150 m apart with σ 100 m are one place; 250 m apart they stay two (2 rms = 200 m)."""
    near = Sites(np.array([[0.0, 0.0], [150.0, 0.0]]), np.array([100.0, 100.0]), np.array([30.0, 30.0]))
    far = Sites(np.array([[0.0, 0.0], [250.0, 0.0]]), np.array([100.0, 100.0]), np.array([30.0, 30.0]))
    assert list(place_groups(near, 2.0)) == [0, 0]
    assert list(place_groups(far, 2.0)) == [0, 1]
    assert list(place_groups(near, 0.0)) == [0, 1]  # 0: every site is reported


def _hand_made() -> tuple[pd.DataFrame, pd.DataFrame, "object", pd.DataFrame]:
    """Sites A1, A2 100 m apart (σ 80 m, 20 reports each), site C 5 km away (σ 80 m, 20 reports), 10 background
    reports 2 km away; found: cluster 1 holds A1 and A2 (centre between them), cluster 2 holds the background."""
    from gis.hotspots import ClusterResult

    origin = np.array([640_000.0, 3_270_000.0])  # EPSG:4544 metres (Chongqing)
    plan = [("A1", (0.0, 0.0)), ("A2", (100.0, 0.0)), ("C", (5000.0, 0.0))]
    lonlat = gpd.GeoSeries(gpd.points_from_xy([p[1][0] + origin[0] for p in plan], [origin[1]] * 3), crs=4544).to_crs(4326)
    truth = pd.DataFrame({"cluster_id": [p[0] for p in plan], "kind": "illegal_elv_dismantling", "lon": lonlat.x,
                          "lat": lonlat.y, "radius_m": 180.0, "sigma_m": 80.0, "n_incidents": 20})  # fmt: skip
    ids = [f"I{i}" for i in range(70)]
    truth_of = ["A1"] * 20 + ["A2"] * 20 + ["C"] * 20 + [None] * 10
    members_truth = pd.DataFrame({"incident_id": ids, "cluster_id": truth_of})
    found = pd.DataFrame({"incident_id": ids[:40] + ids[60:], "cluster_id": [1] * 40 + [2] * 10})
    centres = origin + np.array([[50.0, 0.0], [0.0, 2000.0]])
    clusters = gpd.GeoDataFrame(
        {"cluster_id": [1, 2], "centroid_x": centres[:, 0], "centroid_y": centres[:, 1], "four_mountains_level": None},
        geometry=gpd.points_from_xy(centres[:, 0], centres[:, 1]), crs=4544,
    )  # fmt: skip
    oracle = pd.DataFrame({"truth_id": ["A1", "A2", "C"], "detectable": True})
    return truth, members_truth, ClusterResult(clusters=clusters, members=found), oracle


def test_two_overlapping_sites_in_one_cluster_are_one_place_recovered_and_background_is_a_false_positive():
    """A1 and A2 (100 m < 2σ apart) are one place, recovered by cluster 1; C is a place of its own, missed;
    cluster 2 (background reports only) is the one false positive."""
    truth, members_truth, result, oracle = _hand_made()
    e = evaluate_places(result, truth, members_truth, oracle, link_sigmas=2.0)
    assert (e["places"], e["places_detectable"]) == (2, 2)
    t = e["table"].set_index("n_sites")
    assert t.loc[2, "recovered"] and t.loc[2, "found_id"] == 1 and t.loc[2, "shared"] == 40
    assert not t.loc[1, "recovered"]
    assert e["recall_place_detectable"] == 0.5 and e["precision_place"] == 0.5
    site = evaluate(result, truth, members_truth, oracle)  # per site: A1 and A2 both recovered by cluster 1
    assert site["recall"] == 2 / 3 and site["precision"] == 0.5


def test_planted_places_link_chains_of_close_sites_of_one_kind_only():
    """Sites 150 m apart in a row (σ 80 m: 2σ = 160 m) chain into one place; a site of another kind on top of
    them and a site 400 m further stay places of their own."""
    truth, _, _, _ = _hand_made()
    row = truth.iloc[[0, 0, 0, 0, 0]].reset_index(drop=True)
    xs = np.array([0.0, 150.0, 300.0, 700.0, 150.0]) + 640_000.0
    ll = gpd.GeoSeries(gpd.points_from_xy(xs, [3_270_000.0] * 5), crs=4544).to_crs(4326)
    row = row.assign(cluster_id=list("abcde"), lon=ll.x, lat=ll.y)
    row.loc[4, "kind"] = "scattered_polluting"
    place = planted_places(row, 4544, link_sigmas=2.0)
    assert place[0] == place[1] == place[2] and len({place[0], place[3], place[4]}) == 3


def test_a_place_visited_site_by_site_counts_only_in_the_lenient_place_recall():
    """Cluster 1 split into one cluster per site (A1, A2 each recovered on its own): the place has no cluster
    holding over half of it (strict place rule: missed) but every site is recovered (lenient rule: found)."""
    from gis.hotspots import ClusterResult

    truth, members_truth, result, oracle = _hand_made()
    found = result.members.copy()
    found.loc[found["incident_id"].isin([f"I{i}" for i in range(20, 40)]), "cluster_id"] = 3
    origin = np.array([640_000.0, 3_270_000.0])
    centres = origin + np.array([[0.0, 0.0], [0.0, 2000.0], [100.0, 0.0]])
    clusters = gpd.GeoDataFrame(
        {"cluster_id": [1, 2, 3], "centroid_x": centres[:, 0], "centroid_y": centres[:, 1], "four_mountains_level": None},
        geometry=gpd.points_from_xy(centres[:, 0], centres[:, 1]), crs=4544,
    )  # fmt: skip
    e = evaluate_places(ClusterResult(clusters=clusters, members=found), truth, members_truth, oracle, link_sigmas=2.0)
    assert e["recall_place_detectable"] == 0.0 and e["recall_place_or_sites"] == 0.5
    assert e["precision_place"] == 2 / 3  # clusters 1 and 3 each recover a site; 2 is background


def test_poisson_sf_equals_scipy_stats():
    from scipy.stats import poisson

    from gis.cluster_scan import poisson_sf

    k = np.arange(-3, 120)[None, :]
    mu = np.array([0.0, 1e-9, 0.4, 1.0, 7.5, 60.0])[:, None]
    assert np.array_equal(poisson_sf(k, mu), poisson.sf(k, mu))


def test_true_activity_periods_tell_apart_a_small_site_on_top_of_a_big_one():
    """A big site (60 reports, σ 100 m, active in 2021) and a small one 40 m away (20 reports, σ 80 m, active in
    2023): by place alone the small site's reports go to the big one (one cluster; the matching rule counts
    both as recovered, it is one place to visit); with the sites' true activity periods and the reports' dates
    (ceiling_clusters dated) each site is a cluster of its own holding its own reports."""
    from gis.cluster_eval import ceiling_clusters, ceiling_places

    rng = np.random.default_rng(5)
    origin = np.array([640_000.0, 3_270_000.0])
    plan = [("BIG", 0.0, 100.0, 60, "2021-01-01", 365), ("SMALL", 40.0, 80.0, 20, "2023-01-01", 180)]
    xs, ids, dates, rows = [], [], [], []
    for cid, dx, sigma, n, start, days in plan:
        xs.append(rng.normal((dx, 0.0), sigma, (n, 2)))
        d = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, days, n)).round(), unit="D")
        dates += list(d)
        ids += [cid] * n
        ll = gpd.GeoSeries(gpd.points_from_xy([origin[0] + dx], [origin[1]]), crs=4544).to_crs(4326)
        rows.append({"cluster_id": cid, "kind": "illegal_elv_dismantling", "lon": ll.x[0], "lat": ll.y[0],
                     "radius_m": 2.3 * sigma, "sigma_m": sigma, "n_incidents": n, "first_date": str(d.min().date()),
                     "last_date": str(d.max().date())})  # fmt: skip
    xy = np.vstack(xs) + origin
    inc = gpd.GeoDataFrame({"incident_id": [f"I{i}" for i in range(len(xy))], "kind": "illegal_elv_dismantling",
                            "date": dates}, geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=4544)  # fmt: skip
    truth, members = pd.DataFrame(rows), pd.DataFrame({"incident_id": inc["incident_id"], "cluster_id": ids})
    oracle = pd.DataFrame({"truth_id": ["BIG", "SMALL"], "detectable": True})
    place = ceiling_places(truth, inc.crs, place_sigmas=0.0)
    by_place = evaluate(ceiling_clusters(inc, truth, reach_sigmas=3.0, place=place, dated=False), truth, members, oracle)
    by_time = evaluate(ceiling_clusters(inc, truth, reach_sigmas=3.0, place=place, dated=True), truth, members, oracle)
    t = by_place["table"].set_index("truth_id")
    assert t.loc["BIG", "found_id"] == t.loc["SMALL", "found_id"] and by_place["found"] == 1
    t = by_time["table"].set_index("truth_id")
    assert t.loc["BIG", "found_id"] != t.loc["SMALL", "found_id"] and by_time["found"] == 2
    assert t.loc["BIG", "shared"] >= 0.9 * 60 and t.loc["SMALL", "shared"] >= 0.9 * 20 and t["recovered"].all()
