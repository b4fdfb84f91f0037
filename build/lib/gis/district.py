"""One district's layers, loaded, validated and in one metric CRS.

:func:`load_district` reads every layer a ``project.yaml`` names, converts declared
GCJ-02 / BD-09 coordinates to WGS84, projects everything into the district's
metric CRS (chosen once), attaches the township (镇街, 属地) to every point, and
collects every rejected row with its reason. Analyses take a :class:`District`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from gis._errors import InputError, LayerMissingError
from gis.catalog import LayerSpec, Project, load_project
from gis.io import RasterLayer, empty_rejects, points_from_table, raster_layer, vector_layer
from gis.schema import RejectReason

log = logging.getLogger(__name__)

POINT_ROLES = ("sites", "incidents", "candidates")
POLYGON_ROLES = ("townships", "zones", "landuse", "population")


@dataclass
class District:
    """All layers of one district (see ``docs/ARCHITECTURE.md``).

    Attributes
    ----------
    project
        The parsed ``project.yaml``.
    crs
        Metric CRS of every vector layer here.
    sites, incidents, candidates
        Point layers (canonical fields + ``source_row``, ``coords_source``,
        ``township_ledger`` (township as written in the file) and ``township``
        (the township polygon the point lies in — 属地 — or the ledger's when
        outside all polygons)).
    townships, zones, landuse, population
        Polygon layers (``None`` when not declared).
    landuse_raster, population_raster
        Raster layers (``None`` when not declared).
    roads_path
        Road network file (OSM XML, GraphML, or a vector road layer).
    rejects
        Every rejected input row (:data:`gis.schema.REJECT_COLUMNS`).
    read_counts, loaded_counts
        Records read / loaded per role.
    provenance
        Per role: file, format, encoding, column mapping, coordinate convention.
    """

    project: Project
    crs: CRS
    townships: gpd.GeoDataFrame
    sites: gpd.GeoDataFrame
    incidents: gpd.GeoDataFrame | None = None
    candidates: gpd.GeoDataFrame | None = None
    zones: gpd.GeoDataFrame | None = None
    landuse: gpd.GeoDataFrame | None = None
    landuse_raster: RasterLayer | None = None
    population: gpd.GeoDataFrame | None = None
    population_raster: RasterLayer | None = None
    roads_path: Path | None = None
    rejects: pd.DataFrame = field(default_factory=empty_rejects)
    read_counts: dict[str, int] = field(default_factory=dict)
    loaded_counts: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """District name."""
        return self.project.name

    @functools.cached_property
    def boundary(self) -> shapely.Geometry:
        """The district outline: union of the townships (metric CRS)."""
        return shapely.union_all(self.townships.geometry.values)

    def layer(self, role: str) -> Any:
        """A layer by role; raises :class:`LayerMissingError` when absent."""
        value = {
            "landuse": self.landuse if self.landuse is not None else self.landuse_raster,
            "population": self.population if self.population is not None else self.population_raster,
            "roads": self.roads_path,
        }.get(role, getattr(self, role, None))
        if value is None:
            raise LayerMissingError(role, "this analysis")
        return value

    def population_points(self) -> gpd.GeoDataFrame:
        """Population as points: raster cell centres or polygon representative points.

        Returns a GeoDataFrame (metric CRS) with ``population``, ``township`` and,
        for rasters, ``row``/``col`` of the cell; cells with no people are dropped.
        Cached after the first call.
        """
        return self._population_points

    @functools.cached_property
    def _population_points(self) -> gpd.GeoDataFrame:
        if self.population_raster is not None:
            r = self.population_raster
            arr = r.read().astype(float)
            valid = np.isfinite(arr) & (arr > 0)
            if r.nodata is not None:
                valid &= arr != r.nodata
            rows, cols = np.nonzero(valid)
            xs, ys = r.transform @ (cols + 0.5, rows + 0.5)
            pts = gpd.GeoDataFrame(
                {"population": arr[rows, cols], "row": rows, "col": cols},
                geometry=gpd.points_from_xy(xs, ys),
                crs=r.crs,
            ).to_crs(self.crs)
        elif self.population is not None:
            pop = self.population
            pts = gpd.GeoDataFrame(
                {"population": pop["population"].to_numpy(dtype=float)},
                geometry=pop.geometry.representative_point().values,
                crs=self.crs,
            )
            pts = pts[pts["population"] > 0]
        else:
            raise LayerMissingError("population", "population_points()")
        pts["township"] = assign_township(pts.geometry, self.townships)
        return pts.reset_index(drop=True)


def assign_township(points: gpd.GeoSeries, townships: gpd.GeoDataFrame) -> np.ndarray:
    """Name of the township polygon each point lies in (``None`` outside all).

    A point on a shared boundary takes the first township in layer order.
    """
    idx_pt, idx_poly = townships.sindex.query(points.values, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    names = townships["township"].to_numpy()
    # first match per point (query returns sorted by input index)
    first = np.unique(idx_pt, return_index=True)[1]
    out[idx_pt[first]] = names[idx_poly[first]]
    return out


@dataclass
class _Reading:
    """What loading the layers of one project collects: rejects, row counts, provenance."""

    rejects: list[pd.DataFrame] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=dict)
    prov: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, role: str, specs: list[LayerSpec]) -> gpd.GeoDataFrame | None:
        """Read every file of a role (tables as points, vector files) into one WGS84 frame."""
        frames = []
        for spec in specs:
            if spec.kind == "table":
                gdf, rej, n, info = points_from_table(spec)
            else:
                gdf, rej, n, info = vector_layer(spec)
            gdf["source_file"] = str(spec.path)
            if spec.role == "zones":
                gdf["source_layer"] = spec.layer or spec.path.stem
            frames.append(gdf)
            self.rejects.append(rej)
            self.read[role] = self.read.get(role, 0) + n
            self.prov.setdefault(role, []).append(info)
        if not frames:
            return None
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")

    def rejects_table(self) -> pd.DataFrame:
        """All rejects, sorted by layer, file and row."""
        nonempty = [r for r in self.rejects if len(r)]
        if not nonempty:
            return empty_rejects()
        table = pd.concat(nonempty, ignore_index=True)
        return table.sort_values(["layer", "file", "row"], kind="stable").reset_index(drop=True)


def _townships(proj: Project, reading: _Reading) -> tuple[gpd.GeoDataFrame, CRS]:
    """The township polygons in the metric CRS (declared, or chosen from their longitude)."""
    from gis.coords import choose_metric_crs

    townships = reading.add("townships", proj.layers["townships"])
    if townships is None or townships.empty:
        raise InputError(proj.layers["townships"][0].path, "no usable township polygons")
    if proj.metric_crs:
        crs = CRS.from_user_input(proj.metric_crs)
    else:
        crs = choose_metric_crs(*townships.total_bounds[[0, 2]])
    return townships.to_crs(crs), crs


def _point_layers(
    proj: Project, reading: _Reading, townships: gpd.GeoDataFrame, crs: CRS
) -> dict[str, gpd.GeoDataFrame]:
    """Sites, incidents, candidates: outside points rejected, township assigned spatially."""
    boundary = shapely.union_all(townships.geometry.values)
    layers: dict[str, gpd.GeoDataFrame] = {}
    for role in POINT_ROLES:
        if not proj.has(role):
            continue
        gdf = reading.add(role, proj.layers[role]).to_crs(crs)
        gdf, rej = _reject_outside(gdf, role, boundary, proj.outside_tolerance_m)
        reading.rejects.append(rej)
        # candidates have no township field of their own
        gdf["township_ledger"] = gdf["township"] if "township" in gdf.columns else pd.Series(None, index=gdf.index, dtype=object)
        spatial = assign_township(gdf.geometry, townships)
        gdf["township"] = np.where(pd.notna(spatial), spatial, gdf["township_ledger"])
        layers[role] = gdf
    return layers


def _area_layers(proj: Project, reading: _Reading, crs: CRS) -> dict[str, Any]:
    """Zones, land use, population: vector layers in the metric CRS, or raster layers."""
    layers: dict[str, Any] = {}
    for role in ("zones", "landuse", "population"):
        if not proj.has(role):
            continue
        specs = proj.layers[role]
        if specs[0].kind == "raster":
            if role == "population":
                layers["population_raster"] = raster_layer(specs[0])
            elif role == "landuse":
                layers["landuse_raster"] = raster_layer(specs[0])
            reading.prov[role] = [{"file": str(specs[0].path), "format": "tif"}]
            continue
        layers[role] = reading.add(role, specs).to_crs(crs)
    return layers


def load_district(project: str | Path | Project) -> District:
    """Load and validate every layer of a district project.

    Parameters
    ----------
    project
        A folder holding ``project.yaml``, the YAML file, or a :class:`Project`.

    Returns
    -------
    District
        With rejects collected; ``loaded + rejected == read`` for every point layer.

    Raises
    ------
    CatalogError
        When ``project.yaml`` is malformed (file and key named).
    InputError
        When a whole file is unusable (file, and row/field where one is at fault).

    Examples
    --------
    >>> from gis.district import load_district
    >>> d = load_district("data/sample_district")          # doctest: +SKIP
    >>> d.crs.to_string(), len(d.sites), len(d.rejects)    # doctest: +SKIP
    ('EPSG:4544', 348, 9)
    >>> d.project.section("coverage")["headline_tier"]     # doctest: +SKIP
    'collection_point'
    """
    proj = project if isinstance(project, Project) else load_project(project)
    reading = _Reading()
    townships, crs = _townships(proj, reading)
    layers: dict[str, Any] = {"townships": townships, **_point_layers(proj, reading, townships, crs)}
    layers.update(_area_layers(proj, reading, crs))
    roads_path = None
    if proj.has("roads"):
        roads_path = proj.layers["roads"][0].path
        reading.prov["roads"] = [{"file": str(roads_path), "format": proj.layers["roads"][0].format}]
    loaded = {role: len(gdf) for role, gdf in layers.items() if isinstance(gdf, gpd.GeoDataFrame)}
    district = District(
        project=proj,
        crs=crs,
        roads_path=roads_path,
        rejects=reading.rejects_table(),
        read_counts=reading.read,
        loaded_counts=loaded,
        provenance=reading.prov,
        **layers,
    )
    _check_balance(district)
    return district


def _reject_outside(
    gdf: gpd.GeoDataFrame, role: str, boundary: shapely.Geometry, tolerance_m: float
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Split off points further than ``tolerance_m`` outside the district."""
    dist = shapely.distance(gdf.geometry.values, boundary)
    far = dist > tolerance_m
    rej = pd.DataFrame(
        {
            "layer": role,
            "file": gdf.loc[far, "source_file"].to_numpy(),
            "row": gdf.loc[far, "source_row"].to_numpy(),
            "field": "geometry",
            # as lon/lat (WGS84, after any GCJ-02/BD-09 repair): what a planner can look up
            "value": [f"{p.x:.6f}, {p.y:.6f} (WGS84)" for p in gdf.geometry[far].to_crs(4326)],
            "reason": RejectReason.OUTSIDE_DISTRICT.value,
            "detail": [f"{d / 1000:.1f} km outside the district (tolerance {tolerance_m:.0f} m)" for d in dist[far]],
        }
    )
    return gdf[~far].reset_index(drop=True), rej


def _check_balance(d: District) -> None:
    """Assert loaded + rejected == read for every layer read from records."""
    for role, n in d.read_counts.items():
        rejected = int((d.rejects["layer"] == role).sum()) if len(d.rejects) else 0
        got = d.loaded_counts.get(role, 0)
        if got + rejected != n:  # pragma: no cover - internal invariant
            raise AssertionError(f"{role}: loaded {got} + rejected {rejected} != read {n}")
