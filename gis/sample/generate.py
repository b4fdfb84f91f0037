"""Entry point :func:`generate`: build every layer of one sample district and write it."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gis import settings
from gis.export import atomic_path, write_csv, write_excel, write_geotiff, write_gpkg
from gis.schema import Tier
from gis.sample.constants import (
    BOX, CANDIDATE_HEADERS, CLEAN_TS_M, DISTRICT_CODE, INCIDENT_HEADERS, LEDGER_HEADERS, LEVEL_ZH,
    MARGIN_M, METRIC_EPSG, SCALES, SampleResult, ScaleParams, Tile,
)
from gis.sample.evaluate import _build_index
from gis.sample.frame import Frame, _smooth_noise
from gis.sample.geo import _Geo, _township_of, build_geometry
from gis.sample.incidents import _incidents
from gis.sample.landuse import _class_entry, _class_table, _landuse
from gis.sample.population import _Population, _population
from gis.sample.roads import _roads, _write_osm
from gis.sample.sites import _sites
from gis.sample.townships import TOWNSHIPS
from gis.sample.truth import _README, _candidates, _dump_yaml, _insert_rows, _ledger, _project_yaml, write_contacts
from gis.sample.zones import _zones

#: Centre (lon, lat) of the urban density peak (三峡广场, 沙坪坝).
URBAN_CENTRE = (106.455, 29.556)
#: Persons per household in 街道 and 镇.
HOUSEHOLD_SIZE = MappingProxyType({"街道": 2.6, "镇": 2.9})


def generate(out: Path, seed: int = 42, scale: str = "small", *, tile: Tile | None = None) -> SampleResult:
    """Generate the sample district into ``out`` (样例数据, clearly labelled as such).

    Parameters
    ----------
    out
        Target folder; created if missing. Existing files of the same names are replaced
        (each atomically).
    seed
        Seed of the :class:`numpy.random.Generator` all draws come from.
    scale
        ``small`` (bundled: ~300 sites, ~700 incidents), ``district`` (~5×) or ``city``
        (≥ 20,000 sites, ≥ 100,000 incidents, ≥ 1,000,000 population cells), or
        ``municipal`` (one district of the municipal mosaic).
    tile
        Generate one district of a municipal mosaic (:class:`Tile`; used by
        :func:`gis.sample.mosaic.generate_municipality`).

    Returns
    -------
    SampleResult
        Output folder, per-layer counts and the truth-file paths.

    Examples
    --------
    >>> from gis.sample import generate
    >>> r = generate(Path("data/sample_district"), seed=42, scale="small")  # doctest: +SKIP
    >>> r.counts["townships"]  # doctest: +SKIP
    26
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    built = _build(seed, SCALES[scale], tile)
    return _write(out, seed, scale, tile, built)


@dataclass
class _Built:
    """Every generated layer of one district, before writing."""

    geo: _Geo
    pop: _Population
    roads: Any
    parcels: gpd.GeoDataFrame
    zones: gpd.GeoDataFrame
    sites: Any
    inc: dict[str, Any]
    cand: pd.DataFrame
    cand_truth: pd.DataFrame
    ledger: pd.DataFrame
    sites_truth: pd.DataFrame
    bad_sites: list[dict[str, Any]]
    classes: Any
    rng: np.random.Generator


def _build(seed: int, p: ScaleParams, tile: Tile | None) -> _Built:
    """Draw every layer from one generator seeded by ``seed``."""
    frame = Frame(tile.dlon, tile.dlat) if tile is not None else Frame()
    rng = np.random.default_rng(seed)
    geo = build_geometry(rng, frame, tile is not None)
    noise = functools.partial(_smooth_noise, np.random.default_rng(rng.integers(2**32)), wavelength_m=2500.0)
    cxy = frame.to_metric(*URBAN_CENTRE)
    fields_ = {"noise": lambda x, y: noise(x, y), "centre": (float(cxy[0]), float(cxy[1]))}
    pop = _population(geo, p, fields_, tile is not None)
    roads = _roads(rng, geo, p)
    classes = _class_table()
    parcels = _landuse(rng, geo, roads)
    zones = _zones(geo, parcels)
    ix = _build_index(parcels, zones, classes)
    sites, placer = _sites(rng, geo, ix, pop, p)
    inc = _incidents(rng, geo, pop, p)
    cand, cand_truth = _candidates(rng, geo, ix, placer, p)
    ledger, sites_truth, bad_sites = _ledger(rng, geo, sites)
    return _Built(geo, pop, roads, parcels, zones, sites, inc, cand, cand_truth, ledger, sites_truth, bad_sites, classes, rng)


