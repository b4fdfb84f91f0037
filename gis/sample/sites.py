"""The site ledger's sites: transfer stations per township, planted situations, clean points."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from gis.schema import Tier
from gis.sample.constants import FLOOR_NORM_M2, FloatArray, ScaleParams
from gis.sample.evaluate import _clean_mask, _evaluate, _Index, _situations, _unambiguous
from gis.sample.frame import _uniform_in
from gis.sample.geo import _Geo, _township_of
from gis.sample.landuse import _allowed_vec
from gis.sample.population import _Population, _population_points
from gis.sample.roads import _ROAD_STEMS
from gis.sample.townships import TOWNSHIPS, TOWNSHIPS_WITHOUT_TS, township_names, township_short

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉霞建国志红文斌波辉鹏亮宇浩凯健俊帆鑫"
_COMMUNITY = ("社区", "村", "小区", "苑", "花园", "家园")

def _names(rng: np.random.Generator, n: int) -> npt.NDArray[np.object_]:
    s = rng.choice(list(_SURNAMES), n)
    g1 = rng.choice(list(_GIVEN), n)
    g2 = np.where(rng.random(n) < 0.6, rng.choice(list(_GIVEN), n), "")
    return np.char.add(np.char.add(s.astype(str), g1.astype(str)), g2.astype(str)).astype(object)


def _pick(rng: np.random.Generator, ok: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.int64]:
    idx = np.flatnonzero(ok)
    if len(idx) == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(idx, size=min(k, len(idx)), replace=False)


# One planted item: (situation key, tier, status).
_PLAN: tuple[tuple[str, Tier, str], ...] = (
    ("fm:no_build", Tier.COLLECTION_POINT, "在营"), ("fm:no_build", Tier.COLLECTION_POINT, "规划"),
    ("fm:no_build", Tier.COLLECTION_POINT, "非法"),
    ("fm:key_control", Tier.COLLECTION_POINT, "在营"), ("fm:key_control", Tier.TRANSFER_STATION, "规划"),
    ("fm:key_control", Tier.DROP_OFF_POINT, "在营"),
    ("fm:general_control", Tier.COLLECTION_POINT, "在营"), ("fm:general_control", Tier.TRANSFER_STATION, "规划"),
    ("fm:general_control", Tier.COLLECTION_POINT, "规划"),
    ("red_line_river", Tier.COLLECTION_POINT, "在营"), ("red_line_river", Tier.DROP_OFF_POINT, "规划"),
    ("basic_farmland", Tier.COLLECTION_POINT, "在营"), ("basic_farmland", Tier.COLLECTION_POINT, "非法"),
    ("basic_farmland", Tier.COLLECTION_POINT, "规划"),
    ("water_source", Tier.COLLECTION_POINT, "在营"), ("water_source", Tier.TRANSFER_STATION, "规划"),
    ("landuse:0701", Tier.DISMANTLER, "在营"), ("landuse:0701", Tier.SORTING_CENTRE, "规划"),
    ("landuse:farm", Tier.COLLECTION_POINT, "在营"), ("landuse:0803", Tier.TRANSFER_STATION, "规划"),
    ("landuse:0810", Tier.COLLECTION_POINT, "在营"),
    ("school", Tier.DISMANTLER, "在营"),
    ("no_licence", Tier.COLLECTION_POINT, "在营"), ("no_licence", Tier.COLLECTION_POINT, "非法"),
    ("no_licence", Tier.DROP_OFF_POINT, "在营"),
    ("no_qualification", Tier.DISMANTLER, "在营"), ("no_qualification", Tier.COLLECTION_POINT, "在营"),
    ("no_police", Tier.COLLECTION_POINT, "在营"), ("no_police", Tier.COLLECTION_POINT, "在营"),
    ("no_police", Tier.COLLECTION_POINT, "规划"),
    ("floor", Tier.TRANSFER_STATION, "规划"), ("floor", Tier.COLLECTION_POINT, "在营"),
    ("floor", Tier.COLLECTION_POINT, "规划"),
    ("far_ts", Tier.COLLECTION_POINT, "在营"), ("far_ts", Tier.COLLECTION_POINT, "规划"),
    ("far_ts", Tier.COLLECTION_POINT, "在营"),
)
_ATTRIBUTE_SITUATIONS = frozenset({"no_licence", "no_qualification", "no_police", "floor"})

_SCOPE = MappingProxyType({
    Tier.SORTING_CENTRE: ("再生资源分拣、加工、储存、销售", "废旧物资分拣打包、废旧金属收购"),
    Tier.TRANSFER_STATION: ("再生资源回收、中转、分拣", "废纸、废塑料、废旧金属收购及中转"),
    Tier.COLLECTION_POINT: ("废纸、废塑料、废旧金属收购", "再生资源回收（不含危险废物）", "废旧家电、废旧衣物回收", "废纸、废塑料、废玻璃回收"),
    Tier.DROP_OFF_POINT: ("可回收物分类投放、暂存", "废旧衣物、废纸分类投放"),
    Tier.DISMANTLER: ("报废机动车回收拆解", "废弃电器电子产品拆解处理"),
})
_AREA = MappingProxyType({  # clean floor area range (m²)
    Tier.SORTING_CENTRE: (5000, 12000), Tier.TRANSFER_STATION: (600, 2000), Tier.COLLECTION_POINT: (15, 120),
    Tier.DROP_OFF_POINT: (10, 30), Tier.DISMANTLER: (12000, 40000),
})
_CAPACITY = MappingProxyType({
    Tier.SORTING_CENTRE: (100, 160), Tier.TRANSFER_STATION: (10, 40), Tier.COLLECTION_POINT: (0.5, 3),
    Tier.DROP_OFF_POINT: (0.05, 0.3), Tier.DISMANTLER: (50, 200),
})
_ID_CODE = MappingProxyType({
    Tier.SORTING_CENTRE: "FJ", Tier.TRANSFER_STATION: "ZZ", Tier.COLLECTION_POINT: "HS",
    Tier.DROP_OFF_POINT: "TF", Tier.DISMANTLER: "CJ",
})


def _site_attributes(rng: np.random.Generator, tiers: npt.ArrayLike, township: npt.ArrayLike) -> pd.DataFrame:
    """Clean ledger attributes for sites of the given tiers (names, licences, areas …)."""
    tiers = np.asarray(tiers, dtype=object)
    n = len(tiers)
    tname = township_names()[np.asarray(township)]
    short = township_short()[np.asarray(township)]
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), n)
    comm = rng.choice(np.array(_COMMUNITY, dtype=object), n)
    person = _names(rng, n)
    attrs = pd.DataFrame(index=np.arange(n))
    name = np.empty(n, dtype=object)
    operator = np.empty(n, dtype=object)
    scope = np.empty(n, dtype=object)
    area = np.zeros(n)
    cap = np.zeros(n)
    for t in Tier:
        m = tiers == str(t)
        k = int(m.sum())
        if not k:
            continue
        lo, hi = _AREA[t]
        area[m] = np.round(rng.uniform(lo, hi, k))
        clo, chi = _CAPACITY[t]
        cap[m] = np.round(rng.uniform(clo, chi, k), 2)
        scope[m] = rng.choice(np.array(_SCOPE[t], dtype=object), k)
        if t == Tier.SORTING_CENTRE:
            name[m] = "沙坪坝区再生资源综合分拣中心"
            operator[m] = "重庆沙坪坝再生资源有限公司"
        elif t == Tier.TRANSFER_STATION:
            name[m] = short[m] + "再生资源中转分拣站"
            operator[m] = "重庆" + short[m] + "再生资源回收有限公司"
        elif t == Tier.COLLECTION_POINT:
            name[m] = short[m] + stems[m] + comm[m] + "回收站"
            operator[m] = person[m]
        elif t == Tier.DROP_OFF_POINT:
            name[m] = stems[m] + comm[m] + "可回收物分类投放点"
            operator[m] = stems[m] + comm[m] + "物业服务中心"
        else:
            name[m] = "重庆" + stems[m] + np.where(scope[m] == _SCOPE[t][0], "报废汽车回收拆解有限公司", "电子废弃物处理有限公司")
            operator[m] = "重庆" + stems[m] + "再生资源集团有限公司"
    num = rng.integers(1, 300, n).astype(str)
    attrs["网点名称"] = name
    attrs["经营者"] = operator
    attrs["经营地址"] = "重庆市沙坪坝区" + tname + stems + "路" + num + "号"
    attrs["所属镇街"] = tname
    attrs["营业执照"] = "有"
    attrs["资质认定"] = np.where(tiers == str(Tier.DISMANTLER), "已取得", "")
    attrs["公安备案"] = "已备案"
    attrs["日处理能力(吨)"] = cap
    attrs["占地面积(㎡)"] = area
    attrs["经营范围"] = scope
    return attrs


@dataclass
class _Sites:
    x: FloatArray
    y: FloatArray
    tier: npt.NDArray[np.object_]
    status: npt.NDArray[np.object_]
    key: npt.NDArray[np.object_]
    attrs: pd.DataFrame
    situations: npt.NDArray[np.object_]
    clean: npt.NDArray[np.bool_]
    d_ts: FloatArray


class _Placer:
    """Draws positions for planted situations (pools of candidates, evaluated, picked)."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, ix: _Index, pop: _Population) -> None:
        self.rng, self.geo, self.ix, self.pop = rng, geo, ix, pop
        self.pools: dict[str, tuple[FloatArray, FloatArray]] = {}
        self.evals: dict[str, pd.DataFrame] = {}

    def pool(self, key: str, n: int = 4000) -> tuple[FloatArray, FloatArray]:
        """Candidate positions for a situation key (kept between calls, used ones removed)."""
        if key in self.pools:
            return self.pools[key]
        rng, geo, ix = self.rng, self.geo, self.ix
        parcels = ix.parcels
        if key.startswith("fm:"):
            g = shapely.union_all([v for (_, lv), v in geo.bands.items() if lv == key[3:]])
            x, y = _uniform_in(rng, g, n)
        elif key == "red_line_river":
            g = shapely.difference(geo.riverside, shapely.union_all([geo.river, *geo.bands.values()]))
            x, y = _uniform_in(rng, g, n)
        elif key == "basic_farmland":
            g = shapely.union_all(ix.zones.geometry[ix.zones["zone_type"] == "basic_farmland"].values)
            x, y = _uniform_in(rng, g, n)
        elif key == "water_source":
            g = shapely.difference(shapely.union_all(geo.water_source), shapely.union_all(geo.reservoirs))
            x, y = _uniform_in(rng, g, n)
        elif key.startswith("landuse:"):
            code = key.split(":")[1]
            codes = ["0101", "0103"] if code == "farm" else [code]
            x, y = _uniform_in(rng, shapely.union_all(parcels.geometry[parcels["code"].isin(codes)].values), n)
        elif key == "school":
            g = shapely.union_all(parcels.geometry[parcels["code"].isin(["0601", "0604"])].values)
            x, y = _uniform_in(rng, g, n * 3)
        elif key == "far_ts":
            x, y = _uniform_in(rng, geo.district, n * 3)
        else:  # attribute-only situations and bad-row bases: ordinary positions
            x, y = _population_points(rng, self.pop, n)
        self.pools[key] = (x, y)
        return x, y

    def place(self, key: str, tier: Tier, k: int) -> tuple[FloatArray, FloatArray]:
        """Up to ``k`` unambiguous positions of ``tier`` in situation ``key``."""
        x, y = self.pool(key)
        ev = self.evals.get(key)
        if ev is None or len(ev) != len(x):
            ev = _evaluate(self.ix, x, y)
        else:  # transfer stations may have been added since: refresh those distances
            for name, xy in (("d_ts", self.ix.ts_xy), ("d_ts_active", self.ix.ts_active_xy)):
                ev[name] = cKDTree(xy).query(np.column_stack([x, y]))[0] if len(xy) else np.inf
        ok = _unambiguous(ev, tier)
        allowed = _allowed_vec(ev["code"].to_numpy(dtype=object), str(tier), self.ix.classes)
        in_zone = ev["in_zone"].to_numpy()
        if key.startswith("fm:"):
            ok &= ev["fm_level"].to_numpy(dtype=object) == key[3:]
        elif key in ("red_line_river", "basic_farmland", "water_source"):
            t = "ecological_red_line" if key == "red_line_river" else key
            ok &= ev[t].to_numpy() & ev["fm_level"].isna().to_numpy()
        elif key.startswith("landuse:"):
            ok &= ~in_zone & ~allowed
        elif key == "school":
            d = ev["d_school"].to_numpy()
            ok &= ~in_zone & allowed & (d > 35.0) & (d < 140.0)
        elif key == "far_ts":
            ok &= ~in_zone & allowed & (ev["d_ts"].to_numpy() > 5500.0)
        else:
            ok &= _clean_mask(ev, tier, self.ix.classes)
        sel = _pick(self.rng, ok, k)
        used = np.zeros(len(x), bool)
        used[sel] = True
        self.pools[key] = (x[~used], y[~used])
        self.evals[key] = ev[~used].reset_index(drop=True)
        return x[sel], y[sel]


