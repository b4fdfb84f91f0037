"""The scan detector's mixture step (gis.cluster_mixture): EM against sklearn, and the sites it picks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from gis import hotspots
from gis.cluster_mixture import Sites, assign, fit_intensity, initial_sites, select_sites


@pytest.fixture(scope="module")
def params():
    """The mixture parameters of layers/hotspots.yaml."""
    return hotspots.mixture_params(hotspots.cluster_params())


def _sites(xy: np.ndarray, lam_per_km2: float, side: float, rng: np.random.Generator) -> np.ndarray:
    """``xy`` plus a uniform background of ``lam_per_km2`` over a square of ``side`` metres."""
    n_bg = rng.poisson(lam_per_km2 * (side / 1000.0) ** 2)
    return np.vstack([xy, rng.uniform(0.0, side, size=(n_bg, 2))])


def test_em_without_background_is_sklearns_spherical_mixture(params):
    """λ0 → 0: the Poisson-intensity EM is the EM of a spherical Gaussian mixture (same start, same fit)."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal((0, 0), 60, (80, 2)), rng.normal((250, 40), 90, (60, 2)), rng.normal((60, 300), 40, (40, 2))])
    start = Sites(np.array([[20.0, 10.0], [200.0, 0.0], [80.0, 250.0]]), np.array([50.0, 50.0, 50.0]), np.full(3, 60.0))
    tight = replace(params, max_iter=2000, tol=1e-10, min_sigma_m=1e-3, reach_sigmas=50.0)
    mine, _, _ = fit_intensity(x, np.full(len(x), np.log(1e-300)), start, tight)
    gm = GaussianMixture(
        3, covariance_type="spherical", means_init=start.mu, weights_init=start.n / start.n.sum(),
        precisions_init=1 / start.sigma**2, tol=1e-12, max_iter=2000, reg_covar=0.0,
    ).fit(x)  # fmt: skip
    np.testing.assert_allclose(mine.mu, gm.means_, atol=0.05)
    np.testing.assert_allclose(mine.sigma, np.sqrt(gm.covariances_), rtol=1e-3)
    np.testing.assert_allclose(mine.n / len(x), gm.weights_, atol=1e-4)
    assert mine.n.sum() == pytest.approx(len(x), rel=1e-6)  # every point belongs to a site


def test_fitted_background_recovers_its_intensity(params):
    """One site over a uniform background: the fitted λ0 and the site's count and spread are the planted ones."""
    rng = np.random.default_rng(8)
    side = 2000.0
    x = _sites(rng.normal((1000, 1000), 100, (60, 2)), 40.0, side, rng)
    start = Sites(np.array([[950.0, 1050.0]]), np.array([60.0]), np.array([30.0]))
    s, _, log_bg = fit_intensity(x, np.full(len(x), np.log(10e-6)), start, params, area=side**2)
    assert np.exp(log_bg[0]) * 1e6 == pytest.approx(40.0, rel=0.15)  # per km²
    assert s.n[0] == pytest.approx(60, abs=10) and s.sigma[0] == pytest.approx(100, rel=0.2)
    assert np.hypot(*(s.mu[0] - 1000.0)) < 30


def test_sites_merged_split_and_dropped_by_bic(params):
    """Two sites 600 m apart stay two; a site cut in three trees becomes one; a tree over two sites splits."""
    rng = np.random.default_rng(21)
    side = 3000.0
    a, b = rng.normal((1200, 1500), 100, (40, 2)), rng.normal((1800, 1500), 100, (40, 2))
    x = _sites(np.vstack([a, b]), 10.0, side, rng)
    bg = np.full(len(x), np.log(10e-6))
    # three trees on site a (cut by kernel bumps), one on b
    owner = np.full(len(x), -1)
    owner[:40] = np.digitize(a[:, 0], [1150, 1250])
    owner[40:80] = 3
    s = select_sites(x, bg, initial_sites(x, owner, params.min_sigma_m, params.min_tau_days), params, side**2)
    assert len(s) == 2 and sorted(np.round(s.mu[:, 0], -2)) == [1200, 1800]
    # one tree holding both sites: split in two
    owner[:80] = 0
    s = select_sites(x, bg, initial_sites(x, owner, params.min_sigma_m, params.min_tau_days), params, side**2)
    assert len(s) == 2 and sorted(np.round(s.mu[:, 0], -2)) == [1200, 1800]
    lab = assign(x, s, params.reach_sigmas)
    assert (lab[:40] == lab[0]).mean() > 0.9 and (lab[40:80] == lab[40]).mean() > 0.9 and lab[0] != lab[40]


