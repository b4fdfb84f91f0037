"""Memory per Dask worker as the number of districts grows (the ``bench:scale`` curve).

Usage: ``python -m benchmarks.bench_scale_curve [--districts 4,8,16] [--worker-memory-gib G]
[--mem-limit-gib C] [--report-only]``.

For each district count *n*, writes ``_work/tiled_<n>/`` (copies of the sample district
laid in rows, files in EPSG:4326, UTM and GCJ-02 in turn: ``tests/_far_municipality.py``)
and runs the municipal analyses (``steps=[]``: 四山 overlay, coverage, hex Gi*, DBSCAN
across borders, outputs written per district) once in one process and once on a
2-worker ``LocalCluster`` whose workers are limited to ``--worker-memory-gib`` each
(Dask pauses, spills and finally restarts a worker past its limit). Every process of the
run's tree is sampled every 0.2 s (psutil RSS): the client (the run's own process) and
each worker separately. Every output file of the two engines is compared
(``tests/_dask_compare.assert_same_outputs``). Nothing is extrapolated.
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

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, time
from gis.parallel import local_client, run_municipality
engine, project, out, mem = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if __name__ == "__main__":
    t = time.perf_counter()
    client = local_client(2, 1, memory_limit=mem) if engine == "dask" else None
    try:
        res = run_municipality(project, out, engine=engine, client=client, steps=[])
    finally:
        if client is not None:
            cl = client.cluster; client.close(); cl.close()
    print(json.dumps({"wall_s": time.perf_counter() - t, "timings": res["timings_s"], "municipal": res["municipal"]}, ensure_ascii=False, default=str))
"""


def _run(engine: str, project: Path, out: Path, worker_mem: str, ceiling_gib: float) -> dict:
    """One engine in its own process group; per-process peak RSS; killed past ``ceiling_gib`` in total."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, engine, str(project), str(out), worker_mem],
                            stdout=subprocess.PIPE, text=True, start_new_session=True, env=env, cwd=ROOT)
    peaks: dict[int, int] = {}
    total_peak, over = 0, False
    stop = threading.Event()

    def sample() -> None:
        nonlocal total_peak, over
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    rss = p.memory_info().rss
                    peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
                    total += rss
            except psutil.Error:
                pass
            total_peak = max(total_peak, total)
            if total_peak > ceiling_gib * 2**30 and not over:
                over = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    stop.set()
    th.join()
    client = peaks.pop(proc.pid, 0) / 2**30
    others = sorted((v / 2**30 for v in peaks.values()), reverse=True)
    res = {"client_gib": client, "workers_gib": others[:2] if engine == "dask" else [], "total_gib": total_peak / 2**30}
    if over or proc.returncode:
        return {**res, "failed": "memory ceiling" if over else proc.returncode}
    return {**res, **json.loads(stdout.strip().splitlines()[-1])}


def _measure(n: int, worker_mem_gib: float, ceiling: float) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from _dask_compare import assert_same_outputs
    from _far_municipality import tiled_municipality

    project = WORK / f"tiled_{n}"
    t0 = time.perf_counter()
    if not (project / "municipality.yaml").exists():
        import shutil

        shutil.rmtree(WORK / f"tiled_{n}", ignore_errors=True)
        shutil.rmtree(WORK / "elsewhere", ignore_errors=True)
        tiled_municipality(n, project)
    gen = time.perf_counter() - t0
    runs = {e: _run(e, project, WORK / f"tiled_{n}_out_{e}", f"{worker_mem_gib}GiB", ceiling) for e in ("single", "dask")}
    same = None
    if not any("failed" in r for r in runs.values()):
        try:
            same = assert_same_outputs(WORK / f"tiled_{n}_out_single", WORK / f"tiled_{n}_out_dask")
        except AssertionError as exc:
            same = f"differ: {str(exc)[:200]}"
        runs["summaries_equal"] = runs["single"]["municipal"] == runs["dask"]["municipal"]
    return {"n": n, "gen_s": gen, "worker_memory_gib": worker_mem_gib, "tables_equal": same, **runs}


def report(results: list[dict]) -> str:
    """The curve's Markdown (part of the ``bench:scale`` section)."""
    lines = [
        "### Memory per worker as the district count grows (no gathering; `bench_scale_curve.py`)",
        "",
        f"{machine()}; the machine was shared by six engineers' jobs (load average 8–10 on 2 cores) during these runs, "
        "so wall times are inflated and only indicative. Municipal analyses only (`steps=[]`): staging, 四山 overlay, "
        "coverage, hex Gi*, DBSCAN across borders, per-district GeoParquet + GeoPackage outputs. Districts: copies of "
        "the sample district (`data/sample_district`, ~346 sites and ~734 incidents each) laid in rows near Ürümqi, "
        "files in EPSG:4326 / UTM 45N / GCJ-02 in turn. Dask: `LocalCluster(2 workers × 1 thread, 127.0.0.1, "
        "memory_limit=` per worker as stated`)`. Peaks: psutil RSS sampled every 0.2 s per process.",
        "",
        "| districts | single: wall (s) | single: peak (GiB) | dask: wall (s) | dask: client peak (GiB) | dask: worker peaks (GiB) | worker limit (GiB) | outputs equal |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s, d = r["single"], r["dask"]
        eq = (f"{r['tables_equal']} tables, summaries {r.get('summaries_equal')}" if isinstance(r["tables_equal"], int) else str(r["tables_equal"]))
        lines.append(f"| {r['n']} | {s.get('wall_s', float('nan')):.1f} | {s['client_gib']:.2f} | {d.get('wall_s', float('nan')):.1f} | "
                     f"{d['client_gib']:.2f} | {' / '.join(f'{w:.2f}' for w in d['workers_gib'])} | {r['worker_memory_gib']:g} | {eq} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", default="4,8,16")
    ap.add_argument("--worker-memory-gib", type=float, default=1.0)
    ap.add_argument("--mem-limit-gib", type=float, default=6.0, help="kill a run whose process tree exceeds this RSS")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    saved = WORK / "scale_curve.json"
    results = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else []
    if not a.report_only:
        for n in [int(v) for v in a.districts.split(",")]:
            r = _measure(n, a.worker_memory_gib, a.mem_limit_gib)
            print(json.dumps(r, default=str)[:600], flush=True)
            results = [x for x in results if x["n"] != n] + [r]
            saved.write_text(json.dumps(sorted(results, key=lambda x: x["n"]), default=str, ensure_ascii=False), encoding="utf-8")
    print(report(sorted(results, key=lambda x: x["n"])))


if __name__ == "__main__":
    main()