class _SiteList:
    """Accumulates sites as they are placed (positions, tier, status, planted key)."""

    def __init__(self) -> None:
        self.xs: list[FloatArray] = []
        self.ys: list[FloatArray] = []
        self.tiers: list[npt.NDArray[np.object_]] = []
        self.statuses: list[npt.NDArray[np.object_]] = []
        self.keys: list[npt.NDArray[np.object_]] = []  # planted situation key per site ('' = clean)

    def add(self, x: FloatArray, y: FloatArray, tier: Tier, status: Any, key: str = "") -> None:
        """Append sites of one tier (``status`` scalar or per site)."""
        self.xs.append(np.asarray(x, float))
        self.ys.append(np.asarray(y, float))
        self.tiers.append(np.full(len(x), str(tier), dtype=object))
        self.statuses.append(np.broadcast_to(np.asarray(status, dtype=object), (len(x),)).copy())
        self.keys.append(np.full(len(x), key, dtype=object))

    def transfer_station_xy(self) -> FloatArray:
        """Positions of every transfer station added so far."""
        ts = [np.column_stack([a, b]) for a, b, t in zip(self.xs, self.ys, self.tiers) if len(t) and t[0] == str(Tier.TRANSFER_STATION)]
        return np.vstack(ts)


def _transfer_stations(rng: np.random.Generator, geo: _Geo, ix: _Index, pop: _Population, out: _SiteList) -> None:
    """One clean, population-weighted active transfer station per township (but a few)."""
    cx, cy = _population_points(rng, pop, 40_000)
    ux, uy = _uniform_in(rng, geo.district, 40_000)
    per = [_uniform_in(rng, g, 2000) for g in geo.townships]  # small townships get candidates too
    cx = np.concatenate([cx, ux, *[a for a, _ in per]])
    cy = np.concatenate([cy, uy, *[b for _, b in per]])
    ev = _evaluate(ix, cx, cy)
    twn = _township_of(geo, cx, cy)
    ok = _clean_mask(ev, Tier.TRANSFER_STATION, ix.classes)
    no_ts = {TOWNSHIPS.index(next(t for t in TOWNSHIPS if t[0] == name)) for name in TOWNSHIPS_WITHOUT_TS}
    order = rng.permutation(len(cx))
    chosen = pd.Series(order[ok[order]]).groupby(twn[order[ok[order]]]).first()
    chosen = chosen[~chosen.index.isin(list(no_ts))].to_numpy()
    out.add(cx[chosen], cy[chosen], Tier.TRANSFER_STATION, "在营")
    ix.ts_active_xy = np.column_stack([cx[chosen], cy[chosen]])
    ix.ts_xy = ix.ts_active_xy


