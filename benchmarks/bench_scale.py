"""Municipal scale: single process vs Dask (2 workers) on the municipal mosaic sample.

Usage: ``python -m benchmarks.bench_scale [--districts N] [--district-scale S] [--steps a,b]``.
Generates ``benchmarks/_work/muni_<N>_<S>/`` if missing, then runs
``gis.parallel.run_municipality`` once per engine, each in its own subprocess, sampling
the resident memory of the whole process tree (psutil; Dask workers included) every
0.2 s. Checks that the two engines' municipal summaries are equal, and writes the
``<!-- bench:scale -->`` section of RESULTS.md. Nothing is extrapolated: the table
states the size actually run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from benchmarks._common import WORK, machine, write_section

CHILD = r"""
import json, sys, time
from gis.parallel import run_municipality
engine, project, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if __name__ == "__main__":
    t = time.perf_counter()
    res = run_municipality(project, out, engine=engine, steps=[s for s in steps.split(",") if s])
    print(json.dumps({"wall_s": time.perf_counter() - t, "timings": res["timings_s"], "municipal": res["municipal"]}, ensure_ascii=False))
"""


def _run(engine: str, project: Path, out: Path, steps: str, mem_limit_gib: float) -> tuple[dict, float]:
    """Run one engine in its own process group; kill the group past ``mem_limit_gib`` of summed RSS."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, engine, str(project), str(out), steps],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    peak = 0
    over = False
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak, over
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                rss = sum(c.memory_info().rss for c in [p, *p.children(recursive=True)])
                peak = max(peak, rss)
            except psutil.Error:
                pass
            if peak > mem_limit_gib * 2**30 and not over:  # the ceiling: stop before the machine swaps or OOMs
                over = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    stop.set()
    th.join()
    if over:
        return {"failed": f"killed at the {mem_limit_gib:g} GiB memory ceiling"}, peak / 2**30
    if proc.returncode:  # e.g. killed by the OOM killer: keep the peak it reached
        return {"failed": proc.returncode}, peak / 2**30
    return json.loads(stdout.strip().splitlines()[-1]), peak / 2**30


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", type=int, default=38)
    ap.add_argument("--district-scale", default="municipal")
    ap.add_argument("--steps", default="compliance,coverage,hotspots")
    ap.add_argument("--mem-limit-gib", type=float, default=18.0, help="kill a run whose process tree exceeds this RSS")
    a = ap.parse_args()
    from gis.municipal import generate_municipality, load_index

    project = WORK / f"muni_{a.districts}_{a.district_scale}"
    t0 = time.perf_counter()
    if not (project / "municipality.yaml").exists():
        generate_municipality(project, seed=11, districts=a.districts, district_scale=a.district_scale, workers=2)
    gen_s = time.perf_counter() - t0
    counts = load_index(project)["counts"]
    rows = {}
    for engine in ("single", "dask"):
        rows[engine] = _run(engine, project, WORK / f"muni_out_{engine}", a.steps, a.mem_limit_gib)
        print(engine, rows[engine][0].get("wall_s", rows[engine][0]), rows[engine][1], flush=True)
        (WORK / f"scale_{a.districts}_{a.district_scale}_{engine}.json").write_text(
            json.dumps({"counts": counts, "gen_s": gen_s, "result": rows[engine][0], "peak_gib": rows[engine][1]},
                       ensure_ascii=False, default=str), encoding="utf-8")
    failed = [e for e, r in rows.items() if "failed" in r[0]]
    if failed:
        raise SystemExit(f"{', '.join(failed)} run failed: {[rows[e] for e in failed]}; RESULTS.md not updated")
    same = rows["single"][0]["municipal"] == rows["dask"][0]["municipal"]
    s, d = rows["single"], rows["dask"]
    md = f"""## Municipal scale: single process vs Dask (`bench_scale.py`)

{machine()}. Sample actually run: **{a.districts} districts** at district scale `{a.district_scale}` —
{counts['sites']:,} sites, {counts['incidents']:,} incidents, {counts['population_cells']:,} population cells
(generation {gen_s:.0f} s{' (cached)' if gen_s < 5 else ''}). Pipeline steps per district: `{a.steps}`; then the cross-border
municipal analyses (四山 overlay, coverage, hex Gi*, DBSCAN) and the roll-up.
Dask: `LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")`.
Peak memory = largest summed RSS of the process tree (workers included), sampled every 0.2 s.

| engine | wall time (s) | districts (s) | municipal (s) | peak memory (GiB) |
|---|---:|---:|---:|---:|
| single process | {s[0]['wall_s']:.1f} | {s[0]['timings']['districts']:.1f} | {s[0]['timings']['municipal']:.1f} | {s[1]:.2f} |
| dask, 2 workers | {d[0]['wall_s']:.1f} | {d[0]['timings']['districts']:.1f} | {d[0]['timings']['municipal']:.1f} | {d[1]:.2f} |

Ratio single/dask wall time: {s[0]['wall_s'] / d[0]['wall_s']:.2f}. Municipal summaries equal: **{same}**.
Target of issue 7 (≥ 200k sites, ≥ 2M incidents, ≥ 10M cells; < 30 min, < 12 GiB):
{'met by this run' if counts['sites'] >= 200_000 and counts['incidents'] >= 2_000_000 and counts['population_cells'] >= 10_000_000 else '**not measured at that size** — this run is smaller; no figure here is extrapolated'}.
"""
    write_section("scale", md)
    print(md)


if __name__ == "__main__":
    main()
