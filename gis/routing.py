"""Routing on road networks (路网): the one home of snapping and distances.

:class:`NetworkCSR` is a compact ``scipy.sparse`` CSR export of a road graph
(:mod:`gis.network` reads and builds the graphs), with a KD-tree over the node
coordinates for snapping points onto the network. On it:

* :func:`multi_source_distances` / :func:`network_point_distances` — one
  multi-source Dijkstra giving every node (and every snapped point) its road
  distance to the nearest facility (service-area coverage, :mod:`gis.coverage`);
* :func:`nearest_by_network` — nearest destination by road from each source, snapping
  only onto the largest strongly connected component (tier linkage, :mod:`gis.linkage`);
* :func:`euclidean_distances` / :func:`nearest_euclidean` — the straight-line
  fallback when there is no road network or a point lies too far from it.

All distances are in metres in the network's metric CRS.

Examples
--------
A 3-node street (0 — 1 — 2, 100 m per block) and one facility at node 0:

>>> import numpy as np
>>> from gis.routing import NetworkCSR, multi_source_distances, network_point_distances
>>> net = NetworkCSR.from_edges(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]), np.full(4, 100.0),
...                             np.arange(3), np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0]]), "EPSG:4544")
>>> nodes = multi_source_distances(net, [[0.0, 5.0]], limit=500)
>>> nodes.distance.tolist()
[5.0, 105.0, 205.0]
>>> d, facility, snap = network_point_distances(net, nodes, [[190.0, 0.0]])
>>> float(d[0]), int(facility[0])
(215.0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyproj
import scipy.sparse as sp
import shapely
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree

from gis._errors import AnalysisError

if TYPE_CHECKING:  # networkx graphs are accepted, never built here: not imported at run time
    import networkx as nx

__all__ = [
    "NetworkCSR",
    "NodeDistances",
    "as_network",
    "euclidean_distances",
    "main_component",
    "multi_source_distances",
    "nearest_by_network",
    "nearest_euclidean",
    "network_point_distances",
    "pairs_within",
    "points_xy",
    "snap_to_nodes",
]


@dataclass
class NetworkCSR:
    """A road graph as a sparse adjacency matrix, for fast shortest paths.

    Attributes
    ----------
    matrix
        ``n × n`` CSR matrix; entry ``(i, j)`` is the weight (``length`` in metres
        by default) of the shortest edge ``i → j``. Explicit zeros are edges
        (scipy ≥ 1.11 :mod:`scipy.sparse.csgraph` semantics).
    node_ids
        Graph node id of each row.
    xy
        ``n × 2`` node coordinates in ``crs``.
    crs
        Metric CRS.
    weight
        The edge attribute the matrix holds.
    """

    matrix: sp.csr_matrix
    node_ids: npt.NDArray[Any]
    xy: npt.NDArray[np.float64]
    crs: pyproj.CRS
    weight: str = "length"
    _tree: cKDTree | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self.matrix.shape[0]

    @classmethod
    def from_graph(cls, G: nx.MultiDiGraph, weight: str = "length") -> NetworkCSR:
        """Export a graph; parallel edges keep their smallest ``weight``."""
        node_ids = np.array(list(G.nodes))
        index = {n: i for i, n in enumerate(node_ids)}
        xy = np.array([(d["x"], d["y"]) for _, d in G.nodes(data=True)], dtype=float)
        e = np.array([(index[u], index[v], w) for u, v, w in G.edges(data=weight)], dtype=float)
        if e.size == 0:
            raise AnalysisError("the road graph has no edges")
        if np.isnan(e[:, 2]).any():
            raise AnalysisError(f"some road edges have no '{weight}'")
        return cls.from_edges(e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 2], node_ids, xy,
                              pyproj.CRS(G.graph.get("crs")), weight)

    @classmethod
    def from_edges(
        cls,
        u: npt.NDArray[np.int64],
        v: npt.NDArray[np.int64],
        w: npt.NDArray[np.float64],
        node_ids: npt.NDArray[Any],
        xy: npt.NDArray[np.float64],
        crs: Any,
        weight: str = "length",
    ) -> NetworkCSR:
        """Build from edge arrays (row indices ``u``, ``v``, weights ``w``)."""
        n = len(node_ids)
        order = np.lexsort((w, v, u))
        u, v, w = u[order], v[order], w[order]
        firsts = np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])]
        mat = sp.csr_matrix((w[firsts], (u[firsts], v[firsts])), shape=(n, n))
        return cls(mat, np.asarray(node_ids), np.asarray(xy, float), pyproj.CRS(crs), weight)

    @property
    def tree(self) -> cKDTree:
        """KD-tree over the node coordinates (built once)."""
        if self._tree is None:
            self._tree = cKDTree(self.xy)
        return self._tree

    def snap(self, xy: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Nearest node (row index) of each point and the straight-line snap distance.

        ``xy`` is ``m × 2`` in the same metric CRS.
        """
        pts = np.asarray(xy, float).reshape(-1, 2)
        if len(pts) == 0:
            return np.empty(0, np.int64), np.empty(0, float)
        dist, idx = self.tree.query(pts)
        return idx.astype(np.int64), dist

    def transposed(self) -> sp.csr_matrix:
        """The reversed graph (``j → i`` for every ``i → j``), as CSR."""
        return self.matrix.T.tocsr()


