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
from typing import Any, Mapping, Sequence

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
    "线索数",
    "问题编号",
    "整改状态",
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
    merge_m: float | None = None,
    site_match_m: float | None = None,
    members: Mapping[str, set[str]] | None = None,
) -> gpd.GeoDataFrame:
    """The 摸排表: one row per scrap-vehicle (报废机动车) site or illegal dismantling place.

    Sites are included when their tier is ``dismantler`` or their 经营范围 names scrap
    vehicles (``ledger.elv_scope_keywords``); 经营状态 is the site's business status
    (在营 / 关停 / …). Incidents of kind ``illegal_elv_dismantling`` within
    ``site_match_m`` of such a site are counted on its row (线索数); the others are
    merged into places — single-linkage groups of reports within ``merge_m`` of each
    other (:func:`places`) — one row each, named after a known site within
    ``site_match_m`` when there is one, else after the address (``merge_m`` None:
    every report is its own place). A place's 经营状态
    is its worst report status (关停后复发 > 非法经营 > 已停止经营 > 已关停取缔).
    发现问题, 问题编号 and 整改状态 come from the 问题台账 (by ``site_id``; places by
    the cluster ``members`` of each 问题编号 when given). Every ELV report is counted
    once: the 线索数 column sums to the number of ELV reports.
    """
    s = dict(settings or {})
    kws = s.get("elv_scope_keywords", ["报废机动车", "报废汽车", "汽车拆解", "机动车拆解"])
    scope = _text(sites["business_scope"]) if "business_scope" in sites else pd.Series("", index=sites.index)
    sel = (sites["tier"].astype(str) == "dismantler") | scope.str.contains("|".join(map(re.escape, kws)), regex=True)
    st = sites.loc[sel]
    by_site = _ledger_by(ledger, "site_id")
    rows = _survey_site_rows(st, scope[sel], by_site)
    geoms = list(st.geometry.values) if isinstance(st, gpd.GeoDataFrame) else [None] * len(st)
    crs = getattr(sites, "crs", None)
    inc = incidents[incidents["kind"].astype(str) == "illegal_elv_dismantling"] if incidents is not None \
        and len(incidents) else None
    rows["线索数"] = 0
    if inc is not None and len(inc):
        at_site = _nearest_within(inc, st, site_match_m or 0.0)
        rows["线索数"] = [int((at_site == i).sum()) for i in range(len(st))]
        rest = inc[at_site < 0]
        prow, pgeom = _survey_place_rows(rest, sites, ledger, merge_m or 0.0, site_match_m or 0.0, members or {})
        rows = pd.concat([rows, prow], ignore_index=True)
        geoms += pgeom
        crs = crs or getattr(incidents, "crs", None)
    rows.insert(0, "序号", np.arange(1, len(rows) + 1))
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=crs)


def _ledger_by(ledger: pd.DataFrame | None, col: str) -> pd.DataFrame:
    """Per ``col`` value: 问题类型, 问题编号 and 整改状态 joined with "；"."""
    want = [c for c in ("问题类型", "问题编号", "整改状态") if ledger is not None and c in ledger]
    if ledger is None or col not in ledger or not len(ledger):
        return pd.DataFrame(columns=want)
    led = ledger.dropna(subset=[col])
    keys = led[col].astype(str).to_numpy(dtype=object)
    out = {}
    for c in want:  # distinct values of each key in order of appearance, joined by one string reduction
        pairs = pd.DataFrame({"k": keys, "v": led[c].astype(str).to_numpy(dtype=object)}).drop_duplicates()
        pairs = pairs.sort_values("k", kind="stable")
        k = pairs["k"].to_numpy(dtype=object)
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if len(k) else np.array([], dtype=np.int64)
        text = np.add.reduceat(("；" + pairs["v"]).to_numpy(dtype=object), starts) if len(k) else np.array([], dtype=object)
        out[c] = pd.Series([t[1:] for t in text], index=pd.Index(k[starts], name=col), dtype="string")
    return pd.DataFrame(out, columns=want)


