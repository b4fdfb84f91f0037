"""Benchmark: the whole ``gis run`` on the bundled sample district, cold and warm cache.

What a user runs: ``python -m gis run --project data/sample_district --out OUT``
in a fresh process (imports, loading, every step, every output file). *Cold*: an
empty cache folder (``XDG_CACHE_HOME`` pointed at a new directory, so the road
graph is built from the OSM file); *warm*: the same folder again (road graph read
from its cache file). Cold and warm alternate round by round; wall time of the
process and its peak resident memory (``os.wait4`` rusage of the child) are
reported as median (min–max), with the per-step times of ``summary.json``
(``timings_s``) of the warm rounds.

Run: ``.venv/bin/python -m benchmarks.bench_run`` (a few minutes; ``BENCH_RUN_ROUNDS=1`` for one round).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import load_note, machine, span, write_section  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_RUN_ROUNDS", "3"))
ROOT = Path(__file__).resolve().parent.parent


def run_once(project: Path, out: Path, cache: Path) -> tuple[float, float, dict]:
    """One ``gis run`` process: (wall s, peak RSS MiB, summary.json)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "MPLCONFIGDIR": str(cache / "mpl")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gis", "run", "--project", str(project), "--out", str(out),
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"gis run failed: {err.strip()[-400:]}")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return wall, usage.ru_maxrss / 1024, summary


def main() -> int:
    from gis import settings

    project = settings.SAMPLE_PROJECT_DIR
    start = load_note()
    walls: dict[str, list[float]] = {"cold": [], "warm": []}
    rss: dict[str, list[float]] = {"cold": [], "warm": []}
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        for r in range(ROUNDS):
            cache = Path(tmp) / f"cache{r}"
            for kind in ("cold", "warm"):  # cold fills the cache the warm run of the same round reads
                out = Path(tmp) / f"out_{kind}{r}"
                wall, peak, summary = run_once(project, out, cache)
                walls[kind].append(wall)
                rss[kind].append(peak)
                if kind == "warm":
                    for name, sec in (summary.get("timings_s") or {}).items():
                        steps.setdefault(name, []).append(float(sec))
                shutil.rmtree(out, ignore_errors=True)
                print(kind, f"{wall:.2f} s", f"{peak:.0f} MiB", flush=True)
    write_section("run", report(walls, rss, steps, start))
    return 0


def report(walls: dict[str, list[float]], rss: dict[str, list[float]], steps: dict[str, list[float]],
           start: str) -> str:
    lines = [
        "## Whole `gis run` on the bundled sample (`benchmarks/bench_run.py`)",
        "",
        f"`python -m gis run --project data/sample_district --out OUT --quiet` in a fresh process, every step and "
        f"output file included. {machine()}; {ROUNDS} rounds, cold (empty cache folder: road graph built from "
        f"`roads.osm`) and warm (road graph from its cache file) alternating; median (min–max). Shared machine: "
        f"{start} at the start, {load_note()} at the end.",
        "",
        "| run | wall (s) | peak RSS (MiB) |",
        "|---|---:|---:|",
    ]
    for kind in ("cold", "warm"):
        lines.append(f"| {kind} cache | {span(walls[kind])} | {statistics.median(rss[kind]):.0f} |")
    lines += ["", "Per step, warm runs (`timings_s` of `summary.json`), median seconds:", "",
              "| step | s |", "|---|---:|"]
    for name, ts in steps.items():
        lines.append(f"| {name} | {statistics.median(ts):.2f} |")
    cold, warm = statistics.median(walls["cold"]), statistics.median(walls["warm"])
    total = sum(statistics.median(ts) for ts in steps.values()) or 1.0
    if "maps" in steps:
        lines += ["", f"The maps step is {100 * statistics.median(steps['maps']) / total:.0f} % of the steps' time: "
                  "`map.html`, `map.png` and `map_sheets/` (the overview and one sheet per 镇街, each saved as PNG "
                  "and as a PDF page). A cProfile of it (this round) puts the time in matplotlib's text layout of "
                  "the CJK labels and legends (FreeType `set_text`, the wrapped footer), PNG encoding and the PDF's "
                  "font subsetting, not in this toolkit's code. `sheets.enabled: false` in `layers/map.yaml` (or a "
                  "district's `map:` section) leaves the sheets out of `gis run`."]
    lines += ["", f"Issue 15 targets (< 10 s warm, < 20 s cold on 2 cores): warm {'met' if warm < 10 else 'not met'} "
              f"({warm:.1f} s), cold {'met' if cold < 20 else 'not met'} ({cold:.1f} s)."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
