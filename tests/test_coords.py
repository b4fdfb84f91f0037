"""Tests of gis.coords: GCJ-02 / BD-09 conversions, conventions, metric CRS choice."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from gis._errors import CoordinateError
from gis.coords import (
    COORDINATE_CONVENTIONS,
    ConvergenceWarning,
    bd09_to_gcj02,
    bd09_to_wgs84,
    choose_metric_crs,
    convert_geoseries_convention,
    describe_crs,
    from_wgs84_lonlat,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    out_of_china,
    parse_convention,
    to_wgs84_lonlat,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = pyproj.Geod(ellps="WGS84")
CHONGQING = (106.45, 29.56)
ALL_CONVERSIONS = [
    wgs84_to_gcj02,
    gcj02_to_wgs84,
    gcj02_to_bd09,
    bd09_to_gcj02,
    wgs84_to_bd09,
    bd09_to_wgs84,
]

# inside the China test box (lon 73-135, lat 18-53)
china_lon = st.floats(73.0, 135.0, allow_nan=False)
china_lat = st.floats(18.0, 53.0, allow_nan=False)


def dist_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Geodesic distance in metres on the WGS84 ellipsoid (pyproj.Geod)."""
    l1, p1, l2, p2 = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (lon1, lat1, lon2, lat2))
    )
    return np.asarray(GEOD.inv(l1, p1, l2, p2)[2])


def china_sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(73.0, 135.0, n), rng.uniform(18.0, 53.0, n)


