"""The app's municipal page (市级汇总) on a two-district mosaic, driven by ``AppTest``.

The page is opened on a ``municipality.yaml`` folder (the app runs each district's
pipeline, then :func:`gis.municipal.rollup`) and on a folder of per-district results;
every figure and table it shows is compared with the library's own roll-up of the
same results.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest

from _municipal_sample import two_district_sample
from gis import app_support as sup
from gis import settings
from gis.municipal import FOUR_RANGES, load_index, rollup

APP = str(settings.PACKAGE_ROOT / "app.py")
CACHE_ROOT = Path(tempfile.gettempdir()) / "gis-app-cache"  # app.CACHE_ROOT


def _metric(at, label_start: str) -> str:
    for m in at.metric:
        if m.label.startswith(label_start):
            return m.value
    raise AssertionError(f"no metric {label_start!r}: {[m.label for m in at.metric]}")


def _table(at, first_column: str, has: str) -> pd.DataFrame:
    for df in at.dataframe:
        cols = list(df.value.columns)
        if cols and cols[0] == first_column and has in cols:
            return df.value
    raise AssertionError(f"no table starting with {first_column!r}")


@pytest.fixture(scope="module")
def muni(run_tmp: Path) -> Path:
    return two_district_sample(run_tmp)


@pytest.fixture(scope="module")
def opened(muni: Path):
    """The app opened on the municipality; its button runs the two districts."""
    from streamlit.testing.v1 import AppTest

    mp = pytest.MonkeyPatch()
    mp.setenv("GIS_PROJECT", str(muni))
    try:
        at = AppTest.from_file(APP, default_timeout=300)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        before = {"buttons": [b.key for b in at.button], "metrics": len(at.metric)}
        at.button(key="run_municipal").click().run()
        assert not at.exception, [e.value for e in at.exception]
    finally:
        mp.undo()
    runs = CACHE_ROOT / "municipal" / sup.folder_key(muni) / "runs"
    return at, runs, before


@pytest.fixture(scope="module")
def library(opened, tmp_path_factory):
    """The library's roll-up of the same per-district results."""
    return rollup(opened[1], tmp_path_factory.mktemp("rollup"))


def _check_page_equals_rollup(at, r) -> None:
    s = r.summary
    assert _metric(at, "区县 Districts") == str(s["districts"]) == "2"
    assert _metric(at, "网点 Sites") == str(s["sites_total"])
    assert _metric(at, "事件记录 Incidents") == str(s["incidents_total"])
    assert _metric(at, "违规 Violations") == str(s["violations_total"])
    assert _metric(at, "全市人口覆盖率") == sup.format_share(s["population_covered_share"])
    assert _metric(at, "聚集区(合并后)") == str(s["clusters_merged"])
    assert _metric(at, "跨区聚集区") == str(s["cross_border_clusters"])
    # targets met per district
    t = _table(at, "区县 District", "达标 Targets met").set_index("代码 Code")["达标 Targets met"]
    assert t.to_dict() == s["targets_met"]
    # coverage by district
    cov = _table(at, "区县 District", "人口覆盖率 Share").set_index("代码 Code")["人口覆盖率 Share"]
    assert cov.to_dict() == s["coverage_by_district"]
    # clusters per 四山 range, cross-border clusters included
    rg = _table(at, "山系 Range", "跨区 Cross-border")
    assert list(rg["山系 Range"]) == list(FOUR_RANGES)
    assert dict(zip(rg["山系 Range"], rg["聚集区 Clusters"])) == s["clusters_by_range"]
    assert dict(zip(rg["山系 Range"], rg["跨区 Cross-border"])) == s["cross_border_by_range"]
    cb = _table(at, "编号 ID", "涉及区县 Districts")
    assert len(cb) == s["cross_border_clusters"] >= 1  # the planted border cluster, merged
    assert set(cb["编号 ID"]) == set(r.clusters.loc[r.clusters["cross_border"], "merged_id"])
    # violations by department
    dep = _table(at, "牵头部门 Lead department", "违规条数 Violations")
    shown = {k: v for k, v in zip(dep["牵头部门 Lead department"], dep["违规条数 Violations"])}
    assert shown == s["violations_by_department"]
    assert sum(shown.values()) == s["violations_total"]
    # the Excel download is the roll-up's workbook
    labels = [b.label for b in at.get("download_button")]
    assert any("municipal_summary.xlsx" in lab for lab in labels)


