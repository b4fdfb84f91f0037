"""Municipal scale (市级): many districts side by side, and the municipal roll-up.

:func:`gis.sample.mosaic.generate_municipality` (re-exported here) writes a mosaic of
sample districts (样例数据) with a top-level ``municipality.yaml`` index; cross-border
clusters are planted on shared borders as two halves, which the roll-up joins again.

:func:`rollup` (``gis rollup``) combines the per-district results (``summary.json``
and the GeoPackages of ``gis run``) into a municipal summary (市级汇总): targets met
per district, coverage by district, clusters in each 四山 range with the halves of
cross-border clusters merged, and violations by department — written as Excel
(:func:`gis.export.write_excel`), GeoPackage and JSON.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from gis import settings
from gis._errors import InputError
from gis.export import write_excel, write_gpkg, write_json

log = logging.getLogger(__name__)

#: The 38 districts and counties of Chongqing (name, code); sample districts take
#: these names with the suffix （样例） — the data are generated, not real.
CHONGQING_DISTRICTS: tuple[tuple[str, str], ...] = (
    ("沙坪坝区", "500106"), ("九龙坡区", "500107"), ("北碚区", "500109"), ("渝北区", "500112"),
    ("渝中区", "500103"), ("江北区", "500105"), ("南岸区", "500108"), ("大渡口区", "500104"),
    ("巴南区", "500113"), ("璧山区", "500120"), ("江津区", "500116"), ("合川区", "500117"),
    ("长寿区", "500115"), ("涪陵区", "500102"), ("永川区", "500118"), ("铜梁区", "500151"),
    ("綦江区", "500110"), ("大足区", "500111"), ("南川区", "500119"), ("潼南区", "500152"),
    ("荣昌区", "500153"), ("万州区", "500101"), ("黔江区", "500114"), ("开州区", "500154"),
    ("梁平区", "500155"), ("武隆区", "500156"), ("城口县", "500229"), ("丰都县", "500230"),
    ("垫江县", "500231"), ("忠县", "500233"), ("云阳县", "500235"), ("奉节县", "500236"),
    ("巫山县", "500237"), ("巫溪县", "500238"), ("石柱土家族自治县", "500240"),
    ("秀山土家族苗族自治县", "500241"), ("酉阳土家族苗族自治县", "500242"), ("彭水苗族土家族自治县", "500243"),
)
#: The four ranges of 四山 (Chongqing's Four-Mountains control zones), west to east.
FOUR_RANGES: tuple[str, ...] = ("缙云山", "中梁山", "铜锣山", "明月山")
#: Name of the top-level index file.
INDEX_FILE = "municipality.yaml"

# ====================================================================== index


def load_index(path: str | Path) -> dict[str, Any]:
    """Read ``municipality.yaml`` (a folder holding it, or the file).

    Each entry of ``districts`` gives ``path``: a district project folder anywhere
    on disk (absolute, ``~/…``, or relative to the index's folder). ``name`` and
    ``code`` default to the district's own ``project.yaml``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / INDEX_FILE
    if not p.exists():
        raise InputError(p, f"no {INDEX_FILE} (generate one with `gis sample --scale municipality`)")
    from gis.catalog import load_yaml  # bounded (gis.safeyaml): no alias bombs

    data = load_yaml(p)
    if not isinstance(data.get("districts"), list) or not data["districts"]:
        raise InputError(p, "key 'districts' must be a non-empty list")
    for i, d in enumerate(data["districts"]):
        if not isinstance(d, dict) or "path" not in d:
            raise InputError(p, f"districts[{i}] lacks 'path'", field="path")
        folder = district_folder(p.parent, d)
        if not (folder / "project.yaml").exists():
            raise InputError(p, f"districts[{i}].path: no project.yaml in {folder}", field="path")
        if "name" not in d or "code" not in d:
            proj = load_yaml(folder / "project.yaml")
            for key in ("name", "code"):
                if key not in d and key not in proj:
                    raise InputError(p, f"districts[{i}] lacks '{key}' and {folder / 'project.yaml'} has none", field=key)
                d.setdefault(key, proj.get(key))
        d["code"] = str(d["code"])
    codes = [d["code"] for d in data["districts"]]
    if len(set(codes)) != len(codes):
        raise InputError(p, f"district codes repeat: {sorted({c for c in codes if codes.count(c) > 1})}", field="code")
    data["root"] = p.parent
    return data


def district_folder(root: Path, entry: Mapping[str, Any]) -> Path:
    """A district's project folder: absolute, ``~``-relative, or relative to the index's folder ``root``."""
    q = Path(str(entry["path"])).expanduser()
    return q if q.is_absolute() else root / q


def is_municipality(path: str | Path | None) -> bool:
    """Whether ``path`` is a municipal folder (holds ``municipality.yaml``)."""
    if path is None:
        return False
    p = Path(path)
    return (p / INDEX_FILE).exists() if p.is_dir() else p.name == INDEX_FILE


# ====================================================================== roll-up


@dataclass
class Rollup:
    """The municipal summary (市级汇总) built by :func:`rollup`.

    Attributes
    ----------
    districts
        One row per district: name, code, counts, violations, targets met, coverage,
        clusters, problems, and the outline (GeoDataFrame, EPSG:4326).
    targets
        One row per (district, target): ``target``, ``actual``, ``met``.
    coverage
        Coverage by district: population, covered population, share (headline tier).
    departments
        Violations (site × rule) and 问题台账 problems by lead department and district.
    clusters
        Clusters of every district with cross-border halves merged (``merged_id``,
        ``districts``, ``cross_border``, ``range``, ``n_incidents``; EPSG:4326).
    ranges
        Clusters per 四山 range (缙云山, 中梁山, 铜锣山, 明月山).
    summary
        The headline figures (also ``municipal_summary.json``).
    """

    districts: gpd.GeoDataFrame
    targets: pd.DataFrame
    coverage: pd.DataFrame
    departments: pd.DataFrame
    clusters: gpd.GeoDataFrame
    ranges: pd.DataFrame
    summary: dict[str, Any]


def district_runs(runs: str | Path) -> list[Path]:
    """Per-district result folders under ``runs`` (each holds a ``summary.json``)."""
    runs = Path(runs)
    if (runs / "summary.json").exists() and not (runs / "districts").exists():
        return [runs]
    found = sorted(p.parent for p in (runs / "districts").glob("*/summary.json")) if (runs / "districts").exists() else []
    if not found:
        found = sorted(p.parent for p in runs.glob("*/summary.json"))
    if not found:
        raise InputError(runs, "no district results (…/summary.json) found; run `gis run` on the districts first")
    return found


def _read_layer(path: Path, layer: str) -> gpd.GeoDataFrame | None:
    import pyogrio

    if not path.exists() or layer not in {name for name, _ in pyogrio.list_layers(path)}:
        return None
    return gpd.read_file(path, layer=layer)


def merge_cross_border(clusters: gpd.GeoDataFrame, distance_m: float, crs: Any) -> np.ndarray:
    """Component id of each cluster after joining clusters that touch across a border.

    Two clusters of *different* districts and the same ``group`` (incident kind)
    whose outlines lie within ``distance_m`` of each other (metric ``crs``) are one
    cluster; connected components of that relation (``scipy.sparse.csgraph``).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(clusters)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    g = clusters.to_crs(crs).geometry.values
    i, j = shapely.STRtree(g).query(g, predicate="dwithin", distance=distance_m)
    code = clusters["district_code"].to_numpy()
    grp = clusters["group"].astype(str).to_numpy() if "group" in clusters else np.zeros(n, dtype=object)
    keep = (i < j) & (code[i] != code[j]) & (grp[i] == grp[j])
    adj = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    return connected_components(adj, directed=False)[1].astype(np.int64)


def _range_of(fm_ranges: Any) -> str | None:
    if not isinstance(fm_ranges, str) or not fm_ranges:
        return None
    for r in FOUR_RANGES:
        if r in fm_ranges:
            return r
    return None


def rollup(runs: str | Path, out: str | Path, *, merge_distance_m: float | None = None, client: Any = None) -> Rollup:
    """Combine per-district results into the municipal summary (市级汇总).

    Parameters
    ----------
    runs
        Folder of district results: ``runs/districts/<code>/`` (as written by
        ``gis run`` on a municipality) or ``runs/<any>/`` folders holding
        ``summary.json`` and the GeoPackages.
    out
        Output folder: ``municipal_summary.xlsx``, ``municipal.gpkg``,
        ``municipal_summary.json``.
    merge_distance_m
        Clusters of neighbouring districts whose outlines are this close are one
        cross-border cluster (None: ``merge_distance_m`` of ``layers/municipal.yaml``).
    client
        A ``distributed.Client``: each district's results are read on a worker and
        only its summary rows, outline and clusters reach this process.

    Returns
    -------
    Rollup
    """
    if merge_distance_m is None:
        from gis.params import build_section

        merge_distance_m = build_section("municipal").merge_distance_m
    from gis.coords import choose_metric_crs

    out = Path(out)
    dist_rows, target_rows, cov_rows, dept_rows, outlines, cluster_frames = [], [], [], [], [], []
    folders = district_runs(runs)
    reads = (client.gather(client.map(_read_district_run, folders, pure=False)) if client is not None
             else map(_read_district_run, folders))
    for d in reads:
        dist_rows.append(d.row)
        target_rows += d.targets
        cov_rows.append(d.coverage)
        dept_rows += d.departments
        outlines.append(d.outline)
        if d.clusters is not None:
            cluster_frames.append(d.clusters)
    districts = gpd.GeoDataFrame(pd.DataFrame(dist_rows), geometry=outlines, crs=4326)
    lon = districts.total_bounds[[0, 2]]
    crs = choose_metric_crs(float(lon[0]), float(lon[1]))
    clusters = _merged_clusters(cluster_frames, crs, merge_distance_m)
    ranges = _by_range(clusters)
    coverage = pd.DataFrame(cov_rows)
    targets = pd.DataFrame(target_rows, columns=["区县", "代码", "指标", "口径", "目标值", "实际值", "是否达标"])
    dept = pd.DataFrame(dept_rows, columns=["区县", "代码", "牵头部门", "违规条数", "台账问题数"])
    dept = dept.groupby(["牵头部门", "区县", "代码"], as_index=False)[["违规条数", "台账问题数"]].sum()
    dept = dept.sort_values(["牵头部门", "代码"]).reset_index(drop=True)
    summary = _rollup_summary(districts, dist_rows, cov_rows, clusters, sum(len(f) for f in cluster_frames), ranges, dept)
    summary["merge_distance_m"] = merge_distance_m
    summary["metric_crs"] = crs.to_string()
    res = Rollup(districts=districts, targets=targets, coverage=coverage, departments=dept,
                 clusters=clusters, ranges=ranges, summary=summary)
    _write_rollup(res, out)
    return res


@dataclass
class _DistrictRun:
    """What one district's ``gis run`` outputs contribute to the roll-up."""

    row: dict[str, Any]
    targets: list[dict[str, Any]]
    coverage: dict[str, Any]
    departments: list[dict[str, Any]]
    outline: Any
    clusters: gpd.GeoDataFrame | None


def _read_district_run(folder: Path) -> _DistrictRun:
    """Read ``summary.json``, the township outline, coverage cells, violations and clusters of one run."""
    try:
        s = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(folder / "summary.json", f"unreadable: {exc}") from exc
    name, code = s.get("district"), str(s.get("code") or folder.name)
    targets = s.get("targets") or []
    cov = s.get("coverage") or {}
    hs = s.get("hotspots") or {}
    tw = gpd.read_file(folder / "district.gpkg", layer="townships").to_crs(4326)
    cells = _read_layer(folder / "coverage.gpkg", "population_cells")
    pop = covered = None
    if cells is not None and len(cells) and "covered" in cells:
        pop = float(cells["population"].sum())
        covered = float(cells.loc[cells["covered"].astype(bool), "population"].sum())
    share = cov.get("population_covered_share")
    cov_row = {
        "区县": name, "代码": code, "覆盖口径": cov.get("headline_tier"), "方式": cov.get("method"),
        "服务半径(米)": (cov.get("standard") or {}).get("distance_m"),
        "常住人口": pop, "覆盖人口": covered, "人口覆盖率": share,
        "户覆盖率": cov.get("household_covered_share"), "覆盖缺口数": cov.get("gaps"),
    }
    target_rows = [{"区县": name, "代码": code, "指标": t.get("name"), "口径": t.get("metric"),
                    "目标值": t.get("target"), "实际值": t.get("actual"), "是否达标": "是" if t.get("met") else "否"}
                   for t in targets]
    dept_rows = []
    viol = _read_layer(folder / "sites.gpkg", "violations")
    if viol is not None and len(viol):
        vc = viol["lead_department"].fillna("（未定）").astype(str).value_counts()
        dept_rows += [{"区县": name, "代码": code, "牵头部门": dept, "违规条数": int(n), "台账问题数": 0} for dept, n in vc.items()]
    dept_rows += [{"区县": name, "代码": code, "牵头部门": dept, "违规条数": 0, "台账问题数": int(n)}
                  for dept, n in (s.get("problems_by_department") or {}).items()]
    cl = _read_layer(folder / "hotspots.gpkg", "clusters")
    if cl is not None and len(cl):
        cl = cl.to_crs(4326)
        cl["district"], cl["district_code"] = name, code
    else:
        cl = None
    row = {
        "区县": name, "代码": code, "网点数": s.get("sites_total"), "事件数": s.get("incidents_total"),
        "剔除行数": s.get("rejects"), "违规条数": s.get("violations_total"),
        "达标指标数": len([t for t in targets if t.get("met")]), "指标数": len(targets), "人口覆盖率": share,
        "聚集区数": hs.get("clusters"), "四山聚集区数": hs.get("clusters_in_four_mountains"),
        "问题台账条数": s.get("problems_total"), "样例数据": bool(s.get("sample")),
    }
    return _DistrictRun(row, target_rows, cov_row, dept_rows, shapely.union_all(tw.geometry.values), cl)


def _rollup_summary(
    districts: gpd.GeoDataFrame, dist_rows: Sequence[Mapping[str, Any]], cov_rows: Sequence[Mapping[str, Any]],
    clusters: gpd.GeoDataFrame, n_district_clusters: int, ranges: pd.DataFrame, dept: pd.DataFrame,
) -> dict[str, Any]:
    """Headline figures of the roll-up (``municipal_summary.json``).

    ``population_covered_share`` = :math:`\\sum` covered / :math:`\\sum` population
    over the districts' cells (not a mean of the district shares).
    """
    coverage = pd.DataFrame(cov_rows)
    tot_pop = float(np.nansum(coverage["常住人口"].to_numpy(dtype=float))) if len(coverage) else 0.0
    tot_cov = float(np.nansum(coverage["覆盖人口"].to_numpy(dtype=float))) if len(coverage) else 0.0
    return {
        "municipality": "重庆市（样例）" if bool(districts["样例数据"].all()) else "municipality",
        "sample": bool(districts["样例数据"].all()),
        "districts": int(len(districts)),
        "sites_total": int(pd.to_numeric(districts["网点数"]).sum()),
        "incidents_total": int(pd.to_numeric(districts["事件数"]).sum()),
        "violations_total": int(pd.to_numeric(districts["违规条数"]).fillna(0).sum()),
        "targets_met": {r["代码"]: f"{r['达标指标数']}/{r['指标数']}" for r in dist_rows},
        "population": tot_pop,
        "population_covered_share": round(tot_cov / tot_pop, 4) if tot_pop else None,
        "coverage_by_district": {r["代码"]: r["人口覆盖率"] for r in cov_rows},
        "clusters_district_level": int(n_district_clusters),
        "clusters_merged": int(clusters["merged_id"].nunique()) if len(clusters) else 0,
        "cross_border_clusters": int(clusters.loc[clusters["cross_border"], "merged_id"].nunique()) if len(clusters) else 0,
        "clusters_by_range": {r["range"]: int(r["clusters"]) for _, r in ranges.iterrows()},
        "cross_border_by_range": {r["range"]: int(r["cross_border"]) for _, r in ranges.iterrows()},
        "violations_by_department": {str(k): int(v) for k, v in dept.groupby("牵头部门")["违规条数"].sum().items()},
        "problems_by_department": {str(k): int(v) for k, v in dept.groupby("牵头部门")["台账问题数"].sum().items()},
    }


def _write_rollup(res: Rollup, out: Path) -> None:
    """``municipal_summary.xlsx`` (Chinese sheets), ``municipal.gpkg`` and ``municipal_summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    clusters = res.clusters
    label = [f"重庆市再生资源回收体系市级汇总（{settings.SAMPLE_LABEL}）" if res.summary["sample"] else "市级汇总"]
    write_excel(
        {
            "区县汇总": pd.DataFrame(res.districts.drop(columns="geometry")),
            "目标完成": res.targets,
            "覆盖率": res.coverage,
            "四山聚集区": res.ranges.rename(columns=_RANGE_SHEET_COLS),
            "跨区聚集区": _cluster_sheet(clusters[clusters["cross_border"].astype(bool)] if len(clusters) else clusters),
            "全部聚集区": _cluster_sheet(clusters),
            "部门违规": res.departments,
        },
        out / "municipal_summary.xlsx",
        title_rows={"区县汇总": label},
    )
    write_gpkg({"districts": res.districts, "clusters": clusters}, out / "municipal.gpkg")
    write_json(res.summary, out / "municipal_summary.json")


#: Chinese headers of the workbook's cluster sheets (the :class:`Rollup` frames keep English names).
_CLUSTER_SHEET_COLS = {"merged_id": "编号", "range": "四山山系", "cross_border": "是否跨区", "districts": "涉及区县",
                       "n_parts": "区内分段数", "n_incidents": "事件数", "main_kind": "主要问题类型",
                       "four_mountains_level": "四山管控级别"}
_RANGE_SHEET_COLS = {"range": "四山山系", "clusters": "聚集区数", "cross_border": "跨区聚集区数",
                     "incidents": "事件数", "no_build": "禁建区内聚集区数", "districts": "涉及区县"}


def _cluster_sheet(clusters: pd.DataFrame) -> pd.DataFrame:
    """Merged clusters as a workbook sheet: Chinese headers and labels, largest first."""
    from gis.schema import INCIDENT_KIND_LABEL_ZH, ZONE_LEVEL_LABEL_ZH

    t = pd.DataFrame(clusters.drop(columns="geometry", errors="ignore")).reindex(columns=list(_CLUSTER_SHEET_COLS))
    t = t.sort_values(["n_incidents", "merged_id"], ascending=[False, True], kind="stable")
    t["cross_border"] = np.where(t["cross_border"].fillna(False).astype(bool), "是", "否")
    kind_zh = {k.value: v for k, v in INCIDENT_KIND_LABEL_ZH.items()}
    level_zh = {k.value: v for k, v in ZONE_LEVEL_LABEL_ZH.items()}
    t["main_kind"] = t["main_kind"].map(kind_zh).fillna(t["main_kind"]).fillna("")
    t["four_mountains_level"] = t["four_mountains_level"].map(level_zh).fillna(t["four_mountains_level"]).fillna("")
    t["range"] = t["range"].fillna("")
    return t.rename(columns=_CLUSTER_SHEET_COLS).reset_index(drop=True)


def _merged_clusters(frames: Sequence[gpd.GeoDataFrame], crs: Any, distance_m: float) -> gpd.GeoDataFrame:
    """Dissolve the district clusters into municipal clusters (halves joined)."""
    cols = ["merged_id", "range", "cross_border", "districts", "district_codes", "n_parts", "n_incidents",
            "main_kind", "four_mountains_level", "fm_ranges"]
    if not frames:
        return gpd.GeoDataFrame({c: [] for c in cols}, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    allc = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=4326)
    comp = merge_cross_border(allc, distance_m, crs)
    allc["_comp"] = comp
    allc["_range"] = allc["fm_ranges"].map(_range_of) if "fm_ranges" in allc else None
    rank = {"no_build": 3, "key_control": 2, "general_control": 1}
    allc["_rank"] = allc["four_mountains_level"].map(rank).fillna(0) if "four_mountains_level" in allc else 0
    g = allc.groupby("_comp", sort=True)
    merged = pd.DataFrame({
        "districts": g["district"].agg(lambda s: "；".join(sorted(set(s)))),
        "district_codes": g["district_code"].agg(lambda s: ";".join(sorted(set(s)))),
        "n_parts": g.size(),
        "n_incidents": g["n_incidents"].sum(),
        "main_kind": g["main_kind"].agg(lambda s: s.mode().iloc[0]) if "main_kind" in allc else None,
        "range": g["_range"].agg(lambda s: s.dropna().mode().iloc[0] if s.notna().any() else None),
        "fm_ranges": g["fm_ranges"].agg(lambda s: ";".join(sorted({r for v in s.dropna() for r in str(v).split(";") if r}))),
        "_rank": g["_rank"].max(),
    })
    inv = {v: k for k, v in rank.items()}
    merged["four_mountains_level"] = merged.pop("_rank").map(inv)
    merged["cross_border"] = merged["district_codes"].str.contains(";")
    geom = allc.dissolve(by="_comp").geometry.reindex(merged.index)
    merged["merged_id"] = [f"M{k + 1:05d}" for k in range(len(merged))]
    return gpd.GeoDataFrame(merged.reset_index(drop=True)[cols], geometry=geom.values, crs=4326)


def _by_range(clusters: gpd.GeoDataFrame) -> pd.DataFrame:
    """Clusters, cross-border clusters and their incidents per 四山 range."""
    rows = []
    for r in FOUR_RANGES:
        sel = clusters[clusters["range"] == r] if len(clusters) else clusters
        rows.append({
            "range": r,
            "clusters": int(len(sel)),
            "cross_border": int(sel["cross_border"].sum()) if len(sel) else 0,
            "incidents": int(sel["n_incidents"].sum()) if len(sel) else 0,
            "no_build": int((sel["four_mountains_level"] == "no_build").sum()) if len(sel) else 0,
            "districts": "；".join(sorted({d for v in sel["districts"] for d in str(v).split("；")})) if len(sel) else "",
        })
    return pd.DataFrame(rows)
