"""Many EM fits of :mod:`gis.cluster_mixture` at once (批量拟合).

The mixture fits one intensity per group of scan cores, and one small fit per
proposed split of a site; the groups share no points, the splits only read theirs.
:func:`fit_many` runs any number of such *problems* in lock-step on stacked arrays:
every point is paired with the sites of its own problem near it (:class:`_PairFinder`),
a site's term counts within ``reach_sigmas`` σ of it as in
:func:`gis.cluster_mixture.fit_intensity`, and each problem stops on its own
(log-likelihood gain below ``tol``, or ``max_iter``); a stopped problem leaves
the stacked arrays. The numbers are those of ``fit_intensity`` up to the rounding of
floating-point sums (``tests/test_cluster_mixture.py`` compares them); one pass of numpy
over all problems replaces hundreds of small passes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from gis.cluster_mixture import (
    Group,
    EXP_FLOOR,
    Intensity,
    MixtureParams,
    Sites,
    change_candidates,
    intensity,
    ranked_changes,
    split_starts,
    apply_changes,
    group_inputs,
    labels_of_sites,
    _without,
)


@dataclass
class Problem:
    """One EM fit: points ``x`` (N, 2 or 3), log background at each point, starting sites.

    ``area``: the window's area (× time span with time) when the background is fitted
    with the sites (then floored at ``floor`` per m², per m²·day with time); None keeps
    ``log_bg`` fixed.
    """

    x: np.ndarray
    log_bg: np.ndarray
    sites: Sites
    area: float | None
    floor: float


@dataclass
class _Stack:
    """Problems stacked: points and sites with their problem ids, each problem centred on its points' mean."""

    x: np.ndarray  # (N, d), each problem centred on its points' mean
    log_bg: np.ndarray  # (N,)
    pp: np.ndarray  # problem of each point
    sp: np.ndarray  # problem of each site
    mu: np.ndarray
    sigma: np.ndarray
    n: np.ndarray
    tm: np.ndarray | None
    tau: np.ndarray | None
    first: np.ndarray  # first point of each problem
    area: np.ndarray  # 0: background fixed
    floor: np.ndarray


def _stack(problems: list[Problem]) -> tuple[_Stack, list[np.ndarray]]:
    """Stack the problems, each centred on its points' mean (returns the centres too)."""
    npts = np.array([len(p.x) for p in problems], dtype=np.int64)
    nsit = np.array([len(p.sites) for p in problems], dtype=np.int64)
    dim = problems[0].x.shape[1]
    centres = [p.x.mean(axis=0) if len(p.x) else np.zeros(dim) for p in problems]
    x = np.vstack([p.x - c for p, c in zip(problems, centres)]) if npts.sum() else np.zeros((0, dim))
    pp = np.repeat(np.arange(len(problems)), npts)
    sp = np.repeat(np.arange(len(problems)), nsit)
    mu = np.vstack([p.sites.mu - c[:2] for p, c in zip(problems, centres)]) if nsit.sum() else np.zeros((0, 2))
    timed = problems[0].sites.tau is not None
    tm = np.concatenate([p.sites.tm - c[2] for p, c in zip(problems, centres)]) if timed else None  # type: ignore[operator]
    tau = np.concatenate([p.sites.tau for p in problems]) if timed else None  # type: ignore[misc]
    point_start = np.concatenate([[0], np.cumsum(npts)[:-1]])
    st = _Stack(
        x, np.concatenate([np.broadcast_to(np.asarray(p.log_bg, dtype=float), (len(p.x),)) for p in problems]),
        pp, sp, mu, np.concatenate([p.sites.sigma for p in problems]), np.concatenate([p.sites.n for p in problems]),
        tm, tau, point_start,
        np.array([p.area or 0.0 for p in problems]), np.array([p.floor for p in problems]),
    )  # fmt: skip
    return st, centres


@dataclass
class _Pairs:
    """Point–site pairs: point ``pi`` (of the stack) and site ``pk``; the compiled steps read the points' coordinates
    from the stack (:func:`_gathered` gathers them for the numpy reference steps)."""

    pi: np.ndarray
    pk: np.ndarray

    def __len__(self) -> int:
        return len(self.pi)

    def keep(self, mask: np.ndarray) -> "_Pairs":
        """The pairs selected by ``mask``."""
        return _Pairs(self.pi[mask], self.pk[mask])


