"""Local-background scan clusters and per-cluster significance (聚集区显著性).

Two jobs, both measured against the *local* background of incidents rather than
one district-wide distance:

* :func:`scan_labels` — the ``scan`` clustering method: an incident is a *core*
  when the number of incidents around it, at one of a few radii, is improbably
  high for the background intensity in an annulus around it (one-sided Poisson
  test); cores closer than the link distance form one cluster and the incidents
  near a core join it. A dense street and a farm valley are judged each against
  its own surroundings.
* :func:`cluster_significance` — for every reported cluster: observed count, the
  count expected from the local background, a Poisson p-value and a
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
from scipy.stats import poisson

from gis._errors import AnalysisError


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
    min_cluster_size
        Smallest cluster (members).
    min_background
        Floor of the background intensity (incidents per km²), so that an empty
        annulus does not make every pair of incidents a cluster.
    """

    radii_m: tuple[float, ...]
    annulus_m: tuple[float, float]
    core_p: float
    link_m: float
    attach_m: float
    bandwidth_m: float
    neighbours: int
    min_cluster_size: int
    min_background: float


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


def core_pvalues(xy: np.ndarray, params: ScanParams) -> np.ndarray:
    """Smallest one-sided Poisson p-value over the radii, times the number of radii.

    For incident *i* and radius *r*: observed :math:`n_i(r)` = other incidents
    within *r*; expected :math:`\\mu_i(r) = \\max(\\hat\\lambda_i, \\lambda_{min})\\,\\pi r^2`
    (:func:`background_density`);

    .. math:: p_i = \\min\\Big(1,\\ R\\,\\min_r P\\big(N \\ge n_i(r)\\big)\\Big),
              \\quad N \\sim \\text{Poisson}(\\mu_i(r))

    (*R* radii, Bonferroni).
    """
    tree = cKDTree(xy)
    lam = np.maximum(background_density(xy, xy, params.annulus_m), params.min_background / 1e6)
    best = np.ones(len(xy))
    for r in params.radii_m:
        n = np.asarray(tree.query_ball_point(xy, float(r), return_length=True)) - 1
        best = np.minimum(best, poisson.sf(n - 1, lam * np.pi * float(r) ** 2))
    return np.minimum(best * len(params.radii_m), 1.0)


def kernel_weights_at(centres: np.ndarray, xy: np.ndarray, bandwidth_m: float) -> np.ndarray:
    """Gaussian kernel sum :math:`\\rho_i = \\sum_j \\exp(-\\lVert c_i - s_j\\rVert^2 / 2h^2)` (pairs within 3h)."""
    sdm = cKDTree(centres).sparse_distance_matrix(cKDTree(xy), 3.0 * bandwidth_m, output_type="ndarray")
    w = np.exp(-0.5 * (sdm["v"] / bandwidth_m) ** 2)
    return np.bincount(sdm["i"], weights=w, minlength=len(centres)) + 1.0  # +1: the point itself at d = 0


def quick_shift(xy: np.ndarray, density: np.ndarray, tau_m: float, k: int) -> np.ndarray:
    """Quick shift (Vedaldi & Soatto 2008): trees of "nearest denser point within τ".

    Each point's parent is its nearest point (among the ``k`` nearest) with higher
    ``density`` (ties broken by index) no farther than ``tau_m``; points without
    one are roots (density peaks). Returns the root index of every point.
    """
    n = len(xy)
    k = int(min(k, n))
    d, nb = cKDTree(xy).query(xy, k=k, distance_upper_bound=tau_m)
    nb = np.where(np.isfinite(d), nb, n)
    key = np.append(density * (1 + 1e-12) + np.arange(n) * 1e-15, -np.inf)
    higher = key[nb] > key[:n, None]
    first = np.argmax(higher, axis=1)
    has = higher[np.arange(n), first]
    parent = np.where(has, nb[np.arange(n), first], np.arange(n))
    for _ in range(64):  # pointer jumping: depth halves each round
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    return parent


