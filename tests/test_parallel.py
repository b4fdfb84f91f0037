"""Partitioned execution (gis.parallel): halo kernels equal the single-process answer;
``--engine dask`` on a LocalCluster (127.0.0.1) equals the single-process run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gis import gistar
from gis.halo import _within, cell_coverage, dbscan_assemble, dbscan_labels, dbscan_local, gi_local


def _points(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 10_000, (25, 2))
    centres[:3, 0] = [3333.0, 6666.0, 5000.0]  # clusters straddling the strip borders
    pts = np.vstack([c + rng.normal(0, 80, (rng.integers(6, 60), 2)) for c in centres])
    return np.vstack([pts, rng.uniform(0, 10_000, (600, 2))])


def test_dbscan_core_clusters_equal_sklearn():
    from sklearn.cluster import DBSCAN

    xy = _points(1)
    ours = dbscan_labels(xy, 150.0, 5)
    sk = DBSCAN(eps=150.0, min_samples=5).fit(xy)
    core = np.zeros(len(xy), bool)
    core[sk.core_sample_indices_] = True
    # same partition of the core points (labels up to renumbering)
    pairs = pd.crosstab(ours[core], sk.labels_[core])
    assert ((pairs > 0).sum(axis=1) == 1).all() and ((pairs > 0).sum(axis=0) == 1).all()
    # same noise; border points join a cluster with a core point within eps
    assert np.array_equal(ours == -1, sk.labels_ == -1)


@pytest.mark.parametrize("n_strips", [2, 3, 5])
def test_dbscan_partitioned_with_halo_equals_single(n_strips):
    xy = _points(2)
    eps, ms = 150.0, 5
    single = dbscan_labels(xy, eps, ms)
    edges = np.linspace(0, 10_000.0001, n_strips + 1)
    edges[0] -= 1e6
    edges[-1] += 1e6
    pieces = []
    for i in range(n_strips):
        own = np.flatnonzero((xy[:, 0] >= edges[i]) & (xy[:, 0] < edges[i + 1]))
        b = (edges[i], -1e9, edges[i + 1], 1e9)
        halo = np.flatnonzero(_within(xy[:, 0], xy[:, 1], b, 2 * eps) & ~np.isin(np.arange(len(xy)), own))
        ids = np.concatenate([own, halo])
        pieces.append(dbscan_local(xy[ids], ids, len(own), eps, ms))
    assert np.array_equal(dbscan_assemble(len(xy), pieces), single)
    assert (single >= 0).sum() > 100


def test_gistar_on_strips_with_band_halo_equals_gistar():
    xy = _points(3)
    grid = gistar.HexGrid.covering((0, 0, 10_000, 10_000), 400.0)
    counts = grid.count(xy)
    band = 2 * 400.0
    ref = gistar.gi_star(counts, gistar.lattice_weights(grid, band), fdr=False)
    n, xbar = len(grid), counts.mean()
    s = np.sqrt((counts**2).mean() - xbar**2)
    z = np.zeros(n)
    nn = np.zeros(n, np.int64)
    kq = int(np.ceil(band / grid.spacing)) + 2
    for st in np.array_split(np.unique(grid.q), 4):
        sub = (grid.q >= st[0] - kq) & (grid.q <= st[-1] + kq)
        g = grid.subset(sub)
        owned = np.flatnonzero((g.q >= st[0]) & (g.q <= st[-1]))
        z[np.flatnonzero(sub)[owned]], nn[np.flatnonzero(sub)[owned]] = gi_local(g, counts[sub], owned, band, xbar, s, n)
    assert np.array_equal(z, ref.z)
    assert np.array_equal(nn, ref.n_neighbours)


def test_cell_coverage_with_radius_halo_equals_all_sites():
    rng = np.random.default_rng(4)
    sites = rng.uniform(0, 5000, (300, 2))
    cells = pd.DataFrame(rng.uniform(0, 5000, (2000, 2)), columns=["x", "y"])
    full = cell_coverage(cells, sites, 300.0)
    left = cells[cells["x"] < 2500]
    keep = _within(sites[:, 0], sites[:, 1], (-1e9, -1e9, 2500.0, 1e9), 300.0)
    part = cell_coverage(left, sites[keep], 300.0)
    pd.testing.assert_frame_equal(part, full.loc[left.index])
    # without the halo, cells near the partition edge would be miscounted
    assert not cell_coverage(left, sites[sites[:, 0] < 2500], 300.0).equals(full.loc[left.index])


def test_dask_engine_equals_single_process_on_a_localcluster(tmp_path, run_tmp, monkeypatch):
    """The Dask engine on a two-worker cluster: every output file of the cross-border analyses
    (四山 overlay, coverage, hex Gi*, DBSCAN across the borders), written per district on the
    workers, equals the single-process engine's, and the partitions hold the single process's
    in-memory result row for row. ``gis run --engine dask``'s own cluster (no ``client``, no
    ``scheduler``) comes from :func:`gis.parallel.local_client`, here an in-process one: worker
    *processes* on 127.0.0.1 (a scheduler and two workers started from the command line) are
    tests/test_dask_cli_cluster.py."""
    from _dask_compare import assert_same_outputs, read_layer
    from _far_municipality import far_municipality
    from distributed import Client, LocalCluster

    from gis import parallel

    started = []

    def in_process_client() -> Client:
        started.append(Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)))
        return started[-1]

    monkeypatch.setattr(parallel, "local_client", in_process_client)
    muni = far_municipality(run_tmp)
    single = parallel.run_municipality(muni, tmp_path / "single", engine="single", steps=[])
    dask_ = parallel.run_municipality(muni, tmp_path / "dask", engine="dask", steps=[])
    assert len(started) == 1 and started[0].status == "closed"  # started for the run, closed after it
    assert single["municipal"] == dask_["municipal"]
    assert single["municipal"]["cross_border_clusters"] == 2
    assert dask_["analysis"] is None  # the client never held the layers
    assert assert_same_outputs(tmp_path / "single", tmp_path / "dask") == 3 * 4 * 2
    # the partitioned outputs hold the in-memory single-process result, row for row
    A = single["analysis"]
    for name in ("sites", "cells", "hexes", "incidents"):
        got = pd.DataFrame(read_layer(tmp_path / "dask", name)).drop(columns="geometry")
        ref = pd.DataFrame(getattr(A, name)).drop(columns=["geometry", "cell_id"], errors="ignore")
        if name == "hexes":
            got, ref = got.sort_values(["q", "r"], ignore_index=True), ref.sort_values(["q", "r"], ignore_index=True)
        pd.testing.assert_frame_equal(got[list(ref.columns)].astype(ref.dtypes.to_dict()), ref.reset_index(drop=True), check_exact=True)
    js = json.loads((tmp_path / "dask" / "summary.json").read_text(encoding="utf-8"))
    assert js["engine"] == "dask"
    assert not (tmp_path / "dask" / ".partitions").exists()  # scratch removed


def test_municipal_crs_from_the_outlines_not_a_fixed_box():
    from gis.parallel import municipal_crs

    # Shapingba-like extent: CGCS2000 3° GK zone of the centre (CM 105°E)
    assert municipal_crs([(106.2, 29.4, 106.5, 29.7)]).to_epsg() == 4544
    # two districts whose union's centre (106.5°E) rounds to CM 108°E
    assert municipal_crs([(106.2, 29.4, 106.5, 29.7), (106.5, 29.4, 106.8, 29.7)]).to_epsg() == 4545
    # outside China: the UTM zone of the centre (New York, zone 18N)
    assert municipal_crs([(-74.1, 40.6, -73.9, 40.9), (-73.9, 40.6, -73.7, 40.9)]).to_epsg() == 32618
