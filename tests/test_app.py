"""The Streamlit app driven by ``streamlit.testing.v1.AppTest``, and its upload guard.

Every page is rendered; parameters are changed and the numbers the app shows are
compared with the library's own results for the same parameters; a parameter
re-runs only the analysis that reads it.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from gis import app_support as sup
from gis import settings
from gis._errors import InputError

APP = str(settings.PACKAGE_ROOT / "app.py")
RUN_ONE_STEP = sup.run_one_step  # the library call, wrapped by the recorder below


@pytest.fixture(scope="module")
def district(sample_project: Path):
    from gis.district import load_district

    return load_district(sample_project)


@pytest.fixture()
def app(sample_project: Path, monkeypatch: pytest.MonkeyPatch):
    from streamlit.testing.v1 import AppTest

    if sample_project.resolve() != settings.SAMPLE_PROJECT_DIR.resolve():
        monkeypatch.setenv("GIS_PROJECT", str(sample_project))
    else:
        monkeypatch.delenv("GIS_PROJECT", raising=False)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


class Recorder:
    """Spy on the library calls the app makes: each step run (a cache miss) and its output."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.outputs: dict[tuple[str, str], sup.StepOutput] = {}
        self.in_worker: dict[str, bool] = {}

    def __call__(self, step, district, out, context=None, background=None):
        self.calls[step] += 1
        self.in_worker.setdefault(step, background is not None)  # the step's first run
        result = RUN_ONE_STEP(step, district, out, context, background)
        skey = Path(out).name.split("-")[1]
        self.outputs[(step, skey)] = result
        return result

    def output(self, step: str, params: sup.AppParams) -> sup.StepOutput:
        """The library's result for ``step`` under ``params`` (as run for the app)."""
        return self.outputs[(step, sup.step_key(step, params.overrides()))]


@pytest.fixture(scope="module", autouse=True)
def recorder() -> Recorder:
    """Installed before the first app run of this module (the cache is per process)."""
    rec = Recorder()
    mp = pytest.MonkeyPatch()
    mp.setattr(sup, "run_one_step", rec)
    yield rec
    mp.undo()


@pytest.fixture()
def step_calls(recorder: Recorder) -> Counter:
    """Steps the app runs during one test (cache misses)."""
    before = Counter(recorder.calls)

    class Delta(Counter):
        def __getitem__(self, k):  # type: ignore[override]
            return recorder.calls[k] - before[k]

    return Delta()


def metric(at, label_start: str) -> str:
    for m in at.metric:
        if m.label.startswith(label_start):
            return m.value
    raise AssertionError(f"no metric {label_start!r}: {[m.label for m in at.metric]}")


def open_tab(at, label: str):
    """Open one tab (the app runs only the open tab's page) and rerun."""
    at.session_state["tab"] = label
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at) -> str:
    parts = [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.markdown]
    parts += [e.value for e in at.caption] + [e.value for e in at.error]
    return "\n".join(map(str, parts))


def library_outputs(recorder: Recorder, params: sup.AppParams) -> dict[str, sup.StepOutput]:
    """The library's step results for ``params`` (every registered step the app runs)."""
    return {step: recorder.output(step, params) for step in sup.registered_steps()
            if step != "maps" and (step, sup.step_key(step, params.overrides())) in recorder.outputs}


# ------------------------------------------------------------------------- pages


