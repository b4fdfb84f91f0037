"""Ledger, candidate and incident tables with their truth, bad rows, project files and README."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from gis import settings
from gis.coords import wgs84_to_bd09, wgs84_to_gcj02
from gis.export import atomic_path
from gis.schema import RejectReason, Tier, TIER_LABEL_ZH
from gis.sample.constants import DISTRICT_CODE, DISTRICT_NAME, FloatArray, ScaleParams
from gis.sample.evaluate import _evaluate, _Index, _situations
from gis.sample.frame import _seq_ids
from gis.sample.geo import _Geo, _township_of
from gis.sample.roads import _ROAD_STEMS
from gis.sample.sites import _ID_CODE, _Placer, _Sites
from gis.sample.townships import township_names, township_short


def _insert_rows(
    rng: np.random.Generator, df: pd.DataFrame, rows: list[pd.Series], min_pos: list[int] | None = None
) -> tuple[pd.DataFrame, list[int]]:
    """Insert ``rows`` at random positions; return the frame and their spreadsheet rows."""
    n = len(df)
    pos = []
    for k in range(len(rows)):
        lo = (min_pos[k] + 1) if min_pos and min_pos[k] is not None else 0
        pos.append(int(rng.integers(lo, n + 1)))
    order_key = np.concatenate([np.arange(n) + 0.5, np.array(pos, float) + 0.25 + np.arange(len(rows)) * 1e-3])
    big = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
    order = np.argsort(order_key, kind="stable")
    big = big.iloc[order].reset_index(drop=True)
    new_pos = np.empty(len(order), dtype=int)
    new_pos[order] = np.arange(len(order))
    return big, [int(new_pos[n + k]) + 2 for k in range(len(rows))]


def _fmt(v: FloatArray) -> npt.NDArray[np.str_]:
    """Seven-decimal coordinate strings."""
    return np.char.mod("%.7f", np.asarray(v, float))


def _ledger(
    rng: np.random.Generator, geo: _Geo, s: _Sites
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """The ledger table (GCJ-02), its truth table and the bad-row records."""
    order_tier = {str(t): i for i, t in enumerate((Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT, Tier.DISMANTLER))}
    good = np.flatnonzero(s.key != "__bad__")
    badb = np.flatnonzero(s.key == "__bad__")
    twn = _township_of(geo, s.x, s.y)
    tier_s = pd.Series(s.tier, dtype=object)
    o = good[np.lexsort((rng.random(len(good)), twn[good], tier_s[good].map(order_tier).to_numpy()))]
    tier_labels = tier_s.map({str(k): v for k, v in TIER_LABEL_ZH.items()}).to_numpy(dtype=object)
    ids = np.empty(len(s.x), dtype=object)
    rank = pd.Series(s.tier[o]).groupby(s.tier[o]).cumcount().to_numpy() + 1  # 1.. within each tier
    prefix = pd.Series(s.tier[o]).map({str(k): f"SPB-{v}-" for k, v in _ID_CODE.items()}).to_numpy(dtype=str)
    ids[o] = np.char.add(prefix, np.char.zfill(rank.astype(str), 4))
    ids[badb] = _seq_ids("SPB-HS-", 9001 + np.arange(len(badb)), 4)
    lon, lat = geo.frame.to_lonlat(s.x, s.y)
    glon, glat = wgs84_to_gcj02(lon, lat)
    table = pd.DataFrame({"网点编号": ids, "网点名称": s.attrs["网点名称"], "网点层级": tier_labels})
    for col in ("经营者", "经营地址", "所属镇街"):
        table[col] = s.attrs[col]
    table["经营状态"] = s.status
    for col in ("营业执照", "资质认定", "公安备案", "日处理能力(吨)", "占地面积(㎡)", "经营范围"):
        table[col] = s.attrs[col]
    table["占地面积(㎡)"] = table["占地面积(㎡)"].astype(int)
    table["经度"] = _fmt(glon)
    table["纬度"] = _fmt(glat)
    truth = pd.DataFrame(
        {
            "site_id": ids[o], "tier": s.tier[o],
            "status": pd.Series(s.status[o]).map({"在营": "active", "规划": "planned", "关停": "closed", "非法": "illegal"}).to_numpy(),
            "planted": s.situations[o], "clean": s.clean[o],
            "lon": np.round(lon[o], 7), "lat": np.round(lat[o], 7),
            "township": s.attrs["所属镇街"].to_numpy()[o],
            "d_transfer_station_m": np.round(s.d_ts[o], 1),
        }
    )
    main = table.iloc[o].reset_index(drop=True)
    # the bad rows, one defect each
    defects = [
        ("经度", RejectReason.MISSING_COORDINATES), ("经度", RejectReason.NON_NUMERIC_COORDINATES),
        ("经度", RejectReason.SWAPPED_LON_LAT), ("经度", RejectReason.OUTSIDE_DISTRICT),
        ("网点编号", RejectReason.DUPLICATE_ID), ("网点层级", RejectReason.UNKNOWN_CATEGORY),
        ("网点名称", RejectReason.MISSING_VALUE),
    ]
    rows, min_pos, records = [], [], []
    cps = np.flatnonzero(main["网点层级"].to_numpy() == TIER_LABEL_ZH[Tier.COLLECTION_POINT])
    for (fld, reason), b in zip(defects, badb):
        r = table.iloc[b].copy()
        mp = None
        if reason == RejectReason.MISSING_COORDINATES:
            r["经度"], r["纬度"] = "", ""
        elif reason == RejectReason.NON_NUMERIC_COORDINATES:
            r["经度"] = f"{glon[b]:.1f}x"
        elif reason == RejectReason.SWAPPED_LON_LAT:
            r["经度"], r["纬度"] = r["纬度"], r["经度"]
        elif reason == RejectReason.OUTSIDE_DISTRICT:
            olon, olat = geo.frame.to_lonlat(s.x[b] + 50_000.0, s.y[b] + 8_000.0)
            gl, gt = wgs84_to_gcj02(olon, olat)
            r["经度"], r["纬度"] = f"{float(gl):.7f}", f"{float(gt):.7f}"
        elif reason == RejectReason.DUPLICATE_ID:
            first = int(rng.choice(cps))
            r["网点编号"] = main.iloc[first]["网点编号"]
            mp = first
        elif reason == RejectReason.UNKNOWN_CATEGORY:
            r["网点层级"] = "废品收购大户"
        elif reason == RejectReason.MISSING_VALUE:
            r["网点名称"] = ""
        rows.append(r)
        min_pos.append(mp)
        records.append({"field": fld, "reason": str(reason), "value": str(r[fld]), "site_id": r["网点编号"]})
    table, rownums = _insert_rows(rng, main, rows, min_pos)
    for rec, rn in zip(records, rownums):
        rec["row"] = rn
    return table, truth, records


def _candidates(
    rng: np.random.Generator, geo: _Geo, ix: _Index, placer: _Placer, p: ScaleParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Garbage transfer stations (一场两用 candidates) in BD-09, and their truth."""
    n = p.n_candidates
    bad_keys = ["fm:no_build", "fm:key_control", "basic_farmland", "landuse:farm", "water_source"]
    n_bad = max(5, n // 6)
    keys = [bad_keys[i % len(bad_keys)] for i in range(n_bad)]
    xs, ys = [], []
    for key in bad_keys:
        k = keys.count(key)
        x, y = placer.place(key, Tier.TRANSFER_STATION, k)
        xs.append(x)
        ys.append(y)
    x, y = placer.place("candidate", Tier.TRANSFER_STATION, n - sum(len(a) for a in xs))
    xs.append(x)
    ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    ev = _evaluate(ix, x, y)
    tiers = np.full(len(x), str(Tier.TRANSFER_STATION), dtype=object)
    attrs = pd.DataFrame({"营业执照": "有", "资质认定": "", "公安备案": "已备案", "占地面积(㎡)": 1000.0}, index=np.arange(len(x)))
    why = _situations(ev, tiers, attrs, ix.classes)
    twn = _township_of(geo, x, y)
    tname = township_names()[twn]
    short = township_short()[twn]
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), len(x))
    ids = _seq_ids("LJZ-", np.arange(1, len(x) + 1), 3)
    lon, lat = geo.frame.to_lonlat(x, y)
    blon, blat = wgs84_to_bd09(lon, lat)
    table = pd.DataFrame(
        {
            "编号": ids,
            "名称": short + stems + "垃圾中转站",
            "类型": "垃圾中转站",
            "地址": "重庆市沙坪坝区" + tname + stems + "路" + rng.integers(1, 200, len(x)).astype(str) + "号",
            "经度": np.round(blon, 7),
            "纬度": np.round(blat, 7),
        }
    )
    truth = pd.DataFrame(
        {"candidate_id": ids, "prohibited": why != "", "why": why, "lon": np.round(lon, 7), "lat": np.round(lat, 7)}
    )
    return table, truth


