"""Benchmarks: our code against the named peer library, same input, same process.

Run all with ``python -m benchmarks`` (or ``make bench``); each ``bench_*.py`` also runs
alone (``python benchmarks/bench_hotspots.py``). Results go to ``benchmarks/RESULTS.md``.
"""