def test_every_page_renders_with_the_library_numbers(app, district, recorder) -> None:
    at = app
    assert [t.label for t in at.tabs] == ["地图 Map", "规划 Planner", "巡查 Inspector", "下载 Downloads", "市级汇总 Municipal"]
    assert metric(at, "网点 Sites") == str(len(district.sites))
    assert metric(at, "剔除行") == str(len(district.rejects))
    lib = library_outputs(recorder, sup.AppParams())
    # the map tab does not wait for the ledgers: they are made when the Inspector or Downloads tab opens
    assert set(lib) == {s for s in sup.registered_steps() if s not in ("maps", "ledgers")}
    if "compliance" in lib:
        assert metric(at, "违规 Violations") == str(lib["compliance"].summary["violations_total"])
    if "ledgers" in sup.registered_steps():
        assert "台账在「巡查」「下载」页生成" in texts(at)
        at = open_tab(at, "巡查 Inspector")
        lib = library_outputs(recorder, sup.AppParams())
        assert set(lib) == {s for s in sup.registered_steps() if s != "maps"}
    open_tab(at, "市级汇总 Municipal")
    assert sup.NEEDS_MUNICIPALITY in texts(at)  # a single district: the roll-up page says it needs a municipality
    if "hotspots" in lib:
        open_tab(at, "巡查 Inspector")
        hs = lib["hotspots"].summary["hotspots"]
        assert metric(at, "聚集区 Clusters") == str(hs["clusters"])
        assert metric(at, "位于四山") == str(hs["clusters_in_four_mountains"])
        if "ledgers" in lib:
            assert metric(at, "问题数 Problems") == str(lib["ledgers"].summary["problems_total"])
    if "coverage" in lib:
        open_tab(at, "规划 Planner")
        # the one coverage figure is the coverage target's (its tiers, network distance, project radius)
        row = next(r for r in lib["coverage"].summary["targets"] if r["metric"] == "population_coverage")
        assert metric(at, "人口覆盖率") == sup.format_share(row["actual"])
    open_tab(at, "下载 Downloads")
    names = " ".join(b.label for b in at.get("download_button"))
    if "ledgers" in lib:
        assert "problem_ledger.xlsx" in names and "summary_table.xlsx" in names
    assert "map.html" in names or any("map.html" in b.label for b in at.button)  # made on request


def test_hot_spots_ran_in_a_worker_and_equal_the_step_run_here(app, district, recorder, tmp_path) -> None:
    """On a cold start the hot-spot step runs in a worker process beside compliance and coverage; its
    answer is the one the step gives in process."""
    if "hotspots" not in sup.registered_steps() or (os.cpu_count() or 1) < 2:
        pytest.skip("no hot-spot step or a single core")
    assert recorder.in_worker["hotspots"] is True
    assert recorder.in_worker["compliance"] is False
    there = recorder.output("hotspots", sup.AppParams())
    here = RUN_ONE_STEP("hotspots", district, tmp_path)
    assert there.error is None and here.error is None
    assert there.summary == here.summary
    a, b = there.context["hotspots"], here.context["hotspots"]
    pd.testing.assert_frame_equal(pd.DataFrame(a.priority.drop(columns="geometry", errors="ignore")),
                                  pd.DataFrame(b.priority.drop(columns="geometry", errors="ignore")))
    assert sorted(p.name for p in there.files) == sorted(p.name for p in here.files)


def test_step_files_are_written_on_a_thread_and_equal_the_files_written_in_line(district, tmp_path) -> None:
    """The app returns a step's results before its GeoPackage is written (on a thread); the files
    it then lists are those a step that writes before returning leaves, with the same rows."""
    import pyogrio

    from gis import steps

    threaded = RUN_ONE_STEP("compliance", district, tmp_path / "threaded")
    assert threaded.error is None and threaded.writes is not None
    _, ctx = steps.run_steps(district, tmp_path / "inline", ["compliance"])
    assert [p.name for p in threaded.files] == sorted(p.name for p in (tmp_path / "inline").iterdir()) == ["sites.gpkg"]
    assert threaded.writes.done()
    for layer, _geom in pyogrio.list_layers(tmp_path / "inline" / "sites.gpkg"):
        a = pyogrio.read_dataframe(threaded.files[0], layer=layer)
        b = pyogrio.read_dataframe(tmp_path / "inline" / "sites.gpkg", layer=layer)
        pd.testing.assert_frame_equal(a, b)
    assert len(pyogrio.read_dataframe(threaded.files[0], layer="sites")) == len(ctx.compliance.sites)