def _targets(counts: dict[str, int], p: ScaleParams) -> list[dict[str, Any]]:
    """Target table in the spirit of Shizhu 2025, scaled to the sample's size."""
    cp = counts["collection_point"]
    do = counts["drop_off_point"]
    return [
        {"name": "回收站点数量", "metric": "count", "tiers": ["collection_point"], "target": int(math.ceil(cp * 1.1 / 10.0) * 10)},
        {"name": "分类投放点数量", "metric": "count", "tiers": ["drop_off_point"], "target": int(round(do * 0.9))},
        {"name": "镇街中转站全覆盖", "metric": "township_presence", "tiers": ["transfer_station"], "target": 1.0},
        {"name": "分拣中心", "metric": "count", "tiers": ["sorting_centre"], "target": 1},
        {"name": "500米步行覆盖人口比例", "metric": "population_coverage", "tiers": ["collection_point", "drop_off_point"], "target": 0.9},
        {"name": "每网点服务户数上限", "metric": "households_per_point", "tiers": ["collection_point"], "target": 2000},
    ]


def _project_yaml(p: ScaleParams, seed: int, counts: dict[str, int], raster: bool) -> dict[str, Any]:
    """``project.yaml`` / ``project_raster.yaml`` content of the sample district."""
    layers: dict[str, Any] = {
        "sites": {"file": "sites_ledger.csv", "coords": "gcj02", "encoding": "gb18030"},
        "incidents": {"file": "incidents.csv", "coords": "wgs84"},
        "candidates": {"file": "garbage_transfer_stations.xlsx", "coords": "bd09", "sheet": 0},
        "townships": {"file": "townships.gpkg", "layer": "townships"},
        "zones": [
            {"file": "zones.gpkg", "layer": "four_mountains", "zone_type": "four_mountains"},
            {"file": "zones.gpkg", "layer": "ecological_red_line", "zone_type": "ecological_red_line"},
            {"file": "zones.gpkg", "layer": "basic_farmland", "zone_type": "basic_farmland"},
            {"file": "zones.gpkg", "layer": "water_source", "zone_type": "water_source"},
        ],
        "landuse": {"file": "landuse.tif", "classes": "gbt21010"} if raster else {"file": "landuse.gpkg", "layer": "landuse"},
        "population": {"file": "population.tif"},
        "roads": {"file": "roads.osm"},
    }
    return {
        "name": DISTRICT_NAME,
        "code": DISTRICT_CODE,
        "sample": True,
        "label": settings.SAMPLE_LABEL,
        "generator": {"module": "gis.sample", "seed": seed, "scale": p.name},
        "crs": {"metric": "auto"},
        "outside_tolerance_m": 2000,
        "layers": layers,
        "targets": _targets(counts, p),
        "campaign": _campaign(raster),
    }


