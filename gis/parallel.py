"""Partitioned execution on Dask (``gis run --engine dask``), without gathering.

A municipality (``municipality.yaml``, see :mod:`gis.municipal`) is partitioned by
district. Every district's pipeline runs as one task; then each district is staged on
a worker as columnar scratch files (:func:`gis.partitioned.stage`) and the municipal
analyses that cross district borders run per partition with a *halo* — the points of
the neighbouring partitions within the distance that the analysis looks at, read
from those neighbours' files only — so that their answer is identical to the
single-process run over the merged layers (:func:`analyse_single`):

===================  ==========================  =====================================
analysis             per partition               halo
===================  ==========================  =====================================
四山 overlay          sites × 四山 polygons         neighbours' zones over the sites' box
population coverage  cells vs sites (Euclidean)  sites within the service radius R
hex aggregation      counts of owned hexagons    incidents in the owned hexagons
Gi*                  owned hexagons              hexagons within the distance band;
                                                 x̄, S, n and the FDR cut-offs reduced
clusters (``scan``,  cores, quick-shift parents  incidents within the annulus; cores
the district's       and local core groups;      within link_m; groups joined on one
detector)            groups fitted by the        task; a group read within 2·attach_m
                     partition of their lowest   of its cores, whatever its size
                     core (gis.cluster_tiles)
clusters (``dbscan``) local components of the    incidents within 2·eps; components
                     core graph, border points   joined by the halo core points
===================  ==========================  =====================================

Each partition writes its own outputs (GeoParquet partition and GeoPackage, see
:func:`gis.partitioned.write_district`); summaries, statistics and the DBSCAN
component table are combined on the workers by tree reduction
(:func:`tree_reduce`). The client receives a few numbers per district and never a
layer. Scheduling is Dask's (``distributed.Client``; a ``LocalCluster`` on 127.0.0.1
when no scheduler address is given). The kernels are in :mod:`gis.halo`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis._errors import AnalysisError

log = logging.getLogger(__name__)

#: Municipal analysis parameters (fixed, not data-driven, so that partitions agree).
def defaults() -> dict[str, Any]:
    """The engine's parameters, read from ``layers/*.yaml`` (:func:`gis.params.engine_params`)."""
    from gis.params import engine_params

    return engine_params()


from gis.halo import Partition, _kind_xy, cell_coverage, dbscan_labels, fm_overlay, gi_local, load_partition


# ====================================================================== results


@dataclass
class MunicipalAnalysis:
    """Cross-border municipal analyses (same attributes for both engines).

    Attributes
    ----------
    sites
        Every site with ``district_code``, ``fm_level``, ``fm_range``.
    cells
        Population cells with ``district_code``, ``n_sites``, ``covered``, ``dist_m``.
    hexes
        Hexagon grid with ``count``, ``gi_z``, ``gi_p``, ``gi_bin``, ``n_neighbours``.
    incidents
        Incidents with ``district_code``, ``cluster`` (−1 noise).
    summary
        Headline figures.
    """

    sites: gpd.GeoDataFrame
    cells: pd.DataFrame
    hexes: gpd.GeoDataFrame
    incidents: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def _grid_for(parts: Sequence[Partition], spacing: float, crs: Any) -> Any:
    from gis.gistar import HexGrid

    b = np.asarray([p.bounds for p in parts])
    bounds = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    return HexGrid.covering(bounds, spacing, crs=crs, origin=(float(bounds[0]), float(bounds[1])))


