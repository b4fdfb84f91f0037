"""Where to put new sites (新增网点选址): maximal covering (MCLP) and set covering (LSCP).

Candidates — a regular grid over the district and/or given locations such as the
existing garbage transfer stations (一场两用) — are first filtered by the compliance
rules (:func:`eligible_candidates`: never a site on prohibited land, in a 四山 zone,
on ecological red line, basic farmland or a water-source zone). Residents already
covered by the existing active, compliant sites are fixed as covered; the solvers
pick new sites among the candidates to cover the rest.

With demand weights :math:`w_j` (residents of cell :math:`j` not yet covered),
the coverage matrix :math:`a_{ij} = 1` when candidate :math:`i` is within the
service standard of cell :math:`j`, and :math:`x_i`, :math:`y_j` binary:

* **MCLP** (Church & ReVelle 1974): maximise :math:`\\sum_j w_j y_j` subject to
  :math:`y_j \\le \\sum_i a_{ij} x_i` and :math:`\\sum_i x_i = k`.
* **LSCP** for a share (Toregas et al. 1971, partial form): the fewest
  :math:`k` such that the MCLP optimum reaches share :math:`X` of all residents.

Both are solved exactly by default (:func:`mclp`, :func:`lscp`, and
:func:`pmedian` for the sorting centre / transfer stations): sparse MILPs with
binary :math:`x`, continuous :math:`y` (one per *distinct* covering set: cells
reached by the same candidates are merged), solved by HiGHS through
:func:`scipy.optimize.milp`; the result states ``optimal``, ``bound`` and
``gap``. The greedy with exact incremental gain updates (total work
:math:`O(\\mathrm{nnz}(A))`) and 1-swap local search is computed first: it is
the incumbent kept if HiGHS stops at the time limit with something worse, and
the answer past ``exact_max_nnz`` (``layers/siting.yaml``), with the
submodular bound :math:`f(S) + \\sum_{\\text{top } k} \\Delta(i \\mid S)`
(:func:`greedy_bound`). Planner constraints: existing sites fixed (``covered``
or ``fixed``), per-township minima (:func:`township_minimums`,
:func:`capacity_minimums` for households per point), preferred candidates
(``bonus``, e.g. garbage transfer stations for 一场两用). spopt with CBC
(:func:`exact_mclp`) stays as the reference in tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import shapely

from gis._errors import AnalysisError
from gis.routing import NetworkCSR, pairs_within, points_xy

# ---------------------------------------------------------------------------
# candidates
# ---------------------------------------------------------------------------


def grid_candidates(boundary: shapely.Geometry, spacing_m: float, crs: Any) -> gpd.GeoDataFrame:
    """Regular grid of candidate points inside ``boundary`` (metric CRS)."""
    if spacing_m <= 0:
        raise AnalysisError("siting.grid_spacing_m must be positive")
    minx, miny, maxx, maxy = shapely.bounds(boundary)
    xs = np.arange(minx + spacing_m / 2, maxx, spacing_m)
    ys = np.arange(miny + spacing_m / 2, maxy, spacing_m)
    gx, gy = np.meshgrid(xs, ys)
    pts = shapely.points(gx.ravel(), gy.ravel())
    shapely.prepare(boundary)
    inside = shapely.contains(boundary, pts)
    pts = pts[inside]
    return gpd.GeoDataFrame(
        {"candidate_id": [f"G{i:05d}" for i in range(len(pts))], "name": "网格候选点", "kind": "grid"},
        geometry=pts,
        crs=crs,
    )


@dataclass
class CandidateCheck:
    """Candidates with their compliance verdict.

    Attributes
    ----------
    candidates
        All candidates with ``verdict``, ``rules_broken``, ``eligible``.
    eligible
        The candidates that may be recommended (no ``prohibited`` rule broken).
    """

    candidates: gpd.GeoDataFrame
    eligible: gpd.GeoDataFrame


def eligible_candidates(
    candidates: gpd.GeoDataFrame,
    tier: str,
    *,
    townships: gpd.GeoDataFrame | None = None,
    zones: gpd.GeoDataFrame | None = None,
    landuse: gpd.GeoDataFrame | None = None,
    landuse_raster: Any = None,
    rules: Any = None,
) -> CandidateCheck:
    """Evaluate candidate locations against the compliance rule table.

    Each candidate is checked as a planned site of ``tier`` with
    :func:`gis.compliance.check_sites` (zones, GB/T 21010 land use, receptor
    buffers); a candidate breaking any rule whose verdict is ``prohibited`` is
    never eligible. Attribute rules (licences, filings) do not fire on a
    location without a ledger entry (a blank attribute is not a finding).
    """
    from gis.compliance import check_sites

    c = candidates.reset_index(drop=True).copy()
    if len(c) == 0:
        c["verdict"] = pd.Series(dtype=object)
        c["rules_broken"] = pd.Series(dtype=object)
        c["eligible"] = pd.Series(dtype=bool)
        return CandidateCheck(c, c)
    ids = c["candidate_id"].astype(str) if "candidate_id" in c else pd.Series(np.arange(len(c)).astype(str))
    probe = gpd.GeoDataFrame(
        {
            "site_id": ids.to_numpy(),
            "name": (c["name"] if "name" in c else ids).astype(str).to_numpy(),
            "tier": tier,
            "status": "planned",
            "address": None,
            "operator": None,
            "township": None,
            "business_licence": None,
            "dismantling_qualification": None,
            "police_filing": None,
            "capacity_t_per_day": np.nan,
            "floor_area_m2": np.nan,
            "business_scope": None,
        },
        geometry=c.geometry.to_numpy(),
        crs=c.crs,
    )
    res = check_sites(
        probe, townships=townships, zones=zones, landuse=landuse, landuse_raster=landuse_raster,
        rules=rules, graph=None,
    )
    s = res.sites.reset_index(drop=True)
    c["verdict"] = s["verdict"].to_numpy()
    c["rules_broken"] = s["rules_broken"].to_numpy()
    prohibited_ids = {r.id for r in res.rules.enabled if r.verdict == "prohibited"}
    broken = c["rules_broken"].fillna("").astype(str).str.split(";")
    c["eligible"] = ~broken.map(lambda ids_: bool(prohibited_ids.intersection(ids_))).to_numpy(bool)
    c["eligible"] &= c["verdict"].astype(str).to_numpy() != "prohibited"
    if "township" in s:
        c["township"] = s["township"].to_numpy()
    return CandidateCheck(c, c.loc[c["eligible"]].reset_index(drop=True))


# ---------------------------------------------------------------------------
# coverage matrix
# ---------------------------------------------------------------------------


def coverage_matrix(
    candidates_xy: npt.ArrayLike,
    demand_xy: npt.ArrayLike,
    distance_m: float,
    *,
    network: NetworkCSR | None = None,
    max_snap_m: float = np.inf,
    batch: int = 256,
) -> sp.csr_matrix:
    """Sparse boolean matrix ``A`` (candidates × demand): candidate covers cell.

    The pairs come from :func:`gis.routing.pairs_within` (the one home of snapping
    and distances): straight-line distance ≤ ``distance_m`` without a network,
    else the snapped network distance :math:`s_j + D(n_j \\to n_i) + s_i \\le L`.
    """
    nc, nd = len(np.asarray(candidates_xy, float).reshape(-1, 2)), len(np.asarray(demand_xy, float).reshape(-1, 2))
    rows, cols = pairs_within(candidates_xy, demand_xy, distance_m, network=network, max_snap_m=max_snap_m,
                              batch=batch)
    return pairs_matrix(rows, cols, (nc, nd))


def pairs_matrix(rows: npt.ArrayLike, cols: npt.ArrayLike, shape: tuple[int, int]) -> sp.csr_matrix:
    """Sparse boolean ``shape`` matrix, True at each (row, col) pair (a repeated pair counts once)."""
    A = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=shape)
    A.sum_duplicates()
    A.data[:] = True
    return A


# ---------------------------------------------------------------------------
# solvers
# ---------------------------------------------------------------------------


@dataclass
class SolverResult:
    """Chosen candidates and the demand they cover.

    Attributes
    ----------
    selected
        Candidate indices in the order chosen.
    gains
        Weight newly covered by each choice at the time it was added (greedy
        order; after swaps, the marginal gain in the final set's order).
    covered
        Boolean per demand cell: covered by the fixed sites or the chosen ones.
    covered_weight
        :math:`\\sum_j w_j y_j` over the demand *not* covered before (the objective).
    method
        ``highs`` (exact MILP), ``greedy+swap``, ``greedy`` or ``spopt-cbc``.
    seconds
        Solve time.
    optimal
        Proven optimal (HiGHS status optimal within ``mip_rel_gap``, or a
        greedy answer that meets its own bound).
    bound
        Best proven bound on the objective: an upper bound on ``covered_weight``
        (MCLP), a lower bound on the number of new sites (LSCP) or on the cost
        (p-median).
    gap
        Relative distance between the answer and ``bound`` (0 when optimal).
    objective
        The p-median weighted cost (NaN for covering models).
    """

    selected: npt.NDArray[np.int64]
    gains: npt.NDArray[np.float64]
    covered: npt.NDArray[np.bool_]
    covered_weight: float
    method: str
    seconds: float = 0.0
    swaps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    optimal: bool = False
    bound: float = float("nan")
    gap: float = float("nan")
    objective: float = float("nan")


def _marginal_gains(A: sp.csr_matrix, w: npt.NDArray[np.float64], selected: npt.NDArray[np.int64],
                    covered0: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    cov = covered0.copy()
    gains = np.empty(len(selected))
    for t, c in enumerate(selected):
        cols = A.indices[A.indptr[c] : A.indptr[c + 1]]
        new = cols[~cov[cols]]
        gains[t] = w[new].sum()
        cov[new] = True
    return gains


def greedy_mclp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    k: int,
    *,
    covered0: npt.ArrayLike | None = None,
    swap: bool = True,
    max_swap_passes: int = 10,
) -> SolverResult:
    """Maximal covering by greedy with exact gain updates and 1-swap local search.

    Parameters
    ----------
    A, weights, k
        Candidates × demand coverage matrix (:func:`coverage_matrix`), demand
        weights :math:`w_j` (residents per cell), number of new sites.
    covered0
        Demand already covered by the fixed (existing) sites.
    swap, max_swap_passes
        Run the 1-swap improvement after greedy, for at most this many passes.
    """
    t0 = time.perf_counter()
    A = sp.csr_matrix(A, dtype=bool)
    w = np.asarray(weights, float)
    nc, nd = A.shape
    cov0 = np.zeros(nd, bool) if covered0 is None else np.asarray(covered0, bool).copy()
    wres = np.where(cov0, 0.0, w)
    Af = A.astype(float)
    AT = A.T.tocsr()
    gain = Af @ wres
    covered = cov0.copy()
    chosen: list[int] = []
    gains: list[float] = []
    is_sel = np.zeros(nc, bool)
    for _ in range(min(int(k), nc)):
        c = int(np.argmax(np.where(is_sel, -1.0, gain)))
        if gain[c] <= 0:
            break
        cols = A.indices[A.indptr[c] : A.indptr[c + 1]]
        new = cols[~covered[cols]]
        covered[new] = True
        chosen.append(c)
        gains.append(float(gain[c]))
        is_sel[c] = True
        if len(new):
            sub = AT[new]
            gain -= np.bincount(sub.indices, weights=np.repeat(wres[new], np.diff(sub.indptr)), minlength=nc)
    selected = np.array(chosen, np.int64)
    n_swaps = 0
    if swap and len(selected) > 0 and len(selected) < nc:
        cnt = np.asarray(Af[selected].sum(axis=0)).ravel()
        for _ in range(max_swap_passes):
            improved = False
            for pos in range(len(selected)):
                s = selected[pos]
                cols = A.indices[A.indptr[s] : A.indptr[s + 1]]
                cnt[cols] -= 1
                loss = wres[cols][cnt[cols] == 0].sum()
                g = Af @ (wres * (cnt == 0))
                g[is_sel] = -1.0
                best = int(np.argmax(g))
                if g[best] > loss + 1e-9 * max(1.0, loss):
                    is_sel[s] = False
                    is_sel[best] = True
                    selected[pos] = best
                    bc = A.indices[A.indptr[best] : A.indptr[best + 1]]
                    cnt[bc] += 1
                    improved = True
                    n_swaps += 1
                else:
                    cnt[cols] += 1
            if not improved:
                break
        covered = cov0 | (cnt > 0)
        gains = list(_marginal_gains(A, wres, selected, cov0))
    obj = float(wres[covered & ~cov0].sum())
    return SolverResult(selected, np.asarray(gains, float), covered, obj,
                        "greedy+swap" if swap else "greedy", time.perf_counter() - t0, n_swaps)


def greedy_lscp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    target_share: float,
    *,
    covered0: npt.ArrayLike | None = None,
    max_new: int | None = None,
) -> SolverResult:
    """Fewest new sites (greedy) until ``target_share`` of all demand is covered.

    The greedy set cover is within :math:`H(\\max_i |A_i|)` of the optimum count
    (Chvátal 1979). ``extra["reached"]`` says whether the target was reached;
    ``extra["reachable_share"]`` is the share coverable by all candidates.
    """
    w = np.asarray(weights, float)
    total = w.sum()
    cov0 = np.zeros(len(w), bool) if covered0 is None else np.asarray(covered0, bool)
    need = target_share * total - w[cov0].sum()
    res = greedy_mclp(A, w, max_new if max_new is not None else A.shape[0], covered0=cov0, swap=False)
    cum = np.cumsum(res.gains)
    if need <= 0:
        n = 0
    else:
        hit = np.flatnonzero(cum >= need - 1e-9 * total)
        n = int(hit[0]) + 1 if len(hit) else len(res.selected)
    sel = res.selected[:n]
    covered = cov0.copy()
    if n:
        covered |= np.asarray(A[sel].sum(axis=0)).ravel() > 0
    reachable = cov0 | (np.asarray(A.sum(axis=0)).ravel() > 0)
    out = SolverResult(sel, res.gains[:n], covered, float(w[covered & ~cov0].sum()), "greedy", res.seconds)
    out.extra = {
        "reached": bool(w[covered].sum() >= target_share * total - 1e-9 * total),
        "reachable_share": float(w[reachable].sum() / total) if total > 0 else float("nan"),
        "target_share": float(target_share),
    }
    return out


# ---------------------------------------------------------------------------
# exact solvers: sparse MILPs solved by HiGHS (scipy.optimize.milp)
# ---------------------------------------------------------------------------


def solver_config(override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Siting settings: ``layers/siting.yaml`` ← ``siting`` block of ``layers/coverage.yaml`` ← ``override``.

    ``override`` is typically the ``siting`` block of the project's coverage
    configuration; keys it sets win.
    """
    from gis import settings
    from gis.catalog import deep_merge, load_yaml

    base = deep_merge(load_yaml(settings.LAYERS_DIR / "siting.yaml"),
                      dict(load_yaml(settings.LAYERS_DIR / "coverage.yaml").get("siting") or {}))
    return deep_merge(base, dict(override or {}))


def _milp_options(cfg: Mapping[str, Any], time_limit_s: float | None) -> dict[str, Any]:
    opts: dict[str, Any] = {"disp": False, "mip_rel_gap": float(cfg["mip_rel_gap"]), "presolve": bool(cfg["presolve"])}
    limit = time_limit_s if time_limit_s is not None else cfg.get("exact_time_limit_s")
    if limit is not None:
        opts["time_limit"] = float(limit)
    return opts


def _group_rows(groups: npt.ArrayLike | None, min_per_group: Mapping[Any, int] | None, nc: int,
                offset: int, nvar: int) -> tuple[sp.csr_matrix, npt.NDArray[np.float64], dict[str, Any]]:
    """Rows :math:`\\sum_{i \\in g} x_i \\ge m_g` for every group with a minimum.

    A minimum larger than the group's candidate count is clipped to it (the
    shortfall is reported in ``extra["group_shortfall"]``).
    """
    if groups is None or not min_per_group:
        return sp.csr_matrix((0, nvar)), np.empty(0), {}
    g = np.asarray(groups, dtype=object)
    if len(g) != nc:
        raise AnalysisError(f"groups has {len(g)} entries for {nc} candidates")
    rows, need, short = [], [], {}
    for key, m in min_per_group.items():
        members = np.flatnonzero(g == key)
        want = int(m)
        if want <= 0:
            continue
        if len(members) < want:
            short[str(key)] = want - len(members)
            want = len(members)
        if want:
            rows.append(members + offset)
            need.append(float(want))
    if not rows:
        return sp.csr_matrix((0, nvar)), np.empty(0), {"group_shortfall": short}
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    M = sp.csr_matrix((np.ones(len(r)), (r, np.concatenate(rows))), shape=(len(rows), nvar))
    return M, np.asarray(need), {"group_shortfall": short}


def _status(res: Any) -> tuple[bool, bool]:
    """(has a solution, proven optimal) of a :func:`scipy.optimize.milp` result."""
    return res.x is not None, bool(res.status == 0)


def _fixed_mask(fixed: npt.ArrayLike | None, nc: int) -> npt.NDArray[np.bool_]:
    m = np.zeros(nc, bool)
    if fixed is not None:
        idx = np.asarray(fixed)
        m[idx.astype(np.int64) if idx.dtype != bool else np.flatnonzero(idx)] = True
    return m


def greedy_bound(A: sp.csr_matrix, weights: npt.ArrayLike, selected: npt.ArrayLike, k: int,
                 covered0: npt.ArrayLike | None = None) -> float:
    """Upper bound on the MCLP optimum from any feasible set :math:`S` of ``k`` sites.

    By submodularity of coverage, :math:`f(S^*) \\le f(S) + \\sum_{i \\in S^*}
    \\Delta(i \\mid S) \\le f(S) + \\sum_{\\text{top } k} \\Delta(i \\mid S)`
    (Leskovec et al. 2007), where :math:`\\Delta(i \\mid S)` is the weight candidate
    :math:`i` would newly cover. Valid under extra constraints too (they only
    lower the optimum).
    """
    A = sp.csr_matrix(A, dtype=bool)
    w = np.asarray(weights, float)
    cov = np.zeros(A.shape[1], bool) if covered0 is None else np.asarray(covered0, bool).copy()
    base = cov.copy()
    sel = np.asarray(selected, np.int64)
    if len(sel):
        cov |= np.asarray(A[sel].sum(axis=0)).ravel() > 0
    delta = A.astype(float) @ np.where(cov, 0.0, w)
    top = np.sort(delta)[::-1][: int(k)].sum()
    return float(w[cov & ~base].sum() + top)


def _greedy_constrained(A: sp.csr_matrix, w: npt.NDArray[np.float64], k: int, cov0: npt.NDArray[np.bool_],
                        fixed: npt.NDArray[np.bool_], groups: Any, min_per_group: Any) -> SolverResult:
    """Greedy incumbent honouring fixed sites and per-group minima (no swap when grouped)."""
    cov = cov0 | (np.asarray(A[np.flatnonzero(fixed)].sum(axis=0)).ravel() > 0) if fixed.any() else cov0.copy()
    picked: list[int] = []
    if groups is not None and min_per_group:
        g = np.asarray(groups, dtype=object)
        for key, m in min_per_group.items():
            members = np.flatnonzero((g == key) & ~fixed)
            for _ in range(min(int(m) - int((fixed & (g == key)).sum()), len(members))):
                gain = A[members].astype(float) @ np.where(cov, 0.0, w)
                best = members[int(np.argmax(gain))]
                picked.append(int(best))
                members = members[members != best]
                cov |= A[best].toarray().ravel()
    rest = sp.csr_matrix(A, dtype=bool).copy()
    block = np.flatnonzero(fixed)
    block = np.r_[block, np.asarray(picked, np.int64)].astype(np.int64)
    rest = sp.diags((~np.isin(np.arange(A.shape[0]), block)).astype(float)) @ rest.astype(float)
    more = greedy_mclp(sp.csr_matrix(rest > 0), w, max(k - len(picked), 0), covered0=cov,
                       swap=not picked and not fixed.any())
    sel = np.r_[np.asarray(picked, np.int64), more.selected].astype(np.int64)
    wres = np.where(cov0, 0.0, w)
    cov_all = cov | more.covered
    return SolverResult(sel, _marginal_gains(A, wres, sel, cov), cov_all, float(wres[cov_all & ~cov0].sum()),
                        more.method, more.seconds)


def _finish(res_sel: npt.NDArray[np.int64], A: sp.csr_matrix, w: npt.NDArray[np.float64],
            cov0: npt.NDArray[np.bool_], fixed: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.bool_], float]:
    """Covered mask (existing + fixed + chosen) and the objective over demand not covered before."""
    opened = np.r_[np.flatnonzero(fixed), res_sel].astype(np.int64)
    cov = cov0.copy()
    if len(opened):
        cov |= np.asarray(A[opened].sum(axis=0)).ravel() > 0
    return cov, float(np.where(cov0, 0.0, w)[cov & ~cov0].sum())