def test_dates_tell_apart_two_sites_at_one_place_active_at_different_times(params):
    """Two sites 60 m apart (σ 80 m, 40 reports each), one active in days 0–200, the other in days 500–700,
    over a background spread over space and the whole period: in space alone they are one site; with the
    dates two, active when their reports were made, each holding its own reports."""
    rng = np.random.default_rng(1)
    side, days = 2000.0, 1000.0
    a = np.column_stack([rng.normal(1000, 80, (40, 2)), rng.uniform(0, 200, 40)])
    b = np.column_stack([rng.normal(1060, 80, (40, 2)), rng.uniform(500, 700, 40)])
    x = np.vstack([a, b, np.column_stack([rng.uniform(0, side, (60, 2)), rng.uniform(0, days, 60)])])
    owner = np.r_[np.zeros(80, int), np.full(60, -1)]  # one quick-shift tree over both sites
    lam = 60 / side**2
    flat = select_sites(x[:, :2], np.full(len(x), np.log(lam)), initial_sites(x[:, :2], owner, params.min_sigma_m,
                        params.min_tau_days), params, side**2)  # fmt: skip
    assert len(flat) == 1
    span = np.ptp(x[:, 2]) + 1
    timed = replace(params, time=True, min_background=params.min_background / span)
    s = select_sites(x, np.full(len(x), np.log(lam / span)), initial_sites(x, owner, params.min_sigma_m,
                     params.min_tau_days), timed, side**2 * span)  # fmt: skip
    assert len(s) == 2 and s.tm is not None
    assert sorted(np.round(s.tm, -2)) == [100, 600]
    lab = assign(x, s, params.assign_sigmas)
    assert (lab[:40] == lab[0]).mean() > 0.9 and (lab[40:80] == lab[40]).mean() > 0.9 and lab[0] != lab[40]


def test_a_report_without_a_date_gets_the_median_day():
    """incident_days: days since 1970; a missing or unreadable date sits mid-period (tells no site apart)."""
    import pandas as pd

    days = hotspots.incident_days(pd.DataFrame({"date": ["1970-01-11", None, "1970-01-31", "not a date"]}))
    assert list(days) == [10.0, 20.0, 30.0, 20.0]


def test_uniform_points_keep_no_site(params):
    """Complete spatial randomness: the sites started on chance bumps are dropped."""
    rng = np.random.default_rng(4)
    side = 2000.0
    x = rng.uniform(0, side, size=(200, 2))  # 50 per km²
    start = Sites(x[:6].copy(), np.full(6, 60.0), np.full(6, 8.0))
    s = select_sites(x, np.full(len(x), np.log(50e-6)), start, params, side**2)
    assert len(s) == 0 or s.n.max() < 3 * params.min_size, (s.n, s.sigma)