def _finish(
    sites: gpd.GeoDataFrame, cells: pd.DataFrame, grid: Any, counts: np.ndarray, z: np.ndarray, nn: np.ndarray,
    incidents: pd.DataFrame, labels: np.ndarray, params: dict[str, Any],
) -> MunicipalAnalysis:
    from scipy.special import ndtr

    from gis.gistar import GI_BIN_ALPHAS, fdr_cutoff

    for c in ("district_code", "site_id", "tier", "status"):  # one dtype whichever engine built them
        sites[c] = pd.Series(sites[c].to_numpy(dtype=object), index=sites.index, dtype=object)
    p = 2.0 * ndtr(-np.abs(z))
    level = np.zeros(len(z), dtype=np.int8)
    for k, a in enumerate(GI_BIN_ALPHAS, start=1):
        level[p < fdr_cutoff(p, a)] = k
    gi_bin = (np.sign(z).astype(np.int8) * level).astype(np.int8)
    keep = counts > 0
    keep |= np.asarray(gi_bin != 0)
    hexes = grid.subset(keep).to_geodataframe(count=counts[keep], gi_z=z[keep], gi_p=p[keep], gi_bin=gi_bin[keep], n_neighbours=nn[keep])
    incidents = incidents.assign(cluster=labels)
    clustered = incidents[incidents["cluster"] >= 0]
    cross = clustered.groupby("cluster")["district_code"].nunique()
    summary = {"hexes": int(len(grid)), "clusters": int(clustered["cluster"].nunique()), "cross_border_clusters": int((cross > 1).sum()),
               "grid_origin": tuple(float(v) for v in grid.origin)}
    return MunicipalAnalysis(sites=sites, cells=cells, hexes=hexes, incidents=incidents, summary=summary)


def analyse_single(parts: Sequence[Partition], crs: Any, params: dict[str, Any] | None = None) -> MunicipalAnalysis:
    """The municipal analyses in one process, over the merged layers."""
    prm = {**defaults(), **(params or {})}
    sites = gpd.GeoDataFrame(pd.concat([p.sites for p in parts], ignore_index=True), crs=crs)
    zones = gpd.GeoDataFrame(pd.concat([p.zones for p in parts], ignore_index=True), crs=crs)
    sites = sites.join(fm_overlay(sites, zones))
    cells = pd.concat([p.cells.assign(district_code=p.code) for p in parts], ignore_index=True)
    cov_sites = sites[sites["tier"].isin(prm["coverage_tiers"])]
    cells = cells.join(cell_coverage(cells, np.column_stack([cov_sites.geometry.x, cov_sites.geometry.y]), prm["coverage_radius_m"]))
    inc = pd.concat([p.incidents.assign(district_code=p.code) for p in parts], ignore_index=True)
    grid = _grid_for(parts, prm["hex_spacing_m"], crs)
    counts = grid.count(inc[["x", "y"]].to_numpy(float))
    xbar, s = counts.mean(), np.sqrt(max((counts**2).mean() - counts.mean() ** 2, 0.0))
    if s == 0:
        raise AnalysisError("Gi* is undefined: every hexagon has the same count")
    z, nn = gi_local(grid, counts, np.arange(len(grid)), prm["band_cells"] * prm["hex_spacing_m"], xbar, s, len(grid))
    if prm["cluster_method"] != "scan":
        labels = dbscan_labels(_kind_xy(inc, sorted(inc["kind"].unique())), prm["eps_m"], int(prm["min_samples"]))
        return _finish(sites, cells, grid, counts, z, nn, inc, labels, prm)
    labels, significant = scan_labels(inc)
    res = _finish(sites, cells, grid, counts, z, nn, inc, labels, prm)
    res.incidents["cluster_significant"] = significant  # as the partitions write it (gis.partitioned.finish)
    return res


