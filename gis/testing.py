"""Public testing helpers (after ``geopandas.testing``).

:func:`make_tiny_project` writes a minimal but complete district project — two
townships, a GCJ-02 site ledger with Chinese headers and one bad row of each kind,
incident records, a four-mountains zone and land use — small enough for unit
tests and for reading by eye. :func:`assert_counts_balance` checks the toolkit's
central promise: every input row is either loaded or rejected with a reason.
:func:`serve_app` runs the Streamlit app on a free loopback port (browser tests and
``benchmarks/bench_app.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import yaml
from shapely.geometry import box

from gis.export import write_csv, write_gpkg

#: Seconds :func:`serve_app` waits for the Streamlit server to answer its health check.
SERVER_START_TIMEOUT_S = 90.0

#: Centre of the tiny district (WGS84), inside Shapingba.
TINY_ORIGIN = (106.40, 29.60)

#: Rows of the tiny ledger that must be rejected: {spreadsheet row: reason}.
TINY_BAD_ROWS: dict[int, str] = {
    7: "missing_coordinates",
    8: "non_numeric_coordinates",
    9: "swapped_lon_lat",
    10: "outside_district",
    11: "duplicate_id",
    12: "unknown_category",
    13: "missing_value",
}


def tiny_positions() -> dict[str, tuple[float, float]]:
    """True WGS84 positions of the tiny ledger's good sites."""
    x0, y0 = TINY_ORIGIN
    return {
        "S001": (x0 + 0.010, y0 + 0.010),  # east township, urban
        "S002": (x0 + 0.020, y0 + 0.020),
        "S003": (x0 - 0.020, y0 + 0.005),  # west township, inside the zone band
        "S004": (x0 + 0.030, y0 - 0.010),
        "S005": (x0 - 0.030, y0 - 0.020),
    }


