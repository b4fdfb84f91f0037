"""Shapingba's current 街道 and 镇 with approximate seats, and their (approximate) cells.

The list is the district's administrative division as currently published by the
district government (沙坪坝区人民政府, 行政区划: 21 街道 and 5 镇; 双碑街道 no longer
exists, 土湾、联芳、丰文、香炉山 are 街道). Seats are approximate positions (about 1 km)
of each 街道/镇 centre. No public township boundary file exists, so township shapes
are approximations: Voronoi cells of the seats *and* of a few well-known places
(磁器口、大学城、歌乐山、西永 …) that belong to a township, merged per township and
clipped to the district outline — so each of those places lies in its real township.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import numpy.typing as npt
import shapely
from scipy.spatial import cKDTree

from gis.sample.constants import FloatArray

#: Township name, kind, seat lon/lat (WGS84, approximate), code suffix.
TOWNSHIPS: tuple[tuple[str, str, float, float, str], ...] = (
    ("小龙坎街道", "街道", 106.463, 29.549, "001"),
    ("沙坪坝街道", "街道", 106.456, 29.560, "002"),
    ("渝碚路街道", "街道", 106.447, 29.551, "003"),
    ("磁器口街道", "街道", 106.449, 29.579, "004"),
    ("童家桥街道", "街道", 106.458, 29.595, "005"),
    ("石井坡街道", "街道", 106.457, 29.617, "006"),
    ("詹家溪街道", "街道", 106.436, 29.604, "007"),
    ("井口街道", "街道", 106.452, 29.640, "008"),
    ("歌乐山街道", "街道", 106.418, 29.585, "009"),
    ("山洞街道", "街道", 106.400, 29.556, "010"),
    ("新桥街道", "街道", 106.437, 29.532, "011"),
    ("天星桥街道", "街道", 106.452, 29.540, "012"),
    ("土湾街道", "街道", 106.474, 29.566, "013"),
    ("覃家岗街道", "街道", 106.423, 29.545, "014"),
    ("联芳街道", "街道", 106.428, 29.510, "015"),
    ("陈家桥街道", "街道", 106.305, 29.628, "016"),
    ("虎溪街道", "街道", 106.312, 29.603, "017"),
    ("西永街道", "街道", 106.298, 29.570, "018"),
    ("土主街道", "街道", 106.345, 29.640, "019"),
    ("香炉山街道", "街道", 106.342, 29.600, "020"),
    ("丰文街道", "街道", 106.275, 29.600, "021"),
    ("青木关镇", "镇", 106.298, 29.705, "101"),
    ("凤凰镇", "镇", 106.345, 29.680, "102"),
    ("中梁镇", "镇", 106.400, 29.710, "103"),
    ("回龙坝镇", "镇", 106.262, 29.555, "104"),
    ("曾家镇", "镇", 106.335, 29.560, "105"),
)
#: Well-known places (WGS84, approximate) and the township they lie in.
PLACES: MappingProxyType[str, tuple[float, float, str]] = MappingProxyType({
    "磁器口": (106.4485, 29.5785, "磁器口街道"),
    "大学城": (106.305, 29.606, "虎溪街道"),
    "歌乐山": (106.413, 29.582, "歌乐山街道"),
    "西永": (106.300, 29.566, "西永街道"),
    "三峡广场": (106.457, 29.556, "沙坪坝街道"),
    "青木关": (106.296, 29.700, "青木关镇"),
})
#: Townships deliberately left without a transfer station.
TOWNSHIPS_WITHOUT_TS = ("中梁镇", "凤凰镇", "詹家溪街道")
#: Jitter (m, standard deviation) of the seats.
SEAT_JITTER_M = 150.0


def township_names() -> npt.NDArray[np.object_]:
    """Full township names, in :data:`TOWNSHIPS` order."""
    return np.array([t[0] for t in TOWNSHIPS], dtype=object)


def township_short() -> npt.NDArray[np.object_]:
    """Township names without the 街道/镇 suffix."""
    return np.array([t[0].removesuffix("街道").removesuffix("镇") for t in TOWNSHIPS], dtype=object)


def township_anchors(rng: np.random.Generator, to_metric: object) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Metric anchor points (jittered seats, then the places) and the township of each."""
    names = [t[0] for t in TOWNSHIPS]
    sx, sy = to_metric(np.array([t[2] for t in TOWNSHIPS]), np.array([t[3] for t in TOWNSHIPS]))  # type: ignore[operator]
    sx = sx + rng.normal(0, SEAT_JITTER_M, len(sx))
    sy = sy + rng.normal(0, SEAT_JITTER_M, len(sy))
    px, py = to_metric(np.array([p[0] for p in PLACES.values()]), np.array([p[1] for p in PLACES.values()]))  # type: ignore[operator]
    owner = np.array([names.index(p[2]) for p in PLACES.values()], dtype=np.int64)
    xy = np.vstack([np.column_stack([sx, sy]), np.column_stack([px, py])])
    return xy, np.concatenate([np.arange(len(names), dtype=np.int64), owner])


def township_cells(anchors: FloatArray, owner: npt.NDArray[np.int64], district: shapely.Geometry) -> list[shapely.Geometry]:
    """Voronoi cells of the anchors, merged per township and clipped to the district."""
    vor = shapely.voronoi_polygons(
        shapely.multipoints(anchors), extend_to=shapely.buffer(district, 5000.0).envelope, ordered=True
    )
    cells = np.asarray(shapely.get_parts(vor))
    out = []
    for k in range(len(TOWNSHIPS)):
        g = shapely.intersection(shapely.union_all(cells[owner == k]), district)
        out.append(shapely.make_valid(g))
    return out


def township_of(anchors: FloatArray, owner: npt.NDArray[np.int64], x: FloatArray, y: FloatArray) -> npt.NDArray[np.int64]:
    """Township index of metric points: the owner of the nearest anchor (= its cell)."""
    _, idx = cKDTree(anchors).query(np.column_stack([x, y]))
    return owner[np.asarray(idx, dtype=np.int64)]
