"""Charts and plain-language findings for the analyst notebooks (这对本区意味着什么).

The notebooks tell the story of a district's results: a chart per analysis (targets,
coverage by township, hot-spot trends), tables with Chinese headers and labels and
rounded figures, and after each analysis a short "这对本区意味着什么 / what this means
for the district" paragraph. Every figure in those paragraphs is computed here from the
result objects, never typed into the notebook.

Charts use the CJK font of :func:`gis.map_sheets.find_cjk_font` (no missing glyphs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gis import schema

__all__ = [
    "compliance_meaning",
    "coverage_by_township_chart",
    "coverage_meaning",
    "hotspot_meaning",
    "hotspot_trend_chart",
    "targets_chart",
    "targets_table",
    "targets_meaning",
    "use_cjk_font",
    "zh_labels",
]

#: Chinese headers of the columns the notebooks show.
COLUMN_ZH: Mapping[str, str] = {
    "name": "名称", "metric": "指标", "tiers": "层级", "target": "目标值", "actual": "实际值", "met": "是否达标",
    "township": "镇街", "population": "人口", "covered_population": "覆盖人口", "households": "户数",
    "covered_households": "覆盖户数", "population_share": "人口覆盖率(%)", "household_share": "户数覆盖率(%)",
    "population_share_euclidean": "直线距离覆盖率(%)", "covered_population_euclidean": "直线距离覆盖人口",
    "rank": "排名", "score": "优先分", "n_incidents": "事件数", "kinds": "事件类型", "first_date": "首次发现",
    "last_date": "最近发现", "four_mountains_level": "四山管控级别", "rebound": "是否反弹",
    "lead_departments": "牵头部门", "tier": "层级", "rule_id": "规则", "lead_department": "牵头部门",
    "sites": "站点数", "violations": "违规数", "kind": "事件类型", "gain_population": "新增覆盖人口",
    "cumulative_share": "累计覆盖率(%)", "verdict": "核查结论", "candidate_id": "候选点编号",
}
#: Decimals of a percentage in the notebook tables.
SHARE_DECIMALS = 1
_SHARE_COLUMNS = ("population_share", "household_share", "population_share_euclidean", "cumulative_share")
_VERDICT_ZH = {"ok": "合规", "prohibited": "违规", "needs_review": "需核查"}


def _label_maps() -> dict[str, str]:
    """Codes → Chinese labels (tiers, incident kinds, 四山 levels, site status, verdicts)."""
    out: dict[str, str] = dict(_VERDICT_ZH)
    for vocab in (schema.TIER_LABEL_ZH, schema.INCIDENT_KIND_LABEL_ZH, schema.ZONE_LEVEL_LABEL_ZH,
                  schema.SITE_STATUS_LABEL_ZH):
        out.update({getattr(k, "value", str(k)): v for k, v in vocab.items()})
    return out


def _zh_value(value: Any, labels: Mapping[str, str]) -> Any:
    """A cell for display: codes → labels, lists joined with 、, booleans → 是/否."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "、".join(str(labels.get(str(v), v)) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return "是" if value else "否"
    if isinstance(value, str):
        return labels.get(value, value)
    return value


def zh_labels(df: pd.DataFrame) -> pd.DataFrame:
    """A display copy of ``df``: Chinese headers and labels, shares in %, figures rounded.

    Share columns (0–1) become percentages with :data:`SHARE_DECIMALS` decimals; other floats are
    rounded to whole numbers (people and households are counted, not measured); codes
    (tiers, incident kinds, 四山 levels, verdicts) and lists of codes become Chinese
    labels; booleans become 是/否. Columns not in :data:`COLUMN_ZH` keep their name.
    """
    labels = _label_maps()
    out = pd.DataFrame(df).drop(columns="geometry", errors="ignore").copy()
    for col in out.columns:
        s = out[col]
        if col in _SHARE_COLUMNS and pd.api.types.is_numeric_dtype(s):
            out[col] = (s.astype(float) * 100).round(SHARE_DECIMALS)
        elif pd.api.types.is_float_dtype(s):
            out[col] = s.round(0).astype("Int64") if s.notna().any() and (s.abs() >= 10).any() else s.round(2)
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.map({True: "是", False: "否"})
        elif s.dtype == object or pd.api.types.is_string_dtype(s):
            out[col] = s.map(lambda v: _zh_value(v, labels))
    return out.rename(columns={c: COLUMN_ZH.get(c, c) for c in out.columns})


def use_cjk_font() -> str:
    """Make the session's matplotlib charts use the installed CJK font; return its name.

    Call once at the top of a notebook: tick labels are laid out when a figure is
    shown (after the cell), so a temporary style would not reach them.
    """
    import matplotlib

    from gis.map_sheets import find_cjk_font

    font = find_cjk_font()
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = False
    return font


def _pct(x: float) -> str:
    """A share (0–1) as a percentage with one decimal."""
    return f"{100 * float(x):.1f}%"


