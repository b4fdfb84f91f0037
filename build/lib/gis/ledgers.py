"""The campaign forms: 问题台账, 汇总表 and 摸排表.

Shaped after the annexes of the seeds' campaign notices (沙坪坝区再生资源回收行业专项整治
行动实施方案: 附件1 汇总表, 附件2 问题台账; 赫山区报废机动车回收拆解专项整治: 摸排表):

* :func:`problem_ledger` — the problem ledger (问题台账), one row per problem, every row
  with a lead department (牵头单位) and the township (属地) among the co-responsible
  units (配合单位);
* :func:`summary_table` — the summary table (汇总表) per township: sites checked,
  problems by type, closed, rectified, outstanding, and a 合计 row;
* :func:`survey_form` — the survey form (摸排表) of scrap-vehicle sites and illegal
  ELV-dismantling locations, with the "五大总成" destination.

Rows come from the compliance step (:func:`problems_from_compliance`) and from any
other step that leaves a DataFrame with :data:`LEDGER_COLUMNS` in
``context["hotspot_problems"]`` (appended when present).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd

from gis import export
from gis._errors import InputError
from gis.schema import PROBLEM_LEDGER_COLUMNS, SITE_STATUS_LABEL_ZH, SiteStatus

__all__ = [
    "LEDGER_COLUMNS",
    "SUMMARY_FIXED_COLUMNS",
    "SURVEY_COLUMNS",
    "LedgerSet",
    "build_ledgers",
    "problem_ledger",
    "problems_from_compliance",
    "summary_table",
    "survey_form",
    "write_ledgers",
]

#: Headers of the 问题台账 (problem ledger), exactly as on the annex.
LEDGER_COLUMNS: tuple[str, ...] = PROBLEM_LEDGER_COLUMNS

#: Fixed headers of the 汇总表; one column per 问题类型 goes between 检查网点数 and 问题总数.
SUMMARY_FIXED_COLUMNS: tuple[str, ...] = ("序号", "镇街", "检查网点数", "问题总数", "已关停取缔", "已整改", "未整改")

#: Headers of the 摸排表 (survey form) of scrap-vehicle sites.
SURVEY_COLUMNS: tuple[str, ...] = (
    "序号",
    "乡镇",
    "网点名称",
    "经营地址",
    "经营范围",
    "资质认定",
    '"五大总成"流向',
    "经营状态",
    "发现问题",
)

OUTSIDE_TOWNSHIP_LABEL = "辖区外（待核实）"


def _text(s: pd.Series, default: str = "") -> pd.Series:
    return s.astype("object").where(s.notna(), default).astype(str)


def problems_from_compliance(result: Any, *, settings: Mapping[str, Any] | None = None) -> gpd.GeoDataFrame:
    """Turn compliance violations into problem-ledger rows.

    Parameters
    ----------
    result
        :class:`gis.compliance.ComplianceResult`.
    settings
        The ``ledger`` block of the compliance section (default ``result.rules.ledger``).

    Returns
    -------
    GeoDataFrame with :data:`LEDGER_COLUMNS` (序号 left null: numbered when the ledger
    is assembled) plus ``site_id``, ``rule_id``, ``verdict``, ``source`` and the site
    point. 配合单位 = the rule's co-departments plus "<township>（属地）"; a site outside
    every township takes its ledger township, else "辖区外（待核实）". 整改状态 is
    已关停取缔 for a closed site, else 待整改; 整改时限 is ``reference_date +
    deadline_days`` when a reference date is set, else "N日内".
    """
    s = dict(settings if settings is not None else getattr(result.rules, "ledger", {}) or {})
    verdicts = s.get("verdicts_in_ledger", ["prohibited", "needs_review"])
    v = result.violations
    v = v[v["verdict"].isin(verdicts)]
    town = v["township"].astype("object")
    if "township_ledger" in v:
        town = town.where(town.notna(), v["township_ledger"])
    town = _text(town, OUTSIDE_TOWNSHIP_LABEL).replace("", OUTSIDE_TOWNSHIP_LABEL)
    co = _text(v["co_departments"])
    owner = town + "（属地）"
    co = np.where(co != "", co + "、" + owner, owner)
    ref = s.get("reference_date")
    days = v["deadline_days"].astype(int)
    if ref:
        try:
            base = pd.Timestamp(str(ref))
        except ValueError as exc:
            raise InputError("compliance.ledger", f"reference_date '{ref}' is not a date", field="reference_date") from exc
        deadline = (base + pd.to_timedelta(days, unit="D")).dt.strftime("%Y-%m-%d")
    else:
        deadline = days.astype(str) + "日内"
    closed = v["site_status"].astype("object").isin([SiteStatus.CLOSED.value])
    status = np.where(closed, s.get("status_closed", "已关停取缔"), s.get("status_open", "待整改"))
    out = pd.DataFrame(
        {
            "序号": pd.array([pd.NA] * len(v), dtype="Int64"),
            "镇街": town.to_numpy(),
            "网点名称": _text(v["name"]).to_numpy(),
            "经营地址": _text(v["address"]).to_numpy(),
            "问题类型": v["problem_type"].to_numpy(),
            "问题描述": v["description"].to_numpy(),
            "依据": v["legal_source"].to_numpy(),
            "牵头单位": v["lead_department"].to_numpy(),
            "配合单位": co,
            "整改措施": v["measure_zh"].to_numpy(),
            "整改时限": np.asarray(deadline),
            "整改状态": status,
            "site_id": v["site_id"].to_numpy(),
            "rule_id": v["rule_id"].to_numpy(),
            "verdict": v["verdict"].to_numpy(),
            "source": "compliance",
        }
    )
    return gpd.GeoDataFrame(out, geometry=list(v.geometry.values), crs=v.crs)


def problem_ledger(*parts: pd.DataFrame | None) -> gpd.GeoDataFrame:
    """Assemble the 问题台账 from problem tables (compliance, hotspots, …).

    Each part must carry every header of :data:`LEDGER_COLUMNS` except 序号 (which
    is renumbered 1…n here); extra columns are kept (``site_id``, ``rule_id``, …) and
    a part without geometry gets empty geometry. Rows without a 牵头单位 are an error.

    Raises
    ------
    InputError
        A part lacks a ledger column or a row lacks a lead department.
    """
    frames = []
    crs = None
    for i, part in enumerate(p for p in parts if p is not None):
        missing = [c for c in LEDGER_COLUMNS if c != "序号" and c not in part.columns]
        if missing:
            raise InputError(f"problem table #{i + 1}", f"missing ledger column(s) {missing}", field=missing[0])
        lead = part["牵头单位"].astype("object")
        bad = lead.isna() | (lead.astype(str).str.strip() == "")
        if bad.any():
            raise InputError(
                f"problem table #{i + 1}", "a problem has no lead department (牵头单位)",
                row=int(np.flatnonzero(bad.to_numpy())[0]) + 2, field="牵头单位",
            )
        f = pd.DataFrame(part).copy()
        if isinstance(part, gpd.GeoDataFrame):
            crs = crs or part.crs
            geom = part.geometry.values
            f = f.drop(columns=[part.geometry.name])
        else:
            geom = [None] * len(part)
        f["geometry"] = list(geom)
        frames.append(f)
    if frames:
        df = pd.concat(frames, ignore_index=True)
    else:
        df = pd.DataFrame({c: [] for c in LEDGER_COLUMNS} | {"geometry": []})
    df["序号"] = np.arange(1, len(df) + 1)
    ordered = list(LEDGER_COLUMNS) + [c for c in df.columns if c not in LEDGER_COLUMNS]
    return gpd.GeoDataFrame(df[ordered], geometry="geometry", crs=crs)


def summary_table(
    ledger: pd.DataFrame,
    sites: pd.DataFrame,
    townships: pd.DataFrame | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The 汇总表 per township, with a 合计 row.

    Columns: 序号, 镇街, 检查网点数 (sites whose 属地 is the township), one column per
    问题类型, 问题总数, 已关停取缔 / 已整改 / 未整改 (problems by 整改状态; 未整改 is every
    problem neither closed nor rectified). Every township of ``townships`` is listed,
    with zeros where nothing was found.
    """
    s = dict(settings or {})
    closed_l = s.get("status_closed", "已关停取缔")
    rect_l = s.get("status_rectified", "已整改")
    town = sites["township"].astype("object") if "township" in sites else pd.Series(dtype=object)
    if "township_ledger" in sites:
        town = town.where(town.notna(), sites["township_ledger"])
    town = _text(town, OUTSIDE_TOWNSHIP_LABEL).replace("", OUTSIDE_TOWNSHIP_LABEL)
    checked = town.value_counts()
    names = list(townships["township"].astype(str)) if townships is not None else []
    for extra in list(checked.index) + list(ledger["镇街"].astype(str).unique()):
        if extra not in names:
            names.append(extra)
    idx = pd.Index(names, name="镇街")
    by_type = pd.crosstab(ledger["镇街"].astype(str), ledger["问题类型"].astype(str)).reindex(idx, fill_value=0)
    status = ledger["整改状态"].astype(str)
    st = pd.DataFrame(
        {
            "镇街": ledger["镇街"].astype(str),
            "已关停取缔": (status == closed_l).astype(int),
            "已整改": (status == rect_l).astype(int),
        }
    )
    st["未整改"] = 1 - st["已关停取缔"] - st["已整改"]
    st = st.groupby("镇街").sum().reindex(idx, fill_value=0)
    out = pd.DataFrame(index=idx)
    out["检查网点数"] = checked.reindex(idx, fill_value=0).astype(int)
    out = out.join(by_type)
    out["问题总数"] = by_type.sum(axis=1).astype(int)
    out = out.join(st).reset_index()
    total = out.drop(columns=["镇街"]).sum(numeric_only=True)
    out.insert(0, "序号", np.arange(1, len(out) + 1))
    total_row = {"序号": None, "镇街": "合计", **{k: int(v) for k, v in total.items()}}
    out = pd.concat([out, pd.DataFrame([total_row])], ignore_index=True)
    out["序号"] = out["序号"].astype("Int64")
    return out