def _township_table(b: _Built, d_code: str) -> pd.DataFrame:
    """Per-township population, households and active transfer-station presence."""
    pop_by_t = np.bincount(b.pop.township, weights=b.pop.pop, minlength=len(TOWNSHIPS))
    kinds = np.array([t[1] for t in TOWNSHIPS], dtype=object)
    hh = np.round(pop_by_t / pd.Series(kinds).map(HOUSEHOLD_SIZE).to_numpy(float))
    s = b.sites
    act = (s.tier == str(Tier.TRANSFER_STATION)) & (s.status == "在营") & (s.key != "__bad__")
    has_ts = np.zeros(len(TOWNSHIPS), bool)
    has_ts[_township_of(b.geo, s.x[act], s.y[act])] = True
    return pd.DataFrame({
        "township": [t[0] for t in TOWNSHIPS], "township_code": [d_code + t[4] for t in TOWNSHIPS], "kind": kinds,
        "population": np.round(pop_by_t, 1), "households": hh.astype(int), "has_transfer_station": has_ts,
    })


def _write_vectors(out: Path, b: _Built, town: pd.DataFrame, tile: Tile | None) -> dict[str, Path]:
    """``townships.gpkg``, ``zones.gpkg`` and ``landuse.gpkg``."""
    files: dict[str, Path] = {}
    twn = gpd.GeoDataFrame(
        {
            "镇街名称": town["township"], "镇街代码": town["township_code"], "类型": town["kind"],
            "常住人口": town["population"], "户数": town["households"],
            "城镇": np.where(town["kind"] == "街道", "是", "否"), "sample": 1,
        },
        geometry=b.geo.townships, crs=METRIC_EPSG,
    ).to_crs(4490)
    files["townships"] = write_gpkg({"townships": twn}, out / "townships.gpkg")
    zl = {}
    for zt, label in (("four_mountains", "四山"), ("ecological_red_line", "生态保护红线"), ("basic_farmland", "永久基本农田"), ("water_source", "饮用水水源保护区")):
        z = b.zones[b.zones["zone_type"] == zt].reset_index(drop=True)
        if tile is not None:
            z["name"] = z["name"].map(tile.rename)
        zl[zt] = gpd.GeoDataFrame(
            {
                "编号": [f"{zt[:2].upper()}{k + 1:03d}" for k in range(len(z))], "名称": z["name"].to_numpy(),
                "管控级别": [LEVEL_ZH.get(v, "") if isinstance(v, str) else "" for v in z["level"]],
                "管控类型": label, "sample": 1,
            },
            geometry=z.geometry.values, crs=METRIC_EPSG,
        )
    files["zones"] = write_gpkg(zl, out / "zones.gpkg")
    names = {c: _class_entry(c, b.classes).get("name_zh", "") for c in b.parcels["code"].unique()}
    lu = gpd.GeoDataFrame(
        {"地类编码": b.parcels["code"].to_numpy(), "地类名称": b.parcels["code"].map(names).to_numpy(), "sample": 1},
        geometry=b.parcels.geometry.values, crs=METRIC_EPSG,
    )
    files["landuse"] = write_gpkg({"landuse": lu}, out / "landuse.gpkg")
    return files


def _write_rasters(out: Path, b: _Built, p: ScaleParams, tile: Tile | None, tags: dict[str, str]) -> dict[str, Path]:
    """``landuse.tif`` (uint16 = int(code), EPSG:4544) and ``population.tif`` (EPSG:4326)."""
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    res = p.landuse_raster_m
    minx, miny, maxx, maxy = b.geo.district.bounds
    x0, y1 = math.floor(minx / res) * res, math.ceil(maxy / res) * res
    w, h = int(math.ceil((maxx - x0) / res)), int(math.ceil((y1 - miny) / res))
    transform = from_origin(x0, y1, res, res)
    arr = rasterize(
        zip(b.parcels.geometry.values, b.parcels["code"].astype(int).to_numpy()),
        out_shape=(h, w), transform=transform, fill=0, dtype="uint16",
    )
    files = {"landuse_raster": write_geotiff(arr, out / "landuse.tif", transform=transform, crs=f"EPSG:{METRIC_EPSG}", nodata=0, tags=tags)}
    origin = (BOX[0] + (tile.dlon if tile else 0.0), BOX[3] + (tile.dlat if tile else 0.0))
    files["population"] = write_geotiff(
        b.pop.array, out / "population.tif", transform=from_origin(*origin, b.pop.res, b.pop.res),
        crs="EPSG:4326", nodata=-1.0, tags=tags,
    )
    return files


def _write_tables(out: Path, b: _Built, seed: int, scale: str) -> tuple[dict[str, Path], pd.DataFrame, list[int]]:
    """Roads, ledger, incidents and candidates; returns the files, incidents table and bad-row numbers."""
    _write_osm(b.roads, out / "roads.osm", b.geo.frame)
    files = {"roads": out / "roads.osm"}
    files["sites"] = write_csv(b.ledger[list(LEDGER_HEADERS)], out / "sites_ledger.csv", encoding="gb18030")
    inc_df, inc_rows = _insert_rows(b.rng, b.inc["df"], [x[0] for x in b.inc["bad"]])
    files["incidents"] = write_csv(inc_df[list(INCIDENT_HEADERS)], out / "incidents.csv")
    note = pd.DataFrame({"说明": [settings.SAMPLE_LABEL, f"gis.sample seed={seed} scale={scale}", "坐标系：BD-09（百度坐标）"]})
    files["candidates"] = write_excel({"垃圾中转站": b.cand[list(CANDIDATE_HEADERS)], "说明": note}, out / "garbage_transfer_stations.xlsx")
    return files, inc_df, inc_rows


