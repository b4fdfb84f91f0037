"""Security and data integrity (issue 11): each test reproduces the attack or fault first.

Confinement of uploaded projects, spreadsheet formula injection, resource limits
(dates, YAML aliases, zip bombs), atomic locked output folders (kill / failure /
concurrent run), honest skips, one-line errors, row-level CSV errors, early
validation and no outside requests.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from openpyxl import load_workbook
from rasterio.transform import from_origin

from gis import settings
from gis._errors import CatalogError, GisError, InputError
from gis.app_support import extract_project_zip
from gis.catalog import LayerSpec, load_project
from gis.confine import (
    check_zip_quota,
    enforce_upload_cap,
    escape_markdown,
    prune_sessions,
    redact,
    session_upload_dir,
)
from gis.export import is_formula_like
from gis.io import points_from_table, raster_layer, read_table, vector_layer
from gis.limits import date_window, limit, load_limits
from gis.outdir import OutputLockedError, atomic_output, output_lock
from gis.testing import make_tiny_project

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _zip(files: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ confinement


def _escaping_project(tiny: Path, file: str, where=None) -> str:
    """The tiny project.yaml with the sites file named ``file`` and every other layer through ``where``."""
    raw = yaml.safe_load((tiny / "project.yaml").read_text(encoding="utf-8"))
    for role, entry in raw["layers"].items():
        for item in entry if isinstance(entry, list) else [entry]:
            item["file"] = file if role == "sites" else (where(tiny / item["file"]) if where else item["file"])
    return yaml.safe_dump(raw, allow_unicode=True)


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_uploaded_project_cannot_read_outside_its_folder(tmp_path, how):
    tiny = make_tiny_project(tmp_path / "tiny").parent
    target = tiny / "sites_ledger.csv"  # a real, readable file outside the upload
    dest = tmp_path / "uploads" / "session-a"
    rel = os.path.relpath(target, dest)
    file = rel if how == "dotdot" else str(target)
    where = (lambda p: os.path.relpath(p, dest)) if how == "dotdot" else str
    # the attack: a zip holding only project.yaml that names files outside the upload
    yaml_path = extract_project_zip(_zip({"project.yaml": _escaping_project(tiny, file, where)}), dest)
    assert load_project(yaml_path).spec("sites").path == target.resolve()  # unconfined: it would read it
    with pytest.raises(CatalogError) as err:
        load_project(yaml_path, confined=True)
    msg = str(err.value)
    assert re.search(r"key .layers\.\w+\.file.", msg) and "project folder" in msg
    assert "uploads" not in msg and "session-a" not in msg  # the server's upload folder is never shown


def test_link_leading_outside_is_refused_and_missing_file_reveals_no_path(tmp_path):
    tiny = make_tiny_project(tmp_path / "tiny").parent
    import shutil

    proj = shutil.copytree(tiny, tmp_path / "up")
    (proj / "sites_ledger.csv").unlink()
    (proj / "ledger.csv").symlink_to(tiny / "sites_ledger.csv")  # a link inside pointing outside
    (proj / "project.yaml").write_text(_escaping_project(tiny, "ledger.csv"), encoding="utf-8")
    with pytest.raises(CatalogError, match="link leading outside"):
        load_project(proj, confined=True)
    (proj / "project.yaml").write_text(_escaping_project(tiny, "nope.csv"), encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_project(proj, confined=True)
    assert "nope.csv" in str(err.value) and str(proj) not in str(err.value)
    assert redact(f"{proj}/a.csv: bad", proj) == "a.csv: bad"


def test_local_folder_mode_answers_the_same_whether_a_server_path_exists_or_not(tmp_path):
    """The app's "folder on this machine" mode: one text for missing, unreadable, non-project and outside paths."""
    from gis.app_support import is_openable_project
    from gis.confine import LOCAL_FOLDER_REFUSED, LocalFolderError, open_local_folder

    tiny = make_tiny_project(tmp_path / "tiny").parent
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "project.yaml").write_text("name: x\n", encoding="utf-8")
    locked.chmod(0)
    probes = [
        tmp_path / "no" / "such" / "folder",  # does not exist
        tmp_path,                             # exists, holds no project
        Path(__file__),                       # an existing file that is not a project
        locked / "inner",                     # below a folder it cannot read
        "/etc",                               # an existing system folder
        f"{tiny}\n/etc",                     # control characters
    ]
    answers = set()
    try:
        for probe in probes:
            with pytest.raises(LocalFolderError) as err:
                open_local_folder(str(probe), is_openable_project)
            answers.add(str(err.value))
        with pytest.raises(LocalFolderError) as err:  # a real project, but outside the allowed roots
            open_local_folder(str(tiny), is_openable_project, roots=[tmp_path / "elsewhere"])
        answers.add(str(err.value))
    finally:
        locked.chmod(0o755)
    assert answers == {LOCAL_FOLDER_REFUSED}
    assert str(tmp_path) not in LOCAL_FOLDER_REFUSED
    assert open_local_folder(str(tiny), is_openable_project) == tiny.resolve()
    assert open_local_folder(str(tiny / "project.yaml"), is_openable_project, roots=[tmp_path]) == (tiny / "project.yaml").resolve()


