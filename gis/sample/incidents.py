"""Incident records (摸排/举报/巡查/执法记录): planted clusters, closures, rebounds, noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from gis.schema import INCIDENT_KIND_LABEL_ZH, IncidentKind, RejectReason
from gis.sample.constants import FloatArray, ScaleParams
from gis.sample.frame import _contains, _seq_ids, _uniform_in
from gis.sample.geo import _Geo, _township_of
from gis.sample.population import _Population, _population_points
from gis.sample.roads import _ROAD_STEMS
from gis.sample.townships import township_names

_MAIN_KINDS = (
    IncidentKind.ILLEGAL_ELV_DISMANTLING,
    IncidentKind.ILLEGAL_EWASTE_DISMANTLING,
    IncidentKind.UNLICENSED_RECYCLING,
    IncidentKind.SCATTERED_POLLUTING,
)
_NOISE_KIND_P = MappingProxyType({
    IncidentKind.ILLEGAL_ELV_DISMANTLING: 0.12, IncidentKind.ILLEGAL_EWASTE_DISMANTLING: 0.10,
    IncidentKind.UNLICENSED_RECYCLING: 0.22, IncidentKind.SCATTERED_POLLUTING: 0.16,
    IncidentKind.FIRE_HAZARD: 0.12, IncidentKind.ROAD_OCCUPYING: 0.12, IncidentKind.ILLEGAL_LAND_USE: 0.08,
    IncidentKind.UNFILED_SCRAP_METAL: 0.08,
})
_DESCRIPTION = MappingProxyType({
    IncidentKind.ILLEGAL_ELV_DISMANTLING: "现场发现非法拆解报废机动车，堆放发动机、车架等“五大总成”",
    IncidentKind.ILLEGAL_EWASTE_DISMANTLING: "现场发现露天拆解废旧电视机、冰箱等废弃电器电子产品",
    IncidentKind.UNLICENSED_RECYCLING: "未办理营业执照从事废旧物资收购",
    IncidentKind.SCATTERED_POLLUTING: "场地未硬化、无围挡，废旧物资露天堆放，污染周边环境",
    IncidentKind.FIRE_HAZARD: "生产、储存、居住混合设置（三合一），存在消防隐患",
    IncidentKind.ROAD_OCCUPYING: "占用人行道堆放废旧物资经营",
    IncidentKind.ILLEGAL_LAND_USE: "占用耕地搭建棚房从事废旧物资回收",
    IncidentKind.UNFILED_SCRAP_METAL: "收购废旧金属未向公安机关备案",
})
_DESTINATIONS = ("去向不明", "流入二手配件市场", "交售正规拆解企业", "已追回")
#: Ring (m) beyond a cluster's 3σ kept free of noise of its kind (> the 300 m rebound distance).
QUIET_RING_M = 450.0
_START = np.datetime64("2022-01-01")
_END = np.datetime64("2024-12-31")


def _truncated_offsets(rng: np.random.Generator, sigma: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Isotropic normal offsets truncated at 3 sigma: ``r = σ √(-2 ln(1 - u (1 - e^{-4.5})))``."""
    u = rng.random(len(sigma))
    r = sigma * np.sqrt(-2.0 * np.log(1.0 - u * (1.0 - math.exp(-4.5))))
    a = rng.uniform(0, 2 * np.pi, len(sigma))
    return r * np.cos(a), r * np.sin(a)


