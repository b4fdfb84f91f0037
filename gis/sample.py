"""Seeded generator of the sample district (样例区县) and its truth files.

The sample is a realistic but **generated** district (样例数据 SAMPLE DATA — not a
real district) laid over the real extent of Shapingba, Chongqing (沙坪坝区,
about 106.25–106.50°E, 29.45–29.80°N): an irregular outline whose east edge is the
Jialing river (嘉陵江), 23 townships (镇街) as Voronoi cells with Shapingba's
township names, the two 四山 ridges that cross it (缙云山 Jinyun in the north-west,
中梁山 Zhongliang west of the urban core) as zoned bands, a GB/T 21010 land-use
layer, a population raster, an OSM XML road network, a site ledger (台账) in
GCJ-02 and GB18030 with a few bad rows, incident records (摸排/举报/巡查/执法
记录) with planted clusters and rebounds, and candidate sites (垃圾中转站, 一场两用)
in BD-09.

Everything the generator plants is written to ``truth/`` so that analyses can be
tested against it: the situation of every site (``sites_truth.csv``), every bad
input row (``bad_rows.csv``), the incident clusters (``clusters_truth.csv``,
``incidents_truth.csv``), the candidate sites (``candidates_truth.csv``) and the
townships (``townships_truth.csv``).

Geometry is built in the district's metric CRS (EPSG:4544, CGCS2000 3° Gauss-Krüger
CM 105°E) and converted to lon/lat with pyproj; CGCS2000 (EPSG:4490) and WGS84 are
treated as identical (they differ by well under 1 m). GCJ-02 / BD-09 come from
:mod:`gis.coords`. Every random draw comes from one :class:`numpy.random.Generator`
seeded by ``seed``, so the same seed gives the same CSV bytes.

Situation codes (``truth/sites_truth.csv``, column ``planted``) are rule-independent
facts about a site, evaluated on the generated layers:

``four_mountains:<level>``
    inside the 四山 band of that level (``no_build``, ``key_control``, ``general_control``).
``ecological_red_line``, ``basic_farmland``, ``water_source``
    inside a zone of that type.
``landuse_not_allowed:<code>``
    on a GB/T 21010 class whose ``allowed_tiers`` do not include the site's tier.
``near_receptor:<receptor>:<m>``
    (sorting centres, transfer stations, dismantlers) a receptor parcel within the
    record radius: school / hospital for the three tiers, residential and water source
    (1103 parcels or water-source zones) for sorting centres and dismantlers; ``<m>``
    is the distance in whole metres.
``no_business_licence``, ``no_dismantling_qualification``, ``no_police_filing``
    a ``无`` / ``未取得`` / ``未备案`` cell in the ledger.
``floor_area_below_norm``
    transfer station < 500 m², collection point < 10 m², sorting centre < 3,000 m².
``far_from_transfer_station``
    a collection point more than 5 km (straight line) from every transfer station.

A *clean* site has no situation and margins that make that unambiguous: ≥ 30 m from
every parcel and zone boundary, ≥ the record radius from every receptor, all licences
present, and (points) ≤ 2 km straight-line from an active transfer station.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
import yaml
from pyproj import Transformer
from scipy.spatial import cKDTree

from . import settings
from .coords import wgs84_to_bd09, wgs84_to_gcj02
from .export import write_csv, write_excel, write_geotiff, write_gpkg, atomic_path
from .schema import INCIDENT_KIND_LABEL_ZH, IncidentKind, RejectReason, Tier, TIER_LABEL_ZH

FloatArray = npt.NDArray[np.float64]

#: The metric CRS of the sample district (CGCS2000 3° GK CM 105°E).
METRIC_EPSG = 4544
#: Real bounding box of Shapingba (lon_min, lat_min, lon_max, lat_max).
BOX = (106.25, 29.45, 106.50, 29.80)
#: Resident population of the sample district.
TOTAL_POPULATION = 1_400_000
DISTRICT_NAME = "沙坪坝区（样例）"
DISTRICT_CODE = "500106"

#: Distance from a ridge line (m) to the outer edge of each 四山 level.
BAND_HALF_WIDTH_M = {"no_build": 900.0, "key_control": 1800.0, "general_control": 3000.0}
LEVEL_ZH = {"no_build": "禁建区", "key_control": "重点控建区", "general_control": "一般控建区"}

#: Floor-area norms (m²) below which ``floor_area_below_norm`` is recorded.
FLOOR_NORM_M2 = {Tier.TRANSFER_STATION: 500.0, Tier.COLLECTION_POINT: 10.0, Tier.SORTING_CENTRE: 3000.0}
#: Straight-line distance beyond which a collection point is ``far_from_transfer_station``.
FAR_FROM_TS_M = 5000.0
#: Clean points lie within this straight-line distance of an active transfer station
#: (a road route of ≤ 3 km, the linkage limit, is then likely).
CLEAN_TS_M = 2000.0
#: Margin to every parcel / zone boundary for clean and planted sites.
MARGIN_M = 30.0
#: Record radius of ``near_receptor`` codes per receptor kind, and the tiers they apply to.
RECEPTOR_RADIUS_M = {"school": 300.0, "hospital": 300.0, "residential": 300.0, "water_source": 800.0}
RECEPTOR_TIERS = {
    "school": (Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.DISMANTLER),
    "hospital": (Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.DISMANTLER),
    "residential": (Tier.SORTING_CENTRE, Tier.DISMANTLER),
    "water_source": (Tier.SORTING_CENTRE, Tier.DISMANTLER),
}
#: Distances (m) that rule tables use as thresholds; planted distances keep clear of them.
_THRESHOLDS_M = np.array([100.0, 150.0, 200.0, 300.0, 500.0, 800.0])

LEDGER_HEADERS = [
    "网点编号", "网点名称", "网点层级", "经营者", "经营地址", "所属镇街", "经营状态", "营业执照",
    "资质认定", "公安备案", "日处理能力(吨)", "占地面积(㎡)", "经营范围", "经度", "纬度",
]
INCIDENT_HEADERS = [
    "记录编号", "发现日期", "问题类型", "线索来源", "处置状态", "关停日期", "五大总成流向",
    "所属镇街", "地址", "问题描述", "经度", "纬度",
]
CANDIDATE_HEADERS = ["编号", "名称", "类型", "地址", "经度", "纬度"]


# --------------------------------------------------------------------------- scales
@dataclass(frozen=True)
class ScaleParams:
    """Sizes of one generation scale.

    Attributes
    ----------
    name
        ``small`` (bundled), ``district`` (~5×) or ``city`` (benchmarks).
    population_res_deg
        Cell size of ``population.tif`` (degrees).
    landuse_raster_m
        Cell size of ``landuse.tif`` (metres).
    road_urban_m, road_rural_m
        Spacing of the urban and rural road grids.
    n_collection, n_dropoff, n_dismantler
        Clean collection points, drop-off points and dismantlers (before planting).
    plant_factor
        How many times the list of planted situations is repeated.
    n_clusters, n_clusters_in_band
        Planted incident clusters, and how many of them lie inside 四山 bands.
    noise_share
        Share of background (noise) incidents among all incidents.
    n_candidates
        Garbage-transfer-station candidates.
    """

    name: str
    population_res_deg: float
    landuse_raster_m: float
    road_urban_m: float
    road_rural_m: float
    n_collection: int
    n_dropoff: int
    n_dismantler: int
    plant_factor: int
    n_clusters: int
    n_clusters_in_band: int
    noise_share: float
    n_candidates: int

    @property
    def expected_sites(self) -> int:
        """Lower bound of the valid ledger rows (planted sites not counted)."""
        return self.n_collection + self.n_dropoff + self.n_dismantler + 1

    @property
    def expected_incidents(self) -> int:
        """Expected incident count: mean cluster size 37.5 (15–60), plus noise."""
        return int(self.n_clusters * 37.5 / (1.0 - self.noise_share))

    def population_cells(self) -> int:
        """Cells of the population grid over :data:`BOX`."""
        nx = int(round((BOX[2] - BOX[0]) / self.population_res_deg))
        ny = int(round((BOX[3] - BOX[1]) / self.population_res_deg))
        return nx * ny


SCALES: dict[str, ScaleParams] = {
    # one district of a municipal mosaic (gis.municipal): 38 of them give >= 200k sites,
    # >= 2M incidents and >= 10M population cells
    "municipal": ScaleParams("municipal", 0.0005, 20.0, 200.0, 1000.0, 4300, 1800, 20, 4, 860, 30, 0.4, 100),
    "small": ScaleParams("small", 0.001, 20.0, 250.0, 1500.0, 200, 90, 1, 1, 12, 5, 0.4, 30),
    "district": ScaleParams("district", 0.001, 20.0, 250.0, 1500.0, 1000, 450, 10, 3, 60, 10, 0.4, 60),
    "city": ScaleParams("city", 0.00023, 20.0, 150.0, 800.0, 14000, 6000, 60, 10, 1800, 40, 0.4, 200),
}


@dataclass(frozen=True)
class Tile:
    """Placement of one district of a municipal mosaic (see :mod:`gis.municipal`).

    The district is generated exactly as the single sample district, then moved by
    ``(dlon, dlat)`` degrees; its outline is the whole :data:`BOX` (so that tiles
    share their borders) and its two 四山 ridges are periodic in latitude (so that
    each range runs on, unbroken, into the districts north and south of it).

    Attributes
    ----------
    dlon, dlat
        Offset of the tile from :data:`BOX` (degrees).
    name, code
        District name and administrative code.
    range_names
        Names given to the west (``缙云山``) and east (``中梁山``) ridge.
    """

    dlon: float
    dlat: float
    name: str
    code: str
    range_names: tuple[str, str] = ("缙云山", "中梁山")

    def rename(self, text: Any) -> Any:
        """Replace the generator's ridge names by this tile's range names."""
        if not isinstance(text, str):
            return text
        names = {"缙云山": self.range_names[0], "中梁山": self.range_names[1]}
        return re.sub("缙云山|中梁山", lambda m: names[m.group()], text)


#: The tile being generated (None for the single sample district). Module state:
#: generation of a tile happens in one process at a time (gis.municipal uses processes).
_TILE: Tile | None = None


@dataclass
class SampleResult:
    """What :func:`generate` wrote.

    Attributes
    ----------
    out
        The sample folder (holds ``project.yaml``).
    seed, scale
        The generation parameters.
    counts
        Rows / features per layer (``sites`` counts valid ledger rows, ``sites_rows``
        all rows including the bad ones; same for incidents).
    truth_files
        Paths of the truth files by name (``sites``, ``bad_rows``, ``clusters``,
        ``incidents``, ``candidates``, ``townships``).
    files
        Every data file written, by role.
    """

    out: Path
    seed: int
    scale: str
    counts: dict[str, int] = field(default_factory=dict)
    truth_files: dict[str, Path] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------- coordinates
@functools.lru_cache(maxsize=1)
def _transformers() -> tuple[Transformer, Transformer]:
    fwd = Transformer.from_crs("EPSG:4326", f"EPSG:{METRIC_EPSG}", always_xy=True)
    inv = Transformer.from_crs(f"EPSG:{METRIC_EPSG}", "EPSG:4326", always_xy=True)
    return fwd, inv


def to_metric(lon: Any, lat: Any) -> tuple[FloatArray, FloatArray]:
    """WGS84 lon/lat → EPSG:4544 metres (of the tile's position when generating a tile)."""
    dlon, dlat = (_TILE.dlon, _TILE.dlat) if _TILE is not None else (0.0, 0.0)
    x, y = _transformers()[0].transform(np.asarray(lon, float) + dlon, np.asarray(lat, float) + dlat)
    return np.asarray(x, float), np.asarray(y, float)


def to_lonlat(x: Any, y: Any) -> tuple[FloatArray, FloatArray]:
    """EPSG:4544 metres → WGS84 lon/lat."""
    lon, lat = _transformers()[1].transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(lon, float), np.asarray(lat, float)


def _ll_poly(lon0: float, lat0: float, lon1: float, lat1: float, n: int = 20) -> shapely.Polygon:
    """A lon/lat box as a densified metric polygon."""
    t = np.linspace(0, 1, n, endpoint=False)
    lon = np.concatenate([lon0 + (lon1 - lon0) * t, np.full(n, lon1), lon1 - (lon1 - lon0) * t, np.full(n, lon0)])
    lat = np.concatenate([np.full(n, lat0), lat0 + (lat1 - lat0) * t, np.full(n, lat1), lat1 - (lat1 - lat0) * t])
    x, y = to_metric(lon, lat)
    return shapely.Polygon(np.column_stack([x, y]))


def _ll_line(points: list[tuple[float, float]]) -> shapely.LineString:
    lon, lat = np.array(points).T
    x, y = to_metric(lon, lat)
    return shapely.LineString(np.column_stack([x, y]))


def _smooth_noise(rng: np.random.Generator, x: FloatArray, y: FloatArray, wavelength_m: float, n: int = 6) -> FloatArray:
    """Smooth random field in about [-1, 1]: a sum of ``n`` random plane waves."""
    theta = rng.uniform(0, 2 * np.pi, n)
    k = 2 * np.pi / (wavelength_m * rng.uniform(0.7, 1.4, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    field_ = np.zeros(np.shape(x))
    for i in range(n):
        field_ = field_ + np.cos(k[i] * (np.cos(theta[i]) * x + np.sin(theta[i]) * y) + phase[i])
    return field_ / math.sqrt(n / 2.0) / 1.5


# ----------------------------------------------------------------------- townships
#: Township name, kind, anchor lon/lat (jittered), code suffix.
TOWNSHIPS: tuple[tuple[str, str, float, float, str], ...] = (
    ("井口街道", "街道", 106.470, 29.690, "001"),
    ("双碑街道", "街道", 106.470, 29.650, "002"),
    ("童家桥街道", "街道", 106.470, 29.615, "003"),
    ("石井坡街道", "街道", 106.470, 29.585, "004"),
    ("磁器口街道", "街道", 106.470, 29.555, "005"),
    ("渝碚路街道", "街道", 106.470, 29.525, "006"),
    ("沙坪坝街道", "街道", 106.470, 29.495, "007"),
    ("歌乐山街道", "街道", 106.437, 29.680, "008"),
    ("詹家溪街道", "街道", 106.437, 29.635, "009"),
    ("山洞街道", "街道", 106.437, 29.600, "010"),
    ("小龙坎街道", "街道", 106.437, 29.565, "011"),
    ("天星桥街道", "街道", 106.437, 29.535, "012"),
    ("覃家岗街道", "街道", 106.437, 29.505, "013"),
    ("新桥街道", "街道", 106.440, 29.476, "014"),
    ("西永街道", "街道", 106.305, 29.560, "015"),
    ("虎溪街道", "街道", 106.335, 29.580, "016"),
    ("陈家桥街道", "街道", 106.300, 29.615, "017"),
    ("土主街道", "街道", 106.340, 29.625, "018"),
    ("青木关镇", "镇", 106.290, 29.740, "101"),
    ("凤凰镇", "镇", 106.345, 29.690, "102"),
    ("中梁镇", "镇", 106.425, 29.745, "103"),
    ("回龙坝镇", "镇", 106.305, 29.490, "104"),
    ("曾家镇", "镇", 106.350, 29.510, "105"),
)
#: Townships deliberately left without a transfer station.
TOWNSHIPS_WITHOUT_TS = ("中梁镇", "凤凰镇", "詹家溪街道")
_TOWNSHIP_NAMES = np.array([t[0] for t in TOWNSHIPS], dtype=object)
_TOWNSHIP_SHORT = np.array([t[0].removesuffix("街道").removesuffix("镇") for t in TOWNSHIPS], dtype=object)


def _seq_ids(prefix: str, numbers: npt.ArrayLike, width: int) -> npt.NDArray[np.object_]:
    """``prefix`` + zero-padded ``numbers`` (vectorised)."""
    return np.char.add(prefix, np.char.zfill(np.asarray(numbers).astype(str), width)).astype(object)

_ROAD_STEMS = (
    "天陈", "汉渝", "凤天", "小龙坎", "沙坪", "杨公桥", "土湾", "石碾盘", "双碑", "井口", "歌乐", "西永",
    "学城", "虎溪", "曾家", "陈家桥", "青木", "凤凰", "回龙", "土主", "中梁", "覃家岗", "渝碚", "新桥",
    "高滩岩", "石井", "童家", "磁器口", "詹家溪", "大学城", "西园", "微电园", "梨树湾", "站东", "站西",
    "金沙", "三峡", "团结", "青凤", "康居", "景苑", "联芳", "山洞", "白鹤", "林园", "烈士墓", "红槽房",
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华平刚桂兰玉霞建国志红文斌波辉鹏亮宇浩凯健俊帆鑫"
_COMMUNITY = ("社区", "村", "小区", "苑", "花园", "家园")


# ------------------------------------------------------------------------ geometry
@dataclass
class _Geo:
    """The district's geometry in EPSG:4544 (built once per generation)."""

    district: shapely.Geometry
    river: shapely.Geometry
    riverside: shapely.Geometry
    ridges: dict[str, shapely.LineString]
    bands: dict[tuple[str, str], shapely.Geometry]  # (range name, level) -> polygon
    urban_core: shapely.Geometry
    new_town: shapely.Geometry
    university: shapely.Geometry
    industrial: dict[str, shapely.Geometry]
    reservoirs: list[shapely.Geometry]
    reservoir_names: list[str]
    water_source: list[shapely.Geometry]
    seeds: FloatArray  # township anchor points (n, 2)
    townships: list[shapely.Geometry]
    town_discs: shapely.Geometry


def _district_outline(rng: np.random.Generator) -> tuple[shapely.Geometry, shapely.Geometry, shapely.Geometry]:
    """Irregular outline inside :data:`BOX`; east edge on the Jialing river.

    Returns ``(district, river, river centre line)``.
    """
    cx, cy = to_metric(106.385, 29.625)
    a, b = 12_000.0, 17_000.0
    theta = np.linspace(0, 2 * np.pi, 144, endpoint=False)
    wob = np.zeros_like(theta)
    for h, amp in ((2, 0.05), (3, 0.05), (5, 0.035), (7, 0.02)):
        wob += amp * np.cos(h * theta + rng.uniform(0, 2 * np.pi))
    c, s = np.cos(theta), np.sin(theta)
    r = (np.abs(c) ** 3 + np.abs(s) ** 3) ** (-1 / 3) * (1 + wob)
    outline = shapely.Polygon(np.column_stack([cx + a * r * c, cy + b * r * s]))
    outline = shapely.intersection(outline, _ll_poly(*BOX, n=40))
    if _TILE is not None:  # mosaic tiles fill their box so that neighbours share borders
        outline = _ll_poly(*BOX, n=40)
    lat = np.linspace(BOX[1] - 0.02, BOX[3] + 0.02, 80)
    phase = rng.uniform(0, 2 * np.pi)
    lon = 106.486 + 0.006 * np.sin((lat - BOX[1]) / 0.35 * 2 * np.pi * 1.3 + phase)
    rx, ry = to_metric(lon, lat)
    river_line = shapely.LineString(np.column_stack([rx, ry]))
    west = shapely.Polygon(
        np.vstack([[rx[0] - 60_000, ry[0]], np.column_stack([rx + 150.0, ry]), [rx[-1] - 60_000, ry[-1]]])
    )
    district = shapely.intersection(outline, west) if _TILE is None else outline
    district = shapely.make_valid(district)
    if district.geom_type != "Polygon":
        district = max(shapely.get_parts(district), key=lambda g: g.area)
    river = shapely.intersection(district, shapely.buffer(river_line, 150.0))
    return district, river, river_line


def _build_geometry(rng: np.random.Generator) -> _Geo:
    district, river, river_line = _district_outline(rng)
    riverside = shapely.intersection(district, shapely.buffer(river_line, 320.0))
    ridges = {
        "中梁山": _ll_line([(106.375, 29.43), (106.397, 29.62), (106.418, 29.82)]),
        "缙云山": _ll_line([(106.283, 29.675), (106.333, 29.82)]),
    }
    if _TILE is not None:  # periodic in latitude (period = box height): continuous across tiles
        lat = np.linspace(BOX[1] - 0.1, BOX[3] + 0.1, 181)
        ph = 2 * np.pi * (lat - BOX[1]) / (BOX[3] - BOX[1])
        ridges = {
            "中梁山": _ll_line(list(zip(106.398 + 0.010 * np.sin(ph), lat))),
            "缙云山": _ll_line(list(zip(106.262 + 0.004 * np.sin(ph + 1.0), lat))),
        }
    bands: dict[tuple[str, str], shapely.Geometry] = {}
    for name, line in ridges.items():
        inner = None
        for level in ("no_build", "key_control", "general_control"):
            buf = shapely.buffer(line, BAND_HALF_WIDTH_M[level], cap_style="flat", quad_segs=4)
            ring = buf if inner is None else shapely.difference(buf, inner)
            bands[(name, level)] = shapely.intersection(ring, district)
            inner = buf
    all_bands = shapely.union_all(list(bands.values()))
    zl = ridges["中梁山"]
    zl_wide = shapely.buffer(zl, 3300.0, cap_style="flat")
    jy_wide = shapely.buffer(ridges["缙云山"], 3300.0, cap_style="flat")
    zc = np.asarray(zl.coords)
    east_half = shapely.Polygon(np.vstack([zc, [zc[-1][0] + 60_000, zc[-1][1]], [zc[0][0] + 60_000, zc[0][1]]]))
    west_half = shapely.Polygon(np.vstack([zc, [zc[-1][0] - 60_000, zc[-1][1]], [zc[0][0] - 60_000, zc[0][1]]]))
    urban_core = shapely.difference(
        shapely.intersection(shapely.intersection(district, _ll_poly(106.3, 29.468, 106.51, 29.712)), east_half), zl_wide
    )
    urban_core = shapely.difference(urban_core, river)
    new_town = shapely.difference(
        shapely.intersection(shapely.intersection(district, _ll_poly(106.282, 29.535, 106.40, 29.645)), west_half),
        shapely.union(zl_wide, jy_wide),
    )
    university = shapely.intersection(new_town, _ll_poly(106.312, 29.598, 106.35, 29.64))
    industrial = {
        "a": shapely.intersection(new_town, _ll_poly(106.282, 29.537, 106.312, 29.572)),
        "b": shapely.intersection(
            urban_core,
            shapely.difference(shapely.buffer(zl, 4700.0, cap_style="flat"), zl_wide).intersection(
                _ll_poly(106.3, 29.62, 106.5, 29.70)
            ),
        ),
        "c": shapely.difference(shapely.intersection(district, _ll_poly(106.318, 29.462, 106.352, 29.492)), all_bands),
    }
    res_specs = [("红岩水库", 106.361, 29.752, 520.0, 240.0, 20.0), ("双河水库", 106.298, 29.512, 480.0, 260.0, -35.0)]
    reservoirs, names, protection = [], [], []
    for name, lon, lat, ax, by, rot in res_specs:
        x0, y0 = to_metric(lon, lat)
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        wob = 1 + 0.12 * np.cos(3 * t + rng.uniform(0, 6.3))
        ex, ey = ax * wob * np.cos(t), by * wob * np.sin(t)
        cr, sr = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        poly = shapely.Polygon(np.column_stack([x0 + cr * ex - sr * ey, y0 + sr * ex + cr * ey]))
        poly = shapely.intersection(poly, district)
        reservoirs.append(poly)
        names.append(name)
        protection.append(shapely.intersection(shapely.buffer(poly, 400.0), district))
    # townships: Voronoi cells of jittered anchors
    lon = np.array([t[2] for t in TOWNSHIPS])
    lat = np.array([t[3] for t in TOWNSHIPS])
    sx, sy = to_metric(lon, lat)
    sx = sx + rng.normal(0, 250.0, len(sx))
    sy = sy + rng.normal(0, 250.0, len(sy))
    seeds = np.column_stack([sx, sy])
    vor = shapely.voronoi_polygons(
        shapely.multipoints(seeds), extend_to=shapely.buffer(district, 5000.0).envelope, ordered=True
    )
    cells = list(shapely.get_parts(vor))
    townships = [shapely.intersection(c, district) for c in cells]
    is_town = np.array([t[1] == "镇" for t in TOWNSHIPS])
    discs = shapely.buffer(shapely.points(seeds[is_town]), 650.0)
    town_discs = shapely.difference(
        shapely.intersection(shapely.union_all(discs), district), shapely.union_all([bands[k] for k in bands if k[1] != "general_control"])
    )
    return _Geo(
        district=district, river=river, riverside=riverside, ridges=ridges, bands=bands, urban_core=urban_core,
        new_town=new_town, university=university, industrial=industrial, reservoirs=reservoirs,
        reservoir_names=names, water_source=protection, seeds=seeds, townships=townships, town_discs=town_discs,
    )


def _township_of(geo: _Geo, x: FloatArray, y: FloatArray) -> npt.NDArray[np.int64]:
    """Index of the township (nearest anchor = its Voronoi cell) of each point."""
    _, idx = cKDTree(geo.seeds).query(np.column_stack([x, y]))
    return np.asarray(idx, dtype=np.int64)


def _contains(geom: shapely.Geometry, x: FloatArray, y: FloatArray) -> npt.NDArray[np.bool_]:
    shapely.prepare(geom)
    return shapely.contains_xy(geom, x, y)


# -------------------------------------------------------------------- population
def _density(geo: _Geo, rng_fields: dict[str, Any], x: FloatArray, y: FloatArray) -> FloatArray:
    """Relative resident density at metric points (persons per unit area, unscaled)."""
    n1 = np.clip(0.5 + 0.5 * rng_fields["noise"](x, y), 0.0, 1.0)
    core = _contains(geo.urban_core, x, y)
    newt = _contains(geo.new_town, x, y)
    town = _contains(geo.town_discs, x, y)
    cx, cy = rng_fields["centre"]
    d_centre = np.hypot(x - cx, y - cy)
    dens = np.full(np.shape(x), 0.08) * (0.5 + n1)
    dens = np.where(town, 0.60 * (0.6 + 0.8 * n1), dens)
    dens = np.where(newt, 0.40 * (0.4 + 1.2 * n1), dens)
    dens = np.where(core, (0.7 + 0.6 * n1) * (1.0 + 1.2 * np.exp(-((d_centre / 4000.0) ** 2))), dens)
    for name, g in geo.industrial.items():
        dens = np.where(_contains(g, x, y), dens * 0.25, dens)
    for (_, level), g in geo.bands.items():
        mult = {"no_build": 0.0, "key_control": 0.2, "general_control": 0.6}[level]
        dens = np.where(_contains(g, x, y), dens * mult, dens)
    water = shapely.union_all([geo.river, *geo.reservoirs])
    dens = np.where(_contains(water, x, y), 0.0, dens)
    dens = np.where(_contains(geo.district, x, y), dens, np.nan)
    return dens


@dataclass
class _Population:
    array: npt.NDArray[np.float32]  # (ny, nx), -1 outside
    res: float
    lon: FloatArray  # cell-centre lon of valid cells
    lat: FloatArray
    pop: FloatArray  # persons of valid cells
    township: npt.NDArray[np.int64]


def _population(geo: _Geo, p: ScaleParams, fields_: dict[str, Any]) -> _Population:
    res = p.population_res_deg
    nx = int(round((BOX[2] - BOX[0]) / res))
    ny = int(round((BOX[3] - BOX[1]) / res))
    lon = BOX[0] + (np.arange(nx) + 0.5) * res
    lat = BOX[3] - (np.arange(ny) + 0.5) * res
    LON, LAT = np.meshgrid(lon, lat)
    x, y = to_metric(LON.ravel(), LAT.ravel())
    dens = _density(geo, fields_, x, y)
    valid = np.isfinite(dens)
    dens = np.where(valid, dens, 0.0)
    pop = dens / dens.sum() * TOTAL_POPULATION
    arr = np.where(valid, pop, -1.0).astype(np.float32).reshape(ny, nx)
    v = np.flatnonzero(valid)
    pop32 = arr.ravel()[v].astype(np.float64)
    return _Population(arr, res, LON.ravel()[v], LAT.ravel()[v], pop32, _township_of(geo, x[v], y[v]))


def _population_points(rng: np.random.Generator, pop: _Population, n: int) -> tuple[FloatArray, FloatArray]:
    """``n`` points drawn by population weight, uniform inside the chosen cell (metric)."""
    w = pop.pop / pop.pop.sum()
    idx = rng.choice(len(w), size=n, p=w)
    lon = pop.lon[idx] + rng.uniform(-0.5, 0.5, n) * pop.res
    lat = pop.lat[idx] + rng.uniform(-0.5, 0.5, n) * pop.res
    return to_metric(lon, lat)


# ------------------------------------------------------------------------- roads
@dataclass
class _Roads:
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
    minx, miny, maxx, maxy = geo.district.bounds
    blocked = shapely.union_all(
        [g for (n, lv), g in geo.bands.items() if lv != "general_control"]
        + [shapely.buffer(geo.river, 40.0)] + [shapely.buffer(r, 60.0) for r in geo.reservoirs]
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
    # tunnels across the ridges (few crossings)
    tunnels = [("中梁山", 0.30, "大学城隧道"), ("中梁山", 0.48, "歌乐山隧道"), ("中梁山", 0.70, "中梁山隧道"), ("缙云山", 0.35, "缙云山隧道")]
    tree_all = cKDTree(np.column_stack([x, y]))
    for ridge, frac, name in tunnels:
        line = geo.ridges[ridge]
        pt = np.asarray(line.interpolate(frac, normalized=True).coords[0])
        ahead = np.asarray(line.interpolate(min(frac + 0.01, 1.0), normalized=True).coords[0])
        tvec = (ahead - pt) / np.linalg.norm(ahead - pt)
        nvec = np.array([tvec[1], -tvec[0]])
        ends = []
        for sign in (-1.0, 1.0):
            target = pt + sign * nvec * (BAND_HALF_WIDTH_M["key_control"] + 400.0)
            _, k = tree_all.query(target)
            ends.append(int(k))
        ways.append({"nodes": ends, "highway": "primary", "name": name, "oneway": "", "tunnel": "yes"})
    # keep the largest connected component only
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

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


def _write_osm(roads: _Roads, target: Path) -> None:
    lon, lat = to_lonlat(roads.node_x, roads.node_y)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<osm version="0.6" generator="gis.sample (SAMPLE DATA)">',
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


# ----------------------------------------------------------------------- land use
@functools.lru_cache(maxsize=1)
def _class_table() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((settings.LAYERS_DIR / "landuse_gbt21010.yaml").read_text(encoding="utf-8"))
    return {str(k): v for k, v in data["classes"].items()}


def _class_entry(code: str) -> dict[str, Any]:
    table = _class_table()
    return table.get(code) or table.get(code[:2]) or {}


def _allowed(code: str, tier: str) -> bool:
    return tier in (_class_entry(code).get("allowed_tiers") or [])


def _allowed_vec(code: npt.ArrayLike, tier: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Vectorised :func:`_allowed` (one lookup per distinct code and tier; null → False)."""
    code = pd.Series(np.asarray(code, dtype=object))
    tier = pd.Series(np.broadcast_to(np.asarray(tier, dtype=object), (len(code),)))
    key = code.where(code.notna(), "") + "|" + tier.astype(str)
    lut = {k: bool(k.split("|")[0]) and _allowed(*k.split("|")) for k in key.unique()}
    return key.map(lut).to_numpy(dtype=bool).copy()


def _codes_of_receptor(kind: str) -> list[str]:
    return [c for c, e in _class_table().items() if e.get("receptor") == kind and len(c) == 4]


#: Class mix per land-use region: (codes, probabilities).
_MIX: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "core": (("0301",), (1.0,)),
    "key": (("0301", "0103", "0702"), (0.85, 0.10, 0.05)),
    "general": (("0301", "0103", "0101", "0702", "12"), (0.48, 0.22, 0.12, 0.14, 0.04)),
    "ind_b": (("0601", "0604", "0808", "12", "0501"), (0.50, 0.32, 0.07, 0.06, 0.05)),
    "ind": (("0601", "0604", "12", "0501"), (0.55, 0.35, 0.05, 0.05)),
    "university": (("0808", "0701", "0501", "0810", "0809", "12"), (0.45, 0.25, 0.08, 0.12, 0.03, 0.07)),
    "urban": (("0701", "0501", "0808", "0809", "0810", "0601", "0604", "12"), (0.56, 0.13, 0.06, 0.03, 0.09, 0.04, 0.03, 0.06)),
    "town": (("0701", "0501", "0702", "0808", "0809", "12"), (0.40, 0.22, 0.22, 0.05, 0.03, 0.08)),
    "rural_farm": (("0101", "0103"), (0.5, 0.5)),
    "rural": (("0702", "0301", "12", "0501", "0601"), (0.50, 0.35, 0.07, 0.04, 0.04)),
}


def _landuse(rng: np.random.Generator, geo: _Geo, roads: _Roads) -> gpd.GeoDataFrame:
    """Jittered 250 m cells classified by region rules, dissolved by class and 1 km block."""
    cell = 250.0
    minx, miny, maxx, maxy = geo.district.bounds
    gx = np.arange(minx - cell, maxx + 2 * cell, cell)
    gy = np.arange(miny - cell, maxy + 2 * cell, cell)
    VX, VY = np.meshgrid(gx, gy)
    VX = VX + rng.uniform(-45, 45, VX.shape)
    VY = VY + rng.uniform(-45, 45, VY.shape)
    corners = np.stack(
        [
            np.stack([VX[:-1, :-1], VY[:-1, :-1]], -1),
            np.stack([VX[:-1, 1:], VY[:-1, 1:]], -1),
            np.stack([VX[1:, 1:], VY[1:, 1:]], -1),
            np.stack([VX[1:, :-1], VY[1:, :-1]], -1),
        ],
        axis=2,
    ).reshape(-1, 4, 2)
    ring = np.concatenate([corners, corners[:, :1]], axis=1)
    cells = shapely.polygons(ring)
    cx, cy = corners[:, :, 0].mean(1), corners[:, :, 1].mean(1)
    keep = shapely.intersects(cells, geo.district)
    cells, cx, cy = cells[keep], cx[keep], cy[keep]
    n = len(cells)
    region = np.full(n, "rural", dtype=object)
    farm_noise = _smooth_noise(rng, cx, cy, 5000.0)
    region[farm_noise > -0.15] = "rural_farm"
    region[_contains(geo.town_discs, cx, cy)] = "town"
    region[_contains(geo.urban_core, cx, cy) | _contains(geo.new_town, cx, cy)] = "urban"
    region[_contains(geo.university, cx, cy)] = "university"
    for name, g in geo.industrial.items():
        region[_contains(g, cx, cy)] = "ind_b" if name == "b" else "ind"
    for (rname, level), g in geo.bands.items():
        region[_contains(g, cx, cy)] = {"no_build": "core", "key_control": "key", "general_control": "general"}[level]
    codes = np.empty(n, dtype=object)
    for reg, (cls, prob) in _MIX.items():
        m = np.flatnonzero(region == reg)
        if len(m):
            codes[m] = rng.choice(np.array(cls, dtype=object), size=len(m), p=np.array(prob) / sum(prob))
    # a few deliberate unclassified gaps (holes)
    eligible = np.flatnonzero(np.isin(region, ["rural", "rural_farm", "urban"]))
    holes = rng.choice(eligible, size=5, replace=False)
    codes[holes] = None
    has = np.array([c is not None for c in codes])
    block = (np.floor((cx - minx) / 1000.0).astype(int) * 1000 + np.floor((cy - miny) / 1000.0).astype(int))
    gdf = gpd.GeoDataFrame({"code": codes[has], "block": block[has]}, geometry=cells[has], crs=METRIC_EPSG)
    gdf = gdf.dissolve(by=["code", "block"], as_index=False)
    gdf["geometry"] = shapely.intersection(gdf.geometry.values, geo.district)
    # river, reservoirs and major-road strips cut through the cells
    water = shapely.union_all([geo.river, *geo.reservoirs])
    lines = [
        shapely.linestrings(np.column_stack([roads.node_x[w["nodes"]], roads.node_y[w["nodes"]]]))
        for w in roads.ways
        if w["highway"] in ("primary", "secondary") and not w["tunnel"]
    ]
    strips = shapely.intersection(shapely.union_all(shapely.buffer(np.array(lines), 12.0, cap_style="flat")), geo.district)
    strips = shapely.difference(strips, water)
    cut = gpd.GeoDataFrame(geometry=[shapely.union(strips, water)], crs=METRIC_EPSG)
    gdf = gpd.overlay(gdf[["code", "geometry"]], cut, how="difference", keep_geom_type=True)
    extra = gpd.GeoDataFrame(
        {"code": ["1101", "1004"] + ["1103"] * len(geo.reservoirs)},
        geometry=[geo.river, strips, *geo.reservoirs],
        crs=METRIC_EPSG,
    )
    gdf = pd.concat([gdf, extra], ignore_index=True)
    gdf = gdf.explode(index_parts=False, ignore_index=True)
    gdf = gdf[gdf.geometry.geom_type == "Polygon"]
    gdf = gdf[gdf.geometry.area > 200.0].reset_index(drop=True)
    gdf["geometry"] = shapely.make_valid(gdf.geometry.values)
    return gdf


# ------------------------------------------------------------------ evaluation
@dataclass
class _Index:
    """Spatial indexes over the generated layers, to evaluate any point's situation."""

    parcels: gpd.GeoDataFrame
    parcel_tree: shapely.STRtree
    boundary_tree: shapely.STRtree
    zones: gpd.GeoDataFrame  # zone_type, level, name, geometry
    zone_tree: shapely.STRtree
    receptor_trees: dict[str, shapely.STRtree]
    ts_xy: FloatArray = field(default_factory=lambda: np.empty((0, 2)))
    ts_active_xy: FloatArray = field(default_factory=lambda: np.empty((0, 2)))


def _segments(geoms: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Boundary of polygons as individual 2-point segments (for fast nearest queries)."""
    lines = shapely.get_parts(shapely.boundary(np.asarray(geoms)))
    lines = shapely.get_parts(lines)
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    same = idx[:-1] == idx[1:]
    a, b = coords[:-1][same], coords[1:][same]
    return shapely.linestrings(np.stack([a, b], axis=1))


def _build_index(parcels: gpd.GeoDataFrame, zones: gpd.GeoDataFrame) -> _Index:
    seg = np.concatenate([_segments(parcels.geometry.values), _segments(zones.geometry.values)])
    receptor_trees = {}
    for kind in ("school", "hospital", "residential"):
        g = parcels.geometry.values[parcels["code"].isin(_codes_of_receptor(kind)).to_numpy()]
        receptor_trees[kind] = shapely.STRtree(g)
    ws = list(parcels.geometry.values[(parcels["code"] == "1103").to_numpy()])
    ws += list(zones.geometry.values[(zones["zone_type"] == "water_source").to_numpy()])
    receptor_trees["water_source"] = shapely.STRtree(np.array(ws, dtype=object))
    return _Index(
        parcels=parcels,
        parcel_tree=shapely.STRtree(parcels.geometry.values),
        boundary_tree=shapely.STRtree(seg),
        zones=zones,
        zone_tree=shapely.STRtree(zones.geometry.values),
        receptor_trees=receptor_trees,
    )


def _evaluate(ix: _Index, x: FloatArray, y: FloatArray) -> pd.DataFrame:
    """Situation facts at metric points (vectorised)."""
    n = len(x)
    pts = shapely.points(x, y)
    out = pd.DataFrame(index=np.arange(n))
    pi, pj = ix.parcel_tree.query(pts, predicate="within")
    code = np.full(n, None, dtype=object)
    code[pi] = ix.parcels["code"].to_numpy()[pj]
    out["code"] = code
    _, dist = ix.boundary_tree.query_nearest(pts, return_distance=True, all_matches=False)
    out["d_boundary"] = dist
    zi, zj = ix.zone_tree.query(pts, predicate="intersects")
    zt = ix.zones["zone_type"].to_numpy()[zj]
    zl = ix.zones["level"].to_numpy()[zj]
    zn = ix.zones["name"].to_numpy()[zj]
    out["fm_level"] = None
    out["fm_range"] = None
    fm = zt == "four_mountains"
    out.loc[zi[fm], "fm_level"] = zl[fm]
    out.loc[zi[fm], "fm_range"] = zn[fm]
    for t in ("ecological_red_line", "basic_farmland", "water_source"):
        col = np.zeros(n, bool)
        col[zi[zt == t]] = True
        out[t] = col
    out["in_zone"] = np.isin(np.arange(n), zi)
    for kind, tree in ix.receptor_trees.items():
        if len(tree.geometries):
            _, d = tree.query_nearest(pts, return_distance=True, all_matches=False)
        else:
            d = np.full(n, np.inf)
        out[f"d_{kind}"] = d
    for name, xy in (("d_ts", ix.ts_xy), ("d_ts_active", ix.ts_active_xy)):
        if len(xy):
            out[name] = cKDTree(xy).query(np.column_stack([x, y]))[0]
        else:
            out[name] = np.inf
    return out


def _situations(ev: pd.DataFrame, tier: npt.ArrayLike, attrs: pd.DataFrame) -> npt.NDArray[np.object_]:
    """The ';'-joined situation codes of each site (see the module docstring)."""
    tier = np.asarray(tier, dtype=object)
    n = len(tier)
    parts: list[npt.NDArray[np.object_]] = []
    lvl = ev["fm_level"].to_numpy(dtype=object)
    parts.append(np.where(pd.notna(lvl), "four_mountains:" + lvl.astype(str), ""))
    for t in ("ecological_red_line", "basic_farmland", "water_source"):
        parts.append(np.where(ev[t].to_numpy(), t, ""))
    code = ev["code"].to_numpy(dtype=object)
    not_allowed = pd.notna(code) & ~_allowed_vec(code, tier)
    parts.append(np.where(not_allowed, "landuse_not_allowed:" + code.astype(str), ""))
    for kind, tiers in RECEPTOR_TIERS.items():
        d = ev[f"d_{kind}"].to_numpy()
        hit = np.isin(tier, [str(t) for t in tiers]) & (d < RECEPTOR_RADIUS_M[kind])
        parts.append(np.where(hit, np.char.add(f"near_receptor:{kind}:", np.floor(np.where(hit, d, 0)).astype(int).astype(str)), ""))
    parts.append(np.where(attrs["营业执照"].to_numpy() == "无", "no_business_licence", ""))
    parts.append(np.where(attrs["资质认定"].to_numpy() == "未取得", "no_dismantling_qualification", ""))
    parts.append(np.where(attrs["公安备案"].to_numpy() == "未备案", "no_police_filing", ""))
    area = attrs["占地面积(㎡)"].to_numpy(dtype=float)
    norm = pd.Series(tier).map({str(k): v for k, v in FLOOR_NORM_M2.items()}).fillna(-np.inf).to_numpy(float)
    parts.append(np.where(area < norm, "floor_area_below_norm", ""))
    far = (tier == str(Tier.COLLECTION_POINT)) & (ev["d_ts"].to_numpy() > FAR_FROM_TS_M)
    parts.append(np.where(far, "far_from_transfer_station", ""))
    joined = np.full(n, "", dtype=object)
    for p in parts:
        p = p.astype(object)
        joined = np.where((joined != "") & (p != ""), joined + ";" + p, joined + p)
    return joined


def _clean_mask(ev: pd.DataFrame, tier: str) -> npt.NDArray[np.bool_]:
    """Positions where a site of ``tier`` with full licences is unambiguously clean."""
    code = ev["code"].to_numpy(dtype=object)
    ok = _allowed_vec(code, str(tier))
    ok &= ev["d_boundary"].to_numpy() >= MARGIN_M
    ok &= ~ev["in_zone"].to_numpy()
    for kind, tiers in RECEPTOR_TIERS.items():
        if tier in [str(t) for t in tiers]:
            ok &= ev[f"d_{kind}"].to_numpy() >= RECEPTOR_RADIUS_M[kind] + 20.0
    if tier in (Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT):
        ok &= ev["d_ts_active"].to_numpy() <= CLEAN_TS_M
    return ok


def _unambiguous(ev: pd.DataFrame, tier: str) -> npt.NDArray[np.bool_]:
    """Planted positions whose situation does not hinge on a metre or two."""
    ok = ev["code"].notna().to_numpy().copy() & (ev["d_boundary"].to_numpy() >= MARGIN_M)
    for kind, tiers in RECEPTOR_TIERS.items():
        if tier in [str(t) for t in tiers]:
            d = ev[f"d_{kind}"].to_numpy()
            ok &= np.min(np.abs(d[:, None] - _THRESHOLDS_M[None, :]), axis=1) > 8.0
    if tier in (Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT):
        d = ev["d_ts"].to_numpy()
        da = ev["d_ts_active"].to_numpy()
        ok &= (da < 4500.0) | (d > 5500.0)
        if tier == Tier.DROP_OFF_POINT:
            ok &= da < 4500.0
    return ok


# -------------------------------------------------------------------------- zones
def _zones(geo: _Geo, parcels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """All zone polygons (EPSG:4544) with zone_type, level, name."""
    rows: list[dict[str, Any]] = []
    for (rng_name, level), g in geo.bands.items():
        rows.append({"zone_type": "four_mountains", "level": level, "name": rng_name, "geometry": g})
    for rng_name in geo.ridges:
        rows.append({"zone_type": "ecological_red_line", "level": None, "name": f"{rng_name}生态保护红线", "geometry": geo.bands[(rng_name, "no_build")]})
    rows.append({"zone_type": "ecological_red_line", "level": None, "name": "嘉陵江沿岸生态保护红线", "geometry": geo.riverside})
    for name, g in zip(geo.reservoir_names, geo.water_source):
        rows.append({"zone_type": "water_source", "level": None, "name": f"{name}饮用水水源保护区", "geometry": g})
    # basic farmland: large farmland blocks outside the 四山 bands and water-source zones
    farm = parcels[parcels["code"].isin(["0101", "0103"])]
    excl = shapely.union_all([*geo.bands.values(), *geo.water_source, geo.riverside, geo.urban_core, geo.new_town])
    merged = shapely.difference(shapely.union_all(farm.geometry.values), excl)
    pieces = shapely.get_parts(shapely.buffer(merged, -25.0))
    pieces = pieces[shapely.area(pieces) > 600_000.0]
    pieces = shapely.simplify(pieces, 5.0)
    for k, g in enumerate(pieces):
        rows.append({"zone_type": "basic_farmland", "level": None, "name": f"永久基本农田保护片区{k + 1:02d}", "geometry": g})
    zones = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    zones = zones[~zones.geometry.is_empty].reset_index(drop=True)
    zones["geometry"] = shapely.make_valid(zones.geometry.values)
    return zones


# ----------------------------------------------------------------------- sites
def _names(rng: np.random.Generator, n: int) -> npt.NDArray[np.object_]:
    s = rng.choice(list(_SURNAMES), n)
    g1 = rng.choice(list(_GIVEN), n)
    g2 = np.where(rng.random(n) < 0.6, rng.choice(list(_GIVEN), n), "")
    return np.char.add(np.char.add(s.astype(str), g1.astype(str)), g2.astype(str)).astype(object)


def _pick(rng: np.random.Generator, ok: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.int64]:
    idx = np.flatnonzero(ok)
    if len(idx) == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(idx, size=min(k, len(idx)), replace=False)


def _uniform_in(rng: np.random.Generator, geom: shapely.Geometry, n: int) -> tuple[FloatArray, FloatArray]:
    """About ``n`` points uniform inside ``geom`` (rejection from its bounds)."""
    if geom.is_empty or n <= 0:
        return np.empty(0), np.empty(0)
    minx, miny, maxx, maxy = geom.bounds
    frac = max(geom.area / ((maxx - minx) * (maxy - miny)), 0.01)
    m = int(n / frac) + 10
    x = rng.uniform(minx, maxx, m)
    y = rng.uniform(miny, maxy, m)
    inside = _contains(geom, x, y)
    return x[inside][:n], y[inside][:n]


# One planted item: (situation key, tier, status).
_PLAN: tuple[tuple[str, Tier, str], ...] = (
    ("fm:no_build", Tier.COLLECTION_POINT, "在营"), ("fm:no_build", Tier.COLLECTION_POINT, "规划"),
    ("fm:no_build", Tier.COLLECTION_POINT, "非法"),
    ("fm:key_control", Tier.COLLECTION_POINT, "在营"), ("fm:key_control", Tier.TRANSFER_STATION, "规划"),
    ("fm:key_control", Tier.DROP_OFF_POINT, "在营"),
    ("fm:general_control", Tier.COLLECTION_POINT, "在营"), ("fm:general_control", Tier.TRANSFER_STATION, "规划"),
    ("fm:general_control", Tier.COLLECTION_POINT, "规划"),
    ("red_line_river", Tier.COLLECTION_POINT, "在营"), ("red_line_river", Tier.DROP_OFF_POINT, "规划"),
    ("basic_farmland", Tier.COLLECTION_POINT, "在营"), ("basic_farmland", Tier.COLLECTION_POINT, "非法"),
    ("basic_farmland", Tier.COLLECTION_POINT, "规划"),
    ("water_source", Tier.COLLECTION_POINT, "在营"), ("water_source", Tier.TRANSFER_STATION, "规划"),
    ("landuse:0701", Tier.DISMANTLER, "在营"), ("landuse:0701", Tier.SORTING_CENTRE, "规划"),
    ("landuse:farm", Tier.COLLECTION_POINT, "在营"), ("landuse:0808", Tier.TRANSFER_STATION, "规划"),
    ("landuse:0810", Tier.COLLECTION_POINT, "在营"),
    ("school", Tier.DISMANTLER, "在营"),
    ("no_licence", Tier.COLLECTION_POINT, "在营"), ("no_licence", Tier.COLLECTION_POINT, "非法"),
    ("no_licence", Tier.DROP_OFF_POINT, "在营"),
    ("no_qualification", Tier.DISMANTLER, "在营"), ("no_qualification", Tier.COLLECTION_POINT, "在营"),
    ("no_police", Tier.COLLECTION_POINT, "在营"), ("no_police", Tier.COLLECTION_POINT, "在营"),
    ("no_police", Tier.COLLECTION_POINT, "规划"),
    ("floor", Tier.TRANSFER_STATION, "规划"), ("floor", Tier.COLLECTION_POINT, "在营"),
    ("floor", Tier.COLLECTION_POINT, "规划"),
    ("far_ts", Tier.COLLECTION_POINT, "在营"), ("far_ts", Tier.COLLECTION_POINT, "规划"),
    ("far_ts", Tier.COLLECTION_POINT, "在营"),
)
_ATTRIBUTE_SITUATIONS = {"no_licence", "no_qualification", "no_police", "floor"}

_SCOPE = {
    Tier.SORTING_CENTRE: ["再生资源分拣、加工、储存、销售", "废旧物资分拣打包、废旧金属收购"],
    Tier.TRANSFER_STATION: ["再生资源回收、中转、分拣", "废纸、废塑料、废旧金属收购及中转"],
    Tier.COLLECTION_POINT: ["废纸、废塑料、废旧金属收购", "再生资源回收（不含危险废物）", "废旧家电、废旧衣物回收", "废纸、废塑料、废玻璃回收"],
    Tier.DROP_OFF_POINT: ["可回收物分类投放、暂存", "废旧衣物、废纸分类投放"],
    Tier.DISMANTLER: ["报废机动车回收拆解", "废弃电器电子产品拆解处理"],
}
_AREA = {  # clean floor area range (m²)
    Tier.SORTING_CENTRE: (5000, 12000), Tier.TRANSFER_STATION: (600, 2000), Tier.COLLECTION_POINT: (15, 120),
    Tier.DROP_OFF_POINT: (10, 30), Tier.DISMANTLER: (12000, 40000),
}
_CAPACITY = {
    Tier.SORTING_CENTRE: (100, 160), Tier.TRANSFER_STATION: (10, 40), Tier.COLLECTION_POINT: (0.5, 3),
    Tier.DROP_OFF_POINT: (0.05, 0.3), Tier.DISMANTLER: (50, 200),
}
_ID_CODE = {
    Tier.SORTING_CENTRE: "FJ", Tier.TRANSFER_STATION: "ZZ", Tier.COLLECTION_POINT: "HS",
    Tier.DROP_OFF_POINT: "TF", Tier.DISMANTLER: "CJ",
}


def _site_attributes(rng: np.random.Generator, tiers: npt.ArrayLike, township: npt.ArrayLike) -> pd.DataFrame:
    """Clean ledger attributes for sites of the given tiers (names, licences, areas …)."""
    tiers = np.asarray(tiers, dtype=object)
    n = len(tiers)
    tname = _TOWNSHIP_NAMES[np.asarray(township)]
    short = _TOWNSHIP_SHORT[np.asarray(township)]
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), n)
    comm = rng.choice(np.array(_COMMUNITY, dtype=object), n)
    person = _names(rng, n)
    attrs = pd.DataFrame(index=np.arange(n))
    name = np.empty(n, dtype=object)
    operator = np.empty(n, dtype=object)
    scope = np.empty(n, dtype=object)
    area = np.zeros(n)
    cap = np.zeros(n)
    for t in Tier:
        m = tiers == str(t)
        k = int(m.sum())
        if not k:
            continue
        lo, hi = _AREA[t]
        area[m] = np.round(rng.uniform(lo, hi, k))
        clo, chi = _CAPACITY[t]
        cap[m] = np.round(rng.uniform(clo, chi, k), 2)
        scope[m] = rng.choice(np.array(_SCOPE[t], dtype=object), k)
        if t == Tier.SORTING_CENTRE:
            name[m] = "沙坪坝区再生资源综合分拣中心"
            operator[m] = "重庆沙坪坝再生资源有限公司"
        elif t == Tier.TRANSFER_STATION:
            name[m] = short[m] + "再生资源中转分拣站"
            operator[m] = "重庆" + short[m] + "再生资源回收有限公司"
        elif t == Tier.COLLECTION_POINT:
            name[m] = short[m] + stems[m] + comm[m] + "回收站"
            operator[m] = person[m]
        elif t == Tier.DROP_OFF_POINT:
            name[m] = stems[m] + comm[m] + "可回收物分类投放点"
            operator[m] = stems[m] + comm[m] + "物业服务中心"
        else:
            name[m] = "重庆" + stems[m] + np.where(scope[m] == _SCOPE[t][0], "报废汽车回收拆解有限公司", "电子废弃物处理有限公司")
            operator[m] = "重庆" + stems[m] + "再生资源集团有限公司"
    num = rng.integers(1, 300, n).astype(str)
    attrs["网点名称"] = name
    attrs["经营者"] = operator
    attrs["经营地址"] = "重庆市沙坪坝区" + tname + stems + "路" + num + "号"
    attrs["所属镇街"] = tname
    attrs["营业执照"] = "有"
    attrs["资质认定"] = np.where(tiers == str(Tier.DISMANTLER), "已取得", "")
    attrs["公安备案"] = "已备案"
    attrs["日处理能力(吨)"] = cap
    attrs["占地面积(㎡)"] = area
    attrs["经营范围"] = scope
    return attrs


@dataclass
class _Sites:
    x: FloatArray
    y: FloatArray
    tier: npt.NDArray[np.object_]
    status: npt.NDArray[np.object_]
    key: npt.NDArray[np.object_]
    attrs: pd.DataFrame
    situations: npt.NDArray[np.object_]
    clean: npt.NDArray[np.bool_]
    d_ts: FloatArray


class _Placer:
    """Draws positions for planted situations (pools of candidates, evaluated, picked)."""

    def __init__(self, rng: np.random.Generator, geo: _Geo, ix: _Index, pop: _Population) -> None:
        self.rng, self.geo, self.ix, self.pop = rng, geo, ix, pop
        self.pools: dict[str, tuple[FloatArray, FloatArray]] = {}
        self.evals: dict[str, pd.DataFrame] = {}

    def pool(self, key: str, n: int = 4000) -> tuple[FloatArray, FloatArray]:
        """Candidate positions for a situation key (kept between calls, used ones removed)."""
        if key in self.pools:
            return self.pools[key]
        rng, geo, ix = self.rng, self.geo, self.ix
        parcels = ix.parcels
        if key.startswith("fm:"):
            g = shapely.union_all([v for (_, lv), v in geo.bands.items() if lv == key[3:]])
            x, y = _uniform_in(rng, g, n)
        elif key == "red_line_river":
            g = shapely.difference(geo.riverside, shapely.union_all([geo.river, *geo.bands.values()]))
            x, y = _uniform_in(rng, g, n)
        elif key == "basic_farmland":
            g = shapely.union_all(ix.zones.geometry[ix.zones["zone_type"] == "basic_farmland"].values)
            x, y = _uniform_in(rng, g, n)
        elif key == "water_source":
            g = shapely.difference(shapely.union_all(geo.water_source), shapely.union_all(geo.reservoirs))
            x, y = _uniform_in(rng, g, n)
        elif key.startswith("landuse:"):
            code = key.split(":")[1]
            codes = ["0101", "0103"] if code == "farm" else [code]
            x, y = _uniform_in(rng, shapely.union_all(parcels.geometry[parcels["code"].isin(codes)].values), n)
        elif key == "school":
            g = shapely.union_all(parcels.geometry[parcels["code"].isin(["0601", "0604"])].values)
            x, y = _uniform_in(rng, g, n * 3)
        elif key == "far_ts":
            x, y = _uniform_in(rng, geo.district, n * 3)
        else:  # attribute-only situations and bad-row bases: ordinary positions
            x, y = _population_points(rng, self.pop, n)
        self.pools[key] = (x, y)
        return x, y

    def place(self, key: str, tier: Tier, k: int) -> tuple[FloatArray, FloatArray]:
        """Up to ``k`` unambiguous positions of ``tier`` in situation ``key``."""
        x, y = self.pool(key)
        ev = self.evals.get(key)
        if ev is None or len(ev) != len(x):
            ev = _evaluate(self.ix, x, y)
        else:  # transfer stations may have been added since: refresh those distances
            for name, xy in (("d_ts", self.ix.ts_xy), ("d_ts_active", self.ix.ts_active_xy)):
                ev[name] = cKDTree(xy).query(np.column_stack([x, y]))[0] if len(xy) else np.inf
        ok = _unambiguous(ev, tier)
        allowed = _allowed_vec(ev["code"].to_numpy(dtype=object), str(tier))
        in_zone = ev["in_zone"].to_numpy()
        if key.startswith("fm:"):
            ok &= ev["fm_level"].to_numpy(dtype=object) == key[3:]
        elif key in ("red_line_river", "basic_farmland", "water_source"):
            t = "ecological_red_line" if key == "red_line_river" else key
            ok &= ev[t].to_numpy() & ev["fm_level"].isna().to_numpy()
        elif key.startswith("landuse:"):
            ok &= ~in_zone & ~allowed
        elif key == "school":
            d = ev["d_school"].to_numpy()
            ok &= ~in_zone & allowed & (d > 35.0) & (d < 140.0)
        elif key == "far_ts":
            ok &= ~in_zone & allowed & (ev["d_ts"].to_numpy() > 5500.0)
        else:
            ok &= _clean_mask(ev, tier)
        sel = _pick(self.rng, ok, k)
        used = np.zeros(len(x), bool)
        used[sel] = True
        self.pools[key] = (x[~used], y[~used])
        self.evals[key] = ev[~used].reset_index(drop=True)
        return x[sel], y[sel]


def _sites(rng: np.random.Generator, geo: _Geo, ix: _Index, pop: _Population, p: ScaleParams) -> tuple[_Sites, _Placer]:
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    tiers: list[npt.NDArray[np.object_]] = []
    statuses: list[npt.NDArray[np.object_]] = []
    keys: list[npt.NDArray[np.object_]] = []  # planted situation key per site ('' = clean)

    def add(x: FloatArray, y: FloatArray, tier: Tier, status: Any, key: str = "") -> None:
        xs.append(np.asarray(x, float))
        ys.append(np.asarray(y, float))
        tiers.append(np.full(len(x), str(tier), dtype=object))
        statuses.append(np.broadcast_to(np.asarray(status, dtype=object), (len(x),)).copy())
        keys.append(np.full(len(x), key, dtype=object))

    tiers_plan = [(k, t, s) for k, t, s in _PLAN for _ in range(p.plant_factor)]
    # 1. transfer stations: one clean, population-weighted location per township
    cx, cy = _population_points(rng, pop, 40_000)
    ux, uy = _uniform_in(rng, geo.district, 40_000)
    cx, cy = np.concatenate([cx, ux]), np.concatenate([cy, uy])
    ev = _evaluate(ix, cx, cy)
    twn = _township_of(geo, cx, cy)
    ok = _clean_mask(ev, Tier.TRANSFER_STATION)
    no_ts = {TOWNSHIPS.index(next(t for t in TOWNSHIPS if t[0] == name)) for name in TOWNSHIPS_WITHOUT_TS}
    order = rng.permutation(len(cx))
    chosen = pd.Series(order[ok[order]]).groupby(twn[order[ok[order]]]).first()
    chosen = chosen[~chosen.index.isin(list(no_ts))]
    add(cx[chosen.to_numpy()], cy[chosen.to_numpy()], Tier.TRANSFER_STATION, "在营")
    ts_active = np.column_stack([cx[chosen.to_numpy()], cy[chosen.to_numpy()]])
    ix.ts_active_xy = ts_active
    ix.ts_xy = ts_active
    # planted transfer stations (planned) first, so that point distances see them
    placer = _Placer(rng, geo, ix, pop)
    place = placer.place

    plan = pd.DataFrame(tiers_plan, columns=["key", "tier", "status"])
    plan["tier"] = plan["tier"].map(str)
    ts_first = (plan["tier"] == str(Tier.TRANSFER_STATION)).to_numpy()
    for phase in (True, False):
        for (key, tier), grp in plan[ts_first == phase].groupby(["key", "tier"], sort=False):
            x, y = place(key, Tier(tier), len(grp))
            add(x, y, Tier(tier), grp["status"].to_numpy()[: len(x)], key)
        if phase:  # point distances see planned stations too
            ts = [np.column_stack([a, b]) for a, b, t in zip(xs, ys, tiers) if len(t) and t[0] == str(Tier.TRANSFER_STATION)]
            ix.ts_xy = np.vstack(ts)
    # 2. sorting centre (active) and clean dismantlers: industrial land
    ind = shapely.union_all(ix.parcels.geometry[ix.parcels["code"].isin(["0601", "0604"])].values)
    ix_, iy_ = _uniform_in(rng, ind, 20_000 if p.name != "city" else 40_000)
    ev = _evaluate(ix, ix_, iy_)
    sel = _pick(rng, _clean_mask(ev, Tier.SORTING_CENTRE), 1)
    add(ix_[sel], iy_[sel], Tier.SORTING_CENTRE, "在营")
    ok = _clean_mask(ev, Tier.DISMANTLER)
    ok[sel] = False
    sel = _pick(rng, ok, p.n_dismantler)
    add(ix_[sel], iy_[sel], Tier.DISMANTLER, rng.choice(["在营", "在营", "在营", "规划"], len(sel)))
    # 3. clean collection and drop-off points, population-weighted
    for tier, n, probs in (
        (Tier.COLLECTION_POINT, p.n_collection, ([0.88, 0.06, 0.04, 0.02], ["在营", "规划", "关停", "非法"])),
        (Tier.DROP_OFF_POINT, p.n_dropoff, ([0.9, 0.1], ["在营", "规划"])),
    ):
        got_x: list[FloatArray] = []
        got_y: list[FloatArray] = []
        need = n
        for _ in range(20):
            qx, qy = _population_points(rng, pop, max(need * 6, 2000))
            ev = _evaluate(ix, qx, qy)
            sel = np.flatnonzero(_clean_mask(ev, tier))[:need]
            got_x.append(qx[sel])
            got_y.append(qy[sel])
            need -= len(sel)
            if need <= 0:
                break
        x, y = np.concatenate(got_x), np.concatenate(got_y)
        add(x, y, tier, rng.choice(np.array(probs[1], dtype=object), len(x), p=probs[0]))
    # 4. bases of the deliberately bad ledger rows (ordinary clean points)
    bx, by = place("bad", Tier.COLLECTION_POINT, 7)
    add(bx, by, Tier.COLLECTION_POINT, "在营", "__bad__")
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    tier = np.concatenate(tiers)
    status = np.concatenate(statuses)
    key = np.concatenate(keys)
    twn = _township_of(geo, x, y)
    attrs = _site_attributes(rng, tier, twn)
    # attribute situations
    attrs.loc[key == "no_licence", "营业执照"] = "无"
    attrs.loc[key == "no_police", "公安备案"] = "未备案"
    attrs.loc[key == "no_police", "经营范围"] = "废旧金属收购、废纸回收"
    nq = np.flatnonzero(key == "no_qualification")
    attrs.loc[nq, "资质认定"] = "未取得"
    attrs.loc[nq[tier[nq] == str(Tier.COLLECTION_POINT)], "经营范围"] = "废旧家电回收、拆解"
    fl = np.flatnonzero(key == "floor")
    norm = pd.Series(tier[fl]).map({str(k): v for k, v in FLOOR_NORM_M2.items()}).to_numpy(float)
    attrs.loc[fl, "占地面积(㎡)"] = np.round(norm * rng.uniform(0.3, 0.7, len(fl)))
    sc_planned = np.flatnonzero((tier == str(Tier.SORTING_CENTRE)) & (key != ""))
    attrs.loc[sc_planned, "占地面积(㎡)"] = 2400.0  # also below the 3,000 m² norm
    ev = _evaluate(ix, x, y)
    situations = _situations(ev, tier, attrs)
    clean = situations == ""
    return _Sites(x, y, tier, status, key, attrs, situations, clean, ev["d_ts"].to_numpy()), placer


# ----------------------------------------------------------------------- incidents
_MAIN_KINDS = (
    IncidentKind.ILLEGAL_ELV_DISMANTLING,
    IncidentKind.ILLEGAL_EWASTE_DISMANTLING,
    IncidentKind.UNLICENSED_RECYCLING,
    IncidentKind.SCATTERED_POLLUTING,
)
_NOISE_KIND_P = {
    IncidentKind.ILLEGAL_ELV_DISMANTLING: 0.12, IncidentKind.ILLEGAL_EWASTE_DISMANTLING: 0.10,
    IncidentKind.UNLICENSED_RECYCLING: 0.22, IncidentKind.SCATTERED_POLLUTING: 0.16,
    IncidentKind.FIRE_HAZARD: 0.12, IncidentKind.ROAD_OCCUPYING: 0.12, IncidentKind.ILLEGAL_LAND_USE: 0.08,
    IncidentKind.UNFILED_SCRAP_METAL: 0.08,
}
_DESCRIPTION = {
    IncidentKind.ILLEGAL_ELV_DISMANTLING: "现场发现非法拆解报废机动车，堆放发动机、车架等“五大总成”",
    IncidentKind.ILLEGAL_EWASTE_DISMANTLING: "现场发现露天拆解废旧电视机、冰箱等废弃电器电子产品",
    IncidentKind.UNLICENSED_RECYCLING: "未办理营业执照从事废旧物资收购",
    IncidentKind.SCATTERED_POLLUTING: "场地未硬化、无围挡，废旧物资露天堆放，污染周边环境",
    IncidentKind.FIRE_HAZARD: "生产、储存、居住混合设置（三合一），存在消防隐患",
    IncidentKind.ROAD_OCCUPYING: "占用人行道堆放废旧物资经营",
    IncidentKind.ILLEGAL_LAND_USE: "占用耕地搭建棚房从事废旧物资回收",
    IncidentKind.UNFILED_SCRAP_METAL: "收购废旧金属未向公安机关备案",
}
_DESTINATIONS = np.array(["去向不明", "流入二手配件市场", "交售正规拆解企业", "已追回"], dtype=object)
_START = np.datetime64("2022-01-01")
_END = np.datetime64("2024-12-31")


def _truncated_offsets(rng: np.random.Generator, sigma: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Isotropic normal offsets truncated at 3 sigma: ``r = σ √(-2 ln(1 - u (1 - e^{-4.5})))``."""
    u = rng.random(len(sigma))
    r = sigma * np.sqrt(-2.0 * np.log(1.0 - u * (1.0 - math.exp(-4.5))))
    a = rng.uniform(0, 2 * np.pi, len(sigma))
    return r * np.cos(a), r * np.sin(a)


def _days(d: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    return (d - _START).astype("timedelta64[D]").astype(np.int64)


def _incidents(rng: np.random.Generator, geo: _Geo, pop: _Population, p: ScaleParams) -> dict[str, Any]:
    """Planted clusters, closures and rebounds, plus population-weighted noise."""
    n_cl = p.n_clusters
    n_band = p.n_clusters_in_band
    levels = np.array(["no_build", "key_control", "general_control", "key_control", "general_control"], dtype=object)
    cl_level = np.concatenate([np.resize(levels, n_band), np.full(n_cl - n_band, None, dtype=object)])
    cl_range = np.array(
        [("缙云山" if i % 3 == 2 else "中梁山") if i < n_band else None for i in range(n_cl)], dtype=object
    )
    sig_hi = {"no_build": 150.0, "key_control": 100.0, "general_control": 170.0, None: 200.0}
    sigma = rng.uniform(80.0, pd.Series(cl_level, dtype=object).map(lambda lv: sig_hi[lv]).to_numpy(float))
    cx = np.zeros(n_cl)
    cy = np.zeros(n_cl)
    water = shapely.union_all([geo.river, *geo.reservoirs])
    # centres inside bands: clear of the band's own boundary by 3 sigma + 60 m
    for (rname, level), g in geo.bands.items():
        members = np.flatnonzero((cl_level == level) & (cl_range == rname))
        if not len(members):
            continue
        px, py = _uniform_in(rng, g, 3000)
        pts = shapely.points(px, py)
        clear = np.minimum(shapely.distance(pts, shapely.boundary(g)), shapely.distance(pts, water))
        for i in members:  # a handful per band
            ok = np.flatnonzero(clear >= 3 * sigma[i] + 60.0)
            if not len(ok):
                raise RuntimeError(f"no room for a cluster in {rname} {level}")
            j = ok[0]
            cx[i], cy[i] = px[j], py[j]
            clear[np.hypot(px - px[j], py - py[j]) < 1500.0] = -1.0
    # centres outside every band, away from the district edge and water
    out = np.flatnonzero(cl_level == None)  # noqa: E711
    m = len(out) * 4 + 200
    ux, uy = _uniform_in(rng, geo.district, m // 2)
    qx, qy = _population_points(rng, pop, m - len(ux))
    px, py = np.concatenate([ux, qx]), np.concatenate([uy, qy])
    perm = rng.permutation(len(px))
    px, py = px[perm], py[perm]
    pts = shapely.points(px, py)
    bands = shapely.union_all(list(geo.bands.values()))
    clear = np.minimum.reduce(
        [
            shapely.distance(pts, bands),
            shapely.distance(pts, shapely.boundary(geo.district)) * np.where(_contains(geo.district, px, py), 1, -1),
            shapely.distance(pts, water),
        ]
    )
    ok = np.flatnonzero(clear >= 3 * 200.0 + 100.0)
    if len(ok) < len(out):
        raise RuntimeError("not enough room for incident clusters")
    cx[out], cy[out] = px[ok[: len(out)]], py[ok[: len(out)]]
    kind = np.array([str(k) for k in _MAIN_KINDS], dtype=object)[rng.permutation(n_cl) % 4]
    n_rebound = max(3, round(n_cl * 0.25)) if n_cl >= 12 else min(3, n_cl)
    n_closed = max(2, round(n_cl * 0.15))
    role = np.full(n_cl, "open", dtype=object)
    pick = rng.permutation(out)
    role[pick[:n_rebound]] = "rebound"
    role[pick[n_rebound : n_rebound + n_closed]] = "closed"
    size = rng.integers(15, 61, n_cl)
    start = _START + rng.integers(0, 900, n_cl).astype("timedelta64[D]")
    span = rng.integers(90, 540, n_cl)
    reb = role == "rebound"
    start[reb] = _START + rng.integers(0, 450, reb.sum()).astype("timedelta64[D]")
    span[reb] = rng.integers(120, 300, reb.sum())
    end = np.minimum(start + span.astype("timedelta64[D]"), _END)
    closed = np.full(n_cl, np.datetime64("NaT"), dtype="datetime64[D]")
    closed[reb] = end[reb]
    cl_closed = role == "closed"
    closed[cl_closed] = np.minimum(end[cl_closed] + rng.integers(10, 40, cl_closed.sum()).astype("timedelta64[D]"), _END)
    # members before closure (or all members of open clusters)
    cid = np.repeat(np.arange(n_cl), size)
    ox, oy = _truncated_offsets(rng, sigma[cid])
    mx, my = cx[cid] + ox, cy[cid] + oy
    span_m = _days(end[cid]) - _days(start[cid])
    mdate = start[cid] + (rng.random(len(cid)) * span_m).astype("timedelta64[D]")
    phase = np.where(reb[cid] | cl_closed[cid], "before_closure", "").astype(object)
    # rebound members: within 400 m of the centre, after the closure
    n_post = rng.integers(6, 13, n_cl) * reb
    rid = np.repeat(np.arange(n_cl), n_post)
    rs = np.minimum(sigma[rid], 110.0)
    ox, oy = _truncated_offsets(rng, rs)
    rdate = closed[rid] + rng.integers(30, 230, len(rid)).astype("timedelta64[D]")
    rdate = np.minimum(rdate, _END)
    cid = np.concatenate([cid, rid])
    x = np.concatenate([mx, cx[rid] + ox])
    y = np.concatenate([my, cy[rid] + oy])
    date = np.concatenate([mdate, rdate])
    phase = np.concatenate([phase, np.full(len(rid), "after_closure", dtype=object)])
    n_members = len(cid)
    # noise
    n_noise = int(round(n_members * p.noise_share / (1.0 - p.noise_share)))
    nx_, ny_ = _population_points(rng, pop, n_noise)
    kinds_all = np.array(list(_NOISE_KIND_P), dtype=object)
    probs = np.array(list(_NOISE_KIND_P.values()))
    nkind = rng.choice(kinds_all, n_noise, p=probs / probs.sum())
    ndate = _START + rng.integers(0, _days(np.array([_END]))[0] + 1, n_noise).astype("timedelta64[D]")
    all_x = np.concatenate([x, nx_])
    all_y = np.concatenate([y, ny_])
    all_kind = np.concatenate([kind[cid], nkind])
    all_date = np.concatenate([date, ndate])
    all_cid = np.concatenate([cid, np.full(n_noise, -1)])
    all_phase = np.concatenate([phase, np.full(n_noise, "", dtype=object)])
    n = len(all_x)
    # status and closure date
    status = rng.choice(np.array(["待整改", "已整改", "已关停"], dtype=object), n, p=[0.35, 0.5, 0.15])
    cdate = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    noise_closed = (all_cid < 0) & (status == "已关停")
    cdate[noise_closed] = np.minimum(all_date[noise_closed] + rng.integers(7, 90, noise_closed.sum()).astype("timedelta64[D]"), _END)
    in_cl = all_cid >= 0
    open_cl = in_cl & (all_phase == "")
    status[open_cl] = rng.choice(np.array(["待整改", "已整改"], dtype=object), open_cl.sum())
    before = all_phase == "before_closure"
    status[before] = "已关停"
    cdate[before] = closed[all_cid[before]]
    after = all_phase == "after_closure"
    status[after] = rng.choice(np.array(["反弹", "待整改"], dtype=object), after.sum(), p=[0.75, 0.25])
    # order by date, then assign record numbers
    order = np.lexsort((rng.random(n), all_date))
    cols = dict(x=all_x, y=all_y, kind=all_kind, date=all_date, cid=all_cid, phase=all_phase, status=status, cdate=cdate)
    cols = {k: v[order] for k, v in cols.items()}
    years = cols["date"].astype("datetime64[Y]").astype(int) + 1970
    ids = _seq_ids(np.char.add("XS", years.astype(str)), np.arange(1, n + 1), 6)
    twn = _township_of(geo, cols["x"], cols["y"])
    tname = _TOWNSHIP_NAMES[twn]
    lon, lat = to_lonlat(cols["x"], cols["y"])
    kind_zh = pd.Series(cols["kind"]).map({str(k): v for k, v in INCIDENT_KIND_LABEL_ZH.items()}).to_numpy(dtype=object)
    desc = pd.Series(cols["kind"]).map({str(k): v for k, v in _DESCRIPTION.items()}).to_numpy(dtype=object)
    elv = cols["kind"] == IncidentKind.ILLEGAL_ELV_DISMANTLING
    dest = np.where(elv, rng.choice(_DESTINATIONS, n, p=[0.4, 0.3, 0.2, 0.1]), "")
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), n)
    df = pd.DataFrame(
        {
            "记录编号": ids,
            "发现日期": pd.to_datetime(cols["date"]).strftime("%Y-%m-%d"),
            "问题类型": kind_zh,
            "线索来源": rng.choice(np.array(["摸排", "举报", "巡查", "执法"], dtype=object), n, p=[0.35, 0.3, 0.25, 0.1]),
            "处置状态": cols["status"],
            "关停日期": pd.Series(pd.to_datetime(cols["cdate"]).strftime("%Y-%m-%d")).fillna("").to_numpy(),
            "五大总成流向": dest,
            "所属镇街": tname,
            "地址": "重庆市沙坪坝区" + tname + stems + "路附近",
            "问题描述": desc,
            "经度": np.char.mod("%.7f", lon),
            "纬度": np.char.mod("%.7f", lat),
        }
    )
    truth = pd.DataFrame(
        {
            "incident_id": ids,
            "cluster_id": np.where(cols["cid"] >= 0, _seq_ids("C", cols["cid"], 3), ""),
            "phase": cols["phase"],
        }
    )
    # cluster truth (one row per cluster, grouped over the members)
    clon, clat = to_lonlat(cx, cy)
    m = pd.DataFrame({"cid": cols["cid"], "date": cols["date"], "phase": cols["phase"]})
    m["d"] = np.hypot(cols["x"] - cx[np.maximum(cols["cid"], 0)], cols["y"] - cy[np.maximum(cols["cid"], 0)])
    m = m[m["cid"] >= 0]
    g = m.groupby("cid")
    post = m[m["phase"] == "after_closure"].groupby("cid")["date"].min()
    q95 = g["d"].quantile(0.95, interpolation="higher").reindex(range(n_cl)).to_numpy()
    nd = np.datetime_as_string
    clusters = pd.DataFrame(
        {
            "cluster_id": _seq_ids("C", np.arange(n_cl), 3),
            "kind": kind,
            "lon": np.round(clon, 7),
            "lat": np.round(clat, 7),
            "radius_m": np.round(q95 + 0.05, 1),
            "max_dist_m": np.round(g["d"].max().reindex(range(n_cl)).to_numpy(), 1),
            "sigma_m": np.round(sigma, 1),
            "n_incidents": g.size().reindex(range(n_cl)).to_numpy(),
            "four_mountains_level": np.where(pd.notna(cl_level), cl_level, ""),
            "four_mountains_range": np.where(pd.notna(cl_range), cl_range, ""),
            "township": _TOWNSHIP_NAMES[_township_of(geo, cx, cy)],
            "first_date": nd(g["date"].min().reindex(range(n_cl)).to_numpy().astype("datetime64[D]")),
            "last_date": nd(g["date"].max().reindex(range(n_cl)).to_numpy().astype("datetime64[D]")),
            "closed_date": np.where(np.isnat(closed), "", nd(closed)),
            "rebound": reb,
            "rebound_first_date": np.where(
                reb, nd(post.reindex(range(n_cl)).to_numpy().astype("datetime64[D]")), ""
            ),
        }
    )
    # two deliberately bad rows
    bad = []
    for field_, value, reason in (("发现日期", "2023年13月", RejectReason.BAD_VALUE), ("问题类型", "乱堆乱放", RejectReason.UNKNOWN_CATEGORY)):
        src = df.iloc[int(rng.integers(0, len(df)))].copy()
        src["记录编号"] = f"XS{2024}{len(df) + len(bad) + 1:06d}"
        src[field_] = value
        bad.append((src, field_, value, reason))
    return {"df": df, "truth": truth, "clusters": clusters, "bad": bad, "n_clusters": n_cl}


def _insert_rows(
    rng: np.random.Generator, df: pd.DataFrame, rows: list[pd.Series], min_pos: list[int] | None = None
) -> tuple[pd.DataFrame, list[int]]:
    """Insert ``rows`` at random positions; return the frame and their spreadsheet rows."""
    n = len(df)
    pos = []
    for k in range(len(rows)):
        lo = (min_pos[k] + 1) if min_pos and min_pos[k] is not None else 0
        pos.append(int(rng.integers(lo, n + 1)))
    order_key = np.concatenate([np.arange(n) + 0.5, np.array(pos, float) + 0.25 + np.arange(len(rows)) * 1e-3])
    big = pd.concat([df, pd.DataFrame(rows)], ignore_index=True)
    order = np.argsort(order_key, kind="stable")
    big = big.iloc[order].reset_index(drop=True)
    new_pos = np.empty(len(order), dtype=int)
    new_pos[order] = np.arange(len(order))
    return big, [int(new_pos[n + k]) + 2 for k in range(len(rows))]


# ---------------------------------------------------------------------- writers
def _fmt(v: FloatArray) -> npt.NDArray[np.str_]:
    return np.char.mod("%.7f", np.asarray(v, float))


def _ledger(
    rng: np.random.Generator, geo: _Geo, s: _Sites
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """The ledger table (GCJ-02), its truth table and the bad-row records."""
    order_tier = {str(t): i for i, t in enumerate((Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.COLLECTION_POINT, Tier.DROP_OFF_POINT, Tier.DISMANTLER))}
    good = np.flatnonzero(s.key != "__bad__")
    badb = np.flatnonzero(s.key == "__bad__")
    twn = _township_of(geo, s.x, s.y)
    tier_s = pd.Series(s.tier, dtype=object)
    o = good[np.lexsort((rng.random(len(good)), twn[good], tier_s[good].map(order_tier).to_numpy()))]
    tier_labels = tier_s.map({str(k): v for k, v in TIER_LABEL_ZH.items()}).to_numpy(dtype=object)
    ids = np.empty(len(s.x), dtype=object)
    rank = pd.Series(s.tier[o]).groupby(s.tier[o]).cumcount().to_numpy() + 1  # 1.. within each tier
    prefix = pd.Series(s.tier[o]).map({str(k): f"SPB-{v}-" for k, v in _ID_CODE.items()}).to_numpy(dtype=str)
    ids[o] = np.char.add(prefix, np.char.zfill(rank.astype(str), 4))
    ids[badb] = _seq_ids("SPB-HS-", 9001 + np.arange(len(badb)), 4)
    lon, lat = to_lonlat(s.x, s.y)
    glon, glat = wgs84_to_gcj02(lon, lat)
    table = pd.DataFrame({"网点编号": ids, "网点名称": s.attrs["网点名称"], "网点层级": tier_labels})
    for col in ("经营者", "经营地址", "所属镇街"):
        table[col] = s.attrs[col]
    table["经营状态"] = s.status
    for col in ("营业执照", "资质认定", "公安备案", "日处理能力(吨)", "占地面积(㎡)", "经营范围"):
        table[col] = s.attrs[col]
    table["占地面积(㎡)"] = table["占地面积(㎡)"].astype(int)
    table["经度"] = _fmt(glon)
    table["纬度"] = _fmt(glat)
    truth = pd.DataFrame(
        {
            "site_id": ids[o], "tier": s.tier[o],
            "status": pd.Series(s.status[o]).map({"在营": "active", "规划": "planned", "关停": "closed", "非法": "illegal"}).to_numpy(),
            "planted": s.situations[o], "clean": s.clean[o],
            "lon": np.round(lon[o], 7), "lat": np.round(lat[o], 7),
            "township": s.attrs["所属镇街"].to_numpy()[o],
            "d_transfer_station_m": np.round(s.d_ts[o], 1),
        }
    )
    main = table.iloc[o].reset_index(drop=True)
    # the bad rows, one defect each
    defects = [
        ("经度", RejectReason.MISSING_COORDINATES), ("经度", RejectReason.NON_NUMERIC_COORDINATES),
        ("经度", RejectReason.SWAPPED_LON_LAT), ("经度", RejectReason.OUTSIDE_DISTRICT),
        ("网点编号", RejectReason.DUPLICATE_ID), ("网点层级", RejectReason.UNKNOWN_CATEGORY),
        ("网点名称", RejectReason.MISSING_VALUE),
    ]
    rows, min_pos, records = [], [], []
    cps = np.flatnonzero(main["网点层级"].to_numpy() == TIER_LABEL_ZH[Tier.COLLECTION_POINT])
    for (fld, reason), b in zip(defects, badb):
        r = table.iloc[b].copy()
        mp = None
        if reason == RejectReason.MISSING_COORDINATES:
            r["经度"], r["纬度"] = "", ""
        elif reason == RejectReason.NON_NUMERIC_COORDINATES:
            r["经度"] = f"{glon[b]:.1f}x"
        elif reason == RejectReason.SWAPPED_LON_LAT:
            r["经度"], r["纬度"] = r["纬度"], r["经度"]
        elif reason == RejectReason.OUTSIDE_DISTRICT:
            olon, olat = to_lonlat(s.x[b] + 50_000.0, s.y[b] + 8_000.0)
            gl, gt = wgs84_to_gcj02(olon, olat)
            r["经度"], r["纬度"] = f"{float(gl):.7f}", f"{float(gt):.7f}"
        elif reason == RejectReason.DUPLICATE_ID:
            first = int(rng.choice(cps))
            r["网点编号"] = main.iloc[first]["网点编号"]
            mp = first
        elif reason == RejectReason.UNKNOWN_CATEGORY:
            r["网点层级"] = "废品收购大户"
        elif reason == RejectReason.MISSING_VALUE:
            r["网点名称"] = ""
        rows.append(r)
        min_pos.append(mp)
        records.append({"field": fld, "reason": str(reason), "value": str(r[fld]), "site_id": r["网点编号"]})
    table, rownums = _insert_rows(rng, main, rows, min_pos)
    for rec, rn in zip(records, rownums):
        rec["row"] = rn
    return table, truth, records


def _candidates(
    rng: np.random.Generator, geo: _Geo, ix: _Index, placer: _Placer, p: ScaleParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Garbage transfer stations (一场两用 candidates) in BD-09, and their truth."""
    n = p.n_candidates
    bad_keys = ["fm:no_build", "fm:key_control", "basic_farmland", "landuse:farm", "water_source"]
    n_bad = max(5, n // 6)
    keys = [bad_keys[i % len(bad_keys)] for i in range(n_bad)]
    xs, ys = [], []
    for key in bad_keys:
        k = keys.count(key)
        x, y = placer.place(key, Tier.TRANSFER_STATION, k)
        xs.append(x)
        ys.append(y)
    x, y = placer.place("candidate", Tier.TRANSFER_STATION, n - sum(len(a) for a in xs))
    xs.append(x)
    ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    perm = rng.permutation(len(x))
    x, y = x[perm], y[perm]
    ev = _evaluate(ix, x, y)
    tiers = np.full(len(x), str(Tier.TRANSFER_STATION), dtype=object)
    attrs = pd.DataFrame({"营业执照": "有", "资质认定": "", "公安备案": "已备案", "占地面积(㎡)": 1000.0}, index=np.arange(len(x)))
    why = _situations(ev, tiers, attrs)
    twn = _township_of(geo, x, y)
    tname = _TOWNSHIP_NAMES[twn]
    short = _TOWNSHIP_SHORT[twn]
    stems = rng.choice(np.array(_ROAD_STEMS, dtype=object), len(x))
    ids = _seq_ids("LJZ-", np.arange(1, len(x) + 1), 3)
    lon, lat = to_lonlat(x, y)
    blon, blat = wgs84_to_bd09(lon, lat)
    table = pd.DataFrame(
        {
            "编号": ids,
            "名称": short + stems + "垃圾中转站",
            "类型": "垃圾中转站",
            "地址": "重庆市沙坪坝区" + tname + stems + "路" + rng.integers(1, 200, len(x)).astype(str) + "号",
            "经度": np.round(blon, 7),
            "纬度": np.round(blat, 7),
        }
    )
    truth = pd.DataFrame(
        {"candidate_id": ids, "prohibited": why != "", "why": why, "lon": np.round(lon, 7), "lat": np.round(lat, 7)}
    )
    return table, truth


def _targets(counts: dict[str, int], p: ScaleParams) -> list[dict[str, Any]]:
    """Target table in the spirit of Shizhu 2025, scaled to the sample's size."""
    cp = counts["collection_point"]
    do = counts["drop_off_point"]
    return [
        {"name": "回收站点数量", "metric": "count", "tiers": ["collection_point"], "target": int(math.ceil(cp * 1.1 / 10.0) * 10)},
        {"name": "分类投放点数量", "metric": "count", "tiers": ["drop_off_point"], "target": int(round(do * 0.9))},
        {"name": "镇街中转站全覆盖", "metric": "township_presence", "tiers": ["transfer_station"], "target": 1.0},
        {"name": "分拣中心", "metric": "count", "tiers": ["sorting_centre"], "target": 1},
        {"name": "500米步行覆盖人口比例", "metric": "population_coverage", "tiers": ["collection_point", "drop_off_point"], "target": 0.9},
        {"name": "每网点服务户数上限", "metric": "households_per_point", "tiers": ["collection_point"], "target": 2000},
    ]


def _project_yaml(p: ScaleParams, seed: int, counts: dict[str, int], raster: bool) -> dict[str, Any]:
    layers: dict[str, Any] = {
        "sites": {"file": "sites_ledger.csv", "coords": "gcj02", "encoding": "gb18030"},
        "incidents": {"file": "incidents.csv", "coords": "wgs84"},
        "candidates": {"file": "garbage_transfer_stations.xlsx", "coords": "bd09", "sheet": 0},
        "townships": {"file": "townships.gpkg", "layer": "townships"},
        "zones": [
            {"file": "zones.gpkg", "layer": "four_mountains", "zone_type": "four_mountains"},
            {"file": "zones.gpkg", "layer": "ecological_red_line", "zone_type": "ecological_red_line"},
            {"file": "zones.gpkg", "layer": "basic_farmland", "zone_type": "basic_farmland"},
            {"file": "zones.gpkg", "layer": "water_source", "zone_type": "water_source"},
        ],
        "landuse": {"file": "landuse.tif", "classes": "gbt21010"} if raster else {"file": "landuse.gpkg", "layer": "landuse"},
        "population": {"file": "population.tif"},
        "roads": {"file": "roads.osm"},
    }
    return {
        "name": DISTRICT_NAME,
        "code": DISTRICT_CODE,
        "sample": True,
        "label": settings.SAMPLE_LABEL,
        "generator": {"module": "gis.sample", "seed": seed, "scale": p.name},
        "crs": {"metric": "auto"},
        "outside_tolerance_m": 2000,
        "layers": layers,
        "targets": _targets(counts, p),
    }


def _dump_yaml(data: dict[str, Any], target: Path, header: str) -> None:
    text = header + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=None, width=120)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


_README = """# 沙坪坝区（样例） — {label}

**This folder is generated sample data, not a real district.** It was written by
`python -m gis sample --out DIR --seed {seed} --scale {scale}` (module `gis/sample.py`).
The outline, townships, 四山 bands, land use, population, roads, site ledger, incident
records and candidate sites are all synthetic, laid over the real extent of Shapingba
(沙坪坝区, about 106.25–106.50°E, 29.45–29.80°N) so that maps look plausible. Township
names are real Shapingba names placed on invented Voronoi cells. Every output built from
it carries the label above (`sample: true` in `project.yaml`, `sample=1` in the
GeoPackages, GeoTIFF tags and OSM ways).

Seed {seed}, scale `{scale}`. The same seed gives the same CSV bytes.

## Files

| file | what | coordinates |
|---|---|---|
| `project.yaml` | the district's layers and targets (land use from `landuse.gpkg`) | |
| `project_raster.yaml` | the same district with land use from `landuse.tif` | |
| `sites_ledger.csv` | site ledger 台账, {n_sites} valid rows + {n_bad_sites} deliberately bad rows; GB18030 (like Chinese Excel exports) | GCJ-02 |
| `incidents.csv` | {n_incidents} incident records 2022–2024 (+{n_bad_inc} bad rows), UTF-8 with BOM | WGS84 |
| `garbage_transfer_stations.xlsx` | {n_candidates} candidate sites for recycling transfer stations (一场两用); sheet 1 data, sheet 2 说明 | BD-09 |
| `townships.gpkg` | layer `townships`: {n_townships} 镇街 with 常住人口 (the population raster summed inside) and 户数 | EPSG:4490 |
| `zones.gpkg` | layers `four_mountains` (缙云山/中梁山 × 禁建区/重点控建区/一般控建区), `ecological_red_line`, `basic_farmland`, `water_source` | EPSG:4544 |
| `landuse.gpkg` / `landuse.tif` | GB/T 21010 land use ({n_parcels} parcels; raster uint16 = int(code), nodata 0, {lu_res:g} m), with a few deliberate unclassified gaps | EPSG:4544 |
| `population.tif` | residents per cell (float32, nodata -1 outside the district), {pop_res:g}°, total {pop_total:,.0f} | EPSG:4326 |
| `roads.osm` | OSM XML road network ({n_nodes} nodes, {n_ways} ways): dense urban grid, sparse rural roads, tunnels through the ridges; `osmnx.graph_from_xml` reads it offline | WGS84 |
| `truth/` | what the generator planted (below) | WGS84 |

Coordinates: the ledger is geocoded-style GCJ-02 (火星坐标) and the candidates BD-09 (百度坐标);
convert them with `gis.coords` (the loaders do, per `coords:` in `project.yaml`). CGCS2000
(EPSG:4490) and WGS84 are treated as identical (< 1 m apart).

## Truth files (`truth/`)

- `sites_truth.csv` — every valid ledger site: `site_id, tier, status, planted, clean, lon, lat,
  township, d_transfer_station_m`. `planted` is a `;`-joined list of rule-independent
  situation codes evaluated on the generated layers (`four_mountains:<level>`,
  `ecological_red_line`, `basic_farmland`, `water_source`, `landuse_not_allowed:<code>`,
  `near_receptor:<school|hospital|residential|water_source>:<m>`, `no_business_licence`,
  `no_dismantling_qualification`, `no_police_filing`, `floor_area_below_norm`,
  `far_from_transfer_station`). Clean sites (`clean=True`) are ≥ {margin:g} m from every
  parcel and zone boundary, outside every zone, ≥ the record radius from receptors
  (school/hospital/residential 300 m, water source 800 m, for the tiers the codes apply to),
  fully licensed, above the floor-area norms and (points) ≤ {clean_ts:g} m straight-line from
  an active transfer station.
- `bad_rows.csv` — `file, row, field, reason, value, id`: every deliberately bad input row;
  `row` is the spreadsheet row (header = 1), `reason` a `gis.schema.RejectReason` value.
  Bad rows are not in the other truth tables.
- `clusters_truth.csv` — the planted incident clusters (centre, 95% radius, kind, 四山 level
  if inside a band, dates, closure and rebound).
- `incidents_truth.csv` — `incident_id, cluster_id, phase` (empty cluster = background noise;
  phase `before_closure` / `after_closure` for closed and rebounded clusters).
- `candidates_truth.csv` — `candidate_id, prohibited, why, lon, lat`.
- `townships_truth.csv` — township, code, population, households, and whether it has an
  active transfer station (townships without one: {no_ts}).
"""


def generate(out: Path, seed: int = 42, scale: str = "small", *, tile: Tile | None = None) -> SampleResult:
    """Generate the sample district into ``out`` (样例数据, clearly labelled as such).

    Parameters
    ----------
    out
        Target folder; created if missing. Existing files of the same names are replaced
        (each atomically).
    seed
        Seed of the :class:`numpy.random.Generator` all draws come from.
    scale
        ``small`` (bundled: ~300 sites, ~700 incidents), ``district`` (~5×) or ``city``
        (≥ 20,000 sites, ≥ 100,000 incidents, ≥ 1,000,000 population cells), or
        ``municipal`` (one district of the municipal mosaic).
    tile
        Generate one district of a municipal mosaic (:class:`Tile`; used by
        :func:`gis.municipal.generate_municipality`).

    Returns
    -------
    SampleResult
        Output folder, per-layer counts and the truth-file paths.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    global _TILE
    _TILE = tile
    try:
        result = _generate(Path(out), seed, scale)
    finally:
        _TILE = None
    return result


def _generate(out: Path, seed: int, scale: str) -> SampleResult:
    p = SCALES[scale]
    tile = _TILE
    d_name, d_code = (tile.name, tile.code) if tile is not None else (DISTRICT_NAME, DISTRICT_CODE)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    geo = _build_geometry(rng)
    noise = functools.partial(_smooth_noise, np.random.default_rng(rng.integers(2**32)), wavelength_m=2500.0)
    cxy = to_metric(106.455, 29.545)
    fields_ = {"noise": lambda x, y: noise(x, y), "centre": (float(cxy[0]), float(cxy[1]))}
    pop = _population(geo, p, fields_)
    roads = _roads(rng, geo, p)
    parcels = _landuse(rng, geo, roads)
    zones = _zones(geo, parcels)
    ix = _build_index(parcels, zones)
    sites, placer = _sites(rng, geo, ix, pop, p)
    inc = _incidents(rng, geo, pop, p)
    cand, cand_truth = _candidates(rng, geo, ix, placer, p)
    ledger, sites_truth, bad_sites = _ledger(rng, geo, sites)

    files: dict[str, Path] = {}
    tags = {"sample": "1", "label": settings.SAMPLE_LABEL, "seed": str(seed), "scale": scale}
    # townships
    pop_by_t = np.bincount(pop.township, weights=pop.pop, minlength=len(TOWNSHIPS))
    kinds = np.array([t[1] for t in TOWNSHIPS], dtype=object)
    hh = np.round(pop_by_t / np.where(kinds == "街道", 2.6, 2.9))
    has_ts = np.zeros(len(TOWNSHIPS), bool)
    act_ts = (sites.tier == str(Tier.TRANSFER_STATION)) & (sites.status == "在营") & (sites.key != "__bad__")
    has_ts[_township_of(geo, sites.x[act_ts], sites.y[act_ts])] = True
    twn = gpd.GeoDataFrame(
        {
            "镇街名称": [t[0] for t in TOWNSHIPS],
            "镇街代码": [d_code + t[4] for t in TOWNSHIPS],
            "类型": kinds,
            "常住人口": np.round(pop_by_t, 1),
            "户数": hh.astype(int),
            "城镇": np.where(kinds == "街道", "是", "否"),
            "sample": 1,
        },
        geometry=geo.townships,
        crs=METRIC_EPSG,
    ).to_crs(4490)
    files["townships"] = write_gpkg({"townships": twn}, out / "townships.gpkg")
    # zones
    zl = {}
    for zt, label in (("four_mountains", "四山"), ("ecological_red_line", "生态保护红线"), ("basic_farmland", "永久基本农田"), ("water_source", "饮用水水源保护区")):
        z = zones[zones["zone_type"] == zt].reset_index(drop=True)
        if tile is not None:
            z["name"] = z["name"].map(tile.rename)
        zl[zt] = gpd.GeoDataFrame(
            {
                "编号": [f"{zt[:2].upper()}{k + 1:03d}" for k in range(len(z))],
                "名称": z["name"].to_numpy(),
                "管控级别": [LEVEL_ZH.get(v, "") if isinstance(v, str) else "" for v in z["level"]],
                "管控类型": label,
                "sample": 1,
            },
            geometry=z.geometry.values,
            crs=METRIC_EPSG,
        )
    files["zones"] = write_gpkg(zl, out / "zones.gpkg")
    # land use
    names = {c: _class_entry(c).get("name_zh", "") for c in parcels["code"].unique()}
    lu = gpd.GeoDataFrame(
        {"地类编码": parcels["code"].to_numpy(), "地类名称": parcels["code"].map(names).to_numpy(), "sample": 1},
        geometry=parcels.geometry.values,
        crs=METRIC_EPSG,
    )
    files["landuse"] = write_gpkg({"landuse": lu}, out / "landuse.gpkg")
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    res = p.landuse_raster_m
    minx, miny, maxx, maxy = geo.district.bounds
    x0, y1 = math.floor(minx / res) * res, math.ceil(maxy / res) * res
    w, h = int(math.ceil((maxx - x0) / res)), int(math.ceil((y1 - miny) / res))
    transform = from_origin(x0, y1, res, res)
    arr = rasterize(
        zip(parcels.geometry.values, parcels["code"].astype(int).to_numpy()),
        out_shape=(h, w), transform=transform, fill=0, dtype="uint16",
    )
    files["landuse_raster"] = write_geotiff(arr, out / "landuse.tif", transform=transform, crs=f"EPSG:{METRIC_EPSG}", nodata=0, tags=tags)
    files["population"] = write_geotiff(
        pop.array, out / "population.tif",
        transform=from_origin(BOX[0] + (tile.dlon if tile else 0.0), BOX[3] + (tile.dlat if tile else 0.0), pop.res, pop.res),
        crs="EPSG:4326", nodata=-1.0, tags=tags,
    )
    _write_osm(roads, out / "roads.osm")
    files["roads"] = out / "roads.osm"
    files["sites"] = write_csv(ledger[LEDGER_HEADERS], out / "sites_ledger.csv", encoding="gb18030")
    inc_df, inc_rows = _insert_rows(rng, inc["df"], [b[0] for b in inc["bad"]])
    files["incidents"] = write_csv(inc_df[INCIDENT_HEADERS], out / "incidents.csv")
    note = pd.DataFrame({"说明": [settings.SAMPLE_LABEL, f"gis.sample seed={seed} scale={scale}", "坐标系：BD-09（百度坐标）"]})
    files["candidates"] = write_excel({"垃圾中转站": cand[CANDIDATE_HEADERS], "说明": note}, out / "garbage_transfer_stations.xlsx")
    # truth
    tdir = out / "truth"
    bad_rows = pd.DataFrame(
        [{"file": "sites_ledger.csv", "row": r["row"], "field": r["field"], "reason": r["reason"], "value": r["value"], "id": r["site_id"]} for r in bad_sites]
        + [
            {"file": "incidents.csv", "row": rn, "field": fld, "reason": str(reason), "value": val, "id": row["记录编号"]}
            for (row, fld, val, reason), rn in zip(inc["bad"], inc_rows)
        ]
    )
    counts_t = pd.Series(sites_truth["tier"]).value_counts()
    town_truth = pd.DataFrame(
        {
            "township": [t[0] for t in TOWNSHIPS],
            "township_code": [d_code + t[4] for t in TOWNSHIPS],
            "kind": kinds,
            "population": np.round(pop_by_t, 1),
            "households": hh.astype(int),
            "has_transfer_station": has_ts,
        }
    )
    truth_files = {
        "sites": write_csv(sites_truth, tdir / "sites_truth.csv"),
        "bad_rows": write_csv(bad_rows, tdir / "bad_rows.csv"),
        "clusters": write_csv(
            inc["clusters"] if tile is None else inc["clusters"].map(tile.rename), tdir / "clusters_truth.csv"
        ),
        "incidents": write_csv(inc["truth"], tdir / "incidents_truth.csv"),
        "candidates": write_csv(cand_truth, tdir / "candidates_truth.csv"),
        "townships": write_csv(town_truth, tdir / "townships_truth.csv"),
    }
    counts = {
        "sites": len(sites_truth),
        "sites_rows": len(ledger),
        **{t: int(counts_t.get(t, 0)) for t in (str(x) for x in Tier)},
        "incidents": len(inc["df"]),
        "incidents_rows": len(inc_df),
        "clusters": int(inc["n_clusters"]),
        "candidates": len(cand),
        "townships": len(TOWNSHIPS),
        "zones": len(zones),
        "landuse_parcels": len(parcels),
        "population_cells": int(pop.array.size),
        "road_nodes": len(roads.node_x),
        "road_ways": len(roads.ways),
        "bad_rows": len(bad_rows),
    }
    header = f"# {settings.SAMPLE_LABEL}\n# generated by gis.sample (seed {seed}, scale {scale}); see README.md\n"
    for raster, fname in ((False, "project.yaml"), (True, "project_raster.yaml")):
        py = _project_yaml(p, seed, counts, raster=raster)
        if tile is not None:
            py.update(name=d_name, code=d_code)
            py["generator"]["tile"] = {"dlon": tile.dlon, "dlat": tile.dlat}
        _dump_yaml(py, out / fname, header)
    files["project"] = out / "project.yaml"
    readme = _README.format(
        label=settings.SAMPLE_LABEL, seed=seed, scale=scale, n_sites=counts["sites"], n_bad_sites=len(bad_sites),
        n_incidents=counts["incidents"], n_bad_inc=len(inc["bad"]), n_candidates=counts["candidates"],
        n_townships=len(TOWNSHIPS), n_parcels=len(parcels), lu_res=res, pop_res=p.population_res_deg,
        pop_total=float(pop.pop.sum()), n_nodes=counts["road_nodes"], n_ways=counts["road_ways"], margin=MARGIN_M,
        clean_ts=CLEAN_TS_M, no_ts="、".join(town_truth["township"][~town_truth["has_transfer_station"]]),
    )
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(readme, encoding="utf-8")
    return SampleResult(out=out, seed=seed, scale=scale, counts=counts, truth_files=truth_files, files=files)