def mclp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    k: int,
    *,
    covered: npt.ArrayLike | None = None,
    time_limit_s: float | None = None,
    fixed: npt.ArrayLike | None = None,
    groups: npt.ArrayLike | None = None,
    min_per_group: Mapping[Any, int] | None = None,
    bonus: npt.ArrayLike | None = None,
    config: Mapping[str, Any] | None = None,
) -> SolverResult:
    """Maximal covering location (MCLP, 最大覆盖选址) solved exactly as a sparse MILP.

    .. math::
        \\max \\sum_j w_j y_j + \\sum_i b_i x_i \\quad\\text{s.t.}\\quad
        y_j \\le \\sum_i a_{ij} x_i,\\; \\sum_{i \\notin F} x_i = k,\\;
        x_F = 1,\\; \\sum_{i \\in g} x_i \\ge m_g,\\; x \\in \\{0,1\\},\\; 0 \\le y \\le 1

    over the demand not yet ``covered``, one :math:`y` per distinct covering set
    (HiGHS via :func:`scipy.optimize.milp`). The greedy (:func:`greedy_mclp`)
    runs first: the answer past ``exact_max_nnz`` (``layers/siting.yaml``), and
    the incumbent kept if HiGHS stops at the time limit with something worse.

    Parameters
    ----------
    A, weights, k
        Candidates × demand coverage matrix, demand weights :math:`w_j`, new sites.
    covered
        Demand already covered by existing sites.
    time_limit_s, config
        HiGHS time limit (default ``exact_time_limit_s``); overrides of ``layers/siting.yaml``.
    fixed
        Candidates open anyway (existing sites), besides the ``k``.
    groups, min_per_group
        Group of each candidate (its 镇街 township) and the minimum open sites per
        group (:func:`township_minimums`, :func:`capacity_minimums`); ``k`` is
        raised when the minima need more (``extra["k_raised_to"]``).
    bonus
        Objective bonus :math:`b_i \\ge 0` (demand units), e.g. for garbage
        transfer stations (一场两用).

    Returns
    -------
    SolverResult
        ``selected``, ``covered_weight``, ``optimal``, ``bound`` (upper bound on
        ``covered_weight``), ``gap``, ``method`` (``highs`` or ``greedy…``).
    """
    t0 = time.perf_counter()
    cfg = solver_config(config)
    A = sp.csr_matrix(A, dtype=bool)
    w = np.asarray(weights, float)
    nc, nd = A.shape
    cov0 = np.zeros(nd, bool) if covered is None else np.asarray(covered, bool)
    fx = _fixed_mask(fixed, nc)
    kk = min(int(k), int((~fx).sum()))
    n_min = sum(_clipped_minima(groups, min_per_group, fx).values())
    raised, kk = n_min > kk, max(kk, n_min)  # the per-group minima need more sites than k: k is raised
    greedy = _greedy_constrained(A, w, kk, cov0, fx, groups, min_per_group)
    g_bound = greedy_bound(A, w, np.r_[np.flatnonzero(fx), greedy.selected].astype(np.int64), kk, cov0)
    J = np.flatnonzero(~cov0 & (w > 0) & (np.asarray(A.sum(axis=0)).ravel() > 0))
    Ac = A[:, J]
    if Ac.nnz > int(cfg["exact_max_nnz"]) or kk == 0:
        return _greedy_result(greedy, g_bound, kk == 0, t0)
    b = np.zeros(nc) if bonus is None else np.asarray(bonus, float)
    res, rows, nr, extra = _mclp_milp(Ac, w[J], b, fx, groups, min_per_group, kk, _milp_options(cfg, time_limit_s))
    has, optimal = _status(res)
    if not has:
        return _greedy_result(greedy, g_bound, False, t0, status=res.message)
    sel = rows[(res.x[:nr] > 0.5) & ~fx[rows]].astype(np.int64)
    cov, obj = _finish(sel, A, w, cov0, fx)
    # the MILP's dual bound covers demand + bonus >= demand (b >= 0): a valid bound on demand
    bound = min(-float(res.mip_dual_bound), g_bound) if np.isfinite(res.mip_dual_bound) else g_bound
    if obj < greedy.covered_weight - 1e-9 * max(1.0, obj) and not optimal:
        return _greedy_result(greedy, bound, False, t0, status=res.message)
    extra.update(status=res.message, greedy_covered_weight=greedy.covered_weight)
    if raised:
        extra["k_raised_to"] = kk
    return _highs_mclp_result(A, w, cov0, fx, sel, cov, obj, optimal, bound, extra, t0)


