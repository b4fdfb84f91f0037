"""Sites as a Gaussian mixture over a local background (聚集区的混合模型拆分与合并).

The ``scan`` detector's quick-shift trees (:mod:`gis.cluster_scan`) are density
peaks, not sites: a wide site can hold several peaks and two neighbouring sites
of the same kind can share one. Here each connected group of cores is modelled
as what the sites are assumed to be — isotropic Gaussian sites over a uniform
background of reports — and the number of sites is chosen by BIC:

* :func:`fit_intensity` — EM of an inhomogeneous Poisson intensity
  :math:`\\lambda(s) = \\lambda_0 + \\sum_k n_k\\,\\phi(s; \\mu_k, \\sigma_k)`
  (background :math:`\\lambda_0` uniform over the group's window and fitted with
  the sites, so that the other sites of a crowded area are not taken for background);
* :func:`select_sites` — from the quick-shift peaks, merge, split or drop sites
  while the BIC (or ICL) improves;
* :func:`mixture_labels` — labels of all incidents of a group of cores: each
  incident goes to the most likely site within ``assign_sigmas`` σ of it, and
  sites closer than ``place_sigmas`` rms spreads are one cluster (:func:`place_groups`).

With ``time`` (the default, ``layers/hotspots.yaml``) a site is also active around
a time: :math:`\\lambda(s,t) = \\lambda_0/T + \\sum_k n_k\\,\\phi(s;\\mu_k,\\sigma_k)\\,
\\psi(t; m_k, \\tau_k)`, ψ Gaussian in the report's date, the background uniform
over the group's time span *T*: two sites of one kind at one place, worked at
different times, are two sites (their reports are told apart by date), and are then
reported as one place when closer than ``place_sigmas`` (one place to visit).

Without a background (:math:`\\lambda_0 \\to 0`) :func:`fit_intensity` is the EM of
a spherical Gaussian mixture (``tests/test_cluster_mixture.py`` checks it against
``sklearn.mixture.GaussianMixture(covariance_type="spherical")``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

#: Grid cells per ``attach_m`` when a group's window area is counted (:func:`window_areas`): an
#: accuracy constant of the area (boundary error under 1 %), not a parameter of the analysis.
WINDOW_CELLS_PER_RADIUS = 16
#: Floor of the shifted log terms before exp (:func:`lse_rows`): :math:`e^{-700}` is below the rounding of a
#: sum holding 1; numerics only, not a parameter.
EXP_FLOOR = -700.0
#: Largest points × sites of an EM fit computed on dense arrays (:func:`_e_step`); larger fits use the
#: point–site pairs within reach (a k-d tree). Speed only: both give the same fit.
DENSE_MAX_PAIRS = 20_000


@dataclass(frozen=True)
class MixtureParams:
    """Parameters of the mixture step (``layers/hotspots.yaml`` ``clusters.scan.mixture``).

    Attributes
    ----------
    min_sigma_m
        Smallest site spread σ (the precision of a reported location).
    max_sigma_m
        Largest site spread σ (one site, 现场: a yard and its street, not a district); the
        M-step clips σ to [``min_sigma_m``, ``max_sigma_m``], so several sites crowded into one
        area are fitted as several sites, not one wide Gaussian (``inf``: no limit).
    min_background
        Floor of the background intensity (per m²).
    fit_background
        Fit the background with the sites (uniform over the group's window);
        else keep the annulus estimate.
    criterion
        ``bic``, ``icl`` (BIC + 2 × classification entropy: overlapping sites
        count as one) or ``aic`` (a lighter penalty per site: more sites).
    split
        Also try splitting each site in two (:func:`_split`).
    max_iter
        EM iterations per fit.
    tol
        EM stops when the log-likelihood gains less than this.
    min_size
        Smallest site (expected reports); smaller components are dropped.
    reach_sigmas
        A change of sites is scored on the reports within this many σ of them.
    sectors
        Sectors of the background annulus (its median sector is the background).
    place_sigmas
        Fitted sites closer than this many rms spreads are reported as one
        cluster (:func:`place_groups`); 0: every site is a cluster.
    time
        Model the reports' dates too: each site is active around a time
        (:math:`\\psi(t; m_k, \\tau_k)`, Gaussian), the background uniform over the
        group's time span, so that sites of one kind at one place but active at
        different times are told apart (points then carry a third column, the day).
    min_tau_days
        Smallest time spread τ of a site (days).
    assign_sigmas
        A report joins the most likely site within this many σ of it (the fit
        itself reaches ``reach_sigmas``).
    propose
        ``moved``: after the first round a site is proposed again (split, merge, drop) only
        when it moved by more than ``propose_tol`` since it was last proposed
        (:func:`gis.cluster_batch.select_moved`); ``all``: every round proposes every site of
        a group (:func:`gis.cluster_batch.select_many`).
    propose_tol
        See ``propose`` (:func:`gis.cluster_batch._moved`).
    split_max_iter
        EM iterations of a split proposal's fit (the proposal is only scored; an applied split
        is refitted with its group, up to ``max_iter``).
    accelerate
        ``squarem``: the EM steps of :func:`gis.cluster_batch.fit_many` are extrapolated
        (SQUAREM, with a monotone safeguard); ``none``: plain EM.
    max_step
        Largest SQUAREM step length (1: the plain EM's two steps; larger steps are tried only
        after smaller ones succeeded).
    """

    min_sigma_m: float
    max_sigma_m: float
    min_background: float
    fit_background: bool
    criterion: str
    split: bool
    max_iter: int
    tol: float
    min_size: float
    reach_sigmas: float
    sectors: int
    place_sigmas: float
    time: bool
    min_tau_days: float
    assign_sigmas: float
    propose: str
    propose_tol: float
    split_max_iter: int
    accelerate: str
    max_step: float


@dataclass
class Sites:
    """Components of a mixture: means ``mu`` (k, 2), spreads ``sigma`` (k,), expected counts ``n`` (k,).

    With time (:attr:`MixtureParams.time`): mean day ``tm`` (k,) and time spread ``tau`` (k,, days).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: np.ndarray
    tm: np.ndarray | None = None
    tau: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.n)

    def subset(self, keep: np.ndarray) -> "Sites":
        """The components selected by ``keep`` (mask or indices)."""
        if self.tau is None:
            return Sites(self.mu[keep].copy(), self.sigma[keep].copy(), self.n[keep].copy())
        assert self.tm is not None
        return Sites(self.mu[keep].copy(), self.sigma[keep].copy(), self.n[keep].copy(), self.tm[keep].copy(),
                     self.tau[keep].copy())  # fmt: skip

    def add(self, other: "Sites") -> "Sites":
        """These components and ``other``'s."""
        mu, sigma, n = np.vstack([self.mu, other.mu]), np.concatenate([self.sigma, other.sigma]), np.concatenate([self.n, other.n])
        if self.tau is None or other.tau is None:
            return Sites(mu, sigma, n)
        assert self.tm is not None and other.tm is not None
        return Sites(mu, sigma, n, np.concatenate([self.tm, other.tm]), np.concatenate([self.tau, other.tau]))


