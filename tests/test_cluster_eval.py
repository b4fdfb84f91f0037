"""gis.cluster_eval.planted_ceiling: recall of the true-parameter assignment in a crowded case."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from gis.cluster_eval import place_groups, planted_ceiling
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