def test_dense_and_pair_e_steps_give_the_same_fit(params, monkeypatch):
    """The EM on dense arrays (small fits) and on the k-d tree's point–site pairs (large fits) is one fit."""
    from gis import cluster_mixture

    rng = np.random.default_rng(5)
    side = 3000.0
    x = _sites(np.vstack([rng.normal((900, 900), 80, (50, 2)), rng.normal((1300, 1000), 120, (40, 2))]), 20.0, side, rng)
    x = x + 600_000.0  # projected coordinates: the M-step's sums must not lose the spreads
    start = Sites(np.array([[1000.0, 950.0], [1250.0, 1100.0]]) + 600_000.0, np.array([60.0, 60.0]), np.array([30.0, 30.0]))
    bg = np.full(len(x), np.log(10e-6))
    monkeypatch.setattr(cluster_mixture, "DENSE_MAX_PAIRS", 10**9)
    dense, ll_d, bg_d = fit_intensity(x, bg, start, params, area=side**2)
    monkeypatch.setattr(cluster_mixture, "DENSE_MAX_PAIRS", 0)
    pairs, ll_p, bg_p = fit_intensity(x, bg, start, params, area=side**2)
    np.testing.assert_allclose(dense.mu, pairs.mu, atol=1e-6)
    np.testing.assert_allclose(dense.sigma, pairs.sigma, rtol=1e-9)
    np.testing.assert_allclose(dense.n, pairs.n, rtol=1e-9)
    assert ll_d == pytest.approx(ll_p, rel=1e-12) and bg_d[0] == pytest.approx(bg_p[0], rel=1e-12)
    assert sorted(np.round(dense.mu[:, 0] - 600_000.0, -2)) == [900, 1300]


def test_window_areas_match_shapely_union_of_discs():
    """Each group's window (union of discs around its cores), counted on a grid, is shapely's area within 1 %."""
    import shapely

    from gis.cluster_mixture import WINDOW_CELLS_PER_RADIUS, window_areas

    rng = np.random.default_rng(2)
    xy = np.vstack([rng.normal((0, 0), 500, (400, 2)), rng.normal((6000, 0), 150, (30, 2)), [[9000.0, 9000.0]]])
    group = np.r_[np.zeros(400, int), np.ones(30, int), [2]]
    got = window_areas(xy, group, 350.0, WINDOW_CELLS_PER_RADIUS)
    for g in range(3):
        want = shapely.union_all(shapely.buffer(shapely.points(xy[group == g]), 350.0, quad_segs=64)).area
        assert got[g] == pytest.approx(want, rel=0.01)
    assert got[2] == pytest.approx(np.pi * 350.0**2, rel=0.01)  # a lone core: one disc
    h = 350.0 / WINDOW_CELLS_PER_RADIUS
    for g in range(3):  # the cells counted row by row are the cells a k-d tree finds within reach of a core
        c = xy[group == g]
        lo, hi = c.min(axis=0) - 350.0, c.max(axis=0) + 350.0
        gx, gy = (np.arange(lo[j] + h / 2, hi[j], h) for j in (0, 1))
        d, _ = cKDTree(c).query(np.column_stack([np.repeat(gx, len(gy)), np.tile(gy, len(gx))]), k=1)
        assert got[g] == pytest.approx((d <= 350.0).sum() * h**2, abs=2 * h**2)


def test_sites_left_after_a_change_are_numpys_setdiff():
    """``_without`` (the sites not in a merge/split/drop) gives exactly ``np.setdiff1d``'s sorted indices."""
    from gis.cluster_mixture import _without

    rng = np.random.default_rng(3)
    for _ in range(50):
        idx = np.unique(rng.integers(0, 40, rng.integers(0, 30)))
        drop = [int(v) for v in rng.integers(0, 45, rng.integers(0, 4))]
        assert np.array_equal(_without(idx, drop), np.setdiff1d(idx, drop))


