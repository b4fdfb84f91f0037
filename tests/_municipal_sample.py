"""A two-district municipal sample (one north of the other), generated once per test session.

Under pytest-xdist every worker of one run shares the same folder (keyed by
``PYTEST_XDIST_TESTRUNUID``): the first worker generates it under a file lock, the
others wait and read it, so ``make test`` generates it once instead of once per
worker. Tests only read it. Outside xdist it is generated once per process.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path


def _generate(out: Path) -> None:
    from gis.sample.mosaic import generate_municipality

    generate_municipality(out, seed=3, districts=2, district_scale="small", workers=2)


@functools.lru_cache(maxsize=1)
def two_district_sample() -> Path:
    run = re.sub(r"[^A-Za-z0-9]", "", os.environ.get("PYTEST_XDIST_TESTRUNUID", ""))[:32]
    if not run:
        out = Path(tempfile.mkdtemp(prefix="gis_muni_")) / "muni"
        _generate(out)
        return out
    base = Path(tempfile.gettempdir()) / f"gis_muni_run_{run}"
    base.mkdir(exist_ok=True)
    out, done = base / "muni", base / "muni.done"
    with open(base / "muni.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while the first one generates
        try:
            if not done.exists():
                shutil.rmtree(out, ignore_errors=True)  # a worker that failed half-way left it incomplete
                _generate(out)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out
