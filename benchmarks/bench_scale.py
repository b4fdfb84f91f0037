"""Municipal scale: single process vs Dask (2 workers) on the municipal mosaic sample.

Usage: ``python -m benchmarks.bench_scale [--districts N] [--district-scale S] [--steps a,b]
[--mem-limit-gib G] [--report-only]``.
Generates ``benchmarks/_work/muni_<N>_<S>/`` if missing, then runs
``gis.parallel.run_municipality`` once per engine, each in its own subprocess, sampling
the resident memory of the whole process tree (psutil; Dask workers included) every
0.2 s (a run past ``--mem-limit-gib`` is killed and reported as failed at that
ceiling). Saves each run to ``_work/scale_<N>_<S>_<engine>.json``; checks that the
two engines' municipal summaries are equal, and writes the
``<!-- bench:scale -->`` section of RESULTS.md. Nothing is extrapolated: the table
states the size actually run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks._common import WORK, machine, run_sampled, write_section

#: The two engines compared, in run order.
ENGINES = ("single", "dask")

CHILD = r"""
import json, sys, time
from gis.parallel import local_client, run_municipality
engine, project, out, steps, mem = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
if __name__ == "__main__":
    t = time.perf_counter()
    client = local_client(2, 1, memory_limit=mem) if engine == "dask" else None
    try:
        res = run_municipality(project, out, engine=engine, client=client, steps=[s for s in steps.split(",") if s])
    finally:
        if client is not None:
            cl = client.cluster; client.close(); cl.close()
    print(json.dumps({"wall_s": time.perf_counter() - t, "timings": res["timings_s"], "municipal": res["municipal"]}, ensure_ascii=False, default=str))