def _survey_site_rows(st: pd.DataFrame, scope: pd.Series, by_site: pd.DataFrame) -> pd.DataFrame:
    town = st["township"].astype("object") if "township" in st else pd.Series(None, index=st.index, dtype=object)
    if "township_ledger" in st:
        town = town.where(town.notna(), st["township_ledger"])
    qual = st["dismantling_qualification"] if "dismantling_qualification" in st else pd.Series(None, index=st.index)
    dest_col = "five_assemblies_destination"
    dest = _text(st[dest_col], "待核查") if dest_col in st else pd.Series("待核查", index=st.index)
    labels = {k.value: v for k, v in SITE_STATUS_LABEL_ZH.items()}
    sid = st["site_id"].astype(str)
    found = {c: _text(sid.map(by_site[c]) if c in by_site else pd.Series(None, index=st.index), "")
             for c in ("问题类型", "问题编号", "整改状态")}
    return pd.DataFrame({
        "乡镇": _text(town, OUTSIDE_TOWNSHIP_LABEL).to_numpy(),
        "网点名称": _text(st["name"]).to_numpy(),
        "经营地址": _text(st["address"]).to_numpy() if "address" in st else "",
        "经营范围": scope.to_numpy(),
        "资质认定": qual.astype("object").map({True: "已取得", False: "未取得"}).fillna("未登记").to_numpy(),
        '"五大总成"流向': dest.replace("", "待核查").to_numpy(),
        "经营状态": _text(st["status"].astype("object").map(labels), "").to_numpy() if "status" in st else "",
        "发现问题": found["问题类型"].replace("", "未发现问题").to_numpy(),
        "线索数": 0,
        "问题编号": found["问题编号"].to_numpy(),
        "整改状态": found["整改状态"].to_numpy(),
        "site_id": sid.to_numpy(),
    })


def _nearest_within(points: pd.DataFrame, targets: pd.DataFrame, radius: float) -> np.ndarray:
    """Position of the nearest target within ``radius`` of each point (-1: none)."""
    from scipy.spatial import cKDTree

    if not len(targets) or not len(points) or radius <= 0:
        return np.full(len(points), -1)
    txy = np.column_stack([targets.geometry.x, targets.geometry.y])
    d, j = cKDTree(txy).query(np.column_stack([points.geometry.x, points.geometry.y]), distance_upper_bound=radius)
    return np.where(np.isfinite(d), j, -1)