def _gathered(st: _Stack, pr: _Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The pairs' points' x, y, x² + y² and, with time, day and day² (for the numpy reference steps)."""
    px, py = st.x[pr.pi, 0], st.x[pr.pi, 1]
    pt = st.x[pr.pi, 2] if st.tau is not None else None
    return px, py, px**2 + py**2, pt, None if pt is None else pt**2


def _pair_log(st: _Stack, pr: _Pairs, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Log site term of each pair (:func:`gis.cluster_mixture._site_log`) and whether it is within ``reach`` σ.

    The per-site factors are computed once per site and gathered (the same numbers as per pair). The numpy
    reference of the compiled E-step (:func:`gis._em_kernels.pair_estep`).
    """
    pk = pr.pk
    px, py, _, pt, _ = _gathered(st, pr)
    d2 = (px - st.mu[:, 0][pk]) ** 2 + (py - st.mu[:, 1][pk]) ** 2
    head = np.log(np.maximum(st.n, 1e-300)) - np.log(2 * np.pi * st.sigma**2)
    lf = head[pk] - d2 / (2 * st.sigma**2)[pk]
    if st.tau is not None and st.tm is not None and pt is not None:
        lf = lf - (0.5 * np.log(2 * np.pi * st.tau**2))[pk] - (pt - st.tm[pk]) ** 2 / (2 * st.tau**2)[pk]
    return lf, d2 <= ((reach * st.sigma) ** 2)[pk]


def _shift(st: _Stack) -> np.ndarray:
    """Per point an upper bound *M* of its log terms: the larger of its background and the highest site peak
    of its problem, :math:`\\log(n_k/(2\\pi\\sigma_k^2)\\,/\\sqrt{2\\pi}\\tau_k)`."""
    peak = np.log(np.maximum(st.n, 1e-300)) - np.log(2 * np.pi * st.sigma**2)
    if st.tau is not None:
        peak = peak - 0.5 * np.log(2 * np.pi * st.tau**2)
    top = np.full(len(st.area), -np.inf)
    np.maximum.at(top, st.sp, peak)
    return np.maximum(st.log_bg, top[st.pp])


def _lse(st: _Stack, pr: _Pairs, lf: np.ndarray, inr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:math:`\\log\\lambda(s_i)` at every point, the shifted pair terms and the shifted point totals.

    .. math:: \\log\\lambda_i = M_i + \\log\\Big(e^{\\log\\lambda_0 - M_i} + \\sum_k e^{\\ell_{ik} - M_i}\\Big)

    (*M* from :func:`_shift`, so that no term overflows; terms beyond reach are 0 and terms
    below :math:`e^{-700}` are :math:`e^{-700}`, :data:`gis.cluster_mixture.EXP_FLOOR`: next to the
    background term, at least :math:`e^{\\log\\lambda_0 - M}`, they add nothing, and numpy's exp is
    several times slower on arguments that underflow). The responsibilities are the
    shifted terms over the totals, :math:`r_{ik} = e^{\\ell_{ik}-M_i} / \\sum`.
    """
    m = _shift(st)
    e = np.exp(np.maximum(lf - m[pr.pi], EXP_FLOOR)) * inr
    tot = np.exp(st.log_bg - m) + np.bincount(pr.pi, weights=e, minlength=len(st.x))
    return m + np.log(tot), e, tot


def _timed(st: _Stack) -> bool:
    """Whether the stack's sites have time terms (and its points the days)."""
    return st.tau is not None and st.tm is not None and st.x.shape[1] > 2


def _e_terms(st: _Stack, pr: _Pairs, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_pair_log` and :func:`_lse` in one compiled pass (:func:`gis._em_kernels.pair_estep`): the same
    :math:`\\log\\lambda`, shifted pair terms and point totals."""
    from gis._em_kernels import pair_estep  # numba: imported (and compiled, cached) when a fit first runs

    m = _shift(st)
    none = np.zeros(0)
    timed = _timed(st)
    e, tot_sites = pair_estep(st.x, pr.pi, pr.pk, st.mu, st.sigma, st.n, st.tm if timed else none,
                              st.tau if timed else none, timed, reach, m, EXP_FLOOR)  # fmt: skip
    tot = np.exp(st.log_bg - m) + tot_sites
    return m + np.log(tot), e, tot


def pair_sums(st: _Stack, pr: _Pairs, r: np.ndarray, k_sites: int) -> np.ndarray:
    """Per site :math:`\\sum r`, :math:`\\sum r x`, :math:`\\sum r y`, :math:`\\sum r (x^2+y^2)` (and with time
    :math:`\\sum r t`, :math:`\\sum r t^2`) over the pairs by numpy: the reference of :func:`gis._em_kernels.pair_msums`."""
    px, py, psq, pt, pt2 = _gathered(st, pr)
    cols = [px, py, psq] + ([pt, pt2] if pt is not None and pt2 is not None else [])
    return np.vstack([np.bincount(pr.pk, weights=r, minlength=k_sites)]
                     + [np.bincount(pr.pk, weights=r * v, minlength=k_sites) for v in cols])  # fmt: skip


def _m_step(st: _Stack, pr: _Pairs, e: np.ndarray, tot: np.ndarray, sites: np.ndarray, params: MixtureParams) -> None:
    """M-step of the sites ``sites`` (global ids) from the pair terms ``e`` and point totals ``tot`` of the E-step
    (responsibilities :math:`r_{ik} = e_{ik}/\\mathrm{tot}_i`; sums by :func:`gis._em_kernels.pair_msums`), in place.

    .. math:: n_k=\\sum_i r_{ik},\\ \\mu_k=\\frac{\\sum_i r_{ik}s_i}{n_k},\\
              \\sigma_k^2=\\frac{\\sum_i r_{ik}\\lVert s_i\\rVert^2-n_k\\lVert\\mu_k\\rVert^2}{2n_k},\\
              m_k=\\frac{\\sum_i r_{ik}t_i}{n_k},\\ \\tau_k^2=\\frac{\\sum_i r_{ik}t_i^2}{n_k}-m_k^2

    (σ clipped to [``min_sigma_m``, ``max_sigma_m``], τ floored; a site with no weight keeps its place and spreads).
    """
    from gis._em_kernels import pair_msums

    timed = _timed(st)
    sums = pair_msums(e, tot, pr.pi, pr.pk, st.x, timed, len(st.n))[:, sites]
    n, sx, sy, sq = sums[:4]
    ok = n > 1e-9
    w = np.maximum(n, 1e-9)
    mu = np.where(ok[:, None], np.column_stack([sx, sy]) / w[:, None], st.mu[sites])
    var = np.maximum(sq - n * (mu**2).sum(axis=1), 0.0) / np.maximum(2 * n, 1e-9)
    st.sigma[sites] = np.clip(np.sqrt(np.where(ok, var, st.sigma[sites] ** 2)), params.min_sigma_m, params.max_sigma_m)
    st.mu[sites] = mu
    st.n[sites] = n
    if timed:
        assert st.tm is not None and st.tau is not None
        tm = np.where(ok, sums[4] / w, st.tm[sites])
        tv = sums[5] / w - tm**2
        st.tau[sites] = np.maximum(np.sqrt(np.where(ok, np.maximum(tv, 0.0), st.tau[sites] ** 2)), params.min_tau_days)
        st.tm[sites] = tm


def fit_many(problems: list[Problem], params: MixtureParams) -> list[tuple[Sites, float, np.ndarray]]:
    """EM of every problem (:func:`gis.cluster_mixture.fit_intensity`), all in lock-step.

    Per iteration, for the problems still running: E-step on their pairs
    (:func:`_e_terms`, compiled; :func:`_pair_log` and :func:`_lse` are its numpy reference), log-likelihood
    :math:`\\ell_p = \\sum_{i\\in p}\\log\\lambda(s_i) - \\sum_{k\\in p} n_k - \\lambda_{0,p}|W_p|`;
    a problem whose :math:`\\ell_p` gained less than ``tol`` stops with these sites;
    the others update their background (:math:`\\lambda_0=\\sum_i r_{i0}/|W|`, floored)
    and sites (:func:`_m_step`). The pairs are those within a radius of the sites
    (:class:`_PairFinder`), found again when a site has moved or grown out of it.
    With ``params.accelerate`` ``squarem`` the EM steps are extrapolated (:func:`_squarem`);
    ``none``: plain EM (:func:`_plain`).
    Returns per problem the fitted sites, :math:`\\ell` and the log background at its points.
    """
    if not problems:
        return []
    st, centres = _stack(problems)
    em = _EM(st, params)
    if params.accelerate == "squarem":
        _squarem(em, params)
    else:
        _plain(em, params)
    return _unstack(st, centres, em.ll)


class _EM:
    """The running state of :func:`fit_many`: the stack, its pairs, the points and problems still running."""

    def __init__(self, st: _Stack, params: MixtureParams) -> None:
        self.st, self.params = st, params
        self.n_prob = len(st.area)
        self.ll = np.full(self.n_prob, -np.inf)
        self.running = np.ones(self.n_prob, dtype=bool)
        self.finder = _PairFinder(st, params.reach_sigmas)
        self.pr = self.finder.pairs(np.arange(len(st.n)))
        self.pts = np.arange(len(st.x))

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """E-step at the current sites: :math:`\\ell_p` of every problem (valid for the running ones),
        :math:`\\log\\lambda` at every point, the shifted pair terms and point totals (:func:`_lse`)."""
        st = self.st
        lse, e, tot = _e_terms(st, self.pr, self.params.reach_sigmas)
        bg_first = _first_log_bg(st)
        ll_now = (np.bincount(st.pp[self.pts], weights=lse[self.pts], minlength=self.n_prob)
                  - np.bincount(st.sp, weights=st.n, minlength=self.n_prob) - np.exp(bg_first) * st.area)  # fmt: skip
        return ll_now, lse, e, tot

    def stop(self, stop: np.ndarray, e: np.ndarray) -> np.ndarray:
        """Stop the problems ``stop``: their pairs and points leave; returns ``e`` of the pairs kept."""
        self.running[stop] = False
        keep = self.running[self.st.pp[self.pr.pi]]
        self.pr = self.pr.keep(keep)
        self.pts = self.pts[self.running[self.st.pp[self.pts]]]
        return e[keep]

    def update(self, lse: np.ndarray, e: np.ndarray, tot: np.ndarray) -> None:
        """M-step of the running problems (background, then sites) from the E-step's ``lse``, ``e``, ``tot``."""
        st = self.st
        _background_step(st, self.pts, lse, self.running)
        on = np.flatnonzero(self.running[st.sp])
        _m_step(st, self.pr, e, tot, on, self.params)
        self.pr = self.finder.update(self.pr, on)


def _plain(em: _EM, params: MixtureParams) -> None:
    """Plain EM (:func:`_plain_reference`) in one compiled loop (:func:`gis._em_kernels.em_plain`): the loop
    returns when sites left their pairs' search radius, whose pairs are searched again here (:class:`_PairFinder`,
    the pairs of stopped problems dropped first), and goes on."""
    from gis._em_kernels import em_plain

    st, finder = em.st, em.finder
    ll_old = np.full(em.n_prob, -np.inf)
    timed = st.tau is not None and st.tm is not None
    none = np.zeros(0)
    bounds = np.array([params.min_sigma_m, params.max_sigma_m, params.min_tau_days], dtype=float)
    step = 0
    while step < params.max_iter:
        step, moved = em_plain(st.x, st.pp, st.sp, st.log_bg, st.first, st.area, st.floor, st.mu, st.sigma, st.n,
                               st.tm if timed else none, st.tau if timed else none, timed, em.pr.pi, em.pr.pk,
                               finder.centre, finder.radius, em.running, ll_old, em.ll, step, params.max_iter,
                               params.tol, params.reach_sigmas, bounds, EXP_FLOOR)  # fmt: skip
        if moved.any():
            em.pr = finder.update(em.pr, np.flatnonzero(moved), em.running[st.pp[em.pr.pi]])


def _plain_reference(em: _EM, params: MixtureParams) -> None:
    """Plain EM: up to ``max_iter`` steps, a problem stops when its :math:`\\ell` gains less than ``tol`` (or falls:
    with sites cut at their reach a step can lower :math:`\\ell`). The numpy steps that :func:`_plain` compiles."""
    ll_old = np.full(em.n_prob, -np.inf)
    for _ in range(params.max_iter):
        step = _evaluate_or_stop(em, ll_old, params.tol)
        if step is None:
            return
        _, lse, e, tot, _ = step
        em.update(lse, e, tot)


def _evaluate_or_stop(em: _EM, ref: np.ndarray, tol: float) -> tuple[np.ndarray, ...] | None:
    """One E-step of the running problems; those whose :math:`\\ell` gained less than ``tol`` over ``ref``
    stop (``ref`` then holds the new :math:`\\ell`). ``(ell, lse, e, tot, running indices)``, or None when
    every problem has stopped."""
    ll, lse, e, tot = em.evaluate()
    act = np.flatnonzero(em.running)
    em.ll[act] = ll[act]
    stop = act[ll[act] - ref[act] < tol]
    ref[act] = ll[act]
    if len(stop):
        e = em.stop(stop, e)
        if not em.running.any():
            return None
        act = np.flatnonzero(em.running)
    return ll, lse, e, tot, act


@dataclass
class _Theta:
    """The parameters of every site of a stack (and each problem's log background) at one EM iterate."""

    mu: np.ndarray
    sigma: np.ndarray
    n: np.ndarray
    tm: np.ndarray | None
    tau: np.ndarray | None
    bg: np.ndarray  # per problem: log background at its first point


def _snapshot(st: _Stack) -> _Theta:
    """The current parameters of ``st`` (copies)."""
    return _Theta(st.mu.copy(), st.sigma.copy(), st.n.copy(), None if st.tm is None else st.tm.copy(),
                  None if st.tau is None else st.tau.copy(), _first_log_bg(st))  # fmt: skip


def _first_log_bg(st: _Stack) -> np.ndarray:
    """Each problem's log background at its first point (a new array; zeros for an empty stack)."""
    return st.log_bg[np.minimum(st.first, len(st.x) - 1)] if len(st.x) else np.zeros(len(st.area))


def _restore(st: _Stack, th: _Theta, problems: np.ndarray) -> None:
    """Set the sites (and fitted background) of ``problems`` (a mask over problems) to ``th``."""
    on = problems[st.sp]
    st.mu[on], st.sigma[on], st.n[on] = th.mu[on], th.sigma[on], th.n[on]
    if st.tm is not None and st.tau is not None and th.tm is not None and th.tau is not None:
        st.tm[on], st.tau[on] = th.tm[on], th.tau[on]
    pts = (problems & (st.area > 0))[st.pp]
    st.log_bg[pts] = th.bg[st.pp[pts]]


def _coords(th: _Theta, at: _Theta) -> tuple[np.ndarray, np.ndarray]:
    """``th`` relative to ``at``, scale-free: per site centre shift / σ, log ratios of σ and n (with time: day
    shift / τ, log ratio of τ) as rows; per problem the change of the log background."""
    cols = [(th.mu[:, 0] - at.mu[:, 0]) / at.sigma, (th.mu[:, 1] - at.mu[:, 1]) / at.sigma,
            np.log(th.sigma / at.sigma), np.log(np.maximum(th.n, 1e-12) / np.maximum(at.n, 1e-12))]  # fmt: skip
    if th.tm is not None and th.tau is not None and at.tm is not None and at.tau is not None:
        cols += [(th.tm - at.tm) / at.tau, np.log(th.tau / at.tau)]
    return np.column_stack(cols), th.bg - at.bg


def _extrapolate(
    st: _Stack, th: tuple[_Theta, _Theta, _Theta], step_max: np.ndarray, running: np.ndarray, params: MixtureParams
) -> np.ndarray:
    """Set the running problems of ``st`` to the SQUAREM point of the EM iterates θ0, θ1 = F(θ0), θ2 = F(θ1).

    In the scale-free coordinates of :func:`_coords` around θ0, with :math:`r=\\theta_1-\\theta_0` and
    :math:`v=\\theta_2-2\\theta_1+\\theta_0` over each problem's parameters (SqS3 of Varadhan & Roland
    2008): :math:`\\theta'=\\theta_0+2sr+s^2v`, :math:`s=\\lVert r\\rVert/\\lVert v\\rVert` clipped to
    [1, ``step_max``] (s = 1 is θ2); σ, τ and the background floored as in the M-step. Returns s per problem.
    """
    t0, t1, t2 = th
    (r, rb), (u2, ub) = _coords(t1, t0), _coords(t2, t0)
    v, vb = u2 - 2 * r, ub - 2 * rb
    npr = len(step_max)
    fitted = st.area > 0
    sr2 = np.bincount(st.sp, weights=(r**2).sum(axis=1), minlength=npr) + np.where(fitted, rb**2, 0.0)
    sv2 = np.bincount(st.sp, weights=(v**2).sum(axis=1), minlength=npr) + np.where(fitted, vb**2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(sr2 / sv2)
    s = np.clip(np.nan_to_num(s, nan=1.0, posinf=np.inf), 1.0, step_max)
    ss = s[st.sp][:, None]
    u = 2 * ss * r + ss**2 * v
    on = running[st.sp]
    st.mu[on] = (t0.mu + t0.sigma[:, None] * u[:, :2])[on]
    st.sigma[on] = np.clip(t0.sigma * np.exp(u[:, 2]), params.min_sigma_m, params.max_sigma_m)[on]
    st.n[on] = (np.maximum(t0.n, 1e-12) * np.exp(u[:, 3]))[on]
    if st.tm is not None and st.tau is not None and t0.tm is not None and t0.tau is not None:
        st.tm[on] = (t0.tm + t0.tau * u[:, 4])[on]
        st.tau[on] = np.maximum(t0.tau * np.exp(u[:, 5]), params.min_tau_days)[on]
    pts = (running & fitted)[st.pp]
    bg = np.maximum(t0.bg + 2 * s * rb + s**2 * vb, np.log(st.floor))
    st.log_bg[pts] = bg[st.pp[pts]]
    return s


#: SQUAREM's largest step grows (after a step that reached it) and shrinks (after a rejected one) by this factor.
STEP_FACTOR = 4.0


def _squarem(em: _EM, params: MixtureParams) -> None:
    """EM accelerated by SQUAREM (Varadhan & Roland 2008, SqS3), with a monotone safeguard, per problem.

    A cycle: θ1 = F(θ0), θ2 = F(θ1) (F: one EM step, :meth:`_EM.update`), the extrapolated θ'
    (:func:`_extrapolate`), then θ'' = F(θ') starts the next cycle when :math:`\\ell(\\theta')\\ge\\ell(\\theta_1)`;
    otherwise θ2 does (ℓ(θ2) ≥ ℓ(θ1): EM does not lower ℓ, except rarely with sites cut at their reach) and
    the problem's largest step is divided by :data:`STEP_FACTOR` (multiplied when reached, up to ``max_step``).
    A problem stops with θ0 when ℓ(θ0) gained less than ``tol`` over the whole previous cycle
    (an EM step from an extrapolated point can gain little far from the fixed point, so the
    plain EM's rule, one step's gain, would stop too early); ``max_iter`` bounds the E-steps
    (three per cycle).
    """
    step_max = np.ones(em.n_prob)
    last = np.full(em.n_prob, -np.inf)  # ℓ at the start of the previous cycle
    evals = 0
    while evals < params.max_iter:
        step = _evaluate_or_stop(em, last, params.tol)
        evals += 1
        if step is None:
            return
        _, lse, e, tot, act = step
        t0 = _snapshot(em.st)
        em.update(lse, e, tot)
        t1 = _snapshot(em.st)
        if evals >= params.max_iter:
            return
        ll1, lse, e, tot = em.evaluate()
        em.ll[act] = ll1[act]
        evals += 1
        em.update(lse, e, tot)
        if evals >= params.max_iter:
            return
        t2 = _snapshot(em.st)
        s = _extrapolate(em.st, (t0, t1, t2), step_max, em.running, params)
        em.pr = em.finder.update(em.pr, np.flatnonzero(em.running[em.st.sp]))
        llx, lse, e, tot = em.evaluate()
        em.update(lse, e, tot)
        evals += 1
        bad = em.running & ~(llx >= ll1)
        _restore(em.st, t2, bad)
        em.pr = em.finder.update(em.pr, np.flatnonzero(bad[em.st.sp]))
        grown = np.where(s >= step_max, step_max * STEP_FACTOR, step_max)
        step_max = np.where(bad, np.maximum(1.0, step_max / STEP_FACTOR), grown)
        step_max = np.minimum(step_max, params.max_step)


#: Pairs are searched within this many times a site's reach, so that they serve while it moves and grows (1.1
#: rather than 1.25: the same labels on the city sample, about 3 % less CPU of the mixture step: fewer pairs
#: outside the reach outweigh the more frequent searches).
PAIR_MARGIN = 1.1
#: Grid cell (m) of each problem's points when pairs are searched (:func:`gis._em_kernels.ball_pairs`): speed
#: only, the pairs are every point within the radius whatever the cell.
PAIR_CELL_M = 100.0


class _PairFinder:
    """Point–site pairs within :data:`PAIR_MARGIN` × ``reach`` σ of each site, kept up to date as the sites move.

    Each problem's points are binned on a grid of :data:`PAIR_CELL_M` (:func:`gis._em_kernels.problem_grids`), so
    that a search finds a site's points in its own problem only. A site's
    pairs hold every pair within reach while it stays inside the radius it was searched
    with (:math:`\\lVert\\mu_k-\\mu_k^0\\rVert + r\\sigma_k \\le R_k`); the pairs of a site
    that left it are searched again.
    """

    def __init__(self, st: _Stack, reach: float) -> None:
        from gis._em_kernels import problem_grids

        self.st, self.reach = st, reach
        end = np.append(st.first[1:], len(st.x))
        self.xy = np.ascontiguousarray(st.x[:, :2])
        self.grid = problem_grids(self.xy, st.first, end, PAIR_CELL_M)[:5]
        self.centre = st.mu.copy()
        self.radius = PAIR_MARGIN * reach * st.sigma

    def pairs(self, sites: np.ndarray) -> _Pairs:
        """The pairs of ``sites`` (searched now, :func:`gis._em_kernels.ball_pairs`)."""
        from gis._em_kernels import ball_pairs

        st = self.st
        self.centre[sites] = st.mu[sites]
        self.radius[sites] = PAIR_MARGIN * self.reach * st.sigma[sites]
        pi, pk = ball_pairs(self.xy, st.sp, *self.grid, PAIR_CELL_M, self.centre, self.radius,
                            np.asarray(sites, dtype=np.int64))  # fmt: skip
        return _Pairs(pi, pk)

    def update(self, pr: _Pairs, on: np.ndarray, alive: np.ndarray | None = None) -> _Pairs:
        """``pr`` with the pairs of the sites among ``on`` that left their search radius searched again (and only the
        pairs with ``alive`` set, when given: those of the running problems)."""
        st = self.st
        moved = np.hypot(*(st.mu[on] - self.centre[on]).T) + self.reach * st.sigma[on]
        out = on[moved > self.radius[on] * (1 - 1e-9) - 1e-3]
        if len(out) == 0:
            return pr if alive is None else pr.keep(alive)
        gone = np.zeros(len(st.n), dtype=bool)
        gone[out] = True
        kept = pr.keep(~gone[pr.pk] if alive is None else ~gone[pr.pk] & alive)
        new = self.pairs(out)
        return _Pairs(np.concatenate([kept.pi, new.pi]), np.concatenate([kept.pk, new.pk]))


def _background_step(st: _Stack, pts: np.ndarray, lse: np.ndarray, running: np.ndarray) -> None:
    """Fitted background of the running problems with a window: :math:`\\lambda_0=\\max(\\sum_i e^{\\log\\lambda_{0}-\\log\\lambda_i}/|W|,\\ \\lambda_{min})`."""
    fitted = running & (st.area > 0)
    if not fitted.any():
        return
    share = np.bincount(st.pp[pts], weights=np.exp(st.log_bg[pts] - lse[pts]), minlength=len(running))
    new = np.log(np.maximum(share / np.where(fitted, st.area, 1.0), st.floor))
    on = fitted[st.pp]
    st.log_bg[on] = new[st.pp[on]]


def _unstack(st: _Stack, centres: list[np.ndarray], ll: np.ndarray) -> list[tuple[Sites, float, np.ndarray]]:
    """Per problem: its sites moved back from its centre, :math:`\\ell` and its log background."""
    out = []
    site_cut = np.searchsorted(st.sp, np.arange(len(centres) + 1))
    point_cut = np.searchsorted(st.pp, np.arange(len(centres) + 1))
    for p, c in enumerate(centres):
        a, b = site_cut[p], site_cut[p + 1]
        if st.tau is None or st.tm is None:
            s = Sites(st.mu[a:b] + c[:2], st.sigma[a:b].copy(), st.n[a:b].copy())
        else:
            s = Sites(st.mu[a:b] + c[:2], st.sigma[a:b].copy(), st.n[a:b].copy(), st.tm[a:b] + c[2], st.tau[a:b].copy())
        out.append((s, float(ll[p]), st.log_bg[point_cut[p]:point_cut[p + 1]].copy()))
    return out


def _split_fits(
    xs: list[np.ndarray], intens: list[Intensity], sites: list[Sites], params: list[MixtureParams],
    which: list[np.ndarray] | None = None,
) -> list[list[tuple[list[int], Sites]]]:
    """The split of every large enough site of every group (:func:`gis.cluster_mixture.split_starts`), fitted at once.

    ``intens``: per group the intensity of its sites at its points (:func:`gis.cluster_mixture.intensity`);
    ``which``: per group the sites to split (None: all).
    """
    where, problems = [], []
    for g, (x, inten, s, p) in enumerate(zip(xs, intens, sites, params)):
        if not p.split:
            continue
        cand = np.array([a for a in (range(len(s)) if which is None else which[g]) if s.n[a] >= 2 * p.min_size], dtype=np.int64)
        for a, (xl, base, two) in zip(cand, split_starts(x, inten, s, cand, p)):
            where.append((g, int(a)))
            problems.append(Problem(xl, base, two, None, p.min_background))
    out: list[list[tuple[list[int], Sites]]] = [[] for _ in xs]
    for (g, a), (two, _, _) in zip(where, fit_many(problems, replace(params[0], max_iter=params[0].split_max_iter)) if problems else []):
        out[g].append(([a], two))
    return out


def select_many(groups: list[Group]) -> list[Sites]:
    """:func:`gis.cluster_mixture.select_sites` of every group, the groups' EM fits and split fits batched.

    Each round: the running groups are fitted at once (:func:`fit_many`), their splits
    too (:func:`_split_fits`), every change is scored per group
    (:func:`gis.cluster_mixture.ranked_changes`) and applied (:func:`gis.cluster_mixture.apply_changes`);
    a group stops when no change lowers its criterion or after ``2 × initial sites + 2`` rounds.
    Sites expecting fewer than ``min_size`` reports are dropped at the end (refitted at once).
    """
    if not groups:
        return []
    base = groups[0].params
    prob = [Problem(g.x, g.log_bg, g.init, g.area, g.params.min_background) for g in groups]
    fits = fit_many(prob, base)
    sites, bgs = [f[0] for f in fits], [f[2] for f in fits]
    trees = [cKDTree(g.x[:, :2]) for g in groups]
    rounds = np.zeros(len(groups), dtype=np.int64)
    running = [j for j, g in enumerate(groups) if len(g.init) * 2 + 2 > 0]
    while running:
        intens = {j: intensity(trees[j], groups[j].x, bgs[j], sites[j], base.reach_sigmas) for j in running}
        splits = _split_fits([groups[j].x for j in running], [intens[j] for j in running],
                             [sites[j] for j in running], [groups[j].params for j in running])  # fmt: skip
        changed = []
        for j, sp in zip(running, splits):
            p = groups[j].params
            todo = ranked_changes(trees[j], groups[j].x, intens[j], sites[j], change_candidates(sites[j]) + sp, p)
            if todo:
                sites[j] = apply_changes(sites[j], todo)
                changed.append(j)
        refit = fit_many([Problem(groups[j].x, bgs[j], sites[j], groups[j].area, groups[j].params.min_background)
                          for j in changed], base)  # fmt: skip
        for j, (s, _, bg) in zip(changed, refit):
            sites[j], bgs[j] = s, bg
            rounds[j] += 1
        running = [j for j in changed if rounds[j] < 2 * len(groups[j].init) + 2]
    return _without_small(groups, sites, bgs, base)


def _without_small(groups: list[Group], sites: list[Sites], bgs: list[np.ndarray], base: MixtureParams) -> list[Sites]:
    """Sites expecting at least ``min_size`` reports; groups that had smaller ones (not only) are refitted first."""
    redo = [j for j, s in enumerate(sites) if (s.n < base.min_size).any() and not (s.n < base.min_size).all()]
    refit = fit_many([Problem(groups[j].x, bgs[j], sites[j].subset(sites[j].n >= base.min_size), groups[j].area,
                              groups[j].params.min_background) for j in redo], base)  # fmt: skip
    for j, (s, _, _) in zip(redo, refit):
        sites[j] = s
    return [s.subset(s.n >= base.min_size) for s in sites]


def _apply_tracked(
    s: Sites, todo: list[tuple[float, list[int], Sites]], pair: np.ndarray, next_pair: int
) -> tuple[Sites, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gis.cluster_mixture.apply_changes`, also returning what it kept.

    ``pair``: per site the split it came from (−1: none), new splits numbered from ``next_pair``.
    Returns the new sites (the kept ones first, in order, then the added ones), the old indices of the
    kept sites, the new indices of the kept sites of changes left out because one of their sites was
    already taken by a better change (they are proposed again in the next round), and the new sites'
    ``pair``.
    """
    used: set[int] = set()
    drop: list[int] = []
    blocked: set[int] = set()
    added: list[np.ndarray] = []
    for _gain, old, new in todo:
        if used.isdisjoint(old):
            used.update(old)
            drop += old
            added.append(np.full(len(new), next_pair + len(added) if len(new) == 2 else -1))
        else:
            blocked.update(old)
    kept = _without(np.arange(len(s)), drop)
    waiting = np.flatnonzero(np.isin(kept, sorted(blocked)))
    return apply_changes(s, todo), kept, waiting, np.concatenate([pair[kept], *added]).astype(np.int64)


def _rejoins(old: list[int], pair: np.ndarray) -> bool:
    """Whether a change merges the two halves of one split (``pair``: per site its split, −1 none)."""
    return len(old) == 2 and pair[old[0]] >= 0 and pair[old[0]] == pair[old[1]]


def _repeats(s: Sites, seen: set[bytes]) -> bool:
    """Whether sites ``s`` were seen before (in ``seen``, to which they are added): counts to 0.1, centres to 1 m.

    Local scores are not those of the whole group, so a few changes can undo each other round
    after round (a small site split off, merged into a neighbour, split off again); the second
    visit of a state ends the group's rounds.
    """
    key = np.round(np.column_stack([s.n * 10, s.mu]), 0)
    key = key[np.lexsort(key.T[::-1])].tobytes()
    if key in seen:
        return True
    seen.add(key)
    return False


def _round_changes(
    groups: list[Group], trees: list[cKDTree], sites: list[Sites], bgs: list[np.ndarray], active: dict[int, np.ndarray],
    pairs: list[np.ndarray],
) -> list[list[tuple[float, list[int], Sites]]]:
    """Improving changes of every group in ``active``, best first, proposed for its active sites only.

    Drops of active sites, merges of an active site with its nearest (or of a site with an active
    nearest), splits of active sites (fitted at once, :func:`_split_fits`), scored per group
    (:func:`gis.cluster_mixture.ranked_changes`). The two halves of a split are never merged again
    (``pairs``, :func:`_rejoins`): a split's gain is scored on the reports near one site, the merge's
    on those near two, with a larger BIC penalty per site (:math:`4\\ln|L|`), so a split just above
    one penalty would be undone by the merge and proposed again, round after round.
    """
    run = list(active)
    intens = [intensity(trees[j], groups[j].x, bgs[j], sites[j], groups[j].params.reach_sigmas) for j in run]
    splits = _split_fits([groups[j].x for j in run], intens, [sites[j] for j in run],
                         [groups[j].params for j in run], [np.flatnonzero(active[j]) for j in run])  # fmt: skip
    out = []
    for j, inten, sp in zip(run, intens, splits):
        cands = [c for c in change_candidates(sites[j]) if active[j][c[0]].any() and not _rejoins(c[0], pairs[j])]
        cands += sp
        out.append(ranked_changes(trees[j], groups[j].x, inten, sites[j], cands, groups[j].params))
    return out


def _state(s: Sites) -> np.ndarray:
    """Parameters of each site as rows: x, y, σ, n (and with time m, τ)."""
    cols = [s.mu[:, 0], s.mu[:, 1], s.sigma, s.n]
    if s.tm is not None and s.tau is not None:
        cols += [s.tm, s.tau]
    return np.column_stack(cols)


def _moved(s: Sites, last: np.ndarray, tol: float) -> np.ndarray:
    """Sites that moved by more than ``tol`` since they were last proposed (``last``: :func:`_state` then, NaN never).

    .. math:: \\max\\Big(\\frac{\\lVert\\mu-\\mu'\\rVert}{\\sigma'},\\ |\\ln\\tfrac{\\sigma}{\\sigma'}|,\\
              |\\ln\\tfrac{n}{n'}|,\\ \\frac{|m-m'|}{\\tau'},\\ |\\ln\\tfrac{\\tau}{\\tau'}|\\Big) > tol

    (primes: the site when last proposed; the time terms only with time).
    """
    now = _state(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        parts = [np.hypot(now[:, 0] - last[:, 0], now[:, 1] - last[:, 1]) / last[:, 2],
                 np.abs(np.log(now[:, 2] / last[:, 2])), np.abs(np.log(np.maximum(now[:, 3], 1e-9) / np.maximum(last[:, 3], 1e-9)))]  # fmt: skip
        if now.shape[1] > 4:
            parts += [np.abs(now[:, 4] - last[:, 4]) / last[:, 5], np.abs(np.log(now[:, 5] / last[:, 5]))]
        return ~(np.column_stack(parts).max(axis=1) <= tol)


def select_moved(groups: list[Group]) -> list[Sites]:
    """:func:`select_many`, proposing again only the sites that moved since they were last proposed.

    Each round, for every group with active sites: the changes of its active sites
    (:func:`_round_changes`: drops, merges with the nearest, splits) are scored and applied
    as in :func:`select_many`, and the groups that changed are refitted whole (background
    too). The active sites of the next round are those that moved by more than
    ``propose_tol`` since they were last proposed (:func:`_moved`); new sites, and the sites
    of changes left out because a better change took one of their sites, always are. A
    site that did not move is not proposed again: its changes would score about as before
    (what :func:`select_many` recomputes every round). A group stops when no site is active,
    when its sites come back to an earlier state (:func:`_repeats`), or after
    ``2 × initial sites + 2`` rounds with a change.
    """
    if not groups:
        return []
    base = groups[0].params
    fits = fit_many([Problem(g.x, g.log_bg, g.init, g.area, g.params.min_background) for g in groups], base)
    sites, bgs = [f[0] for f in fits], [f[2] for f in fits]
    trees = [cKDTree(g.x[:, :2]) for g in groups]
    limit = np.array([2 * len(g.init) + 2 for g in groups])
    rounds = np.zeros(len(groups), dtype=np.int64)
    last = [np.full_like(_state(s), np.nan) for s in sites]  # each site when last proposed (NaN: never)
    active = {j: np.ones(len(s), dtype=bool) for j, s in enumerate(sites) if len(s)}
    pairs = [np.full(len(s), -1, dtype=np.int64) for s in sites]  # the split each site came from
    seen: list[set[bytes]] = [set() for _ in groups]
    while active:
        for j in [j for j in active if _repeats(sites[j], seen[j])]:
            del active[j]  # back to an earlier state: the changes go round in a cycle
        run, changed = list(active), []
        for j, todo in zip(run, _round_changes(groups, trees, sites, bgs, active, pairs)):
            last[j][active[j]] = _state(sites[j])[active[j]]
            if todo:
                nxt = int(pairs[j].max(initial=-1)) + 1
                sites[j], kept, waiting, pairs[j] = _apply_tracked(sites[j], todo, pairs[j], nxt)
                last[j] = np.vstack([last[j][kept], np.full((len(sites[j]) - len(kept), last[j].shape[1]), np.nan)])
                last[j][waiting] = np.nan
                rounds[j] += 1
                changed.append(j)
        _refit_whole(groups, sites, bgs, changed)
        active = _next_active(changed, sites, last, rounds, limit, base.propose_tol)
    return _without_small(groups, sites, bgs, base)


def _next_active(
    run: list[int], sites: list[Sites], last: list[np.ndarray], rounds: np.ndarray, limit: np.ndarray, tol: float
) -> dict[int, np.ndarray]:
    """Active sites of the next round per group (:func:`_moved`), for the groups below their round limit that have any."""
    out = {}
    for j in run:
        if rounds[j] < limit[j]:
            m = _moved(sites[j], last[j], tol)
            if m.any():
                out[j] = m
    return out


def _refit_whole(groups: list[Group], sites: list[Sites], bgs: list[np.ndarray], which: list[int]) -> None:
    """Refit the groups ``which`` whole, background too (in place)."""
    refit = fit_many([Problem(groups[j].x, bgs[j], sites[j], groups[j].area, groups[j].params.min_background)
                      for j in which], groups[0].params) if which else []  # fmt: skip
    for j, (s, _, bg) in zip(which, refit):
        sites[j], bgs[j] = s, bg

def batched_mixture_labels(
    xy: np.ndarray, core: np.ndarray, seed: np.ndarray, group: np.ndarray, log_bg: np.ndarray, attach_m: float,
    params: MixtureParams,
) -> np.ndarray:
    """:func:`gis.cluster_mixture.mixture_labels` with all groups' fits batched (:func:`select_many`; with
    ``params.propose`` ``moved`` :func:`select_moved`)."""
    groups = group_inputs(xy, core, seed, group, log_bg, attach_m, params)
    select = select_moved if params.propose == "moved" else select_many
    return labels_of_sites(len(xy), groups, select(groups), params)
