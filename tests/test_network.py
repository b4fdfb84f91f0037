"""Offline road graphs: noding, one-way, speeds by class, OSM XML, CSR export."""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
from shapely.geometry import LineString, MultiLineString

from gis import network, routing
from gis._errors import AnalysisError, InputError

CRS = "EPSG:4544"


def _roads(rows):
    return gpd.GeoDataFrame(
        {"osm_id": [str(i) for i in range(len(rows))], "fclass": [r[1] for r in rows], "oneway": [r[2] for r in rows]},
        geometry=[r[0] for r in rows],
        crs=CRS,
    )


class TestNoding:
    def test_lines_join_at_shared_vertices_not_at_crossings(self):
        x0, y0 = 500000.0, 3300000.0
        roads = _roads(
            [
                (LineString([(x0, y0), (x0 + 100, y0), (x0 + 200, y0)]), "residential", "B"),
                (LineString([(x0 + 100, y0 - 100), (x0 + 100, y0), (x0 + 100, y0 + 100)]), "residential", "B"),
                # a bridge crossing the first road at (x0+150, y0) without a shared vertex
                (LineString([(x0 + 150, y0 - 50), (x0 + 150, y0 + 50)]), "residential", "B"),
            ]
        )
        G = network.graph_from_roads(roads, mode="walk", crs=CRS)
        und = nx.Graph(G)
        assert und.number_of_nodes() == 7  # 4 ends + shared centre + 2 bridge ends
        assert nx.number_connected_components(und) == 2
        lengths = sorted(d["length"] for _, _, d in und.edges(data=True))
        np.testing.assert_allclose(lengths, [100, 100, 100, 100, 100])
        # walking graph: every edge both ways
        assert G.number_of_edges() == 10

    def test_rounding_tolerance_merges_near_vertices(self):
        x0, y0 = 500000.0, 3300000.0
        roads = _roads(
            [
                (LineString([(x0, y0), (x0 + 100, y0)]), "residential", "B"),
                (LineString([(x0 + 100.1, y0), (x0 + 200, y0)]), "residential", "B"),
            ]
        )
        G = network.graph_from_roads(roads, mode="walk", crs=CRS, tolerance_m=0.5)
        assert nx.is_connected(nx.Graph(G))

    def test_multilinestring_parts_and_length_of_curves(self):
        x0, y0 = 500000.0, 3300000.0
        ml = MultiLineString([[(x0, y0), (x0 + 30, y0 + 40), (x0 + 60, y0)], [(x0 + 60, y0), (x0 + 60, y0 + 10)]])
        G = network.graph_from_roads(_roads([(ml, "service", "B")]), mode="drive", crs=CRS)
        total = sum(d["length"] for _, _, d in G.edges(data=True))
        assert total == pytest.approx(2 * (50 + 50 + 10))


class TestModes:
    def _two(self):
        x0, y0 = 500000.0, 3300000.0
        return _roads(
            [
                (LineString([(x0, y0), (x0 + 100, y0)]), "primary", "F"),
                (LineString([(x0 + 100, y0), (x0 + 100, y0 + 100)]), "secondary", "T"),
                (LineString([(x0, y0), (x0, y0 + 100)]), "footway", "B"),
                (LineString([(x0 + 100, y0 + 100), (x0 + 300, y0 + 100)]), "motorway", "F"),
            ]
        )

    def test_drive_honours_oneway_and_excludes_footways(self):
        G = network.graph_from_roads(self._two(), mode="drive", crs=CRS)
        classes = {d["highway"] for _, _, d in G.edges(data=True)}
        assert "footway" not in classes
        e = {(d["highway"], d["reversed"]) for _, _, d in G.edges(data=True)}
        assert e == {("primary", False), ("secondary", True), ("motorway", False)}
        for _, _, d in G.edges(data=True):
            assert d["travel_time"] == pytest.approx(d["length"] / (d["speed_kph"] / 3.6))
        cfg = network.coverage_config()
        prim = [d for _, _, d in G.edges(data=True) if d["highway"] == "primary"][0]
        assert prim["speed_kph"] == cfg["speeds_kmh"]["drive"]["primary"]

    def test_walk_is_two_way_and_excludes_motorways(self):
        G = network.graph_from_roads(self._two(), mode="walk", crs=CRS)
        classes = {d["highway"] for _, _, d in G.edges(data=True)}
        assert classes == {"primary", "secondary", "footway"}
        assert G.number_of_edges() == 6

    def test_no_usable_road_is_an_input_error(self):
        roads = _roads([(LineString([(0, 0), (10, 0)]), "footway", "B")])
        with pytest.raises(InputError, match="drive"):
            network.graph_from_roads(roads, mode="drive", crs=CRS, source="roads.geojson")

    def test_polygon_rows_name_the_row(self):
        from shapely.geometry import box

        roads = gpd.GeoDataFrame({"fclass": ["primary"]}, geometry=[box(0, 0, 1, 1)], crs=CRS)
        with pytest.raises(InputError, match="row 2"):
            network.graph_from_roads(roads, mode="drive", crs=CRS, source="roads.geojson")