def test_app_local_folder_mode_shows_the_same_line_for_missing_and_existing_paths(tmp_path):
    """In the app: a missing path and an existing non-project folder get the same error line."""
    from streamlit.testing.v1 import AppTest

    from gis.confine import LOCAL_FOLDER_REFUSED, escape_markdown

    shown = []
    for probe in (tmp_path / "no" / "such" / "folder", tmp_path):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["source"] = "本地文件夹 Folder on this machine"
        at.session_state["project_path"] = str(probe)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown.append([e.value for e in at.error])
    assert shown[0] == shown[1] == [escape_markdown(LOCAL_FOLDER_REFUSED)]
    assert str(tmp_path) not in shown[0][0]


def test_local_folder_roots_come_from_limits_yaml():
    from gis.confine import local_roots
    from gis.limits import load_limits

    assert local_roots() is None and load_limits()["local_folders"]["roots"] is None  # bundled: any folder
    table = {**load_limits(), "local_folders": {"roots": ["/srv/gis"]}}
    assert local_roots(table) == (Path("/srv/gis").resolve(),)


def test_zip_bomb_by_ratio_is_refused_before_extraction(tmp_path):
    bomb = _zip({"project.yaml": "name: x\n", "sites.csv": b"0" * (40 * 2**20)})
    assert len(bomb) < 2**20  # under 1 MiB uploaded …
    with pytest.raises(InputError, match="upload.max_ratio"):
        extract_project_zip(bomb, tmp_path / "u")
    assert not any((tmp_path / "u").rglob("sites.csv"))
    table = load_limits()
    table["upload"]["max_zip_mib"] = 0.5
    with pytest.raises(InputError, match="upload.max_zip_mib"):
        check_zip_quota(zipfile.ZipFile(io.BytesIO(bomb)), "u.zip", table, uploaded_bytes=2**20)
    table["upload"]["max_entries"] = 2
    with pytest.raises(InputError, match="upload.max_entries"):
        check_zip_quota(zipfile.ZipFile(io.BytesIO(_zip({"a.csv": "1", "b.csv": "2", "c.csv": "3"}))), "u.zip", table)


def test_session_upload_folders_are_replaced_pruned_and_capped(tmp_path):
    base = tmp_path / "uploads"
    a = session_upload_dir(base, "A")
    (a / "old.csv").write_bytes(b"x" * 10)
    a2 = session_upload_dir(base, "A")  # next upload of the session: the previous one is gone
    assert a2 == a and not (a / "old.csv").exists()
    b = session_upload_dir(base, "../B")
    assert b.parent == base  # a session id can never name a path
    assert prune_sessions(base, ["A"]) == [b]
    table = load_limits()
    table["upload"]["max_total_mib"] = 1
    old = session_upload_dir(base, "old")
    (old / "big.bin").write_bytes(b"0" * (2 * 2**20))
    os.utime(old, (1, 1))
    (a / "new.bin").write_bytes(b"0" * 1000)
    assert enforce_upload_cap(base, keep=a, table=table) == [old]
    assert a.exists()


def test_markdown_in_keys_and_entry_names_is_escaped():
    text = escape_markdown("**[点我](http://evil)** <img src=x>\n# 标题")
    assert "\n" not in text
    for sign in ("*", "[", "]", "(", ")", "<", ">", "#"):
        assert all(text[i - 1] == "\\" for i, ch in enumerate(text) if ch == sign)


def test_streamlit_config_makes_no_outside_request():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert cfg["browser"]["gatherUsageStats"] is False