def places(xy: np.ndarray, merge_m: float) -> np.ndarray:
    """Place label per point: connected components of the graph linking points within ``merge_m``.

    Single linkage: two reports are one place when a chain of reports, each within
    ``merge_m`` of the next, joins them (:func:`scipy.sparse.csgraph.connected_components`
    on the :class:`scipy.spatial.cKDTree` pair set).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(xy)
    if n == 0:
        return np.zeros(0, dtype=int)
    pairs = cKDTree(xy).query_pairs(merge_m, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) \
        else coo_matrix((n, n))
    return connected_components(g, directed=False)[1]


#: Incident status → 经营状态 of an illegal dismantling place, worst first.
PLACE_STATUS_ZH: dict[str, str] = {"rebounded": "关停后复发", "open": "非法经营", "rectified": "已停止经营",
                                   "closed": "已关停取缔"}


def _survey_place_rows(
    inc: pd.DataFrame, sites: pd.DataFrame, ledger: pd.DataFrame | None, merge_m: float,
    site_match_m: float, members: Mapping[str, set[str]],
) -> tuple[pd.DataFrame, list[Any]]:
    """One 摸排表 row per place of illegal dismantling reports (see :func:`survey_form`)."""
    from shapely.geometry import MultiPoint

    from gis.schema import INCIDENT_KIND_LABEL_ZH, IncidentKind

    if not len(inc):
        return pd.DataFrame(), []
    xy = np.column_stack([inc.geometry.x, inc.geometry.y])
    lab = places(xy, merge_m)
    near = _nearest_within(inc, sites, site_match_m)
    town = inc["township"].astype("object").where(inc["township"].notna(), inc.get("township_ledger"))
    status = _text(inc["status"]) if "status" in inc else pd.Series("open", index=inc.index)
    ids = inc["incident_id"].astype(str).to_numpy()
    state = {n: st for n, st in zip(ledger["问题编号"], ledger["整改状态"])} if ledger is not None \
        and "问题编号" in ledger else {}
    town_txt = _text(town, OUTSIDE_TOWNSHIP_LABEL).to_numpy()  # columns as arrays once, not per place
    dest_txt = _text(inc["five_assemblies_destination"]).to_numpy() if "five_assemblies_destination" in inc else None
    status_arr = status.to_numpy()
    addr_arr = inc["address"].astype(str).to_numpy() if "address" in inc else None
    site_names = sites["name"].astype(str).to_numpy() if "name" in sites else None
    order = list(PLACE_STATUS_ZH)
    rows, geoms = [], []
    for k in np.unique(lab):
        m = np.flatnonzero(lab == k)
        known = [int(j) for j in near[m] if j >= 0]
        rank = [order.index(s) if s in PLACE_STATUS_ZH else 1 for s in status_arr[m]]
        here = set(ids[m])
        nums = [n for n, mem in members.items() if mem & here]
        dest = [d for d in dest_txt[m] if d] if dest_txt is not None else []
        addr = str(addr_arr[m[0]]) if addr_arr is not None else ""
        rows.append({
            "乡镇": str(pd.Series(town_txt[m]).mode().iloc[0]),
            "网点名称": str(site_names[known[0]]) if known and site_names is not None else f"{addr}非法拆解点",
            "经营地址": addr, "经营范围": "无（未取得资质）", "资质认定": "未取得",
            '"五大总成"流向': dest[0] if dest else "待核查",
            "经营状态": list(PLACE_STATUS_ZH.values())[min(rank)],
            "发现问题": f"{INCIDENT_KIND_LABEL_ZH[IncidentKind.ILLEGAL_ELV_DISMANTLING]}（线索：{'、'.join(ids[m])}）",
            "线索数": len(m), "问题编号": "；".join(nums),
            "整改状态": "；".join(dict.fromkeys(str(state.get(n, "")) for n in nums)), "site_id": None,
        })
        pts = MultiPoint([tuple(p) for p in xy[m]])
        geoms.append(pts.centroid)
    return pd.DataFrame(rows), geoms


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
    filing
        填报单位 / 填报人 / 联系电话 of the form heads (blank lines when absent).
    filed
        填报日期 (YYYY-MM-DD; today when None).
    columns
        Headers of the 问题台账 workbook (default :data:`LEDGER_COLUMNS`; the campaign
        ledger adds 问题编号, 整改情况, 完成时间, 责任人, 处置方式, …).
    """

    def __init__(
        self,
        ledger: gpd.GeoDataFrame,
        summary: pd.DataFrame,
        survey: gpd.GeoDataFrame,
        district_name: str,
        townships: gpd.GeoDataFrame | None = None,
        *,
        filing: Mapping[str, str] | None = None,
        filed: str | None = None,
        columns: tuple[str, ...] | None = None,
    ) -> None:
        self.ledger = ledger
        self.summary = summary
        self.survey = survey
        self.district_name = district_name
        self.townships = townships
        self.filing = dict(filing or {})
        self.filed = filed
        self.columns = columns or LEDGER_COLUMNS


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
    ledger = run_ledger(result, district_name=district_name, extra_problems=extra_problems,
                        site_problems=site_problems)
    summary = summary_table(ledger, result.sites, townships, settings=settings)
    survey = survey_form(result.sites, result.incidents, ledger=ledger, settings=settings)
    towns = townships if isinstance(townships, gpd.GeoDataFrame) else None
    return LedgerSet(ledger, summary, survey, district_name, towns)