def _achievement(targets: pd.DataFrame) -> pd.Series:
    """Achievement of each target in % (an upper bound such as 每网点服务户数上限 inverted).

    .. math:: a = 100\\,x/t \\text{ (at least)}, \\qquad a = 100\\,t/x \\text{ (at most: households per point)}
    """
    actual = targets["actual"].astype(float)
    target = targets["target"].astype(float)
    upper = targets["metric"].astype(str).eq("households_per_point")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(upper, target / actual, actual / target) * 100
    return pd.Series(np.nan_to_num(a, nan=0.0, posinf=100.0), index=targets.index).round(1)


_SHARE_METRICS = ("population_coverage", "household_coverage", "township_presence")


def _fmt_target_value(metric: str, value: float) -> str:
    """A target's value as read: shares in % (one decimal), counts as whole numbers."""
    if pd.isna(value):
        return ""
    return f"{100 * value:.1f}%" if metric in _SHARE_METRICS else f"{value:,.0f}"


def targets_table(targets: pd.DataFrame) -> pd.DataFrame:
    r"""The targets for reading: name, tiers counted (Chinese), target, actual, shortfall, achievement.

    Shares are shown in %, counts as whole numbers. Shortfall (差额) is
    :math:`\max(t - x, 0)` for an "at least" target and :math:`\max(x - t, 0)` for
    an upper bound (每网点服务户数上限).
    """
    labels = _label_maps()
    metric = targets["metric"].astype(str)
    actual, target = targets["actual"].astype(float), targets["target"].astype(float)
    upper = metric.eq("households_per_point")
    short = np.where(upper, actual - target, target - actual).clip(min=0)
    return pd.DataFrame({
        "目标": targets["name"].astype(str),
        "统计层级": targets["tiers"].map(lambda ts: _zh_value(list(ts), labels) if ts is not None else ""),
        "目标值": [_fmt_target_value(m, v) for m, v in zip(metric, target)],
        "实际值": [_fmt_target_value(m, v) for m, v in zip(metric, actual)],
        "差额": [_fmt_target_value(m, v) if v > 0 else "—" for m, v in zip(metric, short)],
        "完成度(%)": _achievement(targets).to_numpy(),
        "是否达标": targets["met"].astype(bool).map({True: "达标", False: "未达标"}).to_numpy(),
    })


def targets_chart(targets: pd.DataFrame, ax: Any = None) -> Any:
    """Horizontal bars: each target's achievement in % (100 % line; green met, red not met)."""
    import matplotlib.pyplot as plt

    a = _achievement(targets)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * len(targets) + 1.2))
    colours = np.where(targets["met"].astype(bool), "#1a9641", "#d7191c")
    ax.barh(targets["name"].astype(str), a.clip(upper=150), color=colours)
    ax.axvline(100, color="#333333", linestyle="--", linewidth=1)
    for y, v in enumerate(a):
        ax.text(min(v, 150) + 1, y, f"{v:.0f}%", va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("完成度 (%)，虚线 = 目标")
    ax.set_title("目标完成情况")
    return ax


def coverage_by_township_chart(by_township: pd.DataFrame, ax: Any = None) -> Any:
    """Bars: population coverage per township in % (network), dots: straight-line coverage."""
    import matplotlib.pyplot as plt

    t = by_township.sort_values("population_share", ascending=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.32 * len(t) + 1.2))
    ax.barh(t["township"].astype(str), t["population_share"] * 100, color="#3182bd", label="路网距离 network")
    if "population_share_euclidean" in t:
        ax.scatter(t["population_share_euclidean"] * 100, t["township"].astype(str), color="#e6550d", s=14,
                   zorder=3, label="直线距离 straight line")
    ax.set_xlabel("覆盖人口比例 (%)")
    ax.set_title("各镇街回收网点覆盖率")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def hotspot_trend_chart(incidents: pd.DataFrame, ax: Any = None) -> Any:
    """Lines: incidents per quarter and kind, with Chinese kind labels."""
    import matplotlib.pyplot as plt

    labels = _label_maps()
    counts = incidents.groupby([pd.Grouper(key="date", freq="QS"), "kind"]).size().unstack(fill_value=0)
    counts.columns = [labels.get(str(c), str(c)) for c in counts.columns]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4))
    counts.plot(ax=ax, marker="o", markersize=3)
    ax.set_xlabel("季度")
    ax.set_ylabel("事件数")
    ax.set_title("违法回收拆解事件趋势（按季度、类型）")
    ax.legend(fontsize=7, ncol=2)
    return ax