def test_a_failed_file_write_is_one_line_on_the_downloads_list_not_a_traceback(tmp_path) -> None:
    """A step whose writes failed on their thread (a full disk, say) lists no files and says why in one line."""
    from concurrent.futures import Future

    failed: Future[None] = Future()
    failed.set_exception(OSError(28, "No space left on device"))
    done: Future[None] = Future()
    done.set_result(None)
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "coverage.gpkg").write_bytes(b"x")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "sites.gpkg").write_bytes(b"partial")
    outputs = [sup.StepOutput("compliance", folder=tmp_path / "bad", writes=failed),
               sup.StepOutput("coverage", folder=tmp_path / "ok", writes=done)]
    assert [p.name for p in sup.download_files(outputs)] == ["coverage.gpkg"]
    assert outputs[0].write_error == "compliance: OSError: [Errno 28] No space left on device"
    assert outputs[1].write_error is None


def test_cluster_distance_reruns_only_the_hotspot_analysis(app, step_calls, recorder) -> None:
    at = open_tab(app, "巡查 Inspector")
    if "hotspots" not in sup.registered_steps():
        assert f"{sup.STEP_LABELS['hotspots']}: {sup.NOT_AVAILABLE}" in texts(at)
        return
    at.slider(key="eps").set_value(150).run()
    assert not at.exception, [e.value for e in at.exception]
    assert step_calls["hotspots"] == 1
    assert step_calls["compliance"] == 0 and step_calls["coverage"] == 0
    lib = library_outputs(recorder, sup.AppParams(cluster_distance_m=150.0))
    hs = lib["hotspots"].summary["hotspots"]
    assert set(lib["hotspots"].context["hotspots"].clusters.eps.values()) <= {150.0, None}
    assert metric(at, "聚集区 Clusters") == str(hs["clusters"])
    assert metric(at, "反弹 Rebounds") == str(sup.hotspot_overview(lib["hotspots"]).n_rebounds)
    # back to the first value: served from the cache, no new run
    at.slider(key="eps").set_value(0).run()
    assert step_calls["hotspots"] == 1


def planner_share(at) -> float:
    return float(metric(at, "人口覆盖率").rstrip("%")) / 100


def test_service_radius_is_a_threshold_not_a_new_run(app, district, step_calls, recorder) -> None:
    """A radius change runs no step: the planner thresholds cached distances (same numbers as a fresh search)."""
    from gis import app_planner as pl
    from gis import coverage as cov

    at = open_tab(app, "规划 Planner")
    before = planner_share(at)
    at.slider(key="radius").set_value(300).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum(step_calls[s] for s in sup.registered_steps()) == 0
    lib = library_outputs(recorder, sup.AppParams())
    scope = pl.coverage_scope(district, lib["coverage"].summary["targets"])
    sites = cov.eligible_sites(district, lib["compliance"].context["compliance"])
    sites = sites[sites["tier"].astype(str).isin(scope.tiers)]
    fresh = cov.compute_coverage(
        district.population_points(), sites, cov.Standard(scope.standard.tier, scope.standard.mode, 300.0),
        network=lib["coverage"].context["coverage"].networks.get(scope.standard.mode),
        max_snap_m=float(district.project.section("coverage")["max_snap_m"]), townships=district.townships)
    assert metric(at, "人口覆盖率") == sup.format_share(fresh.population_covered_share)
    assert planner_share(at) <= before  # a smaller radius covers no more residents
    assert "300 米" in next(m.label for m in at.metric if m.label.startswith("人口覆盖率"))
    # the coverage target's card is named from the radius in force
    cards = [m.value for m in at.markdown if "gis-card" in m.value]
    assert any("300米步行覆盖人口" in c for c in cards) and not any("500米步行覆盖人口" in c for c in cards)


