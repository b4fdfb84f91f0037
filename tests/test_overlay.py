"""Per-point string aggregation without per-point Python equals pandas' groupby join."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gis.overlay import join_per_point


def test_join_per_point_equals_groupby_join():
    rng = np.random.default_rng(3)
    labels = np.array(["four_mountains:禁建区", "basic_farmland", "water_source:一级", "ecological_red_line", "x"])
    point = rng.integers(0, 5000, 20_000)
    values = labels[rng.integers(0, len(labels), 20_000)]
    ours = join_per_point(point, values, 6000)
    ref = (pd.Series(values).groupby(point, sort=True).agg(lambda s: ";".join(dict.fromkeys(s)))
           .reindex(range(6000)).fillna(""))
    assert ours.tolist() == ref.tolist()
    assert (ours[5000:] == "").all()
    assert join_per_point([], [], 3).tolist() == ["", "", ""]
    assert join_per_point([2, 0, 2, 2], ["b", "a", "a", "b"], 3, sep="|").tolist() == ["a", "", "b|a"]


def test_join_per_point_many_distinct_values_falls_back_to_the_code_matrix():
    rng = np.random.default_rng(5)
    values = np.array([f"zone{i}" for i in range(3000)])[rng.integers(0, 3000, 4000)]
    point = rng.integers(0, 300, 4000)  # ~13 values per point: (3001)**13 does not fit in 63 bits
    ours = join_per_point(point, values, 300)
    ref = pd.Series(values).groupby(point).agg(lambda s: ";".join(dict.fromkeys(s))).reindex(range(300)).fillna("")
    assert ours.tolist() == ref.tolist()


def test_nearest_distance_equals_shapely_query_nearest():
    import shapely

    from gis.overlay import nearest_distance

    rng = np.random.default_rng(7)
    centres = rng.uniform(0, [4000, 9000], (60, 2))
    polys = shapely.buffer(shapely.points(centres), rng.uniform(5, 250, 60), quad_segs=int(rng.integers(1, 12)))
    ring = shapely.box(500, 500, 3500, 1200).difference(shapely.box(900, 600, 3000, 1100))  # a hole
    geoms = np.concatenate([polys, [ring, shapely.LineString([(0, 9000), (4000, 0)]), shapely.Point(2000, 4500)]])
    pts = shapely.points(rng.uniform(-1500, [5500, 10500], (10_000, 2)))
    for max_d in (40.0, 600.0):
        (pi, _), d = shapely.STRtree(geoms).query_nearest(pts, max_distance=max_d, return_distance=True,
                                                          all_matches=False)
        ref = np.full(len(pts), np.nan)
        ref[pi] = d
        inside = shapely.STRtree(pts).query(geoms, predicate="covers")[1]
        ours = nearest_distance(pts, geoms, max_d, inside=inside)
        assert np.array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
        xy = np.c_[shapely.get_x(pts), shapely.get_y(pts)]
        np.testing.assert_array_equal(nearest_distance(xy, geoms, max_d, inside=inside), ours)
    assert np.isnan(nearest_distance(pts[:5], geoms[:0], 100.0)).all()


def test_nearest_distance_edges_of_the_search_radius():
    import shapely

    from gis.overlay import nearest_distance

    pts = shapely.points([(0, 0), (5, 0), (10, 0)])
    site = [shapely.Point(5, 0)]
    assert np.isnan(nearest_distance(pts, site, 0.0)[[0, 2]]).all() and nearest_distance(pts, site, 0.0)[1] == 0
    assert nearest_distance(pts, site, 5.0).tolist() == [5.0, 0.0, 5.0]  # the radius itself is inside
    assert nearest_distance(pts, site, np.inf).tolist() == [5.0, 0.0, 5.0]
    d = nearest_distance(pts, [shapely.box(4, -1, 6, 1)], 3.0, inside=[1])
    assert np.isnan(d[0]) and d[1] == 0 and np.isnan(d[2])


def test_nearest_distance_when_every_point_is_inside():
    """All points covered by a receptor polygon: every distance 0, no search (an empty search used to raise)."""
    import shapely

    from gis.overlay import nearest_distance

    pts = shapely.points([(0, 0), (1, 1)])
    d = nearest_distance(pts, [shapely.box(-5, -5, 5, 5)], 100.0, inside=[0, 1])
    assert d.tolist() == [0.0, 0.0]
