"""Benchmark: a 1,000,000-row site ledger (台账) through ``gis validate`` and ``gis run``.

The ledger is built from the bundled sample: its rows repeated with fresh site ids
(``<id>-<k>``) and their coordinates moved by up to ``JITTER_DEG`` degrees (a few
hundred metres), written in the sample's own encoding (GB18030) into a copy of the
sample project. Each command runs in a fresh process, killed after ``TIMEOUT_S``;
wall time and peak resident memory (``os.wait4`` rusage of the child: the largest of the
command's process and of each child it waited for, not their sum) are reported. Where
``/proc`` exists, the command's process is also sampled every ``SAMPLE_S`` seconds: its
resident size, and the proportional set size (PSS: a page shared by k processes counts
1/k in each) summed over it and its children — the memory the whole command holds; the
``gis run`` section gives both at each step's end (located with the run's own
``summary.json`` timings). Issue 15's target: each under 3 min and 4 GiB.

Run: ``.venv/bin/python -m benchmarks.bench_ledger_1m`` (``BENCH_LEDGER_ROWS``,
``BENCH_LEDGER_TIMEOUT_S`` and ``BENCH_LEDGER_STEPS`` — e.g. ``compliance`` — to
change the size, the time limit or the steps of ``gis run``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks._common import load_note, machine, write_section  # noqa: E402

ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "1000000"))
TIMEOUT_S = float(os.environ.get("BENCH_LEDGER_TIMEOUT_S", "900"))
STEPS = os.environ.get("BENCH_LEDGER_STEPS", "")
JITTER_DEG = 0.003
SAMPLE_S = 1.0
ROOT = Path(__file__).resolve().parent.parent
LEDGER = "sites_ledger.csv"
ENCODING = "gb18030"


def build_project(target: Path, rows: int, seed: int = 0) -> Path:
    """A copy of the sample project whose site ledger has ``rows`` rows."""
    from gis import settings

    shutil.copytree(settings.SAMPLE_PROJECT_DIR, target)
    base = pd.read_csv(target / LEDGER, encoding=ENCODING, dtype=str, keep_default_na=False)
    reps = -(-rows // len(base))
    big = pd.concat([base] * reps, ignore_index=True).iloc[:rows].copy()
    k = np.arange(rows) // len(base)
    id_col, lon_col, lat_col = base.columns[0], base.columns[-2], base.columns[-1]
    big[id_col] = big[id_col].to_numpy(dtype=object) + np.where(k > 0, "-" + k.astype(str), "")
    rng = np.random.default_rng(seed)
    for col in (lon_col, lat_col):
        v = pd.to_numeric(big[col], errors="coerce").to_numpy()
        moved = np.where(k > 0, v + rng.uniform(-JITTER_DEG, JITTER_DEG, rows), v)
        big[col] = np.where(np.isfinite(moved), np.char.mod("%.7f", np.nan_to_num(moved)), big[col].to_numpy())
    big.to_csv(target / LEDGER, index=False, encoding=ENCODING)
    return target


def _proc_kib(pid: int, path: str, key: str) -> int:
    """A ``key:`` line (kB) of ``/proc/<pid>/<path>``, 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                kids = []
            out += kids
            todo += kids
    return out


def sample_memory(pid: int, stop: threading.Event, samples: list[tuple[float, float, float]]) -> None:
    """Every ``SAMPLE_S``: (seconds since start, RSS of ``pid`` MiB, PSS of ``pid`` and its children MiB)."""
    t0 = time.perf_counter()
    while not stop.wait(SAMPLE_S):
        rss = _proc_kib(pid, "status", "VmRSS:")
        pss = sum(_proc_kib(p, "smaps_rollup", "Pss:") for p in [pid, *_children(pid)])
        if rss:
            samples.append((time.perf_counter() - t0, rss / 1024, pss / 1024))


def run_cli(args: list[str], env: dict[str, str],
            samples: list[tuple[float, float, float]] | None = None) -> tuple[float, float, str]:
    """One ``python -m gis …`` process: (wall s, peak RSS MiB, outcome); ``samples`` filled by :func:`sample_memory`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gis", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(TIMEOUT_S, proc.kill)
    timer.start()
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(proc.pid, stop, samples if samples is not None else []))
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    sampler.join()
    timer.cancel()
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
    outcome = "ok" if code == 0 else (f"killed after {TIMEOUT_S:.0f} s" if code < 0 else
                                      f"exit {code}: {err[-1][:160] if err else ''}")
    return wall, usage.ru_maxrss / 1024, outcome


def main() -> int:
    start = load_note()
    with tempfile.TemporaryDirectory(prefix="bench_ledger_") as tmp:
        t0 = time.perf_counter()
        project = build_project(Path(tmp) / "project", ROWS)
        t_build = time.perf_counter() - t0
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache"), "MPLCONFIGDIR": str(Path(tmp) / "mpl")}
        results = []
        validate = ["validate", "--project", str(project)]
        vsamples: list[tuple[float, float, float]] = []
        results.append(("gis validate", *run_cli(validate, env, vsamples), _peak_pss(vsamples)))
        print(results[-1], flush=True)
        run = ["run", "--project", str(project), "--out", str(Path(tmp) / "out"), "--quiet"]
        if STEPS:
            run += ["--steps", STEPS]
        samples: list[tuple[float, float, float]] = []
        results.append((f"gis run{' --steps ' + STEPS if STEPS else ''}", *run_cli(run, env, samples), _peak_pss(samples)))
        print(results[-1], flush=True)
        html = Path(tmp) / "out" / "map.html"
        html_mib = html.stat().st_size / 2**20 if html.exists() else None
        sheets = _workbook_sheets(Path(tmp) / "out" / "problem_ledger.xlsx")
        summary = Path(tmp) / "out" / "summary.json"
        timings = json.loads(summary.read_text(encoding="utf-8")).get("timings_s", {}) if summary.exists() else {}
    steps = step_memory(timings, results[-1][1], samples)
    write_section("ledger_1m", report(results, t_build, html_mib, start, sheets, steps))
    return 0


def _peak_pss(samples: list[tuple[float, float, float]]) -> float | None:
    """Largest sampled PSS of a command's processes (MiB), None without samples."""
    return max(s[2] for s in samples) if samples else None


