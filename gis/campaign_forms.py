"""The campaign's round trip: export a unit's 问题台账, merge it back, report progress.

* :func:`export_workbooks` — one workbook per 牵头单位 (department) or 镇街: locked
  columns (问题编号 … 整改时限, protected) and editable ones (整改状态, 整改措施,
  整改情况, 完成时间, 责任人, 处置方式, with drop-down lists); the locked values are
  kept in the store under the workbook's export id (hidden sheet ``导出信息``);
* :func:`merge_workbook` — validates a returned workbook row by row (unknown
  问题编号, invalid 整改状态 / 处置方式 / date, edits to locked columns, 销号 without
  完成时间 and 整改情况) → rejects (file, row, field, reason); applies the other
  rows in one transaction with one history entry per changed field;
* :func:`write_report` — the 汇总表 per 镇街 and per department for a period, the
  overdue list, the 联络员信息表 and a progress chart.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gis import export
from gis._errors import InputError
from gis.campaign import (
    CampaignParams,
    campaign_params,
    dates_between,
    filing_of,
    ledger_frame,
    overdue,
    progress,
    read_contacts,
    state_at,
    store_path,
)
from gis.campaign_disposition import disposition_params
from gis.campaign_store import CampaignStore, open_store
from gis.catalog import load_project

__all__ = ["EDITABLE", "LOCKED", "MergeResult", "export_workbooks", "merge_workbook", "write_report"]

#: Columns a department may not change (checked on merge against the export).
LOCKED: tuple[str, ...] = ("问题编号", "镇街", "网点名称", "经营地址", "问题类型", "问题描述", "依据", "牵头单位",
                           "配合单位", "整改时限", "建议处置", "处置说明")
#: Locked columns compared on merge (the long texts are not: wrapping in Excel may touch them).
LOCKED_CHECKED: tuple[str, ...] = ("镇街", "网点名称", "经营地址", "问题类型", "牵头单位", "整改时限")
#: Columns a department fills in → store field.
EDITABLE: dict[str, str] = {"整改状态": "status", "整改措施": "measure", "整改情况": "progress",
                            "完成时间": "done_date", "责任人": "responsible", "处置方式": "disposition"}
META_SHEET = "导出信息"
SHEET = "问题台账"


def _units(problems: pd.DataFrame, department: str | None, township: str | None) -> dict[str, pd.DataFrame]:
    """``{unit: its problems}``: one department, one 镇街, or every department."""
    leads = problems["lead"].fillna("").astype(str).str.split("、")
    if township:
        return {township: problems[problems["township"] == township]}
    names = [department] if department else sorted({d for ds in leads for d in ds if d})
    return {d: problems[leads.map(lambda ds, d=d: d in ds)] for d in names}


def export_workbooks(
    project_dir: str | Path, out: str | Path, *, department: str | None = None, township: str | None = None,
) -> list[Path]:
    """Write each unit's own 问题台账 (``问题台账_<unit>.xlsx``) into ``out``.

    Raises
    ------
    InputError
        The department or 镇街 has no problem in the store.
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    contacts = read_contacts(project, p)
    paths = []
    with open_store(store_path(project, p)) as store:
        problems = store.problems()
        for unit, rows in _units(problems, department, township).items():
            if not len(rows):
                raise InputError(store.path, f"no problem of '{unit}' in the campaign store",
                                 field="镇街" if township else "牵头单位")
            paths.append(_export_one(store, p, unit, rows, Path(out), contacts))
    return paths


def _export_one(store: CampaignStore, p: CampaignParams, unit: str, rows: pd.DataFrame, out: Path,
                contacts: pd.DataFrame) -> Path:
    table = ledger_frame(rows.reset_index(drop=True))
    table = table[["序号", *LOCKED, *EDITABLE]]
    export_id = uuid.uuid4().hex
    snap = [(str(r["问题编号"]), {c: _norm(r[c]) for c in LOCKED_CHECKED}) for r in table.to_dict("records")]
    with store.transaction() as c:
        store.record_export(c, export_id, snap)
    allowed = disposition_params().allowed
    target = out / f"问题台账_{unit}.xlsx"
    return export.write_excel(
        {SHEET: table}, target,
        title_rows={SHEET: [f"{p.name}问题台账（{unit}）", f"填报日期：{p.today().isoformat()}",
                            f"灰色列由系统下发，请勿修改；请填写整改状态（{'/'.join(p.statuses)}）、整改措施、整改情况、"
                            f"完成时间、责任人、处置方式（{'/'.join(allowed)}）。销号须填写完成时间和整改情况。"]},
        filing=filing_of(contacts, unit),
        finish=lambda wb: _protect(wb, p, allowed, export_id, unit),
    )


