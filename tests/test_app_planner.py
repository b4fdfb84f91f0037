"""The planner's fast paths (gis.coverage what-if functions, gis.app_planner) against the library.

A radius change is a threshold on distances computed once: it must give exactly what
:func:`gis.coverage.compute_coverage` gives at that radius. The what-if answers must
agree with :mod:`gis.siting`'s own solvers on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from gis import app_planner as pl
from gis import coverage as cov


@pytest.fixture(scope="module")
def base(sample_project):
    from gis.district import load_district

    d = load_district(sample_project)

    rows = [dict(r) for r in (d.project.targets or [])]
    b = pl.planner_base(d, None, rows, None, float(d.project.section("app")["radius_slider_m"]["max"]))
    return d, b


@pytest.mark.parametrize("radius", [300.0, 500.0, 1250.0])
def test_coverage_at_equals_a_fresh_search(base, radius: float) -> None:
    d, b = base
    nd = b.distances
    fresh = cov.compute_coverage(d.population_points(), nd.sites, cov.Standard(nd.standard.tier, nd.standard.mode, radius),
                                 network=b.network, max_snap_m=b.max_snap_m, townships=d.townships)
    fast = cov.coverage_at(nd, radius)
    assert fast.population_covered_share == pytest.approx(fresh.population_covered_share, abs=1e-12)
    assert fast.population_covered_share_euclidean == pytest.approx(fresh.population_covered_share_euclidean, abs=1e-12)
    assert (fast.points["covered"].to_numpy() == fresh.points["covered"].to_numpy()).all()
    assert (fast.points["site"].to_numpy() == fresh.points["site"].to_numpy()).all()
    assert fast.by_township["covered_population"].sum() == pytest.approx(fresh.by_township["covered_population"].sum())
    assert len(fast.service_areas) == len(fresh.service_areas)


@pytest.mark.parametrize("radius", [300.0, 800.0])
def test_gaps_from_the_cached_cell_footprints_equal_a_fresh_drawing(base, radius: float) -> None:
    d, b = base
    at = pl.planner_at(b, d, radius)
    g = b.gaps_config
    fresh = cov.coverage_gaps(at.coverage.points, min_population=float(g.get("min_population") or 0.0),
                              raster=d.population_raster, max_gaps=g.get("max_gaps"))
    assert len(at.gaps) == len(fresh) > 0
    assert at.gaps.drop(columns="geometry").equals(fresh.drop(columns="geometry"))
    assert at.gaps.geometry.geom_equals_exact(fresh.geometry, tolerance=1e-6).all()


def test_radius_beyond_the_search_limit_is_refused(base) -> None:
    _, b = base
    with pytest.raises(Exception, match="outside the distances computed"):
        cov.coverage_at(b.distances, b.distances.limit_m * 2)


def test_coverage_grows_with_radius_and_planned_sites(base) -> None:
    _, b = base
    shares = [cov.coverage_at(b.distances, r, areas=False).population_covered_share for r in (200, 400, 800, 1600)]
    assert shares == sorted(shares)
    built = cov.coverage_at(b.distances, 500, areas=False).population_covered_share
    planned = cov.coverage_at(b.distances_planned, 500, areas=False).population_covered_share
    assert planned >= built


def test_what_if_matches_the_siting_solver(base) -> None:
    from gis import siting

    d, b = base
    at = pl.planner_at(b, d, 500.0)
    rec, share = cov.what_if_sites(at.inputs, 5)
    direct = siting.mclp(at.inputs.matrix, at.inputs.weights, 5, covered=at.inputs.covered, bonus=at.inputs.bonus,
                         config=at.inputs.config)
    total = at.inputs.weights.sum()
    assert share == pytest.approx(at.inputs.weights[direct.covered].sum() / total)
    assert len(rec) == 5 and list(rec["rank"]) == [1, 2, 3, 4, 5]
    assert (np.diff(rec["gain_population"]) <= 1e-9).all()  # ranked by marginal gain
    assert rec["cumulative_share"].iloc[-1] == pytest.approx(share)
    assert share >= at.inputs.share_before


def test_reachability_is_decided_by_the_ceiling(base) -> None:
    d, b = base
    at = pl.planner_at(b, d, 500.0)
    inp = at.inputs
    reach = inp.covered | (np.asarray(inp.matrix.sum(axis=0)).ravel() > 0)
    ceiling = inp.weights[reach].sum() / inp.weights.sum()
    above = cov.sites_to_reach(inp, min(1.0, ceiling + 0.01))
    assert not above.reachable and above.best_share == pytest.approx(ceiling)
    assert "无法达到" in pl.what_if_sentence(above, 10, 0.5)
    below = cov.sites_to_reach(inp, (inp.share_before + ceiling) / 2)
    assert below.reachable and below.reached_share >= below.share - 1e-9 and len(below.sites) > 0
    assert f"需要新增 {len(below.sites)} 个网点" in pl.what_if_sentence(below, 10, 0.5)


def test_target_cards_are_red_amber_green_with_generated_names() -> None:
    rows = [
        {"name": "x", "metric": "count", "tiers": ["collection_point"], "target": 10, "direction": ">=",
         "actual": 10, "with_planned": 12, "planned": 2, "gap": 0, "gap_unit": "sites"},
        {"name": "y", "metric": "count", "tiers": ["drop_off_point"], "target": 10, "direction": ">=",
         "actual": 8, "with_planned": 11, "planned": 3, "gap": 2, "gap_unit": "sites"},
        {"name": "500米步行覆盖人口比例", "metric": "population_coverage", "tiers": ["collection_point"], "target": 0.9,
         "direction": ">=", "actual": 0.4, "with_planned": 0.45, "planned": 4},
        {"name": "z", "metric": "households_per_point", "tiers": ["collection_point"], "target": 2000,
         "direction": "<=", "actual": 2500, "with_planned": 1900, "planned": 4, "gap": 3, "gap_unit": "sites"},
    ]
    cards = pl.target_cards(rows, radius_m=800, mode="walk", coverage_now=(0.6, 0.65))
    assert [c.status for c in cards] == ["green", "amber", "red", "amber"]
    assert cards[2].title.startswith("回收网点 800米步行覆盖人口") and "500米" not in cards[2].title
    assert cards[2].actual_text == "60.0%" and "30.0 个百分点" in cards[2].shortfall_text
    assert "+5.0%" in cards[2].planned_text  # the planned sites' contribution, separately
    assert cards[1].shortfall_text.startswith("缺 2 个网点")
    assert cards[3].target_text.startswith("≤")


def test_recommended_sites_carry_place_context(base) -> None:
    d, b = base
    at = pl.planner_at(b, d, 500.0)
    rec, _ = cov.what_if_sites(at.inputs, 5)
    rec = pl.place_context(rec, d, b.existing)
    view = pl.recommended_view(rec)
    assert {"镇街", "地类", "最近现有网点", "距离(米)"} <= set(view.columns)
    assert view["镇街"].notna().all() and (view["最近现有网点"] != "—").all()
    assert view["新增覆盖人口"].dtype.kind == "i"  # integer residents
    chart = pl.township_chart(at.coverage)
    assert chart["人口"].dtype.kind == "i" and chart["覆盖率 %"].is_monotonic_increasing


def test_sites_to_reach_are_ordered_as_the_plain_greedy_orders_them(base) -> None:
    """The lazy greedy order of the chosen sites equals recomputing every gain at each pick."""
    import scipy.sparse as sp

    d, b = base
    at = pl.planner_at(b, d, 650.0)
    answer = cov.sites_to_reach(at.inputs, 0.9)
    chosen = answer.sites
    A = sp.csr_matrix(at.inputs.matrix, dtype=bool)
    w, covered = at.inputs.weights, at.inputs.covered.copy()
    index = {cid: i for i, cid in enumerate(at.inputs.candidates["candidate_id"])}
    left = [int(i) for i in np.random.default_rng(0).permutation([index[c] for c in chosen["candidate_id"]])]
    order, gains = cov._gain_order(A, w, covered, np.asarray(left))
    expect, expect_gains = [], []
    while left:
        g = [float(w[A[i].indices[~covered[A[i].indices]]].sum()) for i in left]
        j = int(np.argmax(g))
        expect.append(left.pop(j))
        expect_gains.append(g[j])
        covered[A[expect[-1]].indices] = True
    assert len(order) > 100
    assert order == expect and gains == expect_gains


def test_planner_recommends_what_gis_run_recommends(sample_project, tmp_path) -> None:
    """At the project's radius and k the app's what-if and gis run's coverage step pick the same sites and
    draw the same gaps: both complement the coverage the target counts (all its tiers)."""
    from gis import steps
    from gis.district import load_district

    d = load_district(sample_project)
    summary, ctx = steps.run_steps(d, tmp_path, ["compliance", "coverage"])
    dc = ctx.coverage
    b = pl.planner_base(d, ctx.compliance, summary.get("targets") or [], ctx.networks,
                        float(d.project.section("app")["radius_slider_m"]["max"]), candidate_check=dc.candidate_check)
    at = pl.planner_at(b, d, float(b.scope.standard.distance_m))
    k = int(dc.siting.k)
    rec, share = cov.what_if_sites(at.inputs, k)
    assert len(rec) == k > 0
    assert set(rec["candidate_id"]) == set(dc.siting.recommended["candidate_id"])
    assert share == pytest.approx(dc.siting.share_after, abs=1e-12)
    assert len(at.gaps) == len(dc.gaps)
    assert at.gaps["population"].sum() == pytest.approx(dc.gaps["population"].sum())


def test_feature_table_with_the_sites_built_once_equals_the_whole_table(base) -> None:
    """The app builds the sites' rows once per project; the table at each radius is the same as built whole,
    and a click finds the nearest feature of it."""
    import pandas as pd

    d, b = base
    at = pl.planner_at(b, d, 500.0)
    rec, _ = cov.what_if_sites(at.inputs, 3)
    whole = pl.feature_table(d, None, at, rec)
    sites = pl.site_features(d)
    pd.testing.assert_frame_equal(pl.feature_table(d, None, at, rec, sites), whole)
    counts = whole["类型"].value_counts()
    assert counts["网点 Site"] == len(d.sites) and counts["覆盖缺口 Gap"] == len(at.gaps)
    assert counts["推荐新址 Recommended"] == 3
    row = whole[whole["类型"] == "网点 Site"].iloc[7]
    assert pl.nearest_feature(whole, row["lat"], row["lon"], d.crs) == row.name
