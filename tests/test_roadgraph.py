"""Road lines → CSR graph without networkx: same shortest paths as networkx, cached per project."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra
from shapely.geometry import LineString

from gis import network, roadgraph
from test_coverage import CRS, X0, Y0, grid_town


def _nx_distances(G: nx.MultiDiGraph, sources, weight: str) -> list[dict]:
    return [nx.single_source_dijkstra_path_length(G, s, weight=weight) for s in sources]


def _assert_same_as_networkx(roads: gpd.GeoDataFrame, mode: str, weight: str, n_src: int = 4) -> None:
    net = roadgraph.edges_from_lines(roads, mode=mode, crs=CRS).network(weight)
    G = network.graph_from_roads(roads, mode=mode, crs=CRS)
    assert net.n == G.number_of_nodes()
    assert set(net.node_ids.tolist()) == set(G.nodes)
    row = {n: i for i, n in enumerate(net.node_ids.tolist())}
    xy = np.array([(G.nodes[n]["x"], G.nodes[n]["y"]) for n in net.node_ids.tolist()])
    assert np.allclose(xy, net.xy)
    src = np.random.default_rng(0).choice(net.n, n_src, replace=False)
    ours = dijkstra(net.matrix, indices=src)
    for k, ref in enumerate(_nx_distances(G, net.node_ids[src].tolist(), weight)):
        expect = np.full(net.n, np.inf)
        expect[[row[n] for n in ref]] = list(ref.values())
        assert np.array_equal(np.isfinite(ours[k]), np.isfinite(expect))
        fin = np.isfinite(expect)
        assert np.allclose(ours[k][fin], expect[fin], rtol=1e-12, atol=1e-6)


@pytest.mark.parametrize("weight", ["length", "travel_time"])
def test_grid_town_distances_equal_networkx(weight):
    roads, *_ = grid_town()
    _assert_same_as_networkx(roads, "walk", weight)


def test_oneway_and_crossings_without_shared_vertex():
    # a one-way street (drive) and a bridge crossing it without a shared vertex
    roads = gpd.GeoDataFrame(
        {"fclass": ["residential", "primary"], "oneway": ["F", "B"]},
        geometry=[LineString([(X0, Y0), (X0 + 100, Y0), (X0 + 200, Y0)]),
                  LineString([(X0 + 100, Y0 - 100), (X0 + 100, Y0 + 100)])],
        crs=CRS,
    )
    net = roadgraph.edges_from_lines(roads, mode="drive").network()
    d = dijkstra(net.matrix)
    a, b = net.snap([(X0, Y0), (X0 + 200, Y0)])[0]
    assert d[a, b] == pytest.approx(200.0) and np.isinf(d[b, a])  # one-way honoured
    c = net.snap([(X0 + 100, Y0 - 100)])[0][0]
    assert np.isinf(d[a, c])  # the bridge does not connect to the street it crosses
    walk = roadgraph.edges_from_lines(roads, mode="walk").network()
    a, b = walk.snap([(X0, Y0), (X0 + 200, Y0)])[0]
    assert dijkstra(walk.matrix, indices=b)[a] == pytest.approx(200.0)


@pytest.mark.shared
@pytest.mark.parametrize("mode", ["walk", "drive"])
def test_real_roads_distances_equal_networkx(shared_osm, mode):
    roads = gpd.read_file(shared_osm / "road_nanan.geojson", engine="pyogrio")
    _assert_same_as_networkx(roads, mode, "length")


def test_cache_hit_skips_the_rebuild_and_a_changed_file_misses(tmp_path, monkeypatch):
    roads, *_ = grid_town()
    path = tmp_path / "roads.geojson"
    roads.to_file(path, driver="GeoJSON")
    cache = tmp_path / "cache"
    first = roadgraph.load_network(path, mode="walk", crs=CRS, cache_dir=cache)
    assert len(list(cache.glob("roadgraph-*.npz"))) == 1
    real_read = roadgraph.read_edges

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(roadgraph, "read_edges", no_rebuild)
    again = roadgraph.load_network(path, mode="walk", crs=CRS, cache_dir=cache)
    assert (again.matrix != first.matrix).nnz == 0 and np.array_equal(again.node_ids, first.node_ids)
    timed = roadgraph.load_network(path, mode="walk", crs=CRS, cache_dir=cache, weight="travel_time")
    assert timed.weight == "travel_time"
    assert timed.matrix.sum() == pytest.approx(first.matrix.sum() / (4.5 / 3.6))  # residential walk 4.5 km/h
    # another mode or a changed file is another key
    with pytest.raises(AssertionError, match="rebuilt"):
        roadgraph.load_network(path, mode="drive", crs=CRS, cache_dir=cache)
    roads.iloc[:-1].to_file(path, driver="GeoJSON")
    with pytest.raises(AssertionError, match="rebuilt"):
        roadgraph.load_network(path, mode="walk", crs=CRS, cache_dir=cache)
    monkeypatch.setattr(roadgraph, "read_edges", real_read)
    smaller = roadgraph.load_network(path, mode="walk", crs=CRS, cache_dir=cache)
    assert smaller.matrix.nnz < first.matrix.nnz


def test_bad_road_rows_name_the_file_and_row(tmp_path):
    from gis._errors import InputError
    from shapely.geometry import Point

    roads = gpd.GeoDataFrame({"fclass": ["residential", "residential"]},
                             geometry=[LineString([(X0, Y0), (X0 + 10, Y0)]), Point(X0, Y0)], crs=CRS)
    with pytest.raises(InputError, match="lines") as err:
        roadgraph.edges_from_lines(roads, mode="walk", source="roads.gpkg")
    assert "roads.gpkg" in str(err.value) and "3" in str(err.value)


def test_road_network_over_the_node_limit_is_refused_naming_the_limit(monkeypatch):
    """A road layer with more nodes than analysis.max_network_nodes stops before the graph is allocated."""
    import geopandas as gpd
    import pytest
    from shapely.geometry import LineString

    import gis.limits
    from gis._errors import GisError
    from gis.roadgraph import edges_from_lines

    roads = gpd.GeoDataFrame({"fclass": ["residential"] * 3},
                             geometry=[LineString([(0, 0), (100, 0)]), LineString([(100, 0), (200, 0)]),
                                       LineString([(100, 0), (100, 100)])], crs=32648)
    table = gis.limits.load_limits()
    assert len(edges_from_lines(roads, mode="walk").node_ids) == 4
    table["analysis"]["max_network_nodes"] = 3
    monkeypatch.setattr(gis.limits, "load_limits", lambda path=None: table)
    with pytest.raises(GisError, match=r"would be 4; the limit is 3 \(analysis.max_network_nodes"):
        edges_from_lines(roads, mode="walk")