def survey_form(
    sites: pd.DataFrame,
    incidents: pd.DataFrame | None = None,
    *,
    ledger: pd.DataFrame | None = None,
    settings: Mapping[str, Any] | None = None,
) -> gpd.GeoDataFrame:
    """The 摸排表 of scrap-vehicle (报废机动车) sites and illegal dismantling locations.

    Sites are included when their tier is ``dismantler`` or their 经营范围 names scrap
    vehicles (``ledger.elv_scope_keywords``); incident locations of kind
    ``illegal_elv_dismantling`` are added (their ``five_assemblies_destination`` fills
    "五大总成"流向). 发现问题 lists the ledger's problem types for the site.
    """
    s = dict(settings or {})
    kws = s.get("elv_scope_keywords", ["报废机动车", "报废汽车", "汽车拆解", "机动车拆解"])
    scope = _text(sites["business_scope"]) if "business_scope" in sites else pd.Series("", index=sites.index)
    pattern = "|".join(map(re.escape, kws))
    sel = (sites["tier"].astype(str) == "dismantler") | scope.str.contains(pattern, regex=True)
    st = sites.loc[sel]
    town = st["township"].astype("object") if "township" in st else pd.Series(None, index=st.index, dtype=object)
    if "township_ledger" in st:
        town = town.where(town.notna(), st["township_ledger"])
    problems = pd.Series(dtype=object)
    if ledger is not None and "site_id" in ledger and len(ledger):
        problems = ledger.dropna(subset=["site_id"]).groupby("site_id")["问题类型"].agg(
            lambda x: "；".join(dict.fromkeys(x))
        )
    qual = st["dismantling_qualification"] if "dismantling_qualification" in st else pd.Series(None, index=st.index)
    qual_zh = qual.astype("object").map({True: "已取得", False: "未取得"}).fillna("未登记")
    dest_col = "five_assemblies_destination"
    dest = _text(st[dest_col], "待核查") if dest_col in st else pd.Series("待核查", index=st.index)
    status_zh = st["status"].astype("object").map({k.value: v for k, v in SITE_STATUS_LABEL_ZH.items()}) if "status" in st else None
    rows = pd.DataFrame(
        {
            "乡镇": _text(town, OUTSIDE_TOWNSHIP_LABEL).to_numpy(),
            "网点名称": _text(st["name"]).to_numpy(),
            "经营地址": _text(st["address"]).to_numpy() if "address" in st else "",
            "经营范围": scope[sel].to_numpy(),
            "资质认定": qual_zh.to_numpy(),
            '"五大总成"流向': dest.replace("", "待核查").to_numpy(),
            "经营状态": _text(status_zh, "").to_numpy() if status_zh is not None else "",
            "发现问题": _text(st["site_id"].astype(str).map(problems), "未发现问题").to_numpy(),
            "site_id": st["site_id"].astype(str).to_numpy(),
        }
    )
    geoms = list(st.geometry.values) if isinstance(st, gpd.GeoDataFrame) else [None] * len(st)
    crs = getattr(sites, "crs", None)
    if incidents is not None and len(incidents):
        inc = incidents[incidents["kind"].astype(str) == "illegal_elv_dismantling"]
        itown = inc["township"].astype("object") if "township" in inc else pd.Series(None, index=inc.index, dtype=object)
        if "township_ledger" in inc:
            itown = itown.where(itown.notna(), inc["township_ledger"])
        from gis.schema import INCIDENT_KIND_LABEL_ZH, IncidentKind

        irows = pd.DataFrame(
            {
                "乡镇": _text(itown, OUTSIDE_TOWNSHIP_LABEL).to_numpy(),
                "网点名称": ("非法拆解点 " + inc["incident_id"].astype(str)).to_numpy(),
                "经营地址": _text(inc["address"]).to_numpy() if "address" in inc else "",
                "经营范围": "无（未取得资质）",
                "资质认定": "未取得",
                '"五大总成"流向': (_text(inc[dest_col], "待核查").replace("", "待核查").to_numpy() if dest_col in inc else "待核查"),
                "经营状态": _text(inc["status"].astype("object").map({"open": "待整改", "rectified": "已整改", "closed": "已关停取缔", "rebounded": "反弹"}), "").to_numpy() if "status" in inc else "",
                "发现问题": INCIDENT_KIND_LABEL_ZH[IncidentKind.ILLEGAL_ELV_DISMANTLING],
                "site_id": None,
            }
        )
        rows = pd.concat([rows, irows], ignore_index=True)
        geoms += list(inc.geometry.values)
        crs = crs or getattr(incidents, "crs", None)
    rows.insert(0, "序号", np.arange(1, len(rows) + 1))
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)