def step_memory(timings: dict[str, float], wall: float,
                samples: list[tuple[float, float, float]]) -> list[tuple[str, float, float, float, float]]:
    """Per step of the run: (name, seconds, peak RSS MiB, peak tree PSS MiB, RSS at its end MiB).

    The steps ran one after another and ended with the run, so the first step starts at
    ``wall`` minus their sum (process start and district load before it, as ``"start + load"``).
    A step that ran in a worker (``hotspots``) is reported with the time its result was taken in.
    """
    if not timings or not samples:
        return []
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    pss = np.array([s[2] for s in samples])
    edges = [max(wall - sum(timings.values()), 0.0)]
    names = ["start + load"]
    for name, sec in timings.items():
        edges.append(edges[-1] + sec)
        names.append(name)
    rows, lo = [], 0.0
    for name, hi in zip(names, edges):
        inside = (t >= lo) & (t <= hi + SAMPLE_S)
        if inside.any():
            end = int(np.flatnonzero(inside)[-1])
            rows.append((name, hi - lo, float(rss[inside].max()), float(pss[inside].max()), float(rss[end])))
        lo = hi
    return rows


def _workbook_sheets(path: Path) -> list[tuple[str, str]] | None:
    """``(sheet name, used range)`` of each sheet of an .xlsx (read from the package, not loaded)."""
    import re
    import zipfile

    if not path.exists():
        return None
    with zipfile.ZipFile(path) as z:
        names = re.findall(r'<sheet [^>]*name="([^"]+)"', z.read("xl/workbook.xml").decode("utf-8"))
        dims = []
        for k in range(1, len(names) + 1):
            with z.open(f"xl/worksheets/sheet{k}.xml") as f:
                m = re.search(rb'<dimension ref="([^"]+)"', f.read(4096))
            dims.append(m.group(1).decode() if m else "?")
    return list(zip(names, dims))


def report(results: list[tuple[str, float, float, str, float | None]], t_build: float, html_mib: float | None, start: str,
           sheets: list[tuple[str, str]] | None = None,
           steps: list[tuple[str, float, float, float, float]] | None = None) -> str:
    lines = [
        f"## A {ROWS:,}-row site ledger (`benchmarks/bench_ledger_1m.py`)",
        "",
        f"The sample's site ledger repeated to {ROWS:,} rows (fresh ids, coordinates moved by up to {JITTER_DEG}°; "
        f"built in {t_build:.0f} s), in a copy of the sample project; each command in a fresh process, killed after "
        f"{TIMEOUT_S:.0f} s. {machine()}; one run each. Shared machine: {start} at the start, {load_note()} at the "
        "end. Target (issue 15): under 3 min and 4 GiB each.",
        "",
        "| command | wall (s) | peak RSS (MiB) | peak PSS, all its processes (MiB) | outcome | target |",
        "|---|---:|---:|---:|---|---|",
    ]
    for label, wall, rss, outcome, pss in results:  # the target holds for the process and for all its processes
        met = "met" if outcome == "ok" and wall < 180 and max(rss, pss or 0.0) < 4096 else "not met"
        pss_txt = f"{pss:,.0f}" if pss is not None else "—"
        lines.append(f"| `{label}` | {wall:.1f} | {rss:,.0f} | {pss_txt} | {outcome} | {met} |")
    if html_mib is not None:
        lines += ["", f"`map.html`: {html_mib:.1f} MiB (point layers over `max_page_points` drawn as count grids)."]
    if sheets is not None:
        lines += ["", "`problem_ledger.xlsx` (问题台账) sheets and used ranges: "
                  + ", ".join(f"{n} `{d}`" for n, d in sheets) + "."]
    if steps:
        lines += ["", f"`gis run` by step (its `summary.json` timings; memory sampled every {SAMPLE_S:.0f} s: RSS of "
                  "the run's process, and PSS summed over it and its children — the map-sheet workers, the "
                  "hot-spot worker):", "",
                  "| step | s | peak RSS (MiB) | peak PSS, all processes (MiB) | RSS at its end (MiB) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {n} | {sec:.1f} | {r:,.0f} | {p:,.0f} | {e:,.0f} |" for n, sec, r, p, e in steps]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
