"""Memory per Dask worker as the number of districts grows (the ``bench:scale`` curve).

Usage: ``python -m benchmarks.bench_scale_curve [--districts 4,8,16] [--worker-memory-gib G]
[--mem-limit-gib C] [--from-municipality DIR] [--engines single,dask] [--report-only]``.

``--engines single`` runs one engine only and keeps the other's saved figures (so the
single-process peak can be known before the per-worker limit is chosen); the outputs are
compared once both engines have run on the same sample.

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
import sys
from pathlib import Path

from benchmarks._common import WORK, load_note, machine, run_sampled, write_section

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
    load = load_note()
    run = run_sampled([sys.executable, "-c", CHILD, engine, str(project), str(out), worker_mem], ceiling_gib,
                      env=env, cwd=ROOT)
    peaks = dict(run.peaks)
    client = peaks.pop(run.pid, 0) / 2**30
    others = sorted((v / 2**30 for v in peaks.values()), reverse=True)
    res = {"client_gib": client, "workers_gib": others[:2] if engine == "dask" else [], "total_gib": run.total_peak / 2**30,
           "children_gib": others, "load_before": load, "load_after": load_note()}
    if run.over or run.returncode:
        return {**res, "failed": "memory ceiling" if run.over else run.returncode}
    return {**res, **json.loads(run.stdout.strip().splitlines()[-1])}


def _tiled(n: int) -> Path:
    """``_work/tiled_<n>``: n copies of the sample district (written once)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _far_municipality import tiled_municipality

    project = WORK / f"tiled_{n}"
    if not (project / "municipality.yaml").exists():
        import shutil

        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(WORK / "elsewhere", ignore_errors=True)
        tiled_municipality(n, project)
    return project


def _subset(source: Path, n: int) -> Path:
    """``_work/sub_<name>_<n>/municipality.yaml``: the first ``n`` districts of ``source``, listed by absolute path."""
    import yaml

    from gis.municipal import district_folder, load_index

    idx = load_index(source)
    entries = [{"name": d["name"], "code": d["code"], "path": str(district_folder(idx["root"], d).resolve())} for d in idx["districts"][:n]]
    project = WORK / f"sub_{source.name}_{n}"
    project.mkdir(parents=True, exist_ok=True)
    (project / "municipality.yaml").write_text(yaml.safe_dump({"name": idx.get("name"), "sample": True, "districts": entries},
                                                              allow_unicode=True, sort_keys=False), encoding="utf-8")
    return project


def _whole_or_subset(source: Path, n: int) -> Path:
    """``source`` itself when it has ``n`` districts, else its first ``n`` (:func:`_subset`)."""
    from gis.municipal import load_index

    return source if len(load_index(source)["districts"]) == n else _subset(source, n)


def _measure(n: int, project: Path, worker_mem_gib: float, ceiling: float, engines: tuple[str, ...], previous: dict | None) -> dict:
    """Run ``engines`` (the other engine's figures are kept from ``previous``); compare every output when both ran."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _dask_compare import assert_same_outputs

    outs = {e: WORK / f"{project.name}_out_{e}" for e in ("single", "dask")}
    runs = {e: (previous or {}).get(e, {"failed": "not run"}) for e in ("single", "dask")}
    runs.update({e: _run(e, project, outs[e], f"{worker_mem_gib}GiB", ceiling) for e in engines})
    if "dask" not in engines and previous:
        worker_mem_gib = previous.get("worker_memory_gib", worker_mem_gib)
    same = None
    if not any("failed" in r for r in runs.values()):
        try:
            same = assert_same_outputs(outs["single"], outs["dask"])
        except AssertionError as exc:
            same = f"differ: {str(exc)[:200]}"
        runs["summaries_equal"] = runs["single"]["municipal"] == runs["dask"]["municipal"]
    return {"n": n, "sample": project.name, "worker_memory_gib": worker_mem_gib, "tables_equal": same, "commit": _commit(), **runs}


def _commit() -> str | None:
    """The code measured: ``git rev-parse --short HEAD``, or a snapshot's ``COMMIT`` file."""
    import subprocess

    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        f = ROOT / "COMMIT"
        return f.read_text().strip() if f.exists() else None


#: The previous round's 38-district measurement (gathering engine), kept as history only.
PREVIOUS_38 = """### History: 38 districts, previous engine (gathered every layer on the client)

Measured in an earlier round, on an engine that no longer exists; kept for the record, not comparable with the rows
above (different steps, peak summed over the whole process tree). 38 districts at district scale `municipal` —
238,816 sites, 2,164,350 incidents, 13,300,000 population cells; steps `compliance,coverage,hotspots` per district,
then the municipal analyses and one merged `municipal_analysis.gpkg`. Single process 1128.0 s, peak 7.77 GiB;
Dask (2 workers, no memory limit) 742.8 s, peak 7.77 GiB (summed process tree): the client gathered every cell and
incident, so the peak was the same in both engines."""