def points_xy(geoms: gpd.GeoSeries | gpd.GeoDataFrame) -> npt.NDArray[np.float64]:
    """``m × 2`` coordinates of point geometries (centroids for anything else)."""
    gs = geoms.geometry if isinstance(geoms, gpd.GeoDataFrame) else geoms
    arr = gs.to_numpy()
    if len(arr) and not (gs.geom_type == "Point").all():
        arr = shapely.centroid(arr)
    return shapely.get_coordinates(arr).reshape(-1, 2)


@dataclass
class NodeDistances:
    """Distance of every network node to its nearest facility.

    Attributes
    ----------
    distance
        Metres from each node to the nearest facility (``inf`` beyond ``limit``
        or unreachable), including the facility's snap distance.
    facility
        Index (into the facility array) of that nearest facility, ``-1`` if none.
    limit
        The search limit used (metres).
    """

    distance: npt.NDArray[np.float64]
    facility: npt.NDArray[np.int64]
    limit: float


def multi_source_distances(
    net: NetworkCSR,
    facilities_xy: npt.ArrayLike,
    *,
    limit: float = np.inf,
    max_snap_m: float = np.inf,
    towards_facility: bool = True,
) -> NodeDistances:
    """One Dijkstra pass giving every node its distance to the nearest facility.

    A virtual super-source ``S`` gets an edge ``S → n_f`` of length ``s_f`` (the
    facility's snap distance) to every facility's nearest node; Dijkstra from ``S``
    with ``limit`` then labels each node with
    :math:`\\min_f (s_f + D(n_f, n))`. The nearest facility of each node is read
    off the shortest-path tree: the node's ancestor directly below ``S``
    (pointer jumping over the predecessor array, :math:`O(n \\log h)`).

    Parameters
    ----------
    net
        The road network.
    facilities_xy
        ``m × 2`` facility coordinates in ``net.crs``.
    limit
        Stop the search beyond this distance (the service standard).
    max_snap_m
        Facilities further than this from every node are ignored.
    towards_facility
        Measure resident → facility (reverse graph) rather than facility → resident;
        the two differ only on one-way streets.
    """
    fxy = np.asarray(facilities_xy, float).reshape(-1, 2)
    n = net.n
    dist = np.full(n, np.inf)
    fac = np.full(n, -1, np.int64)
    if len(fxy) == 0:
        return NodeDistances(dist, fac, float(limit))
    fnode, fsnap = net.snap(fxy)
    ok = fsnap <= max_snap_m
    if not ok.any():
        return NodeDistances(dist, fac, float(limit))
    fidx = np.flatnonzero(ok)
    # per node keep the facility with the smallest snap distance
    order = np.lexsort((fsnap[fidx], fnode[fidx]))
    fidx = fidx[order]
    first = np.r_[True, fnode[fidx][1:] != fnode[fidx][:-1]]
    fidx = fidx[first]
    A = net.transposed() if towards_facility else net.matrix
    S = n
    super_row = sp.csr_matrix(
        (fsnap[fidx], (np.zeros(len(fidx), np.int64), fnode[fidx])), shape=(1, n + 1)
    )
    G = sp.vstack([sp.hstack([A, sp.csr_matrix((n, 1))]), super_row], format="csr")
    d, pred = dijkstra(G, directed=True, indices=S, limit=limit, return_predecessors=True)
    d = d[:n]
    pred = pred[:n].astype(np.int64)
    reached = np.isfinite(d)
    # root facility node: the node whose predecessor is S
    anc = np.where(pred == S, np.arange(n), pred)
    anc = np.where(reached, anc, np.arange(n))
    for _ in range(64):
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        anc = nxt
    node_fac = np.full(n, -1, np.int64)
    node_fac[fnode[fidx]] = fidx
    fac = np.where(reached, node_fac[anc], -1)
    return NodeDistances(np.where(reached, d, np.inf), fac, float(limit))