"""


def _run(engine: str, project: Path, out: Path, steps: str, mem_limit_gib: float, worker_mem: str = "auto") -> tuple[dict, float]:
    """Run one engine in its own process group; kill the group past ``mem_limit_gib`` of summed RSS."""
    run = run_sampled([sys.executable, "-c", CHILD, engine, str(project), str(out), steps, worker_mem], mem_limit_gib)
    peak = run.total_peak / 2**30
    if run.over:
        return {"failed": f"killed at the {mem_limit_gib:g} GiB memory ceiling"}, peak
    if run.returncode:  # e.g. killed by the OOM killer: keep the peak it reached
        return {"failed": run.returncode}, peak
    return json.loads(run.stdout.strip().splitlines()[-1]), peak


def same_features(a: Path, b: Path) -> dict[str, bool]:
    """Layer by layer, are the two engines' partitioned outputs (every district's GeoParquet file) equal?"""
    import geopandas as gpd
    import pandas as pd

    out = {}
    for layer in ("sites", "hexes", "incidents", "cells"):
        fa = sorted((a / "municipal_analysis" / layer).glob("district=*/part.parquet"))
        fb = sorted((b / "municipal_analysis" / layer).glob("district=*/part.parquet"))
        try:
            assert [f.relative_to(a) for f in fa] == [f.relative_to(b) for f in fb] and fa
            for x, y in zip(fa, fb):
                pd.testing.assert_frame_equal(gpd.read_parquet(x), gpd.read_parquet(y), check_exact=True)
            out[layer] = True
        except AssertionError:
            out[layer] = False
    return out


def _result_file(a: argparse.Namespace, engine: str) -> Path:
    return WORK / f"scale_{a.districts}_{a.district_scale}_{engine}.json"


def report(a: argparse.Namespace) -> str:
    """The RESULTS.md section from the two engines' saved runs (``_result_file``)."""
    runs = {e: json.loads(_result_file(a, e).read_text(encoding="utf-8")) for e in ENGINES}
    failed = {e: r["result"]["failed"] for e, r in runs.items() if "failed" in r["result"]}
    counts, gen_s = runs["single"]["counts"], runs["single"]["gen_s"]
    full = counts["sites"] >= 200_000 and counts["incidents"] >= 2_000_000 and counts["population_cells"] >= 10_000_000

    def row(label: str, e: str) -> str:
        r = runs[e]
        if e in failed:
            return f"| {label} | failed: {failed[e]} | | | {r['peak_gib']:.2f} (at the failure) |"
        t = r["result"]["timings"]
        return f"| {label} | {r['result']['wall_s']:.1f} ({r['result']['wall_s'] / 60:.1f} min) | {t['districts']:.1f} | {t['municipal']:.1f} | {r['peak_gib']:.2f} |"

    lines = [
        "## Municipal scale: single process vs Dask (`bench_scale.py`)",
        "",
        f"{machine()}. Sample actually run: **{a.districts} districts** at district scale `{a.district_scale}` —",
        f"{counts['sites']:,} sites, {counts['incidents']:,} incidents, {counts['population_cells']:,} population cells",
        f"(generation {gen_s:.0f} s{' (cached)' if gen_s < 5 else ''}). Pipeline steps per district: `{a.steps}`; then the cross-border",
        "municipal analyses (四山 overlay, coverage, hex Gi*, DBSCAN), per-district outputs and the roll-up.",
        "Dask: `LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host=\"127.0.0.1\")`.",
        "Peak memory = largest summed RSS of the process tree (workers included), sampled every 0.2 s;",
        f"a run is killed at {a.mem_limit_gib:g} GiB. One run per engine (each takes minutes), so no median.",
        "",
        "*districts*: every district's pipeline; *municipal*: loading the partitions and the cross-border analyses;",
        "the rest of the wall time is the roll-up.",
        "",
        "| engine | wall time (s) | districts (s) | municipal (s) | peak memory (GiB) |",
        "|---|---:|---:|---:|---:|",
        row("single process", "single"),
        row("dask, 2 workers", "dask"),
        "",
    ]
    if not failed:
        s, d = runs["single"], runs["dask"]
        same = s["result"]["municipal"] == d["result"]["municipal"]
        lines.append(f"Ratio single/dask wall time: {s['result']['wall_s'] / d['result']['wall_s']:.2f}. "
                     f"Municipal summaries equal: **{same}**.")
        outs = [WORK / f"muni_out_{e}" for e in ENGINES]
        if all((o / "municipal_analysis").exists() for o in outs):
            eq = same_features(*outs)
            lines.append("Per-feature results equal (every district's GeoParquet partition, every row and attribute): "
                         + ", ".join(f"{k} **{v}**" for k, v in eq.items()) + ".")
    verdicts = []
    for e in ENGINES:
        r = runs[e]
        ok = e not in failed and r["result"]["wall_s"] < 30 * 60 and r["peak_gib"] < 12
        verdicts.append(f"{e}: {'met' if ok else '**not met**'}")
    lines += [
        "Target of issue 7 (≥ 200k sites, ≥ 2M incidents, ≥ 10M cells; < 30 min, < 12 GiB): "
        + ("; ".join(verdicts) + "." if full else
           "**not measured at that size** — this run is smaller; no figure here is extrapolated."),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", type=int, default=38)
    ap.add_argument("--district-scale", default="municipal")
    ap.add_argument("--steps", default="compliance,coverage,hotspots")
    ap.add_argument("--mem-limit-gib", type=float, default=18.0, help="kill a run whose process tree exceeds this RSS")
    ap.add_argument("--worker-memory", default="auto", help="Dask memory_limit per worker (e.g. 3GiB)")
    ap.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from the saved runs, run nothing")
    a = ap.parse_args()
    if not a.report_only:
        from gis.municipal import load_index
        from gis.sample.mosaic import generate_municipality

        project = WORK / f"muni_{a.districts}_{a.district_scale}"
        t0 = time.perf_counter()
        if not (project / "municipality.yaml").exists():
            generate_municipality(project, seed=11, districts=a.districts, district_scale=a.district_scale, workers=2)
        gen_s = time.perf_counter() - t0
        counts = load_index(project)["counts"]
        for engine in ENGINES:
            result, peak = _run(engine, project, WORK / f"muni_out_{engine}", a.steps, a.mem_limit_gib, a.worker_memory)
            print(engine, result.get("wall_s", result), peak, flush=True)
            _result_file(a, engine).write_text(
                json.dumps({"counts": counts, "gen_s": gen_s, "result": result, "peak_gib": peak},
                           ensure_ascii=False, default=str), encoding="utf-8")
    md = report(a)
    write_section("scale-38", md)  # the bench:scale section itself is bench_scale_curve's
    print(md)


if __name__ == "__main__":
    main()
