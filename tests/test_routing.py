"""gis.routing against brute force with scipy: nearest destination by road (one-way
streets honoured, snapping onto the main component) and the straight-line fallback.

The nearest station is the one whose node is reached first by road; the snap
distance of the station is added afterwards (it does not take part in the choice)."""

from __future__ import annotations

import numpy as np
import shapely
from scipy.sparse.csgraph import dijkstra

from gis.routing import NetworkCSR, main_component, nearest_by_network, nearest_euclidean

CRS = "EPSG:4544"


def _grid_network(n: int = 12, step: float = 100.0, seed: int = 0) -> NetworkCSR:
    """An n×n street grid; a few streets one-way, plus an isolated two-node fragment."""
    rng = np.random.default_rng(seed)
    ij = np.array([(i, j) for i in range(n) for j in range(n)])
    xy = ij * step
    u, v, w = [], [], []
    for a in range(n * n):
        for b in (a + 1, a + n):
            if (b == a + 1 and (a + 1) % n == 0) or b >= n * n:
                continue
            length = step * rng.uniform(1.0, 1.5)
            u.append(a), v.append(b), w.append(length)
            if rng.random() > 0.15:  # 15 % of the streets are one-way
                u.append(b), v.append(a), w.append(length)
    k = n * n
    xy = np.vstack([xy, [[5000.0, 5000.0], [5050.0, 5000.0]]])
    u += [k, k + 1]
    v += [k + 1, k]
    w += [50.0, 50.0]
    return NetworkCSR.from_edges(np.array(u), np.array(v), np.array(w), np.arange(k + 2), xy, CRS)


def test_nearest_by_network_equals_all_pairs_dijkstra():
    net = _grid_network()
    rng = np.random.default_rng(1)
    src_xy = rng.uniform(-30, 1130, (60, 2))
    dst_xy = rng.uniform(0, 1100, (7, 2))
    limit, snap_max = 900.0, 200.0
    idx, dist, routed, dst_ok = nearest_by_network(shapely.points(src_xy), shapely.points(dst_xy), limit, net, snap_max)

    main = main_component(net)
    assert len(main) <= 144 and not np.isin([144, 145], main).any()  # the fragment is not the main component
    full = dijkstra(net.matrix, directed=True)
    main_xy = net.xy[main]
    s_node = main[np.argmin(np.linalg.norm(src_xy[:, None] - main_xy[None], axis=2), axis=1)]
    s_snap = np.linalg.norm(src_xy - net.xy[s_node], axis=1)
    d_node = main[np.argmin(np.linalg.norm(dst_xy[:, None] - main_xy[None], axis=2), axis=1)]
    d_snap = np.linalg.norm(dst_xy - net.xy[d_node], axis=1)
    # the station reached first from the site's node (road distance node → node, one-way
    # honoured) is chosen; its distance adds both snap distances and must be within the limit
    road = full[s_node][:, d_node]
    j = np.argmin(road, axis=1)
    rows = np.arange(len(src_xy))
    total = s_snap + road[rows, j] + d_snap[j]
    assert routed.all() and dst_ok.all()
    within = (road[rows, j] <= limit) & (total <= limit)
    assert within.sum() > 20 and (~within).sum() >= 1
    assert np.array_equal(idx >= 0, within)
    np.testing.assert_allclose(dist[within], total[within], rtol=1e-12)
    np.testing.assert_allclose(road[np.flatnonzero(within), idx[within]], road[rows, j][within], rtol=1e-12)


def test_nearest_euclidean_equals_brute_force_within_limit():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 1000, (200, 2))
    dst = rng.uniform(0, 1000, (15, 2))
    idx, dist = nearest_euclidean(shapely.points(src), shapely.points(dst), 120.0)
    d = np.linalg.norm(src[:, None] - dst[None], axis=2)
    near = d.min(axis=1) <= 120.0
    assert np.array_equal(idx >= 0, near)
    np.testing.assert_allclose(dist[near], d.min(axis=1)[near])
    assert np.isnan(dist[~near]).all()


def test_a_radius_is_a_threshold_on_pairs_searched_once():
    """Pairs searched once to 1,500 m with their distances, thresholded at r, are the pairs a search
    to r finds — by road (one-way streets, snapping) and by straight line."""
    from gis.coverage import CandidateReach
    from gis.siting import coverage_matrix

    net = _grid_network()
    rng = np.random.default_rng(3)
    cand = rng.uniform(-50, 1150, (40, 2))
    cells = rng.uniform(-50, 1150, (300, 2))
    for network in (net, None):
        reach = CandidateReach.search(cand, cells, 1500.0, network=network, max_snap_m=120.0)
        for r in (100.0, 250.0, 500.0, 777.0, 1500.0):
            want = coverage_matrix(cand, cells, r, network=network, max_snap_m=120.0)
            got = reach.matrix(r)
            assert got.shape == want.shape and (got != want).nnz == 0, (network is None, r)
        assert reach.matrix(500.0).nnz > 0
