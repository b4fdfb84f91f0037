"""gis — recycling-network planning and illegal-dismantling hotspots for Chinese districts.

The library behind the CLI (``python -m gis``), the Streamlit app (``app.py``) and
the notebooks. Start with :func:`gis.district.load_district` and
:func:`gis.pipeline.run`; see ``docs/ARCHITECTURE.md`` for the module map.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_district", "run"]


def __getattr__(name: str):
    # lazy: importing gis must stay cheap (the CLI's --help, the app's first paint)
    if name == "load_district":
        from gis.district import load_district

        return load_district
    if name == "run":
        from gis.pipeline import run

        return run
    raise AttributeError(f"module 'gis' has no attribute {name!r}")
