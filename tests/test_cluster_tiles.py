"""The scan detector per partition (gis.cluster_tiles) gives the whole run's clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gis import hotspots
from gis.cluster_tiles import grid_tiles


@pytest.fixture(scope="module")
def whole(sample_district):
    return hotspots.find_clusters(sample_district.incidents, zones=sample_district.zones)


def _straddling(res: hotspots.ClusterResult, incidents, tiles: tuple[int, int]) -> int:
    """Clusters whose members lie in more than one tile."""
    xy = np.column_stack([incidents.geometry.x, incidents.geometry.y])
    tile, _ = grid_tiles(xy, *tiles)
    t = pd.Series(tile, index=incidents["incident_id"].to_numpy())
    m = res.members.assign(tile=res.members["incident_id"].map(t).to_numpy())
    return int((m.groupby("cluster_id")["tile"].nunique() > 1).sum())


def _assert_same(whole: hotspots.ClusterResult, tiled: hotspots.ClusterResult) -> None:
    pd.testing.assert_frame_equal(
        whole.members.sort_values("incident_id").reset_index(drop=True),
        tiled.members.sort_values("incident_id").reset_index(drop=True),
    )
    cols = [c for c in whole.clusters.columns if c != "geometry"]
    pd.testing.assert_frame_equal(pd.DataFrame(whole.clusters[cols]), pd.DataFrame(tiled.clusters[cols]))
    assert whole.clusters.geometry.equals(tiled.clusters.geometry)


@pytest.mark.parametrize("tiles", [(2, 3), (3, 3), (6, 6)])
def test_tiles_give_the_whole_runs_clusters(sample_district, whole, tiles):
    """Same members, cluster table (ids, sizes, significance) and outlines on 2×3, 3×3 and 6×6 tiles,
    with clusters straddling tile borders among them (on the bundled sample a 2×2 grid cuts none)."""
    inc = sample_district.incidents
    tiled = hotspots.find_clusters(inc, zones=sample_district.zones, tiles=tiles)
    assert len(whole.clusters) > 10 and whole.clusters["significant"].any()
    assert _straddling(whole, inc, tiles) >= 1
    _assert_same(whole, tiled)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nx=st.integers(1, 8), ny=st.integers(1, 8))
def test_any_grid_gives_the_whole_runs_clusters(sample_district, whole, nx, ny):
    """Property: whatever the grid, the tiled run is the whole run."""
    _assert_same(whole, hotspots.find_clusters(sample_district.incidents, zones=sample_district.zones, tiles=(nx, ny)))


def test_tiles_need_the_scan_mixture(sample_district):
    from gis._errors import AnalysisError

    with pytest.raises(AnalysisError, match="per partition"):
        hotspots.find_clusters(sample_district.incidents, method="dbscan", tiles=(2, 2))


@pytest.mark.parametrize("method", ["scan", "dbscan"])
def test_municipal_engines_agree_for_each_cluster_method(tmp_path, run_tmp, method):
    """The municipal clusters across district borders: the scan detector per partition (the district
    run's, with its significance) or DBSCAN per partition (``cluster_method: dbscan``) — the Dask engine's
    partitioned labels equal the single process's, and the two methods differ."""
    from _far_municipality import far_municipality
    from distributed import Client, LocalCluster

    from gis import parallel

    muni = far_municipality(run_tmp)
    prm = {"cluster_method": method}
    single = parallel.run_municipality(muni, tmp_path / "single", engine="single", steps=[], params=prm)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # fmt: skip
        dask_ = parallel.run_municipality(muni, tmp_path / "dask", engine="dask", steps=[], params=prm, client=client)
    assert single["municipal"] == dask_["municipal"] and single["municipal"]["cross_border_clusters"] >= 1
    inc = single["analysis"].incidents
    got = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "dask" / "municipal_analysis" / "incidents").glob("*/part.parquet"))])
    ref = inc.set_index("incident_id")["cluster"]
    assert (got.set_index("incident_id")["cluster"].reindex(ref.index) == ref).all()
    if method == "scan":  # and the same significance (BH over every cluster of the municipality)
        sig = inc.set_index("incident_id")["cluster_significant"]
        assert (got.set_index("incident_id")["cluster_significant"].reindex(sig.index) == sig).all()
        assert sig.any() and not sig[ref < 0].any()
    if method == "scan":  # the scan detector's clusters are not DBSCAN's on the same incidents
        from gis.halo import _kind_xy, dbscan_labels

        e = parallel.defaults()
        db = dbscan_labels(_kind_xy(inc, sorted(inc["kind"].unique())), e["eps_m"], int(e["min_samples"]))
        assert not np.array_equal(db, inc["cluster"].to_numpy())