def _label(r: dict) -> str:
    """The sample's name in the table: the saved label, else the folder name without its district count."""
    return r.get("label") or r.get("sample", f"tiled_{r['n']}").rsplit("_", 1)[0]


def _size(r: dict) -> str:
    m = r["single"].get("municipal") or {}
    cells = m.get("population_cells")
    return f"{m.get('sites', 0):,} / {m.get('incidents', 0):,} / {cells:,}" if cells is not None else f"{m.get('sites', 0):,} / {m.get('incidents', 0):,} / —"


def _row(r: dict) -> str:
    s, d = r["single"], r["dask"]
    eq = (f"{r['tables_equal']} tables; summaries {r.get('summaries_equal')}" if isinstance(r["tables_equal"], int)
          else str(r["tables_equal"] or d.get("failed") or s.get("failed")))
    below = "yes" if 2 * r["worker_memory_gib"] < s.get("client_gib", 0) else "**no**"
    return (f"| {_label(r)} | {r['n']} | {_size(r)} | {s.get('wall_s', float('nan')):.1f} "
            f"| {s.get('client_gib', float('nan')):.2f} | {d.get('wall_s', float('nan')):.1f} | {d.get('client_gib', float('nan')):.2f} "
            f"| {' / '.join(f'{w:.2f}' for w in d.get('workers_gib', []))} | {r['worker_memory_gib']:g} | {below} | {eq} |")