def run_ledger(
    result: Any,
    *,
    district_name: str,
    extra_problems: pd.DataFrame | None = None,
    site_problems: pd.DataFrame | None = None,
) -> gpd.GeoDataFrame:
    """The run's 问题台账 alone (what :func:`build_ledgers` and the campaign sync start from).

    The site problems (:func:`problems_from_compliance` of ``result`` unless given) and the
    extra problems, numbered (:func:`problem_ledger`), with the departments named for the
    district (:func:`gis.departments.prefix_columns`: 区商务委 / 县商务委, …).
    """
    if site_problems is None:
        site_problems = problems_from_compliance(result, settings=getattr(result.rules, "ledger", {}) or {})
    from gis.departments import prefix_columns  # 区商务委 / 县商务委, 区公安分局 / 县公安局

    return prefix_columns(problem_ledger(site_problems, extra_problems), district_name)


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


#: What :func:`write_ledgers` writes: the three workbooks and ``ledgers.gpkg``.
LEDGER_PARTS: tuple[str, ...] = ("problem_ledger", "summary_table", "survey_form", "gpkg")


def write_ledgers(ledgers: LedgerSet, out: str | Path, *, sample: bool = False,
                  parts: Sequence[str] = LEDGER_PARTS) -> dict[str, Path]:
    """Write ``problem_ledger.xlsx``, ``summary_table.xlsx``, ``survey_form.xlsx`` and
    ``ledgers.gpkg`` (layers problem_ledger, summary_table, survey_form) into ``out``.

    ``parts``: only these of :data:`LEDGER_PARTS` (a lean ``gis run`` writes the 问题台账
    workbook and the rest in two processes at once). Returns ``{part: path}``.
    """
    from gis.settings import SAMPLE_LABEL

    out = Path(out)
    name = ledgers.district_name
    note = [SAMPLE_LABEL] if sample else []
    today = ledgers.filed or dt.date.today().isoformat()
    fil = ledgers.filing
    books = {
        "problem_ledger": lambda: export.write_excel(
            {"问题台账": _deadlines_from(pd.DataFrame(ledgers.ledger[list(ledgers.columns)]), today)},
            out / "problem_ledger.xlsx",
            title_rows={"问题台账": [f"{name}再生资源回收行业问题台账", f"填报日期：{today}", *note]}, filing=fil,
        ),
        "summary_table": lambda: export.write_excel(
            {"汇总表": ledgers.summary},
            out / "summary_table.xlsx",
            title_rows={"汇总表": [f"{name}再生资源回收行业专项整治行动汇总表", f"填报日期：{today}", *note]},
            filing=fil,
        ),
        "survey_form": lambda: export.write_excel(
            {"摸排表": pd.DataFrame(ledgers.survey[[c for c in SURVEY_COLUMNS if c in ledgers.survey]])},
            out / "survey_form.xlsx",
            title_rows={"摸排表": [f"{name}报废机动车回收拆解网点摸排表", f"填报日期：{today}", *note]}, filing=fil,
        ),
        "gpkg": lambda: _write_ledger_gpkg(ledgers, out / "ledgers.gpkg"),
    }
    return {part: books[part]() for part in LEDGER_PARTS if part in parts}


def _write_ledger_gpkg(ledgers: LedgerSet, target: Path) -> Path:
    """``ledgers.gpkg``: the 问题台账 points, the 汇总表 on its townships' polygons, the 摸排表 points."""
    crs = ledgers.ledger.crs or ledgers.survey.crs
    geom: list[Any] = [None] * len(ledgers.summary)
    if ledgers.townships is not None:
        crs = ledgers.townships.crs
        t = ledgers.townships
        by_name = dict(zip(t["township"].astype(str), t.geometry.values))
        geom = [by_name.get(n) for n in ledgers.summary["镇街"].astype(str)]  # one per township row
    summary_g = gpd.GeoDataFrame(ledgers.summary.copy(), geometry=geom, crs=crs)
    return export.write_gpkg(
        {
            "problem_ledger": ledgers.ledger,
            "summary_table": summary_g,
            "survey_form": ledgers.survey,
        },
        target,
    )
