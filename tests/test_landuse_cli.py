"""`gis validate` / `gis run` stop on land-use and target problems before any analysis."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import yaml

from gis.settings import PACKAGE_ROOT, SAMPLE_PROJECT_DIR


def _project(tmp_path: Path, edit) -> Path:
    proj = yaml.safe_load((SAMPLE_PROJECT_DIR / "project.yaml").read_text(encoding="utf-8"))
    for layer in proj["layers"].values():
        for spec in layer if isinstance(layer, list) else [layer]:
            spec["file"] = str((SAMPLE_PROJECT_DIR / spec["file"]).resolve())
    edit(proj)
    pdir = tmp_path / "proj"
    pdir.mkdir(exist_ok=True)
    (pdir / "project.yaml").write_text(yaml.safe_dump(proj, allow_unicode=True), encoding="utf-8")
    return pdir


def _gis(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gis", *args], capture_output=True, text=True, cwd=PACKAGE_ROOT, timeout=300)


def test_ambiguous_landuse_stops_validate_with_codes(tmp_path):
    lu = gpd.read_file(SAMPLE_PROJECT_DIR / "landuse.gpkg", layer="landuse")
    # a layer holding only codes that GB/T 21010 and 用地用海 2023 both list, 0804 read differently
    lu["地类编码"] = ["0804" if i % 3 == 0 else "0101" if i % 3 == 1 else "0701" for i in range(len(lu))]
    lu.to_file(tmp_path / "lu.gpkg", layer="landuse", driver="GPKG")

    def edit(p):
        p["layers"]["landuse"] = {"file": str(tmp_path / "lu.gpkg"), "layer": "landuse"}

    res = _gis("validate", "--project", str(_project(tmp_path, edit)))
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.count("\n") == 0 and "0804" in err and "科研用地" in err and "教育用地" in err

    def declared(p):
        p["layers"]["landuse"] = {"file": str(tmp_path / "lu.gpkg"), "layer": "landuse", "scheme": "yongdi_yonghai_2023"}

    res = _gis("validate", "--project", str(_project(tmp_path, declared)))
    assert res.returncode == 0, res.stderr
    assert "yongdi_yonghai_2023 (declared)" in res.stdout


def test_unknown_category_stops_run_before_out(tmp_path):
    def edit(p):
        p["targets"].append({"name": "快递柜", "metric": "count", "category": "快递柜", "target": 3})

    out = tmp_path / "out"
    t0 = time.perf_counter()
    res = _gis("run", "--project", str(_project(tmp_path, edit)), "--out", str(out))
    assert res.returncode == 2 and "unknown category '快递柜'" in res.stderr
    assert time.perf_counter() - t0 < 15 and not out.exists()
