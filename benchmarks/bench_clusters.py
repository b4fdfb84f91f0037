"""Evaluation harness: cluster detectors against the planted truth of generated samples.

Run ``.venv/bin/python benchmarks/bench_clusters.py [--scales small,district,city]
[--work benchmarks/_work]``. Writes its section of ``benchmarks/RESULTS.md`` (between
``<!-- bench:clusters -->`` markers). Samples: ``small`` is the bundled
``data/sample_district``; ``district`` and ``city`` are generated once with seed 42
(``python -m gis sample --scale city --out WORK/city --seed 42``) and reused;
``city:7`` is the city generated with seed 7 (held out: not looked at while choosing).

For every method of :data:`METHODS` (the first default DBSCAN, HDBSCAN with
min_cluster_size 15 / min_samples 5, the ``scan`` detector with its quick-shift trees
merged by BIC, the mixture of :mod:`gis.cluster_mixture` in space at a fit reach of 3 σ, in space and
time with places at 2 rms spreads, the previous default (places 1.75 rms, reach 4 σ, core p 0.01, a
site's σ unlimited) and it with each change of this wave (σ ≤ ``max_sigma_m`` 200 m, then also reach
3.5 σ or core p 0.05), the default with its EM accelerated by SQUAREM (``accelerate: squarem``), and
the default of ``layers/hotspots.yaml`` last; ``--methods`` picks some), all run in the same process on
the same incidents (per incident kind, as the pipeline does):

* **recall** — share of planted clusters recovered (:func:`gis.hotspots.match_planted`:
  the found cluster holding most of a planted cluster's members holds > half of
  them and its centre lies within the planted radius);
* **detectable recall** — recall over the planted clusters detectable in principle
  (:func:`gis.cluster_eval.detectable_planted`: count within 2σ vs non-cluster
  incidents of the same kind 500–1,500 m around, one-sided Poisson, BH-FDR 1 %);
* **strict precision** — share of *reported* clusters (significant at the
  ``clusters.significance`` level) that recover a planted cluster; also of every
  found cluster (flagged ones included);
* wall and CPU time (the process's, all threads) of :func:`gis.hotspots.find_clusters` (untraced) and, on samples up to
  :data:`TRACE_MAX` incidents, the peak traced memory (tracemalloc) of a second run;
* the same per *place* (:func:`gis.cluster_eval.evaluate_places`: planted sites of one kind
  closer than :data:`PLACE_SIGMAS` σ of the wider linked into one place to visit);
* detectable recall by planted size and spread (σ) and per kind (city).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
#: Samples up to this many incidents also get a traced run for peak memory (the city's would take minutes).
TRACE_MAX = 10_000
#: Planted sites closer than this many spreads are one place (two equal Gaussian sites closer than 2σ make
#: one peak): rms spreads in the reference table (:func:`gis.cluster_eval.planted_ceiling`), the wider
#: spread in the place columns (:func:`gis.cluster_eval.evaluate_places`).
PLACE_SIGMAS = 2.0
#: Reach of the true sites in the reference table: the generated sites' reports lie within 3σ of their
#: centres (truncated Gaussians, :mod:`gis.sample.incidents`).
TRUE_REACH_SIGMAS = 3.0

#: Methods compared: label -> (``clusters.scan`` overrides, ``clusters.significance`` overrides, other
#: find_clusters overrides), all over layers/hotspots.yaml.
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "DBSCAN (first default: min 5, k-distance eps)": (
        {}, {"controls": False, "background": "all"}, {"method": "dbscan", "min_cluster_size": 5}
    ),
    "HDBSCAN (min_cluster_size 15, min_samples 5)": (
        {}, {"controls": False, "background": "all"},
        {"method": "hdbscan", "min_cluster_size": 15, "hdbscan_min_samples": 5},
    ),
    "scan, BIC merge (an earlier default)": ({"merge": "bic"}, {"controls": False, "background": "all"}, {}),
    "scan, mixture (space only, reach 3σ: the default three waves ago)": (
        {"merge": "mixture", "core_p": 0.01, "mixture": {"time": False, "place_sigmas": 0.0, "reach_sigmas": 3.0,
                                                         "assign_sigmas": 3.0, "max_sigma_m": None}},
        {"controls": False, "background": "unclustered"}, {},
    ),
    "scan, space-time mixture, places 2 rms, reach 4σ (two waves ago)": (
        {"merge": "mixture", "core_p": 0.01, "mixture": {"place_sigmas": 2.0, "reach_sigmas": 4.0, "max_sigma_m": None}},
        {"controls": False, "background": "unclustered"}, {},
    ),
    "scan, space-time mixture, places 1.75 rms, reach 4σ, core p 0.01, σ unlimited (previous default)": (
        {"merge": "mixture", "core_p": 0.01, "mixture": {"reach_sigmas": 4.0, "max_sigma_m": None}},
        {"controls": False, "background": "unclustered"}, {},
    ),
    "previous default, σ ≤ 200 m": (
        {"merge": "mixture", "core_p": 0.01, "mixture": {"reach_sigmas": 4.0}},
        {"controls": False, "background": "unclustered"}, {},
    ),
    "previous default, σ ≤ 200 m, reach 3.5σ": (
        {"merge": "mixture", "core_p": 0.01}, {"controls": False, "background": "unclustered"}, {},
    ),
    "previous default, σ ≤ 200 m, core p 0.05": (
        {"merge": "mixture", "mixture": {"reach_sigmas": 4.0}}, {"controls": False, "background": "unclustered"}, {},
    ),
    "default, SQUAREM EM (max step 4)": (
        {"merge": "mixture", "mixture": {"accelerate": "squarem", "max_step": 4.0}},
        {"controls": False, "background": "unclustered"}, {},
    ),
    "scan, space-time mixture, places 1.75 rms, σ ≤ 200 m, core p 0.05, reach 3.5σ (default)": (
        {"merge": "mixture"}, {"controls": False, "background": "unclustered"}, {}
    ),
}


def timed_run(inc: Any, zones: Any, over: dict[str, Any]) -> tuple[Any, float, float]:
    """find_clusters of a method, its wall time and the process's CPU time (all threads)."""
    from gis import hotspots

    t0, c0 = time.perf_counter(), time.process_time()
    res = hotspots.find_clusters(inc, zones=zones, **over)
    return res, time.perf_counter() - t0, time.process_time() - c0