class LedgerSet:
    """The three forms of one run.

    Attributes
    ----------
    ledger
        问题台账 (GeoDataFrame, :data:`LEDGER_COLUMNS` first).
    summary
        汇总表 (DataFrame).
    survey
        摸排表 (GeoDataFrame).
    district_name
        Used in the title rows.
    townships
        Township polygons (gives the 汇总表 GeoPackage layer its geometry), or None.
    """

    def __init__(
        self,
        ledger: gpd.GeoDataFrame,
        summary: pd.DataFrame,
        survey: gpd.GeoDataFrame,
        district_name: str,
        townships: gpd.GeoDataFrame | None = None,
    ) -> None:
        self.ledger = ledger
        self.summary = summary
        self.survey = survey
        self.district_name = district_name
        self.townships = townships


def build_ledgers(
    result: Any,
    *,
    district_name: str,
    townships: pd.DataFrame | None = None,
    extra_problems: pd.DataFrame | None = None,
    site_problems: pd.DataFrame | None = None,
) -> LedgerSet:
    """Build the 问题台账, 汇总表 and 摸排表 from a compliance result (+ extra problems)."""
    settings = getattr(result.rules, "ledger", {}) or {}
    if site_problems is None:
        site_problems = problems_from_compliance(result, settings=settings)
    ledger = problem_ledger(site_problems, extra_problems)
    from gis.departments import prefix_columns  # 区商务委 / 县商务委, 区公安分局 / 县公安局

    ledger = prefix_columns(ledger, district_name)
    summary = summary_table(ledger, result.sites, townships, settings=settings)
    survey = survey_form(result.sites, result.incidents, ledger=ledger, settings=settings)
    towns = townships if isinstance(townships, gpd.GeoDataFrame) else None
    return LedgerSet(ledger, summary, survey, district_name, towns)