def scan_labels(inc: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The district's ``scan`` detector over all incidents at once (``kind``, ``x``, ``y``, ``days``), each kind
    on its own (:func:`gis.hotspots.group_labels`): clusters numbered by lowest incident index, and whether
    each incident is in a significant cluster (BH over all clusters)."""
    from gis.cluster_tiles import by_lowest
    from gis.hotspots import cluster_params, group_labels

    xy = inc[["x", "y"]].to_numpy(float)
    labels, _, _, sig = group_labels(xy, inc["kind"].astype(str).to_numpy(), inc["days"].to_numpy(float), cluster_params())
    significant = pd.Series(labels).map(sig["significant"]).fillna(False).to_numpy(bool)
    return by_lowest(np.arange(len(inc), dtype=np.int64), labels), significant


# ====================================================================== driver


def district_lonlat_bounds(project: str | Path) -> tuple[float, float, float, float]:
    """Lon/lat bounds (EPSG:4326) of a district's townships, read from its own layer.

    Parameters
    ----------
    project
        A district project folder (``project.yaml``).

    Returns
    -------
    tuple of float
        ``(lon_min, lat_min, lon_max, lat_max)`` of the union of every township
        layer, whatever CRS or coordinate convention the files are written in.
    """
    from gis.catalog import load_project
    from gis.io import vector_layer

    proj = load_project(project)
    b = np.asarray([vector_layer(spec)[0].total_bounds for spec in proj.layers["townships"]], dtype=float)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def municipal_crs(bounds: Sequence[tuple[float, float, float, float]]) -> Any:
    """One metric CRS for the whole municipality, from its districts' own outlines.

    Parameters
    ----------
    bounds
        Lon/lat bounds of every district (:func:`district_lonlat_bounds`).

    Returns
    -------
    pyproj.CRS
        :func:`gis.coords.choose_metric_crs` of the union extent
        :math:`(\\min \\lambda_0, \\min \\varphi_0, \\max \\lambda_1, \\max \\varphi_1)`:
        the CGCS2000 3° Gauss-Krüger zone of its centre inside China, the UTM zone
        elsewhere.

    Examples
    --------
    >>> municipal_crs([(106.2, 29.4, 106.5, 29.7), (106.5, 29.4, 106.8, 29.7)]).to_epsg()
    4545
    """
    from gis.coords import choose_metric_crs

    b = np.asarray(bounds, dtype=float)
    return choose_metric_crs((float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())))


def local_client(n_workers: int = 2, threads_per_worker: int = 1, **kwargs: Any) -> Any:
    """A ``distributed.Client`` on a ``LocalCluster`` bound to 127.0.0.1 (dashboard off)."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
        host="127.0.0.1", dashboard_address=None, **kwargs,
    )
    return Client(cluster)


