"""Benchmark: exact siting (MCLP) — ours vs a plain scipy ``milp`` model, the osmnx way, and spopt.

Instances: residents (log-normal weights) and candidate sites scattered along
the real Nanan roads (OSM, ../shared), 10 % of the residents fixed as covered
by existing sites; coverage = 500 m walking network distance (snapped, as in
:func:`gis.siting.coverage_matrix`) or 500 m straight line.

Timed, ours and the peer alternating round by round in one process (medians,
per-round range):

* **kernel** — the same sparse coverage matrix in, the optimum out. Ours:
  :func:`gis.siting.mclp` (greedy incumbent + bound, then HiGHS through
  :func:`scipy.optimize.milp`). Peer: the textbook sparse MCLP a competent user
  writes for :func:`scipy.optimize.milp` (same solver, no greedy). Objectives
  checked equal; spopt ``MCLP`` + CBC (dense pulp model) is the reference on
  the small instances (run once: it takes seconds to minutes).
* **whole path** — road file, resident and candidate points in, chosen sites
  out. Ours: :func:`gis.roadgraph.load_network` (no cache; the cached time is
  shown apart) → :func:`gis.siting.coverage_matrix` → :func:`gis.siting.mclp`.
  Peer: osmnx graph (:func:`gis.network.load_graph`) →
  ``osmnx.convert.to_digraph`` → ``networkx.to_scipy_sparse_array`` → KD-tree
  snapping → one bounded ``scipy.sparse.csgraph.dijkstra`` from all candidate
  nodes → coverage matrix → the same plain ``milp``. Straight line: KD-tree
  ``sparse_distance_matrix`` + plain ``milp``.

Run: ``.venv/bin/python -m benchmarks.bench_siting`` (a few minutes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import alternate, load_note, machine, med, ratio, span, write_section  # noqa: E402
from gis import network, roadgraph, routing, settings, siting  # noqa: E402

#: (residents, candidates, k); the last is the issue's 4,000 × 500, k = 30
SIZES = [(1000, 150, 10), (3000, 400, 25), (4000, 500, 30)]
SPOPT_MAX_DEMAND = 1000  # spopt + CBC run as reference up to this size (20 s there; minutes beyond)
LIMIT = 500.0
ROUNDS = 3


def plain_milp(A: sp.csr_matrix, w: np.ndarray, k: int, cov0: np.ndarray) -> tuple[np.ndarray, float]:
    """The textbook sparse MCLP for scipy ``milp`` (x binary, y continuous)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    J = np.flatnonzero(~cov0 & (w > 0))
    Ac = A[:, J].astype(float)
    nc, m = Ac.shape
    cons = [LinearConstraint(sp.hstack([-Ac.T, sp.identity(m)]).tocsr(), -np.inf, 0.0),
            LinearConstraint(np.r_[np.ones(nc), np.zeros(m)][None, :], k, k)]
    res = milp(-np.r_[np.zeros(nc), w[J]], constraints=cons, integrality=np.r_[np.ones(nc), np.zeros(m)],
               bounds=Bounds(0, 1), options={"mip_rel_gap": 1e-6})
    sel = np.flatnonzero(res.x[:nc] > 0.5)
    covered = np.asarray(A[sel].sum(axis=0)).ravel() > 0
    return sel, float(w[covered & ~cov0].sum())


def peer_network_matrix(road_file: Path, cxy: np.ndarray, dxy: np.ndarray) -> sp.csr_matrix:
    """Coverage matrix the osmnx way: osmnx graph → DiGraph → scipy CSR → bounded csgraph Dijkstra."""
    import networkx as nx
    import osmnx as ox
    from scipy.sparse.csgraph import dijkstra
    from scipy.spatial import cKDTree

    G = network.load_graph(road_file, mode="walk")
    D = ox.convert.to_digraph(G, weight="length")
    nodes = list(D.nodes)
    M = nx.to_scipy_sparse_array(D, nodelist=nodes, weight="length", format="csr")
    xy = np.array([(D.nodes[n]["x"], D.nodes[n]["y"]) for n in nodes])
    tree = cKDTree(xy)
    cs, cn = tree.query(cxy)
    ds, dn = tree.query(dxy)
    un, inv = np.unique(cn, return_inverse=True)
    dist = dijkstra(M.T.tocsr(), indices=un, limit=LIMIT)[inv][:, dn]
    return sp.csr_matrix(cs[:, None] + dist + ds[None, :] <= LIMIT)


