"""Big tiers go straight to a count grid: the same layers as building every marker first."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from gis import map_scale, maps


def _old_way(d, opt, verdicts, limit):
    """What build_layers did before: every tier's full layer, then the grid for those over the limit."""
    return [maps.aggregate_points(lay, opt.max_vector_polygons) if lay.n > limit else lay
            for lay in maps._site_layers(d, opt, verdicts)]


def _new_way(d, opt, verdicts, limit):
    return map_scale.site_layers(d, opt, verdicts, full=maps._site_layers, grid=maps.aggregate_points, limit=limit)


def _verdicts(d) -> pd.DataFrame:
    ids = d.sites["site_id"].astype(str)
    verdict = pd.Series(["ok", "needs_review", "prohibited"] * (len(ids) // 3 + 1))[: len(ids)].to_numpy()
    return pd.DataFrame({"verdict": verdict, "problems": ""}, index=ids.to_numpy())


@pytest.mark.parametrize("with_verdicts", [False, True])
def test_grids_equal_the_grids_of_the_full_layers(sample_district, monkeypatch, with_verdicts) -> None:
    d = sample_district
    counts = d.sites["tier"].astype(str).value_counts()
    limit = int(counts.median())  # some tiers above, some below
    monkeypatch.setattr(maps, "max_page_points", lambda _d: limit)
    opt = maps.district_options(d)
    verdicts = _verdicts(d) if with_verdicts else None
    new, old = _new_way(d, opt, verdicts, limit), _old_way(d, opt, verdicts, limit)
    assert [lay.key for lay in new] == [lay.key for lay in old]
    assert {lay.key for lay in new if lay.kind == "polygon"} == {f"sites_{t}" for t, n in counts.items() if n > limit}
    for a, b in zip(new, old):
        assert (a.title, a.kind, a.popup, a.tooltip, a.cluster, a.size, a.legend) == (
            b.title, b.kind, b.popup, b.tooltip, b.cluster, b.size, b.legend)
        pd.testing.assert_frame_equal(pd.DataFrame(a.gdf.drop(columns="geometry")),
                                      pd.DataFrame(b.gdf.drop(columns="geometry")))
        assert a.gdf.geometry.geom_equals_exact(b.gdf.geometry, tolerance=1e-9).all()
    grids = [lay for lay in new if lay.kind == "polygon"]
    assert sum(lay.gdf["count"].astype(int).sum() for lay in grids) == sum(
        n for n in counts if n > limit)  # every site of a big tier counted once


def test_no_big_tier_is_the_plain_layers(sample_district) -> None:
    opt = maps.district_options(sample_district)
    new, old = _new_way(sample_district, opt, None, maps.max_page_points(sample_district)), maps._site_layers(sample_district, opt, None)
    assert [(lay.key, lay.title, lay.n) for lay in new] == [(lay.key, lay.title, lay.n) for lay in old]


def test_verdict_legend_stays_when_the_last_tier_is_a_grid(sample_district, monkeypatch) -> None:
    """The markers still coloured by verdict keep their legend (the old way lost it with the last tier's)."""
    d = sample_district
    last = [t for t in maps.TIER_SYMBOL if (d.sites["tier"] == t).any()][-1]
    monkeypatch.setattr(maps, "max_page_points", lambda _d: int((d.sites["tier"] == last).sum()) - 1)
    layers = _new_way(d, maps.district_options(d), _verdicts(d), maps.max_page_points(d))
    assert layers[-1].key == f"sites_{last}" and layers[-1].kind == "polygon"
    labels = [label for lay in layers for _, _, label in lay.legend]
    assert "需核查 needs review" in labels


def test_burn_gives_rasterios_pixels(monkeypatch) -> None:
    """Polygons with holes, multipolygons, overlaps (later wins), missing and empty shapes: same grid as rasterio."""
    import warnings

    import numpy as np
    import shapely
    from rasterio import features
    from rasterio.transform import from_origin

    rng = np.random.default_rng(3)
    centres = rng.uniform(0, 100, (40, 2))
    discs = shapely.buffer(shapely.points(centres), rng.uniform(2, 12, 40))
    holed = shapely.difference(discs[:10], shapely.buffer(shapely.points(centres[:10]), 1.5))
    multi = shapely.multipolygons([[shapely.box(5, 5, 15, 15), shapely.box(60, 70, 80, 95)]] * 1)
    geoms = np.concatenate([holed, discs[10:], np.atleast_1d(multi), [None, shapely.Polygon()],
                            [shapely.buffer(shapely.LineString([(0, 50), (100, 60)]), 1.0)]]).astype(object)
    values = np.arange(1, len(geoms) + 1)
    transform = from_origin(-5, 105, 0.5, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio warns about the missing and empty shapes
        expected = features.rasterize(zip(geoms, values), out_shape=(230, 230), transform=transform, fill=0,
                                      dtype="int32")
    got = map_scale.burn(geoms, values, (230, 230), transform)
    monkeypatch.setattr(map_scale, "BURN_BATCH", 7)  # several batches into one grid: the later still wins
    np.testing.assert_array_equal(map_scale.burn(geoms, values, (230, 230), transform), expected)
    assert (expected > 0).sum() > 10_000 and len(np.unique(expected)) > 20
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("halves", ["one process", "second half forked", "child fails"])
def test_burn_mercator_is_burning_the_reprojected_layer(monkeypatch, halves: str) -> None:
    """Batches re-projected as they are burnt: the pixels of re-projecting the whole layer first,
    inside bounds that hold every re-projected vertex — also when the second half of the layer is
    burnt in a forked child (laid over the first half's pixels), or burnt here after the child failed."""
    import geopandas as gpd
    import numpy as np
    import shapely
    from rasterio.transform import from_origin

    rng = np.random.default_rng(5)
    xy = np.column_stack([rng.uniform(480_000, 500_000, 60), rng.uniform(3_260_000, 3_280_000, 60)])
    layer = gpd.GeoSeries(shapely.buffer(shapely.points(xy), rng.uniform(200, 1500, 60)), crs="EPSG:4544")
    values = np.arange(1, 61)
    merc = layer.to_crs(maps.WGS84).to_crs(maps.WEB_MERCATOR)
    minx, miny, maxx, maxy = map_scale.mercator_bounds(layer)
    tight = merc.total_bounds
    assert minx <= tight[0] and miny <= tight[1] and maxx >= tight[2] and maxy >= tight[3]
    assert max(tight[0] - minx, tight[1] - miny, maxx - tight[2], maxy - tight[3]) < 0.02 * (maxx - minx)
    pixel = (maxx - minx) / 300
    shape = (int(np.ceil((maxy - miny) / pixel)), 300)
    transform = from_origin(minx, maxy, pixel, pixel)
    expected = map_scale.burn(merc.values, values, shape, transform)
    monkeypatch.setattr(map_scale, "BURN_BATCH", 7)
    if halves != "one process":
        from gis import background

        if not background.can_fork():
            pytest.skip("no fork on this platform")
        monkeypatch.setattr(map_scale, "BURN_FORK_FROM", 10)
        if halves == "child fails":
            monkeypatch.setattr(background.ForkedGrid, "result", lambda self: (os.waitpid(self._pid, 0), None)[1])
    got = map_scale.burn_mercator(layer, values, shape, transform)
    assert len(np.unique(expected)) > 30
    np.testing.assert_array_equal(got, expected)