def test_upload_quotas_come_from_limits_yaml_only():
    """No upload constant in code: the app's zip limits, Streamlit's own cap and the quotas agree."""
    import ast

    from gis.limits import MIB, limit, upload_limits

    lim = upload_limits()
    assert lim.max_zip_bytes == int(limit("upload", "max_zip_mib") * MIB)
    assert lim.max_entries == limit("upload", "max_entries")
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert cfg["server"]["maxUploadSize"] == limit("upload", "max_zip_mib")
    tree = ast.parse((ROOT / "gis" / "app_support.py").read_text(encoding="utf-8"))
    consts = [t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)]
    assert not [c for c in consts if c.startswith("MAX_")]



# ------------------------------------------------------------- spreadsheets


FORMULAS = ['=HYPERLINK("http://evil.example","点我")', "+1+1", "-2+3", "@SUM(1,2)", "\t=1"]


def _poisoned_project(folder: Path) -> Path:
    yaml_path = make_tiny_project(folder)
    ledger = pd.read_csv(folder / "sites_ledger.csv", encoding="gb18030", dtype=str)
    ledger.loc[0, "网点名称"] = FORMULAS[0]
    ledger.loc[1, "网点名称"] = FORMULAS[1]
    ledger["经营地址"] = FORMULAS[3]
    ledger.loc[6, "经度"] = "=1+1"  # S007, non-numeric longitude: goes to rejects.csv as the rejected value
    ledger.to_csv(folder / "sites_ledger.csv", index=False, encoding="gb18030")
    town = gpd.read_file(folder / "townships.gpkg")
    town.loc[1, "镇街名称"] = "=2+2"
    town.to_file(folder / "townships.gpkg", layer="townships")
    raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    raw["name"] = "=cmd|' /C calc'!A0"
    yaml_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return yaml_path


def test_no_formula_in_any_workbook_or_csv_the_run_writes(tmp_path):
    from gis.pipeline import run

    out = tmp_path / "out"
    yaml_path = _poisoned_project(tmp_path / "p")
    _without_map_sheets(yaml_path)  # the print sheets write no workbook or CSV
    run(yaml_path, out, progress=False)
    books = list(out.rglob("*.xlsx"))
    tables = list(out.rglob("*.csv"))
    assert {"problem_ledger.xlsx", "survey_form.xlsx", "summary_table.xlsx"} <= {b.name for b in books}
    assert "rejects.csv" in {t.name for t in tables}
    seen = []
    for book in books:
        with zipfile.ZipFile(book) as zf:
            for name in zf.namelist():
                if name.startswith("xl/worksheets/"):
                    assert b"<f>" not in zf.read(name) and b"<f " not in zf.read(name), (book.name, name)
        for ws in load_workbook(book).worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    assert cell.data_type != "f", (book.name, ws.title, cell.coordinate)
                    if isinstance(cell.value, str) and is_formula_like(cell.value):
                        seen.append(cell.value)
    # township name, address and district name reached the workbooks — as text cells
    assert {"=2+2", FORMULAS[3]} <= set(seen) and any(v.startswith("=cmd") for v in seen)
    for table in tables:
        with table.open(encoding="utf-8-sig", newline="") as fh:
            cells = [c for row in csv.reader(fh) for c in row]
        assert not [c for c in cells if is_formula_like(c)], table.name
    rejects = (out / "rejects.csv").read_text(encoding="utf-8-sig")
    assert "'=1+1" in rejects


# ------------------------------------------------------------ resource limits


def test_implausible_dates_are_rejected_with_reason(tmp_path):
    lo, hi = date_window()
    assert lo == pd.Timestamp(str(limit("dates", "min")))
    path = tmp_path / "inc.csv"
    dates = ["1000-01-01", "1900-01-01", "2099-01-01", "9999-12-31", "2023-05-01"]
    pd.DataFrame(
        {"记录编号": [f"I{i}" for i in range(5)], "发现日期": dates, "问题类型": ["无照经营"] * 5,
         "经度": [106.4] * 5, "纬度": [29.6] * 5}
    ).to_csv(path, index=False)
    layer, rejects, n, _ = points_from_table(
        LayerSpec(role="incidents", path=path, format="csv", key="layers.incidents", coords="wgs84")
    )
    assert n == 5 and len(layer) == 1 and len(rejects) == 4
    assert rejects["row"].tolist() == [2, 3, 4, 5]
    assert rejects["detail"].str.contains("implausible date").all()
    assert rejects["detail"].str.contains("limits.yaml").all()


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\nname: 区\nlayers: {}\n"
    assert len(text.encode()) < 2048
    (tmp_path / "project.yaml").write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(CatalogError, match="max_expanded_nodes"):
        load_project(tmp_path)
    assert time.perf_counter() - t0 < 5