def _highs_mclp_result(A: sp.csr_matrix, w: npt.NDArray[np.float64], cov0: npt.NDArray[np.bool_],
                       fx: npt.NDArray[np.bool_], sel: npt.NDArray[np.int64], cov: npt.NDArray[np.bool_], obj: float,
                       optimal: bool, bound: float, extra: dict[str, Any], t0: float) -> SolverResult:
    base, _ = _finish(np.empty(0, np.int64), A, w, cov0, fx)
    out = SolverResult(sel, _marginal_gains(A, np.where(cov0, 0.0, w), sel, base), cov, obj, "highs",
                       time.perf_counter() - t0, extra=extra)
    out.optimal, out.bound = optimal, (obj if optimal else max(bound, obj))
    out.gap = _gap(out.bound, obj)
    return out


def _mclp_milp(Ac: sp.csr_matrix, wJ: npt.NDArray[np.float64], b: npt.NDArray[np.float64],
               fx: npt.NDArray[np.bool_], groups: Any, min_per_group: Mapping[Any, int] | None, kk: int,
               options: dict[str, Any]) -> tuple[Any, npt.NDArray[np.int64], int, dict[str, Any]]:
    """Build and solve the reduced MCLP MILP (useful candidates × distinct covering sets)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rows = _useful_rows(Ac, b, fx, groups, min_per_group, kk)
    Am, wm = _merge_columns(Ac[rows], wJ)
    nr, m = Am.shape
    c = -np.r_[b[rows], wm]
    cover = sp.hstack([-Am.T.astype(float), sp.identity(m)], format="csr")
    count = sp.csr_matrix(np.r_[(~fx[rows]).astype(float), np.zeros(m)][None, :])
    G, need, extra = _group_rows(None if groups is None else np.asarray(groups, dtype=object)[rows],
                                 min_per_group, nr, 0, nr + m)
    cons = [LinearConstraint(cover, -np.inf, 0.0), LinearConstraint(count, kk, kk)]
    if G.shape[0]:
        cons.append(LinearConstraint(G, need, np.inf))
    lb = np.r_[fx[rows].astype(float), np.zeros(m)]
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(nr), np.zeros(m)], bounds=Bounds(lb, 1.0),
               options=options)
    return res, rows, nr, extra


def _useful_rows(Ac: sp.csr_matrix, bonus: npt.NDArray[np.float64], fixed: npt.NDArray[np.bool_], groups: Any,
                 min_per_group: Mapping[Any, int] | None, k: int) -> npt.NDArray[np.int64]:
    """Candidates worth a variable: covering open demand, with a bonus, fixed, or in a constrained group.

    Padded with other candidates when fewer than ``k`` free ones remain (the
    model opens exactly ``k``).
    """
    keep = (np.diff(Ac.indptr) > 0) | (bonus > 0) | fixed
    if groups is not None and min_per_group:
        keep |= np.isin(np.asarray(groups, dtype=object), list(min_per_group))
    short = k - int((keep & ~fixed).sum())
    if short > 0:
        keep[np.flatnonzero(~keep & ~fixed)[:short]] = True
    return np.flatnonzero(keep)


def _merge_columns(Ac: sp.csr_matrix, w: npt.NDArray[np.float64]) -> tuple[sp.csr_matrix, npt.NDArray[np.float64]]:
    """Merge demand columns covered by the same candidate set (weights summed).

    Cells in one neighbourhood are usually reachable from exactly the same
    candidates; one :math:`y` per distinct set keeps the optimum and shrinks the
    model (on the bundled sample 18,934 open cells → 4,956 sets).
    """
    C = sp.csc_matrix(Ac, dtype=bool)
    C.sort_indices()
    cnt = np.diff(C.indptr)
    if len(cnt) == 0:
        return sp.csr_matrix(C), w
    pos = np.arange(C.nnz) - np.repeat(C.indptr[:-1], cnt)
    pad = np.full((C.shape[1], int(cnt.max()) + 1), -1, dtype=np.int64)
    pad[np.repeat(np.arange(C.shape[1]), cnt), pos] = C.indices
    pad[:, -1] = cnt
    _, first, inv = np.unique(pad, axis=0, return_index=True, return_inverse=True)
    inv = np.asarray(inv).ravel()
    return sp.csr_matrix(C[:, first]), np.bincount(inv, weights=w, minlength=len(first))


def _clipped_minima(groups: Any, min_per_group: Mapping[Any, int] | None,
                    fixed: npt.NDArray[np.bool_]) -> dict[Any, int]:
    """New sites each group still needs: its minimum less its fixed sites, at most its free candidates."""
    if groups is None or not min_per_group:
        return {}
    g = np.asarray(groups, dtype=object)
    out = {}
    for key, m in min_per_group.items():
        free = int(((g == key) & ~fixed).sum())
        need = min(int(m) - int(((g == key) & fixed).sum()), free)
        if need > 0:
            out[key] = need
    return out


def township_minimums(targets: Any, tier: str, existing: gpd.GeoDataFrame,
                      townships: Any) -> dict[str, int]:
    """New ``tier`` sites each 镇街 township needs for a ``township_presence`` target of 1.0.

    A target row ``{metric: township_presence, tiers: [...], target: 1.0,
    min_per_township: m}`` (``layers/targets.yaml``) that counts ``tier`` asks every
    township to have ``m`` (default 1) such sites; the existing active,
    compliant sites of the row's tiers (``existing`` with ``tier`` and
    ``township``) are subtracted. Rows with a target below 1.0 ask for a share of
    townships, not a given township, and add no constraint.
    """
    need: dict[str, int] = {}
    names = [str(t) for t in townships]
    for row in targets or []:
        tiers = row.get("tiers") or []
        if row.get("metric") != "township_presence" or tier not in tiers or float(row.get("target", 0)) < 1.0:
            continue
        m = int(row.get("min_per_township", 1))
        have = (existing.loc[existing["tier"].isin(tiers), "township"].value_counts()
                if len(existing) and "township" in existing else pd.Series(dtype=int))
        for t in names:
            k = m - int(have.get(t, 0))
            if k > 0:
                need[t] = max(need.get(t, 0), k)
    return need


def _gap(bound: float, value: float) -> float:
    return float((bound - value) / abs(bound)) if bound else 0.0


def _greedy_result(greedy: SolverResult, bound: float, optimal: bool, t0: float, status: str = "") -> SolverResult:
    greedy.optimal = optimal or bound <= greedy.covered_weight + 1e-9 * max(1.0, bound)
    greedy.bound = max(bound, greedy.covered_weight)
    greedy.gap = _gap(greedy.bound, greedy.covered_weight)
    greedy.seconds = time.perf_counter() - t0
    greedy.extra = {**greedy.extra, "status": status or "greedy (size limit)"}
    return greedy


def lscp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike | None = None,
    *,
    share: float = 1.0,
    covered: npt.ArrayLike | None = None,
    time_limit_s: float | None = None,
    fixed: npt.ArrayLike | None = None,
    groups: npt.ArrayLike | None = None,
    min_per_group: Mapping[Any, int] | None = None,
    config: Mapping[str, Any] | None = None,
) -> SolverResult:
    """Set covering (LSCP, 集合覆盖选址): fewest new sites covering ``share`` of the demand.

    With ``share = 1`` the classic model (Toregas et al. 1971) over the demand a
    candidate can reach, :math:`\\min \\sum_{i \\notin F} x_i` s.t.
    :math:`\\sum_i a_{ij} x_i \\ge 1`; with ``share < 1`` the partial form
    :math:`y_j \\le \\sum_i a_{ij} x_i,\\ \\sum_j w_j y_j \\ge X \\sum_j w_j - W_0`
    (:math:`W_0` already covered). Fixed sites and per-group minima as in
    :func:`mclp`. A target beyond what all candidates can reach is lowered to the
    reachable share (``extra["reached"] = False``). ``bound`` is a lower bound
    on the number of new sites; ``gap`` = (value − bound) / value.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    t0 = time.perf_counter()
    cfg = solver_config(config)
    A = sp.csr_matrix(A, dtype=bool)
    nc, nd = A.shape
    w = np.ones(nd) if weights is None else np.asarray(weights, float)
    cov0 = np.zeros(nd, bool) if covered is None else np.asarray(covered, bool)
    fx = _fixed_mask(fixed, nc)
    base, _ = _finish(np.empty(0, np.int64), A, w, cov0, fx)
    total = float(w.sum())
    reach = base | (np.asarray(A.sum(axis=0)).ravel() > 0)
    reachable = float(w[reach].sum())
    target = min(float(share) * total, reachable)
    extra: dict[str, Any] = {"reached": bool(reachable >= float(share) * total - 1e-9 * total),
                             "reachable_share": reachable / total if total > 0 else float("nan"),
                             "target_share": float(share)}
    J = np.flatnonzero(~base & (w > 0) & reach)
    need = target - float(w[base].sum())
    Ac, wJ = _merge_columns(A[:, J], w[J])  # one column per distinct covering set
    Ac = Ac.astype(float)
    greedy = greedy_lscp(A, w, target / total if total > 0 else 0.0, covered0=base)
    if need <= 1e-9 * max(total, 1.0) or Ac.nnz > int(cfg["exact_max_nnz"]):
        return _lscp_result(greedy, A, w, cov0, fx, 0.0 if need <= 0 else 1.0, need <= 0, t0,
                            {**extra, "status": "nothing to add" if need <= 0 else "greedy (size limit)"})
    full = need >= float(wJ.sum()) - 1e-9 * max(total, 1.0)
    m = 0 if full else Ac.shape[1]
    c = np.r_[(~fx).astype(float), np.zeros(m)]
    if full:
        cons = [LinearConstraint(Ac.T.tocsr(), 1.0, np.inf)]
    else:
        cover = sp.hstack([-Ac.T, sp.identity(m)], format="csr")
        cons = [LinearConstraint(cover, -np.inf, 0.0),
                LinearConstraint(sp.csr_matrix(np.r_[np.zeros(nc), wJ][None, :]), need, np.inf)]
    G, gneed, gextra = _group_rows(groups, min_per_group, nc, 0, nc + m)
    if G.shape[0]:
        cons.append(LinearConstraint(G, gneed, np.inf))
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(nc), np.zeros(m)],
               bounds=Bounds(np.r_[fx.astype(float), np.zeros(m)], 1.0), options=_milp_options(cfg, time_limit_s))
    extra.update(gextra, status=res.message)
    has, optimal = _status(res)
    lower = float(np.ceil(res.mip_dual_bound - 1e-6)) if np.isfinite(getattr(res, "mip_dual_bound", np.nan)) else 1.0
    if not has or (not optimal and res.fun > len(greedy.selected)):
        return _lscp_result(greedy, A, w, cov0, fx, lower, False, t0, extra)
    sel = np.flatnonzero((res.x[:nc] > 0.5) & ~fx).astype(np.int64)
    cov, obj = _finish(sel, A, w, cov0, fx)
    out = SolverResult(sel, _marginal_gains(A, np.where(cov0, 0.0, w), sel, base), cov, obj, "highs",
                       time.perf_counter() - t0, extra=extra)
    out.optimal, out.bound = optimal, float(len(sel)) if optimal else min(lower, float(len(sel)))
    out.gap = (len(sel) - out.bound) / len(sel) if len(sel) else 0.0
    return out


