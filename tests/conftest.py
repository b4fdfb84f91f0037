"""Shared fixtures.

``shared_osm``      the real Chongqing OSM layers in ../shared (skips cleanly without them)
``tiny_project``    a minimal district project written by :func:`gis.testing.make_tiny_project`
``sample_project``  the bundled sample district (data/sample_district)
``sample_district`` the bundled sample, loaded once per test session
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
