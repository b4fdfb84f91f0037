"""Outputs through fsspec URLs (``run_municipality(out="memory://…" / "file://…")``): what a
cluster writing to object storage relies on, tested with fsspec's in-memory filesystem (no
network, no s3fs) — the staged partitions, the halo reads (row-filtered Parquet), the
GeoParquet and GeoPackage outputs and ``summary.json`` all go through the URL."""

from __future__ import annotations

import json
import uuid

import geopandas as gpd
import pandas as pd
import pytest


def _copy_out(url: str, local) -> None:
    """Download a run's output tree from an fsspec URL into a local folder."""
    from gis.partitioned import location

    fs, root = location(url)
    for path in fs.find(root):
        target = local / path[len(root) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(target))


def test_outputs_written_to_an_fsspec_url_equal_the_local_run(tmp_path, run_tmp):
    from _dask_compare import assert_same_outputs, read_layer
    from _far_municipality import far_municipality
    from distributed import Client, LocalCluster

    from gis.partitioned import location
    from gis.parallel import run_municipality

    muni = far_municipality(run_tmp)
    base = f"memory://gis-test-{uuid.uuid4().hex}"
    local = run_municipality(muni, tmp_path / "local", engine="single", steps=[])
    single = run_municipality(muni, f"{base}/single", engine="single", steps=[])
    # Dask workers as threads of this process (in-process transport) share its memory filesystem; worker processes would not
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        dask_ = run_municipality(muni, f"{base}/dask", engine="dask", client=client, steps=[])
    fileurl = run_municipality(muni, (tmp_path / "fileurl").as_uri(), engine="single", steps=[])
    assert local["municipal"] == single["municipal"] == dask_["municipal"] == fileurl["municipal"]

    fs, root = location(base)
    for name in ("single", "dask"):
        assert fs.exists(f"{root}/{name}/municipal_analysis/gpkg")
        assert not fs.exists(f"{root}/{name}/.partitions")  # scratch removed from the URL too
        assert json.loads(fs.cat_file(f"{root}/{name}/summary.json"))["engine"] == name
        _copy_out(f"{base}/{name}", tmp_path / f"from_{name}")
        assert assert_same_outputs(tmp_path / "local", tmp_path / f"from_{name}") == 3 * 4 * 2
    assert assert_same_outputs(tmp_path / "local", tmp_path / "fileurl") == 3 * 4 * 2
    # an analyst opens the partitioned layer straight from the URL (hive partitions → a district column)
    got = gpd.read_parquet(f"{base}/dask/municipal_analysis/incidents")
    ref = read_layer(tmp_path / "local", "incidents")
    assert sorted(got["district"].astype(str).unique()) == sorted(ref["district_code"].unique())
    key = ["district_code", "x", "y", "kind"]
    pd.testing.assert_frame_equal(got.drop(columns=["district", "geometry"]).sort_values(key, ignore_index=True),
                                  pd.DataFrame(ref).drop(columns="geometry").sort_values(key, ignore_index=True)[list(got.columns.drop(["district", "geometry"]))],
                                  check_exact=True)
    fs.rm(root, recursive=True)


def test_district_pipelines_to_a_url_stop_with_a_clear_error(tmp_path, run_tmp):
    from _far_municipality import far_municipality

    from gis._errors import AnalysisError
    from gis.parallel import run_municipality

    with pytest.raises(AnalysisError, match=r"memory://x: the district pipelines write local files"):
        run_municipality(far_municipality(run_tmp), "memory://x", engine="single", steps=["coverage"])
