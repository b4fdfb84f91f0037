"""gis.story: the notebook tables, charts and "这对本区意味着什么" paragraphs follow the results."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from gis import story

TARGETS = pd.DataFrame({
    "name": ["回收站点数量", "500米步行覆盖人口比例", "每网点服务户数上限", "分拣中心"],
    "metric": ["count", "population_coverage", "households_per_point", "count"],
    "tiers": [["collection_point"], ["collection_point", "drop_off_point"], ["collection_point"], ["sorting_centre"]],
    "target": [250.0, 0.9, 2000.0, 1.0],
    "actual": [173.0, 0.27, 3091.1, 1.0],
    "met": [False, False, False, True],
})


def test_targets_table_shortfall_and_achievement() -> None:
    t = story.targets_table(TARGETS).set_index("目标")
    assert t.loc["回收站点数量", "差额"] == "77" and t.loc["回收站点数量", "完成度(%)"] == pytest.approx(69.2)
    assert t.loc["500米步行覆盖人口比例", ["目标值", "实际值", "差额"]].tolist() == ["90.0%", "27.0%", "63.0%"]
    # an upper bound: 3091 households per point against at most 2000 → 2000/3091
    assert t.loc["每网点服务户数上限", "完成度(%)"] == pytest.approx(100 * 2000 / 3091.1, abs=0.05)
    assert t.loc["每网点服务户数上限", "差额"] == "1,091"
    assert t.loc["分拣中心", "差额"] == "—" and t.loc["分拣中心", "是否达标"] == "达标"
    assert t.loc["500米步行覆盖人口比例", "统计层级"] == "回收网点、分类投放点"


def test_targets_meaning_names_the_largest_gap() -> None:
    text = story.targets_meaning(TARGETS)
    assert "1 / 4" in text and "「500米步行覆盖人口比例」" in text and "27.0%" in text
    met = TARGETS.assign(met=True)
    assert "全部目标均已完成" in story.targets_meaning(met)


def test_zh_labels_translates_codes_and_rounds() -> None:
    df = pd.DataFrame({"tier": ["transfer_station"], "kinds": [["illegal_elv_dismantling", "fire_hazard"]],
                       "population": [12345.678], "population_share": [0.27354], "rebound": [True]})
    out = story.zh_labels(df)
    assert list(out.columns) == ["层级", "事件类型", "人口", "人口覆盖率(%)", "是否反弹"]
    row = out.iloc[0]
    assert row["层级"] == "中转分拣站" and row["事件类型"] == "非法拆解报废机动车、三合一消防隐患"
    assert row["人口"] == 12346 and row["人口覆盖率(%)"] == 27.4 and row["是否反弹"] == "是"


def _coverage_summary(share: float) -> dict:
    return {"coverage": {"method": "network", "population_covered_share": share,
                         "population_covered_share_euclidean": share * 2,
                         "by_township": {"甲街道": {"population_share": share}, "乙镇": {"population_share": 0.0}}},
            "siting": {"recommended": 3, "population_covered_share_before": share,
                       "population_covered_share_after": share + 0.05, "lscp_reached": False,
                       "lscp_target_share": 0.95, "lscp_reachable_share": 0.8}}


def test_coverage_meaning_is_computed_from_the_summary() -> None:
    a, b = story.coverage_meaning(_coverage_summary(0.2)), story.coverage_meaning(_coverage_summary(0.3))
    assert "20.0%" in a and "40.0%" in a and "30.0%" in b and a != b
    assert "1 个镇街没有任何居民被覆盖：乙镇" in a
    assert "95.0% 的覆盖目标无法达到" in a and "80.0%" in a


def test_compliance_and_hotspot_meaning() -> None:
    c = story.compliance_meaning({"sites_by_verdict": {"ok": 90, "prohibited": 8, "needs_review": 2},
                                  "sites_in_four_mountains": {"no_build": 2, "key_control": 0},
                                  "townships_without_transfer_station": ["乙镇"], "orphan_points": 0})
    assert "8 个站点违规" in c and "10.0%" in c and "禁建区 2 个" in c and "乙镇" in c
    inc = pd.DataFrame({"date": pd.to_datetime(["2023-01-05", "2024-02-01", "2024-03-01"]),
                        "kind": ["fire_hazard"] * 3})
    pr = pd.DataFrame({"cluster_id": ["HS-1"], "township": ["甲街道"], "n_incidents": [5],
                       "lead_departments": [["生态环境局", "商务委"]]})
    h = story.hotspot_meaning({"clusters": 4, "clusters_in_four_mountains": 1, "rebounds": 2}, inc, pr)
    assert "4 个违法聚集区" in h and "2023 年 1 起，2024 年 2 起（上升）" in h and "牵头：生态环境局、商务委" in h


def test_charts_draw_chinese_without_missing_glyphs() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    towns = pd.DataFrame({"township": ["甲街道", "乙镇"], "population_share": [0.4, 0.1],
                          "population_share_euclidean": [0.6, 0.2]})
    inc = pd.DataFrame({"date": pd.to_datetime(["2023-01-05", "2023-05-01", "2024-03-01"]),
                        "kind": ["fire_hazard", "illegal_elv_dismantling", "fire_hazard"]})
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.filterwarnings("error", message=r".*[Gg]lyph.*missing")
        story.use_cjk_font()
        for draw in (lambda: story.targets_chart(TARGETS), lambda: story.coverage_by_township_chart(towns),
                     lambda: story.hotspot_trend_chart(inc)):
            ax = draw()
            ax.figure.canvas.draw()
            assert ax.get_title()
            plt.close(ax.figure)
