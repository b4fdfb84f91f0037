"""Road lines → routable CSR graph (路网图) in vectorised numpy/shapely, cached per project.

:func:`gis.network.graph_from_roads` builds an osmnx ``MultiDiGraph`` (edge
geometries, attributes, a Python dict per edge) which :class:`NetworkCSR` then
exports again edge by edge; the analyses only ever use the CSR. This module goes
straight from the lines to the arrays:

1. explode multi-lines, take every vertex (:func:`shapely.get_coordinates`);
2. merge vertices on a grid of ``node_tolerance_m`` (one integer key per vertex,
   one :func:`numpy.unique`), drop consecutive duplicates inside a line;
3. a vertex is a node when it ends a line, is shared by two lines, or repeats
   inside one line (OSM topology: crossings without a shared vertex — bridges,
   tunnels — stay unconnected);
4. an edge is the run of segments between two nodes; its length is the sum of
   the planar segment lengths (:func:`numpy.bincount`), its speed the line's
   class speed (``speeds_kmh`` of ``layers/coverage.yaml``), its travel time
   :math:`t = \\ell / (v / 3.6)`;
5. ``oneway`` honoured when driving, both directions when walking; parallel
   edges keep the smallest weight (:meth:`NetworkCSR.from_edges`).

The node ids are the same as :func:`gis.network.graph_from_roads` gives, so the
two agree node for node. OSM XML and GraphML are still read by osmnx
(:func:`gis.network.load_graph`) and exported once. Either way the result is
cached in a ``.npz`` keyed on the SHA-256 of the road file, the mode, the CRS,
the mode's speed table and the node tolerance (:func:`load_network`), so a
second run, or an app rerun, does not rebuild it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyproj

from gis._errors import AnalysisError, InputError
from gis.network import (
    GRAPHML_SUFFIXES,
    OSM_XML_SUFFIXES,
    Mode,
    class_speeds,
    coverage_config,
    speed_table,
)
from gis.road_noding import check_network_size, road_vertices
from gis.routing import NetworkCSR

if TYPE_CHECKING:
    from gis.district import District

_ONEWAY_FORWARD = ("f", "yes", "true", "1")
_ONEWAY_BACKWARD = ("t", "-1", "reverse")
CACHE_VERSION = 1


@dataclass
class RoadEdges:
    """Directed road edges as arrays (the cacheable form of a road graph).

    Attributes
    ----------
    u, v
        Row indices (into ``node_ids``) of each directed edge's ends.
    length
        Planar length (m).
    speed_kph
        Speed by road class for the mode.
    node_ids
        Node id of each row (the vertex key :func:`gis.network.graph_from_roads` uses).
    xy
        ``n × 2`` node coordinates in ``crs``.
    crs
        Metric CRS.
    """

    u: npt.NDArray[np.int64]
    v: npt.NDArray[np.int64]
    length: npt.NDArray[np.float64]
    speed_kph: npt.NDArray[np.float64]
    node_ids: npt.NDArray[np.int64]
    xy: npt.NDArray[np.float64]
    crs: pyproj.CRS

    def network(self, weight: str = "length") -> NetworkCSR:
        """CSR graph weighted by ``length`` (m) or ``travel_time`` (s)."""
        check_network_size(len(self.node_ids), "the cached road graph")
        if weight == "length":
            w = self.length
        elif weight == "travel_time":
            w = self.length / (self.speed_kph / 3.6)
        else:
            raise AnalysisError(f"unknown edge weight {weight!r}; expected 'length' or 'travel_time'")
        return NetworkCSR.from_edges(self.u, self.v, w, self.node_ids, self.xy, self.crs, weight)


def _usable_lines(roads: gpd.GeoDataFrame, mode: Mode, cfg: Mapping[str, Any], src: str | Path,
                  crs: Any) -> gpd.GeoDataFrame:
    """Lines of classes usable in ``mode``, in the metric CRS, exploded, with ``_speed``/``_oneway``."""
    if roads.crs is None:
        raise InputError(src, "road layer has no CRS")
    cls_col = "fclass" if "fclass" in roads.columns else ("highway" if "highway" in roads.columns else None)
    classes = roads[cls_col] if cls_col else pd.Series(pd.NA, index=roads.index, dtype="string")
    gtype = roads.geometry.geom_type.to_numpy()
    bad = ~np.isin(gtype, ["LineString", "MultiLineString"]) & roads.geometry.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise InputError(src, f"road features must be lines, found {gtype[bad][0]}", row=row, field="geometry")
    speeds = class_speeds(classes, mode, cfg).to_numpy()
    keep = np.isfinite(speeds) & roads.geometry.notna().to_numpy() & ~roads.geometry.is_empty.to_numpy()
    if not keep.any():
        raise InputError(src, f"no road usable for mode '{mode}'", field=cls_col or "fclass")
    oneway = (roads["oneway"].astype("string").str.strip().str.lower().fillna("b").to_numpy()
              if "oneway" in roads and mode == "drive" else np.full(len(roads), "b", dtype=object))
    r = gpd.GeoDataFrame({"_speed": speeds[keep], "_oneway": np.asarray(oneway, object)[keep]},
                         geometry=roads.geometry.to_numpy()[keep], crs=roads.crs)
    if crs is None:
        from gis.coords import choose_metric_crs

        crs = choose_metric_crs(r.to_crs(4326).total_bounds)
    return r.to_crs(pyproj.CRS(crs)).explode(index_parts=False).reset_index(drop=True)


def edges_from_lines(
    roads: gpd.GeoDataFrame,
    *,
    mode: Mode,
    crs: Any = None,
    config: Mapping[str, Any] | None = None,
    source: str | Path | None = None,
    tolerance_m: float | None = None,
) -> RoadEdges:
    """Directed edges of a road line layer (Geofabrik ``fclass``/``oneway`` or OSM ``highway``).

    The noding of :func:`gis.road_noding.road_vertices`, shared with :func:`gis.network.graph_from_roads`
    (see the module docstring), without building a networkx graph.
    """
    src = source or "<roads>"
    cfg = config if config is not None else coverage_config()
    tol = float(tolerance_m if tolerance_m is not None else cfg["node_tolerance_m"])
    if tol <= 0:
        raise AnalysisError("node_tolerance_m must be positive")
    r = _usable_lines(roads, mode, cfg, src, crs)
    vx = road_vertices(r.geometry.to_numpy(), tol, src, check_nodes=lambda n: check_network_size(n, src))
    coords, line, vid, first, last, is_node = vx.coords, vx.line, vx.vid, vx.first, vx.last, vx.is_node
    seg_start = ~last
    edge_start = is_node & seg_start
    edge_of = np.cumsum(edge_start) - 1
    seg_pos = np.flatnonzero(seg_start)
    seg_len = np.hypot(*(coords[seg_pos + 1] - coords[seg_pos]).T)
    n_edges = int(edge_start.sum())
    length = np.bincount(edge_of[seg_pos], weights=seg_len, minlength=n_edges)
    start_pos, end_pos = np.flatnonzero(edge_start), np.flatnonzero(is_node & ~first)
    attr = line[start_pos]
    return _directed(vid[start_pos], vid[end_pos], length, attr, r, vid, coords)


def _directed(u_v: npt.NDArray[np.int64], v_v: npt.NDArray[np.int64], length: npt.NDArray[np.float64],
              attr: npt.NDArray[np.int64], r: gpd.GeoDataFrame, vid: npt.NDArray[np.int64],
              coords: npt.NDArray[np.float64]) -> RoadEdges:
    """Both directions of two-way edges, one of one-way edges; rows renumbered to the used nodes."""
    oneway = r["_oneway"].astype(str).to_numpy()[attr]
    fwd_only = np.isin(oneway, _ONEWAY_FORWARD)
    bwd_only = np.isin(oneway, _ONEWAY_BACKWARD)
    speed = r["_speed"].to_numpy(float)[attr]
    f, b = ~bwd_only, ~fwd_only
    u = np.r_[u_v[f], v_v[b]]
    v = np.r_[v_v[f], u_v[b]]
    node_ids, inv = np.unique(np.r_[u, v], return_inverse=True)
    first_pos = np.full(int(vid.max()) + 1, -1)
    first_pos[vid[::-1]] = np.arange(len(vid))[::-1]
    return RoadEdges(inv[: len(u)].astype(np.int64), inv[len(u):].astype(np.int64),
                     np.r_[length[f], length[b]], np.r_[speed[f], speed[b]], node_ids.astype(np.int64),
                     coords[first_pos[node_ids]], pyproj.CRS(r.crs))


def edges_from_graph(G: Any, source: str | Path | None = None) -> RoadEdges:
    """Edge arrays of an osmnx graph (from OSM XML or GraphML via :func:`gis.network.load_graph`)."""
    check_network_size(G.number_of_nodes(), source or "the road graph")
    node_ids = np.array(list(G.nodes))
    index = {n: i for i, n in enumerate(node_ids)}
    xy = np.array([(d["x"], d["y"]) for _, d in G.nodes(data=True)], dtype=float)
    rows = [(index[u], index[v], d.get("length", np.nan), d.get("speed_kph", np.nan))
            for u, v, d in G.edges(data=True)]
    if not rows:
        raise AnalysisError("the road graph has no edges")
    e = np.array(rows, dtype=float)
    return RoadEdges(e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 2], e[:, 3],
                     node_ids, xy, pyproj.CRS(G.graph.get("crs")))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(path: str | Path, mode: Mode, crs: Any, config: Mapping[str, Any], layer: str | None = None) -> str:
    """Key of a road graph: file hash, mode, CRS, the mode's speed table, node tolerance, layer."""
    spec = {
        "v": CACHE_VERSION,
        "file": file_sha256(path),
        "suffix": Path(path).suffix.lower(),
        "mode": mode,
        "crs": pyproj.CRS(crs).to_wkt() if crs is not None else None,
        "speeds": sorted((k, v) for k, v in speed_table(mode, config).items()),
        "tol": config.get("node_tolerance_m"),
        "layer": layer,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save(edges: RoadEdges, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.stem + ".tmp.npz")
    ids = edges.node_ids
    np.savez(tmp, u=edges.u, v=edges.v, length=edges.length, speed_kph=edges.speed_kph,
             node_ids=ids if ids.dtype != object else ids.astype(str), xy=edges.xy,
             crs=np.array(edges.crs.to_wkt()))
    tmp.replace(target)


def _load(target: Path) -> RoadEdges:
    with np.load(target, allow_pickle=False) as z:
        return RoadEdges(z["u"], z["v"], z["length"], z["speed_kph"], z["node_ids"], z["xy"],
                         pyproj.CRS(str(z["crs"])))


def read_edges(path: str | Path, *, mode: Mode, crs: Any = None, config: Mapping[str, Any] | None = None,
               layer: str | None = None) -> RoadEdges:
    """Road edges from a file: vector lines built here, OSM XML / GraphML read by osmnx."""
    from gis.network import load_graph

    path = Path(path)
    cfg = config if config is not None else coverage_config()
    if not path.exists():
        raise InputError(path, "road network file not found")
    if path.suffix.lower() in OSM_XML_SUFFIXES + GRAPHML_SUFFIXES:
        return edges_from_graph(load_graph(path, mode=mode, crs=crs, config=cfg), source=path)
    try:
        roads = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise InputError(path, f"cannot read road layer: {exc}") from exc
    return edges_from_lines(roads, mode=mode, crs=crs, config=cfg, source=path)


def load_network(
    path: str | Path,
    *,
    mode: Mode,
    crs: Any = None,
    config: Mapping[str, Any] | None = None,
    layer: str | None = None,
    weight: str = "length",
    cache_dir: str | Path | None = None,
) -> NetworkCSR:
    """A road file's CSR graph, from the per-project cache when it is there.

    Parameters
    ----------
    path
        Road vector file, OSM XML or GraphML.
    mode
        ``walk`` or ``drive``.
    crs
        Metric CRS (``None``: chosen from the extent; the cache key then records
        ``None`` and the file's content decides the CRS).
    config
        Coverage configuration (``speeds_kmh``, ``node_tolerance_m``).
    weight
        ``length`` or ``travel_time``.
    cache_dir
        Directory for ``roadgraph-<key>.npz`` (e.g. ``~/.cache/gis-recycling/roadgraph`` or
        ``<out>/.cache``); ``None`` builds without caching. An unwritable
        directory only skips the cache.
    """
    cfg = config if config is not None else coverage_config()
    if cache_dir is None:
        return read_edges(path, mode=mode, crs=crs, config=cfg, layer=layer).network(weight)
    if not Path(path).exists():
        raise InputError(path, "road network file not found")
    target = Path(cache_dir) / f"roadgraph-{cache_key(path, mode, crs, cfg, layer)}.npz"
    if target.exists():
        try:
            return _load(target).network(weight)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    edges = read_edges(path, mode=mode, crs=crs, config=cfg, layer=layer)
    try:
        _save(edges, target)
    except OSError:
        pass  # read-only project folder: run without the cache
    return edges.network(weight)


def district_cache_dir(district: District) -> Path | None:
    """The road-graph cache folder (``cache_dir`` of ``layers/roadgraph.yaml``), or ``None``.

    A relative ``cache_dir`` lies in the user's cache folder (``$XDG_CACHE_HOME``, else
    ``~/.cache``), never in the project folder: a project may be read-only, confined
    (an upload) or fingerprinted by its files (the app's cache keys).
    """
    import os

    from gis import settings
    from gis.catalog import load_yaml

    rel = load_yaml(settings.LAYERS_DIR / "roadgraph.yaml").get("cache_dir")
    if rel is None or getattr(district, "project", None) is None:
        return None
    p = Path(rel)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return p if p.is_absolute() else base / p


def network_for_district(district: District, mode: Mode, *, weight: str = "length",
                         cache_dir: str | Path | None = None) -> NetworkCSR | None:
    """The district's road network for ``mode`` as CSR (``None`` without a roads layer).

    Built from ``district.roads_path`` in ``district.crs`` with the project's
    coverage configuration, through the cache (``cache_dir``, default
    :func:`district_cache_dir`): compliance, coverage and siting, and every later
    run, share one build.
    """
    path = getattr(district, "roads_path", None)
    if path is None:
        return None
    project = getattr(district, "project", None)
    cfg = project.section("coverage") if project is not None else coverage_config()
    spec = project.spec("roads") if project is not None else None
    layer = getattr(spec, "layer", None) if spec is not None else None
    folder = cache_dir if cache_dir is not None else district_cache_dir(district)
    return load_network(path, mode=mode, crs=district.crs, config=cfg, layer=layer, weight=weight,
                        cache_dir=folder)