def network_point_distances(
    net: NetworkCSR,
    nodes: NodeDistances,
    points: npt.ArrayLike,
    *,
    max_snap_m: float = np.inf,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Network distance of arbitrary points (snapped) to their nearest facility.

    Returns ``(distance, facility, snap)``: :math:`s_j + d(n_j)`, the facility
    index (-1 if none within the limit) and the snap distance :math:`s_j`.
    Points further than ``max_snap_m`` from the network get ``inf``.
    """
    node, snap = net.snap(points)
    d = snap + nodes.distance[node]
    f = nodes.facility[node].copy()
    bad = (snap > max_snap_m) | ~np.isfinite(d)
    d[bad] = np.inf
    f[bad] = -1
    return d, f, snap


def euclidean_distances(
    facilities_xy: npt.ArrayLike, points: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Straight-line distance of each point to its nearest facility and its index."""
    fxy = np.asarray(facilities_xy, float).reshape(-1, 2)
    pxy = np.asarray(points, float).reshape(-1, 2)
    if len(fxy) == 0:
        return np.full(len(pxy), np.inf), np.full(len(pxy), -1, np.int64)
    d, i = cKDTree(fxy).query(pxy)
    return d, i.astype(np.int64)


def as_network(graph: nx.MultiDiGraph | NetworkCSR, crs: Any) -> NetworkCSR:
    """The road graph as a :class:`gis.routing.NetworkCSR` in ``crs``."""
    net = graph if isinstance(graph, NetworkCSR) else NetworkCSR.from_graph(graph)
    if crs is not None and not pyproj.CRS.from_user_input(net.crs).equals(pyproj.CRS.from_user_input(crs)):
        raise AnalysisError(
            f"road graph CRS {pyproj.CRS.from_user_input(net.crs).to_string()} differs from the sites' "
            f"{pyproj.CRS.from_user_input(crs).to_string()}; load it with gis.network.load_graph(..., crs=district.crs)"
        )
    return net


def nearest_euclidean(src: np.ndarray, dst: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest ``dst`` for each ``src`` within ``limit`` (-1 if none), distance."""
    idx = np.full(len(src), -1, dtype=np.int64)
    dist = np.full(len(src), np.nan)
    if len(src) and len(dst):
        tree = shapely.STRtree(dst)
        (si, ti), d = tree.query_nearest(src, max_distance=limit, return_distance=True, all_matches=False)
        idx[si] = ti
        dist[si] = d
    return idx, dist


def main_component(net: NetworkCSR) -> np.ndarray:
    """Row indices of the largest strongly connected component of the road graph.

    Sites snap only onto it, so that every snapped pair is mutually reachable (a
    site snapped onto a dead-end one-way fragment or an isolated service road would
    otherwise look unreachable from everywhere).
    """
    _, labels = connected_components(net.matrix, directed=True, connection="strong")
    return np.flatnonzero(labels == np.bincount(labels).argmax())


def snap_to_nodes(nodes: np.ndarray, xy: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of ``nodes`` (row indices into ``xy``) for each point, and the distance."""
    if not len(pts):
        return np.empty(0, np.int64), np.empty(0, float)
    d, i = cKDTree(xy[nodes]).query(pts)
    return nodes[i].astype(np.int64), d


def nearest_by_network(
    src: np.ndarray,
    dst: np.ndarray,
    limit: float,
    net: NetworkCSR,
    snap_max: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest ``dst`` by road distance (one multi-source Dijkstra from all ``dst``).

    Runs :func:`scipy.sparse.csgraph.dijkstra` with ``min_only=True`` on the reversed
    graph from the stations' nodes, so that one pass gives, for every node, the road
    distance *to* its nearest station honouring one-way streets, and which station.
    Distance = snap(src) + network(src node → dst node) + snap(dst), snapping onto
    the largest strongly connected component. Points and stations further than
    ``snap_max`` from it are not routed (``routed`` False) and fall back to
    straight-line distance in the caller. Returns (station index or -1, distance,
    routed mask of ``src``, routable mask of ``dst``).
    """
    main = main_component(net)
    s_node, s_snap = snap_to_nodes(main, net.xy, shapely.get_coordinates(src))
    d_node, d_snap = snap_to_nodes(main, net.xy, shapely.get_coordinates(dst))
    idx = np.full(len(src), -1, dtype=np.int64)
    dist = np.full(len(src), np.nan)
    routed = s_snap <= snap_max
    dst_ok = d_snap <= snap_max
    ok_dst = np.flatnonzero(dst_ok)
    if not len(ok_dst) or not routed.any():
        return idx, dist, routed & False, dst_ok
    # one station per node (the one nearest to the node wins the node)
    order = np.lexsort((d_snap[ok_dst], d_node[ok_dst]))
    ok_sorted = ok_dst[order]
    keep = np.r_[True, d_node[ok_sorted][1:] != d_node[ok_sorted][:-1]]
    sources = ok_sorted[keep]
    node_to_dst = np.full(net.n, -1, dtype=np.int64)
    node_to_dst[d_node[sources]] = sources
    dn, _pred, src_node = dijkstra(
        net.transposed(), directed=True, indices=d_node[sources], limit=limit,
        min_only=True, return_predecessors=True,
    )
    at = s_node[routed]
    nd = dn[at]
    reach = np.isfinite(nd) & (src_node[at] >= 0)
    ri = np.flatnonzero(routed)[reach]
    station = node_to_dst[src_node[at][reach]]
    total = s_snap[ri] + nd[reach] + d_snap[station]
    within = total <= limit
    idx[ri[within]] = station[within]
    dist[ri[within]] = total[within]
    return idx, dist, routed, dst_ok


def pairs_within(
    src_xy: npt.ArrayLike,
    dst_xy: npt.ArrayLike,
    limit: float,
    *,
    network: NetworkCSR | None = None,
    max_snap_m: float = np.inf,
    batch: int = 256,
    with_distance: bool = False,
) -> tuple[npt.NDArray[np.int64], ...]:
    r"""Every (source, destination) pair within ``limit`` metres (a sparse "who reaches whom").

    Euclidean (``network=None``): :math:`\lVert x_j - y_i \rVert \le L` (KD-tree
    ``sparse_distance_matrix``, co-located pairs included). Network: the snapped
    network distance of :func:`multi_source_distances`,
    :math:`s_j + D(n_j \to n_i) + s_i \le L` (:math:`s` snap distances, :math:`D`
    shortest path), from a bounded Dijkstra per batch of source nodes on the
    reversed graph; points snapped farther than ``max_snap_m`` reach nothing.

    Returns
    -------
    (rows, cols) or, ``with_distance``, (rows, cols, distances)
        Source and destination indices of each pair (a pair may repeat in the Euclidean
        case), and its distance in metres: thresholding these at :math:`r \le L` gives
        the pairs within :math:`r` (a radius change is a threshold, not a new search).
    """
    sxy = np.asarray(src_xy, float).reshape(-1, 2)
    dxy = np.asarray(dst_xy, float).reshape(-1, 2)
    empty = np.empty(0, np.int64)
    if len(sxy) == 0 or len(dxy) == 0:
        return (empty, empty.copy(), np.empty(0)) if with_distance else (empty, empty.copy())
    L = float(limit)
    if network is None:
        m = cKDTree(sxy).sparse_distance_matrix(cKDTree(dxy), L, output_type="coo_matrix")
        z = cKDTree(sxy).query_ball_tree(cKDTree(dxy), 0.0)  # sparse_distance_matrix drops exact zeros
        zr = np.repeat(np.arange(len(sxy)), [len(v) for v in z])
        zc = np.fromiter((j for v in z for j in v), np.int64, count=len(zr))
        out = np.r_[m.row, zr].astype(np.int64), np.r_[m.col, zc].astype(np.int64), np.r_[m.data, np.zeros(len(zr))]
    else:
        out = _network_pairs(network, sxy, dxy, L, max_snap_m, batch)
    return out if with_distance else out[:2]


def _network_pairs(network: NetworkCSR, sxy: np.ndarray, dxy: np.ndarray, L: float, max_snap_m: float,
                   batch: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Network case of :func:`pairs_within` (rows, cols, distances)."""
    cnode, csnap = network.snap(sxy)
    dnode, dsnap = network.snap(dxy)
    order = np.argsort(dnode, kind="stable")
    order = order[(dsnap <= max_snap_m)[order]]
    node_ptr = np.r_[0, np.cumsum(np.bincount(dnode[order], minlength=network.n))]  # node -> destinations
    R = network.transposed()
    rows_out: list[npt.NDArray[np.int64]] = []
    cols_out: list[npt.NDArray[np.int64]] = []
    dist_out: list[npt.NDArray[np.float64]] = []
    valid = np.flatnonzero(csnap <= min(max_snap_m, L))
    for start in range(0, len(valid), batch):
        ci = valid[start : start + batch]
        un, inv = np.unique(cnode[ci], return_inverse=True)
        dist = dijkstra(R, directed=True, indices=un, limit=L)[inv] + csnap[ci][:, None]
        r, nidx = np.nonzero(dist <= L)
        cnt = node_ptr[nidx + 1] - node_ptr[nidx]
        rr = np.repeat(r, cnt)
        offs = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        dem = order[np.repeat(node_ptr[nidx], cnt) + offs]
        d = np.repeat(dist[r, nidx], cnt) + dsnap[dem]
        keep = d <= L
        rows_out.append(ci[rr[keep]])
        cols_out.append(dem[keep])
        dist_out.append(d[keep])
    if not rows_out:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    return (np.concatenate(rows_out).astype(np.int64), np.concatenate(cols_out).astype(np.int64),
            np.concatenate(dist_out))
