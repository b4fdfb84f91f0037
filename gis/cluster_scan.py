"""Local-background scan clusters and per-cluster significance (聚集区显著性).

Two jobs, both measured against the *local* background of incidents rather than
one district-wide distance:

* :func:`scan_labels` — the ``scan`` clustering method: an incident is a *core*
  when the number of incidents around it, at one of a few radii, is improbably
  high for the background intensity in an annulus around it (one-sided Poisson
  test); cores are grouped by quick shift on their kernel density (one tree per
  density peak); the trees start a Gaussian mixture of sites per group of cores
  (default, :mod:`gis.cluster_mixture`), or touching trees are merged when one
  Gaussian site explains them better than two (:func:`merge_by_bic`) and the
  incidents near a core join it. A dense street and a farm valley are judged
  each against its own surroundings.
* :func:`cluster_significance` — for every reported cluster: observed count, the
  count expected from the local background (optionally also from the other kinds'
  reports, :func:`case_control_expected`), a Poisson p-value and a
  Benjamini–Hochberg q-value; clusters above the level are flagged, kept in the
  GeoPackage and left out of the inspectors' list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.special import pdtrc

from gis._errors import AnalysisError
from gis.cluster_batch import batched_mixture_labels
from gis.cluster_mixture import MixtureParams, core_groups


#: Grid cell (m) on which the core counts bin the incidents (:func:`gis._em_kernels.disc_counts`): speed only, the
#: counts are exact whatever the cell (200 m was the fastest on the city sample, 50-200 m measured).
DISC_CELL_M = 200.0


def poisson_sf(k: np.ndarray | float, mu: np.ndarray | float) -> np.ndarray:
    """:math:`P(X > k)` for :math:`X \\sim \\mathrm{Poisson}(\\mu)`: :func:`scipy.special.pdtrc`, the function
    ``scipy.stats.poisson.sf`` evaluates, and 1 for :math:`k < 0` as it gives — without importing
    :mod:`scipy.stats` (about a second of every run's start-up). Tested equal to ``poisson.sf``."""
    k = np.asarray(k, dtype=float)
    return np.where(k < 0, 1.0, pdtrc(np.maximum(k, 0.0), mu))


@dataclass(frozen=True)
class ScanParams:
    """Parameters of the ``scan`` method (``layers/hotspots.yaml`` ``clusters.scan``).

    Attributes
    ----------
    radii_m
        Radii of the counting discs around each incident.
    annulus_m
        ``(inner, outer)`` radii of the background annulus.
    core_p
        Largest one-sided Poisson p-value (after a Bonferroni factor over the
        radii) that makes an incident a core.
    link_m
        Quick-shift τ: a core joins the cluster of the nearest denser core within it.
    attach_m
        Incidents within this of a core join the core's cluster.
    bandwidth_m
        Gaussian kernel bandwidth of the core density.
    neighbours
        Nearest cores searched for a denser one.
    merge
        How quick-shift trees become sites: ``mixture`` (a Gaussian mixture per
        group of cores, :func:`gis.cluster_mixture.mixture_labels`), or trees
        touching within ``merge_link_m`` merged by ``bic`` (:func:`merge_by_bic`:
        when one Gaussian site explains both better than two), ``saddle``
        (:func:`merge_by_saddle`) or ``none``.
    merge_link_m, merge_saddle_ratio
        Trees touching within ``merge_link_m`` merge (``saddle``) when their saddle
        is at least this share of the lower peak.
    min_cluster_size
        Smallest cluster (members).
    min_background
        Floor of the background intensity (incidents per km²), so that an empty
        annulus does not make every pair of incidents a cluster.
    mixture
        Parameters of ``merge: mixture``.
    """

    radii_m: tuple[float, ...]
    annulus_m: tuple[float, float]
    core_p: float
    link_m: float
    attach_m: float
    bandwidth_m: float
    neighbours: int
    merge: str
    merge_link_m: float
    merge_saddle_ratio: float
    min_cluster_size: int
    min_background: float
    mixture: MixtureParams | None = None


def background_density(xy: np.ndarray, centres: np.ndarray, annulus_m: tuple[float, float]) -> np.ndarray:
    """Incidents per m² in the annulus ``inner < d ≤ outer`` around each centre.

    .. math:: \\hat\\lambda_i = \\frac{N(s_i, r_o) - N(s_i, r_i)}{\\pi (r_o^2 - r_i^2)}

    (:math:`N(s, r)` = incidents within *r* of *s*).
    """
    inner, outer = float(annulus_m[0]), float(annulus_m[1])
    if not 0 <= inner < outer:
        raise AnalysisError(f"background annulus {annulus_m} must satisfy 0 <= inner < outer")
    tree = cKDTree(xy)
    n_out = tree.query_ball_point(centres, outer, return_length=True)
    n_in = tree.query_ball_point(centres, inner, return_length=True)
    return (np.asarray(n_out) - np.asarray(n_in)) / (np.pi * (outer**2 - inner**2))


def _inside_share(window: object, centres: np.ndarray, r_lo: np.ndarray, r_hi: np.ndarray, sectors: int) -> np.ndarray:
    """Share of each sector of each ring ``r_lo < d <= r_hi`` around ``centres`` inside ``window`` (polar sample grid)."""
    import shapely

    per = 4  # sample angles per sector and radii per ring
    ang = (np.arange(sectors * per) + 0.5) / (sectors * per) * 2 * np.pi - np.pi
    frac = (np.arange(per) + 0.5) / per
    rr = np.sqrt(r_lo[:, None] ** 2 + frac[None, :] * (r_hi[:, None] ** 2 - r_lo[:, None] ** 2))  # equal-area rings
    x = centres[:, 0, None, None] + rr[:, :, None] * np.cos(ang)[None, None, :]
    y = centres[:, 1, None, None] + rr[:, :, None] * np.sin(ang)[None, None, :]
    inside = shapely.contains_xy(window, x.ravel(), y.ravel()).reshape(x.shape)
    return inside.reshape(len(centres), per, sectors, per).mean(axis=(1, 3))


def sector_background(
    xy: np.ndarray, centres: np.ndarray, annulus_m: tuple[float, float], sectors: int, window: object | None = None
) -> np.ndarray:
    """Robust background density: the median sector density of the annulus around each centre.

    .. math:: \\hat\\lambda_c = \\operatorname{median}_{k:\\,f_k \\ge 1/2}
              \\frac{N_k(c)}{f_k\\,\\pi (r_o^2 - r_i^2)/K}

    (:math:`N_k(c)` = incidents in sector *k* of *K*; :math:`f_k` its share inside
    the observation ``window`` — e.g. the incidents' convex hull — or 1 without
    one; sectors mostly outside are left out, so that a site near the boundary is
    not judged against land where nothing can be reported). A neighbouring site
    fills one or two sectors and moves the median little, while no incident is
    dropped from the background (dropping "clustered" incidents would make chance
    clusters of uniform points look significant).
    """
    inner, outer = float(annulus_m[0]), float(annulus_m[1])
    if not 0 <= inner < outer or sectors < 1:
        raise AnalysisError(f"background annulus {annulus_m} / {sectors} sectors: need 0 <= inner < outer, sectors >= 1")
    sdm = cKDTree(centres).sparse_distance_matrix(cKDTree(xy), outer, output_type="ndarray")
    sdm = sdm[sdm["v"] > inner]
    d = xy[sdm["j"]] - centres[sdm["i"]]
    k = np.minimum((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * sectors, sectors - 1).astype(np.int64)
    counts = np.bincount(sdm["i"] * sectors + k, minlength=len(centres) * sectors).reshape(len(centres), sectors)
    if window is None:
        share = np.ones(counts.shape)
    else:
        n = len(centres)
        share = _inside_share(window, centres, np.full(n, inner), np.full(n, outer), sectors)
    dens = np.where(share >= 0.5, counts / np.maximum(share, 1e-9), np.nan)
    out = np.zeros(len(centres))
    ok = np.isfinite(dens).any(axis=1)
    out[ok] = np.nanmedian(dens[ok], axis=1)
    return out / (np.pi * (outer**2 - inner**2) / sectors)


def core_pvalues(xy: np.ndarray, params: ScanParams, at: np.ndarray | None = None) -> np.ndarray:
    """Smallest one-sided Poisson p-value over the radii, times the number of radii.

    ``at``: positions (into ``xy``) of the incidents whose p-value is returned (default all), the others
    being their surroundings only (a partition and its halo, :mod:`gis.cluster_tiles`).

    For incident *i* and radius *r*: observed :math:`n_i(r)` = other incidents
    within *r*; expected :math:`\\mu_i(r) = \\max(\\hat\\lambda_i, \\lambda_{min})\\,\\pi r^2`
    (:func:`background_density`);

    .. math:: p_i = \\min\\Big(1,\\ R\\,\\min_r P\\big(N \\ge n_i(r)\\big)\\Big),
              \\quad N \\sim \\text{Poisson}(\\mu_i(r))

    (*R* radii, Bonferroni).
    """
    from gis._em_kernels import disc_counts  # numba: imported (and compiled, cached) when cores are first sought

    inner, outer = (float(v) for v in params.annulus_m)
    if not 0 <= inner < outer:
        raise AnalysisError(f"background annulus {params.annulus_m} must satisfy 0 <= inner < outer")
    q = xy if at is None else xy[at]
    radii = np.array([*params.radii_m, inner, outer], dtype=float)
    counts = disc_counts(np.ascontiguousarray(xy, dtype=float), np.ascontiguousarray(q, dtype=float), radii,
                         DISC_CELL_M)  # fmt: skip
    ring = (counts[:, -1] - counts[:, -2]) / (np.pi * (outer**2 - inner**2))  # background_density's estimate
    lam = np.maximum(ring, params.min_background / 1e6)
    best = np.ones(len(q))
    for j, r in enumerate(params.radii_m):
        best = np.minimum(best, poisson_sf(counts[:, j] - 2, lam * np.pi * float(r) ** 2))  # others within r, minus 1
    return np.minimum(best * len(params.radii_m), 1.0)


def kernel_weights_at(centres: np.ndarray, xy: np.ndarray, bandwidth_m: float) -> np.ndarray:
    """Gaussian kernel sum :math:`\\rho_i = \\sum_j \\exp(-\\lVert c_i - s_j\\rVert^2 / 2h^2)` (pairs within 3h).

    Summed in the order of ``xy`` (not a k-d tree's order), so that the sums do not depend on which other
    points are there: a partition with its halo gives the whole run's numbers (:mod:`gis.cluster_tiles`).
    The sum counts the centre itself twice (:math:`d = 0` within 3h, and +1), as it always has. Compiled
    (:func:`gis._em_kernels.kernel_sums`; ``tests/test_em_kernels.py`` compares it with the k-d tree's pairs).
    """
    from gis._em_kernels import kernel_sums  # numba: imported (and compiled, cached) on first use

    return kernel_sums(np.ascontiguousarray(centres, dtype=float), np.ascontiguousarray(xy, dtype=float), float(bandwidth_m))


def quick_shift(xy: np.ndarray, density: np.ndarray, tau_m: float, k: int) -> np.ndarray:
    """Quick shift (Vedaldi & Soatto 2008): trees of "nearest denser point within τ".

    Each point's parent is its nearest point (among the ``k`` nearest) with higher
    ``density`` (ties broken by index) no farther than ``tau_m``; points without
    one are roots (density peaks). Returns the root index of every point.
    """
    parent = shift_parents(xy, density, tau_m, k, np.arange(len(xy)))
    for _ in range(64):  # pointer jumping: depth halves each round
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    return parent


def shift_parents(
    xy: np.ndarray, density: np.ndarray, tau_m: float, k: int, rank: np.ndarray, at: np.ndarray | None = None
) -> np.ndarray:
    """Quick shift's parent of each point (:func:`quick_shift` before pointer jumping): itself when a root.

    ``rank``: each point's rank among all points of the run (breaks density ties as the whole run does);
    ``at``: positions of the points whose parent is returned (default all) -- the others are a halo that
    holds every point within ``tau_m`` of them (:mod:`gis.cluster_tiles`).
    """
    n = len(xy)
    q = np.arange(n) if at is None else np.asarray(at)
    k = int(min(k, n))
    d, nb = cKDTree(xy).query(xy[q], k=k, distance_upper_bound=tau_m)
    d, nb = d.reshape(len(q), k), nb.reshape(len(q), k)
    nb = np.where(np.isfinite(d), nb, n)
    key = np.append(density * (1 + 1e-12) + rank * 1e-15, -np.inf)
    higher = key[nb] > key[q][:, None]
    first = np.argmax(higher, axis=1)
    has = higher[np.arange(len(q)), first]
    return np.where(has, nb[np.arange(len(q)), first], q)


def merge_by_saddle(xy: np.ndarray, density: np.ndarray, comp: np.ndarray, link_m: float, ratio: float) -> np.ndarray:
    """Merge quick-shift trees whose density saddle is high (topological persistence, as ToMATo).

    Two trees *A*, *B* touch where a point of *A* and one of *B* are within
    ``link_m``; their saddle is :math:`s_{AB} = \\max \\min(\\rho_i, \\rho_j)` over
    such pairs. They merge when :math:`s_{AB} \\ge r \\min(\\hat\\rho_A, \\hat\\rho_B)`
    (peaks :math:`\\hat\\rho`): a dip of less than ``1 - ratio`` between two peaks is
    noise inside one site, a deeper one separates two sites. Returns new labels.
    """
    pairs = cKDTree(xy).query_pairs(link_m, output_type="ndarray")
    n_comp = int(comp.max()) + 1 if len(comp) else 0
    if len(pairs) == 0 or n_comp < 2:
        return comp
    a, b = comp[pairs[:, 0]], comp[pairs[:, 1]]
    cross = a != b
    edges = pd.DataFrame(
        {"a": np.minimum(a, b)[cross], "b": np.maximum(a, b)[cross],
         "s": np.minimum(density[pairs[cross, 0]], density[pairs[cross, 1]])}
    ).groupby(["a", "b"], as_index=False)["s"].max()  # fmt: skip
    peak = np.zeros(n_comp)
    np.maximum.at(peak, comp, density)
    keep = edges["s"].to_numpy() >= ratio * np.minimum(peak[edges["a"]], peak[edges["b"]])
    e = edges[keep]
    graph = sparse.coo_matrix((np.ones(len(e)), (e["a"], e["b"])), shape=(n_comp, n_comp))
    _, merged = connected_components(graph, directed=False)
    return merged[comp]


def _gauss_loglik(n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Maximised log-likelihood of one isotropic 2-D Gaussian from the sums of its points.

    .. math:: \\hat\\sigma^2 = \\frac{\\sum \\lVert s\\rVert^2 - \\lVert\\sum s\\rVert^2/n}{2n},
              \\qquad \\ell = -n \\ln(2\\pi\\hat\\sigma^2) - n

    (:math:`\\hat\\sigma^2` floored at 1 m², so that a few coincident reports stay finite).
    """
    s2 = np.maximum((sq - (sx**2 + sy**2) / n) / (2 * n), 1.0)
    return -n * np.log(2 * np.pi * s2) - n


def _bic_gain(comp: np.ndarray, xy: np.ndarray, e: np.ndarray) -> np.ndarray:
    """BIC(two sites) − BIC(one site) of each tree pair ``e`` (> 0: one Gaussian site explains both better).

    .. math:: \\Delta_{AB} = -2\\big[\\ell(A) + \\ell(B) + n_A\\ln\\tfrac{n_A}{n} + n_B\\ln\\tfrac{n_B}{n}\\big]
              + 7\\ln n + 2\\ell(A\\cup B) - 3\\ln n

    (:func:`_gauss_loglik`; an isotropic Gaussian has 3 parameters, a two-site mixture 7).
    """
    m = int(comp.max()) + 1
    n, sx, sy, sq = (np.bincount(comp, weights=w, minlength=m) for w in (None, xy[:, 0], xy[:, 1], (xy**2).sum(axis=1)))
    ll = _gauss_loglik(n, sx, sy, sq)
    i, j = e[:, 0], e[:, 1]
    nu = n[i] + n[j]
    ll_union = _gauss_loglik(nu, sx[i] + sx[j], sy[i] + sy[j], sq[i] + sq[j])
    ll_pair = ll[i] + ll[j] + n[i] * np.log(n[i] / nu) + n[j] * np.log(n[j] / nu)
    return -2 * ll_pair + 7 * np.log(nu) + 2 * ll_union - 3 * np.log(nu)


def merge_by_bic(xy: np.ndarray, comp: np.ndarray, link_m: float) -> np.ndarray:
    """Merge quick-shift trees that one Gaussian site explains better than two (BIC, as X-means).

    Agglomerative: trees touching within ``link_m`` form candidate pairs; in each
    round every pair of trees that are each other's best candidate with a positive
    :func:`_bic_gain` merges, and the gains are recomputed for the merged trees,
    until no pair gains. A wide site cut by kernel bumps is one Gaussian; two sites
    side by side stay two, and a chain of sites is not swallowed by one merge.
    Returns new labels.
    """
    pairs = cKDTree(xy).query_pairs(link_m, output_type="ndarray")
    _, comp = np.unique(comp, return_inverse=True)
    for _ in range(64):  # rounds; each merges at least one pair or stops
        a, b = comp[pairs[:, 0]], comp[pairs[:, 1]]
        cross = a != b
        e = np.unique(np.column_stack([np.minimum(a, b)[cross], np.maximum(a, b)[cross]]), axis=0)
        if len(e) == 0:
            break
        gain = _bic_gain(comp, xy, e)
        e, gain = e[gain > 0], gain[gain > 0]
        if len(e) == 0:
            break
        best = np.full(int(comp.max()) + 1, -np.inf)
        np.maximum.at(best, e[:, 0], gain)
        np.maximum.at(best, e[:, 1], gain)
        mutual = (gain == best[e[:, 0]]) & (gain == best[e[:, 1]])
        target = np.arange(len(best))
        target[e[mutual, 1]] = e[mutual, 0]
        _, comp = np.unique(target[comp], return_inverse=True)
    return comp


def _mixture_scan(
    xy: np.ndarray, core: np.ndarray, root: np.ndarray, params: ScanParams, mp: MixtureParams, days: np.ndarray | None
) -> np.ndarray:
    """Mixture labels of the ``scan`` cores (:func:`gis.cluster_mixture.mixture_labels`).

    Seeds: the quick-shift trees of the cores (as the other merges); groups: cores
    within ``merge_link_m`` of each other; the starting background at each incident
    is the sector-median density of the annulus (:func:`sector_background`, ``mp.sectors``)
    around the nearest tree's peak. With ``mp.time`` the reports' ``days`` are the mixture's
    third coordinate (:func:`gis.cluster_mixture.mixture_labels`).
    """
    _, seed = np.unique(root, return_inverse=True)
    group = core_groups(xy[core], params.merge_link_m)
    peaks = np.flatnonzero(root == np.arange(len(core)))
    lam = np.maximum(sector_background(xy, xy[core[peaks]], params.annulus_m, mp.sectors), params.min_background / 1e6)
    _, at = cKDTree(xy[core[peaks]]).query(xy, k=1)
    if mp.time:
        if days is None:
            raise AnalysisError("clusters.scan.mixture.time needs the incidents' dates")
        xy = np.column_stack([xy, days])
    return batched_mixture_labels(xy, core, seed, group, np.log(lam[at]), params.attach_m, mp)


def scan_labels(xy: np.ndarray, params: ScanParams, days: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels (−1 = background) of the ``scan`` method.

    Cores are the incidents with :func:`core_pvalues` ≤ ``core_p``; cores are
    grouped by :func:`quick_shift` on their kernel density (bandwidth
    ``bandwidth_m``, over all incidents of the group) with τ = ``link_m``, so that
    neighbouring sites split at the density saddle between them. ``merge:
    mixture``: the trees start a Gaussian mixture per group of cores
    (:func:`_mixture_scan`) whose sites are the clusters; otherwise trees touching
    within ``merge_link_m`` are merged per ``merge`` (:func:`merge_by_bic`,
    :func:`merge_by_saddle` or none) and every other incident within ``attach_m`` of
    a core joins its nearest core's cluster. Clusters smaller than
    ``min_cluster_size`` are background. ``days``: the reports' dates (days, float), used
    by the mixture when ``params.mixture.time``.
    """
    xy = np.asarray(xy, dtype=float)
    labels = np.full(len(xy), -1, dtype=np.int64)
    if len(xy) < params.min_cluster_size:
        return labels
    core = np.flatnonzero(core_pvalues(xy, params) <= params.core_p)
    if len(core) == 0:
        return labels
    rho = kernel_weights_at(xy[core], xy, params.bandwidth_m)
    root = quick_shift(xy[core], rho, params.link_m, params.neighbours)
    _, comp = np.unique(root, return_inverse=True)
    if params.merge == "mixture":
        if params.mixture is None or params.mixture.criterion not in ("bic", "icl", "aic"):
            raise AnalysisError("scan merge 'mixture' needs clusters.scan.mixture with criterion bic, icl or aic")
        return _without_small(_mixture_scan(xy, core, root, params, params.mixture, days), params.min_cluster_size)
    if params.merge == "bic":
        comp = merge_by_bic(xy[core], comp, params.merge_link_m)
    elif params.merge == "saddle" and params.merge_saddle_ratio < 1:
        comp = merge_by_saddle(xy[core], rho, comp, params.merge_link_m, params.merge_saddle_ratio)
    elif params.merge not in ("saddle", "none"):
        raise AnalysisError(f"scan merge '{params.merge}' must be mixture, bic, saddle or none")
    d, nearest = cKDTree(xy[core]).query(xy, k=1, distance_upper_bound=params.attach_m)
    near = np.isfinite(d)
    labels[near] = comp[nearest[near]]
    labels[core] = comp
    return _without_small(labels, params.min_cluster_size)


def _without_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels with clusters of fewer than ``min_size`` members set to −1, the rest numbered 0, 1, …"""
    labels = labels.copy()
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    labels[np.isin(labels, ids[counts < min_size])] = -1
    _, labels[labels >= 0] = np.unique(labels[labels >= 0], return_inverse=True)
    return labels


# ============================================================ significance


def bh_qvalues(p: np.ndarray, m: int | None = None) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of ``p`` out of ``m`` tests.

    .. math:: q_{(k)} = \\min_{j \\ge k} \\min\\Big(1, \\frac{m\\,p_{(j)}}{j}\\Big)

    ``m`` defaults to ``len(p)``; a larger ``m`` counts tests that were looked at
    but not reported (here: the scan windows of the search area).
    """
    p = np.asarray(p, dtype=float)
    m = len(p) if m is None else max(int(m), len(p))
    if len(p) == 0:
        return p.copy()
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


@dataclass(frozen=True)
class SignificanceParams:
    """Parameters of :func:`cluster_significance` (``layers/hotspots.yaml`` ``significance``).

    Attributes
    ----------
    annulus_m
        Background annulus ``(inner, outer)`` around the cluster centre.
    sectors
        The annulus is cut in this many sectors; the background is their median.
    radius_sigmas
        The cluster disc has radius ``radius_sigmas`` × σ̂ (σ̂ robust spread).
    window_overlap
        Places looked at per disc area: a detector slides its window, so the
        tests counted are (search area / disc area) × this.
    min_radius_m
        Smallest disc radius.
    min_background
        Floor of the background intensity (incidents per km²).
    alpha
        Level of the q-value; clusters with ``q > alpha`` are flagged.
    controls
        Also expect the cluster's share of *all* reports (case-control, as
        Kulldorff's Bernoulli scan): the reports of the other groups (kinds) are the
        controls that measure where people report at all.
    background
        ``all``: the annulus counts every incident of the group; ``unclustered``:
        only those outside every cluster (other sites nearby do not raise the
        background of a site in a crowded area).
    """

    annulus_m: tuple[float, float]
    sectors: int
    radius_sigmas: float
    window_overlap: float
    min_radius_m: float
    min_background: float
    alpha: float
    controls: bool
    background: str


def case_control_expected(
    xy: np.ndarray,
    controls: list[tuple[np.ndarray, np.ndarray]],
    c_xy: np.ndarray,
    rho: np.ndarray,
    params: SignificanceParams,
    window: object,
) -> np.ndarray:
    """Count expected in each disc from the reports of the other groups (case-control).

    For each control group *g* (another incident kind):

    .. math:: E^{g}_c = N^{g}(\\tilde s_c, \\rho_c)\\,\\frac{\\hat\\lambda_c}{\\hat\\lambda^{g}_c},
              \\qquad E^{cc}_c = \\operatorname{median}_g E^{g}_c

    :math:`N^{g}` = reports of group *g* in the disc; the ratio of the group's
    (``xy``: its background reports) to group *g*'s background sector-median
    densities in the annulus (:func:`sector_background`) is the local share of
    reporting. ``controls`` holds, per group *g*, (all its reports, its background
    reports). Where people report a lot of everything (a
    dense street) a bump of one kind is expected; a site is an excess of its kind
    over the reporting of the other kinds. The median over the control groups
    keeps a site of another kind at the same place from raising the expectation.
    Groups with an empty annulus give 0.
    """
    lam = sector_background(xy, c_xy, params.annulus_m, params.sectors, window)
    per = []
    for ctl, ctl_bg in controls:
        lam_ctl = sector_background(ctl_bg, c_xy, params.annulus_m, params.sectors, window) if len(ctl_bg) else 0 * lam
        n_ctl = np.asarray(cKDTree(ctl).query_ball_point(c_xy, rho, return_length=True), dtype=float)
        per.append(np.where(lam_ctl > 0, n_ctl * lam / np.maximum(lam_ctl, 1e-300), 0.0))
    return np.median(np.vstack(per), axis=0) if per else np.zeros(len(c_xy))


def _expected_counts(
    xy: np.ndarray,
    members: np.ndarray,
    c_xy: np.ndarray,
    rho: np.ndarray,
    params: SignificanceParams,
    window: object,
    controls: list[tuple[np.ndarray, np.ndarray]] | None,
) -> np.ndarray:
    """Expected count in each disc (:func:`cluster_pvalues`): local background, then case-control."""
    if params.background not in ("all", "unclustered"):
        raise AnalysisError(f"significance background '{params.background}' must be all or unclustered")
    bg = np.delete(xy, members, axis=0) if params.background == "unclustered" else xy
    lam = sector_background(bg, c_xy, params.annulus_m, params.sectors, window) if len(bg) else np.zeros(len(c_xy))
    disc_share = _inside_share(window, c_xy, np.zeros(len(rho)), rho, 1)[:, 0]
    expected = np.maximum(lam, params.min_background / 1e6) * np.pi * rho**2 * np.maximum(disc_share, 0.25)
    if params.controls and controls:
        ctl = controls if params.background == "unclustered" else [(c, c) for c, _ in controls]
        expected = np.maximum(expected, case_control_expected(bg, ctl, c_xy, rho, params, window))
    return expected


def cluster_pvalues(
    xy: np.ndarray,
    members: np.ndarray,
    labels: np.ndarray,
    params: SignificanceParams,
    *,
    window: object | None = None,
    controls: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[pd.DataFrame, float]:
    """Observed vs expected count and Poisson p-value of each cluster of one group.

    For cluster *c* with members :math:`M_c`: centre :math:`\\tilde s_c` =
    coordinate-wise median; robust spread :math:`\\hat\\sigma_c` = median member
    distance / 1.1774 (the median radius of a circular Gaussian is
    :math:`\\sqrt{2\\ln 2}\\,\\sigma`); disc radius :math:`\\rho_c = \\max(k\\hat\\sigma_c, \\rho_{min})`.
    Observed :math:`O_c` = incidents of the group (members or not) in the disc;
    expected :math:`E_c = \\max\\big(\\max(\\hat\\lambda_c, \\lambda_{min})\\,\\pi\\rho_c^2 f_c,\\ E^{cc}_c\\big)`
    with :math:`\\hat\\lambda_c` the sector-median density of all incidents of the
    group in the annulus (:func:`sector_background`), :math:`f_c` the disc's share
    inside the window and :math:`E^{cc}_c` the case-control expectation
    (:func:`case_control_expected`, when ``params.controls`` and ``controls`` are
    given); :math:`p_c = P(N \\ge O_c)`, :math:`N \\sim \\text{Poisson}(E_c)`. Taking
    the larger expectation is the intersection–union test: a cluster must stand
    out from its kind's surroundings *and* from the reporting of every kind.

    Parameters
    ----------
    xy
        ``(n, 2)`` metric coordinates of all incidents of the group.
    members
        Positions (into ``xy``) of clustered incidents.
    labels
        Cluster label of each member.
    window
        Observation window (shapely polygon; default the convex hull of ``xy``):
        the area searched, and the land against which discs and annuli near the
        boundary are measured.
    controls
        Per other group (case-control): coordinates of all its incidents and of its
        background incidents (outside its clusters).

    Returns
    -------
    (DataFrame, float)
        Indexed by label: ``observed``, ``expected``, ``ratio``, ``p_value``,
        ``disc_radius_m``; and the number of disjoint discs of mean radius in the
        search area, :math:`A/(\\pi\\bar\\rho^2)` (the places a detector looked at).
    """
    cols = ["observed", "expected", "ratio", "p_value", "disc_radius_m"]
    if len(members) == 0:
        return pd.DataFrame(columns=cols), 0.0
    mxy = xy[members]
    df = pd.DataFrame({"l": labels, "x": mxy[:, 0], "y": mxy[:, 1]})
    centre = df.groupby("l")[["x", "y"]].median()
    codes = centre.index.get_indexer(df["l"])
    c_xy = centre.to_numpy()
    dist = np.hypot(*(mxy - c_xy[codes]).T)
    sigma = pd.Series(dist).groupby(codes).median().to_numpy() / np.sqrt(2 * np.log(2))
    rho = np.maximum(params.radius_sigmas * sigma, params.min_radius_m)
    observed = np.asarray(cKDTree(xy).query_ball_point(c_xy, rho, return_length=True), dtype=float)
    if window is None:
        import shapely

        window = shapely.convex_hull(shapely.multipoints(xy)).buffer(1.0)
    expected = _expected_counts(xy, members, c_xy, rho, params, window, controls)
    table = pd.DataFrame(
        {
            "observed": observed.astype(int),
            "expected": expected,
            "ratio": observed / np.maximum(expected, 1e-12),
            "p_value": poisson_sf(observed - 1, expected),
            "disc_radius_m": rho,
        },
        index=centre.index,
    )
    return table, float(window.area / (np.pi * float(np.mean(rho)) ** 2)) * params.window_overlap


def flag_significant(table: pd.DataFrame, windows: float, alpha: float) -> pd.DataFrame:
    """Add ``q_value`` (BH over :math:`m = \\max(C, W)` tests) and ``significant`` (:math:`q \\le \\alpha`).

    *C* clusters were reported out of *W* places looked at (:func:`cluster_pvalues`);
    counting the unreported places keeps chance clusters of uniform points from
    passing (the scan's selection is part of the test).
    """
    out = table.copy()
    out["q_value"] = bh_qvalues(out["p_value"].to_numpy(dtype=float), m=int(np.ceil(windows)))
    out["significant"] = out["q_value"] <= alpha
    return out


def cluster_significance(
    xy: np.ndarray,
    members: np.ndarray,
    labels: np.ndarray,
    params: SignificanceParams,
    *,
    window: object | None = None,
    controls: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """:func:`cluster_pvalues` then :func:`flag_significant` for one group of incidents."""
    table, windows = cluster_pvalues(xy, members, labels, params, window=window, controls=controls)
    return flag_significant(table, windows, params.alpha)


def significance_text(observed: int, expected: float, *, lang: str = "en") -> str:
    """Plain-language significance: "40 reports where 3 would be expected" / "40起，按背景预期约3起" (numerals set
    close to 起, as the ledger's other counts)."""
    exp = f"{expected:.0f}" if expected >= 1 else f"{expected:.1f}"
    if lang == "zh":
        return f"{int(observed)}起，按背景预期约{exp}起"
    return f"{int(observed)} reports where {exp} would be expected"