def test_planner_cards_and_what_if(app, district, step_calls, recorder) -> None:
    at = open_tab(app, "规划 Planner")
    lib = library_outputs(recorder, sup.AppParams())
    rows = lib["coverage"].summary["targets"]
    cards = [m.value for m in at.markdown if "gis-card" in m.value]
    assert len(cards) == len(rows)
    # green exactly when the library says met (the coverage row is re-measured at the same radius: same verdict)
    assert sum("gis-green" in c for c in cards) == sum(bool(r["met"]) for r in rows)
    assert all("现状 Actual" in c and "目标 Target" in c for c in cards)
    from gis import app_planner as pl

    std = pl.coverage_scope(district, rows).standard
    for row in rows:  # every target under its generated name
        assert any(pl.target_title(row, radius_m=std.distance_m, mode=std.mode) in c for c in cards), row
    k0 = int(at.slider(key="k_new_sites").value)
    sentence = next(m.value for m in at.markdown if "最优选址" in m.value)
    assert f"新增 {k0} 个网点" in sentence
    assert ("需要新增" in sentence) or ("无法达到" in sentence)
    at.slider(key="k_new_sites").set_value(k0 + 5).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum(step_calls[s] for s in sup.registered_steps()) == 0  # k reuses the cached matrix
    assert f"新增 {k0 + 5} 个网点" in next(m.value for m in at.markdown if "最优选址" in m.value)
    table = next(df.value for df in at.dataframe if "最近现有网点" in df.value.columns)
    assert len(table) == k0 + 5 and table["镇街"].notna().all()


def test_inspector_township_filter(app, district) -> None:
    at = open_tab(app, "巡查 Inspector")
    if "ledgers" not in sup.registered_steps():
        return
    towns = sorted(district.townships["township"].astype(str))
    at.multiselect(key="f_township").set_value([towns[0]]).run()
    assert not at.exception
    ledger = next(df.value for df in at.dataframe if "镇街" in df.value.columns and "问题类型" in df.value.columns)
    assert set(ledger["镇街"].astype(str)) <= {towns[0]}


def test_inspector_filters_apply_to_list_ledger_and_download(app, district, recorder) -> None:
    at = open_tab(app, "巡查 Inspector")
    lib = library_outputs(recorder, sup.AppParams())
    pr = lib["hotspots"].context["hotspots"].priority
    level = pr["four_mountains_level"].dropna().astype(str).iloc[0]
    at.multiselect(key="f_level").set_value([level]).run()
    assert not at.exception, [e.value for e in at.exception]
    want = pr[pr["four_mountains_level"].astype("string") == level]
    assert metric(at, "聚集区 Clusters") == str(len(want))
    ledger = next(df.value for df in at.dataframe if "问题类型" in df.value.columns)
    assert len(ledger) > 0
    cluster_rows = ledger[ledger["cluster_id"].notna()] if "cluster_id" in ledger else ledger.iloc[0:0]
    assert set(cluster_rows["cluster_id"].astype(str)) <= set(want["cluster_id"].astype(str))
    site_rows = ledger[ledger["cluster_id"].isna()] if "cluster_id" in ledger else ledger
    assert site_rows["问题类型"].astype(str).str.contains(sup.ZONE_ZH[level]).all()
    assert metric(at, "问题数 Problems") == str(len(ledger))
    # a date window: only clusters active in it, and no site rows (they carry no incident date)
    lo, hi = pd.to_datetime(pr["first_date"]).min().date(), pd.to_datetime(pr["last_date"]).max().date()
    at.multiselect(key="f_level").set_value([]).run()
    at.date_input(key="f_dates").set_value((lo, lo + (hi - lo) / 3)).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [df.value for df in at.dataframe if "问题类型" in df.value.columns]
    ledger = shown[0] if shown else pd.DataFrame({"cluster_id": []})
    assert ledger["cluster_id"].notna().all()
    # the download names the same number of rows
    btn = next(b for b in at.get("download_button") if "筛选后的问题台账" in b.label)
    assert f"({len(ledger)} 条" in btn.label