def test_yaml_alias_uses_are_counted_per_reference():
    """gis.safeyaml.alias_uses: each *name counts once, anchors and plain repeats do not (libyaml or PyYAML composer)."""
    import yaml

    from gis import safeyaml

    def uses(text: str) -> int:
        return safeyaml.alias_uses(safeyaml._LOADER(text).get_single_node())

    assert uses("a: 1\nb: [1, 1, 1]\nc: {x: 1}") == 0
    assert uses("a: &x [1, 2]\nb: *x\nc: [*x, *x]") == 3
    assert uses("base: &b {k: 1}\nuse:\n  <<: *b\n  j: 2") == 1
    assert uses("s: &s v\nt: *s") == 1
    for text in ("a: &x [1, 2]\nb: *x\nc: [*x, *x]", "base: &b {k: 1}\nuse:\n  <<: *b\n  j: 2"):
        assert safeyaml.safe_load_bounded(text, safeyaml.YamlLimits(max_bytes=10_000, max_aliases=10,
                                                                    max_expanded_nodes=100)) == yaml.safe_load(text)


def test_oversized_raster_is_refused_before_reading(tmp_path):
    path = tmp_path / "lu.tif"
    with rasterio.open(path, "w", driver="GTiff", height=20, width=20, count=1, dtype="uint8",
                       crs="EPSG:4544", transform=from_origin(500000, 3300000, 10, 10)) as dst:
        dst.write(np.full((20, 20), 7, np.uint8), 1)
    limits = settings.LAYERS_DIR / "limits.yaml"
    assert "max_raster_cells" in limits.read_text(encoding="utf-8")
    from gis.limits import check_size

    with pytest.raises(GisError, match="analysis.max_raster_cells"):
        check_size(400, "analysis", "max_raster_cells", "raster cells", {"analysis": {"max_raster_cells": 100}})


# ------------------------------------------------------------ one-line errors


def test_unclosed_and_nan_polygons_become_rejected_rows(tmp_path):
    ring = [[106.40, 29.60], [106.41, 29.60], [106.41, 29.61], [106.40, 29.61]]
    feats = [
        {"type": "Feature", "properties": {"名称": "闭合"}, "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}},
        {"type": "Feature", "properties": {"名称": "未闭合"}, "geometry": {"type": "Polygon", "coordinates": [ring]}},
        {"type": "Feature", "properties": {"名称": "NaN"}, "geometry": {"type": "Polygon", "coordinates": [[ring[0], ["NaN", 29.6], ring[2], ring[0]]]}},
    ]
    import json

    text = json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False).replace('"NaN"', "NaN")
    path = tmp_path / "zones.geojson"
    path.write_text(text, encoding="utf-8")
    spec = LayerSpec(role="zones", path=path, format="geojson", key="layers.zones", zone_type="four_mountains", coords="wgs84")
    layer, rejects, n, _ = vector_layer(spec)
    assert n == 3 and len(layer) == 1 and layer["name"].tolist() == ["闭合"]
    assert dict(zip(rejects["row"], rejects["reason"])) == {2: "invalid_geometry", 3: "invalid_geometry"}
    assert "not closed" in rejects["detail"].iloc[0] and "NaN" in rejects["detail"].iloc[1]


def test_raster_without_georeferencing_is_one_line(tmp_path):
    path = tmp_path / "lu.tif"
    with pytest.warns(Warning):
        with rasterio.open(path, "w", driver="GTiff", height=4, width=4, count=1, dtype="uint8") as dst:
            dst.write(np.ones((4, 4), np.uint8), 1)
    with pytest.raises(InputError, match="no georeferencing") as err:
        raster_layer(LayerSpec(role="landuse", path=path, format="tif", key="layers.landuse", coords="EPSG:4544", classes="gbt21010"))
    assert err.value.path == str(path) and "\n" not in str(err.value)


