"""A two-district municipal sample (one north of the other), generated once per test session."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def two_district_sample() -> Path:
    from gis.sample.mosaic import generate_municipality

    out = Path(tempfile.mkdtemp(prefix="gis_muni_")) / "muni"
    generate_municipality(out, seed=3, districts=2, district_scale="small", workers=2)
    return out
