"""Coverage: multi-source network distances (= brute force per site), shares, gaps, targets, the step."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
import yaml
from shapely.geometry import LineString, box

from gis import coverage, network, routing
from gis._errors import CatalogError

CRS = "EPSG:4545"


def brute_force_node_distances(G: nx.MultiDiGraph, net: routing.NetworkCSR, sxy: np.ndarray, limit: float):
    """Per-site networkx Dijkstra (resident -> site: on the reversed graph), min over sites."""
    R = G.reverse(copy=False)
    fnode, fsnap = net.snap(sxy)
    index = {n: i for i, n in enumerate(net.node_ids)}
    best = np.full(net.n, np.inf)
    for f, (node, snap) in enumerate(zip(fnode, fsnap, strict=True)):
        if snap > limit:
            continue
        lengths = nx.single_source_dijkstra_path_length(R, net.node_ids[node], cutoff=limit - snap, weight="length")
        idx = np.fromiter((index[k] for k in lengths), np.int64, count=len(lengths))
        d = snap + np.fromiter(lengths.values(), float, count=len(lengths))
        np.minimum.at(best, idx, d)
    return best


@pytest.mark.shared
@pytest.mark.parametrize("name", ["yuzhong", "nanan", "jiangbei"])
@pytest.mark.parametrize("mode,limit", [("walk", 500.0), ("drive", 3000.0)])
def test_network_coverage_equals_brute_force_on_real_osm(shared_osm, name, mode, limit):
    G = network.load_graph(shared_osm / f"road_{name}.geojson", mode=mode, crs=CRS)
    net = routing.NetworkCSR.from_graph(G)
    rng = np.random.default_rng(7)
    # sites and residents near the roads: node positions jittered by up to 150 m
    sxy = net.xy[rng.choice(net.n, 40, replace=False)] + rng.uniform(-150, 150, (40, 2))
    pxy = net.xy[rng.choice(net.n, 3000)] + rng.uniform(-150, 150, (3000, 2))
    nodes = routing.multi_source_distances(net, sxy, limit=limit)
    d, fac, snap = routing.network_point_distances(net, nodes, pxy)
    best = brute_force_node_distances(G, net, sxy, limit)
    pnode, psnap = net.snap(pxy)
    brute = psnap + best[pnode]
    assert np.array_equal(d <= limit, brute <= limit)  # same covered set
    ok = np.isfinite(brute) & (brute <= limit)
    np.testing.assert_allclose(d[ok], brute[ok], rtol=1e-12, atol=1e-9)
    assert 0 < ok.sum() < len(pxy)
    # the nearest facility reported really is at that distance
    fnode, fsnap = net.snap(sxy)
    for j in np.flatnonzero(ok)[:20]:
        f = fac[j]
        # resident node -> facility node on the (directed) graph: D(n_j -> n_f)
        dd = nx.shortest_path_length(G, net.node_ids[pnode[j]], net.node_ids[fnode[f]], weight="length")
        assert psnap[j] + dd + fsnap[f] == pytest.approx(d[j], abs=1e-6)


def test_euclidean_distances_match_brute_force():
    rng = np.random.default_rng(1)
    s = rng.uniform(0, 1000, (25, 2))
    p = rng.uniform(0, 1000, (500, 2))
    d, i = routing.euclidean_distances(s, p)
    full = np.hypot(*(p[:, None, :] - s[None, :, :]).transpose(2, 0, 1))
    np.testing.assert_allclose(d, full.min(axis=1))
    assert np.array_equal(i, full.argmin(axis=1))


# --------------------------------------------------------------------------- synthetic town
X0, Y0 = 500000.0, 3300000.0


def grid_town(n_streets: int = 11, spacing: float = 200.0):
    """A street grid (walkable), two townships split at the middle, 50 m population cells."""
    L = (n_streets - 1) * spacing
    lines = [LineString([(X0, Y0 + i * spacing), (X0 + L, Y0 + i * spacing)]) for i in range(n_streets)]
    lines += [LineString([(X0 + i * spacing, Y0), (X0 + i * spacing, Y0 + L)]) for i in range(n_streets)]
    # split horizontal streets at every crossing so the grid is noded at shared vertices
    lines = [shapely.segmentize(ln, spacing) for ln in lines]
    roads = gpd.GeoDataFrame({"fclass": ["residential"] * len(lines), "oneway": "B"}, geometry=lines, crs=CRS)
    townships = gpd.GeoDataFrame(
        {"township": ["西街道", "东镇"], "households": [3000.0, 1000.0], "kind": ["街道", "镇"]},
        geometry=[box(X0, Y0, X0 + L / 2, Y0 + L), box(X0 + L / 2, Y0, X0 + L, Y0 + L)],
        crs=CRS,
    )
    c = np.arange(25.0, L, 50.0)
    gx, gy = np.meshgrid(c, c)
    pts = gpd.GeoDataFrame(
        {"population": np.full(gx.size, 10.0)}, geometry=gpd.points_from_xy(X0 + gx.ravel(), Y0 + gy.ravel()), crs=CRS
    )
    pts["township"] = np.where(pts.geometry.x < X0 + L / 2, "西街道", "东镇")
    return roads, townships, pts, L


def test_compute_coverage_shares_by_township_and_service_areas():
    roads, townships, pts, L = grid_town()
    G = network.graph_from_roads(roads, mode="walk", crs=CRS)
    net = routing.NetworkCSR.from_graph(G)
    sites = gpd.GeoDataFrame({"site_id": ["A"], "tier": ["collection_point"]},
                             geometry=gpd.points_from_xy([X0 + 400], [Y0 + 400]), crs=CRS)
    std = coverage.Standard("collection_point", "walk", 500.0)
    res = coverage.compute_coverage(pts, sites, std, network=net, townships=townships)
    assert res.method == "network"
    # network distance >= straight-line distance, so network coverage is a subset
    assert not (res.points["covered"] & ~res.points["covered_euclidean"]).any()
    assert res.population_covered_share < res.population_covered_share_euclidean
    by = res.by_township.set_index("township")
    assert by.loc["东镇", "covered_population"] == 0
    expected = res.points.loc[res.points["covered"], "population"].sum() / res.points["population"].sum()
    assert res.population_covered_share == pytest.approx(expected)
    # households: each township's 户数 spread over its cells
    assert res.points.groupby("township")["households"].sum()["西街道"] == pytest.approx(3000)
    assert by.loc["西街道", "household_share"] == pytest.approx(by.loc["西街道", "population_share"])
    assert len(res.service_areas) == 1 and res.service_areas.geometry.iloc[0].contains(sites.geometry.iloc[0])
    # a cell the manhattan grid puts beyond 500 m is not covered although within 500 m straight
    far = (res.points["dist_euclidean"] < 450) & ~res.points["covered"]
    assert far.any()


def test_district_standard_and_missing_sites():
    _, townships, pts, _ = grid_town()
    empty = gpd.GeoDataFrame({"tier": []}, geometry=gpd.GeoSeries([], crs=CRS), crs=CRS)
    res = coverage.compute_coverage(pts, empty, coverage.Standard("sorting_centre", "district", None))
    assert res.population_covered_share == 0
    one = gpd.GeoDataFrame({"tier": ["sorting_centre"]}, geometry=gpd.points_from_xy([X0], [Y0]), crs=CRS)
    assert coverage.compute_coverage(pts, one, coverage.Standard("sorting_centre", "district", None)).population_covered_share == 1


def test_standard_config_errors_name_the_key():
    with pytest.raises(CatalogError, match="service_standards.collection_point.distance_m"):
        coverage.Standard.from_config("collection_point", {"service_standards": {"collection_point": {"mode": "walk", "distance_m": -5}}})
    with pytest.raises(CatalogError, match="mode"):
        coverage.Standard.from_config("x", {"service_standards": {"x": {"mode": "bike", "distance_m": 5}}})


def test_gaps_merge_touching_cells_and_rank_by_population():
    c = np.arange(0, 500, 100.0)
    gx, gy = np.meshgrid(c, c)
    pts = gpd.GeoDataFrame({"population": np.ones(gx.size), "township": "甲"}, geometry=gpd.points_from_xy(gx.ravel(), gy.ravel()), crs=CRS)
    covered = np.ones(len(pts), bool)
    # blob 1: 3 cells in the left column (diagonal neighbour included); blob 2: 1 heavy cell far right
    idx = {(x, y): i for i, (x, y) in enumerate(zip(gx.ravel(), gy.ravel(), strict=True))}
    for k in [(0, 0), (0, 100), (100, 200)]:
        covered[idx[k]] = False
    covered[idx[(400, 400)]] = False
    pts.loc[idx[(400, 400)], "population"] = 10.0
    pts.loc[idx[(400, 400)], "township"] = "乙"
    pts["covered"] = covered
    gaps = coverage.coverage_gaps(pts)
    assert list(gaps["population"]) == [10.0, 3.0]
    assert list(gaps["township"]) == ["乙", "甲"]
    assert list(gaps["cells"]) == [1, 3]
    assert gaps.geometry.iloc[1].area == pytest.approx(3 * 100 * 100)
    assert len(coverage.coverage_gaps(pts, min_population=5)) == 1


def test_households_per_point_against_sbt10719_norm():
    _, townships, _, L = grid_town()
    sites = gpd.GeoDataFrame(
        {"tier": ["collection_point", "drop_off_point", "transfer_station"]},
        geometry=gpd.points_from_xy([X0 + 100, X0 + 300, X0 + 1500], [Y0 + 100, Y0 + 100, Y0 + 100]),
        crs=CRS,
    )
    tab = coverage.households_per_point(townships, sites, network.coverage_config()).set_index("township")
    assert tab.loc["西街道", "urban"] and not tab.loc["东镇", "urban"]
    assert tab.loc["西街道", "points"] == 2 and tab.loc["西街道", "required_points"] == 2  # 3000 / 2000
    assert tab.loc["西街道", "met"]
    assert tab.loc["东镇", "points"] == 0 and tab.loc["东镇", "required_points"] == 1  # 1000 / 2500
    assert not tab.loc["东镇", "met"] and tab.loc["东镇", "shortfall"] == 1




# --------------------------------------------------------------------------- the district step
def make_network_project(folder: Path) -> Path:
    """The tiny project plus a street grid (roads.geojson) and population polygons."""
    from gis.testing import TINY_ORIGIN, make_tiny_project

    path = make_tiny_project(folder)
    x0, y0 = TINY_ORIGIN
    step = 0.004
    ticks = np.arange(-0.048, 0.0481, step)
    lines = [LineString([(x0 + t, y0 + s) for s in ticks]) for t in ticks]
    lines += [LineString([(x0 + s, y0 + t) for s in ticks]) for t in ticks]
    roads = gpd.GeoDataFrame({"osm_id": range(len(lines)), "fclass": ["residential"] * len(lines), "oneway": "B"},
                             geometry=lines, crs="EPSG:4326")
    roads.to_file(folder / "roads.geojson", driver="GeoJSON")
    c = np.arange(-0.049, 0.049, 0.002)
    gx, gy = np.meshgrid(c, c)
    cells = [box(x0 + a - 0.001, y0 + b - 0.001, x0 + a + 0.001, y0 + b + 0.001) for a, b in zip(gx.ravel(), gy.ravel(), strict=True)]
    rng = np.random.default_rng(3)
    pop = gpd.GeoDataFrame({"人口": rng.integers(0, 120, len(cells)).astype(float)}, geometry=cells, crs="EPSG:4326")
    pop.to_file(folder / "population.gpkg", layer="population", driver="GPKG")
    proj = yaml.safe_load(path.read_text(encoding="utf-8"))
    proj["layers"]["roads"] = {"file": "roads.geojson"}
    proj["layers"]["population"] = {"file": "population.gpkg", "layer": "population"}
    proj["targets"] = [
        {"name": "回收网点2个", "metric": "count", "tiers": ["collection_point"], "target": 2},
        {"name": "每个镇街有中转站", "metric": "township_presence", "tiers": ["transfer_station"], "target": 1.0},
        {"name": "步行10分钟覆盖", "metric": "population_coverage", "tiers": ["collection_point"], "target": 0.5},
    ]
    proj["coverage"] = {"siting": {"k_new": 5, "grid_spacing_m": 600, "target_share": 0.3}}
    path.write_text(yaml.safe_dump(proj, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def network_district(tmp_path_factory):
    from gis.district import load_district

    return load_district(make_network_project(tmp_path_factory.mktemp("netdistrict") / "tiny"))


def test_run_step_writes_coverage_gpkg_and_summary(network_district, tmp_path):
    import pyogrio

    from gis.steps import run_steps

    summary, ctx = run_steps(network_district, tmp_path, ["coverage"])
    context = ctx.results()
    layers = {name for name, _ in pyogrio.list_layers(tmp_path / "coverage.gpkg")}
    assert {"service_areas", "gaps", "recommended_sites", "population_cells"} <= layers
    cov = summary["coverage"]
    assert cov["method"] == "network" and 0 < cov["population_covered_share"] < 1
    assert set(cov["by_township"]) == {"西镇", "东街道"}
    json.dumps(summary, allow_nan=False, default=str)
    t = {r["name"]: r for r in summary["targets"]}
    # S001 is the only collection point; active and compliant (residential land, outside 四山)
    assert t["回收网点2个"]["actual"] == 1 and not t["回收网点2个"]["met"]
    # the transfer station S002 sits on residential land: prohibited for its tier -> does not count
    assert t["每个镇街有中转站"]["actual"] == 0
    res = context["coverage"]
    assert "S002" not in set(res.sites["site_id"]) and "S001" in set(res.sites["site_id"])
    assert res.gaps["population"].is_monotonic_decreasing
    assert len(res.siting.recommended) == 5


def test_gaps_from_raster_are_true_cell_footprints_within_one_township(sample_district):
    """Gaps built from a population raster in degrees: exact cell footprints, clean unions."""
    pts = sample_district.population_points().copy()
    rng = np.random.default_rng(0)
    pts["covered"] = rng.random(len(pts)) < 0.5
    raster = sample_district.population_raster
    gaps = coverage.coverage_gaps(pts, raster=raster)
    assert gaps.geometry.is_valid.all()
    assert gaps.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    # one 0.001° cell at ~29.6°N is ~96.9 m × 110.9 m: area per cell must match, no slivers or overlaps
    per_cell = gaps.geometry.area / gaps["cells"]
    assert per_cell.between(10_500, 11_000).all()
    # every gap lies in the township it names (属地)
    tw = sample_district.townships.set_index("township").geometry
    inside = [tw[t].buffer(200).contains(g) for t, g in zip(gaps["township"], gaps.geometry)]
    assert all(inside)
    uncovered = pts.loc[~pts["covered"], "population"].sum()
    assert gaps["population"].sum() == pytest.approx(uncovered)


def test_service_area_hulls_on_threads_equal_the_hulls_in_turn() -> None:
    """From ``threads_from_sites`` sites the hulls are drawn on one thread per core: the same polygons, in order."""
    import dataclasses

    import shapely

    from gis.coverage import _hulls
    from gis.params import build_section

    display = build_section("coverage").service_area_display
    rng = np.random.default_rng(3)
    n, k = 2_001, 7
    xy = rng.normal(size=(n * k, 2)) * 40 + np.repeat(rng.uniform(0, 5_000, size=(n, 2)), k, axis=0)
    mp = shapely.multipoints(xy, indices=np.repeat(np.arange(n), k))
    in_turn = _hulls(mp, dataclasses.replace(display, threads_from_sites=n + 1))
    threaded = _hulls(mp, dataclasses.replace(display, threads_from_sites=1))
    assert len(threaded) == n and shapely.equals_exact(in_turn, threaded).all()
    assert (shapely.get_type_id(threaded) == 3).all()  # polygons (buffered hulls)
