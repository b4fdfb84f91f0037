"""The ``scan`` detector per partition (分区聚集区): the whole run's clusters from rectangular tiles.

:func:`gis.hotspots.find_clusters` clusters each incident kind at once. Here the same
detector (scan cores, quick shift, space-time mixture per group of cores, significance)
runs on incidents split into tiles, each task reading its own incidents plus a *halo*
of its neighbours' — and gives the same labels and significance, because every step
is given what it looks at:

1. **cores** (:func:`tile_cores`): an incident's core p-value counts the incidents within
   the background annulus (``scan.annulus_m``; the counting discs ``scan.radii_m`` lie
   inside it) and its kernel density those within 3 × ``bandwidth_m``: halo = the larger;
2. **links** (:func:`tile_links`): a core's quick-shift parent is its nearest denser core
   within ``link_m`` (density ties broken by its rank among all cores, :func:`rank_in`), its
   group the cores within ``merge_link_m``: halo of cores = the larger (:func:`link_halo`),
   read from the neighbours' cores. Each tile follows its cores' parents while they stay
   inside it and finds its *local groups* (components of the cores it sees); it sends the
   join (:func:`join_links`) only the ends of its *border* cores (those another tile's core
   can point to) and the local groups with their border and halo cores. The join follows the
   ends from tile to tile to the roots, and joins the local groups that share a core (as
   :func:`gis.partitioned.db_assemble` joins DBSCAN's); :func:`label_cores` gives every core
   its root and group;
3. **peaks** (:func:`tile_peaks`): the background at each quick-shift root (halo = annulus);
   the roots and their backgrounds (a few per site) go to every fitting tile;
4. **fits** (:func:`tile_fits`): each group of cores is fitted once, by the tile holding its
   lowest core (:func:`owned_groups`), with every incident whose nearest core (within
   ``attach_m``) is in it — incidents and labelled cores read within 2 × ``attach_m`` of the
   box of the group's cores, whatever its size (a group can span several tiles);
5. **numbering** (:func:`number_clusters`): the clusters' (group, place, size, spread) rows
   give the whole run's labels (small ones dropped, dispersed ones flagged);
6. **significance** (:func:`tile_significance`): each cluster's disc and annulus, read
   around its centre with the clustered flags of the incidents there; the BH step runs
   once over all clusters (:func:`gis.cluster_scan.flag_significant`).

What passes between the steps is a few rows per border core, per group, per site or per
cluster; no tile holds another's incidents or cores beyond its halo (the fitting tile's
halo is its groups' extent). Incidents are identified by their position in the whole run's
order (``gid``): sums are taken in that order and ties broken by it, so the floating-point
results are the whole run's (``tests/test_cluster_tiles.py`` compares labels, significance
and outlines on grids that cut clusters; ``benchmarks/bench_cluster_tiles.py`` on the city).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis._errors import AnalysisError
from gis.cluster_batch import select_many, select_moved
from gis.cluster_mixture import group_inputs, labels_of_sites
from gis.cluster_scan import (
    ScanParams,
    SignificanceParams,
    _expected_counts,
    core_pvalues,
    flag_significant,
    kernel_weights_at,
    poisson_sf,
    sector_background,
    shift_parents,
)


@dataclass
class Points:
    """Incidents of one kind read by a tile: global ids (ascending), coordinates, days."""

    gid: np.ndarray
    xy: np.ndarray
    days: np.ndarray


class Source(Protocol):
    """Where a tile reads incidents: its own, or those of every tile within a halo of a box."""

    boxes: np.ndarray

    def own(self, t: int) -> Points:
        """Tile ``t``'s incidents."""

    def near(self, box: np.ndarray, halo: float) -> Points:
        """The incidents (of all tiles) within ``halo`` of ``box`` (x0, y0, x1, y1)."""