def _protect(wb: Any, p: CampaignParams, allowed: tuple[str, ...], export_id: str, unit: str) -> None:
    """Lock the sheet except the editable columns; drop-down lists; the hidden export id."""
    from openpyxl.styles import PatternFill, Protection
    from openpyxl.worksheet.datavalidation import DataValidation

    ws = wb[SHEET]
    hdr = _header_row(ws)
    heads = {str(c.value): c.column_letter for c in ws[hdr] if c.value}
    grey = PatternFill("solid", fgColor="EDEDED")
    last = max(ws.max_row, hdr + 1)
    for name, col in heads.items():
        for (cell,) in ws.iter_rows(min_row=hdr + 1, max_row=last, min_col=ws[f"{col}1"].column,
                                    max_col=ws[f"{col}1"].column):
            if name in EDITABLE:
                cell.protection = Protection(locked=False)
            else:
                cell.fill = grey
    for name, choices in (("整改状态", p.statuses), ("处置方式", allowed)):
        dv = DataValidation(type="list", formula1='"' + ",".join(choices) + '"', allow_blank=True,
                            showErrorMessage=True, error=f"{name}只能填写：{'/'.join(choices)}")
        dv.add(f"{heads[name]}{hdr + 1}:{heads[name]}{last}")
        ws.add_data_validation(dv)
    ws.protection.sheet = True
    ws.protection.formatColumns = ws.protection.formatRows = False
    meta = wb.create_sheet(META_SHEET)
    meta.append(["export_id", export_id])
    meta.append(["unit", unit])
    meta.sheet_state = "hidden"


def _header_row(ws: Any) -> int:
    for row in ws.iter_rows(min_row=1, max_row=min(ws.max_row, 10)):
        if any(str(c.value or "") == "问题编号" for c in row):
            return row[0].row
    raise InputError(ws.title, "no header row with 问题编号 in the first 10 rows", field="问题编号")


def _norm(v: Any) -> str:
    """A cell value as comparable text (dates as YYYY-MM-DD, blanks as "")."""
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return ""
    if isinstance(v, (dt.datetime, pd.Timestamp)):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v).strip()


def _as_date(v: Any) -> str | None:
    """A date cell as YYYY-MM-DD ("" for blank); None when it is not a date."""
    text = _norm(v)
    if not text:
        return ""
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y.%m.%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------------
# Merge
# ---------------------------------------------------------------------------------