def test_fake_xlsx_and_missing_dbf_name_the_file(tmp_path):
    fake = tmp_path / "台账.xlsx"
    fake.write_bytes(_zip({"hello.txt": "not a workbook"}))  # a zip, but no workbook inside
    with pytest.raises(InputError, match="not a readable .xlsx") as err:
        read_table(LayerSpec(role="sites", path=fake, format="xlsx", key="layers.sites", coords="wgs84"))
    assert err.value.path == str(fake) and "KeyError: 'zip'" not in str(err.value)
    shp = tmp_path / "zones.shp"
    gpd.GeoDataFrame({"名称": ["a"]}, geometry=[__import__("shapely").box(0, 0, 1, 1)], crs="EPSG:4544").to_file(shp)
    shp.with_suffix(".dbf").unlink()
    with pytest.raises(InputError, match="dbf") as err:
        vector_layer(LayerSpec(role="zones", path=shp, format="shp", key="layers.zones", zone_type="four_mountains"))
    assert err.value.path.endswith("zones.dbf")


def test_csv_row_with_extra_unquoted_comma_is_rejected_and_rest_loads(tmp_path):
    path = tmp_path / "ledger.csv"
    path.write_text(
        "网点编号,网点名称,网点层级,经度,纬度\n"
        "A1,红星回收站,回收网点,106.41,29.61\n"
        "A2,绿源,中转站,回收网点,106.42,29.62\n"
        "A3,废品分类点,分类投放点,106.43,29.63\n",
        encoding="utf-8",
    )
    layer, rejects, n, _ = points_from_table(LayerSpec(role="sites", path=path, format="csv", key="layers.sites", coords="wgs84"))
    assert n == 3 and layer["site_id"].tolist() == ["A1", "A3"]
    assert rejects[["file", "row"]].values.tolist() == [[str(path), 3]]
    assert "6 fields where the file has 5" in rejects["detail"].iloc[0]


# ------------------------------------------------------------ honest skips


def test_all_nodata_landuse_lists_skipped_rules_without_bogus_problems(tmp_path):
    from gis.compliance import RuleTable, check_sites
    from gis.district import load_district

    yaml_path = make_tiny_project(tmp_path / "p")
    d = load_district(yaml_path)
    path = tmp_path / "lu.tif"
    with rasterio.open(path, "w", driver="GTiff", height=50, width=50, count=1, dtype="uint8", nodata=255,
                       crs="EPSG:4326", transform=from_origin(106.3, 29.7, 0.004, 0.004)) as dst:
        dst.write(np.full((50, 50), 255, np.uint8), 1)
    raster = raster_layer(LayerSpec(role="landuse", path=path, format="tif", key="layers.landuse", classes="gbt21010"))
    sites = d.sites.to_crs(d.crs)
    res = check_sites(sites, townships=d.townships.to_crs(d.crs), zones=None, landuse=None, landuse_raster=raster)
    rules = RuleTable.default()
    landuse_rules = {r.id for r in rules.enabled if r.condition_type in ("landuse_unknown", "landuse_not_allowed")}
    receptor_rules = {r.id for r in rules.enabled if r.condition_type == "near_receptor" and r.condition["receptor"] != "water_source"}
    assert landuse_rules | receptor_rules <= set(res.skipped_rules)
    assert all("nodata" in res.skipped_rules[r] for r in landuse_rules | receptor_rules)
    assert not set(res.violations["rule_id"]) & (landuse_rules | receptor_rules)
    assert res.summary()["compliance_skipped_rules"] == dict(res.skipped_rules)


# ------------------------------------------------------------ atomic outputs


