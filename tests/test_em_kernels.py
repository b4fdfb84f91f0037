"""The compiled loops of the cluster detector (gis._em_kernels) against the numpy code they replace."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from gis import hotspots
from gis._em_kernels import disc_counts, pair_msums
from gis.cluster_mixture import Sites


def _stack_and_pairs(timed: bool):
    """A stack of three problems (overlapping sites over a background; one far away) and its pairs."""
    from gis.cluster_batch import Problem, _PairFinder, _stack

    rng = np.random.default_rng(7)
    params = hotspots.mixture_params(hotspots.cluster_params())
    problems = []
    for shift in (0.0, 50_000.0, 20.0):
        xy = np.vstack([rng.normal((900, 900), 80, (60, 2)), rng.normal((1100, 1000), 140, (40, 2)),
                        rng.uniform(0, 3000, (150, 2))]) + shift  # fmt: skip
        x = np.column_stack([xy, rng.uniform(0, 900, len(xy))]) if timed else xy
        sites = Sites(np.array([[950.0, 900.0], [1150.0, 1000.0], [2500.0, 300.0]]) + shift, np.array([70.0, 150.0, 90.0]),
                      np.array([50.0, 35.0, 2.0]), *((np.array([200.0, 500.0, 800.0]), np.array([60.0, 150.0, 7.0]))
                                                     if timed else ()))  # fmt: skip
        problems.append(Problem(x, np.full(len(x), np.log(20e-6)), sites, 3000.0**2, params.min_background))
    stk, _ = _stack(problems)
    return stk, _PairFinder(stk, params.reach_sigmas).pairs(np.arange(len(stk.n))), params


@pytest.mark.parametrize("timed", [False, True])
def test_compiled_e_step_is_the_numpy_one(timed):
    """pair_estep's pair terms and point totals are _pair_log + _lse's (one pass instead of a dozen)."""
    from gis.cluster_batch import _e_terms, _lse, _pair_log

    stk, pr, params = _stack_and_pairs(timed)
    lf, inr = _pair_log(stk, pr, params.reach_sigmas)
    lse, e, tot = _lse(stk, pr, lf, inr)
    assert inr.any() and (~inr).any()  # pairs beyond reach (in the finder's margin) are there and cut
    lse_c, e_c, tot_c = _e_terms(stk, pr, params.reach_sigmas)
    np.testing.assert_allclose(e_c, e, rtol=1e-13, atol=0)
    np.testing.assert_allclose(tot_c, tot, rtol=1e-13)
    np.testing.assert_allclose(lse_c, lse, rtol=1e-13)


@pytest.mark.parametrize("timed", [False, True])
def test_compiled_m_step_sums_are_numpys_bincounts(timed):
    """pair_msums adds the responsibility-weighted coordinates per site in pair order, as np.bincount does."""
    from gis.cluster_batch import _lse, _pair_log, pair_sums

    stk, pr, params = _stack_and_pairs(timed)
    _, e, tot = _lse(stk, pr, *_pair_log(stk, pr, params.reach_sigmas))
    want = pair_sums(stk, pr, e / tot[pr.pi], len(stk.n))
    got = pair_msums(e, tot, pr.pi, pr.pk, stk.x, timed, len(stk.n))
    assert got.shape == want.shape == ((6 if timed else 4), len(stk.n))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-9)


def test_compiled_fit_is_the_per_group_fit():
    """fit_many (compiled steps) still gives fit_intensity's sites (numpy), as before the kernels."""
    from gis.cluster_batch import Problem, fit_many
    from gis.cluster_mixture import fit_intensity

    rng = np.random.default_rng(5)
    params = replace(hotspots.mixture_params(hotspots.cluster_params()), accelerate="none")
    x = np.vstack([rng.normal((900, 900), 80, (50, 2)), rng.uniform(0, 3000, (180, 2))])
    start = Sites(np.array([[950.0, 950.0], [1250.0, 1100.0]]), np.array([60.0, 60.0]), np.array([30.0, 30.0]))
    pr = Problem(x, np.full(len(x), np.log(10e-6)), start, 3000.0**2, params.min_background)
    (s, ll, _), = fit_many([pr], params)
    ref, ll_r, _ = fit_intensity(x, pr.log_bg, start, params, area=pr.area)
    np.testing.assert_allclose(s.mu, ref.mu, atol=1e-6)
    np.testing.assert_allclose(s.sigma, ref.sigma, rtol=1e-9)
    assert ll == pytest.approx(ll_r, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300), spread=st.floats(1.0, 5000.0), cell=st.floats(5.0, 400.0),
    radii=st.lists(st.floats(0.0, 2000.0), min_size=1, max_size=6), grid=st.booleans(), seed=st.integers(0, 2**16),
)
def test_disc_counts_are_the_k_d_trees(n, spread, cell, radii, grid, seed):
    """disc_counts (grid cells wholly inside, outside or crossed) counts the points within each radius of each query
    exactly as cKDTree.query_ball_point(return_length=True), whatever the cell size, also on points lying on a
    grid of whole metres (on the cells' edges and at ties of distance)."""
    rng = np.random.default_rng(seed)
    xy = rng.normal(0.0, spread, (n, 2)) + rng.uniform(-1e5, 1e5, 2)
    if grid:
        xy = np.round(xy / 10.0) * 10.0
    q = xy[rng.permutation(n)[: max(n // 2, 1)]] if n else np.zeros((3, 2))
    r = np.array(radii)
    got = disc_counts(np.ascontiguousarray(xy), np.ascontiguousarray(q), r, cell)
    want = (np.column_stack([cKDTree(xy).query_ball_point(q, v, return_length=True) for v in r]) if n
            else np.zeros((len(q), len(r)), dtype=np.int64))  # fmt: skip
    np.testing.assert_array_equal(got, want)



@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 400), spread=st.floats(5.0, 3000.0), h=st.floats(5.0, 200.0), grid=st.booleans(),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_kernel_sums_are_the_sorted_k_d_tree_pairs(n, spread, h, grid, seed):
    """kernel_sums (grid of 3h cells) gives the Gaussian kernel sums of the k-d tree's pairs within 3h, summed in
    point order, plus 1 — what gis.cluster_scan.kernel_weights_at computed with sparse_distance_matrix — to the last
    bits of exp; and the same sums at the centres when only a subset of the points (a partition with its halo)
    holds every point within 3h of them."""
    from gis._em_kernels import kernel_sums

    rng = np.random.default_rng(seed)
    xy = rng.normal(0.0, spread, (n, 2)) + rng.uniform(-1e5, 1e5, 2)
    if grid:
        xy = np.round(xy / 10.0) * 10.0
    c = xy[: n // 2]
    got = kernel_sums(c, xy, h)
    want = np.ones(len(c))
    if len(c):
        sdm = cKDTree(c).sparse_distance_matrix(cKDTree(xy), 3.0 * h, output_type="ndarray")
        sdm = sdm[np.lexsort((sdm["j"], sdm["i"]))]
        want += np.bincount(sdm["i"], weights=np.exp(-0.5 * (sdm["v"] / h) ** 2), minlength=len(c))
    np.testing.assert_allclose(got, want, rtol=1e-13)
    if len(c):
        near = np.flatnonzero(cKDTree(c).query(xy, k=1)[0] <= 3.0 * h + 1.0)  # the halo, in point order
        np.testing.assert_array_equal(kernel_sums(c, xy[near], h), got)


@pytest.mark.parametrize("timed", [False, True])
def test_compiled_em_loop_is_the_numpy_loop(timed, monkeypatch):
    """fit_many with the compiled loop (gis._em_kernels.em_plain) gives the numpy loop's fits (_plain_reference):
    sites, ℓ and backgrounds, with problems stopping at different steps, sites starting far from their points
    (their pairs searched again several times), backgrounds fitted and fixed, and the step limit reached."""
    from gis import cluster_batch
    from gis.cluster_batch import Problem, fit_many

    rng = np.random.default_rng(3)
    params = replace(hotspots.mixture_params(hotspots.cluster_params()), time=timed, accelerate="none")
    problems = []
    for j, shift in enumerate((0.0, 40_000.0, 90_000.0, 150_000.0)):
        xy = np.vstack([rng.normal((900, 900), 60 + 30 * j, (70, 2)), rng.normal((1400, 1200), 120, (40, 2)),
                        rng.uniform(0, 3000, (120, 2))]) + shift  # fmt: skip
        x = np.column_stack([xy, rng.uniform(0, 900, len(xy))]) if timed else xy
        far = Sites(np.array([[400.0, 300.0], [2000.0, 1900.0]]) + shift, np.array([40.0, 60.0]), np.array([20.0, 20.0]),
                    *((np.array([100.0, 700.0]), np.array([30.0, 30.0])) if timed else ()))  # fmt: skip
        problems.append(Problem(x, np.full(len(x), np.log(20e-6)), far, 3000.0**2 if j != 2 else None, params.min_background))
    for limit in (params.max_iter, 7):
        p = replace(params, max_iter=limit)
        fast = fit_many(problems, p)
        with monkeypatch.context() as mp:
            mp.setattr(cluster_batch, "_plain", cluster_batch._plain_reference)
            ref = fit_many(problems, p)
        for (s, ll, bg), (r, ll_r, bg_r) in zip(fast, ref):
            np.testing.assert_allclose(s.mu, r.mu, rtol=1e-11)
            np.testing.assert_allclose(s.sigma, r.sigma, rtol=1e-11)
            np.testing.assert_allclose(s.n, r.n, rtol=1e-11)
            if timed:
                np.testing.assert_allclose(s.tm, r.tm, rtol=1e-11)
                np.testing.assert_allclose(s.tau, r.tau, rtol=1e-11)
            assert ll == pytest.approx(ll_r, rel=1e-12) and bg == pytest.approx(bg_r, rel=1e-11)


@pytest.mark.parametrize("timed", [False, True])
def test_compiled_pair_terms_are_the_dense_ones(timed):
    """The pair branch of _site_log (compiled: gis._em_kernels.pair_log_terms) gives, pair by pair, the dense
    numpy branch's log terms and squared distances."""
    from gis.cluster_mixture import _site_log

    rng = np.random.default_rng(4)
    x = rng.uniform(0, 2000, (300, 3 if timed else 2))
    s = Sites(rng.uniform(0, 2000, (5, 2)), rng.uniform(30, 200, 5), rng.uniform(1, 60, 5),
              *((rng.uniform(0, 900, 5), rng.uniform(7, 150, 5)) if timed else ()))  # fmt: skip
    lf, d2 = _site_log(x, s)
    i, k = np.repeat(np.arange(300), 5), np.tile(np.arange(5), 300)
    lf_p, d2_p = _site_log(x, s, i, k)
    np.testing.assert_allclose(lf_p, lf.ravel(), rtol=1e-13)
    np.testing.assert_allclose(d2_p, d2.ravel(), rtol=1e-13)


@pytest.mark.parametrize("timed", [False, True])
def test_split_moments_are_the_weighted_offsets_second_moments(timed):
    """split_moments: per site, the responsibility-weighted second moments of its points' offsets (standardised by
    σ and τ with time) over the total weight, as numpy computes them from the site's pairs."""
    from scipy.spatial import cKDTree as Tree

    from gis._em_kernels import split_moments
    from gis.cluster_mixture import intensity

    rng = np.random.default_rng(9)
    x = np.column_stack([rng.normal(1000, 150, (400, 2)), rng.uniform(0, 900, 400)])[:, : 3 if timed else 2]
    s = Sites(np.array([[950.0, 1000.0], [1100.0, 900.0]]), np.array([90.0, 140.0]), np.array([60.0, 40.0]),
              *((np.array([300.0, 600.0]), np.array([80.0, 120.0])) if timed else ()))  # fmt: skip
    inten = intensity(Tree(x[:, :2]), x, np.full(len(x), np.log(20e-6)), s, 3.5)
    none = np.zeros(0)
    got = split_moments(x, inten.i, inten.e, inten.tot, inten.start, s.mu, s.sigma, s.tm if timed else none,
                        s.tau if timed else none, timed, np.array([1, 0]))  # fmt: skip
    for j, a in enumerate([1, 0]):
        rows = np.arange(inten.start[a], inten.start[a + 1])
        r = inten.e[rows] / inten.tot[inten.i[rows]]
        d = x[inten.i[rows], :2] - s.mu[a]
        z = np.column_stack([d / s.sigma[a], (x[inten.i[rows], 2] - s.tm[a]) / s.tau[a]]) if timed else d
        np.testing.assert_allclose(got[j], (r[:, None, None] * z[:, :, None] * z[:, None, :]).sum(axis=0) / r.sum(),
                                   rtol=1e-12)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 120), min_size=1, max_size=5), spread=st.floats(1.0, 3000.0),
       cell=st.floats(5.0, 500.0), grid=st.booleans(), seed=st.integers(0, 2**16))  # fmt: skip
