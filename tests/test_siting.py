"""Siting: MCLP/LSCP solvers vs spopt + CBC, network coverage matrix, legal candidates only."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from gis import coverage, network, routing, siting
from test_coverage import CRS, X0, Y0, grid_town, make_network_project


def random_instance(n_dem=800, n_cand=120, seed=1):
    rng = np.random.default_rng(seed)
    dxy = rng.uniform(0, 4000, (n_dem, 2))
    w = rng.integers(1, 200, n_dem).astype(float)
    cxy = rng.uniform(0, 4000, (n_cand, 2))
    return siting.coverage_matrix(cxy, dxy, 500.0), w


@pytest.mark.parametrize("k", [3, 10, 20])
def test_greedy_swap_reaches_98pct_of_spopt_optimum(k):
    A, w = random_instance()
    cov0 = np.zeros(A.shape[1], bool)
    cov0[:50] = True  # fixed existing coverage
    ours = siting.greedy_mclp(A, w, k, covered0=cov0)
    exact = siting.exact_mclp(A, w, k, covered0=cov0)
    assert exact.extra["status"] == "Optimal"
    assert ours.covered_weight <= exact.covered_weight + 1e-9
    assert ours.covered_weight >= 0.98 * exact.covered_weight
    # greedy alone: the 1 - 1/e guarantee
    assert siting.greedy_mclp(A, w, k, covered0=cov0, swap=False).covered_weight >= (1 - 1 / np.e) * exact.covered_weight
    # the reported objective is what the chosen sites really cover
    real = np.asarray(A[ours.selected].sum(axis=0)).ravel() > 0
    assert ours.covered_weight == pytest.approx(w[real & ~cov0].sum())
    assert ours.gains.sum() == pytest.approx(ours.covered_weight)


@pytest.mark.parametrize("k", [3, 10, 20])
def test_exact_mclp_matches_spopt_optimum_and_greedy_is_below(k):
    A, w = random_instance()
    cov0 = np.zeros(A.shape[1], bool)
    cov0[:50] = True
    ours = siting.mclp(A, w, k, covered=cov0)
    ref = siting.exact_mclp(A, w, k, covered0=cov0)
    assert ref.extra["status"] == "Optimal" and ours.optimal and ours.method == "highs"
    assert ours.covered_weight == pytest.approx(ref.covered_weight, rel=1e-6)
    assert ours.bound == pytest.approx(ours.covered_weight) and ours.gap == pytest.approx(0.0, abs=1e-9)
    assert len(ours.selected) == k
    real = np.asarray(A[ours.selected].sum(axis=0)).ravel() > 0
    assert ours.covered_weight == pytest.approx(w[real & ~cov0].sum())
    greedy = siting.greedy_mclp(A, w, k, covered0=cov0)
    assert greedy.covered_weight <= ours.covered_weight + 1e-9
    # the greedy's submodular bound really bounds the optimum
    assert siting.greedy_bound(A, w, greedy.selected, k, cov0) >= ours.covered_weight - 1e-9


def test_mclp_past_the_size_limit_is_greedy_with_a_valid_gap():
    A, w = random_instance(seed=3)
    exact = siting.mclp(A, w, 8)
    capped = siting.mclp(A, w, 8, config={"exact_max_nnz": 10})
    assert capped.method.startswith("greedy")
    assert capped.covered_weight <= exact.covered_weight + 1e-9
    assert capped.bound >= exact.covered_weight - 1e-9
    assert capped.gap == pytest.approx((capped.bound - capped.covered_weight) / capped.bound)


def test_mclp_constraints_fixed_groups_and_preference():
    A, w = random_instance(seed=4)
    nc = A.shape[0]
    fixed = [0, 1]
    res = siting.mclp(A, w, 5, fixed=fixed)
    assert res.optimal and len(res.selected) == 5 and not set(fixed) & set(res.selected)
    opened = np.r_[fixed, res.selected]
    assert res.covered_weight == pytest.approx(w[np.asarray(A[opened].sum(axis=0)).ravel() > 0].sum())
    # at least two sites in group "b" (a group the free optimum ignores)
    free = siting.mclp(A, w, 5)
    groups = np.where(np.isin(np.arange(nc), free.selected), "a", "b")
    groups[np.arange(nc) % 2 == 0] = "b"
    grouped = siting.mclp(A, w, 5, groups=groups, min_per_group={"b": 2})
    assert (groups[grouped.selected] == "b").sum() >= 2
    assert grouped.covered_weight <= free.covered_weight + 1e-9
    # a large preference for candidate 7 puts it in the answer
    bonus = np.zeros(nc)
    bonus[7] = w.sum()
    assert 7 in siting.mclp(A, w, 5, bonus=bonus).selected
    need = siting.capacity_minimums({"t1": 4100, "t2": 1999}, {"t1": 2000, "t2": 2500}, existing={"t1": 1})
    assert need == {"t1": 2, "t2": 1}  # ceil(4100 / 2000) - 1 existing; ceil(1999 / 2500)


def test_exact_lscp_matches_spopt_set_cover():
    import pulp
    from spopt.locate import LSCP

    rng = np.random.default_rng(6)
    dxy = rng.uniform(0, 3000, (300, 2))
    cxy = np.r_[dxy[:: 10] + rng.uniform(-50, 50, (30, 2)), rng.uniform(0, 3000, (50, 2))]
    A = siting.coverage_matrix(cxy, dxy, 600.0)
    assert (np.asarray(A.sum(axis=0)).ravel() > 0).all()
    ours = siting.lscp(A)
    cost = np.where(A.T.toarray(), 0.0, 2.0)
    ref = LSCP.from_cost_matrix(cost, service_radius=1.0).solve(pulp.PULP_CBC_CMD(msg=False))
    n_ref = int(round(sum(v.value() for v in ref.fac_vars)))
    assert ours.optimal and len(ours.selected) == n_ref
    assert (np.asarray(A[ours.selected].sum(axis=0)).ravel() > 0).all()
    assert siting.greedy_lscp(A, np.ones(A.shape[1]), 1.0).selected.size >= n_ref


def test_exact_pmedian_matches_spopt():
    import pulp
    from spopt.locate import PMedian

    rng = np.random.default_rng(7)
    cxy, dxy = rng.uniform(0, 10_000, (25, 2)), rng.uniform(0, 10_000, (120, 2))
    w = rng.integers(1, 50, 120).astype(float)
    D = np.hypot(*(cxy[:, None, :] - dxy[None, :, :]).transpose(2, 0, 1))
    ours = siting.pmedian(D, w, 3)
    ref = PMedian.from_cost_matrix(D.T, w, p_facilities=3).solve(pulp.PULP_CBC_CMD(msg=False))
    assert ours.optimal and len(ours.selected) == 3
    assert ours.objective == pytest.approx(pulp.value(ref.problem.objective), rel=1e-6)
    assert ours.objective == pytest.approx((w * D[ours.extra["assignment"], np.arange(120)]).sum())
    fixed = siting.pmedian(D, w, 2, fixed=[0])
    assert 0 in fixed.selected and fixed.objective >= siting.pmedian(D, w, 2).objective - 1e-6


def test_lscp_reaches_target_with_few_sites():
    A, w = random_instance(seed=2)
    res = siting.greedy_lscp(A, w, 0.4)
    assert res.extra["reached"]
    assert w[res.covered].sum() >= 0.4 * w.sum()
    # one site fewer does not reach the target (greedy order)
    fewer = np.asarray(A[res.selected[:-1]].sum(axis=0)).ravel() > 0
    assert w[fewer].sum() < 0.4 * w.sum()
    # spopt's exact MCLP with one site fewer cannot reach it either by much: greedy count is near-minimal
    exact = siting.exact_mclp(A, w, len(res.selected) - 2)
    assert w[exact.covered].sum() < 0.4 * w.sum()
    unreachable = siting.greedy_lscp(A, w, 1.0)
    assert not unreachable.extra["reached"] and unreachable.extra["reachable_share"] < 1


def test_network_coverage_matrix_equals_dense_distances():
    roads, townships, pts, L = grid_town()
    net = routing.NetworkCSR.from_graph(network.graph_from_roads(roads, mode="walk", crs=CRS))
    rng = np.random.default_rng(5)
    cxy = rng.uniform([X0, Y0], [X0 + L, Y0 + L], (30, 2))
    dxy = routing.points_xy(pts)
    A = siting.coverage_matrix(cxy, dxy, 500.0, network=net, batch=7)
    full = dijkstra(net.transposed(), indices=np.arange(net.n))
    cn, cs = net.snap(cxy)
    dn, ds = net.snap(dxy)
    dense = cs[:, None] + full[cn][:, dn] + ds[None, :]
    assert np.array_equal(A.toarray(), dense <= 500.0)
    # and it agrees with the multi-source coverage of each single candidate
    for i in (0, 13):
        nodes = routing.multi_source_distances(net, cxy[i : i + 1], limit=500.0)
        d, _, _ = routing.network_point_distances(net, nodes, dxy)
        assert np.array_equal(A[i].toarray().ravel(), d <= 500.0)


@pytest.fixture(scope="module")
def district_result(tmp_path_factory):
    from gis.district import load_district

    d = load_district(make_network_project(tmp_path_factory.mktemp("siting") / "tiny"))
    return d, coverage.analyse_district(d)


def test_recommended_sites_are_never_on_prohibited_land(district_result):
    from gis.compliance import check_sites

    d, res = district_result
    rec = res.siting.recommended
    assert len(rec) == 5
    # exact by default: HiGHS proves the optimum, and the summary says so
    assert res.siting.mclp.method == "highs" and res.siting.mclp.optimal
    summ = res.siting.summary()
    assert summ["optimal"] and summ["gap"] == pytest.approx(0.0, abs=1e-9)
    assert summ["covered_weight_bound"] == pytest.approx(res.siting.mclp.covered_weight)
    cand = res.siting.candidates
    assert (~cand["eligible"]).any()  # the 四山 band and the farmland township exclude some
    probe = gpd.GeoDataFrame(
        {"site_id": rec["candidate_id"].astype(str), "name": "x", "tier": "collection_point", "status": "planned"},
        geometry=rec.geometry.to_numpy(), crs=rec.crs,
    )
    verdicts = check_sites(probe, townships=d.townships, zones=d.zones, landuse=d.landuse).sites["verdict"]
    assert (verdicts != "prohibited").all()
    assert not rec.sjoin(d.zones, predicate="intersects").shape[0]


def test_adding_recommended_sites_raises_coverage_by_the_reported_amount(district_result):
    d, res = district_result
    out = res.siting
    head = res.headline
    std = head.standard
    both = gpd.GeoDataFrame(
        gpd.pd.concat([head.sites[["geometry"]], out.recommended[["geometry"]]], ignore_index=True), crs=d.crs
    )
    after = coverage.compute_coverage(head.points.drop(columns=["covered"]), both, std,
                                      network=res.networks["walk"], max_snap_m=float(res.config["max_snap_m"]))
    assert out.share_before == pytest.approx(head.population_covered_share)
    assert after.population_covered_share == pytest.approx(out.share_after, abs=1e-12)
    total = head.points["population"].sum()
    assert after.population_covered_share - out.share_before == pytest.approx(out.mclp.covered_weight / total)
    assert out.recommended["cumulative_share"].iloc[-1] == pytest.approx(out.share_after)
    assert out.share_after > out.share_before


def test_township_minimums_from_a_presence_target_and_raised_k():
    existing = gpd.GeoDataFrame({"tier": ["transfer_station", "collection_point"], "township": ["A", "B"]},
                                geometry=gpd.points_from_xy([0, 1], [0, 1]))
    targets = [{"metric": "township_presence", "tiers": ["transfer_station"], "target": 1.0},
               {"metric": "township_presence", "tiers": ["transfer_station"], "target": 0.5, "min_per_township": 3},
               {"metric": "count", "tiers": ["transfer_station"], "target": 9}]
    need = siting.township_minimums(targets, "transfer_station", existing, ["A", "B", "C"])
    assert need == {"B": 1, "C": 1}  # A already has one; the 0.5 share row adds no per-township constraint
    A, w = random_instance(seed=8)
    groups = np.array(["B", "C"] * (A.shape[0] // 2))
    res = siting.mclp(A, w, 1, groups=groups, min_per_group=need)
    assert res.optimal and set(groups[res.selected]) == {"B", "C"} and res.extra["k_raised_to"] == 2


def test_merging_identical_demand_columns_keeps_the_optimum():
    # duplicate every demand cell: the merged model must give the same optimum as the doubled weights
    A, w = random_instance(seed=9)
    A2 = sp.hstack([A, A], format="csr")
    w2 = np.r_[w, w]
    merged, wm = siting._merge_columns(A2, w2)
    assert merged.shape[1] <= A.shape[1] and wm.sum() == pytest.approx(w2.sum())
    assert siting.mclp(A2, w2, 6).covered_weight == pytest.approx(2 * siting.mclp(A, w, 6).covered_weight)
