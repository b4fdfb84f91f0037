"""Browser-driven timing and memory of the map app (``app.py``) on a 1,000,000-row site ledger.

Issue 15 asks that the app stay responsive at a million sites (point layers over
``max_page_points`` drawn as count grids, never a page of every site). This drives the
app as :mod:`benchmarks.bench_app` does (headless Chromium, ``streamlit run app.py`` on
127.0.0.1, the same waits and slider steps), on the project of
:mod:`benchmarks.bench_ledger_1m` (the sample's ledger repeated to 1,000,000 rows) opened
through ``GIS_PROJECT``:

* cold start to the first drawn map (base layers) and to the full map (every analysis
  layer), and the Leaflet features on the full map;
* service-radius and k slider steps (``--rounds`` each);
* peak PSS (proportional set size, so pages shared by forked workers count once) summed
  over the app's processes (the Streamlit server and its workers), sampled every second.

Writes the ``bench:app_1m`` section of RESULTS.md. No target of its own beyond the page's
size: the sample's targets (``bench:app``) are for a district of hundreds of sites.

    python -m benchmarks.bench_app_1m --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_app  # noqa: E402
from benchmarks._common import machine, write_section  # noqa: E402
from benchmarks.bench_ledger_1m import ROWS, build_project  # noqa: E402


def app_pss_kib() -> int:
    """PSS (KiB) summed over this machine's Streamlit server processes and their ``gis`` workers."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"streamlit" not in cmd and b"gis." not in cmd and b"multiprocessing" not in cmd:
                continue
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:  # the process ended while it was read
            continue
    return total


class PeakPss:
    """Samples :func:`app_pss_kib` every second on a thread; ``peak_mib`` after ``stop``."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, app_pss_kib())
            self._stop.wait(1.0)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


def measure(project: Path, rounds: int) -> dict[str, Any]:
    """Cold start and slider steps of the app opened on ``project``, with the peak PSS."""
    from playwright.sync_api import sync_playwright

    plain_env = bench_app._env
    bench_app._env = lambda cache: {**plain_env(cache), "GIS_PROJECT": str(project)}
    profile = tempfile.mkdtemp(prefix="gis-bench-chromium-")
    pss = PeakPss()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=str(bench_app.CHROMIUM), headless=True, viewport={"width": 1366, "height": 900},
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                first, full, features = bench_app.cold_start(browser)
                print(f"cold start: first map {first:.1f} s, full map {full:.1f} s ({features} features)", flush=True)
                radius, k = bench_app.changes(browser, rounds)
            finally:
                browser.close()
    finally:
        bench_app._env = plain_env
        peak = pss.stop()
        shutil.rmtree(profile, ignore_errors=True)
    return {"first": first, "full": full, "features": features, "radius": radius, "k": k, "pss_mib": peak}


def report(m: dict[str, Any], load_before: float) -> str:
    def span(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"

    return "\n".join([
        "## The app on a 1,000,000-row site ledger (`benchmarks/bench_app_1m.py`)",
        "",
        f"The project of `bench_ledger_1m` ({ROWS:,} ledger rows) opened in the app through `GIS_PROJECT`, driven "
        f"as `bench:app` drives the sample (headless Chromium, the same waits and slider steps); {machine()}; "
        f"1-min load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} at the end (the benchmark's "
        f"own server and browser). One cold start; {len(m['radius'])} steps of each slider.",
        "",
        "| measure | seconds (median, range) |",
        "|---|---|",
        f"| cold start to first drawn map (base layers, sites as count grids) | {m['first']:.1f} |",
        f"| cold start to full map (every analysis layer) | {m['full']:.1f} |",
        f"| service-radius slider step (50 m) | {span(m['radius'])} |",
        f"| k new sites slider step | {span(m['k'])} |",
        "",
        f"Full map: {m['features']:,} Leaflet features in the page (point layers over `max_page_points` are count "
        f"grids). Peak PSS of the app's processes (server and workers, shared pages counted once): "
        f"{m['pss_mib']:,.0f} MiB.",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_app_1m_") as tmp:
        project = build_project(Path(tmp) / "project", ROWS)
        m = measure(project, args.rounds)
    text = report(m, load_before)
    print(text)
    if not args.no_write:
        write_section("app_1m", text)


if __name__ == "__main__":
    main()
