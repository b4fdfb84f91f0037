"""Seeded generator of the sample district (样例区县) and its truth files.

The sample is **generated** data (样例数据 SAMPLE DATA) laid on Shapingba's real ground
(沙坪坝区, Chongqing): the real district outline and water bodies (OSM, © OpenStreetMap
contributors, ODbL 1.0, bundled in ``data/boundaries/``), the current 21 街道 and 5 镇 with
seats at approximate real positions (township shapes are approximations), the two 四山
ridges that cross it (缙云山 along the western border, 中梁山 with its 歌乐山 part between
大学城 and the urban core) as NNE–SSW bands with the three nested control levels, a GB/T
21010 land-use layer, a population raster weighted by real building footprints, an OSM
XML road network, a site ledger (台账) in GCJ-02 and GB18030 with a few bad rows,
incident records (摸排/举报/巡查/执法记录) with planted clusters and rebounds, and
candidate sites (垃圾中转站, 一场两用) in BD-09.

Everything the generator plants is written to ``truth/`` so that analyses can be tested
against it: the situation of every site (``sites_truth.csv``), every bad input row
(``bad_rows.csv``), the incident clusters (``clusters_truth.csv``, ``incidents_truth.csv``),
the candidate sites (``candidates_truth.csv``) and the townships (``townships_truth.csv``).

Geometry is built in the district's metric CRS (EPSG:4544, CGCS2000 3° Gauss-Krüger
CM 105°E) through a :class:`~gis.sample.frame.Frame` (no module-level state: a mosaic
tile passes its own frame); CGCS2000 (EPSG:4490) and WGS84 are treated as identical.
GCJ-02 / BD-09 come from :mod:`gis.coords`. Every random draw comes from one
:class:`numpy.random.Generator` seeded by ``seed``, so the same seed gives the same CSV bytes.

Situation codes (``truth/sites_truth.csv``, column ``planted``) are rule-independent facts
about a site evaluated on the generated layers: ``four_mountains:<level>``,
``ecological_red_line``, ``basic_farmland``, ``water_source``,
``landuse_not_allowed:<code>``, ``near_receptor:<receptor>:<m>``, ``no_business_licence``,
``no_dismantling_qualification``, ``no_police_filing``, ``floor_area_below_norm``,
``far_from_transfer_station`` (see ``data/sample_district/README.md``). A *clean* site has
no situation and margins that make that unambiguous.

Modules: :mod:`.outline` (outline, water), :mod:`.townships`, :mod:`.geo` (ridges, 四山
bands, regions), :mod:`.zones`, :mod:`.landuse`, :mod:`.population`, :mod:`.roads`,
:mod:`.sites`, :mod:`.incidents`, :mod:`.truth` (tables, truth, project files),
:mod:`.generate` (:func:`generate`), :mod:`.mosaic` (municipal mosaic).
"""

from __future__ import annotations

from gis.sample.constants import (
    BAND_HALF_WIDTH_M, BOX, CANDIDATE_HEADERS, CLEAN_TS_M, DISTRICT_CODE, DISTRICT_NAME, FAR_FROM_TS_M, FLOOR_NORM_M2,
    INCIDENT_HEADERS, LEDGER_HEADERS, LEVEL_ZH, MARGIN_M, METRIC_EPSG, RECEPTOR_RADIUS_M, RECEPTOR_TIERS, SCALES,
    TOTAL_POPULATION, SampleResult, ScaleParams, Tile,
)
from gis.sample.frame import Frame, to_lonlat, to_metric
from gis.sample.generate import generate
from gis.sample.townships import PLACES, TOWNSHIPS, TOWNSHIPS_WITHOUT_TS


def __getattr__(name: str) -> object:
    """Lazy access to the mosaic generator (it imports :mod:`gis.municipal`)."""
    if name in ("generate_municipality", "MunicipalSample", "tile_layout", "COLUMN_RANGES"):
        from gis.sample import mosaic

        return getattr(mosaic, name)
    raise AttributeError(f"module 'gis.sample' has no attribute {name!r}")


__all__ = [
    "BAND_HALF_WIDTH_M", "BOX", "CANDIDATE_HEADERS", "CLEAN_TS_M", "DISTRICT_CODE", "DISTRICT_NAME", "FAR_FROM_TS_M",
    "FLOOR_NORM_M2", "INCIDENT_HEADERS", "LEDGER_HEADERS", "LEVEL_ZH", "MARGIN_M", "METRIC_EPSG", "PLACES",
    "RECEPTOR_RADIUS_M", "RECEPTOR_TIERS", "SCALES", "TOTAL_POPULATION", "TOWNSHIPS", "TOWNSHIPS_WITHOUT_TS",
    "Frame", "SampleResult", "ScaleParams", "Tile", "generate", "to_lonlat", "to_metric",
]