def _planted(placer: _Placer, ix: _Index, p: ScaleParams, out: _SiteList) -> None:
    """The planted situations of :data:`_PLAN` (transfer stations first, so that point
    distances see the planned stations too)."""
    plan = pd.DataFrame([(k, t, s) for k, t, s in _PLAN for _ in range(p.plant_factor)], columns=["key", "tier", "status"])
    plan["tier"] = plan["tier"].map(str)
    ts_first = (plan["tier"] == str(Tier.TRANSFER_STATION)).to_numpy()
    for phase in (True, False):
        for (key, tier), grp in plan[ts_first == phase].groupby(["key", "tier"], sort=False):
            x, y = placer.place(key, Tier(tier), len(grp))
            out.add(x, y, Tier(tier), grp["status"].to_numpy()[: len(x)], key)
        if phase:
            ix.ts_xy = out.transfer_station_xy()


def _industrial_sites(rng: np.random.Generator, ix: _Index, p: ScaleParams, out: _SiteList) -> None:
    """The active sorting centre and the clean dismantlers, on industrial/storage land."""
    ind = shapely.union_all(ix.parcels.geometry[ix.parcels["code"].isin(["0601", "0604"])].values)
    ix_, iy_ = _uniform_in(rng, ind, 20_000 if p.name != "city" else 40_000)
    ev = _evaluate(ix, ix_, iy_)
    sel = _pick(rng, _clean_mask(ev, Tier.SORTING_CENTRE, ix.classes), 1)
    out.add(ix_[sel], iy_[sel], Tier.SORTING_CENTRE, "在营")
    ok = _clean_mask(ev, Tier.DISMANTLER, ix.classes)
    ok[sel] = False
    sel = _pick(rng, ok, p.n_dismantler)
    out.add(ix_[sel], iy_[sel], Tier.DISMANTLER, rng.choice(["在营", "在营", "在营", "规划"], len(sel)))