def _lscp_result(greedy: SolverResult, A: sp.csr_matrix, w: npt.NDArray[np.float64], cov0: npt.NDArray[np.bool_],
                 fx: npt.NDArray[np.bool_], lower: float, optimal: bool, t0: float,
                 extra: dict[str, Any]) -> SolverResult:
    cov, obj = _finish(greedy.selected, A, w, cov0, fx)
    n = len(greedy.selected)
    out = SolverResult(greedy.selected, greedy.gains, cov, obj, greedy.method, time.perf_counter() - t0, extra=extra)
    out.optimal = optimal or lower >= n
    out.bound = float(n) if out.optimal else float(lower)
    out.gap = (n - out.bound) / n if n else 0.0
    return out


def pmedian(
    D: npt.ArrayLike | sp.spmatrix,
    weights: npt.ArrayLike,
    p: int,
    *,
    fixed: npt.ArrayLike | None = None,
    time_limit_s: float | None = None,
    config: Mapping[str, Any] | None = None,
) -> SolverResult:
    """p-median (p-中位选址) for a sorting centre or transfer stations, as a sparse MILP.

    .. math::
        \\min \\sum_{i,j} w_j d_{ij} z_{ij} \\quad\\text{s.t.}\\quad
        \\sum_i z_{ij} = 1,\\; z_{ij} \\le x_i,\\; \\sum_i x_i = p,\\;
        x_i = 1\\ (i \\in F),\\; x \\in \\{0,1\\},\\; z \\ge 0

    (ReVelle & Swain 1970). Only finite :math:`d_{ij}` become variables: a
    dense ``D`` with ``inf`` for "cannot serve" or a sparse ``D`` whose stored
    entries are the allowed pairs (explicit zeros allowed).

    Parameters
    ----------
    D
        Candidates × demand travel cost (metres or seconds).
    weights
        Demand weights :math:`w_j` (e.g. tonnes per day per township).
    p
        Facilities open in total, ``fixed`` included.
    fixed
        Candidates open anyway (an existing sorting centre).

    Returns
    -------
    SolverResult
        ``selected`` (all open, fixed included), ``objective`` (weighted cost),
        ``bound`` (lower bound), ``gap``, ``optimal``,
        ``extra["assignment"]`` (candidate serving each demand point).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    t0 = time.perf_counter()
    cfg = solver_config(config)
    Dc = sp.coo_matrix(D) if sp.issparse(D) else None
    if Dc is None:
        Dd = np.asarray(D, float)
        ii, jj = np.nonzero(np.isfinite(Dd))
        dd = Dd[ii, jj]
        nc, nd = Dd.shape
    else:
        ii, jj, dd = Dc.row, Dc.col, Dc.data.astype(float)
        nc, nd = Dc.shape
    w = np.asarray(weights, float)
    fx = _fixed_mask(fixed, nc)
    if int(p) < int(fx.sum()) or int(p) > nc:
        raise AnalysisError(f"p-median: p = {p} must lie between the fixed sites ({int(fx.sum())}) and the candidates ({nc})")
    if (np.bincount(jj, minlength=nd) == 0).any():
        raise AnalysisError(f"p-median: demand point {int(np.flatnonzero(np.bincount(jj, minlength=nd) == 0)[0])} "
                            "has no candidate that can serve it")
    nz = len(dd)
    c = np.r_[np.zeros(nc), w[jj] * dd]
    assign = sp.csr_matrix((np.ones(nz), (jj, nc + np.arange(nz))), shape=(nd, nc + nz))
    link = sp.csr_matrix((np.r_[np.ones(nz), -np.ones(nz)], (np.r_[np.arange(nz), np.arange(nz)],
                                                             np.r_[nc + np.arange(nz), ii])), shape=(nz, nc + nz))
    count = sp.csr_matrix(np.r_[np.ones(nc), np.zeros(nz)][None, :])
    cons = [LinearConstraint(assign, 1.0, 1.0), LinearConstraint(link, -np.inf, 0.0),
            LinearConstraint(count, int(p), int(p))]
    res = milp(c, constraints=cons, integrality=np.r_[np.ones(nc), np.zeros(nz)],
               bounds=Bounds(np.r_[fx.astype(float), np.zeros(nz)], 1.0), options=_milp_options(cfg, time_limit_s))
    has, optimal = _status(res)
    if not has:
        raise AnalysisError(f"p-median: HiGHS found no solution ({res.message})")
    sel = np.flatnonzero(res.x[:nc] > 0.5).astype(np.int64)
    assignment, obj = _assign_cheapest(ii, jj, dd, sel, w)
    out = SolverResult(sel, np.zeros(len(sel)), np.ones(nd, bool), float(w.sum()), "highs", time.perf_counter() - t0)
    out.objective = obj
    out.optimal = optimal
    out.bound = obj if optimal else float(res.mip_dual_bound)
    out.gap = (obj - out.bound) / obj if obj else 0.0
    out.extra = {"assignment": assignment, "status": res.message}
    return out


def _assign_cheapest(ii: npt.NDArray[np.int64], jj: npt.NDArray[np.int64], dd: npt.NDArray[np.float64],
                     sel: npt.NDArray[np.int64], w: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int64], float]:
    """Each demand point's cheapest open candidate (the p-median optimum assigns so) and the weighted cost."""
    cost = np.where(np.isin(ii, sel), dd, np.inf)
    order = np.lexsort((cost, jj))
    first = order[np.r_[True, jj[order][1:] != jj[order][:-1]]]
    return ii[first], float((w[jj[first]] * dd[first]).sum())