@dataclass
class MergeResult:
    """What a merge did: ``changes`` (问题编号, field, old, new), ``rejects`` (file, row, field, reason)."""

    changes: pd.DataFrame
    rejects: pd.DataFrame
    rows_read: int
    rows_applied: int
    rejects_path: Path | None = None
    who: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def read_returned(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, str], str]:
    """(``[(excel row, {header: value})]``, hidden export info, 填报人) of a returned workbook.

    Raises
    ------
    InputError
        Not an .xlsx workbook, or no 问题台账 sheet / header row.
    """
    from openpyxl import load_workbook

    path = Path(path)
    try:
        wb = load_workbook(path, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is one clear line
        raise InputError(path, f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    if SHEET not in wb.sheetnames:
        raise InputError(path, f"no sheet '{SHEET}'", field=SHEET)
    ws = wb[SHEET]
    hdr = _header_row(ws)
    heads = [str(c.value).strip() if c.value is not None else "" for c in ws[hdr]]
    rows = []
    for r in ws.iter_rows(min_row=hdr + 1, values_only=False):
        vals = {h: c.value for h, c in zip(heads, r) if h}
        if any(_norm(v) for v in vals.values()):
            rows.append((r[0].row, vals))
    meta = {}
    if META_SHEET in wb.sheetnames:
        meta = {str(a.value): str(b.value) for a, b in wb[META_SHEET].iter_rows(max_col=2) if a.value}
    who = ""
    for c in ws[2]:
        if isinstance(c.value, str) and c.value.startswith("填报人"):
            who = c.value.split("：", 1)[-1].strip()
    return rows, meta, who


def _check_row(
    vals: Mapping[str, Any], cur: Mapping[str, Any] | None, snap: Mapping[str, Any] | None,
    p: CampaignParams, allowed: tuple[str, ...],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Reasons to reject one row ``[(field, reason)]`` and, when none, its new editable values."""
    number = _norm(vals.get("问题编号"))
    if not number:
        return [("问题编号", "missing 问题编号")], {}
    if cur is None:
        return [("问题编号", f"unknown 问题编号 '{number}'")], {}
    bad: list[tuple[str, str]] = []
    ref = snap if snap is not None else {c: _norm(cur.get(c)) for c in LOCKED_CHECKED}
    for col in LOCKED_CHECKED:
        if col in vals and _norm(vals[col]) != _norm(ref.get(col)):
            bad.append((col, f"locked column changed ('{ref.get(col)}' → '{_norm(vals[col])}')"))
    new = {k: _norm(vals.get(k)) for k in EDITABLE if k in vals}
    status = new.get("整改状态", "")
    if status and status not in p.statuses and status != cur.get("整改状态"):
        bad.append(("整改状态", f"invalid status '{status}'; one of {'/'.join(p.statuses)}"))
    if new.get("处置方式") and new["处置方式"] not in allowed:
        bad.append(("处置方式", f"invalid disposition '{new['处置方式']}'; one of {'/'.join(allowed)}"))
    if "完成时间" in vals:
        d = _as_date(vals["完成时间"])
        if d is None:
            bad.append(("完成时间", f"not a date: '{_norm(vals['完成时间'])}'"))
        elif d and (d < str(cur.get("下发日期") or "") or d > dt.date.today().isoformat()):
            bad.append(("完成时间", f"{d} lies before the issue date {cur.get('下发日期')} or in the future"))
        else:
            new["完成时间"] = d
    if status == p.status_closed:
        for need in p.close_requires:
            if not (new.get(need) or _norm(cur.get(need))):
                bad.append((need, f"销号 needs {need}"))
    return bad, new


def _apply_row(store: CampaignStore, c: Any, number: str, cur: Mapping[str, Any], new: Mapping[str, str],
               who: str, source: str, p: CampaignParams) -> list[tuple[str, str, str, str]]:
    """Write one row's changed editable fields and their history; returns the changes."""
    changes = []
    vals = {}
    for col, value in new.items():
        old = _norm(cur.get(col))
        if value == old or (not value and col != "整改状态"):
            continue
        if col == "整改状态" and not value:
            continue
        vals[EDITABLE[col]] = value
        changes.append((number, col, old, value))
    if not vals:
        return []
    store.update_problem(c, number, vals)
    evidence = new.get("整改情况") or _norm(cur.get("整改情况"))
    done = vals.get("done_date") or _norm(cur.get("完成时间"))
    for _n, col, old, value in changes:
        eff = done if col == "整改状态" and value in p.closed_like and done else p.today().isoformat()
        store.log(c, number, who=who, source=source, field=col, old=old, new=value, evidence=evidence, effective=eff)
    return changes


def merge_workbook(project_dir: str | Path, returned: str | Path, *, who: str | None = None) -> MergeResult:
    """Validate a returned workbook and apply its valid rows to the store (one transaction).

    Every row read is either applied (possibly with no change) or in the rejects,
    written to ``<project>/campaign_rejects/<file>.rejects.csv`` (file, row, field,
    reason). A failure while applying rolls the whole merge back.
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    allowed = disposition_params().allowed
    returned = Path(returned)
    rows, meta, filled_by = read_returned(returned)
    who = who or filled_by or meta.get("unit", "") or "unknown"
    rejects: list[dict[str, Any]] = []
    changes: list[tuple[str, str, str, str]] = []
    with open_store(store_path(project, p)) as store:
        cur_all = {r["问题编号"]: r for r in ledger_frame(store.problems()).to_dict("records")}
        snap = store.export_snapshot(meta.get("export_id", "")) if meta.get("export_id") else {}
        seen: set[str] = set()
        good = []
        for excel_row, vals in rows:
            number = _norm(vals.get("问题编号"))
            bad, new = _check_row(vals, cur_all.get(number), snap.get(number) if snap else None, p, allowed)
            if number in seen:
                bad = [("问题编号", f"问题编号 '{number}' appears twice in the workbook")]
            if snap and number in cur_all and number not in snap:
                bad = [("问题编号", f"问题编号 '{number}' was not in this exported workbook")]
            seen.add(number)
            rejects += [{"file": returned.name, "row": excel_row, "field": f, "reason": why} for f, why in bad]
            if not bad:
                good.append((number, new))
        with store.transaction() as c:
            for number, new in good:
                changes += _apply_row(store, c, number, cur_all[number], new, who, f"workbook:{returned.name}", p)
    rej = pd.DataFrame(rejects, columns=["file", "row", "field", "reason"])
    path = None
    if len(rej):
        path = export.write_csv(rej, Path(project.root) / "campaign_rejects" / f"{returned.stem}.rejects.csv")
    return MergeResult(pd.DataFrame(changes, columns=["问题编号", "field", "old", "new"]), rej,
                       len(rows), len(good), path, who)


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------


def period_bounds(period: str | None, p: CampaignParams, problems: pd.DataFrame) -> tuple[dt.date, dt.date]:
    """First and last day of ``YYYY-MM`` (None: campaign start, or first issue, … today).

    Raises
    ------
    InputError
        ``period`` is not ``YYYY-MM``.
    """
    if period:
        try:
            y, m = (int(x) for x in period.split("-"))
            return dt.date(y, m, 1), dt.date(y, m, calendar.monthrange(y, m)[1])
        except ValueError:
            raise InputError("--period", f"'{period}' is not YYYY-MM", field="period") from None
    first = p.start or (problems["issued"].min() if len(problems) else None) or p.today().isoformat()
    return dt.date.fromisoformat(first), p.today()


def progress_chart(problems: pd.DataFrame, history: pd.DataFrame, p: CampaignParams,
                   start: dt.date, end: dt.date, target: Path) -> Path:
    """Stacked area of problems by 整改状态 over time (one step per ``progress_step_days``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gis.map_sheets import find_cjk_font

    days = dates_between(start, end, p.progress_step_days)
    order = [p.status_open, p.status_in_progress, p.status_rebound, p.status_rectified, p.status_closed]
    counts = pd.DataFrame([state_at(problems, history, d)["status"].value_counts().reindex(order, fill_value=0)
                           for d in days], index=pd.to_datetime(days))
    with plt.rc_context({"font.family": find_cjk_font(), "axes.unicode_minus": False}):
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
        ax.stackplot(counts.index, counts.T.to_numpy(), labels=order,
                     colors=["#c00000", "#ed7d31", "#7030a0", "#70ad47", "#4472c4"])
        ax.set_title(f"{p.name}整改进度（{start}至{end}）")
        ax.set_ylabel("问题数")
        ax.legend(loc="upper left", fontsize=8, ncol=5)
        fig.autofmt_xdate()
        with export.atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
        plt.close(fig)
    return target


def write_report(project_dir: str | Path, out: str | Path, *, period: str | None = None) -> dict[str, Any]:
    """汇总表 per 镇街 and per department, overdue list, 联络员信息表 and progress chart into ``out``.

    Returns the paths and the 合计 row of the per-镇街 table (what the CLI prints).
    """
    project = load_project(project_dir)
    p = campaign_params(project)
    with open_store(store_path(project, p)) as store:
        problems, history = store.problems(), store.history()
    start, end = period_bounds(period, p, problems)
    due = [d for d in p.reporting_dates if start.isoformat() <= d <= end.isoformat()]
    filed = due[0] if due else end.isoformat()
    contacts = read_contacts(project, p)
    fil = filing_of(contacts, p.lead_office)
    label = period or f"{start}至{end}"
    out = Path(out)
    towns = progress(problems, history, p, by="township", start=start, end=end)
    depts = progress(problems, history, p, by="department", start=start, end=end)
    late = overdue(state_at(problems, history, end), p, day=end)
    head = [f"{p.name}汇总表（{label}）", f"填报日期：{filed}"]
    paths = {
        "summary": export.write_excel({"按镇街": towns, "按部门": depts}, out / f"汇总表_{label}.xlsx",
                                      title_rows={"按镇街": head, "按部门": head}, filing=fil),
        "overdue": export.write_excel({"逾期问题": late}, out / f"逾期问题清单_{label}.xlsx",
                                      title_rows={"逾期问题": [f"{p.name}逾期未整改问题清单（截至{end}）",
                                                              f"填报日期：{filed}"]}, filing=fil),
        "contacts": export.write_excel({"联络员信息表": contacts.assign(序号=range(1, len(contacts) + 1))[
            ["序号", "姓名", "单位", "职务", "联系电话", "电子邮箱"]]}, out / "联络员信息表.xlsx",
            title_rows={"联络员信息表": [f"{p.name}联络员信息表", f"填报日期：{filed}"]}, filing=fil),
        "chart": progress_chart(problems, history, p, min(dt.date.fromisoformat(p.start) if p.start else start, end),
                                end, out / f"整改进度_{label}.png"),
    }
    total = towns.iloc[-1].drop(["序号", "镇街"]).astype(int).to_dict()
    return {"paths": paths, "total": total, "overdue": len(late), "period": [start.isoformat(), end.isoformat()]}
