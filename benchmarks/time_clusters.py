"""Time the default cluster detector against an earlier commit's, alternating, on one sample.

Run ``.venv/bin/python benchmarks/time_clusters.py --base COMMIT [--scale city] [--rounds 2]``.
The earlier commit's ``gis/`` and ``layers/`` are extracted with ``git archive`` into a
temporary folder; every round runs, each in its own process on the same incidents,
:func:`gis.hotspots.find_clusters` with the layers' defaults from this checkout, from the
earlier commit, and DBSCAN (the first default of ``benchmarks/bench_clusters.py``) from
this checkout. Alternating spreads the load of a shared machine over both checkouts;
the process's CPU time (all its threads) is printed beside the wall time, as it depends
less on the other jobs of a shared machine, and the load average with every run. Prints one line per run (nothing is written).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DBSCAN = "DBSCAN (first default: min 5, k-distance eps)"
DEFAULT = "scan, mixture (default)"

#: One timed run, in a fresh process: argv = code root, method label, sample folder.
RUN = r"""
import os, sys, time, warnings
warnings.simplefilter("ignore")
root, label, folder = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
sys.path.insert(1, {here!r})
import gis
assert gis.__file__.startswith(root), gis.__file__
from gis import hotspots
from gis.district import load_district
from benchmarks.bench_clusters import METHODS
d = load_district(folder)
base = hotspots.cluster_params()
scan, sig, other = METHODS[label]
over = {{"scan": {{**base["scan"], **scan, "mixture": {{**base["scan"]["mixture"], **scan.get("mixture", {{}})}}}},
        "significance": {{**base["significance"], **sig}}, **other}}
t, c = time.perf_counter(), time.process_time()
res = hotspots.find_clusters(d.incidents, zones=d.zones, **over)
dt, dc = time.perf_counter() - t, time.process_time() - c
print(f"| {{root}} | {{label}} | {{len(res.clusters):,}} | {{dt:.1f}} s | {{dc:.1f}} s | {{os.getloadavg()[0]:.1f}} |", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="earlier commit whose default detector is timed")
    ap.add_argument("--scale", default="city")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work")
    args = ap.parse_args()
    from benchmarks.bench_clusters import sample_folder

    folder = str(sample_folder(args.scale, args.work))
    code = RUN.format(here=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base, "gis", "layers"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        print("| code | method | clusters | wall time | CPU time | load (1 min) |\n|---|---|---:|---:|---:|---:|", flush=True)
        for _ in range(args.rounds):
            for root, label in ((str(ROOT), DEFAULT), (tmp, DEFAULT), (str(ROOT), DBSCAN)):
                subprocess.run([sys.executable, "-c", code, root, label, folder], check=True, cwd=tmp)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
