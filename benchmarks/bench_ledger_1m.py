"""Benchmark: a 1,000,000-row site ledger (台账) through ``gis validate`` and ``gis run``.

The ledger is built from the bundled sample: its rows repeated with fresh site ids
(``<id>-<k>``) and their coordinates moved by up to ``JITTER_DEG`` degrees (a few
hundred metres), written in the sample's own encoding (GB18030) into a copy of the
sample project. Each command runs in a fresh process, killed after ``TIMEOUT_S``;
wall time and peak resident memory (``os.wait4`` rusage of the child) are reported.
Issue 15's target: each under 3 min and 4 GiB.

Run: ``.venv/bin/python -m benchmarks.bench_ledger_1m`` (``BENCH_LEDGER_ROWS``,
``BENCH_LEDGER_TIMEOUT_S`` and ``BENCH_LEDGER_STEPS`` — e.g. ``compliance`` — to
change the size, the time limit or the steps of ``gis run``).
"""

from __future__ import annotations

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


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """One ``python -m gis …`` process: (wall s, peak RSS MiB, outcome)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gis", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    timer = threading.Timer(TIMEOUT_S, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
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
        results.append(("gis validate", *run_cli(validate, env)))
        print(results[-1], flush=True)
        run = ["run", "--project", str(project), "--out", str(Path(tmp) / "out"), "--quiet"]
        if STEPS:
            run += ["--steps", STEPS]
        results.append((f"gis run{' --steps ' + STEPS if STEPS else ''}", *run_cli(run, env)))
        print(results[-1], flush=True)
        html = Path(tmp) / "out" / "map.html"
        html_mib = html.stat().st_size / 2**20 if html.exists() else None
        sheets = _workbook_sheets(Path(tmp) / "out" / "problem_ledger.xlsx")
    write_section("ledger_1m", report(results, t_build, html_mib, start, sheets))
    return 0


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


def report(results: list[tuple[str, float, float, str]], t_build: float, html_mib: float | None, start: str,
           sheets: list[tuple[str, str]] | None = None) -> str:
    lines = [
        f"## A {ROWS:,}-row site ledger (`benchmarks/bench_ledger_1m.py`)",
        "",
        f"The sample's site ledger repeated to {ROWS:,} rows (fresh ids, coordinates moved by up to {JITTER_DEG}°; "
        f"built in {t_build:.0f} s), in a copy of the sample project; each command in a fresh process, killed after "
        f"{TIMEOUT_S:.0f} s. {machine()}; one run each. Shared machine: {start} at the start, {load_note()} at the "
        "end. Target (issue 15): under 3 min and 4 GiB each.",
        "",
        "| command | wall (s) | peak RSS (MiB) | outcome | target |",
        "|---|---:|---:|---|---|",
    ]
    for label, wall, rss, outcome in results:
        met = "met" if outcome == "ok" and wall < 180 and rss < 4096 else "not met"
        lines.append(f"| `{label}` | {wall:.1f} | {rss:,.0f} | {outcome} | {met} |")
    if html_mib is not None:
        lines += ["", f"`map.html`: {html_mib:.1f} MiB (point layers over `max_page_points` drawn as count grids)."]
    if sheets is not None:
        lines += ["", "`problem_ledger.xlsx` (问题台账) sheets and used ranges: "
                  + ", ".join(f"{n} `{d}`" for n, d in sheets) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
