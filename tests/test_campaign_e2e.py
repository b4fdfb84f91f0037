"""Issue 14, done-when: the campaign's weekly loop on the sample district.

Run the sample → export two departments' 问题台账 → fill them as a department
would (rectified with dates, closed, invalid rows) → merge → add incidents at a
closed place → re-run (numbers unchanged, statuses kept, the closed place reopened
as 反弹) → report counts equal the store's. A merge that dies midway leaves the
store as it was. One sample run per module (the fixture), one re-run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from openpyxl import load_workbook

from gis import campaign_forms as cf
from gis.campaign import campaign_params, load_state, store_path
from gis.campaign_store import open_store
from gis.catalog import load_project
from gis.cli import main

STEPS = "compliance,hotspots,ledgers"
DEPTS = ("区规划自然资源局", "区生态环境局")


def _run(project: Path, out: Path) -> None:
    assert main(["run", "--project", str(project), "--out", str(out), "--steps", STEPS, "--quiet"]) == 0


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, sample_project: Path) -> dict:
    """The sample copied, run once, two departments' workbooks exported."""
    root = tmp_path_factory.mktemp("campaign")
    proj = root / "proj"
    shutil.copytree(sample_project, proj, ignore=shutil.ignore_patterns("campaign.gpkg", "campaign_rejects"))
    _run(proj, root / "out1")
    paths = []
    for d in DEPTS:
        paths += cf.export_workbooks(proj, root / "sent", department=d)
    _p, problems, _h = load_state(proj)
    return {"proj": proj, "root": root, "paths": paths, "first": problems}


def _fill(path: Path, edits: dict[int, dict[str, object]], target: Path) -> Path:
    """Write ``edits`` ({data row index: {header: value}}) into a copy of an exported workbook."""
    wb = load_workbook(path)
    ws = wb["问题台账"]
    hdr = next(r[0].row for r in ws.iter_rows(max_row=10) if any(c.value == "问题编号" for c in r))
    col = {c.value: c.column for c in ws[hdr] if c.value}
    for i, values in edits.items():
        for head, v in values.items():
            ws.cell(row=hdr + 1 + i, column=col[head], value=v)
    wb.save(target)
    return target


def _numbers(path: Path) -> list[str]:
    df = pd.read_excel(path, sheet_name="问题台账", header=3, dtype=str)
    return df["问题编号"].tolist()


def test_export_is_each_departments_own_ledger(loop: dict) -> None:
    first = loop["first"]
    for d, path in zip(DEPTS, loop["paths"]):
        nums = _numbers(path)
        mine = first[first["lead"].str.split("、").map(lambda ds, d=d: d in ds)]
        assert sorted(nums) == sorted(mine["number"])
        wb = load_workbook(path)
        ws = wb["问题台账"]
        assert ws.protection.sheet  # locked columns protected
        assert wb["导出信息"].sheet_state == "hidden"


def test_deadlines_inside_the_rectify_phase_never_before_issue(loop: dict) -> None:
    p = campaign_params(loop["proj"])
    ph = p.phase(p.rectify_phase)
    first = loop["first"]
    assert (first["deadline"] >= first["issued"]).all()
    assert first["deadline"].between(ph.start, ph.end).all()


