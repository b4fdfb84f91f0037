"""OSM XML road network: dense urban grids in the valleys east and west of 中梁山, sparse
rural roads, connectors, service stubs and tunnels through the ridges (the largest
connected component only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from gis import settings
from gis.export import atomic_path
from gis.sample.constants import BAND_HALF_WIDTH_M, FloatArray, ScaleParams
from gis.sample.frame import Frame, _contains
from gis.sample.geo import _Geo

#: Road-name stems (real Shapingba place names).
_ROAD_STEMS = (
    "天陈", "汉渝", "凤天", "小龙坎", "沙坪", "杨公桥", "土湾", "石碾盘", "双碑", "井口", "歌乐", "西永",
    "学城", "虎溪", "曾家", "陈家桥", "青木", "凤凰", "回龙", "土主", "中梁", "覃家岗", "渝碚", "新桥",
    "高滩岩", "石井", "童家", "磁器口", "詹家溪", "大学城", "西园", "微电园", "梨树湾", "站东", "站西",
    "金沙", "三峡", "团结", "青凤", "康居", "景苑", "联芳", "山洞", "白鹤", "林园", "烈士墓", "红槽房",
)
#: Tunnels through the ridges: ridge, latitude of the crossing, name.
TUNNELS = (("中梁山", 29.604, "大学城隧道"), ("中梁山", 29.578, "歌乐山隧道"), ("中梁山", 29.548, "中梁山隧道"), ("缙云山", 29.672, "缙云山隧道"))

@dataclass
class _Roads:
    """Road nodes (metric) and ways (node indices and OSM tags)."""

    node_x: FloatArray
    node_y: FloatArray
    ways: list[dict[str, Any]]  # {nodes: [indices], highway, name, oneway, tunnel}


def _grid_ways(
    rng: np.random.Generator,
    valid: npt.NDArray[np.bool_],
    ids: npt.NDArray[np.int64],
    drop: float,
    classes: tuple[str, ...],
    names: list[str],
    oneway_rows: bool,
) -> list[dict[str, Any]]:
    """Ways along the rows and columns of a node lattice (runs of consecutive edges)."""
    ways: list[dict[str, Any]] = []
    ny, nx = valid.shape
    h = valid[:, :-1] & valid[:, 1:] & (rng.random((ny, nx - 1)) >= drop)
    v = valid[:-1, :] & valid[1:, :] & (rng.random((ny - 1, nx)) >= drop)
    for axis, edges in ((0, h), (1, v.T)):
        for line in range(edges.shape[0]):
            e = edges[line].astype(np.int8)
            if not e.any():
                continue
            d = np.diff(np.concatenate([[0], e, [0]]))
            starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
            rank = 3 if line % 8 == 0 else 2 if line % 4 == 0 else 1 if line % 2 == 0 else 0
            highway = classes[min(rank, len(classes) - 1)]
            name = names[(line * 7 + axis * 3) % len(names)] + ("大道" if rank == 3 else "路" if rank >= 1 else "支路")
            for s, e_ in zip(starts, ends):
                cols = np.arange(s, e_ + 1)
                nodes = ids[line, cols] if axis == 0 else ids[cols, line]
                oneway = ""
                if oneway_rows and highway == "residential" and line % 4 in (1, 3) and len(nodes) > 2:
                    oneway = "yes"
                    if line % 4 == 3:
                        nodes = nodes[::-1]
                ways.append({"nodes": nodes.tolist(), "highway": highway, "name": name, "oneway": oneway, "tunnel": ""})
    return ways


def _roads(rng: np.random.Generator, geo: _Geo, p: ScaleParams) -> _Roads:
    """Urban and rural node lattices, their ways, connectors, stubs and tunnels."""
    minx, miny, maxx, maxy = geo.district.bounds
    blocked = shapely.union_all(
        [g for (n, lv), g in geo.bands.items() if lv != "general_control"]
        + [shapely.buffer(geo.river, 40.0)] + list(shapely.buffer(np.array(geo.reservoirs, dtype=object), 60.0))
    )
    urban = shapely.union_all([geo.urban_core, geo.new_town, geo.town_discs])
    xs, ys, ways = [], [], []
    n0 = 0
    stems = list(_ROAD_STEMS)
    for kind, step, jit in (("urban", p.road_urban_m, 0.1), ("rural", p.road_rural_m, 0.12)):
        gx = np.arange(minx, maxx + step, step)
        gy = np.arange(miny, maxy + step, step)
        GX, GY = np.meshgrid(gx, gy)
        in_urban = _contains(urban, GX.ravel(), GY.ravel()).reshape(GX.shape)
        ok = _contains(geo.district, GX.ravel(), GY.ravel()).reshape(GX.shape)
        ok &= ~_contains(blocked, GX.ravel(), GY.ravel()).reshape(GX.shape)
        ok &= in_urban if kind == "urban" else ~in_urban
        PX = GX + rng.normal(0, jit * step, GX.shape)
        PY = GY + rng.normal(0, jit * step, GY.shape)
        ids = np.full(GX.shape, -1, dtype=np.int64)
        ids[ok] = n0 + np.arange(ok.sum())
        n0 += int(ok.sum())
        xs.append(PX[ok])
        ys.append(PY[ok])
        rng.shuffle(stems)
        if kind == "urban":
            w = _grid_ways(rng, ok, ids, 0.04, ("residential", "tertiary", "secondary", "primary"), stems, True)
        else:
            w = _grid_ways(rng, ok, ids, 0.12, ("unclassified", "unclassified", "tertiary", "tertiary"), stems, False)
            for way in w:
                way["name"] = way["name"].replace("大道", "公路").replace("支路", "村道").replace("路", "村道", 1)
        ways += w
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    n_urban = len(xs[0])
    # connectors: rural nodes to the nearest urban node
    tree_u = cKDTree(np.column_stack([x[:n_urban], y[:n_urban]]))
    rural_idx = np.arange(n_urban, len(x))
    d, j = tree_u.query(np.column_stack([x[rural_idx], y[rural_idx]]))
    near = d < 0.9 * p.road_rural_m
    for r, u in zip(rural_idx[near], j[near]):
        ways.append({"nodes": [int(r), int(u)], "highway": "unclassified", "name": "", "oneway": "", "tunnel": ""})
    # service stubs on 4% of urban nodes
    stub_src = np.flatnonzero(rng.random(n_urban) < 0.04)
    ang = rng.uniform(0, 2 * np.pi, len(stub_src))
    sx = x[stub_src] + 70.0 * np.cos(ang)
    sy = y[stub_src] + 70.0 * np.sin(ang)
    keep = _contains(geo.district, sx, sy) & ~_contains(blocked, sx, sy)
    stub_ids = len(x) + np.arange(keep.sum())
    for a, b in zip(stub_src[keep], stub_ids):
        ways.append({"nodes": [int(a), int(b)], "highway": "service", "name": "", "oneway": "", "tunnel": ""})
    x = np.concatenate([x, sx[keep]])
    y = np.concatenate([y, sy[keep]])
    ways += _tunnels(geo, x, y)
    return _largest_component(x, y, ways)


def _tunnels(geo: _Geo, x: FloatArray, y: FloatArray) -> list[dict[str, Any]]:
    """One primary tunnel way per :data:`TUNNELS` entry, between the nodes nearest to the
    points ``key_control`` + 400 m either side of the ridge where it crosses the latitude."""
    ways = []
    tree_all = cKDTree(np.column_stack([x, y]))
    for ridge, lat, name in TUNNELS:
        line = geo.ridges[ridge]
        _, ty = geo.frame.to_metric(106.35, lat)
        across = shapely.LineString([(float(x.min()) - 1e5, float(ty)), (float(x.max()) + 1e5, float(ty))])
        hit = shapely.get_coordinates(shapely.intersection(line, across))
        frac = line.project(shapely.Point(hit[0]), normalized=True) if len(hit) else 0.5
        pt = np.asarray(line.interpolate(frac, normalized=True).coords[0])
        ahead = np.asarray(line.interpolate(min(frac + 0.01, 1.0), normalized=True).coords[0])
        if np.allclose(ahead, pt):
            ahead = np.asarray(line.interpolate(max(frac - 0.01, 0.0), normalized=True).coords[0])
        tvec = (ahead - pt) / np.linalg.norm(ahead - pt)
        nvec = np.array([tvec[1], -tvec[0]])
        ends = [int(tree_all.query(pt + sign * nvec * (BAND_HALF_WIDTH_M["key_control"] + 400.0))[1]) for sign in (-1.0, 1.0)]
        ways.append({"nodes": ends, "highway": "primary", "name": name, "oneway": "", "tunnel": "yes"})
    return ways


def _largest_component(x: FloatArray, y: FloatArray, ways: list[dict[str, Any]]) -> _Roads:
    """Keep the ways and nodes of the largest connected component (renumbered)."""
    a_idx = np.concatenate([np.asarray(w["nodes"][:-1]) for w in ways])
    b_idx = np.concatenate([np.asarray(w["nodes"][1:]) for w in ways])
    graph = coo_matrix((np.ones(len(a_idx)), (a_idx, b_idx)), shape=(len(x), len(x)))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    used = np.zeros(len(x), bool)
    used[a_idx] = used[b_idx] = True
    sizes_used = np.bincount(labels[used], minlength=len(sizes))
    main = int(np.argmax(sizes_used))
    ways = [w for w in ways if labels[w["nodes"][0]] == main]
    keep_nodes = used & (labels == main)
    new_id = np.cumsum(keep_nodes) - 1
    for w in ways:
        w["nodes"] = new_id[np.asarray(w["nodes"])].tolist()
    return _Roads(x[keep_nodes], y[keep_nodes], ways)


def _write_osm(roads: _Roads, target: Path, frame: Frame) -> None:
    """Write the network as OSM XML (labelled sample data; ``osmnx.graph_from_xml`` reads it)."""
    lon, lat = frame.to_lonlat(roads.node_x, roads.node_y)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<osm version="0.6" generator="gis.sample (SAMPLE DATA)">',
        f"<!-- {settings.SAMPLE_LABEL} -->",
        f'<bounds minlat="{lat.min():.7f}" minlon="{lon.min():.7f}" maxlat="{lat.max():.7f}" maxlon="{lon.max():.7f}"/>',
    ]
    parts += [
        f'<node id="{i + 1}" version="1" lat="{la:.7f}" lon="{lo:.7f}"/>' for i, (lo, la) in enumerate(zip(lon, lat))
    ]
    for k, w in enumerate(roads.ways):
        nds = "".join(f'<nd ref="{n + 1}"/>' for n in w["nodes"])
        tags = f'<tag k="highway" v="{w["highway"]}"/>'
        if w["name"]:
            tags += f'<tag k="name" v="{w["name"]}"/>'
        if w["oneway"]:
            tags += '<tag k="oneway" v="yes"/>'
        if w["tunnel"]:
            tags += '<tag k="tunnel" v="yes"/><tag k="layer" v="-1"/>'
        tags += '<tag k="sample" v="1"/>'
        parts.append(f'<way id="{k + 1}" version="1">{nds}{tags}</way>')
    parts.append("</osm>\n")
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")


