"""Noding of road lines (路网节点): the one implementation shared by the graph builders.

Road centre lines are noded at their end points and at every vertex they share
with another line (or with themselves) after rounding coordinates to a tolerance,
OSM's own topology, where ways that connect share a node. Lines that merely cross
(bridges, tunnels, flyovers) are not connected. :func:`gis.roadgraph.edges_from_lines`
(edge arrays → CSR) and :func:`gis.network.graph_from_roads` (a networkx graph with
edge geometries) both start from :func:`road_vertices`, so they give the same nodes
and the same node ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from gis._errors import InputError

__all__ = ["RoadVertices", "check_network_size", "road_vertices", "vertex_ids"]


@dataclass
class RoadVertices:
    """Line vertices on the rounding grid.

    Attributes
    ----------
    coords
        ``m × 2`` vertex coordinates (consecutive duplicates and lines of fewer than
        two vertices removed).
    line
        Line (row) of each vertex.
    vid
        Vertex id: ``round(xy / tol)`` numbered in lexicographic (x, y) order.
    first, last
        Whether the vertex starts / ends its line.
    is_node
        Whether the vertex is a graph node.
    """

    coords: npt.NDArray[np.float64]
    line: npt.NDArray[np.int64]
    vid: npt.NDArray[np.int64]
    first: npt.NDArray[np.bool_]
    last: npt.NDArray[np.bool_]
    is_node: npt.NDArray[np.bool_]


def check_network_size(n_nodes: int, source: Any) -> None:
    """Refuse a road network of more than ``analysis.max_network_nodes`` nodes (``layers/limits.yaml``).

    Called once the node count is known and before the edge arrays, the graph or
    the CSR matrix are allocated.

    Raises
    ------
    GisError
        Naming the road file, the node count and the limit's key.
    """
    from gis.limits import check_size

    check_size(n_nodes, "analysis", "max_network_nodes",
               f"the road network of {Path(str(source)).name} (nodes after merging vertices within node_tolerance_m)")


def vertex_ids(coords: npt.NDArray[np.float64], tol: float) -> npt.NDArray[np.int64]:
    """Vertex id per coordinate after rounding to ``tol`` (lexicographic on (x, y) keys)."""
    key = np.round(coords / tol).astype(np.int64)
    kx, ky = key[:, 0] - key[:, 0].min(), key[:, 1] - key[:, 1].min()
    span = int(ky.max()) + 1
    if kx.max() > np.iinfo(np.int64).max // span:
        _, vid = np.unique(key, axis=0, return_inverse=True)
        return vid.ravel().astype(np.int64)
    _, vid = np.unique(kx * span + ky, return_inverse=True)
    return vid.astype(np.int64)


def road_vertices(geoms: Any, tol: float, src: str | Path, check_nodes: Any = None) -> RoadVertices:
    """Vertex ids ``round(xy / tol)`` of single-part lines and their node flags.

    A vertex is a node when it ends a line, is shared by two or more lines, or
    occurs twice in one line (a loop); consecutive duplicates within a line are
    dropped and lines left with fewer than two vertices are skipped.

    Parameters
    ----------
    geoms
        LineStrings (metric CRS).
    tol
        Rounding tolerance (m), ``node_tolerance_m``.
    src
        File named in errors.
    check_nodes
        Called with the node count before anything sized by it is allocated (the
        road-network size limit).
    """
    coords, line = shapely.get_coordinates(np.asarray(geoms), return_index=True)
    if len(coords) == 0:
        raise InputError(src, "road lines have no length", field="geometry")
    vid = vertex_ids(coords, tol)
    dup = np.r_[False, (vid[1:] == vid[:-1]) & (line[1:] == line[:-1])]
    coords, line, vid = coords[~dup], line[~dup], vid[~dup]
    m = (np.bincount(line, minlength=int(line.max()) + 1) >= 2)[line]
    coords, line, vid = coords[m], line[m], vid[m]
    if len(vid) == 0:
        raise InputError(src, "road lines have no length", field="geometry")
    first = np.r_[True, line[1:] != line[:-1]]
    last = np.r_[line[1:] != line[:-1], True]
    nv = int(vid.max()) + 1
    n_lines = int(line.max()) + 1
    lines_per_vertex = np.bincount(np.unique(vid * n_lines + line) // n_lines, minlength=nv)
    occ = np.bincount(vid, minlength=nv)
    endpoint = np.zeros(nv, bool)
    endpoint[vid[first | last]] = True
    node_vertex = endpoint | (lines_per_vertex >= 2) | (occ > lines_per_vertex)
    if check_nodes is not None:
        check_nodes(int(node_vertex.sum()))
    return RoadVertices(coords, line, vid, first, last, node_vertex[vid])