def _write_truth(out: Path, b: _Built, town: pd.DataFrame, inc_rows: list[int], tile: Tile | None) -> tuple[dict[str, Path], pd.DataFrame]:
    """The ``truth/`` folder; returns its files and the bad-row table."""
    tdir = out / "truth"
    bad_rows = pd.DataFrame(
        [{"file": "sites_ledger.csv", "row": r["row"], "field": r["field"], "reason": r["reason"], "value": r["value"], "id": r["site_id"]} for r in b.bad_sites]
        + [
            {"file": "incidents.csv", "row": rn, "field": fld, "reason": str(reason), "value": val, "id": row["记录编号"]}
            for (row, fld, val, reason), rn in zip(b.inc["bad"], inc_rows)
        ]
    )
    clusters = b.inc["clusters"] if tile is None else b.inc["clusters"].map(tile.rename)
    files = {
        "sites": write_csv(b.sites_truth, tdir / "sites_truth.csv"),
        "bad_rows": write_csv(bad_rows, tdir / "bad_rows.csv"),
        "clusters": write_csv(clusters, tdir / "clusters_truth.csv"),
        "incidents": write_csv(b.inc["truth"], tdir / "incidents_truth.csv"),
        "candidates": write_csv(b.cand_truth, tdir / "candidates_truth.csv"),
        "townships": write_csv(town, tdir / "townships_truth.csv"),
    }
    return files, bad_rows


def _counts(b: _Built, inc_df: pd.DataFrame, bad_rows: pd.DataFrame) -> dict[str, int]:
    """Rows / features per layer."""
    counts_t = pd.Series(b.sites_truth["tier"]).value_counts()
    return {
        "sites": len(b.sites_truth), "sites_rows": len(b.ledger),
        **{t: int(counts_t.get(t, 0)) for t in (str(x) for x in Tier)},
        "incidents": len(b.inc["df"]), "incidents_rows": len(inc_df), "clusters": int(b.inc["n_clusters"]),
        "candidates": len(b.cand), "townships": len(TOWNSHIPS), "zones": len(b.zones),
        "landuse_parcels": len(b.parcels), "population_cells": int(b.pop.array.size),
        "road_nodes": len(b.roads.node_x), "road_ways": len(b.roads.ways), "bad_rows": len(bad_rows),
    }


def _write_project(out: Path, p: ScaleParams, seed: int, scale: str, tile: Tile | None, counts: dict[str, int],
                   b: _Built, town: pd.DataFrame) -> None:
    """``project.yaml``, ``project_raster.yaml`` and ``README.md``."""
    header = f"# {settings.SAMPLE_LABEL}\n# generated by gis.sample (seed {seed}, scale {scale}); see README.md\n"
    for raster, fname in ((False, "project.yaml"), (True, "project_raster.yaml")):
        py = _project_yaml(p, seed, counts, raster=raster)
        if tile is not None:
            py.update(name=tile.name, code=tile.code)
            py["generator"]["tile"] = {"dlon": tile.dlon, "dlat": tile.dlat}
        _dump_yaml(py, out / fname, header)
    readme = _README.format(
        label=settings.SAMPLE_LABEL, seed=seed, scale=scale, n_sites=counts["sites"], n_bad_sites=len(b.bad_sites),
        n_incidents=counts["incidents"], n_bad_inc=len(b.inc["bad"]), n_candidates=counts["candidates"],
        n_townships=len(TOWNSHIPS), n_parcels=len(b.parcels), lu_res=p.landuse_raster_m, pop_res=p.population_res_deg,
        pop_total=float(b.pop.pop.sum()), n_nodes=counts["road_nodes"], n_ways=counts["road_ways"], margin=MARGIN_M,
        clean_ts=CLEAN_TS_M, no_ts="、".join(town["township"][~town["has_transfer_station"]]),
    )
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(readme, encoding="utf-8")
    write_contacts(out / "contacts.csv")  # the campaign's 联络员信息 (project.yaml campaign.contacts)


def _write(out: Path, seed: int, scale: str, tile: Tile | None, b: _Built) -> SampleResult:
    """Write every file of the built district and return what was written."""
    p = SCALES[scale]
    d_code = tile.code if tile is not None else DISTRICT_CODE
    tags = {"sample": "1", "label": settings.SAMPLE_LABEL, "seed": str(seed), "scale": scale}
    town = _township_table(b, d_code)
    files = _write_vectors(out, b, town, tile)
    files.update(_write_rasters(out, b, p, tile, tags))
    tables, inc_df, inc_rows = _write_tables(out, b, seed, scale)
    files.update(tables)
    truth_files, bad_rows = _write_truth(out, b, town, inc_rows, tile)
    counts = _counts(b, inc_df, bad_rows)
    _write_project(out, p, seed, scale, tile, counts, b, town)
    files["project"] = out / "project.yaml"
    return SampleResult(out=out, seed=seed, scale=scale, counts=counts, truth_files=truth_files, files=files)