def test_municipality_asks_before_running_then_shows_the_library_rollup(opened, library, muni) -> None:
    at, runs, before = opened
    assert "run_municipal" in before["buttons"] and before["metrics"] == 0  # nothing shown before the run
    assert sup.municipal_runs_complete(muni, runs)
    assert {p.name for p in (runs / "districts").iterdir() if not p.name.startswith(".")} == {d["code"] for d in load_index(muni)["districts"]}
    _check_page_equals_rollup(at, library)
    assert "地图 Map" not in [t.label for t in at.tabs]  # a municipality has no district pages


def test_folder_of_district_results_shows_the_same_rollup(opened, library) -> None:
    from streamlit.testing.v1 import AppTest

    runs = opened[1]
    assert sup.project_kind(runs) == "runs"
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["source"] = "本地文件夹 Folder on this machine"  # the sidebar choice, set before the first run
    at.session_state["project_path"] = str(runs)
    at.run()
    assert at.radio(key="source").value.startswith("本地") and at.text_input(key="project_path").value == str(runs)
    assert not at.exception, [e.value for e in at.exception]
    assert not [b for b in at.button if b.key == "run_municipal"]  # results are there: no run needed
    _check_page_equals_rollup(at, library)


def test_project_kind(muni, sample_project, tmp_path) -> None:
    assert sup.project_kind(muni) == "municipality"
    assert sup.project_kind(muni / "municipality.yaml") == "municipality"
    assert sup.project_kind(sample_project) == "district"
    assert sup.project_kind(tmp_path) == "district"  # empty folder: not a roll-up source


def test_district_runs_resume_without_rerunning_finished_districts(opened, muni) -> None:
    runs = opened[1]
    called: list[tuple[int, int, str]] = []
    assert sup.municipal_district_runs(muni, runs, on_district=lambda i, n, name: called.append((i, n, name))) == runs
    assert called == []  # every district has its .done marker


@pytest.mark.parametrize("other_succeeds", [True, False])
def test_district_run_held_by_another_session_is_waited_for(muni, tmp_path, monkeypatch, other_succeeds) -> None:
    """Two app sessions press "run" at once: the second waits for the first's district run and uses its
    result (or, when that run failed, runs the district itself) instead of failing on the output lock."""
    import threading
    import time

    from gis import pipeline
    from gis.outdir import atomic_output

    codes = [str(e["code"]) for e in load_index(muni)["districts"]]
    runs = tmp_path / "runs"
    held = runs / "districts" / codes[0]
    ran: list[str] = []

    def fake_run(folder, out, **kw):  # a district run: its outputs appear atomically
        with atomic_output(out) as (tmp, _):  # raises OutputLockedError while another run holds it
            (tmp / "summary.json").write_text("{}", encoding="utf-8")
        ran.append(Path(out).name)

    monkeypatch.setattr(pipeline, "run", fake_run)
    started = threading.Event()

    def other_session() -> None:
        try:
            with atomic_output(held) as (tmp, _):
                started.set()
                time.sleep(0.5)
                if not other_succeeds:
                    raise RuntimeError("the other session's run failed")
                (tmp / "summary.json").write_text('{"by": "other"}', encoding="utf-8")
        except RuntimeError:
            pass

    t = threading.Thread(target=other_session)
    t.start()
    started.wait()
    sup.municipal_district_runs(muni, runs)
    t.join()
    assert ran == (codes[1:] if other_succeeds else codes)
    assert all((runs / "districts" / c / ".done").exists() for c in codes)
    assert ((held / "summary.json").read_text(encoding="utf-8") == '{"by": "other"}') is other_succeeds