#: The sample's campaign (专项整治行动) calendar, after the Shapingba notice's three phases.
_SAMPLE_PHASES: tuple[tuple[str, str, str, str], ...] = (
    ("动员部署、排查摸底", "2025-01-06", "2025-02-28", "全面摸排，建立问题台账，明确责任单位和整改时限"),
    ("依法查处、集中整治", "2025-03-01", "2025-05-31", "按台账限期整改，依法关停取缔非法网点，盘点销号"),
    ("抽查总结", "2025-06-01", "2025-06-30", "抽查整改成效，严防反弹，报送总结"),
)

#: The sample's 联络员 (contacts file ``contacts.csv``): 姓名, 单位, 职务, 联系电话, 电子邮箱 — invented.
SAMPLE_CONTACTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("张明（样例）", "区商务委", "市场体系建设科科长", "023-6531XXXX", "sample-swj@example.invalid"),
    ("李华（样例）", "区生态环境局", "执法支队副队长", "023-6531XXXX", "sample-sthj@example.invalid"),
    ("王强（样例）", "区规划自然资源局", "执法监察科科员", "023-6531XXXX", "sample-ghzy@example.invalid"),
    ("赵敏（样例）", "区林业局", "资源保护科科长", "023-6531XXXX", "sample-ly@example.invalid"),
    ("陈刚（样例）", "区市场监管局", "网络交易监管科科员", "023-6531XXXX", "sample-scjg@example.invalid"),
    ("刘洋（样例）", "区公安分局", "治安支队民警", "023-6531XXXX", "sample-ga@example.invalid"),
)