def _clean_points(rng: np.random.Generator, ix: _Index, pop: _Population, p: ScaleParams, out: _SiteList) -> None:
    """Clean collection and drop-off points, population-weighted."""
    for tier, n, probs in (
        (Tier.COLLECTION_POINT, p.n_collection, ([0.88, 0.06, 0.04, 0.02], ["在营", "规划", "关停", "非法"])),
        (Tier.DROP_OFF_POINT, p.n_dropoff, ([0.9, 0.1], ["在营", "规划"])),
    ):
        got_x: list[FloatArray] = []
        got_y: list[FloatArray] = []
        need = n
        for _ in range(20):
            qx, qy = _population_points(rng, pop, max(need * 6, 2000))
            ev = _evaluate(ix, qx, qy)
            sel = np.flatnonzero(_clean_mask(ev, tier, ix.classes))[:need]
            got_x.append(qx[sel])
            got_y.append(qy[sel])
            need -= len(sel)
            if need <= 0:
                break
        x, y = np.concatenate(got_x), np.concatenate(got_y)
        out.add(x, y, tier, rng.choice(np.array(probs[1], dtype=object), len(x), p=probs[0]))


def _attribute_situations(rng: np.random.Generator, attrs: pd.DataFrame, tier: npt.NDArray[np.object_], key: npt.NDArray[np.object_]) -> None:
    """Write the planted attribute situations (licence, qualification, filing, floor area) into ``attrs``."""
    attrs.loc[key == "no_licence", "营业执照"] = "无"
    attrs.loc[key == "no_police", "公安备案"] = "未备案"
    attrs.loc[key == "no_police", "经营范围"] = "废旧金属收购、废纸回收"
    nq = np.flatnonzero(key == "no_qualification")
    attrs.loc[nq, "资质认定"] = "未取得"
    attrs.loc[nq[tier[nq] == str(Tier.COLLECTION_POINT)], "经营范围"] = "废旧家电回收、拆解"
    fl = np.flatnonzero(key == "floor")
    norm = pd.Series(tier[fl]).map({str(k): v for k, v in FLOOR_NORM_M2.items()}).to_numpy(float)
    attrs.loc[fl, "占地面积(㎡)"] = np.round(norm * rng.uniform(0.3, 0.7, len(fl)))
    sc_planned = np.flatnonzero((tier == str(Tier.SORTING_CENTRE)) & (key != ""))
    attrs.loc[sc_planned, "占地面积(㎡)"] = 2400.0  # also below the 3,000 m² norm