def method_overrides(label: str) -> dict[str, Any]:
    """find_clusters overrides of a method of :data:`METHODS` (nested blocks merged over the defaults)."""
    from gis.hotspots import cluster_params

    base = cluster_params()
    scan, sig, other = METHODS[label]
    mixture = {**base["scan"]["mixture"], **scan.get("mixture", {})}
    return {"scan": {**base["scan"], **scan, "mixture": mixture}, "significance": {**base["significance"], **sig}, **other}


def sample_folder(scale: str, work: Path) -> Path:
    """The sample folder of a scale, ``NAME`` (seed 42) or ``NAME:SEED`` (held out), generated when missing."""
    if scale == "small":
        return ROOT / "data" / "sample_district"
    name, _, seed = scale.partition(":")
    folder = work / (f"{name}_seed{seed}" if seed else name)
    if not (folder / "project.yaml").exists():
        from gis import sample

        t0 = time.perf_counter()
        sample.generate(folder, seed=int(seed or 42), scale=name)
        print(f"generated {scale} sample in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def ceiling_row(scale: str, inc: Any, truth: Any, members: Any, oracle: Any) -> str:
    """Row of the reference table: recall when reports join the planted sites with their true parameters.

    :func:`gis.cluster_eval.planted_ceiling` without places and with sites closer than
    :data:`PLACE_SIGMAS` rms spreads reported as one place, and with the sites' true activity
    periods (site-level detectable recall / strict precision of these clusters,
    :func:`gis.cluster_eval.evaluate`), and the place
    recall (:func:`gis.cluster_eval.evaluate_places`) when each place of
    :func:`gis.cluster_eval.planted_places` is reported as one cluster; reach
    :data:`TRUE_REACH_SIGMAS`.
    """
    from gis import cluster_eval

    reach = TRUE_REACH_SIGMAS
    cells = []
    for z, dated in ((0.0, False), (0.0, True), (PLACE_SIGMAS, False)):
        place = cluster_eval.ceiling_places(truth, inc.crs, place_sigmas=z)
        res = cluster_eval.ceiling_clusters(inc, truth, reach_sigmas=reach, place=place, dated=dated)
        e = cluster_eval.evaluate(res, truth, members, oracle)
        cells.append(f"{e['recall_detectable']:.1%} / {e['precision']:.1%}")
    place = cluster_eval.planted_places(truth, inc.crs, link_sigmas=PLACE_SIGMAS)
    res = cluster_eval.ceiling_clusters(inc, truth, reach_sigmas=reach, place=place, dated=False)
    p = cluster_eval.evaluate_places(res, truth, members, oracle, link_sigmas=PLACE_SIGMAS)
    cells.append(f"{p['recall_place_detectable']:.1%} / {p['recall_place_or_sites']:.1%}")
    return f"| {scale} | {len(truth):,} | " + " | ".join(cells) + " |"


def timing_rows(scale: str, work: Path, labels: list[str], rounds: int) -> list[str]:
    """DBSCAN (the first method) and the default (the last) timed alternately, ``rounds`` rounds in one process.

    Medians and ranges of the process's CPU time and of the wall time of :func:`gis.hotspots.find_clusters`,
    and each median's ratio to DBSCAN's; the labels of every round are checked equal to the first round's.
    """
    import numpy as np

    from gis.district import load_district

    d = load_district(sample_folder(scale, work))
    inc = d.incidents
    if len(inc) <= TRACE_MAX:  # the small samples take a fraction of a second: timed at city scale only
        return []
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    first: dict[str, Any] = {}
    for _ in range(rounds):
        for label in labels:
            res, wall, cpu = timed_run(inc, d.zones, method_overrides(label))
            members = res.members.sort_values("incident_id").reset_index(drop=True)
            if label in first and not members.equals(first[label]):
                raise RuntimeError(f"{label}: the clusters differ between rounds")
            first.setdefault(label, members)
            times[label].append((cpu, wall))
    base = np.median([c for c, _ in times[labels[0]]])
    out = []
    for label, t in times.items():
        cpu, wall = np.array(t).T
        out.append(f"| {scale} | {label} | {np.median(cpu):.1f} s ({cpu.min():.1f}–{cpu.max():.1f}) | "
                   f"{np.median(wall):.1f} s ({wall.min():.1f}–{wall.max():.1f}) | {np.median(cpu) / base:.1f}× |")
        print(out[-1], flush=True)
    return out


def run_scale(scale: str, work: Path, methods: list[str]) -> tuple[list[str], dict[str, Any], str]:
    """Table rows of one sample, the per-cluster tables of each method and the reference (ceiling) row."""
    import pandas as pd

    from gis import cluster_eval, hotspots
    from gis.district import load_district

    folder = sample_folder(scale, work)
    d = load_district(folder)
    inc = d.incidents
    truth = pd.read_csv(folder / "truth" / "clusters_truth.csv")
    members = pd.read_csv(folder / "truth" / "incidents_truth.csv")
    oracle = cluster_eval.detectable_planted(
        inc, truth, members, sigmas=2.0, annulus_m=(500.0, 1500.0), fdr=0.01, same_kind=True
    )
    rows, tables = [], {}
    for label in methods:
        over = method_overrides(label)
        res, dt, cpu = timed_run(inc, d.zones, over)
        peak = "–"
        if len(inc) <= TRACE_MAX:  # tracemalloc slows many small numpy calls several-fold: a second, traced run
            tracemalloc.start()
            hotspots.find_clusters(inc, zones=d.zones, **over)
            peak = f"{tracemalloc.get_traced_memory()[1] / 2**20:,.0f} MiB"
            tracemalloc.stop()
        e = cluster_eval.evaluate(res, truth, members, oracle)
        p = cluster_eval.evaluate_places(res, truth, members, oracle, link_sigmas=PLACE_SIGMAS)
        tables[label] = e["table"]
        rows.append(
            f"| {scale} | {label} | {len(inc):,} | {len(truth):,} / {e['detectable']:,} | {e['found']:,} | "
            f"{e['reported']:,} | {e['recall']:.1%} | **{e['recall_detectable']:.1%}** | **{e['precision']:.1%}** | "
            f"{e['precision_all']:.1%} | {p['places']:,} / {p['places_detectable']:,} | "
            f"**{p['recall_place_detectable']:.1%}** / {p['recall_place_or_sites']:.1%} | "
            f"**{p['precision_place']:.1%}** | {dt:.1f} s | {cpu:.1f} s | {peak} |"
        )
        print(rows[-1], flush=True)
    ceiling = ceiling_row(scale, inc, truth, members, oracle)
    print(ceiling, flush=True)
    return rows, tables, ceiling


def breakdown(tables: dict[str, Any]) -> list[str]:
    """Why sites were missed, and detectable recall by planted size, spread and kind, for every method."""
    from gis.cluster_eval import miss_causes, recall_by

    lines = ["", "Detectable sites missed, by cause (`gis.cluster_eval.miss_causes`: *merged* — the cluster holding "
             "most of the site holds over half of it but its centre is outside the site's radius; *split* — no "
             "reported cluster holds over half; *not found* — none holds any of it):", "",
             "| method | merged | split | not found |", "|---|---:|---:|---:|"]
    for label, t in tables.items():
        c = miss_causes(t)
        lines.append(f"| {label} | {c['merged']} | {c['split']} | {c['not found']} |")
    for column, bins in (("n_incidents", [0, 25, 40, 55, 80]), ("sigma_m", [0, 110, 140, 170, 210]), ("kind", None)):
        parts = {label: recall_by(t, column, bins) for label, t in tables.items()}
        first = next(iter(parts.values()))
        lines += ["", f"Detectable recall by planted `{column}` (planted / detectable):", ""]
        lines.append("| " + column + " | planted / detectable | " + " | ".join(parts) + " |")
        lines.append("|---|---:|" + "---:|" * len(parts))
        for key in first.index:
            vals = " | ".join(f"{p.loc[key, 'recall_detectable']:.1%}" for p in parts.values())
            lines.append(f"| {key} | {int(first.loc[key, 'planted'])} / {int(first.loc[key, 'detectable'])} | {vals} |")
    return lines


def main() -> None:
    import platform

    import sklearn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="small,district,city")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work")
    ap.add_argument("--no-write", action="store_true", help="print the rows only (RESULTS.md untouched)")
    ap.add_argument("--methods", default="", help="comma-separated numbers (0-based) of METHODS to run; default all: "
                    + "; ".join(f"{i} {m}" for i, m in enumerate(METHODS)))  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the DBSCAN / default timing on each scale of over "
                    f"{TRACE_MAX:,} incidents (alternated in one process; 0: none)")
    args = ap.parse_args()
    names = list(METHODS)
    methods = [names[int(i)] for i in args.methods.split(",")] if args.methods else names
    warnings.simplefilter("ignore")
    lines = [
        "## Cluster detection against planted truth (`benchmarks/bench_clusters.py`)",
        "",
        f"Machine: {platform.machine()}, {__import__('os').cpu_count()} cores (shared), Python "
        f"{platform.python_version()}, scikit-learn {sklearn.__version__}. One run per method, all in the same "
        "process on the same incidents, per incident kind. Recall / strict precision per "
        "`hotspots.match_planted`; *detectable*: planted count within 2σ significant against the non-cluster "
        "incidents of its kind 500–1,500 m around (one-sided Poisson, BH-FDR 1 %); *reported*: clusters passing "
        "`clusters.significance` (q ≤ 1 %), the inspectors' list; precision (all) counts flagged clusters too. "
        "Time of `find_clusters` (significance and outlines included), untraced, wall and CPU (the process's, all "
        "threads: less sensitive to the other jobs of the shared machine than the wall time); peak traced memory (tracemalloc) "
        "of a second run, on the samples up to 10,000 incidents only. *Places* "
        "(`gis.cluster_eval.evaluate_places`): planted sites of one kind closer than "
        f"{PLACE_SIGMAS:g}σ of the wider are linked, a place is a connected component; a place is recovered "
        "when one reported cluster holds over half of its planted reports and its centre lies within the radius "
        "of one of its sites (after the slash: or every site of it is recovered on its own); a reported "
        "cluster is a true positive when it recovers a place or a site; a place "
        "is detectable when one of its sites is. The issue's target is stated per site. "
        f"Load average at the start: {' / '.join(f'{v:.1f}' for v in __import__('os').getloadavg())} "
        "(1/5/15 min; the machine is shared, times are not those of a quiet machine).",
        "",
        "| sample | method | incidents | planted / detectable | found | reported | recall | detectable recall "
        "| strict precision (reported) | precision (all found) | places / detectable | detectable place recall "
        "(one cluster / or every site) "
        "| place strict precision | time | CPU time | peak memory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tables = {}
    ceilings = []
    for scale in args.scales.split(","):
        rows, tables, ceiling = run_scale(scale, args.work, methods)
        lines += rows
        ceilings.append(ceiling)
    lines += [
        "",
        "Reference — what the matching rule allows: detectable recall / strict precision when every report of a "
        "kind joins the most likely *planted* site given the sites' true centres, spreads and counts "
        "(`gis.cluster_eval.planted_ceiling`, reach 3σ), as reported sites, and with planted sites closer than "
        f"{PLACE_SIGMAS:g} rms spreads first merged into one place (two equal Gaussian sites closer than 2σ make "
        "one peak); the second column also gives every site its true activity period (first to last report, "
        "as the space-time mixture's time term: a Gaussian of the period's mean and spread) and every report "
        "its date. All three are partitions of the reports computed from their locations and the sites' parameters, "
        "never from the reports' labels, so they are recall that a detector can reach under this matching rule "
        "(one that estimated the parameters exactly); last column: detectable *place* recall (as the place columns above: one cluster holds over "
        "half / or every site recovered) when every place of `gis.cluster_eval.planted_places` is reported as "
        "one cluster of the true-parameter assignment:",
        "",
        "| sample | planted | true sites, most likely site (recall / precision) | true sites with their activity "
        "periods (recall / precision) | true sites merged into places (recall / precision) | place recall of "
        "true places |",
        "|---|---:|---:|---:|---:|---:|",
        *ceilings,
    ]
    notes = ROOT / "benchmarks" / "clusters_notes.md"  # the reading of the numbers, kept by hand
    if notes.exists():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    lines += ["", f"Breakdowns of the last sample ({args.scales.split(',')[-1]}):"]
    lines += breakdown(tables)  # of the last sample
    if args.rounds:
        lines += ["", f"Time of DBSCAN and of the default, {args.rounds} rounds alternated in one process per sample "
                  "(`find_clusters` with significance and outlines; CPU: the process's, all threads; the same clusters "
                  "in every round, checked), median (range) and the CPU median's ratio to DBSCAN's. Load average at the "
                  f"start of the timing: {' / '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}:", "",
                  "| sample | method | CPU time | wall time | CPU vs DBSCAN |", "|---|---|---:|---:|---:|"]
        for scale in args.scales.split(","):
            lines += timing_rows(scale, args.work, [names[0], names[-1]], args.rounds)
    if not args.no_write:
        write_section("clusters", "\n".join(lines))  # benchmarks._common: one writer of RESULTS.md sections
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