def test_round_trip_merge_rerun_rebound_report(loop: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    proj, root = loop["proj"], loop["root"]
    a, b = loop["paths"]
    na, nb = _numbers(a), _numbers(b)
    proposed = pd.read_excel(b, sheet_name="问题台账", header=3, dtype=str)["建议处置"].iloc[2]
    override = "入园发展" if proposed != "入园发展" else "整治规范"  # the department overrides the proposal
    filled_a = _fill(a, {
        0: {"整改状态": "已整改", "完成时间": "2025-03-10", "整改情况": "已搬离四山禁建区", "责任人": "张三"},
        1: {"整改状态": "已销号", "完成时间": "2025-03-15", "整改情况": "已依法关停取缔并复核"},
        2: {"整改状态": "整改中", "整改措施": "限期办理用地手续"},
        3: {"整改状态": "搞定了"},  # invalid status → rejected
    }, root / "back_a.xlsx")
    filled_b = _fill(b, {
        0: {"整改状态": "已销号"},  # 销号 without 完成时间 / 整改情况 → rejected
        1: {"网点名称": "改过的名字"},  # locked column → rejected
        2: {"整改状态": "已整改", "完成时间": "2025/3/20", "整改情况": "已整改到位", "处置方式": override},
    }, root / "back_b.xlsx")

    # a merge killed midway leaves the store as it was
    project = load_project(proj)
    spath = store_path(project, campaign_params(project))
    with open_store(spath) as s:
        before = s.dump()
    real, calls = cf._apply_row, []

    def dying(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*args, **kw)

    monkeypatch.setattr(cf, "_apply_row", dying)
    with pytest.raises(RuntimeError):
        cf.merge_workbook(proj, filled_a)
    monkeypatch.setattr(cf, "_apply_row", real)
    with open_store(spath) as s:
        assert s.dump() == before
    # …and so does a merge whose process is killed (SIGKILL) in the middle of its transaction
    _merge_killed_midway(proj, filled_a)
    with open_store(spath) as s:
        assert s.dump() == before

    ra = cf.merge_workbook(proj, filled_a, who="区规划自然资源局联络员")
    rb = cf.merge_workbook(proj, filled_b)
    assert set(map(tuple, ra.rejects[["row", "field"]].to_numpy())) == {(8, "整改状态")}
    assert {f for f in rb.rejects["field"]} == {"完成时间", "整改情况", "网点名称"}
    assert rb.rejects["row"].nunique() == 2 and ra.rows_applied == ra.rows_read - 1
    assert Path(rb.rejects_path).is_file()
    _p, after, hist = load_state(proj)
    st = dict(zip(after["number"], after["status"]))
    assert st[na[0]] == "已整改" and st[na[1]] == "已销号" and st[na[2]] == "整改中" and st[nb[2]] == "已整改"
    assert st[na[3]] == st[nb[0]] == "未整改"
    assert after.set_index("number").loc[nb[2], "disposition"] == override
    assert (hist[hist["number"] == na[1]]["source"] == "workbook:back_a.xlsx").any()

    # new incidents at the closed place after its closure, then re-run
    closed = gpd.GeoSeries(gpd.points_from_xy(after.loc[after.number == na[1], "x"], after.loc[after.number == na[1], "y"]),
                           crs=gpd.read_file(root / "out1" / "ledgers.gpkg", layer="problem_ledger").crs).to_crs(4326)
    inc = pd.read_csv(proj / "incidents.csv", dtype=str, encoding="utf-8-sig")
    new = [{**inc.iloc[0].to_dict(), "记录编号": f"XS2025REB{i}", "发现日期": "2025-04-0" + str(i + 1), "处置状态": "待整改",
            "关停日期": None, "经度": f"{closed.x.iloc[0] + 0.0002 * i:.7f}", "纬度": f"{closed.y.iloc[0]:.7f}"}
           for i in range(3)]
    pd.concat([inc, pd.DataFrame(new)]).to_csv(proj / "incidents.csv", index=False, encoding="utf-8-sig")
    _run(proj, root / "out2")
    _p, again, _h = load_state(proj)
    prev = loop["first"].set_index("number")["key"]
    now = again.set_index("number")
    assert (now.loc[prev.index, "key"] == prev).all()  # numbers unchanged for the same problems
    assert now.loc[na[1], "status"] == "反弹"
    assert set(now.loc[na[1], "rebound_incidents"].split("、")) == {"XS2025REB0", "XS2025REB1", "XS2025REB2"}
    assert now.loc[na[0], "status"] == "已整改" and now.loc[na[2], "status"] == "整改中"  # statuses kept

    # the report's counts against the store
    rep = cf.write_report(proj, root / "report", period="2025-04")
    total = rep["total"]
    assert total["问题总数"] == len(again)
    for status in ("未整改", "整改中", "已整改", "已销号", "反弹"):
        assert total[status] == int((again["status"] == status).sum()), status
    open_late = ~again["status"].isin(["已整改", "已销号"]) & (again["deadline"] < "2025-04-30")
    assert total["逾期"] == rep["overdue"] == int(open_late.sum())
    for path in rep["paths"].values():
        assert Path(path).stat().st_size > 0


_KILLER = """
import os, signal, sys
from gis import campaign_forms as cf
real, calls = cf._apply_row, []
def dying(*args, **kw):
    out = real(*args, **kw)
    calls.append(1)
    if len(calls) == 2:  # two rows written inside the open transaction, then the process dies
        os.kill(os.getpid(), signal.SIGKILL)
    return out
cf._apply_row = dying
cf.merge_workbook(sys.argv[1], sys.argv[2])
"""


def _merge_killed_midway(proj: Path, workbook: Path) -> None:
    """Run ``merge_workbook`` in a child process that SIGKILLs itself after two applied rows."""
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _KILLER, str(proj), str(workbook)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def test_forms_of_one_run_agree(loop: dict) -> None:
    """汇总表, 问题台账 and 摸排表 of the first run tell the same story."""
    out = loop["root"] / "out1"
    led = pd.read_excel(out / "problem_ledger.xlsx", header=3, dtype={"问题编号": str})
    summ = pd.read_excel(out / "summary_table.xlsx", header=3)
    surv = pd.read_excel(out / "survey_form.xlsx", header=3, dtype={"问题编号": str})
    body, total = summ[summ["镇街"] != "合计"].set_index("镇街"), summ[summ["镇街"] == "合计"].iloc[0]
    per_town = led.groupby("镇街").size().reindex(body.index, fill_value=0)
    assert (body["问题总数"] == per_town).all() and total["问题总数"] == len(led)
    for status, n in led["整改状态"].value_counts().items():
        assert total[status] == n, status
    for disp, n in led["处置方式"].value_counts().items():
        assert total[disp] == n, disp
    status_of = dict(zip(led["问题编号"], led["整改状态"]))
    for nums, states in zip(surv["问题编号"].fillna(""), surv["整改状态"].fillna("")):
        listed = [n for n in nums.split("；") if n]
        assert all(n in status_of for n in listed)
        assert set(filter(None, states.split("；"))) == {status_of[n] for n in listed}
    inc = gpd.read_file(out / "district.gpkg", layer="incidents")
    assert surv["线索数"].sum() == int((inc["kind"] == "illegal_elv_dismantling").sum())  # every report once
    assert surv["网点名称"].str.startswith("非法拆解点 ").sum() == 0  # real names or addresses, not record ids


def test_app_edit_writes_history(loop: dict) -> None:
    from gis._errors import InputError
    from gis.campaign import apply_edit, overdue, progress

    p, probs, _h = load_state(loop["proj"])
    other = probs[probs["lead"] == "区林业局"]["number"].iloc[0]
    with pytest.raises(InputError, match="整改状态"):
        apply_edit(loop["proj"], other, status="好了", evidence="x", who="app")
    with pytest.raises(InputError, match="unknown 问题编号"):
        apply_edit(loop["proj"], "NO-SUCH", status="整改中", evidence="x", who="app")
    apply_edit(loop["proj"], other, status="整改中", evidence="现场核查已停业", who="区林业局 张三")
    _p, probs, hist = load_state(loop["proj"])
    last = hist.iloc[-1]
    assert (last["number"], last["source"], last["new"], last["who"]) == (other, "app", "整改中", "区林业局 张三")
    by_dept = progress(probs, hist, p, by="department")
    assert by_dept.set_index("单位").loc["区林业局", "整改中"] >= 1
    late = overdue(probs, p, day=pd.Timestamp("2025-06-01").date())
    assert late["逾期天数"].is_monotonic_decreasing and (late["整改时限"] < "2025-06-01").all()


def test_cli_ledger_commands(loop: dict, capsys: pytest.CaptureFixture) -> None:
    proj, root = str(loop["proj"]), loop["root"]
    town = loop["first"]["township"].value_counts().index[0]
    assert main(["ledger", "export", "--project", proj, "--out", str(root / "town"), "--township", town]) == 0
    sent = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert sent.name == f"问题台账_{town}.xlsx"
    bad = _fill(sent, {0: {"整改状态": "已销号", "完成时间": "2099-01-01", "整改情况": "x"}}, root / "town_back.xlsx")
    assert main(["ledger", "merge", "--project", proj, "--returned", str(bad)]) == 1  # rejected rows → exit 1
    cap = capsys.readouterr()
    assert "rejected: town_back.xlsx, row 5, 完成时间" in cap.err and ", 1 rows rejected" in cap.out
    assert main(["ledger", "report", "--project", proj, "--out", str(root / "rep2"), "--period", "2025-13"]) == 2
    assert "is not YYYY-MM" in capsys.readouterr().err


def test_summary_keeps_problem_types(loop: dict) -> None:
    summ = pd.read_excel(loop["root"] / "out1" / "summary_table.xlsx", header=3)
    led = pd.read_excel(loop["root"] / "out1" / "problem_ledger.xlsx", header=3)
    types = list(led["问题类型"].unique())
    assert set(types) <= set(summ.columns)
    assert (summ[types].sum(axis=1) == summ["问题总数"]).all()  # per 镇街 and in 合计