def scan_labels(xy: np.ndarray, params: ScanParams) -> np.ndarray:
    """Cluster labels (−1 = background) of the ``scan`` method.

    Cores are the incidents with :func:`core_pvalues` ≤ ``core_p``; cores are
    grouped by :func:`quick_shift` on their kernel density (bandwidth
    ``bandwidth_m``, over all incidents of the group) with τ = ``link_m``, so that
    neighbouring sites split at the density saddle between them; every other
    incident within ``attach_m`` of a core joins its nearest core's cluster;
    clusters smaller than ``min_cluster_size`` are background.
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
    d, nearest = cKDTree(xy[core]).query(xy, k=1, distance_upper_bound=params.attach_m)
    near = np.isfinite(d)
    labels[near] = comp[nearest[near]]
    labels[core] = comp
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    labels[np.isin(labels, ids[counts < params.min_cluster_size])] = -1
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
    radius_sigmas
        The cluster disc has radius ``radius_sigmas`` × σ̂ (σ̂ robust spread).
    min_radius_m
        Smallest disc radius.
    min_background
        Floor of the background intensity (incidents per km²).
    alpha
        Level of the q-value; clusters with ``q > alpha`` are flagged.
    """

    annulus_m: tuple[float, float]
    radius_sigmas: float
    min_radius_m: float
    min_background: float
    alpha: float


def cluster_pvalues(
    xy: np.ndarray,
    members: np.ndarray,
    labels: np.ndarray,
    params: SignificanceParams,
    *,
    search_area_m2: float,
) -> tuple[pd.DataFrame, float]:
    """Observed vs expected count and Poisson p-value of each cluster of one group.

    For cluster *c* with members :math:`M_c`: centre :math:`\\tilde s_c` =
    coordinate-wise median; robust spread :math:`\\hat\\sigma_c` = median member
    distance / 1.1774 (the median radius of a circular Gaussian is
    :math:`\\sqrt{2\\ln 2}\\,\\sigma`); disc radius :math:`\\rho_c = \\max(k\\hat\\sigma_c, \\rho_{min})`.
    Observed :math:`O_c` = incidents of the group (members or not) in the disc;
    expected :math:`E_c = \\max(\\hat\\lambda_c, \\lambda_{min})\\,\\pi\\rho_c^2` with
    :math:`\\hat\\lambda_c` the density of unclustered incidents in the annulus
    (:func:`background_density`; neighbouring sites are not background);
    :math:`p_c = P(N \\ge O_c)`, :math:`N \\sim \\text{Poisson}(E_c)`.

    Parameters
    ----------
    xy
        ``(n, 2)`` metric coordinates of all incidents of the group.
    members
        Positions (into ``xy``) of clustered incidents.
    labels
        Cluster label of each member.
    search_area_m2
        Area searched (e.g. the extent of the group's incidents).

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
    observed = np.array([len(v) for v in cKDTree(xy).query_ball_point(c_xy, rho)], dtype=float)
    background = np.ones(len(xy), dtype=bool)
    background[members] = False  # other sites in the annulus are not background
    lam = background_density(xy[background], c_xy, params.annulus_m) if background.any() else np.zeros(len(c_xy))
    expected = np.maximum(lam, params.min_background / 1e6) * np.pi * rho**2
    table = pd.DataFrame(
        {
            "observed": observed.astype(int),
            "expected": expected,
            "ratio": observed / np.maximum(expected, 1e-12),
            "p_value": poisson.sf(observed - 1, expected),
            "disc_radius_m": rho,
        },
        index=centre.index,
    )
    return table, float(search_area_m2 / (np.pi * float(np.mean(rho)) ** 2))


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
    xy: np.ndarray, members: np.ndarray, labels: np.ndarray, params: SignificanceParams, *, search_area_m2: float
) -> pd.DataFrame:
    """:func:`cluster_pvalues` then :func:`flag_significant` for one group of incidents."""
    table, windows = cluster_pvalues(xy, members, labels, params, search_area_m2=search_area_m2)
    return flag_significant(table, windows, params.alpha)


def significance_text(observed: int, expected: float, *, lang: str = "en") -> str:
    """Plain-language significance: "40 reports where 3 would be expected" / "40 起，按背景预期约 3 起"."""
    exp = f"{expected:.0f}" if expected >= 1 else f"{expected:.1f}"
    if lang == "zh":
        return f"{int(observed)} 起，按背景预期约 {exp} 起"
    return f"{int(observed)} reports where {exp} would be expected"