def _planted_groups(rng: np.random.Generator, timed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four groups of cores (sites of 30–60 reports, σ 50–150 m, some overlapping, some active at different
    times) over a uniform background: incidents (x, y[, day]), the cores, their seeds and groups."""
    side, days = 6000.0, 900.0
    parts, cores, seeds = [], [], []
    for g, (cx, cy) in enumerate([(1000, 1000), (4000, 1200), (1500, 4500), (4500, 4500)]):
        for j in range(3):
            n, sig = int(rng.integers(30, 60)), float(rng.uniform(50, 150))
            xy = rng.normal((cx + 150 * j, cy + 80 * j), sig, (n, 2))
            t0 = rng.uniform(0, days - 200)
            parts.append(np.column_stack([xy, rng.uniform(t0, t0 + 200, n)]))
            seeds.append(np.full(n // 2, 3 * g + j))
            cores.append(np.ones(n, bool) & (np.arange(n) < n // 2))
    bg = np.column_stack([rng.uniform(0, side, (900, 2)), rng.uniform(0, days, 900)])
    x = np.vstack(parts + [bg])
    core = np.flatnonzero(np.concatenate(cores + [np.zeros(len(bg), bool)]))
    seed = np.concatenate(seeds)
    group = seed // 3
    return (x if timed else x[:, :2]), core, seed, group


@pytest.mark.parametrize("timed", [False, True])
def test_batched_fits_give_the_per_group_labels(params, timed):
    """gis.cluster_batch (every group's EM and split fits at once) labels the reports exactly as the per-group
    reference gis.cluster_mixture.mixture_labels, in space and in space-time."""
    from gis.cluster_batch import batched_mixture_labels
    from gis.cluster_mixture import mixture_labels

    rng = np.random.default_rng(11)
    x, core, seed, group = _planted_groups(rng, timed)
    p = replace(params, time=timed, propose="all", accelerate="none")  # the reference fits by plain EM
    span = np.ptp(x[:, 2]) + 1 if timed else 1.0
    log_bg = np.full(len(x), np.log(25e-6))
    ref = mixture_labels(x, core, seed, group, log_bg, 350.0, p)
    fast = batched_mixture_labels(x, core, seed, group, log_bg, 350.0, p)
    assert ref.max() >= 6 and span > 0  # several sites found in the four groups
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("timed", [False, True])
def test_no_site_is_fitted_wider_than_max_sigma_and_both_fits_clip_alike(params, timed):
    """A crowded area (seven sites of σ 110 m within 350 m, active over most of the period) is not fitted as
    one site wider than ``max_sigma_m``; the batched fits clip σ as the per-group reference (same labels)."""
    from gis.cluster_batch import batched_mixture_labels
    from gis.cluster_mixture import mixture_labels

    rng = np.random.default_rng(0)
    side, days = 3000.0, 900.0
    ring = [(1500 + 350 * np.cos(a), 1500 + 350 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    parts = [np.column_stack([rng.normal(c, 110, (30, 2)), rng.uniform(0, 800, 30) + rng.uniform(0, 100)])
             for c in ring + [(1500, 1500)]]  # fmt: skip
    x = np.vstack(parts + [np.column_stack([rng.uniform(0, side, (180, 2)), rng.uniform(0, days, 180)])])
    x = x if timed else x[:, :2]
    owner = np.r_[np.zeros(210, int), np.full(180, -1)]  # one quick-shift tree over the area
    span = np.ptp(x[:, 2]) + 1 if timed else 1.0
    p = replace(params, time=timed, min_background=params.min_background / span)
    log_bg = np.full(len(x), np.log(20e-6 / span))
    wide = select_sites(x, log_bg, initial_sites(x, owner, p.min_sigma_m, p.min_tau_days), replace(p, max_sigma_m=np.inf),
                        side**2 * span)  # fmt: skip
    capped = select_sites(x, log_bg, initial_sites(x, owner, p.min_sigma_m, p.min_tau_days), p, side**2 * span)
    assert wide.sigma.max() > params.max_sigma_m  # without the limit: one wide Gaussian over the area
    assert len(capped) and capped.sigma.max() <= params.max_sigma_m + 1e-9
    core = np.flatnonzero(owner == 0)[::2]
    group = np.zeros(len(core), int)
    low = replace(p, max_sigma_m=90.0, propose="all", accelerate="none")  # the limit binds on most sites
    ref = mixture_labels(x, core, np.zeros(len(core), int), group, log_bg, 350.0, low)
    np.testing.assert_array_equal(batched_mixture_labels(x, core, np.zeros(len(core), int), group, log_bg, 350.0, low), ref)
    assert (ref >= 0).sum() > 100  # the area's reports are clustered


@pytest.mark.parametrize("timed", [False, True])
def test_changes_scored_at_once_as_one_by_one(params, timed):
    """change_gains (every drop, merge and split of a group scored in one pass over candidate–point pairs) gives
    the BIC changes of _local_gain, one call per change, when no site is cut at its reach (50 σ); at the default
    reach the gains differ only by the terms beyond a site's reach (cut, as in the EM's intensity)."""
    from scipy.spatial import cKDTree

    from gis.cluster_mixture import _local_gain, _split, change_candidates, change_gains, intensity, log_terms

    rng = np.random.default_rng(2)
    xy = np.vstack([rng.normal(c, 90, (40, 2)) for c in [(500, 500), (800, 560), (1500, 1400), (1600, 1450)]]
                   + [rng.uniform(0, 2000, (200, 2))])  # fmt: skip
    x = np.column_stack([xy, rng.uniform(0, 500, len(xy))]) if timed else xy
    start = Sites(np.array([[500.0, 500], [800, 560], [1550, 1420], [300, 1700]]), np.full(4, 100.0),
                  np.array([40.0, 40, 80, 5]), *((np.full(4, 250.0), np.full(4, 150.0)) if timed else ()))  # fmt: skip
    for reach, close in ((50.0, 1e-9), (params.reach_sigmas, 5.0)):
        p = replace(params, time=timed, reach_sigmas=reach)
        s, _, lb = fit_intensity(x, np.full(len(x), np.log(50e-6 / (500 if timed else 1))), start, p)
        tree = cKDTree(x[:, :2])
        lt, inten = log_terms(x, lb, s), intensity(tree, x, lb, s, reach)
        cands = change_candidates(s) + [([a], _split(x, inten, s, a, p)) for a in range(len(s))]
        one_by_one = [_local_gain(tree, x, lt, s, old, new, reach, "bic") for old, new in cands]
        np.testing.assert_allclose(change_gains(x, inten, s, cands, p), one_by_one, atol=close)


def test_batched_em_is_the_single_fit(params):
    """fit_many of several problems at once gives each problem's fit_intensity (sites, ℓ, background), also when a
    site's reach is wider than the spacing of the problems in the stack."""
    from gis.cluster_batch import Problem, fit_many

    rng = np.random.default_rng(5)
    side = 3000.0
    problems = []
    for shift in (0.0, 600_000.0, 50.0):
        x = _sites(rng.normal((900, 900), 80, (50, 2)), 20.0, side, rng) + shift
        start = Sites(np.array([[950.0, 950.0], [1250.0, 1100.0]]) + shift, np.array([60.0, 60.0]), np.array([30.0, 30.0]))
        problems.append(Problem(x, np.full(len(x), np.log(10e-6)), start, side**2, params.min_background))
    problems.append(Problem(problems[0].x, problems[0].log_bg, problems[0].sites, None, params.min_background))
    wide = Sites(problems[1].sites.mu, np.array([3e5, 60.0]), problems[1].sites.n)  # reaches past the next problem
    problems.insert(1, Problem(problems[1].x, problems[1].log_bg, wide, None, params.min_background))
    plain = replace(params, accelerate="none", max_sigma_m=np.inf)  # the wide site keeps its reach
    for (s, ll, bg), pr in zip(fit_many(problems, plain), problems):
        ref, ll_r, bg_r = fit_intensity(pr.x, pr.log_bg, pr.sites, plain, area=pr.area)
        np.testing.assert_allclose(s.mu, ref.mu, atol=1e-6)
        np.testing.assert_allclose(s.sigma, ref.sigma, rtol=1e-9)
        np.testing.assert_allclose(s.n, ref.n, rtol=1e-9)
        assert ll == pytest.approx(ll_r, rel=1e-12) and bg[0] == pytest.approx(bg_r[0], rel=1e-12)


@pytest.mark.parametrize("timed", [False, True])
def test_squarem_reaches_the_plain_em_fixed_point_in_fewer_e_steps(params, timed, monkeypatch):
    """fit_many with accelerate squarem converges to the fit of plain EM (sites, ℓ and background, with a tight
    tolerance, in space and in space-time, background fitted or fixed) with fewer E-steps, on overlapping sites
    (where plain EM is slow). Sites reach 50 σ here: cut at a few σ, the plain EM map's fixed point is not
    exactly a maximum of ℓ, and SQUAREM, which climbs ℓ, can stop a few metres from it."""
    from gis import cluster_batch
    from gis.cluster_batch import Problem, fit_many

    rng = np.random.default_rng(21)
    side, problems = 3000.0, []
    for shift in (0.0, 600_000.0):
        xy = np.vstack([rng.normal((900, 900), 80, (60, 2)), rng.normal((1150, 1100), 120, (45, 2))])  # overlapping
        x = _sites(xy, 20.0, side, rng) + shift
        centres = np.array([[1000.0, 1000.0], [1700.0, 1500.0]]) + shift
        start = Sites(centres, np.array([150.0, 150.0]), np.array([20.0, 20.0]))
        if timed:
            x = np.column_stack([x, rng.uniform(0, 900, len(x))])
            x[:60, 2], x[60:105, 2] = rng.normal(300, 60, 60), rng.normal(450, 80, 45)
            start = Sites(start.mu, start.sigma, start.n, np.array([300.0, 500.0]), np.array([100.0, 100.0]))
        log_bg = np.full(len(x), np.log(10e-6 / 900))  # per m²·day over 900 days
        problems.append(Problem(x, log_bg, start, side**2 * 900, params.min_background / 900))
    problems.append(Problem(problems[0].x, problems[0].log_bg, problems[0].sites, None, params.min_background))
    steps = {"n": 0}
    evaluate = cluster_batch._EM.evaluate

    def counted(self):  # type: ignore[no-untyped-def]
        steps["n"] += 1
        return evaluate(self)

    monkeypatch.setattr(cluster_batch._EM, "evaluate", counted)
    monkeypatch.setattr(cluster_batch, "_plain", cluster_batch._plain_reference)  # its E-steps are counted
    fits, used = {}, {}
    for acc in ("none", "squarem"):
        steps["n"] = 0
        p = replace(params, time=timed, accelerate=acc, tol=1e-9, max_iter=20_000, reach_sigmas=50.0, max_sigma_m=np.inf)
        fits[acc] = fit_many(problems, p)
        used[acc] = steps["n"]
    for (s, ll, bg), (ref, ll_r, bg_r) in zip(fits["squarem"], fits["none"]):
        np.testing.assert_allclose(s.mu, ref.mu, atol=1e-3)
        np.testing.assert_allclose(s.sigma, ref.sigma, rtol=1e-5)
        np.testing.assert_allclose(s.n, ref.n, rtol=1e-5)
        assert ll == pytest.approx(ll_r, abs=1e-6) and bg[0] == pytest.approx(bg_r[0], rel=1e-5)
    assert used["squarem"] < used["none"]


def test_squarem_stops_at_a_fixed_point_of_the_em_step_with_sites_cut_at_their_reach(params):
    """With sites cut at ``reach_sigmas`` (4 σ) an EM step can lower ℓ (plain EM then stops: gain below ``tol``);
    SQUAREM's fit (tight tolerance) is a fixed point of the EM step: one more plain step leaves it in place."""
    from gis.cluster_batch import Problem, fit_many

    rng = np.random.default_rng(21)
    side = 3000.0
    xy = np.vstack([rng.normal((900, 900), 80, (60, 2)), rng.normal((1150, 1100), 120, (45, 2))])
    x = _sites(xy, 20.0, side, rng)
    start = Sites(np.array([[1000.0, 1000.0], [1700.0, 1500.0]]), np.array([150.0, 150.0]), np.array([20.0, 20.0]))
    problem = Problem(x, np.full(len(x), np.log(10e-6)), start, side**2, params.min_background)
    s, ll, bg = fit_many([problem], replace(params, time=False, accelerate="squarem", tol=1e-9, max_iter=20_000))[0]
    again = Problem(x, bg, s, side**2, params.min_background)
    s1, _, _ = fit_many([again], replace(params, time=False, accelerate="none", tol=-1.0, max_iter=2))[0]
    np.testing.assert_allclose(s1.mu, s.mu, atol=1e-3)
    np.testing.assert_allclose(s1.n, s.n, rtol=1e-5)


@pytest.mark.parametrize("timed", [False, True])
def test_proposing_only_moved_sites_with_no_tolerance_gives_every_rounds_labels(params, timed):
    """select_moved with propose_tol 0 (every site that moved at all is proposed again) labels the reports as
    select_many (every site proposed every round), in space and in space-time."""
    from gis.cluster_batch import batched_mixture_labels

    x, core, seed, group = _planted_groups(np.random.default_rng(12), timed)
    log_bg = np.full(len(x), np.log(25e-6))
    every = batched_mixture_labels(x, core, seed, group, log_bg, 350.0, replace(params, time=timed, propose="all"))
    moved = replace(params, time=timed, propose="moved", propose_tol=0.0)
    np.testing.assert_array_equal(batched_mixture_labels(x, core, seed, group, log_bg, 350.0, moved), every)
    assert every.max() >= 6


def test_a_site_is_proposed_again_only_when_it_moved(params):
    """_moved: a site is active when it is new (never proposed) or moved by more than the tolerance in centre
    (in sigmas), spread, count or time; a site that stayed put is not."""
    from gis.cluster_batch import _moved, _state

    s = Sites(np.array([[0.0, 0.0], [500.0, 0.0], [900.0, 0.0], [1400.0, 0.0]]), np.full(4, 50.0),
              np.array([20.0, 20.0, 20.0, 20.0]), np.full(4, 100.0), np.full(4, 30.0))  # fmt: skip
    last = _state(s)
    last[1, 0] -= 10.0  # centre moved 0.2 sigma
    last[2, 5] = 30.0 / 1.05  # time spread grew by 5 %
    last[3] = np.nan  # never proposed
    assert _moved(s, last, 0.1).tolist() == [False, True, False, True]
    assert _moved(s, last, 0.01).tolist() == [False, True, True, True]


def test_a_split_is_not_merged_back_and_a_repeated_state_ends_the_rounds(params):
    """_apply_tracked numbers the two halves of a split as one pair (their merge is not proposed: _rejoins);
    _repeats tells a state of the sites seen before."""
    from gis.cluster_batch import _apply_tracked, _rejoins, _repeats

    s = Sites(np.array([[0.0, 0.0], [400.0, 0.0], [800.0, 0.0]]), np.full(3, 50.0), np.array([40.0, 30.0, 20.0]))
    halves = Sites(np.array([[380.0, 0.0], [420.0, 0.0]]), np.full(2, 40.0), np.array([15.0, 15.0]))
    merged = Sites(np.array([[100.0, 0.0]]), np.array([80.0]), np.array([70.0]))
    todo = [(-5.0, [1], halves), (-3.0, [0, 1], merged), (-1.0, [2], Sites(np.zeros((0, 2)), np.zeros(0), np.zeros(0)))]
    new, kept, waiting, pair = _apply_tracked(s, todo, np.full(3, -1), 0)
    assert kept.tolist() == [0] and waiting.tolist() == [0]  # site 0's merge waits: site 1 was split first
    assert len(new) == 3 and pair.tolist() == [-1, 0, 0]
    assert _rejoins([1, 2], pair) and not _rejoins([0, 1], pair)
    seen: set[bytes] = set()
    assert not _repeats(new, seen) and not _repeats(s, seen) and _repeats(new.subset(np.array([0, 1, 2])), seen)
