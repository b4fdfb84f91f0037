"""Benchmark: Gi* (gis.gistar) against esda on hex grids, whole path and kernel.

Run ``.venv/bin/python benchmarks/bench_hotspots.py [--sizes 10000,100000,1000000]
[--esda-cap 600]``. Writes its section of ``benchmarks/RESULTS.md`` (between
``<!-- bench:hotspots -->`` markers).

The same counts and the same binary distance-band weights (2 cell spacings, 18
neighbours) on hexagon grids of 10k / 100k / 1M cells. Whole path (centres and counts
in, z / p / FDR out): ours, lattice weights from axial offsets +
:func:`gis.gistar.gi_star`; peers, ``libpysal.graph.Graph.build_distance_band`` and the
classic ``libpysal.weights.DistanceBand``, each then
``esda.G_Local(star=True, transform='B', permutations=0)``. Kernel (weights given):
``gi_star`` against ``G_Local`` on a libpysal ``W`` of the same sparse matrix. Ours and
the peers alternate round by round (:func:`benchmarks._common.alternate`); z-scores
are checked equal (max |Δz| ≤ 1e-8) and FDR cut-offs equal ``esda.fdr``. A peer whose
rounds are projected (linearly from the previous size) to exceed ``--esda-cap``
seconds is not run and is reported as such. Permutation inference (99 conditional
permutations) is compared at the smaller sizes. Cluster detection against planted
truth is ``benchmarks/bench_clusters.py``.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gis import gistar  # noqa: E402

from benchmarks._common import alternate, load_note, ratio, span, write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
WORK = ROOT / "benchmarks" / "_work"


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def grid_of(n_cells: int, spacing: float = 100.0) -> gistar.HexGrid:
    side = np.sqrt(n_cells * np.sqrt(3) / 2) * spacing
    return gistar.HexGrid.covering((0, 0, side, side), spacing)


def counts_for(grid: gistar.HexGrid, seed: int = 0) -> np.ndarray:
    """Poisson background plus a few Gaussian hot areas (incident-like counts)."""
    rng = np.random.default_rng(seed)
    c = grid.centres
    lam = np.full(len(grid), 0.5)
    lo, hi = c.min(0), c.max(0)
    for _ in range(max(3, len(grid) // 20_000)):
        centre = rng.uniform(lo, hi)
        lam += 6 * np.exp(-np.sum((c - centre) ** 2, axis=1) / (2 * (8 * grid.spacing) ** 2))
    return rng.poisson(lam).astype(float)


def _projected(prev: dict[str, tuple[int, float]], key: str, n: int) -> float:
    """Seconds a peer run on ``n`` cells is projected to take, linearly from its run on the previous size."""
    if key not in prev:
        return 0.0
    n0, t0 = prev[key]
    return t0 * n / n0


def bench_gistar(sizes: list[int], cap: float) -> list[str]:
    """Whole path and kernel of Gi* against esda, ours and the peers alternating round by round."""
    import esda
    from libpysal.graph import Graph
    from libpysal.weights import DistanceBand, W

    warnings.simplefilter("ignore")
    start = load_note()
    whole = ["**Whole path** (cell centres and counts in, z, p and FDR bins out). Ours: "
             "`gistar.lattice_weights` (axial offsets of the hex lattice) + `gistar.gi_star`. Peers: "
             "`libpysal.graph.Graph.build_distance_band` + `esda.G_Local(star=True, transform='B')`; the classic "
             "`libpysal.weights.DistanceBand` + `G_Local`.", "",
             "| cells | nnz | rounds | ours (s) | Graph + G_Local (s) | ratio | DistanceBand + G_Local (s) | ratio | "
             "max abs dz | FDR equal |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    kernel = ["", "**Kernel** (the same sparse weights given). Ours: `gistar.gi_star`; peer: `esda.G_Local` on a "
              "libpysal `W` built from them (conversion not timed).", "",
              "| cells | ours (s) | esda G_Local, W given (s) | ratio |", "|---:|---:|---:|---:|"]
    prev: dict[str, tuple[int, float]] = {}
    best: dict[str, list[float]] = {"whole": [], "kernel": []}  # per size: median ratio against the faster peer
    for n_target in sizes:
        grid = grid_of(n_target)
        x = counts_for(grid)
        band = 2 * grid.spacing
        rounds = 5 if len(grid) <= 20_000 else (3 if len(grid) <= 200_000 else 1)
        w = gistar.lattice_weights(grid, band)
        lw = W.from_sparse(w)

        def g_local(weights: Any) -> Any:
            return esda.G_Local(x, weights, transform="B", star=True, permutations=0)

        fns: dict[str, Callable[[], Any]] = {
            "ours": lambda: gistar.gi_star(x, gistar.lattice_weights(grid, band)),
            "graph": lambda: g_local(Graph.build_distance_band(grid.centres, band * (1 + 1e-9), binary=True)),
            "pysal": lambda: g_local(DistanceBand(grid.centres, band * (1 + 1e-9), binary=True, silence_warnings=True)),
            "k_ours": lambda: gistar.gi_star(x, w),
            "k_esda": lambda: g_local(lw),
        }
        skipped = {k for k in fns if _projected(prev, k, len(grid)) * rounds > cap}
        times, res = alternate({k: f for k, f in fns.items() if k not in skipped}, rounds, warmup=len(grid) <= 200_000)
        prev.update({k: (len(grid), statistics.median(t)) for k, t in times.items()})
        refs = [res[k].Zs for k in ("graph", "pysal", "k_esda") if k in res]
        dz = max((float(np.max(np.abs(res["ours"].z - z))) for z in refs), default=float("nan"))
        assert not refs or dz <= 1e-8, f"z-scores differ from esda by {dz}"
        fdr_ok = all(gistar.fdr_cutoff(res["ours"].p, a) == esda.fdr(res["ours"].p, a) for a in (0.1, 0.05, 0.01))
        assert fdr_ok

        def cell(key: str, base: str) -> str:
            if key not in times:
                return f"not run (projected > {cap:.0f} s) | –"
            return f"{span(times[key])} | {ratio(times[key], times[base])}"

        whole.append(f"| {len(grid):,} | {w.nnz:,} | {rounds} | {span(times['ours'])} | {cell('graph', 'ours')} | "
                     f"{cell('pysal', 'ours')} | {dz:.1e} | {'yes' if fdr_ok else 'NO'} |")
        kernel.append(f"| {len(grid):,} | {span(times['k_ours'])} | {cell('k_esda', 'k_ours')} |")
        peers = [statistics.median(times[k]) for k in ("graph", "pysal") if k in times]
        if peers:
            best["whole"].append(min(peers) / statistics.median(times["ours"]))
        if "k_esda" in times:
            best["kernel"].append(statistics.median(times["k_esda"]) / statistics.median(times["k_ours"]))
        print(whole[-1], kernel[-1], sep="\n", flush=True)
    lines = [f"Shared machine: {start} at the start.", ""] + whole + kernel
    if best["whole"] and best["kernel"]:
        lines += ["", f"Issue 15's target (Gi* at least 20× the strongest peer, held): the whole path is "
                  f"{min(best['whole']):.0f}–{max(best['whole']):.0f}× the faster esda path by the medians, the kernel "
                  f"{min(best['kernel']):.0f}–{max(best['kernel']):.0f}×, at every size above; "
                  f"{'met' if min(best['whole'] + best['kernel']) >= 20 else 'NOT met'}."]
    # permutations
    lines += [
        "",
        "Permutation inference (99 conditional permutations, same weights; pseudo p-values "
        "agree up to Monte-Carlo error):",
        "",
        "| cells | ours | esda (numba crand, all cores) | speed-up | corr(p_sim) | median abs dp_sim |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n_target in [s for s in sizes if s <= 100_000]:
        grid = grid_of(n_target)
        x = counts_for(grid)
        w = gistar.lattice_weights(grid, 2 * grid.spacing)
        t_o, r = timed(lambda: gistar.gi_star(x, w, permutations=99, seed=1), 1)
        lw = W.from_sparse(w)
        esda.G_Local(x[:100], W.from_sparse(w[:100, :100]), transform="B", star=True, permutations=9)  # numba warm-up
        t_e, g = timed(lambda: esda.G_Local(x, lw, transform="B", star=True, permutations=99, seed=1), 1)
        corr = float(np.corrcoef(r.p_sim, g.p_sim)[0, 1])
        lines.append(
            f"| {len(grid):,} | {t_o:.2f} s | {t_e:.2f} s | {t_e / t_o:.1f}× | {corr:.3f} | "
            f"{float(np.median(np.abs(r.p_sim - g.p_sim))):.3f} |"
        )
        print(lines[-1], flush=True)
    return lines + ["", f"{load_note()} at the end."]


def part(name: str, skip: bool, run: Callable[[], list[str]]) -> list[str]:
    """Run one part, or reuse its last lines (kept in ``benchmarks/_work``) when skipped."""
    cache = WORK / f"hotspots_{name}.md"
    if skip:
        return cache.read_text(encoding="utf-8").splitlines() if cache.exists() else ["(not run)"]
    lines = run()
    WORK.mkdir(parents=True, exist_ok=True)
    cache.write_text("\n".join(lines), encoding="utf-8")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--esda-cap", type=float, default=600.0, help="skip peer runs projected beyond this (s)")
    ap.add_argument("--skip-gistar", action="store_true", help="reuse the last Gi* results (benchmarks/_work)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    import esda
    import libpysal

    lines = [
        "## Hot spots (`benchmarks/bench_hotspots.py`)",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}; "
        f"esda {esda.__version__}, libpysal {libpysal.__version__}. Ours and the peers alternate round by round in "
        "one process (5 rounds up to 20k cells, 3 up to 200k, 1 above; one untimed warm-up call each below 200k); "
        "median (min–max) seconds; ratio = peer / ours (range of the per-round ratios).",
        "",
        "### Gi* on hexagon grids (binary distance band = 2 spacings, analytic inference)",
        "",
    ]
    lines += part("gistar", args.skip_gistar, lambda: bench_gistar(sizes, args.esda_cap))
    lines += ["", "Cluster detection (DBSCAN, HDBSCAN, the scan and mixture detectors) against planted truth, with time: "
              "`benchmarks/bench_clusters.py` (section *Cluster detection against planted truth*)."]
    write_section("hotspots", "\n".join(lines))  # benchmarks._common: one writer of RESULTS.md sections
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
