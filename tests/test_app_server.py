"""The app launcher (``make app``): streamlit run with the app's modules imported ahead.

That the app it starts draws its map in a browser is checked by ``tests/test_browser.py``
(whose server, :func:`gis.testing.serve_app`, starts through this launcher).
"""

from __future__ import annotations

import subprocess
import sys

from gis import app_server, settings


def test_arguments_default_to_the_bundled_app_and_pass_options_through():
    assert app_server.streamlit_args([]) == ["run", str(settings.PACKAGE_ROOT / "app.py")]
    assert app_server.streamlit_args(["other.py", "--server.port", "8502"]) == [
        "run", "other.py", "--server.port", "8502"]
    assert app_server.streamlit_args(["--server.port", "8502"])[1:] == [
        str(settings.PACKAGE_ROOT / "app.py"), "--server.port", "8502"]


def test_preload_imports_what_it_can_and_names_what_it_cannot():
    code = ("import sys; from gis.app_server import preload; "
            "print(preload(['gis.maps', 'no_such_module_gis']), 'gis.maps' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=settings.PACKAGE_ROOT)
    assert out.stdout.split() == ["['no_such_module_gis']", "True"]


def test_every_preloaded_module_exists_and_none_declares_a_streamlit_component():
    code = ("from gis.app_server import PRELOAD, preload; import sys; "
            "print(preload(PRELOAD), 'streamlit_folium' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=settings.PACKAGE_ROOT)
    # streamlit_folium declared on the preload thread would leave the map empty in the browser
    assert out.stdout.split() == ["[]", "False"]