def _campaign(raster: bool = False) -> dict[str, Any]:
    """The ``campaign:`` block of the sample's ``project.yaml`` (see ``layers/campaign.yaml``).

    ``project_raster.yaml`` keeps its own store: its land-use layer finds other problems.
    """
    return {
        **({"store": "campaign_raster.gpkg"} if raster else {}),
        "name": "沙坪坝区再生资源回收行业专项整治行动（样例）",
        "legal_basis": "《再生资源回收管理办法》；《报废机动车回收管理办法》（国务院令第715号）",
        "lead_office": "区商务委",
        "start": _SAMPLE_PHASES[0][1],
        "end": _SAMPLE_PHASES[-1][2],
        "phases": [{"name": n, "start": a, "end": b, "requires": r} for n, a, b, r in _SAMPLE_PHASES],
        "rectify_phase": _SAMPLE_PHASES[1][0],
        "reporting_dates": ["2025-02-25", "2025-03-25", "2025-04-25", "2025-05-23", "2025-06-23"],
        "as_of": "2025-01-10",
        "contacts": "contacts.csv",
    }


def write_contacts(target: Path) -> None:
    """The sample's 联络员信息 file (UTF-8 CSV, header 姓名,单位,职务,联系电话,电子邮箱)."""
    lines = ["姓名,单位,职务,联系电话,电子邮箱", *(",".join(r) for r in SAMPLE_CONTACTS)]
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dump_yaml(data: dict[str, Any], target: Path, header: str) -> None:
    """Write YAML with a comment header (atomically)."""
    text = header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


