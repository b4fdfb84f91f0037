"""Raster sampling (gis.raster) against rasterio's own ``DatasetReader.sample``; the
land-use overlay and the district's RasterLayer sample through the same function."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine

from gis.compliance import sample_raster_codes as compliance_sample
from gis.io import RasterLayer
from gis.raster import sample_band, sample_raster_codes

CRS = "EPSG:4544"


@pytest.fixture()
def tif(tmp_path):
    rng = np.random.default_rng(0)
    band = rng.choice(np.array([0, 1, 12, 701, 1203], dtype=np.int16), size=(40, 60))
    path = tmp_path / "lu.tif"
    transform = Affine(30.0, 0.0, 600_000.0, 0.0, -30.0, 3_300_000.0)
    with rasterio.open(path, "w", driver="GTiff", height=40, width=60, count=1, dtype="int16", crs=CRS,
                       transform=transform, nodata=0) as ds:
        ds.write(band, 1)
    return path, band, transform


def _points(n: int = 400) -> gpd.GeoSeries:
    rng = np.random.default_rng(1)
    # some points fall outside the 1800 m × 1200 m grid on every side
    x = rng.uniform(600_000.0 - 200, 600_000.0 + 1800 + 200, n)
    y = rng.uniform(3_300_000.0 - 1200 - 200, 3_300_000.0 + 200, n)
    return gpd.GeoSeries(gpd.points_from_xy(x, y), crs=CRS)


def test_sample_band_equals_rasterio_sample(tif):
    path, band, transform = tif
    pts = _points()
    ours = sample_band(band, transform, pts.x.to_numpy(), pts.y.to_numpy(), nodata=0)
    with rasterio.open(path) as ds:
        ref = np.ma.concatenate(list(ds.sample(zip(pts.x, pts.y), masked=True)))
    inside = (pts.x > 600_000) & (pts.x < 601_800) & (pts.y < 3_300_000) & (pts.y > 3_298_800)
    assert inside.sum() > 100 and (~inside).sum() > 50
    assert np.isnan(ours[~inside.to_numpy()]).all()
    valid = ~np.ma.getmaskarray(ref) & inside.to_numpy()
    assert np.array_equal(ours[valid], ref.data[valid].astype(float))
    assert np.isnan(ours[inside.to_numpy() & np.ma.getmaskarray(ref)]).all()  # nodata cells


def test_overlay_and_raster_layer_sample_the_same_cells(tif):
    path, band, transform = tif
    pts = _points()
    layer = RasterLayer(path=path, role="landuse", crs=rasterio.crs.CRS.from_user_input(CRS), transform=transform,
                        nodata=0, shape=band.shape, classes={1: "01", 12: "12", 701: "0701", 1203: "1203"})
    codes = sample_raster_codes(path, pts)
    assert compliance_sample is sample_raster_codes
    assert codes.tolist() == [c if c is not None else None for c in layer.sample_codes(pts).tolist()]
    assert set(codes.dropna()) == {"01", "12", "0701", "1203"}