def test_osm_xml_is_read_offline(tmp_path):
    xml = """<?xml version='1.0' encoding='UTF-8'?>
<osm version="0.6" generator="test">
  <node id="1" lat="29.60" lon="106.40" version="1"/>
  <node id="2" lat="29.60" lon="106.41" version="1"/>
  <node id="3" lat="29.61" lon="106.41" version="1"/>
  <way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="residential"/></way>
  <way id="11" version="1"><nd ref="2"/><nd ref="3"/><tag k="highway" v="primary"/><tag k="oneway" v="yes"/></way>
</osm>"""
    p = tmp_path / "roads.osm"
    p.write_text(xml, encoding="utf-8")
    walk = network.load_graph(p, mode="walk", crs=CRS)
    drive = network.load_graph(p, mode="drive", crs=CRS)
    # walking: the degree-2 node is simplified away, one way in each direction
    assert walk.number_of_edges() == 2 and drive.number_of_edges() == 3
    for _, _, d in walk.edges(data=True):
        assert d["length"] == pytest.approx(968 + 1109, abs=4)  # 0.01° lon + 0.01° lat at 29.6°N
    oneway = [(u, v) for u, v, d in drive.edges(data=True) if d["highway"] == "primary"]
    assert len(oneway) == 1
    assert network.pyproj.CRS(walk.graph["crs"]).to_epsg() == 4544
    gml = tmp_path / "roads.graphml"
    import osmnx as ox

    ox.save_graphml(drive, gml)
    again = network.load_graph(gml, mode="walk", crs=CRS)
    assert again.number_of_edges() == 4  # made two-way for walking


def test_download_refuses_by_default():
    from shapely.geometry import box

    with pytest.raises(AnalysisError, match="switched off"):
        network.download_graph(box(106.4, 29.5, 106.5, 29.6), mode="walk")


def test_csr_keeps_the_shortest_parallel_edge_and_snaps():
    u = np.array([0, 0, 1])
    v = np.array([1, 1, 2])
    w = np.array([5.0, 3.0, 0.0])
    xy = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    net = routing.NetworkCSR.from_edges(u, v, w, np.array([10, 11, 12]), xy, CRS)
    assert net.matrix[0, 1] == 3.0 and net.matrix.nnz == 2  # explicit zero kept as an edge
    idx, d = net.snap([[0.0, 1.0]])
    assert idx[0] == 0 and d[0] == pytest.approx(1.0)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["yuzhong", "nanan", "jiangbei"])
def test_real_osm_roads_build_routable_graphs(shared_osm, name):
    path = shared_osm / f"road_{name}.geojson"
    roads = gpd.read_file(path)
    walk = network.load_graph(path, mode="walk", crs=CRS)
    drive = network.load_graph(path, mode="drive", crs=CRS)
    # walking graph: each walkable line twice, total length = projected line length x 2
    cfg = network.coverage_config()
    walkable = roads[network.class_speeds(roads["fclass"], "walk", cfg).notna().to_numpy()].to_crs(CRS)
    total = sum(d["length"] for _, _, d in walk.edges(data=True))
    assert total == pytest.approx(2 * walkable.length.sum(), rel=1e-5)  # vertices within 0.5 m merge
    # the largest weakly connected component holds most of the network
    big = max(nx.weakly_connected_components(drive), key=len)
    assert len(big) > 0.8 * drive.number_of_nodes()
    assert not any(d["highway"] in ("footway", "steps") for _, _, d in drive.edges(data=True))
    csr = routing.NetworkCSR.from_graph(drive)
    assert csr.n == drive.number_of_nodes()


def test_graph_from_roads_refuses_a_network_over_the_node_limit(monkeypatch):
    """The networkx builder shares the noding and the size limit of gis.roadgraph."""
    import geopandas as gpd
    from shapely.geometry import LineString

    import gis.limits
    from gis._errors import GisError
    from gis.network import graph_from_roads

    roads = gpd.GeoDataFrame({"fclass": ["residential"] * 2},
                             geometry=[LineString([(0, 0), (100, 0)]), LineString([(100, 0), (100, 100)])], crs=32648)
    assert graph_from_roads(roads, mode="walk").number_of_nodes() == 3
    table = gis.limits.load_limits()
    table["analysis"]["max_network_nodes"] = 2
    monkeypatch.setattr(gis.limits, "load_limits", lambda path=None: table)
    with pytest.raises(GisError, match=r"would be 3; the limit is 2 \(analysis.max_network_nodes"):
        graph_from_roads(roads, mode="walk")
