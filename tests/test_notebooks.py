"""The analyst notebooks run top to bottom on the sample district (nbclient).

They call the library (``gis``), so a library change that breaks an analyst's workflow
fails here. Executed in the test interpreter's own ipykernel (the ``.venv``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

from gis import settings

NOTEBOOKS = sorted((settings.PACKAGE_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_four_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_load_and_validate.ipynb",
        "02_compliance_and_ledgers.ipynb",
        "03_coverage_and_siting.ipynb",
        "04_hotspots_over_time.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, sample_project: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("GIS_PROJECT", str(sample_project))
    monkeypatch.setenv("GIS_PROGRESS", "0")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # charts become outputs
    # the kernel starts in tmp_path: make it import this checkout's gis (not another editable install)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(settings.PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]))
    # the native kernel is this interpreter's ipykernel (sys.executable), i.e. the .venv
    assert NATIVE_KERNEL_NAME == "python3"
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    # the story: charts, a "what this means" paragraph computed from the results, no box glyphs
    assert any("image/png" in o.get("data", {}) for o in outputs), "no chart"
    meaning = [str(o.get("data", {}).get("text/markdown", "")) for o in outputs]
    assert any("这对本区意味着什么" in m and any(ch.isdigit() for ch in m) for m in meaning)
    stderr = " ".join(str(o.get("text", "")) for o in outputs if o.get("name") == "stderr")
    assert "missing from" not in stderr, stderr[:500]
    # the last cell is the map: a Leaflet page came out
    last = nb.cells[-1].outputs
    assert any("leaflet" in str(o.get("data", {}).get("text/html", "")).lower() for o in last), sys.executable