def capacity_minimums(households: Mapping[Any, float], households_per_point: Mapping[Any, float] | float,
                      existing: Mapping[Any, int] | None = None) -> dict[Any, int]:
    """Sites each group still needs under a households-per-point norm (SB/T 10719-2012).

    :math:`m_g = \\max(0, \\lceil H_g / h_g \\rceil)` counting the existing sites
    (pass them as ``fixed`` to :func:`mclp`, or subtract them here with
    ``existing`` when they are not candidates). ``households_per_point`` is one
    number or one per group (urban 2,000 / rural 2,500).
    """
    out: dict[Any, int] = {}
    for g, h in households.items():
        per = households_per_point[g] if isinstance(households_per_point, Mapping) else households_per_point
        if per is None or float(per) <= 0:
            raise AnalysisError(f"households_per_point for {g!r} must be positive")
        need = int(np.ceil(float(h) / float(per))) - int((existing or {}).get(g, 0))
        if need > 0:
            out[g] = need
    return out


def exact_mclp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    k: int,
    *,
    covered0: npt.ArrayLike | None = None,
    time_limit_s: float | None = None,
) -> SolverResult:
    """Reference MCLP with spopt (:class:`spopt.locate.MCLP`) and the CBC solver (tests, benchmarks).

    Only demand not yet covered enters the model (fixed sites are accounted for
    by removing what they cover). Builds spopt's dense demand × candidate cost
    matrix (0 = covers, 2 = does not, service radius 1).
    """
    import pulp
    from spopt.locate import MCLP

    t0 = time.perf_counter()
    A = sp.csr_matrix(A, dtype=bool)
    w = np.asarray(weights, float)
    cov0 = np.zeros(A.shape[1], bool) if covered0 is None else np.asarray(covered0, bool)
    open_d = np.flatnonzero(~cov0 & (w > 0))
    cost = np.where(A[:, open_d].T.toarray(), 0.0, 2.0)
    kk = min(int(k), A.shape[0])
    import warnings

    with warnings.catch_warnings():  # pulp 3.x deprecations inside spopt
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)
        model = MCLP.from_cost_matrix(cost, w[open_d], service_radius=1.0, p_facilities=kk)
        model = model.solve(solver, results=False)
    x = np.array([v.value() or 0.0 for v in model.fac_vars])
    selected = np.flatnonzero(x > 0.5).astype(np.int64)
    covered = cov0.copy()
    if len(selected):
        covered |= np.asarray(A[selected].sum(axis=0)).ravel() > 0
    gains = _marginal_gains(A, np.where(cov0, 0.0, w), selected, cov0)
    status = pulp.LpStatus[model.problem.status]
    return SolverResult(selected, gains, covered, float(w[covered & ~cov0].sum()), "spopt-cbc",
                        time.perf_counter() - t0, extra={"status": status})


