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

The large-instance solver is greedy with exact incremental gain updates (a picked
site's newly covered cells are subtracted from the gain of every candidate that
also covers them — total work :math:`O(\\mathrm{nnz}(A))`), followed by 1-swap
local search (drop one chosen site, add the best other, while it gains). Greedy
alone guarantees :math:`1 - 1/e` of the optimum (Nemhauser et al. 1978); the swap
pass closes most of the rest. spopt's ``MCLP``/``LSCP`` with CBC is the exact
reference on small instances (and is used automatically below
``exact_max_candidates`` × ``exact_max_demand``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from gis._errors import AnalysisError
from gis.routing import NetworkCSR, points_xy

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

    Euclidean (``network=None``): straight-line distance ≤ ``distance_m``
    (KD-tree ``sparse_distance_matrix``). Network: the same snapped network
    distance as :func:`gis.coverage.multi_source_distances`,
    :math:`s_j + D(n_j \\to n_i) + s_i \\le L`, from a bounded Dijkstra per batch
    of candidate nodes on the reversed graph (``limit = L``).
    """
    cxy = np.asarray(candidates_xy, float).reshape(-1, 2)
    dxy = np.asarray(demand_xy, float).reshape(-1, 2)
    nc, nd = len(cxy), len(dxy)
    if nc == 0 or nd == 0:
        return sp.csr_matrix((nc, nd), dtype=bool)
    L = float(distance_m)
    if network is None:
        m = cKDTree(cxy).sparse_distance_matrix(cKDTree(dxy), L, output_type="coo_matrix")
        # sparse_distance_matrix drops exact zero distances: add co-located pairs
        z = cKDTree(cxy).query_ball_tree(cKDTree(dxy), 0.0)
        zr = np.repeat(np.arange(nc), [len(v) for v in z])
        zc = np.fromiter((j for v in z for j in v), np.int64, count=len(zr))
        rows = np.r_[m.row, zr]
        cols = np.r_[m.col, zc]
        A = sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(nc, nd))
        A.sum_duplicates()
        A.data[:] = True
        return A
    cnode, csnap = network.snap(cxy)
    dnode, dsnap = network.snap(dxy)
    dok = dsnap <= max_snap_m
    # node -> demand cells (CSR over nodes)
    order = np.argsort(dnode, kind="stable")
    order = order[dok[order]]
    node_ptr = np.r_[0, np.cumsum(np.bincount(dnode[order], minlength=network.n))]
    R = network.transposed()
    rows_out: list[npt.NDArray[np.int64]] = []
    cols_out: list[npt.NDArray[np.int64]] = []
    valid = np.flatnonzero(csnap <= min(max_snap_m, L))
    for start in range(0, len(valid), batch):
        ci = valid[start : start + batch]
        un, inv = np.unique(cnode[ci], return_inverse=True)
        dist = dijkstra(R, directed=True, indices=un, limit=L)
        dist = dist[inv] + csnap[ci][:, None]
        r, nidx = np.nonzero(dist <= L)
        cnt = node_ptr[nidx + 1] - node_ptr[nidx]
        rr = np.repeat(r, cnt)
        base = np.repeat(node_ptr[nidx], cnt)
        offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        dem = order[base + offs]
        tot = np.repeat(dist[r, nidx], cnt) + dsnap[dem]
        keep = tot <= L
        rows_out.append(ci[rr[keep]])
        cols_out.append(dem[keep])
    rows = np.concatenate(rows_out) if rows_out else np.empty(0, np.int64)
    cols = np.concatenate(cols_out) if cols_out else np.empty(0, np.int64)
    return sp.csr_matrix((np.ones(len(rows), bool), (rows, cols)), shape=(nc, nd))


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
        ``greedy+swap``, ``greedy`` or ``spopt-cbc``.
    seconds
        Solve time.
    """

    selected: npt.NDArray[np.int64]
    gains: npt.NDArray[np.float64]
    covered: npt.NDArray[np.bool_]
    covered_weight: float
    method: str
    seconds: float = 0.0
    swaps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


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
    A
        Candidates × demand coverage matrix (:func:`coverage_matrix`).
    weights
        Demand weights :math:`w_j` (residents per cell).
    k
        Number of new sites.
    covered0
        Demand already covered by the fixed (existing) sites.
    swap
        Run the 1-swap improvement after greedy.
    """
    import time

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


def exact_mclp(
    A: sp.csr_matrix,
    weights: npt.ArrayLike,
    k: int,
    *,
    covered0: npt.ArrayLike | None = None,
    time_limit_s: float | None = None,
) -> SolverResult:
    """Exact MCLP with spopt (:class:`spopt.locate.MCLP`) and the CBC solver.

    Only demand not yet covered enters the model (fixed sites are accounted for
    by removing what they cover). Builds spopt's dense demand × candidate cost
    matrix (0 = covers, 2 = does not, service radius 1).
    """
    import time

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
    """MCLP: exact (spopt + CBC) on small instances, greedy + swap otherwise.

    Small = at most ``exact_max_candidates`` candidates and ``exact_max_demand``
    uncovered demand cells (``siting`` block of coverage.yaml).
    """
    cfg = dict(config or {})
    w = np.asarray(weights, float)
    cov0 = np.zeros(A.shape[1], bool) if covered0 is None else np.asarray(covered0, bool)
    n_open = int((~cov0 & (w > 0)).sum())
    if A.shape[0] <= int(cfg["exact_max_candidates"]) and n_open <= int(cfg["exact_max_demand"]):
        res = exact_mclp(A, w, k, covered0=cov0, time_limit_s=cfg.get("exact_time_limit_s"))
        if res.extra.get("status") == "Optimal":
            return res
    return greedy_mclp(A, w, k, covered0=cov0)


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
) -> SitingOutcome:
    """MCLP (k new sites) and LSCP (fewest to reach the target share) for a tier.

    Parameters
    ----------
    points
        Population cells with ``population`` and ``covered`` (by the existing
        active, compliant sites — fixed).
    checked
        Candidates after :func:`eligible_candidates`; only eligible ones are used.
    distance_m
        The tier's service standard.
    network
        Road network of the standard's mode (``None``: straight-line).
    config
        The ``siting`` block of coverage.yaml (``k_new``, ``target_share``,
        ``max_new``, exact-solver limits).
    """
    cfg = dict(config or {})
    k = int(cfg["k_new"])
    target = float(cfg["target_share"])
    w = points["population"].to_numpy(float)
    cov0 = points["covered"].to_numpy(bool)
    total = w.sum()
    elig = checked.eligible
    A = coverage_matrix(points_xy(elig) if len(elig) else np.empty((0, 2)), points_xy(points), distance_m,
                        network=network, max_snap_m=max_snap_m)
    mclp = solve_mclp(A, w, k, covered0=cov0, config=cfg)
    lscp = greedy_lscp(A, w, target, covered0=cov0, max_new=int(cfg["max_new"]))
    order = np.argsort(-mclp.gains, kind="stable")
    sel = mclp.selected[order]
    rec = elig.iloc[sel].copy().reset_index(drop=True)
    gains = _marginal_gains(sp.csr_matrix(A, dtype=bool), np.where(cov0, 0.0, w), sel, cov0)
    before = float(w[cov0].sum() / total) if total > 0 else float("nan")
    rec["rank"] = np.arange(1, len(rec) + 1)
    rec["tier"] = tier
    rec["gain_population"] = gains
    rec["cumulative_share"] = before + np.cumsum(gains) / total if total > 0 else np.nan
    rec["solver"] = mclp.method
    after = float(w[mclp.covered].sum() / total) if total > 0 else float("nan")
    return SitingOutcome(rec, checked.candidates, mclp, lscp, before, after, tier, k, target)