def test_ball_pairs_are_each_problems_k_d_tree_balls(sizes, spread, cell, grid, seed):
    """ball_pairs (a grid per problem of a stack) gives, per site, the points of its own problem within its radius,
    ascending — cKDTree.query_ball_point on that problem's points — whatever the cell, the radii (wider than the
    problem too) and ties on a grid of whole metres."""
    from gis._em_kernels import ball_pairs, problem_grids

    rng = np.random.default_rng(seed)
    xy = rng.normal(0.0, spread, (sum(sizes), 2))
    if grid:
        xy = np.round(xy / 10.0) * 10.0
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    end = first + np.array(sizes)
    sp = np.repeat(np.arange(len(sizes)), 3)
    centre = rng.normal(0.0, spread, (len(sp), 2))
    radius = rng.uniform(0.0, 3 * spread, len(sp))
    sites = rng.permutation(len(sp)).astype(np.int64)
    pi, pk = ball_pairs(xy, sp, *problem_grids(xy, first, end, cell)[:5], cell, centre, radius, sites)
    want_i, want_k = [], []
    for k in sites:
        p = sp[k]
        own = xy[first[p]:end[p]]
        hit = sorted(cKDTree(own).query_ball_point(centre[k], radius[k])) if len(own) else []
        want_i += [first[p] + h for h in hit]
        want_k += [k] * len(hit)
    np.testing.assert_array_equal(pi, np.array(want_i, dtype=np.int64))
    np.testing.assert_array_equal(pk, np.array(want_k, dtype=np.int64))
