"""Offline road graphs (路网) for network-distance service areas.

A district's roads come as an OSM XML extract, a GraphML file saved by osmnx, or a
road vector layer (e.g. Geofabrik ``gis_osm_roads`` lines with ``fclass`` and
``oneway``). :func:`load_graph` turns any of them into an osmnx ``MultiDiGraph`` in
the district's metric CRS with, on every edge, ``length`` (metres), ``speed_kph``
(by road class, from ``layers/coverage.yaml``) and ``travel_time`` (seconds).
Nothing is downloaded: :func:`download_graph` exists for analysts who want it, and
refuses unless explicitly allowed.

Analyses do not run shortest paths on the networkx graph: :class:`gis.routing.NetworkCSR`
is a compact ``scipy.sparse`` CSR export of it, and :mod:`gis.routing` holds every
snapping and distance function (multi-source Dijkstra, straight-line fallback).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis import settings
from gis._errors import AnalysisError, InputError
from gis.road_noding import RoadVertices, check_network_size, road_vertices

if TYPE_CHECKING:
    import networkx as nx

    from gis.district import District

Mode = Literal["walk", "drive"]
MODES: tuple[str, ...] = ("walk", "drive")

#: Suffixes read as OSM XML and as GraphML; everything else is a vector road file.
OSM_XML_SUFFIXES: tuple[str, ...] = (".osm", ".xml")
GRAPHML_SUFFIXES: tuple[str, ...] = (".graphml",)

_ONEWAY_FORWARD = {"f", "yes", "true", "1"}
_ONEWAY_BACKWARD = {"t", "-1", "reverse"}


def coverage_config(override: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``layers/coverage.yaml`` defaults, deep-merged with ``override``.

    Analyses that receive a :class:`gis.district.District` use
    ``district.project.section("coverage")``; this is for callers working on plain
    GeoDataFrames and graphs.
    """
    from gis.catalog import deep_merge, load_yaml

    base = load_yaml(settings.LAYERS_DIR / "coverage.yaml")
    return deep_merge(base, dict(override or {}))


def speed_table(mode: Mode, config: Mapping[str, Any] | None = None) -> dict[str, float | None]:
    """Speeds (km/h) by road class for ``mode``; ``None`` marks a class not usable."""
    if mode not in MODES:
        raise AnalysisError(f"unknown travel mode {mode!r}; expected one of {MODES}")
    cfg = config if config is not None else coverage_config()
    table = dict((cfg.get("speeds_kmh") or {}).get(mode) or {})
    if "default" not in table:
        table["default"] = settings.WALK_SPEED_KMH if mode == "walk" else settings.DRIVE_SPEED_KMH
    return {str(k): (None if v is None else float(v)) for k, v in table.items()}


def class_speeds(classes: pd.Series, mode: Mode, config: Mapping[str, Any] | None = None) -> pd.Series:
    """Speed (km/h, NaN = not usable in ``mode``) of each road class value.

    OSM ``highway`` values that osmnx merged into a list keep their first class.
    """
    table = speed_table(mode, config)
    default = table.pop("default")
    cls = classes.map(lambda v: v[0] if isinstance(v, (list, tuple)) and v else v).astype("string")
    speeds = cls.map(lambda c: table.get(c, default) if c is not pd.NA else default)
    return pd.to_numeric(speeds, errors="coerce").astype(float)


# ---------------------------------------------------------------------------
# building graphs
# ---------------------------------------------------------------------------