def test_date_range_limits_the_hotspot_window(app, district, recorder) -> None:
    at = open_tab(app, "巡查 Inspector")
    if "hotspots" not in sup.registered_steps() or district.incidents is None:
        return
    lo, hi = district.incidents["date"].min().date(), district.incidents["date"].max().date()
    mid = lo + (hi - lo) / 2
    at.date_input(key="dates").set_value((mid, hi)).run()
    assert not at.exception
    lib = library_outputs(recorder, sup.AppParams(start=mid, end=hi))
    assert metric(at, "聚集区 Clusters") == str(lib["hotspots"].summary["hotspots"]["clusters"])


# ------------------------------------------------------------------------- uploads


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_upload_of_a_project_zip_loads(tmp_path: Path) -> None:
    from gis.district import load_district
    from gis.testing import make_tiny_project

    proj = make_tiny_project(tmp_path / "src" / "tiny").parent
    entries = {f"tiny/{p.relative_to(proj)}": p.read_bytes() for p in proj.rglob("*") if p.is_file()}
    yaml_path = sup.extract_project_zip(_zip(entries), tmp_path / "dest")
    assert yaml_path == (tmp_path / "dest" / "tiny" / "project.yaml").resolve()
    assert len(load_district(yaml_path).sites) == len(load_district(proj).sites)


@pytest.mark.parametrize(
    ("entries", "symlink", "match"),
    [
        ({"../evil.csv": b"x", "project.yaml": b"name: x"}, None, "outside"),
        ({"/etc/evil.csv": b"x", "project.yaml": b"name: x"}, None, "outside"),
        ({"a/../../evil.csv": b"x"}, None, "outside"),
        ({"C:/evil.csv": b"x"}, None, "outside"),
        ({"project.yaml": b"name: x", "run.py": b"import os"}, None, "not a data file"),
        ({"project.yaml": b"name: x", "x.sh": b"rm -rf /"}, None, "not a data file"),
        ({"project.yaml": b"name: x"}, "link.csv", "symbolic link"),
        ({"layers.csv": b"a,b"}, None, "no project.yaml"),
    ],
)
def test_upload_rejects_hostile_zips(tmp_path: Path, entries, symlink, match) -> None:
    with pytest.raises(InputError, match=match):
        sup.extract_project_zip(_zip(entries, symlink=symlink), tmp_path / "dest")
    assert not (tmp_path / "evil.csv").exists()


def test_upload_size_limits(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a zip"):
        sup.extract_project_zip(b"PK-not-really", tmp_path / "a")
    data = _zip({"project.yaml": b"name: x", "big.csv": b"0" * 200_000})
    with pytest.raises(InputError, match="limit"):
        sup.extract_project_zip(data, tmp_path / "b", max_bytes=1000)
    with pytest.raises(InputError, match="unpacks to|limit"):  # highly compressible: a zip bomb in small
        sup.extract_project_zip(data, tmp_path / "c", max_unpacked=100_000)
    with pytest.raises(InputError, match="files"):
        sup.extract_project_zip(data, tmp_path / "d", max_files=1)


def test_params_become_section_overrides(district) -> None:
    p = sup.AppParams(service_radius_m=300, cluster_distance_m=120, k_new_sites=5)
    d = sup.with_overrides(district, p.overrides())
    cov = d.project.section("coverage")
    assert cov["service_standards"]["collection_point"]["distance_m"] == 300
    assert cov["service_standards"]["drop_off_point"]["distance_m"] == 300
    assert cov["service_standards"]["transfer_station"] == district.project.section("coverage")["service_standards"]["transfer_station"]
    assert cov["siting"]["k_new"] == 5
    assert d.project.section("hotspots")["clusters"]["eps_m"] == 120
    assert district.project.section("hotspots")["clusters"].get("eps_m") != 120  # the original is untouched
    assert sup.step_key("compliance", p.overrides()) == sup.step_key("compliance", {})
    assert sup.step_key("hotspots", p.overrides()) != sup.step_key("hotspots", {})
