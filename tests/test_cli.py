"""End-to-end tests of the command line (``python -m gis``), run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent


def gis(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIS_PROGRESS": "0", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "gis", *args], capture_output=True, text=True, cwd=cwd or ROOT, env=env, timeout=600)


def test_help_lists_commands():
    r = gis("--help")
    assert r.returncode == 0
    for cmd in ("sample", "validate", "run"):
        assert cmd in r.stdout


def test_validate_reports_rejects(tiny_project, tmp_path):
    r = gis("validate", "--project", str(tiny_project.parent), "--rejects", str(tmp_path / "rej.csv"))
    assert r.returncode == 0, r.stderr
    assert "7 rejected row(s)" in r.stdout
    assert "swapped_lon_lat" in r.stdout
    rej = pd.read_csv(tmp_path / "rej.csv")
    assert len(rej) == 7
    strict = gis("validate", "--project", str(tiny_project.parent), "--strict")
    assert strict.returncode == 1


def test_run_writes_outputs_that_balance(tiny_project, tmp_path):
    out = tmp_path / "out"
    r = gis("run", "--project", str(tiny_project), "--out", str(out), "--quiet", "--steps", "")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps_run"] == ["load"]  # an empty --steps runs no analysis
    assert summary["sites_total"] == 5
    assert summary["read"]["sites"] == summary["loaded"]["sites"] + summary["rejects_by_layer"]["sites"]
    assert summary["sites_by_tier"]["collection_point"] == 1
    assert summary["incidents_total"] == 4
    assert summary["rejects"] == 7
    assert summary["coordinate_conversions"]["sites"][0]["from"] == "gcj02"
    rejects = pd.read_csv(out / "rejects.csv")
    assert len(rejects) == 7 and set(rejects.columns) >= {"file", "row", "field", "reason"}
    import pyogrio

    layers = {name for name, _ in pyogrio.list_layers(out / "district.gpkg")}
    assert {"sites", "townships", "incidents", "zones", "landuse"} <= layers


def test_bad_project_gives_one_line_error_not_traceback(tiny_project):
    data = yaml.safe_load(tiny_project.read_text(encoding="utf-8"))
    data["layers"]["sites"]["coords"] = "mars-ish"
    tiny_project.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = gis("run", "--project", str(tiny_project), "--out", str(tiny_project.parent / "o"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "project.yaml" in r.stderr and "layers.sites.coords" in r.stderr


def test_bad_file_names_file_and_field(tiny_project):
    ledger = tiny_project.parent / "sites_ledger.csv"
    df = pd.read_csv(ledger, encoding="gb18030").drop(columns=["网点层级"])
    df.to_csv(ledger, index=False, encoding="gb18030")
    r = gis("validate", "--project", str(tiny_project))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "sites_ledger.csv" in r.stderr and "'tier'" in r.stderr


def test_unknown_step_is_reported(tiny_project, tmp_path):
    r = gis("run", "--project", str(tiny_project), "--out", str(tmp_path), "--steps", "astrology")
    assert r.returncode == 2 and "unknown step" in r.stderr

# the README's main job on the bundled sample: tests/test_baseline.py (one run, compared with the record)