def make_tiny_project(folder: str | Path, *, ledger_encoding: str = "gb18030") -> Path:
    """Write a tiny district project into ``folder`` and return its ``project.yaml``.

    Layout: two townships split at the origin's longitude (west 镇 / east 街道),
    a 禁建区 band 1 km either side of ``lon = x0 - 0.02`` in the west, land use as
    two parcels (farmland west, residential east), a ledger of 12 rows (5 good,
    7 bad — see :data:`TINY_BAD_ROWS`) in GCJ-02 with Chinese headers, and 4
    incident records in WGS84.
    """
    from gis.coords import wgs84_to_gcj02

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0 = TINY_ORIGIN
    west = box(x0 - 0.05, y0 - 0.05, x0, y0 + 0.05)
    east = box(x0, y0 - 0.05, x0 + 0.05, y0 + 0.05)
    townships = gpd.GeoDataFrame(
        {"镇街名称": ["西镇", "东街道"], "类型": ["镇", "街道"], "常住人口": [20000, 80000], "户数": [7000, 30000]},
        geometry=[west, east],
        crs="EPSG:4490",
    )
    zone = gpd.GeoDataFrame(
        {"名称": ["中梁山"], "管控级别": ["禁建区"]},
        geometry=[box(x0 - 0.03, y0 - 0.05, x0 - 0.01, y0 + 0.05)],
        crs="EPSG:4326",
    ).to_crs("EPSG:4544")
    landuse = gpd.GeoDataFrame(
        {"地类编码": ["0103", "0701"], "地类名称": ["旱地", "城镇住宅用地"]},
        geometry=[west, east],
        crs="EPSG:4326",
    ).to_crs("EPSG:4544")
    write_gpkg({"townships": townships}, folder / "townships.gpkg")
    write_gpkg({"four_mountains": zone}, folder / "zones.gpkg")
    write_gpkg({"landuse": landuse}, folder / "landuse.gpkg")

    pos = tiny_positions()
    ids = list(pos)
    lon, lat = wgs84_to_gcj02(np.array([p[0] for p in pos.values()]), np.array([p[1] for p in pos.values()]))
    rows = []
    tiers = ["回收网点", "中转站", "分拣中心", "分类投放点", "拆解企业"]
    for i, sid in enumerate(ids):
        rows.append([sid, f"网点{i + 1}", tiers[i], "在营", "有", f"{lon[i]:.7f}", f"{lat[i]:.7f}", "120"])
    good_lon, good_lat = f"{lon[0]:.7f}", f"{lat[0]:.7f}"
    rows += [
        ["S006", "缺坐标", "回收网点", "在营", "有", "", good_lat, "50"],
        ["S007", "坐标非数字", "回收网点", "在营", "有", "106.4x", good_lat, "50"],
        ["S008", "经纬度颠倒", "回收网点", "在营", "有", good_lat, good_lon, "50"],
        ["S009", "区外网点", "回收网点", "在营", "有", "107.5", "30.5", "50"],
        ["S001", "重复编号", "回收网点", "在营", "有", good_lon, good_lat, "50"],
        ["S010", "未知层级", "废品收购大户", "在营", "有", good_lon, good_lat, "50"],
        ["S011", "", "回收网点", "在营", "有", good_lon, good_lat, "50"],
    ]
    ledger = pd.DataFrame(rows, columns=["网点编号", "网点名称", "网点层级", "经营状态", "营业执照", "经度", "纬度", "占地面积(㎡)"])
    write_csv(ledger, folder / "sites_ledger.csv", encoding=ledger_encoding)

    incidents = pd.DataFrame(
        {
            "记录编号": ["I1", "I2", "I3", "I4"],
            "发现日期": ["2023-01-05", "2023年2月1日", "2023/03/09", "2023-04-01"],
            "问题类型": ["非法拆解报废机动车", "无照经营", "散乱污", "三合一"],
            "经度": [x0 - 0.02, x0 - 0.021, x0 + 0.01, x0 + 0.02],
            "纬度": [y0, y0 + 0.001, y0, y0 + 0.01],
        }
    )
    write_csv(incidents, folder / "incidents.csv")
    project = {
        "name": "测试区（样例）",
        "sample": True,
        "layers": {
            "sites": {"file": "sites_ledger.csv", "coords": "gcj02"},
            "incidents": {"file": "incidents.csv", "coords": "wgs84"},
            "townships": {"file": "townships.gpkg", "layer": "townships"},
            "zones": [{"file": "zones.gpkg", "layer": "four_mountains", "zone_type": "four_mountains"}],
            "landuse": {"file": "landuse.gpkg", "layer": "landuse"},
        },
        "targets": [{"name": "回收站点数量", "metric": "count", "tiers": ["collection_point"], "target": 2}],
    }
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(project, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def assert_counts_balance(district) -> None:
    """Assert ``loaded + rejected == read`` for every layer read from records."""
    for role, n in district.read_counts.items():
        rejected = int((district.rejects["layer"] == role).sum())
        loaded = district.loaded_counts.get(role, 0)
        assert loaded + rejected == n, f"{role}: loaded {loaded} + rejected {rejected} != read {n}"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_app(app: str | Path, *, env: Mapping[str, str] | None = None, log: str | Path | None = None,
              timeout_s: float | None = None, shipped_config: bool = False) -> Iterator[tuple[str, float]]:
    """``streamlit run app`` on 127.0.0.1 at a free port, headless, usage statistics off.

    ``shipped_config``: no option beyond the port and address, so the app's own
    ``.streamlit/config.toml`` decides the rest (a test that the shipped settings
    keep the app on loopback).

    Yields ``(url, t0)`` once ``/_stcore/health`` answers ``ok`` (``t0``: the
    ``time.perf_counter()`` of the launch, for cold-start timings); stops the server
    on exit. ``env`` replaces the environment; ``log`` receives the server's output.
    Raises ``RuntimeError`` (with the log's tail) when the server exits or is not
    healthy within ``timeout_s`` (default :data:`SERVER_START_TIMEOUT_S`).
    """
    timeout_s = SERVER_START_TIMEOUT_S if timeout_s is None else timeout_s
    port = free_port()
    env = dict(os.environ if env is None else env)
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port), "--server.address", "127.0.0.1"]
    if not shipped_config:
        env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
        cmd += ["--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "wb")) if log is not None else subprocess.DEVNULL
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=Path(app).resolve().parent, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(proc, url, timeout_s, log)
            yield url, t0
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout_s: float, log: str | Path | None) -> None:
    tail = (lambda: Path(log).read_text(errors="replace")[-3000:]) if log is not None else (lambda: "")
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{tail()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not become healthy in {timeout_s:g} s:\n{tail()}")
        time.sleep(0.1)
