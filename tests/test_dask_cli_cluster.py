"""A real (if small) Dask cluster: a scheduler and two workers started from the command
line on 127.0.0.1 (``dask scheduler``, ``dask worker``; not a LocalCluster object), running
a three-district municipality far from Chongqing (Ürümqi, three CRSs and conventions,
one district stored outside the municipal folder). Every output file equals the
single-process engine's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    with log.open("w") as fh:
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, cwd=ROOT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop the processes this test started (their own process groups), workers first."""
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in reversed(procs):
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


@pytest.fixture
def cli_cluster(tmp_path):
    """``dask scheduler --host 127.0.0.1`` and two ``dask worker`` processes; yields the scheduler file."""
    sched_file = tmp_path / "scheduler.json"
    procs = [_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--scheduler-file", str(sched_file)], tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 30
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sched_file.exists(), (tmp_path / "scheduler.log").read_text()
        for k in range(2):
            procs.append(_start(["worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--nthreads", "1",
                                 "--no-dashboard", "--memory-limit", "2GiB", "--name", f"w{k}"], tmp_path / f"worker{k}.log"))
        yield sched_file
    finally:
        _stop(procs)
        assert all(p.poll() is not None for p in procs)


def test_far_municipality_on_a_command_line_cluster_equals_single_process(tmp_path, cli_cluster, run_tmp):
    from _dask_compare import assert_same_outputs, read_layer
    from _far_municipality import far_municipality
    from distributed import Client

    from gis.parallel import run_municipality

    muni = far_municipality(run_tmp)
    steps: list[str] = []  # the municipal analyses only: the district steps would take minutes on a shared 2-core machine
    single = run_municipality(muni, tmp_path / "single", engine="single", steps=steps)
    address = json.loads(cli_cluster.read_text())["address"]
    assert address.startswith("tcp://127.0.0.1:")
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in workers)
        dask_ = run_municipality(muni, tmp_path / "dask", engine="dask", client=client, steps=steps)
        assert len(client.scheduler_info()["workers"]) == 2  # the workers outlived the job (nothing crashed)
    # the metric CRS comes from the districts: CGCS2000 3° GK zone of 87°E (Ürümqi), not Chongqing's
    assert single["metric_crs"] == dask_["metric_crs"] == "EPSG:4538"
    assert single["municipal"] == dask_["municipal"]
    assert single["municipal"]["cross_border_clusters"] == 2  # one planted on each of the two shared borders
    assert assert_same_outputs(tmp_path / "single", tmp_path / "dask") == 3 * 4 * 2
    # three districts of equal size whichever file convention they came in (GCJ-02 converted back)
    sites = read_layer(tmp_path / "dask", "sites")
    assert sites.groupby("district_code").size().nunique() == 1 and sites["district_code"].nunique() == 3
    # the hexagons lie where the districts are
    lon, lat = read_layer(tmp_path / "dask", "hexes").set_crs(dask_["metric_crs"], allow_override=True).to_crs(4326).geometry.union_all().centroid.coords[0]
    assert 87.4 < lon < 88.2 and 43.7 < lat < 44.1