def report(results: list[dict]) -> str:
    """The ``bench:scale`` section: the curve per sample and the limited 38-district run, then the history."""
    lines = [
        "## Municipal scale: memory per Dask worker as the district count grows (`bench_scale_curve.py`)",
        "",
        f"{machine()}; the machine was shared with other engineers' jobs during these runs (load averages of the "
        "38-district runs below; earlier rows 7–10 on 2 cores), so wall times are inflated and only indicative; memory is "
        "not affected by the load. Municipal analyses only (`steps=[]`): staging, 四山 overlay, coverage, hex Gi*, DBSCAN "
        "across borders, per-district GeoParquet + GeoPackage outputs, nothing gathered. Samples: `tiled_<n>` = copies of "
        "the sample district laid in rows near Ürümqi (files in EPSG:4326 / UTM 45N / GCJ-02 in turn); "
        "`sub_muni_8_municipal_<n>` = the first n districts of an 8-district `municipal`-scale mosaic (`gis sample --scale "
        "municipality --district-scale municipal`), listed by absolute path; `muni_38_municipal` = the 38-district "
        "`municipal`-scale mosaic (`gis.sample.mosaic.generate_municipality(seed=11, districts=38)`, as `bench_scale.py` "
        "writes it), `sub_muni_38_municipal_<n>` its first n districts. *cells*: population cells with people (what the analyses use; the generator's raster count, empty cells included, is larger: 13,832,000 for `muni_38_municipal`). Dask: `LocalCluster(2 workers × 1 thread, 127.0.0.1, memory_limit=` the stated limit per worker`)`. "
        "Peaks: psutil RSS per process, sampled every 0.2 s (single: the one process; dask: the client process and each "
        "worker process). *Outputs equal*: every GeoParquet partition and every GeoPackage layer of the Dask run equals "
        "the single-process run's, row by row and exactly (`tests/_dask_compare.assert_same_outputs`), and the municipal "
        "summaries are equal. One run each.",
        "",
        "| sample | districts | sites / incidents / cells | single: wall (s) | single: peak (GiB) | dask: wall (s) "
        "| dask: client peak (GiB) | dask: worker peaks (GiB) | limit per worker (GiB) | 2 × limit < single peak | outputs equal |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    order = sorted(results, key=lambda x: (_label(x), x["n"]))
    lines += [_row(r) for r in order]
    return "\n".join(lines) + "\n\n" + _findings(order) + "\n\n" + PREVIOUS_38 + "\n"


def _limited(rows: list[dict]) -> str:
    """The runs whose two worker limits together are below the single-process peak, from their figures."""
    met = [r for r in rows if "failed" not in r["dask"] and 2 * r["worker_memory_gib"] < r["single"].get("client_gib", 0)]
    if not met:
        return ("**Not shown**: in no run here are the two workers' limits together below the single-process peak, "
                "and no figure is extrapolated.")
    out = []
    for r in met:
        d, s = r["dask"], r["single"]
        kids = sorted(d.get("children_gib", []), reverse=True)
        extra = ([f"{len(kids)} child processes seen in all (so no worker was restarted), the others ≤ {kids[2]:.2f} GiB"]
                 if len(kids) > 2 else [f"{len(kids)} child processes seen (no worker restarted)"] if kids else [])
        out.append(f"`{_label(r)}`, {r['n']} districts" + (f" (code at commit {r['commit']})" if r.get("commit") else "") + f": two workers limited to {r['worker_memory_gib']:g} GiB each "
                   f"(together {2 * r['worker_memory_gib']:g} GiB < the single process's {s['client_gib']:.2f} GiB peak) completed in "
                   f"{d['wall_s']:.1f} s (single {s['wall_s']:.1f} s) with worker peaks {' / '.join(f'{w:.2f}' for w in d['workers_gib'])} GiB, "
                   f"client {d['client_gib']:.2f} GiB" + (f", {extra[0]}" if extra else "")
                   + f"; outputs equal: {r['tables_equal']} tables, summaries {r.get('summaries_equal')}. "
                   f"Load averages (1/5/15 min, {os.cpu_count()} cores), before → after: single {_load(s)}; dask {_load(d)}.")
    return " ".join(out)


def _load(run: dict) -> str:
    """``a / b / c → d / e / f``: the load averages recorded before and after a run."""
    import re

    nums = [re.findall(r"\d+\.\d+", run.get(k, "")) for k in ("load_before", "load_after")]
    return " → ".join(" / ".join(v) or "?" for v in nums)


def _findings(rows: list[dict]) -> str:
    """What the table shows and does not show, from the figures themselves."""
    done = [r for r in rows if "failed" not in r["dask"]]
    client = max(r["dask"]["client_gib"] for r in done)
    worst = max(max(r["dask"]["workers_gib"] or [0.0]) for r in done)
    by = {}
    for r in done:
        by.setdefault(_label(r), []).append(r)
    curves = "; ".join(f"`{k}`: " + ", ".join(f"{r['n']} → {max(r['dask']['workers_gib'] or [0.0]):.2f}" for r in sorted(v, key=lambda x: x["n"]))
                       for k, v in by.items())
    slower = sum(r["dask"].get("wall_s", 0) > r["single"].get("wall_s", 0) for r in done)
    return (f"Client peak at most {client:.2f} GiB in every Dask run (target < 1.5 GiB): it holds a few numbers per district. "
            f"Largest worker peak per district count (districts → GiB): {curves}; the largest worker peak of all is {worst:.2f} GiB. "
            f"Every worker peak is {'below' if all(max(r['dask']['workers_gib'] or [0.0]) < r['worker_memory_gib'] for r in done) else '**not** below'} "
            "its run's limit. " + _limited(done)
            + f" Dask was slower than one process in {slower} of {len(done)} runs (staging to Parquet, the Gi* grid recomputed "
            "in three passes, task overhead, two cores shared with other jobs, so the wall times are noisy); the point "
            "measured here is memory, not speed.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--districts", default="4,8,16")
    ap.add_argument("--worker-memory-gib", type=float, default=1.0)
    ap.add_argument("--mem-limit-gib", type=float, default=6.0, help="kill a run whose process tree exceeds this RSS")
    ap.add_argument("--from-municipality", type=Path, default=None,
                    help="measure the first n districts of this municipality (listed by absolute path) instead of tiled copies")
    ap.add_argument("--engines", default="single,dask", help="engines to (re-)run; the other's saved figures are kept")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    saved = WORK / "scale_curve.json"
    results = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else []
    if not a.report_only:
        for n in [int(v) for v in a.districts.split(",")]:
            project = _tiled(n) if not a.from_municipality else _whole_or_subset(a.from_municipality, n)
            prev = next((x for x in results if (x["n"], x.get("sample")) == (n, project.name)), None)
            r = _measure(n, project, a.worker_memory_gib, a.mem_limit_gib, tuple(a.engines.split(",")), prev)
            if a.from_municipality and project == a.from_municipality:  # the whole municipality: its own name
                r["label"] = project.name
            print(json.dumps(r, default=str)[:600], flush=True)
            results = [x for x in results if (x["n"], x.get("sample")) != (n, r["sample"])] + [r]
            saved.write_text(json.dumps(results, default=str, ensure_ascii=False), encoding="utf-8")
    md = report(results)
    write_section("scale", md)
    print(md)


if __name__ == "__main__":
    main()
