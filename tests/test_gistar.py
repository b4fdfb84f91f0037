"""Hexagon grids, sparse weights, Gi* against esda, BH-FDR against esda.fdr, space-time."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import shapely
from scipy import stats

from gis import emerging, gistar
from gis._errors import AnalysisError


@pytest.fixture(scope="module")
def grid_counts():
    rng = np.random.default_rng(42)
    grid = gistar.HexGrid.covering((0, 0, 6000, 5000), 150.0)
    bg = rng.uniform([0, 0], [6000, 5000], size=(1500, 2))
    hot = rng.normal([4000, 3000], 250, size=(600, 2))
    xy = np.vstack([bg, hot])
    return grid, xy, grid.count(xy)


# ------------------------------------------------------------------ hex grid


def test_grid_centres_locate_to_their_own_cell(grid_counts):
    grid, _, _ = grid_counts
    assert np.array_equal(grid.locate(grid.centres), np.arange(len(grid)))


def test_points_fall_in_the_hexagon_polygon_they_are_assigned(grid_counts):
    grid, xy, _ = grid_counts
    idx = grid.locate(xy)
    assert (idx >= 0).all()
    polys = grid.polygons()
    assert shapely.contains_xy(polys[idx], xy[:, 0], xy[:, 1]).mean() > 0.999  # boundary ties aside
    assert np.allclose(shapely.area(polys), grid.cell_area)


def test_counts_sum_to_points_inside(grid_counts):
    grid, xy, counts = grid_counts
    assert counts.sum() == len(xy)
    outside = np.array([[1e6, 1e6]])
    assert grid.locate(outside)[0] == -1


def test_grid_covers_bounds_and_mask_drops_cells():
    grid = gistar.HexGrid.covering((0, 0, 1000, 1000), 100.0)
    c = grid.centres
    assert c[:, 0].min() < 0 and c[:, 0].max() > 1000 and c[:, 1].max() > 1000
    masked = gistar.HexGrid.covering((0, 0, 1000, 1000), 100.0, mask=shapely.box(0, 0, 500, 1000))
    assert 0 < len(masked) < len(grid)
    assert masked.centres[:, 0].max() <= 500 + 100 / np.sqrt(3) + 1e-6


def test_lattice_weights_equal_kdtree_distance_band(grid_counts):
    grid, _, _ = grid_counts
    for band in (150.0, 2 * 150.0, 2.6 * 150.0):
        a = gistar.lattice_weights(grid, band)
        b = gistar.distance_band_weights(grid.centres, band * (1 + 1e-9))
        assert (a != b).nnz == 0
    deg = np.diff(gistar.lattice_weights(grid, 150.0).indptr)
    assert deg.max() == 6  # interior cells have the six adjacent hexagons


def test_knn_weights_have_k_neighbours_even_with_duplicates():
    xy = np.array([[0, 0], [0, 0], [1, 0], [2, 0], [5, 5], [6, 5]], dtype=float)
    w = gistar.knn_weights(xy, 2)
    assert (np.diff(w.indptr) == 2).all()
    assert w.diagonal().sum() == 0


def test_choose_cell_size_scales_with_spacing_and_caps_cells():
    g = np.stack(np.meshgrid(np.arange(50) * 40.0, np.arange(50) * 40.0), -1).reshape(-1, 2)
    assert gistar.choose_cell_size(g, factor=2.0, max_cells=250_000) == pytest.approx(80.0)
    capped = gistar.choose_cell_size(g, factor=2.0, bounds=(0, 0, 1e5, 1e5), max_cells=1000)
    assert capped > 80 and (1e10 / (np.sqrt(3) / 2 * capped**2)) <= 1000 * 1.0001


# ------------------------------------------------------------------ Gi* vs esda


def _esda_zs(x, w, **kw):
    import esda
    from libpysal.weights import W

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw = W.from_sparse(sp.csr_matrix(w))
        return esda.G_Local(x, lw, transform="B", star=True, n_jobs=1, **kw)


@pytest.mark.parametrize("kind", ["lattice", "knn"])
def test_gi_star_z_equals_esda(grid_counts, kind):
    grid, _, counts = grid_counts
    w = gistar.lattice_weights(grid, 300.0) if kind == "lattice" else gistar.knn_weights(grid.centres, 8)
    ours = gistar.gi_star(counts, w)
    ref = _esda_zs(counts, w, permutations=0)
    np.testing.assert_allclose(ours.z, ref.Zs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.p, 2 * ref.p_norm, rtol=1e-10, atol=1e-14)
    assert np.array_equal(ours.n_neighbours, np.diff(w.indptr) + 1)


def test_gi_star_general_weights_formula():
    """Non-binary weights: the ArcGIS formula, checked by direct dense computation."""
    rng = np.random.default_rng(1)
    n = 40
    x = rng.poisson(3, n).astype(float)
    w = sp.random(n, n, density=0.2, random_state=2, format="csr")
    r = gistar.gi_star(x, w, self_weight=0.5)
    wd = w.toarray()
    np.fill_diagonal(wd, 0.5)
    xb, s = x.mean(), x.std()
    wi, s1 = wd.sum(1), (wd**2).sum(1)
    z = (wd @ x - xb * wi) / (s * np.sqrt((n * s1 - wi**2) / (n - 1)))
    np.testing.assert_allclose(r.z, z, atol=1e-12)


def test_fdr_cutoff_equals_esda():
    import esda

    rng = np.random.default_rng(5)
    for trial in range(20):
        p = np.concatenate([rng.uniform(0, 1, 300), rng.uniform(0, 0.002 * trial, 30)])
        for alpha in (0.1, 0.05, 0.01):
            assert gistar.fdr_cutoff(p, alpha) == pytest.approx(esda.fdr(p, alpha), rel=0, abs=0)
    assert gistar.fdr_cutoff(np.full(10, 0.9), 0.05) == pytest.approx(0.005)  # Bonferroni bound


def test_gi_bins_follow_fdr_cutoffs(grid_counts):
    grid, _, counts = grid_counts
    w = gistar.lattice_weights(grid, 300.0)
    r = gistar.gi_star(counts, w, fdr=True)
    assert set(np.unique(r.gi_bin)) <= {-3, -2, -1, 0, 1, 2, 3}
    assert np.all(r.p[r.gi_bin == 3] < r.cutoffs[0.01])
    assert np.all(r.p[np.abs(r.gi_bin) == 0] >= r.cutoffs[0.10])
    assert np.all(np.sign(r.z[r.gi_bin != 0]) == np.sign(r.gi_bin[r.gi_bin != 0]))
    # the planted hot spot is hot at 99 %
    hot = grid.locate(np.array([[4000.0, 3000.0]]))[0]
    assert r.gi_bin[hot] == 3
    plain = gistar.gi_star(counts, w, fdr=False)
    assert (np.abs(plain.gi_bin) > 0).sum() >= (np.abs(r.gi_bin) > 0).sum()


def test_permutation_inference_agrees_with_esda_and_analytic(grid_counts):
    grid, _, counts = grid_counts
    w = gistar.lattice_weights(grid, 300.0)
    ours = gistar.gi_star(counts, w, permutations=199, seed=3)
    ref = _esda_zs(counts, w, permutations=199, seed=3)
    assert np.corrcoef(ours.p_sim, ref.p_sim)[0, 1] > 0.95
    assert np.median(np.abs(ours.p_sim - ref.p_sim)) < 0.03
    hot = grid.locate(np.array([[4000.0, 3000.0]]))[0]
    assert ours.p_sim[hot] == pytest.approx(1 / 200)
    assert ours.z_sim[hot] > 3
    again = gistar.gi_star(counts, w, permutations=199, seed=3)
    assert np.array_equal(again.p_sim, ours.p_sim)


def test_gi_star_rejects_constant_values():
    w = gistar.knn_weights(np.random.default_rng(0).uniform(size=(10, 2)), 3)
    with pytest.raises(AnalysisError, match="same value"):
        gistar.gi_star(np.ones(10), w)
    with pytest.raises(AnalysisError, match="weights are"):
        gistar.gi_star(np.arange(5.0), w)


# ------------------------------------------------------------------ space-time


def test_mann_kendall_equals_scipy_kendalltau():
    rng = np.random.default_rng(7)
    y = np.round(rng.normal(size=(50, 12)) + np.linspace(0, 1, 12) * rng.normal(size=(50, 1)), 1)
    y[0] = 1.0  # all ties
    s, z, p = emerging.mann_kendall(y)
    for i in range(1, 50):
        ref = stats.kendalltau(np.arange(12), y[i], method="asymptotic")
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    assert z[0] == 0 and p[0] == 1


def test_space_time_gi_star_single_step_equals_gi_star(grid_counts):
    grid, _, counts = grid_counts
    w = gistar.lattice_weights(grid, 300.0)
    z = emerging.space_time_gi_star(counts[:, None], w, time_steps=1)
    np.testing.assert_allclose(z[:, 0], gistar.gi_star(counts, w).z, atol=1e-10)


def test_emerging_categories_on_planted_patterns():
    rng = np.random.default_rng(11)
    grid = gistar.HexGrid.covering((0, 0, 4000, 4000), 200.0)
    w = gistar.lattice_weights(grid, 200.0)
    t = 12
    centres = {"persistent": (1000, 1000), "new": (3000, 1000), "intensifying": (1000, 3000)}
    xy, steps = [], []
    for k in range(t):
        bg = rng.uniform(0, 4000, size=(60, 2))
        xy.append(bg)
        steps.append(np.full(len(bg), k))
        plan = {"persistent": 25, "new": 40 if k == t - 1 else 0, "intensifying": 12 + 6 * k}
        for name, n in plan.items():
            pts = rng.normal(centres[name], 60, size=(n, 2))
            xy.append(pts)
            steps.append(np.full(n, k))
    xy, steps = np.vstack(xy), np.concatenate(steps)
    res = emerging.emerging_hot_spots(
        grid.locate(xy), steps, len(grid), w, steps=[str(i) for i in range(t)], time_steps=1, alpha=0.05, fdr=False
    )
    for name, c in centres.items():
        cell = grid.locate(np.array([c], dtype=float))[0]
        assert res.category[cell] == name, (name, res.category[cell])
    assert (res.category == "no_pattern").mean() > 0.7


def test_space_time_gi_star_equals_gi_star_on_explicit_kronecker_weights(grid_counts):
    grid, _, _ = grid_counts
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.0, size=(len(grid), 6)).astype(float)
    w = gistar.lattice_weights(grid, 300.0)
    for lags in (0, 1, 2):
        z = emerging.space_time_gi_star(counts, w, time_steps=lags)
        wst = emerging._space_time_weights(w, 6, lags)
        ref = gistar.gi_star(counts.T.ravel(), wst - sp.diags(wst.diagonal()), self_weight=1.0).z
        np.testing.assert_allclose(z, ref.reshape(6, -1).T, atol=1e-10)