def run_municipality(
    project: str | Path,
    out: str | Path,
    *,
    engine: str = "single",
    scheduler: str | None = None,
    client: Any = None,
    steps: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``gis run`` on a municipality: every district's pipeline, the cross-border
    analyses and the roll-up.

    Parameters
    ----------
    project
        Municipal folder (``municipality.yaml``).
    out
        Output folder: ``districts/<code>/`` (each district's ``gis run`` outputs),
        ``municipal_analysis/<layer>/district=<code>/part.parquet`` (GeoParquet),
        ``municipal_analysis/gpkg/<code>.gpkg``, ``summary.json`` and the roll-up files.
        A local (or shared-filesystem) path; with ``steps=[]`` also an fsspec URL
        (``file://…``, ``memory://…``, ``s3://…`` with ``s3fs``), where the staged
        partitions, the partitioned outputs and ``summary.json`` are written.
    engine
        ``single`` (one process) or ``dask``.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); default: a
        ``LocalCluster`` on 127.0.0.1 with 2 single-threaded worker processes.
    client
        An existing ``distributed.Client`` (overrides ``scheduler``).
    steps
        Pipeline steps per district (default all); ``[]`` runs none.
    params
        Overrides of :func:`defaults` (read from ``layers/*.yaml``).
    """
    from gis.municipal import district_folder, load_index
    from gis.partitioned import is_local, location

    if engine not in ("single", "dask"):
        raise AnalysisError(f"unknown engine '{engine}' (single or dask)")
    if steps != [] and not is_local(location(out)[0]):
        raise AnalysisError(f"output {out}: the district pipelines write local files; give a local or shared-filesystem "
                            "folder, or run the municipal analyses only (steps=[])")
    index = load_index(project)
    root: Path = index["root"]
    codes = [str(e["code"]) for e in index["districts"]]
    job = _Job(dirs=[district_folder(root, e) for e in index["districts"]], codes=codes,
               outs=[Path(out) / "districts" / c for c in codes], steps=steps, params=params, out=str(out))
    if engine == "single":
        return _write_outputs(out, index, engine, job, *_run_single(job))
    own_client = None
    if client is None:
        from distributed import Client

        own_client = client = Client(scheduler) if scheduler else local_client()
    try:
        return _write_outputs(out, index, engine, job, *_run_dask(client, job), client=client)
    finally:
        if own_client is not None:
            _close(own_client)


@dataclass
class _Job:
    """What :func:`run_municipality` runs: district folders, codes, output folders (``out``: a path or fsspec URL)."""

    dirs: list[Path]
    codes: list[str]
    outs: list[Path]
    steps: Sequence[str] | None
    params: dict[str, Any] | None
    out: str


def _run_single(job: _Job) -> tuple[list[Any], dict[str, Any], Any, dict[str, float]]:
    """District pipelines, then the municipal analyses over the merged layers, in this process."""
    from gis import pipeline

    t0 = time.perf_counter()
    summaries = [pipeline.run(d, o, steps=job.steps, progress=False) if job.steps != [] else None
                 for d, o in zip(job.dirs, job.outs)]
    timings = {"districts": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    crs = municipal_crs([district_lonlat_bounds(d) for d in job.dirs])
    parts = [load_partition(d, c, crs) for d, c in zip(job.dirs, job.codes)]
    prm = {**defaults(), **(job.params or {})}
    res = analyse_single(parts, crs, prm)
    municipal = _write_single(job.out, res, parts, crs, prm)
    timings["municipal"] = round(time.perf_counter() - t0, 3)
    return summaries, {"municipal": municipal, "analysis": res}, crs, timings


def _write_single(out: str, res: MunicipalAnalysis, parts: Sequence[Partition], crs: Any, prm: dict[str, Any]) -> dict[str, Any]:
    """Split the merged results by district, write them as the partitioned outputs; the summary."""
    from gis.gistar import HexGrid
    from gis.partitioned import as_layers, combine, district_summary, hex_owner, summary_of, write_district

    bounds = np.asarray([p.bounds for p in parts], float)
    h = res.hexes
    owner = hex_owner(HexGrid(prm["hex_spacing_m"], res.summary["grid_origin"], h["q"].to_numpy(), h["r"].to_numpy()).centres,
                      bounds, range(len(parts))) if len(h) else np.zeros(0, np.int64)
    acc: dict[str, Any] = {}
    for i, p in enumerate(parts):
        layers = as_layers(res.sites[res.sites["district_code"] == p.code], res.cells[res.cells["district_code"] == p.code],
                           h[owner == i], res.incidents[res.incidents["district_code"] == p.code], crs)
        write_district(out, p.code, layers)
        acc = combine(acc, district_summary(layers["sites"], layers["cells"], layers["hexes"], layers["incidents"]))
    s = res.summary
    return summary_of(acc, s["hexes"], s["clusters"], s["cross_border_clusters"], prm)


def tree_reduce(client: Any, futures: Sequence[Any], combine: Callable[..., Any], fan_in: int = 4) -> Any:
    """Combine futures on the workers, ``fan_in`` at a time, down to one future."""
    futs = list(futures)
    while len(futs) > 1:
        futs = [client.submit(combine, *futs[k:k + fan_in], pure=False) for k in range(0, len(futs), fan_in)]
    return futs[0]


def _run_dask(client: Any, job: _Job) -> tuple[list[Any], dict[str, Any], Any, dict[str, float]]:
    """District pipelines as tasks, then the partitioned municipal analyses (nothing gathered)."""
    from gis import pipeline

    t0 = time.perf_counter()
    if job.steps != []:
        futs = [client.submit(pipeline.run, d, o, steps=job.steps, progress=False, pure=False) for d, o in zip(job.dirs, job.outs)]
        summaries = client.gather(futs)
        del futs
    else:
        summaries = [None] * len(job.dirs)
    timings = {"districts": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    crs = municipal_crs(client.gather([client.submit(district_lonlat_bounds, d, pure=False) for d in job.dirs]))
    prm = {**defaults(), **(job.params or {})}
    municipal = _dask_municipal(client, job, crs, prm)
    timings["municipal"] = round(time.perf_counter() - t0, 3)
    return summaries, {"municipal": municipal, "analysis": None}, crs, timings


def _dask_municipal(client: Any, job: _Job, crs: Any, prm: dict[str, Any]) -> dict[str, Any]:
    """Stage the partitions, exchange halos between neighbours, write per district, reduce the summaries.

    The client receives per district a few numbers (extents, counts, kinds) and
    the reduced statistics; every layer stays in the workers' tasks and files.
    """
    from gis import partitioned as pt
    from gis.gistar import GI_BIN_ALPHAS

    metas = client.gather([client.submit(pt.stage, d, c, crs.to_wkt(), job.out, pure=False) for d, c in zip(job.dirs, job.codes)])
    bounds = np.asarray([m["bounds"] for m in metas], float)
    plan = pt.Plan(codes=tuple(job.codes), bounds=bounds, extents=np.asarray([m["extent"] for m in metas], float),
                   offsets=np.concatenate([[0], np.cumsum([m["n_incidents"] for m in metas])]).astype(np.int64),
                   kinds=tuple(sorted({k for m in metas for k in m["kinds"]})), crs=crs.to_wkt(), out=job.out,
                   params=prm, reach=pt.reach(bounds, prm["hex_spacing_m"], pt.REACH_LATTICE))
    [plan_f] = client.scatter([plan], broadcast=True)
    n = len(job.codes)
    stats = client.gather(tree_reduce(client, [client.submit(pt.hex_stats, plan_f, i, pure=False) for i in range(n)], pt.combine))
    small = tree_reduce(client, [client.submit(pt.hex_small_p, plan_f, i, stats, pure=False) for i in range(n)], pt.combine)
    cutoffs = client.gather(client.submit(lambda s, m: [pt.fdr_cutoff_partial(s["p"], m, a) for a in GI_BIN_ALPHAS], small, int(stats["n"])))
    own, counts = (_dask_scan if prm["cluster_method"] == "scan" else _dask_dbscan)(client, plan, plan_f, prm)
    done = [client.submit(pt.finish, plan_f, i, stats, cutoffs, own[i], pure=False) for i in range(n)]
    parts = client.gather(tree_reduce(client, done, pt.combine))
    return pt.summary_of(parts, int(stats["n"]), counts["clusters"], counts["cross_border_clusters"], prm)


def _dask_dbscan(client: Any, plan: Any, plan_f: Any, prm: dict[str, Any]) -> tuple[list[Any], dict[str, int]]:
    """DBSCAN across the borders (halo 2·eps): per partition the futures of its labels, and the counts."""
    from gis import partitioned as pt

    n = len(plan.codes)
    states = [client.submit(pt.db_local, plan_f, i, pure=False) for i in range(n)]
    edges = []
    for j in range(n):
        reqs = [client.submit(pt.db_request, states[i], j, pure=False) for i in pt.near(plan.extents, plan.extents[j], 2 * prm["eps_m"], j)]
        edges.append(client.submit(pt.db_resolve, plan_f, j, states[j], *reqs, pure=False))
    tables = tree_reduce(client, [client.submit(pt.db_table, s, pure=False) for s in states], pt.combine)
    labels = client.submit(lambda t, *e: pt.db_assemble(t, e), tables, *edges, pure=False)
    own = [client.submit(pt.db_own_labels, states[i], labels, pure=False) for i in range(n)]
    return own, client.gather(client.submit(pt.db_counts, labels))


def _dask_scan(client: Any, plan: Any, plan_f: Any, prm: dict[str, Any]) -> tuple[list[Any], dict[str, int]]:
    """The district's ``scan`` detector across the borders (:mod:`gis.cluster_tiles`): steps per partition, each
    reading its neighbours' cores within the halo; the joins take a few rows per border core, group and cluster."""
    from gis import partitioned as pt
    from gis.cluster_tiles import link_halo
    from gis.hotspots import cluster_params, scan_params

    p = scan_params(cluster_params())
    n = len(plan.codes)
    sub = lambda f, *a: client.submit(f, *a, pure=False)  # noqa: E731
    pieces = [sub(pt.sc_cores, plan_f, i) for i in range(n)]
    prefix = sub(pt.sc_prefix, *[sub(pt.sc_count, c) for c in pieces])
    states = []
    for i in range(n):
        halos = [sub(pt.sc_halo, pieces[j], j, plan.extents[i], prefix) for j in pt.near(plan.extents, plan.extents[i], link_halo(p), i)]
        states.append(sub(pt.sc_links, plan_f, i, prefix, pieces[i], *halos))
    joined = sub(pt.sc_join, *[sub(pt.sc_exchange, s) for s in states])
    labelled = [sub(pt.sc_label, s, joined) for s in states]
    peaks = sub(pt.sc_peak_table, *[sub(pt.sc_peaks, plan_f, i, lab) for i, lab in enumerate(labelled)])
    boxes = client.gather([sub(pt.sc_fit_box, plan_f, i, joined) for i in range(n)])
    fits = []
    for i, box in enumerate(boxes):
        near = [i, *pt.near(plan.extents, box, 2 * p.attach_m, i)] if box is not None else []
        fits.append(sub(pt.sc_fits, plan_f, i, joined, peaks, *[sub(pt.sc_fit_cores, labelled[j], box) for j in near]))
    numbered = sub(pt.sc_number, plan_f, *fits)
    windows = sub(pt.sc_windows, *[sub(pt.sc_hull, plan_f, i) for i in range(n)])
    sigs = [sub(pt.sc_significance, plan_f, f, numbered, windows) for f in fits]
    flags = sub(pt.sc_flags, plan_f, numbered, windows, *sigs)
    own = [sub(pt.sc_own_labels, plan_f, i, numbered, flags) for i in range(n)]
    counts = client.gather(sub(lambda x: {k: x[k] for k in ("clusters", "cross_border_clusters")}, numbered))
    return own, counts


def _close(client: Any) -> None:
    """Close a client this module started, and its cluster."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def _write_outputs(
    out: str | Path, index: dict[str, Any], engine: str, job: _Job, summaries: list[Any], res: dict[str, Any],
    crs: Any, timings: dict[str, float], client: Any = None,
) -> dict[str, Any]:
    """The roll-up and ``summary.json`` (the layers are written per district already); returns the summary."""
    from gis.export import write_json
    from gis.municipal import rollup
    from gis.partitioned import SCRATCH, location, put_file

    fs, scratch = location(out, SCRATCH)
    if fs.exists(scratch):
        fs.rm(scratch, recursive=True)
    summary: dict[str, Any] = {
        "municipality": index.get("name"),
        "engine": engine,
        "metric_crs": crs.to_string(),
        "districts": {c: _strip(s) for c, s in zip(job.codes, summaries) if s is not None},
        "municipal": res["municipal"],
    }
    if job.steps != [] and all(s is not None for s in summaries):
        summary["rollup"] = rollup(Path(out), Path(out), client=client).summary
    put_file(fs, location(out, "summary.json")[1], lambda path: write_json({**summary, "timings_s": timings}, path))
    return {**summary, "timings_s": timings, "analysis": res["analysis"]}


def _strip(s: dict[str, Any]) -> dict[str, Any]:
    """A district summary without run-dependent keys (timings, output paths)."""
    return {k: v for k, v in s.items() if k not in ("timings_s", "map", "run_id")}