def _python(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "GIS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([PY, *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _cli(*args: str, **kw) -> subprocess.Popen:
    return _python("-m", "gis", *args, **kw)


#: ``gis`` with a one-second pause after the last output and before ``run_manifest.json``
#: (test-side only): the last output's state lasts long enough to be caught and killed.
_PAUSE_BEFORE_MANIFEST = (
    "import sys, time, gis.outdir as o\n"
    "manifest = o.manifest\n"
    "o.manifest = lambda *a, **k: (time.sleep(1.0), manifest(*a, **k))[1]\n"
    "from gis.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _cli_pausing(*args: str, **kw) -> subprocess.Popen:
    return _python("-c", _PAUSE_BEFORE_MANIFEST, *args, **kw)


def _kill_when(proc: subprocess.Popen, tmp_glob: Path, files: int, timeout: float = 600) -> bool:
    """SIGKILL ``proc`` once its temporary output folder holds ``files`` files; False if it ended first."""
    t0 = time.perf_counter()
    while proc.poll() is None and time.perf_counter() - t0 < timeout:
        if sum(1 for d in tmp_glob.parent.glob(tmp_glob.name) for p in d.rglob("*") if p.is_file()) >= files:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        time.sleep(0.02)
    return False


def _without_map_sheets(project_yaml: Path) -> None:
    """``map: sheets: enabled: false`` (the print sheets: a third of a tiny run's CPU, tested in test_map_sheets)."""
    raw = yaml.safe_load(project_yaml.read_text(encoding="utf-8"))
    raw.setdefault("map", {}).setdefault("sheets", {})["enabled"] = False
    project_yaml.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_killed_runs_leave_previous_outputs_byte_identical(tmp_path):
    project = make_tiny_project(tmp_path / "p").parent
    _without_map_sheets(project / "project.yaml")  # every step still runs (map.html, map.png)
    out = tmp_path / "out"
    first = _cli("run", "--project", str(project), "--out", str(out), "--quiet")
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()
    before = _tree_digest(out)
    assert "summary.json" in before and "run_manifest.json" in before
    n = len(before) - 1  # outputs a complete run writes before its manifest
    for files in sorted({1, n // 2, n - 1}):  # early, half-way, last output being written
        proc = _cli_pausing("run", "--project", str(project), "--out", str(out), "--quiet", start_new_session=True)
        assert _kill_when(proc, tmp_path / ".out.tmp-*", files), f"run ended before {files} outputs"
        assert _tree_digest(out) == before, f"killed after {files} of {n} outputs"
    again = _cli("run", "--project", str(project), "--out", str(out), "--quiet")
    assert again.wait(timeout=600) == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.") and not p.name.endswith(".lock")]
    assert leftovers == []  # stale temp folders of the killed runs are cleaned
    import json

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "run_manifest.json").read_text(encoding="utf-8"))
    assert summary["run_id"] == manifest["run_id"]
    assert set(manifest["files"]) == set(_tree_digest(out)) - {"run_manifest.json"}


def test_kill_between_the_two_renames_is_recovered(tmp_path):
    from gis.outdir import recover

    out = tmp_path / "out"
    with atomic_output(out) as (folder, _):
        (folder / "summary.json").write_text("previous", encoding="utf-8")
    before = _tree_digest(out)
    os.replace(out, tmp_path / ".out.old-x")  # state after the first rename of a killed swap
    (tmp_path / ".out.tmp-x").mkdir()
    with output_lock(out):
        recover(out)
    assert _tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_failure_mid_run_or_full_disk_keeps_previous_outputs(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with atomic_output(out) as (folder, _):
        (folder / "summary.json").write_text("old", encoding="utf-8")
    before = _tree_digest(out)
    with pytest.raises(RuntimeError):
        with atomic_output(out) as (folder, _):
            (folder / "summary.json").write_text("new", encoding="utf-8")
            (folder / "district.gpkg").write_text("half", encoding="utf-8")
            raise RuntimeError("step failed")
    assert _tree_digest(out) == before
    with pytest.raises(GisError, match="No space left") as err:
        with atomic_output(out) as (folder, _):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert "previous outputs are kept" in str(err.value)
    assert _tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_read_only_output_folder_is_one_line(tmp_path, monkeypatch):
    import gis.outdir as od

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(od.os, "open", refuse)
    with pytest.raises(GisError, match="cannot be written"):
        with atomic_output(tmp_path / "out"):
            pass


def test_second_concurrent_run_is_refused_by_the_lock(tmp_path):
    project = make_tiny_project(tmp_path / "p").parent
    out = tmp_path / "out"
    with output_lock(out.absolute()):
        proc = _cli("run", "--project", str(project), "--out", str(out), "--quiet")
        assert proc.wait(timeout=600) == 2
        err = proc.stderr.read().decode().strip()
    assert len(err.splitlines()) == 1 and "another run" in err
    assert not out.exists()
    with pytest.raises(OutputLockedError):
        with output_lock(out.absolute()):
            with atomic_output(out):
                pass


# ------------------------------------------------------------ early validation


def _validate(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    return subprocess.run([PY, "-m", "gis", "validate", "--project", str(project)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("content", ["", "<?xml version='1.0'?><osm><node id='1' lat='29.6' lon='106.4'/><way id='2'><nd ref="])
def test_validate_catches_empty_or_truncated_osm(tmp_path, content):
    yaml_path = make_tiny_project(tmp_path / "p")
    (yaml_path.parent / "roads.osm").write_text(content, encoding="utf-8")
    raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    raw["layers"]["roads"] = {"file": "roads.osm"}
    yaml_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    res = _validate(yaml_path.parent)
    assert res.returncode == 2
    assert "roads.osm" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "section, key",
    [("targets", "targets[0].target"), ("coverage", "coverage.service_standards.collection_point.distance_m")],
)
def test_validate_catches_non_numeric_parameters(tmp_path, section, key):
    yaml_path = make_tiny_project(tmp_path / "p")
    raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    if section == "targets":
        raw["targets"][0]["target"] = "abc"
    else:
        raw["coverage"] = {"service_standards": {"collection_point": {"distance_m": "abc"}}}
    yaml_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    res = _validate(yaml_path.parent)
    assert res.returncode == 2
    assert key in res.stderr and "'abc'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    out = tmp_path / "out"
    env = {**os.environ, "GIS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([PY, "-m", "gis", "run", "--project", str(yaml_path.parent), "--out", str(out), "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2 and not out.exists()  # nothing written when validation fails


def test_time_bins_are_bounded_before_allocation():
    from gis.emerging import time_step_index

    dates = pd.Series(pd.to_datetime(["2023-01-05", "2023-03-01"]))
    idx, labels = time_step_index(dates, "month", None, max_steps=120)
    assert labels == ["2023-01", "2023-02", "2023-03"] and idx.tolist() == [0, 2]
    far = pd.Series([pd.Timestamp("1700-01-01"), pd.Timestamp("2023-01-01")])  # past the date window, e.g. from code
    t0 = time.perf_counter()
    idx, labels = time_step_index(far, "month", None, max_steps=120)  # emerging.max_steps: the latest bins only
    assert len(labels) == 120 and labels[-1] == "2023-01" and idx.tolist() == [-1, 119]
    assert time.perf_counter() - t0 < 5


def test_cli_confined_refuses_a_path_outside_in_one_line(tmp_path):
    tiny = make_tiny_project(tmp_path / "tiny").parent
    up = tmp_path / "up"
    up.mkdir()
    (up / "project.yaml").write_text(
        _escaping_project(tiny, "../tiny/sites_ledger.csv", lambda p: f"../tiny/{p.name}"), encoding="utf-8"
    )
    env = {**os.environ, "GIS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    free = subprocess.run([PY, "-m", "gis", "validate", "--project", str(up)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert free.returncode == 0  # the attack works without confinement …
    res = subprocess.run([PY, "-m", "gis", "validate", "--project", str(up), "--confined"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and "leaves the project folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.browser
@pytest.mark.slow
def test_app_makes_no_request_outside_loopback(tmp_path):
    """The app started with only its shipped config: every browser request stays on 127.0.0.1."""
    import urllib.parse

    from gis.testing import serve_app

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium not installed at /usr/bin/chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_") and k != "GIS_PROJECT"}
    env["GIS_PROGRESS"] = "0"
    outside: list[str] = []

    def guard(route):
        host = urllib.parse.urlsplit(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    # shipped_config: no --browser.gatherUsageStats flag, the shipped .streamlit/config.toml must switch it off
    with serve_app(ROOT / "app.py", env=env, log=tmp_path / "server.log", timeout_s=120, shipped_config=True) as (url, _), \
            playwright.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            ctx.route("**/*", guard)
            page = ctx.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector('[data-testid="stApp"]', timeout=60_000)
            end = time.monotonic() + 240
            time.sleep(2)
            while page.locator('[data-testid="stStatusWidget"]').count() and time.monotonic() < end:
                time.sleep(0.5)
            time.sleep(3)  # usage statistics are sent after the first render
        finally:
            ctx.close()
    assert outside == []


def test_hot_spot_grid_size_is_checked_before_allocation():
    from shapely.geometry import Point

    from gis.hotspots import hex_hot_spots

    inc = gpd.GeoDataFrame({"kind": ["x"] * 4, "date": pd.to_datetime(["2023-01-01"] * 4)}, geometry=[Point(500000 + 300 * i, 3300000 + 200 * i) for i in range(4)],
                           crs="EPSG:4544")
    t0 = time.perf_counter()
    with pytest.raises(GisError, match="analysis.max_grid_cells") as err:
        hex_hot_spots(inc, cell_size_m=0.01)
    assert "cell_size_m" in str(err.value) and time.perf_counter() - t0 < 5
