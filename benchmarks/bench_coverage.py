"""Benchmark: multi-source network coverage vs per-site ego_graph isochrones.

Ours: one :func:`gis.routing.multi_source_distances` pass (scipy.sparse.csgraph
Dijkstra from a super-source). Peer: the osmnx-tutorial isochrone approach — one
``networkx.ego_graph(G, site_node, radius=L - snap, distance="length")`` per site,
covered nodes = union of the ego graphs. Same graph, same sites, same radius; the
covered node sets are checked identical. Inputs: the real OSM road graphs of
Yuzhong / Nanan / Jiangbei (walking, 500 m) and the ``city`` sample district
(generated into benchmarks/_work/, gitignored).

Run: ``.venv/bin/python -m benchmarks.bench_coverage`` (or the file directly).
"""

from __future__ import annotations

import sys
from pathlib import Path

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import WORK, machine, peak_memory, timed, write_section  # noqa: E402
from gis import network, routing, settings  # noqa: E402

LIMIT = 500.0


def ours(net: routing.NetworkCSR, sxy: np.ndarray) -> np.ndarray:
    nodes = routing.multi_source_distances(net, sxy, limit=LIMIT)
    return nodes.distance <= LIMIT


def peer(G: nx.MultiDiGraph, net: routing.NetworkCSR, sxy: np.ndarray) -> np.ndarray:
    R = G.reverse(copy=False)  # resident -> site
    fnode, fsnap = net.snap(sxy)
    covered: set = set()
    for node, snap in zip(fnode, fsnap, strict=True):
        if snap > LIMIT:
            continue
        covered.update(nx.ego_graph(R, net.node_ids[node], radius=LIMIT - snap, distance="length").nodes)
    return np.isin(net.node_ids, np.fromiter(covered, dtype=net.node_ids.dtype, count=len(covered)))


def case(label: str, G: nx.MultiDiGraph, sxy: np.ndarray, repeat_peer: int = 3) -> dict:
    net = routing.NetworkCSR.from_graph(G)
    t_ours, a = timed(lambda: ours(net, sxy), repeat=5)
    t_peer, b = timed(lambda: peer(G, net, sxy), repeat=repeat_peer)
    same = bool(np.array_equal(a, b))
    m_ours, _ = peak_memory(lambda: ours(net, sxy))
    m_peer, _ = peak_memory(lambda: peer(G, net, sxy))
    row = dict(label=label, nodes=net.n, edges=net.matrix.nnz, sites=len(sxy), covered=int(a.sum()),
               t_ours=t_ours, t_peer=t_peer, ratio=t_peer / t_ours, same=same, m_ours=m_ours, m_peer=m_peer)
    print(row, flush=True)
    if not same:
        raise SystemExit(f"{label}: covered node sets differ")
    return row


def main() -> None:
    rows = []
    osm = settings.SHARED_OSM_DIR
    rng = np.random.default_rng(0)
    if (osm / "road_yuzhong.geojson").exists():
        for name in ("yuzhong", "nanan", "jiangbei"):
            G = network.load_graph(osm / f"road_{name}.geojson", mode="walk")
            net = routing.NetworkCSR.from_graph(G)
            sxy = net.xy[rng.choice(net.n, 200, replace=False)] + rng.uniform(-100, 100, (200, 2))
            rows.append(case(f"real OSM {name} (walk)", G, sxy))
    else:
        print(f"real OSM data not at {osm}: skipped", flush=True)
    city = WORK / "city"
    if not (city / "project.yaml").exists():
        from gis.sample import generate

        generate(city, scale="city")
    import geopandas as gpd
    import pandas as pd

    # the sample's true site positions (WGS84) and its OSM XML roads
    truth = pd.read_csv(city / "truth" / "sites_truth.csv", encoding="utf-8-sig")
    pts = truth[truth["tier"].isin(["collection_point", "drop_off_point"])]
    G = network.load_graph(city / "roads.osm", mode="walk")
    sites = gpd.GeoSeries(gpd.points_from_xy(pts["lon"], pts["lat"]), crs=4326).to_crs(G.graph["crs"])
    rows.append(case(f"city sample (walk, {len(sites):,} points)", G, routing.points_xy(sites), repeat_peer=1))

    lines = [
        f"Multi-source network coverage (`gis.routing.multi_source_distances`, one scipy Dijkstra from a "
        f"super-source) vs per-site `networkx.ego_graph` isochrones (radius {LIMIT:.0f} m minus the site's snap "
        f"distance), walking graph. Covered node sets checked identical. {machine()}.",
        "",
        "| input | nodes | edges | sites | covered nodes | ours (s) | ego_graph (s) | speed-up | identical | peak MiB ours / peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['nodes']:,} | {r['edges']:,} | {r['sites']:,} | {r['covered']:,} | "
            f"{r['t_ours']:.4f} | {r['t_peer']:.3f} | {r['ratio']:.0f}× | {'yes' if r['same'] else 'NO'} | "
            f"{r['m_ours']:.1f} / {r['m_peer']:.1f} |"
        )
    write_section("coverage", "\n".join(lines))


if __name__ == "__main__":
    main()