def _deadlines_from(ledger: pd.DataFrame, filed: str) -> pd.DataFrame:
    """整改时限 as dates: a relative "N日内" counts from the 填报日期 ``filed`` (YYYY-MM-DD).

    The workbook then holds one kind of value in the column (real dates), never
    "30日内" text beside dates.
    """
    text = ledger["整改时限"].astype("string")
    days = pd.to_numeric(text.str.extract(r"^\s*(\d+)\s*日内\s*$", expand=False), errors="coerce")
    if not days.notna().any():
        return ledger
    out = ledger.copy()
    due = pd.Timestamp(filed) + pd.to_timedelta(days, unit="D")
    out["整改时限"] = text.where(days.isna(), due.dt.strftime("%Y-%m-%d")).astype(object)
    return out


def write_ledgers(ledgers: LedgerSet, out: str | Path, *, sample: bool = False) -> dict[str, Path]:
    """Write ``problem_ledger.xlsx``, ``summary_table.xlsx``, ``survey_form.xlsx`` and
    ``ledgers.gpkg`` (layers problem_ledger, summary_table, survey_form) into ``out``."""
    from gis.settings import SAMPLE_LABEL

    out = Path(out)
    name = ledgers.district_name
    note = [SAMPLE_LABEL] if sample else []
    today = dt.date.today().isoformat()
    paths = {
        "problem_ledger": export.write_excel(
            {"问题台账": _deadlines_from(pd.DataFrame(ledgers.ledger[list(LEDGER_COLUMNS)]), today)},
            out / "problem_ledger.xlsx",
            title_rows={"问题台账": [f"{name}再生资源回收行业问题台账", f"填报日期：{today}", *note]},
        ),
        "summary_table": export.write_excel(
            {"汇总表": ledgers.summary},
            out / "summary_table.xlsx",
            title_rows={"汇总表": [f"{name}再生资源回收行业专项整治行动汇总表", f"填报日期：{today}", *note]},
        ),
        "survey_form": export.write_excel(
            {"摸排表": pd.DataFrame(ledgers.survey[list(SURVEY_COLUMNS)])},
            out / "survey_form.xlsx",
            title_rows={"摸排表": [f"{name}报废机动车回收拆解网点摸排表", f"填报日期：{today}", *note]},
        ),
    }
    crs = ledgers.ledger.crs or ledgers.survey.crs
    geom: list[Any] = [None] * len(ledgers.summary)
    if ledgers.townships is not None:
        crs = ledgers.townships.crs
        t = ledgers.townships
        by_name = dict(zip(t["township"].astype(str), t.geometry.values))
        geom = [by_name.get(n) for n in ledgers.summary["镇街"].astype(str)]  # one per township row
    summary_g = gpd.GeoDataFrame(ledgers.summary.copy(), geometry=geom, crs=crs)
    paths["gpkg"] = export.write_gpkg(
        {
            "problem_ledger": ledgers.ledger,
            "summary_table": summary_g,
            "survey_form": ledgers.survey,
        },
        out / "ledgers.gpkg",
    )
    return paths