def load_graph(
    path: str | Path | Any,
    *,
    mode: Mode = "drive",
    crs: Any = None,
    config: Mapping[str, Any] | None = None,
    layer: str | None = None,
) -> nx.MultiDiGraph:
    """Read a road network from a local file into a routable graph in a metric CRS.

    Parameters
    ----------
    path
        OSM XML (``.osm``/``.xml``, read by :func:`osmnx.graph_from_xml`), GraphML
        (``.graphml``, :func:`osmnx.load_graphml`) or any vector line file
        GeoPandas reads (GeoJSON, GeoPackage, Shapefile; built by
        :func:`graph_from_roads`). A :class:`gis.district.District` is accepted
        too (its ``roads_path``, CRS and coverage config; see
        :func:`graph_for_district`).
    mode
        ``"walk"`` (every way two-way, no motorways) or ``"drive"`` (``oneway``
        honoured, no footways/steps); classes and speeds from ``speeds_kmh``.
    crs
        Metric CRS of the result; ``None`` chooses the CGCS2000 3° Gauss-Krüger
        zone of the network's centre (:func:`gis.coords.choose_metric_crs`).
    config
        The coverage configuration (``Project.section("coverage")``).
    layer
        Layer name for multi-layer vector files.

    Returns
    -------
    networkx.MultiDiGraph
        osmnx-style graph; edges carry ``length`` (m), ``speed_kph``,
        ``travel_time`` (s); ``G.graph["crs"]`` is the metric CRS and
        ``G.graph["mode"]`` the mode.
    """
    import osmnx as ox

    if hasattr(path, "roads_path"):
        G = graph_for_district(path, mode=mode)
        if G is None:
            raise AnalysisError("the district declares no roads layer")
        return G
    path = Path(path)
    cfg = config if config is not None else coverage_config()
    if not path.exists():
        raise InputError(path, "road network file not found")
    suffix = path.suffix.lower()
    if suffix in OSM_XML_SUFFIXES or suffix in GRAPHML_SUFFIXES:
        try:
            if suffix in GRAPHML_SUFFIXES:
                G = ox.load_graphml(path)
            else:
                G = ox.graph_from_xml(path, bidirectional=(mode == "walk"), simplify=True, retain_all=True)
        except Exception as exc:  # osmnx raises bare ValueError/ParseError
            raise InputError(path, f"cannot read road network: {exc}") from exc
        if G.number_of_edges() == 0:
            raise InputError(path, "road network has no edges")
        if mode == "walk" and suffix in GRAPHML_SUFFIXES:
            G = _make_bidirectional(G)
        return _finish_osmnx_graph(G, mode=mode, crs=crs, config=cfg, source=path)
    try:
        roads = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise InputError(path, f"cannot read road layer: {exc}") from exc
    return graph_from_roads(roads, mode=mode, crs=crs, config=cfg, source=path)


_GRAPH_CACHE: dict[tuple[Any, ...], nx.MultiDiGraph] = {}


def graph_for_district(district: District, mode: Mode = "walk") -> nx.MultiDiGraph | None:
    """The district's road graph for ``mode`` (``None`` without a roads layer).

    Read from ``district.roads_path`` in ``district.crs`` with the project's
    coverage configuration; cached per file, modification time, mode and CRS so
    that the compliance, coverage and siting steps read it once.
    """
    path = getattr(district, "roads_path", None)
    if path is None:
        return None
    path = Path(path)
    cfg = district.project.section("coverage") if getattr(district, "project", None) else coverage_config()
    spec = district.project.spec("roads") if getattr(district, "project", None) else None
    layer = getattr(spec, "layer", None) if spec is not None else None
    key = (str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0, mode,
           pyproj.CRS(district.crs).to_wkt(), repr(sorted(cfg.get("speeds_kmh", {}).items())),
           cfg.get("node_tolerance_m"))
    if key not in _GRAPH_CACHE:
        if len(_GRAPH_CACHE) > 8:
            _GRAPH_CACHE.clear()
        _GRAPH_CACHE[key] = load_graph(path, mode=mode, crs=district.crs, config=cfg, layer=layer)
    return _GRAPH_CACHE[key]


