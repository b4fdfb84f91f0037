"""A built wheel works outside the checkout: it carries layers/*.yaml and the Leaflet assets.

Builds the wheel from a copy of the sources (no network: ``--no-build-isolation``),
installs it with ``--no-deps`` into a fresh venv in a temporary folder whose
dependencies come from this interpreter's site-packages through a ``.pth`` file,
and runs ``python -m gis sample`` and ``python -m gis run`` from outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("gis", "layers", "data/boundaries"):  # the sources setup.py packs
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), "."], src)
    (whl,) = dist.glob("*.whl")
    return whl


def _without_map_sheets(project_yaml: Path) -> None:
    """The project's ``map: sheets: enabled: false`` (the documented switch for bulk runs)."""
    import yaml

    raw = yaml.safe_load(project_yaml.read_text(encoding="utf-8"))
    raw.setdefault("map", {}).setdefault("sheets", {})["enabled"] = False
    project_yaml.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_wheel_carries_layers_and_assets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (ROOT / "layers").glob("*.yaml"):
        assert f"gis/layers/{f.name}" in names
    assert "gis/assets/leaflet/leaflet.js" in names and "gis/assets/leaflet.markercluster/leaflet.markercluster.js" in names


def test_installed_wheel_runs_sample_and_run_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)], tmp_path)
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip())
    (site / "_main_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GIS_TEST_PROJECT")} | {"GIS_PROGRESS": "0"}
    where = _run([str(py), "-c", "import gis, gis.settings as s; print(gis.__file__); print(s.LAYERS_DIR)"], tmp_path, env)
    gis_file, layers_dir = where.stdout.split()
    assert Path(gis_file).is_relative_to(venv) and Path(layers_dir).is_relative_to(venv)
    _run([str(py), "-m", "gis", "sample", "--out", str(tmp_path / "X"), "--scale", "small"], tmp_path, env)
    _without_map_sheets(tmp_path / "X" / "project.yaml")  # 27 print sheets: tested in test_map_sheets, 3/4 of the run
    _run([str(py), "-m", "gis", "run", "--project", str(tmp_path / "X"), "--out", str(tmp_path / "OUT"), "--quiet"],
         tmp_path, env)
    summary = json.loads((tmp_path / "OUT" / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps_run"][0] == "load" and summary["sites_total"] > 0
    assert (tmp_path / "OUT" / "map.png").exists() and not (tmp_path / "OUT" / "map_sheets").exists()
    html = (tmp_path / "OUT" / "map.html").read_text(encoding="utf-8")
    assert "unpkg.com" not in html and "cdn.jsdelivr" not in html  # the Leaflet assets came from the wheel
