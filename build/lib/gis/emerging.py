"""Space-time hot spots: Gi* per time step, Mann-Kendall trend, emerging categories.

After ArcGIS *Emerging Hot Spot Analysis* (新增/持续/加剧/减弱热点): incidents are
counted per (hexagon cell, time step) in a space-time cube; every bin gets a Gi*
z-score over its space-time neighbourhood (its spatial neighbours in the same and
the ``neighborhood_time_steps`` previous steps); each cell's z-series is tested for
a monotonic trend with the Mann-Kendall test; and each cell falls into one of the
categories below, defined on the series of *significant hot* steps (Gi* z > 0 with
p < ``alpha``) — the ArcGIS definitions, made exact here:

``new``
    hot at the final step only, never before.
``consecutive``
    an uninterrupted run of ≥ 2 hot steps ending at the final step, never hot
    before the run, and hot in < 90 % of steps.
``intensifying``
    hot in ≥ 90 % of steps including the final one, z rising (MK trend > 0, p < alpha).
``persistent``
    hot in ≥ 90 % of steps including the final one, no significant trend.
``diminishing``
    hot in ≥ 90 % of steps including the final one, z falling (MK trend < 0, p < alpha).
``sporadic``
    hot at the final step, hot in < 90 % of steps, otherwise not matching the above
    and never significantly cold.
``oscillating``
    hot at the final step, hot in < 90 % of steps, significantly cold at some earlier step.
``historical``
    not hot at the final step but hot in ≥ 90 % of the steps.

Cold-spot categories mirror these (``new_cold`` …); everything else is
``no_pattern``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtr

from gis._errors import AnalysisError
from gis.gistar import fdr_cutoff, gi_z, with_self_weight

CATEGORIES_HOT: tuple[str, ...] = (
    "new",
    "consecutive",
    "intensifying",
    "persistent",
    "diminishing",
    "sporadic",
    "oscillating",
    "historical",
)

#: Chinese labels of the emerging categories (hot spots; cold ones add 冷点).
CATEGORY_LABEL_ZH: dict[str, str] = {
    "new": "新增热点",
    "consecutive": "连续热点",
    "intensifying": "加剧热点",
    "persistent": "持续热点",
    "diminishing": "减弱热点",
    "sporadic": "零星热点",
    "oscillating": "振荡热点",
    "historical": "历史热点",
    "no_pattern": "无显著模式",
}


def mann_kendall(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mann-Kendall trend test on each row of ``y`` (time along axis 1), vectorised.

    .. math::

        S = \\sum_{k<l}\\operatorname{sgn}(y_l - y_k), \\qquad
        \\operatorname{Var}(S) = \\frac{T(T-1)(2T+5) - \\sum_g t_g(t_g-1)(2t_g+5)}{18},
        \\qquad Z = S/\\sqrt{\\operatorname{Var}(S)}

    with :math:`t_g` the sizes of groups of tied values; two-sided
    :math:`p = 2(1-\\Phi(|Z|))`. No continuity correction, so ``p`` equals
    ``scipy.stats.kendalltau(range(T), y_row, method='asymptotic').pvalue``.

    Returns
    -------
    s, z, p
        Arrays of length ``y.shape[0]``.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 2:
        raise AnalysisError("mann_kendall expects a 2-D array (series along axis 1)")
    m, t = y.shape
    s = np.zeros(m)
    for k in range(t - 1):  # loop over time steps (tens), vectorised over cells
        s += np.sign(y[:, k + 1 :] - y[:, k : k + 1]).sum(axis=1)
    # ties per row: run lengths of the row-sorted values
    ys = np.sort(y, axis=1)
    new_group = np.ones((m, t), dtype=bool)
    new_group[:, 1:] = ys[:, 1:] != ys[:, :-1]
    flat = new_group.ravel()
    starts = np.flatnonzero(flat)
    lengths = np.diff(np.append(starts, m * t))
    rows = starts // t
    tie_term = np.bincount(rows, weights=lengths * (lengths - 1) * (2 * lengths + 5), minlength=m)
    var = (t * (t - 1) * (2 * t + 5) - tie_term) / 18.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, s / np.sqrt(var), 0.0)
    p = 2.0 * ndtr(-np.abs(z))
    return s, z, p


def space_time_gi_star(counts: np.ndarray, w: sp.spmatrix, time_steps: int = 1) -> np.ndarray:
    """Gi* z-scores of every bin of a space-time cube.

    ``counts`` is ``(n_cells, T)``. A bin's neighbourhood is its spatial neighbours
    (``w`` plus itself) in the same step and in each of the ``time_steps`` previous
    steps; mean and standard deviation are those of the whole cube (ArcGIS
    *Emerging Hot Spot Analysis*). Computed with the same formula as
    :func:`gis.gistar.gi_star`, on the weights :math:`\\sum_{l=0}^{L} S_l \\otimes W^*`
    with :math:`S_l` the lag-``l`` shift over time.
    """
    x = np.asarray(counts, dtype=float)
    t = x.shape[1]
    ws = with_self_weight(w, 1.0)
    # (S ⊗ W*) x without forming the Kronecker product: spatial lag, then sum over time lags
    spatial = np.asarray(ws @ x)
    csum = np.cumsum(spatial, axis=1)
    lag = csum.copy()
    if time_steps + 1 < t:
        lag[:, time_steps + 1 :] -= csum[:, : t - time_steps - 1]
    n_lags = np.minimum(np.arange(t), time_steps) + 1  # steps in each bin's neighbourhood
    wi = np.asarray(ws.sum(axis=1)).ravel()[:, None] * n_lags[None, :]
    s1 = np.asarray(ws.multiply(ws).sum(axis=1)).ravel()[:, None] * n_lags[None, :]
    return gi_z(lag, wi, s1, x, what="space-time Gi*")


def _space_time_weights(w: sp.spmatrix, t: int, time_steps: int) -> sp.csr_matrix:
    """The explicit space-time weights :math:`\\sum_l S_l \\otimes W^*` (time-major bins; tests)."""
    ws = with_self_weight(w, 1.0)
    shift = sp.csr_matrix((t, t))
    for lag in range(0, time_steps + 1):
        shift = shift + sp.eye(t, k=-lag, format="csr")
    return sp.kron(shift, ws, format="csr")


@dataclass
class EmergingResult:
    """Result of :func:`emerging_hot_spots`.

    Attributes
    ----------
    steps
        Labels of the time steps (e.g. ``2023-04``).
    counts
        ``(n_cells, T)`` incident counts.
    z
        ``(n_cells, T)`` space-time Gi* z-scores.
    trend_z, trend_p
        Mann-Kendall Z and p of each cell's z-series.
    category
        Emerging category per cell (module docstring).
    """

    steps: list[str]
    counts: np.ndarray
    z: np.ndarray
    trend_z: np.ndarray
    trend_p: np.ndarray
    category: np.ndarray


def time_step_index(
    dates: pd.Series, time_step: str, stages: list[dict] | None, *, max_steps: int
) -> tuple[np.ndarray, list[str]]:
    """Step index (−1 = outside every stage / before the kept steps) and step labels of each date.

    Months or quarters run from the first to the last date, but at most the
    latest ``max_steps`` of them are kept: records before are −1 (left out), so a
    mistyped year (1900 for 2022) cannot build a cube of thousands of steps.
    """
    dates = pd.to_datetime(pd.Series(dates).reset_index(drop=True))
    if max_steps < 1:
        raise AnalysisError(f"hotspots.emerging.max_steps must be at least 1, not {max_steps}")
    if time_step in ("month", "quarter"):
        freq = "M" if time_step == "month" else "Q"
        per = dates.dt.to_period(freq)
        hi = per.max()
        lo = max(per.min(), hi - (max_steps - 1))
        labels = pd.period_range(lo, hi, freq=freq)
        ordinal = pd.PeriodIndex(per).asi8.astype(np.int64)
        idx = ordinal - lo.ordinal
        idx[idx < 0] = -1
        return idx, [str(p) for p in labels]
    if time_step == "stage":
        if not stages:
            raise AnalysisError("time_step 'stage' needs hotspots.emerging.stages [{name, start, end}]")
        idx = np.full(len(dates), -1, dtype=np.int64)
        for k, st in enumerate(stages):
            inside = (dates >= pd.Timestamp(st["start"])) & (dates <= pd.Timestamp(st["end"]))
            idx[inside.to_numpy() & (idx < 0)] = k
        return idx, [str(st.get("name", k)) for k, st in enumerate(stages)]
    raise AnalysisError(f"unknown time_step '{time_step}' (month, quarter or stage)")


def emerging_hot_spots(
    cell: np.ndarray,
    step: np.ndarray,
    n_cells: int,
    w: sp.spmatrix,
    *,
    steps: list[str],
    time_steps: int,
    alpha: float,
    fdr: bool,
) -> EmergingResult:
    """Classify cells into emerging hot/cold-spot categories.

    Parameters
    ----------
    cell, step
        Cell index and time-step index of every incident (negative = dropped).
    n_cells
        Number of cells.
    w
        Spatial weights between cells (diagonal ignored; self-weight 1 is added).
    steps
        Labels of the time steps.
    time_steps
        Neighbourhood time steps (previous steps counted in a bin's neighbourhood).
    alpha
        Significance of a bin's Gi* (two-sided) and of the trend.
    fdr
        A bin is significant when its p-value is below the Benjamini–Hochberg
        cut-off at ``alpha`` over all bins (:func:`gis.gistar.fdr_cutoff`), the
        multiple-testing control the clusters get; else below ``alpha``.
    """
    t = len(steps)
    ok = (cell >= 0) & (step >= 0)
    counts = np.zeros((n_cells, t))
    np.add.at(counts, (cell[ok], step[ok]), 1.0)
    z = space_time_gi_star(counts, w, time_steps)
    p = 2.0 * ndtr(-np.abs(z))
    cut = fdr_cutoff(p.ravel(), alpha) if fdr else alpha
    hot = (z > 0) & (p < cut)
    cold = (z < 0) & (p < cut)
    _, tz, tp = mann_kendall(z)
    up = (tz > 0) & (tp < alpha)
    down = (tz < 0) & (tp < alpha)
    cat = np.full(n_cells, "no_pattern", dtype=object)
    for sig, other, suffix, rising, falling in ((hot, cold, "", up, down), (cold, hot, "_cold", down, up)):
        _classify(cat, sig, other, rising, falling, suffix)
    return EmergingResult(steps=steps, counts=counts, z=z, trend_z=tz, trend_p=tp, category=cat)


def _classify(
    cat: np.ndarray, sig: np.ndarray, other: np.ndarray, rising: np.ndarray, falling: np.ndarray, suffix: str
) -> None:
    """Fill ``cat`` for one side (hot or cold); see the module docstring."""
    t = sig.shape[1]
    share = sig.mean(axis=1)
    final = sig[:, -1]
    ever_before = sig[:, :-1].any(axis=1)
    # length of the run of significant steps ending at the final step
    not_sig = ~sig
    last_gap = np.where(not_sig.any(axis=1), t - 1 - np.argmax(not_sig[:, ::-1], axis=1), -1)
    run = t - 1 - last_gap
    before_run = np.zeros(len(sig), dtype=bool)
    has_gap = last_gap >= 0
    csum = np.cumsum(sig, axis=1)
    before_run[has_gap] = csum[has_gap, last_gap[has_gap]] > 0
    mostly = share >= 0.9
    free = cat == "no_pattern"
    rules = [
        ("new", final & ~ever_before),
        ("consecutive", final & (run >= 2) & ~before_run & ~mostly),
        ("intensifying", final & mostly & rising),
        ("diminishing", final & mostly & falling),
        ("persistent", final & mostly & ~rising & ~falling),
        ("oscillating", final & ~mostly & other[:, :-1].any(axis=1)),
        ("sporadic", final & ~mostly),
        ("historical", ~final & mostly),
    ]
    for name, mask in rules:
        take = free & mask
        cat[take] = name + suffix
        free &= ~take