def _site_log(
    x: np.ndarray, s: Sites, i: np.ndarray | None = None, k: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Log site terms :math:`\\log(n_k\\phi(s_i;\\mu_k,\\sigma_k)\\,\\psi(t_i;m_k,\\tau_k))` and squared distances.

    .. math:: \\log\\psi(t; m, \\tau) = -\\tfrac12\\log(2\\pi\\tau^2) - \\frac{(t-m)^2}{2\\tau^2}

    (only with time: ``s.tau`` set, ``x[:, 2]`` the day). Dense (N, k) arrays, or the
    point–site pairs ``i``, ``k`` (1-D). The squared distance is spatial (the reach).
    """
    if i is None or k is None:
        d2 = ((x[:, None, :2] - s.mu[None, :, :]) ** 2).sum(axis=2)
        lf = np.log(np.maximum(s.n, 1e-300)) - np.log(2 * np.pi * s.sigma**2) - d2 / (2 * s.sigma**2)
        if s.tau is not None and s.tm is not None:
            lf = lf - 0.5 * np.log(2 * np.pi * s.tau**2) - (x[:, 2:3] - s.tm[None, :]) ** 2 / (2 * s.tau**2)
        return lf, d2
    from gis._em_kernels import pair_log_terms  # compiled (numba), the same operations per pair

    timed = s.tau is not None and s.tm is not None
    none = np.zeros(0)
    return pair_log_terms(np.ascontiguousarray(x, dtype=float), s.mu, s.sigma, s.n, s.tm if timed else none,
                          s.tau if timed else none, timed, np.asarray(i, dtype=np.int64), np.asarray(k, dtype=np.int64))


def log_terms(x: np.ndarray, log_bg: np.ndarray, s: Sites) -> np.ndarray:
    """Log intensity of each term at each point: column 0 the background, then one per site.

    .. math:: \\log\\big(n_k\\,\\phi(s_i;\\mu_k,\\sigma_k)\\big) = \\log n_k - \\log(2\\pi\\sigma_k^2)
              - \\frac{\\lVert s_i-\\mu_k\\rVert^2}{2\\sigma_k^2}

    ``log_bg``: log background intensity at each point (per m², per m²·day with time;
    the site term then has the factor :math:`\\psi`, :func:`_site_log`).
    """
    site = _site_log(x, s)[0]
    return np.column_stack([np.broadcast_to(log_bg, (len(x),)), site])  # (N, 1 + k)


def lse_rows(a: np.ndarray) -> np.ndarray:
    """:math:`\\log\\sum_k e^{a_{ik}}` per row (max-shifted; the rows here always hold the finite background).

    Terms below :math:`e^{-700}` of the row's largest are taken as :math:`e^{-700}` (:data:`EXP_FLOOR`):
    next to the largest term (1 after the shift) they add nothing in double precision, and numpy's
    exp is several times slower on arguments that underflow.
    """
    m = a.max(axis=1)
    return m + np.log(np.exp(np.maximum(a - m[:, None], EXP_FLOOR)).sum(axis=1))


def _pair_terms(tree: cKDTree, x: np.ndarray, s: Sites, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point–site pairs within ``reach`` σ of the site, and their log intensity term (:func:`log_terms`)."""
    lists = tree.query_ball_point(s.mu, reach * s.sigma) if len(s) else []
    k = np.repeat(np.arange(len(s)), [len(v) for v in lists]).astype(np.int64)
    i = np.concatenate([np.asarray(v, dtype=np.int64) for v in lists]) if len(s) else np.zeros(0, np.int64)
    return i, k, _site_log(x, s, i, k)[0]


def _log_intensity(n_points: int, log_bg: np.ndarray, i: np.ndarray, lf: np.ndarray) -> np.ndarray:
    """:math:`\\log\\lambda(s_i)` from the background and the pair terms (log-sum-exp per point)."""
    m = np.array(np.broadcast_to(log_bg, (n_points,)), dtype=float)
    np.maximum.at(m, i, lf)
    tot = np.exp(np.broadcast_to(log_bg, (n_points,)) - m)
    np.add.at(tot, i, np.exp(lf - m[i]))
    return m + np.log(tot)


def fit_intensity(
    x: np.ndarray, log_bg: np.ndarray, s: Sites, params: MixtureParams, area: float | None = None
) -> tuple[Sites, float, np.ndarray]:
    """EM of the Poisson intensity :math:`\\lambda(s)=\\lambda_0(s)+\\sum_k n_k\\phi(s;\\mu_k,\\sigma_k)`.

    E-step: :math:`r_{ik} = n_k\\phi_k(s_i)/\\lambda(s_i)`; M-step:

    .. math:: n_k = \\sum_i r_{ik},\\quad \\mu_k = \\frac{\\sum_i r_{ik}s_i}{n_k},\\quad
              \\sigma_k^2 = \\frac{\\sum_i r_{ik}\\lVert s_i-\\mu_k\\rVert^2}{2n_k}

    (σ clipped to [``min_sigma_m``, ``max_sigma_m``]; :math:`\\lambda_0` fixed, ``log_bg`` its log at each
    point; a site's terms are computed within ``reach_sigmas`` σ of it, where the
    truncated Gaussian lives). The log-likelihood of the Poisson process on the window
    *W* is :math:`\\ell = \\sum_i \\log\\lambda(s_i) - \\int_W\\lambda_0 - \\sum_k n_k`; the
    constant :math:`\\int_W\\lambda_0` is left out. With :math:`\\lambda_0 \\to 0` this is the
    EM of a spherical Gaussian mixture with weights :math:`n_k/N`. With the window's
    ``area`` :math:`|W|` the background is fitted too, uniform over *W*:
    :math:`\\lambda_0 = \\sum_i r_{i0}/|W|` (the other sites of a crowded area are
    sites, not background). The M-step works on sums over the points, centred on
    their mean: :math:`2n_k\\sigma_k^2 = \\sum_i r_{ik}\\lVert s_i\\rVert^2 - n_k\\lVert\\mu_k\\rVert^2`
    (:func:`_e_step` gives the responsibilities). With time (``x[:, 2]`` the day) also
    :math:`m_k = \\sum_i r_{ik}t_i/n_k`, :math:`\\tau_k^2 = \\sum_i r_{ik}(t_i-m_k)^2/n_k`
    (floored at ``min_tau_days``) and ``area`` is :math:`|W|` × the time span. Returns the
    fitted sites, :math:`\\ell` and the log background.
    """
    centre = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    x = x - centre  # the sums of the M-step stay small numbers
    tree = None if len(x) * len(s) <= DENSE_MAX_PAIRS else cKDTree(x[:, :2])
    s = _shifted(s, -centre)
    log_bg = np.array(np.broadcast_to(log_bg, (len(x),)), dtype=float)
    sq = (x[:, :2] ** 2).sum(axis=1)
    ll_old = -np.inf
    ll = ll_old
    for _ in range(params.max_iter):
        lse, resp = _e_step(x, tree, log_bg, s, params.reach_sigmas)
        ll = float(lse.sum() - s.n.sum() - (np.exp(log_bg[0]) * area if area else 0.0))
        if ll - ll_old < params.tol:
            break
        ll_old = ll
        if area:
            log_bg[:] = np.log(max(np.exp(log_bg - lse).sum() / area, params.min_background))
        n = np.asarray(resp.sum(axis=0)).ravel()
        ok = n > 1e-9
        mu = np.where(ok[:, None], np.asarray(resp.T @ x[:, :2]) / np.maximum(n, 1e-9)[:, None], s.mu)
        var = np.maximum(np.asarray(resp.T @ sq).ravel() - n * (mu**2).sum(axis=1), 0.0) / np.maximum(2 * n, 1e-9)
        sigma = np.clip(np.sqrt(np.where(ok, var, s.sigma**2)), params.min_sigma_m, params.max_sigma_m)
        s = Sites(mu, sigma, n, *_time_m_step(x, resp, n, ok, s, params.min_tau_days))
    return _shifted(s, centre), ll, log_bg


def _shifted(s: Sites, by: np.ndarray) -> Sites:
    """Sites moved by ``by`` (x, y and, with time, the day)."""
    if s.tau is None or s.tm is None:
        return Sites(s.mu + by[:2], s.sigma.copy(), s.n.copy())
    return Sites(s.mu + by[:2], s.sigma.copy(), s.n.copy(), s.tm + by[2], s.tau.copy())


def _time_m_step(
    x: np.ndarray, resp: object, n: np.ndarray, ok: np.ndarray, s: Sites, min_tau: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """M-step of the time terms: :math:`m_k`, :math:`\\tau_k` (None without time)."""
    if s.tau is None or s.tm is None:
        return None, None
    t = x[:, 2]
    w = np.maximum(n, 1e-9)
    tm = np.where(ok, np.asarray(resp.T @ t).ravel() / w, s.tm)  # type: ignore[attr-defined]
    tv = np.asarray(resp.T @ (t**2)).ravel() / w - tm**2  # type: ignore[attr-defined]
    return tm, np.maximum(np.sqrt(np.where(ok, np.maximum(tv, 0.0), s.tau**2)), min_tau)


def _e_step(x: np.ndarray, tree: cKDTree | None, log_bg: np.ndarray, s: Sites, reach: float) -> tuple[np.ndarray, object]:
    """E-step: :math:`\\log\\lambda(s_i)` and the responsibilities :math:`r_{ik}=n_k\\phi_k(s_i)/\\lambda(s_i)`.

    A site's term counts within ``reach`` σ of it. Without a ``tree`` (small problems:
    points × sites ≤ :data:`DENSE_MAX_PAIRS`) on the dense (N, k) array, else on the
    point–site pairs found by the tree (:func:`_pair_terms`, a sparse matrix); both
    give the same numbers (``tests/test_cluster_mixture.py``).
    """
    from scipy import sparse

    if tree is None:
        lf, d2 = _site_log(x, s)
        lf[d2 > (reach * s.sigma[None, :]) ** 2] = -np.inf
        m = np.maximum(log_bg, lf.max(axis=1)) if len(s) else log_bg
        lse = m + np.log(np.exp(log_bg - m) + np.exp(lf - m[:, None]).sum(axis=1))
        return lse, np.exp(lf - lse[:, None])
    i, k, lf = _pair_terms(tree, x, s, reach)
    lse = _log_intensity(len(x), log_bg, i, lf)
    return lse, sparse.csr_matrix((np.exp(lf - lse[i]), (i, k)), shape=(len(x), len(s)))


def _merged(s: Sites, a: int, b: int) -> Sites:
    """One site of the same total count, mean and second moment as sites *a* and *b*."""
    w = s.n[[a, b]] / max(s.n[[a, b]].sum(), 1e-9)
    mu = w @ s.mu[[a, b]]
    second = w @ (2 * s.sigma[[a, b]] ** 2 + ((s.mu[[a, b]] - mu) ** 2).sum(axis=1))
    one = Sites(mu[None, :], np.array([np.sqrt(second / 2)]), np.array([s.n[[a, b]].sum()]))
    if s.tau is None or s.tm is None:
        return one
    tm = w @ s.tm[[a, b]]
    return Sites(one.mu, one.sigma, one.n, np.array([tm]), np.array([np.sqrt(w @ (s.tau[[a, b]] ** 2 + (s.tm[[a, b]] - tm) ** 2))]))


def _without(idx: np.ndarray, drop: list[int]) -> np.ndarray:
    """``idx`` (sorted, unique) without the sites ``drop``: ``np.setdiff1d`` for the few sites of a change, in order."""
    keep = np.ones(len(idx), dtype=bool)
    for k in drop:
        keep &= idx != k
    return idx[keep]


def _near(tree: cKDTree, n_points: int, s: Sites, sites: list[int], reach: float) -> np.ndarray:
    """Mask of the points within ``reach`` σ of any of ``sites``."""
    near = np.zeros(n_points, dtype=bool)
    for k in sites:
        near[tree.query_ball_point(s.mu[k], reach * s.sigma[k])] = True
    return near


def _local_gain(
    tree: cKDTree, x: np.ndarray, lt: np.ndarray, s: Sites, old: list[int], new: Sites, reach: float, criterion: str
) -> float:
    """BIC change when sites ``old`` are replaced by ``new`` (others fixed), on the points near ``old``.

    Points within ``reach`` σ of an old site (*L*):

    .. math:: \\Delta = -2\\Big[\\sum_{i\\in L}\\log\\frac{\\lambda_{new}(s_i)}{\\lambda_{old}(s_i)}
              - \\sum_{new} n_k + \\sum_{old} n_k\\Big] + 4\\,(k_{new}-k_{old})\\ln|L|

    (< 0: the new sites explain the reports better, BIC; ``criterion`` ``aic``: 8 instead
    of :math:`4\\ln|L|` per site, ``icl``: BIC + 2 × the change of classification entropy). ``lt``: the
    log terms of all points (:func:`log_terms` of ``s``), whose columns the old model reads.
    """
    near = _near(tree, len(x), s, old, reach)
    if not near.any():
        return np.inf
    xl = x[near]
    lo, hi = xl[:, :2].min(axis=0), xl[:, :2].max(axis=0)
    gap = np.maximum(np.maximum(lo - s.mu, 0), np.maximum(s.mu - hi, 0))
    close = np.flatnonzero((gap**2).sum(axis=1) <= (reach * s.sigma) ** 2)
    idx = np.flatnonzero(near)
    base = lt[np.ix_(idx, np.r_[0, _without(close, old) + 1])]
    lt_old = np.column_stack([base, lt[np.ix_(idx, np.asarray(old) + 1)]])
    lt_new = np.column_stack([base, log_terms(xl, base[:, 0], new)[:, 1:]])
    lse_old, lse_new = lse_rows(lt_old), lse_rows(lt_new)
    ll_old = lse_old.sum() - s.n[old].sum()
    ll_new = lse_new.sum() - new.n.sum()
    per_site = 8.0 if criterion == "aic" else 4 * np.log(max(near.sum(), 2))  # 4 parameters per site
    gain = -2 * (ll_new - ll_old) + (len(new) - len(old)) * per_site
    if criterion == "icl":  # + 2 x (entropy of the memberships): overlapping sites are one place to visit
        gain += 2 * (_entropy(lt_new, lse_new) - _entropy(lt_old, lse_old))
    return float(gain)


@dataclass
class Intensity:
    """A group's fitted intensity at its points, each site's term cut at its reach as in the EM (:func:`_e_step`).

    Point–site pairs ``i``, ``k`` (grouped by site: site *a*'s are ``start[a]:start[a+1]``), their terms
    ``e`` and the point totals ``tot`` (background included), both shifted by ``m`` per point:
    :math:`\\lambda(s_i) = e^{m_i}\\,\\mathrm{tot}_i`.
    """

    log_bg: np.ndarray
    i: np.ndarray
    k: np.ndarray
    e: np.ndarray
    m: np.ndarray
    tot: np.ndarray
    start: np.ndarray

    def without(self, rows: np.ndarray, pts: np.ndarray, e_old: np.ndarray) -> np.ndarray:
        """Shifted intensity at points ``pts`` without the terms ``e_old`` (never below the background)."""
        return np.maximum(self.tot[pts] - e_old, np.exp(self.log_bg[pts] - self.m[pts]))


def intensity(tree: cKDTree, x: np.ndarray, log_bg: np.ndarray, s: Sites, reach: float) -> Intensity:
    """:class:`Intensity` of sites ``s`` over the log background ``log_bg`` at points ``x`` (``tree``: of ``x[:, :2]``)."""
    log_bg = np.array(np.broadcast_to(log_bg, (len(x),)), dtype=float)
    i, k, lf = _pair_terms(tree, x, s, reach)
    m = log_bg.copy()
    np.maximum.at(m, i, lf)
    e = np.exp(np.maximum(lf - m[i], EXP_FLOOR))
    tot = np.exp(log_bg - m) + np.bincount(i, weights=e, minlength=len(x))
    return Intensity(log_bg, i, k, e, m, tot, np.searchsorted(k, np.arange(len(s) + 1)))


def change_gains(
    x: np.ndarray, inten: Intensity, s: Sites, cands: list[tuple[list[int], Sites]], params: MixtureParams
) -> np.ndarray:
    """BIC change of every candidate change (sites ``old`` replaced by ``new``, others fixed), all at once.

    On the points within ``reach_sigmas`` σ of an old site (*L*), with every site's term cut at its reach
    as in the EM's intensity (:func:`_e_step`):

    .. math:: \\Delta = -2\\Big[\\sum_{i\\in L}\\log\\frac{\\rho_i + \\sum_{new} n_k\\phi_k(s_i)}{\\lambda(s_i)}
              - \\sum_{new} n_k + \\sum_{old} n_k\\Big] + 4\\,(k_{new}-k_{old})\\ln|L|

    with :math:`\\rho_i = \\lambda(s_i) - \\sum_{old} n_k\\phi_k(s_i)` the intensity without the old sites
    (at least the background; AIC: 8 per site). ``inf`` when no point is near. One pass over the
    (candidate, point) pairs (compiled: :func:`gis._em_kernels.change_loglik`) instead of one call per candidate
    (:func:`_local_gain`, kept for ICL).
    """
    from gis._em_kernels import change_loglik

    timed = s.tau is not None and s.tm is not None
    news = [new for _, new in cands]
    old_ptr = np.cumsum([0] + [len(old) for old, _ in cands]).astype(np.int64)
    new_ptr = np.cumsum([0] + [len(new) for new in news]).astype(np.int64)
    old_sites = np.array([a for old, _ in cands for a in old], dtype=np.int64)
    cols = {f: np.concatenate([getattr(new, f) for new in news]) if timed or f in ("sigma", "n") else np.zeros(0)
            for f in ("sigma", "n", "tm", "tau")}  # fmt: skip
    new_mu = np.vstack([new.mu for new in news]) if news else np.zeros((0, 2))
    dl, near = change_loglik(np.ascontiguousarray(x, dtype=float), inten.i, inten.e, inten.tot, inten.m, inten.log_bg,
                             inten.start, old_ptr, old_sites, new_ptr, new_mu, cols["sigma"], cols["n"], cols["tm"],
                             cols["tau"], timed, params.reach_sigmas, EXP_FLOOR)  # fmt: skip
    dn = np.array([new.n.sum() - s.n[old].sum() for old, new in cands])
    dk = np.array([len(new) - len(old) for old, new in cands])
    per_site = 8.0 if params.criterion == "aic" else 4 * np.log(np.maximum(near, 2))
    return np.where(near > 0, -2 * (dl - dn) + dk * per_site, np.inf)


def _entropy(lt: np.ndarray, lse: np.ndarray) -> float:
    """Classification entropy :math:`-\\sum_i\\sum_k r_{ik}\\log r_{ik}` of log terms ``lt`` (row totals ``lse``)."""
    logr = lt - lse[:, None]
    return float(-(np.exp(logr) * logr).sum())


def split_start(x: np.ndarray, inten: Intensity, s: Sites, a: int, params: MixtureParams) -> tuple[np.ndarray, np.ndarray, Sites]:
    """The fit of a split of site *a*: :func:`split_starts` of the one site."""
    return split_starts(x, inten, s, np.array([a]), params)[0]


def split_starts(
    x: np.ndarray, inten: Intensity, s: Sites, sites: np.ndarray, params: MixtureParams
) -> list[tuple[np.ndarray, np.ndarray, Sites]]:
    """The fits of the splits of ``sites``: per site its nearby points, the log intensity of the other sites there,
    and the starting pair.

    The points within reach of site *a* (its pairs in ``inten``, :class:`Intensity`); the pair starts ±1 sd along
    the main axis of the points' offsets from the site, weighted by its responsibilities :math:`r_i`
    (:func:`gis._em_kernels.split_moments`, the eigenvectors of all sites at once); with time along the main axis
    of the standardised offsets :math:`((s_i-\\mu_a)/\\sigma_a, (t_i-m_a)/\\tau_a)`, the two sites keeping
    :math:`\\sigma_a` and :math:`\\tau_a`; in space alone the pair's σ is the minor axis' sd. :func:`_split` fits it
    with the others fixed.
    """
    from gis._em_kernels import split_moments

    timed = s.tau is not None and s.tm is not None
    none = np.zeros(0)
    sites = np.asarray(sites, dtype=np.int64)
    cov = split_moments(np.ascontiguousarray(x, dtype=float), inten.i, inten.e, inten.tot, inten.start, s.mu, s.sigma,
                        s.tm if timed else none, s.tau if timed else none, timed, sites)  # fmt: skip
    vals, vecs = np.linalg.eigh(cov) if len(sites) else (np.zeros((0, 2)), np.zeros((0, 2, 2)))
    out = []
    for j, a in enumerate(sites):
        rows = np.arange(inten.start[a], inten.start[a + 1])
        near = inten.i[rows]
        v = np.sqrt(max(vals[j, -1], 1e-9)) * vecs[j, :, -1]
        if timed:
            assert s.tau is not None and s.tm is not None
            step, dt = v[:2] * s.sigma[a], v[2] * s.tau[a]
            two = Sites(np.vstack([s.mu[a] + step, s.mu[a] - step]), np.full(2, s.sigma[a]), np.full(2, s.n[a] / 2),
                        np.array([s.tm[a] + dt, s.tm[a] - dt]), np.full(2, s.tau[a]))  # fmt: skip
        else:
            sig = max(np.sqrt(max(vals[j, 0], 1e-9)), params.min_sigma_m)
            two = Sites(np.vstack([s.mu[a] + v, s.mu[a] - v]), np.array([sig, sig]), np.full(2, s.n[a] / 2))
        out.append((x[near], inten.m[near] + np.log(inten.without(rows, near, inten.e[rows])), two))
    return out


def _split(x: np.ndarray, inten: Intensity, s: Sites, a: int, params: MixtureParams) -> Sites:
    """Site *a* as two sites (:func:`split_start`), refitted with the others fixed."""
    xl, base, two = split_start(x, inten, s, a, params)
    return fit_intensity(xl, base, two, params)[0]


def change_candidates(s: Sites) -> list[tuple[list[int], Sites]]:
    """Changes of the sites to score (:func:`ranked_changes`): each site dropped, each merged with its nearest."""
    k = len(s)
    empty = Sites(np.zeros((0, 2)), np.zeros(0), np.zeros(0), *((np.zeros(0), np.zeros(0)) if s.tau is not None else ()))
    cands: list[tuple[list[int], Sites]] = [([a], empty) for a in range(k)]
    if k > 1:
        d = np.hypot(*(s.mu[:, None, :] - s.mu[None, :, :]).transpose(2, 0, 1)) / (s.sigma[:, None] + s.sigma[None, :])
        np.fill_diagonal(d, np.inf)
        pairs = sorted({tuple(sorted((i, int(np.argmin(d[i]))))) for i in range(k)})
        cands += [([a, b], _merged(s, a, b)) for a, b in pairs]
    return cands


def ranked_changes(
    tree: cKDTree, x: np.ndarray, inten: Intensity, s: Sites, cands: list[tuple[list[int], Sites]], params: MixtureParams
) -> list[tuple[float, list[int], Sites]]:
    """The changes ``cands`` that lower the criterion (:func:`change_gains`, all at once; ICL: :func:`_local_gain`;
    ``inten``: :func:`intensity` of ``s``), best first."""
    if params.criterion == "icl":
        lt = log_terms(x, inten.log_bg, s)
        gains = [_local_gain(tree, x, lt, s, old, new, params.reach_sigmas, params.criterion) for old, new in cands]
    else:
        gains = list(change_gains(x, inten, s, cands, params)) if cands else []
    out = [(float(g), old, new) for g, (old, new) in zip(gains, cands) if g < 0]
    return sorted(out, key=lambda t: t[0])


def _improvements(x: np.ndarray, log_bg: np.ndarray, s: Sites, params: MixtureParams) -> list[tuple[float, list[int], Sites]]:
    """Changes that lower the criterion, best first: each site merged with its nearest, dropped, or split."""
    tree = cKDTree(x[:, :2])
    inten = intensity(tree, x, log_bg, s, params.reach_sigmas)
    cands = change_candidates(s)
    if params.split:
        cands += [([a], _split(x, inten, s, a, params)) for a in range(len(s)) if s.n[a] >= 2 * params.min_size]
    return ranked_changes(tree, x, inten, s, cands, params)


def apply_changes(s: Sites, todo: list[tuple[float, list[int], Sites]]) -> Sites:
    """Sites after the changes ``todo`` (best first), each site in at most one change; new sites go last."""
    used: set[int] = set()
    drop: list[int] = []
    added = []
    for _gain, old, new in todo:
        if used.isdisjoint(old):
            used.update(old)
            drop += old
            added.append(new)
    s = s.subset(_without(np.arange(len(s)), drop))
    for new in added:
        s = s.add(new)
    return s


def select_sites(x: np.ndarray, log_bg: np.ndarray, init: Sites, params: MixtureParams, area: float | None) -> Sites:
    """Sites of one group: from ``init`` (the quick-shift trees), merge, split or drop sites while the BIC falls.

    Each round fits all sites (:func:`fit_intensity`), then applies every change
    (:func:`_improvements`) that lowers the criterion (:func:`_local_gain`, best
    first, each site in at most one change); stops when none does. Sites expecting
    fewer than ``min_size`` reports are dropped at the end.
    """
    s, _, log_bg = fit_intensity(x, log_bg, init, params, area)
    for _ in range(2 * len(init) + 2):  # rounds; each applies at least one change or stops
        todo = _improvements(x, log_bg, s, params)
        if not todo:
            break
        s = apply_changes(s, todo)
        s, _, log_bg = fit_intensity(x, log_bg, s, params, area)
    small = s.n < params.min_size
    if small.any() and not small.all():
        s, _, _ = fit_intensity(x, log_bg, s.subset(~small), params, area)
    return s.subset(s.n >= params.min_size)


def place_groups(s: Sites, place_sigmas: float) -> np.ndarray:
    """Place of each site: sites too close to tell apart are merged into one place, closest pair first.

    Two sites *a*, *b* are one place when

    .. math:: \\lVert\\mu_a-\\mu_b\\rVert < c\\,\\sqrt{(\\sigma_a^2+\\sigma_b^2)/2}

    (*c* = ``place_sigmas``; for two equal Gaussian sites, *c* = 2 is where their summed
    density stops having two peaks). Agglomerative: each round merges every pair of
    places that are each other's closest (in units of the right-hand side) and
    within the limit; a merged place is the single site of the same count, mean and
    second moment (:func:`gis.cluster_mixture._merged`), then compared again with its neighbours.
    Returns the place index of every site (0 … P−1).
    """
    place = np.arange(len(s))
    if place_sigmas <= 0 or len(s) < 2:
        return place
    cur = Sites(s.mu.copy(), s.sigma.copy(), s.n.copy())
    members = [[k] for k in range(len(s))]
    while len(cur) > 1:
        d = np.hypot(*(cur.mu[:, None, :] - cur.mu[None, :, :]).transpose(2, 0, 1))
        z = d / np.sqrt((cur.sigma[:, None] ** 2 + cur.sigma[None, :] ** 2) / 2)
        np.fill_diagonal(z, np.inf)
        best = np.argmin(z, axis=1)
        pairs = [(a, int(b)) for a, b in enumerate(best) if a < b and best[b] == a and z[a, b] < place_sigmas]
        if not pairs:
            break
        gone = {b for _, b in pairs}
        for a, b in pairs:
            one = _merged(cur, a, b)
            cur.mu[a], cur.sigma[a], cur.n[a] = one.mu[0], one.sigma[0], one.n[0]
            members[a] = members[a] + members[b]
        keep = [k for k in range(len(cur)) if k not in gone]
        cur = cur.subset(np.array(keep))
        members = [members[k] for k in keep]
    for p, ks in enumerate(members):
        place[ks] = p
    return place


def assign(x: np.ndarray, s: Sites, reach: float) -> np.ndarray:
    """Site of each point (−1 none): the most likely site among those within ``reach`` σ of the point.

    Every report near a site is listed with it (the background share of a site's
    disc is what its significance test measures, :mod:`gis.cluster_scan`).
    """
    if len(s) == 0:
        return np.full(len(x), -1, dtype=np.int64)
    lt, d2 = _site_log(x, s)
    lt[d2 > (reach * s.sigma[None, :]) ** 2] = -np.inf
    best = np.argmax(lt, axis=1)
    return np.where(np.isfinite(lt[np.arange(len(x)), best]), best, -1).astype(np.int64)


def core_groups(core_xy: np.ndarray, link_m: float) -> np.ndarray:
    """Group of each core: connected components of cores within ``link_m`` of each other."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(core_xy).query_pairs(link_m, output_type="ndarray")
    m = len(core_xy)
    graph = sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m))
    return connected_components(graph, directed=False)[1]


def initial_sites(x: np.ndarray, owner: np.ndarray, min_sigma: float, min_tau: float) -> Sites:
    """One site per seed (``owner`` ≥ 0: a quick-shift tree): mean, spread (floored) and count of its points.

    With a third column (the day) also the seed's mean day and time spread (floored at ``min_tau``).
    """
    ids, k, n = np.unique(owner, return_inverse=True, return_counts=True)
    m = len(ids)
    mu = np.column_stack([np.bincount(k, weights=x[:, j], minlength=m) for j in (0, 1)]) / n[:, None]
    var = np.bincount(k, weights=((x[:, :2] - mu[k]) ** 2).sum(axis=1), minlength=m) / (2 * n)
    keep = ids >= 0
    s = Sites(mu[keep], np.maximum(np.sqrt(var[keep]), min_sigma), n[keep].astype(float))
    if x.shape[1] < 3:
        return s
    tm = np.bincount(k, weights=x[:, 2], minlength=m) / n
    tv = np.bincount(k, weights=(x[:, 2] - tm[k]) ** 2, minlength=m) / n
    return Sites(s.mu, s.sigma, s.n, tm[keep], np.maximum(np.sqrt(tv[keep]), min_tau))


def window_areas(core_xy: np.ndarray, group: np.ndarray, attach_m: float, cells_per_radius: int) -> np.ndarray:
    """Area (m²) of each group's window: the union of discs of radius ``attach_m`` around its cores.

    Counted on a grid of cell size :math:`h = r / c` (*r* = ``attach_m``, *c* =
    ``cells_per_radius``) over the group's bounding box: a cell belongs to the window
    when its centre lies within *r* of a core of the group; the area is the number of
    such cells × :math:`h^2` (the boundary error is of order :math:`h / r` of a disc,
    under 1 % for *c* = 16; ``tests/test_cluster_mixture.py`` compares it with
    shapely's union of buffers). Returns one area per group label ``0 … max(group)``.
    """
    h = attach_m / cells_per_radius
    out = np.zeros(int(group.max()) + 1 if len(group) else 0)
    order = np.argsort(group, kind="stable")
    for idx in np.split(order, np.flatnonzero(np.diff(group[order])) + 1) if len(group) else []:
        out[group[idx[0]]] = _covered_cells(core_xy[idx], attach_m, h) * h**2
    return out


def _covered_cells(c: np.ndarray, r: float, h: float) -> int:
    """Cells of size ``h`` (grid from the discs' bounding box) whose centre lies within ``r`` of a centre ``c``.

    Row by row: in the grid row at height *y* a disc covers the cells whose centre *x* satisfies
    :math:`|x - c_x| \\le \\sqrt{r^2 - (y - c_y)^2}`, a run of cells marked +1 / −1 at its ends in a
    difference array; a cell is covered where the running sum along its row is positive.
    """
    lo = c.min(axis=0) - r
    x0, y0 = lo + h / 2  # centre of the first cell
    nx, ny = (len(np.arange(lo[j] + h / 2, c[:, j].max() + r, h)) for j in (0, 1))
    rows = int(np.ceil(2 * r / h)) + 2
    j = np.floor((c[:, 1] - r - y0) / h).astype(np.int64)[:, None] + np.arange(rows)[None, :]
    dy2 = (y0 + j * h - c[:, 1, None]) ** 2
    ok = (dy2 <= r * r) & (j >= 0) & (j < ny)
    half = np.sqrt(np.where(ok, r * r - dy2, 0.0))
    i0 = np.maximum(np.ceil((c[:, 0, None] - half - x0) / h), 0).astype(np.int64)
    i1 = np.minimum(np.floor((c[:, 0, None] + half - x0) / h), nx - 1).astype(np.int64)
    ok &= i0 <= i1
    row = j[ok] * (nx + 1)
    size = ny * (nx + 1)
    diff = np.bincount(row + i0[ok], minlength=size) - np.bincount(row + i1[ok] + 1, minlength=size)
    return int((np.cumsum(diff.reshape(ny, nx + 1)[:, :nx], axis=1) > 0).sum())


def _time_span(x: np.ndarray, params: MixtureParams) -> float:
    """Time span *T* (days) over which a group's background is spread: :math:`\\max(t_{max}-t_{min}+1,\\ \\sqrt{2\\pi}\\,\\tau_{min})`.

    The floor is the width of the narrowest site's time term (its peak density is
    :math:`1/(\\sqrt{2\\pi}\\tau_{min})`): reports all made within a few days are
    then told apart by place only, as without time.
    """
    return float(max(np.ptp(x[:, 2]) + 1.0, np.sqrt(2 * np.pi) * params.min_tau_days))


@dataclass
class Group:
    """One group of cores as :func:`select_sites` takes it: its incidents ``idx``, their coordinates ``x`` (with
    the day as third column with time), the log background there, the starting sites, the window's area (× time
    span) and the parameters with the background floor per m²·day (:func:`group_inputs`)."""

    idx: np.ndarray
    x: np.ndarray
    log_bg: np.ndarray
    init: Sites
    area: float | None
    params: MixtureParams


def group_inputs(
    xy: np.ndarray, core: np.ndarray, seed: np.ndarray, group: np.ndarray, log_bg: np.ndarray, attach_m: float,
    params: MixtureParams,
) -> list[Group]:
    """The groups of cores of :func:`mixture_labels`, each with what :func:`select_sites` needs.

    A group's points are the incidents whose nearest core (within ``attach_m``) is in it;
    its initial sites are the seeds (:func:`initial_sites`); its window is the union of
    discs of ``attach_m`` around its cores (:func:`window_areas`); with time the
    background and its floor are spread over the group's time span *T*
    (:math:`\\lambda_0/T` per m²·day, :func:`_time_span`).
    """
    d, nearest = cKDTree(xy[core, :2]).query(xy[:, :2], k=1, distance_upper_bound=attach_m)
    near = np.flatnonzero(np.isfinite(d))
    g_of = group[nearest[near]]
    order = np.argsort(g_of, kind="stable")
    areas = window_areas(xy[core, :2], group, attach_m, WINDOW_CELLS_PER_RADIUS) if params.fit_background else None
    out = []
    for idx in np.split(near[order], np.flatnonzero(np.diff(g_of[order])) + 1) if len(near) else []:
        x = xy[idx] if params.time else xy[idx, :2]
        owner = np.where(d[idx] == 0, seed[nearest[idx]], -1)
        init = initial_sites(x, owner, params.min_sigma_m, params.min_tau_days)
        area = float(areas[group[nearest[idx[0]]]]) if areas is not None else None
        span = _time_span(x, params) if params.time else 1.0  # days
        per_day = replace(params, min_background=params.min_background / span)  # floor per m²·day
        out.append(Group(idx, x, log_bg[idx] - np.log(span), init, area * span if area else None, per_day))
    return out


def labels_of_sites(n_points: int, groups: list[Group], sites: list[Sites], params: MixtureParams) -> np.ndarray:
    """Labels (−1 background) of all incidents from the fitted sites of each group.

    :func:`assign` labels a group's points (most likely site within ``assign_sigmas`` σ);
    sites closer than ``place_sigmas`` rms spreads share one label (:func:`place_groups`).
    """
    labels = np.full(n_points, -1, dtype=np.int64)
    next_id = 0
    for g, s in zip(groups, sites):
        lab = assign(g.x, s, params.assign_sigmas)
        place = place_groups(s, params.place_sigmas)
        labels[g.idx[lab >= 0]] = place[lab[lab >= 0]] + next_id
        next_id += int(place.max()) + 1 if len(s) else 0
    return labels


def mixture_labels(
    xy: np.ndarray, core: np.ndarray, seed: np.ndarray, group: np.ndarray, log_bg: np.ndarray, attach_m: float,
    params: MixtureParams,
) -> np.ndarray:
    """Labels (−1 background) of all incidents from a mixture fitted per connected group of cores.

    The groups of :func:`group_inputs` (seeds: the quick-shift tree of each core,
    ``seed``; ``log_bg``: log intensity per m² at each incident, the start when
    ``fit_background``), each fitted on its own by :func:`select_sites` and labelled by
    :func:`labels_of_sites`. ``xy`` has a third column, the day, with ``params.time``.
    The detector runs :func:`gis.cluster_batch.batched_mixture_labels`, the same with
    all groups fitted at once; this one is its reference (``tests/test_cluster_mixture.py``).
    """
    groups = group_inputs(xy, core, seed, group, log_bg, attach_m, params)
    sites = [select_sites(g.x, g.log_bg, g.init, g.params, g.area) for g in groups]
    return labels_of_sites(len(xy), groups, sites, params)
