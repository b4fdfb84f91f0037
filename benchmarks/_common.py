"""Shared helpers of the benchmark scripts: timing medians, peak memory, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
WORK = Path(__file__).resolve().parent / "_work"


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Median wall time (s) of ``repeat`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def peak_memory(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Peak Python-heap allocation (MiB, tracemalloc) of one call, and its result."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, result


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(topic: str, markdown: str) -> None:
    """Replace (or append) the ``<!-- bench:topic -->`` section of RESULTS.md."""
    start, end = f"<!-- bench:{topic} -->", f"<!-- /bench:{topic} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n\nMedians of repeated runs; ratios are peer time / our time. Regenerate with `make bench`.\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, RESULTS)


def alternate(fns: dict[str, Callable[[], Any]], rounds: int, warmup: bool = True) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every callable once per round, in turn, for ``rounds`` rounds (one process).

    Alternating (ours, peer, ours, peer, …) exposes both to the same background
    load on a shared machine, so the ratio of medians is fair even when the
    absolute times drift. One untimed warm-up call each first (imports, caches
    of the libraries — not of the inputs) unless ``warmup`` is false.

    Returns the per-round times (s) and the last result of each callable.
    """
    results: dict[str, Any] = {}
    if warmup:
        for name, fn in fns.items():
            results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return times, results


def med(ts: list[float]) -> float:
    """Median of per-round times."""
    return statistics.median(ts)


def span(ts: list[float]) -> str:
    """``median (min–max)`` of per-round times, in seconds."""
    return f"{statistics.median(ts):.3f} ({min(ts):.3f}–{max(ts):.3f})"


def ratio(peer: list[float], ours: list[float]) -> str:
    """Peer / ours ratio of medians, and its range over rounds (round-by-round ratios)."""
    per = [p / o for p, o in zip(peer, ours, strict=True) if o > 0]
    return f"{statistics.median(peer) / statistics.median(ours):.2f}× ({min(per):.2f}–{max(per):.2f})"


def load_note() -> str:
    """The 1/5/15-min load average now, to state the contention of a shared machine."""
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {a:.2f} / {b:.2f} / {c:.2f} (1/5/15 min) on {os.cpu_count()} cores"


class SampledRun:
    """A child process group run by :func:`run_sampled`: its output and memory peaks."""

    def __init__(self, stdout: str, returncode: int, over: bool, peaks: dict[int, int], total_peak: int, pid: int):
        self.stdout, self.returncode, self.over = stdout, returncode, over
        self.peaks, self.total_peak, self.pid = peaks, total_peak, pid


def run_sampled(cmd: list[str], ceiling_gib: float, **popen: Any) -> SampledRun:
    """Run ``cmd`` in its own process group, sampling the RSS of every process of its tree every
    0.2 s (per-process peaks and the peak of their sum); the group is killed once the sum passes
    ``ceiling_gib`` (the run then has ``over`` set)."""
    import signal
    import subprocess
    import threading

    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, **popen)
    peaks: dict[int, int] = {}
    state = {"total": 0, "over": False}
    stop = threading.Event()

    def sample() -> None:
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
            state["total"] = max(state["total"], total)
            if state["total"] > ceiling_gib * 2**30 and not state["over"]:  # stop before the machine swaps or OOMs
                state["over"] = True
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    stop.set()
    th.join()
    return SampledRun(stdout, proc.returncode, state["over"], peaks, state["total"], proc.pid)