_README = """# 沙坪坝区（样例） — {label}

**This folder is generated sample data (样例数据), not real records of a district.** It was
written by `python -m gis sample --out DIR --seed {seed} --scale {scale}` (package `gis/sample/`).
Site ledger, incident records, candidate sites, land use, population, roads and the 四山
zones are synthetic; they are laid on Shapingba's real ground so that a planner recognises
the place. Every output built from it carries the label above (`sample: true` in
`project.yaml`, `sample=1` in the GeoPackages, GeoTIFF tags and OSM ways).

## Sources of the real parts

- **District outline**: the Shapingba (沙坪坝区, 500106) polygon of
  `data/boundaries/shapingba_outline.geojson`, copied from the OSM-derived, simplified outlines of
  Chongqing's 38 districts/counties. © OpenStreetMap contributors, ODbL 1.0.
- **Water**: OSM water / reservoir / riverbank polygons (`data/boundaries/shapingba_water.geojson`,
  © OpenStreetMap contributors, ODbL 1.0); the Jialing river (嘉陵江) along the east edge from
  井口 to 土湾 is the OSM riverbank pieces plus a 150 m strip inside the outline.
- **Population**: the land-use density weighted by OSM building footprints (their area per cell,
  `data/boundaries/shapingba_buildings.csv`, © OpenStreetMap contributors, ODbL 1.0; sparse, so
  land use carries the rest), scaled to {pop_total:,.0f} residents.
- **Townships**: Shapingba's current 21 街道 and 5 镇 (the district government's published
  administrative division; no 双碑街道) with seats at approximate real positions (about 1 km).
  No public township boundary exists: the shapes are approximations (Voronoi cells of the seats
  and of well-known places such as 磁器口, 大学城, 歌乐山, 西永, merged per township and clipped
  to the outline).
- **四山**: 缙云山 (along the western border with 璧山, through 青木关) and 中梁山 (between
  大学城/西永 and the urban core, with its 歌乐山 part west of 磁器口) as NNE–SSW ridge lines at
  approximate real positions, with the three control levels of 渝府令第204号 nested around the
  ridge (禁建区 core, 重点控建区, 一般控建区 outermost). The zone extents are modelled, not the
  official plan.

Seed {seed}, scale `{scale}`. The same seed gives the same CSV bytes.

## Files

| file | what | coordinates |
|---|---|---|
| `project.yaml` | the district's layers and targets (land use from `landuse.gpkg`) | |
| `project_raster.yaml` | the same district with land use from `landuse.tif` | |
| `sites_ledger.csv` | site ledger 台账, {n_sites} valid rows + {n_bad_sites} deliberately bad rows; GB18030 (like Chinese Excel exports) | GCJ-02 |
| `incidents.csv` | {n_incidents} incident records 2022–2024 (+{n_bad_inc} bad rows), UTF-8 with BOM | WGS84 |
| `garbage_transfer_stations.xlsx` | {n_candidates} candidate sites for recycling transfer stations (一场两用); sheet 1 data, sheet 2 说明 | BD-09 |
| `townships.gpkg` | layer `townships`: {n_townships} 镇街 with 常住人口 (the population raster summed inside) and 户数 | EPSG:4490 |
| `zones.gpkg` | layers `four_mountains` (缙云山/中梁山 × 禁建区/重点控建区/一般控建区), `ecological_red_line`, `basic_farmland`, `water_source` | EPSG:4544 |
| `landuse.gpkg` / `landuse.tif` | GB/T 21010 land use ({n_parcels} parcels; raster uint16 = int(code), nodata 0, {lu_res:g} m), with a few deliberate unclassified gaps | EPSG:4544 |
| `population.tif` | residents per cell (float32, nodata -1 outside the district), {pop_res:g}°, total {pop_total:,.0f} | EPSG:4326 |
| `roads.osm` | OSM XML road network ({n_nodes} nodes, {n_ways} ways): dense urban grid, sparse rural roads, tunnels through the ridges; `osmnx.graph_from_xml` reads it offline | WGS84 |
| `truth/` | what the generator planted (below) | WGS84 |

Coordinates: the ledger is geocoded-style GCJ-02 (火星坐标) and the candidates BD-09 (百度坐标);
convert them with `gis.coords` (the loaders do, per `coords:` in `project.yaml`). CGCS2000
(EPSG:4490) and WGS84 are treated as identical (< 1 m apart).

## Truth files (`truth/`)

- `sites_truth.csv` — every valid ledger site: `site_id, tier, status, planted, clean, lon, lat,
  township, d_transfer_station_m`. `planted` is a `;`-joined list of rule-independent
  situation codes evaluated on the generated layers (`four_mountains:<level>`,
  `ecological_red_line`, `basic_farmland`, `water_source`, `landuse_not_allowed:<code>`,
  `near_receptor:<school|hospital|residential|water_source>:<m>`, `no_business_licence`,
  `no_dismantling_qualification`, `no_police_filing`, `floor_area_below_norm`,
  `far_from_transfer_station`). Clean sites (`clean=True`) are ≥ {margin:g} m from every
  parcel and zone boundary, outside every zone, ≥ the record radius from receptors
  (school/hospital/residential 300 m, water source 800 m, for the tiers the codes apply to),
  fully licensed, above the floor-area norms and (points) ≤ {clean_ts:g} m straight-line from
  an active transfer station.
- `bad_rows.csv` — `file, row, field, reason, value, id`: every deliberately bad input row;
  `row` is the spreadsheet row (header = 1), `reason` a `gis.schema.RejectReason` value.
  Bad rows are not in the other truth tables.
- `clusters_truth.csv` — the planted incident clusters (centre, 95% radius, kind, 四山 level
  if inside a band, dates, closure and rebound).
- `incidents_truth.csv` — `incident_id, cluster_id, phase` (empty cluster = background noise;
  phase `before_closure` / `after_closure` for closed and rebounded clusters).
- `candidates_truth.csv` — `candidate_id, prohibited, why, lon, lat`.
- `townships_truth.csv` — township, code, population, households, and whether it has an
  active transfer station (townships without one: {no_ts}).
"""


