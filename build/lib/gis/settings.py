"""Settings in one place (after osmnx's ``settings`` module).

Module-level values are defaults; a district's ``project.yaml`` overrides the
analysis parameters for that district (see :mod:`gis.catalog`). Change a value here
only to change the toolkit-wide default.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Root of the installed source tree (``gis/..``).
PACKAGE_ROOT: Path = Path(__file__).resolve().parent.parent

#: The bundled layer and rule catalogues (YAML): ``layers/`` of the checkout, or the
#: copy an installed wheel carries as ``gis/layers`` (mapped by setup.py at build time).
LAYERS_DIR: Path = (
    PACKAGE_ROOT / "layers" if (PACKAGE_ROOT / "layers" / "coverage.yaml").exists()
    else Path(__file__).resolve().parent / "layers"
)

#: Real outlines, water and building footprints the sample generator draws on (OSM, ODbL):
#: ``data/boundaries/`` of the checkout, or ``gis/boundaries`` inside an installed wheel.
BOUNDARY_DIR: Path = (
    PACKAGE_ROOT / "data" / "boundaries" if (PACKAGE_ROOT / "data" / "boundaries" / "README.md").exists()
    else Path(__file__).resolve().parent / "boundaries"
)

#: The bundled sample district, used when no project is named.
SAMPLE_PROJECT_DIR: Path = PACKAGE_ROOT / "data" / "sample_district"

#: Where ``../shared/data/chongqing_osm`` is expected (tests and benchmarks only).
SHARED_OSM_DIR: Path = Path(
    os.environ.get("GIS_SHARED_OSM", PACKAGE_ROOT.parent / "shared" / "data" / "chongqing_osm")
)

#: Encodings tried, in order, when a CSV does not declare one. GB18030 is a
#: superset of GBK and GB2312, which Chinese Excel exports use.
CSV_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "gb18030")

#: Default walking / driving speeds (km/h) used to turn network distance into time.
WALK_SPEED_KMH: float = 4.5
DRIVE_SPEED_KMH: float = 30.0

#: Whether long steps show a progress display (rich). Tests switch it off.
SHOW_PROGRESS: bool = os.environ.get("GIS_PROGRESS", "1") != "0"

#: OSM attribution, required on any map or export built from OSM data.
OSM_ATTRIBUTION: str = "© OpenStreetMap contributors (ODbL 1.0)"

#: Label put on everything built from the generated sample district.
SAMPLE_LABEL: str = "样例数据 SAMPLE DATA — generated, not a real district"