def solve_mclp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    k: int,
    *,
    covered0: npt.ArrayLike | None = None,
    config: Mapping[str, Any] | None = None,
) -> SolverResult:
    """MCLP as used by the pipeline: :func:`mclp` (exact HiGHS MILP; greedy past the size limit)."""
    return mclp(A, weights, k, covered=covered0, config=config)


# ---------------------------------------------------------------------------
# recommending sites for a district
# ---------------------------------------------------------------------------


@dataclass
class SitingOutcome:
    """New-site recommendation for one tier.

    Attributes
    ----------
    recommended
        The MCLP choice: candidates with ``rank``, ``gain_population`` (residents
        newly covered, in rank order), ``cumulative_share`` (district covered share
        after adding sites up to this rank), ``solver``.
    candidates
        Every candidate with its compliance ``verdict``, ``eligible`` flag.
    mclp
        :class:`SolverResult` for ``k`` new sites.
    lscp
        :class:`SolverResult` for the fewest new sites reaching ``target_share``
        (``extra["reached"]``).
    share_before, share_after
        Population covered share with the existing sites, and with the MCLP sites added.
    """

    recommended: gpd.GeoDataFrame
    candidates: gpd.GeoDataFrame
    mclp: SolverResult
    lscp: SolverResult
    share_before: float
    share_after: float
    tier: str
    k: int
    target_share: float

    def summary(self) -> dict[str, Any]:
        """Keys for ``summary.json``."""
        return {
            "tier": self.tier,
            "candidates": int(len(self.candidates)),
            "candidates_eligible": int(self.candidates["eligible"].sum()) if len(self.candidates) else 0,
            "k": self.k,
            "recommended": int(len(self.recommended)),
            "solver": self.mclp.method,
            "optimal": bool(self.mclp.optimal),
            "covered_weight_bound": float(self.mclp.bound),
            "solve_seconds": float(self.mclp.seconds),
            "lscp_solve_seconds": float(self.lscp.seconds),
            "gap": float(self.mclp.gap),
            "lscp_optimal": bool(self.lscp.optimal),
            "lscp_bound": float(self.lscp.bound),
            "population_covered_share_before": float(self.share_before),
            "population_covered_share_after": float(self.share_after),
            "lscp_target_share": self.target_share,
            "lscp_new_sites": int(len(self.lscp.selected)),
            "lscp_reached": bool(self.lscp.extra.get("reached", False)),
            "lscp_reachable_share": self.lscp.extra.get("reachable_share"),
        }