def instance(net: routing.NetworkCSR, n_dem: int, n_cand: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(n_dem)
    dxy = net.xy[rng.choice(net.n, n_dem)] + rng.uniform(-80, 80, (n_dem, 2))
    cxy = net.xy[rng.choice(net.n, n_cand)] + rng.uniform(-30, 30, (n_cand, 2))
    w = rng.lognormal(4, 1, n_dem).round()
    cov0 = rng.random(n_dem) < 0.1
    return dxy, cxy, w, cov0


def spopt_reference(A: sp.csr_matrix, w: np.ndarray, k: int, cov0: np.ndarray) -> tuple[float, float]:
    t0 = time.perf_counter()
    ref = siting.exact_mclp(A, w, k, covered0=cov0, time_limit_s=300)
    if ref.extra.get("status") != "Optimal":
        return float("nan"), time.perf_counter() - t0
    return ref.covered_weight, time.perf_counter() - t0


def kernel_row(label: str, A: sp.csr_matrix, w: np.ndarray, k: int, cov0: np.ndarray) -> dict:
    times, res = alternate({"ours": lambda: siting.mclp(A, w, k, covered=cov0),
                            "peer": lambda: plain_milp(A, w, k, cov0)}, ROUNDS)
    ours, (_, peer_obj) = res["ours"], res["peer"]
    if not (ours.optimal and abs(ours.covered_weight - peer_obj) <= 1e-6 * peer_obj):
        raise SystemExit(f"{label}: ours {ours.covered_weight} (optimal={ours.optimal}) vs milp {peer_obj}")
    greedy = siting.greedy_mclp(A, w, k, covered0=cov0)
    g_bound = siting.greedy_bound(A, w, greedy.selected, k, cov0)
    spopt_obj, spopt_s = (spopt_reference(A, w, k, cov0) if A.shape[1] <= SPOPT_MAX_DEMAND
                          else (float("nan"), float("nan")))
    if np.isfinite(spopt_obj) and abs(spopt_obj - ours.covered_weight) > 1e-6 * spopt_obj:
        raise SystemExit(f"{label}: spopt optimum {spopt_obj} differs from ours {ours.covered_weight}")
    row = dict(label=label, n_dem=A.shape[1], n_cand=A.shape[0], k=k, nnz=A.nnz, opt=ours.covered_weight,
               greedy=greedy.covered_weight, g_gap=(g_bound - greedy.covered_weight) / g_bound,
               t_ours=times["ours"], t_peer=times["peer"], spopt=spopt_obj, t_spopt=spopt_s)
    print({k_: v for k_, v in row.items() if not isinstance(v, list)}, flush=True)
    return row


def whole_row(label: str, road_file: Path, dxy: np.ndarray, cxy: np.ndarray, w: np.ndarray, k: int,
              cov0: np.ndarray) -> dict:
    def ours() -> siting.SolverResult:
        net = roadgraph.load_network(road_file, mode="walk")
        return siting.mclp(siting.coverage_matrix(cxy, dxy, LIMIT, network=net), w, k, covered=cov0)

    def peer() -> tuple[np.ndarray, float]:
        return plain_milp(peer_network_matrix(road_file, cxy, dxy), w, k, cov0)

    times, res = alternate({"ours": ours, "peer": peer}, ROUNDS)
    if abs(res["ours"].covered_weight - res["peer"][1]) > 1e-6 * res["peer"][1]:
        raise SystemExit(f"{label}: whole path optimum {res['ours'].covered_weight} vs {res['peer'][1]}")
    with tempfile.TemporaryDirectory() as cache:
        roadgraph.load_network(road_file, mode="walk", cache_dir=cache)
        t0 = time.perf_counter()
        net = roadgraph.load_network(road_file, mode="walk", cache_dir=cache)
        siting.mclp(siting.coverage_matrix(cxy, dxy, LIMIT, network=net), w, k, covered=cov0)
        t_cached = time.perf_counter() - t0
    row = dict(label=label, t_ours=times["ours"], t_peer=times["peer"], t_cached=t_cached,
               opt=res["ours"].covered_weight)
    print({k_: (med(v) if isinstance(v, list) else v) for k_, v in row.items()}, flush=True)
    return row


def euclid_whole_row(label: str, dxy: np.ndarray, cxy: np.ndarray, w: np.ndarray, k: int,
                     cov0: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    def peer() -> tuple[np.ndarray, float]:
        m = cKDTree(cxy).sparse_distance_matrix(cKDTree(dxy), LIMIT, output_type="coo_matrix")
        return plain_milp(sp.csr_matrix((np.ones(m.nnz, bool), (m.row, m.col)), shape=(len(cxy), len(dxy))),
                          w, k, cov0)

    times, res = alternate({"ours": lambda: siting.mclp(siting.coverage_matrix(cxy, dxy, LIMIT), w, k,
                                                        covered=cov0),
                            "peer": peer}, ROUNDS)
    if abs(res["ours"].covered_weight - res["peer"][1]) > 1e-6 * res["peer"][1]:
        raise SystemExit(f"{label}: optimum {res['ours'].covered_weight} vs {res['peer'][1]}")
    return dict(label=label, t_ours=times["ours"], t_peer=times["peer"], t_cached=float("nan"),
                opt=res["ours"].covered_weight)


def sample_inputs() -> tuple[object, int]:
    """The bundled sample's siting model as ``gis run`` states it (the coverage its target counts, the
    township minimums its targets ask for) and its k."""
    from gis import coverage, steps
    from gis.district import load_district

    d = load_district(settings.SAMPLE_PROJECT_DIR)
    with tempfile.TemporaryDirectory() as out:
        _, ctx = steps.run_steps(d, Path(out), ["compliance", "coverage"])
    dc = ctx.coverage
    cfg = d.project.section("coverage")
    tier = str(cfg.get("headline_tier", "collection_point"))
    minima = siting.township_minimums(d.project.targets or [], tier, dc.sites, d.townships["township"])
    inputs = coverage.siting_inputs(dc.scope, dc.candidate_check, cfg.get("siting") or {},
                                    network=dc.networks.get(dc.scope.standard.mode),
                                    max_snap_m=float(cfg["max_snap_m"]), min_per_township=minima)
    return inputs, int(inputs.config["k_new"])


def sample_row(inputs: object, k: int) -> dict:
    """Our model as ``gis run`` states it (bonus for 一场两用, at least one per 镇街 where a target says so)."""
    times, res = alternate({"ours": lambda: siting.mclp(
        inputs.matrix, inputs.weights, k, covered=inputs.covered, bonus=inputs.bonus, groups=inputs.groups,
        min_per_group=inputs.min_per_township, config=inputs.config)}, ROUNDS)
    r = res["ours"]
    row = dict(label=f"sample district {inputs.matrix.shape[1]:,} cells × {inputs.matrix.shape[0]:,} candidates",
               k=k, nnz=inputs.matrix.nnz, opt=r.covered_weight, optimal=bool(r.optimal), gap=float(r.gap),
               t_ours=times["ours"], minima=sum((inputs.min_per_township or {}).values()),
               preferred=int(np.count_nonzero(inputs.bonus)))
    print({k_: v for k_, v in row.items() if not isinstance(v, list)}, flush=True)
    return row


def main() -> None:
    road_file = settings.SHARED_OSM_DIR / "road_nanan.geojson"
    if not road_file.exists():
        raise SystemExit(f"real OSM data not at {road_file}")
    net = roadgraph.load_network(road_file, mode="walk")
    load_before = load_note()
    kernels, wholes = [], []
    for n_dem, n_cand, k in SIZES:
        dxy, cxy, w, cov0 = instance(net, n_dem, n_cand)
        A = siting.coverage_matrix(cxy, dxy, LIMIT, network=net)
        kernels.append(kernel_row(f"network {n_dem:,} × {n_cand}", A, w, k, cov0))
        wholes.append(whole_row(f"network {n_dem:,} × {n_cand}, k = {k}", road_file, dxy, cxy, w, k, cov0))
    dxy, cxy, w, cov0 = instance(net, *SIZES[-1][:2])
    k = SIZES[-1][2]
    kernels.append(kernel_row(f"straight line {len(dxy):,} × {len(cxy)}", siting.coverage_matrix(cxy, dxy, LIMIT),
                              w, k, cov0))
    wholes.append(euclid_whole_row(f"straight line {len(dxy):,} × {len(cxy)}, k = {k}", dxy, cxy, w, k, cov0))
    inputs, k = sample_inputs()
    kernels.append(kernel_row(f"sample district {inputs.matrix.shape[1]:,} × {inputs.matrix.shape[0]:,} (plain model)",
                              inputs.matrix, inputs.weights, k, inputs.covered))
    sample = sample_row(inputs, k)
    write_section("siting", report(kernels, wholes, load_before, sample))


def report(kernels: list[dict], wholes: list[dict], load_before: str, sample: dict) -> str:
    lines = [
        "## Siting (`benchmarks/bench_siting.py`)",
        "",
        f"Maximal covering (MCLP), 500 m, residents and candidates along the real Nanan roads, 10 % of residents "
        f"fixed as covered. {machine()}; {ROUNDS} rounds, ours and the peer alternating in one process; "
        f"median (min–max) seconds; ratio = peer / ours (range of the per-round ratios). Shared machine: "
        f"{load_before} at the start, {load_note()} at the end.",
        "",
        "**Kernel** (same coverage matrix in). Ours: `gis.siting.mclp` (greedy incumbent and bound, then HiGHS via "
        "`scipy.optimize.milp`). Peer: the plain sparse MCLP for `scipy.optimize.milp`. Optima checked equal; "
        "spopt `MCLP` + CBC as reference where run.",
        "",
        "| instance | k | nnz(A) | optimum (residents) | ours (s) | plain milp (s) | ratio | greedy / optimum "
        "| greedy's own gap bound | spopt+CBC optimum (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in kernels:
        sp_txt = f"{r['spopt']:,.0f} ({r['t_spopt']:.1f} s)" if np.isfinite(r["spopt"]) else "not run"
        lines.append(
            f"| {r['label']} | {r['k']} | {r['nnz']:,} | {r['opt']:,.0f} | {span(r['t_ours'])} | {span(r['t_peer'])} | "
            f"{ratio(r['t_peer'], r['t_ours'])} | {r['greedy'] / r['opt']:.2%} | {r['g_gap']:.1%} | {sp_txt} |")
    lines += [
        "",
        "**Whole path** (road file and points in, optimal sites out). Ours: `roadgraph.load_network` (not cached) → "
        "`siting.coverage_matrix` → `siting.mclp`; peer: osmnx graph → `to_digraph` → `to_scipy_sparse_array` → "
        "KD-tree snap → one bounded csgraph Dijkstra from all candidates → plain `milp`. Straight line: KD-tree "
        "`sparse_distance_matrix` → plain `milp`. Optima checked equal.",
        "",
        "| instance | ours (s) | peer (s) | ratio | ours with the road graph cached (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in wholes:
        cached = f"{r['t_cached']:.3f}" if np.isfinite(r["t_cached"]) else "—"
        lines.append(f"| {r['label']} | {span(r['t_ours'])} | {span(r['t_peer'])} | {ratio(r['t_peer'], r['t_ours'])} "
                     f"| {cached} |")
    lines += [
        "",
        "Every optimum here is proven (HiGHS status optimal, relative gap ≤ 1e-6), each kernel in under a second "
        "even on the loaded machine. The solver is HiGHS in both columns; ours is faster than the plain model on "
        "the larger instances because it gives HiGHS one demand variable per distinct covering set (cells reached "
        "by the same candidates merged) and only candidates that cover something, and slower on the smallest, "
        "where the greedy incumbent and bound cost more than they save. The greedy's own a-posteriori bound "
        "(top-k marginal gains) is loose (~30 %), so the greedy alone cannot certify its answer. The earlier "
        "greedy-vs-spopt figures (5,500–15,500×) compared a heuristic with a dense pulp model build and are "
        "withdrawn.",
        "",
        f"**Bundled sample** (the model `gis run` solves: {sample['label']}, k = {sample['k']}, nnz {sample['nnz']:,}, "
        f"{sample['preferred']:,} preferred 一场两用 candidates with their bonus, {sample['minima']} new sites required "
        "by per-镇街 targets): "
        f"{'proven optimal' if sample['optimal'] else 'NOT proven optimal'} (gap {sample['gap']:.1e}), "
        f"{sample['opt']:,.0f} residents newly covered, {span(sample['t_ours'])} s "
        f"(issue 15: under 1 s — {'met' if med(sample['t_ours']) < 1 else 'NOT met'} by the median). The plain "
        "model on the same matrix is the kernel table's sample row.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