# --------------------------------------------------------------------------- forward
class TestReferenceValues:
    # Published test vectors of the widely used eviltransform library
    # (wgs lat, wgs lon, gcj lat, gcj lon): Shanghai, Shenzhen, Beijing.
    @pytest.mark.parametrize(
        ("wlat", "wlon", "glat", "glon"),
        [
            (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
            (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
            (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
        ],
    )
    def test_wgs84_to_gcj02_published_vectors(self, wlat, wlon, glat, glon):
        lon, lat = wgs84_to_gcj02(wlon, wlat)
        assert lon == pytest.approx(glon, abs=1e-9)
        assert lat == pytest.approx(glat, abs=1e-9)
        back = gcj02_to_wgs84(glon, glat)
        assert dist_m(*back, wlon, wlat) < 0.01

    def test_tiananmen(self):
        # widely quoted: WGS84 (116.397428, 39.90923) -> GCJ-02 ~ (116.403671, 39.910633)
        lon, lat = wgs84_to_gcj02(116.397428, 39.90923)
        assert lon == pytest.approx(116.403671, abs=2e-6)
        assert lat == pytest.approx(39.910633, abs=2e-6)

    def test_gcj02_to_bd09_published_vector(self):
        # gcoord's unit test: GCJ-02 (123, 45) -> BD-09 (123.00636499, 45.00636899)
        lon, lat = gcj02_to_bd09(123.0, 45.0)
        assert lon == pytest.approx(123.00636499, abs=1e-8)
        assert lat == pytest.approx(45.00636899, abs=1e-8)

    def test_shift_magnitudes_in_chongqing(self):
        lon, lat = np.meshgrid(np.linspace(105.3, 110.2, 25), np.linspace(28.2, 32.2, 25))
        gx, gy = wgs84_to_gcj02(lon, lat)
        gcj_shift = dist_m(lon, lat, gx, gy)
        assert gcj_shift.min() > 100 and gcj_shift.max() < 700
        bx, by = gcj02_to_bd09(gx, gy)
        bd_step = dist_m(gx, gy, bx, by)  # Baidu's extra ~0.0065°/0.006° offset
        assert 800 < bd_step.min() and bd_step.max() < 1000
        # the point the districts care about
        assert 100 < dist_m(*CHONGQING, *wgs84_to_gcj02(*CHONGQING)) < 700

    def test_shift_bounded_across_china(self):
        lon, lat = china_sample(20_000)
        d = dist_m(lon, lat, *wgs84_to_gcj02(lon, lat))
        assert d.max() < 750  # the "100-700 m" of the folklore, measured


# --------------------------------------------------------------------------- inverses
class TestInverses:
    @settings(max_examples=200, deadline=None)
    @given(china_lon, china_lat)
    def test_gcj_round_trip_property(self, lon, lat):
        back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
        assert dist_m(*back, lon, lat) < 0.01

    @settings(max_examples=200, deadline=None)
    @given(china_lon, china_lat)
    def test_bd_round_trip_property(self, lon, lat):
        back = bd09_to_wgs84(*wgs84_to_bd09(lon, lat))
        assert dist_m(*back, lon, lat) < 0.01

    @settings(max_examples=100, deadline=None)
    @given(china_lon, china_lat)
    def test_inverse_of_arbitrary_gcj_value_converges(self, lon, lat):
        # start from a GCJ-02 value (not a forward image): the forward image of the
        # result must reproduce it to the documented 1e-9 degrees
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            w = gcj02_to_wgs84(lon, lat)
            b = bd09_to_gcj02(lon, lat)
        assert np.max(np.abs(np.subtract(wgs84_to_gcj02(*w), (lon, lat)))) < 1e-9
        assert np.max(np.abs(np.subtract(gcj02_to_bd09(*b), (lon, lat)))) < 1e-9

    def test_vectorised_round_trip_everywhere_in_china(self):
        lon, lat = china_sample(50_000, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            gx, gy = wgs84_to_gcj02(lon, lat)
            assert dist_m(*gcj02_to_wgs84(gx, gy), lon, lat).max() < 0.01
            bx, by = wgs84_to_bd09(lon, lat)
            assert dist_m(*bd09_to_wgs84(bx, by), lon, lat).max() < 0.01
            assert dist_m(*bd09_to_gcj02(bx, by), gx, gy).max() < 0.01

    def test_iteration_beats_one_step_approximation(self):
        lon, lat = china_sample(20_000, seed=2)
        gx, gy = wgs84_to_gcj02(lon, lat)
        with pytest.warns(ConvergenceWarning, match="did not converge"):
            one_step = gcj02_to_wgs84(gx, gy, max_iter=0)
        err_one = dist_m(*one_step, lon, lat)
        err_iter = dist_m(*gcj02_to_wgs84(gx, gy), lon, lat)
        assert err_one.max() > 1.0  # the textbook approximation is metres off
        assert err_iter.max() < 1e-3

    def test_tolerance_is_honoured(self):
        gx, gy = wgs84_to_gcj02(*CHONGQING)
        w = gcj02_to_wgs84(gx, gy, tol=1e-12)
        assert np.max(np.abs(np.subtract(wgs84_to_gcj02(*w), (gx, gy)))) < 1e-12
        with pytest.raises(ValueError):
            gcj02_to_wgs84(gx, gy, tol=0.0)


# --------------------------------------------------------------------------- edges
class TestOutOfChinaAndNaN:
    outside = st.one_of(
        st.tuples(st.floats(-180, 72.0), st.floats(-90, 90)),
        st.tuples(st.floats(137.9, 180), st.floats(-90, 90)),
        st.tuples(st.floats(-180, 180), st.floats(-90, 0.8)),
        st.tuples(st.floats(-180, 180), st.floats(55.9, 90)),
    )

    @settings(max_examples=200, deadline=None)
    @given(outside)
    def test_gcj02_leaves_points_outside_china_unchanged(self, pt):
        lon, lat = pt
        assert out_of_china(lon, lat)
        assert wgs84_to_gcj02(lon, lat) == (lon, lat)
        assert gcj02_to_wgs84(lon, lat) == (lon, lat)
        # BD-09's own step is applied everywhere (documented choice)
        assert wgs84_to_bd09(lon, lat) == gcj02_to_bd09(lon, lat)

    def test_box_edges(self):
        assert not out_of_china(72.004, 0.8293)
        assert not out_of_china(137.8347, 55.8271)
        assert out_of_china(137.8348, 30.0)
        assert not out_of_china(np.nan, 30.0)  # NaN is not "foreign": it propagates

    @pytest.mark.parametrize(
        "func",
        ALL_CONVERSIONS,
    )
    def test_nan_propagates_without_touching_other_points(self, func):
        lon = np.array([np.nan, 106.45, 106.5, np.nan, 150.0])
        lat = np.array([29.5, np.nan, 29.6, np.nan, 30.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ConvergenceWarning for NaN input
            x, y = func(lon, lat)
        assert np.isnan(x[:2]).all() and np.isnan(y[:2]).all() and np.isnan(x[3]) and np.isnan(y[3])
        ref = func(lon[2], lat[2])
        assert (x[2], y[2]) == ref
        assert np.isfinite(x[4]) and np.isfinite(y[4])
        assert np.isnan(func(np.nan, np.nan)[0])


class TestShapes:
    @pytest.mark.parametrize(
        "func",
        ALL_CONVERSIONS,
    )
    def test_scalars_arrays_and_broadcasting(self, func):
        x, y = func(*CHONGQING)
        assert isinstance(x, np.float64) and isinstance(y, np.float64)
        lon = np.linspace(106.0, 107.0, 12).reshape(3, 4)
        ax, ay = func(lon, np.full((3, 4), 29.5))
        assert ax.shape == ay.shape == (3, 4)
        bx, by = func(lon, 29.5)  # scalar latitude broadcast
        np.testing.assert_array_equal(ax, bx)
        np.testing.assert_array_equal(ay, by)
        lx, ly = func([106.0, 106.5], [29.5, 29.6])  # plain lists
        assert lx.shape == (2,)
        assert (lx[0], ly[0]) == func(106.0, 29.5)
        ex, ey = func(np.array([]), np.array([]))
        assert ex.shape == ey.shape == (0,)

    def test_inputs_not_modified(self):
        lon = np.array([106.4, 106.5])
        lat = np.array([29.5, 29.6])
        keep = lon.copy(), lat.copy()
        gcj02_to_wgs84(lon, lat)
        bd09_to_wgs84(lon, lat)
        np.testing.assert_array_equal(lon, keep[0])
        np.testing.assert_array_equal(lat, keep[1])


# --------------------------------------------------------------------------- conventions
class TestParseConvention:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("wgs84", "wgs84"),
            ("WGS84", "wgs84"),
            ("WGS-84", "wgs84"),
            ("EPSG:4326", "wgs84"),
            ("epsg:4326", "wgs84"),
            (4326, "wgs84"),
            (pyproj.CRS("OGC:CRS84"), "wgs84"),
            ("cgcs2000", "cgcs2000"),
            ("CGCS2000", "cgcs2000"),
            ("EPSG:4490", "cgcs2000"),
            ("gcj02", "gcj02"),
            ("GCJ-02", "gcj02"),
            ("gcj_02", "gcj02"),
            ("火星坐标", "gcj02"),
            ("bd09", "bd09"),
            ("BD-09", "bd09"),
            ("bd09ll", "bd09"),
            ("百度坐标", "bd09"),
            (" gcj02 ", "gcj02"),
        ],
    )
    def test_named_conventions(self, value, expected):
        assert parse_convention(value) == expected
        assert expected in COORDINATE_CONVENTIONS

    @pytest.mark.parametrize("value", ["EPSG:4544", 4544, "4544", pyproj.CRS.from_epsg(4544)])
    def test_crs_values(self, value):
        crs = parse_convention(value)
        assert isinstance(crs, pyproj.CRS) and crs.to_epsg() == 4544

    def test_proj_string(self):
        crs = parse_convention("+proj=utm +zone=48 +datum=WGS84 +units=m +no_defs")
        assert isinstance(crs, pyproj.CRS) and crs.is_projected

    @pytest.mark.parametrize("value", ["mars", "", "   ", None, "EPSG:999999", 3.5, "bd09mc", True])
    def test_rejected_values_list_what_is_accepted(self, value):
        with pytest.raises(CoordinateError) as info:
            parse_convention(value)
        msg = str(info.value)
        for name in ("wgs84", "cgcs2000", "gcj02", "bd09", "EPSG:"):
            assert name in msg

    def test_bd09_mercator_named_in_error(self):
        with pytest.raises(CoordinateError, match="Mercator"):
            parse_convention("BD09MC")


class TestToWgs84:
    def test_shifted_conventions_use_iterative_inverses(self):
        lon, lat = china_sample(100, seed=3)
        for conv, func in (("GCJ-02", gcj02_to_wgs84), ("百度坐标", bd09_to_wgs84)):
            got = to_wgs84_lonlat(lon, lat, conv)
            np.testing.assert_array_equal(got[0], func(lon, lat)[0])
            np.testing.assert_array_equal(got[1], func(lon, lat)[1])

    @pytest.mark.parametrize("conv", ["wgs84", "cgcs2000", "EPSG:4490"])
    def test_pass_through(self, conv):
        lon, lat = china_sample(10, seed=4)
        x, y = to_wgs84_lonlat(lon, lat, conv)
        np.testing.assert_array_equal(x, lon)
        np.testing.assert_array_equal(y, lat)

    def test_projected_crs_through_pyproj(self):
        lon = np.array([106.3, 106.45, np.nan])
        lat = np.array([29.5, 29.6, 29.6])
        t = pyproj.Transformer.from_crs(4326, 4544, always_xy=True)
        e, n = t.transform(lon, lat)
        x, y = to_wgs84_lonlat(e, n, "EPSG:4544")
        np.testing.assert_allclose(x[:2], lon[:2], atol=1e-9)
        np.testing.assert_allclose(y[:2], lat[:2], atol=1e-9)
        assert np.isnan(x[2]) and np.isnan(y[2])
        assert 300_000 < e[0] < 700_000  # 3-degree zone: no zone-number prefix

    @pytest.mark.parametrize("conv", ["gcj02", "bd09", "wgs84", "EPSG:4545", "EPSG:32648"])
    def test_from_wgs84_is_the_inverse(self, conv):
        lon, lat = china_sample(500, seed=5)
        lon = 106.0 + (lon - 73.0) / 62.0 * 3.0  # keep projected zones near their CM
        lat = 28.0 + (lat - 18.0) / 35.0 * 4.0
        x, y = from_wgs84_lonlat(lon, lat, conv)
        back = to_wgs84_lonlat(x, y, conv)
        assert dist_m(*back, lon, lat).max() < 0.01
        if conv in ("gcj02", "bd09"):
            assert dist_m(x, y, lon, lat).min() > 100  # really shifted


class TestGeoSeriesConvention:
    @staticmethod
    def _layer(crs="EPSG:4326") -> gpd.GeoSeries:
        poly = Polygon(
            [(106.40, 29.50), (106.48, 29.50), (106.48, 29.58), (106.40, 29.58)],
            holes=[[(106.42, 29.52), (106.44, 29.52), (106.44, 29.54)]],
        )
        geoms = [
            Point(106.45, 29.56),
            LineString([(106.40, 29.50), (106.41, 29.51), (106.43, 29.55)]),
            poly,
            MultiPolygon([poly, Polygon([(106.6, 29.7), (106.7, 29.7), (106.7, 29.8)])]),
            Point(106.46, 29.57, 250.0),  # 3D vertex: Z must survive
            None,
            Point(),
        ]
        return gpd.GeoSeries(geoms, index=list("abcdefg"), name="geometry", crs=crs)

    @pytest.mark.parametrize(
        ("conv", "func"), [("gcj02", gcj02_to_wgs84), ("BD-09", bd09_to_wgs84)]
    )
    def test_every_vertex_converted(self, conv, func):
        gs = self._layer()
        out = convert_geoseries_convention(gs, conv)
        assert out.crs.to_epsg() == 4326
        assert list(out.index) == list(gs.index) and out.name == gs.name
        assert out.geom_type.tolist()[:5] == gs.geom_type.tolist()[:5]
        valid = ~shapely.is_missing(gs.values) & ~shapely.is_empty(gs.values)
        np.testing.assert_array_equal(
            shapely.get_num_coordinates(out[valid].values),
            shapely.get_num_coordinates(gs[valid].values),
        )
        assert out.iloc[5] is None and out.iloc[6].is_empty
        src = shapely.get_coordinates(gs[valid].values)
        got = shapely.get_coordinates(out[valid].values)
        ex, ey = func(src[:, 0], src[:, 1])
        np.testing.assert_allclose(got[:, 0], ex, atol=1e-12)
        np.testing.assert_allclose(got[:, 1], ey, atol=1e-12)
        shift = dist_m(src[:, 0], src[:, 1], got[:, 0], got[:, 1])
        assert shift.min() > 100  # every vertex moved by the GCJ/BD offset
        assert out.iloc[4].has_z and out.iloc[4].z == 250.0
        # converting back with the forward formula restores the input
        fwd = wgs84_to_gcj02 if conv == "gcj02" else wgs84_to_bd09
        rx, ry = fwd(got[:, 0], got[:, 1])
        assert dist_m(rx, ry, src[:, 0], src[:, 1]).max() < 0.01

    @pytest.mark.parametrize("crs", [None, "EPSG:4490", "OGC:CRS84"])
    def test_lonlat_crs_variants_accepted(self, crs):
        out = convert_geoseries_convention(self._layer(crs), "gcj02")
        assert out.crs.to_epsg() == 4326

    def test_wgs84_and_cgcs2000_pass_through(self):
        gs = self._layer("EPSG:4490")
        out = convert_geoseries_convention(gs, "cgcs2000")
        assert out.crs.to_epsg() == 4326
        np.testing.assert_array_equal(
            shapely.get_coordinates(out.values, include_z=True),
            shapely.get_coordinates(gs.values, include_z=True),
        )

    def test_projected_convention_reprojects(self):
        gs = self._layer().iloc[:4].to_crs(4544)
        out = convert_geoseries_convention(gs.set_crs(None, allow_override=True), "EPSG:4544")
        back = self._layer().iloc[:4]
        got = shapely.get_coordinates(out.values)
        ref = shapely.get_coordinates(back.values)
        np.testing.assert_allclose(got, ref, atol=1e-9)

    def test_lonlat_convention_on_projected_layer_rejected(self):
        gs = self._layer().iloc[:4].to_crs(4544)
        with pytest.raises(CoordinateError, match="EPSG:4544"):
            convert_geoseries_convention(gs, "gcj02")
        with pytest.raises(CoordinateError, match="projected"):
            convert_geoseries_convention(gs.set_crs(None, allow_override=True), "gcj02")

    def test_empty_series(self):
        out = convert_geoseries_convention(gpd.GeoSeries([], crs=4326), "bd09")
        assert len(out) == 0 and out.crs.to_epsg() == 4326


# --------------------------------------------------------------------------- metric CRS
class TestChooseMetricCrs:
    def test_shapingba_is_cm105(self):
        assert choose_metric_crs(106.25, 106.50).to_epsg() == 4544
        assert choose_metric_crs((106.25, 29.45, 106.50, 29.80)).to_epsg() == 4544
        assert choose_metric_crs(shapely.box(106.25, 29.45, 106.50, 29.80)).to_epsg() == 4544

    def test_108e_district(self):
        assert choose_metric_crs(107.8, 108.3).to_epsg() == 4545
        assert choose_metric_crs((106.6, 106.9)).to_epsg() == 4545  # east of the 106.5° edge

    def test_from_projected_geodataframe(self):
        gdf = gpd.GeoDataFrame(
            geometry=[shapely.box(106.3, 29.5, 106.4, 29.6)], crs=4326
        ).to_crs(32648)
        assert choose_metric_crs(gdf).to_epsg() == 4544

    @settings(max_examples=100, deadline=None)
    @given(st.floats(73.6, 136.4), st.floats(0.0, 1.2))
    def test_central_meridian_within_half_zone(self, lon_c, half_width):
        crs = choose_metric_crs(lon_c - half_width / 2, lon_c + half_width / 2)
        code = crs.to_epsg()
        assert 4534 <= code <= 4554
        cm = 75 + 3 * (code - 4534)
        assert f"CM {cm}E" in crs.name
        assert abs(lon_c - cm) <= 1.5 + 1e-9

    @pytest.mark.parametrize(
        ("extent", "lat", "epsg"),
        [
            ((2.25, 2.45), None, 32631),  # Paris: UTM 31N
            ((-46.8, -46.4), -23.5, 32723),  # São Paulo: UTM 23S
            ((60.0, 60.2), None, 32641),  # west of China's CM range
            ((110.3, 110.5), -7.0, 32749),  # Java: CM 111 but latitude not in China
        ],
    )
    def test_outside_china_falls_back_to_utm(self, extent, lat, epsg):
        assert choose_metric_crs(*extent, lat=lat).to_epsg() == epsg

    @pytest.mark.parametrize(
        "args", [(106.5, 106.2), (np.nan, 106.0), (500_000.0, 520_000.0), ((1.0, 2.0, 3.0),)]
    )
    def test_bad_extents(self, args):
        with pytest.raises(CoordinateError):
            choose_metric_crs(*args)

    def test_describe_crs(self):
        text = describe_crs(choose_metric_crs(106.25, 106.5))
        assert text.startswith("EPSG:4544") and "Gauss-Kruger CM 105E" in text and "metre" in text
        assert "火星坐标" in describe_crs("GCJ-02")
        assert describe_crs(4490).startswith("cgcs2000")
        assert "geographic" in describe_crs("EPSG:4214")