def _sites(rng: np.random.Generator, geo: _Geo, ix: _Index, pop: _Population, p: ScaleParams) -> tuple[_Sites, _Placer]:
    """Every ledger site with its attributes and evaluated situations."""
    out = _SiteList()
    _transfer_stations(rng, geo, ix, pop, out)
    placer = _Placer(rng, geo, ix, pop)
    _planted(placer, ix, p, out)
    _industrial_sites(rng, ix, p, out)
    _clean_points(rng, ix, pop, p, out)
    bx, by = placer.place("bad", Tier.COLLECTION_POINT, 7)  # bases of the deliberately bad ledger rows
    out.add(bx, by, Tier.COLLECTION_POINT, "在营", "__bad__")
    x, y = np.concatenate(out.xs), np.concatenate(out.ys)
    tier, status, key = np.concatenate(out.tiers), np.concatenate(out.statuses), np.concatenate(out.keys)
    attrs = _site_attributes(rng, tier, _township_of(geo, x, y))
    _attribute_situations(rng, attrs, tier, key)
    ev = _evaluate(ix, x, y)
    situations = _situations(ev, tier, attrs, ix.classes)
    clean = situations == ""
    return _Sites(x, y, tier, status, key, attrs, situations, clean, ev["d_ts"].to_numpy()), placer
