"""Benchmark: Gi* (gis.gistar) vs esda on hex grids; clustering on the city sample.

Run ``.venv/bin/python benchmarks/bench_hotspots.py [--sizes 10000,100000,1000000]
[--skip-city] [--esda-cap 300]``. Writes its section of ``benchmarks/RESULTS.md``
(between ``<!-- bench:hotspots -->`` markers).

Part 1, Gi*: the same counts and the same binary distance-band weights (2 cell
spacings, 18 neighbours) on hexagon grids of 10k / 100k / 1M cells. Ours: lattice
weights from axial offsets + :func:`gis.gistar.gi_star` (analytic z, p, FDR bins).
Peer: ``esda.G_Local(star=True, transform='B', permutations=0)`` on a libpysal ``W``
built from the same sparse matrix (timed with and without that conversion), and
the all-PySAL workflow (``libpysal.weights.DistanceBand`` on the cell centres, then
``G_Local``). z-scores are checked equal (max |Δz| ≤ 1e-8) and FDR cut-offs equal
``esda.fdr``. A peer run projected (linearly from the previous size) to exceed
``--esda-cap`` seconds is not run and is reported as such. Permutation inference
(99 conditional permutations) is compared at the smaller sizes.

Part 2, clustering: ``gis.sample.generate(benchmarks/_work/city, scale="city")``
(≥100k incidents; generated once, gitignored), then DBSCAN and HDBSCAN per
incident kind and the whole :func:`gis.hotspots.analyse`, with wall time, peak
traced memory (tracemalloc: Python and numpy allocations) and recall of the
planted clusters against ``truth/clusters_truth.csv``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gis import gistar  # noqa: E402

from benchmarks._common import write_section  # noqa: E402

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


def bench_gistar(sizes: list[int], cap: float) -> list[str]:
    import esda
    from libpysal.weights import DistanceBand, W

    warnings.simplefilter("ignore")
    lines = [
        "| cells | nnz | ours: weights + Gi* | esda G_Local (W given) | esda incl. W.from_sparse | "
        "PySAL DistanceBand + G_Local | speed-up vs esda (W given / incl. W / PySAL) | max abs dz | FDR equal |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    prev: dict[str, tuple[int, float]] = {}

    def allowed(key: str, n: int) -> bool:
        if key not in prev:
            return True
        n0, t0 = prev[key]
        return t0 * n / n0 <= cap

    for n_target in sizes:
        grid = grid_of(n_target)
        x = counts_for(grid)
        band = 2 * grid.spacing
        reps = 5 if len(grid) <= 20_000 else (3 if len(grid) <= 200_000 else 1)

        def ours() -> Any:
            w = gistar.lattice_weights(grid, band)
            return w, gistar.gi_star(x, w)

        t_ours, (w, res) = timed(ours, reps)
        row = {"ours": t_ours}
        z_ref = None
        peer_reps = 3 if len(grid) <= 20_000 else 1
        if allowed("conv", len(grid)):
            t_conv, lw = timed(lambda: W.from_sparse(w), peer_reps)
            prev["conv"] = (len(grid), t_conv)
            if allowed("glocal", len(grid)):
                t_g, g = timed(lambda: esda.G_Local(x, lw, transform="B", star=True, permutations=0), peer_reps)
                prev["glocal"] = (len(grid), t_g)
                row["glocal"], row["with_conv"] = t_g, t_g + t_conv
                z_ref = g.Zs
            del lw
        if allowed("pysal", len(grid)):

            def pysal() -> Any:
                db = DistanceBand(grid.centres, band * (1 + 1e-9), binary=True, silence_warnings=True)
                return esda.G_Local(x, db, transform="B", star=True, permutations=0)

            t_p, gp = timed(pysal, 1)
            prev["pysal"] = (len(grid), t_p)
            row["pysal"] = t_p
            if z_ref is None:
                z_ref = gp.Zs
        dz = float(np.max(np.abs(res.z - z_ref))) if z_ref is not None else float("nan")
        fdr_ok = all(gistar.fdr_cutoff(res.p, a) == esda.fdr(res.p, a) for a in (0.1, 0.05, 0.01))
        if z_ref is not None:
            assert dz <= 1e-8, f"z-scores differ from esda by {dz}"
        assert fdr_ok

        def fmt(key: str) -> str:
            return f"{row[key]:.3f} s" if key in row else f"not run (projected > {cap:.0f} s)"

        ratios = " / ".join(f"{row[k] / t_ours:.0f}×" if k in row else "–" for k in ("glocal", "with_conv", "pysal"))
        lines.append(
            f"| {len(grid):,} | {w.nnz:,} | {t_ours:.3f} s | {fmt('glocal')} | {fmt('with_conv')} | "
            f"{fmt('pysal')} | {ratios} | {dz:.1e} | {'yes' if fdr_ok else 'NO'} |"
        )
        print(lines[-1], flush=True)
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
    return lines


def bench_clusters(seed: int = 42) -> list[str]:
    import pandas as pd

    from gis import hotspots, sample
    from gis.catalog import load_project
    from gis.district import load_district

    folder = WORK / "city"
    if not (folder / "project.yaml").exists():
        t0 = time.perf_counter()
        sample.generate(folder, seed=seed, scale="city")
        print(f"generated city sample in {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    d = load_district(folder)
    t_load = time.perf_counter() - t0
    inc = d.incidents
    config = load_project(folder).section("hotspots")
    truth = pd.read_csv(folder / "truth" / "clusters_truth.csv")
    members_truth = pd.read_csv(folder / "truth" / "incidents_truth.csv")
    lines = [
        f"City sample: {len(inc):,} incidents, {len(truth)} planted clusters, "
        f"{d.townships.shape[0]} townships (load {t_load:.0f} s, not included below).",
        "",
        "| task | time | peak traced memory | clusters | recall of planted clusters |",
        "|---|---:|---:|---:|---:|",
    ]

    def run(label: str, fn: Callable[[], Any], get_clusters: Callable[[Any], Any]) -> None:
        tracemalloc.start()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        res = get_clusters(out)
        rec = recall(res, truth, members_truth)
        lines.append(f"| {label} | {dt:.1f} s | {peak:,.0f} MiB | {len(res.clusters):,} | {rec:.1%} |")
        print(lines[-1], flush=True)

    cc = config["clusters"]
    run("DBSCAN per kind (k-distance eps)", lambda: hotspots.find_clusters(inc, zones=d.zones, params=cc, method="dbscan"), lambda r: r)
    run("HDBSCAN per kind", lambda: hotspots.find_clusters(inc, zones=d.zones, params=cc, method="hdbscan"), lambda r: r)
    run(
        "HDBSCAN per kind, min_cluster_size 15 (smallest planted size), min_samples 5",
        lambda: hotspots.find_clusters(
            inc, zones=d.zones, params=cc, method="hdbscan", min_cluster_size=15, hdbscan_min_samples=5
        ),
        lambda r: r,
    )
    run("scan per kind (default)", lambda: hotspots.find_clusters(inc, zones=d.zones, params=cc), lambda r: r)
    run(
        "full analyse() (scan, Gi* grid + emerging, density, rebound, priority)",
        lambda: hotspots.analyse(inc, config, zones=d.zones, townships=d.townships, area=d.boundary),
        lambda r: r.clusters,
    )
    lines += [
        "",
        "Recall and strict precision of every method against the planted sites, with the sites detectable in "
        "principle, by size, spread and kind: `benchmarks/bench_clusters.py` (section below).",
        "Peak memory is the tracemalloc peak of the call (Python and numpy allocations; "
        "scikit-learn's compiled internals are not all traced).",
    ]
    return lines


def recall(res: Any, truth: Any, members_truth: Any) -> float:
    """Share of planted clusters recovered (:func:`gis.hotspots.match_planted`)."""
    from gis.hotspots import match_planted

    if len(res.clusters) == 0:
        return 0.0
    return float(match_planted(res, truth, members_truth)["recovered"].mean())


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
    ap.add_argument("--esda-cap", type=float, default=300.0, help="skip peer runs projected beyond this (s)")
    ap.add_argument("--skip-city", action="store_true", help="reuse the last city results (benchmarks/_work)")
    ap.add_argument("--skip-gistar", action="store_true", help="reuse the last Gi* results (benchmarks/_work)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    import esda
    import libpysal
    import sklearn

    lines = [
        "## Hot spots (`benchmarks/bench_hotspots.py`)",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}; "
        f"esda {esda.__version__}, libpysal {libpysal.__version__}, scikit-learn {sklearn.__version__}. "
        "Medians of 5 (≤20k cells), 3 (≤200k) or 1 run(s); peer runs 3 / 1.",
        "",
        "### Gi* on hexagon grids (binary distance band = 2 spacings, analytic inference)",
        "",
    ]
    lines += part("gistar", args.skip_gistar, lambda: bench_gistar(sizes, args.esda_cap))
    lines += ["", "### Clustering on the `city` sample", ""]
    lines += part("city", args.skip_city, bench_clusters)
    write_section("hotspots", "\n".join(lines))  # benchmarks._common: one writer of RESULTS.md sections
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