def recommend_sites(
    points: gpd.GeoDataFrame,
    checked: CandidateCheck,
    *,
    distance_m: float,
    tier: str,
    network: NetworkCSR | None = None,
    max_snap_m: float = np.inf,
    config: Mapping[str, Any] | None = None,
    min_per_township: Mapping[str, int] | None = None,
) -> SitingOutcome:
    """MCLP (k new sites) and LSCP (fewest to reach the target share) for a tier, solved exactly.

    Parameters
    ----------
    points
        Population cells with ``population`` and ``covered`` (by the existing
        active, compliant sites — fixed).
    checked
        Candidates after :func:`eligible_candidates`; only eligible ones are used
        (legal land only). Candidates whose ``kind`` is not ``grid`` (the
        district's garbage transfer stations, 一场两用) get the objective bonus
        ``preferred_bonus_residents``.
    distance_m
        The tier's service standard.
    network
        Road network of the standard's mode (``None``: straight-line).
    config
        The ``siting`` block of coverage.yaml over ``layers/siting.yaml``
        (``k_new``, ``target_share``, solver limits).
    min_per_township
        New sites required per 镇街 township (e.g. from a township-presence
        target or :func:`capacity_minimums`); matched on the candidates'
        ``township``.
    """
    cfg = solver_config(config)
    k = int(cfg["k_new"])
    target = float(cfg["target_share"])
    w = points["population"].to_numpy(float)
    cov0 = points["covered"].to_numpy(bool)
    total = w.sum()
    elig = checked.eligible
    A = coverage_matrix(points_xy(elig) if len(elig) else np.empty((0, 2)), points_xy(points), distance_m,
                        network=network, max_snap_m=max_snap_m)
    kinds = elig["kind"].astype(str).to_numpy() if "kind" in elig else np.full(len(elig), "grid")
    bonus = np.where(kinds != "grid", float(cfg["preferred_bonus_residents"]), 0.0)
    groups = elig["township"].to_numpy(object) if min_per_township and "township" in elig else None
    best = mclp(A, w, k, covered=cov0, bonus=bonus, groups=groups, min_per_group=min_per_township, config=cfg)
    fewest = lscp(A, w, share=target, covered=cov0, groups=groups, min_per_group=min_per_township, config=cfg)
    order = np.argsort(-best.gains, kind="stable")
    sel = best.selected[order]
    rec = elig.iloc[sel].copy().reset_index(drop=True)
    gains = _marginal_gains(sp.csr_matrix(A, dtype=bool), np.where(cov0, 0.0, w), sel, cov0)
    before = float(w[cov0].sum() / total) if total > 0 else float("nan")
    rec["rank"] = np.arange(1, len(rec) + 1)
    rec["tier"] = tier
    rec["gain_population"] = gains
    rec["cumulative_share"] = before + np.cumsum(gains) / total if total > 0 else np.nan
    rec["solver"] = best.method
    rec["optimal"] = best.optimal
    after = float(w[best.covered].sum() / total) if total > 0 else float("nan")
    return SitingOutcome(rec, checked.candidates, best, fewest, before, after, tier, k, target)
