"""Constants, scales and result types of the sample generator (no mutable state)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from gis import settings
from gis.schema import Tier

FloatArray = npt.NDArray[np.float64]

#: Folder of the bundled real boundary files (OSM-derived, © OpenStreetMap contributors, ODbL 1.0).
BOUNDARY_DIR: Path = settings.BOUNDARY_DIR
#: The real Shapingba outline, its water polygons and building footprints (points + area).
OUTLINE_FILE = "shapingba_outline.geojson"
WATER_FILE = "shapingba_water.geojson"
BUILDINGS_FILE = "shapingba_buildings.csv"
#: The metric CRS of the sample district (CGCS2000 3° GK CM 105°E).
METRIC_EPSG = 4544
#: Bounding box holding the real Shapingba outline (lon_min, lat_min, lon_max, lat_max).
BOX = (106.24, 29.45, 106.50, 29.80)
#: Resident population of the sample district.
TOTAL_POPULATION = 1_400_000
DISTRICT_NAME = "沙坪坝区（样例）"
DISTRICT_CODE = "500106"

#: Distance from a ridge line (m) to the outer edge of each 四山 level.
BAND_HALF_WIDTH_M = MappingProxyType({"no_build": 900.0, "key_control": 1800.0, "general_control": 3000.0})
LEVEL_ZH = MappingProxyType({"no_build": "禁建区", "key_control": "重点控建区", "general_control": "一般控建区"})

#: Floor-area norms (m²) below which ``floor_area_below_norm`` is recorded.
FLOOR_NORM_M2 = MappingProxyType({Tier.TRANSFER_STATION: 500.0, Tier.COLLECTION_POINT: 10.0, Tier.SORTING_CENTRE: 3000.0})
#: Straight-line distance beyond which a collection point is ``far_from_transfer_station``.
FAR_FROM_TS_M = 5000.0
#: Clean points lie within this straight-line distance of an active transfer station
#: (a road route of ≤ 3 km, the linkage limit, is then likely).
CLEAN_TS_M = 2000.0
#: Margin to every parcel / zone boundary for clean and planted sites.
MARGIN_M = 30.0
#: Record radius of ``near_receptor`` codes per receptor kind, and the tiers they apply to.
RECEPTOR_RADIUS_M = MappingProxyType({"school": 300.0, "hospital": 300.0, "residential": 300.0, "water_source": 800.0})
RECEPTOR_TIERS = MappingProxyType({
    "school": (Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.DISMANTLER),
    "hospital": (Tier.SORTING_CENTRE, Tier.TRANSFER_STATION, Tier.DISMANTLER),
    "residential": (Tier.SORTING_CENTRE, Tier.DISMANTLER),
    "water_source": (Tier.SORTING_CENTRE, Tier.DISMANTLER),
})
#: Distances (m) that rule tables use as thresholds; planted distances keep clear of them.
_THRESHOLDS_M = np.array([100.0, 150.0, 200.0, 300.0, 500.0, 800.0])

LEDGER_HEADERS = (
    "网点编号", "网点名称", "网点层级", "经营者", "经营地址", "所属镇街", "经营状态", "营业执照",
    "资质认定", "公安备案", "日处理能力(吨)", "占地面积(㎡)", "经营范围", "经度", "纬度",
)
INCIDENT_HEADERS = (
    "记录编号", "发现日期", "问题类型", "线索来源", "处置状态", "关停日期", "五大总成流向",
    "所属镇街", "地址", "问题描述", "经度", "纬度",
)
CANDIDATE_HEADERS = ("编号", "名称", "类型", "地址", "经度", "纬度")


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


SCALES: MappingProxyType[str, ScaleParams] = MappingProxyType({
    # one district of a municipal mosaic (gis.municipal): 38 of them give >= 200k sites,
    # >= 2M incidents and >= 10M population cells
    "municipal": ScaleParams("municipal", 0.0005, 20.0, 200.0, 1000.0, 4300, 1800, 20, 4, 860, 30, 0.4, 100),
    "small": ScaleParams("small", 0.001, 20.0, 250.0, 1500.0, 200, 90, 1, 1, 12, 5, 0.4, 30),
    "district": ScaleParams("district", 0.001, 20.0, 250.0, 1500.0, 1000, 450, 10, 3, 60, 10, 0.4, 60),
    "city": ScaleParams("city", 0.00018, 20.0, 150.0, 800.0, 14000, 6000, 60, 10, 1800, 40, 0.4, 200),
})


@dataclass(frozen=True)
class Tile:
    """Placement of one district of a municipal mosaic (see :mod:`gis.sample.mosaic`).

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