def download_graph(
    polygon_wgs84: shapely.Geometry,
    *,
    mode: Mode,
    crs: Any = None,
    config: Mapping[str, Any] | None = None,
    allow_network: bool = False,
) -> nx.MultiDiGraph:
    """Download the OSM road network inside a polygon (optional online path).

    Refuses with :class:`~gis._errors.AnalysisError` unless ``allow_network`` is
    true: the toolkit runs offline by default and districts supply their own files.
    """
    if not allow_network:
        raise AnalysisError(
            "downloading road networks is switched off; pass allow_network=True, or give "
            "the project a local roads file (OSM XML, GraphML or a road vector layer)"
        )
    import osmnx as ox

    network_type = "walk" if mode == "walk" else "drive"
    G = ox.graph_from_polygon(polygon_wgs84, network_type=network_type, retain_all=True)
    return _finish_osmnx_graph(G, mode=mode, crs=crs, config=config or coverage_config(), source=None)


def _make_bidirectional(G: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """Add the reverse of every edge that lacks one (walking ignores ``oneway``)."""
    H = G.copy()
    rev = [
        (v, u, {**d, "reversed": True, **({"geometry": d["geometry"].reverse()} if "geometry" in d else {})})
        for u, v, d in G.edges(data=True)
        if not G.has_edge(v, u)
    ]
    H.add_edges_from(rev)
    return H


def _finish_osmnx_graph(
    G: nx.MultiDiGraph, *, mode: Mode, crs: Any, config: Mapping[str, Any], source: Path | None
) -> nx.MultiDiGraph:
    """Filter an osmnx graph to the mode's road classes, set speeds, project it."""
    import networkx as nx  # here, not at import: a run whose road graph is cached never needs it
    import osmnx as ox

    edges = list(G.edges(keys=True, data="highway"))
    if not edges:
        raise InputError(source or "<graph>", "road network has no edges")
    classes = pd.Series([e[3] for e in edges], dtype=object)
    speeds = class_speeds(classes, mode, config).to_numpy()
    G = G.copy()
    G.remove_edges_from([e[:3] for e, s in zip(edges, speeds, strict=True) if not np.isfinite(s)])
    kept = [(u, v, k) for (u, v, k, _), s in zip(edges, speeds, strict=True) if np.isfinite(s)]
    nx.set_edge_attributes(
        G, {e: float(s) for e, s in zip(kept, speeds[np.isfinite(speeds)], strict=True)}, "speed_kph"
    )
    G.remove_nodes_from([n for n, d in G.degree() if d == 0])
    if G.number_of_edges() == 0:
        raise InputError(source or "<graph>", f"no road usable for mode '{mode}'", field="highway")
    if crs is None:
        from gis.coords import choose_metric_crs

        xs = np.fromiter((d["x"] for _, d in G.nodes(data=True)), float)
        ys = np.fromiter((d["y"] for _, d in G.nodes(data=True)), float)
        src = pyproj.CRS(G.graph.get("crs", "EPSG:4326"))
        if src.is_geographic:
            crs = choose_metric_crs((xs.min(), ys.min(), xs.max(), ys.max()))
        else:
            crs = src
    G = ox.project_graph(G, to_crs=pyproj.CRS(crs))
    lengths = nx.get_edge_attributes(G, "length")
    nx.set_edge_attributes(
        G,
        {e: float(lengths[e]) / (G.edges[e]["speed_kph"] / 3.6) for e in lengths},
        "travel_time",
    )
    G.graph["mode"] = mode
    return G


def graph_from_roads(
    roads: gpd.GeoDataFrame,
    *,
    mode: Mode,
    crs: Any = None,
    config: Mapping[str, Any] | None = None,
    source: str | Path | None = None,
    tolerance_m: float | None = None,
) -> nx.MultiDiGraph:
    """Build a routable osmnx graph from road centre lines (Geofabrik style).

    Lines are noded at their end points and at every vertex they share with
    another line (or with themselves) after rounding coordinates to
    ``tolerance_m`` — OSM's own topology, where ways that connect share a node.
    Lines that merely cross (bridges, tunnels, flyovers) are *not* connected.
    Each piece of a line between two nodes becomes an edge whose ``length`` is its
    planar length in the metric CRS.

    Parameters
    ----------
    roads
        Lines or multi-lines with a CRS; columns ``fclass`` (or ``highway``) and
        ``oneway`` (Geofabrik ``F``/``T``/``B`` or OSM ``yes``/``-1``/``no``) are
        used when present; ``osm_id`` and ``name`` are carried onto the edges.
    mode
        ``"walk"``: every line two-way, classes with a walking speed only.
        ``"drive"``: ``oneway`` honoured (``F`` along the digitised direction,
        ``T`` against it), classes with a driving speed only.
    crs
        Metric CRS; ``None`` chooses one from the roads' extent.
    config
        Coverage configuration (``speeds_kmh``, ``node_tolerance_m``).
    source
        File name used in error messages.
    tolerance_m
        Overrides ``node_tolerance_m``.

    Returns
    -------
    networkx.MultiDiGraph
        Nodes ``x``/``y`` in the metric CRS; edges ``length``, ``speed_kph``,
        ``travel_time``, ``highway``, ``oneway``, ``osm_id``, ``name``, ``geometry``.
    """
    import osmnx as ox

    src = source or "<roads>"
    cfg = config if config is not None else coverage_config()
    tol = float(tolerance_m if tolerance_m is not None else cfg["node_tolerance_m"])
    if tol <= 0:
        raise AnalysisError("node_tolerance_m must be positive")
    r, crs = _usable_roads(roads, mode, cfg, src, crs)
    v = road_vertices(r.geometry.to_numpy(), tol, src, check_nodes=lambda n: check_network_size(n, src))
    edges, attr_line = _undirected_edges(r, v)
    gdf_edges = _directed_edges(edges, r, attr_line, mode, crs)
    gdf_nodes = _road_nodes(edges, v, crs)
    G = ox.graph_from_gdfs(gdf_nodes, gdf_edges, graph_attrs={"crs": crs, "simplified": True})
    G.graph["mode"] = mode
    return G


def _usable_roads(
    roads: gpd.GeoDataFrame, mode: Mode, cfg: Mapping[str, Any], src: str | Path, crs: Any
) -> tuple[gpd.GeoDataFrame, pyproj.CRS]:
    """The road lines usable in ``mode`` (a speed for their class), single-part, in the metric CRS.

    Adds ``_class`` and ``_speed`` (km/h); ``crs`` None chooses one from the roads' extent.
    """
    if roads.crs is None:
        raise InputError(src, "road layer has no CRS")
    cls_col = "fclass" if "fclass" in roads.columns else ("highway" if "highway" in roads.columns else None)
    classes = roads[cls_col] if cls_col else pd.Series(pd.NA, index=roads.index, dtype="string")
    speeds = class_speeds(classes, mode, cfg)
    keep = speeds.notna().to_numpy().copy()
    gtype = roads.geometry.geom_type.to_numpy()
    bad = ~np.isin(gtype, ["LineString", "MultiLineString"]) & roads.geometry.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise InputError(src, f"road features must be lines, found {gtype[bad][0]}", row=row, field="geometry")
    keep &= roads.geometry.notna().to_numpy() & ~roads.geometry.is_empty.to_numpy()
    r = roads.loc[keep].copy()
    if r.empty:
        raise InputError(src, f"no road usable for mode '{mode}'", field=cls_col or "fclass")
    r["_class"] = classes[keep].astype("string").to_numpy()
    r["_speed"] = speeds[keep].to_numpy()
    if crs is None:
        from gis.coords import choose_metric_crs

        crs = choose_metric_crs(r.to_crs(4326).total_bounds)
    crs = pyproj.CRS(crs)
    return r.to_crs(crs).explode(index_parts=False).reset_index(drop=True), crs


def _undirected_edges(r: gpd.GeoDataFrame, v: RoadVertices) -> tuple[pd.DataFrame, np.ndarray]:
    """One edge per piece of line between two nodes; ``length`` = :math:`\\sum` segment lengths.

    Returns the edges (``u``, ``v``, ``length``, ``highway``, ``speed_kph``, ``osm_id``,
    ``name``, ``geometry``) and the line each edge comes from.
    """
    coords, line, vid, first, last, is_node = v.coords, v.line, v.vid, v.first, v.last, v.is_node
    seg_start = ~last  # positions that start a segment p -> p+1
    edge_start = is_node & seg_start
    edge_of = np.cumsum(edge_start) - 1  # edge id of the segment starting at p
    edge_end = is_node & ~first
    seg_pos = np.flatnonzero(seg_start)
    seg_len = np.hypot(*(coords[seg_pos + 1] - coords[seg_pos]).T)
    n_edges = int(edge_start.sum())
    length = np.bincount(edge_of[seg_pos], weights=seg_len, minlength=n_edges)
    start_pos = np.flatnonzero(edge_start)
    end_pos = np.flatnonzero(edge_end)
    u_v, v_v = vid[start_pos], vid[end_pos]
    # edge geometry: its segment-start positions plus its end position
    pos = np.r_[seg_pos, end_pos]
    eid = np.r_[edge_of[seg_pos], np.arange(n_edges)]
    order = np.lexsort((pos, eid))
    geoms = shapely.linestrings(coords[pos[order]], indices=eid[order])
    attr_line = line[start_pos]
    edges = pd.DataFrame(
        {
            "u": u_v,
            "v": v_v,
            "length": length,
            "highway": r["_class"].to_numpy()[attr_line],
            "speed_kph": r["_speed"].to_numpy()[attr_line],
            "osm_id": (r["osm_id"].astype(str).to_numpy()[attr_line] if "osm_id" in r else None),
            "name": (r["name"].to_numpy()[attr_line] if "name" in r else None),
        }
    )
    edges["geometry"] = geoms
    return edges, attr_line


def _directed_edges(
    edges: pd.DataFrame, r: gpd.GeoDataFrame, attr_line: np.ndarray, mode: Mode, crs: pyproj.CRS
) -> gpd.GeoDataFrame:
    """Both directions of two-way edges, one of one-way edges (``drive`` only); osmnx-indexed.

    ``travel_time`` = ``length`` / (``speed_kph`` / 3.6) seconds.
    """
    n_edges = len(edges)
    oneway = (
        r["oneway"].astype("string").str.strip().str.lower().fillna("b").to_numpy()[attr_line]
        if "oneway" in r
        else np.full(n_edges, "b")
    )
    fwd_only = np.isin(oneway, list(_ONEWAY_FORWARD))
    bwd_only = np.isin(oneway, list(_ONEWAY_BACKWARD))
    if mode == "walk":
        fwd_only[:] = False
        bwd_only[:] = False
    edges["oneway"] = fwd_only | bwd_only
    edges["reversed"] = False
    fwd = edges.loc[~bwd_only]
    bwd = edges.loc[~fwd_only].copy()
    bwd[["u", "v"]] = bwd[["v", "u"]].to_numpy()
    bwd["geometry"] = shapely.reverse(bwd["geometry"].to_numpy())
    bwd["reversed"] = True
    all_edges = pd.concat([fwd, bwd], ignore_index=True)
    all_edges["key"] = all_edges.groupby(["u", "v"]).cumcount()
    all_edges["travel_time"] = all_edges["length"] / (all_edges["speed_kph"] / 3.6)
    return gpd.GeoDataFrame(all_edges, geometry="geometry", crs=crs).set_index(["u", "v", "key"])


def _road_nodes(edges: pd.DataFrame, v: RoadVertices, crs: pyproj.CRS) -> gpd.GeoDataFrame:
    """The graph nodes: every edge end, at the first occurrence of its vertex."""
    node_ids = np.unique(np.r_[edges["u"].to_numpy(), edges["v"].to_numpy()])
    first_pos = np.full(v.vid.max() + 1, -1)
    first_pos[v.vid[::-1]] = np.arange(len(v.vid))[::-1]
    xy = v.coords[first_pos[node_ids]]
    return gpd.GeoDataFrame(
        {"x": xy[:, 0], "y": xy[:, 1]},
        geometry=shapely.points(xy),
        index=pd.Index(node_ids, name="osmid"),
        crs=crs,
    )
