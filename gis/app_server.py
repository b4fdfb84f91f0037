"""Start the map app with its modules imported while the browser loads the page.

``python -m gis.app_server [APP.py] [streamlit options]`` (``make app``) is
``streamlit run app.py [options]`` with one difference: once Streamlit itself is
imported, a thread imports the modules the app's first run needs (pandas,
geopandas, folium, the map and step modules, :data:`PRELOAD`). Streamlit runs
``app.py`` only when a browser session connects, so without this the first
session waits for those imports after the page has loaded (about two seconds
on two cores); here they overlap the server's start and the page's loading.
``streamlit run app.py`` keeps working and draws the same app.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Sequence

from gis import settings

#: Imported ahead of the app's first run, in this order (the app imports the same modules). Not
#: ``streamlit_folium``: it declares its Streamlit component on import, and declared outside a
#: script run the component never loads in the browser (the map stays empty).
PRELOAD: tuple[str, ...] = (
    "pandas", "numpy", "shapely", "pyproj", "pyogrio", "geopandas", "folium", "folium.plugins",
    "gis.district", "gis.catalog", "gis.maps", "gis.app_support", "gis.confine",
    "gis.steps", "gis.compliance", "gis.coverage", "gis.app_planner", "openpyxl",
)


def preload(modules: Sequence[str]) -> list[str]:
    """Import ``modules``; returns those that failed (the app's own import then reports why)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # an optional module missing: the app's run says so, not the preloader
            failed.append(name)
    return failed


def streamlit_args(argv: Sequence[str]) -> list[str]:
    """``streamlit run`` arguments: the app script (``app.py`` beside the package unless the first
    argument is a ``.py`` file) followed by the remaining options."""
    args = list(argv)
    app = args.pop(0) if args and args[0].endswith(".py") else str(settings.PACKAGE_ROOT / "app.py")
    return ["run", app, *args]


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``streamlit run`` in this process with the app's modules importing on a thread."""
    from streamlit.web import cli  # Streamlit first: the thread below never races its imports

    threading.Thread(target=preload, args=(PRELOAD,), name="gis-preload", daemon=True).start()
    cli.main(streamlit_args(sys.argv[1:] if argv is None else argv), prog_name="streamlit")


if __name__ == "__main__":
    main()