def targets_meaning(targets: pd.DataFrame) -> str:
    """这对本区意味着什么: which targets are met, the largest shortfall."""
    a = _achievement(targets)
    met = targets["met"].astype(bool)
    lines = [f"**这对本区意味着什么 What this means for the district.** {int(met.sum())} / {len(targets)} "
             "项目标已达标。"]
    if (~met).any():
        worst = a[~met].idxmin()
        row = targets.loc[worst]
        m = str(row["metric"])
        lines.append(f"差距最大的是「{row['name']}」：完成度 {a[worst]:.0f}%"
                     f"（实际 {_fmt_target_value(m, float(row['actual']))}，"
                     f"目标 {_fmt_target_value(m, float(row['target']))}）。")
        lines.append("未达标项目：" + "、".join(targets.loc[~met, "name"].astype(str)) + "。")
    else:
        lines.append("全部目标均已完成，下一步是巩固网点质量与合规。")
    return "\n".join(lines)


def coverage_meaning(summary: Mapping[str, Any]) -> str:
    """这对本区意味着什么 of the coverage summary (network vs straight line, weakest townships, siting)."""
    cov = summary["coverage"]
    towns = pd.DataFrame(cov["by_township"]).T
    share = towns["population_share"].astype(float)
    zero = share.index[share <= 0].tolist()
    weakest = share.sort_values().head(3)
    lines = ["**这对本区意味着什么 What this means for the district.** "
             f"按路网步行距离（{cov['method']}）计算，{_pct(cov['population_covered_share'])} 的居民能在服务半径内"
             "到达一个回收网点。"]
    if cov.get("population_covered_share_euclidean") is not None:
        lines.append(f"按直线距离算是 {_pct(cov['population_covered_share_euclidean'])}——差额是道路绕行造成的，"
                     "规划应以路网距离为准。")
    lines.append("覆盖最弱的镇街：" + "、".join(f"{k}（{_pct(v)}）" for k, v in weakest.items()) + "。")
    if zero:
        lines.append(f"{len(zero)} 个镇街没有任何居民被覆盖：{'、'.join(zero)}。")
    sit = summary.get("siting") or {}
    if sit:
        lines.append(f"新增 {sit['recommended']} 个推荐站点可把覆盖率从 {_pct(sit['population_covered_share_before'])} "
                     f"提高到 {_pct(sit['population_covered_share_after'])}。")
        if sit.get("lscp_reached") is False:
            lines.append(f"在合法用地的候选点内，{_pct(sit['lscp_target_share'])} 的覆盖目标无法达到："
                         f"最多只能覆盖 {_pct(sit['lscp_reachable_share'])}。")
    return "\n".join(lines)


def compliance_meaning(summary: Mapping[str, Any]) -> str:
    """这对本区意味着什么 of the compliance summary (verdicts, 四山, linkage gaps)."""
    v = summary.get("sites_by_verdict", {})
    total = sum(int(x) for x in v.values()) or 1
    fm = summary.get("sites_in_four_mountains", {})
    labels = _label_maps()
    lines = ["**这对本区意味着什么 What this means for the district.** "
             f"{int(v.get('prohibited', 0))} 个站点违规、{int(v.get('needs_review', 0))} 个需现场核查，"
             f"占全部 {total} 个站点的 {_pct((v.get('prohibited', 0) + v.get('needs_review', 0)) / total)}。"]
    if sum(fm.values()):
        lines.append("位于四山管控区的站点：" + "、".join(f"{labels.get(k, k)} {n} 个" for k, n in fm.items() if n)
                     + "，须由林业局、规划自然资源局牵头处置。")
    missing = summary.get("townships_without_transfer_station") or []
    if missing:
        lines.append(f"{len(missing)} 个镇街没有中转分拣站（{'、'.join(missing)}），其回收网点无法就近衔接。")
    if summary.get("orphan_points"):
        lines.append(f"{summary['orphan_points']} 个回收网点未能衔接到任何中转站。")
    return "\n".join(lines)


def hotspot_meaning(summary: Mapping[str, Any], incidents: pd.DataFrame, priority: pd.DataFrame) -> str:
    """这对本区意味着什么 of the hot-spot analysis (trend, clusters in 四山, rebounds, first target)."""
    per_year = incidents.groupby(incidents["date"].dt.year).size()
    lines = ["**这对本区意味着什么 What this means for the district.** "
             f"共发现 {summary.get('clusters', 0)} 个违法聚集区，其中 {summary.get('clusters_in_four_mountains', 0)} "
             f"个位于四山管控区；{summary.get('rebounds', 0)} 处关停后反弹（严防反弹）。"]
    if len(per_year) >= 2:
        last, prev = per_year.iloc[-1], per_year.iloc[-2]
        trend = "上升" if last > prev else "下降" if last < prev else "持平"
        lines.append(f"事件数 {per_year.index[-2]} 年 {prev} 起，{per_year.index[-1]} 年 {last} 起（{trend}）。")
    if len(priority):
        top = priority.iloc[0]
        depts = top.get("lead_departments", [])
        depts = "、".join(depts) if isinstance(depts, (list, tuple, np.ndarray)) else str(depts)
        lines.append(f"优先处置：{top.get('township', '')} 的聚集区 {top.get('cluster_id', '')}"
                     f"（{int(top.get('n_incidents', 0))} 起事件，牵头：{depts}）。")
    return "\n".join(lines)
