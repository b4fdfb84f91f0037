"""Shared fixtures.

``shared_osm``      the real Chongqing OSM layers in ../shared (skips cleanly without them)
``tiny_project``    a minimal district project written by :func:`gis.testing.make_tiny_project`
``sample_project``  the bundled sample district (data/sample_district)
``sample_district`` the bundled sample, loaded once per test session
``run_tmp``         a temporary folder shared by every pytest-xdist worker of this run
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GIS_PROGRESS", "0")

from gis import settings  # noqa: E402


@pytest.fixture(scope="session")
def shared_osm() -> Path:
    path = settings.SHARED_OSM_DIR
    if not (path / "road_yuzhong.geojson").exists():
        pytest.skip(f"real OSM data not present at {path} (../shared/data/chongqing_osm)")
    return path


@pytest.fixture()
def tiny_project(tmp_path: Path) -> Path:
    from gis.testing import make_tiny_project

    return make_tiny_project(tmp_path / "tiny")


@pytest.fixture(scope="session")
def sample_project() -> Path:
    """The bundled sample (``GIS_TEST_PROJECT`` may name another project folder)."""
    if os.environ.get("GIS_TEST_PROJECT"):
        return Path(os.environ["GIS_TEST_PROJECT"])
    path = settings.SAMPLE_PROJECT_DIR
    if not (path / "project.yaml").exists():
        pytest.fail(f"the bundled sample district is missing at {path}: run `make sample`")
    return path


@pytest.fixture(scope="session")
def sample_district(sample_project: Path):
    from gis.district import load_district

    return load_district(sample_project)


@pytest.fixture(scope="session")
def run_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every pytest-xdist worker of this test run shares (a plain run: its own base
    folder); pytest removes it with its old runs' temporary folders, so nothing is left in /tmp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