def in_box(xy: np.ndarray, box: np.ndarray, halo: float) -> np.ndarray:
    """Points within ``halo`` of ``box`` (x0, y0, x1, y1), the grown box's edges included (as :func:`gis.partitioned.read`)."""
    return (xy[:, 0] >= box[0] - halo) & (xy[:, 0] <= box[2] + halo) & (xy[:, 1] >= box[1] - halo) & (xy[:, 1] <= box[3] + halo)


def boxes_within(boxes: np.ndarray, box: np.ndarray, halo: float) -> np.ndarray:
    """Which of ``boxes`` (rows x0, y0, x1, y1) come within ``halo`` of ``box`` (edges touching included)."""
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return (b[:, 0] <= box[2] + halo) & (b[:, 2] >= box[0] - halo) & (b[:, 1] <= box[3] + halo) & (b[:, 3] >= box[1] - halo)


def box_of(xy: np.ndarray) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of points."""
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]) if len(xy) else np.array([np.inf, np.inf, -np.inf, -np.inf])


@dataclass
class ArrayTiles:
    """In-memory tiles of one kind: the incidents in the whole run's order and the tile of each.

    :meth:`near` reads, from each tile whose box comes within the halo, its incidents inside
    the grown box (as :func:`gis.partitioned.read` reads a neighbour's Parquet file).
    """

    xy: np.ndarray
    days: np.ndarray
    tile: np.ndarray
    boxes: np.ndarray

    def _points(self, idx: np.ndarray) -> Points:
        idx = np.sort(idx)
        return Points(idx.astype(np.int64), self.xy[idx], self.days[idx])

    def own(self, t: int) -> Points:
        return self._points(np.flatnonzero(self.tile == t))

    def near(self, box: np.ndarray, halo: float) -> Points:
        parts = [np.flatnonzero(self.tile == t) for t in np.flatnonzero(boxes_within(self.boxes, box, halo))]
        idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return self._points(idx[in_box(self.xy[idx], box, halo)])


def grid_tiles(xy: np.ndarray, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile of each point on an ``nx × ny`` grid of equal rectangles over the points' box, and the tiles' boxes."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    ix = np.minimum(((xy[:, 0] - lo[0]) / max(hi[0] - lo[0], 1e-9) * nx).astype(np.int64), nx - 1)
    iy = np.minimum(((xy[:, 1] - lo[1]) / max(hi[1] - lo[1], 1e-9) * ny).astype(np.int64), ny - 1)
    tile = iy * nx + ix
    boxes = np.array([box_of(xy[tile == t]) for t in range(nx * ny)])
    return tile, boxes


# ============================================================ 1. cores


@dataclass
class Cores:
    """Cores (of a tile, or read from several): gid, coordinates, kernel density; once joined also the root
    core's gid and the group (ranked by its lowest core). Always in gid order."""

    gid: np.ndarray
    xy: np.ndarray
    rho: np.ndarray
    root: np.ndarray | None = None
    group: np.ndarray | None = None

    def take(self, m: np.ndarray) -> "Cores":
        """The cores selected by ``m``."""
        pick = [None if a is None else a[m] for a in (self.root, self.group)]
        return Cores(self.gid[m], self.xy[m], self.rho[m], *pick)


def concat_cores(pieces: list[Cores]) -> Cores:
    """Cores of several tiles in gid order."""
    pieces = [c for c in pieces if len(c.gid)]
    if not pieces:
        return Cores(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    gid = np.concatenate([c.gid for c in pieces])
    o = np.argsort(gid, kind="stable")
    cat = [None if any(getattr(c, f) is None for c in pieces) else np.concatenate([getattr(c, f) for c in pieces])[o]
           for f in ("root", "group")]  # fmt: skip
    return Cores(gid[o], np.vstack([c.xy for c in pieces])[o], np.concatenate([c.rho for c in pieces])[o], *cat)


def core_halo(p: ScanParams) -> float:
    """Distance within which an incident's core status and density look: the annulus, the discs, 3 bandwidths."""
    return max(p.annulus_m[1], max(p.radii_m), 3.0 * p.bandwidth_m)


def tile_cores(src: Source, t: int, p: ScanParams) -> Cores:
    """Tile ``t``'s cores: own incidents with :func:`gis.cluster_scan.core_pvalues` ≤ ``core_p``, with their density."""
    own = src.own(t)
    if len(own.gid) == 0:
        return Cores(own.gid, own.xy, np.zeros(0))
    ctx = src.near(src.boxes[t], core_halo(p))
    at = np.searchsorted(ctx.gid, own.gid)
    core = at[core_pvalues(ctx.xy, p, at) <= p.core_p]
    return Cores(ctx.gid[core], ctx.xy[core], kernel_weights_at(ctx.xy[core], ctx.xy, p.bandwidth_m))


def rank_in(pieces_gid: list[np.ndarray], gid: np.ndarray) -> np.ndarray:
    """Rank of each ``gid`` among all cores (each tile's core gids, sorted): the index the whole run gives the
    core (quick shift breaks density ties by it). Tiles holding consecutive gids (a municipality's partitions)
    need only the counts of the tiles before (:func:`gis.partitioned.sc_links`)."""
    return np.sum([np.searchsorted(g, gid) for g in pieces_gid], axis=0).astype(np.int64) if len(gid) else gid


def link_halo(p: ScanParams) -> float:
    """Distance within which a core's quick-shift parent and its group's links lie."""
    return max(p.link_m, p.merge_link_m)


# ============================================================ 2. links and the join


def _near_other(xy: np.ndarray, others: np.ndarray, d: float) -> np.ndarray:
    """Points within ``d`` of any of the boxes ``others``."""
    out = np.zeros(len(xy), bool)
    for b in others:
        out |= in_box(xy, b, d)
    return out


def _ends(parent: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Each core's last step inside the tile: parents followed while they are own cores (a root: itself)."""
    step = np.where(own, parent, np.arange(len(parent)))
    for _ in range(64):
        nxt = step[step]
        if np.array_equal(nxt, step):
            break
        step = nxt
    return step


def tile_links(t: int, own: Cores, halo: Cores, rank: np.ndarray, others: np.ndarray, p: ScanParams) -> dict[str, object]:
    """Quick-shift parents and local groups of tile ``t``'s cores, compressed to what crosses its border.

    ``halo``: the other tiles' cores within :func:`link_halo` of the tile; ``rank``: the rank of each core of
    ``own`` then ``halo`` (:func:`rank_in`); ``others``: the other tiles' boxes. Per own core: ``end`` (its
    parents followed inside the tile: its root, or the first core of another tile) and ``node`` (``t``·2³² +
    its component among the cores seen within ``merge_link_m``). For the join: ``ends`` of the own cores
    within ``link_m`` of another tile (the only ones another tile's parent can be), ``seen`` (gid, node) of
    the halo cores and of the own cores within ``merge_link_m`` of another tile, ``nodes`` (node, lowest gid).
    """
    ctx = concat_cores([own, halo])
    rk = rank[np.argsort(np.concatenate([own.gid, halo.gid]), kind="stable")]
    mine = np.isin(ctx.gid, own.gid)
    at = np.flatnonzero(mine)
    parent = np.arange(len(ctx.gid))
    if len(at):
        parent[at] = shift_parents(ctx.xy, ctx.rho, p.link_m, p.neighbours, rk, at)
    end = _ends(parent, mine)
    pairs = cKDTree(ctx.xy).query_pairs(p.merge_link_m, output_type="ndarray") if len(ctx.gid) else np.zeros((0, 2), np.int64)
    m = len(ctx.gid)
    comp = connected_components(sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m)), directed=False)[1]
    node = (np.int64(t) << 32) + comp
    with_own = np.isin(comp, comp[mine])
    border = mine & _near_other(ctx.xy, others, p.link_m)
    seen = with_own & (~mine | _near_other(ctx.xy, others, p.merge_link_m))
    nodes = pd.DataFrame({"node": node[mine], "low": ctx.gid[mine], "x0": ctx.xy[mine, 0], "y0": ctx.xy[mine, 1],
                          "x1": ctx.xy[mine, 0], "y1": ctx.xy[mine, 1]}).groupby("node").agg(_BOX_AGG).reset_index()
    return {"gid": ctx.gid[mine], "xy": ctx.xy[mine], "rho": ctx.rho[mine], "end": ctx.gid[end[mine]],
            "end_root": mine[end[mine]], "node": node[mine],
            "ends": pd.DataFrame({"gid": ctx.gid[border], "end": ctx.gid[end[border]], "root": mine[end[border]]}),
            "seen": pd.DataFrame({"gid": ctx.gid[seen], "node": node[seen]}), "nodes": nodes}  # fmt: skip


#: How a group's lowest core and box are reduced from its local groups' (:func:`tile_links`, :func:`join_links`).
_BOX_AGG = {"low": "min", "x0": "min", "y0": "min", "x1": "max", "y1": "max"}


def exchange(links: dict[str, object]) -> dict[str, object]:
    """What a tile's :func:`tile_links` sends to the join (a few rows per border core and per local group)."""
    return {k: links[k] for k in ("ends", "seen", "nodes")}


def join_links(parts: list[dict[str, object]]) -> dict[str, pd.Series]:
    """The join: roots of the border cores and the group of each local group (as :func:`gis.partitioned.db_assemble`).

    ``roots``: a border core's root, its ends followed from tile to tile; local groups sharing a core are one
    group, numbered by the rank of its lowest core (the order of :func:`gis.cluster_mixture.core_groups`).
    """
    ends = pd.concat([x["ends"] for x in parts], ignore_index=True)  # type: ignore[call-overload]
    index = pd.Index(ends["gid"].to_numpy(np.int64))
    r, d = ends["end"].to_numpy(np.int64).copy(), ends["root"].to_numpy(bool).copy()
    for _ in range(64):  # pointer jumping over the tiles' ends: depth halves each round
        if d.all():
            break
        j = index.get_indexer(r[~d])
        if (j < 0).any():
            raise AnalysisError("clusters per partition: a core's parent lies outside every tile's border table")
        r[~d], d[~d] = r[j], d[j]
    if not d.all():
        raise AnalysisError("clusters per partition: a chain of quick-shift parents did not end in a root")
    root = pd.Series(r, index=index)
    nodes = pd.concat([x["nodes"] for x in parts], ignore_index=True)  # type: ignore[call-overload]
    seen = pd.concat([x["seen"] for x in parts], ignore_index=True).sort_values(["gid", "node"])  # type: ignore[call-overload]
    ids = nodes["node"].to_numpy(np.int64)
    o = np.argsort(ids)
    ids = ids[o]
    s_gid, s_node = seen["gid"].to_numpy(), np.searchsorted(ids, seen["node"].to_numpy(np.int64))
    same = np.flatnonzero(s_gid[1:] == s_gid[:-1])
    k = len(ids)
    comp = connected_components(sparse.coo_matrix((np.ones(len(same)), (s_node[same], s_node[same + 1])), shape=(k, k)), directed=False)[1]
    groups = nodes.iloc[o].drop(columns="node").groupby(comp).agg(_BOX_AGG).sort_values("low").reset_index(drop=True)
    first = nodes.iloc[o]["low"].groupby(comp).min().sort_values()
    rank = pd.Series(np.arange(len(first)), index=first.index)
    return {"roots": root, "group": pd.Series(rank.reindex(comp).to_numpy(np.int64), index=ids), "groups": groups}


def label_cores(links: dict[str, object], joined: dict[str, pd.Series]) -> Cores:
    """A tile's own cores with their root (gid) and group (:func:`join_links`)."""
    end, is_root = np.asarray(links["end"]), np.asarray(links["end_root"], bool)
    root = end.copy()
    if (~is_root).any():
        root[~is_root] = joined["roots"].reindex(end[~is_root]).to_numpy(np.int64)
    group = joined["group"].reindex(np.asarray(links["node"])).to_numpy(np.int64)
    return Cores(np.asarray(links["gid"]), np.asarray(links["xy"]), np.asarray(links["rho"]), root, group)


# ============================================================ 3. peaks


def tile_peaks(src: Source, own: Cores, p: ScanParams) -> Cores:
    """The quick-shift roots among a tile's cores ``own`` with their starting background (``rho``: per m², floored).

    The sector-median density of the annulus (:func:`gis.cluster_scan.sector_background`), halo = the annulus.
    """
    assert own.root is not None and p.mixture is not None
    peak = own.root == own.gid
    if not peak.any():
        return Cores(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    ctx = src.near(box_of(own.xy[peak]), p.annulus_m[1])
    lam = sector_background(ctx.xy, own.xy[peak], p.annulus_m, p.mixture.sectors)
    return Cores(own.gid[peak], own.xy[peak], np.maximum(lam, p.min_background / 1e6))


# ============================================================ 4. fits


@dataclass
class Fitted:
    """The clusters a tile fitted: per member its gid, group and place (the site's cluster in the group), and per
    cluster (group, place) its size and spread (median member distance from the coordinate-wise median)."""

    gid: np.ndarray
    xy: np.ndarray
    group: np.ndarray
    place: np.ndarray
    table: pd.DataFrame


def _groups_in(x: np.ndarray, core: np.ndarray, group: np.ndarray, attach_m: float) -> np.ndarray:
    """Group labels, in order, of the groups :func:`gis.cluster_mixture.group_inputs` returns."""
    d, nearest = cKDTree(x[core, :2]).query(x[:, :2], k=1, distance_upper_bound=attach_m)
    return np.unique(group[nearest[np.isfinite(d)]])


def tile_fits(src: Source, owned: np.ndarray, cores: Cores, peaks: Cores, p: ScanParams) -> Fitted:
    """Fit the groups ``owned`` (those whose lowest core is the tile's) with all their incidents.

    Reads the incidents within 2 × ``attach_m`` of the groups' cores' box: every incident whose nearest
    core (within ``attach_m``) is in a group, and that core. ``peaks``: every quick-shift root with its
    background (``rho``). Fitted as :func:`gis.cluster_batch.batched_mixture_labels`.
    """
    mp = p.mixture
    if len(owned) == 0 or len(cores.gid) == 0:
        e = np.zeros(0, np.int64)
        return Fitted(e, np.zeros((0, 2)), e, e, pd.DataFrame(columns=["group", "place", "n", "spread"]))
    assert mp is not None and cores.group is not None and cores.root is not None
    sel = np.isin(cores.group, owned)
    box = box_of(cores.xy[sel])
    pts = src.near(box, 2 * p.attach_m)
    local = cores.take(in_box(cores.xy, box, 2 * p.attach_m))
    core = np.searchsorted(pts.gid, local.gid)
    _, at = cKDTree(peaks.xy).query(pts.xy, k=1)
    x = np.column_stack([pts.xy, pts.days]) if mp.time else pts.xy
    assert local.group is not None and local.root is not None
    groups = group_inputs(x, core, local.root, local.group, np.log(peaks.rho[at]), p.attach_m, mp)
    keep = np.isin(_groups_in(x, core, local.group, p.attach_m), owned)
    groups = [g for g, k in zip(groups, keep) if k]
    labels = _groups_in(x, core, local.group, p.attach_m)[keep]
    select = select_moved if mp.propose == "moved" else select_many
    sites = select(groups)
    out_g, out_p, out_l = [], [], []
    for g, s, lab in zip(groups, sites, labels):
        place = labels_of_sites(len(x), [g], [s], mp)[g.idx]
        m = place >= 0
        out_g.append(pts.gid[g.idx[m]])
        out_p.append(place[m])
        out_l.append(np.full(int(m.sum()), lab, dtype=np.int64))
    gid, place, group = (np.concatenate(a) if a else np.zeros(0, np.int64) for a in (out_g, out_p, out_l))
    at_gid = np.searchsorted(pts.gid, gid)
    return Fitted(gid, pts.xy[at_gid], group, place, _cluster_table(pts.xy[at_gid], group, place))


def _cluster_table(xy: np.ndarray, group: np.ndarray, place: np.ndarray) -> pd.DataFrame:
    """Per (group, place): members and spread (as :func:`gis.hotspots.drop_dispersed` measures it)."""
    df = pd.DataFrame({"group": group, "place": place, "x": xy[:, 0], "y": xy[:, 1]})
    centre = df.groupby(["group", "place"])[["x", "y"]].transform("median")
    df["d"] = np.hypot(df["x"] - centre["x"], df["y"] - centre["y"])
    return df.groupby(["group", "place"]).agg(n=("d", "size"), spread=("d", "median")).reset_index()


def number_clusters(table: pd.DataFrame, min_size: int, max_spread_m: float | None) -> pd.DataFrame:
    """Whole-run label of each cluster of one kind (−1 dropped), as :func:`gis.cluster_scan.scan_labels` then
    :func:`gis.hotspots.drop_dispersed` number them: clusters of ``min_size`` members or more in (group, place)
    order, then those spread over more than ``max_spread_m`` set to −1 (the others keep their numbers)."""
    t = table.sort_values(["group", "place"], kind="stable").reset_index(drop=True)
    big = t["n"].to_numpy() >= min_size
    label = np.full(len(t), -1, dtype=np.int64)
    label[big] = np.arange(int(big.sum()))
    if max_spread_m is not None:
        label[t["spread"].to_numpy() > max_spread_m] = -1
    return t.assign(label=label)


# ============================================================ 5. significance


def kind_window(hulls: list[np.ndarray]) -> object:
    """The observation window of :func:`gis.cluster_scan.cluster_pvalues`: the convex hull of the kind's
    incidents (here of the tiles' hull vertices), grown by 1 m."""
    pts = np.vstack([h for h in hulls if len(h)])
    return shapely.convex_hull(shapely.multipoints(pts)).buffer(1.0)


def tile_hull(src: Source, t: int) -> np.ndarray:
    """Vertices of the convex hull of tile ``t``'s incidents."""
    xy = src.own(t).xy
    if len(xy) == 0:
        return np.zeros((0, 2))
    return shapely.get_coordinates(shapely.convex_hull(shapely.multipoints(xy)))


def tile_significance(
    src: Source, members: pd.DataFrame, clustered: np.ndarray, sp: SignificanceParams, window: object
) -> pd.DataFrame:
    """Observed vs expected count and p-value of the clusters whose ``members`` (gid, x, y, label) a tile holds.

    As :func:`gis.cluster_scan.cluster_pvalues`: the disc and annulus around each centre are read with a
    halo (the annulus, or the disc when larger); ``clustered``: sorted gids of every clustered incident of
    the kind (the ``unclustered`` background leaves them out). Indexed by label, with ``disc_radius_m``.
    """
    if sp.controls:
        raise AnalysisError("clusters per partition: significance.controls is not supported")
    cols = ["observed", "expected", "ratio", "p_value", "disc_radius_m"]
    if len(members) == 0:
        return pd.DataFrame(columns=cols)
    df = members.rename(columns={"label": "l"})
    centre = df.groupby("l")[["x", "y"]].median()
    codes = centre.index.get_indexer(df["l"])
    c_xy = centre.to_numpy()
    dist = np.hypot(*(df[["x", "y"]].to_numpy() - c_xy[codes]).T)
    sigma = pd.Series(dist).groupby(codes).median().to_numpy() / np.sqrt(2 * np.log(2))
    rho = np.maximum(sp.radius_sigmas * sigma, sp.min_radius_m)
    ctx = src.near(box_of(c_xy), max(sp.annulus_m[1], float(rho.max())))
    observed = np.asarray(cKDTree(ctx.xy).query_ball_point(c_xy, rho, return_length=True), dtype=float)
    inside = np.flatnonzero(np.isin(ctx.gid, clustered))
    expected = _expected_counts(ctx.xy, inside, c_xy, rho, sp, window, None)
    return pd.DataFrame(
        {"observed": observed.astype(int), "expected": expected, "ratio": observed / np.maximum(expected, 1e-12),
         "p_value": poisson_sf(observed - 1, expected), "disc_radius_m": rho},
        index=centre.index,
    )  # fmt: skip


def search_windows(tables: pd.DataFrame, window: object, sp: SignificanceParams) -> float:
    """Places looked at in one kind (:func:`gis.cluster_scan.cluster_pvalues`'s second value)."""
    rho = tables.sort_index()["disc_radius_m"].to_numpy(dtype=float)
    return float(window.area / (np.pi * float(np.mean(rho)) ** 2)) * sp.window_overlap  # type: ignore[attr-defined]


# ============================================================ the steps in order


@dataclass
class KindRun:
    """One kind's clusters from its tiles: members (gid, x, y, label ≥ 0) and each tile's members."""

    members: pd.DataFrame
    per_tile: list[pd.DataFrame]


def cluster_kind(src: Source, p: ScanParams, min_size: int, max_spread_m: float | None) -> KindRun:
    """Steps 1–4 for one kind, each tile's task in turn: a tile reads its incidents and halo from ``src``, the
    other tiles' cores within its halo, and from the joins only rows per border core, group and cluster."""
    n, h = len(src.boxes), link_halo(p)
    owns = [src.own(t).gid for t in range(n)]
    pieces = [tile_cores(src, t, p) for t in range(n)]
    empty = KindRun(pd.DataFrame(columns=["gid", "x", "y", "label"]), [])
    if sum(len(c.gid) for c in pieces) == 0:
        return empty
    gids = [c.gid for c in pieces]
    links = []
    for t in range(n):
        halo = concat_cores([c.take(in_box(c.xy, src.boxes[t], h)) for j, c in enumerate(pieces) if j != t])
        rank = rank_in(gids, np.concatenate([pieces[t].gid, halo.gid]))
        links.append(tile_links(t, pieces[t], halo, rank, np.delete(src.boxes, t, axis=0), p))
    joined = join_links([exchange(x) for x in links])
    labelled = [label_cores(x, joined) for x in links]
    peaks = concat_cores([tile_peaks(src, c, p) for c in labelled])
    fits = []
    for t in range(n):
        owned, box = owned_groups(joined, owns[t])
        near = concat_cores([c.take(in_box(c.xy, box, 2 * p.attach_m)) for c in labelled]) if len(owned) else labelled[t]
        fits.append(tile_fits(src, owned, near, peaks, p))
    table = pd.concat([f.table for f in fits if len(f.table)], ignore_index=True) if any(len(f.table) for f in fits) else None
    if table is None:
        return empty
    numbered = number_clusters(table, min_size, max_spread_m).set_index(["group", "place"])["label"]
    per_tile = []
    for f in fits:
        lab = numbered.reindex(pd.MultiIndex.from_arrays([f.group, f.place])).to_numpy(np.int64) if len(f.gid) else np.zeros(0, np.int64)
        m = lab >= 0
        per_tile.append(pd.DataFrame({"gid": f.gid[m], "x": f.xy[m, 0], "y": f.xy[m, 1], "label": lab[m]}))
    members = pd.concat(per_tile, ignore_index=True).sort_values("gid", kind="stable").reset_index(drop=True)
    return KindRun(members, per_tile)


def owned_groups(joined: dict[str, pd.Series], own_gid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups a tile fits (those whose lowest core is among its incidents ``own_gid``) and their cores' box."""
    g = joined["groups"]
    mine = np.isin(g["low"].to_numpy(np.int64), own_gid)
    owned = g.index[mine].to_numpy(np.int64)
    if not mine.any():
        return owned, box_of(np.zeros((0, 2)))
    b = g[mine]
    return owned, np.array([b["x0"].min(), b["y0"].min(), b["x1"].max(), b["y1"].max()], dtype=float)


def tiled_label_groups(
    xy: np.ndarray, kinds: np.ndarray, days: np.ndarray, tile: np.ndarray, boxes: np.ndarray, p: ScanParams,
    sp: SignificanceParams, max_spread_m: float | None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Labels and significance of :func:`gis.hotspots.find_clusters`'s ``scan`` run (grouped by ``kinds``), per tile.

    Each kind is clustered from its tiles (:func:`cluster_kind`), numbered after the kinds before it; each
    cluster's significance is computed by the tile holding its members (:func:`tile_significance`); the BH
    step runs over every cluster with the places looked at of every kind. Returns the labels (−1 noise)
    and the table of :func:`gis.cluster_scan.flag_significant` indexed by label.
    """
    labels = np.full(len(xy), -1, dtype=np.int64)
    runs, next_id = [], 0
    for g in pd.unique(kinds):
        sel = np.flatnonzero(kinds == g)
        if len(sel) <= p.min_cluster_size:
            continue
        src = ArrayTiles(xy[sel], days[sel], tile[sel], boxes)
        run = cluster_kind(src, p, p.min_cluster_size, max_spread_m)
        if len(run.members):
            labels[sel[run.members["gid"].to_numpy(np.int64)]] = run.members["label"].to_numpy(np.int64) + next_id
            for m in run.per_tile:
                m["label"] += next_id
            next_id += int(run.members["label"].max()) + 1
            runs.append((int(sel[run.members["gid"].iloc[0]]), src, sel, run))
    tables, windows = [], 0.0
    for _, src, sel, run in sorted(runs, key=lambda r: r[0]):  # kinds in the order of their first member
        window = kind_window([tile_hull(src, t) for t in range(len(boxes))])
        clustered = run.members["gid"].to_numpy(np.int64)
        kt = pd.concat([tile_significance(src, m, clustered, sp, window) for m in run.per_tile if len(m)])
        tables.append(kt)
        windows += search_windows(kt, window, sp)
    sig = pd.concat(tables) if tables else pd.DataFrame(columns=["p_value"], dtype=float)
    return labels, flag_significant(sig, windows, sp.alpha)


def by_lowest(gid: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Cluster labels renumbered 0, 1, … by each cluster's lowest gid (−1 stays): the numbering of the
    municipal clusters (as :func:`gis.partitioned.db_assemble`'s), whatever the kinds' order."""
    out = np.full(len(label), -1, dtype=np.int64)
    ok = label >= 0
    if ok.any():
        low = pd.Series(gid[ok]).groupby(label[ok]).min().sort_values(kind="stable")
        out[ok] = pd.Series(np.arange(len(low)), index=low.index).reindex(label[ok]).to_numpy(np.int64)
    return out


def numbered_members(fits: list[Fitted], min_size: int, max_spread_m: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Gids and labels (per kind, :func:`number_clusters`) of the clustered incidents of one kind's fits."""
    tabs = [f.table for f in fits if len(f.table)]
    if not tabs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    numbered = number_clusters(pd.concat(tabs, ignore_index=True), min_size, max_spread_m).set_index(["group", "place"])["label"]
    gid = np.concatenate([f.gid for f in fits])
    key = pd.MultiIndex.from_arrays([np.concatenate([f.group for f in fits]), np.concatenate([f.place for f in fits])])
    lab = numbered.reindex(key).to_numpy(np.int64)
    return gid[lab >= 0], lab[lab >= 0]