def _days(d: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    return (d - _START).astype("timedelta64[D]").astype(np.int64)


@dataclass
class _Clusters:
    """Planted clusters: centre (m), σ (m), 四山 level/range, kind and life cycle."""

    level: npt.NDArray[np.object_]
    range_: npt.NDArray[np.object_]
    sigma: FloatArray
    cx: FloatArray
    cy: FloatArray
    kind: npt.NDArray[np.object_] | None = None
    rebound: npt.NDArray[np.bool_] | None = None
    closed_role: npt.NDArray[np.bool_] | None = None
    start: npt.NDArray[Any] | None = None
    end: npt.NDArray[Any] | None = None
    closed: npt.NDArray[Any] | None = None


def _cluster_plan(rng: np.random.Generator, p: ScaleParams) -> _Clusters:
    """Levels and ranges of the clusters (the first ``n_clusters_in_band`` in 四山 bands) and σ."""
    n_cl, n_band = p.n_clusters, p.n_clusters_in_band
    levels = np.array(["no_build", "key_control", "general_control", "key_control", "general_control"], dtype=object)
    cl_level = np.concatenate([np.resize(levels, n_band), np.full(n_cl - n_band, None, dtype=object)])
    cl_range = np.array([("缙云山" if i % 3 == 2 else "中梁山") if i < n_band else None for i in range(n_cl)], dtype=object)
    sig_hi = {"no_build": 150.0, "key_control": 100.0, "general_control": 170.0, None: 200.0}
    sigma = rng.uniform(80.0, pd.Series(cl_level, dtype=object).map(lambda lv: sig_hi[lv]).to_numpy(float))
    return _Clusters(cl_level, cl_range, sigma, np.zeros(n_cl), np.zeros(n_cl))


def _band_centres(rng: np.random.Generator, geo: _Geo, c: _Clusters, water: shapely.Geometry) -> None:
    """Centres inside bands, clear of the band's own boundary and water by 3σ + 60 m."""
    for (rname, level), g in geo.bands.items():
        members = np.flatnonzero((c.level == level) & (c.range_ == rname))
        if not len(members):
            continue
        px, py = _uniform_in(rng, g, 3000)
        pts = shapely.points(px, py)
        clear = np.minimum(shapely.distance(pts, shapely.boundary(g)), shapely.distance(pts, water))
        for i in members:
            ok = np.flatnonzero(clear >= 3 * c.sigma[i] + 60.0)
            if not len(ok):
                raise RuntimeError(f"no room for a cluster in {rname} {level}")
            j = ok[0]
            c.cx[i], c.cy[i] = px[j], py[j]
            clear[np.hypot(px - px[j], py - py[j]) < 1500.0] = -1.0


def _outside_centres(rng: np.random.Generator, geo: _Geo, pop: _Population, c: _Clusters, water: shapely.Geometry) -> None:
    """Centres outside every band, ≥ 700 m from bands, the district edge and water."""
    out = np.flatnonzero(c.level == None)  # noqa: E711
    m = len(out) * 4 + 200
    ux, uy = _uniform_in(rng, geo.district, m // 2)
    qx, qy = _population_points(rng, pop, m - len(ux))
    px, py = np.concatenate([ux, qx]), np.concatenate([uy, qy])
    perm = rng.permutation(len(px))
    px, py = px[perm], py[perm]
    pts = shapely.points(px, py)
    bands = shapely.union_all(list(geo.bands.values()))
    clear = np.minimum.reduce([
        shapely.distance(pts, bands),
        shapely.distance(pts, shapely.boundary(geo.district)) * np.where(_contains(geo.district, px, py), 1, -1),
        shapely.distance(pts, water),
    ])
    ok = np.flatnonzero(clear >= 3 * 200.0 + 100.0)
    if len(ok) < len(out):
        raise RuntimeError("not enough room for incident clusters")
    c.cx[out], c.cy[out] = px[ok[: len(out)]], py[ok[: len(out)]]


def _life_cycle(rng: np.random.Generator, c: _Clusters) -> npt.NDArray[np.int64]:
    """Kind, role (open / closed / rebound) and dates of each cluster; returns the sizes."""
    n_cl = len(c.sigma)
    out = np.flatnonzero(c.level == None)  # noqa: E711
    c.kind = np.array([str(k) for k in _MAIN_KINDS], dtype=object)[rng.permutation(n_cl) % 4]
    n_rebound = max(3, round(n_cl * 0.25)) if n_cl >= 12 else min(3, n_cl)
    n_closed = max(2, round(n_cl * 0.15))
    role = np.full(n_cl, "open", dtype=object)
    pick = rng.permutation(out)
    role[pick[:n_rebound]] = "rebound"
    role[pick[n_rebound : n_rebound + n_closed]] = "closed"
    size = rng.integers(15, 61, n_cl)
    start = _START + rng.integers(0, 900, n_cl).astype("timedelta64[D]")
    span = rng.integers(90, 540, n_cl)
    reb = role == "rebound"
    start[reb] = _START + rng.integers(0, 450, reb.sum()).astype("timedelta64[D]")
    span[reb] = rng.integers(120, 300, reb.sum())
    end = np.minimum(start + span.astype("timedelta64[D]"), _END)
    closed = np.full(n_cl, np.datetime64("NaT"), dtype="datetime64[D]")
    closed[reb] = end[reb]
    cl_closed = role == "closed"
    closed[cl_closed] = np.minimum(end[cl_closed] + rng.integers(10, 40, cl_closed.sum()).astype("timedelta64[D]"), _END)
    c.rebound, c.closed_role, c.start, c.end, c.closed = reb, cl_closed, start, end, closed
    return size


def _members(rng: np.random.Generator, c: _Clusters, size: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Members before closure (or all of an open cluster), then rebound members ≤ 400 m after it."""
    n_cl = len(c.sigma)
    cid = np.repeat(np.arange(n_cl), size)
    ox, oy = _truncated_offsets(rng, c.sigma[cid])
    span_m = _days(c.end[cid]) - _days(c.start[cid])
    mdate = c.start[cid] + (rng.random(len(cid)) * span_m).astype("timedelta64[D]")
    phase = np.where(c.rebound[cid] | c.closed_role[cid], "before_closure", "").astype(object)
    n_post = rng.integers(6, 13, n_cl) * c.rebound
    rid = np.repeat(np.arange(n_cl), n_post)
    rx, ry = _truncated_offsets(rng, np.minimum(c.sigma[rid], 110.0))
    rdate = np.minimum(c.closed[rid] + rng.integers(30, 230, len(rid)).astype("timedelta64[D]"), _END)
    return {
        "x": np.concatenate([c.cx[cid] + ox, c.cx[rid] + rx]), "y": np.concatenate([c.cy[cid] + oy, c.cy[rid] + ry]),
        "cid": np.concatenate([cid, rid]), "date": np.concatenate([mdate, rdate]),
        "phase": np.concatenate([phase, np.full(len(rid), "after_closure", dtype=object)]),
    }


def _with_noise(rng: np.random.Generator, pop: _Population, p: ScaleParams, c: _Clusters, m: dict[str, Any]) -> dict[str, Any]:
    """Add population-weighted background incidents: ``n_noise = n_members · s / (1 − s)``."""
    n_members = len(m["cid"])
    n_noise = int(round(n_members * p.noise_share / (1.0 - p.noise_share)))
    nx_, ny_ = _population_points(rng, pop, n_noise)
    kinds_all = np.array(list(_NOISE_KIND_P), dtype=object)
    probs = np.array(list(_NOISE_KIND_P.values()))
    nkind = rng.choice(kinds_all, n_noise, p=probs / probs.sum())
    ndate = _START + rng.integers(0, _days(np.array([_END]))[0] + 1, n_noise).astype("timedelta64[D]")
    keep = _clear_of_clusters(c, nx_, ny_, nkind)
    nx_, ny_, nkind, ndate, n_noise = nx_[keep], ny_[keep], nkind[keep], ndate[keep], int(keep.sum())
    return {
        "x": np.concatenate([m["x"], nx_]), "y": np.concatenate([m["y"], ny_]),
        "kind": np.concatenate([c.kind[m["cid"]], nkind]), "date": np.concatenate([m["date"], ndate]),
        "cid": np.concatenate([m["cid"], np.full(n_noise, -1)]),
        "phase": np.concatenate([m["phase"], np.full(n_noise, "", dtype=object)]),
    }


def _clear_of_clusters(c: _Clusters, x: FloatArray, y: FloatArray, kind: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Noise incidents that stay out of every planted cluster of their own kind.

    A noise incident of kind *k* within ``3σ + QUIET_RING_M`` of the centre of a cluster of
    kind *k* would join that cluster or read as its rebound (严防反弹: same kind within the
    rebound distance after closure), so the planted truth would no longer hold; it is dropped.
    """
    keep = np.ones(len(x), bool)
    for i in range(len(c.sigma)):
        near = np.hypot(x - c.cx[i], y - c.cy[i]) < 3.0 * c.sigma[i] + QUIET_RING_M
        keep &= ~(near & (kind == c.kind[i]))
    return keep


def _status(rng: np.random.Generator, c: _Clusters, a: dict[str, Any]) -> None:
    """Handling status (处置状态) and closure date of every incident (adds ``status``, ``cdate``)."""
    n = len(a["x"])
    status = rng.choice(np.array(["待整改", "已整改", "已关停"], dtype=object), n, p=[0.35, 0.5, 0.15])
    cdate = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    noise_closed = (a["cid"] < 0) & (status == "已关停")
    cdate[noise_closed] = np.minimum(a["date"][noise_closed] + rng.integers(7, 90, noise_closed.sum()).astype("timedelta64[D]"), _END)
    open_cl = (a["cid"] >= 0) & (a["phase"] == "")
    status[open_cl] = rng.choice(np.array(["待整改", "已整改"], dtype=object), open_cl.sum())
    before = a["phase"] == "before_closure"
    status[before] = "已关停"
    cdate[before] = c.closed[a["cid"][before]]
    after = a["phase"] == "after_closure"
    status[after] = rng.choice(np.array(["反弹", "待整改"], dtype=object), after.sum(), p=[0.75, 0.25])
    a["status"], a["cdate"] = status, cdate


def _records(rng: np.random.Generator, geo: _Geo, cols: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The incident table (Chinese headers, WGS84) and its truth, ordered by date."""
    n = len(cols["x"])
    years = cols["date"].astype("datetime64[Y]").astype(int) + 1970
    ids = _seq_ids(np.char.add("XS", years.astype(str)), np.arange(1, n + 1), 6)
    tname = township_names()[_township_of(geo, cols["x"], cols["y"])]
    lon, lat = geo.frame.to_lonlat(cols["x"], cols["y"])
    kinds = pd.Series(cols["kind"])
    elv = cols["kind"] == IncidentKind.ILLEGAL_ELV_DISMANTLING
    dest = np.where(elv, rng.choice(np.array(_DESTINATIONS, dtype=object), n, p=[0.4, 0.3, 0.2, 0.1]), "")
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), n)
    df = pd.DataFrame({
        "记录编号": ids,
        "发现日期": pd.to_datetime(cols["date"]).strftime("%Y-%m-%d"),
        "问题类型": kinds.map({str(k): v for k, v in INCIDENT_KIND_LABEL_ZH.items()}).to_numpy(dtype=object),
        "线索来源": rng.choice(np.array(["摸排", "举报", "巡查", "执法"], dtype=object), n, p=[0.35, 0.3, 0.25, 0.1]),
        "处置状态": cols["status"],
        "关停日期": pd.Series(pd.to_datetime(cols["cdate"]).strftime("%Y-%m-%d")).fillna("").to_numpy(),
        "五大总成流向": dest,
        "所属镇街": tname,
        "地址": "重庆市沙坪坝区" + tname + stems + "路附近",
        "问题描述": kinds.map({str(k): v for k, v in _DESCRIPTION.items()}).to_numpy(dtype=object),
        "经度": np.char.mod("%.7f", lon),
        "纬度": np.char.mod("%.7f", lat),
    })
    truth = pd.DataFrame({
        "incident_id": ids, "cluster_id": np.where(cols["cid"] >= 0, _seq_ids("C", cols["cid"], 3), ""), "phase": cols["phase"],
    })
    return df, truth


def _cluster_truth(geo: _Geo, c: _Clusters, cols: dict[str, Any]) -> pd.DataFrame:
    """One row per planted cluster (centre, 95 % radius, level, dates, closure, rebound)."""
    n_cl = len(c.sigma)
    clon, clat = geo.frame.to_lonlat(c.cx, c.cy)
    k = np.maximum(cols["cid"], 0)
    m = pd.DataFrame({"cid": cols["cid"], "date": cols["date"], "phase": cols["phase"]})
    m["d"] = np.hypot(cols["x"] - c.cx[k], cols["y"] - c.cy[k])
    m = m[m["cid"] >= 0]
    g = m.groupby("cid")
    post = m[m["phase"] == "after_closure"].groupby("cid")["date"].min()
    q95 = g["d"].quantile(0.95, interpolation="higher").reindex(range(n_cl)).to_numpy()
    nd = np.datetime_as_string

    def day(s: pd.Series) -> npt.NDArray[Any]:
        return nd(s.reindex(range(n_cl)).to_numpy().astype("datetime64[D]"))

    return pd.DataFrame({
        "cluster_id": _seq_ids("C", np.arange(n_cl), 3), "kind": c.kind,
        "lon": np.round(clon, 7), "lat": np.round(clat, 7),
        "radius_m": np.round(q95 + 0.05, 1), "max_dist_m": np.round(g["d"].max().reindex(range(n_cl)).to_numpy(), 1),
        "sigma_m": np.round(c.sigma, 1), "n_incidents": g.size().reindex(range(n_cl)).to_numpy(),
        "four_mountains_level": np.where(pd.notna(c.level), c.level, ""),
        "four_mountains_range": np.where(pd.notna(c.range_), c.range_, ""),
        "township": township_names()[_township_of(geo, c.cx, c.cy)],
        "first_date": day(g["date"].min()), "last_date": day(g["date"].max()),
        "closed_date": np.where(np.isnat(c.closed), "", nd(c.closed)),
        "rebound": c.rebound,
        "rebound_first_date": np.where(c.rebound, day(post), ""),
    })


def _incidents(rng: np.random.Generator, geo: _Geo, pop: _Population, p: ScaleParams) -> dict[str, Any]:
    """Planted clusters, closures and rebounds, plus population-weighted noise, and two bad rows."""
    c = _cluster_plan(rng, p)
    water = shapely.union_all([geo.river, *geo.reservoirs])
    _band_centres(rng, geo, c, water)
    _outside_centres(rng, geo, pop, c, water)
    size = _life_cycle(rng, c)
    allc = _with_noise(rng, pop, p, c, _members(rng, c, size))
    _status(rng, c, allc)
    order = np.lexsort((rng.random(len(allc["x"])), allc["date"]))
    cols = {k: v[order] for k, v in allc.items()}
    df, truth = _records(rng, geo, cols)
    clusters = _cluster_truth(geo, c, cols)
    bad = []
    for field_, value, reason in (("发现日期", "2023年13月", RejectReason.BAD_VALUE), ("问题类型", "偷倒渣土", RejectReason.UNKNOWN_CATEGORY)):
        src = df.iloc[int(rng.integers(0, len(df)))].copy()
        src["记录编号"] = f"XS{2024}{len(df) + len(bad) + 1:06d}"
        src[field_] = value
        bad.append((src, field_, value, reason))
    return {"df": df, "truth": truth, "clusters": clusters, "bad": bad, "n_clusters": len(c.sigma)}
